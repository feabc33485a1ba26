/**
 * `image prune` and `system prune`: removing images no container uses, then the layers and
 * blobs that no remaining image or container references.
 *
 * Crash safety: references go before content. An image's tags and record are removed first,
 * under the tags lock (so a tag is never left pointing at a removed image, and an image tagged
 * meanwhile is kept); then a layer's record (after which nothing trusts its directory), then its
 * directory, renamed into tmp/ as `prune-PID-…` before it is deleted, so that a prune killed
 * half-way leaves a partial tree only where cleanStaleTmp removes it, never under layers/ where
 * an unpack would take it for a complete layer; blobs last.
 *
 * Writers (pull, load, import) take no store lock, so content no image names yet may be one's in
 * progress, and a pull in progress may be about to name a layer that is there already. While a
 * writer is at work (refs.ts, writerActive) no content is removed at all, only image records.
 * Otherwise unreferenced content of the images this prune removed goes, and so does other
 * unreferenced content ("orphans", e.g. left by `rmi`) unless it was written in the last few
 * seconds: the gap between a writer's steps (a layer renamed into place, then recorded; blobs
 * written, then the image record), which leave no mark on disk.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BurrowError } from '../errors';
import { hexOf, withLock, writeJsonAtomic } from './fsutil';
import { claimAbandoned, claimPathOf } from './image-format';
import { abandonedPartials, buildCacheContent, containerRefs, imageContent, layerBytes, storedBlobs, storedLayers, writerActive } from './refs';
import type { ImageRecord, StorageSettings, Store } from './store';
import { cleanStaleTmp, removeTrees } from './unpack';

/** Orphans younger than this are left: the gap between a writer's steps (milliseconds, with margin). */
export const ORPHAN_GRACE_MS = 5_000;

export interface PrunedImage {
  id: string;
  /** tags and digest references that went with it */
  untagged: string[];
}

export interface ImagePruneResult {
  images: PrunedImage[];
  /** diff ids of the removed layers */
  layers: string[];
  /** digests of the removed blobs */
  blobs: string[];
  bytes: number;
  /** Unreferenced layers and blobs left for now: young orphans, or all while a writer is at work. */
  kept: number;
  writerActive: boolean;
  /** Abandoned work removed: `.partial` downloads no pull runs for, and temporary trees and files of dead processes (counted in `bytes`). */
  work?: { partials: number; tmp: number; bytes: number };
}

/**
 * Go-style durations ("90s", "1h30m", "10m") before now, Unix times ("1700000000[.5]") or dates
 * (RFC 3339, "2006-01-02"), as Docker's `until` filter takes them; returns epoch milliseconds.
 */
export function parseUntil(v: string, now = Date.now()): number {
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  if (/^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(v)) {
    let ms = 0;
    for (const m of v.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) ms += Number(m[1]) * unit[m[2]!]!;
    return now - ms;
  }
  if (/^\d+(\.\d+)?$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new BurrowError('EUSAGE', `invalid until filter ${JSON.stringify(v)}: want a duration (10m, 24h), a Unix time or a date (RFC 3339)`);
  return t;
}

type Labels = Record<string, string>;

/** `label=K`, `label=K=V`, `label!=K[=V]` against a set of labels. */
function labelMatch(kind: 'label' | 'label!', v: string, labels: Labels): boolean {
  const i = v.indexOf('=');
  const k = i < 0 ? v : v.slice(0, i);
  const has = k in labels && (i < 0 || labels[k] === v.slice(i + 1));
  return kind === 'label' ? has : !has;
}

/** Parses prune filters once (bad ones fail before anything is removed). */
export function imageFilter(store: Store, filters: string[]): (img: ImageRecord) => boolean {
  const tests = filters.map((f): ((img: ImageRecord) => boolean) => {
    const i = f.indexOf('=');
    const k = i < 0 ? f : f.slice(0, i);
    const v = i < 0 ? '' : f.slice(i + 1);
    if (k === 'until') {
      const t = parseUntil(v);
      return (img) => Date.parse(img.created ?? img.pulledAt) < t;
    }
    if (k === 'label' || k === 'label!') return (img) => labelMatch(k, v, imageLabels(store, img));
    throw new BurrowError('EUSAGE', `invalid filter ${JSON.stringify(f)}: image prune takes until=, label= and label!=`);
  });
  return (img) => tests.every((t) => t(img));
}

function imageLabels(store: Store, img: ImageRecord): Labels {
  try {
    const cfg = JSON.parse(fs.readFileSync(store.blobPath(img.configDigest), 'utf8')) as { config?: { Labels?: unknown } };
    const l = cfg.config?.Labels;
    return l && typeof l === 'object' ? (l as Labels) : {};
  } catch {
    return {};
  }
}

/**
 * Removes an image's tags and record under the tags lock, unless it gained a tag meanwhile
 * (when only untagged images may go). Returns what was untagged, or undefined if it was kept.
 */
function removeImageRecord(store: Store, id: string, taggedToo: boolean): PrunedImage | undefined {
  return withLock(store.p('tags.lock'), () => {
    const img = store.image(id);
    if (!img || (!taggedToo && img.repoTags.length)) return undefined;
    const tags = store.tags();
    for (const [t, v] of Object.entries(tags)) if (v === id) delete tags[t];
    writeJsonAtomic(store.p('tags.json'), tags);
    fs.rmSync(store.p('images', `${hexOf(id)}.json`), { force: true });
    return { id, untagged: [...img.repoTags, ...img.repoDigests] };
  });
}

/**
 * Removes layers and blobs that no image and no container references. `freed` names the content
 * of images just removed (always eligible); other unreferenced content is an orphan.
 */
export async function collectGarbage(store: Store, settings: StorageSettings, freed: { layers: Set<string>; blobs: Set<string> }, o: { orphans: boolean } = { orphans: true }): Promise<Omit<ImagePruneResult, 'images'>> {
  // Read after the images went: an image pulled or a container created meanwhile counts.
  const keepLayers = new Set<string>();
  const keepBlobs = new Set<string>();
  for (const img of store.images()) {
    const c = imageContent(img);
    c.layers.forEach((l) => keepLayers.add(l));
    c.blobs.forEach((b) => keepBlobs.add(b));
  }
  const ctrRefs = containerRefs(store);
  ctrRefs.layers.forEach((l) => keepLayers.add(l));
  const cached = buildCacheContent(store);
  cached.layers.forEach((l) => keepLayers.add(l));
  cached.blobs.forEach((b) => keepBlobs.add(b));
  const now = Date.now();
  const writer = writerActive(store);
  const eligible = (hex: string, mine: Set<string>, mtimeMs: number) => !writer && (mine.has(hex) || (o.orphans && now - mtimeMs > ORPHAN_GRACE_MS));
  const out = { layers: [] as string[], blobs: [] as string[], bytes: 0, kept: 0, writerActive: writer };

  // The store's squashfs files (image-format.ts) go with their image, unless a container of it
  // is left (`rmi -f`): its bundle names the file, which a restart mounts again.
  out.bytes += removeSquashes(store, ctrRefs.images);

  const trees: string[] = [];
  for (const l of storedLayers(store).values()) {
    if (keepLayers.has(l.hex)) continue;
    if (!eligible(l.hex, freed.layers, l.mtimeMs)) {
      if (o.orphans || freed.layers.has(l.hex)) out.kept++;
      continue;
    }
    const bytes = layerBytes(store, l);
    fs.rmSync(store.p('layers', `${l.hex}.json`), { force: true });
    if (l.hasDir) {
      const from = store.p('layers', l.hex);
      const to = path.join(store.p('tmp'), `prune-${process.pid}-${l.hex.slice(0, 12)}-${Math.random().toString(36).slice(2, 8)}`);
      try {
        fs.mkdirSync(store.p('tmp'), { recursive: true, mode: 0o700 });
        // Moving a directory rewrites its "..": it needs write permission on it (a layer whose
        // root is 0555 has none until given it; it is going anyway).
        const st = fs.statSync(from);
        if (!(st.mode & 0o200) && st.uid === process.getuid?.()) fs.chmodSync(from, (st.mode & 0o7777) | 0o200);
        fs.renameSync(from, to);
        trees.push(to);
      } catch {
        // The layer's root belongs to another container user: removed in place. Its record is
        // gone; what an interrupted removal leaves is an orphan the next prune takes.
        trees.push(from);
      }
    }
    out.layers.push(`sha256:${l.hex}`);
    out.bytes += bytes;
  }
  // Files of the image's other users belong to subordinate ids: the user namespace removes them.
  await removeTrees(settings, trees);

  for (const [hex, b] of storedBlobs(store)) {
    if (keepBlobs.has(hex)) continue;
    if (!eligible(hex, freed.blobs, b.mtimeMs)) {
      if (o.orphans || freed.blobs.has(hex)) out.kept++;
      continue;
    }
    fs.rmSync(store.p('blobs', 'sha256', hex), { force: true });
    out.blobs.push(`sha256:${hex}`);
    out.bytes += b.size;
  }
  return out;
}

/**
 * Removes `images/HEX.sqfs` of images that are gone and no container uses, and what abandoned
 * conversions left: their claim (`.HEX.sqfs.making`, image-format.ts claimAbandoned) and their
 * temporary file (`.HEX.sqfs.tmp-PID`), which only a live claim's holder may be writing.
 * Returns the bytes.
 */
function removeSquashes(store: Store, usedImages: Map<string, unknown>): number {
  let names: string[];
  try {
    names = fs.readdirSync(store.p('images'));
  } catch {
    return 0;
  }
  const claimed = (hex: string): boolean => claimAbandoned(claimPathOf(store.p('images', `${hex}.sqfs`))) === false;
  let bytes = 0;
  for (const n of names) {
    const own = /^([a-f0-9]{64})\.sqfs$/.exec(n);
    const tmp = /^\.([a-f0-9]{64})\.sqfs\.tmp-\d+$/.exec(n);
    const making = /^\.([a-f0-9]{64})\.sqfs\.making$/.exec(n);
    let stale = false;
    if (own) stale = !store.image(`sha256:${own[1]}`) && !usedImages.has(`sha256:${own[1]}`);
    else if (tmp) stale = !claimed(tmp[1]!);
    else if (making) stale = claimAbandoned(store.p('images', n)) === true;
    if (!stale) continue;
    const p = store.p('images', n);
    bytes += fs.statSync(p, { throwIfNoEntry: false })?.size ?? 0;
    fs.rmSync(p, { force: true });
  }
  return bytes;
}

/**
 * `image prune`: untagged images (all images with `all`) that no container uses, of any state,
 * then the content nothing references any more.
 */
export async function pruneImages(store: Store, settings: StorageSettings, o: { all: boolean; filters: string[] }): Promise<ImagePruneResult> {
  const match = imageFilter(store, o.filters);
  store.init();
  const work = await reclaimWork(store, settings);
  const used = containerRefs(store).images;
  const victims = store.images().filter((img) => !used.has(img.id) && (o.all || img.repoTags.length === 0) && match(img));
  const images: PrunedImage[] = [];
  const freed = { layers: new Set<string>(), blobs: new Set<string>() };
  for (const img of victims) {
    const r = removeImageRecord(store, img.id, o.all);
    if (!r) continue;
    images.push(r);
    const c = imageContent(img);
    c.layers.forEach((l) => freed.layers.add(l));
    c.blobs.forEach((b) => freed.blobs.add(b));
  }
  const gc = await collectGarbage(store, settings, freed);
  return { images, ...gc, bytes: gc.bytes + work.bytes, ...(work.bytes || work.partials || work.tmp ? { work } : {}) };
}

/**
 * Abandoned work: temporary trees and files of processes that are gone (a killed pull's unpack,
 * load or import), and `.partial` downloads when no pull is running (a running one marks itself
 * in tmp/, refs.ts writerActive, and may own any of them). Bytes as they were on disk.
 */
async function reclaimWork(store: Store, settings: StorageSettings): Promise<{ partials: number; tmp: number; bytes: number }> {
  const tmp = await cleanStaleTmp(store, settings);
  let partials = 0;
  let bytes = tmp.bytes;
  for (const [p, size] of abandonedPartials(store)) {
    fs.rmSync(p, { force: true });
    partials++;
    bytes += size;
  }
  return { partials, tmp: tmp.entries, bytes };
}

/**
 * `rmi`: after an image's record went, its layers and blobs that no other image and no container
 * uses go too, as Docker and podman free them (on a quota the space matters). While a pull, load
 * or import runs, nothing is removed (it may be about to use them): `kept` says so, and a later
 * `image prune` takes them.
 */
export async function reclaimImage(store: Store, settings: StorageSettings, img: ImageRecord): Promise<Omit<ImagePruneResult, 'images'>> {
  const c = imageContent(img);
  return collectGarbage(store, settings, { layers: new Set(c.layers), blobs: new Set(c.blobs) }, { orphans: false });
}

export interface VolumePruneResult {
  names: string[];
  bytes: number;
}

export interface SystemPruneResult {
  containers: { ids: string[]; bytes: number };
  volumes?: VolumePruneResult;
  images: ImagePruneResult;
  /** Build cache entries removed (their layers' bytes are in `bytes`). */
  buildCache: number;
  bytes: number;
}

/**
 * `system prune`: stopped containers, then (with `volumes`) volumes no container uses, then
 * images as `image prune` (their containers gone first, so their images count as unused).
 */
export async function pruneSystem(store: Store, settings: StorageSettings, o: { all: boolean; volumes: boolean; filters: string[] }): Promise<SystemPruneResult> {
  // Filters are checked before anything goes.
  imageFilter(store, o.filters);
  if (o.volumes && o.filters.some((f) => f.startsWith('until='))) throw new BurrowError('EUSAGE', 'the until filter is not supported with --volumes');
  const lc = await import('../container/lifecycle');
  const containers = await lc.prune(store, settings, o.filters);
  let volumes: VolumePruneResult | undefined;
  if (o.volumes) {
    const { pruneVolumes } = await import('./volumes');
    volumes = await pruneVolumes(store, settings, o.filters);
  }
  const images = await pruneImages(store, settings, { all: o.all, filters: o.filters });
  // Docker's system prune removes the build cache too (its cache mounts only with -a).
  const untilF = o.filters.find((f) => f.startsWith('until='));
  const { pruneBuildCache } = await import('../build/cache');
  const cache = await pruneBuildCache(store, settings, { all: o.all, ...(untilF ? { until: parseUntil(untilF.slice(6)) } : {}) });
  return { containers, ...(volumes ? { volumes } : {}), images, buildCache: cache.entries.length, bytes: containers.bytes + (volumes?.bytes ?? 0) + images.bytes + cache.bytes };
}
