/**
 * burrow-runtime's mounts and sysctls as runc's clients use them (issue 13, items 1, 5, 6):
 * podman's default sysctls, the recursive mount attributes (`rro`, `rnoexec`, ...) of an rbind
 * tree, and hostile rootfs whose special mount destinations are symlinks. Bundles from busybox,
 * driven through the runtime's CLI as podman and containerd's shim do; run as root and (test/run.mjs)
 * as the unprivileged test user.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runtimeText } from '../../ts/errors';
import { IS_ROOT } from './helpers';
import { runtimeEnv, type Config, type Out } from './runtime.helpers';

const env = runtimeEnv('rtm');
const { work } = env;
let n = 0;
afterAll(() => env.dispose());

/** Runs the runtime, output to files (a container keeps the stdio it is given). */
const rt = (args: string[], wrap: string[] = []): Out => env.rt(args, { wrap });

function bundle(args: string[], edit?: (c: Config) => void, prepare?: (rootfs: string) => void): { dir: string; id: string } {
  return env.bundle(args, edit, { prepare });
}

function run(args: string[], edit?: (c: Config) => void, prepare?: (rootfs: string) => void, wrap: string[] = []): Out & { dir: string; id: string } {
  const b = bundle(args, edit, prepare);
  return { ...rt(['run', '--bundle', b.dir, b.id], wrap), ...b };
}

const has = (c: Config, t: string) => c.linux.namespaces.some((x: { type: string }) => x.type === t);
const addNs = (c: Config, t: string) => {
  if (!has(c, t)) c.linux.namespaces.push({ type: t });
};
const dropNs = (c: Config, t: string) => (c.linux.namespaces = c.linux.namespaces.filter((x: { type: string }) => x.type !== t));

/** The host's mount points (for "nothing was mounted outside"). */
const hostMountPoints = () => fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter(Boolean);

describe(`linux.sysctl as ${IS_ROOT ? 'root' : 'an unprivileged user'} (podman sets net.ipv4.ping_group_range by default)`, () => {
  const read = 'cat /proc/sys/net/ipv4/ping_group_range /proc/sys/net/ipv4/ip_forward';

  it('podman\'s default (a user namespace, a network namespace, ping_group_range "0 0") and ip_forward=1 read back inside', () => {
    const hostForward = fs.readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8');
    const r = run(['sh', '-c', read], (c) => {
      addNs(c, 'network');
      c.linux.sysctl = { 'net.ipv4.ping_group_range': '0 0', 'net.ipv4.ip_forward': '1' };
    });
    expect(r.stderr).toBe('');
    expect(r.stdout.replace(/\t/g, ' ')).toBe('0 0\n1\n');
    expect(r.code).toBe(0);
    // Written in the container's network namespace, not the host's.
    expect(fs.readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8')).toBe(hostForward);
  });

  // The kernel accepts a range only of gids mapped in the writer's user namespace: the whole
  // range needs the initial one (root without a user namespace, as rootful podman runs).
  it.runIf(IS_ROOT)('root without a user namespace: ping_group_range "0 2147483647" and ip_forward=1', () => {
    const r = run(['sh', '-c', read], (c) => {
      dropNs(c, 'user');
      delete c.linux.uidMappings;
      delete c.linux.gidMappings;
      addNs(c, 'network');
      c.linux.sysctl = { 'net.ipv4.ping_group_range': '0 2147483647', 'net.ipv4.ip_forward': '1' };
    });
    expect(r.stderr).toBe('');
    expect(r.stdout.replace(/\t/g, ' ')).toBe('0 2147483647\n1\n');
  });

  it('IPC sysctls in the container\'s IPC namespace; the path form of a key (runc 1.2)', () => {
    const r = run(['sh', '-c', 'cat /proc/sys/kernel/shmmni /proc/sys/kernel/msgmax /proc/sys/fs/mqueue/msg_max'], (c) => {
      addNs(c, 'ipc');
      c.linux.sysctl = { 'kernel.shmmni': '1234', 'kernel/msgmax': '4321', 'fs.mqueue.msg_max': '17' };
    });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('1234\n4321\n17\n');
  });

  it('/proc/sys is still read-only for the container after the sysctls', () => {
    const r = run(['sh', '-c', 'echo 0 > /proc/sys/net/ipv4/ip_forward; echo status=$?'], (c) => {
      addNs(c, 'network');
      c.linux.sysctl = { 'net.ipv4.ip_forward': '1' };
    });
    expect(r.stdout).toBe('status=1\n');
    expect(r.stderr).toMatch(/Read-only file system/);
  });

  it('refuses, as runc does, sysctls that are not namespaced or whose namespace the container lacks, and leaves nothing behind', () => {
    const cases: [Record<string, string>, (c: Config) => void, RegExp][] = [
      [{ 'kernel.pid_max': '4194304' }, (c) => addNs(c, 'network'), /sysctl "kernel.pid_max" is not in a separate kernel namespace/],
      [{ 'vm.swappiness': '10' }, () => {}, /sysctl "vm.swappiness" is not in a separate kernel namespace/],
      [{ 'net.ipv4.ip_forward': '1' }, (c) => dropNs(c, 'network'), /sysctl "net.ipv4.ip_forward" is not allowed in the host's network namespace/],
      [{ 'kernel.shmmax': '1' }, (c) => dropNs(c, 'ipc'), /sysctl "kernel.shmmax" is not allowed in the host's IPC namespace/],
      [{ 'kernel.hostname': 'x' }, () => {}, /sysctl "kernel.hostname" is not allowed: it conflicts with the config's "hostname" field/],
    ];
    for (const [sysctl, ns, msg] of cases) {
      const r = run(['true'], (c) => {
        ns(c);
        c.linux.sysctl = sysctl;
      });
      expect(r.code).toBe(1);
      // The runtime's error is runc's logrus line (quotes escaped): its message.
      expect(runtimeText(r.stderr)).toMatch(/invalid config .*config\.json: /);
      expect(runtimeText(r.stderr)).toMatch(msg);
      expect(rt(['state', r.id]).code).toBe(1);
    }
    // A network namespace joined by path that is the runtime's own is the host's.
    const own = run(['true'], (c) => {
      dropNs(c, 'network');
      c.linux.namespaces.push({ type: 'network', path: '/proc/self/ns/net' });
      c.linux.sysctl = { 'net.ipv4.ip_forward': '1' };
    });
    expect(own.code).toBe(1);
    expect(own.stderr).toMatch(/not allowed in the host's network namespace/);
  });
});

describe(`recursive mount attributes (rro, rnoexec, ...) as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  /** Options of the mounts at `points`, from the container's mountinfo, printed by the probe. */
  const optsProbe = (points: string[]) => points.map((p) => `awk '$5 == "${p}" { print $5, $6 }' /proc/self/mountinfo`).join('; ');

  it('apply to every mount of an rbind tree: a sub-mount is read-only under rro, not executable under rnoexec', () => {
    // The tree: two tmpfs the container itself mounts (so rootless too), bound again with rbind.
    const b = bundle(['sh', '-c', [
      'cp /bin/busybox /t/sub/true',
      'touch /r/top; echo top=$?',
      'touch /r/sub/low; echo sub=$?',
      '/x/sub/true; echo exec=$?',
      '/t/sub/true; echo plain=$?',
      optsProbe(['/r', '/r/sub', '/x/sub']),
    ].join('; ')], (c) => {
      c.mounts.push(
        { destination: '/t', type: 'tmpfs', source: 'tmpfs', options: ['mode=755'] },
        { destination: '/t/sub', type: 'tmpfs', source: 'tmpfs', options: ['mode=755'] },
        { destination: '/r', type: 'bind', source: '@ROOTFS@/t', options: ['rbind', 'rro'] },
        { destination: '/x', type: 'bind', source: '@ROOTFS@/t', options: ['rbind', 'rnoexec'] },
      );
    }, (rootfs) => ['t', 'r', 'x'].forEach((d) => fs.mkdirSync(path.join(rootfs, d))));
    const cfg = path.join(b.dir, 'config.json');
    fs.writeFileSync(cfg, fs.readFileSync(cfg, 'utf8').replaceAll('@ROOTFS@', path.join(b.dir, 'rootfs')));
    const r = rt(['run', '--bundle', b.dir, b.id]);
    expect(r.stdout.split('\n').slice(0, 4)).toEqual(['top=1', 'sub=1', 'exec=126', 'plain=0']);
    expect(r.stderr).toMatch(/touch: \/r\/top: Read-only file system/);
    expect(r.stderr).toMatch(/touch: \/r\/sub\/low: Read-only file system/);
    expect(r.stderr).toMatch(/\/x\/sub\/true: Permission denied/);
    const opts = Object.fromEntries(r.stdout.trim().split('\n').slice(4).map((l) => l.split(' ')));
    expect(opts['/r']).toMatch(/^ro,/);
    expect(opts['/r/sub']).toMatch(/^ro,/);
    expect(opts['/x/sub']).toMatch(/(^|,)noexec(,|$)/);
  });

  it('rnosuid, rnodev, rnoatime, rnosymfollow set and rexec, rrw clear, on every mount of the tree', () => {
    const b = bundle(['sh', '-c', optsProbe(['/r/sub', '/c/sub'])], (c) => {
      c.mounts.push(
        { destination: '/t', type: 'tmpfs', source: 'tmpfs', options: ['mode=755'] },
        { destination: '/t/sub', type: 'tmpfs', source: 'tmpfs', options: ['mode=755', 'noexec', 'ro'] },
        { destination: '/r', type: 'bind', source: '@ROOTFS@/t', options: ['rbind', 'rnosuid', 'rnodev', 'rnoatime', 'rnosymfollow'] },
        { destination: '/c', type: 'bind', source: '@ROOTFS@/t', options: ['rbind', 'rexec', 'rrw'] },
      );
    }, (rootfs) => ['t', 'r', 'c'].forEach((d) => fs.mkdirSync(path.join(rootfs, d))));
    const cfg = path.join(b.dir, 'config.json');
    fs.writeFileSync(cfg, fs.readFileSync(cfg, 'utf8').replaceAll('@ROOTFS@', path.join(b.dir, 'rootfs')));
    const r = rt(['run', '--bundle', b.dir, b.id]);
    expect(r.stderr).toBe('');
    const opts = Object.fromEntries(r.stdout.trim().split('\n').map((l) => l.split(' ')));
    for (const o of ['nosuid', 'nodev', 'noatime', 'nosymfollow']) expect(opts['/r/sub']).toMatch(new RegExp(`(^|,)${o}(,|$)`));
    expect(opts['/c/sub']).toMatch(/^rw,/);
    expect(opts['/c/sub']).not.toMatch(/noexec/);
  });

  // A host directory with a tmpfs mounted under it, made in a private mount namespace around the
  // runtime, never on the host. Rootless, the runtime runs as root of a user namespace of its
  // own (`unshare -r`, as rootless conformance runs do), which maps only the user.
  it('a host directory with a tmpfs under it, bound rbind,rro: the sub-mount refuses writes with EROFS', () => {
    const host = fs.mkdtempSync(path.join(work, 'host-'));
    fs.mkdirSync(path.join(host, 'sub'));
    const wrap = [...(IS_ROOT ? ['unshare', '-m'] : ['unshare', '-r', '-m']), '--propagation', 'private', 'sh', '-c', `mount -t tmpfs tmpfs ${host}/sub && exec "$0" "$@"`];
    const r = run(['sh', '-c', 'touch /m/sub/low; echo sub=$?; touch /m/top; echo top=$?'], (c) => {
      if (!IS_ROOT) {
        c.linux.uidMappings = [{ containerID: 0, hostID: 0, size: 1 }];
        c.linux.gidMappings = [{ containerID: 0, hostID: 0, size: 1 }];
      }
      c.mounts.push({ destination: '/m', type: 'bind', source: host, options: ['rbind', 'rro'] });
    }, (rootfs) => fs.mkdirSync(path.join(rootfs, 'm')), wrap);
    expect(r.stdout).toBe('sub=1\ntop=1\n');
    expect(r.stderr).toMatch(/touch: \/m\/sub\/low: Read-only file system/);
    expect(hostMountPoints()).not.toContain(`${host}/sub`);
  });
});

describe(`hostile rootfs: mount destinations that are symlinks, as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  const linkProc = (target: string) => (rootfs: string) => {
    fs.rmdirSync(path.join(rootfs, 'proc'));
    fs.symlinkSync(target, path.join(rootfs, 'proc'));
  };

  it('/proc -> /tmp/x: refused with a clear error (runc: "must be mounted on ordinary directory"), nothing mounted or made', () => {
    const before = hostMountPoints();
    const r = run(['true'], undefined, linkProc('/tmp/x'));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/mount on \/proc: proc must be mounted on an ordinary directory, and \/proc is a symlink \(to \/tmp\/x\) in the container's root filesystem; refused/);
    expect(fs.existsSync(path.join(r.dir, 'rootfs', 'tmp', 'x'))).toBe(false);
    expect(hostMountPoints()).toEqual(before);
    expect(rt(['state', r.id]).code).toBe(1);
  });

  it('/proc -> ../../../etc: refused, and the host\'s /etc is never mounted over', () => {
    const before = hostMountPoints();
    const r = run(['true'], undefined, linkProc('../../../etc'));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/mount on \/proc: proc must be mounted on an ordinary directory, and \/proc is a symlink \(to \.\.\/\.\.\/\.\.\/etc\)/);
    expect(hostMountPoints()).toEqual(before);
    expect(hostMountPoints()).not.toContain('/etc');
  });

  it('a special filesystem on a destination that is a file, and mqueue through a symlink, are refused the same way', () => {
    const file = run(['true'], undefined, (rootfs) => {
      fs.rmdirSync(path.join(rootfs, 'proc'));
      fs.writeFileSync(path.join(rootfs, 'proc'), '');
    });
    expect(file.code).toBe(1);
    expect(file.stderr).toMatch(/mount on \/proc: proc must be mounted on an ordinary directory, and \/proc is not a directory/);
    const mq = run(['true'], (c) => {
      c.mounts = c.mounts.filter((m: { destination: string }) => m.destination !== '/dev' && !m.destination.startsWith('/dev/'));
      c.mounts.push({ destination: '/mq', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] });
    }, (rootfs) => fs.symlinkSync('/etc', path.join(rootfs, 'mq')));
    expect(mq.code).toBe(1);
    expect(mq.stderr).toMatch(/mount on \/mq: mqueue must be mounted on an ordinary directory, and \/mq is a symlink \(to \/etc\)/);
  });

  it('a bind mount whose destination is a symlink to /../../x (or ../../../x) stays inside the rootfs', () => {
    const src = fs.mkdtempSync(path.join(work, 'src-'));
    fs.writeFileSync(path.join(src, 'file'), 'inside\n');
    const name = `escape-${process.pid}-${++n}`;
    const r = run(['sh', '-c', `cat /${name}/file /${name}2/file`], (c) => {
      c.mounts.push({ destination: '/abs', type: 'bind', source: src, options: ['rbind'] }, { destination: '/rel', type: 'bind', source: src, options: ['rbind'] });
    }, (rootfs) => {
      fs.symlinkSync(`/../../${name}`, path.join(rootfs, 'abs'));
      fs.symlinkSync(`../../../${name}2`, path.join(rootfs, 'rel'));
    });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('inside\ninside\n');
    // Made inside the rootfs, nowhere above it.
    expect(fs.existsSync(path.join(r.dir, 'rootfs', name))).toBe(true);
    for (const above of [r.dir, work, path.dirname(work), '/']) {
      expect(fs.existsSync(path.join(above, name))).toBe(false);
      expect(fs.existsSync(path.join(above, `${name}2`))).toBe(false);
    }
  });
});

// Issue 13, item 12: mounts in shared peer groups (podman's /run/netns/*, a tmpfs under /tmp)
// vanished from the host during root runs. The cause: slirp4netns --enable-sandbox, started as
// root by the network owner (`run --network-config`, the monitor), unshares a mount namespace,
// makes only `/` private (not recursively), pivots and detaches the old root: the detach
// propagates to every peer of a shared mount under it, the host's included. The test plays the
// host in a private mount namespace of its own, with such peer groups, and looks after the run.
describe.runIf(IS_ROOT && fs.existsSync('/usr/bin/slirp4netns'))('the host\'s mount table as root', () => {
  it('a network helper (slirp4netns --enable-sandbox) unmounts nothing of the host through shared peer groups', () => {
    const d = fs.mkdtempSync(path.join(work, 'prop-'));
    const b = bundle(['sh', '-c', 'grep -c tap0 /proc/net/dev'], (c) => addNs(c, 'network'));
    const cfg = path.join(work, `net-${b.id}.json`);
    fs.writeFileSync(cfg, JSON.stringify({ helper: 'slirp4netns', helperPath: '/usr/bin/slirp4netns', mtu: 1500 }));
    const script = [
      'set -e',
      // a shared tmpfs, a bind of it (same peer group), a tmpfs under it (in both)
      `mkdir -p ${d}/a ${d}/b ${d}/netns`,
      `mount -t tmpfs tmpfs ${d}/a`,
      `mount --make-shared ${d}/a`,
      `mount --bind ${d}/a ${d}/b`,
      `mkdir ${d}/a/sub`,
      `mount -t tmpfs tmpfs ${d}/a/sub`,
      // what `ip netns add` makes: a shared directory with a namespace file bound under it
      `mount --bind ${d}/netns ${d}/netns`,
      `mount --make-shared ${d}/netns`,
      `touch ${d}/netns/ns1`,
      `mount --bind /proc/self/ns/net ${d}/netns/ns1`,
      `"$0" "$@" || echo "runtime status $?"`,
      `awk '$5 ~ "^${d}/" { print $5 }' /proc/self/mountinfo | sort`,
    ].join('\n');
    const r = rt(['run', '--network-config', cfg, '--bundle', b.dir, b.id], ['unshare', '-m', '--propagation', 'private', 'sh', '-c', script]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(['1', `${d}/a`, `${d}/a/sub`, `${d}/b`, `${d}/b/sub`, `${d}/netns`, `${d}/netns/ns1`, ''].join('\n'));
  });
});
