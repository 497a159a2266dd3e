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

const TMPFS_SIZE: &str = "20m";

/// A tmpfs mounted on a fresh temp dir, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        support::require_root()?;
        let mount = support::require_tool("mount")?;
        let tmpfs = Tmpfs {
            dir: support::temp_dir("tmpfs"),
        };
        let mut command = Command::new(mount);
        command
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(tmpfs.dir.path());
        support::run_with_timeout(command, Duration::from_secs(30)).assert_success();
        Some(tmpfs)
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmount = |lazy: bool| {
            let mut command = Command::new("umount");
            if lazy {
                command.arg("-l");
            }
            command
                .arg(self.dir.path())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !unmount(false) {
            // Something (a killed engine's descendant?) still uses it: detach it anyway.
            let _ = unmount(true);
        }
    }
}

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
