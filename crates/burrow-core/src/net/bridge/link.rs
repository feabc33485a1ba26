//! Just enough rtnetlink for the owner (owner.rs): a bridge, a veth pair whose peer is born in a
//! container's namespace, enslaving, link up, addresses and a default route. Hand-made messages
//! instead of a netlink crate: eight message shapes, no runtime dependency, and no `ip` binary
//! to find at run time. A socket works on the network namespace it was created in, so the owner
//! opens one in a child that entered N or the container's namespace (ns.rs).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_GATEWAY: u16 = 5;
const NLA_F_NESTED: u16 = 0x8000;

const IFF_UP: u32 = 1;

/// One netlink request being built: header, fixed part, attributes (nests patched at `end`).
#[derive(Debug)]
pub struct Msg {
    buf: Vec<u8>,
    open: Vec<usize>,
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

impl Msg {
    pub fn new(ty: u16, flags: u16) -> Msg {
        let mut buf = vec![0u8; 16];
        buf[4..6].copy_from_slice(&ty.to_ne_bytes());
        buf[6..8].copy_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        Msg { buf, open: Vec::new() }
    }

    /// struct ifinfomsg: family, type, index, flags, change.
    fn ifinfo(mut self, index: i32, flags: u32, change: u32) -> Msg {
        self.ifinfo_raw(index, flags, change);
        self
    }

    fn ifinfo_raw(&mut self, index: i32, flags: u32, change: u32) {
        self.buf.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
        self.buf.extend_from_slice(&index.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&change.to_ne_bytes());
    }

    fn attr(mut self, ty: u16, data: &[u8]) -> Msg {
        self.attr_raw(ty, data);
        self
    }

    fn attr_raw(&mut self, ty: u16, data: &[u8]) {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(align(self.buf.len()), 0);
    }

    fn str(self, ty: u16, s: &str) -> Msg {
        let mut d = s.as_bytes().to_vec();
        d.push(0);
        self.attr(ty, &d)
    }

    fn u32(self, ty: u16, v: u32) -> Msg {
        self.attr(ty, &v.to_ne_bytes())
    }

    fn begin(mut self, ty: u16) -> Msg {
        self.open.push(self.buf.len());
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        self
    }

    fn end(mut self) -> Msg {
        let at = self.open.pop().expect("a nest to end");
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    /// The message as sent, with its length and sequence number.
    pub fn bytes(mut self, seq: u32) -> Vec<u8> {
        assert!(self.open.is_empty(), "unterminated nest");
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

pub fn bridge_msg(name: &str, mtu: u32) -> Msg {
    Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL)
        .ifinfo(0, 0, 0)
        .str(IFLA_IFNAME, name)
        .u32(IFLA_MTU, mtu)
        .begin(IFLA_LINKINFO)
        .str(IFLA_INFO_KIND, "bridge")
        .end()
}

/// A veth pair: `name` here, its peer `peer` created directly in the namespace `peer_ns` (an
/// open nsfs descriptor), with its MAC address and the same MTU.
pub fn veth_msg(name: &str, mtu: u32, peer: &str, peer_mac: [u8; 6], peer_ns: RawFd) -> Msg {
    let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL)
        .ifinfo(0, 0, 0)
        .str(IFLA_IFNAME, name)
        .u32(IFLA_MTU, mtu)
        .begin(IFLA_LINKINFO)
        .str(IFLA_INFO_KIND, "veth")
        .begin(IFLA_INFO_DATA)
        .begin(VETH_INFO_PEER);
    m.ifinfo_raw(0, 0, 0);
    m.str(IFLA_IFNAME, peer).u32(IFLA_MTU, mtu).attr(IFLA_ADDRESS, &peer_mac).u32(IFLA_NET_NS_FD, peer_ns as u32).end().end().end()
}

pub fn set_master_msg(index: i32, master: i32) -> Msg {
    Msg::new(RTM_NEWLINK, 0).ifinfo(index, 0, 0).u32(IFLA_MASTER, master as u32)
}

pub fn up_msg(index: i32) -> Msg {
    Msg::new(RTM_NEWLINK, 0).ifinfo(index, IFF_UP, IFF_UP)
}

pub fn del_msg(name: &str) -> Msg {
    Msg::new(RTM_DELLINK, 0).ifinfo(0, 0, 0).str(IFLA_IFNAME, name)
}

pub fn addr_msg(index: i32, ip: Ipv4Addr, prefix: u8) -> Msg {
    let mut m = Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
    // struct ifaddrmsg: family, prefixlen, flags, scope, index.
    m.buf.extend_from_slice(&[libc::AF_INET as u8, prefix, 0, 0]);
    m.buf.extend_from_slice(&(index as u32).to_ne_bytes());
    m.attr(IFA_LOCAL, &ip.octets()).attr(IFA_ADDRESS, &ip.octets())
}

/// An IPv6 address without duplicate address detection: usable at once (the network's IPAM
/// hands out each address once), not "tentative" for the first seconds.
pub fn addr6_msg(index: i32, ip: Ipv6Addr, prefix: u8) -> Msg {
    const IFA_F_NODAD: u8 = 0x02;
    let mut m = Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
    m.buf.extend_from_slice(&[libc::AF_INET6 as u8, prefix, IFA_F_NODAD, 0]);
    m.buf.extend_from_slice(&(index as u32).to_ne_bytes());
    m.attr(IFA_ADDRESS, &ip.octets())
}

pub fn default_route_msg(gateway: Ipv4Addr) -> Msg {
    let mut m = Msg::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
    // struct rtmsg: family, dst_len, src_len, tos, table (main), protocol (boot), scope
    // (universe), type (unicast); flags.
    m.buf.extend_from_slice(&[libc::AF_INET as u8, 0, 0, 0, libc::RT_TABLE_MAIN, libc::RTPROT_BOOT, libc::RT_SCOPE_UNIVERSE, libc::RTN_UNICAST]);
    m.buf.extend_from_slice(&0u32.to_ne_bytes());
    m.attr(RTA_GATEWAY, &gateway.octets())
}

/// The IPv6 default route via `gateway`, which must be on a prefix of one of the interfaces.
pub fn default_route6_msg(gateway: Ipv6Addr) -> Msg {
    let mut m = Msg::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
    m.buf.extend_from_slice(&[libc::AF_INET6 as u8, 0, 0, 0, libc::RT_TABLE_MAIN, libc::RTPROT_BOOT, libc::RT_SCOPE_UNIVERSE, libc::RTN_UNICAST]);
    m.buf.extend_from_slice(&0u32.to_ne_bytes());
    m.attr(RTA_GATEWAY, &gateway.octets())
}

/// A NETLINK_ROUTE socket of the namespace the caller is in.
pub struct Nl {
    fd: OwnedFd,
    seq: u32,
}

impl Nl {
    pub fn open() -> Result<Nl, String> {
        // SAFETY: socket(2); the descriptor is owned right away.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
        if fd < 0 {
            return Err(format!("netlink socket: {}", Errno::last()));
        }
        Ok(Nl { fd: unsafe { OwnedFd::from_raw_fd(fd) }, seq: 0 })
    }

    /// Sends one request and waits for its acknowledgement; `what` names it in an error.
    pub fn run(&mut self, m: Msg, what: &str) -> Result<(), String> {
        self.try_run(m).map_err(|e| format!("{what}: {}", e.desc()))
    }

    pub fn try_run(&mut self, m: Msg) -> Result<(), Errno> {
        self.seq += 1;
        let seq = self.seq;
        let b = m.bytes(seq);
        // SAFETY: send(2) of our buffer on our socket (the kernel is the default destination).
        if unsafe { libc::send(self.fd.as_raw_fd(), b.as_ptr().cast(), b.len(), 0) } < 0 {
            return Err(Errno::last());
        }
        let mut buf = vec![0u8; 8192];
        loop {
            // SAFETY: recv(2) into our buffer.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = Errno::last();
                if e == Errno::EINTR {
                    continue;
                }
                return Err(e);
            }
            let mut at = 0usize;
            let n = n as usize;
            while at + 16 <= n {
                let len = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
                let ty = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().unwrap());
                let rseq = u32::from_ne_bytes(buf[at + 8..at + 12].try_into().unwrap());
                if ty == NLMSG_ERROR && rseq == seq && at + 20 <= n {
                    let code = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().unwrap());
                    return if code == 0 { Ok(()) } else { Err(Errno::from_raw(-code)) };
                }
                if len < 16 {
                    break;
                }
                at += align(len);
            }
        }
    }
}

/// The interface's index in the caller's namespace.
pub fn index(name: &str) -> Result<i32, String> {
    let c = std::ffi::CString::new(name).map_err(|_| format!("bad interface name {name:?}"))?;
    // SAFETY: a NUL-terminated name.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(format!("interface {name}: {}", Errno::last().desc()));
    }
    Ok(i as i32)
}

/// "02:42:ac:12:00:02" as bytes.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let v: Vec<u8> = s.split(':').map(|p| u8::from_str_radix(p, 16)).collect::<Result<_, _>>().ok()?;
    v.try_into().ok()
}

/// "fd00:1::/64" as (network address, prefix length).
pub fn parse_cidr6(s: &str) -> Option<(Ipv6Addr, u8)> {
    let (a, p) = s.split_once('/')?;
    let p: u8 = p.parse().ok().filter(|p| *p <= 128)?;
    Some((a.parse().ok()?, p))
}

/// "172.18.0.0/16" as (network address, prefix length).
pub fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (a, p) = s.split_once('/')?;
    let p: u8 = p.parse().ok().filter(|p| *p <= 32)?;
    Some((a.parse().ok()?, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_ne_bytes(b[at..at + 2].try_into().unwrap())
    }

    #[test]
    fn a_bridge_request_is_a_newlink_with_its_kind_nested() {
        let b = bridge_msg("bw0123456789ab", 1500).bytes(7);
        assert_eq!(u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize, b.len());
        assert_eq!(u16_at(&b, 4), RTM_NEWLINK);
        assert_eq!(u16_at(&b, 6), NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
        assert_eq!(u32::from_ne_bytes(b[8..12].try_into().unwrap()), 7);
        // header 16 + ifinfomsg 16, then IFLA_IFNAME "bw0123456789ab\0" (4 + 15, padded to 20).
        assert_eq!(u16_at(&b, 32), 19);
        assert_eq!(u16_at(&b, 34), IFLA_IFNAME);
        assert_eq!(&b[36..50], b"bw0123456789ab");
        // IFLA_MTU at 52, IFLA_LINKINFO at 60 holding IFLA_INFO_KIND "bridge\0".
        assert_eq!(u16_at(&b, 54), IFLA_MTU);
        assert_eq!(u16_at(&b, 62), IFLA_LINKINFO | NLA_F_NESTED);
        assert_eq!(u16_at(&b, 60) as usize, b.len() - 60);
        assert_eq!(u16_at(&b, 66), IFLA_INFO_KIND);
        assert_eq!(&b[68..75], b"bridge\0");
        assert_eq!(b.len() % 4, 0);
    }

    #[test]
    fn a_veth_peer_carries_its_name_mac_and_namespace_inside_three_nests() {
        let b = veth_msg("vb1", 65520, "eth0", [2, 0x42, 172, 18, 0, 2], 9).bytes(1);
        // Find IFLA_NET_NS_FD and the peer's name after the peer's own ifinfomsg.
        let peer_name = b.windows(5).position(|w| w == b"eth0\0").unwrap();
        let mac = b.windows(6).position(|w| w == [2, 0x42, 172, 18, 0, 2]).unwrap();
        assert!(mac > peer_name);
        let ns = b.windows(4).rposition(|w| w == [8, 0, IFLA_NET_NS_FD as u8, 0]).unwrap();
        assert_eq!(u32::from_ne_bytes(b[ns + 4..ns + 8].try_into().unwrap()), 9);
        // Each nest's length reaches the end of the message (they all close at the end).
        let linkinfo = b.windows(2).position(|w| u16::from_ne_bytes([w[0], w[1]]) == IFLA_LINKINFO | NLA_F_NESTED).unwrap() - 2;
        assert_eq!(u16_at(&b, linkinfo) as usize, b.len() - linkinfo);
    }

    #[test]
    fn addresses_routes_and_parsing() {
        let b = addr_msg(3, "172.18.0.1".parse().unwrap(), 16).bytes(1);
        assert_eq!(&b[16..20], &[libc::AF_INET as u8, 16, 0, 0]);
        assert_eq!(i32::from_ne_bytes(b[20..24].try_into().unwrap()), 3);
        assert_eq!(&b[28..32], &[172, 18, 0, 1]);
        let r = default_route_msg("172.18.0.1".parse().unwrap()).bytes(1);
        assert_eq!(r.len(), 16 + 12 + 8);
        assert_eq!(&r[32..36], &[172, 18, 0, 1]);
        assert_eq!(parse_mac("02:42:ac:12:00:02"), Some([2, 0x42, 0xac, 0x12, 0, 2]));
        assert_eq!(parse_mac("02:42"), None);
        assert_eq!(parse_cidr("10.5.0.0/24"), Some(("10.5.0.0".parse().unwrap(), 24)));
        assert_eq!(parse_cidr("10.5.0.0"), None);
        assert_eq!(parse_cidr6("fd00:1::/64"), Some(("fd00:1::".parse().unwrap(), 64)));
        let b = addr6_msg(3, "fd00:1::2".parse().unwrap(), 64).bytes(1);
        assert_eq!(&b[16..20], &[libc::AF_INET6 as u8, 64, 0x02, 0]);
        assert_eq!(&b[28..44], &"fd00:1::2".parse::<Ipv6Addr>().unwrap().octets());
        let r = default_route6_msg("fd00:1::1".parse().unwrap()).bytes(1);
        assert_eq!(r.len(), 16 + 12 + 20);
        assert_eq!(r[16], libc::AF_INET6 as u8);
        assert_eq!(&r[32..48], &"fd00:1::1".parse::<Ipv6Addr>().unwrap().octets());
    }
}
