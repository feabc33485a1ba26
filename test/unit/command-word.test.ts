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
});
