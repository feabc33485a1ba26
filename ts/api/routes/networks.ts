/**
 * Network routes of the Engine API: Docker's bodies and statuses over the user-defined networks
 * of ts/engine/networks.ts (#16): list (filters), inspect (its containers with their addresses),
 * create (201; 409 on a taken name, 403 on an overlapping subnet, 400 on bad input), remove (204;
 * 403 while containers use it, 404), prune, and connect/disconnect a container (aliases, a fixed
 * address; Force). The built-in `bridge`, `host` and `none` are burrow's modes as Docker names
 * them.
 */
import type { ServerResponse } from 'node:http';
import { BurrowError } from '../../errors';
import { isIpv4 } from '../convert/networks';
import { ApiError, filtersParam, noContent, readJson, sendJson } from '../http';
import type { ConnectOptions } from '../../engine/networks';
import type { ApiRequest, Route } from '../router';

const engine = () => import('../../engine/networks');

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStringMap = (v: unknown): v is Record<string, string> | null | undefined => v === null || v === undefined || (isObject(v) && Object.values(v).every((x) => typeof x === 'string'));
const absent = (v: unknown): v is null | undefined => v === null || v === undefined;

async function body(req: ApiRequest, what: string): Promise<Record<string, unknown>> {
  const b = (await readJson(req.raw)) ?? {};
  if (!isObject(b)) throw new ApiError(400, `invalid ${what} body: want a JSON object`);
  return b;
}

/** The engine's errors in Docker's words where its clients read them. */
function dockerError(err: unknown, ref: string): never {
  if (err instanceof BurrowError && err.code === 'ENETWORK_NOT_FOUND') throw new ApiError(404, `network ${ref} not found`);
  throw err;
}

async function list(req: ApiRequest, res: ServerResponse): Promise<void> {
  const { listNetworks } = await engine();
  sendJson(res, 200, await listNetworks(req.ctx, filtersParam(req.query)));
}

async function inspect(req: ApiRequest, res: ServerResponse): Promise<void> {
  const { inspectNetwork } = await engine();
  const ref = req.params.id!;
  sendJson(res, 200, await inspectNetwork(req.ctx, ref).catch((e: unknown) => dockerError(e, ref)));
}

const CREATE_FIELDS = ['Name', 'CheckDuplicate', 'Driver', 'Scope', 'Internal', 'Attachable', 'Ingress', 'ConfigOnly', 'ConfigFrom', 'IPAM', 'EnableIPv6', 'Options', 'Labels'];
const IPAM_CONFIG_FIELDS = ['Subnet', 'IPRange', 'Gateway', 'AuxiliaryAddresses'];

const isIpv6 = (s: string): boolean => s.includes(':') && /^[0-9a-fA-F:.]+$/.test(s);
const isCidr = (s: string): boolean => {
  const [ip = '', len, ...rest] = s.split('/');
  if (rest.length || len === undefined || !/^\d{1,3}$/.test(len)) return false;
  return (isIpv4(ip) && Number(len) <= 32) || (isIpv6(ip) && Number(len) <= 128);
};

/** IPAM.Config's entries, checked: Docker's 400 for an address that does not parse. */
function ipamConfig(cfg: unknown[]): Record<string, string>[] {
  return cfg.map((c, i) => {
    if (!isObject(c)) throw new ApiError(400, `invalid IPAM.Config[${i}]: want an object`);
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(c)) {
      if (absent(v) || v === '') continue;
      if (!IPAM_CONFIG_FIELDS.includes(k)) throw new ApiError(400, `unknown field ${JSON.stringify(k)} in IPAM.Config[${i}]`);
      if (k === 'AuxiliaryAddresses') {
        if (!isStringMap(v)) throw new ApiError(400, `invalid IPAM.Config[${i}].AuxiliaryAddresses: want an object of strings`);
        if (Object.keys(v ?? {}).length) throw new ApiError(400, 'IPAM.Config AuxiliaryAddresses are not supported');
        continue;
      }
      if (typeof v !== 'string') throw new ApiError(400, `invalid IPAM.Config[${i}].${k}: want a string`);
      if (k === 'Gateway' ? !isIpv4(v) && !isIpv6(v) : !isCidr(v)) throw new ApiError(400, `invalid ${k.toLowerCase()} ${v}: want ${k === 'Gateway' ? 'an IP address' : 'a CIDR such as 172.20.0.0/16'}`);
      out[k] = v;
    }
    if ((out.Gateway || out.IPRange) && !out.Subnet) throw new ApiError(400, `invalid IPAM.Config[${i}]: a gateway or an IP range needs a subnet`);
    return out;
  });
}

async function create(req: ApiRequest, res: ServerResponse): Promise<void> {
  const b = await body(req, 'network create');
  for (const k of Object.keys(b)) if (!CREATE_FIELDS.includes(k)) throw new ApiError(400, `unknown field ${JSON.stringify(k)} in network create body`);
  if (typeof b.Name !== 'string' || !b.Name) throw new ApiError(400, 'network create: Name is required');
  if (!absent(b.Driver) && typeof b.Driver !== 'string') throw new ApiError(400, 'invalid Driver: want a string');
  for (const k of ['Internal', 'Attachable', 'EnableIPv6', 'CheckDuplicate', 'Ingress', 'ConfigOnly']) if (!absent(b[k]) && typeof b[k] !== 'boolean') throw new ApiError(400, `invalid ${k}: want true or false`);
  if (b.Ingress || b.ConfigOnly || (isObject(b.ConfigFrom) && b.ConfigFrom.Network)) throw new ApiError(400, 'ingress and config-only networks are swarm features: not supported');
  if (!isStringMap(b.Options)) throw new ApiError(400, 'invalid Options: want an object of strings');
  if (!isStringMap(b.Labels)) throw new ApiError(400, 'invalid Labels: want an object of strings');
  const ipam = b.IPAM;
  let config: Record<string, string>[] = [];
  if (!absent(ipam)) {
    if (!isObject(ipam) || (!absent(ipam.Driver) && typeof ipam.Driver !== 'string') || (!absent(ipam.Config) && !Array.isArray(ipam.Config)) || !isStringMap(ipam.Options)) throw new ApiError(400, 'invalid IPAM: want {Driver, Config: [{Subnet, Gateway, IPRange}], Options}');
    if (ipam.Driver && ipam.Driver !== 'default') throw new ApiError(400, `IPAM driver ${ipam.Driver} is not supported: burrow has the default one`);
    config = ipamConfig((ipam.Config as unknown[] | null | undefined) ?? []);
  }
  const { createNetwork } = await engine();
  const r = createNetwork(req.ctx, {
    Name: b.Name,
    Driver: b.Driver || undefined,
    CheckDuplicate: b.CheckDuplicate as boolean | undefined,
    Internal: b.Internal as boolean | undefined,
    Attachable: b.Attachable as boolean | undefined,
    EnableIPv6: b.EnableIPv6 as boolean | undefined,
    IPAM: { Driver: 'default', Options: isObject(ipam) ? (ipam.Options as Record<string, string> | null | undefined) ?? {} : {}, Config: config },
    Options: b.Options ?? {},
    Labels: b.Labels ?? {},
  });
  // Docker's answer: the id, and a Warning (empty when there is nothing to say).
  sendJson(res, 201, { Id: r.Id, Warning: r.Warning ?? '' });
}

async function remove(req: ApiRequest, res: ServerResponse): Promise<void> {
  const { removeNetwork } = await engine();
  const ref = req.params.id!;
  await removeNetwork(req.ctx, ref).catch((e: unknown) => dockerError(e, ref));
  noContent(res);
}

async function prune(req: ApiRequest, res: ServerResponse): Promise<void> {
  const { pruneNetworks } = await engine();
  sendJson(res, 200, { NetworksDeleted: await pruneNetworks(req.ctx, filtersParam(req.query)) });
}

/** What a connect body's EndpointConfig asks: aliases and a fixed address (Docker's IPAMConfig). */
function endpointAsk(v: unknown, field: string): ConnectOptions {
  if (absent(v)) return { aliases: [] };
  if (!isObject(v)) throw new ApiError(400, `invalid ${field}: want an object`);
  const aliases = v.Aliases;
  if (!absent(aliases) && !(Array.isArray(aliases) && aliases.every((a) => typeof a === 'string'))) throw new ApiError(400, `invalid ${field}.Aliases: want an array of strings`);
  const out: ConnectOptions = { aliases: [...new Set(aliases ?? [])].filter(Boolean) };
  const ipam = v.IPAMConfig;
  if (!absent(ipam)) {
    if (!isObject(ipam)) throw new ApiError(400, `invalid ${field}.IPAMConfig: want an object`);
    const ip = ipam.IPv4Address;
    if (!absent(ip) && ip !== '') {
      if (typeof ip !== 'string' || !isIpv4(ip)) throw new ApiError(400, `invalid IPv4 address: ${JSON.stringify(ip)}`);
      out.ip = ip;
    }
    if (!absent(ipam.IPv6Address) && ipam.IPv6Address !== '') throw new ApiError(400, `${field}.IPAMConfig.IPv6Address: a fixed IPv6 address is not supported`);
  }
  // A container's MAC on a network it joins later is Docker's (02:42 and the address).
  if (!absent(v.MacAddress) && v.MacAddress !== '') throw new ApiError(400, `${field}.MacAddress: a MAC address is set at create only (NetworkingConfig), not on connect`);
  return out;
}

async function connect(req: ApiRequest, res: ServerResponse): Promise<void> {
  const b = await body(req, 'network connect');
  if (typeof b.Container !== 'string' || !b.Container) throw new ApiError(400, 'network connect: Container is required');
  const ask = endpointAsk(b.EndpointConfig, 'EndpointConfig');
  const { connectNetwork } = await engine();
  await connectNetwork(req.ctx, req.params.id!, b.Container, 'connect', ask);
  res.writeHead(200, { 'Content-Length': 0 });
  res.end();
}

async function disconnect(req: ApiRequest, res: ServerResponse): Promise<void> {
  const b = await body(req, 'network disconnect');
  if (typeof b.Container !== 'string' || !b.Container) throw new ApiError(400, 'network disconnect: Container is required');
  if (!absent(b.Force) && typeof b.Force !== 'boolean') throw new ApiError(400, 'invalid Force: want true or false');
  const { disconnectNetwork } = await engine();
  await disconnectNetwork(req.ctx, req.params.id!, b.Container, { force: !!b.Force });
  res.writeHead(200, { 'Content-Length': 0 });
  res.end();
}

export const routes: Route[] = [
  { method: 'GET', path: '/networks', handler: list },
  { method: 'POST', path: '/networks/create', handler: create },
  { method: 'POST', path: '/networks/prune', handler: prune },
  { method: 'GET', path: '/networks/{id}', handler: inspect },
  { method: 'DELETE', path: '/networks/{id}', handler: remove },
  { method: 'POST', path: '/networks/{id}/connect', handler: connect },
  { method: 'POST', path: '/networks/{id}/disconnect', handler: disconnect },
];
