/**
 * The command line: flags and output only. Each command's action imports its module lazily so
 * that `burrow --version` and other light commands do not pay for code they never run.
 */
import { Command, CommanderError, Option } from 'commander';
import { BurrowError, EXIT, toBurrowError } from '../errors';
import type { GlobalOptions } from '../host/paths';
import { VERSION } from '../version';
import { registerContainerCommands } from './commands/containers';
import { registerImageCommands } from './commands/images';
import { registerResourceCommands } from './commands/resources';
import { registerDiskCommands } from './commands/system';
import { registerVolumeCommands } from './commands/volume';

function globals(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals<GlobalOptions>();
}

/** Global options that take a value: their value is not the command. */
const GLOBAL_WITH_VALUE = new Set(['--root', '--runroot', '--storage-driver']);

/** The command word of an argument list (`burrow --root X run ...` → run), if any. */
export function commandWord(argv: string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('-')) return a;
    if (GLOBAL_WITH_VALUE.has(a)) i++;
  }
  return undefined;
}

/**
 * `full` false leaves out the `container` group (`burrow container run ...`), which repeats
 * every container command with its flags: building those costs a hot `burrow run` several
 * milliseconds. It is built whenever the command is `container`, help or completion, or unknown.
 * `only` (with `full` false): the command word, whose flags alone are needed (containers.ts).
 */
export function buildProgram(setExit: (code: number) => void, full = true, only?: string): Command {
  const program = new Command('burrow')
    .description('Run OCI and Docker images as an ordinary user: no root, no sudo, no daemon.')
    .version(`burrow version ${VERSION}`, '-v, --version', 'print the version')
    .option('--root <dir>', 'store root (images, layers, containers); env BURROW_ROOT')
    .option('--runroot <dir>', 'runtime state directory; env BURROW_RUNROOT')
    .addOption(new Option('--storage-driver <driver>', 'rootfs driver for new containers (default: the one `burrow info` picks); env BURROW_STORAGE_DRIVER').choices(['overlay', 'fuse-overlayfs', 'copy']))
    .showSuggestionAfterError(true)
    .enablePositionalOptions()
    .exitOverride();

  const info = (name: string) =>
    program
      .command(name)
      .description('probe the host: what rootless containers can and cannot do here, and how to fix it')
      .addOption(new Option('--format <format>', 'output format').choices(['text', 'json']).default('text'))
      .action(async (opts: { format?: string }, cmd: Command) => {
        const { infoCommand } = await import('./commands/info');
        setExit(await infoCommand(opts, globals(cmd)));
      });
  info('info');
  info('doctor').description('alias of `burrow info`');

  registerImageCommands(program, setExit);
  registerContainerCommands(program, setExit, full, only);
  registerDiskCommands(program);
  registerVolumeCommands(program, setExit);
  registerResourceCommands(program);

  program
    .command('version')
    .description('show the version of burrow and of its runtime')
    .option('-f, --format <format>', "json, or a Go-template-like format such as '{{.Client.Version}}'")
    .action(async (opts: { format?: string }) => {
      const { versionCommand } = await import('./commands/version');
      setExit(await versionCommand(opts));
    });

  program
    .command('completion')
    .description('print a shell completion script: source <(burrow completion bash)')
    .argument('<shell>', 'bash or zsh')
    .action(async (shell: string) => {
      const { completionScript } = await import('./commands/completion');
      process.stdout.write(completionScript(program, shell));
    });
  return program;
}

/** Top-level commands that never need the `container` group (the hot ones). */
const LEAN_COMMANDS = new Set(['run', 'create', 'start', 'stop', 'kill', 'rm', 'ps', 'exec', 'logs', 'wait', 'inspect', 'images', 'pull', 'attach', 'port', 'stats', 'top']);

export async function main(argv: string[]): Promise<number> {
  let exitCode = 0;
  const word = commandWord(argv);
  // Commands whose whole tree is built anyway below `container`: skip its duplicate.
  const lean = word !== undefined && LEAN_COMMANDS.has(word);
  const program = buildProgram((c) => (exitCode = c), !lean, lean ? word : undefined);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version are not failures; usage errors are the engine's (125), as in Docker.
      if (err.exitCode === 0) return 0;
      return EXIT.ENGINE;
    }
    const e = toBurrowError(err);
    process.stderr.write(`burrow: ${e.message}\n`);
    if (e.fix) process.stderr.write(`fix: ${e.fix}\n`);
    if (process.env.BURROW_DEBUG && e.stack) process.stderr.write(`${e.stack}\n`);
    return e instanceof BurrowError ? e.exitCode : EXIT.ENGINE;
  }
}
