//! The port forwarder: published ports for a container whose network namespace the host cannot
//! route to. It listens on the host and, for each connection, connects to 127.0.0.1:PORT inside
//! the container through a socket created in its namespace (nsock.rs), then moves the bytes with
//! splice(2) through a pipe per direction, so they are never copied to user space.
//!
//! It runs in the owner's single thread (the monitor, or the foreground runtime): everything sits
//! in one epoll set whose descriptor the owner adds to its own poll loop. Connections are
//! edge-triggered and pumped until the kernel says EAGAIN; listening and UDP sockets are
//! level-triggered. UDP keeps one container-side socket per client address (a flow), so replies
//! go back to the client that asked; idle flows are dropped when new ones are made.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::nsock::NsSockets;
use nix::sys::socket::{setsockopt, sockopt, AddressFamily, Backlog, MsgFlags, SockType, SockaddrStorage};

use super::sock::{self, family_of, sockaddr, socket_addr};
use super::{BoundPort, Ctx, NetError, PortSpec, Proto, Result};

/// A bulk connection's pipes grow to 1 MiB (the unprivileged maximum, fs.pipe-max-size), so that
/// one splice moves a whole socket buffer; the others keep the default 64 KiB. Pipe capacity
/// counts against the user's fs.pipe-user-pages-soft (64 MiB), which their other programs share:
/// only a few pipes may be big at once.
const PIPE_BIG: libc::c_int = 1 << 20;
const PIPE_DEFAULT: usize = 1 << 16;
const MAX_BIG_PIPES: usize = 16;
const CHUNK: usize = 1 << 20;
/// Rounds of pumping one connection before the others get a turn.
const PUMP_ROUNDS: usize = 64;
const TCP_BATCH: usize = 8;
const UDP_BATCH: usize = 4;
const FLOW_IDLE: Duration = Duration::from_secs(180);
const MAX_FLOWS: usize = 4096;

const K_LISTEN: u64 = 1;
const K_CLIENT: u64 = 2;
const K_SERVER: u64 = 3;
const K_FLOW: u64 = 4;
/// The seccomp listener socket, a connection on it, a notification fd (bypass.rs).
const K_SECCOMP: u64 = 5;
const K_SCONN: u64 = 6;
const K_NOTIFY: u64 = 7;

fn token(kind: u64, idx: usize) -> u64 {
    (kind << 56) | idx as u64
}

// ---- small system-call wrappers (the only unsafe code here) --------------------------------

fn errno<T>(r: libc::c_int, ok: T) -> std::result::Result<T, Errno> {
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(ok)
    }
}

fn owned(fd: libc::c_int) -> std::result::Result<OwnedFd, Errno> {
    if fd < 0 {
        Err(Errno::last())
    } else {
        // SAFETY: a descriptor the kernel just returned to us.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

fn sock_error(fd: &OwnedFd) -> i32 {
    nix::sys::socket::getsockopt(fd, sockopt::SocketError).unwrap_or(0)
}

fn splice(from: RawFd, to: RawFd, len: usize) -> std::result::Result<usize, Errno> {
    // SAFETY: splice between descriptors we own, no offsets (sockets and pipes).
    let n = unsafe { libc::splice(from, std::ptr::null_mut(), to, std::ptr::null_mut(), len, libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK) };
    if n < 0 {
        Err(Errno::last())
    } else {
        Ok(n as usize)
    }
}

fn epoll_ctl(ep: RawFd, op: libc::c_int, fd: RawFd, events: u32, tok: u64) -> std::result::Result<(), Errno> {
    let mut ev = libc::epoll_event { events, u64: tok };
    // SAFETY: epoll_ctl with a valid event structure.
    errno(unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) }, ())
}

fn pipe() -> std::result::Result<(OwnedFd, OwnedFd), Errno> {
    let mut p = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    errno(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) }, ())?;
    Ok((owned(p[0])?, owned(p[1])?))
}

/// A listening (TCP) or bound (UDP) socket on the host. `reuseport`: the bypass (bypass.rs) will
/// bind the container's own socket beside it.
fn bind_host(ip: IpAddr, port: u16, proto: Proto, dual: bool, reuseport: bool) -> std::result::Result<OwnedFd, Errno> {
    let family = if ip.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    let ty = match proto {
        Proto::Tcp => SockType::Stream,
        Proto::Udp => SockType::Datagram,
    };
    let fd = sock::new_socket(family, ty, true)?;
    if proto == Proto::Tcp {
        // As every server does: a restarted container gets its port back despite TIME_WAIT.
        setsockopt(&fd, sockopt::ReuseAddr, &true)?;
        if reuseport {
            setsockopt(&fd, sockopt::ReusePort, &true)?;
        }
    }
    if family == AddressFamily::Inet6 {
        setsockopt(&fd, sockopt::Ipv6V6Only, &!dual)?;
    }
    sock::bind(&fd, &SocketAddr::new(ip, port))?;
    if proto == Proto::Tcp {
        // SOMAXCONN (4096 with glibc): the kernel caps it at net.core.somaxconn anyway.
        nix::sys::socket::listen(&fd, Backlog::MAXCONN)?;
    }
    Ok(fd)
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    s.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

fn port_error(addr: &str, port: u16, proto: Proto, e: Errno) -> NetError {
    let why = match e {
        Errno::EADDRINUSE => "the port is already in use on the host; choose another host port, or stop what uses it".to_string(),
        Errno::EACCES => format!(
            "ports below {} need privileges on this host; publish a higher port (e.g. -p 8080:{port}) or lower net.ipv4.ip_unprivileged_port_start",
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").map(|s| s.trim().to_string()).unwrap_or_else(|_| "1024".into())
        ),
        Errno::EADDRNOTAVAIL => "no interface of the host has this address".to_string(),
        e => e.desc().to_string(),
    };
    NetError::PortInUse { addr: addr.into(), port, proto: proto.as_str(), why }
}

/// Binds a port as `-p` asks: the wildcard is one IPv6 socket that takes IPv4 too (plain IPv4
/// where the host has no IPv6). Returns the socket and what was bound.
fn bind_spec(p: &PortSpec, reuseport: bool) -> Result<(OwnedFd, BoundPort)> {
    let b = |host_ip: &str, dual| BoundPort { host_ip: host_ip.into(), host_port: p.host_port, container_port: p.container_port, protocol: p.protocol, dual };
    let (fd, mut bound) = if p.host_ip.is_empty() {
        match bind_host(IpAddr::V6(Ipv6Addr::UNSPECIFIED), p.host_port, p.protocol, true, reuseport) {
            Ok(fd) => (fd, b("0.0.0.0", true)),
            Err(Errno::EAFNOSUPPORT) | Err(Errno::EADDRNOTAVAIL) => {
                let fd = bind_host(IpAddr::V4(Ipv4Addr::UNSPECIFIED), p.host_port, p.protocol, false, reuseport)
                    .map_err(|e| port_error("0.0.0.0", p.host_port, p.protocol, e))?;
                (fd, b("0.0.0.0", false))
            }
            Err(e) => return Err(port_error("0.0.0.0", p.host_port, p.protocol, e)),
        }
    } else {
        let ip = parse_ip(&p.host_ip).ok_or_else(|| NetError::PortInUse {
            addr: p.host_ip.clone(),
            port: p.host_port,
            proto: p.protocol.as_str(),
            why: "not an IP address".into(),
        })?;
        let fd = bind_host(ip, p.host_port, p.protocol, false, reuseport).map_err(|e| port_error(&p.host_ip, p.host_port, p.protocol, e))?;
        (fd, b(&ip.to_string(), false))
    };
    bound.host_port = sock::local_addr(&fd).op("getsockname")?.port();
    Ok((fd, bound))
}

/// Checks that a port can be bound (and picks one for port 0), then lets it go: for handlers
/// that bind it themselves later.
pub fn probe_port(ip: &str, port: u16, proto: Proto) -> Result<u16> {
    let spec = PortSpec { host_ip: ip.into(), host_port: port, container_port: 0, protocol: proto };
    let (_fd, b) = bind_spec(&spec, false)?;
    Ok(b.host_port)
}

// ---- the forwarder ---------------------------------------------------------------------------

/// Where a listener's connections go.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    /// 127.0.0.1:container_port, through a socket made in the container's namespace.
    Container,
    /// An address in the host's namespace: the container's server, once the bypass gave it a
    /// host socket (from the forwarder's own listener for the other address family, and from
    /// the listener we then open inside the container, so that its own clients still reach it).
    Host(SocketAddr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A published port (`-p`).
    Published,
    /// After the bypass, the family of a dual-stack port that the server's socket does not take.
    OtherFamily,
    /// After the bypass, inside the container: its own clients of the port.
    Inside,
}

struct Listener {
    /// None once the bypass closed it (the container's server took its place).
    fd: Option<OwnedFd>,
    bound: BoundPort,
    target: Target,
    kind: Kind,
    /// UDP: flows by client address.
    flows: HashMap<SocketAddr, usize>,
}

/// One direction of a connection: bytes go src → pipe → dst.
struct Half {
    r: OwnedFd,
    w: OwnedFd,
    pending: usize,
    eof: bool,
    shut: bool,
    /// The pipe was grown to PIPE_BIG.
    big: bool,
    /// A splice filled the default pipe: this direction carries bulk data.
    bulk: bool,
}

impl Half {
    fn new((r, w): (OwnedFd, OwnedFd)) -> Half {
        Half { r, w, pending: 0, eof: false, shut: false, big: false, bulk: false }
    }
}

struct Conn {
    client: OwnedFd,
    server: OwnedFd,
    connecting: bool,
    up: Half,
    down: Half,
}

struct Flow {
    sock: OwnedFd,
    listener: usize,
    client: SocketAddr,
    last: Instant,
}

/// A vector with reusable slots, indexed by epoll tokens.
struct Slab<T> {
    items: Vec<Option<T>>,
    free: Vec<usize>,
}

impl<T> Slab<T> {
    fn new() -> Self {
        Slab { items: Vec::new(), free: Vec::new() }
    }
    fn insert(&mut self, v: T) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.items[i] = Some(v);
                i
            }
            None => {
                self.items.push(Some(v));
                self.items.len() - 1
            }
        }
    }
    fn remove(&mut self, i: usize) -> Option<T> {
        let v = self.items.get_mut(i)?.take();
        if v.is_some() {
            self.free.push(i);
        }
        v
    }
    fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.items.get_mut(i).and_then(Option::as_mut)
    }
    fn len(&self) -> usize {
        self.items.len() - self.free.len()
    }
}

pub struct Forwarder {
    ep: OwnedFd,
    listeners: Vec<Listener>,
    conns: Slab<Conn>,
    flows: Slab<Flow>,
    ns: Option<NsSockets>,
    tcp_pool: Vec<OwnedFd>,
    udp_pool: Vec<OwnedFd>,
    buf: Vec<u8>,
    big_pipes: usize,
    seccomp: Option<std::os::unix::net::UnixListener>,
    sconns: Slab<std::os::unix::net::UnixStream>,
    notifies: Slab<OwnedFd>,
    handed: super::bypass::Handed,
}

enum Pumped {
    Idle,
    /// Stopped after PUMP_ROUNDS with more to move.
    More,
}

impl Forwarder {
    /// Binds every published port; the first that cannot be bound fails the whole set.
    /// `bypass`: the seccomp listener's path, where the container's `bind` notifications come
    /// from (bypass.rs).
    pub fn bind(ports: &[PortSpec], bypass: Option<&std::path::Path>) -> Result<Forwarder> {
        // SAFETY: epoll_create1; owned right away.
        let ep = owned(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) }).op("epoll_create1")?;
        let mut listeners = Vec::new();
        for p in ports {
            let (fd, bound) = bind_spec(p, bypass.is_some() && p.protocol == Proto::Tcp)?;
            epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd.as_raw_fd(), libc::EPOLLIN as u32, token(K_LISTEN, listeners.len())).op("epoll_ctl")?;
            listeners.push(Listener { fd: Some(fd), bound, target: Target::Container, kind: Kind::Published, flows: HashMap::new() });
        }
        let seccomp = match bypass {
            Some(path) => {
                let _ = std::fs::remove_file(path);
                let l = crate::runtime::state::with_short_path_of(path, |q| std::os::unix::net::UnixListener::bind(q))
                    .op(format!("bind the seccomp listener {}", path.display()))?;
                l.set_nonblocking(true).op("seccomp listener")?;
                epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, l.as_raw_fd(), libc::EPOLLIN as u32, token(K_SECCOMP, 0)).op("epoll_ctl")?;
                Some(l)
            }
            None => None,
        };
        Ok(Forwarder {
            ep,
            listeners,
            conns: Slab::new(),
            flows: Slab::new(),
            ns: None,
            tcp_pool: Vec::new(),
            udp_pool: Vec::new(),
            buf: Vec::new(),
            big_pipes: 0,
            seccomp,
            sconns: Slab::new(),
            notifies: Slab::new(),
            handed: Default::default(),
        })
    }

    /// From now on connections go into the container's namespace.
    pub fn attach(&mut self, ns: NsSockets) {
        self.ns = Some(ns);
    }

    pub fn bound(&self) -> Vec<BoundPort> {
        self.listeners.iter().filter(|l| l.kind == Kind::Published).map(|l| l.bound.clone()).collect()
    }

    pub fn epoll(&self) -> &OwnedFd {
        &self.ep
    }

    /// Handles what is ready, without blocking.
    pub fn dispatch(&mut self) {
        // SAFETY: zeroed epoll_event is a valid value.
        let mut evs: [libc::epoll_event; 64] = unsafe { std::mem::zeroed() };
        let n = unsafe { libc::epoll_wait(self.ep.as_raw_fd(), evs.as_mut_ptr(), evs.len() as libc::c_int, 0) };
        for ev in evs.iter().take(n.max(0) as usize) {
            let tok = ev.u64;
            let idx = (tok & ((1 << 56) - 1)) as usize;
            match tok >> 56 {
                K_LISTEN => match self.listeners[idx].bound.protocol {
                    Proto::Tcp => self.accept(idx),
                    Proto::Udp => self.udp_from_host(idx),
                },
                K_CLIENT | K_SERVER => self.service(idx),
                K_FLOW => self.udp_from_container(idx),
                K_SECCOMP => self.seccomp_accept(),
                K_SCONN => self.seccomp_recv(idx),
                K_NOTIFY => self.notification(idx, ev.events),
                _ => {}
            }
        }
    }

    fn socket(&mut self, proto: Proto) -> Result<OwnedFd> {
        let (pool, ty, batch) = match proto {
            Proto::Tcp => (&mut self.tcp_pool, libc::SOCK_STREAM, TCP_BATCH),
            Proto::Udp => (&mut self.udp_pool, libc::SOCK_DGRAM, UDP_BATCH),
        };
        if pool.is_empty() {
            let ns = self.ns.as_ref().ok_or_else(|| NetError::Helper { helper: "forwarder".into(), detail: "the container is not running yet".into() })?;
            *pool = ns.make(libc::AF_INET, ty, batch)?;
        }
        pool.pop().ok_or_else(|| NetError::Helper { helper: "forwarder".into(), detail: "no socket".into() })
    }

    fn accept(&mut self, li: usize) {
        for _ in 0..64 {
            // SAFETY: accept4 without the peer's address.
            let Some(lfd) = self.listeners[li].fd.as_ref().map(|f| f.as_raw_fd()) else { return };
            let c = match owned(unsafe { libc::accept4(lfd, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) }) {
                Ok(c) => c,
                Err(Errno::EINTR) | Err(Errno::ECONNABORTED) => continue,
                Err(_) => return,
            };
            let _ = self.open_conn(li, c);
        }
    }

    /// Connects a new client to the container; a failure just closes the client.
    fn open_conn(&mut self, li: usize, client: OwnedFd) -> Result<()> {
        let (server, target) = match self.listeners[li].target {
            Target::Container => (self.socket(Proto::Tcp)?, SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.listeners[li].bound.container_port))),
            Target::Host(a) => (sock::new_socket(family_of(&a), SockType::Stream, true).op("socket")?, a),
        };
        // Each hop is a loopback connection: let small writes (prompts, requests) go at once.
        let _ = setsockopt(&client, sockopt::TcpNoDelay, &true);
        let _ = setsockopt(&server, sockopt::TcpNoDelay, &true);
        let connecting = match sock::connect(&server, &target) {
            Ok(()) => false,
            Err(Errno::EINPROGRESS) => true,
            Err(e) => return Err(e).op("connect in the container"),
        };
        let (up, down) = (Half::new(pipe().op("pipe")?), Half::new(pipe().op("pipe")?));
        let (cfd, sfd) = (client.as_raw_fd(), server.as_raw_fd());
        let conn = Conn { client, server, connecting, up, down };
        let idx = self.conns.insert(conn);
        let ev = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
        let ok = epoll_ctl(self.ep.as_raw_fd(), libc::EPOLL_CTL_ADD, cfd, ev, token(K_CLIENT, idx))
            .and_then(|_| epoll_ctl(self.ep.as_raw_fd(), libc::EPOLL_CTL_ADD, sfd, ev, token(K_SERVER, idx)));
        if ok.is_err() {
            self.close_conn(idx);
            return ok.op("epoll_ctl");
        }
        self.service(idx);
        Ok(())
    }

    fn service(&mut self, idx: usize) {
        let ep = self.ep.as_raw_fd();
        let Some(c) = self.conns.get_mut(idx) else { return };
        if c.connecting {
            if sock_error(&c.server) != 0 {
                // Nothing listens in the container (or it went away): the client sees a close.
                self.close_conn(idx);
                return;
            }
            if !sock::connected(&c.server) {
                return;
            }
            c.connecting = false;
        }
        let (cfd, sfd) = (c.client.as_raw_fd(), c.server.as_raw_fd());
        let up = pump(&mut c.up, cfd, sfd);
        let down = pump(&mut c.down, sfd, cfd);
        let finished = c.up.shut && c.down.shut;
        for h in [&mut c.up, &mut c.down] {
            if h.bulk && !h.big && self.big_pipes < MAX_BIG_PIPES {
                // SAFETY: fcntl on a pipe we own; failing (over the user's budget) only means
                // more splices.
                if unsafe { libc::fcntl(h.w.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BIG) } > 0 {
                    h.big = true;
                    self.big_pipes += 1;
                }
            }
        }
        match (up, down) {
            (Ok(u), Ok(d)) if !finished => {
                // Not done but out of turns: re-arming a ready descriptor queues a new edge.
                let ev = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
                if matches!(u, Pumped::More) {
                    let _ = epoll_ctl(ep, libc::EPOLL_CTL_MOD, cfd, ev, token(K_CLIENT, idx));
                }
                if matches!(d, Pumped::More) {
                    let _ = epoll_ctl(ep, libc::EPOLL_CTL_MOD, sfd, ev, token(K_SERVER, idx));
                }
            }
            // Both directions closed, or one failed (a reset): closing ours closes the other.
            _ => self.close_conn(idx),
        }
    }

    fn close_conn(&mut self, idx: usize) {
        if let Some(c) = self.conns.remove(idx) {
            self.big_pipes -= [c.up.big, c.down.big].iter().filter(|b| **b).count();
        }
    }

    fn udp_from_host(&mut self, li: usize) {
        if self.buf.is_empty() {
            self.buf = vec![0u8; 65536];
        }
        for _ in 0..64 {
            let Some(lfd) = self.listeners[li].fd.as_ref().map(|f| f.as_raw_fd()) else { return };
            let (n, from) = match nix::sys::socket::recvfrom::<SockaddrStorage>(lfd, &mut self.buf) {
                Ok(r) => r,
                Err(Errno::EINTR) => continue,
                Err(_) => return,
            };
            let Some(from) = from.as_ref().and_then(socket_addr) else { continue };
            let fi = match self.listeners[li].flows.get(&from) {
                Some(&fi) => fi,
                None => match self.open_flow(li, from) {
                    Ok(fi) => fi,
                    Err(_) => continue,
                },
            };
            if let Some(f) = self.flows.get_mut(fi) {
                f.last = Instant::now();
                // A full queue drops the datagram, as UDP may.
                let _ = nix::sys::socket::send(f.sock.as_raw_fd(), &self.buf[..n], MsgFlags::MSG_DONTWAIT);
            }
        }
    }

    fn open_flow(&mut self, li: usize, client: SocketAddr) -> Result<usize> {
        self.expire_flows();
        let sock = self.socket(Proto::Udp)?;
        let target = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.listeners[li].bound.container_port));
        sock::connect(&sock, &target).op("connect in the container")?;
        let fd = sock.as_raw_fd();
        let fi = self.flows.insert(Flow { sock, listener: li, client, last: Instant::now() });
        if let Err(e) = epoll_ctl(self.ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN as u32, token(K_FLOW, fi)) {
            self.flows.remove(fi);
            return Err(e).op("epoll_ctl");
        }
        self.listeners[li].flows.insert(client, fi);
        Ok(fi)
    }

    fn drop_flow(&mut self, fi: usize) {
        if let Some(f) = self.flows.remove(fi) {
            self.listeners[f.listener].flows.remove(&f.client);
        }
    }

    fn expire_flows(&mut self) {
        let now = Instant::now();
        let idle: Vec<usize> =
            self.flows.items.iter().enumerate().filter_map(|(i, f)| f.as_ref().filter(|f| now.duration_since(f.last) > FLOW_IDLE).map(|_| i)).collect();
        for i in idle {
            self.drop_flow(i);
        }
        if self.flows.len() >= MAX_FLOWS {
            if let Some((i, _)) = self.flows.items.iter().enumerate().filter_map(|(i, f)| f.as_ref().map(|f| (i, f.last))).min_by_key(|(_, t)| *t) {
                self.drop_flow(i);
            }
        }
    }

    fn udp_from_container(&mut self, fi: usize) {
        if self.buf.is_empty() {
            self.buf = vec![0u8; 65536];
        }
        let Some(f) = self.flows.items.get(fi).and_then(Option::as_ref) else { return };
        let (fd, li, client) = (f.sock.as_raw_fd(), f.listener, f.client);
        let Some(host) = self.listeners[li].fd.as_ref().map(|f| f.as_raw_fd()) else { return };
        // A reply to an IPv4 client on the dual-stack socket keeps the mapped address it came from.
        let to = sockaddr(&client);
        for _ in 0..64 {
            let n = match nix::sys::socket::recv(fd, &mut self.buf, MsgFlags::MSG_DONTWAIT) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                // ICMP port unreachable from the container: nothing listens yet; keep the flow.
                Err(_) => return,
            };
            let _ = nix::sys::socket::sendto(host, &self.buf[..n], &to, MsgFlags::MSG_DONTWAIT);
        }
        if let Some(f) = self.flows.get_mut(fi) {
            f.last = Instant::now();
        }
    }
}

// ---- the bypass: the container's server on a host socket (bypass.rs) --------------------------

impl Forwarder {
    fn seccomp_accept(&mut self) {
        let Some(l) = &self.seccomp else { return };
        while let Ok((c, _)) = l.accept() {
            if c.set_nonblocking(true).is_err() {
                continue;
            }
            let fd = c.as_raw_fd();
            let i = self.sconns.insert(c);
            if epoll_ctl(self.ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN as u32, token(K_SCONN, i)).is_err() {
                self.sconns.remove(i);
            }
        }
    }

    /// The runtime's one message on a connection: the container state and the notification fd.
    fn seccomp_recv(&mut self, i: usize) {
        let Some(c) = self.sconns.get_mut(i) else { return };
        let mut buf = [0u8; 8192];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let got = nix::sys::socket::recvmsg::<()>(c.as_raw_fd(), &mut iov, Some(&mut space), nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC);
        let mut fds = Vec::new();
        let done = match &got {
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => false,
            Ok(m) => {
                for cm in m.cmsgs().into_iter().flatten() {
                    if let nix::sys::socket::ControlMessageOwned::ScmRights(r) = cm {
                        fds.extend(r);
                    }
                }
                true
            }
            Err(_) => true,
        };
        for fd in fds {
            let n = owned(fd).ok();
            if let Some(n) = n {
                let raw = n.as_raw_fd();
                let k = self.notifies.insert(n);
                if epoll_ctl(self.ep.as_raw_fd(), libc::EPOLL_CTL_ADD, raw, libc::EPOLLIN as u32, token(K_NOTIFY, k)).is_err() {
                    self.notifies.remove(k);
                }
            }
        }
        if done {
            // One message per connection; closing it also takes it out of the epoll set.
            self.sconns.remove(i);
        }
    }

    fn notification(&mut self, k: usize, events: u32) {
        let Some(fd) = self.notifies.get_mut(k).map(|f| f.as_raw_fd()) else { return };
        if events & libc::EPOLLIN as u32 == 0 {
            // HUP: every process under that filter has exited.
            self.notifies.remove(k);
            return;
        }
        let mut handed = std::mem::take(&mut self.handed);
        let lookup = |port: u16| self.published_tcp(port);
        let o = super::bypass::handle(fd, &mut handed, lookup);
        self.handed = handed;
        if let super::bypass::Outcome::Replaced { container_port, local, v6only, .. } = o {
            self.taken_over(container_port, local, v6only);
        }
    }

    /// The one published TCP port that leads to `container_port` (none when several do: the
    /// server can only be on one of them).
    fn published_tcp(&self, container_port: u16) -> Option<super::bypass::Published> {
        let mut it = self.listeners.iter().filter(|l| l.kind == Kind::Published && l.bound.protocol == Proto::Tcp && l.bound.container_port == container_port);
        let l = it.next()?;
        if it.next().is_some() {
            return None;
        }
        let wildcard = l.bound.host_ip == "0.0.0.0" && l.bound.dual || l.bound.host_ip == "::";
        let host_ip = if wildcard { None } else { Some(parse_ip(&l.bound.host_ip)?) };
        Some(super::bypass::Published { container_port, host_ip, host_port: l.bound.host_port })
    }

    /// The container's server now listens on `local` in the host's namespace (socket A). Our
    /// published listener for that port closes: left open, it would share A's connections
    /// with A (SO_REUSEPORT), and relaying them to A could reach itself again. Where A takes
    /// only one family of a dual-stack wildcard, a listener of the other family alone forwards
    /// that family's clients to A; and a listener inside the container forwards the
    /// container's own clients, which can no longer find the server in their namespace.
    fn taken_over(&mut self, container_port: u16, local: SocketAddr, v6only: bool) {
        let Some(li) =
            self.listeners.iter().position(|l| l.kind == Kind::Published && l.bound.protocol == Proto::Tcp && l.bound.container_port == container_port)
        else {
            return;
        };
        let mapped = match local.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped(),
            IpAddr::V4(_) => None,
        };
        let takes_v4 = local.is_ipv4() || (!v6only && (mapped.is_some() || local.ip().is_unspecified()));
        let takes_v6 = local.is_ipv6() && mapped.is_none();
        let dest_ip = match (local.ip(), mapped) {
            (_, Some(v4)) => IpAddr::V4(v4),
            (ip, _) if !ip.is_unspecified() => ip,
            _ if takes_v4 => IpAddr::V4(Ipv4Addr::LOCALHOST),
            _ => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        let dest = SocketAddr::new(dest_ip, local.port());
        let first = self.listeners[li].fd.take().is_some();
        for l in self.listeners.iter_mut().filter(|l| l.kind == Kind::OtherFamily && l.bound.container_port == container_port) {
            if (l.bound.host_ip.contains(':') && takes_v6) || (!l.bound.host_ip.contains(':') && takes_v4) {
                l.fd = None;
            }
        }
        if !first {
            return;
        }
        let bound = self.listeners[li].bound.clone();
        if bound.dual && !(takes_v4 && takes_v6) {
            let ip = if takes_v4 { IpAddr::V6(Ipv6Addr::UNSPECIFIED) } else { IpAddr::V4(Ipv4Addr::UNSPECIFIED) };
            if let Ok(fd) = bind_host(ip, bound.host_port, Proto::Tcp, false, true) {
                self.add_listener(fd, BoundPort { host_ip: ip.to_string(), dual: false, ..bound.clone() }, dest, Kind::OtherFamily);
            }
        }
        let Some(ns) = self.ns.as_ref() else { return };
        let inside = [libc::AF_INET6, libc::AF_INET].into_iter().find_map(|family| {
            let fd = ns.make(family, libc::SOCK_STREAM, 1).ok()?.pop()?;
            let _ = setsockopt(&fd, sockopt::ReuseAddr, &true);
            let any = if family == libc::AF_INET6 {
                let _ = setsockopt(&fd, sockopt::Ipv6V6Only, &false);
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            } else {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            };
            let ok = sock::bind(&fd, &SocketAddr::new(any, container_port)).is_ok() && nix::sys::socket::listen(&fd, Backlog::new(1024).ok()?).is_ok();
            ok.then_some(fd)
        });
        if let Some(fd) = inside {
            self.add_listener(fd, bound, dest, Kind::Inside);
        }
    }

    fn add_listener(&mut self, fd: OwnedFd, bound: BoundPort, dest: SocketAddr, kind: Kind) {
        let idx = self.listeners.len();
        if epoll_ctl(self.ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd.as_raw_fd(), libc::EPOLLIN as u32, token(K_LISTEN, idx)).is_ok() {
            self.listeners.push(Listener { fd: Some(fd), bound, target: Target::Host(dest), kind, flows: HashMap::new() });
        }
    }
}

/// Moves what is available in one direction until the kernel has nothing more to give or take.
fn pump(h: &mut Half, src: RawFd, dst: RawFd) -> std::result::Result<Pumped, Errno> {
    for _ in 0..PUMP_ROUNDS {
        let mut moved = false;
        if !h.eof {
            match splice(src, h.w.as_raw_fd(), CHUNK) {
                Ok(0) => {
                    h.eof = true;
                    moved = true;
                }
                Ok(n) => {
                    h.pending += n;
                    h.bulk |= h.pending >= PIPE_DEFAULT;
                    moved = true;
                }
                // EAGAIN: nothing to read, or the pipe is full.
                Err(Errno::EAGAIN) => {}
                Err(Errno::EINTR) => moved = true,
                Err(e) => return Err(e),
            }
        }
        if h.pending > 0 {
            match splice(h.r.as_raw_fd(), dst, h.pending) {
                Ok(n) => {
                    h.pending -= n;
                    moved |= n > 0;
                }
                Err(Errno::EAGAIN) => {}
                Err(Errno::EINTR) => moved = true,
                Err(e) => return Err(e),
            }
        }
        if h.eof && h.pending == 0 && !h.shut {
            // Half-close, as the client did: the other side may still answer.
            // SAFETY: shutdown on a socket we own.
            unsafe { libc::shutdown(dst, libc::SHUT_WR) };
            h.shut = true;
        }
        if !moved {
            return Ok(Pumped::Idle);
        }
    }
    Ok(Pumped::More)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_port_is_named() {
        let (_fd, b) = bind_spec(&PortSpec { host_ip: "127.0.0.1".into(), host_port: 0, container_port: 80, protocol: Proto::Tcp }, false).unwrap();
        assert_ne!(b.host_port, 0);
        let e = bind_spec(&PortSpec { host_ip: "127.0.0.1".into(), host_port: b.host_port, container_port: 80, protocol: Proto::Tcp }, false).err().unwrap();
        assert_eq!(crate::error::Coded::code(&e), "EPORT_IN_USE");
        assert!(e.to_string().contains("already in use"), "{e}");
    }
}
