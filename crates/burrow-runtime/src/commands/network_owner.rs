//! `[--status-fd FD] network-owner --dir D [--uid-map C:H:S]... [--gid-map C:H:S]...
//! [--helper slirp4netns|pasta] [--helper-path P] [--mtu N] [--dns-upstream IP[:PORT]]...`
//!
//! The user's network owner (burrow_core::net::bridge, whose mod.rs has the design and the
//! protocol). The CLI starts it detached (setsid, stdio to D/owner.log) and waits on the status
//! channel: `{"pid": N}` once it listens on D/owner.sock (ready), or `{"error", "code"}`
//! (ENET_OWNER). Then the channel is let go and the owner lives while it has leases.

use std::path::PathBuf;

use burrow_core::error::Coded;
use burrow_core::net::bridge::ns::parse_map;
use burrow_core::net::bridge::owner::{parse_upstream, Owner, OwnerOpts};
use burrow_core::net::HelperKind;
use burrow_core::runtime::error::{Result, RuntimeError};

use super::flags;
use crate::args::Flag;

const FLAGS: &[Flag] = &[
    Flag("dir", &[], true),
    Flag("uid-map", &[], true),
    Flag("gid-map", &[], true),
    Flag("helper", &[], true),
    Flag("helper-path", &[], true),
    Flag("mtu", &[], true),
    Flag("dns-upstream", &[], true),
];

fn usage(m: String) -> RuntimeError {
    RuntimeError::Usage(format!("network-owner: {m}"))
}

pub fn main(args: &[String]) -> Result<i32> {
    // The name `ps` has always shown for it, also when it runs from burrow-monitor.
    burrow_core::runtime::process::set_name("burrow-runtime");
    let p = flags(args, FLAGS)?;
    if !p.positional.is_empty() {
        return Err(usage(format!("unexpected argument {:?}", p.positional[0])));
    }
    let dir = PathBuf::from(p.value("dir").ok_or_else(|| usage("--dir is required".into()))?);
    let maps = |name: &str| -> Result<Vec<_>> {
        p.values(name).iter().map(|v| parse_map(v).ok_or_else(|| usage(format!("bad --{name} {v:?}: want CONTAINER:HOST:SIZE")))).collect()
    };
    let helper = match p.value("helper") {
        None => None,
        Some("slirp4netns") => Some(HelperKind::Slirp4netns),
        Some("pasta") => Some(HelperKind::Pasta),
        Some(h) => return Err(usage(format!("unknown --helper {h:?}: slirp4netns or pasta"))),
    };
    let mtu = match p.value("mtu") {
        None => 65520,
        Some(m) => m.parse().ok().filter(|m| (1280..=65521).contains(m)).ok_or_else(|| usage(format!("bad --mtu {m:?}")))?,
    };
    let dns_upstreams = p
        .values("dns-upstream")
        .iter()
        .map(|v| parse_upstream(v).ok_or_else(|| usage(format!("bad --dns-upstream {v:?}: want IP or IP:PORT"))))
        .collect::<Result<Vec<_>>>()?;
    let opts = OwnerOpts {
        dir,
        uid_map: maps("uid-map")?,
        gid_map: maps("gid-map")?,
        helper,
        helper_path: p.value("helper-path").map(PathBuf::from),
        mtu,
        dns_upstreams,
    };
    let owner = Owner::start(opts).map_err(|e| RuntimeError::Remote { code: e.code().into(), msg: e.to_string() })?;
    crate::status::pid(std::process::id() as i32);
    let_go_of_status_fd();
    // From here on it serves: what it ran to start, and then to serve each request (a container
    // attaching, leaving), need not stay mapped while it waits.
    crate::resident::shed();
    Ok(owner.run(crate::resident::shed))
}

/// The caller waits for our first report, not for us: its end of the channel reads EOF once
/// ours is closed (the descriptor becomes /dev/null, so nothing reuses its number).
fn let_go_of_status_fd() {
    let args: Vec<String> = std::env::args().collect();
    let fd = args.iter().enumerate().find_map(|(i, a)| {
        if let Some(v) = a.strip_prefix("--status-fd=") {
            v.parse::<i32>().ok()
        } else if a == "--status-fd" {
            args.get(i + 1).and_then(|v| v.parse().ok())
        } else {
            None
        }
    });
    if let (Some(fd), Ok(null)) = (fd.filter(|f| *f > 2), std::fs::File::open("/dev/null")) {
        let _ = nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd);
    }
}
