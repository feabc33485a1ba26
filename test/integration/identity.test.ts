/**
 * Who a container runs as when the id map is small, and a store that meets a host other than
 * the one it was made on (issue 12, items 2-4):
 *   - single-id mode and a non-root user (`-u 1000`, an image's `USER app`): run as the one
 *     mapped id with one warning, or refuse with `--user-fallback error` / user_fallback;
 *   - a store whose saved driver cannot mount where it is used now (the same store seen through
 *     a FUSE filesystem, bindfs here, as a cluster's home is seen through a network filesystem:
 *     kernel overlay refuses an upper directory there with EINVAL): another driver, one notice;
 *   - (root only, with a throwaway user) a user without a subordinate range: `burrow info`
 *     suggests a range nobody has; the range added after the store was made is noticed, and
 *     `burrow system migrate` makes `run -u 1000` work.
 * Runs as root and as the unprivileged test user.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { burrow, IS_ROOT, sh, type TestUser } from './helpers';
import { IMAGE, setup, type Env } from './lifecycle.helpers';
import type { HostReport } from '../../ts/host/report';
import { buildUserImage } from '../harness/images.mjs';

let env: Env;
const USER_IMAGE = 'id-userapp';
beforeAll(() => {
  env = setup('identity');
  // The image whose config says USER app (uid 1000), loaded from an OCI archive.
  const layout = path.join(env.work, 'user-layout');
  buildUserImage(layout, { tag: 'user' });
  const archive = path.join(env.work, 'user.tar');
  const t = spawnSync('tar', ['-cf', archive, '-C', layout, '.']);
  if (t.status !== 0) throw new Error(`tar: ${t.stderr}`);
  const id = env.b(['load', '-q', '-i', archive]);
  if (id.code !== 0) throw new Error(`load: ${id.stderr}`);
  const tag = env.b(['tag', id.stdout.trim(), USER_IMAGE]);
  if (tag.code !== 0) throw new Error(`tag: ${tag.stderr}`);
});
afterEach(() => env.cleanup());
afterAll(() => env?.dispose());

const b = (args: string[], e?: Record<string, string>) => (e ? burrow(['--root', env.store, '--runroot', env.runroot, ...args], { env: e }) : env.b(args));
const warnings = (stderr: string) => stderr.split('\n').filter((l) => /warning: user .* cannot be honoured/.test(l));

describe(`single-id mode and a non-root user, as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it("an image's USER app runs as the one mapped id, with one warning that says why and the fix", () => {
    const r = b(['run', '--rm', '--userns', 'single', USER_IMAGE]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^uid=0\(root\) gid=0\(root\)/);
    const w = warnings(r.stderr);
    expect(w, r.stderr).toHaveLength(1);
    expect(w[0]).toContain('user app (uid 1000, gid 1000)');
    expect(w[0]).toContain('EINVAL');
    expect(w[0]).toContain('--user-fallback error');
    expect(w[0]).toContain('leave out --userns single');
    if (!IS_ROOT) expect(w[0]).toContain('--userns keep-id');
    // The image's working directory and everything else of its config still apply.
    expect(b(['run', '--rm', '--userns', 'single', USER_IMAGE, 'pwd']).stdout).toBe('/home/app\n');
  });

  it('-u 1000 likewise, and -u 0 or no user at all give no warning', () => {
    const r = b(['run', '--rm', '--userns', 'single', '-u', '1000', IMAGE, 'id', '-u']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('0\n');
    expect(warnings(r.stderr)).toHaveLength(1);
    expect(warnings(r.stderr)[0]).toContain('user 1000 (uid 1000');
    const plain = b(['run', '--rm', '--userns', 'single', '-u', '0', IMAGE, 'id', '-u']);
    expect([plain.code, plain.stdout, warnings(plain.stderr)]).toEqual([0, '0\n', []]);
    // Detached too: the warning comes from create, before the container starts.
    const d = b(['run', '-d', '--userns', 'single', '-u', '1000', IMAGE, 'true']);
    expect(d.code, d.stderr).toBe(0);
    expect(warnings(d.stderr)).toHaveLength(1);
  });

  it('--user-fallback error, BURROW_USER_FALLBACK=error and [containers] user_fallback = "error" refuse with exit 125 and leave nothing', () => {
    const before = b(['ps', '-aq']).stdout;
    const flag = b(['run', '--rm', '--userns', 'single', '--user-fallback', 'error', USER_IMAGE]);
    expect(flag.code).toBe(125);
    expect(flag.stderr).toContain('user app (uid 1000, gid 1000) cannot be used');
    expect(flag.stderr).toContain('--user-fallback root');
    const envVar = b(['run', '--rm', '--userns', 'single', '-u', '1000', IMAGE, 'id'], { BURROW_USER_FALLBACK: 'error' });
    expect(envVar.code).toBe(125);
    const cfg = path.join(env.work, 'strict.toml');
    fs.writeFileSync(cfg, '[containers]\nuser_fallback = "error"\n');
    const file = b(['create', '--userns', 'single', USER_IMAGE], { BURROW_CONFIG: cfg });
    expect(file.code).toBe(125);
    expect(file.stderr).toContain('cannot be used');
    // The flag beats the file.
    const over = b(['run', '--rm', '--userns', 'single', '--user-fallback', 'root', USER_IMAGE, 'id', '-u'], { BURROW_CONFIG: cfg });
    expect([over.code, over.stdout]).toEqual([0, '0\n']);
    expect(b(['ps', '-aq']).stdout).toBe(before);
    expect(b(['run', '--rm', '--user-fallback', 'sometimes', IMAGE, 'true']).code).toBe(125);
  });

  it.skipIf(IS_ROOT)("with the store's subordinate range the user is honoured, as before", () => {
    const r = b(['run', '--rm', USER_IMAGE]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^uid=1000\(app\) gid=1000\(app\)/);
    expect(warnings(r.stderr)).toEqual([]);
  });
});

// ---- a store used where its saved driver cannot mount ---------------------------------------

/** Mounts `src` at `dst` through bindfs (FUSE), as this user; returns the unmount. */
function bindfs(src: string, dst: string): () => void {
  // --no-allow-other: an ordinary user may not ask for allow_other (fuse.conf), and needs not.
  const r = sh('bindfs', ['--no-allow-other', src, dst]);
  if (r.code !== 0) throw new Error(`bindfs: ${r.stderr}`);
  return () => {
    const u = IS_ROOT ? sh('umount', [dst]) : sh('fusermount3', ['-u', dst]);
    if (u.code !== 0) throw new Error(`unmount ${dst}: ${u.stderr}`);
  };
}

describe(`a store whose saved driver cannot mount here, as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it('a store made on ext4 with the kernel overlay, used through a FUSE mount where overlay upper directories fail: another driver, one notice, the run succeeds', () => {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-idfuse-'));
    const real = path.join(base, 'real');
    const mnt = path.join(base, 'mnt');
    fs.mkdirSync(real);
    fs.mkdirSync(mnt);
    const at = (root: string) => (args: string[]) => burrow(['--root', path.join(root, 'store'), '--runroot', path.join(base, 'run'), ...args]);
    const direct = at(real);
    const viaFuse = at(mnt);
    let unmount: (() => void) | undefined;
    try {
      expect(direct(['import', path.join(env.work, 'busybox.tar.gz'), 'bb']).code).toBe(0);
      const first = direct(['run', '--rm', 'bb', 'echo', 'direct']);
      expect([first.code, first.stdout], first.stderr).toEqual([0, 'direct\n']);
      const saved = JSON.parse(fs.readFileSync(path.join(real, 'store', 'storage.json'), 'utf8')) as { driver: string; host?: string };
      // This host's kernel mounts overlay on ext4 in a user namespace: the store saved that.
      expect(saved.driver).toBe('overlay');

      unmount = bindfs(real, mnt);
      const r = viaFuse(['run', '--rm', 'bb', 'echo', 'through fuse']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe('through fuse\n');
      const notes = r.stderr.split('\n').filter((l) => l.includes("this store's driver, overlay, does not work on this host"));
      expect(notes, r.stderr).toHaveLength(1);
      // The kernel's own answer: EINVAL (an upper directory on FUSE, as on NFS); rootless, FUSE
      // without allow_other may refuse the namespace's overlay mount first (EACCES).
      expect(notes[0]).toMatch(/mount -t overlay .*: (EINVAL|EACCES)/);
      expect(notes[0]).toMatch(/using (fuse-overlayfs|copy) here/);
      const after = JSON.parse(fs.readFileSync(path.join(real, 'store', 'storage.json'), 'utf8')) as { driver: string; hosts?: Record<string, string> };
      // The store's own driver stays for where it works; this view of it has its own.
      expect(after.driver).toBe('overlay');
      expect(Object.values(after.hosts ?? {})).toEqual([expect.stringMatching(/^(fuse-overlayfs|copy)$/)]);
      // Once: the next command knows this host already.
      const again = viaFuse(['run', '--rm', 'bb', 'echo', 'again']);
      expect([again.code, again.stdout, again.stderr], again.stderr).toEqual([0, 'again\n', '']);
      // Asking for the kernel overlay there anyway: refused with the cause, not a raw EINVAL.
      const forced = viaFuse(['--storage-driver', 'overlay', 'run', '--rm', 'bb', 'true']);
      expect(forced.code).toBe(125);
      expect(forced.stderr).toContain('storage driver overlay cannot work here');
      // A detached container and its removal work there too.
      const d = viaFuse(['run', '-d', 'bb', 'sleep', '60']);
      expect(d.code, d.stderr).toBe(0);
      const rm = viaFuse(['rm', '-f', d.stdout.trim()]);
      expect(rm.code, rm.stderr).toBe(0);
      unmount();
      unmount = undefined;
      // Where overlay works, the store still uses it, silently.
      const back = direct(['run', '--rm', 'bb', 'echo', 'direct again']);
      expect([back.code, back.stdout, back.stderr]).toEqual([0, 'direct again\n', '']);
    } finally {
      unmount?.();
      direct(['rm', '-af']);
      fs.rmSync(base, { recursive: true, force: true });
    }
  });
});

// ---- a user without a subordinate range (root only: a throwaway user) -------------------------

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Every range of every owner in a subuid/subgid file. */
function allRanges(file: string): { owner: string; start: number; count: number }[] {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .map((l) => l.trim().split(':'))
    .filter((f) => f.length === 3 && !f[0]!.startsWith('#') && Number(f[2]) > 0)
    .map(([owner, start, count]) => ({ owner: owner!, start: Number(start), count: Number(count) }));
}

describe.runIf(IS_ROOT)('a user without a subordinate range (a throwaway user made by root)', () => {
  it('info suggests a range nobody has; a range added after the store was made is noticed, and `system migrate` makes run -u 1000 work', () => {
    const saved = { subuid: fs.readFileSync('/etc/subuid'), subgid: fs.readFileSync('/etc/subgid') };
    const name = `burrowid${process.pid % 100000}`;
    // -K SUB_*_COUNT=0: Debian's useradd would otherwise give the new user a range itself.
    run('useradd', ['--create-home', '--shell', '/bin/sh', '--user-group', '-K', 'SUB_UID_COUNT=0', '-K', 'SUB_GID_COUNT=0', name]);
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-idmig-'));
    try {
      const uid = Number(run('id', ['-u', name]).trim());
      const gid = Number(run('id', ['-g', name]).trim());
      fs.chmodSync(work, 0o755);
      const xdg = path.join(work, 'xdg');
      fs.mkdirSync(xdg, { mode: 0o700 });
      fs.chownSync(xdg, uid, gid);
      const mine = path.join(work, 'mine');
      fs.mkdirSync(mine, { mode: 0o700 });
      fs.copyFileSync(path.join(env.work, 'busybox.tar.gz'), path.join(mine, 'busybox.tar.gz'));
      run('chown', ['-R', `${uid}:${gid}`, mine]);
      const user: TestUser = { name, uid, gid, home: `/home/${name}`, runtimeDir: xdg };
      const as = (args: string[]) => burrow(['--root', path.join(mine, 'store'), '--runroot', path.join(mine, 'run'), ...args], { as: user });

      // Item 2: the fix names a range that overlaps nobody's, in either file.
      expect(allRanges('/etc/subuid').some((r) => r.owner === name || r.owner === String(uid))).toBe(false);
      const i = as(['info', '--format', 'json']);
      expect(i.code, i.stderr).toBe(0);
      const report = JSON.parse(i.stdout) as HostReport;
      expect(report.idmap.mode).toBe('single');
      const fix = report.checks.find((c) => c.id === 'idmap.ranges')?.fix ?? '';
      const m = /usermod --add-subuids (\d+)-(\d+) --add-subgids (\d+)-(\d+) (\S+)`/.exec(fix);
      expect(m, fix).not.toBeNull();
      const [start, end] = [Number(m![1]), Number(m![2])];
      expect([m![3], m![4], m![5]]).toEqual([m![1], m![2], name]);
      expect(end - start + 1).toBe(65536);
      expect(report.idmap.suggested).toEqual({ start, count: 65536 });
      for (const r of [...allRanges('/etc/subuid'), ...allRanges('/etc/subgid')]) {
        expect(start >= r.start + r.count || end < r.start, `${start}-${end} overlaps ${r.owner}:${r.start}:${r.count}`).toBe(true);
      }
      expect(fix).toContain('getsubids');

      // Item 3: a store made in single-id mode, an image in it and a container run.
      const imp = as(['import', path.join(mine, 'busybox.tar.gz'), 'bb']);
      expect(imp.code, imp.stderr).toBe(0);
      expect(as(['run', '--rm', 'bb', 'id', '-u']).stdout).toBe('0\n');
      // The administrator follows the fix.
      fs.appendFileSync('/etc/subuid', `${name}:${start}:65536\n`);
      fs.appendFileSync('/etc/subgid', `${name}:${start}:65536\n`);
      const before = as(['run', '--rm', '-u', '1000', 'bb', 'id', '-u']);
      // Not a raw EINVAL: the run goes on as container root and says what changed and the fix.
      expect(before.code, before.stderr).toBe(0);
      expect(before.stdout).toBe('0\n');
      expect(before.stderr).toContain('burrow system migrate');
      expect(before.stderr).not.toMatch(/setresuid/);
      // Running containers stop a migration.
      const d = as(['run', '-d', '--name', 'busy', 'bb', 'sleep', '60']);
      expect(d.code, d.stderr).toBe(0);
      const refused = as(['system', 'migrate']);
      expect(refused.code).toBe(125);
      expect(refused.stderr).toContain('busy');
      expect(refused.stderr).toContain('stop');
      expect(as(['rm', '-f', 'busy']).code).toBe(0);
      const mig = as(['system', 'migrate']);
      expect(mig.code, mig.stderr).toBe(0);
      expect(mig.stdout).toMatch(/id mapping: single .* -> subuid/);
      expect(mig.stdout).toContain('layers unpacked again for it: 1');
      const after = as(['run', '--rm', '-u', '1000', 'bb', 'id', '-u']);
      expect([after.code, after.stdout, after.stderr]).toEqual([0, '1000\n', '']);
      const maps = as(['run', '--rm', 'bb', 'cat', '/proc/self/uid_map']).stdout.trim().split('\n').map((l) => l.trim().split(/\s+/));
      expect(maps).toEqual([['0', String(uid), '1'], ['1', String(start), '65536']]);
      // Migrating again changes nothing.
      const again = as(['system', 'migrate']);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stdout).toContain('(unchanged)');
      // The range goes again (or the store is used on a machine without it): a clear refusal
      // before anything is made, not newuidmap's complaint, and the way back.
      for (const f of ['/etc/subuid', '/etc/subgid']) {
        fs.writeFileSync(f, fs.readFileSync(f, 'utf8').split(/(?<=\n)/).filter((l) => !l.startsWith(`${name}:`)).join(''));
      }
      const gone = as(['run', '--rm', 'bb', 'id', '-u']);
      expect(gone.code).toBe(125);
      expect(gone.stderr).toContain('/etc/subuid and /etc/subgid give you none on this host');
      expect(gone.stderr).toContain('burrow system migrate');
      expect(as(['ps', '-aq']).stdout).toBe('');
      const back = as(['system', 'migrate']);
      expect(back.code, back.stderr).toBe(0);
      expect(back.stdout).toMatch(/id mapping: subuid .* -> single/);
      const single = as(['run', '--rm', 'bb', 'id', '-u']);
      expect([single.code, single.stdout], single.stderr).toEqual([0, '0\n']);
      as(['rm', '-af']);
    } finally {
      // Only this test's lines go (another test's user may be added meanwhile): the files are
      // then what they were, byte for byte, as checked below.
      for (const f of ['/etc/subuid', '/etc/subgid']) {
        const text = fs.readFileSync(f, 'utf8');
        fs.writeFileSync(f, text.split(/(?<=\n)/).filter((l) => !l.startsWith(`${name}:`)).join(''));
      }
      spawnSync('userdel', ['--remove', name], { encoding: 'utf8' });
      fs.rmSync(work, { recursive: true, force: true });
    }
    expect(fs.readFileSync('/etc/subuid').equals(saved.subuid)).toBe(true);
    expect(fs.readFileSync('/etc/subgid').equals(saved.subgid)).toBe(true);
  });
});
