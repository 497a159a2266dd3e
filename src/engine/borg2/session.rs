//! One borg 2 session: requests in, responses out, strictly in order, until the client goes
//! away (end of input, a dead pipe), a signal arrives, or one of the session's clocks runs
//! out (idle timeout, request deadline, session limit).
//!
//! Every request gets its response, errors included, and the session goes on; only a head
//! that breaks the framing ends it (after one answer), because after it the byte stream
//! cannot be delimited. The transport (non-blocking pipes, the signal fd, the clocks) is the
//! one every engine uses (`engine/session/`).

use std::io::{Read, Write};

use super::head::{HeadError, Method};
use super::response::Response;
use super::route::route;
use super::service::Service;
use super::wire::{ReadError, RequestReader, ResponseWriter};
use crate::audit::session_end::End;
use crate::engine::session::{Stop, Watch};
use crate::engine::tally::stop_end;

/// Why a session ended.
#[derive(Debug)]
pub enum Ending {
    /// End of input between requests: the client closed its side.
    ClientClosed,
    /// A signal, a clock, or a client that is gone.
    Stopped(Stop),
    /// A request the stream cannot go on after (answered before ending).
    BadFraming(HeadError),
    /// End of input inside a request: the connection died mid-request.
    Truncated,
}

impl Ending {
    /// The exit status: 0 whenever the client left (borgstore's client treats anything
    /// else at close as an error), 128+N for a signal, 2 for a broken stream.
    pub fn exit_code(&self) -> u8 {
        match self {
            Ending::ClientClosed | Ending::Truncated => 0,
            Ending::Stopped(stop) => stop.exit_code(),
            Ending::BadFraming(_) => 2,
        }
    }
}

/// The session record's `end` for `ending` (`client_end`: how a session the client ended
/// reads).
pub fn end_of(ending: &Ending, client_end: End) -> End {
    match ending {
        Ending::ClientClosed | Ending::Truncated => client_end,
        Ending::Stopped(stop) => stop_end(stop, client_end),
        Ending::BadFraming(_) => End::Error(PROTOCOL_ERROR.to_owned()),
    }
}

/// The record's `error` for a stream that is not HTTP as borgstore speaks it.
pub const PROTOCOL_ERROR: &str = "ProtocolError";

/// Serves requests until the session ends.
pub fn run<R: Read, W: Write>(
    service: &mut Service,
    watch: &mut Watch,
    reader: &mut RequestReader<R>,
    writer: &mut ResponseWriter<W>,
) -> Ending {
    loop {
        let buffered = reader.has_buffered_input();
        if let Err(stop) = watch.await_request(buffered, || writer.flush()) {
            return Ending::Stopped(stop);
        }
        let head = match reader.next_head() {
            Ok(Some(head)) => head,
            Ok(None) => return Ending::ClientClosed,
            Err(ReadError::Io(error)) => return Ending::Stopped(watch.pipe_failed(error)),
            Err(ReadError::Truncated) => return Ending::Truncated,
            Err(ReadError::Head(error)) => {
                let answered = writer
                    .send(Response::error(error.status(), &error.to_string()))
                    .and_then(|()| writer.flush());
                if let Err(error) = answered {
                    return Ending::Stopped(watch.pipe_failed(error));
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
        // The body is read (or the request failed): the request deadline no longer applies.
        watch.request_read();
        let response = match result {
            Ok(response) if is_head => response.without_body(),
            Ok(response) => response,
            Err(ReadError::Io(error)) => return Ending::Stopped(watch.pipe_failed(error)),
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
            return Ending::Stopped(watch.pipe_failed(error));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use nix::sys::signal::Signal;

    use super::*;
    use crate::engine::session::Expiry;

    #[test]
    fn every_ending_reads_as_the_end_the_record_names() {
        let cases = [
            (Ending::ClientClosed, End::ClientClosed),
            (Ending::Truncated, End::ClientClosed),
            (
                Ending::Stopped(Stop::Signal(Signal::SIGHUP)),
                End::Signal("SIGHUP".into()),
            ),
            (
                Ending::Stopped(Stop::Expired(Expiry::Idle(Duration::ZERO))),
                End::IdleTimeout,
            ),
            (
                Ending::Stopped(Stop::Expired(Expiry::Session(Duration::ZERO))),
                End::SessionLimit,
            ),
            (
                Ending::BadFraming(HeadError::TooLarge),
                End::Error(PROTOCOL_ERROR.into()),
            ),
        ];
        for (ending, end) in cases {
            assert_eq!(end_of(&ending, End::ClientClosed), end, "{ending:?}");
        }
    }
}
