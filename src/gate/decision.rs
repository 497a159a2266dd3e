//! The decision: one client command judged against one policy, as a value.
//!
//! [`judge`] is pure. It returns a [`Judgement`] holding the [`Decision`] (accept with the
//! protocol and the engine's sanitized arguments, answer the probe, or refuse with one
//! sentence) and the evidence for the audit record: the protocol the client asked for,
//! redacted tokens, dropped variable names, and a verdict for every option the client sent.
//!
//! borg 1's command is filtered option by option ([`apply_client_rules`], [`serve_args`]);
//! borg 2's is one form naming a repository path ([`super::rest`]), which is accepted as
//! [`Repository::Requested`] until the pipeline has resolved it and
//! [`Judgement::with_repository`] has built the engine's arguments ([`rest_args`]).

use std::fmt;
use std::path::{Path, PathBuf};

use super::command::{
    SplitError, program_basename, quoted, redacted_words, split_command, strip_assignments,
};
use super::options::{
    Dialect, OptionKind, ParseError, ParsedOption, parse_serve_command, printable,
};
use super::rest::{RestError, read_rest_request};
use crate::policy::{
    ClientRules, EngineProgram, ForcedSettings, LogLevel, OnAuditFailure, Permissions, Policy,
    ProgramMatch, Protocol, Protocols, UnknownOptions,
};

/// What happens to the connection.
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run the engine for the protocol with exactly these arguments.
    Accept(ServeArgs),
    /// The connectivity probe `true`: exit 0, run nothing.
    Probe,
    Reject(Refusal),
}

impl Decision {
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Accept(_) => "accept",
            Decision::Probe => "probe",
            Decision::Reject(_) => "reject",
        }
    }
}

/// What the engine runs: the generation of borg it serves, and the sanitized words that
/// follow `serve` on its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeArgs {
    pub protocol: Protocol,
    pub words: Vec<String>,
    /// borg 2: the repository the command names. The words exist once it is resolved.
    pub repository: Option<Repository>,
}

impl ServeArgs {
    /// borg 1's arguments: everything is decided from the command and the policy.
    pub fn borg1(words: Vec<String>) -> ServeArgs {
        ServeArgs {
            protocol: Protocol::Borg1,
            words,
            repository: None,
        }
    }
}

/// A borg 2 repository (`--backend FILE:<path>`), before and after the pipeline resolves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repository {
    /// As the client wrote it after `FILE:`. Resolving it is I/O (symlinks, home
    /// directories), so the pure gate leaves it to the pipeline ([`Judgement::with_repository`]);
    /// nothing runs until then.
    Requested(String),
    /// Resolved as borg resolves it, and inside the policy's restrictions.
    Resolved(PathBuf),
}

/// Why a command is refused. `Display` is the one sentence the client sees; where it says
/// what the key runs instead, the variant carries the key's protocols.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// SSH_ORIGINAL_COMMAND is unset: an interactive login.
    NoCommand(Protocols),
    Unreadable(SplitError),
    OnlyAssignments(Protocols),
    ProgramNotAllowed(String, Protocols),
    ProbeNotAllowed(Protocols),
    NotServe(ParseError, Protocols),
    UnknownOption(String),
    /// The client speaks a generation of borg the key does not serve.
    ProtocolNotAllowed {
        asked: Protocol,
        serves: Protocols,
    },
    /// A borg 2 request that is not the one form (a backend other than `FILE:` included).
    NotRestRequest(RestError),
    /// borg's `PathNotAllowed`: the repository resolves outside the restrictions, or below a
    /// directory another account could change (`reason`).
    PathNotAllowed {
        path: String,
        reason: Option<String>,
    },
}

impl Refusal {
    /// Refusals borg itself reports as `PathNotAllowed` (exit status 83): a repository path
    /// outside the restrictions, or a backend that is not `FILE:` (borg: "only FILE: backends
    /// can be restricted").
    pub fn is_path_not_allowed(&self) -> bool {
        matches!(
            self,
            Refusal::PathNotAllowed { .. } | Refusal::NotRestRequest(RestError::NotFile(_))
        )
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoCommand(serves) => write!(
                f,
                "interactive logins are not allowed; this key only runs {}",
                serves.commands()
            ),
            Refusal::Unreadable(error) => write!(f, "{error}; nothing was run"),
            Refusal::OnlyAssignments(serves) => write!(
                f,
                "the command only sets variables; this key only runs {}",
                serves.commands()
            ),
            Refusal::ProgramNotAllowed(program, serves) => write!(
                f,
                "program {} is not allowed; this key only runs {}",
                quoted(program),
                serves.commands()
            ),
            Refusal::ProbeNotAllowed(serves) => write!(
                f,
                "the connectivity probe `true` is not allowed by this key's policy; this key only runs {}",
                serves.commands()
            ),
            Refusal::NotServe(error, serves) => {
                write!(f, "{}; nothing was run", error.sentence(serves.commands()))
            }
            Refusal::UnknownOption(option) => write!(
                f,
                "unknown option {} is refused by this key's policy",
                quoted(option)
            ),
            Refusal::ProtocolNotAllowed { asked, serves } => write!(
                f,
                "{} clients are not allowed by this key's policy; this key only runs {}",
                asked.label(),
                serves.commands()
            ),
            Refusal::NotRestRequest(error) => write!(f, "{error}; nothing was run"),
            Refusal::PathNotAllowed { path, reason } => {
                write!(f, "Repository path not allowed: {}", printable_path(path))?;
                match reason {
                    Some(reason) => write!(f, " ({reason})."),
                    None => f.write_str("."),
                }
            }
        }
    }
}

/// A path for a one-line message: bounded, control characters escaped.
fn printable_path(path: &str) -> String {
    const LIMIT: usize = 200;
    let escaped: String = path.escape_debug().collect();
    if escaped.chars().count() <= LIMIT {
        escaped
    } else {
        let cut: String = escaped.chars().take(LIMIT).collect();
        format!("{cut}...")
    }
}

/// What the gate did with one client option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Accepted,
    /// Replaced by the policy's value (a level outside the allowed set, a pinned level).
    Replaced,
    /// Reduced to the policy's maximum.
    Clamped,
    Dropped,
    Refused,
}

impl Action {
    pub fn label(self) -> &'static str {
        match self {
            Action::Accepted => "accepted",
            Action::Replaced => "replaced",
            Action::Clamped => "clamped",
            Action::Dropped => "dropped",
            Action::Refused => "refused",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionVerdict {
    /// The option as the client wrote it, with its value.
    pub option: String,
    pub action: Action,
    pub reason: String,
}

/// The client's wishes after the policy's client rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    pub log_level: LogLevel,
    pub debug_topics: Vec<String>,
    pub lock_wait: u32,
}

/// A decision and the evidence behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    pub decision: Decision,
    /// The generation of borg the client asked for, once its command says (refused or not);
    /// `None` for a probe, a login, or a command that is no borg `serve` at all.
    pub protocol: Option<Protocol>,
    /// The client's words with assignment values redacted.
    pub tokens: Vec<String>,
    /// Names of the leading `NAME=value` words that were dropped.
    pub dropped_env: Vec<String>,
    pub options: Vec<OptionVerdict>,
}

impl Judgement {
    /// borg 2: the path the accepted command names, while it is still to be resolved.
    pub fn requested_repository(&self) -> Option<&str> {
        match &self.decision {
            Decision::Accept(ServeArgs {
                repository: Some(Repository::Requested(path)),
                ..
            }) => Some(path),
            _ => None,
        }
    }

    /// The judgement once the pipeline has resolved the requested repository: accepted with
    /// the engine's arguments for the resolved path, or refused as borg refuses the path.
    /// A judgement without a requested repository is returned as it is.
    pub fn with_repository(
        mut self,
        policy: &Policy,
        resolved: Result<PathBuf, Refusal>,
    ) -> Judgement {
        if self.requested_repository().is_none() {
            return self;
        }
        self.decision = match resolved {
            Ok(path) => match rest_args(policy, &path) {
                Some(args) => Decision::Accept(args),
                None => Decision::Reject(Refusal::PathNotAllowed {
                    path: path.to_string_lossy().into_owned(),
                    reason: Some("the resolved path is not UTF-8".to_owned()),
                }),
            },
            Err(refusal) => Decision::Reject(refusal),
        };
        self
    }
}

/// Judges one client command (`None` when SSH_ORIGINAL_COMMAND is unset).
pub fn judge(policy: &Policy, command: Option<&[u8]>) -> Judgement {
    let mut judgement = Judgement {
        decision: Decision::Probe,
        protocol: None,
        tokens: Vec::new(),
        dropped_env: Vec::new(),
        options: Vec::new(),
    };
    judgement.decision = decide(policy, command, &mut judgement);
    judgement
}

fn decide(policy: &Policy, command: Option<&[u8]>, evidence: &mut Judgement) -> Decision {
    let serves = policy.client.protocols;
    let Some(raw) = command else {
        return Decision::Reject(Refusal::NoCommand(serves));
    };
    let words = match split_command(raw) {
        Ok(words) => words,
        Err(error) => return Decision::Reject(Refusal::Unreadable(error)),
    };
    evidence.tokens = redacted_words(&words);
    let (names, rest) = strip_assignments(&words);
    evidence.dropped_env = names;
    let Some((program, arguments)) = rest.split_first() else {
        return Decision::Reject(Refusal::OnlyAssignments(serves));
    };
    if is_probe(program) && arguments.is_empty() {
        return if policy.client.allow_probe {
            Decision::Probe
        } else {
            Decision::Reject(Refusal::ProbeNotAllowed(serves))
        };
    }
    if !program_allowed(&policy.client, program) {
        return Decision::Reject(Refusal::ProgramNotAllowed(program.clone(), serves));
    }
    if let Some(request) = read_rest_request(arguments) {
        evidence.protocol = Some(Protocol::Borg2);
        return decide_rest(serves, request);
    }
    let parsed = match parse_serve_command(arguments, Dialect::Client) {
        Ok(parsed) => parsed,
        Err(error) => return Decision::Reject(Refusal::NotServe(error, serves)),
    };
    evidence.protocol = Some(Protocol::Borg1);
    if !serves.contains(Protocol::Borg1) {
        return Decision::Reject(Refusal::ProtocolNotAllowed {
            asked: Protocol::Borg1,
            serves,
        });
    }
    let (settings, verdicts) = apply_client_rules(&policy.client, &parsed);
    evidence.options = verdicts;
    if let Some(refused) = evidence
        .options
        .iter()
        .find(|v| v.action == Action::Refused)
    {
        return Decision::Reject(Refusal::UnknownOption(refused.option.clone()));
    }
    Decision::Accept(serve_args(policy, &settings))
}

/// A borg 2 request: a backend that is not `FILE:` is refused whatever the policy says (and
/// audited as such), then the key must serve borg 2, then the form must be the one form.
fn decide_rest(serves: Protocols, request: Result<String, RestError>) -> Decision {
    match request {
        Err(error @ RestError::NotFile(_)) => Decision::Reject(Refusal::NotRestRequest(error)),
        _ if !serves.contains(Protocol::Borg2) => Decision::Reject(Refusal::ProtocolNotAllowed {
            asked: Protocol::Borg2,
            serves,
        }),
        Err(error) => Decision::Reject(Refusal::NotRestRequest(error)),
        Ok(path) => Decision::Accept(ServeArgs {
            protocol: Protocol::Borg2,
            words: Vec::new(),
            repository: Some(Repository::Requested(path)),
        }),
    }
}

fn is_probe(program: &str) -> bool {
    matches!(program, "true" | "/bin/true" | "/usr/bin/true")
}

fn program_allowed(rules: &ClientRules, program: &str) -> bool {
    match rules.program_match {
        ProgramMatch::Exact => rules.programs.iter().any(|p| p == program),
        ProgramMatch::Basename => {
            let base = program_basename(program);
            !base.is_empty() && rules.programs.iter().any(|p| p == base)
        }
    }
}

/// Applies the policy's client rules to the parsed options: levels, topics and lock wait
/// pass through their rules; everything else is dropped (or refused, for unknown options
/// under `unknown_options = "reject"`).
pub(crate) fn apply_client_rules(
    rules: &ClientRules,
    parsed: &[ParsedOption],
) -> (ClientSettings, Vec<OptionVerdict>) {
    let level_request = parsed
        .iter()
        .rposition(|o| matches!(o.kind(), Some(OptionKind::LogLevel(_))));
    let log_level = final_log_level(rules, level_request.and_then(|i| parsed[i].kind()));
    let mut verdicts = Vec::new();
    let mut topics: Vec<String> = Vec::new();
    let mut lock_wait = None;
    for (index, option) in parsed.iter().enumerate() {
        let (action, reason) = match option.kind() {
            Some(OptionKind::LogLevel(level)) => {
                level_verdict(rules, level, log_level, Some(index) == level_request)
            }
            Some(OptionKind::DebugTopic) => {
                let topic = option.value.as_deref().unwrap_or_default();
                let normalized = crate::policy::normalize_debug_topic(topic);
                if !is_topic_name(topic) {
                    (Action::Dropped, "not a valid debug topic name".to_owned())
                } else if !rules
                    .debug_topics
                    .iter()
                    .any(|pattern| glob_match(pattern, &normalized))
                {
                    (
                        Action::Dropped,
                        format!("debug topic {normalized} is not allowed by the policy"),
                    )
                } else {
                    if !topics.contains(&normalized) {
                        topics.push(normalized);
                    }
                    (Action::Accepted, String::new())
                }
            }
            Some(OptionKind::LockWait) => {
                let text = option.value.as_deref().unwrap_or_default();
                match text.parse::<i64>() {
                    Err(_) => (
                        Action::Dropped,
                        "lock wait is not a whole number of seconds".to_owned(),
                    ),
                    Ok(seconds) if seconds < 0 => {
                        (Action::Dropped, "lock wait is negative".to_owned())
                    }
                    Ok(seconds) if seconds > i64::from(rules.lock_wait.max) => {
                        lock_wait = Some(rules.lock_wait.max);
                        let max = rules.lock_wait.max;
                        (
                            Action::Clamped,
                            format!("lock wait clamped to the policy's maximum of {max} s"),
                        )
                    }
                    Ok(seconds) => {
                        lock_wait = u32::try_from(seconds).ok();
                        (Action::Accepted, String::new())
                    }
                }
            }
            Some(kind) => (Action::Dropped, denial_reason(kind).to_owned()),
            None => match rules.unknown_options {
                UnknownOptions::Drop => (Action::Dropped, "unknown option".to_owned()),
                UnknownOptions::Reject => (Action::Refused, "unknown option".to_owned()),
            },
        };
        verdicts.push(OptionVerdict {
            option: printable(&option.display()),
            action,
            reason,
        });
    }
    let lock_wait = lock_wait.unwrap_or(rules.lock_wait.default);
    (
        ClientSettings {
            log_level,
            debug_topics: topics,
            lock_wait,
        },
        verdicts,
    )
}

/// The level the engine runs at: the pinned level, else the client's last request if the
/// policy allows it, else the policy's default.
fn final_log_level(rules: &ClientRules, requested: Option<OptionKind>) -> LogLevel {
    match (rules.force_log_level, requested) {
        (Some(forced), _) => forced,
        (None, Some(OptionKind::LogLevel(level))) if rules.log_levels.contains(&level) => level,
        _ => rules.default_log_level,
    }
}

fn level_verdict(
    rules: &ClientRules,
    level: LogLevel,
    final_level: LogLevel,
    is_last: bool,
) -> (Action, String) {
    if !is_last {
        return (
            Action::Dropped,
            "superseded by a later log level option".to_owned(),
        );
    }
    if level == final_level {
        return (Action::Accepted, String::new());
    }
    let reason = match rules.force_log_level {
        Some(forced) => format!("the policy pins the log level to {forced}"),
        None => format!("log level {level} is not allowed by the policy; using {final_level}"),
    };
    (Action::Replaced, reason)
}

fn denial_reason(kind: OptionKind) -> &'static str {
    match kind {
        OptionKind::RestrictToPath
        | OptionKind::RestrictToRepository
        | OptionKind::AppendOnly
        | OptionKind::StorageQuota
        | OptionKind::Umask => "the server decides this setting",
        OptionKind::Help | OptionKind::Version => "a server does not print help or versions",
        _ => "borg serve does not take this option from a client",
    }
}

/// borg's topic names: dotted words of letters, digits, `_` and `-`.
fn is_topic_name(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 100
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        && !topic.split('.').any(str::is_empty)
}

/// Shell-style glob with `*` and `?` over the whole text.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                backtrack = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                Some((star, matched)) => {
                    p = star + 1;
                    t = matched + 1;
                    backtrack = Some((star, matched + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// The engine's arguments after `serve`: the policy's forced settings first, then the
/// client's settings as the rules left them. Values are attached with `=` so that no value
/// can be mistaken for an option.
pub(crate) fn serve_args(policy: &Policy, settings: &ClientSettings) -> ServeArgs {
    let forced = &policy.repository;
    let (permissions, append_only) = forced.permissions.for_borg1(forced.append_only);
    let mut args = forced_args(forced, append_only);
    args.push(settings.log_level.flag().to_owned());
    args.extend(
        settings
            .debug_topics
            .iter()
            .map(|topic| format!("--debug-topic={topic}")),
    );
    args.push(format!("--lock-wait={}", settings.lock_wait));
    if policy.engine.program.is_builtin() {
        args.push(format!("--max-lock-wait={}", policy.client.lock_wait.max));
        if permissions != Permissions::All {
            args.push(format!("--permissions={}", permissions.name()));
        }
        if let Some(timeout) = forced.idle_timeout {
            args.push(idle_timeout_arg(timeout));
        }
        if let Some(quota) = &policy.repository.key_quota {
            args.push(format!("--key-quota={}", quota.limit));
            args.push(format!("--key-quota-ledger={}", quota.ledger.display()));
        }
        args.extend(time_limit_args(&policy.repository));
        if policy.repository.allow_lock_bypass {
            args.push("--allow-lock-bypass".to_owned());
        }
        args.extend(reporting_args(policy));
    }
    ServeArgs::borg1(args)
}

/// Where the built-in engine reports the end of each session: the policy's name (the label
/// of its record and metrics), its audit sinks with the same failure rule, and its metrics
/// textfile. The session id is added by the gate for each session.
pub(crate) fn reporting_args(policy: &Policy) -> Vec<String> {
    let mut args = vec![format!("--policy-name={}", policy.name)];
    if let Some(file) = &policy.audit.file {
        args.push(format!("--audit-file={}", file.display()));
    }
    if policy.audit.syslog {
        args.push("--audit-syslog".to_owned());
    }
    if policy.audit.on_failure == OnAuditFailure::Continue {
        args.push("--audit-on-failure=continue".to_owned());
    }
    if let Some(textfile) = &policy.metrics.textfile {
        args.push(format!("--metrics-textfile={}", textfile.display()));
    }
    args
}

fn idle_timeout_arg(timeout: std::time::Duration) -> String {
    format!("--idle-timeout={}s", timeout.as_secs().max(1))
}

/// The built-in engines' limits on one request and on the whole session (both engines take
/// them alike; without `--request-timeout` an engine applies its default).
fn time_limit_args(forced: &ForcedSettings) -> Vec<String> {
    let mut args = Vec::new();
    match forced.request_timeout {
        Some(timeout) if timeout.is_zero() => args.push("--request-timeout=0".to_owned()),
        Some(timeout) => args.push(format!("--request-timeout={}s", timeout.as_secs().max(1))),
        None => {}
    }
    if let Some(limit) = forced.session_limit {
        args.push(format!("--session-limit={}s", limit.as_secs().max(1)));
    }
    args
}

/// borg 2's engine arguments for the resolved repository (`None` when its path is not
/// UTF-8). The built-in engine gets the policy's settings as options; an external borg gets
/// the one repository as its only allowed one and the permissions, all it can enforce.
pub(crate) fn rest_args(policy: &Policy, repository: &Path) -> Option<ServeArgs> {
    let forced = &policy.repository;
    let path = repository.to_str()?;
    let permissions = forced.permissions.for_borg2(forced.append_only);
    let mut words = vec!["--rest".to_owned(), format!("--backend=FILE:{path}")];
    match &policy.engine.borg2_program {
        EngineProgram::Builtin => words.extend(restriction_args(forced)),
        EngineProgram::External(_) => words.push(format!("--restrict-to-repository={path}")),
    }
    if permissions != Permissions::All {
        words.push(format!("--permissions={}", permissions.name()));
    }
    words.push(format!("--umask={:04o}", forced.umask));
    words.push(final_log_level(&policy.client, None).flag().to_owned());
    if policy.engine.borg2_program.is_builtin() {
        if let Some(quota) = forced.storage_quota {
            words.push(format!("--storage-quota={quota}"));
        }
        if let Some(timeout) = forced.idle_timeout {
            words.push(idle_timeout_arg(timeout));
        }
        words.extend(time_limit_args(forced));
        words.push(format!("--lock-release={}", forced.lock_release.name()));
        words.extend(reporting_args(policy));
    }
    Some(ServeArgs {
        protocol: Protocol::Borg2,
        words,
        repository: Some(Repository::Resolved(repository.to_path_buf())),
    })
}

fn restriction_args(forced: &ForcedSettings) -> Vec<String> {
    let paths = forced
        .restrict_to_paths
        .iter()
        .map(|path| format!("--restrict-to-path={}", path.display()));
    let repositories = forced
        .restrict_to_repositories
        .iter()
        .map(|path| format!("--restrict-to-repository={}", path.display()));
    paths.chain(repositories).collect()
}

fn forced_args(forced: &ForcedSettings, append_only: bool) -> Vec<String> {
    let mut args = restriction_args(forced);
    if append_only {
        args.push("--append-only".to_owned());
    }
    if let Some(quota) = forced.storage_quota {
        args.push(format!("--storage-quota={quota}"));
    }
    args.push(format!("--umask={:04o}", forced.umask));
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_a_shell() {
        assert!(glob_match(
            "borg.debug.repository*",
            "borg.debug.repository"
        ));
        assert!(glob_match(
            "borg.debug.repository*",
            "borg.debug.repository.x"
        ));
        assert!(glob_match("*", ""));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*.lock*", "borg.debug.lock"));
        assert!(!glob_match(
            "borg.debug.repository",
            "borg.debug.repository2"
        ));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("a*b*c", "aXbYbZ"));
    }

    #[test]
    fn a_key_quota_reaches_the_builtin_engine_with_its_ledger() {
        let text = "version = 1\n[repository]\nrestrict_to_paths = [\"/srv/t\"]\nkey_quota = \"5G\"\nkey_quota_ledger = \"/var/lib/borg-gate/t.json\"\n[audit]\nsyslog = true\n";
        let policy = crate::policy::parse_policy(text, "t").unwrap();
        let Decision::Accept(args) = judge(&policy, Some(b"borg serve")).decision else {
            panic!("refused")
        };
        let quota: Vec<&str> = args
            .words
            .iter()
            .map(String::as_str)
            .filter(|arg| arg.starts_with("--key-quota"))
            .collect();
        assert_eq!(
            quota,
            [
                "--key-quota=5000000000",
                "--key-quota-ledger=/var/lib/borg-gate/t.json"
            ]
        );
    }

    #[test]
    fn the_builtin_engine_learns_where_to_report_and_an_external_borg_does_not() {
        let text = "version = 1\nname = \"laptop\"\n[repository]\nrestrict_to_paths = [\"/srv/t\"]\n[audit]\nfile = \"/var/log/borg-gate/audit.jsonl\"\nsyslog = true\non_failure = \"continue\"\n[metrics]\ntextfile = \"/var/lib/m/borg-gate.prom\"\n";
        let policy = crate::policy::parse_policy(text, "t").unwrap();
        let Decision::Accept(args) = judge(&policy, Some(b"borg serve")).decision else {
            panic!("refused")
        };
        let tail = &args.words[args.words.len() - 5..];
        assert_eq!(
            tail,
            [
                "--policy-name=laptop",
                "--audit-file=/var/log/borg-gate/audit.jsonl",
                "--audit-syslog",
                "--audit-on-failure=continue",
                "--metrics-textfile=/var/lib/m/borg-gate.prom"
            ]
        );
        let external = crate::policy::parse_policy(
            &text.replace(
                "[repository]",
                "[engine]\nprogram = \"/usr/bin/borg\"\n[repository]",
            ),
            "t",
        )
        .unwrap();
        let Decision::Accept(args) = judge(&external, Some(b"borg serve")).decision else {
            panic!("refused")
        };
        assert!(
            !args
                .words
                .iter()
                .any(|arg| arg.starts_with("--audit") || arg.starts_with("--policy-name")),
            "{args:?}"
        );
    }

    #[test]
    fn topic_names_are_dotted_words() {
        assert!(is_topic_name("repository"));
        assert!(is_topic_name("borg.debug.repository"));
        assert!(!is_topic_name("../../x"));
        assert!(!is_topic_name("a..b"));
        assert!(!is_topic_name(""));
        assert!(!is_topic_name("a b"));
        assert!(!is_topic_name("a/b"));
    }
}
