import { describe, expect, it } from 'vitest';
import { buildProgram, commandWord } from '../../ts/cli/main';

describe('the command word and the lean program', () => {
  it('skips global options and their values', () => {
    expect(commandWord(['--root', '/s', '--runroot', '/r', 'run', '--rm', 'img'])).toBe('run');
    expect(commandWord(['--storage-driver', 'copy', 'ps'])).toBe('ps');
    expect(commandWord(['--version'])).toBeUndefined();
    expect(commandWord([])).toBeUndefined();
  });

  it('the lean program has every top-level command but not the container group', () => {
    const names = (full: boolean) => buildProgram(() => undefined, full).commands.map((c) => c.name());
    const full = names(true);
    const lean = names(false);
    expect(full).toContain('container');
    expect(lean).not.toContain('container');
    expect(full.filter((n) => n !== 'container')).toEqual(lean);
  });

  it("builds run's and create's flags only for the command that runs, and always in the full program", () => {
    const flags = (full: boolean, only: string | undefined, name: string) =>
      buildProgram(() => undefined, full, only)
        .commands.find((c) => c.name() === name)!
        .options.map((o) => o.long);
    // `images` and `ps` do not pay for building sixty flags they never parse.
    expect(flags(false, 'images', 'run')).toEqual([]);
    expect(flags(false, 'ps', 'create')).toEqual([]);
    expect(flags(false, 'run', 'run')).toContain('--rm');
    expect(flags(false, 'create', 'create')).toContain('--name');
    expect(flags(true, undefined, 'run')).toContain('--rm');
    expect(flags(true, undefined, 'create')).toEqual(flags(false, 'create', 'create'));
  });
});
