//! Writing a new user namespace's id maps from the parent (the child cannot map ids it does not
//! own). One mapping of our own id is written directly; anything else goes through the
//! distribution's setuid `newuidmap`/`newgidmap`, which check /etc/subuid and /etc/subgid.

use std::process::Command;

use oci_spec::runtime::LinuxIdMapping;

use super::error::{PathCtx, Result, RuntimeError};

fn format_map(m: &[LinuxIdMapping]) -> String {
    m.iter().map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size())).collect()
}

/// Whether we may write this map ourselves: root in our namespace, or exactly our own id.
fn direct(m: &[LinuxIdMapping], own: u32) -> bool {
    nix::unistd::geteuid().is_root() || (m.len() == 1 && m[0].host_id() == own && m[0].size() == 1)
}

fn helper(name: &str, pid: i32, m: &[LinuxIdMapping]) -> Result<()> {
    let mut cmd = Command::new(name);
    cmd.arg(pid.to_string());
    for x in m {
        cmd.args([x.container_id().to_string(), x.host_id().to_string(), x.size().to_string()]);
    }
    let out = cmd.output().map_err(|e| RuntimeError::Helper {
        helper: name.into(),
        detail: format!("cannot run it ({e}); install the uidmap package, or use a single mapping of your own id"),
    })?;
    if !out.status.success() {
        return Err(RuntimeError::Helper {
            helper: name.into(),
            detail: format!("{} — the mapping needs ranges in /etc/subuid and /etc/subgid for this user", String::from_utf8_lossy(&out.stderr).trim()),
        });
    }
    Ok(())
}

pub fn write(pid: i32, uids: &[LinuxIdMapping], gids: &[LinuxIdMapping]) -> Result<()> {
    let proc = format!("/proc/{pid}");
    if !uids.is_empty() {
        if direct(uids, nix::unistd::geteuid().as_raw()) {
            let p = format!("{proc}/uid_map");
            std::fs::write(&p, format_map(uids)).at("write", p)?;
        } else {
            helper("newuidmap", pid, uids)?;
        }
    }
    if !gids.is_empty() {
        if direct(gids, nix::unistd::getegid().as_raw()) {
            if !nix::unistd::geteuid().is_root() {
                // The kernel demands it before an unprivileged gid_map write.
                let p = format!("{proc}/setgroups");
                std::fs::write(&p, "deny").at("write", p)?;
            }
            let p = format!("{proc}/gid_map");
            std::fs::write(&p, format_map(gids)).at("write", p)?;
        } else {
            helper("newgidmap", pid, gids)?;
        }
    }
    Ok(())
}
