// One-file images (docs/hpc-images.md), with the pull benchmark's 3-layer image (Debian minbase,
// Python + docs, large binaries; about 500 MB unpacked):
//   - start of a container from the squashfs (`burrow run FILE.sqfs`) against Charliecloud's
//     `ch-run` on the same file (Debian's charliecloud-runtime 0.31 is linked with
//     libsquashfuse_ll: it mounts a squashfs itself) and against burrow's start from its unpacked
//     store (kernel overlay);
//   - file-metadata system calls of one start from the squashfs against one from the unpacked
//     store, both under fuse-overlayfs, whose lookups are system calls strace can count (the
//     kernel overlay's are the same requests to the same file system, made inside the kernel,
//     invisible to strace): over the whole process tree (strace -c -f: the CLI, the runtime, the
//     FUSE daemons and the container), and attributed to the file system each reaches, the store
//     and the file being on a file system of their own (bench/metadata.mjs); run as root, because
//     strace -f would run the setuid newuidmap without its privileges;
//   - conversion time of the image (`image convert`) against mksquashfs of the same tree, from a
//     directory and from a tar.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { asUser, benchDir, BURROW, have, hyperfine, LAUNCHER, ratioTable } from './lib.mjs';
import { buildBenchImage } from './pull.bench.mjs';
import { METADATA, straceAttributed } from './metadata.mjs';
import { startRegistry } from '../test/harness/registry.mjs';
import { pushImage } from '../test/harness/images.mjs';

export const title = 'One-file images: squashfs start, metadata system calls, conversion';

function sh(argv, opts = {}) {
  const a = asUser(argv);
  return execFileSync(a[0], a.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 28, ...opts });
}

/** Total calls of `strace -c -f` (as root) of `argv`, and the command's exit status. */
function straceCount(argv, out) {
  const r = spawnSync('strace', ['-f', '-c', '-o', out, '-e', `trace=${METADATA}`, ...argv], { encoding: 'utf8', maxBuffer: 1 << 28 });
  const text = fs.readFileSync(out, 'utf8');
  const total = /^\s*100\.00\s+\S+\s+\S+\s+(\d+)\s+(\d+)?\s*total$/m.exec(text);
  return { calls: total ? Number(total[1]) : NaN, status: r.status, text };
}

/**
 * A file system of its own for the measured store and file: as root a loop-mounted ext4 in
 * `base` (unmounted by the returned function), so that what lies on it is exactly what is under
 * its mount point; otherwise a directory (then only the paths tell).
 */
function dedicatedFs(base) {
  const dir = path.join(base, 'pfs');
  fs.mkdirSync(dir);
  if (process.getuid() !== 0) return { dir, how: `a directory (${dir}), not a file system of its own: the bench was not run as root`, done: () => undefined };
  const img = path.join(base, 'pfs.ext4');
  execFileSync('truncate', ['-s', '6G', img]);
  execFileSync('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=1,lazy_journal_init=1', img]);
  execFileSync('mount', ['-o', 'loop', img, dir]);
  return { dir, how: 'a loop-mounted ext4 of its own', done: () => spawnSync('umount', [dir]) };
}

/** The metadata table: whole-tree counts (strace -c -f) and counts by where they land (bench/metadata.mjs). */
export async function metadataTable(base, ref, sqfs) {
  const pfs = dedicatedFs(base);
  try {
    const store = path.join(pfs.dir, 'store');
    const imageDir = path.join(pfs.dir, 'image');
    fs.mkdirSync(imageDir);
    const file = path.join(imageDir, 'img.sqfs');
    fs.copyFileSync(sqfs, file);
    const rb = [process.execPath, BURROW, '--root', store, '--runroot', path.join(base, 'root-run'), '--storage-driver', 'fuse-overlayfs'];
    execFileSync(rb[0], [...rb.slice(1), 'pull', '-q', ref], { stdio: 'ignore' });
    // file-images: what the sqstart branch keeps of a file per path (its config, passwd, group).
    const opts = { fsRoot: pfs.dir, imageRoots: [imageDir, ...['layers', 'blobs', 'images', 'tags.json', 'file-images'].map((f) => path.join(store, f))] };
    const rows = [];
    const cell = (r, k) => `${r[k]}${r.status ? ` (exit ${r.status})` : ''}`;
    // Two significant digits: (a) alone is thousands of times smaller.
    const ratio = (a, b) => (b ? `${Number((a / b).toPrecision(2))}×` : '–');
    for (const [what, cmd] of [
      ['start (`/bin/bash -c true`)', ['/bin/bash', '-c', 'true']],
      ['a tree walk (`find /usr -xdev`)', ['/usr/bin/find', '/usr', '-xdev', '-name', 'no-such-file']],
    ]) {
      const sqArgv = [...rb, 'run', '--rm', '--network', 'none', file, ...cmd];
      const unArgv = [...rb, 'run', '--rm', '--network', 'none', ref, ...cmd];
      const sqc = straceCount(sqArgv, path.join(base, 'strace-sq.txt'));
      // The earlier table's setup: the squashfs under the store's own union (the kernel overlay
      // here), whose lookups in the writable layer strace cannot see.
      const sqk = straceCount(sqArgv.filter((a, i) => a !== '--storage-driver' && sqArgv[i - 1] !== '--storage-driver'), path.join(base, 'strace-sqk.txt'));
      const unc = straceCount(unArgv, path.join(base, 'strace-un.txt'));
      const sq = straceAttributed(sqArgv, path.join(base, 'strace-sq.log'), opts);
      const un = straceAttributed(unArgv, path.join(base, 'strace-un.log'), opts);
      for (const r of [sq, un]) r.fsTotal = r.image + r.container;
      rows.push(`| ${what} | whole process tree (\`strace -c -f\`) | ${cell(sqc, 'calls')} | ${cell(unc, 'calls')} | ${ratio(sqc.calls, unc.calls)} |`);
      rows.push(`|  | whole process tree, the squashfs under the kernel overlay | ${cell(sqk, 'calls')} | ${cell(unc, 'calls')} | ${ratio(sqk.calls, unc.calls)} |`);
      for (const [k, label] of [
        ['image', '(a) the image\'s storage'],
        ['container', '(b) the container\'s state'],
        ['fsTotal', '**(a)+(b): on the image\'s file system**'],
        ['host', '(c) elsewhere on the host'],
        ['inside', '(d) inside the container, through its FUSE mounts'],
        ['total', '(a)+(b)+(c)+(d), attributed run'],
      ]) rows.push(`|  | ${label} | ${cell(sq, k)} | ${cell(un, k)} | ${ratio(sq[k], un[k])} |`);
    }
    return [
      '### file-metadata system calls of one container, by the file system they reach',
      '',
      '| workload | calls | squashfs (squashfuse + fuse-overlayfs) | unpacked store (fuse-overlayfs) | ratio |',
      '|---|---|---:|---:|---:|',
      ...rows,
      '',
      `Calls counted: ${METADATA.replace(/,/g, ', ')}. As root (strace -f would run the setuid newuidmap without its privileges), \`burrow --storage-driver fuse-overlayfs run --rm --network none\` in both columns: the union's lookups are then system calls strace sees (the kernel overlay makes the same requests to the same file system, inside the kernel, invisible to strace); one more row counts the squashfs start under the kernel overlay, burrow's default here, as the earlier version of this table did (fewer calls that strace sees, not fewer requests). The store and the one-file image are on ${pfs.how}; the run directory and the host's files are not. Two runs per cell: the whole process tree counted by \`strace -c -f\` (the CLI, the runtime, the monitor, the FUSE daemons, the container's processes), and one under \`strace -f -y --seccomp-bpf\` whose calls are attributed by the path each names (a relative one against its directory descriptor or working directory, \`/proc/self/fd/N\` through the caller's descriptor) and by who makes it (bench/metadata.mjs): (a) the image's storage on that file system: the store's layers, blobs, image records and tags, or the one-file image and its directory (and what the store keeps read from it, file-images/, where it does); (b) everything else on it: the container's directory in the store (its writable layer and work directory, bundle, records, /etc files; the FUSE daemons' lookups in the writable layer are here), the store's own records and directories; (c) everything elsewhere: the host's /usr and /etc (programs, libraries, the CLI's modules), /proc, /dev, the run directory; (d) the container's own processes after pivot_root, and calls of the runtime and the daemons into the container's FUSE mounts (the squashfuse mount under the union, the union itself), answered by squashfuse or fuse-overlayfs, whose own calls are counted where they land (squashfuse reads its one open file with pread, not a metadata call). On a store that burrow finds on a network file system, the writable layer and work directory are on local disk (/var/tmp/burrow-UID), so the union's part of (b) would not reach it either.`,
    ].join('\n') + '\n';
  } finally {
    pfs.done();
  }
}

/**
 * The start table: every row against ch-run's (the target of issue 18: burrow's squashfs start
 * within 1.5x of it) and against burrow's own first row.
 */
function startTable(rows, chNote) {
  const ch = rows.find((r) => r.name.startsWith('ch-run'));
  const lines = [
    '### start of `true`: squashfs (burrow, ch-run) and burrow\'s unpacked store',
    '',
    '| command | median (ms) | ± stddev | ratio to ch-run | ratio to burrow (first row) | CPU user+sys (ms) | CPU ratio to ch-run |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.name} | ${r.median.toFixed(1)} | ${r.stddev.toFixed(1)} | ${ch ? `${(r.median / ch.median).toFixed(2)}×` : '–'} | ${(r.median / rows[0].median).toFixed(2)}× | ${r.cpu.toFixed(1)} | ${ch ? `${(r.cpu / ch.cpu).toFixed(2)}×` : '–'} |`),
    '',
    [
      "Rootless, as the unprivileged bench user, with the store and the file on this VM's local disk (ext4), so this is the start's own cost, not a parallel file system's; hyperfine runs each command itself (no wrapper in the times).",
      'What each row sets up. Every burrow row runs the user\'s `burrow`, the native launcher: in the "run plan" rows it makes the container from the plan an earlier identical run of the Node CLI wrote (the plan\'s inputs checked unchanged: docs/hpc-images.md, "Run plans"), without Node; in the others it runs the Node CLI (argument parsing, the container record, the OCI config). Then `burrow-runtime run`, which joins the user\'s shared user namespace for the container\'s id maps (subordinate ids; `--hpc` keeps the user\'s own id in them), kept between starts by a small process (docs/architecture.md, "The shared user namespace"; the bench\'s first start of each set of maps made it), or, in the `BURROW_USERNS_SHARE=0` rows, makes one of its own whose maps the setuid newuidmap and newgidmap write, as every start did before; it then mounts the squashfs with squashfuse (a daemon in the container\'s user namespace) and the kernel\'s overlay on it (the writable layer, in the container\'s directory), /proc, /dev, /sys, cgroups, then starts `true`; at its end the launcher or the CLI removes the container (`--rm`).',
      '`--network none`: also a network namespace (loopback only) and a pid namespace. `--hpc`: Apptainer\'s defaults, the closest to ch-run: host network and IPC, no pid namespace, the user\'s own uid (keep-id), the host\'s environment, $HOME, the working directory and $TMPDIR bound. Default network: a network namespace with slirp4netns, which the runtime waits for before `true` starts. The unpacked store: the same with the image\'s layers as the overlay\'s lower layers instead of squashfuse.',
      "ch-run 0.31 (Debian) is one C program: it unshares a user and a mount namespace (mapping only the user's own id, no helper), mounts the squashfs with its linked libsquashfuse_ll in a thread of its own, binds a few host directories, pivots and execs; no container record, no writable layer, no network or pid namespace, nothing to remove.",
      'The two floor rows are what any command costs whose entry point is Node, as `burrow` is. The CPU column of a burrow row is its front end\'s (the launcher, or the launcher and Node) and what that waits for: neither waits for `burrow-runtime` to end after it has reported the exit, so the runtime\'s own CPU time (about 17 ms) is not in it; ch-run\'s row has all of ch-run\'s. docs/hpc-images.md ("Start cost") has where the time of a burrow start goes.',
      chNote,
    ]
      .filter(Boolean)
      .join(' '),
  ];
  return lines.join('\n') + '\n';
}

export async function run() {
  const base = benchDir('/tmp/bbsq-');
  const reg = await startRegistry({ mode: 'anonymous' });
  const tables = [];
  try {
    const img = buildBenchImage(path.join(base, 'layout'));
    const ref = await pushImage(reg, img, 'bench/squash', 'v1');
    const burrow = [process.execPath, BURROW, '--root', path.join(base, 'store'), '--runroot', path.join(base, 'run')];
    sh([...burrow, 'pull', '-q', ref]);
    const sqfs = path.join(base, 'img.sqfs');
    sh([...burrow, 'image', 'convert', '--format', 'squashfs', ref, sqfs]);
    // The same tree for the plain mksquashfs runs: the export's tar, and it unpacked.
    const tar = path.join(base, 'img.tar');
    const cid = sh([...burrow, 'create', '--network', 'none', ref, 'true']).trim();
    sh(['sh', '-c', `"$@" > ${tar}`, 'sh', ...burrow, 'export', cid]);
    sh([...burrow, 'rm', cid]);
    const tree = path.join(base, 'tree');
    sh(['mkdir', tree]);
    sh(['tar', '-C', tree, '--no-same-owner', '-xf', tar]);
    const cpus = os.availableParallelism();

    // Start: what each row sets up is in the table's text. `--network none` still makes a
    // network namespace (with its loopback); `--hpc` makes none and no pid namespace, as ch-run.
    // The user's `burrow` (the native launcher) with the store and run roots in the environment:
    // a run plan (docs/hpc-images.md, "Run plans") serves only a `burrow run` without global
    // flags. The first start of each planned row, in the probe below, writes its plan; the probe
    // then checks that the next start uses it. The Node rows set BURROW_NO_PLAN (through `env`,
    // whose exec, about 0.5 ms, is in their times), the rows without a shared user namespace
    // BURROW_USERNS_SHARE=0 (the same way).
    const roots = { BURROW_ROOT: path.join(base, 'store'), BURROW_RUNROOT: path.join(base, 'run') };
    const none = ['run', '--rm', '--network', 'none', sqfs, '/bin/true'];
    const hpc = ['run', '--rm', '--hpc', sqfs, '/bin/true'];
    const noPlan = ['env', 'BURROW_NO_PLAN=1', LAUNCHER];
    // Sharing off: a user namespace of its own per start, mapped by newuidmap/newgidmap. One more
    // variable in the container (-e) gives these rows plans of their own (a plan is per command
    // line and directory; BURROW_USERNS_SHARE is one of its checks).
    const noShare = ['env', 'BURROW_USERNS_SHARE=0', LAUNCHER];
    const own = (argv) => [...argv.slice(0, 2), '-e', 'OWN_USERNS=1', ...argv.slice(2)];
    const start = [
      { name: 'burrow run --rm --network none FILE.sqfs true (run plan)', argv: [LAUNCHER, ...none], planned: true },
      { name: 'burrow run --rm --hpc FILE.sqfs true (run plan)', argv: [LAUNCHER, ...hpc], planned: true },
      { name: 'burrow run --rm -e OWN_USERNS=1 --network none FILE.sqfs true (run plan; BURROW_USERNS_SHARE=0 through env)', argv: [...noShare, ...own(none)], planned: true },
      { name: 'burrow run --rm -e OWN_USERNS=1 --hpc FILE.sqfs true (run plan; BURROW_USERNS_SHARE=0 through env)', argv: [...noShare, ...own(hpc)], planned: true },
      { name: 'burrow run --rm --network none FILE.sqfs true (Node CLI, BURROW_NO_PLAN=1)', argv: [...noPlan, ...none] },
      { name: 'burrow run --rm --hpc FILE.sqfs true (Node CLI, BURROW_NO_PLAN=1)', argv: [...noPlan, ...hpc] },
      { name: 'burrow run --rm FILE.sqfs true (default network: slirp4netns; Node CLI)', argv: [LAUNCHER, 'run', '--rm', sqfs, '/bin/true'] },
    ];
    // What the store keeps read from a file changed in the last 2 s is not kept, nor is a plan
    // made then: the file was just written.
    await new Promise((r) => setTimeout(r, 2500));
    for (const row of start.filter((r) => r.planned)) {
      const env = ['env', ...Object.entries(roots).map(([k, v]) => `${k}=${v}`)];
      sh([...env, ...row.argv]);
      const argv = asUser([...env, 'BURROW_DEBUG=1', ...row.argv]);
      const probe = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8' });
      const said = /run plan: (used|miss: .*)/.exec(probe.stderr)?.[1] ?? 'no plan line';
      if (!said.startsWith('used')) row.name += ` (PLAN NOT USED: ${said})`;
    }
    let chNote = '';
    if (have('ch-run')) {
      // --no-passwd: ch-run binds the host's /etc/passwd and /etc/group over the image's, which
      // must exist; the bench image, made from the packages' file lists, has none (base-passwd
      // makes them in its postinst). Without those binds ch-run does a little less work.
      const ch = ['ch-run', '--no-passwd', sqfs, '--', '/bin/true'];
      const probe = spawnSync(asUser(ch)[0], asUser(ch).slice(1), { encoding: 'utf8' });
      if (probe.status === 0) start.push({ name: 'ch-run --no-passwd FILE.sqfs -- true', argv: ch });
      else chNote = `ch-run could not run the squashfs: ${probe.stderr.trim().split('\n').pop()}`;
    } else chNote = 'ch-run is not installed (Debian: charliecloud-runtime).';
    start.push({ name: 'burrow run --rm --network none IMAGE true (unpacked store, overlay; Node CLI)', argv: [LAUNCHER, ...none.slice(0, -2), ref, '/bin/true'] });
    // The floor of any command whose entry point is Node: the interpreter alone, and burrow's CLI
    // loaded (its bundle, with the V8 code cache, and commander) without doing anything: with
    // global options, because a bare `--version` is answered before the bundle is loaded.
    start.push({ name: 'node -e 0 (floor: a Node entry point)', argv: [process.execPath, '-e', '0'] });
    start.push({ name: 'burrow --root … --runroot … --version (floor: the CLI loaded)', argv: [...burrow, '--version'] });
    tables.push(startTable(hyperfine(start, { runs: 20, warmup: 3, env: roots }), chNote));

    // Metadata system calls, as root with a store of its own on a file system of its own
    // (bench/metadata.mjs): the store and the one-file image on it, the run directory not.
    tables.push(await metadataTable(base, ref, sqfs));

    // Conversion.
    const conv = [
      { name: 'burrow image convert --format squashfs', argv: [...burrow, 'image', 'convert', '--format', 'squashfs', ref, path.join(base, 'c1.sqfs')] },
      { name: `mksquashfs TREE (directory, -processors ${cpus})`, argv: ['mksquashfs', tree, path.join(base, 'c2.sqfs'), '-noappend', '-quiet', '-no-progress', '-processors', String(cpus)] },
      { name: `mksquashfs - -tar < TAR (-processors ${cpus})`, argv: ['sh', '-c', `mksquashfs - ${path.join(base, 'c3.sqfs')} -tar -noappend -quiet -no-progress -processors ${cpus} < ${tar}`] },
    ];
    const sizes = `squashfs ${(fs.statSync(sqfs).size / 1e6).toFixed(0)} MB from ${(fs.statSync(tar).size / 1e6).toFixed(0)} MB of tar`;
    tables.push(ratioTable('conversion of the 3-layer image', hyperfine(conv, { runs: 2, warmup: 0 }), `${sizes}; gzip (mksquashfs's default) in every row. burrow's row includes creating and removing the transient container and exporting the tree through the store's overlay.`, { cpu: true }));
    return tables.join('\n');
  } finally {
    await reg.stop();
    // Started as root (npm run bench): root removes the stores' files of subordinate ids too.
    spawnSync('rm', ['-rf', base]);
  }
}
