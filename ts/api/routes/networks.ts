/**
 * Network routes of the Engine API: list and inspect the modes that exist (bridge, host, none)
 * and the networks recorded by create (user-defined networks proper are issue #16; see
 * ts/engine/networks.ts for what a recorded one means), create (409 on a taken name), remove,
 * prune, connect and disconnect.
 */
import type { ServerResponse } from 'node:http';
import { ApiError, filtersParam, noContent, readJson, sendJson } from '../http';
import type { ApiRequest, Route } from '../router';

const engine = () => import('../../engine/networks');

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStringMap = (v: unknown): v is Record<string, string> | null | undefined => v === null || v === undefined || (isObject(v) && Object.values(v).every((x) => typeof x === 'string'));

async function body(req: ApiRequest, what: string): Promise<Record<string, unknown>> {
  const b = (await readJson(req.raw)) ?? {};
  if (!isObject(b)) throw new ApiError(400, `invalid ${what} body: want a JSON object`);
  return b;
}

async function list(req: ApiRequest, res: ServerResponse): Promise<void> {
  const { listNetworks } = await engine();
  sendJson(res, 200, await listNetworks(req.ctx, filtersParam(req.query)));
}

async function inspect(req: ApiRequest, res: ServerResponse): Promise<void> {
  const { inspectNetwork } = await engine();
  sendJson(res, 200, await inspectNetwork(req.ctx, req.params.id!));
}

const CREATE_FIELDS = ['Name', 'CheckDuplicate', 'Driver', 'Scope', 'Internal', 'Attachable', 'Ingress', 'ConfigOnly', 'ConfigFrom', 'IPAM', 'EnableIPv6', 'Options', 'Labels'];

async function create(req: ApiRequest, res: ServerResponse): Promise<void> {
  const b = await body(req, 'network create');
  for (const k of Object.keys(b)) if (!CREATE_FIELDS.includes(k)) throw new ApiError(400, `unknown field ${JSON.stringify(k)} in network create body`);
  if (typeof b.Name !== 'string' || !b.Name) throw new ApiError(400, 'network create: Name is required');
  if (b.Driver !== undefined && b.Driver !== null && typeof b.Driver !== 'string') throw new ApiError(400, 'invalid Driver: want a string');
  for (const k of ['Internal', 'Attachable', 'EnableIPv6', 'CheckDuplicate', 'Ingress', 'ConfigOnly']) if (b[k] !== undefined && b[k] !== null && typeof b[k] !== 'boolean') throw new ApiError(400, `invalid ${k}: want true or false`);
  if (b.Ingress || b.ConfigOnly || (isObject(b.ConfigFrom) && b.ConfigFrom.Network)) throw new ApiError(400, 'ingress and config-only networks are swarm features: not supported');
  if (!isStringMap(b.Options)) throw new ApiError(400, 'invalid Options: want an object of strings');
  if (!isStringMap(b.Labels)) throw new ApiError(400, 'invalid Labels: want an object of strings');
  const ipam = b.IPAM;
  if (ipam !== undefined && ipam !== null) {
    if (!isObject(ipam) || (ipam.Driver !== undefined && ipam.Driver !== null && typeof ipam.Driver !== 'string') || (ipam.Config !== undefined && ipam.Config !== null && !(Array.isArray(ipam.Config) && ipam.Config.every(isObject))) || !isStringMap(ipam.Options)) throw new ApiError(400, 'invalid IPAM: want {Driver, Config: [{Subnet, Gateway, …}], Options}');
  }
  const { createNetwork } = await engine();
  const r = createNetwork(req.ctx, {
    Name: b.Name,
    Driver: b.Driver ?? undefined,
    Internal: b.Internal as boolean | undefined,
    Attachable: b.Attachable as boolean | undefined,
    EnableIPv6: b.EnableIPv6 as boolean | undefined,
    IPAM: ipam,
    Options: b.Options,
    Labels: b.Labels,
  });
  sendJson(res, 201, r);
}

async function remove(req: ApiRequest, res: ServerResponse): Promise<void> {
  const { removeNetwork } = await engine();
  await removeNetwork(req.ctx, req.params.id!);
  noContent(res);
}

async function prune(req: ApiRequest, res: ServerResponse): Promise<void> {
  const { pruneNetworks } = await engine();
  sendJson(res, 200, { NetworksDeleted: await pruneNetworks(req.ctx, filtersParam(req.query)) });
}

function connector(action: 'connect' | 'disconnect') {
  return async (req: ApiRequest, res: ServerResponse): Promise<void> => {
    const b = await body(req, `network ${action}`);
    if (typeof b.Container !== 'string' || !b.Container) throw new ApiError(400, `network ${action}: Container is required`);
    const { connectNetwork } = await engine();
    await connectNetwork(req.ctx, req.params.id!, b.Container, action);
    res.writeHead(200, { 'Content-Length': 0 });
    res.end();
  };
}

export const routes: Route[] = [
  { method: 'GET', path: '/networks', handler: list },
  { method: 'POST', path: '/networks/create', handler: create },
  { method: 'POST', path: '/networks/prune', handler: prune },
  { method: 'GET', path: '/networks/{id}', handler: inspect },
  { method: 'DELETE', path: '/networks/{id}', handler: remove },
  { method: 'POST', path: '/networks/{id}/connect', handler: connector('connect') },
  { method: 'POST', path: '/networks/{id}/disconnect', handler: connector('disconnect') },
];
