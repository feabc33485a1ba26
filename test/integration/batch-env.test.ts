/**
 * `burrow run` inside a batch job (issue 17): a Slurm job step has no XDG_RUNTIME_DIR, no
 * systemd/logind session and no D-Bus, a TMPDIR of its own (`/tmp/slurm-JOBID`, made for the
 * job and removed after it), and HOME possibly on a shared filesystem; sbatch may also carry the
 * login node's XDG_RUNTIME_DIR and DBUS_SESSION_BUS_ADDRESS into a node where they do not exist.
 * burrow is run here with exactly such an environment (`env -i PATH HOME USER TMPDIR`, no flag
 * naming a store or a runtime root): `run --rm`, `run -d` + `logs` + `rm -f`, two jobs of the same
 * user at once on this node, and where the state went: the store under HOME, the runtime root
 * in the private /tmp/burrow-run-UID that every job and login of the user on this node shares
 * (as they would share /run/user/UID), nothing in the job's TMPDIR or elsewhere in HOME.
 * Runs as root and as the unprivileged test user.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, IS_ROOT } from './helpers';
import { exec } from './image-helpers';
import type { StorageSettings } from '../../ts/storage/store';
import { removeTrees } from '../../ts/storage/unpack';
import { makeRootfs } from '../harness/bundle.mjs';

const uid = process.getuid!();
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-batch-env-'));
/** HOME of the jobs: the user's, on whatever filesystem (shared by both jobs here). */
const home = path.join(work, 'home');
const tarball = path.join(work, 'busybox.tar');
const IMAGE = 'batch/busybox:1';
/** The runtime root every command without XDG_RUNTIME_DIR uses on this node. */
const RUNROOT = `/tmp/burrow-run-${uid}`;
const names: string[] = [];

/** A job's environment: nothing but what a batch step has. */
function jobEnv(job: string, extra: Record<string, string> = {}, makeTmp = true): Record<string, string> {
  const tmp = path.join(work, `slurm-${job}`);
  if (makeTmp) fs.mkdirSync(tmp, { recursive: true, mode: 0o700 });
  return { PATH: process.env.PATH!, HOME: home, USER: os.userInfo().username, TMPDIR: tmp, SLURM_JOB_ID: job, ...extra };
}

/** `burrow ARGS` with exactly `env` (env -i): no --root, no --runroot. */
function job(env: Record<string, string>, args: string[]) {
  return exec('env', ['-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), process.execPath, BIN, ...args], { timeoutMs: 90_000, env: {} });
}

beforeAll(async () => {
  fs.mkdirSync(home, { mode: 0o700 });
  const rf = path.join(work, 'rootfs-src');
  makeRootfs(rf);
  const t = spawnSync('tar', ['--numeric-owner', '--owner=0', '--group=0', '-cf', tarball, '-C', path.join(rf, 'rootfs'), '.']);
  if (t.status !== 0) throw new Error(`tar: ${t.stderr}`);
  const r = await job(jobEnv('40'), ['import', tarball, IMAGE]);
  if (r.code !== 0) throw new Error(`import: ${r.stderr}`);
}, 120_000);

afterAll(async () => {
  if (names.length) await job(jobEnv('99'), ['rm', '-f', ...names]);
  const settings = path.join(home, '.local', 'share', 'burrow', 'storage.json');
  if (fs.existsSync(settings)) {
    const s = JSON.parse(fs.readFileSync(settings, 'utf8')) as StorageSettings;
    if (s.idMode !== 'root') await removeTrees(s, [home]).catch(() => undefined);
  }
  fs.rmSync(work, { recursive: true, force: true });
});

/** run --rm, run -d, logs, rm -f in one job; returns what the job saw. */
async function steps(env: Record<string, string>, name: string): Promise<void> {
  names.push(name);
  const fg = await job(env, ['run', '--rm', IMAGE, 'echo', `hello from ${name}`]);
  expect(fg, fg.stderr).toMatchObject({ code: 0, stdout: `hello from ${name}\n` });
  const d = await job(env, ['run', '-d', '--name', name, IMAGE, 'sh', '-c', `echo started ${name}; exec sleep 1000`]);
  expect(d.code, d.stderr).toBe(0);
  const id = d.stdout.trim();
  expect(id).toMatch(/^[0-9a-f]{64}$/);
  // Its runtime state is in the node's runtime root of this user, not in the job's TMPDIR.
  expect(fs.existsSync(path.join(RUNROOT, 'runtime', id)), `state of ${id} in ${RUNROOT}/runtime`).toBe(true);
  let logs = await job(env, ['logs', name]);
  // The log has the line once the container's shell has written it.
  for (let i = 0; i < 200 && logs.code === 0 && !logs.stdout.includes('started'); i++) {
    await new Promise((r) => setTimeout(r, 100));
    logs = await job(env, ['logs', name]);
  }
  expect(logs, logs.stderr).toMatchObject({ code: 0, stdout: `started ${name}\n` });
  const ps = await job(env, ['ps', '--format', '{{.Names}} {{.Status}}']);
  expect(ps.stdout).toMatch(new RegExp(`^${name} Up`, 'm'));
  const rm = await job(env, ['rm', '-f', name]);
  expect(rm, rm.stderr).toMatchObject({ code: 0, stdout: `${name}\n` });
  names.splice(names.indexOf(name), 1);
  expect(fs.existsSync(path.join(RUNROOT, 'runtime', id))).toBe(false);
  // Nothing of burrow's stays in the job's TMPDIR (Slurm removes it after the job), and burrow
  // does not make one that is missing.
  if (fs.existsSync(env.TMPDIR!)) expect(fs.readdirSync(env.TMPDIR!)).toEqual([]);
}

describe(`burrow run in a batch job's environment, as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it('works with defaults: no XDG_RUNTIME_DIR, no D-Bus, a TMPDIR of the job', async () => {
    await steps(jobEnv('41'), `batch-${process.pid}-a`);
    // The runtime root: private to this user on this node.
    const st = fs.statSync(RUNROOT);
    expect(st.uid).toBe(uid);
    expect(st.mode & 0o777).toBe(0o700);
    // HOME holds the store (and the CLI's code cache, bin/burrow.js) and nothing else.
    expect(fs.readdirSync(home).filter((n) => n !== '.cache')).toEqual(['.local']);
    expect(fs.existsSync(path.join(home, '.local', 'share', 'burrow', 'storage.json'))).toBe(true);
  });

  it("works when sbatch carried the login node's XDG_RUNTIME_DIR and D-Bus address, which do not exist on the node", async () => {
    const gone = path.join(work, 'run-user-gone');
    await steps(jobEnv('42', { XDG_RUNTIME_DIR: gone, DBUS_SESSION_BUS_ADDRESS: `unix:path=${gone}/bus` }), `batch-${process.pid}-b`);
    expect(fs.existsSync(gone)).toBe(false);
  });

  it('works while the TMPDIR it was given does not exist (made later by the job, or removed by its epilog)', async () => {
    const env = jobEnv('45', {}, false);
    await steps(env, `batch-${process.pid}-e`);
    expect(fs.existsSync(env.TMPDIR!)).toBe(false);
  });

  it('two jobs of the same user on one node at once do not disturb each other', async () => {
    await Promise.all([steps(jobEnv('43'), `batch-${process.pid}-c`), steps(jobEnv('44'), `batch-${process.pid}-d`)]);
  });
});
