//! `create [--bundle DIR] [--console-socket PATH] [--pid-file FILE] [--no-pivot] [--preserve-fds N] ID`
//! (the flags may also follow the id, as runc takes them)

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use burrow_core::runtime::cgroups;
use burrow_core::runtime::create::{create, CreateOpts};
use burrow_core::runtime::error::{Result, RuntimeError, SysCtx};

use super::{id_command, Ctx};
use crate::args::{Flag, Parsed};

pub const FLAGS: &[Flag] = &[
    Flag("bundle", &["b"], true),
    Flag("console-socket", &[], true),
    Flag("pid-file", &[], true),
    Flag("no-pivot", &[], false),
    Flag("no-new-keyring", &[], false),
    Flag("preserve-fds", &[], true),
    Flag("detach", &["d"], false),
    Flag("keep", &[], false),
    // runc's `run`: burrow's foreground run is always the subreaper of its container (create.rs).
    Flag("no-subreaper", &[], false),
    // burrow's monitor (monitor.rs): a console socket already connected, passed as a descriptor.
    Flag("console-fd", &[], true),
];

pub fn opts(ctx: &Ctx, p: &Parsed, id: String) -> Result<CreateOpts> {
    let preserve_fds = match p.value("preserve-fds") {
        Some(v) => v.parse().map_err(|_| burrow_core::runtime::error::RuntimeError::Usage(format!("--preserve-fds: not a number: {v}")))?,
        None => 0,
    };
    // Now, before the runtime opens descriptors of its own that could take those numbers.
    burrow_core::runtime::fds::check_passed(burrow_core::runtime::fds::listen_fds(), preserve_fds)?;
    Ok(CreateOpts {
        root: ctx.root.clone(),
        id,
        bundle: p.value("bundle").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")),
        pid_file: p.value("pid-file").map(absolute),
        console_socket: p.value("console-socket").map(PathBuf::from),
        console_fd: console_fd(p)?,
        preserve_fds,
        no_pivot: p.bool("no-pivot"),
        cgroup_driver: cgroup_driver(ctx),
        warn: crate::log::warn,
        loaded: None,
        while_mapping: None,
        // Asked for by burrow's CLI only; this process is single-threaded, and both of our
        // executables run `userns-keep`.
        share_userns: ctx.share_userns,
    })
}

/// `--systemd-cgroup` where systemd cannot place the container: warn and use cgroupfs, as
/// podman does, rather than refuse a container that may not even need a cgroup.
pub fn cgroup_driver(ctx: &Ctx) -> cgroups::Driver {
    if !ctx.systemd_cgroup {
        return cgroups::Driver::Cgroupfs;
    }
    match cgroups::systemd_unavailable() {
        Some(why) => {
            crate::log::warn(&format!("--systemd-cgroup: {why}; using the cgroupfs driver"));
            cgroups::Driver::Cgroupfs
        }
        None => cgroups::Driver::Systemd,
    }
}

/// `--console-fd N`: a descriptor our caller passed for this purpose, checked to be open.
fn console_fd(p: &Parsed) -> Result<Option<OwnedFd>> {
    let Some(v) = p.value("console-fd") else { return Ok(None) };
    let fd: RawFd = v.parse().ok().filter(|fd| *fd > 2).ok_or_else(|| RuntimeError::Usage(format!("invalid --console-fd {v}")))?;
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC)).op("--console-fd")?;
    // SAFETY: an open descriptor (fcntl succeeded) that nothing else in this process owns.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// The pid file is written by us after chdir-free work, but make it absolute like runc.
fn absolute(p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_absolute() {
        p
    } else {
        std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
    }
}

pub fn main(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let (p, id) = id_command(args, FLAGS, "create")?;
    let created = create(opts(ctx, &p, id)?)?;
    crate::log::created(&created.state);
    crate::status::pid(created.state.pid);
    Ok(0)
}
