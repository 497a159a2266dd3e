use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::admin::status::facts::{HoldMode, LockHolder, LockSummary};
use crate::engine::borg1::repository::config::new_repository_config;
use crate::engine::borg1::repository::hints::Hints;
use crate::engine::borg1::repository::segment::{COMMIT_ENTRY, MAGIC, put_header};

/// A repository borg's way: `data/0/0` with two PUTs, `data/0/1` with the final commit (mtime
/// 1000 s after the epoch), `hints.1` and an `index.1`.
fn repository(dir: &Path) -> ConfigFile {
    let config = new_repository_config(&[7; 32], false, 0);
    fs::write(dir.join("config"), config.to_text()).unwrap();
    fs::write(dir.join("README"), "This is a Borg Backup repository.\n").unwrap();
    fs::create_dir_all(dir.join("data/0")).unwrap();
    let mut first = MAGIC.to_vec();
    for id in [1u8, 2] {
        first.extend_from_slice(&put_header(&[id; 32], b"chunk").unwrap());
        first.extend_from_slice(b"chunk");
    }
    fs::write(dir.join("data/0/0"), first).unwrap();
    write_segment(dir, 1, &[MAGIC.as_slice(), &COMMIT_ENTRY].concat(), 1000);
    let hints = Hints {
        segments: BTreeMap::from([(0, 2), (1, 0)]),
        compact: BTreeMap::from([(1, 9), (0, 100)]),
        storage_quota_use: 92,
        shadow_index: Default::default(),
    };
    fs::write(dir.join("hints.1"), hints.encode()).unwrap();
    fs::write(dir.join("index.1"), [0u8; 1000]).unwrap();
    config
}

fn write_segment(dir: &Path, segment: u32, bytes: &[u8], mtime: u64) {
    let path = dir.join(format!("data/0/{segment}"));
    fs::write(&path, bytes).unwrap();
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(UNIX_EPOCH + Duration::from_secs(mtime))
        .unwrap();
}

fn read(dir: &Path, config: &ConfigFile) -> RepositoryFacts {
    let mut handle = Dir::open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
    read_repository(&mut handle, Ok(config), &|identity| {
        Some(identity.pid == i64::from(std::process::id()))
    })
}

/// What `du -s -B1` would say: every inode's blocks once.
fn disk_usage(path: &Path) -> u64 {
    fn walk(path: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
        let meta = fs::symlink_metadata(path).unwrap();
        let mut total = if seen.insert((meta.dev(), meta.ino())) {
            meta.blocks() * 512
        } else {
            0
        };
        if meta.is_dir() {
            for entry in fs::read_dir(path).unwrap() {
                total += walk(&entry.unwrap().path(), seen);
            }
        }
        total
    }
    walk(path, &mut HashSet::new())
}

#[test]
fn a_committed_repository_reads_completely() {
    let dir = tempfile::tempdir().unwrap();
    let config = repository(dir.path());
    let facts = read(dir.path(), &config);
    assert_eq!(facts.problems, Vec::<String>::new());
    assert_eq!(
        facts.commit,
        Some(Commit {
            transaction_id: 1,
            time: UNIX_EPOCH + Duration::from_secs(1000)
        })
    );
    assert_eq!(facts.segments, Some(2));
    assert_eq!(
        facts.hints,
        HintsFigures {
            quota_used_bytes: Some(92),
            compactable_bytes: Some(109),
        }
    );
    assert_eq!(facts.lock, LockState::free());
    assert_eq!(facts.size_bytes, disk_usage(dir.path()));
    let settings = facts.settings.unwrap();
    assert!(!settings.append_only);
    assert_eq!(settings.storage_quota, 0);
}

#[test]
fn a_transaction_in_progress_leaves_the_previous_commit_and_its_hints() {
    let dir = tempfile::tempdir().unwrap();
    let config = repository(dir.path());
    let mut in_progress = MAGIC.to_vec();
    in_progress.extend_from_slice(&put_header(&[9; 32], b"new").unwrap());
    in_progress.extend_from_slice(b"new");
    write_segment(dir.path(), 2, &in_progress, 5000);
    // A torn final commit in the next segment changes nothing either.
    write_segment(
        dir.path(),
        3,
        &[MAGIC.as_slice(), &COMMIT_ENTRY[..8]].concat(),
        6000,
    );
    let facts = read(dir.path(), &config);
    assert_eq!(facts.commit.map(|c| c.transaction_id), Some(1));
    assert_eq!(facts.segments, Some(4));
    assert_eq!(facts.hints.quota_used_bytes, Some(92));
    assert_eq!(facts.problems, Vec::<String>::new());
}

#[test]
fn the_newest_commit_reads_the_newest_hints_not_beyond_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = repository(dir.path());
    write_segment(
        dir.path(),
        4,
        &[MAGIC.as_slice(), &COMMIT_ENTRY].concat(),
        7000,
    );
    // Hints of an aborted later transaction, and no hints.4 yet (the commit is being written).
    fs::write(dir.path().join("hints.9"), b"\xc1").unwrap();
    let facts = read(dir.path(), &config);
    assert_eq!(facts.commit.map(|c| c.transaction_id), Some(4));
    assert_eq!(facts.hints.quota_used_bytes, Some(92));
}

#[test]
fn torn_or_oversized_or_missing_hints_are_problems_not_failures() {
    let dir = tempfile::tempdir().unwrap();
    let config = repository(dir.path());
    let whole = fs::read(dir.path().join("hints.1")).unwrap();
    fs::write(dir.path().join("hints.1"), &whole[..whole.len() / 2]).unwrap();
    let facts = read(dir.path(), &config);
    assert_eq!(facts.hints, HintsFigures::default());
    assert_eq!(facts.commit.map(|c| c.transaction_id), Some(1));
    assert_eq!(facts.problems.len(), 1, "{:?}", facts.problems);
    assert!(
        facts.problems[0].starts_with("hints.1: hints file is malformed"),
        "{:?}",
        facts.problems
    );

    File::create(dir.path().join("hints.1"))
        .unwrap()
        .set_len(MAX_HINTS_SIZE + 1)
        .unwrap();
    let facts = read(dir.path(), &config);
    assert_eq!(
        facts.problems,
        [format!(
            "hints.1: larger than the {MAX_HINTS_SIZE} bytes status reads"
        )]
    );

    fs::remove_file(dir.path().join("hints.1")).unwrap();
    nix::unistd::mkfifo(&dir.path().join("hints.1"), Mode::from_bits_truncate(0o600)).unwrap();
    let facts = read(dir.path(), &config);
    assert_eq!(
        facts.problems,
        ["no hints file for transaction 1; quota use and compactable space unknown"]
    );
}

#[test]
fn symlinks_inside_a_repository_are_reported_and_never_followed() {
    let outside = tempfile::tempdir().unwrap();
    let elsewhere = outside.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    let config = repository(&elsewhere);
    fs::write(outside.path().join("big"), vec![1u8; 1 << 20]).unwrap();

    let dir = tempfile::tempdir().unwrap();
    repository(dir.path());
    write_segment(dir.path(), 1, &[MAGIC.as_slice()].concat(), 1000);
    symlink(elsewhere.join("data/0/1"), dir.path().join("data/0/2")).unwrap();
    symlink(outside.path().join("big"), dir.path().join("hints.1.link")).unwrap();
    fs::remove_dir_all(dir.path().join("data/0")).unwrap();
    symlink(elsewhere.join("data/0"), dir.path().join("data/0")).unwrap();
    let facts = read(dir.path(), &config);
    assert_eq!(facts.commit, None);
    assert_eq!(facts.segments, Some(0));
    assert_eq!(facts.size_bytes, disk_usage(dir.path()));
    assert!(facts.size_bytes < 1 << 20);
    assert_eq!(
        facts.problems,
        [
            "data/0 is a symlink; status does not follow it",
            "hints.1.link is a symlink; status does not follow it",
        ]
    );
}

#[test]
fn hard_links_count_once_like_du() {
    let dir = tempfile::tempdir().unwrap();
    let config = repository(dir.path());
    fs::write(dir.path().join("data/0/0"), vec![3u8; 256 << 10]).unwrap();
    let before = read(dir.path(), &config).size_bytes;
    fs::hard_link(dir.path().join("data/0/0"), dir.path().join("copy")).unwrap();
    let after = read(dir.path(), &config);
    assert_eq!(after.size_bytes, before);
    assert_eq!(after.size_bytes, disk_usage(dir.path()));
}

#[test]
fn an_invalid_config_is_a_problem_and_leaves_the_rest_unknown() {
    let dir = tempfile::tempdir().unwrap();
    repository(dir.path());
    let mut config = new_repository_config(&[7; 32], true, 0);
    config
        .set("repository", "segments_per_dir", "many")
        .unwrap();
    let facts = read(dir.path(), &config);
    assert_eq!(facts.settings, None);
    assert_eq!((facts.segments, facts.commit), (None, None));
    assert_eq!(
        facts.problems,
        ["config: invalid literal for int() with base 10: 'many'"]
    );
    assert!(facts.size_bytes > 0);

    let mut handle = Dir::open(
        dir.path(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        Mode::empty(),
    )
    .unwrap();
    let facts = read_repository(
        &mut handle,
        Err("File contains no section headers."),
        &|_| None,
    );
    assert_eq!(
        facts.problems,
        ["config: File contains no section headers."]
    );
}

#[test]
fn the_lock_files_name_the_holders() {
    let dir = tempfile::tempdir().unwrap();
    let config = repository(dir.path());
    let me = i64::from(std::process::id());
    fs::create_dir(dir.path().join("lock.exclusive")).unwrap();
    fs::write(
        dir.path().join(format!("lock.exclusive/here@1.{me}-0")),
        b"",
    )
    .unwrap();
    fs::write(
        dir.path().join("lock.roster"),
        format!(r#"{{"exclusive": [["here@1", {me}, 0]], "shared": [["there@2", 5, 0]]}}"#),
    )
    .unwrap();
    let facts = read(dir.path(), &config);
    assert_eq!(facts.lock.state, LockSummary::Held);
    assert_eq!(
        facts.lock.holders,
        [
            LockHolder {
                mode: HoldMode::Exclusive,
                host: "here@1".into(),
                pid: Some(me),
                alive: Some(true),
            },
            LockHolder {
                mode: HoldMode::Shared,
                host: "there@2".into(),
                pid: Some(5),
                alive: Some(false),
            },
        ]
    );
    // A roster being rewritten in place reads as empty, as in borg.
    fs::write(dir.path().join("lock.roster"), b"{\"exclu").unwrap();
    assert_eq!(read(dir.path(), &config).lock.holders.len(), 1);
    assert_eq!(read(dir.path(), &config).problems, Vec::<String>::new());
}

#[test]
fn small_files_are_read_with_bounds_and_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("ten"), [1u8; 10]).unwrap();
    nix::unistd::mkfifo(&dir.path().join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
    symlink("ten", dir.path().join("link")).unwrap();
    let handle = Dir::open(
        dir.path(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        Mode::empty(),
    )
    .unwrap();
    assert_eq!(read_file(&handle, "ten", 10).unwrap(), [1u8; 10]);
    assert!(matches!(
        read_file(&handle, "ten", 9),
        Err(ReadError::TooLarge { limit: 9 })
    ));
    assert!(matches!(
        read_file(&handle, "fifo", 9),
        Err(ReadError::NotAFile)
    ));
    assert!(matches!(
        read_file(&handle, "link", 99),
        Err(ReadError::NotAFile)
    ));
    assert!(matches!(
        read_file(&handle, "gone", 9),
        Err(ReadError::Vanished)
    ));
    assert!(matches!(
        read_file(&handle, "nul\0", 9),
        Err(ReadError::NotAFile)
    ));
}

#[test]
fn files_vanishing_mid_read_make_it_read_again_and_are_never_reported() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let config = repository(dir.path());
    let root = dir.path();
    let commit_only = [MAGIC.as_slice(), &COMMIT_ENTRY].concat();
    let mut uncommitted = MAGIC.to_vec();
    uncommitted.extend_from_slice(&put_header(&[9; 32], b"new").unwrap());
    uncommitted.extend_from_slice(b"new");
    let hints = fs::read(root.join("hints.1")).unwrap();
    let stop = AtomicBool::new(false);
    let cycles = AtomicUsize::new(0);
    let (mut reads, mut raced) = (0, 0);
    std::thread::scope(|scope| {
        // A writer committing transaction 2 and compaction taking it away again, with a
        // transaction in progress in a new directory, as fast as it can.
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                fs::write(root.join("data/0/2"), &commit_only).unwrap();
                // borg writes hints to a temporary file and renames it.
                fs::write(root.join("hints.2.tmp"), &hints).unwrap();
                fs::rename(root.join("hints.2.tmp"), root.join("hints.2")).unwrap();
                fs::create_dir(root.join("data/1")).unwrap();
                fs::write(root.join("data/1/1000"), &uncommitted).unwrap();
                fs::remove_file(root.join("data/0/2")).unwrap();
                fs::remove_file(root.join("hints.2")).unwrap();
                fs::remove_dir_all(root.join("data/1")).unwrap();
                cycles.fetch_add(1, Ordering::Relaxed);
            }
        });
        // Stops the writer however this thread leaves the scope, a failed assertion included.
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = StopOnDrop(&stop);
        let mut handle =
            Dir::open(root, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        // Until enough races were seen (an event, however loaded the machine), within reason.
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while (raced < 20 || cycles.load(Ordering::Relaxed) < 100)
            && std::time::Instant::now() < deadline
        {
            let (facts, was_raced) = read_once(&mut handle, Ok(&config), &|_| None);
            reads += 1;
            raced += usize::from(was_raced);
            assert_eq!(facts.problems, Vec::<String>::new(), "read {reads}");
            let transaction = facts.commit.map(|commit| commit.transaction_id);
            assert!(
                matches!(transaction, Some(1 | 2)),
                "read {reads}: {facts:?}"
            );
        }
    });
    assert!(raced >= 20, "only {raced} races in {reads} reads");
}
