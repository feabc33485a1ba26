/**
 * `burrow events` (and `system events`) against the real CLI, runtime and monitor: Docker's
 * network events around a container's run (a connect for each of its networks at start, from the
 * front end; a disconnect for each when it stops, before its die, from the process that holds
 * it, which outlives the CLI), with `--since`/`--until`, `--filter` and `--format`; and the
 * container lifecycle's events in Docker's words.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, IS_ROOT } from './helpers';
import { IMAGE, setup, sleep, type Env } from './lifecycle.helpers';

let env: Env;

beforeAll(() => {
  env = setup('events');
}, 120_000);

afterAll(() => env?.dispose());

interface Ev {
  type: string;
  action: string;
  actor: string;
  container: string;
  name: string;
  netType: string;
  signal: string;
}

const FORMAT = '{{.Type}}|{{.Action}}|{{.Actor.ID}}|{{.Actor.Attributes.container}}|{{.Actor.Attributes.name}}|{{.Actor.Attributes.type}}|{{.Actor.Attributes.signal}}';
const nowSecs = () => (Date.now() / 1000).toFixed(3);

/** The events between `since` and now, through `burrow events --since --until --format`. */
function eventsSince(since: string, ...filters: string[]): Ev[] {
  const out = env.ok(['events', '--since', since, '--until', nowSecs(), ...filters.flatMap((f) => ['--filter', f]), '--format', FORMAT]);
  return out
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [type = '', action = '', actor = '', container = '', name = '', netType = '', signal = ''] = l.split('|');
      return { type, action, actor, container, name, netType, signal };
    });
}

/** The events of one container: its own, and the network events that name it. */
function ofContainer(evs: Ev[], id: string): string[] {
  return evs.filter((e) => (e.type === 'container' && e.actor === id) || (e.type === 'network' && e.container === id)).map((e) => (e.type === 'network' ? `network ${e.action} ${e.name}` : e.action));
}

const networkId = (name: string) => env.ok(['network', 'inspect', '--format', '{{.Id}}', name]).trim();

/** Longer than any wait here should take, shorter than the test's timeout: a missing event fails with its name. */
const PATIENCE_MS = 40_000;

/** Until the holder has logged the container's die (it may come a moment after the CLI returns). */
async function untilDie(since: string, id: string): Promise<Ev[]> {
  for (const end = Date.now() + PATIENCE_MS; ; ) {
    const evs = eventsSince(since);
    if (evs.some((e) => e.type === 'container' && e.action === 'die' && e.actor === id)) return evs;
    if (Date.now() > end) throw new Error(`no die event for ${id} after ${PATIENCE_MS / 1000} s; events seen: ${JSON.stringify(ofContainer(evs, id))}`);
    await sleep(50);
  }
}

/** The engine's events file, read directly: at once, where each `burrow events` costs a process. */
const rawEvents = (): { Type: string; Action: string; Actor: { ID: string; Attributes: Record<string, string> } }[] => {
  let text = '';
  try {
    text = fs.readFileSync(path.join(env.runroot, 'events.jsonl'), 'utf8');
  } catch {
    /* none yet */
  }
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as ReturnType<typeof rawEvents>[number]);
};

describe(`events as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it('run --rm on the default network: attach, connect before start, disconnect before die, as Docker logs them; the network is `bridge` of `network ls`', async () => {
    const since = nowSecs();
    env.ok(['run', '--rm', '--name', 'ev-rm', IMAGE, 'true']);
    const id = eventsSince(since, 'container=ev-rm', 'event=create')[0]!.actor;
    const evs = await untilDie(since, id);
    expect(ofContainer(evs, id)).toEqual(['create', 'attach', 'network connect bridge', 'start', 'network disconnect bridge', 'die', 'destroy']);
    const net = evs.filter((e) => e.type === 'network' && e.container === id);
    for (const e of net) expect(e).toMatchObject({ actor: networkId('bridge'), name: 'bridge', netType: 'bridge' });
    // --filter: only these, by network name and by event.
    expect(eventsSince(since, 'network=bridge', 'event=disconnect').map((e) => `${e.action} ${e.container}`)).toEqual([`disconnect ${id}`]);
  });

  it('--network none and host: their own networks (types null and host), as Docker names them', async () => {
    for (const [mode, type] of [
      ['none', 'null'],
      ['host', 'host'],
    ] as const) {
      const since = nowSecs();
      const id = env.ok(['run', '-d', '--network', mode, IMAGE, 'sleep', '600']).trim();
      env.ok(['kill', id]);
      const evs = await untilDie(since, id);
      expect(ofContainer(evs, id)).toEqual(['create', `network connect ${mode}`, 'start', 'kill', `network disconnect ${mode}`, 'die']);
      for (const e of evs.filter((x) => x.type === 'network' && x.container === id)) expect(e).toMatchObject({ actor: networkId(mode), netType: type });
      env.ok(['rm', id]);
    }
  });

  it('user-defined networks: one connect per network at start, one disconnect per network it is still on when it stops, after an explicit disconnect', async () => {
    env.ok(['network', 'create', 'ev-front']);
    env.ok(['network', 'create', 'ev-back']);
    const since = nowSecs();
    const id = env.ok(['run', '-d', '--network', 'ev-front', '--network', 'ev-back', IMAGE, 'sleep', '600']).trim();
    env.ok(['network', 'disconnect', 'ev-back', id]);
    env.ok(['stop', '-t', '0', id]);
    const evs = await untilDie(since, id);
    const seq = ofContainer(evs, id);
    expect(seq.slice(0, 5)).toEqual(['create', 'network connect ev-front', 'network connect ev-back', 'start', 'network disconnect ev-back']);
    // The stop: the holder's disconnect (from ev-front only: it left ev-back) before its die; the CLI's stop.
    expect(seq.slice(5).filter((s) => s !== 'stop' && s !== 'kill')).toEqual(['network disconnect ev-front', 'die']);
    expect(seq).toContain('stop');
    const front = evs.filter((e) => e.type === 'network' && e.container === id && e.name === 'ev-front');
    expect(front.map((e) => e.actor)).toEqual([networkId('ev-front'), networkId('ev-front')]);
    expect(front.every((e) => e.netType === 'bridge')).toBe(true);
    env.ok(['rm', id]);
    env.ok(['network', 'rm', 'ev-front', 'ev-back']);
  });

  it('a foreground run whose CLI is killed: the runtime that holds it still logs the disconnect and the die', async () => {
    env.ok(['network', 'create', 'ev-killed']);
    const since = nowSecs();
    const cli = spawn(process.execPath, [BIN, '--root', env.store, '--runroot', env.runroot, 'run', '--name', 'ev-killed', '--network', 'ev-killed', IMAGE, 'sh', '-c', 'sleep 2'], { stdio: 'ignore' });
    // Killed as soon as `start` is logged (read from the file in a tight loop, not one `burrow
    // events` per look): the start must mean that the container runs under its holder, which
    // then logs the die. When the CLI logged it, before it had even spawned the runtime (it
    // first holds the network's owner), a kill at that moment left a start and never a die:
    // the loop below waited forever (the test timed out once, on a loaded machine).
    let id = '';
    for (const end = Date.now() + PATIENCE_MS; !id; ) {
      id = rawEvents().find((e) => e.Type === 'container' && e.Action === 'start' && e.Actor.Attributes.name === 'ev-killed')?.Actor.ID ?? '';
      if (!id && Date.now() > end) throw new Error(`no start event for ev-killed after ${PATIENCE_MS / 1000} s; events seen: ${JSON.stringify(eventsSince(since).map((e) => `${e.type} ${e.action} ${e.name}`))}`);
    }
    cli.kill('SIGKILL');
    const evs = await untilDie(since, id);
    expect(ofContainer(evs, id)).toEqual(['create', 'attach', 'network connect ev-killed', 'start', 'network disconnect ev-killed', 'die']);
    env.ok(['rm', id]);
    env.ok(['network', 'rm', 'ev-killed']);
  });

  it('run -d of a container that exits at once: start before die, logged by its holder, even when the CLI is held up before it hears the pid', async () => {
    const containers = path.join(env.store, 'containers');
    const before = new Set(fs.existsSync(containers) ? fs.readdirSync(containers) : []);
    const since = nowSecs();
    const cli = spawn(process.execPath, [BIN, '--root', env.store, '--runroot', env.runroot, 'run', '-d', '--name', 'ev-quick', IMAGE, 'true'], { stdio: 'ignore' });
    const exited = new Promise<number | null>((resolve) => cli.on('exit', resolve));
    // Stopped as soon as its monitor is there (D/monitor.json, written before it creates the
    // container): the monitor starts the container, which exits, and logs the die while the CLI
    // cannot log anything. The start the CLI logged once the monitor answered came after the die.
    let id = '';
    for (const end = Date.now() + PATIENCE_MS; !id; ) {
      for (const n of fs.existsSync(containers) ? fs.readdirSync(containers) : []) if (!before.has(n) && fs.existsSync(path.join(containers, n, 'monitor.json'))) id = n;
      if (!id && Date.now() > end) throw new Error(`no monitor for ev-quick after ${PATIENCE_MS / 1000} s`);
    }
    cli.kill('SIGSTOP');
    try {
      const evs = await untilDie(since, id);
      expect(ofContainer(evs, id)).toEqual(['create', 'network connect bridge', 'start', 'network disconnect bridge', 'die']);
    } finally {
      cli.kill('SIGCONT');
    }
    expect(await exited).toBe(0);
    // Once: the CLI logs no second start.
    expect(ofContainer(eventsSince(since), id)).toEqual(['create', 'network connect bridge', 'start', 'network disconnect bridge', 'die']);
    // And as the CLI's `start` (detached, as the API's start) does it, several times over.
    for (let i = 0; i < 3; i++) {
      const again = nowSecs();
      env.ok(['start', id]);
      expect(ofContainer(await untilDie(again, id), id)).toEqual(['network connect bridge', 'start', 'network disconnect bridge', 'die']);
    }
    env.ok(['rm', id]);
  });

  it("die carries Docker's exitCode and execDuration (whole seconds the container ran)", async () => {
    const since = nowSecs();
    const id = env.ok(['run', '-d', IMAGE, 'sh', '-c', 'sleep 1; exit 3']).trim();
    await untilDie(since, id);
    const die = env
      .ok(['events', '--since', since, '--until', nowSecs(), '--filter', `container=${id}`, '--filter', 'event=die', '--format', '{{.Actor.Attributes.exitCode}} {{.Actor.Attributes.execDuration}}'])
      .trim()
      .split(' ');
    expect(die[0]).toBe('3');
    expect(die[1]).toMatch(/^\d+$/);
    // It slept a second: at least that long, however slow the machine.
    expect(Number(die[1])).toBeGreaterThanOrEqual(1);
    env.ok(['rm', id]);
  });

  it('restart: the events of a stop and a start (networks included), then restart; kill names the signal by number, as Docker does', async () => {
    const since = nowSecs();
    const id = env.ok(['run', '-d', IMAGE, 'sleep', '600']).trim();
    env.ok(['restart', '-t', '0', id]);
    env.ok(['kill', '--signal', 'TERM', id]);
    const evs = await untilDie(since, id);
    const seq = ofContainer(evs, id);
    expect(seq.slice(0, 3)).toEqual(['create', 'network connect bridge', 'start']);
    const restart = seq.slice(3, seq.indexOf('restart') + 1);
    // The stop's die and stop come in either order (the holder logs the die, the CLI the stop).
    expect([...restart].sort()).toEqual(['die', 'kill', 'kill', 'network connect bridge', 'network disconnect bridge', 'restart', 'start', 'stop'].sort());
    const at = (a: string) => restart.indexOf(a);
    // The stop's events, then the new start's: connected before it starts, restart last.
    expect(at('network disconnect bridge')).toBeLessThan(at('network connect bridge'));
    expect(at('stop')).toBeLessThan(at('network connect bridge'));
    expect(at('network connect bridge')).toBeLessThan(at('start'));
    expect(at('start')).toBe(restart.length - 2);
    expect(at('network disconnect bridge')).toBeLessThan(at('die'));
    expect(at('kill')).toBeLessThan(at('die'));
    const kills = evs.filter((e) => e.type === 'container' && e.actor === id && e.action === 'kill').map((e) => e.signal);
    // The restart's stop signal, its SIGKILL at once (-t 0: sleep, the init, ignores TERM), then
    // the explicit kill (which it ignores too): Docker's numbers.
    expect(kills).toEqual(['15', '9', '15']);
    env.ok(['rm', '-f', id]);
  });

  it('system events is the same command; a bad filter or time is a usage error (125)', () => {
    const since = nowSecs();
    env.ok(['volume', 'create', 'ev-sys']);
    const out = env.ok(['system', 'events', '--since', since, '--until', nowSecs(), '--filter', 'type=volume']);
    expect(out).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}(Z|[+-]\d\d:\d\d) volume create ev-sys \(driver=local\)\n$/);
    expect(env.b(['events', '--filter', 'colour=red', '--until', '0s']).code).toBe(125);
    expect(env.b(['events', '--since', 'yesterday', '--until', '0s']).code).toBe(125);
    env.ok(['volume', 'rm', 'ev-sys']);
  });
});
