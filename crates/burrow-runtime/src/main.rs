//! burrow-runtime: the single-threaded half of burrow. Parses arguments and calls burrow-core;
//! each subcommand lives in its own file under `commands/`.

mod commands;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(commands::dispatch(&args));
}
