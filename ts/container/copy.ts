/**
 * `burrow cp`: files between the host and a container, copied by `burrow-runtime cp` inside the
 * container's user namespace (files of the container's other users belong to subordinate ids
 * the user cannot touch from the host). A running container is reached through its init; a
 * stopped or never-started one through a transient container made from its bundle without a
 * process: the runtime mounts its root and volumes exactly as for a run, the init waits to be
 * started, and is deleted once the copy is done.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BurrowError, runtimeText } from '../errors';
import { globalFlags, runtimeError, runtimeSync, syncError, type SyncResult } from '../runtime/client';
import type { Store } from '../storage/store';
import { Containers, type ContainerRecord } from './records';
import { containerState, runtimeState } from './state';

export interface CopyOptions {
  archive: boolean;
  followLink: boolean;
}

/** `CONTAINER:PATH` or a host path, as Docker tells them apart. */
export function splitCopyArg(arg: string): { container?: string; path: string } {
  if (arg.startsWith('/') || arg.startsWith('.')) return { path: arg };
  const i = arg.indexOf(':');
  if (i <= 0) return { path: arg };
  return { container: arg.slice(0, i), path: arg.slice(i + 1) };
}

function runtime(rec: ContainerRecord, args: string[]): SyncResult {
  return runtimeSync([...globalFlags(rec), ...args]);
}

/**
 * A process-less container over the stopped container's bundle, to reach its root (`cp`,
 * `export`); returns its id. The id has the `ID-cp-PID` form on purpose: `rm` deletes runtime
 * state of that form, so a command that was killed leaves no waiting init behind once the
 * container is removed. `purpose` names the bundle directory and the error ("copy", "export").
 */
export function transientContainer(store: Store, rec: ContainerRecord, purpose: string): string {
  const dir = new Containers(store).dir(rec.id);
  const id = `${rec.id}-cp-${process.pid}`;
  const bundle = path.join(dir, `${purpose}-${process.pid}`);
  const spec = JSON.parse(fs.readFileSync(path.join(dir, 'bundle', 'config.json'), 'utf8')) as {
    process?: unknown;
    hooks?: unknown;
    root: { path: string };
    linux?: { namespaces?: { type: string }[] };
  };
  delete spec.process;
  delete spec.hooks;
  spec.root.path = path.join(dir, 'bundle', spec.root.path);
  // Nothing runs in it: a network namespace would only cost time.
  if (spec.linux?.namespaces) spec.linux.namespaces = spec.linux.namespaces.filter((n) => n.type !== 'network');
  fs.mkdirSync(bundle, { recursive: true });
  fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify(spec));
  // The init keeps the stdio it was given until it is deleted: a pipe would never reach EOF.
  const errFile = path.join(bundle, 'stderr');
  const fd = fs.openSync(errFile, 'w');
  try {
    const r = runtimeSync([...globalFlags(rec), 'create', '--bundle', bundle, id], { stdout: 'ignore', stderr: fd });
    if (r.status !== 0) {
      // Its report on the status channel; the stderr it left in the file only as the words of a
      // runtime that could not report (it died first).
      const msg = r.failure?.msg ?? (runtimeText(fs.readFileSync(errFile, 'utf8')) || r.error?.message || `status ${r.status}`);
      throw runtimeError(`cannot mount the root of container ${rec.name} to ${purpose} it`, { msg });
    }
  } finally {
    fs.closeSync(fd);
    fs.rmSync(bundle, { recursive: true, force: true });
  }
  return id;
}

/**
 * Copies `src` to `dest`; `into` says which side is the container's. Host paths are resolved
 * here; container paths that are relative are taken from the container's working directory.
 * Returns the number of bytes copied.
 */
export function copy(store: Store, rec: ContainerRecord, into: boolean, containerPath: string, hostPath: string, o: CopyOptions): number {
  const keepSlash = (p: string, abs: string) => (p.endsWith('/.') ? `${abs}/.` : p.endsWith('/') && !abs.endsWith('/') ? `${abs}/` : abs);
  const host = keepSlash(hostPath, path.resolve(hostPath));
  const ctr = containerPath.startsWith('/') ? containerPath : `${rec.config?.workdir ?? '/'}/${containerPath}`.replace(/\/+/g, '/');
  return withRoot(store, rec, 'copy', (pid, startTime) => {
    const args = ['cp', '--pid', String(pid), '--start-time', String(startTime), into ? '--in' : '--out'];
    if (o.archive) args.push('--archive');
    if (o.followLink) args.push('--follow-link');
    args.push('--', into ? host : ctr, into ? ctr : host);
    const r = runtime(rec, args);
    // A missing path (EPATH_NOT_FOUND) and a bad request (EUSAGE) keep the code the runtime reported.
    if (r.code !== 0) throw syncError(undefined, r, { keep: ['EPATH_NOT_FOUND', 'EUSAGE'] });
    try {
      return (JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { bytes?: number }).bytes ?? 0;
    } catch {
      return 0;
    }
  });
}

/**
 * Runs `fn` with the pid and start time of a process whose root is the container's: its init
 * when it runs, else a transient process-less container over its bundle, deleted afterwards
 * (once its promise settles, when `fn` returns one).
 */
export function withRoot<T>(store: Store, rec: ContainerRecord, purpose: string, fn: (pid: number, startTime: number) => T): T {
  const st = containerState(rec, new Containers(store).dir(rec.id));
  let rs = st.status === 'running' ? runtimeState(rec) : undefined;
  let tmp: string | undefined;
  if (!rs) {
    tmp = transientContainer(store, rec, purpose);
    rs = runtimeState({ ...rec, id: tmp });
  }
  let later = false;
  try {
    if (!rs) throw new BurrowError('ERUNTIME', `cannot reach the root of container ${rec.name}`);
    const v = fn(rs.pid, rs.initStartTime);
    // An asynchronous `fn` (a tar streamed out): the transient container goes once it is done.
    if (tmp && v instanceof Promise) {
      later = true;
      const id = tmp;
      return v.finally(() => runtime(rec, ['delete', '--force', id])) as T;
    }
    return v;
  } finally {
    if (tmp && !later) runtime(rec, ['delete', '--force', tmp]);
  }
}
