//! cgroup v1: a hierarchy per controller (or per group of controllers), each mounted on its own;
//! root only, as on this kind of hybrid host where the v2 tree has no useful controller. The
//! container gets a cgroup of the same path in every hierarchy, made after its first process
//! exists (v1 has no CLONE_INTO_CGROUP), which is then moved in.

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
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

/// Whether a v1 cgroup superblock option names what the hierarchy is (a controller, or the
/// name= of a named hierarchy), rather than how it behaves: /proc/self/cgroup lists only those.
fn is_hierarchy_option(o: &str) -> bool {
    !matches!(
        o,
        "rw" | "ro"
            | "relatime"
            | "nosuid"
            | "nodev"
            | "noexec"
            | "clone_children"
            | "noprefix"
            | "xattr"
            | "cpuset_v2_mode"
            | "favordynmods"
            | "nofavordynmods"
            | "none"
    ) && (o.starts_with("name=") || !o.contains('='))
}

/// The mounted v1 hierarchies with their controllers and this process's cgroup in each. Named
/// hierarchies (name=systemd) count, with the name as their controller: runc places the
/// container in them too, and its /proc/self/cgroup shows it there.
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
        let controllers: Vec<String> = post.get(2).unwrap_or(&"").split(',').filter(|o| is_hierarchy_option(o)).map(String::from).collect();
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
    // A hybrid host's unified hierarchy holds no controller of ours, but runc places the
    // container there too, so that its /proc/self/cgroup `0::` line names the container's own
    // cgroup (containerd and podman read it): best effort, never fatal, removed with the rest.
    if let Some(u) = hybrid_unified() {
        let base = if absolute { u.mount.clone() } else { join(&u.mount, &u.own) };
        let dir = join(&base, &rel);
        let mut made = Vec::new();
        if mkdirs(&dir, &mut made).is_ok() && write_file(&dir, "cgroup.procs", &pid.to_string()).is_ok() {
            placement.dirs.extend(made);
        } else {
            for d in made.iter().rev() {
                let _ = fs::remove_dir(d);
            }
        }
    }
    placement.entry = Some(Entry::Migrated { why: None });
    Ok(Some(placement))
}

/// A hybrid host's cgroup2 mount (`/sys/fs/cgroup/unified`) and this process's cgroup in it (the
/// `0::` line), beside the v1 hierarchies.
fn hybrid_unified() -> Option<V1Hierarchy> {
    let mi = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mp = mi.lines().find_map(|line| {
        let (pre, post) = line.split_once(" - ")?;
        (post.split(' ').next() == Some("cgroup2")).then(|| pre.split(' ').nth(4).map(PathBuf::from)).flatten()
    })?;
    let own = fs::read_to_string("/proc/self/cgroup").ok()?.lines().find_map(|l| l.strip_prefix("0::").map(str::to_string))?;
    Some(V1Hierarchy { mount: mp, controllers: Vec::new(), own })
}

/// `exec_targets` on v1: the init's cgroup (`cg`, its /proc/PID/cgroup) in each hierarchy the
/// container was placed in.
pub(super) fn exec_targets(p: &Placement, cg: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = v1_hierarchies()
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
        .collect();
    // The hybrid host's unified hierarchy, when the container was placed there too.
    if let Some(u) = hybrid_unified().filter(|u| p.dirs.iter().any(|d| d.starts_with(&u.mount))) {
        if let Some(path) = cg.lines().find_map(|l| l.strip_prefix("0::")) {
            out.push(join(&u.mount, path.trim()));
        }
    }
    out
}

/// `update` on v1: the same writes as at create, each in the container's cgroup of the
/// hierarchy that has its controller.
pub(super) fn update(p: &Placement, r: &LinuxResources) -> Result<()> {
    let hierarchies = v1_hierarchies();
    let dir_of =
        |controller: &str| p.dirs.iter().rev().find(|d| hierarchies.iter().any(|h| d.starts_with(&h.mount) && h.controllers.iter().any(|c| c == controller)));
    let current_limit = dir_of("memory").and_then(|d| fs::read_to_string(d.join("memory.limit_in_bytes")).ok()).and_then(|v| v.trim().parse::<u64>().ok());
    for wr in v1_update_order(v1_writes(r), current_limit) {
        let Some(dir) = dir_of(wr.controller) else {
            return Err(CgroupError::NoCgroupFor { controller: wr.controller.to_string(), file: wr.file.clone() });
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

/// A hierarchy as the container's `cgroup` mount shows it: one mounted directly below
/// /sys/fs/cgroup, named hierarchies (name=systemd) included, as runc's GetCgroupMounts lists them.
struct Shown {
    /// Its mount point, whose last component names it in the container ("memory", "cpu,cpuacct").
    mount: PathBuf,
    /// The mount's root within the hierarchy (mountinfo's 4th field).
    root: String,
    /// The superblock's controllers, as `mount -t cgroup -o` takes them ("cpu,cpuacct", "name=systemd").
    options: String,
    /// This process's cgroup in it.
    own: String,
}

fn shown_hierarchies() -> Vec<Shown> {
    let mi = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let cg = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut out: Vec<Shown> = Vec::new();
    for line in mi.lines() {
        let Some((pre, post)) = line.split_once(" - ") else { continue };
        let post: Vec<&str> = post.split(' ').collect();
        let pre: Vec<&str> = pre.split(' ').collect();
        let (Some(root), Some(mp)) = (pre.get(3), pre.get(4)) else { continue };
        if post.first() != Some(&"cgroup") || Path::new(mp).parent() != Some(Path::new("/sys/fs/cgroup")) {
            continue;
        }
        let opts: Vec<&str> = post.get(2).unwrap_or(&"").split(',').filter(|o| is_hierarchy_option(o)).collect();
        if opts.is_empty() || out.iter().any(|s| s.mount == Path::new(mp)) {
            continue;
        }
        let own = cg
            .lines()
            .find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
                let set: Vec<&str> = ctrls.split(',').collect();
                opts.iter().all(|c| set.contains(c)).then(|| path.trim().to_string())
            })
            .unwrap_or_else(|| "/".into());
        out.push(Shown { mount: PathBuf::from(mp), root: root.to_string(), options: opts.join(","), own });
    }
    out
}

/// The spec's `cgroup` mount at `dst` on a cgroup v1 host (hybrid included), as runc makes it: a
/// tmpfs, and in it a directory per hierarchy showing the container's own cgroup there, with the
/// mount's flags (read-only as configs ask): the hierarchy mounted anew in the container's cgroup
/// namespace (`cgroupns`), whose root is the container's cgroup, or else the container's
/// directory of the host's mount bound (without a namespace its /proc/self/cgroup shows host
/// paths, the same as runc's). Combined hierarchies get runc's links ("cpu" -> "cpu,cpuacct").
/// Runs in the container's init, which is in its cgroups already, before pivot_root.
///
/// `Ok(false)`: nothing done, the caller binds the host's tree read-only as before: when no v1
/// hierarchy is mounted, or when a step fails in a user namespace (rootless, where the mount's
/// locked flags or the namespace's rights may not allow it). Before, the container saw the
/// host's root hierarchy under /sys/fs/cgroup, whatever its own cgroup (issue 13).
///
/// `reopen` names the destination anew once the tmpfs is on it: `dst` may be a descriptor's
/// /proc/self/fd link (mounts.rs opens destinations inside the rootfs without following
/// symlinks), which still names the directory under the tmpfs, not the tmpfs.
pub fn mount_for_container(
    dst: &Path,
    reopen: &dyn Fn() -> Option<(std::os::fd::OwnedFd, PathBuf)>,
    flags: MsFlags,
    cgroupns: bool,
    in_userns: bool,
) -> Result<bool> {
    let shown = shown_hierarchies();
    if shown.is_empty() {
        return Ok(false);
    }
    fn mnt(op: &'static str, path: &Path) -> impl Fn(nix::errno::Errno) -> CgroupError {
        let path = path.to_path_buf();
        move |errno| CgroupError::Mount { op, path: path.clone(), errno }
    }
    let fs_flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("tmpfs"), dst, Some("tmpfs"), fs_flags, Some("mode=755")).map_err(mnt("mount tmpfs on", dst))?;
    let Some((_top_fd, top)) = reopen() else {
        let _ = umount2(dst, MntFlags::MNT_DETACH);
        return Err(CgroupError::Mount { op: "reopen", path: dst.to_path_buf(), errno: nix::errno::Errno::ENOENT });
    };
    let dst = top.as_path();
    let each = |s: &Shown| -> Result<()> {
        let name = s.mount.file_name().map(PathBuf::from).unwrap_or_default();
        let sub = dst.join(&name);
        fs::create_dir_all(&sub).map_err(|e| CgroupError::Mount {
            op: "mkdir",
            path: sub.clone(),
            errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
        if cgroupns {
            // The named systemd hierarchy's source reads "systemd", as runc names it.
            let source = if s.options.starts_with("name=") { s.options.trim_start_matches("name=") } else { "cgroup" };
            if mount(Some(source), &sub, Some("cgroup"), flags | fs_flags, Some(s.options.as_str())).is_ok() {
                return Ok(());
            }
        }
        let rel = Path::new(&s.own).strip_prefix(&s.root).ok().map(Path::to_path_buf).unwrap_or_default();
        let src = join(&s.mount, &rel.display().to_string());
        mount(Some(&src), &sub, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>).map_err(mnt("bind mount on", &sub))?;
        mount(None::<&str>, &sub, None::<&str>, MsFlags::MS_REMOUNT | MsFlags::MS_BIND | flags, None::<&str>).map_err(mnt("remount", &sub))
    };
    let done = shown.iter().try_for_each(each).and_then(|_| {
        for s in &shown {
            let name = s.mount.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            for part in name.split(',').filter(|_| name.contains(',')) {
                match std::os::unix::fs::symlink(name, dst.join(part)) {
                    Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                        return Err(CgroupError::Mount {
                            op: "symlink",
                            path: dst.join(part),
                            errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                        })
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    });
    match done {
        Ok(()) => Ok(true),
        Err(_) if in_userns => {
            let _ = umount2(dst, MntFlags::MNT_DETACH);
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(json: serde_json::Value) -> LinuxResources {
        serde_json::from_value(json).unwrap()
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
    fn hierarchy_options_are_controllers_and_names() {
        let opts: Vec<&str> =
            "rw,nosuid,nodev,noexec,relatime,xattr,release_agent=/x,name=systemd,clone_children".split(',').filter(|o| is_hierarchy_option(o)).collect();
        assert_eq!(opts, ["name=systemd"]);
        let opts: Vec<&str> = "rw,cpu,cpuacct,noprefix".split(',').filter(|o| is_hierarchy_option(o)).collect();
        assert_eq!(opts, ["cpu", "cpuacct"]);
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
