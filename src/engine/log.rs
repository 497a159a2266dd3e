//! The `log` crate backend both engines report through: records go to stderr, one line per
//! record in one `write` call, in the form the engine's protocol chooses ([`Channel`]):
//! nothing yet, plain text, or the protocol's own lines (borg 1's JSON, `borg1/remote_log.rs`).
//!
//! The logger name of a record is its `log` target, so the engine logs with targets such as
//! `borg.repository`, `borg.locking` and `borg.remote`. Levels are filtered like borg's serve:
//! the root level comes from the command line (default WARNING), `--debug-topic X` enables DEBUG
//! for logger `borg.debug.X` and its children, and other `borg.debug.*` loggers stay at WARNING.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

pub use crate::common::log_level::LogLevel;

/// Python's level name (`logging.getLevelName`), as borg's records carry it.
pub fn python_level_name(level: LogLevel) -> &'static str {
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

/// A protocol's line for one record: `(message, level, logger name)`, ending in `\n`.
pub type LineFormat = fn(&str, LogLevel, &str) -> String;

/// How records reach the client.
#[derive(Debug, Clone, Copy)]
pub enum Channel {
    /// Nothing is written (borg 1 before the client's `negotiate`).
    Closed,
    /// One `message` line per record: borg 2's `serve --rest` has no in-band log channel,
    /// and its client shows each stderr line as `Remote: <line>`.
    Text,
    /// The protocol's own line per record; the protocol may send lines of its own on it too
    /// (borg 1's JSON records and progress, `borg1/remote_log.rs`).
    Protocol(LineFormat),
}

struct Shared {
    channel: RwLock<Channel>,
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

    fn channel(&self) -> Channel {
        *self.channel.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn passes(&self, level: LogLevel, name: &str) -> bool {
        !matches!(self.channel(), Channel::Closed) && level >= self.effective_level(name)
    }

    /// The line for one record on the current channel (`None` while it is closed).
    fn format_line(&self, message: &str, level: LogLevel, name: &str) -> Option<String> {
        match self.channel() {
            Channel::Closed => None,
            Channel::Text => Some(format!("{message}\n")),
            Channel::Protocol(format) => Some(format(message, level, name)),
        }
    }

    fn write_record(&self, message: &str, level: LogLevel, name: &str) {
        if let Some(line) = self.format_line(message, level, name) {
            self.write_line(&line);
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

/// Controls a [`RemoteLogger`] after it was installed: its channel, level, topics, and
/// direct output.
#[derive(Clone)]
pub struct LogHandle {
    shared: Arc<Shared>,
}

impl RemoteLogger {
    /// A logger writing to `sink`, silent until [`LogHandle::open`].
    pub fn new(sink: Box<dyn Write + Send>, config: &LogConfig) -> Self {
        let logger = RemoteLogger {
            shared: Arc::new(Shared {
                channel: RwLock::new(Channel::Closed),
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

/// The installed logger's handle (`None` when the engine's logger is not installed, as in
/// tests and tools that use the repository outside `serve`).
pub fn installed() -> Option<LogHandle> {
    INSTALLED.get().cloned()
}

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
        self.shared.write_record(&message, level, record.target());
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
    /// Starts writing records on `channel`.
    pub fn open(&self, channel: Channel) {
        *self
            .shared
            .channel
            .write()
            .unwrap_or_else(PoisonError::into_inner) = channel;
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
            self.shared.write_record(message, level, name);
        }
    }

    /// A line of the protocol's own that is not a record (borg 1's progress): written only
    /// on a [`Channel::Protocol`], whatever the level.
    pub fn write_protocol_line(&self, line: &str) {
        if matches!(self.shared.channel(), Channel::Protocol(_)) {
            self.shared.write_line(line);
        }
    }
}

#[cfg(test)]
pub(crate) mod test_capture {
    //! A logger whose every write is kept, for the tests of both formats.

    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use log::Log;
    use serde_json::Value;

    use super::{LogConfig, LogLevel, RemoteLogger};

    /// A sink that keeps every write separately, to check one write per line.
    #[derive(Clone, Default)]
    pub(crate) struct Capture(Arc<Mutex<Vec<Vec<u8>>>>);

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
        pub(crate) fn writes(&self) -> Vec<Vec<u8>> {
            self.0.lock().unwrap().clone()
        }

        pub(crate) fn records(&self) -> Vec<Value> {
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

    pub(crate) fn logger(level: LogLevel, topics: &[&str]) -> (RemoteLogger, Capture) {
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

    pub(crate) fn emit(logger: &RemoteLogger, level: log::Level, target: &str, message: &str) {
        logger.log(
            &log::Record::builder()
                .level(level)
                .target(target)
                .args(format_args!("{message}"))
                .build(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::test_capture::{emit, logger};
    use super::*;

    #[test]
    fn text_mode_writes_plain_message_lines_filtered_by_level() {
        let (logger, capture) = logger(LogLevel::Warning, &[]);
        emit(&logger, log::Level::Warn, "borg.remote", "before");
        assert!(capture.writes().is_empty());
        logger.handle().open(Channel::Text);
        emit(&logger, log::Level::Info, "borg.remote", "hidden");
        emit(&logger, log::Level::Warn, "borg.remote", "released 1 lock");
        assert_eq!(capture.writes(), [b"released 1 lock\n".to_vec()]);
    }

    #[test]
    fn critical_level_silences_every_log_crate_record() {
        let (logger, capture) = logger(LogLevel::Critical, &[]);
        logger.handle().open(Channel::Text);
        emit(&logger, log::Level::Error, "borg.repository", "hidden");
        assert!(capture.writes().is_empty());
    }

    #[test]
    fn borg_debug_loggers_stay_at_warning_even_with_debug() {
        let (logger, _) = logger(LogLevel::Debug, &[]);
        let handle = logger.handle();
        handle.open(Channel::Text);
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
}
