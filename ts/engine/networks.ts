/**
 * Networks as Docker's clients see them. The modes that exist are listed as Docker's three
 * built-in networks: `bridge` stands for burrow's default (a network namespace of its own per
 * container, through slirp4netns or pasta), `host` and `none`. User-defined networks are a later
 * issue (#16); until then a created network is recorded (ROOT/networks/NAME.json, Docker's
 * fields) so that tools which create one per project (docker-compose's PROJECT_default) work,
 * and the create answer's Warning says what it means: a container joined to it gets its own
 * network, as on `bridge`, and reaches the others through published ports only.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { BurrowError } from '../errors';
import { mkdirp, readJson } from '../storage/fsutil';
import type { EngineContext } from './context';
import { emitEvent } from './events';

export interface NetworkRecord {
  Name: string;
  Id: string;
  Created: string;
  Driver: string;
  EnableIPv6: boolean;
  IPAM: { Driver: string; Options: Record<string, string> | null; Config: Record<string, unknown>[] };
  Internal: boolean;
  Attachable: boolean;
  Options: Record<string, string>;
  Labels: Record<string, string>;
}

/** Docker's network object (list and inspect). */
export interface DockerNetwork extends NetworkRecord {
  Scope: 'local';
  Ingress: boolean;
  ConfigFrom: { Network: string };
  ConfigOnly: boolean;
  Containers: Record<string, { Name: string; EndpointID: string; MacAddress: string; IPv4Address: string; IPv6Address: string }>;
}

export interface NetworkCreateRequest {
  Name: string;
  Driver?: string;
  CheckDuplicate?: boolean;
  Internal?: boolean;
  Attachable?: boolean;
  EnableIPv6?: boolean;
  IPAM?: { Driver?: string | null; Options?: Record<string, string> | null; Config?: Record<string, unknown>[] | null } | null;
  Options?: Record<string, string> | null;
  Labels?: Record<string, string> | null;
}

export const BUILTIN = ['bridge', 'host', 'none'] as const;
type Builtin = (typeof BUILTIN)[number];

export const CREATE_WARNING = 'burrow does not have user-defined networks yet: a container joined to this network gets a network namespace of its own, as on the default network, and reaches other containers through published ports only';

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const isRecord = (v: unknown): v is NetworkRecord => typeof v === 'object' && v !== null && typeof (v as NetworkRecord).Id === 'string' && typeof (v as NetworkRecord).Name === 'string';

/** Built-in networks' ids: the same in every service that uses this store, as Docker's stay for a daemon. */
function builtinId(ctx: EngineContext, name: Builtin): string {
  return createHash('sha256').update(`burrow-network\0${ctx.store.root}\0${name}`).digest('hex');
}

function created(ctx: EngineContext): string {
  const st = fs.statSync(ctx.store.p('storage.json'), { throwIfNoEntry: false });
  return (st?.mtime ?? new Date()).toISOString();
}

function builtin(ctx: EngineContext, name: Builtin): NetworkRecord {
  const base = { Name: name, Id: builtinId(ctx, name), Created: created(ctx), EnableIPv6: false, Internal: false, Attachable: false, Labels: {} };
  if (name === 'bridge') return { ...base, Driver: 'bridge', IPAM: { Driver: 'default', Options: null, Config: [{ Subnet: '10.0.2.0/24', Gateway: '10.0.2.2' }] }, Options: { 'burrow.network': 'a network namespace per container (slirp4netns or pasta)' } };
  return { ...base, Driver: name === 'host' ? 'host' : 'null', IPAM: { Driver: 'default', Options: null, Config: [] }, Options: {} };
}

function dir(ctx: EngineContext): string {
  return ctx.store.p('networks');
}

function recorded(ctx: EngineContext): NetworkRecord[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir(ctx)).filter((n) => n.endsWith('.json'));
  } catch {
    return [];
  }
  const out: NetworkRecord[] = [];
  for (const n of names.sort()) {
    try {
      out.push(readJson(`${dir(ctx)}/${n}`, isRecord));
    } catch {
      /* removed meanwhile, or not ours */
    }
  }
  return out;
}

function allNetworks(ctx: EngineContext): NetworkRecord[] {
  return [...BUILTIN.map((b) => builtin(ctx, b)), ...recorded(ctx)];
}

/** By name, full id or unique id prefix, as Docker resolves network references. */
export function findNetwork(ctx: EngineContext, ref: string): NetworkRecord {
  const all = allNetworks(ctx);
  const hit = all.find((n) => n.Name === ref) ?? all.find((n) => n.Id === ref);
  if (hit) return hit;
  const byPrefix = ref ? all.filter((n) => n.Id.startsWith(ref)) : [];
  if (byPrefix.length > 1) throw new BurrowError('EUSAGE', `network ${ref} is ambiguous (${byPrefix.length} matches found on id)`);
  if (!byPrefix[0]) throw new BurrowError('ENETWORK_NOT_FOUND', `network ${ref} not found`);
  return byPrefix[0];
}

// Recorded networks cannot take these names, so the name tells.
const isBuiltin = (n: NetworkRecord): boolean => (BUILTIN as readonly string[]).includes(n.Name);

/** The containers a network has: by their record's network mode (Docker's endpoints). */
async function members(ctx: EngineContext, n: NetworkRecord, runningOnly: boolean): Promise<DockerNetwork['Containers']> {
  const { Containers } = await import('../container/records');
  const { containerState } = await import('../container/state');
  const cs = new Containers(ctx.store);
  const out: DockerNetwork['Containers'] = {};
  for (const rec of cs.all()) {
    const mode = rec.net?.mode ?? rec.network;
    const on = n.Name === 'bridge' ? mode === 'slirp4netns' || mode === 'pasta' || rec.network === 'bridge' || rec.network === 'default' : n.Name === 'host' || n.Name === 'none' ? mode === n.Name : rec.network === n.Name || rec.network === n.Id;
    if (!on) continue;
    if (runningOnly && containerState(rec, cs.dir(rec.id)).status !== 'running') continue;
    out[rec.id] = { Name: rec.name, EndpointID: '', MacAddress: '', IPv4Address: n.Name === 'bridge' ? '10.0.2.100/24' : '', IPv6Address: '' };
  }
  return out;
}

function docker(n: NetworkRecord, containers: DockerNetwork['Containers']): DockerNetwork {
  return { Name: n.Name, Id: n.Id, Created: n.Created, Scope: 'local', Driver: n.Driver, EnableIPv6: n.EnableIPv6, IPAM: n.IPAM, Internal: n.Internal, Attachable: n.Attachable, Ingress: false, ConfigFrom: { Network: '' }, ConfigOnly: false, Containers: containers, Options: n.Options, Labels: n.Labels };
}

export const NETWORK_FILTERS = ['name', 'id', 'driver', 'label', 'type', 'scope', 'dangling'];

function labelOk(labels: Record<string, string>, f: string): boolean {
  const i = f.indexOf('=');
  return i < 0 ? f in labels : labels[f.slice(0, i)] === f.slice(i + 1);
}

function regexOrSubstring(s: string, f: string): boolean {
  try {
    return new RegExp(f).test(s);
  } catch {
    return s.includes(f);
  }
}

/** `network ls`: Docker's filters name, id (prefix), driver, label, type (builtin|custom), scope, dangling. */
export async function listNetworks(ctx: EngineContext, f: Record<string, string[]> = {}): Promise<DockerNetwork[]> {
  for (const k of Object.keys(f)) if (!NETWORK_FILTERS.includes(k)) throw new BurrowError('EUSAGE', `invalid filter '${k}': networks take ${NETWORK_FILTERS.join(', ')}`);
  for (const t of f.type ?? []) if (t !== 'builtin' && t !== 'custom') throw new BurrowError('EUSAGE', `invalid filter 'type=${t}': want builtin or custom`);
  const out: DockerNetwork[] = [];
  for (const n of allNetworks(ctx)) {
    const ok =
      (!f.name?.length || f.name.some((x) => regexOrSubstring(n.Name, x))) &&
      (!f.id?.length || f.id.some((x) => n.Id.startsWith(x))) &&
      (!f.driver?.length || f.driver.includes(n.Driver)) &&
      (f.label ?? []).every((x) => labelOk(n.Labels, x)) &&
      (!f.type?.length || f.type.includes(isBuiltin(n) ? 'builtin' : 'custom')) &&
      (!f.scope?.length || f.scope.includes('local'));
    if (!ok) continue;
    if (f.dangling?.length) {
      const unused = !isBuiltin(n) && Object.keys(await members(ctx, n, false)).length === 0;
      if (!f.dangling.some((d) => /^(1|true)$/i.test(d) === unused)) continue;
    }
    out.push(docker(n, {}));
  }
  return out;
}

export async function inspectNetwork(ctx: EngineContext, ref: string): Promise<DockerNetwork> {
  const n = findNetwork(ctx, ref);
  return docker(n, await members(ctx, n, true));
}

/**
 * `network create`: records the network (name unique: ENETWORK_EXISTS, Docker's 409). Only the
 * bridge driver is accepted, the one whose meaning burrow can keep (a network of its own per
 * container); the answer's Warning says what a container joined to it gets.
 */
export function createNetwork(ctx: EngineContext, r: NetworkCreateRequest): { Id: string; Warning: string } {
  const name = r.Name;
  if (!name || !NAME_RE.test(name)) throw new BurrowError('EUSAGE', `invalid network name ${JSON.stringify(name ?? '')}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
  const driver = r.Driver || 'bridge';
  if (driver !== 'bridge') throw new BurrowError('EUSAGE', `network driver ${driver} is not supported: burrow records bridge networks only`, 'leave the driver out (bridge)');
  if ((BUILTIN as readonly string[]).includes(name)) throw new BurrowError('ENETWORK_EXISTS', `network with name ${name} already exists`);
  const rec: NetworkRecord = {
    Name: name,
    Id: randomBytes(32).toString('hex'),
    Created: new Date().toISOString(),
    Driver: driver,
    EnableIPv6: !!r.EnableIPv6,
    IPAM: { Driver: r.IPAM?.Driver || 'default', Options: r.IPAM?.Options ?? {}, Config: r.IPAM?.Config ?? [] },
    Internal: !!r.Internal,
    Attachable: !!r.Attachable,
    Options: r.Options ?? {},
    Labels: r.Labels ?? {},
  };
  mkdirp(dir(ctx));
  // The name is claimed by creating its file exclusively: of two creates at once, one wins.
  const file = `${dir(ctx)}/${name}.json`;
  let fd: number;
  try {
    fd = fs.openSync(file, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new BurrowError('ENETWORK_EXISTS', `network with name ${name} already exists`);
    throw err;
  }
  try {
    fs.writeSync(fd, JSON.stringify(rec));
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  emitEvent(ctx, { Type: 'network', Action: 'create', Actor: { ID: rec.Id, Attributes: { name, type: driver } } });
  return { Id: rec.Id, Warning: CREATE_WARNING };
}

/** `network rm`: not a built-in network, not one running containers use (Docker's 403 both). */
export async function removeNetwork(ctx: EngineContext, ref: string): Promise<void> {
  const n = findNetwork(ctx, ref);
  if (isBuiltin(n)) throw new BurrowError('ENETWORK_FORBIDDEN', `${n.Name} is a pre-defined network and cannot be removed`);
  const using = Object.keys(await members(ctx, n, true));
  if (using.length) throw new BurrowError('ENETWORK_FORBIDDEN', `error while removing network: network ${n.Name} id ${n.Id} has active endpoints (${using.map((i) => i.slice(0, 12)).join(', ')})`, 'stop or remove its containers first');
  try {
    fs.rmSync(`${dir(ctx)}/${n.Name}.json`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new BurrowError('ENETWORK_NOT_FOUND', `network ${ref} not found`);
    throw err;
  }
  emitEvent(ctx, { Type: 'network', Action: 'destroy', Actor: { ID: n.Id, Attributes: { name: n.Name, type: n.Driver } } });
}

/** `network prune`: recorded networks no container uses (filters label, label!, until). */
export async function pruneNetworks(ctx: EngineContext, f: Record<string, string[]> = {}): Promise<string[]> {
  for (const k of Object.keys(f)) if (!['label', 'label!', 'until'].includes(k)) throw new BurrowError('EUSAGE', `invalid filter '${k}': network prune takes label, label! and until`);
  const until = f.until?.map((u) => (/^\d+(\.\d+)?$/.test(u) ? Number(u) * 1000 : Date.parse(u)));
  if (until?.some((t) => Number.isNaN(t))) throw new BurrowError('EUSAGE', `invalid filter 'until=${f.until!.join(',')}': want a timestamp`);
  const out: string[] = [];
  for (const n of recorded(ctx)) {
    if (!(f.label ?? []).every((x) => labelOk(n.Labels, x))) continue;
    if ((f['label!'] ?? []).some((x) => labelOk(n.Labels, x))) continue;
    if (until?.some((t) => Date.parse(n.Created) >= t)) continue;
    if (Object.keys(await members(ctx, n, false)).length) continue;
    try {
      await removeNetwork(ctx, n.Id);
      out.push(n.Name);
    } catch {
      /* in use by now, or removed meanwhile */
    }
  }
  return out;
}

/**
 * `network connect|disconnect`: the container must exist. A recorded network changes nothing
 * about a container's network yet (#16): the call succeeds with an event, as the create answer's
 * Warning said. The built-in networks cannot be changed on an existing container.
 */
export async function connectNetwork(ctx: EngineContext, ref: string, container: string, action: 'connect' | 'disconnect'): Promise<void> {
  const n = findNetwork(ctx, ref);
  const { Containers } = await import('../container/records');
  const rec = new Containers(ctx.store).find(container);
  if (isBuiltin(n)) throw new BurrowError('ENETWORK_FORBIDDEN', `cannot ${action} container ${rec.name} ${action === 'connect' ? 'to' : 'from'} network ${n.Name}: burrow sets a container's network when it is created (--network)`);
  emitEvent(ctx, { Type: 'network', Action: action, Actor: { ID: n.Id, Attributes: { container: rec.id, name: n.Name, type: n.Driver } } });
}

/**
 * What a container create's network mode means, for the containers engine: a built-in mode, or
 * a recorded network, which for now is the default network (a namespace of its own).
 */
export function resolveNetworkMode(ctx: EngineContext, mode: string): { builtin: Builtin } | { network: NetworkRecord } {
  if (!mode || mode === 'default' || mode === 'bridge') return { builtin: 'bridge' };
  if (mode === 'host' || mode === 'none') return { builtin: mode };
  return { network: findNetwork(ctx, mode) };
}
