//! The engine's record of a session: one JSON line written when a session of a built-in engine
//! ends, for any reason, to the same sinks as the gate's decision record. The two records share
//! a `session_id`, which the gate makes and hands to the engine (`--session-id`); `borg-gate
//! audit` joins them on it.
//!
//! Pure: the engine counts what happened (`engine::tally`) and builds a [`SessionEnd`] from it;
//! this module owns the fields, their meaning and their serialisation. A session id is the one
//! thing here that needs the system (randomness), in [`SessionId::generate`].

use std::fmt;
use std::io::Read;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::record::RECORD_VERSION;
use crate::common::text::rfc3339;

/// `event` of the gate's record.
pub const DECISION: &str = "decision";
/// `event` of the engine's record.
pub const SESSION_END: &str = "session_end";
/// The most distinct (call, reason) pairs a record names; further refusals are counted under
/// the last entry's call `(other)`.
pub const MAX_REFUSED_KINDS: usize = 32;
/// The call name of refusals past [`MAX_REFUSED_KINDS`].
pub const OTHER_CALL: &str = "(other)";

/// The id that ties a gate decision to the engine session it started: 32 hex digits from the
/// system's random source, or an id the gate handed over (checked by [`SessionId::parse`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    /// The longest id accepted from a command line.
    pub const MAX_LEN: usize = 64;

    /// A fresh id: 128 random bits. Without `/dev/urandom` (a broken chroot), the time and the
    /// pid still make it unique on this host.
    pub fn generate() -> SessionId {
        let mut bytes = [0u8; 16];
        let random = std::fs::File::open("/dev/urandom")
            .and_then(|mut source| source.read_exact(&mut bytes))
            .is_ok();
        if !random {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            bytes[..12].copy_from_slice(&nanos.to_be_bytes()[4..]);
            bytes[12..].copy_from_slice(&std::process::id().to_be_bytes());
        }
        SessionId(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// An id from a command line: 1 to 64 ASCII letters, digits, `-` and `_`.
    pub fn parse(text: &str) -> Option<SessionId> {
        let valid = !text.is_empty()
            && text.len() <= Self::MAX_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        valid.then(|| SessionId(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a session ended (`end` in the record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The client closed its side, or went away (a killed client, a dropped connection).
    ClientClosed,
    /// No request for `idle_timeout`.
    IdleTimeout,
    /// A request was still incomplete `request_timeout` after it began.
    RequestTimeout,
    /// The session reached `session_limit`.
    SessionLimit,
    /// SIGHUP, SIGTERM or SIGINT, by name.
    Signal(String),
    /// The session's last failing call was a lock wait that ran out.
    LockTimeout,
    /// The client sent something that is not its protocol, a session that could not start,
    /// or a client that left after a call failed with this borg exception class.
    Error(String),
}

impl End {
    /// The `end` field.
    pub fn label(&self) -> &'static str {
        match self {
            End::ClientClosed => "client_closed",
            End::IdleTimeout => "idle_timeout",
            End::RequestTimeout => "request_timeout",
            End::SessionLimit => "session_limit",
            End::Signal(_) => "signal",
            End::LockTimeout => "lock_timeout",
            End::Error(_) => "error",
        }
    }

    /// Every `end` value, for metrics that start every series at zero.
    pub const LABELS: [&'static str; 7] = [
        "client_closed",
        "idle_timeout",
        "request_timeout",
        "session_limit",
        "signal",
        "lock_timeout",
        "error",
    ];
}

/// Calls of one kind the engine refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedCalls {
    /// The borg 1 RPC method (`put`, `destroy`, `open`, ...) or, for borg 2, the REST operation
    /// and its namespace (`delete archives`, `store packs`).
    pub call: String,
    /// `read-only`, `append-only`, `path-not-allowed`, `untrusted-path`, `quota`, for borg 2
    /// the permission mode that refused it (`no-delete`, ...) and `fenced`.
    pub reason: String,
    pub count: u64,
}

/// Adds one refusal of `call` for `reason` to `list`, keeping it at [`MAX_REFUSED_KINDS`]
/// entries.
pub fn add_refusal(list: &mut Vec<RefusedCalls>, call: &str, reason: &str) {
    add_refusals(list, call, reason, 1);
}

/// Adds `count` refusals of `call` for `reason` to `list` (saturating), keeping it at
/// [`MAX_REFUSED_KINDS`] entries: past that, they count under [`OTHER_CALL`].
pub fn add_refusals(list: &mut Vec<RefusedCalls>, call: &str, reason: &str, count: u64) {
    let known = list
        .iter()
        .position(|entry| entry.call == call && entry.reason == reason);
    let index = match known {
        Some(index) => index,
        None if list.len() + 1 < MAX_REFUSED_KINDS => {
            list.push(RefusedCalls {
                call: call.to_owned(),
                reason: reason.to_owned(),
                count: 0,
            });
            list.len() - 1
        }
        None => match list.iter().position(|entry| entry.call == OTHER_CALL) {
            Some(index) => index,
            None => {
                list.push(RefusedCalls {
                    call: OTHER_CALL.to_owned(),
                    reason: String::new(),
                    count: 0,
                });
                list.len() - 1
            }
        },
    };
    list[index].count = list[index].count.saturating_add(count);
}

/// borg 2 sessions: what the REST requests did, by operation (all namespaces).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestCounts {
    /// Objects stored (`POST /<name>`, and defrag's targets).
    pub stores: u64,
    pub bytes_stored: u64,
    /// Objects loaded (`GET /<name>`, and each source of a gather).
    pub loads: u64,
    pub bytes_loaded: u64,
    /// Objects deleted (`DELETE /<name>`).
    pub deletes: u64,
    /// Objects renamed (`cmd=move`), soft deletes of archives included.
    pub moves: u64,
    /// Lock objects the engine deleted for a client that left without releasing them.
    pub lock_releases: u64,
}

impl RestCounts {
    /// One object of `bytes` stored.
    pub fn stored(&mut self, bytes: u64) {
        self.stores += 1;
        self.bytes_stored = self.bytes_stored.saturating_add(bytes);
    }

    /// One object (or range) of `bytes` loaded.
    pub fn loaded(&mut self, bytes: u64) {
        self.loads += 1;
        self.bytes_loaded = self.bytes_loaded.saturating_add(bytes);
    }
}

/// The engine's record of one session. Counts are of what the engine did for the client in
/// its request loop, never from re-reading the repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionEnd {
    pub v: u32,
    /// When the session ended: RFC 3339, UTC, microseconds.
    pub time: String,
    /// Always `session_end`.
    pub event: String,
    pub session_id: String,
    /// The policy's name, as the gate handed it over (`None` without the gate).
    pub policy: Option<String>,
    pub pid: u32,
    /// `borg1` or `borg2`.
    pub protocol: String,
    /// The repository as opened (absolute), or `None` when the client opened none.
    pub repository: Option<String>,
    /// The client's borg version, when it sent one (borg 1.1 and later).
    pub client_version: Option<String>,
    /// [`End::label`].
    pub end: String,
    /// With `end` `error`: the borg exception class (or `ProtocolError`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// With `end` `signal`: `SIGTERM`, `SIGHUP` or `SIGINT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    pub duration_s: f64,
    /// Time spent waiting for repository locks held by others.
    pub lock_wait_s: f64,
    /// Protocol bytes read from and written to the client.
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub objects_put: u64,
    /// Payload bytes of those puts.
    pub bytes_put: u64,
    pub objects_deleted: u64,
    pub objects_read: u64,
    pub commits: u64,
    /// The last transaction this session committed.
    pub transaction_id: Option<u64>,
    /// Segments compaction removed in this session's commits.
    pub compacted_segments: u64,
    /// The session ended with writes it had not committed; they were rolled back.
    pub rolled_back: bool,
    /// The key is append-only (`--append-only` from its policy).
    pub append_only: bool,
    /// The key's permissions: `all`, `read-only` (borg 2 also `no-delete`, `write-only`).
    pub permissions: String,
    /// Calls the engine refused, in all.
    pub refused_calls: u64,
    pub refused: Vec<RefusedCalls>,
    /// borg 2 sessions only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rest: Option<RestCounts>,
}

impl SessionEnd {
    /// A record with nothing counted yet, ending now as `end`.
    pub fn new(session_id: &SessionId, protocol: &str, end: &End, time: SystemTime) -> SessionEnd {
        SessionEnd {
            v: RECORD_VERSION,
            time: rfc3339(time),
            event: SESSION_END.to_owned(),
            session_id: session_id.as_str().to_owned(),
            policy: None,
            pid: std::process::id(),
            protocol: protocol.to_owned(),
            repository: None,
            client_version: None,
            end: end.label().to_owned(),
            error: match end {
                End::Error(class) => Some(class.clone()),
                _ => None,
            },
            signal: match end {
                End::Signal(name) => Some(name.clone()),
                _ => None,
            },
            duration_s: 0.0,
            lock_wait_s: 0.0,
            bytes_received: 0,
            bytes_sent: 0,
            objects_put: 0,
            bytes_put: 0,
            objects_deleted: 0,
            objects_read: 0,
            commits: 0,
            transaction_id: None,
            compacted_segments: 0,
            rolled_back: false,
            append_only: false,
            permissions: "all".to_owned(),
            refused_calls: 0,
            refused: Vec::new(),
            rest: None,
        }
    }

    /// Whether the session ended the way a finished client ends it.
    pub fn ended_cleanly(&self) -> bool {
        self.end == End::ClientClosed.label() && !self.rolled_back
    }

    /// One line of JSON, newline included, ready for a single append.
    pub fn to_line(&self) -> String {
        // Strings, integers, finite floats and lists always serialise.
        let mut line = serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"));
        line.push('\n');
        line
    }
}

/// Seconds with millisecond precision, as the record shows durations.
pub fn seconds(duration: Duration) -> f64 {
    (duration.as_millis() as f64) / 1000.0
}

/// borg's version tuple as borg writes it: `[1, 4, 5, -1]` is `1.4.5`, `[2, 0, 0, -3, 23]` is
/// `2.0.0b23` (-4 alpha, -3 beta, -2 release candidate, -1 final). `None` for anything else.
pub fn client_version_text(parts: &[i64]) -> Option<String> {
    let release_end = parts.iter().position(|part| *part < 0)?;
    let release = &parts[..release_end];
    if release.is_empty() || release.len() > 4 || release.iter().any(|part| *part > 99_999) {
        return None;
    }
    let numbers: Vec<String> = release.iter().map(i64::to_string).collect();
    let mut text = numbers.join(".");
    let suffix = match parts[release_end] {
        -1 => "",
        -2 => "rc",
        -3 => "b",
        -4 => "a",
        _ => return None,
    };
    match (&parts[release_end + 1..], suffix) {
        ([], "") => {}
        ([serial], pre) if !pre.is_empty() && (0..=99_999).contains(serial) => {
            text.push_str(pre);
            text.push_str(&serial.to_string());
        }
        _ => return None,
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn generated_session_ids_are_32_hex_digits_and_differ() {
        let first = SessionId::generate();
        let second = SessionId::generate();
        assert_eq!(first.as_str().len(), 32);
        assert!(first.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(first, second);
        assert_eq!(SessionId::parse(first.as_str()), Some(first));
    }

    #[test]
    fn a_session_id_from_a_command_line_is_a_short_plain_word() {
        for good in ["a", "0123abcd", "host-1_x", &"f".repeat(64)] {
            assert!(SessionId::parse(good).is_some(), "{good}");
        }
        for bad in [
            "",
            "a b",
            "a\nb",
            "é",
            "a=b",
            "../x",
            "{\"x\":1}",
            &"f".repeat(65),
        ] {
            assert!(SessionId::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn the_record_is_one_line_with_the_issue_s_fields() {
        let id = SessionId::parse("abc").unwrap();
        let mut record = SessionEnd::new(
            &id,
            "borg1",
            &End::Error("LockTimeout".into()),
            UNIX_EPOCH + Duration::from_micros(1_765_057_172_123_456),
        );
        record.repository = Some("/srv/x\n{\"forged\":1}".into());
        record.duration_s = seconds(Duration::from_micros(1_234_567));
        let line = record.to_line();
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        for field in [
            "v",
            "time",
            "event",
            "session_id",
            "policy",
            "pid",
            "repository",
            "client_version",
            "end",
            "error",
            "duration_s",
            "lock_wait_s",
            "bytes_received",
            "bytes_sent",
            "objects_put",
            "bytes_put",
            "objects_deleted",
            "objects_read",
            "commits",
            "transaction_id",
            "compacted_segments",
            "rolled_back",
            "refused_calls",
            "refused",
        ] {
            assert!(value.get(field).is_some(), "{field} missing in {line}");
        }
        assert_eq!(value["event"], "session_end");
        assert_eq!(value["end"], "error");
        assert_eq!(value["error"], "LockTimeout");
        assert_eq!(value["duration_s"], 1.234);
        assert_eq!(value["time"], "2025-12-06T21:39:32.123456Z");
        assert!(value.get("signal").is_none() && value.get("rest").is_none());
        let parsed: SessionEnd = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed, record);
    }

    #[test]
    fn a_signal_ending_names_the_signal() {
        let id = SessionId::parse("abc").unwrap();
        let record = SessionEnd::new(&id, "borg2", &End::Signal("SIGTERM".into()), UNIX_EPOCH);
        assert_eq!(record.end, "signal");
        assert_eq!(record.signal.as_deref(), Some("SIGTERM"));
        assert_eq!(record.error, None);
        assert!(End::LABELS.contains(&End::SessionLimit.label()));
    }

    #[test]
    fn refusals_are_counted_by_call_and_reason_within_a_bound() {
        let mut list = Vec::new();
        add_refusal(&mut list, "put", "read-only");
        add_refusal(&mut list, "put", "read-only");
        add_refusal(&mut list, "delete", "read-only");
        assert_eq!(
            list,
            [
                RefusedCalls {
                    call: "put".into(),
                    reason: "read-only".into(),
                    count: 2
                },
                RefusedCalls {
                    call: "delete".into(),
                    reason: "read-only".into(),
                    count: 1
                }
            ]
        );
        for i in 0..100 {
            add_refusal(&mut list, &format!("call{i}"), "x");
        }
        assert_eq!(list.len(), MAX_REFUSED_KINDS);
        let other = list.last().unwrap();
        assert_eq!(other.call, OTHER_CALL);
        assert_eq!(list.iter().map(|e| e.count).sum::<u64>(), 103);
    }

    #[test]
    fn client_versions_read_as_borg_writes_them() {
        assert_eq!(
            client_version_text(&[1, 4, 5, -1]).as_deref(),
            Some("1.4.5")
        );
        assert_eq!(
            client_version_text(&[1, 2, 4, -1]).as_deref(),
            Some("1.2.4")
        );
        assert_eq!(
            client_version_text(&[2, 0, 0, -3, 23]).as_deref(),
            Some("2.0.0b23")
        );
        assert_eq!(
            client_version_text(&[1, 4, 0, -2, 1]).as_deref(),
            Some("1.4.0rc1")
        );
        for bad in [
            &[][..],
            &[1, 2, 3],
            &[-1],
            &[1, -7],
            &[1, -1, 5],
            &[1, -3],
            &[1, 2, 3, 4, 5, -1],
            &[i64::MAX, -1],
        ] {
            assert_eq!(client_version_text(bad), None, "{bad:?}");
        }
    }
}
