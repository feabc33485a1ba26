#!/usr/bin/env node
// The test command (`npm test`): Rust unit tests, TypeScript unit tests, then the integration
// tests twice when started as root, once as root and once as the unprivileged test user (created
// here, idempotently). A rootless claim is only proven by the second run. Then the VM lane
// (test/vm): cgroup v2 enforcement in a qemu guest, which this kind of host cannot show. Prints
// one closing line "N passed, N failed".
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureTestUser } from './harness/test-user.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const vitest = path.join(root, 'node_modules', 'vitest', 'vitest.mjs');
const only = process.argv.slice(2); // e.g. `npm test -- cargo unit`
const want = (s) => only.length === 0 || only.includes(s);
let passed = 0;
let failed = 0;
const failures = [];

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

function vitestRun(label, project, user) {
  const out = path.join(os.tmpdir(), `burrow-vitest-${project}-${user ? user.uid : process.getuid()}.json`);
  fs.rmSync(out, { force: true });
  const args = [vitest, 'run', '--configLoader', 'native', '--project', project, '--reporter=default', '--reporter=json', `--outputFile.json=${out}`];
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
    r = run(label, 'runuser', ['-u', user.name, '--', 'env', '-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), process.execPath, ...args]);
  } else {
    r = run(label, process.execPath, args, { env: { ...process.env, BURROW_TEST_ROLE: process.getuid() === 0 ? 'root' : 'user', BURROW_TEST_USER_JSON: testUser ? JSON.stringify(testUser) : '' } });
  }
  let p = 0;
  let f = r.status === 0 ? 0 : 1;
  try {
    const j = JSON.parse(fs.readFileSync(out, 'utf8'));
    p = j.numPassedTests;
    f = j.numFailedTests + (r.status !== 0 && j.numFailedTests === 0 ? 1 : 0);
  } catch {
    /* no report: counted as one failure above */
  }
  tally(label, p, f);
}

function tally(label, p, f) {
  passed += p;
  failed += f;
  if (f) failures.push(label);
  process.stdout.write(`--- ${label}: ${p} passed, ${f} failed\n`);
}

function checkReadable() {
  // The test user must be able to reach the checkout.
  for (let d = root; d !== '/'; d = path.dirname(d)) {
    if ((fs.statSync(d).mode & 0o001) === 0) {
      throw new Error(`${d} is not searchable by other users, so the unprivileged test user cannot reach the checkout; clone burrow elsewhere (e.g. /srv or /tmp) or chmod o+x ${d}`);
    }
  }
}

let testUser = null;
if (want('cargo')) cargo();
if (want('unit')) vitestRun('vitest unit', 'unit', null);
if (process.getuid() === 0 && (want('integration') || want('rootless'))) {
  checkReadable();
  testUser = ensureTestUser();
}
if (want('integration')) vitestRun(`integration as ${process.getuid() === 0 ? 'root' : os.userInfo().username}`, 'integration', null);
if (testUser && want('rootless')) vitestRun(`integration as ${testUser.name} (rootless)`, 'integration', testUser);
if (want('vm')) {
  checkReadable(); // the guest's test user reads the checkout through 9p
  vitestRun('vm (cgroup v2 in a qemu guest)', 'vm', null);
}

process.stdout.write(`\n${failures.length ? `failed steps: ${failures.join(', ')}\n` : ''}${passed} passed, ${failed} failed\n`);
process.exit(failed ? 1 : 0);
