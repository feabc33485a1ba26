/**
 * `burrow info` against what the test observes on the host itself, by other means (util-linux
 * `unshare`, `mount`, direct reads of /proc and /etc). Runs once as root and once as the
 * unprivileged test user (test/run.mjs); expectations follow the uid of this process.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { burrow, canOpenRw, IS_ROOT, sh } from './helpers';
import type { HostReport } from '../../ts/host/report';

function info(args: string[] = [], env?: Record<string, string | undefined>): { code: number; report: HostReport } {
  // Global flags (--root) come before the command, as with docker and podman.
  const r = burrow([...args, 'info', '--format', 'json'], { env });
  expect(r.stderr).toBe('');
  return { code: r.code, report: JSON.parse(r.stdout) as HostReport };
}

const whoami = os.userInfo();

describe(`burrow info as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  const { code, report } = info();

  it('reports this process identity and exits 0 when containers can run', () => {
    expect(report.schemaVersion).toBe(1);
    expect(report.uid).toBe(whoami.uid);
    expect(report.rootless).toBe(!IS_ROOT);
    expect(report.kernel.release).toBe(os.release());
    expect(report.canRunContainers).toBe(true);
    expect(code).toBe(0);
    // Every finding has a verdict and evidence; every failing or warning one that has a fix says it.
    for (const c of report.checks) expect(c.evidence.length).toBeGreaterThan(0);
  });

  it('user namespace verdict matches creating one ourselves with unshare', () => {
    const observed = sh('unshare', ['--user', '--map-root-user', '--mount', 'true']).code === 0;
    expect(report.userns.created).toBe(observed);
    expect(report.checks.find((c) => c.id === 'userns.create')?.verdict).toBe(observed ? 'ok' : 'fail');
    const max = Number(fs.readFileSync('/proc/sys/user/max_user_namespaces', 'utf8'));
    expect(report.userns.maxUserNamespaces).toBe(max);
  });

  it('subordinate ranges are the ones in /etc/subuid and /etc/subgid for this user', () => {
    const ranges = (file: string, id: number) =>
      (fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '')
        .split('\n')
        .map((l) => l.split(':'))
        .filter((f) => f.length === 3 && (f[0] === whoami.username || f[0] === String(id)) && Number(f[2]) > 0)
        .map((f) => ({ start: Number(f[1]), count: Number(f[2]) }));
    const subuid = ranges('/etc/subuid', whoami.uid);
    const subgid = ranges('/etc/subgid', whoami.gid);
    expect(report.idmap.subuid).toEqual(subuid);
    expect(report.idmap.subgid).toEqual(subgid);
    const setuid = (p: string) => {
      const st = fs.statSync(p);
      return st.uid === 0 && (st.mode & 0o4000) !== 0;
    };
    expect(report.idmap.newuidmap.privilege).toBe(setuid('/usr/bin/newuidmap') ? 'setuid' : expect.any(String));
    const helpersOk = IS_ROOT || (setuid('/usr/bin/newuidmap') && setuid('/usr/bin/newgidmap'));
    expect(report.idmap.mode).toBe(subuid.length && subgid.length && helpersOk ? 'subuid' : 'single');
    if (!IS_ROOT) expect(report.idmap.mode).toBe('subuid'); // the harness gave the test user a range
  });

  it('native overlay verdict matches mounting one ourselves in a user namespace', () => {
    const dir = fs.mkdtempSync(path.join(os.homedir(), '.burrow-test-ovl-'));
    try {
      for (const d of ['l', 'u', 'w', 'm']) fs.mkdirSync(path.join(dir, d));
      const opts = `lowerdir=${dir}/l,upperdir=${dir}/u,workdir=${dir}/w,userxattr`;
      const observed = sh('unshare', ['--user', '--map-root-user', '--mount', 'mount', '-t', 'overlay', 'overlay', '-o', opts, `${dir}/m`]).code === 0;
      const r = info(['--root', path.join(os.homedir(), '.local/share/burrow')]).report;
      expect(r.storage.nativeOverlay).toBe(observed);
      expect(r.storage.driver).toBe(observed ? 'overlay' : expect.stringMatching(/fuse-overlayfs|copy/));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('store filesystem type follows --root (tmpfs is recognised and warned about)', () => {
    const shm = fs.mkdtempSync('/dev/shm/burrow-test-');
    try {
      const r = info(['--root', path.join(shm, 'store')]).report;
      expect(r.storage.root).toBe(path.join(shm, 'store'));
      expect(r.storage.examined).toBe(shm);
      expect(r.storage.fsType).toBe('tmpfs');
      expect(r.storage.networkFs).toBe(false);
      expect(r.checks.find((c) => c.id === 'storage.fs')?.verdict).toBe('warn');
      // BURROW_ROOT is the same as --root.
      expect(info([], { BURROW_ROOT: path.join(shm, 'store') }).report.storage.fsType).toBe('tmpfs');
    } finally {
      fs.rmSync(shm, { recursive: true, force: true });
    }
  });

  it('/dev/net/tun verdict matches opening it ourselves', () => {
    const observed = canOpenRw('/dev/net/tun');
    expect(report.network.devNetTunUsable).toBe(observed);
    expect(report.checks.find((c) => c.id === 'network.tun')?.verdict).toBe(observed ? 'ok' : 'warn');
    const mode = (fs.statSync('/dev/net/tun').mode & 0o7777).toString(8).padStart(4, '0');
    expect(report.network.devNetTunMode).toBe(mode);
  });

  it('cgroup layout matches /proc/self/mountinfo and the v2 tree', () => {
    const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n');
    const v2 = mounts.map((l) => l.split(' - ')).filter((p) => p[1]?.startsWith('cgroup2 ')).map((p) => p[0]!.split(' ')[4]!);
    const v1 = mounts.some((l) => / - cgroup cgroup .*\b(memory|cpu|pids)\b/.test(l));
    const expected = v2.includes('/sys/fs/cgroup') ? 'unified' : v2.length && v1 ? 'hybrid' : v2.length ? 'unified' : v1 ? 'legacy' : 'none';
    expect(report.cgroups.mode).toBe(expected);
    const own = fs.readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => l.startsWith('0::'))?.slice(3);
    expect(report.cgroups.ownCgroup).toBe(own);
    if (v2[0]) {
      const dir = path.join(v2[0], own ?? '/');
      let writable = true;
      try {
        fs.accessSync(path.join(dir, 'cgroup.procs'), fs.constants.W_OK);
        fs.accessSync(path.join(dir, 'cgroup.subtree_control'), fs.constants.W_OK);
      } catch {
        writable = false;
      }
      const controllers = fs.readFileSync(path.join(dir, 'cgroup.controllers'), 'utf8').trim().split(/\s+/).filter(Boolean);
      if (writable) expect(report.cgroups.delegatedControllers).toEqual(controllers);
      else expect(report.cgroups.delegationSource).not.toBe('own-cgroup');
      // A limit is enforceable only if its controller is in the v2 tree and the tree is ours.
      for (const c of ['memory', 'pids', 'cpu', 'io']) {
        expect(report.cgroups.enforceable.includes(c)).toBe(expected !== 'legacy' && writable && controllers.includes(c));
      }
    }
    if (expected === 'hybrid') {
      // This machine's kind: no limit can be enforced, and the probe says so with a fix.
      const limits = report.checks.find((c) => c.id === 'cgroups.limits')!;
      expect(limits.verdict).toBe('warn');
      expect(limits.fix).toMatch(/Delegate=cpu cpuset io memory pids/);
    }
  });

  it('runtime directory: XDG_RUNTIME_DIR when it is ours and private, else the /tmp fallback', () => {
    const uid = whoami.uid;
    const unset = info([], { XDG_RUNTIME_DIR: undefined }).report.runtimeDir;
    expect(unset.usable).toBe(false);
    expect(unset.chosen).toBe(`/tmp/burrow-run-${uid}`);
    const mine = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-xdg-'));
    try {
      fs.chmodSync(mine, 0o700);
      const ok = info([], { XDG_RUNTIME_DIR: mine }).report.runtimeDir;
      expect(ok).toMatchObject({ usable: true, problem: null, chosen: path.join(mine, 'burrow') });
      fs.chmodSync(mine, 0o755);
      const open = info([], { XDG_RUNTIME_DIR: mine }).report.runtimeDir;
      expect(open.usable).toBe(false);
      expect(open.problem).toMatch(/mode 0755/);
    } finally {
      fs.rmSync(mine, { recursive: true, force: true });
    }
  });

  it('human output names each section and ends with the summary', () => {
    const r = burrow(['doctor']);
    expect(r.code).toBe(0);
    for (const s of ['Kernel', 'User namespaces', 'Identity', 'Storage', 'Networking', 'cgroups', 'Runtime directory']) {
      expect(r.stdout).toMatch(new RegExp(`^${s}$`, 'm'));
    }
    expect(r.stdout).toMatch(/Containers can run here \(id-map (subuid|single), storage (overlay|fuse-overlayfs|copy)/);
  });

  it('burrow-runtime and burrow-monitor: their paths and versions, in JSON and in a Runtime binaries section', () => {
    const version = (bin: string) => /version (\S+)/.exec(sh(bin, ['--version']).stdout)![1];
    const monitor = path.join(path.dirname(report.runtimeBinary.path!), 'burrow-monitor');
    expect(report.runtimeBinary.version).toBe(version(report.runtimeBinary.path!));
    expect(report.monitorBinary).toEqual({ path: monitor, version: version(monitor), error: null });
    expect(report.checks.find((c) => c.id === 'runtime.binary')).toMatchObject({ verdict: 'ok', title: 'burrow-runtime' });
    expect(report.checks.find((c) => c.id === 'runtime.monitor')).toMatchObject({ verdict: 'ok', title: 'burrow-monitor', evidence: expect.stringContaining(monitor) });
    const text = burrow(['info']).stdout;
    expect(text).toMatch(/^Runtime binaries$/m);
    const line = text.split('\n').find((l) => /^ {2}\[ ok \] burrow-monitor /.test(l));
    expect(line, text).toContain(`${monitor} (version ${version(monitor)!})`);
  });

  it('without burrow-monitor: a warning naming what needs it and the fix; foreground runs still work (exit 0)', () => {
    const { code: c, report: r } = info([], { BURROW_MONITOR: '/nonexistent/burrow-monitor' });
    expect(c).toBe(0);
    expect(r.canRunContainers).toBe(true);
    expect(r.monitorBinary).toEqual({ path: '/nonexistent/burrow-monitor', version: null, error: 'not found' });
    const m = r.checks.find((x) => x.id === 'runtime.monitor')!;
    expect(m.verdict).toBe('warn');
    expect(m.evidence).toMatch(/detached \(-d\)/);
    expect(m.fix).toMatch(/npm run build:rust.*BURROW_MONITOR/);
    const text = burrow(['info'], { env: { BURROW_MONITOR: '/nonexistent/burrow-monitor' } }).stdout;
    expect(text).toMatch(/^  \[WARN\] burrow-monitor +\/nonexistent\/burrow-monitor: not found/m);
    expect(text).toMatch(/fix: run `npm run build:rust`/);
  });

  it('without the runtime binary it cannot test namespaces: exit 1 with the fix', () => {
    const { code: c, report: r } = info([], { BURROW_RUNTIME: '/nonexistent/burrow-runtime' });
    expect(c).toBe(1);
    expect(r.canRunContainers).toBe(false);
    const u = r.checks.find((x) => x.id === 'userns.create')!;
    expect(u.verdict).toBe('fail');
    expect(u.fix).toMatch(/npm ci/);
  });
});
