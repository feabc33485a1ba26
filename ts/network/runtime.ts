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
import type { Store } from '../storage/store';
import type { ContainerRecord } from '../container/records';
import { PASTA_DNS } from './etc';
import type { NetworkRecord, PortSpec } from './options';

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

/**
 * Prepares the network for a start of `rec` and returns the runtime's arguments for it (empty
 * when no process has to own anything: none, host, container:NAME, a record from before
 * networking).
 */
export function runtimeNetworkArgs(store: Store, rec: ContainerRecord & { net?: NetworkRecord }, dir: string): string[] {
  const net = rec.net;
  fs.rmSync(path.join(dir, STATE_FILE), { force: true });
  if (!net) return [];
  if (net.mode === 'container') {
    joinContainer(store, rec, dir, net.container!);
    return [];
  }
  const helper = net.mode === 'slirp4netns' || net.mode === 'pasta' ? net.mode : null;
  if (!helper && !net.ports.length) return [];
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
  };
  const file = path.join(dir, CONFIG_FILE);
  fs.writeFileSync(file, JSON.stringify(cfg));
  return ['--network-config', file];
}
