/**
 * `burrow import`: a flat root filesystem tarball (optionally gzip or zstd) becomes a one-layer
 * image, as `docker import` does. The tarball is stored as the layer blob unchanged; its diff id
 * comes from the unpacker, which hashes the uncompressed stream while extracting.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BurrowError } from '../errors';
import { writeFileAtomic } from '../storage/fsutil';
import { unpackLayer } from '../storage/unpack';
import type { ImageRecord, StorageSettings, Store } from '../storage/store';
import { hostPlatform, MEDIA_TYPES, type ImageConfig } from './manifest';
import { parseReference } from './reference';
import { archiveKind, fileHead } from './tar';

async function sha256File(file: string): Promise<{ digest: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 20 })) {
    h.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { digest: `sha256:${h.digest('hex')}`, size };
}

/** Stores bytes as a blob; returns its digest. */
export function putBlob(store: Store, bytes: Buffer): string {
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  if (!store.hasBlob(digest)) writeFileAtomic(store.blobPath(digest), bytes);
  return digest;
}

function mediaTypeOf(file: string): string {
  const kind = archiveKind(fileHead(file));
  return kind === 'gzip' ? MEDIA_TYPES.ociLayerGzip : kind === 'zstd' ? MEDIA_TYPES.ociLayerZstd : MEDIA_TYPES.ociLayer;
}

export interface ImportOptions {
  cmd?: string[];
  /** ENTRYPOINT (a SIF's environment wrapper, ts/storage/squash.ts). */
  entrypoint?: string[];
  env?: string[];
  workingDir?: string;
  /** EXPOSE: "80", "53/udp" (what -P publishes). */
  exposedPorts?: string[];
  labels?: Record<string, string>;
  message?: string;
  /** What the history names as the source (default: the file's name). */
  source?: string;
}

export async function importTarball(store: Store, settings: StorageSettings, file: string, reference: string | undefined, opts: ImportOptions = {}): Promise<ImageRecord> {
  if (!fs.existsSync(file)) throw new BurrowError('EUSAGE', `no such file: ${file}`);
  store.init();
  const { digest, size } = await sha256File(file);
  if (!store.hasBlob(digest)) {
    const tmp = path.join(store.p('tmp'), `import-${process.pid}`);
    fs.copyFileSync(file, tmp);
    fs.renameSync(tmp, store.blobPath(digest));
  }
  const { diffId } = await unpackLayer(store, settings, digest, undefined, size);
  const plat = hostPlatform();
  const now = new Date().toISOString();
  const config: ImageConfig = {
    architecture: plat.architecture,
    os: 'linux',
    ...(plat.variant ? { variant: plat.variant } : {}),
    created: now,
    config: {
      Env: opts.env ?? ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      ...(opts.entrypoint ? { Entrypoint: opts.entrypoint } : {}),
      ...(opts.cmd ? { Cmd: opts.cmd } : {}),
      ...(opts.workingDir ? { WorkingDir: opts.workingDir } : {}),
      ...(opts.exposedPorts?.length ? { ExposedPorts: Object.fromEntries(opts.exposedPorts.map((p) => [p.includes('/') ? p : `${p}/tcp`, {}])) } : {}),
      ...(opts.labels && Object.keys(opts.labels).length ? { Labels: opts.labels } : {}),
    },
    rootfs: { type: 'layers', diff_ids: [diffId] },
    history: [{ created: now, created_by: `burrow import ${opts.source ?? path.basename(file)}`, ...(opts.message ? { comment: opts.message } : {}) }],
  };
  const configBytes = Buffer.from(JSON.stringify(config));
  const configDigest = putBlob(store, configBytes);
  const manifest = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociManifest,
    config: { mediaType: MEDIA_TYPES.ociConfig, digest: configDigest, size: configBytes.length },
    layers: [{ mediaType: mediaTypeOf(store.blobPath(digest)), digest, size }],
  };
  const manifestDigest = putBlob(store, Buffer.from(JSON.stringify(manifest)));
  const ref = reference ? parseReference(reference) : undefined;
  const rec: ImageRecord = {
    id: configDigest,
    configDigest,
    manifestDigest,
    manifestMediaType: MEDIA_TYPES.ociManifest,
    layers: [{ digest, diffId, size, mediaType: manifest.layers[0]!.mediaType }],
    repoTags: [],
    repoDigests: [],
    created: now,
    os: 'linux',
    architecture: plat.architecture,
    ...(plat.variant ? { variant: plat.variant } : {}),
    size,
    pulledAt: now,
  };
  store.saveImage(rec, ref?.canonical());
  return store.image(rec.id)!;
}
