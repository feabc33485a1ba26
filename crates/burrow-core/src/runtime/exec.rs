//! `exec`: a new process in a running container. Main forks a child that joins the init's
//! namespaces (user first: it grants the rights to join the others; mount last: it changes our
//! root); that child forks again so the process lands in the pid namespace, reports its pid and
//! exits. The process reports failure on the channel; a successful execve closes the channel
//! (close-on-exec), which is how main learns that the command runs.
//!
//! The child also joins the container's cgroup, so that the container's limits hold for what it
//! runs: on cgroup v2 it is born there (clone3 with CLONE_INTO_CGROUP), else main moves it in
//! before it goes on (v1, or a kernel without CLONE_INTO_CGROUP).

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use nix::sched::{setns, CloneFlags};
use nix::sys::wait::waitpid;
use nix::unistd::ForkResult;
use oci_spec::runtime::{Process, Spec};

use super::cgroups::{self, Entry};
use super::error::{PathCtx, Result, RuntimeError, SysCtx};
use super::process;
use super::state::{ContainerState, Status};
use super::sync::{Channel, Msg};
use super::tty;
use crate::error::Coded;

pub struct ExecOpts {
    pub root: PathBuf,
    pub id: String,
    pub process: Process,
    pub console_socket: Option<PathBuf>,
    pub console_fd: Option<OwnedFd>,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: i32,
    /// `--ignore-paused`: exec in a paused container anyway (the process starts on resume).
    pub ignore_paused: bool,
    /// A session (and process group) of its own, so that it can be killed with its children
    /// (a healthcheck's probe at its timeout: super::health).
    pub new_session: bool,
}

const NS_ORDER: [(&str, CloneFlags); 7] = [
    ("user", CloneFlags::CLONE_NEWUSER),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

fn child_exit(ch: &Channel, r: Result<()>) -> ! {
    if let Err(e) = r {
        let _ = ch.send(&Msg::Error { code: e.code().into(), msg: e.to_string() });
    }
    // SAFETY: leave without running the parent's atexit handlers.
    unsafe { libc::_exit(1) }
}

/// A process started in a container.
pub struct Executed {
    pub pid: i32,
    /// Whether and how it entered the container's cgroup; None: the container has none.
    pub cgroup: Option<ExecCgroup>,
}

pub enum ExecCgroup {
    Entered {
        dirs: Vec<PathBuf>,
        by: Entry,
    },
    /// Not allowed to move it there (rootless, from a cgroup the user does not own, as runc
    /// tolerates too): it runs, but outside the container's limits.
    Outside {
        why: String,
    },
}

/// Starts the process; returns once it has exec'd.
pub fn exec(o: ExecOpts, spec: &Spec) -> Result<Executed> {
    let st = ContainerState::load(&o.root, &o.id)?;
    let status = st.status(&o.root);
    // A paused container's cgroup is frozen: a process entering it stops before it runs (and
    // this waits for it until `resume`), so runc refuses unless told to.
    if status == Status::Stopped || (status == Status::Paused && !o.ignore_paused) {
        return Err(RuntimeError::BadState { id: o.id.clone(), op: "exec in", status: status.as_str().into() });
    }
    let terminal = o.process.terminal().unwrap_or(false);
    if terminal && o.console_socket.is_none() && o.console_fd.is_none() {
        return Err(RuntimeError::Usage("--tty needs --console-socket to receive the terminal".into()));
    }
    let console = match (&o.console_socket, o.console_fd) {
        (_, Some(fd)) => Some(fd),
        (Some(p), None) => Some(OwnedFd::from(std::os::unix::net::UnixStream::connect(p).at("connect to the console socket", p)?)),
        _ => None,
    };
    // Open the namespaces now, while /proc/PID is surely the init (checked by start time above).
    let mut join = Vec::new();
    for (name, flag) in NS_ORDER {
        let theirs = format!("/proc/{}/ns/{name}", st.pid);
        let mine = format!("/proc/self/ns/{name}");
        let (Ok(a), Ok(b)) = (std::fs::metadata(&theirs), std::fs::metadata(&mine)) else { continue };
        if a.ino() != b.ino() {
            join.push((std::fs::File::open(&theirs).at("open", &theirs)?, flag));
        }
    }
    // Before joining the mount namespace changes what the listener's path means.
    let seccomp_conn = super::seccomp::connect_listener(spec.linux().as_ref())?;
    let state_json = st.oci_json(&o.root).to_string();
    let placement = st.cgroups.as_ref();
    let targets = placement.map(|p| cgroups::exec_targets(p, st.pid)).unwrap_or_default();
    // cgroup v2: one directory, which the child can be born in.
    let dir = match (placement, targets.as_slice()) {
        (Some(p), [d]) if p.v2 => {
            nix::fcntl::open(d, nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
                .ok()
                // SAFETY: a descriptor open() just returned, owned by nobody else.
                .map(|fd| unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
        }
        _ => None,
    };
    let (parent_ch, child_ch) = Channel::pair()?;
    // SAFETY: plain prctl: the process becomes our child when the intermediate exits.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let mut why_not: Option<String> = None;
    let forked = match &dir {
        Some(fd) => match super::create::clone3(Some(fd.as_raw_fd())) {
            Ok(f) => f,
            Err(e) if cgroups::fall_back_from_clone_into(e) => {
                why_not = Some(format!("clone3 with CLONE_INTO_CGROUP: {}", e.desc()));
                // SAFETY: single-threaded process (see create.rs).
                unsafe { nix::unistd::fork() }.op("fork")?
            }
            Err(e) => return Err(e).op("clone3(CLONE_INTO_CGROUP)"),
        },
        // SAFETY: single-threaded process (see create.rs).
        None => unsafe { nix::unistd::fork() }.op("fork")?,
    };
    let born = dir.is_some() && why_not.is_none();
    drop(dir);
    // Not born in the container's cgroup: main moves the child before it goes on.
    let migrate = !targets.is_empty() && !born;
    match forked {
        ForkResult::Child => {
            drop(parent_ch);
            process::set_name("burrow:exec");
            let r = (|| -> Result<()> {
                if migrate {
                    child_ch.expect("the cgroup", |m| *m == Msg::MapsDone)?;
                }
                for (f, flag) in join {
                    setns(f, flag).op(format!("setns({flag:?})"))?;
                    if flag == CloneFlags::CLONE_NEWUSER {
                        let _ = nix::unistd::setresgid(0.into(), 0.into(), 0.into());
                        let _ = nix::unistd::setresuid(0.into(), 0.into(), 0.into());
                    }
                }
                // SAFETY: as above.
                match unsafe { nix::unistd::fork() }.op("fork")? {
                    ForkResult::Child => {
                        let listener = seccomp_conn.as_ref().map(|c| (c.as_raw_fd(), state_json.as_str()));
                        if o.new_session && console.is_none() {
                            let _ = nix::unistd::setsid();
                        }
                        let r = run_process(&o.process, spec, console.as_ref().map(|c| c.as_raw_fd()), o.preserve_fds, listener);
                        child_exit(&child_ch, r.map(|_| ()));
                    }
                    ForkResult::Parent { child } => child_ch.send(&Msg::InitPid { pid: child.as_raw() }),
                }
            })();
            if r.is_ok() {
                // SAFETY: as in child_exit.
                unsafe { libc::_exit(0) };
            }
            child_exit(&child_ch, r);
        }
        ForkResult::Parent { child } => {
            drop(child_ch);
            let cgroup = if targets.is_empty() {
                None
            } else if !migrate {
                Some(ExecCgroup::Entered { dirs: targets.clone(), by: Entry::CloneIntoCgroup })
            } else {
                match cgroups::move_into(&targets, child.as_raw()) {
                    Ok(()) => Some(ExecCgroup::Entered { dirs: targets.clone(), by: Entry::Migrated { why: why_not.take() } }),
                    Err((file, e)) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM | libc::EROFS)) => {
                        Some(ExecCgroup::Outside { why: format!("write to {}: {e}", file.display()) })
                    }
                    Err((file, e)) => {
                        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                        let _ = waitpid(child, None);
                        return Err(RuntimeError::Usage(format!(
                            "exec: cannot move the process into the container's cgroup: write to {}: {e}",
                            file.display()
                        )));
                    }
                }
            };
            if migrate {
                parent_ch.send(&Msg::MapsDone)?;
            }
            let pid = parent_ch.expect("the process id", |m| matches!(m, Msg::InitPid { .. }));
            let _ = waitpid(child, None);
            let Msg::InitPid { pid } = pid? else { unreachable!() };
            match parent_ch.recv()? {
                None => {}
                Some(Msg::Error { code, msg }) => {
                    let _ = waitpid(nix::unistd::Pid::from_raw(pid), None);
                    return Err(RuntimeError::Remote { code, msg });
                }
                Some(m) => return Err(RuntimeError::Child(format!("protocol error: unexpected {m:?}"))),
            }
            if let Some(p) = &o.pid_file {
                super::create::write_pid_file(p, pid)?;
            }
            Ok(Executed { pid, cgroup })
        }
    }
}

fn run_process(p: &Process, spec: &Spec, console: Option<i32>, preserve: i32, listener: Option<(i32, &str)>) -> Result<std::convert::Infallible> {
    // Before the config's seccomp filter, which may deny close_range.
    super::fds::pass_through(preserve)?;
    if let Some(c) = console {
        tty::setup(c, p.console_size().as_ref().map(|b| (b.height() as u16, b.width() as u16)))?;
        let _ = nix::unistd::close(c);
    }
    process::set_rlimits(p)?;
    let env = process::env(p);
    let args = p.args().clone().unwrap_or_default();
    let arg0 = args.first().cloned().ok_or_else(|| RuntimeError::Usage("exec needs a command".into()))?;
    let nnp = p.no_new_privileges().unwrap_or(false);
    let filter = process::build_seccomp(spec.linux().as_ref())?;
    let (conn, state) = (listener.map(|l| l.0), listener.map(|l| l.1).unwrap_or(""));
    if !nnp {
        process::load_seccomp(&filter)?;
        process::send_seccomp_listener(&filter, conn, spec.linux().as_ref(), state)?;
    }
    process::switch_user_keeping_groups(p, process::keeps_original_groups(spec))?;
    nix::unistd::chdir(p.cwd().as_path()).at("chdir to the process cwd", p.cwd().as_path())?;
    let exe = process::find_executable(&arg0, &env)?;
    if nnp {
        process::set_no_new_privs()?;
        process::load_seccomp(&filter)?;
        process::send_seccomp_listener(&filter, conn, spec.linux().as_ref(), state)?;
    }
    Err(process::exec(&exe, &args, &env))
}

/// Container ids' processes: every process whose pid namespace is the init's (when the
/// container has its own), else just the init.
pub fn container_pids(st: &ContainerState) -> Vec<i32> {
    if !st.init_alive() {
        return Vec::new();
    }
    if !st.has_pid_ns {
        return vec![st.pid];
    }
    let Ok(ns) = std::fs::metadata(format!("/proc/{}/ns/pid", st.pid)).map(|m| m.ino()) else { return vec![st.pid] };
    let mut pids: Vec<i32> = std::fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .filter(|pid| std::fs::metadata(format!("/proc/{pid}/ns/pid")).map(|m| m.ino() == ns).unwrap_or(false))
                .collect()
        })
        .unwrap_or_default();
    pids.sort();
    pids
}
