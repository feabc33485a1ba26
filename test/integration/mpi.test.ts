/**
 * MPI jobs, the hybrid model (issue 18, as Apptainer runs them): the host's `mpirun` (Debian's
 * Open MPI 4.1) starts `burrow run --hpc IMAGE /app/hello` once per rank, so each rank is a
 * process in a container of its own, and the Open MPI inside the image (the host's files, copied
 * by test/harness/mpi.mjs into a `burrow build` from the Debian base image) meets the host's
 * orted through PMIx (its rendezvous in $TMPDIR, bound by --hpc, and on the host's loopback).
 * The ranks talk over shared memory (btl vader, through the host's /dev/shm that --hpc binds)
 * and over TCP (btl tcp, the host's network), each forced in a run of its own, with a ping-pong
 * up to 4 MiB whose every byte is checked. As root (mpirun --allow-run-as-root) and as the
 * unprivileged test user.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { BIN, IS_ROOT, sh, testUser, type TestUser } from './helpers';
import { setup, type Env } from './lifecycle.helpers';
import { baseImage } from '../harness/base-images.mjs';
import { hasOpenMpi, mpiContext } from '../harness/mpi.mjs';
import { ociConf, slurmUnavailable, startSlurm, type SlurmCluster } from '../harness/slurm.mjs';
import { clientRuntime } from '../harness/clients.mjs';
import { ensureTestUser } from '../harness/test-user.mjs';

let env: Env;
let tmp: string;
const IMG = 'mpi-hello';
const T = { timeout: 600_000 };

beforeAll(() => {
  if (!hasOpenMpi()) throw new Error('Open MPI is not installed: run .ci/setup (apt-get install openmpi-bin libopenmpi-dev)');
  env = setup('mpi');
  const base = baseImage('minbase') as { name: string; archive: string };
  const load = env.b(['load', '-i', base.archive], { timeout: 300_000 });
  if (load.code !== 0) throw new Error(`load: ${load.stderr}`);
  const ctx = path.join(env.work, 'ctx');
  mpiContext(ctx, base.name);
  const build = env.b(['build', '-t', IMG, ctx], { timeout: 300_000 });
  if (build.code !== 0) throw new Error(`build: ${build.stderr}`);
  // The job's own TMPDIR: PMIx's rendezvous files and Open MPI's session directory are there.
  tmp = path.join(env.work, 'tmp');
  fs.mkdirSync(tmp);
}, 600_000);
afterEach(() => env.cleanup(), 120_000);
afterAll(() => env?.dispose(), 120_000);

/** `mpirun -np N burrow run --rm --hpc IMG /app/hello` with extra MCA settings in the environment. */
function mpirun(np: number, vars: Record<string, string>) {
  const args = ['--oversubscribe', ...(IS_ROOT ? ['--allow-run-as-root'] : []), '-np', String(np), process.execPath, BIN, '--root', env.store, '--runroot', env.runroot, 'run', '--rm', '--hpc', IMG, '/app/hello'];
  // Only the loopback (the tests' rule: no other address), for Open MPI's own channel and btl tcp.
  const r = spawnSync('mpirun', args, {
    encoding: 'utf8',
    cwd: env.work,
    env: { ...process.env, TMPDIR: tmp, OMPI_MCA_oob_tcp_if_include: 'lo', OMPI_MCA_btl_tcp_if_include: 'lo', ...vars },
    timeout: 500_000,
  });
  if (r.error) throw r.error;
  return { code: r.status ?? 137, stdout: r.stdout, stderr: r.stderr };
}

const hostMnt = fs.readlinkSync('/proc/self/ns/mnt');
const hostVersion = /\(Open MPI\) (\S+)/.exec(spawnSync('mpirun', ['--version'], { encoding: 'utf8' }).stdout)?.[1];

function expectJob(r: ReturnType<typeof mpirun>, np: number) {
  expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
  const hellos = [...r.stdout.matchAll(/^hello rank=(?<rank>\d+) size=(?<size>\d+) host=\S+ uid=(?<uid>\d+) mnt=(?<mnt>\S+) root=\d+ lib=(?<lib>.*)$/gm)].map((m) => m.groups!);
  expect(hellos.map((h) => Number(h.rank)).sort()).toEqual(Array.from({ length: np }, (_, i) => i));
  for (const h of hellos) {
    // The Open MPI inside is the host's version.
    expect(h).toMatchObject({ size: String(np), uid: String(process.getuid!()), lib: `Open MPI v${hostVersion}` });
    // A container each: a mount namespace that is not the host's, one per rank.
    expect(h.mnt).not.toBe(hostMnt);
  }
  expect(new Set(hellos.map((h) => h.mnt)).size).toBe(np);
  expect(r.stdout).toMatch(/^pingpong ok rounds=70 max=4194304$/m);
  // --hpc turns CMA off for Open MPI (ranks are in separate user namespaces, where it cannot work): no warning.
  expect(r.stderr).not.toMatch(/single_copy_mechanism|cma-different-user-namespace/);
}

describe(`MPI, the hybrid model, as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it('mpirun -np 4 burrow run --hpc: a hello from every rank in its own container, and a ping-pong', T, () => {
    expectJob(mpirun(4, {}), 4);
  });

  it('over shared memory only (btl self,vader)', T, () => {
    expectJob(mpirun(2, { OMPI_MCA_btl: 'self,vader' }), 2);
  });

  it('over TCP only (btl self,tcp)', T, () => {
    expectJob(mpirun(2, { OMPI_MCA_btl: 'self,tcp' }), 2);
  });
});

/**
 * Under Slurm (test/harness/slurm.mjs's cluster, Debian's slurm-wlm 22.05): `srun --mpi=pmix`
 * starts the ranks and slurmstepd is their PMIx server (Debian's Open MPI has no pmi2 client:
 * pmix it is). The job's user is the test user (the root lane) or ourselves (a single-user
 * cluster), with a store of theirs where the same image is built. Two ranks on one node, and one
 * rank on each of the two nodes: each test node has a temporary directory of its own (TmpFS=
 * .../%n), where Slurm's PMIx plugin makes its per-step directory, named only by uid, job and
 * step (on a /tmp shared by both nodes the step collided with itself, "File exists").
 */
describe(`MPI under Slurm (srun --mpi=pmix), jobs as ${IS_ROOT ? 'the unprivileged test user' : 'ourselves'}`, () => {
  let cluster: SlurmCluster;
  let dir: string;
  let user: TestUser | undefined;
  const global = () => ['--root', path.join(dir, 'store'), '--runroot', path.join(dir, 'run')];

  beforeAll(async () => {
    const why = slurmUnavailable();
    if (why) throw new Error(why);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-mpi-slurm-'));
    fs.chmodSync(dir, 0o755);
    if (IS_ROOT) {
      user = testUser() ?? (ensureTestUser() as TestUser);
      // The user's own store, with the image built by them from the same context.
      const ctx = path.join(dir, 'ctx');
      mpiContext(ctx, baseImage('minbase').name);
      execFileSync('chown', ['-R', `${user.uid}:${user.gid}`, dir]);
      const base = baseImage('minbase');
      for (const args of [['load', '-i', base.archive], ['build', '-t', IMG, ctx]]) {
        const r = sh(process.execPath, [BIN, ...global(), ...args], { as: user });
        if (r.code !== 0) throw new Error(`burrow ${args[0]} as ${user.name}: ${r.stderr}`);
      }
    }
    const roots = path.join(dir, 'runtime');
    fs.mkdirSync(roots);
    fs.chmodSync(roots, 0o1777);
    cluster = await startSlurm(path.join(dir, 'cluster'), { oci: ociConf(clientRuntime(), path.join(roots, '%u')) });
  }, 600_000);
  afterAll(async () => {
    await cluster?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it('srun -N1 -n2 --mpi=pmix burrow run --hpc: slurmstepd is the PMIx server of two ranks, each in its own container', T, () => {
    const g = IS_ROOT ? global() : ['--root', env.store, '--runroot', env.runroot];
    const r = cluster.run(['srun', '-N1', '-n2', '--overcommit', '--mpi=pmix', process.execPath, BIN, ...g, 'run', '--rm', '--hpc', IMG, '/app/hello'], { as: user, cwd: dir, timeout: 300_000 });
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    const hellos = [...(r.stdout as string).matchAll(/^hello rank=(\d+) size=2 host=\S+ uid=(\d+) mnt=(\S+) /gm)];
    expect(hellos.map((m) => m[1]).sort()).toEqual(['0', '1']);
    for (const m of hellos) expect(m[2]).toBe(String(user?.uid ?? process.getuid!()));
    expect(new Set(hellos.map((m) => m[3])).size).toBe(2);
    expect(r.stdout).toMatch(/^pingpong ok rounds=70 max=4194304$/m);
  });

  it('srun -N2 -n2 --mpi=pmix burrow run --hpc: one rank per node, over TCP between the nodes', T, () => {
    const g = IS_ROOT ? global() : ['--root', env.store, '--runroot', env.runroot];
    // Each rank says, from inside its container, which node it is on (slurmstepd's
    // SLURMD_NODENAME, passed in by --hpc with the host's environment), then runs the hello.
    const script = 'echo "node rank=$SLURM_PROCID node=$SLURMD_NODENAME"; exec /app/hello';
    // TCP only: between two nodes there is no shared memory (as root the nodes are two network
    // namespaces, the ranks talk between 10.217.0.11 and .12; a single-user cluster's nodes are
    // both on the loopback).
    const r = cluster.run(['srun', '-N2', '-n2', '--mpi=pmix', process.execPath, BIN, ...g, 'run', '--rm', '--hpc', IMG, 'sh', '-c', script], {
      as: user,
      cwd: dir,
      env: { OMPI_MCA_btl: 'self,tcp' },
      timeout: 300_000,
    });
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    const nodes: Record<string, string> = Object.fromEntries([...(r.stdout as string).matchAll(/^node rank=(\d+) node=(\S+)$/gm)].map((m) => [m[1], m[2]]));
    // One rank on each node.
    expect(Object.keys(nodes).sort(), r.stdout).toEqual(['0', '1']);
    expect(new Set(Object.values(nodes))).toEqual(new Set(['node1', 'node2']));
    const hellos = [...(r.stdout as string).matchAll(/^hello rank=(\d+) size=2 host=(\S+) uid=(\d+) mnt=(\S+) /gm)];
    expect(hellos.map((m) => m[1]).sort()).toEqual(['0', '1']);
    for (const m of hellos) {
      expect(m[3]).toBe(String(user?.uid ?? process.getuid!()));
      // As root each node has a hostname of its own (a UTS namespace), which the container shares.
      if (IS_ROOT) expect(m[2]).toBe(nodes[m[1]!]);
    }
    expect(new Set(hellos.map((m) => m[4])).size).toBe(2);
    expect(r.stdout).toMatch(/^pingpong ok rounds=70 max=4194304$/m);
  });
});
