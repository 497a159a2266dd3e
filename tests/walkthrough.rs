//! The README's "New server, step by step", run as written: as root, the account made by the
//! README's own `useradd` line, a real sshd on loopback reading that account's
//! `~/.ssh/authorized_keys` with `StrictModes yes`, real borg clients through the forced
//! commands, and `borg-gate doctor` clean on the result, with one client and with 30 laptops
//! and 30 restore keys; then its "Setting up a borg 2 key" on the same server, with a real
//! borg 2 client.
//!
//! Only what cannot run on a shared test machine is changed, each by a named substitution
//! that must still match the README: the system directories live under a temp dir, the
//! account has a test name, the keys are real, sshd is the test's own.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{AccountGuard, AuthorizedKey, CmdOutput, Sshd, SshdOptions, require};

const LAPTOPS: usize = 30;
const PASSPHRASE: &str = "correct horse battery staple";
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

/// The shell block of the README's walkthrough.
fn readme_script() -> String {
    let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");
    let (_, section) = readme
        .split_once("## New server, step by step")
        .expect("the README has its walkthrough");
    let (_, block) = section.split_once("```sh\n").expect("a sh block");
    let (script, _) = block.split_once("\n```").expect("a closed sh block");
    script.to_owned()
}

/// The shell blocks of the README's borg 2 key: the server's, then the client's.
fn readme_borg2_scripts() -> (String, String) {
    let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");
    let (_, section) = readme
        .split_once("### Setting up a borg 2 key")
        .expect("the README says how to set up a borg 2 key");
    let (_, block) = section.split_once("```sh\n").expect("a sh block");
    let (server, rest) = block.split_once("\n```").expect("a closed sh block");
    let (_, block) = rest.split_once("```sh\n").expect("the client's sh block");
    let (client, _) = block.split_once("\n```").expect("a closed sh block");
    (server.to_owned(), client.to_owned())
}

/// Applies each substitution in order; each must match, so that a README change that
/// escapes the test fails it instead.
#[track_caller]
fn substitute(text: &str, substitutions: &[(String, String)]) -> String {
    let mut text = text.to_owned();
    for (from, to) in substitutions {
        assert!(
            text.contains(from.as_str()),
            "the README walkthrough no longer contains {from:?}; update tests/walkthrough.rs:\n{text}"
        );
        text = text.replace(from.as_str(), to);
    }
    text
}

/// The walkthrough's world: a root for the system directories, the account, and sshd.
struct Server {
    root: tempfile::TempDir,
    account: AccountGuard,
    sshd: Sshd,
}

impl Server {
    fn root(&self) -> String {
        self.root.path().display().to_string()
    }

    /// The README's text with this server's paths, account and tools. Key lines keep their
    /// `ssh-ed25519 AAAA...` for [`Server::with_keys`].
    fn adapt(&self, text: &str) -> String {
        let root = self.root();
        let account = &self.account.name;
        let bin = support::cargo_bin().display().to_string();
        let mut substitutions = Vec::new();
        let mut only_if_present = |from: &str, to: String| {
            if text.contains(from) {
                substitutions.push((from.to_owned(), to));
            }
        };
        only_if_present(
            "install -m 0755 target/release/borg-gate /usr/local/bin/borg-gate",
            format!("install -m 0755 {bin} /usr/local/bin/borg-gate"),
        );
        only_if_present(
            "--shell /bin/sh borg\n",
            format!("--shell /bin/sh {account}\n"),
        );
        only_if_present("-o borg -g borg", format!("-o {account} -g {account}"));
        only_if_present("--user borg", format!("--user {account}"));
        only_if_present(
            "systemctl reload ssh",
            ": the test sshd reads its configuration at each connection".to_owned(),
        );
        only_if_present(
            "\nborg-gate check-policy",
            "\n/usr/local/bin/borg-gate check-policy".to_owned(),
        );
        only_if_present(
            "\nborg-gate explain",
            "\n/usr/local/bin/borg-gate explain".to_owned(),
        );
        only_if_present(
            "\nborg-gate doctor",
            format!(
                "\n/usr/local/bin/borg-gate doctor --sshd-config {}",
                self.sshd.config_path().display()
            ),
        );
        for system_path in [
            "/var/lib/borg",
            "/usr/local/bin/borg-gate",
            "/etc/borg-gate",
            "/var/log/borg-gate",
            "/srv/borg",
            "/etc/ssh/sshd_config.d",
        ] {
            only_if_present(system_path, format!("{root}{system_path}"));
        }
        substitute(text, &substitutions)
    }

    /// Puts real public keys where the README writes `ssh-ed25519 AAAA... NAME-laptop` and
    /// `... NAME-restore`.
    fn with_keys(&self, text: &str, client: &str, laptop_key: usize, restore_key: usize) -> String {
        substitute(
            text,
            &[
                (
                    format!("ssh-ed25519 AAAA... {client}-laptop"),
                    format!("{} {client}-laptop", self.sshd.public_key(laptop_key)),
                ),
                (
                    format!("ssh-ed25519 AAAA... {client}-restore"),
                    format!("{} {client}-restore", self.sshd.public_key(restore_key)),
                ),
            ],
        )
    }

    /// Runs a script with /bin/sh -eu as root, in the root directory.
    #[track_caller]
    fn run_script(&self, script: &str) -> CmdOutput {
        let mut command = Command::new("/bin/sh");
        command
            .arg("-eux")
            .arg("-c")
            .arg(script)
            .current_dir(self.root.path())
            .env_clear()
            .env("PATH", support::SAFE_PATH)
            .env("LANG", "C.UTF-8");
        support::run_with_timeout(command, SCRIPT_TIMEOUT)
    }

    fn doctor(&self) -> CmdOutput {
        let mut command = Command::new(format!("{}/usr/local/bin/borg-gate", self.root()));
        command
            .args(["doctor", "--user", &self.account.name, "--sshd-config"])
            .arg(self.sshd.config_path())
            .env_clear()
            .env("PATH", support::SAFE_PATH);
        support::run_with_timeout(command, SCRIPT_TIMEOUT)
    }

    fn url(&self, path: &str) -> String {
        self.sshd.url(format!("{}{path}", self.root()))
    }
}

/// The README's lines for one more client: the last line of step 3 and step 5's two lines,
/// with `alice` replaced by `client`.
fn lines_for_client(script: &str, client: &str) -> String {
    let lines: Vec<&str> = script
        .lines()
        .filter(|line| {
            line.starts_with("install -d") && line.ends_with("/srv/borg/alice")
                || line.starts_with("echo 'command=")
        })
        .collect();
    assert_eq!(
        lines.len(),
        3,
        "one directory and two keys per client:\n{script}"
    );
    lines.join("\n").replace("alice", client) + "\n"
}

#[test]
fn the_readme_walkthrough_runs_as_written_and_doctor_is_clean_with_30_laptops_and_30_restore_keys()
{
    require!(support::require_root());
    require!(support::require_tool("/usr/sbin/sshd"));
    require!(support::require_tool("useradd"));
    let borg = require!(support::borg14());

    let root = support::temp_dir("walkthrough");
    // A root-owned 0755 directory, as `/` is: the engine's directory-trust check passes.
    fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).unwrap();
    // What a Debian system has before the walkthrough starts.
    for dir in [
        "var/lib",
        "var/log",
        "usr/local/bin",
        "etc/ssh/sshd_config.d",
    ] {
        fs::create_dir_all(root.path().join(dir)).unwrap();
    }
    let account = AccountGuard::new("walkthrough");
    // A laptop and a restore key per client, and the borg 2 key.
    let keys = vec![AuthorizedKey::new(""); 2 * LAPTOPS + 1];
    let sshd = Sshd::start_with(
        &keys,
        &SshdOptions {
            account: Some(account.name.clone()),
            isolated_home: false,
            extra_config: vec![format!(
                "Include {}/etc/ssh/sshd_config.d/*.conf",
                root.path().display()
            )],
            ..SshdOptions::default()
        },
    );
    let server = Server {
        root,
        account,
        sshd,
    };

    // The walkthrough itself: it ends with doctor, which must exit 0 for `sh -e` to.
    let readme = readme_script();
    let script = server.with_keys(&server.adapt(&readme), "alice", 0, 1);
    let run = server.run_script(&script);
    assert!(run.success(), "the README walkthrough failed:\n{run}");
    assert!(
        run.stdout_text()
            .lines()
            .all(|line| line.contains(": ok (policy")),
        "check-policy and doctor printed findings:\n{run}"
    );
    assert!(
        run.stderr_text()
            .contains("borg-gate doctor: 0 error(s), 0 warning(s)"),
        "{run}"
    );

    // A client backs up through the laptop key, restores through the restore key, and the
    // restore key changes nothing.
    let source = support::temp_dir("walkthrough-source");
    support::write_file(
        &source.path().join("notes.txt"),
        b"what alice keeps\n",
        0o644,
    );
    let (laptop_rsh, restore_rsh) = (server.sshd.rsh(0), server.sshd.rsh(1));
    let laptop = [("BORG_RSH", laptop_rsh.as_str())];
    let restore = [("BORG_RSH", restore_rsh.as_str())];
    let repo = server.url("/srv/borg/alice/laptop");
    let init = borg.run(&["init", "-e", "repokey", &repo], &laptop, Some(PASSPHRASE));
    assert!(init.success(), "{init}\n{}", server.sshd.log());
    let create = borg.run_in(
        source.path(),
        &["create", &format!("{repo}::monday"), "."],
        &laptop,
        Some(PASSPHRASE),
    );
    assert!(create.success(), "{create}");
    let list = borg.run(&["list", "--short", &repo], &restore, Some(PASSPHRASE));
    assert!(list.success(), "{list}");
    assert_eq!(list.stdout_text().trim(), "monday");
    let target = support::temp_dir("walkthrough-restore");
    let extract = borg.run_in(
        target.path(),
        &["extract", &format!("{repo}::monday")],
        &restore,
        Some(PASSPHRASE),
    );
    assert!(extract.success(), "{extract}");
    assert_eq!(
        fs::read(target.path().join("notes.txt")).unwrap(),
        b"what alice keeps\n"
    );
    let delete = borg.run(
        &["delete", &format!("{repo}::monday")],
        &restore,
        Some(PASSPHRASE),
    );
    assert!(
        !delete.success(),
        "a restore key deleted an archive:\n{delete}"
    );
    let still = borg.run(&["list", "--short", &repo], &laptop, Some(PASSPHRASE));
    assert_eq!(still.stdout_text().trim(), "monday", "{still}");
    let elsewhere = borg.run(
        &["init", "-e", "repokey", &server.url("/srv/borg/bob/laptop")],
        &laptop,
        Some(PASSPHRASE),
    );
    assert!(
        !elsewhere.success(),
        "alice's key reached bob's directory:\n{elsewhere}"
    );

    // Every session is audited with the key's name (by the gate's decision record; the
    // engine's session_end record joins it by session_id).
    let audit =
        fs::read_to_string(format!("{}/var/log/borg-gate/audit.jsonl", server.root())).unwrap();
    let records: Vec<serde_json::Value> = audit
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|record| record["event"] == "decision")
        .collect();
    assert!(records.len() >= 6, "{audit}");
    assert!(records.iter().all(|r| r["name"] == "alice"), "{audit}");
    assert!(records.iter().any(|r| r["policy"] == "restore"), "{audit}");

    // Twenty-nine more clients, each the README's way: doctor stays clean.
    let mut more = String::new();
    for index in 1..LAPTOPS {
        let client = format!("client{index:02}");
        let lines = server.adapt(&lines_for_client(&readme, &client));
        more.push_str(&server.with_keys(&lines, &client, 2 * index, 2 * index + 1));
    }
    let run = server.run_script(&more);
    assert!(run.success(), "{run}");
    let keys_file = format!("{}/var/lib/borg/.ssh/authorized_keys", server.root());
    let key_lines = fs::read_to_string(&keys_file).unwrap().lines().count();
    assert_eq!(key_lines, 2 * LAPTOPS);
    let doctor = server.doctor();
    assert_eq!(doctor.code(), Some(0), "{doctor}");
    assert_eq!(doctor.stdout_text(), "", "{doctor}");

    // A client of the last laptop works too (the 59th and 60th lines are live).
    let last = format!("/srv/borg/client{:02}/laptop", LAPTOPS - 1);
    let last_rsh = server.sshd.rsh(2 * LAPTOPS - 2);
    let init = borg.run(
        &["init", "-e", "repokey", &server.url(&last)],
        &[("BORG_RSH", last_rsh.as_str())],
        Some(PASSPHRASE),
    );
    assert!(init.success(), "{init}");

    // The README's borg 2 key, on the same server: its lines as written, a real borg 2 client
    // running the README's client lines through it, and doctor still clean.
    let borg2 = require!(support::borg2_path());
    let (server_lines, client_lines) = readme_borg2_scripts();
    let script = substitute(
        &server.adapt(&server_lines),
        &[(
            "ssh-ed25519 AAAA... carol".to_owned(),
            format!("{} carol", server.sshd.public_key(2 * LAPTOPS)),
        )],
    );
    let run = server.run_script(&script);
    assert!(run.success(), "the README's borg 2 key failed:\n{run}");
    assert!(
        run.stdout_text().contains("decision:    accept"),
        "explain did not accept the README's own command:\n{run}"
    );
    let client = support::BorgClient::new(&borg2, "walkthrough-b23");
    let rsh = server.sshd.rsh(2 * LAPTOPS);
    let url = format!(
        "rest://{}@127.0.0.1/{}/srv/borg/carol/laptop",
        server.account.name,
        server.root()
    );
    let client_script = substitute(
        &client_lines,
        &[
            (
                "rest://borg@server//srv/borg/carol/laptop".to_owned(),
                url.clone(),
            ),
            // The client's home holds its own cache: back up the test's files instead.
            ("'{hostname}-{now}' ~".to_owned(), "monday .".to_owned()),
        ],
    );
    let command = client.shell(
        source.path(),
        &client_script,
        &[("BORG_RSH", rsh.as_str())],
        Some(PASSPHRASE),
    );
    let run = support::run_with_timeout(command, SCRIPT_TIMEOUT);
    assert!(
        run.success(),
        "the README's borg 2 client lines failed:\n{run}\n{}",
        server.sshd.log()
    );
    let list = client.run(
        &["-r", &url, "repo-list", "--format", "{archive}{NL}"],
        &[("BORG_RSH", rsh.as_str())],
        Some(PASSPHRASE),
    );
    assert_eq!(list.stdout_text().trim(), "monday", "{list}");
    let audit =
        fs::read_to_string(format!("{}/var/log/borg-gate/audit.jsonl", server.root())).unwrap();
    assert!(
        audit
            .lines()
            .any(|line| line.contains("\"policy\":\"carol\"")
                && line.contains("\"protocol\":\"borg2\"")),
        "{audit}"
    );
    let doctor = server.doctor();
    assert_eq!(doctor.code(), Some(0), "{doctor}");
    assert_eq!(doctor.stdout_text(), "", "{doctor}");

    // The README's explanation of "This account is currently not available": nologin as
    // the login shell. The client sees the sentence; doctor names the fix.
    let nologin = support::account_tool(
        "usermod",
        &["--shell", "/usr/sbin/nologin", &server.account.name],
    );
    nologin.assert_success();
    let refused = server.sshd.ssh_command(0, "borg serve");
    assert!(
        refused
            .stdout_text()
            .contains("This account is currently not available."),
        "{refused}"
    );
    let doctor = server.doctor();
    assert_eq!(doctor.code(), Some(2), "{doctor}");
    assert!(
        doctor.stdout_text().contains(&format!(
            "so no backup can run; chsh -s /bin/sh {}",
            server.account.name
        )),
        "{doctor}"
    );
}
