//! What the container's cgroup counts: `events --stats`, and whether the OOM killer struck
//! (`inspect`'s OOMKilled), including for a systemd scope that systemd removes at once.

use std::fs;
use std::path::{Path, PathBuf};

use super::{join, unified_root, Placement};

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
///
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

impl super::super::wait::Served for OomWatch {
    fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        Some(std::os::fd::AsFd::as_fd(&self.inotify))
    }
    fn ready(&mut self) {
        self.check();
    }
}

/// memory.events' oom_kill count; None when the file cannot be read (the cgroup is gone).
pub(super) fn oom_kill_count(file: &Path) -> Option<u64> {
    Some(fs::read_to_string(file).ok()?.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0))
}

/// Bytes read and written over all devices, from io.stat ("8:0 rbytes=1 wbytes=2 ...").
pub(super) fn io_bytes(stat: &str) -> serde_json::Value {
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
        fs::read_to_string(d.join(f))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter_map(|(k, v)| v.trim().parse::<u64>().ok().map(|v| (k.to_string(), v.into())))
            .collect()
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
    use super::*;

    #[test]
    fn io_stat_sums_devices() {
        let v = io_bytes("8:0 rbytes=4096 wbytes=100 rios=1 wios=1\n253:0 rbytes=10 wbytes=0 rios=1 wios=0\n");
        assert_eq!(v["readBytes"], 4106);
        assert_eq!(v["writeBytes"], 100);
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
}
