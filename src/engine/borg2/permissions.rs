//! Repository permissions for borg 2: borg's `borg_permissions()` maps a mode name to
//! borgstore's per-namespace letters (borg 2.0.0b25 `repository.py`), and posixfs's
//! `_check_permission` decides each operation with them.
//!
//! Pure. Letters: `l` list, `r` read, `w` write a new object, `W` write or overwrite, `D`
//! delete. The longest prefix of the name that the map knows decides; there is no fall-through
//! to shorter prefixes, and an operation passes when any one of its letters is granted.

use std::fmt;

/// `--permissions` / `BORG_REPO_PERMISSIONS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// No checks at all (borg passes `None` to borgstore).
    #[default]
    All,
    /// Read and add; no delete, no overwrite (so no compact).
    NoDelete,
    /// Add, but not read the data back.
    WriteOnly,
    /// Read; only the client's own lock objects may be written.
    ReadOnly,
}

impl Mode {
    pub const NAMES: [&'static str; 4] = ["all", "no-delete", "write-only", "read-only"];

    pub fn from_name(name: &str) -> Option<Mode> {
        match name {
            "all" => Some(Mode::All),
            "no-delete" => Some(Mode::NoDelete),
            "write-only" => Some(Mode::WriteOnly),
            "read-only" => Some(Mode::ReadOnly),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::All => "all",
            Mode::NoDelete => "no-delete",
            Mode::WriteOnly => "write-only",
            Mode::ReadOnly => "read-only",
        }
    }

    /// borg's map for this mode; `None` for `all`.
    pub fn table(self) -> Option<&'static [(&'static str, &'static str)]> {
        match self {
            Mode::All => None,
            Mode::NoDelete => Some(&[
                ("", "lr"),
                ("archives", "lrw"),
                ("cache", "lrwWD"),
                ("config", "lrW"),
                ("index", "lrwWD"),
                ("keys", "lr"),
                ("locks", "lrwD"),
                ("packs", "lrw"),
            ]),
            Mode::WriteOnly => Some(&[
                ("", "l"),
                ("archives", "lw"),
                ("cache", "lrwWD"),
                ("config", "lrW"),
                ("index", "lrwWD"),
                ("keys", "lr"),
                ("locks", "lrwD"),
                ("packs", "lw"),
            ]),
            Mode::ReadOnly => Some(&[("", "lr"), ("locks", "lrwD")]),
        }
    }

    /// posixfs's `_check_permission(name, required)`.
    pub fn check(self, name: &str, required: Required) -> Result<(), Denied> {
        let Some(table) = self.table() else {
            return Ok(());
        };
        let granted = |prefix: &str| {
            table
                .iter()
                .find(|(key, _)| *key == prefix)
                .map(|(_, letters)| *letters)
        };
        let parts: Vec<&str> = name.split('/').collect();
        for end in (0..=parts.len()).rev() {
            let prefix = parts[..end].join("/");
            if let Some(letters) = granted(&prefix) {
                if required.0.chars().any(|letter| letters.contains(letter)) {
                    return Ok(());
                }
                break;
            }
        }
        Err(Denied {
            required,
            name: name.to_owned(),
        })
    }
}

/// The letters an operation needs, any one of which suffices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Required(pub &'static str);

impl Required {
    pub const LIST: Required = Required("l");
    pub const INFO: Required = Required("lr");
    pub const READ: Required = Required("r");
    pub const WRITE_NEW: Required = Required("wW");
    pub const OVERWRITE: Required = Required("W");
    pub const DELETE: Required = Required("D");
    pub const MKDIR: Required = Required("w");
    pub const RMDIR: Required = Required("wD");

    /// A store or the destination of a move: `W` when it replaces an object, else `wW`.
    pub fn write(exists: bool) -> Required {
        if exists {
            Required::OVERWRITE
        } else {
            Required::WRITE_NEW
        }
    }
}

/// A refused operation; `Display` is borgstore's `PermissionDenied` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub required: Required,
    pub name: String,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "One of permissions '{}' required for '{}'",
            self.required.0, self.name
        )
    }
}

impl std::error::Error for Denied {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_have_borgs_names() {
        for name in Mode::NAMES {
            assert_eq!(Mode::from_name(name).map(Mode::name), Some(name));
        }
        assert_eq!(Mode::from_name("append-only"), None);
        assert_eq!(Mode::from_name("ALL"), None);
    }

    #[test]
    fn each_mode_grants_what_borgs_map_grants() {
        use Mode::*;
        let r = Required::READ;
        let l = Required::LIST;
        let new = Required::WRITE_NEW;
        let over = Required::OVERWRITE;
        let d = Required::DELETE;
        let table: &[(Mode, &str, Required, bool)] = &[
            (All, "anything/at/all", d, true),
            (All, "", new, true),
            // no-delete
            (NoDelete, "", new, false),
            (NoDelete, "", l, true),
            (NoDelete, "", d, false),
            (NoDelete, "archives/11", new, true),
            (NoDelete, "archives/11", d, false),
            (NoDelete, "archives/11", over, false),
            (NoDelete, "archives/11.del", new, true),
            (NoDelete, "packs/ab/ab00", new, true),
            (NoDelete, "packs/ab/ab00", over, false),
            (NoDelete, "packs/ab/ab00", r, true),
            (NoDelete, "packs/ab", Required::MKDIR, true),
            (NoDelete, "index/ff", over, true),
            (NoDelete, "index/ff", d, true),
            (NoDelete, "cache/x", d, true),
            (NoDelete, "config/manifest", over, true),
            (NoDelete, "config/manifest", d, false),
            (NoDelete, "keys/ff", new, false),
            (NoDelete, "locks/ff", new, true),
            (NoDelete, "locks/ff", d, true),
            (NoDelete, "locks", l, true),
            (NoDelete, "other/x", r, true),
            (NoDelete, "other/x", new, false),
            // write-only
            (WriteOnly, "packs/ab/ab00", r, false),
            (WriteOnly, "packs/ab/ab00", new, true),
            (WriteOnly, "packs", l, true),
            (WriteOnly, "archives/11", r, false),
            (WriteOnly, "index/ff", r, true),
            (WriteOnly, "", r, false),
            (WriteOnly, "config/config", r, true),
            // read-only
            (ReadOnly, "packs/ab/ab00", r, true),
            (ReadOnly, "packs/ab/ab00", new, false),
            (ReadOnly, "archives/11", d, false),
            (ReadOnly, "locks/ff", new, true),
            (ReadOnly, "locks/ff", d, true),
            (ReadOnly, "config/config", Required::INFO, true),
            (ReadOnly, "", new, false),
        ];
        for (mode, name, required, allowed) in table {
            assert_eq!(
                mode.check(name, *required).is_ok(),
                *allowed,
                "{mode:?} {name:?} {required:?}"
            );
        }
    }

    #[test]
    fn the_longest_known_prefix_decides_without_falling_back() {
        // "locks" grants no "l"-less letters beyond its own; "" has "r" but "locks" decides.
        assert!(Mode::ReadOnly.check("locks/x", Required("W")).is_err());
        // "keys" lacks w although "" ... also lacks it; with "lr" at "keys", write is refused.
        assert!(Mode::NoDelete.check("keys/x", Required::WRITE_NEW).is_err());
    }

    #[test]
    fn refusals_use_borgstores_words() {
        let denied = Mode::NoDelete
            .check("archives/2222", Required::DELETE)
            .unwrap_err();
        assert_eq!(
            denied.to_string(),
            "One of permissions 'D' required for 'archives/2222'"
        );
        let denied = Mode::NoDelete
            .check("keys/3333", Required::WRITE_NEW)
            .unwrap_err();
        assert_eq!(
            denied.to_string(),
            "One of permissions 'wW' required for 'keys/3333'"
        );
    }
}
