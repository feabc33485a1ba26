//! Turns the probe's observations into findings: a verdict, the evidence, and the fix.
//! Kept apart from the probing so that the wording can be tested on hand-made reports.

use super::storage::StorageInfo;
use super::{Check, HostReport, Verdict};

fn check(id: &str, title: &str, verdict: Verdict, evidence: impl Into<String>, fix: Option<String>) -> Check {
    Check { id: id.into(), title: title.into(), verdict, evidence: evidence.into(), fix }
}

const DELEGATE_FIX: &str = "boot with cgroup v2 only (kernel parameter systemd.unified_cgroup_hierarchy=1) and have an administrator delegate controllers to users: /etc/systemd/system/user@.service.d/delegate.conf containing [Service] Delegate=cpu cpuset io memory pids, then `systemctl daemon-reload` and log in again";

/// The fix for a user without subordinate ranges: a range that nobody has in /etc/subuid and
/// /etc/subgid (a fixed one, as shadow's first range, is another user's on most hosts, and two
/// users with one range share their containers' ids), for the file(s) that lack one.
fn ranges_fix(id: &super::idmap::IdmapInfo, user: &str) -> String {
    let nss = "ranges served by LDAP/sssd (nsswitch.conf `subid:`, listed by `getsubids USER`) are not in these files, so check that it is free there too";
    let Some(r) = id.suggested else {
        return format!("optional: an administrator can give {user} a range of 65536 ids that no other user has; none is left free above the ranges of /etc/subuid and /etc/subgid below 2^32, so pick one by hand ({nss}); without it burrow uses the single-id mode");
    };
    let span = format!("{}-{}", r.start, r.start + r.count - 1);
    let mut flags = Vec::new();
    if id.subuid.is_empty() {
        flags.push(format!("--add-subuids {span}"));
    }
    if id.subgid.is_empty() {
        flags.push(format!("--add-subgids {span}"));
    }
    format!(
        "optional: an administrator can run `usermod {} {user}` (a range above every range in /etc/subuid and /etc/subgid, so no other user has it; {nss}); without it burrow uses the single-id mode, and a store made without it needs `burrow system migrate` once it is there",
        flags.join(" ")
    )
}

pub fn build(r: &HostReport) -> Vec<Check> {
    let mut c = Vec::new();
    let user = r.idmap.user.clone().unwrap_or_else(|| r.uid.to_string());

    // Kernel.
    let k = &r.kernel;
    let (v, fix) = if k.version[0] < 4 {
        (Verdict::Fail, Some("use a kernel of 4.18 or later (5.11+ for rootless overlay)".to_string()))
    } else if !k.rootless_overlay {
        (Verdict::Warn, Some("a 5.11+ kernel allows native overlay in a user namespace; until then install fuse-overlayfs".to_string()))
    } else {
        (Verdict::Ok, None)
    };
    c.push(check(
        "kernel",
        "Kernel",
        v,
        format!(
            "{} (rootless overlay: {}, clone3: {}, CLONE_INTO_CGROUP: {}, idmapped mounts: {})",
            k.release,
            yn(k.rootless_overlay),
            yn(k.clone3),
            yn(k.clone_into_cgroup),
            yn(k.idmapped_mounts)
        ),
        fix,
    ));

    // User namespaces: sysctls, then the real test.
    let s = &r.userns.sysctls;
    let sysctl_evidence = format!(
        "user.max_user_namespaces={}, kernel.unprivileged_userns_clone={}, kernel.apparmor_restrict_unprivileged_userns={}",
        opt(s.max_user_namespaces),
        opt(s.unprivileged_userns_clone),
        opt(s.apparmor_restrict_unprivileged_userns)
    );
    match super::userns::sysctl_blocker(s, !r.rootless) {
        None => c.push(check("userns.sysctl", "User namespace settings", Verdict::Ok, sysctl_evidence, None)),
        Some((what, fix)) => c.push(check("userns.sysctl", "User namespace settings", Verdict::Fail, format!("{what} ({sysctl_evidence})"), Some(fix))),
    }
    match (r.userns.created, &r.userns.error) {
        (Some(true), _) => c.push(check(
            "userns.create",
            "User namespace created",
            Verdict::Ok,
            "a child process created a user and mount namespace and became root in it",
            None,
        )),
        (Some(false), e) => c.push(check(
            "userns.create",
            "User namespace created",
            Verdict::Fail,
            format!("creating one failed: {}", e.as_deref().unwrap_or("unknown error")),
            Some("unprivileged user namespaces are disabled on this host; an administrator must enable them (see userns.sysctl)".into()),
        )),
        (None, e) => c.push(check(
            "userns.create",
            "User namespace created",
            Verdict::Fail,
            format!("not tested: {}", e.as_deref().unwrap_or("the runtime binary did not run")),
            Some("rebuild burrow (`npm ci` builds target/release/burrow-runtime) or set BURROW_RUNTIME to the binary".into()),
        )),
    }

    // Identity.
    let id = &r.idmap;
    let ranges = |v: &[super::idmap::IdRange]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.iter().map(|r| format!("{}+{}", r.start, r.count)).collect::<Vec<_>>().join(", ")
        }
    };
    let have_ranges = !id.subuid.is_empty() && !id.subgid.is_empty();
    c.push(check(
        "idmap.ranges",
        "Subordinate id ranges",
        if have_ranges { Verdict::Ok } else { Verdict::Warn },
        format!("for {user} (uid {}) from {}: subuid {}; subgid {}", id.uid, id.source, ranges(&id.subuid), ranges(&id.subgid)),
        (!have_ranges).then(|| ranges_fix(id, &user)),
    ));
    let helper = |h: &super::idmap::MapHelper| match &h.path {
        Some(p) => format!("{} ({})", p.display(), h.privilege),
        None => "not installed".to_string(),
    };
    let helpers_ok = id.newuidmap.usable && id.newgidmap.usable;
    c.push(check(
        "idmap.helpers",
        "newuidmap/newgidmap",
        if helpers_ok {
            Verdict::Ok
        } else if r.rootless {
            Verdict::Warn
        } else {
            Verdict::Info
        },
        format!("newuidmap: {}; newgidmap: {}", helper(&id.newuidmap), helper(&id.newgidmap)),
        (!helpers_ok && r.rootless)
            .then(|| "install the uidmap package (Debian/Ubuntu) or shadow-utils (Fedora); they must be setuid root or carry file capabilities".to_string()),
    ));
    c.push(check("idmap.mode", "Id-map mode", Verdict::Info, format!("{}: {}", id.mode, id.reason), None));

    // Storage.
    let st = &r.storage;
    c.push(storage_fs(st));
    c.push(match st.native_overlay {
        Some(true) => {
            check("storage.overlay", "Overlay in a user namespace", Verdict::Ok, "mounted an overlay with userxattr, wrote a file and created a whiteout", None)
        }
        Some(false) => check(
            "storage.overlay",
            "Overlay in a user namespace",
            Verdict::Warn,
            st.native_overlay_error.clone().unwrap_or_default(),
            Some("use a 5.11+ kernel and a store filesystem with user xattrs (ext4, xfs, btrfs), or install fuse-overlayfs".into()),
        ),
        None => check(
            "storage.overlay",
            "Overlay in a user namespace",
            Verdict::Warn,
            format!("not tested: {}", st.native_overlay_error.as_deref().unwrap_or("no user namespace")),
            None,
        ),
    });
    let fuse_ev = format!(
        "fuse-overlayfs: {}; /dev/fuse: {}",
        st.fuse_overlayfs
            .as_ref()
            .map(|p| format!("{} ({})", p.display(), st.fuse_overlayfs_version.as_deref().unwrap_or("?")))
            .unwrap_or_else(|| "not installed".into()),
        if st.dev_fuse_usable { "usable" } else { "not usable by you" }
    );
    let fuse_ok = st.fuse_overlayfs.is_some() && st.dev_fuse_usable;
    c.push(check(
        "storage.fuse",
        "fuse-overlayfs",
        if fuse_ok { Verdict::Ok } else { Verdict::Info },
        fuse_ev,
        (!fuse_ok && st.native_overlay != Some(true)).then(|| "install fuse-overlayfs; /dev/fuse must be mode 0666".to_string()),
    ));
    c.push(check(
        "storage.driver",
        "Storage driver",
        if st.driver == "copy" { Verdict::Warn } else { Verdict::Ok },
        format!("{}: {}", st.driver, st.reason),
        None,
    ));

    // Networking.
    let n = &r.network;
    let tool = |t: &Option<super::network::Tool>| match t {
        Some(t) => format!("{} ({})", t.path.display(), t.version.as_deref().unwrap_or("version unknown")),
        None => "not installed".to_string(),
    };
    let any_helper = n.slirp4netns.is_some() || n.pasta.is_some();
    c.push(check(
        "network.helpers",
        "User-mode networking",
        if any_helper { Verdict::Ok } else { Verdict::Warn },
        format!("slirp4netns: {}; pasta: {}", tool(&n.slirp4netns), tool(&n.pasta)),
        (!any_helper).then(|| "install slirp4netns or passt (pasta) for outbound access and published ports".to_string()),
    ));
    c.push(check(
        "network.tun",
        "/dev/net/tun",
        if n.dev_net_tun_usable { Verdict::Ok } else { Verdict::Warn },
        match (n.dev_net_tun_exists, n.dev_net_tun_usable) {
            (false, _) => "/dev/net/tun does not exist".to_string(),
            (true, true) => format!("opened read-write (mode {})", n.dev_net_tun_mode.as_deref().unwrap_or("?")),
            (true, false) => format!("cannot be opened read-write by you (mode {})", n.dev_net_tun_mode.as_deref().unwrap_or("?")),
        },
        (!n.dev_net_tun_usable).then(|| "an administrator must run `chmod 0666 /dev/net/tun` (the mode distributions ship) or load the tun module; until then containers get loopback only".to_string()),
    ));
    c.push(check("network.default", "Default network", Verdict::Info, format!("{}: {}", n.default_mode, n.reason), None));

    // cgroups.
    let g = &r.cgroups;
    c.push(check(
        "cgroups.layout",
        "cgroup hierarchy",
        match g.layout.mode.as_str() {
            "unified" => Verdict::Ok,
            _ => Verdict::Warn,
        },
        format!(
            "{}; v2 at {}{}; this process is in {}",
            g.layout.mode,
            g.layout.v2_mount.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "(not mounted)".into()),
            if g.layout.v1_controllers.is_empty() { String::new() } else { format!("; v1 controllers: {}", g.layout.v1_controllers.join(" ")) },
            g.layout.own_cgroup.as_deref().unwrap_or("(no v2 cgroup)")
        ),
        None,
    ));
    c.push(check(
        "cgroups.delegation",
        "Delegated cgroup",
        if g.delegation_root.is_some() { Verdict::Ok } else { Verdict::Warn },
        match &g.delegation_root {
            Some(d) => format!(
                "{} ({}) with controllers: {}",
                d.display(),
                g.delegation_source,
                if g.delegated_controllers.is_empty() { "none".to_string() } else { g.delegated_controllers.join(" ") }
            ),
            None => "no cgroup v2 directory is writable by you".to_string(),
        },
        None,
    ));
    c.push(check(
        "cgroups.systemd",
        "systemd user manager",
        Verdict::Info,
        match (&g.bus_address, g.systemd_user_manager) {
            (Some(a), true) => format!("reachable at {a}: containers get a transient scope from it"),
            (Some(a), false) => format!("not usable at {a}: {}", g.systemd_user_manager_why_not.as_deref().unwrap_or("unknown")),
            (None, _) => g.systemd_user_manager_why_not.clone().unwrap_or_else(|| "no session bus".into()),
        },
        None,
    ));
    let limits = ["memory", "pids", "cpu", "cpuset", "io"];
    let enforceable: Vec<&str> = limits.iter().copied().filter(|l| g.enforceable.iter().any(|e| e == l)).collect();
    let missing: Vec<&str> = limits.iter().copied().filter(|l| !enforceable.contains(l)).collect();
    c.push(check(
        "cgroups.limits",
        "Enforceable limits",
        if missing.is_empty() { Verdict::Ok } else { Verdict::Warn },
        format!(
            "enforced: {}; not enforceable: {} (manager: {}). Runs that ask for no limit work regardless.",
            if enforceable.is_empty() { "none".to_string() } else { enforceable.join(" ") },
            if missing.is_empty() { "none".to_string() } else { missing.join(" ") },
            g.manager
        ),
        (!missing.is_empty()).then(|| DELEGATE_FIX.to_string()),
    ));

    // Runtime directory.
    let rd = &r.runtime_dir;
    c.push(check(
        "runtime-dir",
        "XDG_RUNTIME_DIR",
        if rd.usable { Verdict::Ok } else { Verdict::Warn },
        match &rd.problem {
            None => format!("{} is yours and private; state goes to {}", rd.xdg_runtime_dir.as_deref().unwrap_or(""), rd.chosen.display()),
            Some(p) => format!("{p}; using the private fallback {}", rd.chosen.display()),
        },
        (!rd.usable).then(|| {
            "log in through PAM (systemd-logind sets it), or export XDG_RUNTIME_DIR=/run/user/$(id -u) or another directory you own with mode 0700".to_string()
        }),
    ));
    c
}

/// The store's filesystem. A store on a network filesystem is usable when its layers have a
/// local directory to go to (what `run` does): a warning that says where, not a failure.
fn storage_fs(st: &StorageInfo) -> Check {
    let fs_ev = format!("{} is on {} ({}){}", st.examined.display(), st.fs_type, st.fs_magic, if st.writable { "" } else { ", not writable by you" });
    let mut evidence = format!("store {}; {fs_ev}", st.root.display());
    let local_disk = "put the store on a local disk with `--root /local/dir`, BURROW_ROOT or `root` in ~/.config/burrow/config.toml (e.g. /tmp or a node-local scratch directory)";
    let (v, fix) = if !st.writable {
        (Verdict::Fail, Some(format!("make {} writable for you, or choose another store with --root", st.examined.display())))
    } else if st.network_fs {
        match (&st.local, st.usable_local()) {
            (_, Some(l)) => {
                evidence += &format!(
                    "; its layers and containers' writable layers go to {} on this machine's {} (blobs and images stay in the store), as `burrow run` does",
                    l.dir.display(),
                    l.fs_type
                );
                (Verdict::Warn, Some(format!("nothing is needed; to keep everything in one place, {local_disk}")))
            }
            (Some(l), None) => {
                evidence += &format!(
                    "; {}, where its layers would go instead, is on {}{}",
                    l.dir.display(),
                    l.fs_type,
                    if l.writable { "" } else { ", not writable by you" }
                );
                (Verdict::Fail, Some(format!("{} is a network filesystem; {local_disk}", st.fs_type)))
            }
            (None, None) => (Verdict::Fail, Some(format!("{} is a network filesystem; {local_disk}", st.fs_type))),
        }
    } else if st.fs_type == "tmpfs" {
        (Verdict::Warn, Some("the store is on tmpfs: images use memory and vanish at reboot; choose a disk-backed --root to keep them".to_string()))
    } else {
        (Verdict::Ok, None)
    };
    check("storage.fs", "Store filesystem", v, evidence, fix)
}

fn yn(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn opt(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "absent".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::storage::{LocalDir, StorageInfo};
    use std::path::PathBuf;

    fn store_on(fs_type: &str, magic: &str, network_fs: bool) -> StorageInfo {
        StorageInfo {
            root: PathBuf::from("/home/u/.local/share/burrow"),
            examined: PathBuf::from("/home/u"),
            fs_type: fs_type.into(),
            fs_magic: magic.into(),
            network_fs,
            writable: true,
            fuse_overlayfs: None,
            fuse_overlayfs_version: None,
            dev_fuse_usable: false,
            native_overlay: Some(true),
            native_overlay_error: None,
            driver: String::new(),
            reason: String::new(),
            local: None,
        }
    }

    fn local(fs_type: &str, writable: bool) -> Option<LocalDir> {
        Some(LocalDir { dir: PathBuf::from("/var/tmp/burrow-1000/0123456789abcdef"), examined: PathBuf::from("/var/tmp"), fs_type: fs_type.into(), writable })
    }

    #[test]
    fn network_store_with_a_local_directory_is_a_warning_naming_it() {
        for (fs, magic) in [("nfs", "0x6969"), ("lustre", "0xbd00bd0"), ("gpfs", "0x47504653")] {
            let mut st = store_on(fs, magic, true);
            st.local = local("ext4", true);
            st.decide();
            let c = storage_fs(&st);
            assert_eq!(c.verdict, Verdict::Warn, "{fs}: {c:?}");
            assert!(c.evidence.contains(&format!("/home/u is on {fs}")), "{}", c.evidence);
            assert!(c.evidence.contains("go to /var/tmp/burrow-1000/0123456789abcdef on this machine's ext4"), "{}", c.evidence);
            assert!(c.fix.as_deref().unwrap().starts_with("nothing is needed"));
            assert!(st.usable());
            // The driver is decided for the local directory, where the overlay test ran.
            assert_eq!(st.driver, "overlay");
        }
    }

    #[test]
    fn network_store_without_a_usable_local_directory_fails() {
        let mut st = store_on("nfs", "0x6969", true);
        st.decide();
        let c = storage_fs(&st);
        assert_eq!(c.verdict, Verdict::Fail);
        assert!(c.fix.as_deref().unwrap().contains("nfs is a network filesystem"));
        assert!(!st.usable());
        assert_eq!(st.driver, "copy");

        for (fs, writable, says) in [("nfs", true, "is on nfs"), ("ext4", false, "not writable by you")] {
            let mut st = store_on("lustre", "0xbd00bd0", true);
            st.local = local(fs, writable);
            st.decide();
            let c = storage_fs(&st);
            assert_eq!(c.verdict, Verdict::Fail, "{c:?}");
            assert!(c.evidence.contains("/var/tmp/burrow-1000/0123456789abcdef, where its layers would go instead"), "{}", c.evidence);
            assert!(c.evidence.contains(says), "{}", c.evidence);
            assert!(!st.usable());
        }

        // A network store that is not writable fails for that, local directory or not.
        let mut st = store_on("nfs", "0x6969", true);
        st.writable = false;
        st.local = local("ext4", true);
        assert_eq!(storage_fs(&st).verdict, Verdict::Fail);
        assert!(!st.usable());
    }

    #[test]
    fn local_stores_are_unchanged() {
        let st = store_on("ext4", "0xef53", false);
        assert_eq!(storage_fs(&st).verdict, Verdict::Ok);
        assert!(st.usable());
        // A local directory is only for a store on a network filesystem.
        let mut st = store_on("ext4", "0xef53", false);
        st.local = local("ext4", true);
        assert!(st.usable_local().is_none());
        assert_eq!(
            storage_fs(&st),
            check("storage.fs", "Store filesystem", Verdict::Ok, "store /home/u/.local/share/burrow; /home/u is on ext4 (0xef53)", None)
        );
        assert_eq!(storage_fs(&store_on("tmpfs", "0x1021994", false)).verdict, Verdict::Warn);
    }
}
