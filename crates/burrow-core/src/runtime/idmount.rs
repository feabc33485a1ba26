//! Idmapped bind mounts: the `idmap`/`ridmap` mount options and a mount's own `uidMappings` /
//! `gidMappings` (runtime spec, config.md "POSIX-platform Mounts"). A detached copy of the
//! source (open_tree(OPEN_TREE_CLONE)) gets MOUNT_ATTR_IDMAP with a user namespace
//! (mount_setattr), then is attached in the container (move_mount).
//!
//! Mapping semantics are runc's and crun's: a mount mapping `{containerID: F, hostID: K}` shows
//! a file that the filesystem stores as owned by F as owned by K in burrow-runtime's own user
//! namespace, so inside the container it is owned by whatever K is there. Without mappings the
//! container's user namespace is used: files then show inside with the ids they have on disk.
//!
//! Who may do it is the kernel's rule (fs/namespace.c): build_mount_idmapped wants
//! CAP_SYS_ADMIN in the mapping's user namespace, can_idmap_mount wants FS_ALLOW_IDMAP (ext4,
//! xfs, btrfs, tmpfs since 6.3; not overlay) and CAP_SYS_ADMIN in the user namespace that owns
//! the filesystem's superblock, and the tree must still be detached. The container's init lacks
//! the latter for a host filesystem (owned by the initial user namespace) as soon as it is in a
//! user namespace of its own. So, as runc does, the runtime's main process makes the tree when
//! it has CAP_SYS_ADMIN (root): a forked helper joins the init's mount namespace (sources resolve
//! exactly as the init sees them), makes the tree, and main passes its fd to the init. A rootless
//! runtime has nothing to lend: the init makes the tree itself, which the kernel allows only for
//! filesystems mounted inside the container's user namespace (a tmpfs the config mounts), and a
//! host directory is refused with that reason.

use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::ForkResult;
use oci_spec::runtime::{LinuxIdMapping, Mount};

use super::error::{PathCtx, Result, RuntimeError, SysCtx};
use super::sync::{Channel, IdmapRequest, Msg};

/// One mapping line: (id on the filesystem, id it shows as, count).
pub type Triple = [u32; 3];

/// The idmapped part of a bind mount's config, or None for an ordinary bind mount.
pub fn wanted(m: &Mount, source: &Path, rbind: bool, idmap: bool, ridmap: bool) -> Result<Option<IdmapRequest>> {
    let uids = m.uid_mappings().as_ref().filter(|v| !v.is_empty());
    let gids = m.gid_mappings().as_ref().filter(|v| !v.is_empty());
    // Mappings without the option still mean an idmapped mount (runc and crun agree; the spec
    // asks for the option so that older runtimes do not silently ignore the mappings).
    if !idmap && !ridmap && uids.is_none() && gids.is_none() {
        return Ok(None);
    }
    let dst = m.destination().display().to_string();
    if uids.is_some() != gids.is_some() {
        return Err(RuntimeError::Idmap { dst, detail: "uidMappings and gidMappings must be given together (runtime spec)".into() });
    }
    let triples = |v: Option<&Vec<LinuxIdMapping>>| -> Vec<Triple> { v.into_iter().flatten().map(|x| [x.container_id(), x.host_id(), x.size()]).collect() };
    // A relative source is relative to the runtime's working directory, which the init shares;
    // the helper that makes the tree resolves it after joining another mount namespace.
    let source = if source.is_absolute() { source.to_path_buf() } else { std::env::current_dir().at("getcwd", ".")?.join(source) };
    Ok(Some(IdmapRequest { source: source.display().to_string(), destination: dst, rbind, recursive: ridmap, uids: triples(uids), gids: triples(gids) }))
}

/// In the init: gets the idmapped tree for `req` (from main, or made here when main has no
/// privilege to lend) and attaches it at `dst`.
pub fn attach(ch: Option<&Channel>, req: &IdmapRequest, dst: &Path) -> Result<()> {
    let tree = match ch {
        Some(ch) => {
            ch.send(&Msg::Idmap(req.clone()))?;
            match ch.recv_with_fd()? {
                Some((Msg::IdmapTree, Some(fd))) => fd,
                Some((Msg::IdmapSelf { uid_map, gid_map }, _)) => tree_in_container(req, &uid_map, &gid_map)?,
                Some((Msg::Error { code, msg }, _)) => return Err(RuntimeError::Remote { code, msg }),
                Some((m, _)) => return Err(RuntimeError::Child(format!("protocol error: expected an idmapped tree, got {m:?}"))),
                None => return Err(RuntimeError::Child("burrow-runtime exited while making an idmapped mount".into())),
            }
        }
        // No runtime to ask (a caller that drives mounts directly): do it here.
        None => {
            let uid_map = fs::read_to_string("/proc/self/uid_map").at("read", "/proc/self/uid_map")?;
            let gid_map = fs::read_to_string("/proc/self/gid_map").at("read", "/proc/self/gid_map")?;
            tree_in_container(req, &uid_map, &gid_map)?
        }
    };
    move_mount(&tree, dst)
}

/// The rootless path: the init itself, root in the container's user namespace. Mount mappings
/// name ids of burrow-runtime's user namespace; a user namespace made here is a child of the
/// container's, so its map is written in container ids: each host id is translated through the
/// container's own map (as the runtime sees it), and one that the container does not have
/// cannot be given to the mount.
fn tree_in_container(req: &IdmapRequest, uid_map: &str, gid_map: &str) -> Result<OwnedFd> {
    let userns = if req.uids.is_empty() {
        fs::File::open("/proc/self/ns/user").at("open", "/proc/self/ns/user")?.into()
    } else {
        let inner = |m: &[Triple], map: &str, kind: &str| -> Result<String> {
            translate(m, &super::idmap::parse_proc_map(map).unwrap_or_default()).map_err(|host| RuntimeError::Idmap {
                dst: req.destination.clone(),
                detail: format!(
                    "host {kind} {host} of the mount's {kind}Mappings is not mapped into the container's user namespace (its {kind}_map: {}); a rootless runtime can only give the mount ids the container has",
                    map.split_whitespace().collect::<Vec<_>>().chunks(3).map(|c| c.join(" ")).collect::<Vec<_>>().join(", ")
                ),
            })
        };
        let u = inner(&req.uids, uid_map, "uid")?;
        let g = inner(&req.gids, gid_map, "gid")?;
        userns_with_maps(&u, &g, &req.destination)?
    };
    make_tree(req, userns.as_fd(), false)
}

/// Main, while the init sets up the container: answers idmapped-mount requests until the init
/// reports `Created`. Errors here fail `create` (its caller kills the init).
/// `runtime_hooks` runs the prestart and createRuntime hooks when the init asks (RuntimeHooks).
pub fn serve_until_created(ch: &Channel, init_pid: i32, runtime_hooks: &mut dyn FnMut() -> Result<()>) -> Result<()> {
    // Decided once: whether we hold CAP_SYS_ADMIN to lend.
    let mut privileged: Option<bool> = None;
    loop {
        match ch.recv()? {
            Some(Msg::Created) => return Ok(()),
            Some(Msg::RuntimeHooks) => {
                runtime_hooks()?;
                ch.send(&Msg::HooksDone)?;
            }
            Some(Msg::Idmap(req)) => {
                if !*privileged.get_or_insert_with(have_cap_sys_admin) {
                    // Read from here, the map's host ids are relative to our user namespace.
                    let read = |f: &str| fs::read_to_string(format!("/proc/{init_pid}/{f}")).at("read", format!("/proc/{init_pid}/{f}"));
                    ch.send(&Msg::IdmapSelf { uid_map: read("uid_map")?, gid_map: read("gid_map")? })?;
                    continue;
                }
                let tree = tree_from_runtime(&req, init_pid)?;
                ch.send_with_fd(&Msg::IdmapTree, Some(tree.as_raw_fd()))?;
            }
            Some(Msg::Error { code, msg }) => return Err(RuntimeError::Remote { code, msg }),
            Some(m) => return Err(RuntimeError::Child(format!("protocol error: expected created, got {m:?}"))),
            None => return Err(RuntimeError::Child("the container's process exited before the container was created".into())),
        }
    }
}

/// The privileged path: the user namespace comes from us (mount mappings, written as given, as
/// runc does) or is the container's; a helper in the init's mount namespace makes the tree.
fn tree_from_runtime(req: &IdmapRequest, init_pid: i32) -> Result<OwnedFd> {
    let userns: OwnedFd = if req.uids.is_empty() {
        let theirs = format!("/proc/{init_pid}/ns/user");
        let same = fs::metadata(&theirs).at("stat", &theirs)?.ino() == fs::metadata("/proc/self/ns/user").at("stat", "/proc/self/ns/user")?.ino();
        if same {
            return Err(RuntimeError::Idmap {
                dst: req.destination.clone(),
                detail: "idmap without uidMappings/gidMappings uses the container's user namespace, and this container has none (runtime spec: an error)"
                    .into(),
            });
        }
        fs::File::open(&theirs).at("open", &theirs)?.into()
    } else {
        let text = |m: &[Triple]| m.iter().map(|[a, b, c]| format!("{a} {b} {c}\n")).collect::<String>();
        userns_with_maps(&text(&req.uids), &text(&req.gids), &req.destination)?
    };
    let mnt = fs::File::open(format!("/proc/{init_pid}/ns/mnt")).at("open", format!("/proc/{init_pid}/ns/mnt"))?;
    let (ours, theirs) = Channel::pair()?;
    // SAFETY: burrow-runtime is single-threaded (create.rs): the child may do anything.
    match unsafe { nix::unistd::fork() }.op("fork")? {
        ForkResult::Child => {
            drop(ours);
            super::process::set_name("burrow:idmap");
            // SAFETY: plain prctl; the helper must not outlive main.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
            let r = nix::sched::setns(&mnt, nix::sched::CloneFlags::CLONE_NEWNS)
                .op("join the container's mount namespace")
                .and_then(|_| make_tree(req, userns.as_fd(), true));
            let _ = match r {
                Ok(tree) => theirs.send_with_fd(&Msg::IdmapTree, Some(tree.as_raw_fd())),
                Err(e) => theirs.send(&Msg::Error { code: crate::error::Coded::code(&e).into(), msg: e.to_string() }),
            };
            // SAFETY: leave without running the parent's atexit handlers.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(theirs);
            let got = ours.recv_with_fd();
            let _ = waitpid(child, None);
            match got? {
                Some((Msg::IdmapTree, Some(fd))) => Ok(fd),
                Some((Msg::Error { code, msg }, _)) => Err(RuntimeError::Remote { code, msg }),
                _ => Err(RuntimeError::Child("the idmapped-mount helper exited without an answer".into())),
            }
        }
    }
}

/// Whether this process has CAP_SYS_ADMIN in its own user namespace (root, or root of an outer
/// `unshare -r`): then it, not the container's init, makes idmapped trees.
fn have_cap_sys_admin() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).and_then(|h| u64::from_str_radix(h.trim(), 16).ok()).unwrap_or(0);
    // CAP_SYS_ADMIN is capability 21.
    eff & (1 << 21) != 0
}

/// A user namespace with these maps, held by an fd. A forked child unshares it and waits (a
/// process cannot write the maps of its own new namespace beyond its own id); we write its maps,
/// open its ns file, which keeps the namespace alive, and reap the child.
fn userns_with_maps(uid_map: &str, gid_map: &str, dst: &str) -> Result<OwnedFd> {
    let (ready_r, ready_w) = nix::unistd::pipe().op("pipe")?;
    let (hold_r, hold_w) = nix::unistd::pipe().op("pipe")?;
    // SAFETY: single-threaded process (see create.rs); the child only unshares, writes, reads.
    let child = match unsafe { nix::unistd::fork() }.op("fork")? {
        ForkResult::Child => {
            drop(ready_r);
            drop(hold_w);
            // SAFETY: plain prctls. Dumpable: the init is not (its ids changed), and the /proc
            // files of a non-dumpable process belong to the host's root, so the init, root only
            // in the container, could not write this child's maps. Nothing runs in the container
            // yet that could attach to it, and it dies as soon as its namespace is held.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);
            }
            // Our pid as the mounted /proc knows it, which is not what fork returned to the
            // init: the init is in a new pid namespace, but before pivot_root it still sees the
            // host's /proc, where "self" names us by our host pid.
            let answer = match nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER) {
                Ok(()) => format!("0 {}", fs::read_link("/proc/self").map(|p| p.display().to_string()).unwrap_or_default()),
                Err(e) => format!("{}", e as i32),
            };
            // Closing our end right after tells the parent the answer is complete.
            let _ = fs::File::from(ready_w).write_all(answer.as_bytes());
            // Hold the namespace until the parent has its fd (EOF when it closes its end).
            let _ = fs::File::from(hold_r).read(&mut [0u8; 1]);
            // SAFETY: leave without running the parent's atexit handlers.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => child,
    };
    drop(ready_w);
    drop(hold_r);
    let r = (|| -> Result<OwnedFd> {
        let mut answer = String::new();
        fs::File::from(ready_r).read_to_string(&mut answer).op("wait for the mount's user namespace")?;
        let mut words = answer.split_whitespace();
        let errno: i32 = words.next().and_then(|e| e.parse().ok()).unwrap_or(libc::ECHILD);
        if errno != 0 {
            return Err(RuntimeError::Sys { op: format!("unshare(CLONE_NEWUSER) for the idmapped mount on {dst}"), errno: Errno::from_raw(errno) });
        }
        let pid =
            words.next().ok_or_else(|| RuntimeError::Child(format!("the holder of the user namespace for the idmapped mount on {dst} did not say its pid")))?;
        let proc = format!("/proc/{pid}");
        for (file, text) in [("uid_map", uid_map), ("gid_map", gid_map)] {
            fs::write(format!("{proc}/{file}"), text).map_err(|e| RuntimeError::Idmap {
                dst: dst.into(),
                detail: format!("cannot write the mount's {file} ({}): {e}", text.trim().replace('\n', ", ")),
            })?;
        }
        Ok(fs::File::open(format!("{proc}/ns/user")).at("open", format!("{proc}/ns/user"))?.into())
    })();
    drop(hold_w);
    if r.is_err() {
        let _ = kill(child, Signal::SIGKILL);
    }
    let _ = waitpid(child, None);
    r
}

/// open_tree(OPEN_TREE_CLONE [| AT_RECURSIVE for rbind]) + mount_setattr(MOUNT_ATTR_IDMAP
/// [| AT_RECURSIVE for ridmap]). `runtime` says who asks (for the explanation of a refusal).
fn make_tree(req: &IdmapRequest, userns: BorrowedFd, runtime: bool) -> Result<OwnedFd> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
    let src = Path::new(&req.source);
    let csrc = CString::new(src.as_os_str().as_bytes()).map_err(|_| RuntimeError::Usage(format!("mount source {src:?} contains a NUL byte")))?;
    let tree_rec = if req.rbind { libc::AT_RECURSIVE as libc::c_uint } else { 0 };
    // SAFETY: a NUL-terminated path; returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, csrc.as_ptr(), OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | tree_rec) };
    if fd < 0 {
        let errno = Errno::last();
        return Err(match errno {
            Errno::ENOSYS => refusal(req, "open_tree", errno, "idmapped mounts need Linux 5.12 or later".into()),
            // __do_loopback: an unbindable mount, or (without rbind) mounts below the source
            // that the bind would uncover, locked because the mount namespace is the container's.
            Errno::EINVAL if !req.rbind => refusal(req, "open_tree(OPEN_TREE_CLONE)", errno, format!("{} is unbindable, or has mounts below it that a bind without rbind would uncover (the kernel keeps them locked in the container's namespaces)", src.display())),
            Errno::EINVAL => refusal(req, "open_tree(OPEN_TREE_CLONE)", errno, format!("{} is an unbindable mount", src.display())),
            _ => RuntimeError::Path { op: "open_tree(OPEN_TREE_CLONE)", path: src.to_path_buf(), errno },
        });
    }
    // SAFETY: the kernel just returned this descriptor.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let attr = MountAttr { attr_set: MOUNT_ATTR_IDMAP, attr_clr: 0, propagation: 0, userns_fd: userns.as_raw_fd() as u64 };
    let flags = libc::AT_EMPTY_PATH as libc::c_uint | if req.recursive { libc::AT_RECURSIVE as libc::c_uint } else { 0 };
    // SAFETY: a valid fd, an empty path with AT_EMPTY_PATH, and the attribute struct's own size.
    if unsafe { libc::syscall(libc::SYS_mount_setattr, tree.as_raw_fd(), c"".as_ptr(), flags, &attr as *const MountAttr, std::mem::size_of::<MountAttr>()) } < 0
    {
        let errno = Errno::last();
        return Err(explain_setattr(req, errno, runtime));
    }
    Ok(tree)
}

fn refusal(req: &IdmapRequest, op: &str, errno: Errno, why: String) -> RuntimeError {
    RuntimeError::Idmap { dst: req.destination.clone(), detail: format!("{op} of {} failed ({}): {why}", req.source, errno.desc()) }
}

/// Turns mount_setattr's errno into the kernel's reason (fs/namespace.c: build_mount_idmapped,
/// can_idmap_mount), naming the source's filesystem.
fn explain_setattr(req: &IdmapRequest, errno: Errno, runtime: bool) -> RuntimeError {
    let (fstype, idmapped) = source_mount(Path::new(&req.source)).unwrap_or_else(|| ("an unknown filesystem".into(), false));
    let why = match errno {
        Errno::EPERM if idmapped => format!("{} is already an idmapped mount, and the kernel does not idmap a mount twice (can_idmap_mount)", req.source),
        Errno::EPERM if runtime => format!(
            "the kernel allows idmapped mounts only to a process with CAP_SYS_ADMIN in the user namespace that owns the source's filesystem (fs/namespace.c: can_idmap_mount), and {} is on {fstype}, whose user namespace burrow-runtime has no CAP_SYS_ADMIN in (for a host filesystem, the initial one)",
            req.source
        ),
        Errno::EPERM => format!(
            "the kernel allows idmapped mounts only to a process with CAP_SYS_ADMIN in the user namespace that owns the source's filesystem (fs/namespace.c: can_idmap_mount); {} is on {fstype} mounted outside the container's user namespace (for a host filesystem, the initial one), and a rootless container has no capability there. Idmapping a host directory needs burrow-runtime running as root; without idmap the bind mount shows the files with the container's own mapping",
            req.source
        ),
        Errno::EINVAL if !runtime && req.uids.is_empty() => format!(
            "{fstype} does not support idmapped mounts (FS_ALLOW_IDMAP), or it belongs to the container's user namespace, whose own mapping an idmapped mount cannot repeat (give the mount uidMappings/gidMappings)"
        ),
        Errno::EINVAL if req.recursive => format!("the filesystem of {} ({fstype}), or of a mount below it (ridmap maps them all), does not support idmapped mounts on this kernel (can_idmap_mount: FS_ALLOW_IDMAP)", req.source),
        Errno::EINVAL => format!("the filesystem of {} ({fstype}) does not support idmapped mounts on this kernel (can_idmap_mount: FS_ALLOW_IDMAP)", req.source),
        Errno::ENOSYS => "idmapped mounts need Linux 5.12 or later (mount_setattr)".into(),
        _ => "the kernel refused MOUNT_ATTR_IDMAP".into(),
    };
    refusal(req, "mount_setattr(MOUNT_ATTR_IDMAP)", errno, why)
}

/// The filesystem type of the mount that holds `path`, and whether that mount is idmapped, from
/// /proc/self/mountinfo (the last mount whose mount point is the longest prefix of the path).
fn source_mount(path: &Path) -> Option<(String, bool)> {
    let path = fs::canonicalize(path).ok()?;
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut best: Option<(usize, String, bool)> = None;
    for line in info.lines() {
        let (left, right) = line.split_once(" - ")?;
        let f: Vec<&str> = left.split(' ').collect();
        let (Some(mp), Some(opts)) = (f.get(4), f.get(5)) else { continue };
        let mp = PathBuf::from(unescape(mp));
        if !path.starts_with(&mp) {
            continue;
        }
        let depth = mp.components().count();
        if best.as_ref().is_none_or(|b| depth >= b.0) {
            let fstype = right.split(' ').next().unwrap_or("").to_string();
            best = Some((depth, fstype, opts.split(',').any(|o| o == "idmapped")));
        }
    }
    best.map(|(_, t, i)| (t, i))
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn move_mount(tree: &OwnedFd, dst: &Path) -> Result<()> {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    let cdst = CString::new(dst.as_os_str().as_bytes()).map_err(|_| RuntimeError::Usage(format!("mount destination {dst:?} contains a NUL byte")))?;
    // SAFETY: a valid fd with an empty path, and a NUL-terminated destination.
    if unsafe { libc::syscall(libc::SYS_move_mount, tree.as_raw_fd(), c"".as_ptr(), libc::AT_FDCWD, cdst.as_ptr(), MOVE_MOUNT_F_EMPTY_PATH) } < 0 {
        return Err(Errno::last()).at("move_mount of the idmapped tree onto", dst);
    }
    Ok(())
}

/// Rewrites mount mappings (filesystem id → host id) as a uid_map for a user namespace nested
/// in the container's (filesystem id → container id), splitting a range that spans several of
/// the container's extents. Err(host id) names the first host id the container does not have.
fn translate(mount: &[Triple], container: &[Triple]) -> std::result::Result<String, u64> {
    let mut out = String::new();
    for &[fs_id, host, size] in mount {
        let (fs_id, host, size) = (fs_id as u64, host as u64, size as u64);
        let mut done = 0u64;
        while done < size {
            let h = host + done;
            let Some(&[inside, outside, count]) = container.iter().find(|[_, o, c]| h >= *o as u64 && h < *o as u64 + *c as u64) else {
                return Err(h);
            };
            let (inside, outside, count) = (inside as u64, outside as u64, count as u64);
            let n = (outside + count - h).min(size - done);
            out.push_str(&format!("{} {} {}\n", fs_id + done, inside + (h - outside), n));
            done += n;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_host_ids_through_the_container_map() {
        // Rootless: container 0 → host 1001, 1..65536 → host 100000...
        let container = super::super::idmap::parse_proc_map("         0       1001          1\n         1     100000      65536\n").unwrap();
        assert_eq!(container, vec![[0, 1001, 1], [1, 100000, 65536]]);
        // The caller's own id shows as container root; host 100999 as container 1000.
        assert_eq!(translate(&[[1001, 1001, 1]], &container).unwrap(), "1001 0 1\n");
        assert_eq!(translate(&[[1001, 100999, 1]], &container).unwrap(), "1001 1000 1\n");
        // A range across two extents is split.
        assert_eq!(translate(&[[0, 1001, 3]], &[[0, 1001, 1], [1, 1002, 5]]).unwrap(), "0 0 1\n1 1 2\n");
        // An id the container lacks is named.
        assert_eq!(translate(&[[0, 5000, 1]], &container), Err(5000));
        assert_eq!(translate(&[[0, 165535, 2]], &container), Err(165536));
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/end\\"), "/end\\");
    }

    #[test]
    fn finds_the_filesystem_of_a_path() {
        let (t, _) = source_mount(Path::new("/proc/self")).unwrap();
        assert_eq!(t, "proc");
    }
}
