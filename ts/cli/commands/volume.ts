/** `volume ls|create|inspect|rm|prune`: named volumes (storage/volumes.ts). Flags and output only. */
import type { Command } from 'commander';
import { errorText, exitStatus } from '../../errors';
import { collect, context } from '../context';
import { formatRows, humanSize, render, table } from '../format/table';
import { confirm } from '../prompt';

type SetExit = (code: number) => void;

export function registerVolumeCommands(program: Command, setExit: SetExit): void {
  const volume = program.command('volume').description('manage named volumes');

  volume
    .command('ls')
    .alias('list')
    .description('list volumes')
    .option('-q, --quiet', 'only names')
    .option('--format <template>', 'Go-template-like format, or json')
    .action(async (opts: { quiet?: boolean; format?: string }, cmd: Command) => {
      const { store } = context(cmd);
      const { listVolumes } = await import('../../storage/volumes');
      const vols = listVolumes(store);
      if (opts.quiet) process.stdout.write(vols.map((v) => `${v.Name}\n`).join(''));
      else if (opts.format) process.stdout.write(formatRows(opts.format, vols as unknown as Record<string, unknown>[], { Name: 'VOLUME NAME', Driver: 'DRIVER' }));
      else process.stdout.write(table(['DRIVER', 'VOLUME NAME'], vols.map((v) => [v.Driver, v.Name])));
    });

  volume
    .command('create')
    .description('create a volume (an existing one is kept)')
    .argument('[name]', 'volume name (random when not given)')
    .option('-d, --driver <driver>', 'only local', 'local')
    .action(async (name: string | undefined, opts: { driver: string }, cmd: Command) => {
      const { store } = context(cmd);
      const { BurrowError } = await import('../../errors');
      if (opts.driver !== 'local') throw new BurrowError('EUSAGE', `volume driver ${opts.driver} is not supported (local)`);
      const { createVolume } = await import('../../storage/volumes');
      process.stdout.write(`${createVolume(store, name).Name}\n`);
    });

  volume
    .command('inspect')
    .description('show volumes as JSON')
    .argument('<names...>')
    .option('-f, --format <template>', 'Go-template-like format')
    .action(async (names: string[], opts: { format?: string }, cmd: Command) => {
      const { store } = context(cmd);
      const { inspectVolume } = await import('../../storage/volumes');
      const out: object[] = [];
      for (const n of names) {
        try {
          out.push(inspectVolume(store, n));
        } catch (err) {
          process.stderr.write(errorText(err));
          setExit(exitStatus(err));
        }
      }
      if (opts.format) process.stdout.write(out.map((o) => `${render(opts.format!, o as Record<string, unknown>)}\n`).join(''));
      else process.stdout.write(`${JSON.stringify(out, null, 4)}\n`);
    });

  volume
    .command('rm')
    .alias('remove')
    .description('remove volumes (refuses a volume a container uses)')
    .argument('<names...>')
    .option('-f, --force', 'no error for a volume that does not exist')
    .action(async (names: string[], opts: { force?: boolean }, cmd: Command) => {
      const ctx = context(cmd);
      const { removeVolume } = await import('../../storage/volumes');
      for (const n of names) {
        try {
          await removeVolume(ctx.store, await ctx.settings(), n);
          process.stdout.write(`${n}\n`);
        } catch (err) {
          if (opts.force && /no such volume/.test((err as Error).message)) continue;
          process.stderr.write(errorText(err));
          setExit(exitStatus(err));
        }
      }
    });

  volume
    .command('prune')
    .description('remove every volume no container uses')
    .option('-a, --all', 'accepted: every unused volume goes, named or anonymous (as Podman)')
    .option('-f, --force', 'do not ask for confirmation')
    .option('--filter <key=value>', 'label=, label!=', collect, [])
    .action(async (opts: { force?: boolean; filter: string[] }, cmd: Command) => {
      const ctx = context(cmd);
      if (!confirm('volume prune', 'WARNING! This will remove all local volumes not used by at least one container.', opts.force)) return;
      const { pruneVolumes } = await import('../../storage/volumes');
      const r = await pruneVolumes(ctx.store, await ctx.settings(), opts.filter);
      process.stdout.write(`${r.names.length ? `Deleted Volumes:\n${r.names.join('\n')}\n\n` : ''}Total reclaimed space: ${humanSize(r.bytes)}\n`);
    });
}
