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
        if let Some(h) = spec.hooks().as_ref().and_then(|h| h.poststart().as_ref()).filter(|h| !h.is_empty()) {
            // The state as of the exec ("running"), even if the program is done by the time the hooks run.
            let state = st.oci_json(root).to_string();
            let_the_process_run(st.pid);
            for e in burrow_core::runtime::hooks::run_all(Some(h), &state) {
                crate::log::warn(&format!("poststart hook failed: {e}"));
            }
        }
    }
}

/// Poststart hooks run "after the user-specified process is executed". `start` learns of the
/// exec the moment it happens, before the program has run an instruction, and the hook (a fresh
/// process too) could then overtake it: give the program up to 20 ms to get going — until it
/// blocks, stops or exits — so that what it does first comes before the hooks. Only paid by
/// containers with poststart hooks.
fn let_the_process_run(pid: i32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(20);
    while std::time::Instant::now() < deadline {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        match stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().next()) {
            Some("R") => std::thread::sleep(std::time::Duration::from_micros(200)),
            _ => return,
        }
    }
}

pub fn oci_spec_load(p: &std::path::Path) -> Result<burrow_core::runtime::create::SpecT> {
    burrow_core::runtime::create::load_spec_file(p)
}
