import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { LEAN_COMMANDS, buildProgram, commandWord } from '../../ts/cli/main';

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

  it('builds only the command that runs, exactly as the full program has it', () => {
    // What commander reads to parse a command line, print help and suggest a spelling.
    const shape = (c: Command): unknown => ({
      name: c.name(),
      aliases: c.aliases(),
      description: c.description(),
      usage: c.usage(),
      args: c.registeredArguments.map((a) => [a.name(), a.required, a.variadic, a.description]),
      options: c.options.map((o) => [o.flags, o.description, o.defaultValue, o.argChoices, o.mandatory, o.hidden]),
      commands: c.commands.map(shape),
      help: c.helpInformation(),
    });
    const full = buildProgram(() => undefined, true);
    for (const word of LEAN_COMMANDS) {
      const lean = buildProgram(() => undefined, false, word);
      // `images` and `ps` do not pay for building sixty other commands, nor run's sixty flags.
      expect(lean.commands.map((c) => c.name())).toEqual([word]);
      expect(shape(lean.commands[0]!), word).toEqual(shape(full.commands.find((c) => c.name() === word)!));
      expect(lean.options.map((o) => o.flags)).toEqual(full.options.map((o) => o.flags));
    }
    const flags = (only: string) => buildProgram(() => undefined, false, only).commands[0]!.options.map((o) => o.long);
    expect(flags('run')).toContain('--rm');
    expect(flags('create')).toContain('--name');
  });
});
