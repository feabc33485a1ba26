/** Basic CLI behaviour: version, usage errors with Docker's exit status. */
import { describe, expect, it } from 'vitest';
import { burrow } from './helpers';
import pkg from '../../package.json';

describe('burrow CLI', () => {
  it('prints its version', () => {
    for (const args of [['--version'], ['-v'], ['version']]) {
      const r = burrow(args);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(`burrow version ${pkg.version}\n`);
    }
  });

  it('an unknown command is a usage error: exit 125 and a suggestion', () => {
    const r = burrow(['infp']);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/unknown command 'infp'/);
    expect(r.stderr).toMatch(/Did you mean info\?/);
  });

  it('an invalid --format is refused with 125', () => {
    const r = burrow(['info', '--format', 'yaml']);
    expect(r.code).toBe(125);
    expect(r.stderr).toMatch(/Allowed choices are text, json/);
  });
});
