#!/bin/sh
# The VM lane's checks with a systemd user manager (guest-init.sh with VM_SYSTEMD=1): it runs as
# user@UID.service would run it, on a session bus at $XDG_RUNTIME_DIR/bus, and this script runs
# as the test user from a scope of that manager, as a desktop terminal's shell does. `burrow run`
# then asks the manager for a transient scope per container (ts/container/cgroup.ts, then
# `burrow-runtime --systemd-cgroup`, then libcgroups' systemd driver over D-Bus). Like
# guest-tests.sh it only records what it observes, one fact per file in $BURROW_VM_RESULTS;
# test/vm/vm.test.ts judges.
set -u
repo=${BURROW_REPO:?BURROW_REPO: the checkout, as seen in the guest}
R=${BURROW_VM_RESULTS:?}
rt=${BURROW_RUNTIME:-$repo/target/release/burrow-runtime}
work=/tmp/burrow-vm-work
mkdir -p "$work"
cg=/sys/fs/cgroup

say() { echo "== $*"; }
save() { printf '%s\n' "$2" >"$R/$1"; }
# The cgroup directory of a process, from the host's view of the hierarchy.
cgdir() { echo "$cg$(sed -n 's/^0:://p' "/proc/$1/cgroup")"; }
# Transient units of the user's manager whose name starts with burrow- (loaded at all: failed too).
units() { systemctl --user list-units --all --plain --no-legend --no-pager 'burrow-*' 2>&1 | awk '{ print $1, $3 }'; }

save own-cgroup "$(sed -n 's/^0:://p' /proc/self/cgroup)"
say "user $(id -un) in $(cat "$R/own-cgroup")"

say bundles
node "$repo/test/vm/bundles.mjs" "$work/b" >"$R/bundles.err" 2>&1
save bundles.exit $?
cat "$R/bundles.err"

say "burrow info"
node "$repo/bin/burrow.js" info --format json >"$R/info.json" 2>"$R/info.err"
save info.exit $?
node "$repo/bin/burrow.js" info >"$R/info.txt" 2>&1
grep -i -A1 'systemd user manager\|Enforceable' "$R/info.txt"

# The runtime alone: --systemd-cgroup gives the container a scope (the --debug log says so), and
# inside, its cgroup namespace is rooted at the scope.
timeout -s KILL 90 "$rt" --root "$work/state" --systemd-cgroup --debug run --bundle "$work/b/view" vm-sd >"$R/sd.out" 2>"$R/sd.err"
save sd.exit $?
say "runtime --systemd-cgroup: exit $(cat "$R/sd.exit")"
cat "$R/sd.out" "$R/sd.err"

burrow() { timeout -s KILL 120 node "$repo/bin/burrow.js" --root /dev/shm/burrow-vm-store --runroot "$work/run" "$@"; }
tar -C "$work/b/mem/rootfs" -cf "$work/busybox.tar" .
burrow import "$work/busybox.tar" vmbox >"$R/cli-import.out" 2>&1
save cli-import.exit $?

# A detached container with --memory 32m: its init's cgroup, the limit there, what exec sees.
burrow run -d --name sdlive --memory 32m vmbox sleep 600 >/dev/null 2>"$R/live.err"
save live.exit $?
livepid=$(burrow inspect --format '{{.State.Pid}}' sdlive 2>>"$R/live.err")
livecg=$(cgdir "$livepid")
save live.cgroup "${livecg#$cg}"
save live.memory-max "$(cat "$livecg/memory.max" 2>&1)"
save live.unit "$(systemctl --user show -P ActiveState "$(basename "$livecg")" 2>&1)"
burrow exec sdlive cat /proc/self/cgroup >"$R/live-exec.out" 2>>"$R/live.err"
save live-exec.exit $?
burrow rm -f sdlive >/dev/null 2>>"$R/live.err"
save live-rm.exit $?
[ -d "$livecg" ] && save live.after-rm present || save live.after-rm gone
save live.unit-after-rm "$(units | grep -F "$(basename "$livecg")")"
say "sdlive: $(cat "$R/live.cgroup"), memory.max $(cat "$R/live.memory-max"), after rm: $(cat "$R/live.after-rm")"
cat "$R/live.err"

# The other limits through a scope: what the container sees of its own cgroup (cpuset, cpu, pids).
burrow run --rm --cpuset-cpus 1 --cpus 0.5 --pids-limit 33 vmbox sh -c 'sed -n "s/^0:://p" /proc/self/cgroup; for f in cpuset.cpus.effective cpu.max pids.max; do cat /sys/fs/cgroup/$f 2>&1 || echo "no $f"; done' >"$R/sd-limits.out" 2>"$R/sd-limits.err"
save sd-limits.exit $?
say "limits through a scope: exit $(cat "$R/sd-limits.exit")"
cat "$R/sd-limits.out" "$R/sd-limits.err"

# The OOM kill through the scope: exit 137 and OOMKilled, foreground and detached.
burrow run --name sdoomfg --memory 32m vmbox awk 'BEGIN { s = "0123456789abcdef"; while (length(s) < 200 * 1024 * 1024) s = s s }' >/dev/null 2>"$R/oomfg.err"
save oomfg.exit $?
burrow inspect --format '{{.State.OOMKilled}}' sdoomfg >"$R/oomfg.inspect" 2>&1
burrow run -d --name sdoombg --memory 32m vmbox awk 'BEGIN { s = "0123456789abcdef"; while (length(s) < 200 * 1024 * 1024) s = s s }' >/dev/null 2>"$R/oombg.err"
burrow wait sdoombg >"$R/oombg.wait" 2>>"$R/oombg.err"
burrow inspect --format '{{.State.OOMKilled}}' sdoombg >"$R/oombg.inspect" 2>&1
burrow rm sdoomfg sdoombg >/dev/null 2>&1
say "OOM: $(cat "$R/oomfg.exit")/$(cat "$R/oomfg.inspect"), $(cat "$R/oombg.wait")/$(cat "$R/oombg.inspect")"
cat "$R/oomfg.err" "$R/oombg.err"

# Nothing of these containers is left with the user's manager, failed units included.
units >"$R/leftover-units"
ls -d "$cg$(sed -n 's/^0:://p' /proc/self/cgroup | sed 's|/app\.slice/.*||')"/user.slice/burrow-* >"$R/leftover-dirs" 2>/dev/null
say done
