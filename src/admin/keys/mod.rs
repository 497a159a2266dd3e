//! `borg-gate keys`: provisioning client keys the way an administrator would by hand, without
//! the mistakes. `keys add` writes a policy from a template, creates the repository directory
//! with the owners and modes the engine requires, and adds one forced-command line to the
//! backup account's authorized_keys; `keys list` shows every line with its policy and last
//! session; `keys remove` takes a line out again.
//!
//! Pure decisions: [`public_key`] (the key an administrator hands over), [`fingerprint`]
//! (`ssh-keygen -l`), [`template`] (policies from `policy-examples/`), [`plan`] (what changes
//! in authorized_keys, and the refusals), [`lines`] (byte-exact line edits and their diff),
//! [`listing`] (the rows of `keys list`). I/O: [`files`] (locks, atomic replacement, owners,
//! directories, the account), [`sessions`] (last sessions from audit logs), and [`run`],
//! which sequences them.

pub(crate) mod files;
pub mod fingerprint;
pub(crate) mod lines;
pub(crate) mod listing;
pub mod plan;
pub(crate) mod public_key;
pub(crate) mod run;
pub(crate) mod sessions;
pub mod template;

use std::fmt;

pub use run::{AddOptions, ListOptions, RemoveOptions, add, list, remove};

/// Why a `keys` command did not do what it was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysError {
    /// The request itself is refused: a key already present, a name in use, a bad path.
    /// Nothing was changed.
    Refused(String),
    /// The system did not cooperate: a file could not be read or written.
    Failed(String),
}

impl fmt::Display for KeysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeysError::Refused(message) | KeysError::Failed(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for KeysError {}
