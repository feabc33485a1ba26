//! One user namespace shared by a user's containers that have the same id maps, kept alive
//! between starts by a small process of its own (the *keeper*), as rootless Podman keeps its
//! pause process's.
//!
//! Why: a rootless container's maps name subordinate ids, which only the distribution's setuid
//! `newuidmap` and `newgidmap` may write (idmap.rs). Those two programs take 2.5-3.5 ms of every
//! start, more than anything else the runtime does, and on a loaded node much more (two setuid
//! execs, each loading its libraries in secure mode). A namespace with the same maps, made
//! earlier and still alive, is joined with one setns(2) instead.
//!
//! ```text
//! first start (no keeper)                      later starts (keeper alive, same maps)
//!   clone the init in a new user namespace       lookup: the record names a live namespace
//!   newuidmap, newgidmap                            with the same maps, /etc/subuid and
//!   fork the keeper: setns into it, exec            /etc/subgid unchanged
//!     `burrow-runtime userns-keep KEY`           the init joins it (setns), no helper runs
//!   the keeper writes ROOT/@userns/KEY
//! ```
//!
//! What is checked before a namespace is joined, so that joining it is what creating one would
//! have been: the record's pid still has that namespace (device and inode of its nsfs file), its
//! uid_map and gid_map are the maps asked for, setgroups is allowed (as the helpers leave it),
//! its owner is our uid, and /etc/subuid and /etc/subgid have not changed since the keeper's
//! namespace was mapped: a range taken away there is not used from a namespace mapped before.
//! Anything else is a miss, and the start makes its namespace with the helpers as ever.
//!
//! What sharing gives up: containers of one user with the same maps are in one user namespace.
//! A container's root has capabilities over the namespaces of another container of the same
//! user only if it can see that container's processes (another pid namespace hides them); the
//! same trade Podman makes. `BURROW_USERNS_SHARE=0` turns sharing off.
//!
//! The keeper holds nothing but the namespace: no descriptor, no working directory in the store
//! (its record's directory is passed in its environment, so its command line does not name it).
//! It ends when its record is removed or names another keeper, and after `IDLE` without a start
//! that used it (each use touches the record; the keeper watches the directory with inotify).

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxIdMapping;

/// A keeper ends after this long without a start that used its namespace.
pub const IDLE: std::time::Duration = std::time::Duration::from_secs(600);

/// The environment variable that turns sharing off (`0`).
pub const ENV_SHARE: &str = "BURROW_USERNS_SHARE";
/// The keeper's record directory, passed to it in its environment.
const ENV_DIR: &str = "BURROW_USERNS_DIR";

/// The directory of the keepers' records under a runtime root: `@userns`, a name no container
/// id can have (state::validate_id), among the containers' directories.
pub fn records(root: &Path) -> PathBuf {
    root.join("@userns")
}

/// Whether sharing is on in this process's environment (it is unless `BURROW_USERNS_SHARE=0`).
pub fn enabled() -> bool {
    std::env::var_os(ENV_SHARE).is_none_or(|v| v != "0")
}

/// A record's name: a hash of the maps (FNV-1a; the maps themselves are compared on use).
pub fn key(uids: &[LinuxIdMapping], gids: &[LinuxIdMapping]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (tag, maps) in [(b'u', uids), (b'g', gids)] {
        h = fnv(h, &[tag]);
        for m in maps {
            for n in [m.container_id(), m.host_id(), m.size()] {
                h = fnv(h, &n.to_le_bytes());
            }
        }
    }
    format!("{h:016x}")
}

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// /etc/subuid and /etc/subgid as they are now: device, inode, size and both times of each (a
/// `-` for a missing one). Taken before the helpers read them, and compared on every use.
pub fn subid_fingerprint() -> String {
    ["/etc/subuid", "/etc/subgid"]
        .iter()
        .map(|p| match std::fs::metadata(p) {
            Ok(m) => format!("{}:{}:{}:{}.{}:{}.{}", m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()),
            Err(_) => "-".into(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A keeper's record: `PID NS-DEV NS-INO SUBID-FINGERPRINT`, one line.
#[derive(Debug, PartialEq, Eq)]
struct Record {
    pid: i32,
    dev: u64,
    ino: u64,
    subid: String,
}

impl Record {
    fn parse(text: &str) -> Option<Record> {
        let mut f = text.trim_end_matches('\n').splitn(4, ' ');
        let r = Record { pid: f.next()?.parse().ok()?, dev: f.next()?.parse().ok()?, ino: f.next()?.parse().ok()?, subid: f.next()?.to_string() };
        (r.pid > 0 && !r.subid.is_empty() && !r.subid.contains('\n')).then_some(r)
    }

    fn line(&self) -> String {
        format!("{} {} {} {}\n", self.pid, self.dev, self.ino, self.subid)
    }
}

/// The triples of a /proc/PID/{uid,gid}_map, sorted (to compare with the spec's in any order).
fn parse_map(text: &str) -> Option<Vec<[u32; 3]>> {
    let mut v = super::idmap::parse_proc_map(text)?;
    v.sort_unstable();
    Some(v)
}

fn wanted(m: &[LinuxIdMapping]) -> Vec<[u32; 3]> {
    let mut v: Vec<[u32; 3]> = m.iter().map(|m| [m.container_id(), m.host_id(), m.size()]).collect();
    v.sort_unstable();
    v
}

/// What a start found: the shared namespace to join, or none (then, once its own namespace is
/// mapped, `keep` makes it the shared one).
pub enum Lookup {
    Found(OwnedFd),
    Missing { dir: PathBuf, key: String, subid: String },
}

/// The live shared namespace for these maps under `root`, checked as the module says; touches
/// its record (the keeper's sign of use).
pub fn lookup(root: &Path, uids: &[LinuxIdMapping], gids: &[LinuxIdMapping]) -> Lookup {
    let dir = records(root);
    let key = key(uids, gids);
    let subid = subid_fingerprint();
    match find(&dir.join(&key), uids, gids, &subid) {
        Some(fd) => Lookup::Found(fd),
        None => Lookup::Missing { dir, key, subid },
    }
}

fn find(record: &Path, uids: &[LinuxIdMapping], gids: &[LinuxIdMapping], subid: &str) -> Option<OwnedFd> {
    let file = std::fs::File::open(record).ok()?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(&file, 4096), &mut text).ok()?;
    let r = Record::parse(&text)?;
    if r.subid != subid {
        return None;
    }
    let ns = std::fs::File::open(format!("/proc/{}/ns/user", r.pid)).ok()?;
    let m = ns.metadata().ok()?;
    if (m.dev(), m.ino()) != (r.dev, r.ino) {
        return None;
    }
    let read = |what: &str| std::fs::read_to_string(format!("/proc/{}/{what}", r.pid)).ok();
    if parse_map(&read("uid_map")?)? != wanted(uids) || parse_map(&read("gid_map")?)? != wanted(gids) || read("setgroups")?.trim() != "allow" {
        return None;
    }
    // The pid could have been reused by a process in another namespace with these maps that
    // also got this inode number back: then it must at least be ours.
    let mut owner: libc::uid_t = 0;
    // SAFETY: NS_GET_OWNER_UID writes one uid_t through the pointer.
    if unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_OWNER_UID, &mut owner as *mut libc::uid_t) } != 0 || owner != nix::unistd::geteuid().as_raw() {
        return None;
    }
    // The keeper's sign of use: the record's times, set to now.
    // SAFETY: futimens with a null times pointer sets both times to now on our open file.
    unsafe { libc::futimens(file.as_raw_fd(), std::ptr::null()) };
    Some(OwnedFd::from(ns))
}

/// `_IO(0xb7, 0x4)` from linux/nsfs.h.
const NS_GET_OWNER_UID: libc::c_ulong = 0xb704;

/// Makes the user namespace of `pid` (just mapped by the helpers) the shared one for its maps:
/// forks a keeper that joins it and execs this executable's `userns-keep KEY SUBID`, which
/// writes the record. Best effort and silent (a start that cannot leave a keeper is still a
/// start). The caller must be single-threaded (the child calls setns for a user namespace).
pub fn keep(dir: &Path, key: &str, subid: &str, pid: i32) {
    let Ok(ns) = std::fs::File::open(format!("/proc/{pid}/ns/user")) else { return };
    let (Ok(k), Ok(s), Ok(d)) = (CString::new(key), CString::new(subid), CString::new(format!("{ENV_DIR}={}", dir.display()))) else {
        return;
    };
    let exe = c"/proc/self/exe";
    let argv0 = CString::new("burrow-runtime").unwrap_or_default();
    let cmd = CString::new("userns-keep").unwrap_or_default();
    let argv = [argv0.as_ptr(), cmd.as_ptr(), k.as_ptr(), s.as_ptr(), std::ptr::null()];
    let path = CString::new("PATH=/usr/local/bin:/usr/bin:/bin").unwrap_or_default();
    let envp = [d.as_ptr(), path.as_ptr(), std::ptr::null()];
    // SAFETY: single-threaded caller (see above); the child only makes system calls on what was
    // prepared here and execs or exits.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => unsafe {
            // Its own session: no terminal's signals, no part of the caller's job.
            libc::setsid();
            if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWUSER) != 0 {
                libc::_exit(1);
            }
            // Nothing of the caller's: a pipe someone reads to its end must not wait for us.
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            libc::chdir(c"/".as_ptr());
            libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(127)
        },
        // Reaped by whoever reaps our children (the runtime's loop, or init once we are gone).
        Ok(nix::unistd::ForkResult::Parent { .. }) | Err(_) => {}
    }
    drop(ns);
}

/// The keeper (`burrow-runtime userns-keep KEY SUBID`, started by `keep` inside the namespace):
/// writes its record, then waits until the record is gone, names another keeper, or was not
/// used for `IDLE`. Returns the exit code.
pub fn keeper_main(key: &str, subid: &str) -> i32 {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let Some(dir) = std::env::var_os(ENV_DIR).map(PathBuf::from) else { return 2 };
    if key.is_empty() || key.contains('/') || key.starts_with('.') {
        return 2;
    }
    super::process::set_name("burrow:userns");
    let Ok(m) = std::fs::metadata("/proc/self/ns/user") else { return 1 };
    let me = Record { pid: std::process::id() as i32, dev: m.dev(), ino: m.ino(), subid: subid.into() };
    let record = dir.join(key);
    if crate::paths::ensure_private_dir(&dir).is_err() {
        return 1;
    }
    // Atomic: a start never reads half a record.
    let tmp = dir.join(format!(".{key}.{}", me.pid));
    if std::fs::write(&tmp, me.line()).is_err() || std::fs::rename(&tmp, &record).is_err() {
        let _ = std::fs::remove_file(&tmp);
        return 1;
    }
    let ours = || std::fs::read_to_string(&record).ok().and_then(|t| Record::parse(&t)).is_some_and(|r| r == me);
    let Ok(ino) = Inotify::init(InitFlags::IN_CLOEXEC) else { return 1 };
    let watch = AddWatchFlags::IN_DELETE | AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_DELETE_SELF | AddWatchFlags::IN_MOVE_SELF;
    if ino.add_watch(&dir, watch).is_err() {
        return 1;
    }
    loop {
        let idle = std::fs::metadata(&record).ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok());
        let Some(idle) = idle else { return 0 };
        if !ours() {
            return 0;
        }
        if idle >= IDLE {
            // Still ours (just checked): a start that reads it now finds a namespace that lives
            // on with its containers, or a dead pid (a miss).
            let _ = std::fs::remove_file(&record);
            return 0;
        }
        let left = (IDLE - idle).as_millis().min(i32::MAX as u128) as i32;
        let mut fds = [libc::pollfd { fd: std::os::fd::AsFd::as_fd(&ino).as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        // SAFETY: one pollfd in a live array.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, left.max(1000)) };
        if n > 0 {
            // Read the events only to clear them; the record itself is what counts.
            let _ = ino.read_events();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxIdMappingBuilder;

    fn m(c: u32, h: u32, s: u32) -> LinuxIdMapping {
        LinuxIdMappingBuilder::default().container_id(c).host_id(h).size(s).build().unwrap()
    }

    #[test]
    fn records_round_trip_and_refuse_garbage() {
        let r = Record { pid: 42, dev: 4, ino: 4026531837, subid: "1:2:3:4.5:6.7,-".into() };
        assert_eq!(Record::parse(&r.line()), Some(r));
        for bad in ["", "42", "42 4 5", "x 4 5 s", "0 4 5 s", "-1 4 5 s", "42 4 5 \n"] {
            assert_eq!(Record::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn keys_differ_by_maps_and_kind() {
        let a = key(&[m(0, 1000, 1), m(1, 100000, 65536)], &[m(0, 1000, 1)]);
        assert_eq!(a, key(&[m(0, 1000, 1), m(1, 100000, 65536)], &[m(0, 1000, 1)]));
        assert_ne!(a, key(&[m(0, 1000, 1), m(1, 100000, 65535)], &[m(0, 1000, 1)]));
        // The same triples as uid or as gid maps are different namespaces.
        assert_ne!(key(&[m(0, 1000, 1)], &[]), key(&[], &[m(0, 1000, 1)]));
        assert_eq!(a.len(), 16);
    }

    #[test]
    fn proc_maps_compare_with_the_spec_in_any_order() {
        let text = "         0       1000          1\n         1     100000      65536\n";
        assert_eq!(parse_map(text), Some(wanted(&[m(1, 100000, 65536), m(0, 1000, 1)])));
        assert_ne!(parse_map(text), Some(wanted(&[m(0, 1000, 1)])));
        assert_eq!(parse_map("0 1 2 3\n"), None);
        assert_eq!(parse_map("0 x 2\n"), None);
    }

    #[test]
    fn our_own_namespace_is_found_only_with_the_same_maps_and_subids() {
        // The test process's own namespace, recorded under its own pid: every check but the
        // maps' and the fingerprint's passes (owner: the initial namespace's owner is root,
        // so only as root does it get that far).
        let t = tempfile::tempdir().unwrap();
        let meta = std::fs::metadata("/proc/self/ns/user").unwrap();
        let rec = Record { pid: std::process::id() as i32, dev: meta.dev(), ino: meta.ino(), subid: "fp".into() };
        let path = t.path().join("k");
        std::fs::write(&path, rec.line()).unwrap();
        let own = parse_map(&std::fs::read_to_string("/proc/self/uid_map").unwrap()).unwrap();
        let as_spec: Vec<LinuxIdMapping> = own.iter().map(|t| m(t[0], t[1], t[2])).collect();
        let gown = parse_map(&std::fs::read_to_string("/proc/self/gid_map").unwrap()).unwrap();
        let g_spec: Vec<LinuxIdMapping> = gown.iter().map(|t| m(t[0], t[1], t[2])).collect();
        assert!(find(&path, &as_spec, &g_spec, "other fp").is_none(), "a changed /etc/subuid is a miss");
        assert!(find(&path, &[m(0, 1, 1)], &g_spec, "fp").is_none(), "other maps are a miss");
        assert!(find(&t.path().join("none"), &as_spec, &g_spec, "fp").is_none());
        let setgroups_allowed = std::fs::read_to_string("/proc/self/setgroups").map(|s| s.trim() == "allow").unwrap_or(false);
        let found = find(&path, &as_spec, &g_spec, "fp");
        assert_eq!(found.is_some(), setgroups_allowed && nix::unistd::geteuid().is_root());
        // A record whose inode is not the pid's namespace's.
        std::fs::write(&path, Record { ino: rec.ino + 1, ..rec }.line()).unwrap();
        assert!(find(&path, &as_spec, &g_spec, "fp").is_none());
    }
}
