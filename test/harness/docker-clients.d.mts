// Types of docker-clients.mjs for the TypeScript tests (tsconfig.test.json).

import type { PodmanSandbox } from './clients.mjs';

export { freePort, run } from './clients.mjs';

export const REPO: string;
export const CACHE: string;
export const DOCKER_IO_CACHE: string;
export const DOCKER_PY_REQUIREMENTS: string;

/** Debian's docker 20.10 CLI from the cache .ci/setup fills ($BURROW_DOCKER_CLI overrides). */
export function dockerCli(): string;
/** Debian's docker-compose 1.29. */
export function composeBin(): string;
export function dockerPyVersion(): string;
/** The python of docker-py's venv (made here when .ci/setup has not). */
export function dockerPyPython(): string;
/** The environment of a Docker client under `dir`: its own DOCKER_CONFIG and HOME, DOCKER_HOST. */
export function dockerConfigEnv(dir: string, host: string, opts?: { binDirs?: string[]; extra?: Record<string, string> }): Record<string, string>;
/** Writes an executable shell script; returns `file`. */
export function writeScript(file: string, body: string): string;
/** Single-quotes a word for sh. */
export function shq(s: string | number): string;

/** An sshd of the test's own on 127.0.0.1 (startSshd). */
export interface Sshd {
  port: number;
  user: string;
  pid: number;
  /** An `ssh` wrapper with the test's key and known_hosts: put it first on the client's PATH. */
  binDir: string;
  /** ssh://USER@127.0.0.1:PORT */
  url: string;
  log(): string;
  stop(): Promise<void>;
}

export function startSshd(dir: string, opts?: { env?: Record<string, string> }): Promise<Sshd>;

/** `podman system service` over a podmanSandbox (startPodmanService). */
export interface PodmanService extends PodmanSandbox {
  sock: string;
  /** unix://SOCK */
  host: string;
  pid(): number | undefined;
  start(): Promise<void>;
  stop(signal?: NodeJS.Signals): Promise<void>;
  log(): string;
}

export function startPodmanService(dir: string, opts?: { sock?: string; insecure?: string[]; runtime?: string }): Promise<PodmanService>;
