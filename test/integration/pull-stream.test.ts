/**
 * `burrow pull` unpacks each layer while it downloads (ts/storage/unpack.ts, FollowingUnpack):
 * the runtime reads the growing blob file as far as the download announces. These tests break
 * the download under it — a connection cut half-way (resumed with Range: the stream goes on), and
 * a registry that then ignores Range (the file starts over: the stream is abandoned and the layer
 * unpacked from the complete blob) — and check that the image comes out exactly as an
 * undisturbed pull makes it, with nothing left behind. Real CLI, real registry, as root and as
 * the unprivileged test user.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkBlobs, endImageTest, layerRecords, sandbox, sha256FileSync, startProxy, tmpdir } from './image-helpers';
import { startRegistry, type Registry } from '../harness/registry.mjs';
import { buildMainImage, pushImage, type MainImage } from '../harness/images.mjs';


const MiB = 1024 * 1024;
const work = fs.mkdtempSync(path.join(tmpdir(), 'burrow-pull-stream-test-'));
let registry: Registry;
let main: MainImage;

beforeAll(async () => {
  main = buildMainImage(path.join(work, 'main'), { tag: 'v1', bigSize: 32 * MiB });
  registry = await startRegistry({ mode: 'anonymous' });
  await pushImage(registry, main, 'test/main');
}, 120_000);

afterAll(() => endImageTest(work, [registry]));

/** The pulled image is the main image, complete, and nothing temporary is left. */
function expectComplete(root: string): void {
  const recs = layerRecords(root);
  expect(Object.keys(recs).sort()).toEqual(main.layers.map((l) => l.diffId.slice(7)).sort());
  // The fourth layer has the large file (buildMainImage).
  const big = main.layers[3]!.diffId.slice(7);
  expect(sha256FileSync(path.join(root, 'layers', big, main.expect.big.path))).toBe(main.expect.big.digest);
  for (const [rel, content] of Object.entries(main.expect.contents)) {
    const found = main.layers.map((l) => path.join(root, 'layers', l.diffId.slice(7), rel)).filter((p) => fs.existsSync(p));
    expect(found.length, rel).toBeGreaterThan(0);
    expect(fs.readFileSync(found[found.length - 1]!, 'utf8'), rel).toBe(content);
  }
  expect(fs.readdirSync(path.join(root, 'tmp'))).toEqual([]);
  expect(fs.readdirSync(path.join(root, 'blobs', 'sha256')).filter((n) => n.includes('.'))).toEqual([]);
  expect(checkBlobs(root).bad).toEqual([]);
}

describe('a layer unpacked while it downloads', () => {
  it('goes on across a dropped connection resumed with Range', async () => {
    const proxy = await startProxy(registry.host, { dropAfter: 12 * MiB });
    const sb = sandbox(work, 'resumed');
    const r = await sb.ok(['pull', '-q', `${proxy.host}/test/main:v1`]);
    expect(r.stdout.trim()).toBe(main.config.digest);
    expect(proxy.drops).toBe(1);
    expect(proxy.ranges).toBeGreaterThan(0);
    expectComplete(sb.root);
  });

  it('is unpacked again from the complete blob when the download starts over', async () => {
    const proxy = await startProxy(registry.host, { dropAfter: 12 * MiB, stripRange: true });
    const sb = sandbox(work, 'restarted');
    const r = await sb.ok(['pull', '-q', `${proxy.host}/test/main:v1`]);
    expect(r.stdout.trim()).toBe(main.config.digest);
    expect(proxy.drops).toBe(1);
    expect(proxy.ranges).toBeGreaterThan(0);
    expectComplete(sb.root);
  });
});
