//! Error and debug output: text on stderr, and with `--log FILE` also appended to that file,
//! as JSON lines when `--log-format json` (what containerd and podman read back).

use std::io::Write;
use std::sync::OnceLock;

use burrow_core::error::Coded;
use burrow_core::runtime::error::RuntimeError;

pub struct LogConfig {
    pub file: Option<String>,
    pub json: bool,
    pub debug: bool,
}

static CONFIG: OnceLock<LogConfig> = OnceLock::new();

/// Set by the burrow CLI for the runtimes it runs with the user's terminal as their stderr
/// (`run` and `exec` in the foreground): their errors and warnings then read as the CLI's own
/// (`Error: …`, `burrow: warning: …`), so the user sees one voice, not the runtime's name.
fn cli_voice() -> bool {
    static V: OnceLock<bool> = OnceLock::new();
    *V.get_or_init(|| std::env::var_os("BURROW_RUNTIME_CLI").is_some_and(|v| v == "1"))
}

fn print(level: &str, msg: &str) {
    match (cli_voice(), level) {
        (true, "error") => eprintln!("Error: {msg}"),
        (true, _) => eprintln!("burrow: {level}: {msg}"),
        (false, "error") => eprintln!("burrow-runtime: {msg}"),
        (false, _) => eprintln!("burrow-runtime: {level}: {msg}"),
    }
}

pub fn init(c: LogConfig) {
    let _ = CONFIG.set(c);
}

fn write_file(level: &str, msg: &str, code: Option<&str>) {
    let Some(c) = CONFIG.get() else { return };
    let Some(path) = &c.file else { return };
    let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) else { return };
    let line = if c.json {
        let mut v = serde_json::json!({ "level": level, "msg": msg, "time": burrow_core::runtime::state::now_rfc3339() });
        if let Some(code) = code {
            v["code"] = code.into();
        }
        v.to_string()
    } else {
        format!("time=\"{}\" level={level} msg=\"{}\"", burrow_core::runtime::state::now_rfc3339(), msg.replace('"', "\\\""))
    };
    let _ = writeln!(f, "{line}");
}

pub fn error(e: &RuntimeError) {
    let msg = e.to_string();
    print("error", &msg);
    write_file("error", &msg, Some(e.code()));
}

pub fn debug(msg: &str) {
    if CONFIG.get().is_some_and(|c| c.debug) {
        eprintln!("burrow-runtime: debug: {msg}");
        write_file("debug", msg, None);
    }
}

/// `--debug`: the created container's cgroup and how its first process entered it
/// (CLONE_INTO_CGROUP, migration and why, or a systemd scope).
pub fn created(st: &burrow_core::runtime::state::ContainerState) {
    let where_ = st.cgroups.as_ref().map(|p| p.describe()).unwrap_or_else(|| "no cgroup of its own".into());
    debug(&format!("created {}: init pid {}; {where_}", st.id, st.pid));
}

pub fn warn(msg: &str) {
    print("warning", msg);
    write_file("warning", msg, None);
}

/// A warning with a stable code that the burrow CLI reads back from `--log` (e.g. EOOM_KILLED).
pub fn warn_code(msg: &str, code: &str) {
    print("warning", msg);
    write_file("warning", msg, Some(code));
}

pub const OOM_KILLED: &str = "the container was killed by the kernel's OOM killer: it reached its memory limit";
