//! Placing a container in cgroups and writing its resource limits (DESIGN.md, "cgroups").
//!
//! Two layouts: cgroup v2 (unified, one tree; rootless only in a subtree delegated to the user)
//! and v1 (a tree per controller; usable by root, as on this kind of hybrid host where the v2
//! tree has no useful controller). The resource → file mapping is computed by pure functions
//! (`v1_writes`, `v2_writes`) that unit tests check; `plan` (before the container's first
//! process exists: cgroup v2, our driver) and `place_at_pid` (after: v1, systemd scopes) apply
//! it, `strategy` decides which.
//!
//! A container that asks for no limit and names no cgroup path is not placed at all: nothing to
//! create, nothing to fail on, and no cost on the hot path. When limits are asked for but no
//! cgroup can be created (rootless without delegation), `place` fails with the controller
//! and the fix; the burrow CLI checks the same thing before it starts anything.
//!
//! This file holds the decision (`strategy`, `plan`, `place`) and the operations on a placed
//! container that dispatch by layout; each layout lives in its own module, as crun splits
//! libcrun's cgroup code: `v1`, `v2` (cgroupfs driver), `systemd` (transient scopes), `devices`
//! (device rules), `stats` (counters and the OOM watch).

mod devices;
mod error;
mod stats;
mod systemd;
mod v1;
mod v2;

use std::fs;
use std::path::{Path, PathBuf};

use libcgroups::common::{CgroupManager, ControllerOpt, FreezerState};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxResources, Spec};
use serde::{Deserialize, Serialize};

pub use error::{CgroupError, Result};
pub use stats::{oom_killed, stats, OomWatch};
pub use systemd::{cpu_list, systemd_unavailable};
use systemd::{place_systemd, reset_failed};
pub use v1::{mount_for_container, v1_writes};
use v2::{create_v2, v2_manager, v2_parent_of_own, V2Failure};
pub use v2::{shares_to_weight, v2_controllers, v2_writes};

/// One write: a controller (for v1, which hierarchy) and a file with its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub controller: &'static str,
    pub file: String,
    pub value: String,
}

fn w(controller: &'static str, file: impl Into<String>, value: impl ToString) -> Write {
    Write { controller, file: file.into(), value: value.to_string() }
}

/// Whether the config asks for any limit (device rules alone do not count: rootless runtimes
/// cannot enforce them and every runc template carries a deny-all rule).
pub fn has_limits(r: Option<&LinuxResources>) -> bool {
    r.is_some_and(|r| {
        r.memory().is_some()
            || r.cpu().is_some()
            || r.pids().is_some()
            || r.block_io().is_some()
            || r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty())
            || r.network().is_some()
            || r.unified().as_ref().is_some_and(|u| !u.is_empty())
    })
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    pub v2: bool,
    /// Directories we created, deepest last.
    pub dirs: Vec<PathBuf>,
    /// v2: the delegated cgroup libcgroups' manager is rooted at, and the path below it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v2_root: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v2_path: Option<PathBuf>,
    /// systemd driver: the "slice:prefix:name" path of the container's transient scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd: Option<String>,
    /// systemd driver: the scope's cgroup directory, as the kernel showed it once the first
    /// process was in (only systemd knows it beforehand); where `oom_killed` reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_dir: Option<PathBuf>,
    /// How the container's first process entered its cgroup (the `--debug` log says it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<Entry>,
}

/// How a process came to be in the container's cgroup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "by")]
pub enum Entry {
    /// Born there: clone3(CLONE_INTO_CGROUP) with the cgroup's directory (Linux 5.7+).
    CloneIntoCgroup,
    /// Moved there after fork by a write to cgroup.procs; `why` says why it was not born there
    /// (None: this layout has no other way, as v1).
    Migrated { why: Option<String> },
    /// Put there by systemd when it started the transient scope with the process's pid.
    SystemdScope,
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Entry::CloneIntoCgroup => f.write_str("CLONE_INTO_CGROUP"),
            Entry::Migrated { why: Some(w) } => write!(f, "migration ({w})"),
            Entry::Migrated { why: None } => f.write_str("migration"),
            Entry::SystemdScope => f.write_str("systemd scope"),
        }
    }
}

impl Placement {
    /// The container's cgroup directory when we know it without asking systemd: the v2 leaf, or
    /// the scope's directory recorded at creation.
    pub fn v2_dir(&self) -> Option<PathBuf> {
        match (&self.v2_root, &self.v2_path) {
            (Some(r), Some(path)) => Some(join(r, &path.display().to_string())),
            _ => self.scope_dir.clone(),
        }
    }

    /// One line for the `--debug` log: where the container's first process is and how it got there.
    pub fn describe(&self) -> String {
        let at = self.v2_dir().or_else(|| self.dirs.last().cloned()).map(|d| d.display().to_string()).unwrap_or_else(|| "(unknown)".into());
        match &self.entry {
            Some(e) => format!("cgroup {at}: entered by {e}"),
            None => format!("cgroup {at}"),
        }
    }
}

fn unified_root() -> Option<PathBuf> {
    let st = nix::sys::statfs::statfs("/sys/fs/cgroup").ok()?;
    (st.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC).then(|| PathBuf::from("/sys/fs/cgroup"))
}

fn own_v2() -> String {
    fs::read_to_string("/proc/self/cgroup").unwrap_or_default().lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("/").trim().to_string()
}

fn parent_cgroup(path: &str) -> String {
    match path.trim_end_matches('/').rsplit_once('/') {
        Some((parent, _)) if !parent.is_empty() => parent.to_string(),
        _ => "/".into(),
    }
}

fn join(base: &Path, rel: &str) -> PathBuf {
    let r = rel.trim_start_matches('/');
    if r.is_empty() {
        base.to_path_buf()
    } else {
        base.join(r)
    }
}

fn mkdirs(dir: &Path, created: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut d = dir.to_path_buf();
    while !d.exists() {
        missing.push(d.clone());
        if !d.pop() {
            break;
        }
    }
    for m in missing.into_iter().rev() {
        fs::create_dir(&m)?;
        created.push(m);
    }
    Ok(())
}

fn write_file(dir: &Path, file: &str, value: &str) -> Result<()> {
    let p = dir.join(file);
    fs::write(&p, value).map_err(|source| CgroupError::Write { path: p, value: value.to_string(), source })
}

/// How `place` may use systemd: `--systemd-cgroup` asks for a transient scope.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Driver {
    #[default]
    Cgroupfs,
    Systemd,
}

/// When and how a container's cgroup is made (`strategy`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Strategy {
    /// No cgroup: none asked for (no limit, no path).
    None,
    /// cgroup v2 with our own driver: made with its limits before the first process exists,
    /// which is then born in it (CLONE_INTO_CGROUP) or, where the kernel cannot, moved in.
    Precreate,
    /// Only once the first process exists: a systemd scope is started with its pid (systemd
    /// refuses an empty scope), and v1 has a hierarchy per controller and no CLONE_INTO_CGROUP.
    AtPid,
}

/// The decision behind `plan`, apart from the host: `unified` is whether /sys/fs/cgroup is
/// cgroup v2, `needed` whether the config asks for a cgroup (limits or a cgroupsPath).
pub fn strategy(unified: bool, driver: Driver, needed: bool) -> Strategy {
    match (driver, unified, needed) {
        (Driver::Systemd, _, _) => Strategy::AtPid,
        (_, _, false) => Strategy::None,
        (_, true, true) => Strategy::Precreate,
        (_, false, true) => Strategy::AtPid,
    }
}

/// What to do when clone3(CLONE_INTO_CGROUP) fails with `e`: fork and move the child in
/// (`true`), or give up (`false`). The kernel cannot do it before 5.3 (ENOSYS), before 5.7
/// (E2BIG: clone_args too large; EINVAL: unknown flag), or a seccomp filter hides clone3 (EPERM,
/// or ENOSYS as Docker's profile does). A refusal about the cgroup itself (EACCES, ENOENT,
/// EBUSY, EOPNOTSUPP: not a v2 cgroup) is answered the same way a migration would be, so the
/// migration is tried and its error, with its message and the no-limit rule, is the one
/// reported. Anything else (EAGAIN, ENOMEM) would fail a fork as well.
pub fn fall_back_from_clone_into(e: nix::errno::Errno) -> bool {
    use nix::errno::Errno::*;
    matches!(e, ENOSYS | E2BIG | EINVAL | EPERM | EACCES | ENOENT | EBUSY | EOPNOTSUPP)
}

/// A container cgroup (v2) made before its first process, with the open directory that
/// clone3(CLONE_INTO_CGROUP) takes.
pub struct Prepared {
    pub placement: Placement,
    pub dir: std::os::fd::OwnedFd,
    limits: bool,
}

/// The container's cgroup before any of its processes exists (see `Strategy`).
pub enum Plan {
    None,
    Ready(Prepared),
    AtPid,
}

/// Decides how the container gets its cgroup and, on cgroup v2 with the cgroupfs driver, makes
/// it now with its limits. A cgroup that cannot be made is an error when limits were asked for,
/// else the container runs unplaced (`Plan::None`), as runc does rootless.
pub fn plan(spec: &Spec, id: &str, driver: Driver) -> Result<Plan> {
    let linux = spec.linux().as_ref();
    let path = linux.and_then(|l| l.cgroups_path().clone());
    let res = linux.and_then(|l| l.resources().as_ref());
    let limits = has_limits(res);
    let root = unified_root();
    match strategy(root.is_some(), driver, path.is_some() || limits) {
        Strategy::None => Ok(Plan::None),
        Strategy::AtPid => Ok(Plan::AtPid),
        Strategy::Precreate => {
            let root = root.expect("Precreate is chosen for cgroup v2 only");
            let rel = cgroupfs_path(path.as_deref(), id);
            let base = if rel.starts_with('/') { root.clone() } else { join(&root, &v2_parent_of_own()) };
            let placement = match create_v2(&root, &base, &rel, res) {
                Ok(p) => p,
                Err(V2Failure::Unplaced(why)) => return unplaced(limits, why).map(|_| Plan::None),
                Err(V2Failure::Fatal(e)) => return Err(e),
            };
            let dir = placement.v2_dir().expect("a v2 placement has a directory");
            match nix::fcntl::open(
                &dir,
                nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            ) {
                // SAFETY: a descriptor open() just returned, owned by nobody else.
                Ok(fd) => Ok(Plan::Ready(Prepared { placement, dir: unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }, limits })),
                Err(e) => {
                    remove(&placement);
                    unplaced(limits, format!("open {}: {e}", dir.display())).map(|_| Plan::None)
                }
            }
        }
    }
}

/// Moves `pid` into a prepared cgroup that it was not born in (`why`: why not). A process that
/// cannot be moved leaves the cgroup removed and, without limits, runs unplaced (`Ok(None)`).
pub fn enter(p: Prepared, pid: i32, why: Option<String>) -> Result<Option<Placement>> {
    let Prepared { mut placement, dir, limits } = p;
    drop(dir);
    let joined =
        v2_manager(&placement).ok_or_else(|| "the cgroup cannot be opened".to_string()).and_then(|m| m.add_task(Pid::from_raw(pid)).map_err(|e| e.to_string()));
    if let Err(e) = joined {
        remove(&placement);
        return unplaced(limits, e);
    }
    placement.entry = Some(Entry::Migrated { why });
    Ok(Some(placement))
}

/// A prepared cgroup that its first process was born in.
pub fn born_in(p: Prepared) -> Placement {
    Placement { entry: Some(Entry::CloneIntoCgroup), ..p.placement }
}

/// No cgroup for the container: an error naming the cause and the fix when it asked for limits.
fn unplaced(limits: bool, why: String) -> Result<Option<Placement>> {
    if limits {
        Err(CgroupError::Create { why })
    } else {
        Ok(None) // a cgroup path alone, and no right to create it: run unplaced, as runc does rootless
    }
}

/// The cgroupfs driver's path for the container: the config's, else `burrow-ID` (relative:
/// beside this process's cgroup). A systemd-style "slice:prefix:name" means nothing here.
fn cgroupfs_path(path: Option<&Path>, id: &str) -> String {
    match path.map(|p| p.display().to_string()) {
        Some(p) if !p.contains(':') || p.starts_with('/') => p,
        _ => format!("burrow-{id}"),
    }
}

/// Places the container whose first process `pid` already exists: creates its cgroup(s), writes
/// limits and moves the process in. `Ok(None)` when the container needs no cgroup.
pub fn place(spec: &Spec, id: &str, pid: i32, driver: Driver) -> Result<Option<Placement>> {
    match plan(spec, id, driver)? {
        Plan::None => Ok(None),
        Plan::Ready(p) => enter(p, pid, None),
        Plan::AtPid => place_at_pid(spec, id, pid, driver),
    }
}

/// `Strategy::AtPid`: a systemd scope, or the v1 hierarchies, for the process `pid`.
pub fn place_at_pid(spec: &Spec, id: &str, pid: i32, driver: Driver) -> Result<Option<Placement>> {
    let linux = spec.linux().as_ref();
    let path = linux.and_then(|l| l.cgroups_path().clone());
    let res = linux.and_then(|l| l.resources().as_ref());
    let limits = has_limits(res);
    if driver == Driver::Systemd {
        return place_systemd(path.as_deref(), res, id, pid, limits);
    }
    v1::place(&cgroupfs_path(path.as_deref(), id), res, &devices::default_writes(spec), pid, limits)
}

/// Where a new process of the placed container goes (`exec`): on v2 the cgroup its init is in
/// now (the container's own, or a child of it that the container made, where the "no internal
/// processes" rule allows a process), on v1 the init's cgroup in each hierarchy we placed it in.
pub fn exec_targets(p: &Placement, init: i32) -> Vec<PathBuf> {
    let cg = fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap_or_default();
    if p.v2 {
        let now = cg.lines().find_map(|l| l.strip_prefix("0::")).and_then(|path| unified_root().map(|r| join(&r, path.trim())));
        return now.or_else(|| p.v2_dir()).into_iter().collect();
    }
    v1::exec_targets(p, &cg)
}

/// Moves `pid` into each of `dirs` (`exec`, when it was not born there); the error names the file.
pub fn move_into(dirs: &[PathBuf], pid: i32) -> std::result::Result<(), (PathBuf, std::io::Error)> {
    for d in dirs {
        let procs = d.join("cgroup.procs");
        fs::write(&procs, pid.to_string()).map_err(|e| (procs, e))?;
    }
    Ok(())
}

/// Removes the cgroups we created (after the container's processes are gone).
pub fn remove(p: &Placement) {
    // libcgroups removes the leaf whoever made it; a cgroup the caller made beforehand (to read
    // its counters after the run, as runc's users may) is not ours to delete.
    let ours = match (&p.v2_root, &p.v2_path) {
        (Some(r), Some(path)) => p.dirs.last().is_some_and(|d| *d == join(r, &path.display().to_string())),
        _ => p.systemd.is_some(),
    };
    if ours {
        if let Some(m) = v2_manager(p) {
            let _ = m.remove();
        }
    }
    if let Some(cgpath) = &p.systemd {
        reset_failed(cgpath);
    }
    for d in p.dirs.iter().rev() {
        for _ in 0..50 {
            match fs::remove_dir(d) {
                Ok(()) => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => std::thread::sleep(std::time::Duration::from_millis(10)),
                Err(_) => break,
            }
        }
    }
}

/// Applies new limits to a placed container (`update`): libcgroups on v2 (fs or systemd), the
/// same writes as at create on the v1 hierarchies the container was placed in.
pub fn update(p: &Placement, r: &LinuxResources) -> Result<()> {
    if p.v2 {
        let m = v2_manager(p).ok_or(CgroupError::Open)?;
        if let Some(dir) = p.v2_root.as_ref().zip(p.v2_path.as_ref()).map(|(r, path)| join(r, &path.display().to_string())) {
            let have = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
            if let Some(c) = v2_controllers(r).into_iter().find(|c| !have.split_whitespace().any(|h| h == *c)) {
                return Err(CgroupError::NotDelegatedForUpdate { controller: c.to_string(), dir });
            }
        }
        let opt = ControllerOpt { resources: r, freezer_state: None, oom_score_adj: None, disable_oom_killer: false };
        return m.apply(&opt).map_err(|e| CgroupError::Apply { dir: None, detail: e.to_string() });
    }
    v1::update(p, r)
}

/// Freezes or thaws every process of the container (`pause`, `resume`): the v2 freezer through
/// libcgroups, the v1 freezer hierarchy when the container was placed in one.
pub fn freeze(p: &Placement, frozen: bool) -> Result<()> {
    if p.v2 {
        let m = v2_manager(p).ok_or(CgroupError::Open)?;
        let state = if frozen { FreezerState::Frozen } else { FreezerState::Thawed };
        return m.freeze(state).map_err(|e| CgroupError::Freezer(e.to_string()));
    }
    v1::freeze(p, frozen)
}

/// Whether the container's processes are frozen (the `paused` status), judged from the cgroup
/// its init is in now (which also covers a systemd scope, whose path only systemd knows).
pub fn is_frozen(p: &Placement, pid: i32) -> bool {
    if p.v2 {
        let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        return cg
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .and_then(|path| unified_root().map(|r| join(&r, path.trim())))
            .is_some_and(|d| fs::read_to_string(d.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1"));
    }
    p.dirs.iter().any(|d| fs::read_to_string(d.join("freezer.state")).is_ok_and(|s| s.trim() == "FROZEN"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(json: serde_json::Value) -> LinuxResources {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn relative_paths_go_beside_the_own_cgroup() {
        assert_eq!(parent_cgroup("/user.slice/user-1001.slice/user@1001.service/init.scope"), "/user.slice/user-1001.slice/user@1001.service");
        assert_eq!(parent_cgroup("/init.scope"), "/");
        assert_eq!(parent_cgroup("/"), "/");
    }

    #[test]
    fn cgroup_made_before_the_process_only_on_v2_with_our_driver() {
        // v2, cgroupfs: made first, the process born in it.
        assert_eq!(strategy(true, Driver::Cgroupfs, true), Strategy::Precreate);
        // Nothing asked for: no cgroup at all, v1 or v2.
        assert_eq!(strategy(true, Driver::Cgroupfs, false), Strategy::None);
        assert_eq!(strategy(false, Driver::Cgroupfs, false), Strategy::None);
        // v1: a hierarchy per controller, no CLONE_INTO_CGROUP.
        assert_eq!(strategy(false, Driver::Cgroupfs, true), Strategy::AtPid);
        // A systemd scope needs the pid to exist, with or without limits.
        assert_eq!(strategy(true, Driver::Systemd, true), Strategy::AtPid);
        assert_eq!(strategy(true, Driver::Systemd, false), Strategy::AtPid);
    }

    #[test]
    fn clone_into_cgroup_falls_back_to_migration_where_the_kernel_cannot() {
        use nix::errno::Errno;
        // Before 5.3 (no clone3), 5.3-5.6 (unknown flag, or clone_args larger than it knows),
        // seccomp filters.
        for e in [Errno::ENOSYS, Errno::EINVAL, Errno::E2BIG, Errno::EPERM] {
            assert!(fall_back_from_clone_into(e), "{e}");
        }
        // The cgroup refused: the migration reports it the usual way (error or unplaced).
        for e in [Errno::EACCES, Errno::ENOENT, Errno::EBUSY, Errno::EOPNOTSUPP] {
            assert!(fall_back_from_clone_into(e), "{e}");
        }
        // A fork would fail as well.
        for e in [Errno::EAGAIN, Errno::ENOMEM] {
            assert!(!fall_back_from_clone_into(e), "{e}");
        }
    }

    #[test]
    fn cgroupfs_paths() {
        assert_eq!(cgroupfs_path(None, "abc"), "burrow-abc");
        assert_eq!(cgroupfs_path(Some(Path::new("burrow-vm-mem")), "abc"), "burrow-vm-mem");
        assert_eq!(cgroupfs_path(Some(Path::new("/a/b")), "abc"), "/a/b");
        // A systemd "slice:prefix:name" means nothing to the cgroupfs driver.
        assert_eq!(cgroupfs_path(Some(Path::new("user.slice:burrow:abc")), "abc"), "burrow-abc");
    }

    #[test]
    fn entry_is_described_for_the_debug_log() {
        let p = Placement {
            v2: true,
            v2_root: Some("/sys/fs/cgroup/u".into()),
            v2_path: Some("burrow-x".into()),
            entry: Some(Entry::CloneIntoCgroup),
            ..Default::default()
        };
        assert_eq!(p.describe(), "cgroup /sys/fs/cgroup/u/burrow-x: entered by CLONE_INTO_CGROUP");
        let m = Placement { entry: Some(Entry::Migrated { why: Some("clone3 with CLONE_INTO_CGROUP: Invalid argument".into()) }), ..p.clone() };
        assert_eq!(m.describe(), "cgroup /sys/fs/cgroup/u/burrow-x: entered by migration (clone3 with CLONE_INTO_CGROUP: Invalid argument)");
        // state.json keeps it; older states without it still load.
        let back: Placement = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
        let old: Placement = serde_json::from_str(r#"{"v2":true,"dirs":[]}"#).unwrap();
        assert_eq!(old.entry, None);
    }

    #[test]
    fn limits_detection() {
        assert!(!has_limits(None));
        assert!(!has_limits(Some(&res(serde_json::json!({ "devices": [{ "allow": false, "access": "rwm" }] })))));
        assert!(has_limits(Some(&res(serde_json::json!({ "pids": { "limit": 5 } })))));
    }
}
