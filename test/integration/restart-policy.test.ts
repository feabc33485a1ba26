/**
 * Docker's restart policies, kept by the monitor (crates/burrow-runtime/src/commands/monitor.rs,
 * burrow_core::runtime::restart): `on-failure:N` restarts at most N times after failures,
 * `always` after any exit, nothing restarts a container the user stopped or killed; every
 * restart is the same container (its id, its writable layer, its log appended); RestartCount in
 * inspect; the holder's `die` and `restart` events in the run root's events.jsonl.
 *
 * The policy is written into the container's record (the `--restart` flag and the API field
 * come from the containers engine).
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { IS_ROOT } from './helpers';
import { alive, IMAGE, setup, waitFor } from './lifecycle.helpers';

const env = setup('restart');
afterAll(() => env.dispose());
afterEach(() => env.cleanup());

type Policy = { name: 'no' | 'on-failure' | 'always' | 'unless-stopped'; maximumRetryCount: number };

function dir(id: string): string {
  return path.join(env.store, 'containers', id);
}

/** `create` with the policy in the record; the container's id. */
function createWith(policy: Policy, cmd: string[], name: string): string {
  const r = env.b(['create', '--name', name, IMAGE, ...cmd]);
  expect(r.code, r.stderr).toBe(0);
  const id = r.stdout.trim();
  const file = path.join(dir(id), 'record.json');
  const rec = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  fs.writeFileSync(file, JSON.stringify({ ...rec, restartPolicy: policy }));
  return id;
}

function inspect(name: string): { status: string; exitCode: number; restarting: boolean; count: number; policy: string } {
  const r = env.b(['inspect', '-f', '{{.State.Status}} {{.State.ExitCode}} {{.State.Restarting}} {{.RestartCount}} {{.HostConfig.RestartPolicy.Name}}', name]);
  expect(r.code, r.stderr).toBe(0);
  const [status, exitCode, restarting, count, policy] = r.stdout.trim().split(' ');
  return { status: status!, exitCode: Number(exitCode), restarting: restarting === 'true', count: Number(count), policy: policy! };
}

/** The monitor's pid (monitor.json), and whether it still runs. */
function monitorAlive(id: string): boolean {
  try {
    const m = JSON.parse(fs.readFileSync(path.join(dir(id), 'monitor.json'), 'utf8')) as { pid: number };
    return alive(m.pid);
  } catch {
    return false;
  }
}

function events(id: string): { Action: string; Actor: { ID: string; Attributes: Record<string, string> }; scope: string; time: number; timeNano: number }[] {
  const file = path.join(env.runroot, 'events.jsonl');
  const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as ReturnType<typeof events>[number])
    .filter((e) => e.Actor.ID === id);
}

/** The end of each run: the holder's die events (the engine's create, stop, kill… are interleaved). */
function dies(id: string): ReturnType<typeof events> {
  return events(id).filter((e) => e.Action === 'die');
}

/** Each start: the user's, then the monitor's at each restart (`start`, as Docker's daemon logs a policy's restart). */
function starts(id: string): ReturnType<typeof events> {
  return events(id).filter((e) => e.Action === 'start');
}

describe(`restart policies kept by the monitor, as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it('on-failure:2 restarts the same container twice, then it stays exited; RestartCount 2; die and start events, as Docker logs a policy restart', () => {
    // The writable layer is kept: each run appends to the same file.
    const id = createWith({ name: 'on-failure', maximumRetryCount: 2 }, ['sh', '-c', 'echo x >> /runs; echo run $(wc -l < /runs); exit 3'], 'onf');
    expect(env.b(['start', 'onf']).code).toBe(0);
    waitFor(() => !monitorAlive(id), 30_000, 'the monitor to give up');
    const st = inspect('onf');
    expect(st).toEqual({ status: 'exited', exitCode: 3, restarting: false, count: 2, policy: 'on-failure' });
    expect(env.b(['logs', 'onf']).stdout).toBe('run 1\nrun 2\nrun 3\n');
    // the same container: the one id in the store
    expect(env.b(['ps', '-aq', '--no-trunc']).stdout.trim().split('\n')).toContain(id);
    // The engine's create and start come first; then only the monitor's: no `restart`, which
    // Docker logs for the user's restart only.
    expect(events(id).map((e) => e.Action)).toEqual(['create', 'start', 'die', 'start', 'die', 'start', 'die']);
    for (const e of dies(id)) {
      expect(e.Actor.Attributes).toMatchObject({ exitCode: '3', name: 'onf', image: IMAGE });
      expect(e.scope).toBe('local');
      expect(Math.floor(e.timeNano / 1e9)).toBe(e.time);
    }
  });

  it('always restarts after exit 0; a stop ends it with no restart after it', () => {
    const id = createWith({ name: 'always', maximumRetryCount: 0 }, ['sh', '-c', 'echo run; exit 0'], 'alw');
    expect(env.b(['start', 'alw']).code).toBe(0);
    waitFor(() => inspect('alw').count >= 2, 30_000, 'two restarts');
    expect(env.b(['stop', '-t', '1', 'alw']).code).toBe(0);
    // stop returns once nothing will restart it: the monitor is gone, the count is final
    expect(monitorAlive(id)).toBe(false);
    const st = inspect('alw');
    expect(st.status).toBe('exited');
    expect(st.restarting).toBe(false);
    const logged = env.b(['logs', 'alw']).stdout.split('\n').filter(Boolean).length;
    expect(logged).toBe(st.count + 1);
    // The user's start, then one per restart; a die for each, the stop's last.
    expect(starts(id)).toHaveLength(st.count + 1);
    expect(dies(id)).toHaveLength(st.count + 1);
    expect(events(id).filter((e) => e.Action === 'start' || e.Action === 'die').at(-1)!.Action).toBe('die');
  });

  it('a running container with `always` that the user stops or kills is not restarted', () => {
    const id = createWith({ name: 'always', maximumRetryCount: 0 }, ['sleep', '1000'], 'stp');
    expect(env.b(['start', 'stp']).code).toBe(0);
    expect(inspect('stp').status).toBe('running');
    expect(env.b(['stop', '-t', '1', 'stp']).code).toBe(0);
    waitFor(() => !monitorAlive(id), 10_000, 'the monitor to end');
    expect(inspect('stp')).toMatchObject({ status: 'exited', exitCode: 137, restarting: false, count: 0 });
    expect(dies(id).map((e) => e.Actor.Attributes.exitCode)).toEqual(['137']);
    expect(starts(id)).toHaveLength(1);
    // started again by the user, then killed: the same
    expect(env.b(['start', 'stp']).code).toBe(0);
    expect(inspect('stp').status).toBe('running');
    expect(env.b(['kill', 'stp']).code).toBe(0);
    waitFor(() => !monitorAlive(id), 10_000, 'the monitor to end');
    expect(inspect('stp')).toMatchObject({ status: 'exited', exitCode: 137, count: 0 });
    // The user's two starts only.
    expect(events(id).filter((e) => e.Action === 'start')).toHaveLength(2);
    expect(events(id).filter((e) => e.Action === 'restart')).toHaveLength(0);
  });

  it('without a policy a container exits once, with its die event', () => {
    const id = createWith({ name: 'no', maximumRetryCount: 0 }, ['sh', '-c', 'exit 7'], 'nop');
    expect(env.b(['start', 'nop']).code).toBe(0);
    waitFor(() => !monitorAlive(id), 10_000, 'the monitor to end');
    expect(inspect('nop')).toEqual({ status: 'exited', exitCode: 7, restarting: false, count: 0, policy: 'no' });
    expect(dies(id).map((e) => [e.Action, e.Actor.Attributes.exitCode])).toEqual([['die', '7']]);
  });

  it('attached (start -a), the CLI returns at the first exit and the monitor keeps the policy', () => {
    const id = createWith({ name: 'on-failure', maximumRetryCount: 1 }, ['sh', '-c', 'echo out; exit 2'], 'att');
    const r = env.b(['start', '-a', 'att']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('out\n');
    waitFor(() => !monitorAlive(id), 10_000, 'the monitor to give up');
    expect(inspect('att')).toMatchObject({ status: 'exited', exitCode: 2, count: 1 });
    expect(env.b(['logs', 'att']).stdout).toBe('out\nout\n');
  });

  it('one writer per state file: with its monitor killed, the CLI records the lost exit in lost.json, never in the monitor\'s exit.json', () => {
    const id = createWith({ name: 'always', maximumRetryCount: 0 }, ['sleep', '1000'], 'lost');
    expect(env.b(['start', 'lost']).code).toBe(0);
    const monitor = (JSON.parse(fs.readFileSync(path.join(dir(id), 'monitor.json'), 'utf8')) as { pid: number }).pid;
    const init = Number(env.b(['inspect', '-f', '{{.State.Pid}}', 'lost']).stdout.trim());
    expect(init).toBeGreaterThan(0);
    process.kill(monitor, 'SIGKILL');
    waitFor(() => !alive(monitor), 10_000, 'the monitor to die');
    process.kill(init, 'SIGKILL');
    waitFor(() => !alive(init), 10_000, 'the container to die');
    expect(inspect('lost')).toMatchObject({ status: 'exited', exitCode: 255, restarting: false });
    expect(fs.existsSync(path.join(dir(id), 'lost.json'))).toBe(true);
    expect(fs.existsSync(path.join(dir(id), 'exit.json'))).toBe(false);
    // the user starts it again: a new run, a new holder, its own exit record
    expect(env.b(['start', 'lost']).code).toBe(0);
    expect(inspect('lost').status).toBe('running');
    expect(fs.existsSync(path.join(dir(id), 'lost.json'))).toBe(false);
    expect(env.b(['stop', '-t', '1', 'lost']).code).toBe(0);
    expect(inspect('lost')).toMatchObject({ status: 'exited', exitCode: 137, count: 0 });
    expect(fs.existsSync(path.join(dir(id), 'exit.json'))).toBe(true);
  });

  it('a foreground run records its die event too', () => {
    const r = env.b(['run', '--name', 'fg', IMAGE, 'sh', '-c', 'exit 4']);
    expect(r.code).toBe(4);
    const id = env.b(['inspect', '-f', '{{.Id}}', 'fg']).stdout.trim();
    expect(dies(id).map((e) => [e.Action, e.Actor.Attributes.exitCode, e.Actor.Attributes.name])).toEqual([['die', '4', 'fg']]);
  });
});
