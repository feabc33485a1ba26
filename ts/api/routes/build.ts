/**
 * `POST /build` (the classic builder's endpoint, which the docker 20.10 CLI without BuildKit,
 * docker-py and docker-compose 1.29 use) and `POST /build/prune`, over the engine's build
 * (ts/engine/build.ts). The body is the context as a tar (plain, gzip or zstd), extracted by the
 * layer unpacker (ts/build/context-tar.ts). The answer is Docker's JSON stream: `stream` lines
 * with the steps and the RUN output, `aux` with the image id, and the `Successfully built` /
 * `Successfully tagged` lines that docker-py and compose read the result from.
 */
import type { ServerResponse } from 'node:http';
import { BurrowError } from '../../errors';
import type { BuildEvent, BuildRequest } from '../../engine/build';
import { ApiError, boolParam, filtersParam, sendJson } from '../http';
import { cancelOnClose, jsonLines, streamed } from '../json-stream';
import type { ApiRequest, Route } from '../router';

/** A query parameter holding a JSON object of strings (`buildargs`, `labels`). */
export function jsonMapParam(q: URLSearchParams, name: string): Record<string, string> {
  const v = q.get(name);
  if (!v) return {};
  let o: unknown;
  try {
    o = JSON.parse(v);
  } catch {
    throw new ApiError(400, `${name}: want a JSON object`);
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new ApiError(400, `${name}: want a JSON object`);
  const out: Record<string, string> = {};
  // docker-py sends null for an argument given without a value: the builder then takes it from
  // the environment, which a service has none of; Docker leaves it unset.
  for (const [k, x] of Object.entries(o)) {
    if (x === null) continue;
    if (typeof x !== 'string') throw new ApiError(400, `${name}: the value of ${k} must be a string`);
    out[k] = x;
  }
  return out;
}

/** The request's query as the engine's BuildRequest (the context directory filled in later). */
export function buildRequestOf(q: URLSearchParams): Omit<BuildRequest, 'contextDir'> {
  if (q.get('remote')) throw new ApiError(400, 'remote contexts are not supported: send the context as the request body');
  const net = q.get('networkmode') || 'default';
  const network = net === 'bridge' ? 'default' : net;
  if (network !== 'default' && network !== 'none' && network !== 'host') throw new ApiError(400, `networkmode ${net}: want default, bridge, none or host`);
  const pullParam = q.get('pull');
  const dockerfile = q.get('dockerfile');
  return {
    ...(dockerfile ? { dockerfile: { path: dockerfile } } : {}),
    tags: q.getAll('t').filter(Boolean),
    buildArgs: jsonMapParam(q, 'buildargs'),
    ...(q.get('target') ? { target: q.get('target')! } : {}),
    noCache: boolParam(q, 'nocache'),
    // docker-py sends pull=True, the CLI pull=1; Docker takes any non-empty value but "0"/"false".
    pull: pullParam && !/^(0|false)$/i.test(pullParam) ? 'always' : 'missing',
    ...(q.get('platform') ? { platform: q.get('platform')! } : {}),
    labels: jsonMapParam(q, 'labels'),
    secrets: [],
    network,
    outputs: [{ type: 'image' }],
  };
}

const short = (id: string): string => id.replace(/^sha256:/, '').slice(0, 12);

/** One build event as the classic builder's `stream` text. */
export function streamText(e: BuildEvent): string | undefined {
  switch (e.type) {
    case 'step':
      return `Step ${e.index}/${e.total} : ${e.instruction}\n`;
    case 'cached':
      return ' ---> Using cache\n';
    case 'output':
      return e.data.toString('utf8');
    case 'pull':
      return `${e.message}\n`;
    default:
      return undefined;
  }
}

async function build(req: ApiRequest, res: ServerResponse): Promise<void> {
  const request = buildRequestOf(req.query);
  const quiet = boolParam(req.query, 'q');
  const ac = cancelOnClose(req, res);
  const out = jsonLines(res);
  const [{ extractContextTar }, { build: runBuild }] = await Promise.all([import('../../build/context-tar'), import('../../engine/build')]);
  const settings = await req.ctx.settings();
  const context = await extractContextTar(req.ctx.store, settings, req.raw, ac.signal);
  const { BuildStepError } = await import('../../build/executor');
  try {
    await streamed(res, out, async () => {
      const report = await runBuild(
        req.ctx,
        { ...request, contextDir: context.dir },
        {
          warn: (m) => out.write({ stream: `[Warning] ${m}\n` }),
          event: (e) => {
            const text = quiet ? undefined : streamText(e);
            if (text) out.write({ stream: text });
          },
        },
        ac.signal,
      ).catch((err: unknown) => {
        // dockerd's words, which scripts around `docker build` match.
        if (err instanceof BuildStepError) throw new BurrowError('EBUILD_STEP', `The command '${err.command.join(' ')}' returned a non-zero code: ${err.status}`);
        throw err;
      });
      if (!report.imageId) return;
      out.write({ aux: { ID: report.imageId } });
      if (quiet) {
        out.write({ stream: `${report.imageId}\n` });
        return;
      }
      out.write({ stream: `Successfully built ${short(report.imageId)}\n` });
      for (const t of report.tags) out.write({ stream: `Successfully tagged ${t}\n` });
    });
  } finally {
    await context.cleanup();
  }
}

/** `POST /build/prune`: the build cache (`all`: its RUN cache mounts too; filters: until). */
async function prune(req: ApiRequest, res: ServerResponse): Promise<void> {
  const f = filtersParam(req.query);
  let until: number | undefined;
  const { parseUntil } = await import('../../storage/prune');
  for (const [k, vs] of Object.entries(f)) {
    if (k !== 'until') throw new ApiError(400, `invalid filter '${k}'`);
    for (const v of vs) until = parseUntil(v);
  }
  const { pruneBuildCache } = await import('../../build/cache');
  const r = await pruneBuildCache(req.ctx.store, await req.ctx.settings(), { all: boolParam(req.query, 'all'), ...(until !== undefined ? { until } : {}) });
  sendJson(res, 200, { CachesDeleted: r.entries, SpaceReclaimed: r.bytes });
}

export const routes: Route[] = [
  { method: 'POST', path: '/build', handler: build },
  { method: 'POST', path: '/build/prune', handler: prune },
];
