//! The owner namespace's packet filter, as one `iptables-restore` input regenerated whole on
//! every change (the restore replaces the tables it names atomically, so no rule of a removed
//! network lingers and no half-applied set is ever live).
//!
//! - filter FORWARD drops by default: a packet routed from one bridge to another (network A to
//!   network B) matches nothing and is dropped; that is the isolation.
//! - a non-internal network may forward out of the outbound helper's tap device, and replies
//!   (conntrack ESTABLISHED) come back; an internal one forwards nothing at all.
//! - nat POSTROUTING masquerades a non-internal subnet out of the tap device: slirp4netns and
//!   pasta answer only their own 10.0.2.0/24 address.
//! Traffic between two containers of one network is bridged (layer 2) and never reaches these
//! chains (br_netfilter is not loaded in a namespace); the same-bridge accept rule keeps it so if
//! it were.

/// What the ruleset needs to know of one live network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatNet {
    pub bridge: String,
    pub subnet: String,
    pub internal: bool,
}

pub fn ruleset(nets: &[NatNet], out_if: &str) -> String {
    let mut s = String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    if nets.iter().any(|n| !n.internal) {
        s.push_str(&format!("-A FORWARD -i {out_if} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"));
    }
    for n in nets {
        s.push_str(&format!("-A FORWARD -i {b} -o {b} -j ACCEPT\n", b = n.bridge));
        if !n.internal {
            s.push_str(&format!("-A FORWARD -i {} -o {out_if} -j ACCEPT\n", n.bridge));
        }
    }
    s.push_str("COMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n");
    for n in nets.iter().filter(|n| !n.internal) {
        s.push_str(&format!("-A POSTROUTING -s {} -o {out_if} -j MASQUERADE\n", n.subnet));
    }
    s.push_str("COMMIT\n");
    s
}

/// The restore binary: the nft backend first (it needs no lock file under /run, which a user
/// namespace cannot create, and works in a namespace owned by one), else what `iptables-restore`
/// is. Searched on PATH and in the sbin directories an ordinary user's PATH often lacks.
pub fn restore_binary() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<std::path::PathBuf> = std::env::split_paths(&path).collect();
    for d in ["/usr/sbin", "/sbin", "/usr/local/sbin"] {
        dirs.push(d.into());
    }
    for name in ["iptables-nft-restore", "iptables-restore"] {
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
        NatNet { bridge: b.into(), subnet: s.into(), internal }
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
    fn no_network_leaves_forwarding_closed() {
        let r = ruleset(&[], "tap0");
        assert!(r.contains(":FORWARD DROP"));
        assert!(!r.contains("-A "));
    }
}
