//! `delete [--force] ID`: a stopped or created container is removed; a running one only with
//! --force, after SIGKILL to all its processes. Poststop hooks run last and only warn.

use std::path::Path;
use std::time::{Duration, Instant};

use burrow_core::runtime::error::{Result, RuntimeError};
use burrow_core::runtime::exec::container_pids;
use burrow_core::runtime::state::{container_dir, ContainerState, Status};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{flags, id_of, Ctx};
use crate::args::Flag;

pub fn main(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let p = flags(args, &[Flag("force", &["f"], false)])?;
    let id = id_of(&p, "delete")?;
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

/// Kills whatever is left, removes the state and runs poststop hooks.
/// `spec` saves a parse when the caller has it (a foreground `run`).
pub fn destroy(root: &Path, st: &ContainerState, spec: Option<&oci_spec::runtime::Spec>) {
    // A frozen (paused) task does not die of SIGKILL under the v1 freezer until thawed.
    let frozen = st.cgroups.as_ref().filter(|p| burrow_core::runtime::cgroups::is_frozen(p, st.pid));
    for pid in container_pids(st) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    if let Some(p) = frozen {
        let _ = burrow_core::runtime::cgroups::freeze(p, false);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while st.init_alive() && Instant::now() < deadline {
        // Reap it if it is ours (foreground run); otherwise wait for its parent to.
        let _ = nix::sys::wait::waitpid(Pid::from_raw(st.pid), Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        std::thread::sleep(Duration::from_millis(5));
    }
    let json = st.oci_json(root).to_string();
    if let Some(p) = &st.cgroups {
        burrow_core::runtime::cgroups::remove(p);
    }
    let _ = std::fs::remove_dir_all(container_dir(root, &st.id));
    let loaded;
    let spec = match spec {
        Some(s) => Some(s),
        None => {
            loaded = super::start::oci_spec_load(&st.config_path).ok();
            loaded.as_ref()
        }
    };
    if let Some(spec) = spec {
        if let Some(h) = spec.hooks().as_ref().and_then(|h| h.poststop().as_ref()) {
            for e in burrow_core::runtime::hooks::run_all(Some(h), &json) {
                crate::log::warn(&format!("poststop hook failed: {e}"));
            }
        }
    }
}
