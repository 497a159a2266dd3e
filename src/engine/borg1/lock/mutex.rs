//! The `lock.exclusive` mutex directory: borg's `ExclusiveLock` (`locking.py:100-256`).
//!
//! A process owns the mutex while `lock.exclusive/` contains a file named after it
//! (`<hostid>.<pid>-<thread>`). It is taken by creating a private temporary directory holding
//! that file and renaming it onto `lock.exclusive`, which the kernel does atomically and only
//! if the target is absent or empty.

use std::fs::{self, DirBuilder, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::LockError;
use super::identity::{LockIdentity, process_alive};
use super::timer::{LockWait, NextStep, TimeoutTimer};

/// The logger name borg uses, so the remote log protocol shows the same source.
pub(crate) const LOG_TARGET: &str = "borg.locking";
/// Python's `tempfile` alphabet and name length for `mkdtemp`.
const TEMP_NAME_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789_";
const TEMP_NAME_LENGTH: usize = 8;
/// Python's `tempfile.TMP_MAX`: how many names to try before giving up.
const TEMP_NAME_ATTEMPTS: usize = 10_000;

/// How an acquisition succeeded.
enum Acquired {
    /// Our temporary directory became the mutex.
    Renamed,
    /// The mutex already held our file (re-entrant acquisition).
    AlreadyMine,
}

/// borg's `ExclusiveLock` on one directory path (normally `<repo>/lock.exclusive`).
#[derive(Debug)]
pub struct ExclusiveLock {
    path: PathBuf,
    identity: LockIdentity,
    unique_path: PathBuf,
    stale_warning_printed: bool,
}

impl ExclusiveLock {
    /// A mutex at `path` (already absolute and normalised) for `identity`.
    pub fn new(path: PathBuf, identity: LockIdentity) -> Self {
        let unique_path = path.join(identity.unique_name());
        ExclusiveLock {
            path,
            identity,
            unique_path,
            stale_warning_printed: false,
        }
    }

    /// The mutex directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path string borg puts into lock errors for this mutex.
    pub fn error_path(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// Take the mutex, waiting as `wait` says. Taking it again while holding it succeeds
    /// (borg's re-entrancy: our file is already inside).
    pub fn acquire(&mut self, wait: &LockWait) -> Result<(), LockError> {
        let temp_dir = self.make_temp_dir()?;
        let result = self.rename_until_acquired(&temp_dir, wait);
        if !matches!(result, Ok(Acquired::Renamed)) {
            // The temporary directory is still there: clean up, never fail on it.
            let _ = fs::remove_file(temp_dir.join(self.identity.unique_name()));
            let _ = fs::remove_dir(&temp_dir);
        }
        result.map(|_| ())
    }

    fn rename_until_acquired(
        &mut self,
        temp_dir: &Path,
        wait: &LockWait,
    ) -> Result<Acquired, LockError> {
        let timer = TimeoutTimer::start(wait, None);
        loop {
            if fs::rename(temp_dir, &self.path).is_ok() {
                return Ok(Acquired::Renamed);
            }
            // Any failure means "locked" to borg, whatever the errno.
            if self.by_me() {
                return Ok(Acquired::AlreadyMine);
            }
            self.kill_stale_lock();
            match timer.timed_out_or_sleep() {
                NextStep::Retry => {}
                NextStep::TimedOut => return Err(LockError::LockTimeout(self.error_path())),
                NextStep::Aborted => return Err(LockError::Aborted(self.error_path())),
            }
        }
    }

    /// `mkdtemp(".tmp", "lock.exclusive.", parent)` plus our empty file inside it.
    fn make_temp_dir(&self) -> Result<PathBuf, LockError> {
        let failed = |error: &io::Error, path: &Path| {
            LockError::LockFailed(self.error_path(), python_os_error_text(error, path))
        };
        let parent = self.path.parent().unwrap_or(Path::new("/"));
        let base_name = self
            .path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut last_error = io::Error::from(io::ErrorKind::AlreadyExists);
        let mut last_path = parent.to_path_buf();
        for _ in 0..TEMP_NAME_ATTEMPTS {
            let candidate = parent.join(format!("{base_name}.{}.tmp", random_temp_name()));
            match DirBuilder::new().mode(0o700).create(&candidate) {
                Ok(()) => {
                    let file = candidate.join(self.identity.unique_name());
                    if let Err(error) = File::create(&file) {
                        let _ = fs::remove_dir(&candidate);
                        return Err(failed(&error, &file));
                    }
                    return Ok(candidate);
                }
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                    last_error = error;
                    last_path = candidate;
                }
                Err(error) => return Err(failed(&error, &candidate)),
            }
        }
        Err(failed(&last_error, &last_path))
    }

    /// Give the mutex back: `NotLocked` if nobody holds it, `NotMyLock` if someone else does.
    pub fn release(&mut self) -> Result<(), LockError> {
        if !self.is_locked() {
            return Err(LockError::NotLocked(self.error_path()));
        }
        if !self.by_me() {
            return Err(LockError::NotMyLock(self.error_path()));
        }
        fs::remove_file(&self.unique_path).map_err(|error| self.io_error(&error))?;
        remove_dir_unless_raced(&self.path)
            .map(|_| ())
            .map_err(|error| self.io_error(&error))
    }

    fn io_error(&self, error: &io::Error) -> LockError {
        LockError::Io(self.error_path(), python_os_error_text(error, &self.path))
    }

    /// Whether the mutex directory exists.
    pub fn is_locked(&self) -> bool {
        self.path.exists()
    }

    /// Whether our file is in the mutex directory.
    pub fn by_me(&self) -> bool {
        self.unique_path.exists()
    }

    /// Remove the mutex if every holder named in it is a dead process on this host.
    /// Returns true if the directory was removed (borg's return value; only tests use it).
    pub fn kill_stale_lock(&mut self) -> bool {
        let names = match fs::read_dir(&self.path) {
            Ok(entries) => entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect::<Vec<_>>(),
            // Gone already (another process did the job) or unreadable: try the rmdir anyway.
            Err(_) => Vec::new(),
        };
        for name in names {
            let Some(holder) = LockIdentity::parse_unique_name(&name) else {
                log::error!(
                    target: LOG_TARGET,
                    "Found malformed lock {} in {}. Please check/fix manually.",
                    name,
                    self.path.display()
                );
                return false;
            };
            if process_alive(&holder, &self.identity.host_id) {
                return false;
            }
            match fs::remove_file(self.path.join(&name)) {
                Ok(()) => log::warn!(target: LOG_TARGET, "Killed stale lock {name}."),
                Err(error) => {
                    if !self.stale_warning_printed {
                        log::error!(
                            target: LOG_TARGET,
                            "Found stale lock {}, but cannot delete due to {}",
                            name,
                            python_os_error_text(&error, &self.path.join(&name))
                        );
                        self.stale_warning_printed = true;
                    }
                    return false;
                }
            }
        }
        match remove_dir_unless_raced(&self.path) {
            Ok(removed) => removed,
            Err(error) => {
                log::error!(
                    target: LOG_TARGET,
                    "Failed to remove lock dir: {}",
                    python_os_error_text(&error, &self.path)
                );
                false
            }
        }
    }

    /// Remove the mutex whoever holds it (`borg break-lock`).
    pub fn break_lock(&self) -> Result<(), LockError> {
        if !self.is_locked() {
            return Ok(());
        }
        let entries = fs::read_dir(&self.path).map_err(|error| self.io_error(&error))?;
        for entry in entries {
            let entry = entry.map_err(|error| self.io_error(&error))?;
            let path = entry.path();
            fs::remove_file(&path).map_err(|error| {
                LockError::Io(self.error_path(), python_os_error_text(&error, &path))
            })?;
        }
        fs::remove_dir(&self.path).map_err(|error| self.io_error(&error))
    }
}

/// `rmdir`, treating "not empty" and "already gone" as a lost race, which is fine:
/// `Ok(true)` removed, `Ok(false)` lost the race.
fn remove_dir_unless_raced(path: &Path) -> io::Result<bool> {
    match fs::remove_dir(path) {
        Ok(()) => Ok(true),
        Err(error)
            if matches!(
                error.raw_os_error(),
                Some(libc_errno) if libc_errno == nix::libc::ENOTEMPTY
                    || libc_errno == nix::libc::EEXIST
                    || libc_errno == nix::libc::ENOENT
            ) =>
        {
            Ok(false)
        }
        Err(error) => Err(error),
    }
}

/// Python's `str(OSError)`: `[Errno 13] Permission denied: '/repo/lock.exclusive'`.
pub(crate) fn python_os_error_text(error: &io::Error, path: &Path) -> String {
    match error.raw_os_error() {
        Some(code) => format!(
            "[Errno {code}] {}: '{}'",
            nix::errno::Errno::from_raw(code).desc(),
            path.display()
        ),
        None => error.to_string(),
    }
}

/// Eight characters from Python's tempfile alphabet. Only uniqueness matters (the directory
/// is created with O_EXCL semantics and retried on collision), not unpredictability.
fn random_temp_name() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::BuildHasher;
    let mut bits = RandomState::new().hash_one(std::time::Instant::now());
    (0..TEMP_NAME_LENGTH)
        .map(|_| {
            let alphabet_len = TEMP_NAME_ALPHABET.len() as u64;
            let index = (bits % alphabet_len) as usize;
            bits /= alphabet_len;
            char::from(TEMP_NAME_ALPHABET[index])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::borg1::lock::tests::{capture_logs, dead_pid, logged, own_identity};
    use std::time::{Duration, Instant};

    const HOST: &str = "testhost@1";

    fn mutex_in(dir: &Path, identity: LockIdentity) -> ExclusiveLock {
        ExclusiveLock::new(dir.join("lock.exclusive"), identity)
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn quick() -> LockWait<'static> {
        LockWait::at_most(Duration::from_millis(300))
    }

    #[test]
    fn acquire_renames_a_private_directory_holding_our_file() {
        let dir = tempfile::tempdir().unwrap();
        let identity = LockIdentity::new(HOST, 10228);
        let mut mutex = mutex_in(dir.path(), identity);
        mutex.acquire(&quick()).unwrap();
        assert_eq!(names_in(dir.path()), ["lock.exclusive"]);
        assert_eq!(
            names_in(&dir.path().join("lock.exclusive")),
            ["testhost@1.10228-0"]
        );
        assert!(mutex.is_locked() && mutex.by_me());
        mutex.release().unwrap();
        assert!(names_in(dir.path()).is_empty());
    }

    #[test]
    fn acquire_is_reentrant_and_leaves_no_temporary_directory() {
        let dir = tempfile::tempdir().unwrap();
        let mut mutex = mutex_in(dir.path(), LockIdentity::new(HOST, 1));
        mutex.acquire(&quick()).unwrap();
        mutex.acquire(&LockWait::at_most(Duration::ZERO)).unwrap();
        assert_eq!(names_in(dir.path()), ["lock.exclusive"]);
        mutex.release().unwrap();
        assert!(!mutex.is_locked());
    }

    #[test]
    fn a_held_mutex_times_out_another_holder_with_the_mutex_path() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = mutex_in(dir.path(), LockIdentity::new("elsewhere@2", 5));
        first.acquire(&quick()).unwrap();
        let mut second = mutex_in(dir.path(), LockIdentity::new(HOST, 6));
        let started = Instant::now();
        let error = second.acquire(&quick()).unwrap_err();
        let expected = dir.path().join("lock.exclusive").display().to_string();
        assert_eq!(error, LockError::LockTimeout(expected));
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(names_in(dir.path()), ["lock.exclusive"]);
        assert_eq!(
            names_in(&dir.path().join("lock.exclusive")),
            ["elsewhere@2.5-0"]
        );
    }

    #[test]
    fn zero_timeout_tries_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = mutex_in(dir.path(), LockIdentity::new("elsewhere@2", 5));
        first.acquire(&quick()).unwrap();
        let mut second = mutex_in(dir.path(), LockIdentity::new(HOST, 6));
        let started = Instant::now();
        let error = second.acquire(&LockWait::at_most(Duration::ZERO));
        assert!(matches!(error, Err(LockError::LockTimeout(_))));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn release_reports_not_locked_and_not_my_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock.exclusive").display().to_string();
        let mut mine = mutex_in(dir.path(), LockIdentity::new(HOST, 1));
        assert_eq!(mine.release(), Err(LockError::NotLocked(path.clone())));
        let mut theirs = mutex_in(dir.path(), LockIdentity::new("elsewhere@2", 1));
        theirs.acquire(&quick()).unwrap();
        assert_eq!(mine.release(), Err(LockError::NotMyLock(path)));
        assert!(
            theirs.by_me(),
            "a failed release must not touch the holder's file"
        );
    }

    #[test]
    fn a_dead_local_holder_is_killed_with_borgs_warning() {
        capture_logs();
        let dir = tempfile::tempdir().unwrap();
        let me = own_identity();
        let dead = LockIdentity::new(me.host_id.clone(), dead_pid());
        mutex_in(dir.path(), dead.clone())
            .acquire(&quick())
            .unwrap();
        let mut mutex = mutex_in(dir.path(), me.clone());
        mutex.acquire(&quick()).unwrap();
        assert_eq!(
            names_in(&dir.path().join("lock.exclusive")),
            [me.unique_name()]
        );
        if let Some(found) = logged(
            log::Level::Warn,
            &format!("Killed stale lock {}.", dead.unique_name()),
        ) {
            assert!(found);
        }
    }

    #[test]
    fn kill_stale_lock_removes_the_directory_of_a_dead_holder() {
        let dir = tempfile::tempdir().unwrap();
        let me = own_identity();
        let dead = LockIdentity::new(me.host_id.clone(), dead_pid());
        mutex_in(dir.path(), dead).acquire(&quick()).unwrap();
        assert!(mutex_in(dir.path(), me).kill_stale_lock());
        assert!(names_in(dir.path()).is_empty());
    }

    #[test]
    fn live_foreign_and_threaded_holders_are_never_killed() {
        let dir = tempfile::tempdir().unwrap();
        let me = own_identity();
        for holder in [
            LockIdentity::new("otherhost@9", dead_pid()),
            LockIdentity {
                thread: 1,
                ..LockIdentity::new(me.host_id.clone(), dead_pid())
            },
            LockIdentity::new(me.host_id.clone(), me.pid),
        ] {
            let mut other = mutex_in(dir.path(), holder.clone());
            other.acquire(&quick()).unwrap();
            let mut mutex = mutex_in(dir.path(), LockIdentity::new(me.host_id.clone(), 1));
            assert!(!mutex.kill_stale_lock(), "{holder:?}");
            assert!(other.by_me());
            other.release().unwrap();
        }
    }

    #[test]
    fn a_malformed_name_is_reported_and_left_alone() {
        capture_logs();
        let dir = tempfile::tempdir().unwrap();
        let lock_dir = dir.path().join("lock.exclusive");
        fs::create_dir(&lock_dir).unwrap();
        File::create(lock_dir.join("garbage")).unwrap();
        let mut mutex = mutex_in(dir.path(), own_identity());
        assert!(!mutex.kill_stale_lock());
        assert_eq!(names_in(&lock_dir), ["garbage"]);
        if let Some(found) = logged(
            log::Level::Error,
            &format!(
                "Found malformed lock garbage in {}. Please check/fix manually.",
                lock_dir.display()
            ),
        ) {
            assert!(found);
        }
        assert!(matches!(
            mutex.acquire(&LockWait::at_most(Duration::ZERO)),
            Err(LockError::LockTimeout(_))
        ));
    }

    #[test]
    fn an_empty_leftover_directory_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("lock.exclusive")).unwrap();
        let mut mutex = mutex_in(dir.path(), LockIdentity::new(HOST, 3));
        mutex.acquire(&LockWait::at_most(Duration::ZERO)).unwrap();
        assert!(mutex.by_me());
    }

    #[test]
    fn a_missing_parent_is_lock_failed_with_pythons_error_text() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let mut mutex = mutex_in(&missing, LockIdentity::new(HOST, 3));
        let Err(LockError::LockFailed(path, reason)) = mutex.acquire(&quick()) else {
            panic!("expected LockFailed");
        };
        assert_eq!(path, missing.join("lock.exclusive").display().to_string());
        let prefix = format!(
            "[Errno 2] No such file or directory: '{}/lock.exclusive.",
            missing.display()
        );
        assert!(reason.starts_with(&prefix), "{reason}");
        assert!(reason.ends_with(".tmp'"), "{reason}");
    }

    #[test]
    fn an_abort_hook_ends_a_forever_wait() {
        let dir = tempfile::tempdir().unwrap();
        let mut other = mutex_in(dir.path(), LockIdentity::new("elsewhere@2", 5));
        other.acquire(&quick()).unwrap();
        let started = Instant::now();
        let hook = || started.elapsed() > Duration::from_millis(200);
        let wait = LockWait::forever().abort_when(&hook);
        let mut mutex = mutex_in(dir.path(), LockIdentity::new(HOST, 3));
        let error = mutex.acquire(&wait).unwrap_err();
        assert!(matches!(error, LockError::Aborted(_)));
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(names_in(dir.path()), ["lock.exclusive"]);
    }

    #[test]
    fn break_lock_removes_any_holder() {
        let dir = tempfile::tempdir().unwrap();
        let mut other = mutex_in(dir.path(), LockIdentity::new("elsewhere@2", 5));
        other.acquire(&quick()).unwrap();
        File::create(dir.path().join("lock.exclusive").join("garbage")).unwrap();
        mutex_in(dir.path(), LockIdentity::new(HOST, 1))
            .break_lock()
            .unwrap();
        assert!(names_in(dir.path()).is_empty());
        mutex_in(dir.path(), LockIdentity::new(HOST, 1))
            .break_lock()
            .unwrap();
    }

    #[test]
    fn temporary_names_use_pythons_alphabet() {
        for _ in 0..100 {
            let name = random_temp_name();
            assert_eq!(name.len(), TEMP_NAME_LENGTH);
            assert!(name.bytes().all(|byte| TEMP_NAME_ALPHABET.contains(&byte)));
        }
    }

    #[test]
    fn os_errors_read_like_python() {
        let error = io::Error::from_raw_os_error(13);
        assert_eq!(
            python_os_error_text(&error, Path::new("/r/lock.exclusive")),
            "[Errno 13] Permission denied: '/r/lock.exclusive'"
        );
    }
}
