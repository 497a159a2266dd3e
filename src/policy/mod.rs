//! Per-key TOML policies: the validated model, its validation, and loading from disk.
//!
//! [`model`] mirrors the file, [`validate`] turns it into a [`Policy`] (pure, no I/O), and
//! [`load`] reads the file with the owner and mode checks of a security tool.

pub mod key_name;
pub(crate) mod load;
pub(crate) mod model;
pub(crate) mod validate;

use std::collections::BTreeMap;
use std::fmt;
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
    /// The engine for borg 1 clients (`serve`).
    pub program: EngineProgram,
    /// The engine for borg 2 clients (`serve --rest`).
    pub borg2_program: EngineProgram,
    /// Variables set for the engine (this is where an administrator puts BORG_XXX settings).
    pub env: BTreeMap<String, String>,
    /// Names copied from borg-gate's own environment, e.g. set in the forced command itself.
    pub pass_env: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineProgram {
    /// `borg-gate serve`, re-executed through `/proc/self/exe`.
    Builtin,
    /// An external borg executable, by absolute path: borg 1.x for `program`, borg 2 for
    /// `borg2_program`.
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
    /// The generations of borg the key serves.
    pub protocols: Protocols,
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

impl ProgramMatch {
    pub fn from_name(name: &str) -> Option<ProgramMatch> {
        match name {
            "basename" => Some(ProgramMatch::Basename),
            "exact" => Some(ProgramMatch::Exact),
            _ => None,
        }
    }
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

impl UnknownOptions {
    pub fn from_name(name: &str) -> Option<UnknownOptions> {
        match name {
            "drop" => Some(UnknownOptions::Drop),
            "reject" => Some(UnknownOptions::Reject),
            _ => None,
        }
    }
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
    /// What the built-in borg 2 engine does with the lock objects a vanished client left.
    pub lock_release: LockRelease,
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

impl ForcedSettings {
    /// Whether any restriction is in force (`unrestricted = true` has none).
    pub fn is_restricted(&self) -> bool {
        !self.restrict_to_paths.is_empty() || !self.restrict_to_repositories.is_empty()
    }
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

impl OnAuditFailure {
    pub fn from_name(name: &str) -> Option<OnAuditFailure> {
        match name {
            "refuse" => Some(OnAuditFailure::Refuse),
            "continue" => Some(OnAuditFailure::Continue),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricsSettings {
    /// A node_exporter textfile-collector file updated after every decision.
    pub textfile: Option<PathBuf>,
}

pub use crate::common::log_level::LogLevel;

/// What the engine lets a key do: borg 2's `--permissions` modes, for both generations.
///
/// For borg 1 clients `no-delete` is borg's append-only mode and `write-only` does not
/// exist (see [`Permissions::for_borg1`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Permissions {
    #[default]
    All,
    /// Add backups; delete, overwrite and compact nothing.
    NoDelete,
    /// borg 2 only: add backups without reading any back.
    WriteOnly,
    /// list, info, extract, diff, check without repair; no writes of any kind.
    ReadOnly,
}

impl Permissions {
    pub const NAMES: [&'static str; 4] = ["all", "no-delete", "write-only", "read-only"];

    pub fn name(self) -> &'static str {
        match self {
            Permissions::All => "all",
            Permissions::NoDelete => "no-delete",
            Permissions::WriteOnly => "write-only",
            Permissions::ReadOnly => "read-only",
        }
    }

    pub fn from_name(name: &str) -> Option<Permissions> {
        match name {
            "all" => Some(Permissions::All),
            "no-delete" => Some(Permissions::NoDelete),
            "write-only" => Some(Permissions::WriteOnly),
            "read-only" => Some(Permissions::ReadOnly),
            _ => None,
        }
    }

    /// What a borg 2 engine enforces: `append_only = true` means `no-delete` (a stricter mode
    /// stays as it is, since every mode but `all` already refuses deletes).
    pub fn for_borg2(self, append_only: bool) -> Permissions {
        match self {
            Permissions::All if append_only => Permissions::NoDelete,
            other => other,
        }
    }

    /// What a borg 1 engine enforces: `(--permissions, --append-only)`. `no-delete` is borg
    /// 1's append-only mode: deletes and prunes are recorded as new transactions and nothing
    /// already written is ever removed. `write-only` has no borg 1 form (validation refuses
    /// it for borg 1 clients) and is read-only here, failing closed.
    pub fn for_borg1(self, append_only: bool) -> (Permissions, bool) {
        match self {
            Permissions::All => (Permissions::All, append_only),
            Permissions::NoDelete => (Permissions::All, true),
            Permissions::WriteOnly | Permissions::ReadOnly => (Permissions::ReadOnly, append_only),
        }
    }
}

/// The generation of borg a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// borg 1.x: `borg serve`, msgpack RPC, the segment repository format.
    Borg1,
    /// borg 2: `borg serve --rest --backend FILE:<path>`, HTTP, borgstore's file layout.
    Borg2,
}

impl Protocol {
    pub const ALL: [Protocol; 2] = [Protocol::Borg1, Protocol::Borg2];

    /// The policy's and the audit record's spelling.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Borg1 => "borg1",
            Protocol::Borg2 => "borg2",
        }
    }

    pub fn from_name(name: &str) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.name() == name)
    }

    /// In a sentence: `borg 1`.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Borg1 => "borg 1",
            Protocol::Borg2 => "borg 2",
        }
    }

    /// The command its clients run on the server, as refusals quote it.
    pub fn command(self) -> &'static str {
        match self {
            Protocol::Borg1 => "`borg serve`",
            Protocol::Borg2 => "`borg serve --rest`",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The generations a key serves (`client.protocols`); never empty once validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Protocols {
    borg1: bool,
    borg2: bool,
}

impl Default for Protocols {
    /// borg 1 only, so that no policy written before borg 2 changes meaning.
    fn default() -> Self {
        Protocols::only(Protocol::Borg1)
    }
}

impl Protocols {
    pub const BOTH: Protocols = Protocols {
        borg1: true,
        borg2: true,
    };

    pub fn only(protocol: Protocol) -> Protocols {
        Protocols {
            borg1: protocol == Protocol::Borg1,
            borg2: protocol == Protocol::Borg2,
        }
    }

    pub fn from_list(protocols: &[Protocol]) -> Protocols {
        Protocols {
            borg1: protocols.contains(&Protocol::Borg1),
            borg2: protocols.contains(&Protocol::Borg2),
        }
    }

    pub fn contains(self, protocol: Protocol) -> bool {
        match protocol {
            Protocol::Borg1 => self.borg1,
            Protocol::Borg2 => self.borg2,
        }
    }

    pub fn iter(self) -> impl Iterator<Item = Protocol> {
        Protocol::ALL.into_iter().filter(move |p| self.contains(*p))
    }

    /// `borg1`, `borg2` or `borg1,borg2` (for `keys list`).
    pub fn label(self) -> &'static str {
        match (self.borg1, self.borg2) {
            (true, true) => "borg1,borg2",
            (false, true) => "borg2",
            _ => "borg1",
        }
    }

    /// What the key runs, for refusals: "`borg serve`", "`borg serve --rest`", or both.
    pub fn commands(self) -> &'static str {
        match (self.borg1, self.borg2) {
            (true, true) => "`borg serve` or `borg serve --rest`",
            (false, true) => Protocol::Borg2.command(),
            _ => Protocol::Borg1.command(),
        }
    }
}

/// What the built-in borg 2 engine does with lock objects a vanished client left behind
/// (`borg-gate serve --rest --lock-release`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LockRelease {
    /// Delete them when the session ends any way but the client's clean close, and fence
    /// the repository against the vanished client.
    #[default]
    Release,
    /// Leave them to borg's own 30-minute expiry.
    Keep,
}

impl LockRelease {
    pub fn name(self) -> &'static str {
        match self {
            LockRelease::Release => "release",
            LockRelease::Keep => "keep",
        }
    }

    pub fn from_name(name: &str) -> Option<LockRelease> {
        match name {
            "release" => Some(LockRelease::Release),
            "keep" => Some(LockRelease::Keep),
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
