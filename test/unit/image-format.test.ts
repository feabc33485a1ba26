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
import { claimAbandoned, claimPathOf, claimSquash, decideImageFormat, describeImageFormat, FOREIGN_CLAIM_MS, imageFormat, imageFormatSetting, squashPathOf, withImageFormat } from '../../ts/storage/image-format';
import { collectGarbage } from '../../ts/storage/prune';
import type { StorageSettings } from '../../ts/storage/store';
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
    expect(text).toMatch(/\[info\] Image format\s+squashfs \(store on lustre, a network file system\)\n/);
    // Right after the store's own lines, in its section.
    const ids = r.checks.map((c) => c.id);
    const at = ids.indexOf('storage.image-format');
    expect(ids.slice(at - 1, at + 2)).toEqual(['storage.driver', 'storage.image-format', 'cgroups.limits']);
  });
});

/** A pid that no process has (pids are below pid_max). */
function deadPid(): number {
  const max = Number(fs.readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
  for (let p = max - 1; p > 1; p--) if (!fs.existsSync(`/proc/${p}`)) return p;
  throw new Error('no free pid');
}

describe('the claim of a conversion', () => {
  let dir: string;
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));
  const fresh = () => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-claim-')));

  it('one holder at a time; released, it can be claimed again', () => {
    const sqfs = path.join(fresh(), 'x.sqfs');
    const release = claimSquash(sqfs);
    expect(release).toBeDefined();
    expect(fs.readFileSync(claimPathOf(sqfs), 'utf8')).toBe(`${os.hostname()} ${process.pid}`);
    expect(claimSquash(sqfs)).toBeUndefined();
    release!();
    expect(fs.existsSync(claimPathOf(sqfs))).toBe(false);
    claimSquash(sqfs)!();
  });

  it("a claim of a process of this machine that is gone is taken over; another machine's only once old", () => {
    const sqfs = path.join(fresh(), 'x.sqfs');
    const marker = claimPathOf(sqfs);
    expect(claimAbandoned(marker)).toBeUndefined();
    fs.writeFileSync(marker, `${os.hostname()} ${deadPid()}`);
    expect(claimAbandoned(marker)).toBe(true);
    const release = claimSquash(sqfs);
    expect(release).toBeDefined();
    release!();
    // A node of the cluster that shares the store: its pid means nothing here.
    fs.writeFileSync(marker, `other-node ${deadPid()}`);
    expect(claimAbandoned(marker)).toBe(false);
    expect(claimSquash(sqfs)).toBeUndefined();
    expect(claimAbandoned(marker, Date.now() + FOREIGN_CLAIM_MS + 1000)).toBe(true);
  });
});

describe('prune of the store squashfs files', () => {
  it("removes those of images gone (unless a container uses one) and abandoned conversions' files, nothing else", async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-sqprune-'));
    try {
      const s = new Store(root);
      s.init();
      const [kept, gone, used, live, dead] = ['a', 'b', 'c', 'd', 'e'].map((x) => x.repeat(64));
      s.saveImage({ id: `sha256:${kept}`, configDigest: `sha256:${kept}`, manifestDigest: `sha256:${kept}`, manifestMediaType: 'x', layers: [], repoTags: [], repoDigests: [], os: 'linux', architecture: 'amd64', size: 0, pulledAt: '' });
      for (const h of [kept, gone, used]) fs.writeFileSync(s.p('images', `${h}.sqfs`), 'hsqs');
      // A container of `used` is left (rmi -f): its bundle names the file.
      fs.mkdirSync(s.p('containers', '9'.repeat(64)), { recursive: true });
      fs.writeFileSync(s.p('containers', '9'.repeat(64), 'record.json'), JSON.stringify({ image: `sha256:${used}` }));
      // A conversion in progress here, and one whose process is gone.
      fs.writeFileSync(s.p('images', `.${live}.sqfs.making`), `${os.hostname()} ${process.pid}`);
      fs.writeFileSync(s.p('images', `.${live}.sqfs.tmp-${process.pid}`), 'hsq');
      fs.writeFileSync(s.p('images', `.${dead}.sqfs.making`), `${os.hostname()} ${deadPid()}`);
      fs.writeFileSync(s.p('images', `.${dead}.sqfs.tmp-${deadPid()}`), 'hs');
      const settings: StorageSettings = { version: 1, driver: 'copy', idMode: 'root', uidMap: [[0, 0, 4294967295]], gidMap: [[0, 0, 4294967295]] };
      const r = await collectGarbage(s, settings, { layers: new Set(), blobs: new Set() });
      expect(fs.readdirSync(s.p('images')).filter((n) => n.includes('sqfs')).sort()).toEqual([`.${live}.sqfs.making`, `.${live}.sqfs.tmp-${process.pid}`, `${kept}.sqfs`, `${used}.sqfs`].sort());
      expect(r.bytes).toBe(4 + 2 + `${os.hostname()} ${deadPid()}`.length);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
