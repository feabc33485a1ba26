/**
 * Disk use commands: `system df`, `system prune`, `image prune`, and `export` (also as
 * `container export`). Flags and output only; the work is in storage/df.ts, storage/prune.ts
 * and container/export.ts.
 */
import type { Command } from 'commander';
import { BurrowError } from '../../errors';
import type { ImagePruneResult } from '../../storage/prune';
import { collect, context } from '../context';
import { confirm } from '../prompt';
import { formatRows, humanAge, humanSize, table } from '../format/table';
import { registerEventsCommand } from './events';
import { registerServiceCommands } from './service';

function imageLines(r: ImagePruneResult): string {
  const lines = [...r.images.flatMap((i) => [...i.untagged.map((t) => `untagged: ${t}`), `deleted: ${i.id}`]), ...r.layers.map((l) => `deleted: ${l}`)];
  const w = r.work;
  const work = w ? `Abandoned work removed: ${w.partials} partial download(s), ${w.tmp} temporary tree(s) or file(s): ${humanSize(w.bytes)}\n\n` : '';
  return (lines.length ? `Deleted Images:\n${lines.join('\n')}\n\n` : '') + work;
}

function keptNote(r: ImagePruneResult): void {
  if (!r.kept) return;
  const why = r.writerActive ? 'a pull, load or import is in progress in this store' : 'they were written in the last few seconds (a pull or import may be about to use them)';
  process.stderr.write(`note: ${r.kept} unreferenced layer(s) or blob(s) kept: ${why}; prune again later to remove them\n`);
}

const pct = (part: number, whole: number) => (whole > 0 ? `${humanSize(part)} (${Math.floor((part * 100) / whole)}%)` : humanSize(part));

/** Repository and tag as `images` shows them. */
function repoTag(tags: string[], digests: string[]): [string, string] {
  const t = tags[0];
  if (t) return [t.slice(0, t.lastIndexOf(':')).replace(/^docker\.io\/(library\/)?/, ''), t.slice(t.lastIndexOf(':') + 1)];
  const d = digests[0];
  return [d ? d.slice(0, d.indexOf('@')).replace(/^docker\.io\/(library\/)?/, '') : '<none>', '<none>'];
}

export function registerDiskCommands(program: Command): void {
  const system = program.command('system').description('disk use and cleanup, the API service');
  registerServiceCommands(system);
  registerEventsCommand(system);

  system
    .command('df')
    .description('show disk use: images (shared content counted once), containers, volumes')
    .option('-v, --verbose', 'per image, container and volume')
    .option('--format <template>', 'Go-template-like format, or json')
    .action(async (opts: { verbose?: boolean; format?: string }, cmd: Command) => {
      const { store } = context(cmd);
      const { diskUsage } = await import('../../storage/df');
      const u = diskUsage(store);
      if (opts.verbose) {
        if (opts.format && opts.format !== 'json') throw new BurrowError('EUSAGE', 'system df -v: --format takes only json');
        if (opts.format === 'json') {
          // Docker's field names; sizes in bytes.
          const Images = u.images.items.map((i) => {
            const [Repository, Tag] = repoTag(i.repoTags, i.repoDigests);
            return { ID: i.id, Repository, Tag, CreatedAt: i.created ?? '', Size: i.size, SharedSize: i.sharedSize, UniqueSize: i.uniqueSize, Containers: i.containers };
          });
          const Containers = u.containers.items.map((c) => ({ ID: c.id, Names: c.name, Image: c.image, Command: c.command.join(' '), LocalVolumes: c.volumes, Size: c.size, CreatedAt: c.created, State: c.status }));
          const Volumes = u.volumes.items.map((v) => ({ Name: v.name, Links: v.links, Size: v.size }));
          process.stdout.write(`${JSON.stringify({ Images, Containers, Volumes, BuildCache: [] })}\n`);
          return;
        }
        const imgs = u.images.items.map((i) => {
          const [repo, tag] = repoTag(i.repoTags, i.repoDigests);
          return [repo, tag, i.id.replace(/^sha256:/, '').slice(0, 12), humanAge(i.created) + (i.created ? ' ago' : ''), humanSize(i.size), humanSize(i.sharedSize), humanSize(i.uniqueSize), String(i.containers)];
        });
        const ctrs = u.containers.items.map((c) => {
          const command = c.command.join(' ');
          return [c.id.slice(0, 12), c.image, JSON.stringify(command.length > 20 ? `${command.slice(0, 19)}…` : command), String(c.volumes), humanSize(c.size), `${humanAge(c.created)} ago`, c.status, c.name];
        });
        const vols = u.volumes.items.map((v) => [v.name, String(v.links), humanSize(v.size)]);
        process.stdout.write(
          `Images space usage:\n\n${table(['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE', 'SHARED SIZE', 'UNIQUE SIZE', 'CONTAINERS'], imgs)}\n` +
            `Containers space usage:\n\n${table(['CONTAINER ID', 'IMAGE', 'COMMAND', 'LOCAL VOLUMES', 'SIZE', 'CREATED', 'STATUS', 'NAMES'], ctrs)}\n` +
            `Local Volumes space usage:\n\n${table(['VOLUME NAME', 'LINKS', 'SIZE'], vols)}\n` +
            `Build cache usage: ${humanSize(u.buildCache.size)}\n`,
        );
        return;
      }
      const rows = (
        [
          ['Images', u.images],
          ['Containers', u.containers],
          ['Local Volumes', u.volumes],
          ['Build Cache', u.buildCache],
        ] as const
      ).map(([type, t]) => ({
        Type: type,
        TotalCount: String(t.total),
        Active: String(t.active),
        Size: humanSize(t.size),
        Reclaimable: pct(t.reclaimable, t.size),
        SizeBytes: t.size,
        ReclaimableBytes: t.reclaimable,
      }));
      if (opts.format) process.stdout.write(formatRows(opts.format, rows, { Type: 'TYPE', TotalCount: 'TOTAL', Active: 'ACTIVE', Size: 'SIZE', Reclaimable: 'RECLAIMABLE' }));
      else process.stdout.write(table(['TYPE', 'TOTAL', 'ACTIVE', 'SIZE', 'RECLAIMABLE'], rows.map((r) => [r.Type, r.TotalCount, r.Active, r.Size, r.Reclaimable])));
    });

  system
    .command('prune')
    .description('remove stopped containers, dangling images (-a: unused images), unreferenced layers and blobs, and with --volumes unused volumes')
    .option('-a, --all', 'remove every image no container uses, not only dangling ones')
    .option('-f, --force', 'do not ask for confirmation')
    .option('--volumes', 'also remove volumes no container uses')
    .option('--filter <key=value>', 'until=, label=, label!=', collect, [])
    .action(async (opts: { all?: boolean; force?: boolean; volumes?: boolean; filter: string[] }, cmd: Command) => {
      const ctx = context(cmd);
      const warning = [
        'WARNING! This will remove:',
        '  - all stopped containers',
        ...(opts.volumes ? ['  - all volumes not used by at least one container'] : []),
        opts.all ? '  - all images without at least one container associated to them' : '  - all dangling images',
        opts.all ? '  - all build cache (with the RUN cache mounts)' : '  - all build cache',
        '',
      ].join('\n');
      if (!confirm('system prune', warning, opts.force)) return;
      const { pruneSystem } = await import('../../storage/prune');
      const r = await pruneSystem(ctx.store, await ctx.settings(), { all: !!opts.all, volumes: !!opts.volumes, filters: opts.filter });
      let out = '';
      if (r.containers.ids.length) out += `Deleted Containers:\n${r.containers.ids.join('\n')}\n\n`;
      if (r.volumes?.names.length) out += `Deleted Volumes:\n${r.volumes.names.join('\n')}\n\n`;
      out += imageLines(r.images);
      if (r.buildCache) out += `Deleted build cache objects: ${r.buildCache}\n\n`;
      process.stdout.write(`${out}Total reclaimed space: ${humanSize(r.bytes)}\n`);
      keptNote(r.images);
    });

  program
    .command('builder')
    .description("manage burrow build's cache")
    .command('prune')
    .description('remove the build cache: the cached steps, then the layers and blobs only they kept; -a also the RUN --mount=type=cache directories')
    .option('-a, --all', 'also remove the RUN cache mounts')
    .option('-f, --force', 'do not ask for confirmation')
    .option('--filter <key=value>', 'until= (cache entries made before)', collect, [])
    .action(async (opts: { all?: boolean; force?: boolean; filter: string[] }, cmd: Command) => {
      const ctx = context(cmd);
      const { parseUntil } = await import('../../storage/prune');
      let until: number | undefined;
      for (const f of opts.filter) {
        if (!f.startsWith('until=')) throw new BurrowError('EUSAGE', `invalid filter ${JSON.stringify(f)}: builder prune takes until=`);
        until = parseUntil(f.slice(6));
      }
      if (!confirm('builder prune', `WARNING! This will remove all build cache${opts.all ? ', RUN cache mounts included' : ''}.\n`, opts.force)) return;
      const { pruneBuildCache } = await import('../../build/cache');
      const r = await pruneBuildCache(ctx.store, await ctx.settings(), { all: !!opts.all, ...(until !== undefined ? { until } : {}) });
      process.stdout.write(`Deleted build cache objects: ${r.entries.length}${r.mounts ? ` (and ${r.mounts} cache mount(s))` : ''}\nTotal reclaimed space: ${humanSize(r.bytes)}\n`);
    });

  system
    .command('migrate')
    .description("make the store's settings this host's again, as `podman system migrate`: probe, save the driver and id mapping found, and unpack the layers again when the mapping changed (a subordinate range added or gone), and end the shared user namespaces' keepers; containers must be stopped")
    .action(async (_opts: object, cmd: Command) => {
      const ctx = context(cmd);
      const { runRoot, storeRootOverride } = await import('../../host/paths');
      const { probeHost } = await import('../../host/probe');
      const { migrateStore, describeMap } = await import('../../storage/migrate');
      const r = await migrateStore(ctx.store, storeRootOverride(ctx.globals), (local) => probeHost(ctx.globals, local));
      // The shared user namespaces were mapped under what the host had before: ended, as
      // podman's pause process is.
      const { endKeepers } = await import('../../container/userns-keepers');
      endKeepers(runRoot(ctx.globals));
      if (!r) {
        process.stdout.write(`no store at ${ctx.store.root} yet: nothing to migrate (its first command sets it up for this host)\n`);
        return;
      }
      const { before: b, after: a } = r;
      const map = (s: typeof a) => `${s.idMode} (uids ${describeMap(s.uidMap)}; gids ${describeMap(s.gidMap)})`;
      let out = `store ${ctx.store.root}\n`;
      out += b.driver === a.driver ? `driver: ${a.driver} (unchanged)\n` : `driver: ${b.driver} -> ${a.driver}\n`;
      out += r.idmapChanged ? `id mapping: ${map(b)} -> ${map(a)}\nlayers unpacked again for it: ${r.relaid}${r.dropped ? `; ${r.dropped} dropped (blob gone: pull their images again)` : ''}\n` : `id mapping: ${map(a)} (unchanged)\n`;
      process.stdout.write(out);
      if (r.idmapChanged) process.stderr.write('note: containers made before keep the writable layers they had; remove and run them again if files they wrote show the wrong owners\n');
    });

  // `image` may already be a group (other image subcommands): join it rather than shadow it.
  const image = program.commands.find((c) => c.name() === 'image') ?? program.command('image').description('manage images');
  image
    .command('prune')
    .description('remove dangling images (-a: every image no container uses), then layers and blobs nothing references')
    .option('-a, --all', 'remove every image no container uses, not only dangling ones')
    .option('-f, --force', 'do not ask for confirmation')
    .option('--filter <key=value>', 'until=, label=, label!=', collect, [])
    .action(async (opts: { all?: boolean; force?: boolean; filter: string[] }, cmd: Command) => {
      const ctx = context(cmd);
      const warning = opts.all ? 'WARNING! This will remove all images without at least one container associated to them.' : 'WARNING! This will remove all dangling images.';
      if (!confirm('image prune', warning, opts.force)) return;
      const { pruneImages } = await import('../../engine/images');
      const r = await pruneImages(ctx, { all: !!opts.all, filters: opts.filter });
      process.stdout.write(`${imageLines(r)}Total reclaimed space: ${humanSize(r.bytes)}\n`);
      keptNote(r);
    });

  const exportCmd = (parent: Command) =>
    parent
      .command('export')
      .description("write a container's filesystem as a tar archive (to stdout, or -o FILE)")
      .argument('<container>')
      .option('-o, --output <file>', 'write to this file instead of stdout')
      .action(async (ref: string, opts: { output?: string }, cmd: Command) => {
        const ctx = context(cmd);
        const { Containers } = await import('../../container/records');
        const { exportContainer } = await import('../../container/export');
        const rec = new Containers(ctx.store).find(ref);
        if (!opts.output) {
          if (process.stdout.isTTY) throw new BurrowError('EUSAGE', 'export: refusing to write a tar archive to a terminal', 'use -o FILE or redirect stdout');
          await exportContainer(ctx.store, rec, 1);
          return;
        }
        const { writeAside } = await import('../write-aside');
        await writeAside('export', opts.output, (fd) => exportContainer(ctx.store, rec, fd));
      });
  exportCmd(program);
  const container = program.commands.find((c) => c.name() === 'container');
  if (container) exportCmd(container);

}
