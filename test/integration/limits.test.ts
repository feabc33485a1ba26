/**
 * Resource limits on this host (hybrid cgroups, v2 tree with only hugetlb): nothing can be
 * enforced, so a run that asks for a limit fails with 125, names the controller and the fix,
 * and leaves nothing behind; --cgroups=disabled runs without the limits after one warning; runs
 * without limits work. Real enforcement is tested in the VM lane (test/vm). The expectations
 * follow what the host probe observes, so the file stays true on a host with delegation.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { IMAGE, setup, waitFor, type Env } from './lifecycle.helpers';
import { native } from '../../ts/native';

let env: Env;
beforeAll(() => {
  env = setup('limits');
});
afterEach(() => env.cleanup());
afterAll(() => env?.dispose());

const info = JSON.parse(native().cgroupInfo()) as { mode: string; enforceable: string[] };

describe('resource limits', () => {
  it.runIf(!info.enforceable.includes('memory'))('--memory is refused when memory cannot be enforced, naming the controller and the fix', () => {
    const before = env.b(['ps', '-a', '-q']).stdout;
    const r = env.b(['run', '--rm', '--memory', '32m', IMAGE, 'true']);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/cannot enforce the requested limits: .*memory controller/);
    expect(r.stderr).toMatch(/fix: .*Delegate=cpu cpuset io memory pids.*--cgroups=disabled/);
    expect(env.b(['ps', '-a', '-q']).stdout).toBe(before); // nothing left behind
    for (const flag of [['--cpus', '0.5'], ['--pids-limit', '20']]) {
      const x = env.b(['run', '--rm', ...flag, IMAGE, 'true']);
      expect(x.code).toBe(125);
      expect(x.stderr).toMatch(flag[0] === '--cpus' ? /cpu controller/ : /pids controller/);
    }
  });

  it('--cgroups=disabled runs without the limits after one warning', () => {
    const r = env.b(['run', '--rm', '--memory', '32m', '--cgroups=disabled', IMAGE, 'echo', 'ran']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('ran\n');
    if (!info.enforceable.includes('memory')) expect(r.stderr.match(/warning: --cgroups=disabled/g)?.length).toBe(1);
  });

  it('a run without limits works everywhere', () => {
    const r = env.b(['run', '--rm', IMAGE, 'sh', '-c', 'echo ok']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('ok\n');
  });

  it('--cgroups takes enabled, no-conmon or disabled; anything else is a usage error', () => {
    expect(env.b(['run', '--rm', '--cgroups=no-conmon', IMAGE, 'true']).code).toBe(0);
    const r = env.b(['run', '--rm', '--cgroups=off', IMAGE, 'true']);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/invalid --cgroups off: want enabled, no-conmon or disabled/);
  });

  it('invalid limit values are usage errors', () => {
    const r = env.b(['run', '--rm', '--memory', 'lots', '--cgroups=disabled', IMAGE, 'true']);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/invalid --memory lots/);
  });

  it('stats --no-stream reports a busy container\'s CPU, memory and pids (from /proc where it has no cgroup)', () => {
    expect(env.b(['run', '-d', '--name', 'busy', IMAGE, 'sh', '-c', 'while :; do :; done']).code).toBe(0);
    const r = env.b(['stats', '--no-stream', '--format', 'json', 'busy']);
    expect(r.code, r.stderr).toBe(0);
    const row = JSON.parse(r.stdout.trim());
    expect(row.Name).toBe('busy');
    expect(row.cpuPercent).toBeGreaterThan(1);
    expect(row.memoryUsage).toBeGreaterThan(0);
    expect(Number(row.PIDs)).toBeGreaterThanOrEqual(1);
    expect(row.source).toBe('proc'); // no limit asked, so no cgroup of its own
    const table = env.b(['stats', '--no-stream']);
    expect(table.stdout.split('\n')[0]).toMatch(/^CONTAINER ID +NAME +CPU % +MEM USAGE \/ LIMIT +MEM % +NET I\/O +BLOCK I\/O +PIDS$/);
    expect(table.stdout).toMatch(/busy/);
  });

  it('stats and update of a container that is not running, and update without a limit, are errors (125)', () => {
    expect(env.b(['create', '--name', 'idle', IMAGE, 'true']).code).toBe(0);
    const s = env.b(['stats', '--no-stream', 'idle']);
    expect(s.code).toBe(125);
    expect(s.stderr).toMatch(/not running/);
    const u = env.b(['update', 'idle']);
    expect(u.code).toBe(125);
    expect(u.stderr).toMatch(/give at least one limit/);
  });

  it('update of a stopped container: --restart applies at its next start; a limit is kept for it (refused only where this host cannot enforce it), never "not running"', () => {
    expect(env.b(['create', '--name', 'later', IMAGE, 'sh', '-c', 'echo run; exit 3']).code).toBe(0);
    const u = env.b(['update', '--restart', 'on-failure:1', 'later']);
    expect(u.code, u.stderr).toBe(0);
    expect(u.stdout).toBe('later\n');
    const policy = () => env.b(['inspect', '--format', '{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}', 'later']).stdout.trim();
    expect(policy()).toBe('on-failure:1');
    expect(env.b(['start', 'later']).code).toBe(0);
    const state = () => env.b(['inspect', '--format', '{{.State.Status}} {{.RestartCount}} {{.State.Restarting}}', 'later']).stdout.trim();
    // The policy given while it was created: one restart after its failure, then it stays exited.
    waitFor(() => env.b(['logs', 'later']).stdout === 'run\nrun\n' && state() === 'exited 1 false', 30_000, 'the restart that the updated policy makes');
    // Exited now: a new policy, and a limit for the next start.
    expect(env.b(['update', '--restart', 'no', 'later']).code).toBe(0);
    expect(policy()).toBe('no:0');
    const m = env.b(['update', '--memory', '64m', '--pids-limit', '100', 'later']);
    if (info.enforceable.includes('memory') && info.enforceable.includes('pids')) {
      expect(m.code, m.stderr).toBe(0);
      expect(env.b(['inspect', '--format', '{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}', 'later']).stdout.trim()).toBe(`${64 * 1024 * 1024} 100`);
      expect(env.b(['start', '-a', 'later']).code).toBe(3);
    } else {
      expect(m.code).toBe(125);
      expect(m.stderr).toMatch(/cannot enforce the requested limits: .*controller/);
      expect(m.stderr).not.toMatch(/not running/);
    }
  });

  it.runIf(!info.enforceable.includes('memory'))('update --memory of a running container is refused here, naming the controller, and changes nothing', () => {
    expect(env.b(['run', '-d', '--name', 'upd', IMAGE, 'sleep', '60']).code).toBe(0);
    const r = env.b(['update', '--memory', '64m', 'upd']);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/cannot enforce the requested limits: .*memory controller/);
    expect(env.b(['inspect', '--format', '{{.HostConfig.Memory}} {{.State.OOMKilled}}', 'upd']).stdout.trim()).toBe('0 false');
  });
});
