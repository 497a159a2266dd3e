//! borgstore's object names: `validate_name` exactly as borgstore 0.7.0 has it
//! (`backends/_base.py`), the components a name opens on disk, and `nest`.
//!
//! Pure. A name is the URL path of a request with its outer slashes stripped and *not*
//! percent-decoded (borgstore's server does not decode it either), or a name from a query
//! parameter or a gather/defrag source.

use std::fmt;

/// borgstore's `MAX_NAME_LENGTH`.
pub const MAX_NAME_LENGTH: usize = 100;
/// Suffix of files being written (`TMP_SUFFIX`): invisible in listings, refused as names.
pub const TMP_SUFFIX: &str = ".tmp";
/// Suffix of the server's own hidden files (`HID_SUFFIX`), e.g. `quota.hid`.
pub const HID_SUFFIX: &str = ".hid";

/// Why borgstore refuses a name; `Display` is borgstore's message, word for word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    TooLong(String),
    NotAscii(String),
    NotRelative(String),
    BackslashOrBlank(String),
    NotLowercase(String),
    TempSuffix(String),
    HiddenSuffix(String),
    /// A NUL byte: Python's `os.stat` raises `ValueError("embedded null byte")`.
    NulByte,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::TooLong(name) => {
                write!(f, "name is too long (max: {MAX_NAME_LENGTH}): {name}")
            }
            NameError::NotAscii(name) => {
                write!(
                    f,
                    "name must encode to plain ascii, but failed with: {name}"
                )
            }
            NameError::NotRelative(name) => {
                write!(f, "name must be relative and not contain '..': {name}")
            }
            NameError::BackslashOrBlank(name) => {
                write!(f, "name must not contain backslashes or blanks: {name}")
            }
            NameError::NotLowercase(name) => write!(f, "name must be lowercase, but got: {name}"),
            NameError::TempSuffix(name) => {
                write!(f, "name must not end with {TMP_SUFFIX}, but got: {name}")
            }
            NameError::HiddenSuffix(name) => {
                write!(f, "name must not end with {HID_SUFFIX}, but got: {name}")
            }
            NameError::NulByte => f.write_str("embedded null byte"),
        }
    }
}

impl std::error::Error for NameError {}

/// borgstore's `validate_name`, check for check in its order. The empty name is valid: it
/// is the store's root (`HEAD /`, `GET //`, `mkdir` of the root).
pub fn validate_name(name: &str) -> Result<(), NameError> {
    let owned = || name.to_owned();
    // Python counts code points, not bytes.
    if name.chars().count() > MAX_NAME_LENGTH {
        return Err(NameError::TooLong(owned()));
    }
    if !name.is_ascii() {
        return Err(NameError::NotAscii(owned()));
    }
    if name.starts_with('/') || name.ends_with('/') || name.contains("..") {
        return Err(NameError::NotRelative(owned()));
    }
    if name.contains('\\') || name.contains(' ') {
        return Err(NameError::BackslashOrBlank(owned()));
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(NameError::NotLowercase(owned()));
    }
    if name.ends_with(TMP_SUFFIX) {
        return Err(NameError::TempSuffix(owned()));
    }
    if name.ends_with(HID_SUFFIX) {
        return Err(NameError::HiddenSuffix(owned()));
    }
    if name.contains('\0') {
        return Err(NameError::NulByte);
    }
    Ok(())
}

/// The directory components a valid name opens below the store's root, as Python's
/// `pathlib` joins it: empty components (`a//b`) and `.` are dropped. `..` cannot occur in a
/// valid name. The root itself is the empty list.
pub fn components(name: &str) -> Vec<&str> {
    name.split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect()
}

/// borgstore's `nest(name, levels)`: `packs/abcd` with 1 level is `packs/ab/abcd`.
pub fn nest(name: &str, levels: usize) -> String {
    if levels == 0 || name.is_empty() {
        return name.to_owned();
    }
    let (namespace, key) = match name.rsplit_once('/') {
        Some((namespace, key)) => (Some(namespace), key),
        None => (None, name),
    };
    let mut parts: Vec<&str> = Vec::with_capacity(levels + 2);
    if let Some(namespace) = namespace {
        parts.push(namespace);
    }
    for level in 0..levels {
        // Python slices past the end give "" (and "a" for a one-character tail).
        let start = (2 * level).min(key.len());
        let end = (2 * level + 2).min(key.len());
        parts.push(key.get(start..end).unwrap_or(""));
    }
    parts.push(key);
    parts.join("/")
}

/// Whether `name` (a file name inside a directory) would be listed: borgstore lists only
/// names that pass [`validate_name`].
pub fn is_listable(file_name: &str) -> bool {
    validate_name(file_name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_judged_as_borgstore_judges_them() {
        let long = "a".repeat(MAX_NAME_LENGTH);
        let too_long = "a".repeat(MAX_NAME_LENGTH + 1);
        let table: &[(&str, Option<&str>)] = &[
            ("", None),
            ("config", None),
            ("packs/ab/ab00", None),
            ("archives/1111.del", None),
            ("cache/referenced-by-archive.ff", None),
            ("a/./b", None),
            ("a//b", None),
            (".", None),
            ("x.tmpx", None),
            ("x_-~:@!$", None),
            (&long, None),
            (&too_long, Some("name is too long (max: 100)")),
            ("caf\u{e9}", Some("name must encode to plain ascii")),
            ("/config", Some("name must be relative")),
            ("config/", Some("name must be relative")),
            ("..", Some("name must be relative")),
            ("a/../b", Some("name must be relative")),
            ("a..b", Some("name must be relative")),
            ("a\\b", Some("name must not contain backslashes or blanks")),
            ("a b", Some("name must not contain backslashes or blanks")),
            ("Config", Some("name must be lowercase")),
            ("packs/AB", Some("name must be lowercase")),
            ("tmpabcdefgh.tmp", Some("name must not end with .tmp")),
            ("quota.hid", Some("name must not end with .hid")),
            ("a\0b", Some("embedded null byte")),
        ];
        for (name, expected) in table {
            let result = validate_name(name);
            match expected {
                None => assert_eq!(result, Ok(()), "{name:?}"),
                Some(prefix) => {
                    let message = result.expect_err(name).to_string();
                    assert!(message.starts_with(prefix), "{name:?}: {message}");
                }
            }
        }
    }

    #[test]
    fn the_first_failing_check_gives_the_message() {
        // Too long and uppercase: borgstore checks the length first.
        let name = "A".repeat(MAX_NAME_LENGTH + 1);
        assert!(matches!(validate_name(&name), Err(NameError::TooLong(_))));
        // Blank and uppercase: blanks first.
        assert!(matches!(
            validate_name("A b"),
            Err(NameError::BackslashOrBlank(_))
        ));
        assert_eq!(
            validate_name("Quota.hid").unwrap_err().to_string(),
            "name must be lowercase, but got: Quota.hid"
        );
    }

    #[test]
    fn components_join_like_pathlib() {
        let table: &[(&str, &[&str])] = &[
            ("", &[]),
            (".", &[]),
            ("config", &["config"]),
            ("packs/ab/ab00", &["packs", "ab", "ab00"]),
            ("a//b", &["a", "b"]),
            ("a/./b", &["a", "b"]),
        ];
        for (name, expected) in table {
            assert_eq!(components(name), *expected, "{name:?}");
        }
    }

    #[test]
    fn nesting_matches_borgstore() {
        let table: &[(&str, usize, &str)] = &[
            ("packs/abcdef", 0, "packs/abcdef"),
            ("packs/abcdef", 1, "packs/ab/abcdef"),
            ("packs/abcdef", 2, "packs/ab/cd/abcdef"),
            ("abcdef", 1, "ab/abcdef"),
            ("ns/sub/abcd", 1, "ns/sub/ab/abcd"),
            ("packs/a", 2, "packs/a//a"),
            ("", 3, ""),
        ];
        for (name, levels, expected) in table {
            assert_eq!(nest(name, *levels), *expected, "{name:?} {levels}");
        }
    }

    #[test]
    fn hidden_and_temporary_files_are_not_listed() {
        assert!(is_listable("ab00"));
        assert!(is_listable("1111.del"));
        assert!(!is_listable("tmpa1b2c3d4.tmp"));
        assert!(!is_listable("quota.hid"));
        assert!(!is_listable("README"));
    }
}
