/**
 * burrow-runtime driven by the real Slurm (Debian's slurm-wlm 22.05 with munge), issue 17: a
 * two-node cluster that this file starts and stops itself (test/harness/slurm.mjs: its own
 * slurm.conf, oci.conf, munge key, spool and state, each slurmd in a network namespace of its
 * own), with oci.conf calling burrow-runtime rootless as SchedMD's containers guide calls runc.
 * Jobs are submitted as the unprivileged test user, so every container here is a rootless one
 * started by slurmstepd as that user, with no XDG_RUNTIME_DIR and no systemd session.
 *
 * The root run starts the daemons as root and submits as the test user (steps switch to that
 * user, as on a real cluster). The unprivileged run starts a single-user cluster: the daemons run
 * as that user, who also submits, and both nodes are on the host's loopback (the user cannot make
 * network namespaces); the containers are the same rootless ones. BURROW_SLURM_RUNTIME=
 * /usr/sbin/runc runs the same tests with Debian's runc, which pass (but for the keep-id bundle,
 * where runc 1.1.5 cannot fchown the step's stdio to the container's user): the setup is valid
 * and a failure is burrow-runtime's.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, burrow, IS_ROOT, testUser, type TestUser } from './helpers';
import { makeBundle, type BundleConfig } from '../harness/bundle.mjs';
import { buildClientImages, clientRuntime } from '../harness/clients.mjs';
import { NODES, ociConf, slurmUnavailable, startSlurm, type SlurmCluster } from '../harness/slurm.mjs';
import { ensureTestUser } from '../harness/test-user.mjs';

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

const RUNTIME: string = process.env.BURROW_SLURM_RUNTIME || clientRuntime();
const show = (r: Result): string => `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;

const CLUSTER = IS_ROOT ? 'daemons as root, two nodes in network namespaces of their own' : 'a single-user cluster: daemons as this user, two nodes on the loopback';

describe(`Slurm 22.05 (srun/sbatch --container) with burrow-runtime rootless, jobs as the unprivileged user (${CLUSTER})`, () => {
  let work = '';
  let user: TestUser;
  let cluster: SlurmCluster;
  let bundle = '';
  let stateRoot = '';

  /** A client as the test user, from a directory of theirs. */
  const asUser = (argv: string[], env: Record<string, string> = {}): Result => cluster.run(argv, { as: IS_ROOT ? user : undefined, env, cwd: work });
  /** As root, gives the user what the test made for them (unprivileged, it is theirs already). */
  const own = (p: string) => IS_ROOT && execFileSync('chown', ['-R', `${user.uid}:${user.gid}`, p]);

  /**
   * A busybox bundle for Slurm: rootless (container root is the job's user), without network and
   * UTS namespaces (Slurm's containers use the node's network, and show the node's hostname),
   * owned by the user, who runs the runtime.
   */
  const slurmBundle = (name: string, edit?: (c: BundleConfig) => void): string => {
    const dir = path.join(work, name);
    makeBundle(dir, {
      args: ['sh'],
      edit: (c) => {
        c.linux.uidMappings = [{ containerID: 0, hostID: user.uid, size: 1 }];
        c.linux.gidMappings = [{ containerID: 0, hostID: user.gid, size: 1 }];
        c.linux.namespaces = c.linux.namespaces.filter((n) => !['network', 'uts'].includes(n.type));
        delete c.hostname;
        edit?.(c);
      },
    });
    own(dir);
    return dir;
  };

  let built: { busybox: { archive: string; ref: string } } | undefined;
  /** busybox as a docker archive the user can read (built once, when a test needs it). */
  const images = () => {
    if (!built) {
      built = buildClientImages(path.join(work, 'images'));
      own(path.join(work, 'images'));
    }
    return built!;
  };
  let home = '';
  /** A HOME of the user's for burrow's store (the store lands in it with defaults). */
  const userHome = (): string => {
    if (!home) {
      home = path.join(work, 'home');
      fs.mkdirSync(home);
      own(home);
    }
    return home;
  };

  /** Containers left in the user's state root (each step's is deleted by RunTimeDelete). */
  const leftContainers = (): string[] => (fs.existsSync(stateRoot) ? fs.readdirSync(stateRoot) : []);

  beforeAll(async () => {
    const why = slurmUnavailable();
    if (why) throw new Error(why);
    if (!fs.existsSync(RUNTIME)) throw new Error(`${RUNTIME} is missing: run npm run build`);
    if (IS_ROOT) user = testUser() ?? (ensureTestUser() as TestUser);
    else {
      const me = os.userInfo();
      user = { name: me.username, uid: me.uid, gid: me.gid, home: me.homedir, runtimeDir: '' };
    }
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-slurm-'));
    fs.chmodSync(work, 0o755);
    // The runtime's --root: one directory per user (oci.conf's %u) in a sticky, world-writable
    // parent, as /tmp is in SchedMD's examples.
    const roots = path.join(work, 'runtime');
    fs.mkdirSync(roots);
    fs.chmodSync(roots, 0o1777);
    stateRoot = path.join(roots, user.name);
    bundle = slurmBundle('bundle');
    fs.mkdirSync(path.join(work, 'out'));
    own(path.join(work, 'out'));
    cluster = await startSlurm(path.join(work, 'cluster'), { oci: ociConf(RUNTIME, path.join(roots, '%u')) });
  }, 120_000);

  afterAll(async () => {
    if (cluster) await cluster.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  }, 60_000);

  it('srun --container: the command runs in the bundle as container root mapped to the user; stdout, stderr and the exit status are the container\'s', () => {
    const r = asUser(['srun', `--container=${bundle}`, 'sh', '-c', 'echo out-$(id -u); cat /proc/self/uid_map; test -x /bin/busybox && echo busybox; echo err >&2; exit 3']);
    expect(r.code, show(r)).toBe(3);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe('out-0');
    expect(lines[1]!.trim().split(/\s+/), 'container root is the job\'s user on the host').toEqual(['0', String(user.uid), '1']);
    expect(lines[2]).toBe('busybox');
    expect(r.stderr).toContain('err');
    expect(r.stderr).toMatch(/task 0: Exited with exit code 3/);
    expect(leftContainers(), 'RunTimeDelete removed the step\'s container').toEqual([]);

    const ok = asUser(['srun', `--container=${bundle}`, 'true']);
    expect(ok.code, show(ok)).toBe(0);
  });

  it('srun --container with a command the image does not have: the step fails with the runtime\'s error naming the command', () => {
    const r = asUser(['srun', `--container=${bundle}`, 'no-such-command-in-bundle']);
    expect(r.code, show(r)).not.toBe(0);
    // runc's wording and exit status (1: the runtime's own failure), which srun passes on.
    expect(r.stderr).toContain('"no-such-command-in-bundle\\": executable file not found in $PATH');
    expect(r.stderr).toMatch(/task 0: Exited with exit code 1/);
    expect(leftContainers()).toEqual([]);
  });

  it('sbatch --container: the batch script runs in the container, its output lands in the -o file, and sbatch --wait exits with its status', () => {
    const out = path.join(work, 'out', 'batch-%j.out');
    const r = asUser(['sbatch', '--wait', `--container=${bundle}`, '-o', out, '--wrap', 'echo batch-on-$(hostname) uid-$(id -u); test -d /proc/1 && echo pid1-$(cat /proc/1/comm); exit 5']);
    expect(r.code, show(r)).toBe(5);
    const id = /Submitted batch job (\d+)/.exec(r.stdout)?.[1];
    expect(id, show(r)).toBeTruthy();
    const file = out.replace('%j', id!);
    const text = fs.readFileSync(file, 'utf8');
    expect(text).toMatch(new RegExp(`^batch-on-(${(cluster.nodes as { hostname: string }[]).map((n) => n.hostname).join('|')}) uid-0\n`));
    // The container has its own pid namespace: its first process is the batch script, which
    // Slurm bind-mounts at /tmp/slurm/startup and makes the container's process.
    expect(text).toMatch(/\npid1-startup\n/);
    expect(fs.statSync(file).uid, 'the output file is the user\'s').toBe(user.uid);
    expect(leftContainers()).toEqual([]);
  });

  it('environment as Slurm documents it: --export=ALL,VAR=value adds to the submitter\'s environment, --export=VAR=value alone drops it; the container has Slurm\'s job variables', () => {
    const all = asUser(['srun', `--container=${bundle}`, '--export=ALL,BURROW_SLURM_ADDED=added', 'sh', '-c', 'echo "$BURROW_SLURM_ADDED/$BURROW_SLURM_CALLER/$SLURM_JOB_ID/$SLURM_NNODES"'], { BURROW_SLURM_CALLER: 'caller' });
    expect(all.code, show(all)).toBe(0);
    expect(all.stdout).toMatch(/^added\/caller\/\d+\/1\n$/);
    const only = asUser(['srun', `--container=${bundle}`, '--export=BURROW_SLURM_ADDED=only', 'sh', '-c', 'echo "$BURROW_SLURM_ADDED/${BURROW_SLURM_CALLER-unset}"'], { BURROW_SLURM_CALLER: 'caller' });
    expect(only.code, show(only)).toBe(0);
    expect(only.stdout).toBe('only/unset\n');
  });

  it('working directory: the container starts in its bundle\'s process.cwd; Slurm 22.05 does not carry --chdir into the container (it is where the runtime runs and SLURM_SUBMIT_DIR says where the job came from)', () => {
    const b = slurmBundle('bundle-cwd', (c) => {
      c.process.cwd = '/srv/work';
    });
    fs.mkdirSync(path.join(b, 'rootfs', 'srv', 'work'), { recursive: true });
    own(b);
    const chdir = path.join(work, 'out');
    const r = asUser(['srun', `--container=${b}`, `--chdir=${chdir}`, 'sh', '-c', 'echo "$(pwd) $SLURM_SUBMIT_DIR"']);
    expect(r.code, show(r)).toBe(0);
    expect(r.stdout).toBe(`/srv/work ${work}\n`);
  });

  it('srun -N2 --container: one task on each node (each node\'s slurmd started one), as root each in its node\'s network namespace and with its hostname', () => {
    const r = asUser(['srun', '-N2', '--ntasks-per-node=1', `--container=${bundle}`, 'sh', '-c', 'echo "$SLURM_JOB_ID $(hostname) $(ip -4 -o addr show eth0 2>/dev/null | sed -e "s/.* inet //" -e "s,/.*,,")"']);
    expect(r.code, show(r)).toBe(0);
    const lines = r.stdout.trim().split('\n').sort();
    expect(lines, show(r)).toHaveLength(2);
    const job = lines[0]!.split(' ')[0]!;
    expect(job).toMatch(/^\d+$/);
    for (const n of cluster.nodes as { name: string }[]) {
      expect(fs.readFileSync(cluster.nodeLog(n.name), 'utf8'), `${n.name} ran a task of step ${job}.0`).toMatch(new RegExp(`\\[${job}\\.0\\] task \\d+ \\(\\d+\\) started`));
    }
    if (IS_ROOT) {
      expect(lines.map((l) => l.split(' ').slice(1).join(' '))).toEqual(NODES.map((n: { hostname: string; addr: string }) => `${n.hostname} ${n.addr}`));
    }
    expect(leftContainers()).toEqual([]);
  });

  it('burrow bundle IMAGE DIR, then srun -N2 --container=DIR: the image\'s bundle runs on both nodes as container root (the user), and with --userns keep-id as the user\'s own uid', () => {
    const home = userHome();
    const env = { HOME: home, XDG_RUNTIME_DIR: undefined };
    const as = IS_ROOT ? user : undefined;
    const load = burrow(['load', '-q', '-i', images().busybox.archive], { as, env });
    expect(load.code, show(load)).toBe(0);
    const dir = path.join(home, 'bundles', 'busybox');
    const b = burrow(['bundle', images().busybox.ref, dir], { as, env });
    expect(b.code, show(b)).toBe(0);
    expect(b.stdout.trim()).toBe(dir);
    const r = asUser(['srun', '-N2', '--ntasks-per-node=1', `--container=${dir}`, 'sh', '-c', 'echo "$(hostname) $(id -u) $(stat -c %u /bin/busybox)"']);
    expect(r.code, show(r)).toBe(0);
    expect(r.stdout.trim().split('\n').sort()).toEqual((cluster.nodes as { hostname: string }[]).map((n) => `${n.hostname} 0 0`));
    expect(leftContainers()).toEqual([]);

    // keep-id: the job's files on shared storage are the user's, as without a container.
    const kdir = path.join(home, 'bundles', 'busybox-keep-id');
    const k = burrow(['bundle', '--userns', 'keep-id', images().busybox.ref, kdir], { as, env });
    expect(k.code, show(k)).toBe(0);
    // The shared directory reaches the container as a bind mount in config.json, as a site's
    // bundle would carry its shared file systems.
    const out = path.join(work, 'out');
    const cfgPath = path.join(kdir, 'config.json');
    const cfg = JSON.parse(fs.readFileSync(cfgPath, 'utf8'));
    cfg.mounts.push({ destination: out, source: out, type: 'bind', options: ['rbind', 'rw'] });
    fs.writeFileSync(cfgPath, JSON.stringify(cfg, null, 2));
    // Its mount point made now, by the user: made by the runtime it would belong to container
    // root, a subordinate id with keep-id, which the user could not remove afterwards.
    fs.mkdirSync(path.join(kdir, 'rootfs', out), { recursive: true });
    own(path.join(kdir, 'rootfs'));
    const shared = path.join(out, 'keep-id.txt');
    const kr = asUser(['srun', `--container=${kdir}`, 'sh', '-c', `id -u; echo written > ${shared}`]);
    expect(kr.code, show(kr)).toBe(0);
    expect(kr.stdout).toBe(`${user.uid}\n`);
    expect(fs.statSync(shared).uid).toBe(user.uid);
  });

  it('burrow run inside an sbatch job with defaults: no XDG_RUNTIME_DIR, no systemd session (the login node\'s D-Bus address carried over), the TMPDIR sbatch carries, then a per-job TMPDIR named before it exists', () => {
    const home = userHome();
    const bin = `${process.execPath} ${BIN}`;
    const ref = images().busybox.ref;
    const carried = path.join(work, 'login-node-tmp');
    const script = path.join(work, 'out', 'burrow-job.sh');
    fs.writeFileSync(
      script,
      [
        '#!/bin/sh',
        'set -e',
        'echo "xdg=${XDG_RUNTIME_DIR-unset} tmpdir-exists=$(test -d "$TMPDIR" && echo yes || echo no)"',
        `${bin} load -q -i ${images().busybox.archive} >/dev/null`,
        `${bin} run --rm ${ref} sh -c 'echo carried-env-$(id -u)'`,
        // The job's own TMPDIR, named before it is made (as a job script or a prolog may).
        `export TMPDIR=${work}/out/tmp-$SLURM_JOB_ID`,
        `id=$(${bin} run -d ${ref} sh -c 'echo detached; exec sleep 600')`,
        `until ${bin} logs "$id" | grep -q detached; do sleep 0.1; done`,
        `${bin} logs "$id"`,
        `${bin} rm -f "$id" >/dev/null`,
        `${bin} ps -a -q | wc -l`,
        'mkdir -p "$TMPDIR"',
        `${bin} run --rm ${ref} sh -c 'echo job-tmpdir-$(id -u)'`,
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    own(script);
    const out = path.join(work, 'out', 'burrow-%j.out');
    // What sbatch carries from the submitting (login) node: its TMPDIR (slurmstepd makes it on
    // the node, or, when it cannot, says so on stderr and sets TMPDIR=/tmp) and a session bus
    // address that does not exist on the node.
    const r = asUser(['sbatch', '--wait', '-o', out, '-e', out.replace('.out', '.err'), script], { HOME: home, TMPDIR: carried, DBUS_SESSION_BUS_ADDRESS: `unix:path=${path.join(work, 'login-node-bus')}` });
    const id = /Submitted batch job (\d+)/.exec(r.stdout)?.[1];
    const text = id ? fs.readFileSync(out.replace('%j', id), 'utf8') : '';
    const err = id ? fs.readFileSync(out.replace('.out', '.err').replace('%j', id), 'utf8') : '';
    expect(r.code, `${show(r)}\njob output:\n${text}\njob errors:\n${err}`).toBe(0);
    expect(text).toBe('xdg=unset tmpdir-exists=yes\ncarried-env-0\ndetached\n0\njob-tmpdir-0\n');
  });
});
