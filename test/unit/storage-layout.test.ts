/**
 * Where a store's parts go, decided from filesystem magic numbers (ts/storage/settings.ts): a
 * store on NFS, Lustre or GPFS keeps its blobs and images but puts its layers and containers'
 * writable layers on a local disk, or is refused when no local disk can take them. There is no
 * network filesystem here to test against, so the decision is tested on its own; the drivers,
 * which run in both layouts, are tested in test/integration/rootfs-drivers.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { defaultLocalBase, layoutOf, localRoot, networkFsName, parseDriver, storeLayout } from '../../ts/storage/settings';
import { rootfsOf } from '../../ts/storage/rootfs';
import type { ContainerRecord } from '../../ts/container/records';
import type { StorageSettings } from '../../ts/storage/store';

const NFS = 0x6969;
const LUSTRE = 0x0bd00bd0;
const GPFS = 0x47504653;
const EXT4 = 0xef53;
const XFS = 0x58465342;
const TMPFS = 0x01021994;

describe('store layout from filesystem magic', () => {
  it('names the network filesystems the probe knows', () => {
    expect([NFS, LUSTRE, GPFS, 0xff534d42, 0x00c36400].map(networkFsName)).toEqual(['nfs', 'lustre', 'gpfs', 'cifs', 'ceph']);
    expect([EXT4, XFS, TMPFS, 0x9123683e, 0x794c7630].map(networkFsName)).toEqual([undefined, undefined, undefined, undefined, undefined]);
  });

  it('keeps a store on a local filesystem where it is', () => {
    for (const m of [EXT4, XFS, TMPFS]) expect(storeLayout('/home/u/.local/share/burrow', m, '/var/tmp/burrow-1000', EXT4)).toEqual({ kind: 'local' });
  });

  it('redirects the layers of a store on NFS, Lustre or GPFS to a local directory of its own', () => {
    const base = defaultLocalBase(1000);
    expect(base).toBe('/var/tmp/burrow-1000');
    for (const [magic, fs] of [[NFS, 'nfs'], [LUSTRE, 'lustre'], [GPFS, 'gpfs']] as const) {
      const l = storeLayout('/home/u/.local/share/burrow', magic, base, EXT4);
      expect(l).toMatchObject({ kind: 'redirect', fs });
      expect(l.kind === 'redirect' && l.local).toMatch(/^\/var\/tmp\/burrow-1000\/[0-9a-f]{16}$/);
    }
    // One directory per store: two stores never share layers (their id maps may differ).
    const a = storeLayout('/nfs/a', NFS, base, XFS);
    const b = storeLayout('/nfs/b', NFS, base, XFS);
    expect(a.kind === 'redirect' && b.kind === 'redirect' && a.local !== b.local).toBe(true);
    expect(storeLayout('/nfs/a', NFS, base, TMPFS)).toEqual(a);
  });

  it('refuses, naming --root and BURROW_ROOT, when the local directory is on a network filesystem too or cannot be examined', () => {
    const r = storeLayout('/gpfs/home/u/burrow', GPFS, '/var/tmp/burrow-1000', NFS);
    expect(r).toMatchObject({ kind: 'refuse', fs: 'gpfs' });
    if (r.kind !== 'refuse') throw new Error('unreachable');
    expect(r.message).toMatch(/the store \/gpfs\/home\/u\/burrow is on gpfs, a network filesystem .*\/var\/tmp\/burrow-1000.* is on nfs too/);
    expect(r.fix).toMatch(/--root DIR or BURROW_ROOT=DIR/);
    const unknown = storeLayout('/lustre/u', LUSTRE, '/var/tmp/burrow-1000', undefined);
    expect(unknown).toMatchObject({ kind: 'refuse', fs: 'lustre' });
  });

  it('finds the layout of a store on this machine from its filesystem: a local one stays local, whatever its settings say', () => {
    const s: StorageSettings = { version: 1, driver: 'overlay', idMode: 'single', uidMap: [[0, 1000, 1]], gidMap: [[0, 1000, 1]] };
    for (const root of [process.cwd(), '/tmp/burrow-not-there/store']) {
      expect(layoutOf(root, undefined, 1000)).toEqual({ kind: 'local' });
      expect(layoutOf(root, { ...s, local: '/var/tmp/burrow-1000/0123456789abcdef' } as StorageSettings, 1000)).toEqual({ kind: 'local' });
    }
  });

  it("reads the local directory back from the store's settings, and only an absolute path", () => {
    const s: StorageSettings = { version: 1, driver: 'overlay', idMode: 'single', uidMap: [[0, 1000, 1]], gidMap: [[0, 1000, 1]] };
    expect(localRoot(s)).toBeUndefined();
    expect(localRoot({ ...s, local: '/var/tmp/burrow-1000/0123456789abcdef' } as StorageSettings)).toBe('/var/tmp/burrow-1000/0123456789abcdef');
    expect(localRoot({ ...s, local: 'relative' } as StorageSettings)).toBeUndefined();
  });
});

describe('driver choice and record', () => {
  it('accepts the three drivers and names where a wrong one came from', () => {
    expect(['overlay', 'fuse-overlayfs', 'copy'].map((d) => parseDriver(d, '--storage-driver'))).toEqual(['overlay', 'fuse-overlayfs', 'copy']);
    expect(() => parseDriver('zfs', 'BURROW_STORAGE_DRIVER')).toThrow(/BURROW_STORAGE_DRIVER=zfs: the storage driver must be one of overlay, fuse-overlayfs, copy/);
  });

  it("takes a container's driver from its record, and kernel overlay in its directory for records from before drivers", () => {
    const rec = { id: 'x' } as ContainerRecord;
    expect(rootfsOf(rec, '/s/containers/x')).toEqual({ driver: 'overlay', dir: '/s/containers/x' });
    expect(rootfsOf({ ...rec, rootfs: { driver: 'copy', dir: '/var/tmp/burrow-1/abc/containers/x' } } as ContainerRecord, '/s/containers/x')).toEqual({ driver: 'copy', dir: '/var/tmp/burrow-1/abc/containers/x' });
    expect(rootfsOf({ ...rec, rootfs: { driver: 'zfs', dir: '/x' } } as ContainerRecord, '/s/containers/x').driver).toBe('overlay');
  });
});
