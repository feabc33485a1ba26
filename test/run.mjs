#!/usr/bin/env node
// The test command (`npm test`): Rust unit tests, TypeScript unit tests, then the integration
// tests twice when started as root, once as root and once as the unprivileged test user (created
// here, idempotently). A rootless claim is only proven by the second run. Then the VM lane
// (test/vm): cgroup v2 enforcement in a qemu guest, which this kind of host cannot show. Prints
// one closing line "N passed, N failed".
//
// Started by an ordinary user, the Rust and unit tests run as that user and the rest (which
// creates the test user and needs root) through sudo; without sudo the integration tests run once,
// as that user. A checkout the test user cannot reach (a clone in a mode-0700 home) is bind-mounted
// at a reachable path in a private mount namespace for the runs that need it, so the host's mount
// table is not changed.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureTestUser } from './harness/test-user.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
// `--root-part`: this run was started through sudo by run.mjs itself for an ordinary user.
const rootPart = argv[0] === '--root-part';
const only = rootPart ? argv.slice(1) : argv; // e.g. `npm test -- cargo unit`
const want = (s) => only.length === 0 || only.includes(s);
let passed = 0;
let failed = 0;
const failures = [];
const failedTests = [];

function run(label, cmd, args, opts = {}) {
  process.stdout.write(`\n=== ${label}\n`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', maxBuffer: 1 << 28, ...opts });
  process.stdout.write(r.stdout ?? '');
  if (r.error) throw r.error;
  return r;
}

function cargo() {
  const r = run('cargo test', 'cargo', ['test', '--workspace', '--release']);
  let p = 0;
  let f = 0;
  for (const m of (r.stdout ?? '').matchAll(/test result: \w+\. (\d+) passed; (\d+) failed/g)) {
    p += Number(m[1]);
    f += Number(m[2]);
  }
  if (r.status !== 0 && f === 0) f = 1; // a build failure counts as a failure
  tally('cargo test', p, f);
}

function vitestRun(label, project, user, { reachable = false } = {}) {
  const out = path.join(os.tmpdir(), `burrow-vitest-${project}-${user ? user.uid : process.getuid()}.json`);
  fs.rmSync(out, { force: true });
  // Where the checkout is seen from: itself, or a bind mount of it that others can reach.
  const base = reachable && !othersCanReach(root) ? reachableAlias() : root;
  const vitest = path.join(base, 'node_modules', 'vitest', 'vitest.mjs');
  const args = [vitest, 'run', '--configLoader', 'native', '--project', project, '--reporter=default', '--reporter=json', `--outputFile.json=${out}`];
  // In the alias's private mount namespace: bind the checkout there, then run the command.
  const inAlias = (cmd, cmdArgs) =>
    base === root ? [cmd, cmdArgs] : ['unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-c', 'mount --bind "$1" "$2" && cd "$2" && shift 2 && exec "$@"', 'sh', root, base, cmd, ...cmdArgs]];
  let r;
  if (user) {
    const env = {
      PATH: process.env.PATH,
      HOME: user.home,
      USER: user.name,
      LOGNAME: user.name,
      XDG_RUNTIME_DIR: user.runtimeDir,
      BURROW_TEST_ROLE: 'user',
      CI: process.env.CI ?? '',
    };
    r = run(label, ...inAlias('runuser', ['-u', user.name, '--', 'env', '-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), process.execPath, ...args]));
  } else {
    r = run(label, ...inAlias(process.execPath, args), { env: { ...process.env, BURROW_TEST_ROLE: process.getuid() === 0 ? 'root' : 'user', BURROW_TEST_USER_JSON: testUser ? JSON.stringify(testUser) : '' } });
  }
  let p = 0;
  let f = r.status === 0 ? 0 : 1;
  try {
    const j = JSON.parse(fs.readFileSync(out, 'utf8'));
    p = j.numPassedTests;
    f = j.numFailedTests + (r.status !== 0 && j.numFailedTests === 0 ? 1 : 0);
    // Named again in the closing lines: a CI log shown by its tail still says which test failed.
    for (const file of j.testResults ?? [])
      for (const t of file.assertionResults ?? [])
        if (t.status === 'failed') failedTests.push({ name: `${label}: ${path.relative(root, file.name)}: ${t.fullName}`, message: (t.failureMessages ?? []).join('\n') });
  } catch {
    /* no report: counted as one failure above */
  }
  tally(label, p, f);
}

/**
 * The closing lines' account of the failed tests: each one's name, then the first lines of its
 * message, while a budget of lines lasts. A CI log is often read by its last few dozen lines only;
 * the name alone said which test failed but not why, and a failure seen once on CI may not come
 * back on another machine.
 */
function closingFailures(tests, budget = 24) {
  const plain = (s) => s.replace(/\x1b\[[0-9;]*m/g, '');
  let out = '';
  const each = Math.max(3, Math.floor(budget / Math.max(1, tests.length)) - 1);
  for (const t of tests) {
    out += `FAILED ${t.name}\n`;
    const lines = plain(t.message).split('\n').map((l) => l.trimEnd()).filter((l) => l && !/^\s+at .*node_modules/.test(l));
    for (const l of lines.slice(0, each)) out += `    ${l.slice(0, 240)}\n`;
  }
  return out;
}

function tally(label, p, f) {
  passed += p;
  failed += f;
  if (f) failures.push(label);
  process.stdout.write(`--- ${label}: ${p} passed, ${f} failed\n`);
}

/** Whether other users can reach `dir` (every directory up to it searchable by others). */
function othersCanReach(dir) {
  for (let d = dir; ; d = path.dirname(d)) {
    if ((fs.statSync(d).mode & 0o001) === 0) return false;
    if (d === '/') return true;
  }
}

/** An empty directory that others can reach, where the checkout is bind-mounted for them. */
function reachableAlias() {
  const dir = path.join('/tmp', `burrow-checkout-${process.pid}`);
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  fs.chmodSync(dir, 0o755);
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Started by an ordinary user with sudo: the root half through sudo; its tally joins ours. */
function viaSudo(parts) {
  process.stdout.write(`\n=== integration and VM lane as root (through sudo; it creates the unprivileged test user)\n`);
  const r = spawnSync('sudo', ['--', process.execPath, path.join(root, 'test', 'run.mjs'), '--root-part', ...parts], { cwd: root, stdio: ['inherit', 'pipe', 'inherit'], encoding: 'utf8', maxBuffer: 1 << 28 });
  process.stdout.write(r.stdout ?? '');
  const m = /^(\d+) passed, (\d+) failed$/m.exec(r.stdout ?? '');
  tally('through sudo', m ? Number(m[1]) : 0, m ? Number(m[2]) : 1);
}

function onPath(cmd) {
  return (process.env.PATH ?? '').split(':').some((d) => d && fs.existsSync(path.join(d, cmd)));
}

const asRoot = process.getuid() === 0;
let testUser = null;
if (!rootPart && want('cargo')) cargo();
if (!rootPart && want('unit')) vitestRun('vitest unit', 'unit', null);
const later = ['integration', 'rootless', 'vm'].filter(want);
if (!asRoot && later.length && onPath('sudo')) {
  viaSudo(only.length ? later : []);
} else {
  if (asRoot && (want('integration') || want('rootless'))) testUser = ensureTestUser();
  if (want('integration')) vitestRun(`integration as ${asRoot ? 'root' : os.userInfo().username}${asRoot ? '' : ' (rootless; no sudo here for the root half)'}`, 'integration', null);
  if (testUser && want('rootless')) vitestRun(`integration as ${testUser.name} (rootless)`, 'integration', testUser, { reachable: true });
  // The VM lane needs root (qemu's 9p export of /); its guest test user reads the checkout.
  if (asRoot && want('vm')) vitestRun('vm (cgroup v2 in a qemu guest)', 'vm', null, { reachable: true });
}

process.stdout.write(`\n${closingFailures(failedTests)}${failures.length ? `failed steps: ${failures.join(', ')}\n` : ''}${passed} passed, ${failed} failed\n`);
process.exit(failed ? 1 : 0);
