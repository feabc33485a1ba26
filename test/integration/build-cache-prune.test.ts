/**
 * The build cache gives its disk space back: `system df` shows what only the cache keeps (a
 * RUN layer whose image was removed), `builder prune` removes the cached steps and those layers
 * and says how much it freed, and the next build runs its steps again. `-a` also removes the RUN
 * cache mounts. As root and as the unprivileged test user.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { IMAGE, setup, type Env } from './lifecycle.helpers';
import { disposeStore } from './image-helpers';

let env: Env;
beforeAll(() => {
  env = setup('bprune');
});
afterEach(() => env.cleanup());
afterAll(() => disposeStore(env));

const T = { timeout: 180_000 };
const ok = (args: string[]) => {
  const r = env.b(args, { timeout: 170_000 });
  expect(r.code, `burrow ${args.join(' ')}:\n${r.stderr}`).toBe(0);
  return r;
};
const dfRow = (type: string) => {
  const rows = ok(['system', 'df', '--format', '{{.Type}}|{{.TotalCount}}|{{.Size}}']).stdout.trim().split('\n');
  const row = rows.find((r) => r.startsWith(`${type}|`));
  expect(row, rows.join('\n')).toBeDefined();
  const [, total, size] = row!.split('|');
  return { total: Number(total), size: size! };
};
const layerDirs = () => fs.readdirSync(path.join(env.store, 'layers')).filter((n) => /^[a-f0-9]{64}$/.test(n)).length;

describe('builder prune', () => {
  it('removes the cached steps and the layers only they kept, and reports the bytes', T, () => {
    const dir = path.join(env.work, 'ctx');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'Dockerfile'), `FROM ${IMAGE}\nRUN head -c 3000000 /dev/urandom > /big\nRUN --mount=type=cache,target=/cache echo kept > /cache/f\n`);
    ok(['build', '--progress', 'plain', '-t', 'bp-img', dir]);
    expect(dfRow('Build Cache').total).toBeGreaterThan(0);
    ok(['rmi', 'bp-img']);
    ok(['image', 'prune', '-f']);
    // The image is gone, but the cache keeps its RUN layers: the cache's own bytes now.
    const before = dfRow('Build Cache');
    expect(before.size).toMatch(/MB$/);
    const layersBefore = layerDirs();

    const r = ok(['builder', 'prune', '-f']);
    expect(r.stdout).toMatch(/Deleted build cache objects: [1-9]/);
    const m = /Total reclaimed space: ([\d.]+)(kB|MB|GB)/.exec(r.stdout);
    expect(m, r.stdout).not.toBeNull();
    expect(m![2]).not.toBe('kB');
    expect(layerDirs()).toBeLessThan(layersBefore);
    expect(dfRow('Build Cache').total).toBe(0);

    // Nothing is cached any more: the steps run again.
    const again = ok(['build', '--progress', 'plain', '-t', 'bp-img', dir]);
    expect(again.stderr).not.toContain('--> Using cache');
    // The cache mount survived a plain prune; -a removes it too.
    const all = ok(['builder', 'prune', '-a', '-f']);
    expect(all.stdout).toMatch(/cache mount/);
  });

  it('refuses without -f when it cannot ask, and a filter it does not know', T, () => {
    const r = env.b(['builder', 'prune'], { input: '' });
    expect(r.code).toBe(125);
    const f = env.b(['builder', 'prune', '-f', '--filter', 'label=x']);
    expect(f.code).toBe(125);
    expect(f.stderr).toMatch(/builder prune takes until=/);
  });
});
