//! The policy file as written: serde structures that mirror the TOML, with spans for validation.
//!
//! Nothing here is trusted yet. [`super::validate`] turns a [`RawPolicy`] into a
//! [`super::Policy`] and points at the offending key when something is wrong.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The whole file. Unknown keys anywhere are errors, so that a typo never silently weakens a
/// policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    pub version: Spanned<i64>,
    pub name: Option<Spanned<String>>,
    #[serde(default)]
    pub engine: RawEngine,
    #[serde(default)]
    pub client: RawClient,
    #[serde(default)]
    pub repository: RawRepository,
    #[serde(default)]
    pub audit: RawAudit,
    #[serde(default)]
    pub metrics: RawMetrics,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEngine {
    pub program: Option<Spanned<String>>,
    pub borg2_program: Option<Spanned<String>>,
    #[serde(default)]
    pub env: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    pub pass_env: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClient {
    pub protocols: Option<Spanned<Vec<Spanned<String>>>>,
    pub programs: Option<Spanned<Vec<Spanned<String>>>>,
    pub program_match: Option<Spanned<String>>,
    pub allow_probe: Option<bool>,
    pub log_levels: Option<Spanned<Vec<Spanned<String>>>>,
    pub default_log_level: Option<Spanned<String>>,
    pub force_log_level: Option<Spanned<String>>,
    #[serde(default)]
    pub debug_topics: Vec<Spanned<String>>,
    pub lock_wait: Option<Spanned<RawLockWait>>,
    pub unknown_options: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLockWait {
    pub default: Option<i64>,
    pub max: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRepository {
    #[serde(default)]
    pub restrict_to_paths: Vec<Spanned<String>>,
    #[serde(default)]
    pub restrict_to_repositories: Vec<Spanned<String>>,
    pub unrestricted: Option<bool>,
    pub append_only: Option<bool>,
    pub storage_quota: Option<Spanned<String>>,
    pub key_quota: Option<Spanned<String>>,
    pub key_quota_ledger: Option<Spanned<String>>,
    pub umask: Option<Spanned<String>>,
    pub permissions: Option<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub lock_release: Option<Spanned<String>>,
    /// Policies (by name) whose keys may reach the same repositories on purpose.
    #[serde(default)]
    pub shared_with: Vec<Spanned<String>>,
    pub request_timeout: Option<Spanned<String>>,
    pub session_limit: Option<Spanned<String>>,
    pub allow_lock_bypass: Option<Spanned<bool>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    pub file: Option<Spanned<String>>,
    pub syslog: Option<bool>,
    pub on_failure: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    pub textfile: Option<Spanned<String>>,
}
