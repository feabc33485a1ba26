/**
 * `burrow export`: a container's root filesystem as a flat tar, written by `burrow-runtime
 * export` inside the container's user and mount namespaces (owners as the container sees them,
 * whiteouts applied by the overlay, nothing mounted over the root). A running container is read
 * through its init; a stopped or never-started one through a transient process-less container
 * made from its bundle, as `cp` does (copy.ts): the runtime mounts its root exactly as for a run.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BurrowError } from '../errors';
import { runtimeBinary } from '../host/paths';
import type { Store } from '../storage/store';
import { Containers, type ContainerRecord } from './records';
import { containerState, runtimeState } from './state';

function runtimeSync(rec: ContainerRecord, args: string[], stderrFd: number | 'pipe' = 'pipe'): { code: number; stderr: string } {
  const r = spawnSync(runtimeBinary(), ['--root', rec.runtimeRoot, ...args], { encoding: 'utf8', stdio: ['ignore', 'ignore', stderrFd] });
  return { code: r.status ?? 1, stderr: (r.stderr ?? '').replace(/^burrow-runtime: /gm, '').trim() };
}

/**
 * A process-less container over the stopped container's bundle; returns its id. The id has the
 * `ID-cp-PID` form on purpose: `rm` deletes runtime state of that form, so an export that was
 * killed leaves no waiting init behind once the container is removed.
 */
function transient(store: Store, rec: ContainerRecord): string {
  const dir = new Containers(store).dir(rec.id);
  const id = `${rec.id}-cp-${process.pid}`;
  const bundle = path.join(dir, `export-${process.pid}`);
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
    const r = runtimeSync(rec, ['create', '--bundle', bundle, id], fd);
    if (r.code !== 0) {
      const msg = fs.readFileSync(errFile, 'utf8').replace(/^burrow-runtime: /gm, '').trim();
      throw new BurrowError('ERUNTIME', `cannot mount the root of container ${rec.name} to export it: ${msg || `status ${r.code}`}`);
    }
  } finally {
    fs.closeSync(fd);
    fs.rmSync(bundle, { recursive: true, force: true });
  }
  return id;
}

/** Writes the tar of the container's filesystem to the open file descriptor `out`. */
export async function exportContainer(store: Store, rec: ContainerRecord, out: number): Promise<void> {
  const st = containerState(rec, new Containers(store).dir(rec.id));
  let rs = st.status === 'running' ? runtimeState(rec) : undefined;
  let tmp: string | undefined;
  if (!rs) {
    tmp = transient(store, rec);
    rs = runtimeState({ ...rec, id: tmp });
  }
  try {
    if (!rs) throw new BurrowError('ERUNTIME', `cannot reach the root of container ${rec.name}`);
    const args = ['--root', rec.runtimeRoot, 'export', '--pid', String(rs.pid), '--start-time', String(rs.initStartTime)];
    const { code, stderr } = await new Promise<{ code: number; stderr: string }>((resolve) => {
      const child = spawn(runtimeBinary(), args, { stdio: ['ignore', out, 'pipe'] });
      let err = '';
      child.stderr!.on('data', (d: Buffer) => (err += d));
      child.on('error', (e) => resolve({ code: -1, stderr: e.message }));
      child.on('close', (c) => resolve({ code: c ?? 1, stderr: err }));
    });
    const msgs = stderr.replace(/^burrow-runtime: /gm, '').trim();
    if (code !== 0) throw new BurrowError('ERUNTIME', `export of container ${rec.name} failed: ${msgs || `status ${code}`}`);
    for (const l of msgs.split('\n').filter(Boolean)) process.stderr.write(`burrow: ${l}\n`);
  } finally {
    if (tmp) runtimeSync(rec, ['delete', '--force', tmp]);
  }
}
