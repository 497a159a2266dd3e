//! The serve loop: requests in, replies out, in order, with the repository opened by the
//! client's `open` and closed on every way out (EOF, a dead pipe, a signal, idle timeout).
//!
//! Requests are handled as they stream in; replies are batched and flushed only when no
//! further request is already buffered, so pipelined puts cost one write per batch.
//!
//! stdin and stdout are the shared transport's [`ClientPipe`]s: non-blocking, so that a
//! client that stalls in the middle of a request, trickles it byte by byte, or stops reading
//! replies, cannot block the engine past the session's clocks (idle timeout, request
//! deadline, session limit) or a SIGHUP/SIGTERM while it holds the repository lock. Lock
//! waits end on the same events (see [`AbortProbe`](crate::engine::session::AbortProbe)).

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use super::args::ServeConfig;
use super::key_quota::{KeyQuota, KeyQuotaSession, SeedScope};
use super::lock::{LockIdentity, SessionLockWait};
use super::permissions::{self, Access, Verdict, judge};
use super::report::{self, refusal_reason};
use super::repository::error::RepoError;
use super::repository::repo::{KeyPermission, OpenOptions, Repository};
use super::rpc::{
    Args, ClientData, Format, Method, RemoteException, ReplyWriter, Request, RequestReader,
    RpcDecodeError, SERVER_VERSION,
};
use crate::engine::log::LogHandle;
use crate::engine::paths::{PathContext, check_no_foreign_writers, resolve_and_check};
use crate::engine::session::{ClientPipe, Interruption, SessionClock, Stop, Watch, watch_signals};
use crate::engine::tally::reason::{PATH_NOT_ALLOWED, READ_ONLY, UNTRUSTED_PATH};
use crate::engine::tally::{Counted, Tally};
use crate::policy::Permissions;

pub const LOG: &str = crate::engine::session::LOG;

/// Why the loop ended, for the exit status.
#[derive(Debug)]
pub enum Ending {
    /// The client closed stdin (the normal end).
    ClientClosed,
    /// A signal, a clock, or a client that is gone.
    Stopped(Stop),
    /// The client sent something that is not a borg request (`class`: the exception class
    /// the session's record names), or closed the connection in the middle of one (`None`).
    BadInput {
        message: String,
        exit_code: i32,
        class: Option<&'static str>,
    },
}

/// The repository side of the connection, as borg's `RepositoryServer.repository` is.
enum Session {
    /// No `open` yet.
    Idle,
    /// Boxed: the repository is large, and one lives per connection.
    Open(Box<Repository>),
    /// The repository was destroyed, or the last `open` failed. Python `borg serve` keeps
    /// the repository object it had there, so the client's `rollback` (which borg's client
    /// sends when an exception ends its `with repository:` block, e.g. "Cancelled by user"
    /// after `borg init` destroyed a repository at the passphrase prompt) is answered; every
    /// other call is refused.
    Ended(Ended),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Destroyed,
    OpenFailed,
}

impl Session {
    fn take(&mut self, then: Session) -> Option<Repository> {
        match std::mem::replace(self, then) {
            Session::Open(repository) => Some(*repository),
            Session::Idle | Session::Ended(_) => None,
        }
    }
}

/// Everything about the connection that outlives one request.
pub struct Server {
    config: ServeConfig,
    log: LogHandle,
    session: Session,
    path_context: PathContext<'static>,
    /// Signals, clocks, and stdin for noticing a vanished client while waiting for a lock.
    watch: Watch,
    /// What the session did, for its record.
    tally: Tally,
}

/// What one request produced.
enum Outcome<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    Bytes(&'a [u8]),
    Owned(Vec<u8>),
    Id([u8; 32]),
    Ids(Vec<[u8; 32]>),
    Negotiate(Option<i64>),
}

type Reply<'a> = Result<Outcome<'a>, RemoteException>;

impl Server {
    /// A server for the client on `stdin` (a descriptor of its own, watched between
    /// requests and during lock waits).
    pub fn new(
        config: ServeConfig,
        log: LogHandle,
        stdin: File,
        path_context: PathContext<'static>,
    ) -> Server {
        let clock = SessionClock::new(
            config.idle_timeout,
            config.request_timeout,
            config.session_limit,
        );
        let tally = Tally::new(config.append_only, config.permissions.name());
        Server {
            config,
            log,
            session: Session::Idle,
            path_context,
            watch: Watch::new(stdin, watch_signals(), clock),
            tally,
        }
    }

    /// What the session did so far.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Serves until the client goes away; the repository is closed on every path.
    pub fn run<R: io::Read, W: Write>(
        &mut self,
        reader: &mut RequestReader<R>,
        writer: &mut ReplyWriter<W>,
    ) -> Ending {
        let ending = self.serve(reader, writer);
        self.close_repository();
        ending
    }

    fn serve<R: io::Read, W: Write>(
        &mut self,
        reader: &mut RequestReader<R>,
        writer: &mut ReplyWriter<W>,
    ) -> Ending {
        loop {
            let buffered = reader.has_buffered_request();
            if let Err(stop) = self.watch.await_request(buffered, || writer.flush()) {
                return Ending::Stopped(stop);
            }
            let next = reader.next_request();
            self.watch.request_read();
            let request = match next {
                Ok(Some(request)) => request,
                Ok(None) => return Ending::ClientClosed,
                Err(RpcDecodeError::Read(error)) if Interruption::of(&error).is_some() => {
                    return Ending::Stopped(self.watch.pipe_failed(error));
                }
                Err(error) => {
                    // borg's server has answered every request before the bad one; so do we.
                    if let Err(gone) = writer.flush() {
                        return Ending::Stopped(Stop::ClientGone(gone));
                    }
                    let message = error
                        .borg_log_message("1.4.5")
                        .unwrap_or_else(|| error.to_string());
                    return Ending::BadInput {
                        message,
                        exit_code: error.exit_code(modern_exit_codes()),
                        class: report::decode_failure_class(&error),
                    };
                }
            };
            let (format, msgid) = (request.format, request.msgid);
            let is_rollback = request.method == Method::Rollback;
            let reply = self.handle(&request);
            let written = match reply {
                Ok(outcome) => {
                    let written = write_outcome(writer, format, msgid, outcome);
                    self.tally.answered(None, is_rollback);
                    written
                }
                Err(exception) => {
                    log::debug!(target: LOG, "{}: {}", exception.class, exception.short.trim_end());
                    self.tally.answered(Some(&exception.class), is_rollback);
                    writer.exception(format, msgid, &exception)
                }
            };
            if let Err(error) = written {
                return Ending::Stopped(self.watch.pipe_failed(error));
            }
        }
    }

    /// stdin and stdout as non-blocking [`ClientPipe`]s that give up on this server's
    /// signals and clocks, counting the protocol bytes they move for the session's record.
    pub fn client_pipes(
        &self,
        stdin: File,
        stdout: File,
    ) -> io::Result<(Counted<ClientPipe>, Counted<ClientPipe>)> {
        let (input, output) = self.watch.client_pipes(stdin, stdout)?;
        Ok((
            self.tally.count_input(input),
            self.tally.count_output(output),
        ))
    }

    fn handle<'a>(&'a mut self, request: &Request<'_>) -> Reply<'a> {
        let args = &request.args;
        match &request.method {
            Method::Negotiate => Ok(self.negotiate(args)),
            Method::Open => self.open(args),
            Method::InjectException => inject_exception(args),
            Method::Unknown(name) => Err(RemoteException::invalid_rpc_method(name)),
            method => self.repository_call(method, args),
        }
    }

    fn negotiate(&mut self, args: &Args<'_>) -> Outcome<'static> {
        match args.client_data() {
            Some(ClientData::Int(2)) => Outcome::Negotiate(Some(2)),
            Some(ClientData::Map { client_version }) => {
                if let Some(parts) = client_version {
                    self.tally.client_version(&parts);
                }
                super::remote_log::open_json(&self.log);
                Outcome::Negotiate(None)
            }
            _ => Outcome::Negotiate(None),
        }
    }

    fn open(&mut self, args: &Args<'_>) -> Reply<'_> {
        let path = args.bytes("path")?.unwrap_or_default();
        let create = args.bool_or("create", false)?;
        let lock = args.bool_or("lock", true)?;
        let exclusive = args.opt_bool("exclusive")?;
        let client_append_only = args.bool_or("append_only", false)?;
        let make_parent_dirs = args.bool_or("make_parent_dirs", false)?;
        let lock_wait = match args.opt_int("lock_wait") {
            Ok(seconds) => seconds.map(|s| s.max(0) as f64),
            Err(_) => args.opt_float("lock_wait")?,
        };
        // A second open replaces the first repository; close it properly first.
        self.close_repository();
        if let Some(character) = crate::engine::paths::unprintable_character(path) {
            let shown = crate::gate::command::visible(&String::from_utf8_lossy(path));
            log::warn!(target: LOG, "Refusing the repository path {shown}: it contains the character U+{:04X}, which a directory name must not hold", u32::from(character));
            self.tally.refused("open", PATH_NOT_ALLOWED);
            return Err(RemoteException::path_not_allowed(&shown));
        }
        log::debug!(target: LOG, "Resolving repository path {:?}", String::from_utf8_lossy(path));
        let resolved = resolve_and_check(
            path,
            &self.path_context,
            &self.config.restrict_to_paths,
            &self.config.restrict_to_repositories,
        )
        .map_err(|denied| {
            self.tally.refused("open", PATH_NOT_ALLOWED);
            RemoteException::path_not_allowed(&denied.0)
        })?;
        log::debug!(target: LOG, "Resolved repository path to {:?}", resolved.display().to_string());
        let restricted = !self.config.restrict_to_paths.is_empty()
            || !self.config.restrict_to_repositories.is_empty();
        if restricted {
            // The repository is opened by path: another account must not be able to swap it.
            let euid = nix::unistd::geteuid().as_raw();
            if let Err(unsafe_path) = check_no_foreign_writers(&resolved, euid) {
                log::warn!(target: LOG, "Refusing {}: {unsafe_path}", resolved.display());
                self.tally.refused("open", UNTRUSTED_PATH);
                return Err(RemoteException::path_not_allowed(
                    &resolved.display().to_string(),
                ));
            }
        }
        let needed = permissions::access(&Method::Open).when_asked(create);
        if let Verdict::Refused(what) = judge(self.config.permissions, needed) {
            self.tally.refused("open", READ_ONLY);
            return Err(RemoteException::from(RepoError::ReadOnly(what)));
        }
        let options = OpenOptions {
            create,
            lock,
            allow_lock_bypass: self.config.allow_lock_bypass,
            exclusive,
            append_only: (!create && self.config.append_only) || client_append_only,
            make_parent_dirs,
            storage_quota: self.config.storage_quota,
            read_only: self.config.permissions == Permissions::ReadOnly,
        };
        let wait_for = clamp_lock_wait(lock_wait, self.config.max_lock_wait);
        // Kept by the repository for every later wait too (an upgrade, a deferred lock).
        let probe = self
            .watch
            .abort_probe()
            .map_err(|e| RemoteException::os_error(&format!("cannot watch the client: {e}")))?;
        let clock = self.watch.clock();
        let wait = SessionLockWait::new(clock.lock_wait(wait_for))
            .counting_into(self.tally.lock_wait_counter())
            .until(clock.session_deadline())
            .abort_when(Box::new(move || probe.fired()));
        let identity = LockIdentity::for_current_process();
        // The record names the repository the client asked for, also when its lock or the
        // repository itself then fails the open.
        self.tally.opened(&resolved);
        let mut repository =
            Repository::open(&resolved, &options, identity, wait).map_err(|e| {
                self.session = Session::Ended(Ended::OpenFailed);
                RemoteException::from(e)
            })?;
        if let (Some(limit), Some(ledger), false) = (
            self.config.key_quota,
            &self.config.key_quota_ledger,
            options.read_only,
        ) {
            let scope = SeedScope {
                restrict_to_paths: self.config.restrict_to_paths.clone(),
                restrict_to_repositories: self.config.restrict_to_repositories.clone(),
            };
            let quota = KeyQuota {
                limit,
                ledger: ledger.clone(),
            };
            repository.set_key_quota(KeyQuotaSession::new(quota, &resolved, scope));
        }
        let id = repository.id();
        self.session = Session::Open(Box::new(repository));
        Ok(Outcome::Id(id))
    }

    fn repository_call<'a>(&'a mut self, method: &Method, args: &Args<'_>) -> Reply<'a> {
        let permissions = self.config.permissions;
        let needed = permissions::access(method);
        let verdict = judge(permissions, needed);
        // A call on the repository as a whole is judged before anything else.
        if let (Access::Manage(_), Verdict::Refused(what)) = (needed, verdict) {
            return Err(failed(&mut self.tally, method, RepoError::ReadOnly(what)));
        }
        if *method == Method::Destroy {
            return self.destroy();
        }
        let tally = &mut self.tally;
        let repository = match &mut self.session {
            Session::Open(repository) => repository,
            // Python's `_rollback` works on the repository object it kept.
            Session::Ended(_) if *method == Method::Rollback => return Ok(Outcome::Nil),
            Session::Ended(ended) => return Err(ended_repository(*ended)),
            Session::Idle => return Err(no_repository()),
        };
        // A write to the open repository, once the call reaches one.
        if let Verdict::Refused(what) = verdict {
            return Err(failed(tally, method, RepoError::ReadOnly(what)));
        }
        let acknowledged = verdict == Verdict::Acknowledged;
        let result: Result<Outcome<'a>, RepoError> = match method {
            Method::Len => repository.len().map(|n| Outcome::Int(n as i64)),
            Method::List => {
                let limit = list_limit(args)?;
                let marker = marker(args)?;
                repository.list(limit, marker.as_ref()).map(Outcome::Ids)
            }
            Method::Scan => {
                let limit = args.opt_int("limit")?;
                let marker = marker(args)?;
                repository.scan(limit, marker.as_ref()).map(Outcome::Ids)
            }
            Method::Get => {
                let id = object_id(args)?;
                repository.get(&id).map(|data| {
                    tally.read();
                    Outcome::Bytes(data)
                })
            }
            Method::Put => {
                let id = object_id(args)?;
                let data = args.bytes("data")?.unwrap_or_default();
                guard_disk(repository, |repo| repo.put(&id, data)).map(|()| {
                    tally.put(data.len());
                    Outcome::Nil
                })
            }
            Method::Delete => {
                let id = object_id(args)?;
                guard_disk(repository, |repo| repo.delete(&id)).map(|()| {
                    tally.deleted();
                    Outcome::Nil
                })
            }
            Method::Commit if acknowledged => {
                // Nothing can have changed; a commit would only clean up others' leftovers.
                Ok(Outcome::Nil)
            }
            Method::Commit => {
                let compact = args.bool_or("compact", true)?;
                let threshold = args.float_or("threshold", 0.1)?;
                let cleanup_commits = args.bool_or("cleanup_commits", false)?;
                guard_disk(repository, |repo| {
                    repo.commit(compact, threshold, cleanup_commits)
                })
                .map(|()| {
                    let facts = repository.commit_facts();
                    tally.committed(
                        facts.transaction_id.map(u64::from),
                        facts.compacted_segments,
                        facts.quota,
                        Some(facts.quota_used),
                    );
                    Outcome::Nil
                })
            }
            Method::Rollback => {
                repository.rollback();
                tally.rolled_back();
                Ok(Outcome::Nil)
            }
            Method::Check => {
                let repair = args.bool_or("repair", false)?;
                let max_duration = args.opt_int("max_duration")?.unwrap_or(0).max(0) as u64;
                if let Verdict::Refused(what) = judge(permissions, needed.when_asked(repair)) {
                    return Err(failed(tally, method, RepoError::ReadOnly(what)));
                }
                repository.check(repair, max_duration).map(Outcome::Bool)
            }
            Method::SaveKey => {
                let keydata = args.bytes("keydata")?.unwrap_or_default();
                let permission = if self.config.append_only {
                    KeyPermission::OnlyWhenNone
                } else {
                    KeyPermission::Any
                };
                repository
                    .save_key(keydata, permission)
                    .map(|()| Outcome::Nil)
            }
            Method::LoadKey => Ok(Outcome::Owned(repository.load_key())),
            // Reading the nonce counter is a read; read-only keys need it (below).
            Method::GetFreeNonce => repository.get_free_nonce().map(|n| match n {
                Some(n) => Outcome::Int(n as i64),
                None => Outcome::Nil,
            }),
            Method::CommitNonceReservation if acknowledged => {
                // borg 1.2's `check` re-encrypts (and discards) every archive's item stream,
                // so it reserves nonces even without --repair. A read-only session can store
                // nothing, so no ciphertext made with these nonces can ever reach the
                // repository: acknowledging the reservation without persisting it cannot lead
                // to nonce reuse, and keeps the nonce file (the writers' nonce space) out of
                // a read-only key's reach. The previous state is still checked, as borg does.
                let start = args.opt_uint("start_nonce")?;
                args.opt_uint("next_unreserved")?;
                repository.get_free_nonce().and_then(|current| {
                    if current == start {
                        Ok(Outcome::Nil)
                    } else {
                        Err(RepoError::NonceMismatch)
                    }
                })
            }
            Method::CommitNonceReservation => {
                let next = args.opt_uint("next_unreserved")?.unwrap_or(0);
                let start = args.opt_uint("start_nonce")?;
                repository
                    .commit_nonce_reservation(next, start)
                    .map(|()| Outcome::Nil)
            }
            Method::BreakLock => {
                let path: PathBuf = repository.path().to_path_buf();
                Repository::break_lock(&path).map(|()| Outcome::Nil)
            }
            Method::Negotiate
            | Method::Open
            | Method::InjectException
            | Method::Unknown(_)
            | Method::Destroy => Ok(Outcome::Nil),
        };
        result.map_err(|error| failed(tally, method, error))
    }

    /// borg's `destroy`: refused in append-only mode with the repository still open (the
    /// client's `rollback` that follows the refusal still finds it); otherwise the session
    /// ends with the repository, whatever the deletion does.
    fn destroy(&mut self) -> Reply<'static> {
        let repository = match &self.session {
            Session::Open(repository) => repository,
            Session::Ended(ended) => return Err(ended_repository(*ended)),
            Session::Idle => return Err(no_repository()),
        };
        if let Err(error) = repository.may_destroy() {
            return Err(failed(&mut self.tally, &Method::Destroy, error));
        }
        let destroyed = match self.session.take(Session::Ended(Ended::Destroyed)) {
            Some(repository) => repository.destroy(),
            None => Ok(()),
        };
        if destroyed.is_ok() {
            self.tally.destroyed();
        }
        destroyed
            .map(|()| Outcome::Nil)
            .map_err(RemoteException::from)
    }

    /// Closes the repository: rolls back what was not committed and releases the lock.
    pub fn close_repository(&mut self) {
        if let Some(repository) = self.session.take(Session::Idle) {
            if let Err(error) = repository.close() {
                // Worded as the client would see the exception.
                let exception = RemoteException::from(&error);
                log::warn!(target: LOG, "closing the repository: {}", exception.short.trim_end());
            }
        }
    }
}

/// The exception for a call that failed with `error`; a refusal is counted and named in the
/// session's record.
fn failed(tally: &mut Tally, method: &Method, error: RepoError) -> RemoteException {
    if let Some(reason) = refusal_reason(&error) {
        tally.refused(method.name(), reason);
    }
    RemoteException::from(error)
}

/// A full disk ends the transaction with a cleanup that gives the space back, and the
/// client gets a clean error; the repository stays at its last commit.
fn guard_disk(
    repository: &mut Repository,
    operation: impl FnOnce(&mut Repository) -> Result<(), RepoError>,
) -> Result<(), RepoError> {
    let result = operation(repository);
    if let Err(error) = &result {
        if error.is_no_space() {
            log::warn!(target: LOG, "No space left on device, cleaning up partial transaction to free space.");
            repository.rollback_with_cleanup();
        }
    }
    result
}

fn write_outcome<W: Write>(
    writer: &mut ReplyWriter<W>,
    format: Format,
    msgid: u64,
    outcome: Outcome<'_>,
) -> io::Result<()> {
    match outcome {
        Outcome::Nil => writer.result_nil(format, msgid),
        Outcome::Bool(value) => writer.result_bool(format, msgid, value),
        Outcome::Int(value) => writer.result_int(format, msgid, value),
        Outcome::Bytes(bytes) => writer.result_bytes(format, msgid, bytes),
        Outcome::Owned(bytes) => writer.result_bytes(format, msgid, &bytes),
        Outcome::Id(id) => writer.result_bytes(format, msgid, &id),
        Outcome::Ids(ids) => writer.result_id_list(format, msgid, &ids),
        Outcome::Negotiate(Some(legacy)) => writer.result_int(format, msgid, legacy),
        Outcome::Negotiate(None) => writer.result_negotiate(format, msgid, &SERVER_VERSION),
    }
}

fn no_repository() -> RemoteException {
    RemoteException::attribute_error("no repository is open; the client must call open first")
}

/// Any call but `rollback` after `destroy` or a failed `open`.
fn ended_repository(ended: Ended) -> RemoteException {
    RemoteException::attribute_error(match ended {
        Ended::Destroyed => "the repository was deleted; the client must call open again",
        Ended::OpenFailed => "the repository could not be opened; the client must call open again",
    })
}

fn object_id(args: &Args<'_>) -> Result<[u8; 32], RemoteException> {
    let bytes = args.bytes("id")?.unwrap_or_default();
    <[u8; 32]>::try_from(bytes).map_err(|_| {
        RemoteException::type_error(&format!("id must be 32 bytes, got {}", bytes.len()))
    })
}

fn marker(args: &Args<'_>) -> Result<Option<[u8; 32]>, RemoteException> {
    match args.opt_bytes("marker")? {
        None | Some([]) => Ok(None),
        Some(bytes) => <[u8; 32]>::try_from(bytes)
            .map(Some)
            .map_err(|_| RemoteException::key_error(bytes)),
    }
}

fn list_limit(args: &Args<'_>) -> Result<Option<usize>, RemoteException> {
    match args.opt_int("limit")? {
        None => Ok(None),
        Some(limit) if limit < 0 => Err(RemoteException::value_error(
            "Stop argument for islice() must be None or an integer: 0 <= x <= sys.maxsize.",
        )),
        Some(limit) => Ok(Some(usize::try_from(limit).unwrap_or(usize::MAX))),
    }
}

/// The lock wait of an `open`, clamped to the policy's maximum. `None` (wait forever)
/// becomes the maximum when there is one.
pub fn clamp_lock_wait(requested: Option<f64>, max: Option<u32>) -> Option<Duration> {
    // A client may send NaN (a float the msgpack layer accepts); it means no wait, not a panic.
    let requested = requested
        .map(|s| Duration::from_secs_f64(if s.is_nan() { 0.0 } else { s.clamp(0.0, 1e9) }));
    match (requested, max.map(|m| Duration::from_secs(u64::from(m)))) {
        (Some(wait), Some(max)) => Some(wait.min(max)),
        (None, Some(max)) => Some(max),
        (wait, None) => wait,
    }
}

/// borg's test hook `inject_exception`.
fn inject_exception<'a>(args: &Args<'_>) -> Reply<'a> {
    let kind = args.bytes("kind")?.unwrap_or_default();
    Err(match kind {
        b"DoesNotExist" => RemoteException::does_not_exist("test string"),
        b"AlreadyExists" => RemoteException::already_exists("test string"),
        b"CheckNeeded" => RemoteException::check_needed("test string"),
        b"IntegrityError" => RemoteException::integrity_error("test string"),
        b"PathNotAllowed" => RemoteException::path_not_allowed("foo"),
        b"ObjectNotFound" => RemoteException::object_not_found("test string", "test string2"),
        b"InvalidRPCMethod" => RemoteException::invalid_rpc_method("test string"),
        b"divide" => RemoteException::zero_division_error(),
        _ => return Ok(Outcome::Nil),
    })
}

fn modern_exit_codes() -> bool {
    std::env::var("BORG_EXIT_CODES").is_ok_and(|v| v == "modern")
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::engine::borg1::args::parse_serve_args;
    use crate::engine::log::{LogConfig, RemoteLogger};

    fn no_home(_: &str) -> Option<PathBuf> {
        None
    }

    /// Serves `input` (no repository needed) and returns how it ended and the replies' msgids.
    fn serve_bytes(input: &[u8]) -> (Ending, usize) {
        let config =
            parse_serve_args(&["--restrict-to-path".to_owned(), "/nonexistent".to_owned()])
                .unwrap();
        let logger = RemoteLogger::new(Box::new(io::sink()), &LogConfig::default());
        let stdin = File::open("/dev/null").unwrap();
        let context = PathContext {
            base_dir: PathBuf::from("/"),
            user: "test".to_owned(),
            cwd: PathBuf::from("/"),
            home_of: &no_home,
        };
        let mut server = Server::new(config, logger.handle(), stdin, context);
        let mut reader = RequestReader::new(input);
        let mut writer = ReplyWriter::new(Vec::new());
        let ending = server.run(&mut reader, &mut writer);
        let mut out = writer.get_ref().as_slice();
        let mut replies = 0;
        while !out.is_empty() {
            rmpv::decode::read_value(&mut out).unwrap();
            replies += 1;
        }
        (ending, replies)
    }

    #[test]
    fn requests_before_a_bad_one_are_answered_before_the_session_ends() {
        // `{i: 1, m: "__len__", a: {}}` twice, then garbage or a truncated request.
        let request = b"\x83\xa1i\x01\xa1m\xa7__len__\xa1a\x80";
        for (tail, exit_code) in [(&b"\xc1"[..], 2), (&b"\x83\xa1i"[..], 0)] {
            let mut input = [&request[..], &request[..]].concat();
            input.extend_from_slice(tail);
            let (ending, replies) = serve_bytes(&input);
            assert!(
                matches!(ending, Ending::BadInput { exit_code: code, .. } if code == exit_code),
                "{ending:?}"
            );
            assert_eq!(replies, 2);
        }
    }

    #[test]
    fn lock_wait_of_any_float_is_clamped_without_panicking() {
        let max = Some(600);
        assert_eq!(clamp_lock_wait(Some(f64::NAN), max), Some(Duration::ZERO));
        assert_eq!(clamp_lock_wait(Some(f64::NAN), None), Some(Duration::ZERO));
        assert_eq!(
            clamp_lock_wait(Some(f64::INFINITY), max),
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            clamp_lock_wait(Some(f64::NEG_INFINITY), max),
            Some(Duration::ZERO)
        );
        assert_eq!(clamp_lock_wait(Some(-3.0), None), Some(Duration::ZERO));
        assert_eq!(
            clamp_lock_wait(Some(2.5), max),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(clamp_lock_wait(None, max), Some(Duration::from_secs(600)));
        assert_eq!(clamp_lock_wait(None, None), None);
    }

    #[test]
    fn the_lock_wait_is_clamped_to_the_maximum() {
        assert_eq!(
            clamp_lock_wait(Some(600.0), Some(2)),
            Some(Duration::from_secs(2))
        );
        assert_eq!(clamp_lock_wait(None, Some(2)), Some(Duration::from_secs(2)));
        assert_eq!(
            clamp_lock_wait(Some(1.5), Some(2)),
            Some(Duration::from_secs_f64(1.5))
        );
        assert_eq!(clamp_lock_wait(None, None), None);
        assert_eq!(clamp_lock_wait(Some(-3.0), None), Some(Duration::ZERO));
    }
}
