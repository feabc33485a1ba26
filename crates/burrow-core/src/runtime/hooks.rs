//! OCI hooks: each runs with the container's state JSON on stdin, the hook's args and env, and
//! an optional timeout after which it is killed. A failing hook fails the operation it belongs
//! to (except poststart and poststop, which only warn, as the spec says).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use super::error::{Result, RuntimeError};

/// Runs hooks in order; the first failure stops them and fails the operation. A hook without
/// `env` runs with an empty environment.
pub fn run(hooks: Option<&Vec<Hook>>, state_json: &str) -> Result<()> {
    run_with_env(hooks, state_json, &[])
}

/// `run`, where a hook whose `env` is empty gets `default_env` (startContainer hooks get the
/// container process's environment, as in runc).
pub fn run_with_env(hooks: Option<&Vec<Hook>>, state_json: &str, default_env: &[String]) -> Result<()> {
    for h in hooks.into_iter().flatten() {
        run_one(h, state_json, default_env)?;
    }
    Ok(())
}

/// Runs every hook (poststart, poststop): a failure is only reported, the rest still run.
pub fn run_all(hooks: Option<&Vec<Hook>>, state_json: &str) -> Vec<RuntimeError> {
    hooks.into_iter().flatten().filter_map(|h| run_one(h, state_json, &[]).err()).collect()
}

/// The environment a hook runs with: its own, or `default_env` when it has none.
fn hook_env<'a>(h: &'a Hook, default_env: &'a [String]) -> &'a [String] {
    match h.env() {
        Some(e) if !e.is_empty() => e,
        _ => default_env,
    }
}

fn run_one(h: &Hook, state_json: &str, default_env: &[String]) -> Result<()> {
    let path = h.path().display().to_string();
    let err = |detail: String| RuntimeError::Hook { path: path.clone(), detail };
    let args = h.args().clone().unwrap_or_default();
    let mut cmd = Command::new(h.path());
    if let Some((arg0, rest)) = args.split_first() {
        use std::os::unix::process::CommandExt;
        cmd.arg0(arg0).args(rest);
    }
    cmd.env_clear();
    for kv in hook_env(h, default_env) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(env: Option<Vec<&str>>) -> Hook {
        let mut h = Hook::default();
        h.set_path("/bin/true".into());
        h.set_env(env.map(|e| e.into_iter().map(String::from).collect()));
        h
    }

    #[test]
    fn a_hook_without_env_gets_the_default() {
        let process_env = vec!["FOO=bar".to_string(), "PATH=/bin".to_string()];
        assert_eq!(hook_env(&hook(None), &process_env), process_env.as_slice());
        assert_eq!(hook_env(&hook(Some(vec![])), &process_env), process_env.as_slice());
        assert_eq!(hook_env(&hook(Some(vec!["A=1"])), &process_env), ["A=1".to_string()].as_slice());
        assert!(hook_env(&hook(None), &[]).is_empty());
    }
}
