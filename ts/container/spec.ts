/**
 * OCI runtime config for a container, from the image's config and `run`'s flags, with Docker's
 * defaults: its capability set, a seccomp profile, the usual mounts, /etc/hosts, /etc/hostname
 * and /etc/resolv.conf from the container's directory, and every namespace (user included, with
 * the store's id mapping).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BurrowError } from '../errors';
import type { ImageConfig } from '../image/manifest';
import type { IdMap } from '../storage/store';
import { defaultSeccomp } from './seccomp';

export const DEFAULT_CAPS = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID', 'CAP_SETUID',
  'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
];
const ALL_CAPS = [
  'CHOWN', 'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID', 'SETPCAP', 'LINUX_IMMUTABLE',
  'NET_BIND_SERVICE', 'NET_BROADCAST', 'NET_ADMIN', 'NET_RAW', 'IPC_LOCK', 'IPC_OWNER', 'SYS_MODULE', 'SYS_RAWIO',
  'SYS_CHROOT', 'SYS_PTRACE', 'SYS_PACCT', 'SYS_ADMIN', 'SYS_BOOT', 'SYS_NICE', 'SYS_RESOURCE', 'SYS_TIME',
  'SYS_TTY_CONFIG', 'MKNOD', 'LEASE', 'AUDIT_WRITE', 'AUDIT_CONTROL', 'SETFCAP', 'MAC_OVERRIDE', 'MAC_ADMIN', 'SYSLOG',
  'WAKE_ALARM', 'BLOCK_SUSPEND', 'AUDIT_READ', 'PERFMON', 'BPF', 'CHECKPOINT_RESTORE',
].map((c) => `CAP_${c}`);

export interface SpecOptions {
  args: string[];
  /** Replaces the image's Entrypoint; [] resets it. */
  entrypoint?: string[];
  env: string[];
  workdir?: string;
  user?: string;
  hostname: string;
  tty: boolean;
  readOnly: boolean;
  capAdd: string[];
  capDrop: string[];
  privileged: boolean;
  noNewPrivileges: boolean;
  seccomp: 'default' | 'unconfined' | object;
  ulimits: string[];
  network: 'none' | 'host' | 'private';
  uidMap: IdMap[];
  gidMap: IdMap[];
  /** Extra mounts (volumes, binds, tmpfs) in OCI form. */
  mounts: OciMount[];
  /** Files in the container's directory bound over /etc/{hosts,hostname,resolv.conf}. */
  etcFiles: { hosts: string; hostname: string; resolv: string };
  /** The image's layer directories, top first, or a one-file image's /etc files (for user and group names). */
  layerDirs: EtcSource[];
  /** overlay options and the directory relative lowerdirs are in. */
  overlay?: { options: string; cwd: string };
  annotations: Record<string, string>;
  stopSignal?: string;
  /** linux.resources (limits); the runtime then places the container in its own cgroup. */
  resources?: Record<string, unknown>;
  /** linux.cgroupsPath: the container's own cgroup on cgroup v2 (ts/container/cgroup.ts). */
  cgroupsPath?: string;
  /** false: no user namespace (`--userns host`, root only); the id maps are then ignored. */
  userNamespace?: boolean;
  /** The process's user when `-u` is not given, over the image's (`--userns keep-id`). */
  defaultUser?: { uid: number; gid: number };
  /** `--group-add`: group names (from the image) or ids, or `keep-groups` alone. */
  groupAdd?: string[];
  /** `--device`, parsed by parseDevice. */
  devices?: DeviceSpec[];
  /** `--init`: the host's static init binary, bound at INIT_PATH and run as pid 1. */
  init?: { hostPath: string; containerPath: string };
  /** `--pid host`, `--ipc host` (`--hpc`'s defaults): the host's namespace, its /proc, /dev/shm and /dev/mqueue bound. */
  pid?: 'host' | 'private';
  ipc?: 'host' | 'private';
}

/** A host device for the container: linux.devices, or a bind mount (see deviceEntries). */
export interface DeviceSpec {
  hostPath: string;
  path: string;
  type: 'c' | 'b';
  major: number;
  minor: number;
  fileMode: number;
  uid: number;
  gid: number;
  permissions: string;
}

export interface OciMount {
  destination: string;
  type: string;
  source: string;
  options?: string[];
}

/**
 * Where an image's /etc/passwd and /etc/group are: a layer directory, or the files themselves as
 * read from a one-file image (ts/storage/squash.ts), which are never written to disk for it.
 */
export type EtcSource = string | { passwd?: Buffer | undefined; group?: Buffer | undefined };

/**
 * The entries of the image's /etc/passwd or /etc/group, split into fields, from the top layer
 * that has the file; none when the top layer that names it whites it out (or none has it).
 */
function etcEntries(layerDirs: EtcSource[], file: 'passwd' | 'group'): string[][] {
  for (const dir of layerDirs) {
    if (typeof dir !== 'string') {
      const bytes = dir[file];
      if (bytes === undefined) continue;
      return bytes.toString('utf8').split('\n').map((line) => line.split(':'));
    }
    const p = path.join(dir, 'etc', file);
    let text: string;
    try {
      const st = fs.lstatSync(p);
      if (!st.isFile()) {
        if (st.isCharacterDevice()) return []; // whited out
        continue;
      }
      text = fs.readFileSync(p, 'utf8');
    } catch {
      continue;
    }
    return text.split('\n').map((line) => line.split(':'));
  }
  return [];
}

/** Looks a user or group name up in the image's /etc files, top layer first. */
export function lookupId(layerDirs: EtcSource[], file: 'passwd' | 'group', name: string): { id: number; gid?: number } | undefined {
  const f = etcEntries(layerDirs, file).find((e) => e[0] === name && e[2] !== undefined);
  return f ? { id: Number(f[2]), ...(file === 'passwd' && f[3] ? { gid: Number(f[3]) } : {}) } : undefined;
}

/** The primary group of a numeric uid in the image's /etc/passwd, top layer first (`-u 1000`). */
export function passwdGidOf(layerDirs: EtcSource[], uid: number): number | undefined {
  const f = etcEntries(layerDirs, 'passwd').find((e) => e[2] !== undefined && /^\d+$/.test(e[2]) && Number(e[2]) === uid && e[3] && /^\d+$/.test(e[3]));
  return f ? Number(f[3]) : undefined;
}

/** Resolves Docker's `-u user[:group]` against the image. */
export function resolveUser(spec: string | undefined, layerDirs: EtcSource[]): { uid: number; gid: number } {
  if (!spec) return { uid: 0, gid: 0 };
  const [u = '', g] = spec.split(':');
  let uid: number;
  let gid: number | undefined;
  if (/^\d+$/.test(u)) {
    uid = Number(u);
    // A uid alone takes its group from the image's passwd; a uid that is not there, a group
    // of the same number (issue 12: `-u 1000` runs as 1000:1000).
    if (g === undefined) gid = passwdGidOf(layerDirs, uid) ?? uid;
  } else {
    const found = lookupId(layerDirs, 'passwd', u);
    if (!found) throw new BurrowError('EUSAGE', `unable to find user ${u}: no matching entries in passwd file`);
    uid = found.id;
    gid = found.gid;
  }
  if (g !== undefined) {
    if (/^\d+$/.test(g)) gid = Number(g);
    else {
      const found = lookupId(layerDirs, 'group', g);
      if (!found) throw new BurrowError('EUSAGE', `unable to find group ${g}: no matching entries in group file`);
      gid = found.id;
    }
  }
  return { uid, gid: gid ?? 0 };
}

function capList(opts: SpecOptions): string[] {
  if (opts.privileged) return ALL_CAPS;
  const norm = (c: string) => (c.toUpperCase().startsWith('CAP_') ? c.toUpperCase() : `CAP_${c.toUpperCase()}`);
  let caps = new Set(DEFAULT_CAPS);
  for (const c of opts.capAdd) {
    if (c.toUpperCase() === 'ALL') caps = new Set(ALL_CAPS);
    else caps.add(norm(c));
  }
  for (const c of opts.capDrop) {
    if (c.toUpperCase() === 'ALL') caps.clear();
    else caps.delete(norm(c));
  }
  for (const c of caps) if (!ALL_CAPS.includes(c)) throw new BurrowError('EUSAGE', `unknown capability ${c}`);
  return [...caps];
}

const RLIMITS: Record<string, string> = {
  core: 'RLIMIT_CORE', cpu: 'RLIMIT_CPU', data: 'RLIMIT_DATA', fsize: 'RLIMIT_FSIZE', locks: 'RLIMIT_LOCKS',
  memlock: 'RLIMIT_MEMLOCK', msgqueue: 'RLIMIT_MSGQUEUE', nice: 'RLIMIT_NICE', nofile: 'RLIMIT_NOFILE', nproc: 'RLIMIT_NPROC',
  rss: 'RLIMIT_RSS', rtprio: 'RLIMIT_RTPRIO', rttime: 'RLIMIT_RTTIME', sigpending: 'RLIMIT_SIGPENDING', stack: 'RLIMIT_STACK',
};

export function parseUlimit(s: string): { type: string; soft: number; hard: number } {
  const m = /^([a-z]+)=(-?\d+)(?::(-?\d+))?$/.exec(s);
  const type = m ? RLIMITS[m[1]!] : undefined;
  if (!m || !type) throw new BurrowError('EUSAGE', `invalid --ulimit ${s}: want NAME=SOFT[:HARD], NAME one of ${Object.keys(RLIMITS).join(', ')}`);
  const val = (v: string) => (Number(v) < 0 ? 2 ** 64 - 1 : Number(v));
  const soft = val(m[2]!);
  return { type, soft, hard: m[3] !== undefined ? val(m[3]) : soft };
}

/**
 * Docker's `--device HOST[:CONTAINER][:PERMISSIONS]`. Rootless, the device is the host's node
 * bound into the container, so it works only if this user may open it; that is checked here,
 * for the access the permissions ask (r, w; m, mknod, has no meaning without privileges),
 * rather than left to a failure inside the container.
 */
export function parseDevice(spec: string): DeviceSpec {
  const parts = spec.split(':');
  const host = parts[0] ?? '';
  let dst = host;
  let perms = 'rwm';
  if (parts.length === 2) {
    if (/^[rwm]+$/.test(parts[1]!)) perms = parts[1]!;
    else dst = parts[1]!;
  } else if (parts.length === 3) {
    dst = parts[1]!;
    perms = parts[2]!;
  } else if (parts.length > 3) throw new BurrowError('EUSAGE', `invalid --device ${spec}: want HOST[:CONTAINER][:PERMISSIONS]`);
  if (!/^[rwm]{1,3}$/.test(perms) || new Set(perms).size !== perms.length) throw new BurrowError('EUSAGE', `invalid --device ${spec}: permissions are a combination of r, w and m`);
  if (!host.startsWith('/') || !dst.startsWith('/')) throw new BurrowError('EUSAGE', `invalid --device ${spec}: paths must be absolute`);
  let st: fs.BigIntStats;
  try {
    st = fs.statSync(host, { bigint: true });
  } catch (err) {
    throw new BurrowError('EUSAGE', `--device ${host}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such device' : (err as Error).message}`);
  }
  if (!st.isCharacterDevice() && !st.isBlockDevice()) throw new BurrowError('EUSAGE', `--device ${host}: not a device (${st.isDirectory() ? 'a directory' : 'not a character or block device'})`);
  // access(2), not a trial open: opening some devices acts (a watchdog arms, a tape rewinds).
  // A device the kernel guards beyond its mode (/dev/kmsg needs CAP_SYSLOG) fails inside.
  const want = (perms.includes('r') ? fs.constants.R_OK : 0) | (perms.includes('w') ? fs.constants.W_OK : 0);
  try {
    if (want) fs.accessSync(host, want);
  } catch {
    const mode = Number(st.mode & 0o777n).toString(8).padStart(4, '0');
    throw new BurrowError(
      'EUSAGE',
      `--device ${host}: you cannot open it for ${perms.replace('m', '').split('').map((c) => (c === 'r' ? 'reading' : 'writing')).join(' and ')} (mode ${mode}, owner ${st.uid}:${st.gid}); a container can only use the devices its user may open`,
      perms.includes('w') ? `ask for access (a group such as video or render, a udev rule), or ask for less: --device ${host}:${dst}:r` : 'ask for access (a group such as video or render, a udev rule)',
    );
  }
  // Linux's dev_t encoding (glibc's gnu_dev_major/minor).
  const dev = st.rdev;
  const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
  const minor = Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
  return { hostPath: host, path: dst, type: st.isBlockDevice() ? 'b' : 'c', major, minor, fileMode: Number(st.mode & 0o777n), uid: Number(st.uid), gid: Number(st.gid), permissions: perms };
}

/**
 * Devices go in linux.devices, as OCI has them, when the container sees them at the host's
 * path. The runtime, which cannot mknod in a user namespace, then binds the host node at that
 * path. Under another name it would look the node up by number in /dev, where a symbolic link
 * (/dev/stdin…) may match first: such devices are bound by their host path instead.
 */
function deviceEntries(devs: DeviceSpec[]): { devices: object[]; mounts: OciMount[] } {
  const devices: object[] = [];
  const mounts: OciMount[] = [];
  for (const d of devs) {
    if (d.hostPath === d.path) {
      devices.push({ path: d.path, type: d.type, major: d.major, minor: d.minor, fileMode: d.fileMode, uid: d.uid, gid: d.gid });
    } else {
      mounts.push({ destination: d.path, type: 'bind', source: d.hostPath, options: ['bind', 'nosuid', 'noexec'] });
    }
  }
  return { devices, mounts };
}

/** `--group-add` to additionalGids, or keep-groups to crun's annotation (nothing else with it). */
function groups(groupAdd: string[], layerDirs: EtcSource[]): { additionalGids: number[]; keep: boolean } {
  const keep = groupAdd.includes('keep-groups');
  if (keep && groupAdd.length > 1) throw new BurrowError('EUSAGE', '--group-add keep-groups cannot be combined with other groups: the container keeps exactly your groups');
  if (keep) return { additionalGids: [], keep };
  const additionalGids = groupAdd.map((g) => {
    if (/^\d+$/.test(g)) return Number(g);
    const found = lookupId(layerDirs, 'group', g);
    if (!found) throw new BurrowError('EUSAGE', `--group-add ${g}: unable to find group ${g}: no matching entries in the image's group file`);
    return found.id;
  });
  return { additionalGids, keep };
}

export function buildSpec(image: ImageConfig, opts: SpecOptions): object {
  const ic = image.config ?? {};
  const entrypoint = opts.entrypoint ?? ic.Entrypoint ?? [];
  const cmd = opts.args.length ? opts.args : opts.entrypoint !== undefined ? [] : (ic.Cmd ?? []);
  const userArgs = [...entrypoint, ...cmd];
  if (userArgs.length === 0) throw new BurrowError('EUSAGE', 'no command specified: the image has no Cmd or Entrypoint; give one after the image name');
  // tini and catatonit take the command after `--`; they run it, reap and forward signals.
  const args = opts.init ? [opts.init.containerPath, '--', ...userArgs] : userArgs;
  const env = new Map<string, string>();
  const put = (kv: string) => {
    const i = kv.indexOf('=');
    if (i > 0) env.set(kv.slice(0, i), kv.slice(i + 1));
  };
  (ic.Env ?? []).forEach(put);
  if (!env.has('PATH')) env.set('PATH', '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
  env.set('HOSTNAME', opts.hostname);
  if (opts.tty) env.set('TERM', 'xterm');
  opts.env.forEach(put);
  const user = opts.user === undefined && opts.defaultUser ? opts.defaultUser : resolveUser(opts.user ?? (ic.User || undefined), opts.layerDirs);
  const grp = groups(opts.groupAdd ?? [], opts.layerDirs);
  const dev = deviceEntries(opts.devices ?? []);
  const userns = opts.userNamespace !== false;
  const caps = capList(opts);
  const nofile = { type: 'RLIMIT_NOFILE', soft: 1048576, hard: 1048576 };
  const rlimits = opts.ulimits.map(parseUlimit);
  if (!rlimits.some((r) => r.type === 'RLIMIT_NOFILE')) rlimits.push(currentNofile() ?? nofile);
  const hostPid = opts.pid === 'host';
  const hostIpc = opts.ipc === 'host';
  const namespaces: { type: string }[] = [...(hostPid ? [] : [{ type: 'pid' }]), ...(hostIpc ? [] : [{ type: 'ipc' }]), { type: 'uts' }, { type: 'mount' }, ...(userns ? [{ type: 'user' }] : []), { type: 'cgroup' }];
  if (opts.network !== 'host') namespaces.push({ type: 'network' });
  const mounts: OciMount[] = [
    // In the host's pid or IPC namespace a user namespace may not mount proc or mqueue (it does
    // not own them): the host's are bound, as rootless podman does, and the host's /dev/shm,
    // where processes of the host's IPC namespace (MPI ranks in other containers) share memory.
    hostPid
      ? { destination: '/proc', type: 'bind', source: '/proc', options: ['rbind', 'nosuid', 'noexec', 'nodev'] }
      : { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    hostIpc
      ? { destination: '/dev/shm', type: 'bind', source: '/dev/shm', options: ['rbind', 'nosuid', 'noexec', 'nodev'] }
      : { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    // The host's mqueue, where it has one mounted (this machine's Debian has none at /dev/mqueue).
    ...(!hostIpc
      ? [{ destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] }]
      : fs.existsSync('/dev/mqueue')
        ? [{ destination: '/dev/mqueue', type: 'bind', source: '/dev/mqueue', options: ['rbind', 'nosuid', 'noexec', 'nodev'] }]
        : []),
    opts.network === 'host'
      ? { destination: '/sys', type: 'bind', source: '/sys', options: ['rbind', 'nosuid', 'noexec', 'nodev', 'ro'] }
      : { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
    { destination: '/etc/hosts', type: 'bind', source: opts.etcFiles.hosts, options: ['bind', 'rprivate'] },
    { destination: '/etc/hostname', type: 'bind', source: opts.etcFiles.hostname, options: ['bind', 'rprivate'] },
    { destination: '/etc/resolv.conf', type: 'bind', source: opts.etcFiles.resolv, options: ['bind', 'rprivate'] },
    ...opts.mounts,
    ...dev.mounts,
    ...(opts.init ? [{ destination: opts.init.containerPath, type: 'bind', source: opts.init.hostPath, options: ['bind', 'ro', 'nosuid', 'nodev'] }] : []),
  ];
  const seccomp = opts.privileged || opts.seccomp === 'unconfined' ? undefined : opts.seccomp === 'default' ? defaultSeccomp() : opts.seccomp;
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: opts.tty,
      user: { uid: user.uid, gid: user.gid, ...(grp.additionalGids.length ? { additionalGids: grp.additionalGids } : {}) },
      args,
      env: [...env].map(([k, v]) => `${k}=${v}`),
      cwd: opts.workdir || ic.WorkingDir || '/',
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      rlimits,
      noNewPrivileges: opts.noNewPrivileges,
    },
    root: { path: 'rootfs', readonly: opts.readOnly },
    hostname: opts.hostname,
    mounts,
    annotations: {
      ...opts.annotations,
      ...(opts.overlay ? { 'run.burrow.rootfs.overlay': opts.overlay.options, 'run.burrow.rootfs.overlay.cwd': opts.overlay.cwd } : {}),
      ...(grp.keep ? { 'run.oci.keep_original_groups': '1' } : {}),
    },
    linux: {
      ...(opts.resources ? { resources: opts.resources } : {}),
      ...(opts.cgroupsPath ? { cgroupsPath: opts.cgroupsPath } : {}),
      ...(userns
        ? {
            uidMappings: opts.uidMap.map(([c, h, s]) => ({ containerID: c, hostID: h, size: s })),
            gidMappings: opts.gidMap.map(([c, h, s]) => ({ containerID: c, hostID: h, size: s })),
          }
        : {}),
      namespaces,
      ...(dev.devices.length ? { devices: dev.devices } : {}),
      ...(seccomp ? { seccomp } : {}),
      maskedPaths: opts.privileged
        ? []
        : ['/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/sys/firmware', '/proc/scsi', '/sys/devices/virtual/powercap'],
      readonlyPaths: opts.privileged ? [] : ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}

/** Rootless processes cannot raise their hard limit: inherit ours. */
function currentNofile(): { type: string; soft: number; hard: number } | undefined {
  try {
    const limits = fs.readFileSync('/proc/self/limits', 'utf8');
    const m = /Max open files\s+(\d+)\s+(\d+)/.exec(limits);
    if (m) return { type: 'RLIMIT_NOFILE', soft: Number(m[2]), hard: Number(m[2]) };
  } catch {
    /* fall through */
  }
  return undefined;
}

/**
 * A container on user-defined networks, at each start: it joins the network owner's user
 * namespace (rootless: `userns`, whose mapping is the store's, so it has none of its own) and
 * creates its network namespace there, which the owner, root in that user namespace, can then
 * put a veth into (crates/burrow-core/src/net/bridge/mod.rs says why a sibling user namespace
 * could not). As root (`userns` undefined) it keeps its own user namespace, if it has one: root
 * reaches every namespace.
 */
export function joinOwnerUserns(spec: Record<string, unknown>, userns: string | undefined): void {
  const linux = (spec.linux ??= {}) as { namespaces?: { type: string; path?: string }[]; uidMappings?: unknown; gidMappings?: unknown };
  const ns = (linux.namespaces ?? []).filter((n) => n.type !== 'network' && (userns === undefined || n.type !== 'user'));
  if (userns !== undefined) {
    ns.push({ type: 'user', path: userns });
    delete linux.uidMappings;
    delete linux.gidMappings;
  }
  ns.push({ type: 'network' });
  linux.namespaces = ns;
}
