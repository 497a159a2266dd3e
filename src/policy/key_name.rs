//! Key names: `borg-gate --policy FILE --name NAME` in `authorized_keys`, and `{name}` in a
//! policy's paths and audit fields, so that one policy file serves a fleet of keys.
//!
//! The name comes from the forced command, which only the administrator writes; the client
//! never chooses it. It becomes a path component (`restrict_to_paths = ["/srv/borg/{name}"]`),
//! so its syntax is strict: 1 to 64 ASCII letters, digits, `-`, `_`, `.` or `@`, not
//! starting with `.` or `-`, without `..`. No `/`, no control character, no space, no quote.
//!
//! Pure: no file system, no environment.

use std::fmt;

/// The longest key name accepted.
pub const MAX_KEY_NAME_LEN: usize = 64;

/// The placeholder a policy writes where the key's name goes.
pub const PLACEHOLDER: &str = "{name}";

/// A key name that passed [`KeyName::parse`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyName(String);

/// Why a `--name` value is not a key name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyNameError {
    Empty,
    TooLong(usize),
    /// A character outside the allowed set (shown escaped: it may be a control character).
    Character(char),
    /// A leading `.` or `-`: `.`, `..` and option-like names stay impossible.
    Leading(char),
    DoubleDot,
}

impl fmt::Display for KeyNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyNameError::Empty => f.write_str("it is empty"),
            KeyNameError::TooLong(length) => {
                write!(f, "it is {length} bytes long, more than {MAX_KEY_NAME_LEN}")
            }
            KeyNameError::Character(c) => write!(f, "it contains {c:?}"),
            KeyNameError::Leading(c) => write!(f, "it starts with {c:?}"),
            KeyNameError::DoubleDot => f.write_str("it contains \"..\""),
        }
    }
}

impl std::error::Error for KeyNameError {}

/// The rule, as the fix-it half of every message about a bad name.
pub const KEY_NAME_RULE: &str = "use 1-64 letters, digits, '-', '_', '.' or '@', not starting with '.' or '-' and without \"..\"";

impl KeyName {
    pub fn parse(text: &str) -> Result<KeyName, KeyNameError> {
        let Some(first) = text.chars().next() else {
            return Err(KeyNameError::Empty);
        };
        if let Some(bad) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-_.@".contains(*c)))
        {
            return Err(KeyNameError::Character(bad));
        }
        if text.len() > MAX_KEY_NAME_LEN {
            return Err(KeyNameError::TooLong(text.len()));
        }
        if first == '.' || first == '-' {
            return Err(KeyNameError::Leading(first));
        }
        if text.contains("..") {
            return Err(KeyNameError::DoubleDot);
        }
        Ok(KeyName(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The one-line complaint about a `--name` value, as the gate, `check-policy`, `explain` and
/// `doctor` print it.
pub fn describe_bad_name(text: &str, error: &KeyNameError) -> String {
    format!("--name {text:?} is not a key name: {error}; {KEY_NAME_RULE}")
}

/// How `{name}` is read while a policy is validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyContext<'a> {
    /// The forced command gives no `--name`: a policy that uses `{name}` cannot serve it.
    #[default]
    Unnamed,
    /// The forced command gives `--name`: `{name}` becomes it.
    Named(&'a KeyName),
    /// `check-policy` without `--name`: `{name}` is checked and kept as written.
    Template,
}

impl<'a> KeyContext<'a> {
    pub fn name(self) -> Option<&'a KeyName> {
        match self {
            KeyContext::Named(name) => Some(name),
            KeyContext::Unnamed | KeyContext::Template => None,
        }
    }
}

/// Why a policy value cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// `{user}`, `{Name}`, a lone `{` or `}`: only `{name}` exists.
    Unknown(String),
    /// `{name}` without a `--name` in the forced command.
    NoName,
}

/// A value with `{name}` replaced as `key` says. `Ok(None)` when the value has no
/// placeholder (nothing to replace).
pub fn expand(value: &str, key: KeyContext<'_>) -> Result<Option<String>, TemplateError> {
    let mut rest = value;
    let mut uses_name = false;
    while let Some(open) = rest.find(['{', '}']) {
        let tail = &rest[open..];
        if let Some(after) = tail.strip_prefix(PLACEHOLDER) {
            uses_name = true;
            rest = after;
        } else {
            let end = tail.find('}').map_or(tail.len(), |close| close + 1);
            let shown: String = tail[..end].chars().take(40).collect();
            return Err(TemplateError::Unknown(shown));
        }
    }
    if !uses_name {
        return Ok(None);
    }
    match key {
        KeyContext::Named(name) => Ok(Some(value.replace(PLACEHOLDER, name.as_str()))),
        KeyContext::Template => Ok(Some(value.to_owned())),
        KeyContext::Unnamed => Err(TemplateError::NoName),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_host_and_person_names_are_key_names() {
        for name in [
            "alice",
            "alice-laptop",
            "db01.example.org",
            "alice@laptop",
            "A_1",
            "x",
            &"a".repeat(64),
        ] {
            assert_eq!(
                KeyName::parse(name).map(|n| n.to_string()),
                Ok(name.to_owned())
            );
        }
    }

    #[test]
    fn names_that_could_leave_a_directory_or_break_a_line_are_refused() {
        let cases: &[(&str, KeyNameError)] = &[
            ("", KeyNameError::Empty),
            ("a/b", KeyNameError::Character('/')),
            ("/", KeyNameError::Character('/')),
            ("..", KeyNameError::Leading('.')),
            (".", KeyNameError::Leading('.')),
            (".hidden", KeyNameError::Leading('.')),
            ("a..b", KeyNameError::DoubleDot),
            ("-rf", KeyNameError::Leading('-')),
            ("a b", KeyNameError::Character(' ')),
            ("a\nb", KeyNameError::Character('\n')),
            ("a\0", KeyNameError::Character('\0')),
            ("a\u{202e}b", KeyNameError::Character('\u{202e}')),
            ("ä", KeyNameError::Character('ä')),
            ("{name}", KeyNameError::Character('{')),
            ("a\"b", KeyNameError::Character('"')),
            ("a*", KeyNameError::Character('*')),
        ];
        for (text, error) in cases {
            assert_eq!(KeyName::parse(text).as_ref(), Err(error), "{text:?}");
        }
        assert_eq!(
            KeyName::parse(&"a".repeat(65)),
            Err(KeyNameError::TooLong(65))
        );
    }

    #[test]
    fn the_complaint_names_the_value_the_problem_and_the_rule() {
        let error = KeyName::parse("a/b").unwrap_err();
        assert_eq!(
            describe_bad_name("a/b", &error),
            "--name \"a/b\" is not a key name: it contains '/'; use 1-64 letters, digits, '-', '_', '.' or '@', not starting with '.' or '-' and without \"..\""
        );
        let error = KeyName::parse("a\nb").unwrap_err();
        assert!(!describe_bad_name("a\nb", &error).contains('\n'));
    }

    #[test]
    fn the_placeholder_becomes_the_name_everywhere_it_appears() {
        let alice = KeyName::parse("alice").unwrap();
        let named = KeyContext::Named(&alice);
        assert_eq!(
            expand("/srv/borg/{name}", named),
            Ok(Some("/srv/borg/alice".to_owned()))
        );
        assert_eq!(
            expand("/srv/{name}/{name}.d", named),
            Ok(Some("/srv/alice/alice.d".to_owned()))
        );
        assert_eq!(expand("/srv/borg", named), Ok(None));
        assert_eq!(
            expand("/srv/{name}", KeyContext::Template),
            Ok(Some("/srv/{name}".to_owned()))
        );
        assert_eq!(expand("/srv/borg", KeyContext::Unnamed), Ok(None));
    }

    #[test]
    fn a_placeholder_without_a_name_or_an_unknown_placeholder_is_an_error() {
        assert_eq!(
            expand("/srv/{name}", KeyContext::Unnamed),
            Err(TemplateError::NoName)
        );
        let alice = KeyName::parse("alice").unwrap();
        for (value, shown) in [
            ("/srv/{user}", "{user}"),
            ("/srv/{Name}", "{Name}"),
            ("/srv/{name", "{name"),
            ("/srv/}", "}"),
            ("/srv/{}", "{}"),
        ] {
            assert_eq!(
                expand(value, KeyContext::Named(&alice)),
                Err(TemplateError::Unknown(shown.to_owned())),
                "{value}"
            );
        }
    }
}
