/**
 * Unpacking layers through `burrow-runtime unpack`, which runs inside a user namespace with the
 * store's id mapping (so ownership is right) and extracts in parallel. A layer is unpacked to a
 * temporary directory, its diff id checked, then renamed into place and recorded: a layer
 * directory without its record is never trusted.
 *
 * Temporary entries under ROOT/tmp carry the pid of the process that made them
 * (`layer-PID-…`), so that work left by a killed pull can be told from work in progress and
 * removed by the next command that unpacks (cleanStaleTmp).
 */
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Writable } from 'node:stream';
import type { Readable } from 'node:stream';
import { BurrowError } from '../errors';
import { readReports, runtimeBinary, runtimeError, runtimeSpawn, statusFlags, type RuntimeOutcome } from '../runtime/client';
import { hexOf, pidAlive } from './fsutil';
import { contentSize } from './refs';
import type { IdMap, LayerRecord, StorageSettings, Store } from './store';

/** Codes of `burrow-runtime unpack` that keep their name in TypeScript; others become ELAYER_UNPACK. */
const UNPACK_CODES = new Set(['EDIGEST_MISMATCH', 'ELAYER_UNSAFE', 'ELAYER_CORRUPT'] as const);
type UnpackCode = 'EDIGEST_MISMATCH' | 'ELAYER_UNSAFE' | 'ELAYER_CORRUPT' | 'ELAYER_UNPACK';

function unpackCode(code: string | undefined): UnpackCode {
  return code && (UNPACK_CODES as Set<string>).has(code) ? (code as UnpackCode) : 'ELAYER_UNPACK';
}

interface UnpackStats {
  diffId: string;
  entries: number;
  bytes: number;
  skippedChown: number;
  skippedDevices: number;
  skippedXattrs: number;
}

/** One job's line; `stats` is the job kind's own (unpack's, or pack.ts's for pack jobs). */
export interface JobResult<S = UnpackStats> {
  index: number;
  ok: boolean;
  code?: string;
  error?: string;
  stats?: S;
}

function mapArgs(flag: string, maps: IdMap[]): string[] {
  return maps.flatMap((m) => [flag, m.join(':')]);
}

/**
 * What the unpacker skipped, as the jobs' statistics count it, in its words: said once per run
 * (the runtime also writes them on its stderr, for people who run it by hand; we do not read that).
 */
const SKIPPED: ['skippedDevices' | 'skippedXattrs', string][] = [
  ['skippedDevices', 'device nodes in the layer were skipped: burrow never creates device nodes from an image (rootless it cannot; a container gets its devices from the runtime)'],
  ['skippedXattrs', 'security.* and trusted.* extended attributes in the layer were skipped (not settable rootless)'],
];

/**
 * Runs jobs in the store's user namespace; resolves with one result per job. Its failure comes
 * on the status channel (after the descriptors of `extra.stdio`) with its code, each job's
 * result on stdout: its stderr is for people and never read for meaning.
 */
export function runInUserns<S = UnpackStats>(settings: StorageSettings, jobs: object[], whiteouts: 'overlay' | 'apply' = 'overlay', extra: RunExtra = {}): Promise<JobResult<S>[]> {
  const statusFd = 3 + (extra.stdio?.length ?? 0);
  const args = [...statusFlags(statusFd), 'unpack', '--whiteouts', whiteouts];
  if (settings.idMode !== 'root') args.push(...mapArgs('--uidmap', settings.uidMap), ...mapArgs('--gidmap', settings.gidMap));
  return new Promise((resolve, reject) => {
    const child = runtimeSpawn(args, { stdio: ['pipe', 'pipe', 'ignore', ...(extra.stdio ?? []), 'pipe'] });
    extra.onSpawn?.(child);
    let out = '';
    const said: RuntimeOutcome = {};
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    readReports(child.stdio[statusFd] as Readable, (r) => {
      if (r.kind === 'error') said.failure = { code: r.code, msg: r.error };
    });
    child.on('error', (e) => reject(new BurrowError('ERUNTIME_MISSING', `cannot run ${runtimeBinary()}: ${e.message}`, 'run `npm ci` to build burrow-runtime')));
    child.on('close', (code) => {
      const results: JobResult<S>[] = out
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as JobResult<S>)
        .sort((a, b) => a.index - b.index);
      if (results.length !== jobs.length) {
        const f = said.failure;
        reject(runtimeError(`unpacking the layers failed (exit ${code})`, f ? { code: f.code, msg: f.msg } : { msg: 'it ended without a report' }, { fallback: 'ELAYER_UNPACK' }));
        return;
      }
      for (const [k, words] of SKIPPED) if (results.some((r) => ((r.stats as Partial<UnpackStats> | undefined)?.[k] ?? 0) > 0)) process.stderr.write(`burrow: warning: ${words}\n`);
      resolve(results);
    });
    child.stdin!.end(JSON.stringify(jobs));
  });
}

interface RunExtra {
  /** Descriptors the runtime inherits as 3, 4, …: 'pipe' or an open fd of ours. */
  stdio?: ('pipe' | number)[];
  onSpawn?: (child: ChildProcess) => void;
}

/**
 * Where layers are unpacked before the rename that makes them visible: the `tmp` beside the real
 * layers directory. That is ROOT/tmp, unless the store is on a network filesystem and keeps its
 * layers on a local disk (settings.ts): a rename must not cross filesystems.
 */
export function layerTmp(store: Store): string {
  const layers = store.p('layers');
  try {
    if (fs.lstatSync(layers).isSymbolicLink()) return path.join(path.dirname(fs.realpathSync(layers)), 'tmp');
  } catch {
    /* not made yet, or a dangling link (settings.ts makes its target) */
  }
  return store.p('tmp');
}

/** A fresh temporary tree for one layer: ROOT/tmp/layer-PID-…/diff. */
function layerWorkDir(store: Store, id: string): { tmp: string; dest: string } {
  const tmp = fs.mkdtempSync(path.join(layerTmp(store), `layer-${process.pid}-${hexOf(id).slice(0, 12)}-`));
  const dest = path.join(tmp, 'diff');
  fs.mkdirSync(dest);
  return { tmp, dest };
}

/** The error for a failed unpack job (its tree already removed). */
function jobError(digest: string, r: JobResult | undefined): BurrowError {
  const code = unpackCode(r?.code);
  const fix =
    code === 'ELAYER_UNSAFE'
      ? 'the image is malformed or made to attack the unpacker; burrow refuses to use it (nothing was written outside the store)'
      : code === 'EDIGEST_MISMATCH'
        ? 'the layer does not match the image config: the image is corrupt or was altered'
        : undefined;
  return new BurrowError(code, `layer ${digest}: ${r?.error ?? 'unpack failed'}`, fix);
}

/**
 * Makes an unpacked (and, by the runtime, synced) tree a trusted layer: renamed into place, the
 * rename made durable, then recorded. A layer directory without its record is never trusted.
 */
async function commitTree(store: Store, settings: StorageSettings, tmp: string, dest: string, stats: NonNullable<JobResult['stats']>, digest: string, size: number): Promise<LayerRecord> {
  const diffId = stats.diffId;
  const known = store.layer(diffId);
  if (known) {
    await removeTrees(settings, [tmp]).catch(() => undefined);
    return known;
  }
  const final = store.layerDir(diffId);
  try {
    fs.renameSync(dest, final);
  } catch (err) {
    // Another pull unpacked the same layer meanwhile: keep theirs.
    if (!['EEXIST', 'ENOTEMPTY'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
  }
  syncDir(path.dirname(final));
  await removeTrees(settings, [tmp]).catch(() => undefined);
  const rec: LayerRecord = {
    diffId,
    digest,
    size,
    entries: stats.entries,
    bytes: stats.bytes,
    skippedChown: stats.skippedChown,
    unpackedAt: new Date().toISOString(),
  };
  if (store.layer(diffId) === undefined) store.commitLayer(rec);
  return rec;
}

/** fsync of a directory, so that a rename in it survives a crash before the record does. */
function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    /* some filesystems cannot fsync a directory */
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/**
 * Unpacks one layer blob into the store, unless it is already there. `diffId` is checked when
 * given (pulls); when not (imports), it is learnt from the stream.
 */
export async function unpackLayer(store: Store, settings: StorageSettings, digest: string, diffId: string | undefined, size: number): Promise<LayerRecord> {
  const existing = diffId ? store.layer(diffId) : undefined;
  if (existing) return existing;
  const { tmp, dest } = layerWorkDir(store, diffId ?? digest);
  let r: JobResult | undefined;
  try {
    // Overlay's whiteout form whatever the driver: layers are shared by every container, and the
    // copy driver applies them when it makes a container's root (rootfs.ts).
    [r] = await runInUserns(settings, [{ blob: store.blobPath(digest), dest, ...(diffId ? { diffId } : {}) }], 'overlay');
  } catch (err) {
    await removeTrees(settings, [tmp]).catch(() => undefined);
    throw err;
  }
  if (!r?.ok || !r.stats) {
    // What a refused layer wrote (inside tmp, never outside) goes with it.
    await removeTrees(settings, [tmp]).catch(() => undefined);
    throw jobError(digest, r);
  }
  return commitTree(store, settings, tmp, dest, r.stats, digest, size);
}

/** How far the download may run ahead of what the runtime is told (bytes). */
const ANNOUNCE_STEP = 512 * 1024;

/**
 * A layer unpacked while its blob downloads, so that decompression and file creation overlap
 * the download (pull.ts). It is the download's tap (registry.ts, BlobTap): when the download
 * starts writing the blob file, `burrow-runtime unpack` is started on that same file (an
 * inherited descriptor) and told on a pipe, as the writes go on, how many bytes are there; it
 * reads no further (unpack.rs, `Following`). Nothing is trusted from this alone: `finish` commits
 * the layer only after the caller saw the download complete with the right digest, and the
 * runtime checked the diff id of what it read and synced the tree.
 *
 * A download that starts over (the file truncated or replaced: an attempt starting anywhere but
 * where the last one stopped) abandons the stream; `finish` then unpacks the complete blob the
 * ordinary way.
 */
export class FollowingUnpack {
  private work?: { tmp: string; dest: string };
  private child?: ChildProcess;
  private result?: Promise<JobResult | undefined>;
  /** What the download has written, and what the runtime was told of (at most ANNOUNCE_STEP behind). */
  private writtenBytes = -1;
  private announced = -1;
  private abandoned = false;

  constructor(
    private readonly store: Store,
    private readonly settings: StorageSettings,
    private readonly digest: string,
    private readonly diffId: string,
    private readonly size: number,
  ) {}

  /** BlobTap.start: an attempt writes `file` from `offset` on. */
  start(file: string, offset: number): void {
    if (this.abandoned) return;
    if (this.result) {
      // A resumed attempt appends to the same file; anything else invalidates what was read.
      if (offset !== this.writtenBytes) this.abandon();
      return;
    }
    this.work = layerWorkDir(this.store, this.diffId);
    const fd = fs.openSync(file, 'r');
    try {
      const job = { blob: this.store.blobPath(this.digest), dest: this.work.dest, diffId: this.diffId, follow: { progressFd: 3, blobFd: 4, size: this.size } };
      this.result = runInUserns(this.settings, [job], 'overlay', { stdio: ['pipe', fd], onSpawn: (c) => (this.child = c) }).then(
        ([r]) => r,
        // A runtime that could not run is reported by finish(), like any failed job.
        (err: unknown) => ({ index: 0, ok: false, code: err instanceof BurrowError ? err.code : 'ELAYER_UNPACK', error: (err as Error).message }),
      );
    } finally {
      // The runtime has its own copy now.
      fs.closeSync(fd);
    }
    const progress = this.progress();
    // A runtime that stopped reading (it failed; finish() says why) is no reason to fail here.
    progress?.on('error', () => undefined);
    this.writtenBytes = offset;
    this.announced = offset;
    progress?.write(`${offset}\n`);
  }

  /**
   * BlobTap.written: the first `n` bytes of the file are written. Told on in steps (one wakeup
   * of the runtime per step, not per network read), and always when the blob is complete.
   */
  written(n: number): void {
    this.writtenBytes = Math.max(this.writtenBytes, n);
    if (this.abandoned || !this.result || n <= this.announced || (n - this.announced < ANNOUNCE_STEP && n < this.size)) return;
    this.announced = n;
    this.progress()?.write(`${n}\n`);
  }

  private progress(): Writable | undefined {
    return (this.child?.stdio[3] ?? undefined) as Writable | undefined;
  }

  private abandon(): void {
    this.abandoned = true;
    // The runtime sees the pipe close before the blob's end and fails; finish() starts over.
    this.progress()?.end();
  }

  /**
   * After the download succeeded (the blob is in place, its digest checked): waits for the
   * unpack and commits the layer, or unpacks the blob now if the stream was abandoned or never
   * started (the blob was already complete).
   */
  async finish(): Promise<LayerRecord> {
    // Not abandoned: the file the runtime reads is the verified blob, whole.
    if (!this.abandoned && this.result && this.announced < this.size) this.progress()?.write(`${this.size}\n`);
    this.progress()?.end();
    const r = await this.result;
    if (this.abandoned || !r) {
      if (this.work) await removeTrees(this.settings, [this.work.tmp]).catch(() => undefined);
      return unpackLayer(this.store, this.settings, this.digest, this.diffId, this.size);
    }
    const { tmp, dest } = this.work!;
    if (!r.ok || !r.stats) {
      await removeTrees(this.settings, [tmp]).catch(() => undefined);
      throw jobError(this.digest, r);
    }
    return commitTree(this.store, this.settings, tmp, dest, r.stats, this.digest, this.size);
  }

  /** The download failed: stops the unpack and removes what it wrote. */
  async cancel(): Promise<void> {
    this.abandon();
    await this.result;
    if (this.work) await removeTrees(this.settings, [this.work.tmp]).catch(() => undefined);
  }
}

/** Deletes trees whose files belong to mapped ids (layers, writable layers). */
export async function removeTrees(settings: StorageSettings, paths: string[]): Promise<void> {
  // An empty directory (a layer's work directory once its tree is renamed into place, a build's
  // temporary directory with nothing left) or a path already gone needs no user namespace: a
  // runtime start (fork, newuidmap, newgidmap) is spared, which a build paid after every layer.
  const rest = paths.filter((p) => {
    try {
      fs.rmdirSync(p);
      return false;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code !== 'ENOENT';
    }
  });
  if (rest.length === 0) return;
  const results = await runInUserns(settings, rest.map((p) => ({ remove: p })));
  const bad = results.filter((r) => !r.ok);
  if (bad.length) throw new BurrowError('ELAYER_UNPACK', bad.map((b) => b.error).join('; '));
}

/**
 * Removes what killed commands left: ROOT/tmp entries (`layer-PID-…`, `import-PID`, …) and
 * half-written blob files (`HEX.tmp-PID-…`) whose process is gone. Nothing there was ever
 * trusted; this only gives the space back, and says how much (bytes as far as this user can
 * read them). Downloads' `.partial` files are kept: the next pull resumes them. Work of live
 * processes (a concurrent pull) is left alone.
 */
export async function cleanStaleTmp(store: Store, settings: StorageSettings): Promise<{ entries: number; bytes: number }> {
  const freed = { entries: 0, bytes: 0 };
  const stale = (name: string, re: RegExp): boolean => {
    const m = re.exec(name);
    return !!m && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]));
  };
  const names: string[] = [];
  for (const dir of new Set([store.p('tmp'), layerTmp(store)])) {
    try {
      names.push(...fs.readdirSync(dir).map((n) => path.join(dir, n)));
    } catch {
      /* no tmp yet */
    }
  }
  const trees: string[] = [];
  for (const p of names.filter((x) => stale(path.basename(x), /^[a-z]+-(\d+)(?:-|$)/))) {
    // Trees hold files of mapped ids, which only the user namespace can delete; files are ours.
    const st = fs.lstatSync(p, { throwIfNoEntry: false });
    if (!st) continue;
    freed.entries++;
    if (st.isDirectory()) {
      freed.bytes += contentSize(p);
      trees.push(p);
    } else {
      freed.bytes += st.size;
      fs.rmSync(p, { force: true });
    }
  }
  if (trees.length) await removeTrees(settings, trees).catch(() => undefined);
  try {
    for (const n of fs.readdirSync(store.p('blobs', 'sha256'))) {
      if (!stale(n, /\.tmp-(\d+)-/)) continue;
      freed.entries++;
      freed.bytes += fs.statSync(store.p('blobs', 'sha256', n), { throwIfNoEntry: false })?.size ?? 0;
      fs.rmSync(store.p('blobs', 'sha256', n), { force: true });
    }
  } catch {
    /* no blobs yet */
  }
  return freed;
}
