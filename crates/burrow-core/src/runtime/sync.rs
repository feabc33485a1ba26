//! The channel between the runtime's processes: a SOCK_SEQPACKET socketpair carrying one JSON
//! message per packet (message boundaries for free), plus file descriptors passed with
//! SCM_RIGHTS (the console's pty master). Explicit messages rather than signals or pipes that
//! close: each step of container creation is acknowledged, and errors travel as data.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType};
use serde::{Deserialize, Serialize};

use super::error::{Result, RuntimeError, SysCtx};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "t", rename_all = "kebab-case")]
pub enum Msg {
    /// intermediate → main: I have unshared the user namespace; write my id maps.
    UsernsReady { pid: i32 },
    /// main → intermediate: maps written.
    MapsDone,
    /// intermediate → main: the container's init process (pid in main's namespace).
    InitPid { pid: i32 },
    /// main → init: runtime-side hooks ran; set up the container. Carries the OCI state for hooks.
    Go { state: String },
    /// init → main: the container's mounts are made (before pivot_root): run the prestart and
    /// createRuntime hooks now, as runc does. Sent only when the config has such hooks.
    RuntimeHooks,
    /// main → init: those hooks succeeded; go on (createContainer hooks, pivot_root, ...).
    HooksDone,
    /// init → main: the container is created and waits for `start`.
    Created,
    /// any child → main: a step failed.
    Error { code: String, msg: String },
    /// init → main: make the idmapped tree for this bind mount (idmount.rs: main may hold the
    /// privilege the kernel wants, which the init in its user namespace lacks).
    Idmap(IdmapRequest),
    /// main → init: the detached idmapped tree, passed with the message.
    IdmapTree,
    /// main → init: no privilege to lend; make the tree yourself. The container's id maps as
    /// main reads them, with host ids relative to the runtime's user namespace.
    IdmapSelf { uid_map: String, gid_map: String },
}

/// An idmapped bind mount, as the init asks for it. Mappings are (filesystem id, host id, size).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IdmapRequest {
    pub source: String,
    pub destination: String,
    /// `rbind`: the whole tree under the source, not just its mount.
    pub rbind: bool,
    /// `ridmap`: the mapping applies to every mount of the tree.
    pub recursive: bool,
    pub uids: Vec<[u32; 3]>,
    pub gids: Vec<[u32; 3]>,
}

pub struct Channel {
    fd: OwnedFd,
}

impl Channel {
    /// A connected pair; both ends close on exec so the container process never inherits them.
    pub fn pair() -> Result<(Channel, Channel)> {
        let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).op("socketpair")?;
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    pub fn from_fd(fd: OwnedFd) -> Channel {
        Channel { fd }
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn send(&self, m: &Msg) -> Result<()> {
        self.send_with_fd(m, None)
    }

    pub fn send_with_fd(&self, m: &Msg, fd: Option<RawFd>) -> Result<()> {
        let buf = serde_json::to_vec(m).expect("messages serialise");
        let iov = [IoSlice::new(&buf)];
        let fds = fd.map(|f| [f]);
        let cmsg: Vec<ControlMessage> = fds.as_ref().map(|f| vec![ControlMessage::ScmRights(f)]).unwrap_or_default();
        sendmsg::<()>(self.fd.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None).op("send on the sync socket")?;
        Ok(())
    }

    /// Receives one message; `Ok(None)` when the other side closed without sending (it died).
    pub fn recv(&self) -> Result<Option<Msg>> {
        Ok(self.recv_with_fd()?.map(|(m, _)| m))
    }

    pub fn recv_with_fd(&self) -> Result<Option<(Msg, Option<OwnedFd>)>> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut cbuf = nix::cmsg_space!([RawFd; 1]);
        // A peer that closed with messages of ours unread (a child that failed before reading
        // `maps-done` or `go`) leaves ECONNRESET pending, and a seqpacket socket reports a pending
        // error before the messages queued for us: its own error among them. The kernel clears
        // it as it reports it, so the next receive reads what is queued, then the end.
        let mut reset = false;
        let (n, fd) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(self.fd.as_raw_fd(), &mut iov, Some(&mut cbuf), MsgFlags::MSG_CMSG_CLOEXEC) {
                Ok(r) => {
                    let mut fd = None;
                    for c in r.cmsgs().map_err(|e| RuntimeError::Sys { op: "recvmsg".into(), errno: e })? {
                        if let ControlMessageOwned::ScmRights(v) = c {
                            // SAFETY: the kernel just gave us these descriptors; we own them now.
                            fd = v.first().map(|&f| unsafe { OwnedFd::from_raw_fd(f) });
                        }
                    }
                    break (r.bytes, fd);
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::ECONNRESET) if !reset => reset = true,
                Err(e) => return Err(RuntimeError::Sys { op: "receive on the sync socket".into(), errno: e }),
            }
        };
        if n == 0 {
            return Ok(None);
        }
        let m: Msg = serde_json::from_slice(&buf[..n]).map_err(|e| RuntimeError::Child(format!("garbled message on the sync socket: {e}")))?;
        Ok(Some((m, fd)))
    }

    /// Receives and requires a given message; an Error message becomes the error it carries.
    /// The error a child has already sent, if one is waiting (never blocks): what explains a
    /// step of main's that failed because the child was gone.
    pub fn try_recv_error(&self) -> Option<RuntimeError> {
        let mut pfd = [nix::poll::PollFd::new(self.fd.as_fd(), nix::poll::PollFlags::POLLIN)];
        if nix::poll::poll(&mut pfd, nix::poll::PollTimeout::ZERO).ok()? == 0 {
            return None;
        }
        match self.recv() {
            Ok(Some(Msg::Error { code, msg })) => Some(RuntimeError::Remote { code, msg }),
            _ => None,
        }
    }

    pub fn expect(&self, what: &str, pred: impl Fn(&Msg) -> bool) -> Result<Msg> {
        match self.recv()? {
            Some(Msg::Error { code, msg }) => Err(RuntimeError::Remote { code, msg }),
            Some(m) if pred(&m) => Ok(m),
            Some(m) => Err(RuntimeError::Child(format!("protocol error: expected {what}, got {m:?}"))),
            None => Err(RuntimeError::Child(format!("the container's process exited before {what}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child that failed with a message of ours unread: its error, not ECONNRESET (which the
    /// socket reports first), as create's callers print it.
    #[test]
    fn an_error_behind_a_reset_is_read() {
        let (main, child) = Channel::pair().unwrap();
        main.send(&Msg::MapsDone).unwrap();
        child.send(&Msg::Error { code: "ESECCOMP".into(), msg: "SCMP_ACT_NOTIFY needs a listener".into() }).unwrap();
        drop(child);
        match main.recv() {
            Ok(Some(Msg::Error { msg, .. })) => assert_eq!(msg, "SCMP_ACT_NOTIFY needs a listener"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(main.recv(), Ok(None)));
        // try_recv_error the same way.
        let (main, child) = Channel::pair().unwrap();
        main.send(&Msg::MapsDone).unwrap();
        child.send(&Msg::Error { code: "ESYS".into(), msg: "boom".into() }).unwrap();
        drop(child);
        assert!(matches!(main.try_recv_error(), Some(RuntimeError::Remote { msg, .. }) if msg == "boom"));
    }

    /// A child that failed and left has its error read without blocking; nothing waiting is
    /// None at once (main then reports its own error).
    #[test]
    fn an_error_already_sent_is_read_without_blocking() {
        let (main, child) = Channel::pair().unwrap();
        assert!(main.try_recv_error().is_none());
        child.send(&Msg::Error { code: "ESYS".into(), msg: "unshare(CLONE_NEWNET): ENOSPC".into() }).unwrap();
        drop(child);
        match main.try_recv_error() {
            Some(RuntimeError::Remote { code, msg }) => assert_eq!((code.as_str(), msg.as_str()), ("ESYS", "unshare(CLONE_NEWNET): ENOSPC")),
            other => panic!("{other:?}"),
        }
        assert!(main.try_recv_error().is_none());
    }

    #[test]
    fn round_trip_with_fd() {
        let (a, b) = Channel::pair().unwrap();
        a.send(&Msg::InitPid { pid: 42 }).unwrap();
        assert_eq!(b.recv().unwrap(), Some(Msg::InitPid { pid: 42 }));
        let f = std::fs::File::open("/dev/null").unwrap();
        a.send_with_fd(&Msg::Created, Some(f.as_raw_fd())).unwrap();
        let (m, fd) = b.recv_with_fd().unwrap().unwrap();
        assert_eq!(m, Msg::Created);
        assert!(fd.is_some());
        drop(a);
        assert_eq!(b.recv().unwrap(), None);
    }

    #[test]
    fn error_messages_become_errors() {
        let (a, b) = Channel::pair().unwrap();
        a.send(&Msg::Error { code: "E".into(), msg: "mount failed".into() }).unwrap();
        let e = b.expect("created", |m| *m == Msg::Created).unwrap_err();
        assert_eq!(e.to_string(), "mount failed");
    }
}
