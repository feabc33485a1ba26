/**
 * What the runtime needs, at each start, to give a container its network: the config file its
 * network owner reads (`--network-config`, crates/burrow-core/src/net), and for
 * `container:NAME` the namespaces of that container, which exist only while it runs, so they are
 * put in the bundle now rather than at create.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BurrowError } from '../errors';
import type { Store } from '../storage/store';
import type { ContainerRecord } from '../container/records';
import { PASTA_DNS } from './etc';
import type { NetworkRecord, PortSpec } from './options';

/** What the network owner wrote once the network was up (net::NetState). */
export interface NetState {
  helper: 'slirp4netns' | 'pasta' | null;
  helperPid: number | null;
  portHandler: 'burrow' | 'slirp4netns';
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

/** slirp4netns's API socket: under the runroot, whose path is short enough for a socket. */
function apiSocket(rec: ContainerRecord): string {
  const dir = path.join(path.dirname(rec.runtimeRoot), 'net');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  return path.join(dir, `${rec.id.slice(0, 16)}.sock`);
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
  const cfg = {
    helper,
    mtu: net.mtu,
    ...(net.cidr ? { cidr: net.cidr } : {}),
    allowHostLoopback: net.allowHostLoopback,
    enableIpv6: net.enableIpv6,
    ...(helper === 'pasta' ? { dnsForward: PASTA_DNS } : {}),
    helperArgs: net.helperArgs,
    portHandler: slirpHandler ? 'slirp4netns' : 'burrow',
    ports: net.ports,
    ...(slirpHandler ? { apiSocket: apiSocket(rec) } : {}),
    logFile: path.join(dir, 'network.log'),
    stateFile: path.join(dir, STATE_FILE),
  };
  const file = path.join(dir, CONFIG_FILE);
  fs.writeFileSync(file, JSON.stringify(cfg));
  return ['--network-config', file];
}
