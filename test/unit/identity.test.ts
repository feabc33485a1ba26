/**
 * The pure parts of issue 12's identity items: which user a container runs as when its id map
 * lacks the one asked for (ts/container/userns.ts fitUser), the subordinate-id file parser of
 * ts/host/subid.ts, and which driver a store uses on a host (ts/storage/settings.ts). The free
 * range that `burrow info` suggests is computed and unit-tested in Rust (probe/idmap.rs,
 * free_range); the integration test test/integration/identity.test.ts drives all of it.
 */
import { describe, expect, it } from 'vitest';
import { fitUser, isMapped } from '../../ts/container/userns';
import { parseSubidFile } from '../../ts/host/subid';
import { driverWorks, hostDriver } from '../../ts/storage/settings';
import type { IdMap, StorageSettings } from '../../ts/storage/store';
import { sampleReport } from './fixtures';
import { BurrowError } from '../../ts/errors';

const me = process.getuid?.() ?? 1000;
const single: StorageSettings = { version: 1, driver: 'overlay', idMode: 'single', uidMap: [[0, me, 1]], gidMap: [[0, me, 1]] };
const subuid: StorageSettings = { version: 1, driver: 'overlay', idMode: 'subuid', uidMap: [[0, me, 1], [1, 100000, 65536]], gidMap: [[0, me, 1], [1, 100000, 65536]] };
const maps = (s: StorageSettings, userNamespace = true) => ({ uidMap: s.uidMap, gidMap: s.gidMap, userNamespace });

describe('fitUser: a user the id map lacks', () => {
  it('keeps a mapped user and says nothing', () => {
    const said: string[] = [];
    expect(fitUser({ uid: 1000, gid: 1000 }, 'app', maps(subuid), subuid, undefined, 'root', (m) => said.push(m))).toEqual({ uid: 1000, gid: 1000 });
    expect(fitUser({ uid: 0, gid: 0 }, '0', maps(single), single, undefined, 'root', (m) => said.push(m))).toEqual({ uid: 0, gid: 0 });
    // No user namespace (--userns host, root): every id is the host's.
    expect(fitUser({ uid: 5000, gid: 5000 }, '5000', { uidMap: [], gidMap: [], userNamespace: false }, single, 'host', 'root', (m) => said.push(m))).toEqual({ uid: 5000, gid: 5000 });
    expect(said).toEqual([]);
  });

  it('a single-id store: container root with one warning naming the range fix, migrate when the range is there already', () => {
    const said: string[] = [];
    expect(fitUser({ uid: 1000, gid: 1000 }, 'app', maps(single), single, undefined, 'root', (m) => said.push(m), () => false)).toEqual({ uid: 0, gid: 0 });
    expect(said).toHaveLength(1);
    expect(said[0]).toContain('user app (uid 1000, gid 1000) cannot be honoured');
    expect(said[0]).toContain('single-id mode');
    expect(said[0]).toContain('an administrator can give you a subordinate id range');
    expect(said[0]).toContain('user_fallback = "error"');
    fitUser({ uid: 1000, gid: 0 }, '1000', maps(single), single, undefined, 'root', (m) => said.push(m), () => true);
    expect(said[1]).toContain('`burrow system migrate`');
  });

  it('--userns single on a store with a range: the fix is to leave it out or use keep-id', () => {
    const said: string[] = [];
    const one: StorageSettings = { ...subuid, uidMap: [[0, me, 1]], gidMap: [[0, me, 1]] };
    fitUser({ uid: 1000, gid: 1000 }, 'app', maps(one), subuid, 'single', 'root', (m) => said.push(m));
    expect(said[0]).toContain('--userns single maps one id only');
    expect(said[0]).toContain('--userns keep-id');
  });

  it('an id beyond the range: the map is named', () => {
    const said: string[] = [];
    fitUser({ uid: 70000, gid: 0 }, '70000', maps(subuid), subuid, undefined, 'root', (m) => said.push(m));
    expect(said[0]).toContain('covers uids 0, 1-65536');
  });

  it("fallback 'error' throws EUSER_UNMAPPED (exit 125) and warns nothing", () => {
    const said: string[] = [];
    let err: unknown;
    try {
      fitUser({ uid: 1000, gid: 1000 }, 'app', maps(single), single, undefined, 'error', (m) => said.push(m), () => false);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BurrowError);
    expect((err as BurrowError).code).toBe('EUSER_UNMAPPED');
    expect((err as BurrowError).exitCode).toBe(125);
    expect(said).toEqual([]);
  });

  it('isMapped reads container-side ranges', () => {
    const m: IdMap[] = [[0, 1000, 1], [1, 100000, 10]];
    expect([0, 1, 10, 11].map((id) => isMapped(m, id))).toEqual([true, true, true, false]);
  });
});

describe('subid files', () => {
  it('matches by name or numeric uid, skips comments, malformed and empty ranges', () => {
    const text = '# c\nalice:100000:65536\n1001:200000:10\nbob:300000:0\nbad\nalice:x:1\n';
    expect(parseSubidFile(text, 'alice', 1000)).toEqual([{ start: 100000, count: 65536 }]);
    expect(parseSubidFile(text, 'carol', 1001)).toEqual([{ start: 200000, count: 10 }]);
    expect(parseSubidFile(text, 'bob', 1002)).toEqual([]);
    expect(parseSubidFile('', undefined, 1)).toEqual([]);
  });
});

describe('a driver per host', () => {
  it('the saved driver on the host it was checked on, a remembered one elsewhere, none on an unknown host', () => {
    const s = { ...single, host: 'a 6.1 fs=ef53 nosubid', hosts: { 'b 6.1 fs=65735546 nosubid': 'fuse-overlayfs', junk: 'zfs' } } as StorageSettings;
    expect(hostDriver(s, 'a 6.1 fs=ef53 nosubid')).toBe('overlay');
    expect(hostDriver(s, 'b 6.1 fs=65735546 nosubid')).toBe('fuse-overlayfs');
    expect(hostDriver(s, 'junk')).toBeUndefined();
    expect(hostDriver(s, 'c')).toBeUndefined();
    // A store from before hosts were remembered: every host is unknown once.
    expect(hostDriver(single, 'a 6.1 fs=ef53 nosubid')).toBeUndefined();
  });

  it("driverWorks follows the probe's findings", () => {
    const st = sampleReport().storage;
    expect(driverWorks('overlay', { ...st, nativeOverlay: true, networkFs: false })).toBe(true);
    expect(driverWorks('overlay', { ...st, nativeOverlay: false })).toBe(false);
    expect(driverWorks('overlay', { ...st, nativeOverlay: true, networkFs: true, local: null })).toBe(false);
    // On NFS with the layers on this machine's disk, the probe tested overlay there.
    expect(driverWorks('overlay', { ...st, nativeOverlay: true, networkFs: true, local: { dir: '/var/tmp/burrow-1000/x', examined: '/var/tmp', fsType: 'ext4', writable: true } })).toBe(true);
    expect(driverWorks('fuse-overlayfs', { ...st, fuseOverlayfs: '/usr/bin/fuse-overlayfs', devFuseUsable: true })).toBe(true);
    expect(driverWorks('fuse-overlayfs', { ...st, fuseOverlayfs: null, devFuseUsable: true })).toBe(false);
    expect(driverWorks('copy', st)).toBe(true);
  });
});
