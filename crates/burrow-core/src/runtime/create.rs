//! Creating a container: three processes, as runc and youki do.
//!
//! ```text
//! main (burrow-runtime create)      intermediate                    init (becomes the container)
//!   cgroup v2: mkdir, limits
//!   clone3(INTO_CGROUP)/fork ───────► join namespaces by path
//!                                     unshare(CLONE_NEWUSER)
//!   write uid/gid maps, ◄── userns ── (cannot map ids itself)
//!   cgroup (v1, scope, old kernel)
//!   ─── maps-done ──────────────────► become root in the userns
//!                                     unshare(mnt, uts, ipc, net, pid, cgroup)
//!                                     clone3/fork ──────────────────► (pid 1 in the new pid ns)
//!   ◄── init-pid ──────────────────── exit                          the root (a one-file
//!   state.json                                                        image's daemon, the union)
//!   ─── go ─────────────────────────────────────────────────────────► mounts
//!   prestart/createRuntime hooks ◄── runtime-hooks (if any) ─────────
//!   (a failure fails create)  ───── hooks-done ─────────────────────► createContainer hooks,
//!                                                                     pivot_root, user, caps
//!                                                                     seccomp (and its listener)
//!   ◄── created ─────────────────────────────────────────────────────  wait on start.sock (accept)
//!                                                                     startContainer hooks, exec
//! ```
//! The intermediate exists because a new pid namespace only applies to children of the process
//! that unshares it, and joining a pid namespace by path likewise. Main is single-threaded, so
//! fork is safe and unshare(CLONE_NEWUSER) is allowed. Main makes itself a child subreaper so
//! that the init becomes its child when the intermediate exits (`run` waits for it).
//!
//! When the config joins no namespace (and makes no time namespace), which is every container
//! of burrow's own, there is no intermediate: main clones the init itself, in its new user and
//! pid namespaces at once (clone3), and knows its pid without waiting for a message, so the
//! map helpers start at once; meanwhile the init unshares its other namespaces and builds its
//! seccomp filter, then waits for the maps (`direct_init`). The cgroup namespace still comes
//! after main has placed the init, as above. One process, one hand-over and the serial
//! unshare-and-fork fewer on the way of every start.
//!
//! The cgroup: on v2 with our own driver it is made, limits written, before the intermediate
//! exists, which is born in it (clone3 with CLONE_INTO_CGROUP, Linux 5.7+): nothing is ever
//! migrated, and every page and pid the container uses is charged from the start. Elsewhere
//! (v1, a systemd scope that needs a pid to exist, older kernels) main moves the intermediate in
//! once it exists. Either way before the intermediate unshares its cgroup namespace, which is
//! rooted wherever it is then: the container sees its own cgroup as "/".

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::error::{PathCtx, Result, RuntimeError, SysCtx};
use super::mounts::{self, MountCtx};
use super::process;
use super::state::{self, ContainerState};
use super::sync::{Channel, Msg};
use super::{cgroups, hooks, idmap, tty, userns_share};
use crate::error::Coded;

pub struct CreateOpts {
    pub root: PathBuf,
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    /// A console socket fd already connected (foreground `run` with a terminal).
    pub console_fd: Option<OwnedFd>,
    pub preserve_fds: i32,
    pub no_pivot: bool,
    /// `--systemd-cgroup`, already checked against `cgroups::systemd_unavailable`.
    pub cgroup_driver: cgroups::Driver,
    /// Reports a warning (capabilities left out) the way the caller logs.
    pub warn: fn(&str),
    /// The bundle's config and the capabilities it names that will not be applied, as
    /// `load_spec_for_create` returned them, when the caller read it already (`run` looks at
    /// `process.terminal` first): read once, not twice.
    pub loaded: Option<(Spec, Vec<String>)>,
    /// Work of the caller's that may be done while the container's id maps are written (the
    /// setuid helpers take milliseconds, during which this process only waits): called once,
    /// in this process, once the init exists (at the latest when `create` returns Ok); not
    /// called when `create` fails before.
    pub while_mapping: Option<Box<dyn FnOnce()>>,
    /// Join the user's shared user namespace for these maps, or leave one (userns_share.rs),
    /// when the maps need the setuid helpers. Only for a single-threaded caller whose
    /// executable runs `userns-keep` (burrow-runtime and burrow-monitor).
    pub share_userns: bool,
}

pub type SpecT = Spec;

pub fn load_spec(bundle: &Path) -> Result<(Spec, PathBuf)> {
    let path = bundle.join("config.json");
    Ok((load_spec_file(&path)?, path))
}

/// `load_spec` for `create`: also checks the spec version and names the capabilities that
/// will not be applied (for a warning).
pub fn load_spec_for_create(bundle: &Path) -> Result<(Spec, PathBuf, Vec<String>)> {
    let path = bundle.join("config.json");
    let (spec, unknown) = load_spec_file_noting(&path)?;
    check_version(&spec, &path)?;
    let ignored = unavailable_capabilities(&spec, unknown);
    Ok((spec, path, ignored))
}

/// Loads a config, leaving out capability names this runtime does not know (see
/// `load_spec_file_noting`); `exec`, `start` and `delete` read it so.
pub fn load_spec_file(path: &Path) -> Result<Spec> {
    load_spec_file_noting(path).map(|(s, _)| s)
}

/// Loads a config and returns, besides it, the capability names it lists that this runtime does
/// not know. Those are left out and the rest applied, as runc does ("ignoring unknown or
/// unavailable capabilities"): a spec written for a newer kernel or by a newer engine must still
/// run. (oci-spec's typed capability sets would otherwise refuse the whole file.)
pub fn load_spec_file_noting(path: &Path) -> Result<(Spec, Vec<String>)> {
    let bad = |detail: String| RuntimeError::Spec { path: path.to_path_buf(), detail };
    let text = std::fs::read(path).at("read", path)?;
    let mut v: serde_json::Value = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    let unknown = drop_unknown_capabilities(&mut v);
    let spec = serde_json::from_value(v).map_err(|e| bad(e.to_string()))?;
    Ok((spec, unknown))
}

/// Removes from `process.capabilities` the names oci-spec does not know; returns them, sorted,
/// once each.
fn drop_unknown_capabilities(v: &mut serde_json::Value) -> Vec<String> {
    let mut unknown = std::collections::BTreeSet::new();
    let Some(sets) = v.pointer_mut("/process/capabilities").and_then(|c| c.as_object_mut()) else { return Vec::new() };
    for list in sets.values_mut().filter_map(|l| l.as_array_mut()) {
        list.retain(|name| {
            let known = serde_json::from_value::<oci_spec::runtime::Capability>(name.clone()).is_ok();
            if !known {
                unknown.insert(name.as_str().map(String::from).unwrap_or_else(|| name.to_string()));
            }
            known
        });
    }
    unknown.into_iter().collect()
}

/// The capability names a config asks for that cannot be applied here: unknown to this runtime,
/// or newer than this kernel (/proc/sys/kernel/cap_last_cap). For the warning.
pub fn unavailable_capabilities(spec: &Spec, unknown: Vec<String>) -> Vec<String> {
    let mut all: std::collections::BTreeSet<String> = unknown.into_iter().collect();
    let last = super::caps::last_cap();
    if let Some(c) = spec.process().as_ref().and_then(|p| p.capabilities().as_ref()) {
        let sets = [c.bounding(), c.effective(), c.inheritable(), c.permitted(), c.ambient()];
        for cap in sets.into_iter().flatten().flatten() {
            let name = cap.to_string();
            if super::caps::number(&name).is_none_or(|n| n > last) {
                all.insert(if name.starts_with("CAP_") { name } else { format!("CAP_{name}") });
            }
        }
    }
    all.into_iter().collect()
}

/// The spec versions this runtime implements: 1.x. Anything else is refused with its version
/// rather than half-understood (crun does the same).
pub fn check_version(spec: &Spec, path: &Path) -> Result<()> {
    let v = spec.version();
    let major_one = v.strip_prefix("1.").is_some_and(|rest| rest.chars().next().is_some_and(|c| c.is_ascii_digit()));
    if major_one {
        return Ok(());
    }
    Err(RuntimeError::Spec {
        path: path.to_path_buf(),
        detail: format!("unsupported spec version {v:?}: burrow-runtime implements the OCI runtime spec 1.x (up to {})", state::OCI_VERSION),
    })
}

fn ns_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// Namespaces to create and to join (by path), from the config.
pub struct NsPlan {
    pub create: CloneFlags,
    pub join: Vec<(CloneFlags, PathBuf)>,
}

pub fn ns_plan(spec: &Spec) -> NsPlan {
    let mut plan = NsPlan { create: CloneFlags::empty(), join: Vec::new() };
    for ns in spec.linux().as_ref().and_then(|l| l.namespaces().as_ref()).into_iter().flatten() {
        match ns.path() {
            Some(p) => plan.join.push((ns_flag(ns.typ()), p.clone())),
            None => plan.create |= ns_flag(ns.typ()),
        }
    }
    // The user namespace is joined first: it decides what we may do with the others.
    plan.join.sort_by_key(|(f, _)| if *f == CloneFlags::CLONE_NEWUSER { 0 } else { 1 });
    plan
}

fn fork() -> Result<ForkResult> {
    // SAFETY: burrow-runtime is single-threaded (no thread is ever started before this point),
    // so the child may do anything, not only async-signal-safe calls.
    unsafe { nix::unistd::fork() }.op("fork")
}

/// clone3(2) with no flags but SIGCHLD: a fork that the kernel can extend (CLONE_INTO_CGROUP,
/// pidfds) and that skips libc's fork handlers, which a single-threaded process does not need.
/// Falls back to fork(2) on kernels before 5.3 (ENOSYS) or where seccomp hides it (EPERM).
/// Caveat: glibc's copy of the thread id in the child is the parent's (only its own fork
/// updates it), which matters only to pthread_kill/raise; the init uses neither before exec.
fn clone3_fork() -> Result<ForkResult> {
    match clone3(None) {
        Ok(r) => Ok(r),
        Err(nix::errno::Errno::ENOSYS | nix::errno::Errno::EPERM) => fork(),
        Err(e) => Err(e).op("clone3"),
    }
}

/// clone3(2) as a fork (SIGCHLD, nothing shared), born in the cgroup v2 directory `cgroup` when
/// given (CLONE_INTO_CGROUP, Linux 5.7+): the process never runs anywhere else, so nothing has to
/// move it, and it is charged to the container's limits from its first page. The same caveat as
/// `clone3_fork`; exec.rs uses it too.
pub(crate) fn clone3(cgroup: Option<RawFd>) -> std::result::Result<ForkResult, nix::errno::Errno> {
    clone3_with(CloneFlags::empty(), cgroup)
}

/// `clone3` that also creates the namespaces in `ns` for the child (the user namespace first,
/// owning the others, as the kernel does when they come together).
pub(crate) fn clone3_with(ns: CloneFlags, cgroup: Option<RawFd>) -> std::result::Result<ForkResult, nix::errno::Errno> {
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    /// From linux/sched.h (5.7); the libc crate does not export it for every target.
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let mut args = CloneArgs { flags: ns.bits() as u32 as u64, exit_signal: libc::SIGCHLD as u64, ..Default::default() };
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    // SAFETY: without CLONE_VM the child gets a copy of our memory and continues here, like fork;
    // the process is single-threaded, so no lock can be held by a thread that does not exist.
    let r = unsafe { libc::syscall(libc::SYS_clone3, &mut args as *mut CloneArgs, std::mem::size_of::<CloneArgs>()) };
    match r {
        0 => Ok(ForkResult::Child),
        pid if pid > 0 => Ok(ForkResult::Parent { child: Pid::from_raw(pid as i32) }),
        _ => Err(nix::errno::Errno::last()),
    }
}

/// A child process of ours reports failure on the channel and exits; it never returns.
fn child_exit(ch: &Channel, r: Result<()>) -> ! {
    let code = match r {
        Ok(()) => 0,
        Err(e) => {
            let _ = ch.send(&Msg::Error { code: e.code().into(), msg: e.to_string() });
            1
        }
    };
    // SAFETY: _exit skips atexit handlers and stdio flushing that belong to the parent's image.
    unsafe { libc::_exit(code) }
}

pub struct Created {
    pub state: ContainerState,
    pub spec: Spec,
    /// The intermediate's pid, already reaped.
    pub console_master: Option<OwnedFd>,
}

pub fn create(o: CreateOpts) -> Result<Created> {
    state::validate_id(&o.id)?;
    let bundle = std::fs::canonicalize(&o.bundle).at("open bundle", &o.bundle)?;
    let mut while_mapping = o.while_mapping;
    let (spec, config_path, ignored_caps) = match o.loaded {
        Some((spec, ignored)) => (spec, bundle.join("config.json"), ignored),
        None => load_spec_for_create(&bundle)?,
    };
    super::sysctl::validate(&spec, &config_path)?;
    if !ignored_caps.is_empty() {
        (o.warn)(&format!("ignoring unknown or unavailable capabilities: [{}]", ignored_caps.join(" ")));
    }
    // `process` is optional at create (runtime spec); `start` refuses a container without one.
    let proc_ = spec.process().clone().unwrap_or_default();
    let root_path = spec.root().as_ref().map(|r| r.path().clone()).unwrap_or_else(|| PathBuf::from("rootfs"));
    let rootfs = if root_path.is_absolute() { root_path } else { bundle.join(root_path) };
    let rootfs = std::fs::canonicalize(&rootfs).at("open rootfs", &rootfs)?;
    let terminal = spec.process().is_some() && proc_.terminal().unwrap_or(false);
    if terminal && o.console_socket.is_none() && o.console_fd.is_none() {
        return Err(RuntimeError::Usage("process.terminal is true: --console-socket is required to receive the terminal".into()));
    }

    crate::paths::ensure_private_dir(&o.root).map_err(|e| RuntimeError::Usage(e.to_string()))?;
    let dir = state::container_dir(&o.root, &o.id);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(RuntimeError::Exists { id: o.id.clone() }),
        Err(e) => return Err(e).at("mkdir", &dir),
    }
    let cleanup_dir = |d: &Path| {
        let _ = std::fs::remove_dir_all(d);
    };

    let result = (|| -> Result<Created> {
        let listener = state::with_short_path(&dir, "start.sock", |p| UnixListener::bind(p)).at("bind", state::start_socket(&dir))?;
        let console = match (&o.console_socket, o.console_fd) {
            (_, Some(fd)) => Some(fd),
            (Some(p), None) => Some(OwnedFd::from(std::os::unix::net::UnixStream::connect(p).at("connect to the console socket", p)?)),
            _ => None,
        };
        let mut plan = ns_plan(&spec);
        let l = spec.linux().as_ref();
        let uids = l.and_then(|l| l.uid_mappings().clone()).unwrap_or_default();
        let gids = l.and_then(|l| l.gid_mappings().clone()).unwrap_or_default();
        // A live namespace with these maps is joined instead of making one with the helpers.
        let mut shared_userns: Option<OwnedFd> = None;
        // Else, once the helpers have mapped ours: where its keeper records it, and the
        // fingerprint of /etc/subuid and /etc/subgid that lookup took before they read them.
        let mut keep: Option<(PathBuf, String, String)> = None;
        if o.share_userns && plan.create.contains(CloneFlags::CLONE_NEWUSER) && userns_share::enabled() && idmap::needs_helpers(&uids, &gids) {
            match userns_share::lookup(&o.root, &uids, &gids) {
                userns_share::Lookup::Found(fd) => {
                    plan.create.remove(CloneFlags::CLONE_NEWUSER);
                    shared_userns = Some(fd);
                }
                userns_share::Lookup::Missing { dir, key, subid } => keep = Some((dir, key, subid)),
            }
        }
        let seccomp_conn = super::seccomp::connect_listener(spec.linux().as_ref())?;
        // Here, in main: LISTEN_PID names this process (fds.rs).
        let listen_fds = super::fds::listen_fds();
        let (parent_ch, child_ch) = Channel::pair()?;
        // SAFETY: plain prctl; makes orphaned descendants (the init) our children.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };

        // On cgroup v2 with our own driver the container's cgroup exists, limits written, before
        // its first process: the intermediate is born in it, so its cgroup namespace (unshared
        // below) is rooted there, and the init it clones inherits it.
        let mut cg_plan = cgroups::plan(&spec, &o.id, o.cgroup_driver)?;
        let mut placement: Option<cgroups::Placement> = match &cg_plan {
            cgroups::Plan::Ready(p) => Some(p.placement.clone()),
            _ => None,
        };
        let mut not_born_in: Option<String> = None;
        // Nothing to join (burrow's own runs): the init is cloned directly, in its new user and
        // pid namespaces, and no intermediate is needed (see `direct_init`). Any failure falls
        // back to the intermediate, which reports it as before.
        // A shared namespace is joined by the direct init, unless the container has a pid
        // namespace: that must be made from inside the user namespace (a pid namespace belongs to
        // the user namespace of whoever unshares it), so its init is the child of the
        // intermediate, which joins the shared one as a namespace the config names.
        let mut direct = None;
        let pidns_in_shared = shared_userns.is_some() && plan.create.contains(CloneFlags::CLONE_NEWPID);
        if plan.join.is_empty() && !plan.create.contains(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME)) && !pidns_in_shared {
            let ns = plan.create & (CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWPID);
            let cg = match &cg_plan {
                cgroups::Plan::Ready(p) => Some(p.dir.as_raw_fd()),
                _ => None,
            };
            direct = clone3_with(ns, cg).ok();
        }
        if let (None, Some(fd)) = (&direct, &shared_userns) {
            plan.join.insert(0, (CloneFlags::CLONE_NEWUSER, PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))));
        }
        let direct_userns = shared_userns.as_ref().filter(|_| direct.is_some()).map(|fd| fd.as_raw_fd());
        let forked = match (direct, &cg_plan) {
            (Some(f), _) => Ok(f),
            (None, cgroups::Plan::Ready(p)) => match clone3(Some(p.dir.as_raw_fd())) {
                Ok(r) => Ok(r),
                Err(e) if cgroups::fall_back_from_clone_into(e) => {
                    not_born_in = Some(format!("clone3 with CLONE_INTO_CGROUP: {}", e.desc()));
                    fork()
                }
                Err(e) => Err(e).op("clone3(CLONE_INTO_CGROUP)"),
            },
            (None, _) => fork(),
        };
        let direct = direct.is_some();
        let forked = match forked {
            Ok(f) => f,
            Err(e) => {
                if let Some(p) = &placement {
                    cgroups::remove(p);
                }
                return Err(e);
            }
        };
        let child = match forked {
            ForkResult::Child => {
                drop(parent_ch);
                // The cgroup's directory is main's business.
                drop(std::mem::replace(&mut cg_plan, cgroups::Plan::None));
                let ctx = InitArgs {
                    spec: &spec,
                    rootfs: &rootfs,
                    listener: &listener,
                    console: console.as_ref().map(|c| c.as_raw_fd()),
                    no_pivot: o.no_pivot,
                    preserve_fds: o.preserve_fds,
                    listen_fds,
                    seccomp_conn: seccomp_conn.as_ref().map(|c| c.as_raw_fd()),
                    userns: direct_userns,
                };
                let r = if direct { direct_init(&child_ch, &plan, &ctx) } else { intermediate(&child_ch, &plan, &ctx) };
                child_exit(&child_ch, r);
            }
            ForkResult::Parent { child } => child,
        };
        drop(child_ch);
        drop(seccomp_conn);
        // The child's id maps, and its cgroup before it unshares its cgroup namespace, which is
        // rooted wherever it is then.
        let mut place = |pid: i32| -> Result<()> {
            if plan.create.contains(CloneFlags::CLONE_NEWUSER) {
                let during = while_mapping.take();
                idmap::write_while(pid, &uids, &gids, || during.into_iter().for_each(|f| f()))?;
                if let Some((dir, key, subid)) = keep.take() {
                    userns_share::keep(&dir, &key, &subid, pid);
                }
            }
            placement = match std::mem::replace(&mut cg_plan, cgroups::Plan::None) {
                cgroups::Plan::None => None,
                cgroups::Plan::Ready(p) if not_born_in.is_none() => Some(cgroups::born_in(p)),
                cgroups::Plan::Ready(p) => {
                    // Moved in, or (no limits) left out with the cgroup removed.
                    placement = None;
                    cgroups::enter(p, pid, not_born_in.take())?
                }
                cgroups::Plan::AtPid => cgroups::place_at_pid(&spec, &o.id, pid, o.cgroup_driver)?,
            };
            parent_ch.send(&Msg::MapsDone)
        };
        let init_pid = if direct {
            // Main knows the pid at once: the maps are written while the child makes its other
            // namespaces. When they fail because the child failed first, its error is the one.
            match place(child.as_raw()) {
                Ok(()) => Ok(child.as_raw()),
                Err(e) => Err(parent_ch.try_recv_error().unwrap_or(e)),
            }
        } else {
            (|| -> Result<i32> {
                loop {
                    match parent_ch.recv()? {
                        Some(Msg::UsernsReady { pid }) => place(pid)?,
                        Some(Msg::InitPid { pid }) => return Ok(pid),
                        Some(Msg::Error { code, msg }) => return Err(RuntimeError::Remote { code, msg }),
                        Some(m) => return Err(RuntimeError::Child(format!("protocol error: unexpected {m:?}"))),
                        None => return Err(RuntimeError::Child("the intermediate process exited before starting the container".into())),
                    }
                }
            })()
        };
        if init_pid.is_err() {
            // It may be waiting for a message that will never come.
            let _ = kill(child, Signal::SIGKILL);
        }
        if !direct || init_pid.is_err() {
            let _ = waitpid(child, None);
        }
        let init_pid = match init_pid {
            Ok(p) => p,
            Err(e) => {
                if let Some(p) = &placement {
                    cgroups::remove(p);
                }
                return Err(e);
            }
        };
        if let Some(f) = while_mapping.take() {
            f();
        }
        let kill_init = || {
            let _ = kill(Pid::from_raw(init_pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(init_pid), None);
        };

        let st = ContainerState {
            id: o.id.clone(),
            pid: init_pid,
            bundle: bundle.clone(),
            rootfs: rootfs.clone(),
            created: state::now_rfc3339(),
            // runc leaves it empty too; a passwd look-up would cost NSS calls on every start.
            owner: String::new(),
            annotations: spec.annotations().clone().unwrap_or_default().into_iter().collect(),
            init_start_time: state::proc_start_time(init_pid).unwrap_or(0),
            has_pid_ns: plan.create.contains(CloneFlags::CLONE_NEWPID) || plan.join.iter().any(|(f, _)| *f == CloneFlags::CLONE_NEWPID),
            config_path: config_path.clone(),
            cgroups: placement.clone(),
        };
        let steps = (|| -> Result<Option<OwnedFd>> {
            st.save(&o.root)?;
            // Hooks before start see the container as `created` (what runtime-tools checks).
            let mut state_json = st.oci_json(&o.root);
            state_json["status"] = "created".into();
            let state_json = state_json.to_string();
            // An init that failed meanwhile (its root) has closed its end: its error, not ours.
            parent_ch.send(&Msg::Go { state: state_json.clone() }).map_err(|e| parent_ch.try_recv_error().unwrap_or(e))?;
            // Prestart (deprecated) and createRuntime hooks run during `create`, in the runtime
            // namespace, when the init has made the container's mounts and before its
            // pivot_root, as runc does (runtime spec 1.0.2+): podman's and the CRI's network
            // hooks need the created netns before `start`, device hooks the mounted rootfs. A
            // failing one fails `create` and the container is removed.
            let h = spec.hooks().as_ref();
            let mut runtime_hooks = || -> Result<()> {
                hooks::run(h.and_then(|h| h.prestart().as_ref()), &state_json)?;
                hooks::run(h.and_then(|h| h.create_runtime().as_ref()), &state_json)
            };
            // Until then the init may ask for idmapped mount trees (idmount.rs), and for the hooks.
            super::idmount::serve_until_created(&parent_ch, init_pid, &mut runtime_hooks)?;
            if let Some(p) = &o.pid_file {
                write_pid_file(p, init_pid)?;
            }
            Ok(None)
        })();
        match steps {
            Ok(master) => Ok(Created { state: st, spec: spec.clone(), console_master: master }),
            Err(e) => {
                kill_init();
                if let Some(p) = &placement {
                    cgroups::remove(p);
                }
                Err(e)
            }
        }
    })();
    if result.is_err() {
        cleanup_dir(&dir);
    }
    result
}

pub fn write_pid_file(p: &Path, pid: i32) -> Result<()> {
    // Atomic, as runc does: readers never see a half-written pid.
    let tmp = p.with_extension("tmp-burrow");
    std::fs::write(&tmp, pid.to_string()).at("write pid file", &tmp)?;
    std::fs::rename(&tmp, p).at("write pid file", p)
}

struct InitArgs<'a> {
    spec: &'a Spec,
    rootfs: &'a Path,
    listener: &'a UnixListener,
    console: Option<RawFd>,
    no_pivot: bool,
    preserve_fds: i32,
    /// Socket-activation fds passed to main (fds.rs), before the preserved ones.
    listen_fds: i32,
    /// Connected to the seccomp listener, when the profile has notifying rules.
    seccomp_conn: Option<RawFd>,
    /// The shared user namespace (userns_share.rs) the direct init joins first.
    userns: Option<RawFd>,
}

/// The init cloned directly by main, born in its new user and pid namespaces (nothing to join:
/// no intermediate is needed). While main writes its id maps with the setuid helpers, it makes
/// its other namespaces and builds the seccomp filter, work that used to wait for the maps;
/// then it becomes root and unshares its cgroup namespace, once main has put it in its cgroup.
fn direct_init(ch: &Channel, plan: &NsPlan, a: &InitArgs) -> Result<()> {
    process::set_name("burrow:init");
    // If main dies now, nobody would ever write our maps: die with it.
    // SAFETY: plain prctl.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    if let Some(fd) = a.userns {
        // SAFETY: a descriptor main opened and keeps open until we are cloned.
        setns(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }, CloneFlags::CLONE_NEWUSER).op("setns into the shared user namespace")?;
        become_root()?;
    }
    let rest = plan.create & !(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWCGROUP);
    if !rest.is_empty() {
        unshare(rest).op(format!("unshare({rest:?})"))?;
    }
    let mut filter = process::build_seccomp(a.spec.linux().as_ref())?;
    process::compile_seccomp(&mut filter)?;
    ch.expect("the id maps", |m| *m == Msg::MapsDone)?;
    if plan.create.contains(CloneFlags::CLONE_NEWUSER) {
        become_root()?;
    }
    if plan.create.contains(CloneFlags::CLONE_NEWCGROUP) {
        unshare(CloneFlags::CLONE_NEWCGROUP).op("unshare(CLONE_NEWCGROUP)")?;
    }
    // SAFETY: plain prctl; the init must outlive `create`, so no parent-death signal.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
    let in_userns = plan.create.contains(CloneFlags::CLONE_NEWUSER) || a.userns.is_some() || in_non_initial_userns();
    init(ch, plan, a, in_userns, Some(filter))
}

fn intermediate(ch: &Channel, plan: &NsPlan, a: &InitArgs) -> Result<()> {
    process::set_name("burrow:inter");
    // If main dies now, nobody would ever write our maps: die with it.
    // SAFETY: plain prctl.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    for (flag, path) in &plan.join {
        let f = std::fs::File::open(path).at("open namespace", path)?;
        setns(f, *flag).at("setns", path)?;
        if *flag == CloneFlags::CLONE_NEWUSER {
            become_root()?;
        }
    }
    let new_userns = plan.create.contains(CloneFlags::CLONE_NEWUSER);
    if new_userns {
        unshare(CloneFlags::CLONE_NEWUSER).op("unshare(CLONE_NEWUSER)")?;
    }
    // Main now writes our id maps and puts us in the container's cgroup, before we unshare the
    // cgroup namespace: its root is then the container's own cgroup.
    ch.send(&Msg::UsernsReady { pid: nix::unistd::getpid().as_raw() })?;
    ch.expect("the id maps", |m| *m == Msg::MapsDone)?;
    if new_userns {
        become_root()?;
    }
    let rest = plan.create & !CloneFlags::CLONE_NEWUSER;
    if !rest.is_empty() {
        unshare(rest).op(format!("unshare({rest:?})"))?;
    }
    match clone3_fork()? {
        ForkResult::Child => {
            // SAFETY: plain prctl; the init must outlive `create`, so no parent-death signal.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
            let in_userns =
                plan.create.contains(CloneFlags::CLONE_NEWUSER) || plan.join.iter().any(|(f, _)| *f == CloneFlags::CLONE_NEWUSER) || in_non_initial_userns();
            let r = init(ch, plan, a, in_userns, None);
            child_exit(ch, r);
        }
        ForkResult::Parent { child } => {
            ch.send(&Msg::InitPid { pid: child.as_raw() })?;
            Ok(())
        }
    }
}

/// Whether this process already runs in a user namespace other than the host's (rootless
/// conformance runs do: `unshare -r` around the runtime).
fn in_non_initial_userns() -> bool {
    std::fs::read_to_string("/proc/self/uid_map").map(|m| m.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"]).unwrap_or(false)
}

fn become_root() -> Result<()> {
    nix::unistd::setresgid(0.into(), 0.into(), 0.into()).op("setresgid(0) in the user namespace (is container gid 0 mapped?)")?;
    nix::unistd::setresuid(0.into(), 0.into(), 0.into()).op("setresuid(0) in the user namespace (is container uid 0 mapped?)")
}

/// The container's init; `filter` is the seccomp filter when the caller built it already.
fn init(ch: &Channel, plan: &NsPlan, a: &InitArgs, in_userns: bool, filter: Option<Option<super::seccomp::Filter>>) -> Result<()> {
    process::set_name("burrow:init");
    // First: the config's seccomp filter may deny close_range, and /proc may be gone later.
    super::fds::pass_through(a.listen_fds + a.preserve_fds)?;
    let spec = a.spec;
    let has = |f: CloneFlags| plan.create.contains(f) || plan.join.iter().any(|(j, _)| *j == f);
    let ctx = MountCtx {
        rootfs: a.rootfs,
        in_userns,
        new_netns: has(CloneFlags::CLONE_NEWNET),
        new_pidns: has(CloneFlags::CLONE_NEWPID),
        new_ipcns: has(CloneFlags::CLONE_NEWIPC),
        new_cgroupns: has(CloneFlags::CLONE_NEWCGROUP),
        channel: Some(ch),
    };
    if let Some(p) = spec.process() {
        process::set_oom_score_adj(p)?;
    }
    // The root (a one-file image's FUSE daemon started and serving, the union on it) while main
    // records the state and sends `go`: nothing outside our mount namespace sees it, and if
    // main gives up, the end of our pid namespace takes the daemon along.
    if has(CloneFlags::CLONE_NEWNS) {
        mounts::prepare_root(&ctx, spec)?;
    }
    let state_json = match ch.recv()? {
        Some(Msg::Go { state }) => state,
        Some(m) => return Err(RuntimeError::Child(format!("protocol error: expected go, got {m:?}"))),
        // main gave up (a hook failed, or it was killed): nothing to do.
        None => unsafe { libc::_exit(1) },
    };
    if has(CloneFlags::CLONE_NEWNS) {
        mounts::mount_all(&ctx, spec)?;
    }
    let h = spec.hooks().as_ref();
    let nonempty = |v: Option<&Vec<oci_spec::runtime::Hook>>| v.is_some_and(|v| !v.is_empty());
    if nonempty(h.and_then(|h| h.prestart().as_ref())) || nonempty(h.and_then(|h| h.create_runtime().as_ref())) {
        ch.send(&Msg::RuntimeHooks)?;
        match ch.recv()? {
            Some(Msg::HooksDone) => {}
            Some(m) => return Err(RuntimeError::Child(format!("protocol error: expected hooks-done, got {m:?}"))),
            // A hook failed: main removes the container.
            None => unsafe { libc::_exit(1) },
        }
    }
    hooks::run(h.and_then(|h| h.create_container().as_ref()), &state_json)?;
    if has(CloneFlags::CLONE_NEWNS) {
        if a.no_pivot {
            mounts::move_root(a.rootfs)?;
        } else {
            mounts::pivot(a.rootfs)?;
        }
        // Before finish: readonlyPaths makes /proc/sys read-only (runc's order).
        super::sysctl::write(spec)?;
        mounts::finish(spec)?;
    } else {
        nix::unistd::chroot(a.rootfs).at("chroot", a.rootfs)?;
        nix::unistd::chdir("/").at("chdir", "/")?;
        super::sysctl::write(spec)?;
    }
    if has(CloneFlags::CLONE_NEWNET) && plan.create.contains(CloneFlags::CLONE_NEWNET) {
        // A new network namespace starts with lo down; every runtime brings it up.
        super::net::loopback_up()?;
    }
    if let Some(h) = spec.hostname() {
        if !has(CloneFlags::CLONE_NEWUTS) {
            return Err(RuntimeError::Usage("a hostname is set but the container has no UTS namespace".into()));
        }
        nix::unistd::sethostname(h).op(format!("sethostname {h}"))?;
    }
    if let Some(d) = spec.domainname() {
        if !has(CloneFlags::CLONE_NEWUTS) {
            return Err(RuntimeError::Usage("a domainname is set but the container has no UTS namespace".into()));
        }
        // SAFETY: pointer and length of a valid byte string.
        if unsafe { libc::setdomainname(d.as_ptr() as *const libc::c_char, d.len()) } != 0 {
            return Err(nix::errno::Errno::last()).op(format!("setdomainname {d}"));
        }
    }
    let Some(p) = spec.process().as_ref() else {
        // No process: the container exists (created) but has nothing to start.
        ch.send(&Msg::Created)?;
        // `start` finds nothing to run; the container stops.
        let _ = a.listener.accept();
        unsafe { libc::_exit(0) }
    };
    if let Some(c) = a.console {
        let size = p.console_size().as_ref().map(|b| (b.height() as u16, b.width() as u16));
        tty::setup(c, size)?;
        let _ = nix::unistd::close(c);
    }
    process::set_rlimits(p)?;
    let env = super::fds::with_listen_env(process::env(p), a.listen_fds);
    let args = p.args().clone().unwrap_or_default();
    let arg0 = args.first().cloned().ok_or_else(|| RuntimeError::Spec { path: "config.json".into(), detail: "process.args is empty".into() })?;
    let nnp = p.no_new_privileges().unwrap_or(false);
    let filter = match filter {
        Some(f) => f,
        None => process::build_seccomp(spec.linux().as_ref())?,
    };
    // A seccomp listener gets its notification fd during `create`: clients (podman, CRI) wait
    // for it between create and start, so the filter is loaded now even with no_new_privs
    // (runc 1.1 does the same). Without a listener and with no_new_privs it is loaded as late as
    // possible, right before exec, so that our own last steps need no syscalls of the profile.
    let notify_early = nnp && a.seccomp_conn.is_some();
    if notify_early {
        process::set_no_new_privs()?;
    }
    if !nnp || notify_early {
        // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it while we have it.
        process::load_seccomp(&filter)?;
        process::send_seccomp_listener(&filter, a.seccomp_conn, spec.linux().as_ref(), &state_json)?;
    }
    process::switch_user_keeping_groups(p, process::keeps_original_groups(spec))?;
    let cwd = p.cwd();
    nix::unistd::chdir(cwd.as_path()).at("chdir to the process cwd", cwd.as_path())?;
    let exe = process::find_executable(&arg0, &env)?;
    // Switching to another host uid (keep-id, a non-root user) made us non-dumpable, which keeps
    // the owner's network helper and port forwarder out of /proc/PID/ns (ptrace access is
    // checked against the host's user namespace until exec). The exec makes us dumpable again
    // anyway, as an ordinary process of the container's user namespace.
    // SAFETY: plain prctl; a seccomp profile that refuses it only costs the network.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
    ch.send(&Msg::Created)?;

    // Wait for `start`: it connects to start.sock. An accept() needs no /proc and no path.
    let (conn, _) = loop {
        match a.listener.accept() {
            Ok(c) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).op("wait for start"),
        }
    };
    // From here on, failures are told to `start` on the connection, which it reads until EOF:
    // the close-on-exec socket closes exactly when the container's program replaces us.
    let r = (|| -> Result<std::convert::Infallible> {
        // In the container, with its process's environment when a hook has none of its own,
        // as runc (whose hooks inherit the init's environment, the process's by then).
        hooks::run_with_env(spec.hooks().as_ref().and_then(|h| h.start_container().as_ref()), &state_json, &env)?;
        if nnp && !notify_early {
            process::set_no_new_privs()?;
            process::load_seccomp(&filter)?;
        }
        Err(process::exec(&exe, &args, &env))
    })();
    let e = match r {
        Err(e) => e,
        Ok(never) => match never {},
    };
    use std::io::Write;
    let _ = (&conn).write_all(serde_json::json!({ "code": e.code(), "msg": e.to_string() }).to_string().as_bytes());
    Err(e)
}

/// `start`: connects to the init's start socket, which lets it exec; then removes the socket
/// so that the state reads `running`.
pub fn start(root: &Path, id: &str) -> Result<ContainerState> {
    let st = ContainerState::load(root, id)?;
    let status = st.status(root);
    if status != state::Status::Created {
        return Err(RuntimeError::BadState { id: id.into(), op: "start", status: status.as_str().into() });
    }
    let sock = state::start_socket(&state::container_dir(root, id));
    let mut conn =
        state::with_short_path(&state::container_dir(root, id), "start.sock", |p| std::os::unix::net::UnixStream::connect(p)).at("connect", &sock)?;
    std::fs::remove_file(&sock).at("remove", &sock)?;
    // Wait until the program runs (EOF) or the init reports why it could not.
    let mut answer = String::new();
    use std::io::Read;
    let _ = conn.read_to_string(&mut answer);
    if !answer.is_empty() {
        let v: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
        return Err(RuntimeError::Remote { code: v["code"].as_str().unwrap_or("EINIT_FAILED").into(), msg: v["msg"].as_str().unwrap_or(&answer).into() });
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_capabilities_are_left_out_and_named() {
        let mut v = serde_json::json!({"process": {"capabilities": {
            "bounding": ["CAP_CHOWN", "CAP_NEW_THING", "CAP_KILL"],
            "effective": ["CAP_NEW_THING", "CAP_OTHER"],
            "ambient": []
        }}});
        assert_eq!(drop_unknown_capabilities(&mut v), vec!["CAP_NEW_THING", "CAP_OTHER"]);
        assert_eq!(v["process"]["capabilities"]["bounding"], serde_json::json!(["CAP_CHOWN", "CAP_KILL"]));
        assert_eq!(v["process"]["capabilities"]["effective"], serde_json::json!([]));
        assert!(drop_unknown_capabilities(&mut serde_json::json!({"process": {}})).is_empty());
    }

    #[test]
    fn spec_versions() {
        let with = |v: &str| {
            let mut s = Spec::default();
            s.set_version(v.into());
            check_version(&s, Path::new("config.json"))
        };
        for ok in ["1.0.0", "1.0.2-dev", "1.1.0", "1.2.0", "1.3.0"] {
            assert!(with(ok).is_ok(), "{ok}");
        }
        for bad in ["2.0.0", "0.5.0", "garbage", "", "1", "1.x"] {
            let e = with(bad).unwrap_err().to_string();
            assert!(e.contains("unsupported spec version"), "{bad}: {e}");
        }
    }
}
