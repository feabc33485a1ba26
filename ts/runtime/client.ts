/**
 * The one client of burrow-runtime (DESIGN: ts/runtime): every spawn of the runtime goes through
 * here, with its global flags built in one place and its failures turned into BurrowErrors in
 * one place.
 *
 * The runtime reports to us on one structured channel, `--status-fd FD` (its global flag): newline-
 * delimited JSON, `{"pid": N}` once the container's (or exec'd) process exists, `{"error": MSG,
 * "code": CODE}` when it fails (a code of ts/errors-codes.ts), `{"exit": N[, "signal": S]}` when
 * the process ends, `{"restart": N}` from a monitor that restarted the container
 * (crates/burrow-core/src/runtime/status.rs). `RuntimeReport` and `parseReports` read it; every
 * spawn here passes it. What the runtime writes on stderr (runc's logrus lines, which podman and
 * containerd read, or under BURROW_RUNTIME_CLI=1 `Error: ...` for the user's terminal) is for
 * people: it is only shown, never parsed for a code.
 *
 * node:child_process is required only when a runtime is spawned: this module may be imported by
 * code that `images`, `ps` and `inspect` load without making them pay for it
 * (test/integration/startup.test.ts).
 */
import type { ChildProcess, SpawnOptions, StdioOptions } from 'node:child_process';
import { BurrowError, EXIT, exitCodeFor, isErrorCode, runtimeText, type ErrorCode } from '../errors';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { monitorBinary, runtimeBinary } from '../host/paths';
import { native } from '../native';

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
  /**
   * For the commands that create the container (run, monitor): `--systemd-cgroup` when its
   * cgroup manager is systemd (ts/container/cgroup.ts), and `--share-userns` (burrow's
   * containers join the user's shared user namespace for their id maps: docs/architecture.md).
   */
  cgroup?: boolean;
  /** `--log FILE --log-format json`: the runtime's errors, with their codes, as JSON lines in FILE. */
  log?: string;
}

/** The runtime's global flags for a container: `--root`, then `--systemd-cgroup`, `--share-userns` and `--log` when asked. */
export function globalFlags(target: RuntimeTarget, o: GlobalArgOptions = {}): string[] {
  const args = ['--root', target.runtimeRoot];
  if (o.cgroup && target.cgroupManager === 'systemd') args.push('--systemd-cgroup');
  if (o.cgroup) args.push('--share-userns');
  if (o.log !== undefined) args.push('--log', o.log, '--log-format', 'json');
  return args;
}

/** One message of the runtime's status channel. */
export type RuntimeReport =
  | { kind: 'pid'; pid: number }
  | { kind: 'error'; error: string; code: string }
  | { kind: 'exit'; exit: number; signal?: string }
  | { kind: 'restart'; restart: number };

/** One line of the channel, validated; undefined for anything else (never thrown on). */
export function parseReport(line: string): RuntimeReport | undefined {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const o = v as Record<string, unknown>;
  if (typeof o.pid === 'number') return { kind: 'pid', pid: o.pid };
  if (typeof o.error === 'string') return { kind: 'error', error: o.error, code: typeof o.code === 'string' ? o.code : 'ERUNTIME' };
  if (typeof o.exit === 'number') return { kind: 'exit', exit: o.exit, ...(typeof o.signal === 'string' ? { signal: o.signal } : {}) };
  if (typeof o.restart === 'number') return { kind: 'restart', restart: o.restart };
  return undefined;
}

/** Every report of a finished channel's text (a partial last line is not a report). */
export function parseReports(text: string): RuntimeReport[] {
  const lines = text.split('\n');
  lines.pop();
  return lines.map(parseReport).filter((r): r is RuntimeReport => r !== undefined);
}

/** Reads a live channel: calls `on` with each report as its line completes. */
export function readReports(stream: NodeJS.ReadableStream, on: (r: RuntimeReport) => void): void {
  let buf = '';
  stream.on('data', (d: Buffer | string) => {
    buf += d.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const r = parseReport(buf.slice(0, i));
      buf = buf.slice(i + 1);
      if (r) on(r);
    }
  });
  stream.on('error', () => undefined);
}

/** The global flag that opens the channel on `fd` (3: the first descriptor after stdio). */
export function statusFlags(fd = 3): string[] {
  return ['--status-fd', String(fd)];
}

/** What a finished channel said: the pid, the (last) failure, the exit. */
export interface RuntimeOutcome {
  pid?: number;
  failure?: { code: string; msg: string };
  exit?: number;
  signal?: string;
}

export function outcomeOf(reports: RuntimeReport[]): RuntimeOutcome {
  const o: RuntimeOutcome = {};
  for (const r of reports) {
    if (r.kind === 'pid') o.pid = r.pid;
    else if (r.kind === 'error') o.failure = { code: r.code, msg: r.error };
    else if (r.kind === 'exit') {
      o.exit = r.exit;
      if (r.signal !== undefined) o.signal = r.signal;
    }
  }
  return o;
}

/**
 * Docker's exit status of a foreground run or exec: the process's exit as reported; else, when
 * it failed before its program ran, the status of the error's code (127 not found, 126 cannot
 * invoke, 125 the engine's own); else `fallback` (the runtime's own exit, when it reported nothing).
 */
export function exitStatusOf(o: RuntimeOutcome, fallback: number): number {
  if (o.exit !== undefined) return o.exit;
  if (o.failure) return exitForRuntimeError(o.failure.code);
  return fallback;
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
  /** What it reported on its status channel. */
  reports: RuntimeReport[];
  /** Its failure as reported (the code and message), if any. */
  failure?: { code: string; msg: string };
}

/**
 * The status channel of a synchronous call: an unlinked temporary file, not a pipe. A pipe would
 * keep spawnSync waiting as long as anything holds its write end, and a created container's init
 * holds what the runtime had until it is started (`create` for cp and export).
 */
function statusFile(): number {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const os = require('node:os') as typeof import('node:os');
  const name = `burrow-status-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`;
  // TMPDIR first; then /tmp: a batch job's TMPDIR may not exist (yet, or any more: made by the
  // job, removed by its epilog, or carried by sbatch from a login node where it did exist).
  const dirs = [...new Set([os.tmpdir(), '/tmp', '/dev/shm'])];
  for (const [i, dir] of dirs.entries()) {
    const file = path.join(dir, name);
    let fd: number;
    try {
      fd = fs.openSync(file, 'wx+', 0o600);
    } catch (err) {
      if (i < dirs.length - 1 && ['ENOENT', 'ENOTDIR', 'EACCES', 'EROFS', 'ENOSPC', 'EDQUOT'].includes((err as NodeJS.ErrnoException).code ?? '')) continue;
      throw err;
    }
    fs.unlinkSync(file);
    return fd;
  }
  throw new Error('unreachable: the last directory throws');
}

function readStatusFile(fd: number): string {
  const chunks: Buffer[] = [];
  const buf = Buffer.alloc(4096);
  for (let pos = 0; ; ) {
    const n = fs.readSync(fd, buf, 0, buf.length, pos);
    if (n <= 0) break;
    chunks.push(Buffer.from(buf.subarray(0, n)));
    pos += n;
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Runs the runtime to completion, with its status channel on fd 3. */
export function runtimeSync(args: string[], o: SyncOptions = {}): SyncResult {
  const status = statusFile();
  try {
    return runSync(args, o, status);
  } finally {
    fs.closeSync(status);
  }
}

function runSync(args: string[], o: SyncOptions, statusFd: number): SyncResult {
  const stdio: StdioOptions = [o.input !== undefined ? 'pipe' : (o.stdin ?? 'ignore'), o.stdout ?? 'pipe', o.stderr ?? 'pipe', statusFd];
  const r = childProcess().spawnSync(runtimeBinary(), [...statusFlags(3), ...args], {
    encoding: 'utf8',
    stdio,
    ...(o.input !== undefined ? { input: o.input } : {}),
    ...(o.timeout !== undefined ? { timeout: o.timeout } : {}),
  });
  const stderr = r.stderr ?? '';
  const reports = parseReports(readStatusFile(statusFd));
  const failure = outcomeOf(reports).failure;
  return {
    code: r.status ?? 1,
    status: r.status,
    stdout: r.stdout ?? '',
    stderr,
    text: failure?.msg ?? runtimeText(stderr),
    reports,
    ...(failure ? { failure } : {}),
    ...(r.error ? { error: r.error } : {}),
  };
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

/** A runtime that a foreground run holds (runtimeSpawnHeld). */
export interface HeldRuntime {
  /** Passes a signal on (nothing once it has ended). */
  kill(sig: NodeJS.Signals): void;
  /** Stops keeping this process alive for it: after its exit report, while it waits for us to go. */
  unref(): void;
}

export interface HeldHandlers {
  /** Its stdin is ours (-i, -t); otherwise /dev/null. */
  inheritStdin: boolean;
  /** Each report of its status channel (fd 3). */
  onReport(r: RuntimeReport): void;
  /** Its end: its status, or the signal that ended it (both null: not known). Once. */
  onExit(code: number | null, signal: NodeJS.Signals | null): void;
}

/** The addon's spawnHeld, when the addon is there and has it (a checkout whose addon predates it does not). */
function addonSpawn(): typeof import('../native/binding').spawnHeld | undefined {
  try {
    const n = native();
    return typeof n.spawnHeld === 'function' ? n.spawnHeld : undefined;
  } catch {
    return undefined;
  }
}

/** What a foreground run's runtime gets beside our environment (a run plan's `runtime.env` too). */
export const HELD_RUNTIME_ENV: Readonly<Record<string, string>> = { BURROW_RUNTIME_CLI: '1' };

/**
 * Starts the runtime for a foreground run (`run` without -d: it holds the container), with its
 * status channel on fd 3, stdout and stderr ours, its errors in the CLI's voice
 * (BURROW_RUNTIME_CLI=1). Through the napi addon's posix_spawn (crates/burrow-core/src/spawn.rs):
 * Node's child_process costs a `burrow run` its loading (with node:net and node:stream) and a fork
 * of the whole Node process, several milliseconds each; it is the fallback without the addon.
 * Throws when the runtime cannot be started.
 */
export function runtimeSpawnHeld(args: string[], h: HeldHandlers): HeldRuntime {
  const env = { ...process.env, ...HELD_RUNTIME_ENV };
  const spawnHeld = addonSpawn();
  if (spawnHeld) {
    let ended = false;
    const held = spawnHeld(runtimeBinary(), args, Object.entries(env).map(([k, v]) => `${k}=${v ?? ''}`), h.inheritStdin, (line, code, signal) => {
      if (line !== null) {
        const r = parseReport(line);
        if (r) h.onReport(r);
        return;
      }
      if (ended) return;
      ended = true;
      h.onExit(code, signal === null ? null : signalName(signal));
    });
    // The addon's callback does not keep the event loop alive (the runtime of a --rm container
    // waits for us to exit, as before with an unreferenced child): this timer does until unref().
    // Made once the runtime runs (a spawn that throws leaves nothing to keep us), and before the
    // loop runs again, so that no report is missed.
    const alive = setInterval(() => undefined, 2 ** 30);
    return {
      kill: (sig) => void held.kill(signalNumber(sig)),
      unref: () => clearInterval(alive),
    };
  }
  const child = childProcess().spawn(runtimeBinary(), args, { stdio: [h.inheritStdin ? 'inherit' : 'ignore', 'inherit', 'inherit', 'pipe'], env });
  const status = child.stdio[3] as import('node:net').Socket;
  readReports(status, (r) => h.onReport(r));
  let ended = false;
  const end = (code: number | null, signal: NodeJS.Signals | null) => {
    if (ended) return;
    ended = true;
    h.onExit(code, signal);
  };
  child.on('error', () => end(null, null));
  child.on('exit', end);
  return {
    kill: (sig) => void child.kill(sig),
    unref: () => {
      status.unref();
      child.unref();
    },
  };
}

function osConstants(): typeof import('node:os').constants {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('node:os') as typeof import('node:os')).constants;
}

/** A signal's number on this system (undefined for a name it does not have). */
export function signalNumber(sig: NodeJS.Signals): number {
  return osConstants().signals[sig];
}

function signalName(n: number): NodeJS.Signals | null {
  const e = Object.entries(osConstants().signals).find(([, v]) => v === n);
  return e ? (e[0] as NodeJS.Signals) : null;
}

/**
 * burrow-monitor (host/paths.ts), for a process that stays: its path, or the error that names
 * the fix when it is missing (a checkout built before it existed, a packaged runtime without it).
 */
export function residentBinary(): string {
  const bin = monitorBinary();
  if (!fs.existsSync(bin)) {
    throw new BurrowError('ERUNTIME_MISSING', `burrow-monitor not found at ${bin}: burrow runs container monitors and the network owner from it`, 'run `npm run build:rust` (it builds burrow-runtime and burrow-monitor), or set BURROW_MONITOR to its path');
  }
  return bin;
}

/**
 * Starts a process that stays (a monitor, the network owner) from burrow-monitor, or from the
 * full runtime when `full` (a monitor that runs a healthcheck: its probes are execs, which only
 * burrow-runtime has). burrow-monitor is told where the runtime is: it creates and deletes its
 * container through it.
 */
export function residentSpawn(args: string[], o: { stdio: StdioOptions; full?: boolean }): ChildProcess {
  const opts: SpawnOptions = { stdio: o.stdio, detached: true };
  return childProcess().spawn(o.full ? runtimeBinary() : residentBinary(), args, opts);
}

/** Docker's status for a runtime failure, from the error code it reported (the code table's). */
export function exitForRuntimeError(code: string | undefined): number {
  return isErrorCode(code) ? exitCodeFor(code) : EXIT.ENGINE;
}

/** A failed runtime call: the code it reported and what it said. */
export interface RuntimeFailure {
  /** The stable code of its report, if any. */
  code?: string;
  /** A message already in plain text (a log line's msg, an answer's error), used as is. */
  msg?: string;
  /** Otherwise its stderr, in any of its forms: read through runtimeText. */
  stderr?: string;
}

/**
 * The BurrowError of a finished runtime call that failed: its reported failure (code and
 * message), else its stderr (in the CLI's voice).
 */
export function syncError(what: string | undefined, r: SyncResult, o: ErrorOptions = {}): BurrowError {
  return runtimeError(what, r.failure ? { code: r.failure.code, msg: r.failure.msg } : { msg: r.text || r.error?.message || `status ${r.code}` }, o);
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
