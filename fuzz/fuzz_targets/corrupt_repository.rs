//! A corrupt repository: one file of a real borg repository replaced by arbitrary bytes. Open,
//! list, get, check, repair and a new commit give clean errors or work, never a crash; after
//! `check --repair` succeeds, a second check finds nothing to repair.
#![no_main]

#[path = "common.rs"]
mod common;

use std::time::Duration;

use borg_gate::engine::borg1::lock::{LockIdentity, SessionLockWait};
use borg_gate::engine::borg1::repository::repo::{OpenOptions, Repository};
use borg_gate::engine::borg1::rpc::RemoteException;
use libfuzzer_sys::fuzz_target;

/// The files of `fuzz/fixtures/repo` an input may replace (the first input byte picks one;
/// its high bit asks for `check --repair`).
const FILES: [&str; 11] = [
    "config",
    "hints.30",
    "index.30",
    "integrity.30",
    "nonce",
    "data/0/2",
    "data/0/6",
    "data/0/22",
    "data/0/27",
    "data/0/29",
    "data/0/30",
];

fuzz_target!(|bytes: &[u8]| {
    let Some((&selector, content)) = bytes.split_first() else {
        return;
    };
    let repo = common::work_dir().join("corrupt");
    common::fresh_repo(&repo);
    let name = FILES[usize::from(selector & 0x7f) % FILES.len()];
    std::fs::write(repo.join(name), content).expect("replace a repository file");

    let options = OpenOptions {
        lock: true,
        exclusive: Some(true),
        ..OpenOptions::default()
    };
    let open = || {
        let wait = SessionLockWait::new(Some(Duration::ZERO));
        Repository::open(&repo, &options, LockIdentity::for_current_process(), wait)
    };
    let mut repository = match open() {
        Ok(repository) => repository,
        Err(error) => {
            let _ = (error.to_string(), RemoteException::from(&error));
            return;
        }
    };
    if let Ok(ids) = repository.list(None, None) {
        for id in ids.iter().take(64) {
            let _ = repository.get(id).map(<[u8]>::len);
        }
    }
    let _ = repository.len();
    let _ = repository.load_key();
    let _ = repository.get_free_nonce();
    let _ = repository.check(false, 0);
    // Repair allocates its 40 MiB recovery window per damaged segment, which costs ~100 ms per
    // input under ASan: only inputs with the selector's high bit set repair.
    let repaired = if selector & 0x80 != 0 {
        repository.check(true, 0)
    } else {
        Err(borg_gate::engine::borg1::repository::error::RepoError::ReadOnly(
            "repair",
        ))
    };
    let _ = repository.close();
    if let Ok(mut repository) = open() {
        if repaired.is_ok()
            && let Ok(clean) = repository.check(false, 0)
        {
            assert!(
                clean,
                "a check right after a successful repair found damage ({name})"
            );
        }
        let id = [0x5a; 32];
        if repository.put(&id, b"after the fuzz").is_ok()
            && repository.commit(true, 0.1, false).is_ok()
        {
            assert_eq!(
                repository.get(&id).map(<[u8]>::to_vec).ok(),
                Some(b"after the fuzz".to_vec())
            );
        }
        let _ = repository.close();
    }
});
