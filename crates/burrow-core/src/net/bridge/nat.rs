//! The owner namespace's packet filter, as one `iptables-restore` input regenerated whole on
//! every change (the restore replaces the tables it names atomically, so no rule of a removed
//! network lingers and no half-applied set is ever live).
//!
//! - filter FORWARD drops by default: a packet routed from one bridge to another (network A to
//!   network B) matches nothing and is dropped; that is the isolation.
//! - a non-internal network may forward out of the outbound helper's tap device, and replies
//!   (conntrack ESTABLISHED) come back; an internal one forwards nothing at all.
//! - nat POSTROUTING masquerades a non-internal subnet out of the tap device: slirp4netns and
//!   pasta answer only their own 10.0.2.0/24 address (fd00::/64 for IPv6).
//! - the outbound helper's own network (10.0.2.0/24, fd00::/64: slirp4netns connects 10.0.2.2,
//!   and every address of fd00::/64 but its DNS, to the host's loopback) is dropped before the
//!   accept of every network that did not ask for the host's loopback
//!   (`-o allow_host_loopback=true`): the one slirp4netns serves every network, so the choice is
//!   made here, per network, and not by its `--disable-host-loopback`.
//!
//! IPv6 (`--ipv6` networks) gets the same rules from `ip6tables-restore` ([`ruleset6`]):
//! forwarding in N is on for both families, so the isolation must be too.
//!
//! Traffic between two containers of one network is bridged (layer 2) and never reaches these
//! chains (br_netfilter is not loaded in a namespace); the same-bridge accept rule keeps it so if
//! it were.

/// What the ruleset needs to know of one live network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatNet {
    pub bridge: String,
    pub subnet: String,
    /// The IPv6 subnet of an `--ipv6` network.
    pub subnet6: Option<String>,
    pub internal: bool,
    /// May reach the host's loopback through the helper's host address.
    pub host_loopback: bool,
}

/// The outbound helper's own networks, where its address for the host's loopback is
/// (slirp4netns's defaults: 10.0.2.2 and fd00::2).
pub const HELPER_NET4: &str = "10.0.2.0/24";
pub const HELPER_NET6: &str = "fd00::/64";

/// The IPv4 rules (`iptables-restore`).
pub fn ruleset(nets: &[NatNet], out_if: &str) -> String {
    let v4: Vec<(&NatNet, &str)> = nets.iter().map(|n| (n, n.subnet.as_str())).collect();
    rules(&v4, out_if, HELPER_NET4)
}

/// The IPv6 rules (`ip6tables-restore`): only networks with an IPv6 subnet forward anything;
/// every other packet routed in N is dropped, as for IPv4.
pub fn ruleset6(nets: &[NatNet], out_if: &str) -> String {
    let v6: Vec<(&NatNet, &str)> = nets.iter().filter_map(|n| n.subnet6.as_deref().map(|s| (n, s))).collect();
    rules(&v6, out_if, HELPER_NET6)
}

fn rules(nets: &[(&NatNet, &str)], out_if: &str, helper_net: &str) -> String {
    let mut s = String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    if nets.iter().any(|(n, _)| !n.internal) {
        s.push_str(&format!("-A FORWARD -i {out_if} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"));
    }
    for (n, _) in nets {
        s.push_str(&format!("-A FORWARD -i {b} -o {b} -j ACCEPT\n", b = n.bridge));
        if !n.internal {
            if !n.host_loopback {
                s.push_str(&format!("-A FORWARD -i {} -o {out_if} -d {helper_net} -j DROP\n", n.bridge));
            }
            s.push_str(&format!("-A FORWARD -i {} -o {out_if} -j ACCEPT\n", n.bridge));
        }
    }
    s.push_str("COMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n");
    for (_, subnet) in nets.iter().filter(|(n, _)| !n.internal) {
        s.push_str(&format!("-A POSTROUTING -s {subnet} -o {out_if} -j MASQUERADE\n"));
    }
    s.push_str("COMMIT\n");
    s
}

/// The restore binary: the nft backend first (it needs no lock file under /run, which a user
/// namespace cannot create, and works in a namespace owned by one), else what `iptables-restore`
/// is. Searched on PATH and in the sbin directories an ordinary user's PATH often lacks.
pub fn restore_binary() -> Option<std::path::PathBuf> {
    find(&["iptables-nft-restore", "iptables-restore"])
}

/// The same for IPv6 (`ip6tables-restore`, of the same iptables package).
pub fn restore6_binary() -> Option<std::path::PathBuf> {
    find(&["ip6tables-nft-restore", "ip6tables-restore"])
}

fn find(names: &[&str]) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<std::path::PathBuf> = std::env::split_paths(&path).collect();
    for d in ["/usr/sbin", "/sbin", "/usr/local/sbin"] {
        dirs.push(d.into());
    }
    for name in names {
        for d in &dirs {
            let c = d.join(name);
            if c.is_file() {
                return Some(c);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(b: &str, s: &str, internal: bool) -> NatNet {
        NatNet { bridge: b.into(), subnet: s.into(), subnet6: None, internal, host_loopback: false }
    }

    #[test]
    fn isolated_networks_forward_only_to_the_tap_and_internal_ones_not_at_all() {
        let r = ruleset(&[net("bwa", "172.18.0.0/16", false), net("bwb", "172.19.0.0/16", false), net("bwi", "172.20.0.0/16", true)], "tap0");
        assert!(r.contains(":FORWARD DROP"));
        assert!(r.contains("-A FORWARD -i bwa -o tap0 -j ACCEPT\n"));
        assert!(r.contains("-A FORWARD -i bwb -o tap0 -j ACCEPT\n"));
        assert!(!r.contains("-i bwi -o tap0"));
        assert!(!r.contains("-i bwa -o bwb") && !r.contains("-i bwb -o bwa"));
        assert!(r.contains("-A FORWARD -i tap0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"));
        assert!(r.contains("-A POSTROUTING -s 172.18.0.0/16 -o tap0 -j MASQUERADE\n"));
        assert!(!r.contains("172.20.0.0/16"));
        assert_eq!(r.matches("COMMIT\n").count(), 2);
    }

    #[test]
    fn the_host_loopback_address_is_dropped_before_the_accept_unless_asked_for() {
        let mut open = net("bwo", "172.18.0.0/16", false);
        open.host_loopback = true;
        let r = ruleset(&[net("bwa", "172.19.0.0/16", false), open], "tap0");
        let drop = r.find("-A FORWARD -i bwa -o tap0 -d 10.0.2.0/24 -j DROP\n").expect("dropped for bwa");
        assert!(drop < r.find("-A FORWARD -i bwa -o tap0 -j ACCEPT\n").unwrap());
        assert!(!r.contains("-i bwo -o tap0 -d "));
    }

    #[test]
    fn ipv6_rules_cover_only_ipv6_networks_and_internal_ones_get_no_way_out() {
        let mut a = net("bwa", "172.18.0.0/16", false);
        a.subnet6 = Some("fd12:3456:789a:1::/64".into());
        let mut i = net("bwi", "172.20.0.0/16", true);
        i.subnet6 = Some("fd12:3456:789a:2::/64".into());
        let r = ruleset6(&[a, i, net("bwv4", "172.21.0.0/16", false)], "tap0");
        assert!(r.contains(":FORWARD DROP"));
        assert!(r.contains("-A FORWARD -i bwa -o tap0 -d fd00::/64 -j DROP\n"));
        assert!(r.contains("-A FORWARD -i bwa -o tap0 -j ACCEPT\n"));
        assert!(r.contains("-A POSTROUTING -s fd12:3456:789a:1::/64 -o tap0 -j MASQUERADE\n"));
        assert!(r.contains("-A FORWARD -i bwi -o bwi -j ACCEPT\n"));
        assert!(!r.contains("-i bwi -o tap0") && !r.contains("fd12:3456:789a:2::/64"));
        assert!(!r.contains("bwv4") && !r.contains("172."));
    }

    #[test]
    fn no_network_leaves_forwarding_closed() {
        let r = ruleset(&[], "tap0");
        assert!(r.contains(":FORWARD DROP"));
        assert!(!r.contains("-A "));
    }
}
