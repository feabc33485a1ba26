/** `burrow exec`: a process in a running container, through burrow-runtime exec. */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BurrowError, EXIT } from '../errors';
import { runtimeBinary } from '../host/paths';
import type { Store } from '../storage/store';
import { exitForRuntimeError } from './lifecycle';
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
  const log = path.join(os.tmpdir(), `burrow-exec-${process.pid}.log`);
  const args = ['--root', rec.runtimeRoot, '--log', log, '--log-format', 'json', 'exec'];
  if (o.tty) args.push('--tty');
  if (o.detach) args.push('--detach');
  for (const e of o.env) args.push('--env', e.includes('=') ? e : `${e}=${process.env[e] ?? ''}`);
  if (o.user) args.push('--user', o.user);
  if (o.workdir) args.push('--cwd', o.workdir);
  args.push(rec.id, ...command);
  const child = spawn(runtimeBinary(), args, { stdio: [o.interactive || o.tty ? 'inherit' : 'ignore', 'inherit', 'inherit'] });
  const forward = (s: NodeJS.Signals) => child.kill(s);
  const sigs: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of sigs) process.on(s, forward);
  return new Promise((resolve) => {
    child.on('error', () => resolve(EXIT.ENGINE));
    child.on('exit', (code) => {
      for (const s of sigs) process.off(s, forward);
      let err: { code?: string } | undefined;
      try {
        const lines = fs.readFileSync(log, 'utf8').split('\n').filter(Boolean);
        err = lines.map((l) => JSON.parse(l) as { level?: string; code?: string }).filter((e) => e.level === 'error').pop();
      } catch {
        /* no log: no runtime error */
      }
      fs.rmSync(log, { force: true });
      resolve(err ? exitForRuntimeError(err.code) : (code ?? EXIT.ENGINE));
    });
  });
}
