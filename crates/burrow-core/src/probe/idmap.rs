//! Subordinate id ranges and the id-map mode (DESIGN.md, "Identity").
//!
//! A user with a range in /etc/subuid and /etc/subgid (or from NSS, through `getsubids`) and a
//! privileged `newuidmap`/`newgidmap` gets the `subuid` mode: container root is the user, other
//! container ids come from the range. Without them (most HPC and LDAP systems) burrow still runs
//! in `single` mode: only container root exists, chown to other ids is skipped and counted.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::sysfs;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IdRange {
    pub start: u64,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MapHelper {
    pub path: Option<PathBuf>,
    /// "setuid", "file-capabilities", or "none".
    pub privilege: String,
    pub usable: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IdmapInfo {
    pub user: Option<String>,
    pub uid: u32,
    pub gid: u32,
    pub subuid: Vec<IdRange>,
    pub subgid: Vec<IdRange>,
    /// "getsubids" or "files".
    pub source: String,
    pub newuidmap: MapHelper,
    pub newgidmap: MapHelper,
    /// "subuid" or "single"; `keep-id` is chosen per container, never by default.
    pub mode: String,
    pub reason: String,
    /// Container ids available in the chosen mode (1 in `single`).
    pub container_ids: u64,
    /// A range nobody has in /etc/subuid and /etc/subgid, for the fix of a user without one
    /// (`free_range`); None when no such range fits below 2^32.
    pub suggested: Option<IdRange>,
}

/// Size of the range suggested to a user without one: what shadow's useradd gives
/// (SUB_UID_COUNT), enough for images that own files by ids up to 65535.
pub const SUGGESTED_COUNT: u64 = 65536;
/// shadow's SUB_UID_MIN: ranges start above the ids of real users.
const SUB_ID_MIN: u64 = 100_000;

/// Every range of every owner (names and numeric uids alike) in a subuid/subgid file's text.
pub fn all_ranges(text: &str) -> Vec<IdRange> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split(':');
            let (_owner, start, count) = (f.next()?, f.next()?, f.next()?);
            Some(IdRange { start: start.trim().parse().ok()?, count: count.trim().parse().ok()? })
        })
        .filter(|r| r.count > 0)
        .collect()
}

/// A range of SUGGESTED_COUNT ids that overlaps no range of either file: aligned to its size and
/// above every range in both (one range serves as subuid and subgid, and a range given later to
/// another user by `useradd`, which also goes above the highest, cannot land in it). None when
/// it would pass 2^32 - 1, which is not a valid id.
pub fn free_range(subuid: &str, subgid: &str) -> Option<IdRange> {
    let top = all_ranges(subuid).into_iter().chain(all_ranges(subgid)).map(|r| r.start.saturating_add(r.count)).max().unwrap_or(0);
    let start = top.max(SUB_ID_MIN).div_ceil(SUGGESTED_COUNT).checked_mul(SUGGESTED_COUNT)?;
    (start.checked_add(SUGGESTED_COUNT)? <= u64::from(u32::MAX)).then_some(IdRange { start, count: SUGGESTED_COUNT })
}

/// Ranges for a user from the text of /etc/subuid or /etc/subgid. Entries match by name or by
/// numeric uid, as shadow's newuidmap accepts both.
pub fn parse_subid_file(text: &str, name: Option<&str>, id: u32) -> Vec<IdRange> {
    let id_s = id.to_string();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split(':');
            let (owner, start, count) = (f.next()?, f.next()?, f.next()?);
            if Some(owner) != name && owner != id_s {
                return None;
            }
            Some(IdRange { start: start.trim().parse().ok()?, count: count.trim().parse().ok()? })
        })
        .filter(|r| r.count > 0)
        .collect()
}

/// Parses `getsubids` output: lines like "0: alice 100000 65536".
pub fn parse_getsubids(text: &str) -> Vec<IdRange> {
    text.lines()
        .filter_map(|l| {
            let rest = l.split_once(':')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            if f.len() < 3 {
                return None;
            }
            Some(IdRange { start: f[1].parse().ok()?, count: f[2].parse().ok()? })
        })
        .filter(|r| r.count > 0)
        .collect()
}

/// How a map helper gets the privilege to write maps for ids the user does not own.
pub fn helper_privilege(path: &Path) -> String {
    let Ok(meta) = std::fs::metadata(path) else { return "none".into() };
    if meta.uid() == 0 && meta.mode() & libc::S_ISUID != 0 {
        return "setuid".into();
    }
    if has_file_capabilities(path) {
        return "file-capabilities".into();
    }
    "none".into()
}

fn has_file_capabilities(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(p) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return false };
    let name = c"security.capability";
    // SAFETY: both strings are NUL-terminated; a NULL buffer with size 0 asks only for the length.
    let n = unsafe { libc::getxattr(p.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
    n > 0
}

fn map_helper(name: &str, is_root: bool) -> MapHelper {
    let path = sysfs::which(name);
    let privilege = path.as_deref().map(helper_privilege).unwrap_or_else(|| "none".into());
    // Root writes any map itself; the helper is only needed by ordinary users.
    let usable = path.is_some() && (privilege != "none" || is_root);
    MapHelper { path, privilege, usable }
}

/// Picks the id-map mode from what was found. Pure, so it is unit-tested with every combination.
pub fn choose_mode(is_root: bool, subuid: &[IdRange], subgid: &[IdRange], newuidmap: &MapHelper, newgidmap: &MapHelper) -> (String, String, u64) {
    let ids = |r: &[IdRange]| r.iter().map(|r| r.count).sum::<u64>();
    let mut missing = Vec::new();
    if subuid.is_empty() {
        missing.push("no range in /etc/subuid");
    }
    if subgid.is_empty() {
        missing.push("no range in /etc/subgid");
    }
    if !is_root {
        if newuidmap.path.is_none() || newgidmap.path.is_none() {
            missing.push("newuidmap/newgidmap not installed (package uidmap)");
        } else if !newuidmap.usable || !newgidmap.usable {
            missing.push("newuidmap/newgidmap are neither setuid root nor given file capabilities");
        }
    }
    if missing.is_empty() {
        let n = 1 + ids(subuid).min(ids(subgid));
        let how = if is_root { "written directly (root)" } else { "written by newuidmap/newgidmap" };
        return ("subuid".into(), format!("subordinate ranges found, maps {how}; {n} container ids"), n);
    }
    ("single".into(), format!("{}: only container root (your own id) is mapped", missing.join("; ")), 1)
}

pub fn probe(is_root: bool) -> IdmapInfo {
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    let user = nix::unistd::User::from_uid(uid.into()).ok().flatten().map(|u| u.name);
    let newuidmap = map_helper("newuidmap", is_root);
    let newgidmap = map_helper("newgidmap", is_root);

    let subuid_text = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
    let subgid_text = std::fs::read_to_string("/etc/subgid").unwrap_or_default();
    // getsubids asks NSS (LDAP/SSSD ranges that are not in the files); prefer it when present.
    let via_getsubids = match (sysfs::which("getsubids"), user.as_deref()) {
        (Some(bin), Some(name)) => {
            let run = |extra: &[&str]| {
                std::process::Command::new(&bin)
                    .args(extra)
                    .arg(name)
                    .output()
                    .ok()
                    .filter(|o| o.status.success())
                    .map(|o| parse_getsubids(&String::from_utf8_lossy(&o.stdout)))
            };
            match (run(&[]), run(&["-g"])) {
                (Some(u), Some(g)) if !u.is_empty() || !g.is_empty() => Some((u, g)),
                _ => None,
            }
        }
        _ => None,
    };
    let (subuid, subgid, source) = match via_getsubids {
        Some((u, g)) => (u, g, "getsubids"),
        None => (parse_subid_file(&subuid_text, user.as_deref(), uid), parse_subid_file(&subgid_text, user.as_deref(), gid), "files"),
    };
    let (mode, reason, container_ids) = choose_mode(is_root, &subuid, &subgid, &newuidmap, &newgidmap);
    let suggested = free_range(&subuid_text, &subgid_text);
    IdmapInfo { user, uid, gid, subuid, subgid, source: source.into(), newuidmap, newgidmap, mode, reason, container_ids, suggested }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBUID: &str = "# comment\nalice:100000:65536\n1001:200000:1000\nbob:300000:0\nalice:500000:10\n";

    #[test]
    fn matches_by_name_and_by_uid() {
        assert_eq!(parse_subid_file(SUBUID, Some("alice"), 1000), vec![IdRange { start: 100000, count: 65536 }, IdRange { start: 500000, count: 10 }]);
        assert_eq!(parse_subid_file(SUBUID, Some("carol"), 1001), vec![IdRange { start: 200000, count: 1000 }]);
        assert_eq!(parse_subid_file(SUBUID, Some("bob"), 1002), vec![], "zero-length ranges are ignored");
        assert_eq!(parse_subid_file("garbage\nx:y:z\n", Some("x"), 1), vec![]);
    }

    #[test]
    fn parses_getsubids() {
        assert_eq!(parse_getsubids("0: alice 100000 65536\n1: alice 500000 10\n").len(), 2);
        assert_eq!(parse_getsubids("nonsense"), vec![]);
    }

    #[test]
    fn free_range_is_above_every_range_of_both_files() {
        let r = |start, count| IdRange { start, count };
        // Empty files: shadow's minimum, rounded up to the alignment.
        assert_eq!(free_range("", ""), Some(r(131072, 65536)));
        // Everyone's ranges count, numeric owners and subgid-only ones included.
        let uid = "alice:100000:65536\n1001:165536:65536\n";
        let gid = "alice:100000:65536\nbob:300000:10\n";
        let f = free_range(uid, gid).unwrap();
        assert_eq!(f, r(327680, 65536));
        for t in [uid, gid] {
            for o in all_ranges(t) {
                assert!(f.start >= o.start + o.count || f.start + f.count <= o.start, "{f:?} overlaps {o:?}");
            }
        }
        // A range ending exactly on an aligned id: the next one starts there.
        assert_eq!(free_range("a:131072:65536\n", ""), Some(r(196608, 65536)));
        // Comments, zero-length and malformed lines take no room.
        assert_eq!(free_range("# x:900000:5\nz:900000:0\nbad\n", "y:notanumber:3\n"), Some(r(131072, 65536)));
        // Nothing fits below 2^32 - 1: no range rather than a wrong one.
        assert_eq!(free_range("big:4294901760:1\n", ""), None);
        assert_eq!(free_range("big:4294836224:65536\n", ""), None, "the last aligned range would end on 2^32");
        assert_eq!(free_range("big:4294770688:65536\n", ""), Some(r(4294836224, 65536)));
    }

    fn helper(usable: bool) -> MapHelper {
        MapHelper { path: Some("/usr/bin/newuidmap".into()), privilege: if usable { "setuid" } else { "none" }.into(), usable }
    }

    #[test]
    fn mode_choice() {
        let r = vec![IdRange { start: 100000, count: 65536 }];
        let (m, _, n) = choose_mode(false, &r, &r, &helper(true), &helper(true));
        assert_eq!((m.as_str(), n), ("subuid", 65537));
        let (m, why, n) = choose_mode(false, &[], &r, &helper(true), &helper(true));
        assert_eq!((m.as_str(), n), ("single", 1));
        assert!(why.contains("/etc/subuid"));
        let (m, why, _) = choose_mode(false, &r, &r, &helper(false), &helper(false));
        assert_eq!(m, "single");
        assert!(why.contains("setuid"));
        let none = MapHelper { path: None, privilege: "none".into(), usable: false };
        let (_, why, _) = choose_mode(false, &r, &r, &none, &none);
        assert!(why.contains("uidmap"));
        let (m, _, _) = choose_mode(true, &r, &r, &none, &none);
        assert_eq!(m, "subuid", "root needs no helper");
    }
}
