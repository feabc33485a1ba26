/**
 * Starting, stopping and removing containers through burrow-runtime: in the foreground (`run`
 * without -d: the runtime supervises, we forward signals), or detached under the runtime's
 * monitor, which outlives this process.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BurrowError, EXIT } from '../errors';
import { PACKAGE_ROOT, runtimeBinary } from '../host/paths';
import { removeTrees } from '../storage/unpack';
import type { StorageSettings, Store } from '../storage/store';
import { Containers, type ContainerRecord } from './records';
import { containerState, type ContainerState } from './state';

function rt(rec: ContainerRecord, args: string[]): { code: number; stderr: string } {
  const r = spawnSync(runtimeBinary(), ['--root', rec.runtimeRoot, ...args], { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] });
  return { code: r.status ?? 1, stderr: r.stderr ?? '' };
}

/** Docker's statuses for a runtime failure, from the error code it logged. */
export function exitForRuntimeError(code: string | undefined): number {
  if (code === 'ECMD_NOT_FOUND') return EXIT.NOT_FOUND;
  if (code === 'ECMD_CANNOT_INVOKE') return EXIT.CANNOT_INVOKE;
  return EXIT.ENGINE;
}

function lastLoggedError(logFile: string): { code?: string; msg?: string } | undefined {
  let text = '';
  try {
    text = fs.readFileSync(logFile, 'utf8');
  } catch {
    return undefined;
  }
  const errors = text
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      try {
        return JSON.parse(l) as { level?: string; code?: string; msg?: string };
      } catch {
        return {};
      }
    })
    .filter((e) => e.level === 'error');
  return errors[errors.length - 1];
}

const FORWARDED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];

/** Runs the container in the foreground; resolves with Docker's exit status. */
export function runForeground(store: Store, rec: ContainerRecord): Promise<number> {
  const dir = new Containers(store).dir(rec.id);
  const logFile = path.join(dir, 'runtime.log');
  fs.rmSync(logFile, { force: true });
  fs.writeFileSync(path.join(dir, 'started'), new Date().toISOString());
  const child = spawn(runtimeBinary(), ['--root', rec.runtimeRoot, '--log', logFile, '--log-format', 'json', 'run', '--bundle', path.join(dir, 'bundle'), rec.id], {
    stdio: [rec.interactive || rec.tty ? 'inherit' : 'ignore', 'inherit', 'inherit'],
  });
  // The runtime forwards signals to the container; we pass ours on to the runtime and stay.
  const forward = (sig: NodeJS.Signals) => child.kill(sig);
  for (const s of FORWARDED) process.on(s, forward);
  return new Promise((resolve) => {
    child.on('error', () => resolve(EXIT.ENGINE));
    child.on('exit', (code, signal) => {
      for (const s of FORWARDED) process.off(s, forward);
      const err = lastLoggedError(logFile);
      const status = err ? exitForRuntimeError(err.code) : code ?? 128 + (signal ? (require('node:os').constants.signals[signal] as number) : 0);
      fs.writeFileSync(path.join(dir, 'exit.json'), JSON.stringify({ exitCode: status, finishedAt: new Date().toISOString(), ...(err ? { reason: err.msg } : {}) }));
      resolve(status);
    });
  });
}

/** Starts the container under a monitor; resolves when it runs (or throws why it could not). */
export async function startDetached(store: Store, rec: ContainerRecord, cleanupArgs?: string[]): Promise<void> {
  const dir = new Containers(store).dir(rec.id);
  for (const f of ['exit.json', 'started', 'monitor.json']) fs.rmSync(path.join(dir, f), { force: true });
  const args = ['--root', rec.runtimeRoot, 'monitor', '--bundle', path.join(dir, 'bundle'), '--dir', dir, '--log-driver', rec.logDriver];
  if (rec.tty) args.push('--tty');
  for (const a of cleanupArgs ?? []) args.push('--exit-command', a);
  args.push(rec.id);
  const child = spawn(runtimeBinary(), args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const answer = await new Promise<string>((resolve) => {
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d;
      if (out.includes('\n')) resolve(out.split('\n')[0]!);
    });
    child.stderr!.on('data', (d: Buffer) => (err += d));
    child.on('exit', () => resolve(out.split('\n')[0] || JSON.stringify({ error: err.trim() || 'the monitor exited without an answer', code: 'ERUNTIME' })));
    child.on('error', (e) => resolve(JSON.stringify({ error: e.message, code: 'ERUNTIME_MISSING' })));
  });
  child.stdout!.destroy();
  child.stderr!.destroy();
  child.unref();
  const a = JSON.parse(answer) as { pid?: number; error?: string; code?: string };
  if (a.error) {
    const e = new BurrowError(a.code === 'ECMD_NOT_FOUND' ? 'ECMD_NOT_FOUND' : a.code === 'ECMD_CANNOT_INVOKE' ? 'ECMD_CANNOT_INVOKE' : 'ERUNTIME', a.error);
    throw e;
  }
}

/** The burrow command line, for the monitor's exit command (`--rm` of detached containers). */
export function selfCommand(globalArgs: string[], ...args: string[]): string[] {
  return [process.execPath, path.join(PACKAGE_ROOT, 'bin', 'burrow.js'), ...globalArgs, ...args];
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function stateOf(store: Store, rec: ContainerRecord): ContainerState {
  return containerState(rec, new Containers(store).dir(rec.id));
}

/** Waits until the container is no longer running; false on timeout. */
export async function waitStopped(store: Store, rec: ContainerRecord, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (stateOf(store, rec).status !== 'running') return true;
    await sleep(20);
  }
  return stateOf(store, rec).status !== 'running';
}

export function signal(rec: ContainerRecord, sig: string, all = false): void {
  const r = rt(rec, ['kill', ...(all ? ['--all'] : []), rec.id, sig]);
  if (r.code !== 0) throw new BurrowError('ECONTAINER_STATE', `cannot signal container ${rec.name}: ${r.stderr.replace(/^burrow-runtime: /, '').trim()}`);
}

/** Docker's stop: the stop signal, then SIGKILL after the timeout. */
export async function stop(store: Store, rec: ContainerRecord, timeoutSec: number): Promise<void> {
  if (stateOf(store, rec).status !== 'running') return;
  try {
    signal(rec, rec.stopSignal);
  } catch {
    /* it may have just exited */
  }
  if (await waitStopped(store, rec, timeoutSec * 1000)) return;
  try {
    signal(rec, 'KILL', true);
  } catch {
    /* gone meanwhile */
  }
  await waitStopped(store, rec, 10_000);
}

/** Removes a container; `force` kills it first. No process of it survives. */
export async function remove(store: Store, settings: StorageSettings, rec: ContainerRecord, force: boolean, volumes = false): Promise<void> {
  const st = stateOf(store, rec);
  if (st.status === 'running' && !force) {
    throw new BurrowError('ECONTAINER_STATE', `cannot remove container ${rec.name}: container is running`, 'stop the container before removing it, or remove it with -f');
  }
  if (st.status === 'running') {
    try {
      signal(rec, 'KILL', true);
    } catch {
      /* exited meanwhile */
    }
    await waitStopped(store, rec, 10_000);
  }
  // A monitor still alive finishes on its own once the container is gone; give it a moment
  // so that it does not write into a directory we are deleting.
  const end = Date.now() + 2000;
  while (stateOf(store, rec).monitorPid && Date.now() < end) await sleep(10);
  rt(rec, ['delete', '--force', rec.id]);
  const containers = new Containers(store);
  const dir = containers.dir(rec.id);
  await removeTrees(settings, [path.join(dir, 'upper'), path.join(dir, 'work')]).catch(() => undefined);
  fs.rmSync(dir, { recursive: true, force: true });
  containers.releaseName(rec.name, rec.id);
  if (volumes) for (const m of rec.mounts) if (m.type === 'volume' && /\/volumes\/anon-/.test(m.source)) fs.rmSync(path.dirname(m.source), { recursive: true, force: true });
}
