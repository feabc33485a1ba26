/**
 * The /dev/net/tun verdict follows the device's mode for an unprivileged user. Root changes the
 * mode and restores it; the probe runs as the test user. Root runs only.
 */
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { burrow, IS_ROOT, testUser } from './helpers';
import type { HostReport } from '../../ts/host/report';

const user = testUser();

describe.runIf(IS_ROOT && user)('/dev/net/tun verdict for an unprivileged user', () => {
  it('is usable at 0666 and not at 0600, with the chmod fix', () => {
    const original = fs.statSync('/dev/net/tun').mode & 0o7777;
    const probe = () => JSON.parse(burrow(['info', '--format', 'json'], { as: user }).stdout) as HostReport;
    try {
      fs.chmodSync('/dev/net/tun', 0o600);
      const closed = probe();
      expect(closed.uid).toBe(user!.uid);
      expect(closed.network.devNetTunUsable).toBe(false);
      const tun = closed.checks.find((c) => c.id === 'network.tun')!;
      expect(tun.verdict).toBe('warn');
      expect(tun.fix).toMatch(/chmod 0666 \/dev\/net\/tun/);
      expect(closed.network.defaultMode).toBe('none');
      // Networking is optional: containers can still run.
      expect(closed.canRunContainers).toBe(true);

      fs.chmodSync('/dev/net/tun', 0o666);
      const open = probe();
      expect(open.network.devNetTunUsable).toBe(true);
      expect(open.checks.find((c) => c.id === 'network.tun')!.verdict).toBe('ok');
    } finally {
      fs.chmodSync('/dev/net/tun', original);
    }
  });
});
