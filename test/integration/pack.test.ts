/**
 * The layer packer (ts/storage/pack.ts over `burrow-runtime unpack`'s pack jobs, image/pack.rs),
 * which `burrow build` makes its layers with. A container of the harness's main image, run with
 * the kernel overlay and with fuse-overlayfs, creates, changes, chowns and deletes files and
 * replaces a directory (an opaque one); its upper directory is packed as it is, the blob becomes
 * the top layer of a new image (pushed to the test registry, pulled back), and a container of
 * that image must see exactly what the first one saw: both are compared through `burrow export`
 * (names, types, modes, owners, sizes, contents, link targets, xattrs, file mtimes). A layer of
 * COPY-like entries is packed and run the same way; a build context with a symlink out of it is
 * refused; the copy driver, which has no upper directory, is refused with the reason.
 * Runs as root and as the unprivileged test user.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IS_ROOT } from './helpers';
import { endImageTest, removeContainers, sandbox, tmpdir, type Sandbox } from './image-helpers';
import { BurrowError } from '../../ts/errors';
import { packEntries, packUpper, upperDirOf, type PackEntry, type PackResult } from '../../ts/storage/pack';
import { rootfsOf } from '../../ts/storage/rootfs';
import type { ContainerRecord } from '../../ts/container/records';
import type { Driver } from '../../ts/storage/store';
import { startRegistry, type Registry } from '../harness/registry.mjs';
import { addBlob, buildMainImage, MT, pushImage, type MainImage } from '../harness/images.mjs';

const work = fs.mkdtempSync(path.join(tmpdir(), 'burrow-pack-test-'));
let registry: Registry;
let main: MainImage;
let ref: string;
let sb: Sandbox;

/** Changes of every kind a RUN step makes. */
const CHANGES = [
  'echo new > /new.txt',
  'ln /new.txt /new-link',
  'ln -s /new.txt /new-sym',
  'echo changed >> /etc/motd',
  'mkdir -p /made/deep && echo deep > /made/deep/f && chmod 0751 /made/deep',
  'chown 1000:1000 /new.txt /made /made/deep/f',
  'rm /data/target.txt /var/www/index.html',
  'rm -r /home/user',
  // A directory replaced by a new one of the same name: opaque in the upper directory.
  'rm -r /opaque && mkdir /opaque && echo fresh > /opaque/only.txt',
  'mkfifo /made/fifo',
  // Several MiB: the blob is then several gzip members (compressed in parallel).
  'dd if=/dev/urandom of=/made/random.bin bs=1048576 count=3 2>/dev/null',
].join(' && ');

/** gzip members in a blob: headers as the packer writes them (no name, mtime 0). */
function members(blob: string): number {
  const b = fs.readFileSync(blob);
  const head = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
  let n = 0;
  for (let i = b.indexOf(head); i >= 0; i = b.indexOf(head, i + 1)) n++;
  return n;
}

/**
 * Every entry of a tar (an export): name, type, mode, owner, size, link target, xattrs, and for
 * regular files their mtime and content hash. Directory mtimes are left out: a directory's
 * changes when the runtime makes mount points in it.
 */
function listing(tarFile: string): string[] {
  const py = [
    'import hashlib, sys, tarfile',
    't = tarfile.open(sys.argv[1])',
    'for m in t.getmembers():',
    '    h = hashlib.sha256(t.extractfile(m).read()).hexdigest()[:16] if m.isfile() else ""',
    '    x = sorted((k, v) for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr."))',
    '    print(m.name.rstrip("/"), m.type.decode(), oct(m.mode), m.uid, m.gid, m.size, m.linkname, m.mtime if m.isfile() else "", h, x)',
  ].join('\n');
  return execFileSync('python3', ['-c', py, tarFile], { encoding: 'utf8', maxBuffer: 64 << 20 }).split('\n').filter(Boolean).sort();
}

/** Names in a layer blob (gzip or not). */
function layerNames(blob: string): string[] {
  return execFileSync('tar', ['-tf', blob], { encoding: 'utf8' }).split('\n').filter(Boolean);
}

/** A container's record.json, as the engine wrote it. */
function record(id: string): ContainerRecord {
  return JSON.parse(fs.readFileSync(path.join(sb.root, 'containers', id, 'record.json'), 'utf8'));
}

async function idOf(name: string): Promise<string> {
  return (await sb.ok(['inspect', '-f', '{{.Id}}', name])).stdout.trim();
}

async function upperOf(name: string): Promise<string> {
  const id = await idOf(name);
  return upperDirOf(rootfsOf(record(id), path.join(sb.root, 'containers', id)));
}

let tagN = 0;
/** The main image with `layer` on top, pushed to the registry; returns its reference. */
async function imageWith(layer: PackResult, file: string): Promise<string> {
  const blob = addBlob(main.layout, file);
  expect(blob.digest).toBe(layer.digest);
  expect(blob.size).toBe(layer.size);
  const cfg = {
    ...main.configJson,
    rootfs: { type: 'layers', diff_ids: [...main.configJson.rootfs.diff_ids, layer.diffId] },
    history: [...main.configJson.history, { created: new Date(0).toISOString(), created_by: 'pack test' }],
  };
  const config = { mediaType: MT.ociConfig, ...addBlob(main.layout, Buffer.from(JSON.stringify(cfg))) };
  const manifest = {
    schemaVersion: 2,
    mediaType: MT.ociManifest,
    config,
    layers: [...main.layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })), { mediaType: layer.mediaType, digest: layer.digest, size: layer.size }],
  };
  const tag = `packed${++tagN}`;
  const desc = { mediaType: MT.ociManifest, ...addBlob(main.layout, Buffer.from(JSON.stringify(manifest))) };
  const indexFile = path.join(main.layout, 'index.json');
  const index = JSON.parse(fs.readFileSync(indexFile, 'utf8'));
  index.manifests.push({ ...desc, annotations: { 'org.opencontainers.image.ref.name': tag } });
  fs.writeFileSync(indexFile, JSON.stringify(index));
  const pushed = await pushImage(registry, { layout: main.layout, tag }, 'test/packed');
  await sb.ok(['pull', '-q', pushed]);
  return pushed;
}

beforeAll(async () => {
  main = buildMainImage(path.join(work, 'main'), { tag: 'v1', bigSize: 256 * 1024 });
  registry = await startRegistry({ mode: 'anonymous' });
  ref = await pushImage(registry, main, 'test/pack-base');
  sb = sandbox(work, 'store');
  await sb.ok(['pull', '-q', ref]);
}, 120_000);

afterAll(async () => {
  if (sb) await removeContainers(sb);
  await endImageTest(work, [registry]);
});

describe(`layer packer as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  for (const driver of ['overlay', 'fuse-overlayfs'] as Driver[]) {
    it(`packs a ${driver} container's upper directory into a layer that reproduces its filesystem`, async () => {
      const src = `src-${driver}`;
      await sb.ok(['--storage-driver', driver, 'run', '--name', src, ref, 'sh', '-c', CHANGES]);
      const out = path.join(work, `upper-${driver}.tar.gz`);
      const layer = await packUpper(sb.settings(), await upperOf(src), out);
      expect(layer.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+gzip');
      const names = layerNames(out);
      // The deletions as OCI whiteouts, the replaced directory as an opaque one.
      for (const n of ['data/.wh.target.txt', 'var/www/.wh.index.html', 'home/.wh.user', 'opaque/.wh..wh..opq', 'opaque/only.txt', 'new.txt', 'made/deep/f']) expect(names).toContain(n);
      // Only what changed: nothing of the image's tree that the container left alone.
      for (const n of ['bin/busybox', 'big/random.bin', 'zstd/hello.txt']) expect(names).not.toContain(n);
      expect(layer.entries).toBe(names.length);
      // Read back as one stream by burrow's pull and by tar (gzip) alike.
      expect(members(out)).toBeGreaterThanOrEqual(3);
      // Packing the same tree again gives the same blob.
      const again = await packUpper(sb.settings(), await upperOf(src), path.join(work, `again-${driver}.tar.gz`));
      expect(again).toEqual(layer);

      const packed = await imageWith(layer, out);
      const dst = `dst-${driver}`;
      await sb.ok(['--storage-driver', driver, 'create', '--name', dst, packed, 'true']);
      const [a, b] = [path.join(work, `${src}.tar`), path.join(work, `${dst}.tar`)];
      await sb.ok(['export', '-o', a, src]);
      await sb.ok(['export', '-o', b, dst]);
      const want = listing(a);
      // new-link sorts first: it carries the data, new.txt links to it.
      expect(want.find((l) => l.startsWith('new-link '))).toMatch(/^new-link 0 0o644 1000 1000 4 /);
      expect(want.find((l) => l.startsWith('new.txt '))).toMatch(/^new.txt 1 0o644 1000 1000 0 new-link /);
      expect(want.some((l) => l.startsWith('home/user'))).toBe(false);
      expect(listing(b)).toEqual(want);
      await sb.ok(['rm', src, dst]);
    }, 120_000);
  }

  it('packs COPY entries (a context directory with --chown, a file with --chmod, a heredoc) that a container of the image sees', async () => {
    const ctx = path.join(work, 'ctx');
    fs.mkdirSync(path.join(ctx, 'app', 'sub'), { recursive: true });
    fs.writeFileSync(path.join(ctx, 'app', 'main.sh'), 'echo from the context\n');
    fs.writeFileSync(path.join(ctx, 'app', 'sub', 'data'), 'data\n');
    fs.writeFileSync(path.join(ctx, 'app', 'ignored'), 'not copied\n');
    fs.writeFileSync(path.join(ctx, 'tool'), '#!/bin/sh\necho tool\n');
    const entries: PackEntry[] = [
      { source: { path: path.join(ctx, 'app'), root: ctx }, dest: '/srv/app', uid: 1000, gid: 1000, exclude: ['ignored'] },
      { source: { path: path.join(ctx, 'tool'), root: ctx }, dest: '/usr/local/bin/', mode: 0o755 },
      { source: { content: Buffer.from('from a heredoc\n').toString('base64') }, dest: '/etc/heredoc' },
      // COPY --from: a path of the image's own layers, whiteouts applied (opaque/ has new.txt only).
      { source: { layers: main.configJson.rootfs.diff_ids.map((d: string) => path.join(sb.root, 'layers', d.slice(7))), path: '/opaque' }, dest: '/from-image' },
    ];
    const out = path.join(work, 'entries.tar.gz');
    const layer = await packEntries(sb.settings(), entries, out);
    expect(layerNames(out)).toEqual([
      'etc/',
      'etc/heredoc',
      'from-image/',
      'from-image/new.txt',
      'srv/',
      'srv/app/',
      'srv/app/main.sh',
      'srv/app/sub/',
      'srv/app/sub/data',
      'usr/',
      'usr/local/',
      'usr/local/bin/',
      'usr/local/bin/tool',
    ]);
    const packed = await imageWith(layer, out);
    const r = await sb.ok(['run', '--rm', packed, 'sh', '-c', 'stat -c "%u:%g %a %n" /srv/app /srv/app/sub/data /usr/local/bin/tool; tool; cat /etc/heredoc /from-image/new.txt']);
    expect(r.stdout).toBe('1000:1000 755 /srv/app\n1000:1000 644 /srv/app/sub/data\n0:0 755 /usr/local/bin/tool\ntool\nfrom a heredoc\nthe only file in opaque/ now\n');
  }, 120_000);

  it('refuses a build context whose source is a symlink leading out of it (ELAYER_UNSAFE), and writes no file', async () => {
    const ctx = path.join(work, 'hostile');
    fs.mkdirSync(ctx, { recursive: true });
    fs.writeFileSync(path.join(work, 'secret'), 'outside the context\n');
    fs.symlinkSync('../secret', path.join(ctx, 'up'));
    fs.symlinkSync('/etc/passwd', path.join(ctx, 'abs'));
    const out = path.join(work, 'hostile.tar.gz');
    for (const src of ['up', 'abs']) {
      const err = await packEntries(sb.settings(), [{ source: { path: path.join(ctx, src), root: ctx }, dest: '/x' }], out).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BurrowError);
      expect((err as BurrowError).code).toBe('ELAYER_UNSAFE');
      expect((err as BurrowError).message).toContain(ctx);
      expect(fs.existsSync(out)).toBe(false);
    }
  });

  it("refuses the copy driver's container, which has no upper directory, naming the driver", async () => {
    await sb.ok(['--storage-driver', 'copy', 'run', '--name', 'src-copy', ref, 'sh', '-c', 'echo x > /x']);
    const id = await idOf('src-copy');
    const rootfs = rootfsOf(record(id), path.join(sb.root, 'containers', id));
    expect(() => upperDirOf(rootfs)).toThrow(/copy driver/);
    const err = await packUpper(sb.settings(), path.join(rootfs.dir, 'rootfs'), path.join(work, 'copy.tar.gz')).catch((e: unknown) => e);
    expect((err as BurrowError).code).toBe('EPACK');
    expect((err as BurrowError).message).toMatch(/copy driver.*no overlay upper directory/);
    await sb.ok(['rm', 'src-copy']);
  }, 60_000);
});
