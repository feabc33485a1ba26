/**
 * The end of a `--userns keep-id` / `--hpc` container's `--rm` (issue 18): its writable layer
 * holds files of the container's root and of other ids (subordinate ids, rootless), which the
 * CLI cannot delete itself. The foreground runtime deletes them from inside the container's user
 * namespace, which it still holds when the container has exited, so that no `burrow-runtime
 * unpack` remove job (another newuidmap/newgidmap) is spawned; and nothing is left in the store.
 * As root and as the unprivileged test user.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, ROOT } from './helpers';
import { setup, type Env } from './lifecycle.helpers';

let env: Env;
const IMG = 'keepid-rm';
const T = { timeout: 120_000 };

beforeAll(() => {
  env = setup('keepid-rm');
  const imp = env.b(['import', path.join(env.work, 'busybox.tar.gz'), IMG, '-c', 'CMD ["sh"]']);
  if (imp.code !== 0) throw new Error(`import: ${imp.stderr}`);
});
afterAll(() => env?.dispose());

/**
 * The CLI with BURROW_RUNTIME a wrapper that logs the arguments of every runtime command it
 * starts (strace cannot watch it: a traced newuidmap loses its setuid bit, so the rootless
 * start itself fails): its status and those argument lists.
 */
function traced(args: string[]): { code: number; stderr: string; execs: string[] } {
  const real = path.join(ROOT, 'target', 'release', 'burrow-runtime');
  const tag = `${process.pid}-${Math.random().toString(36).slice(2)}`;
  const log = path.join(env.work, `runtime-${tag}.log`);
  const wrapper = path.join(env.work, `runtime-${tag}.sh`);
  fs.writeFileSync(wrapper, `#!/bin/sh\nprintf '%s\\n' "$*" >> '${log}'\nexec '${real}' "$@"\n`, { mode: 0o755 });
  const r = spawnSync(process.execPath, [BIN, '--root', env.store, '--runroot', env.runroot, ...args], {
    encoding: 'utf8',
    cwd: env.work,
    env: { ...process.env, TMPDIR: env.work, BURROW_RUNTIME: wrapper, BURROW_MONITOR: path.join(path.dirname(real), 'burrow-monitor') },
    timeout: 90_000,
  });
  if (r.error) throw r.error;
  const execs = fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').filter(Boolean) : [];
  fs.rmSync(log, { force: true });
  fs.rmSync(wrapper, { force: true });
  return { code: r.status ?? 137, stderr: r.stderr, execs };
}

/** What is left of containers in the store (names, records, writable layers). */
function leftovers(): string[] {
  const dir = path.join(env.store, 'containers');
  const out: string[] = [];
  let names: string[] = [];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return out;
  }
  for (const n of names) {
    if (n === '.names') out.push(...fs.readdirSync(path.join(dir, n)).map((x) => `.names/${x}`));
    else out.push(n);
  }
  return out;
}

// Files of the container's root (copied-up /etc, a new directory), of another id (a directory
// only its owner may enter, with a file inside), and a directory nobody may enter.
const WRITE = 'echo x > /etc/written && mkdir -p /opt/other && echo y > /opt/other/f && chown -R 4321:4321 /opt/other && chmod 700 /opt/other && mkdir /var/w && chmod 000 /var/w; echo z > /tmp/root-owned';

describe('run --rm under keep-id leaves nothing and needs no remove job', () => {
  for (const [what, flags] of [
    ['--userns keep-id', ['--userns', 'keep-id', '--user', '0']],
    ['--hpc', ['--hpc', '--user', '0']],
  ] as const) {
    it(`${what}: files of the container's root and of other ids, removed by the runtime`, T, () => {
      const r = traced(['run', '--rm', ...flags, IMG, 'sh', '-c', WRITE]);
      expect(r.code, r.stderr).toBe(0);
      expect(leftovers()).toEqual([]);
      // No `burrow-runtime unpack` (the store's user namespace, newuidmap/newgidmap again).
      const jobs = r.execs.filter((l) => /(^| )unpack( |$)/.test(l));
      expect(jobs).toEqual([]);
      // The container ran (the runtime was started), so the trace saw its programs.
      expect(r.execs.some((l) => /(^| )run( |$)/.test(l))).toBe(true);
    });
  }

  it('--hpc as the caller (nothing written: the overlay\'s work directory only)', T, () => {
    const r = traced(['run', '--rm', '--hpc', IMG, 'true']);
    expect(r.code, r.stderr).toBe(0);
    expect(leftovers()).toEqual([]);
    expect(r.execs.filter((l) => /(^| )unpack( |$)/.test(l))).toEqual([]);
  });

  it('without --rm, the files are there until `rm`, which removes them all', T, () => {
    const c = env.b(['create', '--userns', 'keep-id', '--user', '0', IMG, 'sh', '-c', WRITE]);
    expect(c.code, c.stderr).toBe(0);
    const id = c.stdout.trim();
    expect(env.b(['start', '-a', id]).code).toBe(0);
    const r = env.b(['rm', id]);
    expect(r.code, r.stderr).toBe(0);
    expect(leftovers()).toEqual([]);
  });
});
