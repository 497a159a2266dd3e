use std::collections::BTreeMap;
use std::fs::File;
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::admin::status::read::check_segment;
use crate::engine::borg1::repository::hints::Hints;
use crate::engine::borg1::repository::segment::{COMMIT_ENTRY, MAGIC, delete_entry, put_header};

#[test]
fn entries_are_recognised_by_their_place_in_borgs_layout() {
    use EntryRole::*;
    for (path, role) in [
        (&["config"][..], Config),
        (&["hints.0"], Hints(0)),
        (&["hints.4294967295"], Hints(u32::MAX)),
        (&["hints.4294967296"], Other),
        (&["hints.07"], Other),
        (&["hints.7.tmp"], Other),
        (&["hints."], Other),
        (&["index.7"], Other),
        (&["lock.roster"], Roster),
        (&["lock.exclusive", "h@1.42-0"], ExclusiveHolder("h@1.42-0")),
        (&["lock.exclusive"], Other),
        (
            &["data", "0", "17"],
            Segment {
                dir: 0,
                segment: 17,
            },
        ),
        (
            &["data", "3", "3000"],
            Segment {
                dir: 3,
                segment: 3000,
            },
        ),
        (&["data", "0", "017"], Other),
        (&["data", "x", "1"], Other),
        (&["data", "0"], Other),
        (&["data", "0", "1", "2"], Other),
        (&["sub", "config"], Other),
        (&["sub", "data", "0", "1"], Other),
        (&[], Other),
    ] {
        assert_eq!(entry_role(path), role, "{path:?}");
    }
}

fn listed(dir: u32, segment: u32, len: u64) -> ListedSegment {
    ListedSegment { dir, segment, len }
}

#[test]
fn segments_count_only_in_their_own_directory_newest_first() {
    let on_disk = [
        listed(0, 5, 17),
        listed(0, 999, 100),
        listed(1, 1000, 0),
        listed(1, 1001, 17),
        listed(0, 1500, 9),
        listed(2, 7, 9),
    ];
    let segments = segments_newest_first(&on_disk, 1000);
    assert_eq!(
        segments,
        [
            listed(1, 1001, 17),
            listed(1, 1000, 0),
            listed(0, 999, 100),
            listed(0, 5, 17)
        ]
    );
    assert_eq!(segment_count(&segments), 3);
    assert_eq!(segments_newest_first(&on_disk, 0), []);
    assert_eq!(segments_newest_first(&on_disk, 1).len(), 0);
}

/// A segment file's bytes: the magic, then the entries.
fn segment(entries: &[&[u8]]) -> Vec<u8> {
    let mut bytes = MAGIC.to_vec();
    for entry in entries {
        bytes.extend_from_slice(entry);
    }
    bytes
}

fn put(id: u8, data: &[u8]) -> Vec<u8> {
    let mut entry = put_header(&[id; 32], data).unwrap().to_vec();
    entry.extend_from_slice(data);
    entry
}

/// Runs the commit scan over segments given as byte buffers (`None`: deleted since listed),
/// numbered from 0, each file's mtime set to 1000 s + its number.
fn scan(segments: &[Option<Vec<u8>>]) -> CommitScan {
    let dir = tempfile::tempdir().unwrap();
    let mut listing = Vec::new();
    for (number, bytes) in segments.iter().enumerate() {
        let number = number as u32;
        listing.push(listed(0, number, 0));
        if let Some(bytes) = bytes {
            let path = dir.path().join(number.to_string());
            std::fs::write(&path, bytes).unwrap();
            File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(UNIX_EPOCH + Duration::from_secs(1000 + u64::from(number)))
                .unwrap();
        }
    }
    listing.reverse();
    newest_commit(&listing, |listed| {
        match File::open(dir.path().join(listed.segment.to_string())) {
            Ok(file) => check_segment(&file),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Ok(SegmentCheck::Vanished)
            }
            Err(error) => Err(error),
        }
    })
    .unwrap()
}

fn committed_at(transaction_id: u32) -> Option<Commit> {
    Some(Commit {
        transaction_id,
        time: UNIX_EPOCH + Duration::from_secs(1000 + u64::from(transaction_id)),
    })
}

#[test]
fn the_newest_segment_ending_in_a_valid_commit_is_the_last_commit() {
    let data = segment(&[&put(1, b"chunk"), &delete_entry(&[2; 32])]);
    let commit_only = segment(&[&COMMIT_ENTRY]);
    let result = scan(&[Some(data.clone()), Some(commit_only.clone())]);
    assert_eq!(result.commit, committed_at(1));
    assert!(!result.raced);
    // An intermediate commit inside a segment (compaction) counts too.
    let with_commit = segment(&[&put(1, b"x"), &COMMIT_ENTRY]);
    assert_eq!(scan(&[Some(with_commit)]).commit, committed_at(0));
}

#[test]
fn a_last_segment_without_a_valid_commit_leaves_the_previous_commit() {
    let committed = segment(&[&put(1, b"chunk"), &COMMIT_ENTRY]);
    let mut bad_crc = segment(&[&put(1, b"chunk"), &COMMIT_ENTRY]);
    bad_crc[MAGIC.len() + 41] ^= 0xff;
    let mut truncated_commit = segment(&[&put(3, b"y"), &COMMIT_ENTRY]);
    truncated_commit.pop();
    for (case, newest) in [
        ("a transaction in progress", segment(&[&put(2, b"more")])),
        ("a crc error before the commit", bad_crc),
        ("a torn commit", truncated_commit),
        ("a put after the commit", {
            let mut bytes = segment(&[&COMMIT_ENTRY, &put(4, b"z")]);
            bytes.extend_from_slice(&COMMIT_ENTRY);
            bytes
        }),
        ("only the magic", MAGIC.to_vec()),
        ("an empty file", Vec::new()),
        ("garbage", vec![0x5a; 40]),
        ("a bare commit entry without magic", COMMIT_ENTRY.to_vec()),
    ] {
        let result = scan(&[Some(committed.clone()), Some(newest)]);
        assert_eq!(result.commit, committed_at(0), "{case}");
    }
}

#[test]
fn no_commit_at_all_is_none_and_a_vanished_segment_is_a_race() {
    let uncommitted = segment(&[&put(1, b"chunk")]);
    assert_eq!(scan(&[Some(uncommitted.clone())]).commit, None);
    assert_eq!(scan(&[]).commit, None);
    let commit_only = segment(&[&COMMIT_ENTRY]);
    let result = scan(&[Some(commit_only), None, Some(uncommitted)]);
    assert_eq!(result.commit, committed_at(0));
    assert!(result.raced);
}

#[test]
fn the_scan_stops_at_the_first_error() {
    let calls = std::cell::Cell::new(0);
    let segments = [listed(0, 2, 17), listed(0, 1, 17)];
    let result: Result<CommitScan, &str> = newest_commit(&segments, |_| {
        calls.set(calls.get() + 1);
        Err("unreadable")
    });
    assert_eq!(result, Err("unreadable"));
    assert_eq!(calls.get(), 1);
}

#[test]
fn hints_are_those_of_the_commit_or_the_newest_before_it() {
    assert_eq!(hints_for(&[3, 7, 5], 7), Some(7));
    assert_eq!(hints_for(&[3, 5], 7), Some(5));
    assert_eq!(hints_for(&[9, 3], 7), Some(3));
    assert_eq!(hints_for(&[9], 7), None);
    assert_eq!(hints_for(&[], 7), None);
}

#[test]
fn hints_give_quota_use_and_the_sum_of_freeable_bytes() {
    let hints = Hints {
        segments: BTreeMap::from([(0, 1), (1, 0)]),
        compact: BTreeMap::from([(1, 9), (4, 1000), (6, u64::MAX)]),
        storage_quota_use: 468,
        shadow_index: Default::default(),
    };
    assert_eq!(
        hints_figures(&hints.encode()).unwrap(),
        HintsFigures {
            quota_used_bytes: Some(468),
            compactable_bytes: Some(u64::MAX),
        }
    );
    let mut small = hints;
    small.compact.remove(&6);
    assert_eq!(
        hints_figures(&small.encode()).unwrap().compactable_bytes,
        Some(1009)
    );
}

#[test]
fn borg_1_0_hints_leave_the_figures_unknown_and_torn_hints_are_an_error() {
    use rmpv::Value;
    let legacy = Value::Map(vec![
        (Value::from("version"), Value::from(1)),
        (
            Value::from("segments"),
            Value::Map(vec![(Value::from(0), Value::from(1))]),
        ),
        (Value::from("compact"), Value::Array(vec![Value::from(1)])),
    ]);
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, &legacy).unwrap();
    assert_eq!(hints_figures(&bytes).unwrap(), HintsFigures::default());

    let whole = Hints::default().encode();
    for cut in 0..whole.len() {
        assert!(hints_figures(&whole[..cut]).is_err(), "cut at {cut}");
    }
    assert!(hints_figures(b"\xc1").is_err());
}

fn holder(mode: HoldMode, host: &str, pid: Option<i64>, alive: Option<bool>) -> LockHolder {
    LockHolder {
        mode,
        host: host.to_owned(),
        pid,
        alive,
    }
}

/// Holders on host `here` with an odd pid run; even pids are dead; other hosts are unknown.
fn liveness(identity: &LockIdentity) -> Option<bool> {
    (identity.host_id == "here").then_some(identity.pid % 2 == 1)
}

fn roster(exclusive: &[(&str, i64)], shared: &[(&str, i64)]) -> RosterData {
    let list = |holders: &[(&str, i64)]| {
        Some(
            holders
                .iter()
                .map(|(host, pid)| LockIdentity::new(*host, *pid))
                .collect(),
        )
    };
    RosterData {
        exclusive: list(exclusive),
        shared: list(shared),
        other: Default::default(),
    }
}

#[test]
fn no_lock_files_or_empty_lists_mean_free() {
    assert_eq!(lock_state(&[], None, liveness), LockState::free());
    assert_eq!(
        lock_state(&[], Some(&roster(&[], &[])), liveness),
        LockState::free()
    );
    assert_eq!(
        lock_state(&[], Some(&RosterData::default()), liveness),
        LockState::free()
    );
}

#[test]
fn an_exclusive_holder_in_the_mutex_and_the_roster_is_listed_once() {
    let state = lock_state(
        &["here.41-0"],
        Some(&roster(&[("here", 41)], &[])),
        liveness,
    );
    assert_eq!(
        state,
        LockState {
            state: LockSummary::Held,
            holders: vec![holder(HoldMode::Exclusive, "here", Some(41), Some(true))],
        }
    );
}

#[test]
fn dead_holders_on_this_host_make_the_lock_stale() {
    let state = lock_state(
        &["here.42-0"],
        Some(&roster(&[("here", 42)], &[("here", 44)])),
        liveness,
    );
    assert_eq!(state.state, LockSummary::Stale);
    assert_eq!(
        state.holders,
        [
            holder(HoldMode::Exclusive, "here", Some(42), Some(false)),
            holder(HoldMode::Shared, "here", Some(44), Some(false)),
        ]
    );
}

#[test]
fn a_holder_on_another_host_or_a_live_one_keeps_the_lock_held() {
    let remote = lock_state(&[], Some(&roster(&[], &[("there", 2)])), liveness);
    assert_eq!(remote.state, LockSummary::Held);
    assert_eq!(
        remote.holders,
        [holder(HoldMode::Shared, "there", Some(2), None)]
    );
    let mixed = lock_state(
        &[],
        Some(&roster(&[], &[("here", 2), ("here", 3)])),
        liveness,
    );
    assert_eq!(mixed.state, LockSummary::Held);
    // A shared locker holds the mutex for a moment: listed once, as shared.
    let joining = lock_state(&["here.3-0"], Some(&roster(&[], &[("here", 3)])), liveness);
    assert_eq!(
        joining.holders,
        [holder(HoldMode::Shared, "here", Some(3), Some(true))]
    );
}

#[test]
fn a_malformed_mutex_entry_is_held_and_named() {
    let state = lock_state(&["no-pid-here"], None, liveness);
    assert_eq!(state.state, LockSummary::Held);
    assert_eq!(
        state.holders,
        [holder(HoldMode::Exclusive, "no-pid-here", None, None)]
    );
}

#[test]
fn a_mutex_without_roster_entry_is_an_exclusive_holder() {
    let state = lock_state(&["host.name@1234.99-0"], None, |_| None);
    assert_eq!(
        state.holders,
        [holder(
            HoldMode::Exclusive,
            "host.name@1234",
            Some(99),
            None
        )]
    );
}
