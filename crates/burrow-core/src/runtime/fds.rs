//! The descriptors a container process receives beyond stdio, as runc passes them: systemd's
//! socket-activation fds when burrow-runtime itself was socket-activated (LISTEN_FDS with
//! LISTEN_PID naming us, sd_listen_fds(3)), then `--preserve-fds N` more, all starting at fd 3
//! in that order. Everything else the runtime inherited is closed at exec: a caller's stray
//! descriptor (a pipe, a file opened without O_CLOEXEC) must not leak into the container.

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};

use super::error::{Result, RuntimeError};

/// The first descriptor after stdio (SD_LISTEN_FDS_START).
const FIRST: i32 = 3;

/// How many socket-activation fds were passed to this process: LISTEN_FDS when LISTEN_PID is
/// our pid (otherwise they were meant for a parent, and the variables are stale).
pub fn listen_fds() -> i32 {
    let ours = std::env::var("LISTEN_PID").ok().and_then(|p| p.parse::<i32>().ok()) == Some(std::process::id() as i32);
    if !ours {
        return 0;
    }
    std::env::var("LISTEN_FDS").ok().and_then(|n| n.parse::<i32>().ok()).filter(|n| *n > 0).unwrap_or(0)
}

/// Checks, before the runtime opens anything of its own, that fds 3 .. 3+n really are open in
/// the caller: otherwise the runtime's own sockets would take those numbers and be passed.
pub fn check_passed(listen: i32, preserve: i32) -> Result<()> {
    if preserve < 0 {
        return Err(RuntimeError::Usage(format!("--preserve-fds {preserve}: must not be negative")));
    }
    for fd in FIRST..FIRST + listen + preserve {
        if fcntl(fd, FcntlArg::F_GETFD) == Err(Errno::EBADF) {
            let what = if fd < FIRST + listen { format!("LISTEN_FDS={listen}") } else { format!("--preserve-fds {preserve}") };
            return Err(RuntimeError::Usage(format!("{what}: fd {fd} is not open in the caller")));
        }
    }
    Ok(())
}

/// In the process that will exec the container's program, before it loads the config's seccomp
/// filter (which may deny close_range): fds 3 .. 3+n stay open across exec, every other one
/// above stdio gets close-on-exec. The runtime's own descriptors are all close-on-exec already,
/// so those it opens later close too, exactly when the program starts.
pub fn pass_through(n: i32) -> Result<()> {
    for fd in FIRST..FIRST + n.max(0) {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).map_err(|errno| RuntimeError::Sys { op: format!("keep fd {fd} open for the container"), errno })?;
    }
    let from = (FIRST + n.max(0)) as libc::c_uint;
    // SAFETY: close_range only changes descriptor flags here (CLOSE_RANGE_CLOEXEC).
    if unsafe { libc::syscall(libc::SYS_close_range, from, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC) } == 0 {
        return Ok(());
    }
    // Before Linux 5.11: mark each open descriptor. The directory's own fd is among them and
    // is closed right after, so its flag does not matter.
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| RuntimeError::Sys { op: "list /proc/self/fd".into(), errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)) })?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds.into_iter().filter(|fd| *fd >= from as i32) {
        let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
    Ok(())
}

/// The container's environment gets LISTEN_FDS (and LISTEN_FDNAMES when we had them) for its
/// socket-activation fds, with LISTEN_PID set to the pid the program will have: the init
/// execs it, so that is the init's own pid as seen in its pid namespace (1 with a new one,
/// which is all runc ever sets).
pub fn with_listen_env(mut env: Vec<String>, listen: i32) -> Vec<String> {
    if listen <= 0 {
        return env;
    }
    let mut vars = vec![("LISTEN_FDS", listen.to_string()), ("LISTEN_PID", nix::unistd::getpid().to_string())];
    if let Ok(names) = std::env::var("LISTEN_FDNAMES") {
        vars.push(("LISTEN_FDNAMES", names));
    }
    for (k, v) in vars {
        env.retain(|e| e.split('=').next() != Some(k));
        env.push(format!("{k}={v}"));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_env_replaces_and_adds() {
        let env = with_listen_env(vec!["PATH=/bin".into(), "LISTEN_FDS=9".into()], 2);
        assert_eq!(env[0], "PATH=/bin");
        assert!(env.contains(&"LISTEN_FDS=2".to_string()));
        assert!(env.iter().any(|e| e.starts_with("LISTEN_PID=")));
        assert_eq!(env.iter().filter(|e| e.starts_with("LISTEN_FDS=")).count(), 1);
        assert_eq!(with_listen_env(vec!["A=1".into()], 0), vec!["A=1".to_string()]);
    }

    #[test]
    fn a_missing_preserved_fd_is_named() {
        // The test harness may hold fds above 2; a number far above them is surely closed.
        let e = check_passed(0, 100_000).unwrap_err().to_string();
        assert!(e.contains("is not open in the caller"), "{e}");
        assert!(check_passed(0, -1).is_err());
        assert!(check_passed(0, 0).is_ok());
    }
}
