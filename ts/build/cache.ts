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
import type { ImageConfig } from '../image/manifest';
import { hexOf, writeJsonAtomic } from '../storage/fsutil';
import type { Store } from '../storage/store';
import type { BuildState } from './state';

export const CACHE_DIR = 'build-cache';

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
  return store.p(CACHE_DIR, `${hexOf(key)}.json`);
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
  fs.mkdirSync(store.p(CACHE_DIR), { recursive: true, mode: 0o700 });
  writeJsonAtomic(entryPath(store, s.key), { key: s.key, config: s.config, layers: s.layers, created: new Date().toISOString() } satisfies Entry);
}
