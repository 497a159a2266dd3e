//! The table of every option borg 1.x `borg serve` accepts, and an argparse-compatible parser.
//!
//! The parser accepts the spellings Python's argparse accepts for borg's parsers: `--opt=value`,
//! `--opt value`, unambiguous long prefixes, clusters of short flags (`-vp`), and `--`.
//! Common options may also stand before the `serve` subcommand, as in borg. It only
//! recognises; what to do with each option is the caller's business.

use std::fmt;

use crate::policy::LogLevel;

/// What an option means to the gate and the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OptionKind {
    /// `--debug`, `--info`/`-v`/`--verbose`, `--warning`, `--error`, `--critical`.
    LogLevel(LogLevel),
    DebugTopic,
    LockWait,
    RestrictToPath,
    RestrictToRepository,
    AppendOnly,
    StorageQuota,
    Umask,
    /// borg-gate engine extensions (only on `borg-gate serve`'s own command line).
    Permissions,
    IdleTimeout,
    MaxLockWait,
    KeyQuota,
    KeyQuotaLedger,
    RequestTimeout,
    SessionLimit,
    AllowLockBypass,
    /// What the engine reports when a session ends: the gate's session id, the policy's name,
    /// the audit sinks and the metrics textfile (see `engine::reporting`).
    SessionId,
    PolicyName,
    AuditFile,
    AuditSyslog,
    AuditOnFailure,
    MetricsTextfile,
    /// Accepted by borg's parser but meaningless for a server (`--progress`, `--show-rc`,
    /// `--remote-path`, ...).
    Inert,
    /// `-h`/`--help`: argparse would print help and exit instead of serving.
    Help,
    /// `-V`/`--version` before the subcommand: argparse would print the version and exit.
    Version,
}

/// Where argparse accepts an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Before and after the subcommand (borg's common options).
    Common,
    /// Only after `serve`.
    Serve,
    /// Only before the subcommand.
    Main,
    /// Only on borg-gate's own `serve` command line, never from a client.
    Extension,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct OptionSpec {
    /// Long spellings, canonical first.
    pub long: &'static [&'static str],
    pub short: Option<char>,
    pub takes_value: bool,
    pub kind: OptionKind,
    pub scope: Scope,
}

impl OptionSpec {
    pub(crate) fn canonical(&self) -> &'static str {
        self.long[0]
    }
}

const fn flag(
    long: &'static [&'static str],
    short: Option<char>,
    kind: OptionKind,
    scope: Scope,
) -> OptionSpec {
    OptionSpec {
        long,
        short,
        takes_value: false,
        kind,
        scope,
    }
}

const fn valued(long: &'static [&'static str], kind: OptionKind, scope: Scope) -> OptionSpec {
    OptionSpec {
        long,
        short: None,
        takes_value: true,
        kind,
        scope,
    }
}

use OptionKind as K;
use Scope as S;

/// borg 1.4.5's common options (`define_common_options`), the `serve` options, `-V`, and
/// borg-gate's engine extensions.
pub(crate) static OPTION_TABLE: &[OptionSpec] = &[
    flag(&["--help"], Some('h'), K::Help, S::Common),
    flag(
        &["--critical"],
        None,
        K::LogLevel(LogLevel::Critical),
        S::Common,
    ),
    flag(&["--error"], None, K::LogLevel(LogLevel::Error), S::Common),
    flag(
        &["--warning"],
        None,
        K::LogLevel(LogLevel::Warning),
        S::Common,
    ),
    flag(
        &["--info", "--verbose"],
        Some('v'),
        K::LogLevel(LogLevel::Info),
        S::Common,
    ),
    flag(&["--debug"], None, K::LogLevel(LogLevel::Debug), S::Common),
    valued(&["--debug-topic"], K::DebugTopic, S::Common),
    flag(&["--progress"], Some('p'), K::Inert, S::Common),
    flag(&["--iec"], None, K::Inert, S::Common),
    flag(&["--log-json"], None, K::Inert, S::Common),
    valued(&["--lock-wait"], K::LockWait, S::Common),
    flag(&["--bypass-lock"], None, K::Inert, S::Common),
    flag(&["--show-version"], None, K::Inert, S::Common),
    flag(&["--show-rc"], None, K::Inert, S::Common),
    valued(&["--umask"], K::Umask, S::Common),
    valued(&["--remote-path"], K::Inert, S::Common),
    valued(&["--remote-ratelimit"], K::Inert, S::Common),
    valued(&["--upload-ratelimit"], K::Inert, S::Common),
    valued(&["--remote-buffer"], K::Inert, S::Common),
    valued(&["--upload-buffer"], K::Inert, S::Common),
    flag(&["--consider-part-files"], None, K::Inert, S::Common),
    valued(&["--debug-profile"], K::Inert, S::Common),
    valued(&["--rsh"], K::Inert, S::Common),
    flag(&["--version"], Some('V'), K::Version, S::Main),
    valued(&["--restrict-to-path"], K::RestrictToPath, S::Serve),
    valued(
        &["--restrict-to-repository"],
        K::RestrictToRepository,
        S::Serve,
    ),
    flag(&["--append-only"], None, K::AppendOnly, S::Serve),
    valued(&["--storage-quota"], K::StorageQuota, S::Serve),
    valued(&["--permissions"], K::Permissions, S::Extension),
    valued(&["--idle-timeout"], K::IdleTimeout, S::Extension),
    valued(&["--max-lock-wait"], K::MaxLockWait, S::Extension),
    valued(&["--key-quota"], K::KeyQuota, S::Extension),
    valued(&["--key-quota-ledger"], K::KeyQuotaLedger, S::Extension),
    valued(&["--request-timeout"], K::RequestTimeout, S::Extension),
    valued(&["--session-limit"], K::SessionLimit, S::Extension),
    flag(
        &["--allow-lock-bypass"],
        None,
        K::AllowLockBypass,
        S::Extension,
    ),
    valued(&["--session-id"], K::SessionId, S::Extension),
    valued(&["--policy-name"], K::PolicyName, S::Extension),
    valued(&["--audit-file"], K::AuditFile, S::Extension),
    flag(&["--audit-syslog"], None, K::AuditSyslog, S::Extension),
    valued(&["--audit-on-failure"], K::AuditOnFailure, S::Extension),
    valued(&["--metrics-textfile"], K::MetricsTextfile, S::Extension),
];

/// Whose command line is parsed: a client's (borg's options only) or borg-gate's own
/// `serve` line (borg's options plus the engine extensions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Client,
    Engine,
}

/// One recognised (or unknown) option occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedOption {
    /// `None` for an option borg does not know.
    pub spec: Option<&'static OptionSpec>,
    /// Exactly as typed, including `=value` if it was attached (for audit records).
    pub written: String,
    pub value: Option<String>,
}

impl ParsedOption {
    pub(crate) fn kind(&self) -> Option<OptionKind> {
        self.spec.map(|spec| spec.kind)
    }

    /// The option and its value as one readable word, e.g. `--lock-wait=600`.
    pub(crate) fn display(&self) -> String {
        match (&self.value, self.written.contains('=')) {
            (Some(value), false) => format!("{} {}", self.written, value),
            _ => self.written.clone(),
        }
    }
}

/// Why words could not be read as a `serve` command line. Each is one sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// No subcommand at all (`borg`, `borg --info`).
    MissingSubcommand,
    /// A subcommand other than `serve` (`borg list`).
    WrongSubcommand(String),
    /// A word that is neither a known option nor an option's value.
    UnexpectedWord(String),
    MissingValue(String),
    ValueNotAllowed(String),
    Ambiguous {
        written: String,
        candidates: Vec<&'static str>,
    },
}

impl ParseError {
    /// The sentence for a key that runs `allowed` (such as "`borg serve`"): the subcommand
    /// errors say what the key runs instead.
    pub fn sentence(&self, allowed: &str) -> String {
        match self {
            ParseError::MissingSubcommand => {
                format!("the command names no borg subcommand; only {allowed} is allowed")
            }
            ParseError::WrongSubcommand(sub) => {
                format!("only {allowed} is allowed, not `borg {}`", printable(sub))
            }
            other => other.to_string(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::MissingSubcommand | ParseError::WrongSubcommand(_) => {
                f.write_str(&self.sentence("`borg serve`"))
            }
            ParseError::UnexpectedWord(word) => {
                write!(
                    f,
                    "unexpected argument {:?} in the serve command",
                    printable(word)
                )
            }
            ParseError::MissingValue(option) => write!(f, "option {option} needs a value"),
            ParseError::ValueNotAllowed(option) => {
                write!(f, "option {} takes no value", printable(option))
            }
            ParseError::Ambiguous {
                written,
                candidates,
            } => write!(
                f,
                "option {} is ambiguous (it could be {})",
                printable(written),
                candidates.join(", ")
            ),
        }
    }
}

impl std::error::Error for ParseError {}

/// Shortens a client word for a one-line message.
pub(crate) fn printable(word: &str) -> String {
    const LIMIT: usize = 60;
    if word.chars().count() <= LIMIT {
        word.to_owned()
    } else {
        let cut: String = word.chars().take(LIMIT).collect();
        format!("{cut}...")
    }
}

/// Parses the words after the program name (`[common options] serve [options]`).
pub(crate) fn parse_serve_command(
    words: &[String],
    dialect: Dialect,
) -> Result<Vec<ParsedOption>, ParseError> {
    let mut options = Vec::new();
    let mut index = 0;
    // Before the subcommand: common options and -V.
    loop {
        let Some(word) = words.get(index) else {
            return Err(ParseError::MissingSubcommand);
        };
        if is_option_like(word) {
            index = parse_one(words, index, Level::Main, dialect, &mut options)?;
            continue;
        }
        if word == "serve" {
            index += 1;
            break;
        }
        return Err(ParseError::WrongSubcommand(word.clone()));
    }
    // After `serve`: common and serve options; `--` ends options, and serve has no positionals.
    while let Some(word) = words.get(index) {
        if word == "--" {
            if let Some(extra) = words.get(index + 1) {
                return Err(ParseError::UnexpectedWord(extra.clone()));
            }
            break;
        }
        if !is_option_like(word) {
            return Err(ParseError::UnexpectedWord(word.clone()));
        }
        index = parse_one(words, index, Level::Serve, dialect, &mut options)?;
    }
    Ok(options)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Main,
    Serve,
}

fn in_scope(spec: &OptionSpec, level: Level, dialect: Dialect) -> bool {
    match spec.scope {
        Scope::Common => true,
        Scope::Main => level == Level::Main,
        Scope::Serve => level == Level::Serve,
        Scope::Extension => level == Level::Serve && dialect == Dialect::Engine,
    }
}

/// argparse: a word starting with `-` is an option, unless it is a lone `-`, looks like a
/// negative number (borg's parsers have no options that look like numbers), or contains a
/// space without an `=` (argparse takes such a word as a positional).
fn is_option_like(word: &str) -> bool {
    word.starts_with('-')
        && word != "-"
        && !looks_like_negative_number(word)
        && (!word.contains(' ') || word.contains('='))
}

fn looks_like_negative_number(word: &str) -> bool {
    let Some(rest) = word.strip_prefix('-') else {
        return false;
    };
    let (int_part, frac_part) = match rest.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (rest, None),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    match frac_part {
        None => !int_part.is_empty() && all_digits(int_part),
        Some(frac) => all_digits(int_part) && !frac.is_empty() && all_digits(frac),
    }
}

/// Whether argparse would take `word` as the separate value of an option.
fn can_be_value(word: &str) -> bool {
    !is_option_like(word)
}

fn parse_one(
    words: &[String],
    index: usize,
    level: Level,
    dialect: Dialect,
    options: &mut Vec<ParsedOption>,
) -> Result<usize, ParseError> {
    let word = &words[index];
    if word == "--" {
        return Err(ParseError::UnexpectedWord(word.clone()));
    }
    if word.starts_with("--") {
        parse_long(words, index, level, dialect, options)
    } else {
        parse_short_cluster(words, index, level, dialect, options)
    }
}

fn parse_long(
    words: &[String],
    index: usize,
    level: Level,
    dialect: Dialect,
    options: &mut Vec<ParsedOption>,
) -> Result<usize, ParseError> {
    let word = &words[index];
    let (name, attached) = match word.split_once('=') {
        Some((name, value)) => (name, Some(value.to_owned())),
        None => (word.as_str(), None),
    };
    let spec = match lookup_long(name, level, dialect) {
        Lookup::Found(spec) => spec,
        Lookup::Ambiguous(candidates) => {
            return Err(ParseError::Ambiguous {
                written: name.to_owned(),
                candidates,
            });
        }
        Lookup::Unknown if name.contains(char::is_whitespace) => {
            return Err(ParseError::UnexpectedWord(word.clone()));
        }
        Lookup::Unknown => {
            options.push(ParsedOption {
                spec: None,
                written: word.clone(),
                value: attached,
            });
            return Ok(index + 1);
        }
    };
    if !spec.takes_value {
        if attached.is_some() {
            return Err(ParseError::ValueNotAllowed(word.clone()));
        }
        options.push(ParsedOption {
            spec: Some(spec),
            written: word.clone(),
            value: None,
        });
        return Ok(index + 1);
    }
    if let Some(value) = attached {
        options.push(ParsedOption {
            spec: Some(spec),
            written: word.clone(),
            value: Some(value),
        });
        return Ok(index + 1);
    }
    match words.get(index + 1) {
        Some(value) if can_be_value(value) => {
            options.push(ParsedOption {
                spec: Some(spec),
                written: word.clone(),
                value: Some(value.clone()),
            });
            Ok(index + 2)
        }
        _ => Err(ParseError::MissingValue(spec.canonical().to_owned())),
    }
}

fn parse_short_cluster(
    words: &[String],
    index: usize,
    level: Level,
    dialect: Dialect,
    options: &mut Vec<ParsedOption>,
) -> Result<usize, ParseError> {
    let word = &words[index];
    let letters: Vec<char> = word.chars().skip(1).collect();
    let mut parsed = Vec::new();
    for (position, letter) in letters.iter().enumerate() {
        let spec = OPTION_TABLE
            .iter()
            .find(|spec| spec.short == Some(*letter) && in_scope(spec, level, dialect));
        match spec {
            Some(spec) => parsed.push(ParsedOption {
                spec: Some(spec),
                written: format!("-{letter}"),
                value: None,
            }),
            None if position == 0 => {
                // argparse reports the whole word as unrecognised.
                options.push(ParsedOption {
                    spec: None,
                    written: word.clone(),
                    value: None,
                });
                return Ok(index + 1);
            }
            None => {
                // `-vx`: argparse complains about the explicit argument of -v.
                let first = letters.first().map(|c| format!("-{c}")).unwrap_or_default();
                return Err(ParseError::ValueNotAllowed(first));
            }
        }
    }
    options.extend(parsed);
    Ok(index + 1)
}

enum Lookup {
    Found(&'static OptionSpec),
    Ambiguous(Vec<&'static str>),
    Unknown,
}

fn lookup_long(name: &str, level: Level, dialect: Dialect) -> Lookup {
    let candidates = || {
        OPTION_TABLE
            .iter()
            .filter(|spec| in_scope(spec, level, dialect))
    };
    if let Some(spec) = candidates().find(|spec| spec.long.contains(&name)) {
        return Lookup::Found(spec);
    }
    // argparse's allow_abbrev: an unambiguous prefix of a long option.
    let mut matches: Vec<(&'static OptionSpec, &'static str)> = Vec::new();
    for spec in candidates() {
        for long in spec.long {
            if name.len() > 2 && long.starts_with(name) {
                matches.push((spec, long));
            }
        }
    }
    match matches.as_slice() {
        [] => Lookup::Unknown,
        [(spec, _)] => Lookup::Found(spec),
        many => Lookup::Ambiguous(many.iter().map(|(_, long)| *long).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    type Parsed = Vec<(Option<OptionKind>, Option<String>)>;

    fn parse(text: &str) -> Result<Parsed, ParseError> {
        parse_serve_command(&words(text), Dialect::Client)
            .map(|opts| opts.into_iter().map(|o| (o.kind(), o.value)).collect())
    }

    #[test]
    fn plain_serve_has_no_options() {
        assert_eq!(parse("serve"), Ok(vec![]));
    }

    #[test]
    fn options_after_serve_in_every_spelling() {
        assert_eq!(
            parse("serve --lock-wait 5"),
            Ok(vec![(Some(K::LockWait), Some("5".into()))])
        );
        assert_eq!(
            parse("serve --lock-wait=5"),
            Ok(vec![(Some(K::LockWait), Some("5".into()))])
        );
        assert_eq!(
            parse("serve --lock=5"),
            Ok(vec![(Some(K::LockWait), Some("5".into()))])
        );
        assert_eq!(
            parse("serve --lock-w 5"),
            Ok(vec![(Some(K::LockWait), Some("5".into()))])
        );
        assert_eq!(
            parse("serve --lock-wait=-1"),
            Ok(vec![(Some(K::LockWait), Some("-1".into()))])
        );
        assert_eq!(
            parse("serve --lock-wait -1"),
            Ok(vec![(Some(K::LockWait), Some("-1".into()))])
        );
        assert_eq!(
            parse("serve --lock-wait="),
            Ok(vec![(Some(K::LockWait), Some("".into()))])
        );
    }

    #[test]
    fn log_level_spellings() {
        let info = Some(K::LogLevel(LogLevel::Info));
        assert_eq!(parse("serve -v"), Ok(vec![(info, None)]));
        assert_eq!(parse("serve --verbose"), Ok(vec![(info, None)]));
        assert_eq!(parse("serve --info"), Ok(vec![(info, None)]));
        assert_eq!(parse("serve --verb"), Ok(vec![(info, None)]));
        assert_eq!(
            parse("serve --debug"),
            Ok(vec![(Some(K::LogLevel(LogLevel::Debug)), None)])
        );
        assert_eq!(
            parse("--debug serve"),
            Ok(vec![(Some(K::LogLevel(LogLevel::Debug)), None)])
        );
    }

    #[test]
    fn short_flag_clusters() {
        let info = Some(K::LogLevel(LogLevel::Info));
        assert_eq!(
            parse("serve -vp"),
            Ok(vec![(info, None), (Some(K::Inert), None)])
        );
        assert_eq!(parse("serve -vv"), Ok(vec![(info, None), (info, None)]));
        assert_eq!(
            parse("serve -vx"),
            Err(ParseError::ValueNotAllowed("-v".into()))
        );
        assert_eq!(parse("serve -x"), Ok(vec![(None, None)]));
    }

    #[test]
    fn debug_is_exact_even_though_debug_topic_shares_its_prefix() {
        assert_eq!(
            parse("serve --debug-t x"),
            Ok(vec![(Some(K::DebugTopic), Some("x".into()))])
        );
        assert!(matches!(
            parse("serve --debug-"),
            Err(ParseError::Ambiguous { .. })
        ));
        assert!(matches!(
            parse("serve --de"),
            Err(ParseError::Ambiguous { .. })
        ));
    }

    #[test]
    fn ambiguous_prefix_names_its_candidates() {
        let error = parse("serve --restrict /").unwrap_err();
        assert_eq!(
            error.to_string(),
            "option --restrict is ambiguous (it could be --restrict-to-path, --restrict-to-repository)"
        );
    }

    #[test]
    fn denied_options_are_recognised_so_the_caller_can_drop_them() {
        assert_eq!(
            parse("serve --restrict-to-path=/"),
            Ok(vec![(Some(K::RestrictToPath), Some("/".into()))])
        );
        assert_eq!(
            parse("serve --append-only"),
            Ok(vec![(Some(K::AppendOnly), None)])
        );
        assert_eq!(
            parse("serve --storage-quota 1G"),
            Ok(vec![(Some(K::StorageQuota), Some("1G".into()))])
        );
        assert_eq!(
            parse("serve --umask=000"),
            Ok(vec![(Some(K::Umask), Some("000".into()))])
        );
    }

    #[test]
    fn serve_only_options_are_unknown_before_the_subcommand() {
        assert_eq!(parse("--append-only serve"), Ok(vec![(None, None)]));
    }

    #[test]
    fn flags_refuse_attached_values() {
        assert_eq!(
            parse("serve --append-only=0"),
            Err(ParseError::ValueNotAllowed("--append-only=0".into()))
        );
        assert_eq!(
            parse("serve --debug=1"),
            Err(ParseError::ValueNotAllowed("--debug=1".into()))
        );
    }

    #[test]
    fn option_value_that_looks_like_an_option_is_missing() {
        assert_eq!(
            parse("serve --debug-topic --info"),
            Err(ParseError::MissingValue("--debug-topic".into()))
        );
        assert_eq!(
            parse("serve --lock-wait"),
            Err(ParseError::MissingValue("--lock-wait".into()))
        );
    }

    #[test]
    fn stray_words_are_refused() {
        assert_eq!(
            parse("serve ;"),
            Err(ParseError::UnexpectedWord(";".into()))
        );
        assert_eq!(
            parse("serve rm"),
            Err(ParseError::UnexpectedWord("rm".into()))
        );
        assert_eq!(
            parse("serve -- x"),
            Err(ParseError::UnexpectedWord("x".into()))
        );
        assert_eq!(
            parse("serve --lock-wait 5 6"),
            Err(ParseError::UnexpectedWord("6".into()))
        );
        assert_eq!(
            parse("serve -"),
            Err(ParseError::UnexpectedWord("-".into()))
        );
        let quoted = vec!["serve".to_owned(), "--lock-wait 5".to_owned()];
        assert_eq!(
            parse_serve_command(&quoted, Dialect::Client),
            Err(ParseError::UnexpectedWord("--lock-wait 5".into()))
        );
        let spaced_unknown = vec!["serve".to_owned(), "--a b=c".to_owned()];
        assert_eq!(
            parse_serve_command(&spaced_unknown, Dialect::Client),
            Err(ParseError::UnexpectedWord("--a b=c".into()))
        );
    }

    #[test]
    fn double_dash_alone_ends_options() {
        assert_eq!(parse("serve --"), Ok(vec![]));
        assert_eq!(
            parse("serve --info --"),
            Ok(vec![(Some(K::LogLevel(LogLevel::Info)), None)])
        );
    }

    #[test]
    fn subcommand_must_be_serve() {
        assert_eq!(parse(""), Err(ParseError::MissingSubcommand));
        assert_eq!(parse("--info"), Err(ParseError::MissingSubcommand));
        assert_eq!(
            parse("list"),
            Err(ParseError::WrongSubcommand("list".into()))
        );
        assert_eq!(
            parse("serv"),
            Err(ParseError::WrongSubcommand("serv".into()))
        );
        assert_eq!(
            parse("-- serve"),
            Err(ParseError::UnexpectedWord("--".into()))
        );
    }

    #[test]
    fn version_only_before_the_subcommand() {
        assert_eq!(parse("-V serve"), Ok(vec![(Some(K::Version), None)]));
        assert_eq!(parse("serve -V"), Ok(vec![(None, None)]));
    }

    #[test]
    fn engine_extensions_exist_only_in_the_engine_dialect() {
        let client =
            parse_serve_command(&words("serve --permissions=read-only"), Dialect::Client).unwrap();
        assert_eq!(client[0].spec, None);
        let engine =
            parse_serve_command(&words("serve --permissions=read-only"), Dialect::Engine).unwrap();
        assert_eq!(engine[0].kind(), Some(K::Permissions));
        // The extension makes `--max` a unique prefix only for the engine.
        let engine = parse_serve_command(&words("serve --max 5"), Dialect::Engine).unwrap();
        assert_eq!(engine[0].kind(), Some(K::MaxLockWait));
        assert_eq!(parse("serve --max"), Ok(vec![(None, None)]));
        // What the engine reports to is the server's too: a client cannot name a session id,
        // an audit file or a textfile.
        for option in [
            "--session-id=x",
            "--policy-name=x",
            "--audit-file=/tmp/x",
            "--audit-syslog",
            "--audit-on-failure=continue",
            "--metrics-textfile=/tmp/x",
        ] {
            let line = words(&format!("serve {option}"));
            let client = parse_serve_command(&line, Dialect::Client).unwrap();
            assert_eq!(client[0].spec, None, "{option}");
            let engine = parse_serve_command(&line, Dialect::Engine).unwrap();
            assert!(engine[0].spec.is_some(), "{option}");
        }
    }

    #[test]
    fn negative_numbers_are_values_not_options() {
        assert!(looks_like_negative_number("-1"));
        assert!(looks_like_negative_number("-1.5"));
        assert!(looks_like_negative_number("-.5"));
        assert!(!looks_like_negative_number("-x"));
        assert!(!looks_like_negative_number("-"));
        assert!(!looks_like_negative_number("-1."));
        assert!(!looks_like_negative_number("--1"));
    }

    #[test]
    fn every_table_entry_is_reachable_by_its_canonical_name() {
        for spec in OPTION_TABLE {
            let dialect = if spec.scope == Scope::Extension {
                Dialect::Engine
            } else {
                Dialect::Client
            };
            let mut line = Vec::new();
            if spec.scope != Scope::Main {
                line.push("serve".to_owned());
            }
            line.push(spec.canonical().to_owned());
            if spec.takes_value {
                line.push("1".to_owned());
            }
            if spec.scope == Scope::Main {
                line.push("serve".to_owned());
            }
            let parsed = parse_serve_command(&line, dialect).unwrap();
            assert_eq!(parsed[0].spec, Some(spec), "{}", spec.canonical());
        }
    }

    #[test]
    fn display_joins_separate_values() {
        let parsed =
            parse_serve_command(&words("serve --lock-wait 5 --umask=0"), Dialect::Client).unwrap();
        assert_eq!(parsed[0].display(), "--lock-wait 5");
        assert_eq!(parsed[1].display(), "--umask=0");
    }
}
