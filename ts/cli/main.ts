/**
 * The command line: flags and output only. Each command's action imports its module lazily so
 * that `burrow --version` and other light commands do not pay for code they never run.
 */
import { Command, CommanderError, Option } from 'commander';
import { EXIT, errorText, exitStatus, isBrokenPipe } from '../errors';
import type { GlobalOptions } from '../host/paths';
import { VERSION } from '../version';
import { registerBuildCommands } from './commands/build-flags';
import { registerBundleCommand } from './commands/bundle';
import { registerContainerCommands } from './commands/containers';
import { registerEventsCommand } from './commands/events';
import { registerHealthcheckCommands } from './commands/healthcheck';
import { registerImageCommands } from './commands/images';
import { registerNetworkCommands } from './commands/network';
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
 * A command that is built and thrown away: every method returns it again, so that a
 * registration's chain (`.command(x).description(…).option(…).action(…)`) costs nothing.
 */
const IGNORED: Command = new Proxy(() => IGNORED, { get: () => () => IGNORED }) as unknown as Command;

/**
 * The program as the registration functions see it when only `only` is built: `command(name)` of
 * any other name gives IGNORED, everything else is the program itself.
 */
function onlyCommand(program: Command, only: string): Command {
  return new Proxy(program, {
    get(target, key) {
      if (key === 'command') {
        return (nameAndArgs: string, ...rest: unknown[]) =>
          nameAndArgs.split(' ', 1)[0] === only ? (target.command as (...a: unknown[]) => Command)(nameAndArgs, ...rest) : IGNORED;
      }
      const v: unknown = Reflect.get(target, key, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/**
 * `full` false leaves out the `container` group (`burrow container run ...`), which repeats
 * every container command with its flags: building those costs a hot `burrow run` several
 * milliseconds. It is built whenever the command is `container`, help or completion, or unknown.
 * `only` (with `full` false): the command word, a top-level command's name (LEAN_COMMANDS): that
 * command alone is built, with the global options. Parsing `burrow ps …` needs nothing else
 * (a subcommand's errors, help and suggestions are its own), and building the other sixty
 * commands cost `images` and `ps` a tenth of their time.
 */
export function buildProgram(setExit: (code: number) => void, full = true, only?: string): Command {
  let program = new Command('burrow')
    .description('Run OCI and Docker images as an ordinary user: no root, no sudo, no daemon.')
    .version(`burrow version ${VERSION}`, '-v, --version', 'print the version')
    .option('--root <dir>', 'store root (images, layers, containers); env BURROW_ROOT')
    .option('--runroot <dir>', 'runtime state directory; env BURROW_RUNROOT')
    .addOption(new Option('--storage-driver <driver>', 'rootfs driver for new containers (default: the one `burrow info` picks); env BURROW_STORAGE_DRIVER').choices(['overlay', 'fuse-overlayfs', 'copy']))
    .showSuggestionAfterError(true)
    .enablePositionalOptions()
    .exitOverride()
    // Commander's own errors (an unknown flag, a missing argument) in the voice of every other
    // error: `Error: …`; subcommands inherit this when they are added.
    .configureOutput({ outputError: (str, write) => write(commanderError(str)) });

  // Registration through the pruned view when one command is built; the program itself is returned.
  const root = program;
  if (!full && only !== undefined) program = onlyCommand(program, only);

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

  registerImageCommands(program, setExit, full);
  registerBuildCommands(program, setExit);
  registerContainerCommands(program, setExit, full, only);
  registerDiskCommands(program);
  registerEventsCommand(program);
  registerVolumeCommands(program, setExit);
  registerNetworkCommands(program, setExit);
  registerResourceCommands(program);
  registerHealthcheckCommands(program, setExit);
  registerBundleCommand(program);

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
      process.stdout.write(completionScript(root, shell));
    });
  return root;
}

/** `error: unknown option '--x'` (and its suggestion line) as `Error: unknown option '--x'`. */
export function commanderError(str: string): string {
  return str.replace(/^error: /, 'Error: ');
}

/** Top-level commands that never need the `container` group (the hot ones). */
export const LEAN_COMMANDS = new Set(['run', 'create', 'start', 'stop', 'kill', 'rm', 'ps', 'exec', 'logs', 'wait', 'inspect', 'images', 'pull', 'attach', 'port', 'stats', 'top']);

export async function main(argv: string[]): Promise<number> {
  let exitCode = 0;
  const word = commandWord(argv);
  // Commands whose whole tree is built anyway below `container`: skip its duplicate.
  const lean = word !== undefined && LEAN_COMMANDS.has(word);
  const program = buildProgram((c) => (exitCode = c), !lean, lean ? word : undefined);
  // `burrow images | head -1`: a write to a pipe whose reader has gone is an unhandled 'error'
  // event of process.stdout; end quietly, as cat does, not with a stack trace. (A listener on
  // process.stdout itself would create the stream, which costs `run` milliseconds it never
  // needs.) Anything else thrown outside a command's promise speaks as every error does.
  process.on('uncaughtException', (err) => {
    if (isBrokenPipe(err)) process.exit(exitCode);
    process.stderr.write(errorText(err));
    if (process.env.BURROW_DEBUG && err.stack) process.stderr.write(`${err.stack}\n`);
    process.exit(exitStatus(err));
  });
  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version are not failures; usage errors are the engine's (125), as in Docker.
      if (err.exitCode === 0) return 0;
      return EXIT.ENGINE;
    }
    // `burrow save IMG | head -c 10`: the archive's stream fails with EPIPE; the reader has what it wanted.
    if (isBrokenPipe(err)) return exitCode;
    process.stderr.write(errorText(err));
    if (process.env.BURROW_DEBUG && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    return exitStatus(err);
  }
}
