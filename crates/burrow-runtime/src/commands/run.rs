//! `run [create flags] [--detach] [--dir D [--status-fd FD] [--events-file F] [--exit-command ARG]...] ID`: create
//! and start; in the foreground, supervise the process (signals forwarded, terminal relayed),
//! delete the container when it exits and return its status.
//!
//! With `--dir` (burrow's foreground run) this process is the container's holder
//! (burrow_core::runtime::holder): it writes D/monitor.json, D/started and D/exit.json, reports
//! the status on the status fd, appends the `die` event to `--events-file`, and runs the exit command (`--rm`) when the CLI is gone before
//! removing the container itself, so that `--rm` and `wait` hold when the CLI is killed.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use burrow_core::runtime::create::{create, start};
use burrow_core::runtime::error::{Result, RuntimeError};
use burrow_core::runtime::holder::{self, ExitRecord};
use burrow_core::runtime::{tty, wait};

use super::{create::FLAGS, id_command, Ctx};
use crate::args::{Flag, Parsed};

const HOLDER_FLAGS: [Flag; 4] = [Flag("dir", &[], true), Flag("status-fd", &[], true), Flag("exit-command", &[], true), Flag("events-file", &[], true)];

pub fn main(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let mut defs = super::network::with_flag(FLAGS);
    defs.extend(HOLDER_FLAGS);
    let (p, id) = id_command(args, &defs, "run")?;
    // `run --status-fd`: the global flag's channel, given after the command (as burrow did first).
    if let Some(fd) = p.value("status-fd") {
        crate::status::open(fd)?;
    }
    let Some(dir) = p.value("dir").map(PathBuf::from) else {
        let (code, _) = run(ctx, &p, id)?;
        if !p.bool("detach") {
            crate::status::exit(code, None);
        }
        return Ok(code);
    };
    if p.bool("detach") {
        return Err(RuntimeError::Usage("run: --dir is for a foreground run (a detached one is held by `monitor`)".into()));
    }
    holder::write_holder(&dir);
    holder::write_started(&dir);
    let r = run(ctx, &p, id.clone());
    if let Err(e) = &r {
        // Now, while stderr is still the caller's (see release_stdio).
        crate::log::error(e);
        crate::status::error(e);
    }
    let rec = match &r {
        Ok((code, oom)) => ExitRecord { exit_code: *code, oom_killed: *oom, reason: None },
        Err(e) => ExitRecord { exit_code: holder::failure_status(e), oom_killed: false, reason: Some(e.to_string()) },
    };
    holder::write_exit(&dir, &rec);
    if let Some(ev) = p.value("events-file") {
        holder::append_event(std::path::Path::new(ev), &dir, &id, "die", &[("exitCode", rec.exit_code.to_string())]);
    }
    let cmd = p.values("exit-command");
    if let Some(s) = crate::status::channel() {
        s.report_exit(rec.exit_code);
        if !cmd.is_empty() {
            // Nothing more of ours goes to the caller's terminal or pipes while we wait (an error
            // was logged above, while they were still ours).
            release_stdio();
            s.wait_closed();
        }
    }
    if !cmd.is_empty() && holder::still_there(&dir) {
        holder::run_exit_command(&cmd);
    }
    Ok(match r {
        Ok((code, _)) => code,
        Err(_) => 1,
    })
}

/// Our stdio becomes /dev/null: a caller's `$(burrow run --rm …)` ends when the CLI does.
fn release_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        for fd in 0..3 {
            let _ = nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd);
        }
    }
}

/// Creates, starts and (in the foreground) supervises; the status and whether the OOM killer
/// struck.
fn run(ctx: &Ctx, p: &Parsed, id: String) -> Result<(i32, bool)> {
    let detach = p.bool("detach");
    if detach && p.has(super::network::FLAG.0) {
        return Err(burrow_core::runtime::error::RuntimeError::Usage(
            "--network-config needs a foreground run (or the monitor): a detached run leaves nobody to own the network helper".into(),
        ));
    }
    // Ports bound now: a taken one fails before the container exists.
    let mut net = super::network::prepare(p)?;
    let mut o = super::create::opts(ctx, p, id.clone())?;
    // In the foreground without a console socket, we hold the terminal ourselves.
    let mut console_peer: Option<OwnedFd> = None;
    if !detach && o.console_socket.is_none() && wants_terminal(&o.bundle) {
        let (a, b) = tty::console_pair()?;
        o.console_fd = Some(b);
        console_peer = Some(a);
    }
    let created = create(o)?;
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
        return Ok((0, false));
    }
    // Before its program runs: a systemd scope may be gone, counters and all, once it exits.
    let mut oom_watch = created.state.cgroups.as_ref().and_then(burrow_core::runtime::cgroups::OomWatch::new);
    // Block signals only now: the container's process must not inherit a blocked mask.
    let sfd = wait::block_signals()?;
    start(&ctx.root, &id)?;
    crate::status::pid(created.state.pid);
    super::start::poststart(&created.state, &ctx.root, &created.spec);
    let mut served: Vec<&mut dyn wait::Served> = Vec::new();
    if let Some(n) = net.as_mut() {
        served.push(n);
    }
    if let Some(w) = oom_watch.as_mut() {
        served.push(w);
    }
    let code = wait::supervise_with(created.state.pid, sfd, master, &mut served)?;
    drop(served);
    let oom = match oom_watch.as_mut() {
        Some(w) => w.killed(),
        None => created.state.cgroups.as_ref().is_some_and(burrow_core::runtime::cgroups::oom_killed),
    };
    // The helper and the forwarder go with the container.
    drop(net);
    if oom {
        crate::log::warn_code(crate::log::OOM_KILLED, "EOOM_KILLED");
    }
    super::delete::destroy(&ctx.root, &created.state, Some(&created.spec));
    Ok((code, oom))
}

fn wants_terminal(bundle: &std::path::Path) -> bool {
    burrow_core::runtime::create::load_spec(bundle).ok().and_then(|(s, _)| s.process().as_ref().and_then(|p| p.terminal())).unwrap_or(false)
}
