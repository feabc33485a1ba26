//! `list [--format table|json] [--quiet]`

use burrow_core::runtime::error::Result;
use burrow_core::runtime::state::{self, ContainerState};

use super::{command, Ctx};
use crate::args::Flag;

pub fn main(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let p = command(args, &[Flag("format", &["f"], true), Flag("quiet", &["q"], false)], "list", 0, 0)?;
    let states: Vec<ContainerState> = state::list(&ctx.root).iter().filter_map(|id| ContainerState::load(&ctx.root, id).ok()).collect();
    if p.bool("quiet") {
        for s in &states {
            println!("{}", s.id);
        }
    } else if p.value("format") == Some("json") {
        let v: Vec<serde_json::Value> = states.iter().map(|s| s.oci_json(&ctx.root)).collect();
        println!("{}", serde_json::to_string(&v).expect("list serialises"));
    } else {
        println!("{:<20} {:<8} {:<10} {:<40} {:<32} OWNER", "ID", "PID", "STATUS", "BUNDLE", "CREATED");
        for s in &states {
            let j = s.oci_json(&ctx.root);
            println!("{:<20} {:<8} {:<10} {:<40} {:<32} {}", s.id, j["pid"], j["status"].as_str().unwrap_or(""), s.bundle.display(), s.created, s.owner);
        }
    }
    Ok(0)
}
