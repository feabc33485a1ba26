//! `cp --pid PID [--start-time T] (--in | --out) [--archive] [--follow-link] SRC DEST`: copies
//! between the host and the container whose init is PID, with `docker cp`'s rules (a trailing
//! "/" means a directory that must exist, "/." copies a directory's contents).
//!
//! It joins the container's user namespace first: as the container's root it can read and write
//! files owned by any of the container's ids (subordinate ids on the host), which the user
//! cannot do from the host. It does not join the mount namespace, so host paths keep their host
//! meaning; container paths are resolved under /proc/PID/root with openat2(RESOLVE_IN_ROOT), so
//! the container's symlinks (absolute or "..") stay inside it. Below the starting points every
//! step goes through directory fds with O_NOFOLLOW: a symlink swapped in meanwhile is copied as a
//! symlink, never followed. The process is non-dumpable before it joins, so the container's root
//! cannot ptrace it to reach the host through it.
//!
//! Ownership as Docker has it: files copied in belong to the container's root, files copied out
//! to the user; --archive keeps the source's ids (as the container's namespace sees them).
//!
//! `cp --pid PID [--start-time T] --out --tar SRC -` writes SRC as a tar to stdout instead (the
//! Engine API's archive GET, `docker cp` out), named by its last component ("." for the root),
//! with the owners as the container sees them, as Docker writes them.
//!
//! `cp --pid PID [--start-time T] --stat PATH` only reports what PATH is (the Engine API's
//! archive HEAD and its stat header), as one JSON line.

use std::ffi::{CStr, CString, OsStr};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

use burrow_core::runtime::error::{Result, RuntimeError, SysCtx};
use burrow_core::runtime::state::proc_start_time;
use nix::errno::Errno;
use nix::fcntl::{openat, openat2, readlinkat, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fchmod, fstatat, futimens, mkdirat, mknodat, utimensat, FileStat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

use super::flags;
use crate::args::Flag;

/// Where a path is looked up: the host as it is, or the container's root.
enum Side {
    Host,
    Container(OwnedFd),
}

struct Opts {
    archive: bool,
    bytes: u64,
}

fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: fd was just returned by a successful open and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn cstr(s: &OsStr) -> CString {
    CString::new(s.as_bytes()).unwrap_or_default()
}

/// Splits "/a/b/c" into ("/a/b", "c"); "/" into ("/", "."). Trailing slashes are ignored.
fn split(path: &str) -> (String, String) {
    let t = path.trim_end_matches('/');
    if t.is_empty() {
        return ("/".into(), ".".into());
    }
    match t.rfind('/') {
        Some(0) => ("/".into(), t[1..].into()),
        Some(i) => (t[..i].into(), t[i + 1..].into()),
        None => (".".into(), t.into()),
    }
}

impl Side {
    /// Opens a directory (following symlinks, inside the root for the container).
    fn open(&self, path: &str, flags: OFlag) -> std::result::Result<OwnedFd, Errno> {
        match self {
            Side::Host => openat(None, path, flags | OFlag::O_CLOEXEC, Mode::empty()).map(own),
            Side::Container(root) => {
                let how = OpenHow::new().flags(flags | OFlag::O_CLOEXEC).resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
                let rel = path.trim_start_matches('/');
                openat2(root.as_raw_fd(), if rel.is_empty() { "." } else { rel }, how).map(own)
            }
        }
    }

    fn describe(&self, path: &str) -> String {
        match self {
            Side::Host => path.to_string(),
            Side::Container(_) => format!("{path} (in the container)"),
        }
    }
}

/// A path that cannot be reached: EPATH_NOT_FOUND when it does not exist, with its code on the
/// status channel (the archive endpoints answer 404 with it).
fn not_found(side: &Side, path: &str, e: Errno) -> RuntimeError {
    let msg = format!("{}: {}", side.describe(path), e.desc());
    match e {
        Errno::ENOENT | Errno::ENOTDIR => RuntimeError::PathNotFound(msg),
        _ => RuntimeError::Usage(msg),
    }
}

/// Copies `sname` in `sdir` to `dname` in `ddir`, recursively, never following a symlink.
fn copy(sdir: RawFd, sname: &CStr, ddir: RawFd, dname: &CStr, o: &mut Opts, shown: &str) -> Result<()> {
    let st = fstatat(Some(sdir), sname, AtFlags::AT_SYMLINK_NOFOLLOW).op(format!("stat {shown}"))?;
    let kind = SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT);
    let perm = Mode::from_bits_truncate(st.st_mode & 0o7777);
    if kind == SFlag::S_IFDIR {
        match mkdirat(Some(ddir), dname, Mode::from_bits_truncate(0o700)) {
            Ok(()) => {}
            Err(Errno::EEXIST) => {
                let d = fstatat(Some(ddir), dname, AtFlags::AT_SYMLINK_NOFOLLOW).op(format!("stat {shown}"))?;
                if d.st_mode & libc::S_IFMT != libc::S_IFDIR {
                    // A file or symlink where the directory goes is replaced, as tar does.
                    unlinkat(Some(ddir), dname, UnlinkatFlags::NoRemoveDir).op(format!("replace {shown}"))?;
                    mkdirat(Some(ddir), dname, Mode::from_bits_truncate(0o700)).op(format!("mkdir {shown}"))?;
                }
            }
            Err(e) => return Err(e).op(format!("mkdir {shown}")),
        }
        let dirflags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let s = own(openat(Some(sdir), sname, dirflags, Mode::empty()).op(format!("open {shown}"))?);
        let d = own(openat(Some(ddir), dname, dirflags, Mode::empty()).op(format!("open {shown}"))?);
        let mut names = Vec::new();
        {
            let dup = nix::unistd::dup(s.as_raw_fd()).op("dup")?;
            let mut list = nix::dir::Dir::from_fd(dup).op(format!("read {shown}"))?;
            for e in list.iter() {
                let e = e.op(format!("read {shown}"))?;
                let n = e.file_name();
                if n.to_bytes() != b"." && n.to_bytes() != b".." {
                    names.push(n.to_owned());
                }
            }
        }
        for n in names {
            let child = format!("{}/{}", shown.trim_end_matches('/'), n.to_string_lossy());
            copy(s.as_raw_fd(), &n, d.as_raw_fd(), &n, o, &child)?;
        }
        finish(d.as_raw_fd(), &st, perm, o)?;
    } else if kind == SFlag::S_IFREG {
        let s = own(openat(Some(sdir), sname, OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty()).op(format!("open {shown}"))?);
        let wflags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let d = match openat(Some(ddir), dname, wflags, Mode::from_bits_truncate(0o600)) {
            Ok(fd) => own(fd),
            // A symlink (ELOOP) or a special file in the way: replace it.
            Err(Errno::ELOOP) | Err(Errno::ENXIO) | Err(Errno::ETXTBSY) => {
                unlinkat(Some(ddir), dname, UnlinkatFlags::NoRemoveDir).op(format!("replace {shown}"))?;
                own(openat(Some(ddir), dname, wflags | OFlag::O_EXCL, Mode::from_bits_truncate(0o600)).op(format!("create {shown}"))?)
            }
            Err(e) => return Err(e).op(format!("create {shown}")),
        };
        let mut from = std::fs::File::from(s);
        let mut to = std::fs::File::from(d);
        o.bytes += std::io::copy(&mut from, &mut to).op(format!("copy {shown}"))?;
        finish(to.as_raw_fd(), &st, perm, o)?;
    } else if kind == SFlag::S_IFLNK {
        let target = readlinkat(Some(sdir), sname).op(format!("readlink {shown}"))?;
        match symlinkat(target.as_os_str(), Some(ddir), dname) {
            Ok(()) => {}
            Err(Errno::EEXIST) => {
                unlinkat(Some(ddir), dname, UnlinkatFlags::NoRemoveDir).op(format!("replace {shown}"))?;
                symlinkat(target.as_os_str(), Some(ddir), dname).op(format!("symlink {shown}"))?;
            }
            Err(e) => return Err(e).op(format!("symlink {shown}")),
        }
        if o.archive {
            fchownat(Some(ddir), dname, Some(Uid::from_raw(st.st_uid)), Some(Gid::from_raw(st.st_gid)), AtFlags::AT_SYMLINK_NOFOLLOW)
                .op(format!("chown {shown}"))?;
        }
        let (a, m) = times(&st);
        let _ = utimensat(Some(ddir), dname, &a, &m, UtimensatFlags::NoFollowSymlink);
    } else {
        // Fifos and sockets can be made anywhere; devices only with privileges we lack.
        let _ = unlinkat(Some(ddir), dname, UnlinkatFlags::NoRemoveDir);
        if let Err(e) = mknodat(Some(ddir), dname, kind, perm, st.st_rdev) {
            crate::log::warn(&format!("skipping {shown}: cannot create this special file here ({e})"));
            return Ok(());
        }
        if o.archive {
            let _ = fchownat(Some(ddir), dname, Some(Uid::from_raw(st.st_uid)), Some(Gid::from_raw(st.st_gid)), AtFlags::AT_SYMLINK_NOFOLLOW);
        }
    }
    Ok(())
}

fn times(st: &FileStat) -> (TimeSpec, TimeSpec) {
    (TimeSpec::new(st.st_atime, st.st_atime_nsec), TimeSpec::new(st.st_mtime, st.st_mtime_nsec))
}

/// Owner (with --archive), exact mode (no umask; chown clears set-id bits, so it goes first) and
/// times of a copied file or directory.
fn finish(fd: RawFd, st: &FileStat, perm: Mode, o: &Opts) -> Result<()> {
    if o.archive {
        fchown(fd, Some(Uid::from_raw(st.st_uid)), Some(Gid::from_raw(st.st_gid))).op("chown")?;
    }
    fchmod(fd, perm).op("chmod")?;
    let (a, m) = times(st);
    let _ = futimens(fd, &a, &m);
    Ok(())
}

/// Follows symlinks in the last component of a container path (`-L`), inside the root.
fn follow(side: &Side, path: &str) -> Result<String> {
    let mut p = path.to_string();
    for _ in 0..40 {
        let (parent, name) = split(&p);
        let dir = side.open(&parent, OFlag::O_PATH | OFlag::O_DIRECTORY).map_err(|e| not_found(side, &p, e))?;
        let st = fstatat(Some(dir.as_raw_fd()), name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| not_found(side, &p, e))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFLNK {
            return Ok(p);
        }
        let t = readlinkat(Some(dir.as_raw_fd()), name.as_str()).op(format!("readlink {p}"))?;
        let t = t.to_string_lossy();
        p = if t.starts_with('/') { t.into_owned() } else { format!("{}/{t}", parent.trim_end_matches('/')) };
    }
    Err(RuntimeError::Usage(format!("{}: too many levels of symbolic links", side.describe(path))))
}

fn join_userns(pid: i32) -> Result<()> {
    let theirs = format!("/proc/{pid}/ns/user");
    let (Ok(a), Ok(b)) = (std::fs::metadata(&theirs), std::fs::metadata("/proc/self/ns/user")) else {
        return Err(RuntimeError::Usage(format!("the container's init (pid {pid}) is gone")));
    };
    if a.ino() == b.ino() {
        return Ok(());
    }
    let f = std::fs::File::open(&theirs).op(format!("open {theirs}"))?;
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWUSER).op("setns into the container's user namespace")
}

/// Joins the container of `pid` (its user namespace, non-dumpable) and opens its root, checking
/// that the pid is still that container's init once the root is held.
fn enter(pid: i32, start_time: Option<&str>) -> Result<OwnedFd> {
    // SAFETY: plain prctl. Non-dumpable: nothing in the container may ptrace us once we join.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    join_userns(pid)?;
    let root = openat(None, format!("/proc/{pid}/root").as_str(), OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .op("open the container's root")?;
    let root = own(root);
    if let Some(t) = start_time.and_then(|v| v.parse::<u64>().ok()) {
        if proc_start_time(pid) != Some(t) {
            return Err(RuntimeError::Usage("cp: the container stopped".into()));
        }
    }
    Ok(root)
}

/// `--stat PATH`: what Docker's archive HEAD reports of a path in the container, without copying
/// it: one JSON line {name, size, mode (st_mode), mtime (seconds), mtimeNsec, linkTarget}. The
/// parent is resolved inside the root; the last component is not followed.
fn stat_main(pid: i32, start_time: Option<&str>, path: &str) -> Result<i32> {
    let side = Side::Container(enter(pid, start_time)?);
    let (parent, name) = split(path);
    let dir = side.open(&parent, OFlag::O_PATH | OFlag::O_DIRECTORY).map_err(|e| not_found(&side, path, e))?;
    let st = fstatat(Some(dir.as_raw_fd()), name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| not_found(&side, path, e))?;
    let link = if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        readlinkat(Some(dir.as_raw_fd()), name.as_str()).map(|t| t.to_string_lossy().into_owned()).unwrap_or_default()
    } else {
        String::new()
    };
    let shown = if name == "." { "/".to_string() } else { name };
    let j =
        serde_json::json!({ "name": shown, "size": st.st_size, "mode": st.st_mode, "mtime": st.st_mtime, "mtimeNsec": st.st_mtime_nsec, "linkTarget": link });
    let _ = writeln!(std::io::stdout(), "{j}");
    Ok(0)
}

pub fn main(args: &[String]) -> Result<i32> {
    let p = flags(
        args,
        &[
            Flag("pid", &[], true),
            Flag("start-time", &[], true),
            Flag("in", &[], false),
            Flag("out", &[], false),
            Flag("archive", &["a"], false),
            Flag("follow-link", &["L"], false),
            Flag("stat", &[], false),
            Flag("tar", &[], false),
        ],
    )?;
    let pid: i32 = p.value("pid").and_then(|v| v.parse().ok()).ok_or_else(|| RuntimeError::Usage("cp: --pid PID is required".into()))?;
    if p.bool("stat") {
        let [path] = p.positional.as_slice() else {
            return Err(RuntimeError::Usage("cp --stat: want one PATH".into()));
        };
        return stat_main(pid, p.value("start-time"), path);
    }
    let [src, dest] = p.positional.as_slice() else {
        return Err(RuntimeError::Usage("cp: want SRC and DEST".into()));
    };
    let into = match (p.bool("in"), p.bool("out")) {
        (true, false) => true,
        (false, true) => false,
        _ => return Err(RuntimeError::Usage("cp: give one of --in and --out".into())),
    };
    let root = enter(pid, p.value("start-time"))?;
    let (ss, ds) = if into { (Side::Host, Side::Container(root)) } else { (Side::Container(root), Side::Host) };
    let mut o = Opts { archive: p.bool("archive"), bytes: 0 };

    // The source.
    let contents_only = src.ends_with("/.");
    let mut src_path = if contents_only { src[..src.len() - 2].to_string() } else { src.clone() };
    if src_path.is_empty() {
        src_path = "/".into();
    }
    if p.bool("follow-link") {
        src_path = match &ss {
            Side::Host => std::fs::canonicalize(&src_path).map_err(|e| RuntimeError::Usage(format!("{src_path}: {e}")))?.to_string_lossy().into_owned(),
            Side::Container(_) => follow(&ss, &src_path)?,
        };
    }
    let (sparent, sname) = split(&src_path);
    let sdir = ss.open(&sparent, OFlag::O_PATH | OFlag::O_DIRECTORY).map_err(|e| not_found(&ss, &src_path, e))?;
    let sst = fstatat(Some(sdir.as_raw_fd()), sname.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| not_found(&ss, &src_path, e))?;
    let src_is_dir = sst.st_mode & libc::S_IFMT == libc::S_IFDIR;
    if (contents_only || src.ends_with('/')) && !src_is_dir {
        return Err(RuntimeError::Usage(format!("{}: not a directory", ss.describe(src))));
    }
    let base = if sname == "." { String::new() } else { sname.clone() };
    if p.bool("tar") {
        if into || dest != "-" {
            return Err(RuntimeError::Usage("cp --tar: only --out, to - (stdout)".into()));
        }
        let name = if base.is_empty() { "." } else { base.as_str() };
        super::export::tar_to_stdout(sdir.as_raw_fd(), &cstr(OsStr::new(&sname)), name.as_bytes(), &src_path)?;
        return Ok(0);
    }

    // The destination: an existing directory (symlinks followed, inside the root), an existing
    // file, or a new name in an existing directory.
    let dest_dir = ds.open(dest, OFlag::O_PATH | OFlag::O_DIRECTORY);
    let sname_c = cstr(OsStr::new(&sname));
    match dest_dir {
        Ok(d) => {
            if src_is_dir && (contents_only || base.is_empty()) {
                // Merge the directory's entries into the destination.
                let s = own(openat(
                    Some(sdir.as_raw_fd()),
                    sname_c.as_c_str(),
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .op(format!("open {src}"))?);
                let mut list = nix::dir::Dir::from_fd(nix::unistd::dup(s.as_raw_fd()).op("dup")?).op(format!("read {src}"))?;
                let names: Vec<CString> =
                    list.iter().filter_map(|e| e.ok()).map(|e| e.file_name().to_owned()).filter(|n| n.to_bytes() != b"." && n.to_bytes() != b"..").collect();
                for n in names {
                    copy(s.as_raw_fd(), &n, d.as_raw_fd(), &n, &mut o, &format!("{}/{}", src_path.trim_end_matches('/'), n.to_string_lossy()))?;
                }
            } else {
                copy(sdir.as_raw_fd(), &sname_c, d.as_raw_fd(), &sname_c, &mut o, &src_path)?;
            }
        }
        Err(Errno::ENOTDIR) if !dest.ends_with('/') => {
            if src_is_dir {
                return Err(RuntimeError::Usage(format!("cannot copy a directory to a file: {}", ds.describe(dest))));
            }
            let (dparent, dname) = split(dest);
            let dp = ds.open(&dparent, OFlag::O_PATH | OFlag::O_DIRECTORY).map_err(|e| not_found(&ds, &dparent, e))?;
            copy(sdir.as_raw_fd(), &sname_c, dp.as_raw_fd(), &cstr(OsStr::new(&dname)), &mut o, &src_path)?;
        }
        Err(Errno::ENOENT) if !dest.ends_with('/') => {
            let (dparent, dname) = split(dest);
            let dp = ds.open(&dparent, OFlag::O_PATH | OFlag::O_DIRECTORY).map_err(|e| not_found(&ds, &dparent, e))?;
            copy(sdir.as_raw_fd(), &sname_c, dp.as_raw_fd(), &cstr(OsStr::new(&dname)), &mut o, &src_path)?;
        }
        Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => {
            return Err(RuntimeError::PathNotFound(format!("{}: the destination directory must exist", ds.describe(dest))));
        }
        Err(e) => return Err(not_found(&ds, dest, e)),
    }
    let _ = writeln!(std::io::stdout(), "{}", serde_json::json!({ "bytes": o.bytes }));
    Ok(0)
}
