/** Finding a local image by reference, id or id prefix, as Docker does. */
import { BurrowError } from '../errors';
import type { ImageRecord, Store } from '../storage/store';
import { parseReference } from './reference';

export function findImage(store: Store, ref: string): ImageRecord | undefined {
  const hex = ref.replace(/^sha256:/, '');
  if (/^[a-f0-9]{64}$/.test(hex)) return store.image(hex);
  const tags = store.tags();
  try {
    const r = parseReference(ref);
    const id = tags[r.canonical()];
    if (id) return store.image(id);
    if (r.digest) {
      const byDigest = store.images().find((i) => i.manifestDigest === r.digest || i.repoDigests.some((d) => d.endsWith(`@${r.digest}`)));
      if (byDigest) return byDigest;
    }
  } catch {
    /* not a reference: maybe an id prefix */
  }
  if (/^[a-f0-9]{4,63}$/.test(hex)) {
    const matches = store.images().filter((i) => i.id.replace(/^sha256:/, '').startsWith(hex));
    if (matches.length > 1) throw new BurrowError('EUSAGE', `multiple images match the prefix ${ref}: be more specific`);
    return matches[0];
  }
  return undefined;
}

export function requireImage(store: Store, ref: string): ImageRecord {
  const img = findImage(store, ref);
  if (!img) throw new BurrowError('EIMAGE_NOT_FOUND', `no such image: ${ref}`, `pull it first: burrow pull ${ref}`);
  return img;
}
