//! What one session did, counted as it happens, for the session's record (`audit::session_end`)
//! and the metrics: both engines keep one [`Tally`] and bump it in their dispatch.
//!
//! Counting must cost nothing measurable: plain integer fields bumped by the request loop
//! that owns them, and for what happens below it, shared cells (the protocol bytes of the
//! client's pipes, through [`Counted`]; the time lock waits slept, through the lock wait of
//! the session). Nothing here reads the repository.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use crate::audit::SessionId;
use crate::audit::session_end::{
    End, RefusedCalls, RestCounts, SessionEnd, add_refusal, client_version_text, seconds,
};
use crate::engine::session::{Expiry, Stop};
use crate::metrics::RepositoryChange;

/// Why the engine refused a call (`reason` of a refusal), as both engines name them; borg 2
/// adds the permission mode that refused a request.
pub mod reason {
    /// A read-only key's write.
    pub const READ_ONLY: &str = "read-only";
    /// What an append-only key may not do.
    pub const APPEND_ONLY: &str = "append-only";
    /// A repository outside the key's restrictions.
    pub const PATH_NOT_ALLOWED: &str = "path-not-allowed";
    /// A repository on a path another account could change.
    pub const UNTRUSTED_PATH: &str = "untrusted-path";
    /// A write past the repository's or the key's quota.
    pub const QUOTA: &str = "quota";
    /// borg 2: a write while another session's lock fence is in force (HTTP 423).
    pub const FENCED: &str = "fenced";
}

/// The borg exception class of a lock wait that ran out (or was abandoned).
const LOCK_TIMEOUT: &str = "LockTimeout";

/// The counters of one session.
#[derive(Debug)]
pub struct Tally {
    started: Instant,
    received: Rc<Cell<u64>>,
    sent: Rc<Cell<u64>>,
    lock_wait: Rc<Cell<Duration>>,
    objects_put: u64,
    bytes_put: u64,
    objects_deleted: u64,
    objects_read: u64,
    commits: u64,
    transaction_id: Option<u64>,
    compacted_segments: u64,
    /// Writes since the last commit or rollback.
    uncommitted: bool,
    /// The last commit: when, and the quota figures after it.
    last_commit: Option<(SystemTime, Option<u64>, Option<u64>)>,
    destroyed: bool,
    /// The class of the last call that failed, until a later call succeeds.
    failure: Option<String>,
    refused_calls: u64,
    refused: Vec<RefusedCalls>,
    repository: Option<String>,
    client_version: Option<String>,
    append_only: bool,
    permissions: &'static str,
    rest: Option<RestCounts>,
}

impl Tally {
    /// A session that starts now, for a key with these rights.
    pub fn new(append_only: bool, permissions: &'static str) -> Tally {
        Tally {
            started: Instant::now(),
            received: Rc::default(),
            sent: Rc::default(),
            lock_wait: Rc::default(),
            objects_put: 0,
            bytes_put: 0,
            objects_deleted: 0,
            objects_read: 0,
            commits: 0,
            transaction_id: None,
            compacted_segments: 0,
            uncommitted: false,
            last_commit: None,
            destroyed: false,
            failure: None,
            refused_calls: 0,
            refused: Vec::new(),
            repository: None,
            client_version: None,
            append_only,
            permissions,
            rest: None,
        }
    }

    /// The client's input, counted.
    pub fn count_input<R: Read>(&self, input: R) -> Counted<R> {
        Counted {
            inner: input,
            bytes: self.received.clone(),
        }
    }

    /// The replies to the client, counted.
    pub fn count_output<W: Write>(&self, output: W) -> Counted<W> {
        Counted {
            inner: output,
            bytes: self.sent.clone(),
        }
    }

    /// Where the session's lock waits add the time they slept.
    pub fn lock_wait_counter(&self) -> Rc<Cell<Duration>> {
        self.lock_wait.clone()
    }

    /// The repository the client opened (absolute).
    pub fn opened(&mut self, repository: &Path) {
        self.repository = Some(repository.to_string_lossy().into_owned());
    }

    /// The client's borg version, as borg's version tuple.
    pub fn client_version(&mut self, parts: &[i64]) {
        self.client_version = client_version_text(parts);
    }

    pub fn put(&mut self, bytes: usize) {
        self.objects_put += 1;
        self.bytes_put += bytes as u64;
        self.uncommitted = true;
    }

    pub fn deleted(&mut self) {
        self.objects_deleted += 1;
        self.uncommitted = true;
    }

    /// An object stored where nothing is transactional (borg 2): counted, never rolled back.
    pub fn stored(&mut self, bytes: u64) {
        self.objects_put += 1;
        self.bytes_put = self.bytes_put.saturating_add(bytes);
    }

    /// An object deleted where nothing is transactional (borg 2).
    pub fn removed(&mut self) {
        self.objects_deleted += 1;
    }

    pub fn read(&mut self) {
        self.objects_read += 1;
    }

    /// A commit: the transaction it made, segments its compaction removed so far in the
    /// session, and the quota figures after it.
    pub fn committed(
        &mut self,
        transaction_id: Option<u64>,
        compacted_segments: u64,
        quota: Option<u64>,
        quota_used: Option<u64>,
    ) {
        self.commits += 1;
        self.transaction_id = transaction_id.or(self.transaction_id);
        self.compacted_segments = compacted_segments;
        self.uncommitted = false;
        self.last_commit = Some((SystemTime::now(), quota, quota_used));
    }

    /// The client rolled back: nothing is left uncommitted.
    pub fn rolled_back(&mut self) {
        self.uncommitted = false;
    }

    /// The client deleted the whole repository.
    pub fn destroyed(&mut self) {
        self.destroyed = true;
        self.uncommitted = false;
    }

    /// The engine refused `call` for `reason` (`read-only`, `append-only`, ...).
    pub fn refused(&mut self, call: &str, reason: &str) {
        self.refused_calls += 1;
        add_refusal(&mut self.refused, call, reason);
    }

    /// A call was answered: with the borg exception class when it failed. A client's
    /// `rollback` after a failure does not count as success (borg sends one on its way out).
    pub fn answered(&mut self, failure: Option<&str>, is_rollback: bool) {
        match failure {
            Some(class) => self.failure = Some(class.to_owned()),
            None if !is_rollback => self.failure = None,
            None => {}
        }
    }

    /// borg 2's REST counts, created at first use.
    pub fn rest(&mut self) -> &mut RestCounts {
        self.rest.get_or_insert_with(RestCounts::default)
    }

    /// borg 2 counts archives stored as commits: the end of a backup.
    pub fn archive_stored(&mut self) {
        self.commits += 1;
        self.last_commit = Some((SystemTime::now(), None, None));
    }

    /// How a session that the client ended (it closed or vanished) ended: its last failing
    /// call, if no call succeeded after it, says why it left.
    pub fn client_end(&self) -> End {
        match self.failure.as_deref() {
            Some(LOCK_TIMEOUT) => End::LockTimeout,
            Some(class) => End::Error(class.to_owned()),
            None => End::ClientClosed,
        }
    }

    /// The session's record, ending now as `end`, and what it did to its repository.
    pub fn record(
        &self,
        session_id: &SessionId,
        protocol: &str,
        end: &End,
    ) -> (SessionEnd, RepositoryChange) {
        let mut record = SessionEnd::new(session_id, protocol, end, SystemTime::now());
        record.repository.clone_from(&self.repository);
        record.client_version.clone_from(&self.client_version);
        record.duration_s = seconds(self.started.elapsed());
        record.lock_wait_s = seconds(self.lock_wait.get());
        record.bytes_received = self.received.get();
        record.bytes_sent = self.sent.get();
        record.objects_put = self.objects_put;
        record.bytes_put = self.bytes_put;
        record.objects_deleted = self.objects_deleted;
        record.objects_read = self.objects_read;
        record.commits = self.commits;
        record.transaction_id = self.transaction_id;
        record.compacted_segments = self.compacted_segments;
        record.rolled_back = self.uncommitted;
        record.append_only = self.append_only;
        record.permissions = self.permissions.to_owned();
        record.refused_calls = self.refused_calls;
        record.refused.clone_from(&self.refused);
        record.rest.clone_from(&self.rest);
        let change = match (self.destroyed, self.last_commit) {
            (true, _) => RepositoryChange::Destroyed,
            (false, Some((time, quota, quota_used))) => RepositoryChange::Committed {
                time,
                quota,
                quota_used,
            },
            (false, None) => RepositoryChange::None,
        };
        (record, change)
    }
}

/// The record's `end` for a session the transport ended (any engine). `client_end` is how a
/// session the client ended reads ([`Tally::client_end`]); the server's own reasons (a
/// signal, a clock) win over it.
pub fn stop_end(stop: &Stop, client_end: End) -> End {
    match stop {
        Stop::ClientGone(_) => client_end,
        Stop::Signal(signal) => End::Signal(signal.as_str().to_owned()),
        Stop::Expired(Expiry::Idle(_)) => End::IdleTimeout,
        Stop::Expired(Expiry::Request(_)) => End::RequestTimeout,
        Stop::Expired(Expiry::Session(_)) => End::SessionLimit,
    }
}

/// A reader or writer that adds the bytes it moves to a shared counter.
#[derive(Debug)]
pub struct Counted<T> {
    inner: T,
    bytes: Rc<Cell<u64>>,
}

impl<T> Counted<T> {
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.bytes.set(self.bytes.get() + read as u64);
        Ok(read)
    }
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.bytes.set(self.bytes.get() + written as u64);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> SessionId {
        SessionId::parse("t").unwrap()
    }

    #[test]
    fn pipes_count_what_they_move() {
        let tally = Tally::new(false, "all");
        let mut input = tally.count_input(&b"hello world"[..]);
        let mut buffer = [0u8; 4];
        input.read_exact(&mut buffer).unwrap();
        let mut output = tally.count_output(Vec::new());
        output.write_all(b"abc").unwrap();
        let (record, _) = tally.record(&id(), "borg1", &End::ClientClosed);
        assert_eq!((record.bytes_received, record.bytes_sent), (4, 3));
    }

    #[test]
    fn writes_after_the_last_commit_are_rolled_back_and_a_commit_is_a_change() {
        let mut tally = Tally::new(true, "all");
        tally.opened(Path::new("/srv/r"));
        tally.put(10);
        tally.deleted();
        tally.committed(Some(7), 2, Some(100), Some(50));
        let (record, change) = tally.record(&id(), "borg1", &End::ClientClosed);
        assert!(!record.rolled_back);
        assert_eq!(record.transaction_id, Some(7));
        assert_eq!(record.compacted_segments, 2);
        assert!(record.append_only);
        assert!(matches!(
            change,
            RepositoryChange::Committed {
                quota: Some(100),
                quota_used: Some(50),
                ..
            }
        ));
        tally.put(5);
        let (record, _) = tally.record(&id(), "borg1", &End::ClientClosed);
        assert!(record.rolled_back);
        assert_eq!((record.objects_put, record.bytes_put), (2, 15));
        assert_eq!(record.transaction_id, Some(7));
        tally.rolled_back();
        assert!(
            !tally
                .record(&id(), "borg1", &End::ClientClosed)
                .0
                .rolled_back
        );
        tally.destroyed();
        assert_eq!(
            tally.record(&id(), "borg1", &End::ClientClosed).1,
            RepositoryChange::Destroyed
        );
    }

    #[test]
    fn a_client_that_leaves_after_a_failed_call_ended_with_it() {
        let mut tally = Tally::new(false, "read-only");
        assert_eq!(tally.client_end(), End::ClientClosed);
        tally.answered(Some("LockTimeout"), false);
        tally.answered(None, true);
        assert_eq!(tally.client_end(), End::LockTimeout);
        tally.answered(Some("PermissionDenied"), false);
        assert_eq!(tally.client_end(), End::Error("PermissionDenied".into()));
        tally.answered(None, false);
        assert_eq!(tally.client_end(), End::ClientClosed);
    }

    #[test]
    fn refusals_are_counted_and_named() {
        let mut tally = Tally::new(false, "read-only");
        tally.refused("put", "read-only");
        tally.refused("put", "read-only");
        tally.refused("open", "path-not-allowed");
        let (record, _) = tally.record(&id(), "borg1", &End::ClientClosed);
        assert_eq!(record.refused_calls, 3);
        assert_eq!(record.refused.len(), 2);
        assert_eq!(record.permissions, "read-only");
    }
}
