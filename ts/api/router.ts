/**
 * Routes of the Engine API: each module under ts/api/routes exports `routes`, a list of these.
 * Paths are Docker's, without the `/vX.Y` prefix (the server strips it and keeps the version).
 * `{name}` matches one path segment; `{name*}` matches one or more (image names have slashes:
 * `/images/{name*}/json` matches `/images/registry:5000/team/app:1/json`).
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { EngineContext } from '../engine/context';

export type Method = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'DELETE';

export interface ApiRequest {
  method: string;
  /** The path without its version prefix, e.g. `/containers/abc/json`. */
  path: string;
  /** The API version the client asked for in the path (`1.41`), if it gave one. */
  version: string | undefined;
  params: Record<string, string>;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  raw: IncomingMessage;
  ctx: EngineContext;
  /** Aborted when the service stops (SIGTERM, idle): streams that never end on their own (events, logs -f) end then. */
  shutdown?: AbortSignal;
}

export interface Route {
  method: Method;
  path: string;
  /** An ordinary request: answer on `res`. */
  handler?(req: ApiRequest, res: ServerResponse): Promise<void>;
  /**
   * A hijacked connection (attach, exec start with `Connection: Upgrade`): the raw socket, to
   * which the handler writes the `101 UPGRADED` head itself, then the stream.
   */
  upgrade?(req: ApiRequest, socket: Duplex, head: Buffer): Promise<void>;
}

interface Compiled {
  route: Route;
  re: RegExp;
  names: string[];
}

export const VERSION_PREFIX = /^\/v(\d+\.\d+)(?=\/)/;

export class Router {
  private readonly compiled: Compiled[] = [];

  constructor(routes: Route[]) {
    for (const route of routes) {
      const names: string[] = [];
      const src = route.path
        .split('/')
        .map((seg) => {
          const m = /^\{(\w+)(\*?)\}$/.exec(seg);
          if (!m) return seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
          names.push(m[1]!);
          return m[2] ? '(.+?)' : '([^/]+)';
        })
        .join('/');
      this.compiled.push({ route, re: new RegExp(`^${src}$`), names });
    }
  }

  /**
   * The route for a method and a path (version prefix already stripped); `methods` lists the
   * methods the path has when none matches this one (405 rather than 404).
   */
  match(method: string, pathname: string): { route: Route; params: Record<string, string> } | { methods: string[] } {
    const methods: string[] = [];
    for (const c of this.compiled) {
      const m = c.re.exec(pathname);
      if (!m) continue;
      // HEAD is answered by a GET route where no HEAD route exists (Node drops the body).
      if (c.route.method !== method && !(method === 'HEAD' && c.route.method === 'GET' && !this.has('HEAD', pathname))) {
        methods.push(c.route.method);
        continue;
      }
      const params: Record<string, string> = {};
      c.names.forEach((n, i) => (params[n] = decodeURIComponent(m[i + 1]!)));
      return { route: c.route, params };
    }
    return { methods };
  }

  private has(method: string, pathname: string): boolean {
    return this.compiled.some((c) => c.route.method === method && c.re.test(pathname));
  }
}
