/**
 * What every engine operation needs: the store, its settings, the runtime state root, and the
 * global arguments to repeat when burrow calls itself (the monitor's cleanup command). Built once
 * per CLI command (ts/cli/context.ts) and once per service (ts/api/server.ts); nothing here knows
 * about commander or HTTP.
 */
import { runRoot, runRootOverride, storeRoot, storeRootOverride, type GlobalOptions } from '../host/paths';
import { Store, type StorageSettings } from '../storage/store';

export interface EngineContext {
  globals: GlobalOptions;
  store: Store;
  runRoot: string;
  /** The store's settings for this host, probed once and cached. */
  settings(): Promise<StorageSettings>;
  /** Global flags to repeat when burrow calls itself (the monitor's cleanup). */
  globalArgs: string[];
}

export function engineContext(globals: GlobalOptions): EngineContext {
  const store = new Store(storeRoot(globals));
  let cached: Promise<StorageSettings> | undefined;
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
    settings() {
      // One probe even when concurrent requests (the API service) ask at once.
      cached ??= import('../storage/settings').then(({ storeSettings }) => storeSettings(store, root, globals.storageDriver));
      return cached;
    },
  };
}

/**
 * What an engine operation reports while it works, instead of writing to stderr: the CLI prints
 * these, the API sends them in its JSON streams or drops them.
 */
export interface Hooks {
  /** A warning for the user (`WARNING: …` in the CLI, `Warnings` in the API's create response). */
  warn?(message: string): void;
}
