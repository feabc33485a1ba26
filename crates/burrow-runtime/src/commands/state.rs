//! `state ID`: the OCI state as JSON.

use burrow_core::runtime::error::Result;
use burrow_core::runtime::state::ContainerState;

use super::{id_command, Ctx};

pub fn main(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let (_, id) = id_command(args, &[], "state")?;
    let st = ContainerState::load(&ctx.root, &id)?;
    println!("{}", serde_json::to_string_pretty(&st.oci_json(&ctx.root)).expect("state serialises"));
    Ok(0)
}
