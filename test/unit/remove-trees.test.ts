/**
 * removeTrees (ts/storage/unpack.ts): an empty directory — a layer's work directory once its
 * tree is renamed into place, a build's temporary directory with nothing left — and a path that
 * is gone need no user namespace: they cost no runtime start (newuidmap, newgidmap, a fork),
 * which a build paid after every layer it unpacked and once more at its end. Anything else still
 * goes to `burrow-runtime unpack`'s remove job (files of mapped ids only the namespace can delete).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeEach, describe, expect, it, vi } from 'vitest';

const spawned: string[][] = [];
vi.mock('../../ts/runtime/client', async (importOriginal) => ({
  ...(await importOriginal<typeof import('../../ts/runtime/client')>()),
  runtimeSpawn: (args: string[]) => {
    spawned.push(args);
    throw new Error('the runtime was started');
  },
}));

const { removeTrees } = await import('../../ts/storage/unpack');
import type { StorageSettings } from '../../ts/storage/store';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-remove-trees-unit-'));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
const settings: StorageSettings = { version: 1, driver: 'overlay', idMode: 'root', uidMap: [], gidMap: [] };
let n = 0;
const dir = () => fs.mkdtempSync(path.join(work, `d${++n}-`));

beforeEach(() => {
  spawned.length = 0;
});

describe('removeTrees', () => {
  it('removes empty directories and ignores missing paths without starting the runtime', async () => {
    const a = dir();
    const b = dir();
    await removeTrees(settings, [a, b, path.join(work, 'never-made')]);
    expect(fs.existsSync(a)).toBe(false);
    expect(fs.existsSync(b)).toBe(false);
    expect(spawned).toEqual([]);
  });

  it('hands a directory with contents to the runtime (and only that one)', async () => {
    const empty = dir();
    const full = dir();
    fs.writeFileSync(path.join(full, 'f'), 'x');
    await expect(removeTrees(settings, [empty, full])).rejects.toThrow('the runtime was started');
    expect(spawned).toHaveLength(1);
    expect(fs.existsSync(empty)).toBe(false);
    expect(fs.existsSync(full)).toBe(true);
  });
});
