/**
 * `--hpc`: Apptainer's defaults on a create request (docs/hpc.md has them side by side). Your
 * own uid inside (`--userns keep-id`; `single` where you have no subordinate range, since
 * keep-id needs one) and your supplementary groups (`--group-add keep-groups`), the host's
 * network, IPC and pid namespaces, your $HOME, the working
 * directory and $TMPDIR (else /tmp) bound at the same paths, the working directory kept, the
 * host's hostname, and the host's environment passed in except a deny list. Every default is
 * only a default: a flag the user gave (`--network`, `--userns`, `--pid private`, `-w`, `-v` to
 * the same destination, `-e`) wins.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { CreateRequest } from '../engine/create';

/**
 * Host variables that are not passed. Apptainer's: PATH (the image's, whose programs are in
 * other places than the host's), LD_LIBRARY_PATH (host library paths would load the host's
 * libraries into the image's programs), PS1 and PROMPT_COMMAND (the prompt is the
 * container's). burrow's own: HOSTNAME (set from the container's hostname) and `_` (the shell's
 * last command). BURROW_* variables are burrow's settings, not the container's.
 */
export const HPC_ENV_DENY = ['PATH', 'LD_LIBRARY_PATH', 'PS1', 'PROMPT_COMMAND', 'HOSTNAME', '_'];
export const HPC_ENV_DENY_PREFIX = 'BURROW_';

/**
 * Variables --hpc sets unless the host's environment or the image sets them (and `-e` wins over
 * both). Open MPI's shared-memory transport (btl vader, Open MPI 4) copies large messages
 * between ranks with CMA (process_vm_readv), which the kernel allows only within one user
 * namespace (or with CAP_SYS_PTRACE over the other's): with every rank in a container of its own,
 * each in its own user namespace, it cannot work. Open MPI notices, warns on every job and copies
 * through the shared segment instead; `none` asks for that copy from the start, without the
 * warning. burrow does not put the containers of one user in one user namespace to let CMA
 * work: that would let one container's processes ptrace another's (docs/hpc.md, "MPI").
 */
export const HPC_ENV_DEFAULTS: Record<string, string> = {
  OMPI_MCA_btl_vader_single_copy_mechanism: 'none',
};

/** --hpc's own variables (HPC_ENV_DEFAULTS) that neither the host's environment nor the image sets. */
export function hpcEnvDefaults(env: Record<string, string | undefined>, imageEnv: string[]): string[] {
  const image = new Set(imageEnv.map((kv) => kv.slice(0, kv.indexOf('='))));
  return Object.entries(HPC_ENV_DEFAULTS)
    .filter(([k]) => env[k] === undefined && !image.has(k))
    .map(([k, v]) => `${k}=${v}`);
}

/** Directories never bound as the working directory (a job started from / or /usr runs there, on the image's tree). */
const SYSTEM_DIRS = ['/', '/bin', '/boot', '/dev', '/etc', '/lib', '/lib32', '/lib64', '/proc', '/run', '/sbin', '/sys', '/usr', '/var'];

/**
 * The host's environment for the container: every variable except the deny list and those the
 * image sets (as in Apptainer, a host variable does not override the image's).
 */
export function hpcEnv(env: Record<string, string | undefined>, imageEnv: string[]): string[] {
  const image = new Set(imageEnv.map((kv) => kv.slice(0, kv.indexOf('='))));
  return Object.entries(env)
    .filter((e): e is [string, string] => e[1] !== undefined && !HPC_ENV_DENY.includes(e[0]) && !e[0].startsWith(HPC_ENV_DENY_PREFIX) && !image.has(e[0]) && !e[0].includes('='))
    .map(([k, v]) => `${k}=${v}`);
}

/** The binds --hpc adds: $HOME, the working directory, $TMPDIR or /tmp, each at its own path. */
export function hpcBinds(env: Record<string, string | undefined>, cwd: string, taken: string[]): string[] {
  const dirs: string[] = [];
  const under = (p: string, d: string) => p === d || p.startsWith(d.endsWith('/') ? d : `${d}/`);
  const add = (p: string | undefined) => {
    if (!p || !path.isAbsolute(p)) return;
    const d = path.resolve(p);
    if (SYSTEM_DIRS.includes(d) || taken.some((t) => path.resolve(t) === d) || dirs.some((x) => under(d, x))) return;
    if (!isDir(d)) return;
    for (let i = dirs.length - 1; i >= 0; i--) if (under(dirs[i]!, d)) dirs.splice(i, 1);
    dirs.push(d);
  };
  add(env.HOME);
  add(env.TMPDIR || '/tmp');
  add(cwd);
  return dirs;
}

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** The destinations of a request's own volumes and mounts (a user's `-v X:Y` for the same Y wins). */
function destinations(req: CreateRequest): string[] {
  const fromVolumes = (req.volumes ?? []).map((v) => v.split(':')[1]).filter((d): d is string => !!d);
  return [...fromVolumes, ...(req.mounts ?? []).map((m) => m.target), ...Object.keys(req.tmpfs ?? {})];
}

/**
 * The request with --hpc's defaults where it has none. `idMode` is the store's ('single' has no
 * subordinate range, where keep-id cannot work); root keeps its ids in every mode.
 */
export function hpcRequest(req: CreateRequest, idMode: string, warn: (m: string) => void, env: Record<string, string | undefined> = process.env, cwd: string = process.cwd()): CreateRequest {
  const rootless = process.getuid?.() !== 0;
  const taken = destinations(req);
  const binds = hpcBinds(env, cwd, taken);
  // The working directory is kept where the container has it: under a bind (ours or the user's).
  const inside = [...binds, ...taken].some((d) => cwd === d || cwd.startsWith(d.endsWith('/') ? d : `${d}/`));
  if (req.workdir === undefined && !inside) warn(`--hpc: the working directory ${cwd} is ${SYSTEM_DIRS.some((d) => cwd === d || cwd.startsWith(`${d}/`)) ? 'a system directory, which is not bound over the image\'s' : 'not bound'}: the container starts in the image's working directory (give -w, or -v ${cwd}:${cwd})`);
  return {
    ...req,
    userns: req.userns ?? (rootless && idMode === 'single' ? 'single' : 'keep-id'),
    // Your supplementary groups too (a project's group-readable directories), as Apptainer keeps them.
    groupAdd: req.groupAdd?.length ? req.groupAdd : ['keep-groups'],
    network: req.network ?? 'host',
    pid: req.pid ?? 'host',
    ipc: req.ipc ?? 'host',
    hostname: req.hostname ?? os.hostname(),
    ...(req.workdir !== undefined ? { workdir: req.workdir } : inside ? { workdir: cwd } : {}),
    volumes: [...(req.volumes ?? []), ...binds.map((d) => `${d}:${d}`)],
  };
}
