//! `borg-gate serve` with unmodified borg clients (Debian's 1.2 and PyPI's 1.4.5), reached
//! through a BORG_RSH script that sets SSH_ORIGINAL_COMMAND and execs the engine, exactly as
//! sshd would with `command="borg-gate serve ..."`. Repositories are checked by local borg.

mod support;

use std::fs;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{BorgClient, CmdOutput};

const PASSPHRASE: &str = "correct horse battery staple";

/// How long a borg client may take to start and take a lock on a saturated machine.
const LOCK_PATIENCE: Duration = Duration::from_secs(120);

/// A working directory with a source tree and an engine reachable as `ssh://engine/<path>`.
struct Setup {
    dir: tempfile::TempDir,
    rsh: String,
}

impl Setup {
    /// The forced command line is `borg-gate serve <forced>`.
    fn new(label: &str, forced: &[&str]) -> Setup {
        let dir = support::temp_dir(label);
        let repos = dir.path().join("repos");
        fs::create_dir(&repos).unwrap();
        fs::create_dir(dir.path().join("source")).unwrap();
        support::make_tree(&dir.path().join("source"));
        let script = dir.path().join("rsh.sh");
        let forced: Vec<String> = forced
            .iter()
            .map(|a| a.replace("{repos}", repos.to_str().unwrap()))
            .collect();
        let forced = shlex::try_join(forced.iter().map(String::as_str)).unwrap();
        // Like sshd: the client's words become SSH_ORIGINAL_COMMAND, the forced command runs.
        fs::write(
            &script,
            format!(
                "#!/bin/sh\nshift\nSSH_ORIGINAL_COMMAND=\"$*\"\nexport SSH_ORIGINAL_COMMAND\nexec {} serve {forced}\n",
                support::cargo_bin().display()
            ),
        )
        .unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        Setup {
            rsh: script.display().to_string(),
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn repo(&self, name: &str) -> PathBuf {
        self.path("repos").join(name)
    }

    fn url(&self, name: &str) -> String {
        format!("ssh://engine{}", self.repo(name).display())
    }

    fn env(&self) -> Vec<(&str, &str)> {
        vec![("BORG_RSH", self.rsh.as_str())]
    }

    #[track_caller]
    fn borg(&self, client: &BorgClient, args: &[&str]) -> CmdOutput {
        self.borg_in(client, &self.path("source"), args)
    }

    #[track_caller]
    fn borg_in(&self, client: &BorgClient, cwd: &Path, args: &[&str]) -> CmdOutput {
        client.run_in(cwd, args, &self.env(), Some(PASSPHRASE))
    }

    /// Local borg (no server) on a repository path.
    #[track_caller]
    fn local(&self, client: &BorgClient, args: &[&str]) -> CmdOutput {
        client.run(args, &[], Some(PASSPHRASE))
    }
}

fn clients() -> Vec<BorgClient> {
    support::borg_clients()
}

/// The main workflow of a backup client, every command through the engine.
fn full_workflow(client: &BorgClient, encryption: &str) {
    let setup = Setup::new("engine-workflow", &["--restrict-to-path", "{repos}"]);
    let url = setup.url("repo");
    setup
        .borg(client, &["init", "--encryption", encryption, &url])
        .assert_success();
    setup
        .borg(client, &["create", "--stats", &format!("{url}::one"), "."])
        .assert_success();
    fs::write(setup.path("source/changed.txt"), b"second archive\n").unwrap();
    setup
        .borg(client, &["create", &format!("{url}::two"), "."])
        .assert_success();

    let list = setup.borg(client, &["list", "--short", &url]);
    list.assert_success();
    assert_eq!(list.stdout_text(), "one\ntwo\n", "{list}");
    setup
        .borg(client, &["info", &format!("{url}::one")])
        .assert_success()
        .assert_stdout_contains("Archive name: one");
    let diff = setup.borg(client, &["diff", &format!("{url}::one"), "two"]);
    diff.assert_success().assert_stdout_contains("changed.txt");

    let restore = setup.path("restore");
    fs::create_dir(&restore).unwrap();
    setup
        .borg_in(client, &restore, &["extract", &format!("{url}::two")])
        .assert_success();
    support::assert_trees_equal(&setup.path("source"), &restore);

    setup.borg(client, &["check", &url]).assert_success();
    setup
        .borg(client, &["check", "--verify-data", &url])
        .assert_success();
    setup
        .borg(client, &["delete", &format!("{url}::one")])
        .assert_success();
    setup
        .borg(client, &["prune", "--keep-last", "1", &url])
        .assert_success();
    setup.borg(client, &["compact", &url]).assert_success();
    let list = setup.borg(client, &["list", "--short", &url]);
    assert_eq!(list.stdout_text(), "two\n", "{list}");

    // Written only through borg-gate; local borg 1.4.5 and 1.2 accept it.
    for local in clients() {
        local
            .run(
                &[
                    "check",
                    "--verify-data",
                    setup.repo("repo").to_str().unwrap(),
                ],
                &[],
                Some(PASSPHRASE),
            )
            .assert_success();
    }
    let local_restore = setup.path("local-restore");
    fs::create_dir(&local_restore).unwrap();
    let archive = format!("{}::two", setup.repo("repo").display());
    client
        .run_in(
            &local_restore,
            &["extract", &archive],
            &[],
            Some(PASSPHRASE),
        )
        .assert_success();
    support::assert_trees_equal(&setup.path("source"), &local_restore);
}

#[test]
fn every_client_runs_the_full_workflow_unencrypted() {
    for client in clients() {
        full_workflow(&client, "none");
    }
}

#[test]
fn every_client_runs_the_full_workflow_with_repokey() {
    for client in clients() {
        full_workflow(&client, "repokey");
    }
}

#[test]
fn keyfile_repositories_and_key_management_work() {
    for client in clients() {
        let setup = Setup::new("engine-keys", &["--restrict-to-path", "{repos}"]);
        let url = setup.url("repo");
        setup
            .borg(&client, &["init", "--encryption", "keyfile", &url])
            .assert_success();
        setup
            .borg(&client, &["create", &format!("{url}::a"), "."])
            .assert_success();
        let exported = setup.path("key.txt");
        setup
            .borg(
                &client,
                &["key", "export", &url, exported.to_str().unwrap()],
            )
            .assert_success();
        assert!(
            fs::read_to_string(&exported)
                .unwrap()
                .starts_with("BORG_KEY ")
        );

        let repokey = setup.url("repokey");
        setup
            .borg(&client, &["init", "--encryption", "repokey", &repokey])
            .assert_success();
        let backup = setup.path("repokey.txt");
        setup
            .borg(
                &client,
                &["key", "export", &repokey, backup.to_str().unwrap()],
            )
            .assert_success();
        setup
            .borg(
                &client,
                &["key", "import", &repokey, backup.to_str().unwrap()],
            )
            .assert_success();
        let change = client.run(
            &["key", "change-passphrase", &repokey],
            &[
                ("BORG_RSH", setup.rsh.as_str()),
                ("BORG_NEW_PASSPHRASE", "new secret"),
            ],
            Some(PASSPHRASE),
        );
        change.assert_success();
        client
            .run(
                &["list", &repokey],
                &[("BORG_RSH", setup.rsh.as_str())],
                Some("new secret"),
            )
            .assert_success();
    }
}

#[test]
fn repository_written_by_local_borg_is_served_extended_and_extracted() {
    for client in clients() {
        let setup = Setup::new("engine-interop", &["--restrict-to-path", "{repos}"]);
        let local_path = setup.repo("local");
        let local = local_path.to_str().unwrap();
        setup
            .local(&client, &["init", "--encryption", "repokey", local])
            .assert_success();
        client
            .run_in(
                &setup.path("source"),
                &["create", &format!("{local}::by-local"), "."],
                &[],
                Some(PASSPHRASE),
            )
            .assert_success();
        setup
            .local(&client, &["delete", &format!("{local}::by-local")])
            .assert_success();
        client
            .run_in(
                &setup.path("source"),
                &["create", &format!("{local}::again"), "."],
                &[],
                Some(PASSPHRASE),
            )
            .assert_success();

        let url = setup.url("local");
        setup
            .borg(&client, &["list", &url])
            .assert_success()
            .assert_stdout_contains("again");
        fs::write(setup.path("source/new.txt"), b"added through the engine\n").unwrap();
        setup
            .borg(&client, &["create", &format!("{url}::by-engine"), "."])
            .assert_success();
        let restore = setup.path("restore");
        fs::create_dir(&restore).unwrap();
        setup
            .borg_in(
                &client,
                &restore,
                &["extract", &format!("{url}::by-engine")],
            )
            .assert_success();
        support::assert_trees_equal(&setup.path("source"), &restore);
        setup.local(&client, &["check", local]).assert_success();
    }
}

#[test]
fn missing_index_is_rebuilt_by_engine_and_by_borg() {
    for client in clients() {
        let setup = Setup::new("engine-index", &["--restrict-to-path", "{repos}"]);
        let url = setup.url("repo");
        setup
            .borg(&client, &["init", "--encryption", "none", &url])
            .assert_success();
        setup
            .borg(&client, &["create", &format!("{url}::a"), "."])
            .assert_success();
        remove_generation_files(&setup.repo("repo"));
        setup
            .borg(&client, &["list", &url])
            .assert_success()
            .assert_stdout_contains("a ");
        assert!(
            has_index(&setup.repo("repo")),
            "the engine did not write a new index"
        );
        remove_generation_files(&setup.repo("repo"));
        setup
            .local(&client, &["check", setup.repo("repo").to_str().unwrap()])
            .assert_success();
        setup.borg(&client, &["check", &url]).assert_success();
    }
}

fn remove_generation_files(repo: &Path) {
    for entry in fs::read_dir(repo).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.starts_with("index.")
            || name.starts_with("hints.")
            || name.starts_with("integrity.")
        {
            fs::remove_file(repo.join(name)).unwrap();
        }
    }
}

fn has_index(repo: &Path) -> bool {
    fs::read_dir(repo).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("index.")
    })
}

#[test]
fn restricted_paths_are_refused_with_borgs_message() {
    for client in clients() {
        let setup = Setup::new("engine-restrict", &["--restrict-to-path", "{repos}"]);
        let outside = format!("ssh://engine{}", setup.path("elsewhere").display());
        let output = setup.borg(&client, &["init", "--encryption", "none", &outside]);
        output
            .assert_failure()
            .assert_stderr_contains("Repository path not allowed");
        assert!(!setup.path("elsewhere").exists());
        let sibling = format!("ssh://engine{}2/x", setup.path("repos").display());
        setup
            .borg(&client, &["init", "--encryption", "none", &sibling])
            .assert_failure()
            .assert_stderr_contains("Repository path not allowed");
    }
}

#[test]
fn locks_exclude_other_clients_with_borgs_lock_timeout() {
    for client in clients() {
        let setup = Setup::new("engine-locks", &["--restrict-to-path", "{repos}"]);
        let url = setup.url("repo");
        setup
            .borg(&client, &["init", "--encryption", "none", &url])
            .assert_success();
        // with-lock holds the exclusive lock while `cat` waits for the end of a FIFO that
        // this test writes only once the second client (waiting 1 s) has given up: the lock
        // is held for exactly as long as the test needs, however slow the machine.
        let release = setup.path("release");
        nix::unistd::mkfifo(
            &release,
            nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
        )
        .unwrap();
        let mut holder = client
            .command(
                &setup.path("source"),
                &["with-lock", &url, "cat", release.to_str().unwrap()],
                &setup.env(),
                Some(PASSPHRASE),
            )
            .spawn()
            .unwrap();
        let held = support::wait_until(LOCK_PATIENCE, || {
            setup.repo("repo").join("lock.exclusive").is_dir()
        });
        assert!(held, "with-lock took no lock within {LOCK_PATIENCE:?}");
        let waiting = setup.borg(&client, &["list", "--lock-wait", "1", &url]);
        waiting
            .assert_failure()
            .assert_stderr_contains("Failed to create/acquire the lock");
        // Opening the FIFO's write end without blocking succeeds once `cat` reads it;
        // closing it again ends `cat`, and with it the holder's lock.
        let writer = support::wait_for(LOCK_PATIENCE, || {
            fs::OpenOptions::new()
                .write(true)
                .custom_flags(nix::libc::O_NONBLOCK)
                .open(&release)
                .ok()
        })
        .expect("with-lock never ran its command");
        drop(writer);
        let status = holder.wait().unwrap();
        assert!(status.success());
        setup.borg(&client, &["list", &url]).assert_success();
        // break-lock on a stale lock, then a normal session.
        setup.borg(&client, &["break-lock", &url]).assert_success();
        setup.borg(&client, &["check", &url]).assert_success();
    }
}

#[test]
fn append_only_keeps_every_segment_and_init_is_not_append_only() {
    for client in clients() {
        let setup = Setup::new(
            "engine-append",
            &["--restrict-to-path", "{repos}", "--append-only"],
        );
        let url = setup.url("repo");
        setup
            .borg(&client, &["init", "--encryption", "none", &url])
            .assert_success();
        let config = fs::read_to_string(setup.repo("repo").join("config")).unwrap();
        assert!(config.contains("append_only = 0"), "{config}");
        setup
            .borg(&client, &["create", &format!("{url}::a"), "."])
            .assert_success();
        let before = segment_files(&setup.repo("repo"));
        setup
            .borg(&client, &["delete", &format!("{url}::a")])
            .assert_success();
        setup.borg(&client, &["compact", &url]).assert_success();
        let after = segment_files(&setup.repo("repo"));
        for (name, bytes) in &before {
            assert_eq!(
                after.get(name),
                Some(bytes),
                "segment {name} changed or vanished"
            );
        }
        let log = fs::read_to_string(setup.repo("repo").join("transactions")).unwrap();
        assert!(
            log.lines()
                .all(|l| l.starts_with("transaction ") && l.contains(", UTC time ")),
            "{log}"
        );
    }
}

fn segment_files(repo: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    for dir in fs::read_dir(repo.join("data")).unwrap() {
        let dir = dir.unwrap().path();
        for file in fs::read_dir(&dir).unwrap() {
            let path = file.unwrap().path();
            files.insert(
                path.strip_prefix(repo).unwrap().display().to_string(),
                fs::read(&path).unwrap(),
            );
        }
    }
    files
}

#[test]
fn client_options_cannot_override_the_forced_command() {
    let Some(client) = support::borg14() else {
        return;
    };
    let setup = Setup::new(
        "engine-forced",
        &["--restrict-to-path", "{repos}", "--append-only"],
    );
    let url = setup.url("repo");
    // The client asks its server for --storage-quota; a forced command ignores it (as borg does).
    setup
        .borg(
            &client,
            &[
                "init",
                "--encryption",
                "none",
                "--storage-quota",
                "20M",
                &url,
            ],
        )
        .assert_success();
    let config = fs::read_to_string(setup.repo("repo").join("config")).unwrap();
    assert!(config.contains("storage_quota = 0"), "{config}");
    // A remote path that parses (the client appends `serve`, which `--debug-topic` swallows):
    // the forced restriction still holds.
    let outside = format!("ssh://engine{}", setup.path("outside").display());
    let parses = [
        ("BORG_RSH", setup.rsh.as_str()),
        (
            "BORG_REMOTE_PATH",
            "borg serve --restrict-to-path=/ --append-only --debug-topic",
        ),
    ];
    let output = client.run(&["init", "--encryption", "none", &outside], &parses, None);
    output
        .assert_failure()
        .assert_stderr_contains("Repository path not allowed");
    // One that does not parse makes the engine refuse to start, as borg serve does.
    let broken = [
        ("BORG_RSH", setup.rsh.as_str()),
        ("BORG_REMOTE_PATH", "borg serve --append-only=0"),
    ];
    let output = client.run(&["init", "--encryption", "none", &outside], &broken, None);
    output
        .assert_failure()
        .assert_stderr_contains("--append-only=0 takes no value");
    assert!(!setup.path("outside").exists());
}

#[test]
fn server_version_and_exceptions_reach_the_client() {
    let Some(client) = support::borg14() else {
        return;
    };
    let setup = Setup::new("engine-version", &["--restrict-to-path", "{repos}"]);
    let url = setup.url("repo");
    setup
        .borg(&client, &["init", "--encryption", "none", &url])
        .assert_success();
    let version = setup.borg(&client, &["version", &url]);
    version.assert_success();
    assert!(version.stdout_text().contains("1.4.5 / 1.4.5"), "{version}");
    let missing = setup.url("missing");
    let output = client.run(
        &["list", &missing],
        &[
            ("BORG_RSH", setup.rsh.as_str()),
            ("BORG_EXIT_CODES", "modern"),
        ],
        None,
    );
    assert_eq!(output.code(), Some(13), "{output}");
    output.assert_stderr_contains("does not exist");
}
