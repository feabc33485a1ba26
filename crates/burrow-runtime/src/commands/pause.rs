//! `pause ID` / `resume ID`: freeze or thaw every process of a container through its cgroup's
//! freezer (v2 `cgroup.freeze` via libcgroups, or the v1 freezer hierarchy). A container that
//! was not placed in a cgroup (rootless without delegation, no limits and no cgroupsPath) has no
//! freezer: say so and how to get one, rather than stopping it with SIGSTOP, which the container
//! could observe and undo.

use burrow_core::runtime::cgroups;
use burrow_core::runtime::error::{Result, RuntimeError};
use burrow_core::runtime::state::{ContainerState, Status};

use super::{id_command, Ctx};

pub fn main(ctx: &Ctx, args: &[String], frozen: bool) -> Result<i32> {
    let op = if frozen { "pause" } else { "resume" };
    let (_, id) = id_command(args, &[], op)?;
    let st = ContainerState::load(&ctx.root, &id)?;
    let status = st.status(&ctx.root);
    let expected = if frozen { Status::Running } else { Status::Paused };
    if status != expected {
        return Err(RuntimeError::BadState { id, op, status: status.as_str().into() });
    }
    let placement = st.cgroups.as_ref().ok_or_else(|| {
        RuntimeError::Usage(format!(
            "{op}: container {id} has no cgroup, so there is no freezer to use. Fix: give it a cgroupsPath in config.json on a host with cgroup v2 delegated to this user (or as root with the v1 freezer hierarchy)"
        ))
    })?;
    cgroups::freeze(placement, frozen)?;
    Ok(0)
}
