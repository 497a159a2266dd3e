//! Reading the audit log that the gate (`decision` records) and the engines (`session_end`
//! records) write: one JSON object per line.

use std::fs;
use std::path::Path;

use serde_json::Value;

/// Every record of the audit log at `path`, in order; none while it does not exist. A line
/// that is not JSON fails the test: each record is one intact line.
pub(crate) fn audit_records(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("{}: {error}: {line:?}", path.display()))
        })
        .collect()
}

/// The records of one `event` (`decision`, `session_end`) in the audit log at `path`.
pub(crate) fn audit_events(path: &Path, event: &str) -> Vec<Value> {
    audit_records(path)
        .into_iter()
        .filter(|record| record["event"] == event)
        .collect()
}
