/**
 * Loads the napi addon (crates/burrow-node) built by `npm run build:rust` into native/. Loading
 * costs a few milliseconds, so callers import this module lazily, only on commands that need it.
 */
import * as path from 'node:path';
import { BurrowError } from '../errors';
import type * as Binding from './binding';

export type { DefaultPaths, ProbeOptions } from './binding';

let cached: typeof Binding | undefined;

function triple(): string {
  const arch = process.arch === 'x64' ? 'x64' : process.arch;
  return `linux-${arch}-gnu`;
}

export function addonPath(): string {
  return process.env.BURROW_NATIVE ?? path.join(__dirname, '..', '..', 'native', `burrow-node.${triple()}.node`);
}

export function native(): typeof Binding {
  if (cached) return cached;
  const file = addonPath();
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    cached = require(file) as typeof Binding;
  } catch (err) {
    throw new BurrowError(
      'ENATIVE_MISSING',
      `cannot load burrow's native addon ${file}: ${(err as Error).message}`,
      'run `npm ci` (or `npm run build`) in the burrow checkout to build it',
      { cause: err },
    );
  }
  return cached;
}

/**
 * sha256 of a string, in hex: the addon's (which `burrow run` loads anyway, to start the
 * runtime), else node:crypto's. Modules on the path of every `run` hash through this: loading
 * node:crypto (with node:stream) cost a run several milliseconds it never needed.
 */
export function sha256Hex(text: string): string {
  try {
    const n = native();
    if (typeof n.sha256Hex === 'function') return n.sha256Hex(text);
  } catch {
    /* no addon: node:crypto */
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('node:crypto') as typeof import('node:crypto')).createHash('sha256').update(text).digest('hex');
}
