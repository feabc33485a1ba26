//! User-mode networking for a container (DESIGN.md, "Networking"): the helper that gives its
//! network namespace a way out (slirp4netns or pasta) and the forwarder that publishes its ports.
//!
//! The process that outlives the container owns both: `burrow-runtime monitor` for detached
//! containers, the runtime's own `run` in the foreground. That owner reads a [`NetConfig`] (written
//! by the CLI, ts/network), then
//!   1. [`Network::prepare`] before the container exists: binds the published ports, so a taken
//!      port fails the run before anything starts;
//!   2. [`Network::attach`] once the container's namespaces exist and before its process runs:
//!      starts the helper on the init's pid and waits until it has configured the interface;
//!   3. serves [`Network::poll_fd`] in its poll loop ([`Network::dispatch`] when readable);
//!   4. [`Network::stop`] when the container has exited (also on drop).
//!
//! The helper cannot outlive its owner: it gets PR_SET_PDEATHSIG(SIGKILL), and slirp4netns also
//! an exit fd whose other end only the owner holds.

pub mod bridge;
pub mod bypass;
pub mod dns;
pub mod forward;
pub mod helper;
pub mod nsock;
pub mod pasta;
pub mod slirp;
mod sock;

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use serde::{Deserialize, Serialize};

use crate::error::Coded;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("invalid network configuration {path}: {detail}")]
    Config { path: PathBuf, detail: String },
    #[error("cannot publish port {port}/{proto} on {addr}: {why}")]
    PortInUse { addr: String, port: u16, proto: &'static str, why: String },
    #[error("{helper}: {detail}")]
    Helper { helper: String, detail: String },
    #[error("{op}: {errno}")]
    Sys { op: String, errno: Errno },
}

impl Coded for NetError {
    fn code(&self) -> &'static str {
        match self {
            NetError::Config { .. } => crate::codes::ENET_CONFIG,
            NetError::PortInUse { .. } => crate::codes::EPORT_IN_USE,
            NetError::Helper { .. } => crate::codes::ENET_HELPER,
            NetError::Sys { .. } => crate::codes::ESYSCALL,
        }
    }
}

pub type Result<T> = std::result::Result<T, NetError>;

pub(crate) trait Ctx<T> {
    fn op(self, op: impl Into<String>) -> Result<T>;
}

impl<T> Ctx<T> for std::result::Result<T, Errno> {
    fn op(self, op: impl Into<String>) -> Result<T> {
        self.map_err(|errno| NetError::Sys { op: op.into(), errno })
    }
}

impl<T> Ctx<T> for std::io::Result<T> {
    fn op(self, op: impl Into<String>) -> Result<T> {
        self.map_err(|e| NetError::Sys { op: op.into(), errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)) })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum HelperKind {
    #[serde(rename = "slirp4netns")]
    Slirp4netns,
    #[serde(rename = "pasta")]
    Pasta,
}

/// Who forwards published ports: our forwarder (default); the forwarder plus the bypass, which
/// gives a server on a published TCP port its socket on the host (bypass.rs); or slirp4netns's
/// own `add_hostfwd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PortHandler {
    #[default]
    Burrow,
    Bypass,
    Slirp4netns,
}

/// One published port as the CLI asks for it; `host_port` 0 asks for a free one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortSpec {
    /// Empty: every address, IPv4 and IPv6.
    #[serde(default)]
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Proto,
}

/// What the CLI writes for the runtime (`--network-config FILE`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetConfig {
    /// The helper that gives the namespace a way out; none: ports only (or nothing).
    #[serde(default)]
    pub helper: Option<HelperKind>,
    /// The helper binary (the CLI found it on PATH); default: the kind's name on PATH.
    #[serde(default)]
    pub helper_path: Option<PathBuf>,
    #[serde(default = "default_mtu")]
    pub mtu: u32,
    /// slirp4netns's network (default 10.0.2.0/24).
    #[serde(default)]
    pub cidr: Option<String>,
    /// Whether the container may reach the host's loopback through the gateway address.
    #[serde(default)]
    pub allow_host_loopback: bool,
    #[serde(default)]
    pub enable_ipv6: bool,
    /// pasta: the address whose DNS queries pasta forwards to the host's resolver.
    #[serde(default)]
    pub dns_forward: Option<String>,
    /// Extra helper arguments as the user gave them (`--network pasta:ARG,ARG`).
    #[serde(default)]
    pub helper_args: Vec<String>,
    #[serde(default)]
    pub port_handler: PortHandler,
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    /// port_handler=bypass: where the forwarder listens for the runtime's seccomp notification
    /// fd (the CLI put a `bind` notification rule with this listenerPath in the config).
    #[serde(default)]
    pub seccomp_listener: Option<PathBuf>,
    /// slirp4netns's API socket (needed by the slirp4netns port handler).
    #[serde(default)]
    pub api_socket: Option<PathBuf>,
    /// The helper's stderr goes here (else /dev/null).
    #[serde(default)]
    pub log_file: Option<PathBuf>,
    /// Where the owner writes what it set up (see [`NetState`]), for `burrow port` and `inspect`.
    #[serde(default)]
    pub state_file: Option<PathBuf>,
    /// User-defined networks (bridge/mod.rs): no helper of its own; the network owner in
    /// `owner_dir` attaches the container's endpoints, and this process keeps the connection.
    #[serde(default)]
    pub bridge: Option<BridgeConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BridgeConfig {
    pub owner_dir: PathBuf,
    pub container: bridge::ContainerRef,
    pub endpoints: Vec<bridge::Endpoint>,
    /// The container's `--dns` servers, its resolver's upstreams.
    #[serde(default)]
    pub dns: Vec<String>,
    /// Where the monitor records that the owner went away under a running container
    /// (`{"at": RFC3339, "networks": [names]}`), for `inspect`, `ps` and the next `run`'s warning.
    #[serde(default)]
    pub lost_file: Option<PathBuf>,
}

fn default_mtu() -> u32 {
    65520
}

impl NetConfig {
    pub fn load(path: &Path) -> Result<NetConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| NetError::Config { path: path.into(), detail: e.to_string() })?;
        let c: NetConfig = serde_json::from_str(&text).map_err(|e| NetError::Config { path: path.into(), detail: e.to_string() })?;
        if c.port_handler == PortHandler::Slirp4netns && c.helper != Some(HelperKind::Slirp4netns) && !c.ports.is_empty() {
            return Err(NetError::Config { path: path.into(), detail: "port_handler=slirp4netns needs the slirp4netns network".into() });
        }
        if c.port_handler == PortHandler::Slirp4netns && c.api_socket.is_none() && !c.ports.is_empty() {
            return Err(NetError::Config { path: path.into(), detail: "port_handler=slirp4netns needs an API socket".into() });
        }
        if c.port_handler == PortHandler::Bypass && c.seccomp_listener.is_none() {
            return Err(NetError::Config { path: path.into(), detail: "port_handler=bypass needs a seccomp listener".into() });
        }
        Ok(c)
    }
}

/// A port as it was really bound (a requested 0 replaced by the port the kernel gave).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BoundPort {
    /// "0.0.0.0", "::" (with `dual`: also every IPv4 address) or the address asked for.
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Proto,
    /// One IPv6 socket that also takes IPv4 (the wildcard where the host has IPv6).
    pub dual: bool,
}

/// What the owner writes to `state_file` once the network is up.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetState {
    pub helper: Option<HelperKind>,
    pub helper_pid: Option<i32>,
    pub port_handler: PortHandler,
    pub ports: Vec<BoundPort>,
    pub mtu: u32,
}

pub struct Network {
    cfg: NetConfig,
    fwd: Option<forward::Forwarder>,
    /// slirp4netns port handler: ports checked free at prepare, forwarded by slirp at attach.
    slirp_ports: Vec<BoundPort>,
    helper: Option<helper::Helper>,
    /// User-defined networks: the attach connection to the owner, and one epoll set over it and
    /// the forwarder's, so the caller still polls one descriptor.
    lease: Option<bridge::client::Lease>,
    joint: Option<std::os::fd::OwnedFd>,
    lost: Option<Vec<(String, String)>>,
}

fn epoll_new() -> Result<std::os::fd::OwnedFd> {
    // SAFETY: epoll_create1; owned right away.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if fd < 0 {
        return Err(Errno::last()).op("epoll_create1");
    }
    Ok(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

fn epoll_add(ep: &std::os::fd::OwnedFd, fd: std::os::fd::RawFd, events: u32, token: u64) -> Result<()> {
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: epoll_ctl with a valid event structure.
    if unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
        return Err(Errno::last()).op("epoll_ctl");
    }
    Ok(())
}

const TOKEN_FWD: u64 = 1;
const TOKEN_LEASE: u64 = 2;

impl Network {
    /// Binds the published ports (our forwarder), or checks that they are free (slirp4netns's
    /// handler, which binds them itself once it runs). Nothing is started yet.
    pub fn prepare(cfg: NetConfig) -> Result<Network> {
        let mut fwd = None;
        let mut slirp_ports = Vec::new();
        if !cfg.ports.is_empty() {
            match cfg.port_handler {
                PortHandler::Burrow => fwd = Some(forward::Forwarder::bind(&cfg.ports, None)?),
                PortHandler::Bypass => fwd = Some(forward::Forwarder::bind(&cfg.ports, cfg.seccomp_listener.as_deref())?),
                PortHandler::Slirp4netns => slirp_ports = slirp::reserve(&cfg.ports)?,
            }
        }
        Ok(Network { cfg, fwd, slirp_ports, helper: None, lease: None, joint: None, lost: None })
    }

    /// Starts the helper in the namespaces of `pid` (the container's init, created but not yet
    /// started) and readies the forwarder to connect inside them.
    pub fn attach(&mut self, pid: i32) -> Result<()> {
        match self.cfg.helper {
            Some(HelperKind::Slirp4netns) => {
                let h = slirp::start(&self.cfg, pid)?;
                self.helper = Some(h);
                if !self.slirp_ports.is_empty() {
                    let api = self.cfg.api_socket.clone().unwrap_or_default();
                    for p in &self.slirp_ports {
                        slirp::add_hostfwd(&api, p)?;
                    }
                }
            }
            Some(HelperKind::Pasta) => self.helper = Some(pasta::start(&self.cfg, pid)?),
            None => {}
        }
        if let Some(b) = &self.cfg.bridge {
            // The owner makes the container's interfaces (bridge/mod.rs); the connection stays
            // open as the container's lease.
            let (lease, _interfaces) = bridge::client::Lease::attach(b, pid)?;
            let ep = epoll_new()?;
            epoll_add(&ep, lease.fd().as_raw_fd(), (libc::EPOLLIN | libc::EPOLLRDHUP) as u32, TOKEN_LEASE)?;
            if let Some(f) = &self.fwd {
                epoll_add(&ep, f.epoll().as_raw_fd(), libc::EPOLLIN as u32, TOKEN_FWD)?;
            }
            self.lease = Some(lease);
            self.joint = Some(ep);
        }
        if let Some(f) = self.fwd.as_mut() {
            // In U when the container is on user-defined networks: nsock enters U, then its netns.
            f.attach(nsock::NsSockets::open(pid)?);
        }
        self.write_state();
        Ok(())
    }

    fn write_state(&self) {
        let Some(path) = &self.cfg.state_file else { return };
        let ports = match &self.fwd {
            Some(f) => f.bound(),
            None => self.slirp_ports.clone(),
        };
        let st = NetState {
            helper: self.cfg.helper,
            helper_pid: self.helper.as_ref().map(|h| h.pid()),
            port_handler: self.cfg.port_handler,
            ports,
            mtu: self.cfg.mtu,
        };
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, serde_json::to_string(&st).unwrap_or_default()).is_ok() {
            let _ = std::fs::rename(&tmp, path);
        }
    }

    /// The descriptor the owner's poll loop watches (readable: call `dispatch`).
    pub fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        if let Some(ep) = &self.joint {
            return Some(ep.as_fd());
        }
        self.fwd.as_ref().map(|f| f.epoll().as_fd())
    }

    pub fn dispatch(&mut self) {
        let Some(ep) = &self.joint else {
            if let Some(f) = self.fwd.as_mut() {
                f.dispatch();
            }
            return;
        };
        // SAFETY: zeroed epoll_event is a valid value; epoll_wait fills at most 4 of them.
        let mut evs: [libc::epoll_event; 4] = unsafe { std::mem::zeroed() };
        let n = unsafe { libc::epoll_wait(ep.as_raw_fd(), evs.as_mut_ptr(), evs.len() as libc::c_int, 0) };
        for ev in &evs[..n.max(0) as usize] {
            let token = ev.u64;
            match token {
                TOKEN_FWD => {
                    if let Some(f) = self.fwd.as_mut() {
                        f.dispatch();
                    }
                }
                TOKEN_LEASE => {
                    if let Some(l) = self.lease.as_mut() {
                        if let Some(names) = l.check() {
                            // SAFETY: epoll_ctl DEL on descriptors we own.
                            unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_DEL, l.fd().as_raw_fd(), std::ptr::null_mut()) };
                            self.lost = Some(names);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// The user-defined networks (id, name) lost because the owner went away (once, after the
    /// `dispatch` that saw it; the lost file is written already).
    pub fn take_lost(&mut self) -> Option<Vec<(String, String)>> {
        self.lost.take()
    }

    /// Kills the helper and closes every forwarded connection.
    pub fn stop(&mut self) {
        if let Some(mut h) = self.helper.take() {
            h.stop();
        }
        // Closing the lease detaches the container's endpoints in the owner.
        self.joint = None;
        self.lease = None;
        self.fwd = None;
        for p in [&self.cfg.api_socket, &self.cfg.seccomp_listener].into_iter().flatten() {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl crate::runtime::wait::Served for Network {
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.poll_fd()
    }
    fn ready(&mut self) {
        self.dispatch();
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.stop();
    }
}
