//! napi bindings for the TypeScript CLI. Only type and error conversion lives here; every
//! behaviour is in burrow-core. Errors carry burrow-core's stable code as the JS error's `code`.

use napi::bindgen_prelude::*;
use napi_derive::napi;

#[napi(object)]
pub struct ProbeOptions {
    pub store_root: Option<String>,
    pub runtime_bin: Option<String>,
    /// Where a store on a network filesystem keeps its layers (see burrow-core's ProbeOptions).
    pub local_root: Option<String>,
}

/// Probes the host (see burrow-core's `probe`) and returns the report as a JSON string. The
/// string crosses the boundary once and is parsed and validated on the TypeScript side.
#[napi]
pub fn probe_host(opts: ProbeOptions) -> Result<String> {
    let o = burrow_core::probe::ProbeOptions {
        store_root: opts.store_root.map(Into::into),
        runtime_bin: opts.runtime_bin.map(Into::into),
        local_root: opts.local_root.map(Into::into),
    };
    let report = burrow_core::probe::probe(&o);
    serde_json::to_string(&report).map_err(|e| Error::new(Status::GenericFailure, format!("EINTERNAL: {e}")))
}

/// Default locations, so that TypeScript and Rust agree on them.
#[napi(object)]
pub struct DefaultPaths {
    pub store_root: String,
    pub runtime_root: String,
}

#[napi]
pub fn default_paths() -> DefaultPaths {
    DefaultPaths {
        store_root: burrow_core::paths::default_store_root().display().to_string(),
        runtime_root: burrow_core::paths::runtime_root().display().to_string(),
    }
}

/// The cgroup layout and what this user can enforce (a cheap, namespace-free part of the probe),
/// as JSON: `run` checks requested limits against it before it starts anything.
#[napi]
pub fn cgroup_info() -> Result<String> {
    let info = burrow_core::probe::cgroups::probe_self();
    serde_json::to_string(&info).map_err(|e| Error::new(Status::GenericFailure, format!("EINTERNAL: {e}")))
}
