// The real clients that drive an OCI runtime, set up for one test each: podman (Debian 4.3) and
// containerd (Debian 1.6, with ctr and its CRI plugin driven by crictl). Everything a client
// keeps (config, storage, state, sockets, runtime state, logs) lives under the test's own
// temporary directory; nothing reads or writes the user's or the machine's default stores.
// Processes are stopped by PID and mounts under the directory are unmounted at the end, so the
// host's mount table is as it was (the root suite checks it).
//
//   clientRuntime()                    the runtime under test: target/release/burrow-runtime, or
//                                      $BURROW_CLIENTS_RUNTIME (e.g. /usr/sbin/runc, to check the
//                                      test setup with the reference runtime)
//   buildClientImages(dir)             busybox and pause images as an OCI layout and docker archives
//   podmanSandbox(dir, opts)           private containers.conf/storage.conf/registries.conf, env, run()
//   startContainerd(dir, opts)         a containerd with its own config.toml (CRI on; handlers runc
//                                      and burrow), stop() by PID
//   startRootlessContainerd(dir)       containerd as the user under RootlessKit, ctr through nsenter
//   ensureCrictl()                     crictl built from sigs.k8s.io/cri-tools (pinned), cached
//   cleanupDir(dir)                    kill processes whose command line names dir, unmount under it
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildBusyboxImage } from './images.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BURROW_RUNTIME = path.join(REPO, 'target', 'release', 'burrow-runtime');

/** The runtime binary the client tests hand to podman and containerd. */
export function clientRuntime() {
  return process.env.BURROW_CLIENTS_RUNTIME || BURROW_RUNTIME;
}

/** `which`: the absolute path of a command on PATH (plus the sbin directories), or null. */
export function which(cmd) {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const d of dirs) {
    const p = path.join(d, cmd);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return null;
}

function sh(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 26, ...opts });
}

// ---- images ---------------------------------------------------------------------------------------

export const PAUSE_CMD = ['/bin/sh', '-c', 'trap "exit 0" TERM INT; while :; do sleep 1; done'];

/**
 * A busybox image (`busybox`) and a pause image for pod sandboxes (`pause`: a shell that sleeps
 * until SIGTERM) in one OCI layout, and each as a docker archive (`ctr images import` and
 * `podman load` read those). `ref` names are the ones the archives carry.
 */
export function buildClientImages(dir) {
  fs.mkdirSync(dir, { recursive: true });
  const layout = path.join(dir, 'layout');
  buildBusyboxImage(layout, { tag: 'busybox', config: { Cmd: ['/bin/sh'] } });
  buildBusyboxImage(layout, { tag: 'pause', config: { Cmd: PAUSE_CMD } });
  const out = { layout, busybox: {}, pause: {} };
  for (const [tag, ref] of [['busybox', 'docker.io/burrowtest/busybox:latest'], ['pause', 'docker.io/burrowtest/pause:latest']]) {
    const archive = path.join(dir, `${tag}.docker.tar`);
    sh('skopeo', ['copy', '--quiet', `oci:${layout}:${tag}`, `docker-archive:${archive}:${ref}`]);
    fs.chmodSync(archive, 0o644);
    out[tag] = { archive, ref };
  }
  return out;
}

// ---- cleanup --------------------------------------------------------------------------------------

/**
 * PIDs of processes whose command line, or environment (rootless podman's pause process names
 * its XDG_RUNTIME_DIR only there), contains `needle`; never this process. Environments of other
 * users' processes are unreadable to an unprivileged caller and skipped.
 */
export function pidsMentioning(needle) {
  const out = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    for (const f of ['cmdline', 'environ']) {
      try {
        if (fs.readFileSync(`/proc/${e}/${f}`, 'utf8').includes(needle)) {
          out.push(Number(e));
          break;
        }
      } catch {
        /* gone, or not ours */
      }
    }
  }
  return out;
}

/** Mount points at or under `dir` in this mount namespace, deepest first. */
export function mountsUnder(dir) {
  const unescape = (s) => s.replace(/\\(\d{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
  const real = fs.realpathSync(dir);
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => unescape(l.split(' ')[4]))
    .filter((m) => m === real || m.startsWith(`${real}/`))
    .sort((a, b) => b.length - a.length);
}

/** Unmounts every mount under `dir` (as root; a user's mounts live in namespaces that die with it). */
export function unmountUnder(dir) {
  if (process.getuid() !== 0 || !fs.existsSync(dir)) return [];
  const left = [];
  for (let round = 0; round < 5; round++) {
    const ms = mountsUnder(dir);
    if (!ms.length) return [];
    for (const m of ms) spawnSync('umount', ['-l', m], { stdio: 'ignore' });
  }
  left.push(...mountsUnder(dir));
  return left;
}

/** The process exists (a zombie too): signal 0 reaches it. */
export function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM then SIGKILL to each pid (by pid), waiting up to `ms` for them to go. */
export async function killPids(pids, ms = 5000) {
  for (const p of pids) {
    try {
      process.kill(p, 'SIGTERM');
    } catch {
      /* gone */
    }
  }
  const end = Date.now() + ms;
  while (pids.some(alive) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  for (const p of pids.filter(alive)) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  const end2 = Date.now() + 2000;
  while (pids.some(alive) && Date.now() < end2) await new Promise((r) => setTimeout(r, 50));
}

/**
 * The last resort after a client's own cleanup: processes whose command line names `dir` (shims,
 * conmon, pause processes) are killed by PID, then every mount under `dir` is unmounted.
 * Returns what had been left (for the test to report).
 */
export async function cleanupDir(dir) {
  const pids = pidsMentioning(dir);
  await killPids(pids);
  const mounts = process.getuid() === 0 && fs.existsSync(dir) ? mountsUnder(dir) : [];
  const left = unmountUnder(dir);
  return { pids, mounts, left };
}

/** Removes the empty cgroup directories NAME (and below) in every v1 hierarchy and the v2 tree. */
export function removeCgroupDirs(name) {
  if (process.getuid() !== 0) return;
  const roots = [];
  for (const l of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = l.split(' ');
    const sep = f.indexOf('-');
    if (sep > 0 && (f[sep + 1] === 'cgroup' || f[sep + 1] === 'cgroup2')) roots.push(f[4]);
  }
  const rmTree = (d) => {
    if (!fs.existsSync(d)) return;
    for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) rmTree(path.join(d, e.name));
    try {
      fs.rmdirSync(d);
    } catch {
      /* busy: a process still in it (reported by the test's leak check) */
    }
  };
  for (const r of roots) rmTree(path.join(r, name));
}

// ---- async exec -----------------------------------------------------------------------------------

/** Runs a command; resolves {code, signal, stdout, stderr}. Never rejects on a nonzero exit. */
export function run(cmd, args, { env = process.env, input = '', timeoutMs = 120_000, cwd } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    child.on('error', reject);
    const timer = setTimeout(() => {
      stderr += `\n[killed after ${timeoutMs} ms]`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? 128 + 9, signal, stdout, stderr });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}

/** Runs `argv` through test/harness/ptydrive.py (a real pty); resolves its JSON report. */
export async function ptyDrive(steps, argv, opts = {}) {
  const r = await run('python3', [path.join(REPO, 'test', 'harness', 'ptydrive.py'), JSON.stringify(steps), ...argv], opts);
  try {
    return { ...JSON.parse(r.stdout.trim().split('\n').pop()), stderr: r.stderr };
  } catch {
    return { out: r.stdout, status: r.code, failed: 'no report from ptydrive', stderr: r.stderr };
  }
}

// ---- podman ---------------------------------------------------------------------------------------

/**
 * A podman with everything private under `dir`: containers.conf (the Debian defaults that
 * matter here, default_sysctls included, plus cgroupfs and file events as this hybrid-cgroup host
 * needs; as root, nofile lowered under the shell's hard limit of 20000), storage.conf (overlay,
 * graphroot and runroot under dir), registries.conf, XDG_RUNTIME_DIR and HOME. Every command
 * gets `--runtime RUNTIME`, unless `runtimeName` names it in containers.conf (`runtime = NAME`
 * under [engine], `NAME = [RUNTIME]` under [engine.runtimes]). Rootless when this process is
 * not root.
 */
export function podmanSandbox(dir, { runtime = clientRuntime(), sysctls = ['net.ipv4.ping_group_range=0 0'], runtimeName = null } = {}) {
  const rootful = process.getuid() === 0;
  const p = (...x) => path.join(dir, ...x);
  for (const d of ['home', 'xdg', 'tmp', 'graph', 'run', 'conf', 'conf/networks']) fs.mkdirSync(p(d), { recursive: true, mode: 0o700 });
  // Debian's /usr/share/containers/containers.conf sets these defaults; CONTAINERS_CONF makes
  // podman read only this file, so the ones the tests are about are repeated here.
  fs.writeFileSync(
    p('conf', 'containers.conf'),
    [
      '[containers]',
      `default_sysctls = [${sysctls.map((x) => JSON.stringify(x)).join(', ')}]`,
      // The shell here lacks CAP_SYS_RESOURCE and its hard nofile limit is 20000: podman's
      // defaults as root (nofile 1048576, nproc 4194304) cannot be set, by runc either. podman
      // also lowers its own (and so conmon's and the runtime's) hard nproc to 32768 here.
      rootful ? 'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]' : '',
      '[engine]',
      // crun refuses this hybrid cgroup host; no systemd session for the systemd manager.
      'cgroup_manager = "cgroupfs"',
      'events_logger = "file"',
      `events_logfile_path = "${p('events.log')}"`,
      `tmp_dir = "${p('tmp')}"`,
      `volume_path = "${p('graph', 'volumes')}"`,
      // runtimeName: the runtime is named in containers.conf and is podman's default, as
      // docs/examples/containers.conf has it; commands then get no --runtime.
      ...(runtimeName ? [`runtime = "${runtimeName}"`, '[engine.runtimes]', `${runtimeName} = ["${runtime}"]`] : []),
      // Rootful podman writes its network configs and a cni.lock in /etc/cni/net.d otherwise.
      '[network]',
      `network_config_dir = "${p('conf', 'networks')}"`,
      '',
    ].join('\n'),
  );
  fs.writeFileSync(p('conf', 'storage.conf'), ['[storage]', 'driver = "overlay"', `graphroot = "${p('graph')}"`, `runroot = "${p('run')}"`, ''].join('\n'));
  fs.writeFileSync(p('conf', 'registries.conf'), 'unqualified-search-registries = []\n');
  const env = {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin',
    HOME: p('home'),
    XDG_RUNTIME_DIR: p('xdg'),
    XDG_CONFIG_HOME: p('home', '.config'),
    XDG_DATA_HOME: p('home', '.local', 'share'),
    CONTAINERS_CONF: p('conf', 'containers.conf'),
    CONTAINERS_STORAGE_CONF: p('conf', 'storage.conf'),
    CONTAINERS_REGISTRIES_CONF: p('conf', 'registries.conf'),
    TMPDIR: p('tmp'),
  };
  const base = [...(runtimeName ? [] : ['--runtime', runtime]), '--root', p('graph'), '--runroot', p('run'), '--tmpdir', p('tmp'), '--cgroup-manager', 'cgroupfs', '--events-backend', 'file'];
  const sb = {
    dir,
    env,
    rootful,
    runtime,
    args: (args) => [...base, ...args],
    podman: (args, opts = {}) => run('podman', [...base, ...args], { env, ...opts }),
    /** The argv of a podman command, for ptyDrive. */
    argv: (args) => ['env', '-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), 'podman', ...base, ...args],
    async cleanup() {
      // podman's own removal first (it unmounts what it mounted), then the rootless store, whose
      // files belong to subordinate ids, through `podman unshare`; then by PID whatever is left
      // (conmon, the rootless pause process), then mounts.
      await sb.podman(['rm', '-a', '-f', '-t', '0'], { timeoutMs: 60_000 }).catch(() => undefined);
      if (!rootful) await sb.podman(['unshare', 'rm', '-rf', p('graph'), p('run')], { timeoutMs: 60_000 }).catch(() => undefined);
      else await sb.podman(['system', 'reset', '-f'], { timeoutMs: 60_000 }).catch(() => undefined);
      const left = await cleanupDir(dir);
      fs.rmSync(dir, { recursive: true, force: true });
      return left;
    },
  };
  return sb;
}

// ---- containerd -------------------------------------------------------------------------------------

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export async function freePort() {
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

async function waitFor(pred, ms, what) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await pred()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/**
 * Starts containerd (as root) with its own config.toml under `dir`: root, state, the gRPC socket,
 * the opt directory and runc's state root all under dir; the CRI plugin on with
 * restrict_oom_score_adj (the shell lacks CAP_SYS_RESOURCE), `sandbox_image`, the streaming
 * server on a free loopback port, and two runtime handlers of type io.containerd.runc.v2,
 * cgroupfs (SystemdCgroup = false), each with its own state root (runc's `Root`): the default
 * `runc`, whose BinaryName is `defaultRuntime` (`runtime` unless given), and `burrow`, whose
 * BinaryName is `runtime`: the handler a Kubernetes RuntimeClass names (`handler: burrow`) and
 * `crictl runp --runtime burrow` asks for. Pods use the host network (the tests ask for NODE), so
 * no CNI plugin runs and nothing outside dir is configured. containerd's TMPDIR is dir/tmp (its
 * checkpoint images are made there). Resolves {address, pid, runtimeRoot, runtimeRoots,
 * handlers, ctr(args), crictl(args), stop()}.
 */
export async function startContainerd(dir, { runtime = clientRuntime(), defaultRuntime = runtime, sandboxImage = 'docker.io/burrowtest/pause:latest' } = {}) {
  const p = (...x) => path.join(dir, ...x);
  for (const d of ['root', 'state', 'opt', 'runc', 'burrow', 'cni', 'logs', 'fifo', 'tmp']) fs.mkdirSync(p(d), { recursive: true, mode: 0o711 });
  // Handler name -> [binary, its state root]; stop() asks each binary about its own root.
  const handlers = { runc: { binary: defaultRuntime, root: p('runc') }, burrow: { binary: runtime, root: p('burrow') } };
  const address = p('containerd.sock');
  const port = await freePort();
  const cri = 'plugins."io.containerd.grpc.v1.cri"';
  const config = `version = 2
root = "${p('root')}"
state = "${p('state')}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "${address}"
[ttrpc]
  address = "${address}.ttrpc"
[debug]
  address = ""
  level = "info"
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "${p('opt')}"

[${cri}]
  sandbox_image = "${sandboxImage}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "${port}"
  enable_selinux = false
  [${cri}.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${p('cni')}"
  [${cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
${Object.entries(handlers)
  .map(
    ([name, h]) => `    [${cri}.containerd.runtimes.${name}]
      runtime_type = "io.containerd.runc.v2"
      [${cri}.containerd.runtimes.${name}.options]
        BinaryName = "${h.binary}"
        Root = "${h.root}"
        SystemdCgroup = false
`,
  )
  .join('')}`;
  fs.writeFileSync(p('config.toml'), config);
  fs.writeFileSync(p('crictl.yaml'), `runtime-endpoint: unix://${address}\nimage-endpoint: unix://${address}\ntimeout: 60\n`);
  const log = fs.openSync(p('containerd.log'), 'a');
  const child = spawn(which('containerd') ?? 'containerd', ['--config', p('config.toml')], { stdio: ['ignore', log, log], detached: true, env: { ...process.env, TMPDIR: p('tmp') } });
  fs.closeSync(log);
  const pid = child.pid;
  child.unref();
  let exited = null;
  child.on('exit', (code, sig) => (exited = code ?? sig));
  const ctrBin = which('ctr') ?? 'ctr';
  const env = { ...process.env, CONTAINERD_ADDRESS: address };
  const ctr = (args, opts = {}) => run(ctrBin, ['--address', address, ...args], { env, ...opts });
  try {
    await waitFor(async () => exited !== null || (fs.existsSync(address) && (await ctr(['version'], { timeoutMs: 10_000 })).code === 0), 30_000, 'containerd to answer');
  } catch (e) {
    throw new Error(`${e.message}\n${fs.readFileSync(p('containerd.log'), 'utf8').slice(-3000)}`);
  }
  if (exited !== null) throw new Error(`containerd exited (${exited}):\n${fs.readFileSync(p('containerd.log'), 'utf8').slice(-3000)}`);
  const cd = {
    dir,
    address,
    pid,
    runtime,
    /** The default handler's state root (`ctr run --runc-root` uses it too). */
    runtimeRoot: p('runc'),
    /** Each CRI handler's runtime binary and state root: {runc: {binary, root}, burrow: {...}}. */
    handlers,
    /** containerd's TMPDIR. */
    tmpDir: p('tmp'),
    /** For `ctr run --fifo-dir`: ctr's default is /run/containerd/fifo. */
    fifoDir: p('fifo'),
    log: () => fs.readFileSync(p('containerd.log'), 'utf8'),
    ctr,
    crictl: (args, opts = {}) => run(ensureCrictl(), ['--config', p('crictl.yaml'), ...args], { env, ...opts }),
    crictlArgv: (args) => [ensureCrictl(), '--config', p('crictl.yaml'), ...args],
    /**
     * Stops containerd: the containers its runtime still knows are deleted (--force) with the
     * runtime itself, containerd and every shim that names its socket are killed by PID, and
     * mounts under dir (rootfs overlays, sandbox shm) are unmounted.
     */
    async stop() {
      const leftovers = { containers: [], pids: [], mounts: [] };
      for (const h of Object.values(handlers)) {
        for (const ns of fs.existsSync(h.root) ? fs.readdirSync(h.root) : []) {
          const root = path.join(h.root, ns);
          const l = await run(h.binary, ['--root', root, 'list', '-q'], { timeoutMs: 30_000 });
          for (const id of l.stdout.split('\n').filter(Boolean)) {
            leftovers.containers.push(`${ns}/${id}`);
            await run(h.binary, ['--root', root, 'delete', '--force', id], { timeoutMs: 30_000 });
          }
        }
      }
      await killPids([pid]);
      const shims = pidsMentioning(address);
      leftovers.pids.push(...shims);
      await killPids(shims);
      const c = await cleanupDir(dir);
      leftovers.pids.push(...c.pids);
      leftovers.mounts.push(...c.mounts);
      leftovers.left = c.left;
      return leftovers;
    },
  };
  return cd;
}

// ---- rootless containerd ---------------------------------------------------------------------------

/**
 * Starts containerd as this (unprivileged) user under RootlessKit, as containerd-rootless.sh
 * (nerdctl's, not packaged in Debian) does: rootlesskit with /etc and /run copied up, the host's
 * network (--net=host: nothing to reach here), /run/containerd made anew inside, and containerd
 * with a config.toml of its own whose root, state and sockets are under `dir` (CRI off: only
 * ctr here). `ctr(args)` runs ctr in RootlessKit's user and mount namespaces (nsenter, as
 * `nerdctl` and containerd-rootless-setuptool.sh do). stop() kills rootlesskit, containerd and the
 * shims by PID. Resolves {dir, pid, address, ctr(args), log(), stop()}.
 */
export async function startRootlessContainerd(dir) {
  const p = (...x) => path.join(dir, ...x);
  for (const d of ['root', 'state', 'opt', 'rk']) fs.mkdirSync(p(d), { recursive: true, mode: 0o700 });
  fs.mkdirSync(p('xdg'), { recursive: true, mode: 0o700 });
  const address = p('containerd.sock');
  fs.writeFileSync(
    p('config.toml'),
    `version = 2
root = "${p('root')}"
state = "${p('state')}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "${address}"
[ttrpc]
  address = "${address}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "${p('opt')}"
`,
  );
  const log = fs.openSync(p('containerd.log'), 'a');
  const inner = `rm -f /run/containerd /run/runc && mkdir -p /run/containerd /run/runc && exec containerd --config ${p('config.toml')}`;
  const child = spawn(which('rootlesskit') ?? 'rootlesskit', ['--net=host', '--copy-up=/etc', '--copy-up=/run', `--state-dir=${p('rk')}`, '--propagation=rslave', 'sh', '-c', inner], {
    stdio: ['ignore', log, log],
    detached: true,
    env: { ...process.env, XDG_RUNTIME_DIR: p('xdg') },
  });
  fs.closeSync(log);
  const pid = child.pid;
  child.unref();
  let exited = null;
  child.on('exit', (code, sig) => (exited = code ?? sig));
  const ctr = (args, opts = {}) => {
    const childPid = fs.readFileSync(p('rk', 'child_pid'), 'utf8').trim();
    return run('nsenter', ['-U', '-m', '-t', childPid, which('ctr') ?? 'ctr', '--address', address, ...args], opts);
  };
  try {
    await waitFor(async () => exited !== null || (fs.existsSync(p('rk', 'child_pid')) && fs.existsSync(address) && (await ctr(['version'], { timeoutMs: 10_000 })).code === 0), 30_000, 'rootless containerd to answer');
  } catch (e) {
    throw new Error(`${e.message}\n${fs.readFileSync(p('containerd.log'), 'utf8').slice(-3000)}`);
  }
  if (exited !== null) throw new Error(`rootlesskit exited (${exited}):\n${fs.readFileSync(p('containerd.log'), 'utf8').slice(-3000)}`);
  return {
    dir,
    pid,
    address,
    ctr,
    log: () => fs.readFileSync(p('containerd.log'), 'utf8'),
    /** Stops rootlesskit and containerd, then the shims (their command lines name dir) by PID. */
    async stop() {
      await killPids([pid]);
      return cleanupDir(dir);
    },
  };
}

// ---- crictl ---------------------------------------------------------------------------------------

/** The cri-tools version: the Go module proxy serves v1.34.0; it speaks CRI v1, which containerd 1.6 serves. */
export const CRICTL_VERSION = 'v1.34.0';

/** Where crictl is built and kept between runs (outside the checkout). */
export function crictlCacheDir() {
  return process.env.BURROW_TEST_CACHE ? path.join(process.env.BURROW_TEST_CACHE, 'crictl', CRICTL_VERSION) : path.join(process.getuid() === 0 ? '/var/cache/burrow-test' : path.join(os.homedir(), '.cache', 'burrow-test'), 'crictl', CRICTL_VERSION);
}

export function goBinary() {
  return which('go') ?? (fs.existsSync('/usr/local/go/bin/go') ? '/usr/local/go/bin/go' : null);
}

/**
 * crictl, built with `go install sigs.k8s.io/cri-tools/cmd/crictl@VERSION` through the Go module
 * proxy into the cache directory when it is not there yet (.ci/setup builds it beforehand).
 */
export function ensureCrictl() {
  const dir = crictlCacheDir();
  const bin = path.join(dir, 'crictl');
  if (fs.existsSync(bin)) return bin;
  const go = goBinary();
  if (!go) throw new Error('crictl is not built and there is no Go toolchain: run .ci/setup (it builds crictl into /var/cache/burrow-test)');
  fs.mkdirSync(dir, { recursive: true });
  sh(go, ['install', `sigs.k8s.io/cri-tools/cmd/crictl@${CRICTL_VERSION}`], { env: { ...process.env, GOBIN: dir, CGO_ENABLED: '0', GOFLAGS: '-mod=mod' }, timeout: 900_000 });
  return bin;
}
