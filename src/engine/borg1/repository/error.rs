//! The repository's errors, one variant per thing that can go wrong, each with a sentence of
//! its own. Where borg has a sentence for it, it is borg's (`str()` of borg's exception).
//!
//! The repository does not know the wire: which exception class, arguments and message a
//! borg client receives for each is the RPC layer's mapping (`rpc/errors.rs`).

use std::fmt;
use std::io;

use super::segment::{ObjectId, SegmentError};
use crate::common::text::hex_id;
use crate::common::text::plain_io_error;
use crate::engine::borg1::lock::LockError;

#[derive(Debug)]
pub enum RepoError {
    /// There is no repository at the path.
    NoRepository(String),
    /// `create` where a repository already is (the path, or a parent of it).
    RepositoryExists(String),
    /// The path holds something that is not a borg repository (or a damaged one).
    NotARepository(String),
    /// The repository's `config` cannot be used: the path and why.
    BadConfig(String, String),
    /// A repository in attic's format.
    AtticFormat(String),
    /// `create` below a directory that does not exist.
    NoParentDirectory(String),
    /// `create` at a path where something other than a repository already is.
    PathTaken(String),
    /// `create` at a path this account may not look into.
    PathInaccessible(String),
    /// The segments and the index disagree, so `borg check` must look: the path as borg's
    /// message names it.
    Inconsistent(String),
    /// No object with this id: the id and the repository's path.
    NoSuchObject(ObjectId, String),
    /// Damaged data: what is damaged, and where.
    Corrupt(String),
    /// A write would exceed the storage quota (both sizes as borg formats them).
    QuotaExceeded {
        quota: String,
        usage: String,
    },
    /// The disk has not enough free space for the commit (both sizes as borg formats them).
    NotEnoughSpace {
        required: String,
        available: String,
    },
    Lock(LockError),
    /// A write on a read-only key: the operation's name.
    ReadOnly(&'static str),
    /// Something this key may not do, in one sentence for the client.
    NotPermitted(String),
    /// A change refused because the repository is in append-only mode: its path.
    AppendOnly(String),
    /// An argument the call cannot take.
    BadArgument(String),
    /// A `list` or `scan` marker that names no object: the marker.
    UnknownMarker(Vec<u8>),
    /// A call the repository cannot make in its state, or with its arguments.
    Precondition(String),
    /// The `nonce` file cannot be read: why.
    BadNonceFile(String),
    /// A nonce reservation whose previous state is not the repository's.
    NonceMismatch,
    /// The engine's own bookkeeping failed (a bug or a full hash table): what failed.
    Internal(String),
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

impl fmt::Display for RepoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepoError::NoRepository(path) => write!(f, "Repository {path} does not exist."),
            RepoError::RepositoryExists(path) => {
                write!(f, "A repository already exists at {path}.")
            }
            RepoError::NotARepository(path) => {
                write!(f, "{path} is not a valid repository. Check repo config.")
            }
            RepoError::BadConfig(path, reason) => write!(
                f,
                "{path} does not have a valid configuration. Check repo config [{reason}]."
            ),
            RepoError::AtticFormat(path) => write!(
                f,
                "Attic repository detected. Please run \"borg upgrade {path}\"."
            ),
            RepoError::NoParentDirectory(path) => write!(
                f,
                "The parent path of the repo directory [{path}] does not exist."
            ),
            RepoError::PathTaken(path) => write!(f, "There is already something at {path}."),
            RepoError::PathInaccessible(path) => write!(f, "Permission denied to {path}."),
            RepoError::Inconsistent(path) => write!(
                f,
                "Inconsistency detected. Please run \"borg check {path}\"."
            ),
            RepoError::NoSuchObject(id, path) => write!(
                f,
                "Object with key {} not found in repository {path}.",
                hex_id(id)
            ),
            RepoError::Corrupt(message) => write!(f, "Data integrity error: {message}"),
            RepoError::QuotaExceeded { quota, usage } => write!(
                f,
                "The storage quota ({quota}) has been exceeded ({usage}). Try deleting some archives."
            ),
            RepoError::NotEnoughSpace {
                required,
                available,
            } => write!(
                f,
                "Insufficient free space to complete transaction (required: {required}, available: {available})."
            ),
            RepoError::Lock(error) => error.fmt(f),
            RepoError::ReadOnly(operation) => write!(
                f,
                "Permission denied: this key is read-only ({operation} is not allowed)."
            ),
            RepoError::NotPermitted(message)
            | RepoError::BadArgument(message)
            | RepoError::Precondition(message)
            | RepoError::BadNonceFile(message)
            | RepoError::Internal(message) => f.write_str(message),
            RepoError::AppendOnly(path) => write!(f, "{path} is in append-only mode"),
            RepoError::UnknownMarker(marker) => {
                write!(f, "no object {} to continue from", hex_id(marker))
            }
            RepoError::NonceMismatch => {
                f.write_str("nonce space reservation with mismatched previous state")
            }
            RepoError::Io { context, error } => {
                write!(f, "{context}: {}", plain_io_error(error))
            }
        }
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
            SegmentError::Integrity(integrity) => RepoError::Corrupt(integrity.to_string()),
            SegmentError::Io(error) => RepoError::io("segment file", error),
        }
    }
}
