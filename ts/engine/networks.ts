/**
 * Networks as Docker's clients see them: Docker's three built-in networks, which stand for the
 * modes that exist without a network of their own (`bridge` is burrow's default, a network
 * namespace per container through slirp4netns or pasta; `host`; `none`), and user-defined
 * networks (#16): a bridge in the user's network owner's namespace (crates/burrow-core/src/net/
 * bridge/mod.rs), whose containers reach each other by address and name.
 *
 * A user-defined network is ROOT/networks/NAME.json (Docker's fields; IPAM.Config holds its
 * Subnet and Gateway, and an IPv6 one with --ipv6), its addresses ROOT/networks/ipam/ID.json
 * (ts/network/ipam.ts). Its members are the containers whose record (`net.mode` user) lists an
 * endpoint on it, with the address IPAM gave. Subnets follow Docker's default pools and never
 * overlap another network, a route of the host or slirp4netns's (ts/network/subnets.ts); a
 * create chooses and writes under ROOT/networks/.create.lock, so two at once never share one.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { BurrowError } from '../errors';
import type { ContainerRecord } from '../container/records';
import { mkdirp, pidAlive, readJson, withLock } from '../storage/fsutil';
import * as ipam from '../network/ipam';
import * as sn from '../network/subnets';
import type { HostNets } from '../network/subnets';
import { bridgeName, macFor, type EndpointRecord, type NetworkDef } from '../network/user';
import type { EngineContext } from './context';
import { emitEvent } from './events';
import { builtinNetworkId, recordNetworks, type BuiltinNetwork } from './network-events';

export interface NetworkRecord {
  Name: string;
  Id: string;
  Created: string;
  Driver: string;
  EnableIPv6: boolean;
  IPAM: { Driver: string; Options: Record<string, string> | null; Config: Record<string, unknown>[] };
  Internal: boolean;
  Attachable: boolean;
  Options: Record<string, string>;
  Labels: Record<string, string>;
}

/** Docker's network object (list and inspect). */
export interface DockerNetwork extends NetworkRecord {
  Scope: 'local';
  Ingress: boolean;
  ConfigFrom: { Network: string };
  ConfigOnly: boolean;
  Containers: Record<string, { Name: string; EndpointID: string; MacAddress: string; IPv4Address: string; IPv6Address: string }>;
}

export interface NetworkCreateRequest {
  Name: string;
  Driver?: string;
  CheckDuplicate?: boolean;
  Internal?: boolean;
  Attachable?: boolean;
  EnableIPv6?: boolean;
  IPAM?: { Driver?: string | null; Options?: Record<string, string> | null; Config?: Record<string, unknown>[] | null } | null;
  Options?: Record<string, string> | null;
  Labels?: Record<string, string> | null;
}

export const BUILTIN = ['bridge', 'host', 'none'] as const satisfies readonly BuiltinNetwork[];

/** The options that set a network's MTU (Docker's, and podman's short one). */
const MTU_OPTIONS = ['com.docker.network.driver.mtu', 'mtu'];
/**
 * `-o allow_host_loopback=true`: containers on the network reach the host's loopback through
 * the outbound helper's host address (10.0.2.2, [fd00::2]), as with `--network
 * slirp4netns:allow_host_loopback=true` (slirp4netns only; bridge/nat.rs).
 */
const HOST_LOOPBACK_OPTION = 'allow_host_loopback';
const DEFAULT_MTU = 65520;

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const isRecord = (v: unknown): v is NetworkRecord => typeof v === 'object' && v !== null && typeof (v as NetworkRecord).Id === 'string' && typeof (v as NetworkRecord).Name === 'string';

function created(ctx: EngineContext): string {
  const st = fs.statSync(ctx.store.p('storage.json'), { throwIfNoEntry: false });
  return (st?.mtime ?? new Date()).toISOString();
}

function builtin(ctx: EngineContext, name: BuiltinNetwork): NetworkRecord {
  const base = { Name: name, Id: builtinNetworkId(ctx, name), Created: created(ctx), EnableIPv6: false, Internal: false, Attachable: false, Labels: {} };
  if (name === 'bridge') return { ...base, Driver: 'bridge', IPAM: { Driver: 'default', Options: null, Config: [{ Subnet: '10.0.2.0/24', Gateway: '10.0.2.2' }] }, Options: { 'burrow.network': 'a network namespace per container (slirp4netns or pasta)' } };
  return { ...base, Driver: name === 'host' ? 'host' : 'null', IPAM: { Driver: 'default', Options: null, Config: [] }, Options: {} };
}

function dir(ctx: EngineContext): string {
  return ctx.store.p('networks');
}

function recorded(ctx: EngineContext): NetworkRecord[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir(ctx)).filter((n) => n.endsWith('.json'));
  } catch {
    return [];
  }
  const out: NetworkRecord[] = [];
  for (const n of names.sort()) {
    try {
      out.push(readJson(`${dir(ctx)}/${n}`, isRecord));
    } catch {
      /* removed meanwhile, or not ours */
    }
  }
  return out;
}

function allNetworks(ctx: EngineContext): NetworkRecord[] {
  return [...BUILTIN.map((b) => builtin(ctx, b)), ...recorded(ctx)];
}

/** By name, full id or unique id prefix, as Docker resolves network references. */
export function findNetwork(ctx: EngineContext, ref: string): NetworkRecord {
  const all = allNetworks(ctx);
  const hit = all.find((n) => n.Name === ref) ?? all.find((n) => n.Id === ref);
  if (hit) return hit;
  const byPrefix = ref ? all.filter((n) => n.Id.startsWith(ref)) : [];
  if (byPrefix.length > 1) throw new BurrowError('EUSAGE', `network ${ref} is ambiguous (${byPrefix.length} matches found on id)`);
  if (!byPrefix[0]) throw new BurrowError('ENETWORK_NOT_FOUND', `network ${ref} not found`);
  return byPrefix[0];
}

// Recorded networks cannot take these names, so the name tells.
export const isBuiltin = (n: NetworkRecord): boolean => (BUILTIN as readonly string[]).includes(n.Name);

/** Docker's EndpointID of a container on a network: stable, so that inspect shows the same one each time. */
export function endpointId(networkId: string, containerId: string): string {
  return createHash('sha256').update(`burrow-endpoint\0${networkId}\0${containerId}`).digest('hex');
}

/** What the network owner needs of a user-defined network (ts/network/user.ts NetworkDef). */
export function networkDef(rec: NetworkRecord): NetworkDef {
  const v4 = ipam.v4Config(rec);
  const v6 = ipam.v6Config(rec);
  const mtuOpt = MTU_OPTIONS.map((k) => rec.Options[k]).find((v) => v !== undefined);
  return {
    id: rec.Id,
    name: rec.Name,
    bridge: bridgeName(rec.Id),
    subnet: sn.formatCidr(v4.subnet),
    gateway: sn.formatIp(v4.gateway, false),
    ...(v6 ? { subnet6: sn.formatCidr(v6.subnet), gateway6: sn.formatIp(v6.gateway, true) } : {}),
    internal: rec.Internal,
    ...(rec.Options[HOST_LOOPBACK_OPTION] === 'true' ? { hostLoopback: true } : {}),
    mtu: mtuOpt ? Number(mtuOpt) : DEFAULT_MTU,
  };
}

/** The first interface name (eth0, eth1, ...) no endpoint of a container has. */
export function nextIfname(endpoints: readonly EndpointRecord[]): string {
  for (let i = 0; ; i++) if (!endpoints.some((e) => e.ifname === `eth${i}`)) return `eth${i}`;
}

/**
 * A container's endpoint on `net` with address `ip` (from ts/network/ipam.ts allocate): the MAC
 * Docker derives from the address, the IPv6 address that goes with it on an --ipv6 network.
 */
export function endpointRecord(net: NetworkRecord, ip: string, o: { ifname: string; aliases?: string[]; ipGiven?: boolean }): EndpointRecord {
  const ip6 = ipam.ip6For(net, ip);
  return { network: net.Id, name: net.Name, ip, ...(ip6 ? { ip6 } : {}), mac: macFor(ip), ifname: o.ifname, aliases: [...new Set(o.aliases ?? [])], ...(o.ipGiven ? { ipGiven: true } : {}) };
}

/** The prefix length of a network's IPv4 subnet, for IPv4Address ("172.18.0.2/16"). */
function prefixOf(n: NetworkRecord, v6: boolean): string {
  const c = n.IPAM.Config.find((x) => typeof x.Subnet === 'string' && x.Subnet.includes(':') === v6);
  return typeof c?.Subnet === 'string' ? (c.Subnet.split('/')[1] ?? '') : '';
}

function isRunning(rec: ContainerRecord, dirOf: (id: string) => string, containerState: typeof import('../container/state').containerState): boolean {
  return containerState(rec, dirOf(rec.id)).status === 'running';
}

/**
 * The containers a network has: for a user-defined network, the endpoints their records list
 * (Docker's endpoints); for a built-in one, the containers in that mode.
 */
async function members(ctx: EngineContext, n: NetworkRecord, runningOnly: boolean): Promise<DockerNetwork['Containers']> {
  const { Containers } = await import('../container/records');
  const { containerState } = await import('../container/state');
  const cs = new Containers(ctx.store);
  const out: DockerNetwork['Containers'] = {};
  for (const rec of cs.all()) {
    const mode = rec.net?.mode ?? rec.network;
    if (isBuiltin(n)) {
      const on = mode !== 'user' && (n.Name === 'bridge' ? mode === 'slirp4netns' || mode === 'pasta' || rec.network === 'bridge' || rec.network === 'default' : mode === n.Name);
      if (!on) continue;
      if (runningOnly && !isRunning(rec, (i) => cs.dir(i), containerState)) continue;
      out[rec.id] = { Name: rec.name, EndpointID: '', MacAddress: '', IPv4Address: n.Name === 'bridge' ? '10.0.2.100/24' : '', IPv6Address: '' };
      continue;
    }
    const ep = mode === 'user' ? rec.net?.networks?.find((e) => e.network === n.Id) : undefined;
    if (!ep) continue;
    if (runningOnly && !isRunning(rec, (i) => cs.dir(i), containerState)) continue;
    out[rec.id] = { Name: rec.name, EndpointID: endpointId(n.Id, rec.id), MacAddress: ep.mac, IPv4Address: `${ep.ip}/${prefixOf(n, false)}`, IPv6Address: ep.ip6 ? `${ep.ip6}/${prefixOf(n, true)}` : '' };
  }
  return out;
}

function docker(n: NetworkRecord, containers: DockerNetwork['Containers']): DockerNetwork {
  return { Name: n.Name, Id: n.Id, Created: n.Created, Scope: 'local', Driver: n.Driver, EnableIPv6: n.EnableIPv6, IPAM: n.IPAM, Internal: n.Internal, Attachable: n.Attachable, Ingress: false, ConfigFrom: { Network: '' }, ConfigOnly: false, Containers: containers, Options: n.Options, Labels: n.Labels };
}

export const NETWORK_FILTERS = ['name', 'id', 'driver', 'label', 'type', 'scope', 'dangling'];

function labelOk(labels: Record<string, string>, f: string): boolean {
  const i = f.indexOf('=');
  return i < 0 ? f in labels : labels[f.slice(0, i)] === f.slice(i + 1);
}

function regexOrSubstring(s: string, f: string): boolean {
  try {
    return new RegExp(f).test(s);
  } catch {
    return s.includes(f);
  }
}

/** `network ls`: Docker's filters name, id (prefix), driver, label, type (builtin|custom), scope, dangling. */
export async function listNetworks(ctx: EngineContext, f: Record<string, string[]> = {}): Promise<DockerNetwork[]> {
  for (const k of Object.keys(f)) if (!NETWORK_FILTERS.includes(k)) throw new BurrowError('EUSAGE', `invalid filter '${k}': networks take ${NETWORK_FILTERS.join(', ')}`);
  for (const t of f.type ?? []) if (t !== 'builtin' && t !== 'custom') throw new BurrowError('EUSAGE', `invalid filter 'type=${t}': want builtin or custom`);
  for (const d of f.dangling ?? []) if (!/^(1|0|true|false)$/i.test(d)) throw new BurrowError('EUSAGE', `invalid filter 'dangling=${d}': want true or false`);
  const out: DockerNetwork[] = [];
  for (const n of allNetworks(ctx)) {
    const ok =
      (!f.name?.length || f.name.some((x) => regexOrSubstring(n.Name, x))) &&
      (!f.id?.length || f.id.some((x) => n.Id.startsWith(x))) &&
      (!f.driver?.length || f.driver.includes(n.Driver)) &&
      (f.label ?? []).every((x) => labelOk(n.Labels, x)) &&
      (!f.type?.length || f.type.includes(isBuiltin(n) ? 'builtin' : 'custom')) &&
      (!f.scope?.length || f.scope.includes('local'));
    if (!ok) continue;
    if (f.dangling?.length) {
      const unused = !isBuiltin(n) && Object.keys(await members(ctx, n, true)).length === 0;
      if (!f.dangling.some((d) => /^(1|true)$/i.test(d) === unused)) continue;
    }
    out.push(docker(n, {}));
  }
  return out;
}

/** `network inspect`: Docker's object; Containers are the running ones (Docker's active endpoints). */
export async function inspectNetwork(ctx: EngineContext, ref: string): Promise<DockerNetwork> {
  const n = findNetwork(ctx, ref);
  return docker(n, await members(ctx, n, true));
}

function stringOrNone(v: unknown, what: string): string | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw new BurrowError('EUSAGE', `invalid IPAM ${what}: want a string`);
  return v;
}

/** The subnets asked for (IPAM.Config), checked: at most one IPv4 and one IPv6, gateways inside. */
function askedSubnets(r: NetworkCreateRequest): { v4?: { subnet: string; gateway?: string }; v6?: { subnet: string; gateway?: string } } {
  const out: ReturnType<typeof askedSubnets> = {};
  for (const c of r.IPAM?.Config ?? []) {
    const subnet = stringOrNone(c.Subnet, 'Subnet');
    const gateway = stringOrNone(c.Gateway, 'Gateway');
    if (stringOrNone(c.IPRange, 'IPRange')) throw new BurrowError('EUSAGE', 'an IP range (--ip-range) is not supported: burrow hands out the whole subnet', 'leave --ip-range out; give addresses with --ip');
    const aux = c.AuxiliaryAddresses;
    if (aux !== undefined && aux !== null && (typeof aux !== 'object' || Object.keys(aux).length)) throw new BurrowError('EUSAGE', 'auxiliary addresses (--aux-address) are not supported', 'leave --aux-address out');
    if (!subnet) {
      if (gateway) throw new BurrowError('EUSAGE', `every ip-range or gateway must have a corresponding subnet (gateway ${gateway})`, 'give --subnet with --gateway');
      continue;
    }
    const v6 = subnet.includes(':');
    if (v6 ? out.v6 : out.v4) throw new BurrowError('EUSAGE', `more than one IPv${v6 ? 6 : 4} subnet (${subnet}): burrow gives a network one of each`);
    out[v6 ? 'v6' : 'v4'] = { subnet, ...(gateway ? { gateway } : {}) };
  }
  if (out.v6 && !r.EnableIPv6) throw new BurrowError('EUSAGE', `an IPv6 subnet (${out.v6.subnet}) needs IPv6 enabled on the network`, 'add --ipv6');
  return out;
}

/**
 * `network create`: records a bridge network with its subnets (name unique: ENETWORK_EXISTS,
 * Docker's 409; a subnet that overlaps: ENETWORK_OVERLAP, nothing written). `host` is the host's
 * routes and interfaces (tests give made-up ones).
 */
export function createNetwork(ctx: EngineContext, r: NetworkCreateRequest, host?: HostNets): { Id: string; Warning: string } {
  const name = r.Name;
  if (!name || !NAME_RE.test(name)) throw new BurrowError('EUSAGE', `invalid network name ${JSON.stringify(name ?? '')}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
  const driver = r.Driver || 'bridge';
  if (driver !== 'bridge') throw new BurrowError('EUSAGE', `network driver ${driver} is not supported: burrow has bridge networks only`, 'leave the driver out (bridge)');
  if (r.IPAM?.Driver && r.IPAM.Driver !== 'default') throw new BurrowError('EUSAGE', `IPAM driver ${r.IPAM.Driver} is not supported: burrow has its own (default)`, 'leave the IPAM driver out');
  if ((BUILTIN as readonly string[]).includes(name)) throw new BurrowError('ENETWORK_EXISTS', `network with name ${name} already exists`);
  const options = r.Options ?? {};
  for (const k of MTU_OPTIONS) {
    const v = options[k];
    if (v !== undefined && !(/^\d+$/.test(v) && Number(v) >= 68 && Number(v) <= 65535)) throw new BurrowError('EUSAGE', `invalid option ${k}=${v}: want an MTU from 68 to 65535`);
  }
  const hl = options[HOST_LOOPBACK_OPTION];
  if (hl !== undefined && hl !== 'true' && hl !== 'false') throw new BurrowError('EUSAGE', `invalid option ${HOST_LOOPBACK_OPTION}=${hl}: want true or false`);
  const asked = askedSubnets(r);
  const v4 = asked.v4 ? sn.parseCidr(asked.v4.subnet) : undefined;
  const v6 = asked.v6 ? sn.parseCidr(asked.v6.subnet) : undefined;
  // A container's IPv6 address is its IPv4 one under the subnet (ts/network/ipam.ts ip6For): 32 bits of host part at least.
  if (v6 && v6.prefix > 96) throw new BurrowError('EUSAGE', `invalid --subnet ${asked.v6!.subnet}: an IPv6 subnet of burrow's is a /96 or larger`, 'give a /64, or none for a random one');
  const gateway = (c: { v6: boolean; addr: bigint; prefix: number } | undefined, given: string | undefined): string | undefined => {
    if (!c) return undefined;
    if (!given) return sn.formatIp(sn.firstHost(c), c.v6);
    const ip = sn.parseIp(given);
    if (!ip || ip.v6 !== c.v6) throw new BurrowError('EUSAGE', `invalid --gateway ${given}: want an IPv${c.v6 ? 6 : 4} address`);
    if (!sn.contains(c, ip.addr)) throw new BurrowError('EUSAGE', `no matching subnet for gateway ${given}: it is not in ${sn.formatCidr(c)}`, `give a gateway inside ${sn.formatCidr(c)}, or none for its first address`);
    if (ip.addr === c.addr || (!c.v6 && c.prefix < 31 && ip.addr === sn.lastAddr(c))) throw new BurrowError('EUSAGE', `invalid --gateway ${given}: it is the ${ip.addr === c.addr ? 'network' : 'broadcast'} address of ${sn.formatCidr(c)}`);
    return sn.formatIp(ip.addr, c.v6);
  };
  const gw4 = gateway(v4, asked.v4?.gateway);
  const gw6 = gateway(v6, asked.v6?.gateway);
  mkdirp(dir(ctx));
  const file = `${dir(ctx)}/${name}.json`;
  const rec = withLock(`${dir(ctx)}/.create.lock`, () => {
    if (fs.existsSync(file)) throw new BurrowError('ENETWORK_EXISTS', `network with name ${name} already exists`);
    const nets = host ?? sn.hostNets();
    const taken = recorded(ctx).flatMap((n) =>
      n.IPAM.Config.flatMap((c) => {
        try {
          return typeof c.Subnet === 'string' ? [{ cidr: sn.parseCidr(c.Subnet), what: `network ${n.Name}'s ${c.Subnet}` }] : [];
        } catch {
          return [];
        }
      }),
    );
    for (const c of [v4, v6]) {
      const hit = c && sn.firstOverlap(c, taken, nets);
      if (hit) throw new BurrowError('ENETWORK_OVERLAP', `${sn.OVERLAP_MESSAGE}: ${sn.formatCidr(c)} overlaps ${hit.what}`, 'give another --subnet, or none for a free one');
    }
    const sub4 = v4 ?? sn.chooseSubnet4(taken, nets);
    const sub6 = r.EnableIPv6 ? (v6 ?? sn.chooseSubnet6(taken, nets)) : undefined;
    const config: Record<string, unknown>[] = [{ Subnet: sn.formatCidr(sub4), Gateway: gw4 ?? sn.formatIp(sn.firstHost(sub4), false) }];
    if (sub6) config.push({ Subnet: sn.formatCidr(sub6), Gateway: gw6 ?? sn.formatIp(sn.firstHost(sub6), true) });
    const out: NetworkRecord = {
      Name: name,
      Id: randomBytes(32).toString('hex'),
      Created: new Date().toISOString(),
      Driver: driver,
      EnableIPv6: !!sub6,
      IPAM: { Driver: 'default', Options: r.IPAM?.Options ?? {}, Config: config },
      Internal: !!r.Internal,
      Attachable: !!r.Attachable,
      Options: options,
      Labels: r.Labels ?? {},
    };
    // Exclusive: a name is claimed once, even by a create that does not take this lock.
    let fd: number;
    try {
      fd = fs.openSync(file, 'wx', 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new BurrowError('ENETWORK_EXISTS', `network with name ${name} already exists`);
      throw err;
    }
    try {
      fs.writeSync(fd, JSON.stringify(out));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    return out;
  });
  emitEvent(ctx, { Type: 'network', Action: 'create', Actor: { ID: rec.Id, Attributes: { name, type: driver } } });
  return { Id: rec.Id, Warning: '' };
}

/**
 * `network rm`: not a built-in network, and not one with active endpoints. As Docker, which
 * releases a container's endpoint when it stops, only running containers keep a network: a
 * stopped (or never started) one loses its address with the network, keeps the endpoint in its
 * record (inspect shows it without an address), and its next start fails with ENETWORK_NOT_FOUND
 * until it is reconnected or recreated (ts/network/runtime.ts endpointNetworks). A container
 * being created on it (an address handed out, its record not written yet) keeps it in use too.
 * The IPAM file goes with it.
 */
export async function removeNetwork(ctx: EngineContext, ref: string): Promise<void> {
  const n = findNetwork(ctx, ref);
  if (isBuiltin(n)) throw new BurrowError('ENETWORK_FORBIDDEN', `${n.Name} is a pre-defined network and cannot be removed`);
  const { Containers } = await import('../container/records');
  const { containerState } = await import('../container/state');
  const cs = new Containers(ctx.store);
  // Under the lock every allocation takes: no address is handed out on a network going away,
  // and one handed out for a container whose record is not written yet keeps it in use.
  ipam.withIpamLock(ctx.store, n.Id, () => {
    const using = new Map<string, string>();
    const recorded = new Set<string>();
    for (const rec of cs.all()) {
      if (rec.net?.mode !== 'user' || !rec.net.networks?.some((e) => e.network === n.Id)) continue;
      recorded.add(rec.id);
      // Running, being started (an init in the created state) or waiting to restart: its endpoint is up or coming up.
      const st = containerState(rec, cs.dir(rec.id));
      if (st.status === 'running' || st.pid > 0 || st.restarting) using.set(rec.id, rec.name);
    }
    for (const id of Object.values(ipam.allocations(ctx.store, n.Id, true))) if (!recorded.has(id) && !using.has(id)) using.set(id, cs.get(id)?.name ?? '');
    if (using.size) {
      const list = [...using].map(([id, nm]) => `name:${JSON.stringify(nm)} id:${JSON.stringify(id.slice(0, 12))}`).join(', ');
      throw new BurrowError('ENETWORK_FORBIDDEN', `error while removing network: network ${n.Name} has active endpoints (${list})`, `stop or remove its running containers, or disconnect them (burrow network disconnect ${n.Name} CONTAINER), first`);
    }
    // The file of this network, not of one created since under the same name.
    const file = `${dir(ctx)}/${n.Name}.json`;
    let cur: NetworkRecord | undefined;
    try {
      cur = readJson(file, isRecord);
    } catch {
      /* gone */
    }
    if (cur?.Id !== n.Id) throw new BurrowError('ENETWORK_NOT_FOUND', `network ${ref} not found`);
    fs.rmSync(file);
    ipam.dropNetwork(ctx.store, n.Id);
  });
  emitEvent(ctx, { Type: 'network', Action: 'destroy', Actor: { ID: n.Id, Attributes: { name: n.Name, type: n.Driver } } });
}

/**
 * `network prune`: recorded networks without active endpoints (filters label, label!, until).
 * As Docker's prune (daemon/prune.go: no endpoints), a network that only stopped containers
 * are on goes; their next start fails until they are reconnected or recreated.
 */
export async function pruneNetworks(ctx: EngineContext, f: Record<string, string[]> = {}): Promise<string[]> {
  for (const k of Object.keys(f)) if (!['label', 'label!', 'until'].includes(k)) throw new BurrowError('EUSAGE', `invalid filter '${k}': network prune takes label, label! and until`);
  const until = f.until?.map((u) => (/^\d+(\.\d+)?$/.test(u) ? Number(u) * 1000 : Date.parse(u)));
  if (until?.some((t) => Number.isNaN(t))) throw new BurrowError('EUSAGE', `invalid filter 'until=${f.until!.join(',')}': want a timestamp`);
  const out: string[] = [];
  for (const n of recorded(ctx)) {
    if (!(f.label ?? []).every((x) => labelOk(n.Labels, x))) continue;
    if ((f['label!'] ?? []).some((x) => labelOk(n.Labels, x))) continue;
    if (until?.some((t) => Date.parse(n.Created) >= t)) continue;
    if (Object.keys(await members(ctx, n, true)).length) continue;
    try {
      await removeNetwork(ctx, n.Id);
      out.push(n.Name);
    } catch {
      /* in use by now, or removed meanwhile */
    }
  }
  return out;
}

export interface ConnectOptions {
  /** `--alias`: names it answers to on this network besides its name and id. */
  aliases?: string[];
  /** `--ip`: the address to take (EIP_IN_USE when taken). */
  ip?: string;
  /** disconnect `-f`: a network that no longer exists, or an owner that does not answer, still goes from the record. */
  force?: boolean;
}

/** Runs `fn` on a container's current record, under its network lock (connects and disconnects of one container in turn). */
async function withContainerRecord<T>(ctx: EngineContext, ref: string, fn: (rec: ContainerRecord, save: (r: ContainerRecord) => void) => Promise<T>): Promise<T> {
  const { Containers } = await import('../container/records');
  const cs = new Containers(ctx.store);
  const found = cs.find(ref);
  const lock = `${cs.dir(found.id)}/network.lock`;
  // Taken by hand, not with withLock: fn awaits the network owner, and withLock's fn is synchronous.
  const take = (): boolean => {
    try {
      const fd = fs.openSync(lock, 'wx', 0o600);
      fs.writeSync(fd, String(process.pid));
      fs.closeSync(fd);
      return true;
    } catch {
      return false;
    }
  };
  const start = Date.now();
  while (!take()) {
    const owner = Number(fs.readFileSync(lock, { encoding: 'utf8', flag: 'r' }) || '0');
    if (owner && !pidAlive(owner)) fs.rmSync(lock, { force: true });
    else if (Date.now() - start > 30_000) throw new BurrowError('EINTERNAL', `timed out waiting for ${lock} held by pid ${owner}`);
    else await new Promise((r) => setTimeout(r, 10));
  }
  try {
    const rec = cs.get(found.id);
    if (!rec) throw new BurrowError('ECONTAINER_NOT_FOUND', `no such container: ${ref}`);
    return await fn(rec, (r) => cs.save(r));
  } finally {
    fs.rmSync(lock, { force: true });
  }
}

async function running(ctx: EngineContext, rec: ContainerRecord): Promise<boolean> {
  const { Containers } = await import('../container/records');
  const { containerState } = await import('../container/state');
  return isRunning(rec, (i) => new Containers(ctx.store).dir(i), containerState);
}

/** Why a container in mode `mode` cannot join a user-defined network after its creation. */
function notJoinable(rec: ContainerRecord, n: NetworkRecord): BurrowError {
  const mode = rec.net?.mode ?? rec.network;
  const why =
    mode === 'host' || mode === 'container' || mode === 'none'
      ? `container sharing network namespace with another container or host cannot be connected to any other network (${rec.name} uses --network ${rec.network})`
      : `container ${rec.name} is on the default network (a network namespace of its own through ${mode}): burrow sets up user-defined networks when a container is created`;
  return new BurrowError('ENETWORK_FORBIDDEN', `cannot connect container ${rec.name} to network ${n.Name}: ${why}`, `create the container with --network ${n.Name}`);
}

/**
 * `network connect`: an endpoint with an address (IPAM) in the container's record, and, for a
 * running container, on its interfaces through the network owner (ts/network/live.ts); undone
 * when the owner fails. A container joins user-defined networks when it is created on one
 * (`--network NAME`): one created on a built-in network cannot join one later.
 * `action` 'disconnect' is disconnectNetwork (the API's routes call both through here).
 */
export async function connectNetwork(ctx: EngineContext, ref: string, container: string, action: 'connect' | 'disconnect' = 'connect', o: ConnectOptions = {}): Promise<void> {
  if (action === 'disconnect') return disconnectNetwork(ctx, ref, container, o);
  const n = findNetwork(ctx, ref);
  const { Containers } = await import('../container/records');
  const first = new Containers(ctx.store).find(container);
  if (isBuiltin(n)) throw new BurrowError('ENETWORK_FORBIDDEN', `cannot connect container ${first.name} to network ${n.Name}: burrow sets a container's network when it is created (--network)`);
  const { liveConnect } = await import('../network/live');
  await withContainerRecord(ctx, container, async (rec, save) => {
    if (rec.net?.mode !== 'user') throw notJoinable(rec, n);
    const eps = rec.net.networks ?? [];
    if (eps.some((e) => e.network === n.Id)) throw new BurrowError('ENETWORK_FORBIDDEN', `endpoint with name ${rec.name} already exists in network ${n.Name}`);
    const ip = ipam.allocate(ctx.store, n, rec.id, o.ip);
    const ep = endpointRecord(n, ip, { ifname: nextIfname(eps), aliases: o.aliases ?? [], ipGiven: o.ip !== undefined });
    const next: ContainerRecord = { ...rec, net: { ...rec.net, networks: [...eps, ep] } };
    try {
      save(next);
    } catch (err) {
      ipam.release(ctx.store, n.Id, rec.id);
      throw err;
    }
    if (await running(ctx, rec)) {
      try {
        await liveConnect(ctx, next, ep);
      } catch (err) {
        save(rec);
        ipam.release(ctx.store, n.Id, rec.id);
        throw err;
      }
    }
  });
  afterNetworkChange(ctx, Containers, first.id);
  emitEvent(ctx, { Type: 'network', Action: 'connect', Actor: { ID: n.Id, Attributes: { container: first.id, name: n.Name, type: n.Driver } } });
}

/**
 * What the container's holder logs a disconnect for at its exit (network-events.ts), made the
 * record's again: a running container that joined or left a network leaves the new list.
 */
function afterNetworkChange(ctx: EngineContext, containers: typeof import('../container/records').Containers, id: string): void {
  const cs = new containers(ctx.store);
  const rec = cs.get(id);
  if (rec) recordNetworks(ctx, rec, cs.dir(id));
}

/**
 * `network disconnect`: the endpoint goes from the container (the owner takes its interface
 * away first when it runs) and its address is freed. With `force`, a network that no longer
 * exists is matched by the name or id its endpoint kept, and an owner's failure does not keep
 * the endpoint.
 */
export async function disconnectNetwork(ctx: EngineContext, ref: string, container: string, o: ConnectOptions = {}): Promise<void> {
  let n: NetworkRecord | undefined;
  try {
    n = findNetwork(ctx, ref);
  } catch (err) {
    if (!o.force || !(err instanceof BurrowError) || err.code !== 'ENETWORK_NOT_FOUND') throw err;
  }
  const { Containers } = await import('../container/records');
  const first = new Containers(ctx.store).find(container);
  if (n && isBuiltin(n)) throw new BurrowError('ENETWORK_FORBIDDEN', `cannot disconnect container ${first.name} from network ${n.Name}: burrow sets a container's network when it is created (--network)`);
  const { liveDisconnect } = await import('../network/live');
  let networkId = n?.Id;
  await withContainerRecord(ctx, container, async (rec, save) => {
    const eps = rec.net?.mode === 'user' ? (rec.net.networks ?? []) : [];
    const byRef = () => eps.find((e) => e.name === ref || e.network === ref) ?? (ref ? eps.find((e) => e.network.startsWith(ref)) : undefined);
    // With -f, an endpoint on a removed network of this name goes even when a new one has the name.
    const gone = (e: EndpointRecord) => !recorded(ctx).some((r) => r.Id === e.network);
    const ep = n ? (eps.find((e) => e.network === n.Id) ?? (o.force ? eps.find((e) => e.name === n.Name && gone(e)) : undefined)) : byRef();
    if (!ep || !rec.net) {
      if (!n) throw new BurrowError('ENETWORK_NOT_FOUND', `network ${ref} not found`);
      throw new BurrowError('ENETWORK_FORBIDDEN', `container ${rec.id} is not connected to network ${n.Name}`);
    }
    networkId = ep.network;
    if (await running(ctx, rec)) {
      try {
        await liveDisconnect(ctx, rec, ep.network);
      } catch (err) {
        if (!o.force) throw err;
      }
    }
    save({ ...rec, net: { ...rec.net, networks: eps.filter((e) => e !== ep) } });
    ipam.release(ctx.store, ep.network, rec.id);
  });
  afterNetworkChange(ctx, Containers, first.id);
  emitEvent(ctx, { Type: 'network', Action: 'disconnect', Actor: { ID: networkId ?? ref, Attributes: { container: first.id, name: n?.Name ?? ref, type: n?.Driver ?? 'bridge' } } });
}

/**
 * What a container create's network mode means, for the containers engine: a built-in mode, or
 * a user-defined network.
 */
export function resolveNetworkMode(ctx: EngineContext, mode: string): { builtin: BuiltinNetwork } | { network: NetworkRecord } {
  if (!mode || mode === 'default' || mode === 'bridge') return { builtin: 'bridge' };
  if (mode === 'host' || mode === 'none') return { builtin: mode };
  return { network: findNetwork(ctx, mode) };
}
