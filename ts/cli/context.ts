/** What commands share: the store, its settings, the runtime state root, global flags. */
import type { Command } from 'commander';
import type { GlobalOptions } from '../host/paths';
import { engineContext, type EngineContext } from '../engine/context';
import type { RegistryOptions } from '../image/registry';

export type Ctx = EngineContext;

export function context(cmd: Command): Ctx {
  return engineContext(cmd.optsWithGlobals<GlobalOptions>());
}

/** The config file's registries (insecure, mirrors) merged under what a command adds (ts/engine/registry.ts). */
export function registryOptions(extra: RegistryOptions = {}): RegistryOptions {
  // Loaded when used: the module (and the config file) only for commands that need them.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('../engine/registry') as typeof import('../engine/registry')).registryOptions(extra);
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** `KEY=VALUE` flags as a map (a bare KEY has an empty value, as Docker's): --label, --opt. */
export function keyValues(list: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list) {
    const i = kv.indexOf('=');
    out[i < 0 ? kv : kv.slice(0, i)] = i < 0 ? '' : kv.slice(i + 1);
  }
  return out;
}
