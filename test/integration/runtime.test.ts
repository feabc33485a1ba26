/**
 * burrow-runtime as runc's users drive it: bundles built from busybox-static, run as root and
 * (test/run.mjs) as the unprivileged test user. Everything is observed from inside the
 * container (its own /proc) or through the runtime's CLI.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { IS_ROOT, ROOT } from './helpers';
import { ownSubuid, RUNTIME } from '../harness/bundle.mjs';
import { runtimeEnv, type Config, type Out } from './runtime.helpers';

const env = runtimeEnv('rt');
const { work, stateRoot, rt, waitFor } = env;
let n = 0;
afterAll(() => env.dispose());

/** A fresh bundle sharing one rootfs copy per test (cp -a keeps it cheap and isolated). */
function bundle(args: string[], edit?: (c: Config) => void, terminal = false, files: Record<string, string> = {}): { dir: string; id: string; config: Config } {
  return env.bundle(args, edit, { terminal, files });
}

function run(args: string[], edit?: (c: Config) => void, files: Record<string, string> = {}): Out {
  const b = bundle(args, edit, false, files);
  return rt(['run', '--bundle', b.dir, b.id]);
}

describe(`burrow-runtime as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it('propagates exit statuses 0 and 42', () => {
    expect(run(['true']).code).toBe(0);
    const r = run(['sh', '-c', 'echo out; echo err >&2; exit 42']);
    expect(r.code).toBe(42);
    expect(r.stdout).toBe('out\n');
    expect(r.stderr).toBe('err\n');
  });

  it('reports 137 after SIGKILL and 143 after SIGTERM', async () => {
    // A pid namespace's init ignores SIGTERM without a handler, as with runc and Docker; the
    // SIGTERM case therefore runs without a pid namespace.
    for (const [sig, code, pidns] of [['KILL', 137, true], ['TERM', 143, false]] as const) {
      const b = bundle(['sleep', '30'], (c) => {
        if (!pidns) c.linux.namespaces = c.linux.namespaces.filter((x: { type: string }) => x.type !== 'pid');
      });
      const child = spawn(RUNTIME, ['--root', stateRoot, 'run', '--bundle', b.dir, b.id], { stdio: 'ignore' });
      const exited = new Promise<number>((res) => child.on('exit', (c, s) => res(c ?? 128 + (s === 'SIGKILL' ? 9 : 15))));
      waitFor(() => rt(['state', b.id]).stdout.includes('"running"'));
      expect(rt(['kill', b.id, sig]).code).toBe(0);
      expect(await exited).toBe(code);
      expect(rt(['state', b.id]).code).toBe(1); // `run` deleted it
    }
  });

  it('the process is pid 1 and sees no host processes', () => {
    const r = run(['sh', '-c', 'echo $$; ls /proc | grep -c "^[0-9]"']);
    expect(r.code).toBe(0);
    const [pid, count] = r.stdout.trim().split('\n').map(Number);
    expect(pid).toBe(1);
    // sh, ls and grep at most; the host has many more.
    expect(count).toBeLessThanOrEqual(3);
    expect(fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).length).toBeGreaterThan(10);
  });

  it('applies the hostname and domainname', () => {
    const r = run(['sh', '-c', 'hostname; cat /proc/sys/kernel/domainname'], (c) => {
      c.hostname = 'burrow-box';
      c.domainname = 'example.test';
    });
    expect(r.stdout).toBe('burrow-box\nexample.test\n');
  });

  it('writes the configured uid/gid mappings (subordinate ranges through newuidmap when unprivileged)', () => {
    const uid = process.getuid!();
    const gid = process.getgid!();
    const sub = ownSubuid('/etc/subuid');
    const subg = ownSubuid('/etc/subgid');
    const maps = (own: number, s: { start: number } | null) => (s && !IS_ROOT ? [{ containerID: 0, hostID: own, size: 1 }, { containerID: 1, hostID: s.start, size: 1000 }] : [{ containerID: 0, hostID: own, size: 1 }]);
    const r = run(['sh', '-c', 'cat /proc/self/uid_map; echo --; cat /proc/self/gid_map; echo --; id'], (c) => {
      c.linux.uidMappings = maps(uid, sub);
      c.linux.gidMappings = maps(gid, subg);
    });
    expect(r.code).toBe(0);
    const [um, gm, id] = r.stdout.split('--\n');
    const rows = (t: string) => t.trim().split('\n').map((l) => l.trim().split(/\s+/).map(Number));
    expect(rows(um!)).toEqual(maps(uid, sub).map((m) => [m.containerID, m.hostID, m.size]));
    expect(rows(gm!)).toEqual(maps(gid, subg).map((m) => [m.containerID, m.hostID, m.size]));
    expect(id).toMatch(/^uid=0\(root\) gid=0\(root\)/);
    if (!IS_ROOT) expect(sub).not.toBeNull(); // the harness gives the test user a range
  });

  it('runs as the configured user with additional groups', () => {
    const sub = ownSubuid('/etc/subuid');
    if (!IS_ROOT && !sub) return;
    const r = run(['sh', '-c', 'id -u; id -g; id -G; umask'], (c) => {
      if (!IS_ROOT) {
        c.linux.uidMappings = [{ containerID: 0, hostID: process.getuid!(), size: 1 }, { containerID: 1, hostID: sub!.start, size: 2000 }];
        c.linux.gidMappings = [{ containerID: 0, hostID: process.getgid!(), size: 1 }, { containerID: 1, hostID: ownSubuid('/etc/subgid')!.start, size: 2000 }];
      } else {
        c.linux.uidMappings = [{ containerID: 0, hostID: 0, size: 2000 }];
        c.linux.gidMappings = [{ containerID: 0, hostID: 0, size: 2000 }];
      }
      c.process.user = { uid: 1000, gid: 1001, additionalGids: [1002, 1003], umask: 0o027 };
    });
    expect(r.stderr).toBe('');
    expect(r.stdout.split('\n')).toEqual(['1000', '1001', '1001 1002 1003', '0027', '']);
  });

  describe('idmapped bind mounts (runc semantics: a mount mapping {containerID: id on the filesystem, hostID: id it shows as})', () => {
    const uid = process.getuid!();
    const sub = ownSubuid('/etc/subuid');
    const subg = ownSubuid('/etc/subgid');
    /** Container ids 0..1000 at least: root maps 0→100000, the test user 0→itself and 1..→its range. */
    const maps = (own: number, s: { start: number } | null) => (IS_ROOT ? [{ containerID: 0, hostID: 100000, size: 65536 }] : [{ containerID: 0, hostID: own, size: 1 }, { containerID: 1, hostID: s!.start, size: 2000 }]);
    /** The host id that container id `id` is under that mapping. */
    const hostOf = (id: number) => (IS_ROOT ? 100000 + id : id === 0 ? uid : sub!.start + id - 1);
    const withUserns = (c: Config) => {
      c.linux.uidMappings = maps(uid, sub);
      c.linux.gidMappings = maps(process.getgid!(), subg);
    };
    const one = (fsId: number, host: number) => [{ containerID: fsId, hostID: host, size: 1 }];
    /** A host directory and a file in it that the caller owns (as root: uid 1001, a user's). */
    const hostDir = () => {
      const d = fs.mkdtempSync(path.join(work, 'idmap-'));
      fs.chmodSync(d, 0o755);
      fs.writeFileSync(path.join(d, 'own'), 'x');
      // The kernel refuses writes to a directory whose owner the mount's mapping lacks.
      if (IS_ROOT) for (const p of [d, path.join(d, 'own')]) fs.chownSync(p, 1001, 1001);
      return d;
    };
    const owner = IS_ROOT ? 1001 : uid;
    // As root the container's root is host uid 100000, which must reach the bundles.
    if (IS_ROOT) fs.chmodSync(work, 0o711);

    it('shows a host directory through the container\'s mapping or the mount\'s own, and writes through it (root); rootless, it is refused with the kernel\'s reason', () => {
      if (!IS_ROOT) expect(sub).not.toBeNull(); // the harness gives the test user a range
      const d = hostDir();
      const bind = (dest: string, extra: Config = {}) => ({ destination: dest, type: 'bind', source: d, options: ['bind', 'idmap'], ...extra });
      const r = run(['sh', '-c', 'stat -c "%n %u:%g" /same/own /zero/own /k/own; touch /zero/made && stat -c "%n %u" /zero/made'], (c) => {
        withUserns(c);
        c.mounts.push(
          bind('/same'), // the container's mapping: ids show as they are on disk
          bind('/zero', { uidMappings: one(owner, hostOf(0)), gidMappings: one(owner, hostOf(0)) }),
          bind('/k', { uidMappings: one(owner, hostOf(1000)), gidMappings: one(owner, hostOf(1000)) }),
        );
      }, { '/same/': '', '/zero/': '', '/k/': '' });
      if (IS_ROOT) {
        expect(r.stderr).toBe('');
        expect(r.stdout).toBe('/same/own 1001:1001\n/zero/own 0:0\n/k/own 1000:1000\n/zero/made 0\n');
        // What the container's root wrote through the mapping belongs to the directory's owner.
        expect(fs.statSync(path.join(d, 'made')).uid).toBe(1001);
      } else {
        // fs/namespace.c can_idmap_mount: CAP_SYS_ADMIN in the user namespace owning the
        // filesystem (the initial one for the host's ext4), which a rootless container lacks.
        expect(r.code).toBe(1);
        expect(r.stderr).toMatch(/idmapped mount on \/same: mount_setattr\(MOUNT_ATTR_IDMAP\) of .* failed \(Operation not permitted\): the kernel allows idmapped mounts only to a process with CAP_SYS_ADMIN in the user namespace that owns the source's filesystem \(fs\/namespace\.c: can_idmap_mount\); .* is on ext4 mounted outside the container's user namespace .* needs burrow-runtime running as root/);
        expect(fs.existsSync(path.join(d, 'made'))).toBe(false);
      }
    });

    // A rootless container always has a user namespace.
    it.runIf(IS_ROOT)('without a user namespace, a mount mapping shows host ids (root); idmap alone is refused there (runtime spec)', () => {
      const d = hostDir();
      const noUserns = (c: Config) => (c.linux.namespaces = c.linux.namespaces.filter((x: { type: string }) => x.type !== 'user'));
      const r = run(['stat', '-c', '%u:%g', '/m/own'], (c) => {
        noUserns(c);
        c.mounts.push({ destination: '/m', type: 'bind', source: d, options: ['bind', 'idmap'], uidMappings: one(1001, 4321), gidMappings: one(1001, 4321) });
      }, { '/m/': '' });
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe('4321:4321\n');
      const refused = run(['true'], (c) => {
        noUserns(c);
        c.mounts.push({ destination: '/m', type: 'bind', source: d, options: ['bind', 'idmap'] });
      }, { '/m/': '' });
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/idmapped mount on \/m: idmap without uidMappings\/gidMappings uses the container's user namespace, and this container has none/);
    });

    it('ridmap maps every mount of an rbind tree, idmap only its top (filesystems the container mounts: rootless too)', () => {
      if (!IS_ROOT) expect(sub).not.toBeNull(); // the harness gives the test user a range
      const b = bundle(['sh', '-c', 'touch /t/top /t/sub/low && stat -c "%n %u:%g" /r/top /r/sub/low /i/top /i/sub/low'], (c) => {
        withUserns(c);
        const m = { uidMappings: one(0, hostOf(1000)), gidMappings: one(0, hostOf(1000)) };
        // tmpfs since Linux 6.3 supports idmapped mounts; mounted in the container's user
        // namespace, the container's root may idmap it even rootless.
        c.mounts.push(
          { destination: '/t', type: 'tmpfs', source: 'tmpfs', options: ['mode=755'] },
          { destination: '/t/sub', type: 'tmpfs', source: 'tmpfs', options: ['mode=755'] },
          { destination: '/r', type: 'bind', source: '@ROOTFS@/t', options: ['rbind', 'ridmap'], ...m },
          { destination: '/i', type: 'bind', source: '@ROOTFS@/t', options: ['rbind', 'idmap'], ...m },
        );
      }, false, { '/t/': '', '/r/': '', '/i/': '' });
      // The source: the tmpfs on the bundle's rootfs, as the runtime sees it before pivot_root.
      const cfg = path.join(b.dir, 'config.json');
      fs.writeFileSync(cfg, fs.readFileSync(cfg, 'utf8').replaceAll('@ROOTFS@', path.join(b.dir, 'rootfs')));
      const r = rt(['run', '--bundle', b.dir, b.id]);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe('/r/top 1000:1000\n/r/sub/low 1000:1000\n/i/top 1000:1000\n/i/sub/low 0:0\n');
    });

    // Rootless, a host tree is refused like any host directory (first test).
    it.runIf(IS_ROOT)('ridmap on a host tree with a submount (root: the runtime makes the tree in the container\'s mount namespace)', () => {
      const d = hostDir();
      const low = hostDir();
      fs.mkdirSync(path.join(d, 'sub'));
      const b = bundle(['stat', '-c', '%n %u', '/r/own', '/r/sub/own', '/i/own', '/i/sub/own'], (c) => {
        withUserns(c);
        const m = { uidMappings: one(1001, hostOf(7)), gidMappings: one(1001, hostOf(7)) };
        c.mounts.push({ destination: '/r', type: 'bind', source: d, options: ['rbind', 'ridmap'], ...m }, { destination: '/i', type: 'bind', source: d, options: ['rbind', 'idmap'], ...m });
      }, false, { '/r/': '', '/i/': '' });
      // The submount lives in a private mount namespace around the runtime, never on the host.
      const r = rt(['run', '--bundle', b.dir, b.id], { wrap: ['unshare', '-m', '--propagation', 'private', 'sh', '-c', `mount --bind ${low} ${d}/sub && exec "$0" "$@"`] });
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe('/r/own 7\n/r/sub/own 7\n/i/own 7\n/i/sub/own 65534\n');
    });

    it('a mapping to a host id the container lacks: rootless, refused with the id named (status 1); as root, shown as nobody like runc', () => {
      if (!IS_ROOT) expect(sub).not.toBeNull(); // the harness gives the test user a range
      const d = hostDir();
      const r = run(['stat', '-c', '%u', '/m/own'], (c) => {
        withUserns(c);
        c.mounts.push({ destination: '/m', type: 'bind', source: d, options: ['bind', 'idmap'], uidMappings: one(owner, 5000), gidMappings: one(owner, hostOf(0)) });
      }, { '/m/': '' });
      if (IS_ROOT) {
        expect(r.stderr).toBe('');
        expect(r.stdout).toBe('65534\n');
      } else {
        expect(r.code).toBe(1);
        expect(r.stderr).toMatch(/idmapped mount on \/m: host uid 5000 of the mount's uidMappings is not mapped into the container's user namespace \(its uid_map: 0 \d+ 1, 1 \d+ 2000\)/);
      }
    });

    it('refuses what the spec forbids: uidMappings without gidMappings, idmap on a non-bind mount', () => {
      const d = hostDir();
      const half = run(['true'], (c) => c.mounts.push({ destination: '/m', type: 'bind', source: d, options: ['bind', 'idmap'], uidMappings: one(0, 0) }), { '/m/': '' });
      expect(half.code).toBe(1);
      expect(half.stderr).toMatch(/idmapped mount on \/m: uidMappings and gidMappings must be given together/);
      const tmpfs = run(['true'], (c) => c.mounts.push({ destination: '/m', type: 'tmpfs', source: 'tmpfs', options: ['idmap'] }));
      expect(tmpfs.code).toBe(1);
      expect(tmpfs.stderr).toMatch(/idmapped mount on \/m: idmapped mounts are made of bind mounts only, and this is a tmpfs mount/);
    });
  });

  describe('--preserve-fds and socket activation', () => {
    /** Three files the caller opens; the runtime gets them as fds 3, 4, 5. */
    const files = () => ['three', 'four', 'five'].map((w) => {
      const f = path.join(work, `${w}-${++n}`);
      fs.writeFileSync(f, `${w}\n`);
      return fs.openSync(f, 'r');
    });
    // `test -e` is a shell builtin: it looks at the shell's own fds, which are the container
    // process's; cat is a child of that shell and inherits them.
    const probe = 'cat /proc/self/fd/3 /proc/self/fd/4; for f in 5 6; do test -e /proc/self/fd/$f && echo "fd $f leaked"; done; echo "LISTEN=$LISTEN_FDS/$LISTEN_PID"';

    it('run passes fds 3..3+N-1 of the caller and closes the others', () => {
      const fds = files();
      try {
        const b = bundle(['sh', '-c', probe]);
        const r = rt(['run', '--preserve-fds', '2', '--bundle', b.dir, b.id], { fds });
        expect(r.stderr).toBe('');
        expect(r.stdout).toBe('three\nfour\nLISTEN=/\n');
        // Without the flag, none of them reaches the container.
        const none = bundle(['sh', '-c', 'for f in 3 4 5; do test -e /proc/self/fd/$f && echo "fd $f leaked"; done; echo done']);
        expect(rt(['run', '--bundle', none.dir, none.id], { fds }).stdout).toBe('done\n');
      } finally {
        fds.forEach((f) => fs.closeSync(f));
      }
    });

    it('the others are closed even where the config\'s seccomp filter denies close_range and the container has no /proc', () => {
      const fds = files();
      try {
        // No mount namespace: the init chroots, so the rootfs's /proc stays an empty directory.
        const b = bundle(['sh', '-c', 'ls /proc | wc -l; cat <&3; { cat <&4; } 2>/dev/null || echo "fd 4 closed"'], (c) => {
          c.linux.namespaces = c.linux.namespaces.filter((x: { type: string }) => x.type !== 'mount');
          c.mounts = [];
          c.linux.seccomp = { defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_X86_64'], syscalls: [{ names: ['close_range'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }] };
          // Without no_new_privs the filter is loaded early, while the runtime still works.
          c.process.noNewPrivileges = false;
          // Rootless with the single-id mapping, setgroups is denied, which the runtime learns
          // from /proc; without /proc it would try setgroups and fail (a separate matter).
          if (!IS_ROOT) {
            const [u, g] = [ownSubuid('/etc/subuid'), ownSubuid('/etc/subgid')];
            c.linux.uidMappings = [{ containerID: 0, hostID: process.getuid!(), size: 1 }, { containerID: 1, hostID: u!.start, size: 1000 }];
            c.linux.gidMappings = [{ containerID: 0, hostID: process.getgid!(), size: 1 }, { containerID: 1, hostID: g!.start, size: 1000 }];
          }
        });
        const r = rt(['run', '--preserve-fds', '1', '--bundle', b.dir, b.id], { fds });
        expect(r.stderr).toBe('');
        expect(r.stdout).toBe('0\nthree\nfd 4 closed\n');
      } finally {
        fds.forEach((f) => fs.closeSync(f));
      }
    });

    it.skipIf(IS_ROOT)('rootless with the single-id mapping and no mount namespace (no /proc to read setgroups from): runs', () => {
      const b = bundle(['sh', '-c', 'id -u; ls /proc | wc -l'], (c) => {
        c.linux.namespaces = c.linux.namespaces.filter((x: { type: string }) => x.type !== 'mount');
        c.mounts = [];
        c.linux.uidMappings = [{ containerID: 0, hostID: process.getuid!(), size: 1 }];
        c.linux.gidMappings = [{ containerID: 0, hostID: process.getgid!(), size: 1 }];
      });
      const r = rt(['run', '--bundle', b.dir, b.id]);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe('0\n0\n');
    });

    it('a preserved fd the caller did not open is refused with its number', () => {
      const fds = files();
      try {
        const b = bundle(['true']);
        const r = rt(['run', '--preserve-fds', '3', '--bundle', b.dir, b.id], { fds: fds.slice(0, 2) });
        expect(r.code).toBe(1);
        expect(r.stderr).toMatch(/--preserve-fds 3: fd 5 is not open in the caller/);
        expect(rt(['state', b.id]).code).toBe(1);
      } finally {
        fds.forEach((f) => fs.closeSync(f));
      }
    });

    it('socket-activation fds (LISTEN_FDS for this pid) come first, with LISTEN_FDS and LISTEN_PID set for the container process', () => {
      const fds = files();
      try {
        const b = bundle(['sh', '-c', probe]);
        // The shell execs the runtime, so $$ is the runtime's pid, as systemd sets it.
        const r = rt(['run', '--preserve-fds', '1', '--bundle', b.dir, b.id], { fds, wrap: ['sh', '-c', 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"'] });
        expect(r.stderr).toBe('');
        // pid 1: the process is its pid namespace's init.
        expect(r.stdout).toBe('three\nfour\nLISTEN=1/1\n');
        // Variables meant for another process pass nothing.
        const stale = bundle(['sh', '-c', probe]);
        const s = rt(['run', '--preserve-fds', '2', '--bundle', stale.dir, stale.id], { fds, wrap: ['sh', '-c', 'LISTEN_PID=1 LISTEN_FDS=1 exec "$0" "$@"'] });
        expect(s.stdout).toBe('three\nfour\nLISTEN=/\n');
      } finally {
        fds.forEach((f) => fs.closeSync(f));
      }
    });

    it('exec passes its own caller\'s fds the same way', () => {
      const fds = files();
      try {
        const b = bundle(['sleep', '30']);
        expect(rt(['run', '--detach', '--bundle', b.dir, b.id]).code).toBe(0);
        const r = rt(['exec', '--preserve-fds', '2', b.id, 'sh', '-c', probe], { fds });
        expect(r.stderr).toBe('');
        expect(r.stdout).toBe('three\nfour\nLISTEN=/\n');
        const none = rt(['exec', b.id, 'sh', '-c', 'for f in 3 4 5; do test -e /proc/self/fd/$f && echo "fd $f leaked"; done; echo done'], { fds });
        expect(none.stdout).toBe('done\n');
        rt(['delete', '--force', b.id]);
      } finally {
        fds.forEach((f) => fs.closeSync(f));
      }
    });
  });

  it('a read-only rootfs rejects writes', () => {
    const r = run(['sh', '-c', 'touch /newfile; echo status=$?'], (c) => (c.root.readonly = true));
    expect(r.stdout).toBe('status=1\n');
    expect(r.stderr).toMatch(/Read-only file system/);
  });

  it('masked paths are unreadable and read-only paths refuse writes', () => {
    const r = run(['sh', '-c', 'cat /etc/secret; echo "[$(ls /etc/secretdir)]"; echo x > /etc/rodir/f; echo status=$?'], (c) => {
      c.linux.maskedPaths = ['/etc/secret', '/etc/secretdir', '/does/not/exist'];
      c.linux.readonlyPaths = ['/etc/rodir'];
    }, { '/etc/secret': 'SECRET\n', '/etc/secretdir/inside': 'x', '/etc/rodir/': '' });
    expect(r.stdout).toBe('[]\nstatus=1\n');
    expect(r.stderr).toMatch(/Read-only file system/);
  });

  it('capabilities in /proc/self/status equal the config', () => {
    const r = run(['sh', '-c', 'grep ^Cap /proc/self/status'], (c) => {
      c.process.capabilities = {
        bounding: ['CAP_CHOWN', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'],
        effective: ['CAP_CHOWN', 'CAP_KILL'],
        permitted: ['CAP_CHOWN', 'CAP_KILL'],
        inheritable: ['CAP_KILL'],
        ambient: ['CAP_KILL'],
      };
    });
    const caps = Object.fromEntries(r.stdout.trim().split('\n').map((l) => l.split(':\t')));
    // Bits: CHOWN 0, KILL 5, NET_BIND_SERVICE 10. sh is exec'd by uid 0 so permitted stays.
    expect(caps).toEqual({ CapInh: '0000000000000020', CapPrm: '0000000000000021', CapEff: '0000000000000021', CapBnd: '0000000000000421', CapAmb: '0000000000000020' });
  });

  it('seccomp denies a denied syscall with the configured errno', () => {
    const r = run(['sh', '-c', 'mkdir /tmp/a; echo status=$?; touch /tmp/b && echo touched'], (c) => {
      c.linux.seccomp = {
        defaultAction: 'SCMP_ACT_ALLOW',
        architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86'],
        syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 95 }],
      };
    });
    expect(r.stdout).toBe('status=1\ntouched\n');
    expect(r.stderr).toMatch(/Operation not supported/); // strerror(95)
  });

  // The init fails before its id maps are written (it builds its seccomp filter while main runs
  // newuidmap/newgidmap): its reason is the one create reports, and nothing is left.
  it('a seccomp profile that cannot be built fails create with its own reason, nothing left behind', () => {
    const b = bundle(['true'], (c) => {
      c.linux.seccomp = { defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_X86_64'], syscalls: [{ names: ['mknodat'], action: 'SCMP_ACT_NOTIFY' }] };
    });
    const r = rt(['create', '--bundle', b.dir, b.id]);
    expect(r.code).toBe(1);
    expect(r.stderr, r.stderr).toMatch(/SCMP_ACT_NOTIFY needs a listener/);
    expect(rt(['state', b.id]).code).toBe(1);
  });

  it('a console-socket run gets a real tty of the configured size', async () => {
    const b = bundle(['sh', '-c', 'tty; stty size'], (c) => (c.process.consoleSize = { height: 30, width: 100 }), true);
    const sock = path.join(work, `${b.id}.sock`);
    const recv = spawn('python3', [path.join(ROOT, 'test', 'harness', 'recvtty.py'), sock], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    recv.stdout.on('data', (d) => (out += d));
    const done = new Promise((res) => recv.on('exit', res));
    waitFor(() => fs.existsSync(sock));
    const c = rt(['create', '--bundle', b.dir, '--console-socket', sock, b.id]);
    expect(c.stderr).toBe('');
    expect(rt(['start', b.id]).code).toBe(0);
    await done;
    expect(out.replace(/\r/g, '')).toBe('ready\n/dev/pts/0\n30 100\n');
    rt(['delete', '--force', b.id]);
  });

  it('a terminal config without --console-socket is refused with the reason', () => {
    const b = bundle(['true'], undefined, true);
    const r = rt(['create', '--bundle', b.dir, b.id]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--console-socket is required/);
    expect(rt(['state', b.id]).code).toBe(1); // nothing left behind
  });

  it('create / start / state / kill / delete round trip, with pid file, ps and list', () => {
    const b = bundle(['sleep', '30']);
    const pidFile = path.join(work, `${b.id}.pid`);
    expect(rt(['create', '--bundle', b.dir, '--pid-file', pidFile, b.id]).code).toBe(0);
    const created = JSON.parse(rt(['state', b.id]).stdout);
    expect(created).toMatchObject({ ociVersion: expect.any(String), id: b.id, status: 'created', bundle: b.dir });
    expect(created.pid).toBe(Number(fs.readFileSync(pidFile, 'utf8')));
    // The created container waits: its command has not run yet.
    expect(fs.readFileSync(`/proc/${created.pid}/comm`, 'utf8').trim()).toBe('burrow:init');
    // CVE-2019-5736 class: when the caller could write the runtime binary, so could the
    // container's root; the waiting init then runs from a sealed memfd copy, not the file.
    let writable = true;
    try {
      fs.accessSync(RUNTIME, fs.constants.W_OK);
    } catch {
      writable = false;
    }
    expect(fs.readlinkSync(`/proc/${created.pid}/exe`)).toMatch(writable ? /^\/memfd:burrow-runtime/ : new RegExp(`^${RUNTIME}$`));
    expect(rt(['start', b.id]).code).toBe(0);
    waitFor(() => fs.readFileSync(`/proc/${created.pid}/comm`, 'utf8').trim() === 'sleep');
    expect(JSON.parse(rt(['state', b.id]).stdout).status).toBe('running');
    expect(rt(['start', b.id]).stderr).toMatch(/cannot start container .* it is running/);
    expect(JSON.parse(rt(['ps', '--format', 'json', b.id]).stdout)).toEqual([created.pid]);
    expect(rt(['list', '-q']).stdout.split('\n')).toContain(b.id);
    expect(rt(['delete', b.id]).stderr).toMatch(/running \(use --force\)/);
    expect(rt(['kill', b.id, 'KILL']).code).toBe(0);
    waitFor(() => JSON.parse(rt(['state', b.id]).stdout).status === 'stopped');
    expect(rt(['kill', b.id]).code).toBe(1);
    expect(rt(['delete', b.id]).code).toBe(0);
    const gone = rt(['state', b.id]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/does not exist/);
  });

  it('the monitor runs from the runtime file, with no private copy of it; the init it creates runs from the sealed copy (CVE-2019-5736)', async () => {
    // A startContainer hook runs in the container, a child of the waiting init: it reads the
    // init's /proc/1/exe as a process of the container could (the CVE's way to the binary).
    const b = env.bundle(
      ['sleep', '100'],
      (c) => ((c as Config & { hooks?: unknown }).hooks = { startContainer: [{ path: '/h' }] }),
      { files: { '/h': '#!/bin/sh\nreadlink /proc/1/exe > /init-exe\n' }, prepare: (r) => fs.chmodSync(path.join(r, 'h'), 0o755) },
    );
    const mdir = path.join(work, `${b.id}-monitor`);
    fs.mkdirSync(mdir);
    const outPath = path.join(mdir, 'out');
    const out = fs.openSync(outPath, 'w');
    const mon = spawn(RUNTIME as string, ['--root', stateRoot, 'monitor', '--log-driver', 'none', '--bundle', b.dir, '--dir', mdir, b.id], { stdio: ['ignore', out, out] });
    fs.closeSync(out);
    const exited = new Promise<void>((r) => mon.on('exit', () => r()));
    try {
      waitFor(() => fs.readFileSync(outPath, 'utf8').includes('\n'));
      expect(JSON.parse(fs.readFileSync(outPath, 'utf8').split('\n')[0]!)).toEqual({ pid: expect.any(Number) });
      let writable = true;
      try {
        fs.accessSync(RUNTIME as string, fs.constants.W_OK);
      } catch {
        writable = false;
      }
      // When the caller could write the binary, so could the container's root: the init ran
      // from the sealed copy.
      expect(fs.readFileSync(path.join(b.dir, 'rootfs', 'init-exe'), 'utf8').trim()).toMatch(writable ? /^\/memfd:burrow-runtime/ : new RegExp(`^${RUNTIME}$`));
      // The monitor, which stays for the container's life, keeps no copy of the binary.
      expect(fs.readlinkSync(`/proc/${mon.pid}/exe`)).toBe(RUNTIME);
      expect(fs.readFileSync(`/proc/${mon.pid}/maps`, 'utf8')).not.toContain('memfd:');
    } finally {
      rt(['delete', '--force', b.id]);
      await exited;
    }
  });

  it('exec runs in the container and returns its status; 127 for a missing command', () => {
    const b = bundle(['sleep', '30'], (c) => (c.hostname = 'exec-host'));
    expect(rt(['run', '--detach', '--bundle', b.dir, b.id]).code).toBe(0);
    const r = rt(['exec', '--env', 'GREETING=hi', b.id, 'sh', '-c', 'echo $GREETING from $(hostname); ls /proc | grep -c "^[0-9]"; exit 7']);
    expect(r.code).toBe(7);
    const [line, count] = r.stdout.trim().split('\n');
    expect(line).toBe('hi from exec-host');
    expect(Number(count)).toBeLessThanOrEqual(4); // sleep, sh, ls, grep: same pid namespace
    const missing = rt(['exec', b.id, 'no-such-command']);
    expect(missing.code).toBe(127);
    expect(missing.stderr).toMatch(/executable file not found/);
    rt(['delete', '--force', b.id]);
  });

  it('refuses bad input with clear errors and leaves nothing behind', () => {
    const empty = fs.mkdtempSync(path.join(work, 'empty-'));
    const r = rt(['create', '--bundle', empty, 'x1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/config\.json/);
    expect(rt(['state', 'x1']).code).toBe(1);
    expect(rt(['create', '--bundle', empty, '../evil']).stderr).toMatch(/invalid container id/);
    const b = bundle(['sleep', '30']);
    expect(rt(['create', '--bundle', b.dir, b.id]).code).toBe(0);
    expect(rt(['create', '--bundle', b.dir, b.id]).stderr).toMatch(/already exists/);
    rt(['delete', '--force', b.id]);
    const nf = run(['/bin/no-such-binary']);
    expect(nf.code).toBe(1);
    expect(nf.stderr).toMatch(/no-such-binary.*no such file/);
  });
});
