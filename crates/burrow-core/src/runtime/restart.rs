//! Docker's restart policies, kept by the container's holder (the monitor): whether an exit is
//! followed by a restart, and after how long (Docker's restart manager: 100 ms, doubling, at
//! most a minute, back to 100 ms after a run of 10 s or more).

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    No,
    /// At most this many restarts (0: no limit), after a non-zero exit only.
    OnFailure(u32),
    Always,
    UnlessStopped,
}

impl Policy {
    /// Docker's syntax: `no`, `always`, `unless-stopped`, `on-failure[:N]`.
    pub fn parse(s: &str) -> Result<Policy, String> {
        let (name, count) = match s.split_once(':') {
            Some((n, c)) => (n, Some(c)),
            None => (s, None),
        };
        let p = match name {
            "" | "no" => Policy::No,
            "always" => Policy::Always,
            "unless-stopped" => Policy::UnlessStopped,
            "on-failure" => {
                let max = match count {
                    Some(c) => c.parse().map_err(|_| format!("invalid restart policy {s:?}: the maximum retry count must be a number"))?,
                    None => 0,
                };
                return Ok(Policy::OnFailure(max));
            }
            _ => return Err(format!("invalid restart policy {s:?}: want no, always, unless-stopped or on-failure[:N]")),
        };
        if count.is_some() {
            return Err(format!("invalid restart policy {s:?}: only on-failure takes a maximum retry count"));
        }
        Ok(p)
    }

    /// Whether an exit with `code`, after `restarts` restarts, is followed by another.
    /// `stopped`: the user stopped, killed or removed the container (never restarted then).
    pub fn restarts_after(&self, code: i32, restarts: u32, stopped: bool) -> bool {
        if stopped {
            return false;
        }
        match *self {
            Policy::No => false,
            Policy::Always | Policy::UnlessStopped => true,
            Policy::OnFailure(max) => code != 0 && (max == 0 || restarts < max),
        }
    }
}

const FIRST: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_secs(60);
/// A run at least this long resets the delay.
const RESET_AFTER: Duration = Duration::from_secs(10);

/// The delay before the next restart.
#[derive(Debug, Default)]
pub struct Backoff {
    delay: Option<Duration>,
}

impl Backoff {
    /// The delay before restarting a container that ran for `ran`.
    pub fn next(&mut self, ran: Duration) -> Duration {
        let d = match self.delay {
            Some(d) if ran < RESET_AFTER => (d * 2).min(MAX),
            _ => FIRST,
        };
        self.delay = Some(d);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dockers_policies() {
        assert_eq!(Policy::parse("no").unwrap(), Policy::No);
        assert_eq!(Policy::parse("always").unwrap(), Policy::Always);
        assert_eq!(Policy::parse("unless-stopped").unwrap(), Policy::UnlessStopped);
        assert_eq!(Policy::parse("on-failure").unwrap(), Policy::OnFailure(0));
        assert_eq!(Policy::parse("on-failure:3").unwrap(), Policy::OnFailure(3));
        assert!(Policy::parse("on-failure:x").is_err());
        assert!(Policy::parse("always:2").is_err());
        assert!(Policy::parse("sometimes").unwrap_err().contains("sometimes"));
    }

    #[test]
    fn decides_as_docker() {
        assert!(!Policy::No.restarts_after(1, 0, false));
        assert!(Policy::Always.restarts_after(0, 100, false));
        assert!(!Policy::Always.restarts_after(0, 0, true));
        assert!(!Policy::UnlessStopped.restarts_after(1, 0, true));
        let p = Policy::OnFailure(2);
        assert!(p.restarts_after(1, 0, false));
        assert!(p.restarts_after(1, 1, false));
        assert!(!p.restarts_after(1, 2, false));
        assert!(!p.restarts_after(0, 0, false));
        assert!(Policy::OnFailure(0).restarts_after(1, 1000, false));
    }

    #[test]
    fn backs_off_as_docker() {
        let mut b = Backoff::default();
        let quick = Duration::from_millis(5);
        assert_eq!(b.next(quick), Duration::from_millis(100));
        assert_eq!(b.next(quick), Duration::from_millis(200));
        assert_eq!(b.next(quick), Duration::from_millis(400));
        assert_eq!(b.next(Duration::from_secs(10)), Duration::from_millis(100));
        for _ in 0..20 {
            b.next(quick);
        }
        assert_eq!(b.next(quick), Duration::from_secs(60));
    }
}
