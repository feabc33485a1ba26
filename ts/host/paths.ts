/**
 * Where burrow's parts and data are. The store and runtime roots follow, in order: global flags
 * (`--root`, `--runroot`), `BURROW_ROOT`/`BURROW_RUNROOT`, the config file's `[storage]` (read
 * only when neither was given), then the defaults computed by the core (XDG directories), so
 * TypeScript and Rust never disagree.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The package's root directory (where package.json is). */
export const PACKAGE_ROOT = path.join(__dirname, '..', '..');

export interface GlobalOptions {
  root?: string;
  runroot?: string;
  /** `--storage-driver`: the rootfs driver of containers this command creates. */
  storageDriver?: string;
}

/** The runtime binary: `BURROW_RUNTIME`, else the one built in this checkout. */
export function runtimeBinary(): string {
  const fromEnv = process.env.BURROW_RUNTIME;
  if (fromEnv) return fromEnv;
  for (const profile of ['release', 'debug']) {
    const p = path.join(PACKAGE_ROOT, 'target', profile, 'burrow-runtime');
    if (fs.existsSync(p)) return p;
  }
  return path.join(PACKAGE_ROOT, 'target', 'release', 'burrow-runtime');
}

/**
 * The small binary burrow runs what it leaves running from: every container's monitor (but a
 * healthchecking one) and the network owner (crates/burrow-runtime/src/bin/burrow-monitor.rs:
 * the same code as burrow-runtime's `monitor` and `network-owner`, without the rest, so that
 * it keeps less in memory). `BURROW_MONITOR`, else the one beside the runtime binary.
 */
export function monitorBinary(): string {
  return process.env.BURROW_MONITOR || path.join(path.dirname(runtimeBinary()), 'burrow-monitor');
}

/** The configured store root, if anything (flag, variable, config file) sets one. */
export function storeRootOverride(opts: GlobalOptions): string | undefined {
  const r = opts.root || process.env.BURROW_ROOT || fromConfig('root');
  return r ? path.resolve(r) : undefined;
}

/** The config file's [storage] value; the module is loaded only when this is reached. */
function fromConfig(key: 'root' | 'runroot'): string | undefined {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('../config/config') as typeof import('../config/config')).loadConfig().storage[key];
}

/**
 * Default roots, computed here rather than through the native addon so that hot commands
 * (`run`) need not load it. They must equal burrow-core's `paths` (a unit test checks that).
 */
export function defaultStoreRoot(): string {
  const xdg = process.env.XDG_DATA_HOME;
  if (xdg) return path.join(xdg, 'burrow');
  // node:os only without $HOME (a cold path: start-up loads no more than it needs).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return path.join(process.env.HOME || (require('node:os') as typeof import('node:os')).homedir(), '.local', 'share', 'burrow');
}

function runtimeDirUsable(dir: string, uid: number): boolean {
  try {
    const st = fs.statSync(dir);
    return st.isDirectory() && st.uid === uid && (st.mode & 0o077) === 0;
  } catch {
    return false;
  }
}

export function defaultRunRoot(): string {
  const uid = process.getuid?.() ?? 0;
  const xdg = process.env.XDG_RUNTIME_DIR;
  if (xdg && runtimeDirUsable(xdg, uid)) return path.join(xdg, 'burrow');
  return `/tmp/burrow-run-${outerUid(uid)}`;
}

/**
 * `uid` as the parent user namespace sees it (burrow-core's `paths::outer_uid`): the fallback is
 * named after the host uid, so that uid 0 of a user's namespace (rootless podman's runtime, `unshare
 * -r`) uses the user's directory, not root's /tmp/burrow-run-0.
 */
export function outerUid(uid: number, uidMap?: string): number {
  let map = uidMap;
  if (map === undefined) {
    try {
      map = fs.readFileSync('/proc/self/uid_map', 'utf8');
    } catch {
      return uid;
    }
  }
  for (const line of map.split('\n')) {
    const [inner, outer, count, ...rest] = line.trim().split(/\s+/).map(Number);
    if (inner === undefined || outer === undefined || count === undefined || rest.length > 0) continue;
    if (uid >= inner && uid < inner + count) return outer + (uid - inner);
  }
  return uid;
}

export function storeRoot(opts: GlobalOptions): string {
  return storeRootOverride(opts) ?? defaultStoreRoot();
}

export function runRootOverride(opts: GlobalOptions): string | undefined {
  const r = opts.runroot || process.env.BURROW_RUNROOT || fromConfig('runroot');
  return r ? path.resolve(r) : undefined;
}

export function runRoot(opts: GlobalOptions): string {
  return runRootOverride(opts) ?? defaultRunRoot();
}
