//! Loading a policy file: open without following a final symlink, check owner and mode on
//! the already-open file (as OpenDoas does), read it bounded, then validate.
//!
//! A symlink as the last path component is refused on purpose: the file that is checked is
//! the file that is read, and an administrator who points `--policy` at a symlink learns it
//! at once from `check-policy`. Symlinks in the directories above are followed; those
//! directories belong to the administrator.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::validate::{MAX_POLICY_SIZE, parse_policy_for_key};
use super::{KeyContext, Policy};
use crate::common::text::plain_io_error;

/// Why a policy could not be used. Every variant fails closed.
#[derive(Debug)]
pub enum LoadError {
    Open {
        path: PathBuf,
        error: io::Error,
    },
    Symlink {
        path: PathBuf,
    },
    NotRegular {
        path: PathBuf,
    },
    Owner {
        path: PathBuf,
        owner: u32,
        allowed: Vec<u32>,
        /// Account names of the uids above, where the password database knows them.
        names: Vec<(u32, String)>,
    },
    Writable {
        path: PathBuf,
        mode: u32,
    },
    TooLarge {
        path: PathBuf,
    },
    NotUtf8 {
        path: PathBuf,
    },
    /// Validation errors, already rendered as `file:line:column: message`.
    Invalid {
        path: PathBuf,
        errors: Vec<String>,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Open { path, error } => {
                write!(
                    f,
                    "cannot read policy {}: {}",
                    path.display(),
                    plain_io_error(error)
                )
            }
            LoadError::Symlink { path } => write!(
                f,
                "policy {} is a symlink; point --policy at the file itself",
                path.display()
            ),
            LoadError::NotRegular { path } => {
                write!(f, "policy {} is not a regular file", path.display())
            }
            LoadError::Owner {
                path,
                owner,
                allowed,
                names,
            } => write!(
                f,
                "policy {} is owned by {}; it must be owned by {}",
                path.display(),
                account_label(*owner, names),
                allowed
                    .iter()
                    .map(|uid| account_label(*uid, names))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
            LoadError::Writable { path, mode } => write!(
                f,
                "policy {} is writable by group or others (mode {:04o}); run chmod go-w on it",
                path.display(),
                mode & 0o7777
            ),
            LoadError::TooLarge { path } => write!(
                f,
                "policy {} is larger than {MAX_POLICY_SIZE} bytes",
                path.display()
            ),
            LoadError::NotUtf8 { path } => write!(f, "policy {} is not UTF-8 text", path.display()),
            LoadError::Invalid { errors, .. } => match errors.as_slice() {
                [] => f.write_str("invalid policy"),
                [only] => write!(f, "invalid policy: {only}"),
                [first, rest @ ..] => {
                    write!(
                        f,
                        "invalid policy: {first} (and {} more; run borg-gate check-policy)",
                        rest.len()
                    )
                }
            },
        }
    }
}

impl std::error::Error for LoadError {}

/// `borg (uid 1000)`, `root`, or `uid 1000` when the name is unknown.
fn account_label(uid: u32, names: &[(u32, String)]) -> String {
    match names.iter().find(|(known, _)| *known == uid) {
        Some((0, name)) if name == "root" => name.clone(),
        Some((_, name)) => format!("{name} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

/// File facts that decide whether a policy may be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileFacts {
    pub is_regular: bool,
    pub owner: u32,
    pub mode: u32,
    pub size: u64,
}

/// Pure trust check: a regular file, owned by root or by the account borg-gate runs as, and
/// not writable by group or others.
pub(crate) fn check_trust(
    path: &Path,
    facts: FileFacts,
    effective_uid: u32,
) -> Result<(), LoadError> {
    let path = path.to_path_buf();
    if !facts.is_regular {
        return Err(LoadError::NotRegular { path });
    }
    if facts.owner != 0 && facts.owner != effective_uid {
        let mut allowed = vec![0];
        if effective_uid != 0 {
            allowed.push(effective_uid);
        }
        return Err(LoadError::Owner {
            path,
            owner: facts.owner,
            allowed,
            names: Vec::new(),
        });
    }
    if facts.mode & 0o022 != 0 {
        return Err(LoadError::Writable {
            path,
            mode: facts.mode,
        });
    }
    if facts.size > MAX_POLICY_SIZE as u64 {
        return Err(LoadError::TooLarge { path });
    }
    Ok(())
}

/// Fills in the account names an owner error mentions.
fn with_account_names(error: LoadError) -> LoadError {
    match error {
        LoadError::Owner {
            path,
            owner,
            allowed,
            ..
        } => {
            let names = std::iter::once(owner)
                .chain(allowed.iter().copied())
                .filter_map(|uid| {
                    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid));
                    Some((uid, user.ok().flatten()?.name))
                })
                .collect();
            LoadError::Owner {
                path,
                owner,
                allowed,
                names,
            }
        }
        other => other,
    }
}

/// Reads, checks and validates a policy file.
pub fn load_policy(path: &Path) -> Result<Policy, LoadError> {
    load_policy_for_key(path, KeyContext::Unnamed)
}

/// [`load_policy`] for a key named in the forced command (`{name}` becomes its name).
pub fn load_policy_for_key(path: &Path, key: KeyContext<'_>) -> Result<Policy, LoadError> {
    let (text, _) = read_policy_text(path)?;
    parse_policy_for_key(&text, default_policy_name(path), key).map_err(|errors| {
        LoadError::Invalid {
            path: path.to_path_buf(),
            errors: errors.render(path, &text),
        }
    })
}

/// The label of a policy without `name`: its file name without `.toml`.
pub(crate) fn default_policy_name(path: &Path) -> &str {
    path.file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or("policy")
}

/// Opens without following a final symlink and checks the open file before reading it.
pub(crate) fn read_policy_text(path: &Path) -> Result<(String, FileFacts), LoadError> {
    read_policy_text_trusting(path, nix::unistd::geteuid().as_raw())
}

/// [`read_policy_text`], judging trust as the gate running as `uid` would (`check-policy
/// --user` and `doctor` read as root for the backup account).
pub(crate) fn read_policy_text_trusting(
    path: &Path,
    uid: u32,
) -> Result<(String, FileFacts), LoadError> {
    let file = File::options()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC | nix::libc::O_NOCTTY)
        .open(path)
        .map_err(|error| {
            if error.raw_os_error() == Some(nix::libc::ELOOP) {
                LoadError::Symlink {
                    path: path.to_path_buf(),
                }
            } else {
                LoadError::Open {
                    path: path.to_path_buf(),
                    error,
                }
            }
        })?;
    let metadata = file.metadata().map_err(|error| LoadError::Open {
        path: path.to_path_buf(),
        error,
    })?;
    let facts = FileFacts {
        is_regular: metadata.file_type().is_file(),
        owner: metadata.uid(),
        mode: metadata.mode(),
        size: metadata.len(),
    };
    check_trust(path, facts, uid).map_err(with_account_names)?;
    let mut bytes = Vec::new();
    file.take(MAX_POLICY_SIZE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| LoadError::Open {
            path: path.to_path_buf(),
            error,
        })?;
    if bytes.len() > MAX_POLICY_SIZE {
        return Err(LoadError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| LoadError::NotUtf8 {
        path: path.to_path_buf(),
    })?;
    Ok((text, facts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(owner: u32, mode: u32) -> FileFacts {
        FileFacts {
            is_regular: true,
            owner,
            mode: 0o100000 | mode,
            size: 100,
        }
    }

    #[test]
    fn root_owned_private_file_is_trusted() {
        assert!(check_trust(Path::new("/p"), facts(0, 0o600), 1000).is_ok());
        assert!(check_trust(Path::new("/p"), facts(0, 0o644), 1000).is_ok());
    }

    #[test]
    fn file_owned_by_the_running_account_is_trusted() {
        assert!(check_trust(Path::new("/p"), facts(1000, 0o600), 1000).is_ok());
    }

    #[test]
    fn file_owned_by_someone_else_is_refused() {
        let error = check_trust(Path::new("/p"), facts(1001, 0o600), 1000).unwrap_err();
        assert_eq!(
            error.to_string(),
            "policy /p is owned by uid 1001; it must be owned by uid 0 or uid 1000"
        );
    }

    #[test]
    fn owner_errors_name_the_accounts_the_password_database_knows() {
        let error = check_trust(Path::new("/p"), facts(4_200_001, 0o600), 4_200_000).unwrap_err();
        let named = with_account_names(error);
        let root = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(0))
            .unwrap()
            .unwrap();
        assert!(
            named
                .to_string()
                .ends_with(&format!("it must be owned by {} or uid 4200000", root.name)),
            "{named}"
        );
    }

    #[test]
    fn group_or_world_writable_file_is_refused() {
        for mode in [0o620, 0o602, 0o666, 0o777] {
            let error = check_trust(Path::new("/p"), facts(0, mode), 0).unwrap_err();
            assert!(
                error.to_string().contains("writable by group or others"),
                "{mode:o}"
            );
        }
    }

    #[test]
    fn directory_is_refused() {
        let mut f = facts(0, 0o755);
        f.is_regular = false;
        assert!(matches!(
            check_trust(Path::new("/p"), f, 0),
            Err(LoadError::NotRegular { .. })
        ));
    }

    #[test]
    fn oversized_file_is_refused() {
        let mut f = facts(0, 0o600);
        f.size = MAX_POLICY_SIZE as u64 + 1;
        assert!(matches!(
            check_trust(Path::new("/p"), f, 0),
            Err(LoadError::TooLarge { .. })
        ));
    }
}
