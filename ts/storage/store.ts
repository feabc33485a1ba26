/**
 * The local store (DESIGN.md, "Storage"): content-addressed blobs, unpacked layers keyed by
 * their diff id (shared between images, unpacked once), image records, tags, and the settings
 * the store was created with (driver and id mapping: layers unpacked under one mapping are only
 * right for containers with the same mapping).
 *
 *   ROOT/storage.json              driver and id maps, fixed at creation
 *   ROOT/blobs/sha256/HEX          verified blobs (manifests, configs, compressed layers)
 *   ROOT/layers/HEX/               an unpacked layer; trusted only once layers/HEX.json exists
 *   ROOT/images/HEX.json           image record, HEX = config digest (the image id)
 *   ROOT/tags.json                 reference → image id
 *   ROOT/containers/ID/            container records and writable layers
 *   ROOT/tmp/                      work in progress (same filesystem, so renames are atomic)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BurrowError } from '../errors';
import { hexOf, mkdirp, readJson, withLock, writeJsonAtomic } from './fsutil';

export type Driver = 'overlay' | 'fuse-overlayfs' | 'copy';
export type IdMode = 'subuid' | 'single' | 'root';
/** [containerId, hostId, size] */
export type IdMap = [number, number, number];

export interface StorageSettings {
  version: 1;
  driver: Driver;
  idMode: IdMode;
  uidMap: IdMap[];
  gidMap: IdMap[];
}

export interface LayerRef {
  digest: string;
  diffId: string;
  size: number;
  mediaType: string;
}

export interface ImageRecord {
  id: string;
  configDigest: string;
  manifestDigest: string;
  manifestMediaType: string;
  layers: LayerRef[];
  repoTags: string[];
  repoDigests: string[];
  created?: string;
  os: string;
  architecture: string;
  variant?: string;
  /** Sum of compressed layer sizes, as `docker images` shows. */
  size: number;
  pulledAt: string;
}

export interface LayerRecord {
  diffId: string;
  digest: string;
  size: number;
  entries: number;
  bytes: number;
  skippedChown: number;
  unpackedAt: string;
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const isSettings = (v: unknown): v is StorageSettings => isObj(v) && v.version === 1 && typeof v.driver === 'string' && Array.isArray(v.uidMap);
const isImage = (v: unknown): v is ImageRecord => isObj(v) && typeof v.id === 'string' && Array.isArray(v.layers) && Array.isArray(v.repoTags);
const isLayer = (v: unknown): v is LayerRecord => isObj(v) && typeof v.diffId === 'string';
const isTags = (v: unknown): v is Record<string, string> => isObj(v) && Object.values(v).every((x) => typeof x === 'string');

export class Store {
  readonly root: string;

  constructor(root: string) {
    this.root = root;
  }

  p(...parts: string[]): string {
    return path.join(this.root, ...parts);
  }

  /** Creates the directory layout (private to the user). */
  init(): void {
    for (const d of ['blobs/sha256', 'layers', 'images', 'containers', 'tmp', 'volumes']) mkdirp(this.p(d));
  }

  settings(): StorageSettings | undefined {
    try {
      return readJson(this.p('storage.json'), isSettings);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  saveSettings(s: StorageSettings): void {
    this.init();
    writeJsonAtomic(this.p('storage.json'), s);
  }

  blobPath(digest: string): string {
    return this.p('blobs', 'sha256', hexOf(digest));
  }

  hasBlob(digest: string): boolean {
    return fs.existsSync(this.blobPath(digest));
  }

  layerDir(diffId: string): string {
    return this.p('layers', hexOf(diffId));
  }

  layer(diffId: string): LayerRecord | undefined {
    try {
      return readJson(this.p('layers', `${hexOf(diffId)}.json`), isLayer);
    } catch {
      return undefined;
    }
  }

  /** Marks an unpacked layer trusted; called only after it is complete and verified. */
  commitLayer(rec: LayerRecord): void {
    writeJsonAtomic(this.p('layers', `${hexOf(rec.diffId)}.json`), rec);
  }

  tags(): Record<string, string> {
    return readJson(this.p('tags.json'), isTags, {});
  }

  image(id: string): ImageRecord | undefined {
    const hex = id.replace(/^sha256:/, '');
    if (!/^[a-f0-9]{64}$/.test(hex)) return undefined;
    try {
      return readJson(this.p('images', `${hex}.json`), isImage);
    } catch {
      return undefined;
    }
  }

  images(): ImageRecord[] {
    let names: string[];
    try {
      names = fs.readdirSync(this.p('images')).filter((n) => n.endsWith('.json'));
    } catch {
      return [];
    }
    return names.map((n) => this.image(n.slice(0, -5))).filter((x): x is ImageRecord => !!x);
  }

  /** Saves an image and points `tag` (canonical reference) at it, under the tags lock. */
  saveImage(rec: ImageRecord, tag?: string): void {
    this.init();
    withLock(this.p('tags.lock'), () => {
      const tags = this.tags();
      const prev = this.image(rec.id);
      const repoTags = new Set([...(prev?.repoTags ?? []), ...rec.repoTags]);
      const repoDigests = new Set([...(prev?.repoDigests ?? []), ...rec.repoDigests]);
      if (tag) {
        const old = tags[tag];
        if (old && old !== rec.id) this.untagRecord(old, tag);
        tags[tag] = rec.id;
        repoTags.add(tag);
      }
      writeJsonAtomic(this.p('images', `${hexOf(rec.id)}.json`), { ...rec, repoTags: [...repoTags], repoDigests: [...repoDigests] });
      writeJsonAtomic(this.p('tags.json'), tags);
    });
  }

  private untagRecord(id: string, tag: string): void {
    const r = this.image(id);
    if (r) writeJsonAtomic(this.p('images', `${hexOf(id)}.json`), { ...r, repoTags: r.repoTags.filter((t) => t !== tag) });
  }

  tag(id: string, tag: string): void {
    const rec = this.image(id);
    if (!rec) throw new BurrowError('EIMAGE_NOT_FOUND', `no such image: ${id}`);
    this.saveImage({ ...rec, repoTags: [] }, tag);
  }

  /** Removes a tag; returns the image id it pointed to. */
  untag(tag: string): string | undefined {
    return withLock(this.p('tags.lock'), () => {
      const tags = this.tags();
      const id = tags[tag];
      if (!id) return undefined;
      delete tags[tag];
      this.untagRecord(id, tag);
      writeJsonAtomic(this.p('tags.json'), tags);
      return id;
    });
  }

  /** Deletes an image record (its tags too). Layers and blobs are left to prune. */
  deleteImage(id: string): void {
    withLock(this.p('tags.lock'), () => {
      const tags = this.tags();
      for (const [t, v] of Object.entries(tags)) if (v === id) delete tags[t];
      writeJsonAtomic(this.p('tags.json'), tags);
      fs.rmSync(this.p('images', `${hexOf(id)}.json`), { force: true });
    });
  }
}
