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
//! The tar is ustar with pax extended headers where ustar falls short (long names, large files
//! or ids, extended attributes), entries named without "./" as Docker names them; hard links
//! within the tree are written once and linked after.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

use burrow_core::runtime::error::{Result, RuntimeError, SysCtx};
use burrow_core::runtime::state::proc_start_time;
use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode};

use super::flags;
use crate::args::Flag;

const OPEN_TREE_CLONE: libc::c_uint = 1;
const BLOCK: usize = 512;

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

/// The tar stream: headers, pax records, content and padding.
struct Tar<W: Write> {
    out: W,
    /// (dev, ino) of files with several links → the name written first.
    links: HashMap<(u64, u64), Vec<u8>>,
    warned_socket: bool,
}

fn octal(field: &mut [u8], v: u64) {
    let s = format!("{:0width$o}", v, width = field.len() - 1);
    field[..s.len()].copy_from_slice(s.as_bytes());
}

/// One pax record: "LEN key=value\n", where LEN counts itself.
fn pax_record(buf: &mut Vec<u8>, key: &str, value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len.to_string().len() + body != len {
        len = len.to_string().len() + body;
    }
    buf.extend_from_slice(len.to_string().as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(key.as_bytes());
    buf.push(b'=');
    buf.extend_from_slice(value);
    buf.push(b'\n');
}

/// One ustar header block's fields.
struct Block<'a> {
    name: &'a [u8],
    kind: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: i64,
    link: &'a [u8],
    dev: (u64, u64),
}

struct Header<'a> {
    name: &'a [u8],
    kind: u8,
    st: &'a FileStat,
    size: u64,
    link: &'a [u8],
    xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

impl<W: Write> Tar<W> {
    fn block(&mut self, b: &Block) -> std::io::Result<()> {
        let Block { name, kind, mode, uid, gid, size, mtime, link, dev } = *b;
        let mut h = [0u8; BLOCK];
        let n = name.len().min(100);
        h[..n].copy_from_slice(&name[..n]);
        octal(&mut h[100..108], u64::from(mode & 0o7777));
        octal(&mut h[108..116], uid.min(0o7777777));
        octal(&mut h[116..124], gid.min(0o7777777));
        octal(&mut h[124..136], size.min(0o77777777777));
        octal(&mut h[136..148], mtime.max(0) as u64);
        h[148..156].fill(b' ');
        h[156] = kind;
        let l = link.len().min(100);
        h[157..157 + l].copy_from_slice(&link[..l]);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        if kind == b'3' || kind == b'4' {
            octal(&mut h[329..337], dev.0);
            octal(&mut h[337..345], dev.1);
        }
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        self.out.write_all(&h)
    }

    fn pad(&mut self, size: u64) -> std::io::Result<()> {
        let rest = (BLOCK - (size % BLOCK as u64) as usize) % BLOCK;
        self.out.write_all(&[0u8; BLOCK][..rest])
    }

    /// Writes a header, preceded by a pax header for what ustar cannot hold.
    fn header(&mut self, h: &Header) -> std::io::Result<()> {
        let (uid, gid) = (u64::from(h.st.st_uid), u64::from(h.st.st_gid));
        let mut pax = Vec::new();
        if h.name.len() > 100 {
            pax_record(&mut pax, "path", h.name);
        }
        if h.link.len() > 100 {
            pax_record(&mut pax, "linkpath", h.link);
        }
        if h.size > 0o77777777777 {
            pax_record(&mut pax, "size", h.size.to_string().as_bytes());
        }
        if uid > 0o7777777 {
            pax_record(&mut pax, "uid", uid.to_string().as_bytes());
        }
        if gid > 0o7777777 {
            pax_record(&mut pax, "gid", gid.to_string().as_bytes());
        }
        for (k, v) in h.xattrs {
            pax_record(&mut pax, &format!("SCHILY.xattr.{}", String::from_utf8_lossy(k)), v);
        }
        if !pax.is_empty() {
            let base = h.name.rsplit(|&c| c == b'/').find(|s| !s.is_empty()).unwrap_or(b"entry");
            let mut pname = b"PaxHeaders/".to_vec();
            pname.extend_from_slice(base);
            self.block(&Block { name: &pname, kind: b'x', mode: 0o644, uid: 0, gid: 0, size: pax.len() as u64, mtime: h.st.st_mtime, link: b"", dev: (0, 0) })?;
            self.out.write_all(&pax)?;
            self.pad(pax.len() as u64)?;
        }
        let dev = (libc::major(h.st.st_rdev) as u64, libc::minor(h.st.st_rdev) as u64);
        self.block(&Block { name: h.name, kind: h.kind, mode: h.st.st_mode, uid, gid, size: h.size, mtime: h.st.st_mtime, link: h.link, dev })
    }
}

/// Extended attributes of an open file, except the kernel's own (system.*: ACLs).
fn xattrs(fd: RawFd) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut names = vec![0u8; 4096];
    // SAFETY: valid fd and buffer pointer/length.
    let n = unsafe { libc::flistxattr(fd, names.as_mut_ptr() as *mut libc::c_char, names.len()) };
    if n <= 0 {
        return out;
    }
    names.truncate(n as usize);
    for name in names.split(|&c| c == 0).filter(|s| !s.is_empty() && !s.starts_with(b"system.")) {
        let Ok(c) = CString::new(name) else { continue };
        let mut value = vec![0u8; 65536];
        // SAFETY: valid fd, NUL-terminated name, buffer pointer/length.
        let len = unsafe { libc::fgetxattr(fd, c.as_ptr(), value.as_mut_ptr() as *mut libc::c_void, value.len()) };
        if len >= 0 {
            value.truncate(len as usize);
            out.push((name.to_vec(), value));
        }
    }
    out
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
            t.header(&Header { name: &name, kind: b'5', st: &st, size: 0, link: b"", xattrs: &xa }).map_err(io)?;
            walk(t, fd.as_raw_fd(), &name)?;
        }
        libc::S_IFREG => {
            if st.st_nlink > 1 {
                if let Some(first) = t.links.get(&(st.st_dev, st.st_ino)).cloned() {
                    return t.header(&Header { name: &name, kind: b'1', st: &st, size: 0, link: &first, xattrs: none }).map_err(io);
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
            t.header(&Header { name: &name, kind: b'0', st: &st, size, link: b"", xattrs: &xa }).map_err(io)?;
            let mut f = File::from(fd).take(size);
            let copied = std::io::copy(&mut f, &mut t.out).map_err(|e| {
                // Either side may fail; a closed reader of the archive is the usual one.
                let errno = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
                RuntimeError::Sys { op: if errno == Errno::EPIPE { "write the archive".into() } else { format!("read {path}") }, errno }
            })?;
            if copied < size {
                crate::log::warn(&format!("{path} shrank while it was exported: padded with zeros"));
                let mut left = size - copied;
                while left > 0 {
                    let k = left.min(BLOCK as u64) as usize;
                    t.out.write_all(&[0u8; BLOCK][..k]).map_err(io)?;
                    left -= k as u64;
                }
            }
            t.pad(size).map_err(io)?;
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
            t.header(&Header { name: &name, kind: b'2', st: &st, size: 0, link: target.as_bytes(), xattrs: none }).map_err(io)?;
        }
        libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO => {
            let k = match kind {
                libc::S_IFCHR => b'3',
                libc::S_IFBLK => b'4',
                _ => b'6',
            };
            t.header(&Header { name: &name, kind: k, st: &st, size: 0, link: b"", xattrs: none }).map_err(io)?;
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
    // SAFETY: plain prctl. Non-dumpable: nothing in the container may ptrace us once we join.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
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
    let mut t = Tar { out: BufWriter::with_capacity(1 << 20, &*stdout), links: HashMap::new(), warned_socket: false };
    walk(&mut t, dir.as_raw_fd(), b"")?;
    let io = |e: std::io::Error| RuntimeError::Sys { op: "write the archive".into(), errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)) };
    t.out.write_all(&[0u8; 2 * BLOCK]).map_err(io)?;
    t.out.flush().map_err(io)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        let mut b = Vec::new();
        pax_record(&mut b, "path", b"a");
        assert_eq!(b, b"9 path=a\n");
        // 9 bytes and a one-digit length would be 10, which has two digits: it settles at 11.
        let mut b = Vec::new();
        pax_record(&mut b, "path", b"ab");
        assert_eq!(b, b"11 path=ab\n");
        let long = vec![b'x'; 200];
        let mut b = Vec::new();
        pax_record(&mut b, "path", &long);
        let len: usize = std::str::from_utf8(&b[..b.iter().position(|&c| c == b' ').unwrap()]).unwrap().parse().unwrap();
        assert_eq!(len, b.len());
    }

    #[test]
    fn header_checksum_and_fields() {
        let mut t = Tar { out: Vec::new(), links: HashMap::new(), warned_socket: false };
        t.block(&Block { name: b"etc/passwd", kind: b'0', mode: 0o100644, uid: 0, gid: 33, size: 30, mtime: 1_700_000_000, link: b"", dev: (0, 0) }).unwrap();
        let h = &t.out;
        assert_eq!(h.len(), BLOCK);
        assert_eq!(&h[..10], b"etc/passwd");
        assert_eq!(&h[100..108], b"0000644\0");
        assert_eq!(&h[116..124], b"0000041\0");
        assert_eq!(&h[124..136], b"00000000036\0");
        assert_eq!(&h[257..265], b"ustar\x0000");
        let stored = u32::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        let sum: u32 = h.iter().enumerate().map(|(i, &c)| if (148..156).contains(&i) { u32::from(b' ') } else { u32::from(c) }).sum();
        assert_eq!(stored, sum);
    }
}
