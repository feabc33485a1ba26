/**
 * The store's settings, decided from the host probe when the store is first used: the default
 * rootfs driver, the id mapping that layers are unpacked and containers run with, and, for a
 * store on a network filesystem, the local directory that keeps its layers and its containers'
 * writable parts. A command may choose another driver for the containers it creates
 * (`--storage-driver`, BURROW_STORAGE_DRIVER); that choice is never saved (rootfs.ts records it
 * with each container instead).
 *
 * Those facts belong to the host and the moment the store was made, and a store outlives both:
 * a home directory is shared by the machines of a cluster (other kernels, other filesystems
 * under the same path), an administrator adds a subordinate range after the first run. So the
 * settings also remember which host they were checked on (`host`, hostKey()), and a command on
 * another one, or on the same one changed (kernel, the store's filesystem, a range now there or
 * gone), probes again once: the driver that works there is remembered per host (`hosts`; images
 * and layers stay shared), and a change of id mapping, which the unpacked layers cannot follow
 * by themselves, is named with its fix (`burrow system migrate`, storage/migrate.ts).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BurrowError } from '../errors';
import { mkdirp } from './fsutil';
import { Store, type Driver, type IdMap, type StorageSettings } from './store';
import type { HostReport } from '../host/report';

export const DRIVERS: readonly Driver[] = ['overlay', 'fuse-overlayfs', 'copy'];

export function parseDriver(value: string, from: string): Driver {
  if ((DRIVERS as readonly string[]).includes(value)) return value as Driver;
  throw new BurrowError('EUSAGE', `${from}=${value}: the storage driver must be one of ${DRIVERS.join(', ')}`);
}

export function settingsFromReport(r: HostReport): StorageSettings {
  const uid = r.uid;
  const gid = r.gid;
  if (uid === 0) {
    // Root maps every id to itself: images unpack with their real owners.
    return { version: 1, driver: r.storage.driver, idMode: 'root', uidMap: [[0, 0, 4294967295]], gidMap: [[0, 0, 4294967295]] };
  }
  const first = (ranges: { start: number; count: number }[]): IdMap[] => (ranges[0] ? [[1, ranges[0].start, ranges[0].count]] : []);
  if (r.idmap.mode === 'subuid') {
    return { version: 1, driver: r.storage.driver, idMode: 'subuid', uidMap: [[0, uid, 1], ...first(r.idmap.subuid)], gidMap: [[0, gid, 1], ...first(r.idmap.subgid)] };
  }
  return { version: 1, driver: r.storage.driver, idMode: 'single', uidMap: [[0, uid, 1]], gidMap: [[0, gid, 1]] };
}

// ---- stores on network filesystems ---------------------------------------------------------

/**
 * statfs magic numbers of filesystems shared between machines: the ones
 * crates/burrow-core/src/probe/storage.rs counts as network filesystems (`is_network_fs`).
 */
const NETWORK_FS: ReadonlyMap<number, string> = new Map([
  [0x6969, 'nfs'],
  [0xff534d42, 'cifs'],
  [0xfe534d42, 'smb2'],
  [0x0bd00bd0, 'lustre'],
  [0x47504653, 'gpfs'],
  [0x5346414f, 'afs'],
  [0x00c36400, 'ceph'],
  [0x013111a8, 'ibrix'],
  [0x19830326, 'fhgfs'],
  [0xaad7aaea, 'panfs'],
  [0x01021997, '9p'],
]);

export function networkFsName(magic: number): string | undefined {
  return NETWORK_FS.get(magic);
}

/**
 * Where the per-user local directory goes: /var/tmp is on the machine's own disk on the
 * clusters and workstations we know (unlike $HOME and project directories), it survives
 * reboots (unlike /tmp, a tmpfs on many systems, and $XDG_RUNTIME_DIR, a small tmpfs that logind
 * empties at logout: too small for images), and every user may make a directory there without
 * an administrator.
 */
export function defaultLocalBase(uid: number): string {
  return `/var/tmp/burrow-${uid}`;
}

export type StoreLayout =
  | { kind: 'local' }
  | { kind: 'redirect'; fs: string; local: string }
  | { kind: 'refuse'; fs: string; message: string; fix: string };

/**
 * Where a store's parts go, from the statfs magic of the store's filesystem and of the local
 * candidate's (undefined when it cannot be examined). On NFS, Lustre, GPFS and their kind, a
 * directory cannot be overlay's upper layer, user xattrs (overlay's whiteout and opaque markers)
 * are mostly missing, and root squashing refuses the chown to subordinate ids that unpacking
 * needs. Blobs and image records are plain files that work there and stay, shared by the
 * machines that mount it; the layers and the containers' writable parts go to a directory of
 * this machine, one per store (named by a hash of its path).
 */
export function storeLayout(root: string, storeMagic: number, localBase: string, localMagic: number | undefined): StoreLayout {
  const fsName = networkFsName(storeMagic);
  if (!fsName) return { kind: 'local' };
  const why = `the store ${root} is on ${fsName}, a network filesystem where overlay upper directories, user xattrs and subordinate-id owners do not work`;
  const fix = 'put the store on a local disk: --root DIR or BURROW_ROOT=DIR';
  if (localMagic === undefined) return { kind: 'refuse', fs: fsName, message: `${why}, and ${localBase} cannot be examined to keep the layers there instead`, fix };
  const localNet = networkFsName(localMagic);
  if (localNet) return { kind: 'refuse', fs: fsName, message: `${why}, and ${localBase}, where the layers would go instead, is on ${localNet} too`, fix };
  // node:crypto is required here, not imported: loading it costs `burrow run` ~3 ms, and only a
  // store on a network filesystem needs it.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { createHash } = require('node:crypto') as typeof import('node:crypto');
  const local = path.join(localBase, createHash('sha256').update(path.resolve(root)).digest('hex').slice(0, 16));
  return { kind: 'redirect', fs: fsName, local };
}

/**
 * The layout of the store at `root` as a command on this machine finds it: the local directory
 * saved in its settings, else the one storeLayout() decides (what the store's first command saves).
 */
export function layoutOf(root: string, saved: StorageSettings | undefined, uid: number): StoreLayout {
  const magic = statfsMagic(root) ?? 0;
  const fsName = networkFsName(magic);
  const local = saved && localRoot(saved);
  if (fsName && local) return { kind: 'redirect', fs: fsName, local };
  const base = defaultLocalBase(uid);
  return storeLayout(root, magic, base, fsName ? statfsMagic(base) : undefined);
}

/** The local directory of a store on a network filesystem, from its settings. */
export function localRoot(s: StorageSettings): string | undefined {
  const v = (s as { local?: unknown }).local;
  return typeof v === 'string' && path.isAbsolute(v) ? v : undefined;
}

/** statfs(2)'s type of the file system holding `p` (its nearest existing ancestor). */
export function statfsMagic(p: string): number | undefined {
  let dir = path.resolve(p);
  while (!fs.existsSync(dir) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  try {
    return fs.statfsSync(dir).type;
  } catch {
    return undefined;
  }
}

/**
 * Makes the store's local directory, or checks the one there. /var/tmp is shared by every user:
 * a per-user directory found there must be ours and closed to others, or someone else would
 * control what our containers run. Checked by every command, as the machine may be another one
 * of those that mount the store, or /var/tmp may have been cleaned.
 */
export function ensureLocal(local: string): void {
  const base = path.dirname(local);
  try {
    fs.mkdirSync(base, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new BurrowError('ESTORE_NETWORK', `cannot make ${base} for the store's layers: ${(err as Error).message}`, 'put the store on a local disk: --root DIR or BURROW_ROOT=DIR');
  }
  const st = fs.lstatSync(base);
  if (!st.isDirectory() || st.uid !== (process.getuid?.() ?? 0) || (st.mode & 0o077) !== 0) {
    throw new BurrowError(
      'ESTORE_NETWORK',
      `${base} is not a private directory of yours (${st.isSymbolicLink() ? 'a symlink, ' : ''}owner ${st.uid}, mode ${(st.mode & 0o7777).toString(8)}): the store's layers cannot be kept there`,
      'remove it if it is yours, or put the store on a local disk: --root DIR or BURROW_ROOT=DIR',
    );
  }
  for (const d of ['layers', 'tmp', 'containers']) mkdirp(path.join(local, d));
}

/** ROOT/layers becomes a link to the local layers (an empty directory there is replaced). */
function linkLayers(store: Store, local: string): void {
  const p = store.p('layers');
  const st = fs.lstatSync(p, { throwIfNoEntry: false });
  if (st?.isSymbolicLink()) return;
  if (st) {
    try {
      fs.rmdirSync(p);
    } catch {
      return; // layers already there (a store from before): they stay
    }
  }
  mkdirp(store.root);
  fs.symlinkSync(path.join(local, 'layers'), p);
}

async function createSettings(store: Store, root: string | undefined): Promise<StorageSettings> {
  const { probeHost } = await import('../host/probe');
  const layout = layoutOf(store.root, undefined, process.getuid?.() ?? 0);
  if (layout.kind === 'refuse') throw new BurrowError('ESTORE_NETWORK', layout.message, layout.fix);
  const local = layout.kind === 'redirect' ? layout.local : undefined;
  if (local) ensureLocal(local);
  // With a local directory, the driver and whether containers can run are about it (the probe
  // tests overlay there), as `burrow info` reports them.
  const report = probeHost({ root }, local);
  const notice =
    layout.kind === 'redirect'
      ? `burrow: note: the store ${store.root} is on ${layout.fs}, where overlay and subordinate-id owners do not work: its layers and its containers' writable layers go to ${layout.local} on this machine's disk; blobs and images stay in the store. To keep everything in one place, use a store on a local disk (--root DIR or BURROW_ROOT=DIR).\n`
      : '';
  if (!report.canRunContainers) {
    const fails = report.checks.filter((c) => c.verdict === 'fail').map((c) => `${c.title}: ${c.evidence}`);
    throw new BurrowError('EUSAGE', `containers cannot run on this host: ${fails.join('; ')}`, 'run `burrow info` for the details and fixes');
  }
  const settings: StorageSettings = { ...settingsFromReport(report), ...(local ? { local } : {}), ...{ host: hostKey(local ?? store.root, report.uid) } };
  if (local) linkLayers(store, local);
  store.saveSettings(settings);
  if (notice) process.stderr.write(notice);
  if (settings.idMode === 'single') {
    process.stderr.write(`burrow: note: no subordinate id range for this user (${report.idmap.reason}); files owned by other users in images will belong to container root. See \`burrow info\`.\n`);
  }
  return settings;
}

/**
 * The store's settings, probing the host the first time, with the driver this command asked
 * for (`--storage-driver`, else BURROW_STORAGE_DRIVER) in place of the store's.
 */
export async function storeSettings(store: Store, root: string | undefined, driverFlag?: string): Promise<StorageSettings> {
  const saved = store.settings() ?? (await createSettings(store, root));
  const local = localRoot(saved);
  if (local) ensureLocal(local);
  const here = hostDriver(saved, hostKey(local ?? store.root)) ?? (await recheckHost(store, root, saved));
  const env = process.env.BURROW_STORAGE_DRIVER;
  const driver = driverFlag ? parseDriver(driverFlag, '--storage-driver') : env ? parseDriver(env, 'BURROW_STORAGE_DRIVER') : here;
  return driver === saved.driver ? saved : { ...saved, driver };
}

// ---- the host a store is used on ------------------------------------------------------------

/**
 * What the saved driver and id mapping depend on, as one string: the kernel (its release), the
 * filesystem where layers and writable layers live (statfs magic; a home seen through NFS on one
 * machine and a local disk on another differs), and for an ordinary user whether the files give
 * them a subordinate range. Not the host name: the nodes of a cluster share kernel and
 * filesystems, and one check serves them all. Cheap (no probe): every command that uses the
 * settings computes it.
 */
export function hostKey(dir: string, uid = process.getuid?.() ?? 0): string {
  const magic = (statfsMagic(dir) ?? 0).toString(16);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const ranges = uid === 0 ? 'root' : (require('../host/subid') as typeof import('../host/subid')).hasSubidRanges() ? 'subid' : 'nosubid';
  return `${os.release()} fs=${magic} ${ranges}`;
}

/** Hosts remembered at most: the oldest are forgotten (and checked again if they come back). */
const MAX_HOSTS = 32;

/** The driver the store uses where this command runs, if that was decided already. */
export function driverHere(store: Store): Driver | undefined {
  const s = store.settings();
  return s && hostDriver(s, hostKey(localRoot(s) ?? store.root));
}

/** The host a store's settings were made or last migrated on (stores from before: none). */
function savedHost(s: StorageSettings): string | undefined {
  const v = (s as { host?: unknown }).host;
  return typeof v === 'string' ? v : undefined;
}

/** Drivers found to work on other hosts than savedHost (`host key → driver`). */
function savedHosts(s: StorageSettings): Record<string, Driver> {
  const v = (s as { hosts?: unknown }).hosts;
  if (typeof v !== 'object' || v === null) return {};
  return Object.fromEntries(Object.entries(v).filter((e): e is [string, Driver] => (DRIVERS as readonly unknown[]).includes(e[1])));
}

/** The driver for this host, if it was decided here already. */
export function hostDriver(s: StorageSettings, key: string): Driver | undefined {
  if (savedHost(s) === key) return s.driver;
  return savedHosts(s)[key];
}

/** Whether `driver` works on the host the report describes. */
export function driverWorks(driver: Driver, st: HostReport['storage']): boolean {
  // A store on a network filesystem keeps its layers on a local disk (`local`), where the probe
  // tested overlay; without one, overlay upper directories cannot be on it.
  if (driver === 'overlay') return st.nativeOverlay === true && (!st.networkFs || st.local !== null);
  if (driver === 'fuse-overlayfs') return st.fuseOverlayfs !== null && st.devFuseUsable;
  return true;
}

/** What an id-mapping mode means in a message. */
const MODE_WORDS: Record<string, string> = { single: 'single-id mode (no subordinate range)', subuid: 'a subordinate id range', root: "root's identity mapping" };

/**
 * A store used on a host it was not checked on (another machine, kernel or filesystem, or a
 * range added or removed): probes this host, keeps the saved driver if it works here, else takes
 * the probe's and says so in one line, and remembers the choice for this host. A different id
 * mapping cannot be taken on the fly (the layers are unpacked for the saved one): it is named,
 * with `burrow system migrate`, and the saved mapping stays in use.
 */
async function recheckHost(store: Store, root: string | undefined, saved: StorageSettings): Promise<Driver> {
  const local = localRoot(saved);
  const { probeHost } = await import('../host/probe');
  const report = probeHost({ root }, local);
  const key = hostKey(local ?? store.root, report.uid);
  let driver = saved.driver;
  if (!driverWorks(saved.driver, report.storage) && report.storage.driver !== saved.driver) {
    driver = report.storage.driver;
    const why = saved.driver === 'overlay' ? (report.storage.nativeOverlayError ?? 'the kernel overlay test failed') : saved.driver === 'fuse-overlayfs' ? 'fuse-overlayfs or /dev/fuse is not usable' : '';
    process.stderr.write(`burrow: note: this store's driver, ${saved.driver}, does not work on this host (${why}): using ${driver} here (remembered for this host; images and layers stay shared). \`burrow system migrate\` makes it the store's driver.\n`);
  }
  const fresh = settingsFromReport(report);
  if (fresh.idMode !== saved.idMode && report.canRunContainers) {
    const fix = saved.idMode === 'single' ? 'stop your containers and run `burrow system migrate` to use the range (the image layers are unpacked again for it)' : 'run `burrow system migrate` to switch the store to what this host allows (its layers are unpacked again; stop your containers first), or use a store of its own on this host (--root)';
    process.stderr.write(`burrow: note: this store was made with ${MODE_WORDS[saved.idMode]}, and this host gives ${MODE_WORDS[fresh.idMode]}: ${fix}.\n`);
  }
  // A store from before hosts were remembered, whose driver works here: this host becomes the
  // one it was checked on. Otherwise this host's driver is remembered beside the others.
  const next = savedHost(saved) === undefined && driver === saved.driver ? { ...saved, host: key } : { ...saved, hosts: Object.fromEntries([...Object.entries(savedHosts(saved)).filter(([k]) => k !== key).slice(1 - MAX_HOSTS), [key, driver]]) };
  try {
    store.saveSettings(next);
  } catch {
    /* a read-only store still runs; the check is made again next time */
  }
  return driver;
}
