/**
 * `burrow system service`: the Docker Engine API (1.41) over a unix socket (default
 * `$runroot/burrow.sock`), a socket systemd passed (LISTEN_FDS), or loopback TCP when asked.
 * Every request runs the same engine functions as the CLI (ts/engine); the service holds no state
 * of its own, so containers outlive it (each is under its monitor) and a restarted service sees
 * the same store. With `--time N` it exits after N idle seconds (podman's default 5): nothing runs
 * when nobody uses it, and socket activation starts it again on the next request.
 */
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { BurrowError } from '../errors';
import { enableDirCache } from '../container/dir-cache';
import type { EngineContext } from '../engine/context';
import { ApiError, sendError, sendJson } from './http';
import { Router, VERSION_PREFIX, type ApiRequest, type Route } from './router';
import { API_VERSION, MIN_API_VERSION, serverHeader } from './version';

export type Listen = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number } | { kind: 'fd'; fd: number };

export interface ServiceOptions {
  listen: Listen[];
  /** Idle seconds before the service exits; 0 = never. */
  idleSeconds: number;
  /** Called once the service stopped (idle, SIGTERM): the CLI exits with this status. */
  log?: (line: string) => void;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

/**
 * A service URI: `unix:///path`, `tcp://HOST:PORT` (loopback unless `allowRemote`), or `fd://`
 * for sockets systemd passed. No URI: socket activation when LISTEN_FDS is for this process,
 * else the default socket.
 */
export function parseListen(uri: string | undefined, runRoot: string, allowRemote = false, env: NodeJS.ProcessEnv = process.env, pid = process.pid): Listen[] {
  const activated = Number(env.LISTEN_PID) === pid ? Number(env.LISTEN_FDS ?? 0) : 0;
  if (!uri || uri === 'fd://') {
    if (activated > 0) return Array.from({ length: activated }, (_, i) => ({ kind: 'fd' as const, fd: 3 + i }));
    if (uri === 'fd://') throw new BurrowError('EUSAGE', 'fd:// given but no socket was passed (LISTEN_FDS and LISTEN_PID are not set for this process)', 'start the service from its systemd socket unit, or give a unix:// or tcp:// URI');
    return [{ kind: 'unix', path: path.join(runRoot, 'burrow.sock') }];
  }
  if (uri.startsWith('unix://')) {
    const p = uri.slice('unix://'.length);
    if (!p) throw new BurrowError('EUSAGE', `invalid service URI ${uri}: want unix:///PATH`);
    return [{ kind: 'unix', path: path.resolve(p) }];
  }
  const m = /^tcp:\/\/(\[[^\]]+\]|[^:/]+):(\d+)\/?$/.exec(uri);
  if (m) {
    const host = m[1]!.replace(/^\[|\]$/g, '');
    const port = Number(m[2]);
    if (port > 65535) throw new BurrowError('EUSAGE', `invalid port in ${uri}`);
    if (!LOOPBACK.has(host) && !allowRemote)
      throw new BurrowError('EUSAGE', `refusing to serve the API on ${host}: anyone who reaches it runs containers as you`, 'use a loopback address (tcp://127.0.0.1:PORT), or pass --allow-remote if you really mean it');
    return [{ kind: 'tcp', host, port }];
  }
  throw new BurrowError('EUSAGE', `invalid service URI ${uri}: want unix:///PATH, tcp://127.0.0.1:PORT or fd://`);
}

/** All the API's routes; each module loads its heavy code only when a request needs it. */
async function allRoutes(): Promise<Route[]> {
  const mods = await Promise.all([
    import('./routes/system'),
    import('./routes/containers'),
    import('./routes/streams'),
    import('./routes/images'),
    import('./routes/volumes'),
    import('./routes/networks'),
    import('./routes/build'),
  ]);
  return mods.flatMap((m) => m.routes);
}

function apiRequest(req: http.IncomingMessage, ctx: EngineContext, shutdown: AbortSignal): { api: Omit<ApiRequest, 'params'>; pathname: string } {
  const url = new URL(req.url ?? '/', 'http://burrow');
  let pathname = url.pathname.replace(/\/+$/, '') || '/';
  let version: string | undefined;
  const v = VERSION_PREFIX.exec(pathname);
  if (v) {
    version = v[1]!;
    pathname = pathname.slice(v[0].length);
    if (versionLess(API_VERSION, version)) throw new ApiError(400, `client version ${version} is too new. Maximum supported API version is ${API_VERSION}`);
    if (versionLess(version, MIN_API_VERSION)) throw new ApiError(400, `client version ${version} is too old. Minimum supported API version is ${MIN_API_VERSION}, please upgrade your client to a newer version`);
  }
  return { api: { method: req.method ?? 'GET', path: pathname, version, query: url.searchParams, headers: req.headers, raw: req, ctx, shutdown }, pathname };
}

function versionLess(a: string, b: string): boolean {
  const [a1 = 0, a2 = 0] = a.split('.').map(Number);
  const [b1 = 0, b2 = 0] = b.split('.').map(Number);
  return a1 < b1 || (a1 === b1 && a2 < b2);
}

/** Headers Docker sends on every answer; clients negotiate the version from Api-Version. */
function commonHeaders(res: http.ServerResponse): void {
  res.setHeader('Api-Version', API_VERSION);
  res.setHeader('Docker-Experimental', 'false');
  res.setHeader('Ostype', 'linux');
  res.setHeader('Server', serverHeader());
}

export class Service {
  private readonly servers: net.Server[] = [];
  private active = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  /** Socket files this service made, with their inode: at the end only a file still ours is removed. */
  private readonly ownedSockets: { path: string; ino: number }[] = [];
  private readonly hijacked = new Set<Duplex>();
  /** Aborted by stop(): endless streams (events, logs -f) end instead of holding the exit. */
  private readonly shutdown = new AbortController();
  private resolveDone!: () => void;
  readonly done = new Promise<void>((r) => (this.resolveDone = r));

  constructor(
    private readonly ctx: EngineContext,
    private readonly router: Router,
    private readonly o: ServiceOptions,
  ) {}

  static async create(ctx: EngineContext, o: ServiceOptions): Promise<Service> {
    // The service reads the same containers' files request after request: through the cache
    // their directories' stats validate (one-shot CLI commands read them directly).
    enableDirCache();
    return new Service(ctx, new Router(await allRoutes()), o);
  }

  async listen(): Promise<void> {
    for (const l of this.o.listen) {
      const server = http.createServer({ keepAlive: true });
      server.on('request', (req, res) => void this.onRequest(req, res));
      server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void this.onUpgrade(req, socket, head));
      server.on('clientError', (_err, socket: Duplex) => {
        if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      });
      // Idle keep-alive connections do not keep the service alive (podman's timeout counts requests).
      server.keepAliveTimeout = 5_000;
      this.servers.push(server);
      await this.bind(server, l);
    }
    this.armIdle();
  }

  private async bind(server: http.Server, l: Listen): Promise<void> {
    if (l.kind === 'fd') return new Promise((resolve, reject) => server.once('error', reject).listen({ fd: l.fd }, resolve));
    if (l.kind === 'tcp') return new Promise((resolve, reject) => server.once('error', reject).listen({ host: l.host, port: l.port }, resolve));
    const dir = path.dirname(l.path);
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    // Bound under a temporary name, then renamed over the path: a socket left by a service that
    // died is replaced atomically, and clients never find the path missing. Two services
    // starting at once (two dial-stdio relays) each get a working socket; the one renamed last
    // keeps the path, the other goes when idle.
    const tmp = `${l.path}.${process.pid}.new`;
    fs.rmSync(tmp, { force: true });
    // 0600 from the start: the umask covers the window between bind and chmod.
    const old = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => server.once('error', reject).listen(tmp, resolve));
    } finally {
      process.umask(old);
    }
    if (fs.existsSync(l.path) && (await answers(l.path))) {
      server.close();
      fs.rmSync(tmp, { force: true });
      throw new BurrowError('EUSAGE', `another service already listens on ${l.path}`, 'stop it first, or give this one another socket: burrow system service unix:///PATH');
    }
    fs.renameSync(tmp, l.path);
    this.ownedSockets.push({ path: l.path, ino: fs.statSync(l.path).ino });
  }

  /** The address a client uses (for the CLI's message and the tests). */
  addresses(): string[] {
    return this.servers.map((s, i) => {
      const a = s.address();
      const l = this.o.listen[i];
      if (l?.kind === 'unix') return `unix://${l.path}`;
      if (typeof a === 'string') return `unix://${a}`;
      if (a) return `tcp://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
      return 'fd://';
    });
  }

  private begin(): void {
    this.active++;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  private end(): void {
    this.active--;
    if (this.stopping && this.active === 0) this.finish();
    else this.armIdle();
  }

  private armIdle(): void {
    if (this.active > 0 || this.o.idleSeconds <= 0 || this.stopping) return;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.stop(), this.o.idleSeconds * 1000);
    this.idleTimer.unref();
  }

  private async onRequest(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    this.begin();
    res.once('close', () => this.end());
    commonHeaders(res);
    if (this.stopping) res.setHeader('Connection', 'close');
    try {
      const { api, pathname } = apiRequest(req, this.ctx, this.shutdown.signal);
      const m = this.router.match(api.method, pathname);
      if ('methods' in m) {
        if (m.methods.length) throw new ApiError(405, `method ${api.method} is not allowed on ${pathname}`);
        throw new ApiError(404, 'page not found');
      }
      if (!m.route.handler) throw new ApiError(400, `${pathname} needs a hijacked connection (Connection: Upgrade)`);
      await m.route.handler({ ...api, params: m.params }, res);
    } catch (err) {
      if (process.env.BURROW_DEBUG) process.stderr.write(`burrow system service: ${req.method} ${req.url}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      sendError(res, err);
    }
  }

  private async onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    this.begin();
    this.hijacked.add(socket);
    socket.once('close', () => {
      this.hijacked.delete(socket);
      this.end();
    });
    socket.on('error', () => undefined);
    try {
      const { api, pathname } = apiRequest(req, this.ctx, this.shutdown.signal);
      const m = this.router.match(api.method, pathname);
      if ('methods' in m || !m.route.upgrade) throw new ApiError(404, `${pathname} cannot be upgraded`);
      await m.route.upgrade({ ...api, params: m.params }, socket, head);
    } catch (err) {
      const { status, message } = err instanceof ApiError ? err : { status: 500, message: String(err instanceof Error ? err.message : err) };
      const body = JSON.stringify({ message });
      if (socket.writable) socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    }
  }

  /** Stops accepting; requests in flight finish (hijacked streams get a grace period), then `done`. */
  stop(): void {
    if (this.stopping) return;
    this.stopping = true;
    this.shutdown.abort();
    if (this.idleTimer) clearTimeout(this.idleTimer);
    for (const s of this.servers) {
      s.close();
      if (s instanceof http.Server) s.closeIdleConnections();
    }
    if (this.active === 0) {
      this.finish();
      return;
    }
    // Streams that never end on their own (events, logs -f, attach) end after a grace period.
    setTimeout(() => {
      for (const s of this.hijacked) s.destroy();
      for (const s of this.servers) if (s instanceof http.Server) s.closeAllConnections();
      this.finish();
    }, 10_000).unref();
  }

  private finish(): void {
    // Keep-alive connections whose last request finished after stop() began hold no work.
    for (const s of this.servers) if (s instanceof http.Server) s.closeAllConnections();
    for (const o of this.ownedSockets) {
      // Another service may have taken the path over since (a restart while this one drained).
      if (fs.statSync(o.path, { throwIfNoEntry: false })?.ino === o.ino) fs.rmSync(o.path, { force: true });
    }
    this.ownedSockets.length = 0;
    this.resolveDone();
  }
}

/** Whether something answers on a unix socket (a live service), within a short time. */
function answers(p: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(p);
    const t = setTimeout(() => (s.destroy(), resolve(false)), 500);
    s.once('connect', () => (clearTimeout(t), s.destroy(), resolve(true)));
    s.once('error', () => (clearTimeout(t), resolve(false)));
  });
}

export { sendJson };
