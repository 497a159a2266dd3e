//! borg 1's remote logging protocol (spec section 3): after the client's `negotiate`, one
//! JSON object per line on stderr, which the client re-emits as `Remote: <message>` through
//! its own logger of the same name and level, and the progress records of borg's
//! `ProgressIndicatorPercent` and `ProgressIndicatorMessage` in JSON mode.
//!
//! Each line is pure ASCII (non-ASCII text is escaped as Python's `json.dumps` does), so
//! the client can always decode it; the shared backend (`engine/log.rs`) writes each in one
//! `write` call.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::common::python::{push_json_float, push_json_string};
use crate::engine::log::{Channel, LogHandle, LogLevel, installed, python_level_name};

/// Switches `handle` to borg 1's JSON records: call after a `negotiate` whose `client_data`
/// is a map.
pub(crate) fn open_json(handle: &LogHandle) {
    handle.open(Channel::Protocol(json_line));
}

/// One JSON record stamped now: the channel's [`LineFormat`](crate::engine::log::LineFormat).
fn json_line(message: &str, level: LogLevel, name: &str) -> String {
    log_message_line(now(), message, level, name)
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs_f64())
        .unwrap_or(0.0)
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
pub(crate) struct ProgressPercent {
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
    pub(crate) fn new(
        msgid: &'static str,
        label: &'static str,
        decimals: usize,
        step: f64,
        total: u64,
    ) -> Self {
        ProgressPercent {
            handle: installed(),
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
    #[cfg(test)]
    pub(crate) fn via(mut self, handle: &LogHandle) -> Self {
        self.handle = Some(handle.clone());
        self
    }

    /// Advance by one item (or set the position to `current` first), and emit a record when
    /// the percentage reached the next step.
    pub(crate) fn show(&mut self, current: Option<u64>) {
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
        handle.write_protocol_line(&line);
    }

    /// The final record (`"finished": true`, no message).
    pub(crate) fn finish(&mut self) {
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
        handle.write_protocol_line(&line);
    }
}

#[cfg(test)]
mod tests {
    use log::Log;
    use serde_json::Value;

    use super::*;
    use crate::engine::log::test_capture::{emit, logger};

    #[test]
    fn writes_nothing_before_negotiate() {
        let (logger, capture) = logger(LogLevel::Debug, &[]);
        emit(&logger, log::Level::Error, "borg.repository", "early");
        logger
            .handle()
            .log(LogLevel::Critical, "borg.remote", "early");
        assert!(capture.writes().is_empty());
        assert!(!logger.enabled(&log::Metadata::builder().level(log::Level::Error).build()));
    }

    #[test]
    fn json_records_have_borgs_keys_in_borgs_order() {
        let (logger, capture) = logger(LogLevel::Warning, &[]);
        open_json(&logger.handle());
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
    fn filters_by_the_command_line_level() {
        let (logger, capture) = logger(LogLevel::Info, &[]);
        open_json(&logger.handle());
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
    fn debug_topics_enable_debug_for_their_logger_and_children_only() {
        let (logger, capture) = logger(LogLevel::Warning, &["repository", "x.y"]);
        let handle = logger.handle();
        open_json(&handle);
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
    fn messages_are_escaped_to_single_ascii_lines() {
        let (logger, capture) = logger(LogLevel::Debug, &[]);
        open_json(&logger.handle());
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
        open_json(&logger.handle());
        emit(&logger, log::Level::Error, "", "x");
        assert_eq!(capture.records()[0]["name"], "root");
    }

    #[test]
    fn percent_progress_matches_borgs_records() {
        let (logger, capture) = logger(LogLevel::Warning, &[]);
        let handle = logger.handle();
        open_json(&handle);
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
        open_json(&handle);
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
    fn the_client_parses_our_lines_with_its_own_handler() {
        use crate::engine::borg1::rpc::test_support::{BorgPython, run_python};
        let Some(python) = BorgPython::borg14() else {
            return;
        };
        let (logger, capture) = logger(LogLevel::Debug, &[]);
        let handle = logger.handle();
        open_json(&handle);
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
