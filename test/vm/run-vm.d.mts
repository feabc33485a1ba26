// Types of run-vm.mjs for the TypeScript tests (tsconfig.test.json).

export interface Kernel {
  package: string;
  version: string;
  vmlinuz: string;
  modules: string;
  kept: string[];
}

export type CpioEntry =
  | { type: 'dir'; name: string }
  | { type: 'file'; name: string; mode?: number; data: Buffer }
  | { type: 'symlink'; name: string; target: string }
  | { type: 'chr'; name: string; mode?: number; rdev: [number, number] };

export interface VmOptions {
  /** sh text run as `user` in the guest. */
  script: string;
  /** sh text run as root before `script`, or null. */
  rootScript?: string | null;
  controllers?: string[];
  systemd?: boolean;
  timeoutMs?: number;
  cpus?: number;
  memoryMiB?: number;
  user?: string;
  keep?: boolean;
}

export interface VmResult {
  /** The script's exit status; null when it did not finish. */
  status: number | null;
  output: string;
  console: string;
  /** The files the script left in $BURROW_VM_RESULTS: name → text. */
  results: Record<string, string>;
  timedOut: boolean;
  error: string | null;
  seconds: number;
  /** The job's directory when `keep`, else null. */
  share: string | null;
}

export const QEMU: string;
export const ALL_CONTROLLERS: string[];
export function cacheDir(): string;
export function ensureKernel(cache?: string): Kernel;
export function cpioNewc(entries: CpioEntry[]): Buffer;
export function ensureInitramfs(kernel: Kernel, cache?: string): string;
export function prepare(cache?: string): { kernel: Kernel; initramfs: string };
export function runVm(opts: VmOptions): Promise<VmResult>;
