//! The run plan (docs/run-plans.md §2) as the launcher reads it, its checks, and the per-run values it
//! fills in. Everything here is pure (the environment, ids and files are given), so that the
//! unit tests can drive it.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub version: u32,
    pub key: String,
    pub checks: Checks,
    pub containers_dir: String,
    pub runtime_root: String,
    pub events_file: String,
    pub events_max_bytes: u64,
    pub names: Names,
    pub dirs: Vec<DirEntry>,
    pub files: Vec<FileEntry>,
    pub events_before: Vec<String>,
    pub events_after: Vec<String>,
    pub runtime: Runtime,
    pub cleanup_command: Vec<String>,
    pub host_env: Option<HostEnv>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checks {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub cwd: String,
    pub hostname: Option<String>,
    /// The file-mode creation mask the plan's files and directories were made under: the modes
    /// in `dirs` and `files` are those it gave, so another mask would make other modes.
    #[serde(default)]
    pub umask: Option<u32>,
    pub env: HashMap<String, Option<String>>,
    pub env_prefixes: Vec<String>,
    /// Names under a prefix that are never compared (BURROW_DEBUG: it changes no output of a run).
    #[serde(default)]
    pub env_exempt: Vec<String>,
    pub files: Vec<FileCheck>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileCheck {
    pub path: String,
    #[serde(default)]
    pub absent: bool,
    pub dev: Option<u64>,
    pub ino: Option<u64>,
    pub size: Option<u64>,
    pub mtime_ns: Option<String>,
    pub ctime_ns: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Names {
    pub adjectives: Vec<String>,
    pub nouns: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct DirEntry {
    pub path: String,
    pub mode: u32,
}

#[derive(Debug, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub mode: u32,
    pub text: String,
}

#[derive(Debug, Deserialize)]
pub struct Runtime {
    pub path: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostEnv {
    pub deny: Vec<String>,
    pub deny_prefix: String,
    pub image_keys: Vec<String>,
}

/// What the checks compare the plan with: this process and its host.
pub struct Host<'a> {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups as getgroups(2) gives them.
    pub groups: Vec<u32>,
    pub egid: u32,
    pub cwd: &'a [u8],
    pub hostname: &'a [u8],
    pub umask: u32,
    /// The environment, in environ's order (`NAME=VALUE` split at the first `=`).
    pub env: &'a [(Vec<u8>, Vec<u8>)],
}

/// The groups as Node's process.getgroups() gives them (getgroups(2) plus the effective gid
/// when it is not listed), sorted and without repeats: the form both sides are compared in.
fn group_set(groups: &[u32], egid: u32) -> Vec<u32> {
    let mut g: Vec<u32> = groups.iter().copied().chain([egid]).collect();
    g.sort_unstable();
    g.dedup();
    g
}

fn lookup<'a>(env: &'a [(Vec<u8>, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    env.iter().find(|(k, _)| k == name.as_bytes()).map(|(_, v)| v.as_slice())
}

/// Why the plan does not fit this run (the first reason found), or None when it does.
pub fn check(plan: &Plan, key: &str, host: &Host<'_>) -> Option<String> {
    let c = &plan.checks;
    if plan.version != 1 {
        return Some(format!("version {} (want 1)", plan.version));
    }
    if plan.key != key {
        return Some("its key is another one".into());
    }
    if c.uid != host.uid || c.gid != host.gid {
        return Some("another uid or gid".into());
    }
    if group_set(&c.groups, host.egid) != group_set(&host.groups, host.egid) {
        return Some("other supplementary groups".into());
    }
    if c.cwd.as_bytes() != host.cwd {
        return Some("another working directory".into());
    }
    if c.umask.is_some_and(|m| m != host.umask) {
        return Some(format!("another umask ({:03o})", host.umask));
    }
    if let Some(h) = &c.hostname {
        if h.as_bytes() != host.hostname {
            return Some("another host name".into());
        }
    }
    for (name, want) in &c.env {
        let have = lookup(host.env, name);
        if have != want.as_deref().map(str::as_bytes) {
            return Some(format!("${name} changed"));
        }
    }
    for (name, _) in host.env {
        let known = std::str::from_utf8(name).is_ok_and(|n| c.env.contains_key(n) || c.env_exempt.iter().any(|e| e == n));
        if c.env_prefixes.iter().any(|p| name.starts_with(p.as_bytes())) && !known {
            return Some(format!("${} is set", String::from_utf8_lossy(name)));
        }
    }
    for f in &c.files {
        if let Some(why) = check_file(f) {
            return Some(why);
        }
    }
    None
}

/// A file's stat (following symlinks) against the plan's: the same file, unchanged since.
fn check_file(f: &FileCheck) -> Option<String> {
    match std::fs::metadata(&f.path) {
        Err(e) if f.absent && matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => None,
        Err(e) => Some(format!("{}: {e}", f.path)),
        Ok(_) if f.absent => Some(format!("{} exists now", f.path)),
        Ok(m) => {
            let ns = |s: i64, n: i64| (i128::from(s) * 1_000_000_000 + i128::from(n)).to_string();
            let same = f.dev == Some(m.dev())
                && f.ino == Some(m.ino())
                && f.size == Some(m.size())
                && f.mtime_ns.as_deref() == Some(ns(m.mtime(), m.mtime_nsec()).as_str())
                && f.ctime_ns.as_deref() == Some(ns(m.ctime(), m.ctime_nsec()).as_str());
            (!same).then(|| format!("{} changed", f.path))
        }
    }
}

/// The per-run values of the placeholders.
pub struct Values<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub created: &'a str,
    pub now_ms: u64,
    /// The command's elements as JSON strings joined by `,` ("@@ARGS@@").
    pub args: &'a str,
    /// The host's variables as JSON strings joined by `,` ("@@HOSTENV@@").
    pub host_env: &'a str,
}

/// The elements as JSON strings (serde_json's encoding, JSON.stringify's) joined by `,`.
pub fn json_list<S: AsRef<str>>(items: &[S]) -> String {
    let mut s = String::new();
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&serde_json::to_string(it.as_ref()).unwrap_or_default());
    }
    s
}

/// The host's environment for a --hpc container (ts/container/hpc.ts hpcEnv): every variable
/// in environ's order but the deny list, the deny prefix and the image's own names.
pub fn host_env(h: &HostEnv, env: &[(Vec<u8>, Vec<u8>)]) -> Vec<String> {
    env.iter()
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (String::from_utf8_lossy(k), String::from_utf8_lossy(v)))
        .filter(|(k, _)| !h.deny.iter().any(|d| d == k) && !k.starts_with(h.deny_prefix.as_str()) && !h.image_keys.iter().any(|i| i == k))
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

/// Replaces the placeholders in one pass, left to right: what a value brings in (a command
/// argument that reads `@@ID@@`) is never replaced again. A list placeholder with its quotes
/// becomes the list's elements; an empty list takes one neighbouring comma with it, so that
/// `["a","@@ARGS@@"]`, `["@@ARGS@@","b"]` and `["@@ARGS@@"]` stay JSON.
pub fn expand(text: &str, v: &Values<'_>) -> String {
    let mut out = String::with_capacity(text.len() + 256);
    let mut rest = text;
    while let Some(at) = rest.find("@@") {
        // A list placeholder starts at the quote before the `@@`.
        let quoted = at > 0 && rest.as_bytes()[at - 1] == b'"';
        let after = &rest[at..];
        let list = if !quoted {
            None
        } else if after.starts_with("@@ARGS@@\"") {
            Some(("@@ARGS@@\"".len(), v.args))
        } else if after.starts_with("@@HOSTENV@@\"") {
            Some(("@@HOSTENV@@\"".len(), v.host_env))
        } else {
            None
        };
        if let Some((len, items)) = list {
            out.push_str(&rest[..at - 1]);
            rest = &rest[at + len..];
            if !items.is_empty() {
                out.push_str(items);
            } else if out.trim_end().ends_with(',') {
                let keep = out.trim_end().len() - 1;
                let tail = out[keep + 1..].to_string();
                out.truncate(keep);
                out.push_str(&tail);
            } else if rest.trim_start().starts_with(',') {
                let skip = rest.len() - rest.trim_start().len() + 1;
                rest = &rest[skip..];
            }
            continue;
        }
        let simple: [(&str, String); 5] = [
            ("@@ID@@", v.id.to_string()),
            ("@@ID12@@", v.id.get(..12).unwrap_or(v.id).to_string()),
            ("@@NAME@@", v.name.to_string()),
            ("@@CREATED@@", v.created.to_string()),
            ("@@TIMENANO@@", (u128::from(v.now_ms) * 1_000_000).to_string()),
        ];
        let time = ("@@TIME@@", (v.now_ms / 1000).to_string());
        match simple.iter().chain(std::iter::once(&time)).find(|(p, _)| after.starts_with(p)) {
            Some((p, val)) => {
                out.push_str(&rest[..at]);
                out.push_str(val);
                rest = &rest[at + p.len()..];
            }
            None => {
                out.push_str(&rest[..at + 2]);
                rest = &rest[at + 2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `Date.prototype.toISOString()` of a time in ms since the epoch: `2026-12-07T14:49:07.392Z`.
pub fn iso_time(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's days_from_civil, inverted).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, ms % 1000)
}

/// The environment as `(name, value)` byte pairs in environ's order (entries without `=` left out).
pub fn environ() -> Vec<(Vec<u8>, Vec<u8>)> {
    std::env::vars_os().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals<'a>(args: &'a str, host_env: &'a str) -> Values<'a> {
        Values {
            id: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            name: "brave_badger",
            created: "2026-12-07T14:49:07.392Z",
            now_ms: 1_765_115_347_123,
            args,
            host_env,
        }
    }

    #[test]
    fn expands_simple_placeholders() {
        let v = vals("", "");
        let t = r#"{"id":"@@ID@@","h":"@@ID12@@","n":"@@NAME@@","c":"@@CREATED@@","time":@@TIME@@,"timeNano":@@TIMENANO@@,"x":"@@NOPE@@ @@"}"#;
        assert_eq!(
            expand(t, &v),
            r#"{"id":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","h":"0123456789ab","n":"brave_badger","c":"2026-12-07T14:49:07.392Z","time":1765115347,"timeNano":1765115347123000000,"x":"@@NOPE@@ @@"}"#
        );
        assert_eq!(expand("--root=/r/@@ID@@/x", &v), "--root=/r/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef/x");
    }

    #[test]
    fn list_placeholders_and_their_commas() {
        let args = json_list(&["sh", "-c", "echo \"$X\" \\ \n\t\u{1}\u{7f}é @@ID@@"]);
        assert_eq!(args, r#""sh","-c","echo \"$X\" \\ \n\t\u0001é @@ID@@""#.replace("é", "\u{7f}é"));
        let v = vals(&args, r#""A=1","B=x y""#);
        // Each position of the element in its list; a value's own `@@ID@@` stays as it was.
        assert_eq!(expand(r#"["/bin/e","@@ARGS@@"]"#, &v), format!("[\"/bin/e\",{args}]"));
        assert_eq!(expand(r#"["@@ARGS@@","z"]"#, &v), format!("[{args},\"z\"]"));
        assert_eq!(expand(r#"{"env":["P=1","@@HOSTENV@@","Q=2"]}"#, &v), r#"{"env":["P=1","A=1","B=x y","Q=2"]}"#);
        let e = vals("", "");
        assert_eq!(expand(r#"["P=1","@@HOSTENV@@","Q=2"]"#, &e), r#"["P=1","Q=2"]"#);
        assert_eq!(expand(r#"["P=1","@@HOSTENV@@"]"#, &e), r#"["P=1"]"#);
        assert_eq!(expand(r#"["@@HOSTENV@@","Q=2"]"#, &e), r#"["Q=2"]"#);
        assert_eq!(expand(r#"["@@HOSTENV@@"]"#, &e), r#"[]"#);
        // Pretty-printed lists stay JSON too.
        let pretty = "[\n  \"P=1\",\n  \"@@HOSTENV@@\"\n]";
        assert_eq!(serde_json::from_str::<Vec<String>>(&expand(pretty, &e)).unwrap(), ["P=1"]);
        let pretty = "[\n  \"@@HOSTENV@@\",\n  \"Q=2\"\n]";
        assert_eq!(serde_json::from_str::<Vec<String>>(&expand(pretty, &e)).unwrap(), ["Q=2"]);
        // The whole thing parses back to the command as given.
        let full = expand(r#"{"args":["@@ARGS@@"]}"#, &v);
        let back: serde_json::Value = serde_json::from_str(&full).unwrap();
        assert_eq!(back["args"][2], "echo \"$X\" \\ \n\t\u{1}\u{7f}é @@ID@@");
        // Without its quotes it is no list placeholder.
        assert_eq!(expand("@@ARGS@@", &v), "@@ARGS@@");
    }

    #[test]
    fn host_env_as_hpc_ts_filters_it() {
        let env: Vec<(Vec<u8>, Vec<u8>)> = [("PATH", "/bin"), ("HOME", "/h"), ("BURROW_X", "1"), ("FOO", "a=b"), ("IMG", "1"), ("", "x"), ("Z", "")]
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        let h = HostEnv { deny: vec!["PATH".into()], deny_prefix: "BURROW_".into(), image_keys: vec!["IMG".into()] };
        assert_eq!(host_env(&h, &env), ["HOME=/h", "FOO=a=b", "Z="]);
    }

    #[test]
    fn iso_time_as_javascript_writes_it() {
        // new Date(1765115347123).toISOString(), and the leap day of 2024, and the epoch.
        assert_eq!(iso_time(1_765_115_347_123), "2025-12-07T13:49:07.123Z");
        assert_eq!(iso_time(1_709_164_800_005), "2024-02-29T00:00:00.005Z");
        assert_eq!(iso_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_time(1_796_654_947_392), "2026-12-07T14:49:07.392Z");
    }

    fn plan_json(extra_env: &str, files: &str) -> String {
        format!(
            r#"{{"version":1,"key":"k","checks":{{"uid":1,"gid":2,"groups":[3,2],"cwd":"/w","hostname":null,
            "env":{{"PATH":"/bin","BURROW_ROOT":null,"BURROW_OK":"1"{extra_env}}},"envPrefixes":["BURROW_"],"files":[{files}]}},
            "containersDir":"/c","runtimeRoot":"/r","eventsFile":"/e","eventsMaxBytes":10,"names":{{"adjectives":["a"],"nouns":["b"]}},
            "dirs":[],"files":[],"eventsBefore":[],"eventsAfter":[],"runtime":{{"path":"/rt","args":[],"env":[]}},"cleanupCommand":[],"hostEnv":null,"future":1}}"#
        )
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        pairs.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())).collect()
    }

    #[test]
    fn checks_identity_env_and_prefixes() {
        let plan: Plan = serde_json::from_str(&plan_json("", "")).unwrap();
        let e = env(&[("PATH", "/bin"), ("BURROW_OK", "1"), ("HOME", "/h")]);
        fn host(e: &[(Vec<u8>, Vec<u8>)]) -> Host<'_> {
            Host { uid: 1, gid: 2, groups: vec![3], egid: 2, cwd: b"/w", hostname: b"h", umask: 0o022, env: e }
        }
        assert_eq!(check(&plan, "k", &host(&e)), None);
        assert_eq!(check(&plan, "other", &host(&e)).unwrap(), "its key is another one");
        assert!(check(&plan, "k", &Host { uid: 0, ..host(&e) }).is_some());
        assert!(check(&plan, "k", &Host { groups: vec![3, 4], ..host(&e) }).unwrap().contains("groups"));
        assert!(check(&plan, "k", &Host { cwd: b"/x", ..host(&e) }).unwrap().contains("working directory"));
        // A variable with another value, one that must be unset, a missing one, an unlisted BURROW_*.
        for (e, why) in [
            (env(&[("PATH", "/usr/bin"), ("BURROW_OK", "1")]), "$PATH changed"),
            (env(&[("PATH", "/bin"), ("BURROW_OK", "1"), ("BURROW_ROOT", "/s")]), "$BURROW_ROOT changed"),
            (env(&[("PATH", "/bin")]), "$BURROW_OK changed"),
            (env(&[("PATH", "/bin"), ("BURROW_OK", "1"), ("BURROW_NEW", "")]), "$BURROW_NEW is set"),
        ] {
            assert_eq!(check(&plan, "k", &host(&e)).unwrap(), why);
        }
        // An exempt name (BURROW_DEBUG) may be set whatever the plan says.
        let debug = env(&[("PATH", "/bin"), ("BURROW_OK", "1"), ("BURROW_DEBUG", "1")]);
        assert_eq!(check(&plan, "k", &host(&debug)).unwrap(), "$BURROW_DEBUG is set");
        let mut exempt: Plan = serde_json::from_str(&plan_json("", "")).unwrap();
        exempt.checks.env_exempt = vec!["BURROW_DEBUG".into()];
        assert_eq!(check(&exempt, "k", &host(&debug)), None);
        let mut masked: Plan = serde_json::from_str(&plan_json("", "")).unwrap();
        masked.checks.umask = Some(0o022);
        assert_eq!(check(&masked, "k", &host(&e)), None);
        assert_eq!(check(&masked, "k", &Host { umask: 0o077, ..host(&e) }).unwrap(), "another umask (077)");
        let mut p2: Plan = serde_json::from_str(&plan_json("", "")).unwrap();
        p2.checks.hostname = Some("other".into());
        assert_eq!(check(&p2, "k", &host(&e)).unwrap(), "another host name");
        p2.version = 2;
        assert!(check(&p2, "k", &host(&e)).unwrap().starts_with("version 2"));
    }

    #[test]
    fn checks_files() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("image.sqfs");
        std::fs::write(&f, "one").unwrap();
        let m = std::fs::metadata(&f).unwrap();
        let ns = |s: i64, n: i64| (i128::from(s) * 1_000_000_000 + i128::from(n)).to_string();
        let entry = |p: &std::path::Path| {
            format!(
                r#"{{"path":"{}","dev":{},"ino":{},"size":{},"mtimeNs":"{}","ctimeNs":"{}"}}"#,
                p.display(),
                m.dev(),
                m.ino(),
                m.size(),
                ns(m.mtime(), m.mtime_nsec()),
                ns(m.ctime(), m.ctime_nsec())
            )
        };
        let absent = format!(r#"{{"path":"{}","absent":true}}"#, t.path().join("config.toml").display());
        let plan: Plan = serde_json::from_str(&plan_json("", &format!("{},{absent}", entry(&f)))).unwrap();
        let e = env(&[("PATH", "/bin"), ("BURROW_OK", "1")]);
        let host = Host { uid: 1, gid: 2, groups: vec![3], egid: 2, cwd: b"/w", hostname: b"h", umask: 0o022, env: &e };
        assert_eq!(check(&plan, "k", &host), None);
        // A file that appeared where none was.
        std::fs::write(t.path().join("config.toml"), "").unwrap();
        assert!(check(&plan, "k", &host).unwrap().contains("exists now"));
        std::fs::remove_file(t.path().join("config.toml")).unwrap();
        // Touched: the same content, new times.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&f, "one").unwrap();
        assert!(check(&plan, "k", &host).unwrap().ends_with("image.sqfs changed"));
        // Gone.
        std::fs::remove_file(&f).unwrap();
        assert!(check(&plan, "k", &host).unwrap().contains("No such file"));
    }

    #[test]
    fn groups_compare_as_node_lists_them() {
        assert_eq!(group_set(&[5, 3, 5], 2), [2, 3, 5]);
        assert_eq!(group_set(&[2, 3], 2), group_set(&[3], 2));
    }
}
