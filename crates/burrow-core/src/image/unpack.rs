//! Extracting one layer (a tar stream, gzip- or zstd-compressed or not) into a directory, safely.
//!
//! Safe by construction: every path is resolved from a descriptor of the layer directory with
//! `openat2(RESOLVE_BENEATH)`, so neither `..`, nor an absolute path, nor a symlink (absolute or
//! climbing) met on the way can lead outside it; entries are created with `O_NOFOLLOW`/`O_EXCL`
//! and `linkat` without following. Paths with `..` or a leading `/`, whiteouts naming `.` or
//! `..`, and hard links to anything outside the layer are refused outright with an error naming
//! the entry: a hostile layer fails the pull instead of being half-applied.
//!
//! Whiteouts: in `overlay` mode `.wh.NAME` becomes a 0/0 character device (which the kernel
//! lets a user namespace create) and `.wh..wh..opq` the `user.overlay.opaque` xattr (overlay is
//! mounted with `userxattr`); in `apply` mode (the copy driver extracts every layer onto one tree)
//! they delete. Ownership: `chown` to ids the namespace does not map fails with EINVAL; that is
//! expected in the single-id mode and is counted, not fatal. Device nodes cannot be created
//! without privilege and are skipped and counted; so are `security.*`/`trusted.*` xattrs.

use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{mknodat, Mode, SFlag};
use nix::sys::time::TimeSpec;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::Coded;

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer entry {entry:?} is unsafe: {why}")]
    Unsafe { entry: String, why: String },
    #[error("layer entry {entry:?}: {op}: {errno}")]
    Sys { entry: String, op: &'static str, errno: Errno },
    #[error("reading the layer {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("layer {path}: uncompressed digest is {actual}, the image config says {expected}")]
    DiffId { path: PathBuf, expected: String, actual: String },
}

impl Coded for UnpackError {
    fn code(&self) -> &'static str {
        match self {
            UnpackError::Unsafe { .. } => crate::codes::ELAYER_UNSAFE,
            UnpackError::Sys { .. } => crate::codes::ELAYER_WRITE,
            UnpackError::Read { .. } => crate::codes::ELAYER_CORRUPT,
            UnpackError::DiffId { .. } => crate::codes::EDIGEST_MISMATCH,
        }
    }
}

type Result<T> = std::result::Result<T, UnpackError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    Overlay,
    Apply,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub diff_id: String,
    pub entries: u64,
    pub bytes: u64,
    pub skipped_chown: u64,
    pub skipped_devices: u64,
    pub skipped_xattrs: u64,
}

/// File contents are copied in pieces this large: a few big writes instead of many 8 KiB ones
/// (std's io::copy), and the decompressor fills the buffer directly.
const COPY_BUF: usize = 1 << 20;
/// Decompressed bytes are buffered this much for the tar reader, whose header reads are 512 bytes:
/// the decompressor and the hash then run over big pieces, not over each header.
const TAR_BUF: usize = 128 << 10;

/// Reader that hashes what passes through it (the diff id is the sha256 of the tar stream).
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    n: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
}

/// A blob file that is still being written by its download (burrow's pull, in Node), so that the
/// layer is decompressed and extracted while it arrives. The writer announces on a pipe, a
/// decimal line at a time, how many bytes at the start of the file are written; reading never
/// goes past the last announcement and ends at `size`. A pipe closed before `size` is a failed
/// or abandoned download: reading fails and the layer with it. Nothing read this way is trusted
/// for being in the file: the caller commits the layer only if the download's digest and the
/// stream's diff id both match.
pub struct Following {
    file: File,
    progress: io::BufReader<File>,
    line: String,
    avail: u64,
    pos: u64,
    size: u64,
}

impl Following {
    pub fn new(file: File, progress: File, size: u64) -> Self {
        Following { file, progress: io::BufReader::with_capacity(4096, progress), line: String::new(), avail: 0, pos: 0, size }
    }
}

impl Read for Following {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.avail {
            if self.pos >= self.size {
                return Ok(0);
            }
            self.line.clear();
            if self.progress.read_line(&mut self.line)? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("the download stopped after {} of {} bytes", self.avail, self.size)));
            }
            let n: u64 =
                self.line.trim().parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bad progress line {:?}", self.line.trim())))?;
            if n > self.size {
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("the download announces {n} bytes of a {}-byte blob", self.size)));
            }
            self.avail = self.avail.max(n);
        }
        let want = buf.len().min((self.avail - self.pos) as usize);
        let n = self.file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("the blob file ends at {} bytes, {} were announced", self.pos, self.avail)));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Opens a blob for reading without updating its access time (one inode write less per layer);
/// O_NOATIME needs the file's owner, so anyone else opens it plainly.
fn open_blob(path: &Path) -> io::Result<File> {
    match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOATIME).open(path) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => File::open(path),
        r => r,
    }
}

/// Puts the right decompressor over a blob, chosen by magic bytes (not by media type, which
/// registries and tools get wrong).
fn decompressor<R: Read + 'static>(mut raw: R, path: &Path) -> Result<Box<dyn Read>> {
    let err = |source| UnpackError::Read { path: path.to_path_buf(), source };
    let mut magic = [0u8; 4];
    let mut n = 0;
    // A growing file may hand out fewer bytes than asked: fill the four, or reach the end.
    while n < magic.len() {
        match raw.read(&mut magic[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(err(e)),
        }
    }
    let head = io::Cursor::new(magic[..n].to_vec());
    let stream = io::BufReader::with_capacity(256 * 1024, head.chain(raw));
    Ok(if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        Box::new(flate2::bufread::MultiGzDecoder::new(stream))
    } else if n >= 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        Box::new(zstd::stream::read::Decoder::with_buffer(stream).map_err(err)?)
    } else {
        Box::new(stream)
    })
}

/// The entry's path split into safe components; errors for `..` and absolute paths.
fn components(entry: &Path) -> Result<Vec<&OsStr>> {
    let mut out = Vec::new();
    for c in entry.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            Component::ParentDir => return Err(unsafe_entry(entry, "it contains '..'")),
            Component::RootDir | Component::Prefix(_) => return Err(unsafe_entry(entry, "it is an absolute path")),
        }
    }
    Ok(out)
}

fn unsafe_entry(entry: &Path, why: &str) -> UnpackError {
    UnpackError::Unsafe { entry: entry.display().to_string(), why: why.into() }
}

/// A directory entry's metadata, applied once everything is extracted.
struct DirMeta {
    rel: PathBuf,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
    /// Whether the mode it was created with differs from `mode` (or it existed already).
    chmod: bool,
}

struct Extractor {
    root: OwnedFd,
    mode: Whiteouts,
    stats: Stats,
    /// Directories whose metadata is applied at the end (children first), since a read-only
    /// directory mode would stop us creating its children and creating them changes mtimes.
    dirs: Vec<DirMeta>,
    /// Paths this layer created, which an opaque marker in apply mode must not delete (only
    /// kept in apply mode).
    created: HashSet<PathBuf>,
    warned: HashSet<&'static str>,
    /// The parent directory of the last entry: archives list a directory's entries together,
    /// so most entries need no path walk at all. A descriptor, not a path: what it names cannot
    /// be swapped for a symlink under us.
    parent: Option<(PathBuf, OwnedFd)>,
    /// Set when a directory was removed: the cached parent may be that directory (or inside it).
    stale: Cell<bool>,
    /// The owner our new files and directories get by themselves, when nothing can make it
    /// otherwise (an empty destination that is not set-group-id): entries with that owner need
    /// no chown. None: every entry is chowned.
    owner: Option<(u64, u64)>,
    /// The process umask, which new files' modes pass through: when it took bits away, chmod.
    umask: u32,
    buf: Vec<u8>,
}

/// The process umask without changing it (umask(2) can only read by setting, which would race
/// with other threads creating files): /proc/self/status has it. Unknown: assume everything is
/// masked, so every mode is set explicitly.
fn current_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Umask:").and_then(|v| u32::from_str_radix(v.trim(), 8).ok())))
        .unwrap_or(0o777)
}

/// Copies a file's data with big reads and writes; errors say which side failed.
fn copy_data<R: Read>(r: &mut R, w: &mut File, buf: &mut [u8]) -> std::result::Result<u64, (bool, io::Error)> {
    let mut total = 0u64;
    loop {
        let n = match r.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err((true, e)),
        };
        w.write_all(&buf[..n]).map_err(|e| (false, e))?;
        total += n as u64;
    }
}

impl Extractor {
    fn new(root: OwnedFd, mode: Whiteouts) -> Result<Extractor> {
        let e = |op, errno| UnpackError::Sys { entry: ".".into(), op, errno };
        let st = nix::sys::stat::fstat(root.as_raw_fd()).map_err(|x| e("stat", x))?;
        // An empty destination that does not pass its group on: what we create is ours (the
        // effective ids), and stays so until finish_dirs chowns the directories, after their
        // contents. A filesystem mounted with grpid gives new files the directory's group: the
        // root's, checked here too.
        let euid = nix::unistd::geteuid().as_raw();
        let egid = nix::unistd::getegid().as_raw();
        let empty = {
            let how = OpenHow::new().flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC);
            let fd = openat2(root.as_raw_fd(), ".", how).map_err(|x| e("open", x))?;
            let mut d = nix::dir::Dir::from_fd(fd).map_err(|x| e("readdir", x))?;
            let mut any = false;
            for ent in d.iter() {
                let ent = ent.map_err(|x| e("readdir", x))?;
                if ent.file_name().to_bytes() != b"." && ent.file_name().to_bytes() != b".." {
                    any = true;
                    break;
                }
            }
            !any
        };
        let owner = (empty && st.st_mode & libc::S_ISGID == 0 && st.st_uid == euid && st.st_gid == egid).then_some((euid as u64, egid as u64));
        Ok(Extractor {
            root,
            mode,
            stats: Stats::default(),
            dirs: Vec::new(),
            created: HashSet::new(),
            warned: HashSet::new(),
            parent: None,
            stale: Cell::new(false),
            owner,
            umask: current_umask(),
            buf: vec![0; COPY_BUF],
        })
    }

    fn needs_chown(&self, uid: u64, gid: u64) -> bool {
        self.owner != Some((uid, gid))
    }

    fn track(&mut self, rel: PathBuf) {
        if self.mode == Whiteouts::Apply {
            self.created.insert(rel);
        }
    }

    /// The parent directory `parts` (created if missing), through the one-entry cache. The
    /// descriptor stays valid until the next call.
    fn dir(&mut self, parts: &[&OsStr], entry: &Path) -> Result<RawFd> {
        if !self.stale.get() {
            if let Some((p, fd)) = &self.parent {
                if p.iter().eq(parts.iter().copied()) {
                    return Ok(fd.as_raw_fd());
                }
            }
        }
        let fd = self.open_dir(parts, entry)?;
        self.stale.set(false);
        Ok(self.parent.insert((parts.iter().collect(), fd)).1.as_raw_fd())
    }

    /// Opens a directory under the root without leaving it, creating missing components.
    fn open_dir(&mut self, parts: &[&OsStr], entry: &Path) -> Result<OwnedFd> {
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let rel: PathBuf = parts.iter().collect();
        if rel.as_os_str().is_empty() {
            return dup(self.root.as_raw_fd(), entry);
        }
        match openat2(self.root.as_raw_fd(), &rel, how) {
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
            Err(Errno::ENOENT) => {}
            Err(Errno::EXDEV) | Err(Errno::ELOOP) => return Err(unsafe_entry(entry, "its directory is reached through a symlink that leaves the layer")),
            Err(Errno::ENOTDIR) => return Err(unsafe_entry(entry, "a parent is not a directory")),
            Err(e) => return Err(UnpackError::Sys { entry: entry.display().to_string(), op: "open parent", errno: e }),
        }
        // Create the missing chain one component at a time, each beneath the previous.
        let mut cur = dup(self.root.as_raw_fd(), entry)?;
        for (i, p) in parts.iter().enumerate() {
            match nix::sys::stat::mkdirat(Some(cur.as_raw_fd()), *p, Mode::from_bits_truncate(0o755)) {
                Ok(()) => self.track(parts[..=i].iter().collect()),
                Err(Errno::EEXIST) => {}
                Err(e) => return Err(UnpackError::Sys { entry: entry.display().to_string(), op: "mkdir", errno: e }),
            }
            let fd = openat2(cur.as_raw_fd(), *p, how).map_err(|e| match e {
                Errno::EXDEV | Errno::ELOOP => unsafe_entry(entry, "its directory is reached through a symlink that leaves the layer"),
                e => UnpackError::Sys { entry: entry.display().to_string(), op: "open parent", errno: e },
            })?;
            cur = unsafe { OwnedFd::from_raw_fd(fd) };
        }
        Ok(cur)
    }

    /// Removes whatever is at `name` (recursively for directories).
    fn remove(&self, parent: RawFd, name: &OsStr, entry: &Path) -> Result<()> {
        match nix::unistd::unlinkat(Some(parent), name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(Errno::EISDIR) | Err(Errno::EPERM) => {
                self.stale.set(true);
                let how =
                    OpenHow::new().flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).resolve(ResolveFlag::RESOLVE_BENEATH);
                let fd = openat2(parent, name, how).map_err(|e| UnpackError::Sys { entry: entry.display().to_string(), op: "open for removal", errno: e })?;
                let dirfd = unsafe { OwnedFd::from_raw_fd(fd) };
                self.clear(dirfd.as_raw_fd(), None, entry)?;
                nix::unistd::unlinkat(Some(parent), name, nix::unistd::UnlinkatFlags::RemoveDir).map_err(|e| UnpackError::Sys {
                    entry: entry.display().to_string(),
                    op: "rmdir",
                    errno: e,
                })
            }
            Err(e) => Err(UnpackError::Sys { entry: entry.display().to_string(), op: "unlink", errno: e }),
        }
    }

    /// Deletes a directory's children, except those `keep` says this layer made.
    fn clear(&self, dirfd: RawFd, keep: Option<(&Path, &HashSet<PathBuf>)>, entry: &Path) -> Result<()> {
        // `dirfd` may be an O_PATH descriptor, which cannot be read: open the directory itself.
        let how = OpenHow::new().flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC).resolve(ResolveFlag::RESOLVE_BENEATH);
        let rd = openat2(dirfd, ".", how).map_err(|e| UnpackError::Sys { entry: entry.display().to_string(), op: "open directory", errno: e })?;
        let mut d = nix::dir::Dir::from_fd(rd).map_err(|e| UnpackError::Sys { entry: entry.display().to_string(), op: "readdir", errno: e })?;
        let names: Vec<CString> = d
            .iter()
            .map(|e| e.map_err(|errno| UnpackError::Sys { entry: entry.display().to_string(), op: "readdir", errno }))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .map(|e| e.file_name().to_owned())
            .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
            .collect();
        for n in names {
            let name = OsStr::from_bytes(n.as_bytes());
            if let Some((base, set)) = keep {
                if set.contains(&base.join(name)) {
                    continue;
                }
            }
            self.remove(dirfd, name, entry)?;
        }
        Ok(())
    }

    /// Runs a creating call; when the name is taken (an earlier entry of this layer, or in apply
    /// mode a lower layer's file), removes what is there and runs it once more. Removing only
    /// then, not before every entry, saves an unlink per entry.
    fn create<T>(&self, parent: RawFd, name: &OsStr, entry: &Path, op: &'static str, mut f: impl FnMut() -> nix::Result<T>) -> Result<T> {
        match f() {
            Err(Errno::EEXIST) => {
                self.remove(parent, name, entry)?;
                f()
            }
            r => r,
        }
        .map_err(|errno| UnpackError::Sys { entry: entry.display().to_string(), op, errno })
    }

    fn warn_once(&mut self, what: &'static str) {
        if self.warned.insert(what) {
            eprintln!("burrow-runtime unpack: warning: {what}");
        }
    }

    /// Counts an id the namespace does not map (single-id mode): never fatal.
    fn chown_result(&mut self, r: nix::Result<()>, entry: &Path) -> Result<()> {
        match r {
            Ok(()) => Ok(()),
            Err(Errno::EINVAL) | Err(Errno::EPERM) => {
                self.stats.skipped_chown += 1;
                Ok(())
            }
            Err(e) => Err(UnpackError::Sys { entry: entry.display().to_string(), op: "chown", errno: e }),
        }
    }

    fn chown(&mut self, parent: RawFd, name: &OsStr, uid: u64, gid: u64, entry: &Path) -> Result<()> {
        let r = nix::unistd::fchownat(Some(parent), name, Some((uid as u32).into()), Some((gid as u32).into()), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW);
        self.chown_result(r, entry)
    }

    fn times(&self, parent: RawFd, name: &OsStr, mtime: i64) {
        let t = TimeSpec::new(mtime, 0);
        let _ = nix::sys::stat::utimensat(Some(parent), name, &t, &t, nix::sys::stat::UtimensatFlags::NoFollowSymlink);
    }

    fn entry<R: Read>(&mut self, mut e: tar::Entry<R>) -> Result<()> {
        let path = e.path().map_err(|source| UnpackError::Read { path: PathBuf::from("(entry name)"), source })?.into_owned();
        let parts = components(&path)?;
        let Some((&name, parents)) = parts.split_last() else { return Ok(()) };
        let h = e.header();
        let kind = h.entry_type();
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let uid = h.uid().unwrap_or(0);
        let gid = h.gid().unwrap_or(0);
        let mtime = h.mtime().unwrap_or(0) as i64;
        self.stats.entries += 1;

        // Whiteouts.
        let nb = name.as_bytes();
        if nb.starts_with(b".wh.") {
            let parent = self.dir(parents, &path)?;
            if nb == b".wh..wh..opq" {
                let base: PathBuf = parents.iter().collect();
                return self.opaque(parent, &base, &path);
            }
            let target = OsStr::from_bytes(&nb[4..]);
            if target.is_empty() || target == "." || target == ".." {
                return Err(unsafe_entry(&path, "a whiteout must name a file, not '.' or '..'"));
            }
            self.remove(parent, target, &path)?;
            if self.mode == Whiteouts::Overlay {
                mknodat(Some(parent), target, SFlag::S_IFCHR, Mode::empty(), nix::sys::stat::makedev(0, 0)).map_err(|e| UnpackError::Sys {
                    entry: path.display().to_string(),
                    op: "create whiteout",
                    errno: e,
                })?;
            }
            return Ok(());
        }

        let pfd = self.dir(parents, &path)?;
        let entry_name = path.display().to_string();
        let sys = |op: &'static str| {
            let entry = entry_name.clone();
            move |errno| UnpackError::Sys { entry, op, errno }
        };

        if kind.is_dir() {
            // Created writable and searchable by us whatever the entry says (its children come
            // next); the entry's mode is applied at the end only if this is not it already.
            let create = (mode & 0o1777) | 0o700;
            let fresh = match nix::sys::stat::mkdirat(Some(pfd), name, Mode::from_bits_truncate(create)) {
                Ok(()) => true,
                Err(Errno::EEXIST) => {
                    // An existing non-directory in the way (from an earlier entry) is replaced.
                    let st = nix::sys::stat::fstatat(Some(pfd), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).map_err(sys("stat"))?;
                    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                        self.remove(pfd, name, &path)?;
                        nix::sys::stat::mkdirat(Some(pfd), name, Mode::from_bits_truncate(create)).map_err(sys("mkdir"))?;
                    }
                    false
                }
                Err(e) => return Err(sys("mkdir")(e)),
            };
            let rel: PathBuf = parts.iter().collect();
            self.track(rel.clone());
            self.dirs.push(DirMeta { rel, mode, uid, gid, mtime, chmod: !fresh || create & !self.umask != mode });
            self.xattrs(&mut e, pfd, name, &path, true)?;
            return Ok(());
        }

        if self.mode == Whiteouts::Apply {
            self.created.insert(parts.iter().collect());
        }
        if kind.is_file() || kind == tar::EntryType::Continuous || kind.is_gnu_sparse() {
            // Created with its permission bits; set-id bits and what the umask took are set
            // after the data (and after chown, which clears set-id bits).
            let chown = self.needs_chown(uid, gid);
            let how = OpenHow::new()
                .flags(OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
                .mode(Mode::from_bits_truncate(mode & 0o777))
                .resolve(ResolveFlag::RESOLVE_BENEATH);
            let fd = self.create(pfd, name, &path, "create", || openat2(pfd, name, how))?;
            let mut f = unsafe { File::from_raw_fd(fd) };
            let n = copy_data(&mut e, &mut f, &mut self.buf).map_err(|(read, source)| {
                if read {
                    UnpackError::Read { path: path.clone(), source }
                } else {
                    UnpackError::Sys { entry: entry_name.clone(), op: "write", errno: Errno::from_raw(source.raw_os_error().unwrap_or(libc::EIO)) }
                }
            })?;
            self.stats.bytes += n;
            self.xattrs(&mut e, pfd, name, &path, false)?;
            if chown {
                let r = nix::unistd::fchown(f.as_raw_fd(), Some((uid as u32).into()), Some((gid as u32).into()));
                self.chown_result(r, &path)?;
            }
            if chown || mode & 0o7000 != 0 || mode & 0o777 & self.umask != 0 {
                nix::sys::stat::fchmod(f.as_raw_fd(), Mode::from_bits_truncate(mode)).map_err(sys("chmod"))?;
            }
            let t = TimeSpec::new(mtime, 0);
            let _ = nix::sys::stat::futimens(f.as_raw_fd(), &t, &t);
        } else if kind.is_symlink() {
            let target = e.link_name().map_err(|source| UnpackError::Read { path: path.clone(), source })?.unwrap_or_default().into_owned();
            self.create(pfd, name, &path, "symlink", || nix::unistd::symlinkat(&target, Some(pfd), name))?;
            if self.needs_chown(uid, gid) {
                self.chown(pfd, name, uid, gid, &path)?;
            }
            self.times(pfd, name, mtime);
        } else if kind.is_hard_link() {
            let target = e.link_name().map_err(|source| UnpackError::Read { path: path.clone(), source })?.unwrap_or_default().into_owned();
            // Hard link names are archive paths: relative to the layer, never outside it.
            let tparts = components(&target).map_err(|_| unsafe_entry(&path, &format!("hard link to {} leaves the layer", target.display())))?;
            let Some((&tname, tparents)) = tparts.split_last() else { return Err(unsafe_entry(&path, "hard link to the layer root")) };
            // Not through the cache: `pfd` must stay open.
            let tparent = self.open_dir(tparents, &path)?;
            match self.create(pfd, name, &path, "link", || nix::unistd::linkat(Some(tparent.as_raw_fd()), tname, Some(pfd), name, nix::fcntl::AtFlags::empty()))
            {
                Ok(()) => {}
                Err(UnpackError::Sys { errno: Errno::ENOENT, .. }) => {
                    return Err(unsafe_entry(&path, &format!("hard link target {} is not in this layer", target.display())))
                }
                Err(e) => return Err(e),
            }
        } else if kind.is_fifo() {
            self.create(pfd, name, &path, "mkfifo", || mknodat(Some(pfd), name, SFlag::S_IFIFO, Mode::from_bits_truncate(mode), 0))?;
            if self.needs_chown(uid, gid) {
                self.chown(pfd, name, uid, gid, &path)?;
            }
        } else if kind.is_character_special() || kind.is_block_special() {
            // What was there is gone either way, as the layer says.
            self.remove(pfd, name, &path)?;
            self.stats.skipped_devices += 1;
            self.warn_once("device nodes in the layer were skipped: burrow never creates device nodes from an image (rootless it cannot; a container gets its devices from the runtime)");
        } else if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() || kind.is_gnu_longname() || kind.is_gnu_longlink() {
            // Consumed by the tar reader.
        }
        Ok(())
    }

    fn xattrs<R: Read>(&mut self, e: &mut tar::Entry<R>, pfd: RawFd, name: &OsStr, path: &Path, dir: bool) -> Result<()> {
        let Ok(Some(exts)) = e.pax_extensions() else { return Ok(()) };
        let mut set = Vec::new();
        for x in exts.flatten() {
            let Ok(key) = x.key() else { continue };
            if let Some(attr) = key.strip_prefix("SCHILY.xattr.") {
                set.push((attr.to_string(), x.value_bytes().to_vec()));
            }
        }
        for (attr, value) in set {
            if !attr.starts_with("user.") {
                self.stats.skipped_xattrs += 1;
                self.warn_once("security.* and trusted.* extended attributes in the layer were skipped (not settable rootless)");
                continue;
            }
            let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | if dir { OFlag::O_DIRECTORY } else { OFlag::empty() };
            let Ok(fd) = openat2(pfd, name, OpenHow::new().flags(flags).resolve(ResolveFlag::RESOLVE_BENEATH)) else { continue };
            let f = unsafe { OwnedFd::from_raw_fd(fd) };
            let a = CString::new(attr.clone()).unwrap_or_default();
            // SAFETY: valid descriptor, NUL-terminated name, value pointer and length.
            let r = unsafe { libc::fsetxattr(f.as_raw_fd(), a.as_ptr(), value.as_ptr() as *const libc::c_void, value.len(), 0) };
            if r != 0 {
                return Err(UnpackError::Sys { entry: path.display().to_string(), op: "setxattr", errno: Errno::last() });
            }
        }
        Ok(())
    }

    fn opaque(&mut self, parent: RawFd, base: &Path, entry: &Path) -> Result<()> {
        match self.mode {
            Whiteouts::Overlay => {
                let how = OpenHow::new().flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC).resolve(ResolveFlag::RESOLVE_BENEATH);
                let fd = openat2(parent, ".", how).map_err(|e| UnpackError::Sys { entry: entry.display().to_string(), op: "open", errno: e })?;
                let f = unsafe { OwnedFd::from_raw_fd(fd) };
                // SAFETY: valid descriptor and NUL-terminated strings.
                let r = unsafe { libc::fsetxattr(f.as_raw_fd(), c"user.overlay.opaque".as_ptr(), b"y".as_ptr() as *const libc::c_void, 1, 0) };
                if r != 0 {
                    return Err(UnpackError::Sys { entry: entry.display().to_string(), op: "set user.overlay.opaque", errno: Errno::last() });
                }
                Ok(())
            }
            Whiteouts::Apply => {
                let created = std::mem::take(&mut self.created);
                let r = self.clear(parent, Some((base, &created)), entry);
                self.created = created;
                r
            }
        }
    }

    /// Applies directory entries' owners, modes and times, children first. Each directory is
    /// opened without following symlinks: a later entry may have replaced it with one, and its
    /// metadata must then go nowhere rather than to the symlink's target.
    fn finish_dirs(&mut self) -> Result<()> {
        let dirs = std::mem::take(&mut self.dirs);
        for d in dirs.into_iter().rev() {
            let parts: Vec<&OsStr> = d.rel.iter().collect();
            let Some((&name, parents)) = parts.split_last() else { continue };
            let chown = self.needs_chown(d.uid, d.gid);
            if !chown && !d.chmod {
                let parent = self.dir(parents, &d.rel)?;
                self.times(parent, name, d.mtime);
                continue;
            }
            let parent = self.dir(parents, &d.rel)?;
            let how = OpenHow::new().flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).resolve(ResolveFlag::RESOLVE_BENEATH);
            let fd = match openat2(parent, name, how) {
                Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
                // Replaced by a non-directory or removed by a later entry.
                Err(Errno::ENOTDIR) | Err(Errno::ELOOP) | Err(Errno::ENOENT) => continue,
                Err(e) => return Err(UnpackError::Sys { entry: d.rel.display().to_string(), op: "open directory", errno: e }),
            };
            if chown {
                let r = nix::unistd::fchown(fd.as_raw_fd(), Some((d.uid as u32).into()), Some((d.gid as u32).into()));
                self.chown_result(r, &d.rel)?;
            }
            nix::sys::stat::fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(d.mode)).map_err(|e| UnpackError::Sys {
                entry: d.rel.display().to_string(),
                op: "chmod",
                errno: e,
            })?;
            let t = TimeSpec::new(d.mtime, 0);
            let _ = nix::sys::stat::futimens(fd.as_raw_fd(), &t, &t);
        }
        Ok(())
    }
}

fn dup(fd: RawFd, entry: &Path) -> Result<OwnedFd> {
    let how = OpenHow::new().flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC);
    openat2(fd, ".", how).map(|f| unsafe { OwnedFd::from_raw_fd(f) }).map_err(|e| UnpackError::Sys { entry: entry.display().to_string(), op: "open", errno: e })
}

/// Extracts `blob` into the existing directory `dest`. When `expected_diff_id` is given, the
/// uncompressed stream's digest must match it (the caller then trusts the directory).
pub fn unpack(blob: &Path, dest: &Path, mode: Whiteouts, expected_diff_id: Option<&str>) -> Result<Stats> {
    let f = open_blob(blob).map_err(|source| UnpackError::Read { path: blob.to_path_buf(), source })?;
    unpack_from(f, blob, dest, mode, expected_diff_id)
}

/// Like `unpack`, from a blob still being downloaded (see `Following`): `file` is the blob file
/// (`blob` names it in messages), `progress` the pipe its writer announces written lengths on,
/// `size` the blob's size.
pub fn unpack_following(blob: &Path, file: File, progress: File, size: u64, dest: &Path, mode: Whiteouts, expected_diff_id: Option<&str>) -> Result<Stats> {
    unpack_from(Following::new(file, progress, size), blob, dest, mode, expected_diff_id)
}

fn unpack_from<R: Read + 'static>(raw: R, blob: &Path, dest: &Path, mode: Whiteouts, expected_diff_id: Option<&str>) -> Result<Stats> {
    let read_err = |source| UnpackError::Read { path: blob.to_path_buf(), source };
    let stream = decompressor(raw, blob)?;
    let mut tarred = io::BufReader::with_capacity(TAR_BUF, Hashing { inner: stream, hasher: Sha256::new(), n: 0 });
    let root = File::open(dest).map_err(|source| UnpackError::Read { path: dest.to_path_buf(), source })?;
    let mut x = Extractor::new(OwnedFd::from(root), mode)?;
    {
        let mut archive = tar::Archive::new(&mut tarred);
        let entries = archive.entries().map_err(read_err)?;
        for e in entries {
            x.entry(e.map_err(read_err)?)?;
        }
    }
    // The digest covers the whole stream, including the end-of-archive padding.
    io::copy(&mut tarred, &mut io::sink()).map_err(read_err)?;
    x.finish_dirs()?;
    let actual = format!("sha256:{}", hex(&tarred.into_inner().hasher.finalize()));
    if let Some(exp) = expected_diff_id {
        if exp != actual {
            return Err(UnpackError::DiffId { path: blob.to_path_buf(), expected: exp.into(), actual });
        }
    }
    x.stats.diff_id = actual;
    Ok(x.stats)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    /// A tar entry with a raw name (the tar crate's own setters refuse hostile names).
    fn raw(b: &mut tar::Builder<Vec<u8>>, name: &str, kind: tar::EntryType, link: &str, data: &[u8], mode: u32) {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        if !link.is_empty() {
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(nix::unistd::getuid().as_raw() as u64);
        h.set_gid(nix::unistd::getgid().as_raw() as u64);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    fn layer(entries: &[(&str, tar::EntryType, &str, &[u8], u32)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (n, k, l, d, m) in entries {
            raw(&mut b, n, *k, l, d, *m);
        }
        b.into_inner().unwrap()
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn sha(data: &[u8]) -> String {
        format!("sha256:{}", hex(&Sha256::digest(data)))
    }

    fn extract(tar: &[u8], mode: Whiteouts) -> (tempfile::TempDir, Result<Stats>) {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("blob"), tar).unwrap();
        std::fs::create_dir(t.path().join("out")).unwrap();
        let r = unpack(&t.path().join("blob"), &t.path().join("out"), mode, None);
        (t, r)
    }

    use tar::EntryType as T;

    #[test]
    fn regular_layer_with_links_modes_and_diff_id() {
        let tar = layer(&[
            ("etc/", T::Directory, "", b"", 0o755),
            ("etc/motd", T::Regular, "", b"hello\n", 0o640),
            ("etc/motd2", T::Link, "etc/motd", b"", 0o640),
            ("bin/", T::Directory, "", b"", 0o555),
            ("bin/tool", T::Regular, "", b"#!x", 0o4755),
            ("bin/alias", T::Symlink, "tool", b"", 0o777),
            ("abs", T::Symlink, "/etc/motd", b"", 0o777),
            ("fifo", T::Fifo, "", b"", 0o600),
        ]);
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("blob"), gz(&tar)).unwrap();
        std::fs::create_dir(t.path().join("out")).unwrap();
        let st = unpack(&t.path().join("blob"), &t.path().join("out"), Whiteouts::Overlay, Some(&sha(&tar))).unwrap();
        let o = t.path().join("out");
        assert_eq!(st.diff_id, sha(&tar));
        assert_eq!(std::fs::read_to_string(o.join("etc/motd")).unwrap(), "hello\n");
        let m = std::fs::metadata(o.join("etc/motd")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o640);
        assert_eq!(m.mtime(), 1_600_000_000);
        assert_eq!(m.ino(), std::fs::metadata(o.join("etc/motd2")).unwrap().ino(), "hard link");
        assert_eq!(std::fs::metadata(o.join("bin")).unwrap().mode() & 0o7777, 0o555, "directory mode applied last");
        assert_eq!(std::fs::metadata(o.join("bin/tool")).unwrap().mode() & 0o7777, 0o4755);
        assert_eq!(std::fs::read_link(o.join("bin/alias")).unwrap(), Path::new("tool"));
        assert_eq!(std::fs::read_link(o.join("abs")).unwrap(), Path::new("/etc/motd"), "absolute symlinks are kept as they are");
        assert!(std::fs::symlink_metadata(o.join("fifo")).unwrap().file_type().is_fifo());
        std::fs::set_permissions(o.join("bin"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let wrong = unpack(&t.path().join("blob"), &t.path().join("out"), Whiteouts::Overlay, Some("sha256:00"));
        assert!(matches!(wrong, Err(UnpackError::DiffId { .. })));
    }

    #[test]
    fn zstd_is_detected() {
        let tar = layer(&[("z", T::Regular, "", b"zstd data", 0o644)]);
        let (t, r) = extract(&zstd::encode_all(&tar[..], 3).unwrap(), Whiteouts::Overlay);
        assert_eq!(r.unwrap().diff_id, sha(&tar));
        assert_eq!(std::fs::read(t.path().join("out/z")).unwrap(), b"zstd data");
    }

    #[test]
    fn overlay_whiteouts() {
        let tar = layer(&[("d/", T::Directory, "", b"", 0o755), ("d/.wh..wh..opq", T::Regular, "", b"", 0o644), ("d/.wh.gone", T::Regular, "", b"", 0o644)]);
        let (t, r) = extract(&tar, Whiteouts::Overlay);
        r.unwrap();
        let wh = std::fs::symlink_metadata(t.path().join("out/d/gone")).unwrap();
        assert!(wh.file_type().is_char_device());
        assert_eq!(wh.rdev(), 0);
        let mut buf = [0u8; 4];
        let p = CString::new(t.path().join("out/d").as_os_str().as_bytes()).unwrap();
        let n = unsafe { libc::getxattr(p.as_ptr(), c"user.overlay.opaque".as_ptr(), buf.as_mut_ptr() as *mut libc::c_void, 4) };
        assert_eq!(&buf[..n as usize], b"y");
    }

    #[test]
    fn apply_mode_deletes_and_keeps_this_layers_files() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("out");
        std::fs::create_dir_all(out.join("d/old")).unwrap();
        std::fs::write(out.join("d/lower"), "x").unwrap();
        std::fs::write(out.join("gone"), "x").unwrap();
        let tar = layer(&[
            ("d/", T::Directory, "", b"", 0o755),
            ("d/new", T::Regular, "", b"n", 0o644),
            ("d/.wh..wh..opq", T::Regular, "", b"", 0o644),
            (".wh.gone", T::Regular, "", b"", 0o644),
        ]);
        std::fs::write(t.path().join("blob"), &tar).unwrap();
        unpack(&t.path().join("blob"), &out, Whiteouts::Apply, None).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(out.join("d")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, vec!["new"]);
        assert!(!out.join("gone").exists());
    }

    #[test]
    fn hostile_entries_are_refused_and_nothing_escapes() {
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().display().to_string();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (layer(&[("../escape", T::Regular, "", b"x", 0o644)]), "'..'"),
            (layer(&[("a/../../escape", T::Regular, "", b"x", 0o644)]), "'..'"),
            (layer(&[("/abs", T::Regular, "", b"x", 0o644)]), "absolute"),
            (layer(&[("link", T::Symlink, &target, b"", 0o777), ("link/evil", T::Regular, "", b"x", 0o644)]), "symlink"),
            (layer(&[("up", T::Symlink, "../../../../../../..", b"", 0o777), ("up/evil", T::Regular, "", b"x", 0o644)]), "symlink"),
            (layer(&[("hl", T::Link, "../../etc/passwd", b"", 0o644)]), "leaves the layer"),
            (layer(&[("hl", T::Link, "etc/passwd", b"", 0o644)]), "not in this layer"),
            (layer(&[(".wh...", T::Regular, "", b"", 0o644)]), "'..'"),
        ];
        for (tar, why) in cases {
            let (_t, r) = extract(&tar, Whiteouts::Overlay);
            let e = r.expect_err(why);
            assert!(matches!(e, UnpackError::Unsafe { .. }), "{e}");
            assert!(e.to_string().contains(why), "{e} should mention {why}");
            assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "nothing written outside");
        }
    }

    #[test]
    fn devices_are_skipped_and_counted() {
        let tar = layer(&[("dev/", T::Directory, "", b"", 0o755), ("dev/null", T::Char, "", b"", 0o666)]);
        let (t, r) = extract(&tar, Whiteouts::Overlay);
        assert_eq!(r.unwrap().skipped_devices, 1);
        assert!(!t.path().join("out/dev/null").exists());
    }

    #[test]
    fn a_directory_replaced_by_a_symlink_keeps_its_metadata_inside() {
        // "a/" (mode 0777), then "a" as a symlink to a directory outside: the directory's mode,
        // applied at the end, must not follow the symlink to its target.
        let outside = tempfile::tempdir().unwrap();
        std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let target = outside.path().display().to_string();
        let tar = layer(&[("a/", T::Directory, "", b"", 0o777), ("a", T::Symlink, &target, b"", 0o777)]);
        let (t, r) = extract(&tar, Whiteouts::Overlay);
        r.unwrap();
        assert_eq!(std::fs::read_link(t.path().join("out/a")).unwrap(), outside.path());
        assert_eq!(std::fs::metadata(outside.path()).unwrap().mode() & 0o7777, 0o700, "the symlink's target is untouched");
    }

    #[test]
    fn later_entries_replace_earlier_ones() {
        let tar = layer(&[
            ("x", T::Regular, "", b"first", 0o644),
            ("x", T::Regular, "", b"second", 0o600),
            ("d", T::Regular, "", b"a file first", 0o644),
            ("d/", T::Directory, "", b"", 0o750),
            ("d/in", T::Regular, "", b"in d", 0o644),
            ("e/", T::Directory, "", b"", 0o755),
            ("e/gone", T::Regular, "", b"removed with e", 0o644),
            ("e", T::Symlink, "x", b"", 0o777),
            ("f", T::Symlink, "x", b"", 0o777),
            ("f", T::Link, "x", b"", 0o644),
        ]);
        let (t, r) = extract(&tar, Whiteouts::Overlay);
        r.unwrap();
        let o = t.path().join("out");
        assert_eq!(std::fs::read_to_string(o.join("x")).unwrap(), "second");
        assert_eq!(std::fs::metadata(o.join("x")).unwrap().mode() & 0o7777, 0o600);
        assert_eq!(std::fs::read_to_string(o.join("d/in")).unwrap(), "in d");
        assert_eq!(std::fs::metadata(o.join("d")).unwrap().mode() & 0o7777, 0o750);
        assert_eq!(std::fs::read_link(o.join("e")).unwrap(), Path::new("x"));
        assert_eq!(std::fs::metadata(o.join("f")).unwrap().ino(), std::fs::metadata(o.join("x")).unwrap().ino());
    }

    #[test]
    fn a_directory_replaced_by_a_file_is_not_written_into() {
        // The parent-directory cache must not keep using a directory a later entry removed.
        let tar = layer(&[
            ("a/", T::Directory, "", b"", 0o755),
            ("a/b", T::Regular, "", b"1", 0o644),
            ("a", T::Regular, "", b"now a file", 0o644),
            ("a/c", T::Regular, "", b"2", 0o644),
        ]);
        let (_t, r) = extract(&tar, Whiteouts::Overlay);
        let e = r.expect_err("a/c has no directory");
        assert!(matches!(e, UnpackError::Unsafe { .. }), "{e}");
    }

    #[test]
    fn modes_are_exact_whatever_the_umask() {
        // umask 022 here: modes it would cut, and set-id and sticky bits, must still come out.
        let tar = layer(&[
            ("rw", T::Regular, "", b"", 0o666),
            ("x", T::Regular, "", b"", 0o777),
            ("suid", T::Regular, "", b"", 0o4755),
            ("ro", T::Regular, "", b"", 0o444),
            ("shared/", T::Directory, "", b"", 0o2775),
            ("tmp/", T::Directory, "", b"", 0o1777),
            ("locked/", T::Directory, "", b"", 0o500),
            ("locked/inside", T::Regular, "", b"made before the mode", 0o400),
        ]);
        let (t, r) = extract(&tar, Whiteouts::Overlay);
        r.unwrap();
        let o = t.path().join("out");
        let m = |p: &str| std::fs::symlink_metadata(o.join(p)).unwrap().mode() & 0o7777;
        assert_eq!((m("rw"), m("x"), m("suid"), m("ro")), (0o666, 0o777, 0o4755, 0o444));
        assert_eq!((m("shared"), m("tmp"), m("locked"), m("locked/inside")), (0o2775, 0o1777, 0o500, 0o400));
        std::fs::set_permissions(o.join("locked"), std::fs::Permissions::from_mode(0o700)).unwrap();
    }

    #[test]
    fn owners_other_than_ours_are_applied_or_counted() {
        let me = nix::unistd::geteuid().as_raw() as u64;
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, uid) in [("mine", T::Regular, me), ("theirs", T::Regular, 4242), ("theirdir/", T::Directory, 4242), ("theirlink", T::Symlink, 4242)] {
            let mut h = tar::Header::new_ustar();
            h.set_path(name).unwrap();
            h.set_entry_type(kind);
            if kind == T::Symlink {
                h.set_link_name("mine").unwrap();
            }
            h.set_size(0);
            h.set_mode(0o755);
            h.set_uid(uid);
            h.set_gid(uid);
            h.set_mtime(1_600_000_000);
            h.set_cksum();
            b.append(&h, &b""[..]).unwrap();
        }
        let (t, r) = extract(&b.into_inner().unwrap(), Whiteouts::Overlay);
        let st = r.unwrap();
        let o = t.path().join("out");
        if me == 0 {
            assert_eq!(st.skipped_chown, 0);
            for p in ["theirs", "theirdir", "theirlink"] {
                assert_eq!(std::fs::symlink_metadata(o.join(p)).unwrap().uid(), 4242, "{p}");
            }
        } else {
            // Not ours to give away: tried and counted, one per foreign entry.
            assert_eq!(st.skipped_chown, 3);
        }
        assert_eq!(std::fs::metadata(o.join("mine")).unwrap().uid() as u64, me);
        assert_eq!(std::fs::metadata(o.join("theirdir")).unwrap().mtime(), 1_600_000_000);
    }

    /// Writes `blob` into a file in pieces from another thread, announcing each on a pipe, and
    /// unpacks it meanwhile; `stop_at` ends the announcements (and the pipe) early.
    fn follow(blob: Vec<u8>, stop_at: Option<usize>, diff_id: Option<String>) -> (tempfile::TempDir, Result<Stats>) {
        let t = tempfile::tempdir().unwrap();
        let file = t.path().join("blob.partial");
        let mut w = std::fs::File::create(&file).unwrap();
        let r = std::fs::File::open(&file).unwrap();
        std::fs::create_dir(t.path().join("out")).unwrap();
        let (rx, tx) = std::os::unix::net::UnixStream::pair().unwrap();
        let size = blob.len() as u64;
        let writer = std::thread::spawn(move || {
            let mut tx = tx;
            let mut done = 0;
            for piece in blob.chunks(777) {
                if stop_at.is_some_and(|s| done + piece.len() > s) {
                    break;
                }
                w.write_all(piece).unwrap();
                done += piece.len();
                // The reader may be gone already (it failed): ignore.
                let _ = writeln!(tx, "{done}");
            }
        });
        let res = unpack_following(&file, r, File::from(OwnedFd::from(rx)), size, &t.path().join("out"), Whiteouts::Overlay, diff_id.as_deref());
        writer.join().unwrap();
        (t, res)
    }

    #[test]
    fn a_growing_blob_is_unpacked_as_announced() {
        let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let tar = layer(&[("d/", T::Directory, "", b"", 0o755), ("d/big", T::Regular, "", &big, 0o644), ("d/small", T::Regular, "", b"s", 0o644)]);
        let (t, r) = follow(gz(&tar), None, Some(sha(&tar)));
        assert_eq!(r.unwrap().diff_id, sha(&tar));
        assert_eq!(std::fs::read(t.path().join("out/d/big")).unwrap(), big);
    }

    #[test]
    fn a_download_that_stops_fails_the_layer() {
        let big: Vec<u8> = (0..200_000u32).map(|i| (i * 13 % 241) as u8).collect();
        let tar = layer(&[("big", T::Regular, "", &big, 0o644)]);
        let blob = gz(&tar);
        let half = blob.len() / 2;
        let (_t, r) = follow(blob, Some(half), None);
        let e = r.expect_err("the stream ended early");
        assert!(matches!(e, UnpackError::Read { .. }), "{e}");
        assert!(e.to_string().contains("the download stopped"), "{e}");
    }
}
