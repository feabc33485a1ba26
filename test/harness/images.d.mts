// Types of images.mjs for the TypeScript tests (tsconfig.test.json).

import type { Registry } from './registry.mjs';

export const MT: {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json';
  ociIndex: 'application/vnd.oci.image.index.v1+json';
  ociConfig: 'application/vnd.oci.image.config.v1+json';
  tar: 'application/vnd.oci.image.layer.v1.tar';
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip';
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd';
};

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface Blob {
  /** sha256:HEX */
  digest: string;
  size: number;
}

export interface Descriptor extends Blob {
  mediaType: string;
}

export interface BuiltLayer extends Descriptor {
  /** The digest of the uncompressed tar. */
  diffId: string;
  comment: string;
}

export type Compression = 'gzip' | 'zstd' | 'none';

export interface LayerSpec {
  /** An uncompressed tar (compressed in place: the file is replaced). */
  tar: string;
  compression?: Compression;
  comment?: string;
}

/** The image config's `config` object (Env, Cmd, User ...), as buildImage writes it. */
export type ContainerConfig = Record<string, unknown>;

/** The image config blob as buildImage writes it. */
export interface ImageConfigJson {
  created: string;
  architecture: string;
  os: string;
  variant?: string;
  config: ContainerConfig;
  rootfs: { type: 'layers'; diff_ids: string[] };
  history: { created: string; created_by: string }[];
}

/** An image built into an OCI layout (buildImage's result). */
export interface BuiltImage {
  layout: string;
  tag: string;
  manifest: Descriptor;
  manifestBytes: Buffer;
  config: Descriptor;
  configJson: ImageConfigJson;
  layers: BuiltLayer[];
  platform: Platform;
}

/** What an unpacked rootfs of the main image must and must not have. */
export interface MainImageExpect {
  present: string[];
  absent: string[];
  hardlinks: [string, string][];
  symlinks: Record<string, string>;
  owners: Record<string, number>;
  contents: Record<string, string>;
  big: { path: string; size: number; digest: string };
}

export interface MainImage extends BuiltImage {
  expect: MainImageExpect;
}

/** An index of linux/amd64 and linux/arm64/v8 images (buildMultiPlatformImage's result). */
export interface MultiPlatformImage {
  layout: string;
  tag: string;
  index: Descriptor;
  indexBytes: Buffer;
  images: { amd64: BuiltImage; arm64: BuiltImage };
  multi: true;
}

/** An entry of ustar's archive; nothing is cleaned, hostile names stay as given. */
export interface UstarEntry {
  name: string;
  type: 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';
  content?: string | Buffer;
  linkname?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  uname?: string;
  gname?: string;
  mtime?: number;
  devmajor?: number;
  devminor?: number;
}

export type HostileName = 'dotdot' | 'absolute' | 'symlink' | 'hardlink' | 'whiteout' | 'device';

export interface HostileLayer {
  description: string;
  entries: UstarEntry[];
}

export interface HostileImage extends BuiltImage {
  name: HostileName;
  description: string;
  entries: UstarEntry[];
}

export function sha256File(file: string): string;
/** The host platform in Go's names (what an index entry for "this machine" says). */
export function hostPlatform(): Platform;
/** Adds bytes (a Buffer) or a file (a path; moved in) to the layout. */
export function addBlob(layout: string, content: Buffer | string): Blob;
export function blobPath(layout: string, digest: string): string;
/** A tar of `root` made by GNU tar; `owners` maps a relative subtree to [uid, gid]. Returns `out`. */
export function tarDirectory(root: string, out: string, owners?: Record<string, [number, number]>): string;
export function compress(tarFile: string, compression: Compression): { file: string; mediaType: string };
export function buildImage(
  dir: string,
  spec: { tag?: string; layers: LayerSpec[]; config?: ContainerConfig; platform?: Platform; annotations?: Record<string, string>; doTag?: boolean },
): BuiltImage;
export function buildMainImage(dir: string, opts?: { tag?: string; bigSize?: number }): MainImage;
export function buildBusyboxImage(dir: string, opts?: { tag?: string; config?: ContainerConfig }): BuiltImage;
export function buildSmallImage(dir: string, opts?: { tag?: string; seed?: string; size?: number }): BuiltImage;
export function buildUserImage(dir: string, opts?: { tag?: string }): BuiltImage;
export function buildMultiPlatformImage(dir: string, opts?: { tag?: string }): MultiPlatformImage;
export function ustar(entries: UstarEntry[]): Buffer;
export const HOSTILE: Record<HostileName, HostileLayer>;
/** One layout per hostile layer, each tagged `latest`. */
export function buildHostileImages<N extends HostileName = HostileName>(dir: string, names?: N[]): Record<N, HostileImage>;
/**
 * skopeo copy of an image built here to a registry from startRegistry (all platforms of a
 * multi-platform one); resolves to the pushed reference HOST/NAME:DESTTAG.
 */
export function pushImage(registry: PushTarget, image: PushableImage, name: string, destTag?: string, opts?: { skopeo?: string }): Promise<string>;

/** What pushImage reads of a registry: its address, and the CA and credentials of its mode. */
export type PushTarget = Pick<Registry, 'host' | 'mode' | 'certDir' | 'user' | 'password'>;
/** What pushImage reads of an image: an OCI layout and a tag in it (`multi`: all platforms). */
export interface PushableImage {
  layout: string;
  tag: string;
  multi?: boolean;
}
