//! The user-defined networks' DNS resolver, served by the network owner (bridge/mod.rs): on
//! each network's gateway address, port 53 (UDP, and TCP for answers that do not fit), inside
//! the owner's network namespace. It answers, for a client on network X, the names of X's
//! endpoints (container name, id, the id's first 12, aliases): A, AAAA and PTR (in-addr.arpa and
//! ip6.arpa of X's addresses); a name it does not know it forwards to the upstream resolvers
//! (the client's own, from its container's `--dns`, else the defaults) and relays the answer; on
//! an internal network it forwards nothing and answers NXDOMAIN for names outside, as
//! aardvark-dns does for a container on internal networks only. A client of another network
//! never gets X's names: each network's sockets answer from that network's records alone.
//!
//! Why our own resolver and not aardvark-dns: it lives in the owner's poll loop (no process, no
//! config files and SIGHUP to keep in step; some 70 KiB of heap, a 64 KiB receive buffer most
//! of it, instead of aardvark's resident tokio runtime), and the owner, which stays in the host's network namespace, forwards to the
//! host's resolvers as they are, a loopback one (systemd-resolved's 127.0.0.53) included.
//!
//! Single-threaded and non-blocking: the owner polls [`Resolver::poll_fds`] (for reading) and
//! calls [`Resolver::dispatch`] for a readable one, and [`Resolver::expire`] when
//! [`Resolver::next_deadline`] passes (forwarded queries that got no answer in time, idle TCP
//! clients, output that did not fit a socket's buffer and is retried on a short timer, since
//! the owner polls for input only).
//!
//! Forwarding: a query gets a fresh random id and goes to its upstreams one at a time, each
//! given [`ATTEMPT_TIMEOUT`], from a socket of its own connected to the upstream (a random source
//! port besides the random id, as RFC 5452 asks of a resolver, and a closed port reported at once
//! as ECONNREFUSED rather than waited for); an upstream that times out, refuses or answers
//! SERVFAIL, REFUSED or NOTIMP makes way for the next (as glibc's stub does); with none left the
//! client gets SERVFAIL. An answer is taken only from the address asked, with the id and the
//! question asked, and relayed unchanged but for the id. A client that asked over TCP and gets
//! a truncated UDP answer is asked for again over TCP from the same upstream.

pub mod msg;

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use nix::sys::socket::SockType;

use super::{sock, Result};
use msg::{Answer, Parsed, Query};

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

/// Our answers' TTL: aardvark-dns's (containers come and go with new addresses; a client
/// should not keep an old one long).
pub const TTL: u32 = 60;
/// How long one upstream has to answer before the next is asked.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Forwarded queries awaiting an answer; beyond it the oldest is dropped (its client asks again).
/// Each holds a socket: with the TCP clients, well under the usual 1024 descriptors.
pub const MAX_PENDING: usize = 256;
/// TCP clients at a time (all networks); beyond it the oldest is closed.
pub const MAX_CONNS: usize = 64;
/// A TCP client silent this long is closed (RFC 7766 6.2.3 suggests seconds).
pub const TCP_IDLE: Duration = Duration::from_secs(10);
/// Output that did not fit a TCP socket's buffer waiting this long at most per retry.
const RETRY_TICK: Duration = Duration::from_millis(10);
/// A TCP client's answers not yet taken, beyond which it is closed (it does not read).
const MAX_OUTBUF: usize = 256 * 1024;
/// Packets read per readable socket per dispatch, so one busy socket cannot starve the others.
const BURST: usize = 64;

/// An upstream as `--dns` gives it: "IP", "IP:PORT", "[IPv6]:PORT" or "[IPv6]" (port 53), an
/// IPv6 scope by number or interface name ("fe80::1%eth0"). None when malformed.
pub fn parse_upstream(s: &str) -> Option<SocketAddr> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('[') {
        let (host, port) = rest.split_once(']')?;
        let port = match port {
            "" => 53,
            p => p.strip_prefix(':')?.parse().ok()?,
        };
        let (ip, scope) = ip6_scoped(host)?;
        return Some(with_scope(SocketAddr::new(IpAddr::V6(ip), port), scope));
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 53));
    }
    if s.contains('%') && !s.contains('.') {
        let (ip, scope) = ip6_scoped(s)?;
        return Some(with_scope(SocketAddr::new(IpAddr::V6(ip), 53), scope));
    }
    // "IP:PORT" is IPv4 only: a bare IPv6 address's last group would read as a port.
    let (host, port) = s.rsplit_once(':')?;
    Some(SocketAddr::new(IpAddr::V4(host.parse().ok()?), port.parse().ok()?))
}

fn ip6_scoped(s: &str) -> Option<(Ipv6Addr, u32)> {
    let (ip, scope) = match s.split_once('%') {
        None => (s, 0),
        Some((ip, scope)) => (ip, scope_id(scope)?),
    };
    Some((ip.parse().ok()?, scope))
}

fn scope_id(scope: &str) -> Option<u32> {
    if let Ok(n) = scope.parse() {
        return Some(n);
    }
    nix::net::if_::if_nametoindex(scope).ok().filter(|&i| i != 0)
}

fn with_scope(mut a: SocketAddr, scope: u32) -> SocketAddr {
    if let SocketAddr::V6(v6) = &mut a {
        v6.set_scope_id(scope);
    }
    a
}

/// The nameservers of a resolv.conf text, in order, port 53; malformed lines skipped.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = words.next() else { continue };
        // A nameserver is an address, never "IP:PORT" (glibc reads it with inet_pton).
        let parsed = match addr.split_once('%') {
            None => addr.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)),
            Some(_) => ip6_scoped(addr).map(|(ip, scope)| with_scope(SocketAddr::new(IpAddr::V6(ip), 53), scope)),
        };
        if let Some(a) = parsed {
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    out
}

fn host_upstreams_of(resolv_conf: Option<&str>) -> Vec<SocketAddr> {
    let found = resolv_conf.map(parse_resolv_conf).unwrap_or_default();
    if found.is_empty() {
        return vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53)];
    }
    found
}

/// One network's names, by lowercase name and by address.
#[derive(Default)]
struct Names {
    by_name: HashMap<String, Vec<IpAddr>>,
    by_addr: HashMap<IpAddr, Vec<String>>,
    /// A client's own upstreams, by its address.
    upstreams: HashMap<IpAddr, Vec<SocketAddr>>,
}

impl Names {
    fn new(records: Vec<Record>) -> Names {
        let mut n = Names::default();
        for r in records {
            for name in &r.names {
                let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
                if name.is_empty() {
                    continue;
                }
                let addrs = n.by_name.entry(name.clone()).or_default();
                for a in &r.addrs {
                    if !addrs.contains(a) {
                        addrs.push(*a);
                    }
                    let names = n.by_addr.entry(*a).or_default();
                    if !names.contains(&name) {
                        names.push(name.clone());
                    }
                }
            }
            if !r.upstreams.is_empty() {
                for a in &r.addrs {
                    n.upstreams.insert(*a, r.upstreams.clone());
                }
            }
        }
        n
    }
}

struct Network {
    id: String,
    /// Names the network for pending queries and TCP clients, which outlive a remove_network.
    key: u64,
    udp: UdpSocket,
    tcp: Option<TcpListener>,
    forward: bool,
    names: Names,
}

/// Where an answer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Udp { net: u64, addr: SocketAddr, limit: usize },
    Tcp { conn: u64 },
}

/// A TCP client of one network's listener.
struct Conn {
    key: u64,
    net: u64,
    stream: TcpStream,
    peer: IpAddr,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    idle_until: Instant,
}

/// A query being asked again over TCP.
struct UpTcp {
    stream: TcpStream,
    out: Vec<u8>,
    written: usize,
    inbuf: Vec<u8>,
}

struct Pending {
    seq: u64,
    query: Query,
    /// The query as sent upstream (our id).
    packet: Vec<u8>,
    client: Client,
    upstreams: Vec<SocketAddr>,
    /// The upstream asked now.
    next: usize,
    /// Connected to it.
    udp: Option<UdpSocket>,
    deadline: Instant,
    tcp: Option<UpTcp>,
}

pub struct Resolver {
    defaults: Vec<SocketAddr>,
    search_domain: Option<String>,
    networks: Vec<Network>,
    /// Records set for networks not added yet.
    early: HashMap<String, Names>,
    conns: Vec<Conn>,
    pending: HashMap<u16, Pending>,
    next_key: u64,
    buf: Vec<u8>,
}

impl Resolver {
    /// `defaults`: the upstreams for clients without their own. Sockets for forwarding are made
    /// in the caller's network namespace (the host's, for the owner, which never leaves it: the
    /// caller must not call the other methods from another network namespace either, since a
    /// forwarded query's socket is made when it is forwarded).
    pub fn new(defaults: Vec<SocketAddr>) -> Result<Resolver> {
        Ok(Resolver {
            defaults,
            search_domain: None,
            networks: Vec::new(),
            early: HashMap::new(),
            conns: Vec::new(),
            pending: HashMap::new(),
            next_key: 1,
            buf: vec![0; 65536],
        })
    }

    /// The host's resolvers from /etc/resolv.conf (port 53), for `new`; none there (or no
    /// file): 127.0.0.1, as glibc's stub then asks.
    pub fn host_upstreams() -> Vec<SocketAddr> {
        host_upstreams_of(std::fs::read_to_string("/etc/resolv.conf").ok().as_deref())
    }

    /// A domain under which the networks' names also answer ("web.DOMAIN" as "web"); an
    /// unknown name under it is NXDOMAIN, never forwarded. None (the default): no such domain.
    pub fn set_search_domain(&mut self, domain: Option<&str>) {
        self.search_domain = domain.map(|d| d.trim_matches('.').to_ascii_lowercase()).filter(|d| !d.is_empty());
    }

    /// Serves network `id` on `udp` (and `tcp`, a listening socket), both bound to its
    /// gateway's port 53 in the owner's namespace by a child that entered it. `forward`: false
    /// for an internal network.
    /// Records given before (by `set_records`, or for the network this replaces) are kept.
    pub fn add_network(&mut self, id: &str, udp: UdpSocket, tcp: Option<TcpListener>, forward: bool) {
        let names = match self.networks.iter().position(|n| n.id == id) {
            Some(i) => {
                let names = std::mem::take(&mut self.networks[i].names);
                self.remove_network(id);
                names
            }
            None => self.early.remove(id).unwrap_or_default(),
        };
        let _ = udp.set_nonblocking(true);
        let tcp = tcp.filter(|t| t.set_nonblocking(true).is_ok());
        let key = self.key();
        self.networks.push(Network { id: id.to_string(), key, udp, tcp, forward, names });
    }

    pub fn remove_network(&mut self, id: &str) {
        self.early.remove(id);
        let Some(i) = self.networks.iter().position(|n| n.id == id) else { return };
        let key = self.networks.remove(i).key;
        self.conns.retain(|c| c.net != key);
        // Answers for it would have no socket to go out on.
        self.pending.retain(|_, p| !matches!(p.client, Client::Udp { net, .. } if net == key));
    }

    /// Replaces network `id`'s records (the owner calls it on every attach, connect, disconnect
    /// and detach).
    /// Records of a network not served yet wait for its `add_network`, so the order of the two
    /// calls does not matter.
    pub fn set_records(&mut self, id: &str, records: Vec<Record>) {
        match self.networks.iter_mut().find(|n| n.id == id) {
            Some(n) => n.names = Names::new(records),
            None => {
                self.early.insert(id.to_string(), Names::new(records));
            }
        }
    }

    pub fn poll_fds(&self) -> Vec<BorrowedFd<'_>> {
        let mut v = Vec::with_capacity(2 + 2 * self.networks.len() + self.conns.len());
        for n in &self.networks {
            v.push(n.udp.as_fd());
            v.extend(n.tcp.iter().map(|t| t.as_fd()));
        }
        v.extend(self.conns.iter().map(|c| c.stream.as_fd()));
        for p in self.pending.values() {
            v.extend(p.udp.iter().map(|u| u.as_fd()));
            if let Some(t) = &p.tcp {
                if t.written == t.out.len() {
                    v.push(t.stream.as_fd());
                }
            }
        }
        v
    }

    /// For a descriptor of `poll_fds` that poll found with any event (POLLIN, but also POLLERR
    /// or POLLHUP: a failed upstream connection is noticed by reading it).
    pub fn dispatch(&mut self, fd: RawFd) {
        if let Some(i) = self.networks.iter().position(|n| n.udp.as_raw_fd() == fd) {
            return self.read_udp(i);
        }
        if let Some(i) = self.networks.iter().position(|n| n.tcp.as_ref().is_some_and(|t| t.as_raw_fd() == fd)) {
            return self.accept(i);
        }
        if let Some(i) = self.conns.iter().position(|c| c.stream.as_raw_fd() == fd) {
            return self.read_conn(i);
        }
        let up = self.pending.iter().find(|(_, p)| p.udp.as_ref().is_some_and(|u| u.as_raw_fd() == fd));
        if let Some((&id, _)) = up {
            return self.read_upstream(id);
        }
        let up = self.pending.iter().find(|(_, p)| p.tcp.as_ref().is_some_and(|t| t.stream.as_raw_fd() == fd));
        if let Some((&id, _)) = up {
            self.read_upstream_tcp(id);
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let mut d = self.pending.values().map(|p| p.deadline).min();
        let mut at = |t: Instant| d = Some(d.map_or(t, |d| d.min(t)));
        for c in &self.conns {
            at(c.idle_until);
            if !c.outbuf.is_empty() {
                at(Instant::now() + RETRY_TICK);
            }
        }
        if self.pending.values().any(|p| p.tcp.as_ref().is_some_and(|t| t.written < t.out.len())) {
            at(Instant::now() + RETRY_TICK);
        }
        d
    }

    pub fn expire(&mut self, now: Instant) {
        // Output waiting for room (TCP clients; upstream TCP connects in progress).
        for i in (0..self.conns.len()).rev() {
            if !self.conns[i].outbuf.is_empty() && !flush(&mut self.conns[i]) {
                self.conns.remove(i);
            }
        }
        let ids: Vec<u16> = self.pending.iter().filter(|(_, p)| p.tcp.as_ref().is_some_and(|t| t.written < t.out.len())).map(|(&id, _)| id).collect();
        for id in ids {
            self.write_upstream_tcp(id);
        }
        self.conns.retain(|c| c.idle_until > now);
        let late: Vec<u16> = self.pending.iter().filter(|(_, p)| p.deadline <= now).map(|(&id, _)| id).collect();
        for id in late {
            self.next_upstream(id, now);
        }
    }

    fn key(&mut self) -> u64 {
        self.next_key += 1;
        self.next_key
    }

    fn read_udp(&mut self, i: usize) {
        for _ in 0..BURST {
            let (len, from) = match self.networks[i].udp.recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            let packet = self.buf[..len].to_vec();
            // The limit until the query says more (its EDNS size, read by `query`).
            let client = Client::Udp { net: self.networks[i].key, addr: from, limit: msg::CLASSIC_UDP_LIMIT };
            // An IPv4 client of a dual-stack socket shows as ::ffff:a.b.c.d; its records say a.b.c.d.
            self.query(i, &packet, from.ip().to_canonical(), client);
        }
    }

    fn accept(&mut self, i: usize) {
        for _ in 0..BURST {
            let Some(l) = &self.networks[i].tcp else { return };
            let (stream, peer) = match l.accept() {
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            if self.conns.len() >= MAX_CONNS {
                self.conns.remove(0);
            }
            let (key, net) = (self.key(), self.networks[i].key);
            let idle_until = Instant::now() + TCP_IDLE;
            self.conns.push(Conn { key, net, stream, peer: peer.ip().to_canonical(), inbuf: Vec::new(), outbuf: Vec::new(), idle_until });
        }
    }

    fn read_conn(&mut self, i: usize) {
        let mut closed = false;
        for _ in 0..BURST {
            match self.conns[i].stream.read(&mut self.buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => {
                    let c = &mut self.conns[i];
                    c.inbuf.extend_from_slice(&self.buf[..n]);
                    c.idle_until = Instant::now() + TCP_IDLE;
                    if n < self.buf.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        // Every complete message in order (a client may pipeline several, RFC 7766 6.2.1.1).
        let (key, net, peer) = (self.conns[i].key, self.conns[i].net, self.conns[i].peer);
        let mut messages = Vec::new();
        {
            let inbuf = &mut self.conns[i].inbuf;
            let mut p = 0;
            while inbuf.len() >= p + 2 {
                let len = u16::from_be_bytes([inbuf[p], inbuf[p + 1]]) as usize;
                if inbuf.len() < p + 2 + len {
                    break;
                }
                messages.push(inbuf[p + 2..p + 2 + len].to_vec());
                p += 2 + len;
            }
            inbuf.drain(..p);
        }
        if let Some(n) = self.networks.iter().position(|n| n.key == net) {
            for m in messages {
                self.query(n, &m, peer, Client::Tcp { conn: key });
            }
        }
        if closed {
            // Answers still due to it are dropped when they come.
            self.conns.retain(|c| c.key != key);
        }
    }

    /// Answers or forwards one query that came to network `n`.
    fn query(&mut self, n: usize, packet: &[u8], source: IpAddr, client: Client) {
        let q = match msg::parse_query(packet) {
            Parsed::Query(q) => q,
            Parsed::Error { id, flags, rcode } => return self.reply(client, msg::error_header(id, flags, rcode)),
            Parsed::Ignore => return,
        };
        let client = match client {
            Client::Udp { net, addr, .. } => Client::Udp { net, addr, limit: q.udp_limit() },
            c => c,
        };
        let net = &self.networks[n];
        let ours = q.qclass == msg::CLASS_IN || q.qclass == msg::CLASS_ANY;
        if let (true, Some(name)) = (ours, &q.name) {
            // The client's own network first, then the other networks its container is on (as
            // Docker's resolver answers a container for every network it joined).
            let found = self
                .lookup(&net.names, name, q.qtype)
                .or_else(|| self.client_networks(n, source).into_iter().find_map(|m| self.lookup(&self.networks[m].names, name, q.qtype)));
            if let Some(answers) = found {
                let limit = client_limit(client);
                return self.reply(client, msg::response(&q, msg::NOERROR, true, &answers, limit));
            }
            let under_domain = self.search_domain.as_ref().is_some_and(|d| name == d || name.ends_with(&format!(".{d}")));
            if under_domain || !net.forward {
                let limit = client_limit(client);
                return self.reply(client, msg::response(&q, msg::NXDOMAIN, under_domain, &[], limit));
            }
        } else if !net.forward {
            let limit = client_limit(client);
            return self.reply(client, msg::response(&q, msg::NXDOMAIN, false, &[], limit));
        }
        let upstreams = match net.names.upstreams.get(&source) {
            Some(u) => u.clone(),
            None => self.defaults.clone(),
        };
        self.forward(q, packet, client, upstreams);
    }

    /// The other networks that the container at `source` on network `n` is on: those whose
    /// records have its 64-hex id (every endpoint's names carry its container's id).
    fn client_networks(&self, n: usize, source: IpAddr) -> Vec<usize> {
        let Some(names) = self.networks[n].names.by_addr.get(&source) else { return Vec::new() };
        let Some(id) = names.iter().find(|x| x.len() == 64 && x.bytes().all(|b| b.is_ascii_hexdigit())) else { return Vec::new() };
        (0..self.networks.len()).filter(|&m| m != n && self.networks[m].names.by_name.contains_key(id)).collect()
    }

    /// Our answers for `name` of `qtype`: Some (maybe empty: NODATA) when the name is the
    /// network's, None when it is not.
    fn lookup(&self, names: &Names, name: &str, qtype: u16) -> Option<Vec<Answer>> {
        if let (msg::TYPE_PTR, Some(addr)) = (qtype, msg::reverse_addr(name)) {
            let targets = names.by_addr.get(&addr)?;
            return Some(targets.iter().filter_map(|t| Answer::ptr(t, TTL)).collect());
        }
        let addrs = names.by_name.get(name).or_else(|| {
            let d = self.search_domain.as_ref()?;
            names.by_name.get(name.strip_suffix(d.as_str())?.strip_suffix('.')?)
        })?;
        let want = |a: &&IpAddr| match qtype {
            msg::TYPE_A => a.is_ipv4(),
            msg::TYPE_AAAA => a.is_ipv6(),
            msg::TYPE_ANY => true,
            _ => false,
        };
        Some(addrs.iter().filter(want).map(|a| Answer::addr(*a, TTL)).collect())
    }

    fn forward(&mut self, query: Query, packet: &[u8], client: Client, upstreams: Vec<SocketAddr>) {
        if self.pending.len() >= MAX_PENDING {
            if let Some((&oldest, _)) = self.pending.iter().min_by_key(|(_, p)| p.seq) {
                self.pending.remove(&oldest);
            }
        }
        let id = loop {
            let id = random_u16();
            if !self.pending.contains_key(&id) {
                break id;
            }
        };
        let mut packet = packet.to_vec();
        msg::set_id(&mut packet, id);
        let seq = self.key();
        let now = Instant::now();
        self.pending.insert(id, Pending { seq, query, packet, client, upstreams, next: 0, udp: None, deadline: now, tcp: None });
        self.ask(id, now);
    }

    /// Sends pending query `id` to its upstream `next`, or the following ones if sending fails;
    /// SERVFAIL to the client when none is left.
    fn ask(&mut self, id: u16, now: Instant) {
        let Some(p) = self.pending.get_mut(&id) else { return };
        while let Some(&up) = p.upstreams.get(p.next) {
            // A host without IPv6 fails here for an IPv6 upstream, which then makes way.
            if let Ok(s) = upstream_socket(up) {
                if s.send(&p.packet).is_ok() {
                    p.udp = Some(s);
                    p.deadline = now + ATTEMPT_TIMEOUT;
                    return;
                }
            }
            p.next += 1;
        }
        self.fail(id);
    }

    /// Gives up on upstream `next` of query `id` and asks the next one.
    fn next_upstream(&mut self, id: u16, now: Instant) {
        if let Some(p) = self.pending.get_mut(&id) {
            p.next += 1;
            p.udp = None;
            p.tcp = None;
            self.ask(id, now);
        }
    }

    fn fail(&mut self, id: u16) {
        if let Some(p) = self.pending.remove(&id) {
            let answer = msg::response(&p.query, msg::SERVFAIL, false, &[], client_limit(p.client));
            self.reply(p.client, answer);
        }
    }

    fn read_upstream(&mut self, id: u16) {
        for _ in 0..BURST {
            let Some(sock) = self.pending.get(&id).and_then(|p| p.udp.as_ref()) else { return };
            let (len, from) = match sock.recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                // ECONNREFUSED (an ICMP port unreachable): nobody serves there.
                Err(_) => return self.next_upstream(id, Instant::now()),
            };
            let answer = self.buf[..len].to_vec();
            self.upstream_answer(answer, Some(from));
        }
    }

    /// An upstream's answer (`from`: None over TCP, whose peer is the one asked).
    fn upstream_answer(&mut self, mut answer: Vec<u8>, from: Option<SocketAddr>) {
        if !msg::is_response(&answer) {
            return;
        }
        let Some(id) = msg::id(&answer) else { return };
        let Some(p) = self.pending.get(&id) else { return };
        // Only the upstream asked, about the question asked: anything else is stale or forged.
        if from.is_some_and(|f| Some(&f) != p.upstreams.get(p.next)) || !same_question(&p.packet, &answer) {
            return;
        }
        if matches!(msg::rcode(&answer), msg::SERVFAIL | msg::REFUSED | msg::NOTIMP) && p.next + 1 < p.upstreams.len() {
            return self.next_upstream(id, Instant::now());
        }
        if msg::truncated(&answer) && from.is_some() && matches!(p.client, Client::Tcp { .. }) {
            return self.ask_tcp(id);
        }
        let p = self.pending.remove(&id).expect("looked up above");
        msg::set_id(&mut answer, p.query.id);
        self.reply(p.client, answer);
    }

    /// Asks pending query `id` again over TCP of its current upstream.
    fn ask_tcp(&mut self, id: u16) {
        let Some(p) = self.pending.get_mut(&id) else { return };
        let up = p.upstreams[p.next];
        let stream = sock::new_socket(sock::family_of(&up), SockType::Stream, true).and_then(|fd| match sock::connect(&fd, &up) {
            Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => Ok(TcpStream::from(fd)),
            Err(e) => Err(e),
        });
        let Ok(stream) = stream else { return self.next_upstream(id, Instant::now()) };
        let mut out = (p.packet.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&p.packet);
        p.tcp = Some(UpTcp { stream, out, written: 0, inbuf: Vec::new() });
        p.deadline = Instant::now() + ATTEMPT_TIMEOUT;
        self.write_upstream_tcp(id);
    }

    /// Writes what it can of query `id` to its upstream TCP connection; a connection that is
    /// still being made takes nothing yet (EAGAIN) and is tried again on the retry timer.
    fn write_upstream_tcp(&mut self, id: u16) {
        let Some(t) = self.pending.get_mut(&id).and_then(|p| p.tcp.as_mut()) else { return };
        while t.written < t.out.len() {
            match t.stream.write(&t.out[t.written..]) {
                Ok(n) => t.written += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOTCONN) => return,
                Err(_) => return self.next_upstream(id, Instant::now()),
            }
        }
    }

    fn read_upstream_tcp(&mut self, id: u16) {
        let Some(t) = self.pending.get_mut(&id).and_then(|p| p.tcp.as_mut()) else { return };
        loop {
            match t.stream.read(&mut self.buf) {
                Ok(0) => return self.next_upstream(id, Instant::now()),
                Ok(n) => t.inbuf.extend_from_slice(&self.buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => return self.next_upstream(id, Instant::now()),
            }
            if t.inbuf.len() >= 2 && t.inbuf.len() >= 2 + u16::from_be_bytes([t.inbuf[0], t.inbuf[1]]) as usize {
                break;
            }
        }
        if t.inbuf.len() < 2 {
            return;
        }
        let len = u16::from_be_bytes([t.inbuf[0], t.inbuf[1]]) as usize;
        if t.inbuf.len() >= 2 + len {
            let answer = t.inbuf[2..2 + len].to_vec();
            self.upstream_answer(answer, None);
        }
    }

    /// Sends `answer` to `client`, if it is still there.
    fn reply(&mut self, client: Client, answer: Vec<u8>) {
        match client {
            Client::Udp { net, addr, .. } => {
                if let Some(n) = self.networks.iter().find(|n| n.key == net) {
                    // A full socket buffer drops it, as the network would: the client asks again.
                    let _ = n.udp.send_to(&answer, addr);
                }
            }
            Client::Tcp { conn } => {
                let Some(i) = self.conns.iter().position(|c| c.key == conn) else { return };
                let c = &mut self.conns[i];
                c.outbuf.extend_from_slice(&(answer.len() as u16).to_be_bytes());
                c.outbuf.extend_from_slice(&answer);
                if c.outbuf.len() > MAX_OUTBUF || !flush(c) {
                    self.conns.remove(i);
                }
            }
        }
    }
}

/// A non-blocking UDP socket on an ephemeral port, connected to `up` (so the kernel takes
/// datagrams from `up` alone and reports its ICMP errors).
fn upstream_socket(up: SocketAddr) -> std::io::Result<UdpSocket> {
    let any = match up {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    };
    let s = UdpSocket::bind(any)?;
    s.connect(up)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Writes what the socket takes of a TCP client's output; false when the client is gone.
fn flush(c: &mut Conn) -> bool {
    while !c.outbuf.is_empty() {
        match c.stream.write(&c.outbuf) {
            Ok(0) => return false,
            Ok(n) => {
                c.outbuf.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
    true
}

fn client_limit(c: Client) -> usize {
    match c {
        Client::Udp { limit, .. } => limit,
        Client::Tcp { .. } => 65535,
    }
}

/// Whether an answer's question is the query's (names compared without regard to case).
fn same_question(query: &[u8], answer: &[u8]) -> bool {
    match (msg::question_end(query), msg::question_end(answer)) {
        (Some(a), Some(b)) => query[msg::HEADER_LEN..a].eq_ignore_ascii_case(&answer[msg::HEADER_LEN..b]),
        _ => false,
    }
}

/// A random query id: an off-path attacker who cannot guess it cannot slip a forged answer in.
fn random_u16() -> u16 {
    let mut b = [0u8; 2];
    // SAFETY: getrandom writes at most b.len() bytes into b.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != 2 {
        // Not expected (getrandom(2) of 2 bytes does not fail once the pool is ready); the
        // clock's low bits still vary.
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        return t.subsec_nanos() as u16 ^ (t.subsec_nanos() >> 16) as u16;
    }
    u16::from_ne_bytes(b)
}

#[cfg(test)]
mod tests;
