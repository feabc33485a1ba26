/**
 * The container operations every front end calls (the CLI's commands, the API's routes): run
 * modes with their cleanup, start, stop, restart, kill, remove, wait, rename, top, prune,
 * update, pause and unpause. Each one that changes a container emits Docker's event for it.
 * Creation is ts/engine/create.ts; listing and its filters ts/engine/list.ts. Nothing here
 * writes to the terminal: warnings go to `Hooks`.
 */
import { BurrowError } from '../errors';
import type { LimitFlags } from '../container/limits';
import * as lc from '../container/lifecycle';
import { Containers, type ContainerRecord, type RestartPolicy } from '../container/records';
import type { ContainerState } from '../container/state';
import { isFrozen } from '../container/freezer';
import type { EngineContext, Hooks } from './context';
import { containerAttributes } from './create';
import { emitEvent, lastDieExit, type EngineEvent } from './events';
import { signalNumber } from '../runtime/client';
import { emitNetworkEvents, recordNetworks, type NetworkActor } from './network-events';

export { createContainer, parseRestartPolicy, type CreateRequest, type CreateHooks, type MountRequest } from './create';

/** Docker's event of a container (a run plan's `destroy` is built here too: ts/container/run-plan.ts). */
export function containerEvent(rec: ContainerRecord, action: string, extra: Record<string, string> = {}): EngineEvent {
  return { Type: 'container', Action: action, Actor: { ID: rec.id, Attributes: containerAttributes(rec, extra) } };
}

function event(ctx: EngineContext, action: string, rec: ContainerRecord, extra: Record<string, string> = {}): void {
  emitEvent(ctx, containerEvent(rec, action, extra));
}

/**
 * Docker's `kill` event, logged for every signal the engine sends (`kill`, and the stop signal
 * and SIGKILL of `stop`, `restart` and `rm -f`), with the signal's number as Docker's daemon
 * writes it (signal=15).
 */
function killEvent(ctx: EngineContext, rec: ContainerRecord, sig: string): void {
  const name = sig.toUpperCase().replace(/^SIG/, '');
  const n: number | undefined = /^\d+$/.test(name) ? Number(name) : signalNumber(`SIG${name}` as NodeJS.Signals);
  event(ctx, 'kill', rec, { signal: n === undefined ? `SIG${name}` : String(n) });
}

export function findContainer(ctx: EngineContext, ref: string): ContainerRecord {
  return new Containers(ctx.store).find(ref);
}

/** The container's state, with `paused` for a running one whose cgroup is frozen. */
export function stateOf(ctx: EngineContext, rec: ContainerRecord): ContainerState & { paused: boolean } {
  const st = lc.stateOf(ctx.store, rec);
  return { ...st, paused: st.status === 'running' && isFrozen(st.pid) };
}

/** The command a monitor runs when an --rm container exits: our own `rm -f`. */
function cleanupFor(ctx: EngineContext, rec: ContainerRecord): string[] | undefined {
  return rec.autoRemove ? lc.selfCommand(ctx.globalArgs, 'rm', '-f', rec.id) : undefined;
}

/** Removes a container that could not start (run's cleanup); never throws. */
async function discard(ctx: EngineContext, rec: ContainerRecord): Promise<void> {
  await lc.remove(ctx.store, await ctx.settings(), rec, true).catch(() => undefined);
}

export type RunMode =
  /** Under a monitor that outlives us; resolves once it runs. */
  | { mode: 'detached'; ttySize?: { rows: number; cols: number } }
  /** The runtime holds it in the foreground; resolves with its exit status. `beforeSpawn`: see lifecycle.ts. */
  | { mode: 'foreground'; interactive?: boolean; beforeSpawn?: lc.BeforeSpawn }
  /** Under a monitor, our terminal attached (run -it: the detach keys leave it running). */
  | { mode: 'attached'; detachKeys?: string; interactive?: boolean };

/**
 * Runs a container that was just created (`run`) or starts an existing one (`start -a`): the
 * exit status for the foreground and attached modes, undefined when detached. A container
 * created for this run (`removeOnFailure`) is removed when it cannot start.
 */
export async function runContainer(ctx: EngineContext, rec: ContainerRecord, how: RunMode, removeOnFailure = false): Promise<number | undefined> {
  const cleanup = cleanupFor(ctx, rec);
  const fail = async (err: unknown): Promise<never> => {
    if (removeOnFailure) await discard(ctx, rec);
    throw err;
  };
  // What its holder logs a disconnect for when it exits; connected at its start, as by Docker's.
  const nets = recordNetworks(ctx, rec, new Containers(ctx.store).dir(rec.id));
  // Its output ours (a Docker client attaches before it starts) and connected: logged before its
  // holder exists, so before its `start`, which the holder logs itself as soon as the program
  // runs (crates/burrow-core/src/runtime/holder.rs record_start): logged here, after the holder
  // answered, it came after the die of a container that exits at once, or never when we were
  // killed meanwhile.
  const attached = () => {
    event(ctx, 'attach', rec);
    emitNetworkEvents(ctx, 'connect', rec.id, nets);
  };
  if (how.mode === 'foreground') {
    attached();
    // --rm: we remove it; the runtime does if we are killed first (lifecycle.ts runForeground).
    const seen: lc.HeldEnd = {};
    const code = await lc.runForeground(ctx.store, how.interactive ? { ...rec, interactive: true } : rec, cleanup, seen, how.beforeSpawn);
    if (rec.autoRemove) await removeContainer(ctx, rec, { force: true, heldEnded: !!seen.exitReported });
    return code;
  }
  if (how.mode === 'attached') {
    const { runAttached } = await import('../container/attach');
    const r = { ...rec, interactive: how.interactive ?? rec.interactive };
    attached();
    return runAttached(ctx.store, r, cleanup, how.detachKeys).catch(fail);
  }
  await startConnected(ctx, rec, nets, cleanup, how.ttySize ? { ttySize: how.ttySize } : {}).catch(fail);
  return undefined;
}

/**
 * Starts it under its monitor, its networks' connects logged first: before its holder exists,
 * which logs the start, then the disconnects and the die. A start that fails is disconnected
 * again.
 */
async function startConnected(ctx: EngineContext, rec: ContainerRecord, nets: NetworkActor[], cleanup: string[] | undefined, opts: lc.MonitorAttach = {}): Promise<void> {
  emitNetworkEvents(ctx, 'connect', rec.id, nets);
  try {
    await lc.startDetached(ctx.store, rec, cleanup, opts);
  } catch (err) {
    emitNetworkEvents(ctx, 'disconnect', rec.id, nets);
    throw err;
  }
}

/** `start` (detached): false when it was running already (the API's 304). */
export async function startContainer(ctx: EngineContext, rec: ContainerRecord): Promise<boolean> {
  if (lc.stateOf(ctx.store, rec).status === 'running') return false;
  await runContainer(ctx, rec, { mode: 'detached' });
  return true;
}

/** `stop`: the stop signal, SIGKILL after the timeout; false when it was not running (304). */
export async function stopContainer(ctx: EngineContext, rec: ContainerRecord, timeoutSec?: number): Promise<boolean> {
  const st = lc.stateOf(ctx.store, rec);
  // A container its monitor is about to restart (the policy's back-off) is stopped too: the
  // restart must not happen (Docker answers 204 there).
  if (st.status !== 'running' && !st.pending && !st.restarting) return false;
  await lc.stop(ctx.store, rec, timeoutSec ?? rec.stopTimeout, (sig) => killEvent(ctx, rec, sig));
  event(ctx, 'stop', rec);
  return true;
}

/** `restart`: Docker's events for it, those of a stop (when it ran) and a start (its holder logs the `start`), then `restart`. */
export async function restartContainer(ctx: EngineContext, rec: ContainerRecord, timeoutSec?: number): Promise<void> {
  const st = lc.stateOf(ctx.store, rec);
  await lc.stop(ctx.store, rec, timeoutSec ?? rec.stopTimeout, (sig) => killEvent(ctx, rec, sig));
  if (st.status === 'running') event(ctx, 'stop', rec);
  await startConnected(ctx, rec, recordNetworks(ctx, rec, new Containers(ctx.store).dir(rec.id)), cleanupFor(ctx, rec));
  event(ctx, 'restart', rec);
}

/** `kill`: a signal to the container's init; a container that is not running is a conflict. */
export function killContainer(ctx: EngineContext, rec: ContainerRecord, signal = 'KILL'): void {
  if (lc.stateOf(ctx.store, rec).status !== 'running') throw new BurrowError('ECONTAINER_STATE', `Cannot kill container: ${rec.name}: Container ${rec.id} is not running`);
  // Logged before it is sent: its event comes before the holder's die.
  killEvent(ctx, rec, signal);
  lc.signal(rec, signal);
}

export async function removeContainer(ctx: EngineContext, rec: ContainerRecord, o: { force?: boolean; volumes?: boolean; heldEnded?: boolean } = {}): Promise<void> {
  await lc.remove(ctx.store, await ctx.settings(), rec, !!o.force, !!o.volumes, !!o.heldEnded, (sig) => killEvent(ctx, rec, sig));
  event(ctx, 'destroy', rec);
}

export function renameContainer(ctx: EngineContext, rec: ContainerRecord, newName: string): ContainerRecord {
  const renamed = new Containers(ctx.store).rename(rec, newName);
  event(ctx, 'rename', renamed, { oldName: `/${rec.name}` });
  return renamed;
}

/** `top`: the host `ps` lines of the container's processes (default `-ef`). */
export function topContainer(ctx: EngineContext, rec: ContainerRecord, psArgs: string[] = []): string {
  return lc.top(ctx.store, rec, psArgs);
}

/** `container prune`: every container that is not running and matches the filters. */
export async function pruneContainers(ctx: EngineContext, filters: string[]): Promise<{ ids: string[]; bytes: number }> {
  const containers = new Containers(ctx.store);
  const before = new Map(containers.all().map((r) => [r.id, r]));
  const r = await lc.prune(ctx.store, await ctx.settings(), filters);
  for (const id of r.ids) {
    const rec = before.get(id);
    if (rec) event(ctx, 'destroy', rec);
  }
  return r;
}

export interface UpdateRequest {
  resources?: Omit<LimitFlags, 'cgroups'>;
  restartPolicy?: RestartPolicy;
}

/**
 * `update`: new limits for a running container (checked as `run`'s), a new restart policy for
 * any container. Returns Docker's warnings (none so far).
 */
export async function updateContainer(ctx: EngineContext, rec: ContainerRecord, u: UpdateRequest, _hooks: Hooks = {}): Promise<string[]> {
  const hasLimits = Object.values(u.resources ?? {}).some((v) => v !== undefined && !(Array.isArray(v) && v.length === 0));
  if (!hasLimits && !u.restartPolicy) throw new BurrowError('EUSAGE', 'update: give at least one limit, e.g. --memory 256m, --cpus 1.5 or --pids-limit 100, or a restart policy');
  if (u.restartPolicy && u.restartPolicy.name !== 'no' && rec.autoRemove) throw new BurrowError('EUSAGE', 'Restart policy cannot be updated because AutoRemove is enabled for the container');
  if (hasLimits) {
    const [{ update }, { native }] = await Promise.all([import('../container/resources'), import('../native')]);
    const info = JSON.parse(native().cgroupInfo()) as { mode: string; enforceable: string[]; delegationRoot: string | null; manager: string };
    update(ctx.store, rec, u.resources ?? {}, info);
  }
  if (u.restartPolicy) {
    const containers = new Containers(ctx.store);
    const cur = containers.get(rec.id);
    if (!cur) throw new BurrowError('ECONTAINER_NOT_FOUND', `no such container: ${rec.id}`);
    containers.save({ ...cur, restartPolicy: u.restartPolicy });
  }
  event(ctx, 'update', rec);
  return [];
}

/**
 * `pause` / `unpause`: the runtime freezes (thaws) every process through the container's
 * cgroup freezer. A container without a cgroup of its own (rootless on a host that does not
 * delegate cgroup v2 to the user) has no freezer: said with the fix, as podman does, instead of
 * stopping it with SIGSTOP, which the container could see and undo.
 */
export async function pauseContainer(ctx: EngineContext, rec: ContainerRecord, pause = true): Promise<void> {
  const st = stateOf(ctx, rec);
  if (st.status !== 'running') throw new BurrowError('ECONTAINER_STATE', `Container ${rec.id} is not running`);
  if (pause && st.paused) throw new BurrowError('ECONTAINER_STATE', `Container ${rec.id} is already paused`);
  if (!pause && !st.paused) throw new BurrowError('ECONTAINER_STATE', `Container ${rec.id} is not paused`);
  const { runtimeSync, globalFlags, runtimeError } = await import('../runtime/client');
  // What the runtime said: on stderr, or as a reported failure where it has a status channel.
  const r: { status: number | null; stderr: string; failure?: { msg: string } } = runtimeSync([...globalFlags(rec), pause ? 'pause' : 'resume', rec.id], { stdout: 'ignore' });
  if (r.status !== 0) {
    const said = `${r.stderr}\n${r.failure?.msg ?? ''}`.trim();
    if (/no cgroup|no freezer|not in a freezer cgroup/i.test(said)) {
      const rootless = (process.getuid?.() ?? 0) !== 0;
      throw new BurrowError(
        'ERUNTIME',
        `cannot ${pause ? 'pause' : 'unpause'} container ${rec.name}: it has no cgroup freezer${rootless ? ' (rootless containers get a cgroup of their own only where cgroup v2 is delegated to the user)' : ' (it has no cgroup of its own: on a cgroup v1 or hybrid host a container without limits is not placed in one)'}`,
        rootless
          ? 'boot the host with cgroup v2 (systemd.unified_cgroup_hierarchy=1) and delegate the controllers to your user (/etc/systemd/system/user@.service.d/delegate.conf: "[Service] Delegate=cpu cpuset io memory pids"), then recreate the container'
          : 'boot the host with cgroup v2 (systemd.unified_cgroup_hierarchy=1), where every container gets a cgroup of its own, then recreate the container',
      );
    }
    throw runtimeError(`cannot ${pause ? 'pause' : 'unpause'} container ${rec.name}`, { stderr: said });
  }
  event(ctx, pause ? 'pause' : 'unpause', rec);
}

export type WaitCondition = 'not-running' | 'next-exit' | 'removed';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Docker's wait: resolves with the exit status once the condition holds. `not-running`: now if
 * it is not running, else when it stops; `next-exit`: the end of the next run (a container not
 * running now must first be started); `removed`: when its record is gone. `signal` ends the
 * wait (the API client hung up).
 */
export async function waitContainer(ctx: EngineContext, rec: ContainerRecord, condition: WaitCondition = 'not-running', signal?: AbortSignal): Promise<number> {
  if (!['not-running', 'next-exit', 'removed'].includes(condition)) throw new BurrowError('EUSAGE', `invalid condition: "${condition}": want not-running, next-exit or removed`);
  const containers = new Containers(ctx.store);
  const first = lc.stateOf(ctx.store, rec);
  let last = first;
  // Cheap for a wait that takes hours, fast for one that takes milliseconds.
  for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
    if (signal?.aborted) throw new BurrowError('ECANCELED', 'wait canceled');
    if (condition === 'removed') {
      if (!containers.get(rec.id)) {
        if (last !== first && last.status === 'exited' && last.exitCode >= 0) return last.exitCode;
        // Exited and removed between two looks: its monitor recorded the status in the die event.
        return lastDieExit(ctx, rec.id) ?? (last.exitCode < 0 ? 0 : last.exitCode);
      }
    }
    const st = lc.stateOf(ctx.store, rec);
    if (st.status !== 'running' && !st.pending) {
      // The monitor records the status right after the init is reaped.
      last = st;
      if (condition === 'not-running') return st.exitCode;
      if (condition === 'next-exit') {
        const ranSince = first.status === 'running' || first.pending || (st.startedAt !== undefined && st.startedAt !== first.startedAt) || (st.finishedAt !== undefined && st.finishedAt !== first.finishedAt);
        if (ranSince && st.status === 'exited') return st.exitCode;
        if (!containers.get(rec.id)) throw new BurrowError('ECONTAINER_NOT_FOUND', `no such container: ${rec.id}`);
      }
    } else if (st.status === 'running') delay = Math.min(delay, 50);
    await sleep(delay);
  }
}
