/**
 * Volume routes of the Engine API: list (filters name, label, dangling, driver), create (the
 * local driver only, without options: 400 otherwise), inspect, remove (409 in use), prune. The
 * work is in ts/engine/volumes.ts, which `burrow volume` uses too.
 */
import type { ServerResponse } from 'node:http';
import { ApiError, boolParam, filtersParam, noContent, readJson, sendJson } from '../http';
import type { ApiRequest, Route } from '../router';

const engine = () => import('../../engine/volumes');

async function list(req: ApiRequest, res: ServerResponse): Promise<void> {
  const { listVolumesFiltered } = await engine();
  sendJson(res, 200, { Volumes: listVolumesFiltered(req.ctx, filtersParam(req.query)), Warnings: [] });
}

const isStringMap = (v: unknown): v is Record<string, string> => v === null || v === undefined || (typeof v === 'object' && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'string'));

async function create(req: ApiRequest, res: ServerResponse): Promise<void> {
  const body = (await readJson(req.raw)) ?? {};
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApiError(400, 'invalid volume create body: want a JSON object');
  const b = body as Record<string, unknown>;
  for (const k of Object.keys(b)) if (!['Name', 'Driver', 'DriverOpts', 'Labels', 'ClusterVolumeSpec'].includes(k)) throw new ApiError(400, `unknown field ${JSON.stringify(k)} in volume create body`);
  if (b.Name !== undefined && b.Name !== null && typeof b.Name !== 'string') throw new ApiError(400, 'invalid Name: want a string');
  if (b.Driver !== undefined && b.Driver !== null && typeof b.Driver !== 'string') throw new ApiError(400, 'invalid Driver: want a string');
  if (!isStringMap(b.DriverOpts)) throw new ApiError(400, 'invalid DriverOpts: want an object of strings');
  if (!isStringMap(b.Labels)) throw new ApiError(400, 'invalid Labels: want an object of strings');
  if (b.ClusterVolumeSpec) throw new ApiError(400, 'cluster volumes are not supported (there is no swarm)');
  const { createVolume } = await engine();
  const v = createVolume(req.ctx, { Name: b.Name ?? undefined, Driver: b.Driver ?? undefined, DriverOpts: b.DriverOpts ?? {}, Labels: b.Labels ?? {} });
  sendJson(res, 201, v);
}

async function inspect(req: ApiRequest, res: ServerResponse): Promise<void> {
  const { inspect } = await engine();
  sendJson(res, 200, inspect(req.ctx, req.params.name!));
}

async function remove(req: ApiRequest, res: ServerResponse): Promise<void> {
  const { removeVolume } = await engine();
  await removeVolume(req.ctx, req.params.name!, boolParam(req.query, 'force'));
  noContent(res);
}

async function prune(req: ApiRequest, res: ServerResponse): Promise<void> {
  const f = filtersParam(req.query);
  const filters: string[] = [];
  for (const [k, vals] of Object.entries(f)) {
    if (k === 'label' || k === 'label!') filters.push(...vals.map((v) => `${k}=${v}`));
    else if (k !== 'all') throw new ApiError(400, `invalid filter '${k}': volume prune takes label and label!`);
  }
  const { pruneVolumes } = await engine();
  const r = await pruneVolumes(req.ctx, filters);
  sendJson(res, 200, { VolumesDeleted: r.names, SpaceReclaimed: r.bytes });
}

export const routes: Route[] = [
  { method: 'GET', path: '/volumes', handler: list },
  { method: 'POST', path: '/volumes/create', handler: create },
  { method: 'POST', path: '/volumes/prune', handler: prune },
  { method: 'GET', path: '/volumes/{name}', handler: inspect },
  { method: 'DELETE', path: '/volumes/{name}', handler: remove },
];
