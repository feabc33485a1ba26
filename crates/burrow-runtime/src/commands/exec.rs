//! `exec [flags] ID [COMMAND ARGS...]` or `exec --process FILE ID`: a new process in the
//! container. Without --detach, supervise it and return its status.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use burrow_core::error::Coded;
use burrow_core::runtime::create::load_spec_file;
use burrow_core::runtime::error::{PathCtx, Result, RuntimeError, SysCtx};
use burrow_core::runtime::exec::{exec, ExecCgroup, ExecOpts};
use burrow_core::runtime::state::ContainerState;
use burrow_core::runtime::{tty, wait};
use oci_spec::runtime::{Capability, Process};

use super::{flags, id_of, Ctx};
use crate::args::Flag;

const FLAGS: &[Flag] = &[
    Flag("console-socket", &[], true),
    Flag("cwd", &[], true),
    Flag("env", &["e"], true),
    Flag("tty", &["t"], false),
    Flag("user", &["u"], true),
    Flag("additional-gids", &["g"], true),
    Flag("process", &["p"], true),
    Flag("detach", &["d"], false),
    Flag("pid-file", &[], true),
    Flag("process-label", &[], true),
    Flag("apparmor", &[], true),
    Flag("no-new-privs", &[], false),
    Flag("cap", &["c"], true),
    Flag("preserve-fds", &[], true),
    Flag("cgroup", &[], true),
    Flag("ignore-paused", &[], false),
    Flag("resize-fd", &[], true),
    Flag("console-size", &[], true),
];

/// `--resize-fd N` (burrow's own, for the Engine API's exec resize): sizes for the terminal
/// arrive on inherited descriptor N as 4-byte frames (rows, cols: u16 big-endian each), as the
/// monitor's RESIZE frame, and are set on the pty master (TIOCSWINSZ: SIGWINCH to the
/// foreground). The service that runs us has pipes, not a terminal, for our stdio: there is no
/// terminal of ours whose size SIGWINCH could copy.
struct Resizer {
    fd: Option<OwnedFd>,
    master: OwnedFd,
    buf: Vec<u8>,
}

impl wait::Served for Resizer {
    fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.fd.as_ref().map(|f| f.as_fd())
    }

    fn ready(&mut self) {
        use std::os::fd::AsFd;
        let Some(fd) = &self.fd else { return };
        let mut b = [0u8; 64];
        match nix::unistd::read(fd.as_raw_fd(), &mut b) {
            // The writer went away: sizes stay as they are.
            Ok(0) | Err(_) => self.fd = None,
            Ok(n) => {
                self.buf.extend_from_slice(&b[..n]);
                while self.buf.len() >= 4 {
                    let rows = u16::from_be_bytes([self.buf[0], self.buf[1]]);
                    let cols = u16::from_be_bytes([self.buf[2], self.buf[3]]);
                    self.buf.drain(..4);
                    super::attach_server::set_size(self.master.as_fd(), rows, cols);
                }
            }
        }
    }
}

pub fn main(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let p = flags(args, FLAGS)?;
    let id = id_of(&p, "exec")?;
    let st = ContainerState::load(&ctx.root, &id)?;
    let spec = load_spec_file(&st.config_path)?;
    let mut process: Process = match p.value("process") {
        Some(file) => {
            let text = std::fs::read_to_string(file).at("read", file)?;
            serde_json::from_str(&text).map_err(|e| RuntimeError::Spec { path: file.into(), detail: e.to_string() })?
        }
        None => {
            let mut pr = spec.process().clone().unwrap_or_default();
            let cmd: Vec<String> = p.positional[1..].to_vec();
            if cmd.is_empty() {
                return Err(RuntimeError::Usage("exec: a command is required (or --process FILE)".into()));
            }
            pr.set_args(Some(cmd));
            pr.set_terminal(Some(p.bool("tty")));
            // `--console-size ROWSxCOLS` (burrow's own): the terminal's size from its start, so
            // that a first `stty size` does not see 0 0 before a resize arrives.
            let size = match p.value("console-size") {
                Some(v) => {
                    let (rows, cols) =
                        super::attach_server::parse_size(v).ok_or_else(|| RuntimeError::Usage(format!("--console-size: want ROWSxCOLS, got {v}")))?;
                    Some(
                        oci_spec::runtime::BoxBuilder::default()
                            .height(rows as u64)
                            .width(cols as u64)
                            .build()
                            .map_err(|e| RuntimeError::Usage(e.to_string()))?,
                    )
                }
                None => None,
            };
            pr.set_console_size(size);
            pr
        }
    };
    let mut env = process.env().clone().unwrap_or_default();
    for e in p.values("env") {
        let key = e.split('=').next().unwrap_or("").to_string();
        env.retain(|x| x.split('=').next() != Some(key.as_str()));
        env.push(e);
    }
    process.set_env(Some(env));
    if let Some(c) = p.value("cwd") {
        process.set_cwd(PathBuf::from(c));
    }
    if let Some(u) = p.value("user") {
        let (uid, gid) = u.split_once(':').unwrap_or((u, "0"));
        let user = process.user_mut();
        user.set_uid(uid.parse().map_err(|_| RuntimeError::Usage(format!("--user: {u}: want UID[:GID]")))?);
        user.set_gid(gid.parse().map_err(|_| RuntimeError::Usage(format!("--user: {u}: want UID[:GID]")))?);
    }
    let gids = p.values("additional-gids");
    if !gids.is_empty() {
        let g: Result<Vec<u32>> = gids.iter().map(|g| g.parse().map_err(|_| RuntimeError::Usage(format!("--additional-gids: {g}")))).collect();
        process.user_mut().set_additional_gids(Some(g?));
    }
    if p.bool("no-new-privs") {
        process.set_no_new_privileges(Some(true));
    }
    let add_caps = p.values("cap");
    if !add_caps.is_empty() {
        let mut caps = process.capabilities().clone().unwrap_or_default();
        for c in &add_caps {
            let cap: Capability =
                serde_json::from_value(serde_json::Value::String(c.clone())).map_err(|_| RuntimeError::Usage(format!("--cap: unknown capability {c}")))?;
            let mut b = caps.bounding().clone().unwrap_or_default();
            b.insert(cap);
            caps.set_bounding(Some(b));
            let mut e = caps.effective().clone().unwrap_or_default();
            e.insert(cap);
            caps.set_effective(Some(e));
            let mut pm = caps.permitted().clone().unwrap_or_default();
            pm.insert(cap);
            caps.set_permitted(Some(pm));
        }
        process.set_capabilities(Some(caps));
    }
    let preserve_fds = match p.value("preserve-fds") {
        Some(v) => v.parse().map_err(|_| RuntimeError::Usage(format!("--preserve-fds: not a number: {v}")))?,
        None => 0,
    };
    // As runc: exec passes only --preserve-fds (socket activation is for the container's init).
    burrow_core::runtime::fds::check_passed(0, preserve_fds)?;
    let detach = p.bool("detach");
    let resize_fd = match p.value("resize-fd") {
        Some(v) => {
            let fd: i32 = v.parse().map_err(|_| RuntimeError::Usage(format!("--resize-fd: not a number: {v}")))?;
            // SAFETY: F_GETFD only reads the descriptor's flags.
            if fd < 3 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
                return Err(RuntimeError::Usage(format!("--resize-fd: {fd} is not an inherited, open descriptor")));
            }
            // SAFETY: checked open above, and named by this flag only: ours from here on.
            let f = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            // Not to the process in the container.
            let _ = nix::fcntl::fcntl(f.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
            Some(f)
        }
        None => None,
    };
    let terminal = process.terminal().unwrap_or(false);
    let mut peer: Option<OwnedFd> = None;
    let mut console_fd = None;
    if terminal && p.value("console-socket").is_none() && !detach {
        let (a, b) = tty::console_pair()?;
        console_fd = Some(b);
        peer = Some(a);
    }
    let o = ExecOpts {
        root: ctx.root.clone(),
        id,
        process,
        console_socket: p.value("console-socket").map(PathBuf::from),
        console_fd,
        pid_file: p.value("pid-file").map(PathBuf::from),
        preserve_fds,
        ignore_paused: p.bool("ignore-paused"),
        new_session: false,
    };
    let sfd = if detach { None } else { Some(wait::block_signals()?) };
    let pid = match exec(o, &spec) {
        Ok(x) => {
            match &x.cgroup {
                Some(ExecCgroup::Entered { dirs, by }) => crate::log::debug(&format!(
                    "exec: process {} in cgroup {}: entered by {by}",
                    x.pid,
                    dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(" ")
                )),
                Some(ExecCgroup::Outside { why }) => {
                    crate::log::warn(&format!("exec: the process runs outside the container's cgroup, so its limits do not apply to it: {why}"))
                }
                None => {}
            }
            x.pid
        }
        Err(e) => {
            // As a shell reports them: 127 not found, 126 not executable (the error is logged too).
            let status = burrow_core::codes::exit_status(e.code());
            if status == 125 {
                return Err(e);
            }
            crate::log::error(&e);
            crate::status::error(&e);
            crate::status::exit(status, None);
            return Ok(status);
        }
    };
    crate::status::pid(pid);
    if detach {
        return Ok(0);
    }
    let master = match &peer {
        Some(s) => Some(tty::recv_fd(s.as_raw_fd())?),
        None => None,
    };
    let code = match (&master, resize_fd) {
        (Some(m), Some(fd)) => {
            let dup = nix::unistd::dup(m.as_raw_fd()).op("dup the terminal")?;
            // SAFETY: dup just returned this descriptor; nobody else owns it.
            let mut r = Resizer { fd: Some(fd), master: unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(dup) }, buf: Vec::new() };
            wait::supervise_with(pid, sfd.expect("signals blocked"), master, &mut [&mut r])?
        }
        _ => wait::supervise(pid, sfd.expect("signals blocked"), master)?,
    };
    crate::status::exit(code, None);
    Ok(code)
}
