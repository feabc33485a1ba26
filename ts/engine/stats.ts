/**
 * A running container's statistics in Docker's shape (`GET /containers/{id}/stats`), from the
 * samples `burrow stats` takes (ts/container/resources.ts): what `docker stats` computes its
 * columns from. CPU % there is the container's CPU time over the host's (system_cpu_usage, from
 * /proc/stat) times online_cpus, so both must be on the same clock: nanoseconds.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { sampleAsync, type Sample } from '../container/resources';
import type { ContainerRecord } from '../container/records';
import type { EngineContext } from './context';

/** The host's CPU time in nanoseconds (all CPUs, all states), as Docker reads it. */
export function systemCpuNs(): number {
  try {
    const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const ticks = line.trim().split(/\s+/).slice(1, 8).map(Number).reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0);
    return ticks * 1e7; // USER_HZ is 100 on Linux
  } catch {
    return 0;
  }
}

export interface StatsPoint {
  sample: Sample;
  system: number;
  read: string;
}

export async function statsPoint(ctx: EngineContext, rec: ContainerRecord): Promise<StatsPoint> {
  const s = await sampleAsync(ctx.store, rec);
  return { sample: s, system: systemCpuNs(), read: new Date(s.at).toISOString() };
}

const ZERO_TIME = '0001-01-01T00:00:00Z';

function cpuStats(p: StatsPoint | undefined, cpus: number): object {
  return {
    cpu_usage: { total_usage: p?.sample.cpuNs ?? 0, usage_in_kernelmode: 0, usage_in_usermode: p?.sample.cpuNs ?? 0 },
    system_cpu_usage: p?.system ?? 0,
    online_cpus: p ? cpus : 0,
    throttling_data: { periods: 0, throttled_periods: 0, throttled_time: 0 },
  };
}

/** Docker's stats object for `cur`, with `pre` as its precpu (a zero one when there is none). */
export function dockerStats(rec: ContainerRecord, cur: StatsPoint, pre?: StatsPoint): object {
  const s = cur.sample;
  const cpus = os.cpus().length || 1;
  const limit = s.memLimit > 0 ? s.memLimit : os.totalmem();
  return {
    read: cur.read,
    preread: pre?.read ?? ZERO_TIME,
    pids_stats: { current: s.pids },
    blkio_stats: {
      io_service_bytes_recursive: [
        { major: 0, minor: 0, op: 'read', value: s.blockRead },
        { major: 0, minor: 0, op: 'write', value: s.blockWrite },
      ],
      io_serviced_recursive: null,
      io_queue_recursive: null,
      io_service_time_recursive: null,
      io_wait_time_recursive: null,
      io_merged_recursive: null,
      io_time_recursive: null,
      sectors_recursive: null,
    },
    num_procs: 0,
    storage_stats: {},
    cpu_stats: cpuStats(cur, cpus),
    precpu_stats: cpuStats(pre, cpus),
    memory_stats: { usage: s.memUsage, limit, stats: {} },
    name: `/${rec.name}`,
    id: rec.id,
    networks: {
      eth0: { rx_bytes: s.netRx, rx_packets: 0, rx_errors: 0, rx_dropped: 0, tx_bytes: s.netTx, tx_packets: 0, tx_errors: 0, tx_dropped: 0 },
    },
  };
}
