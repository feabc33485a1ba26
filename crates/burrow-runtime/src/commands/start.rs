//! `start ID`: lets a created container's process run; runs poststart hooks.

use burrow_core::error::Coded;
use burrow_core::runtime::create::start;
use burrow_core::runtime::error::Result;

use super::{flags, id_of, Ctx};

pub fn main(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let p = flags(args, &[])?;
    let id = id_of(&p, "start")?;
    let st = match start(&ctx.root, &id) {
        Ok(st) => st,
        Err(e) => {
            // A failed prestart hook stops the container and the lifecycle goes on to delete.
            if e.code() == "EHOOK" {
                if let Ok(st) = burrow_core::runtime::state::ContainerState::load(&ctx.root, &id) {
                    super::delete::destroy(&ctx.root, &st, None);
                }
            }
            return Err(e);
        }
    };
    poststart(&st, &ctx.root);
    Ok(0)
}

/// Poststart hooks only warn on failure (runtime spec).
pub fn poststart(st: &burrow_core::runtime::state::ContainerState, root: &std::path::Path) {
    if let Ok(spec) = oci_spec_load(&st.config_path) {
        poststart_with(st, root, &spec);
    }
}

pub fn poststart_with(st: &burrow_core::runtime::state::ContainerState, root: &std::path::Path, spec: &oci_spec::runtime::Spec) {
    {
        if let Some(h) = spec.hooks().as_ref().and_then(|h| h.poststart().as_ref()) {
            for e in burrow_core::runtime::hooks::run_all(Some(h), &st.oci_json(root).to_string()) {
                crate::log::warn(&format!("poststart hook failed: {e}"));
            }
        }
    }
}

pub fn oci_spec_load(p: &std::path::Path) -> Result<burrow_core::runtime::create::SpecT> {
    burrow_core::runtime::create::load_spec_file(p)
}
