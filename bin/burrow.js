#!/usr/bin/env node
'use strict';
// Entry point. The compiled CLI is dist/ (tsc) and dist/bundle/burrow.js (the same code as one
// file, scripts/bundle.mjs), both built by `npm ci` / `npm run build`; no TypeScript is compiled at
// run time. Start-up is most of what `burrow run` costs in JavaScript, so this file loads the
// bundle with a V8 code cache: one read instead of ~40 module look-ups, and no parsing or
// compiling of the functions an earlier run already compiled. The API service has a bundle of its
// own (dist/bundle/service.js), without the CLI.
const fs = require('fs');
const path = require('path');

/** Writes without setting up process.stdout, which costs more than the rest of `--version`. */
function write(text) {
  try {
    fs.writeSync(1, text);
  } catch {
    process.stdout.write(text); // a non-blocking pipe (EAGAIN): let the stream deal with it
  }
}

/**
 * What the command line runs: the CLI (dist/bundle/burrow.js), or for `system service` and
 * `system dial-stdio` the service's own entry (dist/bundle/service.js, ts/api/main.ts), which
 * stays in memory without commander and the CLI's code. The service entry parses only the plain
 * shapes of its command lines; for anything else (help, a bad flag) the CLI runs as usual.
 */
function load(args) {
  if (commandName(args) === 'system' && /^(service|dial-stdio)$/.test(args[args.indexOf('system') + 1])) {
    const svc = loadBundle('service', 'api/main.js', args);
    const parsed = svc.parseServiceArgs(args);
    if (parsed) return { main: () => svc.main(parsed), afterMain: svc.afterMain };
  }
  return loadBundle('burrow', 'cli/main.js', args);
}

/** A bundle's module through the code cache, or dist/ when the bundle is missing or stale. */
function loadBundle(name, distEntry, args) {
  const debug = !!process.env.BURROW_DEBUG || process.sourceMapsEnabled === true;
  // Stack traces through the source maps (bundle -> dist -> ts/) when debugging.
  if (debug) process.setSourceMapsEnabled(true);
  const dir = path.join(__dirname, '..', 'dist', 'bundle');
  const manifest = freshManifest(dir, name === 'burrow' ? 'manifest.json' : `${name}.manifest.json`);
  if (!manifest) {
    if (process.env.BURROW_DEBUG) process.stderr.write(`burrow: debug: dist/bundle is missing or older than dist/ (tsc ran without scripts/bundle.mjs); loading dist/\n`);
    return require(`../dist/${distEntry}`);
  }
  const file = path.join(dir, `${name}.js`);
  // Node 20 applies source maps only to code its module loader compiled, not to vm.Script.
  if (debug) return require(file);
  return loadCached(file, name === 'burrow' ? 'cli' : 'svc', manifest.hash, args);
}

/**
 * The bundle's manifest when every input (and the bundle) still has the size it was built from
 * and is no newer: anything else means dist/ changed after bundling, and the bundle would run old
 * code. About 70 stat calls, a fraction of a millisecond.
 */
function freshManifest(dir, name) {
  let m;
  try {
    m = JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8'));
  } catch {
    return undefined;
  }
  for (const [rel, size, mtimeMs] of m.inputs) {
    const st = fs.statSync(`${dir}/${rel}`, { throwIfNoEntry: false });
    if (!st || st.size !== size || st.mtimeMs > mtimeMs) return undefined;
  }
  return m;
}

// First byte of a cache file: whether a `burrow run` made it. A cache holds the functions that
// had been compiled when it was written, so one made by `burrow pull` lacks the container code;
// `run` replaces such a cache once.
const MADE_BY_OTHER = 0;
const MADE_BY_RUN = 1;

/**
 * Compiles the bundle with the code cache from the user's cache directory, and arranges to write
 * a new cache after the command when there was none, V8 rejected it (another Node, other flags),
 * or it is not yet a `run` one. V8 checks a cache against the source's length only, so the file
 * name carries the bundle's hash. A cache that cannot be read or written only costs time.
 */
function loadCached(file, kind, hash, args) {
  const vm = require('vm');
  const cacheFile = cachePath(kind, hash);
  let cached;
  let madeBy = MADE_BY_OTHER;
  if (cacheFile) {
    try {
      const fd = fs.openSync(cacheFile, 'r');
      try {
        // Compiled code runs as this user: only a cache this user wrote, that nobody else can.
        const st = fs.fstatSync(fd);
        const b = st.uid === process.geteuid() && (st.mode & 0o022) === 0 ? fs.readFileSync(fd) : undefined;
        if (b && b.length > 1) {
          madeBy = b[0];
          cached = b.subarray(1);
        }
      } finally {
        fs.closeSync(fd);
      }
    } catch {
      /* none yet */
    }
  }
  // latin1: the bundle is pure ASCII (scripts/bundle.mjs escapes the rest), and latin1 decodes
  // straight into a one-byte string. The wrapper is Node's own CommonJS wrapper, on line 1, so
  // line numbers in stack traces are the bundle's.
  const source = fs.readFileSync(file, 'latin1');
  const script = new vm.Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, {
    filename: file,
    cachedData: cached,
  });
  const mod = { exports: {} };
  script.runInThisContext().call(mod.exports, mod.exports, require('module').createRequire(file), mod, file, path.dirname(file));
  const cli = mod.exports;
  if (!cacheFile) return cli;
  const run = commandName(args) === 'run';
  if (!cached || script.cachedDataRejected || (run && madeBy !== MADE_BY_RUN)) {
    return { ...cli, afterMain: () => saveCache(script, cacheFile, run ? MADE_BY_RUN : MADE_BY_OTHER) };
  }
  return cli;
}

/** $XDG_CACHE_HOME/burrow (or ~/.cache/burrow)/KIND-HASH-V8VERSION-ARCH.v8cache (KIND: cli, svc); none without either. */
function cachePath(kind, hash) {
  const env = process.env;
  const base = env.XDG_CACHE_HOME && path.isAbsolute(env.XDG_CACHE_HOME) ? env.XDG_CACHE_HOME : env.HOME && path.isAbsolute(env.HOME) ? path.join(env.HOME, '.cache') : undefined;
  if (!base) return undefined;
  // A HOME that does not exist (a batch system's /nonexistent) is never made for a cache.
  if (base !== env.XDG_CACHE_HOME && !fs.existsSync(env.HOME)) return undefined;
  return path.join(base, 'burrow', `${kind}-${hash}-${process.versions.v8}-${process.arch}.v8cache`);
}

/** The subcommand: the first word that is not a global option or its value. */
function commandName(args) {
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--root' || a === '--runroot' || a === '--storage-driver') i++;
    else if (!a.startsWith('-')) return a;
  }
  return undefined;
}

const KEEP_CACHES = 8;

function saveCache(script, file, madeBy) {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    const dir = path.dirname(file);
    // Only where this user owns the nearest existing directory: root under sudo keeps the
    // caller's HOME, and a root-owned ~/.cache/burrow would leave that user without a cache.
    for (let d = dir; ; d = path.dirname(d)) {
      const st = fs.statSync(d, { throwIfNoEntry: false });
      if (st) {
        if (st.uid !== process.geteuid()) return;
        break;
      }
      if (d === path.dirname(d)) return;
    }
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const data = script.createCachedData();
    fs.writeFileSync(tmp, Buffer.concat([Buffer.from([madeBy]), data]), { mode: 0o600 });
    fs.renameSync(tmp, file); // atomic: a concurrent burrow reads the old cache or the new one
    // One cache per build: keep the newest few (two checkouts used in turn keep theirs).
    const old = fs
      .readdirSync(dir)
      .filter((f) => /^(cli|svc)-.*\.v8cache$/.test(f))
      .map((f) => ({ f, t: fs.statSync(path.join(dir, f)).mtimeMs }))
      .sort((a, b) => b.t - a.t)
      .slice(KEEP_CACHES);
    for (const { f } of old) fs.rmSync(path.join(dir, f), { force: true });
  } catch {
    // A read-only or full disk: the next run tries again.
    try {
      fs.rmSync(tmp, { force: true });
    } catch {
      /* never made */
    }
  }
}

const argv = process.argv.slice(2);
if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-v')) {
  // Answered before loading the CLI: scripts call it often and it needs none of it (`burrow
  // version`, with the runtime's version too, goes through the CLI).
  const { version } = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8'));
  write(`burrow version ${version}\n`);
} else {
  const cli = load(argv);
  cli.main(argv).then((code) => {
    process.exitCode = code;
    if (cli.afterMain) cli.afterMain();
  });
}
