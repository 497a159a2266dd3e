//! What `keys add` and `keys remove` do to authorized_keys, decided from the file's bytes:
//! the forced-command line of a new key, the refusals (the key is there already, the name is
//! taken), and which lines a removal drops.
//!
//! Pure. Lines are read with the doctor's parser ([`crate::admin::authorized_keys`]); the
//! new line is read back with it too, and must say exactly what was meant.
#![forbid(unsafe_code)]

use std::fmt;
use std::path::{Path, PathBuf};

use super::fingerprint::sha256_fingerprint;
use super::lines::{Edit, split_lines};
use super::public_key::PublicKey;
use crate::admin::authorized_keys::{
    Entry, ForcedCommand, KeyLine, KeyOption, classify_command, parse_file, parse_line,
};

/// Key lines written by `keys add` end with this and the key's name.
pub const NAME_MARKER: &str = "borg-gate:";

/// The name of a key line: the first word of its comment, after [`NAME_MARKER`].
pub fn name_of(key: &KeyLine) -> Option<&str> {
    key.comment
        .split([' ', '\t'])
        .next()
        .and_then(|word| word.strip_prefix(NAME_MARKER))
        .filter(|name| !name.is_empty())
}

/// A key name is a policy name (1-64 letters, digits, `-`, `_`, `.`, `@`) that starts with a
/// letter or digit, so that `NAME.toml` is a plain file name.
pub fn check_name(name: &str) -> Result<(), String> {
    let valid = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "the name {name:?} is not a plain label; use 1-64 letters, digits, '-', '_', '.' or '@', starting with a letter or digit"
        ))
    }
}

/// Why a change is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The key is on `line` already (with what that line does).
    KeyPresent {
        line: usize,
        what: String,
    },
    NameInFile {
        name: String,
        line: usize,
    },
    /// A path cannot be written into a forced command that reads back the same.
    Unwritable(String),
    NoSuchName(String),
    NoSuchFingerprint(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::KeyPresent { line, what } => write!(
                f,
                "this key is already on line {line} ({what}); sshd gives a key the rights of its first line only, so a second line would never apply; remove line {line} first (borg-gate keys remove --key FINGERPRINT) or use another key"
            ),
            Refusal::NameInFile { name, line } => write!(
                f,
                "the name {name:?} is already used by the key on line {line}; choose another --name, or remove that key first (borg-gate keys remove {name})"
            ),
            Refusal::Unwritable(problem) => f.write_str(problem),
            Refusal::NoSuchName(name) => write!(
                f,
                "no key is named {name:?} (no line ends in {NAME_MARKER}{name}); see borg-gate keys list"
            ),
            Refusal::NoSuchFingerprint(fingerprint) => write!(
                f,
                "no key has the fingerprint {fingerprint}; see borg-gate keys list"
            ),
        }
    }
}

impl std::error::Error for Refusal {}

/// `command="<program> --policy <policy>",restrict <type> <key> borg-gate:<name> [comment]`,
/// checked by reading it back with the doctor's parser.
pub fn forced_line(
    program: &Path,
    policy: &Path,
    key: &PublicKey,
    name: &str,
) -> Result<String, Refusal> {
    let unwritable = |what: &str, path: &Path| {
        Refusal::Unwritable(format!(
            "the {what} path {:?} cannot be written into an authorized_keys forced command; use a path of plain characters",
            path.display().to_string()
        ))
    };
    let text = |what: &str, path: &Path| -> Result<String, Refusal> {
        let text = path.to_str().ok_or_else(|| unwritable(what, path))?;
        if !path.is_absolute()
            || text
                .chars()
                .any(|c| c.is_control() || c == '"' || c == '\\')
        {
            return Err(unwritable(what, path));
        }
        shlex::try_quote(text)
            .map(|quoted| quoted.into_owned())
            .map_err(|_| unwritable(what, path))
    };
    let command = format!(
        "{} --policy {}",
        text("borg-gate program", program)?,
        text("policy", policy)?
    );
    let mut comment = format!("{NAME_MARKER}{name}");
    if !key.comment.is_empty() {
        comment.push(' ');
        comment.push_str(&key.comment);
    }
    let line = format!(
        "command=\"{}\",restrict {} {} {comment}",
        command.replace('"', "\\\""),
        key.key_type,
        key.encoded
    );
    let read_back = match parse_line(1, &line) {
        Some(Entry::Key(parsed)) => parsed,
        _ => return Err(unwritable("policy", policy)),
    };
    let expected = ForcedCommand::Gate {
        program: program.to_string_lossy().into_owned(),
        policy: policy.to_path_buf(),
        tilde_expanded: false,
        name: None,
    };
    let intact = read_back.options == [KeyOption::Command(command.clone()), KeyOption::Restrict]
        && read_back.command().map(classify_command) == Some(expected)
        && read_back.blob == key.blob
        && name_of(&read_back) == Some(name);
    if intact {
        Ok(line)
    } else {
        Err(unwritable("policy", policy))
    }
}

/// What a key line does, in a few words, for messages.
pub fn describe_line(key: &KeyLine) -> String {
    let condition = key.options.iter().find_map(|option| match option {
        KeyOption::From(from) => Some(format!(", only from {from}")),
        KeyOption::ExpiryTime(time) => Some(format!(", until {time}")),
        _ => None,
    });
    let what = match key.command().map(classify_command) {
        Some(ForcedCommand::Gate { policy, .. }) => {
            format!("borg-gate with policy {}", policy.display())
        }
        Some(ForcedCommand::Serve { program, .. }) => format!("{program} serve"),
        Some(ForcedCommand::ServeRest { program, .. }) => format!("{program} serve --rest"),
        Some(_) => {
            let command = key.command().unwrap_or_default();
            let shown: String = command.chars().take(60).collect();
            if shown.len() < command.len() {
                format!("forced command `{shown}...`")
            } else {
                format!("forced command `{shown}`")
            }
        }
        None => "no forced command: a shell".to_owned(),
    };
    format!("{what}{}", condition.unwrap_or_default())
}

/// Appending `line` for `key` named `name`, unless the key or the name is in the file.
pub fn plan_add(existing: &[u8], key: &PublicKey, name: &str, line: &str) -> Result<Edit, Refusal> {
    let text = String::from_utf8_lossy(existing);
    let entries = parse_file(&text);
    for entry in &entries {
        if let Entry::Key(present) = entry {
            if present.blob == key.blob {
                return Err(Refusal::KeyPresent {
                    line: present.line,
                    what: describe_line(present),
                });
            }
        }
    }
    // A line sshd cannot read may still hold the key (bad options, say): look for its text.
    for (index, raw) in split_lines(existing).iter().enumerate() {
        let raw = String::from_utf8_lossy(raw);
        let holds_key = raw
            .split([' ', '\t', '\r', '\n'])
            .any(|word| word == key.encoded);
        let is_key_line = entries
            .iter()
            .any(|entry| matches!(entry, Entry::Key(k) if k.line == index + 1));
        if holds_key && !is_key_line && !raw.trim_start().starts_with('#') {
            return Err(Refusal::KeyPresent {
                line: index + 1,
                what: "a line sshd cannot use as it stands".to_owned(),
            });
        }
    }
    for entry in &entries {
        if let Entry::Key(present) = entry {
            if name_of(present) == Some(name) {
                return Err(Refusal::NameInFile {
                    name: name.to_owned(),
                    line: present.line,
                });
            }
        }
    }
    Ok(Edit {
        remove: Vec::new(),
        append: vec![line.to_owned()],
    })
}

/// Which key lines `keys remove` drops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Name(String),
    /// `SHA256:...`, with or without the prefix.
    Fingerprint(String),
}

/// A removal: the edit, and what the removed lines pointed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub edit: Edit,
    /// The removed lines, as `ssh-keygen -l` would name their keys.
    pub removed: Vec<(usize, String)>,
    /// Policies of removed borg-gate lines that no remaining line uses.
    pub orphaned_policies: Vec<PathBuf>,
    /// Policies of removed lines that remaining lines still use (kept by `--purge`).
    pub shared_policies: Vec<PathBuf>,
}

fn gate_policy(key: &KeyLine) -> Option<PathBuf> {
    match key.command().map(classify_command) {
        Some(ForcedCommand::Gate { policy, .. }) => Some(policy),
        _ => None,
    }
}

pub fn plan_remove(existing: &[u8], selector: &Selector) -> Result<Removal, Refusal> {
    let text = String::from_utf8_lossy(existing);
    let keys: Vec<KeyLine> = parse_file(&text)
        .into_iter()
        .filter_map(|entry| match entry {
            Entry::Key(key) => Some(key),
            Entry::Broken { .. } => None,
        })
        .collect();
    let wanted = |key: &KeyLine| match selector {
        Selector::Name(name) => name_of(key) == Some(name.as_str()),
        Selector::Fingerprint(fingerprint) => {
            let bare = fingerprint.strip_prefix("SHA256:").unwrap_or(fingerprint);
            sha256_fingerprint(&key.blob).strip_prefix("SHA256:") == Some(bare)
        }
    };
    let (removed, kept): (Vec<&KeyLine>, Vec<&KeyLine>) = keys.iter().partition(|k| wanted(k));
    if removed.is_empty() {
        return Err(match selector {
            Selector::Name(name) => Refusal::NoSuchName(name.clone()),
            Selector::Fingerprint(fingerprint) => Refusal::NoSuchFingerprint(fingerprint.clone()),
        });
    }
    let still_used: Vec<PathBuf> = kept.iter().filter_map(|k| gate_policy(k)).collect();
    let mut orphaned_policies = Vec::new();
    let mut shared_policies = Vec::new();
    for policy in removed.iter().filter_map(|k| gate_policy(k)) {
        let list = if still_used.contains(&policy) {
            &mut shared_policies
        } else {
            &mut orphaned_policies
        };
        if !list.contains(&policy) {
            list.push(policy);
        }
    }
    Ok(Removal {
        edit: Edit {
            remove: removed.iter().map(|k| k.line).collect(),
            append: Vec::new(),
        },
        removed: removed
            .iter()
            .map(|k| {
                (
                    k.line,
                    super::fingerprint::keygen_line(&k.key_type, &k.blob, &k.comment),
                )
            })
            .collect(),
        orphaned_policies,
        shared_policies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::keys::public_key::read_public_key;

    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDvoPSbZwlcGhmUgC1ycT88UyNeOXQD8AU7m+J59iR4I";
    const OTHER: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINUNIH1taSZ74L2ixhuu3E1xrMnRlkQnBUi7WCl7x7hP";
    const GATE: &str = "/usr/bin/borg-gate";

    fn key(text: &str) -> PublicKey {
        read_public_key(text.as_bytes()).unwrap()
    }

    fn line(policy: &str, name: &str) -> String {
        forced_line(
            Path::new(GATE),
            Path::new(policy),
            &key(&format!("{ED25519} alice@laptop")),
            name,
        )
        .unwrap()
    }

    #[test]
    fn the_forced_line_is_what_the_issue_asks_for() {
        assert_eq!(
            line("/etc/borg-gate/keys/alice.toml", "alice"),
            format!(
                "command=\"/usr/bin/borg-gate --policy /etc/borg-gate/keys/alice.toml\",restrict {ED25519} borg-gate:alice alice@laptop"
            )
        );
        // Quoting for the shell, and `\"` for authorized_keys, read back as the same path.
        let odd = line("/etc/borg gate/a's $x.toml", "a");
        match parse_line(1, &odd) {
            Some(Entry::Key(parsed)) => assert_eq!(
                parsed.command().map(classify_command),
                Some(ForcedCommand::Gate {
                    program: GATE.into(),
                    policy: "/etc/borg gate/a's $x.toml".into(),
                    tilde_expanded: false,
                    name: None,
                })
            ),
            other => panic!("{odd}: {other:?}"),
        }
        let bare = forced_line(Path::new(GATE), Path::new("/p.toml"), &key(ED25519), "b").unwrap();
        assert!(bare.ends_with(" borg-gate:b"), "{bare}");
    }

    #[test]
    fn paths_that_do_not_survive_authorized_keys_are_refused() {
        for policy in [
            "relative.toml",
            "/a\"b.toml",
            "/a\\b.toml",
            "/a\nb.toml",
            "/a\rb",
        ] {
            let result = forced_line(Path::new(GATE), Path::new(policy), &key(ED25519), "n");
            assert!(matches!(result, Err(Refusal::Unwritable(_))), "{policy:?}");
        }
    }

    #[test]
    fn names_are_plain_labels() {
        for good in ["a", "alice-laptop", "x.y_z@host", "0", &"a".repeat(64)] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            ".hidden",
            "-x",
            "a b",
            "a/b",
            "../x",
            "é",
            &"a".repeat(65),
            "a\n",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_are_read_from_the_first_word_of_the_comment() {
        let read = |comment: &str| {
            let text = format!("{ED25519} {comment}");
            match parse_line(1, &text) {
                Some(Entry::Key(k)) => name_of(&k).map(str::to_owned),
                _ => panic!(),
            }
        };
        assert_eq!(read("borg-gate:alice"), Some("alice".into()));
        assert_eq!(read("borg-gate:alice alice@laptop"), Some("alice".into()));
        assert_eq!(read("alice@laptop borg-gate:alice"), None);
        assert_eq!(read("borg-gate:"), None);
        assert_eq!(read(""), None);
    }

    #[test]
    fn a_key_already_present_is_refused_whatever_its_line_does() {
        let new = key(&format!("{ED25519} new"));
        let cases = [
            (format!("{ED25519}\n"), 1, "no forced command: a shell"),
            (
                format!("# c\n\n{OTHER}\r\ncommand=\"rsync --server\" {ED25519} x"),
                4,
                "forced command `rsync --server`",
            ),
            (
                format!("from=\"192.0.2.1\",command=\"/usr/bin/borg serve\" {ED25519}\n"),
                1,
                "/usr/bin/borg serve, only from 192.0.2.1",
            ),
            (
                format!("{}\n", line("/etc/p.toml", "old")),
                1,
                "borg-gate with policy /etc/p.toml",
            ),
            (
                format!("{OTHER}\nrestrickt {ED25519}\n"),
                2,
                "a line sshd cannot use as it stands",
            ),
            (
                format!("expiry-time=\"20300101\" {ED25519}\n"),
                1,
                "no forced command: a shell, until 20300101",
            ),
        ];
        for (text, line_number, what) in cases {
            assert_eq!(
                plan_add(text.as_bytes(), &new, "n", "LINE"),
                Err(Refusal::KeyPresent {
                    line: line_number,
                    what: what.to_owned()
                }),
                "{text}"
            );
        }
        // A commented-out copy does not count.
        let commented = format!("# {ED25519}\n");
        assert!(plan_add(commented.as_bytes(), &new, "n", "LINE").is_ok());
    }

    #[test]
    fn a_name_in_use_is_refused_and_the_line_is_appended_otherwise() {
        let other = key(OTHER);
        let text = format!("# keys\n{}\n", line("/etc/p.toml", "alice"));
        assert_eq!(
            plan_add(text.as_bytes(), &other, "alice", "LINE"),
            Err(Refusal::NameInFile {
                name: "alice".into(),
                line: 2
            })
        );
        let edit = plan_add(text.as_bytes(), &other, "bob", "LINE").unwrap();
        assert_eq!(edit.append, ["LINE"]);
        assert!(edit.remove.is_empty());
    }

    #[test]
    fn removal_by_name_or_fingerprint_finds_the_lines_and_their_policies() {
        let alice = line("/etc/a.toml", "alice");
        let bob = forced_line(
            Path::new(GATE),
            Path::new("/etc/shared.toml"),
            &key(OTHER),
            "bob",
        )
        .unwrap();
        let text = format!(
            "# keys\n{alice}\r\n\n{bob}\nfrom=\"192.0.2.9\",command=\"{GATE} --policy /etc/shared.toml\" {ED25519} carol"
        );
        let removal = plan_remove(text.as_bytes(), &Selector::Name("alice".into())).unwrap();
        assert_eq!(removal.edit.remove, [2]);
        assert_eq!(removal.orphaned_policies, [PathBuf::from("/etc/a.toml")]);
        assert!(removal.shared_policies.is_empty());
        assert!(
            removal.removed[0].1.starts_with(
                "256 SHA256:g3vd3Y3Wingr7aFJtX5o321r+kGYb5bz0LylFDK0cjY borg-gate:alice"
            )
        );

        for fingerprint in [
            "SHA256:g3vd3Y3Wingr7aFJtX5o321r+kGYb5bz0LylFDK0cjY",
            "g3vd3Y3Wingr7aFJtX5o321r+kGYb5bz0LylFDK0cjY",
        ] {
            let removal =
                plan_remove(text.as_bytes(), &Selector::Fingerprint(fingerprint.into())).unwrap();
            assert_eq!(removal.edit.remove, [2, 5]);
            assert_eq!(removal.orphaned_policies, [PathBuf::from("/etc/a.toml")]);
            assert_eq!(removal.shared_policies, [PathBuf::from("/etc/shared.toml")]);
        }
        assert_eq!(
            plan_remove(text.as_bytes(), &Selector::Name("dave".into())),
            Err(Refusal::NoSuchName("dave".into()))
        );
        assert_eq!(
            plan_remove(
                text.as_bytes(),
                &Selector::Fingerprint("SHA256:nope".into())
            ),
            Err(Refusal::NoSuchFingerprint("SHA256:nope".into()))
        );
    }

    proptest::proptest! {
        #[test]
        fn planning_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let new = key(ED25519);
            let _ = plan_add(&bytes, &new, "n", "LINE");
            let _ = plan_remove(&bytes, &Selector::Name("n".into()));
        }
    }
}
