//! Commands runc has that burrow-runtime does not implement (yet): a clear error, not silence.

use burrow_core::runtime::error::{Result, RuntimeError};

pub fn main(cmd: &str) -> Result<i32> {
    let why = "checkpoint/restore (CRIU) is not supported";
    Err(RuntimeError::Usage(format!("{cmd} is not supported: {why}")))
}
