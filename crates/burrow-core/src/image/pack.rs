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

use std::collections::{BTreeMap, HashMap, HashSet};
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
use nix::fcntl::{openat, openat2, readlinkat, AtFlags, OFlag, OpenHow, ResolveFlag};
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

/// A numbered chunk of the tar stream, or its gzip member.
type Piece = (u64, Vec<u8>);

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
    Gzip { buf: Vec<u8>, seq: u64, tx: Option<SyncSender<Piece>>, workers: Vec<JoinHandle<()>>, writer: Option<JoinHandle<Written>> },
}

impl Sink {
    /// Creates (or truncates) `path`; `threads` compress when `c` is gzip.
    pub fn create(path: &Path, c: Compress, threads: usize) -> Result<Sink> {
        let file = File::options().write(true).create(true).truncate(true).open(path).map_err(|e| PackError::Write { path: path.to_path_buf(), source: e })?;
        let out = match c {
            Compress::None => Out::Plain { file: BufWriter::with_capacity(CHUNK, file), size: 0 },
            Compress::Gzip => {
                let threads = threads.max(1);
                let (tx, rx) = sync_channel::<Piece>(threads * 2);
                let (rtx, rrx) = sync_channel::<Piece>(threads * 2);
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

fn compress_chunks(rx: Arc<Mutex<Receiver<Piece>>>, out: SyncSender<Piece>) {
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
fn write_members(file: File, rx: Receiver<Piece>) -> Written {
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

// ---- COPY/ADD's entries ----------------------------------------------------------------------

/// One COPY/ADD source under its destination (ts/storage/pack.ts, PackEntry).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PackEntry {
    pub source: PackSource,
    pub dest: String,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: Option<u32>,
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// Where an entry's bytes come from. `layers` first: serde tries the forms in order, and a
/// `{layers, path}` would also read as a `{path}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PackSource {
    Layers { layers: Vec<PathBuf>, path: String },
    Path { path: PathBuf, root: Option<PathBuf> },
    Content { content: String },
}

/// Where an item's data and xattrs are read when it is written: a path below one of the opened
/// roots, opened again then (the collection keeps no descriptor per file: a build context may
/// have tens of thousands), or bytes.
#[derive(Debug, Clone)]
enum Data {
    None,
    /// `follow`: the entry's own source, which may be a symlink (followed below its root).
    At {
        root: usize,
        rel: Vec<u8>,
        follow: bool,
    },
    Bytes(Arc<Vec<u8>>),
}

#[derive(Debug, Clone)]
struct Item {
    kind: EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
    link: Vec<u8>,
    dev: (u64, u64),
    data: Data,
    /// (dev, ino) of a regular file with several names in its source tree.
    ino: Option<(u64, u64)>,
}

struct Root {
    fd: OwnedFd,
    path: PathBuf,
    /// Resolve below the root only (a build context, a layer); else paths are followed freely
    /// (burrow's own files, given without a root).
    beneath: bool,
}

#[derive(Default)]
struct Collector {
    roots: Vec<Root>,
    by_path: HashMap<(PathBuf, bool), usize>,
    items: BTreeMap<Vec<u8>, Item>,
}

/// What a path is in a merged view of layers (or in a plain tree: one layer, no markers).
enum Found {
    Missing,
    Leaf {
        layer: usize,
        rel: Vec<u8>,
        st: FileStat,
    },
    /// A directory and the layers that contribute to it, top first.
    Dir {
        layers: Vec<usize>,
        rel: Vec<u8>,
        st: FileStat,
    },
}

fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    if a.is_empty() {
        return b.to_vec();
    }
    let mut v = a.to_vec();
    v.push(b'/');
    v.extend_from_slice(b);
    v
}

/// The components of a path, `.` dropped and `..` applied without climbing above the top.
fn parts(p: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for c in p.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            c => out.push(c.to_vec()),
        }
    }
    out
}

fn is_sys_escape(e: Errno) -> bool {
    // openat2 with RESOLVE_BENEATH: EXDEV for `..` above the root or an absolute symlink.
    e == Errno::EXDEV
}

/// Base64 (RFC 4648, padding optional): heredoc contents come this way in the JSON job.
fn base64(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let clean: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for q in clean.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in q.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        match q.len() {
            4 => out.extend_from_slice(&bytes),
            3 => out.extend_from_slice(&bytes[..2]),
            2 => out.extend_from_slice(&bytes[..1]),
            _ => return None,
        }
    }
    Some(out)
}

impl Collector {
    fn root(&mut self, path: &Path, beneath: bool) -> Result<usize> {
        if let Some(&i) = self.by_path.get(&(path.to_path_buf(), beneath)) {
            return Ok(i);
        }
        let fd = own(openat(None, path, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys("open", path))?);
        self.roots.push(Root { fd, path: path.to_path_buf(), beneath });
        self.by_path.insert((path.to_path_buf(), beneath), self.roots.len() - 1);
        Ok(self.roots.len() - 1)
    }

    /// Opens `rel` below root `r`; a way out of a `beneath` root is ELAYER_UNSAFE.
    fn open(&self, r: usize, rel: &[u8], flags: OFlag) -> Result<OwnedFd> {
        let root = &self.roots[r];
        let resolve = if root.beneath { ResolveFlag::RESOLVE_BENEATH } else { ResolveFlag::empty() };
        let name: &[u8] = if rel.is_empty() { b"." } else { rel };
        let shown = root.path.join(OsStr::from_bytes(name));
        match openat2(root.fd.as_raw_fd(), OsStr::from_bytes(name), OpenHow::new().flags(flags | OFlag::O_CLOEXEC).resolve(resolve)) {
            Ok(fd) => Ok(own(fd)),
            Err(e) if root.beneath && is_sys_escape(e) => {
                Err(PackError::Unsafe { path: shown, why: format!("it is, or goes through, a symlink that leads outside {}", root.path.display()) })
            }
            Err(e) => Err(sys("open", &shown)(e)),
        }
    }

    fn stat_at(&self, dir: &OwnedFd, name: &[u8], r: usize, rel: &[u8]) -> Result<Option<FileStat>> {
        match fstatat(Some(dir.as_raw_fd()), OsStr::from_bytes(name), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(sys("stat", self.roots[r].path.join(OsStr::from_bytes(&join(rel, name))))(e)),
        }
    }

    /// The directory `rel` of layer `l`, if it is one (no symlink followed on the way).
    fn layer_dir(&self, l: usize, rel: &[u8]) -> Result<Option<OwnedFd>> {
        let name: &[u8] = if rel.is_empty() { b"." } else { rel };
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
        match openat2(self.roots[l].fd.as_raw_fd(), OsStr::from_bytes(name), how) {
            Ok(fd) => Ok(Some(own(fd))),
            Err(Errno::ENOENT) | Err(Errno::ENOTDIR) | Err(Errno::ELOOP) => Ok(None),
            Err(e) => Err(sys("open", self.roots[l].path.join(OsStr::from_bytes(name)))(e)),
        }
    }

    /// `parts` in the merged view of `layers` (top first), as overlay shows it.
    fn lookup(&self, layers: &[usize], parts: &[Vec<u8>]) -> Result<Found> {
        let mut contrib = layers.to_vec();
        let mut rel = Vec::new();
        let top =
            self.layer_dir(layers[0], b"")?.ok_or_else(|| PackError::Input(format!("layer {} is not a directory", self.roots[layers[0]].path.display())))?;
        let mut st = fstat(top.as_raw_fd()).map_err(sys("stat", &self.roots[layers[0]].path))?;
        for (i, comp) in parts.iter().enumerate() {
            let mut next = Vec::new();
            let mut leaf = None;
            for &l in &contrib {
                let Some(dir) = self.layer_dir(l, &rel)? else { continue };
                if let Some(s) = self.stat_at(&dir, comp, l, &rel)? {
                    if is_whiteout(&s) {
                        break;
                    }
                    if s.st_mode & libc::S_IFMT == libc::S_IFDIR {
                        if next.is_empty() {
                            st = s;
                        }
                        next.push(l);
                        let d = self.layer_dir(l, &join(&rel, comp))?;
                        if d.is_some_and(|d| opaque_xattr(d.as_raw_fd()) || fstatat(Some(d.as_raw_fd()), OPQ, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok()) {
                            break;
                        }
                        continue;
                    }
                    if next.is_empty() {
                        leaf = Some((l, s));
                    }
                    break;
                }
                let mut wh = b".wh.".to_vec();
                wh.extend_from_slice(comp);
                if self.stat_at(&dir, &wh, l, &rel)?.is_some() {
                    break;
                }
            }
            rel = join(&rel, comp);
            if let Some((layer, s)) = leaf {
                return Ok(if i + 1 == parts.len() || s.st_mode & libc::S_IFMT == libc::S_IFLNK { Found::Leaf { layer, rel, st: s } } else { Found::Missing });
            }
            if next.is_empty() {
                return Ok(Found::Missing);
            }
            contrib = next;
        }
        Ok(Found::Dir { layers: contrib, rel, st })
    }

    /// Resolves `path` in the merged view, symlinks followed as they would be in a container
    /// whose root is the view (absolute targets from its top, `..` stopping there).
    fn resolve(&self, layers: &[usize], path: &str) -> Result<Found> {
        let mut todo: std::collections::VecDeque<Vec<u8>> = parts(path.as_bytes()).into();
        let mut done: Vec<Vec<u8>> = Vec::new();
        let mut hops = 0;
        while let Some(c) = todo.pop_front() {
            if c == b".." {
                done.pop();
                continue;
            }
            done.push(c);
            match self.lookup(layers, &done)? {
                Found::Missing => return Ok(Found::Missing),
                Found::Leaf { layer, rel, st } if st.st_mode & libc::S_IFMT == libc::S_IFLNK => {
                    hops += 1;
                    if hops > 40 {
                        return Err(PackError::Input(format!("{path}: too many levels of symbolic links")));
                    }
                    let t = readlinkat(Some(self.roots[layer].fd.as_raw_fd()), OsStr::from_bytes(&rel))
                        .map_err(sys("readlink", self.roots[layer].path.join(OsStr::from_bytes(&rel))))?;
                    let tb = t.as_bytes();
                    done.pop();
                    if tb.starts_with(b"/") {
                        done.clear();
                    }
                    for (i, p) in tb.split(|&b| b == b'/').filter(|p| !p.is_empty() && *p != b".").enumerate() {
                        todo.insert(i, p.to_vec());
                    }
                }
                _ => {}
            }
        }
        self.lookup(layers, &done)
    }

    /// Puts an item at `name`: what was there is replaced, and so is everything under it
    /// unless the item is a directory (a later entry wins, as files copied later would).
    fn put(&mut self, name: Vec<u8>, item: Item) {
        if name.is_empty() {
            return; // the layer's root itself has no entry
        }
        if item.kind != EntryType::Directory {
            let mut under = name.clone();
            under.push(b'/');
            let gone: Vec<Vec<u8>> = self.items.range(under.clone()..).take_while(|(k, _)| k.starts_with(&under)).map(|(k, _)| k.clone()).collect();
            for k in gone {
                self.items.remove(&k);
            }
        }
        self.items.insert(name, item);
    }

    /// Directories above `name` that no entry brought: 0755, the entry's owner (COPY --chown
    /// makes the directories it creates its own), mtime 0 (the layer stays deterministic).
    fn parents(&mut self, name: &[u8], uid: u64, gid: u64) {
        let mut p = Vec::new();
        let comps: Vec<&[u8]> = name.split(|&b| b == b'/').collect();
        for c in &comps[..comps.len().saturating_sub(1)] {
            p = join(&p, c);
            self.items.entry(p.clone()).or_insert(Item {
                kind: EntryType::Directory,
                mode: 0o755,
                uid,
                gid,
                mtime: 0,
                link: Vec::new(),
                dev: (0, 0),
                data: Data::None,
                ino: None,
            });
        }
    }

    fn item(&self, e: &PackEntry, st: &FileStat, data: Data, keep_owner: bool, link: Vec<u8>) -> Option<Item> {
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => EntryType::Directory,
            libc::S_IFREG => EntryType::Regular,
            libc::S_IFLNK => EntryType::Symlink,
            libc::S_IFIFO => EntryType::Fifo,
            libc::S_IFCHR if !is_whiteout(st) => EntryType::Char,
            libc::S_IFBLK => EntryType::Block,
            _ => return None, // sockets; a whiteout is no file
        };
        let (uid, gid) = if keep_owner { (u64::from(st.st_uid), u64::from(st.st_gid)) } else { (0, 0) };
        let mode = match (e.mode, kind) {
            (Some(m), EntryType::Directory | EntryType::Regular) => m & 0o7777,
            _ => st.st_mode & 0o7777,
        };
        Some(Item {
            kind,
            mode,
            uid: e.uid.map(u64::from).unwrap_or(uid),
            gid: e.gid.map(u64::from).unwrap_or(gid),
            mtime: st.st_mtime,
            link,
            dev: dev_of(st),
            ino: (kind == EntryType::Regular && st.st_nlink > 1).then_some((st.st_dev, st.st_ino)),
            data,
        })
    }

    /// A tree (one root, or layers merged) below `dest`: `layers` top first, `merge` applies
    /// overlay's whiteouts and opaque markers (a build context's `.wh.` files are just files).
    #[allow(clippy::too_many_arguments)]
    fn tree(
        &mut self,
        e: &PackEntry,
        layers: &[usize],
        rel: &[u8],
        dest: &[u8],
        sub: &[u8],
        merge: bool,
        keep_owner: bool,
        skip: &HashSet<Vec<u8>>,
    ) -> Result<()> {
        enum D {
            Gone,
            Leaf(usize, FileStat),
            Dir(Vec<usize>, FileStat, bool),
        }
        let mut decided: BTreeMap<Vec<u8>, D> = BTreeMap::new();
        for &l in layers {
            let Some(dir) = (if merge { self.layer_dir(l, rel)? } else { Some(self.open(l, rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?) }) else { continue };
            let shown = self.roots[l].path.join(OsStr::from_bytes(rel));
            for n in names(dir.as_raw_fd(), &shown)? {
                let nb = n.to_bytes().to_vec();
                if merge && nb == OPQ {
                    continue;
                }
                let st = match self.stat_at(&dir, &nb, l, rel)? {
                    Some(st) => st,
                    None => continue,
                };
                let hidden = if merge && nb.starts_with(b".wh.") && nb.len() > 4 {
                    Some(nb[4..].to_vec())
                } else if merge && is_whiteout(&st) {
                    Some(nb.clone())
                } else {
                    None
                };
                if let Some(h) = hidden {
                    match decided.get_mut(&h) {
                        None => {
                            decided.insert(h, D::Gone);
                        }
                        Some(D::Dir(_, _, closed)) => *closed = true,
                        Some(_) => {}
                    }
                    continue;
                }
                let isdir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
                let opaque = || -> Result<bool> {
                    Ok(merge
                        && self
                            .layer_dir(l, &join(rel, &nb))?
                            .is_some_and(|d| opaque_xattr(d.as_raw_fd()) || fstatat(Some(d.as_raw_fd()), OPQ, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok()))
                };
                match decided.get_mut(&nb) {
                    None => {
                        let d = if isdir { D::Dir(vec![l], st, opaque()?) } else { D::Leaf(l, st) };
                        decided.insert(nb, d);
                    }
                    Some(D::Dir(v, _, closed)) if !*closed => {
                        if isdir {
                            v.push(l);
                            *closed = opaque()?;
                        } else {
                            *closed = true;
                        }
                    }
                    Some(_) => {}
                }
            }
        }
        for (n, d) in decided {
            let s = join(sub, &n);
            if skip.contains(&s) {
                continue;
            }
            let name = join(dest, &n);
            let crel = join(rel, &n);
            match d {
                D::Gone => {}
                D::Leaf(l, st) => {
                    let link = if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
                        let p = self.roots[l].path.join(OsStr::from_bytes(&crel));
                        let dir = if merge { self.layer_dir(l, rel)? } else { Some(self.open(l, rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?) };
                        let dir = dir.ok_or_else(|| sys("open", &p)(Errno::ENOENT))?;
                        readlinkat(Some(dir.as_raw_fd()), OsStr::from_bytes(&n)).map_err(sys("readlink", &p))?.as_bytes().to_vec()
                    } else {
                        Vec::new()
                    };
                    if let Some(it) = self.item(e, &st, Data::At { root: l, rel: crel, follow: false }, keep_owner, link) {
                        self.put(name, it);
                    }
                }
                D::Dir(v, st, _) => {
                    if let Some(it) = self.item(e, &st, Data::At { root: v[0], rel: crel.clone(), follow: false }, keep_owner, Vec::new()) {
                        self.put(name.clone(), it);
                    }
                    self.tree(e, &v, &crel, &name, &s, merge, keep_owner, skip)?;
                }
            }
        }
        Ok(())
    }

    fn entry(&mut self, e: &PackEntry) -> Result<()> {
        if !e.dest.starts_with('/') {
            return Err(PackError::Input(format!("destination {:?} is not absolute", e.dest)));
        }
        let dir_dest = e.dest.ends_with('/') || e.dest.ends_with("/.");
        let dest = parts(e.dest.as_bytes()).join(&b'/');
        let skip: HashSet<Vec<u8>> = e.exclude.iter().map(|x| parts(x.as_bytes()).join(&b'/')).filter(|x| !x.is_empty()).collect();
        let (puid, pgid) = (e.uid.map(u64::from).unwrap_or(0), e.gid.map(u64::from).unwrap_or(0));
        // The name of a single file: DEST, or DEST/BASENAME when DEST names a directory.
        let file_name = |base: &[u8]| -> Vec<u8> {
            if dir_dest || dest.is_empty() {
                join(&dest, base)
            } else {
                dest.clone()
            }
        };
        match &e.source {
            PackSource::Content { content } => {
                if dir_dest || dest.is_empty() {
                    return Err(PackError::Input(format!("literal content needs a file name, not the directory {:?}", e.dest)));
                }
                let bytes = base64(content).ok_or_else(|| PackError::Input(format!("the content for {} is not base64", e.dest)))?;
                self.parents(&dest, puid, pgid);
                let it = Item {
                    kind: EntryType::Regular,
                    mode: e.mode.unwrap_or(0o644) & 0o7777,
                    uid: puid,
                    gid: pgid,
                    mtime: 0,
                    link: Vec::new(),
                    dev: (0, 0),
                    data: Data::Bytes(Arc::new(bytes)),
                    ino: None,
                };
                self.put(dest, it);
            }
            PackSource::Path { path, root } => {
                if !path.is_absolute() || root.as_ref().is_some_and(|r| !r.is_absolute()) {
                    return Err(PackError::Input(format!("source {} (root {:?}): paths must be absolute", path.display(), root)));
                }
                let (r, rel) = match root {
                    Some(root) => {
                        let r = self.root(root, true)?;
                        let rel = path
                            .strip_prefix(root)
                            .map_err(|_| PackError::Unsafe { path: path.clone(), why: format!("it is not inside {}", root.display()) })?;
                        (r, rel.as_os_str().as_bytes().to_vec())
                    }
                    None => (
                        self.root(Path::new("/"), false)?,
                        path.as_os_str().as_bytes()[1..].to_vec(), // absolute, checked above
                    ),
                };
                // The source itself is followed (COPY copies what a symlink names), below the root.
                let top = self.open(r, &rel, OFlag::O_PATH)?;
                let st = fstat(top.as_raw_fd()).map_err(sys("stat", path))?;
                if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                    self.parents(&dest, puid, pgid);
                    if let Some(it) = self.item(e, &st, Data::At { root: r, rel: rel.clone(), follow: true }, false, Vec::new()) {
                        self.put(dest.clone(), it);
                    }
                    self.tree(e, &[r], &rel, &dest, b"", false, false, &skip)?;
                } else {
                    let base = path.file_name().map(|b| b.as_bytes().to_vec()).unwrap_or_default();
                    let name = file_name(&base);
                    self.parents(&name, puid, pgid);
                    if let Some(it) = self.item(e, &st, Data::At { root: r, rel, follow: true }, false, Vec::new()) {
                        self.put(name, it);
                    }
                }
            }
            PackSource::Layers { layers, path } => {
                if layers.is_empty() {
                    return Err(PackError::Input(format!("no layers to copy {path} from")));
                }
                // Top first from here on.
                let ls = layers.iter().rev().map(|l| self.root(l, true)).collect::<Result<Vec<_>>>()?;
                let found = self.resolve(&ls, path)?;
                match found {
                    Found::Missing => return Err(PackError::Input(format!("{path}: no such file or directory in the stage's layers"))),
                    Found::Dir { layers: v, rel, st } => {
                        self.parents(&dest, puid, pgid);
                        if let Some(it) = self.item(e, &st, Data::At { root: v[0], rel: rel.clone(), follow: false }, true, Vec::new()) {
                            self.put(dest.clone(), it);
                        }
                        self.tree(e, &v, &rel, &dest, b"", true, true, &skip)?;
                    }
                    Found::Leaf { layer, rel, st } => {
                        // Named as the source was, not as the symlink it may be led to (COPY's rule).
                        let base = parts(path.as_bytes()).pop().unwrap_or_default();
                        let name = file_name(&base);
                        self.parents(&name, puid, pgid);
                        if let Some(it) = self.item(e, &st, Data::At { root: layer, rel, follow: false }, true, Vec::new()) {
                            self.put(name, it);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes the items in name order (parents before children), hard links after their first name.
    fn write<W: Write>(&self, tar: &mut tar::Builder<W>, out: &Path) -> Result<u64> {
        let mut links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
        let mut n = 0;
        let werr = |e: io::Error| PackError::Write { path: out.to_path_buf(), source: e };
        for (name, it) in &self.items {
            n += 1;
            let mut tname = name.clone();
            if it.kind == EntryType::Directory {
                tname.push(b'/');
            }
            let m = Meta {
                name: &tname,
                kind: it.kind,
                mode: it.mode,
                uid: it.uid,
                gid: it.gid,
                size: 0,
                mtime: it.mtime,
                link: &it.link,
                dev: it.dev,
                xattrs: &[],
            };
            if let Some(key) = it.ino {
                if let Some(first) = links.get(&key) {
                    tarw::append(tar, &Meta { kind: EntryType::Link, link: first, ..m }, io::empty()).map_err(werr)?;
                    continue;
                }
                links.insert(key, name.clone());
            }
            match (&it.data, it.kind) {
                (Data::Bytes(b), _) => tarw::append(tar, &Meta { size: b.len() as u64, ..m }, &b[..]).map_err(werr)?,
                (Data::At { root, rel, follow }, EntryType::Regular) => {
                    let fd = self.open(*root, rel, if *follow { OFlag::O_RDONLY } else { OFlag::O_RDONLY | OFlag::O_NOFOLLOW })?;
                    let shown = self.roots[*root].path.join(OsStr::from_bytes(rel));
                    let st = fstat(fd.as_raw_fd()).map_err(sys("stat", &shown))?;
                    let size = st.st_size.max(0) as u64;
                    let xa = tarw::xattrs(fd.as_raw_fd(), internal_xattr);
                    let mut data = Promised::new(File::from(fd), size);
                    tarw::append(tar, &Meta { size, xattrs: &xa, ..m }, &mut data).map_err(werr)?;
                }
                (Data::At { root, rel, follow }, EntryType::Directory) => {
                    let xa = match self.open(
                        *root,
                        rel,
                        if *follow { OFlag::O_RDONLY | OFlag::O_DIRECTORY } else { OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW },
                    ) {
                        Ok(fd) => tarw::xattrs(fd.as_raw_fd(), internal_xattr),
                        Err(_) => Vec::new(),
                    };
                    tarw::append(tar, &Meta { xattrs: &xa, ..m }, io::empty()).map_err(werr)?;
                }
                _ => tarw::append(tar, &m, io::empty()).map_err(werr)?,
            }
        }
        Ok(n)
    }
}

/// Packs COPY/ADD's entries into the layer file `out`: each source under its destination,
/// parents created, later entries replacing earlier ones at the same name.
pub fn pack_entries(entries: &[PackEntry], out: &Path, c: Compress) -> Result<PackStats> {
    let mut col = Collector::default();
    for e in entries {
        col.entry(e)?;
    }
    let sink = Sink::create(out, c, threads())?;
    let mut tar = tar::Builder::new(sink);
    let r = col.write(&mut tar, out);
    let n = *r.as_ref().unwrap_or(&0);
    finish(tar, r.map(|_| ()), n, out)
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

    /// The other opaque forms (rootful overlay's trusted.*, fuse-overlayfs's own) and a file
    /// capability, which must reach the layer (ping without root); trusted.* and security.* can
    /// be set by root only, so those parts run as root.
    #[test]
    fn every_opaque_form_and_file_capabilities() {
        let d = tempfile::tempdir().unwrap();
        let u = d.path().join("u");
        for dir in ["t", "f", "bin"] {
            std::fs::create_dir_all(u.join(dir).join("keep")).unwrap();
        }
        std::fs::write(u.join("bin/ping"), "elf").unwrap();
        let trusted = setxattr(&u.join("t"), "trusted.overlay.opaque", b"y");
        assert!(setxattr(&u.join("f"), "user.fuseoverlayfs.opaque", b"y"));
        // VFS_CAP_REVISION_2 with the effective bit; cap_net_raw (13) permitted.
        let cap = [0x01, 0, 0, 0x02, 0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let capped = setxattr(&u.join("bin/ping"), "security.capability", &cap);
        let out = d.path().join("l.tar");
        pack_upper(&u, &out, Compress::None).unwrap();
        let l = listing(&out);
        let has = |n: &str| l.iter().any(|e| e.0 == n);
        assert!(has("f/.wh..wh..opq"));
        assert_eq!(has("t/.wh..wh..opq"), trusted);
        assert!(!has("bin/.wh..wh..opq"));
        for e in &l {
            assert!(e.6.iter().all(|(k, _)| !internal_xattr(k.as_bytes())), "{}: {:?}", e.0, e.6);
        }
        if capped {
            let ping = l.iter().find(|e| e.0 == "bin/ping").unwrap();
            assert_eq!(ping.6, vec![("security.capability".to_string(), cap.to_vec())]);
        }
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

    fn entry(source: PackSource, dest: &str) -> PackEntry {
        PackEntry { source, dest: dest.into(), uid: None, gid: None, mode: None, exclude: Vec::new() }
    }

    fn path_in(root: &Path, rel: &str) -> PackSource {
        PackSource::Path { path: root.join(rel), root: Some(root.to_path_buf()) }
    }

    #[test]
    fn entries_land_under_their_destinations_with_parents_owners_and_modes() {
        let d = tempfile::tempdir().unwrap();
        let ctx = d.path().join("ctx");
        std::fs::create_dir_all(ctx.join("app/sub")).unwrap();
        std::fs::create_dir_all(ctx.join("app/skipme")).unwrap();
        std::fs::write(ctx.join("app/main.c"), "int main;").unwrap();
        std::fs::hard_link(ctx.join("app/main.c"), ctx.join("app/copy.c")).unwrap();
        std::os::unix::fs::symlink("main.c", ctx.join("app/link")).unwrap();
        std::fs::write(ctx.join("app/sub/x"), "x").unwrap();
        std::fs::write(ctx.join("app/skipme/y"), "y").unwrap();
        std::fs::write(ctx.join("app/.wh.notmine"), "a context's file, not a marker").unwrap();
        std::fs::write(ctx.join("tool"), "#!/bin/sh").unwrap();
        std::os::unix::fs::symlink("tool", ctx.join("tool-link")).unwrap();
        let mut app = entry(path_in(&ctx, "app"), "/srv/app");
        app.uid = Some(1000);
        app.gid = Some(1000);
        app.exclude = vec!["skipme".into()];
        let mut tool = entry(path_in(&ctx, "tool-link"), "/usr/local/bin/");
        tool.mode = Some(0o755);
        let heredoc = entry(PackSource::Content { content: "aGVsbG8K".into() }, "/etc/greeting");
        let out = d.path().join("l.tar");
        let st = pack_entries(&[app, tool, heredoc], &out, Compress::None).unwrap();
        let l = listing(&out);
        assert_eq!(
            names(&l),
            [
                "etc/",
                "etc/greeting",
                "srv/",
                "srv/app/",
                "srv/app/.wh.notmine",
                "srv/app/copy.c",
                "srv/app/link",
                "srv/app/main.c",
                "srv/app/sub/",
                "srv/app/sub/x",
                "usr/",
                "usr/local/",
                "usr/local/bin/",
                "usr/local/bin/tool-link"
            ]
        );
        assert_eq!(st.entries as usize, l.len());
        let get = |n: &str| l.iter().find(|e| e.0 == n).unwrap().clone();
        assert_eq!(get("etc/greeting").5, b"hello\n");
        assert_eq!(get("etc/greeting").2, 0o644);
        // The source symlink is followed (its target's bytes, the destination's name).
        assert_eq!(get("usr/local/bin/tool-link").5, b"#!/bin/sh");
        assert_eq!(get("usr/local/bin/tool-link").2, 0o755);
        assert_eq!(get("usr/local/bin/").2, 0o755);
        // --chown: every copied entry and the parents it made; symlinks inside are copied as such.
        for n in ["srv/", "srv/app/", "srv/app/main.c", "srv/app/sub/x", "srv/app/link"] {
            assert_eq!(get(n).3, 1000, "{n}");
        }
        assert_eq!(get("usr/").3, 0);
        assert_eq!(get("srv/app/link").1, '2');
        assert_eq!(get("srv/app/link").4, "main.c");
        // copy.c sorts first: it carries the data, main.c links to it.
        assert_eq!(get("srv/app/copy.c").5, b"int main;");
        assert_eq!(get("srv/app/main.c").1, '1');
        assert_eq!(get("srv/app/main.c").4, "srv/app/copy.c");
        // Twice: the same bytes.
        let again = d.path().join("l2.tar");
        let mut app = entry(path_in(&ctx, "app"), "/srv/app");
        (app.uid, app.gid, app.exclude) = (Some(1000), Some(1000), vec!["skipme".into()]);
        let mut tool = entry(path_in(&ctx, "tool-link"), "/usr/local/bin/");
        tool.mode = Some(0o755);
        pack_entries(&[app, tool, entry(PackSource::Content { content: "aGVsbG8K".into() }, "/etc/greeting")], &again, Compress::None).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
    }

    #[test]
    fn a_symlink_out_of_the_context_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let ctx = d.path().join("ctx");
        let outside = d.path().join("outside");
        std::fs::create_dir_all(ctx.join("dir")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), "s").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", ctx.join("abs")).unwrap();
        std::os::unix::fs::symlink("../outside/secret", ctx.join("up")).unwrap();
        std::os::unix::fs::symlink("../outside", ctx.join("updir")).unwrap();
        std::os::unix::fs::symlink("../../outside/secret", ctx.join("dir/inner")).unwrap();
        let out = d.path().join("l.tar");
        for src in ["abs", "up", "updir", "updir/secret", "dir/inner"] {
            let e = pack_entries(&[entry(path_in(&ctx, src), "/x")], &out, Compress::Gzip).unwrap_err();
            assert_eq!(e.code(), crate::codes::ELAYER_UNSAFE, "{src}: {e}");
            assert!(!out.exists());
        }
        let e = pack_entries(&[entry(PackSource::Path { path: outside.join("secret"), root: Some(ctx.clone()) }, "/x")], &out, Compress::Gzip).unwrap_err();
        assert_eq!(e.code(), crate::codes::ELAYER_UNSAFE);
        // Inside a copied tree a symlink is a symlink: copied, never read through.
        pack_entries(&[entry(path_in(&ctx, "dir"), "/d")], &out, Compress::Gzip).unwrap();
        let l = listing(&out);
        let inner = l.iter().find(|e| e.0 == "d/inner").unwrap();
        assert_eq!((inner.1, inner.4.as_str()), ('2', "../../outside/secret"));
    }

    /// Makes a whiteout for `name` in `dir`: the device where it can be made, else the `.wh.` file.
    fn whiteout(dir: &Path, name: &str) {
        let c = CString::new(dir.join(name).as_os_str().as_bytes()).unwrap();
        // SAFETY: NUL-terminated path.
        if unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, 0) } != 0 {
            std::fs::write(dir.join(format!(".wh.{name}")), "").unwrap();
        }
    }

    #[test]
    fn layers_are_merged_with_their_whiteouts_for_copy_from() {
        let d = tempfile::tempdir().unwrap();
        let (l1, l2) = (d.path().join("l1"), d.path().join("l2"));
        std::fs::create_dir_all(l1.join("etc/opq")).unwrap();
        std::fs::create_dir_all(l1.join("usr/lib")).unwrap();
        std::fs::create_dir_all(l1.join("gone-dir/deep")).unwrap();
        for f in ["etc/a", "etc/b", "etc/opq/x", "usr/lib/libz.so", "gone-dir/deep/f"] {
            std::fs::write(l1.join(f), f).unwrap();
        }
        std::os::unix::fs::symlink("usr/lib", l1.join("lib")).unwrap();
        std::os::unix::fs::symlink("/lib/libz.so", l1.join("zlink")).unwrap();
        std::fs::create_dir_all(l2.join("etc/opq")).unwrap();
        whiteout(&l2.join("etc"), "b");
        whiteout(&l2, "gone-dir");
        assert!(setxattr(&l2.join("etc/opq"), "user.overlay.opaque", b"y"));
        std::fs::write(l2.join("etc/opq/y"), "new").unwrap();
        std::fs::write(l2.join("etc/c"), "c").unwrap();
        std::fs::write(l2.join("etc/a"), "a2").unwrap();
        let layers = vec![l1.clone(), l2.clone()];
        let out = d.path().join("l.tar");
        let es = [
            entry(PackSource::Layers { layers: layers.clone(), path: "/etc".into() }, "/copy"),
            // Through /lib -> usr/lib, as the stage's container would see it; named as the source.
            entry(PackSource::Layers { layers: layers.clone(), path: "/lib/libz.so".into() }, "/z/"),
            entry(PackSource::Layers { layers: layers.clone(), path: "/zlink".into() }, "/z/"),
        ];
        pack_entries(&es, &out, Compress::Gzip).unwrap();
        let l = listing(&out);
        assert_eq!(names(&l), ["copy/", "copy/a", "copy/c", "copy/opq/", "copy/opq/y", "z/", "z/libz.so", "z/zlink"]);
        assert_eq!(l[1].5, b"a2");
        assert_eq!(l[6].5, b"usr/lib/libz.so");
        assert_eq!((l[7].1, &l[7].5[..]), ('0', &b"usr/lib/libz.so"[..]));
        for missing in ["/etc/b", "/gone-dir/deep/f", "/etc/opq/x"] {
            let e = pack_entries(&[entry(PackSource::Layers { layers: layers.clone(), path: missing.into() }, "/m")], &out, Compress::Gzip).unwrap_err();
            assert_eq!(e.code(), crate::codes::EPACK, "{missing}");
        }
    }
}
