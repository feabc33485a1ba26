/**
 * `network create|ls|inspect|rm|prune|connect|disconnect`: user-defined networks
 * (ts/engine/networks.ts). Flags and output only, in Docker's shapes: ls's columns NETWORK ID,
 * NAME, DRIVER, SCOPE sorted by name, `--format` templates and json, `-q` ids.
 */
import type { Command } from 'commander';
import { BurrowError, errorText, exitStatus } from '../../errors';
import type { DockerNetwork } from '../../engine/networks';
import { collect, context, keyValues } from '../context';
import { formatRows, render, table } from '../format/table';
import { confirm } from '../prompt';

type SetExit = (code: number) => void;

/** `--filter KEY=VALUE` flags as Docker's filters map. */
export function filterMap(list: string[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const kv of list) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new BurrowError('EUSAGE', `bad format of filter (expected name=value): ${kv}`);
    (out[kv.slice(0, i)] ??= []).push(kv.slice(i + 1));
  }
  return out;
}

/** Go's time.Time as Docker's CLI prints CreatedAt: "2026-12-07 02:12:23.781026225 +0000 UTC". */
export function goTime(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const frac = /\.(\d+)Z$/.exec(iso)?.[1]?.replace(/0+$/, '');
  return `${d.toISOString().slice(0, 19).replace('T', ' ')}${frac ? `.${frac}` : ''} +0000 UTC`;
}

/** A row of `network ls` as Docker's formatter names its fields (ID, Name, Driver, Scope, IPv6, Internal, Labels, CreatedAt). */
export function lsRow(n: DockerNetwork, noTrunc = false): Record<string, string> {
  return {
    CreatedAt: goTime(n.Created),
    Driver: n.Driver,
    ID: noTrunc ? n.Id : n.Id.slice(0, 12),
    IPv6: String(n.EnableIPv6),
    Internal: String(n.Internal),
    Labels: Object.entries(n.Labels)
      .map(([k, v]) => `${k}=${v}`)
      .join(','),
    Name: n.Name,
    Scope: n.Scope,
  };
}

/** Docker's CLI lists networks by name (natural order: net2 before net10). */
export function byName(a: { Name: string }, b: { Name: string }): number {
  return a.Name.localeCompare(b.Name, 'en', { numeric: true });
}

const LS_HEADERS: Record<string, string> = { ID: 'NETWORK ID', Name: 'NAME', Driver: 'DRIVER', Scope: 'SCOPE', IPv6: 'IPV6', Internal: 'INTERNAL', Labels: 'LABELS', CreatedAt: 'CREATED AT' };

/** `network ls` output for rows already filtered. */
export function lsOutput(nets: DockerNetwork[], o: { quiet?: boolean; format?: string; noTrunc?: boolean }): string {
  const rows = [...nets].sort(byName).map((n) => lsRow(n, o.noTrunc));
  if (o.quiet) return rows.map((r) => `${r.ID}\n`).join('');
  const format = o.format === 'table' ? undefined : o.format;
  if (format === 'json') return rows.map((r) => `${JSON.stringify(r)}\n`).join('');
  if (format) return formatRows(format, rows, LS_HEADERS);
  return table(['NETWORK ID', 'NAME', 'DRIVER', 'SCOPE'], rows.map((r) => [r.ID!, r.Name!, r.Driver!, r.Scope!]));
}

interface CreateFlags {
  driver: string;
  subnet: string[];
  gateway: string[];
  internal?: boolean;
  attachable?: boolean;
  label: string[];
  ipv6?: boolean;
  opt: string[];
  ipamDriver?: string;
}

/** The engine's create request from the flags: `--gateway`s go with the `--subnet` of their family, in order. */
export function createRequest(name: string, f: CreateFlags): import('../../engine/networks').NetworkCreateRequest {
  const gateways = [...f.gateway];
  const config = f.subnet.map((s) => {
    const v6 = s.includes(':');
    const i = gateways.findIndex((g) => g.includes(':') === v6);
    const gw = i < 0 ? undefined : gateways.splice(i, 1)[0];
    return { Subnet: s, ...(gw ? { Gateway: gw } : {}) };
  });
  if (gateways.length) throw new BurrowError('EUSAGE', `every ip-range or gateway must have a corresponding subnet (--gateway ${gateways.join(', ')})`, 'give --subnet with --gateway');
  return {
    Name: name,
    Driver: f.driver,
    Internal: !!f.internal,
    Attachable: !!f.attachable,
    EnableIPv6: !!f.ipv6,
    IPAM: { Driver: f.ipamDriver ?? 'default', Config: config, Options: {} },
    Options: keyValues(f.opt),
    Labels: keyValues(f.label),
  };
}

export function registerNetworkCommands(program: Command, setExit: SetExit): void {
  const network = program.command('network').description('manage user-defined networks: containers on one reach each other by name');

  network
    .command('create')
    .description('create a network (prints its id)')
    .argument('<name>')
    .option('-d, --driver <driver>', 'only bridge', 'bridge')
    .option('--subnet <cidr>', 'IPv4 (and, with --ipv6, IPv6) subnet; default: a free one of Docker\'s pools', collect, [])
    .option('--gateway <ip>', 'gateway of the subnet (default: its first address)', collect, [])
    .option('--internal', 'no outbound access')
    .option('--attachable', 'accepted (every network is)')
    .option('--ipv6', 'an IPv6 subnet too (a random ULA /64 unless given)')
    .option('--ipam-driver <driver>', 'only default')
    .option('-l, --label <key=value>', 'set a label on the network', collect, [])
    .option('-o, --opt <key=value>', "driver options (com.docker.network.driver.mtu=N sets the MTU; allow_host_loopback=true: the containers reach the host's loopback at 10.0.2.2 and [fd00::2], slirp4netns only)", collect, [])
    .action(async (name: string, opts: CreateFlags, cmd: Command) => {
      const { createNetwork } = await import('../../engine/networks');
      const r = createNetwork(context(cmd), createRequest(name, opts));
      process.stdout.write(`${r.Id}\n`);
    });

  network
    .command('ls')
    .alias('list')
    .description('list networks')
    .option('-q, --quiet', 'only ids')
    .option('-f, --filter <key=value>', 'name=, id=, driver=, label=KEY[=VALUE], type=builtin|custom, scope=, dangling=true|false', collect, [])
    .option('--format <template>', 'Go-template-like format, json or table')
    .option('--no-trunc', 'full ids')
    .action(async (opts: { quiet?: boolean; format?: string; filter: string[]; trunc: boolean }, cmd: Command) => {
      const { listNetworks } = await import('../../engine/networks');
      const nets = await listNetworks(context(cmd), filterMap(opts.filter));
      process.stdout.write(lsOutput(nets, { quiet: opts.quiet, format: opts.format, noTrunc: !opts.trunc }));
    });

  network
    .command('inspect')
    .description('show networks as JSON')
    .argument('<networks...>')
    .option('-f, --format <template>', 'Go-template-like format')
    .option('-v, --verbose', 'accepted (no swarm details to add)')
    .action(async (refs: string[], opts: { format?: string }, cmd: Command) => {
      const ctx = context(cmd);
      const { inspectNetwork } = await import('../../engine/networks');
      const out: DockerNetwork[] = [];
      for (const r of refs) {
        try {
          out.push(await inspectNetwork(ctx, r));
        } catch (err) {
          process.stderr.write(errorText(err));
          setExit(exitStatus(err));
        }
      }
      if (opts.format) process.stdout.write(out.map((o) => `${render(opts.format!, o as unknown as Record<string, unknown>)}\n`).join(''));
      else process.stdout.write(`${JSON.stringify(out, null, 4)}\n`);
    });

  network
    .command('rm')
    .alias('remove')
    .description('remove networks (refuses one a container is on)')
    .argument('<networks...>')
    .option('-f, --force', 'no error for a network that does not exist')
    .action(async (refs: string[], opts: { force?: boolean }, cmd: Command) => {
      const ctx = context(cmd);
      const { removeNetwork } = await import('../../engine/networks');
      for (const r of refs) {
        try {
          await removeNetwork(ctx, r);
          process.stdout.write(`${r}\n`);
        } catch (err) {
          if (opts.force && err instanceof BurrowError && err.code === 'ENETWORK_NOT_FOUND') continue;
          process.stderr.write(errorText(err));
          setExit(exitStatus(err));
        }
      }
    });

  network
    .command('prune')
    .description('remove every user-defined network no container is on')
    .option('-f, --force', 'do not ask for confirmation')
    .option('--filter <key=value>', 'label=, label!=, until=', collect, [])
    .action(async (opts: { force?: boolean; filter: string[] }, cmd: Command) => {
      const ctx = context(cmd);
      const filters = filterMap(opts.filter);
      if (!confirm('network prune', 'WARNING! This will remove all custom networks not used by at least one container.', opts.force)) return;
      const { pruneNetworks } = await import('../../engine/networks');
      const names = await pruneNetworks(ctx, filters);
      if (names.length) process.stdout.write(`Deleted Networks:\n${names.join('\n')}\n\n`);
    });

  network
    .command('connect')
    .description('connect a container to a network')
    .argument('<network>')
    .argument('<container>')
    .option('--alias <name>', 'a name it answers to on this network', collect, [])
    .option('--ip <address>', 'IPv4 address (default: the lowest free one)')
    .action(async (net: string, ctr: string, opts: { alias: string[]; ip?: string }, cmd: Command) => {
      const { connectNetwork } = await import('../../engine/networks');
      await connectNetwork(context(cmd), net, ctr, 'connect', { aliases: opts.alias, ...(opts.ip ? { ip: opts.ip } : {}) });
    });

  network
    .command('disconnect')
    .description('disconnect a container from a network')
    .argument('<network>')
    .argument('<container>')
    .option('-f, --force', 'also when the network no longer exists')
    .action(async (net: string, ctr: string, opts: { force?: boolean }, cmd: Command) => {
      const { disconnectNetwork } = await import('../../engine/networks');
      await disconnectNetwork(context(cmd), net, ctr, { force: !!opts.force });
    });
}
