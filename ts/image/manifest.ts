/**
 * Image manifests, indexes and configs: their media types, hand-written guards for the JSON a
 * registry or an OCI layout hands us, and platform selection in an index. Docker schema 2 and OCI
 * share one shape (a manifest: config + layers; an index: manifests with platforms), so each pair
 * is one type with its media type kept. Schema 1 is refused: it has no config digest, so an
 * image's identity could not be checked.
 */
import * as os from 'node:os';
import { BurrowError } from '../errors';
import { isDigest } from './reference';

export const MEDIA_TYPES = {
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerForeignLayer: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  ociLayerNondistributable: 'application/vnd.oci.image.layer.nondistributable.v1.tar',
  ociLayerNondistributableGzip: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  ociLayerNondistributableZstd: 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
} as const;

/** The manifest types we can use, in the order an Accept header should list them. */
export const ACCEPTED_MANIFEST_TYPES: readonly string[] = [
  MEDIA_TYPES.ociIndex,
  MEDIA_TYPES.dockerManifestList,
  MEDIA_TYPES.ociManifest,
  MEDIA_TYPES.dockerManifest,
];

const INDEX_TYPES = new Set<string>([MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerManifestList]);
const MANIFEST_TYPES = new Set<string>([MEDIA_TYPES.ociManifest, MEDIA_TYPES.dockerManifest]);
const SCHEMA1_TYPES = new Set<string>([MEDIA_TYPES.dockerSchema1, MEDIA_TYPES.dockerSchema1Signed]);

/** Manifests are small; anything bigger than this is refused before it is parsed (containerd's limit). */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/** Image configs are small too, but some carry long histories. */
export const MAX_CONFIG_BYTES = 8 * 1024 * 1024;

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
  'os.version'?: string;
  'os.features'?: string[];
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  platform?: Platform;
  artifactType?: string;
}

export interface ImageManifest {
  kind: 'manifest';
  schemaVersion: 2;
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
  subject?: Descriptor;
  artifactType?: string;
}

export interface ImageIndex {
  kind: 'index';
  schemaVersion: 2;
  mediaType: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
  subject?: Descriptor;
  artifactType?: string;
}

export type Manifest = ImageManifest | ImageIndex;

/** The runtime part of an image config (Docker's and OCI's `config` object). */
export interface ContainerConfig {
  User?: string;
  ExposedPorts?: Record<string, Record<string, never>>;
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  Volumes?: Record<string, Record<string, never>>;
  WorkingDir?: string;
  Labels?: Record<string, string>;
  StopSignal?: string;
  ArgsEscaped?: boolean;
  Healthcheck?: { Test?: string[]; Interval?: number; Timeout?: number; StartPeriod?: number; StartInterval?: number; Retries?: number };
  Shell?: string[];
  OnBuild?: string[];
}

export interface HistoryEntry {
  created?: string;
  created_by?: string;
  author?: string;
  comment?: string;
  empty_layer?: boolean;
}

export interface ImageConfig {
  architecture: string;
  os: string;
  variant?: string;
  'os.version'?: string;
  created?: string;
  author?: string;
  config: ContainerConfig;
  rootfs: { type: 'layers'; diff_ids: string[] };
  history: HistoryEntry[];
}

// ---- guards ---------------------------------------------------------------------------------

type Json = Record<string, unknown>;

function bad(what: string, why: string): BurrowError {
  return new BurrowError('EMANIFEST_INVALID', `invalid ${what}: ${why}`);
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function optString(o: Json, key: string, what: string): string | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw bad(what, `"${key}" is not a string`);
  return v;
}

function optStringArray(o: Json, key: string, what: string): string[] | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw bad(what, `"${key}" is not a list of strings`);
  return v;
}

function optStringMap(o: Json, key: string, what: string): Record<string, string> | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (!isObject(v) || !Object.values(v).every((x) => typeof x === 'string')) throw bad(what, `"${key}" is not a map of strings`);
  return { ...(v as Record<string, string>) };
}

/** Docker writes sets (ExposedPorts, Volumes) as maps to `{}`; only the keys matter. */
function optSet(o: Json, key: string, what: string): Record<string, Record<string, never>> | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) throw bad(what, `"${key}" is not an object`);
  const out: Record<string, Record<string, never>> = {};
  for (const k of Object.keys(v)) out[k] = {};
  return out;
}

function optPlatform(o: Json, what: string): Platform | undefined {
  const p = o.platform;
  if (p === undefined || p === null) return undefined;
  if (!isObject(p) || typeof p.os !== 'string' || typeof p.architecture !== 'string') {
    throw bad(what, 'platform needs "os" and "architecture" strings');
  }
  const out: Platform = { os: p.os, architecture: p.architecture };
  const variant = optString(p, 'variant', what);
  if (variant !== undefined && variant !== '') out.variant = variant;
  const version = optString(p, 'os.version', what);
  if (version !== undefined) out['os.version'] = version;
  const features = optStringArray(p, 'os.features', what);
  if (features !== undefined) out['os.features'] = features;
  return out;
}

/** Checks a content descriptor. */
export function parseDescriptor(v: unknown, what = 'descriptor'): Descriptor {
  if (!isObject(v)) throw bad(what, 'not an object');
  if (typeof v.mediaType !== 'string' || v.mediaType === '') throw bad(what, '"mediaType" missing');
  if (!isDigest(v.digest)) throw bad(what, `"digest" is not a valid digest: ${JSON.stringify(v.digest)}`);
  if (typeof v.size !== 'number' || !Number.isSafeInteger(v.size) || v.size < 0) {
    throw bad(what, `"size" is not a non-negative integer: ${JSON.stringify(v.size)}`);
  }
  const d: Descriptor = { mediaType: v.mediaType, digest: v.digest, size: v.size };
  const urls = optStringArray(v, 'urls', what);
  if (urls) d.urls = urls;
  const annotations = optStringMap(v, 'annotations', what);
  if (annotations) d.annotations = annotations;
  const platform = optPlatform(v, what);
  if (platform) d.platform = platform;
  const artifactType = optString(v, 'artifactType', what);
  if (artifactType !== undefined) d.artifactType = artifactType;
  return d;
}

function parseJson(bytes: Buffer | string, what: string, max: number): unknown {
  const size = typeof bytes === 'string' ? Buffer.byteLength(bytes) : bytes.length;
  if (size > max) throw bad(what, `${size} bytes is more than the ${max} allowed`);
  try {
    return JSON.parse(typeof bytes === 'string' ? bytes : bytes.toString('utf8'));
  } catch (err) {
    throw new BurrowError('EMANIFEST_INVALID', `invalid ${what}: not JSON (${(err as Error).message})`, undefined, { cause: err });
  }
}

function schema1(): BurrowError {
  return new BurrowError(
    'EMANIFEST_UNSUPPORTED',
    'this image uses Docker image manifest schema 1, which burrow does not support (it was deprecated in 2017 and cannot be verified)',
    'ask the publisher to push it again with a current tool, or convert it: skopeo copy --format v2s2 docker://IMAGE docker://COPY',
  );
}

/**
 * Parses a manifest or index. `contentType` is the registry's Content-Type (or the descriptor's
 * media type) when known; the JSON's own `mediaType`, when present, must agree with it, since
 * the two disagreeing is how a manifest gets read as something it is not.
 */
export function parseManifest(bytes: Buffer | string, contentType?: string): Manifest {
  const what = 'image manifest';
  const ct = contentType?.split(';')[0]?.trim().toLowerCase() || undefined;
  if (ct !== undefined && SCHEMA1_TYPES.has(ct)) throw schema1();
  const j = parseJson(bytes, what, MAX_MANIFEST_BYTES);
  if (!isObject(j)) throw bad(what, 'not a JSON object');
  if (j.schemaVersion === 1) throw schema1();
  if (j.schemaVersion !== 2) throw bad(what, `unknown schemaVersion ${JSON.stringify(j.schemaVersion)}`);
  const own = optString(j, 'mediaType', what);
  const known = (t: string | undefined): t is string => t !== undefined && (INDEX_TYPES.has(t) || MANIFEST_TYPES.has(t));
  if (own !== undefined && known(ct) && own !== ct) {
    throw bad(what, `its mediaType ${own} does not match the type it was served as (${ct})`);
  }
  // An OCI manifest may omit mediaType; then the shape decides (the OCI image spec's rule).
  let mediaType = own ?? (known(ct) ? ct : undefined);
  if (mediaType === undefined) {
    if (Array.isArray(j.manifests)) mediaType = MEDIA_TYPES.ociIndex;
    else if (isObject(j.config) && Array.isArray(j.layers)) mediaType = MEDIA_TYPES.ociManifest;
    else throw bad(what, 'neither a manifest (config, layers) nor an index (manifests)');
  }
  if (SCHEMA1_TYPES.has(mediaType)) throw schema1();
  const annotations = optStringMap(j, 'annotations', what);
  const subject = j.subject === undefined || j.subject === null ? undefined : parseDescriptor(j.subject, `${what} subject`);
  const artifactType = optString(j, 'artifactType', what);
  const extra = {
    ...(annotations ? { annotations } : {}),
    ...(subject ? { subject } : {}),
    ...(artifactType !== undefined ? { artifactType } : {}),
  };

  if (INDEX_TYPES.has(mediaType)) {
    if (!Array.isArray(j.manifests)) throw bad(what, `an index (${mediaType}) needs a "manifests" list`);
    const manifests = j.manifests.map((m, i) => parseDescriptor(m, `index entry ${i}`));
    return { kind: 'index', schemaVersion: 2, mediaType, manifests, ...extra };
  }
  if (MANIFEST_TYPES.has(mediaType)) {
    if (!Array.isArray(j.layers)) throw bad(what, '"layers" is not a list');
    const config = parseDescriptor(j.config, 'manifest config');
    const layers = j.layers.map((l, i) => parseDescriptor(l, `layer ${i}`));
    return { kind: 'manifest', schemaVersion: 2, mediaType, config, layers, ...extra };
  }
  throw new BurrowError('EMANIFEST_UNSUPPORTED', `unsupported manifest media type ${mediaType}`);
}

export function isIndex(m: Manifest): m is ImageIndex {
  return m.kind === 'index';
}

export function isIndexMediaType(t: string): boolean {
  return INDEX_TYPES.has(t);
}

export function isManifestMediaType(t: string): boolean {
  return MANIFEST_TYPES.has(t);
}

/** The compression of a layer media type, or undefined for a type that is not a layer we know. */
export function layerCompression(mediaType: string): 'gzip' | 'zstd' | 'none' | undefined {
  switch (mediaType) {
    case MEDIA_TYPES.dockerLayer:
    case MEDIA_TYPES.dockerForeignLayer:
    case MEDIA_TYPES.ociLayerGzip:
    case MEDIA_TYPES.ociLayerNondistributableGzip:
      return 'gzip';
    case MEDIA_TYPES.ociLayerZstd:
    case MEDIA_TYPES.ociLayerNondistributableZstd:
      return 'zstd';
    case MEDIA_TYPES.ociLayer:
    case MEDIA_TYPES.ociLayerNondistributable:
      return 'none';
    default:
      return undefined;
  }
}

function parseHistory(v: unknown): HistoryEntry[] {
  const what = 'image config';
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw bad(what, '"history" is not a list');
  return v.map((h, i) => {
    if (!isObject(h)) throw bad(what, `history entry ${i} is not an object`);
    const e: HistoryEntry = {};
    for (const k of ['created', 'created_by', 'author', 'comment'] as const) {
      const s = optString(h, k, what);
      if (s !== undefined) e[k] = s;
    }
    if (h.empty_layer !== undefined && h.empty_layer !== null) {
      if (typeof h.empty_layer !== 'boolean') throw bad(what, `history entry ${i}: "empty_layer" is not a boolean`);
      e.empty_layer = h.empty_layer;
    }
    return e;
  });
}

function parseContainerConfig(v: unknown): ContainerConfig {
  const what = 'image config';
  if (v === undefined || v === null) return {};
  if (!isObject(v)) throw bad(what, '"config" is not an object');
  const c: ContainerConfig = {};
  for (const k of ['User', 'WorkingDir', 'StopSignal'] as const) {
    const s = optString(v, k, what);
    if (s !== undefined && s !== '') c[k] = s;
  }
  for (const k of ['Env', 'Entrypoint', 'Cmd', 'Shell', 'OnBuild'] as const) {
    const a = optStringArray(v, k, what);
    if (a !== undefined) c[k] = a;
  }
  const labels = optStringMap(v, 'Labels', what);
  if (labels) c.Labels = labels;
  const ports = optSet(v, 'ExposedPorts', what);
  if (ports) c.ExposedPorts = ports;
  const volumes = optSet(v, 'Volumes', what);
  if (volumes) c.Volumes = volumes;
  if (typeof v.ArgsEscaped === 'boolean') c.ArgsEscaped = v.ArgsEscaped;
  if (isObject(v.Healthcheck)) {
    const h = v.Healthcheck;
    const hc: NonNullable<ContainerConfig['Healthcheck']> = {};
    const test = optStringArray(h, 'Test', what);
    if (test) hc.Test = test;
    for (const k of ['Interval', 'Timeout', 'StartPeriod', 'StartInterval', 'Retries'] as const) {
      if (typeof h[k] === 'number') hc[k] = h[k];
    }
    c.Healthcheck = hc;
  }
  return c;
}

/** Parses an image config (OCI or Docker: the fields burrow uses; others are dropped). */
export function parseImageConfig(bytes: Buffer | string): ImageConfig {
  const what = 'image config';
  const j = parseJson(bytes, what, MAX_CONFIG_BYTES);
  if (!isObject(j)) throw bad(what, 'not a JSON object');
  if (typeof j.architecture !== 'string' || typeof j.os !== 'string') throw bad(what, '"architecture" and "os" are required strings');
  if (!isObject(j.rootfs) || j.rootfs.type !== 'layers' || !Array.isArray(j.rootfs.diff_ids)) {
    throw bad(what, '"rootfs" must be {"type": "layers", "diff_ids": [...]}');
  }
  const diffIds = j.rootfs.diff_ids;
  for (const d of diffIds) if (!isDigest(d)) throw bad(what, `diff_id ${JSON.stringify(d)} is not a digest`);
  const cfg: ImageConfig = {
    architecture: j.architecture,
    os: j.os,
    config: parseContainerConfig(j.config),
    rootfs: { type: 'layers', diff_ids: diffIds as string[] },
    history: parseHistory(j.history),
  };
  const variant = optString(j, 'variant', what);
  if (variant) cfg.variant = variant;
  const osVersion = optString(j, 'os.version', what);
  if (osVersion) cfg['os.version'] = osVersion;
  const created = optString(j, 'created', what);
  if (created) cfg.created = created;
  const author = optString(j, 'author', what);
  if (author) cfg.author = author;
  return cfg;
}

/** A manifest and its config must agree on the number of layers (one diff_id per layer). */
export function checkLayersMatchConfig(manifest: ImageManifest, config: ImageConfig): void {
  if (manifest.layers.length !== config.rootfs.diff_ids.length) {
    throw bad('image', `the manifest lists ${manifest.layers.length} layers but the config has ${config.rootfs.diff_ids.length} diff_ids`);
  }
}

// ---- platforms --------------------------------------------------------------------------------

/** Go's names for Node's process.arch (GOARCH), with the variant Docker assumes. */
export function hostPlatform(): Platform {
  const arch = process.arch as string;
  switch (arch) {
    case 'x64':
      return { os: 'linux', architecture: 'amd64' };
    case 'arm64':
      return { os: 'linux', architecture: 'arm64', variant: 'v8' };
    case 'arm': {
      const v = (process.config.variables as unknown as Record<string, unknown>).arm_version;
      return { os: 'linux', architecture: 'arm', variant: `v${typeof v === 'string' || typeof v === 'number' ? v : 7}` };
    }
    case 'ia32':
      return { os: 'linux', architecture: '386' };
    case 'ppc64':
      return { os: 'linux', architecture: os.endianness() === 'LE' ? 'ppc64le' : 'ppc64' };
    case 'mipsel':
      return { os: 'linux', architecture: 'mipsle' };
    case 'mips64el':
      return { os: 'linux', architecture: 'mips64le' };
    default:
      // s390x, riscv64, loong64, mips, mips64 are spelled the same by Go.
      return { os: 'linux', architecture: arch };
  }
}

/** Normalises spellings people and old images use (x86_64, aarch64, armhf…), like containerd's platforms.Normalize. */
export function normalizePlatform(p: Platform): Platform {
  let architecture = p.architecture.toLowerCase();
  let variant = p.variant?.toLowerCase() || undefined;
  switch (architecture) {
    case 'x86_64':
    case 'x86-64':
      architecture = 'amd64';
      if (variant === 'v1') variant = undefined;
      break;
    case 'amd64':
      if (variant === 'v1') variant = undefined;
      break;
    case 'i386':
    case 'i686':
      architecture = '386';
      break;
    case 'aarch64':
    case 'arm64':
      architecture = 'arm64';
      if (variant === '8' || variant === 'v8' || variant === undefined) variant = 'v8';
      break;
    case 'armhf':
      architecture = 'arm';
      variant = 'v7';
      break;
    case 'armel':
      architecture = 'arm';
      variant = 'v6';
      break;
    case 'arm':
      if (variant !== undefined && /^[5-8]$/.test(variant)) variant = `v${variant}`;
      if (variant === undefined) variant = 'v7';
      break;
  }
  const out: Platform = { os: p.os.toLowerCase(), architecture };
  if (variant !== undefined) out.variant = variant;
  return out;
}

export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

/** Parses `os/arch[/variant]` (as in `--platform linux/arm64`). */
export function parsePlatform(s: string): Platform {
  const parts = s.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((x) => x === '')) {
    throw new BurrowError('EUSAGE', `invalid platform "${s}"`, 'write it as OS/ARCH[/VARIANT], e.g. linux/amd64 or linux/arm/v7');
  }
  const p: Platform = { os: parts[0] as string, architecture: parts[1] as string };
  if (parts[2] !== undefined) p.variant = parts[2];
  return normalizePlatform(p);
}

/**
 * How well `have` serves `want`: undefined when it cannot; lower is better. An arm CPU runs older
 * arm variants (v7 runs v6 and v5), best the closest; amd64 microarchitecture levels work alike.
 */
function platformRank(want: Platform, have: Platform): number | undefined {
  if (want.os !== have.os || want.architecture !== have.architecture) return undefined;
  if (want.variant === undefined) return have.variant === undefined ? 0 : 1;
  if (have.variant === want.variant) return 0;
  const level = (v: string | undefined): number | undefined => {
    const m = v === undefined ? null : /^v(\d+)$/.exec(v);
    return m ? Number(m[1]) : undefined;
  };
  const w = level(want.variant);
  // An amd64 entry without a variant is the baseline (v1) and runs everywhere.
  const h = have.variant === undefined && want.architecture === 'amd64' ? 1 : level(have.variant);
  if (w === undefined || h === undefined || h > w) return undefined;
  return 1 + (w - h);
}

/**
 * Picks the manifest for a platform from an index (default: this host), the closest match first
 * and, among equals, the first listed (what the publisher put first). Entries without a platform
 * and attestation manifests (platform unknown/unknown) are never picked.
 */
export function selectPlatform(index: ImageIndex, want: Platform = hostPlatform()): Descriptor {
  const w = normalizePlatform(want);
  let best: Descriptor | undefined;
  let bestRank = Infinity;
  for (const m of index.manifests) {
    if (!m.platform || m.platform.os === 'unknown' || !isManifestMediaType(m.mediaType)) continue;
    const r = platformRank(w, normalizePlatform(m.platform));
    if (r !== undefined && r < bestRank) {
      best = m;
      bestRank = r;
    }
  }
  if (best) return best;
  const available = index.manifests
    .filter((m) => m.platform && m.platform.os !== 'unknown')
    .map((m) => formatPlatform(normalizePlatform(m.platform as Platform)));
  throw new BurrowError(
    'EPLATFORM_NOT_FOUND',
    `no matching manifest for ${formatPlatform(w)} in the manifest list entries${available.length ? ` (available: ${available.join(', ')})` : ''}`,
    available.length ? `choose one with --platform, e.g. --platform ${available[0]}` : undefined,
  );
}
