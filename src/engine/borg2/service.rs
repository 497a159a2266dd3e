//! borgstore 0.7.0's backend semantics, one request at a time: each operation checks what
//! posixfs checks, in its order (name, permission, quota), does the work through
//! [`PosixFs`], and becomes the response borgstore's REST server would send.
//!
//! This is the layer that knows the wire's words for storage outcomes (404 for a missing
//! name, 410 for a missing store, 403 with borgstore's permission text, 507 for the quota);
//! `posixfs.rs` below it knows only files. It also keeps the session's bookkeeping: the lock
//! objects it stored (`locks.rs`) and its share of the quota usage (`quota.rs`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::accounting::{self, call_of};
use super::hashing::Hasher;
use super::locks::{self, LockLedger, ReleasePolicy};
use super::names::{components, nest, validate_name};
use super::permissions::{Mode, Required};
use super::posixfs::{CreateOutcome, FsError, ObjectDir, PosixFs, Root};
use super::quota::{self, Usage};
use super::range::{RangeRequest, parse_range, span};
use super::response::{Body, FileRange, Response, listing_json, quota_json};
use super::route::Operation;
use super::sources::{Source, distinct_names, parse_sources};
use super::wire::{BodyReader, ReadError};
use crate::engine::tally::{Tally, reason};

/// borgstore's quota tracking file in the store's root.
pub const QUOTA_FILE: &str = "quota.hid";
/// The lock-release fence in the store's root (see `locks.rs`).
pub const FENCE_FILE: &str = "borg-gate-lock-fence.hid";
/// The largest gather or defrag body (a JSON list) read into memory.
const MAX_SOURCES_BODY: u64 = 16 << 20;
/// The most distinct objects one gather may read from (each is held open).
const MAX_GATHER_FILES: usize = 4096;
/// Python's wording for errors that are not borgstore errors.
const INTERNAL: &str = "Internal Server Error";

/// How the store is served.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub mode: Mode,
    pub quota_limit: Option<u64>,
    pub release: ReleasePolicy,
    pub fence: Duration,
}

/// The store as one session sees it.
pub struct Service {
    fs: PosixFs,
    config: ServiceConfig,
    ledger: LockLedger,
    /// `None` until the first change; then `Some(None)` when no usage is tracked.
    usage: Option<Option<Usage>>,
    /// What the session did, for its record.
    tally: Tally,
}

/// A storage outcome that is not a success, before it becomes a response.
#[derive(Debug)]
enum Failure {
    NoRoot,
    NotFound(String),
    BadRequest(String),
    Denied(String),
    Fenced,
    Quota(String),
    ReadRange(String),
    NoSpace,
    Symlink(String),
    Internal(String),
}

impl Failure {
    /// The failure of a file operation on `name`.
    fn fs(error: FsError, name: &str) -> Failure {
        match error {
            FsError::NoRoot => Failure::NoRoot,
            FsError::NotFound => Failure::NotFound(name.to_owned()),
            FsError::Symlink => Failure::Symlink(name.to_owned()),
            FsError::NoSpace => Failure::NoSpace,
            FsError::WrongType => Failure::Internal(format!("{name}: wrong file type")),
            FsError::Io(error) => Failure::Internal(format!("{name}: {error}")),
        }
    }

    fn response(self) -> Response {
        match self {
            Failure::NoRoot => Response::error(
                410,
                "posixfs storage base path does not exist or is not a directory: [STORAGE_BASE]",
            ),
            Failure::NotFound(name) => Response::error(404, &name),
            Failure::BadRequest(message) => Response::error(400, &message),
            Failure::Denied(message) => Response::error(403, &message),
            Failure::Fenced => Response::error(423, locks::FENCED),
            Failure::Quota(message) => Response::error(507, &message),
            Failure::ReadRange(message) => Response::error(416, &message),
            Failure::NoSpace => Response::error(507, "No space left on device"),
            Failure::Symlink(name) => {
                log::warn!(target: super::LOG, "refusing a symbolic link in the store at {name:?}");
                Response::error(500, INTERNAL)
            }
            Failure::Internal(detail) => {
                log::warn!(target: super::LOG, "{detail}");
                Response::error(500, INTERNAL)
            }
        }
    }
}

type Outcome<T> = Result<T, Failure>;

impl Service {
    pub fn new(fs: PosixFs, config: ServiceConfig) -> Service {
        let mut tally = Tally::new(config.mode == Mode::NoDelete, config.mode.name());
        // Every borg 2 record has its REST counts, zeros included.
        tally.rest();
        Service {
            fs,
            config,
            ledger: LockLedger::default(),
            usage: None,
            tally,
        }
    }

    /// The store is the session's repository (for its record).
    pub fn opened(&mut self, store: &std::path::Path) {
        self.tally.opened(store);
    }

    /// What the session did so far.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// A refused request, counted and named in the session's record.
    fn count_refusal(&mut self, (operation, namespace): (&str, &str), failure: &Failure) {
        let reason = match failure {
            Failure::Denied(_) => self.config.mode.name(),
            Failure::Fenced => reason::FENCED,
            Failure::Quota(_) => reason::QUOTA,
            _ => return,
        };
        self.tally
            .refused(&format!("{operation} {namespace}"), reason);
    }

    /// Executes one operation. `Err` only when the request body could not be read (the
    /// session is over); every store outcome is a response.
    pub fn execute<R: Read>(
        &mut self,
        operation: Operation,
        body: &mut BodyReader<'_, R>,
    ) -> Result<Response, ReadError> {
        let call = call_of(&operation);
        let outcome = match operation {
            Operation::Store { name, sha256 } => return self.store(&name, sha256.as_deref(), body),
            Operation::Gather => match read_sources(body)? {
                Ok(sources) => self.gather(&sources),
                Err(failure) => Err(failure),
            },
            Operation::Defrag {
                target,
                algorithm,
                namespace,
                levels,
            } => match read_sources(body)? {
                Ok(sources) => self.defrag(
                    &sources,
                    target.as_deref(),
                    algorithm.as_deref(),
                    namespace.as_deref(),
                    levels,
                ),
                Err(failure) => Err(failure),
            },
            other => {
                // A body nobody asked for is still read, so the stream stays in step, and
                // read before anything changes (a truncated request changes nothing).
                body.finish()?;
                self.simple(other)
            }
        };
        Ok(outcome.unwrap_or_else(|failure| {
            self.count_refusal(call, &failure);
            failure.response()
        }))
    }

    fn simple(&mut self, operation: Operation) -> Outcome<Response> {
        match operation {
            Operation::Create => self.create(),
            Operation::Destroy => self.destroy(),
            Operation::Mkdir(name) => self.mkdir(&name),
            Operation::Rmdir(name) => self.rmdir(&name),
            Operation::Info(name) => self.info(&name),
            Operation::List(name) => self.list(&name),
            Operation::Load { name, range } => self.load(&name, range.as_deref()),
            Operation::Delete(name) => self.delete(&name),
            Operation::Move { current, new } => self.rename(&current, &new),
            Operation::Hash { name, algorithm } => self.hash(&name, &algorithm),
            Operation::Quota => self.quota(),
            Operation::Store { .. } | Operation::Gather | Operation::Defrag { .. } => {
                Err(Failure::Internal("body operation without its body".into()))
            }
        }
    }

    fn open(&self) -> Outcome<Root> {
        self.fs.open().map_err(|error| Failure::fs(error, ""))
    }

    fn permit(&self, name: &str, required: Required) -> Outcome<()> {
        self.config
            .mode
            .check(name, required)
            .map_err(|denied| Failure::Denied(denied.to_string()))
    }

    fn create(&mut self) -> Outcome<Response> {
        self.permit("", Required::WRITE_NEW)?;
        match self.fs.create() {
            Ok(CreateOutcome::Created) => Ok(Response::ok()),
            Ok(CreateOutcome::NotEmpty) => Ok(Response::error(
                409,
                "posixfs storage base path is not empty: [STORAGE_BASE]",
            )),
            Err(error) => Err(Failure::fs(error, "")),
        }
    }

    fn destroy(&mut self) -> Outcome<Response> {
        self.permit("", Required::DELETE)?;
        match self.fs.destroy() {
            Ok(()) => {
                self.usage = None;
                self.tally.destroyed();
                Ok(Response::ok())
            }
            Err(FsError::NoRoot) => Ok(Response::error(
                410,
                "posixfs storage base path does not exist: [STORAGE_BASE]",
            )),
            Err(error) => Err(Failure::fs(error, "")),
        }
    }

    fn mkdir(&mut self, name: &str) -> Outcome<Response> {
        let root = self.open()?;
        valid(name)?;
        self.permit(name, Required::MKDIR)?;
        root.mkdir(&components(name))
            .map_err(|error| internal_if_missing(error, name))?;
        Ok(Response::ok())
    }

    fn rmdir(&mut self, name: &str) -> Outcome<Response> {
        let root = self.open()?;
        valid(name)?;
        self.permit(name, Required::RMDIR)?;
        root.rmdir(&components(name))
            .map_err(|error| Failure::fs(error, name))?;
        Ok(Response::ok())
    }

    fn info(&mut self, name: &str) -> Outcome<Response> {
        let root = self.open()?;
        valid(name)?;
        self.permit(name, Required::INFO)?;
        match root.stat(&components(name)) {
            Ok(Some(stat)) => Ok(Response::info(&stat)),
            Ok(None) => Err(Failure::NotFound(name.to_owned())),
            Err(error) => Err(Failure::fs(error, name)),
        }
    }

    fn list(&mut self, name: &str) -> Outcome<Response> {
        let root = self.open()?;
        valid(name)?;
        self.permit(name, Required::LIST)?;
        let parts = components(name);
        match root.list(&parts) {
            Ok(entries) => Ok(Response::bytes(
                200,
                Some("application/json"),
                listing_json(&entries),
            )),
            // posixfs lists with `iterdir`: a regular file is a NotADirectoryError (500).
            Err(FsError::NotFound) if matches!(root.stat(&parts), Ok(Some(_))) => {
                Err(Failure::Internal(format!("{name}: not a directory")))
            }
            Err(error) => Err(Failure::fs(error, name)),
        }
    }

    fn load(&mut self, name: &str, range: Option<&str>) -> Outcome<Response> {
        let root = self.open()?;
        valid(name)?;
        self.permit(name, Required::READ)?;
        let (file, size) = root
            .open_object(&components(name))
            .map_err(|error| Failure::fs(error, name))?;
        let request = range.map_or(RangeRequest::WHOLE, parse_range);
        let (offset, length) = span(request, size)
            .ok_or_else(|| Failure::Internal(format!("{name}: seek before the start")))?;
        let status = if range.is_some() { 206 } else { 200 };
        self.tally.rest().loaded(length);
        if accounting::is_data(name) {
            self.tally.read();
        }
        let mut response = Response::status(status);
        response.content_type = Some("application/octet-stream");
        response.length = length;
        response.body = Body::File {
            file,
            offset,
            length,
        };
        Ok(response)
    }

    fn delete(&mut self, name: &str) -> Outcome<Response> {
        let root = self.open()?;
        valid(name)?;
        self.permit(name, Required::DELETE)?;
        self.guard_write(&root, name)?;
        let parts = components(name);
        let size = match root.stat(&parts) {
            Ok(Some(stat)) => stat.size,
            Ok(None) => return Err(Failure::NotFound(name.to_owned())),
            Err(error) => return Err(Failure::fs(error, name)),
        };
        root.delete(&parts)
            .map_err(|error| Failure::fs(error, name))?;
        self.ledger.deleted(name);
        self.record_usage(&root, -i128::from(size));
        self.tally.rest().deletes += 1;
        if accounting::counts_as_deleted(name) {
            self.tally.removed();
        }
        Ok(Response::ok())
    }

    fn rename(&mut self, current: &str, new: &str) -> Outcome<Response> {
        let root = self.open()?;
        valid(current)?;
        valid(new)?;
        self.permit(current, Required::DELETE)?;
        let (from, to) = (components(current), components(new));
        let exists = root
            .stat(&to)
            .map_err(|error| Failure::fs(error, new))?
            .is_some();
        self.permit(new, Required::write(exists))?;
        self.guard_write(&root, current)?;
        self.guard_write(&root, new)?;
        root.rename(&from, &to).map_err(|error| match error {
            FsError::NotFound => Failure::NotFound(current.to_owned()),
            other => Failure::fs(other, current),
        })?;
        self.ledger.moved(current, new);
        self.tally.rest().moves += 1;
        if accounting::is_soft_delete(current, new) {
            self.tally.removed();
        }
        Ok(Response::ok())
    }

    fn hash(&mut self, name: &str, algorithm: &str) -> Outcome<Response> {
        let root = self.open()?;
        valid(name)?;
        self.permit(name, Required::READ)?;
        let mut hasher = Hasher::new(algorithm).map_err(Failure::BadRequest)?;
        let (mut file, _) = root
            .open_object(&components(name))
            .map_err(|error| Failure::fs(error, name))?;
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let count = file
                .read(&mut buffer)
                .map_err(|error| Failure::Internal(format!("{name}: {error}")))?;
            if count == 0 {
                break;
            }
            hasher.update(&buffer[..count]);
        }
        Ok(Response::bytes(
            200,
            Some("text/plain"),
            hasher.hex().into_bytes(),
        ))
    }

    fn quota(&mut self) -> Outcome<Response> {
        let root = self.open()?;
        let Some(limit) = self.config.quota_limit else {
            return Ok(Response::bytes(
                200,
                Some("application/json"),
                quota_json(None, None),
            ));
        };
        // Like posixfs's open(): bring this session's view in line with the file.
        let usage = self.sync_usage(&root)?;
        Ok(Response::bytes(
            200,
            Some("application/json"),
            quota_json(Some(limit), Some(usage)),
        ))
    }

    /// A store, reading its body: name, permission, fence and quota are judged first; the
    /// body is then streamed into a temp file (or, after a refusal, read and dropped) while
    /// its sha256 is computed. As in borgstore, a hash mismatch (422) wins over any other
    /// refusal, and nothing is stored unless the whole body arrived and matched.
    fn store<R: Read>(
        &mut self,
        name: &str,
        sha256: Option<&str>,
        body: &mut BodyReader<'_, R>,
    ) -> Result<Response, ReadError> {
        let length = body.remaining();
        let mut hasher = sha256.map(|_| Hasher::sha256());
        let mut prepared = self
            .prepare_store(name, length)
            .and_then(|(root, old_size, object)| {
                let pending = object
                    .begin_write(&root, &components(name))
                    .map_err(|error| internal_if_missing(error, name))?;
                Ok((root, old_size, pending))
            });
        let mut write_error: Option<Failure> = None;
        let mut buffer = vec![0u8; usize::try_from(length.clamp(1, 1 << 20)).unwrap_or(1 << 20)];
        loop {
            let count = body.read_some(&mut buffer)?;
            if count == 0 {
                break;
            }
            if let Some(hasher) = hasher.as_mut() {
                hasher.update(&buffer[..count]);
            }
            if let (Ok((_, _, pending)), None) = (prepared.as_mut(), write_error.as_ref()) {
                if let Err(error) = pending.file().write_all(&buffer[..count]) {
                    write_error = Some(Failure::fs(error.into(), name));
                }
            }
        }
        if let (Some(expected), Some(hasher)) = (sha256, hasher) {
            if hasher.hex() != expected {
                return Ok(Response::bytes(
                    422,
                    None,
                    b"Content hash verification failed, please retry".to_vec(),
                ));
            }
        }
        let outcome = prepared.and_then(|(root, old_size, pending)| {
            if let Some(failure) = write_error {
                return Err(failure);
            }
            pending.commit().map_err(|error| Failure::fs(error, name))?;
            Ok((root, old_size))
        });
        Ok(match outcome {
            Ok((root, old_size)) => {
                self.ledger.stored(name);
                self.record_usage(&root, i128::from(length) - i128::from(old_size));
                self.count_store(name, length);
                Response::ok()
            }
            Err(failure) => {
                self.count_refusal(("store", accounting::namespace(name)), &failure);
                failure.response()
            }
        })
    }

    /// A stored object, counted: every store in `rest`, data in `objects_put`, and an
    /// archive as the end of a backup.
    fn count_store(&mut self, name: &str, length: u64) {
        self.tally.rest().stored(length);
        if accounting::is_data(name) {
            self.tally.stored(length);
        }
        if accounting::is_archive(name) {
            self.tally.archive_stored();
        }
    }

    /// The checks of a store before any byte is written; the size of what it replaces, and
    /// the object's directory (opened once for the look and the write).
    fn prepare_store(&mut self, name: &str, length: u64) -> Outcome<(Root, u64, ObjectDir)> {
        let root = self.fs.open().map_err(|error| Failure::fs(error, ""))?;
        valid(name)?;
        if name.is_empty() {
            return Err(Failure::Internal("store of the root".into()));
        }
        let object = root
            .object_dir(&components(name))
            .map_err(|error| Failure::fs(error, name))?;
        let existing = object.stat().map_err(|error| Failure::fs(error, name))?;
        self.permit(name, Required::write(existing.is_some()))?;
        self.guard_write(&root, name)?;
        let old_size = existing.map_or(0, |stat| stat.size);
        self.check_quota(&root, old_size, length)?;
        Ok((root, old_size, object))
    }

    fn gather(&mut self, sources: &[Source]) -> Outcome<Response> {
        let root = self.open()?;
        let ranges = self.open_ranges(&root, sources)?;
        let length = ranges.iter().map(|range| range.length).sum();
        for range in &ranges {
            self.tally.rest().loaded(range.length);
            self.tally.read();
        }
        let mut response = Response::status(200);
        response.content_type = Some("application/octet-stream");
        response.length = length;
        response.body = Body::Ranges(ranges);
        Ok(response)
    }

    /// posixfs's gather up to the reading: sources checked, read permission on each name,
    /// then each range opened and measured (416 for a short one) so that the response's
    /// length is known before its first byte is sent.
    fn open_ranges(&self, root: &Root, sources: &[Source]) -> Outcome<Vec<FileRange>> {
        for name in distinct_names(sources) {
            self.permit(name, Required::READ)?;
        }
        let mut open: HashMap<&str, (Rc<File>, u64)> = HashMap::new();
        let mut ranges = Vec::new();
        for source in sources.iter().filter(|source| source.size > 0) {
            let name = source.name.as_str();
            if !open.contains_key(name) {
                valid(name)?;
                if open.len() >= MAX_GATHER_FILES {
                    return Err(Failure::BadRequest(format!(
                        "too many objects in one request (max: {MAX_GATHER_FILES})"
                    )));
                }
                let (file, size) = root
                    .open_object(&components(name))
                    .map_err(|error| Failure::fs(error, name))?;
                open.insert(name, (Rc::new(file), size));
            }
            let Some((file, size)) = open.get(name) else {
                continue;
            };
            let request = RangeRequest {
                offset: i128::from(source.offset),
                size: Some(i128::from(source.size)),
            };
            let (offset, length) = span(request, *size)
                .ok_or_else(|| Failure::Internal(format!("{name}: seek before the start")))?;
            if length != source.size {
                return Err(Failure::ReadRange(format!(
                    "Read range error from {name} (requested {} bytes at offset {}, got {length})",
                    source.size, source.offset
                )));
            }
            ranges.push(FileRange {
                file: Rc::clone(file),
                offset,
                length,
            });
        }
        Ok(ranges)
    }

    fn defrag(
        &mut self,
        sources: &[Source],
        target: Option<&str>,
        algorithm: Option<&str>,
        namespace: Option<&str>,
        levels: usize,
    ) -> Outcome<Response> {
        let root = self.open()?;
        if let Some(namespace) = namespace {
            // borgstore finds out only when it stores the result; the temp file it is
            // written to must not land outside the store before that.
            valid(namespace.trim_end_matches('/'))?;
        }
        let prefix = namespace
            .filter(|namespace| !namespace.is_empty())
            .map(|namespace| format!("{}/", namespace.trim_end_matches('/')))
            .unwrap_or_default();
        let check_target = target.map_or_else(|| format!("{prefix}01234567"), str::to_owned);
        self.permit(&check_target, Required::OVERWRITE)?;
        let ranges = self.open_ranges(&root, sources)?;
        let length: u64 = ranges.iter().map(|range| range.length).sum();
        let (final_name, old_size) = match target {
            Some(target) => {
                let (_, old_size, object) = self.prepare_store(target, length)?;
                let mut pending = object
                    .begin_write(&root, &components(target))
                    .map_err(|error| internal_if_missing(error, target))?;
                copy_ranges(&ranges, pending.file(), None)?;
                pending
                    .commit()
                    .map_err(|error| Failure::fs(error, target))?;
                (target.to_owned(), old_size)
            }
            None => {
                let algorithm = algorithm.unwrap_or("sha256");
                let mut hasher = Hasher::new(algorithm).map_err(Failure::BadRequest)?;
                let mut pending = root
                    .begin_write_in(&components(&prefix))
                    .map_err(|error| internal_if_missing(error, &prefix))?;
                copy_ranges(&ranges, pending.file(), Some(&mut hasher))?;
                let name = nest(&format!("{prefix}{}", hasher.hex()), levels);
                let (_, old_size, _) = self.prepare_store(&name, length)?;
                pending
                    .commit_into(&root, &components(&name))
                    .map_err(|error| Failure::fs(error, &name))?;
                (name, old_size)
            }
        };
        self.ledger.stored(&final_name);
        self.record_usage(&root, i128::from(length) - i128::from(old_size));
        self.count_store(&final_name, length);
        Ok(Response::bytes(
            200,
            Some("text/plain"),
            final_name.into_bytes(),
        ))
    }

    /// The fence of `locks.rs`: while one is in force, a session that stored no lock of its
    /// own may write nothing outside `locks/`.
    fn guard_write(&self, root: &Root, name: &str) -> Outcome<()> {
        if locks::may_write(name, &self.ledger, || self.fence_in_force(root)) {
            Ok(())
        } else {
            Err(Failure::Fenced)
        }
    }

    fn fence_in_force(&self, root: &Root) -> bool {
        match root.read_hidden(FENCE_FILE, 64 * 1024) {
            Ok(None) => false,
            Ok(Some((content, stat))) => {
                let now = unix_now();
                locks::fence_in_force(&content, now.as_secs())
                    && (content.first().is_some_and(u8::is_ascii_digit)
                        || stat.mtime + self.config.fence.as_secs_f64() > now.as_secs_f64())
            }
            // Cannot tell: fail closed.
            Err(_) => true,
        }
    }

    fn check_quota(&mut self, root: &Root, old_size: u64, new_size: u64) -> Outcome<()> {
        let Some(limit) = self.config.quota_limit else {
            return Ok(());
        };
        self.load_usage(root)?;
        match self.usage.as_ref().and_then(Option::as_ref) {
            Some(usage) => usage
                .check(limit, old_size, new_size)
                .map_err(|exceeded| Failure::Quota(exceeded.to_string())),
            None => Ok(()),
        }
    }

    /// Starts tracking usage on the first change: always with a quota (reading or creating
    /// `quota.hid`), and without one only when `quota.hid` exists (so that it stays true for
    /// the sessions that enforce a quota; borgstore would delete it instead).
    fn load_usage(&mut self, root: &Root) -> Outcome<()> {
        if self.usage.is_some() {
            return Ok(());
        }
        let tracked = self.config.quota_limit.is_some()
            || matches!(root.read_hidden(QUOTA_FILE, 0), Ok(Some(_)));
        if !tracked {
            self.usage = Some(None);
            return Ok(());
        }
        self.usage = Some(Some(Usage::new(0, Instant::now())));
        self.sync_usage(root).map(drop)
    }

    /// posixfs's `_quota_persist`: under `flock` of `quota.hid`, add this session's pending
    /// change to the value there (rescanning the store when it is missing or unreadable) and
    /// write it back atomically. Returns the usage now.
    fn sync_usage(&mut self, root: &Root) -> Outcome<u64> {
        if self.usage.is_none() {
            self.usage = Some(Some(Usage::new(0, Instant::now())));
        }
        let pending = self
            .usage
            .as_ref()
            .and_then(Option::as_ref)
            .map_or(0, Usage::pending);
        let internal = |error: FsError| Failure::fs(error, QUOTA_FILE);
        for _ in 0..100 {
            let file = root.open_hidden_for_lock(QUOTA_FILE).map_err(internal)?;
            let locked = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
                .map_err(|(_, errno)| internal(errno.into()))?;
            if !root.is_current(&locked, QUOTA_FILE).map_err(internal)? {
                continue;
            }
            let mut content = Vec::new();
            (&*locked)
                .take(100)
                .read_to_end(&mut content)
                .map_err(|error| internal(error.into()))?;
            let on_disk = match quota::parse_usage(&content) {
                Some(value) => quota::apply(value, pending),
                None => root.usage_scan(QUOTA_FILE).map_err(internal)?,
            };
            root.write_hidden(QUOTA_FILE, on_disk.to_string().as_bytes())
                .map_err(internal)?;
            if let Some(Some(usage)) = self.usage.as_mut() {
                usage.persisted_as(on_disk, Instant::now());
            }
            return Ok(on_disk);
        }
        Err(Failure::Internal("quota.hid keeps being replaced".into()))
    }

    fn record_usage(&mut self, root: &Root, delta: i128) {
        if self.load_usage(root).is_err() {
            return;
        }
        let Some(Some(usage)) = self.usage.as_mut() else {
            return;
        };
        usage.record(delta);
        if usage.should_persist(Instant::now()) {
            if let Err(failure) = self.sync_usage(root) {
                log::warn!(target: super::LOG, "cannot update {QUOTA_FILE}: {failure:?}");
            }
        }
    }

    /// At the end of the session: write back the usage, and release what the session left
    /// in `locks/` (a client that closes cleanly has deleted its lock before; see
    /// `locks.rs`). Returns the released names.
    pub fn finish(&mut self) -> Vec<String> {
        let Ok(root) = self.fs.open() else {
            return Vec::new();
        };
        let pending = self
            .usage
            .as_ref()
            .and_then(Option::as_ref)
            .is_some_and(|usage| usage.pending() != 0);
        if pending {
            if let Err(failure) = self.sync_usage(&root) {
                log::warn!(target: super::LOG, "cannot update {QUOTA_FILE}: {failure:?}");
            }
        }
        let orphans = self.ledger.orphans();
        if orphans.is_empty() || self.config.release == ReleasePolicy::Keep {
            return Vec::new();
        }
        let until = unix_now()
            .as_secs()
            .saturating_add(self.config.fence.as_secs());
        if let Err(error) =
            root.write_hidden(FENCE_FILE, locks::fence_content(until, &orphans).as_bytes())
        {
            // Without a fence a reconnecting client could write unlocked: keep the locks.
            log::warn!(target: super::LOG, "cannot write the lock fence, keeping the locks: {error:?}");
            return Vec::new();
        }
        let mut released = Vec::new();
        for name in orphans {
            match root.delete(&components(&name)) {
                Ok(()) | Err(FsError::NotFound) => {
                    self.ledger.deleted(&name);
                    self.tally.rest().lock_releases += 1;
                    released.push(name);
                }
                Err(error) => {
                    log::warn!(target: super::LOG, "cannot release {name}: {error:?}")
                }
            }
        }
        released
    }
}

fn valid(name: &str) -> Outcome<()> {
    validate_name(name).map_err(|error| Failure::BadRequest(error.to_string()))
}

/// A directory that cannot be made because a component is a file: Python's `mkdir` raises
/// `FileExistsError`/`NotADirectoryError`, which borgstore does not map (500).
fn internal_if_missing(error: FsError, name: &str) -> Failure {
    match error {
        FsError::NotFound => Failure::Internal(format!("{name}: a component is not a directory")),
        other => Failure::fs(other, name),
    }
}

/// Reads a gather/defrag body: the sources, or the failure to answer with.
fn read_sources<R: Read>(body: &mut BodyReader<'_, R>) -> Result<Outcome<Vec<Source>>, ReadError> {
    match body.read_all(MAX_SOURCES_BODY)? {
        Some(data) => Ok(parse_sources(&data).map_err(Failure::BadRequest)),
        None => {
            body.finish()?;
            Ok(Err(Failure::BadRequest(format!(
                "request body larger than {MAX_SOURCES_BODY} bytes"
            ))))
        }
    }
}

fn copy_ranges(
    ranges: &[FileRange],
    into: &mut File,
    mut hasher: Option<&mut Hasher>,
) -> Outcome<()> {
    use std::os::unix::fs::FileExt;
    let mut buffer = vec![0u8; 1 << 20];
    for range in ranges {
        let mut done = 0u64;
        while done < range.length {
            let count = (range.length - done).min(buffer.len() as u64) as usize;
            range
                .file
                .read_exact_at(&mut buffer[..count], range.offset + done)
                .map_err(|error| Failure::Internal(format!("defrag source: {error}")))?;
            if let Some(hasher) = hasher.as_deref_mut() {
                hasher.update(&buffer[..count]);
            }
            into.write_all(&buffer[..count])
                .map_err(|error| Failure::fs(error.into(), "defrag target"))?;
            done += count as u64;
        }
    }
    Ok(())
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
