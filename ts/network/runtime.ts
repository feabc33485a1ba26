/**
 * What the runtime needs, at each start, to give a container its network: the config file its
 * network owner reads (`--network-config`, crates/burrow-core/src/net), and for
 * `container:NAME` the namespaces of that container, which exist only while it runs, so they are
 * put in the bundle now rather than at create.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SECCOMP_ARCHITECTURES } from '../container/seccomp';
import { BurrowError } from '../errors';
import { unlinkIfThere } from '../storage/fsutil';
import type { Store } from '../storage/store';
import type { ContainerRecord } from '../container/records';
import { PASTA_DNS } from './etc';
import type { NetworkRecord, PortSpec } from './options';
import type { OwnerLease } from './owner';
import { OWNER_DIR, type EndpointRecord, type NetworkDef, type OwnerEndpoint } from './user';

/** What the network owner wrote once the network was up (net::NetState). */
export interface NetState {
  helper: 'slirp4netns' | 'pasta' | null;
  helperPid: number | null;
  portHandler: 'burrow' | 'bypass' | 'slirp4netns';
  ports: (PortSpec & { dual: boolean })[];
  mtu: number;
}

export const STATE_FILE = 'network-state.json';
const CONFIG_FILE = 'network.json';

export function readNetState(dir: string): NetState | undefined {
  try {
    const v = JSON.parse(fs.readFileSync(path.join(dir, STATE_FILE), 'utf8')) as NetState;
    return Array.isArray(v.ports) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** A socket under the runroot, whose path is short enough for one (slirp4netns's API, the seccomp listener). */
function netSocket(rec: ContainerRecord, suffix: string): string {
  const dir = path.join(path.dirname(rec.runtimeRoot), 'net');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  return path.join(dir, `${rec.id.slice(0, 16)}${suffix}`);
}

interface SeccompArg {
  index: number;
  value: number;
  valueTwo?: number;
  op: string;
}
interface SeccompRule {
  names: string[];
  action: string;
  args?: SeccompArg[];
  errnoRet?: number;
}
interface SeccompProfile {
  defaultAction: string;
  architectures?: string[];
  syscalls?: SeccompRule[];
  listenerPath?: string;
  listenerMetadata?: string;
}

const BYPASS_META = 'burrow:bind-bypass';
const MSG_FASTOPEN = 0x20000000;
/** Which argument holds the flags of the sends that can open a TCP connection. */
const FASTOPEN_FLAGS = { sendto: 3, sendmsg: 2, sendmmsg: 3 } as const;

/**
 * port_handler=bypass: hands the container's `bind` calls to the network owner through a seccomp
 * notification, so that a server on a published TCP port gets its listening socket on the host
 * itself instead of traffic relayed through the forwarder (crates/burrow-core/src/net/bypass.rs).
 * `connect` and the sends with MSG_FASTOPEN go there too, so that such a socket cannot be turned
 * into a connection from the host's namespace; io_uring, which seccomp cannot see into, answers
 * ENOSYS (programs fall back to plain calls). Returns false, changing nothing, where the profile
 * has its own say on those calls (denies one, or notifies someone else).
 */
export function addBindBypass(cfgPath: string, listener: string): boolean {
  const spec = JSON.parse(fs.readFileSync(cfgPath, 'utf8')) as { linux?: { seccomp?: SeccompProfile } };
  const linux = (spec.linux ??= {});
  const s: SeccompProfile = linux.seccomp ?? {
    // --privileged or seccomp=unconfined: a filter for the bypass alone. Other architectures are
    // listed so that their calls pass (a filter kills calls of architectures it does not name).
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: [...SECCOMP_ARCHITECTURES],
    syscalls: [],
  };
  if (s.listenerMetadata === BYPASS_META && s.listenerPath === listener) return true;
  if (s.listenerPath) return false;
  const rules = s.syscalls ?? [];
  // A profile that already refuses io_uring keeps its own answer.
  const uringRefused = rules.some((r) => r.names.includes('io_uring_setup') && r.action !== 'SCMP_ACT_ALLOW') || (s.defaultAction !== 'SCMP_ACT_ALLOW' && !rules.some((r) => r.names.includes('io_uring_setup')));
  const ours = ['bind', 'connect', ...Object.keys(FASTOPEN_FLAGS), ...(uringRefused ? [] : ['io_uring_setup'])];
  const allowAll = s.defaultAction === 'SCMP_ACT_ALLOW';
  for (const name of ours) {
    const on = rules.filter((r) => r.names.includes(name));
    // Only plain allows (from the default or an unconditional rule) are ours to refine.
    if (on.some((r) => r.action !== 'SCMP_ACT_ALLOW' || (r.args?.length ?? 0) > 0)) return false;
    if (!allowAll && !on.length) return false;
  }
  const notify = (names: string[], args?: SeccompArg[]): SeccompRule => ({ names, action: 'SCMP_ACT_NOTIFY', ...(args ? { args } : {}) });
  const added: SeccompRule[] = [notify(['bind', 'connect']), ...(uringRefused ? [] : [{ names: ['io_uring_setup'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 }])];
  for (const [name, index] of Object.entries(FASTOPEN_FLAGS)) {
    added.push(notify([name], [{ index, value: MSG_FASTOPEN, valueTwo: MSG_FASTOPEN, op: 'SCMP_CMP_MASKED_EQ' }]));
    // Where only a list allowed it, the sends without the flag stay allowed.
    if (!allowAll) added.push({ names: [name], action: 'SCMP_ACT_ALLOW', args: [{ index, value: MSG_FASTOPEN, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }] });
  }
  s.syscalls = rules
    .map((r) => ({ ...r, names: r.names.filter((n) => !ours.includes(n)) }))
    .filter((r) => r.names.length > 0)
    .concat(added);
  s.listenerPath = listener;
  s.listenerMetadata = BYPASS_META;
  linux.seccomp = s;
  fs.writeFileSync(cfgPath, JSON.stringify(spec));
  return true;
}

/**
 * Joins the network namespace of the container `target` (and, when it has its own, its user
 * namespace: a network namespace can be entered only by a process privileged over the user
 * namespace that owns it, which a rootless container's own user namespace is not).
 */
function joinContainer(store: Store, rec: ContainerRecord, dir: string, target: string): void {
  // Lazy: the records and states are needed only for this mode.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Containers } = require('../container/records') as typeof import('../container/records');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { containerState } = require('../container/state') as typeof import('../container/state');
  const containers = new Containers(store);
  let other: ContainerRecord;
  try {
    other = containers.find(target);
  } catch {
    throw new BurrowError('ECONTAINER_NOT_FOUND', `--network container:${target}: no such container`);
  }
  const st = containerState(other, containers.dir(other.id));
  if (st.status !== 'running' || !st.pid) throw new BurrowError('ECONTAINER_STATE', `--network container:${other.name}: that container is not running`, `start it first: burrow start ${other.name}`);
  const cfgPath = path.join(dir, 'bundle', 'config.json');
  const spec = JSON.parse(fs.readFileSync(cfgPath, 'utf8')) as { mounts: { destination: string; type: string; source: string; options?: string[] }[]; linux: { namespaces: { type: string; path?: string }[] } };
  const ownUserns = fs.readlinkSync('/proc/self/ns/user');
  const theirUserns = fs.readlinkSync(`/proc/${st.pid}/ns/user`);
  const ns = spec.linux.namespaces.filter((n) => n.type !== 'network');
  if (fs.readlinkSync(`/proc/${st.pid}/ns/net`) === fs.readlinkSync('/proc/self/ns/net')) {
    // That container uses the host's network (--network host): so does this one, with the
    // host's /sys as `host` has it (a sysfs needs a network namespace of its user namespace).
    spec.linux.namespaces = ns;
    spec.mounts = spec.mounts.map((m) => (m.destination === '/sys' && m.type === 'sysfs' ? { destination: '/sys', type: 'bind', source: '/sys', options: ['rbind', 'nosuid', 'noexec', 'nodev', 'ro'] } : m));
  } else {
    const joinUser = theirUserns !== ownUserns;
    spec.linux.namespaces = ns
      .filter((n) => !(joinUser && n.type === 'user'))
      .concat([{ type: 'network', path: `/proc/${st.pid}/ns/net` }, ...(joinUser ? [{ type: 'user', path: `/proc/${st.pid}/ns/user` }] : [])]);
  }
  fs.writeFileSync(cfgPath, JSON.stringify(spec));
}

// ---- user-defined networks (#16) ----------------------------------------------------------------

/** Where the monitor records that the owner went away under the running container (BridgeConfig.lostFile). */
export const LOST_FILE = 'network-lost.json';

/** What the monitor wrote there. */
export interface NetworkLost {
  at: string;
  networks: string[];
}

export function readLost(dir: string): NetworkLost | undefined {
  try {
    const v = JSON.parse(fs.readFileSync(path.join(dir, LOST_FILE), 'utf8')) as Partial<NetworkLost>;
    return { at: typeof v.at === 'string' ? v.at : '', networks: Array.isArray(v.networks) ? v.networks.map(String) : [] };
  } catch {
    return undefined;
  }
}

/** The running containers whose network owner went away (for the next `run`'s warning). */
export function lostContainers(store: Store): { id: string; name: string; networks: string[] }[] {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Containers } = require('../container/records') as typeof import('../container/records');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { containerState } = require('../container/state') as typeof import('../container/state');
  const cs = new Containers(store);
  const out: { id: string; name: string; networks: string[] }[] = [];
  for (const rec of cs.all()) {
    if (rec.net?.mode !== 'user') continue;
    const dir = cs.dir(rec.id);
    const lost = readLost(dir);
    if (!lost || containerState(rec, dir).status !== 'running') continue;
    out.push({ id: rec.id, name: rec.name, networks: lost.networks.length ? lost.networks : (rec.net.networks ?? []).map((e) => e.name) });
  }
  return out;
}

type StoredNetwork = import('../engine/networks').NetworkRecord;

/** The store's network records of a container's endpoints, as they are now (a removed one: ENETWORK_NOT_FOUND). */
export function endpointNetworks(store: Store, eps: EndpointRecord[]): StoredNetwork[] {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { findNetwork } = require('../engine/networks') as typeof import('../engine/networks');
  const ctx = { store } as Parameters<typeof findNetwork>[0];
  return eps.map((e) => {
    try {
      return findNetwork(ctx, e.network);
    } catch (err) {
      if (err instanceof BurrowError && err.code === 'ENETWORK_NOT_FOUND') throw new BurrowError('ENETWORK_NOT_FOUND', `network ${e.name} not found (it was removed)`, `reconnect the container (burrow network disconnect -f ${e.name} CONTAINER, then burrow network connect NETWORK CONTAINER) or recreate it on an existing network`);
      throw err;
    }
  });
}

/** What the owner needs of each network of a container's endpoints, from the store as it is now. */
export function endpointDefs(store: Store, eps: EndpointRecord[]): NetworkDef[] {
  // Lazy: ts/engine/networks.ts loads node:crypto, which `inspect` must not pay for.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { networkDef } = require('../engine/networks') as typeof import('../engine/networks');
  return endpointNetworks(store, eps).map(networkDef);
}

/** The owner's endpoints of a container: its first non-internal network has the default route. */
export function ownerEndpoints(eps: EndpointRecord[], defs: NetworkDef[]): OwnerEndpoint[] {
  const routed = defs.findIndex((d) => !d.internal);
  return eps.map((e, i) => ({ network: defs[i]!, ip: e.ip, ...(e.ip6 ? { ip6: e.ip6 } : {}), mac: e.mac, ifname: e.ifname, aliases: e.aliases, defaultRoute: i === routed }));
}

/** The run root of a container (its runtime root's parent) and the owner's directory there. */
export function ownerDirOf(rec: ContainerRecord): string {
  return path.join(path.dirname(rec.runtimeRoot), OWNER_DIR);
}

/**
 * Before a start of a container on user-defined networks: a lease on the network owner (started
 * if none runs), kept by the caller until the runtime reported the container's pid (its monitor
 * has attached and holds its own lease by then), and the bundle's config made to join the
 * owner's user namespace (rootless; its path changes with each owner). Undefined for other modes.
 */
export async function holdForStart(store: Store, rec: ContainerRecord, dir: string): Promise<OwnerLease | undefined> {
  if (rec.net?.mode !== 'user') return undefined;
  // Checked before an owner is started for nothing.
  const nets = endpointNetworks(store, rec.net.networks ?? []);
  const { holdOwner } = await import('./owner');
  const s = store.settings();
  const lease = await holdOwner(ownerDirOf(rec), { uidMap: s?.uidMap ?? [], gidMap: s?.gidMap ?? [] });
  // An --ipv6 network with a way out, and an outbound helper that routes no IPv6 (pasta on a
  // host without an IPv6 default route): said at each start, not only in the owner's log.
  if (lease.noIpv6Out && nets.some((n) => n.EnableIPv6 && !n.Internal)) process.stderr.write(`burrow: warning: ${rec.name}: ${lease.noIpv6Out}\n`);
  try {
    const { joinOwnerUserns } = await import('../container/spec');
    const cfgPath = path.join(dir, 'bundle', 'config.json');
    const spec = JSON.parse(fs.readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
    joinOwnerUserns(spec, lease.userns);
    fs.writeFileSync(cfgPath, JSON.stringify(spec));
    // A new attach: what the monitor said of the previous run's owner no longer holds.
    fs.rmSync(path.join(dir, LOST_FILE), { force: true });
  } catch (err) {
    lease.release();
    throw err;
  }
  return lease;
}

/**
 * Prepares the network for a start of `rec` and returns the runtime's arguments for it (empty
 * when no process has to own anything: none, host, container:NAME, a record from before
 * networking).
 */
export function runtimeNetworkArgs(store: Store, rec: ContainerRecord & { net?: NetworkRecord }, dir: string): string[] {
  const net = rec.net;
  // One unlink (fs.rmSync loads Node's rimraf and stats first, on every start).
  unlinkIfThere(path.join(dir, STATE_FILE));
  if (!net) return [];
  if (net.mode === 'container') {
    joinContainer(store, rec, dir, net.container!);
    return [];
  }
  const helper = net.mode === 'slirp4netns' || net.mode === 'pasta' ? net.mode : null;
  const user = net.mode === 'user';
  if (!helper && !user && !net.ports.length) return [];
  const slirpHandler = helper === 'slirp4netns' && net.portHandler === 'slirp4netns' && net.ports.length > 0;
  const bypass = net.portHandler === 'bypass' && net.ports.some((p) => p.protocol === 'tcp');
  const seccompListener = bypass ? netSocket(rec, '.bind.sock') : undefined;
  const bypassing = seccompListener !== undefined && addBindBypass(path.join(dir, 'bundle', 'config.json'), seccompListener);
  const cfg = {
    helper,
    mtu: net.mtu,
    ...(net.cidr ? { cidr: net.cidr } : {}),
    allowHostLoopback: net.allowHostLoopback,
    enableIpv6: net.enableIpv6,
    ...(helper === 'pasta' ? { dnsForward: PASTA_DNS } : {}),
    helperArgs: net.helperArgs,
    portHandler: slirpHandler ? 'slirp4netns' : bypassing ? 'bypass' : 'burrow',
    ports: net.ports,
    ...(slirpHandler ? { apiSocket: netSocket(rec, '.sock') } : {}),
    ...(bypassing ? { seccompListener } : {}),
    logFile: path.join(dir, 'network.log'),
    stateFile: path.join(dir, STATE_FILE),
    // No helper of its own: the owner attaches its endpoints; published ports still go through
    // the forwarder (or the bypass) into the container's namespace.
    ...(user
      ? {
          bridge: {
            ownerDir: ownerDirOf(rec),
            container: { id: rec.id, name: rec.name },
            endpoints: ownerEndpoints(net.networks ?? [], endpointDefs(store, net.networks ?? [])),
            dns: net.dns,
            lostFile: path.join(dir, LOST_FILE),
          },
        }
      : {}),
  };
  const file = path.join(dir, CONFIG_FILE);
  fs.writeFileSync(file, JSON.stringify(cfg));
  return ['--network-config', file];
}
