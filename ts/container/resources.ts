/**
 * A running container's resources: `stats` (samples from `burrow-runtime events --stats`, which
 * reads the container's cgroup, or /proc of its processes when it has none) and `update` (new
 * limits applied live with `burrow-runtime update`, after the same honesty check as `run`).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BurrowError } from '../errors';
import { globalFlags, runtimeError, runtimeSpawn, runtimeSync } from '../runtime/client';
import type { Store } from '../storage/store';
import { checkEnforceable, toResources, type CgroupInfo, type LimitFlags } from './limits';
import { Containers, type ContainerRecord } from './records';
import { containerState } from './state';

/** One `events --stats` sample, as much of runc's shape as we read. */
export interface Sample {
  at: number;
  cpuNs: number;
  memUsage: number;
  memLimit: number;
  pids: number;
  blockRead: number;
  blockWrite: number;
  netRx: number;
  netTx: number;
  /** "cgroup", or "proc" when the container has no cgroup of its own. */
  source: 'cgroup' | 'proc';
}

interface RuncStats {
  data?: {
    source?: string;
    cpu?: { usage?: { total?: number } };
    memory?: { usage?: { usage?: number; limit?: number } };
    pids?: { current?: number };
    blkio?: { readBytes?: number; writeBytes?: number };
  };
}

function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

/** Bytes received and sent on the container's interfaces other than lo (its netns, via its init). */
export function netBytes(pid: number): { rx: number; tx: number } {
  let rx = 0;
  let tx = 0;
  try {
    for (const line of fs.readFileSync(`/proc/${pid}/net/dev`, 'utf8').split('\n').slice(2)) {
      const [name, rest] = line.split(':');
      if (!rest || name!.trim() === 'lo') continue;
      const f = rest.trim().split(/\s+/).map(Number);
      rx += f[0] ?? 0;
      tx += f[8] ?? 0;
    }
  } catch {
    /* exited meanwhile */
  }
  return { rx, tx };
}

export function sample(store: Store, rec: ContainerRecord): Sample {
  const st = containerState(rec, new Containers(store).dir(rec.id));
  if (st.status !== 'running') throw new BurrowError('ECONTAINER_STATE', `container ${rec.name} is not running`);
  const r = runtimeSync([...globalFlags(rec), 'events', '--stats', rec.id]);
  if (r.status !== 0) throw runtimeError(`cannot read the statistics of ${rec.name}`, { stderr: r.stderr });
  return toSample(rec, r.stdout, st.pid);
}

/**
 * `sample` without blocking: the API service serves other requests (and other containers'
 * streams) while the runtime reads the cgroup.
 */
export async function sampleAsync(store: Store, rec: ContainerRecord): Promise<Sample> {
  const st = containerState(rec, new Containers(store).dir(rec.id));
  if (st.status !== 'running') throw new BurrowError('ECONTAINER_STATE', `container ${rec.name} is not running`);
  const child = runtimeSpawn([...globalFlags(rec), 'events', '--stats', rec.id], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number>((resolve) => {
    child.on('error', () => resolve(-1));
    child.on('close', (c) => resolve(c ?? 1));
  });
  if (code !== 0) throw runtimeError(`cannot read the statistics of ${rec.name}`, { stderr: err });
  return toSample(rec, out, st.pid);
}

/** A sample from what `events --stats` printed, with the network counters of the init `pid`. */
function toSample(rec: ContainerRecord, stdout: string, pid: number): Sample {
  let j: RuncStats;
  try {
    j = JSON.parse(stdout) as RuncStats;
  } catch {
    throw new BurrowError('ERUNTIME', `burrow-runtime events printed no JSON for ${rec.name}`);
  }
  const d = j.data ?? {};
  const net = netBytes(pid);
  return {
    at: Date.now(),
    cpuNs: num(d.cpu?.usage?.total),
    memUsage: num(d.memory?.usage?.usage),
    memLimit: num(d.memory?.usage?.limit),
    pids: num(d.pids?.current),
    blockRead: num(d.blkio?.readBytes),
    blockWrite: num(d.blkio?.writeBytes),
    netRx: net.rx,
    netTx: net.tx,
    source: d.source === 'proc' ? 'proc' : 'cgroup',
  };
}

/** What `stats` prints for a container: Docker's fields, from two samples. */
export interface StatsRow {
  ID: string;
  Name: string;
  CPUPerc: string;
  MemUsage: string;
  MemPerc: string;
  NetIO: string;
  BlockIO: string;
  PIDs: string;
  /** Raw numbers for --format json. */
  cpuPercent: number;
  memoryUsage: number;
  memoryLimit: number;
  source: string;
}

/** Docker's units: decimal for I/O, binary for memory ("1.5MiB / 1.9GiB"). */
function decimal(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(n < 10 ? 2 : 1)}${units[i]}`;
}

function binary(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(2)}${units[i]}`;
}

/**
 * CPU % as Docker computes it (container CPU time over wall time, 100% per busy CPU); memory %
 * against the limit, or the host's memory when there is none (as Docker shows it).
 */
export function row(rec: ContainerRecord, a: Sample, b: Sample): StatsRow {
  const wallNs = Math.max(1, (b.at - a.at) * 1e6);
  const cpu = Math.max(0, ((b.cpuNs - a.cpuNs) / wallNs) * 100);
  const limit = b.memLimit > 0 ? b.memLimit : os.totalmem();
  return {
    ID: rec.id.slice(0, 12),
    Name: rec.name,
    CPUPerc: `${cpu.toFixed(2)}%`,
    MemUsage: `${binary(b.memUsage)} / ${binary(limit)}`,
    MemPerc: `${((b.memUsage / limit) * 100).toFixed(2)}%`,
    NetIO: `${decimal(b.netRx)} / ${decimal(b.netTx)}`,
    BlockIO: `${decimal(b.blockRead)} / ${decimal(b.blockWrite)}`,
    PIDs: String(b.pids),
    cpuPercent: cpu,
    memoryUsage: b.memUsage,
    memoryLimit: limit,
    source: b.source,
  };
}

/**
 * `update`: new limits for a container. Checked like `run`'s (a limit this host cannot enforce
 * is refused with the controller and the fix), applied by the runtime to a running container's
 * cgroup, then written into its bundle, so that `inspect` shows them and the next start (of a
 * stopped container too) applies them.
 */
export function update(store: Store, rec: ContainerRecord, flags: LimitFlags, info: CgroupInfo): void {
  const { resources, needs } = toResources(flags);
  if (needs.length === 0) throw new BurrowError('EUSAGE', 'update: give at least one limit, e.g. --memory 256m, --cpus 1.5 or --pids-limit 100');
  checkEnforceable(needs, info, false);
  const st = containerState(rec, new Containers(store).dir(rec.id));
  // A container with a process (running, paused, or created in the runtime and not yet started)
  // gets them now; a created or exited one (or one waiting for its restart policy) has none:
  // every start creates it again from the bundle, so the limits written below apply then, as
  // with Docker.
  if (st.pid > 0) {
    const r = runtimeSync([...globalFlags(rec), 'update', '-r', '-', rec.id], { input: JSON.stringify(resources), stdout: 'ignore' });
    if (r.status !== 0) throw runtimeError(`cannot update ${rec.name}`, { stderr: r.stderr });
  }
  const config = path.join(new Containers(store).dir(rec.id), 'bundle', 'config.json');
  try {
    const spec = JSON.parse(fs.readFileSync(config, 'utf8')) as { linux?: { resources?: Record<string, Record<string, unknown>> } };
    const linux = (spec.linux ??= {});
    const res = (linux.resources ??= {});
    for (const [k, v] of Object.entries(resources)) res[k] = { ...(res[k] ?? {}), ...(v as Record<string, unknown>) };
    const tmp = `${config}.tmp-${process.pid}`;
    fs.writeFileSync(tmp, JSON.stringify(spec, null, 2));
    fs.renameSync(tmp, config);
  } catch {
    /* removed meanwhile: the limits were applied, there is just nothing left to show them */
  }
}
