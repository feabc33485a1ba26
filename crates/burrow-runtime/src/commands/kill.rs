//! `kill [--all] ID [SIGNAL]`: SIGTERM by default; names with or without "SIG", or numbers.
//! As runc 1.1: `kill --all` of a stopped container succeeds (nothing is left to signal; this is
//! what containerd's shim sends after a task exits), a plain `kill` of one fails with "container
//! not running", the words clients match.

use std::str::FromStr;

use burrow_core::runtime::error::{Result, RuntimeError};
use burrow_core::runtime::exec::container_pids;
use burrow_core::runtime::state::{ContainerState, Status};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{command, Ctx};
use crate::args::Flag;

pub fn parse_signal(s: &str) -> Result<Signal> {
    let bad = || RuntimeError::Usage(format!("unknown signal {s:?}"));
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") { up } else { format!("SIG{up}") };
    Signal::from_str(&name).map_err(|_| bad())
}

pub fn main(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let p = command(args, &[Flag("all", &["a"], false)], "kill", 1, 2)?;
    let id = p.positional[0].clone();
    let sig = parse_signal(p.positional.get(1).map(String::as_str).unwrap_or("SIGTERM"))?;
    let st = ContainerState::load(&ctx.root, &id)?;
    if st.status(&ctx.root) == Status::Stopped {
        if p.bool("all") {
            return Ok(0);
        }
        return Err(RuntimeError::NotRunning { id });
    }
    let pids = if p.bool("all") { container_pids(&st) } else { vec![st.pid] };
    for pid in pids {
        match kill(Pid::from_raw(pid), sig) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => return Err(RuntimeError::Sys { op: format!("kill {pid} {sig}"), errno: e }),
        }
    }
    Ok(0)
}
