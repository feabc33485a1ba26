#!/usr/bin/env node
// Runs the OCI runtime-tools validation suite (github.com/opencontainers/runtime-tools,
// `validation/`) against a runc-compatible runtime and counts the programs that finish without a
// failure. The suite is built outside this repository (see README.md); this script only runs it.
//
//   node test/conformance/run.mjs --suite /opt/rt-validation --runtime /path/to/runtime
//        [--rootless] [--only a,b] [--json out.json] [--timeout 60] [--state-root auto|none|DIR]
//        [--log-dir DIR] [--baseline old.json] [--verbose] [--list]
//
// Suite layout (--suite DIR):
//   DIR/bin/<program>          one executable per validation/<program>/<program>.go
//   DIR/runtimetest            static cmd/runtimetest, copied into each bundle by the programs
//   DIR/rootfs-<arch>.tar.gz   the rootfs the programs unpack into each bundle (arch as Go names it)
//   DIR/COMMIT                 optional: the runtime-tools commit the binaries were built from
// A runtime-tools checkout after `make runtimetest validation-executables` also works
// (validation/<program>/<program>.t next to runtimetest and the rootfs tarballs).
//
// Like the suite's own `make localvalidation`, each program runs with RUNTIME=<runtime> in a
// directory holding runtimetest and the rootfs tarball (the programs open both by relative
// path). Bundles go to a private TMPDIR per program, removed afterwards.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const GOARCH = { x64: 'amd64', ia32: '386', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' }[process.arch] ?? process.arch;
const SYS_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

// ---------------------------------------------------------------------------------------------
// Command line

const USAGE = `usage: node test/conformance/run.mjs --suite DIR --runtime PATH [options]
  --suite DIR          built validation suite (DIR/bin/*, DIR/runtimetest, DIR/rootfs-${GOARCH}.tar.gz)
  --runtime PATH       runc-compatible runtime binary or wrapper script (absolute path or on PATH)
  --rootless           run each program as an unprivileged user inside
                       \`unshare --user --map-root-user --map-auto --mount\`
                       (as root: as the user burrowtest, or $BURROW_TEST_USER, created if missing)
  --only a,b,...       run only these programs
  --timeout SEC        per-program timeout (default 60)
  --state-root V       runtime state dir passed as the global \`--root\` flag through a generated
                       wrapper: "auto" (default) = a fresh private dir (under XDG_RUNTIME_DIR when
                       rootless), "none" = the runtime's own default, or an explicit DIR;
                       containers a program leaves behind are deleted only with "auto"
  --ns-setup CMD       shell command run inside each program's private namespaces just before
                       the program (as root, or as the mapped root when rootless), e.g. to hide
                       a mount from the runtime: it never touches the host's mount namespace
  --json FILE          write per-program results as JSON
  --log-dir DIR        keep each program's full stdout/stderr as DIR/<program>.{tap,stderr}
  --baseline FILE      compare with an earlier --json result; exit 1 if a program that was
                       clean there is not clean now
  --verbose            print the TAP diagnostics of failing tests
  --list               list the suite's programs and exit
Exit status: 0 when the run completed (whatever the counts), 1 on a regression against
--baseline, 2 on a usage or setup error.`;

function die(msg) {
  process.stderr.write(`run.mjs: ${msg}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const o = { timeout: 60, stateRoot: 'auto', rootless: false, verbose: false, list: false };
  const need = (i, flag) => {
    if (i + 1 >= argv.length) die(`${flag} needs a value`);
    return argv[i + 1];
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    let [flag, inline] = a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const val = () => (inline !== undefined ? inline : need(i++, flag));
    switch (flag) {
      case '--suite': o.suite = val(); break;
      case '--runtime': o.runtime = val(); break;
      case '--rootless': o.rootless = true; break;
      case '--only': o.only = val().split(',').map((s) => s.trim()).filter(Boolean); break;
      case '--timeout': o.timeout = Number(val()); break;
      case '--state-root': o.stateRoot = val(); break;
      case '--json': o.json = val(); break;
      case '--log-dir': o.logDir = val(); break;
      case '--ns-setup': o.nsSetup = val(); break;
      case '--baseline': o.baseline = val(); break;
      case '--verbose': case '-v': o.verbose = true; break;
      case '--list': o.list = true; break;
      case '--help': case '-h': process.stdout.write(USAGE + '\n'); process.exit(0); break;
      default: die(`unknown argument ${a}\n${USAGE}`);
    }
  }
  if (!o.suite) die(`--suite is required\n${USAGE}`);
  if (!o.runtime && !o.list) die(`--runtime is required\n${USAGE}`);
  if (!(o.timeout > 0)) die('--timeout must be a positive number of seconds');
  return o;
}

// ---------------------------------------------------------------------------------------------
// Suite discovery

function isExecutable(p) {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

function discoverSuite(dir) {
  const suite = path.resolve(dir);
  const programs = new Map(); // name -> absolute path
  const binDir = path.join(suite, 'bin');
  if (fs.existsSync(binDir)) {
    for (const n of fs.readdirSync(binDir).sort()) {
      const p = path.join(binDir, n);
      if (isExecutable(p)) programs.set(n, p);
    }
  } else if (fs.existsSync(path.join(suite, 'validation'))) {
    for (const n of fs.readdirSync(path.join(suite, 'validation')).sort()) {
      const p = path.join(suite, 'validation', n, `${n}.t`);
      if (isExecutable(p)) programs.set(n, p);
    }
  }
  if (programs.size === 0) die(`no validation programs found in ${suite}/bin (or ${suite}/validation/*/*.t)`);
  const runtimetest = path.join(suite, 'runtimetest');
  const rootfs = path.join(suite, `rootfs-${GOARCH}.tar.gz`);
  let commit = null;
  try {
    commit = fs.readFileSync(path.join(suite, 'COMMIT'), 'utf8').trim() || null;
  } catch {
    /* optional */
  }
  return { dir: suite, programs, runtimetest, rootfs, commit };
}

// ---------------------------------------------------------------------------------------------
// TAP

/**
 * Parses a program's TAP output. Indented lines are YAML diagnostics. A program may print more
 * than one TAP stream (each starting "TAP version"), e.g. when it runs runtimetest inside the
 * container and copies its output, so plans are checked per stream.
 */
export function parseTap(text) {
  const r = { streams: [], tests: [], bailOut: null, diagnostics: new Map(), unattached: [] };
  let cur = null;
  const stream = () => {
    if (!cur) {
      cur = { plan: null, tests: 0 };
      r.streams.push(cur);
    }
    return cur;
  };
  let last = null; // the test the next YAML block belongs to, if any
  let yaml = null;
  for (const line of text.split('\n')) {
    if (yaml !== null) {
      if (/^\s+\.\.\.\s*$/.test(line)) {
        const body = yaml.join('\n');
        if (last !== null) r.diagnostics.set(last, body);
        else r.unattached.push(body);
        yaml = null;
      } else yaml.push(line);
      continue;
    }
    if (/^\s+---\s*$/.test(line)) {
      yaml = [];
      continue;
    }
    let m;
    if (/^TAP version \d+/.test(line)) {
      cur = null;
      stream();
      last = null;
    } else if ((m = /^(not )?ok\b\s*(\d+)?\s*(?:-\s*)?(.*)$/.exec(line))) {
      let desc = m[3];
      let directive = null;
      let reason = '';
      // A directive is the first unescaped "#" followed by SKIP or TODO.
      const d = /(^|[^\\])#\s*(SKIP|TODO)\S*\s*(.*)$/i.exec(desc);
      if (d) {
        directive = d[2].toUpperCase();
        reason = d[3].trim();
        desc = desc.slice(0, d.index + d[1].length);
      }
      const st = stream();
      st.tests++;
      const t = { ok: !m[1], num: m[2] ? Number(m[2]) : st.tests, name: desc.trim(), directive, reason, key: r.tests.length };
      r.tests.push(t);
      last = t.key;
    } else if ((m = /^1\.\.(\d+)\s*(?:#\s*(.*))?$/.exec(line))) {
      stream().plan = Number(m[1]);
      last = null;
    } else if ((m = /^Bail out!\s*(.*)$/.exec(line))) {
      r.bailOut = m[1] || 'Bail out!';
    }
  }
  return r;
}

/** The "error" value of a YAML/JSON diagnostic, if it has one (the suite writes JSON-style YAML). */
function diagnosticError(body) {
  try {
    const j = JSON.parse(body);
    return typeof j.error === 'string' ? j.error : null;
  } catch {
    const m = /^\s*"?error"?\s*:\s*"?(.*?)"?\s*,?\s*$/m.exec(body);
    return m ? m[1].replace(/\\n/g, '\n') : null;
  }
}

/**
 * Turns one program's exit status and TAP into a verdict. The suite signals failure three ways,
 * and each counts: a `not ok` line; a non-zero exit (util.Fatal, e.g. when create fails, and the
 * *_fail programs, which print no TAP at all and exit 0 when the runtime correctly refused); and,
 * in the lifecycle/hook programs (hooks, prestart, poststart, poststop, *_fail), an "error"
 * diagnostic printed without any test line under a `1..0` plan.
 */
function judge(name, { code, signal, timedOut, stdout, stderr, spawnError }) {
  const tap = parseTap(stdout);
  const tests = tap.tests;
  const counts = {
    total: tests.length,
    ok: tests.filter((t) => t.ok && !t.directive).length,
    notOk: tests.filter((t) => !t.ok && t.directive !== 'TODO').length,
    skipped: tests.filter((t) => t.ok && t.directive === 'SKIP').length,
    todo: tests.filter((t) => t.directive === 'TODO').length,
  };
  const failures = tests.filter((t) => !t.ok && t.directive !== 'TODO').map((t) => ({ num: t.num, name: t.name, diagnostic: tap.diagnostics.get(t.key) ?? null }));
  const unattachedErrors = tap.unattached.map(diagnosticError).filter((e) => e !== null).map((e) => e.split('\n')[0]);
  const allStderr = stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  const leftovers = allStderr.filter((l) => l.startsWith('run.mjs: cleaned up leftover container ')).map((l) => l.split(' ').pop());
  const stderrLines = allStderr.filter((l) => !l.startsWith('run.mjs: '));
  const res = {
    name,
    status: 'pass',
    exitCode: code,
    signal: signal ?? null,
    plans: tap.streams.map((s) => s.plan),
    counts,
    failures,
    unattachedErrors,
    error: null,
    note: null,
    leftoverContainers: leftovers,
    stderrTail: stderrLines.slice(-12).join('\n'),
  };

  const problems = [];
  if (spawnError) problems.push(`could not start: ${spawnError}`);
  if (timedOut) problems.push('timed out');
  else if (signal) problems.push(`killed by ${signal}`);
  else if (code !== 0 && code !== null) problems.push(`exit status ${code}${stderrLines.length ? `: ${stderrLines.slice(-3).join(' | ')}` : ''}`);
  if (tap.bailOut) problems.push(`bail out: ${tap.bailOut}`);
  for (const [i, s] of tap.streams.entries()) {
    const which = tap.streams.length > 1 ? `TAP stream ${i + 1}: ` : '';
    if (s.plan === null) problems.push(`${which}no plan`);
    else if (s.plan !== s.tests) problems.push(`${which}plan 1..${s.plan} but ${s.tests} tests ran`);
  }

  if (timedOut) res.status = 'timeout';
  else if (failures.length || unattachedErrors.length) res.status = 'fail';
  else if (problems.length) res.status = 'error';
  else if (counts.total > 0 && counts.ok === 0 && counts.skipped > 0) res.status = 'skip'; // every test skipped
  if (problems.length) res.error = problems.join('; ');
  if (res.status === 'pass' && tap.streams.length === 0) res.note = 'no TAP output, exit status 0';
  else if (res.status === 'pass' && counts.total === 0) res.note = '1..0 and no error reported';
  return res;
}

const CLEAN = new Set(['pass', 'skip']);

// ---------------------------------------------------------------------------------------------
// Environment: working dir, rootless user, runtime wrapper, driver

function sh(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
}

function resolveRuntime(rt) {
  if (rt.includes('/')) {
    const p = path.resolve(rt);
    if (!isExecutable(p)) die(`runtime ${p} is not an executable file`);
    return p;
  }
  for (const d of (process.env.PATH || SYS_PATH).split(':')) {
    const p = path.join(d || '.', rt);
    if (isExecutable(p)) return path.resolve(p);
  }
  die(`runtime ${rt} not found on PATH`);
}

function runtimeVersion(rt) {
  try {
    return sh(rt, ['--version'], { timeout: 10000 }).split('\n').filter(Boolean).slice(0, 2).join('; ');
  } catch (e) {
    return `unknown (${String(e.message).split('\n')[0]})`;
  }
}

async function rootlessUser() {
  if (process.getuid() !== 0) {
    const u = os.userInfo();
    let runtimeDir = process.env.XDG_RUNTIME_DIR;
    if (!runtimeDir || !fs.existsSync(runtimeDir)) {
      runtimeDir = `/tmp/burrow-xdg-${u.uid}`;
      fs.mkdirSync(runtimeDir, { recursive: true, mode: 0o700 });
    }
    return { name: u.username, uid: u.uid, gid: u.gid, home: u.homedir, runtimeDir, viaRunuser: false };
  }
  // Root: the same unprivileged user (and subordinate id ranges) the rest of the test suite uses.
  const { ensureTestUser } = await import(path.join(HERE, '..', 'harness', 'test-user.mjs'));
  return { ...ensureTestUser(), viaRunuser: true };
}

function checkSearchable(p, who) {
  for (let d = path.dirname(p); d !== '/'; d = path.dirname(d)) {
    if ((fs.statSync(d).mode & 0o001) === 0) die(`${d} is not searchable by other users, so ${who} cannot reach ${p}; chmod o+x ${d} or move it`);
  }
}

function q(s) {
  return `'${String(s).replace(/'/g, `'\\''`)}'`;
}

// Runs inside the program's private mount namespace (and, rootless, its user namespace): the
// program under a hard timeout, then removes whatever containers it left in the private state
// root, then the bundles in its TMPDIR, from inside the same namespaces so that files owned by
// subordinate ids can go too. Mounts a runtime left under TMPDIR (a container without a mount
// namespace mounts straight into ours) are detached first, so that rm never walks into a mount.
const DRIVER = `#!/bin/sh
# generated by burrow test/conformance/run.mjs
prog="$1"
if [ -n "$CT_NS_SETUP" ]; then
  sh -c "$CT_NS_SETUP" || { echo "run.mjs: --ns-setup command failed" >&2; exit 125; }
fi
timeout -k 5 "$CT_TIMEOUT" "$prog"
rc=$?
if [ -n "$CT_STATE_ROOT" ] && [ -d "$CT_STATE_ROOT" ]; then
  for d in "$CT_STATE_ROOT"/*/; do
    [ -d "$d" ] || continue
    id=$(basename "$d")
    "$RUNTIME" delete --force "$id" >/dev/null 2>&1 || "$RUNTIME" kill "$id" KILL >/dev/null 2>&1
    "$RUNTIME" delete --force "$id" >/dev/null 2>&1
    echo "run.mjs: cleaned up leftover container $id" >&2
  done
fi
case "$TMPDIR" in
  /?*)
    awk -v p="$TMPDIR/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
      while read -r m; do umount -l "$m" 2>/dev/null; done
    if ! awk -v p="$TMPDIR/" 'index($5, p) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
      chmod -R u+rwX "$TMPDIR" 2>/dev/null
      rm -rf --one-file-system "$TMPDIR"/* "$TMPDIR"/.[!.]* 2>/dev/null
    fi
    ;;
esac
exit $rc
`;

async function prepare(o) {
  const suite = discoverSuite(o.suite);
  for (const f of [suite.runtimetest, suite.rootfs]) if (!fs.existsSync(f)) die(`missing ${f} (see test/conformance/README.md)`);
  const runtime = resolveRuntime(o.runtime);
  const user = o.rootless ? await rootlessUser() : null;
  if (user?.viaRunuser) {
    checkSearchable(runtime, user.name);
    for (const p of suite.programs.values()) checkSearchable(p, user.name);
  }
  // Working dir: cwd of every program (runtimetest + rootfs tarball, copied: the programs copy
  // runtimetest with a symlink-preserving copy, so it must be a regular file).
  const base = o.rootless && user.viaRunuser ? '/tmp' : os.tmpdir();
  const work = fs.mkdtempSync(path.join(base, 'burrow-conformance-'));
  // Searchable by everyone, like /tmp where the suite normally puts bundles: containers with a
  // user namespace (linux_uid_mappings) must reach the bundle as their mapped root.
  fs.chmodSync(work, 0o755);
  fs.copyFileSync(suite.runtimetest, path.join(work, 'runtimetest'));
  fs.chmodSync(path.join(work, 'runtimetest'), 0o755);
  fs.copyFileSync(suite.rootfs, path.join(work, path.basename(suite.rootfs)));
  fs.writeFileSync(path.join(work, 'driver.sh'), DRIVER, { mode: 0o755 });

  let stateRoot = null;
  if (o.stateRoot === 'auto') {
    stateRoot = o.rootless ? path.join(user.runtimeDir, `conformance-${path.basename(work)}`) : path.join(work, 'state');
  } else if (o.stateRoot !== 'none') {
    stateRoot = path.resolve(o.stateRoot);
  }
  let runtimeForSuite = runtime;
  if (stateRoot) {
    fs.mkdirSync(stateRoot, { recursive: true, mode: 0o700 });
    // The programs take RUNTIME as one executable path, so global flags need a wrapper.
    runtimeForSuite = path.join(work, 'runtime');
    fs.writeFileSync(runtimeForSuite, `#!/bin/sh\n# generated by burrow test/conformance/run.mjs\nexec ${q(runtime)} --root ${q(stateRoot)} "$@"\n`, { mode: 0o755 });
  }
  if (user?.viaRunuser) {
    for (const p of [work, ...fs.readdirSync(work).map((n) => path.join(work, n))]) fs.chownSync(p, user.uid, user.gid);
    if (stateRoot && stateRoot.startsWith(user.runtimeDir + '/')) fs.chownSync(stateRoot, user.uid, user.gid);
  }
  if (o.logDir) fs.mkdirSync(o.logDir, { recursive: true });
  return { suite, runtime, runtimeForSuite, user, work, stateRoot };
}

function runOne(ctx, o, name, progPath) {
  const { work, user, runtimeForSuite, stateRoot } = ctx;
  const tmp = path.join(work, `tmp-${name}`);
  fs.mkdirSync(tmp);
  fs.chmodSync(tmp, 0o755);
  if (user?.viaRunuser) fs.chownSync(tmp, user.uid, user.gid);
  const vars = {
    RUNTIME: runtimeForSuite,
    TMPDIR: tmp,
    CT_TIMEOUT: String(o.timeout),
    // Leftover containers are only swept from a private (auto) state root, never a shared one.
    CT_STATE_ROOT: o.stateRoot === 'auto' ? stateRoot : '',
    CT_NS_SETUP: o.nsSetup ?? '',
  };
  let cmd;
  let args;
  let env;
  const driver = ['sh', path.join(work, 'driver.sh'), progPath];
  if (o.rootless) {
    const unshare = ['unshare', '--user', '--map-root-user', '--map-auto', '--mount', '--'];
    const uenv = {
      PATH: SYS_PATH,
      HOME: user.home,
      USER: user.name,
      LOGNAME: user.name,
      XDG_RUNTIME_DIR: user.runtimeDir,
      LANG: 'C.UTF-8',
      ...vars,
    };
    if (user.viaRunuser) {
      cmd = 'runuser';
      args = ['-u', user.name, '--', 'env', '-i', ...Object.entries(uenv).map(([k, v]) => `${k}=${v}`), ...unshare, ...driver];
      env = { PATH: SYS_PATH };
    } else {
      [cmd, ...args] = [...unshare, ...driver];
      env = { ...process.env, ...uenv };
    }
  } else {
    // A private mount namespace here too: some programs (linux_ns_itype) make containers without
    // a mount namespace, whose mounts would otherwise land in the host's.
    [cmd, ...args] = ['unshare', '--mount', '--propagation', 'private', '--', ...driver];
    env = { ...process.env, PATH: process.env.PATH || SYS_PATH, ...vars };
  }

  return new Promise((resolve) => {
    const started = Date.now();
    const out = [];
    const err = [];
    let outLen = 0;
    let timedOut = false;
    let spawnError = null;
    let child;
    try {
      child = spawn(cmd, args, { cwd: work, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    } catch (e) {
      spawnError = e.message;
    }
    const finish = (code, signal) => {
      clearTimeout(hard);
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      // The driver's `timeout` exits 124 (137 after -k) when the program overran.
      if (code === 124 || code === 137) timedOut = true;
      const res = judge(name, { code, signal, timedOut, stdout, stderr, spawnError });
      res.durationMs = Date.now() - started;
      if (o.logDir) {
        fs.writeFileSync(path.join(o.logDir, `${name}.tap`), stdout);
        fs.writeFileSync(path.join(o.logDir, `${name}.stderr`), stderr);
      }
      try {
        fs.rmSync(tmp, { recursive: true, force: true });
      } catch (e) {
        process.stderr.write(`run.mjs: could not remove ${tmp}: ${e.message}\n`);
      }
      resolve(res);
    };
    // Backstop in case the in-environment timeout does not bring the program down.
    const hard = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }, (o.timeout + 30) * 1000);
    if (!child) return finish(null, null);
    child.stdout.on('data', (d) => {
      if (outLen < 64 << 20) out.push(d);
      outLen += d.length;
    });
    child.stderr.on('data', (d) => err.push(d));
    child.on('error', (e) => {
      spawnError = e.message;
    });
    child.on('close', (code, signal) => finish(code, signal));
  });
}

// ---------------------------------------------------------------------------------------------
// Reporting

function line(res, verbose) {
  const c = res.counts;
  const tally = `${c.ok} ok, ${c.notOk} not ok, ${c.skipped} skipped${c.todo ? `, ${c.todo} todo` : ''}`;
  const tag = res.status.toUpperCase().padEnd(7);
  let s = `${tag} ${res.name.padEnd(36)} ${tally}  ${(res.durationMs / 1000).toFixed(1)}s${res.note ? `  (${res.note})` : ''}`;
  if (res.failures.length) {
    const names = res.failures.slice(0, 3).map((f) => `#${f.num} ${f.name}`);
    s += `\n          failed: ${names.join(' | ')}${res.failures.length > 3 ? ` | ... (${res.failures.length} failures)` : ''}`;
  }
  for (const e of res.unattachedErrors) s += `\n          reported: ${e}`;
  if (res.error) s += `\n          error: ${res.error}`;
  if (verbose) {
    for (const f of res.failures) if (f.diagnostic) s += `\n          --- #${f.num}\n${f.diagnostic.replace(/^/gm, '          ')}`;
    if (res.status !== 'pass' && res.stderrTail) s += `\n          stderr:\n${res.stderrTail.replace(/^/gm, '            ')}`;
  }
  return s;
}

function summarize(results) {
  const by = (s) => results.filter((r) => r.status === s).length;
  return {
    programs: results.length,
    withoutFailure: results.filter((r) => CLEAN.has(r.status)).length,
    // What a plain TAP consumer (one that ignores diagnostics printed without a test line) would count.
    withoutFailureIgnoringUnattachedErrors: results.filter((r) => CLEAN.has(r.status) || (r.status === 'fail' && r.failures.length === 0 && r.error === null)).length,
    pass: by('pass'),
    skip: by('skip'),
    fail: by('fail'),
    error: by('error'),
    timeout: by('timeout'),
    tests: {
      ok: results.reduce((a, r) => a + r.counts.ok, 0),
      notOk: results.reduce((a, r) => a + r.counts.notOk, 0),
      skipped: results.reduce((a, r) => a + r.counts.skipped, 0),
    },
  };
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const o = parseArgs(process.argv.slice(2));
  if (o.list) {
    const suite = discoverSuite(o.suite);
    process.stdout.write([...suite.programs.keys()].join('\n') + '\n');
    return 0;
  }
  if (!o.rootless && process.getuid() !== 0) die('without --rootless, run as root (each program runs in a private mount namespace, made with unshare --mount)');
  {
    for (const t of ['unshare', 'timeout', 'awk', ...(o.rootless && process.getuid() === 0 ? ['runuser'] : [])]) {
      try {
        sh('sh', ['-c', `command -v ${t}`]);
      } catch {
        die(`needs ${t} on PATH`);
      }
    }
  }
  {
    const programs = discoverSuite(o.suite).programs;
    const unknown = (o.only ?? []).filter((n) => !programs.has(n));
    if (unknown.length) die(`unknown program(s): ${unknown.join(', ')} (see --list)`);
  }
  const ctx = await prepare(o);
  const selected = o.only ?? [...ctx.suite.programs.keys()];
  const version = runtimeVersion(ctx.runtime);
  const mode = o.rootless ? `rootless (as ${ctx.user.name}, uid ${ctx.user.uid}, in unshare --user --map-root-user --map-auto --mount)` : `as ${os.userInfo().username} (uid ${process.getuid()}), in unshare --mount`;
  process.stdout.write(`runtime   ${ctx.runtime} (${version})\n${o.nsSetup ? `ns-setup  ${o.nsSetup}\n` : ''}suite     ${ctx.suite.dir}${ctx.suite.commit ? ` @ ${ctx.suite.commit}` : ''}, ${selected.length} programs\nmode      ${mode}\nstate     ${ctx.stateRoot ? `--root ${ctx.stateRoot}` : "runtime's default --root"}\ntimeout   ${o.timeout}s per program\n\n`);

  const results = [];
  let stopping = false;
  const onSignal = () => {
    stopping = true;
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  for (const name of selected) {
    if (stopping) break;
    const res = await runOne(ctx, o, name, ctx.suite.programs.get(name));
    results.push(res);
    process.stdout.write(line(res, o.verbose) + '\n');
  }

  const summary = summarize(results);
  process.stdout.write(
    `\n${summary.withoutFailure} of ${summary.programs} programs without failure` +
      ` (${summary.pass} pass, ${summary.skip} all-skipped; ${summary.fail} fail, ${summary.error} error, ${summary.timeout} timeout)` +
      `\n(${summary.withoutFailureIgnoringUnattachedErrors} if errors reported without a test line are ignored)` +
      `\ntests: ${summary.tests.ok} ok, ${summary.tests.notOk} not ok, ${summary.tests.skipped} skipped\n`,
  );

  let regressions = [];
  if (o.baseline) {
    const base = JSON.parse(fs.readFileSync(o.baseline, 'utf8'));
    const was = new Map(base.programs.map((p) => [p.name, p.status]));
    regressions = results.filter((r) => CLEAN.has(was.get(r.name)) && !CLEAN.has(r.status)).map((r) => r.name);
    const fixed = results.filter((r) => was.has(r.name) && !CLEAN.has(was.get(r.name)) && CLEAN.has(r.status)).map((r) => r.name);
    process.stdout.write(`against ${o.baseline} (${base.summary.withoutFailure} of ${base.summary.programs}): ` + `${regressions.length} regressed${regressions.length ? ` (${regressions.join(', ')})` : ''}, ` + `${fixed.length} newly clean${fixed.length ? ` (${fixed.join(', ')})` : ''}\n`);
  }

  if (o.json) {
    const doc = {
      tool: 'burrow test/conformance/run.mjs',
      date: new Date().toISOString(),
      suite: { dir: ctx.suite.dir, commit: ctx.suite.commit, source: 'https://github.com/opencontainers/runtime-tools' },
      runtime: { path: ctx.runtime, version },
      mode: o.rootless ? 'rootless' : 'root',
      user: o.rootless ? ctx.user.name : os.userInfo().username,
      stateRoot: ctx.stateRoot ? 'private' : 'runtime default',
      host: { kernel: os.release(), arch: process.arch },
      timeoutSec: o.timeout,
      nsSetup: o.nsSetup ?? null,
      summary,
      programs: results.map((r) => ({ ...r, failures: r.failures.map(({ num, name }) => ({ num, name })) })),
    };
    fs.mkdirSync(path.dirname(path.resolve(o.json)), { recursive: true });
    fs.writeFileSync(o.json, JSON.stringify(doc, null, 2) + '\n');
  }

  // The state root is ours when private; the work dir always is. Files a rootless run leaves
  // behind are owned by subordinate ids, which root can remove (an unprivileged caller may not).
  for (const d of [ctx.work, o.stateRoot === 'auto' ? ctx.stateRoot : null]) {
    try {
      if (d) fs.rmSync(d, { recursive: true, force: true });
    } catch (e) {
      process.stderr.write(`run.mjs: could not remove ${d}: ${e.message}\n`);
    }
  }
  return regressions.length ? 1 : 0;
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1] === fileURLToPath(import.meta.url)) {
  main().then(
    (code) => process.exit(code),
    (e) => {
      process.stderr.write(`run.mjs: ${e.stack || e}\n`);
      process.exit(2);
    },
  );
}
