//! Issue 15, item 9: a client that trickles a request one byte every few seconds is never
//! silent, so the idle timeout alone never ends its session, and it keeps the repository
//! lock. A request must arrive within `--request-timeout` of its first byte, and a session
//! may last at most `--session-limit` (policy `request_timeout`, `session_limit`). The borg 2
//! engine, `serve --rest`, has the same clocks and releases the lock objects its client left.
//! Every test waits for the events that matter: the engine's exit and the lock's release.

mod lifecycle;
mod support;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rmpv::Value;

use lifecycle::raw::{RawSession, Reply, object_id};
use lifecycle::scene::Scene;
use support::{Request, RestServer};

/// How long a test waits for something that must happen before it calls it a hang.
const HANG: Duration = Duration::from_secs(20);
/// Slack for process start-up and scheduling on a busy machine.
const SLACK: Duration = Duration::from_secs(2);

impl Scene {
    /// A session holding the exclusive lock in the middle of a transaction.
    fn writer(&self, session: &mut RawSession) {
        self.hold_in_transaction(session, 1000);
    }

    /// Waits for the lock to be released; how long after `since` that was.
    #[track_caller]
    fn lock_freed(&self, since: Instant) -> Duration {
        self.lock_freed_after(since, HANG)
            .expect("the lock is never released")
    }
}

/// Writes `bytes` to the engine's stdin one at a time, `every` apart, until they run out,
/// the engine has gone, or `stop` is set.
fn trickle(session: &mut RawSession, bytes: Vec<u8>, every: Duration) -> Arc<AtomicBool> {
    trickle_into(session.take_stdin().expect("stdin is open"), bytes, every)
}

/// [`trickle`] into any engine's stdin.
fn trickle_into(
    mut stdin: impl Write + Send + 'static,
    bytes: Vec<u8>,
    every: Duration,
) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    thread::spawn(move || {
        for byte in bytes {
            if stopped.load(Ordering::Relaxed) || stdin.write_all(&[byte]).is_err() {
                break;
            }
            thread::sleep(every);
        }
    });
    stop
}

/// Takes the lock in `session`, then trickles a `put` one byte every 250 ms (so the idle
/// timeout never fires) until the engine ends the session; how long after the first byte
/// the lock was free.
#[track_caller]
fn trickle_a_put_while_holding_the_lock(scene: &Scene, session: &mut RawSession) -> Duration {
    scene.writer(session);
    let put = session.encode(
        "put",
        vec![
            ("id", Value::Binary(object_id(2).to_vec())),
            ("data", Value::Binary(vec![3; 200])),
        ],
    );
    let started = Instant::now();
    let stop = trickle(session, put, Duration::from_millis(250));
    let status = session.wait_exit(HANG);
    stop.store(true, Ordering::Relaxed);
    assert!(
        status.is_some(),
        "the engine still serves a client that sends one byte every 250 ms"
    );
    scene.lock_freed(started)
}

#[test]
fn a_client_trickling_a_request_loses_the_lock_at_the_request_deadline() {
    let scene = Scene::new("slowloris-trickle");
    // The idle timeout never fires: a byte arrives every 250 ms.
    let mut session = scene.engine(&["--idle-timeout=1s", "--request-timeout=2s"]);
    let freed = trickle_a_put_while_holding_the_lock(&scene, &mut session);
    assert!(
        freed <= Duration::from_secs(2) + SLACK,
        "the lock was held {freed:?} by a trickling client with --request-timeout=2s"
    );
    assert_eq!(scene.committed_objects(), 0);
    eprintln!("a trickling client lost the lock after {freed:?}");
}

#[test]
fn a_slow_but_steady_request_within_the_deadline_is_served() {
    let scene = Scene::new("slowloris-steady");
    let mut session = scene.engine(&["--request-timeout=10s"]);
    scene.writer(&mut session);
    let put = session.encode(
        "put",
        vec![
            ("id", Value::Binary(object_id(2).to_vec())),
            ("data", Value::Binary(vec![5; 1 << 20])),
        ],
    );
    // A megabyte in 16 pieces over about a second and a half.
    for piece in put.chunks(put.len() / 16 + 1) {
        assert!(session.send_bytes(piece));
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(session.reply(), Reply::Result(Value::Nil));
    assert_eq!(session.commit(), Reply::Result(Value::Nil));
    session.close_stdin();
    assert!(session.wait_exit(HANG).is_some());
    assert_eq!(scene.committed_objects(), 2);
}

/// Sends `__len__` and reads the reply until the engine ends the session (or [`HANG`] has
/// passed); how many it answered.
fn keep_asking(session: &mut RawSession) -> usize {
    let mut answered = 0;
    let started = Instant::now();
    while started.elapsed() < HANG {
        let request = session.encode("__len__", vec![]);
        if !session.send_bytes(&request) {
            return answered;
        }
        match session.try_reply() {
            Some(Reply::Result(_)) => answered += 1,
            Some(other) => panic!("__len__: {other:?}"),
            None => return answered,
        }
        thread::sleep(Duration::from_millis(50));
    }
    answered
}

#[test]
fn a_busy_session_ends_at_its_limit_and_releases_the_lock() {
    let scene = Scene::new("slowloris-limit");
    let started = Instant::now();
    let mut session = scene.engine(&["--idle-timeout=1s", "--session-limit=3s"]);
    scene.writer(&mut session);
    let answered = keep_asking(&mut session);
    let status = session.wait_exit(HANG);
    assert!(status.is_some(), "the engine outlived its session limit");
    assert_eq!(status.unwrap().code(), Some(0));
    let freed = scene.lock_freed(started);
    assert!(answered > 0);
    assert!(
        freed >= Duration::from_millis(2900) && freed <= Duration::from_secs(3) + SLACK,
        "the lock was released {freed:?} after the start, with --session-limit=3s"
    );
    assert_eq!(scene.committed_objects(), 0);
    let log = fs::read_dir(scene.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .map(|p| fs::read_to_string(p).unwrap())
        .collect::<String>();
    assert!(
        log.contains("the session reached the server's limit of 3 s"),
        "{log}"
    );
}

#[test]
fn the_session_limit_also_ends_a_lock_wait() {
    let scene = Scene::new("slowloris-limit-wait");
    let mut holder = scene.engine(&[]);
    scene.writer(&mut holder);
    let started = Instant::now();
    let mut waiter = scene.engine(&["--session-limit=2s"]);
    waiter.send(
        "open",
        vec![
            ("path", Value::from(scene.repo().to_str().unwrap())),
            ("lock_wait", Value::from(600)),
            ("exclusive", Value::from(true)),
        ],
    );
    let reply = waiter.reply_within(HANG);
    assert_eq!(reply, Some(Reply::Exception("LockTimeout".into())));
    assert!(
        started.elapsed() <= Duration::from_secs(2) + SLACK,
        "a lock wait outlived the session limit: {:?}",
        started.elapsed()
    );
    // The session is over: the engine ends it at the next request boundary.
    assert!(waiter.wait_exit(HANG).is_some());
}

/// A borg 2 store served by `serve --rest <extra>` (stderr in `log`), in which this session
/// holds a lock object.
fn rest_lock_holder(store: &Path, extra: &[&str], log: &Path) -> RestServer {
    let mut server = RestServer::engine_logging_to(store, extra, log);
    assert_eq!(server.request(&Request::post("/?cmd=create")).status, 200);
    assert_eq!(
        server
            .request(&Request::store("locks/mine", b"sealed lock"))
            .status,
        200
    );
    server
}

/// The lock objects in a borg 2 store.
fn rest_locks(store: &Path) -> Vec<String> {
    fs::read_dir(store.join("locks"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_borg_2_client_trickling_a_request_loses_its_lock_at_the_request_deadline() {
    let dir = support::temp_dir("slowloris-rest-trickle");
    let store = dir.path().join("store");
    let log = dir.path().join("engine.log");
    // The idle timeout never fires: a byte arrives every 250 ms.
    let mut server = rest_lock_holder(&store, &["--idle-timeout=1s", "--request-timeout=2s"], &log);
    assert_eq!(rest_locks(&store), ["mine"]);
    let store_request = Request::store("packs/ab/ab00", &[3; 200]).bytes();
    let started = Instant::now();
    let stop = trickle_into(
        server.take_input(),
        store_request,
        Duration::from_millis(250),
    );
    let status = server.wait(HANG);
    stop.store(true, Ordering::Relaxed);
    let ended = started.elapsed();
    assert_eq!(
        status.and_then(|status| status.code()),
        Some(0),
        "the engine still serves a client that sends one byte every 250 ms"
    );
    assert!(
        ended <= Duration::from_secs(2) + SLACK,
        "a trickling client kept its session {ended:?} with --request-timeout=2s"
    );
    assert!(rest_locks(&store).is_empty(), "its lock object is released");
    assert!(!store.join("packs/ab/ab00").exists());
    let log = fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("a request was still incomplete 2 s after it began"),
        "{log}"
    );
}

#[test]
fn a_busy_borg_2_session_ends_at_its_limit_and_releases_its_lock() {
    let dir = support::temp_dir("slowloris-rest-limit");
    let store = dir.path().join("store");
    let log = dir.path().join("engine.log");
    let started = Instant::now();
    let mut server = rest_lock_holder(&store, &["--idle-timeout=1s", "--session-limit=3s"], &log);
    let mut answered = 0;
    while started.elapsed() < HANG {
        match server.try_request(&Request::head("/locks/mine")) {
            Some(response) => {
                assert_eq!(response.status, 200);
                answered += 1;
            }
            None => break,
        }
        thread::sleep(Duration::from_millis(50));
    }
    let status = server.wait(HANG);
    let ended = started.elapsed();
    assert_eq!(status.and_then(|status| status.code()), Some(0));
    assert!(answered > 0);
    assert!(
        ended >= Duration::from_millis(2900) && ended <= Duration::from_secs(3) + SLACK,
        "the session ended {ended:?} after the start, with --session-limit=3s"
    );
    assert!(rest_locks(&store).is_empty(), "its lock object is released");
    let log = fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("the session reached the server's limit of 3 s"),
        "{log}"
    );
}

/// A policy file with `repository_extra` in `[repository]`, restricted to `dir`.
fn policy(dir: &Path, name: &str, repository_extra: &str) -> PathBuf {
    let restrict = dir.display().to_string();
    support::write_policy(
        &dir.join(format!("{name}.toml")),
        &restrict,
        repository_extra,
    )
}

fn explain(policy: &Path) -> String {
    support::explained_engine_argv(policy, "borg serve")
}

#[test]
fn the_policy_sets_the_request_deadline_and_the_session_limit_and_explain_shows_them() {
    let dir = support::temp_dir("slowloris-policy");
    let argv = explain(&policy(dir.path(), "default", ""));
    assert!(!argv.contains("--request-timeout"), "{argv}");
    assert!(!argv.contains("--session-limit"), "{argv}");
    let argv = explain(&policy(
        dir.path(),
        "limits",
        "request_timeout = \"90s\"\nsession_limit = \"12h\"",
    ));
    assert!(argv.contains(" --request-timeout=90s"), "{argv}");
    assert!(argv.contains(" --session-limit=43200s"), "{argv}");
    let argv = explain(&policy(dir.path(), "off", "request_timeout = \"0\""));
    assert!(argv.contains(" --request-timeout=0"), "{argv}");

    for (extra, message) in [
        (
            "request_timeout = \"soon\"",
            "request_timeout \"soon\" is not a duration",
        ),
        (
            "session_limit = \"-1h\"",
            "session_limit \"-1h\" is not a duration",
        ),
        (
            "session_limit = \"1h\"\n[engine]\nprogram = \"/usr/bin/borg\"",
            "session_limit needs the built-in engine",
        ),
    ] {
        let bad = policy(dir.path(), "bad", extra);
        let check = support::borg_gate(&["check-policy", &bad.display().to_string()]);
        assert!(!check.status.success(), "{extra}");
        assert!(
            String::from_utf8_lossy(&check.stderr).contains(message),
            "{extra}: {check:?}"
        );
    }
}

#[test]
fn through_the_gate_a_trickling_client_loses_the_lock_as_the_policy_says() {
    let scene = Scene::new("slowloris-gate");
    let policy = policy(
        scene.dir.path(),
        "trickle",
        "idle_timeout = \"1s\"\nrequest_timeout = \"2s\"",
    );
    let mut gate = Command::new(support::cargo_bin());
    gate.arg("--policy")
        .arg(&policy)
        .env_clear()
        .env("PATH", support::SAFE_PATH)
        .env("LANG", "C.UTF-8")
        .env("SSH_ORIGINAL_COMMAND", "borg serve")
        .env("SSH_CONNECTION", "192.0.2.10 50000 192.0.2.1 22");
    let mut session = RawSession::start_command(gate, &scene.log());
    let freed = trickle_a_put_while_holding_the_lock(&scene, &mut session);
    assert!(
        freed <= Duration::from_secs(2) + SLACK,
        "the lock was held {freed:?} with request_timeout = \"2s\""
    );
}
