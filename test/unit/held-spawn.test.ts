/**
 * The foreground run's start of the runtime (ts/runtime/client.ts runtimeSpawnHeld) through the
 * napi addon's posix_spawn, with a stand-in runtime (BURROW_RUNTIME: a shell script): its
 * reports in order, then its exit; BURROW_RUNTIME_CLI=1 and the caller's environment; stdin
 * /dev/null unless inherited; signals passed on, never after its end; a program that cannot be
 * started throws.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { native } from '../../ts/native';
import { runtimeSpawnHeld, type HeldRuntime, type RuntimeReport } from '../../ts/runtime/client';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-unit-held-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const saved = process.env.BURROW_RUNTIME;
afterEach(() => {
  if (saved === undefined) delete process.env.BURROW_RUNTIME;
  else process.env.BURROW_RUNTIME = saved;
});

/** A stand-in runtime: `body` as a shell script. */
function fake(body: string): void {
  const file = path.join(dir, `rt-${Math.random().toString(36).slice(2)}`);
  fs.writeFileSync(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  process.env.BURROW_RUNTIME = file;
}

interface Seen {
  reports: RuntimeReport[];
  exit: { code: number | null; signal: string | null };
  /** The reports that had arrived when the exit did. */
  before: number;
}

function hold(inheritStdin = false, onStart?: (h: HeldRuntime) => void): Promise<Seen> {
  return new Promise((resolve) => {
    const reports: RuntimeReport[] = [];
    const h = runtimeSpawnHeld(['--status-fd', '3', 'run', 'x'], {
      inheritStdin,
      onReport: (r) => reports.push(r),
      onExit: (code, signal) => resolve({ reports, exit: { code, signal }, before: reports.length }),
    });
    onStart?.(h);
  });
}

describe('runtimeSpawnHeld through the addon', () => {
  it('the addon has spawnHeld (else the run falls back to child_process)', () => {
    expect(typeof native().spawnHeld).toBe('function');
  });

  it('reports every line of fd 3 in order before the exit; its arguments, BURROW_RUNTIME_CLI=1 and our environment', async () => {
    process.env.X_HELD_TEST = 'ours';
    fake(`echo '{"pid": 12}' >&3; echo "{\\"error\\": \\"$BURROW_RUNTIME_CLI $X_HELD_TEST $*\\", \\"code\\": \\"EX\\"}" >&3; printf '{"exit": 3}' >&3; echo >&3; exit 9`);
    const seen = await hold();
    delete process.env.X_HELD_TEST;
    expect(seen.reports).toEqual([
      { kind: 'pid', pid: 12 },
      { kind: 'error', error: '1 ours --status-fd 3 run x', code: 'EX' },
      { kind: 'exit', exit: 3 },
    ]);
    expect(seen.before).toBe(3);
    expect(seen.exit).toEqual({ code: 9, signal: null });
  });

  it('stdin is /dev/null unless inherited; stdout and stderr are ours', async () => {
    const out = path.join(dir, 'stdin.txt');
    fake(`readlink /proc/self/fd/0 > ${out}; [ -e /proc/self/fd/1 ] && [ -e /proc/self/fd/2 ] && exit 0; exit 1`);
    expect((await hold(false)).exit).toEqual({ code: 0, signal: null });
    expect(fs.readFileSync(out, 'utf8').trim()).toBe('/dev/null');
    fake(`readlink /proc/self/fd/0 > ${out}`);
    await hold(true);
    expect(fs.readFileSync(out, 'utf8').trim()).toBe(fs.readlinkSync('/proc/self/fd/0'));
  });

  it('passes signals on (with default dispositions: Node ignores SIGPIPE), and none after the end', async () => {
    fake(`echo '{"pid": 1}' >&3; while :; do sleep 0.05; done`);
    let held: HeldRuntime | undefined;
    const seen = await hold(false, (h) => {
      held = h;
      setTimeout(() => h.kill('SIGPIPE'), 50);
    });
    expect(seen.exit).toEqual({ code: null, signal: 'SIGPIPE' });
    expect(() => held!.kill('SIGTERM')).not.toThrow();
  });

  it('a program that cannot be started throws', () => {
    process.env.BURROW_RUNTIME = path.join(dir, 'no-such-runtime');
    expect(() => runtimeSpawnHeld([], { inheritStdin: false, onReport: () => undefined, onExit: () => undefined })).toThrow(/no-such-runtime/);
  });
});
