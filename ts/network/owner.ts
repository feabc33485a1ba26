/**
 * The client of the user's network owner (`burrow-monitor network-owner`, the small binary of
 * burrow-runtime's long-lived commands; the design and the protocol are in
 * crates/burrow-core/src/net/bridge/mod.rs, the shapes in ./user.ts).
 *
 * `holdOwner` connects to DIR/owner.sock and sends `hold`: that connection is the lease. Where
 * no owner answers, it starts one (detached: its own session, so that it outlives this process
 * and no terminal signal reaches it; stdout and stderr to DIR/owner.log) and waits for its status
 * channel to say it listens, or why it could not. All of that happens under DIR/start.lock (the
 * same lock file protocol as ts/storage/fsutil.ts withLock, awaited rather than spun, since the
 * work inside is asynchronous): an owner about to exit for want of leases takes that lock too,
 * so it never exits between our look and our `hold`, and two `run`s start one owner.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { BurrowError } from '../errors';
import { tryLock } from '../storage/fsutil';
import type { IdMap } from '../storage/store';
import { OWNER_DIR, OWNER_LOG, OWNER_SOCKET, OWNER_START_LOCK, type OwnerReply, type OwnerRequest } from './user';

/** A lease on a running owner: it stays alive until `release` (or this process's exit). */
export interface OwnerLease {
  /** The owner's directory (`<run root>/network-owner`). */
  dir: string;
  pid: number;
  /** The user namespace containers on user-defined networks join (undefined as root). */
  userns?: string;
  /** Why IPv6 is not routed out of user-defined networks, when it is not (the owner's words). */
  noIpv6Out?: string;
  /** Another request on the lease's connection. */
  request(req: OwnerRequest): Promise<OwnerReply>;
  release(): void;
}

function ownerError(dir: string, message: string): BurrowError {
  return new BurrowError('ENET_OWNER', `network owner: ${message}`, `its log: ${path.join(dir, OWNER_LOG)}`);
}

/** One JSON-lines connection: requests answered one at a time, in order. */
class Connection {
  private buf = '';
  private waiting: { resolve: (r: OwnerReply) => void; reject: (e: Error) => void }[] = [];
  private closed: Error | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly sock: net.Socket,
    private readonly dir: string,
  ) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      for (let i = this.buf.indexOf('\n'); i >= 0; i = this.buf.indexOf('\n')) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        const w = this.waiting.shift();
        if (!w) continue;
        try {
          w.resolve(JSON.parse(line) as OwnerReply);
        } catch {
          w.reject(ownerError(this.dir, `answered what is not JSON: ${line.slice(0, 200)}`));
        }
      }
    });
    const fail = (e: Error) => {
      this.closed ??= e;
      for (const w of this.waiting.splice(0)) w.reject(this.closed);
    };
    sock.on('error', (e) => fail(ownerError(this.dir, `connection: ${e.message}`)));
    sock.on('close', () => fail(ownerError(this.dir, 'closed the connection without an answer')));
  }

  request(req: OwnerRequest): Promise<OwnerReply> {
    const next = this.queue.then(
      () =>
        new Promise<OwnerReply>((resolve, reject) => {
          if (this.closed) return reject(this.closed);
          this.waiting.push({ resolve, reject });
          this.sock.write(`${JSON.stringify(req)}\n`);
        }),
    );
    this.queue = next.catch(() => undefined);
    return next.then((r) => {
      if (!r.ok) throw r.code === 'EIP_IN_USE' || r.code === 'ENETWORK_NOT_FOUND' ? new BurrowError(r.code, r.message ?? 'failed') : ownerError(this.dir, r.message ?? 'failed');
      return r;
    });
  }
}

function connect(sockPath: string): Promise<net.Socket | undefined> {
  return new Promise((resolve, reject) => {
    const s = net.connect(sockPath);
    s.once('connect', () => {
      s.removeAllListeners('error');
      resolve(s);
    });
    s.once('error', (e: NodeJS.ErrnoException) => {
      // No owner (never started, or killed: its socket is left behind).
      if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') resolve(undefined);
      else reject(e);
    });
  });
}

/** fsutil.ts withLock, awaited: the start lock is held while an owner starts (tens of ms). */
async function withStartLock<T>(lockFile: string, fn: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const start = Date.now();
  for (let owner = tryLock(lockFile); owner !== null; owner = tryLock(lockFile)) {
    if (Date.now() - start > timeoutMs) throw new BurrowError('ENET_OWNER', `timed out waiting for the lock ${lockFile} held by pid ${owner}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(lockFile, { force: true });
  }
}

/**
 * Starts `burrow-monitor network-owner --dir DIR` in a session of its own and waits until it
 * listens (a `{"pid":N}` report on its status channel) or says why not.
 */
async function startOwner(dir: string, uidMap: IdMap[], gidMap: IdMap[]): Promise<void> {
  const { residentBinary, readReports, statusFlags } = await import('../runtime/client');
  const { spawn } = await import('node:child_process');
  const { findHelper } = await import('./options');
  const log = fs.openSync(path.join(dir, OWNER_LOG), 'a', 0o600);
  const args = [...statusFlags(3), 'network-owner', '--dir', dir];
  // Rootless, U gets the store's mapping, the one every container has (bridge/mod.rs).
  if (process.getuid?.() !== 0) for (const [flag, maps] of [['--uid-map', uidMap], ['--gid-map', gidMap]] as const) for (const m of maps) args.push(flag, m.join(':'));
  // Its outbound helper: pasta when that is the default network mode (`[containers] network`,
  // BURROW_NETWORK; podman's default_rootless_network_cmd picks its rootless network namespace's
  // helper the same way), else as `run` finds a container's: slirp4netns, else pasta (none:
  // internal networks only). The owner keeps the one it started with until it exits.
  const { setting } = await import('../config/config');
  const preferred = setting(undefined, 'BURROW_NETWORK', (c) => c.containers.network, '').split(':')[0];
  for (const h of preferred === 'pasta' ? (['pasta', 'slirp4netns'] as const) : (['slirp4netns', 'pasta'] as const)) {
    const p = findHelper(h);
    if (!p) continue;
    args.push('--helper', h, '--helper-path', p);
    break;
  }
  let child;
  // burrow-monitor: the small binary of what stays (runtime/client.ts).
  const bin = residentBinary();
  try {
    child = spawn(bin, args, { stdio: ['ignore', log, log, 'pipe'], detached: true });
  } finally {
    fs.closeSync(log);
  }
  const status = child.stdio[3] as net.Socket;
  const answer = await new Promise<{ pid?: number; error?: string }>((resolve) => {
    readReports(status, (r) => {
      if (r.kind === 'pid') resolve({ pid: r.pid });
      else if (r.kind === 'error') resolve({ error: r.error });
    });
    child.on('error', (e) => resolve({ error: `cannot run ${bin}: ${e.message}` }));
    child.on('exit', (code, sig) => resolve({ error: `exited (${sig ?? `status ${code}`}) before it listened` }));
  });
  status.destroy();
  child.unref();
  if (answer.error !== undefined) throw ownerError(dir, answer.error);
}

/**
 * A lease on the owner in `dir`, starting one if none runs (under OWNER_START_LOCK, so that two
 * `run`s start one owner). The id maps are the store's (what every container gets).
 */
export async function holdOwner(dir: string, opts: { uidMap: [number, number, number][]; gidMap: [number, number, number][] }): Promise<OwnerLease> {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const sockPath = path.join(dir, OWNER_SOCKET);
  const conn = await withStartLock(path.join(dir, OWNER_START_LOCK), async () => {
    let sock = await connect(sockPath);
    if (!sock) {
      await startOwner(dir, opts.uidMap, opts.gidMap);
      sock = await connect(sockPath);
      if (!sock) throw ownerError(dir, `said it listens, but ${sockPath} takes no connection`);
    }
    const c = new Connection(sock, dir);
    const reply = await c.request({ op: 'hold' }).catch((e: unknown) => {
      sock.destroy();
      throw e;
    });
    return { c, reply };
  });
  const { c, reply } = conn;
  // A lease does not keep this process alive: it ends with our work, or with our exit.
  c.sock.unref();
  let released = false;
  return {
    dir,
    pid: reply.pid ?? 0,
    ...(reply.userns ? { userns: reply.userns } : {}),
    ...(reply.noIpv6Out ? { noIpv6Out: reply.noIpv6Out } : {}),
    request: (req) => {
      c.sock.ref();
      return c.request(req).finally(() => {
        if (!released) c.sock.unref();
      });
    },
    release: () => {
      released = true;
      c.sock.destroy();
    },
  };
}

/** The owner's directory for a run root. */
export function ownerDir(runRoot: string): string {
  return path.join(runRoot, OWNER_DIR);
}
