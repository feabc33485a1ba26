/**
 * `--network` and the flags that go with it (-p, -P, --dns, --dns-search, --dns-option,
 * --add-host), parsed into the container's network record. Nothing here starts anything: the
 * runtime's network owner (crates/burrow-core/src/net) does, from what runtime.ts writes.
 *
 * Modes, spelled as podman spells them:
 *   slirp4netns[:allow_host_loopback=BOOL,mtu=N,cidr=CIDR,enable_ipv6=BOOL,port_handler=burrow|bypass|slirp4netns]
 *   pasta[:ARG,ARG…]   pasta's own options, passed on (--map-gw lets the container reach the
 *                      host's loopback through the gateway address; -m/--mtu sets the MTU)
 *   none | host | container:NAME
 *   NAME               a user-defined network (`burrow network create`; mode `user`, the
 *                      endpoints are the engine's: ts/engine/create.ts, ts/network/user.ts)
 * The default is slirp4netns where it can run, else pasta, else none with one warning.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PORT_HANDLER_DEFAULTS, setting } from '../config/config';
import { BurrowError } from '../errors';
import type { EndpointRecord } from './user';

/** `user`: one or more user-defined networks (ts/network/user.ts), listed in `networks`. */
export type NetworkMode = 'none' | 'host' | 'slirp4netns' | 'pasta' | 'container' | 'user';

export interface PortSpec {
  /** '' for every address (IPv4 and IPv6). */
  hostIp: string;
  /** 0: a free port, chosen when the container starts. */
  hostPort: number;
  containerPort: number;
  protocol: 'tcp' | 'udp';
}

/** What a container's record keeps of its network (absent in records older than networking). */
export interface NetworkRecord {
  mode: NetworkMode;
  /** container:NAME: the id of the container whose namespace is shared. */
  container?: string;
  /** mode `user`: the container's endpoints, in the order it joined (eth0 first). */
  networks?: EndpointRecord[];
  allowHostLoopback: boolean;
  mtu: number;
  cidr?: string;
  enableIpv6: boolean;
  /**
   * burrow: our forwarder; bypass: the forwarder, and a server on a published TCP port gets its
   * listening socket on the host (crates/burrow-core/src/net/bypass.rs); slirp4netns: its own
   * add_hostfwd.
   */
  portHandler: PortHandler;
  /** pasta's own options as given. */
  helperArgs: string[];
  /** Published ports as asked (-p, and -P's exposed ports). */
  ports: PortSpec[];
  /** `-p` as written, for inspect's PortBindings. */
  publish: string[];
  dns: string[];
  dnsSearch: string[];
  dnsOptions: string[];
  addHosts: string[];
}

export type PortHandler = 'burrow' | 'bypass' | 'slirp4netns';
export const PORT_HANDLERS: readonly PortHandler[] = ['burrow', 'bypass', 'slirp4netns'];

export const DEFAULT_MTU = 65520;
export const DEFAULT_CIDR = '10.0.2.0/24';

const bool = (k: string, v: string): boolean => {
  if (v === 'true' || v === '1' || v === '') return true;
  if (v === 'false' || v === '0') return false;
  throw new BurrowError('EUSAGE', `--network slirp4netns: ${k}=${v}: want true or false`);
};

/** `PATH` look-up of a helper binary. */
export function findHelper(name: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  for (const dir of (env.PATH || '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin').split(':')) {
    if (!dir) continue;
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

/** Whether this user may open /dev/net/tun, which both helpers need for their tap device. */
export function tunUsable(): boolean {
  try {
    fs.accessSync('/dev/net/tun', fs.constants.R_OK | fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The mode when none is asked for: slirp4netns, else pasta, else none — with the reason when it
 * is none, for the one warning `run` prints.
 */
export function defaultMode(): { mode: 'slirp4netns' | 'pasta' | 'none'; why?: string } {
  const slirp = findHelper('slirp4netns');
  const pasta = findHelper('pasta');
  if (!slirp && !pasta) return { mode: 'none', why: 'neither slirp4netns nor pasta is installed' };
  if (!tunUsable()) return { mode: 'none', why: '/dev/net/tun cannot be opened by you' };
  return { mode: slirp ? 'slirp4netns' : 'pasta' };
}

export interface NetworkFlags {
  network?: string;
  publish: string[];
  publishAll: boolean;
  dns: string[];
  dnsSearch: string[];
  dnsOption: string[];
  addHost: string[];
}

/** What a user-defined network's name (or id) may look like (Docker's rule). */
export const USER_NETWORK_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** Whether `--network VALUE` names one of the modes rather than a user-defined network. */
export function isNetworkMode(value: string | undefined): boolean {
  if (value === undefined || value === '' || value === 'default' || value === 'bridge') return true;
  const i = value.indexOf(':');
  return ['none', 'host', 'container', 'slirp4netns', 'pasta'].includes(i < 0 ? value : value.slice(0, i));
}

/** A parsed `--network` value (and, for the default, whether it is a fallback to none). */
export function parseNetwork(value: string | undefined): { rec: Omit<NetworkRecord, 'ports' | 'publish' | 'dns' | 'dnsSearch' | 'dnsOptions' | 'addHosts'>; fallback?: string; handlerGiven?: boolean } {
  const base = { allowHostLoopback: false, mtu: DEFAULT_MTU, enableIpv6: false, portHandler: 'burrow' as const, helperArgs: [] as string[] };
  let fallback: string | undefined;
  let handlerGiven = false;
  let v = value;
  // Docker's `bridge` is its default network: ours is the default mode.
  if (v === undefined || v === '' || v === 'default' || v === 'bridge') {
    const d = defaultMode();
    v = d.mode;
    fallback = d.why;
  }
  const i = v.indexOf(':');
  const name = i < 0 ? v : v.slice(0, i);
  const opts = i < 0 ? '' : v.slice(i + 1);
  switch (name) {
    case 'none':
    case 'host':
      if (opts) throw new BurrowError('EUSAGE', `--network ${name} takes no options`);
      return { rec: { mode: name, ...base }, ...(fallback ? { fallback } : {}) };
    case 'container':
      if (!opts) throw new BurrowError('EUSAGE', '--network container: needs a container name or id (container:NAME)');
      return { rec: { mode: 'container', container: opts, ...base } };
    case 'slirp4netns': {
      const rec: ReturnType<typeof parseNetwork>['rec'] = { mode: 'slirp4netns', ...base };
      for (const kv of opts ? opts.split(',') : []) {
        const j = kv.indexOf('=');
        const k = j < 0 ? kv : kv.slice(0, j);
        const val = j < 0 ? '' : kv.slice(j + 1);
        if (k === 'allow_host_loopback') rec.allowHostLoopback = bool(k, val);
        else if (k === 'enable_ipv6') rec.enableIpv6 = bool(k, val);
        else if (k === 'mtu') {
          const n = Number(val);
          if (!Number.isInteger(n) || n < 1280 || n > 65521) throw new BurrowError('EUSAGE', `--network slirp4netns: mtu=${val}: want 1280 to 65521`);
          rec.mtu = n;
        } else if (k === 'cidr') {
          if (!/^\d+\.\d+\.\d+\.\d+\/\d+$/.test(val)) throw new BurrowError('EUSAGE', `--network slirp4netns: cidr=${val}: want an IPv4 network such as 10.0.2.0/24`);
          rec.cidr = val;
        } else if (k === 'port_handler') {
          handlerGiven = true;
          // rootlesskit is podman's default handler; our forwarder plays that part.
          if (val === 'burrow' || val === 'rootlesskit') rec.portHandler = 'burrow';
          else if (val === 'bypass' || val === 'slirp4netns') rec.portHandler = val;
          else throw new BurrowError('EUSAGE', `--network slirp4netns: port_handler=${val}: want burrow (rootlesskit), bypass or slirp4netns`);
        } else throw new BurrowError('EUSAGE', `--network slirp4netns: unknown option ${k}`, 'options: allow_host_loopback, mtu, cidr, enable_ipv6, port_handler');
      }
      return { rec, handlerGiven };
    }
    case 'pasta': {
      const rec: ReturnType<typeof parseNetwork>['rec'] = { mode: 'pasta', ...base };
      const args = opts ? opts.split(',') : [];
      for (let k = 0; k < args.length; k++) {
        const a = args[k]!;
        // The few options burrow sets itself are taken out of the list so that they are not given twice.
        if (a === '--map-gw') rec.allowHostLoopback = true;
        else if (a === '--no-map-gw') rec.allowHostLoopback = false;
        else if (a === '-m' || a === '--mtu') rec.mtu = Number(args[++k]);
        else if (a.startsWith('--mtu=')) rec.mtu = Number(a.slice(6));
        else if (a === '--ipv6' || a === 'enable_ipv6') rec.enableIpv6 = true;
        else rec.helperArgs.push(a);
      }
      if (!Number.isInteger(rec.mtu) || rec.mtu < 0 || rec.mtu > 65520) throw new BurrowError('EUSAGE', `--network pasta: invalid MTU`);
      return { rec };
    }
    default:
      // Any other name is a user-defined network (the engine finds it, or says it does not exist).
      if (USER_NETWORK_RE.test(v)) return { rec: { mode: 'user', ...base } };
      throw new BurrowError('EUSAGE', `invalid --network ${value}: want a network's name or id, slirp4netns[:OPTIONS], pasta[:OPTIONS], none, host or container:NAME`);
  }
}

const PORT_RE = /^(?:(\[[0-9a-fA-F:.]+\]|\d+\.\d+\.\d+\.\d+):)?(?:(\d*)(?:-(\d+))?:)?(\d+)(?:-(\d+))?(?:\/(tcp|udp))?$/;

function portNum(s: string, spec: string): number {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new BurrowError('EUSAGE', `invalid port ${s} in -p ${spec}: want 1 to 65535`);
  return n;
}

/**
 * Docker's `-p [IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/tcp|/udp]`, ranges expanded. A
 * missing or empty host port asks for a free one.
 */
export function parsePublish(spec: string): PortSpec[] {
  // The host part of an IPv6 address is bracketed: [::1]:8080:80.
  const m = PORT_RE.exec(spec.trim());
  if (!m) throw new BurrowError('EUSAGE', `invalid -p ${spec}: want [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|/udp]`);
  const [, ipRaw, hostStart, hostEnd, cStart = '', cEnd, proto] = m;
  let hostIp = (ipRaw ?? '').replace(/^\[|\]$/g, '');
  if (hostIp === '0.0.0.0' || hostIp === '::') hostIp = hostIp === '::' ? '::' : '';
  const c0 = portNum(cStart, spec);
  const c1 = cEnd ? portNum(cEnd, spec) : c0;
  if (c1 < c0) throw new BurrowError('EUSAGE', `invalid -p ${spec}: the range ends before it starts`);
  const count = c1 - c0 + 1;
  let h0 = 0;
  if (hostStart) {
    h0 = portNum(hostStart, spec);
    const h1 = hostEnd ? portNum(hostEnd, spec) : h0;
    if (h1 - h0 + 1 !== count) throw new BurrowError('EUSAGE', `invalid -p ${spec}: the host range (${h1 - h0 + 1} ports) and the container range (${count}) differ in size`);
  } else if (hostEnd) throw new BurrowError('EUSAGE', `invalid -p ${spec}`);
  const out: PortSpec[] = [];
  for (let k = 0; k < count; k++) out.push({ hostIp, hostPort: h0 ? h0 + k : 0, containerPort: c0 + k, protocol: (proto ?? 'tcp') as 'tcp' | 'udp' });
  return out;
}

/** `-P`: every port the image exposes, on a free host port. */
export function publishAll(exposed: Record<string, unknown> | undefined): PortSpec[] {
  const out: PortSpec[] = [];
  for (const key of Object.keys(exposed ?? {})) {
    const m = /^(\d+)(?:-(\d+))?(?:\/(tcp|udp|sctp))?$/.exec(key);
    if (!m || m[3] === 'sctp') continue;
    const a = Number(m[1]);
    const b = m[2] ? Number(m[2]) : a;
    for (let p = a; p <= b; p++) out.push({ hostIp: '', hostPort: 0, containerPort: p, protocol: (m[3] ?? 'tcp') as 'tcp' | 'udp' });
  }
  return out;
}

function checkAddHost(h: string): void {
  const i = h.indexOf(':');
  if (i <= 0 || i === h.length - 1) throw new BurrowError('EUSAGE', `invalid --add-host ${h}: want HOST:IP (or HOST:host-gateway)`);
}

/**
 * The container's network record from its flags. `exposed` is the image's ExposedPorts (for
 * -P). `warn` gets the one warning of a fallback to none.
 */
export function networkRecord(f: NetworkFlags, exposed: Record<string, unknown> | undefined, warn: (msg: string) => void): NetworkRecord {
  const { rec, fallback, handlerGiven } = parseNetwork(f.network);
  const ports = [...f.publish.flatMap(parsePublish), ...(f.publishAll ? publishAll(exposed) : [])];
  if (!handlerGiven && ports.some((p) => p.protocol === 'tcp')) {
    // The user's default handler (config.toml [containers] port_handler, BURROW_PORT_HANDLER);
    // looked up only when a TCP port is published.
    rec.portHandler = setting<'burrow' | 'bypass'>(undefined, 'BURROW_PORT_HANDLER', (c) => c.containers.portHandler as 'burrow' | 'bypass' | undefined, 'burrow', PORT_HANDLER_DEFAULTS);
  }
  if (ports.length && (rec.mode === 'host' || rec.mode === 'container' || (rec.mode === 'none' && !fallback))) {
    if (rec.mode === 'host') warn('published ports are discarded with --network host: the container uses the host\'s ports directly');
    else throw new BurrowError('EUSAGE', `cannot publish ports with --network ${rec.mode === 'container' ? 'container:NAME (the ports belong to that container)' : 'none'}`);
  }
  if (fallback) {
    warn(`${fallback}: the container gets loopback only (--network none)${ports.length ? ', its published ports still work' : ''}. \`burrow info\` says what to install; --network none silences this`);
  }
  if (rec.portHandler === 'slirp4netns' && ports.some((p) => p.hostIp.includes(':'))) throw new BurrowError('EUSAGE', 'port_handler=slirp4netns forwards IPv4 only: give an IPv4 host address, or use the default handler');
  if (rec.mode === 'container' && (f.dns.length || f.dnsSearch.length || f.dnsOption.length || f.addHost.length)) {
    throw new BurrowError('EUSAGE', '--dns, --dns-search, --dns-option and --add-host cannot be used with --network container:NAME: the names are that container\'s');
  }
  f.addHost.forEach(checkAddHost);
  return {
    ...rec,
    ports: rec.mode === 'host' ? [] : ports,
    publish: [...f.publish],
    dns: [...f.dns],
    dnsSearch: [...f.dnsSearch],
    dnsOptions: [...f.dnsOption],
    addHosts: [...f.addHost],
  };
}
