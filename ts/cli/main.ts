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

export function buildProgram(setExit: (code: number) => void): Command {
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
  registerContainerCommands(program, setExit);
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

export async function main(argv: string[]): Promise<number> {
  let exitCode = 0;
  const program = buildProgram((c) => (exitCode = c));
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
