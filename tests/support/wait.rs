//! Waiting for events, never for a fixed time: the one polling loop of the tests.

use std::process::{Child, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

/// The longest gap between two polls.
const MAX_GAP: Duration = Duration::from_millis(10);

/// Polls `probe` until it returns `Some`, or `timeout` passes (`None`; `probe` has then run
/// once more after the deadline). The first polls come 1 ms apart and the gap doubles up to
/// 10 ms: a quick event is seen at once, and a long wait costs little on a busy machine.
pub(crate) fn wait_for<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    let mut gap = Duration::from_millis(1);
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(gap);
        gap = (gap * 2).min(MAX_GAP);
    }
}

/// [`wait_for`] a condition: whether `done` became true within `timeout`.
pub(crate) fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    wait_for(timeout, || done().then_some(())).is_some()
}

/// Waits up to `timeout` for `child` to exit: its status, or `None` (it is left running).
pub(crate) fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    wait_for(timeout, || {
        child.try_wait().expect("waitpid on our own child")
    })
}
