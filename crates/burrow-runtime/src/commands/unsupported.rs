//! Commands runc has that burrow-runtime does not implement (yet): a clear error, not silence.
//! containerd's shim passes the runtime's output on to its client (`ctr tasks checkpoint` prints
//! "BINARY did not terminate successfully: exit status 1: OUTPUT"), so the message names
//! burrow-runtime itself and says what to do. The container is not touched: nothing is stopped,
//! frozen or written before the refusal.

use burrow_core::runtime::error::{Result, RuntimeError};

pub fn main(cmd: &str) -> Result<i32> {
    Err(RuntimeError::Usage(format!(
        "burrow-runtime does not support {cmd} yet (CRIU checkpoint/restore is not implemented); the container is left as it was: use runc for containers that must be checkpointed"
    )))
}
