//! `ps [--format table|json] ID [ps options]`: the container's processes. JSON is the list of
//! pids; the table is `ps` output (default `-ef`) filtered to them, as runc prints it.

use std::process::Command;

use burrow_core::runtime::error::{Result, RuntimeError};
use burrow_core::runtime::exec::container_pids;
use burrow_core::runtime::state::ContainerState;

use super::{flags, id_of, Ctx};
use crate::args::Flag;

pub fn main(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let p = flags(args, &[Flag("format", &["f"], true)])?;
    let id = id_of(&p, "ps")?;
    let st = ContainerState::load(&ctx.root, &id)?;
    let pids = container_pids(&st);
    if p.value("format") == Some("json") {
        println!("{}", serde_json::to_string(&pids).expect("pids serialise"));
        return Ok(0);
    }
    let ps_args: Vec<String> = if p.positional.len() > 1 { p.positional[1..].to_vec() } else { vec!["-ef".into()] };
    let out = Command::new("ps").args(&ps_args).output().map_err(|e| RuntimeError::Helper { helper: "ps".into(), detail: e.to_string() })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let Some(header) = lines.next() else { return Ok(0) };
    let col = header.split_whitespace().position(|h| h == "PID").ok_or_else(|| RuntimeError::Usage("ps output has no PID column".into()))?;
    println!("{header}");
    for l in lines {
        if let Some(pid) = l.split_whitespace().nth(col).and_then(|s| s.parse::<i32>().ok()) {
            if pids.contains(&pid) {
                println!("{l}");
            }
        }
    }
    Ok(0)
}
