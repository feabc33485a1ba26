/**
 * The live part of `network connect|disconnect` (#16): telling the user's network owner to add
 * or take away a running container's interface (the `connect` and `disconnect` requests of
 * crates/burrow-core/src/net/bridge/mod.rs). ts/engine/networks.ts calls these after it has
 * written (before it removes) the endpoint in the container's record, only for a running
 * container, and undoes the record when liveConnect throws.
 *
 * Stub bodies: filled in by the `netrun` helper (ts/network/owner.ts is the owner's client).
 */
import type { ContainerRecord } from '../container/records';
import type { EngineContext } from '../engine/context';
import type { EndpointRecord } from './user';

/** Adds `endpoint` (already in `rec`) to the running container `rec`. */
export async function liveConnect(ctx: EngineContext, rec: ContainerRecord, endpoint: EndpointRecord): Promise<void> {
  void ctx;
  void rec;
  void endpoint;
  return Promise.resolve();
}

/** Takes the running container's interface on network `networkId` away. */
export async function liveDisconnect(ctx: EngineContext, rec: ContainerRecord, networkId: string): Promise<void> {
  void ctx;
  void rec;
  void networkId;
  return Promise.resolve();
}
