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
import type { EngineContext, Hooks } from './context';

export interface ConvertRequest {
  image: string;
  format: string;
  output: string;
  /** mksquashfs's threads (default: every CPU this process may use). */
  processors?: number;
}

/** A container of `image` that is never started: only its root is read. */
async function transient(ctx: EngineContext, image: string, hooks: Hooks): Promise<ContainerRecord> {
  const { createContainer } = await import('./create');
  return createContainer(ctx, { image, command: ['true'], entrypoint: [], env: [], network: 'none', cgroups: 'disabled', pull: 'never' }, hooks);
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
  let rec: ContainerRecord | undefined;
  try {
    rec = await transient(ctx, img.id, hooks);
    writer.stdin.write(configPrelude(configBytes));
    const { exportContainer } = await import('../container/export');
    await exportContainer(ctx.store, rec, writer.stdin as unknown as import('node:stream').Writable, hooks);
    await writer.done;
  } catch (err) {
    // mksquashfs ending first (a full disk, say) is the cause; export's broken pipe only follows.
    const own = writer.failure();
    writer.abort();
    await writer.done.catch(() => undefined);
    throw own ?? writer.failure() ?? err;
  } finally {
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
