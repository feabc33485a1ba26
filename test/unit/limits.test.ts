import { describe, expect, it } from 'vitest';
import { checkEnforceable, parseThrottle, toResources } from '../../ts/container/limits';

const fakeDev = (p: string) => {
  if (p !== '/dev/vdb') throw new Error(`unexpected ${p}`);
  return { major: 254, minor: 16 };
};

describe('limit flags to OCI resources', () => {
  it('device throttles name the device by major:minor with the rate in bytes or operations', () => {
    expect(parseThrottle('/dev/vdb:1mb', '--device-read-bps', true, fakeDev)).toEqual({ major: 254, minor: 16, rate: 1048576 });
    expect(parseThrottle('/dev/vdb:250', '--device-write-iops', false, fakeDev)).toEqual({ major: 254, minor: 16, rate: 250 });
    expect(() => parseThrottle('/dev/vdb', '--device-read-bps', true, fakeDev)).toThrow(/want DEVICE:RATE/);
    expect(() => parseThrottle('/dev/vdb:0', '--device-read-bps', true, fakeDev)).toThrow(/must be positive/);
  });

  it('a real device node of this host is read for its numbers; a file that is not one is refused', () => {
    expect(() => parseThrottle('/etc/hostname:1mb', '--device-read-bps', true)).toThrow(/not a block device/);
    expect(() => parseThrottle('/nonexistent-dev:1mb', '--device-read-bps', true)).toThrow(/nonexistent-dev/);
  });

  it('--cgroup-conf becomes unified entries and needs their controller', () => {
    const { resources, needs } = toResources({ cgroupConf: ['memory.high=67108864', 'pids.max=9'], blkioWeight: '300' });
    expect(resources).toEqual({ unified: { 'memory.high': '67108864', 'pids.max': '9' }, blockIO: { weight: 300 } });
    expect(needs.sort()).toEqual(['io', 'memory', 'pids']);
    expect(() => toResources({ cgroupConf: ['high=1'] })).toThrow(/invalid --cgroup-conf/);
  });

  it('--cpus is a quota over a 100 ms period; --memory takes Docker sizes', () => {
    const { resources, needs } = toResources({ cpus: '1.5', memory: '32m', pidsLimit: '20' });
    expect(resources).toEqual({ cpu: { period: 100000, quota: 150000 }, memory: { limit: 33554432 }, pids: { limit: 20 } });
    expect(needs.sort()).toEqual(['cpu', 'memory', 'pids']);
  });

  it('an unenforceable controller is refused with the fix, or dropped after a warning when opted out', () => {
    const info = { mode: 'unified', enforceable: ['memory', 'pids'], delegationRoot: '/sys/fs/cgroup/user.slice', manager: 'cgroupfs' };
    expect(checkEnforceable(['memory'], info, false)).toBe(true);
    expect(() => checkEnforceable(['io'], info, false)).toThrow(/io controller is not delegated/);
    expect(checkEnforceable(['io'], info, true)).toBe(false);
  });
});
