/**
 * `burrow bundle IMAGE DIR`: an image of the store as an OCI runtime bundle (DIR/config.json and
 * DIR/rootfs) for a runtime that burrow does not drive itself: Slurm's oci.conf
 * (`srun --container=DIR`), containerd, podman, or burrow-runtime and runc by hand, typically run
 * rootless by the job's user. docs/bundle.md is the user's page.
 *
 * The rootfs is a plain directory: the image's layers copied in order by `burrow-runtime unpack`
 * (its `layers` job, the copy driver's code), whiteouts applied. Who owns its files depends on
 * the id mapping the bundle's config.json gives its user namespace (`--userns`):
 *
 *   root     (default) container root is the caller, one id mapped (`runc spec --rootless`, and
 *            Slurm's guide, do that): every file is the caller's, set-id bits dropped. Needs no
 *            subordinate range and no newuidmap: what a runtime run by the job's user can do.
 *   keep-id  the caller keeps their uid and gid inside and the process runs as them; the files
 *            are theirs as in `root`. Container root must be mapped too (burrow-runtime and runc
 *            set the container up as it), to a subordinate id: needs a range and newuidmap.
 *   subids   the store's own mapping (container 0 the caller, 1..N the subordinate range); files
 *            keep the owners the image gives them, shifted into the range. Needs newuidmap.
 *   host     (root only) no user namespace, the image's owners as they are: for rootful runtimes.
 *
 * Nothing half-made is ever at DIR: the bundle is written to DIR.tmp-PID-XXXX beside it and
 * renamed into place; a failure or a signal (Ctrl-C, Slurm's SIGTERM) removes the temporary tree,
 * and one left by a killed command (its pid gone) is removed by the next bundle of that DIR.
 */
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DEFAULT_CAPS, resolveUser } from '../container/spec';
import { keepIdMap } from '../container/userns';
import { BurrowError } from '../errors';
import type { ContainerConfig } from '../image/manifest';
import { pidAlive } from '../storage/fsutil';
import type { IdMap, StorageSettings } from '../storage/store';
import type { EngineContext } from './context';
import type { CreateHooks, PullPolicy } from './create';

export const BUNDLE_USERNS = ['root', 'keep-id', 'subids', 'host'] as const;
export type BundleUserns = (typeof BUNDLE_USERNS)[number];

export interface BundleRequest {
  /** The image reference as given (`busybox`, `registry:5000/app:1`, an id), as `run` takes it. */
  image: string;
  /** The bundle directory (made; an existing one must be empty, or a bundle with `force`). */
  dir: string;
  /** Replaces the image's Cmd when not empty (Entrypoint kept), as `run IMAGE CMD…`. */
  command?: string[];
  /** Default `root`. */
  userns?: BundleUserns;
  /** `host` (default: the node's network, as HPC jobs expect) or `none` (a network namespace of its own). */
  network?: 'host' | 'none';
  /** Replace an existing bundle at `dir`. */
  force?: boolean;
  /** A read-only root with tmpfs on /tmp, /var/tmp and /run (many tasks may share one bundle). */
  readOnly?: boolean;
  pull?: PullPolicy;
  platform?: string;
}

export interface BundleReport {
  dir: string;
  imageId: string;
  userns: BundleUserns;
  uidMappings: IdMap[];
  gidMappings: IdMap[];
  user: { uid: number; gid: number };
  files: number;
  bytes: number;
  /** Set-id bits left out of files (root and keep-id). */
  setidDropped: number;
}

interface CopyStats {
  files: number;
  dirs: number;
  bytes: number;
  skipped: number;
  setidDropped?: number;
}

/** What the request's mapping means for the config and the copy. */
interface Plan {
  userNamespace: boolean;
  uidMap: IdMap[];
  gidMap: IdMap[];
  /** The process's user when the image's USER is not used. */
  user?: { uid: number; gid: number };
  /** Copy owners: the layers' (`keep`) or the copying process's (`caller`). */
  owners: 'keep' | 'caller';
}

const RANGE_FIX = 'an administrator can give you a subordinate id range in /etc/subuid and /etc/subgid (`burrow info` suggests a free one), then run `burrow system migrate`; or use the default, --userns root, which needs none';

/** The mapping of a mode for the caller (uid, gid) with the store's settings. */
export function bundlePlan(mode: BundleUserns, s: StorageSettings, uid: number, gid: number): Plan {
  if (mode === 'host') {
    if (uid !== 0) {
      throw new BurrowError('EUSAGE', '--userns host makes a bundle without a user namespace, for a runtime run as root: only root can run it, and only root can give the files the image\'s owners', 'use --userns root (the default) for a runtime run by you');
    }
    return { userNamespace: false, uidMap: [], gidMap: [], owners: 'keep' };
  }
  if (mode === 'subids') {
    if (uid !== 0 && s.idMode !== 'subuid') {
      throw new BurrowError('EUSAGE', '--userns subids needs a subordinate id range: this store maps your own id only (single-id mode)', RANGE_FIX);
    }
    return { userNamespace: true, uidMap: s.uidMap, gidMap: s.gidMap, owners: 'keep' };
  }
  if (mode === 'keep-id' && uid !== 0) {
    if (s.idMode !== 'subuid') {
      throw new BurrowError(
        'EUSAGE',
        '--userns keep-id needs a subordinate id range: the runtime sets a container up as container root, which must be mapped besides your own id, and a single id is all you can map without one',
        RANGE_FIX,
      );
    }
    return { userNamespace: true, uidMap: keepIdMap(s.uidMap, uid), gidMap: keepIdMap(s.gidMap, gid), user: { uid, gid }, owners: 'caller' };
  }
  // root, and keep-id for root (whose own id is container root's).
  return { userNamespace: true, uidMap: [[0, uid, 1]], gidMap: [[0, gid, 1]], user: { uid: 0, gid: 0 }, owners: 'caller' };
}

function isMapped(map: IdMap[], id: number): boolean {
  return map.some(([c, , n]) => id >= c && id < c + n);
}

/** Entries of an existing DIR that --force may replace: what a bundle holds. */
const BUNDLE_ENTRIES = new Set(['config.json', 'rootfs']);

/**
 * Checks DIR before anything is pulled or written: absent, or an empty directory, or (with
 * `force`) a bundle. `--force` never replaces a directory holding anything else: a slip
 * (`burrow bundle --force IMG ~`) must not cost a home directory.
 */
export function checkBundleDir(dir: string, force: boolean): 'absent' | 'empty' | 'bundle' {
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'absent';
    throw new BurrowError('EUSAGE', `${dir}: ${(err as Error).message}`);
  }
  if (!st.isDirectory()) throw new BurrowError('EBUNDLE_EXISTS', `${dir} exists and is not a directory`, 'name a new directory for the bundle');
  const names = fs.readdirSync(dir);
  if (names.length === 0) return 'empty';
  const others = names.filter((n) => !BUNDLE_ENTRIES.has(n));
  if (others.length) {
    throw new BurrowError(
      'EBUNDLE_EXISTS',
      `${dir} exists and holds files that are not a bundle's (${others.slice(0, 5).join(', ')}${others.length > 5 ? ', …' : ''})`,
      force ? '--force replaces only a bundle (config.json and rootfs); name a new directory, or empty this one yourself' : 'name a new directory for the bundle',
    );
  }
  if (!force) throw new BurrowError('EBUNDLE_EXISTS', `${dir} exists and is not empty (a bundle is there)`, 'name a new directory, or replace that bundle with --force');
  return 'bundle';
}

/** Temporary trees of DIR (`DIR.tmp-PID-…`, `DIR.old-PID-…`) whose command is gone. */
function staleTrees(dir: string): string[] {
  const parent = path.dirname(dir);
  const base = path.basename(dir);
  let names: string[];
  try {
    names = fs.readdirSync(parent);
  } catch {
    return [];
  }
  return names
    .filter((n) => n.startsWith(`${base}.`))
    .map((n) => /^\.(?:tmp|old)-(\d+)-[A-Za-z0-9]{6}$/.exec(n.slice(base.length)))
    .filter((m): m is RegExpExecArray => !!m && Number(m[1]) !== process.pid && !pidAlive(Number(m[1])))
    .map((m) => path.join(parent, `${base}${m[0]}`));
}

/**
 * Makes the bundle. The image is found as `run` finds it, or pulled through `hooks.pull` as the
 * pull policy allows.
 */
export async function makeBundle(ctx: EngineContext, req: BundleRequest, hooks: CreateHooks = {}): Promise<BundleReport> {
  const warn = (m: string): void => hooks.warn?.(m);
  const mode = req.userns ?? 'root';
  if (!(BUNDLE_USERNS as readonly string[]).includes(mode)) throw new BurrowError('EUSAGE', `invalid --userns ${mode}: want ${BUNDLE_USERNS.join(', ')}`);
  const network = req.network ?? 'host';
  if (network !== 'host' && network !== 'none') throw new BurrowError('EUSAGE', `invalid --network ${String(network)}: want host (the node's network, the default) or none (a network namespace of its own, with loopback only)`);
  if (!req.dir) throw new BurrowError('EUSAGE', 'no bundle directory given');
  const dir = path.resolve(req.dir);
  if (dir === path.parse(dir).root) throw new BurrowError('EUSAGE', 'the bundle directory cannot be /');
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  const settings = await ctx.settings();
  const plan = bundlePlan(mode, settings, uid, gid);
  const existing = checkBundleDir(dir, !!req.force);
  const { resolveImage } = await import('./create');
  const img = await resolveImage(ctx, req, hooks);
  const { ensureLayers } = await import('../storage/rootfs');
  await ensureLayers(ctx.store, settings, img);
  const { removeTrees, runInUserns } = await import('../storage/unpack');
  const stale = staleTrees(dir);
  if (stale.length) await removeTrees(settings, stale).catch(() => undefined);

  const { parseImageConfig } = await import('../image/manifest');
  const config = parseImageConfig(fs.readFileSync(ctx.store.blobPath(img.configDigest)));
  const layerDirs = [...img.layers].reverse().map((l) => ctx.store.layerDir(l.diffId));
  const user = processUser(mode, plan, config.config?.User, layerDirs, warn);
  const spec = bundleSpec(config.config ?? {}, { ...plan, user, network, readOnly: !!req.readOnly, command: req.command ?? [], imageId: img.id, mode }, warn);

  fs.mkdirSync(path.dirname(dir), { recursive: true });
  const tmp = fs.mkdtempSync(`${dir}.tmp-${process.pid}-`);
  // A signal stops the copy and undoes it; the runtime is killed with its user namespace.
  let child: ChildProcess | undefined;
  let signalled: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals): void => {
    signalled ??= sig;
    child?.kill('SIGKILL');
  };
  const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of SIGNALS) process.on(s, onSignal);
  let stats: CopyStats;
  try {
    fs.chmodSync(tmp, 0o755);
    const rootfs = path.join(tmp, 'rootfs');
    fs.mkdirSync(rootfs, { mode: 0o755 });
    const job = { layers: img.layers.map((l) => ctx.store.layerDir(l.diffId)), dest: rootfs, owners: plan.owners };
    const [r] = await runInUserns<CopyStats>(settings, [job], 'overlay', { onSpawn: (c) => (child = c) });
    if (signalled) throw interrupted(dir, signalled);
    if (!r?.ok || !r.stats) throw new BurrowError('EROOTFS_COPY', `copying the image's layers into ${rootfs} failed: ${r?.error ?? 'no result'}`);
    stats = r.stats;
    writeFileSynced(path.join(tmp, 'config.json'), `${JSON.stringify(spec, null, 2)}\n`);
    if (signalled) throw interrupted(dir, signalled);
    await putInPlace(settings, tmp, dir, existing);
  } catch (err) {
    await removeTrees(settings, [tmp]).catch(() => undefined);
    if (signalled && !(err instanceof BurrowError && err.code === 'ECANCELED')) throw interrupted(dir, signalled);
    throw err;
  } finally {
    for (const s of SIGNALS) process.off(s, onSignal);
  }
  return {
    dir,
    imageId: img.id,
    userns: mode,
    uidMappings: plan.uidMap,
    gidMappings: plan.gidMap,
    user,
    files: stats.files,
    bytes: stats.bytes,
    setidDropped: stats.setidDropped ?? 0,
  };
}

function interrupted(dir: string, sig: NodeJS.Signals): BurrowError {
  return new BurrowError('ECANCELED', `bundle ${dir}: interrupted (${sig}); nothing was left behind`);
}

function writeFileSynced(file: string, text: string): void {
  const fd = fs.openSync(file, 'wx', 0o644);
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The finished tree becomes DIR in one rename. An empty DIR is replaced by the rename itself; a
 * bundle there (--force) is moved aside first and removed after, so that DIR is never a mix.
 */
async function putInPlace(settings: StorageSettings, tmp: string, dir: string, existing: 'absent' | 'empty' | 'bundle'): Promise<void> {
  if (existing !== 'bundle') {
    fs.renameSync(tmp, dir);
    return;
  }
  const old = fs.mkdtempSync(`${dir}.old-${process.pid}-`);
  fs.rmdirSync(old);
  fs.renameSync(dir, old);
  try {
    fs.renameSync(tmp, dir);
  } catch (err) {
    fs.renameSync(old, dir);
    throw err;
  }
  // Its files may belong to subordinate ids (a subids bundle): removed in the store's namespace.
  const { removeTrees } = await import('../storage/unpack');
  await removeTrees(settings, [old]).catch(() => undefined);
}

/**
 * The process's user: the image's USER where the mapping has it (subids, host), the caller
 * (keep-id), container root (root). A USER the mapping lacks runs as container root after a
 * warning, as `run` does in single-id mode: switching to an unmapped id fails (EINVAL).
 */
function processUser(mode: BundleUserns, plan: Plan, imageUser: string | undefined, layerDirs: string[], warn: (m: string) => void): { uid: number; gid: number } {
  if (plan.user && mode === 'keep-id') return plan.user;
  const named = imageUser || undefined;
  const wanted = resolveUser(named, layerDirs);
  if (!plan.userNamespace || (isMapped(plan.uidMap, wanted.uid) && isMapped(plan.gidMap, wanted.gid))) return wanted;
  const fix = mode === 'root' ? '--userns keep-id to run as your own uid, or --userns subids to keep the image\'s users (both need a subordinate id range)' : 'ask an administrator for a larger subordinate id range';
  warn(
    `the image's user ${named} (uid ${wanted.uid}, gid ${wanted.gid}) is not mapped by --userns ${mode} (${plan.uidMap.map(([c, h, n]) => `${c}->${h}${n > 1 ? `+${n}` : ''}`).join(', ')}): the bundle runs as container root, which is you outside; for that user: ${fix}`,
  );
  return { uid: 0, gid: 0 };
}

interface SpecParams extends Plan {
  user: { uid: number; gid: number };
  network: 'host' | 'none';
  readOnly: boolean;
  command: string[];
  imageId: string;
  mode: BundleUserns;
}

interface OciMount {
  destination: string;
  type: string;
  source: string;
  options?: string[];
}

/**
 * The bundle's config.json: the process from the image (Entrypoint + Cmd, Env, WorkingDir, the
 * user), and otherwise what `runc spec --rootless` (and `burrow-runtime spec --rootless`) write,
 * for a job rather than a service:
 *   - namespaces user (unless host), mount, pid, ipc, uts; a network namespace only with
 *     `--network none`: a job uses the node's network (MPI, the file systems' clients);
 *   - no hostname: the UTS namespace starts with the node's name, which MPI and job scripts use;
 *   - /sys bound from the host when the network is the host's (sysfs may be mounted only by the
 *     owner of the network namespace), the host's /etc/resolv.conf and /etc/hosts bound read-only
 *     there, as Docker's host network copies them;
 *   - devpts without gid=5 unless group 5 is mapped;
 *   - no rlimits (the job's own limits are inherited: a bundle's fixed hard limit above the
 *     node's could not be set), no cgroup namespace or mount, no seccomp filter (MPI's shared
 *     memory transports use process_vm_readv, which Docker's profile refuses): as runc's spec;
 *   - capabilities: Docker's default set for container root; none but the bounding set for
 *     another user, as Docker gives a non-root user.
 */
export function bundleSpec(ic: ContainerConfig, p: SpecParams, warn: (m: string) => void = () => undefined): object {
  const args = [...(ic.Entrypoint ?? []), ...(p.command.length ? p.command : (ic.Cmd ?? []))];
  if (!args.length) warn('the image has no Entrypoint or Cmd and no command was given: process.args is empty, so whoever runs the bundle must give one (srun --container does)');
  const env = new Map<string, string>();
  for (const kv of ic.Env ?? []) {
    const i = kv.indexOf('=');
    if (i > 0) env.set(kv.slice(0, i), kv.slice(i + 1));
  }
  if (!env.has('PATH')) env.set('PATH', '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
  const hostNet = p.network === 'host';
  const gid5 = !p.userNamespace || isMapped(p.gidMap, 5);
  const mounts: OciMount[] = [
    { destination: '/proc', type: 'proc', source: 'proc' },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', ...(gid5 ? ['gid=5'] : [])] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    hostNet
      ? { destination: '/sys', type: 'none', source: '/sys', options: ['rbind', 'nosuid', 'noexec', 'nodev', 'ro'] }
      : { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
  ];
  if (hostNet) {
    for (const f of ['/etc/resolv.conf', '/etc/hosts']) {
      if (fs.existsSync(f)) mounts.push({ destination: f, type: 'none', source: f, options: ['bind', 'ro', 'nosuid', 'nodev', 'noexec'] });
    }
  }
  if (p.readOnly) {
    for (const d of ['/tmp', '/var/tmp', '/run']) mounts.push({ destination: d, type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777'] });
  }
  const root = p.user.uid === 0;
  const caps = [...DEFAULT_CAPS];
  const namespaces = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, ...(p.userNamespace ? [{ type: 'user' }] : []), ...(hostNet ? [] : [{ type: 'network' }])];
  const toOci = (m: IdMap[]) => m.map(([containerID, hostID, size]) => ({ containerID, hostID, size }));
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: p.user.uid, gid: p.user.gid },
      args,
      env: [...env].map(([k, v]) => `${k}=${v}`),
      cwd: ic.WorkingDir || '/',
      capabilities: root ? { bounding: caps, effective: caps, permitted: caps } : { bounding: caps },
      noNewPrivileges: true,
    },
    root: { path: 'rootfs', readonly: p.readOnly },
    mounts,
    annotations: { 'run.burrow.bundle.image': p.imageId, 'run.burrow.bundle.userns': p.mode },
    linux: {
      ...(p.userNamespace ? { uidMappings: toOci(p.uidMap), gidMappings: toOci(p.gidMap) } : {}),
      namespaces,
      maskedPaths: ['/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/sys/firmware', '/proc/scsi'],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}
