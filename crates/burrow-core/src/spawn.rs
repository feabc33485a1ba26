//! Starting `burrow-runtime run` for the CLI's foreground `run`, from inside the Node process.
//!
//! Why not Node's child_process: loading it (with node:net and node:stream under it) and its
//! spawn (libuv forks the whole Node process, then the child execs) cost a `burrow run` more than
//! everything else it does between its flags and the runtime's start. `posix_spawn` (glibc's
//! clone(CLONE_VM|CLONE_VFORK)) copies nothing.
//!
//! What the child gets is what libuv gives a child started with `stdio: [inherit|ignore, inherit,
//! inherit, pipe]`: stdin, stdout and stderr (Node marks even those close-on-exec, so each is
//! passed through a dup2 of a copy), the write end of a pipe as fd 3 (the runtime's status
//! channel), default signal dispositions (Node ignores SIGPIPE) and an empty signal mask, the
//! caller's environment as given. Every other descriptor of the Node process is close-on-exec.
//!
//! Two threads report to the caller's callback: one reads the status channel and passes each
//! complete line; one waits for the child's exit. The read end stays open until the channel ends
//! (EOF: every writer closed it), so the runtime, which waits for its reader to go away before it
//! runs a `--rm` cleanup itself, keeps waiting while this process lives.

use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How long the exit waits for the channel's end: the lines the child wrote before it exited
/// (its exit or error report) come before its exit unless something it started still holds
/// fd 3 open.
const LINES_BEFORE_EXIT: Duration = Duration::from_millis(100);

/// Errors of starting the child.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("invalid argument: {0} contains a NUL byte")]
    Nul(&'static str),
    #[error("{op}: {source}")]
    Sys {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run {bin}: {source}")]
    Exec {
        bin: String,
        #[source]
        source: std::io::Error,
    },
}

impl crate::Coded for SpawnError {
    fn code(&self) -> &'static str {
        match self {
            SpawnError::Nul(_) => crate::codes::EINVAL_ARG,
            SpawnError::Sys { .. } => crate::codes::EIO,
            SpawnError::Exec { .. } => crate::codes::ERUNTIME_MISSING,
        }
    }
}

/// What the threads report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete line of the status channel (without its newline).
    Line(String),
    /// The child ended: its exit status, or the signal that killed it.
    Exit { code: Option<i32>, signal: Option<i32> },
}

/// The child's stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdin {
    Inherit,
    Null,
}

/// A started child: its pid, and a kill that never reaches a reused pid.
#[derive(Debug, Clone)]
pub struct Held {
    pub pid: i32,
    /// True once the child has been waited for: set by the waiter, under the lock, before it
    /// reaps the child, so that a kill holding the lock while this is false signals our child.
    reaped: Arc<Mutex<bool>>,
}

impl Held {
    /// Sends `sig` to the child unless it has ended; false when it had.
    pub fn kill(&self, sig: i32) -> bool {
        let reaped = self.reaped.lock().unwrap_or_else(|e| e.into_inner());
        if *reaped {
            return false;
        }
        // SAFETY: kill(2) with our own child's pid, which cannot have been reused: it is not reaped.
        unsafe { libc::kill(self.pid, sig) == 0 }
    }
}

fn sys(op: &'static str) -> impl FnOnce(std::io::Error) -> SpawnError {
    move |source| SpawnError::Sys { op, source }
}

fn cstr(what: &'static str, s: &str) -> Result<CString, SpawnError> {
    CString::new(s).map_err(|_| SpawnError::Nul(what))
}

/// A close-on-exec copy of `fd` numbered 10 or above, out of the way of the child's 0..=3.
fn high_copy(fd: RawFd) -> Result<OwnedFd, SpawnError> {
    // SAFETY: fcntl on a descriptor number; the result is a new descriptor we own, or -1.
    let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
    if n < 0 {
        return Err(sys("fcntl(F_DUPFD_CLOEXEC)")(std::io::Error::last_os_error()));
    }
    // SAFETY: `n` was just returned by fcntl and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// posix_spawn's attributes and file actions, destroyed when dropped.
struct SpawnSetup {
    attr: libc::posix_spawnattr_t,
    actions: libc::posix_spawn_file_actions_t,
}

impl SpawnSetup {
    fn new() -> Result<Self, SpawnError> {
        // SAFETY: both are plain C structs that their init functions fill in; on failure of the
        // second the first is destroyed before returning.
        unsafe {
            let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
            let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
            let r = libc::posix_spawnattr_init(&mut attr);
            if r != 0 {
                return Err(sys("posix_spawnattr_init")(std::io::Error::from_raw_os_error(r)));
            }
            let r = libc::posix_spawn_file_actions_init(&mut actions);
            if r != 0 {
                libc::posix_spawnattr_destroy(&mut attr);
                return Err(sys("posix_spawn_file_actions_init")(std::io::Error::from_raw_os_error(r)));
            }
            Ok(SpawnSetup { attr, actions })
        }
    }
}

impl Drop for SpawnSetup {
    fn drop(&mut self) {
        // SAFETY: both were initialised in new() and are destroyed once, here.
        unsafe {
            libc::posix_spawn_file_actions_destroy(&mut self.actions);
            libc::posix_spawnattr_destroy(&mut self.attr);
        }
    }
}

fn check(op: &'static str, r: libc::c_int) -> Result<(), SpawnError> {
    if r == 0 {
        Ok(())
    } else {
        Err(sys(op)(std::io::Error::from_raw_os_error(r)))
    }
}

/// Starts `bin` with `args` (argv[1..]) and `env` (`KEY=VALUE`), its status channel on fd 3,
/// and reports its lines and its exit to `on_event` from two threads of its own.
pub fn spawn_with_status<F>(bin: &str, args: &[String], env: &[String], stdin: Stdin, on_event: F) -> Result<Held, SpawnError>
where
    F: Fn(Event) + Send + Clone + 'static,
{
    let path = cstr("the program", bin)?;
    let mut argv_c = vec![path.clone()];
    for a in args {
        argv_c.push(cstr("an argument", a)?);
    }
    let envp_c = env.iter().map(|e| cstr("the environment", e)).collect::<Result<Vec<_>, _>>()?;
    let mut argv: Vec<*mut libc::c_char> = argv_c.iter().map(|s| s.as_ptr() as *mut libc::c_char).collect();
    argv.push(std::ptr::null_mut());
    let mut envp: Vec<*mut libc::c_char> = envp_c.iter().map(|s| s.as_ptr() as *mut libc::c_char).collect();
    envp.push(std::ptr::null_mut());

    // The status channel: both ends close-on-exec; the child gets the write end as fd 3 (a dup2
    // of a copy numbered 10 or above, which clears close-on-exec on fd 3 only).
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills in two new descriptors, which we own from here on.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(sys("pipe2")(std::io::Error::last_os_error()));
    }
    // SAFETY: just created by pipe2, owned by nobody else.
    let (read_end, write_end) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let write_high = high_copy(write_end.as_raw_fd())?;
    drop(write_end);
    // Copies of the stdio to pass on: Node has set close-on-exec on 0, 1 and 2 themselves.
    let mut copies = Vec::new();
    for fd in [0, 1, 2] {
        if fd == 0 && stdin == Stdin::Null {
            continue;
        }
        copies.push((fd, high_copy(fd)?));
    }

    let mut setup = SpawnSetup::new()?;
    let devnull = c"/dev/null";
    // SAFETY: the attribute and action objects are initialised; every descriptor named is open
    // in this process until posix_spawn returns; the signal sets are filled before use.
    let pid = unsafe {
        if stdin == Stdin::Null {
            check("posix_spawn_file_actions_addopen", libc::posix_spawn_file_actions_addopen(&mut setup.actions, 0, devnull.as_ptr(), libc::O_RDONLY, 0))?;
        }
        for (fd, copy) in &copies {
            check("posix_spawn_file_actions_adddup2", libc::posix_spawn_file_actions_adddup2(&mut setup.actions, copy.as_raw_fd(), *fd))?;
        }
        check("posix_spawn_file_actions_adddup2", libc::posix_spawn_file_actions_adddup2(&mut setup.actions, write_high.as_raw_fd(), 3))?;
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        check("posix_spawnattr_setsigdefault", libc::posix_spawnattr_setsigdefault(&mut setup.attr, &all))?;
        check("posix_spawnattr_setsigmask", libc::posix_spawnattr_setsigmask(&mut setup.attr, &none))?;
        check(
            "posix_spawnattr_setflags",
            libc::posix_spawnattr_setflags(&mut setup.attr, (libc::POSIX_SPAWN_SETSIGDEF | libc::POSIX_SPAWN_SETSIGMASK) as libc::c_short),
        )?;
        let mut pid: libc::pid_t = 0;
        let r = libc::posix_spawn(&mut pid, path.as_ptr(), &setup.actions, &setup.attr, argv.as_ptr(), envp.as_ptr());
        if r != 0 {
            return Err(SpawnError::Exec { bin: bin.to_string(), source: std::io::Error::from_raw_os_error(r) });
        }
        pid
    };
    drop(copies);
    drop(write_high);

    let held = Held { pid, reaped: Arc::new(Mutex::new(false)) };
    let report = on_event.clone();
    let ended = Arc::new((Mutex::new(false), Condvar::new()));
    let reader_ended = ended.clone();
    std::thread::Builder::new()
        .name("burrow-status".into())
        .spawn(move || {
            read_lines(File::from(read_end), report);
            let (lock, cv) = &*reader_ended;
            *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
            cv.notify_all();
        })
        .map_err(sys("spawn the status reader"))?;
    let waiter = held.clone();
    std::thread::Builder::new()
        .name("burrow-wait".into())
        .spawn(move || {
            let exit = wait_exit(&waiter);
            let (lock, cv) = &*ended;
            let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
            drop(cv.wait_timeout_while(guard, LINES_BEFORE_EXIT, |ended| !*ended));
            on_event(exit)
        })
        .map_err(sys("spawn the waiter"))?;
    Ok(held)
}

/// Passes each complete line of the channel on, until EOF; the read end is closed then.
fn read_lines<F: Fn(Event)>(mut f: File, on_event: F) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match f.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                while let Some(i) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    on_event(Event::Line(String::from_utf8_lossy(&line[..i]).into_owned()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}

/// Waits for the child's end without reaping it, marks it reaped under the lock, then reaps it.
fn wait_exit(held: &Held) -> Event {
    loop {
        // SAFETY: waitid on our own child with WNOWAIT leaves it a zombie: its pid stays ours.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::waitid(libc::P_PID, held.pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if r != 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            // Reaped by someone else (a SIGCHLD handler that waits for any child): no status to give.
            *held.reaped.lock().unwrap_or_else(|e| e.into_inner()) = true;
            return Event::Exit { code: None, signal: None };
        }
        let mut reaped = held.reaped.lock().unwrap_or_else(|e| e.into_inner());
        *reaped = true;
        let mut status = 0;
        // SAFETY: reaps the zombie found above.
        unsafe { libc::waitpid(held.pid, &mut status, 0) };
        drop(reaped);
        return if libc::WIFSIGNALED(status) {
            Event::Exit { code: None, signal: Some(libc::WTERMSIG(status)) }
        } else {
            Event::Exit { code: Some(libc::WEXITSTATUS(status)), signal: None }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn run(script: &str, stdin: Stdin) -> (Held, Vec<Event>) {
        let (tx, rx) = mpsc::channel();
        let tx = Arc::new(Mutex::new(tx));
        let env: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).chain(["X_SPAWN_TEST=yes".to_string()]).collect();
        let held = spawn_with_status("/bin/sh", &["-c".into(), script.into()], &env, stdin, move |e| {
            let _ = tx.lock().unwrap().send(e);
        })
        .unwrap();
        let mut events = Vec::new();
        while let Ok(e) = rx.recv_timeout(Duration::from_secs(20)) {
            let exit = matches!(e, Event::Exit { .. });
            events.push(e);
            if exit {
                break;
            }
        }
        (held, events)
    }

    #[test]
    fn reports_lines_env_and_exit() {
        // The lines come first, in order, then the exit.
        let (_, ev) = run("echo '{\"pid\":1}' >&3; printf 'a\\nb' >&3; echo \"$X_SPAWN_TEST\" >&3; exit 7", Stdin::Null);
        let want = [Event::Line("{\"pid\":1}".into()), Event::Line("a".into()), Event::Line("byes".into()), Event::Exit { code: Some(7), signal: None }];
        assert_eq!(ev, want);
    }

    #[test]
    fn signal_default_and_kill() {
        // SIGPIPE ignored here must be default in the child; a kill after the end does nothing.
        // SAFETY: setting a signal's disposition in the test process.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        let (held, ev) = run("kill -PIPE $$; sleep 5", Stdin::Null);
        assert!(ev.contains(&Event::Exit { code: None, signal: Some(libc::SIGPIPE) }), "{ev:?}");
        assert!(!held.kill(libc::SIGTERM));
    }

    #[test]
    fn missing_program() {
        let err = spawn_with_status("/nonexistent/burrow-runtime", &[], &[], Stdin::Null, |_| {}).unwrap_err();
        assert!(matches!(err, SpawnError::Exec { .. }), "{err}");
    }
}
