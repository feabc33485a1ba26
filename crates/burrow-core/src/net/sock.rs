//! Socket helpers that the forwarder (forward.rs) and the bypass (bypass.rs) share: socket
//! addresses to and from the kernel's form, sockets bound or connected to them, and the integer
//! socket options nix has no wrapper for. Their own module, so that neither of the two imports
//! the other's internals. Everything goes through nix's socket wrappers but `int_opt`.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrStorage};

type Result<T> = std::result::Result<T, Errno>;

/// A socket address in the kernel's form.
pub fn sockaddr(a: &SocketAddr) -> SockaddrStorage {
    SockaddrStorage::from(*a)
}

/// The address of the kernel's form, if it is an IPv4 or IPv6 one.
pub fn socket_addr(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    s.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

pub fn family_of(a: &SocketAddr) -> AddressFamily {
    if a.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

/// A new close-on-exec socket, non-blocking when asked.
pub fn new_socket(family: AddressFamily, ty: SockType, nonblock: bool) -> Result<OwnedFd> {
    let flags = if nonblock { SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK } else { SockFlag::SOCK_CLOEXEC };
    socket::socket(family, ty, flags, None)
}

pub fn bind(fd: &impl AsFd, a: &SocketAddr) -> Result<()> {
    socket::bind(fd.as_fd().as_raw_fd(), &sockaddr(a))
}

pub fn connect(fd: &impl AsFd, a: &SocketAddr) -> Result<()> {
    socket::connect(fd.as_fd().as_raw_fd(), &sockaddr(a))
}

/// The address a socket is bound to.
pub fn local_addr(fd: &impl AsFd) -> Result<SocketAddr> {
    let ss: SockaddrStorage = socket::getsockname(fd.as_fd().as_raw_fd())?;
    socket_addr(&ss).ok_or(Errno::EAFNOSUPPORT)
}

/// Whether a connecting socket has a peer.
pub fn connected(fd: &impl AsFd) -> bool {
    socket::getpeername::<SockaddrStorage>(fd.as_fd().as_raw_fd()).is_ok()
}

/// An integer option by level and name, for those nix has no wrapper for (SO_DOMAIN,
/// TCP_DEFER_ACCEPT).
pub fn get_int_opt(fd: &impl AsFd, level: libc::c_int, opt: libc::c_int) -> Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt into an int of the given size, on a descriptor we hold.
    let r = unsafe { libc::getsockopt(fd.as_fd().as_raw_fd(), level, opt, &mut v as *mut _ as *mut libc::c_void, &mut len) };
    Errno::result(r).map(|_| v)
}

pub fn set_int_opt(fd: &impl AsFd, level: libc::c_int, opt: libc::c_int, v: libc::c_int) -> Result<()> {
    // SAFETY: setsockopt with a pointer to an int and its size, on a descriptor we hold.
    let r = unsafe {
        libc::setsockopt(fd.as_fd().as_raw_fd(), level, opt, &v as *const _ as *const libc::c_void, std::mem::size_of::<libc::c_int>() as libc::socklen_t)
    };
    Errno::result(r).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_survive_the_kernel_form() {
        for a in ["127.0.0.1:8080", "[::1]:443", "[::ffff:127.0.0.1]:53", "0.0.0.0:0"] {
            let a: SocketAddr = a.parse().unwrap();
            assert_eq!(socket_addr(&sockaddr(&a)), Some(a));
        }
    }

    #[test]
    fn a_bound_socket_knows_its_address() {
        let fd = new_socket(AddressFamily::Inet, SockType::Stream, true).unwrap();
        bind(&fd, &"127.0.0.1:0".parse().unwrap()).unwrap();
        let a = local_addr(&fd).unwrap();
        assert_eq!(a.ip(), "127.0.0.1".parse::<std::net::IpAddr>().unwrap());
        assert_ne!(a.port(), 0);
        assert!(!connected(&fd));
        assert_eq!(get_int_opt(&fd, libc::SOL_SOCKET, libc::SO_DOMAIN), Ok(libc::AF_INET));
    }
}
