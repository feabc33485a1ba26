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

    /// Builds the filter; loading is separate so that the caller picks the moment.
    pub fn build(s: &LinuxSeccomp) -> Result<ScmpFilterContext> {
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

    pub fn load(f: &ScmpFilterContext) -> Result<()> {
        f.load().map_err(|x| e("load", x))
    }

    /// After `load`: sends the filter's notification fd to the listener, as the runtime spec's
    /// `listenerPath` says (one message: the container process state as JSON, the fd in
    /// SCM_RIGHTS). `conn` was connected by main while the host's paths were reachable.
    pub fn send_notify_fd(f: &ScmpFilterContext, conn: std::os::fd::RawFd, s: &LinuxSeccomp, state: &str) -> Result<()> {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
        use std::io::IoSlice;
        let fd = f.get_notify_fd().map_err(|x| e("notification fd", x))?;
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

    pub type Filter = ScmpFilterContext;
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
