//! The client side of the owner's protocol (mod.rs): the monitor's (and the foreground `run`'s)
//! attach, whose connection it then keeps as the container's lease.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::{Reply, Request, OWNER_SOCKET};
use crate::net::{NetError, Result};

/// Sends `req` on `conn` and reads the one-line reply; a reply with `ok: false` is an error.
pub fn request(conn: &mut UnixStream, req: &Request) -> Result<Reply> {
    let helper = || "network owner".to_string();
    let mut line = serde_json::to_string(req).map_err(|e| NetError::Helper { helper: helper(), detail: e.to_string() })?;
    line.push('\n');
    conn.write_all(line.as_bytes()).map_err(|e| NetError::Helper { helper: helper(), detail: format!("send: {e}") })?;
    // One byte at a time would be slow; a BufReader over a clone reads past the line only if the
    // owner sent more than one reply, which it never does unasked.
    let mut reader = BufReader::new(conn.try_clone().map_err(|e| NetError::Helper { helper: helper(), detail: e.to_string() })?);
    let mut answer = String::new();
    reader.read_line(&mut answer).map_err(|e| NetError::Helper { helper: helper(), detail: format!("receive: {e}") })?;
    if answer.is_empty() {
        return Err(NetError::Helper { helper: helper(), detail: "closed the connection without an answer (see its owner.log)".into() });
    }
    let reply: Reply = serde_json::from_str(&answer).map_err(|e| NetError::Helper { helper: helper(), detail: format!("bad answer {answer:?}: {e}") })?;
    if !reply.ok {
        return Err(NetError::Helper { helper: helper(), detail: reply.message.unwrap_or_else(|| "failed".into()) });
    }
    Ok(reply)
}

/// Connects to the owner in `dir` (the CLI made sure it runs and holds a lease meanwhile).
pub fn connect(dir: &Path) -> Result<UnixStream> {
    let path = dir.join(OWNER_SOCKET);
    UnixStream::connect(&path).map_err(|e| NetError::Helper { helper: "network owner".into(), detail: format!("connect {}: {e}", path.display()) })
}
