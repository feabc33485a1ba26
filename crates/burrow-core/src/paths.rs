//! Where burrow keeps things. The store (images, layers, containers' writable layers) defaults to
//! `$XDG_DATA_HOME/burrow`; runtime state (container state, sockets, locks) to
//! `$XDG_RUNTIME_DIR/burrow`. `XDG_RUNTIME_DIR` is often unset or wrong after `su`, `ssh` without
//! PAM, or inside a Slurm job, so there is a private fallback under /tmp.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::CoreError;

/// The default store root: `$XDG_DATA_HOME/burrow`, else `$HOME/.local/share/burrow`.
pub fn default_store_root() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("burrow");
    }
    home_dir().join(".local/share/burrow")
}

pub fn home_dir() -> PathBuf {
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    // HOME unset (some batch systems): fall back to the password database.
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid).ok().flatten().map(|u| u.dir).unwrap_or_else(|| PathBuf::from("/"))
}

/// Why `XDG_RUNTIME_DIR` cannot be used, or `None` when it can.
pub fn runtime_dir_problem(dir: &Path, uid: u32) -> Option<String> {
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) => return Some(format!("{}: {e}", dir.display())),
    };
    if !meta.is_dir() {
        return Some(format!("{} is not a directory", dir.display()));
    }
    if meta.uid() != uid {
        return Some(format!("{} is owned by uid {}, not by you (uid {uid})", dir.display(), meta.uid()));
    }
    if meta.mode() & 0o077 != 0 {
        return Some(format!("{} has mode {:04o}; others can enter it (want 0700)", dir.display(), meta.mode() & 0o7777));
    }
    None
}

/// The fallback runtime directory: private to this uid, under /tmp.
pub fn fallback_runtime_dir(uid: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/burrow-run-{uid}"))
}

/// `uid` as the parent user namespace sees it, from `uid_map`'s text (`inner outer count` per
/// line); `uid` itself when no line maps it (the initial namespace maps everything to itself).
pub fn outer_uid(uid_map: &str, uid: u32) -> u32 {
    for line in uid_map.lines() {
        let f: Vec<u64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        if let [inner, outer, count] = f[..] {
            let u = u64::from(uid);
            if u >= inner && u < inner + count {
                return u32::try_from(outer + (u - inner)).unwrap_or(uid);
            }
        }
    }
    uid
}

/// The uid the fallback directory is named after: the caller's uid outside its user namespace.
/// Rootless podman runs the runtime as uid 0 of the user's namespace: named after that 0, the
/// fallback was /tmp/burrow-run-0, root's own directory (refused, or made by the user and then
/// refused to root's burrow). Named after the host uid, it is the user's, as /run/user/UID is.
pub fn fallback_uid(uid: u32) -> u32 {
    std::fs::read_to_string("/proc/self/uid_map").map(|m| outer_uid(&m, uid)).unwrap_or(uid)
}

/// The runtime root burrow uses: `$XDG_RUNTIME_DIR/burrow` when that directory is usable,
/// else the private fallback. Pure decision; nothing is created.
pub fn runtime_root() -> PathBuf {
    let uid = nix::unistd::getuid().as_raw();
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) if runtime_dir_problem(Path::new(&d), uid).is_none() => PathBuf::from(d).join("burrow"),
        _ => fallback_runtime_dir(fallback_uid(uid)),
    }
}

/// Creates `dir` with mode 0700 if needed and checks that it is ours and private: another user
/// who could pre-create our runtime directory in /tmp could otherwise plant sockets and state.
pub fn ensure_private_dir(dir: &Path) -> Result<(), CoreError> {
    let uid = nix::unistd::getuid().as_raw();
    match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) => return Err(CoreError::io("mkdir", dir, e)),
    }
    match runtime_dir_problem(dir, uid) {
        None => Ok(()),
        Some(why) => Err(CoreError::RuntimeDir { path: dir.to_path_buf(), why }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn outer_uid_maps_through_the_line_that_holds_it() {
        // The initial namespace: identity.
        assert_eq!(outer_uid("         0          0 4294967295\n", 0), 0);
        assert_eq!(outer_uid("         0          0 4294967295\n", 1000), 1000);
        // Rootless podman: 0 -> the user, 1.. -> the subordinate range.
        let podman = "         0       1000          1\n         1     100000      65536\n";
        assert_eq!(outer_uid(podman, 0), 1000);
        assert_eq!(outer_uid(podman, 1), 100000);
        assert_eq!(outer_uid(podman, 65536), 165535);
        // Unmapped (cannot happen for our own uid) or an unreadable map: the uid itself.
        assert_eq!(outer_uid(podman, 70000), 70000);
        assert_eq!(outer_uid("", 5), 5);
    }

    #[test]
    fn runtime_dir_must_be_private() {
        let t = tempfile::tempdir().unwrap();
        let uid = nix::unistd::getuid().as_raw();
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(runtime_dir_problem(t.path(), uid).unwrap().contains("mode 0755"));
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(runtime_dir_problem(t.path(), uid), None);
        assert!(runtime_dir_problem(t.path(), uid + 1).unwrap().contains("owned by uid"));
        assert!(runtime_dir_problem(&t.path().join("missing"), uid).is_some());
    }

    #[test]
    fn ensure_private_dir_creates_0700() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/b");
        ensure_private_dir(&d).unwrap();
        assert_eq!(std::fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
    }
}
