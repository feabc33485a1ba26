/**
 * Rootfs drivers (DESIGN.md, "Storage"): how a container's root filesystem is made from its
 * image's layers, which every driver shares as the store unpacked them (overlay's form:
 * whiteouts are 0/0 character devices, opaque directories carry `user.overlay.opaque`).
 *
 *   overlay         the kernel's overlay, mounted by burrow-runtime inside the container's user
 *                   namespace (`run.burrow.rootfs.overlay`, crates/burrow-core/src/runtime/mounts.rs)
 *   fuse-overlayfs  the same union served by Debian's fuse-overlayfs, which the runtime's init
 *                   starts before pivot_root (`run.burrow.rootfs.fuse-overlayfs`, runtime/rootfs.rs)
 *   copy            the layers copied in order into one directory at create, inside the store's
 *                   user namespace (owners kept, reflinks where the filesystem has them), with
 *                   whiteouts and opaque directories applied as deletions; a plain rootfs
 *
 * The driver is chosen per container (`--storage-driver`, else BURROW_STORAGE_DRIVER, else the
 * store's, which the host probe picked) and recorded with it, so that start, cp and rm use the
 * one it was created with. Each container has its own writable part: `upper` and `work` for the
 * unions, `rootfs` for the copy, in the container's directory, or on a local disk when the
 * store is on a network filesystem (settings.ts).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BurrowError } from '../errors';
import type { ContainerRecord } from '../container/records';
import { hexOf, mkdirp, removeTree } from './fsutil';
import { DRIVERS, driverHere, localRoot } from './settings';
import type { Driver, ImageRecord, StorageSettings, Store } from './store';

const CHOOSE = '--storage-driver overlay|fuse-overlayfs|copy (or BURROW_STORAGE_DRIVER)';

/** What a container record keeps of its root filesystem. */
export interface RootfsRecord {
  driver: Driver;
  /** Where its writable part is: `upper` and `work` (unions) or `rootfs` (copy). */
  dir: string;
}

/**
 * The record's rootfs, checked where it comes from disk. Records written before drivers
 * existed used the kernel overlay with `upper` and `work` in the container's directory.
 */
export function rootfsOf(rec: ContainerRecord, containerDir: string): RootfsRecord {
  const v = (rec as { rootfs?: unknown }).rootfs;
  if (typeof v === 'object' && v !== null) {
    const { driver, dir } = v as { driver?: unknown; dir?: unknown };
    if (typeof driver === 'string' && (DRIVERS as readonly string[]).includes(driver) && typeof dir === 'string' && path.isAbsolute(dir)) return { driver: driver as Driver, dir };
  }
  return { driver: 'overlay', dir: containerDir };
}

export function withRootfs<T extends object>(rec: T, rootfs: RootfsRecord): T & { rootfs: RootfsRecord } {
  return { ...rec, rootfs };
}

/** The fuse-overlayfs program on PATH (the runtime's init gets it as an absolute path). */
export function fuseOverlayfsProgram(): string | undefined {
  for (const d of (process.env.PATH ?? '').split(':').filter((x) => path.isAbsolute(x))) {
    const p = path.join(d, 'fuse-overlayfs');
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

function unusable(driver: Driver, why: string, fix: string): BurrowError {
  return new BurrowError('ESTORAGE_DRIVER', `storage driver ${driver} cannot work here: ${why}`, fix);
}

/**
 * Refuses, with the cause and the fix, a driver that cannot work on this host: checked at every
 * create because the driver may be forced, and because hosts change (fuse-overlayfs removed,
 * /dev/fuse's mode reset). The kernel overlay needs the probe's test (a mount in a user
 * namespace), made only when the store's own driver is another one.
 */
export async function checkDriver(store: Store, settings: StorageSettings, driver: Driver): Promise<{ fuseProgram?: string }> {
  if (driver === 'fuse-overlayfs') {
    const program = fuseOverlayfsProgram();
    if (!program) throw unusable(driver, `the fuse-overlayfs program is not installed (not found in PATH=${process.env.PATH ?? ''})`, `install it (Debian/Ubuntu: apt-get install fuse-overlayfs), or choose another driver: ${CHOOSE}`);
    try {
      fs.closeSync(fs.openSync('/dev/fuse', 'r+'));
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const mode = fs.statSync('/dev/fuse', { throwIfNoEntry: false })?.mode;
      const seen = mode === undefined ? 'it does not exist' : `mode ${(mode & 0o777).toString(8).padStart(4, '0')}`;
      throw unusable(driver, `/dev/fuse cannot be opened by this user (${e.code ?? e.message}; ${seen})`, `an administrator can run \`chmod 0666 /dev/fuse\` (the mode distributions ship; the FUSE module must be loaded), or choose another driver: ${CHOOSE}`);
    }
    return { fuseProgram: program };
  }
  // Not tested where overlay is the driver this store found working here (settings.ts, per host).
  if (driver === 'overlay' && driverHere(store) !== 'overlay') {
    const { probeHost } = await import('../host/probe');
    const st = probeHost({ root: localRoot(settings) ?? store.root }).storage;
    if (st.nativeOverlay !== true) {
      throw unusable(driver, `the kernel does not mount overlay in a user namespace here (${st.nativeOverlayError ?? 'not tested'})`, `use Linux 5.11+ with the store on ext4, xfs or btrfs, or choose another driver: ${CHOOSE}`);
    }
  }
  return {};
}

/**
 * Unpacks the image's layers that are not in the store (a store on a network filesystem keeps
 * its layers on each machine's local disk, and /var/tmp may be cleaned): from the blobs, which
 * stay in the store.
 */
export async function ensureLayers(store: Store, settings: StorageSettings, img: ImageRecord): Promise<void> {
  const missing = img.layers.filter((l) => !fs.existsSync(store.p('layers', `${hexOf(l.diffId)}.json`)));
  if (!missing.length) return;
  const { unpackLayer } = await import('./unpack');
  for (const l of missing) {
    if (!store.hasBlob(l.digest)) throw new BurrowError('EIMAGE_NOT_FOUND', `layer ${l.diffId} of image ${img.id} is neither unpacked nor in the store`, 'pull the image again');
    await unpackLayer(store, settings, l.digest, l.diffId, l.size);
  }
}

export interface RootfsPlan {
  record: RootfsRecord;
  /** Kernel overlay options for the runtime (spec.ts turns them into its annotations). */
  overlay?: { options: string; cwd: string };
  /** Annotations for the runtime (fuse-overlayfs). */
  annotations: Record<string, string>;
  /** Copy driver: the layers to copy, bottom first. */
  copy?: string[];
}

/**
 * Decides and prepares the container's root filesystem, except the copy itself (buildRootfs),
 * which is left until the container's configuration is known to be valid.
 */
export async function planRootfs(store: Store, settings: StorageSettings, img: ImageRecord, id: string, containerDir: string): Promise<RootfsPlan> {
  const driver = settings.driver;
  const { fuseProgram } = await checkDriver(store, settings, driver);
  await ensureLayers(store, settings, img);
  const local = localRoot(settings);
  const record: RootfsRecord = { driver, dir: local ? path.join(local, 'containers', id) : containerDir };
  mkdirp(record.dir);
  // Relative to the layers directory, top layer first: short options for images of many layers.
  const lower = [...img.layers].reverse().map((l) => hexOf(l.diffId));
  const cwd = store.p('layers');
  if (driver === 'copy') {
    mkdirp(path.join(record.dir, 'rootfs'), 0o755);
    return { record, annotations: {}, copy: img.layers.map((l) => store.layerDir(l.diffId)) };
  }
  for (const d of ['upper', 'work']) mkdirp(path.join(record.dir, d), 0o755);
  const options = `lowerdir=${lower.join(':')},upperdir=${path.join(record.dir, 'upper')},workdir=${path.join(record.dir, 'work')}`;
  if (driver === 'overlay') return { record, overlay: { options, cwd }, annotations: {} };
  return {
    record,
    annotations: {
      'run.burrow.rootfs.fuse-overlayfs': options,
      'run.burrow.rootfs.fuse-overlayfs.cwd': cwd,
      'run.burrow.rootfs.fuse-overlayfs.program': fuseProgram!,
    },
  };
}

/**
 * The copy driver's rootfs: the layers copied into `DIR/rootfs` by `burrow-runtime unpack` in
 * the store's user namespace (so owners stay what the image says), and the bundle's `rootfs`
 * pointing at it. Nothing to do for the unions, which the runtime mounts.
 */
export async function buildRootfs(settings: StorageSettings, plan: RootfsPlan, bundle: string): Promise<void> {
  if (!plan.copy) return;
  const dest = path.join(plan.record.dir, 'rootfs');
  const { runInUserns } = await import('./unpack');
  const [r] = await runInUserns(settings, [{ layers: plan.copy, dest }]);
  if (!r?.ok) throw new BurrowError('ELAYER_UNPACK', `copying the image's layers into the container's root failed: ${r?.error ?? 'no result'}`);
  const link = path.join(bundle, 'rootfs');
  fs.rmSync(link, { recursive: true, force: true });
  fs.symlinkSync(dest, link);
}

/** Live fuse-overlayfs daemons of ours serving the container whose writable part is `dir`. */
export function fuseDaemons(dir: string): number[] {
  const want = `upperdir=${path.join(dir, 'upper')},`;
  const uid = process.getuid?.() ?? 0;
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (fs.statSync(`/proc/${d}`).uid !== uid) continue;
      const argv = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      if (path.basename(argv[0] ?? '') === 'fuse-overlayfs' && argv.some((a) => a.includes(want))) out.push(Number(d));
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

/** The trees of a container's root filesystem that hold what it wrote (its writable layer). */
export function writableTrees(r: RootfsRecord, containerDir: string): string[] {
  return r.dir !== containerDir ? [r.dir] : (r.driver === 'copy' ? ['rootfs'] : ['upper', 'work']).map((t) => path.join(r.dir, t));
}

/**
 * Removes the container's root filesystem: a fuse-overlayfs daemon left serving it (none
 * should be: it dies with the container's namespaces), then its writable trees, which hold
 * files of the container's other users (subordinate ids) that only the store's user namespace
 * can delete.
 */
export async function removeRootfs(settings: StorageSettings, r: RootfsRecord, containerDir: string): Promise<void> {
  if (r.driver === 'fuse-overlayfs') {
    for (const pid of fuseDaemons(r.dir)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* exited meanwhile */
      }
    }
  }
  const trees = writableTrees(r, containerDir);
  const left: string[] = [];
  for (const t of trees) {
    try {
      removeTree(t, 0);
    } catch {
      left.push(t);
    }
  }
  if (left.length) {
    const { removeTrees } = await import('./unpack');
    await removeTrees(settings, left);
  }
}
