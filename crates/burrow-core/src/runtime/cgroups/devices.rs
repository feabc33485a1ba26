//! Device rules: the spec's `linux.resources.devices` as cgroup v1 writes (devices.allow and
//! devices.deny), followed by runc's default allow list.
//!
//! Every config a root client sends (podman, containerd's CRI, `runc spec`) carries the rule
//! `{allow: false, access: "rwm"}` and relies on the runtime to let the container use the devices
//! every runtime creates: runc appends its `specconv.AllowedDevices` to the spec's rules, so
//! /dev/null, /dev/ptmx (a terminal for `exec -t`) and mknod keep working. Without them the
//! container's /dev/null is EPERM.
//!
//! cgroup v2 has no devices files: the rules become an eBPF program, which libcgroups builds
//! only with its `cgroupsv2_devices` feature (libbpf), and it then appends the same defaults
//! itself (`common::default_devices` and `default_allow_devices`). burrow builds libcgroups
//! without that feature, so on v2 its `apply` skips the device rules altogether: nothing is
//! denied there and nothing needs adding (test/vm checks /dev/null under the deny-all rule).

use std::path::Path;

use oci_spec::runtime::{LinuxDeviceType, LinuxResources, Spec};

use super::{w, Write};

/// A device rule: type, major, minor (None: any), access.
type Rule = (char, Option<i64>, Option<i64>, &'static str);

/// runc's default rules (libcontainer/specconv AllowedDevices), in its order, each with the node
/// it is for, whose rule runc leaves out when the spec lists a device at that path (the spec's
/// own rule then governs it).
const DEFAULTS: [(Rule, Option<&str>); 11] = [
    // mknod of any node: the runtime creates the spec's devices inside the container's cgroup.
    (('c', None, None, "m"), None),
    (('b', None, None, "m"), None),
    (('c', Some(1), Some(3), "rwm"), Some("/dev/null")),
    (('c', Some(1), Some(8), "rwm"), Some("/dev/random")),
    (('c', Some(1), Some(7), "rwm"), Some("/dev/full")),
    (('c', Some(5), Some(0), "rwm"), Some("/dev/tty")),
    (('c', Some(1), Some(5), "rwm"), Some("/dev/zero")),
    (('c', Some(1), Some(9), "rwm"), Some("/dev/urandom")),
    // /dev/pts/* and /dev/ptmx: the container's terminals.
    (('c', Some(136), None, "rwm"), None),
    (('c', Some(5), Some(2), "rwm"), None),
    // /dev/net/tun: runc kept it for compatibility (runc#3468).
    (('c', Some(10), Some(200), "rwm"), None),
];

/// /dev/console (5:1), which libcgroups' v2 defaults allow, and /dev/fuse (10:229) when the
/// container is given one (a listed device or a bind mount at /dev/fuse, as `--device
/// /dev/fuse` gives it): rootless-style FUSE inside a root container needs it, and a node the
/// runtime was asked to provide should not be EPERM.
fn extra_rules(spec: &Spec) -> Vec<Rule> {
    let mut out = vec![('c', Some(5), Some(1), "rwm")];
    let fuse = Path::new("/dev/fuse");
    let listed = spec.linux().as_ref().and_then(|l| l.devices().as_ref()).is_some_and(|ds| ds.iter().any(|d| d.path() == fuse));
    let bound = spec.mounts().as_ref().is_some_and(|ms| ms.iter().any(|m| m.destination() == fuse));
    if listed || bound {
        out.push(('c', Some(10), Some(229), "rwm"));
    }
    out
}

/// The default allow rules to append after the spec's own (v1 devices.allow writes). None when
/// the spec has no device rule: its cgroup then keeps its parent's list, as before.
pub(super) fn default_writes(spec: &Spec) -> Vec<Write> {
    let linux = spec.linux().as_ref();
    let has_rules = linux.and_then(|l| l.resources().as_ref()).and_then(|r| r.devices().as_ref()).is_some_and(|d| !d.is_empty());
    if !has_rules {
        return Vec::new();
    }
    let listed: Vec<&Path> = linux.and_then(|l| l.devices().as_ref()).map(|ds| ds.iter().map(|d| d.path().as_path()).collect()).unwrap_or_default();
    let rule =
        |t: char, major: Option<i64>, minor: Option<i64>, access: &str| w("devices", "devices.allow", format!("{t} {}:{} {access}", num(major), num(minor)));
    let mut out: Vec<Write> =
        DEFAULTS.iter().filter(|(_, node)| !node.is_some_and(|p| listed.contains(&Path::new(p)))).map(|&((t, ma, mi, a), _)| rule(t, ma, mi, a)).collect();
    out.extend(extra_rules(spec).into_iter().map(|(t, ma, mi, a)| rule(t, ma, mi, a)));
    out
}

/// The spec's rules, in order, as devices.allow / devices.deny writes.
pub(super) fn v1_writes(r: &LinuxResources) -> Vec<Write> {
    let mut out = Vec::new();
    if let Some(devs) = r.devices() {
        for d in devs {
            let rule = format!("{} {}:{} {}", dev_type(d.typ()), num(d.major()), num(d.minor()), d.access().clone().unwrap_or_else(|| "rwm".into()));
            out.push(w("devices", if d.allow() { "devices.allow" } else { "devices.deny" }, rule));
        }
    }
    out
}

fn dev_type(t: Option<LinuxDeviceType>) -> char {
    match t {
        Some(LinuxDeviceType::B) => 'b',
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => 'c',
        Some(LinuxDeviceType::P) => 'p',
        _ => 'a',
    }
}

fn num(v: Option<i64>) -> String {
    match v {
        Some(n) if n >= 0 => n.to_string(),
        _ => "*".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Spec {
        let mut s = Spec::default();
        let l: oci_spec::runtime::Linux = serde_json::from_value(json).unwrap();
        s.set_linux(Some(l));
        s
    }

    fn rules(s: &Spec) -> Vec<String> {
        default_writes(s).into_iter().map(|w| w.value).collect()
    }

    #[test]
    fn runc_defaults_follow_a_deny_all_rule() {
        let s = spec(serde_json::json!({ "resources": { "devices": [{ "allow": false, "access": "rwm" }] } }));
        let r = rules(&s);
        for want in [
            "c *:* m",
            "b *:* m",
            "c 1:3 rwm",
            "c 1:5 rwm",
            "c 1:7 rwm",
            "c 1:8 rwm",
            "c 1:9 rwm",
            "c 5:0 rwm",
            "c 5:2 rwm",
            "c 136:* rwm",
            "c 10:200 rwm",
            "c 5:1 rwm",
        ] {
            assert!(r.contains(&want.to_string()), "{want} in {r:?}");
        }
        assert!(!r.iter().any(|x| x.starts_with("c 10:229")), "no fuse unless given one");
        // No rule at all: nothing written, the parent's list stays.
        assert!(rules(&spec(serde_json::json!({}))).is_empty());
    }

    #[test]
    fn a_listed_device_takes_the_place_of_its_default_and_fuse_is_allowed_when_given() {
        let s = spec(serde_json::json!({
            "resources": { "devices": [{ "allow": false, "access": "rwm" }] },
            "devices": [
                { "path": "/dev/null", "type": "c", "major": 1, "minor": 3 },
                { "path": "/dev/fuse", "type": "c", "major": 10, "minor": 229 },
                { "path": "/dev/sdz", "type": "b", "major": 8, "minor": 0 }
            ]
        }));
        let r = rules(&s);
        assert!(!r.contains(&"c 1:3 rwm".to_string()));
        assert!(r.contains(&"c 10:229 rwm".to_string()));
        assert!(!r.iter().any(|x| x.starts_with("b 8:")), "a listed device is not allowed by itself: {r:?}");
    }
}
