// Network throughput (iperf3) between the host's loopback and a container, both directions,
// for each mode, against podman with the same helper (podman 4.3 has no pasta: pasta runs
// standalone there, with the options burrow gives it), and through a published port against
// podman's default port handler (rootlessport) and slirp4netns's own. The median of a few runs of each, as the
// unprivileged bench user; the container runs the host's iperf3 (its /usr bound read-only).
// Also the memory that stays alive per container for the helper and the forwarder.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { asUser, benchUser, BURROW, have } from './lib.mjs';
import { hostGateway } from '../test/harness/net.mjs';
import { startRegistry } from '../test/harness/registry.mjs';
import { buildSmallImage, pushImage } from '../test/harness/images.mjs';

export const title = 'Network: iperf3 host loopback ↔ container, per mode and through a published port';

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

export async function run() {
  if (!have('iperf3')) throw new Error('iperf3 is not installed (apt-get install iperf3; .ci/setup installs it)');
  const u = benchUser();
  const reg = await startRegistry({ mode: 'anonymous' });
  const base = fs.mkdtempSync('/tmp/burrow-bench-net-');
  fs.chmodSync(base, 0o755);
  if (u) fs.chownSync(base, u.uid, u.gid);
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
