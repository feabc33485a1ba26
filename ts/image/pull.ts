/**
 * `burrow pull`: manifest (platform-selected, digest-verified), config, then the layers —
 * downloaded several at a time, each streamed through sha256 into the store and unpacked by
 * burrow-runtime as soon as it is complete (so decompression of one layer overlaps the download
 * of the next, across cores). Nothing becomes visible before it is verified: blobs are renamed
 * into place after their digest matched, layers after their diff id matched, and the image
 * record — what `run` trusts — is written last.
 */
import { BurrowError } from '../errors';
import type { ImageRecord, StorageSettings, Store } from '../storage/store';
import { unpackLayer } from '../storage/unpack';
import { putBlob } from './importer';
import { checkLayersMatchConfig, parsePlatform, type Descriptor } from './manifest';
import { Progress } from './progress';
import { parseReference } from './reference';
import { RegistryClient, type RegistryOptions } from './registry';

export interface PullOptions {
  quiet?: boolean;
  platform?: string;
  registry?: RegistryOptions;
  signal?: AbortSignal;
}

const PARALLEL_DOWNLOADS = 4;

export async function pullImage(store: Store, settings: StorageSettings, refStr: string, opts: PullOptions = {}): Promise<ImageRecord> {
  const ref = parseReference(refStr);
  store.init();
  const client = new RegistryClient(opts.registry ?? {});
  const progress = new Progress(opts.quiet ? 'quiet' : process.stderr.isTTY ? 'tty' : 'plain');
  try {
    progress.line(`Trying to pull ${ref.canonical()}...`);
    const m = await client.getManifest(ref, { ...(opts.platform ? { platform: parsePlatform(opts.platform) } : {}), ...(opts.signal ? { signal: opts.signal } : {}) });
    const { config, bytes: configBytes } = await client.getConfig(ref, m.manifest, opts.signal ? { signal: opts.signal } : {});
    checkLayersMatchConfig(m.manifest, config);
    const configDigest = putBlob(store, configBytes);
    if (configDigest !== m.manifest.config.digest) {
      throw new BurrowError('EDIGEST_MISMATCH', `image config: expected ${m.manifest.config.digest}, got ${configDigest}`);
    }
    const layers = m.manifest.layers.map((d: Descriptor, i: number) => ({ desc: d, diffId: config.rootfs.diff_ids[i]! }));
    // Download with bounded parallelism; unpack each layer as soon as its blob is complete.
    const queue = layers.filter((l) => !store.layer(l.diffId));
    for (const l of layers) if (store.layer(l.diffId)) progress.done(l.desc.digest, 'Already exists');
    const unpacks: Promise<unknown>[] = [];
    let next = 0;
    const worker = async () => {
      while (next < queue.length) {
        const l = queue[next++]!;
        if (!store.hasBlob(l.desc.digest)) {
          await client.fetchBlob(ref, l.desc, store.blobPath(l.desc.digest), {
            onProgress: (p) => progress.update(l.desc.digest, p.completed, p.total),
            ...(opts.signal ? { signal: opts.signal } : {}),
          });
        }
        progress.done(l.desc.digest, 'Download complete');
        unpacks.push(
          unpackLayer(store, settings, l.desc.digest, l.diffId, l.desc.size).then(() => progress.done(l.desc.digest, 'Pull complete')),
        );
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL_DOWNLOADS, queue.length) }, worker));
    await Promise.all(unpacks);
    const manifestDigest = putBlob(store, m.bytes);
    if (m.index) putBlob(store, m.index.bytes);
    const now = new Date().toISOString();
    const rec: ImageRecord = {
      id: configDigest,
      configDigest,
      manifestDigest,
      manifestMediaType: m.mediaType,
      layers: layers.map((l) => ({ digest: l.desc.digest, diffId: l.diffId, size: l.desc.size, mediaType: l.desc.mediaType })),
      repoTags: [],
      repoDigests: [`${ref.name}@${m.index?.digest ?? m.digest}`],
      ...(config.created ? { created: config.created } : {}),
      os: config.os,
      architecture: config.architecture,
      ...(config.variant ? { variant: config.variant } : {}),
      size: layers.reduce((s, l) => s + l.desc.size, 0),
      pulledAt: now,
    };
    store.saveImage(rec, ref.tag !== undefined ? ref.canonical() : undefined);
    progress.finish();
    progress.line(`Digest: ${m.index?.digest ?? m.digest}`);
    return store.image(rec.id)!;
  } finally {
    progress.finish();
    client.close();
  }
}
