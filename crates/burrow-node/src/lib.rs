//! napi bindings for the TypeScript CLI. Only type and error conversion lives here; every
//! behaviour is in burrow-core. Errors carry burrow-core's stable code as the JS error's `code`.

use napi::bindgen_prelude::*;
use napi_derive::napi;

/// burrow-core's stable code (burrow_core::codes), which napi-rs makes the JavaScript error's
/// `code`; ts/errors.ts (toBurrowError) turns the error into a BurrowError with that code.
#[derive(Debug)]
pub struct Code(&'static str);

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        self.0
    }
}

fn coded(code: &'static str, msg: impl std::fmt::Display) -> Error<Code> {
    Error::new(Code(code), msg.to_string())
}

#[napi(object)]
pub struct ProbeOptions {
    pub store_root: Option<String>,
    pub runtime_bin: Option<String>,
    /// Where a store on a network filesystem keeps its layers (see burrow-core's ProbeOptions).
    pub local_root: Option<String>,
}

/// Probes the host (see burrow-core's `probe`) and returns the report as a JSON string. The
/// string crosses the boundary once and is parsed and validated on the TypeScript side.
#[napi]
pub fn probe_host(opts: ProbeOptions) -> Result<String, Code> {
    let o = burrow_core::probe::ProbeOptions {
        store_root: opts.store_root.map(Into::into),
        runtime_bin: opts.runtime_bin.map(Into::into),
        local_root: opts.local_root.map(Into::into),
    };
    let report = burrow_core::probe::probe(&o);
    serde_json::to_string(&report).map_err(|e| coded(burrow_core::codes::EINTERNAL, e))
}

/// Default locations, so that TypeScript and Rust agree on them.
#[napi(object)]
pub struct DefaultPaths {
    pub store_root: String,
    pub runtime_root: String,
}

#[napi]
pub fn default_paths() -> DefaultPaths {
    DefaultPaths {
        store_root: burrow_core::paths::default_store_root().display().to_string(),
        runtime_root: burrow_core::paths::runtime_root().display().to_string(),
    }
}

/// The cgroup layout and what this user can enforce (a cheap, namespace-free part of the probe),
/// as JSON: `run` checks requested limits against it before it starts anything.
#[napi]
pub fn cgroup_info() -> Result<String, Code> {
    let info = burrow_core::probe::cgroups::probe_self();
    serde_json::to_string(&info).map_err(|e| coded(burrow_core::codes::EINTERNAL, e))
}

/// The error-code table as Rust has it (burrow_core::codes), as JSON `{CODE: {exit, http}}`:
/// the unit tests check that ts/errors-codes.ts says the same.
#[napi]
pub fn error_codes() -> String {
    let m: serde_json::Map<String, serde_json::Value> =
        burrow_core::codes::TABLE.iter().map(|c| (c.code.to_string(), serde_json::json!({ "exit": c.exit, "http": c.http }))).collect();
    serde_json::Value::Object(m).to_string()
}

/// Fails with `code` when it is one of burrow's codes (Ok otherwise): how the unit tests see a
/// coded error cross the boundary, as every fallible binding's errors do.
#[napi]
pub fn check_error_code(code: String, msg: String) -> Result<(), Code> {
    match burrow_core::codes::lookup(&code) {
        Some(c) => Err(coded(c.code, msg)),
        None => Ok(()),
    }
}

/// The runtime started by `spawn_held` (burrow_core::spawn): its pid, and a kill that never
/// reaches another process once it has ended.
#[napi]
pub struct HeldProcess {
    held: burrow_core::spawn::Held,
}

#[napi]
impl HeldProcess {
    #[napi(getter)]
    pub fn pid(&self) -> i32 {
        self.held.pid
    }

    /// Sends signal number `sig`; false when the process had ended.
    #[napi]
    pub fn kill(&self, sig: i32) -> bool {
        self.held.kill(sig)
    }
}

/// The callback's arguments: a line of fd 3, or (null) the exit status and signal.
type EventArgs = FnArgs<(Option<String>, Option<i32>, Option<i32>)>;

/// Starts `bin` with `args` and `env` (`KEY=VALUE`), the write end of a pipe as its fd 3, stdin
/// inherited or /dev/null, stdout and stderr inherited; `on_event(line, code, signal)` gets each
/// line of fd 3 (code and signal null), then `(null, code, signal)` once at its exit. The
/// callback does not keep Node's event loop alive: the caller does while it waits.
#[napi(
    ts_args_type = "bin: string, args: string[], env: string[], inheritStdin: boolean, onEvent: (line: string | null, code: number | null, signal: number | null) => void"
)]
pub fn spawn_held(bin: String, args: Vec<String>, env: Vec<String>, inherit_stdin: bool, on_event: Function<'_, EventArgs, ()>) -> Result<HeldProcess, Code> {
    let tsfn = on_event
        .build_threadsafe_function::<burrow_core::spawn::Event>()
        .weak::<true>()
        .build_callback(|ctx| {
            // FnArgs: three arguments, not one array.
            Ok(FnArgs::from(match ctx.value {
                burrow_core::spawn::Event::Line(l) => (Some(l), None, None),
                burrow_core::spawn::Event::Exit { code, signal } => (None, code, signal),
            }))
        })
        .map_err(|e| coded(burrow_core::codes::EINTERNAL, e))?;
    let tsfn = std::sync::Arc::new(tsfn);
    let stdin = if inherit_stdin { burrow_core::spawn::Stdin::Inherit } else { burrow_core::spawn::Stdin::Null };
    let held = burrow_core::spawn::spawn_with_status(&bin, &args, &env, stdin, move |e| {
        tsfn.call(e, napi::threadsafe_function::ThreadsafeFunctionCallMode::NonBlocking);
    })
    .map_err(|e| {
        use burrow_core::Coded;
        coded(e.code(), e)
    })?;
    Ok(HeldProcess { held })
}

/// The sha256 of `text` (UTF-8) in hex: node:crypto's createHash('sha256') without loading
/// node:crypto (and node:stream under it), which costs `run FILE.sqfs` milliseconds.
#[napi]
pub fn sha256_hex(text: String) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}
