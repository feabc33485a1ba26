//! Subcommand dispatch and the global flags (`--root`, `--log`, `--log-format`, `--debug`,
//! `--systemd-cgroup`, `--rootless`), as runc has them.

use std::path::PathBuf;

use burrow_core::runtime::error::{Result, RuntimeError};

use crate::args::{parse, parse_interspersed, Flag, Parsed};
use crate::log;

mod attach_server;
mod cp;
mod create;
mod delete;
mod events;
mod exec;
mod export;
mod features;
mod kill;
mod list;
mod monitor;
mod network;
mod network_owner;
mod pause;
mod probe_ns;
mod ps;
mod run;
mod spec;
mod start;
mod state;
mod unpack;
mod unsupported;
mod update;

/// What every command gets from the global flags and its binary's table.
pub struct Ctx {
    pub root: PathBuf,
    /// `--systemd-cgroup`: create and run ask systemd for a transient scope (when it runs).
    pub systemd_cgroup: bool,
    /// `--share-userns` (burrow's own: its CLI passes it to create, run and the monitor): a
    /// container whose maps need the setuid helpers joins the user's shared user namespace for
    /// them, or leaves one (burrow_core::runtime::userns_share). Off for other engines, whose
    /// containers each get a namespace of their own, as with runc and crun.
    pub share_userns: bool,
    /// The full runtime, which the monitor runs for what it does not carry itself (`create`,
    /// `delete`, poststart hooks): this binary for `burrow-runtime`, the one beside it for
    /// `burrow-monitor`; the monitor's `--runtime` overrides it.
    pub runtime: PathBuf,
    /// Starts a monitor's healthcheck; None in `burrow-monitor` (see monitor::StartHealth).
    pub health: Option<monitor::StartHealth>,
}

/// A binary's commands: `burrow-runtime` has them all (FULL), `burrow-monitor` only what stays
/// alive (RESIDENT; src/bin/burrow-monitor.rs says why). The linker keeps what a table reaches.
pub struct Table {
    name: &'static str,
    usage: &'static str,
    /// Whether the command runs our code in a container's namespaces, so needs the sealed copy
    /// of the binary first (burrow_core::runtime::selfclone).
    selfclone: fn(&str, &[String]) -> bool,
    run: fn(&Ctx, &str, &[String]) -> Result<i32>,
    runtime: fn() -> PathBuf,
    health: Option<monitor::StartHealth>,
}

pub static FULL: Table = Table {
    name: "burrow-runtime",
    usage: USAGE,
    // The monitor only for its healthcheck's execs (it creates its container through a
    // `create` of its own: monitor.rs).
    selfclone: |cmd, cmd_args| {
        let healthcheck = || cmd_args.iter().any(|a| a == "--healthcheck" || a.starts_with("--healthcheck="));
        matches!(cmd, "create" | "run" | "exec") || (cmd == "monitor" && healthcheck())
    },
    run: run_full,
    runtime: || PathBuf::from("/proc/self/exe"),
    health: Some(monitor::start_health),
};

pub static RESIDENT: Table = Table {
    name: "burrow-monitor",
    usage: RESIDENT_USAGE,
    selfclone: |_, _| false,
    run: run_resident,
    runtime: || {
        let me = std::env::current_exe().unwrap_or_default();
        me.parent().map(|d| d.join("burrow-runtime")).unwrap_or_else(|| PathBuf::from("burrow-runtime"))
    },
    health: None,
};

const GLOBAL: &[Flag] = &[
    Flag("root", &[], true),
    Flag("log", &[], true),
    Flag("log-format", &[], true),
    Flag("debug", &[], false),
    Flag("systemd-cgroup", &[], false),
    Flag("share-userns", &[], false),
    Flag("rootless", &[], true),
    Flag("criu", &[], true),
    Flag("status-fd", &[], true),
    Flag("help", &["h"], false),
    Flag("version", &["v"], false),
];

const USAGE: &str = "usage: burrow-runtime [global flags] COMMAND [flags] [ID] [args]

A rootless, runc-compatible OCI runtime.

commands:
  create     create a container from a bundle (waits for start)
  start      start a created container
  run        create and start a container (foreground unless --detach)
  state      print a container's state as JSON
  kill       send a signal to a container's init (--all: to all its processes)
  delete     delete a container (--force: kill it first)
  exec       run a new process in a container
  ps         list a container's processes
  list       list containers
  events     print a container's statistics (--stats)
  spec       write a template config.json (--rootless)
  features   print the runtime's features as JSON
  monitor    run a detached container and keep its logs and exit status (used by burrow, which
             runs burrow-monitor's unless the container has a healthcheck)
  poststart  run a started container's poststart hooks (used by burrow-monitor)
  network-owner  hold the user's user-defined networks (namespace, bridges, NAT, DNS; used by burrow)
  unpack     extract image layers in a user namespace (JSON jobs on stdin; used by burrow)
  cp         copy files between the host and a container, in its user namespace (used by burrow)
  export     write a container's root filesystem to stdout as a tar, in its namespaces (used by burrow)
  pause      freeze all processes of a container (needs its cgroup: v2 delegated, or v1 freezer)
  resume     thaw a paused container
  update     change a running container's limits (-r FILE, --memory, --cpu-quota, --pids-limit, ...)
  checkpoint, restore: not supported yet (refused with an error; the container is left as it was)

global flags:
  --root DIR           state directory (default $XDG_RUNTIME_DIR/burrow/runtime, /run/burrow-runtime for root)
  --log FILE           also write errors to FILE
  --log-format FORMAT  text or json
  --debug              debug output
  --systemd-cgroup     place containers in a systemd transient scope (falls back to cgroupfs, with a
                       warning, where systemd does not run)
  --status-fd FD       report on FD as newline-delimited JSON: {pid} once the container's (or exec'd)
                       process exists, {error, code} on failure, {exit} when it ends (burrow's
                       channel; without it the runtime behaves as runc)
";

const RESIDENT_USAGE: &str = "usage: burrow-monitor [global flags] COMMAND [flags] [ID]

The processes burrow leaves running, without the rest of burrow-runtime (smaller in memory).

commands:
  monitor        run a detached container and keep its logs and exit status (no --healthcheck:
                 that monitor is burrow-runtime's); --runtime PATH is the burrow-runtime it
                 creates the container with (default: the one beside this binary)
  network-owner  hold the user's user-defined networks (namespace, bridges, NAT, DNS)

global flags: as burrow-runtime's (--root, --log, --log-format, --debug, --systemd-cgroup,
--status-fd).
";

pub fn dispatch(args: &[String], table: &Table) -> i32 {
    // Global flags end at the first non-flag word, the command.
    let split = args.iter().position(|a| !a.starts_with('-')).unwrap_or(args.len());
    let mut globals_args: Vec<String> = args[..split].to_vec();
    // `--root x`: the value is not the command.
    let mut i = 0;
    let mut cmd_at = split;
    while i < args.len() {
        let a = &args[i];
        if !a.starts_with('-') {
            cmd_at = i;
            break;
        }
        let name = a.trim_start_matches('-').split('=').next().unwrap_or("");
        if !a.contains('=') && GLOBAL.iter().any(|f| f.2 && (f.0 == name || f.1.contains(&name))) {
            i += 1;
        }
        i += 1;
        cmd_at = i;
    }
    if cmd_at != split {
        globals_args = args[..cmd_at].to_vec();
    }
    let g = match parse(&globals_args, GLOBAL) {
        Ok(g) => g,
        Err(e) => {
            // Before --log-format is known: runc's default, text.
            eprintln!("{}", log::format_line(false, "error", &e, None, &burrow_core::runtime::state::now_rfc3339()));
            return 1;
        }
    };
    log::init(log::LogConfig { file: g.value("log").map(String::from), json: g.value("log-format") == Some("json"), debug: g.has("debug") });
    if g.has("version") {
        print_version(table.name);
        return 0;
    }
    let rest = &args[cmd_at.min(args.len())..];
    let Some((cmd, cmd_args)) = rest.split_first() else {
        eprint!("{}", table.usage);
        return if g.has("help") { 0 } else { 1 };
    };
    // Before any namespace is joined: see burrow_core::runtime::selfclone.
    if (table.selfclone)(cmd, cmd_args) {
        burrow_core::runtime::selfclone::ensure();
    }
    // After the self-clone's re-exec, which closes the close-on-exec descriptors we make of it.
    if let Some(fd) = g.value("status-fd") {
        if let Err(e) = crate::status::open(fd) {
            log::error(&e);
            return 1;
        }
    }
    let ctx = Ctx {
        root: g.value("root").map(PathBuf::from).unwrap_or_else(burrow_core::runtime::state::default_root),
        systemd_cgroup: g.has("systemd-cgroup"),
        share_userns: g.has("share-userns"),
        runtime: (table.runtime)(),
        health: table.health,
    };
    let r = match cmd.as_str() {
        "version" => {
            print_version(table.name);
            Ok(0)
        }
        "help" => {
            print!("{}", table.usage);
            Ok(0)
        }
        _ => (table.run)(&ctx, cmd, cmd_args),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            if !log::status_only() {
                log::error(&e);
            }
            crate::status::error(&e);
            1
        }
    }
}

fn run_full(ctx: &Ctx, cmd: &str, cmd_args: &[String]) -> Result<i32> {
    match cmd {
        "create" => create::main(ctx, cmd_args),
        "start" => start::main(ctx, cmd_args),
        "run" => run::main(ctx, cmd_args),
        "state" => state::main(ctx, cmd_args),
        "kill" => kill::main(ctx, cmd_args),
        "delete" | "rm" => delete::main(ctx, cmd_args),
        "exec" => exec::main(ctx, cmd_args),
        "ps" => ps::main(ctx, cmd_args),
        "list" | "ls" => list::main(ctx, cmd_args),
        "events" => events::main(ctx, cmd_args),
        "spec" => spec::main(cmd_args),
        "features" => features::main(),
        "pause" => pause::main(ctx, cmd_args, true),
        "resume" => pause::main(ctx, cmd_args, false),
        "update" => update::main(ctx, cmd_args),
        "checkpoint" | "restore" => unsupported::main(cmd),
        "probe-ns" => Ok(probe_ns::main(cmd_args)),
        "unpack" => unpack::main(cmd_args),
        "cp" => cp::main(cmd_args),
        "export" => export::main(cmd_args),
        "monitor" => monitor::main(ctx, cmd_args),
        "network-owner" => network_owner::main(cmd_args),
        "userns-keep" => userns_keep(cmd_args),
        "poststart" => start::poststart_main(ctx, cmd_args),
        other => Err(RuntimeError::Usage(format!("unknown command {other:?}; see `burrow-runtime help`"))),
    }
}

fn run_resident(ctx: &Ctx, cmd: &str, cmd_args: &[String]) -> Result<i32> {
    match cmd {
        "monitor" => monitor::main(ctx, cmd_args),
        "network-owner" => network_owner::main(cmd_args),
        "userns-keep" => userns_keep(cmd_args),
        other => Err(RuntimeError::Usage(format!("unknown command {other:?}: burrow-monitor runs only monitor and network-owner; see `burrow-monitor help`"))),
    }
}

/// `userns-keep KEY SUBID`: the keeper of a shared user namespace, started by a container's
/// create inside that namespace (burrow_core::runtime::userns_share); not for people.
fn userns_keep(args: &[String]) -> Result<i32> {
    match args {
        [key, subid] => Ok(burrow_core::runtime::userns_share::keeper_main(key, subid)),
        _ => Err(RuntimeError::Usage("userns-keep KEY SUBID: started by create, not by hand".into())),
    }
}

fn print_version(name: &str) {
    println!("{name} version {}", env!("CARGO_PKG_VERSION"));
    println!("spec: {}", burrow_core::runtime::state::OCI_VERSION);
}

/// Parses a command's leading flags (up to the first positional argument, which is kept with
/// everything after it: `exec ID CMD...`, `ps ID PS-ARGS...`, and burrow's own commands).
pub fn flags(args: &[String], defs: &[Flag]) -> Result<Parsed> {
    parse(args, defs).map_err(RuntimeError::Usage)
}

/// Parses a runc command whose flags may also follow the id (`create ID --bundle DIR`), and
/// checks the number of positional arguments: `min..=max`, as runc's "requires exactly 1
/// argument(s)". An extra argument is an error, never silently ignored.
pub fn command(args: &[String], defs: &[Flag], cmd: &str, min: usize, max: usize) -> Result<Parsed> {
    let p = parse_interspersed(args, defs).map_err(|e| RuntimeError::Usage(format!("{cmd}: {e}")))?;
    let n = p.positional.len();
    if n < min {
        return Err(RuntimeError::Usage(if min == 1 {
            format!("{cmd}: a container id is required")
        } else {
            format!("{cmd}: requires at least {min} arguments")
        }));
    }
    if n > max {
        let extra = p.positional[max..].iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(" ");
        let want = match (min, max) {
            (0, 0) => "no arguments".to_string(),
            (1, 1) => "exactly 1 argument (the container id)".to_string(),
            (a, b) if a == b => format!("exactly {a} arguments"),
            (_, b) => format!("at most {b} arguments"),
        };
        return Err(RuntimeError::Usage(format!("{cmd}: requires {want}; unexpected {extra}")));
    }
    Ok(p)
}

/// `command` for the commands that take exactly a container id; returns it with the flags.
pub fn id_command(args: &[String], defs: &[Flag], cmd: &str) -> Result<(Parsed, String)> {
    let p = command(args, defs, cmd, 1, 1)?;
    let id = p.positional[0].clone();
    Ok((p, id))
}

/// The container id: the first positional argument.
pub fn id_of(p: &Parsed, cmd: &str) -> Result<String> {
    p.positional.first().cloned().ok_or_else(|| RuntimeError::Usage(format!("{cmd}: a container id is required")))
}
