#!/usr/bin/env node
// Build step after `tsc`: bundles the compiled CLI (dist/cli/main.js, everything it requires and
// commander) into one file, dist/bundle/burrow.js, which bin/burrow.js loads with a V8 code cache;
// and the API service's own entry (dist/api/main.js) into dist/bundle/service.js, the same way.
//
// Why: resolving, reading and compiling ~40 separate files costs `burrow run` more than
// everything else it does in JavaScript. One file is one read, and one file is what V8's code
// cache (vm.Script cachedData) can cover; Node 20 has no per-module compile cache.
//
// The input is tsc's output, not ts/: tsc stays the one compiler (the bundle runs exactly the
// code the type checker saw), and esbuild only joins modules. Each module keeps its own lazy
// wrapper, so a `require()` inside an action still evaluates that module only when the action
// runs: `burrow run` never evaluates the registry client or the archive code.
//
// Next to each bundle, its manifest (manifest.json, service.manifest.json) lists every input with
// its size and mtime. bin/burrow.js checks them before using the bundle and falls back to dist/
// when any changed (someone ran tsc without this step), so a stale bundle can slow a run but
// never run old code.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const OUT_DIR = path.join(ROOT, 'dist', 'bundle');
const ENTRY = path.join(ROOT, 'dist', 'cli', 'main.js');

if (!fs.existsSync(ENTRY)) {
  process.stderr.write(`bundle: ${path.relative(ROOT, ENTRY)} is missing: run tsc first (npm run build:ts does both)\n`);
  process.exit(1);
}

// Sizes and mtimes are taken before esbuild reads anything: a file that tsc (another build)
// rewrites while this one runs is then newer than recorded, and the bundle counts as stale.
const before = new Map();
function walk(p) {
  const st = fs.statSync(p);
  if (st.isDirectory()) {
    if (p !== OUT_DIR) for (const e of fs.readdirSync(p)) walk(path.join(p, e));
  } else before.set(p, st);
}
walk(path.join(ROOT, 'dist'));
walk(path.join(ROOT, 'package.json'));
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
for (const dep of Object.keys(pkg.dependencies ?? {})) walk(path.join(ROOT, 'node_modules', dep));

fs.mkdirSync(OUT_DIR, { recursive: true });
/** Write-then-rename, so that a concurrent `burrow` never reads half a file. */
function put(file, text) {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

// tsc's `import * as fs from 'node:fs'` helper copies every export of the module into a new
// object with a getter each, in every module that imports it: node:fs alone has about a hundred,
// and the CLI's modules import it a dozen times at start-up. ES modules share one namespace object
// per module, and so does the bundle: the helper keeps the one it made (__burrowNamespaces,
// declared at the top of the bundle), which is what an import of the same module gets next.
const IMPORT_STAR = `    return function (mod) {
        if (mod && mod.__esModule) return mod;
        var result = {};
        if (mod != null) for (var k = ownKeys(mod), i = 0; i < k.length; i++) if (k[i] !== "default") __createBinding(result, mod, k[i]);
        __setModuleDefault(result, mod);
        return result;
    };`;
// As many lines as tsc's: its source map (to ts/) must still fit the lines below.
const IMPORT_STAR_SHARED = `    return function (mod) {
        if (mod && mod.__esModule) return mod; var result = mod != null && __burrowNamespaces.get(mod); if (result) return result;
        result = {};
        if (mod != null) for (var k = ownKeys(mod), i = 0; i < k.length; i++) if (k[i] !== "default") __createBinding(result, mod, k[i]);
        __setModuleDefault(result, mod); if (mod !== null && (typeof mod === "object" || typeof mod === "function")) __burrowNamespaces.set(mod, result);
        return result;
    };`;
const sharedNamespaces = {
  name: 'shared-namespaces',
  setup(build) {
    build.onLoad({ filter: /[\\/]dist[\\/].*\.js$/ }, (args) => {
      const text = fs.readFileSync(args.path, 'utf8');
      if (!text.includes('var __importStar = ')) return undefined;
      if (text.split(IMPORT_STAR).length !== 2) throw new Error(`bundle: ${args.path}: tsc's __importStar helper is not as expected: update scripts/bundle.mjs`);
      // resolveDir: where esbuild finds the file's `sourceMappingURL` (tsc's map), as without a plugin.
      return { contents: text.replace(IMPORT_STAR, IMPORT_STAR_SHARED), loader: 'js', resolveDir: path.dirname(args.path) };
    });
  },
};

/** Bundles one entry of dist/ into OUT_DIR/name.js, with its map and its manifest. */
async function bundle(entry, name, manifestName) {
  const out = path.join(OUT_DIR, `${name}.js`);
  const result = await esbuild.build({
    absWorkingDir: ROOT,
    entryPoints: [entry],
    outfile: out,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    // The napi addon is loaded by path at run time (ts/native), only by commands that need it.
    external: ['*.node'],
    // Without comments and indentation: a third less to read, and to keep in memory (the
    // service's), on every start. Names stay (no mangling), and the map gives ts/ lines.
    minifyWhitespace: true,
    // Linked, not inline: the map is read only when source maps are on (BURROW_DEBUG), and it
    // chains through tsc's maps back to ts/.
    sourcemap: 'linked',
    sourcesContent: false,
    legalComments: 'none',
    // No keepNames: it wraps ~600 function definitions in a defineProperty call and measurably
    // slows start-up. The only names it would keep are those of classes that refer to themselves
    // (commander's Command shows as _Command in a stack trace); nothing reads them.
    metafile: true,
    plugins: [sharedNamespaces],
    write: false,
    logLevel: 'warning',
  });

  let js;
  let map;
  for (const f of result.outputFiles) {
    if (f.path === out) js = f.text;
    else if (f.path === `${out}.map`) map = f.text;
  }
  if (js === undefined || map === undefined) throw new Error(`bundle: esbuild wrote ${result.outputFiles.map((f) => f.path).join(', ')}`);

  // V8 keeps a one-byte string for pure ASCII source: cheaper to read, hash and scan. esbuild
  // escapes strings but leaves comments and regular expressions as written, so escape what is left
  // (same meaning in a comment, a string or a regular expression; checked below).
  js = js.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  if (/\bString\.raw\b/.test(js)) throw new Error('bundle: String.raw in the bundle: escaping non-ASCII characters would change it');
  if (!js.startsWith('"use strict";')) throw new Error('bundle: the bundle no longer starts with "use strict"');
  js = js.replace('"use strict";', '"use strict";var __burrowNamespaces=new WeakMap();');
  // bin/burrow.js compiles the bundle with vm.Script, which has no dynamic-import callback here.
  if (/\bimport\(/.test(js)) throw new Error('bundle: a dynamic import() survived; tsc should have turned it into require()');

  // commander requires node:child_process at load time for its executable subcommands, which
  // burrow has none of: loading it (and node:net, node:stream under it) costs every command ~5 ms,
  // a tenth of `burrow images`. Loaded when first used instead.
  if (Object.keys(result.metafile.inputs).some((p) => p.startsWith('node_modules/commander/'))) {
    const COMMANDER_CHILD_PROCESS = /var childProcess ?= ?require\("node:child_process"\);/g;
    if ((js.match(COMMANDER_CHILD_PROCESS) ?? []).length !== 1) throw new Error('bundle: commander no longer requires child_process as expected: update scripts/bundle.mjs');
    js = js.replace(COMMANDER_CHILD_PROCESS, 'var childProcess={spawn:(...a)=>require("node:child_process").spawn(...a)};');
  }

  put(`${out}.map`, map);
  put(out, js);

  // Inputs as esbuild resolved them (dist/, commander, package.json), plus the bundle itself: a
  // bundle rewritten without its manifest is stale too.
  const inputs = [...Object.keys(result.metafile.inputs).map((p) => path.resolve(ROOT, p)), out].sort();
  const manifest = {
    // What the code cache is keyed on: a cache made from other code must never be used for this.
    hash: crypto.createHash('sha256').update(js).digest('hex').slice(0, 32),
    // [path relative to dist/bundle, size, mtimeMs]
    inputs: inputs.map((p) => {
      const st = p === out ? fs.statSync(p) : before.get(p);
      if (!st) throw new Error(`bundle: ${p} is an input but not in dist/, package.json or a dependency`);
      return [path.relative(OUT_DIR, p), st.size, st.mtimeMs];
    }),
  };
  put(path.join(OUT_DIR, manifestName), `${JSON.stringify(manifest)}\n`);
  process.stdout.write(`bundle: ${path.relative(ROOT, out)} (${(js.length / 1024).toFixed(0)} KiB from ${inputs.length - 1} files)\n`);
}

// The CLI, and the service's own entry (`system service`, `system dial-stdio`: ts/api/main.ts),
// which stays in memory and needs neither commander nor the CLI's code.
await bundle(ENTRY, 'burrow', 'manifest.json');
await bundle(path.join(ROOT, 'dist', 'api', 'main.js'), 'service', 'service.manifest.json');
