//! The OCI runtime: everything `burrow-runtime` does to turn a bundle into a running, isolated
//! process. Lifecycle commands are thin files in crates/burrow-runtime over these modules.

pub mod caps;
pub mod cgroups;
pub mod create;
pub mod error;
pub mod exec;
pub mod fds;
pub mod health;
pub mod holder;
pub mod hooks;
pub mod idmap;
pub mod idmount;
pub mod lifecycle;
pub mod mounts;
pub mod net;
pub mod paths;
pub mod process;
pub mod restart;
pub mod rootfs;
pub mod seccomp;
pub mod selfclone;
pub mod state;
pub mod status;
pub mod sync;
pub mod sysctl;
pub mod tty;
pub mod userns_share;
pub mod wait;
