//! `spec [--bundle DIR] [--rootless]`: writes a template config.json, as `runc spec` does.
//! The rootless template maps container root to the caller, drops the network namespace's
//! sysfs mount for a read-only bind, and omits gid=5 on devpts (gid 5 is not mapped).

use std::path::PathBuf;

use burrow_core::runtime::error::{PathCtx, Result, RuntimeError};
use serde_json::json;

use super::command;
use crate::args::Flag;

pub fn template(rootless: bool) -> serde_json::Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    let mut v = json!({
        "ociVersion": burrow_core::runtime::state::OCI_VERSION,
        "process": {
            "terminal": true,
            "user": { "uid": 0, "gid": 0 },
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": { "bounding": caps, "effective": caps, "permitted": caps, "ambient": caps },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": true },
        "hostname": "burrow",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"] },
            { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] }
        ],
        "linux": {
            "resources": { "devices": [{ "allow": false, "access": "rwm" }] },
            "namespaces": [{ "type": "pid" }, { "type": "network" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" }, { "type": "cgroup" }],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    });
    if rootless {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        v["linux"]["uidMappings"] = json!([{ "containerID": 0, "hostID": uid, "size": 1 }]);
        v["linux"]["gidMappings"] = json!([{ "containerID": 0, "hostID": gid, "size": 1 }]);
        v["linux"]["namespaces"] =
            json!([{ "type": "pid" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" }, { "type": "cgroup" }, { "type": "user" }]);
        v["linux"].as_object_mut().expect("object").remove("resources");
        let mounts = v["mounts"].as_array_mut().expect("array");
        mounts.retain(|m| m["type"] != "cgroup");
        for m in mounts.iter_mut() {
            if m["type"] == "devpts" {
                m["options"] = json!(["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]);
            }
            if m["type"] == "sysfs" {
                *m = json!({ "destination": "/sys", "type": "none", "source": "/sys", "options": ["rbind", "nosuid", "noexec", "nodev", "ro"] });
            }
        }
    }
    v
}

pub fn main(args: &[String]) -> Result<i32> {
    let p = command(args, &[Flag("bundle", &["b"], true), Flag("rootless", &[], false)], "spec", 0, 0)?;
    let dir = p.value("bundle").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    let path = dir.join("config.json");
    if path.exists() {
        return Err(RuntimeError::Usage(format!("{} exists; remove it first", path.display())));
    }
    let text = serde_json::to_string_pretty(&template(p.bool("rootless"))).expect("template serialises");
    std::fs::write(&path, text + "\n").at("write", &path)?;
    Ok(0)
}
