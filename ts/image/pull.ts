/**
 * `burrow pull`: manifest (platform-selected, digest-verified), config, then the layers —
 * downloaded several at a time, each streamed through sha256 into the store and, while it
 * arrives, unpacked by burrow-runtime from the growing file (FollowingUnpack: decompression and
 * file creation overlap the download, layers in parallel across cores). Nothing becomes visible
 * before it is verified: blobs are renamed into place after their digest matched, layers after
 * the blob's digest and their diff id matched and their files were synced, and the image record
 * — what `run` trusts — is written last.
 *
 * A failure of one layer (a refused entry, a digest mismatch, a network error) stops the other
 * downloads at once; unpacks already running are waited for (their layers are sound and are
 * kept), then the first real error is reported. A killed pull leaves `.partial` downloads, which
 * the next pull resumes, and temporary trees, which the next pull removes; one stopped with
 * Ctrl-C says so, and that `burrow image prune` drops them.
 *
 * While it runs, the pull is marked by ROOT/tmp/pull-PID (refs.ts, writerActive): a prune then
 * leaves its `.partial` downloads and its trees alone.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BurrowError } from '../errors';
import { humanSize } from '../cli/format/table';
import type { ImageRecord, StorageSettings, Store } from '../storage/store';
import { cleanStaleTmp, FollowingUnpack } from '../storage/unpack';
import { putBlob } from './importer';
import { checkLayersMatchConfig, parsePlatform, type Descriptor } from './manifest';
import { progressMode, transferRenderer, type LayerStatus, type TransferHook } from './progress';
import { parseReference } from './reference';
import { RegistryClient, type RegistryOptions } from './registry';

export interface PullOptions {
  /** No progress display (only without `onEvent`). */
  quiet?: boolean;
  platform?: string;
  registry?: RegistryOptions;
  signal?: AbortSignal;
  /**
   * Where progress goes. Without it the pull draws its progress on stderr itself (what
   * callers that are not yet engine-based expect); the engine always passes one.
   */
  onEvent?: TransferHook;
  /**
   * Ctrl-C stops the pull and says what it kept (the CLI). Default: true without `onEvent`;
   * a service has no terminal and cancels through `signal`.
   */
  interruptible?: boolean;
}

export interface PullResult {
  image: ImageRecord;
  /** The digest it was pulled by (the index's for a multi-platform image). */
  digest: string;
  /** The image was here already under this name: nothing changed (Docker's "Image is up to date"). */
  upToDate: boolean;
}

const PARALLEL_DOWNLOADS = 4;

/** The error to report from several: the first that is not a consequence of our own abort. */
function firstReal(errors: unknown[]): unknown {
  return errors.find((e) => !(e instanceof BurrowError && e.code === 'ECANCELED')) ?? errors[0];
}

export async function pullImage(store: Store, settings: StorageSettings, refStr: string, opts: PullOptions = {}): Promise<ImageRecord> {
  return (await pull(store, settings, refStr, opts)).image;
}

export async function pull(store: Store, settings: StorageSettings, refStr: string, opts: PullOptions = {}): Promise<PullResult> {
  const ref = parseReference(refStr);
  store.init();
  await cleanStaleTmp(store, settings);
  const marker = store.p('tmp', `pull-${process.pid}`);
  fs.writeFileSync(marker, refStr);
  const client = new RegistryClient(opts.registry ?? {});
  const own = opts.onEvent ? undefined : transferRenderer(progressMode(!!opts.quiet));
  const emit: TransferHook = opts.onEvent ?? own!.onEvent;
  const layerEvent = (digest: string, status: LayerStatus, current?: number, total?: number): void =>
    emit({ type: 'layer', digest, status, ...(current !== undefined ? { current } : {}), ...(total !== undefined ? { total } : {}) });
  // One signal for everything this pull does: the caller's, or our own abort on a failure.
  const ac = new AbortController();
  const onAbort = (): void => ac.abort(opts.signal?.reason);
  if (opts.signal?.aborted) onAbort();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  const signal = ac.signal;
  // Ctrl-C: the downloads stop where they are (kept for resuming), the unpacks are cancelled;
  // a second Ctrl-C kills at once.
  let interrupted = false;
  const onSigint = (): void => {
    interrupted = true;
    process.off('SIGINT', onSigint);
    ac.abort(new BurrowError('ECANCELED', `pull of ${ref.familiar()}: interrupted`));
  };
  const interruptible = opts.interruptible ?? !opts.onEvent;
  if (interruptible) process.on('SIGINT', onSigint);
  try {
    emit({ type: 'start', op: 'pull', ref: ref.canonical() });
    const m = await client.getManifest(ref, { ...(opts.platform ? { platform: parsePlatform(opts.platform) } : {}), signal });
    const { config, bytes: configBytes } = await client.getConfig(ref, m.manifest, { signal });
    checkLayersMatchConfig(m.manifest, config);
    const configDigest = putBlob(store, configBytes);
    if (configDigest !== m.manifest.config.digest) {
      throw new BurrowError('EDIGEST_MISMATCH', `image config: expected ${m.manifest.config.digest}, got ${configDigest}`);
    }
    const layers = m.manifest.layers.map((d: Descriptor, i: number) => ({ desc: d, diffId: config.rootfs.diff_ids[i]!, index: i }));
    emit({ type: 'resolved', repository: ref.repository, tag: ref.digest ?? ref.tag ?? 'latest', layers: layers.map((l) => ({ digest: l.desc.digest, size: l.desc.size })) });
    // Layers already in the store are not fetched again; a layer listed twice is fetched once.
    const seen = new Set<string>();
    // A layer unpacked already (same diff id) whose blob is not here — it came from a load or an
    // import, with other compression — is not unpacked again, but its blob is fetched: the
    // record names it, and save and push read it.
    const queue = layers.filter((l) => {
      if (store.layer(l.diffId) && store.hasBlob(l.desc.digest)) {
        layerEvent(l.desc.digest, 'Already exists');
        return false;
      }
      if (seen.has(l.diffId)) return false;
      seen.add(l.diffId);
      return true;
    });
    for (const l of queue) layerEvent(l.desc.digest, 'Waiting');
    const errors: unknown[] = [];
    const fail = (err: unknown): void => {
      errors.push(err);
      ac.abort(err);
    };
    const unpacks: Promise<void>[] = [];
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < queue.length && !signal.aborted) {
        const l = queue[next++]!;
        if (store.layer(l.diffId)) {
          try {
            await client.fetchBlob(ref, l.desc, store.blobPath(l.desc.digest), { onProgress: (p) => layerEvent(l.desc.digest, 'Downloading', p.completed, p.total), signal });
          } catch (err) {
            fail(err);
            return;
          }
          layerEvent(l.desc.digest, 'Download complete');
          layerEvent(l.desc.digest, 'Pull complete');
          continue;
        }
        // Unpacked while it downloads: decompression and file creation overlap the transfer.
        const stream = new FollowingUnpack(store, settings, l.desc.digest, l.diffId, l.desc.size);
        try {
          if (!store.hasBlob(l.desc.digest)) {
            await client.fetchBlob(ref, l.desc, store.blobPath(l.desc.digest), {
              onProgress: (p) => layerEvent(l.desc.digest, 'Downloading', p.completed, p.total),
              signal,
              tap: stream,
            });
          }
        } catch (err) {
          await stream.cancel();
          fail(err);
          return;
        }
        layerEvent(l.desc.digest, 'Download complete');
        layerEvent(l.desc.digest, 'Extracting', l.desc.size, l.desc.size);
        // Handled here and now: a rejection must not wait for the downloads to finish.
        unpacks.push(
          // Committed only now that the blob's digest is checked (and the diff id, by the runtime).
          stream.finish().then(
            () => layerEvent(l.desc.digest, 'Pull complete'),
            (err: unknown) => {
              // Say which image and which of its layers: the runtime names only the entry.
              const what = `${ref.familiar()}: layer ${l.index + 1} of ${layers.length} (${l.desc.digest})`;
              const e =
                err instanceof BurrowError && err.code !== 'ECANCELED'
                  ? new BurrowError(err.code, `${what}: ${err.message.replace(/^layer sha256:[a-f0-9]{64}: /, '')}`, err.fix, { cause: err })
                  : err;
              fail(e);
            },
          ),
        );
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL_DOWNLOADS, queue.length) }, worker));
    // Unpacks pushed while we waited are included: workers have all returned by now.
    await Promise.all(unpacks);
    if (errors.length) throw firstReal(errors);
    if (signal.aborted) throw new BurrowError('ECANCELED', `pull of ${ref.familiar()}: canceled`);
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
    // A reference pinned by digest names no tag, even when it also has one (as in Docker).
    const tag = ref.tag !== undefined && ref.digest === undefined ? `${ref.name}:${ref.tag}` : undefined;
    const before = store.image(rec.id);
    const upToDate = !!before && (tag ? store.tags()[tag] === rec.id : before.repoDigests.includes(rec.repoDigests[0]!));
    store.saveImage(rec, tag);
    const digest = m.index?.digest ?? m.digest;
    emit({ type: 'digest', digest });
    return { image: store.image(rec.id)!, digest, upToDate };
  } catch (err) {
    if (interrupted) throw interruptedError(store, ref.familiar(), err);
    throw err;
  } finally {
    process.off('SIGINT', onSigint);
    opts.signal?.removeEventListener('abort', onAbort);
    own?.finish();
    client.close();
    fs.rmSync(marker, { force: true });
  }
}

/** What an interrupted pull kept on disk for the next one to resume, and how to drop it. */
function interruptedError(store: Store, name: string, cause: unknown): BurrowError {
  const dir = store.p('blobs', 'sha256');
  let files = 0;
  let bytes = 0;
  try {
    for (const n of fs.readdirSync(dir).filter((x) => x.endsWith('.partial'))) {
      files++;
      bytes += fs.statSync(path.join(dir, n), { throwIfNoEntry: false })?.size ?? 0;
    }
  } catch {
    /* no blobs */
  }
  const kept = files ? `kept ${humanSize(bytes)} of partial downloads (${files} file${files === 1 ? '' : 's'} *.partial in ${dir}); the next pull resumes them` : 'nothing was kept';
  return new BurrowError('ECANCELED', `pull of ${name} interrupted: ${kept}`, files ? 'run `burrow image prune` to drop them' : undefined, { cause });
}
