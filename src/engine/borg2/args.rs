//! `borg-gate serve --rest`'s command line: borg 2's `serve` options (borg 2.0.0b25
//! `archiver/serve_cmd.py` and the common options of `_common.py`), borg-gate's extensions,
//! and borg's forced-command rule for `SSH_ORIGINAL_COMMAND` (`Archiver.get_args`).
//!
//! Pure: the caller passes the words, the client's command and the environment values.
//! Options are read as Python's argparse reads them: `--opt value`, `--opt=value`,
//! unambiguous prefixes of long options, `-rVALUE`, clusters of short flags.
//!
//! The extensions exist so that the gate can pin everything it decides on the engine's own
//! command line, where a client cannot reach: `--storage-quota`, the session's clocks
//! (`--idle-timeout`, `--request-timeout`, `--session-limit`, as borg 1's engine has them),
//! `--lock-release`, `--lock-fence` (the stale-lock release of `locks.rs`), where the end of
//! the session is reported (`--session-id`, `--policy-name`, `--audit-file`, `--audit-syslog`,
//! `--audit-on-failure`, `--metrics-textfile`: `engine/reporting.rs`) and, for benchmarks
//! only, `--no-fsync`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::locks::{DEFAULT_FENCE, ReleasePolicy};
use super::permissions::Mode;
use crate::common::log_level::LogLevel;
use crate::engine::reporting::{Reporting, ReportingOption};
use crate::engine::session::clock::{DEFAULT_REQUEST_TIMEOUT, parse_limit};
use crate::policy::validate::parse_size;
use crate::policy::{DEFAULT_UMASK, normalize_debug_topic, parse_umask};

/// Everything `serve --rest` takes from its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestConfig {
    /// `--rest` was given (without it, `serve` is borg 1's RPC server).
    pub rest: bool,
    pub backend: Option<String>,
    pub restrict_to_paths: Vec<PathBuf>,
    pub restrict_to_repositories: Vec<PathBuf>,
    /// `--permissions`; `None` defers to `BORG_REPO_PERMISSIONS`, then `all`.
    pub permissions: Option<Mode>,
    pub log_level: LogLevel,
    pub debug_topics: Vec<String>,
    /// Accepted as borg does; in REST mode the client waits for locks itself.
    pub lock_wait: i64,
    pub umask: u32,
    pub storage_quota: Option<u64>,
    pub idle_timeout: Option<Duration>,
    /// How long after it began a request (head and body) must have arrived completely
    /// (`None`: no limit).
    pub request_timeout: Option<Duration>,
    /// The longest a session may last (`None`: no limit).
    pub session_limit: Option<Duration>,
    pub lock_release: ReleasePolicy,
    pub lock_fence: Duration,
    pub fsync: bool,
    /// Where the end of the session is reported.
    pub reporting: Reporting,
    pub help: bool,
}

impl Default for RestConfig {
    fn default() -> Self {
        RestConfig {
            rest: false,
            backend: None,
            restrict_to_paths: Vec::new(),
            restrict_to_repositories: Vec::new(),
            permissions: None,
            log_level: LogLevel::Warning,
            debug_topics: Vec::new(),
            lock_wait: 10,
            umask: DEFAULT_UMASK,
            storage_quota: None,
            idle_timeout: None,
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            session_limit: None,
            lock_release: ReleasePolicy::Release,
            lock_fence: DEFAULT_FENCE,
            fsync: true,
            reporting: Reporting::default(),
            help: false,
        }
    }
}

/// A command line borg would reject (exit status 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgsError {
    Unrecognized(String),
    Ambiguous(String),
    MissingValue(String),
    BadValue {
        option: &'static str,
        value: String,
        expected: &'static str,
    },
    UnexpectedWord(String),
    /// The client's `SSH_ORIGINAL_COMMAND` could not be used (borg exits too).
    Client(String),
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgsError::Unrecognized(option) => write!(f, "unrecognized argument {option}"),
            ArgsError::Ambiguous(option) => write!(f, "ambiguous option {option}"),
            ArgsError::MissingValue(option) => write!(f, "option {option} expects a value"),
            ArgsError::BadValue {
                option,
                value,
                expected,
            } => write!(
                f,
                "invalid value {value:?} for {option}: expected {expected}"
            ),
            ArgsError::UnexpectedWord(word) => write!(f, "unexpected argument {word:?}"),
            ArgsError::Client(message) => write!(f, "SSH_ORIGINAL_COMMAND: {message}"),
        }
    }
}

impl std::error::Error for ArgsError {}

/// Who wrote a command line: the administrator (the forced command, all options) or the
/// client (borg's own options only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    Engine,
    Client,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Help,
    Level(LogLevel),
    DebugTopic,
    Progress,
    LogJson,
    LockWait,
    ShowVersion,
    ShowRc,
    Umask,
    Repo,
    Rest,
    Backend,
    RestrictToPath,
    RestrictToRepository,
    Permissions,
    StorageQuota,
    IdleTimeout,
    RequestTimeout,
    SessionLimit,
    LockRelease,
    LockFence,
    NoFsync,
    Report(ReportingOption),
}

struct Spec {
    long: &'static [&'static str],
    short: Option<char>,
    value: bool,
    opt: Opt,
    /// Only on borg-gate's own command line.
    extension: bool,
}

const fn spec(long: &'static [&'static str], short: Option<char>, value: bool, opt: Opt) -> Spec {
    Spec {
        long,
        short,
        value,
        opt,
        extension: false,
    }
}

const fn extension(long: &'static [&'static str], value: bool, opt: Opt) -> Spec {
    Spec {
        long,
        short: None,
        value,
        opt,
        extension: true,
    }
}

/// borg 2's common options, its `serve` options, then borg-gate's extensions.
static OPTIONS: &[Spec] = &[
    spec(&["--help"], Some('h'), false, Opt::Help),
    spec(&["--critical"], None, false, Opt::Level(LogLevel::Critical)),
    spec(&["--error"], None, false, Opt::Level(LogLevel::Error)),
    spec(&["--warning"], None, false, Opt::Level(LogLevel::Warning)),
    spec(
        &["--info", "--verbose"],
        Some('v'),
        false,
        Opt::Level(LogLevel::Info),
    ),
    spec(&["--debug"], None, false, Opt::Level(LogLevel::Debug)),
    spec(&["--debug-topic"], None, true, Opt::DebugTopic),
    spec(&["--progress"], Some('p'), false, Opt::Progress),
    spec(&["--log-json"], None, false, Opt::LogJson),
    spec(&["--lock-wait"], None, true, Opt::LockWait),
    spec(&["--show-version"], None, false, Opt::ShowVersion),
    spec(&["--show-rc"], None, false, Opt::ShowRc),
    spec(&["--umask"], None, true, Opt::Umask),
    spec(&["--repo"], Some('r'), true, Opt::Repo),
    spec(&["--rest"], None, false, Opt::Rest),
    spec(&["--backend"], None, true, Opt::Backend),
    spec(&["--restrict-to-path"], None, true, Opt::RestrictToPath),
    spec(
        &["--restrict-to-repository"],
        None,
        true,
        Opt::RestrictToRepository,
    ),
    spec(&["--permissions"], None, true, Opt::Permissions),
    extension(&["--storage-quota"], true, Opt::StorageQuota),
    extension(&["--idle-timeout"], true, Opt::IdleTimeout),
    extension(&["--request-timeout"], true, Opt::RequestTimeout),
    extension(&["--session-limit"], true, Opt::SessionLimit),
    extension(&["--lock-release"], true, Opt::LockRelease),
    extension(&["--lock-fence"], true, Opt::LockFence),
    extension(&["--no-fsync"], false, Opt::NoFsync),
    extension(
        &["--session-id"],
        true,
        Opt::Report(ReportingOption::SessionId),
    ),
    extension(
        &["--policy-name"],
        true,
        Opt::Report(ReportingOption::PolicyName),
    ),
    extension(
        &["--audit-file"],
        true,
        Opt::Report(ReportingOption::AuditFile),
    ),
    extension(
        &["--audit-syslog"],
        false,
        Opt::Report(ReportingOption::AuditSyslog),
    ),
    extension(
        &["--audit-on-failure"],
        true,
        Opt::Report(ReportingOption::AuditOnFailure),
    ),
    extension(
        &["--metrics-textfile"],
        true,
        Opt::Report(ReportingOption::MetricsTextfile),
    ),
];

/// borg 2's commands (`borg --help`), for telling "another borg command" from "not borg".
const BORG_COMMANDS: &[&str] = &[
    "analyze",
    "benchmark",
    "break-lock",
    "check",
    "compact",
    "completion",
    "create",
    "debug",
    "delete",
    "diff",
    "export-tar",
    "extract",
    "find",
    "help",
    "import-tar",
    "info",
    "key",
    "list",
    "mount",
    "prune",
    "recreate",
    "rename",
    "repo-compress",
    "repo-create",
    "repo-delete",
    "repo-info",
    "repo-list",
    "repo-space",
    "serve",
    "tag",
    "transfer",
    "umount",
    "undelete",
    "version",
    "webdav",
    "with-lock",
];

/// Whether the words after `serve` ask for borg 2's REST server (`--rest`).
pub fn wants_rest<S: AsRef<str>>(args: &[S]) -> bool {
    args.iter()
        .map(AsRef::as_ref)
        .take_while(|word| *word != "--")
        .any(|word| word == "--rest")
}

/// Parses the words after `borg-gate serve`.
pub fn parse_rest_args<S: AsRef<str>>(args: &[S]) -> Result<RestConfig, ArgsError> {
    let words: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let mut config = RestConfig::default();
    for (opt, value) in scan(&words, Writer::Engine)? {
        apply(&mut config, opt, value)?;
    }
    Ok(config)
}

/// borg's forced-command rule: when `SSH_ORIGINAL_COMMAND` asks for `serve` too, the
/// client's `--backend`, log level, debug topics and lock wait replace the forced command's,
/// its parser's defaults included (so a `--backend` in the forced command never counts once
/// the client asks for `serve`: a client that names none has none). Everything else, `--rest`
/// included, stays as the forced command says. Leading words with `=` are dropped
/// uninterpreted; the program name is ignored; a client command for another borg command
/// leaves the forced command unchanged.
pub fn apply_client_command(
    config: &mut RestConfig,
    original_command: &str,
) -> Result<(), ArgsError> {
    let words = shlex::split(original_command)
        .ok_or_else(|| ArgsError::Client("cannot split the command like a shell".into()))?;
    let words: Vec<&str> = words
        .iter()
        .map(String::as_str)
        .skip_while(|word| word.contains('='))
        .collect();
    let Some((_program, arguments)) = words.split_first() else {
        return Ok(());
    };
    let Some(serve_at) = subcommand_position(arguments)? else {
        return Ok(());
    };
    let command = arguments[serve_at];
    if command != "serve" {
        if BORG_COMMANDS.contains(&command) {
            return Ok(());
        }
        return Err(ArgsError::Client(format!(
            "invalid choice: {command:?} is not a borg command"
        )));
    }
    let mut client = RestConfig::default();
    let options = scan(&arguments[..serve_at], Writer::Client)?
        .into_iter()
        .chain(scan(&arguments[serve_at + 1..], Writer::Client)?);
    for (opt, value) in options {
        apply(&mut client, opt, value).map_err(|e| ArgsError::Client(e.to_string()))?;
    }
    config.backend = client.backend;
    config.log_level = client.log_level;
    config.debug_topics = client.debug_topics;
    config.lock_wait = client.lock_wait;
    Ok(())
}

/// Where the subcommand is among the client's words (after any common options).
fn subcommand_position(arguments: &[&str]) -> Result<Option<usize>, ArgsError> {
    let mut index = 0;
    while index < arguments.len() {
        let word = arguments[index];
        if !word.starts_with('-') || word == "-" {
            return Ok(Some(index));
        }
        if word == "--config" || word.starts_with("--config=") {
            return Err(ArgsError::Client(
                "--config is not accepted from a client (it names a file on the server)".into(),
            ));
        }
        if matches!(word, "-V" | "--version" | "--cockpit") {
            return Err(ArgsError::Client(format!(
                "{word} does not serve a repository"
            )));
        }
        let (spec, inline) = find(word, Writer::Client).map_err(client_error)?;
        index += 1;
        if spec.value && inline.is_none() {
            index += 1;
        }
    }
    Ok(None)
}

fn client_error(error: ArgsError) -> ArgsError {
    ArgsError::Client(error.to_string())
}

/// The options in `words` with their values, in order.
fn scan<'w>(words: &[&'w str], writer: Writer) -> Result<Vec<(Opt, &'w str)>, ArgsError> {
    let mut found = Vec::new();
    let mut index = 0;
    while index < words.len() {
        let word = words[index];
        index += 1;
        if word == "--" || !word.starts_with('-') || word == "-" {
            return Err(wrap(ArgsError::UnexpectedWord(word.to_owned()), writer));
        }
        if !word.starts_with("--") && word.len() > 2 {
            // A cluster of short flags, or `-rVALUE`.
            for (at, letter) in word[1..].char_indices() {
                let spec = short(letter)
                    .ok_or_else(|| wrap(ArgsError::Unrecognized(format!("-{letter}")), writer))?;
                if spec.value {
                    let rest = &word[1 + at + letter.len_utf8()..];
                    let value = if rest.is_empty() {
                        let value = words.get(index).copied().ok_or_else(|| {
                            wrap(ArgsError::MissingValue(format!("-{letter}")), writer)
                        })?;
                        index += 1;
                        value
                    } else {
                        rest
                    };
                    found.push((spec.opt, value));
                    break;
                }
                found.push((spec.opt, ""));
            }
            continue;
        }
        let (spec, inline) = find(word, writer).map_err(|e| wrap(e, writer))?;
        let value = match (spec.value, inline) {
            (false, None) => "",
            (false, Some(_)) => {
                return Err(wrap(ArgsError::UnexpectedWord(word.to_owned()), writer));
            }
            (true, Some(value)) => value,
            (true, None) => {
                let value = words
                    .get(index)
                    .copied()
                    .ok_or_else(|| wrap(ArgsError::MissingValue(word.to_owned()), writer))?;
                index += 1;
                value
            }
        };
        found.push((spec.opt, value));
    }
    Ok(found)
}

fn wrap(error: ArgsError, writer: Writer) -> ArgsError {
    match writer {
        Writer::Engine => error,
        Writer::Client => client_error(error),
    }
}

fn short(letter: char) -> Option<&'static Spec> {
    OPTIONS.iter().find(|spec| spec.short == Some(letter))
}

/// The option `word` names (exactly, or by an unambiguous prefix), with an inline value.
fn find(word: &str, writer: Writer) -> Result<(&'static Spec, Option<&str>), ArgsError> {
    let visible = |spec: &&Spec| writer == Writer::Engine || !spec.extension;
    if let Some(letter) = word.strip_prefix('-').filter(|rest| rest.len() == 1) {
        let letter = letter.chars().next().unwrap_or('-');
        return short(letter)
            .map(|spec| (spec, None))
            .ok_or_else(|| ArgsError::Unrecognized(word.to_owned()));
    }
    let (name, inline) = match word.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (word, None),
    };
    let exact = OPTIONS
        .iter()
        .filter(visible)
        .find(|spec| spec.long.contains(&name));
    if let Some(spec) = exact {
        return Ok((spec, inline));
    }
    let candidates: Vec<&Spec> = OPTIONS
        .iter()
        .filter(visible)
        .filter(|spec| spec.long.iter().any(|long| long.starts_with(name)))
        .collect();
    match candidates.as_slice() {
        [spec] if name.len() > 2 => Ok((spec, inline)),
        [] | [_] => Err(ArgsError::Unrecognized(word.to_owned())),
        _ => Err(ArgsError::Ambiguous(word.to_owned())),
    }
}

fn apply(config: &mut RestConfig, opt: Opt, value: &str) -> Result<(), ArgsError> {
    let bad = |option: &'static str, expected: &'static str| ArgsError::BadValue {
        option,
        value: value.to_owned(),
        expected,
    };
    match opt {
        Opt::Help => config.help = true,
        Opt::Level(level) => config.log_level = level,
        Opt::DebugTopic => config.debug_topics.push(normalize_debug_topic(value)),
        Opt::Progress | Opt::LogJson | Opt::ShowVersion | Opt::ShowRc | Opt::Repo => {}
        Opt::LockWait => {
            config.lock_wait = value
                .trim()
                .parse()
                .map_err(|_| bad("--lock-wait", "whole seconds"))?
        }
        Opt::Umask => {
            config.umask =
                parse_umask(value).ok_or_else(|| bad("--umask", "an octal mode such as 0077"))?
        }
        Opt::Rest => config.rest = true,
        Opt::Backend => config.backend = Some(value.to_owned()),
        Opt::RestrictToPath => config.restrict_to_paths.push(PathBuf::from(value)),
        Opt::RestrictToRepository => config.restrict_to_repositories.push(PathBuf::from(value)),
        Opt::Permissions => {
            config.permissions = Some(Mode::from_name(value).ok_or_else(|| {
                bad(
                    "--permissions",
                    "one of all, no-delete, write-only, read-only",
                )
            })?)
        }
        Opt::StorageQuota => {
            config.storage_quota = Some(
                parse_size(value)
                    .ok_or_else(|| bad("--storage-quota", "a size such as 50G (0 for none)"))?,
            )
            .filter(|quota| *quota != 0)
        }
        Opt::IdleTimeout => {
            let timeout = humantime::parse_duration(value)
                .map_err(|_| bad("--idle-timeout", "a duration such as 10m"))?;
            config.idle_timeout = (!timeout.is_zero()).then_some(timeout);
        }
        Opt::RequestTimeout => {
            config.request_timeout = parse_limit(value)
                .ok_or_else(|| bad("--request-timeout", "a duration such as 5m"))?
        }
        Opt::SessionLimit => {
            config.session_limit = parse_limit(value)
                .ok_or_else(|| bad("--session-limit", "a duration such as 12h"))?
        }
        Opt::LockRelease => {
            config.lock_release = ReleasePolicy::from_name(value)
                .ok_or_else(|| bad("--lock-release", "release or keep"))?
        }
        Opt::LockFence => {
            config.lock_fence = humantime::parse_duration(value)
                .map_err(|_| bad("--lock-fence", "a duration such as 30m"))?
        }
        Opt::NoFsync => config.fsync = false,
        Opt::Report(option) => config
            .reporting
            .set(option, value)
            .map_err(|expected| bad(report_option_name(option), expected))?,
    }
    Ok(())
}

fn report_option_name(option: ReportingOption) -> &'static str {
    match option {
        ReportingOption::SessionId => "--session-id",
        ReportingOption::PolicyName => "--policy-name",
        ReportingOption::AuditFile => "--audit-file",
        ReportingOption::AuditSyslog => "--audit-syslog",
        ReportingOption::AuditOnFailure => "--audit-on-failure",
        ReportingOption::MetricsTextfile => "--metrics-textfile",
    }
}

/// `--permissions`, else `BORG_REPO_PERMISSIONS`, else `all`; borg's message for a bad
/// environment value.
pub fn effective_permissions(
    config: &RestConfig,
    environment: Option<&str>,
) -> Result<Mode, String> {
    if let Some(mode) = config.permissions {
        return Ok(mode);
    }
    match environment {
        None => Ok(Mode::All),
        Some(value) => Mode::from_name(value).ok_or_else(|| {
            format!(
                "Invalid BORG_REPO_PERMISSIONS value: {value}, should be one of: all, no-delete, \
                 write-only, read-only."
            )
        }),
    }
}

#[cfg(test)]
mod tests;
