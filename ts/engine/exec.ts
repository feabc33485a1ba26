/**
 * Exec instances, as Docker's API has them: created with a config (`POST /containers/{id}/exec`),
 * started once (`POST /exec/{id}/start`, attached or detached), inspected (`GET /exec/{id}/json`)
 * for their state and exit code. An instance is a JSON file under its container's directory
 * (`exec/ID.json`), so a second service, or the next one, can inspect it; the process itself is a
 * child of the service that started it, which records its status when it ends.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { BurrowError } from '../errors';
import { DetachFilter, parseDetachKeys } from '../container/attach';
import { RESIZE_FD, startExec, startExecDetached, type ExecOptions } from '../container/exec';
import type { LogStream } from '../container/logs';
import { Containers, type ContainerRecord } from '../container/records';
import { containerState } from '../container/state';
import { readJson, writeJsonAtomic } from '../storage/fsutil';
import type { EngineContext } from './context';
import { emitEvent } from './events';

export interface ExecConfig {
  attachStdin: boolean;
  attachStdout: boolean;
  attachStderr: boolean;
  tty: boolean;
  env: string[];
  cmd: string[];
  user: string;
  workingDir: string;
  privileged: boolean;
  detachKeys: string;
  /** Docker's ConsoleSize: the terminal's first [rows, cols]. */
  consoleSize?: [number, number];
}

/** What `exec inspect` shows: Docker's ExecInspect. */
export interface ExecRecord {
  ID: string;
  ContainerID: string;
  Running: boolean;
  ExitCode: number | null;
  Pid: number;
  OpenStdin: boolean;
  OpenStdout: boolean;
  OpenStderr: boolean;
  CanRemove: boolean;
  DetachKeys: string;
  ProcessConfig: { tty: boolean; entrypoint: string; arguments: string[]; privileged: boolean; user: string };
  /** burrow's own: the environment and working directory asked for, and whether it was started. */
  Env: string[];
  WorkingDir: string;
  Started: boolean;
  ConsoleSize?: [number, number];
}

/** The terminals of the execs this service runs, by exec id: where their sizes are written. */
const terminals = new Map<string, import('node:stream').Writable>();

function sizeFrame(rows: number, cols: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt16BE(rows, 0);
  b.writeUInt16BE(cols, 2);
  return b;
}

/**
 * Resizes a running exec's terminal; false when this service does not hold it (no terminal,
 * ended, or started by another service).
 */
export function resizeExec(id: string, rows: number, cols: number): boolean {
  const t = terminals.get(id);
  if (!t || t.destroyed) return false;
  t.write(sizeFrame(rows, cols));
  return true;
}

function isExecRecord(v: unknown): v is ExecRecord {
  return typeof v === 'object' && v !== null && typeof (v as ExecRecord).ID === 'string' && typeof (v as ExecRecord).ContainerID === 'string';
}

function execDir(ctx: EngineContext, containerId: string): string {
  return path.join(new Containers(ctx.store).dir(containerId), 'exec');
}

function save(ctx: EngineContext, e: ExecRecord): void {
  const dir = execDir(ctx, e.ContainerID);
  if (!fs.existsSync(path.dirname(dir))) return; // the container was removed meanwhile
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeJsonAtomic(path.join(dir, `${e.ID}.json`), e);
}

function newId(): string {
  const b = Buffer.alloc(32);
  const fd = fs.openSync('/dev/urandom', 'r');
  try {
    fs.readSync(fd, b, 0, 32, null);
  } finally {
    fs.closeSync(fd);
  }
  return b.toString('hex');
}

function running(ctx: EngineContext, rec: ContainerRecord): boolean {
  return containerState(rec, new Containers(ctx.store).dir(rec.id)).status === 'running';
}

function actor(rec: ContainerRecord, e: ExecRecord): { ID: string; Attributes: Record<string, string> } {
  return { ID: rec.id, Attributes: { name: rec.name, image: rec.imageName, execID: e.ID, ...rec.labels } };
}

export function createExec(ctx: EngineContext, rec: ContainerRecord, c: ExecConfig): ExecRecord {
  if (!c.cmd.length) throw new BurrowError('EUSAGE', 'No exec command specified');
  if (c.detachKeys) parseDetachKeys(c.detachKeys);
  if (!running(ctx, rec)) throw new BurrowError('ECONTAINER_STATE', `Container ${rec.id} is not running`);
  const e: ExecRecord = {
    ID: newId(),
    ContainerID: rec.id,
    Running: false,
    ExitCode: null,
    Pid: 0,
    OpenStdin: c.attachStdin,
    OpenStdout: c.attachStdout,
    OpenStderr: c.attachStderr,
    CanRemove: false,
    DetachKeys: c.detachKeys,
    ProcessConfig: { tty: c.tty, entrypoint: c.cmd[0]!, arguments: c.cmd.slice(1), privileged: c.privileged, user: c.user },
    Env: c.env,
    WorkingDir: c.workingDir,
    Started: false,
    ...(c.consoleSize ? { ConsoleSize: c.consoleSize } : {}),
  };
  save(ctx, e);
  emitEvent(ctx, { Type: 'container', Action: `exec_create: ${c.cmd.join(' ')}`, Actor: actor(rec, e) });
  return e;
}

/** An exec instance by its id (or a unique prefix of it), in any container of the store. */
export function findExec(ctx: EngineContext, id: string): ExecRecord {
  if (!/^[0-9a-f]{1,64}$/.test(id)) throw new BurrowError('ECONTAINER_NOT_FOUND', `No such exec instance: ${id}`);
  const found: ExecRecord[] = [];
  for (const rec of new Containers(ctx.store).all()) {
    const dir = execDir(ctx, rec.id);
    let names: string[];
    try {
      names = fs.readdirSync(dir);
    } catch {
      continue;
    }
    for (const n of names) if (n.endsWith('.json') && n.startsWith(id)) {
      const e = readJson(path.join(dir, n), isExecRecord);
      if (e) found.push(e);
    }
  }
  if (found.length !== 1) throw new BurrowError('ECONTAINER_NOT_FOUND', `No such exec instance: ${id}`);
  return found[0]!;
}

export interface ExecIO {
  input?: Readable;
  output(stream: LogStream, data: Buffer): void | Promise<void>;
  signal: AbortSignal;
}

function options(e: ExecRecord, tty: boolean, detach: boolean): ExecOptions {
  return {
    interactive: e.OpenStdin,
    tty,
    detach,
    resizeFd: tty && !detach,
    ...(e.ConsoleSize ? { consoleSize: { rows: e.ConsoleSize[0], cols: e.ConsoleSize[1] } } : {}),
    env: e.Env,
    ...(e.ProcessConfig.user ? { user: e.ProcessConfig.user } : {}),
    ...(e.WorkingDir ? { workdir: e.WorkingDir } : {}),
  };
}

function claim(ctx: EngineContext, e: ExecRecord, rec: ContainerRecord): void {
  if (e.Started) throw new BurrowError('ECONTAINER_STATE', `exec instance ${e.ID} has already been started`);
  if (!running(ctx, rec)) throw new BurrowError('ECONTAINER_STATE', `Container ${rec.id} is not running`);
  e.Started = true;
  e.Running = true;
  save(ctx, e);
}

function ended(ctx: EngineContext, rec: ContainerRecord, e: ExecRecord, code: number): void {
  e.Running = false;
  e.ExitCode = code;
  save(ctx, e);
  emitEvent(ctx, { Type: 'container', Action: 'exec_die', Actor: { ...actor(rec, e), Attributes: { ...actor(rec, e).Attributes, exitCode: String(code) } } });
}

/** `Detach: true`: starts it and returns once it runs; its status is recorded when it ends. */
export async function startExecDetachedInstance(ctx: EngineContext, e: ExecRecord, tty: boolean): Promise<void> {
  const rec = new Containers(ctx.store).find(e.ContainerID);
  claim(ctx, e, rec);
  emitEvent(ctx, { Type: 'container', Action: `exec_start: ${[e.ProcessConfig.entrypoint, ...e.ProcessConfig.arguments].join(' ')}`, Actor: actor(rec, e) });
  const code = await startExecDetached(ctx.store, rec, [e.ProcessConfig.entrypoint, ...e.ProcessConfig.arguments], options(e, tty, true), (c) => ended(ctx, rec, e, c), (pid) => {
    e.Pid = pid;
    save(ctx, e);
  });
  if (code !== 0) ended(ctx, rec, e, code);
}

/**
 * Starts it attached: its output to `io.output` (all of it as stdout with a terminal), the
 * client's input to its stdin (the detach keys end the relay and leave it running). Resolves
 * with its status once it ends, or undefined when the client detached or went away first (the
 * process then runs on, its status still recorded when it ends).
 */
export async function runExecInstance(ctx: EngineContext, e: ExecRecord, tty: boolean, io: ExecIO): Promise<number | undefined> {
  const rec = new Containers(ctx.store).find(e.ContainerID);
  claim(ctx, e, rec);
  emitEvent(ctx, { Type: 'container', Action: `exec_start: ${[e.ProcessConfig.entrypoint, ...e.ProcessConfig.arguments].join(' ')}`, Actor: actor(rec, e) });
  let p: ReturnType<typeof startExec>;
  try {
    p = startExec(ctx.store, rec, [e.ProcessConfig.entrypoint, ...e.ProcessConfig.arguments], options(e, tty, false), [e.OpenStdin ? 'pipe' : 'ignore', 'pipe', 'pipe', 'ignore', ...(tty ? (['pipe'] as const) : [])]);
  } catch (err) {
    ended(ctx, rec, e, 126);
    throw err;
  }
  const { child, done } = p;
  const term = tty ? (child.stdio[RESIZE_FD] as import('node:stream').Writable | null) : null;
  if (term) {
    term.on('error', () => undefined); // EPIPE once it exited
    terminals.set(e.ID, term);
    void done.finally(() => {
      terminals.delete(e.ID);
      term.destroy();
    });
  }
  if (child.pid) {
    e.Pid = child.pid;
    save(ctx, e);
  }
  let relaying = true;
  const relayOut = (s: LogStream) => (d: Buffer) => {
    if (!relaying) return; // the client is gone: drained and dropped, so the process never blocks
    if (!(s === 'stdout' ? e.OpenStdout : e.OpenStderr) && !tty) return;
    const r = io.output(s, d);
    if (r) {
      const from = s === 'stdout' ? child.stdout! : child.stderr!;
      from.pause();
      void r.finally(() => from.resume());
    }
  };
  child.stdout!.on('data', relayOut('stdout'));
  child.stderr!.on('data', relayOut('stderr'));
  const filter = new DetachFilter(parseDetachKeys(e.DetachKeys || undefined));
  const left = new AbortController();
  const onData = (d: Buffer) => {
    const { out, detach } = filter.feed(d);
    if (out.length && child.stdin?.writable && !child.stdin.write(out)) {
      io.input?.pause();
      child.stdin.once('drain', () => io.input?.resume());
    }
    if (detach) left.abort();
  };
  const onEnd = () => child.stdin?.end();
  child.stdin?.on('error', () => undefined); // EPIPE once it exited
  if (io.input && child.stdin) {
    io.input.on('data', onData);
    io.input.on('end', onEnd);
  }
  const onGone = () => left.abort();
  io.signal.addEventListener('abort', onGone, { once: true });
  const finished = done.then((code) => {
    ended(ctx, rec, e, code);
    return code;
  });
  const r = await Promise.race([finished, new Promise<undefined>((resolve) => left.signal.addEventListener('abort', () => resolve(undefined), { once: true }))]);
  io.signal.removeEventListener('abort', onGone);
  if (io.input) {
    io.input.off('data', onData);
    io.input.off('end', onEnd);
  }
  if (r === undefined) {
    relaying = false;
    child.stdout!.resume();
    child.stderr!.resume();
    child.stdin?.end();
    // It runs on without us: it must not keep the service alive (its status is still recorded
    // if the service is there when it ends).
    child.unref();
    for (const s of child.stdio) (s as { unref?: () => void } | null)?.unref?.();
    return undefined;
  }
  // What the pipes still hold once the process is gone.
  await new Promise<void>((resolve) => (child.stdout!.readableEnded ? resolve() : child.stdout!.once('close', () => resolve())));
  return r;
}
