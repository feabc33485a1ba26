//! `unpack [--uidmap C:H:S]... [--gidmap C:H:S]... [--whiteouts overlay|apply] [--jobs N]`
//! reads a JSON array of jobs on stdin and runs them inside a user namespace with the given
//! mapping, so that layer files get the owners the image says (DESIGN.md, "Identity"):
//!   {"blob": PATH, "dest": DIR, "diffId": "sha256:..."}   extract a layer into DIR
//!   {"blob": PATH, "dest": DIR, "diffId": ..., "follow": {"blobFd": N, "progressFd": M,
//!    "size": BYTES}}                                       the same from a blob still being
//!                                                          downloaded: read from inherited fd N,
//!                                                          as far as the lengths announced on
//!                                                          fd M say (unpack.rs, `Following`)
//!   {"remove": PATH}                                       delete a tree (owned by mapped ids)
//!   {"layers": [DIR, ...], "dest": DIR}                    the copy driver's rootfs: layers
//!                                                          (bottom first) copied into DIR with
//!                                                          whiteouts applied (runtime/rootfs.rs)
//!   {"layers": [...], "dest": DIR, "owners": "caller"}     the same with every entry owned by
//!                                                          the caller (container 0 here), set-id
//!                                                          bits dropped (`burrow bundle`)
//!   {"pack": {"upper": DIR} | {"entries": [...]},          make a layer file OUT (image/pack.rs):
//!    "out": OUT, "compress": "gzip"|"none"}                an overlay upper directory, or COPY's
//!                                                          files; stats {diffId, digest, size,
//!                                                          entries}
//! One JSON line per job on stdout: {"index", "ok", "stats"} or {"index", "ok": false, "code",
//! "error"}. Layers are extracted in parallel, one thread per core: threads are fine here, the
//! namespace is entered before any is started. An extracted layer is synced to disk (syncfs)
//! before it is reported: the caller renames it into place and trusts it after that.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};

use burrow_core::error::Coded;
use burrow_core::image::pack::{pack_entries, pack_upper, Compress, PackEntry, PackError, PackStats};
use burrow_core::image::unpack::{unpack, unpack_following, Stats, UnpackError, Whiteouts};
use burrow_core::runtime::error::{Result, RuntimeError, SysCtx};
use burrow_core::runtime::idmap;
use burrow_core::runtime::sync::{Channel, Msg};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::ForkResult;
use oci_spec::runtime::LinuxIdMapping;
use serde::Deserialize;

use super::flags;
use crate::args::Flag;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Job {
    blob: Option<PathBuf>,
    dest: Option<PathBuf>,
    diff_id: Option<String>,
    remove: Option<PathBuf>,
    layers: Option<Vec<PathBuf>>,
    follow: Option<Follow>,
    pack: Option<PackWhat>,
    out: Option<PathBuf>,
    compress: Option<Compress>,
    /// "keep" (default) or "caller", for `layers` jobs.
    owners: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PackWhat {
    upper: Option<PathBuf>,
    entries: Option<Vec<PackEntry>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Follow {
    blob_fd: i32,
    progress_fd: i32,
    size: u64,
}

/// Checks that jobs name inherited descriptors (3 and up, open, each once): each is owned, and
/// closed, by the one job that names it.
fn check_fds(jobs: &[Job]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for f in jobs.iter().filter_map(|j| j.follow.as_ref()) {
        for fd in [f.blob_fd, f.progress_fd] {
            // SAFETY: F_GETFD only reads the descriptor's flags.
            if fd < 3 || !seen.insert(fd) || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
                return Err(RuntimeError::Usage(format!("follow: descriptor {fd} is not an inherited, open descriptor of its own")));
            }
        }
    }
    Ok(())
}

/// Extracts one layer and makes it durable: the caller renames the directory into place and
/// trusts it once this returns, so its contents must be on disk first. One syncfs, not an fsync
/// per file: it writes back everything at once and waits once.
fn extract(blob: &Path, dest: &Path, mode: Whiteouts, diff_id: Option<&str>, follow: Option<&Follow>) -> std::result::Result<Stats, UnpackError> {
    let st = match follow {
        // SAFETY: check_fds made sure each descriptor is open and named by this job only.
        Some(f) => unpack_following(blob, unsafe { File::from_raw_fd(f.blob_fd) }, unsafe { File::from_raw_fd(f.progress_fd) }, f.size, dest, mode, diff_id)?,
        None => unpack(blob, dest, mode, diff_id)?,
    };
    let sys = |errno| UnpackError::Sys { entry: ".".into(), op: "syncfs", errno };
    let d = File::open(dest).map_err(|e| sys(nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))))?;
    // SAFETY: a valid descriptor.
    if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
        return Err(sys(nix::errno::Errno::last()));
    }
    Ok(st)
}

/// A `pack` job: one layer file from an upper directory or from COPY's entries.
fn pack(job: &Job) -> std::result::Result<PackStats, PackError> {
    let out = job.out.as_deref().ok_or_else(|| PackError::Input("a pack job needs \"out\"".into()))?;
    let c = job.compress.unwrap_or(Compress::Gzip);
    match job.pack.as_ref() {
        Some(PackWhat { upper: Some(u), entries: None }) => pack_upper(u, out, c),
        Some(PackWhat { upper: None, entries: Some(e) }) => pack_entries(e, out, c),
        _ => Err(PackError::Input("a pack job needs {\"upper\": DIR} or {\"entries\": [...]}".into())),
    }
}

fn parse_map(s: &str) -> Result<LinuxIdMapping> {
    let f: Vec<u32> = s
        .split(':')
        .map(|x| x.parse())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| RuntimeError::Usage(format!("bad id mapping {s:?}: want CONTAINER:HOST:SIZE")))?;
    if f.len() != 3 {
        return Err(RuntimeError::Usage(format!("bad id mapping {s:?}: want CONTAINER:HOST:SIZE")));
    }
    let v = serde_json::json!({ "containerID": f[0], "hostID": f[1], "size": f[2] });
    serde_json::from_value(v).map_err(|e| RuntimeError::Usage(e.to_string()))
}

fn run_jobs(jobs: Vec<Job>, mode: Whiteouts, threads: usize) -> bool {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let ok = std::sync::atomic::AtomicBool::new(true);
    let out = std::sync::Mutex::new(());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1).min(jobs.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(job) = jobs.get(i) else { break };
                let line = match (job.remove.as_ref(), job.blob.as_ref(), job.dest.as_ref()) {
                    _ if job.pack.is_some() => match pack(job) {
                        Ok(st) => serde_json::json!({ "index": i, "ok": true, "stats": st }),
                        Err(e) => serde_json::json!({ "index": i, "ok": false, "code": e.code(), "error": e.to_string() }),
                    },
                    (Some(p), _, _) => match std::fs::remove_dir_all(p) {
                        Ok(()) => serde_json::json!({ "index": i, "ok": true }),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({ "index": i, "ok": true }),
                        Err(e) => serde_json::json!({ "index": i, "ok": false, "code": "EREMOVE", "error": format!("remove {}: {e}", p.display()) }),
                    },
                    (None, None, Some(d)) if job.layers.is_some() => {
                        use burrow_core::runtime::rootfs::{assemble_copy_as, Owners};
                        let owners = match job.owners.as_deref() {
                            None | Some("keep") => Some(Owners::Keep),
                            Some("caller") => Some(Owners::Caller),
                            Some(_) => None,
                        };
                        match owners.map(|o| assemble_copy_as(job.layers.as_deref().unwrap_or_default(), d, o)) {
                            Some(Ok(st)) => serde_json::json!({ "index": i, "ok": true, "stats": st }),
                            Some(Err(e)) => serde_json::json!({ "index": i, "ok": false, "code": e.code(), "error": e.to_string() }),
                            None => serde_json::json!({ "index": i, "ok": false, "code": "EUSAGE", "error": "\"owners\" is keep or caller" }),
                        }
                    }
                    (None, Some(b), Some(d)) => match extract(b, d, mode, job.diff_id.as_deref(), job.follow.as_ref()) {
                        Ok(st) => serde_json::json!({ "index": i, "ok": true, "stats": st }),
                        Err(e) => serde_json::json!({ "index": i, "ok": false, "code": e.code(), "error": e.to_string() }),
                    },
                    _ => serde_json::json!({ "index": i, "ok": false, "code": "EUSAGE", "error": "a job needs blob and dest, layers and dest, or remove" }),
                };
                if line["ok"] != true {
                    ok.store(false, std::sync::atomic::Ordering::SeqCst);
                }
                let _g = out.lock();
                println!("{line}");
            });
        }
    });
    ok.load(std::sync::atomic::Ordering::SeqCst)
}

pub fn main(args: &[String]) -> Result<i32> {
    let p = flags(args, &[Flag("uidmap", &[], true), Flag("gidmap", &[], true), Flag("whiteouts", &[], true), Flag("jobs", &["j"], true)])?;
    let uids = p.values("uidmap").iter().map(|s| parse_map(s)).collect::<Result<Vec<_>>>()?;
    let gids = p.values("gidmap").iter().map(|s| parse_map(s)).collect::<Result<Vec<_>>>()?;
    let mode = match p.value("whiteouts").unwrap_or("overlay") {
        "overlay" => Whiteouts::Overlay,
        "apply" => Whiteouts::Apply,
        o => return Err(RuntimeError::Usage(format!("--whiteouts {o}: want overlay or apply"))),
    };
    let threads = p.value("jobs").and_then(|j| j.parse().ok()).unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).op("read jobs from stdin")?;
    let jobs: Vec<Job> = serde_json::from_str(&input).map_err(|e| RuntimeError::Usage(format!("jobs on stdin: {e}")))?;
    check_fds(&jobs)?;
    if uids.is_empty() && gids.is_empty() {
        return Ok(if run_jobs(jobs, mode, threads) { 0 } else { 1 });
    }
    let (parent, child) = Channel::pair()?;
    let runtime = nix::unistd::getpid();
    // SAFETY: single-threaded until the child has entered its namespace.
    match unsafe { nix::unistd::fork() }.op("fork")? {
        ForkResult::Child => {
            drop(parent);
            // Dies with its parent: a caller that kills the runtime (Ctrl-C of `burrow bundle`,
            // which then removes the tree) must not leave this one writing into it. The parent
            // is single-threaded, so its death, not a thread's, is what this follows.
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            if nix::unistd::getppid() != runtime {
                // SAFETY: leave at once; the parent is already gone.
                unsafe { libc::_exit(2) }
            }
            burrow_core::runtime::process::set_name("burrow:unpack");
            let r = (|| -> Result<bool> {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).op("unshare(CLONE_NEWUSER)")?;
                child.send(&Msg::UsernsReady { pid: nix::unistd::getpid().as_raw() })?;
                child.expect("the id maps", |m| *m == Msg::MapsDone)?;
                nix::unistd::setresgid(0.into(), 0.into(), 0.into()).op("setresgid(0)")?;
                nix::unistd::setresuid(0.into(), 0.into(), 0.into()).op("setresuid(0)")?;
                Ok(run_jobs(jobs, mode, threads))
            })();
            let code = match r {
                Ok(true) => 0,
                Ok(false) => 1,
                Err(e) => {
                    // The channel (inherited across the fork) carries it with its code.
                    crate::status::error(&e);
                    eprintln!("burrow-runtime unpack: {e}");
                    2
                }
            };
            // SAFETY: leave without the parent's atexit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child: pid } => {
            drop(child);
            let maps = (|| -> Result<()> {
                match parent.recv()? {
                    Some(Msg::UsernsReady { pid }) => idmap::write(pid, &uids, &gids)?,
                    _ => return Err(RuntimeError::Child("the unpack process exited before entering its user namespace".into())),
                }
                parent.send(&Msg::MapsDone)
            })();
            if let Err(e) = maps {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = waitpid(pid, None);
                return Err(e);
            }
            match waitpid(pid, None).op("wait")? {
                WaitStatus::Exited(_, c) => Ok(c),
                ws => Err(RuntimeError::Child(format!("the unpack process ended with {ws:?}"))),
            }
        }
    }
}
