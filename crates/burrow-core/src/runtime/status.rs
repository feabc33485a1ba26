//! The runtime's one structured channel to its caller (`--status-fd FD`), as bubblewrap's
//! `--json-status-fd`: newline-delimited JSON, one object per line, in this order:
//!
//! - `{"pid": N}` once the container's (or the exec'd) process exists;
//! - `{"error": "text", "code": "ECODE"}` when the command fails (codes: crate::codes);
//! - `{"exit": N}`, or `{"exit": N, "signal": "KILL"}`, when the process ends (`run` and `exec`
//!   in the foreground, the monitor) — N in the shell's convention (128+N after signal N);
//! - the monitor adds `{"restart": N}` after its Nth restart under a restart policy.
//!
//! ts/runtime/client.ts (`parseReports`) reads it. Without `--status-fd` nothing here is used
//! and the runtime behaves as runc does (podman and containerd read its stderr and `--log`).

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// One message of the channel.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    Pid(i32),
    Error { msg: String, code: String },
    Exit { code: i32, signal: Option<String> },
    Restart(u32),
}

impl Report {
    /// An exit in the shell's convention; a status above 128 from a wait that saw a signal
    /// carries its name (`signal` is the signal number, when the wait status said so).
    pub fn exit(code: i32, signal: Option<i32>) -> Report {
        Report::Exit { code, signal: signal.and_then(signal_name) }
    }

    /// The line as written, without its newline.
    pub fn to_line(&self) -> String {
        match self {
            Report::Pid(p) => serde_json::json!({ "pid": p }),
            Report::Error { msg, code } => serde_json::json!({ "error": msg, "code": code }),
            Report::Exit { code, signal: None } => serde_json::json!({ "exit": code }),
            Report::Exit { code, signal: Some(s) } => serde_json::json!({ "exit": code, "signal": s }),
            Report::Restart(n) => serde_json::json!({ "restart": n }),
        }
        .to_string()
    }

    /// A line as the caller reads it (ts/runtime/client.ts parseReport), without its newline:
    /// None for a line that is no message of the channel. An error without a code is the
    /// runtime's own (ERUNTIME), as the CLI takes it.
    pub fn from_line(line: &[u8]) -> Option<Report> {
        let v: serde_json::Value = serde_json::from_slice(line).ok()?;
        let o = v.as_object()?;
        if let Some(p) = o.get("pid").and_then(serde_json::Value::as_f64) {
            return Some(Report::Pid(p as i32));
        }
        if let Some(msg) = o.get("error").and_then(serde_json::Value::as_str) {
            let code = o.get("code").and_then(serde_json::Value::as_str).unwrap_or(crate::codes::ERUNTIME);
            return Some(Report::Error { msg: msg.to_string(), code: code.to_string() });
        }
        if let Some(n) = o.get("exit").and_then(serde_json::Value::as_f64) {
            return Some(Report::Exit { code: n as i32, signal: o.get("signal").and_then(serde_json::Value::as_str).map(str::to_string) });
        }
        o.get("restart").and_then(serde_json::Value::as_u64).map(|n| Report::Restart(n as u32))
    }
}

/// Docker's and runc's short signal names (`KILL`, `TERM`), without the `SIG`.
fn signal_name(sig: i32) -> Option<String> {
    nix::sys::signal::Signal::try_from(sig).ok().map(|s| s.as_str().trim_start_matches("SIG").to_string())
}

/// The write end of the channel. Writes never fail the command: a reader that is gone (EPIPE:
/// Rust ignores SIGPIPE) only loses the rest of the messages.
#[derive(Debug)]
pub struct StatusFd(OwnedFd);

impl StatusFd {
    pub fn new(fd: OwnedFd) -> StatusFd {
        StatusFd(fd)
    }

    /// Takes over a descriptor number our caller passed (`--status-fd N`), checked to be open,
    /// and marks it close-on-exec: the container and the exit command must not hold it, or the
    /// caller would wait for their end instead of ours.
    pub fn from_arg(value: &str) -> Result<StatusFd, String> {
        let fd: RawFd = value.parse().map_err(|_| format!("invalid --status-fd {value}: not a descriptor number"))?;
        if fd < 3 {
            return Err(format!("invalid --status-fd {value}: stdin, stdout and stderr are not a status channel"));
        }
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
            .map_err(|e| format!("invalid --status-fd {value}: {}", e.desc()))?;
        // SAFETY: an open descriptor (fcntl succeeded) that our caller passed to us for this
        // purpose and that nothing else in this process owns.
        Ok(StatusFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub fn report(&self, r: &Report) {
        let Ok(fd) = self.0.try_clone() else { return };
        let mut f = std::fs::File::from(fd);
        let _ = f.write_all(format!("{}\n", r.to_line()).as_bytes());
    }

    /// `{"exit": N}` as one line.
    pub fn report_exit(&self, code: i32) {
        self.report(&Report::Exit { code, signal: None });
    }

    /// Blocks until the reader has closed its end (the foreground run's hand-over: holder.rs).
    pub fn wait_closed(&self) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

    #[test]
    fn lines_read_as_the_cli_reads_them() {
        assert_eq!(Report::from_line(br#"{"pid":12}"#), Some(Report::Pid(12)));
        assert_eq!(Report::from_line(br#"{"error":"x","code":"ECMD_NOT_FOUND"}"#), Some(Report::Error { msg: "x".into(), code: "ECMD_NOT_FOUND".into() }));
        assert_eq!(Report::from_line(br#"{"error":"x"}"#), Some(Report::Error { msg: "x".into(), code: "ERUNTIME".into() }));
        assert_eq!(Report::from_line(br#"{"exit":130,"signal":"INT"}"#), Some(Report::Exit { code: 130, signal: Some("INT".into()) }));
        assert_eq!(Report::from_line(br#"{"restart":1}"#), Some(Report::Restart(1)));
        assert_eq!(Report::from_line(br#"{"other":1}"#), None);
        assert_eq!(Report::from_line(b"not json"), None);
        // What the writer writes, the reader reads back.
        for r in [Report::Pid(7), Report::exit(137, Some(9)), Report::Error { msg: "m".into(), code: "EX".into() }, Report::Restart(2)] {
            assert_eq!(Report::from_line(r.to_line().as_bytes()), Some(r));
        }
    }

    #[test]
    fn lines_as_the_typescript_parser_reads_them() {
        assert_eq!(Report::Pid(42).to_line(), r#"{"pid":42}"#);
        let e: serde_json::Value =
            serde_json::from_str(&Report::Error { msg: "exec: \"nope\": not found".into(), code: "ECMD_NOT_FOUND".into() }.to_line()).unwrap();
        assert_eq!(e["error"], "exec: \"nope\": not found");
        assert_eq!(e["code"], "ECMD_NOT_FOUND");
        assert_eq!(Report::exit(3, None).to_line(), r#"{"exit":3}"#);
        assert_eq!(Report::exit(137, Some(9)).to_line(), r#"{"exit":137,"signal":"KILL"}"#);
        assert_eq!(Report::exit(143, Some(15)).to_line(), r#"{"exit":143,"signal":"TERM"}"#);
        assert_eq!(Report::Restart(2).to_line(), r#"{"restart":2}"#);
    }

    #[test]
    fn the_descriptor_must_be_open_and_not_stdio() {
        assert!(StatusFd::from_arg("x").is_err());
        assert!(StatusFd::from_arg("1").is_err());
        assert!(StatusFd::from_arg("999").unwrap_err().contains("999"));
    }

    #[test]
    fn reports_arrive_in_order_and_a_gone_reader_is_no_error() {
        let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).unwrap();
        let s = StatusFd::new(ours);
        s.report(&Report::Pid(7));
        s.report_exit(3);
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        while got.len() < 21 {
            let n = nix::unistd::read(theirs.as_raw_fd(), &mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"{\"pid\":7}\n{\"exit\":3}\n");
        let reader = std::thread::spawn(move || drop(theirs));
        s.wait_closed();
        reader.join().unwrap();
        let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).unwrap();
        drop(theirs);
        let s = StatusFd::new(ours);
        s.report_exit(0);
        s.wait_closed();
    }
}
