/**
 * The flags of `burrow build` and `burrow image build`; the work is in ./build.ts, loaded only
 * when a build runs.
 */
import { Option, type Command } from 'commander';
import { collect } from '../context';
import type { BuildFlags } from './build';

/** `burrow build` at the top level and as `burrow image build` when the group is built. */
export function registerBuildCommands(program: Command, setExit: (code: number) => void): void {
  defineBuild(program.command('build'), setExit);
  const group = program.commands.find((c) => c.name() === 'image');
  if (group && group.commands.length) defineBuild(group.command('build'), setExit);
}

export function defineBuild(c: Command, setExit: (code: number) => void): Command {
  return c
    .description('build an image from a Dockerfile (or Containerfile), as an ordinary user')
    .argument('<context>', 'a directory, - (a Dockerfile or a tar on stdin), or the http(s) URL of a tar')
    .option('-t, --tag <name>', 'name the image (repeatable)', collect, [])
    .option('-f, --file <file>', 'the Dockerfile (default: CONTEXT/Dockerfile, then Containerfile; - for stdin)')
    .option('--build-arg <key=value>', 'a build argument (repeatable)', collect, [])
    .option('--target <stage>', 'build up to this stage')
    .option('--no-cache', 'do not use the build cache')
    .option('--pull [policy]', 'always pull FROM images (or: missing, never)')
    .option('--platform <os/arch>', 'the target platform (only this host\'s can run RUN steps)')
    .option('--label <key=value>', 'a label of the image (repeatable)', collect, [])
    .option('--iidfile <file>', 'write the image id to this file')
    .option('-q, --quiet', 'print only the image id')
    .addOption(new Option('--progress <mode>', 'progress output').choices(['auto', 'plain', 'tty', 'quiet']).default('auto'))
    .option('--secret <id=ID,src=FILE>', 'a secret for RUN --mount=type=secret (repeatable)', collect, [])
    .option('--network <mode>', 'network of RUN steps: default, none or host', 'default')
    .option('-o, --output <type=TYPE,dest=PATH>', 'also write the result: type=oci|docker|tar|local,dest=PATH', collect, [])
    .action(async (ctxArg: string, flags: BuildFlags, cmd: Command) => {
      const { buildCommand } = await import('./build');
      setExit(await buildCommand(ctxArg, flags, cmd));
    });
}
