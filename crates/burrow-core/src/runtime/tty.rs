//! Terminals. The pty is allocated inside the container (its /dev/pts instance) by the init or
//! the exec'd process, and the master is handed to whoever listens on `--console-socket` with
//! SCM_RIGHTS, as runc does; the slave becomes the process's controlling terminal and stdio.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use super::error::{PathCtx, Result, SysCtx};

nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, libc::winsize);

/// Allocates a pty, sends its master on `console`, and makes the slave our terminal.
pub fn setup(console: RawFd, size: Option<(u16, u16)>) -> Result<()> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).op("open /dev/ptmx")?;
    grantpt(&master).op("grantpt")?;
    unlockpt(&master).op("unlockpt")?;
    let name = ptsname_r(&master).op("ptsname")?;
    let slave = nix::fcntl::open(name.as_str(), OFlag::O_RDWR | OFlag::O_NOCTTY, nix::sys::stat::Mode::empty()).at("open", &name)?;
    // SAFETY: open returned a new descriptor that we now own.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    if let Some((h, w)) = size {
        let ws = libc::winsize { ws_row: h, ws_col: w, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: a valid winsize for a terminal descriptor.
        unsafe { set_winsize(slave.as_raw_fd(), &ws) }.op("set the terminal size")?;
    }
    send_fd(console, master.as_raw_fd(), name.as_bytes())?;
    drop(master);
    nix::unistd::setsid().op("setsid")?;
    // SAFETY: TIOCSCTTY with argument 0 on our new session's terminal.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } != 0 {
        return Err(nix::errno::Errno::last()).op("make the pty the controlling terminal");
    }
    for target in 0..3 {
        nix::unistd::dup2(slave.as_raw_fd(), target).op("dup2 the pty")?;
    }
    if slave.as_raw_fd() <= 2 {
        let _ = slave.into_raw_fd(); // it is one of 0-2 now: keep it
    }
    Ok(())
}

pub fn send_fd(sock: RawFd, fd: RawFd, payload: &[u8]) -> Result<()> {
    let iov = [IoSlice::new(if payload.is_empty() { b"\0" } else { payload })];
    let fds = [fd];
    sendmsg::<()>(sock, &iov, &[ControlMessage::ScmRights(&fds)], MsgFlags::empty(), None).op("send the pty master on the console socket")?;
    Ok(())
}

/// A connected stream pair standing in for a `--console-socket` when burrow-runtime holds the
/// terminal itself (a foreground `run` or `exec`, the monitor): one end goes to the container's
/// process, which sends the pty master on it; `recv_fd` takes it from the other.
pub fn console_pair() -> Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).op("socketpair")
}

/// Receives a descriptor sent with `send_fd` (used by `run` in the foreground and by tests).
pub fn recv_fd(sock: RawFd) -> Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned};
    let mut buf = [0u8; 4096];
    let mut cbuf = nix::cmsg_space!([RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut cbuf), MsgFlags::MSG_CMSG_CLOEXEC).op("receive the pty master")?;
    for c in msg.cmsgs().op("receive the pty master")? {
        if let ControlMessageOwned::ScmRights(v) = c {
            if let Some(&f) = v.first() {
                // SAFETY: the kernel gave us this descriptor.
                return Ok(unsafe { OwnedFd::from_raw_fd(f) });
            }
        }
    }
    Err(nix::errno::Errno::EBADMSG).op("receive the pty master: no descriptor")
}
