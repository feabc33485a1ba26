/**
 * Docker's healthchecks, run by the container's monitor (crates/burrow-core/src/runtime/health.rs
 * in crates/burrow-runtime/src/commands/monitor.rs): `--health-*` flags and an image's
 * HEALTHCHECK merged as Docker merges them, `--no-healthcheck`; `starting` until the first
 * success, `unhealthy` after `retries` consecutive failures (none counted in the start period),
 * FailingStreak and the last five results in inspect's State.Health; a probe past its timeout
 * killed and counted as a failure; ps's `(healthy)` and `--filter health=`; the monitor's
 * `health_status` events; `burrow healthcheck run`.
 *
 * No timed assertions: every wait polls with a generous deadline.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { IS_ROOT } from './helpers';
import { IMAGE, setup, waitFor } from './lifecycle.helpers';
import { buildBusyboxImage } from '../harness/images.mjs';

const env = setup('health');
afterAll(() => env.dispose());
afterEach(() => env.cleanup());

const LONG = 60_000;
/** Runs until stopped. */
const SLEEPER = ['sh', '-c', 'trap "exit 0" TERM; while :; do sleep 1; done'];

interface Health {
  Status: string;
  FailingStreak: number;
  Log: { Start: string; End: string; ExitCode: number; Output: string }[];
}

const ok = (args: string[]): string => env.ok(args);

/** inspect's State.Health (null when the container has none). */
function health(name: string): Health | null {
  return JSON.parse(ok(['inspect', '-f', '{{json .State.Health}}', name])) as Health | null;
}

function waitHealth(name: string, pred: (h: Health) => boolean, what: string): Health {
  let last: Health | null = null;
  try {
    waitFor(() => {
      last = health(name);
      return last !== null && pred(last);
    }, LONG, what);
  } catch (e) {
    throw new Error(`${(e as Error).message}; last State.Health: ${JSON.stringify(last)}`);
  }
  return last!;
}

function psStatus(name: string): string {
  return ok(['ps', '--filter', `name=^${name}$`, '--format', '{{.Status}}']).trim();
}

function psNames(filter: string): string[] {
  return ok(['ps', '-a', '--filter', filter, '--format', '{{.Names}}']).split('\n').filter(Boolean);
}

const events = (id: string) => env.eventActions(id);

/** Host pids whose command line is exactly `argv`. */
function pidsRunning(argv: string[]): number[] {
  const want = argv.join('\0');
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').replace(/\0$/, '') === want) out.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return out;
}

describe(`healthchecks run by the monitor, as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it('a check that passes makes the container healthy: inspect, ps status and filter, the event', () => {
    const id = ok(['run', '-d', '--name', 'hc-ok', '--health-cmd', 'echo fine', '--health-interval', '200ms', IMAGE, ...SLEEPER]).trim();
    const h = waitHealth('hc-ok', (x) => x.Status === 'healthy', 'hc-ok healthy');
    expect(h.FailingStreak).toBe(0);
    expect(h.Log.length).toBeGreaterThanOrEqual(1);
    expect(h.Log[0]).toMatchObject({ ExitCode: 0, Output: 'fine\n' });
    expect(Date.parse(h.Log[0]!.End)).toBeGreaterThanOrEqual(Date.parse(h.Log[0]!.Start));
    expect(psStatus('hc-ok')).toMatch(/^Up .* \(healthy\)$/);
    expect(psNames('health=healthy')).toContain('hc-ok');
    expect(psNames('health=unhealthy')).not.toContain('hc-ok');
    expect(psNames('health=none')).not.toContain('hc-ok');
    expect(events(id)).toContain('health_status: healthy');
    // The config as Docker shows it: CMD-SHELL, durations in nanoseconds.
    expect(JSON.parse(ok(['inspect', '-f', '{{json .Config.Healthcheck}}', 'hc-ok']))).toEqual({ Test: ['CMD-SHELL', 'echo fine'], Interval: 200_000_000 });
    // A stopped container's health is unhealthy, as Docker reports it once its monitor stopped.
    ok(['stop', '-t', '1', 'hc-ok']);
    expect(health('hc-ok')!.Status).toBe('unhealthy');
  });

  it('a check that fails makes it unhealthy after the retries: FailingStreak, the last five results', () => {
    const id = ok(['run', '-d', '--name', 'hc-bad', '--health-cmd', 'echo nope; exit 3', '--health-interval', '100ms', '--health-retries', '2', IMAGE, ...SLEEPER]).trim();
    const h = waitHealth('hc-bad', (x) => x.Status === 'unhealthy', 'hc-bad unhealthy');
    expect(h.FailingStreak).toBeGreaterThanOrEqual(2);
    for (const r of h.Log) expect(r).toMatchObject({ ExitCode: 3, Output: 'nope\n' });
    // Never healthy: no success, and one change of status only.
    expect(events(id).filter((a) => a.startsWith('health_status'))).toEqual(['health_status: unhealthy']);
    // The log keeps the last five results; the streak goes on.
    const later = waitHealth('hc-bad', (x) => x.FailingStreak >= 7, 'seven failures');
    expect(later.Log).toHaveLength(5);
    expect(later.Status).toBe('unhealthy');
    expect(psStatus('hc-bad')).toMatch(/^Up .* \(unhealthy\)$/);
    expect(psNames('health=unhealthy')).toEqual(['hc-bad']);
    // Docker restarts nothing for being unhealthy.
    expect(ok(['inspect', '-f', '{{.State.Status}} {{.RestartCount}}', 'hc-bad']).trim()).toBe('running 0');
  });

  it('failures in the start period do not count; a success ends it', () => {
    ok(['run', '-d', '--name', 'hc-sp', '--health-cmd', 'test -f /tmp/ready', '--health-interval', '100ms', '--health-retries', '1', '--health-start-period', '1h', IMAGE, ...SLEEPER]);
    const h = waitHealth('hc-sp', (x) => x.Log.length >= 3, 'three probes');
    expect(h.Status).toBe('starting');
    expect(h.FailingStreak).toBe(0);
    expect(h.Log.every((r) => r.ExitCode === 1)).toBe(true);
    expect(psStatus('hc-sp')).toMatch(/^Up .* \(health: starting\)$/);
    expect(psNames('health=starting')).toEqual(['hc-sp']);
    ok(['exec', 'hc-sp', 'touch', '/tmp/ready']);
    waitHealth('hc-sp', (x) => x.Status === 'healthy', 'hc-sp healthy');
    // The start period has ended: one failure (retries 1) is enough now.
    ok(['exec', 'hc-sp', 'rm', '/tmp/ready']);
    const u = waitHealth('hc-sp', (x) => x.Status === 'unhealthy', 'hc-sp unhealthy');
    expect(u.FailingStreak).toBeGreaterThanOrEqual(1);
    expect(u.Log.at(-1)!.ExitCode).toBe(1);
  });

  it('--health-start-interval probes during the start period although the interval is long', () => {
    ok(['run', '-d', '--name', 'hc-si', '--health-cmd', 'false', '--health-interval', '1h', '--health-start-period', '1h', '--health-start-interval', '100ms', IMAGE, ...SLEEPER]);
    const h = waitHealth('hc-si', (x) => x.Log.length >= 2, 'two probes at the start interval');
    expect(h.Status).toBe('starting');
  });

  it('a probe past its timeout is killed, with its children, and counts as a failure', () => {
    // A long interval: the only probe is the one `healthcheck run` asks for. `; true` makes the
    // shell fork sleep rather than exec it: the child must die too.
    ok(['run', '-d', '--name', 'hc-to', '--health-cmd', 'sleep 1234; true', '--health-timeout', '500ms', '--health-interval', '1h', '--health-retries', '1', IMAGE, ...SLEEPER]);
    expect(health('hc-to')).toEqual({ Status: 'starting', FailingStreak: 0, Log: [] });
    expect(psStatus('hc-to')).toMatch(/\(health: starting\)$/);
    const r = env.b(['healthcheck', 'run', 'hc-to']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).toBe('unhealthy\n');
    const h = health('hc-to')!;
    expect(h.Status).toBe('unhealthy');
    expect(h.Log).toHaveLength(1);
    expect(h.Log[0]).toMatchObject({ ExitCode: -1, Output: 'Health check exceeded timeout (500ms)' });
    waitFor(() => pidsRunning(['sleep', '1234']).length === 0, LONG, 'the probe and its child to be gone');
  });

  it('healthcheck run: 0 when it passes, unhealthy and 1 when it fails, 125 without a healthcheck or when not running', () => {
    ok(['run', '-d', '--name', 'hc-run', '--health-cmd', 'test ! -f /tmp/bad', '--health-interval', '1h', IMAGE, ...SLEEPER]);
    let r = env.b(['healthcheck', 'run', 'hc-run']);
    // As podman 4.3: silent when it passes, `unhealthy` and 1 when it fails.
    expect([r.code, r.stdout]).toEqual([0, '']);
    // Recorded as any probe.
    expect(health('hc-run')).toMatchObject({ Status: 'healthy', FailingStreak: 0 });
    ok(['exec', 'hc-run', 'touch', '/tmp/bad']);
    r = env.b(['healthcheck', 'run', 'hc-run']);
    expect([r.code, r.stdout]).toEqual([1, 'unhealthy\n']);
    expect(health('hc-run')).toMatchObject({ Status: 'healthy', FailingStreak: 1 });
    ok(['run', '-d', '--name', 'hc-none', IMAGE, ...SLEEPER]);
    r = env.b(['healthcheck', 'run', 'hc-none']);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/container hc-none has no defined healthcheck/);
    expect(health('hc-none')).toBeNull();
    expect(psNames('health=none')).toContain('hc-none');
    ok(['stop', '-t', '1', 'hc-run']);
    r = env.b(['healthcheck', 'run', 'hc-run']);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/container hc-run is not running/);
  });

  it("an image's HEALTHCHECK runs; flags merge over it; --no-healthcheck disables it", () => {
    const layout = path.join(env.work, 'hc-layout');
    buildBusyboxImage(layout, { tag: 'hc', config: { Cmd: SLEEPER, Healthcheck: { Test: ['CMD-SHELL', 'echo from-image'], Interval: 100_000_000, Retries: 4 } } });
    const archive = path.join(env.work, 'hc.oci.tar');
    const t = spawnSync('tar', ['-cf', archive, '-C', layout, '.']);
    expect(t.status, String(t.stderr)).toBe(0);
    const loaded = ok(['load', '-i', archive]);
    const img = /sha256:([0-9a-f]{64})/.exec(loaded)?.[1]?.slice(0, 12);
    expect(img, loaded).toBeDefined();
    const imgHc = JSON.parse(ok(['image', 'inspect', '-f', '{{json .Config.Healthcheck}}', img!])) as unknown;
    expect(imgHc).toMatchObject({ Test: ['CMD-SHELL', 'echo from-image'] });

    ok(['run', '-d', '--name', 'hc-img', img!]);
    const h = waitHealth('hc-img', (x) => x.Status === 'healthy', 'the image healthcheck');
    expect(h.Log[0]!.Output).toBe('from-image\n');

    ok(['create', '--name', 'hc-merge', '--health-retries', '7', img!]);
    expect(JSON.parse(ok(['inspect', '-f', '{{json .Config.Healthcheck}}', 'hc-merge']))).toEqual({ Test: ['CMD-SHELL', 'echo from-image'], Interval: 100_000_000, Retries: 7 });

    ok(['run', '-d', '--name', 'hc-off', '--no-healthcheck', img!]);
    // Docker merges the image's durations under a NONE test too.
    expect(JSON.parse(ok(['inspect', '-f', '{{json .Config.Healthcheck}}', 'hc-off']))).toEqual({ Test: ['NONE'], Interval: 100_000_000, Retries: 4 });
    expect(health('hc-off')).toBeNull();
    expect(psStatus('hc-off')).toMatch(/^Up [^(]*$/);
    expect(psNames('health=none')).toContain('hc-off');
    expect(fs.existsSync(path.join(env.store, 'containers', ok(['inspect', '-f', '{{.Id}}', 'hc-off']).trim(), 'health.json'))).toBe(false);
  });

  it('a foreground run with a healthcheck is probed too (its monitor holds it)', () => {
    // The container ends once a probe has run in it: no clock involved.
    const r = env.b(['run', '--rm', '--health-cmd', 'touch /tmp/probed', '--health-interval', '100ms', IMAGE, 'sh', '-c', 'while [ ! -f /tmp/probed ]; do sleep 0.1; done; echo probed; exit 5'], { timeout: LONG });
    expect([r.code, r.stdout], r.stderr).toEqual([5, 'probed\n']);
    waitFor(() => ok(['ps', '-aq']).trim() === '', LONG, 'the --rm container to be removed');
  });

  it('flags are checked as the docker CLI checks them', () => {
    let r = env.b(['create', '--no-healthcheck', '--health-cmd', 'true', IMAGE]);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/--no-healthcheck conflicts with --health-\* options/);
    r = env.b(['create', '--health-interval', '-1s', '--health-cmd', 'true', IMAGE]);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/--health-interval cannot be negative/);
    r = env.b(['create', '--health-timeout', '10', '--health-cmd', 'true', IMAGE]);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/invalid --health-timeout 10/);
  });
});
