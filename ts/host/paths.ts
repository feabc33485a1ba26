/**
 * Where burrow's parts and data are. The store and runtime roots follow, in order: global flags
 * (`--root`, `--runroot`), `BURROW_ROOT`/`BURROW_RUNROOT`, then the defaults computed by the core
 * (XDG directories), so TypeScript and Rust never disagree.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The package's root directory (where package.json is). */
export const PACKAGE_ROOT = path.join(__dirname, '..', '..');

export interface GlobalOptions {
  root?: string;
  runroot?: string;
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

export function storeRootOverride(opts: GlobalOptions): string | undefined {
  const r = opts.root ?? process.env.BURROW_ROOT;
  return r ? path.resolve(r) : undefined;
}
