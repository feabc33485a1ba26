//! Appending the plan's event lines to the engine's events file, as ts/engine/events.ts
//! emitEvent does: one O_APPEND write per line (concurrent writers do not interleave), and the
//! file rotated to `FILE.1` once it passes its size limit, only if the path still names the
//! file just written (two writers crossing the limit together must not both rename). Losing an
//! event (a full or read-only run root) never fails the run.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

pub fn append(file: &Path, line: &str, max_bytes: u64) {
    if let Some(dir) = file.parent() {
        let _ = std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir);
    }
    let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(file) else { return };
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    if f.write_all(&buf).is_err() {
        return;
    }
    let Ok(st) = f.metadata() else { return };
    if st.size() > max_bytes && std::fs::metadata(file).is_ok_and(|m| m.ino() == st.ino() && m.dev() == st.dev()) {
        let mut rotated = file.as_os_str().to_owned();
        rotated.push(".1");
        let _ = std::fs::rename(file, rotated);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn appends_and_rotates_past_the_limit() {
        let t = tempfile::tempdir().unwrap();
        let file = t.path().join("run").join("events.jsonl");
        let rotated = t.path().join("run").join("events.jsonl.1");
        append(&file, r#"{"a":1}"#, 20);
        // Made private, with its directory.
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(file.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        append(&file, r#"{"b":2}"#, 20);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "{\"a\":1}\n{\"b\":2}\n");
        // 24 bytes > 20: this write goes to the file, which then becomes FILE.1.
        append(&file, r#"{"c":3}"#, 20);
        assert!(!file.exists());
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n");
        append(&file, r#"{"d":4}"#, 20);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "{\"d\":4}\n");
        assert_eq!(std::fs::read_to_string(&rotated).unwrap().lines().count(), 3);
        // Under the limit: never rotated.
        append(&file, r#"{"e":5}"#, 1 << 20);
        assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 2);
    }

    #[test]
    fn a_lost_event_is_not_an_error() {
        append(Path::new("/proc/nonexistent/events.jsonl"), "{}", 10);
    }
}
