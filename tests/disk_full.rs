//! A full disk: on a 20 MB tmpfs, backups that do not fit end with a clean error at the
//! client, the repository stays at its last commit (borg check passes, every committed
//! archive extracts identically), the space of the failed transaction is given back, and
//! the next backup that fits succeeds. Backups sized to run out of space at different
//! moments (during the puts, the commit, the index write) are all tried.

mod lifecycle;
mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lifecycle::{Site, write_random};
use support::Tmpfs;

const TMPFS_SIZE: &str = "20m";

fn free_bytes(path: &Path) -> u64 {
    let stats = nix::sys::statvfs::statvfs(path).unwrap();
    stats.blocks_available() * stats.fragment_size()
}

/// Committed archives with what they hold.
struct Ledger {
    archives: Vec<(String, PathBuf)>,
}

/// How much too large the backup is: `Some(margin)` leaves `margin` bytes less than the free
/// space for the file data (the space then runs out late: the last puts, the commit, the
/// index write); `None` is far too large (it runs out in the middle of the puts).
const ATTEMPTS: [Option<u64>; 6] = [
    None,
    Some(400_000),
    Some(150_000),
    Some(80_000),
    Some(40_000),
    Some(0),
];

#[test]
fn a_full_disk_gives_a_clean_error_and_loses_nothing_committed() {
    let tmpfs = support::require!(Tmpfs::mount(TMPFS_SIZE));
    let client = support::require!(support::borg14());
    let repos = tmpfs.path().join("repos");
    fs::create_dir(&repos).unwrap();
    let site = Site::with_repos_at("disk-full", &repos, &["--restrict-to-path", "{repos}"]);
    let mut outcomes = Vec::new();
    // A fresh repository for each attempt: on a file system this small, borg (and so the
    // engine) refuses every commit once ten segments have space to compact, because it then
    // wants room for a whole segment (500 MB) before committing.
    for (attempt, margin) in ATTEMPTS.into_iter().enumerate() {
        let url = site.url("repo");
        site.borg(&client, &["init", "--encryption", "none", &url])
            .assert_success();
        let mut ledger = Ledger {
            archives: Vec::new(),
        };
        create_and_record(&site, &client, &mut ledger, "first");
        let free = free_bytes(tmpfs.path());
        let size = match margin {
            None => free + 5_000_000,
            Some(margin) => free.saturating_sub(margin),
        };
        write_random(
            &site.source().join("big.bin"),
            attempt as u64,
            size as usize,
        );
        let snapshot = site.path(&format!("snapshot-big-{attempt}"));
        lifecycle::copy_tree(&site.source(), &snapshot);
        let output = site.borg(&client, &["create", &site.archive("repo", "big"), "."]);
        fs::remove_file(site.source().join("big.bin")).unwrap();
        let outcome = if output.success() {
            ledger.archives.push(("big".into(), snapshot));
            "committed".to_owned()
        } else {
            let stderr = output.stderr_text();
            assert!(
                stderr.contains("No space left on device")
                    || stderr.contains("Insufficient free space to complete transaction"),
                "{output}"
            );
            assert!(!stderr.contains("Traceback"), "{output}");
            let found = assert_consistent(&site, &client, &ledger, Some("big"));
            if let Some(found) = found {
                // The COMMIT was durable before the index write failed: committed after all
                // (borg's rule too; the client was told of the error).
                ledger.archives.push((found, snapshot));
                "error, but committed".to_owned()
            } else {
                // The failed transaction gave its space back.
                let given_back = free_bytes(tmpfs.path());
                assert!(
                    given_back + 100_000 >= free,
                    "attempt {attempt}: the failed transaction kept {} bytes",
                    free.saturating_sub(given_back)
                );
                first_line(&stderr)
            }
        };
        outcomes.push(format!("{margin:?}: {outcome}"));
        assert_consistent(&site, &client, &ledger, None);
        // A backup that fits still works.
        create_and_record(&site, &client, &mut ledger, "after");
        assert_consistent(&site, &client, &ledger, None);
        fs::remove_dir_all(site.repo("repo")).unwrap();
    }
    eprintln!("disk full outcomes: {outcomes:#?}");
    assert!(
        outcomes
            .iter()
            .filter(|o| !o.ends_with("committed"))
            .count()
            >= 3,
        "too few attempts ran out of space: {outcomes:?}"
    );
}

fn first_line(text: &str) -> String {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_owned()
}

fn create_and_record(site: &Site, client: &support::BorgClient, ledger: &mut Ledger, name: &str) {
    static SNAPSHOTS: AtomicUsize = AtomicUsize::new(0);
    let n = SNAPSHOTS.fetch_add(1, Ordering::Relaxed);
    let snapshot = site.path(&format!("snapshot-{name}-{n}"));
    lifecycle::copy_tree(&site.source(), &snapshot);
    site.borg(client, &["create", &site.archive("repo", name), "."])
        .assert_success();
    ledger.archives.push((name.to_owned(), snapshot));
}

/// borg check passes; the archives are the committed ones (plus perhaps `maybe`, whose
/// commit may have been durable before the error); the newest extracts identically.
/// Returns `maybe` if it turned out committed.
fn assert_consistent(
    site: &Site,
    client: &support::BorgClient,
    ledger: &Ledger,
    maybe: Option<&str>,
) -> Option<String> {
    let check = site.local(
        client,
        &["check", "--info", site.repo("repo").to_str().unwrap()],
    );
    assert!(check.success(), "borg check failed:\n{check}");
    let listed = lifecycle::analyzed_archives(&check);
    for (name, _) in &ledger.archives {
        assert!(listed.contains(name), "{name} was lost: {listed:?}");
    }
    for name in &listed {
        assert!(
            ledger.archives.iter().any(|(n, _)| n == name) || Some(name.as_str()) == maybe,
            "unexpected archive {name}"
        );
    }
    let found = maybe.filter(|m| listed.iter().any(|l| l == m));
    if found.is_none() {
        let (newest, snapshot) = ledger.archives.last().unwrap();
        site.assert_extracts(client, "repo", newest, snapshot);
    }
    found.map(str::to_owned)
}

/// A policy that answers the probe `true` and audits to `audit`.
fn probe_policy(dir: &Path, audit: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("probe.toml");
    fs::write(
        &path,
        format!(
            "version = 1\nname = \"full\"\n[client]\nallow_probe = true\n[repository]\n\
             restrict_to_paths = [\"/srv/backup\"]\n[audit]\nfile = \"{}\"\n",
            audit.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// `borg-gate audit FILE`'s text output.
fn audit_summary(audit: &Path) -> String {
    let mut command = Command::new(support::cargo_bin());
    command.arg("audit").arg(audit);
    let output = support::run_with_timeout(command, Duration::from_secs(60));
    output.assert_success();
    output.stdout_text()
}

/// Fills the file system of `dir` until a write fails for lack of space.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = fs::File::create(&path).unwrap();
    let block = vec![0x55u8; 4096];
    loop {
        match file.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) if error.raw_os_error() == Some(nix::libc::ENOSPC) => break,
            Err(error) => panic!("filling {}: {error}", path.display()),
        }
    }
    path
}

/// Issue 15: a short audit write (the disk filled up in the middle of a record) refuses the
/// session, as before, and leaves no fragment for the next record to be glued to; a fragment
/// that is already there (an older version, a crash) gets a line of its own; and
/// `borg-gate audit` skips and counts such lines. Checked on a real full tmpfs.
#[test]
fn a_short_audit_write_on_a_full_disk_keeps_the_log_line_aligned() {
    let tmpfs = support::require!(Tmpfs::mount("1m"));
    let etc = support::temp_dir("audit-full-policy");
    let audit = tmpfs.path().join("audit.jsonl");
    let policy = probe_policy(etc.path(), &audit);
    let probe = || {
        support::run_with_timeout(
            support::gate_as_sshd(&policy, "true"),
            Duration::from_secs(60),
        )
    };
    probe().assert_success();
    let record_len = fs::metadata(&audit).unwrap().len();
    // Leave room for only part of the next record in the file's last page, then fill the
    // file system: the next record's write(2) is then short.
    let room = record_len / 2;
    let pad = (4096 - room) - record_len - 1;
    let mut padded = fs::read(&audit).unwrap();
    padded.extend(std::iter::repeat_n(b' ', pad as usize));
    padded.push(b'\n');
    fs::write(&audit, &padded).unwrap();
    let filler = fill(tmpfs.path());
    let refused = probe();
    assert!(!refused.success(), "{refused}");
    assert!(
        refused.stderr_text().contains("cannot write the audit log"),
        "{refused}"
    );
    fs::remove_file(filler).unwrap();
    probe().assert_success();
    let text = fs::read_to_string(&audit).unwrap();
    assert!(text.ends_with('\n'), "{text:?}");
    let records: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    for line in &records {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "unreadable audit line {line:?}"
        );
    }
    assert_eq!(records.len(), 2, "{text:?}");
    let summary = audit_summary(&audit);
    assert!(summary.contains(": 2 records"), "{summary}");
    assert!(!summary.contains("malformed"), "{summary}");

    // A fragment left by something else: the next record starts on a line of its own.
    let mut fragment = fs::read(&audit).unwrap();
    fragment.extend_from_slice(&records[0].as_bytes()[..40]);
    fs::write(&audit, &fragment).unwrap();
    probe().assert_success();
    let text = fs::read_to_string(&audit).unwrap();
    let last = text.lines().last().unwrap();
    assert!(
        serde_json::from_str::<serde_json::Value>(last).is_ok(),
        "the record after a fragment is unreadable: {last:?}"
    );
    let summary = audit_summary(&audit);
    assert!(summary.contains(": 3 records"), "{summary}");
    assert!(summary.contains("1 malformed lines skipped"), "{summary}");
}
