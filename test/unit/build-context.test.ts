/**
 * The build context as COPY sees it (ts/build/context.ts): paths resolved inside the context
 * (symlinks never lead out), Go-style globs, and the content hash of the cache (a touch keeps
 * it, an edit or a mode change does not), with .dockerignore's exclusions listed for the packer.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { globRegExp, hashTree, matchSources, resolveInRoot, type BuildContext } from '../../ts/build/context';
import { cacheKey } from '../../ts/build/cache';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-build-ctx-'));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

function tree(name: string, files: Record<string, string>): string {
  const dir = path.join(work, name);
  for (const [f, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    fs.writeFileSync(path.join(dir, f), text);
  }
  return dir;
}

describe('resolveInRoot', () => {
  it('follows symlinks as in a chroot: absolute targets and .. stop at the context', () => {
    const dir = tree('links', { 'a/real': 'x', 'etc/passwd': 'inside' });
    fs.symlinkSync('/etc/passwd', path.join(dir, 'abs'));
    fs.symlinkSync('../../../../..', path.join(dir, 'a', 'up'));
    fs.symlinkSync('real', path.join(dir, 'a', 'rel'));
    expect(resolveInRoot(dir, 'abs').host).toBe(path.join(dir, 'etc', 'passwd'));
    expect(resolveInRoot(dir, 'a/up/etc/passwd').host).toBe(path.join(dir, 'etc', 'passwd'));
    expect(resolveInRoot(dir, '../../etc/passwd').host).toBe(path.join(dir, 'etc', 'passwd'));
    expect(resolveInRoot(dir, 'a/rel').host).toBe(path.join(dir, 'a', 'real'));
    expect(resolveInRoot(dir, 'a/rel', false).host).toBe(path.join(dir, 'a', 'rel'));
  });

  it('refuses a link loop', () => {
    const dir = tree('loop', { x: '' });
    fs.symlinkSync('l2', path.join(dir, 'l1'));
    fs.symlinkSync('l1', path.join(dir, 'l2'));
    expect(() => resolveInRoot(dir, 'l1')).toThrow(/too many levels/);
  });
});

describe('globs and sources', () => {
  it("matches as Go's filepath.Match: * and ? stay within a component, classes work", () => {
    expect(globRegExp('*.txt').test('a.txt')).toBe(true);
    expect(globRegExp('*.txt').test('d/a.txt')).toBe(false);
    expect(globRegExp('file?.[ch]').test('file1.c')).toBe(true);
    expect(globRegExp('file?.[!c]').test('file1.c')).toBe(false);
    expect(globRegExp('a+b(1).txt').test('a+b(1).txt')).toBe(true);
  });

  it('finds sources, globs in order, and names what is missing or ignored', () => {
    const dir = tree('src', { 'b.txt': '', 'a.txt': '', 'd/c.txt': '', 'skip.txt': '', 'with space.txt': '' });
    const ctx: BuildContext = { dir, ignored: (rel) => rel === 'skip.txt' };
    expect(matchSources(ctx, '*.txt')).toEqual(['a.txt', 'b.txt', 'with space.txt']);
    expect(matchSources(ctx, 'd/*.txt')).toEqual(['d/c.txt']);
    expect(matchSources(ctx, '.')).toEqual(['']);
    expect(matchSources(ctx, 'with space.txt')).toEqual(['with space.txt']);
    expect(() => matchSources(ctx, 'skip.txt')).toThrow(/not found in build context or excluded/);
    expect(() => matchSources(ctx, 'nope')).toThrow(/nope/);
    expect(() => matchSources(ctx, '*.none')).toThrow(/matches nothing/);
  });
});

describe('hashTree', () => {
  it('keeps its hash on touch, changes it on an edit or a mode change', () => {
    const dir = tree('hash', { 'd/a': 'one', 'd/b': 'two' });
    const ctx: BuildContext = { dir, ignored: () => false };
    const h0 = hashTree(ctx, 'd').digest;
    const later = new Date(Date.now() + 100_000);
    fs.utimesSync(path.join(dir, 'd', 'a'), later, later);
    expect(hashTree(ctx, 'd').digest).toBe(h0);
    fs.chmodSync(path.join(dir, 'd', 'a'), 0o755);
    const h1 = hashTree(ctx, 'd').digest;
    expect(h1).not.toBe(h0);
    fs.writeFileSync(path.join(dir, 'd', 'b'), 'TWO');
    expect(hashTree(ctx, 'd').digest).not.toBe(h1);
  });

  it('lists what .dockerignore leaves out, and keeps ! exceptions in', () => {
    const dir = tree('ign', { 'keep.txt': '', 'logs/a.log': '', 'logs/keep.log': '', 'x.tmp': '' });
    const ignored = (rel: string) => rel === 'x.tmp' || (rel.startsWith('logs') && rel !== 'logs/keep.log');
    const h = hashTree({ dir, ignored }, '');
    expect(h.exclude.sort()).toEqual(['logs/a.log', 'x.tmp']);
  });

  it('chains cache keys: the same parts give the same key, any change another', () => {
    expect(cacheKey('a', ['x'])).toBe(cacheKey('a', ['x']));
    expect(cacheKey('a', ['x'])).not.toBe(cacheKey('a', ['y']));
  });
});

describe('the build cache in the store', () => {
  it('gives back a saved state only while its layers exist, and its content counts as referenced', async () => {
    const { Store } = await import('../../ts/storage/store');
    const { cacheGet, cachePut } = await import('../../ts/build/cache');
    const { buildCacheContent } = await import('../../ts/storage/refs');
    const s = new Store(path.join(work, 'store'));
    s.init();
    const diffId = `sha256:${'a'.repeat(64)}`;
    const digest = `sha256:${'b'.repeat(64)}`;
    const state = { config: { architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers' as const, diff_ids: [diffId] }, history: [] }, layers: [{ digest, diffId, size: 1, mediaType: 'x' }], key: cacheKey('k') };
    cachePut(s, state);
    expect(cacheGet(s, state.key)).toBeUndefined(); // its layer is not in the store
    fs.writeFileSync(s.blobPath(digest), 'x');
    s.commitLayer({ diffId, digest, size: 1, entries: 0, bytes: 0, skippedChown: 0, unpackedAt: '' });
    expect(cacheGet(s, state.key)?.layers).toEqual(state.layers);
    expect(cacheGet(s, cacheKey('other'))).toBeUndefined();
    expect(buildCacheContent(s)).toEqual({ layers: ['a'.repeat(64)], blobs: ['b'.repeat(64)] });
  });
});
