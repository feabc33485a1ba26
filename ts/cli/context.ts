/** What commands share: the store, its settings, the runtime state root, global flags. */
import type { Command } from 'commander';
import { runRoot, storeRoot, storeRootOverride, type GlobalOptions } from '../host/paths';
import { Store, type StorageSettings } from '../storage/store';

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
  if (globals.root) args.push('--root', storeRoot(globals));
  if (globals.runroot) args.push('--runroot', runRoot(globals));
  return {
    globals,
    store,
    runRoot: runRoot(globals),
    globalArgs: args,
    async settings() {
      if (cached) return cached;
      const { storeSettings } = await import('../storage/settings');
      cached = await storeSettings(store, storeRootOverride(globals));
      return cached;
    },
  };
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
