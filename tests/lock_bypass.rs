//! Issue 15, item 2: a client's `open(lock=False)` never lets the engine write without the
//! exclusive lock. Without the policy's `allow_lock_bypass` the lock is taken late (at the
//! first read of objects or any write) instead of not at all; with it, reads go without a
//! lock as in borg, writes still wait for the lock. The damage the review saw (a backup whose
//! uncommitted segments a `lock=False` put deleted) is replayed with a real `borg create`.

mod lifecycle;
mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use rmpv::Value;

use lifecycle::raw::{RawSession, Reply, object_id};
use lifecycle::{Site, exclusive_lock_present, repository_files};
use support::wait_for;

const WRITER: &[&str] = &["--restrict-to-path", "{repos}"];
const HANG: Duration = Duration::from_secs(20);

/// `open(lock=False)`, with `exclusive` as given (`None`: not sent, as clients before 1.0.7).
fn open_without_lock(session: &mut RawSession, repo: &Path, exclusive: Option<bool>) -> Reply {
    let mut args = vec![
        ("path", Value::from(repo.to_str().unwrap())),
        ("create", Value::from(false)),
        ("lock_wait", Value::from(1)),
        ("lock", Value::from(false)),
    ];
    if let Some(exclusive) = exclusive {
        args.push(("exclusive", Value::from(exclusive)));
    }
    session.call("open", args)
}

/// Waits until a backup holds `repo`'s exclusive lock and has written at least 8 MiB of
/// segments beyond its last commit (it is streaming data, in the middle of its transaction).
fn wait_until_backing_up(repo: &Path) {
    let busy = wait_for(Duration::from_secs(120), || {
        let commit = fs::read_dir(repo)
            .ok()?
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_prefix("index.")?.parse::<u32>().ok()
            })
            .max()?;
        let mut uncommitted = 0;
        for dir in fs::read_dir(repo.join("data")).ok()?.flatten() {
            for file in fs::read_dir(dir.path()).ok()?.flatten() {
                let number = file.file_name().to_str()?.parse::<u32>().ok()?;
                if number > commit {
                    uncommitted += file.metadata().ok()?.len();
                }
            }
        }
        (exclusive_lock_present(repo) && uncommitted >= 8 << 20).then_some(())
    });
    assert!(busy.is_some(), "the backup never got going");
}

#[test]
fn a_backup_survives_a_key_that_loops_open_without_lock_put_and_close() {
    let client = support::require!(support::borg14());
    let site = Site::new("bypass-backup", WRITER);
    let url = site.url("repo");
    let repo = site.repo("repo");
    site.borg(&client, &["init", "--encryption", "repokey", &url])
        .assert_success();
    lifecycle::write_random(&site.source().join("big.bin"), 42, 80 << 20);
    let expected = site.path("expected");
    lifecycle::copy_tree(&site.source(), &expected);
    let log = site.path("create.log");
    let mut backup =
        site.spawn_borg_logged(&client, &["create", &site.archive("repo", "a"), "."], &log);
    wait_until_backing_up(&repo);
    // The client stops mid-transaction (its engine keeps the lock and the uncommitted
    // segments), so every attempt below meets the state the review's attack damaged.
    let group = Pid::from_raw(backup.id() as i32);
    killpg(group, Signal::SIGSTOP).unwrap();
    let stopped = KillOnDrop(group);
    // Its engine may still append what the client sent before it stopped; nothing may
    // remove or shorten a segment.
    let segments = lifecycle::segment_files(&repo);

    // An append-only key, with and without the policy's permission to bypass the lock, in
    // every form of open(lock=False).
    let attackers = [
        vec!["--restrict-to-path", "{repos}", "--append-only"],
        vec![
            "--restrict-to-path",
            "{repos}",
            "--append-only",
            "--allow-lock-bypass",
        ],
    ];
    for round in 0..3u8 {
        for args in &attackers {
            for exclusive in [Some(true), Some(false), None] {
                let mut attacker = site.raw_engine(args);
                assert!(matches!(
                    open_without_lock(&mut attacker, &repo, exclusive),
                    Reply::Result(_)
                ));
                // The put waits for the backup's exclusive lock and gives up.
                assert_eq!(
                    attacker.put(object_id(round), b"not yours"),
                    Reply::Exception("LockTimeout".into()),
                    "{args:?} exclusive={exclusive:?}"
                );
                attacker.close_stdin();
                assert!(attacker.wait_exit(HANG).is_some());
            }
        }
    }
    let now = lifecycle::segment_files(&repo);
    for (name, (len, _)) in &segments {
        assert!(
            now.get(name).is_some_and(|(now_len, _)| now_len >= len),
            "the backup's segment {name} was removed or shortened under its lock: {segments:?} -> {now:?}"
        );
    }
    killpg(group, Signal::SIGCONT).unwrap();
    let status = backup.wait().unwrap();
    std::mem::forget(stopped);
    assert!(
        status.success(),
        "borg create failed: {}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    site.local(&client, &["check", repo.to_str().unwrap()])
        .assert_success();
    site.assert_extracts(&client, "repo", "a", &expected);
}

/// Kills a stopped process group if the test fails before it lets the group go on.
struct KillOnDrop(Pid);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = killpg(self.0, Signal::SIGKILL);
        let _ = killpg(self.0, Signal::SIGCONT);
    }
}

/// A repository written by borg through the engine whose index, hints and integrity are
/// gone (the next reader must replay the segments), with a session holding its exclusive
/// lock.
fn repository_behind_a_writer(label: &str) -> Option<(Site, RawSession)> {
    let client = support::borg14()?;
    let site = Site::new(label, WRITER);
    let url = site.url("repo");
    site.borg(&client, &["init", "--encryption", "none", &url])
        .assert_success();
    site.borg(&client, &["create", &site.archive("repo", "a"), "."])
        .assert_success();
    let repo = site.repo("repo");
    lifecycle::remove_index(&repo);
    let mut writer = site.raw_engine(WRITER);
    assert!(matches!(
        writer.open(&repo, false, true, 1),
        Reply::Result(_)
    ));
    assert!(exclusive_lock_present(&repo));
    Some((site, writer))
}

#[test]
fn a_read_only_key_without_a_lock_never_rewrites_the_index() {
    let (site, writer) = support::require!(repository_behind_a_writer("bypass-read-only"));
    let repo = site.repo("repo");
    let before = repository_files(&repo);
    for extra in [&[][..], &["--allow-lock-bypass"][..]] {
        let mut args = vec!["--restrict-to-path", "{repos}", "--permissions=read-only"];
        args.extend_from_slice(extra);
        let mut reader = site.raw_engine(&args);
        assert!(matches!(
            open_without_lock(&mut reader, &repo, Some(false)),
            Reply::Result(_)
        ));
        // Reading needs a replay, and a replay writes: it waits for the writer's lock.
        assert_eq!(
            reader.call("__len__", vec![]),
            Reply::Exception("LockTimeout".into()),
            "{extra:?}"
        );
        assert_eq!(
            repository_files(&repo),
            before,
            "{extra:?}: a session without the lock changed the repository"
        );
    }
    let mut writer = writer;
    writer.close_stdin();
    assert!(writer.wait_exit(HANG).is_some());
    // Once the lock is free, a session without one rebuilds the index under the lock.
    let mut reader = site.raw_engine(&["--restrict-to-path", "{repos}", "--permissions=read-only"]);
    assert!(matches!(
        open_without_lock(&mut reader, &repo, Some(false)),
        Reply::Result(_)
    ));
    assert!(matches!(reader.call("__len__", vec![]), Reply::Result(_)));
    assert!(
        repository_files(&repo)
            .keys()
            .any(|name| name.starts_with("index.")),
        "the index was not rebuilt"
    );
}

#[test]
fn with_the_policys_permission_lock_false_reads_beside_a_writer_but_never_writes() {
    let (site, mut writer) = support::require!(repository_behind_a_writer("bypass-allowed"));
    let repo = site.repo("repo");
    // The writer rebuilds the index (under its exclusive lock) and keeps the lock.
    let Reply::Result(count) = writer.call("__len__", vec![]) else {
        panic!("the writer cannot read");
    };
    let mut reader = site.raw_engine(&["--restrict-to-path", "{repos}", "--allow-lock-bypass"]);
    assert!(matches!(
        open_without_lock(&mut reader, &repo, Some(false)),
        Reply::Result(_)
    ));
    // The writer keeps its exclusive lock throughout: a read that waited for it would end
    // in LockTimeout.
    assert_eq!(reader.call("__len__", vec![]), Reply::Result(count));
    let before = repository_files(&repo);
    assert_eq!(
        reader.put(object_id(9), b"x"),
        Reply::Exception("LockTimeout".into())
    );
    assert_eq!(
        reader.call("commit", vec![]),
        Reply::Exception("LockTimeout".into())
    );
    assert_eq!(repository_files(&repo), before);
    writer.close_stdin();
    assert!(writer.wait_exit(HANG).is_some());
    // The lock is free: the same session's write takes it, and the repository stays sound.
    assert_eq!(reader.put(object_id(9), b"x"), Reply::Result(Value::Nil));
    assert_eq!(reader.commit(), Reply::Result(Value::Nil));
    reader.close_stdin();
    assert!(reader.wait_exit(HANG).is_some());
    let client = support::borg14().unwrap();
    site.local(
        &client,
        &["check", "--repository-only", repo.to_str().unwrap()],
    )
    .assert_success();
}

#[test]
fn real_clients_that_bypass_the_lock_wait_for_a_writer_unless_the_policy_allows_it() {
    for client in support::borg_clients() {
        let site = Site::new("bypass-real", WRITER);
        let url = site.url("repo");
        site.borg(&client, &["init", "--encryption", "repokey", &url])
            .assert_success();
        site.borg(&client, &["create", &site.archive("repo", "a"), "."])
            .assert_success();
        let repo = site.repo("repo");
        let before = repository_files(&repo);
        let mut holder = site.raw_engine(WRITER);
        assert!(matches!(
            holder.open(&repo, false, true, 1),
            Reply::Result(_)
        ));
        // borg allows --bypass-lock for reads and for check; neither runs beside a writer.
        for args in [
            &["--bypass-lock", "--lock-wait", "1", "list", &url][..],
            &[
                "--bypass-lock",
                "--lock-wait",
                "1",
                "check",
                "--repository-only",
                &url,
            ][..],
        ] {
            site.borg(&client, args)
                .assert_failure()
                .assert_stderr_contains("Failed to create/acquire the lock");
        }
        assert_eq!(repository_files(&repo), before, "{}", client.label);
        // `key export` opens with lock=False too and reads the manifest: like a locked
        // session, it waits for the writer.
        let exported = site.path(&format!("{}.key", client.label));
        let export = [
            "--lock-wait",
            "1",
            "key",
            "export",
            &url,
            exported.to_str().unwrap(),
        ];
        site.borg(&client, &export)
            .assert_failure()
            .assert_stderr_contains("Failed to create/acquire the lock");
        // A key whose policy allows lock bypass reads beside the writer, as borg would.
        let bypass = site.key(
            "bypass",
            &["--restrict-to-path", "{repos}", "--allow-lock-bypass"],
        );
        let via_bypass = |args: &[&str]| site.borg_via(&bypass, &client, &site.source(), args);
        let list = via_bypass(&["--bypass-lock", "--lock-wait", "1", "list", "--short", &url]);
        list.assert_success();
        assert_eq!(list.stdout_text(), "a\n", "{list}");
        via_bypass(&export).assert_success();
        assert!(
            fs::read_to_string(&exported)
                .unwrap()
                .starts_with("BORG_KEY ")
        );
        assert_eq!(repository_files(&repo), before, "{}", client.label);
        // `break-lock` opens with lock=False and must work while someone holds the lock: a
        // session without a lock takes one only when it reads objects or writes.
        site.borg(&client, &["break-lock", &url]).assert_success();
        assert!(!exclusive_lock_present(&repo));
        holder.close_stdin();
        assert!(holder.wait_exit(HANG).is_some());
        // Nobody holds the lock: the bypassing clients take it and work.
        for args in [
            &["--bypass-lock", "list", "--short", &url][..],
            &["--bypass-lock", "check", &url][..],
        ] {
            site.borg(&client, args).assert_success();
        }
        site.local(&client, &["check", repo.to_str().unwrap()])
            .assert_success();
    }
}

/// A policy file for `explain` and `check-policy`, with `repository_extra` in `[repository]`.
fn policy(dir: &Path, repository_extra: &str) -> PathBuf {
    support::write_policy(&dir.join("policy.toml"), "/srv/backup", repository_extra)
}

#[test]
fn explain_shows_whether_the_policy_allows_lock_bypass() {
    let dir = support::temp_dir("bypass-explain");
    let explain = |policy: &Path| {
        let policy = policy.display().to_string();
        let output = support::borg_gate(&[
            "explain",
            "--policy",
            &policy,
            "--command",
            "borg serve --bypass-lock",
        ]);
        assert!(output.status.success(), "{output:?}");
        support::stdout(&output)
    };
    let default = explain(&policy(dir.path(), ""));
    assert!(!default.contains("--allow-lock-bypass"), "{default}");
    let allowed = explain(&policy(dir.path(), "allow_lock_bypass = true"));
    let argv = allowed
        .lines()
        .find(|line| line.starts_with("engine argv:"))
        .unwrap();
    assert!(argv.contains(" --allow-lock-bypass"), "{allowed}");
    let external = policy(
        dir.path(),
        "allow_lock_bypass = false\n[engine]\nprogram = \"/usr/bin/borg\"",
    );
    let check = support::borg_gate(&["check-policy", &external.display().to_string()]);
    assert!(!check.status.success());
    assert!(
        String::from_utf8_lossy(&check.stderr)
            .contains("allow_lock_bypass needs the built-in engine"),
        "{check:?}"
    );
}
