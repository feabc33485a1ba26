// Types of bundle.mjs for the TypeScript tests (tsconfig.test.json).

export interface IdMapping {
  containerID: number;
  hostID: number;
  size: number;
}

/** The parts of `burrow-runtime spec --rootless`'s config.json that tests read or change. */
export interface BundleConfig {
  ociVersion: string;
  process: { args: string[]; terminal: boolean; env: string[]; cwd: string; [k: string]: unknown };
  root: { path: string; readonly: boolean };
  hostname?: string;
  mounts: { destination: string; type: string; source: string; options?: string[] }[];
  linux: {
    namespaces: { type: string; path?: string }[];
    uidMappings?: IdMapping[];
    gidMappings?: IdMapping[];
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

/** burrow-runtime: $BURROW_RUNTIME, else target/release/burrow-runtime. */
export const RUNTIME: string;

/** Creates `dir/rootfs` with busybox; returns the rootfs path. */
export function makeRootfs(dir: string): string;

/**
 * Makes a bundle in `dir`; returns the config as written. `C` is the caller's view of the
 * config (config.json is parsed JSON: its type is what the caller says it reads).
 */
export function makeBundle<C = BundleConfig>(dir: string, opts?: { args?: string[]; terminal?: boolean; edit?: (config: C) => void }): C;

/** The subordinate range of the current user in `file` (/etc/subuid), or null. */
export function ownSubuid(file?: string): { start: number; count: number } | null;
