//! `run [create flags] [--detach] [--dir D [--status-fd FD] [--events-file F] [--exit-command ARG]... [--remove-tree T]...] ID`: create
//! and start; in the foreground, supervise the process (signals forwarded, terminal relayed),
//! delete the container when it exits and return its status.
//!
//! With `--dir` (burrow's foreground run) this process is the container's holder
//! (burrow_core::runtime::holder): it writes D/monitor.json, D/started and D/exit.json, reports
//! the status on the status fd, appends the `start` (once the program has started), `oom` and
//! `die` events to `--events-file`, and runs the exit command (`--rm`) when the CLI is gone before
//! removing the container itself, so that `--rm` and `wait` hold when the CLI is killed. With
//! `--remove-tree` (`--rm`), it first removes those trees (the writable layer) inside the
//! container's user namespace, which it holds until then (start_removal).
//!
//! With `--log-driver` (and no terminal) it also records the output as the monitor does, as
//! conmon does for every podman container: the container writes to pipes that this process
//! relays to its own stdout and stderr (the caller's), appends to D/ctr.log, and serves to
//! `attach` clients on D/attach.sock (attach_server.rs), so that `logs` and `attach` work for a
//! container of a foreground `run` too.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use burrow_core::runtime::create::{create, start};
use burrow_core::runtime::error::{Result, RuntimeError, SysCtx};
use burrow_core::runtime::holder::{self, ExitRecord};
use burrow_core::runtime::{tty, wait};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::attach_server::AttachServer;
use super::monitor::{read_some, Driver, Log};
use super::{create::FLAGS, id_command, Ctx};
use crate::args::{Flag, Parsed};

const HOLDER_FLAGS: [Flag; 6] = [
    Flag("dir", &[], true),
    Flag("status-fd", &[], true),
    Flag("exit-command", &[], true),
    Flag("events-file", &[], true),
    Flag("log-driver", &[], true),
    Flag("remove-tree", &[], true),
];

pub fn main(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let mut defs = super::network::with_flag(FLAGS);
    defs.extend(HOLDER_FLAGS);
    let (p, id) = id_command(args, &defs, "run")?;
    // `run --status-fd`: the global flag's channel, given after the command (as burrow did first).
    if let Some(fd) = p.value("status-fd") {
        crate::status::open(fd)?;
    }
    let Some(dir) = p.value("dir").map(PathBuf::from) else {
        if p.has("log-driver") {
            return Err(RuntimeError::Usage("run: --log-driver is for a foreground run with --dir".into()));
        }
        let code = run(ctx, &p, id, None, None)?.code;
        if !p.bool("detach") {
            crate::status::exit(code, None);
        }
        return Ok(code);
    };
    if p.bool("detach") {
        return Err(RuntimeError::Usage("run: --dir is for a foreground run (a detached one is held by `monitor`)".into()));
    }
    let driver = p.value("log-driver").map(Driver::parse).transpose()?;
    // D/monitor.json and D/started, while the container's id maps are written (create calls
    // this then), or here if the run failed before.
    let written = std::rc::Rc::new(std::cell::Cell::new(false));
    let write_holder = {
        let (dir, written) = (dir.clone(), written.clone());
        move || {
            holder::write_holder(&dir);
            holder::write_started(&dir);
            written.set(true);
        }
    };
    let mut r = run(ctx, &p, id.clone(), driver.map(|d| (dir.as_path(), d)), Some(Box::new(write_holder)));
    if !written.get() {
        holder::write_holder(&dir);
        holder::write_started(&dir);
    }
    // --rm: the writable layer goes while we still hold the container's user namespace, before
    // the status tells the CLI to remove the rest; what is left, the CLI removes as ever.
    if let Ok(end) = &mut r {
        match (end.removal.take(), &end.userns) {
            // Started before the container's state was removed (see `run`).
            (Some(child), _) => finish_removal(child),
            (None, Some(userns)) => {
                if let Some(child) = start_removal(userns, &p.values("remove-tree")) {
                    finish_removal(child);
                }
            }
            (None, None) => {}
        }
    }
    if let Err(e) = &r {
        // Now, while stderr is still the caller's (see release_stdio).
        crate::log::error(e);
        crate::status::error(e);
    }
    // The container's mount namespace, held since before it started (RunEnd::mntns); let go
    // once the exit is reported (below), or here when the run failed.
    let mut mntns = match &mut r {
        Ok(end) => end.mntns.take(),
        Err(_) => None,
    };
    let rec = match &r {
        Ok(end) => ExitRecord { exit_code: end.code, oom_killed: end.oom, reason: None, ran: end.ran },
        Err(e) => ExitRecord { exit_code: holder::failure_status(e), oom_killed: false, reason: Some(e.to_string()), ran: None },
    };
    holder::record_exit(&dir, &id, &rec, p.value("events-file").map(std::path::Path::new));
    // Its attach clients get the status once it is recorded, as the monitor's do.
    let mut att = match r {
        Ok(RunEnd { recorder: Some(mut rec_out), .. }) => {
            rec_out.att.finish(rec.exit_code);
            Some(rec_out.att)
        }
        _ => None,
    };
    let cmd = p.values("exit-command");
    if let Some(s) = crate::status::channel() {
        s.report_exit(rec.exit_code);
        if !cmd.is_empty() {
            // Nothing more of ours goes to the caller's terminal or pipes while we wait (an error
            // was logged above, while they were still ours).
            release_stdio();
            // The namespace's teardown (the union, the FUSE file system, its daemon's end) while
            // the CLI removes the container: after the status and after our stdio is let go (a
            // caller's `$(burrow run --rm …)` waits for its end), not before.
            drop(mntns.take());
            s.wait_closed();
        }
    }
    drop(mntns);
    if !cmd.is_empty() && holder::still_there(&dir) {
        holder::run_exit_command(&cmd);
    }
    // Closed after the exit command: an attached client of a --rm container waits for this.
    att.take();
    Ok(if rec.reason.is_none() { rec.exit_code } else { 1 })
}

/// The output of a foreground container without a terminal, recorded (see the top of the file).
struct Recorder {
    /// Per stream (stdout, stderr): the read end of the container's pipe, while it is open.
    pipes: [Option<OwnedFd>; 2],
    /// Our own stdout and stderr (the caller's), where the output is relayed; dropped once the
    /// container is gone, so that a caller's `$(burrow run …)` ends with the CLI.
    ours: [Option<OwnedFd>; 2],
    log: Log,
    att: AttachServer,
}

impl Recorder {
    /// Pipes in place of our stdout and stderr, for the container to inherit; `restore` puts
    /// ours back once it is created.
    fn new(dir: &Path, driver: Driver) -> Result<(Recorder, [OwnedFd; 2])> {
        let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).op("pipe");
        let (r1, w1) = pipe()?;
        let (r2, w2) = pipe()?;
        // Close-on-exec copies: the container must not hold the caller's descriptors.
        let keep = |fd: i32| -> Result<OwnedFd> {
            let d = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3)).op("dup")?;
            // SAFETY: the descriptor fcntl just made, owned by nothing else.
            Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(d) })
        };
        let ours = [Some(keep(1)?), Some(keep(2)?)];
        nix::unistd::dup2(w1.as_raw_fd(), 1).op("dup2")?;
        nix::unistd::dup2(w2.as_raw_fd(), 2).op("dup2")?;
        let rec = Recorder { pipes: [Some(r1), Some(r2)], ours, log: Log::open(&dir.join("ctr.log"), driver), att: AttachServer::new(dir, None, false) };
        Ok((rec, [w1, w2]))
    }

    /// Our stdout and stderr back (the container has its copies of the pipes).
    fn restore(&self) {
        for (k, fd) in [1, 2].into_iter().enumerate() {
            if let Some(o) = &self.ours[k] {
                let _ = nix::unistd::dup2(o.as_raw_fd(), fd);
            }
        }
    }

    fn relay(&mut self, k: usize) {
        let Some(p) = &self.pipes[k] else { return };
        match read_some(p.as_raw_fd()) {
            Some(data) => {
                self.att.output(k, &data);
                self.log.write(k, &data, false);
                let gone = self.ours[k].as_ref().is_some_and(|o| !write_all(o.as_fd(), &data));
                if gone {
                    // The caller's reader left (`burrow run IMG yes | head -1`): its pipe goes, so
                    // the container's next write fails as it would have on the caller's pipe
                    // (SIGPIPE), instead of being logged forever.
                    self.ours[k] = None;
                    self.pipes[k] = None;
                }
            }
            None => self.pipes[k] = None,
        }
    }

    /// After the exit: what the pipes still hold (leftover writers get a moment, not forever),
    /// then the partial lines; our stdout and stderr are let go.
    fn drain(&mut self) {
        while self.pipes.iter().any(Option::is_some) {
            let mut fds = Vec::new();
            wait::Served::poll_fds(&*self, &mut fds);
            let n = match poll(&mut fds, PollTimeout::from(200u16)) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => 0,
            };
            let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
            drop(fds);
            if n == 0 {
                break;
            }
            wait::Served::dispatch(self, &ready);
        }
        self.pipes = [None, None];
        self.log.write(0, &[], true);
        self.log.write(1, &[], true);
        self.ours = [None, None];
    }
}

/// Writes everything to the caller's stdout or stderr; false when its reader is gone (EPIPE).
fn write_all(fd: BorrowedFd, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => continue,
            Err(nix::errno::Errno::EPIPE) => return false,
            // Anything else (a full disk behind a redirection): the output still goes to the
            // log and the clients.
            Err(_) => return true,
        }
    }
    true
}

impl wait::Served for Recorder {
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    fn ready(&mut self) {}

    fn poll_fds<'a>(&'a self, fds: &mut Vec<PollFd<'a>>) {
        for p in self.pipes.iter().flatten() {
            fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
        }
        self.att.poll_fds(fds);
    }

    fn dispatch(&mut self, ready: &[bool]) {
        let open: Vec<usize> = (0..2).filter(|&k| self.pipes[k].is_some()).collect();
        for (i, &k) in open.iter().enumerate() {
            if ready.get(i).copied().unwrap_or(false) {
                self.relay(k);
            }
        }
        let n = open.len();
        self.att.dispatch(ready.get(n..).unwrap_or(&[]), &self.log);
    }
}

/// Our stdio becomes /dev/null: a caller's `$(burrow run --rm …)` ends when the CLI does.
fn release_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        for fd in 0..3 {
            let _ = nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd);
        }
    }
}

/// How a run ended (see `run`).
struct RunEnd {
    code: i32,
    /// Whether the OOM killer struck.
    oom: bool,
    /// How long the program ran (in the foreground).
    ran: Option<std::time::Duration>,
    /// The recorder of its output.
    recorder: Option<Recorder>,
    /// The container's own user namespace, held open.
    userns: Option<OwnedFd>,
    /// The removal of its writable trees, when it was started already (see `run`).
    removal: Option<nix::unistd::Pid>,
    /// The container's own mount namespace, held open from before its program starts (see
    /// `run`).
    mntns: Option<OwnedFd>,
}

/// Creates, starts and (in the foreground) supervises; the status, whether the OOM killer
/// struck, how long the program ran (in the foreground), the recorder of its output when
/// `record` asks for one (a foreground run without a terminal), and, with `--remove-tree`, the
/// container's own user namespace, held open.
fn run(ctx: &Ctx, p: &Parsed, id: String, record: Option<(&Path, Driver)>, while_mapping: Option<Box<dyn FnOnce()>>) -> Result<RunEnd> {
    let detach = p.bool("detach");
    if detach && p.has(super::network::FLAG.0) {
        return Err(burrow_core::runtime::error::RuntimeError::Usage(
            "--network-config needs a foreground run (or the monitor): a detached run leaves nobody to own the network helper".into(),
        ));
    }
    // Ports bound now: a taken one fails before the container exists.
    let mut net = super::network::prepare(p)?;
    let mut o = super::create::opts(ctx, p, id.clone())?;
    o.while_mapping = while_mapping;
    // In the foreground without a console socket, we hold the terminal ourselves.
    let mut console_peer: Option<OwnedFd> = None;
    // The config, read once here for `process.terminal` and handed to create (a config that
    // cannot be read is left for create to report).
    o.loaded = burrow_core::runtime::create::load_spec_for_create(&o.bundle).ok().map(|(s, _, ignored)| (s, ignored));
    let terminal = o.loaded.as_ref().and_then(|(s, _)| s.process().as_ref().and_then(|p| p.terminal())).unwrap_or(false);
    if !detach && o.console_socket.is_none() && terminal {
        let (a, b) = tty::console_pair()?;
        o.console_fd = Some(b);
        console_peer = Some(a);
    }
    // The container's stdout and stderr: pipes we read, while it is created.
    let recorder = match record.filter(|_| !detach && console_peer.is_none() && o.console_socket.is_none()) {
        Some((dir, driver)) => Some(Recorder::new(dir, driver)?),
        None => None,
    };
    let created = create(o);
    let mut recorder = recorder.map(|(r, ends)| {
        r.restore();
        drop(ends);
        r
    });
    let created = created?;
    crate::log::created(&created.state);
    let master = match &console_peer {
        Some(peer) => Some(tty::recv_fd(std::os::fd::AsRawFd::as_raw_fd(peer))?),
        None => None,
    };
    drop(console_peer);
    // The helper joins the namespaces of the created init, before its program runs.
    if let Err(e) = super::network::attach(net.as_mut(), created.state.pid) {
        drop(net);
        super::delete::destroy(&ctx.root, &created.state, Some(&created.spec));
        return Err(e);
    }
    if detach {
        start(&ctx.root, &id)?;
        crate::status::pid(created.state.pid);
        super::start::poststart(&created.state, &ctx.root, &created.spec);
        return Ok(RunEnd { code: 0, oom: false, ran: None, recorder: None, userns: None, removal: None, mntns: None });
    }
    // Held from before its program runs: the namespace outlives the container's last process,
    // so that its writable layer can be removed in it (see start_removal).
    let userns = if p.values("remove-tree").is_empty() { None } else { own_ns(created.state.pid, "user") };
    // The holder keeps the container's mount namespace until the exit is reported: without it
    // the end of the init would take the namespace down (every mount: the union, the FUSE file
    // system of a one-file image, and its daemon's end) before the init is reaped, on the way
    // of every `run`. Only with a pid namespace, whose end kills every process in it (the
    // daemon too) before the init is reaped, held namespace or not: nothing of the container
    // runs on, and its mounts are seen by nobody, until we let go.
    let mntns = if p.value("dir").is_some() && created.state.has_pid_ns { own_ns(created.state.pid, "mnt") } else { None };
    // Before its program runs: a systemd scope may be gone, counters and all, once it exits.
    let mut oom_watch = created.state.cgroups.as_ref().and_then(burrow_core::runtime::cgroups::OomWatch::new);
    // Block signals only now: the container's process must not inherit a blocked mask.
    let sfd = wait::block_signals()?;
    start(&ctx.root, &id)?;
    let started_at = std::time::Instant::now();
    // The holder's `start` (holder::record_start), before the CLI hears the pid.
    if let Some(dir) = p.value("dir") {
        holder::record_start(Path::new(dir), &id, p.value("events-file").map(Path::new));
    }
    crate::status::pid(created.state.pid);
    super::start::poststart(&created.state, &ctx.root, &created.spec);
    let mut served: Vec<&mut dyn wait::Served> = Vec::new();
    if let Some(n) = net.as_mut() {
        served.push(n);
    }
    if let Some(r) = recorder.as_mut() {
        served.push(r);
    }
    if let Some(w) = oom_watch.as_mut() {
        served.push(w);
    }
    let code = wait::supervise_with(created.state.pid, sfd, master, &mut served)?;
    let ran = started_at.elapsed();
    drop(served);
    if let Some(r) = recorder.as_mut() {
        r.drain();
    }
    let oom = match oom_watch.as_mut() {
        Some(w) => w.killed(),
        None => created.state.cgroups.as_ref().is_some_and(burrow_core::runtime::cgroups::oom_killed),
    };
    // The helper and the forwarder go with the container.
    drop(net);
    if oom {
        crate::log::warn_code(crate::log::OOM_KILLED, "EOOM_KILLED");
    }
    // The writable trees go in a child of ours while we remove the container's state, unless
    // poststop hooks run then: those still see the container's files, as before.
    let poststop = created.spec.hooks().as_ref().and_then(|h| h.poststop().as_ref()).is_some_and(|h| !h.is_empty());
    let removal = match &userns {
        Some(u) if !poststop => start_removal(u, &p.values("remove-tree")),
        _ => None,
    };
    super::delete::destroy(&ctx.root, &created.state, Some(&created.spec));
    Ok(RunEnd { code, oom, ran: Some(ran), recorder, userns, removal, mntns })
}

/// The namespace `kind` (`user`, `mnt`) of the container's init when it is not ours (a
/// container without its own user namespace, as root, has nothing that the CLI cannot remove
/// itself; one without a mount namespace, no mounts of its own).
fn own_ns(pid: i32, kind: &str) -> Option<OwnedFd> {
    use std::os::unix::fs::MetadataExt;
    let theirs = format!("/proc/{pid}/ns/{kind}");
    let ino = |p: &str| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    if ino(&theirs)? == ino(&format!("/proc/self/ns/{kind}"))? {
        return None;
    }
    std::fs::File::open(&theirs).ok().map(OwnedFd::from)
}

/// Removes a `--rm` container's writable trees inside its user namespace, where its root and
/// its other ids are mapped, so the CLI need not start the store's user namespace for them
/// (`burrow-runtime unpack` with remove jobs: newuidmap and newgidmap again). In a child: setns
/// changes the caller's credentials, and we are its owner there, so we get its capabilities.
/// Best effort and silent: whatever is left, the CLI removes and reports as before. Returns
/// the child, for `finish_removal`.
fn start_removal(userns: &OwnedFd, trees: &[String]) -> Option<nix::unistd::Pid> {
    if trees.is_empty() {
        return None;
    }
    // SAFETY: this process is single-threaded; the child only makes system calls and exits.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            let mut ok = nix::sched::setns(userns, nix::sched::CloneFlags::CLONE_NEWUSER).is_ok();
            if ok {
                for t in trees {
                    match std::fs::remove_dir_all(t) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(_) => ok = false,
                    }
                }
            }
            // SAFETY: _exit in the forked child (no destructors, no atexit of the parent's).
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => Some(child),
        Err(_) => None,
    }
}

/// Waits for the removal `start_removal` started.
fn finish_removal(child: nix::unistd::Pid) {
    loop {
        match nix::sys::wait::waitpid(child, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            _ => return,
        }
    }
}
