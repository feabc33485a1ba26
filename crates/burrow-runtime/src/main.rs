//! burrow-runtime: the single-threaded half of burrow and a runc-compatible OCI runtime.
//! `main` parses the global flags and dispatches; each subcommand is one file in `commands/`
//! over burrow-core's `runtime` modules. Exit codes follow runc: 0 on success, 1 on error, and
//! the container's own status for `run` and `exec` in the foreground.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(burrow_runtime::commands::dispatch(&args, &burrow_runtime::commands::FULL));
}
