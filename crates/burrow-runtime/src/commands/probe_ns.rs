//! `burrow-runtime probe-ns --store DIR`: the namespace half of `burrow info`, as JSON on stdout.

use std::path::PathBuf;

pub fn main(args: &[String]) -> i32 {
    let store = match args {
        [flag, dir] if flag == "--store" => PathBuf::from(dir),
        [] => burrow_core::paths::default_store_root(),
        _ => {
            eprintln!("usage: burrow-runtime probe-ns [--store DIR]");
            return 1;
        }
    };
    let report = burrow_core::probe::nstest::run(&store);
    println!("{}", serde_json::to_string(&report).expect("NsReport serialises"));
    0
}
