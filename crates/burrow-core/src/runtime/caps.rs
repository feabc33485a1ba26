//! Linux capabilities: the five sets of the OCI process. Names are matched without their "CAP_"
//! prefix; unknown ones (newer than this kernel) are skipped, as runc does, rather than failing
//! the container. The effective, permitted, inheritable and ambient sets go through the `caps`
//! crate. The bounding set is dropped by number, up to this kernel's cap_last_cap, as runc does:
//! `caps` only knows the capabilities of its release (up to CAP_CHECKPOINT_RESTORE), and a newer
//! one the kernel has must not stay in the container's bounding set because of that.

use super::error::{Result, RuntimeError, SysCtx};

pub const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The highest capability this kernel knows (/proc/sys/kernel/cap_last_cap).
pub fn last_cap() -> u32 {
    crate::sysfs::read_u64("/proc/sys/kernel/cap_last_cap").map(|v| v as u32).unwrap_or(40)
}

pub fn number(name: &str) -> Option<u32> {
    let n = name.trim().to_ascii_uppercase();
    let n = n.strip_prefix("CAP_").unwrap_or(&n);
    NAMES.iter().position(|c| *c == n).map(|i| i as u32)
}

/// A set as a 64-bit mask, ignoring names this kernel does not have.
pub fn mask<'a>(names: impl IntoIterator<Item = &'a String>) -> u64 {
    let last = last_cap();
    names.into_iter().filter_map(|n| number(n)).filter(|&c| c <= last).fold(0, |m, c| m | (1u64 << c))
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

/// Drops every capability outside `bounding` from the bounding set. Needs CAP_SETPCAP, so it
/// runs before the switch to the container user.
pub fn drop_bounding(bounding: u64) -> Result<()> {
    for c in 0..=last_cap() {
        if bounding & (1 << c) == 0 {
            // SAFETY: plain prctl with integer arguments.
            let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, c as libc::c_ulong, 0, 0, 0) };
            if r != 0 {
                return Err(nix::errno::Errno::last()).op(format!("drop capability {} from the bounding set", NAMES.get(c as usize).unwrap_or(&"?")));
            }
        }
    }
    Ok(())
}

/// The capabilities of a mask that the `caps` crate knows (all up to CAP_CHECKPOINT_RESTORE;
/// `mask` already left out what this kernel lacks).
fn set_of(mask: u64) -> ::caps::CapsHashSet {
    ::caps::all().into_iter().filter(|c| mask & c.bitmask() != 0).collect()
}

fn caps_err(op: &str, e: ::caps::errors::CapsError) -> RuntimeError {
    RuntimeError::Child(format!("{op}: {e}"))
}

/// Sets the inheritable, effective and permitted sets, then raises the ambient ones, through the
/// `caps` crate. One set per capset(2) call, in the order that every config the single call
/// accepted still passes: inheritable first (checked against the permitted set we still hold),
/// then effective (within it), then permitted (which must keep the new effective).
pub fn apply(sets: &CapSets) -> Result<()> {
    use ::caps::CapSet;
    ::caps::set(None, CapSet::Inheritable, &set_of(sets.inheritable)).map_err(|e| caps_err("capset (inheritable)", e))?;
    ::caps::set(None, CapSet::Effective, &set_of(sets.effective)).map_err(|e| caps_err("capset (effective)", e))?;
    ::caps::set(None, CapSet::Permitted, &set_of(sets.permitted)).map_err(|e| caps_err("capset (permitted)", e))?;
    ::caps::clear(None, CapSet::Ambient).map_err(|e| caps_err("clear the ambient capabilities", e))?;
    // The kernel only lets a capability be ambient if it is permitted and inheritable; configs
    // (runc's own template among them) often list ambient ones without inheritable: skip those,
    // as runc does, instead of failing the container.
    for c in set_of(sets.ambient & sets.permitted & sets.inheritable) {
        ::caps::raise(None, CapSet::Ambient, c).map_err(|e| caps_err(&format!("raise ambient capability {c}"), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_masks() {
        assert_eq!(number("CAP_CHOWN"), Some(0));
        assert_eq!(number("sys_admin"), Some(21));
        assert_eq!(number("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(number("CAP_NOPE"), None);
        let m = mask(&["CAP_KILL".to_string(), "CAP_NET_BIND_SERVICE".to_string(), "CAP_NOPE".to_string()]);
        assert_eq!(m, (1 << 5) | (1 << 10));
        // Our numbering is the kernel's, which the caps crate's bitmasks follow.
        assert_eq!(set_of(m), [::caps::Capability::CAP_KILL, ::caps::Capability::CAP_NET_BIND_SERVICE].into_iter().collect());
        for (i, n) in NAMES.iter().enumerate() {
            let c: ::caps::Capability = format!("CAP_{n}").parse().unwrap();
            assert_eq!(c.index() as usize, i, "{n}");
        }
    }
}
