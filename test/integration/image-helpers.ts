/**
 * Helpers for the image integration tests (pull, save/load, push): a private sandbox per test
 * (store, runtime root, HOME and XDG_RUNTIME_DIR under os.tmpdir(), so no test reads the real
 * user's credentials, certs.d or store), and burrow run asynchronously — the token-mode test
 * registry's token server lives in this process and must keep answering while burrow runs.
 * And a TCP proxy to put in front of the test registry, to count, cut, slow down or disturb
 * what a pull or the registry client gets.
 */
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { BIN, type Run } from './helpers';
import type { StorageSettings } from '../../ts/storage/store';
import { removeTrees } from '../../ts/storage/unpack';

export interface ExecOptions {
  env?: Record<string, string | undefined>;
  input?: string;
  /** A file to feed to stdin (instead of `input`). */
  stdinFile?: string;
  timeoutMs?: number;
  /** Start in a new process group (to kill the command and its children together). */
  detached?: boolean;
  /** Called with the child's pid once it is started. */
  onSpawn?: (pid: number) => void;
}

export interface AsyncRun extends Run {
  signal: NodeJS.Signals | null;
  ms: number;
}

/** Runs a command without blocking the event loop; resolves when it exits. */
export function exec(cmd: string, args: string[], opts: ExecOptions = {}): Promise<AsyncRun> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...opts.env })) if (v !== undefined) env[k] = v;
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['pipe', 'pipe', 'pipe'], detached: !!opts.detached });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    const timer = opts.timeoutMs
      ? setTimeout(() => {
          stderr += `\n[killed after ${opts.timeoutMs} ms]`;
          child.kill('SIGKILL');
        }, opts.timeoutMs)
      : undefined;
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({ code: code ?? 128 + 9, signal, stdout, stderr, ms: Date.now() - started });
    });
    if (child.pid !== undefined) opts.onSpawn?.(child.pid);
    child.stdin.on('error', () => undefined); // a command that exits without reading all of it
    if (opts.stdinFile) fs.createReadStream(opts.stdinFile).pipe(child.stdin);
    else child.stdin.end(opts.input ?? '');
  });
}

export interface Sandbox {
  dir: string;
  root: string;
  runroot: string;
  home: string;
  env: Record<string, string | undefined>;
  /** `burrow --root ROOT --runroot RUNROOT ARGS…` in this sandbox's environment. */
  burrow(args: string[], opts?: ExecOptions): Promise<AsyncRun>;
  /** Like burrow(), but fails the test with the output when the exit status is not 0. */
  ok(args: string[], opts?: ExecOptions): Promise<AsyncRun>;
  settings(): StorageSettings;
}

const sandboxes: Sandbox[] = [];

/** A fresh sandbox under `parent` (made under os.tmpdir() by the caller). */
export function sandbox(parent: string, name: string): Sandbox {
  const dir = fs.mkdtempSync(path.join(parent, `${name}-`));
  const root = path.join(dir, 'store');
  const runroot = path.join(dir, 'run');
  const home = path.join(dir, 'home');
  const xdg = path.join(dir, 'xdg');
  fs.mkdirSync(home, { mode: 0o700 });
  fs.mkdirSync(xdg, { mode: 0o700 });
  const env: Record<string, string | undefined> = {
    HOME: home,
    XDG_RUNTIME_DIR: xdg,
    XDG_CONFIG_HOME: undefined,
    XDG_DATA_HOME: undefined,
    REGISTRY_AUTH_FILE: undefined,
    DOCKER_CONFIG: undefined,
    BURROW_ROOT: undefined,
    BURROW_RUNROOT: undefined,
  };
  const sb: Sandbox = {
    dir,
    root,
    runroot,
    home,
    env,
    burrow: (args, opts = {}) => exec(process.execPath, [BIN, '--root', root, '--runroot', runroot, ...args], { timeoutMs: 60_000, ...opts, env: { ...env, ...opts.env } }),
    async ok(args, opts = {}) {
      const r = await sb.burrow(args, opts);
      if (r.code !== 0) throw new Error(`burrow ${args.join(' ')} exited ${r.code}${r.signal ? ` (${r.signal})` : ''}:\n${r.stderr}${r.stdout}`);
      return r;
    },
    settings: () => JSON.parse(fs.readFileSync(path.join(root, 'storage.json'), 'utf8')) as StorageSettings,
  };
  sandboxes.push(sb);
  return sb;
}

/**
 * Removes a sandbox. Rootless, the store holds files of subordinate ids that only the store's
 * user namespace may delete: those go through `burrow-runtime unpack`'s remove job.
 */
export async function removeSandbox(sb: Sandbox): Promise<void> {
  if (fs.existsSync(path.join(sb.root, 'storage.json'))) {
    const s = sb.settings();
    if (s.idMode !== 'root') await removeTrees(s, [sb.root]).catch(() => undefined);
  }
  fs.rmSync(sb.dir, { recursive: true, force: true });
}

/**
 * Disposes of a lifecycle.helpers Env whose store holds files of subordinate ids (images built
 * with other owners): they are removed through the store's user namespace first.
 */
export async function disposeStore(env: { store: string; cleanup(): void; dispose(): void } | undefined): Promise<void> {
  if (!env) return;
  env.cleanup();
  const file = path.join(env.store, 'storage.json');
  if (fs.existsSync(file)) {
    const s = JSON.parse(fs.readFileSync(file, 'utf8')) as StorageSettings;
    if (s.idMode !== 'root') await removeTrees(s, [env.store]).catch(() => undefined);
  }
  env.dispose();
}

/** Removes every container of a sandbox's store (`rm -f` of what `ps -a` lists). */
export async function removeContainers(sb: Sandbox): Promise<void> {
  const ids = (await sb.burrow(['ps', '-aq', '--no-trunc'])).stdout.split('\n').filter(Boolean);
  if (ids.length) await sb.burrow(['rm', '-f', ...ids]);
}

/**
 * A shell script that lists every entry under / but the kernel's file systems, the files the
 * runtime binds (/etc/hosts…) and burrow's own /.burrow: type, owner, mode, and for all but
 * directories (whose size and link count differ between file systems) size, link count and
 * content's md5. Two containers whose outputs are equal show the same tree.
 */
export const TREE_LISTING = [
  'find / -xdev \\( -path /proc -o -path /sys -o -path /dev -o -path /.burrow -o -path /etc/hosts -o -path /etc/hostname -o -path /etc/resolv.conf \\) -prune -o -print | sort | while read -r p; do',
  '  if [ -d "$p" ] && [ ! -L "$p" ]; then stat -c "%n %F %u %g %a" "$p"; else stat -c "%n %F %u %g %a %s %h" "$p"; fi;',
  '  if [ -f "$p" ] && [ ! -L "$p" ]; then md5sum "$p"; fi;',
  'done',
].join('\n');

export async function removeAllSandboxes(): Promise<void> {
  for (const sb of sandboxes.splice(0)) await removeSandbox(sb);
}

/**
 * The end of an image test file: its sandboxes removed, its proxies closed, its registries
 * stopped and its work directory deleted.
 */
export async function endImageTest(work: string, registries: ({ stop(): Promise<void> } | undefined)[]): Promise<void> {
  await removeAllSandboxes();
  await closeAllProxies();
  for (const r of registries) await r?.stop();
  fs.rmSync(work, { recursive: true, force: true });
}

export function sha256(data: Buffer | string): string {
  return `sha256:${crypto.createHash('sha256').update(data).digest('hex')}`;
}

export function sha256FileSync(file: string): string {
  const h = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.allocUnsafe(1 << 20);
  try {
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) h.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return `sha256:${h.digest('hex')}`;
}

/** Every blob in a store is named by its content's digest, and nothing else lies there. */
export function checkBlobs(root: string): { ok: string[]; bad: string[] } {
  const dir = path.join(root, 'blobs', 'sha256');
  const ok: string[] = [];
  const bad: string[] = [];
  for (const n of fs.readdirSync(dir)) {
    if (/^[a-f0-9]{64}$/.test(n) && sha256FileSync(path.join(dir, n)) === `sha256:${n}`) ok.push(n);
    else bad.push(n);
  }
  return { ok, bad };
}

/** The layer records of a store, by diff id hex. */
export function layerRecords(root: string): Record<string, Record<string, unknown>> {
  const dir = path.join(root, 'layers');
  const out: Record<string, Record<string, unknown>> = {};
  if (!fs.existsSync(dir)) return out;
  for (const n of fs.readdirSync(dir).filter((x) => x.endsWith('.json'))) out[n.slice(0, -5)] = JSON.parse(fs.readFileSync(path.join(dir, n), 'utf8'));
  return out;
}

export const tmpdir = (): string => os.tmpdir();

export interface ProxyOptions {
  /** Cut the first response that would pass this many bytes on its connection (once per proxy). */
  dropAfter?: number;
  /** Delete Range headers from requests: the registry then sends whole blobs, as a server without range support does. */
  stripRange?: boolean;
  /** Bytes per second to slow answers down to (see TcpProxy.rate). */
  rate?: number;
}

export interface TcpProxy {
  /** 127.0.0.1:PORT, to use in place of the registry's host. */
  host: string;
  /** Bytes passed on to the client (after a cut, none of the cut response's rest). */
  bytesDown: number;
  /** The head of every chunk a client sent (a request's line and headers where a chunk starts one), as sent. */
  heads: string[];
  /** Client chunks that carried a Range header (counted whether or not it was stripped). */
  ranges: number;
  /** Connections cut by dropAfter: 0 or 1. */
  drops: number;
  /** Bytes per second; undefined for full speed. May be changed while a transfer runs. */
  rate: number | undefined;
  close(): Promise<void>;
}

const proxies: TcpProxy[] = [];

/**
 * A TCP proxy on 127.0.0.1 to `upstream` (HOST:PORT on loopback, as a test registry's host). It
 * works on the bytes, not on HTTP: a request's head is looked at only in the chunk it arrives in,
 * which holds for the small requests of a registry client. Closed by closeAllProxies().
 */
export async function startProxy(upstream: string, opts: ProxyOptions = {}): Promise<TcpProxy> {
  const port = Number(upstream.split(':').pop());
  const sockets = new Set<net.Socket>();
  const server = net.createServer((down) => {
    const up = net.connect(port, '127.0.0.1');
    sockets.add(down).add(up);
    let sent = 0;
    down.on('data', (d: Buffer) => {
      const head = d.toString('latin1');
      p.heads.push(head.split('\r\n\r\n')[0] ?? '');
      if (/\r\nrange: /i.test(head)) {
        p.ranges++;
        if (opts.stripRange) d = Buffer.from(head.replace(/\r\nrange: [^\r]*/i, ''), 'latin1');
      }
      up.write(d);
    });
    up.on('data', (d: Buffer) => {
      if (opts.dropAfter !== undefined && p.drops === 0 && sent + d.length > opts.dropAfter) {
        p.drops++;
        down.destroy();
        up.destroy();
        return;
      }
      sent += d.length;
      p.bytesDown += d.length;
      // Backpressure, so bytes counted are bytes the client could read, not a queue here.
      if (!down.write(d)) {
        up.pause();
        down.once('drain', () => up.resume());
      } else if (p.rate) {
        up.pause();
        setTimeout(() => up.resume(), (d.length / p.rate) * 1000);
      }
    });
    const end = (): void => {
      down.destroy();
      up.destroy();
    };
    down.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const p: TcpProxy = {
    host: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    bytesDown: 0,
    heads: [],
    ranges: 0,
    drops: 0,
    rate: opts.rate,
    async close() {
      for (const s of sockets) s.destroy();
      if (server.listening) await new Promise((r) => server.close(r));
    },
  };
  proxies.push(p);
  return p;
}

export async function closeAllProxies(): Promise<void> {
  for (const p of proxies.splice(0)) await p.close().catch(() => undefined);
}
