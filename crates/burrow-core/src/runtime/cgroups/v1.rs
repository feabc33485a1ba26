//! cgroup v1: a hierarchy per controller (or per group of controllers), each mounted on its own;
//! root only, as on this kind of hybrid host where the v2 tree has no useful controller. The
//! container gets a cgroup of the same path in every hierarchy, made after its first process
//! exists (v1 has no CLONE_INTO_CGROUP), which is then moved in.

use std::fs;
use std::path::PathBuf;

use oci_spec::runtime::LinuxResources;

use super::error::{CgroupError, Result};
use super::{devices, join, mkdirs, remove, unplaced, w, write_file, Entry, Placement, Write};

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
    out.extend(devices::v1_writes(r));
    out
}

pub(super) struct V1Hierarchy {
    pub(super) mount: PathBuf,
    pub(super) controllers: Vec<String>,
    pub(super) own: String,
}

/// The mounted v1 hierarchies with their controllers and this process's cgroup in each.
pub(super) fn v1_hierarchies() -> Vec<V1Hierarchy> {
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

/// Places `pid` in the cgroup `rel` of every mounted v1 hierarchy (relative: below the caller's
/// own cgroup there), writes the limits and moves it in.
/// `defaults`: device rules the spec did not write but the container needs (devices.rs), set
/// after the spec's own, best effort.
pub(super) fn place(rel: &str, res: Option<&LinuxResources>, defaults: &[Write], pid: i32, limits: bool) -> Result<Option<Placement>> {
    let rel = rel.to_string();
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
        return Err(CgroupError::NotMounted { controller: c.to_string() });
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
        // After the spec's rules, as runc appends them; a parent that denies one of them (a
        // nested runtime's cgroup) leaves the container without it rather than failing it.
        for wr in defaults.iter().filter(|wr| h.controllers.iter().any(|c| c == wr.controller)) {
            let _ = write_file(&dir, &wr.file, &wr.value);
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

/// `exec_targets` on v1: the init's cgroup (`cg`, its /proc/PID/cgroup) in each hierarchy the
/// container was placed in.
pub(super) fn exec_targets(p: &Placement, cg: &str) -> Vec<PathBuf> {
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

/// `update` on v1: the same writes as at create, each in the container's cgroup of the
/// hierarchy that has its controller.
pub(super) fn update(p: &Placement, r: &LinuxResources) -> Result<()> {
    let hierarchies = v1_hierarchies();
    for wr in v1_writes(r) {
        let Some(dir) = p.dirs.iter().rev().find(|d| hierarchies.iter().any(|h| d.starts_with(&h.mount) && h.controllers.iter().any(|c| c == wr.controller))) else {
            return Err(CgroupError::NoCgroupFor { controller: wr.controller.to_string(), file: wr.file.clone() });
        };
        write_file(dir, &wr.file, &wr.value)?;
    }
    Ok(())
}

/// `freeze` on v1: the freezer hierarchy's state file, until the kernel reports the state.
pub(super) fn freeze(p: &Placement, frozen: bool) -> Result<()> {
    let dir = p.dirs.iter().rev().find(|d| d.join("freezer.state").exists()).ok_or(CgroupError::NoFreezer)?;
    write_file(dir, "freezer.state", if frozen { "FROZEN" } else { "THAWED" })?;
    // FREEZING is transitional: report success only once the kernel says FROZEN.
    for _ in 0..500 {
        let st = fs::read_to_string(dir.join("freezer.state")).unwrap_or_default();
        if st.trim() == if frozen { "FROZEN" } else { "THAWED" } {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    Err(CgroupError::Freezer(format!("{} did not reach the requested state", dir.display())))
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
}
