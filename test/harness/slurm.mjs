// A two-node Slurm cluster (Debian's slurm-wlm 22.05 and munge) that a test starts and stops
// itself, everything under its own temporary directory: a munge key and munged socket, a
// slurm.conf and oci.conf, the controller's state and each node's spool, logs and pid files.
// Nothing of the machine's own Slurm or munge (config in /etc, services) is read or started.
//
// Network: three network namespaces made here, gone at the end. `ctl` holds a bridge with
// 10.217.0.1, where slurmctld listens and from which the clients (srun, sbatch, squeue) run;
// `n1` and `n2` each hold one end of a veth pair (10.217.0.11 and .12) whose other end is on the
// bridge, and one slurmd (`slurmd -N node1` / `-N node2`) with a hostname of its own (UTS
// namespace), so a job that spans both nodes really runs in two network stacks. The addresses
// exist only inside these namespaces; fixed ports are fine there for the same reason.
//
// The daemons run as root (SlurmUser=root): slurmd must be root to start steps as another
// user. Jobs run as the unprivileged test user, who calls the OCI runtime rootless, as
// SchedMD's containers guide requires. Every process is stopped by PID.
//
// Started by an unprivileged user, the cluster is a single-user one: slurmctld, both slurmd and
// munged run as that user (SlurmUser and SlurmdUser), who is also the jobs' user, which Slurm
// allows (slurmstepd then has no user to switch to). Such a user cannot make network
// namespaces, so both nodes are on the host's loopback, each slurmd on a port of its own
// (ephemeral ports, free when the cluster starts), and share the host's hostname.
//
// Each node has a temporary directory of its own, dir/tmp/NODE (TmpFS=.../%n): the job's TMPDIR
// and the base of Slurm's PMIx per-step directory, which would collide on a shared /tmp.
//
//   slurmUnavailable()            why the cluster cannot start here (not root, not installed), or null
//   ociConf(runtime, root, mode)  oci.conf for a runc-compatible runtime (RunTimeRun or create/start)
//   startSlurm(dir, { oci })      -> { dir, conf, nodes, single, run(argv, { as, env, cwd }),
//                                      nodeLog(name), setOci(text), stop() }
//     run: a client (srun, sbatch, squeue...) in the controller's namespace, as root or as `as`
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { alive, killPids, pidsMentioning } from './clients.mjs';

export const SUBNET = '10.217.0';
export const CTL_ADDR = `${SUBNET}.1`;
/** The nodes of the root-started cluster; a single-user cluster's are `cluster.nodes`. */
export const NODES = [
  { name: 'node1', addr: `${SUBNET}.11`, hostname: 'node1' },
  { name: 'node2', addr: `${SUBNET}.12`, hostname: 'node2' },
];
const isRoot = () => process.getuid() === 0;
const SBIN = ['/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** The absolute path of a program, or null. */
export function findProgram(name) {
  for (const d of SBIN) {
    const p = path.join(d, name);
    if (fs.existsSync(p)) return p;
  }
  return null;
}

/** Why the cluster cannot start here, or null when it can. */
export function slurmUnavailable() {
  for (const p of ['slurmctld', 'slurmd', 'srun', 'sbatch', 'munged', ...(isRoot() ? ['ip', 'nsenter', 'unshare', 'runuser'] : [])]) {
    if (!findProgram(p)) return `${p} is not installed: run .ci/setup (apt-get install slurm-wlm munge)`;
  }
  return null;
}

function sh(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
}

function netnsOf(pid) {
  try {
    return fs.readlinkSync(`/proc/${pid}/ns/net`);
  } catch {
    return null;
  }
}

function inNs(pid, argv) {
  return sh('nsenter', [`--net=/proc/${pid}/ns/net`, ...argv]);
}

/** A TCP port free on the loopback now (the kernel's choice), for a single-user cluster. */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what, pred, ms, log) {
  const end = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > end) {
      const tail = log && fs.existsSync(log) ? `\n--- ${log}:\n${fs.readFileSync(log, 'utf8').split('\n').slice(-30).join('\n')}` : '';
      throw new Error(`slurm harness: timed out waiting for ${what}${tail}`);
    }
    await sleep(100);
  }
}

/** Reads a pid file written by a daemon that forked into the background. */
function pidFrom(file) {
  try {
    const n = Number(fs.readFileSync(file, 'utf8').trim());
    return n > 0 ? n : null;
  } catch {
    return null;
  }
}

/**
 * oci.conf for a runc-compatible runtime, as SchedMD's containers guide gives it for runc
 * (rootless, `--root` per user, container ids `node.user.job.step.task`). `mode` 'run' uses
 * RunTimeRun (the guide's suggestion: no polling); 'create' uses RunTimeCreate/RunTimeStart.
 * Slurm 22.05 has no %U (uid) pattern: the root is per user name.
 */
export function ociConf(runtime, root, mode = 'run') {
  const rt = `${runtime} --rootless=true --root=${root}`;
  const id = '%n.%u.%j.%s.%t';
  const lines = [`RunTimeQuery="${rt} state ${id}"`, `RunTimeKill="${rt} kill -a ${id}"`, `RunTimeDelete="${rt} delete --force ${id}"`];
  if (mode === 'run') lines.push(`RunTimeRun="${rt} run --bundle %b ${id}"`);
  else lines.push(`RunTimeCreate="${rt} create --bundle %b ${id}"`, `RunTimeStart="${rt} start ${id}"`);
  return `${lines.join('\n')}\n`;
}

export async function startSlurm(dir, { oci }) {
  fs.mkdirSync(dir, { recursive: true });
  // The jobs' user reads the config and walks to bundles and outputs under it.
  fs.chmodSync(dir, 0o755);
  /** Pids of the processes holding the namespaces. */
  const ns = { ctl: 0, n1: 0, n2: 0 };
  const single = !isRoot();
  const me = os.userInfo().username;
  const host = os.hostname().split('.')[0];
  const nodes = single ? NODES.map((n) => ({ ...n, addr: '127.0.0.1', hostname: os.hostname() })) : NODES;
  const cluster = { dir, ns, nodes, single, pids: [], conf: path.join(dir, 'etc', 'slurm.conf'), stopped: false };
  cluster.nodeLog = (name) => path.join(dir, 'log', `slurmd-${name}.log`);
  cluster.run = runIn;
  cluster.ociPath = path.join(dir, 'etc', 'oci.conf');
  // slurmstepd reads oci.conf at each step: a new one applies to the next step, no restart.
  cluster.setOci = (text) => fs.writeFileSync(cluster.ociPath, text, { mode: 0o644 });
  cluster.stop = async () => {
    if (cluster.stopped) return;
    cluster.stopped = true;
    // Jobs first, so no step outlives its slurmd: cancel what is left and wait for the queue to
    // empty (a step's container is then deleted through RunTimeKill/RunTimeDelete).
    if (cluster.up) {
      const ids = cluster.run(['squeue', '-h', '-o', '%i']).stdout.split(/\s+/).filter(Boolean);
      if (ids.length) {
        cluster.run(['scancel', ...ids]);
        const end = Date.now() + 30_000;
        while (Date.now() < end && cluster.run(['squeue', '-h', '-o', '%i']).stdout.trim()) await sleep(200);
      }
    }
    // The daemons fork into the background: their pid files name them. SIGTERM, then SIGKILL.
    const pids = [...cluster.pids.map((p) => (typeof p === 'string' ? pidFrom(p) : p)).filter(Boolean)];
    for (const p of pids) {
      try {
        process.kill(p, 'SIGTERM');
      } catch {
        /* gone */
      }
    }
    const end = Date.now() + 10_000;
    while (pids.some(alive) && Date.now() < end) await sleep(100);
    for (const p of pids.filter(alive)) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    // A step that did not end with its job (a runtime stuck in a step, a slurmstepd whose
    // slurmd is gone) still has the cluster's SLURM_CONF in its environment: stop those too.
    await killPids(pidsMentioning(cluster.conf));
  };
  try {
    // ---- network (root: namespaces; a single-user cluster uses the loopback) ----
    // Each namespace is held by a `sleep` made by `unshare --net` and named by its pid (not by
    // `ip netns add`, which would mount /run/netns on the host): it goes when its holder and
    // the daemons in it are stopped.
    if (!single) {
      for (const k of Object.keys(ns)) {
        const holder = spawn('unshare', ['--net', '--', 'sleep', 'infinity'], { stdio: 'ignore', detached: true });
        holder.unref();
        ns[k] = holder.pid;
        cluster.pids.push(holder.pid);
        await waitFor(`network namespace ${k}`, () => netnsOf(holder.pid) !== netnsOf(process.pid) && netnsOf(holder.pid) !== null, 10_000);
        inNs(ns[k], ['ip', 'link', 'set', 'lo', 'up']);
      }
      inNs(ns.ctl, ['ip', 'link', 'add', 'br0', 'type', 'bridge']);
      inNs(ns.ctl, ['ip', 'addr', 'add', `${CTL_ADDR}/24`, 'dev', 'br0']);
      inNs(ns.ctl, ['ip', 'link', 'set', 'br0', 'up']);
      NODES.forEach((node, i) => {
        const nn = i === 0 ? ns.n1 : ns.n2;
        // Created inside ctl, the node's end moved into its namespace: no interface ever
        // appears in the host's namespace.
        inNs(ns.ctl, ['ip', 'link', 'add', `v${i + 1}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', String(nn)]);
        inNs(ns.ctl, ['ip', 'link', 'set', `v${i + 1}`, 'master', 'br0', 'up']);
        inNs(nn, ['ip', 'addr', 'add', `${node.addr}/24`, 'dev', 'eth0']);
        inNs(nn, ['ip', 'link', 'set', 'eth0', 'up']);
      });
    }

    // ---- munge ----
    const mdir = path.join(dir, 'munge');
    fs.mkdirSync(mdir, { mode: 0o700 });
    const key = path.join(mdir, 'munge.key');
    fs.writeFileSync(key, crypto.randomBytes(1024), { mode: 0o400 });
    const msock = path.join(dir, 'munge-sock');
    // The socket's directory must be reachable by every user (clients connect to it).
    fs.mkdirSync(msock, { mode: 0o755 });
    const socket = path.join(msock, 'munge.socket');
    const mpid = path.join(mdir, 'munged.pid');
    cluster.pids.push(mpid);
    const mlog = path.join(mdir, 'munged.log');
    const m = spawnSync('munged', ['--force', `--socket=${socket}`, `--key-file=${key}`, `--pid-file=${mpid}`, `--log-file=${mlog}`, `--seed-file=${path.join(mdir, 'seed')}`], { encoding: 'utf8' });
    if (m.status !== 0) throw new Error(`munged failed: ${m.stderr}${fs.existsSync(mlog) ? fs.readFileSync(mlog, 'utf8') : ''}`);
    await waitFor('munged', () => fs.existsSync(socket), 10_000, mlog);

    // ---- config ----
    const etc = path.join(dir, 'etc');
    fs.mkdirSync(etc, { mode: 0o755 });
    for (const d of ['state', 'spool', 'log', 'run', 'tmp', ...nodes.map((n) => `spool/${n.name}`)]) fs.mkdirSync(path.join(dir, d), { mode: 0o755 });
    // A temporary directory per node, as real nodes each have their own /tmp: Slurm's TmpFS,
    // where slurmstepd points a job's TMPDIR and the PMIx plugin makes its per-step directory
    // (spmix_appdir_UID_JOB.STEP, named without the node: on one shared /tmp the second node's
    // step fails with "File exists"). Writable by every user, like /tmp.
    for (const n of nodes) {
      fs.mkdirSync(path.join(dir, 'tmp', n.name));
      fs.chmodSync(path.join(dir, 'tmp', n.name), 0o1777);
    }
    // Fixed ports in the cluster's own namespaces; ports free now on a shared loopback.
    const ports = single ? [await freePort(), await freePort(), await freePort()] : [6817, 6818, 6818];
    const nodeLines = nodes.map((n, i) => `NodeName=${n.name} NodeAddr=${n.addr} NodeHostname=${n.hostname} Port=${ports[i + 1]} CPUs=1 State=UNKNOWN`);
    const conf = [
      '# Written by test/harness/slurm.mjs for one test run.',
      'ClusterName=burrowtest',
      // slurmctld checks that its host is named here.
      single ? `SlurmctldHost=${host}(127.0.0.1)` : `SlurmctldHost=burrowctl(${CTL_ADDR})`,
      `SlurmUser=${single ? me : 'root'}`,
      `SlurmdUser=${single ? me : 'root'}`,
      `SlurmctldPort=${ports[0]}`,
      'AuthType=auth/munge',
      'CredType=cred/munge',
      `AuthInfo=socket=${socket}`,
      `StateSaveLocation=${path.join(dir, 'state')}`,
      `SlurmdSpoolDir=${path.join(dir, 'spool', '%n')}`,
      // %n: the node's name, expanded by each slurmd for itself.
      `TmpFS=${path.join(dir, 'tmp', '%n')}`,
      `SlurmctldPidFile=${path.join(dir, 'run', 'slurmctld.pid')}`,
      `SlurmdPidFile=${path.join(dir, 'run', 'slurmd-%n.pid')}`,
      `SlurmctldLogFile=${path.join(dir, 'log', 'slurmctld.log')}`,
      `SlurmdLogFile=${path.join(dir, 'log', 'slurmd-%n.log')}`,
      'SlurmctldDebug=info',
      'SlurmdDebug=debug',
      // Steps are tracked by their process tree: no cgroup plugin, so nothing touches the
      // machine's cgroup mounts.
      'ProctrackType=proctrack/linuxproc',
      'TaskPlugin=task/none',
      'JobAcctGatherType=jobacct_gather/none',
      'AccountingStorageType=accounting_storage/none',
      'JobCompType=jobcomp/none',
      'SelectType=select/linear',
      'SchedulerType=sched/backfill',
      'MpiDefault=none',
      'ReturnToService=2',
      'SlurmdParameters=config_overrides',
      'InactiveLimit=0',
      'KillWait=5',
      'Waittime=0',
      'MinJobAge=300',
      ...nodeLines,
      `PartitionName=debug Nodes=${nodes.map((n) => n.name).join(',')} Default=YES MaxTime=INFINITE State=UP`,
      '',
    ].join('\n');
    fs.writeFileSync(cluster.conf, conf, { mode: 0o644 });
    fs.writeFileSync(path.join(etc, 'oci.conf'), oci, { mode: 0o644 });
    // slurmd always loads a cgroup plugin; nothing here asks it to mount or create anything
    // (no cgroup proctrack or task plugin), and it must not mount on its own.
    fs.writeFileSync(path.join(etc, 'cgroup.conf'), 'CgroupAutomount=no\n', { mode: 0o644 });
    const env = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', SLURM_CONF: cluster.conf };
    cluster.env = env;

    // ---- daemons ----
    const daemon = (netns, hostname, argv, log) => {
      // nsenter --net: the namespace only (`ip netns exec` would also mount a new /sys, without
      // the cgroup mounts slurmd reads); unshare --uts: a hostname of its own.
      const wrapped = single ? argv : ['nsenter', `--net=/proc/${netns}/ns/net`, 'unshare', '--uts', 'sh', '-c', `hostname ${hostname} && exec "$@"`, 'sh', ...argv];
      const r = spawnSync(wrapped[0], wrapped.slice(1), { env, encoding: 'utf8', timeout: 30_000 });
      if (r.status !== 0) throw new Error(`${argv[0]} failed to start (exit ${r.status}): ${r.stderr}${fs.existsSync(log) ? fs.readFileSync(log, 'utf8').slice(-3000) : ''}`);
    };
    const ctlLog = path.join(dir, 'log', 'slurmctld.log');
    cluster.pids.push(path.join(dir, 'run', 'slurmctld.pid'));
    // -c: a clean start, no state from an earlier run (there is none: the directory is new).
    daemon(ns.ctl, 'burrowctl', ['slurmctld', '-c', '-f', cluster.conf], ctlLog);
    await waitFor('slurmctld', () => pidFrom(path.join(dir, 'run', 'slurmctld.pid')) && cluster.run(['scontrol', 'ping']).stdout.includes('UP'), 30_000, ctlLog);
    for (const [i, node] of nodes.entries()) {
      const log = path.join(dir, 'log', `slurmd-${node.name}.log`);
      cluster.pids.push(path.join(dir, 'run', `slurmd-${node.name}.pid`));
      daemon(i === 0 ? ns.n1 : ns.n2, node.name, ['slurmd', '-N', node.name, '-f', cluster.conf], log);
    }
    await waitFor(
      'both nodes idle',
      () => {
        const r = cluster.run(['sinfo', '-h', '-N', '-o', '%N %t']);
        const lines = r.stdout.trim().split('\n');
        return lines.length === 2 && lines.every((l) => / idle$/.test(l));
      },
      60_000,
      ctlLog,
    );
    cluster.up = true;
    return cluster;
  } catch (e) {
    await cluster.stop();
    throw e;
  }

  /**
   * Runs a client program in the controller's namespace (root) or on the loopback (single-user),
   * with a clean environment: as root, or as `as` (a user; root only).
   */
  function runIn(argv, { as, input, cwd, env: extra = {}, timeout = 120_000 } = {}) {
    const who = as ?? { name: single ? me : 'root', home: os.homedir() };
    const envArgs = ['env', '-i', 'PATH=/usr/sbin:/usr/bin:/sbin:/bin', `HOME=${who.home ?? '/'}`, `USER=${who.name}`, `SLURM_CONF=${cluster.conf}`, ...Object.entries(extra).map(([k, v]) => `${k}=${v}`)];
    const full = [...(single ? [] : ['nsenter', `--net=/proc/${ns.ctl}/ns/net`]), ...(as && !single ? ['runuser', '-u', as.name, '--'] : []), ...envArgs, ...argv];
    const r = spawnSync(full[0], full.slice(1), { encoding: 'utf8', input, cwd, timeout });
    return { code: r.status ?? 128 + 9, stdout: r.stdout ?? '', stderr: (r.stderr ?? '') + (r.error ? String(r.error) : '') };
  }
}
