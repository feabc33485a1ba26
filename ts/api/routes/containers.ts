/**
 * Container routes of the Engine API (1.41) that are not streams: list, create, inspect, start,
 * stop, restart, kill, wait, DELETE, rename, pause, unpause, top, prune and update. Docker's
 * JSON in, the engine's requests (ts/engine) out, Docker's JSON and statuses back; the streams
 * (logs, attach, exec, stats, archive, export) are ts/api/routes/streams.ts.
 */
import type { ServerResponse } from 'node:http';
import { BurrowError } from '../../errors';
import type { ContainerRecord } from '../../container/records';
import type { EngineContext } from '../../engine/context';
import { dockerEndpoints, userNetworkMode, withShortIdAlias } from '../convert/networks';
import { ApiError, boolParam, filtersParam, noContent, readJson, sendJson } from '../http';
import type { ApiRequest, Route } from '../router';

const engine = (): Promise<typeof import('../../engine/containers')> => import('../../engine/containers');

/** The container a path names, or Docker's 404. */
async function container(req: ApiRequest): Promise<ContainerRecord> {
  const ref = req.params.id ?? '';
  try {
    return (await engine()).findContainer(req.ctx, ref);
  } catch (err) {
    if (err instanceof BurrowError && err.code === 'ECONTAINER_NOT_FOUND') throw new ApiError(404, `No such container: ${ref}`);
    throw err;
  }
}

/** An integer query parameter, absent → undefined; anything else is a 400 naming it. */
function intParam(q: URLSearchParams, name: string): number | undefined {
  const v = q.get(name);
  if (v === null || v === '') return undefined;
  if (!/^-?\d+$/.test(v)) throw new ApiError(400, `invalid value for ${name}: ${v}: want an integer`);
  return Number(v);
}

/** Docker's `Ports` of a listed container, from what its network bound (running) or asked (not). */
async function portsOf(ctx: EngineContext, rec: ContainerRecord, running: boolean): Promise<object[]> {
  if (!rec.net?.ports.length) return [];
  if (running) {
    const [{ networkSettings }, { Containers }] = await Promise.all([import('../../network/inspect'), import('../../container/records')]);
    const ns = networkSettings(rec.net, new Containers(ctx.store).dir(rec.id), 1, undefined) as { Ports?: Record<string, { HostIp: string; HostPort: string }[] | null> };
    const out: object[] = [];
    for (const [key, binds] of Object.entries(ns.Ports ?? {})) {
      const [port = '0', proto = 'tcp'] = key.split('/');
      if (!binds?.length) out.push({ PrivatePort: Number(port), Type: proto });
      for (const b of binds ?? []) out.push({ IP: b.HostIp || '0.0.0.0', PrivatePort: Number(port), PublicPort: Number(b.HostPort), Type: proto });
    }
    return out;
  }
  return rec.net.ports.map((p) => ({ PrivatePort: p.containerPort, Type: p.protocol }));
}

async function list(req: ApiRequest, res: ServerResponse): Promise<void> {
  const [{ listContainers, statusText }, { Containers }] = await Promise.all([import('../../engine/list'), import('../../container/records')]);
  const q = req.query;
  const limit = intParam(q, 'limit');
  const size = boolParam(q, 'size');
  const entries = listContainers(req.ctx, { all: boolParam(q, 'all'), ...(limit !== undefined && limit > 0 ? { last: limit } : {}), filters: filtersParam(q) });
  const containers = new Containers(req.ctx.store);
  const { treeSize } = size ? await import('../../container/lifecycle') : { treeSize: () => 0 };
  const out = [];
  const networkDefs = new Map<string, { subnet: string; gateway: string } | undefined>();
  for (const e of entries) {
    const r = e.rec;
    const running = e.state.status === 'running';
    // Docker's built-in names, as the networks routes list them: `bridge` stands for burrow's
    // default (a network namespace of its own through slirp4netns or pasta); a container on
    // user-defined networks shows them (docker ps's NETWORKS column), its first as its mode.
    const userNets = await dockerEndpoints(req.ctx, r, networkDefs);
    const mode = userNetworkMode(r) ?? (r.network === 'host' || r.network === 'none' || r.network.startsWith('container:') ? r.network : 'bridge');
    out.push({
      Id: r.id,
      Names: [`/${r.name}`],
      Image: r.imageName,
      ImageID: r.image.startsWith('sha256:') ? r.image : `sha256:${r.image}`,
      Command: r.command.join(' '),
      Created: Math.floor(Date.parse(r.created) / 1000),
      Ports: await portsOf(req.ctx, r, running),
      ...(size ? { SizeRw: treeSize(`${containers.dir(r.id)}/upper`), SizeRootFs: 0 } : {}),
      Labels: r.labels,
      State: e.status,
      Status: statusText(e),
      HostConfig: { NetworkMode: mode },
      NetworkSettings: { Networks: Object.keys(userNets).length ? userNets : mode.startsWith('container:') ? {} : { [mode]: { NetworkID: '', EndpointID: '', Gateway: '', IPAddress: '', IPPrefixLen: 0, MacAddress: '' } } },
      Mounts: r.mounts.map((m) => ({
        Type: m.type,
        ...(m.type === 'volume' ? { Name: m.name ?? '', Driver: 'local' } : {}),
        Source: m.source,
        Destination: m.destination,
        Mode: m.mode,
        RW: m.rw,
        Propagation: m.type === 'bind' ? 'rprivate' : '',
      })),
    });
  }
  sendJson(res, 200, out);
}

async function create(req: ApiRequest, res: ServerResponse): Promise<void> {
  const { createRequestOf } = await import('../convert/create');
  const name = req.query.get('name') ?? undefined;
  const { request, warnings } = createRequestOf(await readJson(req.raw), name || undefined);
  try {
    const rec = await (await engine()).createContainer(req.ctx, request, { warn: (m) => warnings.push(m) });
    sendJson(res, 201, { Id: rec.id, Warnings: warnings });
  } catch (err) {
    // Docker's words: the docker CLI pulls on this 404 and tries again.
    if (err instanceof BurrowError && err.code === 'EIMAGE_NOT_FOUND') throw new ApiError(404, `No such image: ${request.image}`);
    throw err;
  }
}

async function inspect(req: ApiRequest, res: ServerResponse): Promise<void> {
  const rec = await container(req);
  const { inspectContainer } = await import('../../container/inspect');
  const out = inspectContainer(req.ctx.store, rec) as Record<string, unknown> & { HostConfig: Record<string, unknown>; NetworkSettings: { Networks?: Record<string, Record<string, unknown>> } };
  // A container on user-defined networks: what Docker adds for its clients (ts/api/convert/networks.ts).
  const mode = userNetworkMode(rec);
  if (mode) {
    out.HostConfig.NetworkMode = mode;
    withShortIdAlias(rec, out.NetworkSettings.Networks ?? {});
  }
  if (boolParam(req.query, 'size')) {
    const [{ treeSize }, { Containers }] = await Promise.all([import('../../container/lifecycle'), import('../../container/records')]);
    Object.assign(out, { SizeRw: treeSize(`${new Containers(req.ctx.store).dir(rec.id)}/upper`), SizeRootFs: 0 });
  }
  sendJson(res, 200, out);
}

async function start(req: ApiRequest, res: ServerResponse): Promise<void> {
  const rec = await container(req);
  noContent(res, (await (await engine()).startContainer(req.ctx, rec)) ? 204 : 304);
}

async function stop(req: ApiRequest, res: ServerResponse): Promise<void> {
  const rec = await container(req);
  const t = intParam(req.query, 't');
  noContent(res, (await (await engine()).stopContainer(req.ctx, rec, t)) ? 204 : 304);
}

async function restart(req: ApiRequest, res: ServerResponse): Promise<void> {
  const rec = await container(req);
  await (await engine()).restartContainer(req.ctx, rec, intParam(req.query, 't'));
  noContent(res);
}

async function kill(req: ApiRequest, res: ServerResponse): Promise<void> {
  const rec = await container(req);
  (await engine()).killContainer(req.ctx, rec, req.query.get('signal') || 'KILL');
  noContent(res);
}

async function wait(req: ApiRequest, res: ServerResponse): Promise<void> {
  const rec = await container(req);
  const condition = req.query.get('condition') || 'not-running';
  if (!['not-running', 'next-exit', 'removed'].includes(condition)) throw new ApiError(400, `invalid condition: "${condition}"`);
  // The status line goes out at once, as Docker's daemon sends it: the docker CLI waits for it
  // before it starts the container (`run` asks for next-exit, or removed with --rm, first).
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.flushHeaders();
  // A client that hangs up ends the wait (its poller would otherwise run on).
  const ac = new AbortController();
  const onClose = (): void => ac.abort();
  res.on('close', onClose);
  try {
    const code = await (await engine()).waitContainer(req.ctx, rec, condition as 'not-running', ac.signal);
    res.end(JSON.stringify({ StatusCode: code, Error: null }));
  } catch (err) {
    // Too late for an error status: Docker's body says what went wrong.
    if (!ac.signal.aborted) res.end(JSON.stringify({ StatusCode: -1, Error: { Message: err instanceof Error ? err.message : String(err) } }));
  } finally {
    res.off('close', onClose);
  }
}

async function remove(req: ApiRequest, res: ServerResponse): Promise<void> {
  const rec = await container(req);
  const force = boolParam(req.query, 'force');
  const e = await engine();
  if (!force && e.stateOf(req.ctx, rec).status === 'running') {
    throw new ApiError(409, `You cannot remove a running container ${rec.id}. Stop the container before attempting removal or force remove`);
  }
  await e.removeContainer(req.ctx, rec, { force, volumes: boolParam(req.query, 'v') });
  noContent(res);
}

async function rename(req: ApiRequest, res: ServerResponse): Promise<void> {
  const rec = await container(req);
  const name = req.query.get('name');
  if (!name) throw new ApiError(400, 'rename: the new name is required (name=)');
  (await engine()).renameContainer(req.ctx, rec, name);
  noContent(res);
}

function pauseRoute(pause: boolean) {
  return async (req: ApiRequest, res: ServerResponse): Promise<void> => {
    const rec = await container(req);
    await (await engine()).pauseContainer(req.ctx, rec, pause);
    noContent(res);
  };
}

/** `ps` output as Docker's Titles and Processes: columns split on blanks, the last one (CMD) whole. */
export function psTable(text: string): { Titles: string[]; Processes: string[][] } {
  const lines = text.split('\n').filter((l) => l.trim());
  const titles = (lines.shift() ?? '').trim().split(/\s+/);
  const n = titles.length;
  const processes = lines.map((l) => {
    const parts = l.trim().split(/\s+/);
    return parts.length > n ? [...parts.slice(0, n - 1), parts.slice(n - 1).join(' ')] : parts;
  });
  return { Titles: titles, Processes: processes };
}

async function top(req: ApiRequest, res: ServerResponse): Promise<void> {
  const rec = await container(req);
  const psArgs = (req.query.get('ps_args') ?? '').split(/\s+/).filter(Boolean);
  sendJson(res, 200, psTable((await engine()).topContainer(req.ctx, rec, psArgs)));
}

async function prune(req: ApiRequest, res: ServerResponse): Promise<void> {
  const filters = filtersParam(req.query);
  const flat = Object.entries(filters).flatMap(([k, vs]) => vs.map((v) => `${k}=${v}`));
  const { ids, bytes } = await (await engine()).pruneContainers(req.ctx, flat);
  sendJson(res, 200, { ContainersDeleted: ids.length ? ids : null, SpaceReclaimed: bytes });
}

async function update(req: ApiRequest, res: ServerResponse): Promise<void> {
  const rec = await container(req);
  const { updateRequestOf } = await import('../convert/create');
  const u = updateRequestOf((await readJson(req.raw)) ?? {});
  const warnings = await (await engine()).updateContainer(req.ctx, rec, u);
  sendJson(res, 200, { Warnings: warnings });
}

export const routes: Route[] = [
  { method: 'GET', path: '/containers/json', handler: list },
  { method: 'POST', path: '/containers/create', handler: create },
  { method: 'POST', path: '/containers/prune', handler: prune },
  { method: 'GET', path: '/containers/{id}/json', handler: inspect },
  { method: 'POST', path: '/containers/{id}/start', handler: start },
  { method: 'POST', path: '/containers/{id}/stop', handler: stop },
  { method: 'POST', path: '/containers/{id}/restart', handler: restart },
  { method: 'POST', path: '/containers/{id}/kill', handler: kill },
  { method: 'POST', path: '/containers/{id}/wait', handler: wait },
  { method: 'DELETE', path: '/containers/{id}', handler: remove },
  { method: 'POST', path: '/containers/{id}/rename', handler: rename },
  { method: 'POST', path: '/containers/{id}/pause', handler: pauseRoute(true) },
  { method: 'POST', path: '/containers/{id}/unpause', handler: pauseRoute(false) },
  { method: 'GET', path: '/containers/{id}/top', handler: top },
  { method: 'POST', path: '/containers/{id}/update', handler: update },
];
