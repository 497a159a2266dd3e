use std::fs;

use super::*;
use crate::engine::borg2::hashing::digest;
use crate::engine::borg2::wire::RequestReader;

struct Store {
    dir: tempfile::TempDir,
}

impl Store {
    fn new() -> Store {
        let store = Store {
            dir: tempfile::tempdir().unwrap(),
        };
        assert_eq!(store.service(Mode::All).run(Operation::Create, b"").0, 200);
        store
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("repo")
    }

    fn service(&self, mode: Mode) -> Service {
        self.service_with(mode, None)
    }

    fn service_with(&self, mode: Mode, quota_limit: Option<u64>) -> Service {
        Service::new(
            PosixFs::new(self.path(), true),
            ServiceConfig {
                mode,
                quota_limit,
                release: ReleasePolicy::Release,
                fence: Duration::from_secs(1800),
            },
        )
    }
}

impl Service {
    /// Runs `operation` with `body`; the status, reason and body.
    fn run(&mut self, operation: Operation, body: &[u8]) -> (u16, String, Vec<u8>) {
        let mut reader = RequestReader::new(body);
        let mut body_reader = reader.body(body.len() as u64);
        let response = self.execute(operation, &mut body_reader).unwrap();
        let data = match response.body {
            Body::None => Vec::new(),
            Body::Bytes(data) => data,
            Body::File {
                file,
                offset,
                length,
            } => {
                use std::os::unix::fs::FileExt;
                let mut data = vec![0; length as usize];
                file.read_exact_at(&mut data, offset).unwrap();
                data
            }
            Body::Ranges(ranges) => {
                use std::os::unix::fs::FileExt;
                let mut data = Vec::new();
                for range in ranges {
                    let mut piece = vec![0; range.length as usize];
                    range.file.read_exact_at(&mut piece, range.offset).unwrap();
                    data.extend(piece);
                }
                data
            }
        };
        (response.status, response.reason, data)
    }

    fn put(&mut self, name: &str, data: &[u8]) -> u16 {
        self.run(
            Operation::Store {
                name: name.into(),
                sha256: Some(digest("sha256", data).unwrap()),
            },
            data,
        )
        .0
    }

    fn get(&mut self, name: &str) -> (u16, Vec<u8>) {
        let (status, _, data) = self.run(
            Operation::Load {
                name: name.into(),
                range: None,
            },
            b"",
        );
        (status, data)
    }
}

#[test]
fn a_store_is_verified_and_a_mismatch_stores_nothing() {
    let store = Store::new();
    let mut service = store.service(Mode::All);
    assert_eq!(service.put("config/config", b"abc"), 200);
    assert_eq!(service.get("config/config"), (200, b"abc".to_vec()));
    let (status, reason, body) = service.run(
        Operation::Store {
            name: "config/config".into(),
            sha256: Some(digest("sha256", b"abc").unwrap()),
        },
        b"abd",
    );
    assert_eq!((status, reason.as_str()), (422, "Unprocessable Entity"));
    assert_eq!(body, b"Content hash verification failed, please retry");
    assert_eq!(service.get("config/config"), (200, b"abc".to_vec()));
    // Uppercase hex is not what hexdigest() gives: a mismatch, as in borgstore.
    let upper = digest("sha256", b"x").unwrap().to_uppercase();
    let (status, ..) = service.run(
        Operation::Store {
            name: "config/x".into(),
            sha256: Some(upper),
        },
        b"x",
    );
    assert_eq!(status, 422);
}

#[test]
fn a_hash_mismatch_wins_over_every_other_refusal_as_in_borgstore() {
    let store = Store::new();
    let mut service = store.service(Mode::ReadOnly);
    for name in ["config/config", "Bad Name", "archives/x"] {
        let (status, ..) = service.run(
            Operation::Store {
                name: name.into(),
                sha256: Some("00".into()),
            },
            b"data",
        );
        assert_eq!(status, 422, "{name}");
    }
    let (status, reason, _) = service.run(
        Operation::Store {
            name: "archives/x".into(),
            sha256: None,
        },
        b"data",
    );
    assert_eq!(
        (status, reason.as_str()),
        (403, "One of permissions 'wW' required for 'archives/x'")
    );
}

#[test]
fn a_truncated_body_stores_nothing() {
    let store = Store::new();
    let mut service = store.service(Mode::All);
    let mut reader = RequestReader::new(&b"only"[..]);
    let mut body = reader.body(100);
    let result = service.execute(
        Operation::Store {
            name: "config/x".into(),
            sha256: None,
        },
        &mut body,
    );
    assert!(matches!(result, Err(ReadError::Truncated)));
    assert_eq!(service.get("config/x").0, 404);
    assert_eq!(
        fs::read_dir(store.path().join("config")).unwrap().count(),
        0
    );
}

#[test]
fn operations_answer_with_borgstores_statuses() {
    let store = Store::new();
    let mut service = store.service(Mode::All);
    assert_eq!(service.put("packs/ab/ab00", b"0123456789"), 200);
    let table: Vec<(Operation, u16, &str)> = vec![
        (Operation::Info("packs/ab/ab00".into()), 200, "OK"),
        (
            Operation::Info("packs/ab/cd00".into()),
            404,
            "packs/ab/cd00",
        ),
        (
            Operation::Info("Packs".into()),
            400,
            "name must be lowercase, but got: Packs",
        ),
        (Operation::List("packs/zz".into()), 404, "packs/zz"),
        (
            Operation::List("packs/ab/ab00".into()),
            500,
            "Internal Server Error",
        ),
        (
            Operation::Load {
                name: "packs".into(),
                range: None,
            },
            500,
            "Internal Server Error",
        ),
        (
            Operation::Load {
                name: "packs/ab/ab00".into(),
                range: Some("bytes=-11".into()),
            },
            500,
            "Internal Server Error",
        ),
        (
            Operation::Load {
                name: "packs/ab/ab00".into(),
                range: Some("bytes=20-".into()),
            },
            206,
            "Partial Content",
        ),
        (Operation::Delete("packs/ab/zz".into()), 404, "packs/ab/zz"),
        (Operation::Rmdir("packs/zz".into()), 404, "packs/zz"),
        (
            Operation::Move {
                current: "archives/1".into(),
                new: "archives/1.del".into(),
            },
            404,
            "archives/1",
        ),
        (
            Operation::Hash {
                name: "packs/ab/ab00".into(),
                algorithm: "md5".into(),
            },
            400,
            "Unsupported hash algorithm: md5",
        ),
        (
            Operation::Hash {
                name: "packs/ab/zz".into(),
                algorithm: "sha256".into(),
            },
            404,
            "packs/ab/zz",
        ),
        (Operation::Quota, 200, "OK"),
        (
            Operation::Create,
            409,
            "posixfs storage base path is not empty: [STORAGE_BASE]",
        ),
    ];
    for (operation, status, reason) in table {
        let described = format!("{operation:?}");
        let (got, got_reason, _) = service.run(operation, b"");
        assert_eq!((got, got_reason.as_str()), (status, reason), "{described}");
    }
    let (_, _, body) = service.run(Operation::Quota, b"");
    assert_eq!(body, br#"{"limit": -1, "usage": -1}"#);
    let (_, _, digest_hex) = service.run(
        Operation::Hash {
            name: "packs/ab/ab00".into(),
            algorithm: "blake3".into(),
        },
        b"",
    );
    assert_eq!(
        digest_hex,
        digest("blake3", b"0123456789").unwrap().into_bytes()
    );
}

#[test]
fn a_missing_store_is_gone_for_every_request_but_create() {
    let store = Store::new();
    let mut service = store.service(Mode::All);
    assert_eq!(service.run(Operation::Destroy, b"").0, 200);
    for operation in [
        Operation::Info("config".into()),
        Operation::List(String::new()),
        Operation::Mkdir("packs".into()),
        Operation::Quota,
    ] {
        let (status, reason, _) = service.run(operation, b"");
        assert_eq!(status, 410);
        assert!(reason.starts_with("posixfs storage base path does not exist"));
    }
    assert_eq!(service.put("config/config", b"x"), 410);
    let (status, reason, _) = service.run(Operation::Destroy, b"");
    assert_eq!(
        (status, reason.as_str()),
        (
            410,
            "posixfs storage base path does not exist: [STORAGE_BASE]"
        )
    );
    assert_eq!(service.run(Operation::Create, b"").0, 200);
}

#[test]
fn soft_delete_and_undelete_move_archives() {
    let store = Store::new();
    let mut service = store.service(Mode::All);
    service.put("archives/11", b"");
    let soft = Operation::Move {
        current: "archives/11".into(),
        new: "archives/11.del".into(),
    };
    assert_eq!(service.run(soft, b"").0, 200);
    let (_, _, listing) = service.run(Operation::List("archives".into()), b"");
    let listing = String::from_utf8(listing).unwrap();
    assert!(listing.contains("\"name\": \"11.del\""), "{listing}");
    assert_eq!(service.get("archives/11").0, 404);
}

#[test]
fn gather_returns_the_ranges_and_refuses_short_ones() {
    let store = Store::new();
    let mut service = store.service(Mode::All);
    service.put("packs/ab/ab00", b"0123456789");
    let (status, _, data) = service.run(
        Operation::Gather,
        br#"[["packs/ab/ab00", 0, 3], ["packs/ab/ab00", -3, 3], ["packs/ab/ab00", 5, 0]]"#,
    );
    assert_eq!((status, data.as_slice()), (200, &b"012789"[..]));
    let (status, reason, _) = service.run(Operation::Gather, br#"[["packs/ab/ab00", 8, 5]]"#);
    assert_eq!(
        (status, reason.as_str()),
        (
            416,
            "Read range error from packs/ab/ab00 (requested 5 bytes at offset 8, got 2)"
        )
    );
    assert_eq!(
        service
            .run(Operation::Gather, br#"[["packs/ab/zz", 0, 1]]"#)
            .0,
        404
    );
    assert_eq!(service.run(Operation::Gather, b"not json").0, 400);
    assert_eq!(service.run(Operation::Gather, b"[]").2, b"");
    let mut write_only = store.service(Mode::WriteOnly);
    let (status, reason, _) = write_only.run(Operation::Gather, br#"[["packs/ab/ab00", 0, 1]]"#);
    assert_eq!(
        (status, reason.as_str()),
        (403, "One of permissions 'r' required for 'packs/ab/ab00'")
    );
}

#[test]
fn defrag_names_the_new_pack_by_its_hash() {
    let store = Store::new();
    let mut service = store.service(Mode::All);
    service.put("packs/ab/ab00", b"0123456789");
    let (status, _, name) = service.run(
        Operation::Defrag {
            target: None,
            algorithm: Some("blake3".into()),
            namespace: Some("packs".into()),
            levels: 1,
        },
        br#"[["packs/ab/ab00", 0, 5]]"#,
    );
    let hex = digest("blake3", b"01234").unwrap();
    let expected = format!("packs/{}/{hex}", &hex[..2]);
    assert_eq!(
        (status, String::from_utf8(name).unwrap()),
        (200, expected.clone())
    );
    assert_eq!(service.get(&expected), (200, b"01234".to_vec()));
    let (status, _, name) = service.run(
        Operation::Defrag {
            target: Some("packs/cd/cd00".into()),
            algorithm: None,
            namespace: None,
            levels: 0,
        },
        br#"[["packs/ab/ab00", 5, 5]]"#,
    );
    assert_eq!((status, name.as_slice()), (200, &b"packs/cd/cd00"[..]));
    assert_eq!(service.get("packs/cd/cd00"), (200, b"56789".to_vec()));
    // no-delete has no W on packs: borgstore checks the target first.
    let mut no_delete = store.service(Mode::NoDelete);
    let (status, reason, _) = no_delete.run(
        Operation::Defrag {
            target: None,
            algorithm: Some("blake3".into()),
            namespace: Some("packs".into()),
            levels: 1,
        },
        br#"[["packs/ab/ab00", 0, 5]]"#,
    );
    assert_eq!(
        (status, reason.as_str()),
        (403, "One of permissions 'W' required for 'packs/01234567'")
    );
    // No temp file is left in the namespace directory.
    let leftovers = fs::read_dir(store.path().join("packs"))
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")
        })
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn the_quota_refuses_stores_beyond_it_and_usage_survives_sessions() {
    let store = Store::new();
    let mut first = store.service_with(Mode::All, Some(100));
    assert_eq!(first.put("packs/ab/a", &[0; 60]), 200);
    let (status, reason, body) = first.run(
        Operation::Store {
            name: "packs/ab/b".into(),
            sha256: None,
        },
        &[0; 41],
    );
    assert_eq!(
        (status, reason.as_str()),
        (507, "Quota exceeded: 101 > 100")
    );
    assert_eq!(body, b"Quota exceeded: 101 > 100");
    assert_eq!(
        first.run(Operation::Quota, b"").2,
        br#"{"limit": 100, "usage": 60}"#
    );
    first.finish();
    assert_eq!(fs::read(store.path().join(QUOTA_FILE)).unwrap(), b"60");
    // A new session reads quota.hid instead of scanning: prove it by lying in the file.
    fs::write(store.path().join(QUOTA_FILE), b"95").unwrap();
    let mut second = store.service_with(Mode::All, Some(100));
    assert_eq!(second.put("packs/ab/c", &[0; 6]), 507);
    assert_eq!(
        second.run(Operation::Delete("packs/ab/a".into()), b"").0,
        200
    );
    assert_eq!(second.put("packs/ab/c", &[0; 6]), 200);
    second.finish();
    assert_eq!(fs::read(store.path().join(QUOTA_FILE)).unwrap(), b"41");
    // A session without a quota keeps an existing quota.hid true instead of deleting it.
    let mut unlimited = store.service(Mode::All);
    assert_eq!(unlimited.put("packs/ab/d", &[0; 9]), 200);
    unlimited.finish();
    assert_eq!(fs::read(store.path().join(QUOTA_FILE)).unwrap(), b"50");
    // Without the file, the usage is scanned (quota.hid itself not counted).
    fs::remove_file(store.path().join(QUOTA_FILE)).unwrap();
    let mut rescan = store.service_with(Mode::All, Some(1000));
    let (_, _, body) = rescan.run(Operation::Quota, b"");
    assert_eq!(body, br#"{"limit": 1000, "usage": 15}"#);
}

#[test]
fn permissions_refuse_what_borgs_modes_refuse() {
    let store = Store::new();
    store.service(Mode::All).put("archives/11", b"a");
    let mut no_delete = store.service(Mode::NoDelete);
    let table: Vec<(Operation, u16)> = vec![
        (Operation::Delete("archives/11".into()), 403),
        (
            Operation::Move {
                current: "archives/11".into(),
                new: "archives/11.del".into(),
            },
            403,
        ),
        (Operation::List("archives".into()), 200),
        (Operation::Create, 403),
        (Operation::Destroy, 403),
        (Operation::Mkdir("packs/00".into()), 200),
    ];
    for (operation, status) in table {
        let described = format!("{operation:?}");
        assert_eq!(no_delete.run(operation, b"").0, status, "{described}");
    }
    assert_eq!(no_delete.put("archives/22", b"b"), 200);
    assert_eq!(no_delete.put("archives/22", b"c"), 403, "no overwrite");
    assert_eq!(no_delete.put("locks/l1", b"lock"), 200);
    assert_eq!(
        no_delete.run(Operation::Delete("locks/l1".into()), b"").0,
        200
    );
    let mut read_only = store.service(Mode::ReadOnly);
    assert_eq!(read_only.put("archives/33", b"c"), 403);
    assert_eq!(read_only.put("locks/l2", b"lock"), 200);
    assert_eq!(read_only.get("archives/11"), (200, b"a".to_vec()));
}

#[test]
fn an_unfinished_session_releases_its_locks_and_fences_lockless_writers() {
    let store = Store::new();
    let mut other = store.service(Mode::All);
    assert_eq!(other.put("locks/theirs", b"other client"), 200);
    let mut vanished = store.service(Mode::All);
    assert_eq!(vanished.put("locks/old", b"lock"), 200);
    assert_eq!(vanished.put("locks/mine", b"lock"), 200);
    assert_eq!(
        vanished.run(Operation::Delete("locks/old".into()), b"").0,
        200
    );
    assert_eq!(vanished.put("packs/ab/ab00", b"pack"), 200);
    assert_eq!(vanished.finish(), ["locks/mine"]);
    assert!(!store.path().join("locks/mine").exists());
    assert!(
        store.path().join("locks/theirs").exists(),
        "only its own locks"
    );
    assert!(store.path().join(FENCE_FILE).exists());
    // The reconnecting client: no lock of its own in this session.
    let mut reconnected = store.service(Mode::All);
    let (status, reason, _) = reconnected.run(
        Operation::Store {
            name: "packs/cd/cd00".into(),
            sha256: None,
        },
        b"pack",
    );
    assert_eq!((status, reason.as_str()), (423, locks::FENCED));
    assert_eq!(
        reconnected
            .run(Operation::Delete("packs/ab/ab00".into()), b"")
            .0,
        423
    );
    assert_eq!(
        reconnected.get("packs/ab/ab00"),
        (200, b"pack".to_vec()),
        "reads are never fenced"
    );
    // A fresh client locks first and then writes.
    let mut fresh = store.service(Mode::All);
    assert_eq!(fresh.put("locks/fresh", b"lock"), 200);
    assert_eq!(fresh.put("packs/cd/cd00", b"pack"), 200);
    assert_eq!(
        fresh.run(Operation::Delete("locks/fresh".into()), b"").0,
        200
    );
    assert!(
        fresh.finish().is_empty(),
        "a clean session releases nothing"
    );
    // The fence file is hidden from clients.
    let (_, _, listing) = fresh.run(Operation::List(String::new()), b"");
    assert!(!String::from_utf8(listing).unwrap().contains("fence"));
}

#[test]
fn an_expired_fence_lets_lockless_writers_through() {
    let store = Store::new();
    fs::write(store.path().join(FENCE_FILE), b"1000\nlocks/x\n").unwrap();
    let mut service = store.service(Mode::All);
    assert_eq!(service.put("config/x", b"x"), 200);
    fs::write(store.path().join(FENCE_FILE), b"garbage").unwrap();
    assert_eq!(
        service.put("config/y", b"y"),
        423,
        "an unreadable fresh fence holds"
    );
}

#[test]
fn keeping_locks_is_borgs_behaviour() {
    let store = Store::new();
    let mut service = Service::new(
        PosixFs::new(store.path(), true),
        ServiceConfig {
            mode: Mode::All,
            quota_limit: None,
            release: ReleasePolicy::Keep,
            fence: Duration::from_secs(1800),
        },
    );
    service.put("locks/mine", b"lock");
    assert!(service.finish().is_empty());
    assert!(store.path().join("locks/mine").exists());
    assert!(!store.path().join(FENCE_FILE).exists());
}
