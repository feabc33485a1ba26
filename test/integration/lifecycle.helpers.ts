/**
 * Shared by the lifecycle test files: a private store and runroot per file with a busybox image
 * imported from a tarball, the CLI run synchronously or in the background, and what a user can
 * check in /proc: which processes a container left behind.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'vitest';
import { BIN, burrow, type Run } from './helpers';
import { makeRootfs } from '../harness/bundle.mjs';

export const IMAGE = 'lc-busybox';

/** A step of test/harness/ptydrive.py (see there). */
export type Step = ['size', number, number] | ['send', string] | ['expect', string] | ['proc', string] | ['wait'];
export interface Drive {
  out: string;
  status: number;
  /** The terminal's settings (stty -g) before the command and after it. */
  before: string;
  after: string;
  failed: Step | null;
}

export interface Env {
  work: string;
  store: string;
  runroot: string;
  /** The CLI with this file's store and runroot. */
  b(args: string[], opts?: BOpts): Run;
  /** The same, expected to succeed (the failure names the command and its stderr): its stdout. */
  ok(args: string[], opts?: BOpts): string;
  /** `inspect REF`, expected to succeed: its object (parsed JSON: tests read the fields they check). */
  inspect(ref: string): Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  /** `run -d ARGS`, expected to succeed: the container's id. */
  runD(...args: string[]): string;
  /** The same in the background; `onLine` sees stdout lines as they come. */
  bg(args: string[], opts?: { input?: string; onLine?: (line: string, ms: number) => void }): Promise<Run & { ms: number }>;
  /** The CLI at a real terminal, driven step by step (test/harness/ptydrive.py); throws when a step fails. */
  tty(steps: Step[], args: string[]): Drive;
  /** Containers left in the store: their directories (and ones set aside for removal). */
  containerDirs(): string[];
  /** The Actions of a container's events in the run root's log, in order ([] without a log). */
  eventActions(id: string): string[];
  /** Removes every container of this store and checks that none left a process. */
  cleanup(): void;
  dispose(): void;
}

/** Options of `Env.b`: stdin, a timeout, variables added to ours, a working directory. */
export interface BOpts {
  input?: string;
  timeout?: number;
  env?: Record<string, string>;
  cwd?: string;
}

export function setup(tag: string): Env {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), `burrow-${tag}-`));
  const store = path.join(work, 'store');
  const runroot = path.join(work, 'run');
  const global = ['--root', store, '--runroot', runroot];
  const rf = path.join(work, 'rootfs-src');
  makeRootfs(rf);
  const tarball = path.join(work, 'busybox.tar.gz');
  const t = spawnSync('tar', ['--numeric-owner', '--owner=0', '--group=0', '-czf', tarball, '-C', path.join(rf, 'rootfs'), '.']);
  if (t.status !== 0) throw new Error(`tar: ${t.stderr}`);
  fs.rmSync(rf, { recursive: true, force: true });
  const b: Env['b'] = (args, opts = {}) => {
    if (opts.input === undefined && opts.timeout === undefined && !opts.env && !opts.cwd) return burrow([...global, ...args]);
    const r = spawnSync(process.execPath, [BIN, ...global, ...args], {
      encoding: 'utf8',
      input: opts.input ?? '',
      timeout: opts.timeout ?? 30_000,
      ...(opts.env ? { env: { ...process.env, ...opts.env } } : {}),
      ...(opts.cwd ? { cwd: opts.cwd } : {}),
    });
    if (r.error) throw r.error;
    return { code: r.status ?? 128 + 9, stdout: r.stdout, stderr: r.stderr };
  };
  const ok: Env['ok'] = (args, opts) => {
    const r = b(args, opts);
    expect(r.code, `burrow ${args.join(' ')}: ${r.stderr}`).toBe(0);
    return r.stdout;
  };
  const inspect: Env['inspect'] = (ref) => {
    const r = b(['inspect', ref]);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout)[0];
  };
  const runD: Env['runD'] = (...args) => {
    const r = b(['run', '-d', ...args]);
    expect(r.code, r.stderr).toBe(0);
    return r.stdout.trim();
  };
  const bg: Env['bg'] = (args, opts = {}) =>
    new Promise((resolve, reject) => {
      const t0 = Date.now();
      const child = spawn(process.execPath, [BIN, ...global, ...args], { stdio: [opts.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      let partial = '';
      child.stdout!.on('data', (d: Buffer) => {
        stdout += d;
        partial += d;
        const lines = partial.split('\n');
        partial = lines.pop()!;
        for (const l of lines) opts.onLine?.(l, Date.now() - t0);
      });
      child.stderr!.on('data', (d: Buffer) => (stderr += d));
      if (opts.input !== undefined) child.stdin!.end(opts.input);
      child.on('error', reject);
      child.on('close', (code, sig) => resolve({ code: code ?? 128 + (sig === 'SIGKILL' ? 9 : 15), stdout, stderr, ms: Date.now() - t0 }));
    });
  const tty: Env['tty'] = (steps, args) => {
    const drive = path.join(__dirname, '..', 'harness', 'ptydrive.py');
    const r = spawnSync('python3', [drive, JSON.stringify(steps), process.execPath, BIN, ...global, ...args], { encoding: 'utf8', timeout: 120_000 });
    if (r.status !== 0) throw new Error(`ptydrive.py exited ${r.status}: ${r.stderr}`);
    const d = JSON.parse(r.stdout) as Drive;
    // A failed step shows what the terminal showed until then.
    if (d.failed) throw new Error(`step ${JSON.stringify(d.failed)} did not complete; the terminal showed:\n${d.out}`);
    return d;
  };
  const imp = b(['import', tarball, IMAGE, '-c', 'CMD ["sh"]']);
  if (imp.code !== 0) throw new Error(`import failed: ${imp.stderr}`);
  const cleanup = () => {
    const ids = b(['ps', '-aq', '--no-trunc']).stdout.split('\n').filter(Boolean);
    // A container's recorded pid is its init only if that process started when the container
    // did: an exited container's pid may belong to another process by now (another test file's
    // container), whose namespace is not ours to judge.
    const nss = ids
      .map((id) => b(['inspect', '-f', '{{.State.Pid}} {{.State.StartedAt}}', id]).stdout.trim().split(' '))
      .filter(([pid, started]) => Math.abs(processStartMs(Number(pid)) - Date.parse(started ?? '')) < 5000)
      .map(([pid]) => pidNs(Number(pid)))
      .filter((n): n is string => !!n);
    if (ids.length) b(['rm', '-f', ...ids]);
    // Some leave a moment after the last container (the network owner, once the monitor's lease
    // has closed): what is still there after 10 s was left behind.
    let left = leftovers(runroot, nss);
    for (const end = Date.now() + 10_000; left.length && Date.now() < end; left = leftovers(runroot, nss)) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
    if (left.length) throw new Error(`processes left behind: ${left.map((p) => `${p} ${cmdline(p)}`).join('; ')}`);
  };
  return {
    work,
    store,
    runroot,
    b,
    ok,
    inspect,
    runD,
    bg,
    tty,
    containerDirs() {
      try {
        return fs.readdirSync(path.join(store, 'containers')).filter((n) => n !== '.names');
      } catch {
        return [];
      }
    },
    eventActions(id: string) {
      const file = path.join(runroot, 'events.jsonl');
      const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
      return text
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { Action: string; Actor: { ID: string } })
        .filter((e) => e.Actor.ID === id)
        .map((e) => e.Action);
    },
    cleanup,
    dispose() {
      try {
        cleanup();
      } finally {
        fs.rmSync(work, { recursive: true, force: true });
      }
    },
  };
}

export function cmdline(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return '';
  }
}

/** A process's parent pid; undefined if it is gone. */
export function ppidOf(pid: number): number | undefined {
  try {
    return Number(/^PPid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
  } catch {
    return undefined;
  }
}

/** The network owner of a run root, while one runs: its pid (owner.json). */
export function ownerPid(runroot: string): number | undefined {
  try {
    const pid = (JSON.parse(fs.readFileSync(path.join(runroot, 'network-owner', 'owner.json'), 'utf8')) as { pid: number }).pid;
    return alive(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** When a process started (ms since the epoch, to the clock tick); NaN if it is gone. */
export function processStartMs(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const ticks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    const btime = Number(/^btime (\d+)$/m.exec(fs.readFileSync('/proc/stat', 'utf8'))![1]);
    return btime * 1000 + ticks * 10; // USER_HZ is 100 on Linux
  } catch {
    return NaN;
  }
}

/** The pid namespace of a process, e.g. "pid:[4026532285]"; undefined if it is gone. */
export function pidNs(pid: number): string | undefined {
  if (!pid) return undefined;
  try {
    return fs.readlinkSync(`/proc/${pid}/ns/pid`);
  } catch {
    return undefined;
  }
}

/** A process that runs: it exists and is not a zombie (reaping is its parent's business). */
export function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/**
 * Live processes that belong to us and to these containers: members of their pid namespaces,
 * and burrow's helpers (monitors, exec supervisors) that mention this file's runroot.
 */
export function leftovers(runroot: string, namespaces: string[]): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const pid = Number(d);
    if (pid === process.pid || !alive(pid)) continue;
    const ns = pidNs(pid);
    if ((ns && namespaces.includes(ns)) || cmdline(pid).includes(runroot)) out.push(pid);
  }
  return out;
}

export function waitFor(pred: () => boolean, ms = 10_000, what = 'a condition'): void {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    spawnSync('sleep', ['0.02']);
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
