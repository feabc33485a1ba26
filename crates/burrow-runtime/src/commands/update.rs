//! `update [-r FILE|-] [--memory N] [--memory-reservation N] [--memory-swap N] [--cpu-period N]
//! [--cpu-quota N] [--cpu-share N] [--cpuset-cpus L] [--cpuset-mems L] [--pids-limit N]
//! [--blkio-weight N] ID`: changes a running container's limits, as runc does. The new values go
//! to the cgroup the container was placed in at create (libcgroups on v2, the v1 hierarchies as
//! root); a container that was never placed has no cgroup to change, which is said, not ignored.

use burrow_core::runtime::cgroups;
use burrow_core::runtime::error::{Result, RuntimeError};
use burrow_core::runtime::state::{ContainerState, Status};
use oci_spec::runtime::LinuxResources;

use super::{id_command, Ctx};
use crate::args::{Flag, Parsed};

const FLAGS: &[Flag] = &[
    Flag("resources", &["r"], true),
    Flag("memory", &[], true),
    Flag("memory-reservation", &[], true),
    Flag("memory-swap", &[], true),
    Flag("cpu-period", &[], true),
    Flag("cpu-quota", &[], true),
    Flag("cpu-share", &[], true),
    Flag("cpuset-cpus", &[], true),
    Flag("cpuset-mems", &[], true),
    Flag("pids-limit", &[], true),
    Flag("blkio-weight", &[], true),
];

/// Bytes with runc's (docker/go-units RAMInBytes) suffixes: 64m, 1g, 512k, or a plain number;
/// -1 means unlimited.
pub fn parse_bytes(flag: &str, v: &str) -> Result<i64> {
    let bad = || RuntimeError::Usage(format!("--{flag}: {v:?} is not a size like 512k, 64m or 1g"));
    if v == "-1" {
        return Ok(-1);
    }
    let lower = v.trim().to_ascii_lowercase();
    let lower = lower.trim_end_matches('b').trim_end_matches('i');
    let (num, mult) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1i64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        Some('t') => (&lower[..lower.len() - 1], 1 << 40),
        _ => (lower, 1),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    if n < 0.0 {
        return Err(bad());
    }
    Ok((n * mult as f64) as i64)
}

fn int(p: &Parsed, flag: &str) -> Result<Option<i64>> {
    p.value(flag).map(|v| v.parse::<i64>().map_err(|_| RuntimeError::Usage(format!("--{flag}: {v:?} is not a number")))).transpose()
}

/// The resources to apply: the JSON of `-r` (a file, or `-` for stdin) with the flags on top.
fn resources(p: &Parsed) -> Result<LinuxResources> {
    let mut v: serde_json::Value = match p.value("resources") {
        Some("-") => serde_json::from_reader(std::io::stdin()).map_err(|e| RuntimeError::Usage(format!("-r -: not LinuxResources JSON: {e}")))?,
        Some(f) => {
            let text = std::fs::read_to_string(f).map_err(|e| RuntimeError::Usage(format!("-r {f}: {e}")))?;
            serde_json::from_str(&text).map_err(|e| RuntimeError::Usage(format!("-r {f}: not LinuxResources JSON: {e}")))?
        }
        None => serde_json::json!({}),
    };
    let set = |v: &mut serde_json::Value, section: &str, key: &str, val: serde_json::Value| {
        if !v[section].is_object() {
            v[section] = serde_json::json!({});
        }
        v[section][key] = val;
    };
    for (flag, key) in [("memory", "limit"), ("memory-reservation", "reservation"), ("memory-swap", "swap")] {
        if let Some(s) = p.value(flag) {
            set(&mut v, "memory", key, parse_bytes(flag, s)?.into());
        }
    }
    for (flag, key) in [("cpu-period", "period"), ("cpu-quota", "quota"), ("cpu-share", "shares")] {
        if let Some(n) = int(p, flag)? {
            set(&mut v, "cpu", key, n.into());
        }
    }
    for (flag, key) in [("cpuset-cpus", "cpus"), ("cpuset-mems", "mems")] {
        if let Some(s) = p.value(flag) {
            set(&mut v, "cpu", key, s.into());
        }
    }
    if let Some(n) = int(p, "pids-limit")? {
        set(&mut v, "pids", "limit", n.into());
    }
    if let Some(n) = int(p, "blkio-weight")? {
        set(&mut v, "blockIO", "weight", n.into());
    }
    serde_json::from_value(v).map_err(|e| RuntimeError::Usage(format!("update: invalid resources: {e}")))
}

pub fn main(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let (p, id) = id_command(args, FLAGS, "update")?;
    let res = resources(&p)?;
    let st = ContainerState::load(&ctx.root, &id)?;
    let status = st.status(&ctx.root);
    if status == Status::Stopped {
        return Err(RuntimeError::BadState { id, op: "update", status: status.as_str().into() });
    }
    let placement = st.cgroups.as_ref().ok_or_else(|| {
        RuntimeError::Usage(format!(
            "update: container {id} was created without a cgroup (no limits and no cgroupsPath, or no delegated cgroup for this user), so there is nothing to update. Fix: create it with a cgroupsPath or an initial limit on a host with cgroup v2 delegated to this user"
        ))
    })?;
    cgroups::update(placement, &res)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_runc_reads_them() {
        assert_eq!(parse_bytes("memory", "64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("memory", "1G").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("memory", "512KiB").unwrap(), 512 << 10);
        assert_eq!(parse_bytes("memory", "4096").unwrap(), 4096);
        assert_eq!(parse_bytes("memory", "-1").unwrap(), -1);
        assert!(parse_bytes("memory", "lots").is_err());
    }
}
