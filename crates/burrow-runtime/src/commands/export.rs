//! `export --pid PID [--start-time T]`: writes the root filesystem of the container whose init
//! is PID to stdout as a flat tar (what `docker export` writes): the image's layers and the
//! container's changes merged as the container sees them, and nothing mounted over them.
//!
//! It joins the container's user namespace, so that owners are the container's (0, not the
//! user's subordinate id) and every file is readable by the container's root, then its mount
//! namespace, where it takes a non-recursive clone of the root mount with open_tree(2): the clone
//! carries the overlay (whiteouts already applied by the kernel) but none of the mounts on top of
//! it, so /proc, /sys, /dev, the /etc files and volumes are their bare mount points, as Docker
//! exports them. The walk goes through directory fds with O_NOFOLLOW; the process is
//! non-dumpable before it joins, as `cp` is.
//!
//! The tar is written as burrow writes every archive (burrow_core::image::tarw: ustar, pax where
//! ustar falls short, names without "./"); hard links within the tree are written once and
//! linked after.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

use burrow_core::image::tarw::{self, EntryType, Meta, Promised};
use burrow_core::runtime::error::{Result, RuntimeError, SysCtx};
use burrow_core::runtime::state::proc_start_time;
use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode};

use super::flags;
use crate::args::Flag;

const OPEN_TREE_CLONE: libc::c_uint = 1;

fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: fd was just returned by a successful open and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Opens the namespace `ns` of PID, or None when it is already ours.
fn ns_file(pid: i32, ns: &str) -> Result<Option<File>> {
    let theirs = format!("/proc/{pid}/ns/{ns}");
    let (Ok(a), Ok(b)) = (std::fs::metadata(&theirs), std::fs::metadata(format!("/proc/self/ns/{ns}"))) else {
        return Err(RuntimeError::Usage(format!("the container's init (pid {pid}) is gone")));
    };
    if a.ino() == b.ino() {
        return Ok(None);
    }
    File::open(&theirs).map(Some).op(format!("open {theirs}"))
}

/// A detached copy of the root mount alone (no submounts): what the overlay shows.
fn clone_root() -> Result<OwnedFd> {
    // SAFETY: plain syscall with a NUL-terminated path; the result is a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c"/".as_ptr(), OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint) };
    if fd < 0 {
        let e = Errno::last();
        return Err(if e == Errno::ENOSYS {
            RuntimeError::Usage("export needs open_tree(2) (Linux 5.2 or later)".into())
        } else {
            RuntimeError::Sys { op: "clone the container's root mount".into(), errno: e }
        });
    }
    Ok(own(fd as RawFd))
}

/// The tar stream, and what the walk remembers.
struct Tar<W: Write> {
    out: tar::Builder<W>,
    /// (dev, ino) of files with several links → the name written first.
    links: HashMap<(u64, u64), Vec<u8>>,
    warned_socket: bool,
}

struct Header<'a> {
    name: &'a [u8],
    kind: EntryType,
    st: &'a FileStat,
    size: u64,
    link: &'a [u8],
    xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

impl<W: Write> Tar<W> {
    /// Writes a header (pax where ustar falls short, burrow_core::image::tarw), then `data`.
    fn header(&mut self, h: &Header, data: impl Read) -> std::io::Result<()> {
        let dev = (libc::major(h.st.st_rdev) as u64, libc::minor(h.st.st_rdev) as u64);
        let m = Meta {
            name: h.name,
            kind: h.kind,
            mode: h.st.st_mode,
            uid: u64::from(h.st.st_uid),
            gid: u64::from(h.st.st_gid),
            size: h.size,
            mtime: h.st.st_mtime,
            link: h.link,
            dev,
            xattrs: h.xattrs,
        };
        tarw::append(&mut self.out, &m, data)
    }
}

/// Extended attributes of an open file, except the kernel's own (system.*: ACLs).
fn xattrs(fd: RawFd) -> Vec<(Vec<u8>, Vec<u8>)> {
    tarw::xattrs(fd, |_| false)
}

fn names_of(dir: RawFd, shown: &str) -> Result<Vec<CString>> {
    let dup = nix::unistd::dup(dir).op("dup")?;
    let mut list = nix::dir::Dir::from_fd(dup).op(format!("read {shown}"))?;
    let mut names = Vec::new();
    for e in list.iter() {
        let e = e.op(format!("read {shown}"))?;
        let n = e.file_name();
        if n.to_bytes() != b"." && n.to_bytes() != b".." {
            names.push(n.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Writes the entries of directory `dir` (named `prefix` in the tar, "" for the root).
fn walk<W: Write>(t: &mut Tar<W>, dir: RawFd, prefix: &[u8]) -> Result<()> {
    let shown = if prefix.is_empty() { "/".to_string() } else { format!("/{}", String::from_utf8_lossy(prefix)) };
    for n in names_of(dir, &shown)? {
        let mut name = prefix.to_vec();
        name.extend_from_slice(n.to_bytes());
        let path = format!("/{}", String::from_utf8_lossy(&name));
        entry(t, dir, &n, name, &path)?;
    }
    Ok(())
}

fn entry<W: Write>(t: &mut Tar<W>, dir: RawFd, n: &CStr, mut name: Vec<u8>, path: &str) -> Result<()> {
    let io = |e: std::io::Error| RuntimeError::Sys { op: "write the archive".into(), errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)) };
    let st = match fstatat(Some(dir), n, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(()), // removed meanwhile (a running container)
        Err(e) => return Err(e).op(format!("stat {path}")),
    };
    let kind = st.st_mode & libc::S_IFMT;
    let none: &[(Vec<u8>, Vec<u8>)] = &[];
    match kind {
        libc::S_IFDIR => {
            let fd = match openat(Some(dir), n, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty()) {
                Ok(fd) => own(fd),
                Err(Errno::ENOENT) => return Ok(()),
                Err(e) => return Err(e).op(format!("open {path}")),
            };
            name.push(b'/');
            let xa = xattrs(fd.as_raw_fd());
            t.header(&Header { name: &name, kind: EntryType::Directory, st: &st, size: 0, link: b"", xattrs: &xa }, std::io::empty()).map_err(io)?;
            walk(t, fd.as_raw_fd(), &name)?;
        }
        libc::S_IFREG => {
            if st.st_nlink > 1 {
                if let Some(first) = t.links.get(&(st.st_dev, st.st_ino)).cloned() {
                    return t
                        .header(&Header { name: &name, kind: EntryType::Link, st: &st, size: 0, link: &first, xattrs: none }, std::io::empty())
                        .map_err(io);
                }
            }
            let fd = match openat(Some(dir), n, OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty()) {
                Ok(fd) => own(fd),
                Err(Errno::ENOENT) => return Ok(()),
                Err(e) => return Err(e).op(format!("open {path}")),
            };
            // The size the header promises is the open file's; a running container may change
            // the file meanwhile: what is read is cut or padded to it, and said.
            let st = fstat(fd.as_raw_fd()).op(format!("stat {path}"))?;
            let size = st.st_size.max(0) as u64;
            let xa = xattrs(fd.as_raw_fd());
            let mut content = Promised::new(File::from(fd), size);
            t.header(&Header { name: &name, kind: EntryType::Regular, st: &st, size, link: b"", xattrs: &xa }, &mut content).map_err(|e| {
                // Either side may fail; a closed reader of the archive is the usual one.
                let errno = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
                RuntimeError::Sys { op: if errno == Errno::EPIPE { "write the archive".into() } else { format!("read {path}") }, errno }
            })?;
            if content.short > 0 {
                crate::log::warn(&format!("{path} shrank while it was exported: padded with zeros"));
            }
            if st.st_nlink > 1 {
                t.links.insert((st.st_dev, st.st_ino), name);
            }
        }
        libc::S_IFLNK => {
            let target = match readlinkat(Some(dir), n) {
                Ok(t) => t,
                Err(Errno::ENOENT) => return Ok(()),
                Err(e) => return Err(e).op(format!("readlink {path}")),
            };
            t.header(&Header { name: &name, kind: EntryType::Symlink, st: &st, size: 0, link: target.as_bytes(), xattrs: none }, std::io::empty())
                .map_err(io)?;
        }
        libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO => {
            let k = match kind {
                libc::S_IFCHR => EntryType::Char,
                libc::S_IFBLK => EntryType::Block,
                _ => EntryType::Fifo,
            };
            t.header(&Header { name: &name, kind: k, st: &st, size: 0, link: b"", xattrs: none }, std::io::empty()).map_err(io)?;
        }
        _ => {
            // Sockets have no tar form (GNU tar and Docker skip them too).
            if !t.warned_socket {
                crate::log::warn(&format!("{path}: sockets are not exported"));
                t.warned_socket = true;
            }
        }
    }
    Ok(())
}

pub fn main(args: &[String]) -> Result<i32> {
    let p = flags(args, &[Flag("pid", &[], true), Flag("start-time", &[], true)])?;
    let pid: i32 = p.value("pid").and_then(|v| v.parse().ok()).ok_or_else(|| RuntimeError::Usage("export: --pid PID is required".into()))?;
    // Non-dumpable: nothing in the container may ptrace us once we join.
    let _ = nix::sys::prctl::set_dumpable(false);
    if let Some(f) = ns_file(pid, "user")? {
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWUSER).op("setns into the container's user namespace")?;
    }
    // Held before the pid is checked, and the check made while /proc is still the host's: the
    // namespace joined is the one of the process checked.
    let mnt = ns_file(pid, "mnt")?;
    if let Some(t) = p.value("start-time").and_then(|v| v.parse::<u64>().ok()) {
        if proc_start_time(pid) != Some(t) {
            return Err(RuntimeError::Usage("export: the container stopped".into()));
        }
    }
    if let Some(f) = mnt {
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNS).op("setns into the container's mount namespace")?;
    }
    let root = clone_root()?;
    let dir = own(openat(Some(root.as_raw_fd()), ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).op("open the container's root")?);
    // SAFETY: fd 1 is ours for the life of the process; ManuallyDrop keeps it open after.
    let stdout = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(1) });
    let mut t = Tar { out: tar::Builder::new(BufWriter::with_capacity(1 << 20, &*stdout)), links: HashMap::new(), warned_socket: false };
    walk(&mut t, dir.as_raw_fd(), b"")?;
    let io = |e: std::io::Error| RuntimeError::Sys { op: "write the archive".into(), errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)) };
    // The two zero blocks that end an archive, then what the buffer holds.
    t.out.into_inner().map_err(io)?.flush().map_err(io)?;
    Ok(0)
}
