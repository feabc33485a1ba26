/**
 * A RUN step: a container of the stage so far (prepareContainer, as `run` makes one: same
 * runtime, id mapping, rootfs driver and network), run by `burrow-runtime run` with its output
 * piped to the build's events, then its writable layer (the overlay upper directory, as it is)
 * packed into the step's layer. The container, its root and its mounts are removed whatever
 * happens: a failure, an abort (Ctrl-C), a packing error.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Socket } from 'node:net';
import { BurrowError } from '../errors';
import { prepareContainer } from '../container/create';
import { remove } from '../container/lifecycle';
import { Containers, type ContainerRecord } from '../container/records';
import type { OciMount } from '../container/spec';
import type { MountRequest } from '../engine/create';
import { runtimeNetworkArgs } from '../network/runtime';
import { globalFlags, readReports, runtimeSpawn, runtimeSync, statusFlags, type RuntimeOutcome } from '../runtime/client';
import { packUpper, type PackResult } from '../storage/pack';
import { writableDir } from '../storage/refs';
import type { StorageSettings, Store } from '../storage/store';
import { transientImage, type BuildState } from './state';

export interface RunStep {
  argv: string[];
  env: string[];
  network: 'default' | 'none' | 'host';
  /** Extra mounts in OCI form (cache, bind, tmpfs, secret), already prepared on the host. */
  mounts: OciMount[];
  /** Mount targets that must not stay in the layer as empty mountpoints. */
  mountTargets: string[];
  onOutput(stream: 'stdout' | 'stderr', data: Buffer): void;
  signal?: AbortSignal;
  warn(m: string): void;
}

export interface RunResult {
  exit: number;
  /** The last lines of its output, for the error. */
  tail: string;
  /** The packed layer (a blob file in `tmpDir`), when it exited 0. */
  layer?: { file: string; result: PackResult };
}

const TAIL_LINES = 10;

/** Whether `rel` (absolute in the container) exists in the layers (top first), whiteouts aside. */
function inLayers(layerDirs: string[], rel: string): boolean {
  return layerDirs.some((d) => fs.existsSync(path.join(d, rel)));
}

/**
 * Mountpoints the runtime had to create (a /run/secrets/ID file, /etc/hosts of an image
 * without one) are not the step's work: BuildKit leaves them out of the layer too. Removed
 * when empty and absent from the layers below, then their new empty parents.
 */
function dropMountpoints(upper: string, layerDirs: string[], targets: string[]): void {
  for (const t of targets) {
    for (let rel = path.posix.normalize(t); rel !== '/' && rel !== '.'; rel = path.posix.dirname(rel)) {
      if (inLayers(layerDirs, rel)) break;
      const p = path.join(upper, rel);
      const st = fs.lstatSync(p, { throwIfNoEntry: false });
      if (!st) continue;
      try {
        if (st.isDirectory()) fs.rmdirSync(p);
        else if (st.isFile() && st.size === 0) fs.rmSync(p);
        else break;
      } catch {
        break; // not empty: the step wrote there
      }
    }
  }
}

function runContainer(store: Store, rec: ContainerRecord, step: RunStep, tail: string[]): Promise<number> {
  const dir = new Containers(store).dir(rec.id);
  const netArgs = runtimeNetworkArgs(store, rec, dir);
  const child = runtimeSpawn([...globalFlags(rec, { cgroup: true }), ...statusFlags(3), 'run', '--bundle', path.join(dir, 'bundle'), '--dir', dir, ...netArgs, rec.id], {
    stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    // Its own process group: the terminal's Ctrl-C reaches us, and we stop the step ourselves.
    detached: true,
  });
  let partial = '';
  const keep = (d: Buffer) => {
    partial += d.toString('utf8');
    const lines = partial.split('\n');
    partial = lines.pop()!;
    tail.push(...lines);
    if (tail.length > TAIL_LINES) tail.splice(0, tail.length - TAIL_LINES);
  };
  child.stdout!.on('data', (d: Buffer) => {
    keep(d);
    step.onOutput('stdout', d);
  });
  child.stderr!.on('data', (d: Buffer) => {
    keep(d);
    step.onOutput('stderr', d);
  });
  const kill = () => {
    runtimeSync([...globalFlags(rec), 'kill', '--all', rec.id, 'KILL'], { stdout: 'ignore' });
    child.kill('SIGKILL');
  };
  step.signal?.addEventListener('abort', kill, { once: true });
  return new Promise((resolve) => {
    const said: RuntimeOutcome = {};
    readReports(child.stdio[3] as Socket, (r) => {
      if (r.kind === 'error') said.failure = { code: r.code, msg: r.error };
      if (r.kind === 'exit') said.exit = r.exit;
    });
    child.on('error', () => resolve(125));
    child.on('close', (code) => {
      step.signal?.removeEventListener('abort', kill);
      if (partial) tail.push(partial);
      if (said.failure && said.exit === undefined) tail.push(said.failure.msg);
      resolve(said.exit ?? (said.failure ? 125 : (code ?? 137)));
    });
  });
}

/** Runs one RUN step on `state`; its layer is packed into `tmpDir` when it succeeds. */
export async function runStep(store: Store, settings: StorageSettings, runRoot: string, state: BuildState, step: RunStep, tmpDir: string): Promise<RunResult> {
  if (settings.driver === 'copy') {
    throw new BurrowError('EBUILD_STEP', 'RUN needs a union rootfs driver (overlay or fuse-overlayfs): the copy driver has no writable layer of its own to take', 'build with --storage-driver overlay or fuse-overlayfs');
  }
  const img = transientImage(store, state);
  const { networkRecord } = await import('../network/options');
  const { setting } = await import('../config/config');
  const network = step.network === 'default' ? setting(undefined, 'BURROW_NETWORK', (c) => c.containers.network, '') : step.network;
  const net = networkRecord({ ...(network ? { network } : {}), publish: [], publishAll: false, dns: [], dnsSearch: [], dnsOption: [], addHost: [] }, undefined, (m) => step.warn(m));
  const id = Math.random().toString(16).slice(2, 10);
  const mounts: MountRequest[] = [];
  let rec: ContainerRecord | undefined;
  const tail: string[] = [];
  try {
    rec = await prepareContainer(
      store,
      settings,
      img,
      'build',
      {
        name: `burrow-build-${process.pid}-${id}`,
        args: step.argv,
        entrypoint: [],
        env: step.env,
        envFiles: [],
        workdir: state.config.config.WorkingDir || '/',
        ...(state.config.config.User ? { user: state.config.config.User } : {}),
        hostname: 'buildkitsandbox',
        tty: false,
        interactive: false,
        rm: false,
        detach: false,
        readOnly: false,
        capAdd: [],
        capDrop: [],
        privileged: false,
        securityOpt: [],
        ulimits: [],
        labels: ['io.burrow.build=1'],
        volumes: [],
        mounts,
        tmpfs: [],
        network: net.mode,
        net,
        logDriver: 'none',
        warn: (m) => step.warn(m),
        noCgroup: true,
      },
      runRoot,
    );
    // The step's own mounts, in the bundle prepareContainer wrote.
    if (step.mounts.length) {
      const bundle = path.join(new Containers(store).dir(rec.id), 'bundle', 'config.json');
      const spec = JSON.parse(fs.readFileSync(bundle, 'utf8')) as { mounts: OciMount[] };
      spec.mounts.push(...step.mounts);
      fs.writeFileSync(bundle, JSON.stringify(spec));
    }
    const exit = await runContainer(store, rec, step, tail);
    if (step.signal?.aborted) throw new BurrowError('EBUILD_STEP', 'the build was interrupted');
    if (exit !== 0) return { exit, tail: tail.join('\n') };
    const upper = writableDir(rec, new Containers(store).dir(rec.id));
    const layerDirs = [...state.layers].reverse().map((l) => store.layerDir(l.diffId));
    dropMountpoints(upper, layerDirs, [...step.mountTargets, '/etc/hosts', '/etc/hostname', '/etc/resolv.conf', '/proc', '/sys', '/dev']);
    const file = path.join(tmpDir, `run-${id}.layer`);
    const result = await packUpper(settings, upper, file, { ...(step.signal ? { signal: step.signal } : {}) });
    return { exit, tail: tail.join('\n'), layer: { file, result } };
  } finally {
    if (rec) await remove(store, settings, rec, true).catch((e: Error) => step.warn(`could not remove the build container ${rec!.name}: ${e.message}`));
  }
}
