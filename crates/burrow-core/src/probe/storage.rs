//! The filesystem under the store and the rootfs driver burrow picks (DESIGN.md, "Storage").
//!
//! Kernel overlay inside a user namespace is fastest; it needs kernel 5.11 (`userxattr`) and an
//! upper filesystem that supports user xattrs. fuse-overlayfs works on older kernels. The copy
//! driver always works but costs a full copy per container. Network filesystems cannot hold
//! overlay upper directories and break on id-mapped ownership: a store on one keeps its blobs
//! and images there, but its layers and its containers' writable layers in a directory on this
//! machine's disk (`local`, chosen by ts/storage/settings.ts); the driver is then decided there.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::sysfs;

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StorageInfo {
    pub root: PathBuf,
    /// The nearest existing directory of `root`, whose filesystem was examined.
    pub examined: PathBuf,
    pub fs_type: String,
    pub fs_magic: String,
    pub network_fs: bool,
    pub writable: bool,
    pub fuse_overlayfs: Option<PathBuf>,
    pub fuse_overlayfs_version: Option<String>,
    pub dev_fuse_usable: bool,
    /// Result of mounting an overlay inside a user namespace under the store (from the helper).
    pub native_overlay: Option<bool>,
    pub native_overlay_error: Option<String>,
    /// "overlay", "fuse-overlayfs" or "copy".
    pub driver: String,
    pub reason: String,
    /// For a store on a network filesystem: the directory of this machine that takes its layers
    /// and writable layers (absent when none was given: the store cannot be used then).
    pub local: Option<LocalDir>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LocalDir {
    pub dir: PathBuf,
    /// Its nearest existing directory (it is made by the first command that uses the store).
    pub examined: PathBuf,
    pub fs_type: String,
    pub writable: bool,
}

/// Filesystem names by `statfs` magic number (linux/magic.h and the vendors' headers).
pub fn fs_name(magic: u64) -> &'static str {
    match magic {
        0xEF53 => "ext4",
        0x58465342 => "xfs",
        0x9123683E => "btrfs",
        0x01021994 => "tmpfs",
        0x794c7630 => "overlay",
        0x2fc12fc1 => "zfs",
        0x65735546 => "fuse",
        0x6969 => "nfs",
        0xFF534D42 => "cifs",
        0xFE534D42 => "smb2",
        0x0BD00BD0 => "lustre",
        0x47504653 => "gpfs",
        0x5346414F => "afs",
        0x00C36400 => "ceph",
        0x013111A8 => "ibrix",
        0x19830326 => "fhgfs",
        0xaad7aaea => "panfs",
        0x01021997 => "9p",
        0x73717368 => "squashfs",
        _ => "unknown",
    }
}

/// Filesystems that are shared between hosts: overlay upper dirs, id-mapped ownership and
/// xattrs do not work on them, and root squashing breaks chown.
pub fn is_network_fs(name: &str) -> bool {
    matches!(name, "nfs" | "cifs" | "smb2" | "lustre" | "gpfs" | "afs" | "ceph" | "ibrix" | "fhgfs" | "panfs" | "9p")
}

pub fn statfs_magic(path: &Path) -> Option<u64> {
    nix::sys::statfs::statfs(path).ok().map(|s| s.filesystem_type().0 as u64)
}

/// `/dev/fuse` can be opened read-write by this user (fuse-overlayfs needs it).
pub fn dev_fuse_usable() -> bool {
    std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse").is_ok()
}

/// Picks the driver. Pure: takes every observation as an argument.
pub fn choose_driver(
    network_fs: Option<&str>,
    native_overlay: Option<bool>,
    native_error: Option<&str>,
    fuse_overlayfs: bool,
    dev_fuse: bool,
) -> (String, String) {
    if let Some(fs) = network_fs {
        return ("copy".into(), format!("the store is on {fs}, a network filesystem where overlay cannot work; move it to local disk (see the fix)"));
    }
    match native_overlay {
        Some(true) => return ("overlay".into(), "kernel overlay mounts inside a user namespace (tested)".into()),
        Some(false) if fuse_overlayfs && dev_fuse => {
            return (
                "fuse-overlayfs".into(),
                format!("kernel overlay failed in a user namespace ({}); fuse-overlayfs and /dev/fuse are usable", native_error.unwrap_or("?")),
            )
        }
        None if fuse_overlayfs && dev_fuse => {
            return ("fuse-overlayfs".into(), "kernel overlay could not be tested; fuse-overlayfs and /dev/fuse are usable".into())
        }
        _ => {}
    }
    let mut why = vec![match native_overlay {
        Some(false) => format!("kernel overlay failed in a user namespace ({})", native_error.unwrap_or("?")),
        _ => "kernel overlay could not be tested".to_string(),
    }];
    if !fuse_overlayfs {
        why.push("fuse-overlayfs is not installed".into());
    } else if !dev_fuse {
        why.push("/dev/fuse is not usable".into());
    }
    ("copy".into(), format!("{}: every container gets a full copy of its image", why.join("; ")))
}

/// The local directory of a store on a network filesystem, examined as the store is.
pub fn probe_local(dir: &Path) -> LocalDir {
    let examined = sysfs::nearest_existing(dir);
    let fs_type = fs_name(statfs_magic(&examined).unwrap_or(0)).to_string();
    LocalDir { dir: dir.to_path_buf(), writable: sysfs::writable(&examined), examined, fs_type }
}

/// Everything about storage that needs no namespace. The helper's overlay test is added by the caller.
pub fn probe_static(root: &Path) -> StorageInfo {
    let examined = sysfs::nearest_existing(root);
    let magic = statfs_magic(&examined).unwrap_or(0);
    let fs_type = fs_name(magic).to_string();
    let fuse = sysfs::which("fuse-overlayfs");
    let fuse_version = fuse.as_deref().and_then(|p| sysfs::version_line(p, &["--version"]));
    StorageInfo {
        root: root.to_path_buf(),
        writable: sysfs::writable(&examined),
        examined,
        network_fs: is_network_fs(&fs_type),
        fs_magic: format!("0x{magic:x}"),
        fs_type,
        fuse_overlayfs: fuse,
        fuse_overlayfs_version: fuse_version,
        dev_fuse_usable: dev_fuse_usable(),
        native_overlay: None,
        native_overlay_error: None,
        driver: String::new(),
        reason: String::new(),
        local: None,
    }
}

impl StorageInfo {
    /// The local directory that takes this store's layers, when the store needs one and it can.
    pub fn usable_local(&self) -> Option<&LocalDir> {
        self.local.as_ref().filter(|l| self.network_fs && l.writable && !is_network_fs(&l.fs_type))
    }

    /// Containers can be made in this store: it is writable (blobs and images stay in it), and
    /// on a network filesystem its layers have a local directory to go to.
    pub fn usable(&self) -> bool {
        self.writable && (!self.network_fs || self.usable_local().is_some())
    }

    pub fn decide(&mut self) {
        // With a local directory, the namespace test ran there, and the driver is decided for it.
        let net = (self.network_fs && self.usable_local().is_none()).then_some(self.fs_type.as_str());
        let fuse = self.fuse_overlayfs.is_some();
        let (d, r) = choose_driver(net, self.native_overlay, self.native_overlay_error.as_deref(), fuse, self.dev_fuse_usable);
        self.driver = d;
        self.reason = r;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_network_fs() {
        assert_eq!(fs_name(0x6969), "nfs");
        assert_eq!(fs_name(0x0BD00BD0), "lustre");
        assert_eq!(fs_name(0x47504653), "gpfs");
        assert_eq!(fs_name(0x01021994), "tmpfs");
        assert!(is_network_fs("lustre") && is_network_fs("gpfs") && !is_network_fs("tmpfs"));
    }

    #[test]
    fn driver_choice() {
        assert_eq!(choose_driver(None, Some(true), None, false, false).0, "overlay");
        assert_eq!(choose_driver(None, Some(false), Some("EPERM"), true, true).0, "fuse-overlayfs");
        let (d, why) = choose_driver(None, Some(false), Some("EINVAL"), true, false);
        assert_eq!(d, "copy");
        assert!(why.contains("/dev/fuse"));
        let (d, why) = choose_driver(Some("nfs"), Some(true), None, true, true);
        assert_eq!(d, "copy");
        assert!(why.contains("nfs"));
    }

    #[test]
    fn examines_nearest_existing_dir() {
        let t = tempfile::tempdir().unwrap();
        let s = probe_static(&t.path().join("not/yet/there"));
        assert_eq!(s.examined, t.path());
        assert_ne!(s.fs_type, "");
    }
}
