// The Engine API (issue 14): the same docker CLI (Debian's docker.io 20.10, from .ci/setup's
// cache) against burrow's `system service` and rootless `podman system service`, side by side in
// one run, both as the unprivileged bench user, each with a store of its own:
//   `docker run --rm --network none IMG true`, `docker ps` with 50 running containers, `docker
//   logs` of a container that wrote 100 MB, `docker pull` of the 3-layer image of
//   bench/pull.bench.mjs from a loopback registry (each run after an rmi of it);
//   the idle service's resident memory (fresh, and after the workload), and the time from the
//   first request on a freshly activated socket (bench/socket-activate.py, as a socket unit does)
//   to its answer: the service's start-up as a user meets it.
// `npm run bench -- api`. BURROW_BENCH_API_PULL=main pulls test/harness/images.mjs's main image
// (4 layers, 64 MiB) instead of the 500 MB one (quicker); BURROW_BENCH_API_ONLY=podman|burrow
// runs one side (the tables then have no ratios); BURROW_BENCH_API_CASES=ps (a comma-separated
// list of run, ps, logs, pull, rss, activation) runs only those cases (the results then are not
// a whole section of RESULTS.md: for a quick look). A side that fails a probe is reported with
// its error and the other side still runs.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { asUser, benchDir, benchUser, BURROW, have, hyperfine, ROOT } from './lib.mjs';
import { buildBenchImage } from './pull.bench.mjs';
import { startRegistry } from '../test/harness/registry.mjs';
import { buildMainImage, pushImage } from '../test/harness/images.mjs';
import { dockerCli } from '../test/harness/docker-clients.mjs';

export const title = 'Engine API: the docker CLI against burrow system service and podman system service';

const CONTAINERS = Number(process.env.BURROW_BENCH_API_CONTAINERS ?? 50);
const LOG_BYTES = 100e6;
const ACTIVATIONS = Number(process.env.BURROW_BENCH_API_ACTIVATIONS ?? 10);
const CASES = new Set((process.env.BURROW_BENCH_API_CASES ?? 'run,ps,logs,pull,rss,activation').split(','));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function rssKiB(pid) {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
  } catch {
    return 0;
  }
}

/** Runs argv as the bench user; throws with its stderr when it fails. */
function sh(argv, opts = {}) {
  const a = asUser(argv);
  const r = spawnSync(a[0], a.slice(1), { encoding: 'utf8', maxBuffer: 1 << 28, ...opts });
  if (r.status !== 0) {
    // The reason first (tables cut long messages): the command's last words, then the command.
    const sub = argv.includes('-H') ? argv.slice(argv.indexOf('-H') + 2, argv.indexOf('-H') + 4).join(' ') : argv.slice(0, 3).join(' ');
    throw new Error(`${(r.stderr || r.stdout || '').trim().split('\n').slice(-2).join(' / ')} (exit ${r.status} of ${sub})`);
  }
  return r.stdout;
}

/** GET path on a unix socket; resolves the status. A connection of its own: the docker CLI's way. */
function get(sock, p) {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: sock, path: p, method: 'GET', agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', reject);
    req.end();
  });
}

async function waitFor(pred, ms, what) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await pred()) return;
    await sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/**
 * One side: how to start its service as the bench user (argv given the socket), its docker CLI
 * prefix, and the service's pid (from a pid file: runuser stands between).
 */
function side(name, base, serviceArgv, env) {
  const dir = path.join(base, name);
  const sock = path.join(dir, 'api.sock');
  const cfg = path.join(dir, 'docker-config');
  const envArgs = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  const docker = ['env', `DOCKER_CONFIG=${cfg}`, dockerCli(), '-H', `unix://${sock}`];
  let pid = null;
  return {
    name,
    dir,
    sock,
    docker,
    pid: () => pid,
    prepare(u) {
      fs.mkdirSync(cfg, { recursive: true });
      if (u) execFileSync('chown', ['-R', `${u.uid}:${u.gid}`, dir]);
    },
    async start() {
      fs.rmSync(sock, { force: true });
      const pidFile = path.join(dir, 'service.pid');
      fs.rmSync(pidFile, { force: true });
      const a = asUser(['sh', '-c', `echo $$ > ${pidFile}; exec env ${envArgs.join(' ')} "$@"`, 'sh', ...serviceArgv(`unix://${sock}`)]);
      const log = fs.openSync(path.join(dir, 'service.log'), 'a');
      const child = spawn(a[0], a.slice(1), { stdio: ['ignore', log, log], detached: true });
      fs.closeSync(log);
      child.unref();
      await waitFor(async () => fs.existsSync(sock) && (await get(sock, '/_ping').catch(() => 0)) === 200, 60_000, `${name}'s service on ${sock}: ${fs.existsSync(path.join(dir, 'service.log')) ? fs.readFileSync(path.join(dir, 'service.log'), 'utf8').slice(-500) : ''}`);
      pid = Number(fs.readFileSync(pidFile, 'utf8'));
    },
    async stop() {
      if (!pid) return;
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        /* gone */
      }
      await waitFor(() => rssKiB(pid) === 0, 30_000, `${name}'s service to exit`).catch(() => process.kill(pid, 'SIGKILL'));
      pid = null;
    },
    /** The first request on a freshly activated socket: the service starts on the first connection (bench/socket-activate.py). */
    async activation(activatedArgv) {
      const s = path.join(dir, 'activated.sock');
      const pidFile = path.join(dir, 'activator.pid');
      fs.rmSync(s, { force: true });
      fs.rmSync(pidFile, { force: true });
      const a = asUser(['env', ...envArgs, 'python3', path.join(ROOT, 'bench', 'socket-activate.py'), s, pidFile, ...activatedArgv]);
      const child = spawn(a[0], a.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
      let err = '';
      child.stderr.on('data', (d) => (err += d));
      child.unref();
      await waitFor(() => fs.existsSync(s) && fs.existsSync(pidFile) && fs.readFileSync(pidFile, 'utf8').trim() !== '', 10_000, `the activator on ${s}: ${err}`);
      const t0 = process.hrtime.bigint();
      const status = await get(s, '/_ping').catch((e) => e.message);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      // The activator became the service (exec): its pid is the service's.
      const svcPid = Number(fs.readFileSync(pidFile, 'utf8'));
      try {
        process.kill(svcPid, 'SIGTERM');
      } catch {
        /* gone */
      }
      await waitFor(() => rssKiB(svcPid) === 0, 30_000, 'the activated service to exit').catch(() => process.kill(svcPid, 'SIGKILL'));
      if (status !== 200) throw new Error(`${name}: the activated service answered ${status}: ${err}`);
      return ms;
    },
  };
}

/** CPU time (ms) of a process and its descendants (rootless podman's service re-executes itself in a child). */
function treeCpuMs(pid) {
  const stats = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const t = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = t.slice(t.lastIndexOf(')') + 2).split(' ');
      stats.push({ pid: Number(d), ppid: Number(f[1]), cpu: Number(f[11]) + Number(f[12]) });
    } catch {
      /* gone */
    }
  }
  const tree = new Set([pid]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of stats) if (!tree.has(p.pid) && tree.has(p.ppid)) (tree.add(p.pid), (grew = true));
  }
  const hz = 100; // USER_HZ on Linux
  return (stats.filter((p) => tree.has(p.pid)).reduce((a, p) => a + p.cpu, 0) * 1000) / hz;
}

/**
 * What each service itself spends on a list: its CPU time over 50 GET /containers/json
 * (what `docker ps` asks), less exposed to the machine's load than the wall times above.
 */
async function serviceCpu(sides) {
  const N = 50;
  const rows = [];
  for (const s of sides) {
    try {
      await get(s.sock, '/v1.41/containers/json');
      const c0 = treeCpuMs(s.pid());
      for (let i = 0; i < N; i++) await get(s.sock, '/v1.41/containers/json');
      rows.push(`| ${s.name} | ${((treeCpuMs(s.pid()) - c0) / N).toFixed(1)} |`);
    } catch (e) {
      rows.push(`| ${s.name} | failed: ${e.message} |`);
    }
  }
  return rows.length ? ['', `The services' own CPU time per GET /containers/json (${N} requests, its process and children):`, '', '| service | CPU (ms) per list |', '|---|---:|', ...rows, ''].join('\n') : '';
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** A table of medians (ms) for each side and burrow's ratio to podman; failed sides named. */
function table(title, rows, { unit = 'ms', throughput } = {}) {
  const lines = [`### ${title}`, '', `| command | median (${unit}) | ± stddev |${throughput ? ' throughput |' : ''}`, `|---|---:|---:|${throughput ? '---:|' : ''}`];
  for (const r of rows) {
    if (r.error) lines.push(`| ${r.name} | failed: ${r.error.replace(/\|/g, '/').slice(0, 160)} | |${throughput ? ' |' : ''}`);
    else lines.push(`| ${r.name} | ${r.median.toFixed(1)} | ${r.stddev.toFixed(1)} |${throughput ? ` ${throughput(r.median)} |` : ''}`);
  }
  const [b, p] = rows;
  if (b && p && !b.error && !p.error) lines.push('', `burrow / podman = ${(b.median / p.median).toFixed(2)}× the time${throughput ? ` (${(p.median / b.median).toFixed(2)}× podman's throughput)` : ''}.`);
  return lines.join('\n') + '\n';
}

/** hyperfine over the sides that work; a side whose probe fails gets its error instead. */
function timeSides(sides, mk, { runs = 15, warmup = 3, prepare } = {}) {
  const rows = [];
  const cmds = [];
  for (const s of sides) {
    if (s.failed) {
      rows.push({ name: mk(s).name, error: s.failed });
      continue;
    }
    const c = mk(s);
    try {
      sh(c.argv);
      if (prepare) sh(['sh', '-c', prepare(s)]);
      cmds.push({ ...c, side: s });
    } catch (e) {
      rows.push({ name: c.name, error: e.message });
    }
  }
  // One hyperfine per side, so that --prepare can differ; sides alternate in order.
  for (const c of cmds) {
    const quote = (x) => `'${x.replace(/'/g, `'\\''`)}'`;
    // hyperfine -N runs --prepare without a shell too.
    const extra = prepare ? ['--prepare', `sh -c ${quote(prepare(c.side))}`] : [];
    try {
      const [r] = hyperfineWith([{ name: c.name, argv: c.argv }], { runs, warmup, extra });
      rows.push(r);
    } catch (e) {
      rows.push({ name: c.name, error: e.message.split('\n')[0] });
    }
  }
  return sides.map((s) => rows.find((r) => r.name === mk(s).name));
}

/** lib.mjs's hyperfine with extra hyperfine arguments (--prepare). */
function hyperfineWith(commands, { runs, warmup, extra }) {
  if (!extra.length) return hyperfine(commands, { runs, warmup });
  const out = path.join(benchBase, `hf-${Date.now()}.json`);
  const q = (a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
  const args = ['-N', '--style', 'basic', '--runs', String(runs), '--warmup', String(warmup), '--export-json', out, ...extra];
  for (const c of commands) args.push('--command-name', c.name, c.argv.map(q).join(' '));
  const argv = asUser(['hyperfine', ...args]);
  execFileSync(argv[0], argv.slice(1), { stdio: ['ignore', 'inherit', 'inherit'] });
  const j = JSON.parse(fs.readFileSync(out, 'utf8'));
  return j.results.map((r) => ({ name: r.command, median: r.median * 1000, mean: r.mean * 1000, stddev: r.stddev * 1000 }));
}

let benchBase;

export async function run() {
  const u = benchUser();
  if (!have('hyperfine')) throw new Error('hyperfine is missing: run .ci/setup');
  const only = process.env.BURROW_BENCH_API_ONLY;
  // Short paths: podman refuses a runroot longer than 50 characters.
  const base = benchDir('/tmp/bapi-');
  benchBase = base;
  const reg = await startRegistry({ mode: 'anonymous' });
  const sides = [];
  try {
    const small = buildMainImage(path.join(base, 'small'), { tag: 'v1', bigSize: 4096 });
    const img = await pushImage(reg, small, 'bench/busybox', 'v1');
    // The big image only when the pull is timed (building it takes a while).
    const bigImg = !CASES.has('pull') ? null : process.env.BURROW_BENCH_API_PULL === 'main' ? buildMainImage(path.join(base, 'big'), { tag: 'v1' }) : buildBenchImage(path.join(base, 'big'));
    const big = bigImg && (await pushImage(reg, bigImg, 'bench/big', 'v1'));
    const bigGz = bigImg ? bigImg.layers.reduce((s, l) => s + l.size, 0) : 0;
    const regConf = path.join(base, 'registries.conf');
    fs.writeFileSync(regConf, `unqualified-search-registries = []\n[[registry]]\nlocation = "${reg.host}"\ninsecure = true\n`);
    fs.chmodSync(regConf, 0o644);

    const b = side('burrow', base, (uri) => [process.execPath, BURROW, '--root', path.join(base, 'burrow', 'store'), '--runroot', path.join(base, 'burrow', 'run'), 'system', 'service', uri, '--time', '0'], { BURROW_INSECURE_REGISTRIES: reg.host });
    const pm = side('podman', base, (uri) => ['podman', '--root', path.join(base, 'podman', 'store'), '--runroot', path.join(base, 'podman', 'run'), 'system', 'service', '--time', '0', uri], { CONTAINERS_REGISTRIES_CONF: regConf });
    for (const s of [b, pm]) {
      if (only && only !== s.name) {
        s.failed = 'not run (BURROW_BENCH_API_ONLY)';
        continue;
      }
      if (s.name === 'podman' && !have('podman')) {
        s.failed = 'podman is not installed';
        continue;
      }
      fs.mkdirSync(s.dir, { recursive: true });
      s.prepare(u);
      try {
        await s.start();
        sides.push(s);
      } catch (e) {
        s.failed = e.message;
      }
    }
    const all = [b, pm];
    const tables = [];

    // Idle RSS of a fresh service (after one _ping), settled for a second.
    await sleep(1000);
    const rssFresh = new Map(all.map((s) => [s.name, s.failed ? null : rssKiB(s.pid())]));

    for (const s of sides) {
      try {
        sh([...s.docker, 'pull', '-q', img]);
      } catch (e) {
        s.failed = `docker pull of the test image: ${e.message}`;
      }
    }

    // run --rm
    if (CASES.has('run')) tables.push(table('`docker run --rm --network none IMG true`', timeSides(all, (s) => ({ name: `docker → ${s.name}: run --rm`, argv: [...s.docker, 'run', '--rm', '--network', 'none', img, 'true'] }))));

    // ps with CONTAINERS running containers
    if (CASES.has('ps')) {
      for (const s of sides.filter((x) => !x.failed)) {
        try {
          for (let i = 0; i < CONTAINERS; i++) sh([...s.docker, 'run', '-d', '--name', `ps${i}`, '--network', 'none', img, 'sleep', '3600']);
        } catch (e) {
          s.psFailed = e.message;
        }
      }
      // The docker CLI's own part of every figure: `docker --version` sends no request.
      let cli = '';
      try {
        const [r] = hyperfine([{ name: 'docker --version', argv: [...b.docker, '--version'] }], { runs: 15, warmup: 3 });
        cli = `\nThe docker CLI alone (\`docker --version\`, no request): ${r.median.toFixed(1)} ms of each figure.\n`;
      } catch {
        /* only a footnote */
      }
      tables.push(
        table(
          `\`docker ps\` with ${CONTAINERS} running containers`,
          timeSides(all.map((s) => (s.psFailed ? { ...s, failed: s.psFailed } : s)), (s) => ({ name: `docker → ${s.name}: ps`, argv: [...s.docker, 'ps'] })),
        ) +
          cli +
          (await serviceCpu(sides.filter((s) => !s.failed && !s.psFailed))),
      );
      for (const s of sides) {
        try {
          sh([...s.docker, 'rm', '-f', ...Array.from({ length: CONTAINERS }, (_, i) => `ps${i}`)], { timeout: 300_000 });
        } catch {
          /* reported by the ps row already when it matters */
        }
      }
    }

    // logs of 100 MB: lines of 100 bytes written by the container, read back whole.
    const lines = Math.round(LOG_BYTES / 100);
    for (const s of CASES.has('logs') ? sides.filter((x) => !x.failed) : []) {
      try {
        sh([...s.docker, 'run', '--name', 'logs100', '--network', 'none', img, 'sh', '-c', `yes 012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678 | head -n ${lines}`], { stdio: ['ignore', 'ignore', 'pipe'] });
      } catch (e) {
        s.logsFailed = e.message;
      }
    }
    if (CASES.has('logs'))
      tables.push(
        table(
          '`docker logs` of 100 MB (1 million lines)',
          timeSides(all.map((s) => (s.logsFailed ? { ...s, failed: s.logsFailed } : s)), (s) => ({ name: `docker → ${s.name}: logs`, argv: [...s.docker, 'logs', 'logs100'] }), { runs: 5, warmup: 1 }),
          { throughput: (ms) => `${(LOG_BYTES / 1e6 / (ms / 1000)).toFixed(0)} MB/s` },
        ),
      );

    // pull of the 3-layer image, removed before every run.
    if (bigImg)
      tables.push(
        table(
          `\`docker pull\` of ${(bigGz / 1e6).toFixed(0)} MB (gzip) in ${bigImg.layers.length} layers from a loopback registry`,
          timeSides(all, (s) => ({ name: `docker → ${s.name}: pull`, argv: [...s.docker, 'pull', '-q', big] }), { runs: Number(process.env.BURROW_BENCH_API_PULL_RUNS ?? 3), warmup: 0, prepare: (s) => `${s.docker.join(' ')} rmi ${big} >/dev/null 2>&1; sync` }),
          { throughput: (ms) => `${(bigGz / 1e6 / (ms / 1000)).toFixed(0)} MB/s` },
        ),
      );

    // Idle RSS after the workload.
    await sleep(2000);
    const rssAfter = new Map(all.map((s) => [s.name, s.pid() ? rssKiB(s.pid()) || null : null]));
    const mib = (k) => (k === null || k === undefined ? 'n/a' : (k / 1024).toFixed(1));
    const rl = ['### Resident memory of the idle service', '', '| service | fresh, after one request (MiB) | idle after the workload above (MiB) |', '|---|---:|---:|'];
    for (const s of all) rl.push(`| ${s.name} | ${mib(rssFresh.get(s.name))} | ${mib(rssAfter.get(s.name))} |`);
    const [bf, pf] = [rssFresh.get('burrow'), rssFresh.get('podman')];
    const [ba, pa] = [rssAfter.get('burrow'), rssAfter.get('podman')];
    if (bf && pf) rl.push('', `burrow / podman = ${(bf / pf).toFixed(2)}× fresh${ba && pa ? `, ${(ba / pa).toFixed(2)}× after the workload` : ''}.`);
    rl.push('', "The service process only: rootless podman also keeps its pause process (catatonit) for the user's namespaces.", '');
    if (CASES.has('rss')) tables.push(rl.join('\n'));

    for (const s of sides) await s.stop();

    // The first request on a freshly activated socket.
    const act = [];
    const activated = {
      burrow: [process.execPath, BURROW, '--root', path.join(base, 'burrow', 'store'), '--runroot', path.join(base, 'burrow', 'run'), 'system', 'service', '--time', '0'],
      podman: ['podman', '--root', path.join(base, 'podman', 'store'), '--runroot', path.join(base, 'podman', 'run'), 'system', 'service', '--time', '0'],
    };
    for (const s of CASES.has('activation') ? all : []) {
      if (s.failed && !s.failed.startsWith('docker pull')) {
        act.push({ name: `${s.name}: first GET /_ping on an activated socket`, error: s.failed });
        continue;
      }
      try {
        const ms = [];
        for (let i = 0; i < ACTIVATIONS; i++) ms.push(await s.activation(activated[s.name]));
        const m = median(ms);
        act.push({ name: `${s.name}: first GET /_ping on an activated socket`, median: m, stddev: Math.sqrt(ms.reduce((a, x) => a + (x - m) ** 2, 0) / ms.length) });
      } catch (e) {
        act.push({ name: `${s.name}: first GET /_ping on an activated socket`, error: e.message });
      }
    }
    if (CASES.has('activation')) tables.push(table(`Time from the first request on a freshly activated socket to its answer (socket activation as a systemd socket unit does it, ${ACTIVATIONS} activations)`, act));
    return (
      tables.join('\n') +
      '\nTargets (issue 14): at most 0.5× podman\'s time for `run --rm` and `ps`, at least 1× its throughput for logs and pull. The same docker 20.10 CLI for both (its own start-up, about 30 ms, is in every figure); both services rootless as the same user, podman with runc (bench/peers).\n'
    );
  } finally {
    for (const s of sides) await s.stop().catch(() => undefined);
    await reg.stop();
    // Files owned by subordinate ids: removed as root (the bench runs as root).
    if (u) {
      const a = asUser(['podman', 'unshare', 'rm', '-rf', path.join(base, 'podman')]);
      spawnSync(a[0], a.slice(1), { stdio: 'ignore' });
    }
    spawnSync('rm', ['-rf', base]);
  }
}
