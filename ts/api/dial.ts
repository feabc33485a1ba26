/**
 * `burrow system dial-stdio` (as `docker system dial-stdio` and podman's): stdin to the service's
 * socket and the socket to stdout, so that a client which reaches this host by ssh
 * (`DOCKER_HOST=ssh://user@host`, whose far end runs `docker system dial-stdio`, which the
 * docker shim makes burrow's) talks to the service here. When nothing listens on the socket, a
 * service is started on it first (detached, in a session of its own, exiting after 5 idle
 * seconds), so a host needs no daemon set up for that.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { BurrowError } from '../errors';

/** The socket a client means: `--host`, else DOCKER_HOST, else the service's default socket. */
export function dialTarget(host: string | undefined, runRoot: string, env: NodeJS.ProcessEnv = process.env): string {
  const h = host || env.DOCKER_HOST;
  if (!h) return path.join(runRoot, 'burrow.sock');
  if (h.startsWith('unix://') && h.length > 'unix://'.length) return path.resolve(h.slice('unix://'.length));
  if (h.startsWith('/')) return h;
  throw new BurrowError('EUSAGE', `dial-stdio relays to a unix socket only, not ${h}`, 'give --host unix:///PATH, or unset DOCKER_HOST to use the default socket');
}

function connect(sock: string): Promise<net.Socket | undefined> {
  return new Promise((resolve) => {
    const s = net.connect({ path: sock, allowHalfOpen: true });
    s.once('connect', () => {
      s.removeAllListeners('error');
      resolve(s);
    });
    s.once('error', () => resolve(undefined));
  });
}

export interface DialOptions {
  /** The command line that runs burrow (node and the entry script) and the global flags to repeat. */
  burrow: string[];
  globalArgs: string[];
  /** Where the started service's stderr goes. */
  logFile: string;
  /** How long to wait for a started service to listen. */
  timeoutMs?: number;
}

/** A connection to the service on `sock`, starting one when nothing listens there. */
export async function dialService(sock: string, o: DialOptions): Promise<net.Socket> {
  const first = await connect(sock);
  if (first) return first;
  fs.mkdirSync(path.dirname(o.logFile), { recursive: true, mode: 0o700 });
  const log = fs.openSync(o.logFile, 'w', 0o600);
  const [cmd, ...pre] = o.burrow;
  // Its own session (detached): the ssh session that runs this relay may end at any time, and
  // the service with its idle timer must not go with it.
  const child = spawn(cmd!, [...pre, ...o.globalArgs, 'system', 'service', `unix://${sock}`, '--time', '5'], { detached: true, stdio: ['ignore', 'ignore', log] });
  fs.closeSync(log);
  let exited: number | null | undefined;
  child.once('exit', (code, sig) => (exited = code ?? (sig ? 128 : null)));
  child.once('error', () => (exited = 127));
  child.unref();
  const end = Date.now() + (o.timeoutMs ?? 30_000);
  for (;;) {
    const s = await connect(sock);
    if (s) return s; // ours, or one another relay started at the same moment
    if (exited !== undefined || Date.now() > end) {
      let why = '';
      try {
        why = fs.readFileSync(o.logFile, 'utf8').trim();
      } catch {
        /* no log */
      }
      throw new BurrowError('EINTERNAL', `could not start the service on ${sock}${exited !== undefined ? ` (it exited with status ${exited})` : ' (it did not listen in time)'}${why ? `: ${why}` : ''}`, `see ${o.logFile}, or start it yourself: burrow system service unix://${sock}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Relays stdin to the socket and the socket to stdout. Stdin's end half-closes the socket (the
 * service still answers); the socket's end ends the relay, as docker's dial-stdio does.
 */
export function relay(conn: net.Socket, stdin: NodeJS.ReadableStream = process.stdin, stdout: NodeJS.WritableStream = process.stdout): Promise<void> {
  return new Promise((resolve) => {
    stdin.pipe(conn, { end: true });
    conn.pipe(stdout, { end: false });
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      stdin.unpipe(conn);
      stdout.end(() => resolve());
    };
    conn.once('end', finish);
    conn.once('close', finish);
    conn.on('error', finish);
    stdout.on('error', () => {
      conn.destroy();
      finish();
    });
  });
}
