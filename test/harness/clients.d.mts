// Types of clients.mjs for the TypeScript tests (tsconfig.test.json).

/** A command's outcome (run never rejects on a nonzero exit; a kill by signal is code 137). */
export interface RunResult {
  code: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  input?: string;
  timeoutMs?: number;
  cwd?: string;
}

/** A step of test/harness/ptydrive.py (see its header). */
export type PtyStep = ['size', number, number] | ['send', string] | ['expect', string] | ['proc', string] | ['wait'];

/**
 * ptydrive.py's report: what the terminal showed, the command's exit status, the terminal's
 * settings (stty -g) before and after, and the step that failed (null when all completed). When
 * ptydrive itself gave no report, `failed` says so and there is no before/after.
 */
export interface PtyReport {
  out: string;
  status: number;
  before?: string;
  after?: string;
  failed: PtyStep | string | null;
  stderr: string;
}

/** What a cleanup found left behind: processes killed by PID, mounts it saw, mounts still there. */
export interface CleanupLeft {
  pids: number[];
  mounts: string[];
  left: string[];
}

export interface ClientImages {
  /** An OCI layout with the tags busybox and pause. */
  layout: string;
  busybox: { archive: string; ref: string };
  pause: { archive: string; ref: string };
}

/** A podman with everything private under `dir` (podmanSandbox). */
export interface PodmanSandbox {
  dir: string;
  /** podman's whole environment (its commands run with this alone). */
  env: {
    PATH: string;
    HOME: string;
    XDG_RUNTIME_DIR: string;
    XDG_CONFIG_HOME: string;
    XDG_DATA_HOME: string;
    CONTAINERS_CONF: string;
    CONTAINERS_STORAGE_CONF: string;
    CONTAINERS_REGISTRIES_CONF: string;
    TMPDIR: string;
  };
  rootful: boolean;
  runtime: string;
  /** podman's global flags (root, runroot, runtime ...) followed by `args`. */
  args(args: string[]): string[];
  podman(args: string[], opts?: RunOptions): Promise<RunResult>;
  /** The argv of a podman command with its environment spelled out, for ptyDrive. */
  argv(args: string[]): string[];
  cleanup(): Promise<CleanupLeft>;
}

export interface ContainerdHandler {
  binary: string;
  root: string;
}

/** A containerd of the test's own (startContainerd). */
export interface Containerd {
  dir: string;
  address: string;
  pid: number;
  runtime: string;
  /** The default handler's state root (`ctr run --runc-root` uses it too). */
  runtimeRoot: string;
  /** Each CRI handler's runtime binary and state root. */
  handlers: { runc: ContainerdHandler; burrow: ContainerdHandler };
  /** containerd's TMPDIR. */
  tmpDir: string;
  /** For `ctr run --fifo-dir`. */
  fifoDir: string;
  log(): string;
  ctr(args: string[], opts?: RunOptions): Promise<RunResult>;
  crictl(args: string[], opts?: RunOptions): Promise<RunResult>;
  crictlArgv(args: string[]): string[];
  /** Stops containerd; resolves what was still there (containers as NAMESPACE/ID). */
  stop(): Promise<{ containers: string[]; pids: number[]; mounts: string[]; left: string[] }>;
}

/** containerd under RootlessKit (startRootlessContainerd); ctr runs in its namespaces. */
export interface RootlessContainerd {
  dir: string;
  pid: number;
  address: string;
  ctr(args: string[], opts?: RunOptions): Promise<RunResult>;
  log(): string;
  stop(): Promise<CleanupLeft>;
}

export const BURROW_RUNTIME: string;
/** The runtime binary the client tests hand to podman and containerd. */
export function clientRuntime(): string;
/** The absolute path of a command on PATH (plus the sbin directories), or null. */
export function which(cmd: string): string | null;
export const PAUSE_CMD: string[];
export function buildClientImages(dir: string): ClientImages;
export function pidsMentioning(needle: string): number[];
/** Mount points at or under `dir`, deepest first. */
export function mountsUnder(dir: string): string[];
/** Unmounts every mount under `dir` (as root); returns those still there. */
export function unmountUnder(dir: string): string[];
export function alive(pid: number): boolean;
export function killPids(pids: number[], ms?: number): Promise<void>;
export function cleanupDir(dir: string): Promise<CleanupLeft>;
export function removeCgroupDirs(name: string): void;
export function run(cmd: string, args: string[], opts?: RunOptions): Promise<RunResult>;
export function ptyDrive(steps: PtyStep[], argv: string[], opts?: RunOptions): Promise<PtyReport>;
export function podmanSandbox(dir: string, opts?: { runtime?: string; sysctls?: string[]; runtimeName?: string | null }): PodmanSandbox;
/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export function freePort(): Promise<number>;
export function startContainerd(dir: string, opts?: { runtime?: string; defaultRuntime?: string; sandboxImage?: string }): Promise<Containerd>;
export function startRootlessContainerd(dir: string): Promise<RootlessContainerd>;
export const CRICTL_VERSION: string;
export function crictlCacheDir(): string;
export function goBinary(): string | null;
/** crictl, built into the cache directory when it is not there yet. */
export function ensureCrictl(): string;
