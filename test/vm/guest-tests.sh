#!/bin/sh
# The VM lane's checks, run in the guest by guest-init.sh as the unprivileged test user from a
# leaf cgroup (user@UID.service/init.scope) of a delegated cgroup v2 subtree. They drive
# burrow-runtime and `burrow info` as a user would and record what they observe, one file per
# fact, in $BURROW_VM_RESULTS; test/vm/vm.test.ts on the host judges them. Nothing here decides
# pass or fail, so one configuration's script serves every set of delegated controllers.
set -u
repo=${BURROW_REPO:?BURROW_REPO: the checkout, as seen in the guest}
R=${BURROW_VM_RESULTS:?}
rt=${BURROW_RUNTIME:-$repo/target/release/burrow-runtime}
work=/tmp/burrow-vm-work
state=$work/state
mkdir -p "$work"

say() { echo "== $*"; }
# save NAME VALUE: one fact.
save() { printf '%s\n' "$2" >"$R/$1"; }
# runtime NAME BUNDLE ID: `burrow-runtime run`, its stdout, stderr, status and duration saved
# under NAME (a hung container ends after 90 s rather than the whole VM's timeout). With
# --debug the runtime says, on stderr, how the container's first process entered its cgroup.
runtime() {
	t0=$(date +%s%N)
	timeout -s KILL 90 "$rt" --root "$state" --debug run --bundle "$work/b/$2" "$3" >"$R/$1.out" 2>"$R/$1.err"
	s=$?
	t1=$(date +%s%N)
	save "$1.exit" "$s"
	save "$1.ms" "$(((t1 - t0) / 1000000))"
	say "$1: exit $s in $(((t1 - t0) / 1000000)) ms"
	cat "$R/$1.out" "$R/$1.err"
}

own=$(sed -n 's/^0:://p' /proc/self/cgroup)
cg=/sys/fs/cgroup
# burrow-runtime puts relative cgroup paths beside its own cgroup (in its parent).
beside=$cg${own%/*}
save own-cgroup "$own"
save controllers "$(cat "$beside/cgroup.controllers")"
say "user $(id -un) in $own; delegated: $(cat "$beside/cgroup.controllers")"

say bundles
node "$repo/test/vm/bundles.mjs" "$work/b" >"$R/bundles.err" 2>&1
save bundles.exit $?
cat "$R/bundles.err"

say "burrow info"
t0=$(date +%s%N)
node "$repo/bin/burrow.js" info --format json >"$R/info.json" 2>"$R/info.err"
save info.exit $?
save info.ms "$((($(date +%s%N) - t0) / 1000000))"
cat "$R/info.err"

# memory.max: the cgroup is made here first, so it outlives the run and its counters can be read.
mkdir -p "$beside/burrow-vm-mem"
runtime mem mem vm-mem
cat "$beside/burrow-vm-mem/memory.events" >"$R/mem.events" 2>&1
cat "$beside/burrow-vm-mem/memory.max" >"$R/mem.max" 2>&1
cat "$beside/burrow-vm-mem/memory.peak" >"$R/mem.peak" 2>&1
echo "memory.events: $(tr '\n' ' ' <"$R/mem.events")"
rmdir "$beside/burrow-vm-mem"

# pids.max: a fork loop inside, then the guest must still start processes at once.
runtime pids pids vm-pids
t0=$(date +%s%N)
/bin/true && echo yes >"$R/guest-forks"
save guest-fork-ms "$((($(date +%s%N) - t0) / 1000000))"

# cpu.max: the same two busy loops with no quota, then with half a CPU.
runtime cpufree cpufree vm-cpufree
runtime cpu cpu vm-cpu

# What a container sees at /sys/fs/cgroup.
runtime view view vm-view
runtime viewhostsys viewhostsys vm-viewhostsys

# pause/resume through the v2 freezer, and events --stats from the v2 files (libcgroups).
rtc() { "$rt" --root "$state" "$@" 2>>"$R/counter.err"; }
count() { cat "$work/b/counter/rootfs/tmp/c" 2>/dev/null; }
rtc run --detach --bundle "$work/b/counter" vm-counter </dev/null >/dev/null
save counter.exit $?
sleep 0.5
rtc pause vm-counter
save pause.exit $?
rtc state vm-counter >"$R/paused.state"
c0=$(count)
sleep 0.5
save paused.counts "$c0 $(count)"
rtc events --stats vm-counter >"$R/counter.stats"
# exec into a frozen cgroup would stop there: refused, as runc does.
"$rt" --root "$state" exec vm-counter true >/dev/null 2>"$R/exec-paused.err"
save exec-paused.exit $?
rtc resume vm-counter
save resume.exit $?
rtc state vm-counter >"$R/resumed.state"
sleep 0.5
save resumed.count "$(count)"
# exec joins the container's cgroup (born there) and its cgroup namespace, rooted there.
# (The trailing `true` keeps sh from exec'ing its last command: sh and cat are both counted.)
timeout -s KILL 60 "$rt" --root "$state" --debug exec vm-counter sh -c 'cat /proc/self/cgroup; cat /sys/fs/cgroup/pids.current; true' >"$R/exec.out" 2>"$R/exec.err"
save exec.exit $?
rtc update --memory 96m --pids-limit 60 vm-counter
save update.exit $?
rtc events --stats vm-counter >"$R/counter.stats2"
rtc pause vm-counter
rtc delete --force vm-counter
save counter.delete $?
say "pause/resume: $(cat "$R/pause.exit")/$(cat "$R/resume.exit"), counts $(cat "$R/paused.counts") then $(cat "$R/resumed.count")"
cat "$R/counter.err"

# --systemd-cgroup with no systemd: a warning, then the cgroupfs driver enforces the limits.
"$rt" --root "$state" --systemd-cgroup run --bundle "$work/b/view" vm-sd >"$R/sd.out" 2>"$R/sd.err"
save sd.exit $?

# The CLI: `burrow run` with limit flags, on an image imported from the busybox rootfs.
# The store is on tmpfs: the guest's /tmp is an overlay, which cannot be an upper layer itself.
# A hung CLI call ends after 120 s instead of taking the VM's whole time with it.
burrow() { timeout -s KILL 120 node "$repo/bin/burrow.js" --root /dev/shm/burrow-vm-store --runroot "$work/run" "$@"; }
tar -C "$work/b/mem/rootfs" -cf "$work/busybox.tar" .
burrow import "$work/busybox.tar" vmbox >"$R/cli-import.out" 2>&1
save cli-import.exit $?
burrow run --rm --memory 32m vmbox awk 'BEGIN { s = "0123456789abcdef"; while (length(s) < 200 * 1024 * 1024) s = s s; print "allocated", length(s) }' >"$R/cli-mem.out" 2>"$R/cli-mem.err"
save cli-mem.exit $?
burrow run --rm --pids-limit 20 --cpus 0.5 vmbox sh -c 'cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/cpu.max' >"$R/cli-limits.out" 2>"$R/cli-limits.err"
save cli-limits.exit $?
burrow run --rm --pids-limit 20 vmbox cat /sys/fs/cgroup/pids.max >"$R/cli-pids.out" 2>"$R/cli-pids.err"
save cli-pids.exit $?
# The rest needs every controller (the first configuration): each CLI call is seconds under TCG.
if grep -qw cpu "$beside/cgroup.controllers"; then
# io.max: --device-write-bps 1mb on the scratch disk, then 3 MiB written and synced; the
# elapsed time (guest uptime) tells whether the kernel held the writes to the limit.
burrow run --rm --device /dev/vda --device-write-bps /dev/vda:1mb vmbox sh -c 'cat /sys/fs/cgroup/io.max; t0=$(cut -d" " -f1 /proc/uptime); dd if=/dev/zero of=/dev/vda bs=64k count=48 conv=fsync 2>/dev/null; t1=$(cut -d" " -f1 /proc/uptime); echo "elapsed $t0 $t1"' >"$R/cli-io.out" 2>"$R/cli-io.err"
save cli-io.exit $?
# The same writes without the limit: what this disk does unthrottled.
burrow run --rm --device /dev/vda vmbox sh -c 't0=$(cut -d" " -f1 /proc/uptime); dd if=/dev/zero of=/dev/vda bs=64k count=48 conv=fsync 2>/dev/null; t1=$(cut -d" " -f1 /proc/uptime); echo "elapsed $t0 $t1"' >"$R/cli-io-free.out" 2>"$R/cli-io-free.err"
save cli-io-free.exit $?
# OOMKilled in inspect, foreground (the runtime reports it) and detached (the monitor does).
burrow run --name oomfg --memory 32m vmbox awk 'BEGIN { s = "0123456789abcdef"; while (length(s) < 200 * 1024 * 1024) s = s s }' >/dev/null 2>"$R/cli-oomfg.err"
save cli-oomfg.exit $?
burrow inspect --format '{{.State.OOMKilled}}' oomfg >"$R/cli-oomfg.inspect" 2>&1
burrow run -d --name oombg --memory 32m vmbox awk 'BEGIN { s = "0123456789abcdef"; while (length(s) < 200 * 1024 * 1024) s = s s }' >/dev/null 2>"$R/cli-oombg.err"
burrow wait oombg >"$R/cli-oombg.wait" 2>>"$R/cli-oombg.err"
burrow inspect --format '{{.State.OOMKilled}}' oombg >"$R/cli-oombg.inspect" 2>&1
# Docker's `oom` event before the die, from the holder (foreground and detached). The die
# follows the exit record, which `wait` saw: looked for again until it is there (20 s at most).
for c in oomfg oombg; do
  for _ in $(seq 200); do
    burrow events --since 0 --until "$(date +%s.%N)" --filter "container=$c" --filter type=container --format '{{.Action}}' 2>&1 | tr '\n' ' ' | sed 's/ $//' >"$R/cli-$c.events"
    grep -qw die "$R/cli-$c.events" && break
    sleep 0.1
  done
done
# stats agrees with the cgroup's files; update changes the limit live.
burrow run -d --name live --memory 64m --pids-limit 30 vmbox sh -c 'while :; do sleep 1; done' >/dev/null 2>"$R/cli-live.err"
livepid=$(burrow inspect --format '{{.State.Pid}}' live)
livecg=$cg$(sed -n 's/^0:://p' "/proc/$livepid/cgroup")
burrow stats --no-stream --format json live >"$R/cli-stats.json" 2>>"$R/cli-live.err"
save cli-stats.files "$(cat "$livecg/memory.max") $(cat "$livecg/pids.current")"
burrow update --memory 96m --pids-limit 40 live >/dev/null 2>>"$R/cli-live.err"
save cli-update.exit $?
save cli-update.files "$(cat "$livecg/memory.max") $(cat "$livecg/pids.max")"
burrow inspect --format '{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}' live >"$R/cli-update.inspect" 2>&1
burrow rm -f live >/dev/null 2>&1
# Without any limit a container still gets its own cgroup on v2 (stats come from it), removed with it.
burrow run -d --name plain vmbox sleep 60 >/dev/null 2>"$R/cli-plain.err"
burrow stats --no-stream --format json plain >"$R/cli-plain.json" 2>>"$R/cli-plain.err"
burrow rm -f plain >/dev/null 2>>"$R/cli-plain.err"
say "cli: OOMKilled $(cat "$R/cli-oomfg.inspect")/$(cat "$R/cli-oombg.inspect"), update $(cat "$R/cli-update.exit")"
fi
say "cli: import $(cat "$R/cli-import.exit"), --memory $(cat "$R/cli-mem.exit"), --pids-limit --cpus $(cat "$R/cli-limits.exit"), --pids-limit $(cat "$R/cli-pids.exit")"
cat "$R/cli-import.out" "$R/cli-mem.err" "$R/cli-limits.err" "$R/cli-pids.err"

# Cgroups the runtime made for these containers are gone once they have exited.
ls -d "$beside"/burrow-* >"$R/leftover" 2>/dev/null
say done
