//! `borg-gate keys` on real files for a real account: keys made by ssh-keygen, an
//! authorized_keys file with everything real ones hold, a real backup through a real sshd
//! with a provisioned key, and `borg-gate doctor` judging the result.

mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use support::{CmdOutput, Sshd, SshdOptions, TestAccount, require, run_with_timeout};

const TIMEOUT: Duration = Duration::from_secs(120);

/// A backup server in a temp dir: the account, its policies, repositories and audit log.
struct Server {
    account: TestAccount,
}

impl Server {
    fn new(label: &str) -> Option<Server> {
        support::require_tool("ssh-keygen")?;
        let account = TestAccount::provisioned(label)?;
        let server = Server { account };
        fs::write(
            server.path("sshd_config"),
            "ClientAliveInterval 10\nClientAliveCountMax 30\n",
        )
        .unwrap();
        Some(server)
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.account.dir().join(relative)
    }

    fn text(&self, relative: &str) -> String {
        self.path(relative).display().to_string()
    }

    fn policy(&self, name: &str) -> PathBuf {
        self.path(&format!("policies/{name}.toml"))
    }

    /// A new client key pair of `kind` (ssh-keygen -t); returns the private key's path.
    fn keygen(&self, name: &str, kind: &str) -> PathBuf {
        let private = self.path(&format!("client-keys/{name}"));
        fs::create_dir_all(private.parent().unwrap()).unwrap();
        let mut command = Command::new("ssh-keygen");
        command
            .args(["-q", "-t", kind, "-N", "", "-C"])
            .arg(format!("{name}@client"))
            .arg("-f")
            .arg(&private)
            .env_clear()
            .env("PATH", support::SAFE_PATH);
        run_with_timeout(command, TIMEOUT).assert_success();
        private
    }

    fn public(&self, private: &Path) -> PathBuf {
        private.with_extension("pub")
    }

    fn public_text(&self, private: &Path) -> String {
        fs::read_to_string(self.public(private))
            .unwrap()
            .trim_end()
            .to_owned()
    }

    fn run(&self, args: &[&str]) -> CmdOutput {
        let mut command = Command::new(support::cargo_bin());
        command
            .args(args)
            .env_clear()
            .env("PATH", support::SAFE_PATH);
        run_with_timeout(command, TIMEOUT)
    }

    /// `keys add` for this server's account, policy directory and audit log, with the
    /// repository directory `srv/<name>`.
    fn add(&self, name: &str, private: &Path, extra: &[&str]) -> CmdOutput {
        self.add_at(name, private, &format!("srv/{name}"), extra)
    }

    /// `keys add` with the repository directory `directory` (relative to the server).
    fn add_at(&self, name: &str, private: &Path, directory: &str, extra: &[&str]) -> CmdOutput {
        let public = self.public(private).display().to_string();
        let (srv, policies, log) = (
            self.text(directory),
            self.text("policies"),
            self.text("log/audit.jsonl"),
        );
        let mut args = vec![
            "keys",
            "add",
            "--name",
            name,
            "--key",
            &public,
            "--path",
            &srv,
            "--policy-dir",
            &policies,
            "--audit-log",
            &log,
            "--user",
            &self.account.name,
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    fn keys(&self, args: &[&str]) -> CmdOutput {
        let mut all = vec!["keys"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--user", &self.account.name]);
        self.run(&all)
    }

    fn authorized(&self) -> Vec<u8> {
        fs::read(self.account.authorized_keys()).unwrap_or_default()
    }

    fn write_authorized(&self, bytes: &[u8], mode: u32) {
        let file = self.account.authorized_keys();
        let dir = file.parent().unwrap();
        fs::create_dir_all(dir).unwrap();
        support::write_file(&file, bytes, mode);
        for path in [dir, file.as_path()] {
            nix::unistd::chown(
                path,
                Some(nix::unistd::Uid::from_raw(self.account.uid)),
                Some(nix::unistd::Gid::from_raw(self.account.gid)),
            )
            .unwrap();
        }
    }

    /// `borg-gate doctor` for the account, with an sshd_config that has nothing to say.
    fn doctor(&self) -> CmdOutput {
        let config = self.text("sshd_config");
        self.run(&[
            "doctor",
            "--user",
            &self.account.name,
            "--sshd-config",
            &config,
        ])
    }

    #[track_caller]
    fn assert_doctor_clean(&self, after: &str) {
        let output = self.doctor();
        assert_eq!(
            (output.code(), output.stdout_text()),
            (Some(0), String::new()),
            "doctor is not clean after {after}:\n{output}\n--- authorized_keys ---\n{}",
            String::from_utf8_lossy(&self.authorized())
        );
    }

    /// The line `keys add` writes for `name`.
    fn expected_line(&self, name: &str, private: &Path) -> String {
        let public = self.public_text(private);
        let mut words = public.split(' ');
        let (kind, blob) = (words.next().unwrap(), words.next().unwrap());
        format!(
            "command=\"{} --policy {}\",restrict {kind} {blob} borg-gate:{name} {name}@client",
            support::cargo_bin().display(),
            self.policy(name).display()
        )
    }
}

fn owner_and_mode(path: &Path) -> (u32, u32, u32) {
    let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.uid(), meta.gid(), meta.mode() & 0o7777)
}

fn json(output: &CmdOutput) -> serde_json::Value {
    serde_json::from_str(&output.stdout_text())
        .unwrap_or_else(|error| panic!("not JSON ({error}):\n{output}"))
}

#[test]
fn a_provisioned_append_only_key_backs_up_through_a_real_sshd() {
    let server = require!(Server::new("keys-backup"));
    require!(support::require_tool("/usr/sbin/sshd"));
    let borg = require!(support::debian_borg());
    let alice = server.keygen("alice", "ed25519");
    server.add("alice", &alice, &[]).assert_success();

    let sshd = Sshd::start_with(
        &[],
        &SshdOptions {
            account: Some(server.account.name.clone()),
            ..SshdOptions::default()
        },
    );
    let rsh = sshd.rsh_with(&alice);
    let env = [("BORG_RSH", rsh.as_str())];
    let repository = sshd.url(server.path("srv/alice/laptop"));
    let passphrase = Some("correct horse");
    let source = server.path("client-data");
    fs::create_dir(&source).unwrap();
    support::make_tree(&source);
    borg.run(
        &["init", "--encryption=repokey", &repository],
        &env,
        passphrase,
    )
    .assert_success();
    borg.run_in(
        &source,
        &["create", &format!("{repository}::first"), "."],
        &env,
        passphrase,
    )
    .assert_success();
    let listed = borg.run(&["list", "--short", &repository], &env, passphrase);
    listed.assert_success();
    assert_eq!(listed.stdout_text(), "first\n", "{listed}");

    // The repository belongs to the account, below the directory keys add made.
    let repo_dir = server.path("srv/alice/laptop");
    assert_eq!(owner_and_mode(&repo_dir).0, server.account.uid);
    // Every session was audited under the key's policy, and keys list knows the last one.
    let audit = fs::read_to_string(server.path("log/audit.jsonl")).unwrap();
    let policy = server.policy("alice").display().to_string();
    let accepted: Vec<serde_json::Value> = audit
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .filter(|record: &serde_json::Value| record["decision"] == "accept")
        .collect();
    assert_eq!(accepted.len(), 3, "{audit}");
    assert!(accepted.iter().all(|r| r["policy_file"] == policy.as_str()));
    assert!(
        accepted.iter().all(|r| r["engine_argv"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--append-only")),
        "{audit}"
    );
    let listing = json(&server.keys(&["list", "--json"]));
    let row = &listing["keys"][0];
    assert_eq!(row["name"], "alice");
    assert_eq!(row["permissions"], "append-only");
    assert_eq!(row["last_session"], accepted[2]["time"]);
    server.assert_doctor_clean("a backup");
}

#[test]
fn keys_add_keeps_every_other_line_byte_for_byte_and_the_owner_and_mode() {
    let server = require!(Server::new("keys-bytes"));
    let others: Vec<String> = ["old1", "old2", "old3"]
        .iter()
        .map(|name| server.public_text(&server.keygen(name, "ed25519")))
        .collect();
    let old = format!(
        "# backup keys\r\n\r\nfrom=\"192.0.2.0/24\",command=\"/usr/bin/true\" {}\r\n\n# expires\n\
         expiry-time=\"20991231\",restrict {}\n \t\n{}",
        others[0], others[1], others[2]
    );
    server.write_authorized(old.as_bytes(), 0o640);
    let before = owner_and_mode(&server.account.authorized_keys());
    let alice = server.keygen("alice", "ed25519");
    let output = server.add("alice", &alice, &[]);
    output.assert_success();
    assert!(
        output
            .stdout_text()
            .contains(", line 9 (previous version in"),
        "{output}"
    );

    let expected = format!("{old}\n{}\n", server.expected_line("alice", &alice));
    assert_eq!(
        String::from_utf8_lossy(&server.authorized()),
        expected,
        "only the new line (and the newline the last line lacked) may differ"
    );
    let file = server.account.authorized_keys();
    assert_eq!(owner_and_mode(&file), before);
    let backup = file.with_file_name("authorized_keys.bak");
    assert_eq!(fs::read(&backup).unwrap(), old.as_bytes());
    assert_eq!(owner_and_mode(&backup), before);
    // Nothing else was left in ~/.ssh.
    assert_eq!(fs::read_dir(file.parent().unwrap()).unwrap().count(), 2);
}

#[test]
fn every_file_and_directory_gets_the_owner_and_mode_the_engine_requires() {
    let server = require!(Server::new("keys-modes"));
    let alice = server.keygen("alice", "ed25519");
    server.add("alice", &alice, &[]).assert_success();
    let (uid, gid) = (server.account.uid, server.account.gid);
    let expected = [
        ("srv", (0, 0, 0o755)),
        ("srv/alice", (uid, gid, 0o700)),
        ("policies", (0, 0, 0o755)),
        ("policies/alice.toml", (0, 0, 0o644)),
        ("log", (0, 0, 0o755)),
        ("log/audit.jsonl", (uid, gid, 0o640)),
        ("home/.ssh", (uid, gid, 0o700)),
        ("home/.ssh/authorized_keys", (uid, gid, 0o600)),
    ];
    for (path, facts) in expected {
        assert_eq!(owner_and_mode(&server.path(path)), facts, "{path}");
    }
    // The engine's rule: check-policy accepts the policy, and `borg-gate serve` as the
    // account would open a repository there (tested end to end in the sshd test).
    let check = server.run(&[
        "check-policy",
        "--user",
        &server.account.name,
        &server.text("policies/alice.toml"),
    ]);
    check.assert_success();
    assert_eq!(check.stderr_text(), "", "{check}");

    // A directory on the way that others may write is refused before anything is written.
    let open = server.path("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let bob = server.keygen("bob", "ed25519");
    let before = server.authorized();
    let public = server.public(&bob).display().to_string();
    let policies = server.text("policies");
    let output = server.run(&[
        "keys",
        "add",
        "--name",
        "bob",
        "--key",
        &public,
        "--path",
        &server.text("open/bob"),
        "--policy-dir",
        &policies,
        "--user",
        &server.account.name,
    ]);
    output.assert_failure();
    assert_eq!(output.code(), Some(1));
    output.assert_stderr_contains("the engine would refuse this repository directory:");
    assert!(!server.path("open/bob").exists());
    assert!(!server.policy("bob").exists());
    assert_eq!(server.authorized(), before);
}

#[test]
fn refusals_name_the_problem_and_change_nothing() {
    let server = require!(Server::new("keys-refusals"));
    let alice = server.keygen("alice", "ed25519");
    let admin = server.keygen("admin", "ed25519");
    server.write_authorized(
        format!("# keys\n{} admin\n", server.public_text(&admin)).as_bytes(),
        0o600,
    );
    server.add("alice", &alice, &[]).assert_success();
    let bob = server.keygen("bob", "ed25519");
    let bob_text = server.public_text(&bob);
    let dsa_blob = {
        let mut blob = Vec::new();
        for field in [&b"ssh-dss"[..], b"\x01", b"\x01", b"\x01", b"\x01"] {
            blob.extend((field.len() as u32).to_be_bytes());
            blob.extend(field);
        }
        base64::engine::general_purpose::STANDARD.encode(blob)
    };
    let key_file = |name: &str, text: &str| {
        let path = server.path(&format!("client-keys/{name}.pub"));
        fs::write(&path, text).unwrap();
        path.with_extension("")
    };
    let cases: Vec<(&str, PathBuf, String)> = vec![
        (
            "bob",
            admin.clone(),
            "this key is already on line 2 (no forced command: a shell); sshd gives a key the rights of its first line only".to_owned(),
        ),
        (
            "bob",
            alice.clone(),
            format!(
                "this key is already on line 3 (borg-gate with policy {})",
                server.policy("alice").display()
            ),
        ),
        (
            "alice",
            bob.clone(),
            "exists already: the name \"alice\" is taken".to_owned(),
        ),
        (
            "bob",
            key_file("smuggled", &format!("command=\"/bin/sh\",no-pty {bob_text}\n")),
            "the key text starts with authorized_keys options (command=\"/bin/sh\",no-pty); give the bare public key".to_owned(),
        ),
        (
            "bob",
            key_file("two", &format!("{bob_text}\n{}\n", server.public_text(&admin))),
            "it holds 2 keys; give one key per `keys add`".to_owned(),
        ),
        (
            "bob",
            key_file("dsa", &format!("ssh-dss {dsa_blob} old\n")),
            "ssh-dss keys are refused by OpenSSH".to_owned(),
        ),
        (
            "bob",
            key_file("private", &fs::read_to_string(&bob).unwrap()),
            "this is a private key; give the .pub file".to_owned(),
        ),
        (
            "bob/x",
            bob.clone(),
            "the name \"bob/x\" is not a plain label".to_owned(),
        ),
        (
            "bob",
            bob.clone(),
            "--quota".to_owned(),
        ),
    ];
    for (name, key, expected) in cases {
        let before = server.authorized();
        let policies_before = fs::read_dir(server.path("policies")).unwrap().count();
        let extra: &[&str] = if expected == "--quota" {
            &["--quota", "5M"]
        } else {
            &[]
        };
        let output = server.add(name, &key, extra);
        assert_eq!(output.code(), Some(1), "{output}");
        let stderr = output.stderr_text();
        assert_eq!(stderr.lines().count(), 1, "{output}");
        assert!(stderr.starts_with("borg-gate: "), "{output}");
        let expected = if expected == "--quota" {
            "storage_quota \"5M\" is too small".to_owned()
        } else {
            expected
        };
        assert!(
            stderr.contains(&expected),
            "expected {expected:?}:\n{output}"
        );
        assert_eq!(
            server.authorized(),
            before,
            "{name}: authorized_keys changed"
        );
        assert_eq!(
            fs::read_dir(server.path("policies")).unwrap().count(),
            policies_before,
            "{name}: a policy was written"
        );
        assert!(
            !server.path("srv/bob").exists(),
            "{name}: a directory was made"
        );
    }
    // A name is taken by its line too, when its policy file is gone.
    fs::remove_file(server.policy("alice")).unwrap();
    let output = server.add("alice", &bob, &[]);
    assert_eq!(output.code(), Some(1), "{output}");
    output.assert_stderr_contains("the name \"alice\" is already used by the key on line 3");
}

#[test]
fn dry_run_prints_the_policy_and_the_diff_and_changes_nothing() {
    let server = require!(Server::new("keys-dry-run"));
    let admin = server.keygen("admin", "ed25519");
    let old = format!("# keys\r\n{} admin", server.public_text(&admin));
    server.write_authorized(old.as_bytes(), 0o600);
    let alice = server.keygen("alice", "ed25519");
    let output = server.add(
        "alice",
        &alice,
        &["--template", "tenant", "--quota", "20G", "--dry-run"],
    );
    output.assert_success();
    let text = output.stdout_text();
    let file = server.account.authorized_keys().display().to_string();
    let expected_diff = format!(
        "--- {file}\n+++ {file}\n@@ -1,2 +1,3 @@\n # keys\r\n-{} admin\n\\ No newline at end of file\n+{} admin\n+{}\n",
        server.public_text(&admin),
        server.public_text(&admin),
        server.expected_line("alice", &alice)
    );
    assert!(text.ends_with(&expected_diff), "{text}");
    for expected in [
        "# Key \"alice\": written by `borg-gate keys add` from the tenant template\n".to_owned(),
        "name = \"alice\"\n".to_owned(),
        format!("restrict_to_paths = [\"{}\"]\n", server.text("srv/alice")),
        "storage_quota = \"20G\"\n".to_owned(),
        format!("file = \"{}\"\n", server.text("log/audit.jsonl")),
        format!(
            "# would create the directory {} ({}, 0700)\n",
            server.text("srv/alice"),
            server.account.name
        ),
        format!(
            "# would create the audit log {}",
            server.text("log/audit.jsonl")
        ),
        "# note: the policy has no [metrics]".to_owned(),
    ] {
        assert!(text.contains(&expected), "missing {expected:?}:\n{text}");
    }
    assert_eq!(server.authorized(), old.as_bytes());
    for absent in ["srv", "policies", "log", "home/.ssh/authorized_keys.bak"] {
        assert!(!server.path(absent).exists(), "{absent} was created");
    }
}

#[test]
fn fingerprints_in_keys_list_are_the_ones_ssh_keygen_prints() {
    let server = require!(Server::new("keys-fingerprints"));
    let admin = server.keygen("admin", "rsa");
    server.write_authorized(
        format!(
            "command=\"/usr/bin/true\" {} admin@desk\n",
            server.public_text(&admin)
        )
        .as_bytes(),
        0o600,
    );
    for (name, kind) in [("ed", "ed25519"), ("rsa", "rsa"), ("ec", "ecdsa")] {
        let key = server.keygen(name, kind);
        server.add(name, &key, &[]).assert_success();
    }
    let listing = json(&server.keys(&["list", "--json"]));
    let rows = listing["keys"].as_array().unwrap();
    let ours: Vec<String> = rows
        .iter()
        .map(|row| {
            let key_type = row["key_type"].as_str().unwrap();
            format!(
                "{} {} {} ({})",
                row["bits"],
                row["fingerprint"].as_str().unwrap(),
                row["comment"].as_str().unwrap(),
                borg_gate::admin::keys::fingerprint::type_label(key_type)
            )
        })
        .collect();
    let mut keygen = Command::new("ssh-keygen");
    keygen
        .arg("-l")
        .arg("-f")
        .arg(server.account.authorized_keys())
        .env_clear()
        .env("PATH", support::SAFE_PATH);
    let theirs = run_with_timeout(keygen, TIMEOUT);
    theirs.assert_success();
    assert_eq!(ours.join("\n") + "\n", theirs.stdout_text());
    assert_eq!(rows[0]["kind"], "command");
    assert_eq!(rows[1]["name"], "ed");
    assert_eq!(rows[2]["bits"], 3072);

    // --key takes the same fingerprint.
    let fingerprint = rows[2]["fingerprint"].as_str().unwrap();
    server
        .keys(&["remove", "--key", fingerprint])
        .assert_success();
    assert!(!String::from_utf8_lossy(&server.authorized()).contains("borg-gate:rsa"));
}

#[test]
fn keys_list_shows_names_permissions_quotas_and_lines_that_are_not_ours() {
    let server = require!(Server::new("keys-list"));
    let admin = server.keygen("admin", "ed25519");
    server.write_authorized(
        format!("{} admin@desk\n", server.public_text(&admin)).as_bytes(),
        0o600,
    );
    let restore = server.keygen("restore", "ed25519");
    server
        .add("restore", &restore, &["--template", "read-only"])
        .assert_success();
    let tenant = server.keygen("tenant", "ed25519");
    server
        .add(
            "tenant",
            &tenant,
            &["--template", "tenant", "--quota", "1T"],
        )
        .assert_success();
    let table = server.keys(&["list"]);
    table.assert_success();
    let lines: Vec<String> = table.stdout_text().lines().map(str::to_owned).collect();
    assert!(
        lines[0].starts_with("LINE  NAME     ACCESS     QUOTA  LAST SESSION  FINGERPRINT"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("1     -        shell      -      -             SHA256:"),
        "{table}"
    );
    assert_eq!(
        lines[2],
        "      line 1: not a borg-gate key: no forced command, so it gets a shell"
    );
    assert!(
        lines[3].starts_with("2     restore  read-only  -      never         SHA256:"),
        "{table}"
    );
    assert!(
        lines[3].ends_with(&format!(
            "borg1     {}  {}",
            server.policy("restore").display(),
            server.text("srv/restore")
        )),
        "{table}"
    );
    assert!(
        lines[4].starts_with("3     tenant   full       1T     never         SHA256:"),
        "{table}"
    );
}

#[test]
fn keys_remove_takes_out_the_line_keeps_repositories_and_purges_only_unshared_policies() {
    let server = require!(Server::new("keys-remove"));
    let alice = server.keygen("alice", "ed25519");
    let bob = server.keygen("bob", "ed25519");
    server.add("alice", &alice, &[]).assert_success();
    server.add("bob", &bob, &[]).assert_success();
    fs::write(server.path("srv/alice/repository-data"), b"backups").unwrap();
    // A second, conditional line that uses bob's policy.
    let carol = server.keygen("carol", "ed25519");
    let mut text = server.authorized();
    text.extend(
        format!(
            "from=\"192.0.2.7\",command=\"{} --policy {}\",restrict {}\n",
            support::cargo_bin().display(),
            server.policy("bob").display(),
            server.public_text(&carol)
        )
        .as_bytes(),
    );
    server.write_authorized(&text, 0o600);

    let dry = server.keys(&["remove", "alice", "--purge", "--dry-run"]);
    dry.assert_success();
    assert!(
        dry.stdout_text().contains(&format!(
            "would remove the policy {}",
            server.policy("alice").display()
        )),
        "{dry}"
    );
    assert_eq!(server.authorized(), text);

    let removed = server.keys(&["remove", "alice"]);
    removed.assert_success();
    assert!(
        removed.stdout_text().starts_with(&format!(
            "borg-gate: removed line 1 of {}: 256 SHA256:",
            server.account.authorized_keys().display()
        )),
        "{removed}"
    );
    assert!(
        removed.stdout_text().contains(&format!(
            "kept the policy {} (--purge removes it)",
            server.policy("alice").display()
        )),
        "{removed}"
    );
    assert!(server.policy("alice").exists());
    assert_eq!(
        fs::read(server.path("srv/alice/repository-data")).unwrap(),
        b"backups"
    );
    let after: Vec<u8> = text
        .split_inclusive(|&b| b == b'\n')
        .skip(1)
        .flatten()
        .copied()
        .collect();
    assert_eq!(server.authorized(), after);

    let purged = server.keys(&["remove", "bob", "--purge"]);
    purged.assert_success();
    assert!(
        purged.stdout_text().contains(&format!(
            "kept the policy {}: other keys use it",
            server.policy("bob").display()
        )),
        "{purged}"
    );
    assert!(server.policy("bob").exists());

    let missing = server.keys(&["remove", "alice"]);
    assert_eq!(missing.code(), Some(1), "{missing}");
    missing.assert_stderr_contains("no key is named \"alice\"");
}

#[test]
fn doctor_stays_clean_after_any_sequence_of_keys_commands() {
    let server = require!(Server::new("keys-doctor"));
    // Each key its own directory: doctor warns when two keys reach the same one.
    let templates = ["append-only", "read-only", "full", "tenant"];
    let keys: Vec<PathBuf> = templates
        .iter()
        .map(|t| server.keygen(t, "ed25519"))
        .collect();
    for (template, key) in templates.iter().zip(&keys) {
        server
            .add(template, key, &["--template", template])
            .assert_success();
        server.assert_doctor_clean(&format!("keys add --template {template}"));
    }
    server.keys(&["remove", "full"]).assert_success();
    server.assert_doctor_clean("keys remove full");
    server
        .keys(&["remove", "read-only", "--purge"])
        .assert_success();
    server.assert_doctor_clean("keys remove read-only --purge");
    let fingerprint = json(&server.keys(&["list", "--json"]))["keys"][0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    server
        .keys(&["remove", "--key", &fingerprint, "--purge"])
        .assert_success();
    server.assert_doctor_clean("keys remove --key");
    // Back again, under a new name (the old policy of `full` is still there).
    server
        .add("full-again", &keys[2], &["--template", "full"])
        .assert_success();
    server.assert_doctor_clean("keys add after remove");
}

#[test]
fn concurrent_keys_add_lose_no_line() {
    let server = require!(Server::new("keys-concurrent"));
    let names: Vec<String> = (0..6).map(|n| format!("client{n}")).collect();
    let keys: Vec<PathBuf> = names.iter().map(|n| server.keygen(n, "ed25519")).collect();
    let server = std::sync::Arc::new(server);
    let threads: Vec<_> = names
        .iter()
        .zip(keys)
        .map(|(name, key)| {
            let server = std::sync::Arc::clone(&server);
            let name = name.clone();
            std::thread::spawn(move || server.add(&name, &key, &[]))
        })
        .collect();
    for thread in threads {
        thread.join().unwrap().assert_success();
    }
    let text = String::from_utf8(server.authorized()).unwrap();
    for name in &names {
        assert_eq!(
            text.matches(&format!("borg-gate:{name} ")).count(),
            1,
            "{text}"
        );
    }
    assert_eq!(text.lines().count(), names.len());
    server.assert_doctor_clean("six concurrent adds");
}

#[test]
fn completions_are_generated_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let output = run_with_timeout(
            {
                let mut command = Command::new(support::cargo_bin());
                command.args(["completions", shell]);
                command
            },
            TIMEOUT,
        );
        output.assert_success();
        for word in ["keys", "doctor", "check-policy", "template", "append-only"] {
            output.assert_stdout_contains(word);
        }
    }
    // bash itself reads the script.
    let bash = require!(support::require_tool("bash"));
    let dir = support::temp_dir("completions");
    let script = dir.path().join("borg-gate.bash");
    let mut generate = Command::new(support::cargo_bin());
    generate.args(["completions", "bash"]);
    fs::write(&script, run_with_timeout(generate, TIMEOUT).stdout).unwrap();
    let mut check = Command::new(bash);
    check.arg("-n").arg(&script);
    run_with_timeout(check, TIMEOUT).assert_success();
}

#[test]
fn a_second_key_for_the_same_directory_is_added_with_a_note_about_sharing() {
    let server = require!(Server::new("keys-shared"));
    let laptop = server.keygen("laptop", "ed25519");
    let restore = server.keygen("restore", "ed25519");
    server
        .add_at("laptop", &laptop, "srv/alice", &[])
        .assert_success();
    let second = server.add_at(
        "restore",
        &restore,
        "srv/alice",
        &["--template", "read-only"],
    );
    second.assert_success();
    second.assert_stdout_contains(&format!(
        "note: policy laptop ({}) also reaches {}: either key can read the other's backups",
        server.policy("laptop").display(),
        server.text("srv/alice")
    ));
    let listing = json(&server.keys(&["list", "--json"]));
    assert_eq!(listing["keys"][1]["permissions"], "read-only");
    assert_eq!(listing["keys"][1]["paths"][0], server.text("srv/alice"));
}
