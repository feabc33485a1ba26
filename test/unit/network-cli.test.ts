/**
 * The shape of `burrow network` (ts/cli/commands/network.ts): Docker's ls columns and row fields,
 * -q, --no-trunc, json and templates, natural order by name, Go's time in CreatedAt, the create
 * flags as the engine's request, filters, and the commands and flags that exist.
 */
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../../ts/cli/main';
import { createRequest, filterMap, goTime, lsOutput, lsRow } from '../../ts/cli/commands/network';
import type { DockerNetwork } from '../../ts/engine/networks';

function dn(name: string, id: string, extra: Partial<DockerNetwork> = {}): DockerNetwork {
  return {
    Name: name,
    Id: id.padEnd(64, '0'),
    Created: '2026-12-07T02:12:23.781Z',
    Scope: 'local',
    Driver: 'bridge',
    EnableIPv6: false,
    IPAM: { Driver: 'default', Options: {}, Config: [] },
    Internal: false,
    Attachable: false,
    Ingress: false,
    ConfigFrom: { Network: '' },
    ConfigOnly: false,
    Containers: {},
    Options: {},
    Labels: {},
    ...extra,
  };
}

const nets = [dn('net10', 'aaaa'), dn('bridge', 'bbbb'), dn('net2', 'cccc', { EnableIPv6: true, Labels: { a: '1', b: '' } }), dn('host', 'dddd', { Driver: 'host' })];

describe('network ls', () => {
  it("prints Docker's columns, ids cut to 12, in natural order of names", () => {
    expect(lsOutput(nets, {})).toBe(
      ['NETWORK ID     NAME     DRIVER   SCOPE', 'bbbb00000000   bridge   bridge   local', 'dddd00000000   host     host     local', 'cccc00000000   net2     bridge   local', 'aaaa00000000   net10    bridge   local', ''].join('\n'),
    );
    expect(lsOutput(nets, { format: 'table' })).toBe(lsOutput(nets, {}));
  });

  it('-q gives ids, --no-trunc full ones', () => {
    expect(lsOutput(nets, { quiet: true })).toBe('bbbb00000000\ndddd00000000\ncccc00000000\naaaa00000000\n');
    expect(lsOutput(nets, { quiet: true, noTrunc: true }).split('\n')[0]).toBe('bbbb'.padEnd(64, '0'));
    expect(lsOutput(nets, { noTrunc: true }).split('\n')[1]).toMatch(/^bbbb0{60} {3}bridge/);
  });

  it("json lines and templates with Docker's field names", () => {
    const line = JSON.parse(lsOutput([nets[2]!], { format: 'json' }));
    expect(line).toEqual({ CreatedAt: '2026-12-07 02:12:23.781 +0000 UTC', Driver: 'bridge', ID: 'cccc00000000', IPv6: 'true', Internal: 'false', Labels: 'a=1,b=', Name: 'net2', Scope: 'local' });
    expect(Object.keys(line)).toEqual([...Object.keys(line)].sort());
    expect(lsOutput(nets, { format: '{{.Name}} {{.Driver}}' })).toBe('bridge bridge\nhost host\nnet2 bridge\nnet10 bridge\n');
    expect(lsOutput([nets[0]!], { format: 'table {{.ID}}\t{{.Name}}\t{{.IPv6}}' })).toBe('NETWORK ID     NAME    IPV6\naaaa00000000   net10   false\n');
    expect(lsRow(nets[0]!, true).ID).toHaveLength(64);
  });

  it("Go's time in CreatedAt, and filters as KEY=VALUE", () => {
    expect(goTime('2026-12-07T02:12:23.000Z')).toBe('2026-12-07 02:12:23 +0000 UTC');
    expect(goTime('2026-12-07T02:12:23.120Z')).toBe('2026-12-07 02:12:23.12 +0000 UTC');
    expect(filterMap(['name=a', 'name=b', 'label=x=y', 'dangling=true'])).toEqual({ name: ['a', 'b'], label: ['x=y'], dangling: ['true'] });
    expect(() => filterMap(['name'])).toThrow(/bad format of filter \(expected name=value\): name/);
  });
});

describe('network create flags', () => {
  const base = { driver: 'bridge', subnet: [] as string[], gateway: [] as string[], label: [] as string[], opt: [] as string[] };

  it('pairs each --gateway with the --subnet of its family; labels and options as maps', () => {
    const r = createRequest('n', { ...base, subnet: ['10.1.0.0/24', 'fd00:1::/64'], gateway: ['fd00:1::9', '10.1.0.9'], ipv6: true, internal: true, label: ['k=v', 'bare'], opt: ['com.docker.network.driver.mtu=1500'] });
    expect(r).toEqual({
      Name: 'n',
      Driver: 'bridge',
      Internal: true,
      Attachable: false,
      EnableIPv6: true,
      IPAM: { Driver: 'default', Config: [{ Subnet: '10.1.0.0/24', Gateway: '10.1.0.9' }, { Subnet: 'fd00:1::/64', Gateway: 'fd00:1::9' }], Options: {} },
      Options: { 'com.docker.network.driver.mtu': '1500' },
      Labels: { k: 'v', bare: '' },
    });
    expect(() => createRequest('n', { ...base, gateway: ['10.1.0.1'] })).toThrow(/every ip-range or gateway must have a corresponding subnet/);
  });
});

describe('the network commands', () => {
  it("exist with Docker's flags", () => {
    const program = buildProgram(() => undefined);
    const network = program.commands.find((c) => c.name() === 'network')!;
    const sub = (n: string): Command => network.commands.find((c) => c.name() === n)!;
    const flags = (n: string) => sub(n).options.map((o) => o.long);
    expect(network.commands.map((c) => c.name()).sort()).toEqual(['connect', 'create', 'disconnect', 'inspect', 'ls', 'prune', 'rm']);
    expect(flags('create')).toEqual(expect.arrayContaining(['--driver', '--subnet', '--gateway', '--internal', '--ipv6', '--label', '--opt', '--attachable']));
    expect(flags('ls')).toEqual(expect.arrayContaining(['--quiet', '--filter', '--format', '--no-trunc']));
    expect(flags('rm')).toEqual(['--force']);
    expect(flags('prune')).toEqual(['--force', '--filter']);
    expect(flags('connect')).toEqual(['--alias', '--ip']);
    expect(flags('disconnect')).toEqual(['--force']);
    expect(sub('ls').aliases()).toEqual(['list']);
    expect(sub('rm').aliases()).toEqual(['remove']);
  });
});
