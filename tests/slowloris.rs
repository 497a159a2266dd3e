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
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rmpv::Value;

use lifecycle::exclusive_lock_present;
use lifecycle::raw::{RawSession, Reply, object_id};
use support::wait_for;
use support::{Request, RestServer};

/// How long a test waits for something that must happen before it calls it a hang.
const HANG: Duration = Duration::from_secs(20);
/// Slack for process start-up and scheduling on a busy machine.
const SLACK: Duration = Duration::from_secs(2);

struct Scene {
    dir: tempfile::TempDir,
}

impl Scene {
    /// A temp dir with an empty, committed repository `repo`.
    fn new(label: &str) -> Scene {
        let scene = Scene {
            dir: support::temp_dir(label),
        };
        let mut session = scene.engine(&[]);
        assert!(matches!(
            session.open(&scene.repo(), true, true, 1),
            Reply::Result(_)
        ));
        assert_eq!(session.commit(), Reply::Result(Value::Nil));
        session.close_stdin();
        assert!(session.wait_exit(HANG).is_some());
        scene
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    fn log(&self) -> PathBuf {
        static ENGINES: AtomicUsize = AtomicUsize::new(0);
        self.dir.path().join(format!(
            "engine-{}.log",
            ENGINES.fetch_add(1, Ordering::Relaxed)
        ))
    }

    fn engine(&self, extra: &[&str]) -> RawSession {
        let restrict = format!("--restrict-to-path={}", self.dir.path().display());
        let mut args = vec![restrict.as_str()];
        args.extend_from_slice(extra);
        RawSession::start(&args, &self.log())
    }

    /// A session holding the exclusive lock in the middle of a transaction.
    fn writer(&self, session: &mut RawSession) {
        assert!(matches!(
            session.open(&self.repo(), false, true, 1),
            Reply::Result(_)
        ));
        assert_eq!(
            session.put(object_id(1), &[7; 1000]),
            Reply::Result(Value::Nil)
        );
        assert!(exclusive_lock_present(&self.repo()));
    }

    /// Waits for the lock to be released; how long after `since` that was.
    #[track_caller]
    fn lock_freed_after(&self, since: Instant) -> Duration {
        wait_for(HANG, || {
            (!exclusive_lock_present(&self.repo())).then(|| since.elapsed())
        })
        .expect("the lock is never released")
    }

    /// The objects a fresh session sees (0: the abandoned transaction was rolled back).
    fn committed_objects(&self) -> i64 {
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

#[test]
fn a_client_trickling_a_request_loses_the_lock_at_the_request_deadline() {
    let scene = Scene::new("slowloris-trickle");
    // The idle timeout never fires: a byte arrives every 250 ms.
    let mut session = scene.engine(&["--idle-timeout=1s", "--request-timeout=2s"]);
    scene.writer(&mut session);
    let put = session.encode(
        "put",
        vec![
            ("id", Value::Binary(object_id(2).to_vec())),
            ("data", Value::Binary(vec![3; 200])),
        ],
    );
    let started = Instant::now();
    let stop = trickle(&mut session, put, Duration::from_millis(250));
    let status = session.wait_exit(HANG);
    stop.store(true, Ordering::Relaxed);
    assert!(
        status.is_some(),
        "the engine still serves a client that sends one byte every 250 ms"
    );
    let freed = scene.lock_freed_after(started);
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
    let freed = scene.lock_freed_after(started);
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
    let path = dir.join(format!("{name}.toml"));
    fs::write(
        &path,
        format!(
            "version = 1\n[repository]\nrestrict_to_paths = [\"{}\"]\n{repository_extra}\n[audit]\nfile = \"{}\"\n",
            dir.display(),
            dir.join("audit.jsonl").display()
        ),
    )
    .unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn explain(policy: &Path) -> String {
    let output = Command::new(support::cargo_bin())
        .args(["explain", "--policy"])
        .arg(policy)
        .args(["--command", "borg serve"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    text.lines()
        .find(|line| line.starts_with("engine argv:"))
        .unwrap_or_else(|| panic!("no engine argv in {text}"))
        .to_owned()
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
        let check = Command::new(support::cargo_bin())
            .arg("check-policy")
            .arg(&bad)
            .output()
            .unwrap();
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
    scene.writer(&mut session);
    let put = session.encode(
        "put",
        vec![
            ("id", Value::Binary(object_id(2).to_vec())),
            ("data", Value::Binary(vec![3; 200])),
        ],
    );
    let started = Instant::now();
    let stop = trickle(&mut session, put, Duration::from_millis(250));
    let status = session.wait_exit(HANG);
    stop.store(true, Ordering::Relaxed);
    assert!(
        status.is_some(),
        "the engine still serves a trickling client"
    );
    let freed = scene.lock_freed_after(started);
    assert!(
        freed <= Duration::from_secs(2) + SLACK,
        "the lock was held {freed:?} with request_timeout = \"2s\""
    );
}
