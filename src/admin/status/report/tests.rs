use super::*;

/// 2026-12-06T21:39:32Z.
const COMMITTED: u64 = 1_796_593_172;

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

fn sample() -> RepositoryStatus {
    RepositoryStatus {
        path: PathBuf::from("/srv/backup/alice/laptop"),
        last_commit: Some(Commit {
            transaction_id: 41,
            time: at(COMMITTED) + Duration::from_millis(700),
        }),
        size_bytes: 1_234_567_890,
        quota_bytes: Some(50_000_000_000),
        quota_used_bytes: Some(1_100_000_000),
        segments: Some(12),
        compactable_bytes: Some(12_345_678),
        append_only: Some(true),
        lock: LockState::free(),
        policies: vec!["alice-laptop".into(), "admin".into()],
        problems: vec![],
    }
}

fn now() -> SystemTime {
    at(COMMITTED + 7 * 3600 + 12 * 60 + 5)
}

#[test]
fn durations_show_their_two_largest_units() {
    for (seconds, text) in [
        (0, "0s"),
        (45, "45s"),
        (60, "1m"),
        (725, "12m 5s"),
        (3600, "1h"),
        (3660, "1h 1m"),
        (3601, "1h"),
        (7 * 3600 + 12 * 60 + 5, "7h 12m"),
        (86_400, "1d"),
        (3 * 86_400 + 4 * 3600 + 59, "3d 4h"),
        (400 * 86_400, "400d"),
    ] {
        assert_eq!(
            short_duration(Duration::from_secs(seconds)),
            text,
            "{seconds}"
        );
    }
}

#[test]
fn age_is_whole_seconds_and_never_negative() {
    assert_eq!(
        age(at(100) + Duration::from_millis(999), at(40)),
        Duration::from_secs(60)
    );
    assert_eq!(age(at(40), at(100)), Duration::ZERO);
    assert_eq!(sample().age(now()), Some(Duration::from_secs(25_924)));
}

#[test]
fn max_age_fails_only_a_strictly_older_commit_or_none() {
    let status = sample();
    let exact = Duration::from_secs(25_924);
    assert!(!status.is_overdue(now(), exact));
    assert!(status.is_overdue(now(), exact - Duration::from_secs(1)));
    assert!(!status.is_overdue(now(), Duration::from_secs(26 * 3600)));
    let never = RepositoryStatus {
        last_commit: None,
        ..sample()
    };
    assert!(never.is_overdue(now(), Duration::from_secs(u64::MAX)));
    let future = RepositoryStatus {
        last_commit: Some(Commit {
            transaction_id: 1,
            time: now() + Duration::from_secs(3600),
        }),
        ..sample()
    };
    assert!(!future.is_overdue(now(), Duration::ZERO));
}

#[test]
fn the_line_names_every_figure_in_order() {
    assert_eq!(
        line(&sample(), now()),
        "/srv/backup/alice/laptop: last commit 2026-12-06T21:39:32Z (7h 12m ago), 1.23 GB on disk, \
         quota 1.10 GB of 50.00 GB (2.2%), 12 segments, 12.35 MB compactable, append-only, \
         lock free, policies alice-laptop admin"
    );
}

#[test]
fn the_line_says_what_is_missing_or_unknown() {
    let bare = RepositoryStatus {
        path: PathBuf::from("/srv/b\nroken"),
        last_commit: None,
        size_bytes: 999,
        quota_bytes: None,
        quota_used_bytes: None,
        segments: Some(1),
        compactable_bytes: None,
        append_only: Some(false),
        lock: LockState::free(),
        policies: vec![],
        problems: vec![
            "hints.3: hints file is malformed".into(),
            "two\nlines".into(),
        ],
    };
    assert_eq!(
        line(&bare, now()),
        "/srv/b\\nroken: no commit, 999 B on disk, no quota, 1 segment, compactable unknown, \
         not append-only, lock free, no policy; problems: hints.3: hints file is malformed; two\\nlines"
    );
    let unreadable = RepositoryStatus {
        segments: None,
        append_only: None,
        quota_used_bytes: Some(2_000),
        ..bare.clone()
    };
    let text = line(&unreadable, now());
    assert!(text.contains(": last commit unknown, "), "{text}");
    assert!(
        text.contains(", no quota (2.00 kB counted), segments unknown, "),
        "{text}"
    );
    assert!(text.contains(", append-only unknown, "), "{text}");
    let quota_only = RepositoryStatus {
        quota_bytes: Some(10_000_000),
        ..bare
    };
    assert!(line(&quota_only, now()).contains(", quota 10.00 MB (use unknown), "));
}

#[test]
fn the_lock_says_who_holds_it_and_whether_they_run() {
    let lock = LockState {
        state: LockSummary::Held,
        holders: vec![
            LockHolder {
                mode: HoldMode::Exclusive,
                host: "vm@3281355014145".into(),
                pid: Some(10228),
                alive: Some(true),
            },
            LockHolder {
                mode: HoldMode::Shared,
                host: "far".into(),
                pid: Some(7),
                alive: None,
            },
        ],
    };
    assert_eq!(
        lock_text(&lock),
        "held (exclusive by vm@3281355014145:10228, running; shared by far:7, on another host)"
    );
    let stale = LockState {
        state: LockSummary::Stale,
        holders: vec![LockHolder {
            mode: HoldMode::Exclusive,
            host: "vm".into(),
            pid: Some(4242),
            alive: Some(false),
        }],
    };
    assert_eq!(lock_text(&stale), "stale (exclusive by vm:4242, dead)");
    let malformed = LockState {
        state: LockSummary::Held,
        holders: vec![LockHolder {
            mode: HoldMode::Exclusive,
            host: "junk\n".into(),
            pid: None,
            alive: None,
        }],
    };
    assert_eq!(
        lock_text(&malformed),
        "held (exclusive by malformed lock \"junk\\n\", check it by hand)"
    );
    assert!(
        line(
            &RepositoryStatus {
                lock: stale,
                ..sample()
            },
            now()
        )
        .contains(", lock stale (exclusive by vm:4242, dead), policies ")
    );
}

#[test]
fn json_has_the_documented_keys_in_order() {
    assert_eq!(
        json(&sample(), now()),
        r#"{"path":"/srv/backup/alice/laptop","last_commit":"2026-12-06T21:39:32Z","age_s":25924,"size_bytes":1234567890,"quota_bytes":50000000000,"quota_used_bytes":1100000000,"segments":12,"compactable_bytes":12345678,"append_only":true,"lock":{"state":"free","holders":[]},"policies":["alice-laptop","admin"],"transaction_id":41,"problems":[]}"#
    );
    let empty = RepositoryStatus {
        last_commit: None,
        quota_bytes: None,
        quota_used_bytes: None,
        segments: None,
        compactable_bytes: None,
        append_only: None,
        lock: LockState {
            state: LockSummary::Stale,
            holders: vec![LockHolder {
                mode: HoldMode::Shared,
                host: "h".into(),
                pid: Some(3),
                alive: Some(false),
            }],
        },
        policies: vec![],
        problems: vec!["config: no".into()],
        ..sample()
    };
    let value: serde_json::Value = serde_json::from_str(&json(&empty, now())).unwrap();
    assert_eq!(
        value,
        serde_json::json!({
            "path": "/srv/backup/alice/laptop", "last_commit": null, "age_s": null,
            "size_bytes": 1234567890u64, "quota_bytes": null, "quota_used_bytes": null,
            "segments": null, "compactable_bytes": null, "append_only": null,
            "lock": {"state": "stale", "holders": [{"mode": "shared", "host": "h", "pid": 3, "alive": false}]},
            "policies": [], "transaction_id": null, "problems": ["config: no"],
        })
    );
}

#[test]
fn gauges_have_one_series_per_repository_and_escape_the_path() {
    let mut gauges = Gauges::new();
    gauges.add_repository(&sample());
    let odd = RepositoryStatus {
        path: PathBuf::from("/srv/we\"ird\\na\nme"),
        last_commit: None,
        quota_bytes: None,
        quota_used_bytes: None,
        segments: None,
        compactable_bytes: None,
        append_only: None,
        lock: LockState {
            state: LockSummary::Held,
            holders: vec![],
        },
        problems: vec!["a".into(), "b".into()],
        ..sample()
    };
    gauges.add_repository(&odd);
    gauges.add_policy("alice-laptop", 1);
    gauges.add_policy("idle", 0);
    let text = gauges.render(at(COMMITTED + 60));
    let expected = r#"# HELP borg_gate_repository_last_commit_timestamp_seconds Unix time of the repository's newest commit; 0 when it has none. From borg-gate status (label repository) and from the engine's sessions (labels repository and policy).
# TYPE borg_gate_repository_last_commit_timestamp_seconds gauge
borg_gate_repository_last_commit_timestamp_seconds{repository="/srv/backup/alice/laptop"} 1796593172
borg_gate_repository_last_commit_timestamp_seconds{repository="/srv/we\"ird\\na\nme"} 0
# HELP borg_gate_repository_size_bytes Disk usage of the repository directory, as du counts it (borg-gate status).
# TYPE borg_gate_repository_size_bytes gauge
borg_gate_repository_size_bytes{repository="/srv/backup/alice/laptop"} 1234567890
borg_gate_repository_size_bytes{repository="/srv/we\"ird\\na\nme"} 1234567890
# HELP borg_gate_repository_quota_bytes The storage quota clients of the repository work under (status: the smallest; engine: the session's); absent without a quota.
# TYPE borg_gate_repository_quota_bytes gauge
borg_gate_repository_quota_bytes{repository="/srv/backup/alice/laptop"} 50000000000
# HELP borg_gate_repository_quota_used_bytes Bytes counted against the storage quota (borg's storage_quota_use in the hints).
# TYPE borg_gate_repository_quota_used_bytes gauge
borg_gate_repository_quota_used_bytes{repository="/srv/backup/alice/laptop"} 1100000000
# HELP borg_gate_repository_segments Non-empty segment files in the repository.
# TYPE borg_gate_repository_segments gauge
borg_gate_repository_segments{repository="/srv/backup/alice/laptop"} 12
# HELP borg_gate_repository_compactable_bytes Bytes borg compact could free, from the hints' compact map.
# TYPE borg_gate_repository_compactable_bytes gauge
borg_gate_repository_compactable_bytes{repository="/srv/backup/alice/laptop"} 12345678
# HELP borg_gate_repository_append_only 1 when no client can delete: the repository is append-only, or every policy that reaches it forces append-only.
# TYPE borg_gate_repository_append_only gauge
borg_gate_repository_append_only{repository="/srv/backup/alice/laptop"} 1
# HELP borg_gate_repository_lock_held 1 while the repository lock is held by a running process or one on another host.
# TYPE borg_gate_repository_lock_held gauge
borg_gate_repository_lock_held{repository="/srv/backup/alice/laptop"} 0
borg_gate_repository_lock_held{repository="/srv/we\"ird\\na\nme"} 1
# HELP borg_gate_repository_lock_stale 1 when the repository lock is held only by dead processes on this host.
# TYPE borg_gate_repository_lock_stale gauge
borg_gate_repository_lock_stale{repository="/srv/backup/alice/laptop"} 0
borg_gate_repository_lock_stale{repository="/srv/we\"ird\\na\nme"} 0
# HELP borg_gate_repository_problems Things status could not read in the repository; 0 when it read everything.
# TYPE borg_gate_repository_problems gauge
borg_gate_repository_problems{repository="/srv/backup/alice/laptop"} 0
borg_gate_repository_problems{repository="/srv/we\"ird\\na\nme"} 2
# HELP borg_gate_status_policy_repositories Repositories the policy reaches, by policy; 0 means its clients have no repository yet.
# TYPE borg_gate_status_policy_repositories gauge
borg_gate_status_policy_repositories{policy="alice-laptop"} 1
borg_gate_status_policy_repositories{policy="idle"} 0
# HELP borg_gate_status_repositories Repositories borg-gate status found in its last run.
# TYPE borg_gate_status_repositories gauge
borg_gate_status_repositories 2
# HELP borg_gate_status_timestamp_seconds Unix time of the borg-gate status run that wrote this file.
# TYPE borg_gate_status_timestamp_seconds gauge
borg_gate_status_timestamp_seconds 1796593232
"#;
    assert_eq!(text, expected);
}

#[test]
fn an_empty_run_still_writes_every_family_and_the_count() {
    let mut defaulted = Gauges::default();
    defaulted.add_policy("p", 0);
    assert!(
        defaulted
            .render(at(5))
            .contains("\nborg_gate_status_policy_repositories{policy=\"p\"} 0\n")
    );
    let text = Gauges::new().render(at(5));
    for family in GAUGES {
        let name = family.name;
        assert!(text.contains(&format!("# TYPE {name} gauge\n")), "{name}");
    }
    assert!(text.contains("\nborg_gate_status_repositories 0\n"));
    assert!(text.ends_with("\nborg_gate_status_timestamp_seconds 5\n"));
}
