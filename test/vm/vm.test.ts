/**
 * The VM lane (DESIGN.md, "cgroups"): real cgroup v2 enforcement, which this host's hybrid
 * layout cannot show. test/vm/run-vm.mjs boots a guest with a pure v2 hierarchy and a subtree
 * delegated to the test user as systemd delegates user@UID.service; test/vm/guest-tests.sh runs
 * burrow-runtime and `burrow info` there as that user and records what it observes; this file
 * judges it. Three boots: all five controllers delegated, then only memory and pids (systemd's
 * default without a Delegate= drop-in), then all five with a systemd user manager running
 * (test/vm/guest-systemd.sh), whose transient scopes `burrow run` then uses.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { ALL_CONTROLLERS, runVm } from './run-vm.mjs';
import type { HostReport } from '../../ts/host/report';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const SCRIPT = `BURROW_REPO='${ROOT}' exec /bin/sh '${ROOT}/test/vm/guest-tests.sh'\n`;
const SYSTEMD_SCRIPT = `BURROW_REPO='${ROOT}' exec /bin/sh '${ROOT}/test/vm/guest-systemd.sh'\n`;
const ROOT_SCRIPT = `BURROW_REPO='${ROOT}' exec /bin/sh '${ROOT}/test/vm/guest-root.sh'\n`;
const LIMIT_KINDS = ['memory', 'pids', 'cpu', 'cpuset', 'io', 'hugetlb'];
// Generous: under TCG every Node start of the CLI costs seconds, and a loaded host slows it more.
const BOOT_TIMEOUT_MS = 420_000;

type Boot = Awaited<ReturnType<typeof runVm>>;

/** Boots the guest once for a describe block; `facts` reads what the guest recorded. */
function bootWith(controllers: string[], { systemd = false, root = false } = {}) {
  let vm: Boot | null = null;
  beforeAll(async () => {
    vm = await runVm({ script: systemd ? SYSTEMD_SCRIPT : SCRIPT, rootScript: root ? ROOT_SCRIPT : null, controllers, systemd, timeoutMs: BOOT_TIMEOUT_MS });
    process.stdout.write(`vm (${controllers.join(' ')}${systemd ? ', systemd --user' : ''}): ${vm.seconds.toFixed(1)} s, status ${vm.status}\n`);
    if (vm.error || vm.status !== 0) {
      process.stdout.write(`--- guest output ---\n${vm.output}\n--- guest console ---\n${vm.console}\n`);
    }
  }, BOOT_TIMEOUT_MS + 60_000);
  const fact = (name: string): string => {
    if (!vm) throw new Error('the VM did not run');
    const v = vm.results[name];
    if (v === undefined) throw new Error(`the guest recorded no ${name}${vm.error ? ` (${vm.error})` : ''}; guest output:\n${vm.output}`);
    return v.trim();
  };
  return {
    get vm(): Boot {
      if (!vm) throw new Error('the VM did not run');
      return vm;
    },
    fact,
    /** Exit status of the `burrow-runtime run` recorded as `name`. */
    exit: (name: string) => Number(fact(`${name}.exit`)),
    info: () => JSON.parse(fact('info.json')) as HostReport,
    uid: () => Number(fact('own-cgroup').match(/user@(\d+)\.service/)?.[1]),
  };
}

/** CPUs used by the container's cgroup while its loops ran: usage_usec delta over elapsed time. */
function cpuShare(out: string): number {
  const u = out.match(/^usage_usec (\d+) (\d+)$/m);
  const t = out.match(/^uptime ([\d.]+) ([\d.]+)$/m);
  if (!u || !t) throw new Error(`no cpu measurement in:\n${out}`);
  return (Number(u[2]) - Number(u[1])) / 1e6 / (Number(t[2]) - Number(t[1]));
}

function expectBootedAsUser(g: ReturnType<typeof bootWith>, controllers: string[]) {
  expect(g.vm.error).toBeNull();
  expect(g.vm.status).toBe(0);
  // The checks ran from a leaf below the delegated service, as a systemd user session's do.
  expect(g.fact('own-cgroup')).toMatch(/^\/user\.slice\/user-\d+\.slice\/user@\d+\.service\/init\.scope$/);
  expect(g.fact('controllers').split(/\s+/).sort()).toEqual([...controllers].sort());
  expect(Number(g.fact('bundles.exit'))).toBe(0);
}

function expectInfo(g: ReturnType<typeof bootWith>, controllers: string[]) {
  expect(Number(g.fact('info.exit'))).toBe(0);
  const c = g.info().cgroups;
  const uid = g.uid();
  expect(c.mode).toBe('unified');
  expect(c.v2Mount).toBe('/sys/fs/cgroup');
  expect(c.v1Controllers).toEqual([]);
  expect(c.ownCgroup).toBe(`/user.slice/user-${uid}.slice/user@${uid}.service/init.scope`);
  expect(c.delegationRoot).toBe(`/sys/fs/cgroup/user.slice/user-${uid}.slice/user@${uid}.service`);
  expect(c.delegationSource).toBe('own-cgroup');
  expect([...c.delegatedControllers].sort()).toEqual([...controllers].sort());
  const enforceable = LIMIT_KINDS.filter((k) => controllers.includes(k));
  expect([...c.enforceable].sort()).toEqual([...enforceable].sort());
  expect([...c.notEnforceable].sort()).toEqual(LIMIT_KINDS.filter((k) => !enforceable.includes(k)).sort());
  expect(c.manager).toBe('cgroupfs');
}

function expectOomKill(g: ReturnType<typeof bootWith>) {
  // awk builds a 256 MiB string in anonymous memory under memory.max = 32 MiB.
  expect(g.fact('mem.max')).toBe('33554432');
  expect(g.exit('mem'), `stderr: ${g.fact('mem.err')}`).toBe(137);
  expect(g.fact('mem.out')).not.toMatch(/allocated/);
  const events = Object.fromEntries(g.fact('mem.events').split('\n').map((l) => l.split(' ')).map(([k, v]) => [k, Number(v)]));
  expect(events.oom_kill).toBeGreaterThanOrEqual(1);
  expect(Number(g.fact('mem.peak'))).toBeLessThanOrEqual(33554432);
}

/**
 * The `burrow-runtime --debug run` recorded as `name` (container `id`) was born in its cgroup:
 * created there with its limits before the intermediate process existed, which clone3 then put
 * there (CLONE_INTO_CGROUP), so nothing was ever migrated.
 */
function expectBornInCgroup(g: ReturnType<typeof bootWith>, name: string, id: string, cgroup = `burrow-${id}`) {
  const uid = g.uid();
  const dir = `/sys/fs/cgroup/user.slice/user-${uid}.slice/user@${uid}.service/${cgroup}`;
  expect(g.fact(`${name}.err`)).toContain(`created ${id}: init pid `);
  expect(g.fact(`${name}.err`)).toContain(`; cgroup ${dir}: entered by CLONE_INTO_CGROUP`);
}

function expectPidsLimit(g: ReturnType<typeof bootWith>) {
  const out = g.fact('pids.out');
  expect(g.exit('pids'), `stderr: ${g.fact('pids.err')}`).toBe(0);
  expect(out).toMatch(/can't fork/);
  expect(out).toMatch(/^pids\.max 20$/m);
  const current = Number(out.match(/^pids\.current (\d+)$/m)?.[1]);
  expect(current).toBeGreaterThan(10);
  expect(current).toBeLessThanOrEqual(20);
  // After killing its sleepers the container's init forked again and read pids.events.
  expect(Number(out.match(/^forked-again max (\d+)$/m)?.[1])).toBeGreaterThanOrEqual(1);
  expect(out).toMatch(/^alive$/m);
  expect(g.fact('guest-forks')).toBe('yes');
  expect(Number(g.fact('guest-fork-ms'))).toBeLessThan(5000);
}

describe('cgroup v2 in a VM, cpu cpuset io memory pids delegated', () => {
  const g = bootWith(ALL_CONTROLLERS, { root: true });

  // Issue 13: root configs (podman as root, the CRI) carry {allow: false, access: rwm}. On v2 the
  // device rules are an eBPF program, which libcgroups as burrow builds it does not load; this
  // keeps that the default devices work there under the rule, as runc's defaults make them.
  it('as root, the deny-all device rule with a cgroupsPath leaves /dev/null, /dev/zero and /dev/ptmx usable', () => {
    expect(Number(g.fact('root-bundles.exit')), g.fact('root-bundles.err')).toBe(0);
    expect(g.exit('root-devices'), g.fact('root-devices.err')).toBe(0);
    expect(g.fact('root-devices.out').split('\n')).toEqual(['null-ok', '5', 'ptmx-ok']);
    expect(g.fact('root-devices.err')).toMatch(/; cgroup \/sys\/fs\/cgroup\/burrow-vm-devices: entered by CLONE_INTO_CGROUP/);
    expect(g.fact('root-leftover')).toBe('');
  });

  it('boots and runs the checks as the test user from a leaf of the delegated subtree', () => {
    expectBootedAsUser(g, ALL_CONTROLLERS);
  });

  it('burrow info: unified, the delegated service as root, every delegated controller enforceable', () => {
    expectInfo(g, ALL_CONTROLLERS);
  });

  it('memory.max 32 MiB: a 200 MB allocation is OOM-killed (137) and memory.events counts it', () => {
    expectOomKill(g);
  });

  it('pids.max 20: forks fail inside, the container and the guest stay responsive', () => {
    expectPidsLimit(g);
  });

  it('cpu.max "50000 100000": two busy loops get half a CPU (and twice that without the quota)', () => {
    expect(g.exit('cpufree'), g.fact('cpufree.err')).toBe(0);
    expect(g.exit('cpu'), g.fact('cpu.err')).toBe(0);
    expect(g.fact('cpufree.out')).toMatch(/^cpu\.max max 100000$/m);
    expect(g.fact('cpu.out')).toMatch(/^cpu\.max 50000 100000$/m);
    // The control shows the loops can use more than the quota (two vCPUs: about 2).
    const free = cpuShare(g.fact('cpufree.out'));
    const limited = cpuShare(g.fact('cpu.out'));
    process.stdout.write(`cpu share: ${free.toFixed(2)} without quota, ${limited.toFixed(2)} with cpu.max 50000 100000\n`);
    expect(free).toBeGreaterThan(0.8);
    expect(limited).toBeGreaterThan(0.3);
    expect(limited).toBeLessThan(0.7);
  });

  it('each container is born in its cgroup (clone3 CLONE_INTO_CGROUP), its cgroup namespace rooted there and its limits enforced', () => {
    // Rooted at the container's cgroup: the intermediate unshared the namespace from there.
    expectBornInCgroup(g, 'view', 'vm-view');
    expect(g.fact('view.out')).toMatch(/^0::\/$/m);
    expect(g.fact('view.out')).toMatch(/^pids\.max 50$/m);
    // The memory and pids tests' containers: their limits hold for processes born in the cgroup.
    expectBornInCgroup(g, 'mem', 'vm-mem', 'burrow-vm-mem');
    expect(g.exit('mem')).toBe(137);
    expectBornInCgroup(g, 'pids', 'vm-pids');
    expect(g.fact('pids.out')).toMatch(/^pids\.max 20$/m);
  });

  it('exec: the process is born in the container\'s cgroup too (its namespace rooted there, counted by pids), and is refused while paused', () => {
    expect(Number(g.fact('exec.exit')), g.fact('exec.err')).toBe(0);
    const [cgroup, current] = g.fact('exec.out').split('\n');
    expect(cgroup).toBe('0::/');
    // The init, and the exec'd sh and cat: all three in the container's cgroup.
    expect(Number(current)).toBeGreaterThanOrEqual(3);
    expect(g.fact('exec.err')).toMatch(/^burrow-runtime: debug: exec: process \d+ in cgroup \/sys\/fs\/cgroup\/user\.slice\/\S+\/burrow-vm-counter: entered by CLONE_INTO_CGROUP$/m);
    expect(Number(g.fact('exec-paused.exit'))).not.toBe(0);
    expect(g.fact('exec-paused.err')).toMatch(/cannot exec in container vm-counter: it is paused/);
  });

  it('the container sees its own cgroup at /sys/fs/cgroup (fresh sysfs, as `burrow run` mounts it)', () => {
    expect(g.exit('view'), g.fact('view.err')).toBe(0);
    expect(g.fact('view.out')).toMatch(/^0::\/$/m);
    expect(g.fact('view.out')).toMatch(/^pids\.max 50$/m);
  });

  // With the host's /sys rbind-mounted (`burrow run --network host`, `spec --rootless`), cgroup2
  // cannot be stacked on the bound host cgroup2 mount (EBUSY): mount_cgroup covers it with a
  // tmpfs first (crates/burrow-core/src/runtime/mounts.rs).
  it('the container sees its own cgroup at /sys/fs/cgroup with the host /sys bound', () => {
    expect(g.exit('viewhostsys'), g.fact('viewhostsys.err')).toBe(0);
    expect(g.fact('viewhostsys.out')).toMatch(/^pids\.max 50$/m);
  });

  it('pause and resume freeze and thaw a detached container through the v2 freezer', () => {
    expect(Number(g.fact('counter.exit')), g.fact('counter.err')).toBe(0);
    expect(Number(g.fact('pause.exit')), g.fact('counter.err')).toBe(0);
    expect(JSON.parse(g.fact('paused.state')).status).toBe('paused');
    const [c0, c1] = g.fact('paused.counts').split(' ').map(Number);
    expect(c0).toBeGreaterThan(0);
    expect(c1).toBe(c0);
    expect(Number(g.fact('resume.exit'))).toBe(0);
    expect(JSON.parse(g.fact('resumed.state')).status).toBe('running');
    expect(Number(g.fact('resumed.count'))).toBeGreaterThan(c0!);
    // Deleted while paused: thawed, killed, its cgroup removed (see the leftover check).
    expect(Number(g.fact('counter.delete'))).toBe(0);
  });

  it('events --stats reads the container\'s v2 counters and limits', () => {
    const ev = JSON.parse(g.fact('counter.stats'));
    expect(ev.type).toBe('stats');
    expect(ev.data.memory.usage.limit).toBe(67108864);
    expect(ev.data.memory.usage.usage).toBeGreaterThan(0);
    expect(ev.data.pids.limit).toBe(50);
    expect(ev.data.pids.current).toBeGreaterThanOrEqual(1);
    expect(ev.data.cpu.usage.total).toBeGreaterThan(0);
  });

  it('update --memory 96m --pids-limit 60 changes the running container\'s limits (libcgroups apply)', () => {
    expect(Number(g.fact('update.exit')), g.fact('counter.err')).toBe(0);
    const ev = JSON.parse(g.fact('counter.stats2'));
    expect(ev.data.memory.usage.limit).toBe(96 * 1024 * 1024);
    expect(ev.data.pids.limit).toBe(60);
  });

  it('--systemd-cgroup where systemd does not run: one warning, then the cgroupfs driver enforces the limits', () => {
    expect(Number(g.fact('sd.exit')), g.fact('sd.err')).toBe(0);
    expect(g.fact('sd.err')).toMatch(/--systemd-cgroup: systemd is not running here.*using the cgroupfs driver/);
    expect(g.fact('sd.out')).toMatch(/^pids\.max 50$/m);
  });

  it('the CLI: `burrow run --memory 32m` is OOM-killed (137); --pids-limit and --cpus reach the container\'s cgroup', () => {
    expect(Number(g.fact('cli-import.exit')), g.fact('cli-import.out')).toBe(0);
    expect(Number(g.fact('cli-mem.exit')), g.fact('cli-mem.err')).toBe(137);
    expect(g.fact('cli-mem.out')).not.toMatch(/allocated/);
    expect(Number(g.fact('cli-limits.exit')), g.fact('cli-limits.err')).toBe(0);
    expect(g.fact('cli-limits.out')).toBe('20\n50000 100000');
  });

  it('--device-write-bps 1mb on a disk: io.max in the container\'s cgroup, and 3 MiB of synced writes take about 3 s', () => {
    expect(Number(g.fact('cli-io.exit')), g.fact('cli-io.err')).toBe(0);
    const out = g.fact('cli-io.out');
    expect(out).toMatch(/^\d+:\d+ rbps=max wbps=1048576 riops=max wiops=max$/m);
    const rateOf = (text: string) => {
      const [, t0, t1] = /^elapsed ([\d.]+) ([\d.]+)$/m.exec(text) ?? [];
      return (3 * 1024 * 1024) / Math.max(Number(t1) - Number(t0), 0.01);
    };
    // Enforcement judged by bytes over elapsed guest time, with room either way, against the
    // same writes without the limit (which this disk does several times faster even under TCG).
    expect(Number(g.fact('cli-io-free.exit')), g.fact('cli-io-free.err')).toBe(0);
    const limited = rateOf(out);
    const free = rateOf(g.fact('cli-io-free.out'));
    process.stdout.write(`io: ${(limited / 1048576).toFixed(2)} MiB/s with wbps=1048576, ${(free / 1048576).toFixed(1)} MiB/s without\n`);
    expect(limited).toBeLessThan(2 * 1048576);
    expect(limited).toBeGreaterThan(0.25 * 1048576);
    expect(free, `unthrottled ${free} B/s`).toBeGreaterThan(3 * limited);
  });

  it('inspect says OOMKilled: true for a foreground and a detached container killed at --memory 32m', () => {
    expect(Number(g.fact('cli-oomfg.exit')), g.fact('cli-oomfg.err')).toBe(137);
    expect(g.fact('cli-oomfg.inspect')).toBe('true');
    expect(g.fact('cli-oombg.wait')).toBe('137');
    expect(g.fact('cli-oombg.inspect')).toBe('true');
  });

  it("the holder logs Docker's `oom` event after the start and before the die, foreground and detached", () => {
    expect(g.fact('cli-oomfg.events')).toBe('create attach start oom die');
    expect(g.fact('cli-oombg.events')).toBe('create start oom die');
  });

  it('burrow stats agrees with the cgroup files; burrow update changes the limits live and inspect shows them', () => {
    const row = JSON.parse(g.fact('cli-stats.json'));
    const [memMax, pidsCurrent] = g.fact('cli-stats.files').split(' ').map(Number);
    expect(row.source).toBe('cgroup');
    expect(row.memoryLimit).toBe(memMax);
    expect(memMax).toBe(64 * 1024 * 1024);
    expect(Number(row.PIDs)).toBe(pidsCurrent);
    expect(row.memoryUsage).toBeGreaterThan(0);
    expect(Number(g.fact('cli-update.exit')), g.fact('cli-live.err')).toBe(0);
    expect(g.fact('cli-update.files')).toBe(`${96 * 1024 * 1024} 40`);
    expect(g.fact('cli-update.inspect')).toBe(`${96 * 1024 * 1024} 40`);
  });

  it('a container without limits still gets its own cgroup (stats read it) and loses it with rm', () => {
    const row = JSON.parse(g.fact('cli-plain.json'));
    expect(row.source, g.fact('cli-plain.err')).toBe('cgroup');
    expect(Number(row.PIDs)).toBe(1);
    expect(g.fact('leftover')).toBe('');
  });

  it('removes the cgroups it created once the containers have exited', () => {
    expect(g.fact('leftover')).toBe('');
  });
});

describe('cgroup v2 in a VM, only memory and pids delegated', () => {
  const controllers = ['memory', 'pids'];
  const g = bootWith(controllers);

  it('boots and runs the checks as the test user from a leaf of the delegated subtree', () => {
    expectBootedAsUser(g, controllers);
  });

  it('burrow info: memory and pids enforceable, cpu cpuset io hugetlb not', () => {
    expectInfo(g, controllers);
  });

  it('a cpu.max config fails (exit 1) with a message naming the cpu controller, and leaves no cgroup', () => {
    expect(g.exit('cpu')).toBe(1);
    expect(g.fact('cpu.err')).toMatch(/the cpu controller is not available/);
    expect(g.fact('cpu.out')).toBe('');
    expect(g.fact('leftover')).toBe('');
  });

  it('memory.max is still enforced', () => {
    expectOomKill(g);
    expectBornInCgroup(g, 'mem', 'vm-mem', 'burrow-vm-mem');
  });

  it('pids.max is still enforced', () => {
    expectPidsLimit(g);
  });

  it('the CLI: --memory and --pids-limit work; --cpus is refused (125) before anything starts, naming the cpu controller', () => {
    expect(Number(g.fact('cli-mem.exit')), g.fact('cli-mem.err')).toBe(137);
    expect(Number(g.fact('cli-pids.exit')), g.fact('cli-pids.err')).toBe(0);
    expect(g.fact('cli-pids.out')).toBe('20');
    expect(Number(g.fact('cli-limits.exit'))).toBe(125);
    expect(g.fact('cli-limits.err')).toMatch(/cpu/);
    expect(g.fact('cli-limits.out')).toBe('');
  });
});

describe('cgroup v2 in a VM with a systemd user manager: each container in a transient scope', () => {
  const g = bootWith(ALL_CONTROLLERS, { systemd: true });
  const scopeParent = () => `/user.slice/user-${g.uid()}.slice/user@${g.uid()}.service/user.slice`;

  it('boots, starts systemd --user for the test user and runs the checks from a scope of that manager', () => {
    expect(g.vm.error).toBeNull();
    expect(g.vm.status).toBe(0);
    // As a desktop terminal's shell: in a scope of the user's manager (guest-init.sh says why not a
    // root-owned session scope).
    expect(g.fact('own-cgroup')).toMatch(/^\/user\.slice\/user-\d+\.slice\/user@\d+\.service\/app\.slice\/vm-job\.scope$/);
    expect(Number(g.fact('bundles.exit'))).toBe(0);
  });

  it('burrow info: the systemd user manager is reachable over the session bus, and containers get scopes from it', () => {
    expect(Number(g.fact('info.exit')), g.fact('info.err')).toBe(0);
    const c = g.info().cgroups;
    const uid = g.uid();
    expect(c.systemdUserManager, c.systemdUserManagerWhyNot ?? '').toBe(true);
    expect(c.systemdUserManagerWhyNot).toBeNull();
    expect(c.busAddress).toBe(`unix:path=/run/user/${uid}/bus`);
    expect(c.manager).toBe('systemd');
    expect(c.delegationRoot).toBe(`/sys/fs/cgroup/user.slice/user-${uid}.slice/user@${uid}.service`);
    expect([...c.enforceable].sort()).toEqual(['cpu', 'cpuset', 'io', 'memory', 'pids']);
    expect(g.fact('info.txt')).toMatch(/systemd user manager\s+reachable at unix:path=\/run\/user\/\d+\/bus/);
  });

  it('burrow-runtime --systemd-cgroup: the container enters a transient scope (the debug log says so), its cgroup namespace rooted there', () => {
    expect(Number(g.fact('sd.exit')), g.fact('sd.err')).toBe(0);
    expect(g.fact('sd.err')).toContain(`; cgroup /sys/fs/cgroup${scopeParent()}/burrow-vm-sd.scope: entered by systemd scope`);
    expect(g.fact('sd.out')).toMatch(/^0::\/$/m);
    expect(g.fact('sd.out')).toMatch(/^pids\.max 50$/m);
  });

  it('burrow run --memory 32m: a .scope under the user manager with memory.max 33554432; exec joins it; gone after rm', () => {
    expect(Number(g.fact('cli-import.exit')), g.fact('cli-import.out')).toBe(0);
    expect(Number(g.fact('live.exit')), g.fact('live.err')).toBe(0);
    expect(g.fact('live.cgroup')).toMatch(new RegExp(`^${scopeParent().replaceAll('.', '\\.')}/burrow-[0-9a-f]{64}\\.scope$`));
    expect(g.fact('live.memory-max')).toBe('33554432');
    expect(g.fact('live.unit')).toBe('active');
    expect(Number(g.fact('live-exec.exit')), g.fact('live.err')).toBe(0);
    expect(g.fact('live-exec.out')).toBe('0::/');
    expect(Number(g.fact('live-rm.exit'))).toBe(0);
    expect(g.fact('live.after-rm')).toBe('gone');
    expect(g.fact('live.unit-after-rm')).toBe('');
  });

  it('--cpuset-cpus, --cpus and --pids-limit through the scope: the container\'s own cgroup has them', () => {
    expect(Number(g.fact('sd-limits.exit')), g.fact('sd-limits.err')).toBe(0);
    expect(g.fact('sd-limits.out').split('\n')).toEqual(['/', '1', '50000 100000', '33']);
  });

  it('--memory 32m through the scope: a 200 MB allocation exits 137 and inspect says OOMKilled, foreground and detached', () => {
    expect(Number(g.fact('oomfg.exit')), g.fact('oomfg.err')).toBe(137);
    expect(g.fact('oomfg.inspect')).toBe('true');
    expect(g.fact('oombg.wait'), g.fact('oombg.err')).toBe('137');
    expect(g.fact('oombg.inspect')).toBe('true');
  });

  it('leaves no scope (failed ones included) and no cgroup behind', () => {
    expect(g.fact('leftover-units')).toBe('');
    expect(g.fact('leftover-dirs')).toBe('');
  });
});
