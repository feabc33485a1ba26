//! User-mode networking helpers and `/dev/net/tun` (DESIGN.md, "Networking").

use std::path::PathBuf;

use serde::Serialize;

use crate::sysfs;

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Tool {
    pub path: PathBuf,
    pub version: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInfo {
    pub slirp4netns: Option<Tool>,
    pub pasta: Option<Tool>,
    pub dev_net_tun_exists: bool,
    /// Opened read-write by this user. Both helpers create their tap device through it.
    pub dev_net_tun_usable: bool,
    pub dev_net_tun_mode: Option<String>,
    /// "slirp4netns", "pasta" or "none".
    pub default_mode: String,
    pub reason: String,
}

fn tool(name: &str) -> Option<Tool> {
    let path = sysfs::which(name)?;
    let version = sysfs::version_line(&path, &["--version"]);
    Some(Tool { path, version })
}

pub fn choose_default(slirp: bool, pasta: bool, tun: bool) -> (String, String) {
    match (slirp, pasta, tun) {
        (_, _, false) if slirp || pasta => {
            ("none".into(), "/dev/net/tun cannot be opened by you, so neither slirp4netns nor pasta can create a tap device".into())
        }
        (true, _, true) => ("slirp4netns".into(), "slirp4netns is installed and /dev/net/tun is usable".into()),
        (false, true, true) => ("pasta".into(), "pasta is installed and /dev/net/tun is usable".into()),
        _ => ("none".into(), "neither slirp4netns nor pasta is installed: containers get loopback only".into()),
    }
}

pub fn probe() -> NetworkInfo {
    let slirp4netns = tool("slirp4netns");
    let pasta = tool("pasta");
    let tun = std::path::Path::new("/dev/net/tun");
    let usable = std::fs::OpenOptions::new().read(true).write(true).open(tun).is_ok();
    let mode = sysfs::owner_and_mode(tun).map(|(_, m)| format!("{m:04o}"));
    let (default_mode, reason) = choose_default(slirp4netns.is_some(), pasta.is_some(), usable);
    NetworkInfo { slirp4netns, pasta, dev_net_tun_exists: tun.exists(), dev_net_tun_usable: usable, dev_net_tun_mode: mode, default_mode, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_mode() {
        assert_eq!(choose_default(true, true, true).0, "slirp4netns");
        assert_eq!(choose_default(false, true, true).0, "pasta");
        assert_eq!(choose_default(true, true, false).0, "none");
        assert!(choose_default(false, false, true).1.contains("neither"));
    }
}
