#!/bin/sh
# Stage 2 of the VM lane's guest, PID 1 after switch_root (test/vm/initramfs-init.sh): the root
# filesystem is now the host's / (read-only 9p under a tmpfs overlay), so these are the host's
# tools. Mounts a pure cgroup v2 hierarchy, delegates a subtree to the test user the way systemd
# does for user@UID.service, runs the job's script as that user from a leaf cgroup inside it,
# copies its results to the host through the writable 9p share and ends the VM.
#
# The job (written by run-vm.mjs into the share): job.env sets VM_USER and VM_CONTROLLERS;
# script.sh is what the user runs. Back on the share: output.log (the script's stdout and
# stderr), status (its exit status), results/ (whatever it left in $BURROW_VM_RESULTS).
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
share=/run/vmshare

log() { echo "burrow-vm: $*" >/dev/console; }
finish() {
	sync
	# qemu runs with -no-reboot: a reboot ends the VM. If that fails, PID 1 exiting panics
	# the kernel (panic=-1 reboots at once), which ends it too.
	busybox reboot -f
	echo b >/proc/sysrq-trigger
	exit 1
}
fail() {
	log "setup failed: $*"
	[ -d "$share" ] && echo "setup failed: $*" >"$share/setup-error"
	finish
}

mount -t proc proc /proc || fail "mount /proc"
mount -t sysfs sysfs /sys || fail "mount /sys"
mount -t devtmpfs devtmpfs /dev || fail "mount /dev"
mkdir -p /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts
ln -sf pts/ptmx /dev/ptmx
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
# /tmp stays the host's, seen through the root overlay (writable, changes stay in the guest): a
# checkout under /tmp (CI clones anywhere) must remain visible to the job.
chmod 1777 /tmp || fail "chmod /tmp"
mount -t tmpfs -o mode=0755 tmpfs /run || fail "mount /run"
mkdir -p "$share"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 vmshare "$share" || fail "mount the job share"
# Only cgroup2, never a v1 hierarchy: this is the layout the lane exists to test.
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup || fail "mount cgroup2"
hostname burrow-vm 2>/dev/null
ip link set lo up 2>/dev/null

[ -f "$share/job.env" ] || fail "no job.env in the share"
. "$share/job.env"
user=${VM_USER:-burrowtest}
if ! id -u "$user" >/dev/null 2>&1; then
	# The host has no such user (it is made by test/harness/test-user.mjs): make one in the
	# guest's writable overlay.
	echo "$user:x:1001:1001::/tmp/home-$user:/bin/sh" >>/etc/passwd
	echo "$user:x:1001:" >>/etc/group
fi
uid=$(id -u "$user") || fail "id $user"
gid=$(id -g "$user")

# Delegation as systemd does it for user@UID.service: controllers enabled on the way down,
# the service's directory and its cgroup.procs, cgroup.subtree_control and cgroup.threads
# owned by the user, and the user's processes only in leaves below it.
cg=/sys/fs/cgroup
enable=
for c in $VM_CONTROLLERS; do enable="$enable +$c"; done
svc=$cg/user.slice/user-$uid.slice/user@$uid.service
mkdir -p "$svc/init.scope" || fail "mkdir $svc"
if [ -n "$enable" ]; then
	for d in "$cg" "$cg/user.slice" "$cg/user.slice/user-$uid.slice"; do
		echo "$enable" >"$d/cgroup.subtree_control" || fail "enable$enable in $d (available: $(cat "$cg/cgroup.controllers"))"
	done
fi
chown "$uid:$gid" "$svc" "$svc/cgroup.procs" "$svc/cgroup.subtree_control" "$svc/cgroup.threads" || fail "chown $svc"
chown -R "$uid:$gid" "$svc/init.scope"

home=/tmp/home-$user
results=/tmp/burrow-vm-results
xdg=/tmp/burrow-xdg-$uid
# The host's /tmp shows through: start from empty directories (removal stays in the guest's overlay).
rm -rf "$home" "$results" "$xdg"
mkdir -p "$home" "$results" "$xdg"
chown "$uid:$gid" "$home" "$results" "$xdg"
chmod 0700 "$xdg"
log "running the job as $user ($uid) in ${svc#$cg}/init.scope with controllers: $(cat "$svc/cgroup.controllers")"
(
	echo 0 >"$svc/init.scope/cgroup.procs" || exit 125
	exec setpriv --reuid="$uid" --regid="$gid" --init-groups \
		env -i PATH="$PATH" HOME="$home" USER="$user" LOGNAME="$user" XDG_RUNTIME_DIR="$xdg" \
		BURROW_VM=1 BURROW_VM_RESULTS="$results" BURROW_VM_CONTROLLERS="$VM_CONTROLLERS" \
		BURROW_VM_DELEGATION_ROOT="$svc" \
		/bin/sh "$share/script.sh"
) >"$share/output.log" 2>&1 </dev/null
status=$?
log "job exited with status $status"
mkdir -p "$share/results"
cp -r "$results/." "$share/results/" 2>/dev/null
echo "$status" >"$share/status"
finish
