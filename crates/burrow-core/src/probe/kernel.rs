//! Kernel release and the features burrow keys on it.

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KernelInfo {
    pub release: String,
    /// major, minor, patch parsed from the release string.
    pub version: [u32; 3],
    /// Overlay mounts inside a user namespace with `userxattr` (5.11).
    pub rootless_overlay: bool,
    /// `clone3` (5.3) and `CLONE_INTO_CGROUP` (5.7).
    pub clone3: bool,
    pub clone_into_cgroup: bool,
    /// Idmapped bind mounts (5.12).
    pub idmapped_mounts: bool,
}

/// Parses "6.18.44-fc-v595" into [6, 18, 44]; missing parts are 0.
pub fn parse_version(release: &str) -> [u32; 3] {
    let mut out = [0u32; 3];
    for (i, part) in release.split(['.', '-', '+']).take(3).enumerate() {
        let digits: String = part.chars().take_while(|c| c.is_ascii_digit()).collect();
        match digits.parse() {
            Ok(n) => out[i] = n,
            Err(_) => break,
        }
    }
    out
}

pub fn info_from_release(release: &str) -> KernelInfo {
    let v = parse_version(release);
    let at_least = |maj: u32, min: u32| (v[0], v[1]) >= (maj, min);
    KernelInfo {
        release: release.to_string(),
        version: v,
        rootless_overlay: at_least(5, 11),
        clone3: at_least(5, 3),
        clone_into_cgroup: at_least(5, 7),
        idmapped_mounts: at_least(5, 12),
    }
}

pub fn probe() -> KernelInfo {
    let release = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    info_from_release(&release)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_releases() {
        assert_eq!(parse_version("6.18.44-fc-v595"), [6, 18, 44]);
        assert_eq!(parse_version("5.10.0-28-amd64"), [5, 10, 0]);
        assert_eq!(parse_version("4.18.0-553.el8_10.x86_64"), [4, 18, 0]);
        assert_eq!(parse_version("6.1"), [6, 1, 0]);
        assert_eq!(parse_version(""), [0, 0, 0]);
    }

    #[test]
    fn features_follow_version() {
        let old = info_from_release("5.10.0-28-amd64");
        assert!(!old.rootless_overlay && old.clone_into_cgroup && !old.idmapped_mounts);
        let new = info_from_release("6.1.0-13-amd64");
        assert!(new.rootless_overlay && new.clone3 && new.idmapped_mounts);
    }
}
