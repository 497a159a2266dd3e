//! No stale borg 2 locks: a real borg 2.0.0b23 client holding the repository lock through a
//! real sshd is killed, loses its connection, or freezes; the engine releases the lock it
//! left (at end of input, or at the idle timeout) and a second client gets in at once. A
//! client that loses its connection and reconnects is fenced: it fails, and the repository
//! checks clean.
//!
//! The first client backs up from a pipe (`borg create NAME -`), so the test decides when
//! it is "mid-backup": after its lock object exists and before its input ends.

mod support;

use std::fs;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use support::{AuthorizedKey, BorgClient, CmdOutput, Sshd, borg2_path, require};

const PASSPHRASE: &str = "correct horse battery staple";
/// How long a freed lock may take to disappear: a few seconds, not borg's 30 minutes.
const PROMPTLY: Duration = Duration::from_secs(10);

struct World {
    dir: tempfile::TempDir,
    sshd: Sshd,
    client: BorgClient,
}

/// Key 0: the engine; key 1: the engine with a 2 s idle timeout; key 2: the engine with a
/// 3 s limit on the whole session.
const ENGINE: usize = 0;
const IDLE: usize = 1;
const LIMITED: usize = 2;

impl World {
    fn start(label: &str) -> Option<World> {
        support::require_root()?;
        support::require_tool("/usr/sbin/sshd")?;
        let borg2 = borg2_path()?;
        let dir = support::temp_dir(label);
        fs::create_dir(dir.path().join("repos")).unwrap();
        fs::create_dir(dir.path().join("source")).unwrap();
        support::make_tree(&dir.path().join("source"));
        let engine = format!(
            "{} serve --rest --restrict-to-path {}",
            support::cargo_bin().display(),
            dir.path().join("repos").display()
        );
        let sshd = Sshd::start(&[
            AuthorizedKey::forced_command(&engine),
            AuthorizedKey::forced_command(&format!("{engine} --idle-timeout 2s")),
            AuthorizedKey::forced_command(&format!("{engine} --session-limit 3s")),
        ]);
        let client = BorgClient::new(&borg2, "pypi");
        let world = World { dir, sshd, client };
        world.ok(ENGINE, &["repo-create", "-e", "aes256-ocb"]);
        Some(world)
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("repos/r")
    }

    fn args(&self, key: usize, args: &[&str]) -> (Vec<String>, String) {
        let url = format!(
            "rest://{}@127.0.0.1/{}",
            self.sshd.user(),
            self.repo().display()
        );
        let mut all = vec!["-r".to_owned(), url];
        all.extend(args.iter().map(|a| a.to_string()));
        (all, self.sshd.rsh(key))
    }

    #[track_caller]
    fn borg(&self, key: usize, args: &[&str]) -> CmdOutput {
        let (all, rsh) = self.args(key, args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.client.run_in(
            &self.dir.path().join("source"),
            &all,
            &[("BORG_RSH", rsh.as_str())],
            Some(PASSPHRASE),
        )
    }

    #[track_caller]
    fn ok(&self, key: usize, args: &[&str]) -> CmdOutput {
        let output = self.borg(key, args);
        assert!(
            output.success(),
            "{args:?}:\n{output}\n--- sshd ---\n{}",
            self.sshd.log()
        );
        output
    }

    /// `borg create <name> -` in its own process group, reading the pipe we hold.
    fn backup_from_pipe(&self, key: usize, name: &str) -> Child {
        let (all, rsh) = self.args(key, &["create", name, "-"]);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let mut command = self.client.command(
            self.dir.path(),
            &all,
            &[("BORG_RSH", rsh.as_str())],
            Some(PASSPHRASE),
        );
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = command.spawn().unwrap();
        let stdin = child.stdin.as_mut().unwrap();
        stdin.write_all(&vec![b'x'; 1 << 20]).unwrap();
        child
    }

    fn lock_objects(&self) -> usize {
        fs::read_dir(self.repo().join("locks"))
            .map(|entries| entries.count())
            .unwrap_or(0)
    }

    /// Waits (bounded) until the repository has a lock object, i.e. the client holds it.
    #[track_caller]
    fn wait_until_locked(&self) {
        assert!(
            support::wait_until(Duration::from_secs(120), || self.lock_objects() > 0),
            "the client never locked the repository:\n{}",
            self.sshd.log()
        );
    }

    /// Waits until no lock object is left; how long that took.
    #[track_caller]
    fn wait_until_unlocked(&self) -> Duration {
        let started = Instant::now();
        assert!(
            support::wait_until(PROMPTLY, || self.lock_objects() == 0),
            "the lock is still there after {PROMPTLY:?}"
        );
        started.elapsed()
    }

    fn archives(&self) -> Vec<String> {
        self.ok(ENGINE, &["repo-list", "--format", "{archive}{NL}"])
            .stdout_text()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// The `ssh` child of `parent`.
fn ssh_child(parent: u32) -> Option<i32> {
    fs::read_dir("/proc").ok()?.find_map(|entry| {
        let pid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (name, rest) = stat.split_once(") ")?;
        let ppid: u32 = rest.split(' ').nth(1)?.parse().ok()?;
        (ppid == parent && name.ends_with("(ssh")).then_some(pid)
    })
}

fn kill_group(child: &mut Child) {
    let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
    let _ = child.wait();
}

#[test]
fn a_client_killed_mid_backup_does_not_keep_the_next_one_out() {
    let world = require!(World::start("borg2-killed"));
    let mut first = world.backup_from_pipe(ENGINE, "first");
    world.wait_until_locked();
    kill_group(&mut first);
    let freed_after = world.wait_until_unlocked();
    eprintln!("lock freed {freed_after:?} after the kill");
    world.ok(ENGINE, &["create", "--lock-wait", "5", "second", "."]);
    world.ok(ENGINE, &["check", "--verify-data"]);
    assert_eq!(world.archives(), ["second"]);
}

#[test]
fn a_frozen_client_is_dropped_at_the_idle_timeout() {
    let world = require!(World::start("borg2-frozen"));
    let mut first = world.backup_from_pipe(IDLE, "first");
    world.wait_until_locked();
    kill(Pid::from_raw(first.id() as i32), Signal::SIGSTOP).unwrap();
    let freed_after = world.wait_until_unlocked();
    eprintln!("lock freed {freed_after:?} after the freeze");
    world.ok(ENGINE, &["create", "--lock-wait", "5", "second", "."]);
    kill_group(&mut first);
    world.ok(ENGINE, &["check", "--verify-data"]);
    assert_eq!(world.archives(), ["second"]);
}

#[test]
fn a_session_past_its_limit_is_ended_and_its_lock_freed() {
    let world = require!(World::start("borg2-limit"));
    let mut first = world.backup_from_pipe(LIMITED, "first");
    world.wait_until_locked();
    // The client stays connected and holds the lock (its input never ends); only the
    // session limit can end it.
    let freed_after = world.wait_until_unlocked();
    eprintln!("lock freed {freed_after:?} after the lock was taken");
    kill_group(&mut first);
    world.ok(ENGINE, &["create", "--lock-wait", "5", "second", "."]);
    world.ok(ENGINE, &["check", "--verify-data"]);
    assert_eq!(world.archives(), ["second"]);
}

#[test]
fn a_client_that_reconnects_after_its_lock_was_released_fails_without_harm() {
    let world = require!(World::start("borg2-reconnect"));
    let mut first = world.backup_from_pipe(ENGINE, "first");
    world.wait_until_locked();
    let ssh = ssh_child(first.id()).expect("borg's ssh child");
    kill(Pid::from_raw(ssh), Signal::SIGKILL).unwrap();
    world.wait_until_unlocked();
    // The second client takes the lock and backs up while the first one is still alive.
    world.ok(ENGINE, &["create", "--lock-wait", "5", "second", "."]);
    // The first client goes on: its next request finds the dead connection, it reconnects
    // and re-sends; without a lock of its own in the new session, its writes are refused.
    let mut input = first.stdin.take().unwrap();
    input.write_all(&vec![b'y'; 4 << 20]).unwrap();
    drop(input);
    let status = first.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(first.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(
        !status.success(),
        "the reconnected client must fail:\n{stderr}"
    );
    assert!(
        stderr.contains("423") || stderr.contains("Locked"),
        "{stderr}"
    );
    world.ok(ENGINE, &["check", "--verify-data"]);
    assert_eq!(world.archives(), ["second"]);
}
