/**
 * Creating a container, for every front end: a typed request (as podman's specgen: booleans,
 * numbers, arrays and records rather than CLI strings) is checked, its defaults filled in from
 * BURROW_* variables and the config file (a request's own value wins), its image found (or
 * pulled, through the front end's `pull` hook), its limits checked against what this host can
 * enforce, and only then is anything written (ts/container/create.ts). The CLI builds the
 * request from flags (ts/cli/commands/run-flags.ts), the API from Docker's JSON
 * (ts/api/convert/create.ts).
 */
import { BurrowError } from '../errors';
import type { LimitFlags } from '../container/limits';
import type { ContainerRecord, Healthcheck, RestartPolicy } from '../container/records';
import type { ImageRecord } from '../storage/store';
import type { EngineContext, Hooks } from './context';
import { emitEvent } from './events';
import { checkHealthcheck } from '../container/health';
import type { UserNetworkRequest } from '../container/create';
import type { Identity } from '../container/userns';

export type { Healthcheck, RestartPolicy } from '../container/records';

export const RESTART_POLICIES: readonly RestartPolicy['name'][] = ['no', 'on-failure', 'always', 'unless-stopped'];

/** Docker's `--restart no|on-failure[:N]|always|unless-stopped`. */
export function parseRestartPolicy(s: string): RestartPolicy {
  const m = /^(no|on-failure|always|unless-stopped)(?::(\d+))?$/.exec(s.trim());
  if (!m) throw new BurrowError('EUSAGE', `invalid restart policy ${s}: want no, on-failure[:MAX_RETRIES], always or unless-stopped`);
  if (m[2] !== undefined && m[1] !== 'on-failure') throw new BurrowError('EUSAGE', `invalid restart policy ${s}: only on-failure takes a maximum retry count`);
  return { name: m[1] as RestartPolicy['name'], maximumRetryCount: m[2] !== undefined ? Number(m[2]) : 0 };
}

/** A mount as Docker's `--mount` and the API's HostConfig.Mounts give it. */
export interface MountRequest {
  type: 'bind' | 'volume' | 'tmpfs';
  /** A host path (bind) or a volume name (volume; absent: an anonymous volume). */
  source?: string;
  target: string;
  readOnly?: boolean;
  /** tmpfs size in bytes, or with a unit (`64m`). */
  tmpfsSize?: number | string;
  /** tmpfs mode, e.g. 0o1777 or '1777'. */
  tmpfsMode?: number | string;
}

export type PullPolicy = 'always' | 'missing' | 'never';

/** A container's endpoint on a user-defined network, as asked (`--network-alias`, `--ip`, `--mac-address`). */
export interface EndpointRequest {
  /** The network's name or id. */
  network: string;
  aliases?: string[];
  ip?: string;
  mac?: string;
}

export interface CreateRequest {
  /** The image reference as given (`busybox`, `registry:5000/app:1`, an id). */
  image: string;
  /**
   * The store's unpacked layers even where the store keeps a squashfs per image
   * (ts/storage/image-format.ts): set by the conversion that makes that squashfs, which reads them.
   */
  fromLayers?: boolean;
  name?: string;
  /** The command after the image (replaces the image's Cmd when not empty). */
  command: string[];
  /** Replaces the image's Entrypoint; [] resets it. */
  entrypoint?: string[];
  /** KEY=VALUE; a bare KEY takes the caller's value. */
  env: string[];
  envFiles?: string[];
  workdir?: string;
  user?: string;
  hostname?: string;
  tty?: boolean;
  /** Keep stdin open (Docker's OpenStdin). */
  interactive?: boolean;
  /** Close stdin when the first attached client's input ends (Docker's StdinOnce: `docker run -i`). */
  stdinOnce?: boolean;
  /** Docker's Config.AttachStdin/AttachStdout/AttachStderr (kept for inspect). */
  attachStreams?: { stdin: boolean; stdout: boolean; stderr: boolean };
  /** Remove the container when it exits (Docker's AutoRemove, `--rm`). */
  autoRemove?: boolean;
  readOnly?: boolean;
  privileged?: boolean;
  /** An init as pid 1; `initPath` names its binary. */
  init?: boolean;
  initPath?: string;
  capAdd?: string[];
  capDrop?: string[];
  securityOpt?: string[];
  /** NAME=SOFT[:HARD], Docker's spelling. */
  ulimits?: string[];
  labels?: Record<string, string>;
  /** Binds and volumes as `SRC:DST[:OPTIONS]` (Docker's HostConfig.Binds). */
  volumes?: string[];
  mounts?: MountRequest[];
  /** Target → options, as Docker's HostConfig.Tmpfs. */
  tmpfs?: Record<string, string>;
  /**
   * slirp4netns[:OPTS], pasta[:OPTS], none, host, container:NAME, or a user-defined network's
   * name or id (its first, eth0); absent: the default.
   */
  network?: string;
  /**
   * The container's user-defined networks in order (eth0 first; `network`, when it names one, is
   * added in front if missing), each with its endpoint's settings (Docker's EndpointsConfig).
   */
  endpoints?: EndpointRequest[];
  /** `-p` specs: [IP:][HOST_PORT:]CONTAINER_PORT[/proto]. */
  publish?: string[];
  publishAll?: boolean;
  /** ExposedPorts keys or `--expose` values: 80, 80/tcp, 8000-8010/udp. */
  expose?: string[];
  dns?: string[];
  dnsSearch?: string[];
  dnsOptions?: string[];
  /** HOST:IP. */
  addHosts?: string[];
  logDriver?: string;
  /**
   * The front end's own default log driver, used when neither the request, BURROW_LOG_DRIVER nor
   * the config file names one: the API's is Docker's json-file (docker-py reads a container's
   * output back only from json-file or journald containers), the CLI's podman's k8s-file.
   */
  defaultLogDriver?: string;
  userns?: string;
  userFallback?: string;
  groupAdd?: string[];
  /** HOST[:CONTAINER][:PERMISSIONS], or a CDI device VENDOR/CLASS=NAME (ts/cdi). */
  devices?: string[];
  stopSignal?: string;
  stopTimeout?: number;
  restartPolicy?: RestartPolicy;
  resources?: Omit<LimitFlags, 'cgroups'>;
  /** enabled (default), no-conmon, or disabled: run without the limits after a warning. */
  cgroups?: string;
  pull?: PullPolicy;
  platform?: string;
  healthcheck?: Healthcheck;
  // CDI and --hpc (docs/cdi.md, docs/hpc.md)
  /** Docker's `--gpus`: all, a count, or device=NAME,…: CDI devices of kind nvidia.com/gpu. */
  gpus?: string;
  /** Apptainer's defaults (ts/container/hpc.ts) where the request gives none. */
  hpc?: boolean;
  /** host or private (the default; `--hpc`'s is host). */
  pid?: string;
  ipc?: string;
}

export interface CreateHooks extends Hooks {
  /**
   * Pulls an image that is not in the store (the CLI shows progress; the API never pulls in
   * create: a missing image is its 404). Absent: a missing image is an error.
   */
  pull?(image: string, platform: string | undefined): Promise<ImageRecord>;
}

/** `--expose 80 --expose 8000-8001/udp` as Docker's ExposedPorts keys (`80/tcp`, `8000/udp`, `8001/udp`). */
export function exposedPorts(flags: string[]): string[] {
  const out: string[] = [];
  for (const f of flags) {
    const m = /^(\d+)(?:-(\d+))?(?:\/(tcp|udp|sctp))?$/.exec(f.trim());
    const bad = !m || Number(m[1]) < 1 || Number(m[1]) > 65535 || (m[2] !== undefined && (Number(m[2]) < Number(m[1]) || Number(m[2]) > 65535));
    if (bad) throw new BurrowError('EUSAGE', `invalid --expose ${f}: want PORT, PORT-PORT, optionally /tcp or /udp`);
    // A range is one key per port, as Docker records it.
    for (let p = Number(m[1]); p <= Number(m[2] ?? m[1]); p++) {
      const key = `${p}/${m[3] ?? 'tcp'}`;
      if (!out.includes(key)) out.push(key);
    }
  }
  return out;
}

/** Checks that need no store: done before the image is looked up or pulled. */
export function checkRequest(req: CreateRequest): void {
  if (req.autoRemove && req.restartPolicy && req.restartPolicy.name !== 'no') {
    throw new BurrowError('EUSAGE', 'conflicting options: cannot specify both --restart and --rm', 'a container that restarts is never removed on exit: drop one of them');
  }
  if (req.restartPolicy && (!Number.isInteger(req.restartPolicy.maximumRetryCount) || req.restartPolicy.maximumRetryCount < 0)) {
    throw new BurrowError('EUSAGE', `invalid restart policy: the maximum retry count must be a non-negative integer`);
  }
  if (req.stopTimeout !== undefined && !Number.isInteger(req.stopTimeout)) throw new BurrowError('EUSAGE', `invalid stop timeout ${req.stopTimeout}: want whole seconds`);
  if (!req.init && req.initPath) throw new BurrowError('EUSAGE', '--init-path is only used with --init');
  if (req.healthcheck) checkHealthcheck(req.healthcheck);
  if (req.cgroups !== undefined && !['enabled', 'no-conmon', 'disabled'].includes(req.cgroups)) throw new BurrowError('EUSAGE', `invalid --cgroups ${req.cgroups}: want enabled, no-conmon or disabled`);
  for (const [flag, v] of [['--pid', req.pid], ['--ipc', req.ipc]] as const) {
    if (v !== undefined && v !== 'host' && v !== 'private') throw new BurrowError('EUSAGE', `invalid ${flag} ${v}: want host or private`);
  }
}

/** The store's squashfs of `img` as a one-file image, when the store keeps one here (ts/engine/squash.ts). */
async function storedSquash(ctx: EngineContext, img: ImageRecord, hooks: CreateHooks): Promise<import('../storage/squash').FileImage | undefined> {
  const { imageFormat } = await import('../storage/image-format');
  const format = imageFormat(ctx.store);
  if (format.format !== 'squashfs') return undefined;
  return (await import('./squash')).squashOfImage(ctx, img, format, hooks);
}

/** Finds the request's image in the store, or pulls it as the pull policy and the hooks allow. */
export async function resolveImage(ctx: EngineContext, req: Pick<CreateRequest, 'image' | 'pull' | 'platform'>, hooks: CreateHooks): Promise<ImageRecord> {
  const { findImage } = await import('../image/resolve');
  const policy = req.pull ?? 'missing';
  if (!['always', 'missing', 'never'].includes(policy)) throw new BurrowError('EUSAGE', `invalid --pull ${policy}: want always, missing or never`);
  const img = policy === 'always' ? undefined : findImage(ctx.store, req.image);
  if (img) return img;
  if (policy === 'never' || !hooks.pull) throw new BurrowError('EIMAGE_NOT_FOUND', `no such image: ${req.image}`, `pull it first: burrow pull ${req.image}`);
  return hooks.pull(req.image, req.platform);
}

/**
 * Creates a container from a request: nothing is written until every check passed, and nothing
 * is left behind when a later step fails (ts/container/create.ts undoes its own work).
 */
export async function createContainer(ctx: EngineContext, asked: CreateRequest, hooks: CreateHooks = {}): Promise<ContainerRecord> {
  checkRequest(asked);
  const warn = (m: string): void => hooks.warn?.(m);
  const settings = await ctx.settings();
  const req = asked.hpc ? (await import('../container/hpc')).hpcRequest(asked, settings.idMode, warn) : asked;
  // Defaults from BURROW_* variables and the config file, read only here (the request wins).
  const { setting, LOG_DRIVERS, USERNS_MODES, loadConfig } = await import('../config/config');
  // Checked with its options by ts/network (slirp4netns:mtu=…, container:NAME); '' is the default.
  const network = setting(req.network, 'BURROW_NETWORK', (c) => c.containers.network, '');
  const logDriver = setting(req.logDriver, 'BURROW_LOG_DRIVER', (c) => c.containers.logDriver, req.defaultLogDriver ?? 'k8s-file', LOG_DRIVERS);
  if (!LOG_DRIVERS.includes(logDriver)) throw new BurrowError('EUSAGE', `invalid --log-driver ${logDriver}: want ${LOG_DRIVERS.join(', ')}`);
  // '' is the store's own mapping: a single-id store has no subuid mapping to default to.
  const userns = setting(req.userns, 'BURROW_USERNS', (c) => c.containers.userns, '', USERNS_MODES);
  if (userns && !USERNS_MODES.includes(userns)) throw new BurrowError('EUSAGE', `invalid --userns ${userns}: want ${USERNS_MODES.join(', ')}`);
  const { identityFor } = await import('../container/userns');
  const identity = userns ? identityFor(userns as 'subuid', settings) : undefined;
  let init: { hostPath: string; containerPath: string } | undefined;
  if (req.init) {
    const { findInit, INIT_PATH } = await import('../container/init');
    init = { hostPath: findInit(req.initPath ?? (process.env.BURROW_INIT_PATH || loadConfig().containers.initPath)), containerPath: INIT_PATH };
  }
  const { parseDevice } = await import('../container/spec');
  // CDI's modules only when a CDI device (never a path: those start with /) or --gpus is asked for.
  const cdi = req.gpus !== undefined || (req.devices ?? []).some((d) => !d.startsWith('/')) ? (await import('../cdi/request')).cdiRequest(req.devices ?? [], req.gpus, warn) : { host: req.devices ?? [] };
  const devices = [...cdi.host.map(parseDevice), ...(cdi.plan?.nodes ?? [])];
  const expose = exposedPorts(req.expose ?? []);
  // One-file images (squashfs, SIF): a path, run from the file without unpacking (docs/hpc-images.md).
  const { openFileImageArg, openFileImage } = await import('../storage/squash');
  const opened = openFileImageArg(req.image);
  const asFile = opened ? await openFileImage(opened, { keepIn: ctx.store.p('file-images') }) : undefined;
  const img = asFile ? asFile.record : await resolveImage(ctx, req, hooks);
  // A store image the store keeps as a squashfs runs from it, as FILE.sqfs does (image-format.ts).
  const fileImage = asFile ?? (req.fromLayers ? undefined : await storedSquash(ctx, img, hooks));
  // --hpc: the host's environment under the request's own -e, never over the image's variables
  // (a one-file image's come from the file: it has no config blob in the store).
  const env = req.hpc ? await hpcEnvOf(fileImage ? (fileImage.config.config?.Env ?? []) : ((await import('../container/create')).imageConfig(ctx.store, img).config?.Env ?? []), req.env) : req.env;
  // Limits are accepted only where this host lets this user enforce them (ts/container/limits.ts).
  const { toResources, checkEnforceable } = await import('../container/limits');
  const { resources, needs } = toResources(req.resources ?? {});
  let limits: Record<string, unknown> | undefined;
  const optOut = req.cgroups === 'disabled' || process.env.BURROW_CGROUPS === 'disabled';
  if (needs.length) {
    const { native } = await import('../native');
    const info = JSON.parse(native().cgroupInfo()) as { mode: string; enforceable: string[]; delegationRoot: string | null; manager: string };
    if (checkEnforceable(needs, info, optOut, warn)) limits = resources;
  }
  const { prepareContainer, imageConfig } = await import('../container/create');
  const { networkRecord } = await import('../network/options');
  const netFlags = {
    ...(network ? { network } : {}),
    publish: req.publish ?? [],
    publishAll: !!req.publishAll,
    dns: req.dns ?? [],
    dnsSearch: req.dnsSearch ?? [],
    dnsOption: req.dnsOptions ?? [],
    addHost: req.addHosts ?? [],
  };
  const exposed = req.publishAll ? { ...((fileImage ? fileImage.config : imageConfig(ctx.store, img)).config?.ExposedPorts ?? {}), ...Object.fromEntries(expose.map((p) => [p, {}])) } : undefined;
  const net = networkRecord(netFlags, exposed, warn);
  if (net.mode === 'container') net.container = new (await import('../container/records')).Containers(ctx.store).find(net.container!).id;
  const userNetworks = await userEndpoints(ctx, network, req.endpoints ?? [], net.mode, identity, warn);
  const rec = await prepareContainer(
    ctx.store,
    settings,
    img,
    req.image,
    {
      ...(req.name !== undefined ? { name: req.name.replace(/^\//, '') } : {}),
      args: req.command,
      ...(req.entrypoint !== undefined ? { entrypoint: req.entrypoint } : {}),
      env,
      envFiles: req.envFiles ?? [],
      ...(req.workdir ? { workdir: req.workdir } : {}),
      ...(req.user ? { user: req.user } : {}),
      ...(userns ? { userns } : {}),
      ...(req.userFallback ? { userFallback: req.userFallback } : {}),
      ...(req.hostname ? { hostname: req.hostname } : {}),
      tty: !!req.tty,
      interactive: !!req.interactive,
      ...(req.stdinOnce !== undefined ? { stdinOnce: req.stdinOnce } : {}),
      ...(req.attachStreams ? { attachStreams: req.attachStreams } : {}),
      rm: !!req.autoRemove,
      detach: true,
      readOnly: !!req.readOnly,
      capAdd: req.capAdd ?? [],
      capDrop: req.capDrop ?? [],
      privileged: !!req.privileged,
      securityOpt: req.securityOpt ?? [],
      ulimits: req.ulimits ?? [],
      labels: Object.entries(req.labels ?? {}).map(([k, v]) => `${k}=${v}`),
      volumes: req.volumes ?? [],
      mounts: req.mounts ?? [],
      tmpfs: Object.entries(req.tmpfs ?? {}).map(([k, v]) => (v ? `${k}:${v}` : k)),
      // Docker's HostConfig.NetworkMode: on user-defined networks, the first one's name.
      network: net.mode === 'container' ? `container:${net.container}` : net.mode === 'user' && userNetworks[0] ? userNetworks[0].network.Name : net.mode,
      net,
      ...(userNetworks.length ? { userNetworks } : {}),
      logDriver,
      warn,
      ...(identity ? { identity } : {}),
      groupAdd: req.groupAdd ?? [],
      devices,
      ...(init ? { init } : {}),
      ...(req.stopSignal ? { stopSignal: req.stopSignal } : {}),
      ...(req.stopTimeout !== undefined ? { stopTimeout: req.stopTimeout } : {}),
      ...(limits ? { resources: limits } : {}),
      ...(optOut ? { noCgroup: true } : {}),
      ...(expose.length ? { expose } : {}),
      ...(req.restartPolicy ? { restartPolicy: req.restartPolicy } : {}),
      ...(req.healthcheck ? { healthcheck: req.healthcheck } : {}),
      ...('plan' in cdi && cdi.plan ? { cdi: cdi.plan } : {}),
      ...(req.pid ? { pid: req.pid as 'host' | 'private' } : {}),
      ...(req.ipc ? { ipc: req.ipc as 'host' | 'private' } : {}),
      ...(fileImage ? { fileImage } : {}),
    },
    ctx.runRoot,
  );
  emitEvent(ctx, { Type: 'container', Action: 'create', Actor: { ID: rec.id, Attributes: containerAttributes(rec) } });
  return rec;
}

/**
 * The user-defined networks a request joins, found in the store (ENETWORK_NOT_FOUND, Docker's
 * `network NAME not found`), with what cannot work refused before anything is made.
 */
async function userEndpoints(ctx: EngineContext, first: string, asked: EndpointRequest[], mode: string, identity: Identity | undefined, warn: (m: string) => void): Promise<UserNetworkRequest[]> {
  const { isNetworkMode } = await import('../network/options');
  if (mode !== 'user') {
    // A mode with settings only user-defined networks have, or with other networks.
    const others = asked.filter((e) => e.network !== first && !(isNetworkMode(e.network) && isNetworkMode(first)));
    if (others.length) throw new BurrowError('EUSAGE', `--network ${first || 'default'} cannot be combined with other networks (${others.map((e) => e.network).join(', ')}): a container on a mode of its own (slirp4netns, pasta, host, none, container:NAME) is on no user-defined network`, 'give only user-defined networks, or only the mode');
    const extra = asked.find((e) => e.aliases?.length || e.ip || e.mac);
    if (extra) throw new BurrowError('EUSAGE', `${extra.ip ? '--ip' : extra.mac ? '--mac-address' : '--network-alias'} applies to user-defined networks only, not to --network ${first || 'default'}`, 'create one with `burrow network create NAME` and run with --network NAME');
    return [];
  }
  const { findNetwork, BUILTIN } = await import('./networks');
  const order: EndpointRequest[] = [];
  for (const e of [{ network: first }, ...asked]) {
    const had = order.find((o) => o.network === e.network);
    if (had) Object.assign(had, e);
    else order.push({ ...e });
  }
  const out: UserNetworkRequest[] = [];
  for (const e of order) {
    if (isNetworkMode(e.network) || (BUILTIN as readonly string[]).includes(e.network)) {
      throw new BurrowError('EUSAGE', `container cannot be connected to network ${e.network} and to user-defined networks: ${e.network} is a mode of its own`, 'give only user-defined networks, or only the mode');
    }
    const n = findNetwork(ctx, e.network);
    if (out.some((o) => o.network.Id === n.Id)) continue;
    out.push({ network: n, aliases: e.aliases ?? [], ...(e.ip ? { ip: e.ip } : {}), ...(e.mac ? { mac: e.mac } : {}) });
  }
  const rootless = process.getuid?.() !== 0;
  // Rootless, a container on these networks joins the network owner's user namespace, which has
  // the store's mapping (crates/burrow-core/src/net/bridge/mod.rs): it cannot have another one.
  if (rootless && identity && identity.userNamespace) {
    const settings = await ctx.settings();
    const same = JSON.stringify(identity.uidMap) === JSON.stringify(settings.uidMap) && JSON.stringify(identity.gidMap) === JSON.stringify(settings.gidMap) && !identity.user;
    if (!same) {
      throw new BurrowError(
        'EUSAGE',
        `--userns with user-defined networks: a container on a user-defined network joins the user namespace of your network owner, which maps ids as your store does (as every container without --userns); --userns ${identity.user ? 'keep-id' : 'with another mapping'} would need a user namespace of its own, which no bridge can reach without root`,
        'leave out --userns, or use the default network (slirp4netns or pasta) and publish ports with -p',
      );
    }
  }
  const { lostContainers } = await import('../network/runtime');
  const lost = lostContainers(ctx.store);
  if (lost.length) {
    warn(`the network owner went away under ${lost.map((l) => `${l.name} (${l.networks.join(', ')})`).join(', ')}: ${lost.length === 1 ? 'that container is' : 'those containers are'} cut off from ${lost.length === 1 ? 'its' : 'their'} networks; restart ${lost.length === 1 ? 'it' : 'them'} to reattach: burrow restart ${lost.map((l) => l.name).join(' ')}`);
  }
  return out;
}

/** Docker's attributes of a container event: its name, its image and its labels. */
export function containerAttributes(rec: ContainerRecord, extra: Record<string, string> = {}): Record<string, string> {
  return { ...rec.labels, image: rec.imageName, name: rec.name, ...extra };
}

/** --hpc's environment: its own defaults, then the host's (never over the image's variables), then the request's -e. */
async function hpcEnvOf(imageEnv: string[], own: string[]): Promise<string[]> {
  const { hpcEnv, hpcEnvDefaults } = await import('../container/hpc');
  return [...hpcEnvDefaults(process.env, imageEnv), ...hpcEnv(process.env, imageEnv), ...own];
}
