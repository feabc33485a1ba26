// Builds test images as OCI image layouts (oci-layout, index.json, blobs/sha256/…) from Debian's
// busybox-static and generated files, and pushes them to a test registry with skopeo. Layers are
// made by GNU tar (with per-subtree owners via --owner/--group, appended with -r) and compressed
// by the gzip and zstd commands; the hostile layers, which tar refuses to write, come from a
// small ustar writer here. Nothing is downloaded.
//
//   buildMainImage(dir)         several layers: busybox; whiteouts (file, directory, opaque);
//                               hardlinks; a symlink chain; files of uid 33 and 1000; a zstd
//                               layer; a large file (64 MiB by default)
//   buildBusyboxImage(dir, {tag, config}) one busybox layer with the given image config
//   buildMultiPlatformImage(dir) an index with linux/amd64 and linux/arm64/v8 (tiny layers)
//   buildHostileImages(dir)     one image per attack on an unpacker (see HOSTILE below)
//   buildImage(dir, spec)       the general builder the others use
//   pushImage(registry, image, name, tag) skopeo copy oci:… docker://HOST/NAME:TAG (async)
import { execFile, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';

const BUSYBOX = '/bin/busybox';
export const MT = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  tar: 'application/vnd.oci.image.layer.v1.tar',
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
};
const MTIME = 1700000000; // fixed, so rebuilt layers are byte-identical
const TAR_COMMON = ['--format=posix', '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime', '--sort=name', `--mtime=@${MTIME}`, '--numeric-owner'];

function sh(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 26, ...opts });
}

export function sha256File(file) {
  const h = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.allocUnsafe(1 << 20);
  try {
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) h.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return `sha256:${h.digest('hex')}`;
}

/** The host platform in Go's names (what an index entry for "this machine" says). */
export function hostPlatform() {
  switch (process.arch) {
    case 'x64':
      return { os: 'linux', architecture: 'amd64' };
    case 'arm64':
      return { os: 'linux', architecture: 'arm64', variant: 'v8' };
    default:
      return { os: 'linux', architecture: process.arch };
  }
}

// ---- OCI layout ---------------------------------------------------------------------------------

function initLayout(dir) {
  fs.mkdirSync(path.join(dir, 'blobs', 'sha256'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  if (!fs.existsSync(path.join(dir, 'index.json'))) fs.writeFileSync(path.join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, mediaType: MT.ociIndex, manifests: [] }));
}

/** Adds bytes (a Buffer) or a file (a path; moved in) to the layout; returns {digest, size}. */
export function addBlob(layout, content) {
  initLayout(layout);
  if (Buffer.isBuffer(content)) {
    const buf = content;
    const digest = `sha256:${crypto.createHash('sha256').update(buf).digest('hex')}`;
    fs.writeFileSync(blobPath(layout, digest), buf);
    return { digest, size: buf.length };
  }
  const digest = sha256File(content);
  const size = fs.statSync(content).size;
  fs.renameSync(content, blobPath(layout, digest));
  return { digest, size };
}

export function blobPath(layout, digest) {
  return path.join(layout, 'blobs', ...digest.split(':'));
}

function tagInLayout(layout, tag, desc) {
  initLayout(layout);
  const index = JSON.parse(fs.readFileSync(path.join(layout, 'index.json'), 'utf8'));
  index.manifests = index.manifests.filter((m) => m.annotations?.['org.opencontainers.image.ref.name'] !== tag);
  index.manifests.push({ ...desc, annotations: { 'org.opencontainers.image.ref.name': tag } });
  fs.writeFileSync(path.join(layout, 'index.json'), JSON.stringify(index, null, 2));
}

// ---- layers ---------------------------------------------------------------------------------------

/**
 * Makes a tar of `root` with GNU tar. `owners` maps a relative subtree to [uid, gid]; everything
 * else is 0:0. Entries have no "./" prefix, as Docker writes them. Returns the tar's path.
 */
export function tarDirectory(root, out, owners = {}) {
  const special = Object.keys(owners);
  const top = fs.readdirSync(root).sort();
  const isUnder = (p, s) => p === s || p.startsWith(`${s}/`);
  // Parents of the special subtrees are listed alone (--no-recursion) with the default owner.
  const parents = new Set();
  for (const s of special) {
    const parts = s.split('/');
    for (let i = 1; i < parts.length; i++) parents.add(parts.slice(0, i).join('/'));
  }
  const exclude = special.map((s) => `--exclude=./${s}`).concat(special.map((s) => `--exclude=${s}`));
  const plain = top.filter((t) => !parents.has(t) && !special.includes(t));
  fs.rmSync(out, { force: true });
  const base = ['-C', root, ...TAR_COMMON];
  const parts = [];
  if (plain.length) parts.push(['--owner=0', '--group=0', ...exclude, ...plain]);
  // Directories above special subtrees: their other contents too, minus the special subtrees.
  for (const p of [...parents].sort()) {
    parts.push(['--owner=0', '--group=0', '--no-recursion', p]);
    for (const child of fs.readdirSync(path.join(root, p)).sort()) {
      const rel = `${p}/${child}`;
      if (parents.has(rel) || special.some((s) => isUnder(rel, s))) continue;
      parts.push(['--owner=0', '--group=0', ...exclude, rel]);
    }
  }
  for (const [s, [uid, gid]] of Object.entries(owners)) parts.push([`--owner=${uid}`, `--group=${gid}`, s]);
  parts.forEach((args, i) => sh('tar', [i === 0 ? '-cf' : '-rf', out, ...base, ...args]));
  if (!parts.length) sh('tar', ['-cf', out, ...base, '--files-from=/dev/null']);
  return out;
}

/** Compresses a tar with the gzip or zstd command (or not); returns {file, mediaType}. */
export function compress(tarFile, compression) {
  if (compression === 'none') return { file: tarFile, mediaType: MT.tar };
  if (compression === 'gzip') {
    sh('gzip', ['-n', '-1', '-f', tarFile]);
    return { file: `${tarFile}.gz`, mediaType: MT.gzip };
  }
  if (compression === 'zstd') {
    sh('zstd', ['-q', '-3', '-f', '--rm', tarFile, '-o', `${tarFile}.zst`]);
    return { file: `${tarFile}.zst`, mediaType: MT.zstd };
  }
  throw new Error(`unknown compression ${compression}`);
}

/**
 * Builds one image into the layout `dir` and tags it. `spec`:
 *   layers: [{tar: FILE (uncompressed), compression: 'gzip'|'zstd'|'none', comment?}]
 *   config: the image config's `config` object; platform: {os, architecture, variant?}
 * Returns {layout, tag, manifest: {mediaType, digest, size}, config: {digest, size}, layers:
 * [{mediaType, digest, size, diffId}], platform}.
 */
export function buildImage(dir, { tag = 'latest', layers, config = {}, platform = hostPlatform(), annotations, doTag = true }) {
  initLayout(dir);
  const outLayers = [];
  for (const l of layers) {
    const diffId = sha256File(l.tar);
    const { file, mediaType } = compress(l.tar, l.compression ?? 'gzip');
    const { digest, size } = addBlob(dir, file);
    outLayers.push({ mediaType, digest, size, diffId, comment: l.comment ?? '' });
  }
  const cfg = {
    created: new Date(MTIME * 1000).toISOString(),
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config,
    rootfs: { type: 'layers', diff_ids: outLayers.map((l) => l.diffId) },
    history: outLayers.map((l) => ({ created: new Date(MTIME * 1000).toISOString(), created_by: `burrow test harness: ${l.comment}` })),
  };
  const configDesc = { mediaType: MT.ociConfig, ...addBlob(dir, Buffer.from(JSON.stringify(cfg))) };
  const manifest = {
    schemaVersion: 2,
    mediaType: MT.ociManifest,
    config: configDesc,
    layers: outLayers.map(({ mediaType, digest, size }) => ({ mediaType, digest, size })),
    ...(annotations ? { annotations } : {}),
  };
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  const manifestDesc = { mediaType: MT.ociManifest, ...addBlob(dir, manifestBytes) };
  if (doTag) tagInLayout(dir, tag, manifestDesc);
  return { layout: dir, tag, manifest: manifestDesc, manifestBytes, config: configDesc, configJson: cfg, layers: outLayers, platform };
}

// ---- the main test image ----------------------------------------------------------------------

function write(root, rel, content, mode = 0o644) {
  const p = path.join(root, rel);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, content);
  fs.chmodSync(p, mode);
}

/** `size` bytes of pseudo-random data (incompressible, like real binaries are mostly). */
function writeRandomFile(p, size, seed = 'burrow') {
  const fd = fs.openSync(p, 'w');
  try {
    let left = size;
    let block = crypto.createHash('sha512').update(seed).digest();
    const chunk = Buffer.allocUnsafe(1 << 20);
    while (left > 0) {
      // A keyed stream: fast, deterministic per seed, and not compressible.
      const cipher = crypto.createCipheriv('aes-256-ctr', block.subarray(0, 32), block.subarray(32, 48));
      const n = Math.min(left, chunk.length);
      const out = cipher.update(chunk.fill(0, 0, n).subarray(0, n));
      fs.writeSync(fd, out);
      left -= n;
      block = crypto.createHash('sha512').update(block).digest();
    }
  } finally {
    fs.closeSync(fd);
  }
}

function busyboxRoot(root) {
  for (const d of ['bin', 'etc', 'tmp', 'root', 'proc', 'sys', 'dev']) fs.mkdirSync(path.join(root, d), { recursive: true });
  fs.chmodSync(path.join(root, 'tmp'), 0o1777);
  fs.chmodSync(path.join(root, 'root'), 0o700);
  fs.copyFileSync(BUSYBOX, path.join(root, 'bin', 'busybox'));
  fs.chmodSync(path.join(root, 'bin', 'busybox'), 0o755);
  for (const a of sh(BUSYBOX, ['--list']).split('\n').filter(Boolean)) {
    const p = path.join(root, 'bin', a);
    if (a !== 'busybox' && !fs.existsSync(p)) fs.symlinkSync('busybox', p);
  }
  write(root, 'etc/passwd', 'root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/false\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
  write(root, 'etc/group', 'root:x:0:\nwww-data:x:33:\nuser:x:1000:\nnogroup:x:65534:\n');
}

/**
 * The main test image: four layers.
 *   1 gzip  busybox + applet symlinks; /etc/passwd, /etc/group; data/hard1 and data/hard2 (one
 *           inode); data/chain1 -> chain2 -> chain3 -> target.txt and data/abs -> /data/target.txt;
 *           var/www (uid 33) and home/user (uid 1000); todelete.txt; deldir/; opaque/{a,b,sub/c}
 *   2 gzip  .wh.todelete.txt, .wh.deldir, opaque/.wh..wh..opq + opaque/new.txt, etc/motd changed
 *   3 zstd  zstd/hello.txt
 *   4 gzip  big/random.bin (`bigSize` bytes, 64 MiB by default)
 * Returns buildImage's result plus `expect`: what an unpacked rootfs must and must not have.
 */
export function buildMainImage(dir, { tag = 'latest', bigSize = 64 * 1024 * 1024 } = {}) {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-img-'));
  try {
    const l1 = path.join(work, 'l1');
    busyboxRoot(l1);
    write(l1, 'etc/motd', 'layer 1\n');
    write(l1, 'data/target.txt', 'the end of the chain\n');
    write(l1, 'data/hard1', 'one inode, two names\n');
    fs.linkSync(path.join(l1, 'data/hard1'), path.join(l1, 'data/hard2'));
    fs.symlinkSync('chain2', path.join(l1, 'data/chain1'));
    fs.symlinkSync('chain3', path.join(l1, 'data/chain2'));
    fs.symlinkSync('target.txt', path.join(l1, 'data/chain3'));
    fs.symlinkSync('/data/target.txt', path.join(l1, 'data/abs'));
    write(l1, 'var/www/index.html', '<h1>www-data</h1>\n');
    write(l1, 'home/user/notes.txt', 'owned by 1000\n', 0o600);
    write(l1, 'todelete.txt', 'removed by layer 2\n');
    write(l1, 'deldir/inside.txt', 'removed with its directory by layer 2\n');
    write(l1, 'opaque/a', 'hidden by the opaque whiteout\n');
    write(l1, 'opaque/b', 'hidden too\n');
    write(l1, 'opaque/sub/c', 'hidden too\n');
    const t1 = tarDirectory(l1, path.join(work, 'l1.tar'), { 'var/www': [33, 33], 'home/user': [1000, 1000] });

    const l2 = path.join(work, 'l2');
    write(l2, '.wh.todelete.txt', '');
    write(l2, '.wh.deldir', '');
    write(l2, 'opaque/.wh..wh..opq', '');
    write(l2, 'opaque/new.txt', 'the only file in opaque/ now\n');
    write(l2, 'etc/motd', 'layer 2\n');
    const t2 = tarDirectory(l2, path.join(work, 'l2.tar'));

    const l3 = path.join(work, 'l3');
    write(l3, 'zstd/hello.txt', 'from a zstd layer\n');
    const t3 = tarDirectory(l3, path.join(work, 'l3.tar'));

    const l4 = path.join(work, 'l4');
    fs.mkdirSync(path.join(l4, 'big'), { recursive: true });
    writeRandomFile(path.join(l4, 'big', 'random.bin'), bigSize);
    const bigDigest = sha256File(path.join(l4, 'big', 'random.bin'));
    const t4 = tarDirectory(l4, path.join(work, 'l4.tar'));

    const img = buildImage(dir, {
      tag,
      layers: [
        { tar: t1, compression: 'gzip', comment: 'busybox, links, owners' },
        { tar: t2, compression: 'gzip', comment: 'whiteouts' },
        { tar: t3, compression: 'zstd', comment: 'zstd layer' },
        { tar: t4, compression: 'gzip', comment: 'large file' },
      ],
      config: {
        Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'BURROW_TEST=main'],
        Cmd: ['/bin/sh'],
        WorkingDir: '/data',
        ExposedPorts: { '8080/tcp': {} },
        Labels: { 'org.opencontainers.image.title': 'burrow main test image' },
        StopSignal: 'SIGTERM',
      },
    });
    img.expect = {
      present: ['bin/busybox', 'bin/sh', 'etc/passwd', 'data/target.txt', 'data/hard1', 'data/hard2', 'var/www/index.html', 'home/user/notes.txt', 'opaque/new.txt', 'zstd/hello.txt', 'big/random.bin'],
      absent: ['todelete.txt', 'deldir', 'opaque/a', 'opaque/b', 'opaque/sub', '.wh.todelete.txt', '.wh.deldir', 'opaque/.wh..wh..opq'],
      hardlinks: [['data/hard1', 'data/hard2']],
      symlinks: { 'data/chain1': 'chain2', 'data/chain2': 'chain3', 'data/chain3': 'target.txt', 'data/abs': '/data/target.txt', 'bin/sh': 'busybox' },
      owners: { 'var/www': 33, 'var/www/index.html': 33, 'home/user': 1000, 'home/user/notes.txt': 1000, 'etc/passwd': 0 },
      contents: { 'etc/motd': 'layer 2\n', 'data/target.txt': 'the end of the chain\n', 'zstd/hello.txt': 'from a zstd layer\n' },
      big: { path: 'big/random.bin', size: bigSize, digest: bigDigest },
    };
    return img;
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/**
 * A one-layer busybox image (busybox-static, its applet links, /etc/passwd and /etc/group) with
 * the given image `config` (Cmd, Env...). For the tests that drive the runtime through podman and
 * containerd, which need an ordinary small image and a pause image for pod sandboxes.
 */
export function buildBusyboxImage(dir, { tag = 'latest', config = { Cmd: ['/bin/sh'] } } = {}) {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-img-'));
  try {
    const root = path.join(work, 'root');
    busyboxRoot(root);
    const env = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'];
    return buildImage(dir, { tag, layers: [{ tar: tarDirectory(root, path.join(work, 'l.tar')), compression: 'gzip', comment: 'busybox' }], config: { Env: env, ...config } });
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** A small single-platform image with one layer of unique content (for tamper and push tests). */
export function buildSmallImage(dir, { tag = 'latest', seed = crypto.randomBytes(8).toString('hex'), size = 256 * 1024 } = {}) {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-img-'));
  try {
    const root = path.join(work, 'root');
    fs.mkdirSync(path.join(root, 'small'), { recursive: true });
    writeRandomFile(path.join(root, 'small', 'data.bin'), size, seed);
    write(root, 'small/seed.txt', `${seed}\n`);
    return buildImage(dir, { tag, layers: [{ tar: tarDirectory(root, path.join(work, 'l.tar')), compression: 'gzip', comment: `small ${seed}` }], config: { Cmd: ['/bin/sh'] } });
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/**
 * An image whose config runs it as a non-root user by name, as many real images do: busybox,
 * /etc/passwd and /etc/group with `app` (uid and gid 1000), /home/app, and `User: "app"` with
 * `Cmd: ["id"]`. Every file is root's, so that a test's store can be deleted without burrow
 * (rootless, a file of a subordinate id could not be). For test/integration/identity.test.ts.
 */
export function buildUserImage(dir, { tag = 'user' } = {}) {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-img-'));
  try {
    const root = path.join(work, 'root');
    busyboxRoot(root);
    write(root, 'etc/passwd', 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
    write(root, 'etc/group', 'root:x:0:\napp:x:1000:\nnogroup:x:65534:\n');
    write(root, 'home/app/.profile', 'echo app\n');
    const tar = tarDirectory(root, path.join(work, 'l.tar'));
    return buildImage(dir, { tag, layers: [{ tar, compression: 'gzip', comment: 'busybox with USER app' }], config: { User: 'app', Cmd: ['id'], WorkingDir: '/home/app' } });
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/**
 * An index with linux/amd64 and linux/arm64/v8 manifests, each one tiny layer with /arch naming
 * the platform. Returns {layout, tag, index: {mediaType, digest, size}, indexBytes, images:
 * {amd64, arm64}} where each image is buildImage's result (untagged).
 */
export function buildMultiPlatformImage(dir, { tag = 'multi' } = {}) {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-img-'));
  try {
    const images = {};
    for (const platform of [{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64', variant: 'v8' }]) {
      const root = path.join(work, platform.architecture);
      write(root, 'arch', `${platform.architecture}\n`);
      const t = tarDirectory(root, path.join(work, `${platform.architecture}.tar`));
      images[platform.architecture] = buildImage(dir, { tag, layers: [{ tar: t, compression: 'gzip', comment: platform.architecture }], config: { Cmd: ['/bin/cat', '/arch'] }, platform, doTag: false });
    }
    const index = {
      schemaVersion: 2,
      mediaType: MT.ociIndex,
      manifests: Object.values(images).map((i) => ({ ...i.manifest, platform: i.platform })),
    };
    const indexBytes = Buffer.from(JSON.stringify(index));
    const indexDesc = { mediaType: MT.ociIndex, ...addBlob(dir, indexBytes) };
    tagInLayout(dir, tag, indexDesc);
    return { layout: dir, tag, index: indexDesc, indexBytes, images, multi: true };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

// ---- hostile layers ----------------------------------------------------------------------------

/**
 * A ustar (POSIX.1-1988) writer, with pax extended headers for long names. Entries:
 * {name, type: 'file'|'dir'|'symlink'|'hardlink'|'char'|'block'|'fifo', content?, linkname?,
 *  mode?, uid?, gid?, devmajor?, devminor?}. Nothing is cleaned: hostile names stay as given.
 */
export function ustar(entries) {
  const blocks = [];
  const TYPES = { file: '0', hardlink: '1', symlink: '2', char: '3', block: '4', dir: '5', fifo: '6', pax: 'x' };
  const header = (e, size) => {
    const h = Buffer.alloc(512, 0);
    const put = (off, len, s) => Buffer.from(s, 'utf8').copy(h, off, 0, len);
    const oct = (off, len, n) => put(off, len, n.toString(8).padStart(len - 1, '0') + '\0');
    put(0, 100, e.name);
    oct(100, 8, e.mode ?? (e.type === 'dir' ? 0o755 : e.type === 'symlink' ? 0o777 : 0o644));
    oct(108, 8, e.uid ?? 0);
    oct(116, 8, e.gid ?? 0);
    oct(124, 12, size);
    oct(136, 12, e.mtime ?? MTIME);
    h.fill(0x20, 148, 156); // checksum is computed with its own field as spaces
    put(156, 1, TYPES[e.type]);
    put(157, 100, e.linkname ?? '');
    put(257, 6, 'ustar\0');
    put(263, 2, '00');
    put(265, 32, e.uname ?? '');
    put(297, 32, e.gname ?? '');
    oct(329, 8, e.devmajor ?? 0);
    oct(337, 8, e.devminor ?? 0);
    let sum = 0;
    for (const b of h) sum += b;
    put(148, 8, sum.toString(8).padStart(6, '0') + '\0 ');
    return h;
  };
  const pad = (n) => Buffer.alloc((512 - (n % 512)) % 512, 0);
  for (const e of entries) {
    const content = e.type === 'file' ? Buffer.from(e.content ?? '') : Buffer.alloc(0);
    if (Buffer.byteLength(e.name) > 100 || Buffer.byteLength(e.linkname ?? '') > 100) {
      const recs = [];
      const rec = (k, v) => {
        const body = ` ${k}=${v}\n`;
        let len = Buffer.byteLength(body) + 1;
        while (String(len).length + Buffer.byteLength(body) !== len) len = String(len).length + Buffer.byteLength(body);
        recs.push(`${len}${body}`);
      };
      if (Buffer.byteLength(e.name) > 100) rec('path', e.name);
      if (Buffer.byteLength(e.linkname ?? '') > 100) rec('linkpath', e.linkname);
      const pax = Buffer.from(recs.join(''));
      blocks.push(header({ name: 'PaxHeader', type: 'pax' }, pax.length), pax, pad(pax.length));
    }
    blocks.push(header({ ...e, name: e.name.slice(0, 100), linkname: (e.linkname ?? '').slice(0, 100) }, content.length), content, pad(content.length));
  }
  blocks.push(Buffer.alloc(1024, 0));
  return Buffer.concat(blocks);
}

/** The hostile layers: each must be refused or neutralised by an unpacker, never followed. */
export const HOSTILE = {
  dotdot: {
    description: 'entries whose path climbs out of the rootfs with ../',
    entries: [
      { name: 'ok.txt', type: 'file', content: 'harmless\n' },
      { name: '../escape-dotdot.txt', type: 'file', content: 'escaped with ../\n' },
      { name: 'a/../../escape-dotdot2.txt', type: 'file', content: 'escaped through a/../../\n' },
    ],
  },
  absolute: {
    description: 'entries with absolute paths',
    entries: [
      { name: '/escape-absolute.txt', type: 'file', content: 'absolute path\n' },
      { name: '/tmp/burrow-escape-absolute.txt', type: 'file', content: 'absolute path into /tmp\n' },
    ],
  },
  symlink: {
    description: 'a symlink pointing outside (absolute and relative), then files written through it',
    entries: [
      { name: 'link', type: 'symlink', linkname: '/tmp/burrow-hostile-x' },
      { name: 'link/evil', type: 'file', content: 'written through an absolute symlink\n' },
      { name: 'rel', type: 'symlink', linkname: '../../../../../../tmp' },
      { name: 'rel/burrow-hostile-evil2', type: 'file', content: 'written through a relative symlink\n' },
    ],
  },
  hardlink: {
    description: 'hardlinks to a host file and out of the rootfs',
    entries: [
      { name: 'passwd-link', type: 'hardlink', linkname: '/etc/passwd' },
      { name: 'up-link', type: 'hardlink', linkname: '../../x' },
    ],
  },
  whiteout: {
    description: 'whiteouts naming . and .. (".wh..", ".wh...")',
    entries: [
      { name: 'dir/', type: 'dir' },
      { name: 'dir/.wh...', type: 'file', content: '' },
      { name: '.wh...', type: 'file', content: '' },
      { name: 'dir/.wh..', type: 'file', content: '' },
    ],
  },
  device: {
    description: 'device nodes and a fifo (not creatable without privilege)',
    entries: [
      { name: 'dev/', type: 'dir' },
      { name: 'dev/evil-mem', type: 'char', devmajor: 1, devminor: 1, mode: 0o666 },
      { name: 'dev/evil-sda', type: 'block', devmajor: 8, devminor: 0, mode: 0o666 },
      { name: 'dev/fifo', type: 'fifo', mode: 0o644 },
    ],
  },
};

/** One layout per hostile layer, each tagged `latest`: {name: {layout, tag, description, entries, ...buildImage}}. */
export function buildHostileImages(dir, names = Object.keys(HOSTILE)) {
  const out = {};
  for (const name of names) {
    const h = HOSTILE[name];
    const layout = path.join(dir, `hostile-${name}`);
    initLayout(layout);
    const tar = path.join(layout, `${name}.tar`);
    fs.writeFileSync(tar, ustar(h.entries));
    const img = buildImage(layout, { tag: 'latest', layers: [{ tar, compression: 'gzip', comment: `hostile: ${name}` }], config: { Cmd: ['/bin/sh'] } });
    out[name] = { ...img, name, description: h.description, entries: h.entries };
  }
  return out;
}

// ---- push --------------------------------------------------------------------------------------

/**
 * Pushes an image built here to a registry from startRegistry: `skopeo copy oci:LAYOUT:TAG
 * docker://HOST/NAME:DESTTAG`, with the credentials and CA the registry's mode needs. Async on
 * purpose: the token server runs in this process and must keep answering. Returns the pushed
 * reference string.
 */
export function pushImage(registry, image, name, destTag = image.tag, { skopeo = 'skopeo' } = {}) {
  const dest = `docker://${registry.host}/${name}:${destTag}`;
  const args = ['--insecure-policy', 'copy', '--quiet', '--preserve-digests'];
  if (image.multi) args.push('--all');
  if (registry.mode === 'tls') args.push('--dest-cert-dir', registry.certDir);
  else args.push('--dest-tls-verify=false');
  if (registry.user) args.push('--dest-creds', `${registry.user}:${registry.password}`);
  args.push(`oci:${image.layout}:${image.tag}`, dest);
  const env = { PATH: process.env.PATH, HOME: process.env.HOME ?? os.tmpdir(), TMPDIR: os.tmpdir() };
  if (process.env.XDG_RUNTIME_DIR) env.XDG_RUNTIME_DIR = process.env.XDG_RUNTIME_DIR;
  return new Promise((resolve, reject) => {
    execFile(skopeo, args, { env, encoding: 'utf8', timeout: 120_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`skopeo ${args.join(' ')} failed: ${stderr || err.message}`));
      else resolve(`${registry.host}/${name}:${destTag}`);
    });
  });
}
