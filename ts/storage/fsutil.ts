/**
 * File-system helpers for the store: atomic writes (temp + fsync + rename, so a reader never
 * sees half a record and a crash leaves the old one) and a lock file for read-modify-write of
 * shared records (tags, container names).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface AtomicWriteOptions {
  /**
   * fsync before the rename (default). Without it the write is still atomic for readers, but a
   * crash of the machine may leave the file empty: for records that need not outlive one (a
   * --rm container's) or caches checked when read.
   */
  durable?: boolean;
}

export function writeFileAtomic(file: string, data: string | Uint8Array, mode = 0o644, opts: AtomicWriteOptions = {}): void {
  const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const fd = fs.openSync(tmp, 'w', mode);
  try {
    if (typeof data === 'string') fs.writeSync(fd, data);
    else fs.writeSync(fd, data);
    if (opts.durable !== false) fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

export function writeJsonAtomic(file: string, value: unknown, opts: AtomicWriteOptions = {}): void {
  writeFileAtomic(file, JSON.stringify(value, null, 2) + '\n', 0o644, opts);
}

export function readJson<T>(file: string, guard: (v: unknown) => v is T, fallback?: T): T {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && fallback !== undefined) return fallback;
    throw err;
  }
  const v: unknown = JSON.parse(text);
  if (!guard(v)) throw new Error(`${file}: unexpected content`);
  return v;
}

/**
 * Whether a process exists (one of another user counts: we may not signal it, but it is there).
 * A zombie does not: it has exited and holds nothing, only its exit status waits for its parent.
 * Orphans (a lock holder killed, a detached helper) are reaped by PID 1, which on some machines
 * takes more than a second; kill(pid, 0) answers "alive" until then.
 */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    // The state follows the command name, which is in parentheses and may hold anything.
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true; // no /proc to ask: kill's answer
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Takes `lockFile` if it can now: created exclusively, holding our pid; a lock whose owner died
 * is taken over. Answers null when taken, else the pid of the process that holds it (0 while
 * that process has created the file but not yet written its pid: held all the same). The one
 * protocol of withLock, the network owner's start lock (ts/network/owner.ts) and the owner's
 * own side of it (crates/burrow-core/src/net/bridge).
 */
export function tryLock(lockFile: string): number | null {
  for (;;) {
    try {
      const fd = fs.openSync(lockFile, 'wx', 0o600);
      fs.writeSync(fd, String(process.pid));
      fs.closeSync(fd);
      return null;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let owner: number;
    try {
      owner = Number(fs.readFileSync(lockFile, { encoding: 'utf8', flag: 'r' }) || '0');
    } catch (e) {
      // Released between our open and this read: try again at once.
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw e;
    }
    if (owner && !pidAlive(owner)) {
      fs.rmSync(lockFile, { force: true });
      continue;
    }
    // Held by a live process (EEXIST is how we know, not what went wrong).
    return owner;
  }
}

/**
 * Runs `fn` holding `lockFile` (tryLock). Waiting is bounded so that a bug cannot hang the CLI
 * forever.
 */
export function withLock<T>(lockFile: string, fn: () => T, timeoutMs = 10_000): T {
  const start = Date.now();
  for (let owner = tryLock(lockFile); owner !== null; owner = tryLock(lockFile)) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for the lock ${lockFile} held by pid ${owner}`);
    sleepSync(5);
  }
  try {
    return fn();
  } finally {
    fs.rmSync(lockFile, { force: true });
  }
}

/**
 * Deletes a file that may not exist: one unlink, where `fs.rmSync(p, { force: true })` stats
 * the name first (two calls, twice the requests on a network file system).
 */
export function unlinkIfThere(file: string): void {
  try {
    fs.unlinkSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

export function mkdirp(dir: string, mode = 0o700): string {
  fs.mkdirSync(dir, { recursive: true, mode });
  return dir;
}

export function hexOf(digest: string): string {
  const m = /^sha256:([a-f0-9]{64})$/.exec(digest);
  if (!m) throw new Error(`not a sha256 digest: ${digest}`);
  return m[1]!;
}

export function dirSize(dir: string): number {
  let total = 0;
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) total += fs.lstatSync(p).size;
    }
  };
  try {
    walk(dir);
  } catch {
    /* unreadable parts (other owners) are not counted */
  }
  return total;
}

const code = (err: unknown): string | undefined => (err as NodeJS.ErrnoException).code;

function removeEntries(dir: string): void {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    if (code(err) === 'ENOENT') return;
    if (code(err) === 'ENOTDIR') return unlinkIfThere(dir);
    throw err;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) removeEntries(p);
    else unlinkIfThere(p);
  }
  try {
    fs.rmdirSync(dir);
  } catch (err) {
    if (code(err) !== 'ENOENT') throw err;
  }
}

/**
 * `rm -rf` of a tree this user may delete: what fs.rmSync(recursive, force, maxRetries) does, with
 * one directory read per directory and no stat per entry (Node 20's rmSync stats every entry and
 * tries rmdir on every directory before reading it: twice the system calls, on the path of every
 * `run --rm`). A directory that is not empty when its turn comes (a writer added a file
 * meanwhile) is emptied again, up to `retries` times.
 */
export function removeTree(dir: string, retries = 5, retryDelayMs = 20): void {
  for (let attempt = 0; ; attempt++) {
    try {
      removeEntries(dir);
      return;
    } catch (err) {
      if (attempt >= retries || !['ENOTEMPTY', 'EBUSY', 'EEXIST'].includes(code(err) ?? '')) throw err;
      sleepSync(retryDelayMs * (attempt + 1));
    }
  }
}
