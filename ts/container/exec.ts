/**
 * `exec`: a process in a running container, through burrow-runtime exec. The CLI runs it on its
 * own stdio (execIn); the API service on pipes it relays to a hijacked connection (startExec).
 * With a terminal, `burrow-runtime exec --tty` makes the pty itself and relays between the
 * master and its own stdio, so pipes are all either front end needs.
 */
import type { ChildProcess, StdioOptions } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BurrowError, EXIT } from '../errors';
import { exitForRuntimeError, globalFlags, loggedError, runtimeSpawn } from '../runtime/client';
import type { Store } from '../storage/store';
import type { ContainerRecord } from './records';
import { containerState } from './state';
import { Containers } from './records';

/**
 * The descriptor an exec's terminal sizes go to: 4, because 3 is the runtime's status fd (the
 * JSON reports of ts/runtime/client.ts).
 */
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

function execArgs(rec: ContainerRecord, command: string[], o: ExecOptions, log: string, pidFile: string): string[] {
  const args = [...globalFlags(rec, { log }), 'exec'];
  if (o.tty && !o.detach) args.push('--tty');
  if (o.tty && !o.detach && o.resizeFd) args.push('--resize-fd', String(RESIZE_FD));
  if (o.tty && !o.detach && o.consoleSize) args.push('--console-size', `${o.consoleSize.rows}x${o.consoleSize.cols}`);
  for (const e of o.env) {
    if (e.includes('=')) args.push('--env', e);
    else if (o.envLookup) args.push('--env', `${e}=${o.envLookup(e) ?? ''}`);
  }
  if (o.user) args.push('--user', o.user);
  if (o.workdir) args.push('--cwd', o.workdir);
  if (o.detach) args.push('--pid-file', pidFile);
  args.push(rec.id, ...command);
  return args;
}

/**
 * Starts the exec's process on `stdio` (not detached: the caller relays or inherits). Throws
 * when the container is not running.
 */
export function startExec(store: Store, rec: ContainerRecord, command: string[], o: ExecOptions, stdio: StdioOptions, cli = false): ExecProcess {
  checkRunning(store, rec);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-exec-'));
  const log = path.join(tmp, 'runtime.log');
  const child = runtimeSpawn(execArgs(rec, command, { ...o, detach: false }, log, path.join(tmp, 'pid')), { stdio, cli });
  const done = new Promise<number>((resolve) => {
    child.on('error', () => resolve(EXIT.ENGINE));
    child.on('exit', (code, sig) => {
      const err = loggedError(log);
      fs.rmSync(tmp, { recursive: true, force: true });
      resolve(err ? exitForRuntimeError(err.code) : (code ?? (sig ? 128 + (os.constants.signals[sig] ?? 0) : EXIT.ENGINE)));
    });
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
 * stays as the process's parent and reaper; we return once the process runs (its pid file
 * appears) or report why it could not start. `onExit` gets its status if it ends while we live
 * (the API service records it for `exec inspect`).
 */
export function startExecDetached(store: Store, rec: ContainerRecord, command: string[], o: ExecOptions, onExit?: (code: number) => void, onPid?: (pid: number) => void): Promise<number> {
  checkRunning(store, rec);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-exec-'));
  const log = path.join(tmp, 'runtime.log');
  const pidFile = path.join(tmp, 'pid');
  const child = runtimeSpawn(execArgs(rec, command, { ...o, detach: true }, log, pidFile), { stdio: 'ignore', detached: true });
  return new Promise((resolve) => {
    let done = false;
    const finish = (code: number) => {
      if (done) return;
      done = true;
      clearInterval(timer);
      child.unref();
      fs.rmSync(tmp, { recursive: true, force: true });
      resolve(code);
    };
    const started = () => {
      try {
        const pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
        if (pid > 0) onPid?.(pid);
        return pid > 0;
      } catch {
        return false;
      }
    };
    const timer = setInterval(() => {
      if (started()) finish(0);
    }, 5);
    child.on('error', () => finish(EXIT.ENGINE));
    child.on('exit', (code) => {
      if (done) return onExit?.(code ?? EXIT.ENGINE);
      const err = loggedError(log);
      const ran = started();
      if (ran && !err) {
        onExit?.(code ?? EXIT.ENGINE);
        return finish(0); // it ran and has already ended
      }
      finish(err ? exitForRuntimeError(err.code) : code === 0 ? 0 : EXIT.ENGINE);
    });
  });
}
