/**
 * IPAM of user-defined networks (ts/network/ipam.ts): the lowest free address (never the
 * network, broadcast or gateway address), `--ip` and its errors naming the holder, reuse after
 * release, idempotence, two processes allocating at once never handing out one address twice,
 * and crash recovery (an allocation whose allocator died and whose container has no record is
 * taken back; one a record holds is kept). And the network side: rm refuses a network with an
 * endpoint or a pending allocation, and takes its IPAM file with it; connect/disconnect on records.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildSync } from 'esbuild';
import { afterEach, describe, expect, it } from 'vitest';
import type { EngineContext } from '../../ts/engine/context';
import { connectNetwork, createNetwork, disconnectNetwork, endpointRecord, findNetwork, inspectNetwork, listNetworks, pruneNetworks, removeNetwork, type NetworkRecord } from '../../ts/engine/networks';
import { rejected, thrown } from './thrown';
import { allocate, allocations, ip6For, release, releaseAll } from '../../ts/network/ipam';
import type { EndpointRecord } from '../../ts/network/user';
import { Store } from '../../ts/storage/store';

const dirs: string[] = [];
function ctx(): EngineContext {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-ipam-'));
  dirs.push(d);
  return { store: new Store(path.join(d, 'store')), runRoot: path.join(d, 'run'), globals: {}, globalArgs: [], settings: () => Promise.reject(new Error('not here')) };
}
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

const NONE = { v4: [], v6: [] };
const cid = (n: number) => n.toString(16).padStart(64, 'c');

function net(c: EngineContext, name: string, subnet: string, gateway?: string, ipv6 = false): NetworkRecord {
  createNetwork(c, { Name: name, EnableIPv6: ipv6, IPAM: { Config: [{ Subnet: subnet, ...(gateway ? { Gateway: gateway } : {}) }] } }, NONE);
  return findNetwork(c, name);
}

/** A container record as `create --network` writes it (only what IPAM and networks.ts read). */
function record(c: EngineContext, id: string, name: string, eps: EndpointRecord[]): void {
  const dir = c.store.p('containers', id);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'record.json'), JSON.stringify({ id, name, network: eps[0]?.name ?? 'none', net: { mode: 'user', networks: eps }, runtimeRoot: path.join(dir, 'rt'), labels: {}, mounts: [] }));
  nameIt(c, id, name);
}

function nameIt(c: EngineContext, id: string, name: string): void {
  fs.mkdirSync(c.store.p('containers', '.names'), { recursive: true });
  fs.rmSync(c.store.p('containers', '.names', name), { force: true });
  fs.symlinkSync(id, c.store.p('containers', '.names', name));
}

/** A pid that no process has any more. */
function deadPid(): number {
  const r = spawnSync('sh', ['-c', 'echo $$']);
  return Number(String(r.stdout).trim());
}

describe('allocate', () => {
  it('hands out the lowest free address, never the network, broadcast or gateway address', () => {
    const c = ctx();
    const n = net(c, 'n', '10.40.0.0/29', '10.40.0.2');
    const got = [1, 2, 3, 4, 5].map((i) => allocate(c.store, n, cid(i)));
    expect(got).toEqual(['10.40.0.1', '10.40.0.3', '10.40.0.4', '10.40.0.5', '10.40.0.6']);
    expect(thrown(() => allocate(c.store, n, cid(6)))).toBe(`EIP_IN_USE: no available IPv4 addresses on this network's address pools: n (${n.Id})`);
    // The same container gets the same address again.
    expect(allocate(c.store, n, cid(3))).toBe('10.40.0.4');
  });

  it('reuses an address after its release; releaseAll frees a container on every network', () => {
    const c = ctx();
    const a = net(c, 'a', '10.41.0.0/24');
    const b = net(c, 'b', '10.42.0.0/24');
    for (const i of [1, 2, 3]) allocate(c.store, a, cid(i));
    expect(allocate(c.store, b, cid(2))).toBe('10.42.0.2');
    for (const i of [1, 2, 3]) record(c, cid(i), `c${i}`, []);
    release(c.store, a.Id, cid(2));
    release(c.store, a.Id, cid(99)); // nothing
    expect(allocate(c.store, a, cid(4))).toBe('10.41.0.3');
    releaseAll(c.store, cid(2));
    expect(allocations(c.store, b.Id)).toEqual({});
    expect(allocate(c.store, b, cid(5))).toBe('10.42.0.2');
  });

  it('--ip: taken, outside, the gateway, network or broadcast address are refused, naming the holder', () => {
    const c = ctx();
    const n = net(c, 'n', '10.43.0.0/24');
    expect(allocate(c.store, n, cid(1), '10.43.0.50')).toBe('10.43.0.50');
    record(c, cid(1), 'web', [endpointRecord(n, '10.43.0.50', { ifname: 'eth0' })]);
    expect(thrown(() => allocate(c.store, n, cid(2), '10.43.0.50'))).toBe(`EIP_IN_USE: Address already in use: 10.43.0.50 on network n is held by container web (${cid(1).slice(0, 12)})`);
    expect(thrown(() => allocate(c.store, n, cid(2), '10.44.0.5'))).toMatch(/^EIP_IN_USE: invalid --ip 10\.44\.0\.5: no configured subnet contains the IP address 10\.44\.0\.5/);
    expect(thrown(() => allocate(c.store, n, cid(2), '10.43.0.1'))).toMatch(/^EIP_IN_USE: Address already in use: 10\.43\.0\.1 is the gateway/);
    expect(thrown(() => allocate(c.store, n, cid(2), '10.43.0.0'))).toMatch(/network address/);
    expect(thrown(() => allocate(c.store, n, cid(2), '10.43.0.255'))).toMatch(/broadcast address/);
    expect(thrown(() => allocate(c.store, n, cid(2), 'nope'))).toMatch(/^EUSAGE: invalid --ip nope/);
    // The lowest free skips a given address.
    expect(allocate(c.store, n, cid(2))).toBe('10.43.0.2');
  });

  it('takes back an allocation whose allocator died and whose container has no record; keeps one a record holds', () => {
    const c = ctx();
    const n = net(c, 'n', '10.45.0.0/24');
    const dead = deadPid();
    const file = c.store.p('networks', 'ipam', `${n.Id}.json`);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(
      file,
      JSON.stringify({
        addresses: {
          '10.45.0.2': { container: cid(1), pid: dead, at: Date.now() }, // crashed create: no record
          '10.45.0.3': { container: cid(2), pid: dead, at: Date.now() }, // its record holds it
          '10.45.0.4': { container: cid(3), pid: process.pid, at: Date.now() }, // being created by a live process
        },
      }),
    );
    record(c, cid(2), 'kept', [endpointRecord(n, '10.45.0.3', { ifname: 'eth0' })]);
    expect(allocate(c.store, n, cid(9))).toBe('10.45.0.2');
    expect(allocations(c.store, n.Id)).toEqual({ '10.45.0.2': cid(9), '10.45.0.3': cid(2), '10.45.0.4': cid(3) });
  });

  it('an --ipv6 network gives each container the IPv4 address under its /64', () => {
    const c = ctx();
    const n = net(c, 'six', '10.46.0.0/24', undefined, true);
    const ip = allocate(c.store, n, cid(1));
    const six = n.IPAM.Config[1]!.Subnet as string;
    expect(ip6For(n, ip)).toBe(`${six.replace('::/64', '')}::a2e:2`);
    expect(endpointRecord(n, ip, { ifname: 'eth1', aliases: ['x', 'x'] })).toEqual({ network: n.Id, name: 'six', ip, ip6: ip6For(n, ip), mac: '02:42:0a:2e:00:02', ifname: 'eth1', aliases: ['x'] });
  });

  it('two processes allocating at once never hand out one address twice', () => {
    const c = ctx();
    const n = net(c, 'n', '10.47.0.0/24');
    const work = path.dirname(c.store.root);
    const entry = path.join(work, 'worker.ts');
    // Each worker allocates, then writes the record (as create does), 40 times.
    fs.writeFileSync(
      entry,
      `import fs from 'node:fs';
import { allocate } from ${JSON.stringify(path.resolve(__dirname, '../../ts/network/ipam'))};
import { Store } from ${JSON.stringify(path.resolve(__dirname, '../../ts/storage/store'))};
const [root, netJson, tag] = process.argv.slice(2);
const store = new Store(root!);
const net = JSON.parse(netJson!);
for (let i = 0; i < 40; i++) {
  const id = (tag! + i.toString(16).padStart(4, '0')).padStart(64, '0');
  const ip = allocate(store, net, id);
  fs.mkdirSync(store.p('containers', id), { recursive: true });
  fs.writeFileSync(store.p('containers', id, 'record.json'), JSON.stringify({ id, name: id, net: { mode: 'user', networks: [{ network: net.Id, ip }] } }));
}
`,
    );
    const out = path.join(work, 'worker.js');
    buildSync({ entryPoints: [entry], bundle: true, platform: 'node', format: 'cjs', outfile: out, logLevel: 'error' });
    const run = (tag: string) =>
      new Promise<number>((resolve) => {
        const p = spawn(process.execPath, [out, c.store.root, JSON.stringify(n), tag], { stdio: ['ignore', 'ignore', 'inherit'] });
        p.on('close', (code) => resolve(code ?? -1));
      });
    return Promise.all([run('a'), run('b')]).then((codes) => {
      expect(codes).toEqual([0, 0]);
      const got = allocations(c.store, n.Id);
      expect(Object.keys(got)).toHaveLength(80);
      expect(new Set(Object.values(got)).size).toBe(80);
      const ips = Object.keys(got).map((ip) => Number(ip.split('.')[3]));
      expect(ips.sort((x, y) => x - y)).toEqual(Array.from({ length: 80 }, (_, i) => i + 2));
    });
  });
});

describe('networks and their members', () => {
  it('rm refuses a network a running container or a pending allocation holds, not one only stopped containers are on (as Docker); the IPAM file goes with it', async () => {
    const c = ctx();
    const n = net(c, 'n', '10.48.0.0/24');
    const ip = allocate(c.store, n, cid(1));
    record(c, cid(1), 'member', [endpointRecord(n, ip, { ifname: 'eth0' })]);
    // Stopped (never started): not an active endpoint; the network counts as dangling.
    expect((await listNetworks(c, { dangling: ['true'] })).map((x) => x.Name)).toEqual(['n']);
    // Running: its runtime state names a live init (this process stands in for it).
    const stat = fs.readFileSync('/proc/self/stat', 'latin1');
    const startTime = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    const rt = path.join(c.store.p('containers', cid(1)), 'rt', cid(1));
    fs.mkdirSync(rt, { recursive: true });
    fs.writeFileSync(path.join(rt, 'state.json'), JSON.stringify({ pid: process.pid, initStartTime: startTime }));
    expect(await rejected(removeNetwork(c, 'n'))).toBe(`ENETWORK_FORBIDDEN: error while removing network: network n has active endpoints (name:"member" id:"${cid(1).slice(0, 12)}")`);
    expect((await listNetworks(c, { dangling: ['true'] })).map((x) => x.Name)).toEqual([]);
    expect(await pruneNetworks(c)).toEqual([]);
    // Its record goes (rm), but its address is not released yet: a live allocator keeps it.
    fs.rmSync(c.store.p('containers', cid(1)), { recursive: true });
    allocate(c.store, n, cid(2));
    expect(await rejected(removeNetwork(c, 'n'))).toMatch(/has active endpoints \(name:"" id:"cccccccccccc", name:"" id:"cccccccccccc"\)/);
    releaseAll(c.store, cid(1));
    releaseAll(c.store, cid(2));
    expect((await listNetworks(c, { dangling: ['true'] })).map((x) => x.Name)).toEqual(['n']);
    await removeNetwork(c, 'n');
    expect(fs.existsSync(c.store.p('networks', 'ipam', `${n.Id}.json`))).toBe(false);
    expect(thrown(() => allocate(c.store, n, cid(3)))).toBe('ENETWORK_NOT_FOUND: network n not found');
    expect(await rejected(removeNetwork(c, 'bridge'))).toBe('ENETWORK_FORBIDDEN: bridge is a pre-defined network and cannot be removed');
  });

  it('connect adds an endpoint with an address to a container on user networks; disconnect frees it; errors as Docker words them', async () => {
    const c = ctx();
    const a = net(c, 'front', '10.49.0.0/24');
    const b = net(c, 'back', '10.50.0.0/24');
    record(c, cid(1), 'web', [endpointRecord(a, allocate(c.store, a, cid(1)), { ifname: 'eth0' })]);
    await connectNetwork(c, 'back', 'web', 'connect', { aliases: ['www'], ip: '10.50.0.9' });
    const rec = JSON.parse(fs.readFileSync(c.store.p('containers', cid(1), 'record.json'), 'utf8'));
    expect(rec.net.networks.map((e: EndpointRecord) => [e.name, e.ip, e.ifname, e.aliases, e.ipGiven ?? false])).toEqual([
      ['front', '10.49.0.2', 'eth0', [], false],
      ['back', '10.50.0.9', 'eth1', ['www'], true],
    ]);
    expect(allocations(c.store, b.Id)).toEqual({ '10.50.0.9': cid(1) });
    expect(await rejected(connectNetwork(c, 'back', 'web'))).toBe('ENETWORK_FORBIDDEN: endpoint with name web already exists in network back');
    expect(await rejected(connectNetwork(c, 'nope', 'web'))).toBe('ENETWORK_NOT_FOUND: network nope not found');
    expect(await rejected(connectNetwork(c, 'back', 'nope'))).toMatch(/^ECONTAINER_NOT_FOUND/);
    // A stopped container's members are listed by rm's check, not by inspect (Docker's active endpoints).
    expect((await inspectNetwork(c, 'back')).Containers).toEqual({});
    await disconnectNetwork(c, 'front', 'web');
    expect(allocations(c.store, a.Id)).toEqual({});
    expect(await rejected(disconnectNetwork(c, 'front', 'web'))).toBe(`ENETWORK_FORBIDDEN: container ${cid(1)} is not connected to network front`);
    // A network removed behind the container's back: -f still takes the endpoint away.
    fs.rmSync(c.store.p('networks', 'back.json'));
    expect(await rejected(disconnectNetwork(c, 'back', 'web'))).toBe('ENETWORK_NOT_FOUND: network back not found');
    await disconnectNetwork(c, 'back', 'web', { force: true });
    expect(JSON.parse(fs.readFileSync(c.store.p('containers', cid(1), 'record.json'), 'utf8')).net.networks).toEqual([]);
    // A container on a built-in mode cannot join later.
    const dir = c.store.p('containers', cid(7));
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'record.json'), JSON.stringify({ id: cid(7), name: 'plain', network: 'slirp4netns', net: { mode: 'slirp4netns' }, runtimeRoot: path.join(dir, 'rt'), labels: {}, mounts: [] }));
    nameIt(c, cid(7), 'plain');
    expect(await rejected(connectNetwork(c, 'front', 'plain'))).toMatch(/^ENETWORK_FORBIDDEN: cannot connect container plain to network front: container plain is on the default network/);
    expect(allocations(c.store, a.Id)).toEqual({});
  });
});
