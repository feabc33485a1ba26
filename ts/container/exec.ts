/**
 * `exec`: a process in a running container, through burrow-runtime exec. The CLI runs it on its
 * own stdio (execIn); the API service on pipes it relays to a hijacked connection (startExec).
 * With a terminal, `burrow-runtime exec --tty` makes the pty itself and relays between the
 * master and its own stdio, so pipes are all either front end needs. The runtime reports on fd 3
 * (ts/runtime/client.ts): the process's pid once it exists, why it could not start it (the code
 * decides 126/127/125), its exit.
 */
import type { ChildProcess, StdioOptions } from 'node:child_process';
import type { Socket } from 'node:net';
import * as os from 'node:os';
import { BurrowError, EXIT } from '../errors';
import { exitStatusOf, globalFlags, readReports, runtimeSpawn, statusFlags, type RuntimeOutcome } from '../runtime/client';
import type { Store } from '../storage/store';
import type { ContainerRecord } from './records';
import { containerState } from './state';
import { Containers } from './records';

/** The runtime's status fd (its JSON reports). */
const STATUS_FD = 3;
/** The descriptor an exec's terminal sizes go to (`--resize-fd`). */
export const RESIZE_FD = 4;

export interface ExecOptions {
  interactive: boolean;
  tty: boolean;
  detach: boolean;
  env: string[];
  user?: string;
  workdir?: string;
  /**
   * The value of a bare `-e NAME` (the CLI: its own environment's). Absent: such an entry is
   * dropped, as Docker's API drops an `Env` entry without `=`.
   */
  envLookup?: (name: string) => string | undefined;
  /**
   * With a terminal: the runtime reads sizes for it from its descriptor RESIZE_FD (`--resize-fd`),
   * which the caller's stdio makes a pipe (the API's exec resize).
   */
  resizeFd?: boolean;
  /** With a terminal: its size from the start. */
  consoleSize?: { rows: number; cols: number };
}

/** A started exec: its process, and Docker's status for it once it ends (126/127, 125 for ours). */
export interface ExecProcess {
  child: ChildProcess;
  done: Promise<number>;
}

function checkRunning(store: Store, rec: ContainerRecord): void {
  if (containerState(rec, new Containers(store).dir(rec.id)).status !== 'running') {
    throw new BurrowError('ECONTAINER_STATE', `container ${rec.name} is not running`, `start it first: burrow start ${rec.name}`);
  }
}

function execArgs(rec: ContainerRecord, command: string[], o: ExecOptions): string[] {
  const args = [...globalFlags(rec), ...statusFlags(STATUS_FD), 'exec'];
  if (o.tty && !o.detach) args.push('--tty');
  if (o.tty && !o.detach && o.resizeFd) args.push('--resize-fd', String(RESIZE_FD));
  if (o.tty && !o.detach && o.consoleSize) args.push('--console-size', `${o.consoleSize.rows}x${o.consoleSize.cols}`);
  for (const e of o.env) {
    if (e.includes('=')) args.push('--env', e);
    else if (o.envLookup) args.push('--env', `${e}=${o.envLookup(e) ?? ''}`);
  }
  if (o.user) args.push('--user', o.user);
  if (o.workdir) args.push('--cwd', o.workdir);
  args.push(rec.id, ...command);
  return args;
}

/**
 * Starts the exec's process on `stdio` (its first three; not detached: the caller relays or
 * inherits). Throws when the container is not running.
 */
export function startExec(store: Store, rec: ContainerRecord, command: string[], o: ExecOptions, stdio: StdioOptions, cli = false): ExecProcess {
  checkRunning(store, rec);
  const base = Array.isArray(stdio) ? stdio : [stdio, stdio, stdio];
  const extra = o.tty && o.resizeFd ? ['pipe' as const] : [];
  const child = runtimeSpawn(execArgs(rec, command, { ...o, detach: false }), { stdio: [base[0], base[1], base[2], 'pipe', ...extra], cli });
  const said: RuntimeOutcome = {};
  readReports(child.stdio[STATUS_FD] as Socket, (r) => {
    if (r.kind === 'error') said.failure = { code: r.code, msg: r.error };
    if (r.kind === 'exit') said.exit = r.exit;
  });
  const done = new Promise<number>((resolve) => {
    child.on('error', () => resolve(EXIT.ENGINE));
    // 'close': after the status fd has been read to its end.
    child.on('close', (code, sig) => resolve(exitStatusOf(said, code ?? (sig ? 128 + (os.constants.signals[sig] ?? 0) : EXIT.ENGINE))));
  });
  return { child, done };
}

export function execIn(store: Store, rec: ContainerRecord, command: string[], o: ExecOptions): Promise<number> {
  try {
    checkRunning(store, rec);
  } catch (e) {
    return Promise.reject(e instanceof Error ? e : new Error(String(e)));
  }
  const lookup = o.envLookup ?? ((k: string) => process.env[k]);
  if (o.detach) return startExecDetached(store, rec, command, { ...o, envLookup: lookup });
  const { child, done } = startExec(store, rec, command, { ...o, envLookup: lookup }, [o.interactive || o.tty ? 'inherit' : 'ignore', 'inherit', 'inherit'], true);
  const forward = (s: NodeJS.Signals) => child.kill(s);
  const sigs: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of sigs) process.on(s, forward);
  return done.finally(() => {
    for (const s of sigs) process.off(s, forward);
  });
}

/**
 * `exec -d`. The runtime's own --detach would leave the process to whoever adopts orphans
 * (often the host's init), which may reap late: the container's init then stays a zombie and
 * the container looks alive. Instead a supervising `burrow-runtime exec`, in its own session,
 * stays as the process's parent and reaper; we return once it reports the process's pid, or
 * report why it could not start it. `onExit` gets its status if it ends while we live (the API
 * service records it for `exec inspect`), `onPid` its pid.
 */
export function startExecDetached(store: Store, rec: ContainerRecord, command: string[], o: ExecOptions, onExit?: (code: number) => void, onPid?: (pid: number) => void): Promise<number> {
  checkRunning(store, rec);
  const child = runtimeSpawn(execArgs(rec, command, { ...o, detach: true }), { stdio: ['ignore', 'ignore', 'ignore', 'pipe'], detached: true });
  const status = child.stdio[STATUS_FD] as Socket;
  return new Promise((resolve) => {
    let done = false;
    const said: RuntimeOutcome = {};
    const finish = (code: number) => {
      if (done) return;
      done = true;
      // The API keeps reading for the exit report; the CLI is about to exit and must not wait.
      if (!onExit) status.destroy();
      else status.unref();
      child.unref();
      resolve(code);
    };
    readReports(status, (r) => {
      if (r.kind === 'pid') {
        onPid?.(r.pid);
        finish(0);
      } else if (r.kind === 'error') said.failure = { code: r.code, msg: r.error };
      else if (r.kind === 'exit') said.exit = r.exit;
    });
    child.on('error', () => finish(EXIT.ENGINE));
    child.on('close', (code) => {
      if (done) return onExit?.(exitStatusOf(said, code ?? EXIT.ENGINE));
      finish(exitStatusOf({ ...(said.failure ? { failure: said.failure } : {}) }, code === 0 ? 0 : EXIT.ENGINE));
    });
  });
}
