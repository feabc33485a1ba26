/**
 * The store's image format (docs/hpc-images.md, "The store's image format"): with
 * `[storage] image_format = "squashfs"` (forced: this machine has no network file system) the
 * store keeps `images/HEX.sqfs` beside each image it pulls or loads, `run IMAGE` starts from it
 * through squashfuse (the bundle's annotations name the file, a squashfuse daemon serves the
 * container, its tree is the layers' tree), `rmi` removes it and `system df` counts it; with the
 * default `auto` on a local disk the store keeps layers, as before. Real registry, real
 * mksquashfs and squashfuse; as root and as the unprivileged test user.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeAllSandboxes, removeContainers, sandbox, tmpdir, TREE_LISTING as TREE, type Sandbox } from './image-helpers';
import { startRegistry, type Registry } from '../harness/registry.mjs';
import { buildMainImage, pushImage } from '../harness/images.mjs';

const work = fs.mkdtempSync(path.join(tmpdir(), 'burrow-store-squash-test-'));
let registry: Registry;
let ref: string;
/** A store whose config file says image_format = "squashfs". */
let sq: Sandbox;
/** A store with the default (auto) on this machine's local disk. */
let auto: Sandbox;
let id: string;

/** Whether a squashfuse daemon serves this container (it lives in the container's pid namespace). */
const SQUASHFUSE = `if cat /proc/[0-9]*/comm 2>/dev/null | grep -q '^squashfuse'; then echo squashfuse; else echo none; fi`;

const sqfsOf = (sb: Sandbox, imageId: string): string => path.join(sb.root, 'images', `${imageId.replace(/^sha256:/, '')}.sqfs`);
const leftovers = (sb: Sandbox): string[] => fs.readdirSync(path.join(sb.root, 'images')).filter((n) => n.startsWith('.'));

/** The annotations of a created container's bundle (what the runtime mounts). */
async function annotations(sb: Sandbox, image: string): Promise<Record<string, string>> {
  const cid = (await sb.ok(['create', image, 'true'])).stdout.trim();
  try {
    const dir = fs.existsSync(path.join(sb.root, 'containers', cid)) ? path.join(sb.root, 'containers', cid) : undefined;
    expect(dir).toBeDefined();
    return (JSON.parse(fs.readFileSync(path.join(dir!, 'bundle', 'config.json'), 'utf8')) as { annotations?: Record<string, string> }).annotations ?? {};
  } finally {
    await sb.ok(['rm', '-f', cid]);
  }
}

beforeAll(async () => {
  const main = buildMainImage(path.join(work, 'main'), { tag: 'v1', bigSize: 256 * 1024 });
  registry = await startRegistry({ mode: 'anonymous' });
  ref = await pushImage(registry, main, 'test/store-squash');
  sq = sandbox(work, 'sq');
  fs.mkdirSync(path.join(sq.home, '.config', 'burrow'), { recursive: true });
  fs.writeFileSync(path.join(sq.home, '.config', 'burrow', 'config.toml'), '[storage]\nimage_format = "squashfs"\n');
  auto = sandbox(work, 'auto');
}, 180_000);

afterAll(async () => {
  for (const sb of [sq, auto]) if (sb) await removeContainers(sb);
  await registry?.stop();
  await removeAllSandboxes();
  fs.rmSync(work, { recursive: true, force: true });
}, 120_000);

describe('image_format = "squashfs"', () => {
  it('a pull leaves the image as a squashfs beside its record, and nothing half-made', async () => {
    await sq.ok(['pull', '-q', ref]);
    id = (await sq.ok(['image', 'inspect', '--format', '{{.Id}}', ref])).stdout.trim();
    const sqfs = sqfsOf(sq, id);
    expect(fs.existsSync(sqfs)).toBe(true);
    expect(fs.readFileSync(sqfs).subarray(0, 4).toString('latin1')).toBe('hsqs');
    expect(leftovers(sq)).toEqual([]);
    // The layers stay: build, export, push and the conversion read them.
    expect(fs.readdirSync(path.join(sq.root, 'layers')).filter((n) => n.endsWith('.json')).length).toBeGreaterThan(0);
  }, 180_000);

  it('`burrow info` says which format is in use and why, also as JSON', async () => {
    const human = (await sq.burrow(['info'])).stdout;
    expect(human).toMatch(/Image format\s+squashfs \(image_format = squashfs\)/);
    const json = JSON.parse((await sq.burrow(['info', '--format', 'json'])).stdout) as { storage: { imageFormat?: { format: string; setting: string; from: string } } };
    expect(json.storage.imageFormat).toMatchObject({ format: 'squashfs', setting: 'squashfs', from: 'config' });
    // The variable beats the file.
    const env = (await sq.burrow(['info'], { env: { BURROW_IMAGE_FORMAT: 'layers' } })).stdout;
    expect(env).toMatch(/Image format\s+layers \(BURROW_IMAGE_FORMAT = layers\)/);
  }, 120_000);

  it('`run IMAGE` starts from that squashfs through squashfuse, with the same tree as from the layers', async () => {
    const ann = await annotations(sq, ref);
    expect(ann['run.burrow.rootfs.squashfuse']).toBe(sqfsOf(sq, id));
    expect(ann['run.burrow.rootfs.squashfuse.offset']).toBe('0');
    expect((await sq.ok(['run', '--rm', ref, 'sh', '-c', SQUASHFUSE])).stdout.trim()).toBe('squashfuse');
    // The same image from layers (BURROW_IMAGE_FORMAT=layers): no squashfuse, the same tree.
    expect((await sq.ok(['run', '--rm', ref, 'sh', '-c', SQUASHFUSE], { env: { BURROW_IMAGE_FORMAT: 'layers' } })).stdout.trim()).toBe('none');
    const fromSquash = (await sq.ok(['run', '--rm', ref, 'sh', '-c', TREE])).stdout;
    const fromLayers = (await sq.ok(['run', '--rm', ref, 'sh', '-c', TREE], { env: { BURROW_IMAGE_FORMAT: 'layers' } })).stdout;
    expect(fromSquash.split('\n').length).toBeGreaterThan(20);
    expect(fromSquash).toBe(fromLayers);
  }, 180_000);

  it('`system df` counts the squashfs with its image', async () => {
    const sizeOf = async (env: Record<string, string> = {}) => {
      const j = JSON.parse((await sq.ok(['system', 'df', '-v', '--format', 'json'], { env })).stdout) as { Images: { ID: string; Size: number }[] };
      return j.Images.find((i) => i.ID === id)!.Size;
    };
    const withIt = await sizeOf();
    const sqfsBytes = fs.statSync(sqfsOf(sq, id)).size;
    const aside = `${sqfsOf(sq, id)}.aside`;
    fs.renameSync(sqfsOf(sq, id), aside);
    try {
      expect(withIt - (await sizeOf())).toBe(sqfsBytes);
    } finally {
      fs.renameSync(aside, sqfsOf(sq, id));
    }
  }, 120_000);

  it('`rmi` removes the squashfs with the image', async () => {
    await sq.ok(['rmi', ref]);
    expect(fs.existsSync(sqfsOf(sq, id))).toBe(false);
    expect(leftovers(sq)).toEqual([]);
  }, 120_000);

  it('a load leaves the loaded image as a squashfs too', async () => {
    await auto.ok(['pull', '-q', ref]);
    const archive = path.join(auto.dir, 'main.tar');
    await auto.ok(['save', '-o', archive, ref]);
    await sq.ok(['load', '-i', archive]);
    expect(fs.existsSync(sqfsOf(sq, id))).toBe(true);
    expect(leftovers(sq)).toEqual([]);
    expect((await sq.ok(['run', '--rm', ref, 'sh', '-c', SQUASHFUSE])).stdout.trim()).toBe('squashfuse');
  }, 180_000);
});

/**
 * A stand-in mksquashfs (first on PATH, where burrow looks for it) that writes the start of a
 * file where it was told to, then fails, or sends its parent, burrow, SIGINT as Ctrl-C would
 * and waits to be stopped.
 */
function fakeMksquashfs(mode: 'fail' | 'interrupt'): Record<string, string> {
  const dir = path.join(work, `fake-${mode}`);
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  // exec: the process burrow kills is the one holding its pipes (a child left would keep them open).
  const then = mode === 'fail' ? 'echo "fake mksquashfs: disk full" >&2; exit 1' : 'kill -INT $PPID; exec sleep 120';
  fs.writeFileSync(path.join(dir, 'mksquashfs'), `#!/bin/sh\nprintf hsqs-partial > "$2"\n${then}\n`, { mode: 0o755 });
  return { PATH: `${dir}:${process.env.PATH}` };
}

describe('a conversion that fails or is interrupted', () => {
  it('`image convert` with a failing mksquashfs ends with its error, leaving no file and no container', async () => {
    // The runtime's export used to wait forever on the pipe mksquashfs no longer read.
    const out = path.join(sq.dir, 'failed.sqfs');
    const r = await sq.burrow(['image', 'convert', '--format', 'squashfs', ref, out], { env: fakeMksquashfs('fail') });
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/mksquashfs failed \(exit 1\): fake mksquashfs: disk full/);
    expect(fs.readdirSync(sq.dir).filter((n) => n.includes('failed.sqfs'))).toEqual([]);
    expect((await sq.ok(['ps', '-aq'])).stdout.trim()).toBe('');
  }, 120_000);

  it('leaves no squashfs and nothing half-written; the image runs from its layers', async () => {
    await sq.ok(['rmi', ref]);
    expect(fs.existsSync(sqfsOf(sq, id))).toBe(false);
    const env = fakeMksquashfs('fail');
    const r = await sq.ok(['pull', '-q', ref], { env: { ...env, BURROW_IMAGE_FORMAT: 'squashfs' } });
    expect(r.stderr).toMatch(/squashfs, but the one of .* could not be made \(mksquashfs failed \(exit 1\): fake mksquashfs: disk full\): it runs from its layers/);
    expect(fs.existsSync(sqfsOf(sq, id))).toBe(false);
    expect(leftovers(sq)).toEqual([]);
    // The transient container of the conversion is gone too.
    expect((await sq.ok(['ps', '-aq'])).stdout.trim()).toBe('');
    const run = await sq.ok(['run', '--rm', ref, 'sh', '-c', SQUASHFUSE], { env });
    expect(run.stdout.trim()).toBe('none');
    expect(run.stderr).toMatch(/could not be made/);
  }, 180_000);

  it('Ctrl-C while converting stops it: interrupted, no file, no container; the next run converts', async () => {
    const r = await sq.burrow(['run', '--rm', ref, 'true'], { env: fakeMksquashfs('interrupt') });
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/making the store's squashfs of .*: interrupted \(SIGINT\)/);
    expect(fs.existsSync(sqfsOf(sq, id))).toBe(false);
    expect(leftovers(sq)).toEqual([]);
    expect((await sq.ok(['ps', '-aq'])).stdout.trim()).toBe('');
    expect((await sq.ok(['run', '--rm', ref, 'sh', '-c', SQUASHFUSE])).stdout.trim()).toBe('squashfuse');
    expect(fs.existsSync(sqfsOf(sq, id))).toBe(true);
  }, 180_000);

  it('a damaged squashfs in the store is named, and the image runs from its layers', async () => {
    const sqfs = sqfsOf(sq, id);
    expect(fs.existsSync(sqfs)).toBe(true);
    const good = fs.readFileSync(sqfs);
    fs.writeFileSync(sqfs, good.subarray(0, 4096)); // truncated
    try {
      const r = await sq.ok(['run', '--rm', ref, 'sh', '-c', SQUASHFUSE]);
      expect(r.stdout.trim()).toBe('none');
      expect(r.stderr).toContain(`${sqfs}: truncated`);
      expect(r.stderr).toContain("running from the image's layers (remove ");
    } finally {
      fs.writeFileSync(sqfs, good);
    }
  }, 120_000);
});

describe('image_format = "auto" (the default) on a local disk', () => {
  it('keeps layers: no squashfs, containers start from the unpacked layers, and `info` says why', async () => {
    if (!fs.existsSync(path.join(auto.root, 'images'))) await auto.ok(['pull', '-q', ref]);
    expect(fs.existsSync(sqfsOf(auto, id))).toBe(false);
    const ann = await annotations(auto, ref);
    expect(ann['run.burrow.rootfs.squashfuse']).toBeUndefined();
    expect((await auto.ok(['run', '--rm', ref, 'sh', '-c', SQUASHFUSE])).stdout.trim()).toBe('none');
    expect((await auto.burrow(['info'])).stdout).toMatch(/Image format\s+layers \(store on [^,]+, a local file system\)/);
  }, 180_000);

  it('an image from before squashfs was asked for is converted on its first run, then starts from it', async () => {
    const env = { BURROW_IMAGE_FORMAT: 'squashfs' };
    expect(fs.existsSync(sqfsOf(auto, id))).toBe(false);
    expect((await auto.ok(['run', '--rm', ref, 'sh', '-c', SQUASHFUSE], { env })).stdout.trim()).toBe('squashfuse');
    expect(fs.existsSync(sqfsOf(auto, id))).toBe(true);
    expect(leftovers(auto)).toEqual([]);
  }, 180_000);
});
