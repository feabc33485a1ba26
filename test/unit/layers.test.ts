/**
 * One engine, two front ends (docs/architecture.md): ts/engine is under both ts/cli and ts/api,
 * so it imports neither of them (a shared helper lives outside both, as ts/format/age.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const TS = path.join(__dirname, '..', '..', 'ts');

function files(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []));
}

/** Every module a file imports (static, dynamic and require), resolved to a path under ts/. */
function imports(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8');
  const specs = [...text.matchAll(/(?:from\s+|import\(\s*|require\(\s*)'(\.[^']*)'/g)].map((m) => m[1]!);
  return specs.map((s) => path.relative(TS, path.resolve(path.dirname(file), s)));
}

describe('layers', () => {
  it('ts/engine imports nothing from ts/cli or ts/api', () => {
    const bad = files(path.join(TS, 'engine')).flatMap((f) => imports(f).filter((i) => /^(cli|api)(\/|$)/.test(i)).map((i) => `${path.relative(TS, f)} -> ${i}`));
    expect(bad).toEqual([]);
  });
});
