//! Container state on disk: one directory per container under the runtime root, holding
//! `state.json` (written atomically) and `start.sock`, where a created container's init waits
//! for `start`. Status is derived, never stored: a container is `created` while its init lives
//! and the start socket exists, `running` while it lives after that, `stopped` otherwise. The init
//! is recognised by pid *and* start time, so a reused pid never makes a dead container look alive.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::error::{PathCtx, Result, RuntimeError};

pub const OCI_VERSION: &str = "1.2.0";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    pub id: String,
    pub pid: i32,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Start time of the init (field 22 of /proc/PID/stat), against pid reuse.
    pub init_start_time: u64,
    /// Namespace paths of the init, recorded at creation for `exec`.
    #[serde(default)]
    pub has_pid_ns: bool,
    /// The config the container was created from (for hooks at delete time).
    pub config_path: PathBuf,
    /// The cgroups it was placed in, if any.
    #[serde(default)]
    pub cgroups: Option<super::cgroups::Placement>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    /// Frozen by `pause` (its cgroup's freezer).
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// The default state root: like runc's (/run/runc for root, $XDG_RUNTIME_DIR/runc otherwise).
/// Root means the host's root: uid 0 of a user's namespace (rootless podman runs its runtime so)
/// cannot own /run and takes the user's fallback.
pub fn default_root() -> PathBuf {
    let uid = nix::unistd::getuid().as_raw();
    let xdg = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty());
    if uid == 0 && xdg.is_none() && crate::paths::fallback_uid(uid) == 0 {
        return PathBuf::from("/run/burrow-runtime");
    }
    crate::paths::runtime_root().join("runtime")
}

pub fn validate_id(id: &str) -> Result<()> {
    let ok =
        !id.is_empty() && id.len() <= 1024 && id != "." && id != ".." && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+'));
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::InvalidId { id: id.into() })
    }
}

pub fn container_dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

pub fn start_socket(dir: &Path) -> PathBuf {
    dir.join("start.sock")
}

/// `with_short_path` for a whole path: its directory and its last component.
pub fn with_short_path_of<T>(path: &Path, f: impl FnOnce(&Path) -> std::io::Result<T>) -> std::io::Result<T> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    with_short_path(dir, &name, f)
}

/// Runs `f` with a short path naming `dir/name`: socket paths are limited to 108 bytes, which
/// a state root under a long XDG_RUNTIME_DIR plus a 64-character id exceeds. The directory is
/// opened and named through /proc/self/fd, whose path is always short.
pub fn with_short_path<T>(dir: &Path, name: &str, f: impl FnOnce(&Path) -> std::io::Result<T>) -> std::io::Result<T> {
    let full = dir.join(name);
    if full.as_os_str().len() < 100 {
        return f(&full);
    }
    let d = std::fs::File::open(dir)?;
    use std::os::fd::AsRawFd;
    f(Path::new(&format!("/proc/self/fd/{}/{name}", d.as_raw_fd())))
}

/// Start time of a process in clock ticks since boot; `None` when it does not exist.
pub fn proc_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // After the name, field 3 (state) is index 0; starttime is field 22, index 19.
    if f.first() == Some(&"Z") || f.first() == Some(&"X") {
        return None; // a zombie has exited: the container is stopped
    }
    f.get(19)?.parse().ok()
}

impl ContainerState {
    pub fn load(root: &Path, id: &str) -> Result<ContainerState> {
        validate_id(id)?;
        let p = container_dir(root, id).join("state.json");
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(RuntimeError::NotFound { id: id.into() }),
            Err(e) => return Err(e).at("read", p),
        };
        serde_json::from_str(&text).map_err(|e| RuntimeError::Spec { path: p, detail: format!("corrupt state: {e}") })
    }

    pub fn save(&self, root: &Path) -> Result<()> {
        let dir = container_dir(root, &self.id);
        let tmp = dir.join("state.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(self).expect("state serialises")).at("write", &tmp)?;
        std::fs::rename(&tmp, dir.join("state.json")).at("rename", dir.join("state.json"))
    }

    pub fn init_alive(&self) -> bool {
        self.pid > 0 && proc_start_time(self.pid) == Some(self.init_start_time)
    }

    pub fn status(&self, root: &Path) -> Status {
        if !self.init_alive() {
            Status::Stopped
        } else if start_socket(&container_dir(root, &self.id)).exists() {
            Status::Created
        } else if self.cgroups.as_ref().is_some_and(|p| super::cgroups::is_frozen(p, self.pid)) {
            Status::Paused
        } else {
            Status::Running
        }
    }

    /// The state as the OCI spec and runc print it.
    pub fn oci_json(&self, root: &Path) -> serde_json::Value {
        let status = self.status(root);
        let mut v = serde_json::json!({
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "pid": if status == Status::Stopped { 0 } else { self.pid },
            "status": status.as_str(),
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": self.owner,
        });
        if !self.annotations.is_empty() {
            v["annotations"] = serde_json::to_value(&self.annotations).expect("annotations serialise");
        }
        v
    }
}

/// Current time as RFC 3339 with nanoseconds, UTC (runc's format).
pub fn now_rfc3339() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_nanos())
}

pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86400);
    let sod = secs.rem_euclid(86400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z", sod / 3600, sod % 3600 / 60, sod % 60)
}

/// Ids of all containers under `root`.
pub fn list(root: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(root)
        .map(|rd| rd.filter_map(|e| e.ok()).filter(|e| e.path().join("state.json").exists()).filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    ids.sort();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(validate_id("abc-1.2_x").is_ok());
        for bad in ["", "..", "a/b", "a b", &"x".repeat(1025)] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn time_format() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_700_000_000, 5), "2023-11-14T22:13:20.000000005Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn own_start_time_is_readable() {
        let me = std::process::id() as i32;
        assert!(proc_start_time(me).is_some());
        assert_eq!(proc_start_time(i32::MAX), None);
    }

    #[test]
    fn status_of_a_dead_init_is_stopped() {
        let t = tempfile::tempdir().unwrap();
        let s = ContainerState {
            id: "c".into(),
            pid: i32::MAX,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: now_rfc3339(),
            owner: String::new(),
            annotations: Default::default(),
            init_start_time: 1,
            has_pid_ns: true,
            config_path: "/b/config.json".into(),
            cgroups: None,
        };
        std::fs::create_dir(t.path().join("c")).unwrap();
        s.save(t.path()).unwrap();
        let l = ContainerState::load(t.path(), "c").unwrap();
        assert_eq!(l.status(t.path()), Status::Stopped);
        assert_eq!(l.oci_json(t.path())["pid"], 0);
        assert_eq!(list(t.path()), vec!["c"]);
        assert!(matches!(ContainerState::load(t.path(), "nope"), Err(RuntimeError::NotFound { .. })));
    }
}
