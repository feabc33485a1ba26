//! The resolver's tests: messages read and written (msg.rs), then a real resolver on loopback
//! sockets driven by a poll(2) loop as the owner drives it, with fake upstreams (threads on other
//! loopback addresses) and `dig` as a real client.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::msg::{self, build_query, Parsed};
use super::*;

// ---- messages ----

/// The answers of a response: (type, rdata), after checking its header counts add up.
fn answers(m: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let an = u16::from_be_bytes([m[6], m[7]]) as usize;
    let mut p = msg::question_end(m).expect("a question");
    let mut out = Vec::new();
    for _ in 0..an {
        let (_, q) = msg::read_name(m, p).expect("an owner name");
        let rtype = u16::from_be_bytes([m[q], m[q + 1]]);
        let rdlen = u16::from_be_bytes([m[q + 8], m[q + 9]]) as usize;
        out.push((rtype, m[q + 10..q + 10 + rdlen].to_vec()));
        p = q + 10 + rdlen;
    }
    out
}

fn addrs(m: &[u8]) -> Vec<IpAddr> {
    answers(m)
        .into_iter()
        .filter_map(|(t, d)| match t {
            msg::TYPE_A => Some(IpAddr::from(<[u8; 4]>::try_from(d).unwrap())),
            msg::TYPE_AAAA => Some(IpAddr::from(<[u8; 16]>::try_from(d).unwrap())),
            _ => None,
        })
        .collect()
}

fn ptrs(m: &[u8]) -> Vec<String> {
    answers(m).into_iter().filter(|(t, _)| *t == msg::TYPE_PTR).map(|(_, d)| msg::name_text(&d).unwrap()).collect()
}

fn rcode(m: &[u8]) -> u8 {
    msg::rcode(m)
}

fn query_of(m: &[u8]) -> msg::Query {
    match msg::parse_query(m) {
        Parsed::Query(q) => q,
        other => panic!("not a query: {other:?}"),
    }
}

#[test]
fn reads_compressed_names() {
    // Header, then "www.example.com" at 12, then "mail" + a pointer to "example.com" at 16.
    let mut m = vec![0u8; 12];
    m.extend_from_slice(b"\x03www\x07example\x03com\x00");
    let second = m.len();
    m.extend_from_slice(b"\x04mail\xc0\x10");
    let (wire, end) = msg::read_name(&m, second).unwrap();
    assert_eq!(msg::name_text(&wire).unwrap(), "mail.example.com");
    assert_eq!(end, m.len());
    // A pointer to itself, a pointer forwards, a truncated label: unreadable, no panic.
    let mut looped = vec![0u8; 12];
    looped.extend_from_slice(&[0xc0, 12]);
    assert!(msg::read_name(&looped, 12).is_none());
    let mut fwd = vec![0u8; 12];
    fwd.extend_from_slice(&[0xc0, 14, 0]);
    assert!(msg::read_name(&fwd, 12).is_none());
    assert!(msg::read_name(b"\x05ab", 0).is_none());
    // Names longer than 255 bytes are refused.
    let mut long = Vec::new();
    for _ in 0..5 {
        long.push(63);
        long.extend_from_slice(&[b'a'; 63]);
    }
    long.push(0);
    assert!(msg::read_name(&long, 0).is_none());
}

#[test]
fn parses_a_query_with_a_compressed_question_in_an_additional_record() {
    // dig-like query with EDNS whose OPT sits after a compressed additional record.
    let mut m = build_query(0x1234, "Web.Example", msg::TYPE_AAAA, None);
    m[11] = 2; // ARCOUNT 2: an A record for the question's name (compressed), then OPT.
    m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 0, 0, 1]);
    m.extend_from_slice(&[0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0]);
    let q = query_of(&m);
    assert_eq!(q.id, 0x1234);
    assert_eq!(q.name.as_deref(), Some("web.example"));
    assert_eq!(q.qtype, msg::TYPE_AAAA);
    assert_eq!(q.edns, Some(msg::Edns { udp_size: 4096, version: 0 }));
    assert_eq!(q.udp_limit(), 4096);
    // The question is echoed as sent, case included.
    let r = msg::response(&q, msg::NOERROR, true, &[], 512);
    assert_eq!(&r[12..12 + q.question.len()], &m[12..12 + q.question.len()]);
    assert!(r[12..].windows(3).any(|w| w == b"Web"));
}

#[test]
fn malformed_queries_get_formerr_or_notimp_and_responses_are_ignored() {
    assert_eq!(msg::parse_query(&[1, 2, 3]), Parsed::Ignore);
    let mut resp = build_query(7, "a", msg::TYPE_A, None);
    resp[2] |= 0x80;
    assert_eq!(msg::parse_query(&resp), Parsed::Ignore);
    let mut two = build_query(7, "a", msg::TYPE_A, None);
    two[5] = 2;
    assert!(matches!(msg::parse_query(&two), Parsed::Error { id: 7, rcode: msg::FORMERR, .. }));
    let q = build_query(8, "a", msg::TYPE_A, None);
    assert!(matches!(msg::parse_query(&q[..q.len() - 1]), Parsed::Error { id: 8, rcode: msg::FORMERR, .. }));
    let mut notify = build_query(9, "a", msg::TYPE_A, None);
    notify[2] |= 4 << 3;
    assert!(matches!(msg::parse_query(&notify), Parsed::Error { id: 9, rcode: msg::NOTIMP, .. }));
    let h = msg::error_header(9, 0x2100, msg::NOTIMP);
    assert_eq!(h.len(), 12);
    assert!(msg::is_response(&h));
    assert_eq!(rcode(&h), msg::NOTIMP);
}

#[test]
fn builds_a_aaaa_ptr_and_opt() {
    let q = query_of(&build_query(1, "db", msg::TYPE_ANY, Some(1232)));
    let v4: IpAddr = "10.88.0.2".parse().unwrap();
    let v6: IpAddr = "fd00::2".parse().unwrap();
    let r = msg::response(&q, msg::NOERROR, true, &[Answer::addr(v4, TTL), Answer::addr(v6, TTL)], 1232);
    assert_eq!(addrs(&r), vec![v4, v6]);
    assert!(r[2] & 0x04 != 0, "authoritative");
    assert_eq!(u16::from_be_bytes([r[10], r[11]]), 1, "an OPT record");
    assert_eq!(&r[r.len() - 11..r.len() - 8], &[0, 0, 41]);
    let q = query_of(&build_query(2, "2.0.88.10.in-addr.arpa", msg::TYPE_PTR, None));
    let r = msg::response(&q, msg::NOERROR, true, &[Answer::ptr("db", TTL).unwrap()], 512);
    assert_eq!(ptrs(&r), vec!["db"]);
    // EDNS version 1: BADVERS (extended rcode 1 in the OPT), no answers.
    let mut m = build_query(3, "db", msg::TYPE_A, Some(1232));
    let n = m.len();
    m[n - 5] = 1;
    let q = query_of(&m);
    let r = msg::response(&q, msg::NOERROR, true, &[Answer::addr(v4, TTL)], 1232);
    assert!(answers(&r).is_empty());
    assert_eq!(r[r.len() - 6], 1);
}

#[test]
fn reverse_names() {
    assert_eq!(msg::reverse_addr("4.3.2.1.in-addr.arpa"), Some("1.2.3.4".parse().unwrap()));
    let v6: std::net::Ipv6Addr = "fd00::1:2".parse().unwrap();
    let nibbles: String = format!("{:032x}", u128::from(v6)).chars().rev().map(|c| format!("{c}.")).collect();
    assert_eq!(msg::reverse_addr(&format!("{nibbles}ip6.arpa")), Some(IpAddr::V6(v6)));
    for bad in ["3.2.1.in-addr.arpa", "256.3.2.1.in-addr.arpa", "+4.3.2.1.in-addr.arpa", "x.ip6.arpa", "in-addr.arpa", "a.b"] {
        assert_eq!(msg::reverse_addr(bad), None, "{bad}");
    }
}

/// xorshift64*: reproducible random bytes without a crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn random_and_mutated_packets_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let seeds = [build_query(1, "web.example.com", msg::TYPE_A, Some(4096)), build_query(2, "2.0.88.10.in-addr.arpa", msg::TYPE_PTR, None)];
    for i in 0..200_000 {
        let m = if i % 2 == 0 {
            let n = (rng.next() % 600) as usize;
            let mut m = rng.bytes(n);
            if m.len() > 2 {
                m[2] &= 0x7f; // mostly "queries", so the parser goes past the header
            }
            m
        } else {
            let mut m = seeds[i % seeds.len()].clone();
            for _ in 0..1 + rng.next() % 4 {
                let p = (rng.next() as usize) % m.len();
                m[p] = rng.next() as u8;
            }
            m.truncate((rng.next() as usize) % (m.len() + 1));
            m
        };
        if let Parsed::Query(q) = msg::parse_query(&m) {
            let _ = msg::response(&q, msg::NOERROR, true, &[], q.udp_limit());
            if let Some(name) = &q.name {
                let _ = msg::reverse_addr(name);
            }
        }
        let _ = msg::question_end(&m);
        let _ = msg::read_name(&m, (rng.next() as usize) % (m.len() + 1));
    }
}

#[test]
fn upstream_strings_and_resolv_conf() {
    let p = |s| parse_upstream(s);
    assert_eq!(p("10.0.0.1"), Some("10.0.0.1:53".parse().unwrap()));
    assert_eq!(p("10.0.0.1:5353"), Some("10.0.0.1:5353".parse().unwrap()));
    assert_eq!(p("fd00::1"), Some("[fd00::1]:53".parse().unwrap()));
    assert_eq!(p("[fd00::1]:5353"), Some("[fd00::1]:5353".parse().unwrap()));
    assert_eq!(p("[fd00::1]"), Some("[fd00::1]:53".parse().unwrap()));
    assert_eq!(p("fe80::1%1"), Some("[fe80::1%1]:53".parse().unwrap()));
    assert_eq!(p("[fe80::1%lo]:53"), Some("[fe80::1%1]:53".parse().unwrap()));
    for bad in ["", "x", "10.0.0.1:", "10.0.0.1:99999", "[fd00::1", "[fd00::1]5353", "fe80::1%nosuchif0", "host:53"] {
        assert_eq!(p(bad), None, "{bad}");
    }
    let conf = "# comment\nsearch example.com\nnameserver 10.0.0.1\nnameserver fd00::53\nnameserver\nnameserver bogus\nnameserver 10.0.0.1\noptions ndots:2\n  nameserver 127.0.0.53 # trailing\nnameserver fe80::1%lo\n";
    let want: Vec<SocketAddr> = ["10.0.0.1:53", "[fd00::53]:53", "127.0.0.53:53", "[fe80::1%1]:53"].iter().map(|s| s.parse().unwrap()).collect();
    assert_eq!(parse_resolv_conf(conf), want);
}

#[test]
fn host_upstreams_are_the_resolv_conf_ones() {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let want = parse_resolv_conf(&text);
    if !want.is_empty() {
        assert_eq!(Resolver::host_upstreams(), want);
    }
    let local = vec!["127.0.0.1:53".parse().unwrap()];
    assert_eq!(host_upstreams_of(None), local);
    assert_eq!(host_upstreams_of(Some("search example.com\n")), local);
    assert_eq!(host_upstreams_of(Some("nameserver 10.0.0.1")), vec!["10.0.0.1:53".parse().unwrap()]);
}

// ---- a real resolver on loopback ----

/// A UDP socket and a TCP listener on the same ephemeral port of `ip`, as the owner binds
/// port 53 of a gateway.
fn bind_pair(ip: &str) -> (UdpSocket, TcpListener, SocketAddr) {
    for _ in 0..50 {
        let udp = UdpSocket::bind((ip, 0)).unwrap();
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = TcpListener::bind(addr) {
            return (udp, tcp, addr);
        }
    }
    panic!("no port free for both UDP and TCP on {ip}");
}

fn network(r: &mut Resolver, id: &str, forward: bool) -> SocketAddr {
    let (udp, tcp, addr) = bind_pair("127.0.0.1");
    r.add_network(id, udp, Some(tcp), forward);
    addr
}

fn rec(names: &[&str], addrs: &[&str]) -> Record {
    Record { names: names.iter().map(|s| s.to_string()).collect(), addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(), upstreams: vec![] }
}

/// One round of the owner's loop: poll the resolver's descriptors (a short timeout, so the
/// caller can check its condition), dispatch the readable ones, expire what is due.
fn turn(r: &mut Resolver) {
    poll_dispatch(r);
    if r.next_deadline().is_some_and(|d| d <= Instant::now()) {
        r.expire(Instant::now());
    }
}

/// `turn` without the expiry: only what the sockets bring.
fn poll_dispatch(r: &mut Resolver) {
    let fds: Vec<i32> = r.poll_fds().iter().map(|f| f.as_raw_fd()).collect();
    let mut pfds: Vec<libc::pollfd> = fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
    let timeout = r.next_deadline().map_or(20, |d| d.saturating_duration_since(Instant::now()).as_millis().min(20) as i32);
    // SAFETY: pfds is a valid array of pfds.len() pollfd structures.
    let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout) };
    if n > 0 {
        for p in &pfds {
            if p.revents != 0 {
                r.dispatch(p.fd);
            }
        }
    }
}

/// Turns the loop until `done` says so (a bound on the turns only against a hang: no timing is
/// asserted).
fn pump_until<T>(r: &mut Resolver, mut done: impl FnMut() -> Option<T>) -> T {
    for _ in 0..5000 {
        turn(r);
        if let Some(t) = done() {
            return t;
        }
    }
    panic!("the resolver never answered");
}

fn client(ip: &str) -> UdpSocket {
    let c = UdpSocket::bind((ip, 0)).unwrap();
    c.set_nonblocking(true).unwrap();
    c
}

fn recv(c: &UdpSocket) -> Option<Vec<u8>> {
    let mut b = vec![0; 65536];
    c.recv(&mut b).ok().map(|n| b[..n].to_vec())
}

/// Sends `query` from `c` to `server` and turns the loop until the answer is there.
fn ask(r: &mut Resolver, c: &UdpSocket, server: SocketAddr, query: &[u8]) -> Vec<u8> {
    c.send_to(query, server).unwrap();
    pump_until(r, || recv(c))
}

fn ask_name(r: &mut Resolver, server: SocketAddr, name: &str, qtype: u16) -> Vec<u8> {
    let c = client("127.0.0.1");
    let a = ask(r, &c, server, &build_query(0xbeef, name, qtype, None));
    assert_eq!(msg::id(&a), Some(0xbeef));
    a
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Answers A 192.0.2.1 for any name.
    Answer,
    Silent,
    Rcode(u8),
    /// Answers over UDP with TC and no answers; over TCP with A 192.0.2.7.
    Truncate,
}

/// A fake upstream resolver on `ip`: a thread answering over UDP as `mode` says (and over TCP
/// on the same port), keeping what it received.
struct Fake {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    /// The source addresses of what came over UDP.
    from: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// The fake's answer to `q`: its header and question, one A record.
fn fake_answer(q: &[u8], rc: u8, tc: bool, ip: [u8; 4]) -> Vec<u8> {
    let end = msg::question_end(q).unwrap();
    let mut a = q[..end].to_vec();
    a[2] |= 0x80 | if tc { 0x02 } else { 0 };
    a[3] = 0x80 | rc;
    a[8..12].copy_from_slice(&[0, 0, 0, 0]);
    if rc == 0 && !tc {
        a[7] = 1;
        a.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 0, 0, 4]);
        a.extend_from_slice(&ip);
    }
    a
}

impl Fake {
    fn start(ip: &str, mode: Mode) -> Fake {
        let (udp, tcp, addr) = bind_pair(ip);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let froms = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        udp.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let (s, f, st) = (seen.clone(), froms.clone(), stop.clone());
        let t1 = std::thread::spawn(move || {
            let mut b = vec![0; 65536];
            while !st.load(Ordering::Relaxed) {
                let Ok((n, from)) = udp.recv_from(&mut b) else { continue };
                let q = b[..n].to_vec();
                f.lock().unwrap().push(from);
                s.lock().unwrap().push(q.clone());
                let a = match mode {
                    Mode::Answer => fake_answer(&q, 0, false, [192, 0, 2, 1]),
                    Mode::Silent => continue,
                    Mode::Rcode(rc) => fake_answer(&q, rc, false, [0; 4]),
                    Mode::Truncate => fake_answer(&q, 0, true, [0; 4]),
                };
                udp.send_to(&a, from).unwrap();
            }
        });
        tcp.set_nonblocking(true).unwrap();
        let (s, st) = (seen.clone(), stop.clone());
        let t2 = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let Ok((mut c, _)) = tcp.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                c.set_nonblocking(false).unwrap();
                let mut len = [0u8; 2];
                if c.read_exact(&mut len).is_err() {
                    continue;
                }
                let mut q = vec![0; u16::from_be_bytes(len) as usize];
                c.read_exact(&mut q).unwrap();
                s.lock().unwrap().push(q.clone());
                let a = fake_answer(&q, 0, false, [192, 0, 2, 7]);
                c.write_all(&(a.len() as u16).to_be_bytes()).unwrap();
                c.write_all(&a).unwrap();
            }
        });
        Fake { addr, seen, from: froms, stop, threads: vec![t1, t2] }
    }

    fn seen(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn two_containers() -> Vec<Record> {
    vec![rec(&["web", "0123456789ab", "0123456789abcdef", "Frontend"], &["10.88.0.2", "fd00::2"]), rec(&["db"], &["10.88.0.3"])]
}

#[test]
fn answers_the_networks_names() {
    let mut r = Resolver::new(vec![]).unwrap();
    let s = network(&mut r, "n1", true);
    r.set_records("n1", two_containers());
    let a = ask_name(&mut r, s, "web", msg::TYPE_A);
    assert_eq!((rcode(&a), addrs(&a)), (msg::NOERROR, vec!["10.88.0.2".parse().unwrap()]));
    assert!(a[2] & 0x04 != 0, "authoritative");
    // Case, trailing dot, short id, alias.
    for name in ["WEB.", "0123456789AB", "frontend", "0123456789abcdef."] {
        assert_eq!(addrs(&ask_name(&mut r, s, name, msg::TYPE_A)), vec!["10.88.0.2".parse::<IpAddr>().unwrap()], "{name}");
    }
    let a = ask_name(&mut r, s, "web", msg::TYPE_AAAA);
    assert_eq!(addrs(&a), vec!["fd00::2".parse::<IpAddr>().unwrap()]);
    // A name of ours without that type: NOERROR and no answer (NODATA), not NXDOMAIN.
    let a = ask_name(&mut r, s, "db", msg::TYPE_AAAA);
    assert_eq!((rcode(&a), answers(&a).len()), (msg::NOERROR, 0));
    for qtype in [16 /* TXT */, msg::TYPE_PTR] {
        let a = ask_name(&mut r, s, "db", qtype);
        assert_eq!((rcode(&a), answers(&a).len()), (msg::NOERROR, 0), "type {qtype}");
    }
    // PTR, IPv4 and IPv6.
    let a = ask_name(&mut r, s, "3.0.88.10.in-addr.arpa", msg::TYPE_PTR);
    assert_eq!(ptrs(&a), vec!["db"]);
    let v6 = u128::from("fd00::2".parse::<std::net::Ipv6Addr>().unwrap());
    let rev: String = format!("{v6:032x}").chars().rev().map(|c| format!("{c}.")).collect();
    let a = ask_name(&mut r, s, &format!("{rev}ip6.arpa"), msg::TYPE_PTR);
    assert_eq!(ptrs(&a)[0], "web");
    assert!(ptrs(&a).contains(&"frontend".to_string()));
    // Served again on new sockets: the records stay.
    let (udp, tcp, s) = bind_pair("127.0.0.1");
    r.add_network("n1", udp, Some(tcp), true);
    assert_eq!(addrs(&ask_name(&mut r, s, "db", msg::TYPE_A)), vec!["10.88.0.3".parse::<IpAddr>().unwrap()]);
    // Records replaced: the old names are gone (no upstream: SERVFAIL).
    r.set_records("n1", vec![rec(&["cache"], &["10.88.0.9"])]);
    assert_eq!(rcode(&ask_name(&mut r, s, "web", msg::TYPE_A)), msg::SERVFAIL);
    assert_eq!(addrs(&ask_name(&mut r, s, "cache", msg::TYPE_A)), vec!["10.88.0.9".parse::<IpAddr>().unwrap()]);
}

#[test]
fn records_set_before_the_network_is_served_are_kept() {
    let mut r = Resolver::new(vec![]).unwrap();
    r.set_records("n1", two_containers());
    let s = network(&mut r, "n1", true);
    assert_eq!(addrs(&ask_name(&mut r, s, "db", msg::TYPE_A)), vec!["10.88.0.3".parse::<IpAddr>().unwrap()]);
    // Removed: forgotten, also for a later network of the same id.
    r.remove_network("n1");
    let s = network(&mut r, "n1", true);
    assert_eq!(rcode(&ask_name(&mut r, s, "db", msg::TYPE_A)), msg::SERVFAIL);
}

#[test]
fn search_domain_names_answer_and_unknown_ones_are_nxdomain() {
    let up = Fake::start("127.0.0.2", Mode::Answer);
    let mut r = Resolver::new(vec![up.addr]).unwrap();
    let s = network(&mut r, "n1", true);
    r.set_records("n1", two_containers());
    let a = ask_name(&mut r, s, "web.dns.test.", msg::TYPE_A);
    assert_eq!(addrs(&a), vec!["192.0.2.1".parse::<IpAddr>().unwrap()], "no search domain by default: forwarded");
    r.set_search_domain(Some("dns.test."));
    assert_eq!(addrs(&ask_name(&mut r, s, "Web.Dns.Test.", msg::TYPE_A)), vec!["10.88.0.2".parse::<IpAddr>().unwrap()]);
    let seen = up.seen();
    assert_eq!(rcode(&ask_name(&mut r, s, "nothere.dns.test", msg::TYPE_A)), msg::NXDOMAIN);
    assert_eq!(up.seen(), seen, "a name under our own domain is not forwarded");
}

#[test]
fn forwards_unknown_names_and_relays_the_answer_with_the_clients_id() {
    let up = Fake::start("127.0.0.2", Mode::Answer);
    let mut r = Resolver::new(vec![up.addr]).unwrap();
    let s = network(&mut r, "n1", true);
    r.set_records("n1", two_containers());
    let c = client("127.0.0.1");
    let q = build_query(0x4242, "www.example.org", msg::TYPE_A, Some(1232));
    let a = ask(&mut r, &c, s, &q);
    assert_eq!(msg::id(&a), Some(0x4242));
    assert_eq!(addrs(&a), vec!["192.0.2.1".parse::<IpAddr>().unwrap()]);
    // Unchanged but for the id: what the fake built for the query it saw.
    let sent = up.seen.lock().unwrap()[0].clone();
    assert_eq!(&sent[2..], &q[2..], "the query goes upstream as the client sent it, but the id");
    let mut want = fake_answer(&sent, 0, false, [192, 0, 2, 1]);
    msg::set_id(&mut want, 0x4242);
    assert_eq!(a, want);
    assert!(r.pending.is_empty());
    // Each query from a source port of its own (RFC 5452; ports are random, so three queries
    // make a repeat of one port all along practically impossible), its socket closed after the
    // answer.
    for _ in 0..2 {
        assert_eq!(msg::id(&ask(&mut r, &c, s, &q)), Some(0x4242));
    }
    let from = up.from.lock().unwrap().clone();
    assert_eq!(from.len(), 3);
    assert!(from.iter().any(|f| f.port() != from[0].port()), "{from:?}");
    assert_eq!(r.poll_fds().len(), 2, "the network's UDP and TCP sockets alone");
}

#[test]
fn ipv6_clients_and_upstreams() {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback on this host");
        return;
    }
    let v4 = Fake::start("127.0.0.2", Mode::Silent);
    let v6 = Fake::start("::1", Mode::Answer);
    let mut r = Resolver::new(vec![v4.addr, v6.addr]).unwrap();
    let (udp, tcp, s) = bind_pair("::1");
    r.add_network("n6", udp, Some(tcp), true);
    r.set_records("n6", two_containers());
    let c = client("::1");
    let a = ask(&mut r, &c, s, &build_query(61, "web", msg::TYPE_AAAA, None));
    assert_eq!(addrs(&a), vec!["fd00::2".parse::<IpAddr>().unwrap()]);
    // The IPv4 upstream says nothing: its time up, the IPv6 one answers.
    c.send_to(&build_query(62, "www.example.org", msg::TYPE_A, None), s).unwrap();
    pump_until(&mut r, || (v4.seen() == 1).then_some(()));
    r.expire(Instant::now() + ATTEMPT_TIMEOUT);
    let a = pump_until(&mut r, || recv(&c));
    assert_eq!((msg::id(&a), addrs(&a)), (Some(62), vec!["192.0.2.1".parse::<IpAddr>().unwrap()]));
    assert_eq!(v6.seen(), 1);
}

#[test]
fn a_containers_own_upstreams_come_first() {
    let default = Fake::start("127.0.0.2", Mode::Answer);
    let own = Fake::start("127.0.0.4", Mode::Rcode(msg::NXDOMAIN));
    let mut r = Resolver::new(vec![default.addr]).unwrap();
    let s = network(&mut r, "n1", true);
    let mut records = two_containers();
    records.push(Record { names: vec!["custom".into()], addrs: vec!["127.0.0.3".parse().unwrap()], upstreams: vec![own.addr] });
    r.set_records("n1", records.clone());
    let c = client("127.0.0.3");
    let a = ask(&mut r, &c, s, &build_query(5, "www.example.org", msg::TYPE_A, None));
    assert_eq!(rcode(&a), msg::NXDOMAIN);
    assert_eq!((own.seen(), default.seen()), (1, 0));
    // Also when the network's socket is a dual-stack IPv6 one (the client's address then
    // arrives IPv4-mapped).
    r.remove_network("n1");
    if let Ok(udp) = UdpSocket::bind(("::", s.port())) {
        let tcp = TcpListener::bind(("::", s.port())).unwrap();
        r.add_network("n1", udp, Some(tcp), true);
        r.set_records("n1", records);
        let a = ask(&mut r, &c, s, &build_query(6, "www.example.org", msg::TYPE_A, None));
        assert_eq!(rcode(&a), msg::NXDOMAIN);
        assert_eq!((own.seen(), default.seen()), (2, 0));
    } else {
        eprintln!("dual-stack part skipped: no IPv6 on this host");
    }
    // Another client of the network: the defaults.
    let a = ask_name(&mut r, s, "www.example.org", msg::TYPE_A);
    assert_eq!(rcode(&a), msg::NOERROR);
    assert_eq!(default.seen(), 1);
}

#[test]
fn a_silent_or_failing_upstream_makes_way_for_the_next_then_servfail() {
    let silent = Fake::start("127.0.0.2", Mode::Silent);
    let failing = Fake::start("127.0.0.3", Mode::Rcode(msg::SERVFAIL));
    let good = Fake::start("127.0.0.4", Mode::Answer);
    let mut r = Resolver::new(vec![silent.addr, failing.addr, good.addr]).unwrap();
    let s = network(&mut r, "n1", true);
    let c = client("127.0.0.1");
    c.send_to(&build_query(77, "www.example.org", msg::TYPE_A, None), s).unwrap();
    pump_until(&mut r, || (silent.seen() == 1).then_some(()));
    assert_eq!(r.next_deadline().map(|d| d > Instant::now()), Some(true));
    // The silent one's time is up (the loop is handed a later `now` rather than waiting).
    r.expire(Instant::now() + ATTEMPT_TIMEOUT);
    let a = pump_until(&mut r, || recv(&c));
    assert_eq!((msg::id(&a), addrs(&a)), (Some(77), vec!["192.0.2.1".parse::<IpAddr>().unwrap()]));
    assert_eq!((failing.seen(), good.seen()), (1, 1));

    // Nobody answers: SERVFAIL once the last upstream's time is up.
    let mut r = Resolver::new(vec![silent.addr]).unwrap();
    let s = network(&mut r, "n1", true);
    c.send_to(&build_query(78, "www.example.org", msg::TYPE_A, None), s).unwrap();
    pump_until(&mut r, || (silent.seen() == 2).then_some(()));
    assert!(recv(&c).is_none());
    r.expire(Instant::now() + ATTEMPT_TIMEOUT);
    let a = pump_until(&mut r, || recv(&c));
    assert_eq!((msg::id(&a), rcode(&a)), (Some(78), msg::SERVFAIL));
    assert!(r.pending.is_empty() && r.next_deadline().is_none());

    // A closed port: the next upstream at once (ICMP port unreachable), no timeout needed.
    let closed = UdpSocket::bind("127.0.0.3:0").unwrap().local_addr().unwrap();
    let mut r = Resolver::new(vec![closed, good.addr]).unwrap();
    let s = network(&mut r, "n1", true);
    c.send_to(&build_query(79, "www.example.org", msg::TYPE_A, None), s).unwrap();
    let a = (0..5000).find_map(|_| {
        poll_dispatch(&mut r);
        recv(&c)
    });
    let a = a.expect("an answer without any expiry");
    assert_eq!((msg::id(&a), addrs(&a)), (Some(79), vec!["192.0.2.1".parse::<IpAddr>().unwrap()]));

    // No upstream at all: SERVFAIL at once.
    let mut r = Resolver::new(vec![]).unwrap();
    let s = network(&mut r, "n1", true);
    assert_eq!(rcode(&ask_name(&mut r, s, "www.example.org", msg::TYPE_A)), msg::SERVFAIL);
}

#[test]
fn answers_from_elsewhere_or_for_another_question_are_not_taken() {
    let silent = Fake::start("127.0.0.2", Mode::Silent);
    let mut r = Resolver::new(vec![silent.addr]).unwrap();
    let s = network(&mut r, "n1", true);
    let c = client("127.0.0.1");
    c.send_to(&build_query(9, "www.example.org", msg::TYPE_A, None), s).unwrap();
    pump_until(&mut r, || (silent.seen() == 1).then_some(()));
    let sent = silent.seen.lock().unwrap()[0].clone();
    let up = r.pending.values().next().unwrap().udp.as_ref().unwrap().local_addr().unwrap();
    // The right id from another address; the right address is the fake's, which we cannot
    // send from, so: the right id and question from a stranger, then the wrong question.
    let stranger = UdpSocket::bind("127.0.0.5:0").unwrap();
    stranger.send_to(&fake_answer(&sent, 0, false, [6, 6, 6, 6]), SocketAddr::new("127.0.0.1".parse().unwrap(), up.port())).unwrap();
    let mut other = build_query(0, "evil.example.org", msg::TYPE_A, None);
    msg::set_id(&mut other, msg::id(&sent).unwrap());
    r.upstream_answer(fake_answer(&other, 0, false, [6, 6, 6, 6]), Some(silent.addr));
    for _ in 0..20 {
        turn(&mut r);
    }
    assert!(recv(&c).is_none());
    assert_eq!(r.pending.len(), 1);
}

#[test]
fn pending_forwards_are_capped() {
    let silent = Fake::start("127.0.0.2", Mode::Silent);
    let mut r = Resolver::new(vec![silent.addr]).unwrap();
    let s = network(&mut r, "n1", true);
    let c = client("127.0.0.1");
    let n = MAX_PENDING + 40;
    // In batches the sockets' buffers take whole, each seen upstream before the next is sent.
    for batch in (0..n).collect::<Vec<_>>().chunks(32) {
        for &i in batch {
            c.send_to(&build_query(i as u16, &format!("q{i}.example.org"), msg::TYPE_A, None), s).unwrap();
        }
        let last = batch[batch.len() - 1] + 1;
        pump_until(&mut r, || (silent.seen() == last).then_some(()));
    }
    assert_eq!(r.pending.len(), MAX_PENDING);
    // The oldest went: the first query's id is no longer awaited.
    assert!(!r.pending.values().any(|p| p.query.id == 0));
    assert!(r.pending.values().any(|p| p.query.id == (n - 1) as u16));
}

#[test]
fn internal_networks_answer_their_names_only() {
    let up = Fake::start("127.0.0.2", Mode::Answer);
    let mut r = Resolver::new(vec![up.addr]).unwrap();
    let s = network(&mut r, "int", false);
    r.set_records("int", two_containers());
    assert_eq!(addrs(&ask_name(&mut r, s, "db", msg::TYPE_A)), vec!["10.88.0.3".parse::<IpAddr>().unwrap()]);
    for (name, t) in [("www.example.org", msg::TYPE_A), ("1.2.0.192.in-addr.arpa", msg::TYPE_PTR), ("example.org", 15)] {
        let a = ask_name(&mut r, s, name, t);
        assert_eq!((rcode(&a), answers(&a).len()), (msg::NXDOMAIN, 0), "{name}");
    }
    assert_eq!(up.seen(), 0, "an internal network forwards nothing");
}

#[test]
fn a_network_does_not_answer_anothers_names() {
    let up = Fake::start("127.0.0.2", Mode::Rcode(msg::NXDOMAIN));
    let mut r = Resolver::new(vec![up.addr]).unwrap();
    let s1 = network(&mut r, "n1", true);
    let s2 = network(&mut r, "n2", true);
    let s3 = network(&mut r, "n3", false);
    r.set_records("n1", two_containers());
    r.set_records("n2", vec![rec(&["other"], &["10.89.0.2"])]);
    assert_eq!(addrs(&ask_name(&mut r, s1, "web", msg::TYPE_A)).len(), 1);
    assert_eq!(addrs(&ask_name(&mut r, s2, "other", msg::TYPE_A)).len(), 1);
    // n2 knows nothing of n1's names or addresses: they go upstream, which says NXDOMAIN.
    assert_eq!(rcode(&ask_name(&mut r, s2, "web", msg::TYPE_A)), msg::NXDOMAIN);
    assert_eq!(rcode(&ask_name(&mut r, s2, "2.0.88.10.in-addr.arpa", msg::TYPE_PTR)), msg::NXDOMAIN);
    assert_eq!(up.seen(), 2);
    assert_eq!(rcode(&ask_name(&mut r, s1, "other", msg::TYPE_A)), msg::NXDOMAIN);
    assert_eq!(rcode(&ask_name(&mut r, s3, "web", msg::TYPE_A)), msg::NXDOMAIN);
    // A removed network's socket is closed (its port is free again).
    r.remove_network("n1");
    assert_eq!(r.poll_fds().len(), 2 * 2);
    UdpSocket::bind(s1).expect("n1's port released");
}

#[test]
fn big_answers_are_truncated_for_udp_and_whole_over_tcp() {
    let mut r = Resolver::new(vec![]).unwrap();
    let s = network(&mut r, "n1", true);
    let many: Vec<String> = (1..=60).map(|i| format!("10.88.1.{i}")).collect();
    let many: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
    r.set_records("n1", vec![rec(&["many"], &many)]);
    let a = ask_name(&mut r, s, "many", msg::TYPE_A);
    assert!(a.len() <= 512 && msg::truncated(&a) && answers(&a).is_empty());
    // With EDNS and room: all of them.
    let c = client("127.0.0.1");
    let a = ask(&mut r, &c, s, &build_query(3, "many", msg::TYPE_A, Some(4096)));
    assert!(!msg::truncated(&a));
    assert_eq!(addrs(&a).len(), 60);
    // Over TCP, two pipelined queries on one connection: whole answers, in order.
    let mut t = TcpStream::connect(s).unwrap();
    let mut out = Vec::new();
    for (id, name) in [(11u16, "many"), (12, "many")] {
        let q = build_query(id, name, msg::TYPE_A, None);
        out.extend_from_slice(&(q.len() as u16).to_be_bytes());
        out.extend_from_slice(&q);
    }
    t.write_all(&out).unwrap();
    t.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    let answers_in = |b: &[u8]| {
        let mut v = Vec::new();
        let mut p = 0;
        while b.len() >= p + 2 && b.len() >= p + 2 + u16::from_be_bytes([b[p], b[p + 1]]) as usize {
            let n = u16::from_be_bytes([b[p], b[p + 1]]) as usize;
            v.push(b[p + 2..p + 2 + n].to_vec());
            p += 2 + n;
        }
        v
    };
    let msgs = pump_until(&mut r, || {
        let mut b = [0u8; 8192];
        if let Ok(n) = t.read(&mut b) {
            got.extend_from_slice(&b[..n]);
        }
        let v = answers_in(&got);
        (v.len() == 2).then_some(v)
    });
    assert_eq!(msg::id(&msgs[0]), Some(11));
    assert_eq!(msg::id(&msgs[1]), Some(12));
    assert_eq!(addrs(&msgs[0]).len(), 60);
}

/// A DNS query over TCP to `server`, the loop turned until the answer is whole.
fn ask_tcp(r: &mut Resolver, server: SocketAddr, q: &[u8]) -> Vec<u8> {
    let mut t = TcpStream::connect(server).unwrap();
    t.write_all(&(q.len() as u16).to_be_bytes()).unwrap();
    t.write_all(q).unwrap();
    t.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    pump_until(r, || {
        let mut b = [0u8; 8192];
        if let Ok(n) = t.read(&mut b) {
            got.extend_from_slice(&b[..n]);
        }
        let n = (got.len() >= 2).then(|| u16::from_be_bytes([got[0], got[1]]) as usize)?;
        (got.len() >= 2 + n).then(|| got[2..2 + n].to_vec())
    })
}

#[test]
fn tcp_clients_are_forwarded_and_a_truncated_answer_is_asked_again_over_tcp() {
    let up = Fake::start("127.0.0.2", Mode::Answer);
    let mut r = Resolver::new(vec![up.addr]).unwrap();
    let s = network(&mut r, "n1", true);
    let a = ask_tcp(&mut r, s, &build_query(21, "www.example.org", msg::TYPE_A, None));
    assert_eq!((msg::id(&a), addrs(&a)), (Some(21), vec!["192.0.2.1".parse::<IpAddr>().unwrap()]));

    let tc = Fake::start("127.0.0.3", Mode::Truncate);
    let mut r = Resolver::new(vec![tc.addr]).unwrap();
    let s = network(&mut r, "n1", true);
    let a = ask_tcp(&mut r, s, &build_query(22, "big.example.org", msg::TYPE_A, None));
    assert_eq!((msg::id(&a), addrs(&a)), (Some(22), vec!["192.0.2.7".parse::<IpAddr>().unwrap()]));
    assert!(!msg::truncated(&a));
    assert_eq!(tc.seen(), 2, "once over UDP, once over TCP");
    // A UDP client gets the truncated answer as it is (it retries over TCP itself).
    let a = ask_name(&mut r, s, "big.example.org", msg::TYPE_A);
    assert!(msg::truncated(&a));
}

#[test]
fn garbage_gets_formerr_or_nothing_and_the_resolver_keeps_serving() {
    let mut r = Resolver::new(vec![]).unwrap();
    let s = network(&mut r, "n1", true);
    r.set_records("n1", two_containers());
    let c = client("127.0.0.1");
    let mut two = build_query(0x55, "web", msg::TYPE_A, None);
    two[5] = 2;
    let a = ask(&mut r, &c, s, &two);
    assert_eq!((msg::id(&a), rcode(&a), a.len()), (Some(0x55), msg::FORMERR, 12));
    let mut rng = Rng(42);
    for i in 0..3000 {
        let n = (rng.next() % 300) as usize;
        c.send_to(&rng.bytes(n), s).unwrap();
        if i % 50 == 0 {
            turn(&mut r);
        }
    }
    let mut t = TcpStream::connect(s).unwrap();
    t.write_all(&rng.bytes(1000)).unwrap();
    drop(t);
    for _ in 0..50 {
        turn(&mut r);
    }
    while recv(&c).is_some() {}
    let a = ask(&mut r, &c, s, &build_query(0x56, "web", msg::TYPE_A, None));
    assert_eq!((msg::id(&a), addrs(&a)), (Some(0x56), vec!["10.88.0.2".parse::<IpAddr>().unwrap()]));
}

// ---- a real client ----

/// `dig` (bind9-dnsutils, installed by .ci/setup) against the resolver, the loop turned until it exits.
fn dig(r: &mut Resolver, server: SocketAddr, args: &[&str]) -> String {
    let mut child = std::process::Command::new("dig")
        .args([&format!("@{}", server.ip()), "-p", &server.port().to_string(), "+tries=1", "+time=5"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("dig (Debian bind9-dnsutils, installed by .ci/setup)");
    let status = pump_until(r, || child.try_wait().unwrap());
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(status.success(), "dig {args:?}: {status}\n{out}");
    out
}

#[test]
fn dig_resolves_names_addresses_and_forwarded_names() {
    let up = Fake::start("127.0.0.2", Mode::Answer);
    let mut r = Resolver::new(vec![up.addr]).unwrap();
    let s = network(&mut r, "n1", true);
    r.set_records("n1", two_containers());
    assert_eq!(dig(&mut r, s, &["+short", "web", "A"]).trim(), "10.88.0.2");
    assert_eq!(dig(&mut r, s, &["+short", "Web.", "AAAA"]).trim(), "fd00::2");
    assert_eq!(dig(&mut r, s, &["+short", "+tcp", "db", "A"]).trim(), "10.88.0.3");
    assert_eq!(dig(&mut r, s, &["+short", "-x", "10.88.0.3"]).trim(), "db.");
    assert_eq!(dig(&mut r, s, &["+short", "www.example.org", "A"]).trim(), "192.0.2.1");
    let full = dig(&mut r, s, &["db", "AAAA"]);
    assert!(full.contains("status: NOERROR") && full.contains("ANSWER: 0"), "{full}");
    let full = dig(&mut r, s, &["+noedns", "db", "A"]);
    assert!(full.contains("status: NOERROR") && full.contains("ANSWER: 1"), "{full}");
}

#[test]
fn a_container_on_two_networks_resolves_the_names_of_both() {
    let up = Fake::start("127.0.0.2", Mode::Rcode(msg::NXDOMAIN));
    let mut r = Resolver::new(vec![up.addr]).unwrap();
    let s1 = network(&mut r, "n1", true);
    let _s2 = network(&mut r, "n2", true);
    let id = "a".repeat(64);
    // The client container (at 127.0.0.6 on n1, 10.89.1.6 on n2) and a db on n2 only.
    r.set_records("n1", vec![rec(&["client", &id], &["127.0.0.6"])]);
    r.set_records("n2", vec![rec(&["client", &id], &["10.89.1.6"]), rec(&["db", &"b".repeat(64)], &["10.89.1.7"])]);
    let c = client("127.0.0.6");
    let a = ask(&mut r, &c, s1, &build_query(1, "db", msg::TYPE_A, None));
    assert_eq!(addrs(&a), vec!["10.89.1.7".parse::<IpAddr>().unwrap()], "n2's name answered on n1's server for a container on both");
    // A client on n1 alone does not get n2's names: upstream says NXDOMAIN.
    assert_eq!(rcode(&ask_name(&mut r, s1, "db", msg::TYPE_A)), msg::NXDOMAIN);
}
