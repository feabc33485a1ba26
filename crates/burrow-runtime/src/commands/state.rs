//! `state ID`: the OCI state as JSON.

use burrow_core::runtime::error::Result;
use burrow_core::runtime::state::ContainerState;

use super::{flags, id_of, Ctx};

pub fn main(ctx: &Ctx, args: &[String]) -> Result<i32> {
    let p = flags(args, &[])?;
    let id = id_of(&p, "state")?;
    let st = ContainerState::load(&ctx.root, &id)?;
    println!("{}", serde_json::to_string_pretty(&st.oci_json(&ctx.root)).expect("state serialises"));
    Ok(0)
}
