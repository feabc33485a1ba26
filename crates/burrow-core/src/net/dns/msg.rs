//! DNS messages (RFC 1035, EDNS0 of RFC 6891), as far as the resolver needs them: a query's
//! header, question and OPT record read (names compressed or not), answers of our own written,
//! and the few header fields the forwarder rewrites or looks at in an upstream's answer.
//! Hand-written rather than a crate (hickory-proto is some 30k lines and pulls async code): the
//! resolver reads one question and writes A, AAAA and PTR answers, nothing else. Every read is
//! bounds-checked: a malformed packet gives `None` or a FORMERR, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const TYPE_A: u16 = 1;
pub const TYPE_PTR: u16 = 12;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_OPT: u16 = 41;
pub const TYPE_ANY: u16 = 255;
pub const CLASS_IN: u16 = 1;
pub const CLASS_ANY: u16 = 255;

pub const NOERROR: u8 = 0;
pub const FORMERR: u8 = 1;
pub const SERVFAIL: u8 = 2;
pub const NXDOMAIN: u8 = 3;
pub const NOTIMP: u8 = 4;
pub const REFUSED: u8 = 5;
/// Extended rcode 16 (RFC 6891): an EDNS version we do not speak.
const BADVERS_HIGH: u8 = 1;

pub const HEADER_LEN: usize = 12;
/// A UDP answer's size limit for a client without EDNS (RFC 1035 4.2.1).
pub const CLASSIC_UDP_LIMIT: usize = 512;
/// The UDP payload size we announce in our OPT record (the DNS flag day 2020 value: no IP
/// fragmentation on any usual path).
pub const OUR_UDP_SIZE: u16 = 1232;

const QR: u16 = 0x8000;
const AA: u16 = 0x0400;
const TC: u16 = 0x0200;
const RD: u16 = 0x0100;
const RA: u16 = 0x0080;
const CD: u16 = 0x0010;

/// Names are at most 255 bytes on the wire (RFC 1035 2.3.4); a read follows at most this many
/// compression pointers (each must point backwards, so loops end anyway; this bounds the work).
const MAX_NAME: usize = 255;
const MAX_JUMPS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    pub udp_size: u16,
    pub version: u8,
}

/// A query as we answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    /// The header's second 16 bits as sent (opcode, RD, CD are echoed).
    pub flags: u16,
    /// The question as the client sent it, its name decompressed and in the client's case (a
    /// client randomising the case, "0x20", checks that the answer echoes it).
    pub question: Vec<u8>,
    /// The name, lowercase, labels joined by '.', no trailing dot ("" for the root); None when a
    /// label cannot be written so (holds a '.', a byte outside printable ASCII): it then matches
    /// none of our names.
    pub name: Option<String>,
    pub qtype: u16,
    pub qclass: u16,
    pub edns: Option<Edns>,
}

impl Query {
    /// The largest UDP answer this client takes.
    pub fn udp_limit(&self) -> usize {
        match self.edns {
            Some(e) => (e.udp_size as usize).clamp(CLASSIC_UDP_LIMIT, 65535),
            None => CLASSIC_UDP_LIMIT,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Query(Query),
    /// A request we answer with an error and the header only: FORMERR (the question or the
    /// records after it are unreadable), NOTIMP (an opcode other than QUERY).
    Error {
        id: u16,
        flags: u16,
        rcode: u8,
    },
    /// Not worth an answer: shorter than a header, or a response (answering responses could
    /// make two servers bounce packets at each other).
    Ignore,
}

fn u16_at(m: &[u8], p: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*m.get(p)?, *m.get(p + 1)?]))
}

pub fn id(m: &[u8]) -> Option<u16> {
    u16_at(m, 0)
}

pub fn set_id(m: &mut [u8], id: u16) {
    if m.len() >= 2 {
        m[..2].copy_from_slice(&id.to_be_bytes());
    }
}

pub fn is_response(m: &[u8]) -> bool {
    m.len() >= HEADER_LEN && m[2] & 0x80 != 0
}

pub fn rcode(m: &[u8]) -> u8 {
    m.get(3).map_or(0, |b| b & 0x0f)
}

pub fn truncated(m: &[u8]) -> bool {
    m.get(2).is_some_and(|b| b & 0x02 != 0)
}

/// Reads the name at `pos`: its uncompressed wire form and where the bytes after it start.
pub fn read_name(m: &[u8], pos: usize) -> Option<(Vec<u8>, usize)> {
    let mut out = Vec::with_capacity(32);
    let mut p = pos;
    let mut end = None;
    let mut jumps = 0;
    loop {
        let len = *m.get(p)? as usize;
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    out.push(0);
                    if out.len() > MAX_NAME {
                        return None;
                    }
                    return Some((out, end.unwrap_or(p + 1)));
                }
                let label = m.get(p + 1..p + 1 + len)?;
                out.push(len as u8);
                out.extend_from_slice(label);
                if out.len() + 1 > MAX_NAME {
                    return None;
                }
                p += 1 + len;
            }
            0xc0 => {
                let target = (u16_at(m, p)? & 0x3fff) as usize;
                // Backwards only: every jump moves to a lower offset, so the walk ends.
                if target >= p || jumps == MAX_JUMPS {
                    return None;
                }
                jumps += 1;
                end.get_or_insert(p + 2);
                p = target;
            }
            // 0x40 and 0x80: extended label types (RFC 6891 dropped them), unreadable.
            _ => return None,
        }
    }
}

/// A wire name as text for matching: lowercase, labels joined by '.', no trailing dot.
pub fn name_text(wire: &[u8]) -> Option<String> {
    let mut s = String::with_capacity(wire.len());
    let mut p = 0;
    while let Some(&len) = wire.get(p) {
        if len == 0 {
            return Some(s);
        }
        let label = wire.get(p + 1..p + 1 + len as usize)?;
        if !s.is_empty() {
            s.push('.');
        }
        for &b in label {
            if b == b'.' || !(0x21..0x7f).contains(&b) {
                return None;
            }
            s.push(b.to_ascii_lowercase() as char);
        }
        p += 1 + len as usize;
    }
    None
}

/// A text name ("a.b", "a.b.") in wire form; None if a label is empty or too long, or the name
/// too long.
pub fn encode_name(name: &str) -> Option<Vec<u8>> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let mut out = Vec::with_capacity(name.len() + 2);
    if !name.is_empty() {
        for label in name.split('.') {
            if label.is_empty() || label.len() > 63 {
                return None;
            }
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
    }
    out.push(0);
    (out.len() <= MAX_NAME).then_some(out)
}

/// Skips one resource record at `p`; returns its type, class, TTL field, rdata range and the end.
fn read_rr(m: &[u8], p: usize) -> Option<(u16, u16, u32, std::ops::Range<usize>)> {
    let (_, p) = read_name(m, p)?;
    let rtype = u16_at(m, p)?;
    let class = u16_at(m, p + 2)?;
    let ttl = (u16_at(m, p + 4)? as u32) << 16 | u16_at(m, p + 6)? as u32;
    let rdlen = u16_at(m, p + 8)? as usize;
    let start = p + 10;
    m.get(start..start + rdlen)?;
    Some((rtype, class, ttl, start..start + rdlen))
}

pub fn parse_query(m: &[u8]) -> Parsed {
    if m.len() < HEADER_LEN || is_response(m) {
        return Parsed::Ignore;
    }
    let id = u16_at(m, 0).unwrap_or(0);
    let flags = u16_at(m, 2).unwrap_or(0);
    let formerr = Parsed::Error { id, flags, rcode: FORMERR };
    if (flags >> 11) & 0xf != 0 {
        return Parsed::Error { id, flags, rcode: NOTIMP };
    }
    let count = |i: usize| u16_at(m, 4 + 2 * i).unwrap_or(0) as usize;
    if count(0) != 1 {
        return formerr;
    }
    let Some((wire, p)) = read_name(m, HEADER_LEN) else { return formerr };
    let (Some(qtype), Some(qclass)) = (u16_at(m, p), u16_at(m, p + 2)) else { return formerr };
    let mut p = p + 4;
    let mut edns = None;
    for i in 0..count(1) + count(2) + count(3) {
        let Some((rtype, class, ttl, rdata)) = read_rr(m, p) else { return formerr };
        if rtype == TYPE_OPT {
            // Only in the additional section, only once, owned by the root (RFC 6891 6.1.1).
            if i < count(1) + count(2) || edns.is_some() || m[p] != 0 {
                return formerr;
            }
            edns = Some(Edns { udp_size: class, version: (ttl >> 16) as u8 });
        }
        p = rdata.end;
    }
    let mut question = wire.clone();
    question.extend_from_slice(&qtype.to_be_bytes());
    question.extend_from_slice(&qclass.to_be_bytes());
    Parsed::Query(Query { id, flags, name: name_text(&wire), question, qtype, qclass, edns })
}

/// One answer record; its owner is always the question's name (written as a pointer to it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub rtype: u16,
    pub ttl: u32,
    pub rdata: Vec<u8>,
}

impl Answer {
    pub fn addr(ip: IpAddr, ttl: u32) -> Answer {
        match ip {
            IpAddr::V4(a) => Answer { rtype: TYPE_A, ttl, rdata: a.octets().to_vec() },
            IpAddr::V6(a) => Answer { rtype: TYPE_AAAA, ttl, rdata: a.octets().to_vec() },
        }
    }

    pub fn ptr(target: &str, ttl: u32) -> Option<Answer> {
        Some(Answer { rtype: TYPE_PTR, ttl, rdata: encode_name(target)? })
    }
}

fn header(out: &mut Vec<u8>, id: u16, flags: u16, rcode: u8, counts: [u16; 4]) {
    // Opcode, RD and CD as asked; a recursive resolver for the client (RA); our own bits.
    let f = QR | (flags & (0x7800 | RD | CD)) | RA | (rcode & 0x0f) as u16;
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&f.to_be_bytes());
    for c in counts {
        out.extend_from_slice(&c.to_be_bytes());
    }
}

/// The answer to a request we could not read (FORMERR) or do not serve (NOTIMP): header only.
pub fn error_header(id: u16, flags: u16, rcode: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    header(&mut out, id, flags, rcode, [0; 4]);
    out
}

/// Our answer to `q`: `rcode`, authoritative or not, `answers` unless they do not fit `limit`
/// (then none and TC set, so the client asks again over TCP), and an OPT record when the query
/// had one (RFC 6891 7: a responder that speaks EDNS answers with it).
pub fn response(q: &Query, rcode: u8, authoritative: bool, answers: &[Answer], limit: usize) -> Vec<u8> {
    // An EDNS version above 0: BADVERS, nothing else (RFC 6891 6.1.3).
    let badvers = q.edns.is_some_and(|e| e.version > 0);
    let answers = if badvers { &[][..] } else { answers };
    let opt_len = if q.edns.is_some() { 11 } else { 0 };
    let body: usize = answers.iter().map(|a| 12 + a.rdata.len()).sum();
    let fits = HEADER_LEN + q.question.len() + body + opt_len <= limit;
    let answers = if fits { answers } else { &[][..] };
    let mut out = Vec::with_capacity(HEADER_LEN + q.question.len() + body + opt_len);
    let ar = u16::from(q.edns.is_some());
    header(&mut out, q.id, q.flags, rcode, [1, answers.len() as u16, 0, ar]);
    if authoritative {
        out[2] |= (AA >> 8) as u8;
    }
    if !fits {
        out[2] |= (TC >> 8) as u8;
    }
    out.extend_from_slice(&q.question);
    for a in answers {
        out.extend_from_slice(&[0xc0, HEADER_LEN as u8]);
        out.extend_from_slice(&a.rtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&a.ttl.to_be_bytes());
        out.extend_from_slice(&(a.rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&a.rdata);
    }
    if q.edns.is_some() {
        out.push(0);
        out.extend_from_slice(&TYPE_OPT.to_be_bytes());
        out.extend_from_slice(&OUR_UDP_SIZE.to_be_bytes());
        out.extend_from_slice(&[if badvers { BADVERS_HIGH } else { 0 }, 0, 0, 0, 0, 0]);
    }
    out
}

/// The end of the question section of a message with one question, for comparing an
/// upstream's answer with the query it answers.
pub fn question_end(m: &[u8]) -> Option<usize> {
    if u16_at(m, 4)? != 1 {
        return None;
    }
    let (_, p) = read_name(m, HEADER_LEN)?;
    (p + 4 <= m.len()).then_some(p + 4)
}

/// The address a reverse name stands for: "4.3.2.1.in-addr.arpa" → 1.2.3.4, and the 32 nibbles
/// of an ip6.arpa name. None for anything else (a partial name, a subnet's).
pub fn reverse_addr(name: &str) -> Option<IpAddr> {
    if let Some(rest) = name.strip_suffix(".in-addr.arpa") {
        let mut o = [0u8; 4];
        let parts: Vec<&str> = rest.split('.').collect();
        if parts.len() != 4 {
            return None;
        }
        for (i, part) in parts.iter().rev().enumerate() {
            if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            o[i] = part.parse().ok()?;
        }
        return Some(IpAddr::V4(Ipv4Addr::from(o)));
    }
    let rest = name.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<&str> = rest.split('.').collect();
    if nibbles.len() != 32 {
        return None;
    }
    let mut v: u128 = 0;
    for n in nibbles.iter().rev() {
        if n.len() != 1 {
            return None;
        }
        v = v << 4 | u8::from_str_radix(n, 16).ok()? as u128;
    }
    Some(IpAddr::V6(Ipv6Addr::from(v)))
}

/// A query for `name`, as a stub resolver sends it (tests).
#[cfg(test)]
pub fn build_query(id: u16, name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&RD.to_be_bytes());
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
    m.extend_from_slice(&encode_name(name).unwrap());
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    if let Some(size) = edns {
        m.push(0);
        m.extend_from_slice(&TYPE_OPT.to_be_bytes());
        m.extend_from_slice(&size.to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    m
}
