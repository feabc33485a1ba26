//! `exec [flags] ID [COMMAND ARGS...]` or `exec --process FILE ID`: a new process in the
//! container. Without --detach, supervise it and return its status.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use burrow_core::error::Coded;
use burrow_core::runtime::create::load_spec_file;
use burrow_core::runtime::error::{PathCtx, Result, RuntimeError};
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
];

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
            pr.set_console_size(None);
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
    let code = wait::supervise(pid, sfd.expect("signals blocked"), master)?;
    crate::status::exit(code, None);
    Ok(code)
}
