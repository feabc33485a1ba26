//! `unpack [--uidmap C:H:S]... [--gidmap C:H:S]... [--whiteouts overlay|apply] [--jobs N]`
//! reads a JSON array of jobs on stdin and runs them inside a user namespace with the given
//! mapping, so that layer files get the owners the image says (DESIGN.md, "Identity"):
//!   {"blob": PATH, "dest": DIR, "diffId": "sha256:..."}   extract a layer into DIR
//!   {"remove": PATH}                                       delete a tree (owned by mapped ids)
//!   {"layers": [DIR, ...], "dest": DIR}                    the copy driver's rootfs: layers
//!                                                          (bottom first) copied into DIR with
//!                                                          whiteouts applied (runtime/rootfs.rs)
//! One JSON line per job on stdout: {"index", "ok", "stats"} or {"index", "ok": false, "code",
//! "error"}. Layers are extracted in parallel, one thread per core: threads are fine here, the
//! namespace is entered before any is started.

use std::io::Read;
use std::path::PathBuf;

use burrow_core::error::Coded;
use burrow_core::image::unpack::{unpack, Whiteouts};
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
}

fn parse_map(s: &str) -> Result<LinuxIdMapping> {
    let f: Vec<u32> = s.split(':').map(|x| x.parse()).collect::<std::result::Result<_, _>>().map_err(|_| RuntimeError::Usage(format!("bad id mapping {s:?}: want CONTAINER:HOST:SIZE")))?;
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
                    (Some(p), _, _) => match std::fs::remove_dir_all(p) {
                        Ok(()) => serde_json::json!({ "index": i, "ok": true }),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({ "index": i, "ok": true }),
                        Err(e) => serde_json::json!({ "index": i, "ok": false, "code": "EREMOVE", "error": format!("remove {}: {e}", p.display()) }),
                    },
                    (None, None, Some(d)) if job.layers.is_some() => match burrow_core::runtime::rootfs::assemble_copy(job.layers.as_deref().unwrap_or_default(), d) {
                        Ok(st) => serde_json::json!({ "index": i, "ok": true, "stats": st }),
                        Err(e) => serde_json::json!({ "index": i, "ok": false, "code": e.code(), "error": e.to_string() }),
                    },
                    (None, Some(b), Some(d)) => match unpack(b, d, mode, job.diff_id.as_deref()) {
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
    if uids.is_empty() && gids.is_empty() {
        return Ok(if run_jobs(jobs, mode, threads) { 0 } else { 1 });
    }
    let (parent, child) = Channel::pair()?;
    // SAFETY: single-threaded until the child has entered its namespace.
    match unsafe { nix::unistd::fork() }.op("fork")? {
        ForkResult::Child => {
            drop(parent);
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
