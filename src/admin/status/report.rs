//! What `status` says about a repository: one line for people, one JSON object for programs,
//! Prometheus gauges for a node_exporter textfile, and the `--max-age` verdict. Pure: the time
//! of the run comes in as `now`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::facts::{Commit, HoldMode, LockHolder, LockState, LockSummary};
use super::scope::{one_line, one_line_text};
use crate::common::text::rfc3339_seconds;
use crate::engine::borg1::repository::units::format_file_size;
use crate::metrics::escape_label_value;
use crate::metrics::families::{self, Family};

/// Everything `status` learned about one repository. `None` means unknown (a problem says why),
/// except for `last_commit`, where it means none was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryStatus {
    pub path: PathBuf,
    pub last_commit: Option<Commit>,
    /// Disk usage of the repository's tree, as `du` counts it.
    pub size_bytes: u64,
    pub quota_bytes: Option<u64>,
    pub quota_used_bytes: Option<u64>,
    pub segments: Option<u64>,
    pub compactable_bytes: Option<u64>,
    pub append_only: Option<bool>,
    pub lock: LockState,
    /// Names of the given policies whose clients can open it.
    pub policies: Vec<String>,
    /// What could not be read, one sentence each.
    pub problems: Vec<String>,
}

impl RepositoryStatus {
    /// Whole seconds since the last commit (0 for a commit time in the future).
    pub fn age(&self, now: SystemTime) -> Option<Duration> {
        self.last_commit.map(|commit| age(now, commit.time))
    }

    /// `--max-age`: the repository has no commit, or its newest one is older than `max_age`.
    pub fn is_overdue(&self, now: SystemTime, max_age: Duration) -> bool {
        self.age(now).is_none_or(|age| age > max_age)
    }
}

/// Whole seconds from `then` to `now`; 0 when `then` is in the future (a clock set back).
pub(crate) fn age(now: SystemTime, then: SystemTime) -> Duration {
    let elapsed = now.duration_since(then).unwrap_or_default();
    Duration::from_secs(elapsed.as_secs())
}

/// The two largest units of a duration: `45s`, `12m 5s`, `7h 12m`, `3d`, `3d 4h`.
pub(crate) fn short_duration(duration: Duration) -> String {
    const UNITS: [(u64, &str); 4] = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let seconds = duration.as_secs();
    let (index, (size, unit)) = UNITS
        .iter()
        .enumerate()
        .find(|(_, (size, _))| seconds >= *size)
        .unwrap_or((UNITS.len() - 1, &UNITS[UNITS.len() - 1]));
    let major = seconds / size;
    match UNITS.get(index + 1) {
        Some((minor_size, minor_unit)) if (seconds % size) / minor_size > 0 => {
            format!(
                "{major}{unit} {}{minor_unit}",
                (seconds % size) / minor_size
            )
        }
        _ => format!("{major}{unit}"),
    }
}

/// Seconds since the epoch, whole (0 before it).
fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn size(bytes: u64) -> String {
    format_file_size(i64::try_from(bytes).unwrap_or(i64::MAX))
}

/// One line for a person:
/// `<path>: last commit <time> (<age> ago), <size> on disk, quota <used> of <quota> (<n>%),
/// <n> segments, <size> compactable, append-only, lock free, policies <names>`, then
/// `; problems: ...` when something could not be read.
pub(crate) fn line(status: &RepositoryStatus, now: SystemTime) -> String {
    let mut text = format!("{}: ", one_line(&status.path));
    match (status.last_commit, status.age(now)) {
        (Some(commit), Some(age)) => {
            let _ = write!(
                text,
                "last commit {} ({} ago)",
                rfc3339_seconds(commit.time),
                short_duration(age)
            );
        }
        _ if status.segments.is_none() => text.push_str("last commit unknown"),
        _ => text.push_str("no commit"),
    }
    let _ = write!(text, ", {} on disk, ", size(status.size_bytes));
    match (status.quota_used_bytes, status.quota_bytes) {
        (Some(used), Some(quota)) => {
            let percent = used as f64 * 100.0 / quota as f64;
            let _ = write!(
                text,
                "quota {} of {} ({percent:.1}%)",
                size(used),
                size(quota)
            );
        }
        (None, Some(quota)) => {
            let _ = write!(text, "quota {} (use unknown)", size(quota));
        }
        (Some(used), None) => {
            let _ = write!(text, "no quota ({} counted)", size(used));
        }
        (None, None) => text.push_str("no quota"),
    }
    match status.segments {
        Some(1) => text.push_str(", 1 segment"),
        Some(count) => {
            let _ = write!(text, ", {count} segments");
        }
        None => text.push_str(", segments unknown"),
    }
    match status.compactable_bytes {
        Some(bytes) => {
            let _ = write!(text, ", {} compactable", size(bytes));
        }
        None => text.push_str(", compactable unknown"),
    }
    text.push_str(match status.append_only {
        Some(true) => ", append-only",
        Some(false) => ", not append-only",
        None => ", append-only unknown",
    });
    let _ = write!(text, ", lock {}", lock_text(&status.lock));
    if status.policies.is_empty() {
        text.push_str(", no policy");
    } else {
        let names: Vec<String> = status.policies.iter().map(|p| one_line_text(p)).collect();
        let _ = write!(text, ", policies {}", names.join(" "));
    }
    if !status.problems.is_empty() {
        let problems: Vec<String> = status.problems.iter().map(|p| one_line_text(p)).collect();
        let _ = write!(text, "; problems: {}", problems.join("; "));
    }
    text
}

/// `free`, `held (exclusive by host:pid, running)`, `stale (exclusive by host:pid, dead)`.
pub(crate) fn lock_text(lock: &LockState) -> String {
    let state = match lock.state {
        LockSummary::Free => return "free".to_owned(),
        LockSummary::Held => "held",
        LockSummary::Stale => "stale",
    };
    let holders: Vec<String> = lock.holders.iter().map(holder_text).collect();
    format!("{state} ({})", holders.join("; "))
}

fn holder_text(holder: &LockHolder) -> String {
    let mode = match holder.mode {
        HoldMode::Exclusive => "exclusive",
        HoldMode::Shared => "shared",
    };
    let host = one_line_text(&holder.host);
    let liveness = match holder.alive {
        Some(true) => "running",
        Some(false) => "dead",
        None => "on another host",
    };
    match holder.pid {
        Some(pid) => format!("{mode} by {host}:{pid}, {liveness}"),
        None => format!("{mode} by malformed lock \"{host}\", check it by hand"),
    }
}

/// The `--json` object of one repository (keys in this order).
#[derive(Debug, Serialize)]
pub(crate) struct JsonStatus<'a> {
    pub path: String,
    pub last_commit: Option<String>,
    pub age_s: Option<u64>,
    pub size_bytes: u64,
    pub quota_bytes: Option<u64>,
    pub quota_used_bytes: Option<u64>,
    pub segments: Option<u64>,
    pub compactable_bytes: Option<u64>,
    pub append_only: Option<bool>,
    pub lock: &'a LockState,
    pub policies: &'a [String],
    pub transaction_id: Option<u32>,
    pub problems: &'a [String],
}

/// The repository as one JSON object, without a trailing newline.
pub(crate) fn json(status: &RepositoryStatus, now: SystemTime) -> String {
    let view = JsonStatus {
        path: path_text(&status.path),
        last_commit: status
            .last_commit
            .map(|commit| rfc3339_seconds(commit.time)),
        age_s: status.age(now).map(|age| age.as_secs()),
        size_bytes: status.size_bytes,
        quota_bytes: status.quota_bytes,
        quota_used_bytes: status.quota_used_bytes,
        segments: status.segments,
        compactable_bytes: status.compactable_bytes,
        append_only: status.append_only,
        lock: &status.lock,
        policies: &status.policies,
        transaction_id: status.last_commit.map(|commit| commit.transaction_id),
        problems: &status.problems,
    };
    // A struct of strings, numbers and lists always serialises.
    serde_json::to_string(&view).unwrap_or_default()
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The gauge families `status --textfile` writes, with their help text (shared with the engine's
/// textfile: `metrics::families`). Every family but the last two has one series per repository
/// (label `repository`, its path).
pub(crate) const GAUGES: [Family; 12] = [
    families::LAST_COMMIT,
    families::SIZE,
    families::QUOTA,
    families::QUOTA_USED,
    families::SEGMENTS,
    families::COMPACTABLE,
    families::APPEND_ONLY,
    families::LOCK_HELD,
    families::LOCK_STALE,
    families::PROBLEMS,
    families::POLICY_REPOSITORIES,
    families::REPOSITORIES,
];

pub(crate) const LAST_COMMIT: &str = families::LAST_COMMIT.name;
pub(crate) const SIZE: &str = families::SIZE.name;
pub(crate) const QUOTA: &str = families::QUOTA.name;
pub(crate) const QUOTA_USED: &str = families::QUOTA_USED.name;
pub(crate) const SEGMENTS: &str = families::SEGMENTS.name;
pub(crate) const COMPACTABLE: &str = families::COMPACTABLE.name;
pub(crate) const APPEND_ONLY: &str = families::APPEND_ONLY.name;
pub(crate) const LOCK_HELD: &str = families::LOCK_HELD.name;
pub(crate) const LOCK_STALE: &str = families::LOCK_STALE.name;
pub(crate) const PROBLEMS: &str = families::PROBLEMS.name;
pub(crate) const POLICY_REPOSITORIES: &str = families::POLICY_REPOSITORIES.name;
pub(crate) const REPOSITORIES: &str = families::REPOSITORIES.name;
/// When the textfile was written (no labels).
pub(crate) const RUN_TIMESTAMP: &str = families::RUN_TIMESTAMP.name;

/// The per-repository samples of one repository: (family, value), families absent where the
/// value is unknown or, for the quota, where there is none.
pub(crate) fn repository_samples(status: &RepositoryStatus) -> Vec<(&'static str, u64)> {
    let mut samples = vec![
        (
            LAST_COMMIT,
            status
                .last_commit
                .map_or(0, |commit| unix_seconds(commit.time)),
        ),
        (SIZE, status.size_bytes),
    ];
    let optional = [
        (QUOTA, status.quota_bytes),
        (QUOTA_USED, status.quota_used_bytes),
        (SEGMENTS, status.segments),
        (COMPACTABLE, status.compactable_bytes),
        (APPEND_ONLY, status.append_only.map(u64::from)),
    ];
    samples.extend(
        optional
            .into_iter()
            .filter_map(|(family, value)| value.map(|value| (family, value))),
    );
    samples.extend([
        (LOCK_HELD, u64::from(status.lock.state == LockSummary::Held)),
        (
            LOCK_STALE,
            u64::from(status.lock.state == LockSummary::Stale),
        ),
        (PROBLEMS, status.problems.len() as u64),
    ]);
    samples
}

/// Collects the gauges of a run, repository by repository, and renders the textfile.
#[derive(Debug)]
pub(crate) struct Gauges {
    /// Per family (in [`GAUGES`] order), the rendered sample lines.
    families: Vec<String>,
    repositories: u64,
}

impl Default for Gauges {
    fn default() -> Gauges {
        Gauges::new()
    }
}

impl Gauges {
    pub(crate) fn new() -> Gauges {
        Gauges {
            families: vec![String::new(); GAUGES.len()],
            repositories: 0,
        }
    }

    pub(crate) fn add_repository(&mut self, status: &RepositoryStatus) {
        self.repositories += 1;
        let label = escape_label_value(&path_text(&status.path));
        for (family, value) in repository_samples(status) {
            self.push(family, "repository", &label, value);
        }
    }

    /// How many repositories the policy named `policy` reaches.
    pub(crate) fn add_policy(&mut self, policy: &str, repositories: u64) {
        let label = escape_label_value(policy);
        self.push(POLICY_REPOSITORIES, "policy", &label, repositories);
    }

    fn push(&mut self, family: &str, label: &str, escaped_value: &str, value: u64) {
        if let Some(index) = GAUGES.iter().position(|gauge| gauge.name == family) {
            let _ = writeln!(
                self.families[index],
                "{family}{{{label}=\"{escaped_value}\"}} {value}"
            );
        }
    }

    /// The whole textfile: every family with HELP and TYPE, then the run's own gauges. Each
    /// family's samples are released as soon as they are copied.
    pub(crate) fn render(self, now: SystemTime) -> String {
        let mut text =
            String::with_capacity(self.families.iter().map(String::len).sum::<usize>() + 4096);
        for (family, samples) in GAUGES.iter().zip(self.families) {
            text.push_str(&family.header());
            if family.name == REPOSITORIES {
                let _ = writeln!(text, "{REPOSITORIES} {}", self.repositories);
            } else {
                text.push_str(&samples);
            }
        }
        text.push_str(&families::RUN_TIMESTAMP.header());
        let _ = writeln!(text, "{RUN_TIMESTAMP} {}", unix_seconds(now));
        text
    }
}

#[cfg(test)]
mod tests;
