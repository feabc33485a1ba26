/**
 * The client of the user's network owner (`burrow-runtime network-owner`; the design and the
 * protocol are in crates/burrow-core/src/net/bridge/mod.rs, the shapes in ./user.ts).
 *
 * Contract written by the lead; implemented by the `netrun` helper.
 */
import type { OwnerReply, OwnerRequest } from './user';

/** A lease on a running owner: it stays alive until `release` (or this process's exit). */
export interface OwnerLease {
  /** The owner's directory (`<run root>/network-owner`). */
  dir: string;
  pid: number;
  /** The user namespace containers on user-defined networks join (undefined as root). */
  userns?: string;
  /** Another request on the lease's connection. */
  request(req: OwnerRequest): Promise<OwnerReply>;
  release(): void;
}

/**
 * A lease on the owner in `dir`, starting one if none runs (under OWNER_START_LOCK, so that two
 * `run`s start one owner). The id maps are the store's (what every container gets).
 */
export function holdOwner(dir: string, opts: { uidMap: [number, number, number][]; gidMap: [number, number, number][] }): Promise<OwnerLease> {
  void dir;
  void opts;
  return Promise.reject(new Error('holdOwner: not implemented yet (netrun)'));
}
