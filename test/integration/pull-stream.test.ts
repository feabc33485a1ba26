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
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkBlobs, layerRecords, removeAllSandboxes, sandbox, sha256FileSync, tmpdir } from './image-helpers';
// @ts-expect-error plain ESM harness module without types
import { startRegistry } from '../harness/registry.mjs';
// @ts-expect-error plain ESM harness module without types
import { buildMainImage, pushImage } from '../harness/images.mjs';

/* eslint-disable @typescript-eslint/no-explicit-any -- harness objects are plain JS */
type Registry = any;
type Image = any;

const MiB = 1024 * 1024;
const work = fs.mkdtempSync(path.join(tmpdir(), 'burrow-pull-stream-test-'));
const closers: (() => Promise<void>)[] = [];
let registry: Registry;
let main: Image;

beforeAll(async () => {
  main = buildMainImage(path.join(work, 'main'), { tag: 'v1', bigSize: 32 * MiB });
  registry = await startRegistry({ mode: 'anonymous' });
  await pushImage(registry, main, 'test/main');
}, 120_000);

afterAll(async () => {
  await removeAllSandboxes();
  for (const close of closers) await close().catch(() => undefined);
  await registry?.stop();
  fs.rmSync(work, { recursive: true, force: true });
});

interface Proxy {
  host: string;
  drops: number;
  ranges: number;
}

/**
 * A TCP proxy to the registry that cuts the first response carrying more than `dropAfter`
 * bytes, and, with `stripRange`, deletes Range headers from requests (the registry then sends
 * whole blobs, as a server without range support does).
 */
async function startProxy({ dropAfter, stripRange }: { dropAfter: number; stripRange: boolean }): Promise<Proxy> {
  const port = Number(String(registry.host).split(':')[1]);
  const p: Proxy = { host: '', drops: 0, ranges: 0 };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((down) => {
    const up = net.connect(port, '127.0.0.1');
    sockets.add(down).add(up);
    let sent = 0;
    down.on('data', (d: Buffer) => {
      let head = d.toString('latin1');
      if (/\r\nrange: /i.test(head)) {
        p.ranges++;
        if (stripRange) head = head.replace(/\r\nrange: [^\r]*/i, '');
      }
      up.write(Buffer.from(head, 'latin1'));
    });
    up.on('data', (d: Buffer) => {
      if (p.drops === 0 && sent + d.length > dropAfter) {
        p.drops++;
        down.destroy();
        up.destroy();
        return;
      }
      sent += d.length;
      if (!down.write(d)) {
        up.pause();
        down.once('drain', () => up.resume());
      }
    });
    const end = (): void => {
      down.destroy();
      up.destroy();
    };
    down.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  p.host = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  closers.push(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  });
  return p;
}

/** The pulled image is the main image, complete, and nothing temporary is left. */
function expectComplete(root: string): void {
  const recs = layerRecords(root);
  expect(Object.keys(recs).sort()).toEqual(main.layers.map((l: { diffId: string }) => l.diffId.slice(7)).sort());
  const big = main.layers[3].diffId.slice(7);
  expect(sha256FileSync(path.join(root, 'layers', big, main.expect.big.path))).toBe(main.expect.big.digest);
  for (const [rel, content] of Object.entries(main.expect.contents as Record<string, string>)) {
    const found = main.layers.map((l: { diffId: string }) => path.join(root, 'layers', l.diffId.slice(7), rel)).filter((p: string) => fs.existsSync(p));
    expect(found.length, rel).toBeGreaterThan(0);
    expect(fs.readFileSync(found[found.length - 1], 'utf8'), rel).toBe(content);
  }
  expect(fs.readdirSync(path.join(root, 'tmp'))).toEqual([]);
  expect(fs.readdirSync(path.join(root, 'blobs', 'sha256')).filter((n) => n.includes('.'))).toEqual([]);
  expect(checkBlobs(root).bad).toEqual([]);
}

describe('a layer unpacked while it downloads', () => {
  it('goes on across a dropped connection resumed with Range', async () => {
    const proxy = await startProxy({ dropAfter: 12 * MiB, stripRange: false });
    const sb = sandbox(work, 'resumed');
    const r = await sb.ok(['pull', '-q', `${proxy.host}/test/main:v1`]);
    expect(r.stdout.trim()).toBe(main.config.digest);
    expect(proxy.drops).toBe(1);
    expect(proxy.ranges).toBeGreaterThan(0);
    expectComplete(sb.root);
  });

  it('is unpacked again from the complete blob when the download starts over', async () => {
    const proxy = await startProxy({ dropAfter: 12 * MiB, stripRange: true });
    const sb = sandbox(work, 'restarted');
    const r = await sb.ok(['pull', '-q', `${proxy.host}/test/main:v1`]);
    expect(r.stdout.trim()).toBe(main.config.digest);
    expect(proxy.drops).toBe(1);
    expect(proxy.ranges).toBeGreaterThan(0);
    expectComplete(sb.root);
  });
});
