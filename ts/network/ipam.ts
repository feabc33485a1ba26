/**
 * Addresses on user-defined networks (#16), kept in the store: ROOT/networks/ipam/<network
 * id>.json maps each address handed out to its container id, changed only under
 * ROOT/networks/ipam/<network id>.lock (ts/storage/fsutil.ts withLock). An address is never
 * handed out twice; it is freed when its container is removed; and an allocation whose
 * container no longer has a record (a crash between the allocation and the record's write, or a
 * record removed by hand) is taken back the next time the network allocates.
 *
 * Contract written by the lead; implemented by the `netcli` helper.
 */
import type { Store } from '../storage/store';
import type { NetworkRecord } from '../engine/networks';

/**
 * An address for `containerId` on `net`: `want` (`--ip`: inside the subnet, not the network or
 * broadcast address, not the gateway, not taken: else EIP_IN_USE), or the lowest free one.
 * Idempotent: a container that already has one gets the same.
 */
export function allocate(store: Store, net: NetworkRecord, containerId: string, want?: string): string {
  void store;
  void net;
  void containerId;
  void want;
  throw new Error('ipam.allocate: not implemented yet (netcli)');
}

/** Frees `containerId`'s address on network `networkId` (nothing if it has none). */
export function release(store: Store, networkId: string, containerId: string): void {
  void store;
  void networkId;
  void containerId;
}
