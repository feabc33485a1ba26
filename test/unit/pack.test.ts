/**
 * ts/storage/pack.ts's checks made before any process is started: the copy driver has no upper
 * directory (the build executor falls back or refuses on this error), a destination must be
 * absolute, an upper directory must exist. The packing itself is proven by
 * test/integration/pack.test.ts and the Rust tests of image/pack.rs.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BurrowError } from '../../ts/errors';
import { packEntries, packUpper, upperDirOf } from '../../ts/storage/pack';
import type { StorageSettings } from '../../ts/storage/store';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-pack-unit-'));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
// Never used: every case fails before the runtime would be started.
const settings = {} as StorageSettings;

async function failure(p: Promise<unknown>): Promise<BurrowError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(BurrowError);
  return e as BurrowError;
}

describe('pack.ts', () => {
  it('finds the upper directory of overlay and fuse-overlayfs containers', () => {
    expect(upperDirOf({ driver: 'overlay', dir: '/s/containers/c1' })).toBe('/s/containers/c1/upper');
    expect(upperDirOf({ driver: 'fuse-overlayfs', dir: '/local/containers/c2' })).toBe('/local/containers/c2/upper');
  });

  it('refuses the copy driver, naming it and the fix', async () => {
    let err: unknown;
    try {
      upperDirOf({ driver: 'copy', dir: '/s/containers/c3' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BurrowError);
    expect((err as BurrowError).code).toBe('EPACK');
    expect((err as BurrowError).message).toMatch(/copy driver.*no overlay upper directory/);
    expect((err as BurrowError).fix).toMatch(/--storage-driver overlay or fuse-overlayfs/);
    // The copy driver's tree given as if it were an upper directory.
    const dir = path.join(work, 'c3');
    fs.mkdirSync(path.join(dir, 'rootfs'), { recursive: true });
    const e2 = await failure(packUpper(settings, path.join(dir, 'rootfs'), path.join(work, 'out')));
    expect(e2.code).toBe('EPACK');
    expect(e2.message).toMatch(/copy driver/);
  });

  it('refuses a missing upper directory and a relative destination', async () => {
    const e1 = await failure(packUpper(settings, path.join(work, 'nope', 'upper'), path.join(work, 'out')));
    expect(e1.code).toBe('EPACK');
    expect(e1.message).toContain('is not a directory');
    const e2 = await failure(packEntries(settings, [{ source: { content: '' }, dest: 'etc/x' }], path.join(work, 'out')));
    expect(e2.code).toBe('EPACK');
    expect(e2.message).toContain('not absolute');
  });
});
