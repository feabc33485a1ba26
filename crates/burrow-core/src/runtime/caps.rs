//! Linux capabilities: the five sets of the OCI process, applied with prctl and capset.
//! Names are matched without their "CAP_" prefix; unknown ones (newer than this kernel) are
//! skipped, as runc does, rather than failing the container.

use super::error::{Result, SysCtx};

pub const NAMES: [&str; 41] = [
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
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

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

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

/// Sets the effective, permitted and inheritable sets, then raises the ambient ones.
pub fn apply(sets: &CapSets) -> Result<()> {
    let hdr = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let lo = |m: u64| m as u32;
    let hi = |m: u64| (m >> 32) as u32;
    let data = [
        CapData { effective: lo(sets.effective), permitted: lo(sets.permitted), inheritable: lo(sets.inheritable) },
        CapData { effective: hi(sets.effective), permitted: hi(sets.permitted), inheritable: hi(sets.inheritable) },
    ];
    // SAFETY: header and a two-element data array as capset(2) requires for version 3.
    let r = unsafe { libc::syscall(libc::SYS_capset, &hdr as *const CapHeader, data.as_ptr()) };
    if r != 0 {
        return Err(nix::errno::Errno::last()).op("capset");
    }
    // SAFETY: plain prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) };
    // The kernel only lets a capability be ambient if it is permitted and inheritable; configs
    // (runc's own template among them) often list ambient ones without inheritable: skip those,
    // as runc does, instead of failing the container.
    let allowed = sets.ambient & sets.permitted & sets.inheritable;
    for c in 0..=last_cap() {
        if allowed & (1 << c) != 0 {
            // SAFETY: as above.
            let r = unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE, c as libc::c_ulong, 0, 0) };
            if r != 0 {
                return Err(nix::errno::Errno::last()).op(format!("raise ambient capability {}", NAMES.get(c as usize).unwrap_or(&"?")));
            }
        }
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
    }
}
