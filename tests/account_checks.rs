//! `check-policy --user ACCOUNT`: trust judged as the gate running as the backup account
//! judges it, and the gate's and the engine's own checks run as that account (by a child
//! that dropped root, or by the account itself), through the real binary and a real account
//! made with useradd.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{TestAccount, require, stderr, stdout};

struct Setup {
    dir: tempfile::TempDir,
    account: TestAccount,
}

impl Setup {
    /// A root-owned 0755 directory (so the account can reach what is inside), the account,
    /// a repository directory the account owns and an audit directory it owns: a setup with
    /// nothing to report.
    fn new(label: &str) -> Option<Setup> {
        support::require_root()?;
        support::require_tool("useradd")?;
        let dir = support::temp_dir(label);
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let account = TestAccount::create(label, &dir.path().join("home"), "/bin/sh");
        let setup = Setup { dir, account };
        for (sub, owner, mode) in [
            ("srv", 0, 0o755),
            ("srv/alice", setup.account.uid, 0o700),
            ("log", setup.account.uid, 0o750),
            ("etc", 0, 0o755),
        ] {
            let path = setup.path(sub);
            fs::create_dir(&path).unwrap();
            setup.chown(&path, owner);
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        }
        Some(setup)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn text(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn chown(&self, path: &Path, uid: u32) {
        let gid = if uid == 0 { 0 } else { self.account.gid };
        nix::unistd::chown(
            path,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .unwrap();
    }

    fn policy(&self, extra_audit: &str, mode: u32) -> PathBuf {
        let text = format!(
            "version = 1\nname = \"alice\"\n[repository]\nrestrict_to_paths = [\"{}\"]\n\
             [audit]\nfile = \"{}\"\n{extra_audit}\n",
            self.text("srv/alice"),
            self.text("log/audit.jsonl")
        );
        let path = self.path("etc/alice.toml");
        support::write_file(&path, text.as_bytes(), mode);
        path
    }

    /// `borg-gate check-policy ARGS` as root.
    fn check(&self, args: &[&str]) -> Output {
        let mut command = Command::new(support::cargo_bin());
        command.arg("check-policy").args(args);
        run(command)
    }

    /// `borg-gate check-policy ARGS` run by the account itself.
    fn check_as_account(&self, args: &[&str]) -> Output {
        let mut command = Command::new("setpriv");
        command
            .arg(format!("--reuid={}", self.account.uid))
            .arg(format!("--regid={}", self.account.gid))
            .arg("--init-groups")
            .arg(support::cargo_bin())
            .arg("check-policy")
            .args(args);
        run(command)
    }
}

fn run(mut command: Command) -> Output {
    command
        .env_clear()
        .env("PATH", support::SAFE_PATH)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn a_setup_the_account_can_use_is_ok_as_the_account() {
    let setup = require!(Setup::new("checks-clean"));
    let policy = setup.policy("", 0o644).display().to_string();
    let user = setup.account.name.clone();
    let output = setup.check(&["--user", &user, &policy]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        format!("{policy}: ok (policy \"alice\", checked as {user})\n")
    );
    assert_eq!(stderr(&output), "");
    // Without --user, root says what it did not check.
    let as_root = setup.check(&[&policy]);
    assert!(as_root.status.success());
    assert_eq!(
        stderr(&as_root),
        "borg-gate: note: checked as root; sessions run as the account the keys log in to: add --user ACCOUNT to check as that account\n"
    );
}

#[test]
fn a_root_owned_private_policy_passes_as_root_and_fails_as_the_account() {
    let setup = require!(Setup::new("checks-private"));
    let policy = setup.policy("", 0o600).display().to_string();
    let user = setup.account.name.clone();
    assert!(setup.check(&[&policy]).status.success());
    let output = setup.check(&["--user", &user, &policy]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(
        stderr(&output),
        format!(
            "borg-gate: {policy}: {user} cannot read policy {policy} (Permission denied), so every session with this key is refused; chmod 0644 {policy}\n"
        )
    );
}

#[test]
fn a_policy_the_account_owns_is_judged_as_the_gate_running_as_the_account_judges_it() {
    let setup = require!(Setup::new("checks-owned"));
    let policy_path = setup.policy("", 0o644);
    setup.chown(&policy_path, setup.account.uid);
    let policy = policy_path.display().to_string();
    let user = setup.account.name.clone();
    let as_root = setup.check(&[&policy]);
    assert_eq!(as_root.status.code(), Some(1));
    assert!(
        stderr(&as_root).starts_with(&format!(
            "borg-gate: policy {policy} is owned by {user} (uid {}); it must be owned by root\n",
            setup.account.uid
        )),
        "{}",
        stderr(&as_root)
    );
    let output = setup.check(&["--user", &user, &policy]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stderr(&output),
        format!(
            "borg-gate: warning: {policy}: policy {policy} is owned by the backup account {user}, which may then rewrite its own policy; chown root: {policy}\n"
        )
    );
}

#[test]
fn the_engines_directory_trust_check_and_the_accounts_access_are_checked_as_the_account() {
    let setup = require!(Setup::new("checks-access"));
    let policy = setup.policy("", 0o644).display().to_string();
    let user = setup.account.name.clone();
    // Another account's group could swap the repository directory: the engine refuses it.
    fs::set_permissions(setup.path("srv"), fs::Permissions::from_mode(0o775)).unwrap();
    // The audit directory is root's.
    setup.chown(&setup.path("log"), 0);
    fs::set_permissions(setup.path("log"), fs::Permissions::from_mode(0o755)).unwrap();
    let output = setup.check(&["--user", &user, &policy]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        format!(
            "borg-gate: {policy}: the engine refuses every repository under {alice}: {srv} (owner root, mode 0775) could be changed by an account other than root and {user}, which could redirect a repository outside the allowed paths; chmod go-w {srv}\n\
             borg-gate: {policy}: {user} cannot create the audit file {log}/audit.jsonl in {log} (Permission denied), so every session with this key is refused; install -d -o {user} -g {user} -m 0750 {log}\n",
            alice = setup.text("srv/alice"),
            srv = setup.text("srv"),
            log = setup.text("log"),
        )
    );
    // The account running the checks itself meets the same.
    let itself = setup.check_as_account(&["--user", &user, &policy]);
    assert_eq!(stderr(&itself), stderr(&output));
    assert_eq!(itself.status.code(), Some(1));
}

#[test]
fn a_restricted_directory_the_account_cannot_write_and_an_audit_file_it_cannot_append_to() {
    let setup = require!(Setup::new("checks-write"));
    let policy = setup.policy("", 0o644).display().to_string();
    let user = setup.account.name.clone();
    setup.chown(&setup.path("srv/alice"), 0);
    fs::set_permissions(setup.path("srv/alice"), fs::Permissions::from_mode(0o755)).unwrap();
    let audit = setup.path("log/audit.jsonl");
    fs::write(&audit, "").unwrap();
    fs::set_permissions(&audit, fs::Permissions::from_mode(0o640)).unwrap();
    let output = setup.check(&["--user", &user, &policy]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        format!(
            "borg-gate: {policy}: {user} cannot append to the audit file {audit} (Permission denied), so every session with this key is refused; chown {user}:{user} {audit}\n\
             borg-gate: warning: {policy}: {user} cannot create repositories in {alice} (Permission denied), so `borg init` there fails; install -d -o {user} -g {user} -m 0700 {alice}\n",
            audit = audit.display(),
            alice = setup.text("srv/alice"),
        )
    );
    // An audit directory the account cannot even look into: it should be the account's.
    setup.chown(&setup.path("log"), 0);
    let output = setup.check(&["--user", &user, &policy]);
    assert!(
        stderr(&output).starts_with(&format!(
            "borg-gate: {policy}: {user} cannot append to the audit file {audit} (Permission denied at {log}), so every session with this key is refused; install -d -o {user} -g {user} -m 0750 {log}\n",
            audit = audit.display(),
            log = setup.text("log"),
        )),
        "{}",
        stderr(&output)
    );
}

#[test]
fn syslog_without_dev_log_is_found_before_a_client_meets_it() {
    let setup = require!(Setup::new("checks-syslog"));
    require!(support::require_tool("unshare"));
    let policy = setup.policy("syslog = true", 0o644).display().to_string();
    let user = setup.account.name.clone();
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "/bin/sh", "-c"])
        .arg("if [ -e /dev/log ]; then mount --bind /dev/null /dev/log; fi\nexec \"$0\" \"$@\"")
        .arg(support::cargo_bin())
        .args(["check-policy", "--user", &user, &policy])
        .env_clear()
        .env("PATH", support::SAFE_PATH)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(
        text.starts_with(&format!(
            "borg-gate: {policy}: audit.syslog = true, but {user} cannot reach /dev/log ("
        )) && text.ends_with("), so every session with this key is refused; run a syslog service that provides /dev/log (systemd-journald or rsyslog), or remove `syslog = true` and keep audit.file\n"),
        "{text}"
    );
}

#[test]
fn checking_as_another_account_needs_root() {
    let setup = require!(Setup::new("checks-root"));
    let policy = setup.policy("", 0o644).display().to_string();
    let output = setup.check_as_account(&["--user", "root", &policy]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        format!(
            "borg-gate: {policy}: cannot check as root: that needs root (or running as root itself)\n"
        )
    );
    let unknown = setup.check(&["--user", "no-such-account-4711", &policy]);
    assert_eq!(unknown.status.code(), Some(2));
    assert_eq!(
        stderr(&unknown),
        "borg-gate: there is no account named \"no-such-account-4711\"\n"
    );
}
