/**
 * The build cache (BuildKit's idea, kept in the store): each step's result under a key that
 * hashes the parent's key, the instruction after expansion, the build args it may read and, for
 * COPY/ADD, the content of what it brings in (file contents, modes, names: not mtimes). A hit
 * gives back the step's config and layers without running it.
 *
 *   ROOT/build-cache/HEX.json    { key, config, layers, created }
 *
 * The layers and blobs an entry names are references as an image's are (ts/storage/refs.ts
 * `buildCacheContent`): prune and rmi keep them while an entry needs them.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ImageConfig } from '../image/manifest';
import { hexOf, writeJsonAtomic } from '../storage/fsutil';
import { BUILD_CACHE_DIR, BUILD_CACHE_MOUNTS_DIR, buildCacheEntries, contentSize } from '../storage/refs';
import type { StorageSettings, Store } from '../storage/store';
import { removeTrees } from '../storage/unpack';
import type { BuildState } from './state';

interface Entry {
  key: string;
  config: ImageConfig;
  layers: BuildState['layers'];
  created: string;
}

/** The key of a step: sha256 over its parts, in order (a chain: the parent's key comes first). */
export function cacheKey(...parts: unknown[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(`${JSON.stringify(p)}\n`);
  return `sha256:${h.digest('hex')}`;
}

function entryPath(store: Store, key: string): string {
  return store.p(BUILD_CACHE_DIR, `${hexOf(key)}.json`);
}

/** The state saved under `key`, if its layers are all still in the store. */
export function cacheGet(store: Store, key: string): BuildState | undefined {
  let e: Entry;
  try {
    e = JSON.parse(fs.readFileSync(entryPath(store, key), 'utf8')) as Entry;
  } catch {
    return undefined;
  }
  if (e.key !== key || !Array.isArray(e.layers) || typeof e.config !== 'object') return undefined;
  if (!e.layers.every((l) => store.layer(l.diffId) && store.hasBlob(l.digest))) return undefined;
  return { config: e.config, layers: e.layers, key };
}

export function cachePut(store: Store, s: BuildState): void {
  fs.mkdirSync(store.p(BUILD_CACHE_DIR), { recursive: true, mode: 0o700 });
  writeJsonAtomic(entryPath(store, s.key), { key: s.key, config: s.config, layers: s.layers, created: new Date().toISOString() } satisfies Entry);
}

export interface BuildCachePruneResult {
  /** Keys of the cache entries removed. */
  entries: string[];
  /** RUN --mount=type=cache directories removed (with `all`). */
  mounts: number;
  /** Bytes given back: layers and blobs only the removed entries kept, and the cache mounts. */
  bytes: number;
}

/**
 * `builder prune` (and the build cache part of `system prune`, the API's POST /build/prune):
 * removes the step cache entries (those created before `until`, a time in ms, when given), then
 * the layers and blobs nothing else references any more; `all` also removes the RUN cache mounts
 * (ROOT/build-cache-mounts), whose contents a later build would otherwise find again.
 */
export async function pruneBuildCache(store: Store, settings: StorageSettings, o: { all: boolean; until?: number }): Promise<BuildCachePruneResult> {
  const freed = { layers: new Set<string>(), blobs: new Set<string>() };
  const entries: string[] = [];
  for (const n of buildCacheEntries(store)) {
    const file = store.p(BUILD_CACHE_DIR, n);
    let e: Partial<Entry>;
    try {
      e = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<Entry>;
    } catch {
      continue;
    }
    if (o.until !== undefined && !(Date.parse(e.created ?? '') < o.until)) continue;
    for (const l of e.layers ?? []) {
      freed.layers.add(String(l.diffId).replace(/^sha256:/, ''));
      freed.blobs.add(String(l.digest).replace(/^sha256:/, ''));
    }
    fs.rmSync(file, { force: true });
    entries.push(`sha256:${n.slice(0, -5)}`);
  }
  let bytes = 0;
  let mounts = 0;
  if (o.all) {
    const dir = store.p(BUILD_CACHE_MOUNTS_DIR);
    let dirs: string[] = [];
    try {
      dirs = fs.readdirSync(dir).map((d) => path.join(dir, d));
    } catch {
      /* none */
    }
    for (const d of dirs) bytes += contentSize(d);
    // Cache mounts hold files of the container's users (subordinate ids): the namespace removes them.
    if (dirs.length) await removeTrees(settings, dirs);
    mounts = dirs.length;
  }
  const { collectGarbage } = await import('../storage/prune');
  const gc = await collectGarbage(store, settings, freed, { orphans: false });
  return { entries, mounts, bytes: bytes + gc.bytes };
}
