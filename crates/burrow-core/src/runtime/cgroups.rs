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

use std::fs;
use std::path::{Path, PathBuf};

use libcgroups::common::{AnyCgroupManager, CgroupManager, ControllerOpt, FreezerState};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxDeviceType, LinuxResources, Spec};
use serde::{Deserialize, Serialize};

use super::error::{Result, RuntimeError};

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

fn dev_type(t: Option<LinuxDeviceType>) -> char {
    match t {
        Some(LinuxDeviceType::B) => 'b',
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => 'c',
        Some(LinuxDeviceType::P) => 'p',
        _ => 'a',
    }
}

fn num(v: Option<i64>) -> String {
    match v {
        Some(n) if n >= 0 => n.to_string(),
        _ => "*".into(),
    }
}

/// Resource files for cgroup v1, in the order they must be written.
pub fn v1_writes(r: &LinuxResources) -> Vec<Write> {
    let mut out = Vec::new();
    if let Some(m) = r.memory() {
        if let Some(l) = m.limit() {
            out.push(w("memory", "memory.limit_in_bytes", l));
        }
        if let Some(s) = m.swap() {
            out.push(w("memory", "memory.memsw.limit_in_bytes", s));
        }
        if let Some(v) = m.reservation() {
            out.push(w("memory", "memory.soft_limit_in_bytes", v));
        }
        if let Some(v) = m.kernel() {
            out.push(w("memory", "memory.kmem.limit_in_bytes", v));
        }
        if let Some(v) = m.kernel_tcp() {
            out.push(w("memory", "memory.kmem.tcp.limit_in_bytes", v));
        }
        if let Some(v) = m.swappiness() {
            out.push(w("memory", "memory.swappiness", v));
        }
        if m.disable_oom_killer() == Some(true) {
            out.push(w("memory", "memory.oom_control", 1));
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(v) = c.shares() {
            out.push(w("cpu", "cpu.shares", v));
        }
        if let Some(v) = c.period() {
            out.push(w("cpu", "cpu.cfs_period_us", v));
        }
        if let Some(v) = c.quota() {
            out.push(w("cpu", "cpu.cfs_quota_us", v));
        }
        if let Some(v) = c.realtime_period() {
            out.push(w("cpu", "cpu.rt_period_us", v));
        }
        if let Some(v) = c.realtime_runtime() {
            out.push(w("cpu", "cpu.rt_runtime_us", v));
        }
        if let Some(v) = c.cpus().as_ref().filter(|s| !s.is_empty()) {
            out.push(w("cpuset", "cpuset.cpus", v));
        }
        if let Some(v) = c.mems().as_ref().filter(|s| !s.is_empty()) {
            out.push(w("cpuset", "cpuset.mems", v));
        }
    }
    if let Some(p) = r.pids() {
        out.push(w("pids", "pids.max", if p.limit() > 0 { p.limit().to_string() } else { "max".into() }));
    }
    if let Some(b) = r.block_io() {
        if let Some(v) = b.weight() {
            out.push(w("blkio", "blkio.weight", v));
        }
        if let Some(v) = b.leaf_weight() {
            out.push(w("blkio", "blkio.leaf_weight", v));
        }
        for d in b.weight_device().iter().flatten() {
            if let Some(v) = d.weight() {
                out.push(w("blkio", "blkio.weight_device", format!("{}:{} {v}", d.major(), d.minor())));
            }
            if let Some(v) = d.leaf_weight() {
                out.push(w("blkio", "blkio.leaf_weight_device", format!("{}:{} {v}", d.major(), d.minor())));
            }
        }
        for (list, file) in [
            (b.throttle_read_bps_device(), "blkio.throttle.read_bps_device"),
            (b.throttle_write_bps_device(), "blkio.throttle.write_bps_device"),
            (b.throttle_read_iops_device(), "blkio.throttle.read_iops_device"),
            (b.throttle_write_iops_device(), "blkio.throttle.write_iops_device"),
        ] {
            for d in list.iter().flatten() {
                out.push(w("blkio", file, format!("{}:{} {}", d.major(), d.minor(), d.rate())));
            }
        }
    }
    for h in r.hugepage_limits().iter().flatten() {
        out.push(w("hugetlb", format!("hugetlb.{}.limit_in_bytes", h.page_size()), h.limit()));
    }
    if let Some(n) = r.network() {
        if let Some(c) = n.class_id() {
            out.push(w("net_cls", "net_cls.classid", c));
        }
        for p in n.priorities().iter().flatten() {
            out.push(w("net_prio", "net_prio.ifpriomap", format!("{} {}", p.name(), p.priority())));
        }
    }
    if let Some(devs) = r.devices() {
        for d in devs {
            let rule = format!("{} {}:{} {}", dev_type(d.typ()), num(d.major()), num(d.minor()), d.access().clone().unwrap_or_else(|| "rwm".into()));
            out.push(w("devices", if d.allow() { "devices.allow" } else { "devices.deny" }, rule));
        }
    }
    out
}

/// cgroup v1 cpu.shares to v2 cpu.weight, as crun and podman convert it.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 100;
    }
    1 + ((shares.clamp(2, 262144) - 2) * 9999) / 262142
}

/// Resource files for cgroup v2. Device rules need eBPF and are not written (see `place`).
pub fn v2_writes(r: &LinuxResources) -> Vec<Write> {
    let mut out = Vec::new();
    let lim = |v: i64| if v < 0 { "max".to_string() } else { v.to_string() };
    if let Some(m) = r.memory() {
        if let Some(l) = m.limit() {
            out.push(w("memory", "memory.max", lim(l)));
        }
        if let Some(v) = m.reservation() {
            out.push(w("memory", "memory.low", lim(v)));
        }
        if let Some(s) = m.swap() {
            // v1's swap is memory + swap; v2 counts swap alone.
            let swap = match (s, m.limit()) {
                (s, _) if s < 0 => "max".to_string(),
                (s, Some(l)) if l >= 0 => (s - l).max(0).to_string(),
                (s, _) => s.to_string(),
            };
            out.push(w("memory", "memory.swap.max", swap));
        }
        if m.disable_oom_killer() == Some(true) {
            out.push(w("memory", "memory.oom.group", 0));
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(v) = c.shares() {
            out.push(w("cpu", "cpu.weight", shares_to_weight(v)));
        }
        if c.quota().is_some() || c.period().is_some() {
            let q = c.quota().filter(|q| *q > 0).map(|q| q.to_string()).unwrap_or_else(|| "max".into());
            out.push(w("cpu", "cpu.max", format!("{q} {}", c.period().unwrap_or(100_000))));
        }
        if let Some(v) = c.cpus().as_ref().filter(|s| !s.is_empty()) {
            out.push(w("cpuset", "cpuset.cpus", v));
        }
        if let Some(v) = c.mems().as_ref().filter(|s| !s.is_empty()) {
            out.push(w("cpuset", "cpuset.mems", v));
        }
    }
    if let Some(p) = r.pids() {
        out.push(w("pids", "pids.max", if p.limit() > 0 { p.limit().to_string() } else { "max".into() }));
    }
    if let Some(b) = r.block_io() {
        if let Some(v) = b.weight() {
            out.push(w("io", "io.weight", format!("default {}", 1 + (v.clamp(10, 1000) as u64 - 10) * 9999 / 990)));
        }
        for (list, key) in [
            (b.throttle_read_bps_device(), "rbps"),
            (b.throttle_write_bps_device(), "wbps"),
            (b.throttle_read_iops_device(), "riops"),
            (b.throttle_write_iops_device(), "wiops"),
        ] {
            for d in list.iter().flatten() {
                out.push(w("io", "io.max", format!("{}:{} {key}={}", d.major(), d.minor(), d.rate())));
            }
        }
    }
    for h in r.hugepage_limits().iter().flatten() {
        out.push(w("hugetlb", format!("hugetlb.{}.max", h.page_size()), h.limit()));
    }
    let mut unified: Vec<(&String, &String)> = r.unified().iter().flatten().collect();
    unified.sort();
    for (k, v) in unified {
        let ctrl = match k.split('.').next().unwrap_or("") {
            "memory" => "memory",
            "cpu" => "cpu",
            "cpuset" => "cpuset",
            "pids" => "pids",
            "io" => "io",
            "hugetlb" => "hugetlb",
            _ => "",
        };
        out.push(w(ctrl, k.clone(), v));
    }
    out
}

/// Whether the config asks for any limit (device rules alone do not count: rootless runtimes
/// cannot enforce them and every runc template carries a deny-all rule).
pub fn has_limits(r: Option<&LinuxResources>) -> bool {
    r.is_some_and(|r| {
        r.memory().is_some() || r.cpu().is_some() || r.pids().is_some() || r.block_io().is_some() || r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()) || r.network().is_some() || r.unified().as_ref().is_some_and(|u| !u.is_empty())
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

struct V1Hierarchy {
    mount: PathBuf,
    controllers: Vec<String>,
    own: String,
}

fn v1_hierarchies() -> Vec<V1Hierarchy> {
    let mi = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let cg = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut out = Vec::new();
    for line in mi.lines() {
        let Some((pre, post)) = line.split_once(" - ") else { continue };
        let post: Vec<&str> = post.split(' ').collect();
        if post.first() != Some(&"cgroup") {
            continue;
        }
        let Some(mp) = pre.split(' ').nth(4) else { continue };
        let controllers: Vec<String> = post.get(2).unwrap_or(&"").split(',').filter(|o| !matches!(*o, "rw" | "ro" | "relatime" | "nosuid" | "nodev" | "noexec") && !o.starts_with("name=") && !o.contains('=')).map(String::from).collect();
        if controllers.is_empty() {
            continue;
        }
        // This process's path in that hierarchy: the /proc/self/cgroup line listing its controllers.
        let own = cg
            .lines()
            .filter_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
                let set: Vec<&str> = ctrls.split(',').collect();
                controllers.iter().all(|c| set.contains(&c.as_str())).then(|| path.to_string())
            })
            .next()
            .unwrap_or_else(|| "/".into());
        out.push(V1Hierarchy { mount: PathBuf::from(mp), controllers, own });
    }
    out
}

fn unified_root() -> Option<PathBuf> {
    let st = nix::sys::statfs::statfs("/sys/fs/cgroup").ok()?;
    (st.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC).then(|| PathBuf::from("/sys/fs/cgroup"))
}

fn own_v2() -> String {
    fs::read_to_string("/proc/self/cgroup").unwrap_or_default().lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("/").trim().to_string()
}

/// Where relative cgroup paths go on v2: beside this process's cgroup, not below it. The own
/// cgroup holds at least this process, and v2's "no internal processes" rule forbids enabling
/// controllers for the children of a cgroup with processes (EBUSY); its parent (the delegated
/// user@UID.service when the caller sits in a leaf such as init.scope) has none. runc's fs2
/// driver does the same.
fn v2_parent_of_own() -> String {
    parent_cgroup(&own_v2())
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
    fs::write(&p, value).map_err(|e| RuntimeError::Usage(format!("cgroup: write {value:?} to {}: {e}", p.display())))
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
            match nix::fcntl::open(&dir, nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty()) {
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
    let joined = v2_manager(&placement).ok_or_else(|| "the cgroup cannot be opened".to_string()).and_then(|m| m.add_task(Pid::from_raw(pid)).map_err(|e| e.to_string()));
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
        Err(RuntimeError::Usage(format!(
            "cannot create the container's cgroup to enforce its limits: {why}. Fix: use cgroup v2 with controllers delegated to this user (a systemd drop-in `Delegate=cpu cpuset io memory pids`), or run without resource limits"
        )))
    } else {
        Ok(None) // a cgroup path alone, and no right to create it: run unplaced, as runc does rootless
    }
}

/// The cgroupfs driver's path for the container: the config's, else `burrow-ID` (relative:
/// beside this process's cgroup). A systemd-style "slice:prefix:name" means nothing here.
fn cgroupfs_path(path: Option<&Path>, id: &str) -> String {
    match path.map(|p| p.display().to_string()) {
        Some(p) if !(p.contains(':') && !p.starts_with('/')) => p,
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
    let rel = cgroupfs_path(path.as_deref(), id);
    let absolute = rel.starts_with('/');
    let fail = |why: String| unplaced(limits, why);
    let mut placement = Placement::default();
    let writes = res.map(v1_writes).unwrap_or_default();
    let hierarchies = v1_hierarchies();
    if hierarchies.is_empty() {
        return fail("no cgroup hierarchy is mounted".into());
    }
    // Refused before anything is made: a controller the limits need and no hierarchy has.
    let missing: Vec<&str> = writes.iter().map(|w| w.controller).filter(|c| !hierarchies.iter().any(|h| h.controllers.iter().any(|x| x == c))).collect();
    if let Some(c) = missing.first() {
        return Err(RuntimeError::Usage(format!("cgroup: the {c} controller is not mounted on this host, so its limits cannot be enforced")));
    }
    // On failure the process goes back where it came from first: a cgroup with a process in it
    // cannot be removed (EBUSY), and it would be left behind.
    let mut back: Vec<PathBuf> = Vec::new();
    let undo = |placement: &Placement, back: &[PathBuf]| {
        for d in back {
            let _ = fs::write(d.join("cgroup.procs"), pid.to_string());
        }
        remove(placement);
    };
    for h in &hierarchies {
        let base = if absolute { h.mount.clone() } else { join(&h.mount, &h.own) };
        let dir = join(&base, &rel);
        if let Err(e) = mkdirs(&dir, &mut placement.dirs) {
            undo(&placement, &back);
            return fail(format!("mkdir {}: {e}", dir.display()));
        }
        if h.controllers.iter().any(|c| c == "cpuset") {
            // A new cpuset cgroup starts empty and refuses tasks until given cpus and mems, and
            // v1 refuses (EACCES) a mask that is not a subset of the parent's: fill every empty
            // level from the top down with its parent's, the leaf last.
            let mut levels = vec![dir.clone()];
            let mut p = dir.clone();
            while p.pop() && p.starts_with(&h.mount) && p != h.mount {
                levels.push(p.clone());
            }
            for level in levels.iter().rev() {
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    if fs::read_to_string(level.join(f)).map(|s| s.trim().is_empty()).unwrap_or(false) {
                        if let Some(v) = level.parent().and_then(|up| fs::read_to_string(up.join(f)).ok()) {
                            let _ = fs::write(level.join(f), v.trim());
                        }
                    }
                }
            }
        }
        for wr in writes.iter().filter(|wr| h.controllers.iter().any(|c| c == wr.controller)) {
            // Kernel memory limits are deprecated and refused by recent kernels (EOPNOTSUPP):
            // set when possible, never fatal — as runc does.
            if wr.file.starts_with("memory.kmem.") {
                let _ = write_file(&dir, &wr.file, &wr.value);
                continue;
            }
            if wr.controller == "devices" && wr.file == "devices.deny" && wr.value.starts_with("a ") {
                let _ = write_file(&dir, &wr.file, &wr.value);
                continue;
            }
            if let Err(e) = write_file(&dir, &wr.file, &wr.value) {
                undo(&placement, &back);
                return Err(e);
            }
        }
        if let Err(e) = write_file(&dir, "cgroup.procs", &pid.to_string()) {
            undo(&placement, &back);
            return fail(e.to_string());
        }
        back.push(join(&h.mount, &h.own));
    }
    placement.entry = Some(Entry::Migrated { why: None });
    Ok(Some(placement))
}

enum V2Failure {
    /// No cgroup could be made or joined: fatal only when limits were asked for.
    Unplaced(String),
    /// The cgroup exists but a limit cannot be applied: always fatal.
    Fatal(RuntimeError),
}

/// Makes the container's cgroup v2 `rel` below the delegated cgroup `base` and writes its limits,
/// with no process in it yet. Controllers are enabled from `base` down to the leaf's parent, never
/// above (where the user may not write): every controller `base` has, as libcgroups' fs manager
/// enables them, so that `stats` can read a container that has no limit.
fn create_v2(root: &Path, base: &Path, rel: &str, res: Option<&LinuxResources>) -> std::result::Result<Placement, V2Failure> {
    let dir = join(base, rel);
    let mut placement = Placement { v2: true, v2_root: Some(base.to_path_buf()), v2_path: Some(PathBuf::from(rel.trim_start_matches('/'))), ..Default::default() };
    let Some(manager) = v2_manager(&placement) else {
        return Err(V2Failure::Unplaced(format!("{} is not a valid cgroup path", dir.display())));
    };
    // Directories that do not exist yet are ours to remove at delete; libcgroups removes only the leaf.
    if let Err(e) = mkdirs(&dir, &mut placement.dirs) {
        remove(&placement);
        return Err(V2Failure::Unplaced(format!("mkdir {}: {e}", dir.display())));
    }
    let offered = fs::read_to_string(base.join("cgroup.controllers")).unwrap_or_default();
    // Each level from `base` to the leaf's parent; not the leaf, which holds the processes (a
    // cgroup with controllers enabled for its children cannot). Best effort, as libcgroups: a
    // limit whose controller could not be enabled is refused below, by name.
    let mut level = base.to_path_buf();
    for c in dir.strip_prefix(base).map(|r| r.components().collect::<Vec<_>>()).unwrap_or_default() {
        for ctrl in offered.split_whitespace() {
            let _ = fs::write(level.join("cgroup.subtree_control"), format!("+{ctrl}"));
        }
        level.push(c);
    }
    let need = res.map(v2_controllers).unwrap_or_default();
    // Without the controller the limit's file does not exist, and libcgroups' write fails with a
    // bare ENOENT or EACCES: name the controller and the fix instead.
    let have = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    if let Some(c) = need.iter().find(|c| !have.split_whitespace().any(|h| h == **c)) {
        let parent = dir.parent().unwrap_or(root);
        let offered = fs::read_to_string(parent.join("cgroup.controllers")).unwrap_or_default();
        remove(&placement);
        return Err(V2Failure::Fatal(RuntimeError::Usage(format!(
            "cgroup: the {c} controller is not available in {} (it offers: {}), so the container's {c} limits cannot be enforced. Fix: delegate {c} to this user (a systemd drop-in `Delegate=cpu cpuset io memory pids` for user@.service), or run without {c} limits",
            parent.display(),
            if offered.trim().is_empty() { "none" } else { offered.trim() }
        ))));
    }
    if let Some(r) = res {
        let opt = ControllerOpt { resources: r, freezer_state: None, oom_score_adj: None, disable_oom_killer: false };
        if let Err(e) = manager.apply(&opt) {
            remove(&placement);
            return Err(V2Failure::Fatal(RuntimeError::Usage(format!("cgroup: cannot apply the container's limits in {}: {e}", dir.display()))));
        }
    }
    Ok(placement)
}

/// Whether `--systemd-cgroup` can be honoured here, and if not why. Without systemd (inside
/// containers, on many HPC nodes, on this kind of CI host) the runtime falls back to the
/// cgroupfs driver with a warning, as podman does, instead of refusing a container that may not
/// even need a cgroup.
pub fn systemd_unavailable() -> Option<&'static str> {
    if unified_root().is_none() {
        Some("systemd cgroup placement needs cgroup v2 and this host's /sys/fs/cgroup is not cgroup v2")
    } else if !libcgroups::systemd::booted() {
        Some("systemd is not running here (no /run/systemd/system)")
    } else {
        None
    }
}

/// `--systemd-cgroup`: a transient scope from the (user's) systemd over D-Bus, through
/// libcgroups' systemd manager.
fn place_systemd(path: Option<&Path>, res: Option<&LinuxResources>, id: &str, pid: i32, limits: bool) -> Result<Option<Placement>> {
    let cgpath = path.map(|p| p.display().to_string()).filter(|p| p.contains(':')).unwrap_or_else(|| format!(":burrow:{id}"));
    let config = libcgroups::common::CgroupConfig { cgroup_path: PathBuf::from(&cgpath), systemd_cgroup: true, container_name: id.to_string() };
    let manager = libcgroups::common::create_cgroup_manager(config).map_err(|e| RuntimeError::Usage(format!("--systemd-cgroup: cannot reach systemd for a transient scope: {e}. Fix: start a user session (loginctl enable-linger), or drop --systemd-cgroup to use the cgroupfs driver")))?;
    if let Err(e) = manager.add_task(Pid::from_raw(pid)) {
        // The scope systemd could not fill stays loaded as failed.
        let _ = manager.remove();
        reset_failed(&cgpath);
        // systemd moves the process itself, with the user's rights, from wherever it is: out of
        // a cgroup the user does not own (an ssh login's session-N.scope) only the system
        // manager can, which the user's manager then asks over the system bus.
        let own = own_v2();
        return Err(RuntimeError::Usage(format!(
            "--systemd-cgroup: cannot start the scope for {id}: {e} (systemd could not move process {pid} out of {own} into the scope{}). Fix: run burrow from a cgroup of your user manager (`systemd-run --user --scope burrow ...`), or drop --systemd-cgroup to use the cgroupfs driver",
            if unified_root().is_some_and(|r| crate::probe::cgroups::manageable(&join(&r, &own))) { "" } else { ", which you do not own" }
        )));
    }
    // Only systemd knew the scope's directory; the kernel now shows it for the process.
    let scope_dir = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok().and_then(|c| c.lines().find_map(|l| l.strip_prefix("0::")).map(|p| p.trim().to_string())).and_then(|p| unified_root().map(|r| join(&r, &p)));
    let placement = Placement { v2: true, systemd: Some(cgpath.clone()), scope_dir, entry: Some(Entry::SystemdScope), ..Default::default() };
    if let Some(r) = res.filter(|_| limits) {
        // libcgroups 0.7 sends AllowedCPUs/AllowedMemoryNodes as arrays of u64 where systemd
        // wants bytes ("ay"), and systemd refuses the whole call: those two go through systemctl.
        let cpuset = r.cpu().as_ref().map(|c| (c.cpus().clone(), c.mems().clone())).filter(|(c, m)| c.is_some() || m.is_some());
        let mut rest = r.clone();
        if let Some(mut c) = rest.cpu().clone().filter(|_| cpuset.is_some()) {
            c.set_cpus(None);
            c.set_mems(None);
            rest.set_cpu(Some(c));
        }
        let opt = ControllerOpt { resources: &rest, freezer_state: None, oom_score_adj: None, disable_oom_killer: false };
        let applied = manager.apply(&opt).map_err(|e| e.to_string()).and_then(|_| match &cpuset {
            Some((cpus, mems)) => set_cpuset(&cgpath, placement.scope_dir.as_deref(), cpus.as_deref(), mems.as_deref()),
            None => Ok(()),
        });
        if let Err(e) = applied {
            let _ = manager.remove();
            reset_failed(&cgpath);
            return Err(RuntimeError::Usage(format!("--systemd-cgroup: cannot apply the container's limits: {e}. Fix: delegate the controllers to this user (`Delegate=cpu cpuset io memory pids`)")));
        }
    }
    Ok(Some(placement))
}

/// The scope's cpuset through `systemctl set-property --runtime` (see place_systemd), then read
/// back from its cgroup: systemd enables cpuset on the way down only if it can.
fn set_cpuset(cgpath: &str, scope_dir: Option<&Path>, cpus: Option<&str>, mems: Option<&str>) -> std::result::Result<(), String> {
    let mut props = Vec::new();
    if let Some(c) = cpus {
        props.push(format!("AllowedCPUs={c}"));
    }
    if let Some(m) = mems {
        props.push(format!("AllowedMemoryNodes={m}"));
    }
    let unit = systemd_unit(cgpath);
    let mut args = vec!["set-property".to_string(), "--runtime".into(), unit.clone()];
    args.extend(props);
    let out = systemctl(&args).map_err(|e| format!("systemctl set-property {unit}: {e}"))?;
    if !out.status.success() {
        return Err(format!("systemctl set-property {unit}: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    for (file, want) in [("cpuset.cpus", cpus), ("cpuset.mems", mems)] {
        let Some(want) = want else { continue };
        let got = scope_dir.and_then(|d| fs::read_to_string(d.join(file)).ok()).unwrap_or_default();
        if cpu_list(got.trim()) != cpu_list(want) {
            return Err(format!("systemd did not give the scope {file} {want} (it has {:?}): the cpuset controller is not delegated to the user manager", got.trim()));
        }
    }
    Ok(())
}

/// A cpu or node list ("0-2,5") as a sorted set; None when malformed.
pub fn cpu_list(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?);
                if a > b || b - a > 4096 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

/// systemctl for the manager libcgroups chose: the system one for real root, else the user's.
fn systemctl(args: &[String]) -> std::io::Result<std::process::Output> {
    let true_root = nix::unistd::geteuid().is_root() && fs::read_to_string("/proc/self/uid_map").is_ok_and(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"]);
    let mut cmd = std::process::Command::new("systemctl");
    if !true_root {
        cmd.arg("--user");
    }
    cmd.args(args).stdin(std::process::Stdio::null()).output()
}

/// The unit libcgroups' systemd driver names for a "slice:prefix:name" path.
fn systemd_unit(cgpath: &str) -> String {
    let parts: Vec<&str> = cgpath.split(':').collect();
    let (prefix, name) = match parts.as_slice() {
        [_, prefix, name] | [prefix, name] => (*prefix, *name),
        _ => return cgpath.to_string(),
    };
    if name.ends_with(".slice") {
        name.to_string()
    } else {
        format!("{prefix}-{name}.scope")
    }
}

/// Forgets the container's scope if systemd keeps it as failed: a scope whose process was
/// OOM-killed while systemd watched (OOMPolicy=stop makes that a failure), or one that systemd
/// could not fill, stays loaded until reset, and libcgroups' driver only stops units. Through
/// systemctl, which every systemd host has: libcgroups does not expose its bus connection.
/// Talks to the manager libcgroups chose (the system one for real root, else the user's).
fn reset_failed(cgpath: &str) {
    let _ = systemctl(&["reset-failed".into(), "--quiet".into(), systemd_unit(cgpath)]);
}

fn v2_manager(p: &Placement) -> Option<AnyCgroupManager> {
    if let Some(path) = &p.systemd {
        let name = path.rsplit(':').next().unwrap_or_default().to_string();
        let config = libcgroups::common::CgroupConfig { cgroup_path: PathBuf::from(path), systemd_cgroup: true, container_name: name };
        return libcgroups::common::create_cgroup_manager(config).ok();
    }
    let (root, path) = (p.v2_root.as_ref()?, p.v2_path.as_ref()?);
    libcgroups::v2::manager::Manager::new(root.clone(), path.clone()).ok().map(|m| m.any())
}

/// Controllers the resources need on cgroup v2 (device rules need eBPF and are not enforced).
pub fn v2_controllers(r: &LinuxResources) -> Vec<&'static str> {
    let mut need: Vec<&'static str> = v2_writes(r).iter().map(|w| w.controller).filter(|c| !c.is_empty()).collect();
    need.sort();
    need.dedup();
    need
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
    v1_hierarchies()
        .into_iter()
        .filter(|h| p.dirs.iter().any(|d| d.starts_with(&h.mount)))
        .filter_map(|h| {
            cg.lines().find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
                let set: Vec<&str> = ctrls.split(',').collect();
                h.controllers.iter().all(|c| set.contains(&c.as_str())).then(|| join(&h.mount, path.trim()))
            })
        })
        .collect()
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
        let m = v2_manager(p).ok_or_else(|| RuntimeError::Usage("cgroup: the container's cgroup cannot be opened".into()))?;
        if let Some(dir) = p.v2_root.as_ref().zip(p.v2_path.as_ref()).map(|(r, path)| join(r, &path.display().to_string())) {
            let have = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
            if let Some(c) = v2_controllers(r).into_iter().find(|c| !have.split_whitespace().any(|h| h == *c)) {
                return Err(RuntimeError::Usage(format!("cgroup: the {c} controller is not available in {}, so {c} limits cannot be changed. Fix: delegate {c} to this user", dir.display())));
            }
        }
        let opt = ControllerOpt { resources: r, freezer_state: None, oom_score_adj: None, disable_oom_killer: false };
        return m.apply(&opt).map_err(|e| RuntimeError::Usage(format!("cgroup: cannot apply the new limits: {e}")));
    }
    let hierarchies = v1_hierarchies();
    let dir_of = |controller: &str| p.dirs.iter().rev().find(|d| hierarchies.iter().any(|h| d.starts_with(&h.mount) && h.controllers.iter().any(|c| c == controller)));
    let current_limit = dir_of("memory").and_then(|d| fs::read_to_string(d.join("memory.limit_in_bytes")).ok()).and_then(|v| v.trim().parse::<u64>().ok());
    for wr in v1_update_order(v1_writes(r), current_limit) {
        let Some(dir) = dir_of(wr.controller) else {
            return Err(RuntimeError::Usage(format!("cgroup: the container has no {} cgroup, so its {} cannot be changed", wr.controller, wr.file)));
        };
        write_file(dir, &wr.file, &wr.value)?;
    }
    Ok(())
}

/// The v1 writes of `update` in an order the kernel accepts, given the container's current
/// memory.limit_in_bytes: a memory limit above the current memory+swap limit is refused (EINVAL),
/// and so is a memory+swap limit below the current memory limit. When both change and the new
/// memory+swap limit is unlimited or above the current memory limit, it goes first (raising);
/// otherwise the memory limit does (lowering). runc's setMemoryAndSwap orders them the same way.
/// At create the cgroup is new (unlimited), so `v1_writes`' order is already right there.
fn v1_update_order(mut ws: Vec<Write>, current_limit: Option<u64>) -> Vec<Write> {
    let limit = ws.iter().position(|w| w.file == "memory.limit_in_bytes");
    let swap = ws.iter().position(|w| w.file == "memory.memsw.limit_in_bytes");
    if let (Some(l), Some(s)) = (limit, swap) {
        let raise = match ws[s].value.parse::<i64>() {
            Ok(v) if v < 0 => true,
            Ok(v) => current_limit.is_some_and(|cur| cur < v as u64),
            Err(_) => false,
        };
        if raise && s > l {
            let sw = ws.remove(s);
            ws.insert(l, sw);
        }
    }
    ws
}

/// Whether the kernel's OOM killer killed a process of the container (memory.events' oom_kill
/// on v2, memory.oom_control's on v1): read after the container exited, before its cgroup goes,
/// for `inspect`'s OOMKilled.
pub fn oom_killed(p: &Placement) -> bool {
    let count = |file: PathBuf| -> bool { oom_kill_count(&file).is_some_and(|n| n > 0) };
    match p.v2_dir() {
        // A systemd scope's directory may be gone already: see `OomWatch`.
        Some(d) => count(d.join("memory.events")),
        None if p.v2 => false,
        None => p.dirs.iter().any(|d| count(d.join("memory.oom_control"))),
    }
}

/// `OOMKilled` for a container in a systemd scope. systemd removes the scope's cgroup, counters
/// and all, as soon as it finds it empty, and it starts stopping the scope at the OOM kill itself
/// (OOMPolicy=stop), so the counters read once the container's init has exited (`oom_killed`)
/// may be gone already: in the VM lane that happened to 2 of 3 back-to-back runs. So:
/// - while the container runs, every change of the scope's memory.events (inotify) is read; the
///   kernel rate-limits these notifications (one per 20 ms), so the one for the kill itself may
///   come when the file is gone, but an earlier one can catch the count;
/// - at the exit, the scope's own count if it can still be read, else whether the count of its
///   parent slice (hierarchical, and it stays) grew since the container started. That one also
///   counts the other scopes of the slice: a sibling's OOM kill while this container ran, when
///   this container's own counters are gone too, would be reported as this one's.
/// A cgroup of our own stays until we remove it and needs none of this.
pub struct OomWatch {
    inotify: nix::sys::inotify::Inotify,
    file: PathBuf,
    parent: PathBuf,
    parent_at_start: Option<u64>,
    seen: bool,
}

impl OomWatch {
    /// Before the container's program runs.
    pub fn new(p: &Placement) -> Option<OomWatch> {
        use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
        p.systemd.as_ref()?;
        let dir = p.scope_dir.as_ref()?;
        let file = dir.join("memory.events");
        let parent = dir.parent()?.join("memory.events");
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
        inotify.add_watch(&file, AddWatchFlags::IN_MODIFY).ok()?;
        let parent_at_start = oom_kill_count(&parent);
        let mut w = OomWatch { inotify, file, parent, parent_at_start, seen: false };
        w.check();
        Some(w)
    }

    /// Reads the counters after a change (and drains the notifications).
    pub fn check(&mut self) {
        while let Ok(ev) = self.inotify.read_events() {
            if ev.is_empty() {
                break;
            }
        }
        self.seen |= oom_kill_count(&self.file).is_some_and(|n| n > 0);
    }

    /// Once the container's init has exited: whether the OOM killer killed one of its processes.
    pub fn killed(&mut self) -> bool {
        if self.seen {
            return true;
        }
        match oom_kill_count(&self.file) {
            Some(n) => n > 0,
            None => matches!((self.parent_at_start, oom_kill_count(&self.parent)), (Some(a), Some(b)) if b > a),
        }
    }
}

impl super::wait::Served for OomWatch {
    fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        Some(std::os::fd::AsFd::as_fd(&self.inotify))
    }
    fn ready(&mut self) {
        self.check();
    }
}

/// memory.events' oom_kill count; None when the file cannot be read (the cgroup is gone).
fn oom_kill_count(file: &Path) -> Option<u64> {
    Some(fs::read_to_string(file).ok()?.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0))
}

/// Freezes or thaws every process of the container (`pause`, `resume`): the v2 freezer through
/// libcgroups, the v1 freezer hierarchy when the container was placed in one.
pub fn freeze(p: &Placement, frozen: bool) -> Result<()> {
    if p.v2 {
        let m = v2_manager(p).ok_or_else(|| RuntimeError::Usage("cgroup: the container's cgroup cannot be opened".into()))?;
        let state = if frozen { FreezerState::Frozen } else { FreezerState::Thawed };
        return m.freeze(state).map_err(|e| RuntimeError::Usage(format!("cgroup freezer: {e}")));
    }
    let dir = p.dirs.iter().rev().find(|d| d.join("freezer.state").exists()).ok_or_else(|| {
        RuntimeError::Usage("the container is not in a freezer cgroup (the v1 freezer hierarchy is not mounted or not writable here)".into())
    })?;
    write_file(dir, "freezer.state", if frozen { "FROZEN" } else { "THAWED" })?;
    // FREEZING is transitional: report success only once the kernel says FROZEN.
    for _ in 0..500 {
        let st = fs::read_to_string(dir.join("freezer.state")).unwrap_or_default();
        if st.trim() == if frozen { "FROZEN" } else { "THAWED" } {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    Err(RuntimeError::Usage(format!("cgroup freezer: {} did not reach the requested state", dir.display())))
}

/// Whether the container's processes are frozen (the `paused` status), judged from the cgroup
/// its init is in now (which also covers a systemd scope, whose path only systemd knows).
pub fn is_frozen(p: &Placement, pid: i32) -> bool {
    if p.v2 {
        let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        return cg.lines().find_map(|l| l.strip_prefix("0::")).and_then(|path| unified_root().map(|r| join(&r, path.trim()))).is_some_and(|d| fs::read_to_string(d.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1"));
    }
    p.dirs.iter().any(|d| fs::read_to_string(d.join("freezer.state")).is_ok_and(|s| s.trim() == "FROZEN"))
}

/// Bytes read and written over all devices, from io.stat ("8:0 rbytes=1 wbytes=2 ...").
fn io_bytes(stat: &str) -> serde_json::Value {
    let (mut r, mut w) = (0u64, 0u64);
    for field in stat.split_whitespace() {
        if let Some(v) = field.strip_prefix("rbytes=") {
            r += v.parse::<u64>().unwrap_or(0);
        } else if let Some(v) = field.strip_prefix("wbytes=") {
            w += v.parse::<u64>().unwrap_or(0);
        }
    }
    serde_json::json!({ "readBytes": r, "writeBytes": w })
}

/// Statistics from the container's cgroup(s), for `events --stats`, in runc's shape. Read
/// directly, file by file: libcgroups' `stats()` fails as a whole when one file is missing (no
/// swap accounting, no memory.peak before 5.19), and a partial answer is worth more here.
pub fn stats(p: &Placement, pid: i32) -> serde_json::Value {
    let num = |d: &Path, f: &str| -> Option<u64> { fs::read_to_string(d.join(f)).ok().and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok())) };
    let keyed = |d: &Path, f: &str| -> serde_json::Map<String, serde_json::Value> {
        fs::read_to_string(d.join(f)).unwrap_or_default().lines().filter_map(|l| l.split_once(' ')).filter_map(|(k, v)| v.trim().parse::<u64>().ok().map(|v| (k.to_string(), v.into()))).collect()
    };
    if p.v2 {
        let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let dir = cg.lines().find_map(|l| l.strip_prefix("0::")).and_then(|path| unified_root().map(|r| join(&r, path.trim())));
        let Some(d) = dir else { return serde_json::json!({}) };
        let cpu = keyed(&d, "cpu.stat");
        let at = |k: &str| cpu.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        return serde_json::json!({
            "cpu": {
                "usage": { "total": at("usage_usec") * 1000, "user": at("user_usec") * 1000, "kernel": at("system_usec") * 1000 },
                "throttling": { "periods": at("nr_periods"), "throttledPeriods": at("nr_throttled"), "throttledTime": at("throttled_usec") * 1000 },
            },
            "memory": {
                // "max" (no limit) reads as 0, as runc reports it.
                "usage": { "usage": num(&d, "memory.current").unwrap_or(0), "max": num(&d, "memory.peak").unwrap_or(0), "limit": num(&d, "memory.max").unwrap_or(0), "failcnt": keyed(&d, "memory.events").get("oom").and_then(|v| v.as_u64()).unwrap_or(0) },
                "swap": { "usage": num(&d, "memory.swap.current").unwrap_or(0), "limit": num(&d, "memory.swap.max").unwrap_or(0) },
                "raw": keyed(&d, "memory.stat"),
            },
            "pids": { "current": num(&d, "pids.current").unwrap_or(0), "limit": num(&d, "pids.max").unwrap_or(0) },
            "blkio": io_bytes(&fs::read_to_string(d.join("io.stat")).unwrap_or_default()),
        });
    }
    let read = |f: &str| -> Option<u64> { p.dirs.iter().rev().find_map(|d| num(d, f)) };
    serde_json::json!({
        "cpu": { "usage": { "total": read("cpuacct.usage").unwrap_or(0) } },
        "memory": { "usage": { "usage": read("memory.usage_in_bytes").unwrap_or(0), "limit": read("memory.limit_in_bytes").unwrap_or(0) } },
        "pids": { "current": read("pids.current").unwrap_or(0), "limit": read("pids.max").unwrap_or(0) },
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn cpu_lists_compare_as_sets() {
        assert_eq!(cpu_list("0-2,5"), Some(vec![0, 1, 2, 5]));
        assert_eq!(cpu_list("5,0-2"), cpu_list("0,1,2,5"));
        assert_eq!(cpu_list("1"), Some(vec![1]));
        assert_eq!(cpu_list(""), Some(vec![]));
        assert_eq!(cpu_list("2-1"), None);
        assert_eq!(cpu_list("x"), None);
    }

    use super::*;

    fn res(json: serde_json::Value) -> LinuxResources {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn v1_mapping() {
        let r = res(serde_json::json!({
            "memory": { "limit": 33554432, "swap": 67108864 },
            "cpu": { "shares": 512, "quota": 50000, "period": 100000, "cpus": "0" },
            "pids": { "limit": 20 },
            "devices": [{ "allow": false, "access": "rwm" }, { "allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw" }]
        }));
        let ws: Vec<(String, String)> = v1_writes(&r).into_iter().map(|w| (w.file, w.value)).collect();
        assert_eq!(ws[0], ("memory.limit_in_bytes".into(), "33554432".into()));
        assert_eq!(ws[1], ("memory.memsw.limit_in_bytes".into(), "67108864".into()));
        let period = ws.iter().position(|w| w.0 == "cpu.cfs_period_us").unwrap();
        let quota = ws.iter().position(|w| w.0 == "cpu.cfs_quota_us").unwrap();
        assert!(period < quota, "period first, or a quota above the old period is refused");
        assert!(ws.contains(&("pids.max".into(), "20".into())));
        assert!(ws.contains(&("devices.deny".into(), "a *:* rwm".into())));
        assert!(ws.contains(&("devices.allow".into(), "c 1:3 rw".into())));
    }

    #[test]
    fn v1_update_orders_memory_and_swap() {
        let r = res(serde_json::json!({ "memory": { "limit": 134217728, "swap": 134217728 }, "cpu": { "shares": 512 } }));
        let files = |ws: Vec<Write>| ws.into_iter().map(|w| w.file).collect::<Vec<_>>();
        // Raising from 64 MiB: memory+swap first, or the kernel refuses the memory limit.
        assert_eq!(files(v1_update_order(v1_writes(&r), Some(67108864)))[..2], ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]);
        // Lowering from 256 MiB: memory first, or the kernel refuses the memory+swap limit.
        assert_eq!(files(v1_update_order(v1_writes(&r), Some(268435456)))[..2], ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]);
        // Unlimited memory+swap goes first whatever the current limit.
        let u = res(serde_json::json!({ "memory": { "limit": 33554432, "swap": -1 } }));
        assert_eq!(files(v1_update_order(v1_writes(&u), Some(268435456))), ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]);
        // Only one of them: unchanged.
        let one = res(serde_json::json!({ "memory": { "limit": 33554432 } }));
        assert_eq!(files(v1_update_order(v1_writes(&one), Some(1))), ["memory.limit_in_bytes"]);
    }

    #[test]
    fn v2_mapping() {
        let r = res(serde_json::json!({
            "memory": { "limit": 33554432, "swap": 67108864 },
            "cpu": { "shares": 1024, "quota": 50000, "period": 100000 },
            "pids": { "limit": 0 }
        }));
        let ws: Vec<(String, String)> = v2_writes(&r).into_iter().map(|w| (w.file, w.value)).collect();
        assert!(ws.contains(&("memory.max".into(), "33554432".into())));
        assert!(ws.contains(&("memory.swap.max".into(), "33554432".into())));
        assert!(ws.contains(&("cpu.weight".into(), "39".into())));
        assert!(ws.contains(&("cpu.max".into(), "50000 100000".into())));
        assert!(ws.contains(&("pids.max".into(), "max".into())));
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262144), 10000);
    }

    #[test]
    fn relative_paths_go_beside_the_own_cgroup() {
        assert_eq!(parent_cgroup("/user.slice/user-1001.slice/user@1001.service/init.scope"), "/user.slice/user-1001.slice/user@1001.service");
        assert_eq!(parent_cgroup("/init.scope"), "/");
        assert_eq!(parent_cgroup("/"), "/");
    }

    #[test]
    fn io_stat_sums_devices() {
        let v = io_bytes("8:0 rbytes=4096 wbytes=100 rios=1 wios=1\n253:0 rbytes=10 wbytes=0 rios=1 wios=0\n");
        assert_eq!(v["readBytes"], 4106);
        assert_eq!(v["writeBytes"], 100);
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
        let p = Placement { v2: true, v2_root: Some("/sys/fs/cgroup/u".into()), v2_path: Some("burrow-x".into()), entry: Some(Entry::CloneIntoCgroup), ..Default::default() };
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
    fn systemd_unit_names_as_libcgroups_makes_them() {
        assert_eq!(systemd_unit("user.slice:burrow:abc"), "burrow-abc.scope");
        assert_eq!(systemd_unit(":burrow:vm-sd"), "burrow-vm-sd.scope");
        assert_eq!(systemd_unit("burrow:abc"), "burrow-abc.scope");
        assert_eq!(systemd_unit("user.slice:x:my.slice"), "my.slice");
    }

    #[test]
    fn oom_of_a_scope_from_its_own_counter_else_from_its_slice() {
        let t = tempfile::tempdir().unwrap();
        let events = |oom: u64| format!("low 0\nhigh 0\nmax 12\noom 1\noom_kill {oom}\noom_group_kill 0\n");
        let watch = |own: Option<u64>, slice_before: u64| {
            let scope = t.path().join("burrow-x.scope");
            let _ = fs::remove_dir_all(&scope);
            fs::create_dir_all(&scope).unwrap();
            fs::write(scope.join("memory.events"), events(own.unwrap_or(0))).unwrap();
            fs::write(t.path().join("memory.events"), events(slice_before)).unwrap();
            let p = Placement { v2: true, systemd: Some("user.slice:burrow:x".into()), scope_dir: Some(scope.clone()), ..Default::default() };
            let w = OomWatch::new(&p).unwrap();
            if own.is_none() {
                fs::remove_dir_all(&scope).unwrap(); // systemd removed it before the exit was seen
            }
            w
        };
        // Readable: the scope's own count decides, whatever its siblings did.
        let mut w = watch(Some(0), 3);
        fs::write(t.path().join("memory.events"), events(4)).unwrap();
        assert!(!w.killed());
        let mut w = watch(Some(0), 3);
        fs::write(t.path().join("burrow-x.scope/memory.events"), events(1)).unwrap();
        assert!(w.killed());
        // Gone: the slice's count grew while the container ran, or it did not.
        let mut w = watch(None, 3);
        fs::write(t.path().join("memory.events"), events(4)).unwrap();
        assert!(w.killed());
        let mut w = watch(None, 3);
        assert!(!w.killed());
        // Not a scope: nothing to watch (our own cgroup stays until we remove it).
        assert!(OomWatch::new(&Placement { v2: true, v2_root: Some(t.path().into()), v2_path: Some("x".into()), ..Default::default() }).is_none());
    }

    #[test]
    fn limits_detection() {
        assert!(!has_limits(None));
        assert!(!has_limits(Some(&res(serde_json::json!({ "devices": [{ "allow": false, "access": "rwm" }] })))));
        assert!(has_limits(Some(&res(serde_json::json!({ "pids": { "limit": 5 } })))));
    }
}
