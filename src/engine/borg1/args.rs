//! `borg-gate serve`'s command line, read with borg's own option table, and borg's
//! forced-command rule for SSH_ORIGINAL_COMMAND.
//!
//! Pure: the caller passes the words and the client's command.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::common::log_level::LogLevel;
use crate::engine::reporting::{Reporting, ReportingOption};
use crate::engine::session::clock::{DEFAULT_REQUEST_TIMEOUT, parse_limit};
use crate::gate::command::{split_command, strip_assignments};
use crate::gate::options::{Dialect, OptionKind, ParseError, ParsedOption, parse_serve_command};
use crate::policy::validate::{MIN_STORAGE_QUOTA, parse_size};
use crate::policy::{DEFAULT_UMASK, Permissions, normalize_debug_topic, parse_umask};

/// Everything the engine takes from its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    pub restrict_to_paths: Vec<PathBuf>,
    pub restrict_to_repositories: Vec<PathBuf>,
    pub append_only: bool,
    pub storage_quota: Option<u64>,
    pub umask: u32,
    pub log_level: LogLevel,
    pub debug_topics: Vec<String>,
    /// Accepted for compatibility; the lock wait that counts comes with the RPC `open`.
    pub lock_wait: i64,
    pub permissions: Permissions,
    pub idle_timeout: Option<Duration>,
    /// How long after it began a request must have arrived completely (`None`: no limit).
    pub request_timeout: Option<Duration>,
    /// The longest a session may last (`None`: no limit).
    pub session_limit: Option<Duration>,
    /// The most any RPC `open` may wait for a lock.
    pub max_lock_wait: Option<u32>,
    /// One limit across every repository of the key, and its ledger (see `key_quota.rs`).
    pub key_quota: Option<u64>,
    pub key_quota_ledger: Option<PathBuf>,
    /// A client's `open(lock=False)` may read without a lock (borg's `--bypass-lock`);
    /// without this the lock is only deferred (see `repository/locking.rs`).
    pub allow_lock_bypass: bool,
    /// Where the end of the session is reported (see `reporting.rs`); boxed, as it is
    /// rarely looked at and the config is passed around by value.
    pub reporting: Box<Reporting>,
    /// `--help` was given: print usage instead of serving.
    pub help: bool,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            restrict_to_paths: Vec::new(),
            restrict_to_repositories: Vec::new(),
            append_only: false,
            storage_quota: None,
            umask: DEFAULT_UMASK,
            log_level: LogLevel::Warning,
            debug_topics: Vec::new(),
            lock_wait: 1,
            permissions: Permissions::All,
            idle_timeout: None,
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            session_limit: None,
            max_lock_wait: None,
            key_quota: None,
            key_quota_ledger: None,
            allow_lock_bypass: false,
            reporting: Box::default(),
            help: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgsError {
    Parse(ParseError),
    Unrecognized(String),
    BadValue {
        option: String,
        value: String,
        expected: &'static str,
    },
    /// The client's SSH_ORIGINAL_COMMAND could not be parsed (borg exits too).
    Client(String),
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgsError::Parse(error) => error.fmt(f),
            ArgsError::Unrecognized(option) => write!(f, "unrecognized argument {option}"),
            ArgsError::BadValue {
                option,
                value,
                expected,
            } => {
                write!(
                    f,
                    "invalid value {value:?} for {option}: expected {expected}"
                )
            }
            ArgsError::Client(message) => write!(f, "SSH_ORIGINAL_COMMAND: {message}"),
        }
    }
}

impl std::error::Error for ArgsError {}

/// Parses `borg-gate serve` arguments (the words after `serve`).
pub fn parse_serve_args(args: &[String]) -> Result<ServeConfig, ArgsError> {
    let mut words = vec!["serve".to_owned()];
    words.extend(args.iter().cloned());
    let parsed = parse_serve_command(&words, Dialect::Engine).map_err(ArgsError::Parse)?;
    let mut config = ServeConfig::default();
    for option in &parsed {
        apply(&mut config, option)?;
    }
    match (config.key_quota, &config.key_quota_ledger) {
        (Some(_), None) => {
            return Err(ArgsError::BadValue {
                option: "--key-quota".into(),
                value: config.key_quota.unwrap_or(0).to_string(),
                expected: "--key-quota-ledger with it",
            });
        }
        (None, Some(ledger)) => {
            return Err(ArgsError::BadValue {
                option: "--key-quota-ledger".into(),
                value: ledger.display().to_string(),
                expected: "--key-quota with it",
            });
        }
        _ => {}
    }
    Ok(config)
}

fn apply(config: &mut ServeConfig, option: &ParsedOption) -> Result<(), ArgsError> {
    let Some(kind) = option.kind() else {
        return Err(ArgsError::Unrecognized(option.written.clone()));
    };
    let value = option.value.clone().unwrap_or_default();
    let bad = |expected: &'static str| ArgsError::BadValue {
        option: option.spec.map_or("", |s| s.canonical()).to_owned(),
        value: value.clone(),
        expected,
    };
    match kind {
        OptionKind::LogLevel(level) => config.log_level = level,
        OptionKind::DebugTopic => config.debug_topics.push(normalize_debug_topic(&value)),
        OptionKind::LockWait => {
            config.lock_wait = value.parse().map_err(|_| bad("whole seconds"))?
        }
        OptionKind::RestrictToPath => config.restrict_to_paths.push(PathBuf::from(&value)),
        OptionKind::RestrictToRepository => {
            config.restrict_to_repositories.push(PathBuf::from(&value))
        }
        OptionKind::AppendOnly => config.append_only = true,
        OptionKind::StorageQuota => {
            let quota = parse_size(&value).ok_or_else(|| bad("a size such as 50G"))?;
            if quota != 0 && quota < MIN_STORAGE_QUOTA {
                return Err(bad("at least 10M (or 0)"));
            }
            config.storage_quota = Some(quota);
        }
        OptionKind::Umask => {
            config.umask = parse_umask(&value).ok_or_else(|| bad("an octal mode such as 0077"))?
        }
        OptionKind::Permissions => {
            // borg 1's engine knows two modes; the policy maps the others before this.
            config.permissions = Permissions::from_name(&value)
                .filter(|p| matches!(p, Permissions::All | Permissions::ReadOnly))
                .ok_or_else(|| bad("all or read-only"))?
        }
        OptionKind::IdleTimeout => {
            config.idle_timeout =
                parse_limit(&value).ok_or_else(|| bad("a duration such as 10m"))?
        }
        OptionKind::RequestTimeout => {
            config.request_timeout =
                parse_limit(&value).ok_or_else(|| bad("a duration such as 5m"))?
        }
        OptionKind::SessionLimit => {
            config.session_limit =
                parse_limit(&value).ok_or_else(|| bad("a duration such as 12h"))?
        }
        OptionKind::AllowLockBypass => config.allow_lock_bypass = true,
        OptionKind::MaxLockWait => {
            config.max_lock_wait = Some(value.parse().map_err(|_| bad("whole seconds"))?)
        }
        OptionKind::KeyQuota => {
            let quota = parse_size(&value).ok_or_else(|| bad("a size such as 50G"))?;
            config.key_quota = (quota != 0).then_some(quota);
        }
        OptionKind::KeyQuotaLedger => {
            let path = PathBuf::from(&value);
            if !path.is_absolute() {
                return Err(bad("an absolute path"));
            }
            config.key_quota_ledger = Some(path);
        }
        OptionKind::SessionId => report(config, ReportingOption::SessionId, &value, bad)?,
        OptionKind::PolicyName => report(config, ReportingOption::PolicyName, &value, bad)?,
        OptionKind::AuditFile => report(config, ReportingOption::AuditFile, &value, bad)?,
        OptionKind::AuditSyslog => report(config, ReportingOption::AuditSyslog, &value, bad)?,
        OptionKind::AuditOnFailure => report(config, ReportingOption::AuditOnFailure, &value, bad)?,
        OptionKind::MetricsTextfile => {
            report(config, ReportingOption::MetricsTextfile, &value, bad)?
        }
        OptionKind::Help => config.help = true,
        OptionKind::Inert | OptionKind::Version => {}
    }
    Ok(())
}

/// Takes a reporting option, with `bad` making the error.
fn report(
    config: &mut ServeConfig,
    option: ReportingOption,
    value: &str,
    bad: impl Fn(&'static str) -> ArgsError,
) -> Result<(), ArgsError> {
    config.reporting.set(option, value).map_err(bad)
}

/// borg 1.4's subcommands (`borg --help`).
const BORG_COMMANDS: &[&str] = &[
    "benchmark",
    "break-lock",
    "check",
    "compact",
    "config",
    "create",
    "debug",
    "delete",
    "diff",
    "export-tar",
    "extract",
    "help",
    "import-tar",
    "info",
    "init",
    "key",
    "list",
    "mount",
    "prune",
    "recreate",
    "rename",
    "serve",
    "umount",
    "upgrade",
    "version",
    "with-lock",
];

/// borg 1.4's forced-command rule (`Archiver.get_args`): when the client asked for `serve`
/// too, its log level, debug topics and lock wait replace ours, defaults included;
/// everything else stays as the forced command line says. A client command for another
/// subcommand is ignored. Leading `NAME=value` words are dropped uninterpreted.
pub fn apply_client_command(
    config: &mut ServeConfig,
    original_command: &[u8],
) -> Result<(), ArgsError> {
    let words = split_command(original_command).map_err(|e| ArgsError::Client(e.to_string()))?;
    let (_, rest) = strip_assignments(&words);
    let Some((_program, arguments)) = rest.split_first() else {
        return Ok(());
    };
    let parsed = match parse_serve_command(arguments, Dialect::Client) {
        Ok(parsed) => parsed,
        // Another borg command: borg serves with the forced settings alone.
        Err(ParseError::WrongSubcommand(sub)) if BORG_COMMANDS.contains(&sub.as_str()) => {
            return Ok(());
        }
        Err(ParseError::MissingSubcommand) => return Ok(()),
        // argparse rejects what is not a borg command at all ("invalid choice"), and so does borg.
        Err(ParseError::WrongSubcommand(sub)) => {
            return Err(ArgsError::Client(format!(
                "invalid choice: {sub:?} is not a borg command"
            )));
        }
        Err(error) => return Err(ArgsError::Client(error.to_string())),
    };
    if let Some(unknown) = parsed.iter().find(|o| o.spec.is_none()) {
        return Err(ArgsError::Client(format!(
            "unrecognized argument {}",
            unknown.written
        )));
    }
    let mut client = ServeConfig::default();
    for option in &parsed {
        if let Some(OptionKind::LogLevel(_) | OptionKind::DebugTopic | OptionKind::LockWait) =
            option.kind()
        {
            apply(&mut client, option).map_err(|e| ArgsError::Client(e.to_string()))?;
        }
    }
    config.log_level = client.log_level;
    config.debug_topics = client.debug_topics;
    config.lock_wait = client.lock_wait;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_every_serve_option() {
        let config = parse_serve_args(&args(
            "--restrict-to-path /a --restrict-to-path=/b --restrict-to-repository /r --append-only --storage-quota 20M \
             --umask 0027 --info --debug-topic repository --lock-wait 5 --permissions read-only --idle-timeout 10m \
             --max-lock-wait 60 --show-rc -p",
        ))
        .unwrap();
        assert_eq!(
            config.restrict_to_paths,
            [PathBuf::from("/a"), PathBuf::from("/b")]
        );
        assert_eq!(config.restrict_to_repositories, [PathBuf::from("/r")]);
        assert!(config.append_only);
        assert_eq!(config.storage_quota, Some(20_000_000));
        assert_eq!(config.umask, 0o027);
        assert_eq!(config.log_level, LogLevel::Info);
        assert_eq!(config.debug_topics, ["borg.debug.repository"]);
        assert_eq!(config.lock_wait, 5);
        assert_eq!(config.permissions, Permissions::ReadOnly);
        assert_eq!(config.idle_timeout, Some(Duration::from_secs(600)));
        assert_eq!(config.max_lock_wait, Some(60));
    }

    #[test]
    fn a_key_quota_comes_with_its_ledger() {
        let config = parse_serve_args(&args(
            "--key-quota=10000000 --key-quota-ledger=/var/lib/q.json",
        ))
        .unwrap();
        assert_eq!(config.key_quota, Some(10_000_000));
        assert_eq!(
            config.key_quota_ledger,
            Some(PathBuf::from("/var/lib/q.json"))
        );
        for alone in [
            "--key-quota=10000000",
            "--key-quota-ledger=/var/lib/q.json",
            "--key-quota=lots --key-quota-ledger=/q",
            "--key-quota=10M --key-quota-ledger=relative/q",
        ] {
            assert!(
                matches!(
                    parse_serve_args(&args(alone)),
                    Err(ArgsError::BadValue { .. })
                ),
                "{alone}"
            );
        }
        // From a client, they are options borg does not know (dropped by the gate).
        let parsed = parse_serve_command(&args("serve --key-quota=1"), Dialect::Client).unwrap();
        assert_eq!(parsed[0].kind(), None);
    }

    #[test]
    fn parses_the_session_limits_and_lock_bypass() {
        let config = parse_serve_args(&args(
            "--request-timeout=90s --session-limit 12h --allow-lock-bypass",
        ))
        .unwrap();
        assert_eq!(config.request_timeout, Some(Duration::from_secs(90)));
        assert_eq!(config.session_limit, Some(Duration::from_secs(12 * 3600)));
        assert!(config.allow_lock_bypass);
        let defaults = parse_serve_args(&[]).unwrap();
        assert_eq!(defaults.request_timeout, Some(DEFAULT_REQUEST_TIMEOUT));
        assert_eq!(defaults.session_limit, None);
        assert!(!defaults.allow_lock_bypass);
        let unlimited = parse_serve_args(&args("--request-timeout=0 --session-limit=0s")).unwrap();
        assert_eq!(unlimited.request_timeout, None);
        assert_eq!(unlimited.session_limit, None);
        assert!(matches!(
            parse_serve_args(&args("--session-limit=soon")),
            Err(ArgsError::BadValue { .. })
        ));
        // A client cannot send them: they are the server's.
        let mut config = ServeConfig::default();
        assert!(apply_client_command(&mut config, b"borg serve --allow-lock-bypass").is_err());
    }

    #[test]
    fn the_gate_s_reporting_options_are_read_and_a_client_cannot_send_them() {
        let config = parse_serve_args(&args(
            "--session-id=0123abcd --policy-name=laptop --audit-file=/var/log/a.jsonl --audit-syslog \
             --audit-on-failure=continue --metrics-textfile=/var/lib/m.prom",
        ))
        .unwrap();
        let reporting = &config.reporting;
        assert_eq!(reporting.session_id.as_ref().unwrap().as_str(), "0123abcd");
        assert_eq!(reporting.policy.as_deref(), Some("laptop"));
        assert_eq!(
            reporting.audit.file,
            Some(PathBuf::from("/var/log/a.jsonl"))
        );
        assert!(reporting.audit.syslog);
        assert_eq!(
            reporting.metrics_textfile,
            Some(PathBuf::from("/var/lib/m.prom"))
        );
        assert!(matches!(
            parse_serve_args(&args("--session-id=a/b")),
            Err(ArgsError::BadValue { .. })
        ));
        let mut config = ServeConfig::default();
        assert!(apply_client_command(&mut config, b"borg serve --session-id=x").is_err());
        assert!(apply_client_command(&mut config, b"borg serve --audit-file=/tmp/x").is_err());
    }

    #[test]
    fn bad_values_and_unknown_options_are_errors() {
        assert!(matches!(
            parse_serve_args(&args("--umask 999")),
            Err(ArgsError::BadValue { .. })
        ));
        assert!(matches!(
            parse_serve_args(&args("--storage-quota 1M")),
            Err(ArgsError::BadValue { .. })
        ));
        assert!(matches!(
            parse_serve_args(&args("--frobnicate")),
            Err(ArgsError::Unrecognized(_))
        ));
        // borg 2's other modes have no borg 1 engine behind them: refused, not served as all.
        for mode in ["no-delete", "write-only"] {
            assert!(matches!(
                parse_serve_args(&args(&format!("--permissions {mode}"))),
                Err(ArgsError::BadValue { .. })
            ));
        }
        assert!(matches!(
            parse_serve_args(&args("extra")),
            Err(ArgsError::Parse(_))
        ));
        let error = parse_serve_args(&args("--umask 999")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid value \"999\" for --umask: expected an octal mode such as 0077"
        );
    }

    #[test]
    fn client_command_replaces_only_level_topics_and_lock_wait() {
        let mut config = parse_serve_args(&args(
            "--restrict-to-path /srv --append-only --info --lock-wait 3",
        ))
        .unwrap();
        apply_client_command(
            &mut config,
            b"BORG_X=1 borg serve --debug --debug-topic=repository --lock-wait 9 --restrict-to-path=/ --storage-quota=1T --umask=0",
        )
        .unwrap();
        assert_eq!(config.restrict_to_paths, [PathBuf::from("/srv")]);
        assert!(config.append_only);
        assert_eq!(config.storage_quota, None);
        assert_eq!(config.umask, 0o077);
        assert_eq!(config.log_level, LogLevel::Debug);
        assert_eq!(config.debug_topics, ["borg.debug.repository"]);
        assert_eq!(config.lock_wait, 9);
    }

    #[test]
    fn client_defaults_override_forced_levels_as_in_borg() {
        let mut config = parse_serve_args(&args("--info")).unwrap();
        apply_client_command(&mut config, b"borg serve").unwrap();
        assert_eq!(config.log_level, LogLevel::Warning);
    }

    #[test]
    fn client_command_for_another_subcommand_is_ignored() {
        let mut config = parse_serve_args(&args("--info")).unwrap();
        apply_client_command(&mut config, b"borg list --debug").unwrap();
        assert_eq!(config.log_level, LogLevel::Info);
    }

    #[test]
    fn a_command_that_is_not_borgs_is_an_error_as_in_borg() {
        let mut config = ServeConfig::default();
        assert!(apply_client_command(&mut config, b"sh -c id").is_err());
        assert!(apply_client_command(&mut config, b"borg create x").is_ok());
    }

    #[test]
    fn unparsable_client_command_is_an_error_as_in_borg() {
        let mut config = ServeConfig::default();
        assert!(apply_client_command(&mut config, b"borg serve --frobnicate").is_err());
        assert!(apply_client_command(&mut config, b"borg serve 'x").is_err());
    }
}
