//! Starting and stopping a network helper process (slirp4netns, pasta) so that it cannot outlive
//! the process that owns it.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::{Ctx, NetError, Result};

/// How long a helper may take to configure the namespace before the run fails.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Helper {
    name: &'static str,
    pid: i32,
    /// Signals reach exactly this process even after it was reaped by someone else (the monitor
    /// reaps every child) and its pid reused.
    pidfd: Option<OwnedFd>,
    /// Kept open for the helper's lifetime: slirp4netns exits when it reads EOF on its end.
    _exit_w: Option<OwnedFd>,
    log: Option<PathBuf>,
}

impl Helper {
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The helper was reaped by our caller: its pid is no longer ours to signal or wait for.
    pub fn forget(&mut self) {
        self.pid = 0;
    }

    /// Kills the helper and reaps it (unless the owner's loop already did).
    pub fn stop(&mut self) {
        if self.pid <= 0 {
            return;
        }
        let sent = match &self.pidfd {
            // SAFETY: pidfd_send_signal with a pidfd we own and no siginfo.
            Some(fd) => (unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), libc::SIGKILL, std::ptr::null::<libc::siginfo_t>(), 0) }) == 0,
            None => false,
        };
        if !sent && self.pidfd.is_none() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), nix::sys::signal::Signal::SIGKILL);
        }
        // ECHILD when the owner's reaping loop got it first: fine.
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(self.pid), None);
        self.pid = 0;
    }

    /// The end of the helper's log, for an error message.
    fn log_tail(&self) -> String {
        let Some(p) = &self.log else { return String::new() };
        let text = std::fs::read_to_string(p).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with("WARNING: Support for seccomp is experimental")).collect();
        lines[lines.len().saturating_sub(3)..].join("; ")
    }

    /// Waits until the helper writes on `ready` (its ready fd, or pasta's pid file). EOF before
    /// that means it exited; its log says why.
    pub fn wait_ready(&mut self, ready: OwnedFd) -> Result<()> {
        let end = Instant::now() + READY_TIMEOUT;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let why = format!("not ready after {} s{}", READY_TIMEOUT.as_secs(), tail(&self.log_tail()));
                self.stop();
                return Err(NetError::Helper { helper: self.name.into(), detail: why });
            }
            let mut fds = [PollFd::new(std::os::fd::AsFd::as_fd(&ready), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::try_from(left.as_millis() as i32).unwrap_or(PollTimeout::MAX)) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(e).op("poll the helper's ready fd"),
            }
            let mut buf = [0u8; 64];
            match nix::unistd::read(ready.as_raw_fd(), &mut buf) {
                Ok(n) if n > 0 => return Ok(()),
                Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => continue,
                _ => {
                    // Reap it to tell how it ended.
                    let how = match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(self.pid), None) {
                        Ok(nix::sys::wait::WaitStatus::Exited(_, c)) => format!("exited with status {c}"),
                        Ok(nix::sys::wait::WaitStatus::Signaled(_, s, _)) => format!("killed by {s:?}"),
                        _ => "exited".into(),
                    };
                    self.pid = 0;
                    return Err(NetError::Helper { helper: self.name.into(), detail: format!("{how} before the network was ready{}", tail(&self.log_tail())) });
                }
            }
        }
    }
}

fn tail(s: &str) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!(": {s}")
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A pipe whose both ends are close-on-exec; `spawn` clears the flag on the ends it passes.
pub fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).op("pipe")
}

/// The helper binary: the configured path, else `name` on PATH.
pub fn binary(configured: Option<&Path>, name: &str) -> Result<PathBuf> {
    if let Some(p) = configured {
        return Ok(p.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into());
    for dir in std::env::split_paths(&path) {
        let c = dir.join(name);
        if c.is_file() {
            return Ok(c);
        }
    }
    Err(NetError::Helper { helper: name.into(), detail: format!("{name} is not installed (not found on PATH); install it, or run with --network none") })
}

/// Starts `path args`, passing exactly the descriptors in `pass` (by their numbers) besides
/// stdio: every other descriptor of ours is closed at exec, whatever its flags (the monitor
/// holds its caller's pipe, which a long-lived helper must not keep open). The helper dies with
/// us (PR_SET_PDEATHSIG), starts with no signal blocked (our loop blocks them all) and writes
/// its messages to `log`.
pub fn spawn(name: &'static str, path: &Path, args: &[String], pass: &[RawFd], exit_w: Option<OwnedFd>, log: Option<&Path>) -> Result<Helper> {
    let stderr = match log {
        Some(p) => match std::fs::OpenOptions::new().create(true).append(true).open(p) {
            Ok(f) => Stdio::from(f),
            Err(_) => Stdio::null(),
        },
        None => Stdio::null(),
    };
    let keep: Vec<RawFd> = pass.to_vec();
    let parent = std::process::id() as libc::pid_t;
    let mut cmd = Command::new(path);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
    // SAFETY: the closure runs in the forked child before exec; burrow-runtime is single-threaded,
    // so it may allocate, and it only makes plain system calls.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from)?;
            // The owner may have died between fork and prctl: then nobody would kill us.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            let empty: libc::sigset_t = std::mem::zeroed();
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            // A mount namespace of its own whose mounts are slaves of ours. slirp4netns's
            // --enable-sandbox unshares one, makes only `/` private (not recursively), pivots
            // and detaches the old root: run with privilege over our namespace (as root), the
            // detach propagated to every peer of a shared mount under it and unmounted the
            // host's /run/netns/* and the submounts of shared tmpfs. From a slave copy nothing
            // propagates back. Unprivileged, the unshare fails (EPERM) and is not needed: a
            // namespace made in another user namespace gets slave copies anyway.
            if libc::unshare(libc::CLONE_NEWNS) == 0
                && libc::mount(c"none".as_ptr(), c"/".as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_SLAVE, std::ptr::null()) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // Everything above stdio close-on-exec (Rust's own error pipe is already so)...
            if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) != 0 {
                for fd in 3..4096 {
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
            }
            // ...except what the helper is told about.
            for &fd in &keep {
                libc::fcntl(fd, libc::F_SETFD, 0);
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| NetError::Helper { helper: name.into(), detail: format!("cannot start {}: {e}", path.display()) })?;
    let pid = child.id() as i32;
    // The Child handle would not kill on drop anyway; we manage the pid ourselves.
    drop(child);
    // SAFETY: pidfd_open(2) with a pid we just started; the result is a new descriptor.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    let pidfd = (raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(raw) });
    if let Some(fd) = &pidfd {
        let _ = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
    }
    Ok(Helper { name, pid, pidfd, _exit_w: exit_w, log: log.map(Path::to_path_buf) })
}
