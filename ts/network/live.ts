/**
 * `network connect` / `network disconnect` of a running container: the network owner adds or
 * takes away its veth now (the `connect` and `disconnect` requests of the owner's protocol,
 * crates/burrow-core/src/net/bridge/mod.rs; the owner knows the container's init by its
 * monitor's attach). The record's part (the endpoint, its address from IPAM) is the caller's
 * (ts/engine/networks.ts): a stopped container gets its endpoints at its next start.
 */
import { BurrowError } from '../errors';
import type { ContainerRecord } from '../container/records';
import type { Store } from '../storage/store';
import { holdOwner, type OwnerLease } from './owner';
import { endpointNetworks, ownerDirOf, ownerEndpoints } from './runtime';
import type { EndpointRecord } from './user';

async function lease(store: Store, rec: ContainerRecord): Promise<OwnerLease> {
  if (rec.net?.mode !== 'user') {
    throw new BurrowError('ENETWORK_FORBIDDEN', `container ${rec.name} is not on user-defined networks (--network ${rec.network}): its network cannot change while it runs`, 'create it with --network NAME');
  }
  const s = store.settings();
  return holdOwner(ownerDirOf(rec), { uidMap: s?.uidMap ?? [], gidMap: s?.gidMap ?? [] });
}

/**
 * The running container `rec` joins `endpoint`'s network (its record's endpoints, `endpoint`
 * not among them yet, decide whether this one carries the default route: only if none did).
 */
export async function connectRunning(store: Store, rec: ContainerRecord, endpoint: EndpointRecord): Promise<void> {
  const l = await lease(store, rec);
  try {
    const eps = [...(rec.net?.networks ?? []).filter((e) => e.network !== endpoint.network), endpoint];
    const all = ownerEndpoints(eps, endpointNetworks(store, eps));
    await l.request({ op: 'connect', container: rec.id, endpoint: all[all.length - 1]! });
  } finally {
    l.release();
  }
}

/** The running container `rec` leaves network `networkId` (its veth goes, its names there too). */
export async function disconnectRunning(store: Store, rec: ContainerRecord, networkId: string): Promise<void> {
  const l = await lease(store, rec);
  try {
    await l.request({ op: 'disconnect', container: rec.id, network: networkId });
  } finally {
    l.release();
  }
}

/*
 * ts/engine/networks.ts's (netcli's) names for the above, as its branch calls them (merge of
 * netcli and netrun in the netapi branch, to test the API on both).
 */
import type { EngineContext } from '../engine/context';

export function liveConnect(ctx: EngineContext, rec: ContainerRecord, endpoint: EndpointRecord): Promise<void> {
  return connectRunning(ctx.store, rec, endpoint);
}

export function liveDisconnect(ctx: EngineContext, rec: ContainerRecord, networkId: string): Promise<void> {
  return disconnectRunning(ctx.store, rec, networkId);
}
