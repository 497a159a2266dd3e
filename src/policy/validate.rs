//! Policy validation: TOML text to a [`Policy`], with every error pointing at its key.
//!
//! Pure: no file system, no environment. Errors carry byte spans; [`PolicyErrors::render`]
//! turns them into `file:line:column: message` lines that say how to fix the problem.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::key_name::{self, KeyContext, PLACEHOLDER, TemplateError};
use super::model::{RawAudit, RawClient, RawEngine, RawMetrics, RawPolicy, RawRepository};
use super::{
    AuditSettings, ClientRules, DEFAULT_UMASK, EngineProgram, EngineSettings, ForcedSettings,
    KeyQuota, LockRelease, LockWaitRule, LogLevel, MetricsSettings, OnAuditFailure, Permissions,
    Policy, ProgramMatch, Protocol, Protocols, UnknownOptions, parse_umask,
};

/// The largest policy file we read; a policy is a few hundred bytes.
pub(crate) const MAX_POLICY_SIZE: usize = 1 << 20;

/// Programs accepted when a policy does not name any.
pub(crate) const DEFAULT_PROGRAMS: [&str; 1] = ["borg"];

/// Lock wait when the policy does not say: borg's own default, and borg's documented 600 s
/// as the most a client may ask for.
pub(crate) const DEFAULT_LOCK_WAIT: LockWaitRule = LockWaitRule {
    default: 1,
    max: 600,
};

/// borg's smallest storage quota (`parse_storage_quota`): 10M unless 0.
pub(crate) const MIN_STORAGE_QUOTA: u64 = 10_000_000;

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub message: String,
    /// Byte range in the file, when the problem belongs to one key or value.
    pub span: Option<Range<usize>>,
}

/// Every problem found in one policy file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl PolicyErrors {
    /// One `file:line:column: message` line per error.
    pub fn render(&self, file: &Path, text: &str) -> Vec<String> {
        self.0
            .iter()
            .map(|error| match &error.span {
                Some(span) => {
                    let (line, column) = line_and_column(text, span.start);
                    format!("{}:{line}:{column}: {}", file.display(), error.message)
                }
                None => format!("{}: {}", file.display(), error.message),
            })
            .collect()
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let messages: Vec<&str> = self.0.iter().map(|e| e.message.as_str()).collect();
        f.write_str(&messages.join("; "))
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let mut start = offset;
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Parses and validates a policy. `default_name` labels the policy when it has no `name`
/// (the loader passes the file stem). A policy that uses `{name}` needs
/// [`parse_policy_for_key`].
pub fn parse_policy(text: &str, default_name: &str) -> Result<Policy, PolicyErrors> {
    parse_policy_for_key(text, default_name, KeyContext::Unnamed)
}

/// [`parse_policy`] for a key: `{name}` in paths and audit fields becomes the key's name
/// (`--name` in the forced command), or stays as written for [`KeyContext::Template`].
pub fn parse_policy_for_key(
    text: &str,
    default_name: &str,
    key: KeyContext<'_>,
) -> Result<Policy, PolicyErrors> {
    if text.len() > MAX_POLICY_SIZE {
        return Err(PolicyErrors(vec![PolicyError {
            message: format!(
                "the file is larger than {MAX_POLICY_SIZE} bytes; a policy is a short TOML file"
            ),
            span: None,
        }]));
    }
    let raw: RawPolicy = toml::from_str(text).map_err(|error| {
        PolicyErrors(vec![PolicyError {
            message: describe_toml_error(error.message(), text, error.span()),
            span: error.span(),
        }])
    })?;
    let mut v = Validator {
        key,
        ..Validator::default()
    };
    let policy = v.policy(raw, default_name);
    if v.errors.is_empty() {
        Ok(policy)
    } else {
        v.errors
            .sort_by_key(|e| e.span.as_ref().map_or(0, |s| s.start));
        Err(PolicyErrors(v.errors))
    }
}

fn describe_toml_error(message: &str, text: &str, span: Option<Range<usize>>) -> String {
    let message = message.trim_end();
    let unquoted = message.contains("leading zero")
        || message.contains("must be quoted")
        || (message.starts_with("invalid type") && message.ends_with("expected a string"));
    if message.starts_with("unknown field") {
        format!("{message}; remove it or fix its spelling (see borg-gate-policy(5))")
    } else if message.starts_with("missing field `version`") {
        "missing `version = 1` at the top of the file".to_owned()
    } else if let (true, Some(hint)) = (unquoted, span.and_then(|s| quoting_hint(text, s.start))) {
        format!("{message}; {hint}")
    } else {
        message.to_owned()
    }
}

/// `umask = 077` is a TOML number with a leading zero, `idle_timeout = 10m` is no value at
/// all: both are strings in a policy. The hint repeats the line with the value quoted.
fn quoting_hint(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let (key, value) = text.get(start..end)?.split_once('=')?;
    let key = key.trim();
    let value = value.split('#').next().unwrap_or("").trim();
    let plain = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-:/ ".contains(&b))
    };
    (STRING_KEYS.contains(&key) && plain(value))
        .then(|| format!("write the value in quotes: {key} = \"{value}\""))
}

/// Keys whose values are strings (for [`quoting_hint`]; a boolean or a list needs no quotes).
const STRING_KEYS: &[&str] = &[
    "name",
    "program",
    "borg2_program",
    "program_match",
    "default_log_level",
    "force_log_level",
    "unknown_options",
    "storage_quota",
    "umask",
    "permissions",
    "idle_timeout",
    "lock_release",
    "file",
    "on_failure",
    "textfile",
];

/// Where the engine programs are written, for errors found after the client rules.
struct EngineSpans {
    program: Option<Range<usize>>,
    borg2_program: Option<Range<usize>>,
}

/// A setting whose value is one of a few words. Each is parsed and refused the same way
/// ([`Validator::choice`]): `<setting> "<value>" is unknown; use <words>`.
trait Choice: Sized {
    /// The setting, as the error names it.
    const SETTING: &'static str;
    /// The words it takes, as the error lists them.
    const WORDS: &'static str;
    fn from_name(name: &str) -> Option<Self>;
}

/// Implements [`Choice`] with the type's own `from_name`.
macro_rules! choice {
    ($type:ty, $setting:literal, $words:literal) => {
        impl Choice for $type {
            const SETTING: &'static str = $setting;
            const WORDS: &'static str = $words;
            fn from_name(name: &str) -> Option<Self> {
                <$type>::from_name(name)
            }
        }
    };
}

choice!(ProgramMatch, "program_match", r#""basename" or "exact""#);
choice!(UnknownOptions, "unknown_options", r#""drop" or "reject""#);
choice!(
    OnAuditFailure,
    "audit.on_failure",
    r#""refuse" or "continue""#
);
choice!(
    Permissions,
    "permissions",
    r#""all", "no-delete", "write-only" or "read-only""#
);
choice!(LockRelease, "lock_release", r#""release" or "keep""#);
choice!(
    LogLevel,
    "log level",
    "debug, info, warning, error or critical"
);
choice!(
    Protocol,
    "protocol",
    r#""borg1" (borg 1.x clients, `borg serve`) or "borg2" (borg 2 clients, `borg serve --rest`)"#
);

#[derive(Default)]
struct Validator<'k> {
    errors: Vec<PolicyError>,
    key: KeyContext<'k>,
    /// Whether some value used `{name}`.
    uses_key_name: bool,
}

impl Validator<'_> {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.errors.push(PolicyError {
            message: message.into(),
            span: Some(span),
        });
    }

    /// `{name}` in `value` replaced as the key context says; an error (and the value as
    /// written) when it cannot be.
    fn expand(&mut self, value: &Spanned<String>, key: &str) -> String {
        match key_name::expand(value.get_ref(), self.key) {
            Ok(None) => value.get_ref().clone(),
            Ok(Some(expanded)) => {
                self.uses_key_name = true;
                expanded
            }
            Err(TemplateError::NoName) => {
                self.uses_key_name = true;
                self.error(
                    value.span(),
                    format!(
                        "{key} uses {PLACEHOLDER}, but no key name was given; add --name NAME to the forced command (borg-gate --policy FILE --name NAME), or to check-policy and explain"
                    ),
                );
                value.get_ref().clone()
            }
            Err(TemplateError::Unknown(placeholder)) => {
                self.error(
                    value.span(),
                    format!(
                        "{key}: {placeholder:?} is not a placeholder; the only one is {PLACEHOLDER}"
                    ),
                );
                value.get_ref().clone()
            }
        }
    }

    fn error_without_span(&mut self, message: impl Into<String>) {
        self.errors.push(PolicyError {
            message: message.into(),
            span: None,
        });
    }

    fn policy(&mut self, raw: RawPolicy, default_name: &str) -> Policy {
        if *raw.version.get_ref() != 1 {
            self.error(
                raw.version.span(),
                format!(
                    "unsupported policy version {}; this borg-gate reads `version = 1`",
                    raw.version.get_ref()
                ),
            );
        }
        let name = match raw.name {
            Some(name) => self.name(name),
            None => default_name.to_owned(),
        };
        let (engine, spans) = self.engine(raw.engine);
        let client = self.client(raw.client);
        self.engines_serve_protocols(&engine, &spans, client.protocols);
        let repository = self.repository(raw.repository, &engine, client.protocols);
        let audit = self.audit(raw.audit);
        let metrics = self.metrics(raw.metrics);
        Policy {
            name,
            key_name: self.key.name().map(|name| name.to_string()),
            uses_key_name: self.uses_key_name,
            engine,
            client,
            repository,
            audit,
            metrics,
        }
    }

    fn name(&mut self, name: Spanned<String>) -> String {
        let span = name.span();
        let name = name.into_inner();
        if !is_policy_name(&name) {
            self.error(
                span,
                format!("name {name:?} is not a plain label; use 1-64 letters, digits, '-', '_', '.' or '@'"),
            );
        }
        name
    }

    fn engine(&mut self, raw: RawEngine) -> (EngineSettings, EngineSpans) {
        let spans = EngineSpans {
            program: raw.program.as_ref().map(Spanned::span),
            borg2_program: raw.borg2_program.as_ref().map(Spanned::span),
        };
        let program = self.engine_program(raw.program, "engine program", "/usr/bin/borg");
        let borg2_program = self.engine_program(
            raw.borg2_program,
            "engine borg2_program",
            "/opt/borg2/bin/borg",
        );
        let mut env = BTreeMap::new();
        for (name, value) in raw.env {
            self.env_name(&name, "engine.env");
            if value.get_ref().contains('\0') {
                self.error(
                    value.span(),
                    format!("the value of {} contains a NUL byte", name.get_ref()),
                );
            }
            env.insert(name.into_inner(), value.into_inner());
        }
        let mut pass_env = Vec::new();
        for name in raw.pass_env {
            self.env_name(&name, "engine.pass_env");
            if env.contains_key(name.get_ref()) {
                self.error(
                    name.span(),
                    format!(
                        "{} is in both engine.env and engine.pass_env; keep one",
                        name.get_ref()
                    ),
                );
            }
            pass_env.push(name.into_inner());
        }
        (
            EngineSettings {
                program,
                borg2_program,
                env,
                pass_env,
            },
            spans,
        )
    }

    fn engine_program(
        &mut self,
        raw: Option<Spanned<String>>,
        key: &str,
        example: &str,
    ) -> EngineProgram {
        match raw {
            None => EngineProgram::Builtin,
            Some(program) if program.get_ref() == "builtin" => EngineProgram::Builtin,
            Some(program) => {
                let path = PathBuf::from(program.get_ref());
                if !is_clean_absolute(&path) {
                    self.error(
                        program.span(),
                        format!(
                            "{key} {:?} must be \"builtin\" or an absolute path without `.` or `..`, such as \"{example}\"",
                            program.get_ref()
                        ),
                    );
                }
                EngineProgram::External(path)
            }
        }
    }

    /// An external engine names the generation it serves: one for a generation the key does
    /// not serve is a misunderstanding worth stopping.
    fn engines_serve_protocols(
        &mut self,
        engine: &EngineSettings,
        spans: &EngineSpans,
        protocols: Protocols,
    ) {
        if let (EngineProgram::External(_), Some(span)) = (&engine.program, &spans.program) {
            if !protocols.contains(Protocol::Borg1) {
                self.error(
                    span.clone(),
                    "engine.program is the engine for borg 1 clients, but client.protocols does not include \"borg1\"; name a borg 2 executable in engine.borg2_program instead",
                );
            }
        }
        if let (EngineProgram::External(_), Some(span)) =
            (&engine.borg2_program, &spans.borg2_program)
        {
            if !protocols.contains(Protocol::Borg2) {
                self.error(
                    span.clone(),
                    "engine.borg2_program is the engine for borg 2 clients, but client.protocols does not include \"borg2\"; add it there (client.protocols = [\"borg1\", \"borg2\"])",
                );
            }
        }
    }

    fn env_name(&mut self, name: &Spanned<String>, key: &str) {
        let text = name.get_ref();
        if !is_env_name(text) {
            self.error(
                name.span(),
                format!("{key}: {text:?} is not a variable name; use letters, digits and '_', not starting with a digit"),
            );
        } else if text == "SSH_ORIGINAL_COMMAND" {
            self.error(
                name.span(),
                format!("{key}: SSH_ORIGINAL_COMMAND is the client's request and never reaches the engine; remove it"),
            );
        }
    }

    fn client(&mut self, raw: RawClient) -> ClientRules {
        let protocols = self.protocols(raw.protocols);
        let program_match = self.choice_or(raw.program_match.as_ref(), ProgramMatch::Basename);
        let programs = match raw.programs {
            None => DEFAULT_PROGRAMS.iter().map(|p| (*p).to_owned()).collect(),
            Some(list) => {
                if list.get_ref().is_empty() {
                    self.error(
                        list.span(),
                        "client.programs is empty; list at least \"borg\"",
                    );
                }
                let mut programs = Vec::new();
                for program in list.into_inner() {
                    let text = program.get_ref();
                    let bad_char = text.is_empty()
                        || text.chars().any(|c| c.is_whitespace() || c.is_control());
                    if bad_char {
                        self.error(
                            program.span(),
                            format!("program name {text:?} must be a single word"),
                        );
                    } else if program_match == ProgramMatch::Basename && text.contains('/') {
                        self.error(
                            program.span(),
                            format!(
                                "program {text:?} contains '/', but program_match is \"basename\"; list the basename or set program_match = \"exact\""
                            ),
                        );
                    }
                    programs.push(program.into_inner());
                }
                programs
            }
        };
        let log_levels = match raw.log_levels {
            None => LogLevel::ALL.to_vec(),
            Some(list) => {
                if list.get_ref().is_empty() {
                    self.error(
                        list.span(),
                        "client.log_levels is empty; list at least the default level",
                    );
                }
                let mut levels = Vec::new();
                for level in list.into_inner() {
                    if let Some(parsed) = self.choice::<LogLevel>(&level) {
                        if !levels.contains(&parsed) {
                            levels.push(parsed);
                        }
                    }
                }
                levels.sort();
                levels
            }
        };
        let default_log_level = match raw.default_log_level {
            None if log_levels.contains(&LogLevel::Warning) || log_levels.is_empty() => {
                LogLevel::Warning
            }
            None => {
                self.error_without_span(
                    "client.log_levels does not contain \"warning\", so client.default_log_level must name one of them",
                );
                LogLevel::Warning
            }
            Some(level) => {
                let parsed = self.choice_or(Some(&level), LogLevel::Warning);
                if !log_levels.is_empty() && !log_levels.contains(&parsed) {
                    self.error(
                        level.span(),
                        format!(
                            "default_log_level {:?} is not in client.log_levels; add it there",
                            level.get_ref()
                        ),
                    );
                }
                parsed
            }
        };
        let force_log_level = raw.force_log_level.and_then(|level| self.choice(&level));
        let mut debug_topics = Vec::new();
        for pattern in raw.debug_topics {
            let text = pattern.get_ref();
            let valid = !text.is_empty()
                && text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-*?".contains(&b));
            if !valid {
                self.error(
                    pattern.span(),
                    format!("debug topic pattern {text:?} may use letters, digits, '.', '_', '-' and the globs '*' and '?'"),
                );
            }
            debug_topics.push(super::normalize_debug_topic(text));
        }
        let lock_wait = match raw.lock_wait {
            None => DEFAULT_LOCK_WAIT,
            Some(rule) => {
                let span = rule.span();
                let rule = rule.into_inner();
                let max = self.seconds(
                    span.clone(),
                    "lock_wait.max",
                    rule.max.unwrap_or(i64::from(DEFAULT_LOCK_WAIT.max)),
                );
                let default = self.seconds(
                    span.clone(),
                    "lock_wait.default",
                    rule.default
                        .unwrap_or(i64::from(DEFAULT_LOCK_WAIT.default.min(max))),
                );
                if default > max {
                    self.error(
                        span,
                        format!(
                            "lock_wait.default ({default}) is larger than lock_wait.max ({max})"
                        ),
                    );
                }
                LockWaitRule { default, max }
            }
        };
        let unknown_options = self.choice_or(raw.unknown_options.as_ref(), UnknownOptions::Drop);
        ClientRules {
            protocols,
            programs,
            program_match,
            allow_probe: raw.allow_probe.unwrap_or(false),
            log_levels,
            default_log_level,
            force_log_level,
            debug_topics,
            lock_wait,
            unknown_options,
        }
    }

    fn protocols(&mut self, raw: Option<Spanned<Vec<Spanned<String>>>>) -> Protocols {
        let Some(list) = raw else {
            return Protocols::default();
        };
        if list.get_ref().is_empty() {
            self.error(
                list.span(),
                "client.protocols is empty; list \"borg1\", \"borg2\" or both",
            );
            return Protocols::default();
        }
        let mut protocols = Vec::new();
        for name in list.into_inner() {
            if let Some(protocol) = self.choice(&name) {
                protocols.push(protocol);
            }
        }
        if protocols.is_empty() {
            return Protocols::default();
        }
        Protocols::from_list(&protocols)
    }

    /// One of the words a [`Choice`] setting takes; an error naming them, and `None`, for
    /// any other value.
    fn choice<T: Choice>(&mut self, value: &Spanned<String>) -> Option<T> {
        let parsed = T::from_name(value.get_ref());
        if parsed.is_none() {
            self.error(
                value.span(),
                format!(
                    "{} {:?} is unknown; use {}",
                    T::SETTING,
                    value.get_ref(),
                    T::WORDS
                ),
            );
        }
        parsed
    }

    /// [`Validator::choice`] for an optional setting: `default` when it is absent or unknown.
    fn choice_or<T: Choice>(&mut self, value: Option<&Spanned<String>>, default: T) -> T {
        value
            .and_then(|value| self.choice(value))
            .unwrap_or(default)
    }

    fn seconds(&mut self, span: Range<usize>, key: &str, value: i64) -> u32 {
        match u32::try_from(value) {
            Ok(seconds) => seconds,
            Err(_) => {
                self.error(
                    span,
                    format!(
                        "{key} must be a whole number of seconds from 0 to {}",
                        u32::MAX
                    ),
                );
                0
            }
        }
    }

    fn repository(
        &mut self,
        raw: RawRepository,
        engine: &EngineSettings,
        protocols: Protocols,
    ) -> ForcedSettings {
        // Settings only a built-in engine enforces, per generation the key serves.
        let borg1_external = protocols.contains(Protocol::Borg1) && !engine.program.is_builtin();
        let borg2_external =
            protocols.contains(Protocol::Borg2) && !engine.borg2_program.is_builtin();
        let restrict_to_paths = self.paths(raw.restrict_to_paths, "restrict_to_paths");
        let restrict_to_repositories =
            self.paths(raw.restrict_to_repositories, "restrict_to_repositories");
        let unrestricted = raw.unrestricted.unwrap_or(false);
        if restrict_to_paths.is_empty() && restrict_to_repositories.is_empty() && !unrestricted {
            self.error_without_span(
                "[repository] restricts nothing; add restrict_to_paths or restrict_to_repositories \
                 (or `unrestricted = true` to allow every path this account can reach)",
            );
        }
        if unrestricted && !(restrict_to_paths.is_empty() && restrict_to_repositories.is_empty()) {
            self.error_without_span(
                "[repository] sets `unrestricted = true` together with restrictions; remove one of them",
            );
        }
        let storage_quota = raw.storage_quota.map(|quota| {
            let parsed = parse_size(quota.get_ref());
            match parsed {
                Some(bytes) if bytes == 0 || bytes >= MIN_STORAGE_QUOTA => {
                    if bytes != 0 && borg2_external {
                        self.error(
                            quota.span(),
                            "storage_quota for borg 2 clients needs the built-in engine: borg 2 has no storage quota of its own (remove engine.borg2_program)",
                        );
                    }
                    bytes
                }
                Some(_) => {
                    self.error(
                        quota.span(),
                        format!("storage_quota {:?} is too small; borg needs at least \"10M\" (or \"0\" for none)", quota.get_ref()),
                    );
                    0
                }
                None => {
                    self.error(
                        quota.span(),
                        format!(
                            "storage_quota {:?} is not a size; write a number with an optional K, M, G, T or P suffix, like \"50G\"",
                            quota.get_ref()
                        ),
                    );
                    0
                }
            }
        });
        let key_quota = self.key_quota(
            raw.key_quota,
            raw.key_quota_ledger,
            protocols,
            borg1_external,
            &restrict_to_paths,
            &restrict_to_repositories,
        );
        let umask = match raw.umask {
            None => DEFAULT_UMASK,
            Some(mask) => parse_umask(mask.get_ref()).unwrap_or_else(|| {
                self.error(
                    mask.span(),
                    format!(
                        "umask {:?} is not an octal mode from 000 to 777; write it like \"077\"",
                        mask.get_ref()
                    ),
                );
                DEFAULT_UMASK
            }),
        };
        let permissions = match raw.permissions {
            None => Permissions::All,
            Some(p) => {
                let parsed = self.choice_or(Some(&p), Permissions::All);
                let borg1 = protocols.contains(Protocol::Borg1);
                if parsed == Permissions::ReadOnly && borg1_external {
                    self.error(
                        p.span(),
                        "permissions = \"read-only\" needs the built-in engine; an external borg cannot enforce it (set engine.program = \"builtin\")",
                    );
                } else if parsed == Permissions::WriteOnly && borg1 {
                    self.error(
                        p.span(),
                        "permissions = \"write-only\" is for borg 2 clients only: a borg 1 client reads the repository's index and archives to add to it; use \"no-delete\", or serve borg 2 alone (client.protocols = [\"borg2\"])",
                    );
                }
                parsed
            }
        };
        let idle_timeout = raw.idle_timeout.and_then(|t| {
            let parsed = humantime::parse_duration(t.get_ref());
            match parsed {
                Ok(d) if d.is_zero() => None,
                Ok(d) => {
                    if borg1_external {
                        self.error(
                            t.span(),
                            "idle_timeout needs the built-in engine; an external borg cannot enforce it (set engine.program = \"builtin\")",
                        );
                    }
                    if borg2_external {
                        self.error(
                            t.span(),
                            "idle_timeout for borg 2 clients needs the built-in engine; an external borg cannot enforce it (remove engine.borg2_program)",
                        );
                    }
                    Some(d)
                }
                Err(_) => {
                    self.error(
                        t.span(),
                        format!("idle_timeout {:?} is not a duration; write it like \"10m\" or \"90s\"", t.get_ref()),
                    );
                    None
                }
            }
        });
        let lock_release = match raw.lock_release {
            None => LockRelease::default(),
            Some(release) => {
                let parsed = self.choice_or(Some(&release), LockRelease::default());
                if !protocols.contains(Protocol::Borg2) {
                    self.error(
                        release.span(),
                        "lock_release applies to borg 2 clients only, and client.protocols does not include \"borg2\"; remove it",
                    );
                } else if borg2_external {
                    self.error(
                        release.span(),
                        "lock_release needs the built-in engine for borg 2 clients; an external borg keeps every lock for 30 minutes (remove engine.borg2_program)",
                    );
                }
                parsed
            }
        };
        let mut shared_with = Vec::new();
        for name in raw.shared_with {
            if !is_policy_name(name.get_ref()) {
                self.error(
                    name.span(),
                    format!(
                        "shared_with: {:?} is not a policy name; list the `name` of each policy whose keys may reach the same repositories",
                        name.get_ref()
                    ),
                );
            }
            shared_with.push(name.into_inner());
        }
        let request_timeout = raw.request_timeout.and_then(|t| {
            self.builtin_duration(
                &t,
                "request_timeout",
                "\"5m\"",
                borg1_external,
                borg2_external,
            )
        });
        let session_limit = raw
            .session_limit
            .and_then(|t| {
                self.builtin_duration(
                    &t,
                    "session_limit",
                    "\"12h\"",
                    borg1_external,
                    borg2_external,
                )
            })
            .filter(|limit| !limit.is_zero());
        let allow_lock_bypass = match raw.allow_lock_bypass {
            None => false,
            Some(allow) => {
                if borg1_external {
                    self.error(
                        allow.span(),
                        "allow_lock_bypass needs the built-in engine; an external borg always honours a client's lock=False (set engine.program = \"builtin\")",
                    );
                }
                allow.into_inner()
            }
        };
        ForcedSettings {
            restrict_to_paths,
            restrict_to_repositories,
            shared_with,
            append_only: raw.append_only.unwrap_or(false),
            storage_quota,
            key_quota,
            umask,
            permissions,
            idle_timeout,
            request_timeout,
            session_limit,
            allow_lock_bypass,
            lock_release,
        }
    }

    /// A duration only the built-in engine enforces; `"0"` is zero (no limit). `None` after
    /// an error.
    fn builtin_duration(
        &mut self,
        value: &Spanned<String>,
        key: &str,
        example: &str,
        borg1_external: bool,
        borg2_external: bool,
    ) -> Option<Duration> {
        let text = value.get_ref();
        let parsed = if text == "0" {
            Ok(Duration::ZERO)
        } else {
            humantime::parse_duration(text)
        };
        match parsed {
            Ok(duration) => {
                if borg1_external {
                    self.error(
                        value.span(),
                        format!("{key} needs the built-in engine; an external borg cannot enforce it (set engine.program = \"builtin\")"),
                    );
                }
                if borg2_external && !duration.is_zero() {
                    self.error(
                        value.span(),
                        format!("{key} for borg 2 clients needs the built-in engine; an external borg cannot enforce it (remove engine.borg2_program)"),
                    );
                }
                Some(duration)
            }
            Err(_) => {
                self.error(
                    value.span(),
                    format!("{key} {text:?} is not a duration; write it like {example} (or \"0\" for no limit)"),
                );
                None
            }
        }
    }

    /// `key_quota` (a size, at least borg's 10M) needs `key_quota_ledger` (an absolute path
    /// outside every restricted path, so that no client can open or create anything there),
    /// and the built-in engine. "0" means no key quota.
    fn key_quota(
        &mut self,
        limit: Option<Spanned<String>>,
        ledger: Option<Spanned<String>>,
        protocols: Protocols,
        external: bool,
        restrict_to_paths: &[PathBuf],
        restrict_to_repositories: &[PathBuf],
    ) -> Option<KeyQuota> {
        let Some(limit) = limit else {
            if let Some(ledger) = ledger {
                self.error(
                    ledger.span(),
                    "key_quota_ledger is set but key_quota is not; set key_quota = \"50G\" or remove key_quota_ledger",
                );
            }
            return None;
        };
        let bytes = match parse_size(limit.get_ref()) {
            Some(0) => return None,
            Some(bytes) if bytes >= MIN_STORAGE_QUOTA => bytes,
            Some(_) => {
                self.error(
                    limit.span(),
                    format!("key_quota {:?} is too small; borg needs at least \"10M\" (or \"0\" for none)", limit.get_ref()),
                );
                return None;
            }
            None => {
                self.error(
                    limit.span(),
                    format!(
                        "key_quota {:?} is not a size; write a number with an optional K, M, G, T or P suffix, like \"50G\"",
                        limit.get_ref()
                    ),
                );
                return None;
            }
        };
        if external {
            self.error(
                limit.span(),
                "key_quota needs the built-in engine; an external borg cannot enforce it (set engine.program = \"builtin\")",
            );
        }
        if protocols.contains(Protocol::Borg2) {
            self.error(
                limit.span(),
                "key_quota counts borg 1 repositories only, and this policy also serves borg 2 clients; give borg 2 keys a storage_quota instead",
            );
        }
        let Some(ledger) = ledger else {
            self.error(
                limit.span(),
                "key_quota needs key_quota_ledger, the file where this key's sessions keep their count, such as \"/var/lib/borg-gate/quota/alice.json\"",
            );
            return None;
        };
        let path = PathBuf::from(ledger.get_ref());
        let is_file_path = path.file_name().is_some() && !ledger.get_ref().ends_with('/');
        if !is_clean_absolute(&path) || !is_file_path {
            self.error(
                ledger.span(),
                format!(
                    "key_quota_ledger {:?} must be an absolute file path without `.` or `..`",
                    ledger.get_ref()
                ),
            );
        } else if let Some(inside) = restrict_to_paths
            .iter()
            .chain(restrict_to_repositories)
            .find(|allowed| path.starts_with(allowed))
        {
            self.error(
                ledger.span(),
                format!(
                    "key_quota_ledger {:?} is inside {}, where clients reach; keep it outside, e.g. in /var/lib/borg-gate",
                    ledger.get_ref(),
                    inside.display()
                ),
            );
        }
        Some(KeyQuota {
            limit: bytes,
            ledger: path,
        })
    }

    fn paths(&mut self, raw: Vec<Spanned<String>>, key: &str) -> Vec<PathBuf> {
        let mut paths = Vec::new();
        for path in raw {
            let parsed = PathBuf::from(self.expand(&path, key));
            if !is_clean_absolute(&parsed) {
                self.error(
                    path.span(),
                    format!(
                        "{key}: {:?} must be an absolute path without `.` or `..` components",
                        path.get_ref()
                    ),
                );
            } else if parsed == Path::new("/") {
                self.error(
                    path.span(),
                    format!("{key}: \"/\" restricts nothing; name the directory that holds the repositories"),
                );
            }
            paths.push(parsed);
        }
        paths
    }

    fn audit(&mut self, raw: RawAudit) -> AuditSettings {
        let file = raw.file.map(|file| {
            let path = PathBuf::from(self.expand(&file, "audit.file"));
            if !is_clean_absolute(&path) {
                self.error(
                    file.span(),
                    format!(
                        "audit.file {:?} must be an absolute path without `.` or `..`",
                        file.get_ref()
                    ),
                );
            }
            path
        });
        let syslog = raw.syslog.unwrap_or(false);
        if file.is_none() && !syslog {
            self.error_without_span(
                "[audit] has no sink; set audit.file = \"/var/log/borg-gate/audit.jsonl\" or audit.syslog = true",
            );
        }
        let on_failure = self.choice_or(raw.on_failure.as_ref(), OnAuditFailure::Refuse);
        AuditSettings {
            file,
            syslog,
            on_failure,
        }
    }

    fn metrics(&mut self, raw: RawMetrics) -> MetricsSettings {
        let textfile = raw.textfile.map(|file| {
            let path = PathBuf::from(self.expand(&file, "metrics.textfile"));
            let is_prom = path.extension().is_some_and(|ext| ext == "prom");
            if !is_clean_absolute(&path) || !is_prom {
                self.error(
                    file.span(),
                    format!(
                        "metrics.textfile {:?} must be an absolute path ending in .prom, inside node_exporter's textfile directory",
                        file.get_ref()
                    ),
                );
            }
            path
        });
        MetricsSettings { textfile }
    }
}

/// A policy's `name`: 1-64 letters, digits, `-`, `_`, `.` or `@`.
pub(crate) fn is_policy_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
}

/// An absolute path whose components are all normal names (no `.`, `..` or empty parts).
pub(crate) fn is_clean_absolute(path: &Path) -> bool {
    let text = path.as_os_str().as_encoded_bytes();
    let Some(rest) = text.strip_prefix(b"/") else {
        return false;
    };
    let rest = rest.strip_suffix(b"/").unwrap_or(rest);
    !text.contains(&0)
        && (rest.is_empty()
            || rest
                .split(|&b| b == b'/')
                .all(|part| !matches!(part, b"" | b"." | b"..")))
}

/// A POSIX environment variable name.
pub(crate) fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// borg's `parse_file_size`: a decimal number with an optional K/M/G/T/P (powers of 1000)
/// suffix, fractions allowed and truncated.
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let (number, factor) = match text.as_bytes().last()? {
        b'K' => (&text[..text.len() - 1], 1e3),
        b'M' => (&text[..text.len() - 1], 1e6),
        b'G' => (&text[..text.len() - 1], 1e9),
        b'T' => (&text[..text.len() - 1], 1e12),
        b'P' => (&text[..text.len() - 1], 1e15),
        _ => (text, 1.0),
    };
    let plain = !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if !plain {
        return None;
    }
    let value = number.parse::<f64>().ok()? * factor;
    (value.is_finite() && (0.0..1.8e19).contains(&value)).then_some(value as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "version = 1\n[repository]\nrestrict_to_paths = [\"/srv/borg/alice\"]\n[audit]\nfile = \"/var/log/borg-gate/audit.jsonl\"\n";

    fn errors_of(text: &str) -> Vec<String> {
        match parse_policy(text, "test") {
            Ok(_) => Vec::new(),
            Err(errors) => errors.render(Path::new("p.toml"), text),
        }
    }

    #[test]
    fn minimal_policy_takes_safe_defaults() {
        let policy = parse_policy(MINIMAL, "alice").unwrap();
        assert_eq!(policy.name, "alice");
        assert_eq!(policy.engine.program, EngineProgram::Builtin);
        assert_eq!(policy.client.programs, vec!["borg".to_owned()]);
        assert!(!policy.client.allow_probe);
        assert_eq!(policy.client.default_log_level, LogLevel::Warning);
        assert_eq!(policy.client.lock_wait, DEFAULT_LOCK_WAIT);
        assert_eq!(policy.client.unknown_options, UnknownOptions::Drop);
        assert!(policy.client.debug_topics.is_empty());
        assert_eq!(policy.repository.umask, 0o077);
        assert_eq!(policy.repository.permissions, Permissions::All);
        assert_eq!(policy.audit.on_failure, OnAuditFailure::Refuse);
    }

    #[test]
    fn unknown_key_is_an_error_with_line_and_column() {
        let text = MINIMAL.replace("[audit]", "[audit]\nsyslgo = true");
        let errors = errors_of(&text);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("p.toml:5:1: unknown field `syslgo`"),
            "{errors:?}"
        );
        assert!(errors[0].contains("fix its spelling"), "{errors:?}");
    }

    #[test]
    fn unquoted_values_get_a_hint_with_the_line_quoted() {
        let errors = errors_of(&MINIMAL.replace("[audit]", "umask = 077\n[audit]"));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("p.toml:4:9: "), "{errors:?}");
        assert!(
            errors[0].ends_with("; write the value in quotes: umask = \"077\""),
            "{errors:?}"
        );
        let errors = errors_of(&MINIMAL.replace("[audit]", "idle_timeout = 10m # ten\n[audit]"));
        assert!(
            errors[0].ends_with("; write the value in quotes: idle_timeout = \"10m\""),
            "{errors:?}"
        );
        let errors = errors_of(&MINIMAL.replace("[audit]", "idle_timeout = 600\n[audit]"));
        assert!(
            errors[0].ends_with("; write the value in quotes: idle_timeout = \"600\""),
            "{errors:?}"
        );
        // Other syntax errors, and keys that take no string, get no such hint.
        let errors = errors_of(&MINIMAL.replace("[audit]", "umask = [\n[audit]"));
        assert!(!errors[0].contains("in quotes"), "{errors:?}");
        let errors = errors_of(&MINIMAL.replace("[audit]", "append_only = yes\n[audit]"));
        assert!(!errors[0].contains("in quotes"), "{errors:?}");
    }

    #[test]
    fn wrong_version_points_at_the_value() {
        let errors = errors_of(&MINIMAL.replace("version = 1", "version = 2"));
        assert_eq!(
            errors,
            vec!["p.toml:1:11: unsupported policy version 2; this borg-gate reads `version = 1`"]
        );
    }

    #[test]
    fn missing_version_is_explained() {
        let errors = errors_of(&MINIMAL.replace("version = 1\n", ""));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("missing `version = 1`"), "{errors:?}");
    }

    #[test]
    fn every_semantic_error_is_reported_at_once() {
        let text = "version = 1\n[client]\nlog_levels = [\"loud\"]\n[repository]\nrestrict_to_paths = [\"relative\"]\numask = \"999\"\nstorage_quota = \"1M\"\n[audit]\nsyslog = true\n";
        let errors = errors_of(text);
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(
            errors[0].starts_with("p.toml:3:15: log level \"loud\""),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("\"relative\" must be an absolute path"))
        );
        assert!(errors.iter().any(|e| e.contains("umask \"999\"")));
        assert!(errors.iter().any(|e| e.contains("too small")));
    }

    #[test]
    fn policy_without_restriction_is_refused_unless_explicitly_unrestricted() {
        let open = "version = 1\n[audit]\nsyslog = true\n";
        assert!(errors_of(open)[0].contains("restricts nothing"));
        let explicit = "version = 1\n[repository]\nunrestricted = true\n[audit]\nsyslog = true\n";
        assert!(errors_of(explicit).is_empty());
    }

    #[test]
    fn policy_without_audit_sink_is_refused() {
        let text = "version = 1\n[repository]\nrestrict_to_paths = [\"/srv\"]\n";
        assert!(errors_of(text)[0].contains("[audit] has no sink"));
    }

    #[test]
    fn builtin_only_settings_are_refused_with_an_external_engine() {
        let text = MINIMAL.replace(
            "[repository]\n",
            "[engine]\nprogram = \"/usr/bin/borg\"\n[repository]\npermissions = \"read-only\"\nidle_timeout = \"10m\"\n",
        );
        let errors = errors_of(&text);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors
                .iter()
                .all(|e| e.contains("needs the built-in engine"))
        );
    }

    #[test]
    fn protocols_default_to_borg1_and_may_name_both_generations() {
        let policy = parse_policy(MINIMAL, "x").unwrap();
        assert_eq!(policy.client.protocols, Protocols::only(Protocol::Borg1));
        assert_eq!(policy.engine.borg2_program, EngineProgram::Builtin);
        assert_eq!(policy.repository.lock_release, LockRelease::Release);
        let text = MINIMAL.replace(
            "[repository]\n",
            "[client]\nprotocols = [\"borg2\", \"borg1\", \"borg2\"]\n[repository]\n",
        );
        let policy = parse_policy(&text, "x").unwrap();
        assert_eq!(policy.client.protocols, Protocols::BOTH);
        let text = MINIMAL.replace(
            "[repository]\n",
            "[client]\nprotocols = [\"borg2\"]\n[repository]\n",
        );
        let policy = parse_policy(&text, "x").unwrap();
        assert_eq!(policy.client.protocols, Protocols::only(Protocol::Borg2));
    }

    #[test]
    fn unknown_or_empty_protocols_point_at_the_value() {
        let text = MINIMAL.replace(
            "[repository]\n",
            "[client]\nprotocols = [\"borg1\", \"borg3\"]\n[repository]\n",
        );
        assert_eq!(
            errors_of(&text),
            [
                "p.toml:3:23: protocol \"borg3\" is unknown; use \"borg1\" (borg 1.x clients, `borg serve`) or \"borg2\" (borg 2 clients, `borg serve --rest`)"
            ]
        );
        let text = MINIMAL.replace("[repository]\n", "[client]\nprotocols = []\n[repository]\n");
        let errors = errors_of(&text);
        assert!(
            errors[0].starts_with("p.toml:3:13: client.protocols is empty"),
            "{errors:?}"
        );
    }

    #[test]
    fn permissions_take_borg2s_four_modes() {
        for name in Permissions::NAMES {
            let text = MINIMAL.replace(
                "[repository]\n",
                &format!(
                    "[client]\nprotocols = [\"borg2\"]\n[repository]\npermissions = \"{name}\"\n"
                ),
            );
            let policy = parse_policy(&text, "x").unwrap();
            assert_eq!(policy.repository.permissions.name(), name);
        }
        let errors =
            errors_of(&MINIMAL.replace("[audit]", "permissions = \"delete-only\"\n[audit]"));
        assert!(
            errors[0].ends_with("use \"all\", \"no-delete\", \"write-only\" or \"read-only\""),
            "{errors:?}"
        );
    }

    #[test]
    fn every_one_word_setting_refuses_an_unknown_word_at_its_value_listing_the_words() {
        let cases = [
            (
                "program_match = \"glob\"",
                "",
                "",
                "program_match \"glob\" is unknown; use \"basename\" or \"exact\"",
            ),
            (
                "unknown_options = \"ignore\"",
                "",
                "",
                "unknown_options \"ignore\" is unknown; use \"drop\" or \"reject\"",
            ),
            (
                "force_log_level = \"loud\"",
                "",
                "",
                "log level \"loud\" is unknown; use debug, info, warning, error or critical",
            ),
            (
                "",
                "permissions = \"delete-only\"",
                "",
                "permissions \"delete-only\" is unknown; use \"all\", \"no-delete\", \"write-only\" or \"read-only\"",
            ),
            (
                "",
                "lock_release = \"drop\"",
                "",
                "lock_release \"drop\" is unknown; use \"release\" or \"keep\"",
            ),
            (
                "",
                "",
                "on_failure = \"ignore\"",
                "audit.on_failure \"ignore\" is unknown; use \"refuse\" or \"continue\"",
            ),
        ];
        for (client, repository, audit, message) in cases {
            let text = format!(
                "version = 1\n[client]\nprotocols = [\"borg2\"]\n{client}\n[repository]\nrestrict_to_paths = [\"/srv/b\"]\n{repository}\n[audit]\nsyslog = true\n{audit}\n"
            );
            let value = [client, repository, audit].concat();
            let value = &value[value.find('"').unwrap()..];
            let (line, column) = line_and_column(&text, text.find(value).unwrap());
            assert_eq!(
                errors_of(&text),
                [format!("p.toml:{line}:{column}: {message}")],
                "{text}"
            );
        }
    }

    #[test]
    fn write_only_is_refused_for_borg1_clients() {
        for protocols in ["[\"borg1\"]", "[\"borg1\", \"borg2\"]"] {
            let text = MINIMAL.replace(
                "[repository]\n",
                &format!(
                    "[client]\nprotocols = {protocols}\n[repository]\npermissions = \"write-only\"\n"
                ),
            );
            let errors = errors_of(&text);
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(
                errors[0].contains("\"write-only\" is for borg 2 clients only"),
                "{errors:?}"
            );
        }
        // no-delete is borg 1's append-only mode, which an external borg enforces too.
        let text = MINIMAL.replace(
            "[repository]\n",
            "[engine]\nprogram = \"/usr/bin/borg\"\n[repository]\npermissions = \"no-delete\"\n",
        );
        assert_eq!(errors_of(&text), Vec::<String>::new());
    }

    #[test]
    fn builtin_only_settings_for_borg2_are_refused_with_an_external_borg2_engine() {
        let text = MINIMAL.replace(
            "[repository]\n",
            "[engine]\nborg2_program = \"/opt/borg2/bin/borg\"\n[client]\nprotocols = [\"borg2\"]\n\
             [repository]\npermissions = \"read-only\"\nidle_timeout = \"10m\"\nstorage_quota = \"50G\"\nlock_release = \"keep\"\n\
             request_timeout = \"2m\"\nsession_limit = \"12h\"\n",
        );
        let errors = errors_of(&text);
        assert_eq!(errors.len(), 5, "{errors:?}");
        for needle in [
            "idle_timeout for borg 2 clients needs the built-in engine",
            "request_timeout for borg 2 clients needs the built-in engine",
            "session_limit for borg 2 clients needs the built-in engine",
            "storage_quota for borg 2 clients needs the built-in engine",
            "lock_release needs the built-in engine",
        ] {
            assert!(errors.iter().any(|e| e.contains(needle)), "{errors:?}");
        }
        // The external borg 2 enforces permissions itself; borg 1's engine is not involved.
        let text = MINIMAL.replace(
            "[repository]\n",
            "[engine]\nprogram = \"/usr/bin/borg\"\nborg2_program = \"/opt/borg2/bin/borg\"\n\
             [client]\nprotocols = [\"borg2\"]\n[repository]\npermissions = \"read-only\"\n",
        );
        let errors = errors_of(&text);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("p.toml:3:11: engine.program is the engine for borg 1 clients"),
            "{errors:?}"
        );
    }

    #[test]
    fn an_external_engine_for_a_generation_the_key_does_not_serve_is_an_error() {
        let text = MINIMAL.replace(
            "[repository]\n",
            "[engine]\nborg2_program = \"/opt/borg2/bin/borg\"\n[repository]\n",
        );
        let errors = errors_of(&text);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("p.toml:3:17: engine.borg2_program is the engine for borg 2 clients, but client.protocols does not include \"borg2\""),
            "{errors:?}"
        );
        let text = MINIMAL.replace(
            "[repository]\n",
            "[engine]\nborg2_program = \"borg\"\n[client]\nprotocols = [\"borg2\"]\n[repository]\n",
        );
        assert!(
            errors_of(&text)[0]
                .contains("engine borg2_program \"borg\" must be \"builtin\" or an absolute path")
        );
    }

    #[test]
    fn lock_release_is_for_borg2_clients() {
        let text = MINIMAL.replace("[audit]", "lock_release = \"keep\"\n[audit]");
        assert!(errors_of(&text)[0].contains("lock_release applies to borg 2 clients only"));
        let text = MINIMAL.replace(
            "[repository]\n",
            "[client]\nprotocols = [\"borg2\"]\n[repository]\nlock_release = \"keep\"\n",
        );
        let policy = parse_policy(&text, "x").unwrap();
        assert_eq!(policy.repository.lock_release, LockRelease::Keep);
        let text = text.replace("\"keep\"", "\"never\"");
        assert!(errors_of(&text)[0].contains("use \"release\" or \"keep\""));
    }

    #[test]
    fn engine_program_must_be_absolute() {
        let text = MINIMAL.replace(
            "[repository]\n",
            "[engine]\nprogram = \"borg\"\n[repository]\n",
        );
        assert!(errors_of(&text)[0].contains("must be \"builtin\" or an absolute path"));
    }

    #[test]
    fn pass_env_cannot_name_ssh_original_command() {
        let text = MINIMAL.replace(
            "[repository]\n",
            "[engine]\npass_env = [\"SSH_ORIGINAL_COMMAND\", \"1BAD\"]\n[repository]\n",
        );
        let errors = errors_of(&text);
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    #[test]
    fn default_log_level_must_be_allowed() {
        let text = MINIMAL.replace(
            "[repository]\n",
            "[client]\nlog_levels = [\"info\"]\ndefault_log_level = \"warning\"\n[repository]\n",
        );
        assert!(errors_of(&text)[0].contains("not in client.log_levels"));
        let implicit = MINIMAL.replace(
            "[repository]\n",
            "[client]\nlog_levels = [\"info\"]\n[repository]\n",
        );
        assert!(errors_of(&implicit)[0].contains("must name one of them"));
    }

    #[test]
    fn lock_wait_default_cannot_exceed_max() {
        let text = MINIMAL.replace(
            "[repository]\n",
            "[client]\nlock_wait = { default = 700, max = 600 }\n[repository]\n",
        );
        assert!(errors_of(&text)[0].contains("larger than lock_wait.max"));
        let negative = MINIMAL.replace(
            "[repository]\n",
            "[client]\nlock_wait = { max = -1 }\n[repository]\n",
        );
        assert!(errors_of(&negative)[0].contains("whole number of seconds"));
    }

    #[test]
    fn debug_topic_patterns_are_normalised_like_borg() {
        let text = MINIMAL.replace(
            "[repository]\n",
            "[client]\ndebug_topics = [\"repository\", \"borg.debug.lock*\"]\n[repository]\n",
        );
        let policy = parse_policy(&text, "x").unwrap();
        assert_eq!(
            policy.client.debug_topics,
            vec!["borg.debug.repository", "borg.debug.lock*"]
        );
    }

    #[test]
    fn root_is_not_a_restriction() {
        let text = MINIMAL.replace("/srv/borg/alice", "/");
        assert!(errors_of(&text)[0].contains("restricts nothing"));
    }

    #[test]
    fn key_quota_needs_a_ledger_outside_the_restricted_paths_and_the_builtin_engine() {
        let with = |lines: &str| MINIMAL.replace("[audit]", &format!("{lines}\n[audit]"));
        let policy = parse_policy(
            &with("key_quota = \"20G\"\nkey_quota_ledger = \"/var/lib/borg-gate/alice.json\""),
            "x",
        )
        .unwrap();
        assert_eq!(
            policy.repository.key_quota,
            Some(KeyQuota {
                limit: 20_000_000_000,
                ledger: PathBuf::from("/var/lib/borg-gate/alice.json")
            })
        );
        assert_eq!(
            parse_policy(&with("key_quota = \"0\""), "x")
                .unwrap()
                .repository
                .key_quota,
            None
        );
        let cases = [
            ("key_quota = \"20G\"", "key_quota needs key_quota_ledger"),
            (
                "key_quota_ledger = \"/var/lib/q.json\"",
                "key_quota_ledger is set but key_quota is not",
            ),
            (
                "key_quota = \"1M\"\nkey_quota_ledger = \"/var/lib/q.json\"",
                "key_quota \"1M\" is too small",
            ),
            (
                "key_quota = \"lots\"\nkey_quota_ledger = \"/var/lib/q.json\"",
                "key_quota \"lots\" is not a size",
            ),
            (
                "key_quota = \"20G\"\nkey_quota_ledger = \"var/q.json\"",
                "must be an absolute file path",
            ),
            (
                "key_quota = \"20G\"\nkey_quota_ledger = \"/var/lib/\"",
                "must be an absolute file path",
            ),
            (
                "key_quota = \"20G\"\nkey_quota_ledger = \"/srv/borg/alice/q.json\"",
                "is inside /srv/borg/alice, where clients reach",
            ),
        ];
        for (lines, expected) in cases {
            let errors = errors_of(&with(lines));
            assert_eq!(errors.len(), 1, "{lines}: {errors:?}");
            assert!(errors[0].contains(expected), "{lines}: {errors:?}");
        }
        let external = with("key_quota = \"20G\"\nkey_quota_ledger = \"/var/lib/q.json\"").replace(
            "[repository]",
            "[engine]\nprogram = \"/usr/bin/borg\"\n[repository]",
        );
        assert!(errors_of(&external)[0].contains("key_quota needs the built-in engine"));
    }

    #[test]
    fn parse_size_follows_borg() {
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("10M"), Some(10_000_000));
        assert_eq!(parse_size("1.5T"), Some(1_500_000_000_000));
        assert_eq!(parse_size("50G"), Some(50_000_000_000));
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("G"), None);
        assert_eq!(parse_size("-5G"), None);
        assert_eq!(parse_size("5g"), None);
        assert_eq!(parse_size("1e3"), None);
        assert_eq!(parse_size("99999999999P"), None);
    }

    #[test]
    fn umask_parsing_is_octal_and_bounded() {
        assert_eq!(parse_umask("077"), Some(0o77));
        assert_eq!(parse_umask("0077"), Some(0o77));
        assert_eq!(parse_umask("0o027"), Some(0o27));
        assert_eq!(parse_umask("000"), Some(0));
        assert_eq!(parse_umask("8"), None);
        assert_eq!(parse_umask("1000"), None);
        assert_eq!(parse_umask(""), None);
        assert_eq!(parse_umask("-1"), None);
    }

    #[test]
    fn clean_absolute_paths() {
        assert!(is_clean_absolute(Path::new("/srv/borg")));
        assert!(!is_clean_absolute(Path::new("srv/borg")));
        assert!(!is_clean_absolute(Path::new("/srv/../etc")));
        assert!(!is_clean_absolute(Path::new("/srv/./x")));
        assert!(!is_clean_absolute(Path::new("/srv//x")));
        assert!(!is_clean_absolute(Path::new("/srv/.")));
        assert!(!is_clean_absolute(Path::new("/srv/..")));
        assert!(is_clean_absolute(Path::new("/srv/borg/")));
        assert!(is_clean_absolute(Path::new("/")));
    }

    #[test]
    fn line_and_column_counts_characters() {
        assert_eq!(line_and_column("a\nbc", 3), (2, 2));
        assert_eq!(line_and_column("ää\nx", 4), (1, 3));
        assert_eq!(line_and_column("x", 99), (1, 2));
    }

    #[test]
    fn session_limits_and_lock_bypass_are_read_and_checked() {
        let with = |extra: &str| MINIMAL.replace("[audit]", &format!("{extra}\n[audit]"));
        let policy = parse_policy(
            &with("request_timeout = \"90s\"\nsession_limit = \"12h\"\nallow_lock_bypass = true"),
            "t",
        )
        .unwrap();
        assert_eq!(
            policy.repository.request_timeout,
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            policy.repository.session_limit,
            Some(Duration::from_secs(43200))
        );
        assert!(policy.repository.allow_lock_bypass);
        let defaults = parse_policy(MINIMAL, "t").unwrap();
        assert_eq!(defaults.repository.request_timeout, None);
        assert_eq!(defaults.repository.session_limit, None);
        assert!(!defaults.repository.allow_lock_bypass);
        let off =
            parse_policy(&with("request_timeout = \"0\"\nsession_limit = \"0\""), "t").unwrap();
        assert_eq!(off.repository.request_timeout, Some(Duration::ZERO));
        assert_eq!(off.repository.session_limit, None);
        for (extra, message) in [
            (
                "request_timeout = \"soon\"",
                "p.toml:4:19: request_timeout \"soon\" is not a duration; write it like \"5m\" (or \"0\" for no limit)",
            ),
            (
                "session_limit = \"1 fortnight\"",
                "p.toml:4:17: session_limit \"1 fortnight\" is not a duration; write it like \"12h\" (or \"0\" for no limit)",
            ),
            (
                "allow_lock_bypass = \"yes\"",
                "invalid type: string \"yes\", expected a boolean",
            ),
        ] {
            let errors = errors_of(&with(extra));
            assert_eq!(errors.len(), 1, "{extra}: {errors:?}");
            assert!(errors[0].contains(message), "{extra}: {errors:?}");
        }
        let external = "[engine]\nprogram = \"/usr/bin/borg\"\n";
        for key in [
            "request_timeout = \"1m\"",
            "session_limit = \"1h\"",
            "allow_lock_bypass = false",
        ] {
            let errors = errors_of(&format!("{}{external}", with(key)));
            assert_eq!(errors.len(), 1, "{key}: {errors:?}");
            assert!(
                errors[0].contains("needs the built-in engine"),
                "{errors:?}"
            );
        }
    }

    #[test]
    fn oversized_file_is_refused_before_parsing() {
        let text = "#".repeat(MAX_POLICY_SIZE + 1);
        assert!(errors_of(&text)[0].contains("larger than"));
    }
}
