//! The cgroup module's errors. Each names the cgroup (directory, controller or scope) and the
//! fix where there is one, and has a stable code: ECGROUP_* for the cgroupfs driver (v1 and v2),
//! ESYSTEMD_SCOPE for the systemd driver.

use std::path::PathBuf;

use crate::error::Coded;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A cgroup file refused a value (a limit, a device rule, a pid for cgroup.procs).
    #[error("cgroup: write {value:?} to {}: {source}", path.display())]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: std::io::Error,
    },
    /// Limits were asked for and no cgroup could be made or joined to enforce them.
    #[error("cannot create the container's cgroup to enforce its limits: {why}. Fix: use cgroup v2 with controllers delegated to this user (a systemd drop-in `Delegate=cpu cpuset io memory pids`), or run without resource limits")]
    Create { why: String },
    /// v1: no hierarchy of the host has the controller a limit needs.
    #[error("cgroup: the {controller} controller is not mounted on this host, so its limits cannot be enforced")]
    NotMounted { controller: String },
    /// v2: the controller is not enabled for the container's cgroup (not delegated).
    #[error("cgroup: the {controller} controller is not available in {} (it offers: {offered}), so the container's {controller} limits cannot be enforced. Fix: delegate {controller} to this user (a systemd drop-in `Delegate=cpu cpuset io memory pids` for user@.service), or run without {controller} limits", parent.display())]
    NotDelegated { controller: String, parent: PathBuf, offered: String },
    /// `update` on v2: the controller of a new limit is not enabled for the container's cgroup.
    #[error("cgroup: the {controller} controller is not available in {}, so {controller} limits cannot be changed. Fix: delegate {controller} to this user", dir.display())]
    NotDelegatedForUpdate { controller: String, dir: PathBuf },
    /// `update` on v1: the container was not placed in the controller's hierarchy.
    #[error("cgroup: the container has no {controller} cgroup, so its {file} cannot be changed")]
    NoCgroupFor { controller: String, file: String },
    /// libcgroups refused the limits at create (`dir`) or at update (None).
    #[error("cgroup: cannot apply {}: {detail}", match dir { Some(d) => format!("the container's limits in {}", d.display()), None => "the new limits".into() })]
    Apply { dir: Option<PathBuf>, detail: String },
    #[error("cgroup: the container's cgroup cannot be opened")]
    Open,
    #[error("cgroup freezer: {0}")]
    Freezer(String),
    #[error("the container is not in a freezer cgroup (the v1 freezer hierarchy is not mounted or not writable here)")]
    NoFreezer,
    /// The container's view of its cgroups (the spec's `cgroup` mount) could not be made.
    #[error("cgroup mount: {op} {}: {errno}", path.display())]
    Mount { op: &'static str, path: PathBuf, errno: nix::errno::Errno },
    /// The systemd driver: systemd unreachable, the scope not started, or its limits refused;
    /// the message names the cause and the fix.
    #[error("--systemd-cgroup: {0}")]
    Systemd(String),
}

impl Coded for CgroupError {
    fn code(&self) -> &'static str {
        match self {
            CgroupError::Write { .. } => crate::codes::ECGROUP_WRITE,
            CgroupError::Create { .. } => crate::codes::ECGROUP_CREATE,
            CgroupError::NotMounted { .. } | CgroupError::NotDelegated { .. } | CgroupError::NotDelegatedForUpdate { .. } | CgroupError::NoCgroupFor { .. } => {
                crate::codes::ECGROUP_CONTROLLER
            }
            CgroupError::Apply { .. } => crate::codes::ECGROUP_APPLY,
            CgroupError::Open => crate::codes::ECGROUP_OPEN,
            CgroupError::Freezer(_) | CgroupError::NoFreezer => crate::codes::ECGROUP_FREEZER,
            CgroupError::Systemd(_) => crate::codes::ESYSTEMD_SCOPE,
            CgroupError::Mount { .. } => crate::codes::ECGROUP_MOUNT,
        }
    }
}

pub type Result<T> = std::result::Result<T, CgroupError>;
