/**
 * A container's names: /etc/resolv.conf, /etc/hosts and /etc/hostname, written into its
 * directory at create and bound over the image's files (spec.ts).
 *
 * resolv.conf points at the helper's DNS forwarder (slirp4netns's .3 address, pasta's
 * --dns-forward address), except where the host itself asks a resolver on its loopback
 * (systemd-resolved's 127.0.0.53), which the container could not reach through any helper: then
 * it gets the resolvers that one uses. --dns, --dns-search and --dns-option replace parts.
 * In /etc/hosts, host.containers.internal and host.docker.internal name the host: the
 * gateway address when the container may reach the host's loopback through it, else an address
 * of the host's own (as podman does).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DEFAULT_CIDR, type NetworkRecord } from './options';

/** The address whose DNS queries pasta answers from the host's resolver (podman's choice). */
export const PASTA_DNS = '169.254.1.1';

function ip4ToInt(ip: string): number {
  return ip.split('.').reduce((a, o) => a * 256 + Number(o), 0);
}

function intToIp4(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

/** slirp4netns's addresses in its network: the container .100, the gateway .2, DNS .3. */
export function slirpAddresses(cidr = DEFAULT_CIDR): { ip: string; gateway: string; dns: string; prefix: number } {
  const [addr = '10.0.2.0', bits = '24'] = cidr.split('/');
  const prefix = Number(bits);
  const base = ip4ToInt(addr) - (ip4ToInt(addr) % 2 ** (32 - prefix));
  return { ip: intToIp4(base + 100), gateway: intToIp4(base + 2), dns: intToIp4(base + 3), prefix };
}

export interface Resolv {
  nameservers: string[];
  search: string[];
  options: string[];
}

export function parseResolv(text: string): Resolv {
  const r: Resolv = { nameservers: [], search: [], options: [] };
  for (const line of text.split('\n')) {
    const [k, ...v] = line.trim().split(/\s+/);
    if (k === 'nameserver' && v[0]) r.nameservers.push(v[0]);
    else if ((k === 'search' || k === 'domain') && v.length) r.search = v;
    else if (k === 'options') r.options.push(...v);
  }
  return r;
}

function readResolv(file: string): Resolv | undefined {
  try {
    return parseResolv(fs.readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}

const isLoopback = (ip: string) => /^127\./.test(ip) || ip === '::1';

/** The host's resolvers; loopback ones replaced by what they forward to (systemd-resolved). */
export function hostResolvers(files = { main: '/etc/resolv.conf', upstream: '/run/systemd/resolve/resolv.conf' }): Resolv & { loopback: boolean } {
  const main = readResolv(files.main) ?? { nameservers: [], search: [], options: [] };
  const loopback = main.nameservers.length > 0 && main.nameservers.every(isLoopback);
  if (!loopback) return { ...main, loopback };
  const up = readResolv(files.upstream);
  const servers = (up?.nameservers ?? []).filter((n) => !isLoopback(n));
  // No upstream to be found: public resolvers, as podman falls back to.
  return { nameservers: servers.length ? servers : ['8.8.8.8', '8.8.4.4'], search: main.search.length ? main.search : (up?.search ?? []), options: main.options.filter((o) => o !== 'edns0' && o !== 'trust-ad'), loopback };
}

/** The host's first non-loopback IPv4 address. */
export function hostAddress(): string | undefined {
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return undefined;
}

/** The host's default IPv4 gateway (pasta copies it into the container). */
export function hostGateway(routes = '/proc/net/route'): string | undefined {
  try {
    for (const line of fs.readFileSync(routes, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[1] === '00000000' && f[2] && f[2] !== '00000000') {
        const n = parseInt(f[2], 16);
        return [0, 8, 16, 24].map((s) => (n >>> s) & 255).join('.');
      }
    }
  } catch {
    /* no /proc */
  }
  return undefined;
}

/**
 * What the container's resolv.conf says. On user-defined networks the one nameserver is the
 * first network's gateway, where the owner's resolver answers the networks' names and forwards
 * the rest (to the --dns servers, which are its upstreams then, as Docker's embedded DNS has
 * them): `dnsServer`.
 */
export function resolvConf(net: NetworkRecord | undefined, host = hostResolvers(), dnsServer?: string): string {
  let servers = host.nameservers;
  if (net?.mode === 'slirp4netns' && !host.loopback) servers = [slirpAddresses(net.cidr).dns];
  else if (net?.mode === 'pasta' && !host.loopback) servers = [PASTA_DNS];
  else if (net?.mode === 'host') servers = readResolv('/etc/resolv.conf')?.nameservers ?? servers;
  if (net?.dns.length) servers = net.dns;
  if (net?.mode === 'user' && dnsServer) servers = [dnsServer];
  const search = net?.dnsSearch.length ? net.dnsSearch.filter((s) => s !== '.') : host.search;
  const options = net?.dnsOptions.length ? net.dnsOptions : host.options;
  return [...(search.length ? [`search ${search.join(' ')}`] : []), ...servers.map((s) => `nameserver ${s}`), ...(options.length ? [`options ${options.join(' ')}`] : [])].join('\n') + '\n';
}

/** The container's own address (for its hostname in /etc/hosts) and the host's, as it sees them. */
export function addresses(net: NetworkRecord | undefined): { own?: string; host?: string } {
  switch (net?.mode) {
    case 'slirp4netns': {
      const a = slirpAddresses(net.cidr);
      return { own: a.ip, host: net.allowHostLoopback ? a.gateway : hostAddress() };
    }
    case 'pasta': {
      // pasta gives the container the host's address; the gateway leads to the host's loopback
      // only with --map-gw. Otherwise the host has no address of its own for the container.
      const own = hostAddress();
      return { ...(own ? { own } : {}), ...(net.allowHostLoopback ? { host: hostGateway() } : {}) };
    }
    case 'host':
      return { host: '127.0.0.1' };
    case 'user':
      // Its address on its first network; the host is not reachable by a name of its own there.
      return net.networks?.[0] ? { own: net.networks[0].ip } : {};
    default:
      return {};
  }
}

export function hostsFile(hostname: string, net: NetworkRecord | undefined): string {
  const { own, host } = addresses(net);
  const lines = ['127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback'];
  lines.push(`${own ?? '127.0.1.1'}\t${hostname}`);
  if (host) lines.push(`${host}\thost.containers.internal host.docker.internal`);
  for (const h of net?.addHosts ?? []) {
    const i = h.indexOf(':');
    const name = h.slice(0, i);
    let ip = h.slice(i + 1).replace(/^\[|\]$/g, '');
    if (ip === 'host-gateway') ip = host ?? '127.0.0.1';
    lines.push(`${ip}\t${name}`);
  }
  return lines.join('\n') + '\n';
}

/**
 * Writes the three files. `shared` is the directory of the container whose network namespace
 * this one joins (container:NAME): its names are this container's too. `dnsServer`: the first
 * user-defined network's gateway.
 */
export function writeEtcFiles(etc: { hosts: string; hostname: string; resolv: string }, hostname: string, net: NetworkRecord | undefined, shared?: string, dnsServer?: string): void {
  fs.writeFileSync(etc.hostname, `${hostname}\n`);
  if (shared) {
    for (const f of ['hosts', 'resolv.conf'] as const) {
      try {
        fs.copyFileSync(path.join(shared, 'etc', f), f === 'hosts' ? etc.hosts : etc.resolv);
        continue;
      } catch {
        /* fall through to our own */
      }
      fs.writeFileSync(f === 'hosts' ? etc.hosts : etc.resolv, f === 'hosts' ? hostsFile(hostname, net) : resolvConf(net));
    }
    return;
  }
  fs.writeFileSync(etc.hosts, hostsFile(hostname, net));
  fs.writeFileSync(etc.resolv, resolvConf(net, undefined, dnsServer));
}
