/**
 * Which store writes are fsynced (ts/storage/fsutil.ts writeFileAtomic): a container's record
 * is, unless the container is --rm (ts/container/records.ts save: podman's volatile containers);
 * atomic either way, so a reader never sees half of it.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  const fsyncSync = vi.fn(real.fsyncSync);
  return { ...real, default: { ...real, fsyncSync }, fsyncSync };
});

const { Containers } = await import('../../ts/container/records');
const { Store } = await import('../../ts/storage/store');
const { writeFileAtomic } = await import('../../ts/storage/fsutil');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-unit-durable-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The fsyncs of `fn`. */
function fsyncsOf(fn: () => void): number {
  const spy = vi.mocked(fs.fsyncSync);
  spy.mockClear();
  fn();
  return spy.mock.calls.length;
}

describe('durable writes', () => {
  it('fsyncs by default and not when asked, atomically both times', () => {
    const f = path.join(dir, 'f.json');
    expect(fsyncsOf(() => writeFileAtomic(f, 'one'))).toBe(1);
    expect(fsyncsOf(() => writeFileAtomic(f, 'two', 0o644, { durable: false }))).toBe(0);
    expect(fs.readFileSync(f, 'utf8')).toBe('two');
    expect(fs.readdirSync(dir).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it("fsyncs a container's record unless the container is --rm", () => {
    const cs = new Containers(new Store(path.join(dir, 'store')));
    for (const [id, autoRemove, fsyncs] of [['a'.repeat(64), false, 1], ['b'.repeat(64), true, 0]] as const) {
      fs.mkdirSync(cs.dir(id), { recursive: true });
      const rec = { id, name: `n-${autoRemove}`, autoRemove } as unknown as Parameters<typeof cs.save>[0];
      expect(fsyncsOf(() => cs.save(rec))).toBe(fsyncs);
      expect(JSON.parse(fs.readFileSync(path.join(cs.dir(id), 'record.json'), 'utf8'))).toEqual(rec);
    }
  });
});
