//! Every Prometheus metric family borg-gate writes, with its type and help text, in one place.
//!
//! node_exporter's textfile collector merges the files of a directory, and refuses a family
//! whose help or type differs between two files: the gate's and engine's textfile and the one
//! `borg-gate status --textfile` writes share the per-repository families, so both take their
//! names and help from here. The series never collide either: the engine labels its
//! repository gauges with `repository` and `policy`, `status` with `repository` alone.
//!
//! Cardinality, by design: one series per policy (and per decision, option name, `end` value,
//! refusal reason or histogram bucket, all from fixed sets), one per repository; never one per
//! session, client address or archive.

/// What kind of metric a family is (`# TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

impl Family {
    /// The `# HELP` and `# TYPE` lines, newline included.
    pub fn header(&self) -> String {
        format!(
            "# HELP {} {}\n# TYPE {} {}\n",
            self.name,
            self.help,
            self.name,
            self.kind.name()
        )
    }
}

const fn family(name: &'static str, kind: Kind, help: &'static str) -> Family {
    Family { name, kind, help }
}

// The gate, at every decision.

pub const SESSIONS: Family = family(
    "borg_gate_sessions_total",
    Kind::Counter,
    "Client sessions judged by borg-gate, by policy and decision (accept, reject, probe).",
);
pub const DROPPED_OPTIONS: Family = family(
    "borg_gate_dropped_options_total",
    Kind::Counter,
    "Client options borg-gate dropped, by policy and option name.",
);

// The built-in engines, when a session ends.

pub const SESSION_BYTES_RECEIVED: Family = family(
    "borg_gate_session_bytes_received_total",
    Kind::Counter,
    "Protocol bytes the built-in engines received from clients, by policy.",
);
pub const OBJECTS_PUT: Family = family(
    "borg_gate_objects_put_total",
    Kind::Counter,
    "Objects clients stored through the built-in engines, by policy.",
);
pub const OBJECTS_DELETED: Family = family(
    "borg_gate_objects_deleted_total",
    Kind::Counter,
    "Objects clients deleted through the built-in engines, by policy.",
);
pub const APPEND_ONLY_OBJECTS_DELETED: Family = family(
    "borg_gate_append_only_objects_deleted_total",
    Kind::Counter,
    "Objects deleted through keys whose policy is append-only, by policy (still recoverable: see borg-gate(1)).",
);
pub const COMMITS: Family = family(
    "borg_gate_commits_total",
    Kind::Counter,
    "Transactions committed through the built-in engines (borg 2: archives stored), by policy.",
);
pub const REFUSED_CALLS: Family = family(
    "borg_gate_refused_calls_total",
    Kind::Counter,
    "Calls the built-in engines refused, by policy and reason (read-only, append-only, path-not-allowed, untrusted-path, quota, ...).",
);
pub const SESSION_ENDS: Family = family(
    "borg_gate_session_end_total",
    Kind::Counter,
    "Sessions of the built-in engines, by policy and how they ended.",
);
pub const SESSION_DURATION: Family = family(
    "borg_gate_session_duration_seconds",
    Kind::Histogram,
    "How long sessions of the built-in engines lasted, by policy.",
);

// Per repository: from the engine at the session's last commit (labels repository, policy)
// and from `borg-gate status --textfile` (label repository).

pub const LAST_COMMIT: Family = family(
    "borg_gate_repository_last_commit_timestamp_seconds",
    Kind::Gauge,
    "Unix time of the repository's newest commit; 0 when it has none. From borg-gate status (label repository) and from the engine's sessions (labels repository and policy).",
);
pub const SIZE: Family = family(
    "borg_gate_repository_size_bytes",
    Kind::Gauge,
    "Disk usage of the repository directory, as du counts it (borg-gate status).",
);
pub const QUOTA: Family = family(
    "borg_gate_repository_quota_bytes",
    Kind::Gauge,
    "The storage quota clients of the repository work under (status: the smallest; engine: the session's); absent without a quota.",
);
pub const QUOTA_USED: Family = family(
    "borg_gate_repository_quota_used_bytes",
    Kind::Gauge,
    "Bytes counted against the storage quota (borg's storage_quota_use in the hints).",
);

// `borg-gate status --textfile` only.

pub const SEGMENTS: Family = family(
    "borg_gate_repository_segments",
    Kind::Gauge,
    "Non-empty segment files in the repository.",
);
pub const COMPACTABLE: Family = family(
    "borg_gate_repository_compactable_bytes",
    Kind::Gauge,
    "Bytes borg compact could free, from the hints' compact map.",
);
pub const APPEND_ONLY: Family = family(
    "borg_gate_repository_append_only",
    Kind::Gauge,
    "1 when no client can delete: the repository is append-only, or every policy that reaches it forces append-only.",
);
pub const LOCK_HELD: Family = family(
    "borg_gate_repository_lock_held",
    Kind::Gauge,
    "1 while the repository lock is held by a running process or one on another host.",
);
pub const LOCK_STALE: Family = family(
    "borg_gate_repository_lock_stale",
    Kind::Gauge,
    "1 when the repository lock is held only by dead processes on this host.",
);
pub const PROBLEMS: Family = family(
    "borg_gate_repository_problems",
    Kind::Gauge,
    "Things status could not read in the repository; 0 when it read everything.",
);
pub const POLICY_REPOSITORIES: Family = family(
    "borg_gate_status_policy_repositories",
    Kind::Gauge,
    "Repositories the policy reaches, by policy; 0 means its clients have no repository yet.",
);
pub const REPOSITORIES: Family = family(
    "borg_gate_status_repositories",
    Kind::Gauge,
    "Repositories borg-gate status found in its last run.",
);
pub const RUN_TIMESTAMP: Family = family(
    "borg_gate_status_timestamp_seconds",
    Kind::Gauge,
    "Unix time of the borg-gate status run that wrote this file.",
);

/// Every family, for documentation checks and the alert rules' test.
pub const ALL: [Family; 23] = [
    SESSIONS,
    DROPPED_OPTIONS,
    SESSION_BYTES_RECEIVED,
    OBJECTS_PUT,
    OBJECTS_DELETED,
    APPEND_ONLY_OBJECTS_DELETED,
    COMMITS,
    REFUSED_CALLS,
    SESSION_ENDS,
    SESSION_DURATION,
    LAST_COMMIT,
    SIZE,
    QUOTA,
    QUOTA_USED,
    SEGMENTS,
    COMPACTABLE,
    APPEND_ONLY,
    LOCK_HELD,
    LOCK_STALE,
    PROBLEMS,
    POLICY_REPOSITORIES,
    REPOSITORIES,
    RUN_TIMESTAMP,
];

/// The upper bounds (`le`) of the session duration histogram, in seconds: from a `borg list`
/// (well under a second) to a first backup that runs for a day.
pub const DURATION_BUCKETS: [f64; 10] = [
    0.1, 1.0, 10.0, 60.0, 300.0, 1800.0, 3600.0, 10_800.0, 43_200.0, 86_400.0,
];

/// Whether `name` is a series name borg-gate writes: a family, or a histogram's
/// `_bucket`, `_sum` or `_count`.
pub fn is_written_series(name: &str) -> bool {
    ALL.iter().any(|family| {
        family.name == name
            || (family.kind == Kind::Histogram
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| name.strip_suffix(suffix) == Some(family.name)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_and_distinct_and_help_is_one_line() {
        let mut names: Vec<&str> = ALL.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        for family in ALL {
            assert!(family.name.starts_with("borg_gate_"), "{}", family.name);
            assert!(
                family
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                family.name
            );
            assert_eq!(
                family.kind == Kind::Counter,
                family.name.ends_with("_total"),
                "{}",
                family.name
            );
            assert!(!family.help.contains('\n') && !family.help.contains('\\'));
        }
        assert!(is_written_series(
            "borg_gate_session_duration_seconds_bucket"
        ));
        assert!(is_written_series("borg_gate_commits_total"));
        assert!(!is_written_series("borg_gate_commits_total_bucket"));
        assert!(!is_written_series("borg_gate_nothing"));
    }
}
