/**
 * Subnets of user-defined networks (ts/network/subnets.ts) and their use by `network create`
 * (ts/engine/networks.ts), with made-up host routes: Docker's default pools in order, skipping
 * what another network, a host route or interface, or slirp4netns's 10.0.2.0/24 has; an explicit
 * --subnet that overlaps is ENETWORK_OVERLAP in Docker's words and writes nothing; --gateway and
 * --ipv6.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildSync } from 'esbuild';
import { afterEach, describe, expect, it } from 'vitest';
import type { EngineContext } from '../../ts/engine/context';
import { createNetwork, findNetwork, listNetworks, networkDef, type NetworkRecord } from '../../ts/engine/networks';
import { thrown } from './thrown';
import { Store } from '../../ts/storage/store';
import {
  chooseSubnet4,
  chooseSubnet6,
  defaultPool4,
  firstOverlap,
  formatCidr,
  formatIp,
  overlaps,
  parseCidr,
  parseIp6,
  parseRoutes4,
  parseRoutes6,
  type HostNets,
} from '../../ts/network/subnets';

const NONE: HostNets = { v4: [], v6: [] };
const route = (c: string): HostNets['v4'][number] => ({ cidr: parseCidr(c), what: `route ${c}` });

const dirs: string[] = [];
function ctx(): EngineContext {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-subnets-'));
  dirs.push(d);
  return { store: new Store(path.join(d, 'store')), runRoot: path.join(d, 'run'), globals: {}, globalArgs: [], settings: () => Promise.reject(new Error('not here')) };
}
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

describe('CIDRs', () => {
  it('parses, formats and compares IPv4 and IPv6 networks', () => {
    expect(formatCidr(parseCidr('172.18.0.0/16'))).toBe('172.18.0.0/16');
    expect(formatCidr(parseCidr('fd00:1::/64'))).toBe('fd00:1::/64');
    expect(formatIp(parseIp6('fd00:0:0:1::1')!, true)).toBe('fd00:0:0:1::1');
    expect(formatIp(parseIp6('::ffff:10.0.0.1')!, true)).toBe('::ffff:a00:1');
    expect(parseIp6('1::2::3')).toBeUndefined();
    expect(thrown(() => parseCidr('172.18.0.1/16'))).toBe('EUSAGE: invalid --subnet 172.18.0.1/16: it should be 172.18.0.0/16');
    for (const bad of ['172.18.0.0', '172.18.0.0/33', '300.1.0.0/16', '01.2.3.0/24', 'x/8']) expect(thrown(() => parseCidr(bad))).toMatch(/^EUSAGE: invalid --subnet/);
    expect(overlaps(parseCidr('10.0.0.0/8'), parseCidr('10.9.0.0/24'))).toBe(true);
    expect(overlaps(parseCidr('10.9.1.0/24'), parseCidr('10.9.0.0/24'))).toBe(false);
    expect(overlaps(parseCidr('10.0.0.0/8'), parseCidr('fd00::/8'))).toBe(false);
  });

  it('reads /proc/net/route and /proc/net/ipv6_route, leaving default routes out', () => {
    const r4 = [
      'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT',
      'eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0',
      'eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0',
      'docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0',
    ].join('\n');
    expect(parseRoutes4(r4).map((r) => formatCidr(r.cidr))).toEqual(['192.0.2.0/24', '172.17.0.0/16']);
    const r6 = [
      'fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0',
      'fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000002 00000000 00000001     eth0',
      '00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000003 00000000 00000003     eth0',
      'ff000000000000000000000000000000 08 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000002 00000000 00000001     eth0',
    ].join('\n');
    expect(parseRoutes6(r6).map((r) => formatCidr(r.cidr))).toEqual(['fd00::/64']);
  });
});

describe("Docker's default pools", () => {
  it('go 172.18/16 … 172.31/16, then 192.168/16 in /20s (172.17 is Docker\'s default bridge)', () => {
    const all = [...defaultPool4()].map(formatCidr);
    expect(all.slice(0, 2)).toEqual(['172.18.0.0/16', '172.19.0.0/16']);
    expect(all).not.toContain('172.17.0.0/16');
    expect(all[13]).toBe('172.31.0.0/16');
    expect(all[14]).toBe('192.168.0.0/20');
    expect(all.at(-1)).toBe('192.168.240.0/20');
    expect(all).toHaveLength(14 + 16);
  });

  it('skip what other networks, host routes and interfaces have', () => {
    expect(formatCidr(chooseSubnet4([], NONE))).toBe('172.18.0.0/16');
    const host: HostNets = { v4: [route('172.18.5.0/24'), route('172.20.0.0/14')], v6: [] };
    expect(formatCidr(chooseSubnet4([], host))).toBe('172.19.0.0/16');
    expect(formatCidr(chooseSubnet4([{ cidr: parseCidr('172.19.0.0/16'), what: 'n' }], host))).toBe('172.24.0.0/16');
    // A host route over all of 172.16.0.0/12 leaves 192.168.0.0/20 … unless that is taken too.
    const wide: HostNets = { v4: [route('172.16.0.0/12'), route('192.168.0.0/24')], v6: [] };
    expect(formatCidr(chooseSubnet4([], wide))).toBe('192.168.16.0/20');
    const full: HostNets = { v4: [route('172.16.0.0/12'), route('192.168.0.0/16')], v6: [] };
    expect(thrown(() => chooseSubnet4([], full))).toMatch(/^ENETWORK_OVERLAP: could not find an available, non-overlapping IPv4 address pool/);
  });

  it("never picks or accepts slirp4netns's 10.0.2.0/24", () => {
    expect(firstOverlap(parseCidr('10.0.0.0/16'), [], NONE)?.what).toMatch(/slirp4netns/);
    expect(firstOverlap(parseCidr('10.0.3.0/24'), [], NONE)).toBeUndefined();
  });

  it('IPv6: a random ULA /64 that overlaps nothing', () => {
    const seq = [Buffer.from('00112233445566', 'hex'), Buffer.from('aabbccddeeff01', 'hex')];
    const taken = [{ cidr: parseCidr('fd00:1122:3344:5566::/64'), what: 'n' }];
    const c = chooseSubnet6(taken, NONE, () => seq.shift()!);
    expect(formatCidr(c)).toBe('fdaa:bbcc:ddee:ff01::/64');
    const r = chooseSubnet6([], NONE);
    expect(formatCidr(r)).toMatch(/^fd[0-9a-f]{2}:[0-9a-f]{1,4}:[0-9a-f]{1,4}:[0-9a-f]{1,4}::\/64$/);
  });
});

describe('network create', () => {
  const host: HostNets = { v4: [route('192.0.2.0/24'), route('172.18.0.0/16')], v6: [route('fd00:dead::/32')] };

  it('chooses the next free default subnet for each network, gateway its first address', () => {
    const c = ctx();
    createNetwork(c, { Name: 'a' }, host);
    createNetwork(c, { Name: 'b' }, host);
    const a = findNetwork(c, 'a');
    expect(a.IPAM.Config).toEqual([{ Subnet: '172.19.0.0/16', Gateway: '172.19.0.1' }]);
    expect(findNetwork(c, 'b').IPAM.Config).toEqual([{ Subnet: '172.20.0.0/16', Gateway: '172.20.0.1' }]);
    expect(networkDef(a)).toEqual({ id: a.Id, name: 'a', bridge: `bw${a.Id.slice(0, 12)}`, subnet: '172.19.0.0/16', gateway: '172.19.0.1', internal: false, mtu: 65520 });
  });

  it('refuses an explicit subnet that overlaps a network or a host route, in Docker\'s words, writing nothing', () => {
    const c = ctx();
    createNetwork(c, { Name: 'a', IPAM: { Config: [{ Subnet: '10.9.0.0/24' }] } }, host);
    const before = fs.readdirSync(c.store.p('networks')).sort();
    expect(thrown(() => createNetwork(c, { Name: 'other', IPAM: { Config: [{ Subnet: '10.9.0.0/16' }] } }, host))).toBe("ENETWORK_OVERLAP: Pool overlaps with other one on this address space: 10.9.0.0/16 overlaps network a's 10.9.0.0/24");
    expect(thrown(() => createNetwork(c, { Name: 'other', IPAM: { Config: [{ Subnet: '192.0.2.128/25' }] } }, host))).toMatch(/^ENETWORK_OVERLAP: Pool overlaps with other one on this address space: 192\.0\.2\.128\/25 overlaps route 192\.0\.2\.0\/24/);
    expect(thrown(() => createNetwork(c, { Name: 'other', EnableIPv6: true, IPAM: { Config: [{ Subnet: 'fd00:dead:1::/64' }] } }, host))).toMatch(/^ENETWORK_OVERLAP/);
    expect(thrown(() => createNetwork(c, { Name: 'a', IPAM: { Config: [{ Subnet: '10.10.0.0/24' }] } }, host))).toBe('ENETWORK_EXISTS: network with name a already exists');
    expect(fs.readdirSync(c.store.p('networks')).sort()).toEqual(before);
    expect(() => findNetwork(c, 'other')).toThrow(/network other not found/);
  });

  it('--gateway inside the subnet; --ipv6 records a ULA /64; the MTU option; other drivers refused', () => {
    const c = ctx();
    createNetwork(c, { Name: 'g', EnableIPv6: true, Internal: true, Options: { 'com.docker.network.driver.mtu': '1500' }, IPAM: { Config: [{ Subnet: '10.20.0.0/24', Gateway: '10.20.0.254' }] } }, host);
    const g = findNetwork(c, 'g');
    expect(g.IPAM.Config[0]).toEqual({ Subnet: '10.20.0.0/24', Gateway: '10.20.0.254' });
    expect(g.IPAM.Config[1]!.Subnet).toMatch(/^fd[0-9a-f:]+::\/64$/);
    expect(g.EnableIPv6).toBe(true);
    const def = networkDef(g);
    expect(def).toMatchObject({ gateway: '10.20.0.254', internal: true, mtu: 1500, subnet6: g.IPAM.Config[1]!.Subnet });
    expect(def.gateway6).toMatch(/::1$/);
    expect(thrown(() => createNetwork(c, { Name: 'x', IPAM: { Config: [{ Subnet: '10.30.0.0/24', Gateway: '10.31.0.1' }] } }, host))).toMatch(/^EUSAGE: no matching subnet for gateway 10\.31\.0\.1/);
    expect(thrown(() => createNetwork(c, { Name: 'x', IPAM: { Config: [{ Subnet: '10.30.0.0/24', Gateway: '10.30.0.255' }] } }, host))).toMatch(/broadcast address/);
    expect(thrown(() => createNetwork(c, { Name: 'x', IPAM: { Config: [{ Gateway: '10.30.0.1' }] } }, host))).toMatch(/must have a corresponding subnet/);
    expect(thrown(() => createNetwork(c, { Name: 'x', IPAM: { Config: [{ Subnet: 'fd01::/64' }] } }, host))).toMatch(/needs IPv6 enabled/);
    expect(thrown(() => createNetwork(c, { Name: 'x', EnableIPv6: true, IPAM: { Config: [{ Subnet: 'fd01::/120' }] } }, host))).toMatch(/a \/96 or larger/);
    expect(thrown(() => createNetwork(c, { Name: 'x', Driver: 'macvlan' }, host))).toMatch(/^EUSAGE: network driver macvlan is not supported/);
    // The host's loopback through the outbound helper, asked per network (bridge/nat.rs).
    createNetwork(c, { Name: 'lo', Options: { allow_host_loopback: 'true' } }, host);
    expect(networkDef(findNetwork(c, 'lo')).hostLoopback).toBe(true);
    expect(networkDef(g).hostLoopback).toBeUndefined();
    expect(thrown(() => createNetwork(c, { Name: 'x', Options: { allow_host_loopback: 'yes' } }, host))).toBe('EUSAGE: invalid option allow_host_loopback=yes: want true or false');
    expect(thrown(() => createNetwork(c, { Name: 'x', Options: { mtu: 'big' } }, host))).toMatch(/^EUSAGE: invalid option mtu=big/);
    expect(thrown(() => createNetwork(c, { Name: 'x', IPAM: { Config: [{ Subnet: '10.30.0.0/24' }, { Subnet: '10.31.0.0/24' }] } }, host))).toMatch(/more than one IPv4 subnet/);
    expect(thrown(() => createNetwork(c, { Name: 'bad/name' }, host))).toMatch(/^EUSAGE: invalid network name/);
  });

  it('answers the shape the API has always sent, without the old Warning', () => {
    const c = ctx();
    const r = createNetwork(c, { Name: 'w' }, NONE);
    expect(r).toEqual({ Id: expect.stringMatching(/^[0-9a-f]{64}$/), Warning: '' });
    const n: NetworkRecord = findNetwork(c, r.Id.slice(0, 12));
    expect(n.Name).toBe('w');
  });

  it('two processes creating networks at once never choose one subnet twice', async () => {
    const c = ctx();
    const work = path.dirname(c.store.root);
    const entry = path.join(work, 'worker.ts');
    fs.writeFileSync(
      entry,
      `import { createNetwork } from ${JSON.stringify(path.resolve(__dirname, '../../ts/engine/networks'))};
import { Store } from ${JSON.stringify(path.resolve(__dirname, '../../ts/storage/store'))};
const [root, runRoot, tag] = process.argv.slice(2);
const ctx = { store: new Store(root!), runRoot: runRoot!, globals: {}, globalArgs: [], settings: () => Promise.reject(new Error('no')) };
for (let i = 0; i < 6; i++) createNetwork(ctx, { Name: tag! + i }, { v4: [], v6: [] });
`,
    );
    const out = path.join(work, 'worker.js');
    buildSync({ entryPoints: [entry], bundle: true, platform: 'node', format: 'cjs', outfile: out, logLevel: 'error' });
    const run = (tag: string) =>
      new Promise<number>((resolve) => {
        const p = spawn(process.execPath, [out, c.store.root, c.runRoot, tag], { stdio: ['ignore', 'ignore', 'inherit'] });
        p.on('close', (code) => resolve(code ?? -1));
      });
    expect(await Promise.all([run('a'), run('b')])).toEqual([0, 0]);
    const subnets = (await listNetworks(c, { type: ['custom'] })).map((n) => n.IPAM.Config[0]!.Subnet);
    expect(subnets).toHaveLength(12);
    expect(new Set(subnets).size).toBe(12);
  });
});
