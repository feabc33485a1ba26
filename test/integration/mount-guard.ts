/**
 * Guard for root runs of the integration project (registered in vitest.config.mjs as a setup
 * file, so it wraps every test file): the host's mount table outside burrow's own directories
 * must be the same after a file as before it: the same mounts, at the same places, with the
 * same propagation (shared/master peer groups). A runtime that forgets to make its mount
 * namespace private can unmount a host mount through a shared peer group (issue 13, item 12:
 * podman's /run/netns/* and a tmpfs under /tmp vanished during a root run); this names the mount
 * and fails the file that did it.
 *
 * Rootless runs cannot change the host's mounts, so the guard is off there.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';

interface Entry {
  /** mount point, root in its filesystem, type, source: what identifies a mount to a user */
  key: string;
  /** optional fields: shared:N, master:N, propagate_from:N, unbindable (empty: private) */
  propagation: string;
}

/** Decodes mountinfo's octal escapes (`\040` for a space). */
const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/** Where burrow and its tests make and remove mounts of their own. */
function ours(mountPoint: string): boolean {
  const tmp = os.tmpdir();
  const under = (dir: string, prefix: string) => mountPoint.startsWith(path.join(dir, prefix));
  return (
    under(tmp, 'burrow-') ||
    under('/tmp', 'burrow-') ||
    under('/var/tmp', 'burrow-') ||
    /^\/run\/user\/\d+\/burrow/.test(mountPoint) ||
    // systemd's automount of binfmt_misc mounts it on first access, whoever looks.
    mountPoint === '/proc/sys/fs/binfmt_misc'
  );
}

/** The host's mount table (this process's mount namespace: the one the tests run in). */
export function mountTable(): Entry[] {
  const out: Entry[] = [];
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    if (!line) continue;
    const [pre, post] = line.split(' - ');
    const f = pre!.split(' ');
    const [fstype, source] = (post ?? '').split(' ');
    const mountPoint = unescape(f[4]!);
    if (ours(mountPoint)) continue;
    out.push({ key: `${mountPoint} (root ${unescape(f[3]!)}, ${fstype} ${source})`, propagation: f.slice(6).join(' ') || 'private' });
  }
  return out;
}

/** What changed between two tables, one line per mount; empty when nothing did. */
export function mountChanges(before: Entry[], after: Entry[]): string[] {
  const count = (t: Entry[]) => {
    const m = new Map<string, string[]>();
    for (const e of t) m.set(e.key, [...(m.get(e.key) ?? []), e.propagation]);
    return m;
  };
  const b = count(before);
  const a = count(after);
  const out: string[] = [];
  for (const [key, props] of b) {
    const now = a.get(key) ?? [];
    if (now.length < props.length) out.push(`gone: ${key} [${props.join('; ')}]`);
    else if (now.length > props.length) out.push(`added: ${key} [${now.join('; ')}]`);
    else if ([...props].sort().join(';') !== [...now].sort().join(';')) out.push(`propagation changed: ${key} [${props.join('; ')}] -> [${now.join('; ')}]`);
  }
  for (const [key, props] of a) if (!b.has(key)) out.push(`added: ${key} [${props.join('; ')}]`);
  return out;
}

if (process.getuid?.() === 0) {
  let before: Entry[] = [];
  beforeAll(() => {
    before = mountTable();
  });
  afterAll(() => {
    const changes = mountChanges(before, mountTable());
    if (changes.length > 0) {
      throw new Error(`the host's mount table changed during this test file (outside burrow's own directories):\n  ${changes.join('\n  ')}`);
    }
  });
}
