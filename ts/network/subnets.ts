/**
 * Subnets of user-defined networks (#16): parsing and checking CIDRs, and Docker's default
 * address pools. A network's subnet must not overlap another network's, a route of the host or
 * one of its interfaces' networks (a container would lose the host's destination), nor
 * slirp4netns's 10.0.2.0/24, which the outbound helper uses inside the network owner's namespace.
 *
 * Default IPv4 subnets are Docker's local pools: 172.17.0.0/16 to 172.31.0.0/16 (172.17 left to
 * Docker's own default bridge, so that burrow and Docker on one host do not pick the same one),
 * then 192.168.0.0/16 in /20s. Default IPv6 subnets are a random ULA /64 (RFC 4193: fd, a 40-bit
 * random global id, a 16-bit subnet id), as podman and Docker pick them.
 *
 * The host is read once per call through a `HostNets` (routes and interface networks), so that the
 * policy is tested with made-up routes.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import { BurrowError } from '../errors';

/** An IPv4 (32-bit) or IPv6 (128-bit) network: its first address and prefix length. */
export interface Cidr {
  v6: boolean;
  addr: bigint;
  prefix: number;
}

/** What the host has that a network must not overlap, each tagged with where it was seen. */
export interface HostNets {
  v4: { cidr: Cidr; what: string }[];
  v6: { cidr: Cidr; what: string }[];
}

/** slirp4netns's network inside the network owner's namespace (its tap device, its gateway). */
export const SLIRP_CIDR = '10.0.2.0/24';

/** Docker's words for an overlap (libnetwork ipam), which scripts and clients match on. */
export const OVERLAP_MESSAGE = 'Pool overlaps with other one on this address space';

const bits = (v6: boolean): number => (v6 ? 128 : 32);

export function parseIp4(s: string): bigint | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  let v = 0n;
  for (const p of m.slice(1)) {
    const n = Number(p);
    if (n > 255 || (p.length > 1 && p.startsWith('0'))) return undefined;
    v = (v << 8n) | BigInt(n);
  }
  return v;
}

export function parseIp6(s: string): bigint | undefined {
  if (!/^[0-9a-fA-F:.]+$/.test(s) || s.split('::').length > 2) return undefined;
  let text = s;
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const n = parseIp4(v4[1]!);
    if (n === undefined) return undefined;
    text = `${text.slice(0, -v4[1]!.length)}${(n >> 16n).toString(16)}:${(n & 0xffffn).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const groups = (x: string) => (x ? x.split(':') : []);
  const h = groups(head);
  const t = tail === undefined ? [] : groups(tail);
  const fill = 8 - h.length - t.length;
  if (tail === undefined ? fill !== 0 : fill < 1) return undefined;
  const all = [...h, ...Array<string>(tail === undefined ? 0 : fill).fill('0'), ...t];
  let v = 0n;
  for (const g of all) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
    v = (v << 16n) | BigInt(parseInt(g, 16));
  }
  return v;
}

export function formatIp(addr: bigint, v6: boolean): string {
  if (!v6) return [24n, 16n, 8n, 0n].map((s) => String((addr >> s) & 0xffn)).join('.');
  const g = Array.from({ length: 8 }, (_, i) => Number((addr >> BigInt((7 - i) * 16)) & 0xffffn));
  // The longest run of zero groups (two or more) becomes "::", as RFC 5952 writes it.
  let best = -1;
  let len = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > len && j - i > 1) [best, len] = [i, j - i];
    i = j;
  }
  const hex = (a: number[]) => a.map((x) => x.toString(16)).join(':');
  return best < 0 ? hex(g) : `${hex(g.slice(0, best))}::${hex(g.slice(best + len))}`;
}

export function formatCidr(c: Cidr): string {
  return `${formatIp(c.addr, c.v6)}/${c.prefix}`;
}

export function parseIp(s: string): { v6: boolean; addr: bigint } | undefined {
  const a4 = parseIp4(s);
  if (a4 !== undefined) return { v6: false, addr: a4 };
  const a6 = s.includes(':') ? parseIp6(s) : undefined;
  return a6 !== undefined ? { v6: true, addr: a6 } : undefined;
}

/**
 * A CIDR as given to `--subnet`: an address with host bits set is refused, with the network it
 * probably meant (Docker's "it should be 172.20.0.0/16").
 */
export function parseCidr(s: string, flag = '--subnet'): Cidr {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(s.trim());
  const ip = m ? parseIp(m[1]!) : undefined;
  const prefix = m ? Number(m[2]) : NaN;
  if (!ip || !(prefix >= 0 && prefix <= bits(ip.v6))) throw new BurrowError('EUSAGE', `invalid ${flag} ${s}: want a network in CIDR notation, such as 172.20.0.0/16 or fd00:1::/64`);
  const c: Cidr = { v6: ip.v6, addr: ip.addr & mask(ip.v6, prefix), prefix };
  if (c.addr !== ip.addr) throw new BurrowError('EUSAGE', `invalid ${flag} ${s}: it should be ${formatCidr(c)}`, 'give the network address: its host bits set to zero');
  return c;
}

export function mask(v6: boolean, prefix: number): bigint {
  const all = (1n << BigInt(bits(v6))) - 1n;
  return all ^ ((1n << BigInt(bits(v6) - prefix)) - 1n);
}

export function lastAddr(c: Cidr): bigint {
  return c.addr | ((1n << BigInt(bits(c.v6) - c.prefix)) - 1n);
}

export function contains(c: Cidr, addr: bigint): boolean {
  return (addr & mask(c.v6, c.prefix)) === c.addr;
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  if (a.v6 !== b.v6) return false;
  const p = Math.min(a.prefix, b.prefix);
  const m = mask(a.v6, p);
  return (a.addr & m) === (b.addr & m);
}

function hexToBigLE(hex: string): bigint {
  // /proc/net/route writes each address as the host's 32-bit integer: little-endian bytes on
  // the machines burrow runs on (x86_64, aarch64).
  const b = Buffer.from(hex.padStart(8, '0'), 'hex');
  return BigInt(os.endianness() === 'LE' ? b.readUInt32LE(0) : b.readUInt32BE(0));
}

/** The IPv4 routes of /proc/net/route, default routes (a /0 overlaps everything) left out. */
export function parseRoutes4(text: string): { cidr: Cidr; what: string }[] {
  const out: { cidr: Cidr; what: string }[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8 || !/^[0-9A-Fa-f]{8}$/.test(f[1]!) || !/^[0-9A-Fa-f]{8}$/.test(f[7]!)) continue;
    const m = hexToBigLE(f[7]!);
    const prefix = m.toString(2).replace(/0+$/, '').length;
    if (prefix === 0) continue;
    const cidr: Cidr = { v6: false, addr: hexToBigLE(f[1]!) & mask(false, prefix), prefix };
    out.push({ cidr, what: `the host's route to ${formatCidr(cidr)} (${f[0]})` });
  }
  return out;
}

/** The IPv6 routes of /proc/net/ipv6_route, default, multicast and link-local ones left out. */
export function parseRoutes6(text: string): { cidr: Cidr; what: string }[] {
  const out: { cidr: Cidr; what: string }[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || !/^[0-9a-f]{32}$/i.test(f[0]!)) continue;
    const prefix = parseInt(f[1]!, 16);
    const addr = BigInt(`0x${f[0]}`);
    if (prefix === 0 || addr >> 120n === 0xffn || addr >> 118n === 0x3fan) continue;
    const cidr: Cidr = { v6: true, addr: addr & mask(true, prefix), prefix };
    out.push({ cidr, what: `the host's route to ${formatCidr(cidr)} (${f[9]})` });
  }
  return out;
}

function readOr(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** The host's routes and its interfaces' networks, as this process's network namespace has them. */
export function hostNets(): HostNets {
  const nets: HostNets = { v4: parseRoutes4(readOr('/proc/net/route')), v6: parseRoutes6(readOr('/proc/net/ipv6_route')) };
  for (const [name, addrs] of Object.entries(os.networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (!a.cidr || (a.family === 'IPv6' && a.address.toLowerCase().startsWith('fe80'))) continue;
      const ip = parseIp(a.address);
      const prefix = Number(a.cidr.split('/')[1]);
      if (!ip || !(prefix > 0)) continue;
      const cidr: Cidr = { v6: ip.v6, addr: ip.addr & mask(ip.v6, prefix), prefix };
      (ip.v6 ? nets.v6 : nets.v4).push({ cidr, what: `the network ${formatCidr(cidr)} of the host's interface ${name}` });
    }
  }
  return nets;
}

/** What else is taken: the recorded networks' subnets, named. */
export interface Taken {
  cidr: Cidr;
  what: string;
}

/** Docker's local default pools, in order, skipping 172.17.0.0/16 (Docker's default bridge). */
export function* defaultPool4(): Generator<Cidr> {
  for (let b = 18; b <= 31; b++) yield { v6: false, addr: (172n << 24n) | (BigInt(b) << 16n), prefix: 16 };
  for (let c = 0; c < 256; c += 16) yield { v6: false, addr: (192n << 24n) | (168n << 16n) | (BigInt(c) << 8n), prefix: 20 };
}

/** The first of what `subnet` overlaps: another network, a route or interface of the host, slirp4netns's. */
export function firstOverlap(subnet: Cidr, networks: Taken[], host: HostNets): Taken | undefined {
  const slirp: Taken = { cidr: parseCidr(SLIRP_CIDR), what: `slirp4netns's ${SLIRP_CIDR} (the outbound helper inside the network namespace)` };
  const all = [...networks, ...(subnet.v6 ? host.v6 : [...host.v4, slirp])];
  return all.find((t) => overlaps(subnet, t.cidr));
}

/** The first default pool that overlaps nothing (ENETWORK_OVERLAP-like failure when all do). */
export function chooseSubnet4(networks: Taken[], host: HostNets): Cidr {
  for (const c of defaultPool4()) if (!firstOverlap(c, networks, host)) return c;
  throw new BurrowError('ENETWORK_OVERLAP', 'could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network', 'remove unused networks (burrow network prune) or give one with --subnet');
}

/** A random ULA /64 (fdXX:XXXX:XXXX:XXXX::/64) that overlaps nothing. */
export function chooseSubnet6(networks: Taken[], host: HostNets, random: (n: number) => Buffer = randomBytes): Cidr {
  for (let i = 0; i < 100; i++) {
    const r = random(7);
    let addr = 0xfdn;
    for (const byte of r) addr = (addr << 8n) | BigInt(byte);
    const c: Cidr = { v6: true, addr: addr << 64n, prefix: 64 };
    if (!firstOverlap(c, networks, host)) return c;
  }
  throw new BurrowError('ENETWORK_OVERLAP', 'could not find an available IPv6 subnet to assign to the network', 'give one with --subnet');
}

/** The default gateway of a subnet: its first address. */
export function firstHost(c: Cidr): bigint {
  return c.addr + 1n;
}
