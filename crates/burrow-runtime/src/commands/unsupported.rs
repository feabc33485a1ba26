//! Commands runc has that burrow-runtime does not implement (yet): a clear error, not silence.

use burrow_core::runtime::error::{Result, RuntimeError};

pub fn main(cmd: &str) -> Result<i32> {
    let why = match cmd {
        "update" => "resource limits are placed and updated by the burrow CLI (`burrow update`)",
        "pause" | "resume" => "the freezer needs a delegated cgroup, which the runtime does not manage",
        _ => "checkpoint/restore (CRIU) is not supported",
    };
    Err(RuntimeError::Usage(format!("{cmd} is not supported: {why}")))
}
