/**
 * Making layers (the reverse of unpack.ts): `burrow-runtime unpack` jobs with a `pack` member run
 * in the store's user namespace, where every file of a layer or a container's writable layer is
 * readable and owners read as the container's ids (0, not the user's subordinate id). Used by
 * `burrow build` (ts/build): a RUN step's layer is its container's overlay upper directory taken
 * as it is (no scan of the image's tree); a COPY/ADD step's layer is a tar of the files it brings.
 *
 * A pack writes one blob file (gzip unless `compress: 'none'`; compressed in parallel as
 * independent gzip members, which every gzip reader takes as one stream) and reports its digest,
 * size and the uncompressed tar's diff id. Entries are written in a stable order (sorted by name)
 * with their own mtimes, so that packing the same tree twice gives the same bytes.
 *
 * CONTRACT (lead, for the build helpers): the functions below are implemented by the `bpack`
 * branch; ts/build uses them only through this module.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BurrowError } from '../errors';
import type { RootfsRecord } from './rootfs';
import type { StorageSettings } from './store';
import { runInUserns } from './unpack';

export interface PackResult {
  /** sha256 of the uncompressed tar (the image config's rootfs.diff_ids entry). */
  diffId: string;
  /** sha256 of the blob file as written. */
  digest: string;
  /** Size of the blob file in bytes. */
  size: number;
  /** application/vnd.oci.image.layer.v1.tar+gzip, or …tar when not compressed. */
  mediaType: string;
  /** Tar entries written (whiteouts included). */
  entries: number;
}

export interface PackOptions {
  compress?: 'gzip' | 'none';
  signal?: AbortSignal;
}

/**
 * Where a COPY/ADD entry's bytes come from:
 * - `path`: a host path (a build context file or directory; a layer directory of the store);
 *   read in the user namespace. A directory is copied recursively, its contents under `dest`
 *   (COPY's rule: the directory itself is not recreated, its contents are).
 * - `layers` + `path`: a path in the merged view of layer directories (bottom first, overlay
 *   whiteouts applied): `COPY --from=stage` and `--from=image` without mounting anything.
 * - `content`: literal bytes (a heredoc, an ADD of a downloaded URL already in a temp file is a `path`).
 * Symlinks inside a copied tree are copied as symlinks; a source that is itself a symlink is
 * resolved inside `root` (never outside it) when `root` is given: one that leads out of it (an
 * absolute target, or `..` above it) fails with ELAYER_UNSAFE. Paths are absolute. In `layers`,
 * symlinks on the way are followed as a container of those layers would (absolute targets from
 * its root). A `dest` ending in `/` (or `/` itself) names a directory: a single file goes in it
 * under its own name; otherwise a file source is written at `dest` itself. Entries later in
 * the list replace earlier ones at the same name.
 */
export type PackSource = { path: string; root?: string } | { layers: string[]; path: string } | { content: string /* base64 */ };

export interface PackEntry {
  source: PackSource;
  /** Destination in the layer, absolute in the container (`/app/`, `/usr/local/bin/tool`). */
  dest: string;
  /** COPY --chown: owner of every copied entry (parents that did not exist too). Default: 0:0 from a path/content source; kept from layers. */
  uid?: number;
  gid?: number;
  /** COPY --chmod: mode bits for every copied file and directory. */
  mode?: number;
  /**
   * Skip these (relative to the source directory; already decided by .dockerignore/--exclude in
   * TypeScript): exact paths, `a/b` not a pattern; a directory listed is skipped with everything
   * under it.
   */
  exclude?: string[];
}

/** What a pack job reports (image/pack.rs, PackStats). */
interface PackStats {
  diffId: string;
  digest: string;
  size: number;
  entries: number;
}

const GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
const TAR = 'application/vnd.oci.image.layer.v1.tar';

/** Codes of the runtime's pack jobs that keep their name here; any other failure is EPACK. */
function packError(what: string, code: string | undefined, msg: string): BurrowError {
  if (code === 'ELAYER_UNSAFE') return new BurrowError('ELAYER_UNSAFE', `${what}: ${msg}`, 'a source is a symlink (or has one on its path) that leads outside the build context; burrow does not follow it');
  return new BurrowError('EPACK', `${what}: ${msg}`);
}

async function runPack(settings: StorageSettings, what: string, pack: object, outFile: string, opts: PackOptions): Promise<PackResult> {
  const compress = opts.compress ?? 'gzip';
  if (opts.signal?.aborted) throw new BurrowError('EPACK', `${what}: stopped`);
  let stop: (() => void) | undefined;
  try {
    const [r] = await runInUserns<PackStats>(settings, [{ pack, out: outFile, compress }], 'overlay', {
      onSpawn: (child) => {
        stop = () => child.kill('SIGKILL');
        opts.signal?.addEventListener('abort', stop, { once: true });
      },
    }).catch((e: unknown) => {
      throw new BurrowError('EPACK', `${what}: ${opts.signal?.aborted ? 'stopped' : (e as Error).message}`);
    });
    if (opts.signal?.aborted) throw new BurrowError('EPACK', `${what}: stopped`);
    if (!r?.ok || !r.stats) throw packError(what, r?.code, r?.error ?? 'the pack job failed');
    const st = r.stats;
    return { diffId: st.diffId, digest: st.digest, size: st.size, entries: st.entries, mediaType: compress === 'gzip' ? GZIP : TAR };
  } catch (e) {
    // The runtime removes a file it failed to finish; a killed runtime cannot.
    fs.rmSync(outFile, { force: true });
    throw e;
  } finally {
    if (stop) opts.signal?.removeEventListener('abort', stop);
  }
}

/**
 * The upper directory of a container's root filesystem (rootfs.ts's record), for packUpper.
 * The copy driver has none: its container writes into a full copy of the image, whose changes
 * cannot be told from the image without comparing the trees.
 */
export function upperDirOf(rootfs: RootfsRecord): string {
  if (rootfs.driver === 'copy') throw noUpper(path.join(rootfs.dir, 'rootfs'));
  return path.join(rootfs.dir, 'upper');
}

function noUpper(dir: string): BurrowError {
  return new BurrowError(
    'EPACK',
    `cannot take the container's changes as a layer: ${dir} is a copy driver's root filesystem, which has no overlay upper directory`,
    'build with --storage-driver overlay or fuse-overlayfs (or BURROW_STORAGE_DRIVER)',
  );
}

/** The layer of a RUN step: the overlay upper directory as an OCI layer (whiteouts as `.wh.`). */
export async function packUpper(settings: StorageSettings, upperDir: string, outFile: string, opts: PackOptions = {}): Promise<PackResult> {
  const st = fs.statSync(upperDir, { throwIfNoEntry: false });
  // The copy driver's tree is DIR/rootfs (rootfs.ts), with no `upper` beside it.
  if (path.basename(upperDir) === 'rootfs' && !fs.existsSync(path.join(path.dirname(upperDir), 'upper'))) throw noUpper(upperDir);
  if (!st?.isDirectory()) throw new BurrowError('EPACK', `cannot take the container's changes as a layer: ${upperDir} is not a directory`);
  return runPack(settings, `packing ${upperDir}`, { upper: upperDir }, outFile, opts);
}

/** The layer of a COPY/ADD step: the entries' files under their destinations. */
export async function packEntries(settings: StorageSettings, entries: PackEntry[], outFile: string, opts: PackOptions = {}): Promise<PackResult> {
  for (const e of entries) {
    if (!path.posix.isAbsolute(e.dest)) throw new BurrowError('EPACK', `packing a layer: destination ${e.dest} is not absolute`);
  }
  return runPack(settings, 'packing a layer', { entries }, outFile, opts);
}
