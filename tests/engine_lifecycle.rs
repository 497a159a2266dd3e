//! The repository lifecycle through the engine, with real borg clients and real files:
//! compaction that really gives space back, append-only mode that never rewrites or removes
//! a segment (and borg's documented rollback on top of it), storage quotas, and check and
//! repair of damaged segments, each compared with what borg 1.4.5 itself does.

mod lifecycle;
mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use lifecycle::{
    PASSPHRASE, Site, data_bytes_on_disk, hinted_quota_use, logged_transactions, segment_files,
    write_random,
};
use support::BorgClient;

const ENGINE: &[&str] = &["--restrict-to-path", "{repos}"];
const MB: u64 = 1_000_000;

fn repo_text(site: &Site, name: &str) -> String {
    site.repo(name).to_str().unwrap().to_owned()
}

/// Snapshots `source/` as it is now (what the next archive will hold).
fn snapshot(site: &Site, name: &str) -> std::path::PathBuf {
    let target = site.path(&format!("snapshot-{name}"));
    lifecycle::copy_tree(&site.source(), &target);
    target
}

// ---------------------------------------------------------------------------------------
// Compaction

#[test]
fn delete_prune_and_compact_give_the_space_back_and_borg_checks_clean() {
    for client in support::borg_clients() {
        let site = Site::new("compact", ENGINE);
        let url = site.url("repo");
        let repo = site.repo("repo");
        site.borg(&client, &["init", "--encryption", "none", &url])
            .assert_success();
        site.borg(&client, &["create", &site.archive("repo", "base"), "."])
            .assert_success();
        write_random(&site.source().join("big.bin"), 11, 6_000_000);
        site.borg(&client, &["create", &site.archive("repo", "big"), "."])
            .assert_success();
        fs::remove_file(site.source().join("big.bin")).unwrap();
        fs::write(site.source().join("small.txt"), b"later\n").unwrap();
        let later = snapshot(&site, "later");
        site.borg(&client, &["create", &site.archive("repo", "later"), "."])
            .assert_success();

        site.borg(&client, &["delete", &site.archive("repo", "big")])
            .assert_success();
        let before = data_bytes_on_disk(&repo);
        site.borg(&client, &["compact", &url]).assert_success();
        let after = data_bytes_on_disk(&repo);
        assert!(
            before.saturating_sub(after) >= 5_700_000,
            "{}: compact freed only {} bytes ({before} -> {after})",
            client.label,
            before.saturating_sub(after)
        );

        // prune, then compact: three archives with a unique 2 MB file each, keep the last.
        for n in 0..3 {
            write_random(&site.source().join("rotating.bin"), 100 + n, 2_000_000);
            site.borg(
                &client,
                &["create", &site.archive("repo", &format!("p{n}")), "."],
            )
            .assert_success();
        }
        let kept = snapshot(&site, "p2");
        site.borg(
            &client,
            &["prune", "--keep-last", "1", "--glob-archives", "p*", &url],
        )
        .assert_success();
        let before = data_bytes_on_disk(&repo);
        site.borg(&client, &["compact", "--cleanup-commits", &url])
            .assert_success();
        let after = data_bytes_on_disk(&repo);
        assert!(
            before.saturating_sub(after) >= 3_800_000,
            "{}: prune + compact freed only {} bytes",
            client.label,
            before.saturating_sub(after)
        );
        // --cleanup-commits: no segment holding nothing but a commit, except the newest.
        let commit_only: Vec<String> = segment_files(&repo)
            .into_iter()
            .filter(|(_, (len, _))| *len == 17)
            .map(|(name, _)| name)
            .collect();
        assert!(commit_only.len() <= 1, "{commit_only:?}");

        let list = site.borg(&client, &["list", "--short", &url]);
        assert_eq!(list.stdout_text(), "base\nlater\np2\n", "{list}");
        site.assert_extracts(&client, "repo", "later", &later);
        site.assert_extracts(&client, "repo", "p2", &kept);
        for local in support::borg_clients() {
            local
                .run(
                    &["check", "--verify-data", &repo_text(&site, "repo")],
                    &[],
                    Some(PASSPHRASE),
                )
                .assert_success();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Append-only

/// Every segment file seen so far, by name, with length and hash; fails if one changed or
/// vanished since it was first seen.
#[derive(Default)]
struct SegmentLedger(BTreeMap<String, (u64, u64)>);

impl SegmentLedger {
    #[track_caller]
    fn record(&mut self, repo: &Path, step: &str) {
        let now = segment_files(repo);
        for (name, seen) in &self.0 {
            assert_eq!(
                now.get(name),
                Some(seen),
                "after {step}: segment {name} changed or vanished"
            );
        }
        self.0.extend(now);
    }
}

#[test]
fn append_only_keeps_every_segment_and_borgs_rollback_restores_deleted_archives() {
    let client = support::require!(support::borg14());
    let site = Site::new(
        "append-only",
        &["--restrict-to-path", "{repos}", "--append-only"],
    );
    let url = site.url("repo");
    let repo = site.repo("repo");
    let mut ledger = SegmentLedger::default();
    // borg init through an append-only key makes a repository that is not append-only.
    site.borg(&client, &["init", "--encryption", "repokey", &url])
        .assert_success();
    let config = fs::read_to_string(repo.join("config")).unwrap();
    assert!(config.contains("append_only = 0"), "{config}");
    ledger.record(&repo, "init");

    let snapshot_a = snapshot(&site, "a");
    site.borg(&client, &["create", &site.archive("repo", "a"), "."])
        .assert_success();
    ledger.record(&repo, "create a");
    write_random(&site.source().join("b.bin"), 21, 1_500_000);
    site.borg(&client, &["create", &site.archive("repo", "b"), "."])
        .assert_success();
    ledger.record(&repo, "create b");
    write_random(&site.source().join("c.bin"), 22, 1_500_000);
    site.borg(&client, &["create", &site.archive("repo", "c"), "."])
        .assert_success();
    ledger.record(&repo, "create c");
    let good = *logged_transactions(&repo).last().unwrap();

    // The attack: delete, prune, compact, and a repair attempt.
    site.borg(&client, &["delete", &site.archive("repo", "a")])
        .assert_success();
    ledger.record(&repo, "delete a");
    site.borg(&client, &["prune", "--keep-last", "1", &url])
        .assert_success();
    ledger.record(&repo, "prune");
    site.borg(&client, &["compact", &url]).assert_success();
    ledger.record(&repo, "compact");
    let repair = client.run_in(
        &site.source(),
        &["check", "--repair", &url],
        &[
            ("BORG_RSH", site.env()[0].1),
            ("BORG_CHECK_I_KNOW_WHAT_I_AM_DOING", "YES"),
        ],
        Some(PASSPHRASE),
    );
    repair
        .assert_failure()
        .assert_stderr_contains("is in append-only mode");
    ledger.record(&repo, "check --repair");
    let list = site.borg(&client, &["list", "--short", &url]);
    assert_eq!(list.stdout_text(), "c\n", "{list}");

    // The transactions log: one line per commit of an append-only session, as borg writes it.
    let transactions = logged_transactions(&repo);
    assert!(transactions.len() >= 6, "{transactions:?}");
    assert!(
        transactions.windows(2).all(|w| w[0] < w[1]),
        "{transactions:?}"
    );
    let stamps = fs::read_to_string(repo.join("transactions")).unwrap();
    for line in stamps.lines() {
        let stamp = line.split_once(", UTC time ").unwrap().1;
        // %Y-%m-%dT%H:%M:%S.%f
        assert_eq!(stamp.len(), 26, "{line:?}");
        assert_eq!(&stamp[10..11], "T", "{line:?}");
        assert_eq!(&stamp[19..20], ".", "{line:?}");
    }

    // borg's documented rollback: drop the index files and every segment after transaction
    // `good`, then clear the client's view of the repository.
    for entry in fs::read_dir(&repo).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if ["hints.", "index.", "integrity."]
            .iter()
            .any(|p| name.starts_with(p))
        {
            fs::remove_file(repo.join(name)).unwrap();
        }
    }
    for number in lifecycle::segment_numbers(&repo) {
        if number > good {
            fs::remove_file(repo.join("data/0").join(number.to_string())).unwrap();
        }
    }
    let fresh = support::borg14().unwrap();
    let list = fresh.run(&["list", "--short", &url], &site.env(), Some(PASSPHRASE));
    assert_eq!(list.stdout_text(), "a\nb\nc\n", "{list}");
    site.assert_extracts(&fresh, "repo", "a", &snapshot_a);
    fresh
        .run(&["check", &repo_text(&site, "repo")], &[], Some(PASSPHRASE))
        .assert_success();
    // And the repository goes on: a new backup through the append-only key.
    fresh
        .run_in(
            &site.source(),
            &["create", &site.archive("repo", "d"), "."],
            &site.env(),
            Some(PASSPHRASE),
        )
        .assert_success();
}

#[test]
fn init_append_only_makes_an_append_only_repository_whatever_the_key() {
    let client = support::require!(support::borg14());
    let site = Site::new("append-only-init", ENGINE);
    let url = site.url("repo");
    let repo = site.repo("repo");
    site.borg(
        &client,
        &["init", "--encryption", "none", "--append-only", &url],
    )
    .assert_success();
    let config = fs::read_to_string(repo.join("config")).unwrap();
    assert!(config.contains("append_only = 1"), "{config}");
    let mut ledger = SegmentLedger::default();
    site.borg(&client, &["create", &site.archive("repo", "a"), "."])
        .assert_success();
    ledger.record(&repo, "create");
    site.borg(&client, &["delete", &site.archive("repo", "a")])
        .assert_success();
    ledger.record(&repo, "delete");
    site.borg(&client, &["compact", &url]).assert_success();
    ledger.record(&repo, "compact");
    // init (as borg does for `init --append-only`), create, delete, compact.
    assert_eq!(logged_transactions(&repo).len(), 4);

    // Switched off in the config (borg config is local-only), compaction works again.
    client
        .run(
            &["config", &repo_text(&site, "repo"), "append_only", "0"],
            &[],
            None,
        )
        .assert_success();
    let before = data_bytes_on_disk(&repo);
    site.borg(&client, &["compact", &url]).assert_success();
    assert!(data_bytes_on_disk(&repo) + 2_000_000 < before);
}

// ---------------------------------------------------------------------------------------
// Storage quota and free space

/// Sets an option in the repository config with local borg.
fn set_config(client: &BorgClient, site: &Site, name: &str, value: &str) {
    client
        .run(
            &["config", &repo_text(site, "repo"), name, value],
            &[],
            Some(PASSPHRASE),
        )
        .assert_success();
}

#[test]
fn a_backup_over_the_quota_fails_with_borgs_message_and_changes_nothing() {
    let client = support::require!(support::borg14());
    let site = Site::new("quota", ENGINE);
    let url = site.url("repo");
    let repo = site.repo("repo");
    site.borg(&client, &["init", "--encryption", "none", &url])
        .assert_success();
    set_config(&client, &site, "storage_quota", "12M");
    let first = snapshot(&site, "first");
    site.borg(&client, &["create", &site.archive("repo", "first"), "."])
        .assert_success();
    let use_before = hinted_quota_use(&repo);
    assert!(use_before > 2 * MB, "{use_before}");

    write_random(&site.source().join("huge.bin"), 31, 15_000_000);
    site.borg(&client, &["create", &site.archive("repo", "huge"), "."])
        .assert_failure()
        .assert_stderr_contains("The storage quota (12.00 MB) has been exceeded (")
        .assert_stderr_contains("Try deleting some archives.");
    assert_eq!(
        hinted_quota_use(&repo),
        use_before,
        "the failed backup was counted"
    );
    let list = site.borg(&client, &["list", "--short", &url]);
    assert_eq!(list.stdout_text(), "first\n", "{list}");
    site.assert_extracts(&client, "repo", "first", &first);
    site.local(&client, &["check", &repo_text(&site, "repo")])
        .assert_success();

    // The forced quota overrides the repository's, both ways.
    let generous = site.key(
        "generous",
        &["--restrict-to-path", "{repos}", "--storage-quota=1G"],
    );
    site.borg_via(
        &generous,
        &client,
        &site.source(),
        &["create", &site.archive("repo", "huge"), "."],
    )
    .assert_success();
    fs::remove_file(site.source().join("huge.bin")).unwrap();
    set_config(&client, &site, "storage_quota", "0");
    write_random(&site.source().join("other.bin"), 32, 11_000_000);
    let strict = site.key(
        "strict",
        &["--restrict-to-path", "{repos}", "--storage-quota=10M"],
    );
    site.borg_via(
        &strict,
        &client,
        &site.source(),
        &["create", &site.archive("repo", "other"), "."],
    )
    .assert_failure()
    .assert_stderr_contains("The storage quota (10.00 MB) has been exceeded (");
    site.local(&client, &["check", &repo_text(&site, "repo")])
        .assert_success();
}

#[test]
fn quota_use_in_hints_is_what_borg_counts_from_the_segments() {
    let client = support::require!(support::borg14());
    let site = Site::new("quota-use", ENGINE);
    let url = site.url("repo");
    let repo = site.repo("repo");
    site.borg(&client, &["init", "--encryption", "none", &url])
        .assert_success();
    for n in 0..3 {
        write_random(&site.source().join("r.bin"), 40 + n, 1_000_000);
        site.borg(
            &client,
            &["create", &site.archive("repo", &format!("a{n}")), "."],
        )
        .assert_success();
    }
    site.borg(&client, &["delete", &site.archive("repo", "a0")])
        .assert_success();
    site.borg(&client, &["compact", &url]).assert_success();
    site.borg(&client, &["delete", &site.archive("repo", "a1")])
        .assert_success();
    let ours = hinted_quota_use(&repo);
    // borg's count: replay every segment from scratch and write its own hints.
    let copy = site.path("replayed");
    lifecycle::copy_tree(&repo, &copy);
    for entry in fs::read_dir(&copy).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if ["hints.", "index.", "integrity."]
            .iter()
            .any(|p| name.starts_with(p))
        {
            fs::remove_file(copy.join(name)).unwrap();
        }
    }
    client
        .run(&["list", copy.to_str().unwrap()], &[], None)
        .assert_success();
    assert_eq!(ours, hinted_quota_use(&copy));
}

#[test]
fn additional_free_space_is_checked_before_a_commit() {
    let client = support::require!(support::borg14());
    let site = Site::new("free-space", ENGINE);
    let url = site.url("repo");
    site.borg(&client, &["init", "--encryption", "none", &url])
        .assert_success();
    let first = snapshot(&site, "first");
    site.borg(&client, &["create", &site.archive("repo", "first"), "."])
        .assert_success();
    set_config(&client, &site, "additional_free_space", "1000T");
    write_random(&site.source().join("more.bin"), 51, 500_000);
    site.borg(&client, &["create", &site.archive("repo", "second"), "."])
        .assert_failure()
        .assert_stderr_contains("Insufficient free space to complete transaction (required: ");
    set_config(&client, &site, "additional_free_space", "0");
    let list = site.borg(&client, &["list", "--short", &url]);
    assert_eq!(list.stdout_text(), "first\n", "{list}");
    site.assert_extracts(&client, "repo", "first", &first);
    site.local(&client, &["check", &repo_text(&site, "repo")])
        .assert_success();
    site.borg(&client, &["create", &site.archive("repo", "second"), "."])
        .assert_success();
}

// ---------------------------------------------------------------------------------------
// Check and repair

/// The lines of a check's output that report damage.
fn damage_lines(output: &support::CmdOutput) -> Vec<String> {
    output
        .stderr_text()
        .lines()
        .filter(|line| line.contains("[segment ") || line.contains("Index object count"))
        .map(|line| line.trim_start_matches("Remote: ").to_owned())
        .collect()
}

/// The largest segment of `repo` (where the file data is).
fn largest_segment(repo: &Path) -> std::path::PathBuf {
    let (name, _) = segment_files(repo)
        .into_iter()
        .max_by_key(|(_, (len, _))| *len)
        .unwrap();
    repo.join(name)
}

/// Damages a copy of a fresh repository with `damage`, then checks and repairs it through
/// the engine and, on a second copy, with borg 1.4.5 itself: both must report the same
/// damage, and both repairs must give the same index and the same segment files.
fn damage_check_and_repair(label: &str, damage: impl Fn(&Path)) {
    let client = support::require!(support::borg14());
    let site = Site::new(label, ENGINE);
    let url = site.url("repo");
    site.borg(&client, &["init", "--encryption", "none", &url])
        .assert_success();
    site.borg(&client, &["create", &site.archive("repo", "a"), "."])
        .assert_success();
    damage(&largest_segment(&site.repo("repo")));
    let borgs_copy = site.repo("borgs-copy");
    lifecycle::copy_tree(&site.repo("repo"), &borgs_copy);
    let borgs_copy_text = borgs_copy.to_str().unwrap();
    let repair_env = [("BORG_CHECK_I_KNOW_WHAT_I_AM_DOING", "YES")];

    let ours = site.borg(&client, &["check", "--repository-only", &url]);
    let borgs = client.run(&["check", "--repository-only", borgs_copy_text], &[], None);
    assert_eq!(ours.code(), Some(1), "{ours}");
    assert_eq!(borgs.code(), Some(1), "{borgs}");
    assert!(!damage_lines(&ours).is_empty(), "{ours}");
    assert_eq!(damage_lines(&ours), damage_lines(&borgs), "{ours}\n{borgs}");

    let mut env = site.env();
    env.extend(repair_env);
    client
        .run_in(
            &site.source(),
            &["check", "--repair", "--repository-only", &url],
            &env,
            None,
        )
        .assert_success();
    client
        .run(
            &["check", "--repair", "--repository-only", borgs_copy_text],
            &repair_env,
            None,
        )
        .assert_success();
    assert_eq!(
        lifecycle::borg_index_ids(&client, &site.repo("repo")),
        lifecycle::borg_index_ids(&client, &borgs_copy),
        "the engine's repair and borg's kept different objects"
    );
    assert_eq!(
        segment_files(&site.repo("repo")),
        segment_files(&borgs_copy),
        "the engine's repair and borg's left different segments"
    );
    site.borg(&client, &["check", "--repository-only", &url])
        .assert_success();
    client
        .run(
            &["check", "--repository-only", &repo_text(&site, "repo")],
            &[],
            None,
        )
        .assert_success();
}

#[test]
fn a_flipped_byte_is_found_and_repaired_as_borg_does() {
    damage_check_and_repair("check-crc", |segment| {
        let mut bytes = fs::read(segment).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        fs::write(segment, bytes).unwrap();
    });
}

#[test]
fn a_truncated_segment_is_found_and_salvaged_as_borg_does() {
    damage_check_and_repair("check-truncated", |segment| {
        let len = fs::metadata(segment).unwrap().len();
        let file = fs::OpenOptions::new().write(true).open(segment).unwrap();
        file.set_len(len * 2 / 3).unwrap();
    });
}

#[test]
fn a_corrupt_index_is_rebuilt_by_the_engine() {
    let client = support::require!(support::borg14());
    let site = Site::new("check-index", ENGINE);
    let url = site.url("repo");
    let repo = site.repo("repo");
    site.borg(&client, &["init", "--encryption", "none", &url])
        .assert_success();
    let a = snapshot(&site, "a");
    site.borg(&client, &["create", &site.archive("repo", "a"), "."])
        .assert_success();
    let index = fs::read_dir(&repo)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("index.")
        })
        .unwrap();
    let mut bytes = fs::read(&index).unwrap();
    let last = bytes.len() - 100;
    bytes[last] ^= 0xff;
    fs::write(&index, bytes).unwrap();
    site.assert_extracts(&client, "repo", "a", &a);
    site.local(&client, &["check", &repo_text(&site, "repo")])
        .assert_success();
}

/// Runs a partial check through the engine of `rsh`, slowing the engine down (SIGSTOP and
/// SIGCONT in turn) so that the one-second budget runs out after a few segments.
fn slowed_partial_check(
    site: &Site,
    client: &BorgClient,
    rsh: &str,
    pid_of: &dyn Fn() -> Option<i32>,
) -> String {
    let previous = pid_of();
    let log = site.path("partial.log");
    let file = fs::File::create(&log).unwrap();
    let mut command = client.command(
        &site.source(),
        &[
            "check",
            "--info",
            "--repository-only",
            "--max-duration",
            "1",
            &site.url("repo"),
        ],
        &[("BORG_RSH", rsh)],
        None,
    );
    command.stdout(file.try_clone().unwrap()).stderr(file);
    let mut child = command.spawn().unwrap();
    let engine = support::wait_for(Duration::from_secs(60), || {
        pid_of().filter(|pid| Some(*pid) != previous)
    })
    .expect("the check started no engine");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        let _ = kill(Pid::from_raw(engine), Signal::SIGSTOP);
        std::thread::sleep(Duration::from_millis(250));
        let _ = kill(Pid::from_raw(engine), Signal::SIGCONT);
        std::thread::sleep(Duration::from_millis(3));
    }
    let _ = kill(Pid::from_raw(engine), Signal::SIGCONT);
    let status = child.wait().unwrap();
    let text = fs::read_to_string(&log).unwrap();
    assert!(status.success(), "partial check failed:\n{text}");
    text
}

fn last_checked(repo: &Path) -> Option<u32> {
    fs::read_to_string(repo.join("config"))
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("last_segment_checked = "))
        .map(|n| n.trim().parse().unwrap())
}

#[test]
fn partial_checks_continue_where_the_last_one_stopped_and_borg_agrees() {
    let client = support::require!(support::borg14());
    let site = Site::new("check-partial", ENGINE);
    let url = site.url("repo");
    let repo = site.repo("repo");
    site.borg(&client, &["init", "--encryption", "none", &url])
        .assert_success();
    // Small segments, so there are many to check.
    set_config(&client, &site, "max_segment_size", "262144");
    write_random(&site.source().join("bulk.bin"), 61, 8_000_000);
    site.borg(
        &client,
        &[
            "create",
            "--chunker-params",
            "fixed,65536",
            &site.archive("repo", "a"),
            ".",
        ],
    )
    .assert_success();
    let segments = lifecycle::segment_numbers(&repo);
    assert!(segments.len() > 30, "{segments:?}");
    let pid = || site.engine_pid();
    let rsh = site.env()[0].1.to_owned();

    let first = slowed_partial_check(&site, &client, &rsh, &pid);
    assert!(first.contains("skipping to segments >= 0"), "{first}");
    let stopped = last_checked(&repo).unwrap_or_else(|| panic!("no continuation:\n{first}"));
    assert!(
        first.contains(&format!(
            "finished partial segment check, last segment checked is {stopped}"
        )),
        "{first}"
    );
    assert!(stopped < *segments.last().unwrap());

    // borg 1.4.5 continues from our continuation point.
    let borgs = client.run(
        &[
            "check",
            "--info",
            "--repository-only",
            "--max-duration",
            "3600",
            &repo_text(&site, "repo"),
        ],
        &[],
        None,
    );
    borgs
        .assert_success()
        .assert_stderr_contains(&format!("skipping to segments >= {}", stopped + 1));
    assert_eq!(last_checked(&repo), None, "{borgs}");

    // A read-only key checks partially too, but records nothing.
    let second = slowed_partial_check(&site, &client, &rsh, &pid);
    let stopped = last_checked(&repo).expect("a second partial stop");
    assert!(second.contains("skipping to segments >= 0"), "{second}");
    let read_only = site.key(
        "read-only",
        &["--restrict-to-path", "{repos}", "--permissions=read-only"],
    );
    let config_before = fs::read(repo.join("config")).unwrap();
    let ro_pid = || site.key_engine_pid("read-only");
    let third = slowed_partial_check(&site, &client, &read_only, &ro_pid);
    assert!(
        third.contains(&format!("skipping to segments >= {}", stopped + 1)),
        "{third}"
    );
    assert_eq!(
        fs::read(repo.join("config")).unwrap(),
        config_before,
        "a read-only key changed the config:\n{third}"
    );

    // Partial checks through the engine reach the end and clear the continuation point.
    let mut rounds = 0;
    while last_checked(&repo).is_some() {
        rounds += 1;
        assert!(rounds < 60, "partial checks never finished");
        let output = site.borg(
            &client,
            &[
                "check",
                "--info",
                "--repository-only",
                "--max-duration",
                "1",
                &url,
            ],
        );
        output.assert_success();
    }
    site.borg(&client, &["check", &url]).assert_success();
}

// ---------------------------------------------------------------------------------------
// Progress

/// The server's progress records as a `--progress --log-json` client re-emits them, without
/// the fields that differ between runs (`time`, `operation`).
fn remote_progress(output: &support::CmdOutput) -> Vec<String> {
    output
        .stderr_text()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|record| {
            record["type"]
                .as_str()
                .is_some_and(|kind| kind.starts_with("progress_"))
                && record["msgid"]
                    .as_str()
                    .is_some_and(|msgid| msgid.starts_with("repository."))
        })
        .map(|record| {
            format!(
                "{} {} {} {}/{} finished={}",
                record["type"],
                record["msgid"],
                record["message"],
                record["current"],
                record["total"],
                record["finished"]
            )
        })
        .collect()
}

/// Runs the same compaction, index replay and check against the client's own `borg serve`
/// and against the engine: `--progress` shows the client the same server-side progress.
#[test]
fn compaction_replay_and_check_progress_reach_the_client_as_from_borg_serve() {
    for client in support::borg_clients() {
        let site = Site::new("progress", ENGINE);
        let python_rsh = site.path("python-rsh.sh");
        fs::write(&python_rsh, "#!/bin/sh\nshift\nexec \"$@\"\n").unwrap();
        fs::set_permissions(&python_rsh, fs::Permissions::from_mode(0o755)).unwrap();
        let python_rsh = python_rsh.to_str().unwrap().to_owned();
        let python_env = [
            ("BORG_RSH", python_rsh.as_str()),
            ("BORG_REMOTE_PATH", client.path.to_str().unwrap()),
        ];
        let mut seen: Vec<Vec<Vec<String>>> = Vec::new();
        for name in ["python", "engine"] {
            let run = |args: &[&str]| {
                if name == "python" {
                    client.run_in(&site.source(), args, &python_env, Some(PASSPHRASE))
                } else {
                    site.borg(&client, args)
                }
            };
            let url = site.url(name);
            run(&["init", "--encryption", "none", &url]).assert_success();
            run(&["create", &site.archive(name, "a1"), "."]).assert_success();
            write_random(&site.source().join("big.bin"), 7, 6_000_000);
            run(&["create", &site.archive(name, "a2"), "."]).assert_success();
            fs::remove_file(site.source().join("big.bin")).unwrap();
            run(&["delete", &site.archive(name, "a2")]).assert_success();

            let compact = run(&["compact", "--progress", "--log-json", &url]);
            compact.assert_success();
            lifecycle::remove_index(&site.repo(name));
            let replay = run(&["list", "--progress", "--log-json", &url]);
            replay.assert_success();
            let check = run(&[
                "check",
                "--repository-only",
                "--progress",
                "--log-json",
                &url,
            ]);
            check.assert_success();
            let records = vec![
                remote_progress(&compact),
                remote_progress(&replay),
                remote_progress(&check),
            ];
            for (what, list) in ["compact", "replay", "check"].iter().zip(&records) {
                assert!(
                    list.len() >= 3 && list.last().is_some_and(|l| l.ends_with("finished=true")),
                    "{}: {name} {what} progress: {list:#?}",
                    client.label
                );
            }
            seen.push(records);
        }
        assert_eq!(seen[0], seen[1], "{}: python serve vs engine", client.label);
    }
}
