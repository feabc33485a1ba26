//! The holder of a container: the process that outlives the CLI (the detached monitor, or the
//! foreground `run` when the CLI gives it the container's directory) and therefore owns the
//! container's run records and `--rm`. It is the one writer of D/monitor.json (who holds the
//! container: a reader that finds `started` and no exit record tells "finishing" from "died"
//! by it), D/started, D/exit.json and D/restart.json (its restarts under a restart policy),
//! whose shapes ts/container/state.ts reads. It reads D/stopped-by-user, which the CLI writes
//! before it stops, kills or removes the container: no restart follows then. It appends the
//! container's `start` (each time its program starts, the first time too: the CLI that asked
//! for it may be gone, or slower than an exit), `oom` and `die` events to the engine's events
//! file, with Docker's network `disconnect` for each network the container is on
//! (D/networks.json) before each `die`, as Docker's daemon releases the container's networks
//! before the die.
//!
//! `--rm` is the CLI's own `rm -f` run as an exit command, as podman's conmon runs
//! `podman container cleanup`: removal knows the store's rootfs drivers, the names, the
//! anonymous volumes and the user namespace that deletes files of subordinate ids, and one
//! implementation of it (TypeScript) is kept rather than two.

use std::path::Path;

use super::error::RuntimeError;
use super::state::{now_rfc3339, proc_start_time};
use crate::error::Coded;

/// Docker's statuses for a run that failed before its program ran: 127 when the command is
/// not found, 126 when it cannot be invoked, 125 for the engine's own failures.
pub fn failure_status(e: &RuntimeError) -> i32 {
    crate::codes::exit_status(e.code())
}

/// How a run ended, as D/exit.json records it.
pub struct ExitRecord {
    pub exit_code: i32,
    pub oom_killed: bool,
    /// Why it failed, when it did before its program ran.
    pub reason: Option<String>,
    /// How long its program ran, from its start to its exit, when it started: the `die`
    /// event's `execDuration`.
    pub ran: Option<std::time::Duration>,
}

/// Writes a file whole under its final name (a reader never sees it half-written).
pub fn write_atomic(path: &Path, data: &str) {
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, data).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

/// D/monitor.json names this process (pid and start time, so a reused pid is not taken for it).
pub fn write_holder(dir: &Path) {
    let me = std::process::id() as i32;
    write_atomic(&dir.join("monitor.json"), &serde_json::json!({ "pid": me, "startTime": proc_start_time(me).unwrap_or(0) }).to_string());
}

/// D/started, after D/monitor.json.
pub fn write_started(dir: &Path) {
    write_atomic(&dir.join("started"), &now_rfc3339());
}

pub fn write_exit(dir: &Path, r: &ExitRecord) {
    let mut v = serde_json::json!({ "exitCode": r.exit_code, "finishedAt": now_rfc3339(), "oomKilled": r.oom_killed });
    if let Some(reason) = &r.reason {
        v["reason"] = serde_json::Value::String(reason.clone());
    }
    write_atomic(&dir.join("exit.json"), &v.to_string());
}

/// D/restart.json: how many times the policy restarted the container, and whether it is
/// waiting to restart it now (Docker's `Restarting`).
pub fn write_restarts(dir: &Path, count: u32, restarting: bool) {
    write_atomic(&dir.join("restart.json"), &serde_json::json!({ "count": count, "restarting": restarting }).to_string());
}

/// Whether the user stopped, killed or removed the container (ts/container/lifecycle.ts writes
/// the marker before it signals).
pub fn stopped_by_user(dir: &Path) -> bool {
    dir.join("stopped-by-user").exists()
}

/// Appends a container event, in Docker's shape, to the engine's events file (ts/engine/events.ts
/// writes the same lines): one write of one line with O_APPEND, which concurrent writers do not
/// interleave. The container's name, image and labels come from its record; losing an event
/// (a full disk) never fails the container.
pub fn append_event(events: &Path, dir: &Path, id: &str, action: &str, extra: &[(&str, String)]) {
    let mut attrs = serde_json::Map::new();
    if let Some(rec) = std::fs::read_to_string(dir.join("record.json")).ok().and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok()) {
        if let Some(labels) = rec["labels"].as_object() {
            for (k, v) in labels {
                if let Some(v) = v.as_str() {
                    attrs.insert(k.clone(), v.into());
                }
            }
        }
        for (k, field) in [("image", "image"), ("image", "imageName"), ("name", "name")] {
            if let Some(v) = rec[field].as_str() {
                attrs.insert(k.into(), v.into());
            }
        }
    }
    for (k, v) in extra {
        attrs.insert((*k).into(), v.clone().into());
    }
    append_line(events, "container", action, id, attrs);
}

/// Appends Docker's network event `action` (`connect`, `disconnect`) for each network the
/// container is on: D/networks.json, `[{"ID", "name", "type"}]`, which the engine writes at
/// each start and at each `network connect`/`disconnect` (ts/engine/networks.ts). None when
/// it is not there (a container on another container's network namespace, or created by an
/// older burrow).
pub fn append_network_events(events: &Path, dir: &Path, id: &str, action: &str) {
    let Some(nets) = std::fs::read_to_string(dir.join("networks.json")).ok().and_then(|t| serde_json::from_str::<Vec<serde_json::Value>>(&t).ok()) else {
        return;
    };
    for n in &nets {
        let (Some(nid), Some(name), Some(ty)) = (n["ID"].as_str(), n["name"].as_str(), n["type"].as_str()) else { continue };
        let mut attrs = serde_json::Map::new();
        attrs.insert("container".into(), id.into());
        attrs.insert("name".into(), name.into());
        attrs.insert("type".into(), ty.into());
        append_line(events, "network", action, nid, attrs);
    }
}

/// Appends the container's `start`, as soon as its program has started (create::start) and
/// before anything else of its run is reported: the holder also logs its `die`, so the two
/// come in Docker's order however soon the program exits, and whether or not the CLI that
/// started it is still alive to log anything.
pub fn record_start(dir: &Path, id: &str, events: Option<&Path>) {
    if let Some(ev) = events {
        append_event(ev, dir, id, "start", &[]);
    }
}

/// Records how a run ended: with `events`, Docker's `oom` when the OOM killer struck the
/// container (Docker's daemon logs it as the kernel reports it, before the exit), the
/// disconnect from each of its networks (as Docker's daemon releases them before it marks the
/// container stopped: a `stop` or `rm -f` that waits for the exit record finds them logged,
/// and D/networks.json is read while the directory is surely there), then D/exit.json, then
/// `die` with the status and, when it ran, Docker's `execDuration` (whole seconds).
pub fn record_exit(dir: &Path, id: &str, r: &ExitRecord, events: Option<&Path>) {
    if let Some(ev) = events {
        if r.oom_killed {
            append_event(ev, dir, id, "oom", &[]);
        }
        append_network_events(ev, dir, id, "disconnect");
    }
    write_exit(dir, r);
    if let Some(ev) = events {
        let mut attrs = vec![("exitCode", r.exit_code.to_string())];
        if let Some(ran) = r.ran {
            attrs.push(("execDuration", ran.as_secs().to_string()));
        }
        append_event(ev, dir, id, "die", &attrs);
    }
}

/// One event line, in Docker's shape, appended with O_APPEND.
fn append_line(events: &Path, ty: &str, action: &str, actor: &str, attrs: serde_json::Map<String, serde_json::Value>) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let ev = serde_json::json!({
        "Type": ty,
        "Action": action,
        "Actor": { "ID": actor, "Attributes": attrs },
        "scope": "local",
        "time": now.as_secs(),
        "timeNano": now.as_nanos() as u64,
    });
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(events) {
        let _ = f.write_all(format!("{ev}\n").as_bytes());
    }
}

/// Runs the exit command (the CLI's cleanup, `burrow rm -f ID` for --rm) with no stdio of ours:
/// it must not keep a terminal or a pipe of a caller that is gone. Its status is not ours to report.
pub fn run_exit_command(cmd: &[String]) {
    if let Some((prog, rest)) = cmd.split_first() {
        let null = std::process::Stdio::null;
        let _ = std::process::Command::new(prog).args(rest).stdin(null()).stdout(null()).stderr(null()).status();
    }
}

/// The foreground CLI's end of the hand-over (`run --status-fd`): the status channel
/// (super::status), a socket it reads.
///
/// The CLI removes a `--rm` container itself while it is alive, which costs nothing (it waits
/// anyway) where an exit command would start a second Node process for every `run --rm`. So
/// the holder tells it the status, then waits until the CLI has closed its end (it finished,
/// or it was killed at any moment), and only then looks whether the container is still there
/// and runs the exit command if so. The two never remove at the same time.
pub use super::status::StatusFd;

/// Whether the container's record is still in its directory (a removal renames the directory
/// aside first, so a record under the name means nobody removed it).
pub fn still_there(dir: &Path) -> bool {
    dir.join("record.json").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_record_has_the_fields_state_ts_reads() {
        let dir = std::env::temp_dir().join(format!("burrow-holder-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_exit(&dir, &ExitRecord { exit_code: 127, oom_killed: false, reason: Some("exec: \"x\": not found".into()), ran: None });
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("exit.json")).unwrap()).unwrap();
        assert_eq!(v["exitCode"], 127);
        assert_eq!(v["oomKilled"], false);
        assert_eq!(v["reason"], "exec: \"x\": not found");
        assert!(v["finishedAt"].as_str().unwrap().ends_with('Z'));
        write_holder(&dir);
        let h: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("monitor.json")).unwrap()).unwrap();
        assert_eq!(h["pid"], std::process::id());
        assert!(h["startTime"].as_u64().unwrap() > 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn die_events_as_docker_writes_them() {
        let dir = std::env::temp_dir().join(format!("burrow-holder-ev-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("record.json"), r#"{"name":"web","image":"busybox","labels":{"a":"b"}}"#).unwrap();
        let file = dir.join("events.jsonl");
        append_event(&file, &dir, "abc", "die", &[("exitCode", "3".into())]);
        append_event(&file, &dir, "abc", "restart", &[]);
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["Type"], "container");
        assert_eq!(lines[0]["Action"], "die");
        assert_eq!(lines[0]["Actor"]["ID"], "abc");
        assert_eq!(lines[0]["Actor"]["Attributes"]["exitCode"], "3");
        assert_eq!(lines[0]["Actor"]["Attributes"]["name"], "web");
        assert_eq!(lines[0]["Actor"]["Attributes"]["image"], "busybox");
        assert_eq!(lines[0]["Actor"]["Attributes"]["a"], "b");
        assert_eq!(lines[0]["scope"], "local");
        assert_eq!(lines[0]["timeNano"].as_u64().unwrap() / 1_000_000_000, lines[0]["time"].as_u64().unwrap());
        assert_eq!(lines[1]["Action"], "restart");
        // The exit: a disconnect from each network in D/networks.json, the exit record, then die.
        std::fs::write(dir.join("networks.json"), r#"[{"ID":"n1","name":"bridge","type":"bridge"},{"ID":"n2","name":"back","type":"bridge"}]"#).unwrap();
        std::fs::remove_file(&file).unwrap();
        record_start(&dir, "abc", Some(&file));
        record_exit(&dir, "abc", &ExitRecord { exit_code: 0, oom_killed: false, reason: None, ran: Some(std::time::Duration::from_millis(2900)) }, Some(&file));
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let actions: Vec<(&str, &str)> = lines.iter().map(|l| (l["Type"].as_str().unwrap(), l["Action"].as_str().unwrap())).collect();
        assert_eq!(actions, [("container", "start"), ("network", "disconnect"), ("network", "disconnect"), ("container", "die")]);
        assert_eq!(lines[2]["Actor"]["ID"], "n2");
        assert_eq!(lines[2]["Actor"]["Attributes"], serde_json::json!({ "container": "abc", "name": "back", "type": "bridge" }));
        // Docker's whole seconds, rounded down.
        assert_eq!(lines[3]["Actor"]["Attributes"]["execDuration"], "2");
        // Killed by the OOM killer: `oom` first; a run that never started has no execDuration.
        std::fs::remove_file(&file).unwrap();
        record_exit(&dir, "abc", &ExitRecord { exit_code: 137, oom_killed: true, reason: None, ran: None }, Some(&file));
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let actions: Vec<&str> = lines.iter().map(|l| l["Action"].as_str().unwrap()).collect();
        assert_eq!(actions, ["oom", "disconnect", "disconnect", "die"]);
        assert_eq!(lines[0]["Actor"]["Attributes"]["name"], "web");
        assert!(lines[3]["Actor"]["Attributes"].get("execDuration").is_none());
        write_restarts(&dir, 2, true);
        let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("restart.json")).unwrap()).unwrap();
        assert_eq!(r["count"], 2);
        assert_eq!(r["restarting"], true);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn docker_statuses_for_failures() {
        assert_eq!(failure_status(&RuntimeError::Exec { arg0: "x".into(), detail: "not found".into(), not_found: true }), 127);
        assert_eq!(failure_status(&RuntimeError::Exec { arg0: "/etc".into(), detail: "is a directory".into(), not_found: false }), 126);
        assert_eq!(failure_status(&RuntimeError::Usage("bad".into())), 125);
    }
}
