/**
 * Preparing a container: claims its name, lays out its directory (writable layer, /etc files,
 * OCI bundle) and writes its record. Shared by `create` and `run`; nothing here starts a process.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BurrowError } from '../errors';
import { parseImageConfig, type ContainerConfig, type ImageConfig } from '../image/manifest';
import { writeEtcFiles } from '../network/etc';
import type { NetworkRecord } from '../network/options';
import type { EndpointRecord } from '../network/user';
import type { NetworkRecord as StoredNetwork } from '../engine/networks';
import { mkdirp } from '../storage/fsutil';
import { buildRootfs, planRootfs, removeRootfs, withRootfs, type RootfsPlan } from '../storage/rootfs';
import type { FileImage } from '../storage/squash';
import type { ImageRecord, StorageSettings, Store } from '../storage/store';
import { Containers, generateName, type ContainerRecord, type Healthcheck, type RestartPolicy } from './records';
import type { MountRequest } from '../engine/create';
import { cgroupPlacement } from './cgroup';
import { mergeHealthcheck } from './health';
import { buildSpec, resolveUser, type DeviceSpec, type OciMount } from './spec';
import { checkRangeHere, fitUser, type Identity, type UserFallback } from './userns';
import type { CdiPlan } from '../cdi/edits';

export interface CreateOptions {
  /** A one-file image (squashfs, SIF) in place of the store's layers (ts/storage/squash.ts). */
  fileImage?: FileImage;
  name?: string;
  args: string[];
  entrypoint?: string[];
  env: string[];
  envFiles: string[];
  workdir?: string;
  user?: string;
  hostname?: string;
  tty: boolean;
  interactive: boolean;
  /** Docker's StdinOnce (records.ts); absent: the CLI's rule. */
  stdinOnce?: boolean;
  /** Docker's Config.Attach* from the API (records.ts). */
  attachStreams?: { stdin: boolean; stdout: boolean; stderr: boolean };
  rm: boolean;
  detach: boolean;
  readOnly: boolean;
  capAdd: string[];
  capDrop: string[];
  privileged: boolean;
  securityOpt: string[];
  ulimits: string[];
  labels: string[];
  volumes: string[];
  mounts: MountRequest[];
  tmpfs: string[];
  network: string;
  /** The parsed network flags (ts/network/options.ts). */
  net?: NetworkRecord;
  /** Mode `user`: the networks, found in the store, eth0 first (their addresses are allocated here, once the id is known). */
  userNetworks?: UserNetworkRequest[];
  logDriver: string;
  stopSignal?: string;
  stopTimeout?: number;
  /** OCI linux.resources, already checked to be enforceable. */
  resources?: Record<string, unknown>;
  /** `--cgroups=disabled`: no cgroup of its own either (podman's meaning). */
  noCgroup?: boolean;
  /** `--userns`, `--group-add`, `--device`, `--init`: see userns.ts and spec.ts. */
  identity?: Identity;
  /** `--userns` as given (for messages). */
  userns?: string;
  /** `--user-fallback`: a user the id map lacks runs as container root ('root', default) or is refused. */
  userFallback?: string;
  /** Where warnings go (stderr by default). */
  warn?: (message: string) => void;
  groupAdd?: string[];
  devices?: DeviceSpec[];
  init?: { hostPath: string; containerPath: string };
  /** `--expose`: ExposedPorts keys (`80/tcp`) added to the image's, for inspect. */
  expose?: string[];
  restartPolicy?: RestartPolicy;
  healthcheck?: Healthcheck;
  /** CDI devices (ts/cdi): their edits other than device nodes (which are in `devices`). */
  cdi?: CdiPlan;
  /** `--pid`, `--ipc` (`--hpc` defaults them to host). */
  pid?: 'host' | 'private';
  ipc?: 'host' | 'private';
}

/** A user-defined network to join, with the endpoint's settings as asked. */
export interface UserNetworkRequest {
  network: StoredNetwork;
  aliases: string[];
  ip?: string;
  mac?: string;
}

/**
 * The endpoints of a new container: an address from IPAM on each network (the asked one, or the
 * lowest free), Docker's MAC for it unless one was given. What was allocated before a failure is
 * given back.
 */
async function allocateEndpoints(store: Store, id: string, nets: UserNetworkRequest[]): Promise<EndpointRecord[]> {
  const { allocate, release } = await import('../network/ipam');
  const { endpointRecord } = await import('../engine/networks');
  const out: EndpointRecord[] = [];
  try {
    for (const [i, n] of nets.entries()) {
      if (n.mac !== undefined && !/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(n.mac)) throw new BurrowError('EUSAGE', `invalid --mac-address ${n.mac}: want six hexadecimal bytes, 02:42:ac:11:00:02`);
      const ip = allocate(store, n.network, id, n.ip);
      const ep = endpointRecord(n.network, ip, { ifname: `eth${i}`, aliases: n.aliases, ...(n.ip ? { ipGiven: true } : {}) });
      out.push(n.mac ? { ...ep, mac: n.mac.toLowerCase() } : ep);
    }
  } catch (err) {
    for (const n of nets) release(store, n.network.Id, id);
    throw err;
  }
  return out;
}

/** The record's healthcheck: the request's over the image's, as Docker's daemon merges them. */
function healthcheckOf(user: Healthcheck | undefined, image: ContainerConfig['Healthcheck']): { healthcheck?: Healthcheck } {
  const hc = mergeHealthcheck(user, image);
  return hc ? { healthcheck: hc } : {};
}

/** `--user-fallback`, else BURROW_USER_FALLBACK, else `[containers] user_fallback`, else 'root'. */
function userFallback(flag: string | undefined): UserFallback {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { setting, USER_FALLBACKS } = require('../config/config') as typeof import('../config/config');
  const v = setting(flag, 'BURROW_USER_FALLBACK', (c) => c.containers.userFallback, 'root', USER_FALLBACKS);
  if (!USER_FALLBACKS.includes(v)) throw new BurrowError('EUSAGE', `invalid --user-fallback ${v}: want ${USER_FALLBACKS.join(' or ')}`);
  return v as UserFallback;
}

export function imageConfig(store: Store, img: ImageRecord): ImageConfig {
  return parseImageConfig(fs.readFileSync(store.blobPath(img.configDigest)));
}

function readEnvFile(file: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new BurrowError('EUSAGE', `--env-file ${file}: ${(err as Error).message}`);
  }
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => (l.includes('=') ? l : `${l}=${process.env[l] ?? ''}`));
}

/** `-v SRC:DST[:opts]`, `--mount type=...`, `--tmpfs DST[:opts]` to OCI mounts. */
export function parseMounts(store: Store, o: CreateOptions): { oci: OciMount[]; shown: ContainerRecord['mounts'] } {
  const oci: OciMount[] = [];
  const shown: ContainerRecord['mounts'] = [];
  const add = (type: 'bind' | 'volume', source: string, destination: string, ro: boolean, extra: string[] = []) => {
    if (!destination.startsWith('/')) throw new BurrowError('EUSAGE', `invalid mount destination ${destination}: it must be an absolute path`);
    let src = source;
    if (type === 'volume') {
      if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(source)) throw new BurrowError('EUSAGE', `invalid volume name ${source}`);
      src = mkdirp(store.p('volumes', source, '_data'), 0o755);
    } else if (!fs.existsSync(src)) {
      throw new BurrowError('EUSAGE', `bind source path does not exist: ${src}`, 'create it first, or give a named volume instead of a path');
    }
    oci.push({ destination, type: 'bind', source: src, options: ['rbind', ro ? 'ro' : 'rw', ...extra] });
    shown.push({ type, source: src, destination, mode: ro ? 'ro' : '', rw: !ro, ...(type === 'volume' ? { name: source } : {}) });
  };
  for (const v of o.volumes) {
    const parts = v.split(':');
    if (parts.length < 2) throw new BurrowError('EUSAGE', `invalid volume ${v}: want SRC:DST[:OPTIONS]`);
    const [src = '', dst = '', opts = ''] = parts;
    // z/Z (SELinux relabel) and rw/ro as Docker has them; unknown options are refused.
    const flags = opts ? opts.split(',') : [];
    for (const f of flags) if (!['ro', 'rw', 'z', 'Z', 'private', 'rprivate', 'shared', 'rshared', 'slave', 'rslave', 'nocopy'].includes(f)) throw new BurrowError('EUSAGE', `invalid volume option ${f} in ${v}`);
    const isPath = src.startsWith('/') || src.startsWith('.');
    add(isPath ? 'bind' : 'volume', isPath ? path.resolve(src) : src, dst, flags.includes('ro'));
  }
  for (const m of o.mounts) {
    const dst = m.target;
    if (!dst) throw new BurrowError('EUSAGE', `mount of type ${m.type}: a target is required`);
    const ro = !!m.readOnly;
    if (m.type === 'bind') add('bind', path.resolve(m.source ?? ''), dst, ro);
    else if (m.type === 'volume') add('volume', m.source || `anon-${Math.random().toString(16).slice(2, 14)}`, dst, ro);
    else if (m.type === 'tmpfs') {
      const mode = typeof m.tmpfsMode === 'number' ? m.tmpfsMode.toString(8) : m.tmpfsMode;
      oci.push({ destination: dst, type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', ...(m.tmpfsSize ? [`size=${m.tmpfsSize}`] : []), ...(mode ? [`mode=${mode}`] : [])] });
      shown.push({ type: 'tmpfs', source: '', destination: dst, mode: '', rw: true });
    } else throw new BurrowError('EUSAGE', `--mount type=${String(m.type)} is not supported (bind, volume, tmpfs)`);
  }
  for (const t of o.tmpfs) {
    const [dst = '', opts] = t.split(':');
    oci.push({ destination: dst, type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', ...(opts ? opts.split(',') : [])] });
    shown.push({ type: 'tmpfs', source: '', destination: dst, mode: '', rw: true });
  }
  return { oci, shown };
}

export async function prepareContainer(store: Store, settings: StorageSettings, img: ImageRecord, imageName: string, o: CreateOptions, runRoot: string): Promise<ContainerRecord> {
  checkRangeHere(settings, o.identity);
  const containers = new Containers(store);
  const cfg = o.fileImage ? o.fileImage.config : imageConfig(store, img);
  const id = containers.newId();
  let name = o.name;
  if (name === undefined) {
    for (let i = 0; ; i++) {
      name = generateName() + (i > 5 ? `_${i}` : '');
      try {
        containers.claimName(name, id);
        break;
      } catch (err) {
        if (i > 50) throw err;
      }
    }
  } else containers.claimName(name, id);
  const dir = containers.dir(id);
  let rootfs: RootfsPlan | undefined;
  let net = o.net;
  let allocated: UserNetworkRequest[] | undefined;
  try {
    mkdirp(dir);
    for (const d of ['bundle/rootfs', 'etc']) mkdirp(path.join(dir, d), 0o755);
    // The driver (settings.driver: the store's, or this command's choice) and its writable part.
    rootfs = o.fileImage ? (await import('../storage/squash')).planSquashRootfs(settings, o.fileImage, id, dir) : await planRootfs(store, settings, img, id, dir);
    const hostname = o.hostname ?? id.slice(0, 12);
    const etc = { hosts: path.join(dir, 'etc', 'hosts'), hostname: path.join(dir, 'etc', 'hostname'), resolv: path.join(dir, 'etc', 'resolv.conf') };
    if (o.net && o.userNetworks?.length) {
      allocated = o.userNetworks;
      net = { ...o.net, networks: await allocateEndpoints(store, id, o.userNetworks) };
    }
    writeEtcFiles(etc, hostname, net, net?.mode === 'container' ? containers.dir(net.container!) : undefined, net?.networks?.length ? (await import('../engine/networks')).networkDef(o.userNetworks![0]!.network).gateway : undefined);
    // A one-file image's users and groups: its /etc/passwd and /etc/group as read from the file,
    // looked up in memory (writing them into the container's directory cost a dozen metadata
    // calls on the store's file system per container, for lookups most runs never make).
    const layerDirs = o.fileImage ? [o.fileImage.etc] : [...img.layers].reverse().map((l) => store.layerDir(l.diffId));
    const env = [...o.envFiles.flatMap(readEnvFile), ...o.env.map((e) => (e.includes('=') ? e : `${e}=${process.env[e] ?? ''}`))];
    const security = o.securityOpt;
    let seccomp: 'default' | 'unconfined' | object = 'default';
    let noNewPrivileges = false;
    for (const s of security) {
      if (s === 'no-new-privileges' || s === 'no-new-privileges:true' || s === 'no-new-privileges=true') noNewPrivileges = true;
      else if (s === 'seccomp=unconfined' || s === 'seccomp:unconfined') seccomp = 'unconfined';
      else if (/^seccomp[=:]/.test(s)) {
        const file = s.slice(8);
        try {
          seccomp = JSON.parse(fs.readFileSync(file, 'utf8')) as object;
        } catch (err) {
          throw new BurrowError('EUSAGE', `--security-opt ${s}: ${(err as Error).message}`);
        }
      } else if (/^(label|apparmor)[=:]/.test(s)) {
        /* SELinux and AppArmor labels do not apply rootless; accepted as Docker accepts them */
      } else throw new BurrowError('EUSAGE', `invalid --security-opt ${s}`);
    }
    const { oci, shown } = parseMounts(store, o);
    const network = o.network === 'host' ? 'host' : o.network === 'none' ? 'none' : 'private';
    const cgroup = o.noCgroup ? { systemd: false } : cgroupPlacement(id);
    // The process's user, checked against the id map: in single-id mode only root exists.
    const uidMap = o.identity?.uidMap ?? settings.uidMap;
    const gidMap = o.identity?.gidMap ?? settings.gidMap;
    const named = o.user ?? (cfg.config?.User || undefined);
    const wanted = o.user === undefined && o.identity?.user ? o.identity.user : resolveUser(named, layerDirs);
    const user = fitUser(wanted, named ?? `${wanted.uid}`, { uidMap, gidMap, userNamespace: o.identity?.userNamespace !== false }, settings, o.userns, userFallback(o.userFallback), o.warn ?? ((m) => process.stderr.write(`burrow: warning: ${m}\n`)));
    const spec = buildSpec(cfg, {
      args: o.args,
      ...(o.entrypoint !== undefined ? { entrypoint: o.entrypoint } : {}),
      env,
      ...(o.workdir ? { workdir: o.workdir } : {}),
      hostname,
      tty: o.tty,
      readOnly: o.readOnly,
      capAdd: o.capAdd,
      capDrop: o.capDrop,
      privileged: o.privileged,
      noNewPrivileges,
      seccomp,
      ulimits: o.ulimits,
      network,
      uidMap,
      gidMap,
      // Resolved above (image passwd, keep-id, the id map): the spec takes it as it is.
      defaultUser: user,
      ...(o.identity ? { userNamespace: o.identity.userNamespace } : {}),
      ...(o.groupAdd ? { groupAdd: o.groupAdd } : {}),
      ...(o.devices ? { devices: o.devices } : {}),
      ...(o.init ? { init: o.init } : {}),
      ...(o.pid ? { pid: o.pid } : {}),
      ...(o.ipc ? { ipc: o.ipc } : {}),
      mounts: oci,
      etcFiles: etc,
      layerDirs,
      ...(rootfs.overlay ? { overlay: rootfs.overlay } : {}),
      annotations: { 'io.burrow.container.name': name, 'io.burrow.image': img.id, ...rootfs.annotations },
      ...(o.resources ? { resources: o.resources } : {}),
      ...(cgroup.cgroupsPath ? { cgroupsPath: cgroup.cgroupsPath } : {}),
      ...(o.stopSignal ? { stopSignal: o.stopSignal } : {}),
    });
    if (o.cdi) {
      const { applyPlan } = await import('../cdi/edits');
      applyPlan(spec as Record<string, unknown>, o.cdi, path.join(dir, 'bundle', 'rootfs'), o.warn ?? ((m) => process.stderr.write(`burrow: warning: ${m}\n`)));
    }
    fs.writeFileSync(path.join(dir, 'bundle', 'config.json'), JSON.stringify(spec));
    const labels: Record<string, string> = { ...(cfg.config?.Labels ?? {}) };
    for (const l of o.labels) {
      const i = l.indexOf('=');
      labels[i < 0 ? l : l.slice(0, i)] = i < 0 ? '' : l.slice(i + 1);
    }
    const proc = (spec as { process: { args: string[]; cwd: string } }).process;
    // The command as the user gave it; an init in front of it is an implementation detail.
    const args = o.init ? proc.args.slice(2) : proc.args;
    const entrypoint = o.entrypoint ?? cfg.config?.Entrypoint ?? [];
    const rec: ContainerRecord = {
      id,
      ...(cgroup.systemd ? { cgroupManager: 'systemd' as const } : {}),
      name,
      image: img.id,
      imageName,
      created: new Date().toISOString(),
      command: args,
      tty: o.tty,
      interactive: o.interactive,
      ...(o.stdinOnce !== undefined ? { stdinOnce: o.stdinOnce } : {}),
      ...(o.attachStreams ? { attachStreams: o.attachStreams } : {}),
      autoRemove: o.rm,
      detached: o.detach,
      stopSignal: o.stopSignal ?? cfg.config?.StopSignal ?? 'SIGTERM',
      stopTimeout: o.stopTimeout ?? 10,
      labels,
      runtimeRoot: path.join(runRoot, 'runtime'),
      logPath: path.join(dir, 'ctr.log'),
      logDriver: (['k8s-file', 'json-file', 'none'].includes(o.logDriver) ? o.logDriver : 'k8s-file') as ContainerRecord['logDriver'],
      hostname,
      network: o.network,
      ...(net ? { net } : {}),
      ...(o.restartPolicy ? { restartPolicy: o.restartPolicy } : {}),
      ...healthcheckOf(o.healthcheck, cfg.config?.Healthcheck),
      mounts: shown,
      config: {
        user: o.user ?? cfg.config?.User ?? '',
        entrypoint: entrypoint.length ? entrypoint : null,
        cmd: args.slice(entrypoint.length),
        binds: o.volumes,
        tmpfs: Object.fromEntries(o.tmpfs.map((t) => [t.split(':')[0]!, t.split(':').slice(1).join(':')])),
        readOnly: o.readOnly,
        privileged: o.privileged,
        capAdd: o.capAdd,
        capDrop: o.capDrop,
        securityOpt: o.securityOpt,
        workdir: proc.cwd,
        ...(o.expose?.length ? { exposedPorts: o.expose } : {}),
      },
    };
    // Last, once everything else is known to be valid: the copy driver's copy may take a while.
    await buildRootfs(settings, rootfs, path.join(dir, 'bundle'));
    const saved = withRootfs(rec, rootfs.record);
    containers.save(saved);
    return saved;
  } catch (err) {
    containers.releaseName(name, id);
    if (allocated) {
      const { release } = await import('../network/ipam');
      for (const n of allocated) release(store, n.network.Id, id);
    }
    if (rootfs) await removeRootfs(settings, rootfs.record, dir).catch(() => undefined);
    containers.removeDir(id);
    throw err;
  }
}
