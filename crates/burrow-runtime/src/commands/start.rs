//! `start ID`: lets a created container's process run; runs poststart hooks.

use burrow_core::error::Coded;
use burrow_core::runtime::create::{load_spec_file, start};
use burrow_core::runtime::error::Result;
use burrow_core::runtime::state::ContainerState;

use super::{id_command, Ctx};

pub fn main(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let (_, id) = id_command(args, &[], "start")?;
    let st = match start(&ctx.root, &id) {
        Ok(st) => st,
        Err(e) => {
            // A failed startContainer hook stops the container and the lifecycle goes on to delete.
            if e.code() == "EHOOK" {
                if let Ok(st) = ContainerState::load(&ctx.root, &id) {
                    super::delete::destroy(&ctx.root, &st, None);
                }
            }
            return Err(e);
        }
    };
    crate::status::pid(st.pid);
    if let Ok(spec) = load_spec_file(&st.config_path) {
        poststart(&st, &ctx.root, &spec);
    }
    Ok(0)
}

/// burrow_core's poststart hooks, whose failures only warn (runtime spec).
pub fn poststart(st: &ContainerState, root: &std::path::Path, spec: &oci_spec::runtime::Spec) {
    for e in burrow_core::runtime::lifecycle::poststart(st, root, spec) {
        crate::log::warn(&format!("poststart hook failed: {e}"));
    }
}

/// `poststart ID`: a started container's poststart hooks, for burrow-monitor, which does not
/// carry the spec's parser (src/bin/burrow-monitor.rs) and asks for them when the container's
/// config has any.
pub fn poststart_main(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let (_, id) = id_command(args, &[], "poststart")?;
    let st = ContainerState::load(&ctx.root, &id)?;
    poststart(&st, &ctx.root, &load_spec_file(&st.config_path)?);
    Ok(0)
}
