//! The time of each key's last session, read from the audit logs its policies name: the
//! latest `accept` record whose `policy_file` is the key's policy.
//!
//! One pass per log, line by line with a bounded line length, keeping one time per policy
//! file asked for: constant memory whatever the log holds.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Deserialize;

use crate::admin::audit_report::{LineRead, MAX_LINE_LEN, read_line_bounded};

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    time: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    decision: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    policy_file: Option<std::borrow::Cow<'a, str>>,
}

/// For each of `policies`, the time of its last accepted session in `log`, as the record
/// wrote it (RFC 3339, UTC). Lines that are not records are skipped.
pub(crate) fn last_sessions(
    log: &Path,
    policies: &BTreeSet<PathBuf>,
) -> io::Result<BTreeMap<PathBuf, String>> {
    let mut reader = BufReader::with_capacity(256 * 1024, File::open(log)?);
    let mut latest: BTreeMap<PathBuf, (SystemTime, String)> = BTreeMap::new();
    let mut line = Vec::with_capacity(4096);
    loop {
        match read_line_bounded(&mut reader, &mut line, MAX_LINE_LEN)? {
            LineRead::End => break,
            LineRead::TooLong => continue,
            LineRead::Line => {}
        }
        let Ok(record) = serde_json::from_slice::<Record<'_>>(&line) else {
            continue;
        };
        let Some(policy) = record.policy_file.as_deref().map(Path::new) else {
            continue;
        };
        if record.decision != "accept" || !policies.contains(policy) {
            continue;
        }
        let Ok(time) = humantime::parse_rfc3339_weak(&record.time) else {
            continue;
        };
        let newer = latest.get(policy).is_none_or(|(seen, _)| time > *seen);
        if newer {
            latest.insert(policy.to_path_buf(), (time, record.time.into_owned()));
        }
        if line.capacity() > 64 * 1024 {
            line = Vec::with_capacity(4096);
        }
    }
    Ok(latest
        .into_iter()
        .map(|(policy, (_, text))| (policy, text))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_accepted_session_of_each_policy_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        let record = |time: &str, decision: &str, policy: &str| {
            format!(r#"{{"v":1,"time":"{time}","policy_file":"{policy}","decision":"{decision}"}}"#)
        };
        let lines = [
            record("2026-12-01T10:00:00.000001Z", "accept", "/p/a.toml"),
            record("2026-12-03T10:00:00Z", "accept", "/p/a.toml"),
            record("2026-12-02T10:00:00Z", "accept", "/p/a.toml"),
            record("2026-12-04T10:00:00Z", "reject", "/p/a.toml"),
            record("2026-12-05T10:00:00Z", "accept", "/p/other.toml"),
            "not json".to_owned(),
            r#"{"v":1,"time":"yesterday","policy_file":"/p/b.toml","decision":"accept"}"#
                .to_owned(),
            record("2026-11-30T23:59:59Z", "accept", "/p/b.toml"),
        ];
        std::fs::write(&log, lines.join("\n")).unwrap();
        let wanted: BTreeSet<PathBuf> = ["/p/a.toml", "/p/b.toml", "/p/c.toml"]
            .iter()
            .map(PathBuf::from)
            .collect();
        let found = last_sessions(&log, &wanted).unwrap();
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            [
                (
                    PathBuf::from("/p/a.toml"),
                    "2026-12-03T10:00:00Z".to_owned()
                ),
                (
                    PathBuf::from("/p/b.toml"),
                    "2026-11-30T23:59:59Z".to_owned()
                ),
            ]
        );
    }
}
