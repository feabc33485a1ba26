// Types of image-compare.mjs for the TypeScript tests (tsconfig.test.json).

export type EntryType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';

/** An entry of a tar as tarEntries reads it (`type` is `type X` for a type flag it does not know). */
export interface TarEntry {
  name: string;
  type: EntryType | `type ${string}`;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname: string;
  /** MAJOR:MINOR of a device. */
  rdev?: string;
  data: Buffer;
}

/**
 * A path of an image's tree after its layers are applied. `implicit`: a directory no layer
 * lists (only its existence is known); `missing`: a hard link whose target is not in the tree;
 * `links`: the other names of a hard-linked file, comma-separated.
 */
export interface TreeEntry {
  type: TarEntry['type'];
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  ino?: number;
  size?: number;
  /** hex, of a file's content. */
  sha256?: string;
  linkname?: string;
  rdev?: string;
  links?: string;
  implicit?: boolean;
  missing?: boolean;
}

export type Tree = Map<string, TreeEntry>;

/** The image config JSON as read from the image (parsed, not checked). */
export interface ImageConfig {
  architecture?: string;
  os?: string;
  variant?: string;
  config?: Record<string, unknown> & { Env?: string[]; Labels?: Record<string, string> };
  history?: unknown[];
  [k: string]: unknown;
}

/** An image as readImage gives it: its tree, and its config (null for a plain rootfs tar). */
export interface ReadImage {
  tree: Tree;
  config: ImageConfig | null;
}

/** What readImage reads: a path (OCI layout directory, oci-archive, docker-archive, rootfs tar), or one of these. */
export type ImageSource = string | { layout: string; tag?: string } | { archive: string; tag?: string } | { rootfsTar: string } | { tree: Tree; config?: ImageConfig | null };

/** A difference: of a path's entry (`path`) or of a config field (`field`). */
export type Difference = { path: string; field?: undefined; what: string; a: unknown; b: unknown } | { field: string; path?: undefined; what: string; a: unknown; b: unknown };

export interface CompareOptions {
  /** A string ignores that path and everything under it. */
  ignorePaths?: (string | RegExp)[];
  /** Config fields to skip ('Labels.io.buildah.version', 'History', 'Env.order' ...). */
  ignoreFields?: string[];
  compareMtime?: boolean;
  /** The Config fields compared (CONFIG_FIELDS by default). */
  configFields?: string[];
}

export const CONFIG_FIELDS: string[];
export const IMAGE_FIELDS: string[];
export function tarEntries(buf: Buffer): Generator<TarEntry, void, undefined>;
/** Applies a layer (tar, gzip or zstd) to `tree` in place; returns it. */
export function applyLayer(tree: Tree, tarBuf: Buffer): Tree;
export function readImage(source: ImageSource): ReadImage;
export function compareImages(a: ReadImage | ImageSource, b: ReadImage | ImageSource, opts?: CompareOptions): Difference[];
/** One line per difference, for an assertion message. */
export function formatDifferences(diffs: Difference[]): string;
