/**
 * `system df`: the store's disk use by kind (images, containers, volumes), with what prune
 * could give back. Image content is counted once however many images share it: an image's
 * unpacked layers and its blobs (compressed layers, config, manifests, which the store keeps
 * too), plus content that no image names any more (left by `rmi`, reclaimable by prune).
 * "Active" images are those a container (of any state) was created from; reclaimable image
 * content is what neither an active image nor a container's root uses.
 */
import * as fs from 'node:fs';
import { Containers } from '../container/records';
import { containerState } from '../container/state';
import { BUILD_CACHE_MOUNTS_DIR, buildCacheContent, buildCacheEntries, containerRefs, contentSize, imageContent, layerBytes, storedBlobs, storedLayers, writableDir } from './refs';
import { hexOf } from './fsutil';
import { squashPathOf } from './image-format';
import type { Store } from './store';
import { listVolumes, volumeSize, volumeUsers } from './volumes';

export interface Totals {
  total: number;
  active: number;
  size: number;
  reclaimable: number;
}

export interface ImageUsage {
  id: string;
  repoTags: string[];
  repoDigests: string[];
  created?: string;
  size: number;
  /** the part of `size` other images share */
  sharedSize: number;
  uniqueSize: number;
  containers: number;
}

export interface ContainerUsage {
  id: string;
  name: string;
  image: string;
  command: string[];
  created: string;
  status: string;
  /** bytes of its own files: its writable layer (the copy driver: its whole root) */
  size: number;
  volumes: number;
}

export interface VolumeUsage {
  name: string;
  links: number;
  size: number;
}

export interface DiskUsage {
  images: Totals & { items: ImageUsage[] };
  containers: Totals & { items: ContainerUsage[] };
  volumes: Totals & { items: VolumeUsage[] };
  /**
   * `burrow build`'s cache: its entries (total), the layers and blobs only it keeps (no image
   * names them), and the RUN cache mounts; all of it reclaimable by `builder prune -a`.
   */
  buildCache: Totals;
}

export function diskUsage(store: Store): DiskUsage {
  const refs = containerRefs(store);
  const layers = storedLayers(store);
  const blobs = storedBlobs(store);
  const unit = new Map<string, number>();
  for (const l of layers.values()) unit.set(`l:${l.hex}`, layerBytes(store, l));
  for (const [hex, b] of blobs) unit.set(`b:${hex}`, b.size);
  // The store's squashfs of an image (image-format.ts): content of that image alone.
  for (const img of store.images()) {
    const size = fs.statSync(squashPathOf(store, img.id), { throwIfNoEntry: false })?.size;
    if (size !== undefined) unit.set(`q:${hexOf(img.id)}`, size);
  }
  const sizeOf = (k: string) => unit.get(k) ?? 0;

  // Which images hold each piece of content.
  const holders = new Map<string, number>();
  const imgs = store.images().map((img) => {
    const c = imageContent(img);
    const keys = [...c.layers.map((h) => `l:${h}`), ...c.blobs.map((h) => `b:${h}`), `q:${hexOf(img.id)}`].filter((k) => unit.has(k));
    for (const k of keys) holders.set(k, (holders.get(k) ?? 0) + 1);
    return { img, keys };
  });
  const used = new Set<string>([...refs.layers].map((h) => `l:${h}`));
  const items: ImageUsage[] = imgs.map(({ img, keys }) => {
    const n = refs.images.get(img.id)?.length ?? 0;
    if (n) keys.forEach((k) => used.add(k));
    const size = keys.reduce((s, k) => s + sizeOf(k), 0);
    const sharedSize = keys.filter((k) => (holders.get(k) ?? 0) > 1).reduce((s, k) => s + sizeOf(k), 0);
    return { id: img.id, repoTags: img.repoTags, repoDigests: img.repoDigests, ...(img.created ? { created: img.created } : {}), size, sharedSize, uniqueSize: size - sharedSize, containers: n };
  });
  // Content only the build cache keeps is the cache's, not the images'.
  const cached = buildCacheContent(store);
  const cacheOnly = new Set([...cached.layers.map((h) => `l:${h}`), ...cached.blobs.map((h) => `b:${h}`)].filter((k) => unit.has(k) && !holders.has(k) && !used.has(k)));
  let size = 0;
  let reclaimable = 0;
  let cacheBytes = 0;
  for (const [k, s] of unit) {
    if (cacheOnly.has(k)) {
      cacheBytes += s;
      continue;
    }
    size += s;
    if (!used.has(k)) reclaimable += s;
  }
  const cacheEntries = buildCacheEntries(store).length;
  const mountBytes = contentSize(store.p(BUILD_CACHE_MOUNTS_DIR));

  const containers = new Containers(store);
  const volUsers = volumeUsers(store);
  const ctrs: ContainerUsage[] = containers.all().map((rec) => {
    const st = containerState(rec, containers.dir(rec.id));
    return {
      id: rec.id,
      name: rec.name,
      image: rec.imageName,
      command: rec.command,
      created: rec.created,
      status: st.status,
      size: contentSize(writableDir(rec, containers.dir(rec.id))),
      volumes: rec.mounts.filter((m) => m.type === 'volume').length,
    };
  });
  const vols: VolumeUsage[] = listVolumes(store).map((v) => ({ name: v.Name, links: volUsers.get(v.Name)?.length ?? 0, size: volumeSize(store, v.Name) }));
  const sum = <T>(xs: T[], f: (x: T) => number) => xs.reduce((s, x) => s + f(x), 0);
  return {
    images: { total: items.length, active: items.filter((i) => i.containers > 0).length, size, reclaimable, items },
    containers: {
      total: ctrs.length,
      active: ctrs.filter((c) => c.status === 'running').length,
      size: sum(ctrs, (c) => c.size),
      reclaimable: sum(
        ctrs.filter((c) => c.status !== 'running'),
        (c) => c.size,
      ),
      items: ctrs,
    },
    volumes: {
      total: vols.length,
      active: vols.filter((v) => v.links > 0).length,
      size: sum(vols, (v) => v.size),
      reclaimable: sum(
        vols.filter((v) => v.links === 0),
        (v) => v.size,
      ),
      items: vols,
    },
    buildCache: { total: cacheEntries, active: 0, size: cacheBytes + mountBytes, reclaimable: cacheBytes + mountBytes },
  };
}
