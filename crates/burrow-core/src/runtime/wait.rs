//! Foreground supervision for `run` and `exec` without --detach: forward signals to the
//! container's process, relay a terminal, reap children (we are a subreaper, so the container's
//! orphans come to us), and return the process's exit status the way a shell reports it.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{self, SetArg, Termios};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::error::{Result, SysCtx};

/// Exit status in shell convention: the code, or 128 + the signal.
pub fn status_code(ws: WaitStatus) -> Option<i32> {
    match ws {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}

/// Blocks every signal we forward and returns a signalfd for them. Called after the container's
/// process exists: a blocked mask is inherited across fork and exec, so blocking earlier would
/// leave the container deaf to signals.
pub fn block_signals() -> Result<SignalFd> {
    let mut set = SigSet::all();
    for s in [Signal::SIGKILL, Signal::SIGSTOP, Signal::SIGSEGV, Signal::SIGBUS, Signal::SIGILL, Signal::SIGFPE, Signal::SIGTRAP] {
        set.remove(s);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).op("sigprocmask")?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).op("signalfd")
}

struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            termios::cfmakeraw(&mut raw);
            let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        }
        RawMode { saved }
    }
}

impl Drop for RawMode {
    // Restored on every path out of the relay, including errors.
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
    }
}

fn copy_winsize(from: BorrowedFd, to: BorrowedFd) {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ with a valid winsize pointer.
    unsafe {
        if libc::ioctl(from.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

fn pump(from: BorrowedFd, to: BorrowedFd) -> bool {
    let mut buf = [0u8; 16384];
    match nix::unistd::read(from.as_raw_fd(), &mut buf) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            let mut off = 0;
            while off < n {
                match nix::unistd::write(to, &buf[off..n]) {
                    Ok(w) => off += w,
                    Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => continue,
                    Err(_) => return false,
                }
            }
            true
        }
    }
}

/// Something else the supervising process serves in its loop (the port forwarder of a
/// foreground container's network): a descriptor to watch, and what to do when it is readable.
pub trait Served {
    fn fd(&self) -> Option<BorrowedFd<'_>>;
    fn ready(&mut self);
    /// Something with several descriptors, each with its own events (the foreground run's output
    /// recorder: the container's pipes and the attach server's clients), appends them here and
    /// gets their readiness, in the same order, in `dispatch`.
    fn poll_fds<'a>(&'a self, fds: &mut Vec<PollFd<'a>>) {
        if let Some(fd) = self.fd() {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
    }
    fn dispatch(&mut self, ready: &[bool]) {
        if ready.iter().any(|r| *r) {
            self.ready();
        }
    }
}

/// Supervises `pid` until it exits; returns its status code. `master` is the pty to relay.
pub fn supervise(pid: i32, sfd: SignalFd, master: Option<OwnedFd>) -> Result<i32> {
    supervise_with(pid, sfd, master, &mut [])
}

/// `supervise`, also serving each of `extra` until the process exits.
pub fn supervise_with(pid: i32, sfd: SignalFd, master: Option<OwnedFd>, extra: &mut [&mut dyn Served]) -> Result<i32> {
    let _raw = master.as_ref().filter(|_| nix::unistd::isatty(0).unwrap_or(false)).map(|_| RawMode::enter());
    if let Some(m) = &master {
        if nix::unistd::isatty(0).unwrap_or(false) {
            copy_winsize(std::io::stdin().as_fd(), m.as_fd());
        }
    }
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut stdin_open = master.is_some();
    let mut master_open = master.is_some();
    loop {
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if let Some(m) = &master {
            if master_open {
                fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
            }
            if stdin_open {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
        }
        // (index in `extra`, the range of its fds in `fds`)
        let mut served = Vec::new();
        for (k, e) in extra.iter().enumerate() {
            let at = fds.len();
            e.poll_fds(&mut fds);
            served.push((k, at..fds.len()));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).op("poll"),
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        for (k, at) in served {
            if !at.is_empty() {
                extra[k].dispatch(&ready[at]);
            }
        }
        if let Some(m) = &master {
            let mut i = 1;
            if master_open {
                if ready[i] && !pump(m.as_fd(), stdout.as_fd()) {
                    master_open = false;
                }
                i += 1;
            }
            if stdin_open && ready.get(i).copied().unwrap_or(false) && !pump(stdin.as_fd(), m.as_fd()) {
                stdin_open = false;
            }
        }
        if ready[0] {
            while let Ok(Some(si)) = sfd.read_signal() {
                let sig = si.ssi_signo as i32;
                if sig == libc::SIGCHLD {
                    continue;
                }
                if sig == libc::SIGWINCH {
                    if let Some(m) = &master {
                        copy_winsize(stdin.as_fd(), m.as_fd());
                    }
                    continue;
                }
                if let Ok(s) = Signal::try_from(sig) {
                    let _ = kill(Pid::from_raw(pid), s);
                }
            }
        }
        // Reap everything that exited; our own process decides the result.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(ws) => {
                    if ws.pid() == Some(Pid::from_raw(pid)) {
                        if let Some(code) = status_code(ws) {
                            // Drain what the terminal still holds.
                            if let (Some(m), true) = (&master, master_open) {
                                let _ = nix::fcntl::fcntl(m.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK));
                                while pump(m.as_fd(), stdout.as_fd()) {}
                            }
                            return Ok(code);
                        }
                    }
                }
            }
        }
    }
}
