//! What ends a session from outside its protocol, watched the same way by every engine: a
//! SIGHUP, SIGTERM or SIGINT, one of the session's clocks (idle timeout, request deadline,
//! session limit), or a client that is gone.
//!
//! An engine's request loop asks [`Watch::await_request`] before each request and hands every
//! failed read or write of the client's pipes to [`Watch::pipe_failed`]; both answer with a
//! [`Stop`] when the session must end. Lock waits end on the same events through an
//! [`AbortProbe`].

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;
use std::time::Instant;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::LOG;
use super::clock::{Expiry, SessionClock};
use super::pipe::{ClientPipe, Interruption, Readiness, file_status_flags, wait_ready};

/// Why a session ends that its protocol did not end.
#[derive(Debug)]
pub enum Stop {
    /// A read or write of the client's pipes failed: the client is gone.
    ClientGone(io::Error),
    /// A SIGHUP, SIGTERM or SIGINT arrived.
    Signal(Signal),
    /// One of the session's clocks ran out.
    Expired(Expiry),
}

impl Stop {
    /// The process's exit status: 128+N for signal N, else 0 (the client left, or the
    /// server's own clock ended the session; nothing failed on this side).
    pub fn exit_code(&self) -> u8 {
        match self {
            Stop::Signal(signal) => 128u8.saturating_add(*signal as u8),
            Stop::ClientGone(_) | Stop::Expired(_) => 0,
        }
    }

    /// One line on stderr where the client and the administrator should know why.
    pub fn report(&self) {
        let Stop::Expired(expiry) = self else {
            return;
        };
        match expiry {
            Expiry::Idle(timeout) => {
                log::warn!(target: LOG, "no request for {} s; closing the connection", timeout.as_secs())
            }
            Expiry::Request(limit) => {
                log::warn!(target: LOG, "a request was still incomplete {} s after it began; closing the connection", limit.as_secs())
            }
            Expiry::Session(limit) => {
                log::warn!(target: LOG, "the session reached the server's limit of {} s; closing the connection", limit.as_secs())
            }
        }
    }
}

/// The signals, the clocks and stdin of one session.
pub struct Watch {
    /// stdin (a descriptor of its own), polled for readability at request boundaries and
    /// for a client that went away during a lock wait.
    stdin: File,
    signals: Option<SignalFd>,
    /// Shared with the client pipes.
    clock: Rc<SessionClock>,
}

impl Watch {
    /// `signals` from [`watch_signals`] (`None`: no signals are watched).
    pub fn new(stdin: File, signals: Option<SignalFd>, clock: SessionClock) -> Watch {
        Watch {
            stdin,
            signals,
            clock: Rc::new(clock),
        }
    }

    pub fn clock(&self) -> &SessionClock {
        &self.clock
    }

    /// stdin and stdout as non-blocking [`ClientPipe`]s that give up on this session's
    /// signals and clocks.
    pub fn client_pipes(&self, stdin: File, stdout: File) -> io::Result<(ClientPipe, ClientPipe)> {
        // Both flags first: stdin and stdout may share one open file description (a socket),
        // and each pipe must restore what was there before either changed it.
        let stdin_flags = file_status_flags(&stdin)?;
        let stdout_flags = file_status_flags(&stdout)?;
        Ok((
            ClientPipe::wrap(stdin, self.dup_signals()?, self.clock.clone(), stdin_flags)?,
            ClientPipe::wrap(
                stdout,
                self.dup_signals()?,
                self.clock.clone(),
                stdout_flags,
            )?,
        ))
    }

    /// What ends this session's lock waits early: its client leaving, or a signal.
    pub fn abort_probe(&self) -> io::Result<AbortProbe> {
        Ok(AbortProbe {
            stdin: self.stdin.as_fd().try_clone_to_owned()?,
            signals: self.dup_signals()?,
        })
    }

    /// A descriptor of the signalfd of its own (polling it does not consume a signal).
    fn dup_signals(&self) -> io::Result<Option<OwnedFd>> {
        self.signals
            .as_ref()
            .map(|signals| signals.as_fd().try_clone_to_owned())
            .transpose()
    }

    /// Asked before each request. The session limit is checked first, also between
    /// pipelined requests, which never wait for input; the replies so far still go out (the
    /// last may be the lock timeout the limit caused). When nothing of the next request is
    /// `buffered`, `flush` sends the replies so far and the wait for input begins; once the
    /// request's first bytes are here, its deadline starts.
    pub fn await_request(
        &mut self,
        buffered: bool,
        mut flush: impl FnMut() -> io::Result<()>,
    ) -> Result<(), Stop> {
        if let Some(expiry) = self.clock.session_over(Instant::now()) {
            let _ = flush();
            return Err(Stop::Expired(expiry));
        }
        if buffered {
            return Ok(());
        }
        if let Err(error) = flush() {
            return Err(self.pipe_failed(error));
        }
        if let Some(stop) = self.wait_for_input() {
            return Err(stop);
        }
        self.clock.start_request();
        Ok(())
    }

    /// The request has arrived completely: its deadline no longer applies.
    pub fn request_read(&self) {
        self.clock.end_request();
    }

    /// Blocks until a request can be read, or the session must end. Asked at every request
    /// boundary, so a signal is noticed even while the client keeps its pipe full.
    fn wait_for_input(&mut self) -> Option<Stop> {
        let signals = self.signals.as_ref().map(AsFd::as_fd);
        match wait_ready(self.stdin.as_fd(), PollFlags::POLLIN, signals, &self.clock) {
            Ok(Readiness::Expired(expiry)) => Some(Stop::Expired(expiry)),
            Ok(Readiness::Signalled) => self.take_signal().map(Stop::Signal),
            // Readable, hung up or in error: reading will tell.
            Ok(Readiness::Ready) | Err(_) => None,
        }
    }

    /// Why a read or write of the client's pipes failed: a signal or a clock that
    /// interrupted it, or else a client that is gone.
    pub fn pipe_failed(&mut self, error: io::Error) -> Stop {
        match Interruption::of(&error) {
            Some(Interruption::Idle(timeout)) => Stop::Expired(Expiry::Idle(timeout)),
            Some(Interruption::RequestTimeout(limit)) => Stop::Expired(Expiry::Request(limit)),
            Some(Interruption::SessionLimit(limit)) => Stop::Expired(Expiry::Session(limit)),
            Some(Interruption::Signal) => match self.take_signal() {
                Some(signal) => Stop::Signal(signal),
                None => Stop::ClientGone(error),
            },
            None => Stop::ClientGone(error),
        }
    }

    fn take_signal(&mut self) -> Option<Signal> {
        let info = self.signals.as_mut()?.read_signal().ok()??;
        Signal::try_from(i32::try_from(info.ssi_signo).ok()?).ok()
    }
}

/// The events that end a session's lock waits, on descriptors of its own so that the
/// repository can keep it: the client closed its end of stdin (or the socket), or a SIGHUP,
/// SIGTERM or SIGINT is pending.
pub struct AbortProbe {
    stdin: OwnedFd,
    signals: Option<OwnedFd>,
}

impl AbortProbe {
    /// Whether a lock wait should end now (so that a waiting server never outlives its client).
    pub fn fired(&self) -> bool {
        // POLLRDHUP notices a socket peer that shut down its side (sshd may use socketpairs).
        let rdhup = PollFlags::from_bits_retain(nix::libc::POLLRDHUP);
        let mut fds = vec![PollFd::new(self.stdin.as_fd(), rdhup)];
        if let Some(signals) = &self.signals {
            fds.push(PollFd::new(signals.as_fd(), PollFlags::POLLIN));
        }
        if poll(&mut fds, PollTimeout::ZERO).unwrap_or(0) == 0 {
            return false;
        }
        let gone = PollFlags::POLLHUP | rdhup | PollFlags::POLLERR;
        let stdin_gone = fds[0].revents().is_some_and(|r| r.intersects(gone));
        let signalled = fds
            .get(1)
            .and_then(PollFd::revents)
            .is_some_and(|r| !r.is_empty());
        stdin_gone || signalled
    }
}

/// SIGHUP, SIGTERM and SIGINT become readable events instead of killing the process, so
/// the session can end cleanly first (a repository rolled back and its lock released, the
/// lock objects a borg 2 client left behind deleted).
pub fn watch_signals() -> Option<SignalFd> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGHUP);
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    mask.thread_block().ok()?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    /// A watch on /dev/null (always readable), without signals.
    fn watch(clock: SessionClock) -> Watch {
        Watch::new(File::open("/dev/null").unwrap(), None, clock)
    }

    #[test]
    fn the_session_limit_ends_the_session_between_pipelined_requests_after_a_flush() {
        let mut watch = watch(SessionClock::new(None, None, Some(Duration::ZERO)));
        let mut flushed = 0;
        let stop = watch.await_request(true, || {
            flushed += 1;
            Ok(())
        });
        assert!(matches!(stop, Err(Stop::Expired(Expiry::Session(limit))) if limit.is_zero()));
        assert_eq!(flushed, 1);
    }

    #[test]
    fn a_request_that_has_begun_runs_against_its_deadline_until_it_is_read() {
        let mut watch = watch(SessionClock::new(Some(60 * SECOND), Some(5 * SECOND), None));
        let mut flushed = 0;
        // Buffered: no flush, no wait, no new deadline.
        assert!(
            watch
                .await_request(true, || {
                    flushed += 1;
                    Ok(())
                })
                .is_ok()
        );
        assert_eq!(flushed, 0);
        let next = |watch: &Watch| watch.clock().next_expiry(true, Instant::now()).map(|e| e.1);
        assert_eq!(next(&watch), Some(Expiry::Idle(60 * SECOND)));
        assert!(
            watch
                .await_request(false, || {
                    flushed += 1;
                    Ok(())
                })
                .is_ok()
        );
        assert_eq!(flushed, 1);
        assert_eq!(next(&watch), Some(Expiry::Request(5 * SECOND)));
        watch.request_read();
        assert_eq!(next(&watch), Some(Expiry::Idle(60 * SECOND)));
    }

    #[test]
    fn a_failed_flush_before_the_wait_is_the_client_gone() {
        let mut watch = watch(SessionClock::new(None, None, None));
        let stop = watch.await_request(false, || Err(io::ErrorKind::BrokenPipe.into()));
        assert!(
            matches!(stop, Err(Stop::ClientGone(error)) if error.kind() == io::ErrorKind::BrokenPipe)
        );
    }

    #[test]
    fn a_pipe_failure_is_the_interruption_inside_it_or_else_a_client_that_is_gone() {
        let mut watch = watch(SessionClock::new(None, None, None));
        let cases = [
            (Interruption::Idle(SECOND), Expiry::Idle(SECOND)),
            (
                Interruption::RequestTimeout(SECOND),
                Expiry::Request(SECOND),
            ),
            (Interruption::SessionLimit(SECOND), Expiry::Session(SECOND)),
        ];
        for (interruption, expiry) in cases {
            let stop = watch.pipe_failed(io::Error::other(interruption));
            assert!(matches!(stop, Stop::Expired(e) if e == expiry), "{stop:?}");
        }
        // A signal interruption with no signal to read (none watched): the client is gone.
        let stop = watch.pipe_failed(io::Error::other(Interruption::Signal));
        assert!(matches!(stop, Stop::ClientGone(_)), "{stop:?}");
        let stop = watch.pipe_failed(io::ErrorKind::BrokenPipe.into());
        assert!(matches!(stop, Stop::ClientGone(_)), "{stop:?}");
    }

    #[test]
    fn a_signal_exits_128_plus_its_number_and_everything_else_0() {
        assert_eq!(Stop::Signal(Signal::SIGTERM).exit_code(), 143);
        assert_eq!(Stop::Signal(Signal::SIGHUP).exit_code(), 129);
        assert_eq!(Stop::Expired(Expiry::Session(SECOND)).exit_code(), 0);
        assert_eq!(
            Stop::ClientGone(io::ErrorKind::BrokenPipe.into()).exit_code(),
            0
        );
    }
}
