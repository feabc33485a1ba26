//! The systemd driver (`--systemd-cgroup`): a transient scope started over D-Bus by the (user's)
//! systemd with the container's first process in it, through libcgroups' systemd manager.

use std::fs;
use std::path::{Path, PathBuf};

use libcgroups::common::{CgroupManager, ControllerOpt};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

use super::error::{CgroupError, Result};
use super::{join, own_v2, unified_root, Entry, Placement};

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
pub(super) fn place_systemd(path: Option<&Path>, res: Option<&LinuxResources>, id: &str, pid: i32, limits: bool) -> Result<Option<Placement>> {
    let cgpath = path.map(|p| p.display().to_string()).filter(|p| p.contains(':')).unwrap_or_else(|| format!(":burrow:{id}"));
    let config = libcgroups::common::CgroupConfig { cgroup_path: PathBuf::from(&cgpath), systemd_cgroup: true, container_name: id.to_string() };
    let manager = libcgroups::common::create_cgroup_manager(config).map_err(|e| CgroupError::Systemd(format!("cannot reach systemd for a transient scope: {e}. Fix: start a user session (loginctl enable-linger), or drop --systemd-cgroup to use the cgroupfs driver")))?;
    if let Err(e) = manager.add_task(Pid::from_raw(pid)) {
        // The scope systemd could not fill stays loaded as failed.
        let _ = manager.remove();
        reset_failed(&cgpath);
        // systemd moves the process itself, with the user's rights, from wherever it is: out of
        // a cgroup the user does not own (an ssh login's session-N.scope) only the system
        // manager can, which the user's manager then asks over the system bus.
        let own = own_v2();
        return Err(CgroupError::Systemd(format!(
            "cannot start the scope for {id}: {e} (systemd could not move process {pid} out of {own} into the scope{}). Fix: run burrow from a cgroup of your user manager (`systemd-run --user --scope burrow ...`), or drop --systemd-cgroup to use the cgroupfs driver",
            if unified_root().is_some_and(|r| crate::probe::cgroups::manageable(&join(&r, &own))) { "" } else { ", which you do not own" }
        )));
    }
    // Only systemd knew the scope's directory; the kernel now shows it for the process.
    let scope_dir = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()
        .and_then(|c| c.lines().find_map(|l| l.strip_prefix("0::")).map(|p| p.trim().to_string()))
        .and_then(|p| unified_root().map(|r| join(&r, &p)));
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
            return Err(CgroupError::Systemd(format!(
                "cannot apply the container's limits: {e}. Fix: delegate the controllers to this user (`Delegate=cpu cpuset io memory pids`)"
            )));
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
            return Err(format!(
                "systemd did not give the scope {file} {want} (it has {:?}): the cpuset controller is not delegated to the user manager",
                got.trim()
            ));
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
    let true_root = nix::unistd::geteuid().is_root()
        && fs::read_to_string("/proc/self/uid_map").is_ok_and(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"]);
    let mut cmd = std::process::Command::new("systemctl");
    if !true_root {
        cmd.arg("--user");
    }
    cmd.args(args).stdin(std::process::Stdio::null()).output()
}

/// The unit libcgroups' systemd driver names for a "slice:prefix:name" path.
pub(super) fn systemd_unit(cgpath: &str) -> String {
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
pub(super) fn reset_failed(cgpath: &str) {
    let _ = systemctl(&["reset-failed".into(), "--quiet".into(), systemd_unit(cgpath)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_compare_as_sets() {
        assert_eq!(cpu_list("0-2,5"), Some(vec![0, 1, 2, 5]));
        assert_eq!(cpu_list("5,0-2"), cpu_list("0,1,2,5"));
        assert_eq!(cpu_list("1"), Some(vec![1]));
        assert_eq!(cpu_list(""), Some(vec![]));
        assert_eq!(cpu_list("2-1"), None);
        assert_eq!(cpu_list("x"), None);
    }

    #[test]
    fn systemd_unit_names_as_libcgroups_makes_them() {
        assert_eq!(systemd_unit("user.slice:burrow:abc"), "burrow-abc.scope");
        assert_eq!(systemd_unit(":burrow:vm-sd"), "burrow-vm-sd.scope");
        assert_eq!(systemd_unit("burrow:abc"), "burrow-abc.scope");
        assert_eq!(systemd_unit("user.slice:x:my.slice"), "my.slice");
    }
}
