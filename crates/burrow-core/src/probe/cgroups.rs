//! cgroup layout and delegation (DESIGN.md, "cgroups").
//!
//! Rootless limits exist only on cgroup v2, in a subtree the user owns: systemd's user@.service
//! delegates one (memory and pids by default; cpu, cpuset and io with a drop-in or systemd 252+),
//! or an administrator chowns one. On cgroup v1 and hybrid hosts the controllers that matter are
//! bound to v1 hierarchies an ordinary user cannot write, so no limit can be enforced there. The
//! parsers take text and the cgroup root as arguments so that unit tests and the VM lane can point
//! them anywhere.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::sysfs;

/// Limit kinds burrow can enforce, each needing the controller of the same name.
pub const LIMIT_CONTROLLERS: [&str; 6] = ["memory", "pids", "cpu", "cpuset", "io", "hugetlb"];

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Layout {
    /// "unified", "hybrid", "legacy" or "none".
    pub mode: String,
    pub v2_mount: Option<PathBuf>,
    /// Controllers bound to v1 hierarchies (unusable for rootless limits).
    pub v1_controllers: Vec<String>,
    /// This process's cgroup v2 path (from the `0::` line of /proc/self/cgroup).
    pub own_cgroup: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CgroupInfo {
    #[serde(flatten)]
    pub layout: Layout,
    /// The highest cgroup directory this user may manage (own it and its control files).
    pub delegation_root: Option<PathBuf>,
    /// "own-cgroup" or "systemd-user-service" or "none".
    pub delegation_source: String,
    /// Controllers listed in the delegation root's `cgroup.controllers`.
    pub available_controllers: Vec<String>,
    /// Available and enable-able by this user (`cgroup.subtree_control` writable).
    pub delegated_controllers: Vec<String>,
    pub systemd_user_manager: bool,
    /// Why no user manager can be asked for a scope (null when one can).
    pub systemd_user_manager_why_not: Option<String>,
    pub bus_address: Option<String>,
    /// "systemd", "cgroupfs" or "none".
    pub manager: String,
    /// Limit kinds that would really be enforced for a container started now.
    pub enforceable: Vec<String>,
    /// Limit kinds that would not, with the controller missing.
    pub not_enforceable: Vec<String>,
}

fn unescape_mount_path(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo octal.
    let mut out = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v as char);
            i += 4;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// Reads the cgroup layout from the text of /proc/self/mountinfo and /proc/self/cgroup.
pub fn analyze(mountinfo: &str, self_cgroup: &str) -> Layout {
    let mut v2_mounts: Vec<PathBuf> = Vec::new();
    let mut v1_controllers = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else { continue };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 5 || post.is_empty() {
            continue;
        }
        let mount_point = PathBuf::from(unescape_mount_path(pre[4]));
        match post[0] {
            "cgroup2" => v2_mounts.push(mount_point),
            "cgroup" => {
                let opts = post.get(2).copied().unwrap_or("");
                for o in opts.split(',') {
                    if LIMIT_CONTROLLERS.contains(&o) || matches!(o, "cpuacct" | "blkio" | "devices" | "freezer" | "net_cls" | "perf_event") {
                        v1_controllers.push(o.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    v1_controllers.sort();
    v1_controllers.dedup();
    let canonical = Path::new("/sys/fs/cgroup");
    let v2_mount = v2_mounts.iter().find(|m| m.as_path() == canonical).or(v2_mounts.first()).cloned();
    let mode = match (&v2_mount, v1_controllers.is_empty()) {
        (Some(m), _) if m.as_path() == canonical => "unified",
        (Some(_), false) => "hybrid",
        (Some(_), true) => "unified",
        (None, false) => "legacy",
        (None, true) => "none",
    };
    let own_cgroup = self_cgroup.lines().find_map(|l| l.strip_prefix("0::")).map(|p| p.trim().to_string());
    Layout { mode: mode.into(), v2_mount, v1_controllers, own_cgroup }
}

fn words(path: &Path) -> Vec<String> {
    sysfs::read_trimmed(path).map(|s| s.split_whitespace().map(String::from).collect()).unwrap_or_default()
}

/// A directory the user can manage as a delegated cgroup: create children, move processes,
/// enable controllers for children.
pub fn manageable(dir: &Path) -> bool {
    sysfs::writable(dir) && sysfs::writable(&dir.join("cgroup.procs")) && sysfs::writable(&dir.join("cgroup.subtree_control"))
}

/// Finds the delegation root below `v2_mount`: the highest manageable ancestor of this process's
/// cgroup, else systemd's `user@UID.service` when the user owns it.
pub fn find_delegation(v2_mount: &Path, own: Option<&str>, uid: u32) -> (Option<PathBuf>, &'static str) {
    if let Some(own) = own {
        let rel = own.trim_matches('/');
        let mut dir = if rel.is_empty() { v2_mount.to_path_buf() } else { v2_mount.join(rel) };
        if manageable(&dir) {
            while let Some(parent) = dir.parent() {
                if !parent.starts_with(v2_mount) || !manageable(parent) {
                    break;
                }
                dir = parent.to_path_buf();
            }
            return (Some(dir), "own-cgroup");
        }
    }
    let svc = v2_mount.join(format!("user.slice/user-{uid}.slice/user@{uid}.service"));
    if manageable(&svc) {
        return (Some(svc), "systemd-user-service");
    }
    (None, "none")
}

/// The session bus address as libcgroups' systemd driver finds it (`DBUS_SESSION_BUS_ADDRESS`,
/// else `$XDG_RUNTIME_DIR/bus`), whether a systemd user manager can be asked for a scope there,
/// and if not why. "Can be asked" is what that driver needs, checked the way it works: systemd
/// manages the machine (/run/systemd/system, its `booted()`), the bus accepts a connection, the
/// bus owner has a user id (it authenticates with the OwnerUID that `busctl --user status`
/// prints, so busctl must be installed), and org.freedesktop.systemd1 is on the bus.
pub fn systemd_user_bus() -> (Option<String>, bool, Option<String>) {
    let addr = std::env::var("DBUS_SESSION_BUS_ADDRESS").ok().filter(|a| !a.is_empty()).or_else(|| {
        let d = std::env::var_os("XDG_RUNTIME_DIR")?;
        let p = Path::new(&d).join("bus");
        p.exists().then(|| format!("unix:path={}", p.display()))
    });
    let Some(a) = addr.clone() else { return (None, false, Some("no session bus (DBUS_SESSION_BUS_ADDRESS unset and no $XDG_RUNTIME_DIR/bus)".into())) };
    let why_not = user_manager_why_not(&a);
    (addr, why_not.is_none(), why_not)
}

fn user_manager_why_not(addr: &str) -> Option<String> {
    if !Path::new("/run/systemd/system").is_dir() {
        return Some("systemd does not manage this machine (no /run/systemd/system)".into());
    }
    // Only unix:path= addresses can be tried here; libcgroups also takes unix:abstract=.
    if let Some(p) = addr.split(';').find_map(|a| a.strip_prefix("unix:path=")).map(|p| p.split(',').next().unwrap_or(p)) {
        if let Err(e) = std::os::unix::net::UnixStream::connect(p) {
            return Some(format!("the bus does not accept a connection: {e}"));
        }
    }
    let busctl =
        |args: &[&str]| std::process::Command::new("busctl").args(["--user", "--no-pager", "status"]).args(args).stdin(std::process::Stdio::null()).output();
    let owner = match busctl(&[]) {
        Err(e) => {
            return Some(format!(
                "cannot run busctl ({e}): libcgroups' systemd driver asks `busctl --user status` for the bus owner's uid (install systemd's busctl)"
            ))
        }
        Ok(o) if !o.status.success() => return Some(format!("`busctl --user status` failed: {}", first_line(&o.stderr))),
        Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
    };
    if owner_uid(&owner).is_none() {
        return Some(
            "`busctl --user status` names no OwnerUID for the bus (its daemon runs outside any user's slice), which libcgroups' systemd driver needs".into(),
        );
    }
    match busctl(&["org.freedesktop.systemd1"]) {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!("no systemd user manager on the bus: {}", first_line(&o.stderr))),
        Err(e) => Some(format!("cannot run busctl: {e}")),
    }
}

fn first_line(b: &[u8]) -> String {
    String::from_utf8_lossy(b).lines().next().unwrap_or("").trim().to_string()
}

/// The OwnerUID= line of `busctl status` (the uid systemd derives from the peer's user slice).
pub fn owner_uid(status: &str) -> Option<u32> {
    status.lines().find_map(|l| l.strip_prefix("OwnerUID=")).and_then(|v| v.trim().parse().ok())
}

pub fn enforceable(mode: &str, delegated: &[String]) -> (Vec<String>, Vec<String>) {
    LIMIT_CONTROLLERS.iter().map(|c| c.to_string()).partition(|c| mode != "legacy" && mode != "none" && delegated.contains(c))
}

/// How `burrow run` would place a container: a scope from the user's manager whenever one can be
/// asked (ts/container/cgroup.ts chooses the same way, whichever cgroup the caller is in: a
/// desktop terminal's is delegated too, yet the manager's scope is what podman and burrow use),
/// else a cgroup beside the caller's in the delegated subtree.
pub fn manager_for(delegated: bool, user_manager: bool) -> &'static str {
    match (delegated, user_manager) {
        (true, true) => "systemd",
        (true, false) => "cgroupfs",
        (false, _) => "none",
    }
}

pub fn probe_with(mountinfo: &str, self_cgroup: &str, uid: u32) -> CgroupInfo {
    let layout = analyze(mountinfo, self_cgroup);
    let (root, source) = match &layout.v2_mount {
        Some(m) => find_delegation(m, layout.own_cgroup.as_deref(), uid),
        None => (None, "none"),
    };
    let available = root.as_deref().map(|r| words(&r.join("cgroup.controllers"))).unwrap_or_default();
    let delegated = if root.is_some() { available.clone() } else { Vec::new() };
    let (bus_address, bus, bus_why_not) = systemd_user_bus();
    let manager = manager_for(root.is_some(), bus);
    let (enf, not) = enforceable(&layout.mode, &delegated);
    CgroupInfo {
        layout,
        delegation_root: root,
        delegation_source: source.into(),
        available_controllers: available,
        delegated_controllers: delegated,
        systemd_user_manager: bus,
        systemd_user_manager_why_not: bus_why_not,
        bus_address,
        manager: manager.into(),
        enforceable: enf,
        not_enforceable: not,
    }
}

/// `probe` for the calling user.
pub fn probe_self() -> CgroupInfo {
    probe(nix::unistd::getuid().as_raw())
}

pub fn probe(uid: u32) -> CgroupInfo {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let cg = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    probe_with(&mi, &cg, uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
33 30 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
34 30 0:30 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
35 30 0:31 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
";
    const UNIFIED: &str = "31 25 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
    const LEGACY: &str = "32 30 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";

    #[test]
    fn modes() {
        let h = analyze(HYBRID, "4:memory:/x\n0::/user.slice\n");
        assert_eq!(h.mode, "hybrid");
        assert_eq!(h.v2_mount.as_deref(), Some(Path::new("/sys/fs/cgroup/unified")));
        assert_eq!(h.v1_controllers, vec!["cpu", "memory", "pids"]);
        assert_eq!(h.own_cgroup.as_deref(), Some("/user.slice"));
        assert_eq!(analyze(UNIFIED, "0::/\n").mode, "unified");
        assert_eq!(analyze(LEGACY, "4:memory:/\n").mode, "legacy");
        assert_eq!(analyze(LEGACY, "").own_cgroup, None);
        assert_eq!(analyze("", "").mode, "none");
    }

    #[test]
    fn unescapes_mount_points() {
        assert_eq!(unescape_mount_path("/a\\040b"), "/a b");
    }

    #[test]
    fn delegation_in_a_fake_tree() {
        // A fake v2 tree owned by the test process: every directory is manageable.
        let t = tempfile::tempdir().unwrap();
        let own = t.path().join("user.slice/app");
        std::fs::create_dir_all(&own).unwrap();
        for d in [t.path().to_path_buf(), t.path().join("user.slice"), own.clone()] {
            for f in ["cgroup.procs", "cgroup.subtree_control"] {
                std::fs::write(d.join(f), "").unwrap();
            }
        }
        std::fs::write(t.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        let (root, source) = find_delegation(t.path(), Some("/user.slice/app"), 1000);
        assert_eq!(root.as_deref(), Some(t.path()));
        assert_eq!(source, "own-cgroup");
    }

    #[test]
    fn busctl_owner_uid() {
        assert_eq!(owner_uid("BusScope=user\nPID=139\nUID=1001\nOwnerUID=1001\nGID=1001\n"), Some(1001));
        // A daemon outside any user-UID.slice: busctl prints no OwnerUID.
        assert_eq!(owner_uid("BusScope=user\nPID=139\nUID=1001\n"), None);
    }

    #[test]
    fn manager_is_systemd_whenever_the_user_manager_answers() {
        assert_eq!(manager_for(true, true), "systemd");
        assert_eq!(manager_for(true, false), "cgroupfs");
        assert_eq!(manager_for(false, false), "none");
    }

    #[test]
    fn enforceable_needs_v2_delegation() {
        let (e, n) = enforceable("unified", &["memory".into(), "pids".into()]);
        assert_eq!(e, vec!["memory", "pids"]);
        assert!(n.contains(&"cpu".to_string()));
        let (e, _) = enforceable("legacy", &["memory".into()]);
        assert!(e.is_empty());
    }
}
