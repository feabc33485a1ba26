//! `kill [--all] ID [SIGNAL]`: SIGTERM by default; names with or without "SIG", or numbers.

use std::str::FromStr;

use burrow_core::runtime::error::{Result, RuntimeError};
use burrow_core::runtime::exec::container_pids;
use burrow_core::runtime::state::{ContainerState, Status};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{flags, id_of, Ctx};
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
    let p = flags(args, &[Flag("all", &["a"], false)])?;
    let id = id_of(&p, "kill")?;
    let sig = parse_signal(p.positional.get(1).map(String::as_str).unwrap_or("SIGTERM"))?;
    let st = ContainerState::load(&ctx.root, &id)?;
    let status = st.status(&ctx.root);
    if status == Status::Stopped {
        return Err(RuntimeError::BadState { id, op: "kill", status: status.as_str().into() });
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
