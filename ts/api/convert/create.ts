/**
 * Docker's container create body (Config, with HostConfig and NetworkingConfig inside it) to
 * the engine's CreateRequest. Every field burrow reads is type-checked (a wrong type is a 400
 * naming the field); fields it does not know are ignored, as Docker ignores them. Docker's zero
 * values mean "unset" (its clients send `"Memory": 0`, `"PidsLimit": null`…). What burrow
 * cannot do as asked but can run anyway (a log driver it lacks) becomes a warning in the
 * response's `Warnings`.
 */
import type { CreateRequest, EndpointRequest, MountRequest } from '../../engine/create';
import type { Healthcheck, RestartPolicy } from '../../container/records';
import { ApiError } from '../http';
import { isIpv4 } from './networks';

type Obj = Record<string, unknown>;

const typeName = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);

function bad(field: string, want: string, v: unknown): ApiError {
  return new ApiError(400, `invalid type for ${field}: want ${want}, got ${typeName(v)}`);
}

/** Typed readers of one object; `absent` is undefined or null (Docker's clients send both). */
class Reader {
  constructor(
    private readonly o: Obj,
    private readonly prefix: string,
  ) {}

  private get(k: string): unknown {
    const v = this.o[k];
    return v === null ? undefined : v;
  }

  field(k: string): string {
    return this.prefix ? `${this.prefix}.${k}` : k;
  }

  str(k: string): string | undefined {
    const v = this.get(k);
    if (v === undefined) return undefined;
    if (typeof v !== 'string') throw bad(this.field(k), 'a string', v);
    return v;
  }

  bool(k: string): boolean | undefined {
    const v = this.get(k);
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean') throw bad(this.field(k), 'a boolean', v);
    return v;
  }

  int(k: string): number | undefined {
    const v = this.get(k);
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v)) throw bad(this.field(k), 'an integer', v);
    return v;
  }

  /** A list of lists of strings (DeviceRequests' Capabilities). */
  strLists(k: string): string[][] | undefined {
    const v = this.get(k);
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || v.some((l) => !Array.isArray(l) || (l as unknown[]).some((x) => typeof x !== 'string'))) throw bad(this.field(k), 'a list of lists of strings', v);
    return v as string[][];
  }

  strs(k: string): string[] | undefined {
    const v = this.get(k);
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw bad(this.field(k), 'an array of strings', v);
    return v as string[];
  }

  /** Docker's StrSlice: a string or an array of strings. */
  strSlice(k: string): string[] | undefined {
    const v = this.get(k);
    if (typeof v === 'string') return [v];
    return this.strs(k);
  }

  record(k: string): Record<string, string> | undefined {
    const v = this.get(k);
    if (v === undefined) return undefined;
    if (typeof v !== 'object' || Array.isArray(v) || Object.values(v as Obj).some((x) => typeof x !== 'string')) throw bad(this.field(k), 'an object of strings', v);
    return v as Record<string, string>;
  }

  obj(k: string): Reader | undefined {
    const v = this.get(k);
    if (v === undefined) return undefined;
    if (typeof v !== 'object' || Array.isArray(v)) throw bad(this.field(k), 'an object', v);
    return new Reader(v as Obj, this.field(k));
  }

  keys(k: string): string[] | undefined {
    return this.obj(k)?.ownKeys();
  }

  ownKeys(): string[] {
    return Object.keys(this.o);
  }

  objs(k: string): Reader[] | undefined {
    const v = this.get(k);
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'object' || x === null || Array.isArray(x))) throw bad(this.field(k), 'an array of objects', v);
    return (v as Obj[]).map((x, i) => new Reader(x, `${this.field(k)}[${i}]`));
  }
}

export interface Converted {
  request: CreateRequest;
  warnings: string[];
}

/** Docker's RestartPolicy object (also in `update`); an empty Name is "no". */
export function restartPolicyOf(r: Reader | undefined): RestartPolicy | undefined {
  if (!r) return undefined;
  const name = r.str('Name') ?? '';
  const max = r.int('MaximumRetryCount') ?? 0;
  if (name === '') return undefined;
  if (!['no', 'on-failure', 'always', 'unless-stopped'].includes(name)) throw new ApiError(400, `invalid restart policy '${name}'`);
  if (max < 0) throw new ApiError(400, 'invalid restart policy: the maximum retry count must not be negative');
  if (max > 0 && name !== 'on-failure') throw new ApiError(400, `invalid restart policy: maximum retry count can only be used with 'on-failure'`);
  return { name: name as RestartPolicy['name'], maximumRetryCount: max };
}

/** Docker's resource fields (HostConfig and the update body) as the engine's limit flags; 0 is unset. */
export function resourcesOf(h: Reader): NonNullable<CreateRequest['resources']> {
  const out: NonNullable<CreateRequest['resources']> = {};
  const pos = (k: string): number | undefined => {
    const v = h.int(k);
    return v !== undefined && v > 0 ? v : undefined;
  };
  const set = <K extends keyof typeof out>(k: K, v: (typeof out)[K] | undefined): void => {
    if (v !== undefined) out[k] = v;
  };
  set('memory', pos('Memory')?.toString());
  const swap = h.int('MemorySwap');
  set('memorySwap', swap === -1 ? '-1' : swap !== undefined && swap > 0 ? String(swap) : undefined);
  set('memoryReservation', pos('MemoryReservation')?.toString());
  if (h.bool('OomKillDisable')) out.oomKillDisable = true;
  const nano = pos('NanoCpus');
  set('cpus', nano !== undefined ? String(nano / 1e9) : undefined);
  set('cpuShares', pos('CpuShares')?.toString());
  set('cpuQuota', pos('CpuQuota')?.toString());
  set('cpuPeriod', pos('CpuPeriod')?.toString());
  const cpus = h.str('CpusetCpus');
  if (cpus) out.cpusetCpus = cpus;
  const mems = h.str('CpusetMems');
  if (mems) out.cpusetMems = mems;
  set('pidsLimit', pos('PidsLimit')?.toString());
  set('blkioWeight', pos('BlkioWeight')?.toString());
  const throttle = (k: string, rate: string): string[] | undefined => {
    const list = h.objs(k)?.map((d) => `${d.str('Path') ?? ''}:${d.int(rate) ?? 0}`);
    return list?.length ? list : undefined;
  };
  set('deviceReadBps', throttle('BlkioDeviceReadBps', 'Rate'));
  set('deviceWriteBps', throttle('BlkioDeviceWriteBps', 'Rate'));
  set('deviceReadIops', throttle('BlkioDeviceReadIOps', 'Rate'));
  set('deviceWriteIops', throttle('BlkioDeviceWriteIOps', 'Rate'));
  return out;
}

function healthcheckOf(r: Reader | undefined): Healthcheck | undefined {
  if (!r) return undefined;
  const test = r.strs('Test') ?? [];
  const hc: Healthcheck = { Test: test };
  for (const k of ['Interval', 'Timeout', 'StartPeriod', 'StartInterval', 'Retries'] as const) {
    const v = r.int(k);
    if (v !== undefined) {
      if (v < 0) throw new ApiError(400, `${r.field(k)} must not be negative`);
      hc[k] = v;
    }
  }
  return hc;
}

function mountOf(m: Reader): MountRequest {
  const type = m.str('Type') ?? '';
  if (type !== 'bind' && type !== 'volume' && type !== 'tmpfs') throw new ApiError(400, `invalid mount config: mount type "${type}" is not supported (bind, volume, tmpfs)`);
  const target = m.str('Target') ?? '';
  if (!target) throw new ApiError(400, `invalid mount config for type "${type}": field Target must not be empty`);
  const source = m.str('Source');
  if (type === 'bind' && !source) throw new ApiError(400, 'invalid mount config for type "bind": field Source must not be empty');
  const tmpfs = m.obj('TmpfsOptions');
  const size = tmpfs?.int('SizeBytes');
  const mode = tmpfs?.int('Mode');
  return {
    type,
    target,
    ...(source ? { source } : {}),
    ...(m.bool('ReadOnly') ? { readOnly: true } : {}),
    ...(size ? { tmpfsSize: size } : {}),
    ...(mode ? { tmpfsMode: mode } : {}),
  };
}

/** `HostIp:HostPort:80/tcp` from a PortBindings entry; IPv6 host addresses bracketed. */
function publishSpec(key: string, b: Reader): string {
  const ip = b.str('HostIp') ?? '';
  const port = b.str('HostPort') ?? '';
  const host = ip ? `${ip.includes(':') ? `[${ip}]` : ip}:${port}:` : port ? `${port}:` : '';
  return `${host}${key}`;
}

const BUILTIN_MODE = (m: string): boolean => m === 'host' || m === 'none' || m.startsWith('container:') || /^(slirp4netns|pasta)(:|$)/.test(m);

/** An EndpointsConfig entry: its aliases, IPAMConfig.IPv4Address and MacAddress. */
function endpointOf(network: string, e: Reader | undefined): EndpointRequest {
  const out: EndpointRequest = { network, aliases: [...new Set(e?.strs('Aliases') ?? [])].filter(Boolean) };
  const ip = e?.obj('IPAMConfig')?.str('IPv4Address');
  if (ip) {
    if (!isIpv4(ip)) throw new ApiError(400, `invalid IPv4 address: ${ip}`);
    out.ip = ip;
  }
  if (e?.obj('IPAMConfig')?.str('IPv6Address')) throw new ApiError(400, `${e.field('IPAMConfig')}.IPv6Address: a fixed IPv6 address is not supported`);
  const mac = e?.str('MacAddress');
  if (mac) {
    if (!/^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/.test(mac)) throw new ApiError(400, `invalid MAC address: ${mac}`);
    out.mac = mac.toLowerCase();
  }
  return out;
}

/**
 * HostConfig.NetworkMode and NetworkingConfig.EndpointsConfig to burrow's network: Docker's
 * default and bridge are burrow's default; host, none, container:ID and burrow's own modes as they
 * are; any other name is a user-defined network, the container's first (eth0), with the
 * aliases, address and MAC its EndpointsConfig entry asks. Further EndpointsConfig entries are
 * more user-defined networks (API 1.44 takes several at create; older clients connect the rest
 * before the start, which works as well). EndpointsConfig keys for the built-in networks add
 * nothing.
 */
function networksOf(mode: string | undefined, endpoints: Reader | undefined): { network?: string; networks: EndpointRequest[] } {
  const keys = (endpoints?.ownKeys() ?? []).filter((k) => !['bridge', 'default', 'host', 'none'].includes(k));
  const entry = (k: string): EndpointRequest => endpointOf(k, endpoints?.obj(k));
  if (mode && mode !== 'default' && mode !== 'bridge') {
    if (BUILTIN_MODE(mode)) return { network: mode, networks: [] };
    // The mode's own entry first (eth0), then the others in the body's order.
    const first = keys.includes(mode) ? entry(mode) : { network: mode, aliases: [] };
    return { network: mode, networks: [first, ...keys.filter((k) => k !== mode).map(entry)] };
  }
  // Docker's default mode with user-defined networks named: those networks (burrow's default
  // network cannot be combined with them).
  const networks = keys.map(entry);
  return networks.length ? { network: networks[0]!.network, networks } : { networks };
}

/** The create body and the `name` query parameter as the engine's request. */
export function createRequestOf(body: unknown, name: string | undefined): Converted {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApiError(400, 'invalid create request: the body must be a JSON object (Docker\'s container Config)');
  const c = new Reader(body as Obj, '');
  const h = c.obj('HostConfig') ?? new Reader({}, 'HostConfig');
  const n = c.obj('NetworkingConfig');
  const warnings: string[] = [];
  const image = c.str('Image');
  if (!image) throw new ApiError(400, 'invalid create request: Image is required');

  const volumes = h.strs('Binds') ?? [];
  const mounts = (h.objs('Mounts') ?? []).map(mountOf);
  // Config.Volumes: anonymous volumes, unless a bind or mount already covers the path.
  const taken = new Set([...volumes.map((b) => b.split(':')[1] ?? ''), ...mounts.map((m) => m.target)]);
  for (const target of c.keys('Volumes') ?? []) if (!taken.has(target)) mounts.push({ type: 'volume', target });

  const publish: string[] = [];
  const pb = h.obj('PortBindings');
  for (const key of pb?.ownKeys() ?? []) {
    const list = pb!.objs(key) ?? [];
    if (!list.length) publish.push(key);
    for (const b of list) publish.push(publishSpec(key, b));
  }
  const nets = networksOf(h.str('NetworkMode'), n?.obj('EndpointsConfig'));
  let network = nets.network;
  let networks = nets.networks;
  if (c.bool('NetworkDisabled')) {
    network = 'none';
    networks = [];
  }
  // Config.MacAddress (API < 1.44): the first network's.
  const mac = c.str('MacAddress');
  if (mac && networks[0] && !networks[0].mac) networks[0] = { ...networks[0], mac: endpointOf('', new Reader({ MacAddress: mac }, '')).mac! };
  const logType = h.obj('LogConfig')?.str('Type');
  let logDriver: string | undefined;
  if (logType && ['k8s-file', 'json-file', 'none'].includes(logType)) logDriver = logType;
  else if (logType) warnings.push(`log driver "${logType}" is not supported: the container logs with burrow's default (k8s-file)`);
  for (const k of ['VolumesFrom', 'Links'] as const) if (h.strs(k)?.length) warnings.push(`HostConfig.${k} is not supported and was ignored`);

  const ulimits = (h.objs('Ulimits') ?? []).map((u) => `${u.str('Name') ?? ''}=${u.int('Soft') ?? 0}:${u.int('Hard') ?? 0}`);
  const devices = (h.objs('Devices') ?? []).map((d) => {
    const host = d.str('PathOnHost') ?? '';
    // A CDI device name (not a path) stays a name (ts/cdi).
    if (!host.startsWith('/') && host.includes('=')) return host;
    return `${host}:${d.str('PathInContainer') || host}:${d.str('CgroupPermissions') || 'rwm'}`;
  });
  // CDI: DeviceRequests as the docker CLI sends them: Driver "cdi" with DeviceIDs (docker 25+'s
  // --device VENDOR/CLASS=NAME), or the gpu capability (--gpus: Count -1 for all, N, or DeviceIDs).
  let gpus: string | undefined;
  for (const r of h.objs('DeviceRequests') ?? []) {
    const ids = r.strs('DeviceIDs') ?? [];
    const caps = r.strLists('Capabilities')?.flat() ?? [];
    if (r.str('Driver') === 'cdi') devices.push(...ids);
    else if (caps.includes('gpu')) gpus = ids.length ? `device=${ids.join(',')}` : (r.int('Count') ?? -1) < 0 ? 'all' : String(r.int('Count'));
    else warnings.push(`HostConfig.DeviceRequests: driver "${r.str('Driver') ?? ''}" with capabilities ${JSON.stringify(caps)} is not supported (burrow has CDI devices and the gpu capability) and was ignored`);
  }
  // --pid, --ipc: host or private (burrow has no container:NAME or shareable modes).
  const nsMode = (k: 'PidMode' | 'IpcMode'): string | undefined => {
    const v = h.str(k);
    if (v === 'host') return 'host';
    if (v && v !== 'private' && v !== 'shareable') warnings.push(`HostConfig.${k} "${v}" is not supported: the container has a private namespace`);
    return undefined;
  };
  const pid = nsMode('PidMode');
  const ipc = nsMode('IpcMode');
  const entrypoint = c.strSlice('Entrypoint');
  const stopTimeout = c.int('StopTimeout');
  const restartPolicy = restartPolicyOf(h.obj('RestartPolicy'));
  const healthcheck = healthcheckOf(c.obj('Healthcheck'));
  const exposed = c.keys('ExposedPorts') ?? [];
  const strOpt = <K extends keyof CreateRequest>(k: K, v: CreateRequest[K] | undefined | ''): Partial<CreateRequest> => (v === undefined || v === '' ? {} : { [k]: v });

  const request: CreateRequest = {
    image,
    ...(name ? { name } : {}),
    command: c.strSlice('Cmd') ?? [],
    // [] and [""] reset the image's entrypoint (`--entrypoint ""`).
    ...(entrypoint !== undefined ? { entrypoint: entrypoint.length === 1 && entrypoint[0] === '' ? [] : entrypoint } : {}),
    env: c.strs('Env') ?? [],
    ...strOpt('workdir', c.str('WorkingDir')),
    ...strOpt('user', c.str('User')),
    ...strOpt('hostname', c.str('Hostname')),
    tty: !!c.bool('Tty'),
    interactive: !!c.bool('OpenStdin') || !!c.bool('AttachStdin'),
    stdinOnce: !!c.bool('StdinOnce'),
    attachStreams: { stdin: !!c.bool('AttachStdin'), stdout: !!c.bool('AttachStdout'), stderr: !!c.bool('AttachStderr') },
    autoRemove: !!h.bool('AutoRemove'),
    readOnly: !!h.bool('ReadonlyRootfs'),
    privileged: !!h.bool('Privileged'),
    init: !!h.bool('Init'),
    capAdd: h.strs('CapAdd') ?? [],
    capDrop: h.strs('CapDrop') ?? [],
    securityOpt: h.strs('SecurityOpt') ?? [],
    ulimits,
    labels: c.record('Labels') ?? {},
    volumes,
    mounts,
    tmpfs: h.record('Tmpfs') ?? {},
    ...(network !== undefined ? { network } : {}),
    ...(networks.length ? { endpoints: networks } : {}),
    publish,
    publishAll: !!h.bool('PublishAllPorts'),
    expose: exposed,
    dns: h.strs('Dns') ?? [],
    dnsSearch: h.strs('DnsSearch') ?? [],
    dnsOptions: h.strs('DnsOptions') ?? [],
    addHosts: h.strs('ExtraHosts') ?? [],
    ...(logDriver ? { logDriver } : {}),
    defaultLogDriver: 'json-file',
    groupAdd: h.strs('GroupAdd') ?? [],
    devices,
    ...(gpus ? { gpus } : {}),
    ...(pid ? { pid } : {}),
    ...(ipc ? { ipc } : {}),
    ...strOpt('stopSignal', c.str('StopSignal')),
    ...(stopTimeout !== undefined ? { stopTimeout } : {}),
    ...(restartPolicy ? { restartPolicy } : {}),
    resources: resourcesOf(h),
    // The API never pulls in create: the client pulls through /images/create and retries.
    pull: 'never',
    ...(healthcheck ? { healthcheck } : {}),
  };
  return { request, warnings };
}

/** The update body: resources and the restart policy. */
export function updateRequestOf(body: unknown): { resources: NonNullable<CreateRequest['resources']>; restartPolicy?: RestartPolicy } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApiError(400, 'invalid update request: the body must be a JSON object');
  const r = new Reader(body as Obj, '');
  const restartPolicy = restartPolicyOf(r.obj('RestartPolicy'));
  return { resources: resourcesOf(r), ...(restartPolicy ? { restartPolicy } : {}) };
}
