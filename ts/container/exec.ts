/** `burrow exec`: a process in a running container, through burrow-runtime exec. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BurrowError, EXIT } from '../errors';
import { exitForRuntimeError, globalFlags, loggedError, runtimeSpawn } from '../runtime/client';
import type { Store } from '../storage/store';
import type { ContainerRecord } from './records';
import { containerState } from './state';
import { Containers } from './records';

export interface ExecOptions {
  interactive: boolean;
  tty: boolean;
  detach: boolean;
  env: string[];
  user?: string;
  workdir?: string;
}

export function execIn(store: Store, rec: ContainerRecord, command: string[], o: ExecOptions): Promise<number> {
  if (containerState(rec, new Containers(store).dir(rec.id)).status !== 'running') {
    return Promise.reject(new BurrowError('ECONTAINER_STATE', `container ${rec.name} is not running`, `start it first: burrow start ${rec.name}`));
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-exec-'));
  const log = path.join(tmp, 'runtime.log');
  const pidFile = path.join(tmp, 'pid');
  const args = [...globalFlags(rec, { log }), 'exec'];
  if (o.tty && !o.detach) args.push('--tty');
  for (const e of o.env) args.push('--env', e.includes('=') ? e : `${e}=${process.env[e] ?? ''}`);
  if (o.user) args.push('--user', o.user);
  if (o.workdir) args.push('--cwd', o.workdir);
  if (o.detach) args.push('--pid-file', pidFile);
  args.push(rec.id, ...command);
  if (o.detach) return execDetached(args, tmp, log, pidFile);
  const child = runtimeSpawn(args, { stdio: [o.interactive || o.tty ? 'inherit' : 'ignore', 'inherit', 'inherit'], cli: true });
  const forward = (s: NodeJS.Signals) => child.kill(s);
  const sigs: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of sigs) process.on(s, forward);
  return new Promise((resolve) => {
    child.on('error', () => resolve(EXIT.ENGINE));
    child.on('exit', (code) => {
      for (const s of sigs) process.off(s, forward);
      const err = loggedError(log);
      fs.rmSync(tmp, { recursive: true, force: true });
      resolve(err ? exitForRuntimeError(err.code) : (code ?? EXIT.ENGINE));
    });
  });
}

/**
 * `exec -d`. The runtime's own --detach would leave the process to whoever adopts orphans
 * (often the host's init), which may reap late: the container's init then stays a zombie and
 * the container looks alive. Instead a supervising `burrow-runtime exec`, in its own session,
 * stays as the process's parent and reaper; we return once the process runs (its pid file
 * appears) or report why it could not start.
 */
function execDetached(args: string[], tmp: string, log: string, pidFile: string): Promise<number> {
  const child = runtimeSpawn(args, { stdio: 'ignore', detached: true });
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
    const timer = setInterval(() => {
      if (fs.existsSync(pidFile)) finish(0);
    }, 5);
    child.on('error', () => finish(EXIT.ENGINE));
    child.on('exit', (code) => {
      if (fs.existsSync(pidFile) && !loggedError(log)) return finish(0); // it ran and has already ended
      const err = loggedError(log);
      finish(err ? exitForRuntimeError(err.code) : code === 0 ? 0 : EXIT.ENGINE);
    });
  });
}
