// Types of base-images.mjs for the TypeScript tests (tsconfig.test.json).

export type BaseImageName = 'minbase' | 'gcc';

export const CACHE: string;
export const BASE_DIR: string;
/** Seconds a first build took on the session VM (for the tests' timeouts). */
export const FIRST_BUILD: Record<BaseImageName, number>;
export const RECIPES: Record<BaseImageName, { include: string[]; cmd: string[] }>;

/** A Debian base image built by debootstrap (baseImage's result). */
export interface BaseImage {
  /** localhost/burrow-test/debian-NAME:bookworm, the name `burrow load -i archive` gives it. */
  name: string;
  recipe: BaseImageName;
  /** An OCI layout with the image tagged `tag`. */
  layout: string;
  tag: string;
  /** An oci-archive whose index names the image `name`. */
  archive: string;
  /** The image config's `config` object. */
  config: { Env: string[]; Cmd: string[] };
  /** How long its build took. */
  seconds: number;
}

/** The Debian mirror this machine's apt uses. */
export function debianMirror(): string;
export function localName(name: BaseImageName): string;
/** The base image `name`, built now if it is not in the cache (as root), else from the cache. */
export function baseImage(name: BaseImageName): BaseImage;
