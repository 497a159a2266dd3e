//! When a session takes which repository lock, and the rule that nothing is written
//! without the exclusive lock.
//!
//! borg honours a client's `open(lock=False)` (`--bypass-lock`, and `borg break-lock`,
//! `key export`, `key import` and `borg version`, which never lock): such a session then
//! reads while a backup rewrites the index, and its first `put` deletes every segment above
//! the last commit, a concurrent backup's among them. Here a `lock=False` session is
//! [`LockUse::Deferred`] unless the policy allows lock bypass: it opens without a lock, so
//! that `break-lock` and `key export` still work while someone holds one, and takes the lock
//! it would have taken at `open` (shared, or exclusive when it asked for that) at its first
//! operation that reads objects or writes anything. With the policy's permission it is
//! [`LockUse::Bypassed`]: it reads without a lock, as in borg, but still takes the lock
//! before it writes anything, or before a read that needs a write (a replay).
//!
//! Every write of segments, index, hints, integrity or nonce goes through
//! [`Repository::lock_for_writing`], which takes or upgrades to the exclusive lock and
//! verifies that the lock is still ours (`break-lock` may have taken it). Every wait is the
//! session's [`SessionLockWait`](crate::engine::borg1::lock::SessionLockWait).

use super::error::RepoError;
use super::repo::{OpenOptions, Repository, read_settings};
use super::transaction::read_index;
use crate::engine::borg1::lock::{LockMode, RepositoryLock};

/// When a session takes its lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockUse {
    /// `lock=True`: at `open`, as borg does.
    AtOpen,
    /// `lock=False` without the policy's permission: the lock `lock=True` would have taken,
    /// at the first operation that reads objects or writes anything.
    Deferred,
    /// `lock=False` with the policy's permission (`allow_lock_bypass`): reads go without a
    /// lock; anything that writes takes the lock first.
    Bypassed,
}

impl LockUse {
    pub(crate) fn of(options: &OpenOptions) -> LockUse {
        match (options.lock, options.allow_lock_bypass) {
            (true, _) => LockUse::AtOpen,
            (false, false) => LockUse::Deferred,
            (false, true) => LockUse::Bypassed,
        }
    }
}

/// The lock `lock=True` takes for a client's `exclusive` argument: only `exclusive=True`
/// locks exclusively at once (old clients send none and are upgraded when they write).
pub(crate) fn client_mode(exclusive: Option<bool>) -> LockMode {
    if exclusive == Some(true) {
        LockMode::Exclusive
    } else {
        LockMode::Shared
    }
}

impl Repository {
    /// Before reading the committed state: a deferred lock is taken now. A bypassing
    /// session reads the committed index without a lock when it can be read as it is, and
    /// otherwise (a replay or a repair would have to write) takes the lock first.
    pub(super) fn lock_for_reading(&mut self) -> Result<(), RepoError> {
        if self.lock.is_some() {
            return Ok(());
        }
        match self.lock_use {
            LockUse::AtOpen => Ok(()),
            LockUse::Deferred => self.take_late_lock(client_mode(self.exclusive)),
            LockUse::Bypassed => {
                if self.index.is_none() && !self.read_committed_index_unlocked()? {
                    self.take_late_lock(client_mode(self.exclusive))?;
                }
                Ok(())
            }
        }
    }

    /// Before a transaction starts (its transaction id must not change under it): a session
    /// without a lock takes one now, the exclusive lock when it bypasses locking (so that
    /// its writes succeed), the client's lock when it deferred it (the upgrade follows in
    /// `prepare_txn`, exactly as for `lock=True`).
    pub(super) fn lock_for_transaction(&mut self) -> Result<(), RepoError> {
        if self.lock.is_some() {
            return Ok(());
        }
        match self.lock_use {
            LockUse::AtOpen => Ok(()),
            LockUse::Deferred => self.take_late_lock(client_mode(self.exclusive)),
            LockUse::Bypassed => self.take_late_lock(LockMode::Exclusive),
        }
    }

    /// Before the config is written (`save_key`) or the repository destroyed: the lock the
    /// client's `open` asked for, as borg holds it for these.
    pub(super) fn lock_for_config(&mut self) -> Result<(), RepoError> {
        match self.lock {
            Some(_) => Ok(()),
            None => self.take_late_lock(client_mode(self.exclusive)),
        }
    }

    /// Before anything writes segments, index, hints, integrity or the nonce: the exclusive
    /// lock, still ours. A shared lock is upgraded only for old clients (`exclusive` not
    /// sent) and replays, as in borg; otherwise holding none is a bug borg also reports.
    pub(super) fn lock_for_writing(&mut self) -> Result<(), RepoError> {
        self.lock_for_transaction()?;
        let exclusive_requested = self.exclusive.is_some();
        let Some(lock) = self.lock.as_mut() else {
            return Err(not_exclusive());
        };
        if lock.mode() == LockMode::Shared {
            if exclusive_requested {
                return Err(not_exclusive());
            }
            lock.upgrade(&self.lock_wait.now())?;
        }
        // Exclusive in name; also still ours (`break-lock` may have removed it meanwhile).
        if lock.got_exclusive_lock() {
            Ok(())
        } else {
            Err(not_exclusive())
        }
    }

    /// Takes the lock a `lock=False` session did not take at `open`, then rereads what
    /// `open` read without it: the config (the id must not have changed) and nothing cached.
    fn take_late_lock(&mut self, mode: LockMode) -> Result<(), RepoError> {
        let lock = RepositoryLock::acquire(
            &self.path,
            self.identity.clone(),
            mode,
            &self.lock_wait.now(),
        )?;
        self.lock = Some(lock);
        let (config, settings) = read_settings(&self.dir, &self.options)?;
        if settings.id != self.id {
            return Err(RepoError::NotARepository(self.display_path()));
        }
        self.apply_settings(config, &settings);
        self.index = None;
        Ok(())
    }

    /// A bypassing session's read of the committed index: only when the index is current
    /// (no replay needed) and intact; nothing is written, nothing removed. False otherwise.
    fn read_committed_index_unlocked(&mut self) -> Result<bool, RepoError> {
        let index_tid = self.index_transaction_id()?;
        if index_tid != self.segments_transaction_id()? {
            return Ok(false);
        }
        let index = match index_tid {
            None => super::hashindex::NsIndex::new(),
            Some(tid) => match read_index(&self.dir, tid) {
                Ok(index) => index,
                Err(_) => return Ok(false),
            },
        };
        self.index = Some(index);
        Ok(true)
    }
}

fn not_exclusive() -> RepoError {
    RepoError::Precondition("bug in code, exclusive lock should exist here".into())
}
