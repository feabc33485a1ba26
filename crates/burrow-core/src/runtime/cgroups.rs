//! Placing a container in cgroups and writing its resource limits (DESIGN.md, "cgroups").
//!
//! Two layouts: cgroup v2 (unified, one tree; rootless only in a subtree delegated to the user)
//! and v1 (a tree per controller; usable by root, as on this kind of hybrid host where the v2
//! tree has no useful controller). The resource → file mapping is computed by pure functions
//! (`v1_writes`, `v2_writes`) that unit tests check; `place` applies it.
//!
//! A container that asks for no limit and names no cgroup path is not placed at all: nothing to
//! create, nothing to fail on, and no cost on the hot path. When limits are asked for but no
//! cgroup can be created (rootless without delegation), `place` fails with the controller
//! and the fix; the burrow CLI checks the same thing before it starts anything.

use std::fs;
use std::path::{Path, PathBuf};

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

/// Creates the container's cgroup(s), writes limits and moves `pid` in. `Ok(None)` when the
/// container needs no cgroup.
pub fn place(spec: &Spec, id: &str, pid: i32) -> Result<Option<Placement>> {
    let linux = spec.linux().as_ref();
    let path = linux.and_then(|l| l.cgroups_path().clone());
    let res = linux.and_then(|l| l.resources().as_ref());
    let limits = has_limits(res);
    if path.is_none() && !limits {
        return Ok(None);
    }
    let rel = path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| format!("burrow-{id}"));
    let absolute = rel.starts_with('/');
    let mut placement = Placement::default();
    let fail = |why: String| -> Result<Option<Placement>> {
        if limits {
            Err(RuntimeError::Usage(format!(
                "cannot create the container's cgroup to enforce its limits: {why}. Fix: use cgroup v2 with controllers delegated to this user (a systemd drop-in `Delegate=cpu cpuset io memory pids`), or run without resource limits"
            )))
        } else {
            Ok(None) // a cgroup path alone, and no right to create it: run unplaced, as runc does rootless
        }
    };
    if let Some(root) = unified_root() {
        placement.v2 = true;
        let base = if absolute { root.clone() } else { join(&root, &v2_parent_of_own()) };
        let dir = join(&base, &rel);
        if let Err(e) = mkdirs(&dir, &mut placement.dirs) {
            return fail(format!("mkdir {}: {e}", dir.display()));
        }
        let writes = res.map(v2_writes).unwrap_or_default();
        // Enable each controller needed on the way down from the root (where permitted).
        let mut need: Vec<&str> = writes.iter().map(|w| w.controller).filter(|c| !c.is_empty()).collect();
        need.sort();
        need.dedup();
        let mut anc = Vec::new();
        let mut d = dir.clone();
        while d.pop() && d.starts_with(&root) {
            anc.push(d.clone());
        }
        for a in anc.iter().rev() {
            for c in &need {
                let _ = fs::write(a.join("cgroup.subtree_control"), format!("+{c}"));
            }
        }
        // Without the controller the limit's file does not exist, and writing it fails with a
        // bare EACCES: name the controller instead.
        let have = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        if let Some(c) = need.iter().find(|c| !have.split_whitespace().any(|h| h == **c)) {
            let parent = dir.parent().unwrap_or(&root);
            let offered = fs::read_to_string(parent.join("cgroup.controllers")).unwrap_or_default();
            remove(&placement);
            return Err(RuntimeError::Usage(format!(
                "cgroup: the {c} controller is not available in {} (it offers: {}), so the container's {c} limits cannot be enforced. Fix: delegate {c} to this user (a systemd drop-in `Delegate=cpu cpuset io memory pids` for user@.service), or run without {c} limits",
                parent.display(),
                if offered.trim().is_empty() { "none" } else { offered.trim() }
            )));
        }
        for wr in &writes {
            if let Err(e) = write_file(&dir, &wr.file, &wr.value) {
                remove(&placement);
                return Err(e);
            }
        }
        if let Err(e) = write_file(&dir, "cgroup.procs", &pid.to_string()) {
            remove(&placement);
            return fail(e.to_string());
        }
        return Ok(Some(placement));
    }
    let writes = res.map(v1_writes).unwrap_or_default();
    let hierarchies = v1_hierarchies();
    if hierarchies.is_empty() {
        return fail("no cgroup hierarchy is mounted".into());
    }
    for h in &hierarchies {
        let base = if absolute { h.mount.clone() } else { join(&h.mount, &h.own) };
        let dir = join(&base, &rel);
        if let Err(e) = mkdirs(&dir, &mut placement.dirs) {
            remove(&placement);
            return fail(format!("mkdir {}: {e}", dir.display()));
        }
        if h.controllers.iter().any(|c| c == "cpuset") {
            // A new cpuset cgroup starts empty and refuses tasks until given cpus and mems.
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if fs::read_to_string(dir.join(f)).map(|s| s.trim().is_empty()).unwrap_or(false) {
                    let mut p = dir.clone();
                    while p.pop() {
                        if let Ok(v) = fs::read_to_string(p.join(f)) {
                            if !v.trim().is_empty() {
                                let _ = fs::write(dir.join(f), v.trim());
                                break;
                            }
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
                remove(&placement);
                return Err(e);
            }
        }
        if let Err(e) = write_file(&dir, "cgroup.procs", &pid.to_string()) {
            remove(&placement);
            return fail(e.to_string());
        }
    }
    let missing: Vec<&str> = writes.iter().map(|w| w.controller).filter(|c| !hierarchies.iter().any(|h| h.controllers.iter().any(|x| x == c))).collect();
    if let Some(c) = missing.first() {
        remove(&placement);
        return Err(RuntimeError::Usage(format!("cgroup: the {c} controller is not mounted on this host, so its limits cannot be enforced")));
    }
    Ok(Some(placement))
}

/// Removes the cgroups we created (after the container's processes are gone).
pub fn remove(p: &Placement) {
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

/// Statistics from the container's cgroup(s), for `events --stats`.
pub fn stats(p: &Placement) -> serde_json::Value {
    let read = |f: &str| -> Option<u64> {
        p.dirs.iter().rev().find_map(|d| fs::read_to_string(d.join(f)).ok()).and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
    };
    if p.v2 {
        let usage = p.dirs.last().and_then(|d| fs::read_to_string(d.join("cpu.stat")).ok()).and_then(|s| s.lines().find_map(|l| l.strip_prefix("usage_usec ").and_then(|v| v.trim().parse::<u64>().ok()))).unwrap_or(0);
        serde_json::json!({
            "cpu": { "usage": { "total": usage * 1000 } },
            "memory": { "usage": { "usage": read("memory.current").unwrap_or(0), "limit": read("memory.max").unwrap_or(0) } },
            "pids": { "current": read("pids.current").unwrap_or(0), "limit": read("pids.max").unwrap_or(0) },
        })
    } else {
        serde_json::json!({
            "cpu": { "usage": { "total": read("cpuacct.usage").unwrap_or(0) } },
            "memory": { "usage": { "usage": read("memory.usage_in_bytes").unwrap_or(0), "limit": read("memory.limit_in_bytes").unwrap_or(0) } },
            "pids": { "current": read("pids.current").unwrap_or(0), "limit": read("pids.max").unwrap_or(0) },
        })
    }
}

#[cfg(test)]
mod tests {
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
    fn limits_detection() {
        assert!(!has_limits(None));
        assert!(!has_limits(Some(&res(serde_json::json!({ "devices": [{ "allow": false, "access": "rwm" }] })))));
        assert!(has_limits(Some(&res(serde_json::json!({ "pids": { "limit": 5 } })))));
    }
}
