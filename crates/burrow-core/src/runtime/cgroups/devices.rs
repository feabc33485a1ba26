//! Device rules: the spec's `linux.resources.devices` as cgroup v1 writes (devices.allow and
//! devices.deny); on cgroup v2 libcgroups turns the same rules into the device eBPF program.

use oci_spec::runtime::{LinuxDeviceType, LinuxResources};

use super::{w, Write};

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
