/**
 * User-defined networks (#16): the shapes shared by the store (ts/engine/networks.ts), IPAM
 * (ts/network/ipam.ts), the network owner's client (ts/network/owner.ts), `run`/`create` and the
 * API. The owner process itself is `burrow-monitor network-owner`
 * (crates/burrow-core/src/net/bridge/mod.rs explains the design and the protocol; the JSON shapes
 * below are that protocol's, field for field).
 *
 * A network's record stays Docker's (ts/engine/networks.ts NetworkRecord: IPAM.Config holds
 * its Subnet and Gateway). Its bridge in the owner's namespace is "bw" + the id's first 12
 * (bridgeName). A container's endpoints live in its record (`net.networks`, mode `user`), with
 * the address IPAM gave it when it was created: kept across restarts, freed on `rm`.
 */

/** What the owner needs of a network (bridge/mod.rs NetworkDef). */
export interface NetworkDef {
  id: string;
  name: string;
  bridge: string;
  subnet: string;
  gateway: string;
  subnet6?: string;
  gateway6?: string;
  internal: boolean;
  /** `-o allow_host_loopback=true`: the host's loopback through the outbound helper's host address. */
  hostLoopback?: boolean;
  mtu: number;
}

/** A container's endpoint as its record keeps it. */
export interface EndpointRecord {
  /** Network id (64 hex) and name (the name as it was when the container joined). */
  network: string;
  name: string;
  ip: string;
  ip6?: string;
  mac: string;
  /** eth0, eth1, ... */
  ifname: string;
  aliases: string[];
  /** `--ip` was given: Docker keeps it in IPAMConfig. */
  ipGiven?: boolean;
}

/** An endpoint as the owner's protocol carries it (bridge/mod.rs Endpoint). */
export interface OwnerEndpoint {
  network: NetworkDef;
  ip: string;
  ip6?: string;
  mac: string;
  ifname: string;
  aliases: string[];
  defaultRoute: boolean;
}

export type OwnerRequest =
  | { op: 'hold' }
  | { op: 'attach'; pid: number; container: { id: string; name: string }; endpoints: OwnerEndpoint[]; dns: string[] }
  | { op: 'connect'; container: string; endpoint: OwnerEndpoint }
  | { op: 'disconnect'; container: string; network: string }
  | { op: 'status' };

export interface OwnerReply {
  ok: boolean;
  pid?: number;
  userns?: string;
  /** hold: why IPv6 is not routed out of the owner's namespace, when it is not (pasta without a host IPv6 route). */
  noIpv6Out?: string;
  interfaces?: { network: string; ifname: string; mac: string; ip: string }[];
  networks?: { id: string; name: string; bridge: string; endpoints: { container: string; name: string; ip: string }[] }[];
  code?: string;
  message?: string;
}

/** The owner's directory under the run root, and its files (bridge/mod.rs constants). */
export const OWNER_DIR = 'network-owner';
export const OWNER_SOCKET = 'owner.sock';
export const OWNER_RECORD = 'owner.json';
export const OWNER_LOG = 'owner.log';
export const OWNER_START_LOCK = 'start.lock';

/** The bridge of network `id` in the owner's namespace (15 characters at most, as Linux wants). */
export function bridgeName(id: string): string {
  return `bw${id.slice(0, 12)}`;
}

/** Docker's MAC for an address: 02:42 and its four bytes. */
export function macFor(ip: string): string {
  return ['02', '42', ...ip.split('.').map((b) => Number(b).toString(16).padStart(2, '0'))].join(':');
}
