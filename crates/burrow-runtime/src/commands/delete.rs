//! `delete [--force] ID`: a stopped or created container is removed; a running one only with
//! --force, after SIGKILL to all its processes. Poststop hooks run last and only warn.

use burrow_core::runtime::error::{Result, RuntimeError};
use burrow_core::runtime::state::{ContainerState, Status};

use super::{id_command, Ctx};
use crate::args::Flag;

pub fn main(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let (p, id) = id_command(args, &[Flag("force", &["f"], false)], "delete")?;
    let st = match ContainerState::load(&ctx.root, &id) {
        Ok(s) => s,
        // runc: deleting a missing container with --force succeeds.
        Err(RuntimeError::NotFound { .. }) if p.bool("force") => return Ok(0),
        Err(e) => return Err(e),
    };
    let status = st.status(&ctx.root);
    // The runtime spec: deleting a container that is not stopped is an error (and changes
    // nothing); --force kills it first.
    if status != Status::Stopped && !p.bool("force") {
        return Err(RuntimeError::BadState { id, op: "delete", status: format!("{} (use --force)", status.as_str()) });
    }
    destroy(&ctx.root, &st, None);
    Ok(0)
}

/// burrow_core's destroy, with its poststop hook failures reported as warnings.
pub fn destroy(root: &std::path::Path, st: &ContainerState, spec: Option<&oci_spec::runtime::Spec>) {
    for e in burrow_core::runtime::lifecycle::destroy(root, st, spec) {
        crate::log::warn(&format!("poststop hook failed: {e}"));
    }
}
