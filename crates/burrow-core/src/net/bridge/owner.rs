//! The network owner (`burrow-runtime network-owner`, mod.rs for the design and the protocol):
//! one single-threaded poll loop over its socket, its clients' connections, the resolver's
//! sockets and a signalfd. Work inside N and the containers' namespaces is done by forked
//! children (ns.rs) over rtnetlink (link.rs); the packet filter is one iptables-restore (nat.rs).
//!
//! Rootless, the owner first moves itself into a new user namespace U (the store's maps), so
//! that N and the containers' namespaces, all owned by U, are its to configure, while it stays
//! in the host's network namespace (its DNS forwarding and slirp4netns's sockets are the host's).
//! `/proc/OWNER/ns/user` is then U, the path a container on these networks joins.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use oci_spec::runtime::LinuxIdMapping;

use super::link::{self, Nl};
use super::nat::{self, NatNet};
use super::ns;
use super::{ContainerRef, Endpoint, Interface, NetworkDef, Reply, Request, StatusEndpoint, StatusNetwork};
use super::{OWNER_LOG, OWNER_RECORD, OWNER_SOCKET, OWNER_START_LOCK};
use crate::error::Coded;
use crate::net::dns::{Record, Resolver};
use crate::net::helper::{self, Helper};
use crate::net::HelperKind;

/// How long a new owner waits for its first lease before it leaves (a CLI that started it and
/// died before asking).
const FIRST_LEASE_WAIT: Duration = Duration::from_secs(10);
/// The outbound helper's device in N.
const OUT_IF: &str = "tap0";
/// The IPv6 address of N on the outbound helper's network, and the helper's (slirp4netns's
/// defaults; `--configure` leaves IPv6 to router advertisements, which N, a router, ignores).
const OUT_ADDR6: &str = "fd00::100";
const OUT_GW6: &str = "fd00::2";
/// How often the outbound helper is restarted in a row after it died, and the first wait
/// (doubled each time): a helper that keeps dying is left dead, and says so in the log.
const HELPER_RESTARTS: u32 = 5;
const HELPER_BACKOFF: Duration = Duration::from_millis(100);
/// A helper that ran this long before it died starts a new count.
const HELPER_STABLE: Duration = Duration::from_secs(60);
const CODE: &str = "ENET_OWNER";

#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error("network owner: {0}")]
    Failed(String),
}

impl Coded for OwnerError {
    fn code(&self) -> &'static str {
        crate::codes::ENET_OWNER
    }
}

type Result<T> = std::result::Result<T, OwnerError>;

fn fail(s: impl Into<String>) -> OwnerError {
    OwnerError::Failed(s.into())
}

pub struct OwnerOpts {
    pub dir: PathBuf,
    pub uid_map: Vec<LinuxIdMapping>,
    pub gid_map: Vec<LinuxIdMapping>,
    /// None: slirp4netns, else pasta when slirp4netns is not installed.
    pub helper: Option<HelperKind>,
    pub helper_path: Option<PathBuf>,
    pub mtu: u32,
    /// Empty: the host's resolvers.
    pub dns_upstreams: Vec<SocketAddr>,
}

/// "IP" or "IP:PORT" ("[V6]:PORT") as an upstream; port 53 by default.
pub fn parse_upstream(s: &str) -> Option<SocketAddr> {
    s.parse::<SocketAddr>().ok().or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
}

struct Conn {
    id: u64,
    s: UnixStream,
    buf: Vec<u8>,
    lease: bool,
}

struct Ep {
    e: Endpoint,
    host_if: String,
}

struct Ctr {
    r: ContainerRef,
    netns: OwnedFd,
    dns: Vec<SocketAddr>,
    eps: Vec<Ep>,
    conn: u64,
}

pub struct Owner {
    dir: PathBuf,
    mtu: u32,
    netns: OwnedFd,
    rootless: bool,
    restore: PathBuf,
    /// ip6tables-restore, where IPv6 is (N forwards IPv6 then, and filters it).
    restore6: Option<PathBuf>,
    helper: Option<Helper>,
    helper_kind: HelperKind,
    helper_path: Option<PathBuf>,
    /// When the running helper started, restarts in a row, and when the next is due.
    helper_since: Instant,
    helper_restarts: u32,
    helper_restart_at: Option<Instant>,
    /// Why the running helper routes no IPv6 out of N although the kernel has IPv6 (pasta on a
    /// host without an IPv6 default route): said in the log and to every `hold`.
    no_ipv6_out: Option<String>,
    resolver: Resolver,
    listener: UnixListener,
    conns: Vec<Conn>,
    next_conn: u64,
    nets: BTreeMap<String, NetworkDef>,
    ctrs: BTreeMap<String, Ctr>,
    veth_seq: u32,
    started: Instant,
    ever_leased: bool,
}

fn log(msg: &str) {
    eprintln!("{} network-owner[{}]: {msg}", crate::runtime::state::now_rfc3339(), std::process::id());
}

impl Owner {
    /// Makes the namespaces, the outbound helper and the socket; the owner is ready when this
    /// returns (its record written).
    pub fn start(o: OwnerOpts) -> Result<Owner> {
        let rootless = !nix::unistd::geteuid().is_root() && !o.uid_map.is_empty();
        if !nix::unistd::geteuid().is_root() && o.uid_map.is_empty() {
            return Err(fail("rootless, the owner needs the store's id maps (--uid-map, --gid-map)"));
        }
        // Before anything of ours exists: U owns what we make from here on.
        if rootless {
            ns::enter_new_userns(&o.uid_map, &o.gid_map).map_err(|e| fail(format!("cannot make its user namespace: {e}")))?;
        }
        let restore = nat::restore_binary()
            .ok_or_else(|| fail("iptables is not installed (iptables-restore not found): user-defined networks need it for their NAT and isolation; install it (apt-get install iptables)"))?;
        // IPv6 where the kernel has it: `--ipv6` networks route it out too, so N forwards it and
        // ip6tables filters it (the same package as iptables).
        let ipv6 = Path::new("/proc/sys/net/ipv6").exists();
        let restore6 = match ipv6 {
            true => Some(nat::restore6_binary().ok_or_else(|| {
                fail("ip6tables-restore not found: user-defined networks need it for their IPv6 isolation; install iptables (apt-get install iptables)")
            })?),
            false => None,
        };
        let netns = ns::new_netns().map_err(|e| fail(format!("cannot make its network namespace: {e}")))?;
        ns::in_netns(netns.as_fd(), move || {
            let mut nl = Nl::open()?;
            nl.run(link::up_msg(link::index("lo")?), "lo up")?;
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(|e| format!("ip_forward=1: {e}"))?;
            if ipv6 {
                std::fs::write("/proc/sys/net/ipv6/conf/all/forwarding", "1").map_err(|e| format!("IPv6 forwarding=1: {e}"))?;
            }
            Ok(Vec::new())
        })
        .map_err(|e| fail(format!("cannot configure its network namespace: {e}")))?;
        let resolver_defaults = if o.dns_upstreams.is_empty() { Resolver::host_upstreams() } else { o.dns_upstreams.clone() };
        let resolver = Resolver::new(resolver_defaults).map_err(|e| fail(format!("resolver: {e}")))?;
        let sock = o.dir.join(OWNER_SOCKET);
        // A socket left by an owner that was killed: the CLI holds the start lock while it
        // starts us, so no live owner listens there.
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock).map_err(|e| fail(format!("listen on {}: {e}", sock.display())))?;
        listener.set_nonblocking(true).map_err(|e| fail(format!("listen: {e}")))?;
        let helper_kind = match o.helper {
            Some(k) => k,
            None if helper::binary(o.helper_path.as_deref(), "slirp4netns").is_ok() => HelperKind::Slirp4netns,
            None => HelperKind::Pasta,
        };
        let mut me = Owner {
            dir: o.dir.clone(),
            mtu: o.mtu,
            netns,
            rootless,
            restore,
            restore6,
            helper: None,
            helper_kind,
            helper_path: o.helper_path.clone(),
            helper_since: Instant::now(),
            helper_restarts: 0,
            helper_restart_at: None,
            no_ipv6_out: None,
            resolver,
            listener,
            conns: Vec::new(),
            next_conn: 1,
            nets: BTreeMap::new(),
            ctrs: BTreeMap::new(),
            veth_seq: 0,
            started: Instant::now(),
            ever_leased: false,
        };
        // The closed filter first: it also proves iptables works in N before anyone relies on it.
        me.apply_rules().inspect_err(|_| {
            let _ = std::fs::remove_file(&sock);
        })?;
        match me.start_helper() {
            Ok(h) => {
                me.helper = Some(h);
                me.check_ipv6_out();
            }
            Err(e) => {
                let _ = std::fs::remove_file(&sock);
                return Err(e);
            }
        }
        let pid = std::process::id() as i32;
        crate::runtime::holder::write_atomic(
            &o.dir.join(OWNER_RECORD),
            &serde_json::json!({ "pid": pid, "startTime": crate::runtime::state::proc_start_time(pid).unwrap_or(0) }).to_string(),
        );
        log(&format!(
            "ready ({}), helper {} pid {}",
            if rootless { "rootless" } else { "root" },
            me.helper_name(),
            me.helper.as_ref().map(|h| h.pid()).unwrap_or(0)
        ));
        Ok(me)
    }

    /// The outbound helper for N (at the start, and again after it died: the same arguments,
    /// and N's side of its network configured again, since its tap device died with it).
    fn start_helper(&self) -> Result<Helper> {
        let log_file = self.dir.join(OWNER_LOG);
        let (kind, helper_path, ipv6) = (self.helper_kind, self.helper_path.as_deref(), self.restore6.is_some());
        let nsfd = self.netns.as_raw_fd();
        let nspath = format!("/proc/self/fd/{nsfd}");
        let h = match kind {
            HelperKind::Slirp4netns => {
                let bin = helper::binary(helper_path, "slirp4netns").map_err(|e| fail(e.to_string()))?;
                let (ready_r, ready_w) = helper::pipe().map_err(|e| fail(e.to_string()))?;
                let (exit_r, exit_w) = helper::pipe().map_err(|e| fail(e.to_string()))?;
                // By path: slirp4netns joins N only (we are in U already; given a pid or
                // --userns-path it would try to enter U again). No --disable-host-loopback:
                // whether a network reaches the host's loopback is decided per network by the
                // filter in N (nat.rs).
                let mut args = vec![
                    "--configure".to_string(),
                    format!("--mtu={}", self.mtu.min(65521)),
                    format!("--ready-fd={}", ready_w.as_raw_fd()),
                    format!("--exit-fd={}", exit_r.as_raw_fd()),
                    "--enable-sandbox".into(),
                    "--enable-seccomp".into(),
                ];
                if ipv6 {
                    args.push("--enable-ipv6".into());
                }
                args.extend(["--netns-type=path".into(), nspath, OUT_IF.into()]);
                let mut h = helper::spawn("slirp4netns", &bin, &args, &[ready_w.as_raw_fd(), exit_r.as_raw_fd(), nsfd], Some(exit_w), Some(&log_file))
                    .map_err(|e| fail(e.to_string()))?;
                drop(ready_w);
                drop(exit_r);
                h.wait_ready(ready_r).map_err(|e| fail(e.to_string()))?;
                if ipv6 {
                    // Our own address on its network and the default route through it; the
                    // helper is stopped (by drop) if N cannot take them.
                    ns::in_netns(self.netns.as_fd(), || {
                        let mut nl = Nl::open()?;
                        let i = link::index(OUT_IF)?;
                        let (addr, gw) = (OUT_ADDR6.parse().expect("constant"), OUT_GW6.parse().expect("constant"));
                        match nl.try_run(link::addr6_msg(i, addr, 64)) {
                            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                            Err(e) => return Err(format!("address {OUT_ADDR6}/64 on {OUT_IF}: {}", e.desc())),
                        }
                        match nl.try_run(link::default_route6_msg(gw)) {
                            Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(Vec::new()),
                            Err(e) => Err(format!("IPv6 default route via {OUT_GW6}: {}", e.desc())),
                        }
                    })
                    .map_err(|e| fail(format!("slirp4netns's IPv6: {e}")))?;
                }
                h
            }
            HelperKind::Pasta => {
                let bin = helper::binary(helper_path, "pasta")
                    .map_err(|_| fail("neither slirp4netns nor pasta is installed: user-defined networks need one for outbound traffic; install slirp4netns (apt-get install slirp4netns)"))?;
                let (ready_r, ready_w) = helper::pipe().map_err(|e| fail(e.to_string()))?;
                // slirp4netns's layout, so that nat.rs's rules hold for either helper: N is
                // 10.0.2.100/24 and fd00::100/64 on tap0, the gateways 10.0.2.2 and fd00::2. No
                // --no-map-gw: pasta connects what goes to its gateway addresses to the host's
                // loopback, as slirp4netns does with its host address, and the filter in N
                // decides per network whether that is reached (`allow_host_loopback`).
                let mut args: Vec<String> = [
                    "--config-net",
                    "--foreground",
                    "--quiet",
                    "-t",
                    "none",
                    "-u",
                    "none",
                    "-T",
                    "none",
                    "-U",
                    "none",
                    "-I",
                    OUT_IF,
                    "-a",
                    "10.0.2.100",
                    "-n",
                    "24",
                    "-g",
                    "10.0.2.2",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                // IPv6 only where the host has an IPv6 default route: pasta takes its IPv6 side
                // from that interface and leaves IPv6 off without one (check_ipv6_out).
                if ipv6 {
                    args.extend(["-a".into(), OUT_ADDR6.into(), "-g".into(), OUT_GW6.into()]);
                } else {
                    args.push("--ipv4-only".into());
                }
                args.extend(["--mtu".into(), self.mtu.min(65520).to_string(), "--pid".into(), format!("/proc/self/fd/{}", ready_w.as_raw_fd())]);
                if nix::unistd::geteuid().is_root() && !self.rootless {
                    args.extend(["--runas".into(), "0:0".into()]);
                }
                args.extend(["--netns".into(), nspath]);
                let mut h = helper::spawn("pasta", &bin, &args, &[ready_w.as_raw_fd(), nsfd], None, Some(&log_file)).map_err(|e| fail(e.to_string()))?;
                drop(ready_w);
                h.wait_ready(ready_r).map_err(|e| fail(e.to_string()))?;
                h
            }
        };
        Ok(h)
    }

    fn helper_name(&self) -> &'static str {
        match self.helper_kind {
            HelperKind::Slirp4netns => "slirp4netns",
            HelperKind::Pasta => "pasta",
        }
    }

    /// Whether N got its address on the helper's IPv6 network (slirp4netns: always, we add it;
    /// pasta: only where the host has an IPv6 default route, since pasta takes its IPv6 side
    /// from that interface and otherwise leaves IPv6 off, where slirp4netns needs nothing of the
    /// host). Without it `--ipv6` networks still work between containers but reach nothing
    /// outside over IPv6: the log and every `hold` say so, and the CLI warns a container that
    /// has such an endpoint.
    fn check_ipv6_out(&mut self) {
        self.no_ipv6_out = None;
        if self.restore6.is_none() {
            return;
        }
        // /proc/net follows the reader's network namespace: the child's, N.
        let want = OUT_ADDR6.parse::<std::net::Ipv6Addr>().expect("constant").octets().iter().map(|b| format!("{b:02x}")).collect::<String>();
        let found = ns::in_netns(self.netns.as_fd(), move || {
            let t = std::fs::read_to_string("/proc/net/if_inet6").map_err(|e| e.to_string())?;
            match t.lines().any(|l| l.starts_with(&want) && l.split_whitespace().last() == Some(OUT_IF)) {
                true => Ok(Vec::new()),
                false => Err("absent".into()),
            }
        })
        .is_ok();
        if !found {
            let why = match self.helper_kind {
                HelperKind::Pasta => "the outbound helper, pasta, routes no IPv6: it takes its IPv6 side from the host's interface with an IPv6 default route, and this host has none. Containers on --ipv6 networks reach each other over IPv6, but nothing outside (the host's [::1] included). slirp4netns routes IPv6 out without a host route: unset BURROW_NETWORK=pasta (or [containers] network = \"pasta\"); the owner takes slirp4netns when it next starts, after the last container on a user-defined network has stopped",
                HelperKind::Slirp4netns => "the outbound helper, slirp4netns, did not configure IPv6: containers on --ipv6 networks reach each other over IPv6, but nothing outside",
            };
            log(why);
            self.no_ipv6_out = Some(why.to_string());
        }
    }

    /// After the outbound helper died: a new one, with the same arguments, and the filter again
    /// (it names the tap device, which the new helper made anew). Another try later when this
    /// one fails, until HELPER_RESTARTS in a row.
    fn restart_helper(&mut self) {
        self.helper_restart_at = None;
        self.helper_restarts += 1;
        let n = self.helper_restarts;
        let r = self.start_helper().and_then(|h| {
            self.helper = Some(h);
            self.check_ipv6_out();
            self.apply_rules()
        });
        match r {
            Ok(()) => {
                self.helper_since = Instant::now();
                log(&format!("outbound helper restarted (restart {n} of {HELPER_RESTARTS}), pid {}", self.helper.as_ref().map(|h| h.pid()).unwrap_or(0)));
            }
            Err(e) => {
                log(&format!("outbound helper restart {n} of {HELPER_RESTARTS} failed: {e}"));
                self.schedule_restart();
            }
        }
    }

    /// The next restart after the back-off, or none when the restarts in a row are used up.
    fn schedule_restart(&mut self) {
        if self.helper_restarts >= HELPER_RESTARTS {
            log(&format!("the outbound helper died {HELPER_RESTARTS} times in a row: not restarted again; containers on user-defined networks have no outbound traffic until the owner is restarted (the last container on a network leaves)"));
            return;
        }
        let wait = HELPER_BACKOFF * 2u32.pow(self.helper_restarts);
        self.helper_restart_at = Some(Instant::now() + wait);
    }

    fn leases(&self) -> usize {
        self.conns.iter().filter(|c| c.lease).count()
    }

    /// The loop, until SIGTERM or no lease is left. Returns the exit status. `settled` is called
    /// after each round that served requests (leases come and go; DNS queries are not requests):
    /// the caller's moment to give back what serving them mapped (burrow-runtime's resident.rs).
    pub fn run(mut self, settled: fn()) -> i32 {
        let sfd = match crate::runtime::wait::block_signals() {
            Ok(s) => s,
            Err(e) => {
                log(&format!("signals: {e}"));
                return 1;
            }
        };
        loop {
            let idle = self.leases() == 0 && (self.ever_leased || self.started.elapsed() >= FIRST_LEASE_WAIT);
            if idle && self.try_exit() {
                log("no lease left: exiting");
                return 0;
            }
            let mut timeout = if idle {
                Some(Duration::from_millis(50))
            } else if self.leases() == 0 {
                Some(FIRST_LEASE_WAIT.saturating_sub(self.started.elapsed()) + Duration::from_millis(1))
            } else {
                None
            };
            for d in [self.resolver.next_deadline(), self.helper_restart_at].into_iter().flatten() {
                let left = d.saturating_duration_since(Instant::now());
                timeout = Some(timeout.map_or(left, |t| t.min(left)));
            }
            let (ready_sig, ready_listen, ready_conns, ready_dns) = {
                let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN), PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
                for c in &self.conns {
                    fds.push(PollFd::new(c.s.as_fd(), PollFlags::POLLIN));
                }
                let dns_fds: Vec<BorrowedFd<'_>> = self.resolver.poll_fds();
                let dns_raw: Vec<i32> = dns_fds.iter().map(|f| f.as_raw_fd()).collect();
                for f in dns_fds {
                    fds.push(PollFd::new(f, PollFlags::POLLIN));
                }
                let t = match timeout {
                    Some(d) => PollTimeout::try_from(d.as_millis().min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX),
                    None => PollTimeout::NONE,
                };
                match poll(&mut fds, t) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => {
                        log(&format!("poll: {e}"));
                        return 1;
                    }
                }
                let r: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
                let nc = self.conns.len();
                let conns: Vec<u64> = (0..nc).filter(|i| r[2 + i]).map(|i| self.conns[i].id).collect();
                let dns: Vec<i32> = dns_raw.iter().enumerate().filter(|(i, _)| r[2 + nc + i]).map(|(_, f)| *f).collect();
                (r[0], r[1], conns, dns)
            };
            if ready_sig {
                while let Ok(Some(si)) = sfd.read_signal() {
                    match si.ssi_signo as i32 {
                        libc::SIGTERM | libc::SIGINT | libc::SIGHUP => {
                            log("terminated");
                            self.shutdown();
                            return 0;
                        }
                        libc::SIGCHLD => self.reap(),
                        _ => {}
                    }
                }
            }
            if ready_listen {
                self.accept();
            }
            let served = !ready_conns.is_empty();
            for id in ready_conns {
                self.serve(id);
            }
            if served {
                settled();
            }
            for fd in ready_dns {
                self.resolver.dispatch(fd);
            }
            if self.resolver.next_deadline().is_some_and(|d| d <= Instant::now()) {
                self.resolver.expire(Instant::now());
            }
            if self.helper_restart_at.is_some_and(|d| d <= Instant::now()) {
                self.restart_helper();
            }
        }
    }

    /// SIGCHLD: the outbound helper died (nothing else of ours outlives a call): restarted
    /// after a back-off, with a line in the log either way.
    fn reap(&mut self) {
        let hpid = self.helper.as_ref().map(|h| h.pid()).unwrap_or(0);
        if hpid <= 0 {
            return;
        }
        use nix::sys::wait::WaitStatus;
        let how = match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(hpid), Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => format!("exited with status {c}"),
            Ok(WaitStatus::Signaled(_, sig, _)) => format!("was killed by {sig:?}"),
            _ => return,
        };
        // Reaped: its Helper must not signal or wait for that pid again.
        if let Some(mut h) = self.helper.take() {
            h.forget();
        }
        if self.helper_since.elapsed() >= HELPER_STABLE {
            self.helper_restarts = 0;
        }
        log(&format!("the outbound helper ({}, pid {hpid}) {how}: no outbound traffic until it is restarted", self.helper_name()));
        self.schedule_restart();
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((s, _)) => {
                    let _ = s.set_nonblocking(false);
                    let id = self.next_conn;
                    self.next_conn += 1;
                    self.conns.push(Conn { id, s, buf: Vec::new(), lease: false });
                }
                Err(_) => return,
            }
        }
    }

    /// Reads what a connection sent and answers its complete lines; a closed connection ends
    /// its lease and detaches its containers.
    fn serve(&mut self, id: u64) {
        let Some(i) = self.conns.iter().position(|c| c.id == id) else { return };
        let mut chunk = [0u8; 16384];
        let n = match self.conns[i].s.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return,
            Err(_) => 0,
        };
        if n == 0 || self.conns[i].buf.len() > (1 << 20) {
            self.close(id);
            return;
        }
        self.conns[i].buf.extend_from_slice(&chunk[..n]);
        while let Some(i) = self.conns.iter().position(|c| c.id == id) {
            let Some(nl) = self.conns[i].buf.iter().position(|b| *b == b'\n') else { break };
            let line: Vec<u8> = self.conns[i].buf.drain(..=nl).collect();
            let reply = match serde_json::from_slice::<Request>(&line) {
                Ok(req) => self.handle(id, req),
                Err(e) => Reply::err(CODE, format!("bad request: {e}")),
            };
            let mut out = serde_json::to_string(&reply).unwrap_or_else(|_| r#"{"ok":false}"#.into());
            out.push('\n');
            let Some(i) = self.conns.iter().position(|c| c.id == id) else { break };
            if self.conns[i].s.write_all(out.as_bytes()).is_err() {
                self.close(id);
                break;
            }
        }
    }

    fn close(&mut self, id: u64) {
        let Some(i) = self.conns.iter().position(|c| c.id == id) else { return };
        self.conns.remove(i);
        let gone: Vec<String> = self.ctrs.values().filter(|c| c.conn == id).map(|c| c.r.id.clone()).collect();
        for c in gone {
            self.detach(&c);
        }
    }

    fn handle(&mut self, conn: u64, req: Request) -> Reply {
        let pid = std::process::id() as i32;
        match req {
            Request::Hold => {
                self.lease(conn);
                Reply {
                    ok: true,
                    pid: Some(pid),
                    userns: self.rootless.then(|| format!("/proc/{pid}/ns/user")),
                    no_ipv6_out: self.no_ipv6_out.clone(),
                    ..Default::default()
                }
            }
            Request::Attach { pid: init, container, endpoints, dns } => {
                self.lease(conn);
                match self.attach(conn, init, container, endpoints, dns) {
                    Ok(interfaces) => Reply { ok: true, pid: Some(pid), interfaces, ..Default::default() },
                    Err(e) => Reply::err(CODE, e.to_string()),
                }
            }
            Request::Connect { container, endpoint } => match self.connect(&container, *endpoint) {
                Ok(i) => Reply { ok: true, pid: Some(pid), interfaces: vec![i], ..Default::default() },
                Err(e) => Reply::err(CODE, e.to_string()),
            },
            Request::Disconnect { container, network } => match self.disconnect(&container, &network) {
                Ok(()) => Reply { ok: true, pid: Some(pid), ..Default::default() },
                Err(e) => Reply::err(CODE, e.to_string()),
            },
            Request::Status => Reply { ok: true, pid: Some(pid), networks: self.status(), ..Default::default() },
        }
    }

    fn lease(&mut self, conn: u64) {
        if let Some(c) = self.conns.iter_mut().find(|c| c.id == conn) {
            c.lease = true;
            self.ever_leased = true;
        }
    }

    fn status(&self) -> Vec<StatusNetwork> {
        self.nets
            .values()
            .map(|n| StatusNetwork {
                id: n.id.clone(),
                name: n.name.clone(),
                bridge: n.bridge.clone(),
                endpoints: self
                    .ctrs
                    .values()
                    .flat_map(|c| {
                        c.eps.iter().filter(|e| e.e.network.id == n.id).map(|e| StatusEndpoint {
                            container: c.r.id.clone(),
                            name: c.r.name.clone(),
                            ip: e.e.ip.clone(),
                        })
                    })
                    .collect(),
            })
            .collect()
    }

    fn attach(&mut self, conn: u64, init: i32, container: ContainerRef, endpoints: Vec<Endpoint>, dns: Vec<String>) -> Result<Vec<Interface>> {
        if self.ctrs.contains_key(&container.id) {
            return Err(fail(format!("container {} is attached already", container.name)));
        }
        let mut ups = Vec::new();
        for d in &dns {
            ups.push(parse_upstream(d).ok_or_else(|| fail(format!("bad DNS server {d:?}: want IP or IP:PORT")))?);
        }
        let path = format!("/proc/{init}/ns/net");
        let netns = std::fs::File::open(&path).map(OwnedFd::from).map_err(|e| fail(format!("open {path}: {e} (is the container running?)")))?;
        self.ctrs.insert(container.id.clone(), Ctr { r: container.clone(), netns, dns: ups, eps: Vec::new(), conn });
        let mut out = Vec::new();
        for e in endpoints {
            match self.add_endpoint(&container.id, e) {
                Ok(i) => out.push(i),
                Err(err) => {
                    self.detach(&container.id);
                    return Err(err);
                }
            }
        }
        Ok(out)
    }

    fn connect(&mut self, container: &str, e: Endpoint) -> Result<Interface> {
        let id = self.find(container)?;
        if self.ctrs[&id].eps.iter().any(|x| x.e.network.id == e.network.id) {
            return Err(fail(format!("container {container} is already connected to network {}", e.network.name)));
        }
        self.add_endpoint(&id, e)
    }

    fn disconnect(&mut self, container: &str, network: &str) -> Result<()> {
        let id = self.find(container)?;
        let c = self.ctrs.get_mut(&id).expect("found");
        let Some(i) = c.eps.iter().position(|x| x.e.network.id == network || x.e.network.name == network) else {
            return Err(fail(format!("container {container} is not connected to network {network}")));
        };
        let ep = c.eps.remove(i);
        self.del_veth(&ep.host_if);
        self.after_change(&ep.e.network.id);
        Ok(())
    }

    /// A container by id, name or unique id prefix.
    fn find(&self, key: &str) -> Result<String> {
        if self.ctrs.contains_key(key) {
            return Ok(key.to_string());
        }
        let m: Vec<&String> = self.ctrs.values().filter(|c| c.r.name == key || c.r.id.starts_with(key)).map(|c| &c.r.id).collect();
        match m.as_slice() {
            [one] => Ok((*one).clone()),
            _ => Err(fail(format!("no container {key} is attached to the network owner"))),
        }
    }

    fn detach(&mut self, id: &str) {
        let Some(c) = self.ctrs.remove(id) else { return };
        for ep in c.eps {
            // Gone already when the container's namespace went (a veth dies with either end).
            self.del_veth(&ep.host_if);
            self.after_change(&ep.e.network.id);
        }
    }

    fn del_veth(&self, host_if: &str) {
        let name = host_if.to_string();
        let _ = ns::in_netns(self.netns.as_fd(), move || {
            let mut nl = Nl::open()?;
            match nl.try_run(link::del_msg(&name)) {
                Ok(()) | Err(nix::errno::Errno::ENODEV) => Ok(Vec::new()),
                Err(e) => Err(format!("delete {name}: {e}")),
            }
        });
    }

    /// After an endpoint of `net` went: its records, or the whole network when it was the last.
    fn after_change(&mut self, net: &str) {
        let used = self.ctrs.values().any(|c| c.eps.iter().any(|e| e.e.network.id == net));
        if used {
            self.publish(net);
            return;
        }
        if let Some(def) = self.nets.remove(net) {
            self.resolver.remove_network(net);
            let bridge = def.bridge.clone();
            let _ = ns::in_netns(self.netns.as_fd(), move || {
                let mut nl = Nl::open()?;
                let _ = nl.try_run(link::del_msg(&bridge));
                Ok(Vec::new())
            });
            if let Err(e) = self.apply_rules() {
                log(&e.to_string());
            }
        }
    }

    /// The resolver's records of network `net`, from every endpoint on it.
    fn publish(&mut self, net: &str) {
        let mut records = Vec::new();
        for c in self.ctrs.values() {
            for ep in c.eps.iter().filter(|e| e.e.network.id == net) {
                let mut names = vec![c.r.name.clone(), c.r.id.clone()];
                if c.r.id.len() > 12 {
                    names.push(c.r.id[..12].to_string());
                }
                names.extend(ep.e.aliases.iter().cloned());
                let mut addrs: Vec<IpAddr> = ep.e.ip.parse().into_iter().collect();
                if let Some(v6) = ep.e.ip6.as_deref().and_then(|a| a.parse().ok()) {
                    addrs.push(v6);
                }
                records.push(Record { names, addrs, upstreams: c.dns.clone() });
            }
        }
        self.resolver.set_records(net, records);
    }

    /// The bridge, its address, its resolver sockets and its rules, at a network's first endpoint.
    fn ensure_net(&mut self, def: &NetworkDef) -> Result<()> {
        if self.nets.contains_key(&def.id) {
            return Ok(());
        }
        let (_, prefix) = link::parse_cidr(&def.subnet).ok_or_else(|| fail(format!("network {}: bad subnet {:?}", def.name, def.subnet)))?;
        let gw: Ipv4Addr = def.gateway.parse().map_err(|_| fail(format!("network {}: bad gateway {:?}", def.name, def.gateway)))?;
        let (bridge, mtu) = (def.bridge.clone(), def.mtu);
        let v6 = v6_of(def.subnet6.as_deref(), def.gateway6.as_deref()).map_err(|e| fail(format!("network {}: {e}", def.name)))?;
        let fds = ns::in_netns(self.netns.as_fd(), move || {
            let mut nl = Nl::open()?;
            nl.run(link::bridge_msg(&bridge, mtu), &format!("create bridge {bridge}"))?;
            let i = link::index(&bridge)?;
            nl.run(link::addr_msg(i, gw, prefix), &format!("address {gw}/{prefix} on {bridge}"))?;
            if let Some((gw6, p6)) = v6 {
                nl.run(link::addr6_msg(i, gw6, p6), &format!("address {gw6}/{p6} on {bridge}"))?;
            }
            nl.run(link::up_msg(i), &format!("{bridge} up"))?;
            let udp = std::net::UdpSocket::bind((gw, 53)).map_err(|e| format!("DNS on {gw}:53/udp: {e}"))?;
            let tcp = std::net::TcpListener::bind((gw, 53)).map_err(|e| format!("DNS on {gw}:53/tcp: {e}"))?;
            udp.set_nonblocking(true).map_err(|e| e.to_string())?;
            tcp.set_nonblocking(true).map_err(|e| e.to_string())?;
            Ok(vec![OwnedFd::from(udp), OwnedFd::from(tcp)])
        })
        .map_err(|e| fail(format!("network {}: {e}", def.name)))?;
        let mut it = fds.into_iter();
        let (Some(udp), Some(tcp)) = (it.next(), it.next()) else { return Err(fail("the DNS sockets did not come back")) };
        self.resolver.add_network(&def.id, std::net::UdpSocket::from(udp), Some(std::net::TcpListener::from(tcp)), !def.internal);
        self.nets.insert(def.id.clone(), def.clone());
        if let Err(e) = self.apply_rules() {
            self.after_change(&def.id);
            return Err(e);
        }
        Ok(())
    }

    /// One endpoint: a veth from the network's bridge in N to `ifname` in the container's
    /// namespace, configured there.
    fn add_endpoint(&mut self, ctr: &str, e: Endpoint) -> Result<Interface> {
        let def = e.network.clone();
        self.ensure_net(&def)?;
        let r = self.make_veth(ctr, &e);
        match r {
            Ok(host_if) => {
                let iface = Interface { network: def.id.clone(), ifname: e.ifname.clone(), mac: e.mac.clone(), ip: e.ip.clone() };
                self.ctrs.get_mut(ctr).expect("attached").eps.push(Ep { e, host_if });
                self.publish(&def.id);
                Ok(iface)
            }
            Err(err) => {
                self.after_change(&def.id);
                Err(err)
            }
        }
    }

    fn make_veth(&mut self, ctr: &str, e: &Endpoint) -> Result<String> {
        let c = &self.ctrs[ctr];
        let mac = link::parse_mac(&e.mac).ok_or_else(|| fail(format!("bad MAC address {:?}", e.mac)))?;
        let ip: Ipv4Addr = e.ip.parse().map_err(|_| fail(format!("bad address {:?}", e.ip)))?;
        let gw: Ipv4Addr = e.network.gateway.parse().map_err(|_| fail(format!("bad gateway {:?}", e.network.gateway)))?;
        let (_, prefix) = link::parse_cidr(&e.network.subnet).ok_or_else(|| fail(format!("bad subnet {:?}", e.network.subnet)))?;
        let (ifname, default_route) = (e.ifname.clone(), e.default_route);
        let v6 = match &e.ip6 {
            Some(a) => v6_of(e.network.subnet6.as_deref(), Some(a)).map_err(|err| fail(format!("network {}: {err}", e.network.name)))?,
            None => None,
        };
        // The IPv6 default route of an endpoint with an IPv6 address (its network's gateway).
        let gw6: Option<std::net::Ipv6Addr> = match (&v6, e.network.gateway6.as_deref()) {
            (Some(_), Some(g)) => Some(g.parse().map_err(|_| fail(format!("bad IPv6 gateway {g:?}")))?),
            _ => None,
        };
        self.veth_seq += 1;
        let host_if = format!("vb{}", self.veth_seq);
        let mtu = if e.network.mtu > 0 { e.network.mtu } else { self.mtu };
        let (h, peer, bridge, ctr_ns) = (host_if.clone(), e.ifname.clone(), e.network.bridge.clone(), c.netns.as_raw_fd());
        ns::in_netns(self.netns.as_fd(), move || {
            let mut nl = Nl::open()?;
            nl.run(link::veth_msg(&h, mtu, &peer, mac, ctr_ns), &format!("create veth {h} (peer {peer} in the container)"))?;
            let i = link::index(&h)?;
            nl.run(link::set_master_msg(i, link::index(&bridge)?), &format!("{h} into {bridge}"))?;
            nl.run(link::up_msg(i), &format!("{h} up"))?;
            Ok(Vec::new())
        })
        .map_err(fail)?;
        let r = ns::in_netns(c.netns.as_fd(), move || {
            let mut nl = Nl::open()?;
            let i = link::index(&ifname)?;
            nl.run(link::addr_msg(i, ip, prefix), &format!("address {ip}/{prefix} on {ifname}"))?;
            if let Some((ip6, p6)) = v6 {
                nl.run(link::addr6_msg(i, ip6, p6), &format!("address {ip6}/{p6} on {ifname}"))?;
            }
            nl.run(link::up_msg(i), &format!("{ifname} up"))?;
            nl.run(link::up_msg(link::index("lo")?), "lo up")?;
            if default_route {
                match nl.try_run(link::default_route_msg(gw)) {
                    Ok(()) => {}
                    // A default route there already (another network's): the first keeps it.
                    Err(nix::errno::Errno::EEXIST) => {}
                    Err(e) => return Err(format!("default route via {gw}: {}", e.desc())),
                }
                if let Some(gw6) = gw6 {
                    match nl.try_run(link::default_route6_msg(gw6)) {
                        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                        Err(e) => return Err(format!("IPv6 default route via {gw6}: {}", e.desc())),
                    }
                }
            }
            Ok(Vec::new())
        });
        if let Err(err) = r {
            self.del_veth(&host_if);
            return Err(fail(format!("in the container's namespace: {err}")));
        }
        Ok(host_if)
    }

    /// The filter of both families (nat.rs), IPv6 where the kernel has it.
    fn apply_rules(&self) -> Result<()> {
        let nets: Vec<NatNet> = self
            .nets
            .values()
            .map(|n| NatNet {
                bridge: n.bridge.clone(),
                subnet: n.subnet.clone(),
                subnet6: n.subnet6.clone(),
                internal: n.internal,
                host_loopback: n.host_loopback,
            })
            .collect();
        self.restore(&self.restore, nat::ruleset(&nets, OUT_IF))?;
        if let Some(bin) = &self.restore6 {
            self.restore(bin, nat::ruleset6(&nets, OUT_IF))?;
        }
        Ok(())
    }

    fn restore(&self, bin: &Path, rules: String) -> Result<()> {
        let bin = bin.to_path_buf();
        ns::in_netns(self.netns.as_fd(), move || {
            let mut child = std::process::Command::new(&bin)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot run {}: {e}; install iptables (apt-get install iptables)", bin.display()))?;
            let _ = child.stdin.take().expect("piped").write_all(rules.as_bytes());
            let out = child.wait_with_output().map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!("{} failed: {}", bin.display(), String::from_utf8_lossy(&out.stderr).trim()));
            }
            Ok(Vec::new())
        })
        .map_err(|e| fail(format!("packet filter: {e}")))?;
        Ok(())
    }

    /// Takes the start lock and leaves, unless a client is about to take a lease (it holds the
    /// lock) or came in meanwhile. True: the owner is gone (socket, record and lock removed).
    fn try_exit(&mut self) -> bool {
        // Our socket gone (its directory removed, a store reset): no client can reach us or
        // take a lease any more, and no lock can be taken there. Leave.
        if std::fs::symlink_metadata(self.dir.join(OWNER_SOCKET)).is_err() {
            self.shutdown();
            return true;
        }
        let lock = self.dir.join(OWNER_START_LOCK);
        if !take_lock(&lock) {
            return false;
        }
        // A client that connected and asked before we held the lock is answered first.
        self.accept();
        let ids: Vec<u64> = self.conns.iter().map(|c| c.id).collect();
        for id in ids {
            let readable = self.conns.iter().find(|c| c.id == id).is_some_and(|c| {
                let mut fds = [PollFd::new(c.s.as_fd(), PollFlags::POLLIN)];
                poll(&mut fds, PollTimeout::ZERO).unwrap_or(0) > 0
            });
            if readable {
                self.serve(id);
            }
        }
        if self.leases() > 0 {
            let _ = std::fs::remove_file(&lock);
            return false;
        }
        self.shutdown();
        let _ = std::fs::remove_file(&lock);
        true
    }

    fn shutdown(&mut self) {
        let _ = std::fs::remove_file(self.dir.join(OWNER_SOCKET));
        let _ = std::fs::remove_file(self.dir.join(OWNER_RECORD));
        if let Some(mut h) = self.helper.take() {
            h.stop();
        }
    }
}

/// An IPv6 address with the prefix length of its subnet (both given, or neither: IPv4 only).
fn v6_of(subnet6: Option<&str>, addr: Option<&str>) -> std::result::Result<Option<(std::net::Ipv6Addr, u8)>, String> {
    match (subnet6, addr) {
        (Some(s), Some(a)) => {
            let (_, p) = link::parse_cidr6(s).ok_or_else(|| format!("bad IPv6 subnet {s:?}"))?;
            let ip = a.parse().map_err(|_| format!("bad IPv6 address {a:?}"))?;
            Ok(Some((ip, p)))
        }
        (None, Some(a)) => Err(format!("IPv6 address {a:?} without an IPv6 subnet")),
        _ => Ok(None),
    }
}

/// OWNER_START_LOCK as ts/storage/fsutil.ts `withLock` takes it: created exclusively with our
/// pid; one whose holder is dead is removed.
fn take_lock(path: &Path) -> bool {
    for _ in 0..2 {
        match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
            Ok(mut f) => {
                let _ = f.write_all(std::process::id().to_string().as_bytes());
                return true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let pid: i32 = std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
                let dead = pid > 0 && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) == Err(nix::errno::Errno::ESRCH);
                if !dead {
                    return false;
                }
                let _ = std::fs::remove_file(path);
            }
            Err(_) => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_take_a_port_or_get_53() {
        assert_eq!(parse_upstream("10.0.0.1"), Some("10.0.0.1:53".parse().unwrap()));
        assert_eq!(parse_upstream("127.0.0.1:5353"), Some("127.0.0.1:5353".parse().unwrap()));
        assert_eq!(parse_upstream("[::1]:53"), Some("[::1]:53".parse().unwrap()));
        assert_eq!(parse_upstream("::1"), Some("[::1]:53".parse().unwrap()));
        assert_eq!(parse_upstream("x"), None);
    }

    #[test]
    fn the_lock_is_exclusive_and_a_dead_holder_loses_it() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("start.lock");
        assert!(take_lock(&p));
        assert!(!take_lock(&p), "held by us, a live pid");
        std::fs::write(&p, "999999999").unwrap();
        assert!(take_lock(&p), "a dead holder's lock is taken over");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), std::process::id().to_string());
    }
}
