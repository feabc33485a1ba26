//! The monitor's attach server: `burrow attach`, and `burrow run -it` (which runs its container
//! under the monitor so that it can detach), reach the container the monitor holds through a
//! unix socket, D/attach.sock, and the `run` that starts the monitor also through a connected
//! socket it hands over as `--attach-fd` (so the first output, a shell's prompt, is not printed
//! before anyone listens).
//!
//! Both directions are framed: one type byte, a 4-byte big-endian length, the payload.
//!   client → monitor  DATA         bytes for the terminal, or for the container's stdin pipe (-i)
//!                     RESIZE       rows, cols (u16 each): TIOCSWINSZ on the pty master, after
//!                                  which the kernel sends SIGWINCH to the terminal's foreground
//!                     CLOSE_STDIN  the client's input ended: the stdin pipe is closed once what
//!                                  came before is written (`start -ai` of a `-i` container)
//!                     LOG_SEAM     where the log meets this client's live stream (attach with
//!                                  logs=1): answered with SEAM
//!   monitor → client  STDOUT, STDERR  output (with a terminal all of it is STDOUT)
//!                     EXIT         the container's status (i32), after the exit record is written
//!                     SEAM         the log's size in bytes (u64) now, followed by the output that
//!                                  is not in the log yet (its partial lines) as STDOUT and STDERR
//!                                  frames: everything the container wrote before is in the log
//!                                  up to that size or in those frames, everything after comes as
//!                                  live frames, so a client that drops the live frames before
//!                                  SEAM and replays the log up to the size misses and repeats
//!                                  nothing
//! The monitor closes its clients when it is done with the container, after the exit command: the
//! client of a `--rm` container then knows that it is removed, as Docker's client waits for.
//! Output is framed rather than relayed raw (conmon relays raw bytes) because the status must
//! reach the client of a `--rm` container, whose exit record the exit command deletes, and
//! because `-i` without `-t` keeps stdout and stderr apart, as Docker's attach does.
//!
//! Single-threaded like the monitor: every descriptor is non-blocking and served from the
//! monitor's poll loop (`poll_fds`, then `dispatch` with what was ready, in the same order). A
//! client that does not read its output is dropped once OUT_LIMIT bytes wait for it, rather than
//! stall the container or the log; a client that goes away is dropped.

use std::io::{ErrorKind, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burrow_core::runtime::state::with_short_path;
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{send, MsgFlags};

pub const SOCKET: &str = "attach.sock";

const DATA: u8 = 1;
const RESIZE: u8 = 2;
const CLOSE_STDIN: u8 = 3;
const LOG_SEAM: u8 = 4;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const EXIT: u8 = 3;
const SEAM: u8 = 4;

/// The log as its writer sees it: the bytes in the file, and the output not written to it yet
/// (the partial lines of stdout and stderr), for LOG_SEAM.
pub trait LogSeam {
    fn seam(&self) -> (u64, [&[u8]; 2]);
}

/// No log (the "none" driver, or the tests): an empty seam.
impl LogSeam for () {
    fn seam(&self) -> (u64, [&[u8]; 2]) {
        (0, [&[], &[]])
    }
}

/// Larger client frames are a broken client, not input.
const MAX_FRAME: usize = 1 << 20;
/// Output waiting for one client before it is dropped.
const OUT_LIMIT: usize = 4 << 20;
/// Input waiting for the terminal or pipe beyond which clients are not read (backpressure).
const IN_LIMIT: usize = 64 << 10;
const MAX_CLIENTS: usize = 64;
/// How long the last output and the status may take to reach the clients after the exit.
const FINISH_WAIT: Duration = Duration::from_secs(2);

struct Client {
    sock: UnixStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    gone: bool,
}

impl Client {
    fn new(sock: UnixStream) -> Option<Client> {
        sock.set_nonblocking(true).ok()?;
        Some(Client { sock, inbuf: Vec::new(), out: Vec::new(), gone: false })
    }

    /// Writes what it can without blocking; a failed write drops the client.
    fn flush(&mut self) {
        while !self.out.is_empty() && !self.gone {
            // MSG_NOSIGNAL: a client that went away is an EPIPE here, never a signal.
            match send(self.sock.as_raw_fd(), &self.out, MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT) {
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => break,
                Err(_) => self.gone = true,
            }
        }
    }

    fn push(&mut self, kind: u8, payload: &[u8]) {
        if self.gone {
            return;
        }
        if self.out.len() + payload.len() + 5 > OUT_LIMIT {
            self.gone = true;
            return;
        }
        self.out.push(kind);
        self.out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        self.out.extend_from_slice(payload);
        self.flush();
    }

    /// Reads what is there (at most one buffer's worth per turn) and returns complete frames.
    fn read_frames(&mut self) -> Vec<(u8, Vec<u8>)> {
        let mut buf = [0u8; 65536];
        loop {
            match self.sock.read(&mut buf) {
                Ok(0) => {
                    self.gone = true;
                    break;
                }
                Ok(n) => {
                    self.inbuf.extend_from_slice(&buf[..n]);
                    if n < buf.len() || self.inbuf.len() >= IN_LIMIT {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.gone = true;
                    break;
                }
            }
        }
        let mut frames = Vec::new();
        let mut at = 0;
        while self.inbuf.len() - at >= 5 {
            let len = u32::from_be_bytes([self.inbuf[at + 1], self.inbuf[at + 2], self.inbuf[at + 3], self.inbuf[at + 4]]) as usize;
            if len > MAX_FRAME {
                self.gone = true;
                break;
            }
            if self.inbuf.len() - at < 5 + len {
                break;
            }
            frames.push((self.inbuf[at], self.inbuf[at + 5..at + 5 + len].to_vec()));
            at += 5 + len;
        }
        self.inbuf.drain(..at);
        frames
    }
}

enum Slot {
    Listener,
    Input,
    Client(usize),
}

pub struct AttachServer {
    dir: PathBuf,
    listener: Option<UnixListener>,
    /// Device and inode of the socket we bound: removed at the end only if it is still ours (a
    /// restarted container's new monitor may have bound its own meanwhile).
    bound: Option<(u64, u64)>,
    clients: Vec<Client>,
    /// The pty master (a second descriptor of the monitor's) or the write end of the stdin pipe.
    input: Option<OwnedFd>,
    tty: bool,
    pending: Vec<u8>,
    close_input: bool,
}

/// "ROWSxCOLS", as `monitor --tty-size` takes it.
pub fn parse_size(s: &str) -> Option<(u16, u16)> {
    let (r, c) = s.split_once('x')?;
    Some((r.parse().ok()?, c.parse().ok()?))
}

/// Sets a terminal's size through its master: the kernel signals the foreground with SIGWINCH.
pub fn set_size(master: BorrowedFd, rows: u16, cols: u16) {
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ with a valid winsize on a descriptor we hold.
    unsafe {
        libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
    }
}

fn nonblocking(fd: BorrowedFd) {
    if let Ok(fl) = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL) {
        let _ = fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(OFlag::from_bits_truncate(fl) | OFlag::O_NONBLOCK));
    }
}

impl AttachServer {
    /// Listens on `dir`/attach.sock. `input` is where clients' DATA goes (none: it is dropped);
    /// a socket that cannot be bound leaves the container running without one (attach then
    /// follows the log, as for containers of a foreground `run`).
    pub fn new(dir: &Path, input: Option<OwnedFd>, tty: bool) -> AttachServer {
        // A descriptor shared with the monitor's reader of the same pty: its reads already take
        // EAGAIN as "nothing yet".
        if let Some(fd) = &input {
            nonblocking(fd.as_fd());
        }
        let listener = with_short_path(dir, SOCKET, |p| {
            let _ = std::fs::remove_file(p);
            let l = UnixListener::bind(p)?;
            let m = std::fs::metadata(p)?;
            Ok((l, (m.dev(), m.ino())))
        })
        .ok();
        let (listener, bound) = match listener {
            Some((l, id)) if l.set_nonblocking(true).is_ok() => (Some(l), Some(id)),
            _ => (None, None),
        };
        AttachServer { dir: dir.to_path_buf(), listener, bound, clients: Vec::new(), input, tty, pending: Vec::new(), close_input: false }
    }

    /// Serves an already connected socket (`monitor --attach-fd`) as a client.
    pub fn adopt(&mut self, fd: OwnedFd) {
        // It must not reach the container nor the exit command.
        let _ = fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
        if let Some(c) = Client::new(UnixStream::from(fd)) {
            self.clients.push(c);
        }
    }

    fn slots(&self) -> Vec<(Slot, BorrowedFd<'_>, PollFlags)> {
        let mut v = Vec::new();
        if let Some(l) = &self.listener {
            if self.clients.len() < MAX_CLIENTS {
                v.push((Slot::Listener, l.as_fd(), PollFlags::POLLIN));
            }
        }
        if let (Some(i), false) = (&self.input, self.pending.is_empty()) {
            v.push((Slot::Input, i.as_fd(), PollFlags::POLLOUT));
        }
        for (k, c) in self.clients.iter().enumerate() {
            let mut f = PollFlags::empty();
            if self.pending.len() < IN_LIMIT {
                f |= PollFlags::POLLIN;
            }
            if !c.out.is_empty() {
                f |= PollFlags::POLLOUT;
            }
            v.push((Slot::Client(k), c.sock.as_fd(), f));
        }
        v
    }

    /// Appends the descriptors to poll; `dispatch` takes their readiness in the same order.
    pub fn poll_fds<'a>(&'a self, fds: &mut Vec<PollFd<'a>>) {
        for (_, fd, flags) in self.slots() {
            fds.push(PollFd::new(fd, flags));
        }
    }

    /// Serves what `poll` found ready: `ready[k]` for the k-th descriptor of `poll_fds`; `log`
    /// answers LOG_SEAM.
    pub fn dispatch(&mut self, ready: &[bool], log: &dyn LogSeam) {
        let slots: Vec<Slot> = self.slots().into_iter().map(|s| s.0).collect();
        for (k, slot) in slots.into_iter().enumerate() {
            if !ready.get(k).copied().unwrap_or(false) {
                continue;
            }
            match slot {
                // New clients go to the end: the indices of the slots after this one still hold.
                Slot::Listener => self.accept(),
                Slot::Input => self.flush_input(),
                Slot::Client(i) => {
                    let frames = self.clients[i].read_frames();
                    for (kind, payload) in frames {
                        if kind == LOG_SEAM {
                            let (size, partial) = log.seam();
                            let c = &mut self.clients[i];
                            c.push(SEAM, &size.to_be_bytes());
                            for (kind, bytes) in [(STDOUT, partial[0]), (STDERR, partial[1])] {
                                if !bytes.is_empty() {
                                    c.push(kind, bytes);
                                }
                            }
                        } else {
                            self.handle(kind, &payload);
                        }
                    }
                    self.clients[i].flush();
                }
            }
        }
        self.flush_input();
        self.clients.retain(|c| !c.gone);
    }

    fn accept(&mut self) {
        let Some(l) = &self.listener else { return };
        while self.clients.len() < MAX_CLIENTS {
            match l.accept() {
                Ok((s, _)) => {
                    if let Some(c) = Client::new(s) {
                        self.clients.push(c);
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }

    fn handle(&mut self, kind: u8, payload: &[u8]) {
        match kind {
            DATA if self.input.is_some() && !self.close_input => self.pending.extend_from_slice(payload),
            RESIZE if self.tty && payload.len() >= 4 => {
                if let Some(m) = &self.input {
                    set_size(m.as_fd(), u16::from_be_bytes([payload[0], payload[1]]), u16::from_be_bytes([payload[2], payload[3]]));
                }
            }
            // A terminal has no end of input to pass on (^D is a byte in raw mode).
            CLOSE_STDIN if !self.tty => self.close_input = true,
            // Unknown kinds are skipped: a newer client may send more than this monitor knows.
            _ => {}
        }
    }

    fn flush_input(&mut self) {
        let Some(fd) = &self.input else { return };
        while !self.pending.is_empty() {
            match nix::unistd::write(fd, &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return,
                // EPIPE, EIO: the container closed its stdin or its terminal; input goes nowhere.
                Err(_) => {
                    self.pending.clear();
                    self.input = None;
                    return;
                }
            }
        }
        if self.close_input {
            self.input = None;
        }
    }

    /// Output of the container (`stream` 0: stdout or the terminal, 1: stderr) to every client.
    pub fn output(&mut self, stream: usize, data: &[u8]) {
        if data.is_empty() || self.clients.is_empty() {
            return;
        }
        let kind = if stream == 0 { STDOUT } else { STDERR };
        for c in &mut self.clients {
            c.push(kind, data);
        }
        self.clients.retain(|c| !c.gone);
    }

    fn unlisten(&mut self) {
        if self.listener.take().is_none() {
            return;
        }
        let bound = self.bound;
        let _ = with_short_path(&self.dir, SOCKET, |p| {
            let m = std::fs::symlink_metadata(p)?;
            if Some((m.dev(), m.ino())) == bound {
                std::fs::remove_file(p)?;
            }
            Ok(())
        });
    }

    /// The container has exited and its status is recorded: no new clients, no more input; the
    /// remaining output and the status go to every client, waiting at most FINISH_WAIT for slow
    /// ones. The connections stay open until the server is dropped.
    pub fn finish(&mut self, code: i32) {
        self.unlisten();
        self.input = None;
        self.pending.clear();
        for c in &mut self.clients {
            c.push(EXIT, &code.to_be_bytes());
        }
        let end = Instant::now() + FINISH_WAIT;
        loop {
            self.clients.retain(|c| !c.gone);
            let waiting: Vec<usize> = (0..self.clients.len()).filter(|&i| !self.clients[i].out.is_empty()).collect();
            let left = end.saturating_duration_since(Instant::now());
            if waiting.is_empty() || left.is_zero() {
                break;
            }
            let mut fds: Vec<PollFd> = waiting.iter().map(|&i| PollFd::new(self.clients[i].sock.as_fd(), PollFlags::POLLOUT)).collect();
            let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) => break,
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => break,
            }
            drop(fds);
            for i in waiting {
                self.clients[i].flush();
            }
        }
    }
}

impl Drop for AttachServer {
    fn drop(&mut self) {
        self.unlisten();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![kind];
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn serve(s: &mut AttachServer) {
        let n = {
            let mut fds = Vec::new();
            s.poll_fds(&mut fds);
            let _ = poll(&mut fds, PollTimeout::from(1000u16));
            fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect::<Vec<bool>>()
        };
        s.dispatch(&n, &());
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("burrow-attach-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("30x100"), Some((30, 100)));
        assert_eq!(parse_size("30"), None);
        assert_eq!(parse_size("ax1"), None);
    }

    #[test]
    fn input_split_frames_and_close() {
        let dir = tempdir("input");
        let (r, w) = nix::unistd::pipe().unwrap();
        let mut s = AttachServer::new(&dir, Some(w), false);
        assert!(dir.join(SOCKET).exists());
        let (mut mine, theirs) = UnixStream::pair().unwrap();
        s.adopt(OwnedFd::from(theirs));
        // A frame cut in two arrives whole; CLOSE_STDIN ends the pipe after what came before.
        let mut bytes = frame(DATA, b"hello ");
        bytes.extend(frame(DATA, b"world"));
        bytes.extend(frame(CLOSE_STDIN, b""));
        mine.write_all(&bytes[..3]).unwrap();
        serve(&mut s);
        mine.write_all(&bytes[3..]).unwrap();
        serve(&mut s);
        let mut got = String::new();
        std::fs::File::from(r).read_to_string(&mut got).unwrap();
        assert_eq!(got, "hello world");
        // Output reaches the client framed by stream; the status follows at the end.
        s.output(1, b"err");
        s.finish(7);
        assert!(!dir.join(SOCKET).exists());
        drop(s);
        let mut out = Vec::new();
        mine.read_to_end(&mut out).unwrap();
        let mut want = frame(STDERR, b"err");
        want.extend(frame(EXIT, &7i32.to_be_bytes()));
        assert_eq!(out, want);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A log of 42 bytes with "par" of a line not written yet.
    struct Fixed;
    impl LogSeam for Fixed {
        fn seam(&self) -> (u64, [&[u8]; 2]) {
            (42, [b"par", &[]])
        }
    }

    #[test]
    fn log_seam_answers_the_size_and_the_partial_output() {
        let dir = tempdir("seam");
        let mut s = AttachServer::new(&dir, None, false);
        let (mut mine, theirs) = UnixStream::pair().unwrap();
        s.adopt(OwnedFd::from(theirs));
        s.output(0, b"live before\n");
        mine.write_all(&frame(LOG_SEAM, b"")).unwrap();
        let n = {
            let mut fds = Vec::new();
            s.poll_fds(&mut fds);
            let _ = poll(&mut fds, PollTimeout::from(1000u16));
            fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect::<Vec<bool>>()
        };
        s.dispatch(&n, &Fixed);
        s.output(0, b"tial\n");
        s.finish(0);
        drop(s);
        let mut out = Vec::new();
        mine.read_to_end(&mut out).unwrap();
        let mut want = frame(STDOUT, b"live before\n");
        want.extend(frame(SEAM, &42u64.to_be_bytes()));
        want.extend(frame(STDOUT, b"par"));
        want.extend(frame(STDOUT, b"tial\n"));
        want.extend(frame(EXIT, &0i32.to_be_bytes()));
        assert_eq!(out, want);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn listener_and_vanishing_client() {
        let dir = tempdir("listen");
        let mut s = AttachServer::new(&dir, None, false);
        let c = UnixStream::connect(dir.join(SOCKET)).unwrap();
        serve(&mut s);
        assert_eq!(s.clients.len(), 1);
        drop(c);
        serve(&mut s);
        assert_eq!(s.clients.len(), 0);
        // A socket that is no longer ours is left alone.
        std::fs::remove_file(dir.join(SOCKET)).unwrap();
        std::fs::write(dir.join(SOCKET), "").unwrap();
        drop(s);
        assert!(dir.join(SOCKET).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
