/**
 * Shared by the real-client test files (api-docker-cli, api-docker-py, api-compose,
 * api-docker-remote): an Engine API service for the clients to talk to, started by the test, and
 * the Docker clients pointed at it.
 *
 * The service is burrow's (`burrow system service` over a lifecycle.helpers Env, busybox imported
 * as IMAGE) unless BURROW_API_PEER=podman: then it is `podman system service` (everything private
 * under the test's directory; test/harness/docker-clients.mjs) with the same image under the same
 * name, so that the very same tests check themselves against a peer that serves the same API:
 *
 *   BURROW_API_PEER=podman npx vitest run --project integration test/integration/api-docker-cli.test.ts
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, ROOT } from './helpers';
import { IMAGE, setup, type Env } from './lifecycle.helpers';
import { startService, type Service } from './api.helpers';
import { buildClientImages, ptyDrive, type PtyReport, type PtyStep } from '../harness/clients.mjs';
import { dockerCli, dockerConfigEnv, run, shq, startPodmanService, writeScript, type PodmanService } from '../harness/docker-clients.mjs';

export type PeerKind = 'burrow' | 'podman';
export const PEER: PeerKind = process.env.BURROW_API_PEER === 'podman' ? 'podman' : 'burrow';
export { IMAGE };

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOpts {
  input?: string;
  timeoutMs?: number;
  env?: Record<string, string>;
  cwd?: string;
}

/** A client's outcome for a failure message: its last stderr line first (a Python traceback's
 * exception, a CLI's error), as a CI log may show only the message's first lines. */
export const show = (r: Result): string =>
  `exit ${r.code}: ${r.stderr.trim().split('\n').pop() ?? ''}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;

export interface ApiPeer {
  kind: PeerKind;
  /** The test's own directory (readable by the test's user only as far as needed). */
  work: string;
  sock: string;
  /** `unix://SOCK`, for DOCKER_HOST. */
  host: string;
  /** The busybox test image, by the name the clients use. */
  image: string;
  /** The environment of a Docker client under work (own DOCKER_CONFIG and HOME), DOCKER_HOST set. */
  clientEnv(extra?: Record<string, string>, binDirs?: string[]): Record<string, string>;
  /** The docker 20.10 CLI against this service. */
  docker(args: string[], opts?: RunOpts): Promise<Result>;
  /** Its argv with the environment spelled out (for ptyDrive and sh -c pipelines). */
  dockerArgv(args: string[], env?: Record<string, string>): string[];
  /** The CLI at a real terminal (test/harness/ptydrive.py). */
  dockerTty(steps: PtyStep[], args: string[]): Promise<PtyReport>;
  /** Stops the service (SIGTERM: in-flight requests finish) and starts it again on the same socket. */
  restart(): Promise<void>;
  /** Kills the service with SIGKILL (its containers live on under their monitors). */
  kill(): Promise<void>;
  /** Starts the service again (after kill()) on the same socket. */
  start(): Promise<void>;
  /** The service's pid now. */
  servicePid(): number | undefined;
  /** What the service logged (for failure messages). */
  log(): string;
  /**
   * The environment of a remote session (ssh) in which `docker system dial-stdio` reaches this
   * service: PATH starts with a directory whose `docker` is burrow's docker compatibility
   * command (for burrow: `docker` runs burrow with the same arguments, and burrow's own
   * `system dial-stdio` finds the service at the store's default socket; for podman, whose 4.3
   * has no dial-stdio, the docker CLI's own dial-stdio to podman's socket).
   */
  remoteEnv(): Record<string, string>;
  /** Stops the service and removes everything (containers first, through the peer's own CLI). */
  dispose(): Promise<void>;
}

/** Reads a timestamp the docker CLI accepts for --since (seconds, with fractions). */
export const nowSeconds = (): string => (Date.now() / 1000).toFixed(3);

/**
 * Starts the API peer under test for one test file. `insecure`: registries (host:port) the
 * service may use over plain HTTP (the loopback test registry).
 */
export async function startApi(tag: string, { insecure = [] as string[] } = {}): Promise<ApiPeer> {
  return PEER === 'podman' ? startPodmanPeer(tag, insecure) : startBurrowPeer(tag, insecure);
}

function baseClient(work: string, host: string): Pick<ApiPeer, 'clientEnv' | 'docker' | 'dockerArgv' | 'dockerTty'> {
  const cli = dockerCli() as string;
  const clientEnv = (extra: Record<string, string> = {}, binDirs: string[] = []): Record<string, string> => dockerConfigEnv(work, host, { binDirs, extra });
  const dockerArgv = (args: string[], env = clientEnv()): string[] => ['env', '-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), cli, ...args];
  return {
    clientEnv,
    docker: (args, opts = {}) => run(cli, args, { env: opts.env ?? clientEnv(), input: opts.input, timeoutMs: opts.timeoutMs ?? 120_000, cwd: opts.cwd }),
    dockerArgv,
    dockerTty: (steps, args) => ptyDrive(steps, dockerArgv(args)),
  };
}

async function startBurrowPeer(tag: string, insecure: string[]): Promise<ApiPeer> {
  const env: Env = setup(tag);
  // The clients run as this test's user: the test's directory must be theirs to enter (it is).
  const sock = path.join(env.runroot, 'burrow.sock');
  fs.mkdirSync(env.runroot, { recursive: true });
  const envVars: Record<string, string> = insecure.length ? { BURROW_INSECURE_REGISTRIES: insecure.join(',') } : {};
  let svc: Service = await startService(env, { sock, envVars });
  const shimDir = path.join(env.work, 'shim');
  fs.mkdirSync(shimDir, { recursive: true });
  // The docker compatibility command's behaviour: `docker ARGS` is `burrow ARGS` (so `docker
  // system dial-stdio` is burrow's, which relays to the service at the store's default socket).
  // The shipped command (contrib/docker, what `install.sh --docker-shim` links), or another one
  // named by BURROW_DOCKER_SHIM; `stand-in` is a plain `exec burrow "$@"`.
  const shim = process.env.BURROW_DOCKER_SHIM ?? path.join(ROOT, 'contrib', 'docker');
  if (shim !== 'stand-in') fs.symlinkSync(path.resolve(shim), path.join(shimDir, 'docker'));
  else writeScript(path.join(shimDir, 'docker'), `exec ${shq(process.execPath)} ${shq(BIN)} "$@"`);
  const start = async (): Promise<void> => {
    svc = await startService(env, { sock, envVars });
  };
  return {
    kind: 'burrow',
    work: env.work,
    sock,
    host: `unix://${sock}`,
    image: IMAGE,
    ...baseClient(env.work, `unix://${sock}`),
    async restart() {
      await svc.stop();
      await start();
    },
    async kill() {
      await svc.stop('SIGKILL');
    },
    start,
    servicePid: () => svc.child.pid,
    log: () => svc.stderr(),
    remoteEnv: () => ({
      PATH: `${shimDir}:${process.env.PATH ?? '/usr/bin:/bin'}`,
      HOME: os.homedir(),
      BURROW_ROOT: env.store,
      BURROW_RUNROOT: env.runroot,
      ...envVars,
    }),
    async dispose() {
      await svc.stop();
      env.dispose();
    },
  };
}

async function startPodmanPeer(tag: string, insecure: string[]): Promise<ApiPeer> {
  // Short: podman refuses a runroot path longer than 50 characters.
  const work = fs.mkdtempSync(path.join(os.tmpdir(), `bap-${tag.slice(0, 6)}-`));
  fs.chmodSync(work, 0o755);
  const images = buildClientImages(path.join(work, 'img')) as { busybox: { archive: string; ref: string } };
  const svc: PodmanService = await startPodmanService(path.join(work, 'p'), { insecure });
  for (const args of [
    ['load', '-i', images.busybox.archive],
    ['tag', images.busybox.ref, IMAGE],
  ]) {
    const r = await svc.podman(args);
    if (r.code !== 0) throw new Error(`podman ${args.join(' ')}: ${show(r)}`);
  }
  const shimDir = path.join(work, 'shim');
  fs.mkdirSync(shimDir);
  writeScript(path.join(shimDir, 'docker'), `exec ${shq(dockerCli())} -H ${shq(svc.host)} "$@"`);
  return {
    kind: 'podman',
    work,
    sock: svc.sock,
    host: svc.host,
    image: IMAGE,
    ...baseClient(work, svc.host),
    restart: async () => {
      await svc.stop();
      await svc.start();
    },
    kill: () => svc.stop('SIGKILL'),
    start: () => svc.start(),
    servicePid: () => svc.pid(),
    log: () => svc.log(),
    remoteEnv: () => ({ PATH: `${shimDir}:${process.env.PATH ?? '/usr/bin:/bin'}`, HOME: os.homedir() }),
    async dispose() {
      await svc.cleanup();
      fs.rmSync(work, { recursive: true, force: true });
    },
  };
}

/**
 * Where podman 4.3's compat API differs from Docker's (what the docker CLI then shows), found by
 * running these tests with BURROW_API_PEER=podman. Those assertions are Docker's behaviour, kept
 * for burrow; against podman they are left out (so that the rest of the test still checks the
 * test itself). Never consulted for burrow.
 */
export const PODMAN_DEVIATIONS = {
  /** `docker run --rm` exits 0 whatever the container's status (wait condition "removed"). */
  runRmExitStatus: 'run --rm exit status',
  /** A command that is not found: 409 on the attach upgrade, the CLI exits 1 instead of 127. */
  startFailureStatus: 'exit status of a start failure',
  /** Config.Image (ps IMAGE) is the normalised name, not what the client gave. */
  imageAsGiven: 'Config.Image as given',
  /** stats: Name without Docker's leading "/" (the CLI cuts its first character). */
  statsName: 'stats Name',
  /** pull: no "Digest: sha256:…" status in the progress stream. */
  pullDigestLine: 'pull Digest line',
  /** system/df: LayersSize 0. */
  dfLayersSize: 'df LayersSize',
  /** build: buildah's own step lines (`STEP 1/8: FROM`), not the classic builder's `Step 1/8 : FROM`. */
  buildStepLines: 'build Step lines',
  /** build: the image's tags are the normalised names (`docker.io/built/py:1`), not as given. */
  buildTagsAsGiven: 'build tags as given',
  /** networks/create of a taken name: 500, not 409; an overlapping subnet or a bad one: not Docker's 403/400. */
  networkCreateStatuses: 'network create statuses',
  /** An endpoint's NetworkID is the network's name, not its id, and its EndpointID is empty. */
  endpointIds: 'endpoint NetworkID and EndpointID',
  /** network rm of a network in use: podman's words (`has associated containers with it`), not Docker's. */
  networkRmInUseWords: 'network rm in use words',
  /** An endpoint's MacAddress is random, not Docker's 02:42 and the address. */
  endpointMac: 'endpoint MacAddress',
} as const;

/** Whether a Docker behaviour is checked against this peer (always for burrow). */
export function checks(deviation: (typeof PODMAN_DEVIATIONS)[keyof typeof PODMAN_DEVIATIONS]): boolean {
  return PEER !== 'podman' || !Object.values(PODMAN_DEVIATIONS).includes(deviation);
}

/** Polls `pred` every 100 ms until it holds or `ms` pass (a safety limit, not a timed assertion). */
export async function until(pred: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await pred()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`gave up after ${ms} ms waiting for ${what}`);
}
