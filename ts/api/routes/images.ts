/**
 * Image routes of the Engine API (1.41) and `/auth`: Docker's JSON in and out, the work done by
 * ts/engine/images.ts (the same functions as the CLI's). Pulls and pushes answer with Docker's
 * JSON progress stream (ts/api/progress-json.ts); an error before the stream started is an HTTP
 * status with Docker's `{"message"}` body, one after it an `errorDetail` line. A client that goes
 * away cancels a pull or a load: image records are written after their content, so nothing
 * half-written becomes an image.
 */
import type { ServerResponse } from 'node:http';
import { PassThrough } from 'node:stream';
import { finished } from 'node:stream/promises';
import { BurrowError } from '../../errors';
import type { AuthConfig } from '../../engine/images';
import { ApiError, boolParam, filtersParam, readJson, sendJson } from '../http';
import { cancelOnClose, jsonLines, streamed } from '../json-stream';
import { DockerProgress } from '../progress-json';
import type { ApiRequest, Route } from '../router';

type Engine = typeof import('../../engine/images');
const engine = (): Promise<Engine> => import('../../engine/images');

/** Docker's messages for what the engine reports in the CLI's words. */
async function dockerErrors<T>(run: () => Promise<T>, notFound?: string): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof BurrowError && err.code === 'EIMAGE_NOT_FOUND') throw new ApiError(404, notFound ?? err.message.replace(/^no such image: /, 'No such image: '));
    const { ImageConflictError } = await engine();
    if (err instanceof ImageConflictError) throw new ApiError(409, err.dockerMessage);
    throw err;
  }
}

/** `X-Registry-Auth`: base64 (URL-safe or not) JSON of Docker's AuthConfig; absent or `{}`: none. */
export function registryAuth(header: string | string[] | undefined): AuthConfig | undefined {
  const v = Array.isArray(header) ? header[0] : header;
  if (!v) return undefined;
  let o: unknown;
  try {
    o = JSON.parse(Buffer.from(v, 'base64').toString('utf8'));
  } catch {
    throw new ApiError(400, 'invalid X-Registry-Auth header: want base64-encoded JSON');
  }
  if (typeof o !== 'object' || o === null) throw new ApiError(400, 'invalid X-Registry-Auth header: want a JSON object');
  const a = o as Record<string, unknown>;
  const str = (k: string): string | undefined => (typeof a[k] === 'string' && a[k] !== '' ? a[k] : undefined);
  let username = str('username');
  let password = str('password');
  const auth = str('auth');
  if (!username && auth) {
    const plain = Buffer.from(auth, 'base64').toString('utf8');
    const i = plain.indexOf(':');
    if (i > 0) {
      username = plain.slice(0, i);
      password = plain.slice(i + 1);
    }
  }
  const identityToken = str('identitytoken');
  const serverAddress = str('serveraddress');
  if (!username && !identityToken) return undefined;
  return { ...(username ? { username } : {}), ...(password ? { password } : {}), ...(identityToken ? { identityToken } : {}), ...(serverAddress ? { serverAddress } : {}) };
}

// ---- handlers ------------------------------------------------------------------------------

async function list(req: ApiRequest, res: ServerResponse): Promise<void> {
  const { listImages, imageFiltersFrom, shownTag } = await engine();
  boolParam(req.query, 'all');
  boolParam(req.query, 'digests');
  const f = filtersParam(req.query);
  // API < 1.25: `filter=REFERENCE`.
  const legacy = req.query.get('filter');
  if (legacy) f.reference = [...(f.reference ?? []), legacy];
  const images = await listImages(req.ctx, imageFiltersFrom(f));
  sendJson(
    res,
    200,
    images.map((i) => {
      const tags = [...i.repoTags].sort().map(shownTag); // Docker's order: by full name
      const digests = i.repoDigests.map(shownTag);
      const dangling = !tags.length && !digests.length;
      return {
        Containers: -1,
        Created: Math.floor((Date.parse(i.created ?? i.record.pulledAt) || 0) / 1000),
        Id: i.id,
        Labels: Object.keys(i.labels).length ? i.labels : null,
        ParentId: '',
        RepoDigests: dangling ? ['<none>@<none>'] : digests,
        RepoTags: dangling ? ['<none>:<none>'] : tags,
        SharedSize: -1,
        Size: i.size,
        VirtualSize: i.size,
      };
    }),
  );
}

/**
 * A warning of the engine (the store's squashfs of an image that could not be made) as a line
 * of a pull, load or import stream: a status message, as Docker's daemon sends its notes
 * (progress.Message: `{"status": "…"}`), which the docker CLI prints and docker-py yields. They
 * come before the stream's last line; the import and load ones once the work is done (their
 * response starts then).
 */
function warningMessage(m: string): { status: string } {
  return { status: `WARNING: ${m}` };
}

/** `fromImage` and `tag` as one reference (a tag that is a digest pins it). */
export function pullReference(fromImage: string, tag: string | null): string {
  if (!tag) return fromImage;
  const last = fromImage.slice(fromImage.lastIndexOf('/') + 1);
  if (fromImage.includes('@') || last.includes(':')) return fromImage;
  return /^[a-z0-9]+:[a-f0-9]{32,}$/.test(tag) ? `${fromImage}@${tag}` : `${fromImage}:${tag}`;
}

async function create(req: ApiRequest, res: ServerResponse): Promise<void> {
  const fromImage = req.query.get('fromImage');
  const fromSrc = req.query.get('fromSrc');
  if (fromSrc !== null) return importBody(req, res, fromSrc);
  if (!fromImage) throw new ApiError(400, 'fromImage or fromSrc is required');
  const { pullImage } = await engine();
  const { parseReference } = await import('../../image/reference');
  const refStr = pullReference(fromImage, req.query.get('tag'));
  let ref;
  try {
    ref = parseReference(refStr);
  } catch (err) {
    throw new ApiError(400, `invalid reference format: ${(err as Error).message}`);
  }
  const auth = registryAuth(req.headers['x-registry-auth']);
  const platform = req.query.get('platform');
  const ac = cancelOnClose(req, res);
  const tr = new DockerProgress(ref.familiar());
  const out = jsonLines(res);
  await streamed(res, out, async () => {
    const r = await pullImage(
      req.ctx,
      { reference: refStr, ...(platform ? { platform } : {}), ...(auth ? { auth } : {}), signal: ac.signal },
      { progress: (e) => tr.translate(e).forEach((m) => out.write(m)), warn: (m) => out.write(warningMessage(m)) },
    );
    out.write(tr.final(r.upToDate));
  });
}

/**
 * `POST /images/create?fromSrc=-`: the body is a root filesystem tarball; `fromSrc=URL` (http or
 * https, as `docker import URL` sends it): the tarball is fetched by the service, streamed into
 * the import as it arrives.
 */
async function importBody(req: ApiRequest, res: ServerResponse, fromSrc: string): Promise<void> {
  let stream: AsyncIterable<Buffer> = req.raw;
  if (fromSrc !== '-') {
    if (!/^https?:\/\//i.test(fromSrc)) throw new ApiError(400, `fromSrc ${fromSrc}: want - (the tarball in the request body) or an http(s) URL`);
    const got = await fetch(fromSrc).catch((e: Error) => {
      throw new ApiError(500, `Get "${fromSrc}": ${(e.cause as Error | undefined)?.message ?? e.message}`);
    });
    if (!got.ok || !got.body) throw new ApiError(500, `Get "${fromSrc}": ${got.status} ${got.statusText}`);
    const body = got.body as AsyncIterable<Uint8Array>;
    stream = (async function* () {
      for await (const c of body) yield Buffer.from(c.buffer, c.byteOffset, c.byteLength);
    })();
  }
  const { importImage } = await engine();
  const repo = req.query.get('repo');
  const tag = req.query.get('tag');
  const message = req.query.get('message');
  const changes = req.query.getAll('changes').filter(Boolean);
  const reference = repo ? (tag ? `${repo}:${tag}` : repo) : undefined;
  const warnings: string[] = [];
  const r = await importImage(req.ctx, { source: { stream, name: fromSrc }, ...(reference ? { reference } : {}), changes, ...(message ? { message } : {}) }, { warn: (m) => warnings.push(m) });
  const out = jsonLines(res);
  for (const w of warnings) out.write(warningMessage(w));
  out.write({ status: r.id });
  res.end();
}

async function inspect(req: ApiRequest, res: ServerResponse): Promise<void> {
  const name = req.params.name!;
  const { inspectImage, shownTag } = await engine();
  const o = await dockerErrors(() => inspectImage(req.ctx, name));
  const cfg = (o.Config ?? {}) as Record<string, unknown>;
  sendJson(res, 200, {
    Id: o.Id,
    RepoTags: o.RepoTags,
    RepoDigests: ((o.RepoDigests ?? []) as string[]).map(shownTag),
    Parent: '',
    Comment: '',
    Created: o.Created,
    Container: '',
    ContainerConfig: {},
    DockerVersion: '',
    Author: '',
    Config: { ...cfg, Labels: cfg.Labels ?? null },
    Architecture: o.Architecture,
    ...(o.Variant ? { Variant: o.Variant } : {}),
    Os: o.Os,
    Size: o.Size,
    VirtualSize: o.Size,
    GraphDriver: o.GraphDriver,
    RootFS: o.RootFS,
    Metadata: o.Metadata,
  });
}

async function history(req: ApiRequest, res: ServerResponse): Promise<void> {
  const name = req.params.name!;
  const { imageHistory, shownTag } = await engine();
  const h = await dockerErrors(() => imageHistory(req.ctx, name));
  const rows = h.entries
    .map((e) => ({ Id: '<missing>', Created: Math.floor((Date.parse(e.created ?? '') || 0) / 1000), CreatedBy: e.createdBy, Tags: null as string[] | null, Size: e.size, Comment: e.comment }))
    .reverse();
  if (rows[0]) {
    rows[0].Id = h.id;
    rows[0].Tags = h.repoTags.length ? h.repoTags.map(shownTag) : null;
  }
  sendJson(res, 200, rows);
}

async function tag(req: ApiRequest, res: ServerResponse): Promise<void> {
  const name = req.params.name!;
  const repo = req.query.get('repo');
  if (!repo) throw new ApiError(400, 'repo is required');
  const t = req.query.get('tag');
  const { tagImage } = await engine();
  await dockerErrors(() => Promise.resolve(tagImage(req.ctx, name, t ? `${repo}:${t}` : repo)));
  res.writeHead(201);
  res.end();
}

async function push(req: ApiRequest, res: ServerResponse): Promise<void> {
  const name = req.params.name!;
  const { pushImage, repositoryTags } = await engine();
  const t = req.query.get('tag');
  const last = name.slice(name.lastIndexOf('/') + 1);
  // One tag, or (as Docker) every local tag of the repository.
  const refs = t ? [`${name}:${t}`] : last.includes(':') ? [name] : repositoryTags(req.ctx, name);
  if (!refs.length) throw new ApiError(404, `An image does not exist locally with the tag: ${name}`);
  const auth = registryAuth(req.headers['x-registry-auth']);
  const ac = cancelOnClose(req, res);
  const out = jsonLines(res);
  await streamed(res, out, async () => {
    for (const ref of refs) {
      const tr = new DockerProgress(ref);
      await dockerErrors(() => pushImage(req.ctx, { image: ref, ...(auth ? { auth } : {}), signal: ac.signal }, { progress: (e) => tr.translate(e).forEach((m) => out.write(m)) }), `An image does not exist locally with the tag: ${ref}`);
    }
  });
}

async function remove(req: ApiRequest, res: ServerResponse): Promise<void> {
  const name = req.params.name!;
  const { removeImage } = await engine();
  const r = await dockerErrors(() => removeImage(req.ctx, name, { force: boolParam(req.query, 'force'), noprune: boolParam(req.query, 'noprune') }));
  sendJson(res, 200, r.items);
}

/** A docker-archive of the images as the body; an unknown image is a 404 before any byte. */
async function save(req: ApiRequest, res: ServerResponse, names: string[]): Promise<void> {
  if (!names.length) throw new ApiError(400, 'names is required');
  const { saveImages } = await engine();
  res.setHeader('Content-Type', 'application/x-tar');
  // Through a pass-through: the head goes with the first byte (an unknown image is still a 404),
  // and a client that goes away ends the writer with an error instead of leaving it waiting for
  // a drain that never comes.
  const pass = new PassThrough();
  pass.pipe(res);
  res.once('close', () => {
    if (!res.writableFinished) pass.destroy(new BurrowError('ECANCELED', 'the client went away'));
  });
  try {
    await dockerErrors(() => saveImages(req.ctx, names, pass, 'docker-archive'));
  } catch (err) {
    pass.unpipe(res);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    throw err;
  }
  pass.end();
  await finished(res).catch(() => undefined);
}

async function saveOne(req: ApiRequest, res: ServerResponse): Promise<void> {
  return save(req, res, [req.params.name!]);
}

async function saveMany(req: ApiRequest, res: ServerResponse): Promise<void> {
  return save(req, res, req.query.getAll('names').flatMap((n) => n.split(',')).filter(Boolean));
}

async function load(req: ApiRequest, res: ServerResponse): Promise<void> {
  const quiet = boolParam(req.query, 'quiet');
  const { loadImages, loadedLines } = await engine();
  const warnings: string[] = [];
  const r = await loadImages(req.ctx, req.raw, 'the request body', { warn: (m) => warnings.push(m) });
  const out = jsonLines(res);
  for (const w of warnings) out.write(warningMessage(w));
  for (const line of loadedLines(r, false)) out.write({ stream: line });
  if (!r.images.length && quiet) out.write({ stream: '' });
  res.end();
}

async function prune(req: ApiRequest, res: ServerResponse): Promise<void> {
  const f = filtersParam(req.query);
  const filters: string[] = [];
  let all = false;
  for (const [k, vs] of Object.entries(f)) {
    for (const v of vs) {
      if (k === 'dangling') all = /^(false|0)$/i.test(v);
      else if (k === 'until' || k === 'label' || k === 'label!') filters.push(`${k}=${v}`);
      else throw new ApiError(400, `invalid filter '${k}'`);
    }
  }
  const { pruneImages, shownTag } = await engine();
  const r = await pruneImages(req.ctx, { all, filters });
  sendJson(res, 200, {
    ImagesDeleted: r.images.flatMap((i) => [...i.untagged.map((t) => ({ Untagged: shownTag(t) })), { Deleted: i.id }]),
    SpaceReclaimed: r.bytes,
  });
}

/** `POST /auth`: checks the credentials against the registry as `docker login` does; stores nothing. */
async function auth(req: ApiRequest, res: ServerResponse): Promise<void> {
  const body = await readJson(req.raw);
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApiError(400, 'want a JSON object: {"username", "password", "serveraddress"}');
  const b = body as Record<string, unknown>;
  for (const k of ['username', 'password', 'serveraddress', 'email', 'identitytoken', 'registrytoken', 'auth']) {
    // docker-py sends null for what it was not given (email).
    if (b[k] !== undefined && b[k] !== null && typeof b[k] !== 'string') throw new ApiError(400, `${k} must be a string`);
  }
  const username = (b.username as string | undefined) ?? '';
  const password = (b.password as string | undefined) ?? '';
  if (!username || !password) throw new ApiError(400, 'username and password are required');
  const { checkLogin } = await engine();
  await checkLogin({ serverAddress: (b.serveraddress as string | undefined) || 'https://index.docker.io/v1/', username, password });
  sendJson(res, 200, { Status: 'Login Succeeded', IdentityToken: '' });
}

export const routes: Route[] = [
  { method: 'GET', path: '/images/json', handler: list },
  { method: 'POST', path: '/images/create', handler: create },
  { method: 'GET', path: '/images/get', handler: saveMany },
  { method: 'POST', path: '/images/load', handler: load },
  { method: 'POST', path: '/images/prune', handler: prune },
  { method: 'GET', path: '/images/{name*}/json', handler: inspect },
  { method: 'GET', path: '/images/{name*}/history', handler: history },
  { method: 'GET', path: '/images/{name*}/get', handler: saveOne },
  { method: 'POST', path: '/images/{name*}/tag', handler: tag },
  { method: 'POST', path: '/images/{name*}/push', handler: push },
  { method: 'DELETE', path: '/images/{name*}', handler: remove },
  { method: 'POST', path: '/auth', handler: auth },
];
