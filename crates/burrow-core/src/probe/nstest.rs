//! The half of the host probe that must enter namespaces. It runs in `burrow-runtime probe-ns`,
//! a single-threaded process: `unshare(CLONE_NEWUSER)` fails with EINVAL in a threaded process
//! such as Node (DESIGN.md, "the fork problem"). The result goes back as JSON on stdout.

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use serde::{Deserialize, Serialize};

use crate::sysfs;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NsReport {
    /// A user namespace was created and this process became root in it.
    pub userns: bool,
    pub userns_error: Option<String>,
    /// Kernel overlay mounted in that namespace, with a write and a whiteout checked.
    pub overlay: Option<bool>,
    pub overlay_error: Option<String>,
    /// Where the overlay was tried (a temporary directory beside the store).
    pub overlay_dir: Option<PathBuf>,
}

/// Escapes a path for overlay's comma- and colon-separated option string.
fn escape_opt(p: &Path) -> String {
    p.display().to_string().replace('\\', "\\\\").replace(',', "\\,").replace(':', "\\:")
}

/// Becomes root in a new user (and mount) namespace with a single mapping of our own ids.
/// Only the single mapping is used: it needs no helper and no subordinate ranges.
pub fn enter_userns_single() -> Result<(), String> {
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare(CLONE_NEWUSER|CLONE_NEWNS): {e}"))?;
    // setgroups must be denied before an unprivileged process may write gid_map.
    fs::write("/proc/self/setgroups", "deny").map_err(|e| format!("write /proc/self/setgroups: {e}"))?;
    fs::write("/proc/self/uid_map", format!("0 {uid} 1\n")).map_err(|e| format!("write /proc/self/uid_map: {e}"))?;
    fs::write("/proc/self/gid_map", format!("0 {gid} 1\n")).map_err(|e| format!("write /proc/self/gid_map: {e}"))?;
    // Keep mounts made for the test from propagating back to the host's namespace.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>).map_err(|e| format!("make / private: {e}"))?;
    Ok(())
}

fn overlay_test(base: &Path) -> Result<(), String> {
    let (lower, upper, work, merged) = (base.join("lower"), base.join("upper"), base.join("work"), base.join("merged"));
    let opts = format!("lowerdir={},upperdir={},workdir={},userxattr", escape_opt(&lower), escape_opt(&upper), escape_opt(&work));
    mount(Some("overlay"), &merged, Some("overlay"), MsFlags::empty(), Some(opts.as_str()))
        .map_err(|e| format!("mount -t overlay (userxattr) on {}: {e}", base.display()))?;
    let result = (|| {
        fs::write(merged.join("new"), b"x").map_err(|e| format!("write through overlay: {e}"))?;
        fs::remove_file(merged.join("old")).map_err(|e| format!("delete through overlay (whiteout): {e}"))?;
        if !upper.join("new").exists() {
            return Err("a file written through the overlay did not reach the upper directory".into());
        }
        let wh = fs::symlink_metadata(upper.join("old")).map_err(|e| format!("no whiteout in upper: {e}"))?;
        if !wh.file_type().is_char_device() {
            return Err("the whiteout in the upper directory is not a character device".into());
        }
        Ok(())
    })();
    let _ = umount2(&merged, MntFlags::MNT_DETACH);
    result
}

/// Runs the namespace checks. `store_root` need not exist: the overlay is tried in a temporary
/// directory in its nearest existing ancestor, which is on the same filesystem in practice.
pub fn run(store_root: &Path) -> NsReport {
    let mut r = NsReport::default();
    let near = sysfs::nearest_existing(store_root);
    let base = near.join(format!(".burrow-probe-{}", std::process::id()));
    let prepared =
        ["lower", "upper", "work", "merged"].iter().try_for_each(|d| fs::create_dir_all(base.join(d))).and_then(|_| fs::write(base.join("lower/old"), b"o"));
    match enter_userns_single() {
        Ok(()) => r.userns = true,
        Err(e) => r.userns_error = Some(e),
    }
    match (&prepared, r.userns) {
        (Err(e), _) => r.overlay_error = Some(format!("cannot create a test directory in {}: {e}", near.display())),
        (Ok(()), false) => r.overlay_error = Some("not tried: no user namespace".into()),
        (Ok(()), true) => match overlay_test(&base) {
            Ok(()) => r.overlay = Some(true),
            Err(e) => {
                r.overlay = Some(false);
                r.overlay_error = Some(e);
            }
        },
    }
    if prepared.is_ok() {
        r.overlay_dir = Some(base.clone());
    }
    // The work directory's inner dir is created mode 000 by the kernel; make it removable.
    let _ = fs::set_permissions(base.join("work/work"), std::os::unix::fs::PermissionsExt::from_mode(0o700));
    let _ = fs::remove_dir_all(&base);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_overlay_options() {
        assert_eq!(escape_opt(Path::new("/a,b:c")), "/a\\,b\\:c");
    }
}
