//! Every manual page renders with `man --warnings -l` without a single warning, says what it
//! must, and uses roff quoting that keeps the words it means to keep.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Every page in `man/`.
fn pages() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    pages.sort();
    assert!(pages.len() >= 2, "no pages in {}", dir.display());
    pages
}

/// The page as `man --warnings -l` renders it (plain text), and what it warned.
fn render(path: &Path) -> Option<(String, String)> {
    let output = Command::new("man")
        .arg("--warnings")
        .arg("-l")
        .arg(path)
        .env("MANWIDTH", "80")
        .env("LC_ALL", "C.UTF-8")
        .env("MAN_KEEP_FORMATTING", "0")
        .output();
    match output {
        Ok(output) => {
            assert!(
                output.status.success(),
                "man -l {} failed: {}",
                path.display(),
                String::from_utf8_lossy(&output.stderr)
            );
            Some((
                plain_text(&String::from_utf8_lossy(&output.stdout)),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            ))
        }
        Err(error) => support::unavailable(&format!("man cannot run ({error})")),
    }
}

/// Drops overstrike formatting (`X\x08X` for bold, `_\x08X` for underline).
fn plain_text(text: &str) -> String {
    let mut out: Vec<char> = Vec::with_capacity(text.len());
    for c in text.chars() {
        if c == '\x08' {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out.into_iter().collect()
}

fn page(name: &str) -> Option<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("man").join(name);
    let (text, warnings) = render(&path)?;
    assert_eq!(warnings, "", "warnings from man --warnings -l {name}");
    Some(text)
}

#[test]
fn every_page_renders_without_warnings() {
    for path in pages() {
        let Some((text, warnings)) = render(&path) else {
            return;
        };
        assert_eq!(warnings, "", "man --warnings -l {}", path.display());
        assert!(
            text.len() > 1000,
            "{} rendered almost nothing",
            path.display()
        );
    }
}

/// The words of a roff request line, with roff's quoting: a `"` opens a quoted argument
/// only at the start of one; anywhere else it is a literal character.
fn roff_arguments(line: &str) -> Vec<(String, bool)> {
    let mut arguments = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == ' ' {
            chars.next();
            continue;
        }
        let mut word = String::new();
        let quoted = c == '"';
        if quoted {
            chars.next();
            while let Some(c) = chars.next() {
                match (c, chars.peek()) {
                    ('"', Some('"')) => {
                        word.push('"');
                        chars.next();
                    }
                    ('"', _) => break,
                    _ => word.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        arguments.push((word, quoted));
    }
    arguments
}

/// `.RB ( command="BORG_X=1 borg-gate ..." ).` renders `command="BORG_X=1borg-gate...").`:
/// the quote inside the second word is literal, so the words run together. Alternating-font
/// macros must quote a whole argument or write `\(dq`.
#[test]
fn alternating_font_macros_never_have_a_quote_inside_an_argument() {
    let mut problems = Vec::new();
    for path in pages() {
        let text = std::fs::read_to_string(&path).unwrap();
        for (number, line) in text.lines().enumerate() {
            let Some(rest) = [".BR ", ".RB ", ".IR ", ".RI ", ".BI ", ".IB "]
                .iter()
                .find_map(|macro_| line.strip_prefix(macro_))
            else {
                continue;
            };
            for (word, quoted) in roff_arguments(rest) {
                if !quoted && word.contains('"') {
                    problems.push(format!("{}:{}: {line}", path.display(), number + 1));
                }
            }
        }
    }
    assert_eq!(problems, Vec::<String>::new());
}

/// A page written through a string that interpreted `\f` as a form feed renders its font
/// escapes as garbage (`key_quota = R"IsizeR"`) without any warning from man: roff sources
/// hold no control character but newline.
#[test]
fn page_sources_hold_no_control_characters() {
    let mut problems = Vec::new();
    for path in pages() {
        let text = std::fs::read_to_string(&path).unwrap();
        for (number, line) in text.lines().enumerate() {
            if let Some(control) = line.chars().find(|c| c.is_control()) {
                problems.push(format!(
                    "{}:{}: {control:?} in {line:?}",
                    path.display(),
                    number + 1
                ));
            }
        }
    }
    assert_eq!(problems, Vec::<String>::new());
}

#[test]
fn the_roff_argument_reader_follows_roff() {
    assert_eq!(
        roff_arguments("( \"a b\" ).\n"),
        [
            ("(".to_owned(), false),
            ("a b".to_owned(), true),
            (").\n".to_owned(), false)
        ]
    );
    assert_eq!(
        roff_arguments("( command=\"X=1 borg\" )"),
        [
            ("(".to_owned(), false),
            ("command=\"X=1".to_owned(), false),
            ("borg\"".to_owned(), false),
            (")".to_owned(), false)
        ]
    );
}

#[test]
fn borg_gate_1_covers_every_command_and_the_new_options() {
    let Some(text) = page("borg-gate.1") else {
        return;
    };
    for needle in [
        "GATE MODE",
        "COMMANDS",
        "EXIT STATUS",
        "serve",
        "serve --rest --backend FILE:PATH",
        "--restrict-to-repository",
        "--permissions all|no-delete|write-only|read-only",
        "--storage-quota",
        "--idle-timeout",
        "--lock-release",
        "--lock-fence",
        "--no-fsync",
        "BORG_REPO_PERMISSIONS",
        "explain",
        "check-policy",
        "borg-gate --policy FILE [--name NAME]",
        "check-policy [--name NAME] [--user ACCOUNT] FILE...",
        "shared_with",
        "keys add",
        "keys list",
        "keys remove",
        "completions",
        "status",
        "--max-age",
        "borg_gate_repository_last_commit_timestamp_seconds",
        "client.protocols",
        "engine.borg2_program",
        "PathNotAllowed",
        "SESSION RECORDS",
        "session_end",
        "--session-id=ID",
        "--audit-file=FILE",
        "--metrics-textfile=FILE",
        "borg_gate_session_end_total{policy,end}",
        "borg_gate_append_only_objects_deleted_total{policy}",
        "RECOVERING DELETES",
        "alert-rules",
    ] {
        assert!(text.contains(needle), "borg-gate(1) lacks {needle:?}");
    }
}

#[test]
fn borg_gate_policy_5_covers_every_key_and_renders_the_forced_command_whole() {
    let Some(text) = page("borg-gate-policy.5") else {
        return;
    };
    for key in [
        "restrict_to_paths",
        "pass_env",
        "unknown_options",
        "on_failure",
        "idle_timeout",
        "permissions",
        "lock_wait",
        "shared_with",
        "{name}",
        "protocols = [ \"borg1\", \"borg2\" ]",
        "borg2_program",
        "permissions = \"all\" | \"no-delete\" | \"write-only\" | \"read-only\"",
        "lock_release",
        "borg2-client.toml",
        "session_id",
        "SESSION RECORDS",
    ] {
        assert!(text.contains(key), "borg-gate-policy(5) lacks {key}");
    }
    assert!(
        text.contains("(command=\"BORG_X=1 borg-gate ...\")"),
        "the pass_env example lost its space:\n{text}"
    );
}

/// The SESSION RECORDS section of borg-gate(1), as roff source (rendering may hyphenate).
fn session_records_source() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("man/borg-gate.1");
    let source = std::fs::read_to_string(path).unwrap();
    let start = source
        .find(".SH SESSION RECORDS")
        .expect("a SESSION RECORDS section");
    let end = source[start + 1..]
        .find("\n.SH ")
        .map_or(source.len(), |end| start + 1 + end);
    source[start..end].to_owned()
}

#[test]
fn the_session_records_section_names_every_end_and_refusal_reason_the_engines_write() {
    use borg_gate::audit::session_end::End;
    use borg_gate::engine::reporting::Unaudited;
    use borg_gate::engine::tally::reason;
    let section = session_records_source();
    let words = End::LABELS.iter().copied().chain([
        reason::READ_ONLY,
        reason::APPEND_ONLY,
        reason::PATH_NOT_ALLOWED,
        reason::UNTRUSTED_PATH,
        reason::QUOTA,
        reason::FENCED,
        Unaudited::CLASS,
        "ProtocolError",
        "UnexpectedRPCDataFormatFromClient",
        "lock_releases",
        "rolled_back",
        "lock_wait_s",
    ]);
    for word in words {
        let roff = word.replace('-', "\\-");
        assert!(
            section.contains(&roff),
            "SESSION RECORDS does not name {word:?}"
        );
    }
}
