/**
 * `burrow save` and `burrow load`: images to and from tar archives in the two formats other
 * tools exchange.
 *
 *   docker-archive  manifest.json ([{Config, RepoTags, Layers}]), the config as HEX.json and each
 *                   layer as an uncompressed tar named by its diff id — what `docker save` and
 *                   `skopeo copy … docker-archive:` write and read. A zstd layer is stored as it
 *                   is (HEX.tar.zst): Node cannot decompress zstd, and Docker ≥ 23 and
 *                   containers/image decompress layers they load.
 *   oci-archive     an OCI image layout in a tar (oci-layout, index.json, blobs/sha256/…) with
 *                   the blobs exactly as stored, so manifest digests survive a round trip; names
 *                   in `org.opencontainers.image.ref.name`, as skopeo writes them.
 *
 * Loading trusts nothing in the archive: entries are stored under names of our own and looked
 * up by the paths the manifests give, every blob is hashed as it is read and stored under the
 * digest computed, configs and manifests are checked against the digests that name them, and
 * layers go through the unpacker, which checks each diff id.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Writable } from 'node:stream';
import * as zlib from 'node:zlib';
import { BurrowError } from '../errors';
import { mkdirp } from '../storage/fsutil';
import type { ImageRecord, StorageSettings, Store } from '../storage/store';
import { cleanStaleTmp, unpackLayer } from '../storage/unpack';
import { putBlob } from './importer';
import {
  checkLayersMatchConfig,
  isIndexMediaType,
  layerCompression,
  MEDIA_TYPES,
  parseImageConfig,
  parseManifest,
  selectPlatform,
  type Descriptor,
} from './manifest';
import { parseReference } from './reference';
import { requireImage } from './resolve';
import { readTar, TarWriter } from './tar';

export type ArchiveFormat = 'docker-archive' | 'oci-archive';
export const ARCHIVE_FORMATS: readonly ArchiveFormat[] = ['docker-archive', 'oci-archive'];

const REF_NAME = 'org.opencontainers.image.ref.name';
const CONTAINERD_NAME = 'io.containerd.image.name';
const PARALLEL_UNPACKS = 4;

function invalid(why: string): BurrowError {
  return new BurrowError('EUSAGE', `not a valid image archive: ${why}`, 'give a file written by `burrow save`, `docker save`, `podman save` or `skopeo copy` (docker-archive or oci-archive)');
}

/** What the compression of a file is, from its first bytes. */
function sniff(file: string): 'gzip' | 'zstd' | 'none' {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(4);
    const n = fs.readSync(fd, b, 0, 4, 0);
    if (n >= 2 && b[0] === 0x1f && b[1] === 0x8b) return 'gzip';
    if (n === 4 && b.readUInt32BE(0) === 0x28b52ffd) return 'zstd';
    return 'none';
  } finally {
    fs.closeSync(fd);
  }
}

const LAYER_TYPES = { none: MEDIA_TYPES.ociLayer, gzip: MEDIA_TYPES.ociLayerGzip, zstd: MEDIA_TYPES.ociLayerZstd } as const;

async function runPool<T>(items: T[], n: number, fn: (t: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  const errors: unknown[] = [];
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length && !errors.length) {
        try {
          await fn(items[next++]!);
        } catch (err) {
          errors.push(err);
        }
      }
    }),
  );
  if (errors.length) throw errors[0];
}

// ---- save --------------------------------------------------------------------------------------

interface SaveItem {
  img: ImageRecord;
  /** The reference it was named by, when that is one of its tags. */
  name?: string;
}

function resolveForSave(store: Store, refs: string[]): SaveItem[] {
  return refs.map((r) => {
    const img = requireImage(store, r);
    let name: string | undefined;
    try {
      const c = parseReference(r).canonical();
      if (img.repoTags.includes(c)) name = c;
    } catch {
      /* an id */
    }
    for (const d of [img.configDigest, img.manifestDigest, ...img.layers.map((l) => l.digest)]) {
      if (!store.hasBlob(d)) throw new BurrowError('EIMAGE_NOT_FOUND', `${r}: blob ${d} is not in the store`, `pull the image again: burrow pull ${name ?? r}`);
    }
    return name ? { img, name } : { img };
  });
}

/** Streams a stored blob into the archive, checking on the way that it still is what its name says. */
async function blobInto(tar: TarWriter, store: Store, digest: string, name: string): Promise<void> {
  const file = store.blobPath(digest);
  const h = createHash('sha256');
  async function* hashed(): AsyncGenerator<Buffer> {
    for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 20 })) {
      h.update(chunk as Buffer);
      yield chunk as Buffer;
    }
  }
  await tar.stream(name, fs.statSync(file).size, hashed());
  const actual = `sha256:${h.digest('hex')}`;
  if (actual !== digest) throw new BurrowError('EDIGEST_MISMATCH', `blob ${digest} in the store is damaged (its content is ${actual})`, 'remove the image and pull it again');
}

/** Decompresses a gzip layer blob to a temporary file, checking its diff id; returns the file. */
async function gunzipLayer(store: Store, digest: string, diffId: string): Promise<string> {
  const tmp = path.join(store.p('tmp'), `save-${process.pid}-${diffId.slice(7, 19)}-${Math.random().toString(36).slice(2, 8)}`);
  const h = createHash('sha256');
  const out = fs.createWriteStream(tmp);
  try {
    const gunzip = fs.createReadStream(store.blobPath(digest), { highWaterMark: 1 << 20 }).pipe(zlib.createGunzip());
    for await (const chunk of gunzip) {
      h.update(chunk as Buffer);
      if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
    }
    await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
  } catch (err) {
    out.destroy();
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  const actual = `sha256:${h.digest('hex')}`;
  if (actual !== diffId) {
    fs.rmSync(tmp, { force: true });
    throw new BurrowError('EDIGEST_MISMATCH', `layer ${digest} decompresses to ${actual}, not the diff id ${diffId} its image says`);
  }
  return tmp;
}

/** Writes `refs` (names or ids) as one archive to `out`. */
export async function saveImages(store: Store, refs: string[], out: Writable, format: ArchiveFormat): Promise<void> {
  if (!refs.length) throw new BurrowError('EUSAGE', 'save: name at least one image');
  const items = resolveForSave(store, refs);
  store.init();
  const tar = new TarWriter(out);
  const written = new Set<string>();
  if (format === 'oci-archive') {
    await tar.file('oci-layout', Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' })));
    await tar.dir('blobs');
    await tar.dir('blobs/sha256');
    const manifests: Descriptor[] = [];
    for (const { img, name } of items) {
      for (const d of [img.manifestDigest, img.configDigest, ...img.layers.map((l) => l.digest)]) {
        if (written.has(d)) continue;
        written.add(d);
        await blobInto(tar, store, d, `blobs/sha256/${d.slice(7)}`);
      }
      const desc: Descriptor = { mediaType: img.manifestMediaType, digest: img.manifestDigest, size: fs.statSync(store.blobPath(img.manifestDigest)).size };
      if (name) desc.annotations = { [REF_NAME]: name, [CONTAINERD_NAME]: name };
      manifests.push(desc);
    }
    await tar.file('index.json', Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests })));
  } else {
    const manifest: { Config: string; RepoTags: string[]; Layers: string[] }[] = [];
    for (const { img, name } of items) {
      const config = `${img.configDigest.slice(7)}.json`;
      if (!written.has(config)) {
        written.add(config);
        await blobInto(tar, store, img.configDigest, config);
      }
      const layers: string[] = [];
      for (const l of img.layers) {
        const compression = layerCompression(l.mediaType) ?? sniff(store.blobPath(l.digest));
        const file = `${l.diffId.slice(7)}.tar${compression === 'zstd' ? '.zst' : ''}`;
        layers.push(file);
        if (written.has(file)) continue;
        written.add(file);
        if (compression === 'gzip') {
          const tmp = await gunzipLayer(store, l.digest, l.diffId);
          try {
            await tar.stream(file, fs.statSync(tmp).size, fs.createReadStream(tmp, { highWaterMark: 1 << 20 }));
          } finally {
            fs.rmSync(tmp, { force: true });
          }
        } else {
          await blobInto(tar, store, l.digest, file);
        }
      }
      manifest.push({ Config: config, RepoTags: name ? [parseReference(name).familiar()] : [], Layers: layers });
    }
    await tar.file('manifest.json', Buffer.from(JSON.stringify(manifest)));
  }
  await tar.end();
}

// ---- load --------------------------------------------------------------------------------------

interface Stored {
  /** Where the content was put (regular files). */
  file?: string;
  digest?: string;
  size: number;
  /** Symlink or hard link target (an archive path). */
  link?: { target: string; hard: boolean };
}

class Extracted {
  readonly entries = new Map<string, Stored>();
  constructor(readonly dir: string) {}

  /** An archive path to its stored file, following links inside the archive. */
  get(name: string, what: string): Required<Pick<Stored, 'file' | 'digest' | 'size'>> {
    let cur = path.posix.normalize(name).replace(/^(\.\/)+/, '');
    for (let hops = 0; hops < 16; hops++) {
      const e = this.entries.get(cur);
      if (!e) break;
      if (e.file && e.digest) return { file: e.file, digest: e.digest, size: e.size };
      if (!e.link) break;
      cur = e.link.hard ? path.posix.normalize(e.link.target) : path.posix.normalize(path.posix.join(path.posix.dirname(cur), e.link.target));
      cur = cur.replace(/^(\.\/)+/, '');
    }
    throw invalid(`${what} ${JSON.stringify(name)} is not in the archive`);
  }

  json(name: string, what: string, limit = 8 * 1024 * 1024): unknown {
    const e = this.get(name, what);
    if (e.size > limit) throw invalid(`${what} is larger than ${limit} bytes`);
    try {
      return JSON.parse(fs.readFileSync(e.file, 'utf8'));
    } catch {
      throw invalid(`${what} is not JSON`);
    }
  }
}

async function extract(store: Store, input: AsyncIterable<Buffer>, what: string): Promise<Extracted> {
  const dir = fs.mkdtempSync(path.join(store.p('tmp'), `load-${process.pid}-`));
  const x = new Extracted(dir);
  let n = 0;
  try {
    await readTar(
      input,
      async (e, content) => {
        if (e.type === 'symlink' || e.type === 'hardlink') {
          x.entries.set(e.name, { size: 0, link: { target: e.linkname, hard: e.type === 'hardlink' } });
          return;
        }
        if (e.type !== 'file') return;
        // Named by a counter, never by the archive's name.
        const file = path.join(dir, String(n++));
        const h = createHash('sha256');
        const fd = fs.openSync(file, 'wx', 0o600);
        try {
          for await (const chunk of content) {
            h.update(chunk);
            fs.writeSync(fd, chunk);
          }
          fs.fsyncSync(fd);
        } finally {
          fs.closeSync(fd);
        }
        x.entries.set(e.name, { file, digest: `sha256:${h.digest('hex')}`, size: e.size });
      },
      what,
    );
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return x;
}

/** Puts an extracted file into the blob store under the digest computed while extracting it. */
function installBlob(store: Store, e: { file: string; digest: string }): void {
  const dest = store.blobPath(e.digest);
  if (store.hasBlob(e.digest)) return;
  try {
    // A link is atomic: the blob appears complete or not at all (the file was fsynced).
    fs.linkSync(e.file, dest);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
}

export interface LoadedImage {
  id: string;
  /** Canonical references it was tagged with. */
  names: string[];
}

interface Pending {
  config: { file: string; digest: string; size: number };
  manifestBytes: Buffer;
  manifestMediaType: string;
  layers: { blob: { file: string; digest: string; size: number }; desc: Descriptor; diffId: string }[];
  names: string[];
}

function nameFromAnnotations(a: Record<string, string> | undefined): string | undefined {
  const n = a?.[CONTAINERD_NAME] ?? a?.[REF_NAME];
  // A bare tag ("latest", "v1") names no repository: such an image is loaded untagged.
  if (!n || !/[/:]/.test(n)) return undefined;
  try {
    const r = parseReference(n);
    return r.digest ? undefined : r.canonical();
  } catch {
    return undefined;
  }
}

function fromDockerArchive(x: Extracted): Pending[] {
  const items = x.json('manifest.json', 'manifest.json');
  if (!Array.isArray(items) || !items.length) throw invalid('manifest.json is not a non-empty list');
  return items.map((it: unknown, i) => {
    const o = it as { Config?: unknown; RepoTags?: unknown; Layers?: unknown };
    if (typeof o?.Config !== 'string' || !Array.isArray(o.Layers) || !o.Layers.every((l) => typeof l === 'string')) throw invalid(`manifest.json entry ${i} needs Config and Layers`);
    const tags = o.RepoTags === null || o.RepoTags === undefined ? [] : o.RepoTags;
    if (!Array.isArray(tags) || !tags.every((t) => typeof t === 'string')) throw invalid(`manifest.json entry ${i}: RepoTags is not a list of strings`);
    const config = x.get(o.Config, 'config');
    const cfg = parseImageConfig(fs.readFileSync(config.file));
    const layerPaths = o.Layers;
    if (layerPaths.length !== cfg.rootfs.diff_ids.length) throw invalid(`manifest.json entry ${i} lists ${layerPaths.length} layers but its config has ${cfg.rootfs.diff_ids.length} diff ids`);
    const layers = layerPaths.map((p, j) => {
      const blob = x.get(p, `layer ${j + 1}`);
      const compression = sniff(blob.file);
      const diffId = cfg.rootfs.diff_ids[j]!;
      if (compression === 'none' && blob.digest !== diffId) {
        throw new BurrowError('EDIGEST_MISMATCH', `layer ${j + 1} (${p}) of the archive has digest ${blob.digest}, not the diff id ${diffId} its config says`, 'the archive is damaged or was altered');
      }
      return { blob, diffId, desc: { mediaType: LAYER_TYPES[compression], digest: blob.digest, size: blob.size } };
    });
    const manifest = {
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      config: { mediaType: MEDIA_TYPES.ociConfig, digest: config.digest, size: config.size },
      layers: layers.map((l) => l.desc),
    };
    return { config, layers, manifestBytes: Buffer.from(JSON.stringify(manifest)), manifestMediaType: MEDIA_TYPES.ociManifest, names: tags.map((t) => parseReference(t).canonical()) };
  });
}

function fromOciArchive(x: Extracted): Pending[] {
  const blob = (d: Descriptor, what: string): { file: string; digest: string; size: number } => {
    const [alg, hex] = d.digest.split(':');
    const e = x.get(`blobs/${alg}/${hex}`, what);
    if (e.digest !== d.digest) throw new BurrowError('EDIGEST_MISMATCH', `${what}: blob ${d.digest} in the archive has digest ${e.digest}`, 'the archive is damaged or was altered');
    if (e.size !== d.size) throw new BurrowError('ESIZE_MISMATCH', `${what}: blob ${d.digest} in the archive is ${e.size} bytes, its descriptor says ${d.size}`);
    return e;
  };
  const index = parseManifest(fs.readFileSync(x.get('index.json', 'index.json').file), MEDIA_TYPES.ociIndex);
  if (index.kind !== 'index') throw invalid('index.json is not an image index');
  return index.manifests.map((top, i) => {
    let desc = top;
    if (isIndexMediaType(desc.mediaType)) {
      const inner = parseManifest(fs.readFileSync(blob(desc, `index entry ${i}`).file), desc.mediaType);
      if (inner.kind !== 'index') throw invalid(`index entry ${i} is not an index`);
      desc = selectPlatform(inner);
    }
    const mb = blob(desc, `manifest ${desc.digest}`);
    const bytes = fs.readFileSync(mb.file);
    const m = parseManifest(bytes, desc.mediaType);
    if (m.kind !== 'manifest') throw invalid(`manifest ${desc.digest} is an index inside an index`);
    const config = blob(m.config, 'image config');
    const cfg = parseImageConfig(fs.readFileSync(config.file));
    checkLayersMatchConfig(m, cfg);
    const layers = m.layers.map((l, j) => ({ blob: blob(l, `layer ${j + 1}`), desc: l, diffId: cfg.rootfs.diff_ids[j]! }));
    const name = nameFromAnnotations(top.annotations);
    return { config, layers, manifestBytes: bytes, manifestMediaType: m.mediaType, names: name ? [name] : [] };
  });
}

/** Loads every image of an archive (docker-archive or oci-archive, optionally gzip-compressed). */
export async function loadArchive(store: Store, settings: StorageSettings, input: AsyncIterable<Buffer>, what = 'the archive'): Promise<LoadedImage[]> {
  store.init();
  mkdirp(store.p('tmp'));
  await cleanStaleTmp(store, settings);
  const x = await extract(store, input, what);
  try {
    const pending = x.entries.has('manifest.json') ? fromDockerArchive(x) : x.entries.has('index.json') ? fromOciArchive(x) : undefined;
    if (!pending) throw invalid(`${what} has neither manifest.json (docker-archive) nor index.json (oci-archive)`);
    const out: LoadedImage[] = [];
    for (const p of pending) {
      const known = store.image(p.config.digest);
      if (known && [known.manifestDigest, ...known.layers.map((l) => l.digest)].every((d) => store.hasBlob(d)) && known.layers.every((l) => store.layer(l.diffId))) {
        // The same image (same config, so the same layers) is here already, maybe pulled with
        // its registry digest: keep that record, add the names.
        for (const n of p.names) store.tag(known.id, n);
        out.push({ id: known.id, names: p.names });
        continue;
      }
      const cfg = parseImageConfig(fs.readFileSync(p.config.file));
      for (const l of p.layers) installBlob(store, l.blob);
      installBlob(store, p.config);
      // The unpacker checks each layer's diff id; only then is anything recorded.
      await runPool(p.layers, PARALLEL_UNPACKS, (l) => unpackLayer(store, settings, l.blob.digest, l.diffId, l.blob.size));
      const manifestDigest = putBlob(store, p.manifestBytes);
      const rec: ImageRecord = {
        id: p.config.digest,
        configDigest: p.config.digest,
        manifestDigest,
        manifestMediaType: p.manifestMediaType,
        layers: p.layers.map((l) => ({ digest: l.blob.digest, diffId: l.diffId, size: l.blob.size, mediaType: l.desc.mediaType })),
        repoTags: [],
        repoDigests: [],
        ...(cfg.created ? { created: cfg.created } : {}),
        os: cfg.os,
        architecture: cfg.architecture,
        ...(cfg.variant ? { variant: cfg.variant } : {}),
        size: p.layers.reduce((s, l) => s + l.blob.size, 0),
        pulledAt: new Date().toISOString(),
      };
      store.saveImage(rec);
      for (const n of p.names) store.tag(rec.id, n);
      out.push({ id: rec.id, names: p.names });
    }
    return out;
  } finally {
    fs.rmSync(x.dir, { recursive: true, force: true });
  }
}

/** The bytes of a file or stdin, gunzipped when they start with gzip's magic. */
export async function* archiveInput(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const it = source[Symbol.asyncIterator]();
  let first = await it.next();
  while (!first.done && first.value.length < 2) {
    const more = await it.next();
    if (more.done) break;
    first = { done: false, value: Buffer.concat([first.value, more.value]) };
  }
  if (first.done) return;
  const head = first.value;
  async function* rest(): AsyncGenerator<Buffer> {
    yield head;
    for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
  }
  if (head[0] === 0x1f && head[1] === 0x8b) {
    const gunzip = zlib.createGunzip();
    const feed = (async () => {
      for await (const b of rest()) if (!gunzip.write(b)) await new Promise((r) => gunzip.once('drain', r));
      gunzip.end();
    })();
    feed.catch((err: unknown) => gunzip.destroy(err as Error));
    for await (const b of gunzip) yield b as Buffer;
    await feed;
    return;
  }
  if (head.length >= 4 && head.readUInt32BE(0) === 0x28b52ffd) throw new BurrowError('EUSAGE', 'the archive is zstd-compressed, which burrow load cannot read', 'decompress it first: zstd -d');
  yield* rest();
}
