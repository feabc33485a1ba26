//! The `burrow` launcher (docs/run-plans.md §1): the user's `burrow` command as a small native program.
//! For `burrow run --rm ... FILE.sqfs CMD` with flags it knows it runs the container from a *run
//! plan* that the TypeScript CLI wrote on an earlier run with the same flags and inputs, filling
//! in only the per-run values (id, name, times, the command, --hpc's host variables); for
//! anything else, or when the plan is missing or stale, it execs Node's CLI unchanged. A miss
//! costs only time: Node then does the run as ever (and writes a fresh plan).
//!
//! Why it exists: Node's own start is longer than `ch-run`'s whole start of a container. So this
//! does as little as it can: one process, no threads, the plan read once, the runtime started by
//! fork+exec, its status read from fd 3 as the CLI reads it (ts/runtime/client.ts).

pub mod events;
pub mod grammar;
pub mod plan;
pub mod spawn;

use std::ffi::{CString, OsString};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use plan::{Host, Plan, Values};

/// Errors of the launcher's own work: each ends in a miss (Node runs) or, for the fallback's
/// exec, in status 125.
#[derive(Debug, thiserror::Error)]
pub enum LauncherError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Miss(String),
}

fn io(op: &'static str, path: impl AsRef<Path>) -> impl FnOnce(std::io::Error) -> LauncherError {
    let path = path.as_ref().display().to_string();
    move |source| LauncherError::Io { op, path, source }
}

/// Whether `BURROW_DEBUG` asks for the plan's one line.
fn debug() -> bool {
    std::env::var_os("BURROW_DEBUG").is_some_and(|v| !v.is_empty())
}

/// The launcher's entry: never returns.
pub fn main() -> ! {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "run") {
        match try_plan(&args) {
            Ok(code) => std::process::exit(code),
            Err(why) => {
                if debug() {
                    eprintln!("burrow: debug: run plan: miss: {why}");
                }
            }
        }
    }
    exec_node(&args)
}

/// The checkout this binary belongs to: ROOT of ROOT/target/release/burrow.
fn checkout() -> Option<PathBuf> {
    let exe = std::fs::canonicalize("/proc/self/exe").ok()?;
    Some(exe.parent()?.parent()?.parent()?.to_path_buf())
}

/// Replaces this process with Node's CLI (bin/burrow.js) and the same arguments.
fn exec_node(args: &[OsString]) -> ! {
    let node = std::env::var_os("BURROW_NODE").filter(|n| !n.is_empty()).unwrap_or_else(|| "node".into());
    let Some(root) = checkout() else {
        eprintln!("Error: cannot find burrow's checkout from /proc/self/exe (the launcher runs bin/burrow.js next to it)\nfix: run burrow from its checkout, or link to target/release/burrow there (scripts/install.sh)");
        std::process::exit(125);
    };
    let script = root.join("bin").join("burrow.js");
    let c = |s: &[u8]| CString::new(s).unwrap_or_default();
    let mut argv = vec![c(node.as_bytes()), c(script.as_os_str().as_bytes())];
    argv.extend(args.iter().map(|a| c(a.as_bytes())));
    // The CLI as a fresh process gets it: Rust's runtime ignores SIGPIPE, and an ignored signal
    // stays ignored across execve.
    // SAFETY: restores the default disposition of one signal; no handler code is involved.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let err = nix::unistd::execvp(&argv[0], &argv).unwrap_err();
    eprintln!(
        "Error: cannot run {} {}: {}: burrow's CLI runs on Node.js\nfix: install Node.js 20 or later, or set BURROW_NODE to its path",
        node.to_string_lossy(),
        script.display(),
        err.desc()
    );
    std::process::exit(125);
}

/// Serves the run from its plan: Ok(exit status) once the container ran (or failed in the
/// runtime), Err(why) for a miss, after which nothing of the run is left and Node runs it.
fn try_plan(args: &[OsString]) -> Result<i32, String> {
    if std::env::var_os("BURROW_NO_PLAN").is_some_and(|v| !v.is_empty()) {
        return Err("BURROW_NO_PLAN is set".into());
    }
    let args: Vec<String> = args.iter().map(|a| a.to_str().map(str::to_string)).collect::<Option<_>>().ok_or("an argument is not UTF-8")?;
    let line = grammar::split(&args).ok_or("the command line is not one a plan serves")?;
    if !std::fs::metadata(line.image).is_ok_and(|m| m.is_file()) {
        return Err(format!("{} is not a file", line.image));
    }
    let cwd = std::env::current_dir().map_err(|e| format!("getcwd: {e}"))?;
    let uid = nix::unistd::getuid().as_raw();
    let key = grammar::key(&line, cwd.as_os_str().as_bytes(), uid);
    let plan = read_plan(&key, uid)?;
    let env = plan::environ();
    let groups: Vec<u32> = nix::unistd::getgroups().map_err(|e| format!("getgroups: {e}"))?.iter().map(|g| g.as_raw()).collect();
    let uts = nix::sys::utsname::uname().map_err(|e| format!("uname: {e}"))?;
    let host = Host {
        uid,
        gid: nix::unistd::getgid().as_raw(),
        groups,
        egid: nix::unistd::getegid().as_raw(),
        cwd: cwd.as_os_str().as_bytes(),
        hostname: uts.nodename().as_bytes(),
        umask: current_umask(),
        env: &env,
    };
    if let Some(why) = plan::check(&plan, &key, &host) {
        return Err(why);
    }
    let host_env = plan.host_env.as_ref().map(|h| plan::json_list(&plan::host_env(h, &env))).unwrap_or_default();
    let run = Run::prepare(&plan, plan::json_list(line.command), host_env).map_err(|e| e.to_string())?;
    if debug() {
        eprintln!("burrow: debug: run plan: used {key}");
    }
    Ok(run.run(&env))
}

/// This process's file-mode creation mask (umask(2) can only be read by setting it: set back at once).
fn current_umask() -> u32 {
    // SAFETY: umask(2) cannot fail; the launcher is single-threaded, so no file is made between the two calls.
    unsafe {
        let m = libc::umask(0o022);
        libc::umask(m);
        m as u32
    }
}

/// Reads PLANDIR/KEY.json, refused unless it and its directory are ours and written by nobody else.
fn read_plan(key: &str, uid: u32) -> Result<Plan, String> {
    let dir = burrow_core::paths::runtime_root().join("run-plans");
    let file = dir.join(format!("{key}.json"));
    let private = |m: &std::fs::Metadata| m.uid() == uid && m.mode() & 0o022 == 0;
    let d = std::fs::metadata(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !private(&d) {
        return Err(format!("{} is not private to uid {uid}", dir.display()));
    }
    let mut f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let m = f.metadata().map_err(|e| format!("{}: {e}", file.display()))?;
    if !m.is_file() || !private(&m) {
        return Err(format!("{} is not a private file of uid {uid}", file.display()));
    }
    let mut text = Vec::with_capacity(m.len() as usize + 1);
    f.read_to_end(&mut text).map_err(|e| format!("{}: {e}", file.display()))?;
    serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", file.display()))
}

/// 32 bytes from the kernel's random source (getrandom(2), /dev/urandom's pool).
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    let mut got = 0;
    while got < N {
        // SAFETY: writes at most N - got bytes into the rest of our buffer.
        let n = unsafe { libc::getrandom(b[got..].as_mut_ptr().cast(), N - got, 0) };
        if n > 0 {
            got += n as usize;
        } else if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            // No getrandom (a kernel before 3.17): the device itself.
            if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
                let _ = f.read_exact(&mut b);
            }
            return b;
        }
    }
    b
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A container made from the plan: its id, name and directory claimed and written.
struct Run<'p> {
    plan: &'p Plan,
    id: String,
    name: String,
    created: String,
    args: String,
    host_env: String,
    dir: PathBuf,
}

impl<'p> Run<'p> {
    fn values(&self, now_ms: u64) -> Values<'_> {
        Values { id: &self.id, name: &self.name, created: &self.created, now_ms, args: &self.args, host_env: &self.host_env }
    }

    fn expand(&self, s: &str) -> String {
        plan::expand(s, &self.values(now_ms()))
    }

    /// Steps 1 and 2: the id, the name (claimed), the container's directories and files. On
    /// failure what was made is removed again.
    fn prepare(plan: &'p Plan, args: String, host_env: String) -> Result<Run<'p>, LauncherError> {
        let id = grammar::hex(&random_bytes::<32>());
        let containers = Path::new(&plan.containers_dir);
        let names = containers.join(".names");
        let (adj, noun) = (&plan.names.adjectives, &plan.names.nouns);
        if adj.is_empty() || noun.is_empty() {
            return Err(LauncherError::Miss("the plan has no names".into()));
        }
        let mut claimed = None;
        // As ts/container/create.ts: a fresh name each try, numbered from the 7th.
        for i in 0..=20 {
            let [b0, b1] = random_bytes::<2>();
            let mut name = format!("{}_{}", adj[b0 as usize % adj.len()], noun[b1 as usize % noun.len()]);
            if i > 5 {
                name.push_str(&format!("_{i}"));
            }
            let link = names.join(&name);
            let r = std::os::unix::fs::symlink(&id, &link).or_else(|e| {
                if e.raw_os_error() != Some(libc::ENOENT) {
                    return Err(e);
                }
                std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&names)?;
                std::os::unix::fs::symlink(&id, &link)
            });
            match r {
                Ok(()) => {
                    claimed = Some(name);
                    break;
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
                Err(e) => return Err(io("symlink", &link)(e)),
            }
        }
        let name = claimed.ok_or_else(|| LauncherError::Miss("no free name after 21 tries".into()))?;
        let run = Run { plan, dir: containers.join(&id), id, name, created: plan::iso_time(now_ms()), args, host_env };
        if let Err(e) = run.write_files() {
            run.remove_dir();
            run.release_name();
            return Err(e);
        }
        Ok(run)
    }

    fn write_files(&self) -> Result<(), LauncherError> {
        use std::io::Write;
        for d in &self.plan.dirs {
            let p = if d.path.is_empty() { self.dir.clone() } else { self.dir.join(&d.path) };
            std::fs::DirBuilder::new().mode(d.mode).create(&p).map_err(io("mkdir", &p))?;
        }
        for f in &self.plan.files {
            let p = self.dir.join(&f.path);
            let text = self.expand(&f.text);
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(f.mode).open(&p).map_err(io("create", &p))?;
            file.write_all(text.as_bytes()).map_err(io("write", &p))?;
        }
        Ok(())
    }

    /// Containers.removeDir: renamed aside (`.removing-ID-PID`), then removed.
    fn remove_dir(&self) {
        let aside = Path::new(&self.plan.containers_dir).join(format!(".removing-{}-{}", self.id, std::process::id()));
        let target = if std::fs::rename(&self.dir, &aside).is_ok() { aside } else { self.dir.clone() };
        if let Err(e) = remove_tree(&target) {
            if debug() {
                eprintln!("burrow: debug: run plan: cannot remove {}: {e}", target.display());
            }
        }
    }

    /// Containers.releaseName: the name's link goes if it still names this container.
    fn release_name(&self) {
        let link = Path::new(&self.plan.containers_dir).join(".names").join(&self.name);
        if std::fs::read_link(&link).is_ok_and(|t| t.as_os_str() == self.id.as_str()) {
            let _ = std::fs::remove_file(&link);
        }
    }

    fn append_events(&self, lines: &[String]) {
        let file = Path::new(&self.plan.events_file);
        let v = self.values(now_ms());
        for l in lines {
            events::append(file, &plan::expand(l, &v), self.plan.events_max_bytes);
        }
    }

    /// Steps 3 to 5: the events before, the runtime and its status, the removal, the events
    /// after; the exit status.
    fn run(self, env: &[(Vec<u8>, Vec<u8>)]) -> i32 {
        self.append_events(&self.plan.events_before);
        let rt = &self.plan.runtime;
        let args: Vec<String> = rt.args.iter().map(|a| self.expand(a)).collect();
        let extra: Vec<String> = rt.env.iter().map(|e| self.expand(e)).collect();
        // Our environment with the plan's entries in place of ours of the same name.
        let named = |e: &[u8]| e.split(|&b| b == b'=').next().map(<[u8]>::to_vec).unwrap_or_default();
        let extra_names: Vec<Vec<u8>> = extra.iter().map(|e| named(e.as_bytes())).collect();
        let mut full_env: Vec<Vec<u8>> =
            env.iter().filter(|(k, _)| !extra_names.contains(k)).map(|(k, v)| [k.as_slice(), b"=", v.as_slice()].concat()).collect();
        full_env.extend(extra.into_iter().map(String::into_bytes));
        let mut argv = vec![rt.path.clone()];
        argv.extend(args);
        let child = match spawn::Child::start(Path::new(&rt.path), &argv, &full_env) {
            Ok(c) => c,
            Err(e) => {
                // As the CLI when the runtime cannot be started: its error, status 125, the
                // container removed through the CLI.
                eprintln!("Error: {e}");
                self.cleanup_through_cli();
                return 125;
            }
        };
        let end = child.wait_report();
        match end {
            spawn::End::Exit(code) => {
                // The CLI's `rm`, when it removes the container, logs its own destroy.
                if self.remove_held() {
                    self.append_events(&self.plan.events_after);
                }
                // Our end of its channel closes as we exit: the runtime, which waits for it,
                // then finds the container gone and ends too.
                drop(child);
                code
            }
            spawn::End::NoExit { failure, status } => {
                let code = failure.map_or(status, |c| burrow_core::codes::exit_status(&c));
                self.cleanup_through_cli();
                code
            }
        }
    }

    /// ts/container/lifecycle.ts remove(heldEnded) for a run whose exit was reported: the
    /// runtime removed the writable layer and its own state; the directory and the name go.
    /// Runtime state left behind (it is not, normally) is the CLI's to delete, with the rest.
    ///
    /// The directory's trees (the writable layer among them) go first, in place, as the CLI's
    /// removeRootfs does before the directory is set aside: a tree this user cannot delete
    /// (files of the container's other ids, overlay's mode-0 work directory, left when the
    /// program never ran and the runtime removed nothing) is the CLI's to remove in the
    /// store's user namespace, with the record still there for it to find.
    ///
    /// True when it removed the container itself; false when the CLI's `rm` did.
    fn remove_held(&self) -> bool {
        if Path::new(&self.plan.runtime_root).join(&self.id).exists() {
            self.cleanup_through_cli();
            return false;
        }
        let trees = std::fs::read_dir(&self.dir).map(|d| d.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()).collect::<Vec<_>>());
        let cleared = trees.is_ok_and(|trees| trees.iter().all(|t| remove_tree(t).is_ok()));
        if !cleared {
            self.cleanup_through_cli();
            return false;
        }
        self.remove_dir();
        self.release_name();
        true
    }

    /// The plan's cleanup command (`node bin/burrow.js rm -f ID`), waited for; its output is
    /// not ours (rm prints the id), its errors are.
    fn cleanup_through_cli(&self) {
        let cmd: Vec<String> = self.plan.cleanup_command.iter().map(|a| self.expand(a)).collect();
        if let Some((prog, rest)) = cmd.split_first() {
            let _ = std::process::Command::new(prog).args(rest).stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).status();
        }
    }
}

/// `rm -rf` of a tree of ours, as ts/storage/fsutil.ts removeTree (an entry added meanwhile is
/// retried a few times).
pub fn remove_tree(dir: &Path) -> std::io::Result<()> {
    let mut tries = 0;
    loop {
        match remove_entries(dir) {
            Err(e) if tries < 5 && matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EBUSY | libc::EEXIST)) => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20 * tries));
            }
            r => return r,
        }
    }
}

fn remove_entries(dir: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return ignore_enoent(std::fs::remove_file(dir)),
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            remove_entries(&p)?;
        } else {
            ignore_enoent(std::fs::remove_file(&p))?;
        }
    }
    ignore_enoent(std::fs::remove_dir(dir))
}

fn ignore_enoent(r: std::io::Result<()>) -> std::io::Result<()> {
    match r {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        r => r,
    }
}
