// Types of slurm.mjs for the TypeScript tests (tsconfig.test.json).

export interface SlurmNode {
  name: string;
  addr: string;
  hostname: string;
}

/** A client's outcome (spawnSync: a kill by signal or timeout is code 137, its error in stderr). */
export interface SlurmRunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface SlurmRunOptions {
  /** Run as this user (root only); `home` is its HOME (else /). */
  as?: { name: string; home?: string };
  input?: string;
  cwd?: string;
  env?: Record<string, string>;
  timeout?: number;
}

/** A two-node Slurm cluster of the test's own (startSlurm). */
export interface SlurmCluster {
  dir: string;
  /** Pids of the processes holding the namespaces (root-started cluster). */
  ns: { ctl: number; n1: number; n2: number };
  nodes: SlurmNode[];
  /** Started by a user: a single-user cluster on the loopback. */
  single: boolean;
  /** Daemon pids, or the pid files of those that fork. */
  pids: (number | string)[];
  /** slurm.conf */
  conf: string;
  ociPath: string;
  env?: Record<string, string>;
  up?: boolean;
  stopped: boolean;
  nodeLog(name: string): string;
  /** A client (srun, sbatch, squeue ...) in the controller's namespace with a clean environment. */
  run(argv: string[], opts?: SlurmRunOptions): SlurmRunResult;
  /** Writes oci.conf; the next step reads it. */
  setOci(text: string): void;
  stop(): Promise<void>;
}

export const SUBNET: string;
export const CTL_ADDR: string;
/** The nodes of the root-started cluster; a single-user cluster's are `cluster.nodes`. */
export const NODES: SlurmNode[];
/** The absolute path of a program, or null. */
export function findProgram(name: string): string | null;
/** Why the cluster cannot start here, or null when it can. */
export function slurmUnavailable(): string | null;
/** oci.conf for a runc-compatible runtime: RunTimeRun ('run') or RunTimeCreate/RunTimeStart ('create'). */
export function ociConf(runtime: string, root: string, mode?: 'run' | 'create'): string;
export function startSlurm(dir: string, opts: { oci: string }): Promise<SlurmCluster>;
