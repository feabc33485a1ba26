// One-file images (docs/hpc-images.md), with the pull benchmark's 3-layer image (Debian minbase,
// Python + docs, large binaries; about 500 MB unpacked):
//   - start of a container from the squashfs (`burrow run FILE.sqfs`) against Charliecloud's
//     `ch-run` on the same file (Debian's charliecloud-runtime 0.31 is linked with
//     libsquashfuse_ll: it mounts a squashfs itself) and against burrow's start from its unpacked
//     store (kernel overlay);
//   - file-metadata system calls (strace -c -f over the whole process tree: the CLI, the runtime,
//     the FUSE daemons and the container) of one start from the squashfs against one from the
//     unpacked store with fuse-overlayfs, whose lookups in the layers are system calls strace can
//     count (the kernel overlay's lookups are the same requests to the store's file system, but
//     made inside the kernel, invisible to strace); run as root, because strace -f would run the
//     setuid newuidmap without its privileges;
//   - conversion time of the image (`image convert`) against mksquashfs of the same tree, from a
//     directory and from a tar.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { asUser, benchUser, BURROW, have, hyperfine, ratioTable } from './lib.mjs';
import { buildBenchImage } from './pull.bench.mjs';
import { startRegistry } from '../test/harness/registry.mjs';
import { pushImage } from '../test/harness/images.mjs';

export const title = 'One-file images: squashfs start, metadata system calls, conversion';

function sh(argv, opts = {}) {
  const a = asUser(argv);
  return execFileSync(a[0], a.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 28, ...opts });
}

/** The metadata system calls strace counts: every call naming a path, the stat family, directory reads, xattrs. */
const METADATA = '%file,%stat,%lstat,%fstat,getdents64,getxattr,lgetxattr,fgetxattr,listxattr,llistxattr,flistxattr';

/** Total calls of `strace -c -f` (as root) of `argv`, and the command's exit status. */
function straceCount(argv, out) {
  const r = spawnSync('strace', ['-f', '-c', '-o', out, '-e', `trace=${METADATA}`, ...argv], { encoding: 'utf8', maxBuffer: 1 << 28 });
  const text = fs.readFileSync(out, 'utf8');
  const total = /^\s*100\.00\s+\S+\s+\S+\s+(\d+)\s+(\d+)?\s*total$/m.exec(text);
  return { calls: total ? Number(total[1]) : NaN, status: r.status, text };
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
      'What each row sets up. Every burrow row: the Node CLI (argument parsing, the container record, the OCI config), then `burrow-runtime run`, which makes a user namespace whose id maps newuidmap/newgidmap write (subordinate ids; `--hpc` keeps the user\'s own id in them), mounts the squashfs with squashfuse (a daemon in the container\'s user namespace) and the kernel\'s overlay on it (the writable layer, in the container\'s directory), /proc, /dev, /sys, cgroups, then starts `true`; at its end the CLI removes the container (`--rm`).',
      '`--network none`: also a network namespace (loopback only) and a pid namespace. `--hpc`: Apptainer\'s defaults, the closest to ch-run: host network and IPC, no pid namespace, the user\'s own uid (keep-id), the host\'s environment, $HOME, the working directory and $TMPDIR bound. Default network: a network namespace with slirp4netns, which the runtime waits for before `true` starts. The unpacked store: the same with the image\'s layers as the overlay\'s lower layers instead of squashfuse.',
      "ch-run 0.31 (Debian) is one C program: it unshares a user and a mount namespace (mapping only the user's own id, no helper), mounts the squashfs with its linked libsquashfuse_ll in a thread of its own, binds a few host directories, pivots and execs; no container record, no writable layer, no network or pid namespace, nothing to remove.",
      'The two floor rows are what any command costs whose entry point is Node, as `burrow` is. docs/hpc-images.md ("Start cost") has where the time of a burrow start goes.',
      chNote,
    ]
      .filter(Boolean)
      .join(' '),
  ];
  return lines.join('\n') + '\n';
}

export async function run() {
  const u = benchUser();
  const base = fs.mkdtempSync('/tmp/bbsq-');
  fs.chmodSync(base, 0o755);
  if (u) fs.chownSync(base, u.uid, u.gid);
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
    const start = [
      { name: 'burrow run --rm --network none FILE.sqfs true', argv: [...burrow, 'run', '--rm', '--network', 'none', sqfs, '/bin/true'] },
      { name: 'burrow run --rm --hpc FILE.sqfs true', argv: [...burrow, 'run', '--rm', '--hpc', sqfs, '/bin/true'] },
      { name: 'burrow run --rm FILE.sqfs true (default network: slirp4netns)', argv: [...burrow, 'run', '--rm', sqfs, '/bin/true'] },
    ];
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
    start.push({ name: 'burrow run --rm --network none IMAGE true (unpacked store, overlay)', argv: [...burrow, 'run', '--rm', '--network', 'none', ref, '/bin/true'] });
    // The floor of any command whose entry point is Node: the interpreter alone, and burrow's CLI
    // loaded (its bundle, with the V8 code cache, and commander) without doing anything: with
    // global options, because a bare `--version` is answered before the bundle is loaded.
    start.push({ name: 'node -e 0 (floor: a Node entry point)', argv: [process.execPath, '-e', '0'] });
    start.push({ name: 'burrow --root … --runroot … --version (floor: the CLI loaded)', argv: [...burrow, '--version'] });
    tables.push(startTable(hyperfine(start, { runs: 20, warmup: 3 }), chNote));

    // Metadata system calls, as root with a store of its own.
    const rootStore = path.join(base, 'root-store');
    const rb = [process.execPath, BURROW, '--root', rootStore, '--runroot', path.join(base, 'root-run')];
    execFileSync(rb[0], [...rb.slice(1), 'pull', '-q', ref], { stdio: 'ignore' });
    const rows = [];
    for (const [what, cmd] of [
      ['start (`/bin/bash -c true`)', ['/bin/bash', '-c', 'true']],
      ['a tree walk (`find /usr -xdev`)', ['/usr/bin/find', '/usr', '-xdev', '-name', 'no-such-file']],
    ]) {
      const sq = straceCount([...rb, 'run', '--rm', '--network', 'none', sqfs, ...cmd], path.join(base, 'strace-sq.txt'));
      const un = straceCount([...rb, '--storage-driver', 'fuse-overlayfs', 'run', '--rm', '--network', 'none', ref, ...cmd], path.join(base, 'strace-un.txt'));
      rows.push(`| ${what} | ${sq.calls}${sq.status ? ` (exit ${sq.status})` : ''} | ${un.calls}${un.status ? ` (exit ${un.status})` : ''} | ${(sq.calls / un.calls).toFixed(2)}× |`);
    }
    tables.push(
      [
        '### file-metadata system calls of one container (strace -c -f, whole process tree)',
        '',
        '| workload | squashfs (squashfuse + overlay) | unpacked store (fuse-overlayfs) | ratio |',
        '|---|---:|---:|---:|',
        ...rows,
        '',
        `Calls counted: ${METADATA.replace(/,/g, ', ')}. Both columns include the CLI's and the runtime's own calls (the same in both) and the container's own (the same system calls, answered by a different file system). What differs is what reaches the store's file system: fuse-overlayfs looks every path up in each layer directory of the store, squashfuse reads blocks of one open file (pread, not counted here).`,
      ].join('\n') + '\n',
    );

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
