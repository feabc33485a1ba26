/**
 * `burrow network` through the real binary (#16), as root and as the unprivileged test user:
 * create (Docker's default pools, never a subnet a host route or another network has), ls with
 * its filters and formats, inspect, rm and prune with a member (a container running on the
 * network), connect/disconnect with --ip and --alias, and the errors: an overlapping --subnet
 * (Docker's words, nothing written), a taken --ip naming its holder, a network in use, one that
 * does not exist, a duplicate name. The listing's shape is compared with podman's (4.3, private
 * sandbox): the columns they share, ids of 12 and 64 hex digits, order by name.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatCidr, overlaps, parseCidr, parseRoutes4 } from '../../ts/network/subnets';
import { IMAGE, setup, type Env } from './lifecycle.helpers';
import { podmanSandbox, which } from '../harness/clients.mjs';

let env: Env;
beforeAll(() => {
  env = setup('netcli');
});
afterAll(() => env?.dispose());

const b = (...args: string[]) => env.b(args);
const ok = (...args: string[]): string => env.ok(args);
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const inspect = (ref: string): Record<string, any> => JSON.parse(ok('network', 'inspect', ref))[0];
const subnetOf = (ref: string): string => inspect(ref).IPAM.Config[0].Subnet as string;
const names = (...args: string[]): string[] => ok('network', 'ls', '--format', '{{.Name}}', ...args).split('\n').filter(Boolean);
const ipamFile = (id: string) => path.join(env.store, 'networks', 'ipam', `${id}.json`);

describe('burrow network', () => {
  it("creates networks on Docker's default pools, never on a host route or another network's subnet; lists and inspects them as Docker", () => {
    const id = ok('network', 'create', '--label', 'team=a', 'front').trim();
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    ok('network', 'create', 'back');
    const front = inspect('front');
    expect(front).toMatchObject({ Name: 'front', Id: id, Driver: 'bridge', Scope: 'local', EnableIPv6: false, Internal: false, Containers: {}, Labels: { team: 'a' }, IPAM: { Driver: 'default' } });
    const routes = parseRoutes4(fs.readFileSync('/proc/net/route', 'utf8'));
    const pools = /^(172\.(1[89]|2\d|3[01])\.0\.0\/16|192\.168\.\d+\.0\/20)$/;
    for (const n of ['front', 'back']) {
      const s = subnetOf(n);
      expect(s).toMatch(pools);
      expect(inspect(n).IPAM.Config[0].Gateway).toBe(s.replace(/0\/\d+$/, '1'));
      for (const r of routes) expect(overlaps(parseCidr(s), r.cidr), `${s} overlaps ${r.what}`).toBe(false);
    }
    expect(subnetOf('front')).not.toBe(subnetOf('back'));
    // ls: Docker's columns, ids cut to 12, sorted by name.
    const lines = ok('network', 'ls').trimEnd().split('\n');
    expect(lines[0]).toMatch(/^NETWORK ID {5}NAME {3,}DRIVER {3}SCOPE$/);
    expect(lines.slice(1).map((l) => l.split(/\s+/)[1])).toEqual(['back', 'bridge', 'front', 'host', 'none']);
    expect(lines.find((l) => l.includes(' front '))).toMatch(new RegExp(`^${id.slice(0, 12)}\\s+front\\s+bridge\\s+local$`));
    expect(ok('network', 'ls', '-q', '--filter', 'name=front')).toBe(`${id.slice(0, 12)}\n`);
    expect(ok('network', 'ls', '-q', '--no-trunc', '--filter', 'label=team=a')).toBe(`${id}\n`);
    expect(names('--filter', 'type=custom')).toEqual(['back', 'front']);
    expect(names('--filter', 'driver=null')).toEqual(['none']);
    expect(names('--filter', `id=${id.slice(0, 6)}`)).toEqual(['front']);
    const json = ok('network', 'ls', '--format', 'json', '--filter', 'name=^front$').trim();
    expect(JSON.parse(json)).toMatchObject({ ID: id.slice(0, 12), Name: 'front', Driver: 'bridge', Scope: 'local', IPv6: 'false', Internal: 'false', Labels: 'team=a' });
    expect(ok('network', 'inspect', '-f', '{{.Name}} {{.Driver}} {{.Labels}}', 'front', id.slice(0, 8))).toBe('front bridge map[team:a]\nfront bridge map[team:a]\n');
    // Options, --internal and --ipv6 as recorded.
    ok('network', 'create', '--internal', '--ipv6', '--subnet', '10.77.0.0/24', '--gateway', '10.77.0.254', '-o', 'com.docker.network.driver.mtu=1400', 'inner');
    const inner = inspect('inner');
    expect(inner).toMatchObject({ Internal: true, EnableIPv6: true, Options: { 'com.docker.network.driver.mtu': '1400' } });
    expect(inner.IPAM.Config[0]).toEqual({ Subnet: '10.77.0.0/24', Gateway: '10.77.0.254' });
    expect(inner.IPAM.Config[1].Subnet).toMatch(/^fd[0-9a-f:]+::\/64$/);
    ok('network', 'rm', 'inner');
  });

  it('refuses an overlapping --subnet in Docker\'s words and writes nothing; a duplicate name; a network that does not exist', () => {
    const before = ok('network', 'ls', '--no-trunc');
    const files = fs.readdirSync(path.join(env.store, 'networks')).sort();
    const taken = b('network', 'create', '--subnet', subnetOf('front'), 'again');
    expect(taken.code).toBe(125);
    expect(taken.stderr).toMatch(/^Error: Pool overlaps with other one on this address space: .* overlaps network front's/);
    const routes = parseRoutes4(fs.readFileSync('/proc/net/route', 'utf8'));
    expect(routes.length, 'this host has no route but the default one to test against').toBeGreaterThan(0);
    const onRoute = b('network', 'create', '--subnet', formatCidr(routes[0]!.cidr), 'again');
    expect(onRoute.code).toBe(125);
    expect(onRoute.stderr).toMatch(/^Error: Pool overlaps with other one on this address space: .* overlaps the host's route/);
    const slirp = b('network', 'create', '--subnet', '10.0.2.0/24', 'again');
    expect([slirp.code, slirp.stderr]).toEqual([125, expect.stringMatching(/slirp4netns's 10\.0\.2\.0\/24/)]);
    const bad = b('network', 'create', '--subnet', '10.78.0.0/24', '--gateway', '10.79.0.1', 'again');
    expect([bad.code, bad.stderr]).toEqual([125, expect.stringMatching(/^Error: no matching subnet for gateway 10\.79\.0\.1/)]);
    const dup = b('network', 'create', 'front');
    expect([dup.code, dup.stderr]).toEqual([125, 'Error: network with name front already exists\n']);
    const builtin = b('network', 'create', 'host');
    expect(builtin.code).toBe(125);
    expect(ok('network', 'ls', '--no-trunc')).toBe(before);
    expect(fs.readdirSync(path.join(env.store, 'networks')).sort()).toEqual(files);
    const rm = b('network', 'rm', 'nope');
    expect([rm.code, rm.stdout, rm.stderr]).toEqual([125, '', 'Error: network nope not found\n']);
    expect(b('network', 'rm', '-f', 'nope')).toMatchObject({ code: 0, stdout: '', stderr: '' });
    const ins = b('network', 'inspect', 'front', 'nope');
    expect(ins.code).toBe(125);
    expect(JSON.parse(ins.stdout).map((n: { Name: string }) => n.Name)).toEqual(['front']);
    expect(ins.stderr).toBe('Error: network nope not found\n');
    const pre = b('network', 'rm', 'bridge');
    expect([pre.code, pre.stderr]).toEqual([125, 'Error: bridge is a pre-defined network and cannot be removed\n']);
  });

  it('keeps a network a running container is on (rm, prune, dangling); connect/disconnect with --ip and --alias; rm and prune once it is free', () => {
    const frontId = inspect('front').Id as string;
    // A running container is an active endpoint (Docker's); a stopped one is not (network-stopped.test.ts).
    ok('run', '-d', '--name', 'member', '--network', 'front', IMAGE, 'sleep', '1000');
    const inUse = b('network', 'rm', 'front');
    expect(inUse.code).toBe(125);
    expect(inUse.stderr).toMatch(/^Error: error while removing network: network front has active endpoints \(name:"member" id:"[0-9a-f]{12}"\)/);
    expect(names('--filter', 'dangling=true')).toEqual(['back']);
    expect(names('--filter', 'dangling=false')).toEqual(['bridge', 'front', 'host', 'none']);
    expect(Object.keys(inspect('front').Containers)).toHaveLength(1);
    expect(Object.values(JSON.parse(fs.readFileSync(ipamFile(frontId), 'utf8')).addresses).length).toBe(1);

    const backNet = subnetOf('back');
    const ip = backNet.replace(/0\/\d+$/, '9');
    ok('network', 'connect', '--alias', 'www', '--ip', ip, 'back', 'member');
    ok('create', '--name', 'other', '--network', 'front', IMAGE, 'true');
    const taken = b('network', 'connect', '--ip', ip, 'back', 'other');
    expect(taken.code).toBe(125);
    expect(taken.stderr).toMatch(new RegExp(`^Error: Address already in use: ${ip.replace(/\./g, '\\.')} on network back is held by container member \\([0-9a-f]{12}\\)`));
    const twice = b('network', 'connect', 'back', 'member');
    expect([twice.code, twice.stderr]).toEqual([125, 'Error: endpoint with name member already exists in network back\n']);
    expect(b('network', 'connect', 'nope', 'member').stderr).toBe('Error: network nope not found\n');
    expect(b('network', 'connect', 'back', 'nope').code).toBe(125);
    ok('create', '--name', 'plain', IMAGE, 'true');
    expect(b('network', 'connect', 'back', 'plain').stderr).toMatch(/^Error: cannot connect container plain to network back: container plain is on the default network/);
    expect(b('network', 'rm', 'back').stderr).toMatch(/has active endpoints \(name:"member"/);
    // prune keeps what is used and says nothing when nothing goes.
    expect(ok('network', 'prune', '-f')).toBe('');
    ok('network', 'disconnect', 'back', 'member');
    const notOn = b('network', 'disconnect', 'back', 'member');
    expect([notOn.code, notOn.stderr]).toEqual([125, expect.stringMatching(/^Error: container [0-9a-f]{64} is not connected to network back/)]);
    // The address is free again: the other container gets it.
    ok('network', 'connect', '--ip', ip, 'back', 'other');
    ok('network', 'disconnect', 'back', 'other');

    ok('rm', '-f', 'member', 'other', 'plain');
    ok('network', 'create', '--label', 'keep=yes', 'kept');
    expect(ok('network', 'prune', '-f', '--filter', 'label!=keep=yes')).toBe('Deleted Networks:\nback\nfront\n\n');
    expect(fs.existsSync(ipamFile(frontId))).toBe(false);
    expect(names('--filter', 'type=custom')).toEqual(['kept']);
    expect(ok('network', 'rm', 'kept')).toBe('kept\n');
    const noTty = b('network', 'prune');
    expect([noTty.code, noTty.stderr]).toEqual([125, expect.stringMatching(/not removing anything without confirmation/)]);
  });
});

describe('the listing compared with podman', () => {
  it('has the columns podman shows too, ids of 12 and 64 hex digits, and the same order by name', async () => {
    if (!which('podman')) throw new Error('podman is not installed: run .ci/setup (apt-get install podman)');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-netcli-podman-'));
    fs.chmodSync(dir, 0o755);
    const sb = podmanSandbox(dir);
    try {
      const p = async (...args: string[]): Promise<string> => {
        const r = await sb.podman(args);
        expect(r.code, `podman ${args.join(' ')}: ${r.stderr}`).toBe(0);
        return r.stdout;
      };
      for (const n of ['zeta', 'alpha']) {
        await p('network', 'create', n);
        ok('network', 'create', n);
      }
      const rows = (out: string) =>
        out
          .trimEnd()
          .split('\n')
          .map((l) => l.split(/ {2,}/));
      const pod = rows(await p('network', 'ls'));
      const ours = rows(ok('network', 'ls'));
      // podman 4.3 has no SCOPE column; the three it has are Docker's, in Docker's order.
      expect(ours[0]!.slice(0, 3)).toEqual(pod[0]);
      const shape = (r: string[][]) => r.slice(1).map((c) => [/^[0-9a-f]{12}$/.test(c[0]!), c[2]]);
      expect(new Set(shape(ours).map(String))).toEqual(new Set(shape(pod).map(String)).add(['true', 'host'].join()).add(['true', 'null'].join()));
      const custom = (r: string[][]) => r.slice(1).map((c) => c[1]).filter((n) => n === 'alpha' || n === 'zeta');
      expect(custom(ours)).toEqual(custom(pod));
      expect(custom(ours)).toEqual(['alpha', 'zeta']);
      const tmpl = '{{.ID}} {{.Name}} {{.Driver}}';
      const line = (out: string, n: string) => out.split('\n').find((l) => l.split(' ')[1] === n)!;
      for (const [out, trunc] of [
        [await p('network', 'ls', '--format', tmpl), 12],
        [ok('network', 'ls', '--format', tmpl), 12],
        [await p('network', 'ls', '--no-trunc', '--format', tmpl), 64],
        [ok('network', 'ls', '--no-trunc', '--format', tmpl), 64],
      ] as const)
        expect(line(out, 'alpha')).toMatch(new RegExp(`^[0-9a-f]{${trunc}} alpha bridge$`));
      // Both refuse a duplicate name and an overlapping subnet with 125.
      const podSubnet = (JSON.parse(await p('network', 'inspect', 'alpha'))[0].subnets[0].subnet) as string;
      expect((await sb.podman(['network', 'create', '--subnet', podSubnet, 'again'])).code).toBe(125);
      expect(b('network', 'create', '--subnet', subnetOf('alpha'), 'again').code).toBe(125);
      expect((await sb.podman(['network', 'create', 'alpha'])).code).toBe(125);
      expect(b('network', 'create', 'alpha').code).toBe(125);
      ok('network', 'rm', 'alpha', 'zeta');
    } finally {
      await sb.cleanup();
    }
  }, 120_000);
});
