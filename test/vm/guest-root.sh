#!/bin/sh
# The VM lane's checks as root in the guest (run-vm.mjs's rootScript; guest-init.sh runs it
# before the user's job, from the root cgroup of the pure cgroup v2 hierarchy). Like
# guest-tests.sh it only records what it observes, one file per fact, in $BURROW_VM_RESULTS;
# test/vm/vm.test.ts judges it.
set -u
repo=${BURROW_REPO:?BURROW_REPO: the checkout, as seen in the guest}
R=${BURROW_VM_RESULTS:?}
rt=${BURROW_RUNTIME:-$repo/target/release/burrow-runtime}
work=/tmp/burrow-vm-root
rm -rf "$work"
mkdir -p "$work"

# The deny-all device rule of root configs, with a cgroupsPath: the default devices stay usable.
node "$repo/test/vm/bundles.mjs" --root-devices "$work/devices" >"$R/root-bundles.err" 2>&1
echo $? >"$R/root-bundles.exit"
if [ "$(cat "$R/root-bundles.exit")" = 0 ]; then
	timeout -s KILL 90 "$rt" --root "$work/state" --debug run --bundle "$work/devices" vm-root-devices >"$R/root-devices.out" 2>"$R/root-devices.err" </dev/null
	echo $? >"$R/root-devices.exit"
else
	echo "no bundle" >"$R/root-devices.err"
	echo 125 >"$R/root-devices.exit"
fi
echo "== root-devices: exit $(cat "$R/root-devices.exit")"
cat "$R/root-bundles.err" "$R/root-devices.out" "$R/root-devices.err"
# Its cgroup is gone with it.
ls -d /sys/fs/cgroup/burrow-vm-devices >"$R/root-leftover" 2>/dev/null
exit 0
