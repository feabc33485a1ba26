//! Subcommand dispatch. Exit codes follow runc: 0 on success, 1 on any runtime error.

mod probe_ns;

pub fn dispatch(args: &[String]) -> i32 {
    match args.first().map(String::as_str) {
        Some("probe-ns") => probe_ns::main(&args[1..]),
        Some("--version") | Some("-v") | Some("version") => {
            println!("burrow-runtime version {}", env!("CARGO_PKG_VERSION"));
            println!("spec: 1.2.0");
            0
        }
        Some(other) => {
            eprintln!("burrow-runtime: unknown command {other:?}");
            1
        }
        None => {
            eprintln!("usage: burrow-runtime COMMAND [ARGS]");
            1
        }
    }
}
