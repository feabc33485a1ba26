/** System routes: `_ping` and `version` (the system helper adds info, events, df, auth). */
import os from 'node:os';
import type { ServerResponse } from 'node:http';
import { sendJson } from '../http';
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

const goArch = (a: string): string => ({ x64: 'amd64', ia32: '386' })[a] ?? a;

async function version(_req: ApiRequest, res: ServerResponse): Promise<void> {
  const { versionInfo } = await import('../../cli/commands/version');
  const v = versionInfo();
  const rt = v.Runtime;
  sendJson(res, 200, {
    Platform: { Name: 'Burrow Engine' },
    Components: [
      { Name: 'Engine', Version: VERSION, Details: { ApiVersion: API_VERSION, MinAPIVersion: MIN_API_VERSION, GitCommit: v.Client.GitCommit, NodeVersion: process.version, Os: 'linux', Arch: goArch(process.arch), KernelVersion: os.release() } },
      ...('Error' in rt ? [] : [{ Name: 'burrow-runtime', Version: rt.Version, Details: { OciVersion: rt.OciVersion, Path: rt.Path } }]),
    ],
    Version: VERSION,
    ApiVersion: API_VERSION,
    MinAPIVersion: MIN_API_VERSION,
    GitCommit: v.Client.GitCommit,
    GoVersion: process.version,
    Os: 'linux',
    Arch: goArch(process.arch),
    KernelVersion: os.release(),
    BuildTime: v.Client.BuildTime,
  });
}

export const routes: Route[] = [
  { method: 'GET', path: '/_ping', handler: ping },
  { method: 'HEAD', path: '/_ping', handler: ping },
  { method: 'GET', path: '/version', handler: version },
];
