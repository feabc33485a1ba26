/**
 * The squash bench's attribution of metadata calls to the file system they reach
 * (bench/metadata.mjs), on a log written as `strace -f -y --pidns-translation` writes it.
 */
import { describe, expect, it } from 'vitest';
// @ts-expect-error plain ESM bench module without types
import { attribute } from '../../bench/metadata.mjs';

const FS = '/b/pfs';
const STORE = `${FS}/store`;
const C = `${STORE}/containers/abc`;
const opts = { fsRoot: FS, imageRoots: [`${FS}/image`, `${STORE}/layers`, `${STORE}/blobs`, `${STORE}/images`, `${STORE}/tags.json`] };

function classify(log: string): [string, string | undefined][] {
  const out: [string, string | undefined][] = [];
  attribute(log, opts, (cat: string, p: string | undefined) => out.push([cat, p]));
  return out;
}

describe('bench/metadata.mjs attribute', () => {
  it('attributes each call by the path it names, its descriptors and who makes it', () => {
    const log = [
      // The CLI (host): the image file by path and by descriptor, the store, host files.
      `100   openat(AT_FDCWD</w>, "${FS}/image/img.sqfs", O_RDONLY) = 18<${FS}/image/img.sqfs>`,
      `100   statx(18<${FS}/image/img.sqfs>, "", AT_STATX_SYNC_AS_STAT|AT_EMPTY_PATH, STATX_ALL, {stx_mask=STATX_ALL}) = 0`,
      `100   mkdir("${C}/lower", 0755) = 0`,
      `100   openat(AT_FDCWD</w>, "node_modules/x.js", O_RDONLY) = 19</w/node_modules/x.js>`,
      `100   statx(AT_FDCWD</w>, "../b/pfs/store/layers/l1", AT_STATX_SYNC_AS_STAT, STATX_ALL, 0x1) = -1 ENOENT (No such file or directory)`,
      `100   readlink("/b", 0x7ff, 1023) = -1 EINVAL (Invalid argument)`,
      `100   readlink("${FS}", 0x7ff, 1023) = -1 EINVAL (Invalid argument)`,
      // The runtime: its init unshares the mount namespace, mounts squashfuse and the union.
      `200   clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|SIGCHLD, child_tidptr=0x1) = 201`,
      `201   unshare(CLONE_NEWNS|CLONE_NEWPID) = 0`,
      `201   clone3({flags=0, exit_signal=SIGCHLD, stack=NULL, stack_size=0}, 88) = 202`,
      `202   statx(AT_FDCWD</w>, "${C}/lower", AT_STATX_SYNC_AS_STAT, STATX_ALL, {}) = 0`,
      `202   mount("squashfuse", "${C}/lower", "fuse.squashfuse", MS_RDONLY|MS_NODEV, "fd=13") = 0`,
      `202   clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|SIGCHLD <unfinished ...>`,
      `202   <... clone resumed>, child_tidptr=0x1) = 2 /* 203 in strace's PID NS */`,
      // The union's daemon: lookups in the writable layer (the store), into squashfuse (inside),
      // through /proc/self/fd of a descriptor it opened.
      `203   openat(AT_FDCWD</>, "${C}/upper", O_RDONLY|O_DIRECTORY) = 4<${C}/upper>`,
      `203   openat(AT_FDCWD</>, "${C}/lower", O_RDONLY|O_DIRECTORY) = 3<${C}/lower>`,
      `203   faccessat2(4<${C}/upper>, "./.wh.usr", F_OK, AT_SYMLINK_NOFOLLOW|AT_EACCESS) = -1 ENOENT (No such file or directory)`,
      `203   statx(3<${C}/lower>, "usr", AT_STATX_DONT_SYNC|AT_SYMLINK_NOFOLLOW, STATX_TYPE, {}) = 0`,
      `203   lgetxattr("/proc/self/fd/4/usr", "user.overlay.opaque", 0x7ff, 16) = -1 ENODATA (No data available)`,
      `203   fgetxattr(3<${C}/lower>, "user.fuseoverlayfs.origin", 0x5611, 4096) = -1 ENODATA (No data available)`,
      // The init pivots: from then on it (and its children) are the container's processes.
      `202   mount("fuse-overlayfs", "${C}/bundle/rootfs", "fuse.fuse-overlayfs", 0, "fd=13") = 0`,
      `202   chdir("${C}/bundle/rootfs") = 0`,
      `202   pivot_root(".", ".") = 0`,
      `202   execve("/bin/bash", ["/bin/bash", "-c", "true"], 0x1 /* 3 vars */) = 0`,
      `202   openat(AT_FDCWD</>, "/etc/ld.so.cache", O_RDONLY|O_CLOEXEC) = 3</etc/ld.so.cache>`,
      `202   statx(AT_FDCWD</>, "/etc/hosts", AT_STATX_SYNC_AS_STAT, STATX_ALL, {}) = 0`,
      `202   clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|SIGCHLD, child_tidptr=0x1) = 5 /* 204 in strace's PID NS */`,
      `204   newfstatat(AT_FDCWD</>, "/usr", {st_mode=S_IFDIR|0755}, 0) = 0`,
      `202   +++ exited with 0 +++`,
    ].join('\n');
    const got = classify(log);
    expect(got).toEqual([
      ['image', `${FS}/image/img.sqfs`],
      ['image', `${FS}/image/img.sqfs`],
      ['container', `${C}/lower`],
      ['host', '/w/node_modules/x.js'],
      ['image', `${STORE}/layers/l1`],
      ['host', '/b'],
      ['container', FS],
      ['container', `${C}/lower`],
      ['container', `${C}/lower`],
      ['container', `${C}/upper`],
      ['inside', `${C}/lower`],
      ['container', `${C}/upper/.wh.usr`],
      ['inside', `${C}/lower/usr`],
      ['container', `${C}/upper/usr`],
      ['inside', `${C}/lower`],
      ['container', `${C}/bundle/rootfs`],
      ['inside', `${C}/bundle/rootfs`],
      ['inside', `${C}/bundle/rootfs`],
      ['inside', '/bin/bash'],
      ['inside', '/etc/ld.so.cache'],
      ['container', '/etc/hosts'],
      ['inside', '/usr'],
    ]);
    expect(attribute(log, opts)).toEqual({ image: 3, container: 9, host: 2, inside: 8, total: 22 });
  });
});
