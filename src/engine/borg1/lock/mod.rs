//! Repository locking compatible with borg 1.x: the `lock.exclusive` mutex directory and the `lock.roster` JSON file.
//!
//! This is borg's `locking.Lock` (spec section 7). A repository is locked by
//!
//! * `<repo>/lock.exclusive/`, a mutex directory holding one file per owner
//!   ([`ExclusiveLock`], in `mutex.rs`), and
//! * `<repo>/lock.roster`, a JSON list of shared and exclusive holders ([`LockRoster`]).
//!
//! A shared holder takes the mutex just long enough to add itself to the roster. An
//! exclusive holder waits until no shared holder is left and then *keeps* the mutex, so
//! while it holds the lock every other attempt times out on the mutex. Because the scheme,
//! the file names and the identities are borg's own, a local borg, a Python `borg serve` and
//! `borg-gate serve` exclude each other, and each removes the stale locks the others left
//! behind on this host when it computes the same hostid (see [`identity`] for how we match
//! Python's hostid and what to do when we cannot: set `BORG_HOST_ID` on both sides).
//!
//! # Using it
//!
//! ```no_run
//! use std::path::Path;
//! use std::time::Duration;
//! use borg_gate::engine::borg1::lock::{LockIdentity, LockMode, LockWait, RepositoryLock};
//!
//! let client_gone = || false; // e.g. poll stdin for POLLHUP
//! let wait = LockWait::at_most(Duration::from_secs(1)).abort_when(&client_gone);
//! let lock = RepositoryLock::acquire(
//!     Path::new("/srv/repo"),
//!     LockIdentity::for_current_process(),
//!     LockMode::Shared,
//!     &wait,
//! )?;
//! // ... serve reads ...
//! lock.release()?;
//! # Ok::<(), borg_gate::engine::borg1::lock::LockError>(())
//! ```
//!
//! The lock is released by [`RepositoryLock::release`] (which reports errors) or, on every
//! other path, when the value is dropped (errors are logged, never panicked on).
//!
//! # Upgrades
//!
//! borg's `upgrade` deadlocks when two shared holders upgrade at once: each waits for the
//! other to leave the shared list (`locking.py` says so in a comment). Here the first
//! upgrader also holds `<repo>/lock.upgrade`, a mutex of the same kind as `lock.exclusive`;
//! a second shared holder that wants to upgrade meanwhile gives up at once with borg's
//! `LockTimeout` instead of waiting for a holder that waits for it. Python borg does not
//! know the directory and never touches it; a stale one left by a dead process on this host
//! is removed like a stale `lock.exclusive`, and [`break_lock`] removes it too.
//!
//! # Cancellation
//!
//! Every waiting operation takes a [`LockWait`]: a timeout (`None` = forever, zero = try
//! once, borg's `lock_wait`) and an optional `should_abort` hook. The hook is asked between
//! attempts and every 50 ms while sleeping; when it returns true the attempt ends with
//! [`LockError::Aborted`] and leaves nothing behind (no roster entry, no mutex file). The
//! serve loop passes a hook that notices its client has disconnected, so a server blocked
//! on a busy repository does not outlive its client.

pub(crate) mod identity;
pub(crate) mod mutex;
pub(crate) mod roster;
pub(crate) mod timer;

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use identity::{LockIdentity, computed_host_id, host_id_from_environment, process_alive};
pub use mutex::ExclusiveLock;
pub use roster::{LockRoster, RosterChange, RosterData, RosterKey};
pub use timer::{LockWait, SessionLockWait};

use mutex::LOG_TARGET;
use timer::{NextStep, TimeoutTimer};

/// borg's fixed pause between attempts to get the exclusive roster lock (`locking.py:384`).
pub const EXCLUSIVE_RETRY_INTERVAL: Duration = Duration::from_millis(200);
/// The longest a dropped (not explicitly released) shared lock waits for the mutex to
/// remove its roster entry. If it gives up, the entry turns stale when this process exits
/// and the next locker on this host removes it.
pub const DROP_RELEASE_WAIT: Duration = Duration::from_secs(60);

/// A locking failure. The `String` is the path borg reports, so the server can send it to
/// the client as the exception argument: `<repo>/lock.exclusive` for the mutex,
/// `<repo>/lock` for the roster-level exclusive wait, `<repo>/lock.roster` for file errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockError {
    /// Waited the full `lock_wait` (borg's `LockTimeout`).
    LockTimeout(String),
    /// The lock could not be created at all: path and Python's `str(OSError)`.
    LockFailed(String, String),
    /// Release of a lock that does not exist.
    NotLocked(String),
    /// Release of a lock that someone else holds (for example after `break-lock`).
    NotMyLock(String),
    /// The `should_abort` hook asked to stop waiting. Not a borg exception: there is no
    /// client left to tell.
    Aborted(String),
    /// A file operation on the lock failed: path and Python's `str(OSError)`. borg lets
    /// the raw `OSError` escape in these places.
    Io(String, String),
}

impl fmt::Display for LockError {
    /// borg's own wording (`locking.py:70-97`), so users see the familiar message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::LockTimeout(path) => {
                write!(f, "Failed to create/acquire the lock {path} (timeout).")
            }
            LockError::LockFailed(path, reason) => {
                write!(f, "Failed to create/acquire the lock {path} ({reason}).")
            }
            LockError::NotLocked(path) => {
                write!(f, "Failed to release the lock {path} (was not locked).")
            }
            LockError::NotMyLock(path) => write!(
                f,
                "Failed to release the lock {path} (was/is locked, but not by me)."
            ),
            LockError::Aborted(path) => write!(
                f,
                "Gave up waiting for the lock {path}: the client went away."
            ),
            LockError::Io(path, reason) => {
                write!(f, "Lock file operation on {path} failed: {reason}.")
            }
        }
    }
}

impl std::error::Error for LockError {}

/// How the repository is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// Readers: any number at once, no writer.
    Shared,
    /// One writer, no readers; the mutex stays held.
    Exclusive,
}

/// The mutex directory held while a shared lock is being upgraded (see "Upgrades" above).
pub const UPGRADE_LOCK: &str = "lock.upgrade";

/// A held repository lock (borg's `Lock` on `<repo>/lock`). Released by
/// [`release`](Self::release) or, failing that, on drop.
#[derive(Debug)]
pub struct RepositoryLock {
    /// `<repo>/lock`, the path of roster-level timeouts.
    path: PathBuf,
    mode: LockMode,
    /// The `lock_wait` given at acquisition; borg reuses it to take the mutex on release.
    timeout: Option<Duration>,
    mutex: ExclusiveLock,
    roster: LockRoster,
    /// `<repo>/lock.upgrade`, held only while [`upgrade`](Self::upgrade) waits.
    upgrading: ExclusiveLock,
    held: bool,
}

impl RepositoryLock {
    /// Lock the repository at `repo` (a directory) in `mode` for `identity`.
    ///
    /// Errors: `LockTimeout(<repo>/lock.exclusive)` when the mutex stays busy (for example
    /// another exclusive holder), `LockTimeout(<repo>/lock)` when shared holders keep an
    /// exclusive request waiting, `LockFailed` when the lock cannot be created at all,
    /// `Aborted` when `wait`'s hook fired, `Io` for roster file errors.
    pub fn acquire(
        repo: &Path,
        identity: LockIdentity,
        mode: LockMode,
        wait: &LockWait,
    ) -> Result<RepositoryLock, LockError> {
        let repo = python_abspath(repo).map_err(|reason| {
            LockError::LockFailed(repo.join("lock").to_string_lossy().into_owned(), reason)
        })?;
        let mut lock = RepositoryLock {
            path: repo.join("lock"),
            mode,
            timeout: wait.timeout(),
            mutex: ExclusiveLock::new(repo.join("lock.exclusive"), identity.clone()),
            upgrading: ExclusiveLock::new(repo.join(UPGRADE_LOCK), identity.clone()),
            roster: LockRoster::new(repo.join("lock.roster"), identity),
            held: false,
        };
        match mode {
            LockMode::Shared => lock.join_shared(wait)?,
            LockMode::Exclusive => lock.become_exclusive(wait, false)?,
        }
        lock.held = true;
        Ok(lock)
    }

    /// Turn a shared lock into an exclusive one (borg's `upgrade`); no-op if exclusive.
    /// On failure the shared lock is still held, as in borg. While another shared holder is
    /// upgrading, this one fails at once with `LockTimeout(<repo>/lock)` (borg would wait
    /// for the other, which waits for this one: a deadlock until one lock wait runs out).
    pub fn upgrade(&mut self, wait: &LockWait) -> Result<(), LockError> {
        if self.mode == LockMode::Exclusive {
            return Ok(());
        }
        self.claim_upgrade()?;
        let upgraded = self.become_exclusive(wait, true);
        if let Err(error) = self.upgrading.release() {
            log::warn!(target: LOG_TARGET, "Releasing {UPGRADE_LOCK} failed: {error}");
        }
        upgraded?;
        self.mode = LockMode::Exclusive;
        Ok(())
    }

    /// Takes `lock.upgrade` without waiting. The second try is for a stale directory of a
    /// dead process, which the first try removed.
    fn claim_upgrade(&mut self) -> Result<(), LockError> {
        let once = LockWait::at_most(Duration::ZERO);
        match self.upgrading.acquire(&once) {
            Err(LockError::LockTimeout(_)) => match self.upgrading.acquire(&once) {
                Err(LockError::LockTimeout(_)) => Err(self.roster_timeout()),
                other => other,
            },
            other => other,
        }
    }

    /// Shared acquire: hold the mutex while adding ourselves to the roster's shared list.
    fn join_shared(&mut self, wait: &LockWait) -> Result<(), LockError> {
        self.mutex.acquire(wait)?;
        let added = self.roster.modify(RosterKey::Shared, RosterChange::Add);
        let released = self.mutex.release();
        added.and(released)
    }

    /// borg's `_wait_for_readers_finishing` plus the roster entry: take the mutex, and keep
    /// it once no shared holder (other than ourselves when upgrading) is left.
    fn become_exclusive(&mut self, wait: &LockWait, upgrading: bool) -> Result<(), LockError> {
        let timer = TimeoutTimer::start(wait, Some(EXCLUSIVE_RETRY_INTERVAL));
        loop {
            self.mutex.acquire(wait)?;
            match self.try_claim_exclusive(upgrading) {
                Ok(true) => return Ok(()),
                Ok(false) => self.mutex.release()?,
                Err(error) => {
                    // Never leave an orphaned mutex behind.
                    let _ = self.mutex.release();
                    return Err(error);
                }
            }
            match timer.timed_out_or_sleep() {
                NextStep::Retry => {}
                NextStep::TimedOut => return Err(self.roster_timeout()),
                NextStep::Aborted => return Err(LockError::Aborted(self.path_string())),
            }
        }
    }

    /// With the mutex held: if no other shared holder remains, enter the exclusive list.
    fn try_claim_exclusive(&mut self, upgrading: bool) -> Result<bool, LockError> {
        if upgrading {
            self.roster
                .modify(RosterKey::Shared, RosterChange::Remove)?;
        }
        if self.roster.get(RosterKey::Shared)?.is_empty() {
            if let Err(error) = self.roster.modify(RosterKey::Exclusive, RosterChange::Add) {
                if upgrading {
                    let _ = self.roster.modify(RosterKey::Shared, RosterChange::Add);
                }
                return Err(error);
            }
            return Ok(true);
        }
        if upgrading {
            self.roster.modify(RosterKey::Shared, RosterChange::Add)?;
        }
        Ok(false)
    }

    fn roster_timeout(&self) -> LockError {
        LockError::LockTimeout(self.path_string())
    }

    fn path_string(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// The current mode.
    pub fn mode(&self) -> LockMode {
        self.mode
    }

    /// `<repo>/lock`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// borg's `got_exclusive_lock`: exclusive, and our file is still in `lock.exclusive`
    /// (false after someone ran `break-lock`). Guards every write.
    pub fn got_exclusive_lock(&self) -> bool {
        self.held
            && self.mode == LockMode::Exclusive
            && self.mutex.is_locked()
            && self.mutex.by_me()
    }

    /// Release the lock, reporting what went wrong. A shared release takes the mutex
    /// again, waiting as long as the acquisition was allowed to; if that fails, our roster
    /// entry stays behind and turns stale (removable by anyone) when this process exits.
    pub fn release(self) -> Result<(), LockError> {
        let wait = LockWait::from_timeout(self.timeout);
        self.release_with(&wait)
    }

    /// Release with an explicit wait (for a shared lock, the mutex must be taken again).
    pub fn release_with(mut self, wait: &LockWait) -> Result<(), LockError> {
        self.release_inner(wait)
    }

    /// Forget the lock without touching the disk, as a crashed process would (for tests
    /// that need a stale lock).
    pub fn leak(mut self) {
        self.held = false;
    }

    fn release_inner(&mut self, wait: &LockWait) -> Result<(), LockError> {
        if !self.held {
            return Ok(());
        }
        // Whatever happens below, never try again from Drop.
        self.held = false;
        match self.mode {
            LockMode::Exclusive => {
                // Only the mutex holder may write the roster. If the mutex is no longer
                // ours (someone ran break-lock), leave the roster to its new owner: our
                // entry, if any, turns stale when this process exits. borg writes anyway.
                let removed = if self.mutex.by_me() {
                    self.leave_roster(RosterKey::Exclusive)
                } else {
                    Ok(())
                };
                // Give the mutex back even if the roster could not be written.
                let released = self.mutex.release();
                removed.and(released)
            }
            LockMode::Shared => {
                self.mutex.acquire(wait)?;
                let removed = self.leave_roster(RosterKey::Shared);
                let released = self.mutex.release();
                removed.and(released)
            }
        }
    }

    /// Remove ourselves from `key`; delete the roster when nobody is left.
    fn leave_roster(&self, key: RosterKey) -> Result<(), LockError> {
        self.roster.modify(key, RosterChange::Remove)?;
        if self
            .roster
            .is_empty(&[RosterKey::Exclusive, RosterKey::Shared])?
        {
            self.roster.remove()?;
        }
        Ok(())
    }
}

impl Drop for RepositoryLock {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        let timeout = self
            .timeout
            .map_or(DROP_RELEASE_WAIT, |timeout| timeout.min(DROP_RELEASE_WAIT));
        let wait = LockWait::at_most(timeout);
        if let Err(error) = self.release_inner(&wait) {
            log::warn!(target: LOG_TARGET, "Releasing the repository lock failed: {error}");
        }
    }
}

/// Remove every trace of a lock on `repo`, whoever holds it (`borg break-lock`).
pub fn break_lock(repo: &Path) -> Result<(), LockError> {
    let repo = python_abspath(repo).map_err(|reason| {
        LockError::LockFailed(repo.join("lock").to_string_lossy().into_owned(), reason)
    })?;
    // The identity does not matter for breaking.
    let nobody = LockIdentity::new(String::new(), 0);
    LockRoster::new(repo.join("lock.roster"), nobody.clone()).remove()?;
    ExclusiveLock::new(repo.join(UPGRADE_LOCK), nobody.clone()).break_lock()?;
    ExclusiveLock::new(repo.join("lock.exclusive"), nobody).break_lock()
}

/// Python's `os.path.abspath`: join to the working directory if relative, then
/// `normpath` (lexical: `.` and `..` resolved without looking at the disk, exactly two
/// leading slashes kept). The lock error paths are built from this, as in borg.
pub fn python_abspath(path: &Path) -> Result<PathBuf, String> {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|error| format!("cannot determine the working directory: {error}"))?
            .join(path)
    };
    Ok(python_normpath(joined.as_os_str()))
}

/// Python's `posixpath.normpath` on bytes.
pub fn python_normpath(path: &OsStr) -> PathBuf {
    let bytes = path.as_bytes();
    if bytes.is_empty() {
        return PathBuf::from(".");
    }
    let leading_slashes = if bytes.starts_with(b"//") && !bytes.starts_with(b"///") {
        2
    } else if bytes.starts_with(b"/") {
        1
    } else {
        0
    };
    let mut components: Vec<&[u8]> = Vec::new();
    for component in bytes.split(|byte| *byte == b'/') {
        match component {
            b"" | b"." => {}
            b".." => {
                let keep = (leading_slashes == 0 && components.is_empty())
                    || components.last() == Some(&&b".."[..]);
                if keep {
                    components.push(component);
                } else {
                    components.pop();
                }
            }
            _ => components.push(component),
        }
    }
    let mut normalized = vec![b'/'; leading_slashes];
    normalized.extend_from_slice(&components.join(&b'/'));
    if normalized.is_empty() {
        normalized.push(b'.');
    }
    PathBuf::from(std::ffi::OsString::from_vec(normalized))
}

#[cfg(test)]
pub(crate) mod tests;
