//! The runtime's error enum. Each variant names the operation, the path and the errno, and has a
//! stable code (`Coded`) printed in `--log-format json` and passed to the TypeScript CLI.

use std::path::PathBuf;

use nix::errno::Errno;

use crate::error::Coded;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{op} {path}: {errno}")]
    Path { op: &'static str, path: PathBuf, errno: Errno },
    #[error("{op}: {errno}")]
    Sys { op: String, errno: Errno },
    #[error("invalid config {path}: {detail}")]
    Spec { path: PathBuf, detail: String },
    #[error("container {id} does not exist")]
    NotFound { id: String },
    #[error("container {id} already exists")]
    Exists { id: String },
    #[error("invalid container id {id:?}: use letters, digits, '_', '-', '.', at most 1024 characters")]
    InvalidId { id: String },
    /// runc's words ("container not running"): containerd's shim and podman match them.
    #[error("container not running: {id} is stopped")]
    NotRunning { id: String },
    #[error("cannot {op} container {id}: it is {status}")]
    BadState { id: String, op: &'static str, status: String },
    #[error("exec: {arg0:?}: {detail}")]
    Exec { arg0: String, detail: String, not_found: bool },
    #[error("{0}")]
    Child(String),
    /// An error a child process reported on the sync socket, with its code.
    #[error("{msg}")]
    Remote { code: String, msg: String },
    #[error("{helper} failed: {detail}")]
    Helper { helper: String, detail: String },
    #[error("seccomp: {0}")]
    Seccomp(String),
    #[error("hook {path}: {detail}")]
    Hook { path: String, detail: String },
    #[error("{0}")]
    Usage(String),
    /// A path `cp` was given that does not exist (or a component is not a directory).
    #[error("{0}")]
    PathNotFound(String),
    /// An idmapped mount the kernel or the configuration does not allow, with the reason.
    #[error("idmapped mount on {dst}: {detail}")]
    Idmap { dst: String, detail: String },
    /// A mount the rootfs would send somewhere unsafe (a special filesystem through a symlink).
    #[error("mount on {dst}: {detail}")]
    UnsafeMount { dst: String, detail: String },
    /// Placing the container in its cgroup, its limits, the freezer (`cgroups` module).
    #[error(transparent)]
    Cgroup(#[from] super::cgroups::CgroupError),
}

impl Coded for RuntimeError {
    fn code(&self) -> &'static str {
        match self {
            RuntimeError::Path { .. } | RuntimeError::Sys { .. } => crate::codes::ESYSCALL,
            RuntimeError::Spec { .. } => crate::codes::ESPEC_INVALID,
            RuntimeError::NotFound { .. } => crate::codes::ECONTAINER_NOT_FOUND,
            RuntimeError::Exists { .. } => crate::codes::ECONTAINER_EXISTS,
            RuntimeError::InvalidId { .. } => crate::codes::EINVALID_ID,
            RuntimeError::BadState { .. } | RuntimeError::NotRunning { .. } => crate::codes::EBAD_STATE,
            RuntimeError::Exec { not_found: true, .. } => crate::codes::ECMD_NOT_FOUND,
            RuntimeError::Exec { .. } => crate::codes::ECMD_CANNOT_INVOKE,
            RuntimeError::Child(_) => crate::codes::EINIT_FAILED,
            RuntimeError::Remote { code, .. } => static_code(code),
            RuntimeError::Helper { .. } => crate::codes::EHELPER,
            RuntimeError::Seccomp(_) => crate::codes::ESECCOMP,
            RuntimeError::Hook { .. } => crate::codes::EHOOK,
            RuntimeError::Usage(_) => crate::codes::EUSAGE,
            RuntimeError::PathNotFound(_) => crate::codes::EPATH_NOT_FOUND,
            RuntimeError::Idmap { .. } => crate::codes::EIDMAP,
            RuntimeError::UnsafeMount { .. } => crate::codes::EMOUNT_UNSAFE,
            RuntimeError::Cgroup(e) => e.code(),
        }
    }
}

/// The stable code for a code string that crossed a process boundary (the table's own
/// `&'static str`; a code it does not know is the init's failure).
pub fn static_code(code: &str) -> &'static str {
    crate::codes::lookup(code).map_or(crate::codes::EINIT_FAILED, |c| c.code)
}

pub type Result<T> = std::result::Result<T, RuntimeError>;

/// Attaches an operation and a path to a nix error.
pub trait PathCtx<T> {
    fn at(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> PathCtx<T> for std::result::Result<T, Errno> {
    fn at(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|errno| RuntimeError::Path { op, path: path.into(), errno })
    }
}

impl<T> PathCtx<T> for std::io::Result<T> {
    fn at(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| RuntimeError::Path { op, path: path.into(), errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)) })
    }
}

/// Attaches an operation to a nix error that has no path.
pub trait SysCtx<T> {
    fn op(self, op: impl Into<String>) -> Result<T>;
}

impl<T> SysCtx<T> for std::result::Result<T, Errno> {
    fn op(self, op: impl Into<String>) -> Result<T> {
        self.map_err(|errno| RuntimeError::Sys { op: op.into(), errno })
    }
}

impl<T> SysCtx<T> for std::io::Result<T> {
    fn op(self, op: impl Into<String>) -> Result<T> {
        self.map_err(|e| RuntimeError::Sys { op: op.into(), errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)) })
    }
}
