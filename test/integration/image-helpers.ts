/**
 * Helpers for the image integration tests (pull, save/load, push): a private sandbox per test
 * (store, runtime root, HOME and XDG_RUNTIME_DIR under os.tmpdir(), so no test reads the real
 * user's credentials, certs.d or store), and burrow run asynchronously — the token-mode test
 * registry's token server lives in this process and must keep answering while burrow runs.
 */
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
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

export async function removeAllSandboxes(): Promise<void> {
  for (const sb of sandboxes.splice(0)) await removeSandbox(sb);
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
