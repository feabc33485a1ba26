// burrow-runtime driven by the clients that drive runc (issue 17): `ctr run --rm IMG true`
// through containerd 1.6's runc v2 shim (root: Debian's containerd runs as root) with
// burrow-runtime, runc and crun as the shim's BinaryName, and rootless `podman run --rm IMG true`
// with burrow-runtime against podman's runtime on this host (runc: crun refuses the hybrid cgroup
// host, bench/peers/README.md). Each client gets a private configuration and store under a
// temporary directory (test/harness/clients.mjs), as the integration tests have them.
// Ratios here are to burrow-runtime through the same client (below 1× means the peer is faster).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { asUser, benchUser, have, ratioTable } from './lib.mjs';
import { BURROW_RUNTIME, buildClientImages, cleanupDir, removeCgroupDirs, startContainerd, which } from '../test/harness/clients.mjs';

function quote(a) {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/**
 * hyperfine in `rounds` rounds, each with the commands in another order (the machine is shared:
 * a busy spell then falls on every command alike), the times of all rounds pooled per command.
 * As root when `root` (containerd here is root's), else as the bench user (lib.mjs's asUser).
 * Returns lib.mjs's row shape: [{ name, median, mean, stddev, cpu }] in milliseconds.
 */
function interleaved(commands, { rounds = 6, runs = 4, warmup = 1, root = false } = {}) {
  const pooled = new Map(commands.map((c) => [c.name, { times: [], cpu: [], failed: 0 }]));
  for (let r = 0; r < rounds; r++) {
    const order = commands.map((_, i) => commands[(i + r) % commands.length]);
    const out = path.join(os.tmpdir(), `burrow-bench-clients-${process.pid}-${Date.now()}.json`);
    const args = ['-N', '--style', 'basic', '--runs', String(runs), '--warmup', String(warmup), '--export-json', out, '-i'];
    for (const c of order) args.push('--command-name', c.name, c.argv.map(quote).join(' '));
    const argv = root ? ['hyperfine', ...args] : asUser(['hyperfine', ...args]);
    if (!root) {
      // hyperfine as the bench user writes its JSON where that user may: a file it owns.
      fs.writeFileSync(out, '');
      const u = benchUser();
      if (u) fs.chownSync(out, u.uid, u.gid);
    }
    execFileSync(argv[0], argv.slice(1), { stdio: ['ignore', 'inherit', 'inherit'] });
    const j = JSON.parse(fs.readFileSync(out, 'utf8'));
    fs.rmSync(out, { force: true });
    for (const res of j.results) {
      const p = pooled.get(res.command);
      p.times.push(...res.times);
      p.cpu.push(res.user + res.system);
      p.failed += (res.exit_codes ?? []).filter((c) => c !== 0).length;
    }
  }
  return commands.map((c) => {
    const p = pooled.get(c.name);
    const mean = p.times.reduce((a, b) => a + b, 0) / p.times.length;
    const sd = Math.sqrt(p.times.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, p.times.length - 1));
    const name = p.failed ? `${c.name} (FAILED ${p.failed}/${p.times.length} runs)` : c.name;
    return { name, median: median(p.times) * 1000, mean: mean * 1000, stddev: sd * 1000, cpu: (p.cpu.reduce((a, b) => a + b, 0) / p.cpu.length) * 1000 };
  });
}

/**
 * A runtime wrapper that appends one line per call to `log`: the subcommand, its start and end
 * (ns since the epoch). Used as the client's runtime binary to split a client's run into the
 * runtime's calls and what the client does around them.
 */
function loggingWrapper(dir, name, bin, log) {
  const w = path.join(dir, `log-wrapper-${name}`);
  const cmds = 'create|start|delete|kill|state|exec|run|features|update|ps|pause|resume';
  fs.writeFileSync(
    w,
    `#!/bin/bash\ns=$(date +%s%N)\n${bin} "$@"\nrc=$?\ne=$(date +%s%N)\nc=\nfor a in "$@"; do case $a in ${cmds}) c=$a; break;; esac; done\ncase " $* " in *" --force "*) c="$c --force";; esac\necho "$c $s $e" >> ${log}\nexit $rc\n`,
    { mode: 0o755 },
  );
  return w;
}

/**
 * Runs each client command of `runs` ({ name, once(): runs it with its logging wrapper }) `n`
 * times, alternating, and returns a markdown table of medians: each runtime call, their sum,
 * and the client's time outside them. The wrapper (bash + date) costs every runtime alike.
 */
function callTable(title, entries, log, n = 20) {
  const per = new Map(entries.map((e) => [e.name, []]));
  for (let i = 0; i < n; i++) {
    for (const e of i % 2 ? [...entries].reverse() : entries) {
      fs.writeFileSync(log, '');
      const t0 = Date.now();
      e.once();
      const total = Date.now() - t0;
      const calls = fs.readFileSync(log, 'utf8').trim().split('\n').filter(Boolean).map((l) => {
        const f = l.split(' ');
        return { cmd: f.slice(0, -2).join(' '), start: Number(f.at(-2)) / 1e6, ms: (Number(f.at(-1)) - Number(f.at(-2))) / 1e6 };
      });
      // Before the first call the runtime has had no part yet: a control for the noise.
      per.get(e.name).push({ total, calls, before: calls.length ? calls[0].start - t0 : 0 });
    }
  }
  const cmds = [...new Set([...per.values()].flatMap((rs) => rs.flatMap((r) => r.calls.map((c) => c.cmd))))];
  const lines = [`### ${title}`, '', `| runtime | ${cmds.map((c) => `\`${c}\``).join(' | ')} | in the runtime | client total | outside the runtime | of which before the first call |`, `|---|${cmds.map(() => '---:|').join('')}---:|---:|---:|---:|`];
  for (const [name, rs] of per) {
    const m = (f) => median(rs.map(f)).toFixed(1);
    const inRt = (r) => r.calls.reduce((a, c) => a + c.ms, 0);
    const cols = cmds.map((c) => m((r) => r.calls.filter((x) => x.cmd === c).reduce((a, x) => a + x.ms, 0)));
    lines.push(`| ${name} | ${cols.join(' | ')} | ${m(inRt)} | ${m((r) => r.total)} | ${m((r) => r.total - inRt(r))} | ${m((r) => r.before)} |`);
  }
  lines.push(
    '',
    `Medians (ms) of ${n} runs each, alternating, with a logging wrapper as the runtime binary (its bash and \`date\` are in each call's time, alike for every runtime). The client's time before the runtime's first call, in which the runtime has no part, shows how far the client's own time varies between the rows on this shared machine.`,
  );
  return lines.join('\n') + '\n';
}

/**
 * crun 1.8 refuses this hybrid cgroup host as root too ("cgroups in hybrid mode not
 * supported"): the shim gets a wrapper that runs each crun command in a private mount namespace
 * hiding /sys/fs/cgroup/unified (crun then sees cgroup v1 only, as runc uses it here).
 */
function crunWrapper(dir) {
  const w = path.join(dir, 'crun-hybrid-wrapper');
  fs.writeFileSync(w, `#!/bin/sh\nexec unshare -m sh -c 'mount -t tmpfs none /sys/fs/cgroup/unified && exec crun "$@"' crun "$@"\n`, { mode: 0o755 });
  return w;
}

async function ctrSection() {
  if (process.getuid() !== 0) return '**skipped:** containerd runs as root here; run the bench as root.\n';
  const base = fs.mkdtempSync('/tmp/burrow-bench-ctr-');
  const ns = `burrowbench-${process.pid}`;
  let cd;
  try {
    const images = buildClientImages(path.join(base, 'images'));
    cd = await startContainerd(path.join(base, 'containerd'), { sandboxImage: images.pause.ref });
    const imp = await cd.ctr(['-n', ns, 'images', 'import', images.busybox.archive]);
    if (imp.code !== 0) throw new Error(`ctr images import: ${imp.stderr}`);
    const runtimes = [['burrow-runtime', BURROW_RUNTIME]];
    if (which('runc')) runtimes.push(['runc', which('runc')]);
    if (have('crun')) runtimes.push(['crun (in wrapper)', crunWrapper(base)]);
    const ctr = which('ctr');
    const cmds = runtimes.map(([name, bin], i) => {
      const root = path.join(base, `root-${i}`);
      fs.mkdirSync(root);
      return {
        name: `ctr run --rm IMG true (${name})`,
        argv: [ctr, '--address', cd.address, '-n', ns, 'run', '--rm', '--runc-binary', bin, '--runc-root', root, '--fifo-dir', cd.fifoDir, images.busybox.ref, `bench-${i}`, 'true'],
      };
    });
    // Each runtime once outside hyperfine: one that fails is reported, not timed.
    const usable = [];
    const failedNotes = [];
    for (const c of cmds) {
      try {
        execFileSync(c.argv[0], c.argv.slice(1), { stdio: 'pipe', timeout: 60_000 });
        usable.push(c);
      } catch (e) {
        failedNotes.push(`${c.name} does not run here: ${String(e.stderr ?? e.message).trim().split('\n')[0]}`);
      }
    }
    if (have('crun')) usable.push({ name: 'crun wrapper alone (unshare -m + mount)', argv: ['unshare', '-m', 'sh', '-c', 'mount -t tmpfs none /sys/fs/cgroup/unified && exec true'] });
    usable.push({ name: 'ctr version (the client round trip, floor)', argv: [ctr, '--address', cd.address, 'version'] });
    const rows = interleaved(usable, { root: true });
    const byName = (p) => rows.find((r) => r.name.startsWith(p));
    const runc = byName('ctr run --rm IMG true (runc)');
    const crun = byName('ctr run --rm IMG true (crun');
    const notes = [
      'containerd 1.6 as root with its own config, root and state (cgroupfs); `ctr run --rm` of busybox `true` through the runc v2 shim with the runtime as `--runc-binary` (each its own state root). The shim calls the runtime for create, start, delete and delete --force (table below).',
    ];
    if (runc) notes.push(`burrow-runtime / runc through ctr: ${(rows[0].median / runc.median).toFixed(2)}× (target ≤ 1×).`);
    if (crun) notes.push(`burrow-runtime / crun through ctr: ${(rows[0].median / crun.median).toFixed(2)}× (crun with its wrapper, which the shim runs for each of its calls).`);
    notes.push(...failedNotes);
    const log = path.join(base, 'calls.log');
    const entries = runtimes
      .filter(([name]) => !name.startsWith('crun'))
      .map(([name, bin], i) => {
        const w = loggingWrapper(base, String(i), bin, log);
        const root = path.join(base, `root-log-${i}`);
        fs.mkdirSync(root);
        const argv = [ctr, '--address', cd.address, '-n', ns, 'run', '--rm', '--runc-binary', w, '--runc-root', root, '--fifo-dir', cd.fifoDir, images.busybox.ref, `bench-log-${i}`, 'true'];
        return { name, once: () => execFileSync(argv[0], argv.slice(1), { stdio: 'pipe' }) };
      });
    return ratioTable('`ctr run --rm IMG true` (containerd 1.6, root)', rows, notes.join(' ')) + '\n' + callTable('`ctr run --rm IMG true`: the runtime\'s calls from the shim', entries, log);
  } finally {
    if (cd) await cd.stop();
    removeCgroupDirs(ns);
    await cleanupDir(base);
    fs.rmSync(base, { recursive: true, force: true });
  }
}

/** A private rootless podman for the bench user: containers.conf names burrow-runtime. */
function podmanBench(dir, u) {
  const p = (...x) => path.join(dir, ...x);
  for (const d of ['home', 'xdg', 'tmp', 'graph', 'run', 'conf']) fs.mkdirSync(p(d), { recursive: true, mode: 0o700 });
  // docs/examples/containers.conf, with this host's settings (bench/peers/README.md).
  fs.writeFileSync(
    p('conf', 'containers.conf'),
    [
      '[engine]',
      'cgroup_manager = "cgroupfs"',
      'events_logger = "file"',
      `events_logfile_path = "${p('events.log')}"`,
      `tmp_dir = "${p('tmp')}"`,
      'runtime = "runc"',
      '[engine.runtimes]',
      `burrow = ["${BURROW_RUNTIME}"]`,
      `crun-wrapper = ["${crunWrapper(dir)}"]`,
      `burrow-log = ["${loggingWrapper(dir, 'burrow', BURROW_RUNTIME, p('calls.log'))}"]`,
      `runc-log = ["${loggingWrapper(dir, 'runc', which('runc') ?? 'runc', p('calls.log'))}"]`,
      '',
    ].join('\n'),
  );
  fs.writeFileSync(p('conf', 'storage.conf'), ['[storage]', 'driver = "overlay"', `graphroot = "${p('graph')}"`, `runroot = "${p('run')}"`, ''].join('\n'));
  fs.writeFileSync(p('calls.log'), '');
  if (u) execFileSync('chown', ['-R', `${u.uid}:${u.gid}`, dir]);
  const env = [`XDG_RUNTIME_DIR=${p('xdg')}`, `CONTAINERS_CONF=${p('conf', 'containers.conf')}`, `CONTAINERS_STORAGE_CONF=${p('conf', 'storage.conf')}`, `TMPDIR=${p('tmp')}`];
  // Rootless podman takes its store from rootless_storage_path or --root, not graphroot.
  return { argv: (args) => ['env', ...env, 'podman', '--root', p('graph'), '--runroot', p('run'), ...args], dir, crunWrapper: 'crun-wrapper', log: p('calls.log') };
}

async function podmanSection() {
  const u = benchUser();
  const base = fs.mkdtempSync('/tmp/burrow-bench-podman-');
  fs.chmodSync(base, 0o755);
  let pm;
  try {
    const images = buildClientImages(path.join(base, 'images'));
    pm = podmanBench(path.join(base, 'p'), u);
    const load = asUser(pm.argv(['load', '-q', '-i', images.busybox.archive]));
    execFileSync(load[0], load.slice(1), { stdio: 'pipe' });
    const run = (runtime) => pm.argv([...(runtime ? ['--runtime', runtime] : []), 'run', '--rm', '--network', 'none', images.busybox.ref, 'true']);
    const cmds = [
      { name: 'podman --runtime burrow run --rm --network none IMG true', argv: run('burrow') },
      { name: 'podman run --rm --network none IMG true (its runtime here: runc)', argv: run(null) },
    ];
    if (have('crun')) cmds.push({ name: 'podman --runtime crun-wrapper … (crun in its wrapper)', argv: run(pm.crunWrapper) });
    // Each once outside hyperfine: one that fails is reported, not timed.
    const usable = [];
    const notes = [];
    for (const c of cmds) {
      const a = asUser(c.argv);
      try {
        execFileSync(a[0], a.slice(1), { stdio: 'pipe', timeout: 120_000 });
        usable.push(c);
      } catch (e) {
        notes.push(`${c.name} does not run here: ${String(e.stderr ?? e.message).trim().split('\n').pop()}`);
      }
    }
    const rows = interleaved(usable);
    const runc = rows.find((r) => r.name.startsWith('podman run'));
    const crun = rows.find((r) => r.name.includes('crun'));
    notes.unshift(
      `Rootless podman 4.3 as the test user with a private containers.conf (\`[engine.runtimes] burrow = [PATH]\`, \`runtime = "runc"\`: crun refuses this hybrid cgroup host) and store (overlay, \`--root\`/\`--runroot\`).`,
      `burrow-runtime / podman's runtime (runc): ${(rows[0].median / runc.median).toFixed(2)}× (target ≤ 1×).`,
    );
    if (crun) notes.push(`burrow-runtime / crun (with the wrapper podman runs for each of its calls, which hides /sys/fs/cgroup/unified in a mount namespace): ${(rows[0].median / crun.median).toFixed(2)}×.`);
    const note = notes.join(' ');
    const entries = [
      ['burrow-runtime', 'burrow-log'],
      ['runc', 'runc-log'],
    ].map(([name, rt]) => {
      const a = asUser(run(rt));
      return { name, once: () => execFileSync(a[0], a.slice(1), { stdio: 'pipe' }) };
    });
    return ratioTable('`podman --runtime burrow run --rm IMG true` (rootless)', rows, note) + '\n' + callTable('`podman run --rm IMG true`: the runtime\'s calls from conmon and podman', entries, pm.log);
  } finally {
    if (pm) {
      // The rootless store's files belong to subordinate ids: removed inside podman's namespace.
      const un = asUser(pm.argv(['unshare', 'rm', '-rf', path.join(pm.dir, 'graph'), path.join(pm.dir, 'run')]));
      try {
        execFileSync(un[0], un.slice(1), { stdio: 'pipe' });
      } catch {
        /* what stays is removed below as far as root can */
      }
    }
    await cleanupDir(base);
    fs.rmSync(base, { recursive: true, force: true });
  }
}

export const sections = [
  { title: 'Clients: `ctr run --rm IMG true` through containerd with burrow-runtime, runc, crun', run: ctrSection },
  { title: 'Clients: rootless `podman --runtime burrow run --rm IMG true` against its default runtime', run: podmanSection },
];
