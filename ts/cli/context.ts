/** What commands share: the store, its settings, the runtime state root, global flags. */
import type { Command } from 'commander';
import { runRoot, runRootOverride, storeRoot, storeRootOverride, type GlobalOptions } from '../host/paths';
import { Store, type StorageSettings } from '../storage/store';
import type { RegistryOptions } from '../image/registry';

export interface Ctx {
  globals: GlobalOptions;
  store: Store;
  runRoot: string;
  settings(): Promise<StorageSettings>;
  /** Global flags to repeat when burrow calls itself (the monitor's cleanup). */
  globalArgs: string[];
}

export function context(cmd: Command): Ctx {
  const globals = cmd.optsWithGlobals<GlobalOptions>();
  const store = new Store(storeRoot(globals));
  let cached: StorageSettings | undefined;
  const args: string[] = [];
  // Resolved here (flag, variable or config file): the later call runs with whatever
  // environment and config exist then, and must find the same store.
  const root = storeRootOverride(globals);
  const rr = runRootOverride(globals);
  if (root) args.push('--root', root);
  if (rr) args.push('--runroot', rr);
  return {
    globals,
    store,
    runRoot: runRoot(globals),
    globalArgs: args,
    async settings() {
      if (cached) return cached;
      const { storeSettings } = await import('../storage/settings');
      cached = await storeSettings(store, root, globals.storageDriver);
      return cached;
    },
  };
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
