//! The container's root filesystem where it is not only the kernel's overlay of the store's layers (which
//! mounts.rs mounts from the `run.burrow.rootfs.overlay` annotation):
//!
//! - fuse-overlayfs (`mount_annotated`): the init mounts the union of the image's layers and the
//!   container's upper directory with Debian's `fuse-overlayfs`, inside the container's user and
//!   mount namespaces, before pivot_root. It reads the layers as the unpacker writes them for the
//!   kernel's overlay, so nothing is converted: fuse-overlayfs (1.10, Debian 12) takes a 0/0
//!   character device in a lower layer for a whiteout and `user.overlay.opaque` for an opaque
//!   directory (as well as the `trusted.` and `.wh.` forms).
//! - a one-file image (`mount_squash_annotated`): a squashfs, or a SIF's system partition at its
//!   offset, mounted read-only with Debian's squashfuse on a directory that the union (kernel overlay
//!   or fuse-overlayfs) then takes as its only lower layer; the daemon lives as fuse-overlayfs's.
//! - copy (`assemble_copy`): at `burrow create`, `burrow-runtime unpack` copies the image's
//!   layers in order into one directory inside the store's user namespace, turning whiteouts and
//!   opaque directories into deletions; the runtime then uses it as a plain rootfs.
//!
//! Where the fuse-overlayfs daemon lives, and why. It must run inside the container's user
//! namespace, as its root: the layers' files belong to subordinate ids, which only that
//! namespace shows as the container's owners, and the files it creates in the upper directory
//! must get the container's ids. Podman keeps a long-lived rootless user namespace (its pause
//! process) and mounts there, outside the container; burrow has no daemon and no pause process,
//! and each container gets a fresh user namespace from the runtime, so the one process that is
//! in it, privileged, before the root is needed, is the init before pivot_root. So the init
//! opens /dev/fuse and mounts the filesystem itself (`fd=N`), and starts the daemon, which is
//! handed the descriptor (libfuse's `/dev/fd/N` mount point) and mounts nothing; it execs once
//! the init has mounted. The daemon lives in a mount namespace of its own that does not hold
//! the mount: born in a copy made before the mount (clone3 with CLONE_NEWNS), or, where clone3
//! is refused, unsharing one after the mount and unmounting its copy there. For two reasons:
//! pivot_root changes the root of every process of the init's mount namespace, which would
//! make the daemon's root the very filesystem it serves (a request that needs itself); and
//! with the container's mount as the only one left, the kernel shuts the
//! filesystem down when the container's mount namespace goes away and the daemon exits by
//! itself (its read of /dev/fuse fails with ENODEV), pid namespace or not. The price: it is a
//! process of the container's pid namespace and cgroup, so `ps` inside the container shows it,
//! and the container's root could kill it (breaking only its own root). It also dies with the
//! container for sure: the end of a pid namespace kills every process in it.

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{fchmod, fstatat, futimens, mkdirat, mknodat, utimensat, FileStat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, symlinkat, unlinkat, ForkResult, Gid, Uid, UnlinkatFlags};
use serde::Serialize;

use super::error::{PathCtx, Result, RuntimeError, SysCtx};
use crate::error::Coded;

/// fuse-overlayfs options (`lowerdir=…,upperdir=…,workdir=…`), set by the burrow CLI.
pub const FUSE_ANNOTATION: &str = "run.burrow.rootfs.fuse-overlayfs";
/// Directory that relative `lowerdir` entries are relative to (the store's layers).
pub const FUSE_CWD_ANNOTATION: &str = "run.burrow.rootfs.fuse-overlayfs.cwd";
/// The fuse-overlayfs program (an absolute path; the init cannot rely on a PATH).
pub const FUSE_PROGRAM_ANNOTATION: &str = "run.burrow.rootfs.fuse-overlayfs.program";

/// Mounts the rootfs with fuse-overlayfs when the config asks for it; false when it does not.
pub fn mount_annotated(rootfs: &Path, ann: Option<&HashMap<String, String>>) -> Result<bool> {
    let Some(a) = ann else { return Ok(false) };
    let Some(opts) = a.get(FUSE_ANNOTATION) else { return Ok(false) };
    let program = a.get(FUSE_PROGRAM_ANNOTATION).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/fuse-overlayfs"));
    let args = vec![c"fuse-overlayfs".into(), c"-f".into(), c"-o".into(), CString::new(opts.as_str()).unwrap_or_default()];
    mount_fuse(rootfs, &program, "fuse-overlayfs", args, a.get(FUSE_CWD_ANNOTATION).map(Path::new), MsFlags::empty())?;
    Ok(true)
}

/// The image file (a squashfs, or a SIF holding one) whose file system is the container's
/// read-only lower layer, set by the burrow CLI for `burrow run FILE.sqfs|FILE.sif`.
pub const SQUASH_ANNOTATION: &str = "run.burrow.rootfs.squashfuse";
/// Where the squashfs starts in the file, in bytes (a SIF's system partition; absent: 0).
pub const SQUASH_OFFSET_ANNOTATION: &str = "run.burrow.rootfs.squashfuse.offset";
/// The directory it is mounted on: the `lowerdir` of the union the other annotations describe.
pub const SQUASH_LOWER_ANNOTATION: &str = "run.burrow.rootfs.squashfuse.lower";
/// The squashfuse program (an absolute path: squashfuse_ll, or squashfuse).
pub const SQUASH_PROGRAM_ANNOTATION: &str = "run.burrow.rootfs.squashfuse.program";

/// Mounts a one-file image read-only with squashfuse, before the union that uses it as its lower
/// layer, when the config asks for it. Why squashfuse: the kernel's squashfs needs
/// CAP_SYS_ADMIN in the initial user namespace (it is not `FS_USERNS_MOUNT`), FUSE does not. The
/// daemon lives as fuse-overlayfs's does (module header): in the container's user namespace, so
/// the owners stored in the image (the container's ids, as `burrow image convert` writes them)
/// are mapped by the container's id map, and it ends when the last mount of its file system goes
/// away with the container.
pub fn mount_squash_annotated(ann: Option<&HashMap<String, String>>) -> Result<()> {
    let Some(a) = ann else { return Ok(()) };
    let Some(file) = a.get(SQUASH_ANNOTATION) else { return Ok(()) };
    let Some(lower) = a.get(SQUASH_LOWER_ANNOTATION) else {
        return Err(RuntimeError::Helper { helper: "squashfuse".into(), detail: format!("{SQUASH_LOWER_ANNOTATION} is not set") });
    };
    let program = a.get(SQUASH_PROGRAM_ANNOTATION).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/squashfuse"));
    let mut args: Vec<CString> = vec![c"squashfuse".into(), c"-f".into()];
    if let Some(off) = a.get(SQUASH_OFFSET_ANNOTATION).filter(|o| o.as_str() != "0") {
        args.push(c"-o".into());
        args.push(CString::new(format!("offset={off}")).unwrap_or_default());
    }
    args.push(CString::new(file.as_str()).unwrap_or_default());
    mount_fuse(Path::new(lower), &program, "squashfuse", args, None, MsFlags::MS_RDONLY | MsFlags::MS_NODEV)
}

fn cstring(s: &OsStr) -> CString {
    CString::new(s.as_bytes()).unwrap_or_default()
}

/// Mounts a FUSE file system on `target` and starts `program` (with `args`, then the
/// `/dev/fd/N` mount point) to serve it; returns once it serves.
fn mount_fuse(target: &Path, program: &Path, name: &str, mut args: Vec<CString>, cwd: Option<&Path>, flags: MsFlags) -> Result<()> {
    let fail = |detail: String| RuntimeError::Helper { helper: format!("{name} ({})", program.display()), detail };
    nix::unistd::access(program, nix::unistd::AccessFlags::X_OK).map_err(|e| fail(format!("cannot run it: {e}")))?;
    let fd = nix::fcntl::open("/dev/fuse", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| fail(format!("cannot open /dev/fuse: {e} (it must exist and be mode 0666, as distributions ship it)")))?;
    // SAFETY: fd was just opened and belongs to nobody else.
    let fuse = unsafe { OwnedFd::from_raw_fd(fd) };
    // What the daemon would ask for when it mounts as root: every container user may use the
    // files (allow_other), with the kernel checking their modes (default_permissions).
    let data = format!("fd={fd},rootmode=40000,user_id=0,group_id=0,default_permissions,allow_other");
    // Its stderr comes to us until it serves, so that a failure can say why.
    let (rd, wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC).op("pipe")?;
    // The daemon execs once the file system is mounted (it serves /dev/fuse at once, which
    // fails before): a byte on this pipe says so, its end without one that we gave up.
    let (go_rd, go_wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC).op("pipe")?;
    // Prepared before fork: the child only makes system calls.
    args.push(CString::new(format!("/dev/fd/{fd}")).unwrap_or_default());
    let env: Vec<CString> = vec![c"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()];
    let prog = cstring(program.as_os_str());
    let target_c = cstring(target.as_os_str());
    let cwd_c = cstring(cwd.unwrap_or(Path::new("/")).as_os_str());
    let d = Daemon {
        fuse: fd,
        err: wr.as_raw_fd(),
        go: go_rd.as_raw_fd(),
        go_ours: go_wr.as_raw_fd(),
        prog: &prog,
        args: &args,
        env: &env,
        target: &target_c,
        cwd: &cwd_c,
    };
    // The daemon is born in a mount namespace of its own (module header), copied now, before
    // the mount: its copy never holds the mount, so it has nothing to unmount and goes on while
    // we mount. Where clone3 is refused (before Linux 5.3, or a seccomp profile around us), a
    // fork, and the daemon unshares and unmounts its copy itself, as before.
    let (forked, own_ns) = match super::create::clone3_with(nix::sched::CloneFlags::CLONE_NEWNS, None) {
        Ok(f) => (f, true),
        Err(Errno::ENOSYS | Errno::EPERM) => {
            // SAFETY: the init is single-threaded (burrow-runtime never starts a thread before this).
            (unsafe { nix::unistd::fork() }.op("fork a FUSE daemon")?, false)
        }
        Err(e) => return Err(e).op("clone3 a FUSE daemon"),
    };
    match forked {
        ForkResult::Child => daemon(&d, own_ns),
        ForkResult::Parent { child } => {
            drop((wr, go_rd));
            let mounted = mount(Some(name), target, Some(format!("fuse.{name}").as_str()), flags, Some(data.as_str())).at("mount fuse on", target);
            if let Err(e) = mounted {
                // Its end of the pipe without a byte: it leaves without starting.
                drop(go_wr);
                let _ = nix::sys::wait::waitpid(child, None);
                return Err(e);
            }
            let _ = nix::unistd::write(&go_wr, b"1");
            drop(go_wr);
            // The mount holds the connection now. Without our copy of the descriptor, a daemon
            // that dies aborts the connection, so the request below fails instead of hanging.
            drop(fuse);
            // statfs always goes to the daemon (the kernel never answers it from a cache): when
            // it returns, the daemon has opened what it serves and serves.
            match nix::sys::statfs::statfs(target) {
                Ok(_) => Ok(()),
                Err(e) => {
                    let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                    let status = nix::sys::wait::waitpid(child, None).map(|s| format!("{s:?}")).unwrap_or_default();
                    let mut out = String::new();
                    let _ = std::fs::File::from(rd).read_to_string(&mut out);
                    let _ = umount2(target, MntFlags::MNT_DETACH);
                    Err(fail(format!("it did not serve {} ({e}; {status}): {}", target.display(), out.trim())))
                }
            }
        }
    }
}

/// What the daemon's side of the fork needs, prepared before it.
struct Daemon<'a> {
    fuse: RawFd,
    err: RawFd,
    /// Where the init says that the file system is mounted (module header).
    go: RawFd,
    /// The init's end of that pipe, closed here (else its end would never be seen).
    go_ours: RawFd,
    prog: &'a CString,
    args: &'a [CString],
    env: &'a [CString],
    target: &'a CString,
    cwd: &'a CString,
}

/// The daemon's side of the fork: never returns. `own_ns`: born in a mount namespace of its
/// own, without the mount (clone3); otherwise it makes one and unmounts its copy there.
fn daemon(d: &Daemon, own_ns: bool) -> ! {
    let r = (|| -> std::result::Result<std::convert::Infallible, (&'static str, Errno)> {
        let _ = nix::unistd::close(d.go_ours);
        nix::unistd::dup2(d.err, 2).map_err(|e| ("dup2", e))?;
        let null = nix::fcntl::open("/dev/null", OFlag::O_RDWR, Mode::empty()).map_err(|e| ("open /dev/null", e))?;
        nix::unistd::dup2(null, 0).map_err(|e| ("dup2", e))?;
        nix::unistd::dup2(null, 1).map_err(|e| ("dup2", e))?;
        // Out of the container's terminal session: ^C meant for the container must not stop
        // its filesystem.
        nix::unistd::setsid().map_err(|e| ("setsid", e))?;
        nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&nix::sys::signal::SigSet::empty()), None)
            .map_err(|e| ("sigprocmask", e))?;
        nix::fcntl::fcntl(d.fuse, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty())).map_err(|e| ("fcntl", e))?;
        nix::unistd::chdir(d.cwd.as_c_str()).map_err(|e| ("chdir to the layers", e))?;
        let mut b = [0u8; 1];
        loop {
            match nix::unistd::read(d.go, &mut b) {
                Ok(1) => break,
                Err(Errno::EINTR) => continue,
                // The init could not mount: nothing to serve, nothing to say (it reports why).
                // SAFETY: leave without the init's atexit handlers.
                _ => unsafe { libc::_exit(0) },
            }
        }
        if !own_ns {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| ("unshare(CLONE_NEWNS)", e))?;
            umount2(d.target.as_c_str(), MntFlags::MNT_DETACH).map_err(|e| ("unmount its own copy of the mount", e))?;
        }
        Err(("exec", nix::unistd::execve(d.prog, d.args, d.env).unwrap_err()))
    })();
    let Err((op, e)) = r;
    let msg = format!("{op}: {e}\n");
    // SAFETY: fd 2 is open (the pipe, or the init's stderr if dup2 failed).
    let _ = nix::unistd::write(unsafe { std::os::fd::BorrowedFd::borrow_raw(2) }, msg.as_bytes());
    // SAFETY: leave without the init's atexit handlers.
    unsafe { libc::_exit(127) }
}

// ---- copy driver ----------------------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("copy driver: {op} {path}: {errno}")]
    Sys { op: &'static str, path: PathBuf, errno: Errno },
}

impl Coded for RootfsError {
    fn code(&self) -> &'static str {
        match self {
            RootfsError::Sys { .. } => crate::codes::EROOTFS_COPY,
        }
    }
}

/// What `assemble_copy` did (printed by `burrow-runtime unpack`).
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CopyStats {
    pub layers: u64,
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    /// Files that share the layer's blocks (FICLONE) instead of holding a copy.
    pub reflinked: u64,
    pub whiteouts: u64,
    pub opaque_dirs: u64,
    /// Sockets and device nodes (the unpacker never makes devices) and unmapped owners.
    pub skipped: u64,
    /// Set-user-id and set-group-id bits left out (`Owners::Caller` only).
    pub setid_dropped: u64,
}

/// Who owns the copy's entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Owners {
    /// The owners the layers have (the copy driver: the store's mapping stays right).
    #[default]
    Keep,
    /// Whoever makes the copy, for every entry (`burrow bundle`'s single-id modes: a runtime
    /// that maps one id sees every file as its own). Set-id bits are dropped, since they would
    /// now name the caller, and directories get u+rwx, so that the caller can remove the tree
    /// with a plain `rm -rf`.
    Caller,
}

const FICLONE: libc::c_ulong = 0x4004_9409;

struct Copier {
    root: OwnedFd,
    dest: PathBuf,
    stats: CopyStats,
    /// (dev, ino) of a layer file with several names → its first name in the destination.
    links: HashMap<(u64, u64), PathBuf>,
    owners: Owners,
}

fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: fd was just returned by a successful open and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn is_whiteout(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0
}

/// Copies `layers` (bottom first: the image's order) into the existing directory `dest`, as
/// overlay would show them: a whiteout (a 0/0 character device, or a `.wh.NAME` file) deletes
/// NAME from the layers below, an opaque directory (`user.overlay.opaque` or
/// `trusted.overlay.opaque` set to "y", or a `.wh..wh..opq` entry) hides what they had in it, an
/// entry replaces a different kind of entry of the same name. Owners, modes, times, user
/// xattrs and hard links are kept; file data is shared with the layer (reflink) where the
/// filesystem can. Every step goes through directory descriptors with O_NOFOLLOW, so a
/// symlink of a lower layer is replaced, never followed.
pub fn assemble_copy(layers: &[PathBuf], dest: &Path) -> std::result::Result<CopyStats, RootfsError> {
    assemble_copy_as(layers, dest, Owners::Keep)
}

/// `assemble_copy` with the owners chosen (see `Owners`).
pub fn assemble_copy_as(layers: &[PathBuf], dest: &Path, owners: Owners) -> std::result::Result<CopyStats, RootfsError> {
    fn sys<'a>(op: &'static str, path: &'a Path) -> impl Fn(Errno) -> RootfsError + 'a {
        move |errno| RootfsError::Sys { op, path: path.to_path_buf(), errno }
    }
    let root = own(openat(None, dest, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys("open", dest))?);
    let mut c = Copier { root, dest: dest.to_path_buf(), stats: CopyStats::default(), links: HashMap::new(), owners };
    for layer in layers {
        let src = own(openat(None, layer, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys("open layer", layer))?);
        // Hard links never cross layers.
        c.links.clear();
        let dst = own(nix::unistd::dup(c.root.as_raw_fd()).map_err(sys("dup", dest))?);
        c.merge(src.as_raw_fd(), dst.as_raw_fd(), Path::new(""))?;
        c.stats.layers += 1;
    }
    Ok(c.stats)
}

impl Copier {
    fn err(&self, op: &'static str, rel: &Path) -> impl Fn(Errno) -> RootfsError {
        let path = self.dest.join(rel);
        move |errno| RootfsError::Sys { op, path: path.clone(), errno }
    }

    /// Names in a directory, without `.` and `..`.
    fn names(&self, dirfd: RawFd, rel: &Path) -> std::result::Result<Vec<OsString>, RootfsError> {
        let fd = openat(Some(dirfd), ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).map_err(self.err("open", rel))?;
        let mut d = nix::dir::Dir::from_fd(fd).map_err(self.err("readdir", rel))?;
        let mut out = Vec::new();
        for e in d.iter() {
            let e = e.map_err(self.err("readdir", rel))?;
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." {
                out.push(OsString::from_vec(n.to_vec()));
            }
        }
        Ok(out)
    }

    fn open_dir(&self, dirfd: RawFd, name: &OsStr, rel: &Path) -> std::result::Result<OwnedFd, RootfsError> {
        openat(Some(dirfd), name, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
            .map(own)
            .map_err(self.err("open directory", rel))
    }

    /// Removes whatever is at `name` in the destination (recursively for a directory).
    fn remove(&self, dirfd: RawFd, name: &OsStr, rel: &Path) -> std::result::Result<(), RootfsError> {
        match unlinkat(Some(dirfd), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(Errno::EISDIR) => {
                let d = self.open_dir(dirfd, name, rel)?;
                self.clear(d.as_raw_fd(), rel)?;
                unlinkat(Some(dirfd), name, UnlinkatFlags::RemoveDir).map_err(self.err("rmdir", rel))
            }
            Err(e) => Err(self.err("unlink", rel)(e)),
        }
    }

    fn clear(&self, dirfd: RawFd, rel: &Path) -> std::result::Result<(), RootfsError> {
        for n in self.names(dirfd, rel)? {
            self.remove(dirfd, &n, &rel.join(&n))?;
        }
        Ok(())
    }

    fn opaque(&self, dirfd: RawFd) -> bool {
        let mut v = [0u8; 2];
        for attr in [c"user.overlay.opaque", c"trusted.overlay.opaque"] {
            // SAFETY: valid descriptor, NUL-terminated name, buffer and its length.
            let n = unsafe { libc::fgetxattr(dirfd, attr.as_ptr(), v.as_mut_ptr() as *mut libc::c_void, v.len()) };
            if n == 1 && v[0] == b'y' {
                return true;
            }
        }
        fstatat(Some(dirfd), ".wh..wh..opq", AtFlags::AT_SYMLINK_NOFOLLOW).is_ok()
    }

    /// Applies one layer's directory `src` onto the destination directory `dst`.
    fn merge(&mut self, src: RawFd, dst: RawFd, rel: &Path) -> std::result::Result<(), RootfsError> {
        for name in self.names(src, rel)? {
            let crel = rel.join(&name);
            let st = fstatat(Some(src), name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(self.err("stat in layer", &crel))?;
            let nb = name.as_bytes();
            if is_whiteout(&st) {
                self.remove(dst, &name, &crel)?;
                self.stats.whiteouts += 1;
                continue;
            }
            if nb.starts_with(b".wh.") {
                // The AUFS form of the same markers; the opaque one is read by `opaque`.
                if nb != b".wh..wh..opq" && nb.len() > 4 {
                    let target = OsStr::from_bytes(&nb[4..]);
                    self.remove(dst, target, &rel.join(target))?;
                    self.stats.whiteouts += 1;
                }
                continue;
            }
            let existing = fstatat(Some(dst), name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW).ok();
            match st.st_mode & libc::S_IFMT {
                libc::S_IFDIR => {
                    let s = self.open_dir(src, &name, &crel)?;
                    match existing {
                        Some(e) if e.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                            if self.opaque(s.as_raw_fd()) {
                                let d = self.open_dir(dst, &name, &crel)?;
                                self.clear(d.as_raw_fd(), &crel)?;
                                self.stats.opaque_dirs += 1;
                            }
                        }
                        other => {
                            if other.is_some() {
                                self.remove(dst, &name, &crel)?;
                            }
                            mkdirat(Some(dst), name.as_os_str(), Mode::from_bits_truncate(0o700)).map_err(self.err("mkdir", &crel))?;
                        }
                    }
                    let d = self.open_dir(dst, &name, &crel)?;
                    self.merge(s.as_raw_fd(), d.as_raw_fd(), &crel)?;
                    // After the children: a read-only mode or the mtime would not survive them.
                    self.meta(s.as_raw_fd(), d.as_raw_fd(), &st, &crel)?;
                    self.stats.dirs += 1;
                }
                libc::S_IFREG => {
                    if existing.is_some() {
                        self.remove(dst, &name, &crel)?;
                    }
                    let key = (st.st_dev, st.st_ino);
                    if st.st_nlink > 1 {
                        if let Some(first) = self.links.get(&key) {
                            nix::unistd::linkat(Some(self.root.as_raw_fd()), first.as_path(), Some(dst), Path::new(&name), AtFlags::empty())
                                .map_err(self.err("link", &crel))?;
                            continue;
                        }
                    }
                    self.file(src, dst, &name, &st, &crel)?;
                    if st.st_nlink > 1 {
                        self.links.insert(key, crel);
                    }
                }
                libc::S_IFLNK => {
                    if existing.is_some() {
                        self.remove(dst, &name, &crel)?;
                    }
                    let target = nix::fcntl::readlinkat(Some(src), name.as_os_str()).map_err(self.err("readlink", &crel))?;
                    symlinkat(target.as_os_str(), Some(dst), name.as_os_str()).map_err(self.err("symlink", &crel))?;
                    self.chown_at(dst, &name, &st);
                    let (a, m) = times(&st);
                    let _ = utimensat(Some(dst), name.as_os_str(), &a, &m, UtimensatFlags::NoFollowSymlink);
                    self.stats.files += 1;
                }
                libc::S_IFIFO => {
                    if existing.is_some() {
                        self.remove(dst, &name, &crel)?;
                    }
                    mknodat(Some(dst), name.as_os_str(), SFlag::S_IFIFO, Mode::from_bits_truncate(0o600), 0).map_err(self.err("mkfifo", &crel))?;
                    self.chown_at(dst, &name, &st);
                    let mode = self.mode_of(&st);
                    nix::sys::stat::fchmodat(Some(dst), name.as_os_str(), Mode::from_bits_truncate(mode), nix::sys::stat::FchmodatFlags::NoFollowSymlink)
                        .map_err(self.err("chmod", &crel))?;
                    let (a, m) = times(&st);
                    let _ = utimensat(Some(dst), name.as_os_str(), &a, &m, UtimensatFlags::NoFollowSymlink);
                    self.stats.files += 1;
                }
                _ => self.stats.skipped += 1,
            }
        }
        Ok(())
    }

    fn file(&mut self, src: RawFd, dst: RawFd, name: &OsStr, st: &FileStat, rel: &Path) -> std::result::Result<(), RootfsError> {
        let s = own(openat(Some(src), name, OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty()).map_err(self.err("open in layer", rel))?);
        let d = own(openat(
            Some(dst),
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(self.err("create", rel))?);
        // SAFETY: FICLONE takes the source descriptor as its argument.
        if st.st_size > 0 && unsafe { libc::ioctl(d.as_raw_fd(), FICLONE, s.as_raw_fd()) } == 0 {
            self.stats.reflinked += 1;
        } else if st.st_size > 0 {
            copy_data(&s, &d).map_err(self.err("copy", rel))?;
        }
        self.stats.bytes += st.st_size as u64;
        self.stats.files += 1;
        self.meta(s.as_raw_fd(), d.as_raw_fd(), st, rel)
    }

    /// The mode an entry gets: the layer's, or with `Owners::Caller` without set-id bits on
    /// anything but directories (where set-gid only means "inherit the group", and every group
    /// is the caller's) and with u+rwx on directories.
    fn mode_of(&mut self, st: &FileStat) -> u32 {
        let mode = st.st_mode & 0o7777;
        if self.owners == Owners::Keep {
            return mode;
        }
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            return mode | 0o700;
        }
        if mode & 0o6000 != 0 {
            self.stats.setid_dropped += 1;
        }
        mode & !0o6000
    }

    /// Owner, then mode (a chown clears set-id bits), user xattrs, times.
    fn meta(&mut self, src: RawFd, dst: RawFd, st: &FileStat, rel: &Path) -> std::result::Result<(), RootfsError> {
        if self.owners == Owners::Keep {
            match fchown(dst, Some(Uid::from_raw(st.st_uid)), Some(Gid::from_raw(st.st_gid))) {
                Ok(()) => {}
                // An owner the namespace does not map (single-id mode): counted, never fatal.
                Err(Errno::EINVAL) | Err(Errno::EPERM) => self.stats.skipped += 1,
                Err(e) => return Err(self.err("chown", rel)(e)),
            }
        }
        let mode = self.mode_of(st);
        fchmod(dst, Mode::from_bits_truncate(mode)).map_err(self.err("chmod", rel))?;
        copy_xattrs(src, dst).map_err(self.err("copy xattrs", rel))?;
        let (a, m) = times(st);
        futimens(dst, &a, &m).map_err(self.err("set times", rel))
    }

    fn chown_at(&mut self, dirfd: RawFd, name: &OsStr, st: &FileStat) {
        if self.owners == Owners::Caller {
            return;
        }
        if fchownat(Some(dirfd), name, Some(Uid::from_raw(st.st_uid)), Some(Gid::from_raw(st.st_gid)), AtFlags::AT_SYMLINK_NOFOLLOW).is_err() {
            self.stats.skipped += 1;
        }
    }
}

fn times(st: &FileStat) -> (TimeSpec, TimeSpec) {
    (TimeSpec::new(st.st_atime, st.st_atime_nsec), TimeSpec::new(st.st_mtime, st.st_mtime_nsec))
}

/// copy_file_range (which the filesystem may turn into a reflink or a server-side copy), else
/// read and write.
fn copy_data(s: &OwnedFd, d: &OwnedFd) -> std::result::Result<(), Errno> {
    loop {
        match nix::fcntl::copy_file_range(s, None, d, None, 1 << 30) {
            Ok(0) => return Ok(()),
            Ok(_) => continue,
            Err(Errno::EXDEV) | Err(Errno::ENOSYS) | Err(Errno::EINVAL) | Err(Errno::EOPNOTSUPP) => break,
            Err(e) => return Err(e),
        }
    }
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = nix::unistd::read(s.as_raw_fd(), &mut buf)?;
        if n == 0 {
            return Ok(());
        }
        let mut off = 0;
        while off < n {
            off += nix::unistd::write(d, &buf[off..n])?;
        }
    }
}

/// The user.* xattrs of `src` onto `dst`, except overlay's own markers (`user.overlay.*`),
/// which mean nothing in a plain directory.
fn copy_xattrs(src: RawFd, dst: RawFd) -> std::result::Result<(), Errno> {
    // SAFETY (all calls below): valid descriptors, buffers with their true lengths.
    let len = unsafe { libc::flistxattr(src, std::ptr::null_mut(), 0) };
    if len <= 0 {
        return Ok(());
    }
    let mut names = vec![0u8; len as usize];
    let len = unsafe { libc::flistxattr(src, names.as_mut_ptr() as *mut libc::c_char, names.len()) };
    if len < 0 {
        return Err(Errno::last());
    }
    for name in names[..len as usize].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if !name.starts_with(b"user.") || name.starts_with(b"user.overlay.") {
            continue;
        }
        let cname = CString::new(name).unwrap_or_default();
        let vlen = unsafe { libc::fgetxattr(src, cname.as_ptr(), std::ptr::null_mut(), 0) };
        if vlen < 0 {
            continue;
        }
        let mut value = vec![0u8; vlen as usize];
        let vlen = unsafe { libc::fgetxattr(src, cname.as_ptr(), value.as_mut_ptr() as *mut libc::c_void, value.len()) };
        if vlen < 0 {
            continue;
        }
        if unsafe { libc::fsetxattr(dst, cname.as_ptr(), value.as_ptr() as *const libc::c_void, vlen as usize, 0) } != 0 {
            let e = Errno::last();
            if e != Errno::ENOTSUP {
                return Err(e);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    fn set_opaque(p: &Path) {
        let c = CString::new(p.as_os_str().as_bytes()).unwrap();
        // SAFETY: NUL-terminated path and name, one-byte value.
        assert_eq!(unsafe { libc::setxattr(c.as_ptr(), c"user.overlay.opaque".as_ptr(), b"y".as_ptr() as *const libc::c_void, 1, 0) }, 0);
    }

    fn names(p: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(p).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        v.sort();
        v
    }

    #[test]
    fn layers_are_applied_as_overlay_shows_them() {
        let t = tempfile::tempdir().unwrap();
        let (l1, l2, out) = (t.path().join("l1"), t.path().join("l2"), t.path().join("out"));
        for d in ["l1/keep", "l1/opq/sub", "l1/gone-dir/deep", "l1/was-dir", "l2/opq", "l2/keep", "out"] {
            std::fs::create_dir_all(t.path().join(d)).unwrap();
        }
        std::fs::write(l1.join("keep/a"), "a1").unwrap();
        std::fs::write(l1.join("gone"), "x").unwrap();
        std::fs::write(l1.join("aufs-gone"), "x").unwrap();
        std::fs::write(l1.join("opq/old"), "x").unwrap();
        std::fs::write(l1.join("was-file"), "x").unwrap();
        std::fs::write(l1.join("hard1"), "one inode").unwrap();
        std::fs::hard_link(l1.join("hard1"), l1.join("hard2")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", l1.join("link")).unwrap();
        std::fs::set_permissions(l1.join("keep/a"), std::fs::Permissions::from_mode(0o4750)).unwrap();
        // Layer 2: whiteouts in both forms, an opaque directory, kinds replacing kinds.
        mknodat(None, &l2.join("gone"), SFlag::S_IFCHR, Mode::empty(), 0).unwrap();
        mknodat(None, &l2.join("gone-dir"), SFlag::S_IFCHR, Mode::empty(), 0).unwrap();
        std::fs::write(l2.join(".wh.aufs-gone"), "").unwrap();
        set_opaque(&l2.join("opq"));
        std::fs::write(l2.join("opq/new"), "n").unwrap();
        std::fs::write(l2.join("keep/b"), "b2").unwrap();
        std::fs::write(l2.join("was-dir"), "now a file").unwrap();
        std::fs::create_dir(l2.join("was-file")).unwrap();
        std::fs::write(l2.join("link"), "replaces the symlink, never written through it").unwrap();
        let st = assemble_copy(&[l1.clone(), l2.clone()], &out).unwrap();
        assert_eq!(st.layers, 2);
        assert_eq!(names(&out), vec!["hard1", "hard2", "keep", "link", "opq", "was-dir", "was-file"]);
        assert_eq!(names(&out.join("keep")), vec!["a", "b"]);
        assert_eq!(names(&out.join("opq")), vec!["new"]);
        assert_eq!(std::fs::read_to_string(out.join("was-dir")).unwrap(), "now a file");
        assert!(out.join("was-file").is_dir());
        assert!(!std::fs::symlink_metadata(out.join("link")).unwrap().file_type().is_symlink());
        assert!(!std::fs::read_to_string("/etc/passwd").unwrap().contains("replaces"));
        let a = std::fs::metadata(out.join("keep/a")).unwrap();
        assert_eq!(a.mode() & 0o7777, 0o4750);
        assert_eq!(a.mtime(), std::fs::metadata(l1.join("keep/a")).unwrap().mtime());
        assert_eq!(std::fs::metadata(out.join("hard1")).unwrap().ino(), std::fs::metadata(out.join("hard2")).unwrap().ino());
        assert_eq!(st.whiteouts, 3);
        assert_eq!(st.opaque_dirs, 1);
        // The overlay marker is not copied into a plain directory; the layers are untouched.
        let c = CString::new(out.join("opq").as_os_str().as_bytes()).unwrap();
        // SAFETY: NUL-terminated path and name; size query only.
        assert!(unsafe { libc::getxattr(c.as_ptr(), c"user.overlay.opaque".as_ptr(), std::ptr::null_mut(), 0) } < 0);
        assert!(std::fs::symlink_metadata(l2.join("gone")).unwrap().file_type().is_char_device());
        assert_eq!(names(&l1.join("opq")), vec!["old", "sub"]);
    }

    #[test]
    fn caller_owners_drop_setid_bits_and_open_directories_to_their_owner() {
        let t = tempfile::tempdir().unwrap();
        let (l1, out) = (t.path().join("l1"), t.path().join("out"));
        for d in ["l1/ro/sub", "l1/shared", "out"] {
            std::fs::create_dir_all(t.path().join(d)).unwrap();
        }
        std::fs::write(l1.join("ro/sub/f"), "x").unwrap();
        std::fs::write(l1.join("suid"), "x").unwrap();
        std::fs::write(l1.join("plain"), "x").unwrap();
        std::fs::set_permissions(l1.join("suid"), std::fs::Permissions::from_mode(0o6755)).unwrap();
        std::fs::set_permissions(l1.join("plain"), std::fs::Permissions::from_mode(0o640)).unwrap();
        std::fs::set_permissions(l1.join("shared"), std::fs::Permissions::from_mode(0o3775)).unwrap();
        std::fs::set_permissions(l1.join("ro/sub"), std::fs::Permissions::from_mode(0o500)).unwrap();
        std::fs::set_permissions(l1.join("ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
        let st = assemble_copy_as(std::slice::from_ref(&l1), &out, Owners::Caller).unwrap();
        let mode = |p: &str| std::fs::metadata(out.join(p)).unwrap().mode() & 0o7777;
        assert_eq!(mode("suid"), 0o755);
        assert_eq!(mode("plain"), 0o640);
        // Directories keep set-gid and sticky bits, and become the owner's to change.
        assert_eq!(mode("shared"), 0o3775);
        assert_eq!(mode("ro"), 0o755);
        assert_eq!(mode("ro/sub"), 0o700);
        assert_eq!(st.setid_dropped, 1);
        // Every entry is the caller's, whatever the layer's owner was.
        let me = nix::unistd::geteuid().as_raw();
        for p in ["suid", "plain", "shared", "ro", "ro/sub", "ro/sub/f"] {
            assert_eq!(std::fs::metadata(out.join(p)).unwrap().uid(), me, "{p}");
        }
        std::fs::set_permissions(l1.join("ro"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(l1.join("ro/sub"), std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn symlinks_are_copied_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let (l1, l2, out) = (t.path().join("l1"), t.path().join("l2"), t.path().join("out"));
        for d in ["l1", "l2/escape", "out"] {
            std::fs::create_dir_all(t.path().join(d)).unwrap();
        }
        std::os::unix::fs::symlink(outside.path(), l1.join("escape")).unwrap();
        std::fs::write(l2.join("escape/evil"), "x").unwrap();
        assemble_copy(&[l1, l2], &out).unwrap();
        assert!(out.join("escape/evil").is_file());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "nothing written through the lower layer's symlink");
    }
}
