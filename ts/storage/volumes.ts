/**
 * Named volumes: ROOT/volumes/NAME/_data, made by `volume create` or on first use by `run -v
 * NAME:/dst` (container/create.ts); `--mount type=volume` without a source makes an anonymous
 * one, `anon-…`. Which containers use a volume is read from their records. Removal renames the
 * volume into tmp/ before deleting it (its files may belong to subordinate ids: the store's user
 * namespace deletes them), so a killed removal leaves nothing half-deleted under volumes/.
 * ROOT/volumes/NAME/volume.json keeps what `volume create` was given (labels, creation time);
 * a volume without it (made by `run -v`, or before labels) has none.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BurrowError } from '../errors';
import { mkdirp, readJson } from './fsutil';
import { contentSize } from './refs';
import type { StorageSettings, Store } from './store';
import { removeTrees } from './unpack';

export const VOLUME_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export interface Volume {
  Name: string;
  Driver: 'local';
  Mountpoint: string;
  CreatedAt: string;
  Labels: Record<string, string>;
  Options: Record<string, string>;
  Scope: 'local';
}

interface VolumeMeta {
  CreatedAt: string;
  Labels: Record<string, string>;
}

const isMeta = (v: unknown): v is VolumeMeta => typeof v === 'object' && v !== null && typeof (v as VolumeMeta).CreatedAt === 'string' && typeof (v as VolumeMeta).Labels === 'object' && (v as VolumeMeta).Labels !== null;

function describe(store: Store, name: string): Volume | undefined {
  const st = fs.statSync(store.p('volumes', name), { throwIfNoEntry: false });
  if (!st?.isDirectory()) return undefined;
  let meta: VolumeMeta | undefined;
  try {
    meta = readJson(store.p('volumes', name, 'volume.json'), isMeta);
  } catch {
    meta = undefined;
  }
  const created = meta?.CreatedAt ?? (st.birthtime.getTime() ? st.birthtime.toISOString() : st.ctime.toISOString());
  return { Name: name, Driver: 'local', Mountpoint: store.p('volumes', name, '_data'), CreatedAt: created, Labels: { ...meta?.Labels }, Options: {}, Scope: 'local' };
}

export function listVolumes(store: Store): Volume[] {
  let names: string[];
  try {
    names = fs.readdirSync(store.p('volumes')).filter((n) => VOLUME_NAME.test(n));
  } catch {
    return [];
  }
  return names
    .sort()
    .map((n) => describe(store, n))
    .filter((v): v is Volume => !!v);
}

export function inspectVolume(store: Store, name: string): Volume {
  const v = VOLUME_NAME.test(name) ? describe(store, name) : undefined;
  if (!v) throw new BurrowError('EVOLUME_NOT_FOUND', `no such volume: ${name}`);
  return v;
}

/**
 * Creates a volume (an existing one is kept, as Docker does); a random name when none given.
 * `created` says whether this call made it. Its labels are written before the directory gets
 * its name (made aside in tmp/, then renamed), so nobody sees a labelled volume without them.
 */
export function createVolume(store: Store, name?: string, labels: Record<string, string> = {}): Volume & { created: boolean } {
  const n = name || randomBytes(32).toString('hex');
  if (!VOLUME_NAME.test(n)) throw new BurrowError('EUSAGE', `invalid volume name ${JSON.stringify(n)}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
  store.init();
  const existing = describe(store, n);
  if (existing) return { ...existing, created: false };
  const tmp = mkdirp(path.join(store.p('tmp'), `volume-${process.pid}-${randomBytes(4).toString('hex')}`), 0o700);
  mkdirp(path.join(tmp, '_data'), 0o755);
  fs.writeFileSync(path.join(tmp, 'volume.json'), JSON.stringify({ CreatedAt: new Date().toISOString(), Labels: labels } satisfies VolumeMeta));
  fs.chmodSync(tmp, 0o700);
  let created = true;
  try {
    fs.renameSync(tmp, store.p('volumes', n));
  } catch (err) {
    // Another create (or `run -v`) made it meanwhile: theirs is kept.
    fs.rmSync(tmp, { recursive: true, force: true });
    if (!['EEXIST', 'ENOTEMPTY'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
    created = false;
  }
  return { ...describe(store, n)!, created };
}

/** volume name → ids of the containers (any state) that mount it. */
export function volumeUsers(store: Store): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let ids: string[];
  try {
    ids = fs.readdirSync(store.p('containers')).filter((n) => /^[a-f0-9]{64}$/.test(n));
  } catch {
    return out;
  }
  for (const id of ids) {
    let mounts: { type?: string; source?: string; name?: string }[] = [];
    try {
      mounts = (JSON.parse(fs.readFileSync(store.p('containers', id, 'record.json'), 'utf8')) as { mounts?: typeof mounts }).mounts ?? [];
    } catch {
      continue;
    }
    for (const m of mounts) {
      if (m.type !== 'volume') continue;
      const name = m.name ?? path.basename(path.dirname(m.source ?? ''));
      out.set(name, [...(out.get(name) ?? []), id]);
    }
  }
  return out;
}

export function volumeSize(store: Store, name: string): number {
  return contentSize(store.p('volumes', name, '_data'));
}

async function deleteVolumes(store: Store, settings: StorageSettings, names: string[]): Promise<void> {
  const trees: string[] = [];
  mkdirp(store.p('tmp'));
  for (const n of names) {
    const to = path.join(store.p('tmp'), `prune-${process.pid}-vol-${randomBytes(4).toString('hex')}`);
    fs.renameSync(store.p('volumes', n), to);
    trees.push(to);
  }
  await removeTrees(settings, trees);
}

/** `volume rm`: refuses a volume a container (of any state) uses. */
export async function removeVolume(store: Store, settings: StorageSettings, name: string): Promise<void> {
  inspectVolume(store, name);
  const users = volumeUsers(store).get(name);
  if (users?.length) throw new BurrowError('EVOLUME_IN_USE', `remove ${name}: volume is in use - [${users.join(', ')}]`, 'remove the containers that use it first');
  await deleteVolumes(store, settings, [name]);
}

/** Whether labels match a `label=KEY[=VALUE]` filter's value. */
export function labelMatches(labels: Record<string, string>, f: string): boolean {
  const i = f.indexOf('=');
  return i < 0 ? f in labels : labels[f.slice(0, i)] === f.slice(i + 1);
}

/**
 * `volume prune`: every volume no container uses (as Podman), that has every `label=` filter's
 * label and none of the `label!=` ones. Returns the names and the bytes they held.
 */
export async function pruneVolumes(store: Store, settings: StorageSettings, filters: string[]): Promise<{ names: string[]; bytes: number }> {
  for (const f of filters) if (!/^label!?=/.test(f)) throw new BurrowError('EUSAGE', `invalid filter ${JSON.stringify(f)}: volume prune takes label= and label!=`);
  const want = filters.filter((f) => f.startsWith('label=')).map((f) => f.slice('label='.length));
  const not = filters.filter((f) => f.startsWith('label!=')).map((f) => f.slice('label!='.length));
  const users = volumeUsers(store);
  const names = listVolumes(store)
    .filter((v) => want.every((f) => labelMatches(v.Labels, f)) && !not.some((f) => labelMatches(v.Labels, f)))
    .map((v) => v.Name)
    .filter((n) => !users.get(n)?.length);
  let bytes = 0;
  for (const n of names) bytes += volumeSize(store, n);
  await deleteVolumes(store, settings, names);
  return { names, bytes };
}
