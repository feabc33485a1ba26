/** ts/network: flag parsing, /etc files and what `port`/`inspect` show, without starting anything. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { hostResolvers, hostsFile, parseResolv, resolvConf, slirpAddresses } from '../../ts/network/etc';
import { boundPorts, hostConfigNetwork, networkSettings, portLines } from '../../ts/network/inspect';
import { addBindBypass, ownerEndpoints } from '../../ts/network/runtime';
import { toCreateRequest, type RunFlags } from '../../ts/cli/commands/run-flags';
import { joinOwnerUserns } from '../../ts/container/spec';
import type { EndpointRecord } from '../../ts/network/user';
import { isNetworkMode, networkRecord, parseNetwork, parsePublish, publishAll, type NetworkFlags, type NetworkRecord } from '../../ts/network/options';

const flags = (f: Partial<NetworkFlags>): NetworkFlags => ({ publish: [], publishAll: false, dns: [], dnsSearch: [], dnsOption: [], addHost: [], ...f });

describe('-p', () => {
  it("parses Docker's forms", () => {
    expect(parsePublish('18080:80')).toEqual([{ hostIp: '', hostPort: 18080, containerPort: 80, protocol: 'tcp' }]);
    expect(parsePublish('80')).toEqual([{ hostIp: '', hostPort: 0, containerPort: 80, protocol: 'tcp' }]);
    expect(parsePublish('127.0.0.1:53:53/udp')).toEqual([{ hostIp: '127.0.0.1', hostPort: 53, containerPort: 53, protocol: 'udp' }]);
    expect(parsePublish('127.0.0.1::80')).toEqual([{ hostIp: '127.0.0.1', hostPort: 0, containerPort: 80, protocol: 'tcp' }]);
    expect(parsePublish('[::1]:8080:80')).toEqual([{ hostIp: '::1', hostPort: 8080, containerPort: 80, protocol: 'tcp' }]);
    expect(parsePublish('0.0.0.0:8080:80')[0]!.hostIp).toBe('');
    expect(parsePublish('8000-8002:80-82').map((p) => [p.hostPort, p.containerPort])).toEqual([[8000, 80], [8001, 81], [8002, 82]]);
    expect(parsePublish('7000-7001').map((p) => [p.hostPort, p.containerPort])).toEqual([[0, 7000], [0, 7001]]);
  });

  it('refuses what cannot be published', () => {
    expect(() => parsePublish('70000:80')).toThrow(/invalid port 70000/);
    expect(() => parsePublish('8000-8001:80-82')).toThrow(/differ in size/);
    expect(() => parsePublish('80/sctp')).toThrow(/invalid -p/);
    expect(() => parsePublish('a:b')).toThrow(/invalid -p/);
  });

  it('-P takes the exposed ports, ranges and protocols', () => {
    expect(publishAll({ '80/tcp': {}, '53/udp': {}, '9000-9001': {}, '1/sctp': {} }).map((p) => `${p.containerPort}/${p.protocol}`)).toEqual(['80/tcp', '53/udp', '9000/tcp', '9001/tcp']);
  });
});

describe('--network', () => {
  it('parses podman-spelled options', () => {
    const s = parseNetwork('slirp4netns:allow_host_loopback=true,mtu=1500,cidr=10.5.0.0/24,enable_ipv6=true,port_handler=slirp4netns').rec;
    expect(s).toMatchObject({ mode: 'slirp4netns', allowHostLoopback: true, mtu: 1500, cidr: '10.5.0.0/24', enableIpv6: true, portHandler: 'slirp4netns' });
    expect(parseNetwork('slirp4netns:port_handler=rootlesskit').rec.portHandler).toBe('burrow');
    expect(parseNetwork('slirp4netns:port_handler=bypass').rec.portHandler).toBe('bypass');
    expect(() => parseNetwork('slirp4netns:port_handler=relay')).toThrow(/want burrow \(rootlesskit\), bypass or slirp4netns/);
    expect(parseNetwork('pasta:--map-gw,-T,8080,--mtu,9000').rec).toMatchObject({ mode: 'pasta', allowHostLoopback: true, mtu: 9000, helperArgs: ['-T', '8080'] });
    expect(parseNetwork('container:web').rec).toMatchObject({ mode: 'container', container: 'web' });
    expect(parseNetwork('none').rec.mode).toBe('none');
  });

  it('refuses unknown modes and options', () => {
    // Docker's `bridge` is the default network: ours is the default mode (#16).
    expect(parseNetwork('bridge').rec.mode).toBe(parseNetwork(undefined).rec.mode);
    expect(() => parseNetwork('-x')).toThrow(/invalid --network -x/);
    expect(() => parseNetwork('slirp4netns:outbound_addr=1.2.3.4')).toThrow(/unknown option outbound_addr/);
    expect(() => parseNetwork('slirp4netns:mtu=100')).toThrow(/mtu=100/);
    expect(() => parseNetwork('container:')).toThrow(/needs a container/);
    expect(() => parseNetwork('host:x')).toThrow(/takes no options/);
  });

  it('ports need a namespace of their own; host discards them with a warning', () => {
    expect(() => networkRecord(flags({ network: 'none', publish: ['80'] }), undefined, () => {})).toThrow(/cannot publish ports with --network none/);
    expect(() => networkRecord(flags({ network: 'container:x', publish: ['80'] }), undefined, () => {})).toThrow(/container:NAME/);
    const warnings: string[] = [];
    expect(networkRecord(flags({ network: 'host', publish: ['80'] }), undefined, (m) => warnings.push(m)).ports).toEqual([]);
    expect(warnings).toHaveLength(1);
    expect(() => networkRecord(flags({ network: 'slirp4netns:port_handler=slirp4netns', publish: ['[::1]:80:80'] }), undefined, () => {})).toThrow(/IPv4 only/);
    expect(() => networkRecord(flags({ network: 'slirp4netns', addHost: ['nocolon'] }), undefined, () => {})).toThrow(/--add-host nocolon/);
  });
});

const rec = (over: Partial<NetworkRecord>): NetworkRecord => ({
  mode: 'slirp4netns', allowHostLoopback: false, mtu: 65520, enableIpv6: false, portHandler: 'burrow', helperArgs: [], ports: [], publish: [], dns: [], dnsSearch: [], dnsOptions: [], addHosts: [], ...over,
});

describe('/etc files', () => {
  it("slirp4netns's addresses follow its cidr", () => {
    expect(slirpAddresses()).toEqual({ ip: '10.0.2.100', gateway: '10.0.2.2', dns: '10.0.2.3', prefix: 24 });
    expect(slirpAddresses('10.5.0.0/16')).toEqual({ ip: '10.5.0.100', gateway: '10.5.0.2', dns: '10.5.0.3', prefix: 16 });
  });

  it("resolv.conf: the helper's forwarder, or the host's upstream resolvers behind a loopback one", () => {
    const host = { nameservers: ['192.0.2.53'], search: ['lan'], options: [], loopback: false };
    expect(resolvConf(rec({}), host)).toBe('search lan\nnameserver 10.0.2.3\n');
    expect(resolvConf(rec({ mode: 'pasta' }), host)).toBe('search lan\nnameserver 169.254.1.1\n');
    const behindLoopback = { nameservers: ['192.0.2.1', '192.0.2.2'], search: [], options: [], loopback: true };
    expect(resolvConf(rec({}), behindLoopback)).toBe('nameserver 192.0.2.1\nnameserver 192.0.2.2\n');
    expect(resolvConf(rec({ dns: ['1.1.1.1'], dnsSearch: ['a.test', 'b.test'], dnsOptions: ['ndots:1'] }), host)).toBe('search a.test b.test\nnameserver 1.1.1.1\noptions ndots:1\n');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-resolv-'));
    try {
      fs.writeFileSync(path.join(dir, 'main'), 'nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch corp\n');
      fs.writeFileSync(path.join(dir, 'up'), 'nameserver 192.0.2.9\nnameserver 127.0.0.1\n');
      expect(hostResolvers({ main: path.join(dir, 'main'), upstream: path.join(dir, 'up') })).toEqual({ nameservers: ['192.0.2.9'], search: ['corp'], options: [], loopback: true });
      expect(hostResolvers({ main: path.join(dir, 'main'), upstream: path.join(dir, 'none') }).nameservers).toEqual(['8.8.8.8', '8.8.4.4']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    expect(parseResolv('# c\nnameserver 9.9.9.9\ndomain x\n')).toEqual({ nameservers: ['9.9.9.9'], search: ['x'], options: [] });
  });

  it('hosts: the container, the host (the gateway only when its loopback is allowed), --add-host', () => {
    const h = hostsFile('box', rec({ allowHostLoopback: true, addHosts: ['db:10.1.1.1', 'gw:host-gateway', 'v6:[::2]'] }));
    expect(h).toContain('10.0.2.100\tbox\n');
    expect(h).toContain('10.0.2.2\thost.containers.internal host.docker.internal\n');
    expect(h).toContain('10.1.1.1\tdb\n10.0.2.2\tgw\n::2\tv6\n');
    expect(hostsFile('box', rec({}))).not.toContain('10.0.2.2');
    expect(hostsFile('box', undefined)).toBe('127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tbox\n');
  });
});

describe('port and inspect', () => {
  it('a dual-stack wildcard shows as 0.0.0.0 and ::', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-port-'));
    try {
      const state = { helper: 'slirp4netns', helperPid: 1, portHandler: 'burrow', mtu: 65520, ports: [
        { hostIp: '0.0.0.0', hostPort: 18080, containerPort: 80, protocol: 'tcp', dual: true },
        { hostIp: '127.0.0.1', hostPort: 5353, containerPort: 53, protocol: 'udp', dual: false },
      ] };
      fs.writeFileSync(path.join(dir, 'network-state.json'), JSON.stringify(state));
      expect(portLines(dir)).toEqual(['80/tcp -> 0.0.0.0:18080', '80/tcp -> [::]:18080', '53/udp -> 127.0.0.1:5353']);
      expect(portLines(dir, '80')).toEqual(['0.0.0.0:18080', '[::]:18080']);
      expect(portLines(dir, '53/udp')).toEqual(['127.0.0.1:5353']);
      expect(portLines(dir, '53')).toEqual([]);
      expect(boundPorts(undefined)).toEqual({});
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    expect(hostConfigNetwork(rec({ ports: [{ hostIp: '', hostPort: 0, containerPort: 80, protocol: 'tcp' }] })).PortBindings).toEqual({ '80/tcp': [{ HostIp: '', HostPort: '' }] });
  });
});

describe('the default port handler', () => {
  it('comes from BURROW_PORT_HANDLER (or config.toml) when a TCP port is published and --network names none', () => {
    const saved = process.env.BURROW_PORT_HANDLER;
    process.env.BURROW_PORT_HANDLER = 'bypass';
    try {
      expect(networkRecord(flags({ network: 'slirp4netns', publish: ['8080:80'] }), undefined, () => {}).portHandler).toBe('bypass');
      expect(networkRecord(flags({ network: 'pasta', publish: ['8080:80'] }), undefined, () => {}).portHandler).toBe('bypass');
      expect(networkRecord(flags({ network: 'slirp4netns:port_handler=burrow', publish: ['8080:80'] }), undefined, () => {}).portHandler).toBe('burrow');
      expect(networkRecord(flags({ network: 'slirp4netns', publish: ['7000:7000/udp'] }), undefined, () => {}).portHandler).toBe('burrow');
      process.env.BURROW_PORT_HANDLER = 'relay';
      expect(() => networkRecord(flags({ network: 'slirp4netns', publish: ['8080:80'] }), undefined, () => {})).toThrow(/BURROW_PORT_HANDLER=relay is not one of burrow, bypass/);
    } finally {
      if (saved === undefined) delete process.env.BURROW_PORT_HANDLER;
      else process.env.BURROW_PORT_HANDLER = saved;
    }
  });
});

describe('port_handler=bypass: the seccomp profile', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-bypass-'));
  /** The seccomp section of a config.json as addBindBypass leaves it. */
  interface Seccomp {
    defaultAction: string;
    listenerPath?: string;
    architectures?: string[];
    syscalls: { names: string[]; action: string; errnoRet?: number; args?: { index: number; value: number; valueTwo?: number; op: string }[] }[];
  }
  const withProfile = (seccomp: unknown): { file: string; read(): Seccomp } => {
    const file = path.join(dir, `config-${Math.random().toString(36).slice(2)}.json`);
    fs.writeFileSync(file, JSON.stringify({ linux: seccomp === undefined ? {} : { seccomp } }));
    return { file, read: () => JSON.parse(fs.readFileSync(file, 'utf8')).linux.seccomp };
  };
  const L = '/run/x.bind.sock';
  const names = (s: { syscalls: { names: string[]; action: string }[] }, action: string) => s.syscalls.filter((r) => r.action === action).flatMap((r) => r.names);

  it('adds notification rules for bind, connect and fast-open sends to an allow-by-default profile, and refuses io_uring', () => {
    const p = withProfile({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mount', 'bpf'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }] });
    expect(addBindBypass(p.file, L)).toBe(true);
    const s = p.read();
    expect(s.listenerPath).toBe(L);
    expect(names(s, 'SCMP_ACT_NOTIFY').sort()).toEqual(['bind', 'connect', 'sendmmsg', 'sendmsg', 'sendto']);
    expect(names(s, 'SCMP_ACT_ERRNO')).toEqual(['mount', 'bpf', 'io_uring_setup']);
    // The sends notify only with MSG_FASTOPEN: flags & 0x20000000 == 0x20000000.
    const sendto = s.syscalls.find((r) => r.names[0] === 'sendto');
    expect(sendto!.args).toEqual([{ index: 3, value: 0x20000000, valueTwo: 0x20000000, op: 'SCMP_CMP_MASKED_EQ' }]);
    // Applied again at the next start: unchanged.
    const before = fs.readFileSync(p.file, 'utf8');
    expect(addBindBypass(p.file, L)).toBe(true);
    expect(fs.readFileSync(p.file, 'utf8')).toBe(before);
  });

  it('refines an allow list without widening it', () => {
    const p = withProfile({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read', 'bind', 'connect', 'sendto', 'sendmsg', 'sendmmsg'], action: 'SCMP_ACT_ALLOW' }] });
    expect(addBindBypass(p.file, L)).toBe(true);
    const s = p.read();
    expect(names(s, 'SCMP_ACT_ALLOW').filter((n) => n === 'read')).toEqual(['read']);
    // Without the flag the sends stay allowed; io_uring was never allowed and stays so.
    const allowSend = s.syscalls.find((r) => r.names[0] === 'sendto' && r.action === 'SCMP_ACT_ALLOW');
    expect(allowSend!.args).toEqual([{ index: 3, value: 0x20000000, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }]);
    expect(names(s, 'SCMP_ACT_ERRNO')).toEqual([]);
  });

  it('leaves a profile that has its own say on those calls alone', () => {
    for (const seccomp of [
      { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['bind'], action: 'SCMP_ACT_ERRNO' }] },
      { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW' }] },
      { defaultAction: 'SCMP_ACT_ALLOW', listenerPath: '/elsewhere', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_NOTIFY' }] },
    ]) {
      const p = withProfile(seccomp);
      expect(addBindBypass(p.file, L)).toBe(false);
      expect(p.read()).toEqual(seccomp);
    }
  });

  it('gives an unconfined container a filter of its own that names every architecture', () => {
    const p = withProfile(undefined);
    expect(addBindBypass(p.file, L)).toBe(true);
    const s = p.read();
    expect(s.defaultAction).toBe('SCMP_ACT_ALLOW');
    expect(s.architectures).toContain('SCMP_ARCH_X86');
    expect(names(s, 'SCMP_ACT_NOTIFY')).toContain('bind');
  });
});

describe('user-defined networks (#16)', () => {
  it('a name that is not a mode is a user-defined network', () => {
    expect(parseNetwork('backend').rec.mode).toBe('user');
    expect(isNetworkMode('backend')).toBe(false);
    for (const m of ['', 'bridge', 'none', 'host', 'container:x', 'slirp4netns:mtu=1500', 'pasta']) expect(isNetworkMode(m)).toBe(true);
    expect(networkRecord(flags({ network: 'backend', publish: ['8080:80'], dns: ['10.9.9.9'] }), undefined, () => {})).toMatchObject({ mode: 'user', dns: ['10.9.9.9'], ports: [{ hostPort: 8080, containerPort: 80 }] });
  });

  it('run flags: --network repeatable, --network-alias, --ip and --mac-address on the first', () => {
    const f = { network: ['front', 'back'], net: [], networkAlias: ['web'], ip: '10.1.0.9', macAddress: '02:42:0a:01:00:09', env: [], envFile: [], volume: [], mount: [], tmpfs: [], capAdd: [], capDrop: [], securityOpt: [], ulimit: [], label: [], pull: 'missing', groupAdd: [], device: [], publish: [], expose: [], dns: [], dnsSearch: [], dnsOption: [], addHost: [] } as unknown as RunFlags;
    const r = toCreateRequest('img', [], f);
    expect(r.network).toBe('front');
    expect(r.endpoints).toEqual([{ network: 'front', aliases: ['web'], ip: '10.1.0.9', mac: '02:42:0a:01:00:09' }, { network: 'back' }]);
    expect(() => toCreateRequest('img', [], { ...f, network: [] } as unknown as RunFlags)).toThrow(/--ip applies to a user-defined network/);
  });

  it('the spec joins the owner\'s user namespace without mappings of its own, and makes a network namespace there', () => {
    const spec = { linux: { namespaces: [{ type: 'pid' }, { type: 'user' }, { type: 'network' }], uidMappings: [{}], gidMappings: [{}] } };
    joinOwnerUserns(spec, '/proc/77/ns/user');
    expect(spec.linux.namespaces).toEqual([{ type: 'pid' }, { type: 'user', path: '/proc/77/ns/user' }, { type: 'network' }]);
    expect(spec.linux).not.toHaveProperty('uidMappings');
    expect(spec.linux).not.toHaveProperty('gidMappings');
    // As root there is no such namespace: its own stays.
    const root = { linux: { namespaces: [{ type: 'user' }, { type: 'network' }], uidMappings: [{}] } };
    joinOwnerUserns(root, undefined);
    expect(root.linux.namespaces).toEqual([{ type: 'user' }, { type: 'network' }]);
    expect(root.linux.uidMappings).toEqual([{}]);
  });

  const ep = (over: Partial<EndpointRecord>): EndpointRecord => ({ network: 'a'.repeat(64), name: 'front', ip: '172.20.0.5', mac: '02:42:ac:14:00:05', ifname: 'eth0', aliases: [], ...over });
  const stored = (name: string, subnet: string, internal = false) => ({ Name: name, Id: name.padEnd(64, '0'), Created: '', Driver: 'bridge', EnableIPv6: false, IPAM: { Driver: 'default', Options: {}, Config: [{ Subnet: subnet, Gateway: subnet.replace(/0\/\d+$/, '1') }] }, Internal: internal, Attachable: false, Options: {}, Labels: {} });

  it('resolv.conf names the first network\'s gateway; /etc/hosts the container\'s address', () => {
    const net = rec({ mode: 'user', networks: [ep({})], dns: ['10.9.9.9'], dnsSearch: ['example.org'] });
    const host = { nameservers: ['192.168.1.1'], search: [], options: ['ndots:2'], loopback: false };
    expect(resolvConf(net, host, '172.20.0.1')).toBe('search example.org\nnameserver 172.20.0.1\noptions ndots:2\n');
    expect(hostsFile('web1', net)).toMatch(/^172\.20\.0\.5\tweb1$/m);
  });

  it('the owner\'s endpoints: the network definitions, the default route on the first routed network', () => {
    const nets = [stored('int', '10.7.0.0/24', true), stored('out', '10.8.0.0/24')];
    const eps = ownerEndpoints([ep({ network: nets[0]!.Id, ip: '10.7.0.2' }), ep({ network: nets[1]!.Id, ip: '10.8.0.2', ifname: 'eth1' })], nets.map((n) => ({ id: n.Id, name: n.Name, bridge: `bw${n.Id.slice(0, 12)}`, subnet: n.IPAM.Config[0]!.Subnet, gateway: n.IPAM.Config[0]!.Gateway, internal: n.Internal, mtu: 65520 })));
    expect(eps.map((e) => e.defaultRoute)).toEqual([false, true]);
    expect(eps[1]!.network).toEqual({ id: nets[1]!.Id, name: 'out', bridge: `bw${nets[1]!.Id.slice(0, 12)}`, subnet: '10.8.0.0/24', gateway: '10.8.0.1', internal: false, mtu: 65520 });
  });

  it('inspect: NetworkSettings.Networks by name, as Docker shows them', () => {
    const n = stored('front', '172.20.0.0/16');
    const net = rec({ mode: 'user', networks: [ep({ network: n.Id, aliases: ['web'], ipGiven: true })] });
    const s = networkSettings(net, '/nonexistent', 0, {}, { id: 'c'.repeat(64), name: 'web1', lookup: () => ({ subnet: '172.20.0.0/16', gateway: '172.20.0.1', endpointId: 'e'.repeat(64) }) });
    const e = (s.Networks as Record<string, Record<string, unknown>>).front!;
    expect(e).toMatchObject({ IPAddress: '172.20.0.5', IPPrefixLen: 16, Gateway: '172.20.0.1', MacAddress: '02:42:ac:14:00:05', Aliases: ['web'], NetworkID: n.Id, IPAMConfig: { IPv4Address: '172.20.0.5' }, DNSNames: ['web1', 'cccccccccccc', 'web'] });
    expect(e.EndpointID).toBe('e'.repeat(64));
    expect(s.IPAddress).toBe('');
  });
});
