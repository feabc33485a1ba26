/**
 * System routes: `_ping`, `version`, `info`, `events` (a stream of JSON lines: past events in
 * since/until, then new ones until `until` or the client goes), `system/df`. The work is in
 * ts/engine/system.ts; `auth` is the images module's.
 */
import os from 'node:os';
import type { ServerResponse } from 'node:http';
import { ApiError, filtersParam, sendJson } from '../http';
import type { ApiRequest, Route } from '../router';
import { API_VERSION, MIN_API_VERSION } from '../version';
import { VERSION } from '../../version';

function ping(req: ApiRequest, res: ServerResponse): Promise<void> {
  res.setHeader('Cache-Control', 'no-cache, no-store, must-revalidate');
  res.setHeader('Pragma', 'no-cache');
  res.setHeader('Builder-Version', '');
  if (req.method === 'HEAD') {
    res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': 0 });
    res.end();
  } else {
    res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': 2 });
    res.end('OK');
  }
  return Promise.resolve();
}

async function version(_req: ApiRequest, res: ServerResponse): Promise<void> {
  const { versionInfo } = await import('../../engine/version');
  const v = versionInfo();
  const rt = v.Runtime;
  sendJson(res, 200, {
    Platform: { Name: 'Burrow Engine' },
    Components: [
      { Name: 'Engine', Version: VERSION, Details: { ApiVersion: API_VERSION, MinAPIVersion: MIN_API_VERSION, GitCommit: v.Client.GitCommit, NodeVersion: process.version, Os: 'linux', Arch: v.Client.Arch, KernelVersion: os.release() } },
      ...('Error' in rt ? [] : [{ Name: 'burrow-runtime', Version: rt.Version, Details: { OciVersion: rt.OciVersion, Path: rt.Path } }]),
    ],
    Version: VERSION,
    ApiVersion: API_VERSION,
    MinAPIVersion: MIN_API_VERSION,
    GitCommit: v.Client.GitCommit,
    GoVersion: process.version,
    Os: 'linux',
    Arch: v.Client.Arch,
    KernelVersion: os.release(),
    BuildTime: v.Client.BuildTime,
  });
}

async function info(req: ApiRequest, res: ServerResponse): Promise<void> {
  const { engineInfo } = await import('../../engine/system');
  sendJson(res, 200, await engineInfo(req.ctx));
}

async function events(req: ApiRequest, res: ServerResponse): Promise<void> {
  const { parseEventTime, EVENT_FILTERS, dockerMessage } = await import('../../engine/events');
  const { streamEvents } = await import('../../engine/system');
  const time = (name: string) => {
    const v = req.query.get(name);
    if (!v) return undefined;
    const t = parseEventTime(v);
    if (t === undefined) throw new ApiError(400, `invalid ${name} ${JSON.stringify(v)}: want unix seconds (1700000000 or 1700000000.5) or an RFC 3339 time`);
    return t;
  };
  const since = time('since');
  const until = time('until');
  const filters = filtersParam(req.query);
  for (const k of Object.keys(filters)) if (!(EVENT_FILTERS as readonly string[]).includes(k)) throw new ApiError(400, `invalid filter '${k}'`);
  if (since !== undefined && until !== undefined && until < since) throw new ApiError(400, 'since must be before until');
  // Headers at once: the docker CLI waits for them before it shows anything.
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.flushHeaders();
  const stop = new AbortController();
  res.once('close', () => stop.abort());
  req.shutdown?.addEventListener('abort', () => stop.abort());
  await streamEvents(req.ctx, { since, until, filters }, (e) => res.write(`${JSON.stringify(dockerMessage(e))}\n`), stop.signal);
  res.end();
}

async function df(req: ApiRequest, res: ServerResponse): Promise<void> {
  const { diskUsageReport } = await import('../../engine/system');
  sendJson(res, 200, await diskUsageReport(req.ctx));
}

export const routes: Route[] = [
  { method: 'GET', path: '/info', handler: info },
  { method: 'GET', path: '/events', handler: events },
  { method: 'GET', path: '/system/df', handler: df },
  { method: 'GET', path: '/_ping', handler: ping },
  { method: 'HEAD', path: '/_ping', handler: ping },
  { method: 'GET', path: '/version', handler: version },
];
