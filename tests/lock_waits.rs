//! Issue 15, item 1: every lock wait of the engine is bounded by the session's clamped lock
//! wait and ends early when the client leaves, on SIGTERM/SIGHUP and at the idle timeout;
//! two sessions that both need to upgrade a shared lock never wait for each other. Driven
//! with a raw RPC client (borg clients send the old-client `open` only on request), and with
//! real borg clients where they reach the same path: a `borg list` of a repository whose
//! index is behind its segments upgrades its lock to replay them.

mod lifecycle;
mod support;

use std::fs;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rmpv::Value;

use lifecycle::raw::{RawSession, Reply, object_id};
use lifecycle::scene::Scene;

/// How soon an engine must react to its client leaving or to a signal.
const PROMPTLY: Duration = Duration::from_secs(2);
/// How long a test waits for something that must happen before it calls it a hang.
const HANG: Duration = Duration::from_secs(20);

/// The repository every test starts from: one committed object.
fn scene(label: &str) -> Scene {
    Scene::with_objects(label, &[(1, b"one")])
}

impl Scene {
    fn has_index(&self) -> bool {
        fs::read_dir(self.repo()).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("index.")
        })
    }

    /// An engine holding a shared lock (borg's `exclusive=False`, as `borg list` opens).
    fn reader(&self, lock_wait: u64) -> RawSession {
        let mut session = self.engine(&[]);
        assert!(matches!(
            session.open(&self.repo(), false, false, lock_wait),
            Reply::Result(_)
        ));
        session
    }

    /// An engine opened the way clients before borg 1.0.7 open: no `exclusive` argument,
    /// so the shared lock is upgraded at the first write.
    fn old_client(&self, extra: &[&str], lock_wait: u64) -> RawSession {
        let mut session = self.engine(extra);
        let reply = session.call(
            "open",
            vec![
                ("path", Value::from(self.repo().to_str().unwrap())),
                ("create", Value::from(false)),
                ("lock_wait", Value::from(lock_wait)),
                ("lock", Value::from(true)),
            ],
        );
        assert!(matches!(reply, Reply::Result(_)), "open: {reply:?}");
        session
    }
}

/// The request whose reply decides a test, sent without waiting for the reply.
fn send_write(session: &mut RawSession, method: &str) {
    match method {
        "put" => session.send(
            "put",
            vec![
                ("id", Value::Binary(object_id(2).to_vec())),
                ("data", Value::Binary(b"two".to_vec())),
            ],
        ),
        "delete" => session.send("delete", vec![("id", Value::Binary(object_id(1).to_vec()))]),
        "commit" => session.send("commit", vec![("compact", Value::from(false))]),
        other => panic!("not a write: {other}"),
    }
}

/// The reply, or a failed test (after killing the engine, so no process is left behind).
#[track_caller]
fn reply_or_fail(session: &mut RawSession, within: Duration, what: &str) -> Reply {
    match session.reply_within(within) {
        Some(reply) => reply,
        None => {
            let _ = session.child.kill();
            panic!("{what}: no reply within {within:?}; the engine still waits");
        }
    }
}

#[test]
fn two_readers_that_both_must_replay_never_wait_for_each_other() {
    let scene = scene("waits-two-readers");
    scene.put_index_behind();
    let mut first = scene.reader(600);
    let mut second = scene.reader(600);
    // Both need the index, which must be rebuilt under the exclusive lock; each holds a
    // shared lock the other would have to wait for.
    first.send("__len__", vec![]);
    second.send("__len__", vec![]);
    let started = Instant::now();
    let (mut loser, mut winner) = loop {
        if let Some(reply) = first.reply_within(Duration::from_millis(20)) {
            assert_eq!(reply, Reply::Exception("LockTimeout".into()));
            break (first, second);
        }
        if let Some(reply) = second.reply_within(Duration::from_millis(20)) {
            assert_eq!(reply, Reply::Exception("LockTimeout".into()));
            break (second, first);
        }
        if started.elapsed() > HANG {
            let _ = first.child.kill();
            let _ = second.child.kill();
            panic!("both readers still wait for each other after {HANG:?}");
        }
    };
    let gave_up = started.elapsed();
    assert!(
        gave_up <= Duration::from_secs(10),
        "one reader gave up only after {gave_up:?}, with a 600 s lock wait"
    );
    // The loser's client goes away (as a borg client does after an error); the winner then
    // gets its lock and replays.
    loser.close_stdin();
    assert!(loser.wait_exit(HANG).is_some());
    let reply = reply_or_fail(&mut winner, HANG, "the remaining reader");
    assert_eq!(reply, Reply::Result(Value::from(1)));
    assert!(scene.has_index(), "the replay wrote no index");
    eprintln!("the second upgrader gave up after {gave_up:?}");
}

#[test]
fn an_old_client_write_waits_for_its_lock_upgrade_no_longer_than_its_lock_wait() {
    let scene = scene("waits-old-client");
    let _reader = scene.reader(1);
    for method in ["put", "delete", "commit"] {
        let mut writer = scene.old_client(&[], 1);
        let sent = Instant::now();
        send_write(&mut writer, method);
        let reply = reply_or_fail(&mut writer, HANG, method);
        let waited = sent.elapsed();
        assert_eq!(reply, Reply::Exception("LockTimeout".into()), "{method}");
        assert!(
            waited >= Duration::from_millis(900) && waited <= Duration::from_secs(5),
            "{method}: the upgrade gave up after {waited:?} with a 1 s lock wait"
        );
        // borg's rule: a failed upgrade leaves the shared lock held; the session goes on.
        assert_eq!(
            writer.call("__len__", vec![]),
            Reply::Result(Value::from(1))
        );
    }
}

#[test]
fn the_policy_maximum_bounds_a_lock_upgrade_too() {
    let scene = scene("waits-upgrade-clamp");
    let _reader = scene.reader(1);
    let mut writer = scene.old_client(&["--max-lock-wait=1"], 600);
    let sent = Instant::now();
    send_write(&mut writer, "put");
    let reply = reply_or_fail(&mut writer, HANG, "put");
    assert_eq!(reply, Reply::Exception("LockTimeout".into()));
    let waited = sent.elapsed();
    assert!(
        waited <= Duration::from_secs(5),
        "the upgrade waited {waited:?} with --max-lock-wait=1"
    );
}

/// An old client with a 600 s lock wait, blocked in its lock upgrade behind `reader`.
fn blocked_upgrader(scene: &Scene, extra: &[&str]) -> RawSession {
    let mut writer = scene.old_client(extra, 600);
    send_write(&mut writer, "put");
    assert_eq!(
        writer.reply_within(Duration::from_millis(500)),
        None,
        "the upgrade did not wait"
    );
    writer
}

#[test]
fn a_lock_upgrade_ends_when_the_client_leaves() {
    let scene = scene("waits-upgrade-eof");
    let _reader = scene.reader(1);
    let mut writer = blocked_upgrader(&scene, &[]);
    let left = Instant::now();
    writer.close_stdin();
    let status = writer.wait_exit(HANG);
    assert!(status.is_some(), "the upgrading engine outlived its client");
    assert!(left.elapsed() <= PROMPTLY, "{:?}", left.elapsed());
    let pid = writer.pid().to_string();
    assert!(
        !scene.roster().contains(&pid),
        "the engine left itself in the roster: {}",
        scene.roster()
    );
}

#[test]
fn a_lock_upgrade_ends_on_sigterm_and_sighup() {
    let scene = scene("waits-upgrade-signal");
    let _reader = scene.reader(1);
    for signal in [Signal::SIGTERM, Signal::SIGHUP] {
        let mut writer = blocked_upgrader(&scene, &[]);
        let sent = Instant::now();
        kill(Pid::from_raw(writer.pid()), signal).unwrap();
        let status = writer.wait_exit(HANG);
        assert!(status.is_some(), "{signal} did not end an upgrading engine");
        assert!(sent.elapsed() <= PROMPTLY, "{signal}: {:?}", sent.elapsed());
        assert_eq!(status.unwrap().code(), Some(128 + signal as i32));
        let pid = writer.pid().to_string();
        assert!(!scene.roster().contains(&pid), "{}", scene.roster());
    }
}

#[test]
fn a_lock_upgrade_ends_at_the_idle_timeout() {
    let scene = scene("waits-upgrade-idle");
    let _reader = scene.reader(1);
    let mut writer = scene.old_client(&["--idle-timeout=2s"], 600);
    let sent = Instant::now();
    send_write(&mut writer, "put");
    let reply = reply_or_fail(&mut writer, HANG, "put");
    let waited = sent.elapsed();
    assert_eq!(reply, Reply::Exception("LockTimeout".into()));
    assert!(
        waited >= Duration::from_millis(1900) && waited <= Duration::from_secs(5),
        "the upgrade gave up after {waited:?} with --idle-timeout=2s"
    );
    // Silent afterwards: the idle timeout ends the session and frees its shared lock.
    assert!(writer.wait_exit(HANG).is_some());
    let pid = writer.pid().to_string();
    assert!(!scene.roster().contains(&pid), "{}", scene.roster());
}

#[test]
fn real_clients_listing_a_repository_whose_index_is_behind_give_up_with_borgs_message() {
    for client in support::borg_clients() {
        let scene = Scene {
            dir: support::temp_dir("waits-real-list"),
        };
        let rsh = write_rsh(&scene);
        let env = [("BORG_RSH", rsh.as_str())];
        let url = format!("ssh://engine{}", scene.repo().display());
        client
            .run(&["init", "--encryption", "none", &url], &env, None)
            .assert_success();
        fs::create_dir(scene.dir.path().join("source")).unwrap();
        fs::write(scene.dir.path().join("source/file"), b"behind\n").unwrap();
        client
            .run_in(
                &scene.dir.path().join("source"),
                &["create", &format!("{url}::a"), "."],
                &env,
                None,
            )
            .assert_success();
        scene.put_index_behind();

        // Another reader holds a shared lock, so the replay's lock upgrade cannot succeed.
        let mut reader = scene.reader(600);
        let list = client.run(&["list", "--lock-wait", "2", &url], &env, None);
        list.assert_failure()
            .assert_stderr_contains("Failed to create/acquire the lock")
            .assert_stderr_contains("(timeout)");
        assert!(
            list.elapsed < Duration::from_secs(30),
            "{}: borg list gave up only after {:?}",
            client.label,
            list.elapsed
        );

        // Two upgraders: the raw reader asks for the index first and waits for the shared
        // lock of a third session; borg list, which must replay too, gives up at once
        // instead of waiting 600 s for a reader that waits for it.
        let mut third = scene.reader(1);
        reader.send("__len__", vec![]);
        assert_eq!(
            reader.reply_within(Duration::from_millis(500)),
            None,
            "the raw reader did not wait for its upgrade"
        );
        let list = client.run(&["list", "--lock-wait", "600", &url], &env, None);
        list.assert_failure()
            .assert_stderr_contains("Failed to create/acquire the lock");
        assert!(
            list.elapsed < Duration::from_secs(30),
            "{}: a second upgrader waited {:?} for the first",
            client.label,
            list.elapsed
        );
        for session in [&mut reader, &mut third] {
            session.close_stdin();
            assert!(session.wait_exit(HANG).is_some());
        }
        // Nobody else is left: borg list replays and lists.
        let list = client.run(&["list", "--short", &url], &env, None);
        list.assert_success();
        assert_eq!(list.stdout_text(), "a\n");
        assert!(scene.has_index());
    }
}

/// A BORG_RSH script that runs the engine restricted to the scene's directory.
fn write_rsh(scene: &Scene) -> String {
    use std::os::unix::fs::PermissionsExt;
    let script = scene.dir.path().join("rsh.sh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec {} serve --restrict-to-path {}\n",
            support::cargo_bin().display(),
            scene.dir.path().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    script.display().to_string()
}
