//! Docker's healthchecks, run by the container's holder (the monitor: it outlives the CLI and is
//! there for as long as the container runs, so no daemon is needed for them).
//!
//! The pure part is Docker's state machine (moby's daemon/health.go): the status is `starting`
//! until the first probe that succeeds; a failure counts toward `retries` only once the start
//! period is over or the container has been healthy once; `retries` consecutive failures make
//! it `unhealthy`, one success `healthy` again; the last five results are kept. The timing
//! follows the same file: the first probe one interval after the start, the next one interval
//! after the previous one ended, at the start interval (when one is set) while the container is
//! starting within its start period.
//!
//! The running part (`Checker`) starts each probe through the runtime's own exec (super::exec,
//! so it joins the container's namespaces, cgroup, user and seccomp filter as `exec` does), with
//! its stdout and stderr into one pipe, of which the first 4096 bytes are kept. A probe still
//! running at its timeout is killed with its process group (it runs in a session of its own)
//! and counts as a failure. The state goes whole to D/health.json, which only the holder writes,
//! and every change of status appends Docker's `health_status: STATUS` event.

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use super::exec::{exec, ExecOpts};
use super::state::rfc3339;

/// Docker's defaults (moby: defaultProbeInterval, defaultProbeTimeout, defaultProbeRetries).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_RETRIES: u32 = 3;
/// moby's maxLogEntries and maxOutputLen.
pub const MAX_LOG: usize = 5;
pub const MAX_OUTPUT: usize = 4096;

/// What D/health.json and the events call the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Starting,
    Healthy,
    Unhealthy,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Healthy => "healthy",
            Status::Unhealthy => "unhealthy",
        }
    }
}

/// A container's healthcheck, as Docker's Config.Healthcheck gives it (durations in ns).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The command to run in the container: CMD's argv, or CMD-SHELL's as `/bin/sh -c CMD`.
    pub argv: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    /// None: probes during the start period come at `interval` too.
    pub start_interval: Option<Duration>,
    pub retries: u32,
}

impl Config {
    /// Docker's JSON (`{"Test": [...], "Interval": NS, ...}`); None when it runs nothing:
    /// `["NONE"]`, no test, or one Docker would not run either (an unknown kind, CMD without a
    /// command: moby monitors nothing then). What the engine accepted from a user was checked
    /// there; an image's odd config must not keep its containers from starting.
    pub fn parse(json: &str) -> Result<Option<Config>, String> {
        let v: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("invalid healthcheck {json:?}: {e}"))?;
        let test: Vec<String> = v.get("Test").and_then(|t| serde_json::from_value(t.clone()).ok()).unwrap_or_default();
        let argv = match test.split_first() {
            Some((k, rest)) if k == "CMD" && !rest.is_empty() => rest.to_vec(),
            // moby appends the rest to the shell's argv: sh -c CMD [ARG0 ...].
            Some((k, rest)) if k == "CMD-SHELL" && !rest.is_empty() => {
                ["/bin/sh".to_string(), "-c".to_string()].into_iter().chain(rest.iter().cloned()).collect()
            }
            _ => return Ok(None),
        };
        // Zero, absent or not a duration: Docker's default.
        let ns = |k: &str| -> Result<Option<Duration>, String> { Ok(v.get(k).and_then(|n| n.as_u64()).filter(|n| *n > 0).map(Duration::from_nanos)) };
        let retries = match v.get("Retries").and_then(|r| r.as_u64()) {
            Some(0) | None => DEFAULT_RETRIES,
            Some(r) => r.min(u32::MAX as u64) as u32,
        };
        Ok(Some(Config {
            argv,
            interval: ns("Interval")?.unwrap_or(DEFAULT_INTERVAL),
            timeout: ns("Timeout")?.unwrap_or(DEFAULT_TIMEOUT),
            start_period: ns("StartPeriod")?.unwrap_or(Duration::ZERO),
            start_interval: ns("StartInterval")?,
            retries,
        }))
    }

    /// The wait before the next probe, `since_start` after the container started (moby's getInterval).
    pub fn next_interval(&self, status: Status, since_start: Duration) -> Duration {
        match self.start_interval {
            Some(si) if since_start < self.start_period && status == Status::Starting => si,
            _ => self.interval,
        }
    }
}

/// One probe's result, as Docker's HealthcheckResult.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub start: SystemTime,
    pub end: SystemTime,
    /// 0 healthy; anything else a failure (-1: it could not run or exceeded its timeout).
    pub exit_code: i32,
    pub output: String,
}

/// The state D/health.json holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub status: Status,
    pub failing_streak: u32,
    pub log: VecDeque<Probe>,
}

impl Default for Health {
    fn default() -> Self {
        Health { status: Status::Starting, failing_streak: 0, log: VecDeque::new() }
    }
}

impl Health {
    /// Takes a probe's result (moby's handleProbeResult); `since_start`: from the container's
    /// start to the probe's. Returns the new status when it changed.
    pub fn record(&mut self, cfg: &Config, r: Probe, since_start: Duration) -> Option<Status> {
        let old = self.status;
        let ok = r.exit_code == 0;
        if self.log.len() >= MAX_LOG {
            self.log.pop_front();
        }
        self.log.push_back(r);
        if ok {
            self.failing_streak = 0;
            self.status = Status::Healthy;
        } else if !(self.status == Status::Starting && since_start < cfg.start_period) {
            // Failures while starting within the start period do not count.
            self.failing_streak += 1;
            if self.failing_streak >= cfg.retries {
                self.status = Status::Unhealthy;
            }
        }
        (self.status != old).then_some(self.status)
    }

    /// Docker's State.Health.
    pub fn to_json(&self) -> serde_json::Value {
        let t = |s: SystemTime| {
            let d = s.duration_since(UNIX_EPOCH).unwrap_or_default();
            rfc3339(d.as_secs() as i64, d.subsec_nanos())
        };
        serde_json::json!({
            "Status": self.status.as_str(),
            "FailingStreak": self.failing_streak,
            "Log": self.log.iter().map(|p| serde_json::json!({
                "Start": t(p.start),
                "End": t(p.end),
                "ExitCode": p.exit_code,
                "Output": p.output,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Keeps the first MAX_OUTPUT bytes of a probe's output, as moby's limitedBuffer.
#[derive(Debug, Default)]
pub struct Output {
    buf: Vec<u8>,
}

impl Output {
    pub fn push(&mut self, data: &[u8]) {
        let room = MAX_OUTPUT - self.buf.len();
        self.buf.extend_from_slice(&data[..data.len().min(room)]);
    }

    pub fn text(&self) -> String {
        // Cut at a character boundary: the whole stays at most MAX_OUTPUT bytes.
        let mut s = String::from_utf8_lossy(&self.buf).into_owned();
        while s.len() > MAX_OUTPUT {
            s.pop();
        }
        s
    }
}

/// A probe that runs now.
struct Running {
    pid: Pid,
    out: Option<OwnedFd>,
    output: Output,
    start_wall: SystemTime,
    start: Instant,
    deadline: Instant,
    timed_out: bool,
}

/// Where the checker writes.
pub struct Target {
    /// The runtime's root and the container's id, for exec.
    pub root: PathBuf,
    pub id: String,
    /// The container's directory (D/health.json) and the engine's events file.
    pub dir: PathBuf,
    pub events: Option<PathBuf>,
}

/// Runs a container's healthcheck inside a holder's poll loop: the loop polls `poll_fd`, wakes
/// after `wake_in`, calls `tick` after every wake, and hands every reaped child to `reaped`.
pub struct Checker {
    cfg: Config,
    spec: Spec,
    target: Target,
    started: Instant,
    health: Health,
    next_at: Instant,
    running: Option<Running>,
    /// A probe asked for now (`burrow healthcheck run`), to start when none runs.
    asked: bool,
}

impl Checker {
    /// For a container that started now; writes the initial state (`starting`).
    pub fn new(cfg: Config, spec: Spec, target: Target, now: Instant) -> Checker {
        let next_at = now + cfg.next_interval(Status::Starting, Duration::ZERO);
        let c = Checker { cfg, spec, target, started: now, health: Health::default(), next_at, running: None, asked: false };
        c.save();
        c
    }

    pub fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        self.running.as_ref().and_then(|r| r.out.as_ref()).map(|f| f.as_fd())
    }

    /// How long the loop may sleep before `tick` has something to do.
    pub fn wake_in(&self, now: Instant) -> Duration {
        match &self.running {
            Some(r) if r.timed_out => Duration::from_millis(50),
            Some(r) => r.deadline.saturating_duration_since(now),
            None if self.asked => Duration::ZERO,
            None => self.next_at.saturating_duration_since(now),
        }
    }

    /// Reads what the probe wrote.
    pub fn readable(&mut self) {
        let Some(r) = self.running.as_mut() else { return };
        drain(r);
    }

    /// `burrow healthcheck run`: a probe now (after the one that runs, if one does).
    pub fn ask(&mut self) {
        self.asked = true;
    }

    /// Starts a probe that is due, or kills one past its timeout.
    pub fn tick(&mut self, now: Instant) {
        if let Some(r) = self.running.as_mut() {
            if !r.timed_out && now >= r.deadline {
                r.timed_out = true;
                // Its session's group: a shell's children too. The pid is ours to reap (we are
                // its subreaper), so it is not reused before `reaped` sees it.
                let _ = kill(Pid::from_raw(-r.pid.as_raw()), Signal::SIGKILL);
                let _ = kill(r.pid, Signal::SIGKILL);
            }
            return;
        }
        if !self.asked && now < self.next_at {
            return;
        }
        self.asked = false;
        match self.launch(now) {
            Ok(r) => self.running = Some(r),
            Err(e) => {
                let t = SystemTime::now();
                self.finish(Probe { start: t, end: t, exit_code: -1, output: e.to_string() }, now, now);
            }
        }
    }

    /// Whether `ws` was the probe's; records its result if so.
    pub fn reaped(&mut self, ws: WaitStatus, now: Instant) -> bool {
        let Some(pid) = ws.pid() else { return false };
        if self.running.as_ref().map(|r| r.pid) != Some(pid) {
            return false;
        }
        let mut r = self.running.take().expect("a running probe");
        // What it wrote before it ended; a child of it that keeps the pipe is not waited for.
        drain(&mut r);
        let (exit_code, output) = if r.timed_out {
            (-1, format!("Health check exceeded timeout ({})", go_duration(self.cfg.timeout)))
        } else {
            (super::wait::status_code(ws).unwrap_or(-1), r.output.text())
        };
        self.finish(Probe { start: r.start_wall, end: SystemTime::now(), exit_code, output }, now, r.start);
        true
    }

    /// Kills a probe that still runs (the container ended).
    pub fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = kill(Pid::from_raw(-r.pid.as_raw()), Signal::SIGKILL);
            let _ = kill(r.pid, Signal::SIGKILL);
        }
    }

    fn finish(&mut self, p: Probe, now: Instant, probe_start: Instant) {
        let since = probe_start.saturating_duration_since(self.started);
        if let Some(s) = self.health.record(&self.cfg, p, since) {
            if let Some(ev) = &self.target.events {
                super::holder::append_event(ev, &self.target.dir, &self.target.id, &format!("health_status: {}", s.as_str()), &[]);
            }
        }
        self.save();
        self.next_at = now + self.cfg.next_interval(self.health.status, now.saturating_duration_since(self.started));
    }

    fn save(&self) {
        super::holder::write_atomic(&self.target.dir.join("health.json"), &self.health.to_json().to_string());
    }

    fn launch(&self, now: Instant) -> super::error::Result<Running> {
        use super::error::SysCtx;
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK).op("pipe")?;
        let mut process = self.spec.process().clone().unwrap_or_default();
        process.set_args(Some(self.cfg.argv.clone()));
        process.set_terminal(Some(false));
        process.set_console_size(None);
        // exec passes fds 0-2 through: the probe's stdout and stderr are the pipe for the
        // moment of the fork, ours again after it.
        let saved = [nix::unistd::dup(1).op("dup")?, nix::unistd::dup(2).op("dup")?];
        let _ = nix::unistd::dup2(w.as_raw_fd(), 1);
        let _ = nix::unistd::dup2(w.as_raw_fd(), 2);
        let start_wall = SystemTime::now();
        let opts = ExecOpts {
            root: self.target.root.clone(),
            id: self.target.id.clone(),
            process,
            console_socket: None,
            console_fd: None,
            pid_file: None,
            preserve_fds: 0,
            ignore_paused: false,
            new_session: true,
        };
        let res = exec(opts, &self.spec);
        for (fd, to) in saved.iter().zip([1, 2]) {
            let _ = nix::unistd::dup2(*fd, to);
            let _ = nix::unistd::close(*fd);
        }
        drop(w);
        let x = res?;
        Ok(Running {
            pid: Pid::from_raw(x.pid),
            out: Some(r),
            output: Output::default(),
            start_wall,
            start: now,
            deadline: now + self.cfg.timeout,
            timed_out: false,
        })
    }
}

fn drain(r: &mut Running) {
    let Some(fd) = &r.out else { return };
    let mut buf = [0u8; 8192];
    loop {
        match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
            Ok(0) => {
                r.out = None;
                return;
            }
            Ok(n) => r.output.push(&buf[..n]),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => return,
            Err(_) => {
                r.out = None;
                return;
            }
        }
    }
}

/// A duration as Go prints it (`30s`, `1.5s`, `500ms`), for Docker's timeout message.
pub fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000_000_000 {
        let ms = ns as f64 / 1e6;
        return format!("{}ms", trim(ms));
    }
    let secs = d.as_secs_f64();
    let (h, rest) = ((secs / 3600.0).floor(), secs % 3600.0);
    let (m, s) = ((rest / 60.0).floor(), rest % 60.0);
    let mut out = String::new();
    if h > 0.0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0.0 || m > 0.0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{}s", trim(s)));
    out
}

fn trim(v: f64) -> String {
    let s = format!("{v:.9}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// Where D/health.json is.
pub fn state_file(dir: &Path) -> PathBuf {
    dir.join("health.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(retries: u32, start_period: u64, start_interval: Option<u64>) -> Config {
        Config {
            argv: vec!["true".into()],
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
            start_period: Duration::from_secs(start_period),
            start_interval: start_interval.map(Duration::from_secs),
            retries,
        }
    }

    /// A fake clock: probes at `at` seconds after the start.
    fn probe(at: u64, code: i32) -> (Probe, Duration) {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000 + at);
        (Probe { start: t, end: t + Duration::from_millis(3), exit_code: code, output: format!("out {at}") }, Duration::from_secs(at))
    }

    #[test]
    fn parses_dockers_config() {
        assert_eq!(Config::parse(r#"{"Test":["NONE"]}"#).unwrap(), None);
        assert_eq!(Config::parse(r#"{"Test":[]}"#).unwrap(), None);
        assert_eq!(Config::parse(r#"{}"#).unwrap(), None);
        let c = Config::parse(r#"{"Test":["CMD-SHELL","test -f /ok"],"Interval":1000000000,"Retries":0}"#).unwrap().unwrap();
        assert_eq!(c.argv, ["/bin/sh", "-c", "test -f /ok"]);
        assert_eq!(c.interval, Duration::from_secs(1));
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        assert_eq!(c.retries, DEFAULT_RETRIES);
        assert_eq!(c.start_period, Duration::ZERO);
        assert_eq!(c.start_interval, None);
        let c = Config::parse(r#"{"Test":["CMD","cat","/x"],"Timeout":500000000,"StartPeriod":2000000000,"StartInterval":100000000,"Retries":5}"#)
            .unwrap()
            .unwrap();
        assert_eq!(c.argv, ["cat", "/x"]);
        assert_eq!(
            (c.timeout, c.start_period, c.start_interval, c.retries),
            (Duration::from_millis(500), Duration::from_secs(2), Some(Duration::from_millis(100)), 5)
        );
        // What Docker would not run either: nothing, rather than a container that cannot start.
        assert_eq!(Config::parse(r#"{"Test":["CMD"]}"#).unwrap(), None);
        assert_eq!(Config::parse(r#"{"Test":["SHELL","x"]}"#).unwrap(), None);
        assert_eq!(Config::parse(r#"{"Test":"CMD x"}"#).unwrap(), None);
        assert_eq!(Config::parse(r#"{"Test":["CMD","x"],"Interval":-1}"#).unwrap().unwrap().interval, DEFAULT_INTERVAL);
        assert_eq!(Config::parse(r#"{"Test":["CMD-SHELL","echo $0","me"]}"#).unwrap().unwrap().argv, ["/bin/sh", "-c", "echo $0", "me"]);
        assert!(Config::parse("{").is_err());
    }

    #[test]
    fn healthy_after_the_first_success() {
        let c = cfg(3, 0, None);
        let mut h = Health::default();
        assert_eq!(h.status, Status::Starting);
        let (p, at) = probe(30, 0);
        assert_eq!(h.record(&c, p, at), Some(Status::Healthy));
        let (p, at) = probe(60, 0);
        assert_eq!(h.record(&c, p, at), None);
        assert_eq!(h.failing_streak, 0);
    }

    #[test]
    fn unhealthy_after_retries_consecutive_failures() {
        let c = cfg(3, 0, None);
        let mut h = Health::default();
        assert_eq!(h.record(&c, probe(30, 0).0, probe(30, 0).1), Some(Status::Healthy));
        for (i, at) in [60, 90].into_iter().enumerate() {
            let (p, d) = probe(at, 1);
            assert_eq!(h.record(&c, p, d), None);
            assert_eq!(h.failing_streak, i as u32 + 1);
            assert_eq!(h.status, Status::Healthy);
        }
        let (p, d) = probe(120, 2);
        assert_eq!(h.record(&c, p, d), Some(Status::Unhealthy));
        assert_eq!(h.failing_streak, 3);
        let (p, d) = probe(150, 1);
        assert_eq!(h.record(&c, p, d), None);
        assert_eq!(h.failing_streak, 4);
        // One success heals it and resets the streak.
        let (p, d) = probe(180, 0);
        assert_eq!(h.record(&c, p, d), Some(Status::Healthy));
        assert_eq!(h.failing_streak, 0);
    }

    #[test]
    fn failures_in_the_start_period_do_not_count() {
        let c = cfg(1, 100, None);
        let mut h = Health::default();
        for at in [30, 60, 90] {
            let (p, d) = probe(at, 1);
            assert_eq!(h.record(&c, p, d), None);
            assert_eq!(h.failing_streak, 0);
            assert_eq!(h.status, Status::Starting);
        }
        // After the start period a failure counts.
        let (p, d) = probe(120, 1);
        assert_eq!(h.record(&c, p, d), Some(Status::Unhealthy));
        // A success within the start period ends it: failures count from then on.
        let mut h = Health::default();
        let (p, d) = probe(10, 0);
        assert_eq!(h.record(&c, p, d), Some(Status::Healthy));
        let (p, d) = probe(20, 1);
        assert_eq!(h.record(&c, p, d), Some(Status::Unhealthy));
        assert_eq!(h.failing_streak, 1);
    }

    #[test]
    fn keeps_the_last_five_results() {
        let c = cfg(3, 0, None);
        let mut h = Health::default();
        for at in 1..=8 {
            let (p, d) = probe(at, (at % 2) as i32);
            h.record(&c, p, d);
        }
        assert_eq!(h.log.len(), MAX_LOG);
        assert_eq!(h.log.front().unwrap().output, "out 4");
        assert_eq!(h.log.back().unwrap().output, "out 8");
        let j = h.to_json();
        assert_eq!(j["Status"], "healthy");
        assert_eq!(j["FailingStreak"], 0);
        assert_eq!(j["Log"].as_array().unwrap().len(), 5);
        assert_eq!(j["Log"][4]["ExitCode"], 0);
        assert_eq!(j["Log"][4]["Output"], "out 8");
        assert_eq!(j["Log"][4]["Start"], "2023-11-14T22:13:28.000000000Z");
        assert!(j["Log"][4]["End"].as_str().unwrap().starts_with("2023-11-14T22:13:28.003"));
    }

    #[test]
    fn start_interval_while_starting_in_the_start_period() {
        let c = cfg(3, 60, Some(2));
        assert_eq!(c.next_interval(Status::Starting, Duration::ZERO), Duration::from_secs(2));
        assert_eq!(c.next_interval(Status::Starting, Duration::from_secs(59)), Duration::from_secs(2));
        assert_eq!(c.next_interval(Status::Starting, Duration::from_secs(60)), Duration::from_secs(30));
        assert_eq!(c.next_interval(Status::Healthy, Duration::from_secs(5)), Duration::from_secs(30));
        assert_eq!(cfg(3, 60, None).next_interval(Status::Starting, Duration::ZERO), Duration::from_secs(30));
    }

    #[test]
    fn output_is_cut_at_4096_bytes() {
        let mut o = Output::default();
        o.push(&[b'a'; 3000]);
        o.push(&[b'b'; 3000]);
        let t = o.text();
        assert_eq!(t.len(), MAX_OUTPUT);
        assert!(t.ends_with('b') && t.starts_with('a'));
    }

    #[test]
    fn timeouts_as_go_prints_them() {
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
    }
}
