//! One borg 2 session: requests in, responses out, strictly in order, until the client goes
//! away (end of input, a dead pipe, a signal, or silence past the idle timeout).
//!
//! Every request gets its response, errors included, and the session goes on; only a head
//! that breaks the framing ends it (after one answer), because after it the byte stream
//! cannot be delimited. The transport (non-blocking pipes, the signal fd, the idle timeout)
//! is the one the borg 1 engine uses (`engine/server.rs`).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::rc::Rc;
use std::time::Duration;

use nix::poll::PollFlags;
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;

use super::head::{HeadError, Method};
use super::response::Response;
use super::route::route;
use super::service::Service;
use super::wire::{ReadError, RequestReader, ResponseWriter};
use crate::engine::clock::{Expiry, SessionClock};
use crate::engine::server::{Interruption, Readiness, wait_ready};

/// Why a session ended.
#[derive(Debug)]
pub enum Ending {
    /// End of input between requests: the client closed its side.
    ClientClosed,
    /// Writing a response failed: the client is gone.
    ClientGone(io::Error),
    Signal(Signal),
    IdleTimeout(Duration),
    /// A request the stream cannot go on after (answered before ending).
    BadFraming(HeadError),
    /// End of input inside a request: the connection died mid-request.
    Truncated,
}

impl Ending {
    /// The ending for a clock that ran out (only the idle timeout is set for borg 2).
    fn expired(expiry: Expiry) -> Ending {
        match expiry {
            Expiry::Idle(timeout) | Expiry::Request(timeout) | Expiry::Session(timeout) => {
                Ending::IdleTimeout(timeout)
            }
        }
    }

    /// The exit status: 0 whenever the client left (borgstore's client treats anything
    /// else at close as an error), 128+N for a signal, 2 for a broken stream.
    pub fn exit_code(&self) -> u8 {
        match self {
            Ending::ClientClosed
            | Ending::ClientGone(_)
            | Ending::IdleTimeout(_)
            | Ending::Truncated => 0,
            Ending::Signal(signal) => 128u8.saturating_add(*signal as u8),
            Ending::BadFraming(_) => 2,
        }
    }
}

/// What a session waits on between requests.
pub struct Watch {
    /// stdin, polled for readability at request boundaries.
    pub stdin: File,
    pub signals: Option<SignalFd>,
    /// The idle timeout (borg 2 sessions have no request deadline or session limit yet).
    pub clock: Rc<SessionClock>,
}

impl Watch {
    /// Blocks until a request can be read, or the session must end.
    fn wait_for_input(&mut self) -> Option<Ending> {
        let signals = self.signals.as_ref().map(AsFd::as_fd);
        match wait_ready(self.stdin.as_fd(), PollFlags::POLLIN, signals, &self.clock) {
            Ok(Readiness::Expired(expiry)) => Some(Ending::expired(expiry)),
            Ok(Readiness::Signalled) => self.take_signal().map(Ending::Signal),
            Ok(Readiness::Ready) | Err(_) => None,
        }
    }

    fn take_signal(&mut self) -> Option<Signal> {
        let info = self.signals.as_mut()?.read_signal().ok()??;
        Signal::try_from(i32::try_from(info.ssi_signo).ok()?).ok()
    }

    /// The ending for a failed read or write of the client's pipes.
    fn pipe_failed(&mut self, error: io::Error) -> Ending {
        match Interruption::of(&error) {
            Some(Interruption::Idle(timeout)) => Ending::IdleTimeout(timeout),
            Some(Interruption::RequestTimeout(limit) | Interruption::SessionLimit(limit)) => {
                Ending::IdleTimeout(limit)
            }
            Some(Interruption::Signal) => match self.take_signal() {
                Some(signal) => Ending::Signal(signal),
                None => Ending::ClientGone(error),
            },
            None => Ending::ClientGone(error),
        }
    }
}

/// Serves requests until the session ends.
pub fn run<R: Read, W: Write>(
    service: &mut Service,
    watch: &mut Watch,
    reader: &mut RequestReader<R>,
    writer: &mut ResponseWriter<W>,
) -> Ending {
    loop {
        if !reader.has_buffered_input() {
            if let Err(error) = writer.flush() {
                return watch.pipe_failed(error);
            }
            if let Some(ending) = watch.wait_for_input() {
                return ending;
            }
        }
        let head = match reader.next_head() {
            Ok(Some(head)) => head,
            Ok(None) => return Ending::ClientClosed,
            Err(ReadError::Io(error)) => return watch.pipe_failed(error),
            Err(ReadError::Truncated) => return Ending::Truncated,
            Err(ReadError::Head(error)) => {
                let answered = writer
                    .send(Response::error(error.status(), &error.to_string()))
                    .and_then(|()| writer.flush());
                if let Err(error) = answered {
                    return watch.pipe_failed(error);
                }
                return Ending::BadFraming(error);
            }
        };
        let is_head = head.method == Method::Head;
        let mut body = reader.body(head.body_length);
        let result = match route(&head) {
            Ok(operation) => service.execute(operation, &mut body),
            Err(refusal) => body
                .finish()
                .map(|()| Response::error(refusal.status, &refusal.message)),
        };
        let response = match result {
            Ok(response) if is_head => response.without_body(),
            Ok(response) => response,
            Err(ReadError::Io(error)) => return watch.pipe_failed(error),
            Err(ReadError::Truncated) => return Ending::Truncated,
            Err(ReadError::Head(error)) => return Ending::BadFraming(error),
        };
        log::debug!(
            target: super::LOG,
            "{:?} {} -> {} {}",
            head.method,
            head.target,
            response.status,
            response.reason
        );
        if let Err(error) = writer.send(response) {
            return watch.pipe_failed(error);
        }
    }
}
