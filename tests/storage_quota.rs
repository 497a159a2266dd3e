//! Storage quotas against what repositories really use (issue 15).
//!
//! Item 5: a quota charges a repository's segment files as they sit on disk (whole blocks,
//! at least one per file), not only the entry bytes borg counts; and one session cannot
//! flood the file system with tiny segment files (each `put` of the manifest starts two).
//! The raw client below does what no real client does on cue: put the manifest thousands
//! of times. Both run on a tmpfs, where the engine's fsyncs cost nothing; it is larger than
//! what the tests write because borg's commit wants room for a whole segment (500 MB) once
//! there are ten segments to compact, and tmpfs only takes memory for what is written.

mod lifecycle;
mod support;

use std::fs;
use std::path::Path;

use lifecycle::raw::{RawSession, Reply, object_id};
use lifecycle::{data_bytes_on_disk, hinted_quota_use, segment_numbers};
use support::Tmpfs;

/// borg's manifest id.
const MANIFEST: [u8; 32] = [0; 32];

/// Creates an empty repository at `repo` with the engine.
fn create(repo: &Path, log: &Path) {
    let mut session = RawSession::start(&[], log);
    assert!(matches!(
        session.open(repo, true, true, 5),
        Reply::Result(_)
    ));
    session.close_stdin();
    assert!(session.wait_exit(support::BORG_TIMEOUT).is_some());
}

/// Sets `storage_quota` in the repository's config, as `borg config` would.
fn set_quota(repo: &Path, bytes: u64) {
    let config = fs::read_to_string(repo.join("config")).unwrap();
    assert!(config.contains("storage_quota = 0\n"), "{config}");
    fs::write(
        repo.join("config"),
        config.replace("storage_quota = 0\n", &format!("storage_quota = {bytes}\n")),
    )
    .unwrap();
}

/// Puts the manifest `count` times; the number of the first put that failed, with its reply.
fn put_manifest(session: &mut RawSession, count: usize) -> Option<(usize, Reply)> {
    for n in 1..=count {
        let data = format!("manifest {n:>92}");
        match session.put(MANIFEST, data.as_bytes()) {
            Reply::Result(_) => {}
            failed => return Some((n, failed)),
        }
    }
    None
}

#[test]
fn manifest_puts_are_charged_the_disk_blocks_they_take() {
    let tmpfs = support::require!(Tmpfs::mount("1g"));
    let logs = support::temp_dir("quota-blocks");
    let repo = tmpfs.path().join("repo");
    create(&repo, &logs.path().join("create.log"));
    set_quota(&repo, 2_000_000);

    // 200 puts of a 100-byte manifest: 400 segment files of a block each.
    let mut session = RawSession::start(&[], &logs.path().join("flood.log"));
    assert!(matches!(
        session.open(&repo, false, true, 5),
        Reply::Result(_)
    ));
    assert_eq!(put_manifest(&mut session, 200), None);
    assert!(matches!(session.commit(), Reply::Result(_)));
    drop(session);
    let files = segment_numbers(&repo).len();
    let on_disk = data_bytes_on_disk(&repo);
    let counted_by_borg = hinted_quota_use(&repo);
    eprintln!(
        "200 manifest puts: {files} segment files, {on_disk} bytes on disk, \
         {counted_by_borg} bytes in borg's storage_quota_use"
    );
    assert!(files >= 400, "{files}");
    assert!(on_disk >= 1_600_000, "{on_disk}");
    // borg's own count stays borg's (readable by borg 1.2/1.4): entry bytes only.
    assert!(counted_by_borg < 50_000, "{counted_by_borg}");

    // 600 KB more: within the quota by borg's count (about 0.63 MB of 2 MB), beyond it by
    // what the disk holds (about 2.25 MB).
    let mut session = RawSession::start(&[], &logs.path().join("over.log"));
    assert!(matches!(
        session.open(&repo, false, true, 5),
        Reply::Result(_)
    ));
    let over = session.put(object_id(1), &vec![7u8; 600_000]);
    assert_eq!(over, Reply::Exception("StorageQuotaExceeded".into()));
    assert_eq!(
        session.commit(),
        Reply::Exception("StorageQuotaExceeded".into())
    );
    drop(session);
    assert_eq!(
        hinted_quota_use(&repo),
        counted_by_borg,
        "the doomed put was committed"
    );
}

#[test]
fn one_session_cannot_flood_the_file_system_with_segment_files() {
    let tmpfs = support::require!(Tmpfs::mount("1g"));
    let logs = support::temp_dir("quota-files");
    let repo = tmpfs.path().join("repo");
    create(&repo, &logs.path().join("create.log"));

    // The reproduction: 3000 puts of the manifest would make 6000 files.
    let mut session = RawSession::start(&[], &logs.path().join("flood.log"));
    assert!(matches!(
        session.open(&repo, false, true, 5),
        Reply::Result(_)
    ));
    let stopped = put_manifest(&mut session, 3000);
    let files = segment_numbers(&repo).len();
    eprintln!("3000 manifest puts in one session: stopped at {stopped:?}, {files} segment files");
    let Some((put, reply)) = stopped else {
        panic!("3000 manifest puts made {files} segment files");
    };
    assert_eq!(reply, Reply::Exception("OSError".into()));
    // 4096 files, two per put (the first put has no previous manifest to delete).
    assert!((2040..=2050).contains(&put), "stopped at put {put}");
    assert!(files <= 4096, "{files} segment files");
    drop(session);
    let log = fs::read_to_string(logs.path().join("flood.log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");

    // The next session still works, and cleans the uncommitted files up.
    let mut session = RawSession::start(&[], &logs.path().join("after.log"));
    assert!(matches!(
        session.open(&repo, false, true, 5),
        Reply::Result(_)
    ));
    assert_eq!(put_manifest(&mut session, 10), None);
    assert!(matches!(session.commit(), Reply::Result(_)));
    drop(session);
    assert!(segment_numbers(&repo).len() <= 30);
}
