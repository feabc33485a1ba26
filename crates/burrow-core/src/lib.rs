//! burrow-core: everything burrow does that is not argument parsing or output.
//!
//! The TypeScript CLI reaches this crate in process through `burrow-node` (napi) for work that
//! needs no namespace: the host probe, paths, digests. Work that must enter namespaces runs in
//! the single-threaded `burrow-runtime` binary, which is built on this crate too (see
//! DESIGN.md, "the fork problem").

pub mod codes;
pub mod error;
pub mod image;
pub mod net;
pub mod paths;
pub mod probe;
pub mod runtime;
pub mod spawn;
pub mod sysfs;

pub use error::{Coded, CoreError};
