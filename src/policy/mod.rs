//! Per-key TOML policies: the validated model, its validation, and loading from disk.
//!
//! [`model`] mirrors the file, [`validate`] turns it into a [`Policy`] (pure, no I/O), and
//! [`load`] reads the file with the owner and mode checks of a security tool.

pub mod key_name;
pub mod load;
pub mod model;
pub mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub use key_name::{KeyContext, KeyName};
pub use load::{LoadError, load_policy, load_policy_for_key};
pub use validate::{PolicyError, parse_policy, parse_policy_for_key};

/// A validated policy: everything the gate needs to judge one client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Label for audit records and metrics.
    pub name: String,
    /// The key's `--name` from the forced command, which `{name}` became.
    pub key_name: Option<String>,
    /// Whether the file uses `{name}` (and so needs `--name` in every forced command).
    pub uses_key_name: bool,
    pub engine: EngineSettings,
    pub client: ClientRules,
    pub repository: ForcedSettings,
    pub audit: AuditSettings,
    pub metrics: MetricsSettings,
}

/// Which program serves the repository, and what environment it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineSettings {
    pub program: EngineProgram,
    /// Variables set for the engine (this is where an administrator puts BORG_XXX settings).
    pub env: BTreeMap<String, String>,
    /// Names copied from borg-gate's own environment, e.g. set in the forced command itself.
    pub pass_env: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineProgram {
    /// `borg-gate serve`, re-executed through `/proc/self/exe`.
    Builtin,
    /// An external borg 1.x executable, by absolute path.
    External(PathBuf),
}

impl EngineProgram {
    pub fn is_builtin(&self) -> bool {
        matches!(self, EngineProgram::Builtin)
    }
}

/// What a client may choose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRules {
    /// Accepted spellings of the program word (`borg`, `borg1`, `/usr/bin/borg`, ...).
    pub programs: Vec<String>,
    pub program_match: ProgramMatch,
    /// Whether the connectivity probe `true` is answered with success.
    pub allow_probe: bool,
    pub log_levels: Vec<LogLevel>,
    pub default_log_level: LogLevel,
    /// When set, the client's log level is ignored and this one is used.
    pub force_log_level: Option<LogLevel>,
    /// Glob patterns over normalised debug topics (see [`normalize_debug_topic`]).
    pub debug_topics: Vec<String>,
    pub lock_wait: LockWaitRule,
    pub unknown_options: UnknownOptions,
}

/// How the client's program word is compared with [`ClientRules::programs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramMatch {
    /// `/usr/local/bin/borg1` matches `borg1`.
    Basename,
    /// The word must equal an entry exactly.
    Exact,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockWaitRule {
    /// Seconds used when the client sends none (or an unusable value).
    pub default: u32,
    /// Larger requests are clamped to this.
    pub max: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownOptions {
    Drop,
    Reject,
}

/// Settings that come from the policy only, never from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForcedSettings {
    pub restrict_to_paths: Vec<PathBuf>,
    pub restrict_to_repositories: Vec<PathBuf>,
    pub append_only: bool,
    /// Bytes; `None` leaves the repository's own quota in force.
    pub storage_quota: Option<u64>,
    /// One limit across every repository the key reaches (built-in engine only).
    pub key_quota: Option<KeyQuota>,
    pub umask: u32,
    pub permissions: Permissions,
    pub idle_timeout: Option<Duration>,
    /// Names of policies whose keys may reach the same repositories on purpose (`doctor`
    /// does not warn about those overlaps).
    pub shared_with: Vec<String>,
    /// How long after it began a request must have arrived; `None` leaves the engine's
    /// default, `Some(ZERO)` turns the deadline off.
    pub request_timeout: Option<Duration>,
    /// The longest a session may last; `None`: no limit.
    pub session_limit: Option<Duration>,
    /// A client's `lock=False` may read without a lock (built-in engine only).
    pub allow_lock_bypass: bool,
}

/// The policy's `key_quota` and the ledger that enforces it (see `engine::borg1::key_quota`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyQuota {
    /// Bytes, as the repository quota counts them (what the segment files use on disk).
    pub limit: u64,
    /// The ledger file all sessions of this policy share.
    pub ledger: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    pub file: Option<PathBuf>,
    pub syslog: bool,
    pub on_failure: OnAuditFailure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnAuditFailure {
    /// Fail closed: no audit record, no session.
    Refuse,
    Continue,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricsSettings {
    /// A node_exporter textfile-collector file updated after every decision.
    pub textfile: Option<PathBuf>,
}

pub use crate::common::log_level::LogLevel;

/// What the engine lets a key do (built-in engine only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Permissions {
    #[default]
    All,
    /// list, info, extract, diff, check without repair; no writes of any kind.
    ReadOnly,
}

impl Permissions {
    pub fn name(self) -> &'static str {
        match self {
            Permissions::All => "all",
            Permissions::ReadOnly => "read-only",
        }
    }

    pub fn from_name(name: &str) -> Option<Permissions> {
        match name {
            "all" => Some(Permissions::All),
            "read-only" => Some(Permissions::ReadOnly),
            _ => None,
        }
    }
}

/// borg's normalisation of a debug topic: a topic without a dot is `borg.debug.<topic>`.
pub fn normalize_debug_topic(topic: &str) -> String {
    if topic.contains('.') {
        topic.to_owned()
    } else {
        format!("borg.debug.{topic}")
    }
}

/// The default umask of `borg serve`: files 0600, directories 0700.
pub const DEFAULT_UMASK: u32 = 0o077;

/// Parses an octal umask the way borg's `--umask` does (`int(s, 8)`), limited to permission bits.
pub fn parse_umask(text: &str) -> Option<u32> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return None;
    }
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|mask| *mask <= 0o777)
}
