/**
 * Shared by the test files that drive burrow-runtime directly with OCI bundles: a private work
 * directory and state root per file, one busybox rootfs copied into each bundle, the runtime run
 * with its output in files (a created or detached container keeps the stdio it was given, runc's
 * pass-through, so a synchronous spawn must not wait on pipes), and cleanup of whatever a test
 * left created.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeBundle, makeRootfs, RUNTIME } from '../harness/bundle.mjs';

export type Config = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface Out {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RtOptions {
  /** Global flags, after `--root` and before the command. */
  globals?: string[];
  /** A command that execs the runtime (`unshare -m`, ...). */
  wrap?: string[];
  /** Become the runtime's fds 3, 4, ... */
  fds?: number[];
}

export interface BundleOptions {
  terminal?: boolean;
  /** Files (or directories, with a trailing /) to write into the rootfs, by path inside it. */
  files?: Record<string, string>;
  /** Changes the rootfs before the config is written. */
  prepare?: (rootfs: string) => void;
}

export interface RuntimeEnv {
  work: string;
  stateRoot: string;
  rt(args: string[], opts?: RtOptions): Out;
  bundle(args: string[], edit?: (c: Config) => void, opts?: BundleOptions): { dir: string; id: string; config: Config };
  /** Polls `pred` every 20 ms; throws after `ms`. */
  waitFor(pred: () => boolean, ms?: number): void;
  /** Deletes every container still in the state root, then the work directory. */
  dispose(): void;
}

/** `tag` names the work directory and prefixes container ids; `cwd` is where the runtime runs. */
export function runtimeEnv(tag: string, { cwd }: { cwd?: string } = {}): RuntimeEnv {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), `burrow-${tag}-`));
  const stateRoot = path.join(work, 'state');
  const rootfsCache = path.join(work, 'cache');
  makeRootfs(rootfsCache);
  let n = 0;
  const rt: RuntimeEnv['rt'] = (args, opts = {}) => {
    const out = path.join(work, `out-${++n}`);
    const err = path.join(work, `err-${n}`);
    const fo = fs.openSync(out, 'w');
    const fe = fs.openSync(err, 'w');
    try {
      const [cmd, ...pre] = [...(opts.wrap ?? []), RUNTIME as string];
      const r = spawnSync(cmd!, [...pre, '--root', stateRoot, ...(opts.globals ?? []), ...args], { cwd, stdio: ['ignore', fo, fe, ...(opts.fds ?? [])], timeout: 30_000 });
      if (r.error) throw r.error;
      return { code: r.status ?? 128 + 9, stdout: fs.readFileSync(out, 'utf8'), stderr: fs.readFileSync(err, 'utf8') };
    } finally {
      fs.closeSync(fo);
      fs.closeSync(fe);
    }
  };
  const bundle: RuntimeEnv['bundle'] = (args, edit, opts = {}) => {
    const id = `${tag}-${++n}-${process.pid}`;
    const dir = path.join(work, id);
    fs.mkdirSync(dir);
    spawnSync('cp', ['-a', path.join(rootfsCache, 'rootfs'), dir]);
    for (const [p, content] of Object.entries(opts.files ?? {})) {
      const full = path.join(dir, 'rootfs', p);
      fs.mkdirSync(path.dirname(full), { recursive: true });
      if (p.endsWith('/')) fs.mkdirSync(full, { recursive: true });
      else fs.writeFileSync(full, content);
    }
    opts.prepare?.(path.join(dir, 'rootfs'));
    const config = makeBundle(dir, { args, terminal: opts.terminal ?? false, edit }) as Config;
    return { dir, id, config };
  };
  const waitFor: RuntimeEnv['waitFor'] = (pred, ms = 10_000) => {
    const end = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > end) throw new Error('timed out waiting');
      spawnSync('sleep', ['0.02']);
    }
  };
  const dispose = () => {
    for (const id of fs.existsSync(stateRoot) ? fs.readdirSync(stateRoot) : []) rt(['delete', '--force', id]);
    fs.rmSync(work, { recursive: true, force: true });
  };
  return { work, stateRoot, rt, bundle, waitFor, dispose };
}
