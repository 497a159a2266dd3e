//! What the session's record says about a borg 1 session, decided from what the server saw
//! (pure): how an [`Ending`] reads as the record's `end`, and which failed calls were the
//! engine refusing the client (counted and named in the record, issue 16) rather than
//! failing for it.

#![forbid(unsafe_code)]

use super::repository::error::RepoError;
use super::rpc::RpcDecodeError;
use super::server::Ending;
use crate::audit::session_end::End;
use crate::engine::tally::reason::{APPEND_ONLY, QUOTA, READ_ONLY};
use crate::engine::tally::stop_end;

/// The record's `end` for a session that ended with `ending`. `client_end` is how a session
/// the client ended reads (`Tally::client_end`: a client that left after a failed call
/// ended with that call's failure).
pub(crate) fn end_of(ending: &Ending, client_end: End) -> End {
    match ending {
        Ending::ClientClosed => client_end,
        Ending::Stopped(stop) => stop_end(stop, client_end),
        Ending::BadInput { class: None, .. } => client_end,
        Ending::BadInput {
            class: Some(class), ..
        } => End::Error((*class).to_owned()),
    }
}

/// The exception class a stream that is not borg's protocol ends the session with, or `None`
/// when the client only went away: it closed the connection in the middle of a request (a
/// killed client), or reading from it failed (a connection reset).
pub(crate) fn decode_failure_class(error: &RpcDecodeError) -> Option<&'static str> {
    match error {
        RpcDecodeError::TruncatedAtEof { .. } | RpcDecodeError::Read(_) => None,
        RpcDecodeError::UnexpectedFormat(_) => Some("UnexpectedRPCDataFormatFromClient"),
        RpcDecodeError::Frame(_) | RpcDecodeError::Malformed(_) => Some("ProtocolError"),
    }
}

/// Why the engine refused a call that failed with `error`, or `None` when the call failed
/// for another reason (a missing object, a lock held elsewhere, a full disk).
pub(crate) fn refusal_reason(error: &RepoError) -> Option<&'static str> {
    match error {
        RepoError::ReadOnly(_) => Some(READ_ONLY),
        // Deleting an append-only repository, repairing it, or replacing its key: the only
        // calls the repository refuses for what the key may do.
        RepoError::AppendOnly(_) | RepoError::NotPermitted(_) => Some(APPEND_ONLY),
        RepoError::QuotaExceeded { .. } => Some(QUOTA),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::time::Duration;

    use nix::sys::signal::Signal;

    use super::*;
    use crate::engine::session::{Expiry, Stop};

    #[test]
    fn every_ending_reads_as_the_end_the_record_names() {
        let second = Duration::from_secs(1);
        let closed = || End::ClientClosed;
        let cases = [
            (Ending::ClientClosed, End::ClientClosed),
            (
                Ending::Stopped(Stop::ClientGone(io::ErrorKind::BrokenPipe.into())),
                End::ClientClosed,
            ),
            (
                Ending::Stopped(Stop::Signal(Signal::SIGTERM)),
                End::Signal("SIGTERM".into()),
            ),
            (
                Ending::Stopped(Stop::Expired(Expiry::Idle(second))),
                End::IdleTimeout,
            ),
            (
                Ending::Stopped(Stop::Expired(Expiry::Request(second))),
                End::RequestTimeout,
            ),
            (
                Ending::Stopped(Stop::Expired(Expiry::Session(second))),
                End::SessionLimit,
            ),
            (
                Ending::BadInput {
                    message: String::new(),
                    exit_code: 0,
                    class: None,
                },
                End::ClientClosed,
            ),
            (
                Ending::BadInput {
                    message: String::new(),
                    exit_code: 2,
                    class: Some("ProtocolError"),
                },
                End::Error("ProtocolError".into()),
            ),
        ];
        for (ending, end) in cases {
            assert_eq!(end_of(&ending, closed()), end, "{ending:?}");
        }
    }

    #[test]
    fn a_client_that_left_after_a_failed_call_keeps_that_failure_as_its_end() {
        let failed = End::Error("PermissionDenied".into());
        assert_eq!(end_of(&Ending::ClientClosed, failed.clone()), failed);
        let gone = Ending::Stopped(Stop::ClientGone(io::ErrorKind::BrokenPipe.into()));
        assert_eq!(end_of(&gone, End::LockTimeout), End::LockTimeout);
        // The server's own reasons win over the client's last failure.
        let idle = Ending::Stopped(Stop::Expired(Expiry::Idle(Duration::ZERO)));
        assert_eq!(end_of(&idle, failed), End::IdleTimeout);
    }

    #[test]
    fn a_truncated_request_is_a_client_that_left_and_garbage_is_an_error() {
        assert_eq!(
            decode_failure_class(&RpcDecodeError::TruncatedAtEof { buffered: 3 }),
            None
        );
        assert_eq!(
            decode_failure_class(&RpcDecodeError::UnexpectedFormat("x")),
            Some("UnexpectedRPCDataFormatFromClient")
        );
        assert_eq!(
            decode_failure_class(&RpcDecodeError::Read(io::ErrorKind::ConnectionReset.into())),
            None
        );
    }

    #[test]
    fn refusals_are_told_apart_from_failures() {
        assert_eq!(refusal_reason(&RepoError::ReadOnly("put")), Some(READ_ONLY));
        assert_eq!(
            refusal_reason(&RepoError::AppendOnly("/r".into())),
            Some(APPEND_ONLY)
        );
        assert_eq!(
            refusal_reason(&RepoError::NotPermitted("key".into())),
            Some(APPEND_ONLY)
        );
        assert_eq!(
            refusal_reason(&RepoError::QuotaExceeded {
                quota: "1".into(),
                usage: "2".into()
            }),
            Some(QUOTA)
        );
        assert_eq!(refusal_reason(&RepoError::Inconsistent("/r".into())), None);
        assert_eq!(refusal_reason(&RepoError::BadArgument("x".into())), None);
    }
}
