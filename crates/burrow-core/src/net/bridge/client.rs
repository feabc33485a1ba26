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

/// The container's lease on the owner: the `attach` connection, kept open for the container's
/// life by the process that outlives it (monitor or foreground run). Its end of file while the
/// container runs means the owner died (killed): the container's interfaces went with N's ends
/// of its veths, so the loss is recorded where `inspect`, `ps` and the next `run` look.
pub struct Lease {
    conn: UnixStream,
    /// (id, name) of each network the container is on.
    networks: Vec<(String, String)>,
    lost_file: Option<std::path::PathBuf>,
    lost: bool,
}

impl Lease {
    /// Attaches the container whose init is `pid` as `cfg` says, and keeps the connection.
    pub fn attach(cfg: &crate::net::BridgeConfig, pid: i32) -> Result<(Lease, Vec<super::Interface>)> {
        let mut conn = connect(&cfg.owner_dir)?;
        let reply = request(&mut conn, &Request::Attach { pid, container: cfg.container.clone(), endpoints: cfg.endpoints.clone(), dns: cfg.dns.clone() })?;
        conn.set_nonblocking(true).map_err(|e| NetError::Helper { helper: "network owner".into(), detail: e.to_string() })?;
        let networks = cfg.endpoints.iter().map(|e| (e.network.id.clone(), e.network.name.clone())).collect();
        Ok((Lease { conn, networks, lost_file: cfg.lost_file.clone(), lost: false }, reply.interfaces))
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.conn)
    }

    /// The connection is readable: the owner never speaks unasked, so this is its end (or a
    /// stray byte, ignored). Returns the networks lost (id, name), once, when the owner has gone.
    pub fn check(&mut self) -> Option<Vec<(String, String)>> {
        if self.lost {
            return None;
        }
        let mut buf = [0u8; 256];
        let gone = match std::io::Read::read(&mut self.conn, &mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted),
        };
        if !gone {
            return None;
        }
        self.lost = true;
        if let Some(p) = &self.lost_file {
            let names: Vec<&String> = self.networks.iter().map(|n| &n.1).collect();
            let rec = serde_json::json!({ "at": crate::runtime::state::now_rfc3339(), "networks": names });
            crate::runtime::holder::write_atomic(p, &rec.to_string());
        }
        Some(self.networks.clone())
    }

    pub fn is_lost(&self) -> bool {
        self.lost
    }
}
