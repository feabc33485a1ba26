//! The owner's namespaces: its user namespace U (entered by the owner itself), the network
//! namespace N (made by a child, kept by descriptor), and short-lived children that do work
//! inside N or a container's namespace and send back descriptors or an error (nsock.rs explains
//! why children: the owner stays in the host's network namespace).

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::socket::{recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType};
use oci_spec::runtime::LinuxIdMapping;

/// Runs `f` in a forked child and returns the descriptors it hands back, or its error text.
/// The child dies with us, starts with no signal blocked and leaves with `_exit`.
pub fn in_child(f: impl FnOnce() -> Result<Vec<OwnedFd>, String>) -> Result<Vec<OwnedFd>, String> {
    let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).map_err(|e| format!("socketpair: {e}"))?;
    // SAFETY: burrow-runtime is single-threaded, so the child may run ordinary code.
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Child => {
            drop(ours);
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            // SAFETY: an empty set, applied to this (single-threaded) child.
            unsafe {
                let empty: libc::sigset_t = std::mem::zeroed();
                libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            }
            let code = match f() {
                Ok(fds) => {
                    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
                    let cm = [ControlMessage::ScmRights(&raw)];
                    let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &cm };
                    match sendmsg::<()>(theirs.as_raw_fd(), &[IoSlice::new(b"k")], cmsgs, MsgFlags::empty(), None) {
                        Ok(_) => 0,
                        Err(_) => 1,
                    }
                }
                Err(e) => {
                    let msg = if e.is_empty() { "failed".to_string() } else { e };
                    let _ = nix::sys::socket::send(theirs.as_raw_fd(), format!("E{msg}").as_bytes(), MsgFlags::empty());
                    1
                }
            };
            // SAFETY: leave without running the owner's exit handlers or flushing its buffers.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(theirs);
            let r = receive(ours.as_raw_fd());
            let _ = nix::sys::wait::waitpid(child, None);
            r
        }
    }
}

fn receive(sock: RawFd) -> Result<Vec<OwnedFd>, String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: CMSG_SPACE is a pure size computation.
    let mut cbuf = vec![0u8; unsafe { libc::CMSG_SPACE((16 * std::mem::size_of::<RawFd>()) as u32) } as usize];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let (bytes, fds) = {
        let msg = loop {
            match recvmsg::<()>(sock, &mut iov, Some(&mut cbuf), MsgFlags::MSG_CMSG_CLOEXEC) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => break r.map_err(|e| format!("receive from the child: {e}"))?,
            }
        };
        let mut fds = Vec::new();
        for c in msg.cmsgs().map_err(|e| format!("receive from the child: {e}"))? {
            if let ControlMessageOwned::ScmRights(v) = c {
                // SAFETY: the kernel installed these descriptors for us.
                fds.extend(v.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
            }
        }
        (msg.bytes, fds)
    };
    match buf[..bytes].first() {
        Some(b'k') => Ok(fds),
        Some(b'E') => Err(String::from_utf8_lossy(&buf[1..bytes]).into_owned()),
        _ => Err("the child ended without an answer".into()),
    }
}

/// `f` in a child that entered the network namespace `netns`.
pub fn in_netns(netns: BorrowedFd<'_>, f: impl FnOnce() -> Result<Vec<OwnedFd>, String>) -> Result<Vec<OwnedFd>, String> {
    in_child(|| {
        setns(netns, CloneFlags::CLONE_NEWNET).map_err(|e| format!("enter the network namespace: {e}"))?;
        f()
    })
}

/// A new network namespace (owned by our user namespace), made by a child and kept by
/// descriptor: nothing needs to stay in it.
pub fn new_netns() -> Result<OwnedFd, String> {
    let mut fds = in_child(|| {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare the network namespace: {e}"))?;
        let f = std::fs::File::open("/proc/thread-self/ns/net").map_err(|e| format!("open the new network namespace: {e}"))?;
        Ok(vec![OwnedFd::from(f)])
    })?;
    fds.pop().ok_or_else(|| "no network namespace came back".into())
}

/// Moves this process into a new user namespace with these maps (written by a child, through
/// newuidmap/newgidmap as for containers), as root in it. The caller must be single-threaded.
pub fn enter_new_userns(uids: &[LinuxIdMapping], gids: &[LinuxIdMapping]) -> Result<(), String> {
    let (go_r, go_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let (res_r, res_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let parent = std::process::id() as i32;
    // SAFETY: single-threaded caller; the child writes the maps and leaves with _exit.
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Child => {
            drop(go_w);
            drop(res_r);
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            let mut b = [0u8; 1];
            let _ = nix::unistd::read(go_r.as_raw_fd(), &mut b);
            let msg = if b[0] != b'u' {
                "the owner did not make its user namespace".to_string()
            } else {
                match crate::runtime::idmap::write(parent, uids, gids) {
                    Ok(()) => String::new(),
                    Err(e) => e.to_string(),
                }
            };
            let _ = nix::unistd::write(&res_w, if msg.is_empty() { b"ok" } else { msg.as_bytes() });
            // SAFETY: leave without the parent's exit handlers.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(go_r);
            drop(res_w);
            let r = unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| format!("unshare the user namespace: {e}"));
            let _ = nix::unistd::write(&go_w, if r.is_ok() { b"u" } else { b"x" });
            drop(go_w);
            let mut out = Vec::new();
            let mut buf = [0u8; 512];
            loop {
                match nix::unistd::read(res_r.as_raw_fd(), &mut buf) {
                    Ok(0) => break,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => break,
                }
            }
            let _ = nix::sys::wait::waitpid(child, None);
            r?;
            let msg = String::from_utf8_lossy(&out).into_owned();
            if msg != "ok" {
                return Err(if msg.is_empty() { "the id maps were not written".into() } else { msg });
            }
            // Root in U: the maps give our own id to 0.
            let _ = nix::unistd::setresgid(0.into(), 0.into(), 0.into());
            let _ = nix::unistd::setresuid(0.into(), 0.into(), 0.into());
            Ok(())
        }
    }
}

/// `C:H:S` as a mapping.
pub fn parse_map(s: &str) -> Option<LinuxIdMapping> {
    let v: Vec<u32> = s.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let [c, h, n] = v[..] else { return None };
    oci_spec::runtime::LinuxIdMappingBuilder::default().container_id(c).host_id(h).size(n).build().ok()
}
