/**
 * What `inspect`, `port` and `ps` show of a container's network, in Docker's shapes: ports as
 * bound while it runs (the network owner's state file), bindings as asked, addresses.
 */
import { addresses, hostGateway, slirpAddresses } from './etc';
import type { NetworkRecord } from './options';
import { readNetState, type NetState } from './runtime';

type Binding = { HostIp: string; HostPort: string };

/** Bound ports by "PORT/PROTO"; a dual-stack wildcard shows as 0.0.0.0 and ::, as Docker does. */
export function boundPorts(state: NetState | undefined): Record<string, Binding[]> {
  const out: Record<string, Binding[]> = {};
  for (const p of state?.ports ?? []) {
    const key = `${p.containerPort}/${p.protocol}`;
    const list = (out[key] ??= []);
    list.push({ HostIp: p.hostIp || '0.0.0.0', HostPort: String(p.hostPort) });
    if (p.dual) list.push({ HostIp: '::', HostPort: String(p.hostPort) });
  }
  return out;
}

/** `burrow port`: "80/tcp -> 0.0.0.0:18080" lines, or only the addresses of one port. */
export function portLines(dir: string, filter?: string): string[] {
  const ports = boundPorts(readNetState(dir));
  const fmt = (b: Binding) => (b.HostIp.includes(':') ? `[${b.HostIp}]:${b.HostPort}` : `${b.HostIp}:${b.HostPort}`);
  if (filter) {
    const key = filter.includes('/') ? filter : `${filter}/tcp`;
    return (ports[key] ?? []).map(fmt);
  }
  return Object.entries(ports).flatMap(([k, list]) => list.map((b) => `${k} -> ${fmt(b)}`));
}

/** The PORTS column of `ps`. */
export function portsColumn(dir: string): string {
  return Object.entries(boundPorts(readNetState(dir)))
    .flatMap(([k, list]) => list.map((b) => `${b.HostIp === '::' ? '[::]' : b.HostIp}:${b.HostPort}->${k}`))
    .join(', ');
}

/** HostConfig's network fields. */
export function hostConfigNetwork(net: NetworkRecord | undefined): Record<string, unknown> {
  const bindings: Record<string, Binding[]> = {};
  for (const p of net?.ports ?? []) (bindings[`${p.containerPort}/${p.protocol}`] ??= []).push({ HostIp: p.hostIp, HostPort: p.hostPort ? String(p.hostPort) : '' });
  return {
    PortBindings: bindings,
    PublishAllPorts: false,
    Dns: net?.dns ?? [],
    DnsSearch: net?.dnsSearch ?? [],
    DnsOptions: net?.dnsOptions ?? [],
    ExtraHosts: net?.addHosts.length ? net.addHosts : null,
  };
}

/**
 * A network's subnets and gateways as the store has them now (undefined: removed meanwhile; the
 * IPv6 pair only on an `--ipv6` network), and Docker's EndpointID of this container on it
 * (ts/engine/networks.ts endpointId).
 */
export type NetworkLookup = (id: string) => { subnet: string; gateway: string; subnet6?: string; gateway6?: string; endpointId: string } | undefined;

const prefixLen = (cidr: string | undefined): number => (cidr ? Number(cidr.split('/')[1]) : 0);

/** NetworkSettings.Networks of a container on user-defined networks, by network name, as Docker shows them. */
export function userEndpoints(net: NetworkRecord, containerId: string, name: string, lookup: NetworkLookup): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const e of net.networks ?? []) {
    const n = lookup(e.network);
    // A network removed under a stopped container took its address (Docker shows none then).
    const ip = n ? e.ip : '';
    const ip6 = n ? e.ip6 : undefined;
    out[e.name] = {
      IPAMConfig: e.ipGiven ? { IPv4Address: e.ip } : null,
      Links: null,
      Aliases: e.aliases.length ? [...e.aliases] : null,
      MacAddress: e.mac,
      DriverOpts: null,
      NetworkID: e.network,
      EndpointID: n?.endpointId ?? '',
      Gateway: n?.gateway ?? '',
      IPAddress: ip,
      IPPrefixLen: prefixLen(n?.subnet),
      // Docker's IPv6 trio on an --ipv6 network: the bridge's IPv6 address is the gateway.
      IPv6Gateway: ip6 ? (n?.gateway6 ?? '') : '',
      GlobalIPv6Address: ip6 ?? '',
      GlobalIPv6PrefixLen: ip6 ? prefixLen(n?.subnet6) : 0,
      DNSNames: [name, containerId.slice(0, 12), ...e.aliases],
    };
  }
  return out;
}

/**
 * NetworkSettings, as Docker shows them. `pid` is the init's while it runs (0 otherwise).
 * `user`: for a container on user-defined networks, its id and name, the store's networks, and
 * whether its network owner went away under it (then its endpoints show without addresses, as
 * Docker shows a container whose sandbox is gone, and `NetworkLost` says when and which).
 */
export function networkSettings(
  net: NetworkRecord | undefined,
  dir: string,
  pid: number,
  exposed: Record<string, unknown> | undefined,
  user?: { id: string; name: string; lookup: NetworkLookup; lost?: { at: string; networks: string[] } },
): Record<string, unknown> {
  const running = pid > 0;
  const state = running ? readNetState(dir) : undefined;
  const ports: Record<string, Binding[] | null> = {};
  for (const k of Object.keys(exposed ?? {})) ports[k.includes('/') ? k : `${k}/tcp`] = null;
  Object.assign(ports, boundPorts(state));
  let ip = '';
  let gateway = '';
  let prefix = 0;
  if (net?.mode === 'slirp4netns') {
    const a = slirpAddresses(net.cidr);
    ip = a.ip;
    gateway = a.gateway;
    prefix = a.prefix;
  } else if (net?.mode === 'pasta') {
    ip = addresses(net).own ?? '';
    gateway = hostGateway() ?? '';
  }
  // On user-defined networks, Docker's top-level fields are the default bridge's: empty.
  const userNetworks = net?.mode === 'user' && user ? userEndpoints(net, user.id, user.name, user.lookup) : undefined;
  const endpoint = { IPAMConfig: null, Links: null, Aliases: null, NetworkID: net?.mode ?? '', EndpointID: '', Gateway: gateway, IPAddress: ip, IPPrefixLen: prefix, IPv6Gateway: '', GlobalIPv6Address: '', GlobalIPv6PrefixLen: 0, MacAddress: '' };
  const lost = userNetworks && running ? user?.lost : undefined;
  return {
    Bridge: '',
    SandboxID: '',
    HairpinMode: false,
    LinkLocalIPv6Address: '',
    LinkLocalIPv6PrefixLen: 0,
    Ports: ports,
    SandboxKey: running && net?.mode !== 'host' ? `/proc/${pid}/ns/net` : '',
    Gateway: gateway,
    IPAddress: ip,
    IPPrefixLen: prefix,
    IPv6Gateway: '',
    GlobalIPv6Address: '',
    GlobalIPv6PrefixLen: 0,
    MacAddress: '',
    Networks: userNetworks ?? (net && (net.mode === 'slirp4netns' || net.mode === 'pasta') ? { [net.mode]: endpoint } : {}),
    ...(lost ? { NetworkLost: { At: lost.at, Networks: lost.networks, Message: `the network owner went away: the container is cut off from ${lost.networks.join(', ') || 'its networks'}; restart it to reattach` } } : {}),
    ...(state?.helperPid ? { HelperPid: state.helperPid } : {}),
  };
}
