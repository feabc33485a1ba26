/**
 * The streaming container endpoints: logs, attach (hijacked), resize, exec (create, start
 * hijacked, resize, inspect), stats, archive (GET, HEAD, PUT) and export. Only HTTP here: the
 * framing Docker's clients read, the hijack, and the mapping of query parameters; the work is
 * the engine's (ts/engine/attach.ts, exec.ts, stats.ts; ts/container/logs.ts, archive.ts,
 * export.ts), which the CLI uses too.
 *
 * Without a terminal, output is multiplexed as Docker frames it: an 8-byte header (stream 1 for
 * stdout, 2 for stderr, three zero bytes, the payload's length as a big-endian uint32), then the
 * payload; with one, it is the raw bytes. A client that goes away stops whatever streamed to it;
 * the container (and an exec's process) keeps running, as with Docker.
 */
import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { BurrowError } from '../../errors';
import type { LogStream } from '../../container/logs';
import { Containers, type ContainerRecord } from '../../container/records';
import { ApiError, boolParam, errorResponse, noContent, readJson, sendJson } from '../http';
import type { ApiRequest, Route } from '../router';

const RAW_STREAM = 'application/vnd.docker.raw-stream';

/** Docker's stream frame header for `data` on `stream`. */
export function frameHeader(stream: LogStream, length: number): Buffer {
  const h = Buffer.alloc(8);
  h[0] = stream === 'stdout' ? 1 : 2;
  h.writeUInt32BE(length, 4);
  return h;
}

function container(req: ApiRequest): ContainerRecord {
  return new Containers(req.ctx.store).find(req.params.id!);
}

function intParam(q: URLSearchParams, name: string): number | undefined {
  const v = q.get(name);
  if (v === null || v === '') return undefined;
  if (!/^-?\d+$/.test(v)) throw new ApiError(400, `invalid value for ${name}: ${v}`);
  return Number(v);
}

/**
 * A writer for a stream's bytes with backpressure: resolves at once while the receiver keeps
 * up, else once it drained (or went away). `framed` adds Docker's header per write.
 */
function writer(out: NodeJS.WritableStream & { destroyed?: boolean }, framed: boolean): (s: LogStream, d: Buffer) => void | Promise<void> {
  return (s, d) => {
    if (out.destroyed || d.length === 0) return;
    const ok = framed ? (out.write(frameHeader(s, d.length)), out.write(d)) : out.write(d);
    if (ok) return;
    return new Promise<void>((resolve) => {
      const done = () => {
        out.removeListener('drain', done);
        out.removeListener('close', done);
        resolve();
      };
      out.once('drain', done);
      out.once('close', done);
    });
  };
}

/** An AbortSignal fired when the client's connection closes. */
function goneSignal(conn: { once(ev: 'close', f: () => void): unknown }): AbortSignal {
  const ac = new AbortController();
  conn.once('close', () => ac.abort());
  return ac.signal;
}

/**
 * `writer` for many small pieces (log lines): frames gathered into blocks of up to 64 KiB, sent
 * when a block fills or on `flush` (the log reader calls it once it has given all there is).
 */
function batchingWriter(out: NodeJS.WritableStream & { destroyed?: boolean }, framed: boolean): { write: (s: LogStream, d: Buffer) => void | Promise<void>; flush: () => void | Promise<void> } {
  const send = writer(out, false);
  let parts: Buffer[] = [];
  let size = 0;
  const flush = () => {
    if (!size) return;
    const b = Buffer.concat(parts, size);
    parts = [];
    size = 0;
    return send('stdout', b);
  };
  return {
    write(s, d) {
      if (framed) {
        parts.push(frameHeader(s, d.length));
        size += 8;
      }
      parts.push(d);
      size += d.length;
      if (size >= 64 << 10) return flush();
    },
    flush,
  };
}

// ---- logs

async function logs(req: ApiRequest, res: ServerResponse): Promise<void> {
  const q = req.query;
  const rec = container(req);
  const stdout = boolParam(q, 'stdout');
  const stderr = boolParam(q, 'stderr');
  if (!stdout && !stderr) throw new ApiError(400, 'Bad parameters: you must choose at least one stream');
  const tailRaw = q.get('tail');
  const tail = tailRaw === null || tailRaw === '' || tailRaw === 'all' ? undefined : Number(tailRaw);
  if (tail !== undefined && (!Number.isInteger(tail) || tail < 0)) throw new ApiError(400, `invalid value for tail: ${tailRaw}`);
  const since = q.get('since');
  const until = q.get('until');
  const { streamLogs } = await import('../../container/logs');
  if (rec.logDriver === 'none') throw new BurrowError('EUSAGE', `configured logging driver does not support reading (container ${rec.name} has the "none" log driver)`);
  const signal = goneSignal(res);
  res.writeHead(200, { 'Content-Type': RAW_STREAM });
  // The header now: a client following a quiet container sees the stream begin.
  res.flushHeaders();
  const out = batchingWriter(res, !rec.tty);
  await streamLogs(
    req.ctx.store,
    rec,
    {
      follow: boolParam(q, 'follow'),
      timestamps: boolParam(q, 'timestamps'),
      stdout,
      stderr,
      signal,
      ...(tail !== undefined ? { tail } : {}),
      ...(since && since !== '0' ? { since } : {}),
      ...(until && until !== '0' ? { until } : {}),
      flush: out.flush,
    },
    (s: LogStream, t: string) => out.write(s, Buffer.from(t)),
  );
  await out.flush();
  res.end();
}

// ---- hijacked connections (attach, exec start)

interface Hijack {
  /** The connection, both ways. */
  sock: Duplex;
  /** Whether the client may send input on it (an upgraded connection). */
  input: boolean;
}

const UPGRADED = `HTTP/1.1 101 UPGRADED\r\nContent-Type: ${RAW_STREAM}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n`;

/** Takes the connection over: 101 when the client asked for an upgrade, else 200 and the raw stream until we close. */
function hijack(socket: Duplex, head: Buffer | undefined): Hijack {
  if (head) {
    socket.write(UPGRADED);
    if (head.length) socket.unshift(head);
    return { sock: socket, input: true };
  }
  socket.write(`HTTP/1.1 200 OK\r\nContent-Type: ${RAW_STREAM}\r\nConnection: close\r\n\r\n`);
  return { sock: socket, input: false };
}

/** Ends a hijacked connection once what was written is sent. */
function endHijack(h: Hijack): void {
  if (!h.sock.destroyed) h.sock.end();
  // A client that never reads its end must not keep the connection (and the service) alive.
  setTimeout(() => h.sock.destroy(), 5000).unref();
}

/**
 * The body of an upgraded request: Node hands the upgrade over right after the headers, so the
 * body (exec start's JSON) is the first Content-Length bytes of the connection; what follows is
 * the client's input.
 */
async function upgradeBody(req: ApiRequest, socket: Duplex, head: Buffer): Promise<{ body: unknown; rest: Buffer }> {
  const n = Number(req.headers['content-length'] ?? 0);
  if (!Number.isInteger(n) || n < 0 || n > 1 << 20) throw new ApiError(400, 'invalid Content-Length');
  let buf = head;
  while (buf.length < n) {
    const chunk = await new Promise<Buffer | undefined>((resolve) => {
      const onData = (d: Buffer) => (cleanup(), resolve(d));
      const onEnd = () => (cleanup(), resolve(undefined));
      const cleanup = () => {
        socket.off('data', onData);
        socket.off('end', onEnd);
        socket.off('close', onEnd);
        socket.pause();
      };
      socket.on('data', onData);
      socket.once('end', onEnd);
      socket.once('close', onEnd);
      socket.resume();
    });
    if (!chunk) throw new ApiError(400, 'the request body ended early');
    buf = Buffer.concat([buf, chunk]);
  }
  const text = buf.subarray(0, n).toString('utf8');
  let body: unknown;
  try {
    body = n ? (JSON.parse(text) as unknown) : undefined;
  } catch (err) {
    throw new ApiError(400, `invalid JSON body: ${(err as Error).message}`);
  }
  return { body, rest: buf.subarray(n) };
}

/**
 * Runs a hijacking route either way: as an upgrade, or as a plain request whose socket is taken.
 * `run` gets the parsed JSON body and calls `take` once it is ready to stream; when it returns
 * without taking, the answer is an empty 200.
 */
function hijacking(run: (req: ApiRequest, body: unknown, take: () => Hijack) => Promise<void>): Required<Pick<Route, 'handler' | 'upgrade'>> {
  return {
    async handler(req, res) {
      const sock = res.socket;
      if (!sock) throw new ApiError(500, 'no connection to hijack');
      const body = await readJson(req.raw);
      let taken: Hijack | undefined;
      try {
        await run(req, body, () => (taken = hijack(sock, undefined)));
      } catch (err) {
        if (!taken) throw err;
        sock.destroy();
      }
      if (taken) endHijack(taken);
      else noContent(res, 200);
    },
    async upgrade(req, socket, head) {
      let taken: Hijack | undefined;
      try {
        const { body, rest } = await upgradeBody(req, socket, head);
        await run(req, body, () => (taken = hijack(socket, rest)));
      } catch (err) {
        if (!taken) {
          const { status, message } = errorResponse(err);
          throw new ApiError(status, message);
        }
        socket.destroy();
      }
      if (taken) endHijack(taken);
      else socket.end('HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    },
  };
}

const attach = hijacking(async (req, _body, take) => {
  const q = req.query;
  const rec = container(req);
  const { attachContainer, checkAttachable } = await import('../../engine/attach');
  const r = {
    stream: boolParam(q, 'stream'),
    logs: boolParam(q, 'logs'),
    stdin: boolParam(q, 'stdin'),
    stdout: boolParam(q, 'stdout'),
    stderr: boolParam(q, 'stderr'),
    ...(q.get('detachKeys') ? { detachKeys: q.get('detachKeys')! } : {}),
  };
  checkAttachable(req.ctx, rec, r);
  const h = take();
  await attachContainer(req.ctx, rec, r, { ...(h.input ? { input: h.sock } : {}), output: writer(h.sock, !rec.tty), signal: goneSignal(h.sock) });
});

function size(q: URLSearchParams): { rows: number; cols: number } {
  const rows = intParam(q, 'h');
  const cols = intParam(q, 'w');
  if (rows === undefined || cols === undefined || rows < 0 || cols < 0 || rows > 65535 || cols > 65535) throw new ApiError(400, 'resize: h and w must be given, as numbers from 0 to 65535');
  return { rows, cols };
}

async function resize(req: ApiRequest, res: ServerResponse): Promise<void> {
  const rec = container(req);
  const { rows, cols } = size(req.query);
  const { containerState } = await import('../../container/state');
  const dir = new Containers(req.ctx.store).dir(rec.id);
  if (containerState(rec, dir).status !== 'running') throw new BurrowError('ECONTAINER_STATE', `Container ${rec.id} is not running`);
  const { resizeTerminal } = await import('../../container/attach');
  // A container without a terminal has nothing to resize; Docker answers 200 there too.
  if (rec.tty) await resizeTerminal(dir, rows, cols);
  noContent(res, 200);
}

// ---- exec

function strings(v: unknown, what: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new ApiError(400, `${what} must be a list of strings`);
  return v as string[];
}

function bool(v: unknown, what: string): boolean {
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw new ApiError(400, `${what} must be a boolean`);
  return v;
}

function str(v: unknown, what: string): string {
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw new ApiError(400, `${what} must be a string`);
  return v;
}

function consoleSize(v: unknown): { consoleSize?: [number, number] } {
  if (v === undefined || v === null) return {};
  if (!Array.isArray(v) || v.length !== 2 || v.some((x) => !Number.isInteger(x) || (x as number) < 0 || (x as number) > 65535)) throw new ApiError(400, 'ConsoleSize must be [height, width]');
  const [h, w] = v as [number, number];
  return h && w ? { consoleSize: [h, w] } : {};
}

const EXEC_FIELDS = new Set(['AttachStdin', 'AttachStdout', 'AttachStderr', 'Tty', 'Env', 'Cmd', 'User', 'WorkingDir', 'Privileged', 'DetachKeys', 'ConsoleSize', 'Detach', 'Container']);
// `Container`: the container's id, which docker-py and docker-compose still send (older API versions had it in ExecConfig); the path names the container.

async function execCreate(req: ApiRequest, res: ServerResponse): Promise<void> {
  const body = await readJson(req.raw);
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApiError(400, 'exec: the body must be a JSON object (Docker\'s ExecConfig)');
  const b = body as Record<string, unknown>;
  for (const k of Object.keys(b)) if (!EXEC_FIELDS.has(k)) throw new ApiError(400, `exec: unknown field ${k}`);
  const rec = container(req);
  const { createExec } = await import('../../engine/exec');
  const e = createExec(req.ctx, rec, {
    attachStdin: bool(b.AttachStdin, 'AttachStdin'),
    attachStdout: bool(b.AttachStdout, 'AttachStdout'),
    attachStderr: bool(b.AttachStderr, 'AttachStderr'),
    tty: bool(b.Tty, 'Tty'),
    env: strings(b.Env, 'Env'),
    cmd: strings(b.Cmd, 'Cmd'),
    user: str(b.User, 'User'),
    workingDir: str(b.WorkingDir, 'WorkingDir'),
    privileged: bool(b.Privileged, 'Privileged'),
    detachKeys: str(b.DetachKeys, 'DetachKeys'),
    ...consoleSize(b.ConsoleSize),
  });
  sendJson(res, 201, { Id: e.ID });
}

function execStartBody(body: unknown): { detach: boolean; tty: boolean | undefined } {
  if (body === undefined) return { detach: false, tty: undefined };
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApiError(400, 'exec start: the body must be a JSON object');
  const b = body as Record<string, unknown>;
  return { detach: bool(b.Detach, 'Detach'), tty: b.Tty === undefined || b.Tty === null ? undefined : bool(b.Tty, 'Tty') };
}

const execStart = hijacking(async (req, body, take) => {
  const { findExec, runExecInstance, startExecDetachedInstance } = await import('../../engine/exec');
  const e = findExec(req.ctx, req.params.id!);
  const o = execStartBody(body);
  const tty = o.tty ?? e.ProcessConfig.tty;
  // Detached: started, an empty 200, nothing to relay.
  if (o.detach) return startExecDetachedInstance(req.ctx, e, tty);
  if (e.Started) throw new BurrowError('ECONTAINER_STATE', `exec instance ${e.ID} has already been started`);
  const h = take();
  await runExecInstance(req.ctx, e, tty, { ...(h.input ? { input: h.sock } : {}), output: writer(h.sock, !tty), signal: goneSignal(h.sock) });
});

async function execResize(req: ApiRequest, res: ServerResponse): Promise<void> {
  const { findExec, resizeExec } = await import('../../engine/exec');
  const e = findExec(req.ctx, req.params.id!);
  const { rows, cols } = size(req.query);
  if (!e.Running) throw new BurrowError('ECONTAINER_STATE', `exec ${e.ID} is not running`);
  // Without a terminal (or one another service holds) there is nothing to resize; Docker answers 201 too.
  resizeExec(e.ID, rows, cols);
  noContent(res, 201);
}

async function execInspect(req: ApiRequest, res: ServerResponse): Promise<void> {
  const { findExec } = await import('../../engine/exec');
  const e = findExec(req.ctx, req.params.id!);
  const { Env: _env, WorkingDir: _wd, Started: _s, ...docker } = e;
  sendJson(res, 200, docker);
}

// ---- stats

async function stats(req: ApiRequest, res: ServerResponse): Promise<void> {
  const rec = container(req);
  const stream = boolParam(req.query, 'stream', true);
  const oneShot = boolParam(req.query, 'one-shot');
  if (oneShot && stream) throw new ApiError(400, 'cannot have stream=true and one-shot=true');
  const { statsPoint, dockerStats } = await import('../../engine/stats');
  const first = await statsPoint(req.ctx, rec);
  const signal = goneSignal(res);
  const sleep = () => new Promise<void>((resolve) => {
    const t = setTimeout(resolve, 1000);
    signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });
  if (!stream) {
    if (oneShot) return sendJson(res, 200, dockerStats(rec, first));
    // Two samples a second apart: `docker stats --no-stream` computes CPU % from their difference.
    await sleep();
    return sendJson(res, 200, dockerStats(rec, await statsPoint(req.ctx, rec), first));
  }
  res.writeHead(200, { 'Content-Type': 'application/json' });
  const write = writer(res, false);
  let pre: typeof first | undefined;
  let cur = first;
  const { containerState } = await import('../../container/state');
  const dir = new Containers(req.ctx.store).dir(rec.id);
  for (;;) {
    await write('stdout', Buffer.from(`${JSON.stringify(dockerStats(rec, cur, pre))}\n`));
    await sleep();
    if (signal.aborted) return;
    if (containerState(rec, dir).status !== 'running') break;
    pre = cur;
    try {
      cur = await statsPoint(req.ctx, rec);
    } catch {
      break; // it stopped between the check and the sample
    }
  }
  res.end();
}

// ---- archive, export

function statHeader(st: import('../../container/archive').PathStat): string {
  return Buffer.from(JSON.stringify(st)).toString('base64');
}

async function archiveHead(req: ApiRequest, res: ServerResponse): Promise<void> {
  const rec = container(req);
  const { statPath } = await import('../../container/archive');
  const st = statPath(req.ctx.store, rec, req.query.get('path') ?? '');
  res.writeHead(200, { 'X-Docker-Container-Path-Stat': statHeader(st), 'Content-Type': 'application/x-tar', 'Content-Length': 0 });
  res.end();
}

async function archiveGet(req: ApiRequest, res: ServerResponse): Promise<void> {
  const rec = container(req);
  const { archiveOut } = await import('../../container/archive');
  const signal = goneSignal(res);
  await archiveOut(
    req.ctx.store,
    rec,
    req.query.get('path') ?? '',
    (st) => {
      res.writeHead(200, { 'X-Docker-Container-Path-Stat': statHeader(st), 'Content-Type': 'application/x-tar' });
      return res;
    },
    signal,
  );
}

async function archivePut(req: ApiRequest, res: ServerResponse): Promise<void> {
  const rec = container(req);
  const { archiveIn } = await import('../../container/archive');
  await archiveIn(req.ctx.store, await req.ctx.settings(), rec, req.query.get('path') ?? '', req.raw, { noOverwriteDirNonDir: boolParam(req.query, 'noOverwriteDirNonDir'), copyUIDGID: boolParam(req.query, 'copyUIDGID') });
  noContent(res, 200);
}

async function exportRoute(req: ApiRequest, res: ServerResponse): Promise<void> {
  const rec = container(req);
  const { exportContainer } = await import('../../container/export');
  const signal = goneSignal(res);
  res.writeHead(200, { 'Content-Type': 'application/x-tar' });
  await exportContainer(req.ctx.store, rec, res, {}, signal);
}

export const routes: Route[] = [
  { method: 'GET', path: '/containers/{id}/logs', handler: logs },
  { method: 'POST', path: '/containers/{id}/attach', ...attach },
  { method: 'POST', path: '/containers/{id}/resize', handler: resize },
  { method: 'POST', path: '/containers/{id}/exec', handler: execCreate },
  { method: 'POST', path: '/exec/{id}/start', ...execStart },
  { method: 'POST', path: '/exec/{id}/resize', handler: execResize },
  { method: 'GET', path: '/exec/{id}/json', handler: execInspect },
  { method: 'GET', path: '/containers/{id}/stats', handler: stats },
  { method: 'HEAD', path: '/containers/{id}/archive', handler: archiveHead },
  { method: 'GET', path: '/containers/{id}/archive', handler: archiveGet },
  { method: 'PUT', path: '/containers/{id}/archive', handler: archivePut },
  { method: 'GET', path: '/containers/{id}/export', handler: exportRoute },
];
