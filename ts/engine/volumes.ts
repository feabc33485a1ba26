/**
 * Volumes for both front ends (`burrow volume …` and the API's /volumes): Docker's requests and
 * filters over the store's named volumes (storage/volumes.ts), with their events (create,
 * destroy). Only the `local` driver exists, and it takes no options.
 */
import { BurrowError } from '../errors';
import { createVolume as storeCreate, inspectVolume, labelMatches, listVolumes, pruneVolumes as storePrune, removeVolume as storeRemove, volumeUsers, type Volume } from '../storage/volumes';
import type { EngineContext } from './context';
import { emitEvent } from './events';

export type { Volume };

export interface VolumeCreateRequest {
  Name?: string;
  Driver?: string;
  DriverOpts?: Record<string, string>;
  Labels?: Record<string, string>;
}

export const VOLUME_FILTERS = ['name', 'label', 'dangling', 'driver'];

function event(ctx: EngineContext, action: 'create' | 'destroy', name: string): void {
  emitEvent(ctx, { Type: 'volume', Action: action, Actor: { ID: name, Attributes: { driver: 'local' } } });
}

/** Docker's `name` filter: the value as a regular expression, or failing that a substring. */
function nameMatches(name: string, f: string): boolean {
  if (name === f) return true;
  try {
    return new RegExp(f).test(name);
  } catch {
    return name.includes(f);
  }
}

/** `volume ls`: Docker's filters name, label (KEY or KEY=VALUE), dangling (true: no container uses it), driver. */
export function listVolumesFiltered(ctx: EngineContext, filters: Record<string, string[]> = {}): Volume[] {
  for (const k of Object.keys(filters)) if (!VOLUME_FILTERS.includes(k)) throw new BurrowError('EUSAGE', `invalid filter '${k}': volumes take ${VOLUME_FILTERS.join(', ')}`);
  const dangling = filters.dangling?.map((v) => {
    if (/^(1|true)$/i.test(v)) return true;
    if (/^(0|false)$/i.test(v)) return false;
    throw new BurrowError('EUSAGE', `invalid filter 'dangling=${v}': want true or false`);
  });
  const users = dangling?.length ? volumeUsers(ctx.store) : undefined;
  return listVolumes(ctx.store).filter(
    (v) =>
      (!filters.name?.length || filters.name.some((f) => nameMatches(v.Name, f))) &&
      (filters.label ?? []).every((f) => labelMatches(v.Labels, f)) &&
      (!filters.driver?.length || filters.driver.includes(v.Driver)) &&
      (!dangling?.length || dangling.includes(!users!.get(v.Name)?.length)),
  );
}

/** `volume create`: an existing volume of that name is returned as it is (Docker's behaviour). */
export function createVolume(ctx: EngineContext, r: VolumeCreateRequest): Volume {
  if (r.Driver && r.Driver !== 'local') throw new BurrowError('EUSAGE', `volume driver ${r.Driver} is not supported: burrow has only the local driver`, 'leave the driver out, or use "local"');
  if (r.DriverOpts && Object.keys(r.DriverOpts).length) throw new BurrowError('EUSAGE', `volume options (${Object.keys(r.DriverOpts).join(', ')}) are not supported: the local driver of burrow makes a plain directory`, 'create the volume without options, or bind-mount a directory you prepared');
  for (const [k, v] of Object.entries(r.Labels ?? {})) if (typeof v !== 'string') throw new BurrowError('EUSAGE', `invalid label ${k}: its value must be a string`);
  const { created, ...v } = storeCreate(ctx.store, r.Name, r.Labels ?? {});
  if (created) event(ctx, 'create', v.Name);
  return v;
}

export function inspect(ctx: EngineContext, name: string): Volume {
  return inspectVolume(ctx.store, name);
}

/** `volume rm`: refuses a volume a container uses (EVOLUME_IN_USE); `force`: a missing volume is no error. */
export async function removeVolume(ctx: EngineContext, name: string, force = false): Promise<boolean> {
  try {
    await storeRemove(ctx.store, await ctx.settings(), name);
  } catch (err) {
    if (force && err instanceof BurrowError && err.code === 'EVOLUME_NOT_FOUND') return false;
    throw err;
  }
  event(ctx, 'destroy', name);
  return true;
}

/** `volume prune`: the volumes no container uses (label=, label!= filters); their names and the bytes freed. */
export async function pruneVolumes(ctx: EngineContext, filters: string[] = []): Promise<{ names: string[]; bytes: number }> {
  const r = await storePrune(ctx.store, await ctx.settings(), filters);
  for (const n of r.names) event(ctx, 'destroy', n);
  return r;
}
