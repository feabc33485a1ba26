//! The runtime started for a planned run, as the CLI starts it (crates/burrow-core/src/spawn.rs,
//! ts/runtime/client.ts runtimeSpawnHeld): stdin /dev/null (the plan never serves -i or -t),
//! stdout and stderr ours, fd 3 the write end of its status channel; our SIGINT, SIGTERM,
//! SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 passed on to it (it passes them to the container).
//!
//! Without threads: fork, then in the child burrow_core's process::exec, which gives the
//! runtime the signal state of a fresh process (the handlers installed here, and Rust's ignored
//! SIGPIPE, must not reach the container) and execs it. The forwarding handler only calls
//! kill(2), async-signal-safe, on a pid that is cleared (with the signals blocked) before the
//! child is reaped, so a reused pid is never signalled.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

use burrow_core::runtime::status::Report;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};

const FORWARDED: [Signal; 6] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2];

/// The runtime's pid while signals may be passed to it; 0 otherwise.
static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe; `pid` is our unreaped child (see the top).
        unsafe { libc::kill(pid, sig) };
    }
}

fn forwarded_set() -> SigSet {
    let mut s = SigSet::empty();
    for sig in FORWARDED {
        s.add(sig);
    }
    s
}

/// How the runtime's status channel ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// It reported the container's exit (it holds on until our end of the channel closes).
    Exit(i32),
    /// It ended without an exit report: its last error's code, if it reported one, and its own
    /// status (128+N when signal N killed it).
    NoExit { failure: Option<String>, status: i32 },
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("{op}: {source}")]
    Sys {
        op: &'static str,
        #[source]
        source: nix::errno::Errno,
    },
}

fn sys(op: &'static str) -> impl FnOnce(nix::errno::Errno) -> SpawnError {
    move |source| SpawnError::Sys { op, source }
}

/// A started runtime: its pid and the read end of its channel.
pub struct Child {
    pid: i32,
    status: OwnedFd,
}

impl Child {
    /// Forks and execs `path` with `argv` (argv[0] included) and `env` (`NAME=VALUE`).
    pub fn start(path: &Path, argv: &[String], env: &[Vec<u8>]) -> Result<Child, SpawnError> {
        let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("pipe2"))?;
        let null = nix::fcntl::open("/dev/null", nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
            .map_err(sys("open /dev/null"))?;
        // SAFETY: the descriptor open(2) just returned, owned by nothing else.
        let null = unsafe { OwnedFd::from_raw_fd(null) };
        let env: Vec<String> = env.iter().map(|e| String::from_utf8_lossy(e).into_owned()).collect();
        // Blocked until the pid is known, so that no signal of ours is lost meanwhile.
        let mut old = SigSet::empty();
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded_set()), Some(&mut old)).map_err(sys("sigprocmask"))?;
        let handler = SigAction::new(SigHandler::Handler(forward), SaFlags::SA_RESTART, SigSet::empty());
        for sig in FORWARDED {
            // SAFETY: the handler only reads an atomic and calls kill(2).
            unsafe { sigaction(sig, &handler) }.map_err(sys("sigaction"))?;
        }
        // SAFETY: this process has one thread; the child only sets up descriptors and execs.
        match unsafe { nix::unistd::fork() } {
            Err(e) => {
                let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
                Err(sys("fork")(e))
            }
            Ok(nix::unistd::ForkResult::Child) => child(path, argv, &env, null.as_raw_fd(), write_end.as_raw_fd()),
            Ok(nix::unistd::ForkResult::Parent { child }) => {
                CHILD.store(child.as_raw(), Ordering::SeqCst);
                let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
                drop(write_end);
                Ok(Child { pid: child.as_raw(), status: read_end })
            }
        }
    }

    /// Reads the channel until the exit report, or its end and the runtime's.
    pub fn wait_report(&self) -> End {
        // SAFETY: borrowed for the reads only; `self.status` keeps it open.
        let mut f = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(self.status.as_raw_fd()) });
        let mut buf = Vec::with_capacity(512);
        let mut chunk = [0u8; 1024];
        let mut failure = None;
        loop {
            match f.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(i) = buf.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = buf.drain(..=i).collect();
                        match Report::from_line(&line[..i]) {
                            Some(Report::Exit { code, .. }) => return End::Exit(code),
                            Some(Report::Error { code, .. }) => failure = Some(code),
                            _ => {}
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        End::NoExit { failure, status: self.reap() }
    }

    /// Waits for the runtime's end, clears the pid the handler signals, then reaps it.
    fn reap(&self) -> i32 {
        loop {
            // SAFETY: waitid on our own child with WNOWAIT: it stays a zombie, its pid ours.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let r = unsafe { libc::waitid(libc::P_PID, self.pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT) };
            if r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break;
            }
        }
        let mut old = SigSet::empty();
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded_set()), Some(&mut old));
        CHILD.store(0, Ordering::SeqCst);
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
        let mut status = 0;
        // SAFETY: reaps our child found above.
        if unsafe { libc::waitpid(self.pid, &mut status, 0) } != self.pid {
            return 125;
        }
        if libc::WIFSIGNALED(status) {
            128 + libc::WTERMSIG(status)
        } else {
            libc::WEXITSTATUS(status)
        }
    }
}

/// In the forked child: stdin /dev/null, the channel's write end as fd 3, then the runtime.
fn child(path: &Path, argv: &[String], env: &[String], null: RawFd, status: RawFd) -> ! {
    // SAFETY: descriptor calls on descriptors open in this process; no other thread exists.
    unsafe {
        libc::dup2(null, 0);
        if status == 3 {
            libc::fcntl(3, libc::F_SETFD, 0);
        } else {
            libc::dup2(status, 3);
        }
    }
    let e = burrow_core::runtime::process::exec(path, argv, env);
    // As the CLI's spawn failure (SpawnError::Exec): the runtime is missing or cannot run.
    let why = match e {
        burrow_core::runtime::error::RuntimeError::Exec { detail, .. } => {
            let mut c = detail.chars();
            c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
        }
        e => e.to_string(),
    };
    let msg = format!("cannot run {}: {why}", path.display());
    let line = serde_json::json!({ "error": msg, "code": burrow_core::codes::ERUNTIME_MISSING }).to_string() + "\n";
    eprintln!("Error: {msg}");
    // SAFETY: writes to our status channel, then ends this child without running destructors.
    unsafe {
        libc::write(3, line.as_ptr().cast(), line.len());
        libc::_exit(127)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Child {
        let env: Vec<Vec<u8>> = std::env::vars().map(|(k, v)| format!("{k}={v}").into_bytes()).collect();
        Child::start(Path::new("/bin/sh"), &["sh".into(), "-c".into(), script.into()], &env).unwrap()
    }

    #[test]
    fn channel_exit_failure_and_status() {
        // The exit report ends the wait at once (the child still runs, as the runtime waits).
        let c = sh(r#"echo '{"pid":1}' >&3; echo '{"exit":3}' >&3; read x < /dev/null; sleep 0.2"#);
        assert_eq!(c.wait_report(), End::Exit(3));
        // No exit report: the last error's code, and the child's own status.
        let c = sh(r#"echo '{"error":"no","code":"ECMD_NOT_FOUND"}' >&3; exit 1"#);
        assert_eq!(c.wait_report(), End::NoExit { failure: Some("ECMD_NOT_FOUND".into()), status: 1 });
        let c = sh("kill -TERM $$");
        assert_eq!(c.wait_report(), End::NoExit { failure: None, status: 128 + 15 });
        // stdin is /dev/null; signals arrive at their defaults, unblocked (SigIgn/SigBlk of 0).
        let c = sh(r#"read x; echo "{\"exit\":$?}" >&3"#);
        assert_eq!(c.wait_report(), End::Exit(1));
        let c = sh(r#"n=$(grep -cE '^(SigIgn|SigBlk):\s+0+$' /proc/self/status); echo "{\"exit\":$n}" >&3"#);
        assert_eq!(c.wait_report(), End::Exit(2));
    }

    #[test]
    fn missing_runtime() {
        let c = Child::start(Path::new("/nonexistent/burrow-runtime"), &["x".into()], &[]).unwrap();
        assert_eq!(c.wait_report(), End::NoExit { failure: Some("ERUNTIME_MISSING".into()), status: 127 });
    }
}
