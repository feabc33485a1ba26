/**
 * `burrow export`: a container's root filesystem as a flat tar, written by `burrow-runtime
 * export` inside the container's user and mount namespaces (owners as the container sees them,
 * whiteouts applied by the overlay, nothing mounted over the root). A running container is read
 * through its init; a stopped or never-started one through a transient process-less container
 * made from its bundle, as `cp` does (copy.ts): the runtime mounts its root exactly as for a run.
 */
import type { Writable } from 'node:stream';
import type { Hooks } from '../engine/context';
import { BurrowError, runtimeText } from '../errors';
import { globalFlags, runtimeError, runtimeSpawn, runtimeSync } from '../runtime/client';
import type { Store } from '../storage/store';
import { transientContainer } from './copy';
import { Containers, type ContainerRecord } from './records';
import { containerState, runtimeState } from './state';

/**
 * Writes the tar of the container's filesystem to `out`: an open file descriptor (the CLI's
 * stdout or file), or a stream (the API's response), which is ended when the tar is complete.
 * The runtime's warnings go to `hooks.warn` (the CLI prints them; stderr when none is given).
 * `signal` stops the export (the API's client went away): the tar is then incomplete.
 */
export async function exportContainer(store: Store, rec: ContainerRecord, out: number | Writable, hooks: Hooks = {}, signal?: AbortSignal): Promise<void> {
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
      const child = runtimeSpawn(args, { stdio: ['ignore', typeof out === 'number' ? out : 'pipe', 'pipe'] });
      // Ended only once the tar is known complete: a failed export must not look like a whole one.
      if (typeof out !== 'number') child.stdout!.pipe(out, { end: false });
      const abort = () => child.kill('SIGKILL');
      signal?.addEventListener('abort', abort, { once: true });
      child.once('close', () => signal?.removeEventListener('abort', abort));
      let err = '';
      child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      child.on('error', (e) => resolve({ code: -1, stderr: e.message }));
      child.on('close', (c) => resolve({ code: c ?? 1, stderr: err }));
    });
    const msgs = runtimeText(stderr);
    if (code !== 0) throw runtimeError(`export of container ${rec.name} failed`, { msg: msgs || `status ${code}` });
    if (typeof out !== 'number') out.end();
    for (const l of msgs.split('\n').filter(Boolean)) (hooks.warn ?? ((m: string) => process.stderr.write(`burrow: ${m}\n`)))(l);
  } finally {
    if (tmp) runtimeSync([...globalFlags(rec), 'delete', '--force', tmp], { stdout: 'ignore' });
  }
}
