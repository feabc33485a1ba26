//! Writing a new user namespace's id maps from the parent (the child cannot map ids it does not
//! own). One mapping of our own id is written directly; anything else goes through the
//! distribution's setuid `newuidmap`/`newgidmap`, which check /etc/subuid and /etc/subgid.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

use nix::fcntl::OFlag;
use nix::unistd::ForkResult;

use oci_spec::runtime::LinuxIdMapping;

use super::error::{PathCtx, Result, RuntimeError};

fn format_map(m: &[LinuxIdMapping]) -> String {
    m.iter().map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size())).collect()
}

/// Whether we may write this map ourselves: root in our namespace, or exactly our own id.
fn direct(m: &[LinuxIdMapping], own: u32) -> bool {
    nix::unistd::geteuid().is_root() || (m.len() == 1 && m[0].host_id() == own && m[0].size() == 1)
}

/// The extents of a /proc/PID/uid_map or gid_map, in the kernel's order: inside id, outside
/// id, count. None for a line that is not three numbers.
pub(crate) fn parse_proc_map(text: &str) -> Option<Vec<[u32; 3]>> {
    let mut v = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut n = line.split_whitespace().map(|x| x.parse::<u32>());
        let t = [n.next()?.ok()?, n.next()?.ok()?, n.next()?.ok()?];
        if n.next().is_some() {
            return None;
        }
        v.push(t);
    }
    Some(v)
}

/// Whether writing these maps takes the setuid helpers (what a shared namespace saves).
pub fn needs_helpers(uids: &[LinuxIdMapping], gids: &[LinuxIdMapping]) -> bool {
    (!uids.is_empty() && !direct(uids, nix::unistd::geteuid().as_raw())) || (!gids.is_empty() && !direct(gids, nix::unistd::getegid().as_raw()))
}

/// A map helper started and not yet waited for: its pid and the read end of its stderr.
struct Running {
    name: &'static str,
    pid: nix::unistd::Pid,
    stderr: OwnedFd,
}

/// The program's path as execvp would find it in our PATH (the helpers are looked up there).
fn find_in_path(name: &str) -> Option<CString> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| nix::unistd::access(p.as_path(), nix::unistd::AccessFlags::X_OK).is_ok())
        .and_then(|p| CString::new(p.into_os_string().into_vec()).ok())
}

fn cannot_run(name: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Helper { helper: name.into(), detail: format!("cannot run it ({e}); install the uidmap package, or use a single mapping of your own id") }
}

/// Starts `name PID (inner outer size)...` with fork and execve, and returns at once. Not
/// std::process::Command: it spawns with vfork semantics (posix_spawn, or fork and a wait for
/// the exec), so the caller stays blocked until the child's execve of a setuid program is done,
/// including however long the child waits for a CPU; the second helper would only start then.
/// Here both are started before either is waited for. The child only makes system calls
/// (everything is prepared before the fork), so this is also safe in a threaded caller.
fn spawn(name: &'static str, pid: i32, m: &[LinuxIdMapping]) -> Result<Running> {
    let prog = find_in_path(name).ok_or_else(|| cannot_run(name, "not found in PATH"))?;
    spawn_program(&prog, name, pid, m)
}

fn spawn_program(prog: &CString, name: &'static str, pid: i32, m: &[LinuxIdMapping]) -> Result<Running> {
    let mut args = vec![CString::new(name).unwrap_or_default(), CString::new(pid.to_string()).unwrap_or_default()];
    for x in m {
        for n in [x.container_id(), x.host_id(), x.size()] {
            args.push(CString::new(n.to_string()).unwrap_or_default());
        }
    }
    let argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
    let env = super::process::environ();
    let envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
    let null = nix::fcntl::open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty()).map_err(|e| cannot_run(name, e))?;
    // SAFETY: open returned a descriptor that nothing else owns.
    let null = unsafe { OwnedFd::from_raw_fd(null) };
    let (rd, wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| cannot_run(name, e))?;
    // SAFETY: the child only calls dup2, execve, write and _exit (async-signal-safe).
    match unsafe { nix::unistd::fork() }.map_err(|e| cannot_run(name, e))? {
        ForkResult::Child => {
            // SAFETY: raw system calls on descriptors and buffers prepared above.
            unsafe {
                libc::dup2(null.as_raw_fd(), 0);
                libc::dup2(null.as_raw_fd(), 1);
                libc::dup2(wr.as_raw_fd(), 2);
                libc::execve(prog.as_ptr(), argv.as_ptr(), envp.as_ptr());
                let msg = b"cannot execute it\n";
                libc::write(2, msg.as_ptr() as *const libc::c_void, msg.len());
                libc::_exit(127)
            }
        }
        ForkResult::Parent { child } => Ok(Running { name, pid: child, stderr: rd }),
    }
}

/// Waits for a helper started by `spawn`; its stderr is the error's detail.
fn finish(r: Running) -> Result<()> {
    let mut err = String::new();
    let _ = std::fs::File::from(r.stderr).read_to_string(&mut err);
    let status = loop {
        match nix::sys::wait::waitpid(r.pid, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            s => break s.map_err(|e| cannot_run(r.name, e))?,
        }
    };
    if status != nix::sys::wait::WaitStatus::Exited(r.pid, 0) {
        return Err(RuntimeError::Helper {
            helper: r.name.into(),
            detail: format!("{} — the mapping needs ranges in /etc/subuid and /etc/subgid for this user", err.trim()),
        });
    }
    Ok(())
}

pub fn write(pid: i32, uids: &[LinuxIdMapping], gids: &[LinuxIdMapping]) -> Result<()> {
    write_while(pid, uids, gids, || {})
}

/// `write`, calling `during` once the helpers run (or the maps are written, without them):
/// what the caller does meanwhile costs no time on a start, where the setuid helpers take
/// milliseconds. Not called when a helper cannot be started.
pub fn write_while(pid: i32, uids: &[LinuxIdMapping], gids: &[LinuxIdMapping], during: impl FnOnce()) -> Result<()> {
    let proc = format!("/proc/{pid}");
    let uid_direct = direct(uids, nix::unistd::geteuid().as_raw());
    let gid_direct = direct(gids, nix::unistd::getegid().as_raw());
    // Through the helpers (the subuid mode of every rootless start), both are started before
    // either is waited for: they write two independent files of the child's, and each is the
    // start of a setuid program (a few ms, on the path of every container start).
    let uid_helper = if !uids.is_empty() && !uid_direct { Some(spawn("newuidmap", pid, uids)?) } else { None };
    let gid_helper = if !gids.is_empty() && !gid_direct {
        match spawn("newgidmap", pid, gids) {
            Ok(r) => Some(r),
            Err(e) => {
                // No zombie of the first.
                let _ = uid_helper.map(finish);
                return Err(e);
            }
        }
    } else {
        None
    };
    let mut during = Some(during);
    if uid_helper.is_some() || gid_helper.is_some() {
        during.take().into_iter().for_each(|f| f());
    }
    let uid_result = match uid_helper {
        Some(r) => finish(r),
        None if !uids.is_empty() => {
            let p = format!("{proc}/uid_map");
            std::fs::write(&p, format_map(uids)).at("write", p)
        }
        None => Ok(()),
    };
    if let Some(r) = gid_helper {
        // Waited for even when newuidmap failed: no zombie, and its error second.
        let gid_result = finish(r);
        return uid_result.and(gid_result);
    }
    uid_result?;
    if !gids.is_empty() {
        // gid_direct here: the helper case returned above.
        if !nix::unistd::geteuid().is_root() {
            // The kernel demands it before an unprivileged gid_map write.
            let p = format!("{proc}/setgroups");
            std::fs::write(&p, "deny").at("write", p)?;
        }
        let p = format!("{proc}/gid_map");
        std::fs::write(&p, format_map(gids)).at("write", p)?;
    }
    if let Some(f) = during {
        f();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxIdMappingBuilder;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &std::path::Path, name: &str, body: &str) -> CString {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        CString::new(p.into_os_string().into_vec()).unwrap()
    }

    fn map() -> Vec<LinuxIdMapping> {
        vec![LinuxIdMappingBuilder::default().container_id(0u32).host_id(1000u32).size(1u32).build().unwrap()]
    }

    /// The helpers get `PID inner outer size...` and their stderr becomes the error's detail.
    #[test]
    fn a_helper_gets_its_arguments_and_its_failure_says_why() {
        let t = tempfile::tempdir().unwrap();
        let args = t.path().join("args");
        let ok = script(t.path(), "ok", &format!("echo \"$@\" > {}", args.display()));
        finish(spawn_program(&ok, "newuidmap", 42, &map()).unwrap()).unwrap();
        assert_eq!(std::fs::read_to_string(&args).unwrap(), "42 0 1000 1\n");
        let bad = script(t.path(), "bad", "echo 'newgidmap: gid range [0-1) -> [1000-1001) not allowed' >&2; exit 1");
        let e = finish(spawn_program(&bad, "newgidmap", 42, &map()).unwrap()).unwrap_err().to_string();
        assert!(e.contains("newgidmap") && e.contains("not allowed") && e.contains("/etc/subgid"), "{e}");
        let e = finish(spawn_program(&CString::new("/nonexistent/newuidmap").unwrap(), "newuidmap", 42, &map()).unwrap()).unwrap_err();
        assert!(e.to_string().contains("cannot execute it"), "{e}");
    }

    /// Both helpers run at once: each of these waits for the other to have started, which only
    /// succeeds when the second is started before the first is waited for (as `write` does).
    #[test]
    fn both_helpers_run_at_once() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().display();
        let wait_for =
            |me: &str, other: &str| format!("touch {d}/{me}; i=0; while [ ! -e {d}/{other} ]; do i=$((i+1)); [ $i -gt 500 ] && exit 1; sleep 0.01; done");
        let u = script(t.path(), "u", &wait_for("u-started", "g-started"));
        let g = script(t.path(), "g", &wait_for("g-started", "u-started"));
        let ru = spawn_program(&u, "newuidmap", 1, &map()).unwrap();
        let rg = spawn_program(&g, "newgidmap", 1, &map()).unwrap();
        finish(ru).unwrap();
        finish(rg).unwrap();
    }
}
