//! slirp4netns: a user-mode TCP/IP stack (libslirp) behind a tap device in the container's
//! namespace. It joins the init's user and network namespaces by pid, configures tap0
//! (10.0.2.100/24 by default, gateway .2, DNS forwarder .3), then writes on its ready fd. Its
//! API socket takes `add_hostfwd` requests: the alternative port handler.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::helper::{self, Helper};
use super::{forward, BoundPort, Ctx, NetConfig, NetError, PortSpec, Proto, Result};

pub fn args(cfg: &NetConfig, pid: i32, ready_fd: i32, exit_fd: i32) -> Vec<String> {
    let mut a = vec!["--configure".to_string(), format!("--mtu={}", cfg.mtu), format!("--ready-fd={ready_fd}"), format!("--exit-fd={exit_fd}")];
    if !cfg.allow_host_loopback {
        a.push("--disable-host-loopback".into());
    }
    if let Some(c) = &cfg.cidr {
        a.push(format!("--cidr={c}"));
    }
    if cfg.enable_ipv6 {
        a.push("--enable-ipv6".into());
    }
    if let Some(s) = &cfg.api_socket {
        a.push(format!("--api-socket={}", s.display()));
    }
    // As podman runs it: its own mount namespace without the host's files, and a syscall filter.
    a.push("--enable-sandbox".into());
    a.push("--enable-seccomp".into());
    a.extend(cfg.helper_args.iter().cloned());
    a.push(pid.to_string());
    a.push("tap0".into());
    a
}

pub fn start(cfg: &NetConfig, pid: i32) -> Result<Helper> {
    let bin = helper::binary(cfg.helper_path.as_deref(), "slirp4netns")?;
    let (ready_r, ready_w) = helper::pipe()?;
    let (exit_r, exit_w) = helper::pipe()?;
    if let Some(s) = &cfg.api_socket {
        // A socket left by an owner that was killed would make slirp4netns refuse to start.
        let _ = std::fs::remove_file(s);
    }
    let a = args(cfg, pid, ready_w.as_raw_fd(), exit_r.as_raw_fd());
    let mut h = helper::spawn("slirp4netns", &bin, &a, &[ready_w.as_raw_fd(), exit_r.as_raw_fd()], Some(exit_w), cfg.log_file.as_deref())?;
    // Only the helper holds these now: EOF on ready_r means it exited.
    drop(ready_w);
    drop(exit_r);
    h.wait_ready(ready_r)?;
    Ok(h)
}

/// The slirp4netns handler binds the host ports itself, after the container exists: check now
/// that they are free, and pick free ones for `-p CONTAINER_PORT`, so that a taken port fails
/// before anything starts.
pub fn reserve(ports: &[PortSpec]) -> Result<Vec<BoundPort>> {
    let mut out = Vec::new();
    for p in ports {
        // libslirp's hostfwd is IPv4 only.
        let ip = if p.host_ip.is_empty() { "0.0.0.0".to_string() } else { p.host_ip.clone() };
        let port = forward::probe_port(&ip, p.host_port, p.protocol)?;
        out.push(BoundPort { host_ip: ip, host_port: port, container_port: p.container_port, protocol: p.protocol, dual: false });
    }
    Ok(out)
}

/// `add_hostfwd` on the API socket: slirp4netns listens on the host port and forwards to the
/// container's address.
pub fn add_hostfwd(api: &Path, p: &BoundPort) -> Result<()> {
    let fail = |detail: String| NetError::PortInUse { addr: p.host_ip.clone(), port: p.host_port, proto: p.protocol.as_str(), why: detail };
    let mut s = UnixStream::connect(api).op(format!("connect to slirp4netns's API socket {}", api.display()))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = serde_json::json!({
        "execute": "add_hostfwd",
        "arguments": { "proto": match p.protocol { Proto::Tcp => "tcp", Proto::Udp => "udp" }, "host_addr": p.host_ip, "host_port": p.host_port, "guest_port": p.container_port },
    });
    s.write_all(req.to_string().as_bytes()).op("write to slirp4netns's API socket")?;
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut answer = String::new();
    s.read_to_string(&mut answer).op("read slirp4netns's answer")?;
    let v: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
    if let Some(e) = v.get("error") {
        return Err(fail(format!("slirp4netns refused it: {}", e.get("desc").and_then(|d| d.as_str()).unwrap_or(&answer))));
    }
    Ok(())
}
