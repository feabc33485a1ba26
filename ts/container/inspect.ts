/** Docker-shaped `inspect` output for containers and images. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { imageConfig } from './create';
import { findImage } from '../image/resolve';
import type { ImageRecord, Store } from '../storage/store';
import { Containers, type ContainerRecord } from './records';
import { containerState } from './state';

const ZERO_TIME = '0001-01-01T00:00:00Z';

export function inspectContainer(store: Store, rec: ContainerRecord): object {
  const dir = new Containers(store).dir(rec.id);
  const st = containerState(rec, dir);
  let spec: { process?: { env?: string[]; cwd?: string; user?: { uid: number; gid: number }; args?: string[] }; annotations?: Record<string, string> } = {};
  try {
    spec = JSON.parse(fs.readFileSync(path.join(dir, 'bundle', 'config.json'), 'utf8'));
  } catch {
    /* removed meanwhile */
  }
  const lower = (spec.annotations?.['run.burrow.rootfs.overlay'] ?? '').match(/lowerdir=([^,]*)/)?.[1] ?? '';
  const layersDir = spec.annotations?.['run.burrow.rootfs.overlay.cwd'] ?? '';
  const c = rec.config;
  return {
    Id: rec.id,
    Created: rec.created,
    Path: rec.command[0] ?? '',
    Args: rec.command.slice(1),
    State: {
      Status: st.status,
      Running: st.status === 'running',
      Paused: false,
      Restarting: false,
      OOMKilled: st.oomKilled,
      Dead: false,
      Pid: st.pid,
      ExitCode: st.exitCode,
      Error: st.error ?? '',
      StartedAt: st.startedAt ?? ZERO_TIME,
      FinishedAt: st.finishedAt ?? ZERO_TIME,
    },
    Image: rec.image,
    ResolvConfPath: path.join(dir, 'etc', 'resolv.conf'),
    HostnamePath: path.join(dir, 'etc', 'hostname'),
    HostsPath: path.join(dir, 'etc', 'hosts'),
    LogPath: rec.logPath,
    Name: `/${rec.name}`,
    RestartCount: 0,
    Driver: 'overlay',
    Platform: 'linux',
    MountLabel: '',
    ProcessLabel: '',
    AppArmorProfile: '',
    HostConfig: {
      Binds: c?.binds.length ? c.binds : null,
      AutoRemove: rec.autoRemove,
      NetworkMode: rec.network,
      LogConfig: { Type: rec.logDriver, Config: {} },
      RestartPolicy: { Name: 'no', MaximumRetryCount: 0 },
      CapAdd: c?.capAdd.length ? c.capAdd : null,
      CapDrop: c?.capDrop.length ? c.capDrop : null,
      Privileged: c?.privileged ?? false,
      ReadonlyRootfs: c?.readOnly ?? false,
      SecurityOpt: c?.securityOpt.length ? c.securityOpt : null,
      ...(c && Object.keys(c.tmpfs).length ? { Tmpfs: c.tmpfs } : {}),
    },
    GraphDriver: {
      Name: 'overlay',
      Data: { LowerDir: lower.split(':').filter(Boolean).map((l) => path.join(layersDir, l)).join(':'), UpperDir: path.join(dir, 'upper'), WorkDir: path.join(dir, 'work') },
    },
    Mounts: rec.mounts.map((m) =>
      m.type === 'volume'
        ? { Type: 'volume', Name: m.name ?? path.basename(path.dirname(m.source)), Source: m.source, Destination: m.destination, Driver: 'local', Mode: m.mode || 'z', RW: m.rw, Propagation: '' }
        : { Type: m.type, Source: m.source, Destination: m.destination, Mode: m.mode, RW: m.rw, Propagation: m.type === 'bind' ? 'rprivate' : '' },
    ),
    Config: {
      Hostname: rec.hostname,
      User: c ? c.user : spec.process?.user ? `${spec.process.user.uid}:${spec.process.user.gid}` : '',
      Tty: rec.tty,
      OpenStdin: rec.interactive,
      Env: spec.process?.env ?? [],
      Cmd: c ? c.cmd : rec.command,
      Image: rec.imageName,
      Entrypoint: c ? c.entrypoint : null,
      WorkingDir: spec.process?.cwd ?? c?.workdir ?? '/',
      Labels: rec.labels,
      StopSignal: rec.stopSignal,
      StopTimeout: rec.stopTimeout,
    },
    NetworkSettings: { Networks: {}, Ports: {} },
  };
}

export function inspectImage(store: Store, img: ImageRecord): object {
  const cfg = imageConfig(store, img);
  return {
    Id: img.id,
    RepoTags: img.repoTags.map((t) => t.replace(/^docker\.io\/(library\/)?/, '')),
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
