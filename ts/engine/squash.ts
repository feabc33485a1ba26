/**
 * One-file images for every front end (docs/hpc-images.md): `image convert --format squashfs`
 * and `image import FILE.sif`. Both read an image's flattened tree the way `burrow export` does:
 * from a transient container (never started) whose root the runtime mounts exactly as for a run,
 * inside its user and mount namespaces, so whiteouts are applied by the union and owners are
 * the container's ids; the tree streams as a tar into mksquashfs (convert) or into a file that
 * `import` takes as a one-layer image (SIF).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BurrowError } from '../errors';
import type { ContainerRecord } from '../container/records';
import type { ImageFormat } from '../storage/image-format';
import type { FileImage } from '../storage/squash';
import type { ImageRecord } from '../storage/store';
import type { EngineContext, Hooks } from './context';

export interface ConvertRequest {
  image: string;
  format: string;
  output: string;
  /** mksquashfs's threads (default: every CPU this process may use). */
  processors?: number;
  /** Stops the conversion: no file is left, the transient container is removed, the reason is thrown. */
  signal?: AbortSignal;
}

/** A container of `image` that is never started: only its root is read. */
async function transient(ctx: EngineContext, image: string, hooks: Hooks): Promise<ContainerRecord> {
  const { createContainer } = await import('./create');
  return createContainer(ctx, { image, fromLayers: true, command: ['true'], entrypoint: [], env: [], network: 'none', cgroups: 'disabled', pull: 'never' }, hooks);
}

async function drop(ctx: EngineContext, rec: ContainerRecord): Promise<void> {
  const { removeContainer } = await import('./containers');
  await removeContainer(ctx, rec, { force: true }).catch(() => undefined);
}

/** Writes IMAGE as one squashfs file; resolves with the file's path and size. */
export async function convertImage(ctx: EngineContext, req: ConvertRequest, hooks: Hooks = {}): Promise<{ file: string; bytes: number }> {
  if (req.format !== 'squashfs') throw new BurrowError('EUSAGE', `invalid --format ${req.format}: want squashfs`);
  const processors = req.processors ?? os.availableParallelism();
  if (!Number.isInteger(processors) || processors < 1) throw new BurrowError('EUSAGE', `invalid --processors ${req.processors}: want a whole number >= 1`);
  const { findImage } = await import('../image/resolve');
  const img = findImage(ctx.store, req.image);
  if (!img) throw new BurrowError('EIMAGE_NOT_FOUND', `no such image: ${req.image}`, `pull it first: burrow pull ${req.image}`);
  const { squashWriter, configPrelude } = await import('../storage/squash');
  // The config blob as it is: `run FILE` takes Env, Entrypoint, Cmd, User and WorkingDir from it.
  const configBytes = fs.readFileSync(ctx.store.blobPath(img.configDigest));
  const writer = squashWriter(req.output, processors);
  const stop = (): void => writer.abort();
  req.signal?.addEventListener('abort', stop, { once: true });
  let rec: ContainerRecord | undefined;
  try {
    req.signal?.throwIfAborted();
    rec = await transient(ctx, img.id, hooks);
    writer.stdin.write(configPrelude(configBytes));
    const { exportContainer } = await import('../container/export');
    // mksquashfs ending early (a failure, or stopped by `signal`) stops the export: its output
    // then has no reader, and the runtime would wait forever on a full pipe.
    const ended = new AbortController();
    writer.done.catch(() => ended.abort());
    await exportContainer(ctx.store, rec, writer.stdin as unknown as import('node:stream').Writable, hooks, ended.signal);
    await writer.done;
  } catch (err) {
    // mksquashfs ending first (a full disk, say) is the cause; export's broken pipe only follows.
    const own = writer.failure();
    writer.abort();
    await writer.done.catch(() => undefined);
    if (req.signal?.aborted) throw req.signal.reason;
    throw own ?? writer.failure() ?? err;
  } finally {
    req.signal?.removeEventListener('abort', stop);
    if (rec) await drop(ctx, rec);
  }
  const file = path.resolve(req.output);
  return { file, bytes: fs.statSync(file).size };
}

/**
 * A SIF as an image of the store: its system partition's tree as one layer, with the SIF's
 * environment wrapper as Entrypoint and its runscript as Cmd (ts/storage/squash.ts).
 */
export async function importSif(ctx: EngineContext, file: string, reference: string | undefined, hooks: Hooks = {}): Promise<{ id: string }> {
  if (reference) (await import('../image/reference')).parseReference(reference);
  const { openFileImage, SIF_ENTRYPOINT, SIF_RUNSCRIPT } = await import('../storage/squash');
  const sif = await openFileImage(file);
  if (sif.kind !== 'sif') throw new BurrowError('EFILE_IMAGE', `${sif.file}: a squashfs, not a SIF`, `run it directly (burrow run ${file} CMD), or import a tarball`);
  const settings = await ctx.settings();
  ctx.store.init();
  const tmp = path.join(ctx.store.p('tmp'), `import-sif-${process.pid}-${Math.random().toString(36).slice(2, 10)}.tar`);
  let rec: ContainerRecord | undefined;
  try {
    rec = await transient(ctx, sif.file, hooks);
    const out = fs.createWriteStream(tmp, { mode: 0o600 });
    const { exportContainer } = await import('../container/export');
    await exportContainer(ctx.store, rec, out, hooks);
    await new Promise<void>((resolve, reject) => (out.closed ? resolve() : out.once('close', resolve).once('error', reject)));
    const { importTarball } = await import('../image/importer');
    const img = await importTarball(ctx.store, settings, tmp, reference, { entrypoint: SIF_ENTRYPOINT, cmd: [SIF_RUNSCRIPT], source: path.basename(sif.file) });
    return { id: img.id };
  } finally {
    fs.rmSync(tmp, { force: true });
    if (rec) await drop(ctx, rec);
  }
}

// ---- the store's squashfs per image (ts/storage/image-format.ts) ----------------------------

/** What a store squashfs needs at run time, or why it cannot be used here (then: layers). */
async function runnable(driver: string): Promise<string | undefined> {
  const { squashTool } = await import('../storage/squash');
  if (!squashTool('squashfuse_ll') && !squashTool('squashfuse')) return 'squashfuse is not installed (Debian: apt-get install squashfuse)';
  if (!fs.existsSync('/dev/fuse')) return '/dev/fuse does not exist (modprobe fuse)';
  if (driver === 'copy' && !(await import('../storage/rootfs')).fuseOverlayfsProgram()) return 'the copy driver has no union to put over it and fuse-overlayfs is not installed';
  return undefined;
}

/**
 * Makes the store's squashfs of `img` if it has none: through convertImage (the image's tree
 * read through a transient container, streamed into mksquashfs, written as a temporary file
 * beside it and renamed: an interrupted conversion never leaves a partial `HEX.sqfs`).
 * Resolves true when the file exists afterwards; a failure is a warning, not the caller's
 * failure: the image is complete without it and runs from its layers.
 */
export async function makeStoreSquash(ctx: EngineContext, img: ImageRecord, hooks: Hooks = {}): Promise<boolean> {
  const { squashPathOf, claimSquash } = await import('../storage/image-format');
  const sqfs = squashPathOf(ctx.store, img.id);
  if (fs.existsSync(sqfs)) return true;
  const release = claimSquash(sqfs);
  if (!release) return false;
  const name = img.repoTags[0] ?? img.id.replace(/^sha256:/, '').slice(0, 12);
  // Ctrl-C (or a TERM) while converting: mksquashfs stops, its temporary file and the transient
  // container go, and the command ends as interrupted; the image itself is complete already.
  const ac = new AbortController();
  const interrupt = (sig: NodeJS.Signals): void => ac.abort(new BurrowError('ECANCELED', `making the store's squashfs of ${name}: interrupted (${sig})`, 'the image is in the store; its squashfs is made on its next run'));
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.once(s, interrupt);
  try {
    if (fs.existsSync(sqfs)) return true; // made meanwhile by the claim's previous owner
    await convertImage(ctx, { image: img.id, format: 'squashfs', output: sqfs, signal: ac.signal }, hooks);
    return true;
  } catch (err) {
    if (ac.signal.aborted) throw ac.signal.reason;
    hooks.warn?.(`the store keeps images as squashfs, but the one of ${name} could not be made (${(err as Error).message}): it runs from its layers`);
    return false;
  } finally {
    for (const s of signals) process.off(s, interrupt);
    release();
  }
}

/**
 * After a pull, load, import or build put images in the store: their squashfs files, when the
 * store keeps them (image_format, ts/storage/image-format.ts).
 */
export async function keepStoreSquashes(ctx: EngineContext, ids: string[], hooks: Hooks = {}): Promise<void> {
  const { imageFormat } = await import('../storage/image-format');
  if (imageFormat(ctx.store).format !== 'squashfs') return;
  for (const id of new Set(ids)) {
    const img = ctx.store.image(id);
    if (img) await makeStoreSquash(ctx, img, hooks);
  }
}

/**
 * The store's squashfs of `img` as a one-file image for `run`/`create`, with the store's record
 * (id, names) in place of the file's. An image from before the setting (or whose conversion
 * failed) is converted here, on its first start; while another process converts it, or when
 * squashfuse cannot run here, undefined: the container runs from the layers, as before.
 */
export async function squashOfImage(ctx: EngineContext, img: ImageRecord, format: ImageFormat, hooks: Hooks = {}): Promise<FileImage | undefined> {
  const why = await runnable((await ctx.settings()).driver);
  if (why) {
    hooks.warn?.(`the store keeps images as squashfs (${format.reason}), but ${why}: running from the image's layers`);
    return undefined;
  }
  if (!(await makeStoreSquash(ctx, img, hooks))) return undefined;
  const { openFileImage } = await import('../storage/squash');
  const { squashPathOf } = await import('../storage/image-format');
  const sqfs = squashPathOf(ctx.store, img.id);
  try {
    // What a start reads from the file (config, passwd, group) is kept as for `run FILE.sqfs`:
    // no unsquashfs per start while the file is the same one.
    return { ...(await openFileImage(sqfs, { keepIn: ctx.store.p('file-images') })), record: img };
  } catch (err) {
    // A derived file: a damaged one (changed by hand, a file system's fault) must not stop the
    // image from running while its layers are there.
    if (!(err instanceof BurrowError) || err.code !== 'EFILE_IMAGE') throw err;
    hooks.warn?.(`${err.message}: running from the image's layers (remove ${sqfs}: the next run makes it again)`);
    return undefined;
  }
}
