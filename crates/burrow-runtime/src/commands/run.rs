//! `run [create flags] [--detach] ID`: create and start; in the foreground, supervise the
//! process (signals forwarded, terminal relayed), delete the container when it exits and return
//! its status.

use std::os::fd::OwnedFd;

use burrow_core::runtime::create::{create, start};
use burrow_core::runtime::error::Result;
use burrow_core::runtime::{tty, wait};

use super::{create::FLAGS, id_command, Ctx};

pub fn main(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let (p, id) = id_command(args, &super::network::with_flag(FLAGS), "run")?;
    let detach = p.bool("detach");
    if detach && p.has(super::network::FLAG.0) {
        return Err(burrow_core::runtime::error::RuntimeError::Usage("--network-config needs a foreground run (or the monitor): a detached run leaves nobody to own the network helper".into()));
    }
    // Ports bound now: a taken one fails before the container exists.
    let mut net = super::network::prepare(&p)?;
    let mut o = super::create::opts(ctx, &p, id.clone())?;
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
        super::start::poststart(&created.state, &ctx.root, &created.spec);
        return Ok(0);
    }
    // Before its program runs: a systemd scope may be gone, counters and all, once it exits.
    let mut oom_watch = created.state.cgroups.as_ref().and_then(burrow_core::runtime::cgroups::OomWatch::new);
    // Block signals only now: the container's process must not inherit a blocked mask.
    let sfd = wait::block_signals()?;
    start(&ctx.root, &id)?;
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
    Ok(code)
}

fn wants_terminal(bundle: &std::path::Path) -> bool {
    burrow_core::runtime::create::load_spec(bundle)
        .ok()
        .and_then(|(s, _)| s.process().as_ref().and_then(|p| p.terminal()))
        .unwrap_or(false)
}
