/**
 * Addresses on user-defined networks (#16), kept in the store: ROOT/networks/ipam/<network
 * id>.json maps each address handed out to its container id, changed only under
 * ROOT/networks/ipam/<network id>.lock (ts/storage/fsutil.ts withLock). An address is never
 * handed out twice; it is freed when its container is removed; and an allocation whose
 * container no longer has a record (a crash between the allocation and the record's write, or a
 * record removed by hand) is taken back the next time the network allocates.
 *
 * Each allocation also keeps the pid of the process that made it: between the allocation and
 * the write of the container's record (create, connect) the record does not list the address
 * yet, and only a dead allocator tells a crash from that moment. So an allocation is taken back
 * when its container's record does not hold it and its allocator is gone (or has been alive for
 * an hour since: a long-lived API service whose create failed).
 *
 * An IPv6 address (a network created with --ipv6) is not allocated: it is the IPv4 address
 * under the network's /64 (ip6For), unique because the IPv4 one is.
 */
import fs from 'node:fs';
import { BurrowError } from '../errors';
import type { NetworkRecord } from '../engine/networks';
import { mkdirp, pidAlive, withLock, writeJsonAtomic } from '../storage/fsutil';
import type { Store } from '../storage/store';
import { contains, formatIp, lastAddr, parseCidr, parseIp, parseIp4, type Cidr } from './subnets';

/** One address handed out: to whom, by which process. */
interface Allocation {
  container: string;
  pid: number;
  /** When (ms since the epoch). */
  at?: number;
}

interface IpamFile {
  addresses: Record<string, Allocation>;
}

const isIpamFile = (v: unknown): v is IpamFile => typeof v === 'object' && v !== null && typeof (v as IpamFile).addresses === 'object' && (v as IpamFile).addresses !== null;

export function ipamDir(store: Store): string {
  return store.p('networks', 'ipam');
}

const fileOf = (store: Store, networkId: string) => `${ipamDir(store)}/${networkId}.json`;
const lockOf = (store: Store, networkId: string) => `${ipamDir(store)}/${networkId}.lock`;

function load(store: Store, networkId: string): IpamFile {
  let text: string;
  try {
    text = fs.readFileSync(fileOf(store, networkId), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { addresses: {} };
    throw err;
  }
  const v: unknown = JSON.parse(text);
  if (!isIpamFile(v)) throw new BurrowError('EINTERNAL', `${fileOf(store, networkId)}: unexpected content`, 'remove the file: its network then reclaims the addresses of containers that no longer exist');
  return v;
}

/** Runs `fn` under the network's IPAM lock (the directory made first). */
export function withIpamLock<T>(store: Store, networkId: string, fn: () => T): T {
  mkdirp(ipamDir(store));
  return withLock(lockOf(store, networkId), fn);
}

/** A network's IPv4 subnet and gateway from its record (IPAM.Config). */
export function v4Config(net: NetworkRecord): { subnet: Cidr; gateway: bigint } {
  for (const c of net.IPAM.Config) {
    if (typeof c.Subnet !== 'string' || c.Subnet.includes(':')) continue;
    const subnet = parseCidr(c.Subnet);
    const gw = typeof c.Gateway === 'string' && c.Gateway ? parseIp4(c.Gateway) : undefined;
    return { subnet, gateway: gw ?? subnet.addr + 1n };
  }
  throw new BurrowError('ENETWORK_NOT_FOUND', `network ${net.Name} has no IPv4 subnet: it is not a user-defined network`);
}

/** A network's IPv6 subnet from its record, if it has one. */
export function v6Config(net: NetworkRecord): { subnet: Cidr; gateway: bigint } | undefined {
  for (const c of net.IPAM.Config) {
    if (typeof c.Subnet !== 'string' || !c.Subnet.includes(':')) continue;
    const subnet = parseCidr(c.Subnet);
    const gw = typeof c.Gateway === 'string' && c.Gateway ? parseIp(c.Gateway)?.addr : undefined;
    return { subnet, gateway: gw ?? subnet.addr + 1n };
  }
  return undefined;
}

/** The IPv6 address that goes with IPv4 address `ip` on `net` (its /64 and the four bytes). */
export function ip6For(net: NetworkRecord, ip: string): string | undefined {
  const v6 = v6Config(net);
  const a = parseIp4(ip);
  if (!v6 || a === undefined) return undefined;
  return formatIp(v6.subnet.addr | a, true);
}

function recordHolds(store: Store, containerId: string, networkId: string, ip: string): boolean | undefined {
  let text: string;
  try {
    text = fs.readFileSync(store.p('containers', containerId, 'record.json'), 'utf8');
  } catch {
    return undefined;
  }
  try {
    const rec = JSON.parse(text) as { net?: { networks?: { network?: unknown; ip?: unknown }[] } };
    return !!rec.net?.networks?.some((e) => e.network === networkId && e.ip === ip);
  } catch {
    return undefined;
  }
}

/**
 * An allocating process that is still alive may be between the allocation and the record's
 * write; past this long it is not (a long-lived API service whose create failed without a
 * release), and its allocation is judged by the record alone.
 */
const PENDING_MS = 60 * 60 * 1000;

/** Takes back what crashed creates and removed records left: their allocator is gone and no record holds them. */
function reclaim(store: Store, networkId: string, f: IpamFile, now = Date.now()): boolean {
  let changed = false;
  for (const [ip, a] of Object.entries(f.addresses)) {
    if (recordHolds(store, a.container, networkId, ip)) continue;
    if (a.pid && pidAlive(a.pid) && now - (a.at ?? 0) < PENDING_MS) continue;
    delete f.addresses[ip];
    changed = true;
  }
  return changed;
}

function holderName(store: Store, containerId: string): string {
  try {
    const rec = JSON.parse(fs.readFileSync(store.p('containers', containerId, 'record.json'), 'utf8')) as { name?: unknown };
    if (typeof rec.name === 'string') return `${rec.name} (${containerId.slice(0, 12)})`;
  } catch {
    /* being created, or gone */
  }
  return containerId.slice(0, 12);
}

/** Whether the network's record still exists (a network removed meanwhile allocates nothing). */
function networkExists(store: Store, net: NetworkRecord): boolean {
  try {
    return (JSON.parse(fs.readFileSync(store.p('networks', `${net.Name}.json`), 'utf8')) as { Id?: unknown }).Id === net.Id;
  } catch {
    return false;
  }
}

/**
 * An address for `containerId` on `net`: `want` (`--ip`: inside the subnet, not the network or
 * broadcast address, not the gateway, not taken: else EIP_IN_USE), or the lowest free one.
 * Idempotent: a container that already has one gets the same.
 */
export function allocate(store: Store, net: NetworkRecord, containerId: string, want?: string): string {
  const { subnet, gateway } = v4Config(net);
  let wanted: bigint | undefined;
  if (want !== undefined) {
    wanted = parseIp4(want);
    if (wanted === undefined) throw new BurrowError('EUSAGE', `invalid --ip ${want}: want an IPv4 address`);
    const where = `network ${net.Name} (${formatIp(subnet.addr, false)}/${subnet.prefix})`;
    if (!contains(subnet, wanted)) throw new BurrowError('EIP_IN_USE', `invalid --ip ${want}: no configured subnet contains the IP address ${want} on ${where}`, `give an address inside ${formatIp(subnet.addr, false)}/${subnet.prefix}, or none`);
    if (subnet.prefix < 31 && (wanted === subnet.addr || wanted === lastAddr(subnet))) throw new BurrowError('EIP_IN_USE', `invalid --ip ${want}: it is the ${wanted === subnet.addr ? 'network' : 'broadcast'} address of ${where}`, 'give a host address of the subnet');
    if (wanted === gateway) throw new BurrowError('EIP_IN_USE', `Address already in use: ${want} is the gateway of ${where}`, 'give another address, or none');
  }
  return withIpamLock(store, net.Id, () => {
    if (!networkExists(store, net)) throw new BurrowError('ENETWORK_NOT_FOUND', `network ${net.Name} not found`);
    const f = load(store, net.Id);
    const changed = reclaim(store, net.Id, f);
    const mine = Object.entries(f.addresses).find(([, a]) => a.container === containerId)?.[0];
    const take = (ip: string): string => {
      if (mine && mine !== ip) delete f.addresses[mine];
      f.addresses[ip] = { container: containerId, pid: process.pid, at: Date.now() };
      writeJsonAtomic(fileOf(store, net.Id), f);
      return ip;
    };
    if (wanted !== undefined) {
      const ip = formatIp(wanted, false);
      const holder = f.addresses[ip];
      if (holder && holder.container !== containerId) throw new BurrowError('EIP_IN_USE', `Address already in use: ${ip} on network ${net.Name} is held by container ${holderName(store, holder.container)}`, 'give another --ip, or none for the lowest free one');
      return take(ip);
    }
    if (mine) {
      if (changed) writeJsonAtomic(fileOf(store, net.Id), f);
      return mine;
    }
    // Lowest free: the network and broadcast addresses and the gateway are never handed out.
    const first = subnet.prefix >= 31 ? subnet.addr : subnet.addr + 1n;
    const last = subnet.prefix >= 31 ? lastAddr(subnet) : lastAddr(subnet) - 1n;
    for (let a = first; a <= last; a++) {
      if (a === gateway) continue;
      const ip = formatIp(a, false);
      if (!f.addresses[ip]) return take(ip);
    }
    if (changed) writeJsonAtomic(fileOf(store, net.Id), f);
    throw new BurrowError('EIP_IN_USE', `no available IPv4 addresses on this network's address pools: ${net.Name} (${net.Id})`, 'remove containers from the network, or create a network with a larger --subnet');
  });
}

/** Frees `containerId`'s address on network `networkId` (nothing if it has none). */
export function release(store: Store, networkId: string, containerId: string): void {
  if (!fs.existsSync(fileOf(store, networkId))) return;
  withIpamLock(store, networkId, () => {
    const f = load(store, networkId);
    let changed = false;
    for (const [ip, a] of Object.entries(f.addresses)) {
      if (a.container !== containerId) continue;
      delete f.addresses[ip];
      changed = true;
    }
    if (changed) writeJsonAtomic(fileOf(store, networkId), f);
  });
}

/** Frees every address of `containerId` on every network (`rm`). */
export function releaseAll(store: Store, containerId: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(ipamDir(store));
  } catch {
    return;
  }
  for (const n of names) {
    const m = /^([0-9a-f]{64})\.json$/.exec(n);
    if (m) release(store, m[1]!, containerId);
  }
}

/**
 * The addresses a network has handed out, after taking back the stale ones: what keeps a
 * network in use while a container on it is being created (ts/engine/networks.ts removeNetwork).
 * `locked`: the caller holds the network's IPAM lock already (withIpamLock).
 */
export function allocations(store: Store, networkId: string, locked = false): Record<string, string> {
  if (!fs.existsSync(fileOf(store, networkId))) return {};
  const read = () => {
    const f = load(store, networkId);
    if (reclaim(store, networkId, f)) writeJsonAtomic(fileOf(store, networkId), f);
    return Object.fromEntries(Object.entries(f.addresses).map(([ip, a]) => [ip, a.container]));
  };
  return locked ? read() : withIpamLock(store, networkId, read);
}

/** Removes a network's IPAM file and lock (the network is going; called under nothing). */
export function dropNetwork(store: Store, networkId: string): void {
  fs.rmSync(fileOf(store, networkId), { force: true });
}
