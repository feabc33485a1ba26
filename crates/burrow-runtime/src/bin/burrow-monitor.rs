//! burrow-monitor: the processes burrow leaves running, and nothing else: `monitor` (one per
//! detached container, for as long as it runs) and `network-owner` (one per user while a
//! container is on a user-defined network).
//!
//! Why a second binary: a long-lived process's resident memory follows the code it maps, not
//! its data (a monitor of the full runtime had 2.7 MiB of its 3.8 MiB RSS in text: the kernel
//! maps the file around every page it touches). This one is built from the same commands
//! (lib.rs) with a table of only these two, so the linker leaves out what only the runtime's
//! other commands reach: the spec and its parser, mounts, seccomp, cgroup setup, exec, the
//! unpacker and the archive code. What the monitor needs of those it asks of `burrow-runtime`
//! in a child process (`create`, `delete`, the poststart hooks), as conmon asks runc; a monitor
//! with a healthcheck, whose probes are execs into the container, is the full runtime's.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(burrow_runtime::commands::dispatch(&args, &burrow_runtime::commands::RESIDENT));
}
