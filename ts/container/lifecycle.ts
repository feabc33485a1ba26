/**
 * Starting, stopping and removing containers through burrow-runtime: in the foreground (`run`
 * without -d: the runtime supervises, we forward signals), or detached under the runtime's
 * monitor, which outlives this process.
 */
import * as fs from 'node:fs';
import type { Socket } from 'node:net';
import * as path from 'node:path';
import { BurrowError, EXIT, errorText, runtimeText } from '../errors';
import { PACKAGE_ROOT } from '../host/paths';
import { holdForStart, runtimeNetworkArgs } from '../network/runtime';
import { eventsFile } from '../engine/events';
import { exitStatusOf, globalFlags, readReports, residentSpawn, runtimeBinary, runtimeError, runtimeSpawnHeld, runtimeSync, signalNumber, statusFlags, syncError, type HeldRuntime, type RuntimeOutcome } from '../runtime/client';
import { unlinkIfThere } from '../storage/fsutil';
import { removeRootfs, rootfsOf, writableTrees } from '../storage/rootfs';
import type { StorageSettings, Store } from '../storage/store';
import { healthcheckRuns } from './health';
import { Containers, type ContainerRecord } from './records';
import { containerState, runtimeState, type ContainerState } from './state';

function rt(rec: ContainerRecord, args: string[]): ReturnType<typeof runtimeSync> {
  return runtimeSync([...globalFlags(rec), ...args], { stdout: 'ignore' });
}

/**
 * The run root's events file (ts/engine/events.ts) for a container's holder, which appends its
 * `die` (and a restart policy's `restart`) events: the run root is the runtime root's parent.
 */
function holderEventsFile(rec: ContainerRecord): string {
  return eventsFile({ runRoot: path.dirname(rec.runtimeRoot) });
}

/** Docker's `--restart` as the monitor takes it: `no`, `always`, `unless-stopped`, `on-failure[:N]`. */
export function restartArg(p: NonNullable<ContainerRecord['restartPolicy']>): string {
  return p.name === 'on-failure' && p.maximumRetryCount > 0 ? `on-failure:${p.maximumRetryCount}` : p.name;
}

/**
 * Tells the container's holder that the user stopped, killed or removed it: no restart policy
 * restarts it after that (Docker's "manually stopped"). Written before the signal; removed when
 * the user starts it again (clearRun).
 */
function markStopped(dir: string): void {
  try {
    fs.writeFileSync(path.join(dir, STOPPED_MARKER), '');
  } catch {
    /* the container's directory is gone: nothing holds it */
  }
}

const STOPPED_MARKER = 'stopped-by-user';

const FORWARDED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];

/**
 * Forgets the previous run. The order matters to concurrent readers (state.ts reads the exit
 * record before `started`): with the exit record removed last, nobody sees a started run
 * without exit record and without holder, which would be recorded as lost.
 */
function clearRun(dir: string): void {
  for (const f of [STOPPED_MARKER, 'restart.json', 'lost.json', 'health.json', 'started', 'monitor.json', 'exit.json']) unlinkIfThere(path.join(dir, f));
}

/**
 * Runs the container in the foreground; resolves with Docker's exit status.
 *
 * `burrow-runtime run --dir` holds the container (crates/burrow-core/src/runtime/holder.rs): it
 * writes monitor.json, `started` and the exit record, and tells us the status on fd 3; with
 * `--log-driver` it relays the container's output to us through pipes, writes it to ctr.log and
 * serves attach.sock, as the monitor does (crates/burrow-runtime/src/commands/run.rs). With
 * `cleanupArgs` (--rm) it then waits until we have closed fd 3, which we keep open, unreferenced,
 * until this process exits: the caller removes the container meanwhile, and if we are killed
 * first, the runtime runs the cleanup command itself.
 */
export async function runForeground(store: Store, rec: ContainerRecord, cleanupArgs?: string[], seen: HeldEnd = {}, beforeSpawn?: BeforeSpawn): Promise<number> {
  // A restart policy is kept by the monitor, which outlives us: attached to it, we return at the
  // first exit (as `docker run --restart` does) and it goes on.
  // So is a healthcheck: the monitor runs its probes (the runtime's foreground `run` does not).
  if ((rec.restartPolicy && rec.restartPolicy.name !== 'no') || healthcheckRuns(rec.healthcheck)) return (await import('./attach')).runAttached(store, rec, cleanupArgs);
  return runHeld(store, rec, cleanupArgs, seen, beforeSpawn);
}

/**
 * Called by a foreground run that the runtime holds, with the runtime's arguments, just before it
 * is started (the CLI's run writes its run plan there: ts/container/run-plan.ts). Never throws.
 */
export type BeforeSpawn = (runtimeArgs: string[]) => Promise<void>;

/**
 * The arguments of `burrow-runtime run` holding the container in the foreground: its global
 * flags, the status channel on fd 3, the bundle, the holder's files, the network's arguments.
 */
export function heldRunArgs(rec: ContainerRecord, dir: string, cleanupArgs: string[] | undefined, netArgs: string[]): string[] {
  // --log-driver: it records the output (ctr.log) and serves `attach` as the monitor does.
  const holderArgs = ['--dir', dir, '--events-file', holderEventsFile(rec), '--log-driver', rec.logDriver, ...(cleanupArgs ?? []).flatMap((a) => ['--exit-command', a])];
  // --rm: the runtime removes the writable layer in the container's user namespace before it
  // reports the status, which spares our removal a user namespace of its own (removeRootfs:
  // `burrow-runtime unpack`, newuidmap and newgidmap again) for files of the container's ids.
  // Not under fuse-overlayfs: its daemon may still serve the tree until removeRootfs ends it.
  const rootfs = rootfsOf(rec, dir);
  if (cleanupArgs && rec.autoRemove && rootfs.driver !== 'fuse-overlayfs') for (const t of writableTrees(rootfs, dir)) holderArgs.push('--remove-tree', t);
  return [...globalFlags(rec, { cgroup: true }), ...statusFlags(3), 'run', '--bundle', path.join(dir, 'bundle'), ...holderArgs, ...netArgs, rec.id];
}

/** What runForeground saw of the end. */
export interface HeldEnd {
  /**
   * The runtime held the container (no monitor, no restart policy) and reported its exit, which
   * it does after the exit record: nothing runs the container or will start it again, and the
   * holder writes nothing more into its directory (remove's `heldEnded`).
   */
  exitReported?: boolean;
}

async function runHeld(store: Store, rec: ContainerRecord, cleanupArgs: string[] | undefined, seen: HeldEnd, beforeSpawn?: BeforeSpawn): Promise<number> {
  const dir = new Containers(store).dir(rec.id);
  unlinkIfThere(path.join(dir, 'runtime.log'));
  clearRun(dir);
  // User-defined networks: the owner is kept alive until the runtime has attached (its pid report).
  const lease = await holdForStart(store, rec, dir);
  // The runtime owns the network helper of a foreground container (crates/burrow-runtime run.rs).
  let netArgs: string[];
  try {
    netArgs = runtimeNetworkArgs(store, rec, dir);
  } catch (err) {
    lease?.release();
    throw err;
  }
  const args = heldRunArgs(rec, dir, cleanupArgs, netArgs);
  if (beforeSpawn) await beforeSpawn(args);
  return new Promise((resolve) => {
    let finished = false;
    let held: HeldRuntime | undefined;
    // The runtime forwards signals to the container; we pass ours on to the runtime and stay.
    const forward = (sig: NodeJS.Signals) => held?.kill(sig);
    const done = (code: number) => {
      if (finished) return;
      finished = true;
      lease?.release();
      for (const s of FORWARDED) process.off(s, forward);
      held?.unref();
      resolve(code);
    };
    const said: RuntimeOutcome = {};
    try {
      // Its errors go straight to the user's stderr (the container's too): in the CLI's voice.
      held = runtimeSpawnHeld(args, {
        inheritStdin: rec.interactive || rec.tty,
        onReport: (r) => {
          if (r.kind === 'pid' || r.kind === 'error') lease?.release();
          if (r.kind === 'error') said.failure = { code: r.code, msg: r.error };
          // The holder's status, recorded: a --rm removal may follow while it waits for us to exit.
          if (r.kind === 'exit') {
            seen.exitReported = true;
            done(r.exit);
          }
        },
        // Without an exit report (the runtime failed before it held the container, or could not
        // be started): its error's code, or its status.
        onExit: (code, signal) => {
          if (code === null && signal === null) done(exitStatusOf(said, EXIT.ENGINE));
          else done(exitStatusOf(said, code ?? 128 + signalNumber(signal!)));
        },
      });
    } catch (err) {
      process.stderr.write(errorText(err));
      done(EXIT.ENGINE);
      return;
    }
    for (const s of FORWARDED) process.on(s, forward);
    if (finished) for (const s of FORWARDED) process.off(s, forward);
  });
}

export interface MonitorAttach {
  /**
   * Hand the monitor a connected socket (a socketpair: Node's stdio pipes are) as its first
   * attach client, there before the container's first output (ts/container/attach.ts).
   */
  attach?: boolean;
  /** The terminal's size when the container starts. */
  ttySize?: { rows: number; cols: number };
}

/**
 * Starts the container under a monitor; resolves when it runs (or throws why it could not), with
 * the attach socket when `opts.attach` asks for one.
 */
export async function startDetached(store: Store, rec: ContainerRecord, cleanupArgs?: string[], opts: MonitorAttach = {}): Promise<Socket | undefined> {
  const dir = new Containers(store).dir(rec.id);
  const st = stateOf(store, rec);
  if (st.status === 'running') throw new BurrowError('ECONTAINER_STATE', `container ${rec.name} is already running`);
  // Its monitor will start it again: a second monitor would hold the same container.
  if (st.restarting) throw new BurrowError('ECONTAINER_STATE', `container ${rec.name} is restarting (its restart policy)`, `stop it first: burrow stop ${rec.name}`);
  clearRun(dir);
  // A holder that died leaves the runtime's state behind; the new run needs the id.
  if (runtimeState(rec)) rt(rec, ['delete', '--force', rec.id]);
  const args = [...globalFlags(rec, { cgroup: true }), ...statusFlags(3), 'monitor', '--bundle', path.join(dir, 'bundle'), '--dir', dir, '--log-driver', rec.logDriver];
  args.push('--events-file', holderEventsFile(rec));
  if (rec.restartPolicy && rec.restartPolicy.name !== 'no') args.push('--restart', restartArg(rec.restartPolicy));
  // The monitor runs the healthcheck (crates/burrow-core/src/runtime/health.rs).
  if (healthcheckRuns(rec.healthcheck)) args.push('--healthcheck', JSON.stringify(rec.healthcheck));
  if (rec.tty) args.push('--tty');
  if (rec.tty && opts.ttySize) args.push('--tty-size', `${opts.ttySize.rows}x${opts.ttySize.cols}`);
  // -i: the monitor keeps the container's stdin open for `attach` (Docker's OpenStdin).
  if (rec.interactive) args.push('--stdin');
  if (opts.attach) args.push('--attach-fd', '4');
  for (const a of cleanupArgs ?? []) args.push('--exit-command', a);
  // The full runtime it creates (and deletes) the container with.
  args.push('--runtime', runtimeBinary());
  // User-defined networks: the owner is kept alive until the monitor has attached (its pid report).
  const lease = await holdForStart(store, rec, dir);
  let child: ReturnType<typeof residentSpawn>;
  try {
    args.push(...runtimeNetworkArgs(store, rec, dir));
    args.push(rec.id);
    // From burrow-monitor, the small binary (runtime/client.ts), unless it runs a healthcheck.
    child = residentSpawn(args, { stdio: ['ignore', 'ignore', 'pipe', 'pipe', ...(opts.attach ? (['pipe'] as const) : [])], full: healthcheckRuns(rec.healthcheck) });
  } catch (err) {
    lease?.release();
    throw err;
  }
  const status = child.stdio[3] as Socket;
  // Its first report: the container's pid, or why it could not start it.
  const answer = await new Promise<{ pid?: number; error?: string; code?: string }>((resolve) => {
    let err = '';
    readReports(status, (r) => {
      if (r.kind === 'pid') resolve({ pid: r.pid });
      else if (r.kind === 'error') resolve({ error: r.error, code: r.code });
    });
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', () => resolve({ error: runtimeText(err) || 'the monitor exited without an answer', code: 'ERUNTIME' }));
    child.on('error', (e) => resolve({ error: e.message, code: 'ERUNTIME_MISSING' }));
  });
  lease?.release();
  status.destroy();
  child.stderr!.destroy();
  child.unref();
  const sock = opts.attach ? (child.stdio[4] as Socket | null) ?? undefined : undefined;
  if (answer.error !== undefined) {
    sock?.destroy();
    throw runtimeError(undefined, { ...(answer.code !== undefined ? { code: answer.code } : {}), msg: answer.error });
  }
  return sock;
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

/**
 * Waits until the container is no longer running and its exit status is recorded; false on
 * timeout.
 */
export async function waitStopped(store: Store, rec: ContainerRecord, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  const stopped = () => {
    const st = stateOf(store, rec);
    return st.status !== 'running' && !st.pending && !st.restarting;
  };
  // Fast for a stop that takes milliseconds, cheap for a `wait` that takes hours.
  for (let delay = 5; Date.now() < end; delay = Math.min(delay * 2, 100)) {
    if (stopped()) return true;
    await sleep(Math.min(delay, Math.max(1, end - Date.now())));
  }
  return stopped();
}

/**
 * The user's `kill`: the signal to the container; no restart policy restarts it after that (see
 * markStopped; the record's log is in the container's directory: ts/container/create.ts).
 */
export function signal(rec: ContainerRecord, sig: string, all = false): void {
  markStopped(path.dirname(rec.logPath));
  const r = rt(rec, ['kill', ...(all ? ['--all'] : []), rec.id, sig]);
  if (r.code !== 0) throw syncError(`cannot signal container ${rec.name}`, r, { fallback: 'ECONTAINER_STATE' });
}

/** Docker's stop: the stop signal, then SIGKILL after the timeout. */
export async function stop(store: Store, rec: ContainerRecord, timeoutSec: number, onSignal?: (sig: string) => void): Promise<void> {
  // Before anything: a holder waiting to restart it, or restarting it now, stops there.
  markStopped(new Containers(store).dir(rec.id));
  let st = stateOf(store, rec);
  if (st.restarting) {
    await waitStopped(store, rec, 5000);
    st = stateOf(store, rec);
  } else if (st.pending) await waitStopped(store, rec, 5000);
  if (st.status !== 'running') return;
  try {
    // Told before it is sent: its event comes before the holder's die.
    onSignal?.(rec.stopSignal);
    signal(rec, rec.stopSignal);
  } catch {
    /* it may have just exited */
  }
  if (await waitStopped(store, rec, timeoutSec * 1000)) return;
  try {
    onSignal?.('KILL');
    signal(rec, 'KILL', true);
  } catch {
    /* gone meanwhile */
  }
  await waitStopped(store, rec, 10_000);
}

/**
 * Removes a container; `force` kills it first. No process of it survives. `heldEnded`: the
 * caller held it in the foreground and saw its exit report (HeldEnd): its state need not be read,
 * nor the holder told not to restart it (run --rm, on the path of every such run). `onSignal`
 * is told each signal sent to it (the engine's kill event).
 */
export async function remove(store: Store, settings: StorageSettings, rec: ContainerRecord, force: boolean, volumes = false, heldEnded = false, onSignal?: (sig: string) => void): Promise<void> {
  if (!heldEnded) await stopForRemoval(store, rec, force, onSignal);
  // A foreground run and a monitor delete the runtime's state themselves; a dead one does not,
  // nor does a `cp` that was killed (its transient container is ID-cp-PID).
  let states: string[] = [];
  try {
    states = fs.readdirSync(rec.runtimeRoot).filter((n) => n === rec.id || n.startsWith(`${rec.id}-cp-`));
  } catch {
    /* no runtime state at all */
  }
  for (const id of states) rt(rec, ['delete', '--force', id]);
  const containers = new Containers(store);
  const dir = containers.dir(rec.id);
  // The root filesystem of the driver it was created with (its writable part may be outside
  // `dir`, and holds files of subordinate ids that only the user namespace can remove).
  await removeRootfs(settings, rootfsOf(rec, dir), dir);
  containers.removeDir(rec.id);
  // Its addresses on user-defined networks are free again (after its directory: a crash between
  // the two leaves an allocation without a record, which IPAM takes back itself).
  if (rec.net?.networks?.length) {
    const { release } = await import('../network/ipam');
    for (const e of rec.net.networks) release(store, e.network, rec.id);
  }
  containers.releaseName(rec.name, rec.id);
  if (volumes) for (const m of rec.mounts) if (m.type === 'volume' && /\/volumes\/anon-/.test(m.source)) fs.rmSync(path.dirname(m.source), { recursive: true, force: true });
}

/** What remove does before it deletes anything: a running container refused unless `force`, else killed. */
async function stopForRemoval(store: Store, rec: ContainerRecord, force: boolean, onSignal?: (sig: string) => void): Promise<void> {
  let st = stateOf(store, rec);
  if ((st.status === 'running' || st.restarting) && !force) {
    throw new BurrowError('ECONTAINER_STATE', `cannot remove container ${rec.name}: container is ${st.restarting ? 'restarting' : 'running'}: stop the container before removing or use -f`);
  }
  markStopped(new Containers(store).dir(rec.id));
  if (st.restarting) {
    await waitStopped(store, rec, 5000);
    st = stateOf(store, rec);
  }
  if (st.status === 'running') {
    try {
      onSignal?.('KILL');
      signal(rec, 'KILL', true);
    } catch {
      /* exited meanwhile */
    }
    await waitStopped(store, rec, 10_000);
  }
  // A monitor still draining the last output finishes on its own once the container is gone;
  // give it a moment so that it does not write into a directory we are deleting. (After the
  // exit record it writes nothing more here: it may be running our own `rm` for --rm.)
  await waitStopped(store, rec, 2000);
}

/** `top`: the container's processes as the host's `ps` shows them (default `-ef`). */
export function top(store: Store, rec: ContainerRecord, psArgs: string[]): string {
  if (stateOf(store, rec).status !== 'running') throw new BurrowError('ECONTAINER_STATE', `container ${rec.name} is not running`);
  const r = runtimeSync([...globalFlags(rec), 'ps', rec.id, ...psArgs]);
  if (r.status !== 0) throw syncError(`cannot list the processes of ${rec.name}`, r);
  return r.stdout;
}

/** Size of a tree as far as we can see it (files of subordinate ids may be unreadable). */
export function treeSize(dir: string): number {
  let total = 0;
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) total += treeSize(p);
    else {
      try {
        total += fs.lstatSync(p).size;
      } catch {
        /* gone meanwhile */
      }
    }
  }
  return total;
}

/**
 * `container prune`: removes every container that is not running; returns the ids and the
 * space their writable layers held. `keep` filters (label=, until=) decide which may go.
 */
export async function prune(store: Store, settings: StorageSettings, filters: string[]): Promise<{ ids: string[]; bytes: number }> {
  const match = (rec: ContainerRecord): boolean =>
    filters.every((f) => {
      const i = f.indexOf('=');
      const k = i < 0 ? f : f.slice(0, i);
      const v = i < 0 ? '' : f.slice(i + 1);
      if (k === 'label' || k === 'label!') {
        const [lk = '', lv] = v.split('=', 2);
        const has = lk in rec.labels && (lv === undefined || rec.labels[lk] === lv);
        return k === 'label' ? has : !has;
      }
      if (k === 'until') {
        const rel = /^(\d+)(s|m|h)$/.exec(v);
        const t = rel ? Date.now() - Number(rel[1]) * { s: 1000, m: 60_000, h: 3_600_000 }[rel[2] as 's' | 'm' | 'h'] : Date.parse(v);
        if (Number.isNaN(t)) throw new BurrowError('EUSAGE', `invalid filter until=${v}`);
        return Date.parse(rec.created) < t;
      }
      throw new BurrowError('EUSAGE', `invalid filter ${f}: prune takes label=, label!= and until=`);
    });
  const containers = new Containers(store);
  const ids: string[] = [];
  let bytes = 0;
  for (const rec of containers.all()) {
    const st = stateOf(store, rec);
    if (st.status === 'running' || st.pending || !match(rec)) continue;
    const size = treeSize(path.join(containers.dir(rec.id), 'upper'));
    try {
      await remove(store, settings, rec, false);
    } catch {
      continue; // started meanwhile
    }
    ids.push(rec.id);
    bytes += size;
  }
  return { ids, bytes };
}
