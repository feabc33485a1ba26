// Start-up: `burrow --version` and `burrow info` against `podman --version` and `podman info`,
// what bin/burrow.js's code cache saves on loading the CLI, and the listing commands (`images`,
// `ps -a`, `inspect`) on a store with 50 images and 50 containers, burrow and podman each in a
// store of their own.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { asUser, BURROW, benchUser, have, hyperfine, ratioTable } from './lib.mjs';
import { makeRootfs } from '../test/harness/bundle.mjs';

const LISTED = 50;

function sh(argv) {
  const a = asUser(argv);
  return execFileSync(a[0], a.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/**
 * 50 images (tags of one busybox image, imported from a tarball) and 50 created containers, one
 * per tag, for burrow and for podman (its own --root and --runroot: the bench user's podman
 * store is left alone). Returns the argv prefixes of both.
 */
function populate(dir) {
  const rf = path.join(dir, 'rootfs-src');
  makeRootfs(rf);
  const tarball = path.join(dir, 'busybox.tar.gz');
  execFileSync('tar', ['--numeric-owner', '--owner=0', '--group=0', '-czf', tarball, '-C', path.join(rf, 'rootfs'), '.']);
  fs.rmSync(rf, { recursive: true, force: true });
  const u = benchUser();
  if (u) execFileSync('chown', ['-R', `${u.uid}:${u.gid}`, dir]);
  const burrow = [process.execPath, BURROW, '--root', path.join(dir, 'store'), '--runroot', path.join(dir, 'run')];
  sh([...burrow, 'import', tarball, 'bench/img:0']);
  for (let i = 1; i < LISTED; i++) sh([...burrow, 'tag', 'bench/img:0', `bench/img:${i}`]);
  for (let i = 0; i < LISTED; i++) sh([...burrow, 'create', '--name', `c${i}`, '--network', 'none', `bench/img:${i}`, 'true']);
  let podman;
  if (have('podman')) {
    podman = ['podman', '--root', path.join(dir, 'podman-root'), '--runroot', path.join(dir, 'podman-run')];
    sh([...podman, 'import', tarball, 'localhost/bench/img:0']);
    for (let i = 1; i < LISTED; i++) sh([...podman, 'tag', 'localhost/bench/img:0', `localhost/bench/img:${i}`]);
    for (let i = 0; i < LISTED; i++) sh([...podman, 'create', '--name', `c${i}`, '--network', 'none', `localhost/bench/img:${i}`, 'true']);
  }
  return { burrow, podman };
}

export const title = 'CLI start-up';

export function run() {
  const node = process.execPath;
  const tables = [];
  const version = [{ name: 'burrow --version', argv: [node, BURROW, '--version'] }];
  if (have('podman')) version.push({ name: 'podman --version', argv: ['podman', '--version'] });
  version.push({ name: 'node -e 0 (floor)', argv: [node, '-e', '0'] });
  tables.push(ratioTable('`--version`', hyperfine(version)));

  const info = [{ name: 'burrow info', argv: [node, BURROW, 'info', '--format', 'json'] }];
  if (have('podman')) info.push({ name: 'podman info', argv: ['podman', 'info', '--format', 'json'] });
  tables.push(ratioTable('`info`', hyperfine(info, { runs: 10, warmup: 2 }), 'burrow info runs every probe each time, including a user-namespace and overlay mount test in a child process.'));

  // Loading the CLI: `images -q` on an empty store, with the V8 code cache that bin/burrow.js keeps
  // in XDG_CACHE_HOME (written by the warm-up runs), and without one (nothing can be read or
  // written under /dev/null): the difference is parsing and compiling the bundle every time.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-bench-startup-'));
  const u = benchUser();
  if (u) fs.chownSync(dir, u.uid, u.gid);
  try {
    const images = (cache) => ['env', `XDG_CACHE_HOME=${cache}`, node, BURROW, '--root', path.join(dir, 'store'), '--runroot', path.join(dir, 'run'), 'images', '-q'];
    const load = [
      { name: 'burrow images -q (code cache)', argv: images(path.join(dir, 'cache')) },
      { name: 'burrow images -q (no code cache)', argv: images('/dev/null') },
      { name: 'node -e 0 (floor)', argv: ['env', node, '-e', '0'] },
    ];
    tables.push(ratioTable('loading the CLI: `images -q`, empty store', hyperfine(load)));

    const { burrow, podman } = populate(path.join(dir, 'listed'));
    for (const [title, args] of [
      ['`images`', ['images']],
      ['`ps -a`', ['ps', '-a']],
      ['`inspect` of a container', ['inspect', 'c7']],
    ]) {
      const rows = [{ name: `burrow ${args.join(' ')}`, argv: [...burrow, ...args] }];
      if (podman) rows.push({ name: `podman ${args.join(' ')}`, argv: [...podman, ...args] });
      // What any Node program pays before its first line: burrow's share is the rest.
      if (args[0] === 'images') rows.push({ name: 'node -e 0 (floor)', argv: [process.execPath, '-e', '0'] });
      tables.push(ratioTable(`${title}: ${LISTED} images, ${LISTED} containers`, hyperfine(rows, { runs: 20, warmup: 3 }), '', { cpu: true }));
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return tables.join('\n');
}
