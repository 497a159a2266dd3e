//! A repository made by the engine in a temp dir, and engines started on it by hand with a
//! raw RPC client: the stage of the lock and timeout tests (stale_locks, lock_waits,
//! slowloris). A test file adds the moves only it makes in an `impl Scene` of its own.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rmpv::Value;

use super::raw::{RawSession, Reply, object_id};
use super::{exclusive_lock_present, remove_index};
use crate::support;

/// How long setting the stage may take before it counts as a hang.
const SETUP: Duration = Duration::from_secs(20);

pub(crate) struct Scene {
    pub dir: tempfile::TempDir,
}

impl Scene {
    /// A temp dir with an empty repository `repo`, created and committed by the engine.
    pub(crate) fn new(label: &str) -> Scene {
        Scene::with_objects(label, &[])
    }

    /// Like [`Scene::new`], with `objects` (`(n, data)`, stored as [`object_id`]`(n)`)
    /// committed in the repository's first transaction.
    pub(crate) fn with_objects(label: &str, objects: &[(u8, &[u8])]) -> Scene {
        let scene = Scene {
            dir: support::temp_dir(label),
        };
        let mut session = scene.engine(&[]);
        assert!(matches!(
            session.open(&scene.repo(), true, true, 1),
            Reply::Result(_)
        ));
        for (n, data) in objects {
            assert_eq!(session.put(object_id(*n), data), Reply::Result(Value::Nil));
        }
        assert_eq!(session.commit(), Reply::Result(Value::Nil));
        session.close_stdin();
        assert!(session.wait_exit(SETUP).is_some());
        scene
    }

    pub(crate) fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// A fresh log file for one engine.
    pub(crate) fn log(&self) -> PathBuf {
        static ENGINES: AtomicUsize = AtomicUsize::new(0);
        self.dir.path().join(format!(
            "engine-{}.log",
            ENGINES.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// `borg-gate serve --restrict-to-path=<dir> <extra>`, with its own log.
    pub(crate) fn engine(&self, extra: &[&str]) -> RawSession {
        let restrict = format!("--restrict-to-path={}", self.dir.path().display());
        let mut args = vec![restrict.as_str()];
        args.extend_from_slice(extra);
        RawSession::start(&args, &self.log())
    }

    /// Opens the repository exclusively in `session` and puts object 1 (`size` bytes) in a
    /// transaction it leaves open: the session holds the exclusive lock.
    pub(crate) fn hold_in_transaction(&self, session: &mut RawSession, size: usize) {
        assert!(matches!(
            session.open(&self.repo(), false, true, 1),
            Reply::Result(_)
        ));
        assert_eq!(
            session.put(object_id(1), &vec![7; size]),
            Reply::Result(Value::Nil)
        );
        assert!(exclusive_lock_present(&self.repo()));
    }

    /// Removes the index, hints and integrity files: the index is now behind the segments,
    /// and the next reader must replay them (which takes the exclusive lock).
    pub(crate) fn put_index_behind(&self) {
        remove_index(&self.repo());
    }

    /// Holders named in `lock.roster` (the file may be gone: nobody).
    pub(crate) fn roster(&self) -> String {
        fs::read_to_string(self.repo().join("lock.roster")).unwrap_or_default()
    }

    /// Waits up to `timeout` for the exclusive lock to be free: how long after `since` it
    /// was, or `None`.
    pub(crate) fn lock_freed_after(&self, since: Instant, timeout: Duration) -> Option<Duration> {
        support::wait_for(timeout, || {
            (!exclusive_lock_present(&self.repo())).then(|| since.elapsed())
        })
    }

    /// The object count a fresh session sees (0: the abandoned transaction was rolled back).
    pub(crate) fn committed_objects(&self) -> i64 {
        let mut session = self.engine(&[]);
        assert!(matches!(
            session.open(&self.repo(), false, false, 5),
            Reply::Result(_)
        ));
        match session.call("__len__", vec![]) {
            Reply::Result(value) => value.as_i64().unwrap(),
            other => panic!("__len__: {other:?}"),
        }
    }
}
