/**
 * The project is self-contained: README.md and docs/ link only to files inside the repository
 * (a clone has no ../shared/, and users cannot follow links to the team's material), and the
 * README's two newcomer commands need nothing that only some hosts have (no bare `sudo`: as root
 * there is none on a fresh Debian machine; .ci/setup and test/run.mjs ask for it themselves).
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(__dirname, '..', '..');
const docs = [
  'README.md',
  ...fs.readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => path.join('docs', f)),
  'bench/RESULTS.md',
  'test/conformance/README.md',
];

/** Markdown link targets: [text](target), without an #anchor. */
function links(text: string): string[] {
  return [...text.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!);
}

describe('documentation', () => {
  it.each(docs)('%s links only to files inside the repository', (doc) => {
    const text = fs.readFileSync(path.join(ROOT, doc), 'utf8');
    for (const target of links(text)) {
      expect(target, `${doc} links outside the repository`).not.toMatch(/^[a-z]+:/i);
      const file = path.resolve(path.dirname(path.join(ROOT, doc)), target.split('#')[0]!);
      expect(file.startsWith(ROOT + path.sep), `${doc}: ${target} leaves the repository`).toBe(true);
      expect(fs.existsSync(file), `${doc}: ${target} does not exist`).toBe(true);
    }
    expect(text, `${doc} names the team's shared folder`).not.toMatch(/\.\.\/shared\//);
  });

  it("the README's two commands use no bare sudo and are the ones CI runs", () => {
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const block = /```sh\n([\s\S]*?)```/.exec(readme)![1]!;
    const commands = block.split('\n').filter((l) => l.trim() && !l.trim().startsWith('#'));
    expect(commands).toEqual(['bash .ci/setup && npm ci && ./examples/hello.sh', 'npm test']);
    const ci = fs.readFileSync(path.join(ROOT, '.ci', 'run'), 'utf8');
    expect(ci).toMatch(/^bash \.ci\/setup$/m);
    expect(ci).toMatch(/^npm test$/m);
  });
});
