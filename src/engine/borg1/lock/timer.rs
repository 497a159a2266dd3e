//! How long a lock attempt waits: borg's `TimeoutTimer` (`locking.py:17-67`) plus an abort hook.

use std::cell::Cell;
use std::rc::Rc;
use std::thread;
use std::time::{Duration, Instant};

/// The longest pause between two tries. borg sleeps a tenth of the lock wait, up to a minute
/// (one second when waiting forever), so a client waiting with `--lock-wait 600` would notice a
/// freed lock up to a minute late, and a backup server's queue of waiting clients would idle
/// behind a free repository. A try is one mkdir or one small read, so trying ten times a
/// second costs nothing measurable.
const MAX_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// While sleeping, the abort hook is asked at least this often, so a pause chosen by the
/// caller (the exclusive lock's 200 ms retry, say) does not outlive the client.
const ABORT_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// How long a lock attempt may wait, and how to abandon it early.
///
/// * `timeout: None` waits forever (borg's `lock_wait=None`), `Some(Duration::ZERO)` tries
///   exactly once, anything else retries until the timeout has passed.
/// * `should_abort`, when given, is called before every retry and every
///   50 ms while sleeping. Once it returns `true` the attempt stops with
///   [`LockError::Aborted`](super::LockError::Aborted) and leaves no trace on disk. The server
///   uses it to stop waiting for a lock when its client has disconnected (for example a hook
///   that polls stdin for hang-up, or that checks an `AtomicBool` set by a reader thread).
#[derive(Clone, Copy)]
pub struct LockWait<'a> {
    timeout: Option<Duration>,
    should_abort: Option<&'a dyn Fn() -> bool>,
    /// Where the time slept waiting is added (the session's record says how long it waited).
    slept: Option<&'a Cell<Duration>>,
}

impl<'a> LockWait<'a> {
    /// Wait until the lock is free, however long that takes (`lock_wait=None`).
    pub fn forever() -> Self {
        LockWait {
            timeout: None,
            should_abort: None,
            slept: None,
        }
    }

    /// Wait at most `timeout` (zero: try once).
    pub fn at_most(timeout: Duration) -> Self {
        LockWait {
            timeout: Some(timeout),
            should_abort: None,
            slept: None,
        }
    }

    /// `None` waits forever, `Some` waits at most that long.
    pub fn from_timeout(timeout: Option<Duration>) -> Self {
        LockWait {
            timeout,
            should_abort: None,
            slept: None,
        }
    }

    /// Give up (with `LockError::Aborted`) as soon as `should_abort` returns true.
    pub fn abort_when(self, should_abort: &'a dyn Fn() -> bool) -> Self {
        LockWait {
            should_abort: Some(should_abort),
            ..self
        }
    }

    /// The timeout; `None` means forever.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Whether the caller wants the attempt abandoned now.
    pub(crate) fn aborted(&self) -> bool {
        self.should_abort.is_some_and(|should_abort| should_abort())
    }

    /// Sleep `duration`, waking early when the abort hook fires. Returns false if aborted.
    /// The time slept is added to the wait's counter, if it has one.
    fn sleep_unless_aborted(&self, duration: Duration) -> bool {
        let Some(slept) = self.slept else {
            return self.sleep(duration);
        };
        let started = Instant::now();
        let woke = self.sleep(duration);
        slept.set(slept.get() + started.elapsed());
        woke
    }

    fn sleep(&self, duration: Duration) -> bool {
        if self.should_abort.is_none() {
            thread::sleep(duration);
            return true;
        }
        let end = Instant::now() + duration;
        loop {
            if self.aborted() {
                return false;
            }
            let now = Instant::now();
            if now >= end {
                return true;
            }
            thread::sleep((end - now).min(ABORT_CHECK_INTERVAL));
        }
    }
}

impl std::fmt::Debug for LockWait<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockWait")
            .field("timeout", &self.timeout)
            .field("should_abort", &self.should_abort.is_some())
            .field("slept", &self.slept.map(Cell::get))
            .finish()
    }
}

/// Every lock wait of one session: the `open` itself, a later lock upgrade, and a lock
/// taken late for a client that opened with `lock=False`. Each wait lasts at most the
/// session's (clamped) lock wait, never past the session's deadline, and is abandoned as
/// soon as the abort hook fires (the client left, a signal arrived). Owned, so that the
/// repository can keep it for the waits that come after `open`.
pub struct SessionLockWait {
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    should_abort: Option<Box<dyn Fn() -> bool>>,
    slept: Option<Rc<Cell<Duration>>>,
}

impl SessionLockWait {
    /// Waits of at most `timeout` each (`None`: no limit of their own).
    pub fn new(timeout: Option<Duration>) -> Self {
        SessionLockWait {
            timeout,
            deadline: None,
            should_abort: None,
            slept: None,
        }
    }

    /// Every wait adds the time it slept to `slept` (the session's tally).
    pub fn counting_into(self, slept: Rc<Cell<Duration>>) -> Self {
        SessionLockWait {
            slept: Some(slept),
            ..self
        }
    }

    /// No wait runs past `deadline` (the end of the session).
    pub fn until(self, deadline: Option<Instant>) -> Self {
        SessionLockWait { deadline, ..self }
    }

    /// Every wait ends (with `LockError::Aborted`) once `should_abort` returns true.
    pub fn abort_when(self, should_abort: Box<dyn Fn() -> bool>) -> Self {
        SessionLockWait {
            should_abort: Some(should_abort),
            ..self
        }
    }

    /// The wait of one attempt that starts now.
    pub fn now(&self) -> LockWait<'_> {
        let left = self
            .deadline
            .map(|deadline| deadline.saturating_duration_since(Instant::now()));
        let timeout = match (self.timeout, left) {
            (Some(timeout), Some(left)) => Some(timeout.min(left)),
            (timeout, None) => timeout,
            (None, left) => left,
        };
        LockWait {
            timeout,
            should_abort: self.should_abort.as_deref(),
            slept: self.slept.as_deref(),
        }
    }
}

impl std::fmt::Debug for SessionLockWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLockWait")
            .field("timeout", &self.timeout)
            .field("deadline", &self.deadline)
            .field("should_abort", &self.should_abort.is_some())
            .finish()
    }
}

/// The automatic poll interval: like borg a tenth of the timeout, but never more than
/// [`MAX_POLL_INTERVAL`] (which is also the interval when waiting forever).
pub(crate) fn default_poll_interval(timeout: Option<Duration>) -> Duration {
    match timeout {
        None => MAX_POLL_INTERVAL,
        Some(timeout) => (timeout / 10).min(MAX_POLL_INTERVAL),
    }
}

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NextStep {
    /// The poll interval has been slept; try again.
    Retry,
    /// The timeout has passed.
    TimedOut,
    /// The abort hook fired.
    Aborted,
}

/// One running timer: started when an attempt begins, asked after every failed try.
pub(crate) struct TimeoutTimer<'w, 'a> {
    wait: &'w LockWait<'a>,
    poll_interval: Duration,
    end: Option<Instant>,
}

impl<'w, 'a> TimeoutTimer<'w, 'a> {
    /// Start now. `poll_interval: None` picks borg's automatic interval.
    pub(crate) fn start(wait: &'w LockWait<'a>, poll_interval: Option<Duration>) -> Self {
        let now = Instant::now();
        TimeoutTimer {
            wait,
            poll_interval: poll_interval.unwrap_or_else(|| default_poll_interval(wait.timeout)),
            // A timeout too large to represent is the same as no timeout.
            end: wait.timeout.and_then(|timeout| now.checked_add(timeout)),
        }
    }

    fn timed_out(&self) -> bool {
        self.end.is_some_and(|end| Instant::now() >= end)
    }

    /// borg's `timed_out_or_sleep`, with the abort hook asked first and while sleeping.
    pub(crate) fn timed_out_or_sleep(&self) -> NextStep {
        if self.wait.aborted() {
            return NextStep::Aborted;
        }
        if self.timed_out() {
            return NextStep::TimedOut;
        }
        if self.wait.sleep_unless_aborted(self.poll_interval) {
            NextStep::Retry
        } else {
            NextStep::Aborted
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn poll_interval_is_a_tenth_of_a_short_timeout() {
        assert_eq!(
            default_poll_interval(Some(Duration::from_millis(500))),
            Duration::from_millis(50)
        );
        assert_eq!(default_poll_interval(Some(Duration::ZERO)), Duration::ZERO);
    }

    #[test]
    fn a_freed_lock_is_noticed_within_a_tenth_of_a_second_however_long_the_wait() {
        for timeout in [
            Some(Duration::from_secs(1)),
            Some(Duration::from_secs(600)),
            None,
        ] {
            assert_eq!(default_poll_interval(timeout), Duration::from_millis(100));
        }
        assert_eq!(
            default_poll_interval(Some(Duration::MAX)),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn a_session_s_waits_add_up_the_time_they_slept() {
        let slept = Rc::new(Cell::new(Duration::ZERO));
        let session =
            SessionLockWait::new(Some(Duration::from_millis(30))).counting_into(slept.clone());
        for _ in 0..2 {
            let wait = session.now();
            let timer = TimeoutTimer::start(&wait, Some(Duration::from_millis(10)));
            while timer.timed_out_or_sleep() == NextStep::Retry {}
        }
        assert!(
            slept.get() >= Duration::from_millis(60),
            "{:?}",
            slept.get()
        );
        let once = SessionLockWait::new(Some(Duration::ZERO)).counting_into(slept.clone());
        let before = slept.get();
        let wait = once.now();
        assert_eq!(
            TimeoutTimer::start(&wait, None).timed_out_or_sleep(),
            NextStep::TimedOut
        );
        assert_eq!(slept.get(), before, "a try without a wait sleeps nothing");
    }

    #[test]
    fn zero_timeout_times_out_at_the_first_failure() {
        let wait = LockWait::at_most(Duration::ZERO);
        let timer = TimeoutTimer::start(&wait, None);
        assert_eq!(timer.timed_out_or_sleep(), NextStep::TimedOut);
    }

    #[test]
    fn short_timeout_retries_then_times_out() {
        let wait = LockWait::at_most(Duration::from_millis(100));
        let timer = TimeoutTimer::start(&wait, None);
        let started = Instant::now();
        let mut retries = 0;
        while timer.timed_out_or_sleep() == NextStep::Retry {
            retries += 1;
            assert!(retries < 100, "timer never expired");
        }
        assert!(retries >= 5, "slept only {retries} times of 10 ms");
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[test]
    fn forever_never_times_out() {
        let wait = LockWait::forever();
        let timer = TimeoutTimer::start(&wait, Some(Duration::ZERO));
        for _ in 0..1000 {
            assert_eq!(timer.timed_out_or_sleep(), NextStep::Retry);
        }
    }

    #[test]
    fn huge_timeout_behaves_like_forever() {
        let wait = LockWait::at_most(Duration::MAX);
        let timer = TimeoutTimer::start(&wait, Some(Duration::ZERO));
        assert_eq!(timer.timed_out_or_sleep(), NextStep::Retry);
    }

    #[test]
    fn abort_hook_stops_a_forever_wait_during_the_sleep() {
        let calls = Cell::new(0);
        let hook = || {
            calls.set(calls.get() + 1);
            calls.get() > 2
        };
        let wait = LockWait::forever().abort_when(&hook);
        let timer = TimeoutTimer::start(&wait, Some(Duration::from_secs(600)));
        let started = Instant::now();
        assert_eq!(timer.timed_out_or_sleep(), NextStep::Aborted);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_session_wait_never_runs_past_the_session_deadline() {
        let soon = Instant::now() + Duration::from_secs(5);
        let forever = SessionLockWait::new(None).until(Some(soon));
        let limited = forever.now().timeout().unwrap();
        assert!(limited <= Duration::from_secs(5) && limited > Duration::from_secs(4));
        let short = SessionLockWait::new(Some(Duration::from_secs(1))).until(Some(soon));
        assert_eq!(short.now().timeout(), Some(Duration::from_secs(1)));
        let past = SessionLockWait::new(Some(Duration::from_secs(1)))
            .until(Some(Instant::now() - Duration::from_secs(1)));
        assert_eq!(past.now().timeout(), Some(Duration::ZERO));
        assert_eq!(SessionLockWait::new(None).now().timeout(), None);
    }

    #[test]
    fn a_session_wait_carries_its_abort_hook_into_every_wait() {
        let wait = SessionLockWait::new(None).abort_when(Box::new(|| true));
        let timer_wait = wait.now();
        let timer = TimeoutTimer::start(&timer_wait, None);
        assert_eq!(timer.timed_out_or_sleep(), NextStep::Aborted);
        assert!(!SessionLockWait::new(None).now().aborted());
    }

    #[test]
    fn abort_hook_wins_over_timeout() {
        let hook = || true;
        let wait = LockWait::at_most(Duration::ZERO).abort_when(&hook);
        let timer = TimeoutTimer::start(&wait, None);
        assert_eq!(timer.timed_out_or_sleep(), NextStep::Aborted);
    }
}
