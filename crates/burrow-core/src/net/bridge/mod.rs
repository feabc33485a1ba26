//! User-defined networks (issue #16): one network owner per user, holding a network namespace
//! with a Linux bridge per network, a veth per container endpoint, one slirp4netns (or pasta) for
//! outbound traffic and the networks' DNS resolver (dns.rs). DESIGN.md, "User-defined networks".
//!
//! Why an owner process, and why containers on these networks join its user namespace: a veth
//! can only be moved between two network namespaces by a process with CAP_NET_ADMIN over both
//! owning user namespaces. Sibling user namespaces (one per container, each a child of the
//! host's) give no process that. So, rootless, the owner makes one user namespace U (the store's
//! id mapping, the same every container gets) and one network namespace N owned by U; a
//! container on a user-defined network joins U (OCI `linux.namespaces` user `path`) and creates
//! its own network namespace there, which U then owns too. The owner, root in U, creates the veth
//! pair in N with its peer in the container's namespace. This is what rootless podman does with
//! its pause process and rootless netns. As root there is no U: root has the capabilities
//! everywhere, and containers keep user namespaces of their own.
//!
//! The owner stays in the host's network namespace itself (so its DNS forwarder reaches the
//! host's resolvers, loopback ones included) and does its work inside N and the containers'
//! namespaces from short-lived forked children (nsock.rs explains why a child: a process that has
//! entered a namespace owned by U cannot come back).
//!
//! # The protocol (`DIR/owner.sock`, JSON lines, one request then one reply, both one line)
//! The connection of a `hold` or an `attach` is a lease: the owner lives while one is open, and
//! an `attach`'s endpoints go when its connection closes (the container's monitor holds it for the
//! container's life, so a monitor killed by SIGKILL still detaches). Further requests may follow
//! on the same connection (connect, disconnect). With no lease left the owner exits (see
//! [`OWNER_START_LOCK`]).
//!
//! ```text
//! → {"op":"hold"}
//! ← {"ok":true,"pid":1234,"userns":"/proc/1234/ns/user"}        (userns null as root; "noIpv6Out":WHY
//!                                                               when IPv6 is not routed out)
//! → {"op":"attach","pid":INIT,"container":{"id":..,"name":..},"endpoints":[Endpoint..],"dns":["10.1.2.3",..]}
//! ← {"ok":true,"interfaces":[{"network":ID,"ifname":"eth0","mac":..,"ip":..}]}
//! → {"op":"connect","container":ID,"endpoint":Endpoint}        (on any connection)
//! → {"op":"disconnect","container":ID,"network":NETWORK_ID}
//! → {"op":"status"}
//! ← {"ok":true,"pid":..,"networks":[{"id","name","bridge","endpoints":[{"container","name","ip"}]}]}
//! ← {"ok":false,"code":"ENET_OWNER","message":"..."}          (any request that failed)
//! ```

pub mod client;
pub mod link;
pub mod nat;
pub mod ns;
pub mod owner;

use serde::{Deserialize, Serialize};

/// The owner's socket in its directory (`<run root>/network-owner`, chosen by the CLI).
pub const OWNER_SOCKET: &str = "owner.sock";
/// `{"pid":N,"startTime":T}` of the live owner, written once it listens.
pub const OWNER_RECORD: &str = "owner.json";
/// The owner's stderr and the helpers' (slirp4netns) log.
pub const OWNER_LOG: &str = "owner.log";
/// Taken (created exclusively, holding the taker's pid, as ts/storage/fsutil.ts `withLock`) by a
/// client from "is an owner there?" until its `hold` or `attach` is answered, and by the owner
/// before it decides to exit: so an owner never exits between a client's look and its lease,
/// and a client that finds no socket starts the only new owner.
pub const OWNER_START_LOCK: &str = "start.lock";

/// A user-defined network as the store records it (ts/engine/networks.ts), as far as the owner
/// needs it. The bridge is created at the network's first endpoint and removed after its last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkDef {
    /// Docker's 64-hex network id.
    pub id: String,
    pub name: String,
    /// The bridge's interface name in the owner's namespace: "bw" + the id's first 12.
    pub bridge: String,
    /// IPv4 CIDR, e.g. "172.18.0.0/16".
    pub subnet: String,
    /// The bridge's address, the containers' default gateway and their DNS server.
    pub gateway: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<String>,
    /// No outbound route (no NAT, no forwarding to the outbound helper, no DNS forwarding).
    #[serde(default)]
    pub internal: bool,
    /// `-o allow_host_loopback=true`: the containers reach the host's loopback through the
    /// outbound helper's host address (slirp4netns's 10.0.2.2 and fd00::2), as a container of
    /// its own with `--network slirp4netns:allow_host_loopback=true` does. nat.rs drops it else.
    #[serde(default)]
    pub host_loopback: bool,
    #[serde(default = "default_mtu")]
    pub mtu: u32,
}

fn default_mtu() -> u32 {
    65520
}

/// One container's endpoint on one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub network: NetworkDef,
    /// The address IPAM gave (no prefix length: the network's).
    pub ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6: Option<String>,
    /// "02:42:" + the address's 4 bytes, as Docker derives it, unless given (`--mac-address`).
    pub mac: String,
    /// In the container: eth0, eth1, ... in the order the container joined.
    pub ifname: String,
    /// Names it answers to on this network besides its name and id (`--network-alias`,
    /// compose's service name).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Whether the container's default route goes through this network's gateway (its first
    /// non-internal network).
    #[serde(default)]
    pub default_route: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRef {
    /// 64-hex id (DNS answers its name, the id and the id's first 12).
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    Hold,
    Attach {
        pid: i32,
        container: ContainerRef,
        endpoints: Vec<Endpoint>,
        /// The container's own upstream resolvers (`--dns`, "IP" or "IP:PORT"); empty: the
        /// owner's defaults (the host's /etc/resolv.conf, or what it was started with).
        #[serde(default)]
        dns: Vec<String>,
    },
    Connect {
        container: String,
        endpoint: Box<Endpoint>,
    },
    Disconnect {
        container: String,
        network: String,
    },
    Status,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub network: String,
    pub ifname: String,
    pub mac: String,
    pub ip: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusEndpoint {
    pub container: String,
    pub name: String,
    pub ip: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusNetwork {
    pub id: String,
    pub name: String,
    pub bridge: String,
    pub endpoints: Vec<StatusEndpoint>,
}

/// The one reply shape: `ok` and what the request asked for, or `code` and `message`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// hold: the user namespace a container on these networks joins (None as root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns: Option<String>,
    /// hold: why IPv6 is not routed out of the owner's namespace, when it is not (pasta without
    /// a host IPv6 route); the CLI says it when a container has an `--ipv6` endpoint with a way out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_ipv6_out: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<StatusNetwork>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Reply {
    pub fn err(code: &str, message: impl Into<String>) -> Reply {
        Reply { ok: false, code: Some(code.into()), message: Some(message.into()), ..Default::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_by_op() {
        let r: Request = serde_json::from_str(r#"{"op":"disconnect","container":"c","network":"n"}"#).unwrap();
        assert_eq!(r, Request::Disconnect { container: "c".into(), network: "n".into() });
        assert_eq!(serde_json::to_string(&Request::Hold).unwrap(), r#"{"op":"hold"}"#);
    }
}
