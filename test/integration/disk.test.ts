/**
 * Disk use and cleanup, end to end: `image prune`, `system df`, `export` (and `import` of what
 * it wrote), `system prune` and named volumes, with the real CLI and runtime against images the
 * harness builds and pushes to Debian's docker-registry. Four images share one base layer
 * (busybox, with /www owned by uid 33); each adds a layer of its own. What burrow reports is
 * compared with what the test measures in the store itself. Runs as root and as the
 * unprivileged test user; each test has its own store.
 */
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { humanSize } from '../../ts/cli/format/table';
import { BIN, IS_ROOT } from './helpers';
import { endImageTest, sandbox, startProxy, tmpdir, type Sandbox } from './image-helpers';
import { startRegistry, type Registry } from '../harness/registry.mjs';
import { buildImage, pushImage, tarDirectory, type BuiltImage } from '../harness/images.mjs';
import { makeRootfs } from '../harness/bundle.mjs';


const work = fs.mkdtempSync(path.join(tmpdir(), 'burrow-disk-test-'));
let registry: Registry;
const img: Record<'a' | 'b' | 'c' | 'd', BuiltImage> = {} as Record<'a' | 'b' | 'c' | 'd', BuiltImage>;

beforeAll(async () => {
  // The base layer, tarred once and copied for each image: same bytes, same diff id and blob.
  const base = path.join(work, 'base');
  const rootfs = makeRootfs(base);
  fs.mkdirSync(path.join(rootfs, 'www'));
  fs.writeFileSync(path.join(rootfs, 'www', 'index.html'), '<h1>owned by 33</h1>\n');
  const baseTar = tarDirectory(rootfs, path.join(work, 'base.tar'), { www: [33, 33] });
  for (const [name, size] of [['a', 300_000], ['b', 200_000], ['c', 150_000], ['d', 100_000]] as const) {
    const own = path.join(work, `own-${name}`);
    fs.mkdirSync(path.join(own, name), { recursive: true });
    fs.writeFileSync(path.join(own, name, 'data.bin'), crypto.randomBytes(size));
    fs.writeFileSync(path.join(own, name, 'seed.txt'), `image ${name}\n`);
    const copy = path.join(work, `base-${name}.tar`);
    fs.copyFileSync(baseTar, copy);
    img[name] = buildImage(path.join(work, `layout-${name}`), {
      tag: 'v1',
      layers: [
        { tar: copy, compression: 'gzip', comment: 'busybox base' },
        { tar: tarDirectory(own, path.join(work, `own-${name}.tar`)), compression: 'gzip', comment: `image ${name}` },
      ],
      config: { Cmd: ['/bin/sh'], Labels: { 'test.image': name } },
    });
  }
  registry = await startRegistry({ mode: 'anonymous' });
  await Promise.all(Object.entries(img).map(([name, i]) => pushImage(registry, i, `disk/${name}`)));
}, 120_000);

afterAll(() => endImageTest(work, [registry]));

const ref = (name: string) => `${registry.host}/disk/${name}:v1`;
const hex = (d: string) => d.replace(/^sha256:/, '');
const baseDiff = () => img.a.layers[0]!.diffId;
const ownDiff = (name: keyof typeof img) => img[name].layers[1]!.diffId;

/** What the test counts as a tree's size: bytes of its regular files, hard links once (du's rule). */
function treeBytes(dir: string): number {
  const seen = new Set<string>();
  let total = 0;
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) {
        const st = fs.lstatSync(p);
        if (st.nlink > 1 && seen.has(`${st.ino}`)) continue;
        seen.add(`${st.ino}`);
        total += st.size;
      }
    }
  };
  walk(dir);
  return total;
}

const blobFile = (sb: Sandbox, digest: string) => path.join(sb.root, 'blobs', 'sha256', hex(digest));
const blobSize = (sb: Sandbox, digest: string) => fs.statSync(blobFile(sb, digest)).size;
const layerDir = (sb: Sandbox, diffId: string) => path.join(sb.root, 'layers', hex(diffId));
const hasLayer = (sb: Sandbox, diffId: string) => fs.existsSync(layerDir(sb, diffId)) || fs.existsSync(`${layerDir(sb, diffId)}.json`);
const storedLayerHexes = (sb: Sandbox) => fs.readdirSync(path.join(sb.root, 'layers')).filter((n) => /^[a-f0-9]{64}$/.test(n));
const storedBlobHexes = (sb: Sandbox) => fs.readdirSync(path.join(sb.root, 'blobs', 'sha256')).filter((n) => /^[a-f0-9]{64}$/.test(n));

interface DfRow {
  Type: string;
  TotalCount: string;
  Active: string;
  Size: string;
  Reclaimable: string;
  SizeBytes: number;
  ReclaimableBytes: number;
}
async function df(sb: Sandbox): Promise<Record<string, DfRow>> {
  const r = await sb.ok(['system', 'df', '--format', 'json']);
  return Object.fromEntries(
    r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as DfRow)
      .map((row) => [row.Type, row]),
  );
}

/** `tar -tv --numeric-owner` of an archive: name → {type, owner, size}. */
function tarList(file: string): Map<string, { type: string; owner: string; size: number }> {
  const r = spawnSync('tar', ['-tvf', file, '--numeric-owner'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tar -tvf ${file}: ${r.stderr}`);
  const out = new Map<string, { type: string; owner: string; size: number }>();
  for (const line of r.stdout.split('\n').filter(Boolean)) {
    const m = /^(\S)\S+\s+(\d+\/\d+)\s+(\d+)\s+\S+\s+\S+\s+(.*?)(?: -> .*| link to .*)?$/.exec(line);
    if (!m) throw new Error(`unexpected tar line: ${line}`);
    out.set(m[4]!.replace(/\/$/, ''), { type: m[1]!, owner: m[2]!, size: Number(m[3]) });
  }
  return out;
}

/** `burrow export` with its stdout on a file (a pipe to us would mangle the binary). */
function exportToFile(sb: Sandbox, container: string, file: string): { code: number; stderr: string } {
  const fd = fs.openSync(file, 'w');
  try {
    const r = spawnSync(process.execPath, [BIN, '--root', sb.root, '--runroot', sb.runroot, 'export', container], { stdio: ['ignore', fd, 'pipe'], encoding: 'utf8', env: { ...process.env, HOME: sb.home, XDG_RUNTIME_DIR: sb.env.XDG_RUNTIME_DIR } });
    return { code: r.status ?? -1, stderr: r.stderr };
  } finally {
    fs.closeSync(fd);
  }
}

describe(`disk use and cleanup as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it('image prune removes a dangling image and its own layer, keeps the layer it shared with a tagged image', async () => {
    const sb = sandbox(work, 'prune');
    // Pulled by digest, the image has no tag: dangling, as Docker counts them.
    await sb.ok(['pull', '-q', `${registry.host}/disk/a@${img.a.manifest.digest}`]);
    await sb.ok(['pull', '-q', ref('b')]);
    expect(new Set(storedLayerHexes(sb))).toEqual(new Set([hex(baseDiff()), hex(ownDiff('a')), hex(ownDiff('b'))]));

    // Without -f and without a terminal to ask on: refused, nothing removed.
    const asked = await sb.burrow(['image', 'prune']);
    expect(asked.code).toBe(125);
    expect(asked.stderr).toMatch(/stdin is not a terminal/);
    // Filters: a bad one is refused; until= a date before the images were made keeps them all.
    expect((await sb.burrow(['image', 'prune', '-f', '--filter', 'bogus=1'])).code).toBe(125);
    expect((await sb.ok(['image', 'prune', '-f', '--filter', 'until=2000-01-01T00:00:00Z'])).stdout).toBe('Total reclaimed space: 0B\n');
    expect((await sb.ok(['image', 'prune', '-f', '--filter', 'label=test.image=b'])).stdout).toBe('Total reclaimed space: 0B\n');
    expect(hasLayer(sb, ownDiff('a'))).toBe(true);

    // What should go, measured here: a's own layer as unpacked, and a's blobs nobody shares.
    const expected = treeBytes(layerDir(sb, ownDiff('a'))) + blobSize(sb, img.a.config.digest) + blobSize(sb, img.a.manifest.digest) + blobSize(sb, img.a.layers[1]!.digest);
    const r = await sb.ok(['image', 'prune', '-f']);
    expect(r.stdout).toContain('Deleted Images:\n');
    expect(r.stdout).toContain(`untagged: ${registry.host}/disk/a@${img.a.manifest.digest}\n`);
    expect(r.stdout).toContain(`deleted: ${img.a.config.digest}\n`);
    expect(r.stdout).toContain(`deleted: ${ownDiff('a')}\n`);
    expect(r.stdout).not.toContain(baseDiff());
    expect(r.stdout).not.toContain(img.b.config.digest);
    expect(r.stdout).toMatch(new RegExp(`\\nTotal reclaimed space: ${humanSize(expected).replace('.', '\\.')}\\n$`));

    expect(hasLayer(sb, ownDiff('a'))).toBe(false);
    expect(hasLayer(sb, baseDiff())).toBe(true);
    expect(hasLayer(sb, ownDiff('b'))).toBe(true);
    for (const d of [img.a.config.digest, img.a.manifest.digest, img.a.layers[1]!.digest]) expect(fs.existsSync(blobFile(sb, d))).toBe(false);
    for (const d of [img.b.config.digest, img.b.manifest.digest, img.b.layers[0]!.digest, img.b.layers[1]!.digest]) expect(fs.existsSync(blobFile(sb, d))).toBe(true);
    expect((await sb.ok(['images', '-q', '--no-trunc'])).stdout).toBe(`${img.b.config.digest}\n`);
    // The kept image still runs from the shared layer.
    expect((await sb.ok(['run', '--rm', ref('b'), 'cat', '/www/index.html', '/b/seed.txt'])).stdout).toBe('<h1>owned by 33</h1>\nimage b\n');
    // Nothing left to prune.
    expect((await sb.ok(['image', 'prune', '-f'])).stdout).toBe('Total reclaimed space: 0B\n');
  });

  it('image prune -a keeps images and layers containers use, whatever their state, even with the image removed', async () => {
    const sb = sandbox(work, 'prune-all');
    await sb.ok(['pull', '-q', ref('c')]);
    await sb.ok(['pull', '-q', ref('d')]);
    await sb.ok(['run', '--name', 'stopped', ref('c'), 'true']);
    const r = await sb.ok(['image', 'prune', '-a', '-f']);
    expect(r.stdout).toContain(`untagged: ${ref('d')}\n`);
    expect(r.stdout).toContain(`deleted: ${img.d.config.digest}\n`);
    expect(r.stdout).toContain(`deleted: ${ownDiff('d')}\n`);
    expect(r.stdout).not.toContain(img.c.config.digest);
    expect((await sb.ok(['images', '-q', '--no-trunc'])).stdout).toBe(`${img.c.config.digest}\n`);
    expect(new Set(storedLayerHexes(sb))).toEqual(new Set([hex(baseDiff()), hex(ownDiff('c'))]));

    // The image goes (rmi -f), the container stays: its layers must stay too.
    await sb.ok(['rmi', '-f', ref('c')]);
    await sb.ok(['image', 'prune', '-a', '-f']);
    expect(new Set(storedLayerHexes(sb))).toEqual(new Set([hex(baseDiff()), hex(ownDiff('c'))]));
    expect(fs.existsSync(path.join(layerDir(sb, ownDiff('c')), 'c', 'data.bin'))).toBe(true);
    const again = await sb.burrow(['start', '-a', 'stopped']);
    expect(again.code, again.stderr).toBe(0);

    // Once the container is gone, nothing references its layers. Such orphans are kept while
    // young (a pull may be about to name them: the gap between its steps leaves no mark) and
    // removed once older; their age is set here rather than waited for.
    await sb.ok(['rm', 'stopped']);
    const age = (seconds: number) => {
      const t = new Date(Date.now() - seconds * 1000);
      for (const n of fs.readdirSync(path.join(sb.root, 'layers'))) fs.utimesSync(path.join(sb.root, 'layers', n), t, t);
      for (const n of storedBlobHexes(sb)) fs.utimesSync(path.join(sb.root, 'blobs', 'sha256', n), t, t);
    };
    age(0);
    const young = await sb.ok(['image', 'prune', '-a', '-f']);
    expect(young.stdout).toBe('Total reclaimed space: 0B\n');
    expect(young.stderr).toMatch(/unreferenced layer\(s\) or blob\(s\) kept: they were written in the last few seconds/);
    expect(new Set(storedLayerHexes(sb))).toEqual(new Set([hex(baseDiff()), hex(ownDiff('c'))]));
    age(3600);
    const last = await sb.ok(['image', 'prune', '-a', '-f']);
    expect(last.stdout).toContain(`deleted: ${baseDiff()}\n`);
    expect(storedLayerHexes(sb)).toEqual([]);
    expect(fs.readdirSync(path.join(sb.root, 'layers'))).toEqual([]);
    expect(storedBlobHexes(sb)).toEqual([]);
  });

  it('system df counts shared content once and matches what is on disk', async () => {
    const sb = sandbox(work, 'df');
    await sb.ok(['pull', '-q', ref('a')]);
    await sb.ok(['pull', '-q', ref('b')]);
    const layersBytes = storedLayerHexes(sb).reduce((s, h) => s + treeBytes(path.join(sb.root, 'layers', h)), 0);
    const blobsBytes = storedBlobHexes(sb).reduce((s, h) => s + fs.statSync(path.join(sb.root, 'blobs', 'sha256', h)).size, 0);
    expect(storedLayerHexes(sb)).toHaveLength(3); // the base layer is there once
    let u = await df(sb);
    expect(u.Images).toMatchObject({ TotalCount: '2', Active: '0', SizeBytes: layersBytes + blobsBytes, ReclaimableBytes: layersBytes + blobsBytes, Size: humanSize(layersBytes + blobsBytes) });
    expect(u['Build Cache']).toMatchObject({ TotalCount: '0', SizeBytes: 0 });

    // Per image: each carries the shared base (layer and blob), counted in both but once in all.
    const v = JSON.parse((await sb.ok(['system', 'df', '-v', '--format', 'json'])).stdout) as { Images: { ID: string; Size: number; SharedSize: number; UniqueSize: number }[] };
    const shared = treeBytes(layerDir(sb, baseDiff())) + blobSize(sb, img.a.layers[0]!.digest);
    for (const i of v.Images) expect(i).toMatchObject({ SharedSize: shared, UniqueSize: i.Size - shared, Containers: 0 });
    expect(v.Images.map((i) => i.ID).sort()).toEqual([img.a.config.digest, img.b.config.digest].sort());
    expect(v.Images.reduce((s, i) => s + i.Size, 0) - shared).toBe(layersBytes + blobsBytes);

    // Containers: one running, one stopped that wrote 12345 bytes; a volume holding 1000 bytes.
    await sb.ok(['run', '--name', 'wrote', ref('a'), 'sh', '-c', 'head -c 12345 /dev/zero > /w.bin']);
    await sb.ok(['run', '-d', '--name', 'running', ref('b'), 'sleep', '60']);
    await sb.ok(['run', '--rm', '-v', 'vol1:/data', ref('a'), 'sh', '-c', 'head -c 1000 /dev/zero > /data/f']);
    try {
      const ids = (await sb.ok(['ps', '-aq', '--no-trunc'])).stdout.trim().split('\n');
      const upper = Object.fromEntries(ids.map((id) => [id, treeBytes(path.join(sb.root, 'containers', id, 'upper'))]));
      const stoppedId = (await sb.ok(['ps', '-aq', '--no-trunc', '--filter', 'name=wrote'])).stdout.trim();
      expect(upper[stoppedId]).toBeGreaterThanOrEqual(12345);
      u = await df(sb);
      expect(u.Containers).toMatchObject({ TotalCount: '2', Active: '1', SizeBytes: upper[ids[0]!]! + upper[ids[1]!]!, ReclaimableBytes: upper[stoppedId] });
      // Both images are now used by a container: nothing of theirs is reclaimable.
      expect(u.Images).toMatchObject({ TotalCount: '2', Active: '2', SizeBytes: layersBytes + blobsBytes, ReclaimableBytes: 0, Reclaimable: '0B (0%)' });
      expect(u['Local Volumes']).toMatchObject({ TotalCount: '1', Active: '0', SizeBytes: 1000, ReclaimableBytes: 1000 });
      const text = (await sb.ok(['system', 'df'])).stdout.split('\n');
      expect(text[0]).toMatch(/^TYPE\s+TOTAL\s+ACTIVE\s+SIZE\s+RECLAIMABLE$/);
      expect(text[1]).toMatch(new RegExp(`^Images\\s+2\\s+2\\s+${humanSize(layersBytes + blobsBytes).replace('.', '\\.')}\\s+0B \\(0%\\)$`));
      expect(text[3]).toMatch(new RegExp(`^Local Volumes\\s+1\\s+0\\s+${humanSize(1000).replace('.', '\\.')}\\s+${humanSize(1000).replace('.', '\\.')} \\(100%\\)$`));
      expect((await sb.ok(['system', 'df', '--format', '{{.Type}}={{.TotalCount}}'])).stdout).toBe('Images=2\nContainers=2\nLocal Volumes=1\nBuild Cache=0\n');
      const verbose = (await sb.ok(['system', 'df', '-v'])).stdout;
      expect(verbose).toMatch(/^Images space usage:\n\nREPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE\s+SHARED SIZE\s+UNIQUE SIZE\s+CONTAINERS\n/);
      expect(verbose).toMatch(new RegExp(`\\n${stoppedId.slice(0, 12)}\\s+\\S+\\s+".*"\\s+0\\s+${humanSize(upper[stoppedId]!).replace('.', '\\.')}\\s+.+ ago\\s+exited\\s+wrote\\n`));
      expect(verbose).toMatch(new RegExp(`\\nvol1\\s+0\\s+${humanSize(1000).replace('.', '\\.')}\\n`));
    } finally {
      await sb.burrow(['rm', '-f', 'running', 'wrote']);
    }
  });

  it("export writes the container's merged filesystem with its own owners; import of it round-trips", async () => {
    const sb = sandbox(work, 'export');
    await sb.ok(['pull', '-q', ref('a')]);
    // A path longer than ustar's 100 bytes goes in a pax header.
    const deep = `deep/${'d'.repeat(60)}/${'e'.repeat(60)}/file.txt`;
    await sb.ok(['run', '--name', 'ex', ref('a'), 'sh', '-c', `echo hello-export > /new.txt && rm /a/seed.txt && mkdir -p /${path.dirname(deep)} && echo deep > /${deep}`]);
    const out = path.join(sb.dir, 'ex.tar');
    await sb.ok(['export', '-o', out, 'ex']);
    const list = tarList(out);
    expect(list.get('new.txt')).toMatchObject({ type: '-', owner: '0/0', size: 13 });
    expect(list.has('a/seed.txt')).toBe(false);
    expect(list.get(deep)).toMatchObject({ type: '-', owner: '0/0', size: 5 });
    expect(list.get('a/data.bin')).toMatchObject({ type: '-', owner: '0/0', size: 300_000 });
    // Owners as the container sees them (rootless: not the user's uid, not a subordinate id).
    expect(list.get('bin/busybox')).toMatchObject({ type: '-', owner: '0/0' });
    expect(list.get('www/index.html')).toMatchObject({ owner: '33/33' });
    expect(list.get('bin/sh')).toMatchObject({ type: 'l', owner: '0/0' });
    // Mount points are there, bare; nothing mounted on them is.
    for (const d of ['proc', 'sys', 'dev']) expect(list.get(d)).toMatchObject({ type: 'd' });
    expect([...list.keys()].filter((n) => /^(proc|sys|dev)\//.test(n))).toEqual([]);
    expect([...list.keys()].some((n) => n.startsWith('./') || n.startsWith('/'))).toBe(false);

    // To stdout when it is not a terminal: the same entries.
    const viaStdout = path.join(sb.dir, 'ex-stdout.tar');
    const s = exportToFile(sb, 'ex', viaStdout);
    expect(s.code, s.stderr).toBe(0);
    expect([...tarList(viaStdout).keys()]).toEqual([...list.keys()]);
    // To a terminal: refused, as Docker does.
    const tty = spawnSync('script', ['-qec', `${process.execPath} ${BIN} --root ${sb.root} --runroot ${sb.runroot} export ex`, '/dev/null'], { encoding: 'utf8', env: { ...process.env, HOME: sb.home } });
    expect(tty.status).toBe(125);
    expect(tty.stdout).toMatch(/refusing to write a tar archive to a terminal/);

    // Round trip: the archive imported is an image with the container's changes.
    await sb.ok(['import', out, 'exported:v1']);
    expect((await sb.ok(['run', '--rm', 'exported:v1', 'cat', '/new.txt', `/${deep}`])).stdout).toBe('hello-export\ndeep\n');
    expect((await sb.ok(['run', '--rm', 'exported:v1', 'stat', '-c', '%u:%g', '/www/index.html', '/bin/busybox'])).stdout).toBe('33:33\n0:0\n');
    expect((await sb.burrow(['run', '--rm', 'exported:v1', 'cat', '/a/seed.txt'])).code).not.toBe(0);

    // A running container is exported through its own namespaces, and keeps running.
    await sb.ok(['run', '-d', '--name', 'live', ref('a'), 'sleep', '60']);
    try {
      await sb.ok(['exec', 'live', 'sh', '-c', 'echo live > /live.txt']);
      const live = path.join(sb.dir, 'live.tar');
      const r = exportToFile(sb, 'live', live);
      expect(r.code, r.stderr).toBe(0);
      expect(tarList(live).get('live.txt')).toMatchObject({ owner: '0/0', size: 5 });
      expect((await sb.ok(['inspect', '-f', '{{.State.Status}}', 'live'])).stdout).toBe('running\n');
    } finally {
      await sb.burrow(['rm', '-f', 'live']);
    }
    expect((await sb.burrow(['export', 'no-such-container'])).code).toBe(125);
  });

  it('system prune removes stopped containers and dangling images, keeps running ones; --volumes the unused volumes', async () => {
    const sb = sandbox(work, 'system-prune');
    await sb.ok(['pull', '-q', `${registry.host}/disk/a@${img.a.manifest.digest}`]);
    await sb.ok(['pull', '-q', ref('b')]);
    const running = (await sb.ok(['run', '-d', '--name', 'running', '-v', 'used:/data', ref('b'), 'sleep', '60'])).stdout.trim();
    try {
      const stopped = (await sb.ok(['create', '--name', 'stopped', ref('b'), 'true'])).stdout.trim();
      await sb.ok(['start', '-a', 'stopped']);
      await sb.ok(['volume', 'create', 'unused']);
      expect((await sb.burrow(['system', 'prune'])).code).toBe(125);

      const r = await sb.ok(['system', 'prune', '-f']);
      expect(r.stdout).toContain(`Deleted Containers:\n${stopped}\n\n`);
      expect(r.stdout).not.toContain(running);
      expect(r.stdout).toContain(`deleted: ${img.a.config.digest}\n`);
      expect(r.stdout).toContain(`deleted: ${ownDiff('a')}\n`);
      expect(r.stdout).toMatch(/\nTotal reclaimed space: \S+\n$/);
      expect((await sb.ok(['ps', '-aq', '--no-trunc'])).stdout).toBe(`${running}\n`);
      expect((await sb.ok(['inspect', '-f', '{{.State.Status}}', 'running'])).stdout).toBe('running\n');
      expect((await sb.ok(['images', '-q', '--no-trunc'])).stdout).toBe(`${img.b.config.digest}\n`);
      expect((await sb.ok(['volume', 'ls', '-q'])).stdout).toBe('unused\nused\n');

      // Volumes: in use ones are refused by rm and kept by prune.
      const rmUsed = await sb.burrow(['volume', 'rm', 'used']);
      expect(rmUsed.code).toBe(125);
      expect(rmUsed.stderr).toMatch(/volume is in use/);
      const v = await sb.ok(['system', 'prune', '-f', '--volumes']);
      expect(v.stdout).toContain('Deleted Volumes:\nunused\n\n');
      expect((await sb.ok(['volume', 'ls', '-q'])).stdout).toBe('used\n');
      expect(fs.existsSync(path.join(sb.root, 'volumes', 'unused'))).toBe(false);
      const inspected = JSON.parse((await sb.ok(['volume', 'inspect', 'used'])).stdout) as { Name: string; Mountpoint: string }[];
      expect(inspected).toMatchObject([{ Name: 'used', Mountpoint: path.join(sb.root, 'volumes', 'used', '_data') }]);
    } finally {
      await sb.burrow(['rm', '-f', 'running']);
    }
    // Once its container is gone the volume can go, with the files the container's root wrote.
    await sb.ok(['run', '--rm', '-v', 'used:/data', ref('b'), 'sh', '-c', 'mkdir /data/d && echo x > /data/d/f && chown -R 33:33 /data/d && chmod 700 /data/d']);
    expect((await sb.ok(['volume', 'rm', 'used'])).stdout).toBe('used\n');
    expect((await sb.ok(['volume', 'ls', '-q'])).stdout).toBe('');
    expect(fs.readdirSync(path.join(sb.root, 'tmp')).filter((n) => n.startsWith('prune-'))).toEqual([]);
  });

  it('rmi of the last image that uses a layer removes the layer and its blobs; images and system df show the same sizes', async () => {
    const sb = sandbox(work, 'rmi');
    await sb.ok(['pull', '-q', ref('a')]);
    await sb.ok(['pull', '-q', ref('b')]);
    // `images` and `system df -v` give each image the same size.
    const shown = Object.fromEntries(
      (await sb.ok(['images', '--format', '{{.ID}} {{.Size}}'])).stdout
        .trim()
        .split('\n')
        .map((l) => l.split(' ') as [string, string]),
    );
    const v = JSON.parse((await sb.ok(['system', 'df', '-v', '--format', 'json'])).stdout) as { Images: { ID: string; Size: number }[] };
    expect(v.Images).toHaveLength(2);
    for (const i of v.Images) expect(shown[hex(i.ID).slice(0, 12)]).toBe(humanSize(i.Size));

    const storeBytes = () => treeBytes(path.join(sb.root, 'layers')) + treeBytes(path.join(sb.root, 'blobs'));
    const before = storeBytes();
    const aOwn = treeBytes(layerDir(sb, ownDiff('a'))) + fs.statSync(`${layerDir(sb, ownDiff('a'))}.json`).size + blobSize(sb, img.a.config.digest) + blobSize(sb, img.a.manifest.digest) + blobSize(sb, img.a.layers[1]!.digest);
    const r = await sb.ok(['rmi', ref('a')]);
    expect(r.stderr).toBe('');
    // a's own layer and blobs are gone; the base layer b shares stays, and b still runs.
    expect(hasLayer(sb, ownDiff('a'))).toBe(false);
    for (const d of [img.a.config.digest, img.a.manifest.digest, img.a.layers[1]!.digest]) expect(fs.existsSync(blobFile(sb, d))).toBe(false);
    expect(hasLayer(sb, baseDiff())).toBe(true);
    for (const d of [img.b.config.digest, img.b.manifest.digest, img.b.layers[0]!.digest, img.b.layers[1]!.digest]) expect(fs.existsSync(blobFile(sb, d))).toBe(true);
    expect(storeBytes()).toBe(before - aOwn);
    expect((await sb.ok(['run', '--rm', ref('b'), 'cat', '/www/index.html'])).stdout).toBe('<h1>owned by 33</h1>\n');

    await sb.ok(['rmi', ref('b')]);
    expect(fs.readdirSync(path.join(sb.root, 'layers'))).toEqual([]);
    expect(fs.readdirSync(path.join(sb.root, 'blobs', 'sha256'))).toEqual([]);
    expect(storeBytes()).toBe(0);
    expect((await df(sb)).Images).toMatchObject({ TotalCount: '0', SizeBytes: 0 });
    expect(fs.readdirSync(path.join(sb.root, 'tmp'))).toEqual([]);
  });

  it('a pull stopped with Ctrl-C says what it kept; image prune frees it, never what a running pull owns', async () => {
    const sb = sandbox(work, 'interrupted');
    const proxy = await startProxy(registry.host, { rate: 20_000 });
    const blobs = path.join(sb.root, 'blobs', 'sha256');
    const partialSizes = (): Map<string, number> => {
      const out = new Map<string, number>();
      for (const n of fs.existsSync(blobs) ? fs.readdirSync(blobs) : []) {
        const size = n.endsWith('.partial') ? fs.statSync(path.join(blobs, n), { throwIfNoEntry: false })?.size : undefined;
        if (size !== undefined) out.set(n, size);
      }
      return out;
    };
    const partials = () => [...partialSizes().keys()];
    /**
     * Starts a slow pull of `name`; resolves with its pid once layer bytes flow (64 kB through
     * the proxy since it started: more than its manifest and config) into a `.partial` of it, and
     * its end. Not by a `.partial` growing on disk: a download writes a MiB at a time, so a small
     * layer's file grows only at its end, just before it is renamed into place.
     */
    const slowPull = async (name: string) => {
      const bytesBefore = proxy.bytesDown;
      let pid = 0;
      const running = sb.burrow(['pull', `${proxy.host}/disk/${name}:v1`], { onSpawn: (p) => (pid = p) });
      await new Promise<void>((resolve, reject) => {
        const t = setInterval(() => {
          if (pid && proxy.bytesDown - bytesBefore >= 64_000 && partials().length > 0) {
            clearInterval(t);
            resolve();
          }
        }, 20);
        running.then((r) => {
          clearInterval(t);
          reject(new Error(`the pull ended before it was interrupted: ${r.stderr}`));
        }, reject);
      });
      return { pid, running };
    };

    const first = await slowPull('a');
    process.kill(first.pid, 'SIGINT');
    const r = await first.running;
    expect(r.code).toBe(125);
    const kept = partials();
    expect(kept.length).toBeGreaterThan(0);
    const keptBytes = [...partialSizes().values()].reduce((n, size) => n + size, 0);
    expect(r.stderr).toContain(`interrupted: kept ${humanSize(keptBytes)} of partial downloads (${kept.length} file${kept.length === 1 ? '' : 's'} *.partial in ${blobs}); the next pull resumes them`);
    expect(r.stderr).toContain('burrow image prune');
    expect(r.stderr).not.toMatch(/\n\s+at /);
    // While another pull runs, its downloads (and all others: it may resume any) are left alone.
    const second = await slowPull('b');
    const owned = partials();
    const live = await sb.ok(['image', 'prune', '-f']);
    expect(live.stdout).not.toContain('partial download');
    // Each is still there, or the pull has finished it into its blob meanwhile.
    for (const f of owned) expect(partials().includes(f) || fs.existsSync(path.join(blobs, f.replace(/\.partial$/, ''))), f).toBe(true);
    process.kill(second.pid, 'SIGINT');
    const r2 = await second.running;
    expect(r2.code).toBe(125);

    // A temporary tree a killed process left (named by its pid, now gone; a pull would remove it).
    const stale = path.join(sb.root, 'tmp', 'layer-2147483646-abcdef-x1');
    fs.mkdirSync(path.join(stale, 'diff'), { recursive: true });
    fs.writeFileSync(path.join(stale, 'diff', 'half'), crypto.randomBytes(50_000));

    // Now nobody pulls: everything abandoned goes, and prune says how much (the layers the
    // interrupted pulls completed are orphans that go too, and count in the total).
    const onDisk = [...partialSizes().values()].reduce((n, size) => n + size, 0) + treeBytes(path.join(sb.root, 'tmp'));
    expect(onDisk).toBeGreaterThan(50_000);
    const p = await sb.ok(['image', 'prune', '-f']);
    // First in the output when the interrupted pulls completed no layer (nothing else to prune).
    expect(p.stdout).toMatch(new RegExp(`(?:^|\\n)Abandoned work removed: [1-9]\\d* partial download\\(s\\), 1 temporary tree\\(s\\) or file\\(s\\): ${humanSize(onDisk).replace('.', '\\.')}\\n`));
    expect(p.stdout).toMatch(/\nTotal reclaimed space: [1-9][\d.]*[kMG]?B\n$/);
    expect(partials()).toEqual([]);
    expect(fs.readdirSync(path.join(sb.root, 'tmp'))).toEqual([]);
  }, 180_000);
});
