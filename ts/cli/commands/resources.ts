/** `stats` and `update`: flags and output; the work is in ts/container/resources.ts. */
import type { Command } from 'commander';
import { BurrowError } from '../../errors';
import type { LimitFlags } from '../../container/limits';
import { context } from '../context';
import { formatRows, table } from '../format/table';

const STATS_HEADERS: Record<string, string> = {
  ID: 'CONTAINER ID',
  Name: 'NAME',
  CPUPerc: 'CPU %',
  MemUsage: 'MEM USAGE / LIMIT',
  MemPerc: 'MEM %',
  NetIO: 'NET I/O',
  BlockIO: 'BLOCK I/O',
  PIDs: 'PIDS',
};
const DEFAULT_COLUMNS = ['ID', 'Name', 'CPUPerc', 'MemUsage', 'MemPerc', 'NetIO', 'BlockIO', 'PIDs'];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function registerResourceCommands(program: Command): void {
  program
    .command('stats')
    .description("live resource use of running containers (CPU, memory, network, block I/O, pids)")
    .argument('[containers...]')
    .option('-a, --all', 'all containers (default: running ones)')
    .option('--no-stream', 'print one sample and exit')
    .option('--format <template>', 'json, table, or a Go-like template such as "{{.Name}} {{.CPUPerc}}"')
    .option('--interval <seconds>', 'seconds between samples', '1')
    .action(async (refs: string[], o: { all?: boolean; stream: boolean; format?: string; interval: string }, cmd: Command) => {
      const ctx = context(cmd);
      const [{ Containers }, res, { containerState }] = await Promise.all([import('../../container/records'), import('../../container/resources'), import('../../container/state')]);
      const containers = new Containers(ctx.store);
      const intervalMs = Math.max(100, Number(o.interval) * 1000 || 1000);
      const pick = () =>
        refs.length
          ? refs.map((r) => containers.find(r))
          : containers.all().filter((rec) => o.all || containerState(rec, containers.dir(rec.id)).status === 'running');
      const tty = process.stdout.isTTY && o.stream;
      // CPU % needs two samples; the first pass takes a short one, later passes the interval.
      let prev = new Map<string, ReturnType<typeof res.sample>>();
      let first = true;
      for (;;) {
        const recs = pick();
        const take = () => new Map(recs.flatMap((rec) => {
          try {
            return [[rec.id, res.sample(ctx.store, rec)] as const];
          } catch (e) {
            if (refs.length && e instanceof BurrowError) throw e;
            return []; // stopped between listing and sampling
          }
        }));
        if (first) {
          prev = take();
          await sleep(Math.min(intervalMs, 500));
          first = false;
        }
        const now = take();
        const rows = recs.filter((r) => prev.has(r.id) && now.has(r.id)).map((r) => res.row(r, prev.get(r.id)!, now.get(r.id)!));
        let out: string;
        if (o.format === 'json') out = rows.map((r) => JSON.stringify(r)).join('\n') + (rows.length ? '\n' : '');
        else if (o.format && o.format !== 'table') out = formatRows(o.format, rows as unknown as Record<string, unknown>[], STATS_HEADERS);
        else out = table(DEFAULT_COLUMNS.map((c) => STATS_HEADERS[c]!), rows.map((r) => DEFAULT_COLUMNS.map((c) => String(r[c as keyof typeof r]))));
        process.stdout.write(tty ? `\x1b[2J\x1b[H${out}` : out);
        if (!o.stream) return;
        prev = now;
        await sleep(intervalMs);
      }
    });

  program
    .command('update')
    .description("change a container's resource limits (now if it runs, at its next start if not) or restart policy")
    .argument('<containers...>')
    .option('-m, --memory <bytes>', 'memory limit')
    .option('--memory-swap <bytes>', 'memory plus swap limit (-1: unlimited)')
    .option('--memory-reservation <bytes>', 'memory soft limit')
    .option('--cpus <number>', 'CPUs')
    .option('-c, --cpu-shares <weight>', 'relative CPU weight')
    .option('--cpu-quota <usec>', 'CFS quota')
    .option('--cpu-period <usec>', 'CFS period')
    .option('--cpuset-cpus <list>', 'CPUs allowed')
    .option('--cpuset-mems <list>', 'memory nodes allowed')
    .option('--pids-limit <n>', 'process limit')
    .option('--blkio-weight <weight>', 'block I/O weight')
    .option('--restart <policy>', 'restart policy: no, always, unless-stopped, on-failure[:N]')
    .action(async (refs: string[], f: LimitFlags & { restart?: string }, cmd: Command) => {
      const ctx = context(cmd);
      const [{ Containers }, engine] = await Promise.all([import('../../container/records'), import('../../engine/containers')]);
      const containers = new Containers(ctx.store);
      const { restart, ...resources } = f;
      const req = { resources, ...(restart !== undefined ? { restartPolicy: engine.parseRestartPolicy(restart) } : {}) };
      for (const ref of refs) {
        for (const w of await engine.updateContainer(ctx, containers.find(ref), req)) process.stderr.write(`WARNING: ${w}\n`);
        process.stdout.write(`${ref}\n`);
      }
    });
}
