/** `burrow exec`: a process in a running container, through burrow-runtime exec. */
import type { Socket } from 'node:net';
import { BurrowError, EXIT } from '../errors';
import { exitStatusOf, globalFlags, readReports, runtimeSpawn, statusFlags, type RuntimeOutcome } from '../runtime/client';
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

/**
 * The runtime reports on fd 3 (ts/runtime/client.ts): the process's pid once it exists, why it
 * could not start it (the code decides 126/127/125), its exit.
 */
export function execIn(store: Store, rec: ContainerRecord, command: string[], o: ExecOptions): Promise<number> {
  if (containerState(rec, new Containers(store).dir(rec.id)).status !== 'running') {
    return Promise.reject(new BurrowError('ECONTAINER_STATE', `container ${rec.name} is not running`, `start it first: burrow start ${rec.name}`));
  }
  const args = [...globalFlags(rec), ...statusFlags(3), 'exec'];
  if (o.tty && !o.detach) args.push('--tty');
  for (const e of o.env) args.push('--env', e.includes('=') ? e : `${e}=${process.env[e] ?? ''}`);
  if (o.user) args.push('--user', o.user);
  if (o.workdir) args.push('--cwd', o.workdir);
  args.push(rec.id, ...command);
  if (o.detach) return execDetached(args);
  const child = runtimeSpawn(args, { stdio: [o.interactive || o.tty ? 'inherit' : 'ignore', 'inherit', 'inherit', 'pipe'], cli: true });
  const forward = (s: NodeJS.Signals) => child.kill(s);
  const sigs: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of sigs) process.on(s, forward);
  const said: RuntimeOutcome = {};
  readReports(child.stdio[3] as Socket, (r) => {
    if (r.kind === 'error') said.failure = { code: r.code, msg: r.error };
    if (r.kind === 'exit') said.exit = r.exit;
  });
  return new Promise((resolve) => {
    child.on('error', () => resolve(EXIT.ENGINE));
    // 'close': after fd 3 has been read to its end.
    child.on('close', (code) => {
      for (const s of sigs) process.off(s, forward);
      resolve(exitStatusOf(said, code ?? EXIT.ENGINE));
    });
  });
}

/**
 * `exec -d`. The runtime's own --detach would leave the process to whoever adopts orphans
 * (often the host's init), which may reap late: the container's init then stays a zombie and
 * the container looks alive. Instead a supervising `burrow-runtime exec`, in its own session,
 * stays as the process's parent and reaper; we return once it reports the process's pid, or
 * report why it could not start it.
 */
function execDetached(args: string[]): Promise<number> {
  const child = runtimeSpawn(args, { stdio: ['ignore', 'ignore', 'ignore', 'pipe'], detached: true });
  const status = child.stdio[3] as Socket;
  return new Promise((resolve) => {
    let done = false;
    const said: RuntimeOutcome = {};
    const finish = (code: number) => {
      if (done) return;
      done = true;
      status.destroy();
      child.unref();
      resolve(code);
    };
    readReports(status, (r) => {
      if (r.kind === 'pid') finish(0);
      else if (r.kind === 'error') said.failure = { code: r.code, msg: r.error };
    });
    child.on('error', () => finish(EXIT.ENGINE));
    child.on('close', (code) => finish(exitStatusOf({ ...(said.failure ? { failure: said.failure } : {}) }, code === 0 ? 0 : EXIT.ENGINE)));
  });
}
