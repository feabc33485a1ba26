//! `features`: what this runtime supports, in the OCI features schema (runtime-spec 1.1).

use burrow_core::runtime::caps::NAMES;
use burrow_core::runtime::error::Result;
use serde_json::json;

pub fn main() -> Result<i32> {
    let caps: Vec<String> = NAMES.iter().take(burrow_core::runtime::caps::last_cap() as usize + 1).map(|c| format!("CAP_{c}")).collect();
    // The plain options and the recursive ones (mount_setattr), sorted as runc lists them.
    let mut mount_options: Vec<&str> = vec![
        "async",
        "atime",
        "bind",
        "defaults",
        "dev",
        "diratime",
        "dirsync",
        "exec",
        "idmap",
        "lazytime",
        "mand",
        "noatime",
        "nodev",
        "nodiratime",
        "noexec",
        "nolazytime",
        "nomand",
        "norelatime",
        "nostrictatime",
        "nosuid",
        "nosymfollow",
        "private",
        "rbind",
        "relatime",
        "remount",
        "ridmap",
        "ro",
        "rprivate",
        "rshared",
        "rslave",
        "runbindable",
        "rw",
        "shared",
        "silent",
        "slave",
        "strictatime",
        "suid",
        "symfollow",
        "sync",
        "unbindable",
    ];
    mount_options.extend(burrow_core::runtime::mounts::RECURSIVE_OPTIONS.iter().map(|(name, ..)| *name));
    mount_options.sort_unstable();
    let v = json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": burrow_core::runtime::state::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": mount_options,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": caps,
            "cgroup": { "v1": true, "v2": true, "systemd": true, "systemdUser": true, "rdma": false },
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
            },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false },
            "intelRdt": { "enabled": false },
            // idmapped bind mounts (idmount.rs); rootless only where the kernel allows, see there.
            "mountExtensions": { "idmap": { "enabled": true } }
        },
        "annotations": { "org.burrow.runtime.version": env!("CARGO_PKG_VERSION") }
    });
    println!("{}", serde_json::to_string_pretty(&v).expect("features serialise"));
    Ok(0)
}
