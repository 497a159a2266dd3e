//! The repository as `borg serve` exposes it: open and create, locking, config, keys,
//! nonces, and the object operations. Transactions live in `transaction.rs`, compaction in
//! `compact.rs`, and check in `check.rs`.

use std::io;
use std::path::{Path, PathBuf};

use super::config::{self, ConfigFile, REPOSITORY_SECTION, RepositoryConfig};
use super::dir::{Access, Dir};
use super::durable;
use super::error::RepoError;
use super::hashindex::NsIndex;
use super::io::SegmentIo;
use super::locking::{LockUse, client_mode};
use super::segment::{ATTIC_MAGIC, ObjectId, ReadMode};
use crate::engine::borg1::key_quota::KeyQuotaSession;
use crate::engine::borg1::lock::{LockIdentity, RepositoryLock, SessionLockWait, break_lock};

pub const LOG: &str = "borg.repository";

/// `README` of every borg repository (`constants.py`).
pub const REPOSITORY_README: &str =
    "This is a Borg Backup repository.\nSee https://borgbackup.readthedocs.io/\n";

/// How a client opens a repository (the RPC `open` arguments, after the server's rules).
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    pub create: bool,
    pub lock: bool,
    /// The policy lets a `lock=False` session read without a lock (`allow_lock_bypass`);
    /// otherwise `lock=False` only defers the lock (see `locking.rs`).
    pub allow_lock_bypass: bool,
    /// `None` for pre-1.0.7 clients, which expect a lock upgrade when they write.
    pub exclusive: Option<bool>,
    pub append_only: bool,
    pub make_parent_dirs: bool,
    /// The server's `--storage-quota`; overrides the repository's own.
    pub storage_quota: Option<u64>,
    /// A read-only key (`--permissions=read-only`): the server refuses every write; the
    /// repository itself leaves its config alone (a partial check records no progress).
    pub read_only: bool,
}

/// Who may write the repository key through `save_key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPermission {
    /// Any key, as in borg.
    Any,
    /// Only into a repository that has none, under the exclusive lock (what `borg init`
    /// does): an append-only key must not be able to replace, and so destroy, the key of a
    /// repository whose backups it cannot delete.
    OnlyWhenNone,
}

/// What an append-only key that tries to replace a repository key is told.
pub const APPEND_ONLY_KEY_REFUSAL: &str = "Permission denied: this key is append-only and may only store the key of a repository that has none (as borg init does); change or import keys with a key that has full access.";

/// Bookkeeping persisted in `hints.N` (see `hints.rs` for the invariants).
pub type Bookkeeping = super::hints::Hints;

pub struct Repository {
    /// For messages; every file is reached through [`Repository::dir`].
    pub(super) path: PathBuf,
    /// The repository directory, opened without following symlinks (see `dir.rs`).
    pub(super) dir: Dir,
    pub(super) config: ConfigFile,
    pub(super) id: [u8; 32],
    pub(super) lock: Option<RepositoryLock>,
    /// When this session takes its lock (see `locking.rs`).
    pub(super) lock_use: LockUse,
    /// Every lock wait of this session, the ones after `open` included.
    pub(super) lock_wait: SessionLockWait,
    pub(super) identity: LockIdentity,
    /// As the server gave them, to reread the settings when a deferred lock is taken.
    pub(super) options: OpenOptions,
    pub(super) exclusive: Option<bool>,
    pub(super) append_only: bool,
    /// See [`OpenOptions::read_only`].
    pub(super) read_only: bool,
    /// 0 means no quota.
    pub(super) storage_quota: i64,
    pub(super) additional_free_space: u64,
    pub(super) max_segment_size: u64,
    pub(super) io: SegmentIo,
    /// The loaded index; `None` until first needed (borg loads it lazily).
    pub(super) index: Option<NsIndex>,
    /// The index is the one this session's last commit wrote, kept in memory, and the
    /// segments have not been judged since. borg drops it at commit and, at the next use,
    /// rereads it only after `get_transaction_id` found the commit still valid; so does the
    /// next use here (without the reread).
    pub(super) index_unjudged: bool,
    pub(super) books: Bookkeeping,
    pub(super) active_txn: bool,
    /// Set when a put exceeded the quota: the next commit rolls back and fails with it.
    pub(super) doomed: Option<(String, String)>,
    /// The transaction ran out of disk space and its segments were deleted to give the space
    /// back: further puts, deletes and commits fail without writing until the client rolls
    /// back (it is still sending the puts it had pipelined, which would fill the disk again).
    pub(super) out_of_space: bool,
    /// Created in this session: a failed free-space check at commit destroys it again.
    pub(super) created: bool,
    /// The key's quota across its repositories, when the policy sets one (see
    /// `engine::borg1::key_quota`); `None` for read-only sessions.
    pub(super) key_quota: Option<KeyQuotaSession>,
    /// What [`Repository::charged_use`] was when the write transaction started.
    pub(super) charged_at_start: u64,
    /// The transaction this session's last commit made.
    pub(super) committed_transaction: Option<u32>,
    /// Segments this session's compactions deleted.
    pub(super) compacted_segments: u64,
}

/// What this session's commits did, for the session's record and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitFacts {
    /// The transaction the last commit made.
    pub transaction_id: Option<u32>,
    /// Segments compaction deleted in this session.
    pub compacted_segments: u64,
    /// The storage quota (`None` without one).
    pub quota: Option<u64>,
    /// borg's `storage_quota_use`.
    pub quota_used: u64,
}

impl Repository {
    /// Opens (and with `options.create`, first creates) the repository at `path`, an absolute
    /// path that already passed the server's restrictions.
    pub fn open(
        path: &Path,
        options: &OpenOptions,
        identity: LockIdentity,
        lock_wait: SessionLockWait,
    ) -> Result<Repository, RepoError> {
        let mut created = false;
        if options.create {
            create_repository(path, options)?;
            created = true;
        }
        let display = path.display().to_string();
        let metadata = match std::fs::metadata(path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(RepoError::NoRepository(display));
            }
            Err(error) => return Err(RepoError::io(format!("cannot open {display}"), error)),
        };
        if !metadata.is_dir() {
            return Err(RepoError::NotARepository(display));
        }
        let dir =
            Dir::open(path).map_err(|e| RepoError::io(format!("cannot open {display}"), e))?;
        let lock_use = LockUse::of(options);
        let lock = match lock_use {
            LockUse::AtOpen => Some(RepositoryLock::acquire(
                path,
                identity.clone(),
                client_mode(options.exclusive),
                &lock_wait.now(),
            )?),
            LockUse::Deferred | LockUse::Bypassed => None,
        };
        // From here on the lock guard releases on every error path.
        let (config, settings) = read_settings(&dir, options)?;
        let mut io = SegmentIo::new(
            dir.clone(),
            settings.segments_per_dir,
            settings.max_segment_size,
        );
        if let Some(latest) = io
            .latest_segment()
            .map_err(|e| RepoError::io("cannot list segments", e))?
        {
            if io
                .segment_magic(latest)
                .is_ok_and(|magic| magic == ATTIC_MAGIC)
            {
                return Err(RepoError::AtticFormat(display));
            }
        }
        let mut repository = Repository {
            path: path.to_path_buf(),
            dir,
            id: settings.id,
            storage_quota: 0,
            additional_free_space: 0,
            max_segment_size: 0,
            config: ConfigFile::default(),
            lock,
            lock_use,
            lock_wait,
            identity,
            options: options.clone(),
            exclusive: options.exclusive,
            append_only: false,
            read_only: options.read_only,
            io,
            index: None,
            index_unjudged: false,
            books: Bookkeeping::default(),
            active_txn: false,
            doomed: None,
            out_of_space: false,
            created,
            key_quota: None,
            charged_at_start: 0,
            committed_transaction: None,
            compacted_segments: 0,
        };
        repository.apply_settings(config, &settings);
        Ok(repository)
    }

    /// Takes over the config and what it sets. Segment I/O starts afresh (no cached handles).
    pub(super) fn apply_settings(&mut self, config: ConfigFile, settings: &RepositoryConfig) {
        // `options.append_only` is already the effective flag (see `OpenOptions`); the config can add it.
        self.append_only = self.options.append_only || settings.append_only;
        // A negative quota (borg accepts one) refuses every write, as in borg.
        self.storage_quota = settings.storage_quota;
        self.additional_free_space = settings.additional_free_space.max(0) as u64;
        self.max_segment_size = settings.max_segment_size;
        self.io = SegmentIo::new(
            self.dir.clone(),
            settings.segments_per_dir,
            settings.max_segment_size,
        );
        self.config = config;
    }

    /// Puts this session's writes under the key's quota.
    pub fn set_key_quota(&mut self, key_quota: KeyQuotaSession) {
        self.key_quota = Some(key_quota);
    }

    pub fn id(&self) -> [u8; 32] {
        self.id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn display_path(&self) -> String {
        self.path.display().to_string()
    }

    pub fn is_append_only(&self) -> bool {
        self.append_only
    }

    /// What this session's commits did (see [`CommitFacts`]).
    pub fn commit_facts(&self) -> CommitFacts {
        CommitFacts {
            transaction_id: self.committed_transaction,
            compacted_segments: self.compacted_segments,
            quota: u64::try_from(self.storage_quota).ok().filter(|q| *q > 0),
            quota_used: self.books.storage_quota_use,
        }
    }

    /// Ends the session: an open transaction is abandoned (its segments stay until the next
    /// transaction deletes them, as in borg), and the lock is released.
    pub fn close(mut self) -> Result<(), RepoError> {
        self.rollback();
        self.io.abandon_segment();
        match self.lock.take() {
            Some(lock) => lock.release().map_err(RepoError::Lock),
            None => Ok(()),
        }
    }

    /// The exclusive lock, still ours, taken or upgraded now if need be (see `locking.rs`).
    pub(super) fn require_exclusive(&mut self) -> Result<(), RepoError> {
        self.lock_for_writing()
    }

    /// The loaded index, loading it (and replaying if needed) on first use. A kept index
    /// is first judged against the segments, as borg's reload after a commit would be.
    pub(super) fn index(&mut self) -> Result<&mut NsIndex, RepoError> {
        if self.index_unjudged {
            // A commit entry damaged since our commit makes this replay up to the last valid
            // one, or fail with CheckNeeded when there is none; either drops the kept index.
            self.check_transaction()?;
        }
        if self.index.is_none() {
            self.lock_for_reading()?;
        }
        if self.index.is_none() {
            let transaction_id = self.get_transaction_id()?;
            let index = self.open_index(transaction_id, true)?;
            self.index = Some(index);
        }
        self.index
            .as_mut()
            .ok_or_else(|| RepoError::Internal("index vanished".into()))
    }

    pub fn len(&mut self) -> Result<usize, RepoError> {
        Ok(self.index()?.len())
    }

    pub fn is_empty(&mut self) -> Result<bool, RepoError> {
        Ok(self.len()? == 0)
    }

    /// Ids in index order, after `marker`.
    pub fn list(
        &mut self,
        limit: Option<usize>,
        marker: Option<&ObjectId>,
    ) -> Result<Vec<ObjectId>, RepoError> {
        let index = self.index()?;
        index
            .list(limit, marker)
            .map_err(|_| RepoError::UnknownMarker(marker.map(|m| m.to_vec()).unwrap_or_default()))
    }

    /// Ids of current objects in on-disk order, after `marker` (borg's `scan`).
    pub fn scan(
        &mut self,
        limit: Option<i64>,
        marker: Option<&ObjectId>,
    ) -> Result<Vec<ObjectId>, RepoError> {
        let limit = match limit {
            Some(limit) if limit < 1 => {
                return Err(RepoError::BadArgument(
                    "please use limit > 0 or limit = None".into(),
                ));
            }
            Some(limit) => Some(usize::try_from(limit).unwrap_or(usize::MAX)),
            None => None,
        };
        let (start_segment, mut start_offset) = match marker {
            None => (0, 0),
            Some(marker) => self
                .index()?
                .get(marker)
                .ok_or_else(|| RepoError::UnknownMarker(marker.to_vec()))?,
        };
        self.index()?;
        let segments = self
            .io
            .list()
            .map_err(|e| RepoError::io("cannot list segments", e))?;
        let mut result = Vec::new();
        for file in segments.iter().filter(|f| f.segment >= start_segment) {
            let mut entries =
                match self
                    .io
                    .entries(file.segment, start_offset, ReadMode::HeaderOnly)
                {
                    Ok(entries) => entries,
                    Err(_) => continue,
                };
            let index = self
                .index
                .as_ref()
                .ok_or_else(|| RepoError::Internal("index vanished".into()))?;
            // Either the end of the segment or a bad header ends it; like borg, skip to the next.
            while let Ok(Some(entry)) = entries.next_entry() {
                if start_offset > 0 {
                    // The marker itself was returned by the previous call.
                    start_offset = 0;
                    continue;
                }
                if let super::segment::EntryKind::Put { key } = entry.kind {
                    if index.get(&key) == Some((file.segment, entry.offset)) {
                        result.push(key);
                        if Some(result.len()) == limit {
                            return Ok(result);
                        }
                    }
                }
            }
            start_offset = 0;
        }
        Ok(result)
    }

    /// The data of object `id` (borrowed until the next read).
    pub fn get(&mut self, id: &ObjectId) -> Result<&[u8], RepoError> {
        let Some((segment, offset)) = self.index()?.get(id) else {
            return Err(RepoError::NoSuchObject(*id, self.display_path()));
        };
        self.io.read(segment, offset, id).map_err(RepoError::from)
    }

    /// Stores the repository key (`borg init` with repokey, `key change-passphrase`, `key
    /// import`). Key data that is not borg's base64 text is refused before anything is
    /// touched, and so is a key that `permission` does not allow to be written.
    pub fn save_key(&mut self, keydata: &[u8], permission: KeyPermission) -> Result<(), RepoError> {
        let text = config::key_text(keydata).map_err(|e| RepoError::BadArgument(e.to_string()))?;
        self.lock_for_config()?;
        if permission == KeyPermission::OnlyWhenNone && !self.may_store_first_key() {
            return Err(RepoError::NotPermitted(APPEND_ONLY_KEY_REFUSAL.into()));
        }
        self.set_option("key", text)?;
        self.save_config()
    }

    /// Whether a first key may be stored: the repository has none, and this session holds
    /// the exclusive lock (as `borg init` does), so nobody can store one meanwhile.
    fn may_store_first_key(&self) -> bool {
        self.lock
            .as_ref()
            .is_some_and(RepositoryLock::got_exclusive_lock)
            && config::repository_key(&self.config).is_empty()
    }

    pub fn load_key(&self) -> Vec<u8> {
        config::repository_key(&self.config).as_bytes().to_vec()
    }

    pub(super) fn set_option(&mut self, name: &str, value: &str) -> Result<(), RepoError> {
        self.config
            .set(REPOSITORY_SECTION, name, value)
            .map_err(|e| RepoError::BadConfig(self.path.display().to_string(), e.to_string()))
    }

    /// Removes an option; returns whether it was there.
    pub(super) fn remove_option(&mut self, name: &str) -> bool {
        self.config
            .remove_option(REPOSITORY_SECTION, name)
            .unwrap_or(false)
    }

    /// Writes the config as borg does: link the old one aside, replace atomically, then
    /// securely erase the old copy so an old repokey does not linger on disk.
    pub(super) fn save_config(&self) -> Result<(), RepoError> {
        save_config(&self.dir, &self.config, self.lock.is_some())
    }

    pub fn get_free_nonce(&mut self) -> Result<Option<u64>, RepoError> {
        self.require_exclusive()?;
        read_nonce(&self.dir)
    }

    pub fn commit_nonce_reservation(
        &mut self,
        next_unreserved: u64,
        start_nonce: Option<u64>,
    ) -> Result<(), RepoError> {
        self.require_exclusive()?;
        if read_nonce(&self.dir)? != start_nonce {
            return Err(RepoError::NonceMismatch);
        }
        match durable::write_atomic_in(
            &self.dir,
            "nonce",
            config::encode_nonce(next_unreserved).as_bytes(),
        ) {
            Err(error)
                if error.kind() == io::ErrorKind::PermissionDenied && self.lock.is_none() =>
            {
                log::warn!(target: LOG, "{}: Failed writing to '{}/nonce'. This is expected when working on read-only repositories.", error, self.path.display());
                Ok(())
            }
            other => other.map_err(|e| RepoError::io("cannot write the nonce file", e)),
        }
    }

    /// Whether [`Repository::destroy`] would be refused (borg's append-only check), asked
    /// before the session gives the repository up.
    pub fn may_destroy(&self) -> Result<(), RepoError> {
        if self.append_only {
            return Err(RepoError::AppendOnly(self.display_path()));
        }
        Ok(())
    }

    /// Deletes the whole repository (config first, so a half-deleted one is never opened).
    pub fn destroy(mut self) -> Result<(), RepoError> {
        self.may_destroy()?;
        // The lock `lock=True` would hold, so a running backup is not destroyed under it.
        self.lock_for_config()?;
        self.rollback();
        self.io.abandon_segment();
        if let Some(key_quota) = self.key_quota.as_mut() {
            if let Err(error) = key_quota.forget_repository() {
                log::warn!(target: LOG, "cannot remove the repository from the key quota ledger: {error}");
            }
        }
        let path = self.path.clone();
        if let Some(lock) = self.lock.take() {
            lock.release().map_err(RepoError::Lock)?;
        }
        std::fs::remove_file(path.join("config"))
            .map_err(|e| RepoError::io("cannot remove config", e))?;
        std::fs::remove_dir_all(&path).map_err(|e| RepoError::io("cannot remove the repository", e))
    }

    /// Breaks the lock of the repository at `path` (borg's `break_lock`).
    pub fn break_lock(path: &Path) -> Result<(), RepoError> {
        break_lock(path).map_err(RepoError::Lock)
    }
}

/// Reads and checks the repository's `config` and the settings it holds (the server's quota
/// wins).
pub(super) fn read_settings(
    dir: &Dir,
    options: &OpenOptions,
) -> Result<(ConfigFile, RepositoryConfig), RepoError> {
    let display = dir.path().display().to_string();
    let config = match dir.read("config") {
        Ok(bytes) => ConfigFile::parse_bytes(&bytes)
            .map_err(|reason| RepoError::BadConfig(display.clone(), reason.to_string()))?,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(RepoError::NotARepository(display));
        }
        Err(error) => {
            return Err(RepoError::io(
                format!("cannot read {display}/config"),
                error,
            ));
        }
    };
    let quota_override = options
        .storage_quota
        .map(|q| i64::try_from(q).unwrap_or(i64::MAX));
    let settings = RepositoryConfig::from_config(&config, quota_override)
        .map_err(|reason| RepoError::BadConfig(display, reason.to_string()))?;
    Ok((config, settings))
}

/// borg's `is_repository`: a README that says so in its first 100 bytes (a symlinked README
/// does not count).
pub fn is_repository(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 100];
    let Ok(mut file) = Dir::open(path).and_then(|dir| dir.open_file("README", Access::Read)) else {
        return false;
    };
    let read = file.read(&mut head).unwrap_or(0);
    let head = &head[..read];
    contains(head, b"Borg Backup repository") || contains(head, b"Borg repository")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// borg's `check_can_create_repository` and `create`.
fn create_repository(path: &Path, options: &OpenOptions) -> Result<(), RepoError> {
    let display = path.display().to_string();
    match std::fs::metadata(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
            return Err(RepoError::PathInaccessible(display));
        }
        Err(error) => return Err(RepoError::io(format!("cannot inspect {display}"), error)),
        Ok(metadata) => {
            if is_repository(path) {
                return Err(RepoError::RepositoryExists(display));
            }
            if !metadata.is_dir() {
                return Err(RepoError::PathTaken(display));
            }
            match std::fs::read_dir(path) {
                Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
                    return Err(RepoError::PathInaccessible(display));
                }
                Err(error) => return Err(RepoError::io(format!("cannot list {display}"), error)),
                Ok(mut entries) => {
                    if entries.next().is_some() {
                        return Err(RepoError::PathTaken(display));
                    }
                }
            }
        }
    }
    for parent in path.ancestors().skip(1) {
        if is_repository(parent) {
            return Err(RepoError::RepositoryExists(parent.display().to_string()));
        }
    }
    if options.make_parent_dirs {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| RepoError::io(format!("cannot create {}", parent.display()), e))?;
        }
    }
    if !path.exists() {
        match std::fs::create_dir(path) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(RepoError::NoParentDirectory(display));
            }
            Err(error) => return Err(RepoError::io(format!("cannot create {display}"), error)),
            Ok(()) => {}
        }
    }
    let dir = Dir::open(path).map_err(|e| RepoError::io(format!("cannot open {display}"), e))?;
    {
        use std::io::Write;
        dir.open_file("README", Access::CreateNew)
            .and_then(|mut file| file.write_all(REPOSITORY_README.as_bytes()))
            .map_err(|e| RepoError::io("cannot write README", e))?;
    }
    if !dir
        .create_subdir("data")
        .map_err(|e| RepoError::io("cannot create data", e))?
    {
        return Err(RepoError::io(
            "cannot create data",
            io::Error::from(io::ErrorKind::AlreadyExists),
        ));
    }
    let id = random_id().map_err(|e| RepoError::io("cannot read /dev/urandom", e))?;
    let quota = i64::try_from(options.storage_quota.unwrap_or(0)).unwrap_or(i64::MAX);
    let config = config::new_repository_config(&id, options.append_only, quota);
    save_config(&dir, &config, true)
}

fn random_id() -> io::Result<[u8; 32]> {
    use std::io::Read;
    let mut id = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut id)?;
    Ok(id)
}

/// Like borg's, except that nothing is followed: a symlinked `config.old` is refused instead
/// of being erased through (its target is left alone), and `config` is linked, never its
/// target.
fn save_config(dir: &Dir, config: &ConfigFile, locked: bool) -> Result<(), RepoError> {
    let config_path = dir.child_path("config");
    let old_kind = |dir: &Dir| {
        dir.stat("config.old")
            .map(|stat| stat.map(|s| s.kind))
            .map_err(|e| RepoError::io("cannot inspect config.old", e))
    };
    if let Some(kind) = old_kind(dir)? {
        if kind == super::dir::Kind::File {
            log::warn!(target: LOG, "Old config file not securely erased on previous config update");
        }
        // Anything but a regular file (a planted symlink) is refused here, named.
        durable::secure_erase_in(dir, "config.old")
            .map_err(|e| RepoError::io("cannot erase config.old", e))?;
    }
    if dir
        .is_file("config")
        .map_err(|e| RepoError::io("cannot inspect config", e))?
    {
        if let Err(error) = dir.hard_link("config", "config.old") {
            let tolerated = [
                nix::libc::EMLINK,
                nix::libc::ENOSYS,
                nix::libc::EPERM,
                nix::libc::EACCES,
                nix::libc::ENOTSUP,
                nix::libc::EIO,
            ];
            if error
                .raw_os_error()
                .is_some_and(|code| tolerated.contains(&code))
            {
                log::warn!(target: LOG, "Failed to securely erase old repository config file (hardlinks not supported). Old repokey data, if any, might persist on physical storage.");
            } else {
                return Err(RepoError::io("cannot link config.old", error));
            }
        }
    }
    match durable::write_atomic_in(dir, "config", config.to_text().as_bytes()) {
        Err(error) if error.kind() == io::ErrorKind::PermissionDenied && !locked => {
            log::warn!(target: LOG, "{error}: Failed writing to '{}'. This is expected when working on read-only repositories.", config_path.display());
        }
        other => other.map_err(|e| RepoError::io("cannot write config", e))?,
    }
    if old_kind(dir)?.is_some() {
        durable::secure_erase_in(dir, "config.old")
            .map_err(|e| RepoError::io("cannot erase config.old", e))?;
    }
    Ok(())
}

fn read_nonce(repo: &Dir) -> Result<Option<u64>, RepoError> {
    match repo.read("nonce") {
        Ok(bytes) => config::parse_nonce(&bytes)
            .map(Some)
            .map_err(|e| RepoError::BadNonceFile(e.to_string())),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(RepoError::io("cannot read the nonce file", error)),
    }
}
