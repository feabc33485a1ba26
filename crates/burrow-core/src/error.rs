//! Error codes shared by every boundary. Each module has its own error enum; each variant has a
//! stable code string (`Coded::code`) that crosses the napi boundary as the JavaScript error's
//! `code` and is printed by the runtime binary in `--log-format json`.

use std::path::PathBuf;

/// A stable, documented code for an error kind. Codes never change once released: scripts match on them.
pub trait Coded {
    fn code(&self) -> &'static str;
}

/// Errors of the crate's top-level helpers (paths, helper processes).
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the runtime binary {path} failed: {detail}")]
    Helper { path: PathBuf, detail: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("the runtime directory {path} is not usable: {why}. Fix: set XDG_RUNTIME_DIR to a directory you own with mode 0700, or remove {path}")]
    RuntimeDir { path: PathBuf, why: String },
}

impl Coded for CoreError {
    fn code(&self) -> &'static str {
        match self {
            CoreError::Io { .. } => crate::codes::EIO,
            CoreError::Helper { .. } => crate::codes::EHELPER,
            CoreError::InvalidArgument(_) => crate::codes::EINVAL_ARG,
            CoreError::RuntimeDir { .. } => crate::codes::ERUNTIME_DIR,
        }
    }
}

impl CoreError {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CoreError::Io { op, path: path.into(), source }
    }
}
