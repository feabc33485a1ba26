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

use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
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
            UnpackError::Unsafe { .. } => "ELAYER_UNSAFE",
            UnpackError::Sys { .. } => "ELAYER_WRITE",
            UnpackError::Read { .. } => "ELAYER_CORRUPT",
            UnpackError::DiffId { .. } => "EDIGEST_MISMATCH",
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

/// Opens a layer blob with the right decompressor, chosen by magic bytes (not by media type,
/// which registries and tools get wrong).
fn open_stream(path: &Path) -> Result<Box<dyn Read>> {
    let err = |source| UnpackError::Read { path: path.to_path_buf(), source };
    let mut f = File::open(path).map_err(err)?;
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic).map_err(err)?;
    let head = io::Cursor::new(magic[..n].to_vec());
    let stream = io::BufReader::with_capacity(256 * 1024, head.chain(f));
    Ok(if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(stream))
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

struct Extractor {
    root: OwnedFd,
    mode: Whiteouts,
    stats: Stats,
    /// Directories whose metadata is applied at the end (children first), since a read-only
    /// directory mode would stop us creating its children.
    dirs: Vec<(PathBuf, u32, u32, u32, i64)>,
    /// Paths this layer created, which an opaque marker in apply mode must not delete.
    created: HashSet<PathBuf>,
    warned: HashSet<&'static str>,
}

impl Extractor {
    /// Opens a directory under the root without leaving it, creating missing components.
    fn dir(&mut self, parts: &[&OsStr], entry: &Path) -> Result<OwnedFd> {
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
                Ok(()) => {
                    self.created.insert(parts[..=i].iter().collect());
                }
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
                let how = OpenHow::new().flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).resolve(ResolveFlag::RESOLVE_BENEATH);
                let fd = openat2(parent, name, how).map_err(|e| UnpackError::Sys { entry: entry.display().to_string(), op: "open for removal", errno: e })?;
                let dirfd = unsafe { OwnedFd::from_raw_fd(fd) };
                self.clear(dirfd.as_raw_fd(), None, entry)?;
                nix::unistd::unlinkat(Some(parent), name, nix::unistd::UnlinkatFlags::RemoveDir)
                    .map_err(|e| UnpackError::Sys { entry: entry.display().to_string(), op: "rmdir", errno: e })
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
            .into_iter().map(|e| e.file_name().to_owned()).filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..").collect();
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

    fn warn_once(&mut self, what: &'static str) {
        if self.warned.insert(what) {
            eprintln!("burrow-runtime unpack: warning: {what}");
        }
    }

    fn chown(&mut self, parent: RawFd, name: &OsStr, uid: u64, gid: u64, entry: &Path) -> Result<()> {
        match nix::unistd::fchownat(Some(parent), name, Some((uid as u32).into()), Some((gid as u32).into()), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(()) => Ok(()),
            // An id outside our namespace's map (single-id mode): counted, never fatal.
            Err(Errno::EINVAL) | Err(Errno::EPERM) => {
                self.stats.skipped_chown += 1;
                Ok(())
            }
            Err(e) => Err(UnpackError::Sys { entry: entry.display().to_string(), op: "chown", errno: e }),
        }
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
        let rel: PathBuf = parts.iter().collect();
        self.stats.entries += 1;

        // Whiteouts.
        let nb = name.as_bytes();
        if nb.starts_with(b".wh.") {
            let parent = self.dir(parents, &path)?;
            if nb == b".wh..wh..opq" {
                let base: PathBuf = parents.iter().collect();
                return self.opaque(parent.as_raw_fd(), &base, &path);
            }
            let target = OsStr::from_bytes(&nb[4..]);
            if target.is_empty() || target == "." || target == ".." {
                return Err(unsafe_entry(&path, "a whiteout must name a file, not '.' or '..'"));
            }
            self.remove(parent.as_raw_fd(), target, &path)?;
            if self.mode == Whiteouts::Overlay {
                mknodat(Some(parent.as_raw_fd()), target, SFlag::S_IFCHR, Mode::empty(), nix::sys::stat::makedev(0, 0))
                    .map_err(|e| UnpackError::Sys { entry: path.display().to_string(), op: "create whiteout", errno: e })?;
            }
            return Ok(());
        }

        let parent = self.dir(parents, &path)?;
        let pfd = parent.as_raw_fd();
        let entry_name = path.display().to_string();
        let sys = |op: &'static str| {
            let entry = entry_name.clone();
            move |errno| UnpackError::Sys { entry, op, errno }
        };

        if kind.is_dir() {
            match nix::sys::stat::mkdirat(Some(pfd), name, Mode::from_bits_truncate(0o700)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(sys("mkdir")(e)),
            }
            // An existing non-directory in the way (from an earlier entry) is replaced.
            let st = nix::sys::stat::fstatat(Some(pfd), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).map_err(sys("stat"))?;
            if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                self.remove(pfd, name, &path)?;
                nix::sys::stat::mkdirat(Some(pfd), name, Mode::from_bits_truncate(0o700)).map_err(sys("mkdir"))?;
            }
            self.created.insert(rel.clone());
            self.dirs.push((rel, mode, uid as u32, gid as u32, mtime));
            self.xattrs(&mut e, pfd, name, &path, true)?;
            return Ok(());
        }

        self.remove(pfd, name, &path)?;
        self.created.insert(rel.clone());
        if kind.is_file() || kind == tar::EntryType::Continuous || kind.is_gnu_sparse() {
            let how = OpenHow::new().flags(OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).mode(Mode::from_bits_truncate(0o600)).resolve(ResolveFlag::RESOLVE_BENEATH);
            let fd = openat2(pfd, name, how).map_err(sys("create"))?;
            let mut f = unsafe { File::from_raw_fd(fd) };
            let n = io::copy(&mut e, &mut f).map_err(|source| UnpackError::Read { path: path.clone(), source })?;
            self.stats.bytes += n;
            self.xattrs(&mut e, pfd, name, &path, false)?;
            self.chown(pfd, name, uid, gid, &path)?;
            // After chown, which clears set-id bits.
            nix::sys::stat::fchmod(f.as_raw_fd(), Mode::from_bits_truncate(mode)).map_err(sys("chmod"))?;
            let t = TimeSpec::new(mtime, 0);
            let _ = nix::sys::stat::futimens(f.as_raw_fd(), &t, &t);
        } else if kind.is_symlink() {
            let target = e.link_name().map_err(|source| UnpackError::Read { path: path.clone(), source })?.unwrap_or_default().into_owned();
            nix::unistd::symlinkat(&target, Some(pfd), name).map_err(sys("symlink"))?;
            self.chown(pfd, name, uid, gid, &path)?;
            self.times(pfd, name, mtime);
        } else if kind.is_hard_link() {
            let target = e.link_name().map_err(|source| UnpackError::Read { path: path.clone(), source })?.unwrap_or_default().into_owned();
            // Hard link names are archive paths: relative to the layer, never outside it.
            let tparts = components(&target).map_err(|_| unsafe_entry(&path, &format!("hard link to {} leaves the layer", target.display())))?;
            let Some((&tname, tparents)) = tparts.split_last() else { return Err(unsafe_entry(&path, "hard link to the layer root")) };
            let tparent = self.dir(tparents, &path)?;
            match nix::unistd::linkat(Some(tparent.as_raw_fd()), tname, Some(pfd), name, nix::fcntl::AtFlags::empty()) {
                Ok(()) => {}
                Err(Errno::ENOENT) => return Err(unsafe_entry(&path, &format!("hard link target {} is not in this layer", target.display()))),
                Err(e) => return Err(sys("link")(e)),
            }
        } else if kind.is_fifo() {
            mknodat(Some(pfd), name, SFlag::S_IFIFO, Mode::from_bits_truncate(mode), 0).map_err(sys("mkfifo"))?;
            self.chown(pfd, name, uid, gid, &path)?;
        } else if kind.is_character_special() || kind.is_block_special() {
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

    fn finish_dirs(&mut self) -> Result<()> {
        let dirs = std::mem::take(&mut self.dirs);
        for (rel, mode, uid, gid, mtime) in dirs.into_iter().rev() {
            let parts: Vec<&OsStr> = rel.iter().collect();
            let Some((&name, parents)) = parts.split_last() else { continue };
            let parent = self.dir(parents, &rel)?;
            self.chown(parent.as_raw_fd(), name, uid as u64, gid as u64, &rel)?;
            nix::sys::stat::fchmodat(Some(parent.as_raw_fd()), name, Mode::from_bits_truncate(mode), nix::sys::stat::FchmodatFlags::FollowSymlink)
                .map_err(|e| UnpackError::Sys { entry: rel.display().to_string(), op: "chmod", errno: e })?;
            self.times(parent.as_raw_fd(), name, mtime);
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
    let stream = open_stream(blob)?;
    let mut hashing = Hashing { inner: stream, hasher: Sha256::new(), n: 0 };
    let root = File::open(dest).map_err(|source| UnpackError::Read { path: dest.to_path_buf(), source })?;
    let mut x = Extractor { root: OwnedFd::from(root), mode, stats: Stats::default(), dirs: Vec::new(), created: HashSet::new(), warned: HashSet::new() };
    {
        let mut archive = tar::Archive::new(&mut hashing);
        let entries = archive.entries().map_err(|source| UnpackError::Read { path: blob.to_path_buf(), source })?;
        for e in entries {
            let e = e.map_err(|source| UnpackError::Read { path: blob.to_path_buf(), source })?;
            x.entry(e)?;
        }
    }
    // The digest covers the whole stream, including the end-of-archive padding.
    io::copy(&mut hashing, &mut io::sink()).map_err(|source| UnpackError::Read { path: blob.to_path_buf(), source })?;
    x.finish_dirs()?;
    let actual = format!("sha256:{}", hex(&hashing.hasher.finalize()));
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
        let tar = layer(&[("d/", T::Directory, "", b"", 0o755), ("d/new", T::Regular, "", b"n", 0o644), ("d/.wh..wh..opq", T::Regular, "", b"", 0o644), (".wh.gone", T::Regular, "", b"", 0o644)]);
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
}
