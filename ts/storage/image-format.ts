/**
 * How the store keeps its images for `run` (docs/hpc-images.md, "The store's image format"):
 * `layers`, the unpacked layers under the store's union, or `squashfs`, one squashfs per image
 * beside its record (`ROOT/images/HEX.sqfs`, made by the conversion of `image convert`) that
 * `run` mounts with squashfuse as it mounts a `FILE.sqfs`.
 *
 * The setting is `[storage] image_format` in the config file, or BURROW_IMAGE_FORMAT:
 *   auto      (default) squashfs when the store's images directory is on a network or parallel
 *             file system, where a start that walks a tree of thousands of files is a storm of
 *             metadata requests to its servers and one file costs one open; layers elsewhere,
 *             where the tree is cheap and the union starts without a FUSE daemon.
 *   layers    always the unpacked layers (as before the setting existed).
 *   squashfs  always a squashfs per image, also on a local disk.
 *
 * With squashfs the unpacked layers are still kept where they are today: build, export, push,
 * save and the conversion itself read them, and a store without them would unpack them again
 * for each of those. What the squashfs saves is the start: no walk of the tree, and on a node
 * of a cluster that shares the store but not its local layer directory, no unpacking at all.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { IMAGE_FORMATS, loadConfig } from '../config/config';
import { BurrowError } from '../errors';
import { pidAlive } from './fsutil';
import { networkFsName, statfsMagic } from './settings';
import type { Check, HostReport } from '../host/report';
import type { Store } from './store';

export type ImageFormatSetting = 'auto' | 'layers' | 'squashfs';

export interface ImageFormat {
  /** What the store uses here. */
  format: 'layers' | 'squashfs';
  /** What was asked for, and where. */
  setting: ImageFormatSetting;
  from: 'default' | 'BURROW_IMAGE_FORMAT' | 'config';
  /** The file system of the store's images ("nfs", "ext4", …). */
  fs: string;
  /** Why, in a few words: `store on nfs`, `image_format = squashfs`. */
  reason: string;
}

/** statfs names of the local file systems worth naming in `burrow info` (others: "local"). */
const LOCAL_FS: ReadonlyMap<number, string> = new Map([
  [0xef53, 'ext4'],
  [0x58465342, 'xfs'],
  [0x9123683e, 'btrfs'],
  [0x01021994, 'tmpfs'],
  [0x794c7630, 'overlay'],
  [0x2fc12fc1, 'zfs'],
  [0x65735546, 'fuse'],
  [0xf15f, 'ecryptfs'],
]);

/**
 * The format for a setting and the statfs magic of the store's images directory. Network and
 * parallel file systems are those the store already treats as such (settings.ts, NETWORK_FS:
 * NFS, SMB/CIFS, Lustre, GPFS, AFS, CephFS, IBRIX, BeeGFS, PanFS, 9p). 9p counts: it is how VMs
 * and WSL share a host's directory, and each metadata request is a round trip to the host.
 */
export function decideImageFormat(setting: ImageFormatSetting, from: ImageFormat['from'], magic: number | undefined): ImageFormat {
  const net = magic === undefined ? undefined : networkFsName(magic);
  const fsName = net ?? (magic === undefined ? 'unknown' : (LOCAL_FS.get(magic) ?? `local, magic 0x${magic.toString(16)}`));
  const where = from === 'config' ? 'image_format' : from === 'BURROW_IMAGE_FORMAT' ? 'BURROW_IMAGE_FORMAT' : '';
  if (setting !== 'auto') return { format: setting, setting, from, fs: fsName, reason: `${where} = ${setting}` };
  if (net) return { format: 'squashfs', setting, from, fs: fsName, reason: `store on ${net}, a network file system` };
  return { format: 'layers', setting, from, fs: fsName, reason: `store on ${fsName}, a local file system` };
}

/** The setting: BURROW_IMAGE_FORMAT, else the config file's `[storage] image_format`, else auto. */
export function imageFormatSetting(env = process.env): { setting: ImageFormatSetting; from: ImageFormat['from'] } {
  const e = env.BURROW_IMAGE_FORMAT;
  if (e) {
    if (!(IMAGE_FORMATS as readonly string[]).includes(e)) throw new BurrowError('EUSAGE', `BURROW_IMAGE_FORMAT=${e} is not one of ${IMAGE_FORMATS.join(', ')}`);
    return { setting: e as ImageFormatSetting, from: 'BURROW_IMAGE_FORMAT' };
  }
  // Checked against IMAGE_FORMATS by the config file's parser (ts/config/parse.ts).
  const c = loadConfig(env).storage.imageFormat;
  return c ? { setting: c as ImageFormatSetting, from: 'config' } : { setting: 'auto', from: 'default' };
}

/**
 * The format of `store` on this machine. `magicOf` is the statfs seam (a unit test fakes it):
 * the images directory's file system decides, as that is where the squashfs files go.
 */
export function imageFormat(store: Store, magicOf: (dir: string) => number | undefined = statfsMagic, env = process.env): ImageFormat {
  const { setting, from } = imageFormatSetting(env);
  return decideImageFormat(setting, from, magicOf(store.p('images')));
}

/** Where the store keeps the squashfs of image `id`. */
export function squashPathOf(store: Store, id: string): string {
  return store.p('images', `${id.replace(/^sha256:/, '')}.sqfs`);
}

/** How `burrow info` and the Engine API's /info show it: `squashfs (store on nfs, a network file system)`. */
export function describeImageFormat(f: ImageFormat): string {
  return `${f.format} (${f.reason})`;
}

/**
 * The host report with the store's image format: `storage.imageFormat` for `info --format json`,
 * and an info line in the Storage section, after the store's other lines.
 */
export function withImageFormat(report: HostReport, store: Store, magicOf?: (dir: string) => number | undefined): HostReport {
  const f = imageFormat(store, magicOf);
  // No `fix`: either format works; docs/hpc-images.md says how to choose.
  const check: Check = { id: 'storage.image-format', title: 'Image format', verdict: 'info', evidence: describeImageFormat(f) };
  const checks = [...report.checks];
  let at = checks.length;
  for (let i = checks.length - 1; i >= 0; i--) {
    if (checks[i]!.id.startsWith('storage')) {
      at = i + 1;
      break;
    }
  }
  checks.splice(at, 0, check);
  return { ...report, checks, storage: { ...report.storage, imageFormat: { format: f.format, setting: f.setting, from: f.from, fs: f.fs, reason: f.reason } } };
}

// ---- who is making a squashfs ----------------------------------------------------------------

/** A claim older than this, of a process on another machine, is taken for abandoned. */
export const FOREIGN_CLAIM_MS = 60 * 60_000;

/** The claim file of the making of `sqfs`: `.HEX.sqfs.making`, holding `HOST PID`. */
export function claimPathOf(sqfs: string): string {
  return path.join(path.dirname(sqfs), `.${path.basename(sqfs)}.making`);
}

/**
 * Whether a claim was abandoned: its process, on this machine, is gone. The store may be shared
 * by the machines of a cluster, where another's pid means nothing here: such a claim is
 * abandoned only once older than any conversion (FOREIGN_CLAIM_MS). Undefined: no claim (or one
 * released while it was read).
 */
export function claimAbandoned(marker: string, now = Date.now(), host = os.hostname()): boolean | undefined {
  let text: string;
  let mtimeMs: number;
  try {
    text = fs.readFileSync(marker, 'utf8');
    mtimeMs = fs.statSync(marker).mtimeMs;
  } catch {
    return undefined;
  }
  const m = /^(\S+) (\d+)$/.exec(text.trim());
  if (!m) return now - mtimeMs > FOREIGN_CLAIM_MS; // half-written by a writer that died, or foreign
  if (m[1] !== host) return now - mtimeMs > FOREIGN_CLAIM_MS;
  return !pidAlive(Number(m[2]));
}

/**
 * Claims the making of `sqfs`: its claim file created exclusively. One process converts an
 * image; others that start it meanwhile (a job array's 64 containers) run from its layers rather
 * than wait or convert it again. An abandoned claim (a process killed mid-conversion) is taken
 * over. Returns the release, or undefined when another process has the claim.
 */
export function claimSquash(sqfs: string): (() => void) | undefined {
  const marker = claimPathOf(sqfs);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(marker, `${os.hostname()} ${process.pid}`, { flag: 'wx', mode: 0o600 });
      return () => fs.rmSync(marker, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return undefined;
      if (claimAbandoned(marker) === false) return undefined;
      fs.rmSync(marker, { force: true });
    }
  }
  return undefined;
}
