/**
 * Shared by the Engine API test files: `burrow system service` on a socket of the test's own,
 * over the store of a lifecycle.helpers Env (busybox imported as IMAGE), and a small HTTP client
 * for that socket. The service runs as whoever runs the tests: root in the first pass, the
 * unprivileged test user in the second (the rootless proof).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { BIN } from './helpers';
import type { Env } from './lifecycle.helpers';

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  text: string;
  /** The body as JSON (throws with the text when it is not). */
  json<T = unknown>(): T;
}

export interface Service {
  sock: string;
  /** `unix://…`, for DOCKER_HOST. */
  host: string;
  child: ChildProcess;
  /** Everything the service wrote to stderr so far. */
  stderr(): string;
  request(method: string, p: string, body?: unknown, headers?: Record<string, string>): Promise<Reply>;
  /** Stops the service (SIGTERM, or the signal given) and waits for it to exit; its exit status. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** One HTTP request over a unix socket; `body` is JSON unless a Buffer or string. */
export function request(sock: string, method: string, p: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    const req = http.request(
      {
        socketPath: sock,
        method,
        path: p,
        headers: { ...(data ? { 'Content-Type': 'application/json', 'Content-Length': String(data.length) } : {}), ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const b = Buffer.concat(chunks);
          const text = b.toString('utf8');
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: b,
            text,
            json<T>() {
              try {
                return JSON.parse(text) as T;
              } catch {
                throw new Error(`not JSON (status ${res.statusCode}): ${text}`);
              }
            },
          });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

/** Waits until something accepts connections on `sock`. */
export async function waitForSocket(sock: string, child?: ChildProcess, timeoutMs = 20_000): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    if (child && child.exitCode !== null) throw new Error(`the service exited with status ${child.exitCode} before listening`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(sock);
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() - t0 > timeoutMs) throw new Error(`nothing listens on ${sock} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Starts `burrow system service unix://SOCK --time T` on env's store; `extra` are more arguments. */
export async function startService(env: Pick<Env, 'work' | 'store' | 'runroot'>, o: { sock?: string; time?: number; extra?: string[]; envVars?: NodeJS.ProcessEnv } = {}): Promise<Service> {
  const sock = o.sock ?? path.join(env.work, `api-${process.pid}-${Date.now()}.sock`);
  const child = spawn(process.execPath, [BIN, '--root', env.store, '--runroot', env.runroot, 'system', 'service', `unix://${sock}`, '--time', String(o.time ?? 0), ...(o.extra ?? [])], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...o.envVars },
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code, sig) => resolve(code ?? (sig ? 128 + (sig === 'SIGKILL' ? 9 : 15) : null))));
  try {
    await waitForSocket(sock, child);
  } catch (e) {
    child.kill('SIGKILL');
    throw new Error(`${(e as Error).message}; stderr: ${err}`);
  }
  return {
    sock,
    host: `unix://${sock}`,
    child,
    stderr: () => err,
    request: (method, p, body, headers) => request(sock, method, p, body, headers),
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Removes a socket file a killed service left (a restarted service does this itself too). */
export function removeStale(sock: string): void {
  fs.rmSync(sock, { force: true });
}
