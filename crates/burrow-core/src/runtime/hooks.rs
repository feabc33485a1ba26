//! OCI hooks: each runs with the container's state JSON on stdin, the hook's args and env, and
//! an optional timeout after which it is killed. A failing hook fails the operation it belongs
//! to (except poststart and poststop, which only warn, as the spec says).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use super::error::{Result, RuntimeError};

/// Runs hooks in order; the first failure stops them and fails the operation.
pub fn run(hooks: Option<&Vec<Hook>>, state_json: &str) -> Result<()> {
    for h in hooks.into_iter().flatten() {
        run_one(h, state_json)?;
    }
    Ok(())
}

/// Runs every hook (poststart, poststop): a failure is only reported, the rest still run.
pub fn run_all(hooks: Option<&Vec<Hook>>, state_json: &str) -> Vec<RuntimeError> {
    hooks.into_iter().flatten().filter_map(|h| run_one(h, state_json).err()).collect()
}

fn run_one(h: &Hook, state_json: &str) -> Result<()> {
    let path = h.path().display().to_string();
    let err = |detail: String| RuntimeError::Hook { path: path.clone(), detail };
    let args = h.args().clone().unwrap_or_default();
    let mut cmd = Command::new(h.path());
    if let Some((arg0, rest)) = args.split_first() {
        use std::os::unix::process::CommandExt;
        cmd.arg0(arg0).args(rest);
    }
    cmd.env_clear();
    for kv in h.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let mut child = cmd.stdin(Stdio::piped()).spawn().map_err(|e| err(format!("cannot run: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin must not make us fail.
        let _ = stdin.write_all(state_json.as_bytes());
    }
    let deadline = h.timeout().filter(|t| *t > 0).map(|t| Instant::now() + Duration::from_secs(t as u64));
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(err(format!("exited with {status}"))),
            Ok(None) => {}
            Err(e) => return Err(err(format!("wait: {e}"))),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(err(format!("timed out after {} s", h.timeout().unwrap_or(0))));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
