/**
 * Archives of a path in a container, as the Engine API's `archive` endpoints (what `docker cp`
 * uses both ways) want them: the stat of a path (HEAD, and the `X-Docker-Container-Path-Stat`
 * header), a tar of it (GET), and a tar extracted into a directory (PUT).
 *
 * Nothing here trusts a path or a tar: the path is resolved inside the container's root by
 * `burrow-runtime cp` (openat2 RESOLVE_IN_ROOT, O_NOFOLLOW below the start), and a tar to put is
 * first extracted by the layer unpacker (`burrow-runtime unpack`, which refuses `..`, absolute
 * names and writes through symlinks) into a private directory, then copied in by `cp`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BurrowError } from '../errors';
import { globalFlags, readReports, runtimeError, runtimeSpawn, runtimeSync, statusFlags, syncError, type RuntimeOutcome } from '../runtime/client';
import type { StorageSettings, Store } from '../storage/store';
import { withRoot } from './copy';
import type { ContainerRecord } from './records';

/** Docker's `ContainerPathStat`; `mode` is Go's os.FileMode (type bits high, permissions low). */
export interface PathStat {
  name: string;
  size: number;
  mode: number;
  mtime: string;
  linkTarget: string;
}

// Go's os.FileMode type bits.
const GO_DIR = 2 ** 31;
const GO_SYMLINK = 2 ** 27;
const GO_DEVICE = 2 ** 26;
const GO_PIPE = 2 ** 25;
const GO_SOCKET = 2 ** 24;
const GO_SETUID = 2 ** 23;
const GO_SETGID = 2 ** 22;
const GO_CHARDEV = 2 ** 21;
const GO_STICKY = 2 ** 20;

/** A Unix st_mode as Go's os.FileMode (what Docker's clients test with IsDir()). */
export function goFileMode(st: number): number {
  let m = st & 0o777;
  const t = st & 0o170000;
  if (t === 0o040000) m += GO_DIR;
  else if (t === 0o120000) m += GO_SYMLINK;
  else if (t === 0o060000) m += GO_DEVICE;
  else if (t === 0o020000) m += GO_DEVICE + GO_CHARDEV;
  else if (t === 0o010000) m += GO_PIPE;
  else if (t === 0o140000) m += GO_SOCKET;
  if (st & 0o4000) m += GO_SETUID;
  if (st & 0o2000) m += GO_SETGID;
  if (st & 0o1000) m += GO_STICKY;
  return m;
}

export function isDirMode(goMode: number): boolean {
  return goMode >= GO_DIR;
}

/** A container path as Docker takes it: relative to the container's root. */
export function containerPath(p: string): string {
  if (!p) throw new BurrowError('EUSAGE', 'archive: a path is required (?path=)');
  return path.posix.normalize(`/${p}`) + (p.endsWith('/.') ? '/.' : '');
}

/** What `p` is in the container, without following its last component; ENOPATH when it does not exist. */
export function statPath(store: Store, rec: ContainerRecord, p: string): PathStat {
  const ctr = containerPath(p).replace(/\/\.$/, '') || '/';
  return withRoot(store, rec, 'copy', (pid, startTime) => {
    const r = runtimeSync([...globalFlags(rec), 'cp', '--pid', String(pid), '--start-time', String(startTime), '--stat', '--', ctr]);
    if (r.code !== 0) {
      // Docker's words for the 404 (the docker CLI shows them).
      if (r.failure?.code === 'EPATH_NOT_FOUND') throw new BurrowError('EPATH_NOT_FOUND', `Could not find the file ${ctr} in container ${rec.name}`);
      throw syncError(`cannot stat ${ctr} in container ${rec.name}`, r);
    }
    const j = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { name: string; size: number; mode: number; mtime: number; mtimeNsec: number; linkTarget: string };
    const target = j.linkTarget && !j.linkTarget.startsWith('/') ? path.posix.join(path.posix.dirname(ctr), j.linkTarget) : j.linkTarget;
    return { name: j.name, size: j.size, mode: goFileMode(j.mode), mtime: new Date(j.mtime * 1000 + Math.floor(j.mtimeNsec / 1e6)).toISOString(), linkTarget: target };
  });
}

function scratch(store: Store, what: string): string {
  const base = store.p('tmp');
  fs.mkdirSync(base, { recursive: true, mode: 0o700 });
  return fs.mkdtempSync(path.join(base, `${what}-${process.pid}-`));
}

/**
 * Writes a tar of `p` (named by its last component, as Docker names it) to `out` and returns its
 * stat (sent before the tar, in the header). `burrow-runtime cp --out --tar` writes it from the
 * container's user namespace, so that the owners are the container's own ids, as Docker writes
 * them; `signal` stops it.
 */
export async function archiveOut(store: Store, rec: ContainerRecord, p: string, out: (st: PathStat) => Writable, signal?: AbortSignal): Promise<void> {
  const st = statPath(store, rec, p);
  const ctr = containerPath(p).replace(/\/\.$/, '') || '/';
  await withRoot(store, rec, 'copy', async (pid, startTime) => {
    const child = runtimeSpawn([...globalFlags(rec), ...statusFlags(3), 'cp', '--pid', String(pid), '--start-time', String(startTime), '--out', '--tar', '--', ctr, '-'], {
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    });
    const said: RuntimeOutcome = {};
    readReports(child.stdio[3] as Readable, (r) => {
      if (r.kind === 'error') said.failure = { code: r.code, msg: r.error };
    });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const abort = () => child.kill('SIGKILL');
    signal?.addEventListener('abort', abort, { once: true });
    const code = new Promise<number>((resolve) => {
      child.on('error', () => resolve(1));
      child.on('close', (c) => resolve(c ?? 1));
    });
    try {
      await pipeline(child.stdout!, out(st));
    } finally {
      signal?.removeEventListener('abort', abort);
    }
    if ((await code) !== 0 && !signal?.aborted) {
      throw runtimeError(`cannot copy ${ctr} out of container ${rec.name}`, said.failure ? { code: said.failure.code, msg: said.failure.msg } : { stderr: err });
    }
  });
}

export interface ArchiveInOptions {
  /** Docker's noOverwriteDirNonDir: a directory never replaces a file there, nor a file a directory. */
  noOverwriteDirNonDir?: boolean;
  /** Docker's copyUIDGID (`docker cp -a`): the tar's owners kept (as the container's ids), not root's. */
  copyUIDGID?: boolean;
}

/**
 * Extracts the tar `input` into the directory `p` of the container. The tar lands first in a
 * private directory through the layer unpacker, in the store's user namespace (its owners as the
 * container's ids); an entry with `..`, an absolute name, or one that would be written through a
 * symlink fails the whole request with nothing copied into the container.
 */
export async function archiveIn(store: Store, settings: StorageSettings, rec: ContainerRecord, p: string, input: Readable, o: ArchiveInOptions = {}): Promise<void> {
  const ctr = containerPath(p).replace(/\/\.$/, '') || '/';
  const st = statPath(store, rec, ctr);
  if (!isDirMode(st.mode)) throw new BurrowError('EUSAGE', `extraction point is not a directory: ${ctr}`);
  const tmp = scratch(store, 'archive');
  const { runInUserns, removeTrees } = await import('../storage/unpack');
  try {
    const blob = path.join(tmp, 'body.tar');
    await pipeline(input, fs.createWriteStream(blob, { mode: 0o600 }));
    const dest = path.join(tmp, 'tree');
    fs.mkdirSync(dest);
    const [res] = await runInUserns(settings, [{ blob, dest }], 'apply');
    if (!res?.ok) {
      const why = res?.error ?? 'the archive could not be extracted';
      throw new BurrowError(res?.code === 'ELAYER_UNSAFE' || res?.code === 'ELAYER_CORRUPT' ? 'EUSAGE' : 'ERUNTIME', `refusing the archive for ${ctr}: ${why}`);
    }
    if (o.noOverwriteDirNonDir) checkNoOverwrite(store, rec, ctr, dest);
    withRoot(store, rec, 'copy', (pid, startTime) => {
      const r = runtimeSync([...globalFlags(rec), 'cp', '--pid', String(pid), '--start-time', String(startTime), '--in', ...(o.copyUIDGID ? ['--archive'] : []), '--', `${dest}/.`, ctr]);
      if (r.code !== 0) throw runtimeError(`cannot copy into ${ctr} of container ${rec.name}`, { msg: r.text || `status ${r.code}` });
    });
  } finally {
    await removeTrees(settings, [tmp]).catch(() => fs.rmSync(tmp, { recursive: true, force: true }));
  }
}

/** The top-level entries of the extracted tree against what is at their place in the container. */
function checkNoOverwrite(store: Store, rec: ContainerRecord, ctr: string, tree: string): void {
  for (const name of fs.readdirSync(tree)) {
    const mine = fs.lstatSync(path.join(tree, name)).isDirectory();
    let theirs: PathStat;
    try {
      theirs = statPath(store, rec, path.posix.join(ctr, name));
    } catch (e) {
      if (e instanceof BurrowError && e.code === 'EPATH_NOT_FOUND') continue;
      throw e;
    }
    if (mine !== isDirMode(theirs.mode))
      throw new BurrowError('EUSAGE', mine ? `cannot overwrite non-directory ${path.posix.join(ctr, name)} with directory` : `cannot overwrite directory ${path.posix.join(ctr, name)} with non-directory`);
  }
}
