/**
 * `--userns`: which user namespace and id maps a container gets (DESIGN.md, "Identity"). The
 * store's mapping is fixed when it is created (layers are unpacked under it); a container may
 * use another mapping only where the store's files stay right under it:
 *
 *   subuid   the store's mapping: container 0 → the user, 1..N → the subordinate range.
 *   single   container 0 → the user only; files of other owners show as nobody.
 *   keep-id  the user keeps their own uid/gid inside (a bind-mounted $HOME stays theirs), the
 *            process runs as them. With a range, container ids 1..N keep their store owners
 *            and only 0 and the user's own id trade places (podman maps them apart, which
 *            needs the layers chowned); root's files in the image show as the user's.
 *   host     no user namespace: the caller's own identity. Without privileges nobody may create
 *            the mount namespace a root filesystem needs, so this is root's only.
 */
import { BurrowError } from '../errors';
import type { IdMap, StorageSettings } from '../storage/store';

export type UsernsMode = 'subuid' | 'keep-id' | 'single' | 'host';

export interface Identity {
  /** false: no user namespace at all (`host`). */
  userNamespace: boolean;
  uidMap: IdMap[];
  gidMap: IdMap[];
  /** The process's user when neither `-u` nor the image names one otherwise (keep-id). */
  user?: { uid: number; gid: number };
}

/**
 * Maps `own` (the caller's id) to itself and keeps every other id of the store's mapping where
 * it was, giving container 0 the host id the store had for container `own`.
 */
export function keepIdMap(store: IdMap[], own: number): IdMap[] {
  const range = store.find(([c]) => c === 1);
  if (!range) return [[own, own, 1]];
  const [, sub, n] = range;
  const out: IdMap[] = [];
  if (own <= n) {
    out.push([0, sub + own - 1, 1], [1, sub, own - 1], [own, own, 1], [own + 1, sub + own, n - own]);
  } else {
    // An id above the range (LDAP uids often are): its place is outside; the range's last id
    // becomes container root (images rarely own files by ids that high).
    out.push([0, sub + n - 1, 1], [1, sub, n - 1], [own, own, 1]);
  }
  return out.filter(([, , size]) => size > 0);
}

export function identityFor(mode: UsernsMode, s: StorageSettings, uid = process.getuid?.() ?? 0, gid = process.getgid?.() ?? 0): Identity {
  const fromStore: Identity = { userNamespace: true, uidMap: s.uidMap, gidMap: s.gidMap };
  if (mode === 'host') {
    if (uid !== 0) {
      throw new BurrowError(
        'EUSAGE',
        '--userns host runs a container without a user namespace, which only root can do: an unprivileged user may not create the mount namespace and root filesystem a container needs',
        'use --userns keep-id to keep your own uid and gid inside the container',
      );
    }
    return { userNamespace: false, uidMap: [], gidMap: [] };
  }
  if (s.idMode === 'root') {
    // Root's store maps every id to itself: keep-id is that already.
    if (mode === 'single') return { userNamespace: true, uidMap: [[0, 0, 1]], gidMap: [[0, 0, 1]] };
    return fromStore;
  }
  if (mode === 'subuid') {
    if (s.idMode !== 'subuid') {
      throw new BurrowError('EUSAGE', '--userns subuid: this store was created in single-id mode (no subordinate id range), its layers are unpacked for that mapping', 'use --userns single, or a new store (--root) once /etc/subuid and /etc/subgid have a range for you');
    }
    return fromStore;
  }
  if (mode === 'single') return { userNamespace: true, uidMap: [[0, uid, 1]], gidMap: [[0, gid, 1]] };
  // keep-id
  if (s.idMode !== 'subuid') {
    throw new BurrowError(
      'EUSAGE',
      '--userns keep-id needs a subordinate id range: in single-id mode only your own id can be mapped, and burrow-runtime needs container root mapped as well to set the container up',
      'add a range for your user to /etc/subuid and /etc/subgid (see `burrow info`), then use a new store (--root)',
    );
  }
  return { userNamespace: true, uidMap: keepIdMap(s.uidMap, uid), gidMap: keepIdMap(s.gidMap, gid), user: { uid, gid } };
}
