//! The status channel of this run of the runtime (`--status-fd FD`, a global flag; `run` also
//! takes it after the command, as before): burrow_core::runtime::status writes the messages,
//! this module holds the one channel of the process so that every command reports through it.
//! Without the flag every function here does nothing.

use std::sync::OnceLock;

use burrow_core::error::Coded;
use burrow_core::runtime::error::RuntimeError;
use burrow_core::runtime::status::{Report, StatusFd};

static CHANNEL: OnceLock<StatusFd> = OnceLock::new();

/// Opens the channel on the descriptor our caller named; a second one is refused.
pub fn open(value: &str) -> Result<(), RuntimeError> {
    let s = StatusFd::from_arg(value).map_err(RuntimeError::Usage)?;
    CHANNEL.set(s).map_err(|_| RuntimeError::Usage("--status-fd given twice".into()))
}

pub fn channel() -> Option<&'static StatusFd> {
    CHANNEL.get()
}

pub fn report(r: Report) {
    if let Some(c) = CHANNEL.get() {
        c.report(&r);
    }
}

pub fn pid(pid: i32) {
    report(Report::Pid(pid));
}

pub fn error(e: &RuntimeError) {
    report(Report::Error { msg: e.to_string(), code: e.code().to_string() });
}

pub fn exit(code: i32, signal: Option<i32>) {
    report(Report::exit(code, signal));
}
