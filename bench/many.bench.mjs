// Many at once (issue 18): 64 containers started at the same moment from one image, as a job
// array's tasks start them on one node: `burrow run --rm --network none IMG sh -c 'echo task-N;
// sleep 1'` 64 times in the background from one shell, against `podman run --rm --network=none`
// the same way, as the same unprivileged user, the image pulled from a loopback registry first.
// Reported: the wall time until the last has exited, how many printed their own line, and the
// peak memory: the sums of VmRSS and of PSS of every process of the bench user (the CLIs,
// runtimes, monitors or conmons, and the containers' own processes), sampled every 100 ms. RSS
// counts a page shared by several processes (node's or podman's text) once per process, so its
// sum overstates what the node spends; PSS divides a shared page among its sharers.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { asUser, benchDir, benchUser, BURROW, have } from './lib.mjs';
import { startRegistry } from '../test/harness/registry.mjs';
import { buildMainImage, pushImage } from '../test/harness/images.mjs';

export const title = 'Many at once: 64 `run --rm` started together on one node';

const N = 64;
const ROUNDS = 3;

function runAs(argv) {
  const a = asUser(argv);
  return spawnSync(a[0], a.slice(1), { encoding: 'utf8' });
}

/** The sums of VmRSS and of Pss (KiB) of the processes of `uid`, except this one. */
function memOfUser(uid) {
  let rss = 0;
  let pss = 0;
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      const st = fs.readFileSync(`/proc/${p}/status`, 'utf8');
      if (Number(/^Uid:\s+(\d+)/m.exec(st)?.[1]) !== uid) continue;
      rss += Number(/^VmRSS:\s+(\d+)/m.exec(st)?.[1] ?? 0);
      pss += Number(/^Pss:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${p}/smaps_rollup`, 'utf8'))?.[1] ?? 0);
    } catch {
      /* gone meanwhile */
    }
  }
  return { rss, pss };
}

/** One round: the N commands from one shell at once; wall time (ms), peak RSS (KiB) and how many printed their own line. */
async function round(argv, uid) {
  const script = `for i in $(seq 0 ${N - 1}); do ${argv.map((a) => `'${a}'`).join(' ')} sh -c "echo task-$i; sleep 1" > "$OUT/$i" 2>&1 & done; wait`;
  const out = fs.mkdtempSync('/tmp/burrow-bench-many-out-');
  fs.chmodSync(out, 0o777);
  const base = memOfUser(uid);
  let peak = 0;
  let peakPss = 0;
  const t0 = process.hrtime.bigint();
  const a = asUser(['env', `OUT=${out}`, 'sh', '-c', script]);
  const child = spawn(a[0], a.slice(1), { stdio: 'ignore' });
  const timer = setInterval(() => {
    const m = memOfUser(uid);
    peak = Math.max(peak, m.rss);
    peakPss = Math.max(peakPss, m.pss);
  }, 100);
  await new Promise((resolve) => child.on('close', resolve));
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  clearInterval(timer);
  let ok = 0;
  for (let i = 0; i < N; i++) if (fs.readFileSync(path.join(out, String(i)), 'utf8').includes(`task-${i}\n`)) ok++;
  fs.rmSync(out, { recursive: true, force: true });
  return { ms, peakKiB: Math.max(0, peak - base.rss), peakPssKiB: Math.max(0, peakPss - base.pss), ok };
}


export async function run() {
  const u = benchUser();
  const uid = u ? u.uid : process.getuid();
  const reg = await startRegistry({ mode: 'anonymous' });
  const base = benchDir('/tmp/burrow-bench-many-');
  try {
    const img = buildMainImage(path.join(base, 'img'), { tag: 'v1', bigSize: 4096 });
    const ref = await pushImage(reg, img, 'bench/busybox', 'v1');
    const store = path.join(base, 'store');
    const runroot = path.join(base, 'run');
    const tools = [{ name: 'burrow run --rm --network none', argv: [process.execPath, BURROW, '--root', store, '--runroot', runroot, 'run', '--rm', '--network', 'none', ref] }];
    const pull = runAs([process.execPath, BURROW, '--root', store, '--runroot', runroot, 'pull', '-q', ref]);
    if (pull.status !== 0) throw new Error(`burrow pull: ${pull.stderr}`);
    if (have('podman')) {
      const r = runAs(['podman', 'pull', '-q', '--tls-verify=false', ref]);
      if (r.status === 0) tools.push({ name: 'podman run --rm --network=none', argv: ['podman', 'run', '--rm', '--network=none', ref] });
      else process.stderr.write(`podman pull failed: ${r.stderr}\n`);
    }
    const rows = [];
    for (const t of tools) {
      const rounds = [];
      // One round unmeasured first (caches, podman's storage set up).
      await round(t.argv, uid);
      for (let i = 0; i < ROUNDS; i++) rounds.push(await round(t.argv, uid));
      rounds.sort((x, y) => x.ms - y.ms);
      const med = rounds[Math.floor(rounds.length / 2)];
      rows.push({ name: t.name, ms: med.ms, peak: Math.max(...rounds.map((r) => r.peakKiB)), pss: Math.max(...rounds.map((r) => r.peakPssKiB)), ok: Math.min(...rounds.map((r) => r.ok)) });
      process.stderr.write(`${t.name}: ${JSON.stringify(rounds)}\n`);
    }
    const b = rows[0];
    const lines = [
      `### ${N} containers at once (\`sh -c 'echo task-N; sleep 1'\`), median of ${ROUNDS} rounds`,
      '',
      '| command | wall time (s) | ratio to burrow | peak sum of RSS (MiB) | ratio | peak sum of PSS (MiB) | ratio | own output (of 64, worst round) |',
      '|---|---:|---:|---:|---:|---:|---:|---:|',
      ...rows.map((r) => `| ${r.name} | ${(r.ms / 1000).toFixed(1)} | ${(r.ms / b.ms).toFixed(2)}× | ${(r.peak / 1024).toFixed(0)} | ${(r.peak / b.peak).toFixed(2)}× | ${(r.pss / 1024).toFixed(0)} | ${(r.pss / b.pss).toFixed(2)}× | ${r.ok} |`),
      '',
      'Peak memory: the largest sum over every process of the bench user, sampled every 100 ms while the 64 run, less the sum before the round: of VmRSS (a page shared by several processes, such as the text of node or podman, counts once per process) and of Pss (`/proc/PID/smaps_rollup`: a shared page divided among its sharers, which adds up to what the node spends). Peaks of the two sums are taken separately. Each container sleeps 1 s so that all of them are alive together.',
      '',
    ];
    return lines.join('\n');
  } finally {
    await reg.stop();
    spawnSync('rm', ['-rf', base]);
  }
}
