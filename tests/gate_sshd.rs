//! The production setup end to end: a real sshd on loopback whose authorized_keys line is
//! `command="borg-gate --policy ...",restrict`, real borg clients, and real engines (an
//! external borg and the built-in one).

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use support::{AuthorizedKey, BorgClient, Sshd};

const PASSPHRASE: &str = "gate test passphrase";

struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new(label: &str) -> Site {
        let site = Site {
            dir: support::temp_dir(label),
        };
        for sub in ["repos", "source", "etc"] {
            fs::create_dir(site.path(sub)).unwrap();
        }
        support::make_tree(&site.path("source"));
        site
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn audit(&self) -> PathBuf {
        self.path("audit.jsonl")
    }

    /// A policy for `engine` ("builtin" or a path), restricted to `<site>/repos`.
    fn policy(&self, name: &str, engine: &str, repository_extra: &str) -> PathBuf {
        let text = format!(
            "version = 1\nname = \"{name}\"\n[engine]\nprogram = \"{engine}\"\n[client]\nprograms = [\"borg\", \"borg1\"]\nallow_probe = true\n\
             log_levels = [\"warning\", \"info\"]\nlock_wait = {{ default = 1, max = 30 }}\n\
             [repository]\nrestrict_to_paths = [\"{}\"]\n{repository_extra}\n[audit]\nfile = \"{}\"\n",
            self.path("repos").display(),
            self.audit().display()
        );
        let path = self.path(&format!("etc/{name}.toml"));
        support::write_file(&path, text.as_bytes(), 0o600);
        path
    }

    /// The gate's decision records (the engine's session_end records are
    /// tests/session_records.rs's).
    fn audit_records(&self) -> Vec<serde_json::Value> {
        support::audit_events(&self.audit(), "decision")
    }
}

/// init, create, list, extract (identical), delete through the gate.
fn round_trip(site: &Site, sshd: &Sshd, key: usize, client: &BorgClient, repo_name: &str) {
    let rsh = sshd.rsh(key);
    let env = [("BORG_RSH", rsh.as_str())];
    let url = sshd.url(site.path("repos").join(repo_name));
    let run = |cwd: &Path, args: &[&str]| client.run_in(cwd, args, &env, Some(PASSPHRASE));
    run(
        &site.path("source"),
        &["init", "--encryption", "repokey", &url],
    )
    .assert_success();
    run(
        &site.path("source"),
        &["create", &format!("{url}::first"), "."],
    )
    .assert_success();
    run(
        &site.path("source"),
        &["create", &format!("{url}::second"), "."],
    )
    .assert_success();
    let list = run(&site.path("source"), &["list", "--short", &url]);
    list.assert_success();
    assert_eq!(list.stdout_text(), "first\nsecond\n", "{list}");
    let restore = site.path(&format!("restore-{repo_name}"));
    fs::create_dir(&restore).unwrap();
    run(&restore, &["extract", &format!("{url}::first")]).assert_success();
    support::assert_trees_equal(&site.path("source"), &restore);
    run(&site.path("source"), &["delete", &format!("{url}::first")]).assert_success();
    let list = run(&site.path("source"), &["list", "--short", &url]);
    assert_eq!(list.stdout_text(), "second\n", "{list}");
    // Outside the allowed directory: borg's own message.
    let outside = sshd.url(site.path("etc").join("stolen"));
    run(
        &site.path("source"),
        &["init", "--encryption", "none", &outside],
    )
    .assert_failure()
    .assert_stderr_contains("Repository path not allowed");
}

#[test]
fn every_client_backs_up_through_the_gate_with_each_engine() {
    let Some(python_borg) = support::borg14() else {
        return;
    };
    let Some(debian_borg) = support::debian_borg() else {
        return;
    };
    let site = Site::new("gate-sshd");
    let engines = [
        ("external-1-2", debian_borg.path.display().to_string()),
        ("external-1-4", python_borg.path.display().to_string()),
        ("builtin", "builtin".to_owned()),
    ];
    let keys: Vec<AuthorizedKey> = engines
        .iter()
        .map(|(name, engine)| AuthorizedKey::borg_gate(&site.policy(name, engine, "")))
        .collect();
    let sshd = Sshd::start(&keys);
    let mut sessions = 0;
    for (key, (engine_name, _)) in engines.iter().enumerate() {
        for client in support::borg_clients() {
            round_trip(
                &site,
                &sshd,
                key,
                &client,
                &format!("{engine_name}-{}", client.label),
            );
            sessions += 1;
        }
    }
    assert!(sessions >= 6);
    let records = site.audit_records();
    assert!(
        records.iter().all(|r| r["decision"] == "accept"),
        "{records:#?}"
    );
    for (name, _) in &engines {
        assert!(
            records.iter().any(|r| r["policy"] == *name),
            "no audit record for {name}"
        );
    }
    assert!(records.iter().all(|r| {
        r["ssh_connection"]
            .as_str()
            .is_some_and(|c| c.starts_with("127.0.0.1 "))
    }));
    // Repositories written through the external engines and the built-in one all check clean locally.
    let local = support::borg14().unwrap();
    for entry in fs::read_dir(site.path("repos")).unwrap() {
        let repo = entry.unwrap().path();
        local
            .run(&["check", repo.to_str().unwrap()], &[], Some(PASSPHRASE))
            .assert_success();
    }
}

#[test]
fn refused_commands_get_one_sentence_and_an_audit_record() {
    let site = Site::new("gate-refusals");
    let sshd = Sshd::start(&[AuthorizedKey::borg_gate(
        &site.policy("refusals", "builtin", ""),
    )]);
    for (command, sentence) in [
        (
            "sh -c id",
            "borg-gate: refused: program \"sh\" is not allowed; this key only runs `borg serve`",
        ),
        (
            "scp -t /tmp",
            "borg-gate: refused: program \"scp\" is not allowed; this key only runs `borg serve`",
        ),
        (
            "rsync --server . /",
            "borg-gate: refused: program \"rsync\" is not allowed; this key only runs `borg serve`",
        ),
        (
            "borg list /",
            "borg-gate: refused: only `borg serve` is allowed, not `borg list`; nothing was run",
        ),
        (
            "borg serve; rm -rf /",
            "borg-gate: refused: only `borg serve` is allowed, not `borg serve;`; nothing was run",
        ),
    ] {
        let output = sshd.ssh_command(0, command);
        assert_eq!(output.code(), Some(1), "{command}: {output}");
        assert_eq!(output.stderr_text().trim_end(), sentence, "{command}");
        assert!(!output.stdout_text().contains("uid="));
    }
    let probe = sshd.ssh_command(0, "true");
    assert!(probe.success(), "{probe}");
    let records = site.audit_records();
    assert_eq!(records.len(), 6, "{records:#?}");
    assert_eq!(
        records.iter().filter(|r| r["decision"] == "reject").count(),
        5
    );
    assert_eq!(records[5]["decision"], "probe");
}

#[test]
fn client_remote_path_tricks_change_nothing() {
    let Some(client) = support::borg14() else {
        return;
    };
    let site = Site::new("gate-tricks");
    let policy = site.policy("tricks", "builtin", "append_only = true\numask = \"077\"");
    let sshd = Sshd::start(&[AuthorizedKey::borg_gate(&policy)]);
    let rsh = sshd.rsh(0);
    let url = sshd.url(site.path("repos").join("repo"));
    let env = [("BORG_RSH", rsh.as_str())];
    client
        .run(&["init", "--encryption", "none", &url], &env, None)
        .assert_success();
    client
        .run_in(
            &site.path("source"),
            &["create", &format!("{url}::a"), "."],
            &env,
            None,
        )
        .assert_success();
    // The client's own server options arrive through its remote path; the gate drops them.
    let tricky = [
        ("BORG_RSH", rsh.as_str()),
        (
            "BORG_REMOTE_PATH",
            "borg serve --restrict-to-path=/ --umask=000 --debug-topic",
        ),
    ];
    let outside = sshd.url(site.path("etc").join("x"));
    client
        .run(&["init", "--encryption", "none", &outside], &tricky, None)
        .assert_failure()
        .assert_stderr_contains("Repository path not allowed");
    client
        .run(&["delete", &format!("{url}::a")], &tricky, None)
        .assert_success();
    client
        .run(&["compact", &url], &tricky, None)
        .assert_success();
    // Append-only was forced: the deleted archive's data is still on disk.
    let transactions = fs::read_to_string(site.path("repos/repo/transactions")).unwrap();
    assert!(transactions.lines().count() >= 3, "{transactions}");
    let modes: Vec<u32> = walk(&site.path("repos/repo"))
        .iter()
        .map(|p| fs::metadata(p).unwrap().permissions().mode() & 0o777)
        .collect();
    assert!(
        modes.iter().all(|m| m & 0o077 == 0),
        "a file escaped the forced umask: {modes:?}"
    );
    let records = site.audit_records();
    let dropped: Vec<&serde_json::Value> = records
        .iter()
        .flat_map(|r| r["options"].as_array().unwrap().iter())
        .filter(|o| o["action"] == "dropped")
        .collect();
    assert!(
        dropped
            .iter()
            .any(|o| o["option"] == "--restrict-to-path=/"),
        "{records:#?}"
    );
    assert!(
        dropped.iter().any(|o| o["option"] == "--umask=000"),
        "{records:#?}"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walk(&path));
        }
        found.push(path);
    }
    found
}
