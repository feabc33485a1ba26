//! Error and debug output, runc's way (logrus). An error is one line in the `--log-format`:
//! text `time="..." level=error msg="..."` or JSON `{"level":"error","msg":"...","time":"..."}`
//! (plus burrow's stable `code`). With `--log FILE` the line goes to the file, where containerd's
//! shim reads the last `"level":"error"` message, and the bare message to stderr, as runc
//! prints it there; without `--log` the line goes to stderr, which podman and scripts read.
//! Warnings and debug output keep burrow's own `burrow-runtime: warning: ...` on stderr. Run by
//! the burrow CLI on the user's terminal (`BURROW_RUNTIME_CLI=1`), it speaks as the CLI does.

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

/// A warning on stderr, in the CLI's voice or the runtime's own (errors: `error()`).
fn print(level: &str, msg: &str) {
    if cli_voice() {
        eprintln!("burrow: {level}: {msg}");
    } else {
        eprintln!("burrow-runtime: {level}: {msg}");
    }
}

pub fn init(c: LogConfig) {
    let _ = CONFIG.set(c);
}

/// One log line as logrus writes it in runc, in JSON or in text (logfmt: the message quoted,
/// with `"` and `\` escaped and control characters as Go's %q shows them).
pub fn format_line(json: bool, level: &str, msg: &str, code: Option<&str>, time: &str) -> String {
    if json {
        let mut v = serde_json::json!({ "level": level, "msg": msg, "time": time });
        if let Some(code) = code {
            v["code"] = code.into();
        }
        return v.to_string();
    }
    let mut q = String::with_capacity(msg.len() + 2);
    for ch in msg.chars() {
        match ch {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\t' => q.push_str("\\t"),
            c if c.is_control() => q.push_str(&format!("\\x{:02x}", c as u32)),
            c => q.push(c),
        }
    }
    format!("time=\"{time}\" level={level} msg=\"{q}\"")
}

fn write_file(level: &str, msg: &str, code: Option<&str>) {
    let Some(c) = CONFIG.get() else { return };
    let Some(path) = &c.file else { return };
    let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) else { return };
    let _ = writeln!(f, "{}", format_line(c.json, level, msg, code, &burrow_core::runtime::state::now_rfc3339()));
}

/// Set to `status` by burrow's monitor for the `create` it runs (monitor.rs): an error then goes
/// to the status channel only, not to stderr, which is the container's own (its log).
pub const ERRORS_ENV: &str = "BURROW_RUNTIME_ERRORS";

/// True when errors go to the status channel only (ERRORS_ENV).
pub fn status_only() -> bool {
    crate::status::channel().is_some() && std::env::var_os(ERRORS_ENV).is_some_and(|v| v == "status")
}

pub fn error(e: &RuntimeError) {
    let msg = e.to_string();
    if cli_voice() {
        // The burrow CLI's terminal: its voice on stderr, the file for the CLI to read the code.
        eprintln!("Error: {msg}");
        write_file("error", &msg, Some(e.code()));
        return;
    }
    match CONFIG.get() {
        Some(c) if c.file.is_some() => {
            eprintln!("{msg}");
            write_file("error", &msg, Some(e.code()));
        }
        c => {
            let json = c.is_some_and(|c| c.json);
            eprintln!("{}", format_line(json, "error", &msg, Some(e.code()).filter(|_| json), &burrow_core::runtime::state::now_rfc3339()));
        }
    }
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

#[cfg(test)]
mod tests {
    use super::format_line;

    #[test]
    fn lines_as_runc_writes_them() {
        let t = "2026-12-06T17:34:35Z";
        assert_eq!(
            format_line(false, "error", "container does not exist", None, t),
            r#"time="2026-12-06T17:34:35Z" level=error msg="container does not exist""#
        );
        assert_eq!(format_line(false, "error", "a \"b\" c\\d\ne", None, t), r#"time="2026-12-06T17:34:35Z" level=error msg="a \"b\" c\\d\ne""#);
        let v: serde_json::Value = serde_json::from_str(&format_line(true, "error", "x \"y\"", Some("EBAD_STATE"), t)).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "x \"y\"");
        assert_eq!(v["time"], t);
        assert_eq!(v["code"], "EBAD_STATE");
    }
}
