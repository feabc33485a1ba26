//! `linux.sysctl`: which keys a container may set, and writing them in its namespaces.
//!
//! Only namespaced sysctls can be set, and only when the container has the namespace that owns
//! them: otherwise the write would change the host (or fail half-way through a create). The rules
//! are runc's (libcontainer/configs/validate: `sysctl`), so a bundle that runc refuses is refused
//! here with the same reason: the System V IPC keys and `fs.mqueue.*` need an IPC namespace,
//! `net.*` a network namespace that is not the runtime's own, `kernel.domainname` a UTS namespace
//! (`kernel.hostname` conflicts with the config's `hostname`), and nothing else is namespaced.
//!
//! The values are written by the init, in the container's namespaces, through the container's
//! own /proc after pivot_root, and before `readonlyPaths` makes /proc/sys read-only (runc's
//! order): a write to `/proc/sys/net/...` lands in the network namespace of the writer.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::error::{PathCtx, Result, RuntimeError};

/// The System V IPC sysctls (ipc/ipc_sysctl.c), owned by the IPC namespace.
const IPC_KEYS: [&str; 8] =
    ["kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"];

/// The key in dotted form (`net/ipv4/ip_forward` is accepted as runc 1.2 does).
fn dotted(key: &str) -> String {
    if key.contains('/') {
        key.trim_matches('/').replace('/', ".")
    } else {
        key.to_string()
    }
}

/// The file under /proc/sys for a key: dots separate directories unless the key is already a
/// path (interface names such as `eth0.100` need the path form).
fn proc_path(key: &str) -> PathBuf {
    let rel = if key.contains('/') { key.trim_matches('/').to_string() } else { key.replace('.', "/") };
    Path::new("/proc/sys").join(rel)
}

/// Refuses the config's sysctls that are not namespaced or whose namespace the container does
/// not have; called by `create` before any process exists.
pub fn validate(spec: &Spec, config: &Path) -> Result<()> {
    let Some(linux) = spec.linux().as_ref() else { return Ok(()) };
    let Some(sysctls) = linux.sysctl().as_ref() else { return Ok(()) };
    let namespaces = linux.namespaces().clone().unwrap_or_default();
    let ns = |t: LinuxNamespaceType| namespaces.iter().find(|n| n.typ() == t);
    let refuse = |detail: String| RuntimeError::Spec { path: config.to_path_buf(), detail };
    let mut keys: Vec<&String> = sysctls.keys().collect();
    keys.sort();
    for raw in keys {
        let key = dotted(raw);
        if key.is_empty() || key.split('.').any(|c| c.is_empty() || c == "..") || raw.split('/').any(|c| c == ".." || c == ".") {
            return Err(refuse(format!("sysctl {raw:?} is not a valid sysctl name")));
        }
        if IPC_KEYS.contains(&key.as_str()) || key.starts_with("fs.mqueue.") {
            if ns(LinuxNamespaceType::Ipc).is_none() {
                return Err(refuse(format!("sysctl {raw:?} is not allowed in the host's IPC namespace: add an ipc namespace to linux.namespaces")));
            }
            continue;
        }
        if key.starts_with("net.") {
            let host = match ns(LinuxNamespaceType::Network) {
                None => true,
                Some(n) => match n.path() {
                    None => false,
                    Some(p) => same_netns_as_ours(p).map_err(|e| refuse(format!("sysctl {raw:?}: network namespace {}: {e}", p.display())))?,
                },
            };
            if host {
                return Err(refuse(format!("sysctl {raw:?} is not allowed in the host's network namespace: add a network namespace to linux.namespaces")));
            }
            continue;
        }
        if ns(LinuxNamespaceType::Uts).is_some() {
            match key.as_str() {
                "kernel.domainname" => continue,
                "kernel.hostname" => return Err(refuse(format!("sysctl {raw:?} is not allowed: it conflicts with the config's \"hostname\" field, use that"))),
                _ => {}
            }
        }
        return Err(refuse(format!(
            "sysctl {raw:?} is not in a separate kernel namespace (only the IPC keys and fs.mqueue.*, net.*, and kernel.domainname are): setting it would change the host"
        )));
    }
    Ok(())
}

/// Whether the network namespace at `path` is the runtime's own: joining it is no separate
/// namespace ("host" means the caller's, as in runc's isHostNetNS).
fn same_netns_as_ours(path: &Path) -> std::io::Result<bool> {
    let theirs = std::fs::metadata(path)?;
    let ours = std::fs::metadata("/proc/self/ns/net")?;
    Ok(theirs.dev() == ours.dev() && theirs.ino() == ours.ino())
}

/// Writes the config's sysctls under the container's /proc/sys. Called in the init, in the
/// container's namespaces, after pivot_root and before the read-only paths.
pub fn write(spec: &Spec) -> Result<()> {
    let Some(sysctls) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else { return Ok(()) };
    let mut keys: Vec<&String> = sysctls.keys().collect();
    keys.sort();
    for k in keys {
        let p = proc_path(k);
        let mut f = std::fs::OpenOptions::new().write(true).open(&p).at("open sysctl", &p)?;
        // One write: the kernel parses a sysctl value from a single write(2).
        f.write_all(sysctls[k].as_bytes()).at("write sysctl", &p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxBuilder, LinuxNamespaceBuilder, SpecBuilder};
    use std::collections::HashMap;

    fn spec(ns: &[LinuxNamespaceType], sysctls: &[(&str, &str)]) -> Spec {
        let namespaces = ns.iter().map(|t| LinuxNamespaceBuilder::default().typ(*t).build().unwrap()).collect::<Vec<_>>();
        let s: HashMap<String, String> = sysctls.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        SpecBuilder::default().linux(LinuxBuilder::default().namespaces(namespaces).sysctl(s).build().unwrap()).build().unwrap()
    }

    #[test]
    fn runc_rules() {
        use LinuxNamespaceType::*;
        let cfg = Path::new("config.json");
        assert!(validate(&spec(&[Network], &[("net.ipv4.ping_group_range", "0 1"), ("net/ipv4/ip_forward", "1")]), cfg).is_ok());
        assert!(validate(&spec(&[Ipc], &[("kernel.shmmax", "1"), ("fs.mqueue.msg_max", "10")]), cfg).is_ok());
        assert!(validate(&spec(&[Uts], &[("kernel.domainname", "x")]), cfg).is_ok());
        let err = |n: &[LinuxNamespaceType], k: &str| validate(&spec(n, &[(k, "1")]), cfg).unwrap_err().to_string();
        assert!(err(&[Ipc, Uts], "net.ipv4.ip_forward").contains("host's network namespace"));
        assert!(err(&[Network], "kernel.shmmax").contains("host's IPC namespace"));
        assert!(err(&[Network, Ipc, Uts], "kernel.pid_max").contains("not in a separate kernel namespace"));
        assert!(err(&[Network, Ipc, Uts], "vm.swappiness").contains("not in a separate kernel namespace"));
        assert!(err(&[Uts], "kernel.hostname").contains("hostname"));
        assert!(err(&[Network], "net/../../kernel/pid_max").contains("not a valid sysctl name"));
        assert_eq!(proc_path("net.ipv4.ip_forward"), Path::new("/proc/sys/net/ipv4/ip_forward"));
        assert_eq!(proc_path("net/ipv4/conf/eth0.100/forwarding"), Path::new("/proc/sys/net/ipv4/conf/eth0.100/forwarding"));
    }
}
