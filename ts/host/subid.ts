/**
 * The user's subordinate id ranges as /etc/subuid and /etc/subgid give them, read in TypeScript
 * for the moments that need only this (is there a range now that the store was made without
 * one?), without the native addon and the whole host probe. Entries match by name or numeric
 * uid, as shadow's newuidmap and burrow-core's probe (probe/idmap.rs) match them. Ranges that
 * LDAP/sssd serve (nsswitch `subid:`) are not in these files; the probe asks `getsubids`.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';

export interface SubidRange {
  start: number;
  count: number;
}

export function parseSubidFile(text: string, name: string | undefined, id: number): SubidRange[] {
  const out: SubidRange[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const [owner, start, count] = line.split(':');
    if (owner !== name && owner !== String(id)) continue;
    const s = Number(start);
    const c = Number(count);
    if (Number.isInteger(s) && Number.isInteger(c) && c > 0) out.push({ start: s, count: c });
  }
  return out;
}

/** This user's ranges in the files (empty when a file is missing or unreadable). */
export function ownSubidRanges(uid = process.getuid?.() ?? 0, gid = process.getgid?.() ?? 0): { subuid: SubidRange[]; subgid: SubidRange[] } {
  const name = userName();
  const read = (file: string, id: number) => {
    try {
      return parseSubidFile(fs.readFileSync(file, 'utf8'), name, id);
    } catch {
      return [];
    }
  };
  return { subuid: read('/etc/subuid', uid), subgid: read('/etc/subgid', gid) };
}

/** This process's user name, asked once: a password database lookup (NSS: nscd, nsswitch.conf, /etc/passwd) per call cost `run` one for each of the three times it checks the ranges. */
let cachedName: { name: string | undefined } | undefined;
function userName(): string | undefined {
  if (cachedName) return cachedName.name;
  let name: string | undefined;
  try {
    name = os.userInfo().username;
  } catch {
    name = undefined;
  }
  cachedName = { name };
  return name;
}

/** True when both files give this user a range. */
export function hasSubidRanges(): boolean {
  const r = ownSubidRanges();
  return r.subuid.length > 0 && r.subgid.length > 0;
}

/** Whether NSS may serve ranges that the files do not show (nsswitch.conf `subid:` names a source). */
export function nssServesSubids(file = '/etc/nsswitch.conf'): boolean {
  try {
    return /^\s*subid\s*:\s*\S/m.test(fs.readFileSync(file, 'utf8'));
  } catch {
    return false;
  }
}
