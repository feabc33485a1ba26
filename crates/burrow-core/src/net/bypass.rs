//! Published TCP ports without a relay, the way bypass4netns does it: the container's `bind(2)`
//! of a published port is handed to us through a seccomp user notification (the CLI adds a
//! SCMP_ACT_NOTIFY rule for `bind` and a `listenerPath` to the config; the runtime sends the
//! notification fd there). We create a socket of the same kind in the host's network namespace,
//! bind it to the published host address and port, and put it in place of the container's
//! socket (SECCOMP_IOCTL_NOTIF_ADDFD with SETFD). The server then listens on the host itself:
//! host clients reach it in one loopback hop, at the host's own loopback speed, instead of two
//! hops through the forwarder.
//!
//! Anything we cannot or should not take over (another port, UDP, a non-wildcard address, a
//! family we cannot bind as asked, any failure) continues as the ordinary bind in the container,
//! where the forwarder reaches it as before: this is a shortcut, never a new way to fail.
//!
//! The price of a socket in the host's namespace: it could connect from there (to the host's
//! loopback, which slirp4netns keeps from the container unless allow_host_loopback). So the
//! profile also sends `connect` and MSG_FASTOPEN sends here, and those on a handed-over socket
//! are refused (EPERM); io_uring, whose operations seccomp cannot see, is refused by the
//! profile. A locked socket filter dropping SYN-ACKs would be cheaper, but unprivileged
//! SO_ATTACH_FILTER is refused on some kernels (this project's CI machines among them). Every
//! connect in such a container costs one round trip through the owner; hence opt-in.
//!
//! Why reading the caller's memory is safe here: we only read the address, and check that the
//! notification is still pending afterwards (the pid cannot have been reused meanwhile). A
//! racing thread could change the address after our check; then the worst case is the call we
//! continue, which the container could make anyway.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::socket::{getsockopt, setsockopt, sockopt, AddressFamily, SockType, SockaddrLike, SockaddrStorage};

use super::sock::{self, socket_addr};

#[repr(C)]
#[derive(Default)]
struct SeccompData {
    nr: i32,
    arch: u32,
    ip: u64,
    args: [u64; 6],
}

#[repr(C)]
#[derive(Default)]
struct Notif {
    id: u64,
    pid: u32,
    flags: u32,
    data: SeccompData,
}

#[repr(C)]
struct Resp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}

#[repr(C)]
struct AddFd {
    id: u64,
    flags: u32,
    srcfd: u32,
    newfd: u32,
    newfd_flags: u32,
}

// _IOWR('!', 0, struct seccomp_notif) and friends (linux/seccomp.h); the sizes are fixed.
const NOTIF_RECV: libc::c_ulong = 0xc050_2100;
const NOTIF_SEND: libc::c_ulong = 0xc018_2101;
const NOTIF_ID_VALID: libc::c_ulong = 0x4008_2102;
const NOTIF_ADDFD: libc::c_ulong = 0x4018_2103;
const FLAG_CONTINUE: u32 = 1;
const ADDFD_FLAG_SETFD: u32 = 1;
/// pidfd_open(2) for a thread that is not the group leader (Linux 6.9); O_EXCL's value.
const PIDFD_THREAD: libc::c_uint = libc::O_EXCL as libc::c_uint;

#[cfg(target_arch = "x86_64")]
const NATIVE_ARCH: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const NATIVE_ARCH: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64

/// A published TCP port as the bypass needs it.
#[derive(Debug, Clone)]
pub struct Published {
    pub container_port: u16,
    /// The host address from `-p` (None: every address).
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
}

/// What became of one notification.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing was pending (or it went away).
    None,
    /// The call went ahead in the container.
    Continued,
    /// The container's socket for `container_port` is now a host socket bound to `local`.
    Replaced { container_port: u16, local: SocketAddr, v6only: bool, ino: u64 },
    /// A handed-over socket was kept from connecting out.
    Refused,
}

fn ioctl<T>(fd: RawFd, req: libc::c_ulong, arg: &mut T) -> std::result::Result<libc::c_int, Errno> {
    // SAFETY: the seccomp notification ioctls take a pointer to the matching structure.
    let r = unsafe { libc::ioctl(fd, req, arg as *mut T) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

fn respond(fd: RawFd, id: u64, error: i32, flags: u32) {
    let mut r = Resp { id, val: 0, error, flags };
    // ENOENT: the caller was killed meanwhile. Nothing to do either way.
    let _ = ioctl(fd, NOTIF_SEND, &mut r);
}

fn still_pending(fd: RawFd, id: u64) -> bool {
    let mut id = id;
    ioctl(fd, NOTIF_ID_VALID, &mut id).is_ok()
}

/// Sockets handed over so far, by inode (sockfs numbers them from a counter: no reuse to fear).
#[derive(Default)]
pub struct Handed(Vec<u64>);

/// Receives one notification and answers it. `lookup` names the published port a container
/// port maps to (TCP only).
///
/// Besides `bind`, the profile sends `connect` and the sends that can open a connection
/// (MSG_FASTOPEN) here: a server's socket from the host must not connect out. Without that,
/// a process in the container could stop listening on it (shutdown(SHUT_RD) returns a
/// listening socket to CLOSE) and connect from the host's namespace to the host's loopback,
/// which its own namespace keeps it from. Every other socket goes ahead untouched.
pub fn handle(notify: RawFd, handed: &mut Handed, lookup: impl Fn(u16) -> Option<Published>) -> Outcome {
    let mut n = Notif::default();
    if ioctl(notify, NOTIF_RECV, &mut n).is_err() {
        return Outcome::None;
    }
    let nr = n.data.nr as libc::c_long;
    let native = n.data.arch == NATIVE_ARCH;
    if native && nr == libc::SYS_bind {
        if let Some(o) = take_over(notify, &n, lookup) {
            if let Outcome::Replaced { ino, .. } = o {
                handed.0.push(ino);
            }
            respond(notify, n.id, 0, 0);
            return o;
        }
    } else if !handed.0.is_empty() {
        // connect, sendto, sendmsg, sendmmsg: the socket is their first argument. Another
        // architecture's calls (x86's socketcall) would need their arguments read from memory:
        // refused while a handed-over socket exists, rather than trusted.
        let refuse = !native || their_socket(n.pid as i32, n.data.args[0] as RawFd).and_then(|s| inode(s.as_raw_fd())).is_some_and(|i| handed.0.contains(&i));
        if refuse {
            respond(notify, n.id, -libc::EPERM, 0);
            return Outcome::Refused;
        }
    }
    respond(notify, n.id, 0, FLAG_CONTINUE);
    Outcome::Continued
}

fn inode(fd: RawFd) -> Option<u64> {
    // SAFETY: fstat into a zeroed stat structure.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some(st.st_ino)
}

fn take_over(notify: RawFd, n: &Notif, lookup: impl Fn(u16) -> Option<Published>) -> Option<Outcome> {
    let [fd, addr_ptr, addr_len, ..] = n.data.args;
    let want = read_sockaddr(n.pid as i32, addr_ptr, addr_len as usize)?;
    if !still_pending(notify, n.id) {
        return None;
    }
    let p = lookup(want.port())?;
    // Only what a server listening for the published port binds: every address, or loopback
    // (which the forwarder reached too).
    if !(want.ip().is_unspecified() || want.ip().is_loopback()) {
        return None;
    }
    let theirs = their_socket(n.pid as i32, fd as RawFd)?;
    let domain = sock::get_int_opt(&theirs, libc::SOL_SOCKET, libc::SO_DOMAIN).ok()?;
    if getsockopt(&theirs, sockopt::SockType).ok()? != SockType::Stream || domain != family(&want) {
        return None;
    }
    let v6only = domain == libc::AF_INET6 && getsockopt(&theirs, sockopt::Ipv6V6Only).ok()?;
    let local = host_address(&p, domain, v6only)?;
    let ours = host_socket(&theirs, domain, v6only, &local).ok()?;
    let ino = inode(ours.as_raw_fd())?;
    let cloexec = fd_cloexec(n.pid as i32, fd as RawFd);
    let mut a = AddFd {
        id: n.id,
        flags: ADDFD_FLAG_SETFD,
        srcfd: ours.as_raw_fd() as u32,
        newfd: fd as u32,
        newfd_flags: if cloexec { libc::O_CLOEXEC as u32 } else { 0 },
    };
    ioctl(notify, NOTIF_ADDFD, &mut a).ok()?;
    Some(Outcome::Replaced { container_port: p.container_port, local, v6only, ino })
}

fn family(a: &SocketAddr) -> libc::c_int {
    if a.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    }
}

/// Where the host socket binds: the published address, in the family the server asked for.
fn host_address(p: &Published, domain: libc::c_int, v6only: bool) -> Option<SocketAddr> {
    let ip = match (p.host_ip, domain) {
        (None, libc::AF_INET) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (None, _) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        (Some(IpAddr::V4(v4)), libc::AF_INET) => IpAddr::V4(v4),
        // A dual-stack socket takes an IPv4 address in its mapped form.
        (Some(IpAddr::V4(v4)), _) if !v6only => IpAddr::V6(v4.to_ipv6_mapped()),
        (Some(IpAddr::V6(v6)), libc::AF_INET6) => IpAddr::V6(v6),
        _ => return None,
    };
    Some(SocketAddr::new(ip, p.host_port))
}

/// The container's address argument, read from its memory.
fn read_sockaddr(pid: i32, ptr: u64, len: usize) -> Option<SocketAddr> {
    let len = len.min(std::mem::size_of::<libc::sockaddr_storage>());
    if len < std::mem::size_of::<libc::sockaddr_in>() {
        return None;
    }
    // SAFETY: zeroed storage is valid; process_vm_readv writes at most `len` bytes into it.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let local = libc::iovec { iov_base: &mut ss as *mut _ as *mut libc::c_void, iov_len: len };
    let remote = libc::iovec { iov_base: ptr as *mut libc::c_void, iov_len: len };
    let r = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    if r != len as isize {
        return None;
    }
    // SAFETY: `ss` holds the `len` bytes read, zeros after them; from_raw copies at most `len`.
    let a = socket_addr(&unsafe { SockaddrStorage::from_raw(&ss as *const _ as *const libc::sockaddr, Some(len as libc::socklen_t)) }?)?;
    (a.is_ipv4() || len >= std::mem::size_of::<libc::sockaddr_in6>()).then_some(a)
}

/// A copy of the container's socket descriptor (pidfd_getfd: same open file).
fn their_socket(pid: i32, fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: pidfd_open/pidfd_getfd return new descriptors we own, or -1.
    let mut pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as RawFd;
    if pidfd < 0 {
        // A thread other than the leader made the call.
        pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, PIDFD_THREAD) } as RawFd;
    }
    if pidfd < 0 {
        return None;
    }
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let r = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) } as RawFd;
    (r >= 0).then(|| unsafe { OwnedFd::from_raw_fd(r) })
}

/// Whether the container's descriptor is close-on-exec (its fdinfo's octal flags).
fn fd_cloexec(pid: i32, fd: RawFd) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("flags:").and_then(|v| u32::from_str_radix(v.trim(), 8).ok())))
        .is_some_and(|f| f & libc::O_CLOEXEC as u32 != 0)
}

/// A host socket standing in for the container's: its blocking mode and the options servers
/// set before bind copied over, SO_REUSEPORT so that it may bind beside the forwarder's
/// listener (which keeps the port from others until now), bound to `local`.
fn host_socket(theirs: &impl AsFd, domain: libc::c_int, v6only: bool, local: &SocketAddr) -> std::result::Result<OwnedFd, Errno> {
    let family = if domain == libc::AF_INET6 { AddressFamily::Inet6 } else { AddressFamily::Inet };
    let ours = sock::new_socket(family, SockType::Stream, false)?;
    // Theirs shares the container's open file: its flags are the server's.
    if let Ok(fl) = fcntl(theirs.as_fd().as_raw_fd(), FcntlArg::F_GETFL) {
        if OFlag::from_bits_truncate(fl).contains(OFlag::O_NONBLOCK) {
            let _ = fcntl(ours.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
        }
    }
    if getsockopt(theirs, sockopt::ReuseAddr) == Ok(true) {
        let _ = setsockopt(&ours, sockopt::ReuseAddr, &true);
    }
    if getsockopt(theirs, sockopt::KeepAlive) == Ok(true) {
        let _ = setsockopt(&ours, sockopt::KeepAlive, &true);
    }
    if getsockopt(theirs, sockopt::TcpNoDelay) == Ok(true) {
        let _ = setsockopt(&ours, sockopt::TcpNoDelay, &true);
    }
    // Seconds, and nix has no wrapper for it.
    if let Ok(v) = sock::get_int_opt(theirs, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT) {
        if v != 0 {
            let _ = sock::set_int_opt(&ours, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, v);
        }
    }
    setsockopt(&ours, sockopt::ReusePort, &true)?;
    if domain == libc::AF_INET6 {
        setsockopt(&ours, sockopt::Ipv6V6Only, &v6only)?;
    }
    sock::bind(&ours, local)?;
    Ok(ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structures_have_the_kernel_sizes() {
        // The ioctl numbers encode these sizes; a mismatch would make every call fail.
        assert_eq!(std::mem::size_of::<Notif>(), 80);
        assert_eq!(std::mem::size_of::<Resp>(), 24);
        assert_eq!(std::mem::size_of::<AddFd>(), 24);
        assert_eq!((NOTIF_RECV >> 16) & 0x3fff, 80);
        assert_eq!((NOTIF_SEND >> 16) & 0x3fff, 24);
        assert_eq!((NOTIF_ADDFD >> 16) & 0x3fff, 24);
    }

    #[test]
    fn host_address_follows_the_servers_family() {
        let any = Published { container_port: 80, host_ip: None, host_port: 8080 };
        assert_eq!(host_address(&any, libc::AF_INET, false), Some("0.0.0.0:8080".parse().unwrap()));
        assert_eq!(host_address(&any, libc::AF_INET6, false), Some("[::]:8080".parse().unwrap()));
        let lo = Published { host_ip: Some("127.0.0.1".parse().unwrap()), ..any.clone() };
        assert_eq!(host_address(&lo, libc::AF_INET, false), Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(host_address(&lo, libc::AF_INET6, false), Some("[::ffff:127.0.0.1]:8080".parse().unwrap()));
        // An IPv6-only server cannot take an IPv4 address, nor an IPv4 one an IPv6 address.
        assert_eq!(host_address(&lo, libc::AF_INET6, true), None);
        let v6 = Published { host_ip: Some("::1".parse().unwrap()), ..any };
        assert_eq!(host_address(&v6, libc::AF_INET, false), None);
    }

    #[test]
    fn a_host_socket_binds_beside_a_reuseport_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        // The forwarder's listener has SO_REUSEPORT when the bypass is on; a plain one refuses.
        let theirs = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = host_socket(&theirs, libc::AF_INET, false, &SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)).err();
        assert_eq!(e, Some(Errno::EADDRINUSE));
    }
}
