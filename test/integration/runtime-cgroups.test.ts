/**
 * burrow-runtime's cgroup commands on this kind of host (hybrid: v1 controllers, a v2 tree with
 * no useful controller): `pause`/`resume` through the v1 freezer as root, the clear refusal
 * rootless (no delegated cgroup, so no freezer), `events --stats`, and `--systemd-cgroup` falling
 * back to the cgroupfs driver with a warning where systemd cannot place the container. The cgroup
 * v2 side (libcgroups' fs manager, the v2 freezer) is proven in the VM lane (test/vm).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runtimeText } from '../../ts/errors';
import { IS_ROOT } from './helpers';
import { RUNTIME } from '../harness/bundle.mjs';
import { runtimeEnv, type Config, type Out } from './runtime.helpers';

const env = runtimeEnv('rtcg');
const { work, stateRoot } = env;
let n = 0;
afterAll(() => env.dispose());

/** Runs the runtime with stdio in files: a detached container keeps what it was given. */
const rt = (args: string[], global: string[] = []): Out => env.rt(args, { globals: global });

function bundle(args: string[], edit?: (c: Config) => void): { dir: string; id: string } {
  n++;
  return env.bundle(args, edit);
}

const status = (id: string): string => JSON.parse(rt(['state', id]).stdout).status;
const sleep = (s: number) => spawnSync('sleep', [String(s)]);

/** A detached container that counts in /tmp/c ten times a second. */
function counter(edit?: (c: Config) => void): { dir: string; id: string; count: () => number } {
  // Written aside and renamed: a read never sees the file truncated and not yet rewritten (0).
  const b = bundle(['sh', '-c', 'i=0; while :; do i=$((i+1)); echo $i >/tmp/c.new; mv /tmp/c.new /tmp/c; sleep 0.1; done'], edit);
  const r = rt(['run', '--detach', '--bundle', b.dir, b.id]);
  expect(r.code, r.stderr).toBe(0);
  const file = path.join(b.dir, 'rootfs', 'tmp', 'c');
  const count = () => Number(fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim() || 0 : 0);
  for (let i = 0; i < 100 && count() === 0; i++) sleep(0.05);
  return { ...b, count };
}

const cgroupPath = (c: Config) => {
  c.linux.cgroupsPath = `burrow-test-${process.pid}-${n}`;
};

/**
 * A bundle from `burrow-runtime spec` without --rootless: what podman as root and containerd's CRI
 * send (no user namespace, the deny-all device rule, a read-only `cgroup` mount at
 * /sys/fs/cgroup), with a cgroupsPath.
 */
function rootBundle(args: string[], edit?: (c: Config) => void): { dir: string; id: string } {
  n++;
  // The rootless config env.bundle writes makes way for the runtime's default (root) one.
  const { dir, id } = env.bundle(args);
  fs.rmSync(path.join(dir, 'config.json'));
  const sp = spawnSync(RUNTIME, ['spec', '--bundle', dir], { encoding: 'utf8' });
  expect(sp.status, sp.stderr).toBe(0);
  const c: Config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  c.process.args = args;
  c.process.terminal = false;
  c.root.readonly = false;
  c.linux.cgroupsPath = `burrow-test-${process.pid}-${n}`;
  expect(c.linux.resources.devices).toEqual([{ allow: false, access: 'rwm' }]);
  expect(c.mounts.find((m: Config) => m.destination === '/sys/fs/cgroup')?.type).toBe('cgroup');
  if (edit) edit(c);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(c, null, 2));
  return { dir, id };
}

/** Without the cgroup namespace, as podman runs a container as root on cgroup v1. */
const hostCgroupns = (c: Config) => {
  c.linux.namespaces = c.linux.namespaces.filter((ns: Config) => ns.type !== 'cgroup');
};

describe(`burrow-runtime cgroups as ${IS_ROOT ? 'root' : 'an unprivileged user'} on a hybrid host`, () => {
  it.runIf(IS_ROOT && fs.existsSync('/sys/fs/cgroup/freezer'))('pause freezes every process (v1 freezer), state says paused, resume thaws', () => {
    const c = counter(cgroupPath);
    expect(status(c.id)).toBe('running');
    expect(rt(['pause', c.id]).code).toBe(0);
    expect(status(c.id)).toBe('paused');
    const frozen = c.count();
    sleep(0.5);
    expect(c.count()).toBe(frozen);
    // Pausing twice is a state error, as with runc.
    const again = rt(['pause', c.id]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/paused/);
    expect(rt(['resume', c.id]).code).toBe(0);
    expect(status(c.id)).toBe('running');
    sleep(0.5);
    expect(c.count()).toBeGreaterThan(frozen);
    expect(rt(['delete', '--force', c.id]).code).toBe(0);
  });

  it.runIf(IS_ROOT && fs.existsSync('/sys/fs/cgroup/freezer'))('delete --force of a paused container kills it and removes its cgroups', () => {
    const c = counter(cgroupPath);
    const pid = JSON.parse(rt(['state', c.id]).stdout).pid as number;
    const cg = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8').match(/^\d+:freezer:(.*)$/m)?.[1];
    expect(cg).toMatch(/burrow-test-/);
    expect(rt(['pause', c.id]).code).toBe(0);
    expect(rt(['delete', '--force', c.id]).code).toBe(0);
    expect(fs.existsSync(`/proc/${pid}`) && !fs.readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z')).toBe(false);
    expect(fs.existsSync(path.join('/sys/fs/cgroup/freezer', cg!))).toBe(false);
    expect(rt(['state', c.id]).code).toBe(1);
  });

  it('pause of a container without a cgroup says why and how to get one', () => {
    const c = counter();
    const r = rt(['pause', c.id]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/has no cgroup, so there is no freezer.*Fix:/);
    expect(status(c.id)).toBe('running');
    expect(rt(['delete', '--force', c.id]).code).toBe(0);
  });

  it.runIf(IS_ROOT && fs.existsSync('/sys/fs/cgroup/memory'))('update changes a running container\'s memory and pids limits in its cgroups', () => {
    const c = counter((cfg) => {
      cgroupPath(cfg);
      cfg.linux.resources = { memory: { limit: 64 << 20 }, pids: { limit: 40 } };
    });
    const pid = JSON.parse(rt(['state', c.id]).stdout).pid as number;
    const where = (ctrl: string) => fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8').match(new RegExp(`^\\d+:[^:]*\\b${ctrl}\\b[^:]*:(.*)$`, 'm'))?.[1];
    const memDir = path.join('/sys/fs/cgroup/memory', where('memory')!);
    const pidsDir = path.join('/sys/fs/cgroup/pids', where('pids')!);
    expect(fs.readFileSync(path.join(memDir, 'memory.limit_in_bytes'), 'utf8').trim()).toBe(String(64 << 20));
    const r = rt(['update', '--memory', '96m', '--pids-limit', '60', c.id]);
    expect(r.code, r.stderr).toBe(0);
    expect(fs.readFileSync(path.join(memDir, 'memory.limit_in_bytes'), 'utf8').trim()).toBe(String(96 << 20));
    expect(fs.readFileSync(path.join(pidsDir, 'pids.max'), 'utf8').trim()).toBe('60');
    // -r with LinuxResources JSON, as containerd passes it.
    fs.writeFileSync(path.join(work, 'res.json'), JSON.stringify({ pids: { limit: 30 } }));
    expect(rt(['update', '-r', path.join(work, 'res.json'), c.id]).code).toBe(0);
    expect(fs.readFileSync(path.join(pidsDir, 'pids.max'), 'utf8').trim()).toBe('30');
    expect(rt(['delete', '--force', c.id]).code).toBe(0);
  });

  // v1 has no CLONE_INTO_CGROUP: the exec'd process is moved into each of the container's
  // hierarchies before it joins the namespaces (test/vm proves the v2 side: born there).
  it.runIf(IS_ROOT && fs.existsSync('/sys/fs/cgroup/pids'))('exec joins the container\'s v1 cgroups (moved in) and is refused while it is paused', () => {
    const c = counter((cfg) => {
      cgroupPath(cfg);
      cfg.linux.resources = { pids: { limit: 40 } };
    });
    const r = rt(['exec', c.id, 'sh', '-c', 'cat /proc/1/cgroup; echo --; cat /proc/self/cgroup'], ['--debug']);
    expect(r.code, r.stderr).toBe(0);
    const [init, mine] = r.stdout.split('--\n');
    const pidsLine = (t: string) => t.split('\n').find((l) => /^\d+:pids:/.test(l));
    expect(pidsLine(init!)).toBeDefined();
    expect(pidsLine(mine!)).toBe(pidsLine(init!));
    expect(r.stderr).toMatch(/debug: exec: process \d+ in cgroup .*\/sys\/fs\/cgroup\/pids\/\S*burrow-test-\S*.*: entered by migration$/m);
    if (fs.existsSync('/sys/fs/cgroup/freezer')) {
      expect(rt(['pause', c.id]).code).toBe(0);
      const paused = rt(['exec', c.id, 'true']);
      expect(paused.code).toBe(1);
      expect(paused.stderr).toMatch(/cannot exec in container .*: it is paused/);
      expect(rt(['resume', c.id]).code).toBe(0);
    }
    expect(rt(['delete', '--force', c.id]).code).toBe(0);
  });

  // Issue 13 item 2: runc appends its default allow list (specconv.AllowedDevices: mknod of any
  // node; null, zero, full, random, urandom, tty, ptmx, pts, tun) to the spec's device rules.
  // Without it, the deny-all rule every root config carries made /dev/null and /dev/ptmx EPERM.
  it.runIf(IS_ROOT && fs.existsSync('/sys/fs/cgroup/devices'))('the deny-all device rule keeps the default devices usable and refuses a listed device with no allow rule (v1 devices cgroup)', () => {
    const script = [
      'echo x > /dev/null && echo null-ok',
      'head -c 5 /dev/zero | wc -c',
      'head -c 5 /dev/urandom > /dev/null && echo urandom-ok',
      'exec 3<>/dev/ptmx && echo ptmx-ok; exec 3>&-',
      'head -c 1 /dev/blk0 >/dev/null 2>/tmp/e; echo "blk0 $?"; cat /tmp/e',
    ].join('; ');
    // A block node the config lists (so the runtime creates it) but no rule allows.
    const blk = { path: '/dev/blk0', type: 'b', major: 7, minor: 0, fileMode: 0o600, uid: 0, gid: 0 };
    const b = rootBundle(['sh', '-c', script], (c) => {
      c.linux.devices = [blk];
    });
    const r = rt(['run', '--bundle', b.dir, b.id]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines.slice(0, 4)).toEqual(['null-ok', '5', 'urandom-ok', 'ptmx-ok']);
    expect(lines[4]).toMatch(/^blk0 [1-9]/);
    expect(r.stdout).toMatch(/Operation not permitted/);
    // The same node with a rule that allows it: read (an unbound loop device reads as empty).
    const ok = rootBundle(['sh', '-c', 'head -c 1 /dev/blk0 | wc -c'], (c) => {
      c.linux.devices = [blk];
      c.linux.resources.devices.push({ allow: true, type: 'b', major: 7, minor: 0, access: 'r' });
    });
    const r2 = rt(['run', '--bundle', ok.dir, ok.id]);
    expect(r2.stderr).toBe('');
    expect(r2.stdout.trim()).toBe('0');
  });

  // The same through `exec -t`, which opens /dev/ptmx for the process's terminal.
  it.runIf(IS_ROOT && fs.existsSync('/sys/fs/cgroup/devices'))('exec -t in a container with the deny-all device rule gets its terminal', () => {
    const b = rootBundle(['sleep', '30']);
    expect(rt(['run', '--detach', '--bundle', b.dir, b.id]).code).toBe(0);
    const r = spawnSync('script', ['-qec', `${RUNTIME} --root ${stateRoot} exec -t ${b.id} sh -c 'tty; echo x > /dev/null && echo null-ok'`, '/dev/null'], { encoding: 'utf8', timeout: 30_000 });
    expect(r.stdout).toMatch(/\/dev\/pts\/\d+/);
    expect(r.stdout).toMatch(/null-ok/);
    expect(r.status, r.stdout).toBe(0);
    expect(rt(['delete', '--force', b.id]).code).toBe(0);
  });

  // Issue 13 item 11: for a v1 `cgroup` mount runc mounts a tmpfs at /sys/fs/cgroup and, in it,
  // each hierarchy's directory of the container's own cgroup, read-only (observed with Debian's
  // runc 1.1.5 on this host: `/sys/fs/cgroup/memory` is `/<cgroupsPath>` of the memory
  // hierarchy, name=systemd included, and /proc/self/cgroup shows the host paths).
  it.runIf(IS_ROOT && fs.existsSync('/sys/fs/cgroup/memory'))('a cgroup mount shows the container\'s own v1 cgroups, read-only, as runc mounts them (no cgroup namespace, as podman as root)', () => {
    const script = [
      'ls /sys/fs/cgroup | tr "\\n" " "; echo',
      'cat /sys/fs/cgroup/memory/memory.limit_in_bytes',
      'cat /sys/fs/cgroup/memory/cgroup.procs | tr "\\n" " "; echo',
      'grep -E "^[0-9]+:(memory|pids|name=systemd):" /proc/self/cgroup',
      'touch /sys/fs/cgroup/memory/x 2>&1; touch /sys/fs/cgroup/x && echo tmpfs-rw',
    ].join('; ');
    const b = rootBundle(['sh', '-c', script], (c) => {
      hostCgroupns(c);
      c.linux.resources.memory = { limit: 48 << 20 };
    });
    const cgpath = (JSON.parse(fs.readFileSync(path.join(b.dir, 'config.json'), 'utf8')) as Config).linux.cgroupsPath as string;
    const r = rt(['run', '--bundle', b.dir, b.id]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const [ls, limit, procs, ...rest] = r.stdout.split('\n');
    const own = fs.readdirSync('/sys/fs/cgroup').filter((d) => d !== 'unified' && fs.statfsSync(path.join('/sys/fs/cgroup', d)).type === 0x27e0eb);
    expect(ls!.trim().split(' ').sort()).toEqual(own.sort());
    expect(limit).toBe(String(48 << 20));
    // sh and cat: the container's pids, as its pid namespace numbers them.
    expect(procs!.trim().split(' ').map(Number)).toContain(1);
    const self = rest.join('\n');
    expect(self).toMatch(new RegExp(`^\\d+:memory:.*/${cgpath}$`, 'm'));
    expect(self).toMatch(new RegExp(`^\\d+:pids:.*/${cgpath}$`, 'm'));
    if (own.includes('systemd')) expect(self).toMatch(new RegExp(`^\\d+:name=systemd:.*/${cgpath}$`, 'm'));
    expect(self).toMatch(/Read-only file system/);
    expect(self).toMatch(/tmpfs-rw/);
  });

  // With a cgroup namespace runc mounts each hierarchy itself: the view is rooted at the
  // container's cgroup, and /proc/self/cgroup says "/".
  it.runIf(IS_ROOT && fs.existsSync('/sys/fs/cgroup/memory'))('with a cgroup namespace the v1 cgroup mount is rooted at the container\'s cgroup', () => {
    const script = [
      'ls /sys/fs/cgroup | tr "\\n" " "; echo',
      'cat /sys/fs/cgroup/memory/memory.limit_in_bytes',
      'grep -E "^[0-9]+:memory:" /proc/self/cgroup',
      'touch /sys/fs/cgroup/memory/x 2>&1; true',
    ].join('; ');
    const b = rootBundle(['sh', '-c', script], (c) => {
      c.linux.resources.memory = { limit: 40 << 20 };
    });
    const r = rt(['run', '--bundle', b.dir, b.id]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const [ls, limit, self, ro] = r.stdout.split('\n');
    expect(ls!.trim().split(' ')).toContain('memory');
    expect(ls!.trim().split(' ')).not.toContain('unified');
    expect(limit).toBe(String(40 << 20));
    expect(self).toMatch(/^\d+:memory:\/$/);
    expect(ro).toMatch(/Read-only file system/);
  });

  // The same mount for a rootless container (`burrow run` adds it to every config): in its user
  // and cgroup namespaces the hierarchies are mounted rooted at its own cgroup, which holds it.
  it.runIf(fs.existsSync('/sys/fs/cgroup/memory') && fs.existsSync('/sys/fs/cgroup/unified'))(`the cgroup mount shows the container's own v1 cgroups ${IS_ROOT ? 'in a user namespace' : 'rootless'} too`, () => {
    const b = bundle(['sh', '-c', 'ls /sys/fs/cgroup | tr "\\n" " "; echo; cat /sys/fs/cgroup/memory/cgroup.procs | tr "\\n" " "'], (c) => {
      c.mounts.push({ destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] });
    });
    const r = rt(['run', '--bundle', b.dir, b.id]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const [ls, procs] = r.stdout.split('\n');
    expect(ls!.trim().split(' ')).toContain('memory');
    // Runc leaves the hybrid host's v2 part out; the host's tree bound whole would show it.
    expect(ls!.trim().split(' ')).not.toContain('unified');
    expect(procs!.trim().split(' ').map(Number)).toContain(1);
  });

  it('update of a container without a cgroup, or with a bad size, fails with the reason', () => {
    const c = counter();
    const r = rt(['update', '--memory', '64m', c.id]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/created without a cgroup.*Fix:/);
    const bad = rt(['update', '--memory', 'lots', c.id]);
    expect(bad.code).toBe(1);
    // The runtime's error is runc's logrus line (quotes escaped): its message.
    expect(runtimeText(bad.stderr)).toMatch(/--memory: "lots" is not a size/);
    expect(rt(['delete', '--force', c.id]).code).toBe(0);
  });

  it('events --stats reports the container (the pids of a placed container, zeros otherwise)', () => {
    const c = counter(IS_ROOT ? cgroupPath : undefined);
    const r = rt(['events', '--stats', c.id]);
    expect(r.code, r.stderr).toBe(0);
    const ev = JSON.parse(r.stdout);
    expect(ev.type).toBe('stats');
    expect(ev.id).toBe(c.id);
    // sh and its sleep.
    expect(ev.data.pids.current).toBeGreaterThanOrEqual(1);
    if (IS_ROOT) expect(ev.data.memory.usage.usage).toBeGreaterThan(0);
    expect(rt(['delete', '--force', c.id]).code).toBe(0);
  });

  it('--systemd-cgroup without systemd on cgroup v2 warns once and runs with the cgroupfs driver', () => {
    const b = bundle(['sh', '-c', 'echo ran'], IS_ROOT ? cgroupPath : undefined);
    const r = rt(['run', '--bundle', b.dir, b.id], ['--systemd-cgroup']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('ran\n');
    expect(r.stderr).toMatch(/--systemd-cgroup: .*(not cgroup v2|systemd is not running).*using the cgroupfs driver/);
    expect(r.stderr.match(/--systemd-cgroup/g)).toHaveLength(1);
  });
});
