/**
 * `burrow push`: an image's blobs and manifest, exactly as stored (so an image pulled from one
 * registry keeps its manifest digest in another). Each blob is skipped when the repository has
 * it, mounted from another repository of the same registry when the image came from one (no
 * bytes sent), and uploaded otherwise; the manifest is put last, when every blob it names is
 * there.
 */
import * as fs from 'node:fs';
import { BurrowError } from '../errors';
import type { Store } from '../storage/store';
import { parseManifest, type Descriptor } from './manifest';
import { transferRenderer, type TransferHook } from './progress';
import { parseReference } from './reference';
import { RegistryClient, type RegistryOptions } from './registry';
import { requireImage } from './resolve';

export interface PushOptions {
  quiet?: boolean;
  registry?: RegistryOptions;
  signal?: AbortSignal;
  /** Where progress goes; without it the push draws it on stderr itself (`quiet`: nothing). */
  onEvent?: TransferHook;
}

export interface PushResult {
  /** Where it went: registry/repository:tag (or @digest). */
  destination: string;
  tag?: string;
  digest: string;
  size: number;
  /** What happened to each blob, by digest: exists, mounted (from a repository), or pushed. */
  blobs: Record<string, { action: 'exists' | 'mounted' | 'pushed'; from?: string }>;
}

const PARALLEL_UPLOADS = 4;

export async function pushImage(store: Store, source: string, destination: string | undefined, opts: PushOptions = {}): Promise<PushResult> {
  const img = requireImage(store, source);
  let dest;
  if (destination !== undefined) dest = parseReference(destination);
  else {
    // Without a destination the image is pushed under the name it was given by, which must be
    // one of its tags: an id (or id prefix, which also parses as a name) names no repository.
    let named;
    try {
      named = parseReference(source);
    } catch {
      /* an id */
    }
    if (!named || !img.repoTags.includes(named.canonical())) {
      throw new BurrowError('EUSAGE', `push: ${source} is not a name of the image, so there is nowhere to push it`, 'give a destination: burrow push IMAGE REGISTRY/REPOSITORY[:TAG]');
    }
    dest = named;
  }
  const bytes = fs.readFileSync(store.blobPath(img.manifestDigest));
  const manifest = parseManifest(bytes, img.manifestMediaType);
  if (manifest.kind !== 'manifest') throw new BurrowError('EMANIFEST_INVALID', `${source}: its stored manifest is an index`);
  // Repositories of the destination registry that already hold this image's blobs.
  const from = [...new Set([...img.repoDigests.map((d) => d.slice(0, d.indexOf('@'))), ...img.repoTags.map((t) => t.slice(0, t.lastIndexOf(':')))])]
    .filter((n) => n.startsWith(`${dest.registry}/`) && n !== dest.name)
    .map((n) => n.slice(dest.registry.length + 1));
  const client = new RegistryClient(opts.registry ?? {});
  const own = opts.onEvent ? undefined : transferRenderer(opts.quiet ? 'quiet' : process.stderr.isTTY ? 'tty' : 'plain');
  const emit: TransferHook = opts.onEvent ?? own!.onEvent;
  const signal = opts.signal ? { signal: opts.signal } : {};
  const result: PushResult = { destination: dest.canonical(), ...(dest.tag ? { tag: dest.tag } : {}), digest: '', size: bytes.length, blobs: {} };
  try {
    emit({ type: 'start', op: 'push', ref: dest.canonical() });
    const blobs: Descriptor[] = [...manifest.layers, manifest.config];
    for (const d of blobs) emit({ type: 'layer', digest: d.digest, status: 'Preparing' });
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < blobs.length) {
        const d = blobs[next++]!;
        if (await client.blobExists(dest, d.digest, signal)) {
          result.blobs[d.digest] = { action: 'exists' };
          emit({ type: 'layer', digest: d.digest, status: 'Layer already exists' });
          continue;
        }
        let mounted: string | undefined;
        for (const repo of from) {
          if (await client.mountBlob(dest, d.digest, repo, signal)) {
            mounted = repo;
            break;
          }
        }
        if (mounted) {
          result.blobs[d.digest] = { action: 'mounted', from: mounted };
          emit({ type: 'layer', digest: d.digest, status: 'Mounted', from: mounted });
          continue;
        }
        if (!store.hasBlob(d.digest)) throw new BurrowError('EIMAGE_NOT_FOUND', `${source}: blob ${d.digest} is not in the store`, 'pull the image again, then push');
        emit({ type: 'layer', digest: d.digest, status: 'Pushing', current: 0, total: d.size });
        await client.uploadBlob(dest, store.blobPath(d.digest), d, signal);
        result.blobs[d.digest] = { action: 'pushed' };
        emit({ type: 'layer', digest: d.digest, status: 'Pushed' });
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL_UPLOADS, blobs.length) }, worker));
    result.digest = await client.putManifest(dest, bytes, manifest.mediaType, signal);
    // The image is now known by this name and digest too (as after a pull).
    store.saveImage({ ...img, repoTags: [], repoDigests: [`${dest.name}@${result.digest}`] });
    emit({ type: 'pushed', ...(dest.tag ? { tag: dest.tag } : {}), digest: result.digest, size: bytes.length });
    return result;
  } finally {
    own?.finish();
    client.close();
  }
}
