/** Docker-shaped `inspect` output for containers and images. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseImageConfig, type ImageConfig } from '../image/manifest';
import { findImage } from '../image/resolve';
import { rootfsOf, type RootfsRecord } from '../storage/rootfs';
import type { Driver, ImageRecord, Store } from '../storage/store';
import { hostConfigNetwork, networkSettings, type NetworkLookup } from '../network/inspect';
import { readLost } from '../network/runtime';
import { Containers, type ContainerRecord } from './records';
import { containerState } from './state';
import { isFrozen } from './freezer';
import { readHealth, type HealthState } from './health';

const ZERO_TIME = '0001-01-01T00:00:00Z';

/** Read here rather than through create.ts, which would load the whole create path (spec, cgroups, rootfs building). */
function imageConfig(store: Store, img: ImageRecord): ImageConfig {
  return parseImageConfig(fs.readFileSync(store.blobPath(img.configDigest)));
}

interface OciResources {
  memory?: { limit?: number; swap?: number; reservation?: number; disableOOMKiller?: boolean };
  cpu?: { shares?: number; quota?: number; period?: number; cpus?: string; mems?: string };
  pids?: { limit?: number };
  blockIO?: { weight?: number };
}

/** Docker's HostConfig resource fields (0 / "" when unset), from the bundle's current limits. */
function hostResources(r: OciResources): Record<string, number | string | boolean> {
  const quota = r.cpu?.quota ?? 0;
  const period = r.cpu?.period ?? 0;
  return {
    Memory: r.memory?.limit ?? 0,
    MemorySwap: r.memory?.swap ?? 0,
    MemoryReservation: r.memory?.reservation ?? 0,
    OomKillDisable: r.memory?.disableOOMKiller ?? false,
    NanoCpus: quota > 0 && period > 0 ? Math.round((quota / period) * 1e9) : 0,
    CpuShares: r.cpu?.shares ?? 0,
    CpuQuota: quota,
    CpuPeriod: period,
    CpusetCpus: r.cpu?.cpus ?? '',
    CpusetMems: r.cpu?.mems ?? '',
    PidsLimit: r.pids?.limit ?? 0,
    BlkioWeight: r.blockIO?.weight ?? 0,
  };
}

/** The running container's cgroup (v2's, else v1's memory hierarchy's), as podman's State.CgroupPath. */
function cgroupPath(pid: number): string {
  try {
    const lines = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n');
    return (lines.find((l) => /^\d+:[^:]*\bmemory\b[^:]*:/.test(l)) ?? lines.find((l) => l.startsWith('0::')) ?? '').replace(/^\d+:[^:]*:/, '');
  } catch {
    return '';
  }
}

/**
 * Docker's GraphDriver of a container: the rootfs driver it was created with (recorded with it,
 * as start, cp and rm use it) and where its parts are. The unions' lower layers are read from
 * the options the runtime mounts them with (top first, as Docker lists them); MergedDir is the
 * bundle's rootfs, where the runtime mounts the union inside the container's mount namespace
 * (an empty directory seen from the host, as a rootless podman's is outside `podman unshare`).
 * The copy driver has one plain directory, named RootDir as Docker's overlay driver names a
 * layer that is not a union.
 */
function graphDriver(rootfs: RootfsRecord, dir: string, annotations: Record<string, string>): { Name: Driver; Data: Record<string, string> } {
  if (rootfs.driver === 'copy') return { Name: 'copy', Data: { RootDir: path.join(rootfs.dir, 'rootfs') } };
  const key = `run.burrow.rootfs.${rootfs.driver}`;
  const lower = (annotations[key] ?? '').match(/(?:^|,)lowerdir=([^,]*)/)?.[1] ?? '';
  const cwd = annotations[`${key}.cwd`];
  return {
    Name: rootfs.driver,
    Data: {
      LowerDir: lower
        .split(':')
        .filter(Boolean)
        .map((l) => (cwd ? path.resolve(cwd, l) : l))
        .join(':'),
      MergedDir: path.join(dir, 'bundle', 'rootfs'),
      UpperDir: path.join(rootfs.dir, 'upper'),
      WorkDir: path.join(rootfs.dir, 'work'),
    },
  };
}

/** Docker's State.Health, kept by the container's monitor (ts/container/health.ts). */
function healthOf(rec: ContainerRecord, dir: string, status: string): { Health?: HealthState } {
  const h = readHealth(rec.healthcheck, dir, status);
  return h ? { Health: h } : {};
}

export function inspectContainer(store: Store, rec: ContainerRecord): object {
  const dir = new Containers(store).dir(rec.id);
  const st = containerState(rec, dir);
  const paused = st.status === 'running' && isFrozen(st.pid);
  const lost = rec.net?.mode === 'user' && st.status === 'running' ? readLost(dir) : undefined;
  let spec: { process?: { env?: string[]; cwd?: string; user?: { uid: number; gid: number }; args?: string[] }; annotations?: Record<string, string>; linux?: { resources?: OciResources } } = {};
  try {
    spec = JSON.parse(fs.readFileSync(path.join(dir, 'bundle', 'config.json'), 'utf8')) as typeof spec;
  } catch {
    /* removed meanwhile */
  }
  const c = rec.config;
  // Docker's ExposedPorts: the image's and the published ones.
  const exposed: Record<string, object> = {};
  try {
    const img = findImage(store, rec.image);
    if (img) for (const k of Object.keys(imageConfig(store, img).config?.ExposedPorts ?? {})) exposed[k.includes('/') ? k : `${k}/tcp`] = {};
  } catch {
    /* the image was removed */
  }
  for (const p of c?.exposedPorts ?? []) exposed[p] = {};
  for (const p of rec.net?.ports ?? []) exposed[`${p.containerPort}/${p.protocol}`] = {};
  return {
    Id: rec.id,
    Created: rec.created,
    Path: rec.command[0] ?? '',
    Args: rec.command.slice(1),
    State: {
      Status: paused ? 'paused' : st.status,
      Running: st.status === 'running',
      Paused: paused,
      Restarting: st.restarting ?? false,
      OOMKilled: st.oomKilled,
      Dead: false,
      Pid: st.pid,
      ExitCode: st.exitCode,
      // A container whose network owner went away runs on, cut off: said where Docker users look first.
      Error: st.error || (lost ? `network owner lost at ${lost.at}: cut off from ${lost.networks.join(', ')}; restart the container to reattach` : ''),
      StartedAt: st.startedAt ?? ZERO_TIME,
      FinishedAt: st.finishedAt ?? ZERO_TIME,
      CgroupPath: st.status === 'running' ? cgroupPath(st.pid) : '',
      ...healthOf(rec, dir, paused ? 'paused' : st.status),
    },
    Image: rec.image,
    ResolvConfPath: path.join(dir, 'etc', 'resolv.conf'),
    HostnamePath: path.join(dir, 'etc', 'hostname'),
    HostsPath: path.join(dir, 'etc', 'hosts'),
    LogPath: rec.logPath,
    Name: `/${rec.name}`,
    RestartCount: st.restartCount,
    Driver: 'overlay',
    Platform: 'linux',
    MountLabel: '',
    ProcessLabel: '',
    AppArmorProfile: '',
    HostConfig: {
      Binds: c?.binds.length ? c.binds : null,
      AutoRemove: rec.autoRemove,
      NetworkMode: rec.network,
      ...hostConfigNetwork(rec.net),
      LogConfig: { Type: rec.logDriver, Config: {} },
      RestartPolicy: { Name: rec.restartPolicy?.name ?? 'no', MaximumRetryCount: rec.restartPolicy?.maximumRetryCount ?? 0 },
      CapAdd: c?.capAdd.length ? c.capAdd : null,
      CapDrop: c?.capDrop.length ? c.capDrop : null,
      Privileged: c?.privileged ?? false,
      ReadonlyRootfs: c?.readOnly ?? false,
      SecurityOpt: c?.securityOpt.length ? c.securityOpt : null,
      ...(c && Object.keys(c.tmpfs).length ? { Tmpfs: c.tmpfs } : {}),
      ...hostResources(spec.linux?.resources ?? {}),
    },
    GraphDriver: graphDriver(rootfsOf(rec, dir), dir, spec.annotations ?? {}),
    Mounts: rec.mounts.map((m) =>
      m.type === 'volume'
        ? { Type: 'volume', Name: m.name ?? path.basename(path.dirname(m.source)), Source: m.source, Destination: m.destination, Driver: 'local', Mode: m.mode || 'z', RW: m.rw, Propagation: '' }
        : { Type: m.type, Source: m.source, Destination: m.destination, Mode: m.mode, RW: m.rw, Propagation: m.type === 'bind' ? 'rprivate' : '' },
    ),
    Config: {
      Hostname: rec.hostname,
      User: c ? c.user : spec.process?.user ? `${spec.process.user.uid}:${spec.process.user.gid}` : '',
      AttachStdin: rec.attachStreams ? rec.attachStreams.stdin : rec.interactive && !rec.detached,
      AttachStdout: rec.attachStreams ? rec.attachStreams.stdout : !rec.detached,
      AttachStderr: rec.attachStreams ? rec.attachStreams.stderr : !rec.detached,
      Tty: rec.tty,
      OpenStdin: rec.interactive,
      StdinOnce: rec.stdinOnce ?? (rec.interactive && !rec.detached),
      Env: spec.process?.env ?? [],
      Cmd: c ? c.cmd : rec.command,
      Image: rec.imageName,
      Entrypoint: c ? c.entrypoint : null,
      WorkingDir: spec.process?.cwd ?? c?.workdir ?? '/',
      Labels: rec.labels,
      StopSignal: rec.stopSignal,
      StopTimeout: rec.stopTimeout,
      ...(rec.healthcheck ? { Healthcheck: rec.healthcheck } : {}),
      ...(Object.keys(exposed).length ? { ExposedPorts: exposed } : {}),
    },
    NetworkSettings: networkSettings(rec.net, dir, st.status === 'running' ? st.pid : 0, exposed, rec.net?.mode === 'user' ? { id: rec.id, name: rec.name, lookup: networkLookup(store, rec.id), ...(lost ? { lost } : {}) } : undefined),
  };
}

/** The store's user-defined networks by id, for the endpoints' prefix lengths and gateways. */
function networkLookup(store: Store, containerId: string): NetworkLookup {
  return (id) => {
    try {
      // Lazy: only containers on user-defined networks pay for it (node:crypto).
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const { findNetwork, networkDef, endpointId } = require('../engine/networks') as typeof import('../engine/networks');
      const d = networkDef(findNetwork({ store } as Parameters<typeof findNetwork>[0], id));
      return { subnet: d.subnet, gateway: d.gateway, ...(d.subnet6 ? { subnet6: d.subnet6, gateway6: d.gateway6 } : {}), endpointId: endpointId(id, containerId) };
    } catch {
      return undefined;
    }
  };
}

export function inspectImage(store: Store, img: ImageRecord): object {
  const cfg = imageConfig(store, img);
  return {
    Id: img.id,
    // In Docker's order: sorted by the full name (its reference store's lexicalRefs), which is
    // what docker-py's `Image.save(named=True)` takes the first of.
    RepoTags: [...img.repoTags].sort().map((t) => t.replace(/^docker\.io\/(library\/)?/, '')),
    RepoDigests: img.repoDigests,
    Created: img.created ?? ZERO_TIME,
    Architecture: img.architecture,
    ...(img.variant ? { Variant: img.variant } : {}),
    Os: img.os,
    Size: img.size,
    Config: cfg.config ?? {},
    RootFS: { Type: 'layers', Layers: img.layers.map((l) => l.diffId) },
    GraphDriver: { Name: 'overlay', Data: { LowerDir: [...img.layers].reverse().map((l) => store.layerDir(l.diffId)).join(':') } },
    Metadata: { LastTagTime: img.pulledAt },
  };
}

export function inspectAny(store: Store, name: string, type?: string): object | undefined {
  if (type !== 'image') {
    try {
      return inspectContainer(store, new Containers(store).find(name));
    } catch {
      /* not a container */
    }
  }
  if (type !== 'container') {
    const img = findImage(store, name);
    if (img) return inspectImage(store, img);
  }
  return undefined;
}
