//! The session's clocks: how long a client may stay silent (`--idle-timeout`), take to send
//! one request (`--request-timeout`) and stay connected at all (`--session-limit`), and
//! what they leave for a lock wait. Shared by the serve loop and both client pipes.
//!
//! The idle timeout alone does not stop a client that trickles one byte every few seconds:
//! it is never silent for long, yet never finishes a request, and keeps the repository lock
//! meanwhile. The request deadline starts when the engine begins to read a request and ends
//! the session if the request is not complete by then; the session limit ends it at a
//! request boundary, or in any wait for the client, once the session has lasted that long.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// A request that has started must have arrived completely this long after, unless the
/// server says otherwise: enough for borg's largest object (20 MiB) at about 560 kbit/s.
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Which limit ran out, with its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// The client neither sent nor took a byte for this long.
    Idle(Duration),
    /// A request was still incomplete this long after the engine began to read it.
    Request(Duration),
    /// The session lasted this long.
    Session(Duration),
}

/// The limits of one session and the deadline of the request being read.
#[derive(Debug)]
pub struct SessionClock {
    idle: Option<Duration>,
    request: Option<Duration>,
    /// When the session must end, and the limit that says so.
    session: Option<(Instant, Duration)>,
    request_deadline: Cell<Option<Instant>>,
}

impl SessionClock {
    /// A session starting now. `None` means no such limit.
    pub fn new(
        idle: Option<Duration>,
        request: Option<Duration>,
        session_limit: Option<Duration>,
    ) -> SessionClock {
        let now = Instant::now();
        SessionClock {
            idle,
            request,
            // A limit too far away to represent is no limit.
            session: session_limit.and_then(|limit| Some((now.checked_add(limit)?, limit))),
            request_deadline: Cell::new(None),
        }
    }

    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle
    }

    /// When the session must end.
    pub fn session_deadline(&self) -> Option<Instant> {
        self.session.map(|(end, _)| end)
    }

    /// The engine begins to read a request now (its first bytes are waiting).
    pub fn start_request(&self) {
        let deadline = self
            .request
            .and_then(|request| Instant::now().checked_add(request));
        self.request_deadline.set(deadline);
    }

    /// The request has arrived completely.
    pub fn end_request(&self) {
        self.request_deadline.set(None);
    }

    /// The session limit, if the session has reached it.
    pub fn session_over(&self, now: Instant) -> Option<Expiry> {
        self.session
            .filter(|(end, _)| now >= *end)
            .map(|(_, limit)| Expiry::Session(limit))
    }

    /// The first limit a wait for the client that starts at `now` runs into, and when.
    /// `reading` waits for the rest of a request; writes and the wait between requests
    /// have no request deadline.
    pub fn next_expiry(&self, reading: bool, now: Instant) -> Option<(Instant, Expiry)> {
        let idle = self
            .idle
            .and_then(|idle| Some((now.checked_add(idle)?, Expiry::Idle(idle))));
        let request = match (reading, self.request_deadline.get(), self.request) {
            (true, Some(deadline), Some(request)) => Some((deadline, Expiry::Request(request))),
            _ => None,
        };
        let session = self
            .session
            .map(|(end, limit)| (end, Expiry::Session(limit)));
        [request, session, idle]
            .into_iter()
            .flatten()
            .min_by_key(|(when, _)| *when)
    }

    /// How long a lock wait may last: the client's clamped lock wait, and never longer than
    /// the idle timeout (a session stuck that long is treated as gone, whatever it waits
    /// for). The session deadline applies on top (see `SessionLockWait::until`).
    pub fn lock_wait(&self, clamped: Option<Duration>) -> Option<Duration> {
        match (clamped, self.idle) {
            (Some(wait), Some(idle)) => Some(wait.min(idle)),
            (wait, None) => wait,
            (None, idle) => idle,
        }
    }
}

/// A duration such as `10m` or `90s`; zero (`0`, `0s`) means no limit. `None` if unreadable.
pub(crate) fn parse_limit(value: &str) -> Option<Option<Duration>> {
    let duration = if value == "0" {
        Duration::ZERO
    } else {
        humantime::parse_duration(value).ok()?
    };
    Some((!duration.is_zero()).then_some(duration))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn the_request_deadline_applies_only_while_a_request_is_read() {
        let clock = SessionClock::new(Some(60 * SECOND), Some(5 * SECOND), None);
        let now = Instant::now();
        assert_eq!(
            clock.next_expiry(true, now).map(|e| e.1),
            Some(Expiry::Idle(60 * SECOND))
        );
        clock.start_request();
        let (when, expiry) = clock.next_expiry(true, now).unwrap();
        assert_eq!(expiry, Expiry::Request(5 * SECOND));
        assert!(when <= Instant::now() + 5 * SECOND);
        // Writing replies, or waiting between requests: silence counts, not the request.
        assert_eq!(
            clock.next_expiry(false, now).map(|e| e.1),
            Some(Expiry::Idle(60 * SECOND))
        );
        clock.end_request();
        assert_eq!(
            clock.next_expiry(true, now).map(|e| e.1),
            Some(Expiry::Idle(60 * SECOND))
        );
    }

    #[test]
    fn a_later_byte_does_not_move_the_request_deadline() {
        let clock = SessionClock::new(None, Some(5 * SECOND), None);
        clock.start_request();
        let first = clock.next_expiry(true, Instant::now()).unwrap().0;
        let later = clock
            .next_expiry(true, Instant::now() + 3 * SECOND)
            .unwrap()
            .0;
        assert_eq!(first, later);
    }

    #[test]
    fn the_session_limit_is_the_earliest_when_it_comes_first() {
        let clock = SessionClock::new(Some(600 * SECOND), Some(300 * SECOND), Some(2 * SECOND));
        clock.start_request();
        let now = Instant::now();
        assert_eq!(
            clock.next_expiry(true, now).map(|e| e.1),
            Some(Expiry::Session(2 * SECOND))
        );
        assert_eq!(clock.session_over(now), None);
        assert_eq!(
            clock.session_over(now + 3 * SECOND),
            Some(Expiry::Session(2 * SECOND))
        );
    }

    #[test]
    fn no_limits_means_no_expiry() {
        let clock = SessionClock::new(None, None, None);
        clock.start_request();
        assert_eq!(clock.next_expiry(true, Instant::now()), None);
        assert_eq!(clock.session_over(Instant::now()), None);
        let endless = SessionClock::new(None, None, Some(Duration::MAX));
        assert_eq!(endless.session_deadline(), None);
    }

    #[test]
    fn a_lock_wait_never_outlasts_the_idle_timeout() {
        let clock = SessionClock::new(Some(10 * SECOND), None, None);
        assert_eq!(clock.lock_wait(Some(600 * SECOND)), Some(10 * SECOND));
        assert_eq!(clock.lock_wait(Some(SECOND)), Some(SECOND));
        assert_eq!(clock.lock_wait(None), Some(10 * SECOND));
        let patient = SessionClock::new(None, None, None);
        assert_eq!(patient.lock_wait(None), None);
        assert_eq!(patient.lock_wait(Some(SECOND)), Some(SECOND));
    }
}
