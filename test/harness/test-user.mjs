// Creates (idempotently) the unprivileged user the rootless tests run as, with a subordinate id
// range that overlaps nobody else's. Run as root; prints the user's facts as JSON.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

export const TEST_USER = process.env.BURROW_TEST_USER || 'burrowtest';
const RANGE = 65536;

function sh(cmd, args) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function userExists(name) {
  try {
    sh('id', ['-u', name]);
    return true;
  } catch {
    return false;
  }
}

/** Appends a range for `name` to /etc/subuid or /etc/subgid unless it already has one. */
function ensureRange(file, name, uid) {
  const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  const lines = text.split('\n').filter((l) => l.trim() && !l.startsWith('#'));
  if (lines.some((l) => l.split(':')[0] === name || l.split(':')[0] === String(uid))) return;
  let end = 100000;
  for (const l of lines) {
    const [, start, count] = l.split(':');
    end = Math.max(end, Number(start) + Number(count));
  }
  const start = Math.max(end, 200000);
  fs.appendFileSync(file, `${text && !text.endsWith('\n') ? '\n' : ''}${name}:${start}:${RANGE}\n`);
}

export function ensureTestUser() {
  if (process.getuid() !== 0) throw new Error('ensureTestUser must run as root');
  if (!userExists(TEST_USER)) {
    sh('useradd', ['--create-home', '--shell', '/bin/sh', '--user-group', TEST_USER]);
  }
  const uid = Number(sh('id', ['-u', TEST_USER]).trim());
  const gid = Number(sh('id', ['-g', TEST_USER]).trim());
  const home = sh('getent', ['passwd', TEST_USER]).trim().split(':')[5];
  ensureRange('/etc/subuid', TEST_USER, uid);
  ensureRange('/etc/subgid', TEST_USER, gid);
  // A supplementary group with a directory only its members may read: `--group-add keep-groups`
  // must keep it usable inside a container (test/integration/run-flags.test.ts).
  const share = ensureShareGroup(uid);
  // A private XDG_RUNTIME_DIR, as logind would make (tests also run without one).
  const runtimeDir = `/tmp/burrow-xdg-${uid}`;
  fs.mkdirSync(runtimeDir, { recursive: true, mode: 0o700 });
  fs.chownSync(runtimeDir, uid, gid);
  fs.chmodSync(runtimeDir, 0o700);
  return { name: TEST_USER, uid, gid, home, runtimeDir, share };
}

export const SHARE_GROUP = `${TEST_USER}-share`;

/** Directory of the share group's fixture: root-owned, readable by the group only. */
export function shareDir(uid) {
  return `/tmp/burrow-share-${uid}`;
}

function ensureShareGroup(uid) {
  let gid;
  try {
    gid = Number(sh('getent', ['group', SHARE_GROUP]).split(':')[2]);
  } catch {
    sh('groupadd', [SHARE_GROUP]);
    gid = Number(sh('getent', ['group', SHARE_GROUP]).split(':')[2]);
  }
  const members = sh('getent', ['group', SHARE_GROUP]).trim().split(':')[3] ?? '';
  if (!members.split(',').includes(TEST_USER)) sh('usermod', ['-a', '-G', SHARE_GROUP, TEST_USER]);
  const dir = shareDir(uid);
  fs.mkdirSync(dir, { recursive: true });
  fs.chownSync(dir, 0, gid);
  fs.chmodSync(dir, 0o750);
  fs.writeFileSync(`${dir}/secret`, 'shared with the group\n');
  fs.chownSync(`${dir}/secret`, 0, gid);
  fs.chmodSync(`${dir}/secret`, 0o640);
  return { group: SHARE_GROUP, gid, dir };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(JSON.stringify(ensureTestUser()) + '\n');
}
