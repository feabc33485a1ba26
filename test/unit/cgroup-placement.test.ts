import { describe, expect, it } from 'vitest';
import { pureV2, systemdReachable } from '../../ts/container/cgroup';

describe('cgroup placement decision', () => {
  it('only a pure v2 /proc/self/cgroup places every container', () => {
    expect(pureV2('0::/user.slice/user-1000.slice/user@1000.service/app.slice/x.scope\n')).toBe(true);
    expect(pureV2('12:pids:/user.slice\n11:memory:/user.slice\n0::/user.slice\n')).toBe(false);
    expect(pureV2('')).toBe(false);
  });

  it('systemd is reachable only when it runs and the bus of this user exists', () => {
    const files = (...have: string[]) => (p: string) => have.includes(p);
    expect(systemdReachable({ XDG_RUNTIME_DIR: '/run/user/1000' }, files('/run/systemd/system', '/run/user/1000/bus'), 1000)).toBe(true);
    expect(systemdReachable({ XDG_RUNTIME_DIR: '/run/user/1000' }, files('/run/user/1000/bus'), 1000)).toBe(false);
    expect(systemdReachable({ XDG_RUNTIME_DIR: '/run/user/1000' }, files('/run/systemd/system'), 1000)).toBe(false);
    expect(systemdReachable({ DBUS_SESSION_BUS_ADDRESS: 'unix:path=/x' }, files('/run/systemd/system', '/x'), 1000)).toBe(true);
    expect(systemdReachable({ DBUS_SESSION_BUS_ADDRESS: 'unix:abstract=/tmp/dbus-x,guid=1' }, files('/run/systemd/system'), 1000)).toBe(true);
  });

  it("a session bus address carried into a batch job from a login node, whose socket is not on this node, is no systemd to ask", () => {
    const files = (...have: string[]) => (p: string) => have.includes(p);
    const env = { DBUS_SESSION_BUS_ADDRESS: 'unix:path=/run/user/1000/bus', XDG_RUNTIME_DIR: '/run/user/1000' };
    expect(systemdReachable(env, files('/run/systemd/system'), 1000)).toBe(false);
    expect(systemdReachable(env, files('/run/systemd/system', '/run/user/1000/bus'), 1000)).toBe(true);
    expect(systemdReachable({}, files('/run/systemd/system', '/run/systemd/private'), 0)).toBe(true);
  });
});
