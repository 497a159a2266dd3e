//! The engines' side of `borg-gate audit`: each `session_end` record joined to the gate's
//! decision of the same session by `session_id`, folded per key (policy, and `--name` when the
//! key has one) into bounded counters: sessions by how they ended, bytes added, objects put
//! and deleted, commits, calls the engine refused (by call and reason), and the sessions that
//! deleted objects through an append-only key.
//!
//! Memory stays bounded: decisions wait for their engine record in a map of at most
//! [`MAX_PENDING`] entries (the oldest go first; a session that long is rare, a key killed
//! with SIGKILL never sends its record), keys and refusal kinds are capped like the gate's
//! counters, and only the newest [`MAX_APPEND_ONLY_DELETES`] deleting sessions are listed.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::Serialize;

use super::{MAX_DISTINCT_NAMES, NO_POLICY, OTHER, cut};
use crate::audit::session_end::{RefusedCalls, add_refusals};

/// Decisions still waiting for their engine's record.
pub(super) const MAX_PENDING: usize = 50_000;
/// Sessions listed that deleted through an append-only key (the newest).
pub(super) const MAX_APPEND_ONLY_DELETES: usize = 100;
/// Distinct `end` values counted per key; others count as [`OTHER`].
const MAX_ENDS: usize = 16;

/// What a session's decision record tells its engine record.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Decided {
    policy: String,
    name: Option<String>,
    ssh_connection: Option<String>,
}

/// The fields of a `session_end` record the summary needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct EndFields<'a> {
    pub time: &'a str,
    pub session_id: Option<&'a str>,
    pub policy: Option<&'a str>,
    pub repository: Option<&'a str>,
    pub end: &'a str,
    pub duration_s: f64,
    pub bytes_received: u64,
    pub bytes_put: u64,
    pub objects_put: u64,
    pub objects_deleted: u64,
    pub commits: u64,
    pub transaction_id: Option<u64>,
    pub append_only: bool,
    pub refused: &'a [RefusedCalls],
}

/// The engine's sessions of one key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KeySessions {
    pub policy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub sessions: u64,
    /// Sessions by `end`.
    pub ends: BTreeMap<String, u64>,
    pub bytes_received: u64,
    /// Payload bytes stored: what the key added.
    pub bytes_added: u64,
    pub objects_put: u64,
    pub objects_deleted: u64,
    pub commits: u64,
    pub refused_calls: u64,
    /// By call and reason.
    pub refused: Vec<RefusedCalls>,
}

impl KeySessions {
    /// `laptop`, or `laptop --name alice`.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("{} --name {name}", self.policy),
            None => self.policy.clone(),
        }
    }
}

/// A session that deleted objects through a key whose policy is append-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppendOnlyDelete {
    /// When the session ended.
    pub time: String,
    pub session_id: Option<String>,
    pub policy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub repository: Option<String>,
    /// The client's address and port, from the gate's record (sshd's SSH_CONNECTION).
    pub ssh_connection: Option<String>,
    pub objects_deleted: u64,
    /// The last transaction the session committed: its deletes are in it or before it.
    pub transaction_id: Option<u64>,
    /// When the session began (its end less its duration), for finding the last transaction
    /// before it in the repository's `transactions` file.
    pub started: Option<String>,
}

/// The engines' part of the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SessionsSummary {
    /// `session_end` records inside the time window.
    pub records: u64,
    /// Records whose decision was not in this log (rotated away, or no gate in front).
    pub without_decision: u64,
    /// Sessions the gate started in the built-in engine whose record is not in this log
    /// (still running, killed with SIGKILL, or in the next log file).
    pub without_end: u64,
    /// Per key, sorted.
    pub keys: Vec<KeySessions>,
    /// Oldest first.
    pub append_only_deletes: Vec<AppendOnlyDelete>,
}

/// Folds decisions and engine records into [`SessionsSummary`].
#[derive(Debug, Default)]
pub(super) struct SessionFold {
    pending: HashMap<String, Decided>,
    /// Insertion order of `pending` (ids already matched are skipped when evicting).
    order: VecDeque<String>,
    evicted: u64,
    records: u64,
    without_decision: u64,
    keys: HashMap<(String, Option<String>), KeySessions>,
    append_only_deletes: VecDeque<AppendOnlyDelete>,
}

impl SessionFold {
    /// An accepted decision whose engine will write a record of the session (the gate handed
    /// it `--session-id`).
    pub(super) fn decision(
        &mut self,
        session_id: &str,
        policy: &str,
        name: Option<&str>,
        ssh_connection: Option<&str>,
    ) {
        let decided = Decided {
            policy: cut(policy),
            name: name.map(cut),
            ssh_connection: ssh_connection.map(cut),
        };
        let id = cut(session_id);
        if self.pending.insert(id.clone(), decided).is_some() {
            return;
        }
        self.order.push_back(id);
        while self.pending.len() > MAX_PENDING {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if self.pending.remove(&oldest).is_some() {
                self.evicted += 1;
            }
        }
        if self.order.len() > 2 * MAX_PENDING {
            let pending = &self.pending;
            self.order.retain(|id| pending.contains_key(id));
        }
    }

    /// An engine's record of a session.
    pub(super) fn session_end(&mut self, record: &EndFields<'_>) {
        self.records += 1;
        let decided = record
            .session_id
            .and_then(|id| self.pending.remove(&cut(id)));
        let (policy, name, ssh_connection) = match decided {
            Some(decided) => (decided.policy, decided.name, decided.ssh_connection),
            None => {
                self.without_decision += 1;
                (cut(record.policy.unwrap_or(NO_POLICY)), None, None)
            }
        };
        let key = if self.keys.contains_key(&(policy.clone(), name.clone()))
            || self.keys.len() < MAX_DISTINCT_NAMES
        {
            (policy.clone(), name.clone())
        } else {
            (OTHER.to_owned(), None)
        };
        let sessions = self.keys.entry(key.clone()).or_insert_with(|| KeySessions {
            policy: key.0.clone(),
            name: key.1.clone(),
            ..KeySessions::default()
        });
        sessions.sessions += 1;
        let end = cut(record.end);
        let end = if sessions.ends.contains_key(&end) || sessions.ends.len() < MAX_ENDS {
            end
        } else {
            OTHER.to_owned()
        };
        *sessions.ends.entry(end).or_insert(0) += 1;
        sessions.bytes_received = sessions
            .bytes_received
            .saturating_add(record.bytes_received);
        sessions.bytes_added = sessions.bytes_added.saturating_add(record.bytes_put);
        sessions.objects_put = sessions.objects_put.saturating_add(record.objects_put);
        sessions.objects_deleted = sessions
            .objects_deleted
            .saturating_add(record.objects_deleted);
        sessions.commits = sessions.commits.saturating_add(record.commits);
        for refused in record.refused {
            sessions.refused_calls = sessions.refused_calls.saturating_add(refused.count);
            add_refusals(
                &mut sessions.refused,
                &cut(&refused.call),
                &cut(&refused.reason),
                refused.count,
            );
        }
        if record.append_only && record.objects_deleted > 0 {
            if self.append_only_deletes.len() == MAX_APPEND_ONLY_DELETES {
                self.append_only_deletes.pop_front();
            }
            self.append_only_deletes.push_back(AppendOnlyDelete {
                time: cut(record.time),
                session_id: record.session_id.map(cut),
                policy,
                name,
                repository: record.repository.map(cut),
                ssh_connection,
                objects_deleted: record.objects_deleted,
                transaction_id: record.transaction_id,
                started: started(record.time, record.duration_s),
            });
        }
    }

    pub(super) fn finish(self) -> SessionsSummary {
        let mut keys: Vec<KeySessions> = self.keys.into_values().collect();
        keys.sort_by(|a, b| (&a.policy, &a.name).cmp(&(&b.policy, &b.name)));
        SessionsSummary {
            records: self.records,
            without_decision: self.without_decision,
            without_end: self.evicted + self.pending.len() as u64,
            keys,
            append_only_deletes: self.append_only_deletes.into_iter().collect(),
        }
    }
}

/// The end time less the duration, in RFC 3339 (`None` when the time does not parse).
fn started(end: &str, duration_s: f64) -> Option<String> {
    let end = humantime::parse_rfc3339_weak(end).ok()?;
    let duration = std::time::Duration::try_from_secs_f64(duration_s).ok()?;
    let start = end.checked_sub(duration)?;
    Some(humantime::format_rfc3339_seconds(start).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end<'a>(id: &'a str, refused: &'a [RefusedCalls]) -> EndFields<'a> {
        EndFields {
            time: "2026-01-02T10:00:00.000000Z",
            session_id: Some(id),
            policy: Some("laptop"),
            repository: Some("/srv/r"),
            end: "client_closed",
            duration_s: 90.5,
            bytes_received: 10,
            bytes_put: 100,
            objects_put: 3,
            objects_deleted: 0,
            commits: 1,
            transaction_id: Some(7),
            append_only: false,
            refused,
        }
    }

    #[test]
    fn records_join_their_decisions_and_count_per_key() {
        let mut fold = SessionFold::default();
        fold.decision(
            "a",
            "laptop",
            Some("alice"),
            Some("192.0.2.1 5 192.0.2.2 22"),
        );
        fold.decision("b", "laptop", Some("bob"), None);
        fold.decision("c", "laptop", Some("bob"), None);
        let refused = [RefusedCalls {
            call: "put".into(),
            reason: "read-only".into(),
            count: 4,
        }];
        fold.session_end(&end("a", &[]));
        fold.session_end(&EndFields {
            end: "idle_timeout",
            ..end("b", &refused)
        });
        fold.session_end(&end("b-unknown", &refused));
        let summary = fold.finish();
        assert_eq!(summary.records, 3);
        assert_eq!(summary.without_decision, 1);
        assert_eq!(summary.without_end, 1, "c never ended");
        let labels: Vec<String> = summary.keys.iter().map(KeySessions::label).collect();
        assert_eq!(
            labels,
            ["laptop", "laptop --name alice", "laptop --name bob"]
        );
        let bob = &summary.keys[2];
        assert_eq!(bob.ends.get("idle_timeout"), Some(&1));
        assert_eq!(bob.refused_calls, 4);
        assert_eq!(bob.refused, refused);
        assert_eq!(summary.keys[1].bytes_added, 100);
        assert_eq!(summary.keys[1].commits, 1);
    }

    #[test]
    fn deletes_through_an_append_only_key_are_listed_with_where_they_came_from() {
        let mut fold = SessionFold::default();
        fold.decision(
            "a",
            "laptop",
            Some("alice"),
            Some("192.0.2.1 5 192.0.2.2 22"),
        );
        fold.session_end(&EndFields {
            objects_deleted: 12,
            append_only: true,
            ..end("a", &[])
        });
        fold.session_end(&EndFields {
            objects_deleted: 5,
            ..end("x", &[])
        });
        let summary = fold.finish();
        assert_eq!(
            summary.append_only_deletes,
            [AppendOnlyDelete {
                time: "2026-01-02T10:00:00.000000Z".into(),
                session_id: Some("a".into()),
                policy: "laptop".into(),
                name: Some("alice".into()),
                repository: Some("/srv/r".into()),
                ssh_connection: Some("192.0.2.1 5 192.0.2.2 22".into()),
                objects_deleted: 12,
                transaction_id: Some(7),
                started: Some("2026-01-02T09:58:29Z".into()),
            }]
        );
    }

    #[test]
    fn waiting_decisions_are_bounded_and_the_oldest_go_first() {
        let mut fold = SessionFold::default();
        for i in 0..(MAX_PENDING + 10) {
            fold.decision(&format!("s{i}"), "p", None, None);
        }
        fold.session_end(&end("s0", &[]));
        fold.session_end(&end(&format!("s{}", MAX_PENDING + 9), &[]));
        let summary = fold.finish();
        assert_eq!(summary.without_decision, 1, "s0 was evicted");
        assert_eq!(summary.without_end, MAX_PENDING as u64 + 9);
    }

    #[test]
    fn a_huge_refusal_count_is_added_without_looping_or_overflowing() {
        let mut fold = SessionFold::default();
        let refused = [RefusedCalls {
            call: "put".into(),
            reason: "read-only".into(),
            count: u64::MAX,
        }];
        fold.session_end(&end("a", &refused));
        fold.session_end(&end("b", &refused));
        let summary = fold.finish();
        assert_eq!(summary.keys[0].refused_calls, u64::MAX);
        assert_eq!(summary.keys[0].refused[0].count, u64::MAX);
    }
}
