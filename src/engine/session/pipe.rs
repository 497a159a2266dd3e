//! The client's two pipes, stdin and stdout, made non-blocking: every read or write that
//! would block waits in poll(2) for the pipe, the signalfd, or the first of the session's
//! clocks to run out, and gives up with an [`Interruption`] inside its `io::Error`.
//!
//! A blocking pipe would keep the engine (and its repository lock) hostage to a client that
//! stalls in the middle of a request or stops reading replies, where neither the idle timeout
//! nor SIGTERM could reach it. Protocol-independent: both engines read and write through it.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::clock::{Expiry, SessionClock};

/// Why a read or write of the client's pipes gave up (carried inside the `io::Error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interruption {
    /// A SIGHUP, SIGTERM or SIGINT is waiting in the signalfd.
    Signal,
    /// The client neither sent nor took a byte for this long.
    Idle(Duration),
    /// The request being read was still incomplete this long after it began to arrive.
    RequestTimeout(Duration),
    /// The session reached its limit.
    SessionLimit(Duration),
}

impl From<Expiry> for Interruption {
    fn from(expiry: Expiry) -> Interruption {
        match expiry {
            Expiry::Idle(timeout) => Interruption::Idle(timeout),
            Expiry::Request(limit) => Interruption::RequestTimeout(limit),
            Expiry::Session(limit) => Interruption::SessionLimit(limit),
        }
    }
}

impl Interruption {
    /// The interruption inside `error`, if that is what it is.
    pub fn of(error: &io::Error) -> Option<Interruption> {
        error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<Interruption>())
            .copied()
    }
}

impl fmt::Display for Interruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Interruption::Signal => f.write_str("interrupted by a signal"),
            Interruption::Idle(timeout) => {
                write!(f, "the client was silent for {} s", timeout.as_secs())
            }
            Interruption::RequestTimeout(limit) => write!(
                f,
                "a request was still incomplete {} s after it began",
                limit.as_secs()
            ),
            Interruption::SessionLimit(limit) => {
                write!(f, "the session reached its limit of {} s", limit.as_secs())
            }
        }
    }
}

impl std::error::Error for Interruption {}

/// stdin or stdout of the session, switched to non-blocking mode: a read or write that
/// would block waits in poll(2) for the pipe, the signalfd, or the first of the session's
/// clocks to run out (idle timeout, the request deadline for reads, the session limit). A blocking pipe would keep the engine (and its lock) hostage to a client that
/// stalls in the middle of a request or stops reading replies, where neither the idle
/// timeout nor SIGTERM could reach it. The original file status flags are restored on drop,
/// so a terminal or a pipe shared with another process is left as it was found.
pub struct ClientPipe {
    file: File,
    signals: Option<OwnedFd>,
    clock: Rc<SessionClock>,
    original_flags: Option<OFlag>,
}

impl ClientPipe {
    /// A pipe with an idle timeout only (no request deadline, no session limit).
    #[cfg(test)]
    fn new(
        file: File,
        signals: Option<OwnedFd>,
        idle_timeout: Option<Duration>,
    ) -> io::Result<ClientPipe> {
        let original_flags = file_status_flags(&file)?;
        let clock = Rc::new(SessionClock::new(idle_timeout, None, None));
        ClientPipe::wrap(file, signals, clock, original_flags)
    }

    /// `file` with the `original_flags` it had before any pipe changed them (restored on drop).
    pub(crate) fn wrap(
        file: File,
        signals: Option<OwnedFd>,
        clock: Rc<SessionClock>,
        original_flags: OFlag,
    ) -> io::Result<ClientPipe> {
        fcntl(&file, FcntlArg::F_SETFL(original_flags | OFlag::O_NONBLOCK))?;
        Ok(ClientPipe {
            file,
            signals,
            clock,
            original_flags: Some(original_flags),
        })
    }

    /// Waits until the pipe is ready for `events`; an [`Interruption`] error when a signal
    /// is pending or one of the session's clocks runs out first.
    fn wait(&self, events: PollFlags) -> io::Result<()> {
        let signals = self.signals.as_ref().map(AsFd::as_fd);
        match wait_ready(self.file.as_fd(), events, signals, &self.clock)? {
            Readiness::Ready => Ok(()),
            Readiness::Expired(expiry) => Err(io::Error::other(Interruption::from(expiry))),
            Readiness::Signalled => Err(io::Error::other(Interruption::Signal)),
        }
    }

    /// Repeats `attempt` until it neither would block nor was interrupted, waiting for
    /// `events` (or an interruption) in between.
    fn until_ready<T>(
        &self,
        events: PollFlags,
        mut attempt: impl FnMut(&File) -> io::Result<T>,
    ) -> io::Result<T> {
        loop {
            match attempt(&self.file) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => self.wait(events)?,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }
}

/// What ended a wait on a client pipe.
pub(crate) enum Readiness {
    /// Ready, hung up or in error: the next read or write tells which.
    Ready,
    /// One of the session's clocks ran out.
    Expired(Expiry),
    /// The signal fd is readable.
    Signalled,
}

/// Polls `fd` for `events` together with the signal fd, until the first of the session's
/// clocks runs out. A deadline already passed ends the wait even if `fd` is ready: a
/// trickling client always has a byte waiting.
pub(crate) fn wait_ready(
    fd: BorrowedFd<'_>,
    events: PollFlags,
    signals: Option<BorrowedFd<'_>>,
    clock: &SessionClock,
) -> io::Result<Readiness> {
    let now = Instant::now();
    let expiry = clock.next_expiry(events.contains(PollFlags::POLLIN), now);
    let timeout = match expiry {
        Some((when, _)) if when <= now => return Ok(Readiness::Expired(expiry_of(expiry))),
        Some((when, _)) => PollTimeout::try_from(when - now).unwrap_or(PollTimeout::MAX),
        None => PollTimeout::NONE,
    };
    loop {
        let mut fds = vec![PollFd::new(fd, events)];
        if let Some(signals) = signals {
            fds.push(PollFd::new(signals, PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(0) => return Ok(Readiness::Expired(expiry_of(expiry))),
            Ok(_) => {
                let signalled = fds
                    .get(1)
                    .and_then(PollFd::revents)
                    .is_some_and(|r| !r.is_empty());
                return Ok(if signalled {
                    Readiness::Signalled
                } else {
                    Readiness::Ready
                });
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(errno) => return Err(errno.into()),
        }
    }
}

/// The limit a timed-out poll ran into (a poll without a timeout never times out).
fn expiry_of(expiry: Option<(Instant, Expiry)>) -> Expiry {
    expiry.map_or(Expiry::Idle(Duration::ZERO), |(_, expiry)| expiry)
}

pub(crate) fn file_status_flags(file: &File) -> io::Result<OFlag> {
    Ok(OFlag::from_bits_retain(fcntl(file, FcntlArg::F_GETFL)?))
}

impl Read for ClientPipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.until_ready(PollFlags::POLLIN, |mut file| file.read(buf))
    }
}

impl Write for ClientPipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.until_ready(PollFlags::POLLOUT, |mut file| file.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ClientPipe {
    fn drop(&mut self) {
        if let Some(flags) = self.original_flags.take() {
            let _ = fcntl(&self.file, FcntlArg::F_SETFL(flags));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe() -> (File, File) {
        let (read, write) = nix::unistd::pipe().unwrap();
        (File::from(read), File::from(write))
    }

    #[test]
    fn a_read_that_would_wait_past_the_idle_timeout_is_interrupted() {
        let (read, _write) = pipe();
        let mut input = ClientPipe::new(read, None, Some(Duration::from_millis(50))).unwrap();
        let started = Instant::now();
        let error = input.read(&mut [0; 16]).unwrap_err();
        assert_eq!(
            Interruption::of(&error),
            Some(Interruption::Idle(Duration::from_millis(50)))
        );
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn a_write_to_a_reader_that_stopped_reading_is_interrupted() {
        let (_read, write) = pipe();
        let mut output = ClientPipe::new(write, None, Some(Duration::from_millis(50))).unwrap();
        let error = output.write_all(&vec![0; 1 << 20]).unwrap_err();
        assert_eq!(
            Interruption::of(&error),
            Some(Interruption::Idle(Duration::from_millis(50)))
        );
    }

    #[test]
    fn data_and_end_of_file_pass_through() {
        let (read, mut write) = pipe();
        let mut input = ClientPipe::new(read, None, Some(Duration::from_secs(5))).unwrap();
        write.write_all(b"request").unwrap();
        drop(write);
        let mut received = Vec::new();
        input.read_to_end(&mut received).unwrap();
        assert_eq!(received, b"request");
    }

    #[test]
    fn the_original_blocking_mode_is_restored_on_drop() {
        let (read, _write) = pipe();
        let probe = read.try_clone().unwrap();
        let flags = |file: &File| OFlag::from_bits_retain(fcntl(file, FcntlArg::F_GETFL).unwrap());
        assert!(!flags(&probe).contains(OFlag::O_NONBLOCK));
        let input = ClientPipe::new(read, None, None).unwrap();
        assert!(flags(&probe).contains(OFlag::O_NONBLOCK));
        drop(input);
        assert!(!flags(&probe).contains(OFlag::O_NONBLOCK));
    }

    #[test]
    fn other_errors_are_not_interruptions() {
        assert_eq!(Interruption::of(&io::Error::other("x")), None);
        assert_eq!(
            Interruption::of(&io::Error::other(Interruption::Signal)),
            Some(Interruption::Signal)
        );
    }
}
