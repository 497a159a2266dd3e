//! `borg-gate audit`: a summary of an audit log, streamed line by line into bounded counters.
//!
//! Memory does not grow with the log: lines are read one at a time with a length cap, each is
//! parsed into a small borrowed struct and dropped, and only counters (capped in number), a
//! fixed ring of recent refusals and a few malformed-line examples are kept.
//!
//! A log holds two kinds of records: the gate's decisions (`"event":"decision"`, or no
//! `event` in logs written before there were two) and the engines' `session_end` records,
//! which `sessions.rs` joins to their decisions by `session_id`.

mod sessions;

pub use sessions::{AppendOnlyDelete, KeySessions, SessionsSummary};

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::audit::record::RECORD_VERSION;
use crate::audit::session_end::{DECISION, RefusedCalls, SESSION_END};
use sessions::{EndFields, SessionFold};

/// A longer line is counted as malformed without being held in memory.
pub const MAX_LINE_LEN: usize = 1 << 20;
/// Distinct policies and options counted by name; the rest are counted under [`OTHER`].
pub const MAX_DISTINCT_NAMES: usize = 10_000;
/// How many recent refusals may be asked for.
pub const MAX_RECENT: usize = 1_000;
/// Malformed lines quoted in the summary.
const MALFORMED_EXAMPLES: usize = 5;
/// Texts from the log are cut to this many characters in the summary.
const TEXT_LIMIT: usize = 300;
/// The bucket for names past [`MAX_DISTINCT_NAMES`].
pub const OTHER: &str = "(other)";
/// The policy of records written when no policy could be loaded.
pub const NO_POLICY: &str = "(none)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportOptions {
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
    /// How many options to list.
    pub top: usize,
    /// How many recent refusals to keep.
    pub recent: usize,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            since: None,
            until: None,
            top: 10,
            recent: 10,
        }
    }
}

/// The fields of an audit record the summary needs, of either event; everything else is
/// skipped unparsed.
#[derive(Debug, Deserialize)]
struct LineRecord<'a> {
    v: u32,
    #[serde(borrow)]
    time: Cow<'a, str>,
    /// `decision` (or absent, in old logs) or `session_end`.
    #[serde(default, borrow)]
    event: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    session_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    policy: Option<Cow<'a, str>>,
    /// The key's `--name`, for keys that share a policy.
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    decision: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reason: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    command: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    ssh_connection: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    options: Vec<LineOption<'a>>,
    #[serde(default, borrow)]
    engine_argv: Option<Vec<Cow<'a, str>>>,
    // The fields of a `session_end` record (absent from decisions).
    #[serde(default, borrow)]
    repository: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    end: Option<Cow<'a, str>>,
    #[serde(default)]
    duration_s: f64,
    #[serde(default)]
    bytes_received: u64,
    #[serde(default)]
    bytes_put: u64,
    #[serde(default)]
    objects_put: u64,
    #[serde(default)]
    objects_deleted: u64,
    #[serde(default)]
    commits: u64,
    #[serde(default)]
    transaction_id: Option<u64>,
    #[serde(default)]
    append_only: bool,
    #[serde(default)]
    refused: Vec<RefusedCalls>,
}

#[derive(Debug, Deserialize)]
struct LineOption<'a> {
    #[serde(borrow)]
    option: Cow<'a, str>,
    #[serde(borrow)]
    action: Cow<'a, str>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DecisionCounts {
    pub accept: u64,
    pub reject: u64,
    pub probe: u64,
    pub error: u64,
}

impl DecisionCounts {
    pub fn total(&self) -> u64 {
        self.accept + self.reject + self.probe + self.error
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OptionCounts {
    pub dropped: u64,
    pub refused: u64,
}

/// The sessions of one key: a policy, and the key's `--name` when keys share the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicySummary {
    pub policy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(flatten)]
    pub counts: DecisionCounts,
}

impl PolicySummary {
    /// `laptop`, or `laptop --name alice`.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("{} --name {name}", self.policy),
            None => self.policy.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OptionSummary {
    /// The option's name only; values are never shown.
    pub option: String,
    #[serde(flatten)]
    pub counts: OptionCounts,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub line: u64,
    pub time: String,
    pub policy: String,
    /// `reject`, or `error` when the gate itself could not work.
    pub decision: String,
    pub reason: String,
    pub command: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MalformedLine {
    pub line: u64,
    pub problem: String,
}

/// The whole summary, ready for text or JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub file: Option<PathBuf>,
    /// Records inside the time window.
    pub records: u64,
    pub outside_window: u64,
    pub malformed: u64,
    pub malformed_examples: Vec<MalformedLine>,
    /// Records of a newer format than this borg-gate reads.
    pub unsupported_version: u64,
    pub first_time: Option<String>,
    pub last_time: Option<String>,
    pub totals: DecisionCounts,
    pub policies: Vec<PolicySummary>,
    pub options: Vec<OptionSummary>,
    /// Oldest first.
    pub recent_refusals: Vec<Refusal>,
    /// The built-in engines' records of the sessions, joined to the decisions.
    pub sessions: SessionsSummary,
}

/// Folds lines into counters.
#[derive(Debug)]
pub struct Summariser {
    options: ReportOptions,
    records: u64,
    outside_window: u64,
    malformed: u64,
    malformed_examples: Vec<MalformedLine>,
    unsupported_version: u64,
    first_time: Option<String>,
    last_time: Option<String>,
    totals: DecisionCounts,
    /// Per policy and key name.
    policies: HashMap<(String, Option<String>), DecisionCounts>,
    dropped_options: HashMap<String, OptionCounts>,
    recent: VecDeque<Refusal>,
    sessions: SessionFold,
}

impl Summariser {
    pub fn new(options: ReportOptions) -> Summariser {
        let options = ReportOptions {
            recent: options.recent.min(MAX_RECENT),
            ..options
        };
        Summariser {
            options,
            records: 0,
            outside_window: 0,
            malformed: 0,
            malformed_examples: Vec::new(),
            unsupported_version: 0,
            first_time: None,
            last_time: None,
            totals: DecisionCounts::default(),
            policies: HashMap::new(),
            dropped_options: HashMap::new(),
            recent: VecDeque::with_capacity(options.recent.min(MAX_RECENT)),
            sessions: SessionFold::default(),
        }
    }

    /// Counts a line that could not be read at all.
    pub fn add_malformed(&mut self, line: u64, problem: &str) {
        self.malformed += 1;
        if self.malformed_examples.len() < MALFORMED_EXAMPLES {
            self.malformed_examples.push(MalformedLine {
                line,
                problem: cut(problem),
            });
        }
    }

    /// Folds one line (without its newline) into the counters.
    pub fn add_line(&mut self, number: u64, line: &[u8]) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let record: LineRecord<'_> = match serde_json::from_slice(line) {
            Ok(record) => record,
            Err(error) => return self.add_malformed(number, &error.to_string()),
        };
        if record.v > RECORD_VERSION || record.v == 0 {
            self.unsupported_version += 1;
            return;
        }
        if self.options.since.is_some() || self.options.until.is_some() {
            let Ok(time) = humantime::parse_rfc3339_weak(&record.time) else {
                return self.add_malformed(number, "the time is not RFC 3339");
            };
            let early = self.options.since.is_some_and(|since| time < since);
            let late = self.options.until.is_some_and(|until| time > until);
            if early || late {
                self.outside_window += 1;
                return;
            }
        }
        match record.event.as_deref() {
            None | Some(DECISION) => self.add_decision(number, &record),
            Some(SESSION_END) => self.add_session_end(number, &record),
            Some(other) => self.add_malformed(number, &format!("unknown event {:?}", cut(other))),
        }
    }

    /// Notes the time of a record that was counted.
    fn seen(&mut self, time: &str) {
        self.records += 1;
        if self.first_time.is_none() {
            self.first_time = Some(cut(time));
        }
        self.last_time = Some(cut(time));
    }

    fn add_decision(&mut self, number: u64, record: &LineRecord<'_>) {
        let decision = record.decision.as_deref().unwrap_or_default();
        let counter = |counts: &mut DecisionCounts| -> Option<()> {
            match decision {
                "accept" => counts.accept += 1,
                "reject" => counts.reject += 1,
                "probe" => counts.probe += 1,
                "error" => counts.error += 1,
                _ => return None,
            }
            Some(())
        };
        if counter(&mut self.totals).is_none() {
            return self.add_malformed(
                number,
                &match &record.decision {
                    Some(decision) => format!("unknown decision {:?}", cut(decision)),
                    None => "a decision record without a decision".to_owned(),
                },
            );
        }
        self.seen(&record.time);
        let policy = record.policy.as_deref().unwrap_or(NO_POLICY);
        let key = (cut(policy), record.name.as_deref().map(cut));
        let key = if self.policies.contains_key(&key) || self.policies.len() < MAX_DISTINCT_NAMES {
            key
        } else {
            (OTHER.to_owned(), None)
        };
        counter(self.policies.entry(key).or_default());
        for option in &record.options {
            let counts = match option.action.as_ref() {
                "dropped" | "refused" => {
                    bounded_entry(&mut self.dropped_options, option_name(&option.option))
                }
                _ => continue,
            };
            if option.action == "dropped" {
                counts.dropped += 1;
            } else {
                counts.refused += 1;
            }
        }
        // The built-in engine got the session id: its record of the session will follow.
        let engine_records = record.engine_argv.as_ref().is_some_and(|argv| {
            argv.iter()
                .any(|argument| argument.starts_with("--session-id="))
        });
        if let (true, "accept", Some(session_id)) =
            (engine_records, decision, record.session_id.as_deref())
        {
            self.sessions.decision(
                session_id,
                policy,
                record.name.as_deref(),
                record.ssh_connection.as_deref(),
            );
        }
        if matches!(decision, "reject" | "error") && self.options.recent > 0 {
            if self.recent.len() == self.options.recent {
                self.recent.pop_front();
            }
            self.recent.push_back(Refusal {
                line: number,
                time: cut(&record.time),
                policy: cut(policy),
                decision: decision.to_owned(),
                reason: cut(record.reason.as_deref().unwrap_or("")),
                command: record.command.as_deref().map(cut),
            });
        }
    }

    fn add_session_end(&mut self, number: u64, record: &LineRecord<'_>) {
        let Some(end) = record.end.as_deref() else {
            return self.add_malformed(number, "a session_end record without an end");
        };
        self.seen(&record.time);
        self.sessions.session_end(&EndFields {
            time: &record.time,
            session_id: record.session_id.as_deref(),
            policy: record.policy.as_deref(),
            repository: record.repository.as_deref(),
            end,
            duration_s: record.duration_s,
            bytes_received: record.bytes_received,
            bytes_put: record.bytes_put,
            objects_put: record.objects_put,
            objects_deleted: record.objects_deleted,
            commits: record.commits,
            transaction_id: record.transaction_id,
            append_only: record.append_only,
            refused: &record.refused,
        });
    }

    pub fn finish(self, file: Option<PathBuf>) -> Summary {
        let mut policies: Vec<PolicySummary> = self
            .policies
            .into_iter()
            .map(|((policy, name), counts)| PolicySummary {
                policy,
                name,
                counts,
            })
            .collect();
        policies.sort_by(|a, b| (&a.policy, &a.name).cmp(&(&b.policy, &b.name)));
        let mut options: Vec<OptionSummary> = self
            .dropped_options
            .into_iter()
            .map(|(option, counts)| OptionSummary { option, counts })
            .collect();
        options.sort_by(|a, b| {
            let total = |o: &OptionSummary| o.counts.dropped + o.counts.refused;
            total(b)
                .cmp(&total(a))
                .then_with(|| a.option.cmp(&b.option))
        });
        options.truncate(self.options.top);
        Summary {
            file,
            records: self.records,
            outside_window: self.outside_window,
            malformed: self.malformed,
            malformed_examples: self.malformed_examples,
            unsupported_version: self.unsupported_version,
            first_time: self.first_time,
            last_time: self.last_time,
            totals: self.totals,
            policies,
            options,
            recent_refusals: self.recent.into_iter().collect(),
            sessions: self.sessions.finish(),
        }
    }
}

/// The counter for `name`, or the shared [`OTHER`] counter once the map is full.
fn bounded_entry<'m, T: Default>(map: &'m mut HashMap<String, T>, name: &str) -> &'m mut T {
    let mut key = cut(name);
    if !map.contains_key(&key) && map.len() >= MAX_DISTINCT_NAMES {
        key = OTHER.to_owned();
    }
    map.entry(key).or_default()
}

/// `--umask=000` and `--lock-wait 600` are `--umask` and `--lock-wait`: names, never values.
pub fn option_name(written: &str) -> &str {
    let end = written.find(['=', ' ']).unwrap_or(written.len());
    let name = &written[..end];
    match name.char_indices().nth(100) {
        Some((cut, _)) => &name[..cut],
        None => name,
    }
}

/// At most [`TEXT_LIMIT`] characters, with a marker when cut, and with control and
/// bidirectional characters escaped: a log written by an older borg-gate (or by hand) may
/// hold them, and they must not reorder or break the lines of the summary.
fn cut(text: &str) -> String {
    let shown = match text.char_indices().nth(TEXT_LIMIT) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    };
    crate::gate::command::visible(&shown)
}

/// What reading one bounded line found.
pub(crate) enum LineRead {
    Line,
    TooLong,
    End,
}

/// Reads up to the next newline into `line` (without it), keeping at most `limit` bytes.
pub(crate) fn read_line_bounded<R: BufRead>(
    reader: &mut R,
    line: &mut Vec<u8>,
    limit: usize,
) -> io::Result<LineRead> {
    line.clear();
    let mut seen_any = false;
    let mut too_long = false;
    loop {
        let buffer = match reader.fill_buf() {
            Ok(buffer) => buffer,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if buffer.is_empty() {
            return Ok(match (seen_any, too_long) {
                (false, _) => LineRead::End,
                (true, true) => LineRead::TooLong,
                (true, false) => LineRead::Line,
            });
        }
        seen_any = true;
        let (chunk, found_newline) = match buffer.iter().position(|&b| b == b'\n') {
            Some(at) => (&buffer[..at], true),
            None => (buffer, false),
        };
        if !too_long {
            if line.len() + chunk.len() > limit {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = chunk.len() + usize::from(found_newline);
        reader.consume(used);
        if found_newline {
            return Ok(if too_long {
                LineRead::TooLong
            } else {
                LineRead::Line
            });
        }
    }
}

/// Summarises everything `reader` yields.
pub fn summarise_reader<R: BufRead>(mut reader: R, options: ReportOptions) -> io::Result<Summary> {
    let mut summariser = Summariser::new(options);
    let mut line = Vec::with_capacity(4096);
    let mut number = 0u64;
    loop {
        match read_line_bounded(&mut reader, &mut line, MAX_LINE_LEN)? {
            LineRead::End => break,
            LineRead::Line => {
                number += 1;
                summariser.add_line(number, &line);
            }
            LineRead::TooLong => {
                number += 1;
                summariser.add_malformed(
                    number,
                    &format!("the line is longer than {MAX_LINE_LEN} bytes"),
                );
            }
        }
        if line.capacity() > 64 * 1024 {
            // One long line must not keep its buffer for the rest of the file.
            line = Vec::with_capacity(4096);
        }
    }
    Ok(summariser.finish(None))
}

#[derive(Debug)]
pub enum AuditReportError {
    Read { path: PathBuf, error: io::Error },
    TimeBound(String),
}

impl fmt::Display for AuditReportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditReportError::Read { path, error } => write!(
                f,
                "cannot read {}: {}",
                path.display(),
                crate::common::text::plain_io_error(error)
            ),
            AuditReportError::TimeBound(text) => write!(
                f,
                "{text:?} is not a time; write RFC 3339 (2026-12-06T21:39:32Z, 2026-12-06 21:39, 2026-12-06) or a duration ago (2h, 7days, \"30min ago\")"
            ),
        }
    }
}

impl std::error::Error for AuditReportError {}

/// Summarises an audit log file.
pub fn summarise_file(path: &Path, options: ReportOptions) -> Result<Summary, AuditReportError> {
    let read_error = |error| AuditReportError::Read {
        path: path.to_path_buf(),
        error,
    };
    let file = File::open(path).map_err(read_error)?;
    let mut summary = summarise_reader(BufReader::with_capacity(256 * 1024, file), options)
        .map_err(read_error)?;
    summary.file = Some(path.to_path_buf());
    Ok(summary)
}

/// `--since`/`--until`: RFC 3339 (with `Z`, an offset, a space for `T`, or a date alone, all
/// taken as UTC when no offset is given), `now`, or a duration back from `now` (`2h`,
/// `7days`, `30min ago`).
pub fn parse_time_bound(text: &str, now: SystemTime) -> Result<SystemTime, AuditReportError> {
    let bad = || AuditReportError::TimeBound(text.to_owned());
    let trimmed = text.trim();
    if trimmed.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    let ago = trimmed.strip_suffix("ago").map_or(trimmed, str::trim_end);
    if let Ok(duration) = humantime::parse_duration(ago) {
        return now.checked_sub(duration).ok_or_else(bad);
    }
    if is_date(trimmed) {
        return humantime::parse_rfc3339_weak(&format!("{trimmed}T00:00:00Z")).map_err(|_| bad());
    }
    if let Some((local, offset)) = split_offset(trimmed) {
        let local = parse_weak(local).ok_or_else(bad)?;
        return match offset {
            Offset::East(duration) => local.checked_sub(duration),
            Offset::West(duration) => local.checked_add(duration),
        }
        .ok_or_else(bad);
    }
    parse_weak(trimmed).ok_or_else(bad)
}

/// humantime's RFC 3339 reading, also without seconds (`2026-01-02 03:04`).
fn parse_weak(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text)
        .or_else(|_| humantime::parse_rfc3339_weak(&format!("{text}:00")))
        .ok()
}

fn is_date(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit())
}

enum Offset {
    East(Duration),
    West(Duration),
}

/// `...+02:00` or `...-05:30` at the end of a timestamp.
fn split_offset(text: &str) -> Option<(&str, Offset)> {
    if text.len() < 7 || !text.is_char_boundary(text.len() - 6) {
        return None;
    }
    let (local, offset) = text.split_at(text.len() - 6);
    let bytes = offset.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u64> {
        let part = offset.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    if bytes[3] != b':' || !local.contains(['T', 't', ' ']) {
        return None;
    }
    let (hours, minutes) = (digits(1..3)?, digits(4..6)?);
    if hours > 23 || minutes > 59 {
        return None;
    }
    let duration = Duration::from_secs(hours * 3600 + minutes * 60);
    match bytes[0] {
        b'+' => Some((local, Offset::East(duration))),
        b'-' => Some((local, Offset::West(duration))),
        _ => None,
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self
            .file
            .as_ref()
            .map_or_else(|| "audit log".to_owned(), |p| p.display().to_string());
        write!(f, "{name}: {} records", self.records)?;
        if let (Some(first), Some(last)) = (&self.first_time, &self.last_time) {
            write!(f, " from {first} to {last}")?;
        }
        writeln!(f)?;
        if self.outside_window > 0 {
            writeln!(
                f,
                "  {} records outside --since/--until",
                self.outside_window
            )?;
        }
        if self.unsupported_version > 0 {
            writeln!(
                f,
                "  {} records of an unsupported format version (newer borg-gate?) skipped",
                self.unsupported_version
            )?;
        }
        if self.malformed > 0 {
            writeln!(f, "  {} malformed lines skipped:", self.malformed)?;
            for example in &self.malformed_examples {
                writeln!(f, "    line {}: {}", example.line, example.problem)?;
            }
        }
        writeln!(f)?;
        writeln!(f, "sessions per policy:")?;
        let width = self
            .policies
            .iter()
            .map(|p| p.label().chars().count())
            .chain([6, 5])
            .max()
            .unwrap_or(6);
        writeln!(
            f,
            "  {:<width$}  {:>9}  {:>9}  {:>9}  {:>9}",
            "POLICY", "ACCEPTED", "REFUSED", "PROBED", "ERRORS"
        )?;
        let row = |f: &mut fmt::Formatter<'_>, label: &str, c: &DecisionCounts| {
            writeln!(
                f,
                "  {label:<width$}  {:>9}  {:>9}  {:>9}  {:>9}",
                c.accept, c.reject, c.probe, c.error
            )
        };
        for policy in &self.policies {
            row(f, &policy.label(), &policy.counts)?;
        }
        row(f, "total", &self.totals)?;
        writeln!(f)?;
        if self.sessions.records > 0 || self.sessions.without_end > 0 {
            write_sessions(f, &self.sessions)?;
        }
        writeln!(f, "most dropped or refused options:")?;
        if self.options.is_empty() {
            writeln!(f, "  none")?;
        } else {
            let width = self
                .options
                .iter()
                .map(|o| o.option.chars().count())
                .chain([6])
                .max()
                .unwrap_or(6);
            writeln!(
                f,
                "  {:<width$}  {:>9}  {:>9}",
                "OPTION", "DROPPED", "REFUSED"
            )?;
            for option in &self.options {
                writeln!(
                    f,
                    "  {:<width$}  {:>9}  {:>9}",
                    option.option, option.counts.dropped, option.counts.refused
                )?;
            }
        }
        writeln!(f)?;
        writeln!(f, "most recent refusals (newest last):")?;
        if self.recent_refusals.is_empty() {
            writeln!(f, "  none")?;
        }
        for refusal in &self.recent_refusals {
            write!(
                f,
                "  {}  {}  {}: {}",
                refusal.time, refusal.policy, refusal.decision, refusal.reason
            )?;
            if let Some(command) = &refusal.command {
                write!(f, "  [command: {command}]")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// The engines' sections: sessions per key, refused calls per key, and deletes through
/// append-only keys with how to undo them.
fn write_sessions(f: &mut fmt::Formatter<'_>, sessions: &SessionsSummary) -> fmt::Result {
    use crate::engine::borg1::repository::units::format_file_size;
    let size = |bytes: u64| format_file_size(i64::try_from(bytes).unwrap_or(i64::MAX));
    writeln!(f, "sessions of the built-in engines per key:")?;
    let width = sessions
        .keys
        .iter()
        .map(|k| k.label().chars().count())
        .chain([3, 5])
        .max()
        .unwrap_or(5);
    writeln!(
        f,
        "  {:<width$}  {:>8}  {:>10}  {:>8}  {:>8}  {:>7}  {:>7}  ENDS",
        "KEY", "SESSIONS", "ADDED", "PUT", "DELETED", "COMMITS", "REFUSED"
    )?;
    for key in &sessions.keys {
        let ends: Vec<String> = key
            .ends
            .iter()
            .map(|(end, count)| format!("{end} {count}"))
            .collect();
        writeln!(
            f,
            "  {:<width$}  {:>8}  {:>10}  {:>8}  {:>8}  {:>7}  {:>7}  {}",
            key.label(),
            key.sessions,
            size(key.bytes_added),
            key.objects_put,
            key.objects_deleted,
            key.commits,
            key.refused_calls,
            ends.join(", ")
        )?;
    }
    if sessions.without_decision > 0 {
        writeln!(
            f,
            "  {} session records without their decision in this log (no gate in front, or an earlier log)",
            sessions.without_decision
        )?;
    }
    if sessions.without_end > 0 {
        writeln!(
            f,
            "  {} sessions the gate started without their end in this log (still running, killed with SIGKILL, or in a later log)",
            sessions.without_end
        )?;
    }
    writeln!(f)?;
    let refusing: Vec<&KeySessions> = sessions
        .keys
        .iter()
        .filter(|key| key.refused_calls > 0)
        .collect();
    if !refusing.is_empty() {
        writeln!(f, "calls the engines refused, per key:")?;
        let call_width = refusing
            .iter()
            .flat_map(|key| key.refused.iter().map(|r| r.call.chars().count()))
            .chain([4])
            .max()
            .unwrap_or(4);
        let reason_width = refusing
            .iter()
            .flat_map(|key| key.refused.iter().map(|r| r.reason.chars().count()))
            .chain([6])
            .max()
            .unwrap_or(6);
        writeln!(
            f,
            "  {:<width$}  {:<call_width$}  {:<reason_width$}  {:>7}",
            "KEY", "CALL", "REASON", "COUNT"
        )?;
        for key in refusing {
            for refused in &key.refused {
                writeln!(
                    f,
                    "  {:<width$}  {:<call_width$}  {:<reason_width$}  {:>7}",
                    key.label(),
                    refused.call,
                    refused.reason,
                    refused.count
                )?;
            }
        }
        writeln!(f)?;
    }
    if !sessions.append_only_deletes.is_empty() {
        writeln!(
            f,
            "deletes through append-only keys (newest last; recoverable, see below):"
        )?;
        for delete in &sessions.append_only_deletes {
            let key = match &delete.name {
                Some(name) => format!("{} --name {name}", delete.policy),
                None => delete.policy.clone(),
            };
            write!(
                f,
                "  {}  {key}: {} objects deleted in {}",
                delete.time,
                delete.objects_deleted,
                delete.repository.as_deref().unwrap_or("(no repository)")
            )?;
            if let Some(started) = &delete.started {
                write!(f, ", session started {started}")?;
            }
            if let Some(client) = &delete.ssh_connection {
                let address = client.split(' ').next().unwrap_or(client);
                write!(f, " from {address}")?;
            }
            if let Some(transaction) = delete.transaction_id {
                write!(f, ", committed as transaction {transaction}")?;
            }
            if let Some(id) = &delete.session_id {
                write!(f, " [session {id}]")?;
            }
            writeln!(f)?;
        }
        writeln!(f, "{APPEND_ONLY_RECOVERY}")?;
        writeln!(f)?;
    }
    Ok(())
}

/// How deletes through an append-only key are undone, as the report says it.
pub const APPEND_ONLY_RECOVERY: &str = "\
  An append-only repository keeps what these sessions deleted until a key with full access
  compacts it. To undo them: stop the repository's clients and copy it (cp -a); in its
  `transactions` file find N, the last transaction before the session started; remove the
  index.*, hints.* and integrity.* files and move every segment file numbered above N out of
  data/; run `borg check` on the repository, and delete the clients' caches
  (borg-gate(1), RECOVERING DELETES).";

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn record(time: &str, policy: &str, decision: &str, options: &str) -> String {
        format!(
            r#"{{"v":1,"time":"{time}","policy_file":"/p.toml","policy":"{policy}","pid":1,"ssh_connection":null,"command":"borg serve","decision":"{decision}","reason":{},"tokens":["borg","serve"],"dropped_env":[],"options":[{options}],"engine_argv":null}}"#,
            if decision == "reject" {
                "\"refused for a reason\""
            } else {
                "null"
            }
        )
    }

    fn summarise(text: &str, options: ReportOptions) -> Summary {
        summarise_reader(text.as_bytes(), options).unwrap()
    }

    const T1: &str = "2026-01-01T10:00:00.000000Z";
    const T2: &str = "2026-01-02T10:00:00.000000Z";
    const T3: &str = "2026-01-03T10:00:00.000000Z";

    #[test]
    fn keys_sharing_a_policy_are_counted_per_key_name() {
        let named = |name: &str, decision: &str| {
            record(T1, "laptop", decision, "").replacen(
                "\"pid\"",
                &format!("\"name\":\"{name}\",\"pid\""),
                1,
            )
        };
        let text = [
            named("alice", "accept"),
            named("alice", "accept"),
            named("bob", "reject"),
            record(T2, "laptop", "error", ""),
        ]
        .join("\n");
        let summary = summarise(&text, ReportOptions::default());
        let rows: Vec<(String, u64, u64, u64)> = summary
            .policies
            .iter()
            .map(|p| (p.label(), p.counts.accept, p.counts.reject, p.counts.error))
            .collect();
        assert_eq!(
            rows,
            [
                ("laptop".to_owned(), 0, 0, 1),
                ("laptop --name alice".to_owned(), 2, 0, 0),
                ("laptop --name bob".to_owned(), 0, 1, 0),
            ]
        );
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["policies"][1]["name"], "alice");
        assert!(json["policies"][0].get("name").is_none());
        assert!(summary.to_string().contains("  laptop --name alice  "));
    }

    #[test]
    fn counts_decisions_per_policy() {
        let text = [
            record(T1, "alice", "accept", ""),
            record(T1, "alice", "accept", ""),
            record(T2, "alice", "reject", ""),
            record(T2, "bob", "probe", ""),
            record(T3, "bob", "error", ""),
        ]
        .join("\n");
        let summary = summarise(&text, ReportOptions::default());
        assert_eq!(summary.records, 5);
        assert_eq!(summary.malformed, 0);
        assert_eq!(
            summary.policies,
            [
                PolicySummary {
                    policy: "alice".into(),
                    name: None,
                    counts: DecisionCounts {
                        accept: 2,
                        reject: 1,
                        probe: 0,
                        error: 0
                    }
                },
                PolicySummary {
                    policy: "bob".into(),
                    name: None,
                    counts: DecisionCounts {
                        accept: 0,
                        reject: 0,
                        probe: 1,
                        error: 1
                    }
                },
            ]
        );
        assert_eq!(summary.totals.total(), 5);
        assert_eq!(summary.first_time.as_deref(), Some(T1));
        assert_eq!(summary.last_time.as_deref(), Some(T3));
    }

    #[test]
    fn records_without_a_policy_count_under_none() {
        let line = r#"{"v":1,"time":"2026-01-01T00:00:00Z","policy":null,"decision":"error","reason":"policy unreadable"}"#;
        let summary = summarise(line, ReportOptions::default());
        assert_eq!(summary.policies[0].policy, NO_POLICY);
        assert_eq!(summary.recent_refusals[0].reason, "policy unreadable");
    }

    #[test]
    fn option_counts_use_names_only_and_rank_by_total() {
        let options = r#"{"option":"--umask=000","action":"dropped","reason":"x"},{"option":"--lock-wait 9999","action":"clamped"},{"option":"--foo=secret","action":"refused"},{"option":"--info","action":"accepted"}"#;
        let umask = r#"{"option":"--umask 077","action":"dropped"}"#;
        let text = [
            record(T1, "a", "accept", options),
            record(T1, "a", "reject", options),
            record(T1, "a", "accept", umask),
        ]
        .join("\n");
        let summary = summarise(&text, ReportOptions::default());
        assert_eq!(
            summary.options,
            [
                OptionSummary {
                    option: "--umask".into(),
                    counts: OptionCounts {
                        dropped: 3,
                        refused: 0
                    }
                },
                OptionSummary {
                    option: "--foo".into(),
                    counts: OptionCounts {
                        dropped: 0,
                        refused: 2
                    }
                },
            ]
        );
        let rendered = summary.to_string();
        assert!(
            !rendered.contains("secret") && !rendered.contains("=000"),
            "{rendered}"
        );
        let top_one = summarise(
            &text,
            ReportOptions {
                top: 1,
                ..ReportOptions::default()
            },
        );
        assert_eq!(top_one.options.len(), 1);
    }

    #[test]
    fn option_names_drop_values() {
        assert_eq!(option_name("--umask=000"), "--umask");
        assert_eq!(option_name("--lock-wait 600"), "--lock-wait");
        assert_eq!(option_name("-v"), "-v");
        assert_eq!(option_name(""), "");
        assert_eq!(option_name(&"-".repeat(500)).len(), 100);
    }

    #[test]
    fn malformed_lines_are_counted_with_examples_and_never_panic() {
        let text = [
            "not json".to_owned(),
            "{\"v\":1}".to_owned(),
            record(T1, "a", "accept", ""),
            r#"{"v":1,"time":"x","policy":"a","decision":"maybe"}"#.to_owned(),
            "\u{0}\u{1}\u{ff}".to_owned(),
            String::new(),
            "   ".to_owned(),
            r#"{"v":1,"time":"x","policy":"a","decision":"accept","options":[{"option":1}]}"#
                .to_owned(),
            "[1,2,3]".to_owned(),
            "{\"v\":-1}".to_owned(),
        ]
        .join("\n");
        let summary = summarise(&text, ReportOptions::default());
        assert_eq!(summary.records, 1);
        assert_eq!(summary.malformed, 7);
        assert_eq!(summary.malformed_examples.len(), MALFORMED_EXAMPLES);
        assert_eq!(summary.malformed_examples[0].line, 1);
        assert_eq!(summary.malformed_examples[2].line, 4);
        assert_eq!(
            summary.malformed_examples[2].problem,
            "unknown decision \"maybe\""
        );
        let invalid_utf8: &[u8] = b"{\"v\":1,\"time\":\"\xff\",\"decision\":\"accept\"}\n";
        let summary = summarise_reader(invalid_utf8, ReportOptions::default()).unwrap();
        assert_eq!(summary.malformed, 1);
    }

    #[test]
    fn texts_from_the_log_are_shown_with_invisible_characters_escaped() {
        let line = r#"{"v":1,"time":"2026-01-01T00:00:00Z","policy_file":"/p.toml","policy":"p\u202eq","pid":1,"command":"borg \u2028serve \u001b[2J","decision":"reject","reason":"r\u2066","options":[{"option":"--x\u202e","action":"dropped"}]}"#;
        let summary = summarise(line, ReportOptions::default());
        let text = summary.to_string();
        assert!(
            !text
                .chars()
                .any(|c| crate::gate::command::is_invisible_format(c)
                    || (c.is_control() && c != '\n')),
            "{text:?}"
        );
        assert!(text.contains("p\\u{202e}q"), "{text}");
        assert!(text.contains("borg \\u{2028}serve \\u{001b}[2J"), "{text}");
        assert!(text.contains("--x\\u{202e}"), "{text}");
    }

    #[test]
    fn newer_format_versions_are_skipped_and_counted() {
        let text = record(T1, "a", "accept", "").replace("\"v\":1", "\"v\":2");
        let summary = summarise(&text, ReportOptions::default());
        assert_eq!(summary.records, 0);
        assert_eq!(summary.unsupported_version, 1);
    }

    #[test]
    fn the_time_window_is_inclusive() {
        let text = [
            record(T1, "a", "accept", ""),
            record(T2, "a", "accept", ""),
            record(T3, "a", "accept", ""),
        ]
        .join("\n");
        let at = |t: &str| humantime::parse_rfc3339(t).unwrap();
        let summary = summarise(
            &text,
            ReportOptions {
                since: Some(at("2026-01-02T10:00:00Z")),
                until: Some(at("2026-01-02T10:00:00Z")),
                ..ReportOptions::default()
            },
        );
        assert_eq!(summary.records, 1);
        assert_eq!(summary.outside_window, 2);
        assert_eq!(summary.first_time.as_deref(), Some(T2));
        let bad_time = r#"{"v":1,"time":"yesterday","policy":"a","decision":"accept"}"#;
        let summary = summarise(
            bad_time,
            ReportOptions {
                since: Some(UNIX_EPOCH),
                ..ReportOptions::default()
            },
        );
        assert_eq!(summary.malformed, 1);
    }

    #[test]
    fn recent_refusals_keep_only_the_newest() {
        let lines: Vec<String> = (0..25)
            .map(|i| {
                let time = format!("2026-01-01T00:00:{i:02}.000000Z");
                record(&time, "a", if i % 2 == 0 { "reject" } else { "accept" }, "")
            })
            .collect();
        let summary = summarise(
            &lines.join("\n"),
            ReportOptions {
                recent: 3,
                ..ReportOptions::default()
            },
        );
        let times: Vec<&str> = summary
            .recent_refusals
            .iter()
            .map(|r| r.time.as_str())
            .collect();
        assert_eq!(
            times,
            [
                "2026-01-01T00:00:20.000000Z",
                "2026-01-01T00:00:22.000000Z",
                "2026-01-01T00:00:24.000000Z"
            ]
        );
        assert_eq!(summary.recent_refusals[2].line, 25);
        assert_eq!(summary.recent_refusals[2].reason, "refused for a reason");
        let none = summarise(
            &lines.join("\n"),
            ReportOptions {
                recent: 0,
                ..ReportOptions::default()
            },
        );
        assert!(none.recent_refusals.is_empty());
    }

    #[test]
    fn overlong_lines_are_malformed_and_reading_goes_on() {
        let long = format!(
            "{}\n{}\n",
            "x".repeat(MAX_LINE_LEN + 10),
            record(T1, "a", "accept", "")
        );
        let summary = summarise(&long, ReportOptions::default());
        assert_eq!(summary.malformed, 1);
        assert_eq!(summary.records, 1);
        assert_eq!(summary.malformed_examples[0].line, 1);
    }

    #[test]
    fn bounded_line_reader_splits_across_small_buffers() {
        let data = b"abc\ndefgh\n\nij";
        let mut reader = BufReader::with_capacity(2, &data[..]);
        let mut line = Vec::new();
        let mut seen = Vec::new();
        loop {
            match read_line_bounded(&mut reader, &mut line, 4).unwrap() {
                LineRead::End => break,
                LineRead::Line => seen.push(String::from_utf8(line.clone()).unwrap()),
                LineRead::TooLong => seen.push("<long>".to_owned()),
            }
        }
        assert_eq!(seen, ["abc", "<long>", "", "ij"]);
    }

    #[test]
    fn distinct_names_are_capped() {
        let mut summariser = Summariser::new(ReportOptions::default());
        for i in 0..(MAX_DISTINCT_NAMES + 50) {
            let line = record(T1, &format!("p{i}"), "accept", "");
            summariser.add_line(i as u64 + 1, line.as_bytes());
        }
        let summary = summariser.finish(None);
        assert_eq!(summary.policies.len(), MAX_DISTINCT_NAMES + 1);
        let other = summary.policies.iter().find(|p| p.policy == OTHER).unwrap();
        assert_eq!(other.counts.accept, 50);
        assert_eq!(summary.records, MAX_DISTINCT_NAMES as u64 + 50);
    }

    #[test]
    fn time_bounds_accept_rfc3339_dates_offsets_and_durations() {
        let now = humantime::parse_rfc3339("2026-06-15T12:00:00Z").unwrap();
        let at = |t: &str| humantime::parse_rfc3339(t).unwrap();
        let parse = |t: &str| parse_time_bound(t, now).unwrap();
        assert_eq!(parse("2026-01-02T03:04:05Z"), at("2026-01-02T03:04:05Z"));
        assert_eq!(
            parse("2026-01-02T03:04:05.5Z"),
            at("2026-01-02T03:04:05.5Z")
        );
        assert_eq!(parse("2026-01-02 03:04"), at("2026-01-02T03:04:00Z"));
        assert_eq!(parse("2026-01-02"), at("2026-01-02T00:00:00Z"));
        assert_eq!(
            parse("2026-01-02T05:04:05+02:00"),
            at("2026-01-02T03:04:05Z")
        );
        assert_eq!(
            parse("2026-01-01T22:04:05-05:00"),
            at("2026-01-02T03:04:05Z")
        );
        assert_eq!(parse("now"), now);
        assert_eq!(parse("2h"), at("2026-06-15T10:00:00Z"));
        assert_eq!(parse("7days"), at("2026-06-08T12:00:00Z"));
        assert_eq!(parse("30min ago"), at("2026-06-15T11:30:00Z"));
        assert_eq!(parse(" 1h 30m ago "), at("2026-06-15T10:30:00Z"));
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-01-02T03:04:05+25:00",
            "ago",
            "12",
        ] {
            assert!(parse_time_bound(bad, now).is_err(), "{bad}");
        }
        assert_eq!(
            parse_time_bound("soon", now).unwrap_err().to_string(),
            "\"soon\" is not a time; write RFC 3339 (2026-12-06T21:39:32Z, 2026-12-06 21:39, 2026-12-06) or a duration ago (2h, 7days, \"30min ago\")"
        );
    }

    #[test]
    fn the_text_summary_has_every_section() {
        let text = [
            record(
                T1,
                "alice",
                "accept",
                r#"{"option":"--umask=000","action":"dropped"}"#,
            ),
            record(T2, "alice", "reject", ""),
        ]
        .join("\n");
        let rendered = summarise(&text, ReportOptions::default()).to_string();
        assert_eq!(
            rendered,
            format!(
                "audit log: 2 records from {T1} to {T2}\n\n\
                 sessions per policy:\n\
                 \x20 POLICY   ACCEPTED    REFUSED     PROBED     ERRORS\n\
                 \x20 alice           1          1          0          0\n\
                 \x20 total           1          1          0          0\n\n\
                 most dropped or refused options:\n\
                 \x20 OPTION     DROPPED    REFUSED\n\
                 \x20 --umask          1          0\n\n\
                 most recent refusals (newest last):\n\
                 \x20 {T2}  alice  reject: refused for a reason  [command: borg serve]\n"
            )
        );
    }

    /// A decision of the gate that started the built-in engine with session `id`.
    fn started(id: &str, policy: &str, name: &str) -> String {
        format!(
            r#"{{"v":1,"time":"{T1}","event":"decision","session_id":"{id}","policy_file":"/p.toml","policy":"{policy}","name":"{name}","pid":1,"ssh_connection":"192.0.2.7 4000 192.0.2.1 22","command":"borg serve","decision":"accept","reason":null,"tokens":[],"dropped_env":[],"options":[],"engine_argv":["borg-gate","serve","--append-only","--session-id={id}"]}}"#
        )
    }

    /// The engine's record of session `id`.
    fn ended(id: &str, end: &str, extra: &str) -> String {
        format!(
            r#"{{"v":1,"time":"{T2}","event":"session_end","session_id":"{id}","policy":"laptop","pid":2,"protocol":"borg1","repository":"/srv/alice/repo","client_version":"1.4.5","end":"{end}","duration_s":60.0,"lock_wait_s":0.0,"bytes_received":2048,"bytes_sent":100,"objects_put":3,"bytes_put":1000,"objects_deleted":0,"objects_read":1,"commits":1,"transaction_id":9,"compacted_segments":0,"rolled_back":false,"append_only":true,"permissions":"all","refused_calls":0,"refused":[]{extra}}}"#
        )
    }

    #[test]
    fn engine_records_join_their_decisions_and_are_reported_per_key() {
        let text = [
            started("s1", "laptop", "alice"),
            ended("s1", "client_closed", ""),
            started("s2", "laptop", "alice"),
            ended("s2", "idle_timeout", "")
                .replace(r#""objects_deleted":0"#, r#""objects_deleted":12"#),
            started("s3", "restore", "alice"),
            ended("s3", "error", r#","error":"PermissionDenied""#)
                .replace(
                    r#""refused":[]"#,
                    r#""refused":[{"call":"put","reason":"read-only","count":6}]"#,
                )
                .replace(r#""append_only":true"#, r#""append_only":false"#),
            started("s4", "laptop", "bob"),
            record(T3, "old", "accept", ""),
        ]
        .join("\n");
        let summary = summarise(&text, ReportOptions::default());
        assert_eq!(summary.records, 8);
        assert_eq!(summary.malformed, 0);
        assert_eq!(summary.totals.accept, 5);
        let sessions = &summary.sessions;
        assert_eq!(sessions.records, 3);
        assert_eq!(sessions.without_decision, 0);
        assert_eq!(sessions.without_end, 1);
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(
            json["sessions"]["keys"][0],
            serde_json::json!({
                "policy": "laptop", "name": "alice", "sessions": 2,
                "ends": {"client_closed": 1, "idle_timeout": 1},
                "bytes_received": 4096, "bytes_added": 2000, "objects_put": 6,
                "objects_deleted": 12, "commits": 2, "refused_calls": 0, "refused": []
            })
        );
        assert_eq!(
            json["sessions"]["keys"][1]["refused"],
            serde_json::json!([{"call": "put", "reason": "read-only", "count": 6}])
        );
        let deletes = &sessions.append_only_deletes;
        assert_eq!(deletes.len(), 1);
        assert_eq!(deletes[0].session_id.as_deref(), Some("s2"));
        let rendered = summary.to_string();
        for part in [
            "sessions of the built-in engines per key:\n",
            "  laptop --name alice          2     2.00 kB         6        12        2        0  client_closed 1, idle_timeout 1\n",
            "  1 sessions the gate started without their end in this log",
            "calls the engines refused, per key:\n",
            "  restore --name alice  put   read-only        6\n",
            "deletes through append-only keys",
            "laptop --name alice: 12 objects deleted in /srv/alice/repo, session started 2026-01-02T09:59:00Z from 192.0.2.7, committed as transaction 9 [session s2]\n",
            "RECOVERING DELETES",
        ] {
            assert!(rendered.contains(part), "{part:?} not in\n{rendered}");
        }
    }

    #[test]
    fn unknown_events_and_ends_without_an_end_are_malformed() {
        let text = [
            r#"{"v":1,"time":"2026-01-01T00:00:00Z","event":"reboot"}"#.to_owned(),
            r#"{"v":1,"time":"2026-01-01T00:00:00Z","event":"session_end","session_id":"x"}"#
                .to_owned(),
            r#"{"v":1,"time":"2026-01-01T00:00:00Z","event":"decision","policy":"p"}"#.to_owned(),
            ended("s", "client_closed", ""),
        ]
        .join("\n");
        let summary = summarise(&text, ReportOptions::default());
        assert_eq!(summary.malformed, 3);
        assert_eq!(summary.records, 1);
        let problems: Vec<&str> = summary
            .malformed_examples
            .iter()
            .map(|m| m.problem.as_str())
            .collect();
        assert_eq!(
            problems,
            [
                "unknown event \"reboot\"",
                "a session_end record without an end",
                "a decision record without a decision"
            ]
        );
        assert_eq!(summary.sessions.without_decision, 1);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_counted_without_panic(lines in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), 0..20)) {
            let mut summariser = Summariser::new(ReportOptions::default());
            for (index, line) in lines.iter().enumerate() {
                summariser.add_line(index as u64 + 1, line);
            }
            let summary = summariser.finish(None);
            proptest::prop_assert!(summary.records + summary.malformed <= lines.len() as u64);
            let _ = summary.to_string();
        }

        #[test]
        fn time_bounds_never_panic(text in "\\PC{0,40}") {
            let _ = parse_time_bound(&text, UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        }
    }
}
