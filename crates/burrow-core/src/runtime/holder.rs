//! The holder of a container: the process that outlives the CLI (the detached monitor, or the
//! foreground `run` when the CLI gives it the container's directory) and therefore owns the
//! container's run records and `--rm`. It is the one writer of D/monitor.json (who holds the
//! container: a reader that finds `started` and no exit record tells "finishing" from "died"
//! by it), D/started and D/exit.json, whose shapes ts/container/state.ts reads.
//!
//! `--rm` is the CLI's own `rm -f` run as an exit command, as podman's conmon runs
//! `podman container cleanup`: removal knows the store's rootfs drivers, the names, the
//! anonymous volumes and the user namespace that deletes files of subordinate ids, and one
//! implementation of it (TypeScript) is kept rather than two.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::error::RuntimeError;
use super::state::{now_rfc3339, proc_start_time};
use crate::error::Coded;

/// Docker's statuses for a run that failed before its program ran: 127 when the command is
/// not found, 126 when it cannot be invoked, 125 for the engine's own failures.
pub fn failure_status(e: &RuntimeError) -> i32 {
    match e.code() {
        "ECMD_NOT_FOUND" => 127,
        "ECMD_CANNOT_INVOKE" => 126,
        _ => 125,
    }
}

/// How a run ended, as D/exit.json records it.
pub struct ExitRecord {
    pub exit_code: i32,
    pub oom_killed: bool,
    /// Why it failed, when it did before its program ran.
    pub reason: Option<String>,
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

/// Runs the exit command (the CLI's cleanup, `burrow rm -f ID` for --rm) with no stdio of ours:
/// it must not keep a terminal or a pipe of a caller that is gone. Its status is not ours to report.
pub fn run_exit_command(cmd: &[String]) {
    if let Some((prog, rest)) = cmd.split_first() {
        let null = std::process::Stdio::null;
        let _ = std::process::Command::new(prog).args(rest).stdin(null()).stdout(null()).stderr(null()).status();
    }
}

/// The foreground CLI's end of the hand-over (`run --status-fd`): a socket or pipe it reads.
///
/// The CLI removes a `--rm` container itself while it is alive, which costs nothing (it waits
/// anyway) where an exit command would start a second Node process for every `run --rm`. So
/// the holder tells it the status, then waits until the CLI has closed its end (it finished,
/// or it was killed at any moment), and only then looks whether the container is still there
/// and runs the exit command if so. The two never remove at the same time.
pub struct StatusFd(OwnedFd);

impl StatusFd {
    pub fn new(fd: OwnedFd) -> StatusFd {
        StatusFd(fd)
    }

    /// `{"exit": N}` as one line; a gone reader is not an error (EPIPE: Rust ignores SIGPIPE).
    pub fn report_exit(&self, code: i32) {
        let mut f = std::fs::File::from(self.0.try_clone().expect("dup of the status fd"));
        let _ = writeln!(f, "{}", serde_json::json!({ "exit": code }));
    }

    /// Blocks until the reader has closed its end.
    pub fn wait_closed(self) {
        loop {
            let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return,
                Ok(_) => {}
            }
            let rev = fds[0].revents().unwrap_or(PollFlags::empty());
            if rev.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) {
                return;
            }
            // A socket's reader that closed reads as end of file; anything it wrote is ignored.
            let mut buf = [0u8; 256];
            match nix::unistd::read(self.0.as_raw_fd(), &mut buf) {
                Ok(0) => return,
                Ok(_) | Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => {}
                Err(_) => return,
            }
        }
    }
}

/// Whether the container's record is still in its directory (a removal renames the directory
/// aside first, so a record under the name means nobody removed it).
pub fn still_there(dir: &Path) -> bool {
    dir.join("record.json").exists()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

    #[test]
    fn exit_record_has_the_fields_state_ts_reads() {
        let dir = std::env::temp_dir().join(format!("burrow-holder-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_exit(&dir, &ExitRecord { exit_code: 127, oom_killed: false, reason: Some("exec: \"x\": not found".into()) });
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
    fn docker_statuses_for_failures() {
        assert_eq!(failure_status(&RuntimeError::Exec { arg0: "x".into(), detail: "not found".into(), not_found: true }), 127);
        assert_eq!(failure_status(&RuntimeError::Exec { arg0: "/etc".into(), detail: "is a directory".into(), not_found: false }), 126);
        assert_eq!(failure_status(&RuntimeError::Usage("bad".into())), 125);
    }

    #[test]
    fn the_hand_over_waits_for_the_reader_to_close() {
        let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).unwrap();
        let s = StatusFd::new(ours);
        s.report_exit(3);
        let mut buf = [0u8; 64];
        let n = nix::unistd::read(theirs.as_raw_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"{\"exit\":3}\n");
        let reader = std::thread::spawn(move || drop(theirs));
        s.wait_closed();
        reader.join().unwrap();
        // A reader that is gone already: reporting is not an error, and the wait ends at once.
        let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).unwrap();
        drop(theirs);
        let s = StatusFd::new(ours);
        s.report_exit(0);
        s.wait_closed();
    }
}
