/** `volume ls|create|inspect|rm|prune`: named volumes (engine/volumes.ts). Flags and output only. */
import type { Command } from 'commander';
import { errorText, exitStatus } from '../../errors';
import { collect, context, keyValues } from '../context';
import { formatRows, humanSize, render, table } from '../format/table';
import { confirm } from '../prompt';

type SetExit = (code: number) => void;

/** `--filter KEY=VALUE` flags as Docker's filters map. */
function filterMap(list: string[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const kv of list) {
    const i = kv.indexOf('=');
    const k = i < 0 ? kv : kv.slice(0, i);
    (out[k] ??= []).push(i < 0 ? '' : kv.slice(i + 1));
  }
  return out;
}

export function registerVolumeCommands(program: Command, setExit: SetExit): void {
  const volume = program.command('volume').description('manage named volumes');

  volume
    .command('ls')
    .alias('list')
    .description('list volumes')
    .option('-q, --quiet', 'only names')
    .option('-f, --filter <key=value>', 'name=, label=KEY[=VALUE], dangling=true|false, driver=', collect, [])
    .option('--format <template>', 'Go-template-like format, or json')
    .action(async (opts: { quiet?: boolean; format?: string; filter: string[] }, cmd: Command) => {
      const { listVolumesFiltered } = await import('../../engine/volumes');
      const vols = listVolumesFiltered(context(cmd), filterMap(opts.filter));
      if (opts.quiet) process.stdout.write(vols.map((v) => `${v.Name}\n`).join(''));
      else if (opts.format) process.stdout.write(formatRows(opts.format, vols as unknown as Record<string, unknown>[], { Name: 'VOLUME NAME', Driver: 'DRIVER' }));
      else process.stdout.write(table(['DRIVER', 'VOLUME NAME'], vols.map((v) => [v.Driver, v.Name])));
    });

  volume
    .command('create')
    .description('create a volume (an existing one is kept)')
    .argument('[name]', 'volume name (random when not given)')
    .option('-d, --driver <driver>', 'only local', 'local')
    .option('-l, --label <key=value>', 'set a label on the volume', collect, [])
    .option('-o, --opt <key=value>', "driver options (the local driver takes none)", collect, [])
    .action(async (name: string | undefined, opts: { driver: string; label: string[]; opt: string[] }, cmd: Command) => {
      const { createVolume } = await import('../../engine/volumes');
      const v = createVolume(context(cmd), { Name: name, Driver: opts.driver, DriverOpts: keyValues(opts.opt), Labels: keyValues(opts.label) });
      process.stdout.write(`${v.Name}\n`);
    });

  volume
    .command('inspect')
    .description('show volumes as JSON')
    .argument('<names...>')
    .option('-f, --format <template>', 'Go-template-like format')
    .action(async (names: string[], opts: { format?: string }, cmd: Command) => {
      const ctx = context(cmd);
      const { inspect } = await import('../../engine/volumes');
      const out: object[] = [];
      for (const n of names) {
        try {
          out.push(inspect(ctx, n));
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
      const { removeVolume } = await import('../../engine/volumes');
      for (const n of names) {
        try {
          if (await removeVolume(ctx, n, opts.force)) process.stdout.write(`${n}\n`);
        } catch (err) {
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
      const { pruneVolumes } = await import('../../engine/volumes');
      const r = await pruneVolumes(ctx, opts.filter);
      process.stdout.write(`${r.names.length ? `Deleted Volumes:\n${r.names.join('\n')}\n\n` : ''}Total reclaimed space: ${humanSize(r.bytes)}\n`);
    });
}
