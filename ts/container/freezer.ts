/**
 * Whether a running container is paused: its init's cgroup is frozen (v2 `cgroup.freeze`, on a
 * pure v2 host or in the unified hierarchy of a hybrid one; v1 `freezer.state`). Read from the
 * files, as crates/burrow-core's `is_frozen` does, so that `ps` and `inspect` need no runtime
 * call. Only asked about running containers.
 *
 * `ps` and GET /containers/json ask this for every running container, so a file that is not
 * there is asked about first (a stat) rather than read (a thrown ENOENT costs far more), and a
 * root cgroup is never looked at: it cannot be frozen (a rootless container without a delegated
 * cgroup stays in its parent's, often `/`).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

const read = (p: string): string | undefined => {
  if (!fs.existsSync(p)) return undefined;
  try {
    return fs.readFileSync(p, 'utf8').trim();
  } catch {
    return undefined; // removed meanwhile
  }
};

export function isFrozen(pid: number, root = '/sys/fs/cgroup'): boolean {
  const text = pid > 0 ? read(`/proc/${pid}/cgroup`) : undefined;
  if (!text) return false;
  for (const line of text.split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    const [, controllers = '', rel = '/'] = m;
    if (rel === '/') continue;
    if (controllers === '') {
      for (const base of [root, path.join(root, 'unified')]) if (read(path.join(base, rel, 'cgroup.freeze')) === '1') return true;
    } else if (controllers.split(',').includes('freezer') && read(path.join(root, 'freezer', rel, 'freezer.state')) === 'FROZEN') return true;
  }
  return false;
}
