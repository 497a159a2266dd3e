//! Prometheus metrics in a node_exporter textfile: the gate's counters per policy of sessions by
//! decision and of dropped client options, updated after every audited decision; and the built-in
//! engines' counters per policy (bytes, objects, commits, refusals, how sessions ended, how long
//! they lasted) and gauges per repository, updated when a session ends.
//!
//! The update is a read-modify-write under an `flock` on `<file>.lock` (waited for a bounded
//! time), written to `<file>.tmp`, fsynced and renamed over the file, so the collector never
//! reads half a file and concurrent sessions never lose a count. Metrics are best effort: any
//! failure skips the update and the session goes on, without a word to the client. The family
//! names, types and help texts live in [`families`], shared with `borg-gate status`.

pub mod families;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::audit::SessionEnd;
use crate::audit::session_end::End;
use crate::gate::options::{Dialect, ParseError, parse_serve_command};
use crate::gate::{Action, Judgement};
use crate::policy::Policy;
use families::{DURATION_BUCKETS, Family};

pub const SESSIONS: &str = families::SESSIONS.name;
pub const DROPPED_OPTIONS: &str = families::DROPPED_OPTIONS.name;
/// The decisions every policy has a series for, so that rates start at zero.
pub const DECISIONS: [&str; 3] = ["accept", "reject", "probe"];
/// The label of an option borg does not know (client-chosen names would be unbounded).
pub const UNKNOWN_OPTION: &str = "unknown";
/// How long a session waits for another session's update before skipping its own.
pub const MAX_LOCK_WAIT: Duration = Duration::from_secs(3);
/// A larger textfile is not ours to rewrite. Room for the engine's gauges of some 50,000
/// repositories.
const MAX_TEXTFILE_SIZE: u64 = 16 << 20;

/// The counters and gauges of one textfile.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// (policy, decision) to count.
    pub sessions: BTreeMap<(String, String), u64>,
    /// (policy, option name) to count.
    pub dropped_options: BTreeMap<(String, String), u64>,
    /// Per policy: what the engines' sessions did.
    pub engine: BTreeMap<String, EngineTotals>,
    /// (policy, end) to sessions.
    pub session_ends: BTreeMap<(String, String), u64>,
    /// (policy, reason) to refused calls.
    pub refused_calls: BTreeMap<(String, String), u64>,
    /// (repository, policy) to what the policy's last session that committed saw.
    pub repositories: BTreeMap<(String, String), RepositoryGauges>,
}

/// The engine's counters of one policy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineTotals {
    pub bytes_received: u64,
    pub objects_put: u64,
    pub objects_deleted: u64,
    pub append_only_objects_deleted: u64,
    pub commits: u64,
    pub duration: Histogram,
}

/// A Prometheus histogram over [`DURATION_BUCKETS`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Cumulative: observations at or below each bound.
    pub buckets: [u64; DURATION_BUCKETS.len()],
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, value: f64) {
        for (bucket, bound) in self.buckets.iter_mut().zip(DURATION_BUCKETS) {
            if value <= bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum += value;
    }
}

/// A repository's gauges as the engine last saw them at a commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepositoryGauges {
    /// Unix seconds of the commit.
    pub last_commit: Option<u64>,
    pub quota: Option<u64>,
    pub quota_used: Option<u64>,
}

/// What a session did to its repository, for the per-repository gauges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepositoryChange {
    /// Nothing committed (or a read-only session).
    None,
    /// The session's last commit: when, and the quota figures after it.
    Committed {
        time: SystemTime,
        quota: Option<u64>,
        quota_used: Option<u64>,
    },
    /// The client deleted the whole repository: its series go.
    Destroyed,
}

/// Adds one judged session to the counters.
pub fn count_judgement(counters: &mut Counters, policy: &str, judgement: &Judgement) {
    for decision in DECISIONS {
        counters
            .sessions
            .entry((policy.to_owned(), decision.to_owned()))
            .or_insert(0);
    }
    let decision = judgement.decision.label().to_owned();
    *counters
        .sessions
        .entry((policy.to_owned(), decision))
        .or_insert(0) += 1;
    for verdict in judgement
        .options
        .iter()
        .filter(|v| v.action == Action::Dropped)
    {
        *counters
            .dropped_options
            .entry((policy.to_owned(), option_label(&verdict.option)))
            .or_insert(0) += 1;
    }
}

/// Adds one ended engine session to the counters. Every `end` value gets a series for the
/// policy, so that rates start at zero.
pub fn count_session_end(
    counters: &mut Counters,
    policy: &str,
    record: &SessionEnd,
    change: &RepositoryChange,
) {
    let totals = counters.engine.entry(policy.to_owned()).or_default();
    totals.bytes_received += record.bytes_received;
    totals.objects_put += record.objects_put;
    totals.objects_deleted += record.objects_deleted;
    if record.append_only {
        totals.append_only_objects_deleted += record.objects_deleted;
    }
    totals.commits += record.commits;
    totals.duration.observe(record.duration_s);
    for end in End::LABELS {
        counters
            .session_ends
            .entry((policy.to_owned(), end.to_owned()))
            .or_insert(0);
    }
    *counters
        .session_ends
        .entry((policy.to_owned(), record.end.clone()))
        .or_insert(0) += 1;
    for refused in &record.refused {
        *counters
            .refused_calls
            .entry((policy.to_owned(), refused.reason.clone()))
            .or_insert(0) += refused.count;
    }
    let Some(repository) = &record.repository else {
        return;
    };
    match change {
        RepositoryChange::None => {}
        RepositoryChange::Committed {
            time,
            quota,
            quota_used,
        } => {
            let seconds = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            counters.repositories.insert(
                (repository.clone(), policy.to_owned()),
                RepositoryGauges {
                    last_commit: Some(seconds),
                    quota: *quota,
                    quota_used: *quota_used,
                },
            );
        }
        RepositoryChange::Destroyed => {
            counters
                .repositories
                .retain(|(path, _), _| path != repository);
        }
    }
}

/// The canonical name of the option a client wrote (`--umask=000` is `--umask`, `-v` is
/// `--info`, `--lock 5` is `--lock-wait`), or [`UNKNOWN_OPTION`]. Never a value.
pub fn option_label(written: &str) -> String {
    let name = written.split([' ', '=']).next().unwrap_or_default();
    let canonical = |words: [&str; 2]| {
        let words = words.map(str::to_owned);
        match parse_serve_command(&words, Dialect::Client) {
            Ok(parsed) => match parsed.as_slice() {
                [only] => only.spec.map(|spec| spec.canonical().to_owned()),
                _ => None,
            },
            Err(ParseError::MissingValue(canonical)) => Some(canonical),
            Err(_) => None,
        }
    };
    canonical(["serve", name])
        .or_else(|| canonical([name, "serve"]))
        .unwrap_or_else(|| UNKNOWN_OPTION.to_owned())
}

/// Escapes a label value for the text exposition format: backslash, quote, newline.
pub fn escape_label_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Renders the counters as a complete textfile. The gate's two families are always there;
/// the engine's appear once a session has ended.
pub fn render_textfile(counters: &Counters) -> String {
    let mut text = String::new();
    pair_family(
        &mut text,
        &families::SESSIONS,
        "decision",
        &counters.sessions,
    );
    pair_family(
        &mut text,
        &families::DROPPED_OPTIONS,
        "option",
        &counters.dropped_options,
    );
    if counters.engine.is_empty() && counters.repositories.is_empty() {
        return text;
    }
    let per_policy = |text: &mut String, family: &Family, value: fn(&EngineTotals) -> u64| {
        text.push_str(&family.header());
        for (policy, totals) in &counters.engine {
            let _ = writeln!(
                text,
                "{}{{policy=\"{}\"}} {}",
                family.name,
                escape_label_value(policy),
                value(totals)
            );
        }
    };
    per_policy(&mut text, &families::SESSION_BYTES_RECEIVED, |t| {
        t.bytes_received
    });
    per_policy(&mut text, &families::OBJECTS_PUT, |t| t.objects_put);
    per_policy(&mut text, &families::OBJECTS_DELETED, |t| t.objects_deleted);
    per_policy(&mut text, &families::APPEND_ONLY_OBJECTS_DELETED, |t| {
        t.append_only_objects_deleted
    });
    per_policy(&mut text, &families::COMMITS, |t| t.commits);
    pair_family(
        &mut text,
        &families::SESSION_ENDS,
        "end",
        &counters.session_ends,
    );
    pair_family(
        &mut text,
        &families::REFUSED_CALLS,
        "reason",
        &counters.refused_calls,
    );
    render_histograms(&mut text, counters);
    render_repositories(&mut text, counters);
    text
}

/// A family with the labels `policy` and `label`.
fn pair_family(
    text: &mut String,
    family: &Family,
    label: &str,
    series: &BTreeMap<(String, String), u64>,
) {
    text.push_str(&family.header());
    for ((policy, value), count) in series {
        let _ = writeln!(
            text,
            "{}{{policy=\"{}\",{label}=\"{}\"}} {count}",
            family.name,
            escape_label_value(policy),
            escape_label_value(value)
        );
    }
}

fn render_histograms(text: &mut String, counters: &Counters) {
    let name = families::SESSION_DURATION.name;
    text.push_str(&families::SESSION_DURATION.header());
    for (policy, totals) in &counters.engine {
        let policy = escape_label_value(policy);
        let histogram = &totals.duration;
        for (bound, count) in DURATION_BUCKETS.iter().zip(histogram.buckets) {
            let _ = writeln!(
                text,
                "{name}_bucket{{policy=\"{policy}\",le=\"{bound}\"}} {count}"
            );
        }
        let _ = writeln!(
            text,
            "{name}_bucket{{policy=\"{policy}\",le=\"+Inf\"}} {}\n\
             {name}_sum{{policy=\"{policy}\"}} {}\n\
             {name}_count{{policy=\"{policy}\"}} {}",
            histogram.count, histogram.sum, histogram.count
        );
    }
}

fn render_repositories(text: &mut String, counters: &Counters) {
    type Gauge = fn(&RepositoryGauges) -> Option<u64>;
    let gauges: [(&Family, Gauge); 3] = [
        (&families::LAST_COMMIT, |g| g.last_commit),
        (&families::QUOTA, |g| g.quota),
        (&families::QUOTA_USED, |g| g.quota_used),
    ];
    for (family, value) in gauges {
        text.push_str(&family.header());
        for ((repository, policy), repository_gauges) in &counters.repositories {
            if let Some(value) = value(repository_gauges) {
                let _ = writeln!(
                    text,
                    "{}{{repository=\"{}\",policy=\"{}\"}} {value}",
                    family.name,
                    escape_label_value(repository),
                    escape_label_value(policy)
                );
            }
        }
    }
}

/// Reads borg-gate's families back from a textfile; anything else, or anything malformed, is
/// left out (and so dropped at the next write).
pub fn parse_textfile(text: &str) -> Counters {
    let mut counters = Counters::default();
    for line in text.lines() {
        let Some((name, labels, value)) = parse_sample(line) else {
            continue;
        };
        add_sample(&mut counters, name, &labels, value);
    }
    counters
}

/// Files one parsed sample where it belongs, if it is one of ours and well formed.
fn add_sample(counters: &mut Counters, name: &str, labels: &Labels, value: f64) -> Option<()> {
    let label = |key: &str| {
        labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let pair = |other: &str| match (label("policy"), label(other), labels.len()) {
        (Some(policy), Some(other), 2) => Some((policy, other)),
        _ => None,
    };
    let policy_only = || match (label("policy"), labels.len()) {
        (Some(policy), 1) => Some(policy),
        _ => None,
    };
    let duration = families::SESSION_DURATION.name;
    match name {
        SESSIONS => *counters.sessions.entry(pair("decision")?).or_insert(0) += whole(value)?,
        DROPPED_OPTIONS => {
            *counters.dropped_options.entry(pair("option")?).or_insert(0) += whole(value)?
        }
        n if n == families::SESSION_ENDS.name => {
            *counters.session_ends.entry(pair("end")?).or_insert(0) += whole(value)?
        }
        n if n == families::REFUSED_CALLS.name => {
            *counters.refused_calls.entry(pair("reason")?).or_insert(0) += whole(value)?
        }
        n if n.strip_prefix(duration) == Some("_bucket") => {
            let (policy, bound) = pair("le")?;
            let count = whole(value)?;
            let totals = counters.engine.entry(policy).or_default();
            if bound == "+Inf" {
                return Some(());
            }
            let bound: f64 = bound.parse().ok()?;
            let index = DURATION_BUCKETS.iter().position(|b| *b == bound)?;
            totals.duration.buckets[index] += count;
        }
        n if n.strip_prefix(duration) == Some("_sum") => {
            let sum = (value.is_finite() && value >= 0.0).then_some(value)?;
            counters
                .engine
                .entry(policy_only()?)
                .or_default()
                .duration
                .sum += sum;
        }
        n if n.strip_prefix(duration) == Some("_count") => {
            let count = whole(value)?;
            counters
                .engine
                .entry(policy_only()?)
                .or_default()
                .duration
                .count += count;
        }
        n if engine_counter(n).is_some() => {
            let count = whole(value)?;
            let totals = counters.engine.entry(policy_only()?).or_default();
            *engine_counter(n)?(totals) += count;
        }
        n if repository_gauge(n).is_some() => {
            let (repository, policy) = match (label("repository"), label("policy"), labels.len()) {
                (Some(repository), Some(policy), 2) => (repository, policy),
                _ => return None,
            };
            let value = whole(value)?;
            let gauges = counters
                .repositories
                .entry((repository, policy))
                .or_default();
            *repository_gauge(n)?(gauges) = Some(value);
        }
        _ => return None,
    }
    Some(())
}

/// The field of [`EngineTotals`] a per-policy counter family is kept in.
fn engine_counter(name: &str) -> Option<fn(&mut EngineTotals) -> &mut u64> {
    let field: fn(&mut EngineTotals) -> &mut u64 = match name {
        n if n == families::SESSION_BYTES_RECEIVED.name => |t| &mut t.bytes_received,
        n if n == families::OBJECTS_PUT.name => |t| &mut t.objects_put,
        n if n == families::OBJECTS_DELETED.name => |t| &mut t.objects_deleted,
        n if n == families::APPEND_ONLY_OBJECTS_DELETED.name => {
            |t| &mut t.append_only_objects_deleted
        }
        n if n == families::COMMITS.name => |t| &mut t.commits,
        _ => return None,
    };
    Some(field)
}

/// The field of [`RepositoryGauges`] a per-repository gauge family is kept in.
fn repository_gauge(name: &str) -> Option<fn(&mut RepositoryGauges) -> &mut Option<u64>> {
    let field: fn(&mut RepositoryGauges) -> &mut Option<u64> = match name {
        n if n == families::LAST_COMMIT.name => |g| &mut g.last_commit,
        n if n == families::QUOTA.name => |g| &mut g.quota,
        n if n == families::QUOTA_USED.name => |g| &mut g.quota_used,
        _ => return None,
    };
    Some(field)
}

/// A count: whole, not negative, and exact in a float.
fn whole(value: f64) -> Option<u64> {
    (value.is_finite() && value >= 0.0 && value.fract() == 0.0 && value < 9.0e15)
        .then_some(value as u64)
}

/// Label names and unescaped values of one sample.
type Labels = Vec<(String, String)>;

/// `name{key="value",...} 123`: the name, the labels, and the value.
fn parse_sample(line: &str) -> Option<(&str, Labels, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let (name, mut rest) = line.split_at(name_end);
    let mut labels = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        let mut chars = after_brace.char_indices().peekable();
        let end;
        loop {
            while chars.peek().is_some_and(|(_, c)| *c == ',' || *c == ' ') {
                chars.next();
            }
            match chars.peek() {
                Some((at, '}')) => {
                    end = *at + 1;
                    break;
                }
                None => return None,
                _ => {}
            }
            let mut key = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    c => value.push(c),
                }
            }
            labels.push((key.trim().to_owned(), value));
        }
        rest = &after_brace[end..];
    }
    let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
    Some((name, labels, value))
}

/// Why an update was skipped.
#[derive(Debug)]
pub enum MetricsError {
    NoDirectory(PathBuf),
    /// Another session held the lock for longer than [`MAX_LOCK_WAIT`].
    Busy,
    Lock(Errno),
    TooLarge(PathBuf),
    Io {
        path: PathBuf,
        error: io::Error,
    },
}

impl fmt::Display for MetricsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricsError::NoDirectory(path) => {
                write!(f, "metrics textfile {} names no directory", path.display())
            }
            MetricsError::Busy => f.write_str("the metrics lock stayed busy; update skipped"),
            MetricsError::Lock(errno) => write!(f, "cannot lock the metrics file: {errno}"),
            MetricsError::TooLarge(path) => write!(
                f,
                "metrics textfile {} is larger than {MAX_TEXTFILE_SIZE} bytes; not rewriting it",
                path.display()
            ),
            MetricsError::Io { path, error } => write!(
                f,
                "metrics textfile {}: {}",
                path.display(),
                crate::common::text::plain_io_error(error)
            ),
        }
    }
}

impl std::error::Error for MetricsError {}

/// Counts one judged session in the policy's textfile, if it names one. Failures are
/// dropped on purpose: metrics never refuse, delay beyond [`MAX_LOCK_WAIT`], or speak to a
/// client.
pub fn record_session(policy: &Policy, judgement: &Judgement) {
    if let Some(textfile) = &policy.metrics.textfile {
        let update = |counters: &mut Counters| count_judgement(counters, &policy.name, judgement);
        if let Err(error) = update_textfile(textfile, update, MAX_LOCK_WAIT) {
            log::debug!("metrics skipped: {error}");
        }
    }
}

/// Counts one ended engine session in `textfile`. Metrics never delay the end of a session
/// beyond [`MAX_LOCK_WAIT`]; the caller logs a failure (the session is over either way).
pub fn record_session_end(
    textfile: &Path,
    policy: &str,
    record: &SessionEnd,
    change: &RepositoryChange,
) -> Result<(), MetricsError> {
    let update = |counters: &mut Counters| count_session_end(counters, policy, record, change);
    update_textfile(textfile, update, MAX_LOCK_WAIT)
}

/// Read-modify-write of a textfile under its lock, replaced atomically.
pub fn update_textfile(
    path: &Path,
    update: impl FnOnce(&mut Counters),
    max_wait: Duration,
) -> Result<(), MetricsError> {
    replace_under_lock(path, max_wait, |current| {
        let mut counters = read_counters(current)?;
        update(&mut counters);
        Ok(render_textfile(&counters))
    })
}

/// Replaces the whole textfile with `text`, atomically and under the same lock as
/// [`update_textfile`] (for `borg-gate status --textfile`, which owns its file). The text is
/// moved, not copied: it can be megabytes.
pub fn write_textfile(path: &Path, text: String, max_wait: Duration) -> Result<(), MetricsError> {
    replace_under_lock(path, max_wait, |_| Ok(text))
}

/// Takes `<file>.lock`, asks `produce` for the new text (it may read the current file, whose
/// path it gets), writes `<file>.tmp` with mode 0644, fsyncs it, renames it over the file,
/// unlocks and fsyncs the directory.
fn replace_under_lock(
    path: &Path,
    max_wait: Duration,
    produce: impl FnOnce(&Path) -> Result<String, MetricsError>,
) -> Result<(), MetricsError> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(MetricsError::NoDirectory(path.to_path_buf()));
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let sibling = |suffix: &str| {
        let mut sibling = OsString::from(name);
        sibling.push(suffix);
        dir.join(sibling)
    };
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |error| MetricsError::Io { path, error }
    };
    let lock_path = sibling(".lock");
    let lock_file = open_nofollow(File::options().read(true).write(true).create(true), 0o600)
        .open(&lock_path)
        .map_err(io_error(&lock_path))?;
    let lock = lock_within(lock_file, max_wait)?;

    let text = produce(path)?;

    let temporary = sibling(".tmp");
    let mut file = open_nofollow(
        File::options().write(true).create(true).truncate(true),
        0o644,
    )
    .open(&temporary)
    .map_err(io_error(&temporary))?;
    // The collector runs as another user; the session's umask must not hide the file.
    file.set_permissions(fs::Permissions::from_mode(0o644))
        .and_then(|()| file.write_all(text.as_bytes()))
        .and_then(|()| file.sync_all())
        .map_err(io_error(&temporary))?;
    fs::rename(&temporary, path).map_err(io_error(path))?;
    // Readers and the next writer see the new file from here on: the directory's fsync (for
    // the rename to survive a power cut) needs no lock, and holding it for that would make
    // every other session wait out one more disk flush. A failure loses nothing visible.
    drop(lock);
    if let Ok(directory) = File::open(dir) {
        let _ = directory.sync_all();
    }
    Ok(())
}

fn open_nofollow(options: &mut fs::OpenOptions, mode: u32) -> &mut fs::OpenOptions {
    options
        .mode(mode)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC | nix::libc::O_NOCTTY)
}

/// Polls for the lock with growing pauses, up to `max_wait`.
fn lock_within(mut file: File, max_wait: Duration) -> Result<Flock<File>, MetricsError> {
    let deadline = Instant::now() + max_wait;
    let mut pause = Duration::from_millis(1);
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((returned, errno)) if errno == Errno::EWOULDBLOCK || errno == Errno::EINTR => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(MetricsError::Busy);
                }
                file = returned;
                std::thread::sleep(pause.min(deadline - now));
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err((_, errno)) => return Err(MetricsError::Lock(errno)),
        }
    }
}

fn read_counters(path: &Path) -> Result<Counters, MetricsError> {
    let file = open_nofollow(File::options().read(true), 0).open(path);
    let file = match file {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Counters::default()),
        Err(error) => {
            return Err(MetricsError::Io {
                path: path.to_path_buf(),
                error,
            });
        }
    };
    let mut bytes = Vec::new();
    file.take(MAX_TEXTFILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| MetricsError::Io {
            path: path.to_path_buf(),
            error,
        })?;
    if bytes.len() as u64 > MAX_TEXTFILE_SIZE {
        return Err(MetricsError::TooLarge(path.to_path_buf()));
    }
    Ok(parse_textfile(&String::from_utf8_lossy(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::{Decision, OptionVerdict, Refusal, ServeArgs};
    use std::time::UNIX_EPOCH;

    fn judgement(decision: Decision, dropped: &[&str]) -> Judgement {
        Judgement {
            decision,
            protocol: None,
            tokens: vec![],
            dropped_env: vec![],
            options: dropped
                .iter()
                .map(|option| OptionVerdict {
                    option: (*option).to_owned(),
                    action: Action::Dropped,
                    reason: String::new(),
                })
                .chain([OptionVerdict {
                    option: "--info".into(),
                    action: Action::Accepted,
                    reason: String::new(),
                }])
                .collect(),
        }
    }

    #[test]
    fn option_labels_are_canonical_names_without_values() {
        for (written, label) in [
            ("--umask=000", "--umask"),
            ("--umask 000", "--umask"),
            ("--restrict-to-path /etc", "--restrict-to-path"),
            ("--restrict-to-pa=/etc", "--restrict-to-path"),
            ("--lock 5", "--lock-wait"),
            ("-v", "--info"),
            ("--verbose", "--info"),
            ("-p", "--progress"),
            ("--append-only", "--append-only"),
            ("-V", "--version"),
            ("--help", "--help"),
            ("--permissions=all", UNKNOWN_OPTION),
            ("--foo=secret", UNKNOWN_OPTION),
            ("--re", UNKNOWN_OPTION),
            ("-x", UNKNOWN_OPTION),
            ("", UNKNOWN_OPTION),
            ("serve", UNKNOWN_OPTION),
        ] {
            assert_eq!(option_label(written), label, "{written}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value("plain"), "plain");
        assert_eq!(escape_label_value(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label_value("a\nb"), "a\\nb");
    }

    #[test]
    fn counting_adds_zero_series_for_every_decision() {
        let mut counters = Counters::default();
        count_judgement(
            &mut counters,
            "alice",
            &judgement(
                Decision::Accept(ServeArgs::borg1(vec![])),
                &["--umask=000", "-p"],
            ),
        );
        count_judgement(
            &mut counters,
            "alice",
            &judgement(
                Decision::Reject(Refusal::NoCommand(Default::default())),
                &["--umask 077"],
            ),
        );
        let text = render_textfile(&counters);
        assert_eq!(
            text,
            "# HELP borg_gate_sessions_total Client sessions judged by borg-gate, by policy and decision (accept, reject, probe).\n\
             # TYPE borg_gate_sessions_total counter\n\
             borg_gate_sessions_total{policy=\"alice\",decision=\"accept\"} 1\n\
             borg_gate_sessions_total{policy=\"alice\",decision=\"probe\"} 0\n\
             borg_gate_sessions_total{policy=\"alice\",decision=\"reject\"} 1\n\
             # HELP borg_gate_dropped_options_total Client options borg-gate dropped, by policy and option name.\n\
             # TYPE borg_gate_dropped_options_total counter\n\
             borg_gate_dropped_options_total{policy=\"alice\",option=\"--progress\"} 1\n\
             borg_gate_dropped_options_total{policy=\"alice\",option=\"--umask\"} 2\n"
        );
    }

    #[test]
    fn rendering_and_parsing_round_trip_with_awkward_names() {
        let mut counters = Counters::default();
        counters
            .sessions
            .insert(("we\"ird\\na\nme".into(), "probe".into()), 7);
        counters
            .dropped_options
            .insert(("p".into(), "--umask".into()), 12_345_678_901);
        assert_eq!(parse_textfile(&render_textfile(&counters)), counters);
    }

    #[test]
    fn parsing_ignores_foreign_and_malformed_lines() {
        let text = "# HELP x y\n\
                    other_metric{policy=\"a\",decision=\"accept\"} 5\n\
                    borg_gate_sessions_total{policy=\"a\",decision=\"accept\"} 5\n\
                    borg_gate_sessions_total{policy=\"a\",decision=\"accept\"} 1\n\
                    borg_gate_sessions_total{policy=\"a\"} 5\n\
                    borg_gate_sessions_total{policy=\"a\",decision=\"probe\",extra=\"x\"} 5\n\
                    borg_gate_sessions_total{policy=\"a\",decision=\"reject\"} -1\n\
                    borg_gate_sessions_total{policy=\"a\",decision=\"reject\"} NaN\n\
                    borg_gate_sessions_total{policy=\"a,decision=\"reject\"} 1\n\
                    borg_gate_sessions_total{policy=\"b\", decision=\"probe\"} 2e+00 1700000000\n\
                    borg_gate_sessions_total{policy=\"c\",decision=\"probe\"\n\
                    borg_gate_dropped_options_total{policy=\"a\",option=\"--umask\"} 3\n\
                    garbage\n\n";
        let counters = parse_textfile(text);
        let sessions: Vec<_> = counters.sessions.iter().collect();
        assert_eq!(
            sessions,
            [
                (&("a".to_owned(), "accept".to_owned()), &6),
                (&("b".to_owned(), "probe".to_owned()), &2),
            ]
        );
        assert_eq!(counters.dropped_options.len(), 1);
    }

    #[test]
    fn update_creates_replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gate.prom");
        for _ in 0..3 {
            update_textfile(
                &path,
                |c| count_judgement(c, "p", &judgement(Decision::Probe, &[])),
                MAX_LOCK_WAIT,
            )
            .unwrap();
        }
        let counters = parse_textfile(&fs::read_to_string(&path).unwrap());
        assert_eq!(counters.sessions[&("p".into(), "probe".into())], 3);
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["gate.prom", "gate.prom.lock"]);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }

    #[test]
    fn writing_replaces_the_whole_file_under_the_same_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.prom");
        fs::write(
            &path,
            "old_metric 1\nborg_gate_sessions_total{policy=\"p\",decision=\"accept\"} 9\n",
        )
        .unwrap();
        write_textfile(&path, "new_gauge 2\n".into(), MAX_LOCK_WAIT).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new_gauge 2\n");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert!(!dir.path().join("status.prom.tmp").exists());

        let holder = File::open(dir.path().join("status.prom.lock")).unwrap();
        let _held = Flock::lock(holder, FlockArg::LockExclusive).unwrap();
        let result = write_textfile(&path, "newer 3\n".into(), Duration::from_millis(50));
        assert!(matches!(result, Err(MetricsError::Busy)), "{result:?}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "new_gauge 2\n");
    }

    #[test]
    fn a_held_lock_makes_the_update_give_up_in_bounded_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gate.prom");
        let holder = File::create(dir.path().join("gate.prom.lock")).unwrap();
        let _held = Flock::lock(holder, FlockArg::LockExclusive).unwrap();
        let started = Instant::now();
        let result = update_textfile(&path, |_| {}, Duration::from_millis(100));
        assert!(matches!(result, Err(MetricsError::Busy)), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(!path.exists());
    }

    #[test]
    fn an_oversized_or_symlinked_textfile_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.prom");
        fs::write(&path, vec![b'#'; MAX_TEXTFILE_SIZE as usize + 1]).unwrap();
        assert!(matches!(
            update_textfile(&path, |_| {}, MAX_LOCK_WAIT),
            Err(MetricsError::TooLarge(_))
        ));
        let target = dir.path().join("target");
        fs::write(&target, "x").unwrap();
        let link = dir.path().join("link.prom");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(update_textfile(&link, |_| {}, MAX_LOCK_WAIT).is_err());
        assert_eq!(fs::read_to_string(&target).unwrap(), "x");
    }

    #[test]
    fn a_missing_directory_is_an_error_not_a_panic() {
        let result = update_textfile(Path::new("/nonexistent-dir/x.prom"), |_| {}, MAX_LOCK_WAIT);
        assert!(matches!(result, Err(MetricsError::Io { .. })));
    }

    fn ended(end: End, objects_deleted: u64, append_only: bool) -> SessionEnd {
        let id = crate::audit::SessionId::parse("s").unwrap();
        let mut record = SessionEnd::new(&id, "borg1", &end, UNIX_EPOCH);
        record.repository = Some("/srv/a \"quoted\"\nrepo".into());
        record.bytes_received = 1000;
        record.objects_put = 3;
        record.objects_deleted = objects_deleted;
        record.append_only = append_only;
        record.commits = 1;
        record.duration_s = 42.5;
        crate::audit::session_end::add_refusal(&mut record.refused, "put", "read-only");
        record
    }

    #[test]
    fn an_ended_session_counts_per_policy_with_every_end_and_bucket() {
        let mut counters = Counters::default();
        let committed = RepositoryChange::Committed {
            time: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            quota: Some(50_000_000),
            quota_used: Some(1234),
        };
        count_session_end(
            &mut counters,
            "laptop",
            &ended(End::ClientClosed, 2, true),
            &committed,
        );
        count_session_end(
            &mut counters,
            "laptop",
            &ended(End::IdleTimeout, 1, false),
            &RepositoryChange::None,
        );
        let totals = &counters.engine["laptop"];
        assert_eq!(
            (
                totals.bytes_received,
                totals.objects_put,
                totals.objects_deleted,
                totals.append_only_objects_deleted,
                totals.commits
            ),
            (2000, 6, 3, 2, 2)
        );
        assert_eq!(totals.duration.count, 2);
        assert_eq!(totals.duration.sum, 85.0);
        assert_eq!(totals.duration.buckets, [0, 0, 0, 2, 2, 2, 2, 2, 2, 2]);
        assert_eq!(counters.session_ends.len(), End::LABELS.len());
        assert_eq!(
            counters.session_ends[&("laptop".into(), "idle_timeout".into())],
            1
        );
        assert_eq!(
            counters.refused_calls[&("laptop".into(), "read-only".into())],
            2
        );
        let text = render_textfile(&counters);
        for line in [
            "borg_gate_session_bytes_received_total{policy=\"laptop\"} 2000\n",
            "borg_gate_objects_deleted_total{policy=\"laptop\"} 3\n",
            "borg_gate_append_only_objects_deleted_total{policy=\"laptop\"} 2\n",
            "borg_gate_session_end_total{policy=\"laptop\",end=\"client_closed\"} 1\n",
            "borg_gate_session_end_total{policy=\"laptop\",end=\"signal\"} 0\n",
            "borg_gate_refused_calls_total{policy=\"laptop\",reason=\"read-only\"} 2\n",
            "borg_gate_session_duration_seconds_bucket{policy=\"laptop\",le=\"10\"} 0\n",
            "borg_gate_session_duration_seconds_bucket{policy=\"laptop\",le=\"60\"} 2\n",
            "borg_gate_session_duration_seconds_bucket{policy=\"laptop\",le=\"+Inf\"} 2\n",
            "borg_gate_session_duration_seconds_sum{policy=\"laptop\"} 85\n",
            "borg_gate_session_duration_seconds_count{policy=\"laptop\"} 2\n",
            "borg_gate_repository_last_commit_timestamp_seconds{repository=\"/srv/a \\\"quoted\\\"\\nrepo\",policy=\"laptop\"} 1700000000\n",
            "borg_gate_repository_quota_bytes{repository=\"/srv/a \\\"quoted\\\"\\nrepo\",policy=\"laptop\"} 50000000\n",
            "# TYPE borg_gate_session_duration_seconds histogram\n",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        assert_eq!(parse_textfile(&text), counters);
    }

    #[test]
    fn a_destroyed_repository_loses_its_series_and_other_repositories_keep_theirs() {
        let mut counters = Counters::default();
        let committed = RepositoryChange::Committed {
            time: UNIX_EPOCH,
            quota: None,
            quota_used: Some(1),
        };
        let mut other = ended(End::ClientClosed, 0, false);
        other.repository = Some("/srv/other".into());
        count_session_end(&mut counters, "p", &other, &committed);
        let first = ended(End::ClientClosed, 0, false);
        count_session_end(&mut counters, "p", &first, &committed);
        count_session_end(&mut counters, "q", &first, &committed);
        assert_eq!(counters.repositories.len(), 3);
        count_session_end(&mut counters, "p", &first, &RepositoryChange::Destroyed);
        let left: Vec<&str> = counters
            .repositories
            .keys()
            .map(|(repository, _)| repository.as_str())
            .collect();
        assert_eq!(left, ["/srv/other"]);
        let text = render_textfile(&counters);
        assert!(
            !text.contains("borg_gate_repository_quota_bytes{"),
            "{text}"
        );
    }

    #[test]
    fn a_gate_update_keeps_the_engine_s_series() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gate.prom");
        record_session_end(
            &path,
            "p",
            &ended(End::ClientClosed, 1, true),
            &RepositoryChange::None,
        )
        .unwrap();
        update_textfile(
            &path,
            |c| count_judgement(c, "p", &judgement(Decision::Probe, &[])),
            MAX_LOCK_WAIT,
        )
        .unwrap();
        let counters = parse_textfile(&fs::read_to_string(&path).unwrap());
        assert_eq!(counters.engine["p"].objects_deleted, 1);
        assert_eq!(counters.sessions[&("p".into(), "probe".into())], 1);
    }

    proptest::proptest! {
        #[test]
        fn any_label_values_round_trip(policy in "\\PC{0,30}", option in "\\PC{0,30}", count in 0u64..1_000_000_000) {
            let mut counters = Counters::default();
            counters.sessions.insert((policy.clone(), "accept".into()), count);
            counters.dropped_options.insert((policy, option), count + 1);
            proptest::prop_assert_eq!(parse_textfile(&render_textfile(&counters)), counters);
        }

        #[test]
        fn parsing_any_text_never_panics(text in "\\PC{0,200}") {
            let _ = parse_textfile(&text);
            let _ = option_label(&text);
        }
    }
}
