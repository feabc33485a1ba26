//! burrow-runtime's commands, shared by its two binaries (see Cargo.toml): `burrow-runtime`,
//! every command, and `burrow-monitor`, only what stays alive (`monitor`, `network-owner`).
//! Each binary's `main` picks its command table (commands::FULL or commands::RESIDENT); the
//! linker keeps only the code a table reaches, so the small one carries no spec, mount,
//! seccomp, cgroup-setup or unpack code of its own. `burrow`, the user's command, is the third
//! (launcher: a planned `run` natively, Node's CLI otherwise).

pub mod args;
pub mod commands;
pub mod launcher;
pub mod log;
pub mod resident;
pub mod status;
