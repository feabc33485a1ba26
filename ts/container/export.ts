/**
 * `burrow export`: a container's root filesystem as a flat tar, written by `burrow-runtime
 * export` inside the container's user and mount namespaces (owners as the container sees them,
 * whiteouts applied by the overlay, nothing mounted over the root). A running container is read
 * through its init; a stopped or never-started one through a transient process-less container
 * made from its bundle, as `cp` does (copy.ts): the runtime mounts its root exactly as for a run.
 */
import { BurrowError, runtimeText } from '../errors';
import { globalFlags, runtimeError, runtimeSpawn, runtimeSync } from '../runtime/client';
import type { Store } from '../storage/store';
import { transientContainer } from './copy';
import { Containers, type ContainerRecord } from './records';
import { containerState, runtimeState } from './state';

/** Writes the tar of the container's filesystem to the open file descriptor `out`. */
export async function exportContainer(store: Store, rec: ContainerRecord, out: number): Promise<void> {
  const st = containerState(rec, new Containers(store).dir(rec.id));
  let rs = st.status === 'running' ? runtimeState(rec) : undefined;
  let tmp: string | undefined;
  if (!rs) {
    tmp = transientContainer(store, rec, 'export');
    rs = runtimeState({ ...rec, id: tmp });
  }
  try {
    if (!rs) throw new BurrowError('ERUNTIME', `cannot reach the root of container ${rec.name}`);
    const args = [...globalFlags(rec), 'export', '--pid', String(rs.pid), '--start-time', String(rs.initStartTime)];
    const { code, stderr } = await new Promise<{ code: number; stderr: string }>((resolve) => {
      const child = runtimeSpawn(args, { stdio: ['ignore', out, 'pipe'] });
      let err = '';
      child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      child.on('error', (e) => resolve({ code: -1, stderr: e.message }));
      child.on('close', (c) => resolve({ code: c ?? 1, stderr: err }));
    });
    const msgs = runtimeText(stderr);
    if (code !== 0) throw runtimeError(`export of container ${rec.name} failed`, { msg: msgs || `status ${code}` });
    for (const l of msgs.split('\n').filter(Boolean)) process.stderr.write(`burrow: ${l}\n`);
  } finally {
    if (tmp) runtimeSync([...globalFlags(rec), 'delete', '--force', tmp], { stdout: 'ignore' });
  }
}
