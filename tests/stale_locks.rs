//! No stale locks: whatever way a client goes away (EOF, a dead pipe, SIGHUP, SIGTERM, or
//! silence past `--idle-timeout`), the engine rolls back, releases the repository lock and
//! exits at once; a lock wait is clamped to `--max-lock-wait`; a waiting client gets a freed
//! lock promptly. Most cases drive the engine with a raw RPC client (exact timing); the last
//! two run real borg clients through a real sshd with a borg-gate policy.

mod lifecycle;
mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rmpv::Value;

use lifecycle::exclusive_lock_present;
use lifecycle::raw::{RawSession, Reply, object_id};
use lifecycle::scene::Scene;
use support::wait_for;

/// How soon after its client left an engine must have exited and freed the lock.
const PROMPTLY: Duration = Duration::from_secs(1);

impl Scene {
    /// An engine holding the exclusive lock, in the middle of a transaction.
    fn writer(&self, extra: &[&str]) -> RawSession {
        let mut session = self.engine(extra);
        self.hold_in_transaction(&mut session, 100_000);
        session
    }

    /// Sends an exclusive `open` of the repository with a 600 s lock wait, without waiting
    /// for the reply (another engine holds the lock).
    fn send_waiting_open(&self, waiter: &mut RawSession) {
        let open = waiter.encode(
            "open",
            vec![
                ("path", Value::from(self.repo().to_str().unwrap())),
                ("lock_wait", Value::from(600)),
                ("exclusive", Value::from(true)),
            ],
        );
        assert!(waiter.send_bytes(&open));
    }

    /// Waits until the lock is free; how long that took.
    #[track_caller]
    fn assert_lock_freed_within(&self, since: Instant, limit: Duration) -> Duration {
        let freed = self
            .lock_freed_after(since, limit + Duration::from_secs(5))
            .unwrap_or_else(|| panic!("the lock is still held after {limit:?}"));
        assert!(
            freed <= limit,
            "the lock was freed after {freed:?}, not within {limit:?}"
        );
        assert!(
            !self.roster().contains("\"exclusive\": [["),
            "an exclusive roster entry stayed behind: {}",
            self.roster()
        );
        freed
    }
}

#[test]
fn eof_mid_transaction_rolls_back_releases_the_lock_and_exits() {
    let scene = Scene::new("stale-eof");
    let mut session = scene.writer(&[]);
    let closed = Instant::now();
    session.close_stdin();
    let status = session
        .wait_exit(Duration::from_secs(10))
        .expect("engine exits");
    assert!(closed.elapsed() <= PROMPTLY, "{:?}", closed.elapsed());
    assert_eq!(status.code(), Some(0));
    scene.assert_lock_freed_within(closed, PROMPTLY);
    assert_eq!(scene.committed_objects(), 0);
}

#[test]
fn sighup_and_sigterm_roll_back_release_the_lock_and_exit() {
    let scene = Scene::new("stale-signals");
    for signal in [Signal::SIGHUP, Signal::SIGTERM] {
        let session = scene.writer(&[]);
        let sent = Instant::now();
        kill(Pid::from_raw(session.pid()), signal).unwrap();
        let mut session = session;
        let status = session
            .wait_exit(Duration::from_secs(10))
            .expect("engine exits");
        assert!(sent.elapsed() <= PROMPTLY, "{signal}: {:?}", sent.elapsed());
        assert_eq!(
            status.code(),
            Some(128 + signal as i32),
            "{signal}: {status:?}"
        );
        scene.assert_lock_freed_within(sent, PROMPTLY);
    }
    assert_eq!(scene.committed_objects(), 0);
}

#[test]
fn a_client_killed_mid_request_frees_the_lock() {
    let scene = Scene::new("stale-epipe");
    let mut session = scene.writer(&[]);
    // Half a request, then the client's end of both pipes closes (as when it is killed).
    let put = session.encode(
        "put",
        vec![
            ("id", Value::Binary(object_id(2).to_vec())),
            ("data", Value::Binary(vec![1; 1 << 20])),
        ],
    );
    assert!(session.send_bytes(&put[..put.len() / 2]));
    std::thread::sleep(Duration::from_millis(200));
    let closed = Instant::now();
    session.hang_up();
    let status = session
        .wait_exit(Duration::from_secs(10))
        .expect("engine exits");
    assert!(closed.elapsed() <= PROMPTLY);
    assert!(status.code().is_some(), "{status:?}");
    scene.assert_lock_freed_within(closed, PROMPTLY);
    assert_eq!(scene.committed_objects(), 0);
}

#[test]
fn idle_timeout_ends_a_silent_session() {
    let scene = Scene::new("stale-idle");
    let mut session = scene.writer(&["--idle-timeout=2s"]);
    let last_request = Instant::now();
    let status = session
        .wait_exit(Duration::from_secs(10))
        .expect("engine exits");
    let after = last_request.elapsed();
    assert!(
        after >= Duration::from_millis(1900) && after <= Duration::from_secs(3),
        "exited {after:?} after the last request"
    );
    assert_eq!(status.code(), Some(0));
    scene.assert_lock_freed_within(last_request, Duration::from_secs(3));
    assert_eq!(scene.committed_objects(), 0);
}

#[test]
fn idle_timeout_ends_a_session_stalled_in_the_middle_of_a_request() {
    let scene = Scene::new("stale-idle-half");
    let mut session = scene.writer(&["--idle-timeout=2s"]);
    let put = session.encode(
        "put",
        vec![
            ("id", Value::Binary(object_id(2).to_vec())),
            ("data", Value::Binary(vec![1; 1 << 20])),
        ],
    );
    assert!(session.send_bytes(&put[..put.len() / 2]));
    let stalled = Instant::now();
    let status = session.wait_exit(Duration::from_secs(8));
    assert!(
        status.is_some(),
        "the engine still waits for the rest of a request {:?} after the client stalled",
        stalled.elapsed()
    );
    assert!(
        stalled.elapsed() <= Duration::from_secs(3),
        "{:?}",
        stalled.elapsed()
    );
    scene.assert_lock_freed_within(stalled, Duration::from_secs(3));
}

/// A session whose client sent requests with large replies and stopped reading them.
fn stop_reading(scene: &Scene, extra: &[&str]) -> RawSession {
    let mut session = scene.writer(extra);
    assert_eq!(session.commit(), Reply::Result(Value::Nil));
    let big = vec![3u8; 4 << 20];
    assert_eq!(session.put(object_id(3), &big), Reply::Result(Value::Nil));
    for _ in 0..16 {
        session.send("get", vec![("id", Value::Binary(object_id(3).to_vec()))]);
    }
    session
}

#[test]
fn idle_timeout_ends_a_session_whose_client_stopped_reading() {
    let scene = Scene::new("stale-idle-write");
    let mut session = stop_reading(&scene, &["--idle-timeout=2s"]);
    let stopped = Instant::now();
    let status = session.wait_exit(Duration::from_secs(8));
    assert!(
        status.is_some(),
        "the engine is still blocked writing to a client that stopped reading"
    );
    assert!(
        stopped.elapsed() <= Duration::from_secs(3),
        "{:?}",
        stopped.elapsed()
    );
    scene.assert_lock_freed_within(stopped, Duration::from_secs(3));
    assert_eq!(scene.committed_objects(), 1);
}

#[test]
fn sigterm_ends_a_session_blocked_on_a_client_that_stopped_reading() {
    let scene = Scene::new("stale-term-write");
    let mut session = stop_reading(&scene, &[]);
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    kill(Pid::from_raw(session.pid()), Signal::SIGTERM).unwrap();
    let status = session.wait_exit(Duration::from_secs(5));
    assert!(
        status.is_some(),
        "SIGTERM did not end an engine blocked on output"
    );
    assert!(sent.elapsed() <= PROMPTLY, "{:?}", sent.elapsed());
    let status = status.unwrap();
    assert!(
        status.code() == Some(128 + Signal::SIGTERM as i32)
            || status.signal() == Some(Signal::SIGTERM as i32),
        "{status:?}"
    );
    scene.assert_lock_freed_within(sent, PROMPTLY);
}

#[test]
fn a_waiting_engine_gives_up_when_its_client_leaves() {
    let scene = Scene::new("stale-waiter");
    let holder = scene.writer(&[]);
    let mut waiter = scene.engine(&[]);
    scene.send_waiting_open(&mut waiter);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        waiter.child.try_wait().unwrap().is_none(),
        "the waiter did not wait"
    );
    let left = Instant::now();
    waiter.close_stdin();
    let status = waiter.wait_exit(Duration::from_secs(5));
    assert!(status.is_some(), "the waiting engine outlived its client");
    assert!(left.elapsed() <= PROMPTLY, "{:?}", left.elapsed());
    let waiter_pid = waiter.pid().to_string();
    assert!(
        !scene.roster().contains(&waiter_pid),
        "the waiter left itself in the roster: {}",
        scene.roster()
    );
    let leftovers: Vec<String> = fs::read_dir(scene.repo())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("lock.exclusive.") && name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(
        exclusive_lock_present(&scene.repo()),
        "the holder lost its lock"
    );
    drop(holder);
}

#[test]
fn lock_wait_is_clamped_to_the_maximum() {
    let scene = Scene::new("stale-clamp");
    let _holder = scene.writer(&[]);
    let mut waiter = scene.engine(&["--max-lock-wait=1"]);
    let asked = Instant::now();
    let reply = waiter.open(&scene.repo(), false, true, 600);
    let waited = asked.elapsed();
    assert_eq!(reply, Reply::Exception("LockTimeout".into()));
    assert!(
        waited >= Duration::from_millis(900) && waited <= Duration::from_secs(3),
        "waited {waited:?} with --max-lock-wait=1"
    );
}

#[test]
fn a_waiting_client_gets_a_freed_lock_at_once_even_with_a_long_lock_wait() {
    let scene = Scene::new("stale-prompt");
    let mut holder = scene.writer(&[]);
    let mut waiter = scene.engine(&["--max-lock-wait=600"]);
    scene.send_waiting_open(&mut waiter);
    std::thread::sleep(Duration::from_millis(2500));
    let released = Instant::now();
    holder.close_stdin();
    assert!(holder.wait_exit(Duration::from_secs(5)).is_some());
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let reply = waiter.reply();
        let _ = tx.send(released.elapsed());
        (reply, waiter)
    });
    let got = rx.recv_timeout(Duration::from_secs(15));
    match got {
        Ok(after) => {
            let (reply, _waiter) = handle.join().unwrap();
            assert!(
                matches!(reply, Reply::Result(Value::Binary(_) | Value::String(_))),
                "{reply:?}"
            );
            assert!(
                after <= Duration::from_millis(1500),
                "the waiter got the lock {after:?} after it was freed"
            );
            eprintln!("the waiter got the lock {after:?} after it was freed");
        }
        Err(_) => panic!("the waiter did not get the freed lock within 15 s"),
    }
}

// ---------------------------------------------------------------------------------------
// Real clients through a real sshd, built-in engine, no keepalive settings anywhere.

struct GateSite {
    dir: tempfile::TempDir,
}

impl GateSite {
    fn new(label: &str) -> GateSite {
        let site = GateSite {
            dir: support::temp_dir(label),
        };
        for sub in ["repos", "source", "etc"] {
            fs::create_dir(site.path(sub)).unwrap();
        }
        support::make_tree(&site.path("source"));
        lifecycle::write_random(&site.path("source/big.bin"), 99, 60 << 20);
        site
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn policy(&self, name: &str, repository_extra: &str) -> PathBuf {
        self.policy_with_max_lock_wait(name, repository_extra, 600)
    }

    fn policy_with_max_lock_wait(&self, name: &str, repository_extra: &str, max: u32) -> PathBuf {
        let text = format!(
            "version = 1\nname = \"{name}\"\n[client]\nprograms = [\"borg\"]\nallow_probe = true\n\
             log_levels = [\"warning\", \"info\"]\nlock_wait = {{ default = 1, max = {max} }}\n\
             [repository]\nrestrict_to_paths = [\"{}\"]\n{repository_extra}\n[audit]\nfile = \"{}\"\n",
            self.path("repos").display(),
            self.path("audit.jsonl").display()
        );
        let path = self.path(&format!("etc/{name}.toml"));
        support::write_file(&path, text.as_bytes(), 0o600);
        path
    }

    /// A BORG_RSH that records the ssh client's pid in `ssh.pid`, then becomes ssh.
    fn recording_rsh(&self, sshd: &support::Sshd) -> String {
        let script = self.path("rsh.sh");
        fs::write(
            &script,
            format!(
                "#!/bin/sh\necho $$ > {pid}.tmp && mv {pid}.tmp {pid}\nexec {ssh} \"$@\"\n",
                pid = self.path("ssh.pid").display(),
                ssh = sshd.rsh(0)
            ),
        )
        .unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        script.display().to_string()
    }

    fn ssh_pid(&self) -> Option<i32> {
        fs::read_to_string(self.path("ssh.pid"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
    }
}

/// Through `sshd`, with a BORG_RSH that records the ssh pid: inits `repos/repo`, starts a long
/// `borg create` and waits until it holds the lock and is sending data. Returns the BORG_RSH,
/// the repository URL and the running client.
fn backup_in_progress(
    site: &GateSite,
    client: &support::BorgClient,
    sshd: &support::Sshd,
) -> (String, String, std::process::Child) {
    use std::os::unix::process::CommandExt;
    let rsh = site.recording_rsh(sshd);
    let url = sshd.url(site.path("repos/repo"));
    client
        .run(
            &["init", "--encryption", "repokey", &url],
            &[("BORG_RSH", rsh.as_str())],
            Some(lifecycle::PASSPHRASE),
        )
        .assert_success();
    let mut command = client.command(
        &site.path("source"),
        &["create", &format!("{url}::running"), "."],
        &[("BORG_RSH", rsh.as_str())],
        Some(lifecycle::PASSPHRASE),
    );
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0);
    let child = command.spawn().unwrap();
    let repo = site.path("repos/repo");
    let busy = wait_for(Duration::from_secs(60), || {
        (exclusive_lock_present(&repo) && lifecycle::segment_numbers(&repo).len() > 3).then_some(())
    });
    assert!(busy.is_some(), "the backup never got going");
    (rsh, url, child)
}

fn sshd_available() -> Option<()> {
    support::require_root()?;
    support::require_tool("/usr/sbin/sshd")?;
    Some(())
}

#[test]
fn killed_ssh_client_mid_backup_frees_the_lock_within_two_seconds() {
    support::require!(sshd_available());
    let client = support::require!(support::borg14());
    let site = GateSite::new("stale-ssh-kill");
    let sshd = support::Sshd::start(&[support::AuthorizedKey::borg_gate(&site.policy("kill", ""))]);
    let (rsh, url, mut backup) = backup_in_progress(&site, &client, &sshd);
    let env = [("BORG_RSH", rsh.as_str())];
    let ssh = site.ssh_pid().expect("ssh pid");
    let killed = Instant::now();
    kill(Pid::from_raw(ssh), Signal::SIGKILL).unwrap();
    let freed = wait_for(Duration::from_secs(10), || {
        (!exclusive_lock_present(&site.path("repos/repo"))).then(|| killed.elapsed())
    });
    let other_client = support::borg14().unwrap();
    let second = other_client.run(
        &["list", "--lock-wait", "2", &url],
        &env,
        Some(lifecycle::PASSPHRASE),
    );
    let _ = backup.kill();
    let _ = backup.wait();
    let freed = freed.expect("the lock was never freed");
    assert!(
        freed <= Duration::from_secs(2),
        "lock freed {freed:?} after the kill"
    );
    second.assert_success();
    eprintln!("killed ssh client: lock freed after {freed:?}");
}

#[test]
fn frozen_client_with_idle_timeout_frees_the_lock_within_five_seconds() {
    support::require!(sshd_available());
    let client = support::require!(support::borg14());
    let site = GateSite::new("stale-ssh-stop");
    let sshd = support::Sshd::start(&[support::AuthorizedKey::borg_gate(
        &site.policy("frozen", "idle_timeout = \"3s\""),
    )]);
    let (rsh, url, mut backup) = backup_in_progress(&site, &client, &sshd);
    let env = [("BORG_RSH", rsh.as_str())];
    // The whole client side stops: borg and its ssh, mid-transfer; the TCP connection stays.
    let group = Pid::from_raw(backup.id() as i32);
    let frozen = Instant::now();
    nix::sys::signal::killpg(group, Signal::SIGSTOP).unwrap();
    let freed = wait_for(Duration::from_secs(15), || {
        (!exclusive_lock_present(&site.path("repos/repo"))).then(|| frozen.elapsed())
    });
    // Another machine: this client's own cache lock is held by the frozen borg, and a
    // client waiting for a local lock for longer than the idle timeout is cut off too.
    let other_client = support::borg14().unwrap();
    let second = other_client.run(
        &["list", "--lock-wait", "5", &url],
        &env,
        Some(lifecycle::PASSPHRASE),
    );
    let _ = nix::sys::signal::killpg(group, Signal::SIGKILL);
    let _ = nix::sys::signal::killpg(group, Signal::SIGCONT);
    let _ = backup.wait();
    let freed = freed.expect("the lock was never freed");
    assert!(
        freed <= Duration::from_secs(5),
        "lock freed {freed:?} after the freeze"
    );
    assert!(
        second.success(),
        "{second}\n--- audit ---\n{}\n--- sshd ---\n{}",
        fs::read_to_string(site.path("audit.jsonl")).unwrap_or_default(),
        sshd.log()
    );
    eprintln!("frozen client: lock freed after {freed:?}");
}

#[test]
fn the_policy_clamps_the_lock_wait_a_real_client_asks_for() {
    support::require!(sshd_available());
    let client = support::require!(support::borg14());
    let site = GateSite::new("stale-ssh-clamp");
    let sshd = support::Sshd::start(&[support::AuthorizedKey::borg_gate(
        &site.policy_with_max_lock_wait("clamp", "", 2),
    )]);
    let rsh = sshd.rsh(0);
    let url = sshd.url(site.path("repos/repo"));
    let env = [("BORG_RSH", rsh.as_str())];
    client
        .run(&["init", "--encryption", "none", &url], &env, None)
        .assert_success();
    // A holder keeps the lock for a while (through the gate too).
    let mut holder = client
        .command(
            &site.path("source"),
            &["with-lock", &url, "sleep", "30"],
            &env,
            None,
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let held = wait_for(Duration::from_secs(60), || {
        exclusive_lock_present(&site.path("repos/repo")).then_some(())
    });
    assert!(held.is_some(), "the holder never got the lock");
    let other_client = support::borg14().unwrap();
    let waiter = other_client.run(&["list", "--lock-wait", "600", &url], &env, None);
    let _ = holder.kill();
    let _ = holder.wait();
    waiter
        .assert_failure()
        .assert_stderr_contains("Failed to create/acquire the lock");
    // 2 s of waiting, plus starting Python and ssh.
    assert!(
        waiter.elapsed < Duration::from_secs(8),
        "the client waited {:?} although the policy allows 2 s",
        waiter.elapsed
    );
    eprintln!(
        "a client asking for 600 s gave up after {:?}",
        waiter.elapsed
    );
}
