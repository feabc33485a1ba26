//! Small, side-effect-free helpers to read the host: files under /proc and /sys, `PATH` look-ups,
//! ownership and access checks. Parsers elsewhere take strings so that unit tests can feed
//! fixtures; only these helpers touch the real filesystem.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Reads a file to a trimmed string; `None` when it is missing or unreadable.
pub fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Reads a file holding one integer (a sysctl); `None` when missing or not a number.
pub fn read_u64(path: impl AsRef<Path>) -> Option<u64> {
    read_trimmed(path)?.parse().ok()
}

/// `access(2)` with the real uid: what this user may do, not what a set-uid bit would allow.
pub fn access(path: &Path, mode: libc::c_int) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else { return false };
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    unsafe { libc::access(c.as_ptr(), mode) == 0 }
}

pub fn writable(path: &Path) -> bool {
    access(path, libc::W_OK)
}

/// Finds an executable by name: `PATH` first, then the sbin directories that a non-root
/// user's `PATH` often lacks (where `newuidmap` lives on some distributions).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/local/bin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/sbin", "/sbin"];
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false))
}

/// Runs `prog args...` and returns a version line: the first line of its output (stdout, then
/// stderr) that names the program, else the first line. fuse-overlayfs prints fusermount's
/// version before its own.
pub fn version_line(prog: &Path, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(prog).args(args).stdin(std::process::Stdio::null()).output().ok()?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push('\n');
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    let name = prog.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines.iter().find(|l| l.starts_with(name.as_str())).or(lines.first()).map(|l| l.to_string())
}

/// Owner uid and permission bits of a path (following symlinks).
pub fn owner_and_mode(path: &Path) -> Option<(u32, u32)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.uid(), m.mode() & 0o7777))
}

/// Nearest existing ancestor of `path` (the path itself when it exists).
pub fn nearest_existing(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    loop {
        if p.exists() {
            return p;
        }
        if !p.pop() {
            return PathBuf::from("/");
        }
    }
}
