//! OCI seccomp profiles compiled to BPF with libseccomp. Syscalls libseccomp does not know on
//! this architecture are skipped (runc does the same): a profile written for a newer kernel
//! must still load on an older one.

#[cfg(feature = "seccomp")]
mod imp {
    use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
    use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};

    use crate::runtime::error::{Result, RuntimeError};

    fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction> {
        Ok(match a {
            LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
            LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno.unwrap_or(libc::EPERM as u32) as i32),
            LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => ScmpAction::KillThread,
            LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
            LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
            LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno.unwrap_or(libc::EPERM as u32) as u16),
            LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
            LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
        })
    }

    fn op(o: LinuxSeccompOperator, mask: u64) -> ScmpCompareOp {
        match o {
            LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
            LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
            LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
            LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
            LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
            LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
            LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(mask),
        }
    }

    fn e(what: &str, err: impl std::fmt::Display) -> RuntimeError {
        RuntimeError::Seccomp(format!("{what}: {err}"))
    }

    /// A filter: libseccomp's rules, and the BPF program generated from them once `compile`
    /// ran (a notifying filter keeps libseccomp's own load, which sets up the listener).
    pub struct Filter {
        ctx: ScmpFilterContext,
        /// Some rule notifies a listener.
        notify: bool,
        pub(super) bpf: Option<Vec<libc::sock_filter>>,
    }

    /// Builds the filter; loading is separate so that the caller picks the moment.
    pub fn build(s: &LinuxSeccomp) -> Result<Filter> {
        Ok(Filter { ctx: build_rules(s)?, notify: super::has_notify(s), bpf: None })
    }

    /// Generates the BPF program now rather than at `load` (libseccomp generates it inside
    /// seccomp_load, on the way of the container's exec): the direct init does it while main
    /// writes its id maps. The same program: libseccomp's export and load run the same
    /// generator, and load passes no flag for a filter with our attributes (no TSYNC, LOG or
    /// SPEC_ALLOW, no_new_privs left to us), so loading it with seccomp(2) is what
    /// seccomp_load would do.
    pub fn compile(f: &mut Filter) -> Result<()> {
        if f.notify || f.bpf.is_some() {
            return Ok(());
        }
        // SAFETY: a NUL-terminated name; the descriptor is owned below.
        let fd = unsafe { libc::memfd_create(c"burrow-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(e("memfd_create", nix::errno::Errno::last()));
        }
        // SAFETY: memfd_create returned a descriptor that nothing else owns.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        f.ctx.export_bpf(&fd).map_err(|x| e("export", x))?;
        let mut file = std::fs::File::from(fd);
        use std::io::{Read, Seek};
        let mut raw = Vec::new();
        file.seek(std::io::SeekFrom::Start(0)).and_then(|_| file.read_to_end(&mut raw)).map_err(|x| e("read the exported program", x))?;
        let n = std::mem::size_of::<libc::sock_filter>();
        if raw.is_empty() || raw.len() % n != 0 {
            return Err(e("export", format!("{} bytes is not a BPF program", raw.len())));
        }
        let prog = raw
            .chunks_exact(n)
            .map(|c| libc::sock_filter { code: u16::from_ne_bytes([c[0], c[1]]), jt: c[2], jf: c[3], k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]) })
            .collect();
        f.bpf = Some(prog);
        Ok(())
    }

    fn build_rules(s: &LinuxSeccomp) -> Result<ScmpFilterContext> {
        if super::has_notify(s) && s.listener_path().is_none() {
            // Nobody would answer: every such call would fail with ENOSYS.
            return Err(RuntimeError::Seccomp("SCMP_ACT_NOTIFY needs a listener: set linux.seccomp.listenerPath".into()));
        }
        let default = action(s.default_action(), s.default_errno_ret())?;
        let mut f = ScmpFilterContext::new(default).map_err(|x| e("init", x))?;
        for a in s.architectures().iter().flatten() {
            let name = format!("{a:?}");
            let arch = match name.as_str() {
                "ScmpArchX86" => ScmpArch::X86,
                "ScmpArchX86_64" => ScmpArch::X8664,
                "ScmpArchX32" => ScmpArch::X32,
                "ScmpArchAarch64" => ScmpArch::Aarch64,
                "ScmpArchArm" => ScmpArch::Arm,
                _ => continue,
            };
            if let Err(x) = f.add_arch(arch) {
                return Err(e("add architecture", x));
            }
        }
        // Our own filter must not refuse its own last steps: no_new_privs is set by the caller.
        let _ = f.set_ctl_nnp(false);
        for rule in s.syscalls().iter().flatten() {
            let act = action(rule.action(), rule.errno_ret())?;
            if act == default {
                continue; // libseccomp refuses rules equal to the default action
            }
            for name in rule.names() {
                let Ok(sc) = ScmpSyscall::from_name(name) else { continue };
                let cmps: Vec<ScmpArgCompare> = rule
                    .args()
                    .iter()
                    .flatten()
                    .map(|a| {
                        ScmpArgCompare::new(
                            a.index() as u32,
                            op(a.op(), a.value()),
                            if a.op() == LinuxSeccompOperator::ScmpCmpMaskedEq { a.value_two().unwrap_or(0) } else { a.value() },
                        )
                    })
                    .collect();
                let r = if cmps.is_empty() { f.add_rule(act, sc) } else { f.add_rule_conditional(act, sc, &cmps) };
                r.map_err(|x| e(&format!("rule for {name}"), x))?;
            }
        }
        Ok(f)
    }

    pub fn load(f: &Filter) -> Result<()> {
        let Some(prog) = &f.bpf else { return f.ctx.load().map_err(|x| e("load", x)) };
        let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_ptr() as *mut libc::sock_filter };
        // SAFETY: fprog points to the program, which lives until the call returns.
        let mut r = unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &fprog as *const libc::sock_fprog) };
        if r != 0 && nix::errno::Errno::last() == nix::errno::Errno::ENOSYS {
            // Before seccomp(2) (Linux 3.17), as libseccomp falls back.
            // SAFETY: the same program, through prctl.
            r = unsafe { libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &fprog as *const libc::sock_fprog) } as libc::c_long;
        }
        if r != 0 {
            return Err(e("load", nix::errno::Errno::last()));
        }
        Ok(())
    }

    /// After `load`: sends the filter's notification fd to the listener, as the runtime spec's
    /// `listenerPath` says (one message: the container process state as JSON, the fd in
    /// SCM_RIGHTS). `conn` was connected by main while the host's paths were reachable.
    pub fn send_notify_fd(f: &Filter, conn: std::os::fd::RawFd, s: &LinuxSeccomp, state: &str) -> Result<()> {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
        use std::io::IoSlice;
        let fd = f.ctx.get_notify_fd().map_err(|x| e("notification fd", x))?;
        let state: serde_json::Value = serde_json::from_str(state).unwrap_or_default();
        let msg = serde_json::json!({
            "ociVersion": "1.0.2",
            "fds": ["seccompFd"],
            "pid": state["pid"],
            "metadata": s.listener_metadata().clone().unwrap_or_default(),
            "state": state,
        })
        .to_string();
        let fds = [fd];
        let r = sendmsg::<()>(conn, &[IoSlice::new(msg.as_bytes())], &[ControlMessage::ScmRights(&fds)], MsgFlags::empty(), None);
        // Ours is a copy now in flight: the listener holds the one that matters.
        let _ = nix::unistd::close(fd);
        r.map(|_| ()).map_err(|x| e("send the notification fd to the listener", x))
    }
}

#[cfg(feature = "seccomp")]
pub use imp::*;

#[cfg(not(feature = "seccomp"))]
pub type Filter = ();

/// Connects to the config's seccomp listener (`linux.seccomp.listenerPath`) when a rule asks
/// for one. Main does it, before any namespace changes what the path means; the process that
/// loads the filter inherits the connection and sends its fd there.
pub fn connect_listener(linux: Option<&oci_spec::runtime::Linux>) -> crate::runtime::error::Result<Option<std::os::fd::OwnedFd>> {
    use crate::runtime::error::PathCtx;
    let Some(s) = linux.and_then(|l| l.seccomp().as_ref()) else { return Ok(None) };
    let (true, Some(p)) = (has_notify(s), s.listener_path()) else { return Ok(None) };
    let c = crate::runtime::state::with_short_path_of(p, |q| std::os::unix::net::UnixStream::connect(q)).at("connect to the seccomp listener", p)?;
    Ok(Some(std::os::fd::OwnedFd::from(c)))
}

/// Whether some rule hands its calls to a user-space supervisor.
pub fn has_notify(s: &oci_spec::runtime::LinuxSeccomp) -> bool {
    s.syscalls().iter().flatten().any(|r| r.action() == oci_spec::runtime::LinuxSeccompAction::ScmpActNotify)
}

#[cfg(all(test, feature = "seccomp"))]
mod tests {
    use super::*;

    fn profile() -> oci_spec::runtime::LinuxSeccomp {
        serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
            "syscalls": [{ "names": ["getppid", "no_such_syscall"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42 }]
        }))
        .unwrap()
    }

    /// In a child (a filter cannot be taken off): no_new_privs, the filter, then getppid, which
    /// it must refuse with the profile's errno while getpid still works.
    fn refused_in_child(f: &Filter) -> bool {
        // SAFETY: the child only makes system calls and leaves with _exit.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                // SAFETY: plain prctl and system calls.
                let ok = unsafe {
                    libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
                        && load(f).is_ok()
                        && libc::syscall(libc::SYS_getppid) == -1
                        && *libc::__errno_location() == 42
                        && libc::syscall(libc::SYS_getpid) > 0
                };
                unsafe { libc::_exit(if ok { 0 } else { 1 }) }
            }
            nix::unistd::ForkResult::Parent { child } => nix::sys::wait::waitpid(child, None).unwrap() == nix::sys::wait::WaitStatus::Exited(child, 0),
        }
    }

    /// The program generated ahead (`compile`, loaded with seccomp(2)) refuses what libseccomp's
    /// own load refuses.
    #[test]
    fn a_compiled_filter_refuses_what_the_profile_says() {
        let p = profile();
        assert!(refused_in_child(&build(&p).unwrap()));
        let mut f = build(&p).unwrap();
        compile(&mut f).unwrap();
        assert!(f.bpf.as_ref().is_some_and(|b| !b.is_empty()));
        assert!(refused_in_child(&f));
    }

    /// A notifying filter keeps libseccomp's load, which sets up the listener's descriptor.
    #[test]
    fn a_notifying_filter_is_not_compiled_ahead() {
        let p: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/none.sock",
            "syscalls": [{ "names": ["getppid"], "action": "SCMP_ACT_NOTIFY" }]
        }))
        .unwrap();
        let mut f = build(&p).unwrap();
        compile(&mut f).unwrap();
        assert!(f.bpf.is_none());
    }
}
