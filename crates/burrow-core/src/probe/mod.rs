//! The host probe behind `burrow info`: what this host lets an ordinary user do, each finding
//! with a verdict, the evidence, and the fix when it fails. Static checks (files under /proc and
//! /sys, binaries, permissions) run in the caller's process; checks that must create namespaces
//! run in the single-threaded runtime binary (`nstest`) and come back as JSON.
//!
//! The report's JSON shape is a stable, documented interface (docs/info-schema.md): fields are
//! only ever added, and `schemaVersion` changes if one must be removed.

pub mod cgroups;
pub mod idmap;
pub mod kernel;
pub mod network;
pub mod nstest;
pub mod storage;
pub mod userns;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::paths;

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Info,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// Stable identifier, e.g. "userns.create".
    pub id: String,
    pub title: String,
    pub verdict: Verdict,
    pub evidence: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeDirInfo {
    pub xdg_runtime_dir: Option<String>,
    pub usable: bool,
    pub problem: Option<String>,
    /// The directory burrow keeps runtime state in (`…/burrow`).
    pub chosen: PathBuf,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UsernsInfo {
    #[serde(flatten)]
    pub sysctls: userns::UsernsSysctls,
    /// `None` when the helper could not run.
    pub created: Option<bool>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeBinInfo {
    pub path: Option<PathBuf>,
    pub ran: bool,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HostReport {
    pub schema_version: u32,
    pub uid: u32,
    pub gid: u32,
    pub rootless: bool,
    pub kernel: kernel::KernelInfo,
    pub userns: UsernsInfo,
    pub idmap: idmap::IdmapInfo,
    pub storage: storage::StorageInfo,
    pub network: network::NetworkInfo,
    pub cgroups: cgroups::CgroupInfo,
    pub runtime_dir: RuntimeDirInfo,
    pub runtime_binary: RuntimeBinInfo,
    pub checks: Vec<Check>,
    /// True when a container without resource limits can run on this host as this user.
    pub can_run_containers: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ProbeOptions {
    /// Store root; defaults to `paths::default_store_root()`.
    pub store_root: Option<PathBuf>,
    /// The `burrow-runtime` binary that runs the namespace checks.
    pub runtime_bin: Option<PathBuf>,
    /// Where a store on a network filesystem keeps its layers and writable layers, as `run`
    /// does (ts/storage/settings.ts, storeLayout): the namespace and overlay tests run there.
    /// Ignored for a store on a local filesystem.
    pub local_root: Option<PathBuf>,
}

fn run_ns_helper(bin: &Path, store: &Path) -> Result<nstest::NsReport, String> {
    let out = std::process::Command::new(bin)
        .arg("probe-ns")
        .arg("--store")
        .arg(store)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!("{} probe-ns exited with {}: {}", bin.display(), out.status, String::from_utf8_lossy(&out.stderr).trim()));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("{} probe-ns printed invalid JSON: {e}", bin.display()))
}

fn runtime_dir_info(uid: u32) -> RuntimeDirInfo {
    let xdg = std::env::var("XDG_RUNTIME_DIR").ok().filter(|d| !d.is_empty());
    let problem = match &xdg {
        None => Some("XDG_RUNTIME_DIR is not set".to_string()),
        Some(d) => paths::runtime_dir_problem(Path::new(d), uid),
    };
    RuntimeDirInfo { usable: problem.is_none(), xdg_runtime_dir: xdg, problem, chosen: paths::runtime_root() }
}

/// Probes the host. Never fails: every problem becomes a finding.
pub fn probe(opts: &ProbeOptions) -> HostReport {
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    let is_root = uid == 0;
    let store_root = opts.store_root.clone().unwrap_or_else(paths::default_store_root);

    let kernel = kernel::probe();
    let sysctls = userns::read_sysctls();
    let idmap = idmap::probe(is_root);
    let mut storage = storage::probe_static(&store_root);
    if storage.network_fs {
        storage.local = opts.local_root.as_deref().map(storage::probe_local);
    }
    // The overlay test belongs where the layers will be.
    let layers_root = storage.usable_local().map(|l| l.dir.clone()).unwrap_or_else(|| store_root.clone());
    let network = network::probe();
    let cgroups = cgroups::probe(uid);
    let runtime_dir = runtime_dir_info(uid);

    let bin = opts.runtime_bin.clone().filter(|p| p.is_file());
    let ns = match &bin {
        Some(b) => run_ns_helper(b, &layers_root),
        None => Err(match &opts.runtime_bin {
            Some(p) => format!("runtime binary {} not found", p.display()),
            None => "no runtime binary given".to_string(),
        }),
    };
    let runtime_binary = RuntimeBinInfo { path: opts.runtime_bin.clone(), ran: ns.is_ok(), error: ns.as_ref().err().cloned() };
    let userns = match &ns {
        Ok(r) => UsernsInfo { sysctls, created: Some(r.userns), error: r.userns_error.clone() },
        Err(e) => UsernsInfo { sysctls, created: None, error: Some(e.clone()) },
    };
    if let Ok(r) = &ns {
        storage.native_overlay = r.overlay;
        storage.native_overlay_error = r.overlay_error.clone();
    }
    storage.decide();

    let mut report = HostReport {
        schema_version: SCHEMA_VERSION,
        uid,
        gid,
        rootless: !is_root,
        kernel,
        userns,
        idmap,
        storage,
        network,
        cgroups,
        runtime_dir,
        runtime_binary,
        checks: Vec::new(),
        can_run_containers: false,
    };
    report.checks = checks::build(&report);
    report.can_run_containers = report.runtime_binary.ran && report.userns.created == Some(true) && report.storage.usable();
    report
}

mod checks;
