/**
 * A build's state between steps: the image config so far (with its history and diff ids) and
 * the layers it is made of, and the cache key that names this state. Intermediate states are
 * never image records of the store: a RUN step's container needs its config as a blob (that is
 * how ts/container/create.ts reads an image), and only the final state becomes an image with a
 * manifest and tags, made as ts/image/importer.ts makes one.
 */
import * as fs from 'node:fs';
import { BurrowError } from '../errors';
import { putBlob } from '../image/importer';
import { hostPlatform, MEDIA_TYPES, parsePlatform, type ImageConfig } from '../image/manifest';
import { parseReference } from '../image/reference';
import { unpackLayer } from '../storage/unpack';
import type { PackResult } from '../storage/pack';
import type { ImageRecord, LayerRef, StorageSettings, Store } from '../storage/store';

export interface BuildState {
  config: ImageConfig;
  layers: LayerRef[];
  /** The cache key of this state: a hash chain from the base through every step. */
  key: string;
}

export const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** `FROM scratch`: no layers, Docker's default PATH (as BuildKit sets it for RUN). */
export function scratchConfig(platform?: string): ImageConfig {
  const p = platform ? parsePlatform(platform) : hostPlatform();
  return {
    architecture: p.architecture,
    os: p.os || 'linux',
    ...(p.variant ? { variant: p.variant } : {}),
    config: { Env: [DEFAULT_PATH] },
    rootfs: { type: 'layers', diff_ids: [] },
    history: [],
  };
}

export function imageState(store: Store, img: ImageRecord, key: string): BuildState {
  const config = JSON.parse(fs.readFileSync(store.blobPath(img.configDigest), 'utf8')) as ImageConfig;
  config.config ??= {};
  config.history ??= [];
  return { config, layers: img.layers.map((l) => ({ ...l })), key };
}

/** A deep copy to change for the next step. */
export function cloneState(s: BuildState): BuildState {
  return { config: JSON.parse(JSON.stringify(s.config)) as ImageConfig, layers: s.layers.map((l) => ({ ...l })), key: s.key };
}

/**
 * An image record for a RUN step's container: its config stored as a blob (prepareContainer
 * reads it from there), never saved as an image of the store.
 */
export function transientImage(store: Store, s: BuildState): ImageRecord {
  const digest = putBlob(store, Buffer.from(JSON.stringify(s.config)));
  return {
    id: digest,
    configDigest: digest,
    manifestDigest: digest,
    manifestMediaType: MEDIA_TYPES.ociManifest,
    layers: s.layers,
    repoTags: [],
    repoDigests: [],
    os: s.config.os,
    architecture: s.config.architecture,
    size: 0,
    pulledAt: new Date().toISOString(),
  };
}

/**
 * A packed blob file becomes a layer of the store: moved into blobs/ under its digest, then
 * unpacked as every layer is (ts/storage/unpack.ts), so that later steps and `run` use it.
 */
export async function adoptLayer(store: Store, settings: StorageSettings, blobFile: string, r: PackResult): Promise<LayerRef> {
  if (!store.hasBlob(r.digest)) fs.renameSync(blobFile, store.blobPath(r.digest));
  else fs.rmSync(blobFile, { force: true });
  if (!store.layer(r.diffId)) await unpackLayer(store, settings, r.digest, r.diffId, r.size);
  return { digest: r.digest, diffId: r.diffId, size: r.size, mediaType: r.mediaType };
}

/** Adds a history entry (`created_by` as Docker writes it) and, for a layer, its diff id. */
export function record(s: BuildState, createdBy: string, layer?: LayerRef, comment?: string): void {
  const created = new Date().toISOString();
  s.config.created = created;
  s.config.history.push({ created, created_by: createdBy, ...(comment ? { comment } : {}), ...(layer ? {} : { empty_layer: true }) });
  if (layer) {
    s.layers.push(layer);
    s.config.rootfs.diff_ids.push(layer.diffId);
  }
}

/** The final state as an image of the store: config and OCI manifest blobs, the record, its tags. */
export function commitImage(store: Store, s: BuildState, tags: string[]): ImageRecord {
  const refs = tags.map((t) => {
    try {
      return parseReference(t).canonical();
    } catch (err) {
      throw new BurrowError('EUSAGE', `invalid tag ${t}: ${(err as Error).message}`);
    }
  });
  const configBytes = Buffer.from(JSON.stringify(s.config));
  const configDigest = putBlob(store, configBytes);
  const manifest = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociManifest,
    config: { mediaType: MEDIA_TYPES.ociConfig, digest: configDigest, size: configBytes.length },
    layers: s.layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
  };
  const manifestDigest = putBlob(store, Buffer.from(JSON.stringify(manifest)));
  const rec: ImageRecord = {
    id: configDigest,
    configDigest,
    manifestDigest,
    manifestMediaType: MEDIA_TYPES.ociManifest,
    layers: s.layers,
    repoTags: [],
    repoDigests: [],
    ...(s.config.created ? { created: s.config.created } : {}),
    os: s.config.os,
    architecture: s.config.architecture,
    ...(s.config.variant ? { variant: s.config.variant } : {}),
    size: s.layers.reduce((n, l) => n + l.size, 0),
    pulledAt: new Date().toISOString(),
  };
  store.saveImage(rec, refs[0]);
  for (const r of refs.slice(1)) store.saveImage({ ...rec, repoTags: [] }, r);
  return store.image(rec.id)!;
}
