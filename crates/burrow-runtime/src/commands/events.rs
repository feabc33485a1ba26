//! `events [--stats] [--interval 5s] ID`: statistics as runc prints them. Without a delegated
//! cgroup (rootless on cgroup v1, or no delegation) only the pids count is known; the other
//! fields are present and zero, and `burrow stats` (the CLI) says why.

use std::time::Duration;

use burrow_core::runtime::error::{Result, RuntimeError};
use burrow_core::runtime::exec::container_pids;
use burrow_core::runtime::state::{ContainerState, Status};

use super::{id_command, Ctx};
use crate::args::Flag;

fn stats(st: &ContainerState) -> serde_json::Value {
    if let Some(p) = &st.cgroups {
        return serde_json::json!({ "type": "stats", "id": st.id, "data": burrow_core::runtime::cgroups::stats(p, st.pid) });
    }
    // No cgroup (rootless without delegation): CPU time and resident memory summed over the
    // container's processes from /proc, so `burrow stats` still has numbers; "source" says
    // which, because processes that already exited are not counted as a cgroup would.
    let pids = container_pids(st);
    let tick_ns = 1_000_000_000 / nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100).max(1) as u64;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(4096) as u64;
    let (mut user, mut kernel, mut rss) = (0u64, 0u64, 0u64);
    for pid in &pids {
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // Fields after the command (which may hold spaces) start after the last ')'.
            let f: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
            user += f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) * tick_ns;
            kernel += f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) * tick_ns;
        }
        if let Ok(statm) = std::fs::read_to_string(format!("/proc/{pid}/statm")) {
            rss += statm.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) * page;
        }
    }
    serde_json::json!({
        "type": "stats",
        "id": st.id,
        "data": {
            "source": "proc",
            "cpu": { "usage": { "total": user + kernel, "kernel": kernel, "user": user }, "throttling": {} },
            "memory": { "usage": { "usage": rss, "limit": 0 }, "raw": {} },
            "pids": { "current": pids.len() },
            "blkio": {},
            "hugetlb": {},
        }
    })
}

fn parse_interval(s: &str) -> Result<Duration> {
    let bad = || RuntimeError::Usage(format!("--interval: {s:?} is not a duration like 5s or 500ms"));
    let (n, unit) = s.find(|c: char| !c.is_ascii_digit()).map(|i| s.split_at(i)).unwrap_or((s, "s"));
    let n: u64 = n.parse().map_err(|_| bad())?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(60 * n),
        _ => return Err(bad()),
    })
}

pub fn main(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let (p, id) = id_command(args, &[Flag("stats", &[], false), Flag("interval", &[], true)], "events")?;
    let interval = parse_interval(p.value("interval").unwrap_or("5s"))?;
    loop {
        let st = ContainerState::load(&ctx.root, &id)?;
        if st.status(&ctx.root) == Status::Stopped {
            return Err(RuntimeError::BadState { id, op: "get events of", status: "stopped".into() });
        }
        println!("{}", stats(&st));
        if p.bool("stats") {
            return Ok(0);
        }
        std::thread::sleep(interval);
    }
}
