/**
 * Where a container's cgroup goes (DESIGN.md, "cgroups"): on cgroup v2 every container gets its
 * own — a transient systemd scope when a systemd manager is reachable (podman's
 * `--cgroup-manager=systemd`), else a child beside the caller's cgroup in the delegated
 * subtree (`cgroupfs`); `burrow-runtime` creates it, and runs the container unplaced when the
 * user may not (no delegation) and asked for no limit. On v1 or hybrid hosts only containers
 * with limits are placed (and those are refused rootless before this point), so the hot path
 * there pays one small read of /proc/self/cgroup.
 *
 * Decided here from files rather than through the native probe: `run` does not load the addon.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface CgroupPlacement {
  /** linux.cgroupsPath for the bundle; undefined: none unless the container has limits. */
  cgroupsPath?: string;
  /** Pass `--systemd-cgroup` to the runtime when it creates the container. */
  systemd: boolean;
}

/** Whether this process is on a pure cgroup v2 hierarchy ("0::/path" and nothing else). */
export function pureV2(selfCgroup: string): boolean {
  const lines = selfCgroup.split('\n').filter(Boolean);
  return lines.length === 1 && lines[0]!.startsWith('0::');
}

/** A systemd manager this user can ask for a scope: systemd runs and its bus is there. */
export function systemdReachable(env: NodeJS.ProcessEnv = process.env, exists: (p: string) => boolean = fs.existsSync, uid = process.getuid?.() ?? 0): boolean {
  if (!exists('/run/systemd/system')) return false;
  if (uid === 0) return exists('/run/systemd/private') || exists('/run/dbus/system_bus_socket');
  // A bus named by a socket path is there only if the socket is: sbatch carries the login
  // node's address into a job on a node where that user has no session (and no bus), and a
  // scope asked of nobody fails the container. Other addresses (abstract sockets) are trusted.
  if (env.DBUS_SESSION_BUS_ADDRESS) {
    const paths = systemdBusPaths(env);
    return paths.length === 0 || paths.some((p) => exists(p));
  }
  return !!env.XDG_RUNTIME_DIR && exists(path.join(env.XDG_RUNTIME_DIR, 'bus'));
}

/** The socket paths systemdReachable looks at for a user (run plans check them: ts/container/run-plan.ts). */
export function systemdBusPaths(env: NodeJS.ProcessEnv = process.env): string[] {
  if (env.DBUS_SESSION_BUS_ADDRESS) return [...env.DBUS_SESSION_BUS_ADDRESS.matchAll(/(?:^|;)unix:(?:[^;]*,)?path=([^,;]+)/g)].map((m) => decodeURIComponent(m[1]!));
  return env.XDG_RUNTIME_DIR ? [path.join(env.XDG_RUNTIME_DIR, 'bus')] : [];
}

export function cgroupPlacement(id: string, manager = process.env.BURROW_CGROUP_MANAGER): CgroupPlacement {
  let self: string;
  try {
    self = fs.readFileSync('/proc/self/cgroup', 'utf8');
  } catch {
    return { systemd: false };
  }
  if (!pureV2(self)) return { systemd: false };
  const systemd = manager === 'systemd' || (manager !== 'cgroupfs' && systemdReachable());
  // runc's conventions: "slice:prefix:name" for systemd, a path (relative: beside ours) otherwise.
  return systemd ? { cgroupsPath: `user.slice:burrow:${id}`, systemd: true } : { cgroupsPath: `burrow-${id.slice(0, 12)}`, systemd: false };
}
