/**
 * Many at once (issue 18): 64 containers started at the same moment from one image on one node,
 * as a Slurm job array's tasks would start them (`burrow run --rm IMAGE ...` 64 times, each its
 * own CLI process), all complete with their own output and exit status and leave nothing behind:
 * no container in `ps -a`, no process (env.cleanup), no mount of theirs. With `--network none`
 * and with `--hpc` (the host's network), where no network owner is involved: what they share is
 * the store (its locks, the image's layers) and the runroot. As root and as the unprivileged
 * test user. No timing is asserted; bench/many.bench.mjs measures the time and the memory.
 */
import fs from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { IMAGE, setup, type Env } from './lifecycle.helpers';

let env: Env;
const N = 64;
const T = { timeout: 600_000 };

beforeAll(() => {
  env = setup('many');
});
afterEach(() => env.cleanup(), 120_000);
afterAll(() => env?.dispose(), 120_000);

/** Starts N `burrow run --rm` at once and returns their results in order. */
async function many(flags: string[]) {
  return Promise.all(
    Array.from({ length: N }, (_, i) => env.bg(['run', '--rm', ...flags, '-e', `TASK=${i}`, IMAGE, 'sh', '-c', 'echo task=$TASK; exit $((TASK % 7))'])),
  );
}

function expectAll(runs: Awaited<ReturnType<typeof many>>) {
  const failed = runs.map((r, i) => ({ i, ...r })).filter((r) => r.code !== r.i % 7 || r.stdout !== `task=${r.i}\n`);
  // Every failure with its own error, not only the first.
  expect(failed.map((r) => `#${r.i}: exit ${r.code}, stdout ${JSON.stringify(r.stdout)}, stderr ${r.stderr.trim()}`)).toEqual([]);
  const left = env.b(['ps', '-aq']);
  expect(left.code, left.stderr).toBe(0);
  expect(left.stdout.trim()).toBe('');
  // Nothing of theirs is still mounted (a rootfs left mounted would be under the store or runroot).
  const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(env.store) || l.includes(env.runroot));
  expect(mounts).toEqual([]);
}

describe('64 containers at once from one image', () => {
  it('with --network none: each prints its own output and exits with its own status', T, async () => {
    expectAll(await many(['--network', 'none']));
  });

  it('with --hpc (the host network, no network owner): the same', T, async () => {
    expectAll(await many(['--hpc']));
  });
});
