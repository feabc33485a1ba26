//! `--network-config FILE` for `run` and `monitor`: the process that outlives the container owns
//! its network helper and port forwarder (burrow_core::net). `create` has no such flag: after a
//! bare `create` + `start`, no burrow process stays to own a helper.
//!
//! Why a foreground `run` owns them itself instead of running foreground containers under the
//! monitor: it already is the process that waits for the container and outlives it (the CLI may
//! be killed and it carries on, as the network tests check), it holds the user's terminal
//! directly, and going through the monitor would add a relay hop and a daemon to every foreground
//! run, networked or not. Either owner serves the forwarder in its poll loop, stops the helper as
//! soon as the container exits, and takes it along if killed (PR_SET_PDEATHSIG).

use burrow_core::error::Coded;
use burrow_core::net::{NetConfig, NetError, Network};
use burrow_core::runtime::error::{Result, RuntimeError};

use crate::args::{Flag, Parsed};

pub const FLAG: Flag = Flag("network-config", &[], true);

/// `base` plus `--network-config`.
pub fn with_flag(base: &[Flag]) -> Vec<Flag> {
    base.iter().map(|f| Flag(f.0, f.1, f.2)).chain([FLAG]).collect()
}

fn err(e: NetError) -> RuntimeError {
    RuntimeError::Remote { code: e.code().into(), msg: e.to_string() }
}

/// Reads the config and binds the published ports, before the container exists.
pub fn prepare(p: &Parsed) -> Result<Option<Network>> {
    let Some(path) = p.value(FLAG.0) else { return Ok(None) };
    let cfg = NetConfig::load(std::path::Path::new(path)).map_err(err)?;
    Network::prepare(cfg).map(Some).map_err(err)
}

/// Starts the helper for the created container (its init is `pid`); before `start`.
pub fn attach(net: Option<&mut Network>, pid: i32) -> Result<()> {
    match net {
        Some(n) => n.attach(pid).map_err(err),
        None => Ok(()),
    }
}

/// A monitor with a restart policy, for a container on user-defined networks: a `hold` lease on
/// the network owner for the monitor's life. Between two runs the container's own lease (its
/// attach) is closed, and with no other lease the owner would leave; the next run's attach would
/// then find no owner (the CLI starts owners, a monitor does not). None without a bridge config.
pub fn hold_for_restarts(p: &Parsed) -> Result<Option<std::os::unix::net::UnixStream>> {
    let Some(path) = p.value(FLAG.0) else { return Ok(None) };
    let cfg = NetConfig::load(std::path::Path::new(path)).map_err(err)?;
    let Some(b) = cfg.bridge else { return Ok(None) };
    let mut conn = burrow_core::net::bridge::client::connect(&b.owner_dir).map_err(err)?;
    burrow_core::net::bridge::client::request(&mut conn, &burrow_core::net::bridge::Request::Hold).map_err(err)?;
    Ok(Some(conn))
}
