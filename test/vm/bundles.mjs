// Builds the VM lane's busybox bundles (test/harness/bundle.mjs) under DIR, in the guest and as
// the test user, so the id maps are the user's: `node test/vm/bundles.mjs DIR`. Like the
// configs `burrow run` writes (ts/container/spec.ts), each has a network namespace, a fresh
// sysfs and its own cgroup (cgroup2 in the container's cgroup namespace) at /sys/fs/cgroup, so
// the container can report what its cgroup saw.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { makeBundle, makeRootfs, RUNTIME } from '../harness/bundle.mjs';

const CGROUP_MOUNT = { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] };
const SYSFS = { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] };
/** `burrow run --network host` and `burrow-runtime spec --rootless`: the host's /sys bound. */
const SYS_RBIND = { destination: '/sys', type: 'none', source: '/sys', options: ['rbind', 'nosuid', 'noexec', 'nodev', 'ro'] };

// What the container sees at /sys/fs/cgroup: its own cgroup has pids.max; the root has none.
const CGROUP_VIEW = 'cat /proc/self/cgroup; echo "pids.max $(cat /sys/fs/cgroup/pids.max 2>&1)"; echo "entries $(ls /sys/fs/cgroup | tr "\\n" " ")"';

// Anonymous memory, counted by the memory controller: busybox awk doubling a string to 256 MiB.
const ALLOCATE = 'BEGIN { s = "0123456789abcdef"; while (length(s) < 200 * 1024 * 1024) s = s s; print "allocated", length(s) }';

// A fork loop that runs into pids.max: the subshell dies at the first failed fork ("can't fork");
// the container's init then shows it is still responsive: it reads its counters with builtins,
// kills the sleepers, forks again and exits 0.
const FORK_LOOP = `
( i=0; while [ $i -lt 100 ]; do sleep 60 & i=$((i+1)); done ) 2>&1
echo "loop-status $?"
read cur </sys/fs/cgroup/pids.current; echo "pids.current $cur"
read max </sys/fs/cgroup/pids.max; echo "pids.max $max"
kill -9 -1
sleep 1
echo "forked-again $(cat /sys/fs/cgroup/pids.events)"
echo alive
exit 0
`;

// Two busy loops for SECONDS, bracketed by the cgroup's usage_usec and the uptime clock.
const burn = (seconds) => `
usage() { sed -n 's/^usage_usec //p' /sys/fs/cgroup/cpu.stat; }
u0=$(usage); t0=$(cut -d' ' -f1 /proc/uptime)
(while :; do :; done) & a=$!
(while :; do :; done) & b=$!
sleep ${seconds}
kill $a $b; wait
u1=$(usage); t1=$(cut -d' ' -f1 /proc/uptime)
echo "usage_usec $u0 $u1"
echo "uptime $t0 $t1"
echo "cpu.max $(cat /sys/fs/cgroup/cpu.max)"
`;

export const BUNDLES = {
  // memory.max 32 MiB in a cgroup with a fixed relative path, so the test can read its
  // memory.events after the runtime returns (the runtime removes only directories it created).
  mem: { args: ['awk', ALLOCATE], cgroupsPath: 'burrow-vm-mem', resources: { memory: { limit: 33554432 } } },
  pids: { args: ['sh', '-c', FORK_LOOP], resources: { pids: { limit: 20 } } },
  cpu: { args: ['sh', '-c', burn(3)], resources: { cpu: { quota: 50000, period: 100000 } } },
  // The same load with no quota ("max 100000"): shows the loops can use more than the limit.
  cpufree: { args: ['sh', '-c', burn(2)], resources: { cpu: { period: 100000 } } },
  // The container's /sys/fs/cgroup is its own cgroup, with a fresh sysfs and with the host's.
  view: { args: ['sh', '-c', CGROUP_VIEW], resources: { pids: { limit: 50 } } },
  viewhostsys: { args: ['sh', '-c', CGROUP_VIEW], resources: { pids: { limit: 50 } }, hostSys: true },
  // A detached counter for pause/resume (the v2 freezer) and `events --stats`.
  counter: { args: ['sh', '-c', 'i=0; while :; do i=$((i+1)); echo $i >/tmp/c; sleep 0.1; done'], resources: { memory: { limit: 67108864 }, pids: { limit: 50 } } },
};

export function makeAll(dir) {
  for (const [name, b] of Object.entries(BUNDLES)) {
    makeBundle(path.join(dir, name), {
      args: b.args,
      edit(config) {
        if (!b.hostSys) config.linux.namespaces.push({ type: 'network' });
        config.mounts = config.mounts.filter((m) => m.destination !== '/sys');
        config.mounts.push(b.hostSys ? SYS_RBIND : SYSFS, CGROUP_MOUNT);
        config.linux.resources = b.resources;
        if (b.cgroupsPath) config.linux.cgroupsPath = b.cgroupsPath;
      },
    });
  }
}

// The default devices under the deny-all device rule every root config carries (issue 13): what
// the container's /dev/null, /dev/zero and /dev/ptmx (a terminal, as `exec -t` opens it) do.
const DEVICES_CHECK = 'echo x > /dev/null && echo null-ok; head -c 5 /dev/zero | wc -c; exec 3<>/dev/ptmx && echo ptmx-ok';

/**
 * For root in the guest: a config from `burrow-runtime spec` (no user namespace, the deny-all
 * device rule, as podman as root and containerd's CRI send it) with a cgroupsPath, so the
 * container is placed in a cgroup v2 of its own under that rule.
 */
export function makeRootDevices(dir) {
  fs.mkdirSync(dir, { recursive: true });
  makeRootfs(dir);
  execFileSync(RUNTIME, ['spec', '--bundle', dir]);
  const file = path.join(dir, 'config.json');
  const config = JSON.parse(fs.readFileSync(file, 'utf8'));
  const rules = config.linux.resources?.devices ?? [];
  if (rules.length !== 1 || rules[0].allow !== false || rules[0].access !== 'rwm' || rules[0].type || rules[0].major !== undefined) {
    throw new Error(`burrow-runtime spec no longer writes the deny-all device rule: ${JSON.stringify(config.linux.resources)}`);
  }
  config.process.args = ['sh', '-c', DEVICES_CHECK];
  config.process.terminal = false;
  config.root.readonly = false;
  config.linux.cgroupsPath = 'burrow-vm-devices';
  fs.writeFileSync(file, JSON.stringify(config, null, 2));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  if (process.argv[2] === '--root-devices' && process.argv[3]) makeRootDevices(process.argv[3]);
  else if (!process.argv[2]) throw new Error('usage: bundles.mjs DIR | --root-devices DIR');
  else makeAll(process.argv[2]);
}
