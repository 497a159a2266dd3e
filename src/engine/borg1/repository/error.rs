//! The repository's errors, one variant per exception class borg's server can raise.
//!
//! The RPC layer turns each into the exception reply a borg client reconstructs.

use std::fmt;
use std::io;

use super::segment::{ObjectId, SegmentError};
use crate::engine::borg1::lock::LockError;
use crate::engine::borg1::rpc::RemoteException;
use crate::engine::borg1::rpc::errors::hex_id;
use crate::policy::load::plain_io_error;

#[derive(Debug)]
pub enum RepoError {
    DoesNotExist(String),
    AlreadyExists(String),
    InvalidRepository(String),
    InvalidRepositoryConfig(String, String),
    AtticRepository(String),
    ParentPathDoesNotExist(String),
    PathAlreadyExists(String),
    PathPermissionDenied(String),
    CheckNeeded(String),
    ObjectNotFound(ObjectId, String),
    /// borg's `IntegrityError`, with its message.
    Integrity(String),
    StorageQuotaExceeded {
        quota: String,
        usage: String,
    },
    InsufficientFreeSpace {
        required: String,
        available: String,
    },
    Lock(LockError),
    /// A write on a read-only key: the operation's name.
    ReadOnly(&'static str),
    /// Something this key may not do, in one sentence for the client.
    PermissionDenied(String),
    /// Python `ValueError` (append-only refusals, bad limits).
    Value(String),
    /// Python `KeyError` (unknown list/scan marker): the key.
    Key(Vec<u8>),
    /// Python `AssertionError` (a write without the exclusive lock).
    Assertion(String),
    /// borg's plain `Error` (an invalid nonce file).
    Error(String),
    /// Python `Exception` (nonce reservation mismatch).
    Exception(String),
    /// A file system failure, with what was being done.
    Io {
        context: String,
        error: io::Error,
    },
}

impl RepoError {
    pub fn io(context: impl Into<String>, error: io::Error) -> RepoError {
        RepoError::Io {
            context: context.into(),
            error,
        }
    }

    /// Whether the failure was a full disk (the transaction is then rolled back with cleanup).
    pub fn is_no_space(&self) -> bool {
        matches!(self, RepoError::Io { error, .. } if error.raw_os_error() == Some(nix::libc::ENOSPC)
            || error.raw_os_error() == Some(nix::libc::EDQUOT))
    }
}

impl RepoError {
    /// The exception reply a borg client reconstructs (class, arguments, message).
    pub fn to_remote(&self) -> RemoteException {
        match self {
            RepoError::DoesNotExist(path) => RemoteException::does_not_exist(path),
            RepoError::AlreadyExists(path) => RemoteException::already_exists(path),
            RepoError::InvalidRepository(path) => RemoteException::invalid_repository(path),
            RepoError::InvalidRepositoryConfig(path, reason) => {
                RemoteException::invalid_repository_config(path, reason)
            }
            RepoError::AtticRepository(path) => RemoteException::attic_repository(path),
            RepoError::ParentPathDoesNotExist(path) => {
                RemoteException::parent_path_does_not_exist(path)
            }
            RepoError::PathAlreadyExists(path) => RemoteException::path_already_exists(path),
            RepoError::PathPermissionDenied(path) => RemoteException::path_permission_denied(path),
            RepoError::CheckNeeded(path) => RemoteException::check_needed(path),
            RepoError::ObjectNotFound(id, path) => {
                RemoteException::object_not_found(&hex_id(id), path)
            }
            RepoError::Integrity(message) => RemoteException::integrity_error(message),
            RepoError::StorageQuotaExceeded { quota, usage } => {
                RemoteException::storage_quota_exceeded(quota, usage)
            }
            RepoError::InsufficientFreeSpace {
                required,
                available,
            } => RemoteException::insufficient_free_space(required, available),
            RepoError::Lock(LockError::LockTimeout(path) | LockError::Aborted(path)) => {
                RemoteException::lock_timeout(path)
            }
            RepoError::Lock(LockError::LockFailed(path, reason)) => {
                RemoteException::lock_failed(path, reason)
            }
            RepoError::Lock(LockError::NotLocked(path)) => RemoteException::not_locked(path),
            RepoError::Lock(LockError::NotMyLock(path)) => RemoteException::not_my_lock(path),
            RepoError::Lock(LockError::Io(path, reason)) => {
                RemoteException::os_error(&format!("{reason}: {path}"))
            }
            RepoError::ReadOnly(operation) => RemoteException::read_only(operation),
            RepoError::PermissionDenied(message) => RemoteException::permission_denied(message),
            RepoError::Value(message) => RemoteException::value_error(message),
            RepoError::Key(key) => RemoteException::key_error(key),
            RepoError::Assertion(message) => RemoteException::assertion_error(message),
            RepoError::Error(message) => RemoteException::error(message),
            RepoError::Exception(message) => RemoteException::exception(message),
            RepoError::Io { context, error } => {
                RemoteException::os_error(&format!("{context}: {}", plain_io_error(error)))
            }
        }
    }
}

impl fmt::Display for RepoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.to_remote().short.trim_end())
    }
}

impl std::error::Error for RepoError {}

impl From<LockError> for RepoError {
    fn from(error: LockError) -> Self {
        RepoError::Lock(error)
    }
}

impl From<SegmentError> for RepoError {
    fn from(error: SegmentError) -> Self {
        match error {
            SegmentError::Integrity(integrity) => RepoError::Integrity(integrity.to_string()),
            SegmentError::Io(error) => RepoError::io("segment file", error),
        }
    }
}
