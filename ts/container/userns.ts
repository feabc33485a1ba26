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
import { hasSubidRanges, nssServesSubids } from '../host/subid';
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
      throw new BurrowError('EUSAGE', '--userns subuid: this store was created in single-id mode (no subordinate id range), its layers are unpacked for that mapping', `use --userns single; or ${rangeFix(hasSubidRanges())}`);
    }
    return fromStore;
  }
  if (mode === 'single') return { userNamespace: true, uidMap: [[0, uid, 1]], gidMap: [[0, gid, 1]] };
  // keep-id
  if (s.idMode !== 'subuid') {
    throw new BurrowError(
      'EUSAGE',
      '--userns keep-id needs a subordinate id range: in single-id mode only your own id can be mapped, and burrow-runtime needs container root mapped as well to set the container up',
      rangeFix(hasSubidRanges()),
    );
  }
  return { userNamespace: true, uidMap: keepIdMap(s.uidMap, uid), gidMap: keepIdMap(s.gidMap, gid), user: { uid, gid } };
}

/**
 * A store that maps ids through a subordinate range, used where that range is not (another
 * machine sharing the home directory, or the range removed): newuidmap would refuse the map with
 * a message about permissions. Said here, with the fix, before anything is made. Ranges from
 * NSS (nsswitch.conf `subid:`) are not in the files, so nothing is said when NSS may have one.
 */
export function checkRangeHere(s: StorageSettings, identity: Identity | undefined, uid = process.getuid?.() ?? 0): void {
  if (uid === 0 || s.idMode !== 'subuid') return;
  const maps = identity?.uidMap ?? s.uidMap;
  if (identity?.userNamespace === false || maps.every(([, , n]) => n === 1)) return;
  if (hasSubidRanges() || nssServesSubids()) return;
  const range = s.uidMap.find(([c]) => c === 1);
  throw new BurrowError(
    'ESTORE_MISMATCH',
    `this store maps container ids through a subordinate id range${range ? ` (${range[1]}-${range[1] + range[2] - 1})` : ''}, and /etc/subuid and /etc/subgid give you none on this host (removed, or another machine sharing this store)`,
    'run `burrow system migrate` to switch the store to single-id mode here (its layers are unpacked again; stop your containers first), use --userns single for this container, or use a store of its own on this host (--root DIR)',
  );
}

// ---- a user the id map lacks --------------------------------------------------------------

/** `[containers] user_fallback`, `--user-fallback`, BURROW_USER_FALLBACK. */
export type UserFallback = 'root' | 'error';

export function isMapped(map: IdMap[], id: number): boolean {
  return map.some(([c, , n]) => id >= c && id < c + n);
}

/** The fix for a store made without a range: the range now there needs a migration, else an administrator. */
function rangeFix(haveRange: boolean): string {
  return haveRange
    ? 'you have a subordinate id range in /etc/subuid and /etc/subgid now, but this store was made without one: stop your containers and run `burrow system migrate` once to use it'
    : 'an administrator can give you a subordinate id range (`burrow info` suggests a free one), then run `burrow system migrate`';
}

/**
 * The process's user where the container's id map has it. A user the map lacks (with one mapped
 * id, the single-id mode, anyone but root: `-u 1000`, an image's `USER app`) cannot be switched
 * to: setresuid/setresgid to an unmapped id fail with EINVAL inside the namespace. As Apptainer
 * and Charliecloud do, the container then runs as the one mapped id, container root (the caller
 * outside), after a warning that says why and how to get the user honoured; `fallback` 'error'
 * refuses instead. `named` is the user as given (`app`, `1000:1000`).
 */
export function fitUser(
  user: { uid: number; gid: number },
  named: string,
  maps: { uidMap: IdMap[]; gidMap: IdMap[]; userNamespace: boolean },
  settings: StorageSettings,
  usernsFlag: string | undefined,
  fallback: UserFallback,
  warn: (message: string) => void,
  haveRange: () => boolean = hasSubidRanges,
): { uid: number; gid: number } {
  if (!maps.userNamespace || (isMapped(maps.uidMap, user.uid) && isMapped(maps.gidMap, user.gid))) return user;
  const own = process.getuid?.() ?? 0;
  const single = maps.uidMap.length === 1 && maps.uidMap[0]![0] === 0 && maps.uidMap[0]![2] === 1;
  let why: string;
  let fix: string;
  if (single && settings.idMode === 'single') {
    why = `this store was made without a subordinate id range (single-id mode), so a container maps one id only: container root, which is you (uid ${own})`;
    fix = rangeFix(haveRange());
  } else if (single) {
    why = `--userns ${usernsFlag ?? 'single'} maps one id only: container root, which is you (uid ${own})`;
    fix = settings.idMode === 'subuid' ? 'leave out --userns single (the store maps your subordinate range), or use --userns keep-id to run as your own uid' : 'leave out --userns single';
  } else {
    const span = (m: IdMap[]) => m.map(([c, , n]) => (n === 1 ? `${c}` : `${c}-${c + n - 1}`)).join(', ');
    why = `the container's id map covers uids ${span(maps.uidMap)} and gids ${span(maps.gidMap)} only`;
    fix = 'use a user inside those ids, or ask an administrator for a larger subordinate id range';
  }
  const who = `user ${named} (uid ${user.uid}, gid ${user.gid})`;
  if (fallback === 'error') {
    throw new BurrowError('EUSER_UNMAPPED', `${who} cannot be used: ${why}, and switching to an id the user namespace does not map fails (EINVAL)`, `${fix}; or let it run as container root: --user-fallback root`);
  }
  warn(
    `${who} cannot be honoured: ${why}; switching to an unmapped id fails (EINVAL), so the container runs as container root (uid 0 inside, you outside). To run as that user: ${fix}. To make this an error instead: --user-fallback error, or [containers] user_fallback = "error" in config.toml`,
  );
  return { uid: 0, gid: 0 };
}
