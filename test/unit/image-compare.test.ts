import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compareImages, formatDifferences, readImage, type ReadImage } from '../harness/image-compare.mjs';
import { buildBusyboxImage, buildMainImage } from '../harness/images.mjs';

describe('image-compare (the harness of the podman build equivalence tests)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-compare-test-'));
  let main: ReadImage;
  beforeAll(() => {
    buildMainImage(path.join(dir, 'main'), { tag: 'm', bigSize: 1 << 20 });
    main = readImage({ layout: path.join(dir, 'main'), tag: 'm' });
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('applies the layers: whiteouts, opaque directories, zstd, hard links, owners, symlinks', () => {
    const t = main.tree;
    for (const p of ['/todelete.txt', '/deldir', '/deldir/inside.txt', '/opaque/a', '/opaque/sub', '/opaque/.wh..wh..opq', '/.wh.todelete.txt']) expect(t.has(p), p).toBe(false);
    expect(t.get('/opaque/new.txt')).toMatchObject({ type: 'file', size: 'the only file in opaque/ now\n'.length });
    expect(t.get('/zstd/hello.txt')).toMatchObject({ type: 'file' });
    expect(t.get('/data/hard2')).toMatchObject({ type: 'file', sha256: t.get('/data/hard1')!.sha256, links: '/data/hard1' });
    expect(t.get('/data/hard1')).toMatchObject({ links: '/data/hard2' });
    expect(t.get('/data/target.txt')!.links).toBeUndefined();
    expect(t.get('/data/chain1')).toMatchObject({ type: 'symlink', linkname: 'chain2' });
    expect(t.get('/var/www/index.html')).toMatchObject({ uid: 33 });
    expect(t.get('/home/user/notes.txt')).toMatchObject({ uid: 1000, mode: 0o600 });
    expect(t.get('/big/random.bin')).toMatchObject({ size: 1 << 20 });
    expect(main.config?.config?.WorkingDir).toBe('/data');
  });

  it('an image equals itself, also read from an oci-archive', () => {
    const archive = path.join(dir, 'main.tar');
    execFileSync('tar', ['-cf', archive, '-C', path.join(dir, 'main'), '.']);
    expect(compareImages(main, readImage({ archive, tag: 'm' }))).toEqual([]);
  });

  it('lists every difference of tree and config, and ignores what it is told to', () => {
    buildBusyboxImage(path.join(dir, 'bb'), { tag: 'b', config: { Cmd: ['/bin/sh'], Labels: { 'io.buildah.version': '1.28' } } });
    const bb = readImage({ layout: path.join(dir, 'bb'), tag: 'b' });
    const diffs = compareImages(main, bb);
    const text = formatDifferences(diffs);
    expect(text).toContain('/data/target.txt: exists: ');
    expect(text).toContain('/etc/motd: exists: ');
    expect(diffs).toContainEqual({ field: 'WorkingDir', what: 'config', a: '/data', b: undefined });
    expect(diffs).toContainEqual({ field: 'Labels.io.buildah.version', what: 'config', a: undefined, b: '1.28' });
    expect(diffs).toContainEqual({ field: 'Env.BURROW_TEST', what: 'config', a: 'main', b: undefined });
    expect(diffs.some((d) => d.path === '/bin/busybox')).toBe(false);
    const only = compareImages(main, bb, {
      ignorePaths: ['/data', '/etc/motd', '/var', '/home', '/todelete.txt', '/opaque', '/zstd', '/big', /^\/deldir/],
      ignoreFields: ['WorkingDir', 'ExposedPorts', 'Labels', 'Env', 'StopSignal', 'History'],
    });
    expect(formatDifferences(only)).toBe('');
  });

  it('a changed mode, owner or content is a difference of that field', () => {
    const copy: ReadImage = { tree: new Map([...main.tree].map(([k, v]) => [k, { ...v }])), config: main.config };
    copy.tree.get('/etc/passwd')!.mode = 0o600;
    copy.tree.get('/data/target.txt')!.sha256 = 'x';
    copy.tree.get('/data/chain3')!.linkname = 'elsewhere';
    // a hard link written as a copy: same content, but not the same file any more
    delete copy.tree.get('/data/hard1')!.links;
    delete copy.tree.get('/data/hard2')!.links;
    expect(compareImages(main, copy).map((d) => `${d.path} ${d.what}`)).toEqual(['/data/chain3 linkname', '/data/hard1 links', '/data/hard2 links', '/data/target.txt sha256', '/etc/passwd mode']);
  });
});
