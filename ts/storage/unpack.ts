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
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BurrowError } from '../errors';
import { runtimeBinary } from '../host/paths';
import { hexOf, pidAlive } from './fsutil';
import type { IdMap, LayerRecord, StorageSettings, Store } from './store';

/** Codes of `burrow-runtime unpack` that keep their name in TypeScript; others become ELAYER_UNPACK. */
const UNPACK_CODES = new Set(['EDIGEST_MISMATCH', 'ELAYER_UNSAFE', 'ELAYER_CORRUPT'] as const);
type UnpackCode = 'EDIGEST_MISMATCH' | 'ELAYER_UNSAFE' | 'ELAYER_CORRUPT' | 'ELAYER_UNPACK';

function unpackCode(code: string | undefined): UnpackCode {
  return code && (UNPACK_CODES as Set<string>).has(code) ? (code as UnpackCode) : 'ELAYER_UNPACK';
}

interface JobResult {
  index: number;
  ok: boolean;
  code?: string;
  error?: string;
  stats?: { diffId: string; entries: number; bytes: number; skippedChown: number; skippedDevices: number; skippedXattrs: number };
}

function mapArgs(flag: string, maps: IdMap[]): string[] {
  return maps.flatMap((m) => [flag, m.join(':')]);
}

/** Runs jobs in the store's user namespace; resolves with one result per job. */
export function runInUserns(settings: StorageSettings, jobs: object[], whiteouts: 'overlay' | 'apply' = 'overlay'): Promise<JobResult[]> {
  const args = ['unpack', '--whiteouts', whiteouts];
  if (settings.idMode !== 'root') args.push(...mapArgs('--uidmap', settings.uidMap), ...mapArgs('--gidmap', settings.gidMap));
  return new Promise((resolve, reject) => {
    const child = spawn(runtimeBinary(), args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    child.on('error', (e) => reject(new BurrowError('ERUNTIME_MISSING', `cannot run ${runtimeBinary()}: ${e.message}`, 'run `npm ci` to build burrow-runtime')));
    child.on('close', (code) => {
      const results: JobResult[] = out
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as JobResult)
        .sort((a, b) => a.index - b.index);
      if (results.length !== jobs.length) {
        reject(new BurrowError('ELAYER_UNPACK', `burrow-runtime unpack failed (exit ${code}): ${err.trim() || 'no output'}`));
        return;
      }
      for (const w of new Set(err.split('\n').filter((l) => l.includes('warning')))) process.stderr.write(`${w}\n`);
      resolve(results);
    });
    child.stdin.end(JSON.stringify(jobs));
  });
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

/**
 * Unpacks one layer blob into the store, unless it is already there. `diffId` is checked when
 * given (pulls); when not (imports), it is learnt from the stream.
 */
export async function unpackLayer(store: Store, settings: StorageSettings, digest: string, diffId: string | undefined, size: number): Promise<LayerRecord> {
  const existing = diffId ? store.layer(diffId) : undefined;
  if (existing) return existing;
  const tmp = fs.mkdtempSync(path.join(layerTmp(store), `layer-${process.pid}-${hexOf(diffId ?? digest).slice(0, 12)}-`));
  const dest = path.join(tmp, 'diff');
  fs.mkdirSync(dest);
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
    const code = unpackCode(r?.code);
    const fix =
      code === 'ELAYER_UNSAFE'
        ? 'the image is malformed or made to attack the unpacker; burrow refuses to use it (nothing was written outside the store)'
        : code === 'EDIGEST_MISMATCH'
          ? 'the layer does not match the image config: the image is corrupt or was altered'
          : undefined;
    throw new BurrowError(code, `layer ${digest}: ${r?.error ?? 'unpack failed'}`, fix);
  }
  diffId = r.stats.diffId;
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
  await removeTrees(settings, [tmp]).catch(() => undefined);
  const rec: LayerRecord = {
    diffId,
    digest,
    size,
    entries: r.stats.entries,
    bytes: r.stats.bytes,
    skippedChown: r.stats.skippedChown,
    unpackedAt: new Date().toISOString(),
  };
  store.layer(diffId) ?? store.commitLayer(rec);
  return rec;
}

/** Deletes trees whose files belong to mapped ids (layers, writable layers). */
export async function removeTrees(settings: StorageSettings, paths: string[]): Promise<void> {
  if (paths.length === 0) return;
  const results = await runInUserns(settings, paths.map((p) => ({ remove: p })));
  const bad = results.filter((r) => !r.ok);
  if (bad.length) throw new BurrowError('ELAYER_UNPACK', bad.map((b) => b.error).join('; '));
}

/**
 * Removes what killed commands left: ROOT/tmp entries (`layer-PID-…`, `import-PID`, …) and
 * half-written blob files (`HEX.tmp-PID-…`) whose process is gone. Nothing there was ever
 * trusted; this only gives the space back. Downloads' `.partial` files are kept: the next pull
 * resumes them. Work of live processes (a concurrent pull) is left alone.
 */
export async function cleanStaleTmp(store: Store, settings: StorageSettings): Promise<void> {
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
    if (fs.lstatSync(p, { throwIfNoEntry: false })?.isDirectory()) trees.push(p);
    else fs.rmSync(p, { force: true });
  }
  if (trees.length) await removeTrees(settings, trees).catch(() => undefined);
  try {
    for (const n of fs.readdirSync(store.p('blobs', 'sha256'))) {
      if (stale(n, /\.tmp-(\d+)-/)) fs.rmSync(store.p('blobs', 'sha256', n), { force: true });
    }
  } catch {
    /* no blobs yet */
  }
}
