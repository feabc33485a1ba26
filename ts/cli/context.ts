/** What commands share: the store, its settings, the runtime state root, global flags. */
import type { Command } from 'commander';
import type { GlobalOptions } from '../host/paths';
import { engineContext, type EngineContext } from '../engine/context';
import type { RegistryOptions } from '../image/registry';

export type Ctx = EngineContext;

export function context(cmd: Command): Ctx {
  return engineContext(cmd.optsWithGlobals<GlobalOptions>());
}

/** The config file's registries (insecure, mirrors) merged under what a command adds. */
export function registryOptions(extra: RegistryOptions = {}): RegistryOptions {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { loadConfig } = require('../config/config') as typeof import('../config/config');
  const r = loadConfig().registries;
  const insecure = [...r.insecure, ...(process.env.BURROW_INSECURE_REGISTRIES ?? '').split(',').map((s) => s.trim()).filter(Boolean)];
  return {
    ...(insecure.length ? { insecureRegistries: insecure } : {}),
    ...(Object.keys(r.mirrors).length ? { mirrors: r.mirrors } : {}),
    ...extra,
  };
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
