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
import type { StorageSettings } from './store';

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
 * resolved inside `root` (never outside it) when `root` is given.
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
  /** Skip these (relative to the source directory; already decided by .dockerignore/--exclude in TypeScript). */
  exclude?: string[];
}

/** The layer of a RUN step: the overlay upper directory as an OCI layer (whiteouts as `.wh.`). */
export declare function packUpper(settings: StorageSettings, upperDir: string, outFile: string, opts?: PackOptions): Promise<PackResult>;

/** The layer of a COPY/ADD step: the entries' files under their destinations. */
export declare function packEntries(settings: StorageSettings, entries: PackEntry[], outFile: string, opts?: PackOptions): Promise<PackResult>;
