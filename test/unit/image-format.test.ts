/**
 * The store's image format (ts/storage/image-format.ts): which file systems make `auto` keep a
 * squashfs per image (statfs magic through a fake), the setting's precedence and checks, and
 * how `info` shows it.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { renderInfo } from '../../ts/cli/format/info';
import { parseConfig } from '../../ts/config/parse';
import { BurrowError } from '../../ts/errors';
import { decideImageFormat, describeImageFormat, imageFormat, imageFormatSetting, squashPathOf, withImageFormat } from '../../ts/storage/image-format';
import { Store } from '../../ts/storage/store';
import { sampleReport } from './fixtures';

const store = new Store('/nonexistent/burrow-store');
/** A statfs that answers `magic` for the store's images directory, and records what it was asked. */
const fake = (magic: number | undefined) => {
  const asked: string[] = [];
  return { asked, magicOf: (dir: string) => (asked.push(dir), magic) };
};
const env = (v?: string): NodeJS.ProcessEnv => ({ BURROW_CONFIG: undefined, HOME: '/nonexistent', ...(v ? { BURROW_IMAGE_FORMAT: v } : {}) });

describe('image_format = auto', () => {
  it.each([
    [0x6969, 'nfs'],
    [0x0bd00bd0, 'lustre'],
    [0x47504653, 'gpfs'],
    [0x19830326, 'fhgfs'],
    [0x00c36400, 'ceph'],
    [0xff534d42, 'cifs'],
    [0xfe534d42, 'smb2'],
    [0x01021997, '9p'],
  ])('keeps a squashfs per image on a network or parallel file system (magic %s: %s)', (magic, name) => {
    const f = fake(magic);
    const r = imageFormat(store, f.magicOf, env());
    expect(f.asked).toEqual([store.p('images')]);
    expect(r).toMatchObject({ format: 'squashfs', setting: 'auto', from: 'default', fs: name });
    expect(describeImageFormat(r)).toBe(`squashfs (store on ${name}, a network file system)`);
  });

  it.each([
    [0xef53, 'ext4'],
    [0x58465342, 'xfs'],
    [0x9123683e, 'btrfs'],
    [0x01021994, 'tmpfs'],
    [0x794c7630, 'overlay'],
  ])('keeps layers on a local one (magic %s: %s)', (magic, name) => {
    const r = imageFormat(store, fake(magic).magicOf, env());
    expect(r).toMatchObject({ format: 'layers', fs: name });
    expect(describeImageFormat(r)).toBe(`layers (store on ${name}, a local file system)`);
  });

  it('keeps layers where the file system is unknown or cannot be examined', () => {
    expect(imageFormat(store, fake(0x12345678).magicOf, env()).format).toBe('layers');
    expect(decideImageFormat('auto', 'default', undefined)).toMatchObject({ format: 'layers', fs: 'unknown' });
  });
});

describe('the setting', () => {
  let dir: string | undefined;
  afterEach(() => dir && fs.rmSync(dir, { recursive: true, force: true }));

  it('layers or squashfs as asked, whatever the file system', () => {
    expect(imageFormat(store, fake(0x6969).magicOf, env('layers'))).toMatchObject({ format: 'layers', from: 'BURROW_IMAGE_FORMAT', reason: 'BURROW_IMAGE_FORMAT = layers' });
    expect(imageFormat(store, fake(0xef53).magicOf, env('squashfs'))).toMatchObject({ format: 'squashfs', from: 'BURROW_IMAGE_FORMAT' });
  });

  it('BURROW_IMAGE_FORMAT must be one of auto, layers, squashfs', () => {
    expect(() => imageFormatSetting(env('sqfs'))).toThrow(BurrowError);
    expect(() => imageFormatSetting(env('sqfs'))).toThrow(/BURROW_IMAGE_FORMAT=sqfs is not one of auto, layers, squashfs/);
  });

  it('the config file takes [storage] image_format and refuses other values with the line', () => {
    expect(parseConfig('[storage]\nimage_format = "squashfs"\n', '/c.toml').storage.imageFormat).toBe('squashfs');
    expect(() => parseConfig('[storage]\nroot = "/x"\nimage_format = "sif"\n', '/c.toml')).toThrow(/\/c\.toml:3: storage\.image_format = "sif" is not one of auto, layers, squashfs/);
  });

  it('squashfs files go beside the image records', () => {
    expect(squashPathOf(store, `sha256:${'a'.repeat(64)}`)).toBe(`/nonexistent/burrow-store/images/${'a'.repeat(64)}.sqfs`);
  });

  it('a real statfs of a local directory decides layers (this machine has no network file system)', () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-imgfmt-'));
    expect(imageFormat(new Store(dir), undefined, env()).format).toBe('layers');
  });
});

describe('burrow info', () => {
  it('shows the format and why in the Storage section, and in the JSON report', () => {
    const base = sampleReport();
    // A storage line between others, as the probe writes it.
    base.checks.splice(2, 0, { id: 'storage.driver', title: 'Storage driver', verdict: 'ok', evidence: 'overlay' });
    const r = withImageFormat(base, store, fake(0x0bd00bd0).magicOf);
    expect(r.storage.imageFormat).toMatchObject({ format: 'squashfs', setting: 'auto', fs: 'lustre' });
    const text = renderInfo(r, false);
    expect(text).toMatch(/\[info\] Image format\s+squashfs \(store on lustre, a network file system\)\n\s+fix: set \[storage\] image_format/);
    // Right after the store's own lines, in its section.
    const ids = r.checks.map((c) => c.id);
    const at = ids.indexOf('storage.image-format');
    expect(ids.slice(at - 1, at + 2)).toEqual(['storage.driver', 'storage.image-format', 'cgroups.limits']);
  });
});
