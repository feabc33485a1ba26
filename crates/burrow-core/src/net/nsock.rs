//! Sockets that live in a container's network namespace, made for a process that stays in the
//! host's. A socket belongs to the namespace it was created in for its whole life, wherever it is
//! used from: so a short-lived child enters the container's user and network namespaces, creates
//! a batch of sockets and sends them back over SCM_RIGHTS, and the owner connects them itself.
//!
//! Why a child: a process cannot return to the host's network namespace after entering the
//! container's user namespace (it has no privilege over the host's any more), and setns into a
//! user namespace needs a single-threaded caller, which a fork of the single-threaded runtime is.
//! Batches keep the fork (about 0.2 ms) off most connections.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;

use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType};

use super::{Ctx, NetError, Result};

pub struct NsSockets {
    /// None when the container shares our user namespace (root without one).
    userns: Option<OwnedFd>,
    netns: OwnedFd,
}

fn open(path: &str) -> Result<OwnedFd> {
    let f = std::fs::File::open(path).op(format!("open {path}"))?;
    Ok(OwnedFd::from(f))
}

impl NsSockets {
    /// The namespaces of `pid` (the container's init), opened now: they stay valid as long as
    /// we hold them, even if the pid is reused.
    pub fn open(pid: i32) -> Result<NsSockets> {
        let netns = open(&format!("/proc/{pid}/ns/net"))?;
        let user_path = format!("/proc/{pid}/ns/user");
        let same = match (std::fs::metadata(&user_path), std::fs::metadata("/proc/self/ns/user")) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        let userns = if same { None } else { Some(open(&user_path)?) };
        Ok(NsSockets { userns, netns })
    }

    /// `n` non-blocking sockets of this family and type, created in the container's namespace.
    pub fn make(&self, family: libc::c_int, ty: libc::c_int, n: usize) -> Result<Vec<OwnedFd>> {
        let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).op("socketpair")?;
        // SAFETY: burrow-runtime is single-threaded, so the child may run ordinary code.
        match unsafe { nix::unistd::fork() }.op("fork")? {
            nix::unistd::ForkResult::Child => {
                drop(ours);
                let code = match self.child(theirs.as_raw_fd(), family, ty, n) {
                    Ok(()) => 0,
                    Err(e) => {
                        let _ = nix::sys::socket::send(theirs.as_raw_fd(), e.to_string().as_bytes(), MsgFlags::empty());
                        1
                    }
                };
                // SAFETY: leave without running the owner's exit handlers or flushing its buffers.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(theirs);
                let r = receive(ours.as_raw_fd(), n);
                let _ = nix::sys::wait::waitpid(child, None);
                r
            }
        }
    }

    fn child(&self, sock: RawFd, family: libc::c_int, ty: libc::c_int, n: usize) -> Result<()> {
        // A parent-death signal: if the owner dies while we wait on a full socket, go too.
        let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
        if let Some(u) = &self.userns {
            setns(u, CloneFlags::CLONE_NEWUSER).op("enter the container's user namespace")?;
        }
        setns(&self.netns, CloneFlags::CLONE_NEWNET).op("enter the container's network namespace")?;
        let mut fds = Vec::with_capacity(n);
        for _ in 0..n {
            // SAFETY: socket(2); the descriptor is owned right away.
            let fd = unsafe { libc::socket(family, ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
            if fd < 0 {
                return Err(nix::errno::Errno::last()).op("socket in the container's network namespace");
            }
            fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        sendmsg::<()>(sock, &[IoSlice::new(b"k")], &[ControlMessage::ScmRights(&raw)], MsgFlags::empty(), None).op("send sockets")?;
        Ok(())
    }
}

fn receive(sock: RawFd, n: usize) -> Result<Vec<OwnedFd>> {
    let mut buf = [0u8; 512];
    let mut cbuf = vec![0u8; unsafe { libc::CMSG_SPACE((n * std::mem::size_of::<RawFd>()) as u32) } as usize];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let (bytes, fds) = {
        let msg = recvmsg::<()>(sock, &mut iov, Some(&mut cbuf), MsgFlags::MSG_CMSG_CLOEXEC).op("receive sockets")?;
        let mut fds = Vec::new();
        for c in msg.cmsgs().op("receive sockets")? {
            if let ControlMessageOwned::ScmRights(v) = c {
                // SAFETY: the kernel installed these descriptors for us.
                fds.extend(v.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
            }
        }
        (msg.bytes, fds)
    };
    if fds.is_empty() {
        let why = String::from_utf8_lossy(&buf[..bytes]).into_owned();
        return Err(NetError::Helper {
            helper: "forwarder".into(),
            detail: if why.is_empty() { "no socket came from the container's namespace".into() } else { why },
        });
    }
    Ok(fds)
}
