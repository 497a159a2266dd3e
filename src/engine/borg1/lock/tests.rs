//! Tests of the repository lock, including interoperability with real borg 1.4.5 and 1.2.

use super::*;
use crate::engine::borg1::rpc::{ExcArg, RemoteException};
use crate::test_support::{Borg, require_borg, require_borg_python};
use std::fs;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Instant;

// ---------------------------------------------------------------------------------------
// Shared test support
// ---------------------------------------------------------------------------------------

/// A pid that certainly belongs to no process: a child we started and reaped.
pub(crate) fn dead_pid() -> i64 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = i64::from(child.id());
    child.wait().unwrap();
    pid
}

/// This process with the hostid Python would compute (BORG_HOST_ID ignored).
pub(crate) fn own_identity() -> LockIdentity {
    LockIdentity::new(computed_host_id(), i64::from(std::process::id()))
}

struct CaptureLogger {
    records: Mutex<Vec<(String, log::Level, String)>>,
}

impl log::Log for CaptureLogger {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        if let Ok(mut records) = self.records.lock() {
            records.push((
                record.target().to_owned(),
                record.level(),
                record.args().to_string(),
            ));
        }
    }

    fn flush(&self) {}
}

static CAPTURE: CaptureLogger = CaptureLogger {
    records: Mutex::new(Vec::new()),
};

/// Start recording log records (call before the code under test runs).
pub(crate) fn capture_logs() {
    let _ = log::set_logger(&CAPTURE);
    log::set_max_level(log::LevelFilter::Trace);
}

/// Whether `message` was logged at `level` with borg's logger name since
/// [`capture_logs`]. `None` (with a note) when another test module installed the global
/// logger first, so nothing can be seen.
pub(crate) fn logged(level: log::Level, message: &str) -> Option<bool> {
    let installed = std::ptr::addr_eq(log::logger() as *const dyn log::Log, &CAPTURE);
    if !installed {
        eprintln!("note: another logger is installed; not checking log message {message:?}");
        return None;
    }
    let records = CAPTURE.records.lock().unwrap();
    Some(records.iter().any(|(target, logged_level, text)| {
        target == "borg.locking" && *logged_level == level && text == message
    }))
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn path_string(path: PathBuf) -> String {
    path.display().to_string()
}

fn quick() -> LockWait<'static> {
    LockWait::at_most(Duration::from_millis(500))
}

fn roster_of(repo: &Path) -> RosterData {
    RosterData::parse(&fs::read_to_string(repo.join("lock.roster")).unwrap()).unwrap()
}

// ---------------------------------------------------------------------------------------
// Repository lock logic on real files
// ---------------------------------------------------------------------------------------

#[test]
fn exclusive_lock_keeps_the_mutex_and_registers_in_the_roster() {
    let repo = tempfile::tempdir().unwrap();
    let me = LockIdentity::new("h@1", 77);
    let lock =
        RepositoryLock::acquire(repo.path(), me.clone(), LockMode::Exclusive, &quick()).unwrap();
    assert!(lock.got_exclusive_lock());
    assert_eq!(lock.path(), repo.path().join("lock"));
    assert_eq!(names_in(repo.path()), ["lock.exclusive", "lock.roster"]);
    assert_eq!(names_in(&repo.path().join("lock.exclusive")), ["h@1.77-0"]);
    assert_eq!(
        fs::read_to_string(repo.path().join("lock.roster")).unwrap(),
        r#"{"exclusive": [["h@1", 77, 0]]}"#
    );
    lock.release().unwrap();
    assert!(names_in(repo.path()).is_empty());
}

#[test]
fn shared_lock_registers_in_the_roster_and_drops_the_mutex() {
    let repo = tempfile::tempdir().unwrap();
    let lock = RepositoryLock::acquire(
        repo.path(),
        LockIdentity::new("h@1", 77),
        LockMode::Shared,
        &quick(),
    )
    .unwrap();
    assert!(!lock.got_exclusive_lock());
    assert_eq!(names_in(repo.path()), ["lock.roster"]);
    assert_eq!(
        fs::read_to_string(repo.path().join("lock.roster")).unwrap(),
        r#"{"shared": [["h@1", 77, 0]]}"#
    );
    lock.release().unwrap();
    assert!(names_in(repo.path()).is_empty());
}

#[test]
fn two_shared_holders_coexist_and_release_independently() {
    let repo = tempfile::tempdir().unwrap();
    let first = LockIdentity::new("h@1", 1);
    let second = LockIdentity::new("other@2", 2);
    let a =
        RepositoryLock::acquire(repo.path(), first.clone(), LockMode::Shared, &quick()).unwrap();
    let b =
        RepositoryLock::acquire(repo.path(), second.clone(), LockMode::Shared, &quick()).unwrap();
    assert_eq!(
        roster_of(repo.path()).holders(RosterKey::Shared),
        [first, second.clone()]
    );
    a.release().unwrap();
    assert_eq!(roster_of(repo.path()).holders(RosterKey::Shared), [second]);
    b.release().unwrap();
    assert!(names_in(repo.path()).is_empty());
}

#[test]
fn a_shared_holder_makes_exclusive_time_out_on_the_lock_path() {
    let repo = tempfile::tempdir().unwrap();
    let reader = RepositoryLock::acquire(
        repo.path(),
        LockIdentity::new("other@2", 2),
        LockMode::Shared,
        &quick(),
    )
    .unwrap();
    let started = Instant::now();
    let error = RepositoryLock::acquire(
        repo.path(),
        LockIdentity::new("h@1", 1),
        LockMode::Exclusive,
        &quick(),
    )
    .unwrap_err();
    assert_eq!(
        error,
        LockError::LockTimeout(path_string(repo.path().join("lock")))
    );
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(names_in(repo.path()), ["lock.roster"]);
    assert_eq!(roster_of(repo.path()).exclusive, None);
    reader.release().unwrap();
}

#[test]
fn an_exclusive_holder_makes_others_time_out_on_the_mutex_path() {
    let repo = tempfile::tempdir().unwrap();
    let writer = RepositoryLock::acquire(
        repo.path(),
        LockIdentity::new("other@2", 2),
        LockMode::Exclusive,
        &quick(),
    )
    .unwrap();
    let mutex_path = path_string(repo.path().join("lock.exclusive"));
    for mode in [LockMode::Shared, LockMode::Exclusive] {
        let error =
            RepositoryLock::acquire(repo.path(), LockIdentity::new("h@1", 1), mode, &quick())
                .unwrap_err();
        assert_eq!(
            error,
            LockError::LockTimeout(mutex_path.clone()),
            "{mode:?}"
        );
    }
    assert!(writer.got_exclusive_lock());
    assert_eq!(names_in(repo.path()), ["lock.exclusive", "lock.roster"]);
    writer.release().unwrap();
}

#[test]
fn exclusive_acquisition_is_reentrant_for_the_same_identity() {
    let repo = tempfile::tempdir().unwrap();
    let me = LockIdentity::new("h@1", 1);
    let first =
        RepositoryLock::acquire(repo.path(), me.clone(), LockMode::Exclusive, &quick()).unwrap();
    let second =
        RepositoryLock::acquire(repo.path(), me.clone(), LockMode::Exclusive, &quick()).unwrap();
    assert_eq!(roster_of(repo.path()).holders(RosterKey::Exclusive), [me]);
    second.release().unwrap();
    assert!(!first.got_exclusive_lock());
    assert!(names_in(repo.path()).is_empty());
    first.leak();
}

#[test]
fn upgrade_turns_a_lone_shared_lock_exclusive() {
    let repo = tempfile::tempdir().unwrap();
    let me = LockIdentity::new("h@1", 1);
    let mut lock =
        RepositoryLock::acquire(repo.path(), me.clone(), LockMode::Shared, &quick()).unwrap();
    lock.upgrade(&quick()).unwrap();
    assert_eq!(lock.mode(), LockMode::Exclusive);
    assert!(lock.got_exclusive_lock());
    let roster = roster_of(repo.path());
    assert!(roster.holders(RosterKey::Shared).is_empty());
    assert_eq!(roster.holders(RosterKey::Exclusive), [me]);
    lock.upgrade(&quick()).unwrap();
    lock.release().unwrap();
    assert!(names_in(repo.path()).is_empty());
}

#[test]
fn upgrade_blocked_by_another_reader_times_out_and_stays_shared() {
    let repo = tempfile::tempdir().unwrap();
    let me = LockIdentity::new("h@1", 1);
    let other = LockIdentity::new("other@2", 2);
    let reader =
        RepositoryLock::acquire(repo.path(), other.clone(), LockMode::Shared, &quick()).unwrap();
    let mut lock =
        RepositoryLock::acquire(repo.path(), me.clone(), LockMode::Shared, &quick()).unwrap();
    let error = lock.upgrade(&quick()).unwrap_err();
    assert_eq!(
        error,
        LockError::LockTimeout(path_string(repo.path().join("lock")))
    );
    assert_eq!(lock.mode(), LockMode::Shared);
    assert_eq!(names_in(repo.path()), ["lock.roster"]);
    let mut shared = roster_of(repo.path()).holders(RosterKey::Shared).to_vec();
    shared.sort_by_key(|holder| holder.pid);
    assert_eq!(shared, [me, other]);
    lock.release().unwrap();
    reader.release().unwrap();
    assert!(names_in(repo.path()).is_empty());
}

#[test]
fn of_two_shared_holders_upgrading_at_once_the_second_gives_up_at_once() {
    let repo = tempfile::tempdir().unwrap();
    let first = LockIdentity::new("h@1", 1);
    let second = LockIdentity::new("other@2", 2);
    let mut waiting =
        RepositoryLock::acquire(repo.path(), first, LockMode::Shared, &quick()).unwrap();
    let mut late =
        RepositoryLock::acquire(repo.path(), second, LockMode::Shared, &quick()).unwrap();
    let upgrader = std::thread::spawn(move || {
        let upgraded = waiting.upgrade(&LockWait::at_most(Duration::from_secs(30)));
        (upgraded, waiting)
    });
    let upgrade_lock = repo.path().join(UPGRADE_LOCK);
    let started = Instant::now();
    while !upgrade_lock.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the first upgrader never started"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // borg would wait here for the first upgrader, which waits for this one.
    let asked = Instant::now();
    let error = late
        .upgrade(&LockWait::at_most(Duration::from_secs(30)))
        .unwrap_err();
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(
        error,
        LockError::LockTimeout(path_string(repo.path().join("lock")))
    );
    assert_eq!(late.mode(), LockMode::Shared);
    // The second holder leaves (as its client does after the error); the first gets its lock.
    late.release().unwrap();
    let (upgraded, waiting) = upgrader.join().unwrap();
    upgraded.unwrap();
    assert!(waiting.got_exclusive_lock());
    assert!(!upgrade_lock.exists());
    waiting.release().unwrap();
    assert!(names_in(repo.path()).is_empty());
}

#[test]
fn a_stale_upgrade_lock_of_a_dead_process_does_not_block_upgrades() {
    let repo = tempfile::tempdir().unwrap();
    let me = own_identity();
    let dead = LockIdentity::new(me.host_id.clone(), dead_pid());
    let upgrade_lock = repo.path().join(UPGRADE_LOCK);
    fs::create_dir(&upgrade_lock).unwrap();
    fs::write(upgrade_lock.join(dead.unique_name()), b"").unwrap();
    let mut lock = RepositoryLock::acquire(repo.path(), me, LockMode::Shared, &quick()).unwrap();
    lock.upgrade(&quick()).unwrap();
    assert!(lock.got_exclusive_lock());
    assert!(!upgrade_lock.exists());
    lock.release().unwrap();
}

#[test]
fn break_lock_removes_an_upgrade_lock_too() {
    let repo = tempfile::tempdir().unwrap();
    let upgrade_lock = repo.path().join(UPGRADE_LOCK);
    fs::create_dir(&upgrade_lock).unwrap();
    fs::write(upgrade_lock.join("elsewhere@9.9-0"), b"").unwrap();
    break_lock(repo.path()).unwrap();
    assert!(names_in(repo.path()).is_empty());
}

#[test]
fn dropping_a_lock_releases_it() {
    let repo = tempfile::tempdir().unwrap();
    for mode in [LockMode::Shared, LockMode::Exclusive] {
        {
            let _lock =
                RepositoryLock::acquire(repo.path(), LockIdentity::new("h@1", 1), mode, &quick())
                    .unwrap();
            assert!(!names_in(repo.path()).is_empty());
        }
        assert!(names_in(repo.path()).is_empty(), "{mode:?}");
    }
}

#[test]
fn stale_roster_entries_of_dead_local_processes_do_not_block() {
    let repo = tempfile::tempdir().unwrap();
    let me = own_identity();
    let dead = LockIdentity::new(me.host_id.clone(), dead_pid());
    RepositoryLock::acquire(repo.path(), dead.clone(), LockMode::Shared, &quick())
        .unwrap()
        .leak();
    let lock =
        RepositoryLock::acquire(repo.path(), me.clone(), LockMode::Exclusive, &quick()).unwrap();
    let roster = roster_of(repo.path());
    assert!(roster.holders(RosterKey::Shared).is_empty());
    assert_eq!(roster.holders(RosterKey::Exclusive), [me]);
    lock.release().unwrap();
    assert!(names_in(repo.path()).is_empty());
}

#[test]
fn a_stale_exclusive_lock_of_a_dead_local_process_is_taken_over() {
    let repo = tempfile::tempdir().unwrap();
    let me = own_identity();
    let dead = LockIdentity::new(me.host_id.clone(), dead_pid());
    RepositoryLock::acquire(repo.path(), dead, LockMode::Exclusive, &quick())
        .unwrap()
        .leak();
    let lock =
        RepositoryLock::acquire(repo.path(), me.clone(), LockMode::Shared, &quick()).unwrap();
    assert_eq!(names_in(repo.path()), ["lock.roster"]);
    let roster = roster_of(repo.path());
    assert_eq!(roster.holders(RosterKey::Shared), [me]);
    assert!(roster.holders(RosterKey::Exclusive).is_empty());
    lock.release().unwrap();
}

#[test]
fn break_lock_removes_everything_and_the_holder_notices() {
    let repo = tempfile::tempdir().unwrap();
    let lock = RepositoryLock::acquire(
        repo.path(),
        LockIdentity::new("other@2", 2),
        LockMode::Exclusive,
        &quick(),
    )
    .unwrap();
    break_lock(repo.path()).unwrap();
    assert!(names_in(repo.path()).is_empty());
    assert!(!lock.got_exclusive_lock());
    assert_eq!(
        lock.release(),
        Err(LockError::NotLocked(path_string(
            repo.path().join("lock.exclusive")
        )))
    );
    assert!(
        names_in(repo.path()).is_empty(),
        "release must not recreate files"
    );
    break_lock(repo.path()).unwrap();
}

#[test]
fn release_after_someone_else_took_the_mutex_is_not_my_lock() {
    let repo = tempfile::tempdir().unwrap();
    let lock = RepositoryLock::acquire(
        repo.path(),
        LockIdentity::new("h@1", 1),
        LockMode::Exclusive,
        &quick(),
    )
    .unwrap();
    break_lock(repo.path()).unwrap();
    let thief = RepositoryLock::acquire(
        repo.path(),
        LockIdentity::new("other@2", 2),
        LockMode::Exclusive,
        &quick(),
    )
    .unwrap();
    assert_eq!(
        lock.release(),
        Err(LockError::NotMyLock(path_string(
            repo.path().join("lock.exclusive")
        )))
    );
    assert!(thief.got_exclusive_lock());
    assert_eq!(
        roster_of(repo.path()).holders(RosterKey::Exclusive),
        [LockIdentity::new("other@2", 2)]
    );
    thief.release().unwrap();
}

#[test]
fn an_abort_hook_abandons_an_exclusive_wait_without_a_trace() {
    let repo = tempfile::tempdir().unwrap();
    let reader = RepositoryLock::acquire(
        repo.path(),
        LockIdentity::new("other@2", 2),
        LockMode::Shared,
        &quick(),
    )
    .unwrap();
    let before = fs::read_to_string(repo.path().join("lock.roster")).unwrap();
    let started = Instant::now();
    let hook = || started.elapsed() > Duration::from_millis(300);
    let wait = LockWait::forever().abort_when(&hook);
    let error = RepositoryLock::acquire(
        repo.path(),
        LockIdentity::new("h@1", 1),
        LockMode::Exclusive,
        &wait,
    )
    .unwrap_err();
    assert_eq!(
        error,
        LockError::Aborted(path_string(repo.path().join("lock")))
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(names_in(repo.path()), ["lock.roster"]);
    assert_eq!(roster_of(repo.path()), RosterData::parse(&before).unwrap());
    reader.release().unwrap();
}

#[test]
fn a_missing_repository_is_lock_failed_on_the_mutex_path() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("absent");
    let error = RepositoryLock::acquire(
        &repo,
        LockIdentity::new("h@1", 1),
        LockMode::Exclusive,
        &quick(),
    )
    .unwrap_err();
    assert!(
        matches!(&error, LockError::LockFailed(path, _) if *path == path_string(repo.join("lock.exclusive"))),
        "{error:?}"
    );
}

#[test]
fn error_paths_are_absolute_and_normalised() {
    let repo = tempfile::tempdir().unwrap();
    let holder = RepositoryLock::acquire(
        repo.path(),
        LockIdentity::new("other@2", 2),
        LockMode::Exclusive,
        &quick(),
    )
    .unwrap();
    let messy = repo.path().join(".").join("sub").join("..").join("");
    fs::create_dir(repo.path().join("sub")).unwrap();
    let error = RepositoryLock::acquire(
        &messy,
        LockIdentity::new("h@1", 1),
        LockMode::Shared,
        &LockWait::at_most(Duration::ZERO),
    )
    .unwrap_err();
    assert_eq!(
        error,
        LockError::LockTimeout(path_string(repo.path().join("lock.exclusive")))
    );
    holder.release().unwrap();
}

#[test]
fn errors_display_borgs_messages_and_exception_arguments() {
    let cases = [
        (
            LockError::LockTimeout("/r/lock".into()),
            "Failed to create/acquire the lock /r/lock (timeout).",
            "LockTimeout",
        ),
        (
            LockError::LockFailed(
                "/r/lock.exclusive".into(),
                "[Errno 13] Permission denied: '/r'".into(),
            ),
            "Failed to create/acquire the lock /r/lock.exclusive ([Errno 13] Permission denied: '/r').",
            "LockFailed",
        ),
        (
            LockError::NotLocked("/r/lock.exclusive".into()),
            "Failed to release the lock /r/lock.exclusive (was not locked).",
            "NotLocked",
        ),
        (
            LockError::NotMyLock("/r/lock.exclusive".into()),
            "Failed to release the lock /r/lock.exclusive (was/is locked, but not by me).",
            "NotMyLock",
        ),
    ];
    // What the client receives is the RPC layer's mapping.
    let exception = |error: &LockError| RemoteException::from(error);
    let exception_args = |error: &LockError| -> Vec<String> {
        exception(error)
            .args
            .into_iter()
            .map(|arg| match arg {
                ExcArg::Str(text) => text,
                other => panic!("{other:?}"),
            })
            .collect()
    };
    for (error, message, name) in cases {
        assert_eq!(error.to_string(), message);
        assert_eq!(exception(&error).class, name);
    }
    assert_eq!(
        exception_args(&LockError::LockFailed("p".into(), "r".into())),
        ["p", "r"]
    );
    assert_eq!(exception_args(&LockError::LockTimeout("p".into())), ["p"]);
}

#[test]
fn normpath_matches_python_posixpath() {
    for (input, expected) in [
        ("", "."),
        ("/", "/"),
        ("//", "//"),
        ("///", "/"),
        ("//a//b/", "//a/b"),
        ("///a", "/a"),
        ("/a/./b/../c/", "/a/c"),
        ("/../a", "/a"),
        ("a/../..", ".."),
        ("../../a", "../../a"),
        ("a/..", "."),
        ("./", "."),
        ("/srv/repo/", "/srv/repo"),
    ] {
        assert_eq!(
            python_normpath(OsStr::new(input)),
            PathBuf::from(expected),
            "{input:?}"
        );
    }
}

#[test]
fn normpath_agrees_with_python_on_generated_paths() {
    let Some(python) = require_borg_python(Borg::Pypi14) else {
        return;
    };
    let parts = ["", ".", "..", "a", "b"];
    let mut inputs = Vec::new();
    for first in parts {
        for second in parts {
            for third in parts {
                inputs.push(format!("{first}/{second}/{third}"));
                inputs.push(format!("/{first}/{second}//{third}"));
                inputs.push(format!("//{first}/{second}/{third}/"));
            }
        }
    }
    let expected = crate::test_support::run_python_args(
        &python,
        "import posixpath,sys\nfor p in sys.argv[1:]: print(posixpath.normpath(p))",
        &inputs,
    );
    for (input, expected) in inputs.iter().zip(expected.lines()) {
        assert_eq!(
            python_normpath(OsStr::new(input)),
            PathBuf::from(expected),
            "{input:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Interoperability with real borg
// ---------------------------------------------------------------------------------------

/// How long to wait for a borg process to get its lock (Python start-up is slow).
const BORG_START_LIMIT: Duration = Duration::from_secs(30);

/// A borg binary with a private `BORG_BASE_DIR` and a fresh `borg init -e none` repository.
struct BorgFixture {
    borg: PathBuf,
    dir: tempfile::TempDir,
    repo: PathBuf,
}

impl BorgFixture {
    fn new(borg: Borg) -> Option<BorgFixture> {
        let borg = require_borg(borg)?;
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let fixture = BorgFixture { borg, dir, repo };
        let init = fixture.run(&["init", "-e", "none", fixture.repo_arg()]);
        assert!(init.status.success(), "borg init failed: {init:?}");
        Some(fixture)
    }

    fn repo_arg(&self) -> &str {
        self.repo.to_str().unwrap()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.borg);
        command
            .args(args)
            .env("BORG_BASE_DIR", self.dir.path().join("base"))
            .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes")
            .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
            .env("LANG", "C.UTF-8")
            .env_remove("BORG_HOST_ID")
            .env_remove("BORG_EXIT_CODES")
            .env_remove("BORG_REPO")
            .env_remove("BORG_PASSPHRASE")
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn run_with_host_id(&self, host_id: &str, args: &[&str]) -> Output {
        self.command(args)
            .env("BORG_HOST_ID", host_id)
            .output()
            .unwrap()
    }

    /// Start `borg with-lock REPO <command...>` in its own process group.
    fn spawn_with_lock(&self, command: &[&str]) -> Child {
        use std::os::unix::process::CommandExt;
        let mut args = vec!["with-lock", self.repo_arg()];
        args.extend_from_slice(command);
        self.command(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap()
    }

    /// Wait until the roster names `holder` as exclusive (borg took the whole lock).
    fn wait_for_exclusive_holder(&self, holder: &LockIdentity, child: &mut Child) {
        let started = Instant::now();
        loop {
            let roster = fs::read_to_string(self.repo.join("lock.roster")).unwrap_or_default();
            if RosterData::parse(&roster)
                .is_some_and(|data| data.holders(RosterKey::Exclusive).contains(holder))
            {
                return;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "borg exited before locking"
            );
            assert!(
                started.elapsed() < BORG_START_LIMIT,
                "borg did not lock in time"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn lock_entries(&self) -> Vec<String> {
        names_in(&self.repo)
            .into_iter()
            .filter(|name| name.starts_with("lock"))
            .collect()
    }
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn borg_identity(child: &Child) -> LockIdentity {
    LockIdentity::new(computed_host_id(), i64::from(child.id()))
}

/// (a) While `borg with-lock` holds the repository, our exclusive and shared requests
/// time out with borg's mutex path; the lock file borg made carries our computed hostid.
fn borg_holding_the_lock_times_us_out(borg: Borg) {
    let Some(fixture) = BorgFixture::new(borg) else {
        return;
    };
    let mut child = fixture.spawn_with_lock(&["sleep", "5"]);
    let holder = borg_identity(&child);
    fixture.wait_for_exclusive_holder(&holder, &mut child);
    assert_eq!(
        names_in(&fixture.repo.join("lock.exclusive")),
        [holder.unique_name()],
        "borg's lock file name must match our identity format and hostid"
    );
    let mutex_path = path_string(fixture.repo.join("lock.exclusive"));
    for mode in [LockMode::Exclusive, LockMode::Shared] {
        let error = RepositoryLock::acquire(
            &fixture.repo,
            own_identity(),
            mode,
            &LockWait::at_most(Duration::from_secs(1)),
        )
        .unwrap_err();
        assert_eq!(
            error,
            LockError::LockTimeout(mutex_path.clone()),
            "{mode:?}"
        );
    }
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(fixture.lock_entries().is_empty());
    let lock = RepositoryLock::acquire(
        &fixture.repo,
        own_identity(),
        LockMode::Exclusive,
        &LockWait::at_most(Duration::ZERO),
    )
    .unwrap();
    lock.release().unwrap();
}

#[test]
fn interop_borg145_holding_the_lock_times_us_out() {
    borg_holding_the_lock_times_us_out(Borg::Pypi14);
}

#[test]
fn interop_borg12_holding_the_lock_times_us_out() {
    borg_holding_the_lock_times_us_out(Borg::Debian12);
}

/// (b) Our exclusive lock makes `borg list --lock-wait 1` fail with borg's lock timeout.
fn our_exclusive_lock_times_borg_out(borg: Borg) {
    let Some(fixture) = BorgFixture::new(borg) else {
        return;
    };
    let lock = RepositoryLock::acquire(
        &fixture.repo,
        own_identity(),
        LockMode::Exclusive,
        &LockWait::at_most(Duration::from_secs(1)),
    )
    .unwrap();
    let output = fixture.run(&["list", "--lock-wait", "1", fixture.repo_arg()]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let expected = format!(
        "Failed to create/acquire the lock {}/lock.exclusive (timeout).",
        fixture.repo.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(
        lock.got_exclusive_lock(),
        "borg must not have touched our lock"
    );
    lock.release().unwrap();
    assert!(fixture.lock_entries().is_empty());
    let output = fixture.run(&["list", "--lock-wait", "1", fixture.repo_arg()]);
    assert!(output.status.success(), "{}", stderr_of(&output));
}

#[test]
fn interop_borg145_times_out_on_our_exclusive_lock() {
    our_exclusive_lock_times_borg_out(Borg::Pypi14);
}

#[test]
fn interop_borg12_times_out_on_our_exclusive_lock() {
    our_exclusive_lock_times_borg_out(Borg::Debian12);
}

/// (c) Our shared lock admits `borg list` (shared) and blocks `borg with-lock` (exclusive),
/// which times out on the roster level path `<repo>/lock`.
fn our_shared_lock_admits_readers_and_blocks_writers(borg: Borg) {
    let Some(fixture) = BorgFixture::new(borg) else {
        return;
    };
    let me = own_identity();
    let lock = RepositoryLock::acquire(
        &fixture.repo,
        me.clone(),
        LockMode::Shared,
        &LockWait::at_most(Duration::from_secs(1)),
    )
    .unwrap();
    let output = fixture.run(&["list", "--lock-wait", "1", fixture.repo_arg()]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(
        roster_of(&fixture.repo).holders(RosterKey::Shared),
        std::slice::from_ref(&me)
    );

    let output = fixture.run(&["with-lock", "--lock-wait", "1", fixture.repo_arg(), "true"]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let expected = format!(
        "Failed to create/acquire the lock {}/lock (timeout).",
        fixture.repo.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert_eq!(fixture.lock_entries(), ["lock.roster"]);
    assert_eq!(roster_of(&fixture.repo).holders(RosterKey::Shared), [me]);
    assert!(
        roster_of(&fixture.repo)
            .holders(RosterKey::Exclusive)
            .is_empty()
    );

    lock.release().unwrap();
    assert!(fixture.lock_entries().is_empty());
    let output = fixture.run(&["with-lock", "--lock-wait", "1", fixture.repo_arg(), "true"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
}

#[test]
fn interop_borg145_shares_with_us_but_cannot_write() {
    our_shared_lock_admits_readers_and_blocks_writers(Borg::Pypi14);
}

#[test]
fn interop_borg12_shares_with_us_but_cannot_write() {
    our_shared_lock_admits_readers_and_blocks_writers(Borg::Debian12);
}

/// (d) A lock we left behind for a dead process (our computed hostid, no BORG_HOST_ID on
/// either side) is recognised as stale and removed by real borg.
fn borg_removes_our_stale_lock(borg: Borg) {
    let Some(fixture) = BorgFixture::new(borg) else {
        return;
    };
    let dead = LockIdentity::new(computed_host_id(), dead_pid());
    RepositoryLock::acquire(
        &fixture.repo,
        dead.clone(),
        LockMode::Exclusive,
        &LockWait::at_most(Duration::ZERO),
    )
    .unwrap()
    .leak();
    assert_eq!(fixture.lock_entries(), ["lock.exclusive", "lock.roster"]);

    let output = fixture.run(&["list", "--lock-wait", "1", fixture.repo_arg()]);
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("Killed stale lock {}.", dead.unique_name())),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "Removed stale exclusive roster lock for host {} pid {} thread 0.",
            dead.host_id, dead.pid
        )),
        "{stderr}"
    );
    assert!(fixture.lock_entries().is_empty());
}

#[test]
fn interop_borg145_removes_our_stale_lock() {
    borg_removes_our_stale_lock(Borg::Pypi14);
}

#[test]
fn interop_borg12_removes_our_stale_lock() {
    borg_removes_our_stale_lock(Borg::Debian12);
}

/// (e) The lock of a `borg with-lock` killed with SIGKILL is removed by us.
fn we_remove_the_stale_lock_of_a_killed_borg(borg: Borg) {
    let Some(fixture) = BorgFixture::new(borg) else {
        return;
    };
    capture_logs();
    let mut child = fixture.spawn_with_lock(&["sleep", "60"]);
    let holder = borg_identity(&child);
    fixture.wait_for_exclusive_holder(&holder, &mut child);
    // The process group is ours: borg and its `sleep`.
    let group = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    assert_eq!(
        names_in(&fixture.repo.join("lock.exclusive")),
        [holder.unique_name()]
    );

    let me = own_identity();
    let lock = RepositoryLock::acquire(
        &fixture.repo,
        me.clone(),
        LockMode::Exclusive,
        &LockWait::at_most(Duration::from_secs(1)),
    )
    .unwrap();
    assert!(lock.got_exclusive_lock());
    assert_eq!(
        names_in(&fixture.repo.join("lock.exclusive")),
        [me.unique_name()]
    );
    let roster = roster_of(&fixture.repo);
    assert_eq!(roster.holders(RosterKey::Exclusive), [me]);
    assert!(roster.holders(RosterKey::Shared).is_empty());
    for (level, message) in [
        (
            log::Level::Warn,
            format!("Killed stale lock {}.", holder.unique_name()),
        ),
        (
            log::Level::Warn,
            format!(
                "Removed stale exclusive roster lock for host {} pid {} thread 0.",
                holder.host_id, holder.pid
            ),
        ),
    ] {
        if let Some(found) = logged(level, &message) {
            assert!(found, "{message}");
        }
    }
    lock.release().unwrap();
    assert!(fixture.lock_entries().is_empty());
    let output = fixture.run(&["list", "--lock-wait", "1", fixture.repo_arg()]);
    assert!(output.status.success(), "{}", stderr_of(&output));
}

#[test]
fn interop_borg145_killed_lock_is_removed_by_us() {
    we_remove_the_stale_lock_of_a_killed_borg(Borg::Pypi14);
}

#[test]
fn interop_borg12_killed_lock_is_removed_by_us() {
    we_remove_the_stale_lock_of_a_killed_borg(Borg::Debian12);
}

/// The documented fallback: with the same `BORG_HOST_ID` on both sides, borg recognises
/// our stale lock even though the hostid is not the computed one.
#[test]
fn interop_borg145_matches_us_through_borg_host_id() {
    let Some(fixture) = BorgFixture::new(Borg::Pypi14) else {
        return;
    };
    let host_id = identity::host_id_with_override(Some(OsStr::new("shared-backup-id")));
    let dead = LockIdentity::new(host_id, dead_pid());
    RepositoryLock::acquire(
        &fixture.repo,
        dead.clone(),
        LockMode::Shared,
        &LockWait::at_most(Duration::ZERO),
    )
    .unwrap()
    .leak();
    let output = fixture.run_with_host_id(
        "shared-backup-id",
        &["with-lock", "--lock-wait", "1", fixture.repo_arg(), "true"],
    );
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "Removed stale shared roster lock for host shared-backup-id pid {} thread 0.",
            dead.pid
        )),
        "{stderr}"
    );
    assert!(fixture.lock_entries().is_empty());
}

#[test]
fn many_threads_exclude_each_other() {
    let repo = tempfile::tempdir().unwrap();
    let counter = repo.path().join("counter");
    fs::write(&counter, "0").unwrap();
    let threads: Vec<_> = (0..3)
        .map(|thread| {
            let repo = repo.path().to_path_buf();
            let counter = counter.clone();
            std::thread::spawn(move || {
                let identity = LockIdentity::new(format!("worker{thread}@1"), 1);
                let mut done = 0;
                while done < 10 {
                    let wait = LockWait::at_most(Duration::from_secs(1));
                    let Ok(lock) = RepositoryLock::acquire(
                        &repo,
                        identity.clone(),
                        LockMode::Exclusive,
                        &wait,
                    ) else {
                        continue;
                    };
                    // A racy read-modify-write that only the lock keeps correct.
                    let value: u32 = fs::read_to_string(&counter).unwrap().parse().unwrap();
                    std::thread::sleep(Duration::from_millis(2));
                    fs::write(&counter, (value + 1).to_string()).unwrap();
                    lock.release().unwrap();
                    done += 1;
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(fs::read_to_string(&counter).unwrap(), "30");
    assert_eq!(names_in(repo.path()), ["counter"]);
}
