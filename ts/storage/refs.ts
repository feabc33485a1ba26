/**
 * What in the store is referenced by what, for `df` and `prune`: the content of each image
 * (unpacked layers by diff id, blobs by digest), what containers hold (their image, and the
 * layers their root is mounted from, read from their bundle so that a container whose image was
 * removed with `rmi -f` still keeps its layers), what lies in layers/ and blobs/, and whether a
 * pull, load or import may be writing content that no image names yet.
 *
 * Sizes are the bytes of regular files, hard links counted once: a layer's from its record (what
 * the unpacker wrote), a tree without a record's by walking it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pidAlive } from './fsutil';
import type { ImageRecord, LayerRecord, Store } from './store';

const HEX = /^[a-f0-9]{64}$/;

/** Content of an image: layer hexes (diff ids) and blob hexes (config, manifests, layer blobs). */
export function imageContent(img: ImageRecord): { layers: string[]; blobs: string[] } {
  const hex = (d: string) => d.replace(/^sha256:/, '');
  const blobs = [img.configDigest, img.manifestDigest, ...img.layers.map((l) => l.digest), ...img.repoDigests.map((r) => r.slice(r.indexOf('@') + 1))];
  return { layers: [...new Set(img.layers.map((l) => hex(l.diffId)))], blobs: [...new Set(blobs.map(hex).filter((h) => HEX.test(h)))] };
}

/** `burrow build`'s step cache (ts/build/cache.ts) and its RUN cache mounts (ts/build/mounts.ts), in the store. */
export const BUILD_CACHE_DIR = 'build-cache';
export const BUILD_CACHE_MOUNTS_DIR = 'build-cache-mounts';

/** The build cache's entry files (`HEX.json`, HEX the step's key). */
export function buildCacheEntries(store: Store): string[] {
  try {
    return fs.readdirSync(store.p(BUILD_CACHE_DIR)).filter((n) => n.endsWith('.json'));
  } catch {
    return [];
  }
}

/**
 * Content the build cache (ROOT/build-cache, ts/build/cache.ts) needs: the layers and layer
 * blobs its entries name, kept as an image's are so that a cached step stays usable.
 */
export function buildCacheContent(store: Store): { layers: string[]; blobs: string[] } {
  const layers = new Set<string>();
  const blobs = new Set<string>();
  const names = buildCacheEntries(store);
  const hex = (d: unknown) => (typeof d === 'string' ? d.replace(/^sha256:/, '') : '');
  for (const n of names) {
    try {
      const e = JSON.parse(fs.readFileSync(store.p(BUILD_CACHE_DIR, n), 'utf8')) as { layers?: { diffId?: unknown; digest?: unknown }[] };
      for (const l of e.layers ?? []) {
        if (HEX.test(hex(l.diffId))) layers.add(hex(l.diffId));
        if (HEX.test(hex(l.digest))) blobs.add(hex(l.digest));
      }
    } catch {
      /* being written, or not an entry */
    }
  }
  return { layers: [...layers], blobs: [...blobs] };
}

export interface ContainerRefs {
  /** image id → ids of the containers (any state) created from it */
  images: Map<string, string[]>;
  /** layer hexes some container's root is mounted from */
  layers: Set<string>;
}

/**
 * Every container directory counts, with or without a record (one being created has its bundle
 * before its record): its record's image, and the lower directories of its overlay.
 */
export function containerRefs(store: Store): ContainerRefs {
  const images = new Map<string, string[]>();
  const layers = new Set<string>();
  let ids: string[] = [];
  try {
    ids = fs.readdirSync(store.p('containers')).filter((n) => HEX.test(n));
  } catch {
    /* no containers yet */
  }
  for (const id of ids) {
    const dir = store.p('containers', id);
    try {
      const rec = JSON.parse(fs.readFileSync(path.join(dir, 'record.json'), 'utf8')) as { image?: unknown };
      if (typeof rec.image === 'string') images.set(rec.image, [...(images.get(rec.image) ?? []), id]);
      const img = typeof rec.image === 'string' ? store.image(rec.image) : undefined;
      for (const l of img ? imageContent(img).layers : []) layers.add(l);
    } catch {
      /* no record yet */
    }
    try {
      const spec = JSON.parse(fs.readFileSync(path.join(dir, 'bundle', 'config.json'), 'utf8')) as { annotations?: Record<string, string> };
      // The union drivers' options (kernel overlay, fuse-overlayfs); the copy driver's root
      // needs no layer once made.
      for (const key of ['run.burrow.rootfs.overlay', 'run.burrow.rootfs.fuse-overlayfs']) {
        const lower = /(?:^|,)lowerdir=([^,]*)/.exec(spec.annotations?.[key] ?? '')?.[1] ?? '';
        for (const l of lower.split(':')) if (HEX.test(path.basename(l))) layers.add(path.basename(l));
      }
    } catch {
      /* no bundle yet */
    }
  }
  return { images, layers };
}

/**
 * Where a container's own files are: the writable layer of a union (`upper`), or the whole root
 * for the copy driver, in the directory its record names (`rootfs.dir`); records made before
 * rootfs drivers have `upper` in the container's directory.
 */
export function writableDir(rec: object, containerDir: string): string {
  const r = (rec as { rootfs?: { driver?: unknown; dir?: unknown } }).rootfs;
  if (r && typeof r.dir === 'string' && path.isAbsolute(r.dir)) return path.join(r.dir, r.driver === 'copy' ? 'rootfs' : 'upper');
  return path.join(containerDir, 'upper');
}

export interface StoredLayer {
  hex: string;
  record?: LayerRecord;
  hasDir: boolean;
  /** When it was last written (its record, else its directory): young content may be a pull's. */
  mtimeMs: number;
}

/** Layers present in layers/: trusted ones (with a record) and leftovers of either half. */
export function storedLayers(store: Store): Map<string, StoredLayer> {
  const out = new Map<string, StoredLayer>();
  let names: string[];
  try {
    names = fs.readdirSync(store.p('layers'));
  } catch {
    return out;
  }
  for (const n of names) {
    const hex = n.endsWith('.json') ? n.slice(0, -5) : n;
    if (!HEX.test(hex) || out.has(hex)) continue;
    const st = fs.statSync(store.p('layers', `${hex}.json`), { throwIfNoEntry: false }) ?? fs.statSync(store.p('layers', hex), { throwIfNoEntry: false });
    const record = store.layer(`sha256:${hex}`);
    out.set(hex, { hex, ...(record ? { record } : {}), hasDir: fs.existsSync(store.p('layers', hex)), mtimeMs: st?.mtimeMs ?? 0 });
  }
  return out;
}

export function layerBytes(store: Store, l: StoredLayer): number {
  if (l.record && typeof l.record.bytes === 'number') return l.record.bytes;
  return l.hasDir ? contentSize(store.p('layers', l.hex)) : 0;
}

/** Complete blobs in blobs/sha256 (half-written `.partial` and `.tmp-…` files are not blobs). */
export function storedBlobs(store: Store): Map<string, { size: number; mtimeMs: number }> {
  const out = new Map<string, { size: number; mtimeMs: number }>();
  let names: string[];
  try {
    names = fs.readdirSync(store.p('blobs', 'sha256'));
  } catch {
    return out;
  }
  for (const n of names.filter((x) => HEX.test(x))) {
    const st = fs.statSync(store.p('blobs', 'sha256', n), { throwIfNoEntry: false });
    if (st) out.set(n, { size: st.size, mtimeMs: st.mtimeMs });
  }
  return out;
}

/**
 * Whether another process may be writing content that no image names yet: a live process's
 * work under tmp/ (unpacking, loading, importing: `KIND-PID…`; a pull marks itself with
 * `pull-PID` for as long as it runs, its `.partial` downloads included), or a half-written blob
 * of a live process. There is no store lock that writers take, so this is read from what they
 * leave on disk.
 */
export function writerActive(store: Store): boolean {
  const live = (pid: number) => pid !== process.pid && pidAlive(pid);
  try {
    for (const n of fs.readdirSync(store.p('tmp'))) {
      const m = /^[a-z]+-(\d+)(?:-|$)/.exec(n);
      if (m && live(Number(m[1]))) return true;
    }
  } catch {
    /* no tmp */
  }
  try {
    for (const n of fs.readdirSync(store.p('blobs', 'sha256'))) {
      const m = /\.tmp-(\d+)-/.exec(n);
      if (m && live(Number(m[1]))) return true;
    }
  } catch {
    /* no blobs */
  }
  return false;
}

/**
 * Downloads no pull will finish: `.partial` files when no pull is running (a running one may own
 * any of them). Sizes in bytes, by path.
 */
export function abandonedPartials(store: Store): Map<string, number> {
  const out = new Map<string, number>();
  if (writerActive(store)) return out;
  const dir = store.p('blobs', 'sha256');
  try {
    for (const n of fs.readdirSync(dir).filter((x) => x.endsWith('.partial'))) {
      const st = fs.statSync(path.join(dir, n), { throwIfNoEntry: false });
      if (st) out.set(path.join(dir, n), st.size);
    }
  } catch {
    /* no blobs */
  }
  return out;
}

/**
 * What an image's content takes in the store, the one size `images` and `system df` show: its
 * unpacked layers and its blobs (compressed layers, config, manifests), each as stored, shared
 * content counted in every image that has it. `cache` holds sizes across images.
 */
export function imageDiskSize(store: Store, img: ImageRecord, cache: Map<string, number> = new Map()): number {
  const c = imageContent(img);
  let total = 0;
  for (const h of c.layers) {
    const k = `l:${h}`;
    let v = cache.get(k);
    if (v === undefined) {
      const record = store.layer(`sha256:${h}`);
      v = record ? layerBytes(store, { hex: h, record, hasDir: true, mtimeMs: 0 }) : 0;
      cache.set(k, v);
    }
    total += v;
  }
  for (const h of c.blobs) {
    const k = `b:${h}`;
    let v = cache.get(k);
    if (v === undefined) {
      v = fs.statSync(store.p('blobs', 'sha256', h), { throwIfNoEntry: false })?.size ?? 0;
      cache.set(k, v);
    }
    total += v;
  }
  return total;
}

/**
 * Bytes of the regular files under `dir`, each inode once (as du counts hard links). Parts we
 * cannot read (directories of other container users without search permission) are not
 * counted.
 */
export function contentSize(dir: string): number {
  const seen = new Set<string>();
  let total = 0;
  const walk = (d: string) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) {
        const st = fs.lstatSync(p, { throwIfNoEntry: false });
        if (!st) continue;
        if (st.nlink > 1) {
          const key = `${st.dev}:${st.ino}`;
          if (seen.has(key)) continue;
          seen.add(key);
        }
        total += st.size;
      }
    }
  };
  walk(dir);
  return total;
}
