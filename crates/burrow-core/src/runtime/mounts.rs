//! The container's filesystem: mounts from the config, /dev, pivot_root, masked and read-only
//! paths. Runs in the init process, inside the new mount namespace, before the switch to the
//! container user.
//!
//! Rootless differences handled here: device nodes cannot be created (mknod needs the initial
//! user namespace), so they are bind-mounted from the host; proc, sysfs and mqueue can only be
//! mounted when the matching namespace belongs to our user namespace, so the host's are bound
//! instead when that fails (read-only for sysfs); a bind mount's locked flags (nosuid, nodev,
//! noexec, ro inherited from the host) must be kept on remount or the kernel refuses it.

use std::ffi::OsStr;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, openat, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::mkdirat;
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::sys::statvfs::{statvfs, FsFlags};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};

use super::error::{PathCtx, Result, RuntimeError};
use super::idmount;
use super::paths::secure_join;
use super::sync::Channel;

/// What the init knows about its situation, decided before mounting.
pub struct MountCtx<'a> {
    pub rootfs: &'a Path,
    /// We are in a user namespace (ours or joined): no mknod, locked mount flags.
    pub in_userns: bool,
    pub new_netns: bool,
    pub new_pidns: bool,
    pub new_ipcns: bool,
    pub new_cgroupns: bool,
    /// The channel to burrow-runtime's main process, which makes idmapped trees when it has
    /// the privilege the init lacks (idmount.rs).
    pub channel: Option<&'a Channel>,
}

#[derive(Debug)]
pub struct ParsedOptions {
    pub flags: MsFlags,
    pub clear: MsFlags,
    pub propagation: MsFlags,
    pub data: Vec<String>,
    pub recursive_bind: bool,
    pub bind: bool,
    /// `idmap`: the bind mount shows file owners through an id mapping (idmount.rs).
    pub idmap: bool,
    /// `ridmap`: the same for every mount of an `rbind` tree.
    pub ridmap: bool,
    /// Recursive attributes (`rro`, `rnosuid`, ...): MOUNT_ATTR_* bits that mount_setattr sets
    /// and clears on the mount and every mount under it.
    pub rec: MountAttr,
}

/// The kernel's `struct mount_attr` (linux/mount.h), for mount_setattr(2).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct MountAttr {
    pub attr_set: u64,
    pub attr_clr: u64,
    pub propagation: u64,
    pub userns_fd: u64,
}

// linux/mount.h (the libc crate lacks some of them).
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOUNT_ATTR__ATIME: u64 = 0x70;
const MOUNT_ATTR_RELATIME: u64 = 0x0;
const MOUNT_ATTR_NOATIME: u64 = 0x10;
const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x20_0000;

/// runc's `recAttrFlags`: option, whether it clears the attribute, the attribute.
pub const RECURSIVE_OPTIONS: [(&str, bool, u64); 18] = [
    ("rro", false, MOUNT_ATTR_RDONLY),
    ("rrw", true, MOUNT_ATTR_RDONLY),
    ("rnosuid", false, MOUNT_ATTR_NOSUID),
    ("rsuid", true, MOUNT_ATTR_NOSUID),
    ("rnodev", false, MOUNT_ATTR_NODEV),
    ("rdev", true, MOUNT_ATTR_NODEV),
    ("rnoexec", false, MOUNT_ATTR_NOEXEC),
    ("rexec", true, MOUNT_ATTR_NOEXEC),
    ("rnodiratime", false, MOUNT_ATTR_NODIRATIME),
    ("rdiratime", true, MOUNT_ATTR_NODIRATIME),
    ("rrelatime", false, MOUNT_ATTR_RELATIME),
    ("rnorelatime", true, MOUNT_ATTR_RELATIME),
    ("rnoatime", false, MOUNT_ATTR_NOATIME),
    ("ratime", true, MOUNT_ATTR_NOATIME),
    ("rstrictatime", false, MOUNT_ATTR_STRICTATIME),
    ("rnostrictatime", true, MOUNT_ATTR_STRICTATIME),
    ("rnosymfollow", false, MOUNT_ATTR_NOSYMFOLLOW),
    ("rsymfollow", true, MOUNT_ATTR_NOSYMFOLLOW),
];

/// The recursive option `opt`, if it is one: (clear?, attribute).
fn recursive_attr(opt: &str) -> Option<(bool, u64)> {
    RECURSIVE_OPTIONS.iter().find(|(name, ..)| *name == opt).map(|&(_, clear, attr)| (clear, attr))
}

/// Splits OCI mount options into mount(2) flags, propagation flags and filesystem data.
pub fn parse_options(opts: &[String]) -> ParsedOptions {
    let mut p = ParsedOptions {
        flags: MsFlags::empty(),
        clear: MsFlags::empty(),
        propagation: MsFlags::empty(),
        data: Vec::new(),
        recursive_bind: false,
        bind: false,
        idmap: false,
        ridmap: false,
        rec: MountAttr::default(),
    };
    for o in opts {
        if let Some((clear, attr)) = recursive_attr(o) {
            if clear {
                p.rec.attr_clr |= attr;
            } else {
                p.rec.attr_set |= attr;
                // mount_setattr(2): an access-time mode is set by also clearing the whole field.
                if attr & MOUNT_ATTR__ATIME == attr {
                    p.rec.attr_clr |= MOUNT_ATTR__ATIME;
                }
            }
            continue;
        }
        let (set, clr) = match o.as_str() {
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "silent" => (MsFlags::MS_SILENT, MsFlags::empty()),
            "loud" => (MsFlags::empty(), MsFlags::MS_SILENT),
            "lazytime" => (MsFlags::MS_LAZYTIME, MsFlags::empty()),
            "nolazytime" => (MsFlags::empty(), MsFlags::MS_LAZYTIME),
            "nosymfollow" => (MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW), MsFlags::empty()),
            "symfollow" => (MsFlags::empty(), MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW)),
            "bind" => {
                p.bind = true;
                continue;
            }
            "rbind" => {
                p.bind = true;
                p.recursive_bind = true;
                continue;
            }
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable" | "runbindable" => {
                let base = match o.trim_start_matches('r') {
                    "private" => MsFlags::MS_PRIVATE,
                    "shared" => MsFlags::MS_SHARED,
                    "slave" => MsFlags::MS_SLAVE,
                    _ => MsFlags::MS_UNBINDABLE,
                };
                p.propagation = base | if o.starts_with('r') { MsFlags::MS_REC } else { MsFlags::empty() };
                continue;
            }
            // Not mount(2) flags: idmapped mounts are made with the new mount API (idmount.rs).
            "idmap" => {
                p.idmap = true;
                continue;
            }
            "ridmap" => {
                p.ridmap = true;
                continue;
            }
            "tmpcopyup" => continue,
            other => {
                p.data.push(other.to_string());
                continue;
            }
        };
        p.flags |= set;
        p.flags &= !clr;
        p.clear |= clr;
    }
    p
}

/// Flags of an existing mount that an unprivileged remount must keep.
fn locked_flags(path: &Path) -> MsFlags {
    let Ok(s) = statvfs(path) else { return MsFlags::empty() };
    let f = s.flags();
    let mut m = MsFlags::empty();
    for (ff, mf) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(ff) {
            m |= mf;
        }
    }
    m
}

/// Remounts a bind mount with `flags`, adding the flags the kernel locked on it (and retrying
/// with them when the first attempt is refused). `name` is what errors call it.
fn remount_bind(dst: &Path, flags: MsFlags, name: &Path) -> Result<()> {
    let base = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | flags;
    match mount(None::<&str>, dst, None::<&str>, base, None::<&str>) {
        Ok(()) => Ok(()),
        Err(Errno::EPERM) | Err(Errno::EINVAL) => {
            let locked = locked_flags(dst);
            // Atime flags cannot be mixed; let the locked ones win.
            let keep = if locked.intersects(MsFlags::MS_NOATIME | MsFlags::MS_RELATIME | MsFlags::MS_STRICTATIME) {
                base & !(MsFlags::MS_NOATIME | MsFlags::MS_RELATIME | MsFlags::MS_STRICTATIME)
            } else {
                base
            };
            mount(None::<&str>, dst, None::<&str>, keep | locked, None::<&str>).at("remount", name)
        }
        Err(e) => Err(e).at("remount", name),
    }
}

fn ensure_dir(p: &Path) -> Result<()> {
    fs::create_dir_all(p).at("mkdir", p)
}

/// Creates the file `p` (in a directory that exists) unless something is there.
fn create_file(p: &Path) -> Result<()> {
    if p.symlink_metadata().is_err() {
        fs::OpenOptions::new().create(true).truncate(false).write(true).mode(0o644).open(p).at("create", p)?;
    }
    Ok(())
}

fn bind(src: &Path, dst: &Path, recursive: bool, name: &Path) -> Result<()> {
    let f = MsFlags::MS_BIND | if recursive { MsFlags::MS_REC } else { MsFlags::empty() };
    mount(Some(src), dst, None::<&str>, f, None::<&str>).at("bind mount", format!("{} on {}", src.display(), name.display()))
}

/// Binds a host path over the destination, then remounts it with `flags` (fallback for
/// proc/sysfs/mqueue/cgroup).
fn bind_host(host: &str, dest: &Dest, flags: MsFlags) -> Result<()> {
    let (_fd, at) = dest.open(None)?;
    bind(Path::new(host), &at, true, &dest.shown)?;
    let (_fd, top) = dest.open(None)?;
    remount_bind(&top, flags, &dest.shown)
}

/// Filesystems that runc mounts only on an ordinary directory of the rootfs: aimed through a
/// symlink, a hostile image would choose where the kernel's interfaces appear (or what they hide).
const SPECIAL: [&str; 6] = ["proc", "sysfs", "cgroup", "cgroup2", "mqueue", "devpts"];

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Dir,
    File,
}

/// A mount destination in the rootfs. `secure_join` resolves its symlinks as if the rootfs were
/// `/`; every mount call then goes through a descriptor opened component by component from the
/// rootfs without following any symlink (O_NOFOLLOW), used as `/proc/self/fd/N`: a symlink that
/// appears after the resolution (a volume shared with a running container can change) makes the
/// open fail instead of sending the mount outside the rootfs (runc's CVE-2021-30465).
struct Dest<'a> {
    root: &'a Path,
    /// `root` joined with the destination resolved inside it.
    resolved: PathBuf,
    /// The destination as the config names it, for messages.
    shown: PathBuf,
}

impl<'a> Dest<'a> {
    fn new(root: &'a Path, destination: &Path) -> Self {
        Dest { root, resolved: secure_join(root, destination), shown: destination.to_path_buf() }
    }

    /// Refuses a special filesystem's destination that is a symlink or not a directory (runc:
    /// "must be mounted on ordinary directory"). The parent directories are resolved inside the
    /// rootfs; the last component must be what it says.
    fn check_ordinary_dir(&self, typ: &str) -> Result<()> {
        let clean = lexical_clean(&self.shown);
        let Some(name) = clean.file_name() else { return Ok(()) };
        let at = secure_join(self.root, clean.parent().unwrap_or(Path::new("/"))).join(name);
        let refuse = |what: String| {
            RuntimeError::UnsafeMount {
            dst: self.shown.display().to_string(),
            detail: format!("{typ} must be mounted on an ordinary directory, and {what} in the container's root filesystem; refused, as runc does, because an image could aim the mount anywhere. Make it a directory in the image"),
        }
        };
        match fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = fs::read_link(&at).map(|t| t.display().to_string()).unwrap_or_default();
                Err(refuse(format!("{} is a symlink (to {target})", clean.display())))
            }
            Ok(m) if !m.is_dir() => Err(refuse(format!("{} is not a directory", clean.display()))),
            _ => Ok(()),
        }
    }

    /// Opens the destination (creating what is missing when `create` says what it is) without
    /// following symlinks, and returns the descriptor and its `/proc/self/fd/N` path, which is
    /// valid while the descriptor lives. The path names the topmost mount there when opened, so
    /// a remount or attribute change opens it again after a mount.
    fn open(&self, create: Option<Kind>) -> Result<(OwnedFd, PathBuf)> {
        let rel = self.resolved.strip_prefix(self.root).unwrap_or(Path::new(""));
        let fd = open_in_root(self.root, rel, create).map_err(|(op, errno)| RuntimeError::Path { op, path: self.shown.clone(), errno })?;
        let via = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        // Without a /proc in the init's view (unusual before pivot_root), the resolved path.
        // Asked once: the init's view of /proc does not change while it mounts (its mounts go
        // under the rootfs), and this runs for every mount.
        static PROC_FD: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let at = if *PROC_FD.get_or_init(|| Path::new("/proc/self/fd").is_dir()) { via } else { self.resolved.clone() };
        Ok((fd, at))
    }
}

/// `.` and `..` removed lexically, never above `/`.
fn lexical_clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

fn open_in_root(root: &Path, rel: &Path, create: Option<Kind>) -> std::result::Result<OwnedFd, (&'static str, Errno)> {
    let dir_flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let own = |fd: RawFd| unsafe { OwnedFd::from_raw_fd(fd) }; // SAFETY: fresh descriptors from open/openat.
    let mut cur = own(open(root, dir_flags, Mode::empty()).map_err(|e| ("open the rootfs for mount destination", e))?);
    let parts: Vec<&OsStr> = rel.components().filter_map(|c| if let Component::Normal(s) = c { Some(s) } else { None }).collect();
    for (i, name) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let next = if last && create == Some(Kind::File) {
            match openat(Some(cur.as_raw_fd()), *name, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty()) {
                Err(Errno::ENOENT) => {
                    match openat(
                        Some(cur.as_raw_fd()),
                        *name,
                        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(0o644),
                    ) {
                        Ok(f) => drop(own(f)),
                        // Another container sharing this rootfs (srun -N2 on one host starts a
                        // task per node on the same bundle) created it between the two calls;
                        // the O_NOFOLLOW open and the symlink check below still apply to it.
                        Err(Errno::EEXIST) => {}
                        Err(e) => return Err(("create mount destination", e)),
                    }
                    openat(Some(cur.as_raw_fd()), *name, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
                }
                r => r,
            }
            .map_err(|e| ("open mount destination", e))?
        } else if last && create.is_none() {
            openat(Some(cur.as_raw_fd()), *name, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(|e| ("open mount destination", e))?
        } else {
            match openat(Some(cur.as_raw_fd()), *name, dir_flags, Mode::empty()) {
                Err(Errno::ENOENT) if create.is_some() => {
                    match mkdirat(Some(cur.as_raw_fd()), *name, Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(("mkdir mount destination", e)),
                    }
                    openat(Some(cur.as_raw_fd()), *name, dir_flags, Mode::empty())
                }
                r => r,
            }
            // ENOTDIR here: a component is a file, or became a symlink after the resolution.
            .map_err(|e| ("open mount destination", e))?
        };
        cur = own(next);
    }
    // A symlink itself (O_PATH|O_NOFOLLOW opens it) is never a mount point.
    let st = nix::sys::stat::fstat(cur.as_raw_fd()).map_err(|e| ("stat mount destination", e))?;
    if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        return Err(("open mount destination (a symlink appeared there)", Errno::ELOOP));
    }
    Ok(cur)
}

/// mount_setattr(2) with AT_RECURSIVE: the attributes reach every mount of the tree, which
/// remount never does (runc applies its `r*` options the same way).
fn set_recursive_attrs(at: &Path, attr: &MountAttr, name: &Path) -> Result<()> {
    let c = std::ffi::CString::new(at.as_os_str().as_bytes())
        .map_err(|_| RuntimeError::Usage(format!("mount destination {} contains a NUL byte", name.display())))?;
    // SAFETY: valid NUL-terminated path, a mount_attr of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        let errno = Errno::last();
        let hint = if errno == Errno::ENOSYS { " (recursive mount options need Linux 5.12 or later)" } else { "" };
        return Err(RuntimeError::Sys { op: format!("mount_setattr(AT_RECURSIVE) for the recursive options of {}{hint}", name.display()), errno });
    }
    Ok(())
}

fn mount_one(ctx: &MountCtx, m: &Mount) -> Result<()> {
    let opts = parse_options(m.options().as_deref().unwrap_or(&[]));
    let typ = m.typ().clone().unwrap_or_default();
    let dest = Dest::new(ctx.rootfs, m.destination());
    let is_bind = opts.bind || typ == "bind";
    let src = m.source().clone().unwrap_or_default();
    let data = opts.data.join(",");
    let data_opt = (!data.is_empty()).then_some(data.as_str());

    if !is_bind && (opts.idmap || opts.ridmap || m.uid_mappings().is_some() || m.gid_mappings().is_some()) {
        return Err(RuntimeError::Idmap {
            dst: m.destination().display().to_string(),
            detail: format!("idmapped mounts are made of bind mounts only, and this is a {typ} mount"),
        });
    }
    if !is_bind && SPECIAL.contains(&typ.as_str()) {
        dest.check_ordinary_dir(&typ)?;
    }
    if is_bind {
        let src_meta = fs::metadata(&src).at("stat bind source", &src)?;
        let kind = if src_meta.is_dir() { Kind::Dir } else { Kind::File };
        let (_fd, at) = dest.open(Some(kind))?;
        match idmount::wanted(m, &src, opts.recursive_bind, opts.idmap, opts.ridmap)? {
            // move_mount does not follow the /proc/self/fd link: the resolved path, just checked.
            Some(req) => idmount::attach(ctx.channel, &req, &dest.resolved)?,
            None => bind(&src, &at, opts.recursive_bind, &dest.shown)?,
        }
        let want = opts.flags & !MsFlags::MS_REMOUNT;
        if !want.is_empty() {
            let (_fd, top) = dest.open(None)?;
            remount_bind(&top, want, &dest.shown)?;
        }
    } else {
        let (_fd, at) = dest.open(Some(Kind::Dir))?;
        let flags = opts.flags;
        let r = match typ.as_str() {
            "cgroup" | "cgroup2" => mount_cgroup(ctx, &dest, &at, flags),
            _ => mount(Some(src.as_path()).filter(|s| !s.as_os_str().is_empty()).or(Some(Path::new(&typ))), &at, Some(typ.as_str()), flags, data_opt)
                .at("mount", format!("{typ} on {}", m.destination().display())),
        };
        match (r, typ.as_str()) {
            (Ok(()), _) => {}
            // Fallbacks when the namespace that owns the filesystem is not ours.
            (Err(RuntimeError::Path { errno: Errno::EPERM | Errno::EACCES | Errno::EINVAL, .. }), "proc") if ctx.in_userns || !ctx.new_pidns => {
                bind_host("/proc", &dest, flags)?
            }
            (Err(RuntimeError::Path { errno: Errno::EPERM | Errno::EACCES, .. }), "sysfs") => bind_host("/sys", &dest, flags | MsFlags::MS_RDONLY)?,
            (Err(RuntimeError::Path { errno: Errno::EPERM | Errno::EACCES, .. }), "mqueue") => bind_host("/dev/mqueue", &dest, flags)?,
            (Err(RuntimeError::Path { errno: Errno::EINVAL | Errno::EPERM, .. }), "devpts") if data.contains("gid=") => {
                // gid=5 is not mapped in many user namespaces: mount without it.
                let d: Vec<&str> = opts.data.iter().map(String::as_str).filter(|o| !o.starts_with("gid=")).collect();
                mount(Some("devpts"), &at, Some("devpts"), flags, Some(d.join(",").as_str())).at("mount", format!("devpts on {}", m.destination().display()))?
            }
            (Err(e), _) => return Err(e),
        }
    }
    if opts.rec != MountAttr::default() {
        let (_fd, top) = dest.open(None)?;
        set_recursive_attrs(&top, &opts.rec, &dest.shown)?;
    }
    if !opts.propagation.is_empty() {
        let (_fd, top) = dest.open(None)?;
        mount(None::<&str>, &top, None::<&str>, opts.propagation, None::<&str>).at("set propagation", &dest.shown)?;
    }
    Ok(())
}

/// cgroup2 when the host is unified and we have a cgroup namespace; on v1 and hybrid hosts the
/// container's own cgroups, as runc shows them (cgroups::mount_for_container); otherwise the
/// host's hierarchy bound read-only.
fn mount_cgroup(ctx: &MountCtx, dest: &Dest, dst: &Path, flags: MsFlags) -> Result<()> {
    let unified = nix::sys::statfs::statfs("/sys/fs/cgroup").map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC).unwrap_or(false);
    if !unified && super::cgroups::mount_for_container(dst, &|| dest.open(None).ok(), flags, ctx.new_cgroupns, ctx.in_userns)? {
        return Ok(());
    }
    if unified && ctx.new_cgroupns {
        match mount(Some("cgroup2"), dst, Some("cgroup2"), flags, None::<&str>) {
            Ok(()) => return Ok(()),
            // /sys bound from the host (no network namespace) already carries the host's
            // cgroup2 mount here, and the kernel will not stack cgroup2 on cgroup2: cover it
            // with a tiny tmpfs first, so the container sees its own cgroup, not the host's tree.
            Err(Errno::EBUSY) => {
                if mount(Some("tmpfs"), dst, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, Some("size=0,mode=755")).is_ok()
                    && mount(Some("cgroup2"), dst, Some("cgroup2"), flags, None::<&str>).is_ok()
                {
                    return Ok(());
                }
            }
            Err(_) => {}
        }
    }
    match bind_host("/sys/fs/cgroup", dest, flags | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC) {
        Ok(()) => Ok(()),
        Err(_) if !Path::new("/sys/fs/cgroup").exists() => Ok(()),
        Err(e) => Err(e),
    }
}

const DEFAULT_DEVICES: [(&str, u64, u64); 6] = [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];

/// A device node as the config describes it (linux.devices, or a default device).
struct Node {
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
}

/// Creates a device node, or binds the host's when mknod is not allowed (rootless).
fn create_device(ctx: &MountCtx, path: &Path, n: &Node, host: Option<&Path>) -> Result<()> {
    if let Some(parent) = path.parent() {
        ensure_dir(parent)?;
    }
    if !ctx.in_userns {
        let _ = fs::remove_file(path);
        if mknod(path, n.kind, Mode::from_bits_truncate(n.mode), makedev(n.major, n.minor)).is_ok() {
            nix::unistd::chown(path, Some(n.uid.into()), Some(n.gid.into())).at("chown", path)?;
            // mknod applies the umask; the config's mode is exact.
            nix::sys::stat::fchmodat(None, path, Mode::from_bits_truncate(n.mode), nix::sys::stat::FchmodatFlags::FollowSymlink).at("chmod", path)?;
            return Ok(());
        }
    }
    let default_host = PathBuf::from(format!("/dev/{}", path.file_name().and_then(|s| s.to_str()).unwrap_or("")));
    let host = host.map(Path::to_path_buf).unwrap_or(default_host);
    // Its directory was made above.
    create_file(path)?;
    bind(&host, path, false, path)
}

fn setup_dev(ctx: &MountCtx, spec: &Spec) -> Result<()> {
    let dev = ctx.rootfs.join("dev");
    let configured: Vec<&LinuxDevice> = spec.linux().as_ref().and_then(|l| l.devices().as_ref()).map(|d| d.iter().collect()).unwrap_or_default();
    for (name, major, minor) in DEFAULT_DEVICES {
        let p = dev.join(name);
        if configured.iter().any(|d| d.path() == &Path::new("/dev").join(name)) {
            continue;
        }
        create_device(ctx, &p, &Node { kind: SFlag::S_IFCHR, major, minor, mode: 0o666, uid: 0, gid: 0 }, None)?;
    }
    for d in configured {
        let p = secure_join(ctx.rootfs, d.path());
        let kind = match d.typ() {
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            _ => SFlag::S_IFCHR,
        };
        let host = if d.typ() == LinuxDeviceType::P { None } else { Some(find_host_device(d.major() as u64, d.minor() as u64, d.path())) };
        let node = Node {
            kind,
            major: d.major() as u64,
            minor: d.minor() as u64,
            mode: d.file_mode().unwrap_or(0o666),
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        };
        create_device(ctx, &p, &node, host.as_deref())?;
    }
    // Standard links, as every runtime makes them.
    for (link, target) in [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")] {
        let p = dev.join(link);
        if p.symlink_metadata().is_err() {
            symlink(target, &p).at("symlink", &p)?;
        }
    }
    if ctx.rootfs.join("proc/kcore").exists() && dev.join("core").symlink_metadata().is_err() {
        let _ = symlink("/proc/kcore", dev.join("core"));
    }
    let ptmx = dev.join("ptmx");
    if dev.join("pts/ptmx").exists() {
        let _ = fs::remove_file(&ptmx);
        symlink("pts/ptmx", &ptmx).at("symlink", &ptmx)?;
    }
    Ok(())
}

/// The host device with the same numbers (rootless binds it); prefers the same path.
fn find_host_device(major: u64, minor: u64, path: &Path) -> PathBuf {
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::fs::MetadataExt;
    let same = |p: &Path| {
        fs::metadata(p).map(|m| (m.file_type().is_char_device() || m.file_type().is_block_device()) && m.rdev() == makedev(major, minor)).unwrap_or(false)
    };
    if same(path) {
        return path.to_path_buf();
    }
    if let Ok(rd) = fs::read_dir("/dev") {
        for e in rd.flatten() {
            if same(&e.path()) {
                return e.path();
            }
        }
    }
    path.to_path_buf()
}

/// Prepares the root: our mounts stop propagating to the host, and the rootfs becomes a mount
/// point (pivot_root needs one).
pub fn prepare_root(ctx: &MountCtx, spec: &Spec) -> Result<()> {
    let prop = spec.linux().as_ref().and_then(|l| l.rootfs_propagation().clone());
    let flag = match prop.as_deref() {
        Some("shared") | Some("rshared") => MsFlags::MS_SHARED,
        Some("private") | Some("rprivate") => MsFlags::MS_PRIVATE,
        Some("unbindable") | Some("runbindable") => MsFlags::MS_UNBINDABLE,
        _ => MsFlags::MS_SLAVE,
    };
    // First slave (or private): nothing we mount reaches the host. The requested propagation,
    // if shared or unbindable, is applied to the new root after pivot_root (`finish`): an
    // unbindable tree could not be bound, a shared one would leak our mounts.
    let first = if flag == MsFlags::MS_PRIVATE { MsFlags::MS_PRIVATE } else { MsFlags::MS_SLAVE };
    mount(None::<&str>, "/", None::<&str>, first | MsFlags::MS_REC, None::<&str>).at("make / ", "/")?;
    let ann = spec.annotations().as_ref();
    // A one-file image first: the union below takes its mount point as its lower layer.
    super::rootfs::mount_squash_annotated(ann)?;
    if let Some(opts) = ann.and_then(|a| a.get(OVERLAY_ANNOTATION)) {
        mount_overlay_rootfs(ctx, opts, ann.and_then(|a| a.get(OVERLAY_CWD_ANNOTATION)).map(String::as_str))?;
    } else if !super::rootfs::mount_annotated(ctx.rootfs, ann)? {
        // No union to mount (the copy driver, or a plain OCI bundle): bind it to make it a mount.
        bind(ctx.rootfs, ctx.rootfs, true, ctx.rootfs)?;
    }
    Ok(())
}

/// Annotation with overlay mount options for the rootfs, set by the burrow CLI: the union of
/// the image's layers and the container's writable layer is mounted here, inside the
/// container's user and mount namespaces, where an unprivileged user may mount overlay.
pub const OVERLAY_ANNOTATION: &str = "run.burrow.rootfs.overlay";
/// Directory that relative `lowerdir` paths are relative to: keeps the options under the
/// kernel's one-page limit for images with many layers.
pub const OVERLAY_CWD_ANNOTATION: &str = "run.burrow.rootfs.overlay.cwd";

fn mount_overlay_rootfs(ctx: &MountCtx, opts: &str, cwd: Option<&str>) -> Result<()> {
    let data = if ctx.in_userns && !opts.split(',').any(|o| o == "userxattr") { format!("{opts},userxattr") } else { opts.to_string() };
    let here = std::env::current_dir().ok();
    if let Some(d) = cwd {
        nix::unistd::chdir(d).at("chdir", d)?;
    }
    let r = mount(Some("overlay"), ctx.rootfs, Some("overlay"), MsFlags::empty(), Some(data.as_str())).at("mount overlay rootfs on", ctx.rootfs);
    if let Some(h) = here {
        let _ = nix::unistd::chdir(&h);
    }
    r
}

pub fn mount_all(ctx: &MountCtx, spec: &Spec) -> Result<()> {
    let mut has_dev = false;
    for m in spec.mounts().iter().flatten() {
        if m.destination() == Path::new("/dev") {
            has_dev = true;
        }
        mount_one(ctx, m)?;
    }
    if has_dev || ctx.rootfs.join("dev").is_dir() {
        setup_dev(ctx, spec)?;
    }
    Ok(())
}

/// Makes the rootfs `/`. pivot_root(".", ".") stacks the old root under the new one, and the
/// detach unmounts it: no temporary directory in the image is needed.
pub fn pivot(rootfs: &Path) -> Result<()> {
    nix::unistd::chdir(rootfs).at("chdir", rootfs)?;
    nix::unistd::pivot_root(".", ".").at("pivot_root", rootfs)?;
    mount(None::<&str>, ".", None::<&str>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&str>).at("make old root slave", "/")?;
    umount2(".", MntFlags::MNT_DETACH).at("unmount old root", "/")?;
    nix::unistd::chdir("/").at("chdir", "/")
}

/// `--no-pivot`: move the rootfs over / and chroot (for ramfs roots where pivot_root fails).
pub fn move_root(rootfs: &Path) -> Result<()> {
    nix::unistd::chdir(rootfs).at("chdir", rootfs)?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).at("move rootfs", rootfs)?;
    nix::unistd::chroot(".").at("chroot", rootfs)?;
    nix::unistd::chdir("/").at("chdir", "/")
}

/// After pivot: masked paths, read-only paths, read-only root, propagation of /.
pub fn finish(spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    for p in linux.and_then(|l| l.masked_paths().as_ref()).into_iter().flatten() {
        let path = Path::new(p);
        match fs::metadata(path) {
            Err(_) => continue,
            Ok(m) if m.is_dir() => mount(Some("tmpfs"), path, Some("tmpfs"), MsFlags::MS_RDONLY, Some("size=0")).at("mask", path)?,
            Ok(_) => match mount(Some("/dev/null"), path, None::<&str>, MsFlags::MS_BIND, None::<&str>) {
                Ok(()) => {}
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(e).at("mask", path),
            },
        }
    }
    for p in linux.and_then(|l| l.readonly_paths().as_ref()).into_iter().flatten() {
        let path = Path::new(p);
        if !path.exists() {
            continue;
        }
        bind(path, path, true, path)?;
        remount_bind(path, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, path)?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false) {
        remount_bind(Path::new("/"), MsFlags::MS_RDONLY, Path::new("/"))?;
    }
    if let Some(p) = linux.and_then(|l| l.rootfs_propagation().clone()) {
        let f = match p.as_str() {
            "shared" | "rshared" => Some(MsFlags::MS_SHARED),
            "unbindable" | "runbindable" => Some(MsFlags::MS_UNBINDABLE),
            "private" | "rprivate" => Some(MsFlags::MS_PRIVATE),
            "slave" | "rslave" => Some(MsFlags::MS_SLAVE),
            _ => None,
        };
        if let Some(f) = f {
            mount(None::<&str>, "/", None::<&str>, f | MsFlags::MS_REC, None::<&str>).at("set rootfs propagation", "/")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn options() {
        let p = parse_options(&s(&["rbind", "ro", "nosuid", "rprivate", "mode=755", "size=65536k"]));
        assert!(p.bind && p.recursive_bind);
        assert_eq!(p.flags, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID);
        assert_eq!(p.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(p.data, vec!["mode=755", "size=65536k"]);
        let p = parse_options(&s(&["ro", "rw", "nodev", "dev"]));
        assert_eq!(p.flags, MsFlags::empty());
        let p = parse_options(&s(&["slave"]));
        assert_eq!(p.propagation, MsFlags::MS_SLAVE);
        // Neither is a mount(2) flag or filesystem data.
        let p = parse_options(&s(&["rbind", "ridmap"]));
        assert!(p.ridmap && !p.idmap && p.data.is_empty() && p.flags.is_empty());
    }

    #[test]
    fn recursive_options_are_mount_setattr_attributes() {
        let p = parse_options(&s(&["rbind", "rro", "rnosuid", "rnoexec", "rexec", "rnoatime", "rnosymfollow", "rdev"]));
        assert!(p.flags.is_empty() && p.data.is_empty());
        assert_eq!(p.rec.attr_set, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC | MOUNT_ATTR_NOATIME | MOUNT_ATTR_NOSYMFOLLOW);
        // An access-time mode also clears the whole access-time field (mount_setattr(2)).
        assert_eq!(p.rec.attr_clr, MOUNT_ATTR_NOEXEC | MOUNT_ATTR__ATIME | MOUNT_ATTR_NODEV);
        let p = parse_options(&s(&["rrelatime"]));
        assert_eq!((p.rec.attr_set, p.rec.attr_clr), (MOUNT_ATTR_RELATIME, MOUNT_ATTR__ATIME));
        assert_eq!(parse_options(&s(&["ro"])).rec, MountAttr::default());
    }

    #[test]
    fn destinations_are_opened_without_following_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir_all(root.join("dir")).unwrap();
        symlink("/", root.join("dir/link")).unwrap();
        // Created where missing, inside the root.
        assert!(open_in_root(&root, Path::new("new/sub"), Some(Kind::Dir)).is_ok());
        assert!(root.join("new/sub").is_dir());
        assert!(open_in_root(&root, Path::new("dir/file"), Some(Kind::File)).is_ok());
        assert!(root.join("dir/file").is_file());
        // A symlink where secure_join saw none (swapped in since) is refused, never followed.
        assert!(open_in_root(&root, Path::new("dir/link/etc"), Some(Kind::Dir)).is_err());
        assert!(open_in_root(&root, Path::new("dir/link"), None).is_err());
        assert!(!Path::new("/etc/burrow-should-not-exist").exists());
        assert_eq!(lexical_clean(Path::new("/../proc/./x/..")), Path::new("/proc"));
    }

    /// Two containers started at once on one rootfs (srun -N2 with both nodes on one host) race
    /// to create the same file destination; the one that loses must use the winner's file.
    #[test]
    fn a_file_destination_created_concurrently_is_used() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        for round in 0..200 {
            let rel = PathBuf::from(format!("etc/resolv{round}.conf"));
            let gate = std::sync::Arc::new(std::sync::Barrier::new(4));
            let all: Vec<_> = (0..4)
                .map(|_| {
                    let (root, rel, gate) = (root.clone(), rel.clone(), gate.clone());
                    std::thread::spawn(move || {
                        gate.wait();
                        open_in_root(&root, &rel, Some(Kind::File)).map(drop)
                    })
                })
                .collect();
            for h in all {
                assert_eq!(h.join().unwrap(), Ok(()), "round {round}");
            }
        }
        // Still refused when what is there is a symlink.
        symlink("/etc/hostname", root.join("etc/swapped")).unwrap();
        assert!(open_in_root(&root, Path::new("etc/swapped"), Some(Kind::File)).is_err());
    }
}
