//! pasta (from passt): a tap device in the container's namespace, translated to ordinary sockets
//! of the host, with the host's addresses and routes copied in. Started in the foreground (-f)
//! so that it stays our child (and dies with us); it joins the init's user and network
//! namespaces by pid and configures them (--config-net). Port forwarding of its own (-t/-u/-T/-U)
//! is turned off: published ports go through our forwarder, and nothing in the container reaches
//! the host's loopback unless asked (`allow_host_loopback` keeps pasta's gateway mapping).
//!
//! pasta has no ready fd; it writes its pid file once the namespace is configured, so the pid
//! file is a pipe of ours (/proc/self/fd/N in pasta) and its first bytes mean "ready".

use std::os::fd::AsRawFd;

use super::helper::{self, Helper};
use super::{NetConfig, Result};

pub fn args(cfg: &NetConfig, pid: i32, pid_fd: i32) -> Vec<String> {
    let mut a: Vec<String> =
        ["--config-net", "--foreground", "--quiet", "-t", "none", "-u", "none", "-T", "none", "-U", "none"].iter().map(|s| s.to_string()).collect();
    a.push("--mtu".into());
    a.push(cfg.mtu.to_string());
    a.push("--pid".into());
    a.push(format!("/proc/self/fd/{pid_fd}"));
    if !cfg.allow_host_loopback {
        a.push("--no-map-gw".into());
    }
    if let Some(d) = &cfg.dns_forward {
        a.push("--dns-forward".into());
        a.push(d.clone());
    }
    if !cfg.enable_ipv6 {
        a.push("--ipv4-only".into());
    }
    // As root, pasta would switch to nobody, which could not enter the container's namespaces
    // (and would lose the parent-death signal): stay who we are.
    let uid = nix::unistd::geteuid().as_raw();
    if uid == 0 {
        a.push("--runas".into());
        a.push(format!("{uid}:{}", nix::unistd::getegid().as_raw()));
    }
    a.extend(cfg.helper_args.iter().cloned());
    a.push(pid.to_string());
    a
}

pub fn start(cfg: &NetConfig, pid: i32) -> Result<Helper> {
    let bin = helper::binary(cfg.helper_path.as_deref(), "pasta")?;
    let (ready_r, ready_w) = helper::pipe()?;
    let a = args(cfg, pid, ready_w.as_raw_fd());
    let mut h = helper::spawn("pasta", &bin, &a, &[ready_w.as_raw_fd()], None, cfg.log_file.as_deref())?;
    drop(ready_w);
    h.wait_ready(ready_r)?;
    Ok(h)
}
