// Pull of a 3-layer image (about 500 MB unpacked) from a loopback registry: burrow pull vs podman
// pull vs skopeo copy + umoci unpack --rootless, side by side. The image is built from this
// machine's own files, nothing is downloaded:
//   1 minbase  what `debootstrap --variant=minbase` installs: the files of Debian's required and
//              essential packages, apt, and their dependencies (dpkg -L), with dpkg's database
//              for them — thousands of small files
//   2 python   Python's standard library and /usr/share/doc — thousands more, mixed sizes
//   3 big      the largest binaries and libraries in /usr/bin and /usr/lib/MULTIARCH, up to the
//              image's total size — few files, decompression-bound
// Fair measurement on these machines (bench/peers/README.md): every run writes into a fresh
// directory, nothing is deleted until the end, tools are interleaved (round r runs every tool
// once, in an order rotated by r), and `sync` before each run starts everyone with no dirty pages
// left by the previous run (burrow syncs its layers before trusting them; it must not pay for the
// peers' writeback).
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { asUser, benchDir, benchUser, BURROW, have } from './lib.mjs';
import { startRegistry } from '../test/harness/registry.mjs';
import { buildImage, pushImage } from '../test/harness/images.mjs';

export const title = 'Pull: 3 layers (~500 MB unpacked) from a loopback registry';

const ROUNDS = Number(process.env.BURROW_BENCH_PULL_ROUNDS ?? 5);
/** Unpacked size the image is filled up to (the peers README's image: 507 MB). */
const TOTAL = 507e6;

function sh(cmd, args) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 28 });
}

/** `p` with its directory resolved (usrmerge: /bin/ls is /usr/bin/ls), or null if it is gone. */
function canonical(p) {
  try {
    return path.join(fs.realpathSync(path.dirname(p)), path.basename(p));
  } catch {
    return null;
  }
}

/** Debian's minbase package set as installed here: required + essential + apt, with dependencies. */
function minbasePackages() {
  const roots = sh('dpkg-query', ['-W', '-f', '${Package} ${Priority} ${Essential}\n'])
    .split('\n')
    .map((l) => l.split(' '))
    .filter(([p, prio, ess]) => p && (prio === 'required' || ess === 'yes'))
    .map(([p]) => p);
  const deps = sh('apt-cache', ['depends', '--recurse', '--installed', '--no-recommends', '--no-suggests', '--no-conflicts', '--no-breaks', '--no-replaces', '--no-enhances', ...roots, 'apt']);
  const names = new Set(deps.split('\n').filter((l) => l && !l.startsWith(' ') && !l.startsWith('<')).map((l) => l.replace(/:.*$/, '')));
  const installed = new Set(
    sh('dpkg-query', ['-W', '-f', '${db:Status-Abbrev} ${Package}\n'])
      .split('\n')
      .filter((l) => l.startsWith('ii'))
      .map((l) => l.split(' ').pop()),
  );
  return [...names].filter((p) => installed.has(p)).sort();
}

/** Writes a tar of the listed absolute paths (and their parent directories) relative to /. */
function tarOfPaths(out, paths) {
  const all = new Set();
  for (const p of paths) {
    for (let d = path.dirname(p); d !== '/'; d = path.dirname(d)) all.add(d);
    all.add(p);
  }
  const list = `${out}.list`;
  fs.writeFileSync(list, [...all].sort().map((p) => p.slice(1)).join('\n') + '\n');
  sh('tar', ['-C', '/', '--numeric-owner', '--no-recursion', '--sort=name', '-cf', out, '-T', list]);
  fs.rmSync(list);
  return out;
}

function minbaseLayer(work) {
  const files = new Set();
  const dpkgInfo = fs.readdirSync('/var/lib/dpkg/info');
  for (const pkg of minbasePackages()) {
    for (const f of sh('dpkg-query', ['-L', pkg]).split('\n').filter((l) => l.startsWith('/'))) {
      const c = canonical(f);
      if (c && c !== '/' && fs.lstatSync(c, { throwIfNoEntry: false })) files.add(c);
    }
    const base = pkg.replace(/:.*$/, '');
    for (const n of dpkgInfo.filter((n) => n.startsWith(`${base}.`) || n.startsWith(`${base}:`))) files.add(`/var/lib/dpkg/info/${n}`);
  }
  for (const f of ['/var/lib/dpkg/status', '/var/lib/dpkg/available']) if (fs.existsSync(f)) files.add(f);
  return tarOfPaths(path.join(work, 'minbase.tar'), [...files]);
}

function treeLayer(work, name, dirs) {
  sh('tar', ['-C', '/', '--numeric-owner', '--sort=name', '-cf', path.join(work, `${name}.tar`), ...dirs.map((d) => d.slice(1))]);
  return path.join(work, `${name}.tar`);
}

/** The largest regular files of /usr/bin and /usr/lib/MULTIARCH whose sum stays within `budget`. */
function bigLayer(work, budget) {
  const files = [];
  for (const dir of ['/usr/bin', ...fs.readdirSync('/usr/lib').filter((d) => /-linux-gnu/.test(d)).map((d) => `/usr/lib/${d}`)]) {
    for (const n of fs.readdirSync(dir)) {
      const st = fs.lstatSync(path.join(dir, n));
      if (st.isFile()) files.push({ p: path.join(dir, n), size: st.size });
    }
  }
  files.sort((a, b) => b.size - a.size || a.p.localeCompare(b.p));
  const chosen = [];
  let sum = 0;
  for (const f of files) {
    if (sum + f.size > budget) continue;
    chosen.push(f.p);
    sum += f.size;
    if (budget - sum < 1e6) break;
  }
  return tarOfPaths(path.join(work, 'big.tar'), chosen);
}

/** Builds the bench image into `layout` (an OCI layout, tag v1); returns buildImage's result. */
export function buildBenchImage(layout) {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-bench-img-'));
  try {
    const py = fs.readdirSync('/usr/lib').find((d) => /^python3\.\d+$/.test(d)) ?? 'python3';
    const l1 = minbaseLayer(work);
    const l2 = treeLayer(work, 'python', [`/usr/lib/${py}`, '/usr/share/doc']);
    const l3 = bigLayer(work, TOTAL - fs.statSync(l1).size - fs.statSync(l2).size);
    const unpacked = [l1, l2, l3].reduce((s, t) => s + fs.statSync(t).size, 0);
    const img = buildImage(layout, {
      tag: 'v1',
      layers: [
        { tar: l1, compression: 'gzip', comment: 'minbase' },
        { tar: l2, compression: 'gzip', comment: `python${py.slice(6)} and doc` },
        { tar: l3, compression: 'gzip', comment: 'big binaries' },
      ],
      config: { Cmd: ['/bin/bash'], Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] },
    });
    return { ...img, unpacked };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** Runs a command once as the bench user; throws with `why()` (its stderr) when it fails. */
function probe(name, script, why) {
  const a = asUser(['sh', '-c', script]);
  const r = spawnSync(a[0], a.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${name} failed (exit ${r.status}): ${why()}`);
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

export async function run() {
  const u = benchUser();
  // Short paths: podman refuses a runroot longer than 50 characters (exit 125 before it starts).
  const base = benchDir('/tmp/bbp-');
  const reg = await startRegistry({ mode: 'anonymous' });
  try {
    const img = buildBenchImage(path.join(base, 'layout'));
    const ref = await pushImage(reg, img, 'bench/big', 'v1');
    const gz = img.layers.reduce((s, l) => s + l.size, 0);
    const runs = path.join(base, 'r');
    fs.mkdirSync(runs);
    if (u) fs.chownSync(runs, u.uid, u.gid);
    // Each run's directory is named after its tool and keeps the run's stderr: a failed run in
    // the timed rounds is reported with its reason (the newest directory of its tool).
    const tool = (slug, cmd) => `d=$(mktemp -d -p ${runs} ${slug}.XXXXXX) && { ${cmd}; } 2>$d/stderr`;
    const cmds = [{ name: 'burrow pull', slug: 'burrow', script: tool('burrow', `${process.execPath} ${BURROW} --root $d/store --runroot $d/run pull -q ${ref} >/dev/null`) }];
    // podman keeps its store where --root says, but its runtime files (pause process, locks)
    // under XDG_RUNTIME_DIR, which asUser sets to the bench user's own directory.
    if (have('podman')) cmds.push({ name: 'podman pull', slug: 'podman', script: tool('podman', `podman --root $d/store --runroot $d/run pull -q --tls-verify=false ${ref} >/dev/null`) });
    if (have('skopeo') && have('umoci')) {
      cmds.push({ name: 'skopeo copy + umoci unpack', slug: 'umoci', script: tool('umoci', `skopeo copy -q --src-tls-verify=false docker://${ref} oci:$d/oci:v1 && umoci unpack --rootless --image $d/oci:v1 $d/bundle >/dev/null`) });
      cmds.push({ name: 'skopeo copy alone', slug: 'skopeo', script: tool('skopeo', `skopeo copy -q --src-tls-verify=false docker://${ref} oci:$d/oci:v1`) });
    }
    const lastStderr = (slug) => {
      const dirs = fs.readdirSync(runs).filter((n) => n.startsWith(`${slug}.`)).map((n) => path.join(runs, n));
      dirs.sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs);
      const text = dirs.length ? (fs.readFileSync(path.join(dirs[0], 'stderr'), 'utf8').trim().split('\n').pop() ?? '') : '';
      return text.replace(/\|/g, '/').slice(0, 200) || 'no message';
    };
    // Each tool once, checked, so that a failure says why instead of hyperfine's bare exit code.
    for (const c of cmds) probe(c.name, c.script, () => lastStderr(c.slug));
    const times = new Map(cmds.map((c) => [c.name, { wall: [], cpu: [], failed: [] }]));
    const out = path.join(runs, 'hyperfine.json');
    const load = [os.loadavg()[0]];
    for (let r = 0; r < ROUNDS; r++) {
      const order = cmds.map((_, i) => cmds[(i + r) % cmds.length]);
      const args = ['-N', '-i', '--style', 'basic', '--runs', '1', '--prepare', 'sync', '--export-json', out];
      for (const c of order) args.push('--command-name', c.name, `sh -c '${c.script}'`);
      const argv = asUser(['hyperfine', ...args]);
      execFileSync(argv[0], argv.slice(1), { stdio: ['ignore', 'inherit', 'inherit'] });
      for (const res of JSON.parse(fs.readFileSync(out, 'utf8')).results) {
        const t = times.get(res.command);
        // A failed run's time means nothing: it is left out, counted, and its reason kept.
        if ((res.exit_codes ?? []).some((c) => c !== 0)) t.failed.push(`round ${r + 1}: exit ${res.exit_codes.join(',')}: ${lastStderr(cmds.find((c) => c.name === res.command).slug)}`);
        else {
          t.wall.push(res.times[0] * 1000);
          t.cpu.push((res.user + res.system) * 1000);
        }
      }
    }
    load.push(os.loadavg()[0]);
    const rows = cmds.map((c) => ({ name: c.name, ...times.get(c.name) })).filter((r) => r.wall.length);
    if (rows[0]?.name !== 'burrow pull') throw new Error(`burrow pull failed in every round: ${times.get('burrow pull').failed.join('; ')}`);
    const b = median(rows[0].wall);
    const lines = [
      `### pull of ${(gz / 1e6).toFixed(0)} MB (gzip; ${(img.unpacked / 1e6).toFixed(0)} MB of tar) in 3 layers`,
      '',
      '| command | median (ms) | min … max (ms) | CPU user+sys (ms) | ratio to burrow |',
      '|---|---:|---:|---:|---:|',
    ];
    for (const r of rows) {
      const m = median(r.wall);
      const name = r.failed.length ? `${r.name} (FAILED ${r.failed.length}/${ROUNDS})` : r.name;
      lines.push(`| ${name} | ${m.toFixed(1)} | ${Math.min(...r.wall).toFixed(0)} … ${Math.max(...r.wall).toFixed(0)} | ${median(r.cpu).toFixed(0)} | ${(m / b).toFixed(2)}× |`);
    }
    const failures = [...times.entries()].flatMap(([name, t]) => t.failed.map((f) => `${name}, ${f}`));
    if (failures.length) lines.push('', 'Failed runs (left out of the medians):', '', ...failures.map((f) => `- ${f}`));
    const podman = rows.find((r) => r.name === 'podman pull');
    lines.push('');
    if (podman) lines.push(`burrow / podman = ${(b / median(podman.wall)).toFixed(2)}× (target: at most 0.4×).`, '');
    lines.push(
      `${ROUNDS} rounds, each running every tool once in a rotated order after \`sync\`; every run pulls into a new, empty directory and nothing is deleted until the end. ` +
        `Load average (1 min) before and after the rounds: ${load.map((l) => l.toFixed(2)).join(' and ')}. ` +
        `Layers: ${img.layers.map((l) => `${l.comment} ${(l.size / 1e6).toFixed(0)} MB`).join(', ')} (gzip).`,
    );
    return lines.join('\n') + '\n';
  } finally {
    await reg.stop();
    // Files owned by subordinate ids: remove as root (the bench runs as root).
    spawnSync('rm', ['-rf', base]);
  }
}
