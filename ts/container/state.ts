/**
 * A container's status, derived from what is on disk and in /proc — never a stored "running"
 * that a killed process could leave stale: the runtime's state (init pid and its start time),
 * the exit record its holder writes, and the pid of that holder (the detached monitor, or the
 * runtime's foreground `run`), recorded in monitor.json before `started`.
 *
 * Each file of a container's directory D has one writer (removing the files of the previous run
 * before a new holder starts, clearRun in lifecycle.ts, is not writing them):
 * - record.json, bundle/, etc/, upper/ …: the engine (ts/container/create.ts, records.ts), at
 *   create, rename and update.
 * - monitor.json, started, exit.json, restart.json: the holder
 *   (crates/burrow-core/src/runtime/holder.rs: the monitor, or `burrow-runtime run --dir`).
 * - ctr.log: the monitor (appended across restarts); attach.sock: its attach server.
 * - health.json: the monitor's healthcheck (crates/burrow-core/src/runtime/health.rs), read by
 *   ts/container/health.ts.
 * - lost.json: this module (recordLostExit), only when the holder died before its exit record,
 *   written once with link(2). It used to be exit.json, which then had two writers.
 * - stopped-by-user: lifecycle.ts (stop, kill, rm), read by the holder: no restart after it.
 * - runtime.log: none any more (the runtime's `--log` of older versions; removed by a new run).
 * - The runtime's own state is in rec.runtimeRoot, written by burrow-runtime only.
 *
 * Every file this module and records.ts read is replaced whole by a rename, created or removed,
 * never rewritten in place: the API service caches them while their directory is unchanged
 * (dir-cache.ts), and only such changes show in the directory. A new file read here must be
 * written the same way.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { dirReader, type DirReader } from './dir-cache';
import type { ContainerRecord } from './records';

export type Status = 'created' | 'running' | 'exited';

export interface RestartRecord {
  count: number;
  restarting: boolean;
}

export interface ExitRecord {
  exitCode: number;
  finishedAt: string;
  oomKilled?: boolean;
  reason?: string;
}

export interface ContainerState {
  status: Status;
  pid: number;
  exitCode: number;
  startedAt?: string;
  finishedAt?: string;
  oomKilled: boolean;
  error?: string;
  monitorPid?: number;
  /** How many times a restart policy restarted it (Docker's RestartCount). */
  restartCount: number;
  /** Exited, and its holder is about to restart it (Docker's Restarting). */
  restarting?: boolean;
  /**
   * Created or running: whether the runtime placed it in cgroups of its own. Without, nothing
   * can pause it and it is never paused (burrow-runtime's `state` judges so too), so its cgroup
   * need not be looked at.
   */
  cgroups?: boolean;
  /**
   * The init is gone but its holder is still writing the last output and the exit record:
   * `exitCode` is not known yet (a few milliseconds).
   */
  pending?: boolean;
}

/**
 * The status a container gets when its holder died before recording the exit: the status is
 * unknowable (the init was not our child), so, as containerd does for a dead shim, 255.
 */
export const LOST_EXIT_CODE = 255;

/** Big enough for any /proc/PID/stat line (about 52 numbers and a 16-byte name). */
const statBuf = Buffer.alloc(4096);

/**
 * /proc/PID/stat in one read: `ps` and GET /containers/json ask it of every running container,
 * and readFileSync's fstat and second read (for EOF) cost a quarter more.
 */
function readProcStat(pid: number): string {
  const fd = fs.openSync(`/proc/${pid}/stat`, 'r');
  try {
    const n = fs.readSync(fd, statBuf, 0, statBuf.length, null);
    if (n < statBuf.length) return statBuf.toString('latin1', 0, n);
  } finally {
    fs.closeSync(fd);
  }
  return fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
}

/** Start time of a process in clock ticks (field 22 of /proc/PID/stat); undefined if gone or a zombie. */
export function procStartTime(pid: number): number | undefined {
  try {
    const stat = readProcStat(pid);
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (rest[0] === 'Z' || rest[0] === 'X') return undefined;
    return Number(rest[19]);
  } catch {
    return undefined;
  }
}

export interface HolderRecord {
  pid: number;
  startTime: number;
  startedAt?: string;
}

interface RuntimeState {
  pid: number;
  initStartTime: number;
  created: string;
  /** The cgroups the runtime placed the container in; null when none of its own (absent: an older runtime, unknown). */
  cgroups?: unknown;
}

// Paths in this module are joined as `${dir}/${name}`, not with path.join (a tenth of a listing's
// time): the directories are absolute and normalized already (the store's paths, the record's
// runtimeRoot). Files are read through dir-cache.ts: live, or in the service cached while their
// directory is unchanged; /proc is always read live.

const parseJson = (text: string | undefined): unknown => {
  try {
    return text === undefined ? undefined : (JSON.parse(text) as unknown);
  } catch {
    return undefined;
  }
};

/** The runtime's directory of a container (state.json, start.sock). */
const runtimeDir = (rec: ContainerRecord): string => `${rec.runtimeRoot}/${rec.id}`;

export function runtimeState(rec: ContainerRecord, files: DirReader = dirReader(runtimeDir(rec))): RuntimeState | undefined {
  return parseJson(files.text('state.json')) as RuntimeState | undefined;
}

function isExitRecord(v: unknown): v is ExitRecord {
  return typeof v === 'object' && v !== null && typeof (v as ExitRecord).exitCode === 'number';
}

/** The exit record: the holder's, else the one this module made for a holder that died. */
export function readExit(dir: string, files: DirReader = dirReader(dir)): ExitRecord | undefined {
  for (const f of ['exit.json', 'lost.json']) {
    const v = parseJson(files.text(f));
    if (isExitRecord(v)) return v;
  }
  return undefined;
}

/** The holder's restart record (none: never restarted). */
export function readRestarts(dir: string, files: DirReader = dirReader(dir)): RestartRecord {
  const v = parseJson(files.text('restart.json'));
  if (typeof v === 'object' && v !== null && typeof (v as RestartRecord).count === 'number') {
    return { count: (v as RestartRecord).count, restarting: (v as RestartRecord).restarting === true };
  }
  return { count: 0, restarting: false };
}

/** The live holder's pid, if monitor.json names a process that is still that process. */
export function holderPid(dir: string, files: DirReader = dirReader(dir)): number | undefined {
  const text = files.text('monitor.json');
  if (text === undefined) return undefined;
  try {
    const m = JSON.parse(text) as HolderRecord;
    if (m.pid > 0 && procStartTime(m.pid) === m.startTime) return m.pid;
  } catch {
    /* no holder */
  }
  return undefined;
}

/**
 * Records the exit of a container whose holder died first. Written once, without replacing a
 * record that appears meanwhile (link(2) fails on an existing name), so every reader agrees on
 * one finish time.
 */
function recordLostExit(dir: string): ExitRecord | undefined {
  const rec: ExitRecord = { exitCode: LOST_EXIT_CODE, finishedAt: new Date().toISOString(), reason: 'exit status unknown: the container ended while its monitor was not running' };
  const tmp = path.join(dir, `lost.json.${process.pid}`);
  try {
    fs.writeFileSync(tmp, JSON.stringify(rec));
    fs.linkSync(tmp, path.join(dir, 'lost.json'));
  } catch {
    /* someone else recorded it, or the directory is gone (removed meanwhile) */
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  return readExit(dir);
}

/**
 * The container's state now. `files` reads its directory `dir` (a caller that looked at the
 * directory already passes its reader, so that the directory is stat'ed once).
 */
export function containerState(rec: ContainerRecord, dir: string, files: DirReader = dirReader(dir)): ContainerState {
  // Before the exit record: a holder that restarts the container writes it first.
  const restarts = readRestarts(dir, files);
  const restartCount = restarts.count;
  let exit = readExit(dir, files);
  // Absent: never started.
  const startedAt = files.text('started')?.trim();
  const done = (e: ExitRecord): ContainerState => {
    // Restarting only while the holder that will restart it lives.
    const restarting = restarts.restarting && holderPid(dir, files) !== undefined;
    return {
      status: 'exited',
      pid: 0,
      exitCode: e.exitCode,
      finishedAt: e.finishedAt,
      oomKilled: !!e.oomKilled,
      restartCount,
      ...(restarting ? { restarting } : {}),
      ...(startedAt ? { startedAt } : {}),
      ...(e.reason ? { error: e.reason } : {}),
    };
  };
  if (exit) return done(exit);
  const runtimeFiles = dirReader(runtimeDir(rec));
  const rs = runtimeState(rec, runtimeFiles);
  // The holder is looked up only where the answer depends on it: a live init says enough (ps
  // and GET /containers/json of running containers read two /proc files fewer each). Whether
  // the init lives is always asked of /proc: nothing on disk changes when it dies unseen.
  if (rs && rs.pid > 0 && procStartTime(rs.pid) === rs.initStartTime) {
    const created = runtimeFiles.exists('start.sock');
    return { status: created ? 'created' : 'running', pid: rs.pid, exitCode: 0, oomKilled: false, restartCount, cgroups: rs.cgroups !== null, ...(startedAt ? { startedAt } : {}) };
  }
  if (!startedAt) return { status: 'created', pid: 0, exitCode: 0, oomKilled: false, restartCount };
  const monitorPid = holderPid(dir, files);
  if (monitorPid) {
    // The holder writes the exit record right after it reaps the init (and drains the last
    // output): wait a little rather than show a status without its exit code.
    const end = Date.now() + 250;
    for (;;) {
      exit = readExit(dir);
      if (exit) return done(exit);
      if (Date.now() > end || holderPid(dir) === undefined) break;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
    }
    if (holderPid(dir)) return { status: 'exited', pid: 0, exitCode: -1, oomKilled: false, restartCount, startedAt, monitorPid, pending: true };
  }
  // Started, no exit record, init gone, nobody holding it: the holder died before the end.
  exit = readExit(dir) ?? recordLostExit(dir);
  return exit ? done(exit) : { status: 'exited', pid: 0, exitCode: LOST_EXIT_CODE, oomKilled: false, restartCount, startedAt };
}
