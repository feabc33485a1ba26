//! Protection of the runtime binary against overwrite from inside a container (the
//! CVE-2019-5736 class): a process of the container could open /proc/PID/exe of a runtime
//! process that has joined its namespaces (`exec`, or the init before it execs) and write our
//! binary, which the host runs next time.
//!
//! The container's processes run with host ids from the mapping: the caller's own uid (container
//! root) and subordinate ids, which own nothing else on the host. So the binary is at risk
//! exactly when the caller can write it (an installation the user owns, or root). In that case
//! we re-execute from a sealed, read-only memfd copy before creating anything; a root-owned
//! installation used by an ordinary user skips the copy and its cost.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// True when /proc/self/exe is already a memfd (we are the clone).
fn running_from_memfd() -> bool {
    std::fs::read_link("/proc/self/exe").map(|p| p.to_string_lossy().starts_with("/memfd:")).unwrap_or(false)
}

pub fn needs_clone(exe: &Path) -> bool {
    !running_from_memfd() && crate::sysfs::writable(exe)
}

fn memfd() -> Option<OwnedFd> {
    let name = c"burrow-runtime";
    const MFD_EXEC: libc::c_uint = 0x10;
    for flags in [libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING | MFD_EXEC, libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING] {
        // SAFETY: a NUL-terminated name and plain flags; a new descriptor on success.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
        if fd >= 0 {
            // SAFETY: we own the new descriptor.
            return Some(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    None
}

/// Re-executes from a sealed copy when needed. Returns only if no copy was needed or it
/// could not be made (then the caller goes on: protection is best effort, never a reason to
/// refuse a container).
pub fn ensure() {
    let exe = Path::new("/proc/self/exe");
    let Ok(target) = std::fs::read_link(exe) else { return };
    if !needs_clone(&target) {
        return;
    }
    let Some(fd) = memfd() else { return };
    let Ok(src) = std::fs::File::open(exe) else { return };
    let Ok(len) = src.metadata().map(|m| m.len() as usize) else { return };
    let f = std::fs::File::from(fd);
    // Copied in the kernel (sendfile), without a user-space buffer.
    let mut done = 0;
    while done < len {
        match nix::sys::sendfile::sendfile(&f, &src, None, len - done) {
            Ok(0) | Err(_) => return,
            Ok(n) => done += n,
        }
    }
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on our own descriptor.
    if unsafe { libc::fcntl(f.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return;
    }
    let args: Vec<CString> = std::env::args_os().filter_map(|a| CString::new(a.into_encoded_bytes()).ok()).collect();
    let env = super::process::environ();
    let _ = nix::unistd::fexecve(f.as_raw_fd(), &args, &env);
}
