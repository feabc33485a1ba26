#!/usr/bin/env bash
# The main job, end to end: make an image from Debian's busybox-static (no network needed),
# import it, and run a container from it as an ordinary user. Re-running reuses the image.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
burrow() { node "$here/bin/burrow.js" "$@"; }

if ! burrow images --format '{{.Repository}}:{{.Tag}}' | grep -qx 'busybox:local'; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp" "$work/rootfs/proc" "$work/rootfs/sys" "$work/rootfs/dev"
  cp /bin/busybox "$work/rootfs/bin/busybox"
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$work/rootfs/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$work/rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$work/rootfs/etc/group"
  chmod 1777 "$work/rootfs/tmp"
  tar -C "$work/rootfs" --numeric-owner --owner=0 --group=0 -czf "$work/busybox.tar.gz" .
  burrow import -c 'CMD ["sh"]' "$work/busybox.tar.gz" busybox:local >/dev/null
fi
burrow run --rm busybox:local sh -c 'echo "Hello from container $(hostname): I am pid $$, uid $(id -u) inside; the host sees your own user."; uname -sr'
