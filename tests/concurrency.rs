//! Concurrency and load: many clients at once through a real sshd, several clients on one
//! repository (writers serialise, readers share, losers time out with borg's message), and
//! local borg next to `borg-gate serve` on one repository. Real borg checks every repository
//! afterwards. (200 concurrent gate invocations on one audit file: tests/gate_cli.rs,
//! `concurrent_sessions_write_intact_audit_lines`.)

mod support;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rmpv::Value;
use support::{AuthorizedKey, BorgClient, Sshd, require};

const LOCK_TIMEOUT_TEXT: &str = "Failed to create/acquire the lock";

/// A directory with a source tree and a BORG_RSH script that runs `borg-gate serve`
/// restricted to `<dir>/repos`, as sshd would with a forced command.
struct Site {
    dir: tempfile::TempDir,
    rsh: String,
}

impl Site {
    fn new(label: &str) -> Site {
        let dir = support::temp_dir(label);
        for sub in ["repos", "source"] {
            fs::create_dir(dir.path().join(sub)).unwrap();
        }
        support::write_file(&dir.path().join("source/file"), b"concurrency\n", 0o644);
        let script = dir.path().join("rsh.sh");
        fs::write(
            &script,
            format!(
                "#!/bin/sh\nshift\nSSH_ORIGINAL_COMMAND=\"$*\"\nexport SSH_ORIGINAL_COMMAND\n\
                 exec {} serve --restrict-to-path {}\n",
                support::cargo_bin().display(),
                dir.path().join("repos").display()
            ),
        )
        .unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        Site {
            rsh: script.display().to_string(),
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn repo(&self) -> PathBuf {
        self.path("repos/repo")
    }

    fn url(&self) -> String {
        format!("ssh://engine{}", self.repo().display())
    }

    /// Real borg through the engine.
    #[track_caller]
    fn remote(&self, client: &BorgClient, args: &[&str]) -> support::CmdOutput {
        client.run_in(&self.path("source"), args, &[("BORG_RSH", &self.rsh)], None)
    }

    /// Makes the repository with local borg and one archive.
    fn init(&self, client: &BorgClient) {
        let repo = self.repo();
        let repo = repo.to_str().unwrap();
        client
            .run(&["init", "--encryption=none", repo], &[], None)
            .assert_success();
        client
            .run_in(
                &self.path("source"),
                &["create", &format!("{repo}::first"), "."],
                &[],
                None,
            )
            .assert_success();
    }

    /// Real borg (local) checks the repository and lists these archives.
    #[track_caller]
    fn assert_clean(&self, client: &BorgClient, archives: &[&str]) {
        let repo = self.repo();
        let repo = repo.to_str().unwrap();
        client.run(&["check", repo], &[], None).assert_success();
        let list = client.run(&["list", "--short", repo], &[], None);
        list.assert_success();
        let mut names: Vec<String> = list.stdout_text().lines().map(str::to_owned).collect();
        names.sort();
        let mut expected: Vec<String> = archives.iter().map(|a| (*a).to_owned()).collect();
        expected.sort();
        assert_eq!(names, expected, "{list}");
        for lock in ["lock.exclusive", "lock.roster"] {
            assert!(!self.repo().join(lock).exists(), "{lock} left behind");
        }
    }

    /// An RPC session with `borg-gate serve` that holds what it opens until dropped.
    fn session(&self) -> Session {
        let mut child = Command::new(support::cargo_bin())
            .args(["serve", "--restrict-to-path"])
            .arg(self.path("repos"))
            .env_clear()
            .env("PATH", support::SAFE_PATH)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Session {
            stdin: Some(child.stdin.take().unwrap()),
            stdout: child.stdout.take().unwrap(),
            child,
            msgid: 0,
        }
    }
}

/// A hand-driven client of `borg-gate serve`.
struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    msgid: u64,
}

impl Session {
    /// `open` with a lock; Ok(()) or the exception class.
    fn open(&mut self, repo: &Path, exclusive: bool, lock_wait: u32) -> Result<(), String> {
        self.msgid += 1;
        let args = Value::Map(vec![
            (Value::from("path"), Value::from(repo.to_str().unwrap())),
            (Value::from("lock"), Value::from(true)),
            (Value::from("exclusive"), Value::from(exclusive)),
            (Value::from("lock_wait"), Value::from(lock_wait)),
        ]);
        let message = Value::Map(vec![
            (Value::from("i"), Value::from(self.msgid)),
            (Value::from("m"), Value::from("open")),
            (Value::from("a"), args),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &message).unwrap();
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(&bytes).unwrap();
        stdin.flush().unwrap();
        let reply = rmpv::decode::read_value(&mut self.stdout).unwrap();
        let class = reply
            .as_map()
            .unwrap()
            .iter()
            .find(|(key, _)| key.as_str() == Some("exception_class"))
            .map(|(_, value)| value.as_str().unwrap().to_owned());
        class.map_or(Ok(()), Err)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // EOF: the server rolls back, releases the lock and exits.
        drop(self.stdin.take());
        if support::wait_exit(&mut self.child, Duration::from_secs(30)).is_none() {
            let _ = self.child.kill();
            panic!("the server did not exit after EOF");
        }
    }
}

#[test]
fn thirty_two_clients_on_thirty_two_repositories_through_sshd() {
    require!(support::require_root());
    require!(support::require_tool("/usr/sbin/sshd"));
    let borg = require!(support::borg14());
    let dir = support::temp_dir("concurrency-sshd");
    fs::create_dir(dir.path().join("repos")).unwrap();
    fs::create_dir(dir.path().join("source")).unwrap();
    support::write_file(&dir.path().join("source/file"), b"thirty-two\n", 0o644);
    let policy = dir.path().join("policy.toml");
    fs::write(
        &policy,
        format!(
            "version = 1\n[client]\nallow_probe = true\nlock_wait = {{ default = 30, max = 60 }}\n\
             [repository]\nrestrict_to_paths = [\"{}\"]\n[audit]\nfile = \"{}\"\n",
            dir.path().join("repos").display(),
            dir.path().join("audit.jsonl").display()
        ),
    )
    .unwrap();
    fs::set_permissions(&policy, fs::Permissions::from_mode(0o600)).unwrap();
    let sshd = Sshd::start(&[AuthorizedKey::borg_gate(&policy)]);
    let rsh = sshd.rsh(0);
    let started = Instant::now();
    let failures: Vec<String> = thread::scope(|scope| {
        let workers: Vec<_> = (0..32)
            .map(|n| {
                let (sshd, rsh, dir, borg) = (&sshd, &rsh, dir.path(), &borg);
                scope.spawn(move || {
                    let url = sshd.url(dir.join(format!("repos/repo{n:02}")));
                    let env = [("BORG_RSH", rsh.as_str())];
                    let source = dir.join("source");
                    let init =
                        borg.run_in(&source, &["init", "--encryption=none", &url], &env, None);
                    if !init.success() {
                        return Some(format!("{init}"));
                    }
                    let archive = format!("{url}::n{n}");
                    let create = borg.run_in(&source, &["create", &archive, "."], &env, None);
                    (!create.success()).then(|| format!("{create}"))
                })
            })
            .collect();
        workers
            .into_iter()
            .filter_map(|w| w.join().unwrap())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} clients failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("32 clients: init and create in {:?}", started.elapsed());
    // Every repository checks clean with local borg, four at a time.
    let repos: Vec<PathBuf> = (0..32)
        .map(|n| dir.path().join(format!("repos/repo{n:02}")))
        .collect();
    for chunk in repos.chunks(8) {
        thread::scope(|scope| {
            for repo in chunk {
                let borg = &borg;
                scope.spawn(move || {
                    borg.run(&["check", repo.to_str().unwrap()], &[], None)
                        .assert_success();
                });
            }
        });
    }
    let audit = fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    // The gate's decision and the engine's session_end, each one intact line.
    let events: Vec<String> = audit
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            record["event"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    for event in ["decision", "session_end"] {
        assert_eq!(
            events.iter().filter(|e| *e == event).count(),
            64,
            "one {event} line per session"
        );
    }
}

#[test]
fn writers_serialise_readers_share_and_losers_get_lock_timeout() {
    let borg = require!(support::borg14());
    let site = Site::new("concurrency-lock");
    site.init(&borg);
    let repo = site.repo();
    let url = site.url();

    // A writer holds the lock: a reader and a writer both time out with borg's message.
    {
        let mut writer = site.session();
        writer.open(&repo, true, 1).unwrap();
        let list = site.remote(&borg, &["list", "--lock-wait", "1", &url]);
        list.assert_failure()
            .assert_stderr_contains(LOCK_TIMEOUT_TEXT);
        let create = site.remote(
            &borg,
            &["create", "--lock-wait", "1", &format!("{url}::lost"), "."],
        );
        create
            .assert_failure()
            .assert_stderr_contains(LOCK_TIMEOUT_TEXT);
        let mut second = site.session();
        assert_eq!(second.open(&repo, true, 1), Err("LockTimeout".to_owned()));
    }

    // Readers share: two sessions and a real `borg list` at once; a writer times out.
    {
        let mut first = site.session();
        let mut second = site.session();
        first.open(&repo, false, 1).unwrap();
        second.open(&repo, false, 1).unwrap();
        site.remote(&borg, &["list", "--lock-wait", "1", &url])
            .assert_success()
            .assert_stdout_contains("first");
        let mut writer = site.session();
        assert_eq!(writer.open(&repo, true, 1), Err("LockTimeout".to_owned()));
    }

    // Four writers at once all get their turn.
    let names = ["w0", "w1", "w2", "w3"];
    thread::scope(|scope| {
        for name in names {
            let (site, borg, url) = (&site, &borg, &url);
            scope.spawn(move || {
                site.remote(
                    borg,
                    &[
                        "create",
                        "--lock-wait",
                        "120",
                        &format!("{url}::{name}"),
                        ".",
                    ],
                )
                .assert_success();
            });
        }
    });
    site.assert_clean(&borg, &["first", "w0", "w1", "w2", "w3"]);
}

#[test]
fn local_borg_and_the_engine_exclude_each_other() {
    let borg = require!(support::borg14());
    let site = Site::new("concurrency-local");
    site.init(&borg);
    let repo = site.repo();
    let repo_arg = repo.to_str().unwrap();

    // Local borg holds the lock (`borg with-lock`): the engine's open times out.
    let marker = site.path("holding");
    let script = format!("touch {}; sleep 4", marker.display());
    let mut holder = borg.command(
        site.dir.path(),
        &["with-lock", repo_arg, "sh", "-c", &script],
        &[],
        None,
    );
    let mut holder = holder.stdout(Stdio::null()).spawn().unwrap();
    let ran = support::wait_until(Duration::from_secs(60), || {
        assert!(
            holder.try_wait().unwrap().is_none() || marker.exists(),
            "borg with-lock failed"
        );
        marker.exists()
    });
    assert!(ran, "borg with-lock never ran its command");
    let mut session = site.session();
    assert_eq!(session.open(&repo, true, 1), Err("LockTimeout".to_owned()));
    let mut reader = site.session();
    assert_eq!(reader.open(&repo, false, 1), Err("LockTimeout".to_owned()));
    assert!(holder.wait().unwrap().success());
    drop((session, reader));

    // The engine holds the lock: local borg times out, then succeeds once it is released.
    {
        let mut session = site.session();
        session.open(&repo, true, 1).unwrap();
        borg.run(&["list", "--lock-wait", "1", repo_arg], &[], None)
            .assert_failure()
            .assert_stderr_contains(LOCK_TIMEOUT_TEXT);
    }
    site.assert_clean(&borg, &["first"]);
}
