//! A `log` crate backend that writes borg's remote logging protocol to stderr (spec section 3):
//! nothing before `negotiate`, then one JSON object per line that the client re-emits as
//! `Remote: <message>` through its own logger of the same name and level.
//!
//! The logger name of a record is its `log` target, so the engine logs with targets such as
//! `borg.repository`, `borg.locking` and `borg.remote`. Levels are filtered like borg's serve:
//! the root level comes from the command line (default WARNING), `--debug-topic X` enables DEBUG
//! for logger `borg.debug.X` and its children, and other `borg.debug.*` loggers stay at WARNING.
//! Each line is written with one `write` call and is pure ASCII (non-ASCII text is escaped as
//! Python's `json.dumps` does), so the client can always decode it.
//!
//! borg 2's `serve --rest` has no in-band log channel: there the logger writes plain text
//! lines (`enable_text`), which the client shows as `Remote: <line>`.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

pub use crate::policy::LogLevel;

/// Python's level name, as sent in `levelname`.
fn python_level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Debug => "DEBUG",
        LogLevel::Info => "INFO",
        LogLevel::Warning => "WARNING",
        LogLevel::Error => "ERROR",
        LogLevel::Critical => "CRITICAL",
    }
}

/// `log` has no CRITICAL; TRACE is reported as DEBUG.
fn level_of_record(level: log::Level) -> LogLevel {
    match level {
        log::Level::Error => LogLevel::Error,
        log::Level::Warn => LogLevel::Warning,
        log::Level::Info => LogLevel::Info,
        log::Level::Debug | log::Level::Trace => LogLevel::Debug,
    }
}

/// Python's numeric level, kept in an atomic.
fn level_number(level: LogLevel) -> u8 {
    match level {
        LogLevel::Debug => 10,
        LogLevel::Info => 20,
        LogLevel::Warning => 30,
        LogLevel::Error => 40,
        LogLevel::Critical => 50,
    }
}

fn level_from_number(value: u8) -> LogLevel {
    match value {
        0..=10 => LogLevel::Debug,
        11..=20 => LogLevel::Info,
        21..=30 => LogLevel::Warning,
        31..=40 => LogLevel::Error,
        _ => LogLevel::Critical,
    }
}

fn level_filter(level: LogLevel) -> log::LevelFilter {
    match level {
        LogLevel::Debug => log::LevelFilter::Trace,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Warning => log::LevelFilter::Warn,
        LogLevel::Error => log::LevelFilter::Error,
        LogLevel::Critical => log::LevelFilter::Off,
    }
}

/// The logger name that `--debug-topic TOPIC` enables: a topic without a dot gets the prefix
/// `borg.debug.`, as borg does (`archiver.py` `_setup_topic_debugging`).
pub fn debug_topic_logger(topic: &str) -> String {
    if topic.contains('.') {
        topic.to_owned()
    } else {
        format!("borg.debug.{topic}")
    }
}

/// Logging options from the serve command line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogConfig {
    pub level: LogLevel,
    /// As given on the command line; see [`debug_topic_logger`].
    pub debug_topics: Vec<String>,
}

struct Shared {
    json: AtomicBool,
    /// Plain `message` lines instead of JSON (borg 2's `serve --rest` logs text to stderr).
    text: AtomicBool,
    level: AtomicU8,
    /// Full logger names enabled for DEBUG.
    topics: RwLock<Vec<String>>,
    sink: Mutex<Box<dyn Write + Send>>,
    installed: AtomicBool,
}

impl Shared {
    fn root_level(&self) -> LogLevel {
        level_from_number(self.level.load(Ordering::Relaxed))
    }

    fn effective_level(&self, name: &str) -> LogLevel {
        let topics = self.topics.read().unwrap_or_else(PoisonError::into_inner);
        let enabled_topic = topics.iter().any(|topic| {
            name.strip_prefix(topic.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        });
        if enabled_topic {
            LogLevel::Debug
        } else if name.starts_with("borg.debug.") {
            LogLevel::Warning
        } else {
            self.root_level()
        }
    }

    fn passes(&self, level: LogLevel, name: &str) -> bool {
        (self.json.load(Ordering::Relaxed) || self.text.load(Ordering::Relaxed))
            && level >= self.effective_level(name)
    }

    /// The line for one record in the current format.
    fn format_line(&self, message: &str, level: LogLevel, name: &str) -> String {
        if self.text.load(Ordering::Relaxed) {
            format!("{message}\n")
        } else {
            log_message_line(now(), message, level, name)
        }
    }

    fn write_line(&self, line: &str) {
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        // A broken stderr must not take the server down; there is nowhere to report it.
        let _ = sink.write_all(line.as_bytes());
        let _ = sink.flush();
    }

    fn update_max_level(&self) {
        if !self.installed.load(Ordering::Relaxed) {
            return;
        }
        let has_topics = !self
            .topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty();
        let lowest = if has_topics {
            LogLevel::Debug
        } else {
            self.root_level()
        };
        log::set_max_level(level_filter(lowest));
    }
}

/// The logger; install it with [`RemoteLogger::install`], or use it as a plain value in tests.
pub struct RemoteLogger {
    shared: Arc<Shared>,
}

/// Controls a [`RemoteLogger`] after it was installed: JSON switch, level, topics, and direct
/// log and progress output.
#[derive(Clone)]
pub struct LogHandle {
    shared: Arc<Shared>,
}

impl RemoteLogger {
    /// A logger writing to `sink`, silent until [`LogHandle::enable_json`].
    pub fn new(sink: Box<dyn Write + Send>, config: &LogConfig) -> Self {
        let logger = RemoteLogger {
            shared: Arc::new(Shared {
                json: AtomicBool::new(false),
                text: AtomicBool::new(false),
                level: AtomicU8::new(level_number(config.level)),
                topics: RwLock::new(Vec::new()),
                sink: Mutex::new(sink),
                installed: AtomicBool::new(false),
            }),
        };
        logger.handle().set_debug_topics(&config.debug_topics);
        logger
    }

    /// A logger writing to the process's stderr (unbuffered: one `write(2)` per line).
    pub fn stderr(config: &LogConfig) -> Self {
        Self::new(Box::new(std::io::stderr()), config)
    }

    pub fn handle(&self) -> LogHandle {
        LogHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Make this the process-wide `log` backend.
    pub fn install(self) -> Result<LogHandle, log::SetLoggerError> {
        let handle = self.handle();
        log::set_boxed_logger(Box::new(self))?;
        handle.shared.installed.store(true, Ordering::Relaxed);
        handle.shared.update_max_level();
        // `set_boxed_logger` succeeds once per process, so this is the only set.
        let _ = INSTALLED.set(handle.clone());
        Ok(handle)
    }
}

/// The handle of the installed logger. Progress records are not `log` records (borg sends
/// them whatever the client's log level), so code deep in the repository reaches the client
/// through this, the same way `log::info!` reaches the installed logger.
static INSTALLED: OnceLock<LogHandle> = OnceLock::new();

impl log::Log for RemoteLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.shared
            .passes(level_of_record(metadata.level()), metadata.target())
    }

    fn log(&self, record: &log::Record<'_>) {
        let level = level_of_record(record.level());
        if !self.shared.passes(level, record.target()) {
            return;
        }
        let message = match record.args().as_str() {
            Some(text) => std::borrow::Cow::Borrowed(text),
            None => std::borrow::Cow::Owned(record.args().to_string()),
        };
        self.shared
            .write_line(&self.shared.format_line(&message, level, record.target()));
    }

    fn flush(&self) {
        let mut sink = self
            .shared
            .sink
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let _ = sink.flush();
    }
}

impl LogHandle {
    /// Switch to the JSON protocol: call after a `negotiate` whose `client_data` is a map.
    pub fn enable_json(&self) {
        self.shared.json.store(true, Ordering::Relaxed);
    }

    /// Switch to plain text lines, one message per line (borg 2's `serve --rest`, whose
    /// stderr the client shows as `Remote: <line>`).
    pub fn enable_text(&self) {
        self.shared.text.store(true, Ordering::Relaxed);
    }

    pub fn is_json(&self) -> bool {
        self.shared.json.load(Ordering::Relaxed)
    }

    pub fn set_level(&self, level: LogLevel) {
        self.shared
            .level
            .store(level_number(level), Ordering::Relaxed);
        self.shared.update_max_level();
    }

    pub fn level(&self) -> LogLevel {
        self.shared.root_level()
    }

    /// Replace the debug topics (as given to `--debug-topic`).
    pub fn set_debug_topics<S: AsRef<str>>(&self, topics: &[S]) {
        let names = topics
            .iter()
            .map(|topic| debug_topic_logger(topic.as_ref()))
            .collect();
        *self
            .shared
            .topics
            .write()
            .unwrap_or_else(PoisonError::into_inner) = names;
        self.shared.update_max_level();
    }

    /// Whether a record of `level` for logger `name` would be written now.
    pub fn enabled(&self, level: LogLevel, name: &str) -> bool {
        self.shared.passes(level, name)
    }

    /// Log directly, bypassing the `log` crate (for CRITICAL, or names that are not targets).
    pub fn log(&self, level: LogLevel, name: &str, message: &str) {
        if self.shared.passes(level, name) {
            self.shared
                .write_line(&self.shared.format_line(message, level, name));
        }
    }

    fn progress_line(&self, line: &str) {
        // borg's serve always has progress output on (`args.progress |= is_serve`), but only
        // the JSON protocol can carry it.
        if self.is_json() {
            self.shared.write_line(line);
        }
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs_f64())
        .unwrap_or(0.0)
}

/// Append `text` as a JSON string the way Python's `json.dumps` does (ASCII only).
pub(crate) fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// A float like Python's `repr`: always with a fraction or exponent.
pub(crate) fn push_json_float(out: &mut String, value: f64) {
    if !value.is_finite() {
        out.push_str("0.0");
        return;
    }
    let start = out.len();
    let _ = write!(out, "{value}");
    if !out[start..].contains(['.', 'e', 'E']) {
        out.push_str(".0");
    }
}

/// `{"type": "log_message", "time": ..., "message": ..., "levelname": ..., "name": ...}\n`
fn log_message_line(time: f64, message: &str, level: LogLevel, name: &str) -> String {
    let name = if name.is_empty() { "root" } else { name };
    let mut line = String::with_capacity(96 + message.len() + name.len());
    line.push_str("{\"type\": \"log_message\", \"time\": ");
    push_json_float(&mut line, time);
    line.push_str(", \"message\": ");
    push_json_string(&mut line, message);
    line.push_str(", \"levelname\": \"");
    line.push_str(python_level_name(level));
    line.push_str("\", \"name\": ");
    push_json_string(&mut line, name);
    line.push_str("}\n");
    line
}

static OPERATION_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A new progress operation id (borg numbers them 1, 2, ... per process).
fn next_operation_id() -> u64 {
    OPERATION_COUNTER.fetch_add(1, Ordering::Relaxed) + 1
}

fn progress_tail(
    line: &mut String,
    operation: u64,
    msgid: Option<&str>,
    kind: &str,
    finished: bool,
) {
    let _ = write!(line, "\"operation\": {operation}, \"msgid\": ");
    match msgid {
        Some(msgid) => push_json_string(line, msgid),
        None => line.push_str("null"),
    }
    let _ = write!(
        line,
        ", \"type\": \"{kind}\", \"finished\": {finished}, \"time\": "
    );
    push_json_float(line, now());
    line.push_str("}\n");
}

/// borg's `ProgressIndicatorPercent` in JSON mode (`helpers/progress.py`): records of type
/// `progress_percent` each time the percentage passes the next step.
pub struct ProgressPercent {
    /// `None` when no logger is installed (the repository used outside `serve`).
    handle: Option<LogHandle>,
    operation: u64,
    msgid: &'static str,
    label: &'static str,
    decimals: usize,
    total: u64,
    counter: u64,
    step: f64,
    trigger_at: f64,
}

impl ProgressPercent {
    /// Progress for the client of this `serve` process (silent when no logger is installed).
    /// For example `("repository.check", "Checking segments", 1, 0.1, n)` shows
    /// "Checking segments 16.7%" like borg's `'Checking segments %3.1f%%'`.
    pub fn new(
        msgid: &'static str,
        label: &'static str,
        decimals: usize,
        step: f64,
        total: u64,
    ) -> Self {
        ProgressPercent {
            handle: INSTALLED.get().cloned(),
            operation: next_operation_id(),
            msgid,
            label,
            decimals,
            total,
            counter: 0,
            step,
            trigger_at: 0.0,
        }
    }

    /// Send the records to `handle` instead of the installed logger.
    pub fn via(mut self, handle: &LogHandle) -> Self {
        self.handle = Some(handle.clone());
        self
    }

    /// Advance by one item (or set the position to `current` first), and emit a record when
    /// the percentage reached the next step.
    pub fn show(&mut self, current: Option<u64>) {
        if let Some(current) = current {
            self.counter = current;
        }
        let done = self.counter;
        self.counter = self.counter.saturating_add(1);
        let Some(handle) = &self.handle else {
            return;
        };
        if self.total == 0 {
            return;
        }
        let percent = done as f64 * 100.0 / self.total as f64;
        if percent < self.trigger_at {
            return;
        }
        self.trigger_at += self.step;
        let mut line = String::with_capacity(256);
        line.push_str("{\"message\": ");
        let message = format!("{} {:3.prec$}%", self.label, percent, prec = self.decimals);
        push_json_string(&mut line, &message);
        let _ = write!(
            line,
            ", \"current\": {}, \"total\": {}, \"info\": null, ",
            self.counter, self.total
        );
        progress_tail(
            &mut line,
            self.operation,
            Some(self.msgid),
            "progress_percent",
            false,
        );
        handle.progress_line(&line);
    }

    /// The final record (`"finished": true`, no message).
    pub fn finish(&mut self) {
        let Some(handle) = &self.handle else {
            return;
        };
        let mut line = String::from("{");
        progress_tail(
            &mut line,
            self.operation,
            Some(self.msgid),
            "progress_percent",
            true,
        );
        handle.progress_line(&line);
    }
}

/// borg's `ProgressIndicatorMessage` in JSON mode: free-text `progress_message` records.
pub struct ProgressMessage {
    handle: LogHandle,
    operation: u64,
    msgid: Option<&'static str>,
}

impl ProgressMessage {
    pub fn new(handle: &LogHandle, msgid: Option<&'static str>) -> Self {
        ProgressMessage {
            handle: handle.clone(),
            operation: next_operation_id(),
            msgid,
        }
    }

    pub fn output(&self, message: &str) {
        let mut line = String::from("{\"message\": ");
        push_json_string(&mut line, message);
        line.push_str(", ");
        progress_tail(
            &mut line,
            self.operation,
            self.msgid,
            "progress_message",
            false,
        );
        self.handle.progress_line(&line);
    }

    pub fn finish(&self) {
        let mut line = String::from("{");
        progress_tail(
            &mut line,
            self.operation,
            self.msgid,
            "progress_message",
            true,
        );
        self.handle.progress_line(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::Log;
    use serde_json::Value;

    /// A sink that keeps every write separately, to check one write per line.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Capture {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().push(data.to_vec());
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Capture {
        fn writes(&self) -> Vec<Vec<u8>> {
            self.0.lock().unwrap().clone()
        }

        fn records(&self) -> Vec<Value> {
            self.writes()
                .iter()
                .map(|write| {
                    assert!(write.ends_with(b"\n"));
                    assert_eq!(
                        write.iter().filter(|&&b| b == b'\n' || b == b'\r').count(),
                        1
                    );
                    assert!(write.is_ascii());
                    serde_json::from_slice(write).unwrap()
                })
                .collect()
        }
    }

    fn logger(level: LogLevel, topics: &[&str]) -> (RemoteLogger, Capture) {
        let capture = Capture::default();
        let config = LogConfig {
            level,
            debug_topics: topics.iter().map(|t| t.to_string()).collect(),
        };
        (
            RemoteLogger::new(Box::new(capture.clone()), &config),
            capture,
        )
    }

    fn emit(logger: &RemoteLogger, level: log::Level, target: &str, message: &str) {
        logger.log(
            &log::Record::builder()
                .level(level)
                .target(target)
                .args(format_args!("{message}"))
                .build(),
        );
    }

    #[test]
    fn writes_nothing_before_negotiate() {
        let (logger, capture) = logger(LogLevel::Debug, &[]);
        emit(&logger, log::Level::Error, "borg.repository", "early");
        logger
            .handle()
            .log(LogLevel::Critical, "borg.remote", "early");
        ProgressMessage::new(&logger.handle(), None).output("early");
        assert!(capture.writes().is_empty());
        assert!(!logger.enabled(&log::Metadata::builder().level(log::Level::Error).build()));
    }

    #[test]
    fn json_records_have_borgs_keys_in_borgs_order() {
        let (logger, capture) = logger(LogLevel::Warning, &[]);
        logger.handle().enable_json();
        emit(
            &logger,
            log::Level::Warn,
            "borg.locking",
            "Killed stale lock x.",
        );
        let records = capture.records();
        assert_eq!(records.len(), 1);
        let record = &records[0];
        assert_eq!(record["type"], "log_message");
        assert_eq!(record["message"], "Killed stale lock x.");
        assert_eq!(record["levelname"], "WARNING");
        assert_eq!(record["name"], "borg.locking");
        assert!(record["time"].as_f64().unwrap() > 1.6e9);
        let text = String::from_utf8(capture.writes()[0].clone()).unwrap();
        assert!(
            text.starts_with("{\"type\": \"log_message\", \"time\": "),
            "{text}"
        );
        assert!(text.ends_with(", \"levelname\": \"WARNING\", \"name\": \"borg.locking\"}\n"));
    }

    #[test]
    fn text_mode_writes_plain_message_lines_filtered_by_level() {
        let (logger, capture) = logger(LogLevel::Warning, &[]);
        emit(&logger, log::Level::Warn, "borg.remote", "before");
        assert!(capture.writes().is_empty());
        logger.handle().enable_text();
        emit(&logger, log::Level::Info, "borg.remote", "hidden");
        emit(&logger, log::Level::Warn, "borg.remote", "released 1 lock");
        assert_eq!(capture.writes(), [b"released 1 lock\n".to_vec()]);
    }

    #[test]
    fn filters_by_the_command_line_level() {
        let (logger, capture) = logger(LogLevel::Info, &[]);
        logger.handle().enable_json();
        emit(&logger, log::Level::Debug, "borg.repository", "hidden");
        emit(&logger, log::Level::Trace, "borg.repository", "hidden");
        emit(&logger, log::Level::Info, "borg.repository", "shown info");
        emit(&logger, log::Level::Error, "borg.repository", "shown error");
        logger.handle().set_level(LogLevel::Error);
        emit(&logger, log::Level::Warn, "borg.repository", "hidden");
        logger
            .handle()
            .log(LogLevel::Critical, "borg.archiver", "shown critical");
        let levels: Vec<String> = capture
            .records()
            .iter()
            .map(|r| format!("{} {}", r["levelname"], r["message"]))
            .collect();
        assert_eq!(
            levels,
            vec![
                "\"INFO\" \"shown info\"",
                "\"ERROR\" \"shown error\"",
                "\"CRITICAL\" \"shown critical\""
            ]
        );
        assert_eq!(logger.handle().level(), LogLevel::Error);
    }

    #[test]
    fn critical_level_silences_every_log_crate_record() {
        let (logger, capture) = logger(LogLevel::Critical, &[]);
        logger.handle().enable_json();
        emit(&logger, log::Level::Error, "borg.repository", "hidden");
        assert!(capture.writes().is_empty());
    }

    #[test]
    fn debug_topics_enable_debug_for_their_logger_and_children_only() {
        let (logger, capture) = logger(LogLevel::Warning, &["repository", "x.y"]);
        let handle = logger.handle();
        handle.enable_json();
        assert!(handle.enabled(LogLevel::Debug, "borg.debug.repository"));
        assert!(handle.enabled(LogLevel::Debug, "borg.debug.repository.io"));
        assert!(!handle.enabled(LogLevel::Debug, "borg.debug.repositoryx"));
        assert!(handle.enabled(LogLevel::Debug, "x.y"));
        assert!(!handle.enabled(LogLevel::Debug, "borg.repository"));
        emit(
            &logger,
            log::Level::Debug,
            "borg.debug.repository",
            "topic on",
        );
        emit(
            &logger,
            log::Level::Debug,
            "borg.debug.locking",
            "topic off",
        );
        assert_eq!(capture.records().len(), 1);
        handle.set_debug_topics::<&str>(&[]);
        assert!(!handle.enabled(LogLevel::Debug, "borg.debug.repository"));
    }

    #[test]
    fn borg_debug_loggers_stay_at_warning_even_with_debug() {
        let (logger, _) = logger(LogLevel::Debug, &[]);
        let handle = logger.handle();
        handle.enable_json();
        assert!(handle.enabled(LogLevel::Debug, "borg.repository"));
        assert!(!handle.enabled(LogLevel::Info, "borg.debug.files_cache"));
        assert!(handle.enabled(LogLevel::Warning, "borg.debug.files_cache"));
    }

    #[test]
    fn topic_names_get_borgs_prefix() {
        assert_eq!(debug_topic_logger("repository"), "borg.debug.repository");
        assert_eq!(debug_topic_logger("borg.debug.lock"), "borg.debug.lock");
        assert_eq!(debug_topic_logger("a.b"), "a.b");
    }

    #[test]
    fn messages_are_escaped_to_single_ascii_lines() {
        let (logger, capture) = logger(LogLevel::Debug, &[]);
        logger.handle().enable_json();
        let nasty = "line1\nline2\r\"q\" \\ tab\t bell\u{7} del\u{7f} é 💾";
        emit(&logger, log::Level::Error, "borg.repository", nasty);
        let records = capture.records();
        assert_eq!(records[0]["message"], nasty);
        let text = String::from_utf8(capture.writes()[0].clone()).unwrap();
        assert!(text.contains("\\u00e9 \\ud83d\\udcbe"), "{text}");
        assert!(text.contains("\\u0007") && text.contains("\\u007f"));
    }

    #[test]
    fn an_empty_target_is_sent_as_root() {
        let (logger, capture) = logger(LogLevel::Debug, &[]);
        logger.handle().enable_json();
        emit(&logger, log::Level::Error, "", "x");
        assert_eq!(capture.records()[0]["name"], "root");
    }

    #[test]
    fn level_names_parse_like_borgs_options() {
        for level in [
            LogLevel::Debug,
            LogLevel::Info,
            LogLevel::Warning,
            LogLevel::Error,
            LogLevel::Critical,
        ] {
            assert_eq!(LogLevel::from_name(level.name()), Some(level));
            assert_eq!(level_from_number(level_number(level)), level);
            assert_eq!(python_level_name(level), level.name().to_ascii_uppercase());
        }
        assert_eq!(LogLevel::from_name("loud"), None);
        assert_eq!(LogLevel::default(), LogLevel::Warning);
    }

    #[test]
    fn percent_progress_matches_borgs_records() {
        let (logger, capture) = logger(LogLevel::Warning, &[]);
        let handle = logger.handle();
        handle.enable_json();
        let mut progress =
            ProgressPercent::new("repository.check", "Checking segments", 1, 0.1, 6).via(&handle);
        for segment in 0..6 {
            progress.show(Some(segment));
        }
        progress.finish();
        let records = capture.records();
        assert_eq!(records.len(), 7);
        let second = &records[1];
        assert_eq!(second["message"], "Checking segments 16.7%");
        assert_eq!(second["current"], 2);
        assert_eq!(second["total"], 6);
        assert_eq!(second["info"], Value::Null);
        assert_eq!(second["msgid"], "repository.check");
        assert_eq!(second["type"], "progress_percent");
        assert_eq!(second["finished"], false);
        assert!(second["operation"].as_u64().unwrap() >= 1);
        let last = &records[6];
        assert_eq!(last["finished"], true);
        assert!(last.get("message").is_none());
        assert_eq!(last["operation"], second["operation"]);
        let text = String::from_utf8(capture.writes()[1].clone()).unwrap();
        assert!(text.starts_with("{\"message\": \"Checking segments 16.7%\", \"current\": 2, \"total\": 6, \"info\": null, \"operation\": "));
    }

    #[test]
    fn percent_progress_only_reports_at_each_step() {
        let (logger, capture) = logger(LogLevel::Warning, &[]);
        let handle = logger.handle();
        handle.enable_json();
        let mut progress = ProgressPercent::new(
            "repository.compact_segments",
            "Compacting segments",
            0,
            1.0,
            1000,
        )
        .via(&handle);
        for _ in 0..1000 {
            progress.show(None);
        }
        let records = capture.records();
        assert_eq!(records.len(), 100);
        assert_eq!(records[17]["message"], "Compacting segments  17%");
        let mut empty = ProgressPercent::new("m", "Nothing", 0, 1.0, 0).via(&handle);
        empty.show(None);
        assert_eq!(capture.records().len(), 100);
    }

    #[test]
    fn message_progress_has_borgs_keys() {
        let (logger, capture) = logger(LogLevel::Warning, &[]);
        let handle = logger.handle();
        handle.enable_json();
        let progress = ProgressMessage::new(&handle, Some("cache.commit"));
        progress.output("Saving files cache");
        progress.finish();
        let records = capture.records();
        assert_eq!(records[0]["type"], "progress_message");
        assert_eq!(records[0]["message"], "Saving files cache");
        assert_eq!(records[0]["msgid"], "cache.commit");
        assert_eq!(records[1]["finished"], true);
        ProgressMessage::new(&handle, None).output("x");
        assert_eq!(capture.records()[2]["msgid"], Value::Null);
    }

    #[test]
    fn floats_always_look_like_python_floats() {
        let mut out = String::new();
        push_json_float(&mut out, 1733512345.0);
        assert_eq!(out, "1733512345.0");
        out.clear();
        push_json_float(&mut out, 1733512345.25);
        assert_eq!(out, "1733512345.25");
    }

    #[test]
    fn the_client_parses_our_lines_with_its_own_handler() {
        use crate::engine::borg1::rpc::test_support::{BorgPython, run_python};
        let Some(python) = BorgPython::borg14() else {
            return;
        };
        let (logger, capture) = logger(LogLevel::Debug, &[]);
        let handle = logger.handle();
        handle.enable_json();
        emit(
            &logger,
            log::Level::Warn,
            "borg.repository",
            "Replaying segments. Please wait, this can take a while... é\n2nd",
        );
        let mut progress =
            ProgressPercent::new("repository.check", "Checking segments", 1, 0.1, 3).via(&handle);
        progress.show(None);
        progress.finish();
        let stream: Vec<u8> = capture.writes().concat();
        let script = r#"
import sys, logging, io
from borg.logger import setup_logging
setup_logging(stream=sys.stdout, level='debug')
logging.getLogger('borg.output.progress').setLevel(logging.INFO)
from borg.remote import handle_remote_line
for line in sys.stdin.buffer.read().splitlines(keepends=True):
    handle_remote_line(line.decode())
"#;
        let output = String::from_utf8(run_python(&python, script, &stream)).unwrap();
        assert!(
            output.contains(
                "Remote: Replaying segments. Please wait, this can take a while... é\n2nd"
            ),
            "{output}"
        );
    }
}
