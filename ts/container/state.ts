/**
 * A container's status, derived from what is on disk and in /proc — never a stored "running"
 * that a killed process could leave stale: the runtime's state (init pid and its start time),
 * the exit record the monitor writes, and the monitor's own pid.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ContainerRecord } from './records';

export type Status = 'created' | 'running' | 'exited';

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
}

/** Start time of a process in clock ticks (field 22 of /proc/PID/stat); undefined if gone or a zombie. */
export function procStartTime(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (rest[0] === 'Z' || rest[0] === 'X') return undefined;
    return Number(rest[19]);
  } catch {
    return undefined;
  }
}

interface RuntimeState {
  pid: number;
  initStartTime: number;
  created: string;
}

export function runtimeState(rec: ContainerRecord): RuntimeState | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(rec.runtimeRoot, rec.id, 'state.json'), 'utf8')) as RuntimeState;
  } catch {
    return undefined;
  }
}

export function readExit(dir: string): ExitRecord | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, 'exit.json'), 'utf8')) as ExitRecord;
  } catch {
    return undefined;
  }
}

export function containerState(rec: ContainerRecord, dir: string): ContainerState {
  const exit = readExit(dir);
  let monitorPid: number | undefined;
  try {
    const m = JSON.parse(fs.readFileSync(path.join(dir, 'monitor.json'), 'utf8')) as { pid: number; startTime: number; startedAt?: string };
    if (procStartTime(m.pid) === m.startTime) monitorPid = m.pid;
  } catch {
    /* no monitor */
  }
  let startedAt: string | undefined;
  try {
    startedAt = fs.readFileSync(path.join(dir, 'started'), 'utf8').trim();
  } catch {
    /* never started */
  }
  if (exit) {
    return { status: 'exited', pid: 0, exitCode: exit.exitCode, finishedAt: exit.finishedAt, oomKilled: !!exit.oomKilled, ...(startedAt ? { startedAt } : {}), ...(exit.reason ? { error: exit.reason } : {}) };
  }
  const rs = runtimeState(rec);
  if (rs && rs.pid > 0 && procStartTime(rs.pid) === rs.initStartTime) {
    const created = fs.existsSync(path.join(rec.runtimeRoot, rec.id, 'start.sock'));
    return { status: created ? 'created' : 'running', pid: rs.pid, exitCode: 0, oomKilled: false, ...(startedAt ? { startedAt } : {}), ...(monitorPid ? { monitorPid } : {}) };
  }
  if (!startedAt) return { status: 'created', pid: 0, exitCode: 0, oomKilled: false };
  // Started, no exit record, init gone: the monitor died before it could record the end.
  return { status: 'exited', pid: 0, exitCode: -1, oomKilled: false, startedAt, error: 'exit status unknown: the container ended while its monitor was not running' };
}
