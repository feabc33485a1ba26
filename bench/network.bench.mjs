// Network throughput (iperf3) between the host's loopback and a container, both directions,
// for each mode, against podman with the same helper (podman 4.3 has no pasta: pasta runs
// standalone there, with the options burrow gives it), and through a published port against
// podman's default port handler (rootlessport) and slirp4netns's own. The median of a few runs of each, as the
// unprivileged bench user; the container runs the host's iperf3 (its /usr bound read-only).
// Also the memory that stays alive per container for the helper and the forwarder.
// Two sections of RESULTS.md (`sections` below): that one, and user-defined networks against
// rootless podman with netavark + aardvark-dns (issue 16; how podman is configured is said
// further down, above runUserNetworks).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { asUser, benchDir, benchUser, BURROW, have, ROOT } from './lib.mjs';
import { makeRootfs } from '../test/harness/bundle.mjs';
import { hostGateway } from '../test/harness/net.mjs';
import { startRegistry } from '../test/harness/registry.mjs';
import { buildSmallImage, pushImage } from '../test/harness/images.mjs';

const MODES_TITLE = 'Network: iperf3 host loopback ↔ container, per mode and through a published port';

const SECONDS = Number(process.env.BENCH_IPERF_SECONDS || 5);
// Each figure is the median of this many iperf3 runs: one run on a 2-vCPU machine varies by
// ±15%, which is more than some of the differences measured here.
const REPS = Number(process.env.BENCH_IPERF_REPS || 3);

const median = (xs) => {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return v.length ? v[Math.floor(v.length / 2)] : NaN;
};

/** `measure` run REPS times; the median of each direction. */
async function repeated(measure) {
  const runs = [];
  for (let i = 0; i < REPS; i++) runs.push(await measure());
  return { up: median(runs.map((r) => r.up)), down: median(runs.map((r) => r.down)) };
}
// iperf3 keeps its buffer in a file under /tmp, which the small image lacks.
const BIND = ['-v', '/usr:/usr:ro', '-v', '/lib:/lib:ro', '-v', '/lib64:/lib64:ro', '--tmpfs', '/tmp'];

function sh(argv, opts = {}) {
  const a = asUser(argv);
  return execFileSync(a[0], a.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
}

/** A background process in its own process group (`stop` kills the group: runuser's child too). */
function bg(argv) {
  const a = asUser(argv);
  const p = spawn(a[0], a.slice(1), { stdio: 'ignore', detached: true });
  p.stop = () => {
    try {
      process.kill(-p.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  };
  return p;
}

async function freePort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const p = s.address().port;
  await new Promise((r) => s.close(r));
  return p;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Gbit/s received, from iperf3 -J. */
function gbits(json) {
  const j = JSON.parse(json);
  if (j.error) throw new Error(`iperf3: ${j.error}`);
  return j.end.sum_received.bits_per_second / 1e9;
}

/** iperf3 client as the bench user, with retries while the server comes up. */
async function client(args) {
  for (let i = 0; ; i++) {
    const a = asUser(['iperf3', '-J', '-t', String(SECONDS), ...args]);
    const r = spawnSync(a[0], a.slice(1), { encoding: 'utf8' });
    try {
      return gbits(r.stdout);
    } catch (err) {
      if (i > 50) throw err;
      await sleep(100);
    }
  }
}

/** A one-shot iperf3 server on the host's loopback; resolves when it listens. */
async function hostServer(port) {
  const p = bg(['iperf3', '-s', '-1', '-B', '127.0.0.1', '-p', String(port)]);
  for (let i = 0; i < 100; i++) {
    if (spawnSync('sh', ['-c', `ss -ltn | grep -q "127.0.0.1:${port} "`]).status === 0) break;
    await sleep(20);
  }
  return p;
}

const done = (p) => new Promise((r) => (p.exitCode !== null ? r() : p.on('exit', r)));

/**
 * Container → host and host → container through the helper: an iperf3 server on the host's
 * loopback, the client in the container connecting to the gateway that leads to it.
 * `runFg(args)` runs a foreground container with `args` after the image.
 */
async function throughHelper(runFg, gateway) {
  return repeated(() => throughHelperOnce(runFg, gateway));
}

async function throughHelperOnce(runFg, gateway) {
  const out = {};
  for (const [dir, extra] of [['up', []], ['down', ['-R']]]) {
    const port = await freePort();
    const srv = await hostServer(port);
    const r = spawnSync(...(() => {
      const a = asUser(runFg(['/usr/bin/iperf3', '-J', '-t', String(SECONDS), '-c', gateway, '-p', String(port), ...extra]));
      return [a[0], a.slice(1), { encoding: 'utf8' }];
    })());
    srv.stop();
    await done(srv);
    try {
      out[dir] = gbits(r.stdout.slice(r.stdout.indexOf('{')));
    } catch (err) {
      out[dir] = NaN;
      process.stderr.write(`${dir}: ${String(err.message ?? err)} ${r.stderr}\n`);
    }
  }
  return out;
}

/** Host → container ("up") and back ("down") through a published port to an iperf3 server inside. */
async function throughPort(port) {
  return repeated(async () => ({ up: await client(['-c', '127.0.0.1', '-p', String(port)]), down: await client(['-c', '127.0.0.1', '-p', String(port), '-R']) }));
}

function rssMiB(pid) {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
  } catch {
    return 0;
  }
}

function procs() {
  const out = [];
  for (const d of fs.readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      out.push({ pid: Number(d), ppid: Number(stat.split(') ')[1].split(' ')[1]), comm: fs.readFileSync(`/proc/${d}/comm`, 'utf8').trim() });
    } catch {
      /* gone */
    }
  }
  return out;
}

function descendants(pid, all = procs()) {
  const kids = all.filter((p) => p.ppid === pid);
  return kids.flatMap((k) => [k, ...descendants(k.pid, all)]);
}

const fmt = (x) => (Number.isFinite(x) ? x.toFixed(1) : 'failed');
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : '–');

async function runModes() {
  if (!have('iperf3')) throw new Error('iperf3 is not installed (apt-get install iperf3; .ci/setup installs it)');
  const reg = await startRegistry({ mode: 'anonymous' });
  const base = benchDir('/tmp/burrow-bench-net-');
  const started = [];
  try {
    const img = buildSmallImage(path.join(base, 'img'), { tag: 'v1', size: 4096 });
    const ref = await pushImage(reg, img, 'bench/netbox', 'v1');
    const store = path.join(base, 'store');
    const runroot = path.join(base, 'run');
    const burrow = (...a) => [process.execPath, BURROW, '--root', store, '--runroot', runroot, ...a];
    sh(burrow('pull', '-q', ref));
    const podman = have('podman') && spawnSync(asUser(['podman', 'pull', '-q', '--tls-verify=false', ref])[0], asUser(['podman', 'pull', '-q', '--tls-verify=false', ref]).slice(1)).status === 0;
    const gw = hostGateway();
    const rows = [];
    const add = (what, tool, r, peer) => rows.push({ what, tool, ...r, peer });

    // The host's loopback itself: the ceiling.
    {
      const port = await freePort();
      const srv = bg(['iperf3', '-s', '-B', '127.0.0.1', '-p', String(port)]);
      const r = await throughPort(port);
      srv.stop();
      add('host loopback (ceiling)', 'iperf3 alone', r);
    }

    // Outbound through each helper, to the host's loopback through the gateway.
    const slirp = await throughHelper((a) => burrow('run', '--rm', '--network', 'slirp4netns:allow_host_loopback=true', ...BIND, ref, ...a), '10.0.2.2');
    add('slirp4netns (MTU 65520)', 'burrow', slirp);
    if (podman) add('slirp4netns (MTU 65520)', 'podman', await throughHelper((a) => ['podman', 'run', '--rm', '--network', 'slirp4netns:allow_host_loopback=true', ...BIND, ref, ...a], '10.0.2.2'), slirp);
    if (have('pasta') && gw) {
      const pasta = await throughHelper((a) => burrow('run', '--rm', '--network', 'pasta:--map-gw', ...BIND, ref, ...a), gw);
      add('pasta (MTU 65520)', 'burrow', pasta);
      // podman 4.3 has no pasta: the same pasta, started standalone with burrow's options.
      add('pasta (MTU 65520)', 'pasta standalone', await throughHelper((a) => ['pasta', '--config-net', '--quiet', '-t', 'none', '-u', 'none', '-T', 'none', '-U', 'none', '--mtu', '65520', '--ipv4-only', '--', ...a], gw), pasta);
    }

    // Published ports: an iperf3 server in the container.
    const server = ['/usr/bin/iperf3', '-s', '-p', '5201'];
    const published = async (startArgv, stopArgv) => {
      const port = await freePort();
      const id = sh(startArgv(port)).trim();
      started.push(() => spawnSync(asUser(stopArgv(id))[0], asUser(stopArgv(id)).slice(1)));
      const r = await throughPort(port);
      return { r, id };
    };
    const ours = await published((p) => burrow('run', '-d', '-p', `${p}:5201`, ...BIND, ref, ...server), (id) => burrow('rm', '-f', id));
    add('published port, default handler', 'burrow forwarder', ours.r);
    // Memory kept alive per container, with -p: the monitor (holding the forwarder) and the helper.
    const mon = JSON.parse(fs.readFileSync(path.join(store, 'containers', ours.id, 'monitor.json'), 'utf8')).pid;
    const kids = descendants(mon).filter((p) => p.comm !== 'iperf3');
    const memRows = [{ tool: 'burrow', comm: 'burrow:monitor (with the forwarder)', mib: rssMiB(mon) }, ...kids.map((k) => ({ tool: 'burrow', comm: k.comm, mib: rssMiB(k.pid) }))];
    sh(burrow('rm', '-f', ours.id));
    // port_handler=bypass: the server's own socket listens on the host (crates/burrow-core/src/net/bypass.rs).
    const bypass = await published((p) => burrow('run', '-d', '--network', 'slirp4netns:port_handler=bypass', '-p', `${p}:5201`, ...BIND, ref, ...server), (id) => burrow('rm', '-f', id));
    add('published port, port_handler=bypass', 'burrow bypass', bypass.r);
    sh(burrow('rm', '-f', bypass.id));
    const slirpHandler = await published((p) => burrow('run', '-d', '--network', 'slirp4netns:port_handler=slirp4netns', '-p', `${p}:5201`, ...BIND, ref, ...server), (id) => burrow('rm', '-f', id));
    add('published port, slirp4netns handler', 'burrow', slirpHandler.r);
    sh(burrow('rm', '-f', slirpHandler.id));
    if (podman) {
      const before = new Set(procs().map((p) => p.pid));
      const pr = await published((p) => ['podman', 'run', '-d', '-p', `${p}:5201`, ...BIND, ref, ...server], (id) => ['podman', 'rm', '-f', '-t', '0', id]);
      add('published port, default handler', 'podman rootlessport', pr.r, ours.r);
      add('published port, bypass vs podman\'s default', 'podman rootlessport', pr.r, bypass.r);
      for (const p of procs().filter((x) => !before.has(x.pid) && ['conmon', 'slirp4netns', 'rootlessport', 'rootlessport-ch', 'exe'].includes(x.comm))) memRows.push({ tool: 'podman', comm: p.comm, mib: rssMiB(p.pid) });
      sh(['podman', 'rm', '-f', '-t', '0', pr.id]);
      const ps = await published((p) => ['podman', 'run', '-d', '--network', 'slirp4netns:port_handler=slirp4netns', '-p', `${p}:5201`, ...BIND, ref, ...server], (id) => ['podman', 'rm', '-f', '-t', '0', id]);
      add('published port, slirp4netns handler', 'podman', ps.r, slirpHandler.r);
      sh(['podman', 'rm', '-f', '-t', '0', ps.id]);
    }

    const lines = [
      `### iperf3, ${SECONDS} s per direction, median of ${REPS} runs each (Gbit/s)`,
      '',
      '"up": towards the host (container → host loopback; for published ports, host client → container server); "down": the reverse (iperf3 -R). Ratios: the peer\'s rate over burrow\'s in the same row pair (below 1× means burrow is faster).',
      '',
      '| path | tool | up | down | ratio up | ratio down |',
      '|---|---|---:|---:|---:|---:|',
      ...rows.map((r) => `| ${r.what} | ${r.tool} | ${fmt(r.up)} | ${fmt(r.down)} | ${r.peer ? ratio(r.up, r.peer.up) : ''} | ${r.peer ? ratio(r.down, r.peer.down) : ''} |`),
      '',
      '### Memory kept alive per container with `-p` (RSS, MiB)',
      '',
      '| tool | process | RSS |',
      '|---|---|---:|',
      ...memRows.map((m) => `| ${m.tool} | ${m.comm} | ${m.mib.toFixed(1)} |`),
      '',
    ];
    return lines.join('\n');
  } finally {
    for (const stop of started) stop();
    await reg.stop();
    spawnSync('rm', ['-rf', base]);
  }
}

// ---------------------------------------------------------------------------------------------
// User-defined networks (issue 16): burrow's network owner against rootless podman 4.3 with
// netavark and aardvark-dns, side by side in one run, both as the unprivileged bench user.
//
// How podman is configured (nothing of the machine's or the bench user's own configuration is
// read or changed): XDG_CONFIG_HOME is a directory of the bench's own, whose
// containers/containers.conf says `[network] network_backend = "netavark"` (and, as
// bench/peers/containers.conf, `[engine] cgroup_manager = "cgroupfs"`, `events_logger = "file"`,
// `runtime = "runc"`), with bench/peers/storage.conf (overlay) and registries.conf beside it;
// `--root`/`--runroot` are fresh directories (podman refuses to switch backends on a store that
// has CNI networks), and XDG_RUNTIME_DIR is fresh too, so its pause process and rootless network
// namespace (a bridge per network, slirp4netns for outbound, aardvark-dns) are the bench's own.
// podman 4.3's rootless netns has no pasta: slirp4netns, its default, with its default options
// (MTU 65520, host loopback disabled). Networks with default options on both sides
// (`network create NAME`: podman's MTU 1500 for the bridge, burrow's 65520).
// burrow runs with the same XDG_CONFIG_HOME and XDG_RUNTIME_DIR and a fresh --root/--runroot.
//
// Measured, each for both tools, ratios burrow/podman:
//   1. iperf3 container → container on one network, the client reaching the server by name;
//   2. iperf3 container on the network → the host (both directions): the server on the host's
//      own address on its default route (not its loopback, which neither tool's outbound path
//      reaches with default options), through the network's outbound path (slirp4netns in the
//      owner's namespace for burrow, in the rootless netns for podman);
//   3. wall time of `run --rm --network NAME busybox true` (hyperfine, median, after warm-up),
//      with the network idle (nothing else on it: the owner / rootless netns start and stop
//      with each run) and with two containers running on it;
//   4. memory of the processes of the tool that stay alive for a network with two running
//      containers (RSS and PSS summed; each listed), the containers' own processes excluded.
// iperf3 in the containers: the host's Debian iperf3, with /usr, /lib and /lib64 bind-mounted
// read-only into a busybox image (the same image, imported into both), the same for both tools.
// `npm run bench -- network` runs both sections; BURROW_BENCH_NETWORK=user (or modes) only one.
// Targets (issue 16): ≥ 1× podman's throughput container-to-container and outbound, start
// ≤ 0.5× podman's, memory ≤ 0.5× podman's. Reported, never asserted.

const USER_TITLE = 'Network: user-defined networks, burrow against rootless podman with netavark + aardvark-dns';
const START_RUNS = Number(process.env.BENCH_NET_START_RUNS || 21);
const IMAGE = 'localhost/bench/busybox:latest';
const TARGETS = { c2c: 1, outbound: 1, start: 0.5, memory: 0.5 };

/** The host's own address on its default route (a route lookup: nothing is sent). */
function hostAddress() {
  const gw = hostGateway();
  if (!gw) return undefined;
  const r = JSON.parse(execFileSync('ip', ['-4', '-j', 'route', 'get', gw], { encoding: 'utf8' }));
  return r[0]?.prefsrc;
}

function pss(pid) {
  try {
    return Number(/^Pss:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))[1]) / 1024;
  } catch {
    return 0;
  }
}

function procEnvHas(pid, needle) {
  try {
    return fs.readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes(needle);
  } catch {
    return false;
  }
}

function procEnvPrefix(pid, prefix) {
  try {
    return fs.readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').some((e) => e.startsWith(prefix));
  } catch {
    return false;
  }
}

function procCmdline(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return '';
  }
}

function procUid(pid) {
  try {
    return Number(/^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
  } catch {
    return -1;
  }
}

/**
 * The bench's two tools, each with its CLI argv prefix in a store of its own under `base`, run
 * with `env` (the private XDG directories and a marker that the processes they leave inherit).
 */
function userSides(base, env, mark) {
  const burrowCli = [process.execPath, BURROW, '--root', path.join(base, 'b', 'store'), '--runroot', path.join(base, 'b', 'run')];
  // Short paths: podman refuses a runroot longer than 50 characters.
  const podmanCli = ['podman', '--root', path.join(base, 'pg'), '--runroot', path.join(base, 'pr')];
  const mk = (name, cli) => ({
    name,
    cli,
    marker: `${mark}-${name}`,
    argv: (...a) => [...cli, ...a],
    sh(...a) {
      const x = asUser(['env', ...env, `${mark}-${name}`, ...cli, ...a]);
      const r = spawnSync(x[0], x.slice(1), { encoding: 'utf8', maxBuffer: 1 << 26 });
      if (r.status !== 0) throw new Error(`${name} ${a.slice(0, 3).join(' ')} failed (exit ${r.status}): ${(r.stderr || r.stdout || '').trim().split('\n').slice(-2).join(' / ')}`);
      return r.stdout;
    },
    try(...a) {
      const x = asUser(['env', ...env, `${mark}-${name}`, ...cli, ...a]);
      return spawnSync(x[0], x.slice(1), { encoding: 'utf8', maxBuffer: 1 << 26 });
    },
  });
  return [mk('burrow', burrowCli), mk('podman', podmanCli)];
}

/**
 * hyperfine as the bench user with `env` (so no wrapper is inside the timed commands), in
 * ROUNDS rounds that alternate which tool goes first (hyperfine runs one command's runs back to
 * back: on a shared machine a burst of other work would otherwise land on one tool only); the
 * median and standard deviation over all runs of all rounds.
 */
const ROUNDS = 3;
function hyperfineEnv(env, commands, { runs, warmup }) {
  const q = (a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
  const acc = new Map(commands.map((c) => [c.name, { times: [], failed: 0 }]));
  for (let round = 0; round < ROUNDS; round++) {
    const out = path.join(os.tmpdir(), `burrow-bench-net-${process.pid}-${Date.now()}.json`);
    const n = Math.max(1, Math.round(runs / ROUNDS));
    const args = ['-N', '--style', 'basic', '-i', '--runs', String(n), '--warmup', String(round ? 1 : warmup), '--export-json', out];
    for (const c of round % 2 ? [...commands].reverse() : commands) args.push('--command-name', c.name, c.argv.map(q).join(' '));
    const argv = asUser(['env', ...env, 'hyperfine', ...args]);
    execFileSync(argv[0], argv.slice(1), { stdio: ['ignore', process.stderr, 'inherit'] });
    const j = JSON.parse(fs.readFileSync(out, 'utf8'));
    fs.rmSync(out, { force: true });
    for (const r of j.results) {
      const a = acc.get(r.command);
      a.times.push(...r.times.map((t) => t * 1000));
      a.failed += (r.exit_codes ?? []).filter((c) => c !== 0).length;
    }
  }
  return commands.map((c) => {
    const { times, failed } = acc.get(c.name);
    const mean = times.reduce((x, y) => x + y, 0) / times.length;
    const stddev = Math.sqrt(times.reduce((x, y) => x + (y - mean) ** 2, 0) / Math.max(1, times.length - 1));
    const sorted = [...times].sort((x, y) => x - y);
    const mid = sorted.length / 2;
    const med = sorted.length % 2 ? sorted[Math.floor(mid)] : (sorted[mid - 1] + sorted[mid]) / 2;
    return { name: c.name, median: failed ? NaN : med, stddev, failed, runs: times.length };
  });
}

/** Gbit/s received, from iperf3 -J output that may carry other lines before the JSON. */
function iperfGbits(stdout, stderr) {
  const i = stdout.indexOf('{');
  if (i < 0) throw new Error(`no iperf3 output: ${(stderr || stdout).trim().split('\n').slice(-2).join(' / ')}`);
  return gbits(stdout.slice(i));
}

/** The process ids of a running container's processes (its init and everything below it). */
function workloadPids(side, names, all) {
  const pids = new Set();
  for (const n of names) {
    const r = side.try('inspect', '--format', '{{.State.Pid}}', n);
    const pid = Number(r.stdout.trim());
    if (!(pid > 0)) continue;
    pids.add(pid);
    for (const d of descendants(pid, all)) pids.add(d.pid);
  }
  return pids;
}

/**
 * The processes of the bench user that belong to one tool's run: those that inherited the
 * tool's marker (an environment variable every command of that tool is run with) or name its
 * directories on their command line, their descendants, and the pids the tool records (burrow's
 * owner.json and monitor.json files, podman's pause.pid), minus the containers' own processes.
 * Other helpers' processes of the same user carry neither.
 */
function toolProcesses({ uid, marker, dirs, pidFiles, workloads }) {
  const all = procs();
  const mine = new Map();
  const add = (p) => {
    if (!workloads.has(p.pid) && !mine.has(p.pid)) mine.set(p.pid, p);
  };
  for (const p of all) {
    if (procUid(p.pid) !== uid) continue;
    const cmd = procCmdline(p.pid);
    if (procEnvHas(p.pid, marker) || dirs.some((d) => cmd.includes(d))) add(p);
  }
  for (const f of pidFiles) {
    try {
      const txt = fs.readFileSync(f, 'utf8').trim();
      const pid = txt.startsWith('{') ? JSON.parse(txt).pid : Number(txt);
      const p = all.find((x) => x.pid === pid);
      if (p) add(p);
    } catch {
      /* not there */
    }
  }
  for (const p of [...mine.values()]) for (const d of descendants(p.pid, all)) add(d);
  // The CLI that started the containers has exited; anything left is what stays alive.
  return [...mine.values()].map((p) => ({ pid: p.pid, comm: p.comm, cmd: procCmdline(p.pid).slice(0, 90), rss: rssMiB(p.pid), pss: pss(p.pid) }));
}

function listFiles(dir, name, depth = 3) {
  const out = [];
  const walk = (d, n) => {
    let ents;
    try {
      ents = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of ents) {
      if (e.isFile() && e.name === name) out.push(path.join(d, e.name));
      else if (e.isDirectory() && n > 0) walk(path.join(d, e.name), n - 1);
    }
  };
  walk(dir, depth);
  return out;
}

const gb = (x) => (Number.isFinite(x) ? x.toFixed(2) : 'failed');
const ms = (x) => (Number.isFinite(x) ? x.toFixed(0) : 'failed');
const mib = (x) => (Number.isFinite(x) ? x.toFixed(1) : 'failed');
const q = (b, p) => (Number.isFinite(b) && Number.isFinite(p) && p > 0 ? b / p : NaN);
const verdict = (r, target, higherIsBetter) => (!Number.isFinite(r) ? '–' : (higherIsBetter ? r >= target : r <= target) ? 'met' : '**missed**');

async function runUserNetworks() {
  if (!have('iperf3')) throw new Error('iperf3 is not installed (apt-get install iperf3; .ci/setup installs it)');
  if (!have('podman')) throw new Error('podman is not installed: run .ci/setup');
  if (!fs.existsSync('/usr/lib/podman/netavark') || !fs.existsSync('/usr/lib/podman/aardvark-dns')) throw new Error('netavark or aardvark-dns is not installed (apt-get install netavark aardvark-dns; .ci/setup installs them)');
  const u = benchUser();
  const uid = u ? u.uid : process.getuid();
  const hostIp = hostAddress();
  if (!hostIp) throw new Error('the host has no default route: no host address to reach from a container');
  // Short: podman's runroot must stay under 50 characters.
  const base = fs.mkdtempSync('/tmp/bnet-');
  fs.chmodSync(base, 0o755);
  const cfg = path.join(base, 'cfg');
  const xdg = path.join(base, 'xdg');
  fs.mkdirSync(path.join(cfg, 'containers'), { recursive: true });
  fs.mkdirSync(xdg, { mode: 0o700 });
  for (const f of ['storage.conf', 'registries.conf']) fs.copyFileSync(path.join(ROOT, 'bench', 'peers', f), path.join(cfg, 'containers', f));
  fs.writeFileSync(
    path.join(cfg, 'containers', 'containers.conf'),
    '# podman for bench/network.bench.mjs: bench/peers/containers.conf and the netavark backend\n[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nruntime = "runc"\n\n[network]\nnetwork_backend = "netavark"\n',
  );
  // Each tool's commands carry a marker of their own (the timed runs a third), which what they
  // leave running inherits: how the memory table finds them, and the clean-up what to kill.
  const mark = `BURROW_BENCH_NET=${path.basename(base)}`;
  const env = [`XDG_CONFIG_HOME=${cfg}`, `XDG_RUNTIME_DIR=${xdg}`];
  const sides = userSides(base, env, mark);
  const [burrow, podman] = sides;
  const net = 'bnet';
  const jumboNet = 'bnetj';
  const bind = ['-v', '/usr:/usr:ro', '-v', '/lib:/lib:ro', '-v', '/lib64:/lib64:ro', '--tmpfs', '/tmp'];
  const errors = { burrow: [], podman: [] };
  const attempt = async (side, what, fn) => {
    try {
      return await fn();
    } catch (err) {
      const msg = String(err.message ?? err).split('\n')[0];
      errors[side.name].push(`${what}: ${msg}`);
      process.stderr.write(`${side.name} ${what} failed: ${msg}\n`);
      return undefined;
    }
  };
  try {
    const rf = path.join(base, 'img');
    makeRootfs(rf);
    const tarball = path.join(base, 'busybox.tar.gz');
    execFileSync('tar', ['--numeric-owner', '--owner=0', '--group=0', '-czf', tarball, '-C', path.join(rf, 'rootfs'), '.']);
    fs.rmSync(rf, { recursive: true, force: true });
    if (u) execFileSync('chown', ['-R', `${u.uid}:${u.gid}`, base]);
    const ok = {};
    for (const s of sides) {
      ok[s.name] = await attempt(s, 'set-up', () => {
        s.sh('import', tarball, IMAGE);
        s.sh('network', 'create', net);
        return true;
      });
    }
    const podmanInfo = podman.try('info', '--format', '{{.Host.NetworkBackend}} {{.Store.GraphDriverName}} {{.Host.OCIRuntime.Name}}').stdout.trim();

    // ---- 3a. start, the network idle ----
    const startCmd = (s) => ({ name: `${s.name} run --rm --network ${net} busybox true`, argv: s.argv('run', '--rm', '--network', net, IMAGE, 'true') });
    const live = sides.filter((s) => ok[s.name]);
    process.stderr.write(`start, the network idle (${START_RUNS} runs each)\n`);
    const startIdle = live.length ? hyperfineEnv([...env, `${mark}-timed`], live.map(startCmd), { runs: START_RUNS, warmup: 3 }) : [];

    // ---- two containers on the network: an iperf3 server and a sleeper ----
    const up = {};
    for (const s of live) {
      up[s.name] = await attempt(s, 'two containers', () => {
        s.sh('run', '-d', '--name', 'srv', '--network', net, ...bind, IMAGE, '/usr/bin/iperf3', '-s');
        s.sh('run', '-d', '--name', 'peer', '--network', net, IMAGE, 'sleep', '100000');
        return true;
      });
    }
    await sleep(2000);

    // ---- 4. memory of what stays alive ----
    const mem = {};
    for (const s of live.filter((x) => up[x.name])) {
      const all = procs();
      const workloads = workloadPids(s, ['srv', 'peer'], all);
      // podman: conmon names the store, aardvark-dns the runroot, slirp4netns the rootless netns.
      const dirs = s.name === 'burrow' ? [path.join(base, 'b') + '/'] : [path.join(base, 'pg') + '/', path.join(base, 'pr') + '/', path.join(xdg, 'netns') + '/'];
      const pidFiles = s.name === 'burrow' ? [...listFiles(path.join(base, 'b', 'run'), 'owner.json'), ...listFiles(path.join(base, 'b', 'store', 'containers'), 'monitor.json', 2)] : [path.join(xdg, 'libpod', 'tmp', 'pause.pid')];
      mem[s.name] = toolProcesses({ uid, marker: s.marker, dirs, pidFiles, workloads });
      process.stderr.write(`${s.name} keeps: ${mem[s.name].map((p) => `${p.pid} ${p.comm} ${p.rss.toFixed(1)}/${p.pss.toFixed(1)} MiB`).join(', ')}\n`);
    }

    // ---- 3b. start, two containers running on the network ----
    const liveUp = live.filter((s) => up[s.name]);
    process.stderr.write(`start, two containers running on the network (${START_RUNS} runs each)\n`);
    const startBusy = liveUp.length ? hyperfineEnv([...env, `${mark}-timed`], liveUp.map(startCmd), { runs: START_RUNS, warmup: 3 }) : [];

    // podman's bridge has MTU 1500 by default, burrow's 65520 (as its slirp4netns and pasta
    // modes): a second podman network with MTU 65520 (and a server on it), made after the
    // memory was measured, gives podman's figures at burrow's MTU as a reference.
    const jumbo = jumboNet;
    const runs = liveUp.map((s) => ({ side: s, key: s.name, net, srv: 'srv' }));
    if (up.podman) {
      const ok9 = await attempt(podman, 'MTU 65520 network', () => {
        podman.sh('network', 'create', '-o', 'mtu=65520', jumbo);
        podman.sh('run', '-d', '--name', 'srvj', '--network', jumbo, ...bind, IMAGE, '/usr/bin/iperf3', '-s');
        return true;
      });
      if (ok9) runs.push({ side: podman, key: 'podmanJumbo', net: jumbo, srv: 'srvj' });
    }

    // ---- 1. container → container, by name; 2. container → host, both directions ----
    const tput = Object.fromEntries(['burrow', 'podman', 'podmanJumbo'].map((k) => [k, { c2c: [], out: [], in: [] }]));
    const client = (x, args) => {
      const r = x.side.try('run', '--rm', '--network', x.net, ...bind, IMAGE, '/usr/bin/iperf3', '-J', '-t', String(SECONDS), ...args);
      if (r.status !== 0 && !r.stdout.includes('{')) throw new Error(`iperf3 client (exit ${r.status}): ${(r.stderr || r.stdout).trim().split('\n').slice(-2).join(' / ')}`);
      return iperfGbits(r.stdout, r.stderr);
    };
    for (let i = 0; i < REPS; i++) {
      // Alternate which tool goes first.
      for (const x of i % 2 ? [...runs].reverse() : runs) {
        const s = x.side;
        const c2c = await attempt(s, 'container → container', () => client(x, ['-c', x.srv]));
        tput[x.key].c2c.push(c2c ?? NaN);
        for (const [dir, extra] of [['out', []], ['in', ['-R']]]) {
          const port = await freePort();
          const srv = bg(['iperf3', '-s', '-1', '-B', hostIp, '-p', String(port)]);
          for (let k = 0; k < 100 && spawnSync('sh', ['-c', `ss -ltn | grep -q "${hostIp}:${port} "`]).status !== 0; k++) await sleep(20);
          const r = await attempt(s, `container ↔ host (${dir})`, () => client(x, ['-c', hostIp, '-p', String(port), ...extra]));
          srv.stop();
          await done(srv);
          tput[x.key][dir].push(r ?? NaN);
        }
      }
    }

    // ---- the tables ----
    const med = (s, k) => median(tput[s][k]);
    const bp = (k) => [med('burrow', k), med('podman', k)];
    const tRow = (label, k, target) => {
      const [b, p] = bp(k);
      const r = q(b, p);
      const j = med('podmanJumbo', k);
      const rj = q(b, j);
      return `| ${label} | ${gb(b)} | ${gb(p)} | ${Number.isFinite(r) ? r.toFixed(2) + '×' : '–'} | ≥ ${target}× | ${verdict(r, target, true)} | ${gb(j)} | ${Number.isFinite(rj) ? rj.toFixed(2) + '×' : '–'} |`;
    };
    const startOf = (rows, name) => rows.find((r) => r.name.startsWith(name));
    const sRow = (label, rows) => {
      const b = startOf(rows, 'burrow');
      const p = startOf(rows, 'podman');
      const r = q(b?.median, p?.median);
      const cell = (x) => (x ? (x.failed ? `failed ${x.failed}/${x.runs}` : `${ms(x.median)} ± ${ms(x.stddev)}`) : 'not run');
      return `| ${label} | ${cell(b)} | ${cell(p)} | ${Number.isFinite(r) ? r.toFixed(2) + '×' : '–'} | ≤ ${TARGETS.start}× | ${verdict(r, TARGETS.start, false)} |`;
    };
    const sum = (list, k) => (list ? list.reduce((a, p) => a + p[k], 0) : NaN);
    const memRatio = (k) => q(sum(mem.burrow, k), sum(mem.podman, k));
    const fmtRuns = (xs) => xs.map(gb).join(', ');
    const lines = [
      `podman ${podmanVersion()} (\`podman info\`: backend, storage driver, runtime = ${podmanInfo || '?'}), netavark ${debVersion('netavark')}, aardvark-dns ${debVersion('aardvark-dns')}, slirp4netns ${debVersion('slirp4netns')}. Ratios are burrow / podman.`,
      '',
      `### Throughput, iperf3 ${SECONDS} s, median of ${REPS} runs (Gbit/s)`,
      '',
      '| path | burrow | podman | burrow / podman | target | | podman, bridge MTU 65520 | burrow / that |',
      '|---|---:|---:|---:|---:|---|---:|---:|',
      tRow('container → container on one network, by name', 'c2c', TARGETS.c2c),
      tRow(`container → host (${hostIp}), outbound path`, 'out', TARGETS.outbound),
      tRow(`host → container (iperf3 -R), the same path`, 'in', TARGETS.outbound),
      '',
      `Runs (Gbit/s): ${[['burrow', 'burrow'], ['podman', 'podman'], ['podmanJumbo', 'podman MTU 65520']].map(([n, label]) => `${label}: c2c ${fmtRuns(tput[n].c2c)}; out ${fmtRuns(tput[n].out)}; in ${fmtRuns(tput[n].in)}`).join('. ')}. The machine is shared with other work: single runs vary by up to 2×; the tools alternate which goes first.`,
      '',
      `### Start of a container on the network: \`run --rm --network ${net} busybox true\` (ms, median ± stddev of ${startIdle[0]?.runs ?? START_RUNS} runs: hyperfine in ${ROUNDS} rounds alternating which tool goes first, 3 warm-up runs before the first)`,
      '',
      '| network | burrow | podman | burrow / podman | target | |',
      '|---|---:|---:|---:|---:|---|',
      sRow('idle (nothing else on it)', startIdle),
      sRow('two containers running on it', startBusy),
      '',
      '### Memory that stays alive for the network with two running containers (MiB)',
      '',
      '| tool | process | RSS | PSS |',
      '|---|---|---:|---:|',
      ...['burrow', 'podman'].flatMap((n) => (mem[n] ?? []).map((p) => `| ${n} | ${p.comm} | ${mib(p.rss)} | ${mib(p.pss)} |`)),
      ...['burrow', 'podman'].map((n) => `| **${n}** | **sum of ${mem[n]?.length ?? 0} processes** | **${mib(sum(mem[n], 'rss'))}** | **${mib(sum(mem[n], 'pss'))}** |`),
      '',
      `Per container (burrow's monitor, podman's conmon) and for the network (the rest): ${['burrow', 'podman'].map((n) => {
        const per = (mem[n] ?? []).filter((p) => /^(burrow:monitor|conmon)$/.test(p.comm));
        const rest = (mem[n] ?? []).filter((p) => !per.includes(p));
        return `${n} ${mib(sum(per, 'rss') / Math.max(1, per.length))} RSS / ${mib(sum(per, 'pss') / Math.max(1, per.length))} PSS per container, ${mib(sum(rest, 'rss'))} / ${mib(sum(rest, 'pss'))} for the rest`;
      }).join('; ')}.`,
      '',
      `burrow / podman: RSS ${Number.isFinite(memRatio('rss')) ? memRatio('rss').toFixed(2) + '×' : '–'}, PSS ${Number.isFinite(memRatio('pss')) ? memRatio('pss').toFixed(2) + '×' : '–'} (target ≤ ${TARGETS.memory}×: ${verdict(memRatio('pss'), TARGETS.memory, false)} on PSS, ${verdict(memRatio('rss'), TARGETS.memory, false)} on RSS). The containers' own processes (iperf3 -s, sleep) are not counted.`,
      '',
      `How podman was configured: a containers.conf of the bench's own (XDG_CONFIG_HOME) with \`[network] network_backend = "netavark"\` and, as bench/peers/containers.conf, \`cgroup_manager = "cgroupfs"\`, \`events_logger = "file"\`, \`runtime = "runc"\`; bench/peers/storage.conf (overlay); fresh \`--root\`/\`--runroot\` (a store with no CNI network) and a fresh XDG_RUNTIME_DIR (its own pause process and rootless netns); \`podman network create ${net}\` with default options (bridge MTU 1500; burrow's bridge MTU is 65520; the throughput table's last columns: a second podman network made with \`-o mtu=65520\`), the rootless netns's slirp4netns with podman's default options (host loopback disabled). burrow with the same XDG directories, its own store, \`burrow network create ${net}\`. The host-side iperf3 server listens on the host's own address on its default route (${hostIp}), which both outbound paths reach with default options (the host's loopback is not reachable from either). iperf3 in the containers is the host's, with /usr, /lib, /lib64 bound read-only (the same for both tools).`,
    ];
    for (const n of ['burrow', 'podman']) if (errors[n].length) lines.push('', `**${n} failures:** ${[...new Set(errors[n])].join('; ')}`);
    return lines.join('\n') + '\n';
  } finally {
    for (const s of sides) {
      s.try('rm', '-f', ...(s.name === 'podman' ? ['-t', '0', 'srvj'] : []), 'srv', 'peer');
      s.try('network', 'rm', net, ...(s.name === 'podman' ? [jumboNet] : []));
    }
    // What either tool left running (podman's pause process stays by design; slirp4netns,
    // aardvark-dns or an owner that did not exit): killed by pid, then the directories go.
    await sleep(500);
    for (const p of procs()) {
      if (procUid(p.pid) === uid && procEnvPrefix(p.pid, mark)) {
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    await sleep(200);
    spawnSync('rm', ['-rf', base]);
  }
}

function podmanVersion() {
  try {
    return execFileSync('podman', ['--version'], { encoding: 'utf8' }).trim().replace(/^podman version /, '');
  } catch {
    return '?';
  }
}

function debVersion(pkg) {
  try {
    return execFileSync('dpkg-query', ['-W', '-f', '${Version}', pkg], { encoding: 'utf8' }).trim();
  } catch {
    return '?';
  }
}

const only = process.env.BURROW_BENCH_NETWORK;
export const sections = [
  { title: MODES_TITLE, run: runModes, key: 'modes' },
  { title: USER_TITLE, run: runUserNetworks, key: 'user' },
].filter((s) => !only || s.key === only);
