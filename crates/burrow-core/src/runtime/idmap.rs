//! Writing a new user namespace's id maps from the parent (the child cannot map ids it does not
//! own). One mapping of our own id is written directly; anything else goes through the
//! distribution's setuid `newuidmap`/`newgidmap`, which check /etc/subuid and /etc/subgid.

use std::process::{Child, Command, Stdio};

use oci_spec::runtime::LinuxIdMapping;

use super::error::{PathCtx, Result, RuntimeError};

fn format_map(m: &[LinuxIdMapping]) -> String {
    m.iter().map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size())).collect()
}

/// Whether we may write this map ourselves: root in our namespace, or exactly our own id.
fn direct(m: &[LinuxIdMapping], own: u32) -> bool {
    nix::unistd::geteuid().is_root() || (m.len() == 1 && m[0].host_id() == own && m[0].size() == 1)
}

fn helper_command(name: &str, pid: i32, m: &[LinuxIdMapping]) -> Command {
    let mut cmd = Command::new(name);
    cmd.arg(pid.to_string());
    for x in m {
        cmd.args([x.container_id().to_string(), x.host_id().to_string(), x.size().to_string()]);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    cmd
}

fn cannot_run(name: &str, e: std::io::Error) -> RuntimeError {
    RuntimeError::Helper { helper: name.into(), detail: format!("cannot run it ({e}); install the uidmap package, or use a single mapping of your own id") }
}

/// Waits for a helper started by `helper_command`; its stderr is the error's detail.
fn finish(name: &str, child: Child) -> Result<()> {
    let out = child.wait_with_output().map_err(|e| cannot_run(name, e))?;
    if !out.status.success() {
        return Err(RuntimeError::Helper {
            helper: name.into(),
            detail: format!("{} — the mapping needs ranges in /etc/subuid and /etc/subgid for this user", String::from_utf8_lossy(&out.stderr).trim()),
        });
    }
    Ok(())
}

fn helper(name: &str, pid: i32, m: &[LinuxIdMapping]) -> Result<()> {
    let child = helper_command(name, pid, m).spawn().map_err(|e| cannot_run(name, e))?;
    finish(name, child)
}

pub fn write(pid: i32, uids: &[LinuxIdMapping], gids: &[LinuxIdMapping]) -> Result<()> {
    let proc = format!("/proc/{pid}");
    let uid_direct = direct(uids, nix::unistd::geteuid().as_raw());
    let gid_direct = direct(gids, nix::unistd::getegid().as_raw());
    // Both through the helpers (the subuid mode of every rootless start): newgidmap runs while
    // newuidmap does. They write two independent files of the child's, and each is the start of
    // a setuid program (a few ms, on the path of every container start).
    let gid_child = if !uids.is_empty() && !uid_direct && !gids.is_empty() && !gid_direct {
        Some(helper_command("newgidmap", pid, gids).spawn().map_err(|e| cannot_run("newgidmap", e))?)
    } else {
        None
    };
    let uid_result = if uids.is_empty() {
        Ok(())
    } else if uid_direct {
        let p = format!("{proc}/uid_map");
        std::fs::write(&p, format_map(uids)).at("write", p)
    } else {
        helper("newuidmap", pid, uids)
    };
    if let Some(child) = gid_child {
        // Waited for even when newuidmap failed: no zombie, and its error second.
        let gid_result = finish("newgidmap", child);
        return uid_result.and(gid_result);
    }
    uid_result?;
    if !gids.is_empty() {
        if gid_direct {
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
