//! Reading SSH_ORIGINAL_COMMAND: bounded, control-character free, split with POSIX shell
//! word rules (shlex), and never given to a shell.
//!
//! Bidirectional controls and the Unicode line and paragraph separators are refused like
//! control characters: stored or printed, they make a line read differently from what it
//! holds (U+202E reverses what follows; U+2028 starts a new line in some viewers), and
//! no borg client sends them. Where client text must still be shown (a command that could not
//! be split, old audit records), [`visible`] escapes both kinds.
//!
//! Shell metacharacters (`;`, `&&`, `|`, `$(`, backticks) stay ordinary characters inside
//! words; the option parser then refuses any word it does not know.

use std::fmt;

use super::options::printable;

/// The longest command accepted. Real borg clients send well under 200 bytes.
pub(crate) const MAX_COMMAND_LEN: usize = 4096;

/// Why a command string could not be split into words. Each is one sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitError {
    TooLong(usize),
    NotUtf8,
    ControlCharacter {
        byte: u8,
        position: usize,
    },
    /// A bidirectional control or a line/paragraph separator (see [`is_invisible_format`]).
    FormatCharacter {
        character: char,
        position: usize,
    },
    UnbalancedQuotes,
    /// POSIX shells drop an unquoted `#...` as a comment; borg's Python splitter does not,
    /// so such a command would mean different things to different readers.
    Comment,
    Empty,
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SplitError::TooLong(len) => {
                write!(
                    f,
                    "the command is {len} bytes long; the limit is {MAX_COMMAND_LEN}"
                )
            }
            SplitError::NotUtf8 => f.write_str("the command is not valid UTF-8"),
            SplitError::ControlCharacter { byte, position } => write!(
                f,
                "the command contains the control character 0x{byte:02x} at byte {position}"
            ),
            SplitError::FormatCharacter {
                character,
                position,
            } => write!(
                f,
                "the command contains the {} U+{:04X} at byte {position}",
                format_character_kind(*character),
                u32::from(*character)
            ),
            SplitError::UnbalancedQuotes => {
                f.write_str("the command has an unbalanced quote or a trailing backslash")
            }
            SplitError::Comment => f.write_str("the command contains an unquoted '#' comment"),
            SplitError::Empty => f.write_str("the command is empty"),
        }
    }
}

impl std::error::Error for SplitError {}

/// Splits a command string into words, refusing anything a shell could read differently.
pub(crate) fn split_command(raw: &[u8]) -> Result<Vec<String>, SplitError> {
    if raw.len() > MAX_COMMAND_LEN {
        return Err(SplitError::TooLong(raw.len()));
    }
    if let Some(position) = raw.iter().position(|&b| is_forbidden_control(b)) {
        return Err(SplitError::ControlCharacter {
            byte: raw[position],
            position,
        });
    }
    let text = std::str::from_utf8(raw).map_err(|_| SplitError::NotUtf8)?;
    if let Some((position, c)) = text
        .char_indices()
        .find(|(_, c)| c.is_control() && *c != '\t')
    {
        // C1 controls (U+0080..U+009F) survive the byte check as two-byte sequences.
        return Err(SplitError::ControlCharacter {
            byte: (c as u32).min(0xff) as u8,
            position,
        });
    }
    if let Some((position, character)) = text.char_indices().find(|(_, c)| is_invisible_format(*c))
    {
        return Err(SplitError::FormatCharacter {
            character,
            position,
        });
    }
    let words = shlex::split(text).ok_or(SplitError::UnbalancedQuotes)?;
    let hashes_in = text.matches('#').count();
    let hashes_out: usize = words.iter().map(|w| w.matches('#').count()).sum();
    if hashes_out != hashes_in {
        return Err(SplitError::Comment);
    }
    if words.is_empty() {
        return Err(SplitError::Empty);
    }
    Ok(words)
}

fn is_forbidden_control(byte: u8) -> bool {
    (byte < 0x20 && byte != b'\t') || byte == 0x7f
}

/// Unicode's bidirectional controls (the `Bidi_Control` property: U+061C, U+200E, U+200F,
/// U+202A..U+202E, U+2066..U+2069) and the line and paragraph separators U+2028, U+2029.
pub(crate) fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

fn format_character_kind(c: char) -> &'static str {
    match c {
        '\u{2028}' => "line separator",
        '\u{2029}' => "paragraph separator",
        _ => "bidirectional control",
    }
}

/// `text` with control characters and [`is_invisible_format`] characters written as `\u{..}`
/// escapes, so that client text can be stored and printed without reordering or breaking the
/// line it is shown on. Everything else, other Unicode included, is kept.
pub(crate) fn visible(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || is_invisible_format(c) {
            out.push_str(&format!("\\u{{{:04x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// A leading `NAME=value` word, as a POSIX shell would take an assignment.
pub(crate) fn assignment_name(word: &str) -> Option<&str> {
    let (name, _) = word.split_once('=')?;
    crate::policy::validate::is_env_name(name).then_some(name)
}

/// The words with leading assignments removed, and the names (never the values) removed.
pub(crate) fn strip_assignments(words: &[String]) -> (Vec<String>, &[String]) {
    let mut names = Vec::new();
    let mut rest = words;
    while let Some((first, tail)) = rest.split_first() {
        match assignment_name(first) {
            Some(name) => {
                names.push(name.to_owned());
                rest = tail;
            }
            None => break,
        }
    }
    (names, rest)
}

/// The command for logs and audit records, with assignment values replaced, so that a
/// passphrase a client put there is never stored.
pub(crate) fn redacted_words(words: &[String]) -> Vec<String> {
    let (names, rest) = strip_assignments(words);
    names
        .iter()
        .map(|name| format!("{name}=<redacted>"))
        .chain(rest.iter().cloned())
        .collect()
}

/// Redaction of a raw command that could not be split into words. Without words there is no
/// telling where a quoted value ends, so everything from the first `=` on is withheld.
pub(crate) fn redact_unsplit(raw: &str) -> String {
    match raw.find('=') {
        None => printable_long(raw),
        Some(cut) => printable_long(&format!(
            "{}=<redacted; {} bytes in all>",
            &raw[..cut],
            raw.len()
        )),
    }
}

/// Keeps audit records bounded and readable: long commands are cut with a marker, and
/// control and bidirectional characters are escaped ([`visible`]).
fn printable_long(text: &str) -> String {
    const LIMIT: usize = 1024;
    if text.len() <= LIMIT {
        return visible(text);
    }
    let mut cut = LIMIT;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...[{} bytes in all]", visible(&text[..cut]), text.len())
}

/// Words joined for display the way a shell user would type them: quoted only when a word
/// holds characters a shell would treat specially.
pub(crate) fn display_words(words: &[String]) -> String {
    fn plain(word: &str) -> bool {
        let word = word.strip_suffix("=<redacted>").map_or(word, |name| name);
        !word.is_empty()
            && word
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b))
    }
    words
        .iter()
        .map(|word| {
            if plain(word) {
                word.clone()
            } else {
                format!("'{}'", word.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The program word compared by basename: `/usr/bin/borg` is `borg`.
pub(crate) fn program_basename(program: &str) -> &str {
    program.rsplit('/').next().unwrap_or(program)
}

/// A short quoted rendering of a client word for refusal messages.
pub(crate) fn quoted(word: &str) -> String {
    format!("{:?}", printable(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str) -> Result<Vec<String>, SplitError> {
        split_command(text.as_bytes())
    }

    #[test]
    fn splits_like_a_posix_shell() {
        assert_eq!(
            split("borg serve --info").unwrap(),
            ["borg", "serve", "--info"]
        );
        assert_eq!(split("  borg\tserve  ").unwrap(), ["borg", "serve"]);
        assert_eq!(split("'borg' \"serve\"").unwrap(), ["borg", "serve"]);
        assert_eq!(split("borg se\\rve").unwrap(), ["borg", "serve"]);
        assert_eq!(split("a 'b c' \"d\\\"e\"").unwrap(), ["a", "b c", "d\"e"]);
    }

    #[test]
    fn metacharacters_are_ordinary_characters() {
        assert_eq!(
            split("borg serve; rm -rf /").unwrap(),
            ["borg", "serve;", "rm", "-rf", "/"]
        );
        assert_eq!(
            split("borg serve && id").unwrap(),
            ["borg", "serve", "&&", "id"]
        );
        assert_eq!(
            split("borg serve | sh").unwrap(),
            ["borg", "serve", "|", "sh"]
        );
        assert_eq!(split("borg $(id) `id`").unwrap(), ["borg", "$(id)", "`id`"]);
        assert_eq!(
            split("borg serve > /etc/passwd").unwrap(),
            ["borg", "serve", ">", "/etc/passwd"]
        );
    }

    #[test]
    fn refuses_control_characters() {
        assert_eq!(
            split("borg serve\n"),
            Err(SplitError::ControlCharacter {
                byte: b'\n',
                position: 10
            })
        );
        assert_eq!(
            split("borg\0serve"),
            Err(SplitError::ControlCharacter {
                byte: 0,
                position: 4
            })
        );
        assert_eq!(
            split("borg\rserve"),
            Err(SplitError::ControlCharacter {
                byte: b'\r',
                position: 4
            })
        );
        assert_eq!(
            split("borg \x1b[2J"),
            Err(SplitError::ControlCharacter {
                byte: 0x1b,
                position: 5
            })
        );
        assert_eq!(
            split("borg \x7f"),
            Err(SplitError::ControlCharacter {
                byte: 0x7f,
                position: 5
            })
        );
        assert_eq!(
            split("borg \u{85}"),
            Err(SplitError::ControlCharacter {
                byte: 0x85,
                position: 5
            })
        );
    }

    #[test]
    fn refuses_bidirectional_controls_and_line_separators_like_control_characters() {
        let refused = [
            '\u{061C}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}',
            '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{2028}', '\u{2029}',
        ];
        for c in refused {
            for (text, position) in [
                (format!("borg serve{c}"), 10),
                (format!("{c}borg serve"), 0),
                (format!("borg serve '--debug-topic=x{c}'"), 27),
            ] {
                assert_eq!(
                    split(&text),
                    Err(SplitError::FormatCharacter {
                        character: c,
                        position
                    }),
                    "{text:?}"
                );
            }
        }
        let message = split("borg serve --info\u{202e}").unwrap_err().to_string();
        assert_eq!(
            message,
            "the command contains the bidirectional control U+202E at byte 17"
        );
        assert!(!message.contains('\u{202e}'));
        assert_eq!(
            split("borg\u{2028}serve").unwrap_err().to_string(),
            "the command contains the line separator U+2028 at byte 4"
        );
        assert_eq!(
            split("borg\u{2029}").unwrap_err().to_string(),
            "the command contains the paragraph separator U+2029 at byte 4"
        );
        // Neighbours that are ordinary characters stay allowed.
        for c in [
            '\u{200D}', '\u{2027}', '\u{202F}', '\u{2065}', '\u{206A}', '\u{061B}',
        ] {
            assert!(
                split(&format!("borg serve --debug-topic={c}")).is_ok(),
                "{c:?}"
            );
        }
    }

    #[test]
    fn visible_escapes_controls_and_bidirectional_characters_only() {
        assert_eq!(
            visible("a\u{202e}b\nc\u{2028}"),
            "a\\u{202e}b\\u{000a}c\\u{2028}"
        );
        assert_eq!(visible("répo ünï \u{1f600}"), "répo ünï \u{1f600}");
        assert_eq!(
            redact_unsplit("borg '\u{202e}serve"),
            "borg '\\u{202e}serve"
        );
        let long = format!("{}\u{2066}", "a".repeat(2000));
        assert!(!redact_unsplit(&long).contains('\u{2066}'));
    }

    #[test]
    fn refuses_unbalanced_quotes_and_trailing_backslash() {
        assert_eq!(split("borg 'serve"), Err(SplitError::UnbalancedQuotes));
        assert_eq!(split("borg \"serve"), Err(SplitError::UnbalancedQuotes));
        assert_eq!(split("borg serve \\"), Err(SplitError::UnbalancedQuotes));
    }

    #[test]
    fn refuses_comments_but_not_quoted_hashes() {
        assert_eq!(split("borg serve #--append-only"), Err(SplitError::Comment));
        assert_eq!(split("# borg serve"), Err(SplitError::Comment));
        assert_eq!(split("borg serve '#x'").unwrap(), ["borg", "serve", "#x"]);
        assert_eq!(split("borg serve a#b").unwrap(), ["borg", "serve", "a#b"]);
        assert_eq!(split("borg serve \\#x").unwrap(), ["borg", "serve", "#x"]);
    }

    #[test]
    fn refuses_oversized_and_empty_and_invalid_utf8() {
        let huge = format!("borg serve {}", "x".repeat(100 * 1024));
        assert_eq!(split(&huge), Err(SplitError::TooLong(huge.len())));
        assert_eq!(split("   "), Err(SplitError::Empty));
        assert_eq!(split(""), Err(SplitError::Empty));
        assert_eq!(split_command(b"borg \xff"), Err(SplitError::NotUtf8));
    }

    #[test]
    fn accepts_unicode_words() {
        assert_eq!(
            split("borg serve --debug-topic=répo").unwrap(),
            ["borg", "serve", "--debug-topic=répo"]
        );
    }

    #[test]
    fn strips_leading_assignments_and_keeps_names_only() {
        let words: Vec<String> = ["BORG_PASSPHRASE=secret", "A=1", "borg", "X=2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (names, rest) = strip_assignments(&words);
        assert_eq!(names, ["BORG_PASSPHRASE", "A"]);
        assert_eq!(rest, ["borg", "X=2"]);
        assert_eq!(
            redacted_words(&words),
            ["BORG_PASSPHRASE=<redacted>", "A=<redacted>", "borg", "X=2"]
        );
    }

    #[test]
    fn non_identifier_assignments_are_not_assignments() {
        assert_eq!(assignment_name("--lock-wait=5"), None);
        assert_eq!(assignment_name("1A=x"), None);
        assert_eq!(assignment_name("=x"), None);
        assert_eq!(assignment_name("A-B=x"), None);
        assert_eq!(assignment_name("_A9="), Some("_A9"));
    }

    #[test]
    fn unsplittable_commands_are_redacted_word_by_word() {
        assert_eq!(
            redact_unsplit("BORG_PASSPHRASE='my s3cret borg serve"),
            "BORG_PASSPHRASE=<redacted; 37 bytes in all>"
        );
        assert_eq!(redact_unsplit("borg 'serve"), "borg 'serve");
        let long = "a".repeat(5000);
        assert!(redact_unsplit(&long).ends_with("[5000 bytes in all]"));
    }

    #[test]
    fn display_quotes_only_where_a_shell_needs_it() {
        let words: Vec<String> = ["BORG_X=<redacted>", "--lock-wait=5", "a b", "it's", "", ">"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            display_words(&words),
            "BORG_X=<redacted> --lock-wait=5 'a b' 'it'\\''s' '' '>'"
        );
        assert_eq!(
            split_command(display_words(&words[1..]).as_bytes()).unwrap(),
            &words[1..]
        );
    }

    #[test]
    fn basename_of_program() {
        assert_eq!(program_basename("/usr/bin/borg"), "borg");
        assert_eq!(program_basename("borg1"), "borg1");
        assert_eq!(program_basename("/"), "");
    }
}
