#!/bin/busybox sh
# /init of the VM lane's initramfs (test/vm/run-vm.mjs builds it). Loads the modules for virtio
# 9p and overlayfs (Debian's kernel has them as modules), mounts the host's / read-only over 9p
# with a tmpfs overlay on top so the guest can write without touching the host, and switch_roots
# into it to run the stage-2 script named on the kernel command line (`burrow.stage2=PATH`, a
# path on the host's filesystem). Everything after that uses the host's own tools.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys

fail() {
	echo "burrow-vm: initramfs: $*"
	# PID 1 exiting panics the kernel; with panic=-1 and qemu's -no-reboot that ends the VM.
	reboot -f
	exit 1
}

# run-vm.mjs lists the modules in load order; a module built into the kernel has no file.
while read -r m; do
	[ -n "$m" ] || continue
	insmod "/lib/modules/$m.ko" || fail "insmod $m"
done </lib/modules/order

mkdir -p /mnt/lower /mnt/rw /newroot
# cache=loose: the host's files do not change under a test run, and TCG makes every 9p round
# trip expensive (node loads hundreds of files).
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /mnt/lower || fail "mount the host's / over 9p"
mount -t tmpfs -o mode=0755 tmpfs /mnt/rw || fail "mount tmpfs"
mkdir -p /mnt/rw/upper /mnt/rw/work
mount -t overlay -o lowerdir=/mnt/lower,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work overlay /newroot || fail "mount the overlay"

stage2=
for a in $(cat /proc/cmdline); do
	case "$a" in burrow.stage2=*) stage2="${a#burrow.stage2=}" ;; esac
done
[ -n "$stage2" ] || fail "no burrow.stage2= on the kernel command line"
[ -f "/newroot$stage2" ] || fail "stage 2 script $stage2 not found on the host's filesystem"
umount /proc /sys
umount /dev
exec switch_root /newroot /bin/sh "$stage2"
