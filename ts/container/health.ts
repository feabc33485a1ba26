/**
 * Healthchecks, Docker's way: the effective config (the user's merged over the image's, as
 * Docker's daemon merges them), its checks, and the state the container's monitor keeps in
 * D/health.json (crates/burrow-core/src/runtime/health.rs runs the probes; only it writes that
 * file). Read here for inspect's State.Health, ps's `(healthy)` and the `health` filter.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BurrowError } from '../errors';
import type { Healthcheck } from './records';

export type HealthStatus = 'starting' | 'healthy' | 'unhealthy';

/** Docker's HealthcheckResult. */
export interface HealthLogEntry {
  Start: string;
  End: string;
  ExitCode: number;
  Output: string;
}

/** Docker's State.Health. */
export interface HealthState {
  Status: HealthStatus;
  FailingStreak: number;
  Log: HealthLogEntry[];
}

const KEYS = ['Interval', 'Timeout', 'StartPeriod', 'StartInterval', 'Retries'] as const;

/**
 * The container's healthcheck: the user's fields over the image's (moby's daemon merge: a user
 * config without a test takes the image's test, and each zero duration the image's).
 */
export function mergeHealthcheck(user: Healthcheck | undefined, image: Partial<Healthcheck> | undefined): Healthcheck | undefined {
  if (!user) return image?.Test ? { ...image, Test: image.Test } : undefined;
  if (!image) return user;
  const out: Healthcheck = { ...user, Test: user.Test.length ? user.Test : (image.Test ?? []) };
  for (const k of KEYS) if (!out[k] && image[k]) out[k] = image[k];
  return out;
}

/**
 * Whether a healthcheck runs anything: a CMD or CMD-SHELL test with a command (not absent, not
 * `NONE`, not one Docker would not run either).
 */
export function healthcheckRuns(hc: Healthcheck | undefined): hc is Healthcheck {
  const t = hc?.Test ?? [];
  return (t[0] === 'CMD' || t[0] === 'CMD-SHELL') && t.length > 1;
}

/** Docker's checks of a healthcheck (the CLI's and the daemon's). */
export function checkHealthcheck(hc: Healthcheck): void {
  const t = hc.Test;
  if (t.length && !(t[0] === 'NONE' && t.length === 1) && !((t[0] === 'CMD' || t[0] === 'CMD-SHELL') && t.length > 1)) {
    throw new BurrowError('EUSAGE', `invalid healthcheck test ${JSON.stringify(t)}: want ["NONE"], ["CMD", ARGS...] or ["CMD-SHELL", COMMAND]`);
  }
  for (const k of ['Interval', 'Timeout', 'StartPeriod', 'StartInterval'] as const) {
    const v = hc[k];
    if (v === undefined) continue;
    if (!Number.isInteger(v) || v < 0) throw new BurrowError('EUSAGE', `invalid healthcheck: ${k} cannot be negative`);
    if (v !== 0 && v < 1_000_000) throw new BurrowError('EUSAGE', `invalid healthcheck: ${k} cannot be less than 1ms`);
  }
  if (hc.Retries !== undefined && (!Number.isInteger(hc.Retries) || hc.Retries < 0)) throw new BurrowError('EUSAGE', 'invalid healthcheck: Retries cannot be negative');
}

const UNITS: Record<string, number> = { ns: 1, us: 1e3, µs: 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };

/** A Go duration (`30s`, `1m30s`, `500ms`, `0`) in nanoseconds, as the docker CLI's flags take it. */
export function parseGoDuration(s: string, flag: string): number {
  const v = s.trim();
  if (v === '0') return 0;
  const m = /^([-+]?)((?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+$/.exec(v);
  if (!m) throw new BurrowError('EUSAGE', `invalid ${flag} ${s}: want a duration such as 30s, 1m30s or 500ms`);
  let ns = 0;
  for (const part of v.replace(/^[-+]/, '').matchAll(/(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/g)) ns += Number(part[1]) * UNITS[part[2]!]!;
  ns = Math.round(ns);
  if (m[1] === '-' && ns !== 0) throw new BurrowError('EUSAGE', `${flag} cannot be negative`);
  return ns;
}

export interface HealthFlags {
  healthCmd?: string;
  healthInterval?: string;
  healthTimeout?: string;
  healthRetries?: string;
  healthStartPeriod?: string;
  healthStartInterval?: string;
  /** commander's `--no-healthcheck`: false when given. */
  healthcheck?: boolean;
}

/** The docker CLI's --health-* and --no-healthcheck as a Healthcheck (undefined: none given). */
export function healthcheckFromFlags(f: HealthFlags): Healthcheck | undefined {
  const given = f.healthCmd !== undefined || f.healthInterval !== undefined || f.healthTimeout !== undefined || f.healthRetries !== undefined || f.healthStartPeriod !== undefined || f.healthStartInterval !== undefined;
  if (f.healthcheck === false) {
    if (given) throw new BurrowError('EUSAGE', '--no-healthcheck conflicts with --health-* options');
    return { Test: ['NONE'] };
  }
  if (!given) return undefined;
  const hc: Healthcheck = { Test: f.healthCmd ? ['CMD-SHELL', f.healthCmd] : [] };
  if (f.healthInterval !== undefined) hc.Interval = parseGoDuration(f.healthInterval, '--health-interval');
  if (f.healthTimeout !== undefined) hc.Timeout = parseGoDuration(f.healthTimeout, '--health-timeout');
  if (f.healthStartPeriod !== undefined) hc.StartPeriod = parseGoDuration(f.healthStartPeriod, '--health-start-period');
  if (f.healthStartInterval !== undefined) hc.StartInterval = parseGoDuration(f.healthStartInterval, '--health-start-interval');
  if (f.healthRetries !== undefined) {
    if (!/^-?\d+$/.test(f.healthRetries)) throw new BurrowError('EUSAGE', `invalid --health-retries ${f.healthRetries}: want a whole number`);
    const n = Number(f.healthRetries);
    if (n < 0) throw new BurrowError('EUSAGE', '--health-retries cannot be negative');
    hc.Retries = n;
  }
  return hc;
}

export const HEALTH_FILE = 'health.json';

function isHealthState(v: unknown): v is HealthState {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return (o.Status === 'starting' || o.Status === 'healthy' || o.Status === 'unhealthy') && typeof o.FailingStreak === 'number' && Array.isArray(o.Log);
}

/**
 * The container's State.Health, or undefined when it has no healthcheck. A running container
 * whose monitor has not written yet is `starting`; one that is not running is `unhealthy`, as
 * Docker reports a container whose health monitor has stopped; a created one has none.
 */
export function readHealth(hc: Healthcheck | undefined, dir: string, status: string): HealthState | undefined {
  // Docker's health monitor starts with the container: a created one has no Health yet.
  if (!healthcheckRuns(hc) || status === 'created') return undefined;
  const running = status === 'running' || status === 'paused';
  let st: HealthState = { Status: 'starting', FailingStreak: 0, Log: [] };
  try {
    const v: unknown = JSON.parse(fs.readFileSync(path.join(dir, HEALTH_FILE), 'utf8'));
    if (isHealthState(v)) st = v;
  } catch {
    /* not written yet, or from a run before */
  }
  return running ? st : { ...st, Status: 'unhealthy' };
}

/** Docker's ps filter value: starting, healthy, unhealthy, or none without a healthcheck. */
export function healthFilterValue(h: HealthState | undefined): HealthStatus | 'none' {
  return h ? h.Status : 'none';
}
