//! `[--status-fd FD] monitor --bundle B --dir D [--log-driver k8s-file|json-file|none]
//! [--tty [--tty-size ROWSxCOLS]] [--stdin] [--attach-fd FD] [--restart POLICY]
//! [--events-file PATH] [--exit-command ARG]... ID`
//!
//! Runs a detached container and stays with it, as conmon does for podman: it holds the
//! container's stdio (pipes, or the pty master with --tty), writes the log, reaps the init (it
//! is a subreaper), records the exit status and time in D/exit.json, deletes the runtime state
//! and runs the exit command (the CLI's cleanup for --rm). It answers its caller on the status
//! channel (`--status-fd`; without it, one line on stdout) — {"pid": N} or {"error", "code"} —
//! and then lets go of it, so the CLI can exit while the container runs. Its own pid and start
//! time go to D/monitor.json. Clients attach through D/attach.sock (attach_server.rs): they get
//! the output, and their input goes to the terminal or, with --stdin, to a pipe that is the
//! container's stdin.
//!
//! With `--restart` it keeps Docker's restart policy (burrow_core::runtime::restart): the same
//! container (id, bundle, rootfs) is created and started again after it exits, the log
//! appended, until the policy says no or the user stopped it (D/stopped-by-user); the count
//! goes to D/restart.json. Each start appends a `start` event (a restart's after a network
//! `connect` for each of its networks, as Docker's daemon logs a policy's restart), each exit
//! an `oom` when the OOM killer struck and a `die` (after a `disconnect` for each network), to
//! `--events-file` (the engine's events.jsonl). The first start is logged here too, before the
//! pid is answered: the caller would log it after the die of a container that exits at once.
//!
//! With `--healthcheck JSON` (Docker's Config.Healthcheck) it runs the container's healthcheck
//! (burrow_core::runtime::health) while the container runs: each probe an exec into it, the
//! state in D/health.json, a `health_status` event when the status changes. SIGUSR1 asks for a
//! probe now (`burrow healthcheck run`). Docker restarts nothing for being unhealthy; neither
//! does the monitor.
//!
//! Memory: the monitor lives as long as its container, so it keeps mapped only what it needs
//! for that. The container is made by `burrow-runtime create` in a child process (the runc and
//! conmon split): that child and the init it forks are the processes that run our code in the
//! container's namespaces, so they run from the sealed copy of the binary (selfclone.rs) and the
//! monitor itself runs from the file, without a private copy of the binary of its own; the pages
//! the spec, mounts, cgroups and seccomp code touch are that child's and go with it. Poststart
//! and poststop hooks, which need the spec, and the removal of the container's state and cgroup
//! run in a `burrow-runtime poststart` / `delete` child for the same reason; burrow-monitor, the
//! small binary burrow runs this command from, does not contain that code at all
//! (src/bin/burrow-monitor.rs). Only a monitor with a healthcheck runs from the sealed copy
//! (its probes are execs into the container), and only from the full burrow-runtime.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burrow_core::error::Coded;
use burrow_core::runtime::create::start;
use burrow_core::runtime::error::{Result, RuntimeError, SysCtx};
use burrow_core::runtime::holder;
use burrow_core::runtime::restart::{Backoff, Policy};
use burrow_core::runtime::state::{now_rfc3339, ContainerState};
use burrow_core::runtime::status::Report;
use burrow_core::runtime::{health, tty, wait};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{attach_server, id_command, Ctx};
use crate::args::Flag;

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Driver {
    K8s,
    Json,
    None,
}

impl Driver {
    pub(super) fn parse(s: &str) -> Result<Driver> {
        match s {
            "k8s-file" => Ok(Driver::K8s),
            "json-file" => Ok(Driver::Json),
            "none" => Ok(Driver::None),
            d => Err(RuntimeError::Usage(format!("unknown log driver {d}"))),
        }
    }
}

/// The container's log, D/ctr.log (also written by a foreground `run --dir`: run.rs).
pub(super) struct Log {
    file: Option<std::fs::File>,
    driver: Driver,
    partial: [Vec<u8>; 2],
}

impl super::attach_server::LogSeam for Log {
    fn seam(&self) -> (u64, [&[u8]; 2]) {
        let size = self.file.as_ref().and_then(|f| f.metadata().ok()).map_or(0, |m| m.len());
        (size, [&self.partial[0], &self.partial[1]])
    }
}

impl Log {
    /// Appends to `path` (none with the "none" driver, or when it cannot be opened).
    pub(super) fn open(path: &Path, driver: Driver) -> Log {
        let file = if driver == Driver::None { None } else { std::fs::OpenOptions::new().create(true).append(true).open(path).ok() };
        Log { file, driver, partial: [Vec::new(), Vec::new()] }
    }

    /// Writes complete lines; keeps a partial line until more arrives or the stream ends.
    pub(super) fn write(&mut self, stream: usize, data: &[u8], flush: bool) {
        if self.driver == Driver::None {
            return;
        }
        self.partial[stream].extend_from_slice(data);
        loop {
            let buf = &self.partial[stream];
            let (line, rest, full) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (buf[..i].to_vec(), buf[i + 1..].to_vec(), true),
                None if flush && !buf.is_empty() => (buf.clone(), Vec::new(), false),
                // Very long lines are cut into partial records, as conmon does.
                None if buf.len() >= 16384 => (buf.clone(), Vec::new(), false),
                None => break,
            };
            self.partial[stream] = rest;
            let name = if stream == 0 { "stdout" } else { "stderr" };
            let ts = now_rfc3339();
            let rec = match self.driver {
                Driver::K8s => {
                    let mut r = format!("{ts} {name} {} ", if full { "F" } else { "P" }).into_bytes();
                    r.extend_from_slice(&line);
                    r.push(b'\n');
                    r
                }
                Driver::Json => {
                    let mut text = String::from_utf8_lossy(&line).into_owned();
                    if full {
                        text.push('\n');
                    }
                    let mut r = serde_json::json!({ "log": text, "stream": name, "time": ts }).to_string().into_bytes();
                    r.push(b'\n');
                    r
                }
                Driver::None => unreachable!(),
            };
            if let Some(f) = self.file.as_mut() {
                let _ = f.write_all(&rec);
            }
        }
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).op("pipe")
}

pub(super) fn read_some(fd: RawFd) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    match nix::unistd::read(fd, &mut buf) {
        Ok(0) => None,
        Ok(n) => {
            buf.truncate(n);
            Some(buf)
        }
        Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => Some(Vec::new()),
        Err(_) => None,
    }
}

/// Where the first answer goes: the status channel, or (without one) our stdout as it was.
enum Caller {
    Status,
    Stdout(std::fs::File),
}

impl Caller {
    fn answer(&self, r: Report) {
        match self {
            Caller::Status => crate::status::report(r),
            Caller::Stdout(f) => {
                let mut f: &std::fs::File = f;
                let _ = writeln!(f, "{}", r.to_line());
            }
        }
    }
}

/// What one run of the container shares with the next.
struct Setup<'a> {
    ctx: &'a Ctx,
    p: &'a crate::args::Parsed,
    id: &'a str,
    dir: &'a Path,
    bundle: &'a Path,
    driver: Driver,
    tty_mode: bool,
    tty_size: Option<(u16, u16)>,
    devnull: &'a std::fs::File,
    health: Option<&'a health::Config>,
    events: Option<&'a Path>,
}

/// How a run that started ended.
struct Ended {
    code: i32,
    signal: Option<i32>,
    oom: bool,
    /// From its start to its exit (the die's execDuration).
    ran: Option<Duration>,
    att: attach_server::AttachServer,
    /// Deleted by the caller once the exit is recorded.
    state: ContainerState,
}

extern "C" fn ignore(_: libc::c_int) {}

/// The monitor's own signals are read from a signalfd while a container runs and do nothing
/// between two runs of a restarted container, when they are not blocked (they must not be
/// while the next container is created: its process would inherit the mask). A handler, unlike
/// SIG_IGN, does not survive the container's execve.
fn catch_signals() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(SigHandler::Handler(ignore), SaFlags::SA_RESTART, SigSet::empty());
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2] {
        // SAFETY: the handler does nothing, so it is async-signal-safe.
        let _ = unsafe { sigaction(s, &act) };
    }
}

fn unblock_signals() {
    let _ = nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&nix::sys::signal::SigSet::empty()), None);
}

/// A healthcheck's running part as the loop below drives it (health::Checker), behind a trait
/// object that only the full runtime's command table makes (`start_health`): its probes are
/// execs into the container, code burrow-monitor leaves out.
pub trait Health {
    fn poll_fd(&self) -> Option<BorrowedFd<'_>>;
    fn wake_in(&self, now: Instant) -> Duration;
    fn readable(&mut self);
    fn ask(&mut self);
    fn tick(&mut self, now: Instant);
    fn reaped(&mut self, ws: WaitStatus, now: Instant) -> bool;
    fn stop(&mut self);
}

impl Health for health::Checker {
    fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        health::Checker::poll_fd(self)
    }
    fn wake_in(&self, now: Instant) -> Duration {
        health::Checker::wake_in(self, now)
    }
    fn readable(&mut self) {
        health::Checker::readable(self)
    }
    fn ask(&mut self) {
        health::Checker::ask(self)
    }
    fn tick(&mut self, now: Instant) {
        health::Checker::tick(self, now)
    }
    fn reaped(&mut self, ws: WaitStatus, now: Instant) -> bool {
        health::Checker::reaped(self, ws, now)
    }
    fn stop(&mut self) {
        health::Checker::stop(self)
    }
}

/// Starts the healthcheck of a container that has just started.
pub type StartHealth = fn(&health::Config, &ContainerState, health::Target) -> Result<Box<dyn Health>>;

pub fn start_health(cfg: &health::Config, state: &ContainerState, target: health::Target) -> Result<Box<dyn Health>> {
    let spec = burrow_core::runtime::create::load_spec_file(&state.config_path)?;
    Ok(Box::new(health::Checker::new(cfg.clone(), spec, target, Instant::now())))
}

pub fn main(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let (p, id) = id_command(
        args,
        &super::network::with_flag(&[
            Flag("bundle", &["b"], true),
            Flag("dir", &[], true),
            Flag("log-driver", &[], true),
            Flag("tty", &["t"], false),
            Flag("exit-command", &[], true),
            Flag("stdin", &["i"], false),
            Flag("tty-size", &[], true),
            Flag("attach-fd", &[], true),
            Flag("restart", &[], true),
            Flag("events-file", &[], true),
            Flag("healthcheck", &[], true),
            Flag("runtime", &[], true),
        ]),
        "monitor",
    )?;
    let dir = PathBuf::from(p.value("dir").ok_or_else(|| RuntimeError::Usage("monitor: --dir is required".into()))?);
    let bundle = PathBuf::from(p.value("bundle").unwrap_or("."));
    let driver = match p.value("log-driver").unwrap_or("k8s-file") {
        "k8s-file" => Driver::K8s,
        "json-file" => Driver::Json,
        "none" => Driver::None,
        d => return Err(RuntimeError::Usage(format!("unknown log driver {d}"))),
    };
    let policy = Policy::parse(p.value("restart").unwrap_or("no")).map_err(RuntimeError::Usage)?;
    let events = p.value("events-file").map(PathBuf::from);
    let health = match p.value("healthcheck") {
        Some(_) if ctx.health.is_none() => {
            return Err(RuntimeError::Usage("monitor: --healthcheck needs the full runtime: run `burrow-runtime monitor` for this container".into()))
        }
        Some(j) => health::Config::parse(j).map_err(RuntimeError::Usage)?,
        None => None,
    };
    let runtime = p.value("runtime").map(PathBuf::from);
    let ctx = &Ctx {
        root: ctx.root.clone(),
        systemd_cgroup: ctx.systemd_cgroup,
        share_userns: ctx.share_userns,
        runtime: runtime.unwrap_or_else(|| ctx.runtime.clone()),
        health: ctx.health,
    };
    let tty_mode = p.bool("tty");
    // The terminal's size is set before the container starts, for a first `stty size`.
    let tty_size = match p.value("tty-size") {
        Some(s) => Some(attach_server::parse_size(s).ok_or_else(|| RuntimeError::Usage(format!("monitor: invalid --tty-size {s}: want ROWSxCOLS")))?),
        None => None,
    };
    // A socket connected to our caller (`burrow run -it`): its first attach client, there
    // before the container's first output.
    let mut attach_fd = match p.value("attach-fd") {
        Some(s) => {
            let fd: RawFd = s.parse().map_err(|_| RuntimeError::Usage(format!("monitor: invalid --attach-fd {s}")))?;
            nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).op("--attach-fd")?;
            // SAFETY: an open descriptor our caller passed to us for this purpose.
            Some(unsafe { OwnedFd::from_raw_fd(fd) })
        }
        None => None,
    };
    burrow_core::runtime::process::set_name("burrow:monitor");
    // The init is forked by our `create` child: it becomes ours when that child exits.
    // SAFETY: plain prctl.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let _ = nix::unistd::setsid();
    // Who holds the container, written before `started`: a reader that finds `started` but no
    // exit record can then tell "the monitor is finishing" from "the monitor died".
    holder::write_holder(&dir);
    catch_signals();
    // Keep our caller's pipe aside when it is our stdout; fds 0-2 become the container's stdio.
    let caller = match crate::status::channel() {
        Some(_) => Caller::Status,
        None => {
            let fd = nix::unistd::dup(1).op("dup")?;
            // SAFETY: the descriptor dup just made, owned by nothing else.
            Caller::Stdout(unsafe { std::fs::File::from_raw_fd(fd) })
        }
    };
    let devnull = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").op("open /dev/null")?;
    let setup = Setup {
        ctx,
        p: &p,
        id: &id,
        dir: &dir,
        bundle: &bundle,
        driver,
        tty_mode,
        tty_size,
        devnull: &devnull,
        health: health.as_ref(),
        events: events.as_deref(),
    };
    let mut caller = Some(caller);
    let mut restarts = 0u32;
    let mut backoff = Backoff::default();
    // Taken while the CLI still holds its own lease (until our first pid report).
    let _owner_hold = if p.value("restart").is_some_and(|r| r != "no") { super::network::hold_for_restarts(&p)? } else { None };
    loop {
        let began = Instant::now();
        let ended = match run_once(&setup, caller.as_ref(), attach_fd.take(), restarts) {
            Ok(e) => e,
            Err(e) => {
                if let Some(c) = caller.take() {
                    c.answer(Report::Error { msg: e.to_string(), code: e.code().to_string() });
                    return Ok(1);
                }
                // A restart that failed: its failure is the container's last exit.
                let code = holder::failure_status(&e);
                holder::record_exit(
                    &dir,
                    &id,
                    &holder::ExitRecord { exit_code: code, oom_killed: false, reason: Some(e.to_string()), ran: None },
                    events.as_deref(),
                );
                holder::write_restarts(&dir, restarts, false);
                crate::status::exit(code, None);
                holder::run_exit_command(&p.values("exit-command"));
                return Ok(0);
            }
        };
        // The first answer has been given: the caller is let go.
        caller = None;
        let Ended { code, signal, oom, ran, mut att, state } = ended;
        let again = policy.restarts_after(code, restarts, holder::stopped_by_user(&dir));
        if again {
            // Before the exit record: a reader that sees the exit sees that a restart follows.
            holder::write_restarts(&dir, restarts, true);
        }
        holder::record_exit(&dir, &id, &holder::ExitRecord { exit_code: code, oom_killed: oom, reason: None, ran }, events.as_deref());
        // The init is reaped: nothing for the child to wait for.
        runtime_child(ctx, &["delete", "--force", &state.id]);
        crate::status::exit(code, signal);
        att.finish(code);
        if !again || !wait_to_restart(&dir, backoff.next(began.elapsed())) {
            if again {
                holder::write_restarts(&dir, restarts, false);
            }
            holder::run_exit_command(&p.values("exit-command"));
            // Closed after the exit command: an attached client of a --rm container waits for this.
            drop(att);
            return Ok(0);
        }
        drop(att);
        restarts += 1;
        crate::status::report(Report::Restart(restarts));
        if let Some(ev) = &events {
            // Running again, on the same networks: Docker's daemon restarts it through its
            // start, which connects the networks and logs `start` (run_once, once it has
            // started; `restart` is the user's).
            holder::append_network_events(ev, &dir, &id, "connect");
        }
    }
}

/// Sleeps before a restart; false when the user stopped the container meanwhile.
fn wait_to_restart(dir: &Path, delay: Duration) -> bool {
    let end = Instant::now() + delay;
    loop {
        if holder::stopped_by_user(dir) {
            return false;
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}

/// Creates, starts and holds the container until it has exited and its output is drained;
/// answers `caller` (the first run) with its pid once it runs. An error: it did not start.
fn run_once(s: &Setup, caller: Option<&Caller>, attach_fd: Option<OwnedFd>, restarts: u32) -> Result<Ended> {
    let (ctx, p, id, dir, devnull) = (s.ctx, s.p, s.id, s.dir, s.devnull);
    let tty_mode = s.tty_mode;
    // Published ports are bound before the container exists: a taken one fails the run here.
    let mut net = super::network::prepare(p)?;
    nix::unistd::dup2(devnull.as_raw_fd(), 0).op("dup2")?;
    // -i without a terminal: the container reads a pipe whose write end the attach server
    // keeps (Docker's OpenStdin), instead of /dev/null.
    let stdin_w = if p.bool("stdin") && !tty_mode {
        let (r, w) = pipe()?;
        nix::unistd::dup2(r.as_raw_fd(), 0).op("dup2")?;
        Some(w)
    } else {
        None
    };

    let mut console_peer: Option<OwnedFd> = None;
    let mut console_fd = None;
    let mut readers: Vec<(usize, OwnedFd)> = Vec::new();
    if tty_mode {
        let (a, b) = tty::console_pair()?;
        console_fd = Some(b);
        console_peer = Some(a);
        nix::unistd::dup2(devnull.as_raw_fd(), 1).op("dup2")?;
        nix::unistd::dup2(devnull.as_raw_fd(), 2).op("dup2")?;
    } else {
        let (r1, w1) = pipe()?;
        let (r2, w2) = pipe()?;
        nix::unistd::dup2(w1.as_raw_fd(), 1).op("dup2")?;
        nix::unistd::dup2(w2.as_raw_fd(), 2).op("dup2")?;
        readers.push((0, r1));
        readers.push((1, r2));
    }
    let created = spawn_create(s, console_fd.as_ref()).and_then(|c| {
        let master = match &console_peer {
            Some(s) => Some(tty::recv_fd(s.as_raw_fd())?),
            None => None,
        };
        Ok((c, master))
    });
    drop(console_fd);
    // Our copies of the write ends go: EOF arrives when the container's processes are gone.
    let release = || -> Result<()> {
        nix::unistd::dup2(devnull.as_raw_fd(), 0).op("dup2")?;
        nix::unistd::dup2(devnull.as_raw_fd(), 1).op("dup2")?;
        nix::unistd::dup2(devnull.as_raw_fd(), 2).op("dup2").map(drop)
    };
    let (state, master) = match created {
        Ok(x) => x,
        Err(e) => {
            let _ = release();
            return Err(e);
        }
    };
    let mut input = stdin_w;
    if let Some(m) = master {
        if let Some((rows, cols)) = s.tty_size {
            attach_server::set_size(m.as_fd(), rows, cols);
        }
        input = m.try_clone().ok();
        readers.push((0, m));
    }
    drop(console_peer);
    release()?;
    // The network helper joins the created init's namespaces before its program runs.
    if let Err(e) = super::network::attach(net.as_mut(), state.pid) {
        drop(net);
        destroy_unstarted(ctx, &state);
        return Err(e);
    }
    // Listening before the start: an `attach` right after `run -d` finds the socket.
    let mut att = attach_server::AttachServer::new(dir, input, tty_mode);
    if let Some(fd) = attach_fd {
        att.adopt(fd);
    }
    // The log exists before the container is started: a client that follows the logs of a
    // container it has just started (docker-py's `containers.run`: start, logs --follow, wait,
    // remove) must find the file at its first look, or it may look again only after `rm`.
    let mut log = Log::open(&dir.join("ctr.log"), s.driver);
    let sfd = wait::block_signals()?;
    // Before its program runs: a systemd scope may be gone, counters and all, once it exits.
    let mut oom_watch = state.cgroups.as_ref().and_then(burrow_core::runtime::cgroups::OomWatch::new);
    if let Err(e) = start(&ctx.root, id) {
        drop(sfd);
        unblock_signals();
        destroy_unstarted(ctx, &state);
        return Err(e);
    }
    holder::write_started(dir);
    let started_at = Instant::now();
    // Before the pid is answered (see the module's comment).
    holder::record_start(dir, id, s.events);
    // A restart's previous exit record goes once the new run has started, then the restart
    // is no longer pending (in this order, a reader never sees it neither running nor restarting).
    if restarts > 0 {
        let _ = std::fs::remove_file(dir.join("exit.json"));
        holder::write_restarts(dir, restarts, false);
    }
    match caller {
        Some(c) => c.answer(Report::Pid(state.pid)),
        None => crate::status::pid(state.pid),
    }
    if has_poststart_hooks(&state.config_path) {
        runtime_child(ctx, &["poststart", id]);
    }
    // From here on it waits and relays: what it ran to get here need not stay mapped.
    crate::resident::shed();

    let init = Pid::from_raw(state.pid);
    let mut exit: Option<i32> = None;
    let mut signal: Option<i32> = None;
    let mut oom_at_exit = false;
    let mut ran = None;
    let mut open: Vec<bool> = readers.iter().map(|_| true).collect();
    let mut checker = match (s.health, ctx.health) {
        (Some(cfg), Some(start_health)) => {
            let target = health::Target { root: ctx.root.clone(), id: id.to_string(), dir: dir.to_path_buf(), events: s.events.map(Path::to_path_buf) };
            Some(start_health(cfg, &state, target)?)
        }
        _ => None,
    };
    loop {
        if exit.is_some() {
            // Probes end with the container.
            if let Some(mut c) = checker.take() {
                c.stop();
            }
        }
        if exit.is_some() && net.is_some() {
            // The network goes with the container, not with its last output.
            net = None;
        }
        if exit.is_some() && !open.iter().any(|o| *o) {
            break;
        }
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        let idx: Vec<usize> = (0..readers.len()).filter(|i| open[*i]).collect();
        for &i in &idx {
            fds.push(PollFd::new(readers[i].1.as_fd(), PollFlags::POLLIN));
        }
        let net_at = fds.len();
        if let Some(fd) = net.as_ref().and_then(|n| n.poll_fd()) {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        let oom_at = fds.len();
        if let Some(w) = &oom_watch {
            fds.push(PollFd::new(wait::Served::fd(w).expect("an inotify fd"), PollFlags::POLLIN));
        }
        let health_at = fds.len();
        let health_polled = match checker.as_ref().and_then(|c| c.poll_fd()) {
            Some(fd) => {
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
                true
            }
            None => false,
        };
        let att_at = fds.len();
        att.poll_fds(&mut fds);
        // Once the init is gone, leftover writers get a moment to finish, not forever.
        let timeout = if exit.is_some() {
            PollTimeout::from(200u16)
        } else if let Some(c) = &checker {
            // Rounded up: waking a moment early would only loop.
            let ms = c.wake_in(Instant::now()).as_nanos().div_ceil(1_000_000);
            PollTimeout::try_from(ms.min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX)
        } else {
            PollTimeout::NONE
        };
        let n = match poll(&mut fds, timeout) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).op("poll"),
        };
        let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        if n == 0 && exit.is_some() {
            break;
        }
        for (k, &i) in idx.iter().enumerate() {
            if ready[k + 1] {
                match read_some(readers[i].1.as_raw_fd()) {
                    Some(data) => {
                        att.output(readers[i].0, &data);
                        log.write(readers[i].0, &data, false);
                    }
                    None => open[i] = false,
                }
            }
        }
        if ready[0] {
            while let Ok(Some(si)) = sfd.read_signal() {
                if si.ssi_signo == libc::SIGUSR1 as u32 {
                    if let Some(c) = checker.as_mut() {
                        c.ask();
                    }
                }
            }
        }
        if let Some(c) = checker.as_mut() {
            if health_polled && ready[health_at] {
                c.readable();
            }
        }
        if ready.get(net_at).copied().unwrap_or(false) {
            if let Some(n) = net.as_mut() {
                n.dispatch();
                // The network owner died under the running container (its lost file is written):
                // Docker's `network disconnect` event per network, so `events` tells it too.
                if let (Some(lost), Some(ev)) = (n.take_lost(), s.events) {
                    for (net_id, net_name) in lost {
                        append_network_event(ev, &net_id, &net_name, id);
                    }
                }
            }
        }
        if let Some(w) = oom_watch.as_mut().filter(|_| ready[oom_at]) {
            w.check();
        }
        att.dispatch(&ready[att_at..], &log);
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(ws) => {
                    if checker.as_mut().is_some_and(|c| c.reaped(ws, Instant::now())) {
                        continue;
                    }
                    if ws.pid() == Some(init) {
                        exit = wait::status_code(ws);
                        ran = Some(started_at.elapsed());
                        if let WaitStatus::Signaled(_, sig, _) = ws {
                            signal = Some(sig as i32);
                        }
                        // At once: a systemd scope's cgroup, with its counters, goes as soon as
                        // systemd sees it empty.
                        oom_at_exit = match oom_watch.as_mut() {
                            Some(w) => w.killed(),
                            None => state.cgroups.as_ref().is_some_and(burrow_core::runtime::cgroups::oom_killed),
                        };
                    }
                }
            }
        }
        if exit.is_none() {
            if let Some(c) = checker.as_mut() {
                c.tick(Instant::now());
            }
        }
    }
    drop(net);
    drop(sfd);
    unblock_signals();
    log.write(0, &[], true);
    log.write(1, &[], true);
    let code = exit.unwrap_or(-1);
    // Read before destroy removes the cgroup with its counters.
    let oom = oom_at_exit || (oom_watch.is_none() && state.cgroups.as_ref().is_some_and(burrow_core::runtime::cgroups::oom_killed));
    Ok(Ended { code, signal, oom, ran, att, state })
}

/// Creates the container with `burrow-runtime create` in a child process (see the module's
/// comment) and returns its state once it is created. The child's stdio is ours, the
/// container's, as the init's must be; its warnings go to the container's stderr as ours did,
/// its error comes back on its status channel only.
fn spawn_create(s: &Setup, console: Option<&OwnedFd>) -> Result<ContainerState> {
    use std::os::unix::process::CommandExt;
    let (r, w) = pipe()?;
    let mut cmd = std::process::Command::new(&s.ctx.runtime);
    cmd.arg0("burrow-runtime").arg("--root").arg(&s.ctx.root);
    if s.ctx.systemd_cgroup {
        cmd.arg("--systemd-cgroup");
    }
    if s.ctx.share_userns {
        cmd.arg("--share-userns");
    }
    cmd.arg("--status-fd").arg(w.as_raw_fd().to_string()).arg("create").arg("--bundle").arg(s.bundle);
    let mut keep = vec![w.as_raw_fd()];
    if let Some(c) = console {
        cmd.arg("--console-fd").arg(c.as_raw_fd().to_string());
        keep.push(c.as_raw_fd());
    }
    cmd.arg(s.id).env(crate::log::ERRORS_ENV, "status");
    // SAFETY: between fork and exec only fcntl, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &keep {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let status = cmd.status().op("run burrow-runtime create")?;
    drop(w);
    // Read after the child's exit: the init it forked holds a copy of the channel until its
    // program runs, so the pipe reaches EOF only then. The child wrote its one line before exiting.
    nix::fcntl::fcntl(r.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK)).op("fcntl")?;
    let mut out = Vec::new();
    while let Some(data) = read_some(r.as_raw_fd()).filter(|d| !d.is_empty()) {
        out.extend_from_slice(&data);
    }
    let mut pid = None;
    for line in String::from_utf8_lossy(&out).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        if let Some(msg) = v["error"].as_str() {
            return Err(RuntimeError::Remote { code: v["code"].as_str().unwrap_or("EINIT_FAILED").into(), msg: msg.into() });
        }
        pid = pid.or(v["pid"].as_i64());
    }
    match pid {
        Some(_) if status.success() => ContainerState::load(&s.ctx.root, s.id),
        _ => Err(RuntimeError::Child(format!("burrow-runtime create exited without creating the container ({status})"))),
    }
}

/// Runs `burrow-runtime ARGS` (Ctx::runtime, with our --root) and waits for it: work that needs
/// the container's spec (its hooks) or its cgroups, whose code the monitor does not carry (see
/// the module's comment). Its warnings (a failed hook) go to our stderr, as ours would.
fn runtime_child(ctx: &Ctx, args: &[&str]) {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(&ctx.runtime);
    cmd.arg0("burrow-runtime").arg("--root").arg(&ctx.root);
    if ctx.systemd_cgroup {
        cmd.arg("--systemd-cgroup");
    }
    if let Err(e) = cmd.args(args).stdin(std::process::Stdio::null()).status() {
        crate::log::warn(&format!("cannot run {} {}: {e}", ctx.runtime.display(), args.join(" ")));
    }
}

/// The end of a container that was created but did not start: its init, our child since its
/// `create` exited, is killed and reaped here (only its parent can), then `delete` removes the
/// rest, as it would for a container that ran.
fn destroy_unstarted(ctx: &Ctx, state: &ContainerState) {
    let init = Pid::from_raw(state.pid);
    if nix::sys::signal::kill(init, nix::sys::signal::Signal::SIGKILL).is_ok() {
        let _ = waitpid(init, None);
    }
    runtime_child(ctx, &["delete", "--force", &state.id]);
}

/// Whether the container's config has poststart hooks (then `burrow-runtime poststart` runs
/// them), read as plain JSON: the spec's parser is the full runtime's.
fn has_poststart_hooks(config: &Path) -> bool {
    let v: serde_json::Value = std::fs::read(config).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    v["hooks"]["poststart"].as_array().is_some_and(|h| !h.is_empty())
}

/// `{"Type":"network","Action":"disconnect",...}` as Docker writes it for a container that left
/// a network (here: was cut off by the network owner's death).
fn append_network_event(events: &Path, net_id: &str, net_name: &str, container: &str) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let ev = serde_json::json!({
        "Type": "network",
        "Action": "disconnect",
        "Actor": { "ID": net_id, "Attributes": { "container": container, "name": net_name, "type": "bridge" } },
        "scope": "local",
        "time": now.as_secs(),
        "timeNano": now.as_nanos() as u64,
    });
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(events) {
        let _ = f.write_all(format!("{ev}\n").as_bytes());
    }
}
