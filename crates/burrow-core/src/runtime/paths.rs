//! Resolving paths inside a container's rootfs without escaping it: every symlink is followed
//! by hand and `..` stops at the root, so a hostile image cannot point a mount destination at
//! the host (`/etc -> /host/etc`). Used before pivot_root, while the host is still visible.

use std::path::{Component, Path, PathBuf};

/// Resolves `unsafe_path` (absolute or not, as found in a config) under `root`, following
/// symlinks as if `root` were `/`. Components that do not exist yet are kept as they are.
pub fn secure_join(root: &Path, unsafe_path: &Path) -> PathBuf {
    let mut resolved = PathBuf::new(); // relative to root
    let mut pending: Vec<std::ffi::OsString> = unsafe_path
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&part);
        let full = root.join(&candidate);
        match std::fs::read_link(&full) {
            Ok(target) if links < 255 => {
                links += 1;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(s) => pending.push(s.to_os_string()),
                        Component::ParentDir => pending.push("..".into()),
                        _ => {}
                    }
                }
            }
            _ => resolved = candidate,
        }
    }
    root.join(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_stay_inside() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("real/dir")).unwrap();
        symlink("/etc", r.join("abs")).unwrap();
        symlink("../../../../..", r.join("up")).unwrap();
        symlink("real/dir", r.join("rel")).unwrap();
        symlink("loop2", r.join("loop1")).unwrap();
        symlink("loop1", r.join("loop2")).unwrap();
        assert_eq!(secure_join(r, Path::new("/abs/passwd")), r.join("etc/passwd"));
        assert_eq!(secure_join(r, Path::new("/up/etc")), r.join("etc"));
        assert_eq!(secure_join(r, Path::new("rel/x")), r.join("real/dir/x"));
        assert_eq!(secure_join(r, Path::new("/../../x")), r.join("x"));
        assert!(secure_join(r, Path::new("/loop1")).starts_with(r));
    }
}
