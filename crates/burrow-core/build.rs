//! Generates `burrow_core::codes` from errors.json, the one table of error codes that the
//! TypeScript side is generated from too (scripts/gen-error-codes.mjs): the two never drift.

use std::fmt::Write;

fn main() {
    println!("cargo:rerun-if-changed=errors.json");
    let text = std::fs::read_to_string("errors.json").expect("read errors.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("errors.json is JSON");
    let mut consts = String::new();
    let mut table = String::from("pub static TABLE: &[Code] = &[\n");
    for c in v["codes"].as_array().expect("errors.json: a `codes` array") {
        let code = c["code"].as_str().expect("errors.json: a code is a string");
        assert!(code.starts_with('E') && code.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_'), "errors.json: bad code {code}");
        let exit = c["exit"].as_i64().expect("errors.json: exit is a number");
        // 1 is docker build's status for a failed step.
        assert!(matches!(exit, 1 | 125..=127), "errors.json: {code}: exit must be 1, 125, 126 or 127");
        let http = c["http"].as_u64().expect("errors.json: http is a number");
        let meaning = c["meaning"].as_str().expect("errors.json: meaning is a string");
        writeln!(consts, "/// {}\npub const {code}: &str = {code:?};", meaning.replace('\n', " ")).unwrap();
        writeln!(table, "    Code {{ code: {code:?}, exit: {exit}, http: {http}, meaning: {meaning:?} }},").unwrap();
    }
    table.push_str("];\n");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("codes.rs");
    std::fs::write(out, consts + &table).expect("write codes.rs");
}
