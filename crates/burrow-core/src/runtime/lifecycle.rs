//! The lifecycle steps that `start`, `run`, `delete` and the monitor share, after `create`
//! (create.rs): poststart hooks once the process runs, and the end of a container — its
//! processes killed, its cgroup and state removed, poststop hooks run. Hook failures at these
//! moments only warn (runtime spec): they are returned for the caller to report.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use super::error::RuntimeError;
use super::exec::container_pids;
use super::state::{container_dir, ContainerState};
use super::{cgroups, hooks};

/// Runs the poststart hooks of a started container; their failures are returned as warnings.
pub fn poststart(st: &ContainerState, root: &Path, spec: &Spec) -> Vec<RuntimeError> {
    let Some(h) = spec.hooks().as_ref().and_then(|h| h.poststart().as_ref()).filter(|h| !h.is_empty()) else { return Vec::new() };
    // The state as of the exec ("running"), even if the program is done by the time the hooks run.
    let state = st.oci_json(root).to_string();
    let_the_process_run(st.pid);
    hooks::run_all(Some(h), &state)
}

/// Poststart hooks run "after the user-specified process is executed". `start` learns of the
/// exec the moment it happens, before the program has run an instruction, and the hook (a fresh
/// process too) could then overtake it: give the program up to 20 ms to get going — until it
/// blocks, stops or exits — so that what it does first comes before the hooks. Only paid by
/// containers with poststart hooks.
fn let_the_process_run(pid: i32) {
    let deadline = Instant::now() + Duration::from_millis(20);
    while Instant::now() < deadline {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        match stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().next()) {
            Some("R") => std::thread::sleep(Duration::from_micros(200)),
            _ => return,
        }
    }
}

/// Kills whatever is left of the container, removes its cgroup and state, and runs its poststop
/// hooks, whose failures are returned as warnings. `spec` saves a parse when the caller has it
/// (a foreground `run`, the monitor); otherwise it is read from the container's config.
pub fn destroy(root: &Path, st: &ContainerState, spec: Option<&Spec>) -> Vec<RuntimeError> {
    // A frozen (paused) task does not die of SIGKILL under the v1 freezer until thawed.
    let frozen = st.cgroups.as_ref().filter(|p| cgroups::is_frozen(p, st.pid));
    for pid in container_pids(st) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    if let Some(p) = frozen {
        let _ = cgroups::freeze(p, false);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while st.init_alive() && Instant::now() < deadline {
        // Reap it if it is ours (foreground run); otherwise wait for its parent to.
        let _ = nix::sys::wait::waitpid(Pid::from_raw(st.pid), Some(nix::sys::wait::WaitPidFlag::WNOHANG));
        std::thread::sleep(Duration::from_millis(5));
    }
    let json = st.oci_json(root).to_string();
    if let Some(p) = &st.cgroups {
        cgroups::remove(p);
    }
    let _ = std::fs::remove_dir_all(container_dir(root, &st.id));
    let loaded;
    let spec = match spec {
        Some(s) => Some(s),
        None => {
            loaded = super::create::load_spec_file(&st.config_path).ok();
            loaded.as_ref()
        }
    };
    match spec.and_then(|s| s.hooks().as_ref()).and_then(|h| h.poststop().as_ref()) {
        Some(h) => hooks::run_all(Some(h), &json),
        None => Vec::new(),
    }
}
