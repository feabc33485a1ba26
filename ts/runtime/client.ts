/**
 * The one client of burrow-runtime (DESIGN: ts/runtime): every spawn of the runtime goes through
 * here, with its global flags built in one place and its failures turned into BurrowErrors in
 * one place.
 *
 * The runtime reports errors in three forms: with `--log FILE --log-format json`, JSON lines
 * `{level,msg,time,code}` in FILE (the code is stable); on stderr, runc's logrus lines (what
 * podman and containerd read) or, under BURROW_RUNTIME_CLI=1, `Error: ...` for the user's
 * terminal. runtimeText (ts/errors.ts) reads the stderr forms.
 *
 * node:child_process is required only when a runtime is spawned: this module may be imported by
 * code that `images`, `ps` and `inspect` load without making them pay for it
 * (test/integration/startup.test.ts).
 */
import type { ChildProcess, SpawnOptions, StdioOptions } from 'node:child_process';
import * as fs from 'node:fs';
import { BurrowError, EXIT, runtimeText, type ErrorCode } from '../errors';
import { runtimeBinary } from '../host/paths';

export { runtimeBinary };

function childProcess(): typeof import('node:child_process') {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('node:child_process') as typeof import('node:child_process');
}

/** The part of a container record the runtime's global flags come from. */
export interface RuntimeTarget {
  runtimeRoot: string;
  cgroupManager?: 'systemd';
}

export interface GlobalArgOptions {
  /** `--systemd-cgroup` when the container's cgroup manager is systemd (ts/container/cgroup.ts): for the commands that create cgroups. */
  cgroup?: boolean;
  /** `--log FILE --log-format json`: the runtime's errors, with their codes, as JSON lines in FILE. */
  log?: string;
}

/** The runtime's global flags for a container: `--root`, then `--systemd-cgroup` and `--log` when asked. */
export function globalFlags(target: RuntimeTarget, o: GlobalArgOptions = {}): string[] {
  const args = ['--root', target.runtimeRoot];
  if (o.cgroup && target.cgroupManager === 'systemd') args.push('--systemd-cgroup');
  if (o.log !== undefined) args.push('--log', o.log, '--log-format', 'json');
  return args;
}

export interface SyncOptions {
  /** Where the runtime's stdin, stdout and stderr go; all 'pipe' by default (stdin 'ignore'). */
  stdin?: 'ignore' | 'pipe';
  stdout?: 'ignore' | 'pipe';
  stderr?: 'ignore' | 'pipe' | number;
  /** Written to its stdin (which is then a pipe). */
  input?: string;
  timeout?: number;
}

export interface SyncResult {
  /** Its exit status; 1 when it has none (killed, or it could not be started). */
  code: number;
  /** The raw exit status (null when killed by a signal or not started). */
  status: number | null;
  stdout: string;
  /** What it wrote on stderr, as written. */
  stderr: string;
  /** The same in the CLI's voice (runtimeText). */
  text: string;
  /** Why it could not be started (or timed out), if so. */
  error?: Error;
}

/** Runs the runtime to completion. */
export function runtimeSync(args: string[], o: SyncOptions = {}): SyncResult {
  const stdio: StdioOptions = [o.input !== undefined ? 'pipe' : (o.stdin ?? 'ignore'), o.stdout ?? 'pipe', o.stderr ?? 'pipe'];
  const r = childProcess().spawnSync(runtimeBinary(), args, {
    encoding: 'utf8',
    stdio,
    ...(o.input !== undefined ? { input: o.input } : {}),
    ...(o.timeout !== undefined ? { timeout: o.timeout } : {}),
  });
  const stderr = r.stderr ?? '';
  return { code: r.status ?? 1, status: r.status, stdout: r.stdout ?? '', stderr, text: runtimeText(stderr), ...(r.error ? { error: r.error } : {}) };
}

/**
 * Starts the runtime and returns its process: the foreground run and exec (stdio inherited),
 * export's tar stream, the unpacker, the monitor. `cli` sets BURROW_RUNTIME_CLI=1: its errors go
 * straight to the user's terminal, in the CLI's voice.
 */
export function runtimeSpawn(args: string[], o: { stdio: StdioOptions; detached?: boolean; cli?: boolean }): ChildProcess {
  const opts: SpawnOptions = { stdio: o.stdio };
  if (o.cli) opts.env = { ...process.env, BURROW_RUNTIME_CLI: '1' };
  if (o.detached) opts.detached = true;
  return childProcess().spawn(runtimeBinary(), args, opts);
}

/** One line of the runtime's `--log-format json`. */
export interface LogLine {
  level?: string;
  code?: string;
  msg?: string;
}

/** The JSON lines of a log file; none when it does not exist. Lines that are not JSON count as `{}`. */
export function loggedLines(logFile: string): LogLine[] {
  let text: string;
  try {
    text = fs.readFileSync(logFile, 'utf8');
  } catch {
    return [];
  }
  return parseLog(text);
}

export function parseLog(text: string): LogLine[] {
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      try {
        return JSON.parse(l) as LogLine;
      } catch {
        return {};
      }
    });
}

/** The last error the runtime logged, if any. */
export function loggedError(logFile: string): LogLine | undefined {
  return loggedLines(logFile)
    .filter((e) => e.level === 'error')
    .pop();
}

/** Docker's statuses for a runtime failure, from the error code it logged. */
export function exitForRuntimeError(code: string | undefined): number {
  if (code === 'ECMD_NOT_FOUND') return EXIT.NOT_FOUND;
  if (code === 'ECMD_CANNOT_INVOKE') return EXIT.CANNOT_INVOKE;
  return EXIT.ENGINE;
}

/** A failed runtime call: the code it logged (or answered) and what it said. */
export interface RuntimeFailure {
  /** The stable code of its JSON log line or answer, if any. */
  code?: string;
  /** A message already in plain text (a log line's msg, an answer's error), used as is. */
  msg?: string;
  /** Otherwise its stderr, in any of its forms: read through runtimeText. */
  stderr?: string;
}

/** The runtime's codes that keep their name by default: those with their own exit status. */
const KEPT: readonly ErrorCode[] = ['ECMD_NOT_FOUND', 'ECMD_CANNOT_INVOKE'];

export interface ErrorOptions {
  /** The code when the runtime's is not one of `keep` (ERUNTIME). */
  fallback?: ErrorCode;
  /** The runtime's codes that keep their name (ECMD_NOT_FOUND, ECMD_CANNOT_INVOKE). */
  keep?: readonly ErrorCode[];
  fix?: string;
}

/**
 * The BurrowError for a failed runtime call: the runtime's own code when it is one of `keep`,
 * else `fallback`; the message is `what: ` and what the runtime said (just the latter without
 * `what`).
 */
export function runtimeError(what: string | undefined, f: RuntimeFailure, o: ErrorOptions = {}): BurrowError {
  const keep = o.keep ?? KEPT;
  const code = f.code !== undefined && (keep as readonly string[]).includes(f.code) ? (f.code as ErrorCode) : (o.fallback ?? 'ERUNTIME');
  const said = f.msg ?? runtimeText(f.stderr ?? '');
  return new BurrowError(code, what === undefined ? said : `${what}: ${said}`, o.fix);
}
