#!/bin/sh
# Stage 2 of the VM lane's guest, PID 1 after switch_root (test/vm/initramfs-init.sh): the root
# filesystem is now the host's / (read-only 9p under a tmpfs overlay), so these are the host's
# tools. Mounts a pure cgroup v2 hierarchy, delegates a subtree to the test user the way systemd
# does for user@UID.service, runs the job's script as that user from a leaf cgroup inside it,
# copies its results to the host through the writable 9p share and ends the VM.
#
# The job (written by run-vm.mjs into the share): job.env sets VM_USER, VM_CONTROLLERS and
# VM_SYSTEMD (1: start a systemd user manager for the user first and run the job in one of its
# scopes); script.sh is what the user runs. Back on the share: output.log (the script's stdout and
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
# The scratch disk (run-vm.mjs) is the test user's to give a container (--device), as a disk
# group would make it on a workstation.
[ -b /dev/vda ] && chmod 0666 /dev/vda
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
# Checks that need root (run-vm.mjs's rootScript): configs as podman as root and containerd's CRI
# send them, with no user namespace. Before the user's job, from the root cgroup; their facts go
# to the same results.
if [ -f "$share/root-script.sh" ]; then
	log "running the root checks"
	BURROW_VM_RESULTS="$results" /bin/sh "$share/root-script.sh" >"$share/root-output.log" 2>&1 </dev/null
	log "root checks exited with status $?"
fi
# The job's cgroup: a leaf of the delegated service, unless a systemd user manager runs there.
jobcg=$svc/init.scope
busenv=
launcher=
if [ "${VM_SYSTEMD:-0}" = 1 ]; then
	# A desktop login's systemd user session, with no systemd as PID 1 (this script is): what
	# logind and user-runtime-dir@UID.service would have made, then the user's manager, run as
	# user@UID.service runs it, in the service's cgroup (it moves itself to init.scope and manages
	# the subtree). /run/systemd/system is how sd_booted() (systemd --user itself, and libcgroups'
	# systemd driver) tells that systemd manages the machine; it lives on this guest's /run tmpfs.
	# The manager's log goes to the console (serial log), which it must be able to open.
	for f in /lib/systemd/systemd /usr/bin/dbus-daemon /usr/bin/busctl /usr/bin/systemd-run /usr/lib/systemd/user/dbus.socket; do
		[ -e "$f" ] || fail "$f is missing on the host: install systemd, dbus and dbus-user-session (bash .ci/setup does)"
	done
	xdg=/run/user/$uid
	mkdir -p /run/systemd/system "$xdg" || fail "mkdir /run/systemd/system $xdg"
	chown "$uid:$gid" "$xdg"
	chmod 0700 "$xdg"
	chmod 0666 /dev/console
	busenv="DBUS_SESSION_BUS_ADDRESS=unix:path=$xdg/bus"
	(
		echo 0 >"$svc/cgroup.procs" || exit 125
		exec setpriv --reuid="$uid" --regid="$gid" --init-groups \
			env -i PATH="$PATH" HOME="$home" USER="$user" LOGNAME="$user" XDG_RUNTIME_DIR="$xdg" $busenv \
			SYSTEMD_LOG_TARGET=console /lib/systemd/systemd --user
	) </dev/null >/dev/console 2>&1 &
	sdpid=$!
	# Ready when it answers on the session bus: the first call starts dbus.service (socket
	# activation), which the manager then joins as org.freedesktop.systemd1.
	ready=0
	for _ in $(seq 1 300); do
		kill -0 "$sdpid" 2>/dev/null || break
		if setpriv --reuid="$uid" --regid="$gid" --init-groups env -i PATH="$PATH" XDG_RUNTIME_DIR="$xdg" $busenv \
			busctl --user call org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.DBus.Peer Ping >/dev/null 2>&1; then
			ready=1
			break
		fi
		sleep 0.2
	done
	[ "$ready" = 1 ] || fail "systemd --user did not answer on the session bus"
	log "systemd --user ($sdpid) runs in ${svc#$cg}"
	# The job's shell runs in a scope of the user's manager, as a terminal's does in a desktop
	# session (`systemd-run --user --scope` asks for one as terminal emulators do). Not in a
	# root-owned session-N.scope as over ssh: the user's manager cannot move a process out of a
	# cgroup the user does not own (EACCES, as for any migration) and then asks the system
	# manager to (AttachProcessesToUnit over the system bus), which does not exist here.
	launcher="systemd-run --user --scope --quiet --unit=vm-job --"
fi
log "running the job as $user ($uid) from ${jobcg#$cg}${launcher:+ through $launcher} with controllers: $(cat "$svc/cgroup.controllers")"
(
	echo 0 >"$jobcg/cgroup.procs" || exit 125
	exec setpriv --reuid="$uid" --regid="$gid" --init-groups \
		env -i PATH="$PATH" HOME="$home" USER="$user" LOGNAME="$user" XDG_RUNTIME_DIR="$xdg" $busenv \
		BURROW_VM=1 BURROW_VM_RESULTS="$results" BURROW_VM_CONTROLLERS="$VM_CONTROLLERS" \
		BURROW_VM_DELEGATION_ROOT="$svc" \
		$launcher /bin/sh "$share/script.sh"
) >"$share/output.log" 2>&1 </dev/null
status=$?
log "job exited with status $status"
mkdir -p "$share/results"
cp -r "$results/." "$share/results/" 2>/dev/null
echo "$status" >"$share/status"
finish
