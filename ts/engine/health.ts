/**
 * `healthcheck run` (podman's command; the API has no endpoint for it): one probe of a running
 * container's healthcheck, now. The container's monitor runs it (SIGUSR1 asks it to, see
 * crates/burrow-runtime/src/commands/monitor.rs) and records it as any other probe: health.json
 * keeps one writer, and the result counts toward the status as podman's does.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BurrowError } from '../errors';
import { healthcheckRuns, HEALTH_FILE, type HealthLogEntry, type HealthState } from '../container/health';
import { Containers } from '../container/records';
import { containerState, holderPid } from '../container/state';
import type { EngineContext } from './context';

export interface HealthcheckRunReport {
  /** healthy when the probe succeeded (exit 0), else unhealthy. */
  result: 'healthy' | 'unhealthy';
  probe: HealthLogEntry;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function latestSince(dir: string, since: number): HealthLogEntry | undefined {
  try {
    const st = JSON.parse(fs.readFileSync(path.join(dir, HEALTH_FILE), 'utf8')) as HealthState;
    return st.Log.find((e) => Date.parse(e.Start) >= since);
  } catch {
    return undefined;
  }
}

export async function runHealthcheck(ctx: Pick<EngineContext, 'store'>, ref: string): Promise<HealthcheckRunReport> {
  const containers = new Containers(ctx.store);
  const rec = containers.find(ref);
  const dir = containers.dir(rec.id);
  if (!healthcheckRuns(rec.healthcheck)) {
    throw new BurrowError('ECONTAINER_STATE', `container ${rec.name} has no defined healthcheck`, 'give it one when you create it: --health-cmd CMD (or a HEALTHCHECK in its image)');
  }
  const st = containerState(rec, dir);
  const monitor = st.status === 'running' ? holderPid(dir) : undefined;
  if (monitor === undefined) throw new BurrowError('ECONTAINER_STATE', `container ${rec.name} is not running`, `start it first: burrow start ${rec.name}`);
  // Milliseconds: the probe's Start (nanoseconds) is taken after the monitor got the signal.
  const asked = Date.now();
  process.kill(monitor, 'SIGUSR1');
  // A probe that runs now is finished first; each may take its whole timeout.
  const timeoutMs = (rec.healthcheck.Timeout || 30e9) / 1e6;
  const end = Date.now() + 2 * timeoutMs + 10_000;
  for (let delay = 5; Date.now() < end; delay = Math.min(delay * 2, 100)) {
    const probe = latestSince(dir, asked);
    if (probe) return { result: probe.ExitCode === 0 ? 'healthy' : 'unhealthy', probe };
    if (containerState(rec, dir).status !== 'running') throw new BurrowError('ECONTAINER_STATE', `container ${rec.name} stopped before its healthcheck ran`);
    await sleep(delay);
  }
  throw new BurrowError('ERUNTIME', `the monitor of container ${rec.name} did not run its healthcheck`, 'see its state: burrow inspect --format {{json .State}} ' + rec.name);
}
