/**
 * The live part of `network connect|disconnect` (#16): telling the user's network owner to add
 * or take away a running container's interface (the `connect` and `disconnect` requests of
 * crates/burrow-core/src/net/bridge/mod.rs; the owner knows the container's init by its
 * monitor's attach). ts/engine/networks.ts calls these after it has written (before it removes)
 * the endpoint in the container's record, only for a running container, and undoes the record
 * when liveConnect throws. A stopped container gets its endpoints at its next start.
 */
import { BurrowError } from '../errors';
import type { ContainerRecord } from '../container/records';
import type { EngineContext } from '../engine/context';
import type { Store } from '../storage/store';
import { holdOwner, type OwnerLease } from './owner';
import { endpointDefs, ownerDirOf, ownerEndpoints } from './runtime';
import type { EndpointRecord } from './user';

async function lease(store: Store, rec: ContainerRecord): Promise<OwnerLease> {
  if (rec.net?.mode !== 'user') {
    throw new BurrowError('ENETWORK_FORBIDDEN', `container ${rec.name} is not on user-defined networks (--network ${rec.network}): its network cannot change while it runs`, 'create it with --network NAME');
  }
  const s = store.settings();
  return holdOwner(ownerDirOf(rec), { uidMap: s?.uidMap ?? [], gidMap: s?.gidMap ?? [] });
}

/**
 * Adds `endpoint` (already in `rec`) to the running container `rec`. It carries the default
 * route only if it is the container's first routed network (none of the others did).
 */
export async function liveConnect(ctx: EngineContext, rec: ContainerRecord, endpoint: EndpointRecord): Promise<void> {
  const l = await lease(ctx.store, rec);
  try {
    const eps = rec.net?.networks ?? [];
    const all = ownerEndpoints(eps, endpointDefs(ctx.store, eps));
    const mine = all[eps.findIndex((e) => e.network === endpoint.network)];
    if (!mine) throw new BurrowError('EINTERNAL', `network connect: the endpoint on ${endpoint.name} is not in ${rec.name}'s record`);
    await l.request({ op: 'connect', container: rec.id, endpoint: mine });
  } finally {
    l.release();
  }
}

/** Takes the running container's interface on network `networkId` away (its names there too). */
export async function liveDisconnect(ctx: EngineContext, rec: ContainerRecord, networkId: string): Promise<void> {
  const l = await lease(ctx.store, rec);
  try {
    await l.request({ op: 'disconnect', container: rec.id, network: networkId });
  } finally {
    l.release();
  }
}
