/**
 * `run` and `create`: their flags, and those flags as the engine's typed CreateRequest
 * (ts/engine/create.ts). Only syntax is handled here; every check of meaning is the engine's,
 * shared with the API.
 */
import type { Command } from 'commander';
import { BurrowError } from '../../errors';
import type { LimitFlags } from '../../container/limits';
import type { CreateRequest, EndpointRequest, MountRequest, PullPolicy } from '../../engine/create';
import { parseRestartPolicy } from '../../engine/create';
import { healthcheckFromFlags, type HealthFlags } from '../../container/health';
import { collect } from '../context';

export interface RunFlags extends LimitFlags, HealthFlags {
  name?: string;
  rm?: boolean;
  detach?: boolean;
  interactive?: boolean;
  tty?: boolean;
  env: string[];
  envFile: string[];
  volume: string[];
  mount: string[];
  tmpfs: string[];
  workdir?: string;
  user?: string;
  entrypoint?: string;
  hostname?: string;
  readOnly?: boolean;
  init?: boolean;
  capAdd: string[];
  capDrop: string[];
  securityOpt: string[];
  privileged?: boolean;
  ulimit: string[];
  label: string[];
  pull: string;
  platform?: string;
  stopSignal?: string;
  stopTimeout?: string;
  logDriver?: string;
  network: string[];
  networkAlias: string[];
  ip?: string;
  macAddress?: string;
  userns?: string;
  userFallback?: string;
  initPath?: string;
  groupAdd: string[];
  device: string[];
  publish: string[];
  publishAll?: boolean;
  expose: string[];
  dns: string[];
  dnsSearch: string[];
  dnsOption: string[];
  addHost: string[];
  detachKeys?: string;
  restart?: string;
  // CDI and --hpc (docs/cdi.md, docs/hpc.md)
  gpus?: string;
  hpc?: boolean;
  pid?: string;
  ipc?: string;
  [k: string]: unknown;
}

export function addRunFlags(c: Command): Command {
  return c
    .option('--name <name>', 'container name')
    .option('--rm', 'remove the container when it exits')
    .option('-d, --detach', 'run in the background and print the id')
    .option('-i, --interactive', 'keep stdin open')
    .option('-t, --tty', 'allocate a terminal')
    .option('--detach-keys <keys>', 'keys that detach from a container with a terminal (default ctrl-p,ctrl-q)')
    .option('-e, --env <KEY=VALUE>', 'set an environment variable', collect, [])
    .option('--env-file <file>', 'read environment variables from a file', collect, [])
    .option('-v, --volume <src:dst[:opts]>', 'bind mount a host path or a named volume', collect, [])
    .option('--mount <spec>', 'type=bind|volume|tmpfs,source=…,target=…[,readonly]', collect, [])
    .option('--tmpfs <dst[:opts]>', 'mount a tmpfs', collect, [])
    .option('-w, --workdir <dir>', 'working directory inside the container')
    .option('-u, --user <user[:group]>', 'user to run as')
    .option('--entrypoint <cmd>', 'override the image entrypoint')
    .option('-h, --hostname <name>', 'container host name')
    .option('--read-only', 'mount the root filesystem read-only')
    .option('--init', 'run an init as pid 1 that reaps zombies, forwards signals and exits with the command (tini-static or catatonit)')
    .option('--init-path <path>', 'the static init binary to use; env BURROW_INIT_PATH, config init_path')
    .option('--cap-add <cap>', 'add a capability', collect, [])
    .option('--cap-drop <cap>', 'drop a capability', collect, [])
    .option('--security-opt <opt>', 'no-new-privileges, seccomp=FILE|unconfined', collect, [])
    .option('--privileged', 'all capabilities of the user namespace, no seccomp')
    .option('--ulimit <name=soft[:hard]>', 'resource limit', collect, [])
    .option('-l, --label <key=value>', 'set a label', collect, [])
    .option('--pull <policy>', 'always, missing or never', 'missing')
    .option('--platform <os/arch[/variant]>', 'platform of the image to pull')
    .option('--stop-signal <signal>', 'signal to stop the container')
    .option('--stop-timeout <seconds>', 'seconds before SIGKILL on stop')
    .option('--restart <policy>', 'restart policy when the container exits: no, on-failure[:MAX_RETRIES], always, unless-stopped (kept by its monitor)')
    .option('--health-cmd <command>', 'command to run to check health (run by the container\'s monitor; CMD-SHELL)')
    .option('--health-interval <duration>', 'time between running the check (ms|s|m|h) (default 30s)')
    .option('--health-timeout <duration>', 'maximum time to allow one check to run (ms|s|m|h) (default 30s)')
    .option('--health-retries <n>', 'consecutive failures needed to report unhealthy (default 3)')
    .option('--health-start-period <duration>', 'start period for the container to initialize before failures count toward retries (ms|s|m|h) (default 0s)')
    .option('--health-start-interval <duration>', 'time between running the check during the start period (ms|s|m|h)')
    .option('--no-healthcheck', 'disable any container-specified HEALTHCHECK')
    .option('--log-driver <driver>', 'k8s-file (default), json-file or none; env BURROW_LOG_DRIVER, config log_driver')
    .option('--network <mode>', 'a user-defined network\'s name (repeatable: the first is eth0), or slirp4netns[:OPTS] (default where installed; OPTS: allow_host_loopback, mtu, cidr, enable_ipv6, port_handler=burrow|bypass|slirp4netns), pasta[:OPTS], none, host, container:NAME; env BURROW_NETWORK, config network', collect, [])
    .option('--net <mode>', 'alias of --network', collect, [])
    .option('--network-alias <alias>', 'another name of the container on its (first) user-defined network', collect, [])
    .option('--ip <address>', 'the IPv4 address on the (first) user-defined network')
    .option('--mac-address <mac>', 'the MAC address on the (first) user-defined network')
    .option('--userns <mode>', "subuid (the store's), keep-id (your uid inside), single, host (root only); env BURROW_USERNS, config userns")
    .option('--user-fallback <mode>', 'a user the id map lacks (single-id mode): root (run as container root, with a warning) or error; env BURROW_USER_FALLBACK, config user_fallback')
    .option('--group-add <group>', "an additional group (image group name or gid), or keep-groups: keep your own supplementary groups", collect, [])
    .option('--device <host[:container][:rwm]>', 'add a host device (rootless: one you may open), or a CDI device VENDOR/CLASS=NAME|all (docs/cdi.md)', collect, [])
    .option('-p, --publish <spec>', 'publish a port: [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|/udp], ranges as 8000-8010:80-90', collect, [])
    .option('--expose <port>', 'expose a port or a range (PORT[-PORT][/tcp|/udp]) without publishing it; -P publishes it', collect, [])
    .option('-P, --publish-all', "publish every port the image or --expose exposes on a free host port")
    .option('--dns <ip>', 'a DNS server for /etc/resolv.conf', collect, [])
    .option('--dns-search <domain>', 'a DNS search domain', collect, [])
    .option('--dns-option <option>', 'a resolv.conf option', collect, [])
    .option('--add-host <host:ip>', 'an /etc/hosts entry (ip host-gateway: the host)', collect, [])
    .option('-m, --memory <bytes>', 'memory limit (e.g. 32m, 1g)')
    .option('--memory-swap <bytes>', 'memory plus swap limit (-1: unlimited swap)')
    .option('--memory-reservation <bytes>', 'memory soft limit')
    .option('--oom-kill-disable', 'disable the OOM killer')
    .option('--cpus <n>', 'CPU limit (e.g. 0.5)')
    .option('-c, --cpu-shares <n>', 'CPU weight (mapped to cpu.weight)')
    .option('--cpu-quota <us>', 'CPU CFS quota')
    .option('--cpu-period <us>', 'CPU CFS period')
    .option('--cpuset-cpus <list>', 'CPUs allowed')
    .option('--cpuset-mems <list>', 'memory nodes allowed')
    .option('--pids-limit <n>', 'process limit')
    .option('--blkio-weight <n>', 'block I/O weight (10-1000)')
    .option('--device-read-bps <dev:rate>', 'read rate limit of a device, e.g. /dev/sda:1mb', collect, [])
    .option('--device-write-bps <dev:rate>', 'write rate limit of a device', collect, [])
    .option('--device-read-iops <dev:n>', 'read operations per second of a device', collect, [])
    .option('--device-write-iops <dev:n>', 'write operations per second of a device', collect, [])
    .option('--cgroup-conf <key=value>', 'a cgroup v2 file and the value to write into it, e.g. memory.high=67108864', collect, [])
    .option('--cgroups <mode>', 'enabled (default), no-conmon (the same: the monitor is never in the container\'s cgroup) or disabled: run without the requested limits after one warning', 'enabled')
    // CDI and --hpc (docs/cdi.md, docs/hpc.md)
    .option('--gpus <gpus>', 'GPUs through CDI: all, a count, or device=NAME[,NAME…] (nvidia.com/gpu devices; make the spec with nvidia-ctk cdi generate)')
    .option('--hpc', "Apptainer's defaults: --userns keep-id, host network, IPC and pid, the host's environment, $HOME, the working directory and $TMPDIR bound, the working directory kept (docs/hpc.md)")
    .option('--pid <mode>', 'pid namespace: private (default) or host (--hpc\'s default)')
    .option('--ipc <mode>', 'IPC namespace: private (default) or host, with the host\'s /dev/shm (--hpc\'s default)')
    .passThroughOptions();
}


/** `--mount type=bind|volume|tmpfs,source=…,target=…[,readonly][,tmpfs-size=…][,tmpfs-mode=…]`. */
export function parseMountFlag(m: string): MountRequest {
  const kv = Object.fromEntries(
    m.split(',').map((p) => {
      const i = p.indexOf('=');
      return i < 0 ? [p, 'true'] : [p.slice(0, i), p.slice(i + 1)];
    }),
  ) as Record<string, string | undefined>;
  const type = kv.type ?? 'volume';
  if (type !== 'bind' && type !== 'volume' && type !== 'tmpfs') throw new BurrowError('EUSAGE', `--mount type=${type} is not supported (bind, volume, tmpfs)`);
  const target = kv.destination ?? kv.target ?? kv.dst;
  if (!target) throw new BurrowError('EUSAGE', `--mount ${m}: a target is required`);
  const source = kv.source ?? kv.src;
  const ro = kv.readonly ?? kv.ro;
  return {
    type,
    target,
    ...(source !== undefined ? { source } : type === 'bind' ? { source: '' } : {}),
    ...(ro === 'true' || ro === '1' ? { readOnly: true } : {}),
    ...(kv['tmpfs-size'] ? { tmpfsSize: kv['tmpfs-size'] } : {}),
    ...(kv['tmpfs-mode'] ? { tmpfsMode: kv['tmpfs-mode'] } : {}),
  };
}

/** `--tmpfs DST[:OPTIONS]` as Docker's HostConfig.Tmpfs record. */
export function tmpfsFlags(flags: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const t of flags) {
    const i = t.indexOf(':');
    out[i < 0 ? t : t.slice(0, i)] = i < 0 ? '' : t.slice(i + 1);
  }
  return out;
}

/** `-l k=v`, `-l k` as a record. */
export function labelFlags(flags: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const l of flags) {
    const i = l.indexOf('=');
    out[i < 0 ? l : l.slice(0, i)] = i < 0 ? '' : l.slice(i + 1);
  }
  return out;
}

const LIMIT_KEYS = ['memory', 'memorySwap', 'memoryReservation', 'oomKillDisable', 'cpus', 'cpuShares', 'cpuQuota', 'cpuPeriod', 'cpusetCpus', 'cpusetMems', 'pidsLimit', 'blkioWeight', 'deviceReadBps', 'deviceWriteBps', 'deviceReadIops', 'deviceWriteIops', 'cgroupConf'] as const;

/** The flags of `run` / `create` as the engine's request. */
export function toCreateRequest(image: string, command: string[], f: RunFlags): CreateRequest {
  if (f.stopTimeout !== undefined && !/^-?\d+$/.test(f.stopTimeout)) throw new BurrowError('EUSAGE', `invalid --stop-timeout ${f.stopTimeout}: want whole seconds`);
  const resources: Omit<LimitFlags, 'cgroups'> = {};
  for (const k of LIMIT_KEYS) if (f[k] !== undefined) (resources as Record<string, unknown>)[k] = f[k];
  // --net and --network are one list, in the order given (the first is eth0).
  const networks = [...((f.net as string[] | undefined) ?? []), ...(f.network ?? [])];
  const network = networks[0];
  // The first network takes --network-alias, --ip and --mac-address, as Docker's CLI does;
  // with a mode (slirp4netns, host...) they are the engine's to refuse.
  const endpoints: EndpointRequest[] = networks.map((n, i) => ({
    network: n,
    ...(i === 0 && f.networkAlias?.length ? { aliases: f.networkAlias } : {}),
    ...(i === 0 && f.ip ? { ip: f.ip } : {}),
    ...(i === 0 && f.macAddress ? { mac: f.macAddress } : {}),
  }));
  if (!networks.length && (f.networkAlias?.length || f.ip || f.macAddress)) {
    throw new BurrowError('EUSAGE', `${f.ip ? '--ip' : f.macAddress ? '--mac-address' : '--network-alias'} applies to a user-defined network: give one with --network NAME`);
  }
  const healthcheck = healthcheckFromFlags(f);
  return {
    image,
    command,
    ...(f.name !== undefined ? { name: f.name } : {}),
    ...(f.entrypoint !== undefined ? { entrypoint: f.entrypoint === '' ? [] : [f.entrypoint] } : {}),
    env: f.env,
    envFiles: f.envFile,
    ...(f.workdir ? { workdir: f.workdir } : {}),
    ...(f.user ? { user: f.user } : {}),
    ...(f.hostname ? { hostname: f.hostname } : {}),
    tty: !!f.tty,
    interactive: !!f.interactive,
    // As the docker CLI sets it: `-i` without `-d` (so `create -i` then an attach that ends its
    // input ends the container's stdin).
    stdinOnce: !!f.interactive && !f.detach,
    autoRemove: !!f.rm,
    readOnly: !!f.readOnly,
    privileged: !!f.privileged,
    init: !!f.init,
    ...(f.initPath ? { initPath: f.initPath } : {}),
    capAdd: f.capAdd,
    capDrop: f.capDrop,
    securityOpt: f.securityOpt,
    ulimits: f.ulimit,
    labels: labelFlags(f.label),
    volumes: f.volume,
    mounts: f.mount.map(parseMountFlag),
    tmpfs: tmpfsFlags(f.tmpfs),
    ...(network !== undefined ? { network } : {}),
    ...(endpoints.length > 1 || endpoints.some((e) => e.aliases || e.ip || e.mac) ? { endpoints } : {}),
    publish: f.publish,
    publishAll: !!f.publishAll,
    expose: f.expose,
    dns: f.dns,
    dnsSearch: f.dnsSearch,
    dnsOptions: f.dnsOption,
    addHosts: f.addHost,
    ...(f.logDriver !== undefined ? { logDriver: f.logDriver } : {}),
    ...(f.userns !== undefined ? { userns: f.userns } : {}),
    ...(f.userFallback !== undefined ? { userFallback: f.userFallback } : {}),
    groupAdd: f.groupAdd,
    devices: f.device,
    ...(f.stopSignal ? { stopSignal: f.stopSignal } : {}),
    ...(f.stopTimeout !== undefined ? { stopTimeout: Number(f.stopTimeout) } : {}),
    ...(f.restart !== undefined ? { restartPolicy: parseRestartPolicy(f.restart) } : {}),
    resources,
    ...(f.cgroups !== undefined ? { cgroups: f.cgroups } : {}),
    pull: f.pull as PullPolicy,
    ...(f.platform ? { platform: f.platform } : {}),
    ...(healthcheck ? { healthcheck } : {}),
    // CDI and --hpc
    ...(f.gpus !== undefined ? { gpus: f.gpus } : {}),
    ...(f.hpc ? { hpc: true } : {}),
    ...(f.pid !== undefined ? { pid: f.pid } : {}),
    ...(f.ipc !== undefined ? { ipc: f.ipc } : {}),
  };
}
