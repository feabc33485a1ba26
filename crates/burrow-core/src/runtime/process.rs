//! The last steps before the container's process runs, shared by a container's init and by
//! `exec`: rlimits, the container user, capabilities, no_new_privs, seccomp, the working
//! directory, and the executable's look-up in the container's PATH.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{LinuxCapabilities, PosixRlimitType, Process, Spec};

use super::caps::{self, CapSets};
use super::error::{PathCtx, Result, RuntimeError, SysCtx};

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn rlimit_resource(t: PosixRlimitType) -> Option<libc::__rlimit_resource_t> {
    use PosixRlimitType::*;
    Some(match t {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    })
}

pub fn set_rlimits(p: &Process) -> Result<()> {
    for r in p.rlimits().iter().flatten() {
        let Some(res) = rlimit_resource(r.typ()) else { continue };
        let lim = libc::rlimit { rlim_cur: r.soft(), rlim_max: r.hard() };
        // SAFETY: a valid rlimit struct for a known resource.
        if unsafe { libc::setrlimit(res, &lim) } != 0 {
            return Err(nix::errno::Errno::last()).op(format!("setrlimit {:?} soft {} hard {}", r.typ(), r.soft(), r.hard()));
        }
    }
    Ok(())
}

pub fn set_oom_score_adj(p: &Process) -> Result<()> {
    if let Some(v) = p.oom_score_adj() {
        let cur = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap_or_default();
        if cur.trim() != v.to_string() {
            std::fs::write("/proc/self/oom_score_adj", v.to_string()).at("write", "/proc/self/oom_score_adj")?;
        }
    }
    Ok(())
}

pub fn cap_sets(c: Option<&LinuxCapabilities>) -> CapSets {
    let Some(c) = c else { return CapSets::default() };
    let m = |s: &Option<oci_spec::runtime::Capabilities>| -> u64 {
        let names: Vec<String> = s.iter().flatten().map(|c| c.to_string()).collect();
        caps::mask(&names)
    };
    CapSets { bounding: m(c.bounding()), effective: m(c.effective()), permitted: m(c.permitted()), inheritable: m(c.inheritable()), ambient: m(c.ambient()) }
}

/// crun's annotation (podman's `--group-add keep-groups`): the process keeps the supplementary
/// groups the runtime was started with, the caller's, instead of getting the config's
/// additionalGids. Rootless, those groups cannot be mapped into the user namespace (they show
/// as the overflow gid) but the kernel still grants their access: group-shared project
/// directories stay usable, which is why HPC users ask for it.
pub const KEEP_ORIGINAL_GROUPS: &str = "run.oci.keep_original_groups";

pub fn keeps_original_groups(spec: &Spec) -> bool {
    spec.annotations().as_ref().and_then(|a| a.get(KEEP_ORIGINAL_GROUPS)).is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// Switches to the container user keeping the capabilities the config asks for: bounding set
/// first (needs CAP_SETPCAP), then ids with PR_SET_KEEPCAPS, then the remaining sets.
pub fn switch_user(p: &Process) -> Result<()> {
    switch_user_keeping_groups(p, false)
}

/// `switch_user`, where `keep_groups` (see KEEP_ORIGINAL_GROUPS) skips setgroups.
pub fn switch_user_keeping_groups(p: &Process, keep_groups: bool) -> Result<()> {
    let user = p.user();
    let gids: Vec<Gid> = user.additional_gids().iter().flatten().map(|g| Gid::from_raw(*g)).collect();
    if keep_groups && !gids.is_empty() {
        return Err(RuntimeError::Usage(format!("{KEEP_ORIGINAL_GROUPS} keeps the caller's groups: it cannot be combined with additionalGids")));
    }
    let sets = cap_sets(p.capabilities().as_ref());
    caps::drop_bounding(sets.bounding)?;
    // SAFETY: plain prctl.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    let setgroups_denied = std::fs::read_to_string("/proc/self/setgroups").map(|s| s.trim() == "deny").unwrap_or(false);
    if keep_groups {
        // Nothing to do: setgroups is the only call that would replace them.
    } else if !setgroups_denied {
        match nix::unistd::setgroups(&gids) {
            // /proc/self/setgroups could not be read (a chroot without /proc: no mount namespace)
            // and the namespace denies setgroups. With no group to set, nothing is lost: such a
            // namespace keeps the groups it was made with, which no call could drop.
            Err(nix::errno::Errno::EPERM) if gids.is_empty() => {}
            r => r.op("setgroups")?,
        }
    } else if !gids.is_empty() {
        return Err(RuntimeError::Usage(
            "additionalGids cannot be set: this user namespace was created with setgroups denied (a single-id mapping); map the group ids with newgidmap instead".into(),
        ));
    }
    nix::unistd::setresgid(Gid::from_raw(user.gid()), Gid::from_raw(user.gid()), Gid::from_raw(user.gid())).op(format!("setresgid {}", user.gid()))?;
    nix::unistd::setresuid(Uid::from_raw(user.uid()), Uid::from_raw(user.uid()), Uid::from_raw(user.uid())).op(format!("setresuid {}", user.uid()))?;
    caps::apply(&sets)?;
    // SAFETY: plain prctl.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    if let Some(mask) = user.umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    Ok(())
}

pub fn set_no_new_privs() -> Result<()> {
    // SAFETY: plain prctl.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(nix::errno::Errno::last()).op("prctl(PR_SET_NO_NEW_PRIVS)");
    }
    Ok(())
}

/// The environment as given, with PATH defaulted as Docker and runc do.
pub fn env(p: &Process) -> Vec<String> {
    let mut env: Vec<String> = p.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push("HOME=/".into());
    }
    env
}

/// Finds the executable as execvp would, in the container's PATH. The distinction between
/// "not found" and "found but not executable" becomes Docker's 127 and 126 upstream.
pub fn find_executable(arg0: &str, env: &[String]) -> Result<PathBuf> {
    let check = |p: &Path| -> Result<PathBuf> {
        match std::fs::metadata(p) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(p.to_path_buf()),
            Ok(m) if m.is_dir() => Err(RuntimeError::Exec { arg0: arg0.into(), detail: "is a directory".into(), not_found: false }),
            Ok(_) => Err(RuntimeError::Exec { arg0: arg0.into(), detail: "permission denied".into(), not_found: false }),
            Err(_) => Err(RuntimeError::Exec { arg0: arg0.into(), detail: "no such file or directory".into(), not_found: true }),
        }
    };
    if arg0.contains('/') {
        return check(Path::new(arg0));
    }
    let path = env.iter().rev().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH);
    let mut denied = None;
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        match check(&Path::new(dir).join(arg0)) {
            Ok(p) => return Ok(p),
            Err(e @ RuntimeError::Exec { not_found: false, .. }) => denied = denied.or(Some(e)),
            Err(_) => {}
        }
    }
    Err(denied.unwrap_or(RuntimeError::Exec { arg0: arg0.into(), detail: "executable file not found in $PATH".into(), not_found: true }))
}

/// This process's environment as execve takes it (`KEY=VALUE`, entries with a NUL left out):
/// for the programs the runtime executes itself, without std::process (the map helpers, the
/// sealed copy of this binary).
pub(crate) fn environ() -> Vec<CString> {
    std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.into_encoded_bytes();
            kv.push(b'=');
            kv.extend(v.into_encoded_bytes());
            CString::new(kv).ok()
        })
        .collect()
}

/// Gives the command the signal state of a fresh process, as runc and crun do: execve resets
/// handled signals to their default but keeps ignored ones and the mask, and whoever started the
/// runtime leaks into the container otherwise: Node (the CLI, the API service) and Rust's std
/// ignore SIGPIPE, so `yes | head` in a container never ended (its writer got EPIPE forever
/// instead of dying), and the monitor ignores SIGQUIT.
///
/// Through the raw rt_sigaction, not libc's sigaction: glibc refuses its two internal signals
/// (32 and 33, which it uses for thread cancellation and set*id) with EINVAL, and its
/// posix_spawn sets them to SIG_IGN in the child (spawni.c), so a runtime started that way, as
/// the CLI starts `burrow-runtime run` (crates/burrow-core/src/spawn.rs), passed them on
/// ignored to the container.
fn reset_signals() {
    use nix::sys::signal::{SigSet, SigmaskHow};
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // The kernel's struct sigaction (handler, flags, restorer, mask on x86_64 and aarch64):
        // all zero is SIG_DFL with no flags and an empty mask.
        let sa = [0u64; 4];
        // SAFETY: installs SIG_DFL, no handler code; this process calls execve right after.
        // Numbers the kernel refuses (none in this range but the two above) only return EINVAL.
        unsafe { libc::syscall(libc::SYS_rt_sigaction, sig, sa.as_ptr(), std::ptr::null_mut::<u64>(), 8usize) };
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// Replaces this process with the container's command. Only returns on failure.
pub fn exec(path: &Path, args: &[String], env: &[String]) -> RuntimeError {
    reset_signals();
    let c = |s: &str| CString::new(s).unwrap_or_default();
    let p = CString::new(path.as_os_str().as_bytes()).unwrap_or_default();
    let argv: Vec<CString> = args.iter().map(|a| c(a)).collect();
    let envp: Vec<CString> = env.iter().map(|e| c(e)).collect();
    match nix::unistd::execve(&p, &argv, &envp) {
        Err(nix::errno::Errno::ENOENT) => {
            RuntimeError::Exec { arg0: args.first().cloned().unwrap_or_default(), detail: "no such file or directory".into(), not_found: true }
        }
        Err(e) => RuntimeError::Exec { arg0: args.first().cloned().unwrap_or_default(), detail: e.desc().to_lowercase(), not_found: false },
        Ok(never) => match never {},
    }
}

/// Seccomp, loaded as late as possible; see the callers for the ordering rule.
pub fn build_seccomp(spec_linux: Option<&oci_spec::runtime::Linux>) -> Result<Option<super::seccomp::Filter>> {
    #[cfg(feature = "seccomp")]
    {
        match spec_linux.and_then(|l| l.seccomp().as_ref()) {
            Some(s) => Ok(Some(super::seccomp::build(s)?)),
            None => Ok(None),
        }
    }
    #[cfg(not(feature = "seccomp"))]
    {
        let _ = spec_linux;
        Ok(None)
    }
}

/// The filter's BPF program generated now rather than when it is loaded (seccomp::compile).
pub fn compile_seccomp(f: &mut Option<super::seccomp::Filter>) -> Result<()> {
    #[cfg(feature = "seccomp")]
    if let Some(f) = f {
        super::seccomp::compile(f)?;
    }
    #[cfg(not(feature = "seccomp"))]
    let _ = f;
    Ok(())
}

pub fn load_seccomp(f: &Option<super::seccomp::Filter>) -> Result<()> {
    #[cfg(feature = "seccomp")]
    if let Some(f) = f {
        super::seccomp::load(f)?;
    }
    #[cfg(not(feature = "seccomp"))]
    let _ = f;
    Ok(())
}

/// After `load_seccomp`: hands a notifying filter's fd to its listener over `conn` (see
/// seccomp::connect_listener). Nothing to do without a connection.
pub fn send_seccomp_listener(
    f: &Option<super::seccomp::Filter>,
    conn: Option<std::os::fd::RawFd>,
    spec_linux: Option<&oci_spec::runtime::Linux>,
    state: &str,
) -> Result<()> {
    #[cfg(feature = "seccomp")]
    if let (Some(f), Some(conn), Some(s)) = (f, conn, spec_linux.and_then(|l| l.seccomp().as_ref())) {
        super::seccomp::send_notify_fd(f, conn, s, state)?;
    }
    #[cfg(not(feature = "seccomp"))]
    let _ = (f, conn, spec_linux, state);
    Ok(())
}

/// Process name as `ps` shows it (comm, 15 bytes at most).
pub fn set_name(name: &str) {
    if let Ok(c) = CString::new(name) {
        // SAFETY: a NUL-terminated string; the kernel copies at most 16 bytes.
        unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr() as libc::c_ulong, 0, 0, 0) };
    }
}

pub fn process_of(spec: &Spec) -> Result<&Process> {
    spec.process().as_ref().ok_or_else(|| RuntimeError::Spec { path: "config.json".into(), detail: "no process section".into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_original_groups_annotation() {
        let with = |v: Option<&str>| -> Spec {
            let mut spec = Spec::default();
            spec.set_annotations(v.map(|v| [(KEEP_ORIGINAL_GROUPS.to_string(), v.to_string())].into_iter().collect()));
            spec
        };
        assert!(keeps_original_groups(&with(Some("1"))));
        assert!(keeps_original_groups(&with(Some("true"))));
        assert!(!keeps_original_groups(&with(Some("0"))));
        assert!(!keeps_original_groups(&with(None)));
    }

    #[test]
    fn executable_lookup() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        assert!(find_executable("sh", &env).unwrap().ends_with("sh"));
        let e = find_executable("no-such-command-xyz", &env).unwrap_err();
        assert!(matches!(e, RuntimeError::Exec { not_found: true, .. }));
        let t = tempfile::tempdir().unwrap();
        let plain = t.path().join("plain");
        std::fs::write(&plain, "x").unwrap();
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = find_executable(plain.to_str().unwrap(), &env).unwrap_err();
        assert!(matches!(e, RuntimeError::Exec { not_found: false, .. }), "{e}");
        let e = find_executable("/etc", &env).unwrap_err();
        assert!(e.to_string().contains("directory"));
    }
}
