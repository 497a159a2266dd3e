//! What the files of one repository mean for `status`: which entry is which, the newest
//! commit, quota use and freeable space from the hints, and who holds the lock. Pure: the
//! bytes and names come from [`super::read`], the codecs from the engine's repository and lock
//! modules (read-only use; no second parser of borg's formats).

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

use crate::engine::borg1::lock::{LockIdentity, RosterData};
use crate::engine::borg1::repository::hints::{self, DecodedHints};
use crate::engine::borg1::repository::segment::parse_canonical_u32;

/// What an entry of a repository is, by its place in the tree (borg's layout, section 6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryRole<'a> {
    Config,
    /// `hints.N`, with N.
    Hints(u32),
    Roster,
    /// A file in `lock.exclusive/`: its name is the holder.
    ExclusiveHolder(&'a str),
    /// `data/<dir>/<segment>`, both canonical decimal numbers.
    Segment {
        dir: u32,
        segment: u32,
    },
    /// Anything else: counted in the size, otherwise ignored.
    Other,
}

/// The role of the entry at `components` below the repository directory. A file of `data/`
/// is a segment only under canonical names, as in the engine's listing.
pub(crate) fn entry_role<'a>(components: &[&'a str]) -> EntryRole<'a> {
    match components {
        ["config"] => EntryRole::Config,
        ["lock.roster"] => EntryRole::Roster,
        [name] => match name.strip_prefix("hints.").map(parse_canonical_u32) {
            Some(Some(transaction)) => EntryRole::Hints(transaction),
            _ => EntryRole::Other,
        },
        ["lock.exclusive", name] => EntryRole::ExclusiveHolder(name),
        ["data", dir, segment] => match (parse_canonical_u32(dir), parse_canonical_u32(segment)) {
            (Some(dir), Some(segment)) => EntryRole::Segment { dir, segment },
            _ => EntryRole::Other,
        },
        _ => EntryRole::Other,
    }
}

/// A segment file as listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListedSegment {
    pub dir: u32,
    pub segment: u32,
    pub len: u64,
}

/// The segments that count, newest first: in the directory `segments_per_dir` puts them in
/// (borg opens no other). Zero-length files (logically deleted) are kept: they are skipped by
/// the commit test, not by the listing, as in borg.
pub(crate) fn segments_newest_first(
    listed: &[ListedSegment],
    segments_per_dir: u32,
) -> Vec<ListedSegment> {
    let mut segments: Vec<ListedSegment> = listed
        .iter()
        .filter(|s| segments_per_dir > 0 && s.segment / segments_per_dir == s.dir)
        .copied()
        .collect();
    segments.sort_unstable_by_key(|s| std::cmp::Reverse(s.segment));
    segments
}

/// The number of segment files that hold anything.
pub(crate) fn segment_count(segments: &[ListedSegment]) -> u64 {
    segments.iter().filter(|s| s.len > 0).count() as u64
}

/// What the commit test says about one segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SegmentCheck {
    /// It ends with a valid commit; the file's modification time is when that was written.
    Committed(SystemTime),
    NotCommitted,
    /// It was deleted since the listing (compaction, or an aborted transaction's cleanup).
    Vanished,
}

/// The newest commit of a repository: its transaction id (the segment number) and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    pub transaction_id: u32,
    pub time: SystemTime,
}

/// The outcome of [`newest_commit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CommitScan {
    pub commit: Option<Commit>,
    /// A segment vanished on the way: the repository changed while we read it.
    pub raced: bool,
}

/// borg's transaction id discovery (`get_segments_transaction_id`, section 5.2): the first
/// committed segment from the newest down. `check` runs borg's commit test on one segment.
pub(crate) fn newest_commit<E>(
    newest_first: &[ListedSegment],
    mut check: impl FnMut(&ListedSegment) -> Result<SegmentCheck, E>,
) -> Result<CommitScan, E> {
    let mut raced = false;
    for listed in newest_first {
        match check(listed)? {
            SegmentCheck::Committed(time) => {
                return Ok(CommitScan {
                    commit: Some(Commit {
                        transaction_id: listed.segment,
                        time,
                    }),
                    raced,
                });
            }
            SegmentCheck::NotCommitted => {}
            SegmentCheck::Vanished => raced = true,
        }
    }
    Ok(CommitScan {
        commit: None,
        raced,
    })
}

/// The hints file that describes transaction `transaction_id`: `hints.<id>`, or while a
/// commit is being written (its segment is there, its hints not yet), the newest older one.
pub(crate) fn hints_for(available: &[u32], transaction_id: u32) -> Option<u32> {
    available
        .iter()
        .copied()
        .filter(|&n| n <= transaction_id)
        .max()
}

/// Quota use and freeable bytes, as the hints record them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HintsFigures {
    /// borg's `storage_quota_use`: bytes of PUT entries counted against the quota.
    pub quota_used_bytes: Option<u64>,
    /// The sum of `compact`: bytes compaction would free.
    pub compactable_bytes: Option<u64>,
}

/// Reads the figures from a hints file's bytes. borg 1.0's version 1 hints record neither
/// (borg rebuilds them at the next write), so both are unknown then.
pub(crate) fn hints_figures(bytes: &[u8]) -> Result<HintsFigures, hints::HintsError> {
    Ok(match hints::decode(bytes)? {
        DecodedHints::Current(hints) => HintsFigures {
            quota_used_bytes: Some(hints.storage_quota_use),
            compactable_bytes: Some(
                hints
                    .compact
                    .values()
                    .fold(0u64, |sum, &freeable| sum.saturating_add(freeable)),
            ),
        },
        DecodedHints::Legacy { .. } => HintsFigures::default(),
    })
}

/// How a holder holds the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HoldMode {
    Exclusive,
    Shared,
}

/// One holder of a repository lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockHolder {
    pub mode: HoldMode,
    /// borg's hostid (`<fqdn>@<node>` or `BORG_HOST_ID`), or the whole file name of a
    /// malformed entry in `lock.exclusive/`.
    pub host: String,
    pub pid: Option<i64>,
    /// Whether the process runs: known only for holders on this host.
    pub alive: Option<bool>,
}

/// Whether anyone holds the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LockSummary {
    Free,
    /// At least one holder may be running (or cannot be told apart from one that is).
    Held,
    /// Every holder is a dead process on this host: the next borg to lock removes it.
    Stale,
}

/// A repository's lock as `lock.exclusive/` and `lock.roster` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockState {
    pub state: LockSummary,
    pub holders: Vec<LockHolder>,
}

impl LockState {
    pub fn free() -> LockState {
        LockState {
            state: LockSummary::Free,
            holders: Vec::new(),
        }
    }
}

/// Merges the names in `lock.exclusive/` and the roster's lists into one list of holders.
/// The mutex holder is the exclusive holder (a shared locker holds it only for a moment, and
/// is then also in `shared`). `alive` tells whether a holder runs, `None` when it cannot be
/// told (another host).
pub(crate) fn lock_state(
    exclusive_names: &[&str],
    roster: Option<&RosterData>,
    alive: impl Fn(&LockIdentity) -> Option<bool>,
) -> LockState {
    let mut holders: BTreeMap<(String, Option<i64>, i64), HoldMode> = BTreeMap::new();
    if let Some(roster) = roster {
        for (list, mode) in [
            (roster.exclusive.as_deref(), HoldMode::Exclusive),
            (roster.shared.as_deref(), HoldMode::Shared),
        ] {
            for identity in list.unwrap_or_default() {
                let key = (
                    identity.host_id.clone(),
                    Some(identity.pid),
                    identity.thread,
                );
                holders.entry(key).or_insert(mode);
            }
        }
    }
    let mut malformed = Vec::new();
    for name in exclusive_names {
        match LockIdentity::parse_unique_name(name) {
            Some(identity) => {
                holders
                    .entry((identity.host_id, Some(identity.pid), identity.thread))
                    .or_insert(HoldMode::Exclusive);
            }
            None => malformed.push(*name),
        }
    }
    let mut listed: Vec<LockHolder> = holders
        .into_iter()
        .map(|((host, pid, thread), mode)| {
            let identity = LockIdentity {
                host_id: host.clone(),
                pid: pid.unwrap_or_default(),
                thread,
            };
            LockHolder {
                mode,
                alive: alive(&identity),
                host,
                pid,
            }
        })
        .collect();
    listed.extend(malformed.into_iter().map(|name| LockHolder {
        mode: HoldMode::Exclusive,
        host: name.to_owned(),
        pid: None,
        alive: None,
    }));
    listed.sort_by(|a, b| (a.mode, &a.host, a.pid).cmp(&(b.mode, &b.host, b.pid)));
    let state = if listed.is_empty() {
        LockSummary::Free
    } else if listed.iter().all(|holder| holder.alive == Some(false)) {
        LockSummary::Stale
    } else {
        LockSummary::Held
    };
    LockState {
        state,
        holders: listed,
    }
}

#[cfg(test)]
mod tests;
