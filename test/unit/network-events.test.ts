import { describe, expect, it } from 'vitest';
import { eventLine, eventTime, eventTimestamp } from '../../ts/cli/commands/events';
import type { ContainerRecord } from '../../ts/container/records';
import { builtinNetworkId, containerNetworks } from '../../ts/engine/network-events';
import { parseEventTime, type RecordedEvent } from '../../ts/engine/events';
import { withBinaries } from '../../ts/host/binaries';
import type { Store } from '../../ts/storage/store';
import { sampleReport } from './fixtures';

const ctx = { store: { root: '/s' } as Store };
const rec = (network: string, net?: Partial<NonNullable<ContainerRecord['net']>>): ContainerRecord => ({ network, ...(net ? { net } : {}) }) as unknown as ContainerRecord;

describe('containerNetworks: the networks of Docker’s connect and disconnect events', () => {
  it('names burrow’s modes as network ls does: bridge, host, none (type null); none for container:X', () => {
    expect(containerNetworks(ctx, rec('bridge', { mode: 'slirp4netns' }))).toEqual([{ ID: builtinNetworkId(ctx, 'bridge'), name: 'bridge', type: 'bridge' }]);
    expect(containerNetworks(ctx, rec('pasta', { mode: 'pasta' }))[0]!.name).toBe('bridge');
    // The default that fell back to none (no slirp4netns nor pasta) is still the default network.
    expect(containerNetworks(ctx, rec('default', { mode: 'none' }))[0]!.name).toBe('bridge');
    expect(containerNetworks(ctx, rec('host', { mode: 'host' }))).toEqual([{ ID: builtinNetworkId(ctx, 'host'), name: 'host', type: 'host' }]);
    expect(containerNetworks(ctx, rec('none', { mode: 'none' }))).toEqual([{ ID: builtinNetworkId(ctx, 'none'), name: 'none', type: 'null' }]);
    expect(containerNetworks(ctx, rec('container:abc', { mode: 'container' }))).toEqual([]);
    // A record from before networking: its network word.
    expect(containerNetworks(ctx, rec('host'))[0]!.name).toBe('host');
  });

  it('a container on user-defined networks: each of them, in the order it joined', () => {
    const ep = (network: string, name: string) => ({ network, name, ip: '', mac: '', ifname: '', aliases: [] });
    expect(containerNetworks(ctx, rec('front', { mode: 'user', networks: [ep('f1', 'front'), ep('b2', 'back')] }))).toEqual([
      { ID: 'f1', name: 'front', type: 'bridge' },
      { ID: 'b2', name: 'back', type: 'bridge' },
    ]);
  });

  it('built-in ids are the store’s: the same each time, another store’s differ', () => {
    expect(builtinNetworkId(ctx, 'bridge')).toMatch(/^[0-9a-f]{64}$/);
    expect(builtinNetworkId(ctx, 'bridge')).toBe(builtinNetworkId({ store: { root: '/s' } as Store }, 'bridge'));
    expect(builtinNetworkId(ctx, 'bridge')).not.toBe(builtinNetworkId({ store: { root: '/t' } as Store }, 'bridge'));
  });
});

describe('burrow events: times and lines as docker events', () => {
  const now = 1_800_000_000 * 1e9;
  it('takes unix seconds, RFC 3339 and Go durations back from now', () => {
    expect(eventTime('1700000000.5', parseEventTime, now)).toBe(1_700_000_000.5 * 1e9);
    expect(eventTime('2026-12-07T12:00:00Z', parseEventTime, now)).toBe(Date.parse('2026-12-07T12:00:00Z') * 1e6);
    expect(eventTime('10m', parseEventTime, now)).toBe(now - 600e9);
    expect(eventTime('1h30m', parseEventTime, now)).toBe(now - 5400e9);
    expect(eventTime('0s', parseEventTime, now)).toBe(now);
    expect(() => eventTime('yesterday', parseEventTime, now)).toThrow(/invalid time "yesterday"/);
  });

  it('prints time, type, action, actor and the sorted attributes', () => {
    const e: RecordedEvent = { Type: 'network', Action: 'connect', Actor: { ID: 'n1', Attributes: { type: 'bridge', name: 'bridge', container: 'c1' } }, scope: 'local', time: 1_700_000_000, timeNano: 1_700_000_000_123_456_768 };
    expect(eventLine(e)).toMatch(/^\S+ network connect n1 \(container=c1, name=bridge, type=bridge\)\n$/);
    expect(eventTimestamp(e.timeNano)).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}(Z|[+-]\d\d:\d\d)$/);
  });
});

describe('withBinaries: burrow-runtime and burrow-monitor in burrow info', () => {
  const report = () => ({ ...sampleReport(), runtimeBinary: { path: '/nonexistent/burrow-runtime', ran: true, error: null } });
  it('a missing burrow-monitor is a warning with the fix; containers can still run', () => {
    const r = withBinaries(report(), { path: '/x/burrow-monitor', version: null, error: 'not found' });
    const m = r.checks.find((c) => c.id === 'runtime.monitor')!;
    expect(m.verdict).toBe('warn');
    expect(m.evidence).toMatch(/^\/x\/burrow-monitor: not found; detached \(-d\)/);
    expect(m.fix).toMatch(/npm run build:rust.*BURROW_MONITOR/);
    expect(r.monitorBinary).toEqual({ path: '/x/burrow-monitor', version: null, error: 'not found' });
    expect(r.canRunContainers).toBe(report().canRunContainers);
    // Before the runtime directory's line, after the host's.
    const ids = r.checks.map((c) => c.id);
    expect(ids.indexOf('runtime.monitor')).toBe(ids.indexOf('runtime.binary') + 1);
    if (ids.includes('runtime-dir')) expect(ids.indexOf('runtime-dir')).toBe(ids.indexOf('runtime.monitor') + 1);
  });

  it('a burrow-monitor that runs: ok with its path and version', () => {
    const r = withBinaries(report(), { path: '/x/burrow-monitor', version: '0.1.0', error: null });
    expect(r.checks.find((c) => c.id === 'runtime.monitor')).toMatchObject({ verdict: 'ok', evidence: expect.stringContaining('/x/burrow-monitor (version 0.1.0)') });
  });
});
