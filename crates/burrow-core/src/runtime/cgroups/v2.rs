//! cgroup v2 with the cgroupfs driver: one tree, rootless only in a subtree delegated to the
//! user. The container's cgroup is made with its limits before its first process exists
//! (`plan`), through libcgroups' fs manager, which also turns the device rules into the device
//! eBPF program.

use std::fs;
use std::path::{Path, PathBuf};

use libcgroups::common::{AnyCgroupManager, CgroupManager, ControllerOpt};
use oci_spec::runtime::LinuxResources;

use super::error::CgroupError;
use super::{join, mkdirs, own_v2, parent_cgroup, remove, w, Placement, Write};

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

/// Where relative cgroup paths go on v2: beside this process's cgroup, not below it. The own
/// cgroup holds at least this process, and v2's "no internal processes" rule forbids enabling
/// controllers for the children of a cgroup with processes (EBUSY); its parent (the delegated
/// user@UID.service when the caller sits in a leaf such as init.scope) has none. runc's fs2
/// driver does the same.
pub(super) fn v2_parent_of_own() -> String {
    parent_cgroup(&own_v2())
}

pub(super) enum V2Failure {
    /// No cgroup could be made or joined: fatal only when limits were asked for.
    Unplaced(String),
    /// The cgroup exists but a limit cannot be applied: always fatal.
    Fatal(CgroupError),
}

/// Makes the container's cgroup v2 `rel` below the delegated cgroup `base` and writes its limits,
/// with no process in it yet. Controllers are enabled from `base` down to the leaf's parent, never
/// above (where the user may not write): every controller `base` has, as libcgroups' fs manager
/// enables them, so that `stats` can read a container that has no limit.
pub(super) fn create_v2(root: &Path, base: &Path, rel: &str, res: Option<&LinuxResources>) -> std::result::Result<Placement, V2Failure> {
    let dir = join(base, rel);
    let mut placement =
        Placement { v2: true, v2_root: Some(base.to_path_buf()), v2_path: Some(PathBuf::from(rel.trim_start_matches('/'))), ..Default::default() };
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
        return Err(V2Failure::Fatal(CgroupError::NotDelegated {
            controller: c.to_string(),
            parent: parent.to_path_buf(),
            offered: if offered.trim().is_empty() { "none".into() } else { offered.trim().to_string() },
        }));
    }
    if let Some(r) = res {
        let opt = ControllerOpt { resources: r, freezer_state: None, oom_score_adj: None, disable_oom_killer: false };
        if let Err(e) = manager.apply(&opt) {
            remove(&placement);
            return Err(V2Failure::Fatal(CgroupError::Apply { dir: Some(dir), detail: e.to_string() }));
        }
    }
    Ok(placement)
}

pub(super) fn v2_manager(p: &Placement) -> Option<AnyCgroupManager> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn res(json: serde_json::Value) -> LinuxResources {
        serde_json::from_value(json).unwrap()
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
}
