/**
 * The small files of a container's directories (its store directory D and the runtime's
 * directory), read through a cache that one stat of the directory validates. For the API service
 * only (enableDirCache, ts/api/main.ts): it answers GET /containers/json again and again, and
 * reading every record and state file of every container each time was most of its work (a
 * one-shot CLI command would only pay the extra stat).
 *
 * Why a directory's stat is enough: every file read through this module is replaced whole by a
 * rename (the holder's write_atomic, the runtime's state.json, the engine's writeFileAtomic),
 * created (lost.json by link, start.sock by bind) or removed (clearRun, the runtime's start), and
 * each of these changes the directory's mtime and ctime. Files written in place (ctr.log) are
 * never read through it.
 *
 * The one trap is the timestamp's granularity (a kernel tick, or a second on file systems with
 * coarse times): a change in the same tick as the stat that filled the cache would leave the
 * directory's times as they were. As git does with its index ("racy git"), a directory that
 * changed less than RACY_MS before it was looked at is not cached at all but read afresh, so any
 * later change lands in a later tick and shows as a new mtime.
 *
 * Only on local file systems: an NFS client may answer a stat from attributes it cached for up
 * to a minute, where an open revalidates them (close-to-open consistency); FUSE file systems may
 * do anything. Elsewhere every read is live.
 */
import * as fs from 'node:fs';

/** The files of one directory, as they are now (through the cache when it is on). */
export interface DirReader {
  /** What identifies the directory's current contents; undefined when they are read live. */
  readonly key: string | undefined;
  /** A file's text, or undefined when it does not exist. */
  text(name: string): string | undefined;
  /** Whether an entry (any type: start.sock is a socket) exists. */
  exists(name: string): boolean;
}

/** Younger changes are not cached: above a tick (1-10 ms) and the 1-2 s of coarse file systems. */
export const RACY_MS = 2500;
/** Past this many directories the cache starts over (removed containers' entries go then). */
const MAX_DIRS = 16384;

interface Entry {
  key: string;
  texts: Map<string, string | undefined>;
  exists: Map<string, boolean>;
}

/** statfs(2) magic numbers of the local file systems whose directory times can be trusted. */
const LOCAL_FS = new Set([
  0xef53, // ext2, ext3, ext4
  0x58465342, // xfs
  0x9123683e, // btrfs
  0x01021994, // tmpfs
  0x794c7630, // overlayfs
  0xf2f52010, // f2fs
  0x2fc12fc1, // zfs
  0xca451a4e, // bcachefs
]);

let cache: Map<string, Entry> | undefined;
/** Whether a device (st_dev) holds a local file system: one statfs per device. */
const localDevs = new Map<bigint, boolean>();

function isLocal(dev: bigint, dir: string): boolean {
  let local = localDevs.get(dev);
  if (local === undefined) {
    try {
      local = LOCAL_FS.has(fs.statfsSync(dir).type);
    } catch {
      local = false;
    }
    localDevs.set(dev, local);
  }
  return local;
}
let racyMs = RACY_MS;

/** Turns the cache on (the service) or off (and empties it); tests shorten the racy window. */
export function enableDirCache(on = true, racyWindowMs = RACY_MS): void {
  cache = on ? new Map() : undefined;
  racyMs = racyWindowMs;
}

/**
 * A file's text, or undefined when it does not exist. A missing file is asked about first: a
 * stat is far cheaper than a thrown ENOENT (`ps` of 50 created containers read mostly missing
 * files and paid tens of milliseconds for the errors).
 */
export function readIfExists(file: string): string | undefined {
  if (!fs.existsSync(file)) return undefined;
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined; // removed meanwhile
  }
}

const live = (dir: string): DirReader => ({
  key: undefined,
  text: (name) => readIfExists(`${dir}/${name}`),
  exists: (name) => fs.existsSync(`${dir}/${name}`),
});

/** The files of `dir` (absolute, normalized: joined as `${dir}/${name}`). */
export function dirReader(dir: string): DirReader {
  if (!cache) return live(dir);
  // The time first: the stat must not be older than what it is compared with.
  const now = Date.now();
  const st = fs.statSync(dir, { bigint: true, throwIfNoEntry: false });
  const ms = (ns: bigint): number => Number(ns / 1_000_000n);
  if (!st || ms(st.mtimeNs) > now - racyMs || ms(st.ctimeNs) > now - racyMs || !isLocal(st.dev, dir)) {
    cache.delete(dir);
    return live(dir);
  }
  const key = `${st.dev}:${st.ino}:${st.mtimeNs}:${st.ctimeNs}`;
  let e = cache.get(dir);
  if (e?.key !== key) {
    if (cache.size >= MAX_DIRS) cache.clear();
    e = { key, texts: new Map(), exists: new Map() };
    cache.set(dir, e);
  }
  const entry = e;
  return {
    key,
    text(name) {
      if (entry.texts.has(name)) return entry.texts.get(name);
      const t = readIfExists(`${dir}/${name}`);
      entry.texts.set(name, t);
      return t;
    },
    exists(name) {
      let v = entry.exists.get(name);
      if (v === undefined) entry.exists.set(name, (v = fs.existsSync(`${dir}/${name}`)));
      return v;
    },
  };
}
