/** Helpers for integration tests: run the built CLI as a user would, observe the host directly. */
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export const ROOT = path.resolve(__dirname, '..', '..');
export const BIN = path.join(ROOT, 'bin', 'burrow.js');
export const IS_ROOT = process.getuid?.() === 0;

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export interface TestUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
  runtimeDir: string;
}

/** The unprivileged test user, when this (root) run was given one by test/run.mjs. */
export function testUser(): TestUser | undefined {
  const j = process.env.BURROW_TEST_USER_JSON;
  return j ? (JSON.parse(j) as TestUser) : undefined;
}

export interface BurrowOptions {
  env?: Record<string, string | undefined>;
  /** Run as this user (root runs only), with a clean environment for them. */
  as?: TestUser;
}

export function burrow(args: string[], opts: BurrowOptions = {}): Run {
  return sh(process.execPath, [BIN, ...args], opts);
}

export function sh(cmd: string, args: string[], opts: BurrowOptions = {}): Run {
  const spawnOpts: SpawnSyncOptions = { encoding: 'utf8', env: { ...process.env, ...opts.env } };
  if (opts.as) {
    spawnOpts.uid = opts.as.uid;
    spawnOpts.gid = opts.as.gid;
    spawnOpts.cwd = '/';
    spawnOpts.env = {
      PATH: process.env.PATH,
      HOME: opts.as.home,
      USER: opts.as.name,
      XDG_RUNTIME_DIR: opts.as.runtimeDir,
      ...opts.env,
    };
  }
  for (const [k, v] of Object.entries(spawnOpts.env ?? {})) if (v === undefined) delete spawnOpts.env![k];
  const r = spawnSync(cmd, args, spawnOpts);
  if (r.error) throw r.error;
  return { code: r.status ?? 128 + 9, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** Whether this process can open a file read-write (what the probe claims to test). */
export function canOpenRw(p: string): boolean {
  try {
    fs.closeSync(fs.openSync(p, 'r+'));
    return true;
  } catch {
    return false;
  }
}
