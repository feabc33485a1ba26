//! Making layers: the reverse of unpack.rs, run by `burrow-runtime unpack` (a `pack` job) inside
//! the store's user namespace, where every file is readable and owners read as the container's.
//!
//! - `pack_upper`: a container's overlay upper directory, taken as it is (no walk of the image's
//!   tree), becomes an OCI layer: a whiteout (a 0/0 character device) becomes `.wh.NAME`, an
//!   opaque directory (`trusted.overlay.opaque`, `user.overlay.opaque` or
//!   `user.fuseoverlayfs.opaque` set to "y", or a `.wh..wh..opq` file already there, as
//!   fuse-overlayfs makes them when it cannot set xattrs) gets a `DIR/.wh..wh..opq` entry right
//!   after it, and `.wh.*` files already there pass through. Overlay's own xattrs are left out.
//! - `pack_entries` (below): COPY/ADD's files under their destinations.
//!
//! Archives are deterministic: entries sorted by name within each directory, parents first,
//! their own mtimes, xattrs sorted, fixed gzip headers and fixed chunk boundaries, so that the
//! same tree packed twice gives the same bytes (and the same digest, which the build cache and
//! registries key on). gzip is made in parallel: the tar stream is cut into fixed-size chunks,
//! each compressed on a worker thread as an independent gzip member, and the members are written
//! in order (RFC 1952 allows several; every gzip reader, Go's included, reads them as one
//! stream). The diff id (sha256 of the tar) and the digest (sha256 of the file) are computed
//! while writing; the file is fsynced before the job reports.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compression, GzBuilder};
use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::tarw::{self, EntryType, Meta, Promised};
use crate::error::Coded;

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("pack: {op} {path}: {errno}")]
    Sys { op: &'static str, path: PathBuf, errno: Errno },
    #[error("pack: writing the layer {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("pack: {path} is not allowed: {why}")]
    Unsafe { path: PathBuf, why: String },
    #[error("pack: {0}")]
    Input(String),
}

impl Coded for PackError {
    fn code(&self) -> &'static str {
        match self {
            PackError::Unsafe { .. } => crate::codes::ELAYER_UNSAFE,
            _ => crate::codes::EPACK,
        }
    }
}

type Result<T> = std::result::Result<T, PackError>;

fn sys(op: &'static str, path: impl AsRef<Path>) -> impl Fn(Errno) -> PackError {
    let path = path.as_ref().to_path_buf();
    move |errno| PackError::Sys { op, path: path.clone(), errno }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compress {
    Gzip,
    None,
}

/// What a pack job reports (ts/storage/pack.ts, PackResult).
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PackStats {
    pub diff_id: String,
    pub digest: String,
    pub size: u64,
    pub entries: u64,
}

fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: fd was just returned by a successful open and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ---- output: hashing, parallel gzip, the file ----------------------------------------------

/// Tar bytes go in in chunks this large; each is one gzip member. Big enough that the members'
/// lost context costs little (well under 1% here), small enough that a layer of a few MB already
/// keeps every core busy.
const CHUNK: usize = 1 << 20;

/// The result of the writer thread: the file's size and sha256.
type Written = io::Result<(u64, [u8; 32])>;

/// Where the tar stream goes: hashed (the diff id), then either written as it is, or cut into
/// chunks compressed by worker threads and written in order by a writer thread.
pub struct Sink {
    diff: Sha256,
    path: PathBuf,
    out: Out,
}

enum Out {
    Plain { file: BufWriter<File>, size: u64 },
    Gzip { buf: Vec<u8>, seq: u64, tx: Option<SyncSender<(u64, Vec<u8>)>>, workers: Vec<JoinHandle<()>>, writer: Option<JoinHandle<Written>> },
}

impl Sink {
    /// Creates (or truncates) `path`; `threads` compress when `c` is gzip.
    pub fn create(path: &Path, c: Compress, threads: usize) -> Result<Sink> {
        let file = File::options().write(true).create(true).truncate(true).open(path).map_err(|e| PackError::Write { path: path.to_path_buf(), source: e })?;
        let out = match c {
            Compress::None => Out::Plain { file: BufWriter::with_capacity(CHUNK, file), size: 0 },
            Compress::Gzip => {
                let threads = threads.max(1);
                let (tx, rx) = sync_channel::<(u64, Vec<u8>)>(threads * 2);
                let (rtx, rrx) = sync_channel::<(u64, Vec<u8>)>(threads * 2);
                let rx = Arc::new(Mutex::new(rx));
                let workers = (0..threads)
                    .map(|_| {
                        let rx = Arc::clone(&rx);
                        let rtx = rtx.clone();
                        std::thread::spawn(move || compress_chunks(rx, rtx))
                    })
                    .collect();
                drop(rtx);
                let writer = std::thread::spawn(move || write_members(file, rrx));
                Out::Gzip { buf: Vec::with_capacity(CHUNK), seq: 0, tx: Some(tx), workers, writer: Some(writer) }
            }
        };
        Ok(Sink { diff: Sha256::new(), path: path.to_path_buf(), out })
    }

    fn send(&mut self) -> io::Result<()> {
        let Out::Gzip { buf, seq, tx, .. } = &mut self.out else { return Ok(()) };
        let chunk = std::mem::replace(buf, Vec::with_capacity(CHUNK));
        let s = *seq;
        *seq += 1;
        match tx.as_ref().map(|t| t.send((s, chunk))) {
            Some(Ok(())) => Ok(()),
            // The writer stopped (its error is what `finish` reports).
            _ => Err(io::Error::new(io::ErrorKind::BrokenPipe, "the layer writer stopped")),
        }
    }

    /// Flushes, waits for the workers and the writer, fsyncs: (diff id, digest, size).
    pub fn finish(mut self) -> Result<(String, String, u64)> {
        let werr = |e: io::Error, p: &Path| PackError::Write { path: p.to_path_buf(), source: e };
        let sent = match &self.out {
            // A stream with nothing in it still makes one (empty) member.
            Out::Gzip { buf, seq, .. } if !buf.is_empty() || *seq == 0 => self.send(),
            _ => Ok(()),
        };
        let diff = format!("sha256:{}", hex(&self.diff.finalize_reset()));
        match self.out {
            Out::Plain { file, size } => {
                let file = file.into_inner().map_err(|e| werr(e.into_error(), &self.path))?;
                file.sync_all().map_err(|e| werr(e, &self.path))?;
                Ok((diff.clone(), diff, size))
            }
            Out::Gzip { ref mut tx, ref mut workers, ref mut writer, .. } => {
                drop(tx.take());
                for w in workers.drain(..) {
                    let _ = w.join();
                }
                let r = writer.take().map(|w| w.join());
                let (size, digest) = match r {
                    Some(Ok(Ok(v))) => v,
                    Some(Ok(Err(e))) => return Err(werr(e, &self.path)),
                    _ => return Err(werr(io::Error::other("the layer writer panicked"), &self.path)),
                };
                sent.map_err(|e| werr(e, &self.path))?;
                Ok((diff, format!("sha256:{}", hex(&digest)), size))
            }
        }
    }
}

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.diff.update(data);
        if let Out::Plain { file, size } = &mut self.out {
            file.write_all(data)?;
            *size += data.len() as u64;
            return Ok(data.len());
        }
        let mut rest = data;
        while !rest.is_empty() {
            let full = match &mut self.out {
                Out::Gzip { buf, .. } => {
                    let n = (CHUNK - buf.len()).min(rest.len());
                    buf.extend_from_slice(&rest[..n]);
                    rest = &rest[n..];
                    buf.len() == CHUNK
                }
                Out::Plain { .. } => false,
            };
            if full {
                self.send()?;
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One gzip member per chunk, with a fixed header (no name, mtime 0): the bytes depend on the
/// data alone.
fn gzip_member(chunk: &[u8]) -> io::Result<Vec<u8>> {
    let mut gz = GzBuilder::new().mtime(0).write(Vec::with_capacity(chunk.len() / 2 + 64), Compression::default());
    gz.write_all(chunk)?;
    gz.finish()
}

fn compress_chunks(rx: Arc<Mutex<Receiver<(u64, Vec<u8>)>>>, out: SyncSender<(u64, Vec<u8>)>) {
    loop {
        let next = match rx.lock() {
            Ok(r) => r.recv(),
            Err(_) => return,
        };
        let Ok((seq, chunk)) = next else { return };
        // Writing to a Vec does not fail.
        let Ok(member) = gzip_member(&chunk) else { return };
        if out.send((seq, member)).is_err() {
            return;
        }
    }
}

/// Writes members in their order (workers finish out of order), hashing the file as written.
fn write_members(file: File, rx: Receiver<(u64, Vec<u8>)>) -> Written {
    let mut file = BufWriter::with_capacity(CHUNK, file);
    let mut hash = Sha256::new();
    let mut size = 0u64;
    let mut next = 0u64;
    let mut waiting = BTreeMap::new();
    for (seq, member) in rx {
        waiting.insert(seq, member);
        while let Some(m) = waiting.remove(&next) {
            hash.update(&m);
            file.write_all(&m)?;
            size += m.len() as u64;
            next += 1;
        }
    }
    if !waiting.is_empty() {
        return Err(io::Error::other("a compressed chunk is missing"));
    }
    let file = file.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok((size, hash.finalize().into()))
}

fn threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

// ---- the upper directory -------------------------------------------------------------------

/// Overlay's and fuse-overlayfs's own xattrs (markers, origins, stored owners): they describe
/// the upper directory, not the files, and mean nothing in a layer.
fn internal_xattr(name: &[u8]) -> bool {
    [&b"trusted.overlay."[..], b"user.overlay.", b"user.fuseoverlayfs.", b"security.fuseoverlayfs."].iter().any(|p| name.starts_with(p))
}

const OPQ: &[u8] = b".wh..wh..opq";

fn is_whiteout(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0
}

/// Whether the directory says it hides the layers below (any of overlay's forms).
fn opaque_xattr(fd: RawFd) -> bool {
    let mut v = [0u8; 2];
    for attr in [c"trusted.overlay.opaque", c"user.overlay.opaque", c"user.fuseoverlayfs.opaque"] {
        // SAFETY: valid descriptor, NUL-terminated name, buffer and its length.
        let n = unsafe { libc::fgetxattr(fd, attr.as_ptr(), v.as_mut_ptr() as *mut libc::c_void, v.len()) };
        if n == 1 && v[0] == b'y' {
            return true;
        }
    }
    false
}

fn names(dir: RawFd, shown: &Path) -> Result<Vec<CString>> {
    let fd = openat(Some(dir), ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys("open", shown))?;
    let mut list = nix::dir::Dir::from_fd(fd).map_err(sys("read directory", shown))?;
    let mut out = Vec::new();
    for e in list.iter() {
        let e = e.map_err(sys("read directory", shown))?;
        let n = e.file_name();
        if n.to_bytes() != b"." && n.to_bytes() != b".." {
            out.push(n.to_owned());
        }
    }
    out.sort();
    Ok(out)
}

fn dev_of(st: &FileStat) -> (u64, u64) {
    (libc::major(st.st_rdev) as u64, libc::minor(st.st_rdev) as u64)
}

struct Upper<W: Write> {
    tar: tar::Builder<W>,
    root: PathBuf,
    links: HashMap<(u64, u64), Vec<u8>>,
    entries: u64,
}

impl<W: Write> Upper<W> {
    fn put(&mut self, m: &Meta, data: impl Read) -> Result<()> {
        self.entries += 1;
        tarw::append(&mut self.tar, m, data).map_err(|e| PackError::Write { path: self.root.clone(), source: e })
    }

    /// The entries of directory `dir`, named `prefix` in the tar ("" for the root).
    fn walk(&mut self, dir: RawFd, prefix: &[u8], opaque_written: bool) -> Result<()> {
        let shown = self.root.join(OsStr::from_bytes(prefix));
        for n in names(dir, &shown)? {
            if opaque_written && n.to_bytes() == OPQ {
                continue;
            }
            self.entry(dir, &n, prefix)?;
        }
        Ok(())
    }

    fn entry(&mut self, dir: RawFd, n: &CString, prefix: &[u8]) -> Result<()> {
        let mut name = prefix.to_vec();
        name.extend_from_slice(n.to_bytes());
        let path = self.root.join(OsStr::from_bytes(&name));
        let st = fstatat(Some(dir), n.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(sys("stat", &path))?;
        let base = Meta {
            name: &name,
            kind: EntryType::Regular,
            mode: st.st_mode,
            uid: st.st_uid.into(),
            gid: st.st_gid.into(),
            size: 0,
            mtime: st.st_mtime,
            link: b"",
            dev: (0, 0),
            xattrs: &[],
        };
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                let fd = own(openat(Some(dir), n.as_c_str(), OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
                    .map_err(sys("open", &path))?);
                let mut dname = name.clone();
                dname.push(b'/');
                let xa = tarw::xattrs(fd.as_raw_fd(), internal_xattr);
                self.put(&Meta { name: &dname, kind: EntryType::Directory, xattrs: &xa, ..base }, io::empty())?;
                let opq = fstatat(Some(fd.as_raw_fd()), OPQ, AtFlags::AT_SYMLINK_NOFOLLOW).ok();
                let opaque = opq.is_some() || opaque_xattr(fd.as_raw_fd());
                if opaque {
                    // Right after the directory, as Docker writes it: whoever unpacks clears the
                    // lower layers' contents before this layer's come in.
                    let mut on = dname.clone();
                    on.extend_from_slice(OPQ);
                    let (mode, uid, gid, mtime) = match &opq {
                        Some(o) => (o.st_mode, o.st_uid.into(), o.st_gid.into(), o.st_mtime),
                        None => (st.st_mode & 0o777, st.st_uid.into(), st.st_gid.into(), st.st_mtime),
                    };
                    self.put(&Meta { name: &on, kind: EntryType::Regular, mode, uid, gid, size: 0, mtime, link: b"", dev: (0, 0), xattrs: &[] }, io::empty())?;
                }
                self.walk(fd.as_raw_fd(), &dname, opaque)?;
            }
            libc::S_IFCHR if is_whiteout(&st) => {
                let mut wn = prefix.to_vec();
                wn.extend_from_slice(b".wh.");
                wn.extend_from_slice(n.to_bytes());
                self.put(&Meta { name: &wn, mode: 0o600, ..base }, io::empty())?;
            }
            libc::S_IFREG => {
                if st.st_nlink > 1 {
                    if let Some(first) = self.links.get(&(st.st_dev, st.st_ino)).cloned() {
                        return self.put(&Meta { kind: EntryType::Link, link: &first, ..base }, io::empty());
                    }
                }
                let fd =
                    own(openat(Some(dir), n.as_c_str(), OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys("open", &path))?);
                let st = fstat(fd.as_raw_fd()).map_err(sys("stat", &path))?;
                let size = st.st_size.max(0) as u64;
                let xa = tarw::xattrs(fd.as_raw_fd(), internal_xattr);
                let mut data = Promised::new(File::from(fd), size);
                self.put(&Meta { size, mode: st.st_mode, mtime: st.st_mtime, xattrs: &xa, ..base }, &mut data)?;
                if st.st_nlink > 1 {
                    self.links.insert((st.st_dev, st.st_ino), name);
                }
            }
            libc::S_IFLNK => {
                let target = readlinkat(Some(dir), n.as_c_str()).map_err(sys("readlink", &path))?;
                self.put(&Meta { kind: EntryType::Symlink, link: target.as_bytes(), ..base }, io::empty())?;
            }
            k @ (libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO) => {
                let kind = match k {
                    libc::S_IFCHR => EntryType::Char,
                    libc::S_IFBLK => EntryType::Block,
                    _ => EntryType::Fifo,
                };
                self.put(&Meta { kind, dev: dev_of(&st), ..base }, io::empty())?;
            }
            // Sockets have no tar form (Docker and GNU tar skip them too).
            _ => {}
        }
        Ok(())
    }
}

/// Packs an overlay upper directory into the layer file `out`.
pub fn pack_upper(upper: &Path, out: &Path, c: Compress) -> Result<PackStats> {
    let root =
        own(openat(None, upper, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys("open the upper directory", upper))?);
    let sink = Sink::create(out, c, threads())?;
    let mut u = Upper { tar: tar::Builder::new(sink), root: upper.to_path_buf(), links: HashMap::new(), entries: 0 };
    let r = u.walk(root.as_raw_fd(), b"", false);
    finish(u.tar, r, u.entries, out)
}

/// Ends the archive and the file; removes the file when anything failed.
fn finish(tar: tar::Builder<Sink>, walked: Result<()>, entries: u64, out: &Path) -> Result<PackStats> {
    let r = (|| {
        walked?;
        let sink = tar.into_inner().map_err(|e| PackError::Write { path: out.to_path_buf(), source: e })?;
        let (diff_id, digest, size) = sink.finish()?;
        Ok(PackStats { diff_id, digest, size, entries })
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(out);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// (name, type, mode, uid, link, content, xattrs) of every entry of a layer file.
    pub(super) fn listing(file: &Path) -> Vec<(String, char, u32, u64, String, Vec<u8>, Vec<(String, Vec<u8>)>)> {
        let raw = std::fs::read(file).unwrap();
        let data: Box<dyn Read> = if raw.starts_with(&[0x1f, 0x8b]) { Box::new(flate2::read::MultiGzDecoder::new(&raw[..])) } else { Box::new(&raw[..]) };
        let mut a = tar::Archive::new(data);
        let mut out = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let name = String::from_utf8_lossy(&e.path_bytes()).to_string();
            let kind = e.header().entry_type().as_byte() as char;
            let mode = e.header().mode().unwrap();
            let uid = e.header().uid().unwrap();
            let link = e.link_name_bytes().map(|l| String::from_utf8_lossy(&l).to_string()).unwrap_or_default();
            let mut xa = Vec::new();
            if let Ok(Some(x)) = e.pax_extensions() {
                for r in x.flatten() {
                    if let Some(k) = r.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) {
                        xa.push((k.to_string(), r.value_bytes().to_vec()));
                    }
                }
            }
            let mut content = Vec::new();
            e.read_to_end(&mut content).unwrap();
            out.push((name, kind, mode, uid, link, content, xa));
        }
        out
    }

    pub(super) fn setxattr(p: &Path, name: &str, value: &[u8]) -> bool {
        let c = CString::new(p.as_os_str().as_bytes()).unwrap();
        let n = CString::new(name).unwrap();
        // SAFETY: NUL-terminated strings, value pointer and length.
        unsafe { libc::lsetxattr(c.as_ptr(), n.as_ptr(), value.as_ptr() as *const libc::c_void, value.len(), 0) == 0 }
    }

    fn names(l: &[(String, char, u32, u64, String, Vec<u8>, Vec<(String, Vec<u8>)>)]) -> Vec<String> {
        l.iter().map(|e| e.0.clone()).collect()
    }

    /// An upper directory as the kernel's overlay (and fuse-overlayfs) leave them.
    fn upper(d: &Path) -> bool {
        let u = d.join("u");
        std::fs::create_dir_all(u.join("etc/app")).unwrap();
        std::fs::create_dir_all(u.join("opq/sub")).unwrap();
        std::fs::create_dir_all(u.join("fopq")).unwrap();
        std::fs::write(u.join("etc/app/conf"), "x=1\n").unwrap();
        std::fs::hard_link(u.join("etc/app/conf"), u.join("etc/app/conf.bak")).unwrap();
        std::os::unix::fs::symlink("conf", u.join("etc/app/link")).unwrap();
        std::fs::write(u.join("opq/sub/new"), "n").unwrap();
        // fuse-overlayfs's forms, when it cannot make devices or set xattrs: files.
        std::fs::write(u.join("fopq/.wh..wh..opq"), "").unwrap();
        std::fs::write(u.join(".wh.fgone"), "").unwrap();
        assert!(setxattr(&u.join("etc/app/conf"), "user.note", b"kept"));
        // Overlay's own: not in the layer.
        assert!(setxattr(&u.join("etc/app/conf"), "user.overlay.origin", b"zz"));
        assert!(setxattr(&u.join("opq"), "user.overlay.opaque", b"y"));
        // A whiteout is a 0/0 character device: root (or a user namespace) can make one.
        let c = CString::new(u.join("gone").as_os_str().as_bytes()).unwrap();
        // SAFETY: NUL-terminated path.
        unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, 0) == 0 }
    }

    #[test]
    fn whiteouts_and_opaque_directories_become_oci_markers() {
        let d = tempfile::tempdir().unwrap();
        let whiteout = upper(d.path());
        let out = d.path().join("layer.tar.gz");
        let st = pack_upper(&d.path().join("u"), &out, Compress::Gzip).unwrap();
        let l = listing(&out);
        let mut want = vec![".wh.fgone", "etc/", "etc/app/", "etc/app/conf", "etc/app/conf.bak", "etc/app/link", "fopq/", "fopq/.wh..wh..opq"];
        if whiteout {
            want.push(".wh.gone");
        }
        want.extend(["opq/", "opq/.wh..wh..opq", "opq/sub/", "opq/sub/new"]);
        let mut got = names(&l);
        got.sort();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(st.entries as usize, l.len());
        let get = |n: &str| l.iter().find(|e| e.0 == n).unwrap();
        assert_eq!(get("etc/app/conf").5, b"x=1\n");
        assert_eq!(get("etc/app/conf").6, vec![("user.note".to_string(), b"kept".to_vec())]);
        assert_eq!(get("etc/app/conf.bak").1, '1');
        assert_eq!(get("etc/app/conf.bak").4, "etc/app/conf");
        assert_eq!(get("etc/app/link").1, '2');
        assert!(get("opq/").6.is_empty(), "overlay's opaque xattr is not written");
        // Each opaque marker right after its directory; parents before children.
        let pos = |n: &str| l.iter().position(|e| e.0 == n).unwrap();
        assert_eq!(pos("opq/.wh..wh..opq"), pos("opq/") + 1);
        assert_eq!(pos("fopq/.wh..wh..opq"), pos("fopq/") + 1);
        assert!(pos("etc/") < pos("etc/app/") && pos("etc/app/") < pos("etc/app/conf"));
        // The digests are those of the file and of the uncompressed stream.
        let raw = std::fs::read(&out).unwrap();
        assert_eq!(st.digest, format!("sha256:{}", hex(&Sha256::digest(&raw))));
        assert_eq!(st.size, raw.len() as u64);
        let mut tar = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..]).read_to_end(&mut tar).unwrap();
        assert_eq!(st.diff_id, format!("sha256:{}", hex(&Sha256::digest(&tar))));
    }

    #[test]
    fn the_same_tree_packs_to_the_same_bytes() {
        let d = tempfile::tempdir().unwrap();
        upper(d.path());
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        let sa = pack_upper(&d.path().join("u"), &a, Compress::Gzip).unwrap();
        let sb = pack_upper(&d.path().join("u"), &b, Compress::Gzip).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        assert_eq!(sa, sb);
        let n = d.path().join("n");
        let sn = pack_upper(&d.path().join("u"), &n, Compress::None).unwrap();
        assert_eq!(sn.diff_id, sa.diff_id);
        assert_eq!(sn.digest, sn.diff_id);
    }

    /// Big enough for several members, compressible and not: what `gzip -d` and flate2's
    /// multi-member reader both read back whole.
    #[test]
    fn parallel_gzip_is_read_back_by_every_gzip_reader() {
        let d = tempfile::tempdir().unwrap();
        let u = d.path().join("u");
        std::fs::create_dir(&u).unwrap();
        let mut x = 0x2545F4914F6CDD1Du64;
        let noise: Vec<u8> = (0..3 * CHUNK + 777)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(u.join("noise"), &noise).unwrap();
        std::fs::write(u.join("text"), "burrow ".repeat(CHUNK)).unwrap();
        let out = d.path().join("l.gz");
        let st = pack_upper(&u, &out, Compress::Gzip).unwrap();
        let raw = std::fs::read(&out).unwrap();
        let members = raw.windows(4).filter(|w| w == &[0x1f, 0x8b, 8, 0]).count();
        assert!(members >= 4, "{members} gzip members");
        let mut a = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..]).read_to_end(&mut a).unwrap();
        let g = std::process::Command::new("gzip").arg("-dc").arg(&out).output().unwrap();
        assert!(g.status.success());
        assert_eq!(g.stdout, a);
        assert_eq!(st.diff_id, format!("sha256:{}", hex(&Sha256::digest(&a))));
        let l = listing(&out);
        assert_eq!(l.iter().find(|e| e.0 == "noise").unwrap().5, noise);
    }

    #[test]
    fn a_failed_pack_leaves_no_file() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("l.gz");
        let e = pack_upper(&d.path().join("missing"), &out, Compress::Gzip).unwrap_err();
        assert_eq!(e.code(), crate::codes::EPACK);
        assert!(!out.exists());
    }
}
