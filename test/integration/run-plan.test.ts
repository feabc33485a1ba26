/**
 * Run plans end to end (docs/hpc-images.md, "Run plans"): the plan the Node CLI writes on a
 * `burrow run --rm ... FILE.sqfs CMD` (ts/container/run-plan.ts) is the one the native launcher
 * (target/release/burrow, crates/burrow-runtime/src/launcher) uses on the next identical run, and
 * a run from the plan is the run Node would have made: the same output and exit status (0, 3,
 * 127), the same events, nothing left; `--hpc` passes the host's variables of this run, not the
 * plan's; a changed image is a miss that Node serves and that writes a fresh plan.
 * Runs as root and as the unprivileged test user.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IS_ROOT, ROOT, type Run } from './helpers';
import { setup, sleep, type Env } from './lifecycle.helpers';
import { makeRootfs } from '../harness/bundle.mjs';

const LAUNCHER = path.join(ROOT, 'target', 'release', 'burrow');
const T = { timeout: 180_000 };
let env: Env;
let image: string;
let xdg: string;

/** `burrow ARGS` through the launcher, the store and run root from variables (a plan serves no global flag). */
function burrow(args: string[], extra: Record<string, string> = {}): Run {
  const vars: Record<string, string> = { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/', XDG_RUNTIME_DIR: xdg, BURROW_ROOT: env.store, BURROW_RUNROOT: env.runroot, BURROW_DEBUG: '1', ...extra };
  const r = spawnSync(LAUNCHER, args, { encoding: 'utf8', env: vars, cwd: env.work, timeout: 60_000, input: '' });
  if (r.error) throw r.error;
  return { code: r.status ?? 128 + 9, stdout: r.stdout, stderr: r.stderr };
}

/** The plan lines (the launcher's `used`/`miss`, the CLI's `written`/`not written`) taken out of stderr. */
function split(r: Run): { plan: string[]; rest: Run } {
  const lines = r.stderr.split('\n');
  const plan = lines.filter((l) => l.startsWith('burrow: debug: run plan: '));
  const other = lines.filter((l) => !l.startsWith('burrow: debug: '));
  return { plan, rest: { ...r, stderr: other.join('\n') } };
}

/** The ids of the containers of the events written since `from` bytes into the log. */
function idsSince(from: number): string[] {
  const text = fs.readFileSync(path.join(env.runroot, 'events.jsonl'), 'utf8').slice(from);
  const ids = text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { Type: string; Action: string; Actor: { ID: string } })
    .filter((e) => e.Type === 'container' && e.Action === 'create')
    .map((e) => e.Actor.ID);
  return ids;
}

const logSize = () => fs.statSync(path.join(env.runroot, 'events.jsonl')).size;

/**
 * What a run leaves: containers (their directories, names), the runtime's state; not the
 * runtime's `@userns` (the user's shared user namespaces' keepers: userns-share.test.ts).
 */
function leftovers(): string[] {
  const containers = path.join(env.store, 'containers');
  const names = path.join(containers, '.names');
  const state = path.join(env.runroot, 'runtime');
  const list = (d: string) => (fs.existsSync(d) ? fs.readdirSync(d).map((n) => path.join(d, n)) : []);
  return [...list(containers).filter((p) => p !== names), ...list(names), ...list(state).filter((p) => path.basename(p) !== '@userns')];
}

beforeAll(async () => {
  env = setup('runplan-e2e');
  xdg = path.join(env.work, 'xdg');
  fs.mkdirSync(xdg, { mode: 0o700 });
  const src = path.join(env.work, 'src');
  makeRootfs(src);
  image = path.join(env.work, 'job.sqfs');
  const m = spawnSync('mksquashfs', [path.join(src, 'rootfs'), image, '-quiet', '-noappend', '-all-root', '-processors', '1'], { encoding: 'utf8' });
  if (m.status !== 0) throw new Error(`mksquashfs: ${m.stderr}`);
  // The store's settings are written by its first use; plans are made from files 2 s old.
  const warm = burrow(['run', '--rm', '--network', 'none', image, 'true'], { BURROW_NO_PLAN: '1' });
  if (warm.code !== 0) throw new Error(`first run: ${warm.stderr}`);
  await sleep(2100);
}, 120_000);
afterAll(() => env?.dispose());

describe(`run plans end to end, as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it("the plan Node writes is the launcher's on the next run: the same output, status and events, nothing left", T, () => {
    const opts = ['run', '--rm', '--network', 'none', image];
    const first = split(burrow([...opts, 'true']));
    expect(first.rest.code, first.rest.stderr).toBe(0);
    expect(first.plan).toEqual([expect.stringMatching(/^burrow: debug: run plan: miss: /), expect.stringMatching(/^burrow: debug: run plan: written /)]);
    for (const cmd of [
      ['sh', '-c', 'echo out "$0"; echo err >&2; exit 3', 'a b'],
      ['sh', '-c', 'cat /etc/hostname | wc -c; test "$(hostname)" = "$(cat /etc/hostname)"'],
      ['no-such-program'],
    ]) {
      const node = split(burrow([...opts, ...cmd], { BURROW_NO_PLAN: '1' }));
      const from = logSize();
      const planned = split(burrow([...opts, ...cmd]));
      expect(planned.plan).toEqual([expect.stringMatching(/^burrow: debug: run plan: used [0-9a-f]{64}$/)]);
      expect(planned.rest, cmd.join(' ')).toEqual(node.rest);
      const [id] = idsSince(from);
      expect(id).toMatch(/^[0-9a-f]{64}$/);
      const [nodeId] = idsSince(0).slice(-2, -1);
      // Docker's events of a run --rm, from the launcher as from Node (the holder logs start and die).
      expect(env.eventActions(id!)).toEqual(env.eventActions(nodeId!));
      expect(env.eventActions(id!)).toContain('destroy');
      expect(leftovers()).toEqual([]);
    }
    expect(split(burrow([...opts, 'sh', '-c', 'exit 0'])).rest.code).toBe(0);
  });

  it('another umask is a miss: the container files a plan makes have the modes its own mask gave', T, () => {
    const opts = ['run', '--rm', '--network', 'none', image, 'sh', '-c', 'echo masked'];
    expect(split(burrow(opts)).plan).toContainEqual(expect.stringMatching(/run plan: (written|used) /));
    expect(split(burrow(opts)).plan).toEqual([expect.stringMatching(/run plan: used /)]);
    // The same run under umask 077, through sh: a miss that Node serves.
    const vars: Record<string, string> = { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/', XDG_RUNTIME_DIR: xdg, BURROW_ROOT: env.store, BURROW_RUNROOT: env.runroot, BURROW_DEBUG: '1' };
    const r = spawnSync('sh', ['-c', 'umask 077; exec "$@"', 'sh', LAUNCHER, ...opts], { encoding: 'utf8', env: vars, cwd: env.work, timeout: 60_000, input: '' });
    const masked = split({ code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr });
    expect(masked.plan[0]).toBe('burrow: debug: run plan: miss: another umask (077)');
    expect(masked.rest).toEqual({ code: 0, stdout: 'masked\n', stderr: '' });
    expect(leftovers()).toEqual([]);
  });

  it("--hpc: the container gets this run's host variables, not those of the run that wrote the plan", T, () => {
    const opts = ['run', '--rm', '--hpc', image, 'sh', '-c', 'echo "$PLAN_PROBE"'];
    const first = split(burrow(opts, { PLAN_PROBE: 'one' }));
    expect(first.rest).toEqual({ code: 0, stdout: 'one\n', stderr: '' });
    expect(first.plan).toContainEqual(expect.stringMatching(/^burrow: debug: run plan: written /));
    const second = split(burrow(opts, { PLAN_PROBE: 'two' }));
    expect(second.plan).toEqual([expect.stringMatching(/^burrow: debug: run plan: used /)]);
    expect(second.rest).toEqual({ code: 0, stdout: 'two\n', stderr: '' });
    expect(leftovers()).toEqual([]);
  });

  it('a changed image is a miss that Node serves, and a later run writes a fresh plan that is used', T, async () => {
    const job = path.join(env.work, 'changing.sqfs');
    fs.copyFileSync(image, job);
    await sleep(2100);
    const opts = ['run', '--rm', '--network', 'none', job, 'sh', '-c', 'echo ok'];
    expect(split(burrow(opts)).plan).toContainEqual(expect.stringMatching(/run plan: written /));
    expect(split(burrow(opts)).plan).toEqual([expect.stringMatching(/run plan: used /)]);
    // Rewritten in place: same path, same inode, same size.
    fs.writeFileSync(job, fs.readFileSync(image));
    const stale = split(burrow(opts));
    expect(stale.rest).toEqual({ code: 0, stdout: 'ok\n', stderr: '' });
    expect(stale.plan[0]).toMatch(new RegExp(`^burrow: debug: run plan: miss: .*${path.basename(job)}`));
    await sleep(2100);
    expect(split(burrow(opts)).plan).toContainEqual(expect.stringMatching(/run plan: written /));
    const again = split(burrow(opts));
    expect(again.plan).toEqual([expect.stringMatching(/run plan: used /)]);
    expect(again.rest).toEqual({ code: 0, stdout: 'ok\n', stderr: '' });
    expect(leftovers()).toEqual([]);
  });
});
