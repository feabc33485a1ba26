/**
 * A user-defined network under stopped containers, as Docker has it (#16): Docker releases a
 * container's endpoint when it stops, so `network rm` and `network prune` remove a network that
 * only stopped (or never started) containers are on; such a container keeps the endpoint in
 * inspect without an address, and its `start` fails (125, "network NAME not found", naming the
 * fix) until it is reconnected or recreated; a network of the same name created again is another
 * network. A running container still blocks the removal with Docker's "has active endpoints".
 * Runs as root and as the unprivileged test user.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IMAGE, setup, type Env } from './lifecycle.helpers';

let env: Env;
beforeAll(() => {
  env = setup('netstop');
});
afterAll(() => env?.dispose());

const b = (...args: string[]) => env.b(args);
const ok = (...args: string[]): string => env.ok(args);
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const inspect = (ref: string): Record<string, any> => JSON.parse(ok('inspect', ref))[0];
const networks = (): string[] => ok('network', 'ls', '--filter', 'type=custom', '--format', '{{.Name}}').split('\n').filter(Boolean);

describe('a network only stopped containers are on', () => {
  it('is removed by network rm while a running container still blocks it; start then fails naming the fix, and works once reconnected', () => {
    ok('network', 'create', 'gone');
    const goneId = JSON.parse(ok('network', 'inspect', 'gone'))[0].Id as string;
    ok('run', '--name', 'stopped', '--network', 'gone', IMAGE, 'true');
    ok('create', '--name', 'created', '--network', 'gone', IMAGE, 'true');
    ok('run', '-d', '--name', 'runner', '--network', 'gone', IMAGE, 'sleep', '1000');
    // The running one is an active endpoint: Docker's error, and the network stays.
    const inUse = b('network', 'rm', 'gone');
    expect(inUse.code).toBe(125);
    expect(inUse.stderr).toMatch(/^Error: error while removing network: network gone has active endpoints \(name:"runner" id:"[0-9a-f]{12}"\)/);
    expect(inUse.stderr).not.toMatch(/"stopped"|"created"/);
    expect(networks()).toEqual(['gone']);
    ok('rm', '-f', 'runner');

    // Only stopped and created containers left: it goes, as Docker's does.
    expect(ok('network', 'rm', 'gone')).toBe('gone\n');
    expect(networks()).toEqual([]);
    // inspect keeps the endpoint, without the address the network took with it.
    const ep = inspect('stopped').NetworkSettings.Networks.gone;
    expect(ep).toMatchObject({ NetworkID: goneId, EndpointID: '', IPAddress: '', Gateway: '' });
    for (const c of ['stopped', 'created']) {
      const st = b('start', c);
      expect([st.code, st.stdout]).toEqual([125, '']);
      expect(st.stderr).toMatch(/^Error: network gone not found/);
      expect(st.stderr).toMatch(/burrow network disconnect -f gone CONTAINER, then burrow network connect NETWORK CONTAINER\) or recreate it/);
      expect(inspect(c).State.Running).toBe(false);
    }
    // A network of the same name created again is another one: still not found.
    ok('network', 'create', 'gone');
    expect(b('start', 'stopped').stderr).toMatch(/^Error: network gone not found/);
    // Reconnected, it starts on the new network with an address of it.
    ok('network', 'disconnect', '-f', 'gone', 'stopped');
    ok('network', 'connect', 'gone', 'stopped');
    ok('start', 'stopped');
    const now = inspect('stopped').NetworkSettings.Networks.gone;
    expect(now.NetworkID).not.toBe(goneId);
    expect(now.IPAddress).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    ok('rm', '-f', 'stopped', 'created');
    ok('network', 'rm', 'gone');
  });

  it('is removed by network prune (not a network a running container is on), and ls --filter dangling says so before', () => {
    ok('network', 'create', 'idle');
    ok('network', 'create', 'busy');
    ok('run', '--name', 'idler', '--network', 'idle', IMAGE, 'true');
    ok('run', '-d', '--name', 'worker', '--network', 'busy', IMAGE, 'sleep', '1000');
    expect(ok('network', 'ls', '--filter', 'dangling=true', '--format', '{{.Name}}')).toBe('idle\n');
    expect(ok('network', 'prune', '-f')).toBe('Deleted Networks:\nidle\n\n');
    expect(networks()).toEqual(['busy']);
    expect(b('start', 'idler').stderr).toMatch(/^Error: network idle not found/);
    ok('rm', '-f', 'worker', 'idler');
    expect(ok('network', 'prune', '-f')).toBe('Deleted Networks:\nbusy\n\n');
  });
});
