//! What the engine inherits from the gate when a real sshd passes the client's environment
//! along (`PermitUserEnvironment yes`, `AcceptEnv`, authorized_keys `environment=`): no
//! SSH_ORIGINAL_COMMAND, no client-set BORG_*, no LD_PRELOAD or LD_LIBRARY_PATH, no descriptor
//! beyond 0, 1 and 2, and the policy's umask. And which policy files the gate trusts.
//! (The same without sshd: tests/gate_cli.rs.)
//!
//! Policy paths and symlinks, deliberately: the policy file itself is opened with O_NOFOLLOW,
//! so a symlink as the last component is refused (tests/gate_cli.rs,
//! `writable_or_symlinked_policy_fails_closed`); symlinked directories on the way are
//! followed, as for any configuration file, because the file that is finally opened is
//! checked itself (owner root or the gate's account, not writable by group or others).

mod support;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::{AuthorizedKey, Sshd, SshdOptions, require};

/// An engine that records its environment, umask and open descriptors (listed by a child of
/// the shell, before the shell opens anything itself).
fn recording_engine(dir: &Path) -> PathBuf {
    let report = dir.join("engine-report");
    let script = format!(
        "#!/bin/sh\nls /proc/$$/fd > {report}.fds\n{{ echo \"UMASK $(umask)\"; env | sed 's/^/ENV /'; }} > {report}\n",
        report = report.display()
    );
    let path = dir.join("engine.sh");
    support::write_file(&path, script.as_bytes(), 0o755);
    path
}

fn policy_text(engine: &Path, audit: &Path) -> String {
    format!(
        "version = 1\n[engine]\nprogram = \"{}\"\n[client]\nlog_levels = [\"warning\", \"info\"]\n\
         [repository]\nrestrict_to_paths = [\"/srv/backup\"]\numask = \"027\"\n[audit]\nfile = \"{}\"\n",
        engine.display(),
        audit.display()
    )
}

fn write_policy(path: &Path, text: &str, mode: u32) {
    support::write_file(path, text.as_bytes(), mode);
}

/// Names a client or authorized_keys tries to pass to the engine.
const HOSTILE: [(&str, &str); 6] = [
    ("LD_PRELOAD", "/nonexistent/evil.so"),
    ("LD_LIBRARY_PATH", "/tmp/evil-libs"),
    ("BORG_PASSPHRASE", "client-set"),
    ("BORG_RSH", "evil"),
    ("BORG_REPO", "/etc"),
    ("SSH_ORIGINAL_COMMAND", "evil-command"),
];

#[test]
fn the_engine_sees_nothing_sshd_passed_on_from_the_client() {
    require!(support::require_root());
    require!(support::require_tool("/usr/sbin/sshd"));
    let dir = support::temp_dir("hygiene-sshd");
    let engine = recording_engine(dir.path());
    let policy = dir.path().join("policy.toml");
    write_policy(
        &policy,
        &policy_text(&engine, &dir.path().join("audit.jsonl")),
        0o600,
    );
    let keys_env =
        "environment=\"LD_LIBRARY_PATH=/tmp/keys-libs\",environment=\"BORG_PASSPHRASE=from-keys\"";
    let gate = AuthorizedKey::borg_gate(&policy);
    let gate = AuthorizedKey::new(format!("{},{keys_env}", gate.options));
    // A second key shows what sshd hands a forced command, so this test cannot pass vacuously.
    let witness_file = dir.path().join("sshd-env");
    let witness = AuthorizedKey::new(format!(
        "{},{keys_env}",
        AuthorizedKey::forced_command(&format!("env > {}", witness_file.display())).options
    ));
    let options = SshdOptions {
        permit_user_environment: "yes".to_owned(),
        accept_env: vec![
            "BORG_*".into(),
            "LD_*".into(),
            "SSH_ORIGINAL_COMMAND".into(),
        ],
        ..SshdOptions::default()
    };
    let sshd = Sshd::start_with(&[gate, witness], &options);
    // ssh keeps only the first SetEnv option: all pairs go into one.
    let pairs: Vec<String> = HOSTILE
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    let set_env_option = format!("SetEnv={}", pairs.join(" "));
    let set_env = ["-o", set_env_option.as_str()];

    let witnessed = sshd.ssh(1, "borg serve", &set_env, None);
    assert!(witness_file.exists(), "{witnessed}\n{}", sshd.log());
    let passed = fs::read_to_string(&witness_file).unwrap();
    for needle in [
        "LD_LIBRARY_PATH=/tmp/keys-libs",
        "BORG_PASSPHRASE=from-keys",
        "BORG_RSH=evil",
        "BORG_REPO=/etc",
        "LD_PRELOAD=/nonexistent/evil.so",
    ] {
        assert!(
            passed.contains(needle),
            "sshd did not pass {needle}:\n{passed}"
        );
    }

    let output = sshd.ssh(0, "borg serve --info", &set_env, None);
    output.assert_success();
    let report = fs::read_to_string(dir.path().join("engine-report")).unwrap();
    let env: Vec<&str> = report
        .lines()
        .filter_map(|line| line.strip_prefix("ENV "))
        .collect();
    for name in [
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "BORG_PASSPHRASE",
        "BORG_RSH",
        "BORG_REPO",
        "SSH_ORIGINAL_COMMAND",
        "SSH_CONNECTION",
        "SSH_CLIENT",
    ] {
        assert!(
            !env.iter().any(|e| e.starts_with(&format!("{name}="))),
            "{name} reached the engine: {env:?}"
        );
    }
    assert!(report.contains("UMASK 0027"), "{report}");
    let fds = fs::read_to_string(dir.path().join("engine-report.fds")).unwrap();
    let mut fds: Vec<i32> = fds.split_whitespace().map(|f| f.parse().unwrap()).collect();
    fds.sort();
    // 0, 1, 2, and the descriptor (10 or above) on which /bin/sh reads its script.
    assert_eq!(&fds[..3], &[0, 1, 2], "{fds:?}");
    assert!(
        fds[3..].iter().all(|fd| *fd >= 10),
        "the engine inherited {fds:?}"
    );
}

fn run_gate(policy: &Path) -> Output {
    Command::new(support::cargo_bin())
        .arg("--policy")
        .arg(policy)
        .env_clear()
        .env("PATH", support::SAFE_PATH)
        .env("SSH_ORIGINAL_COMMAND", "borg serve")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn group_or_world_writable_policies_are_refused() {
    let dir = support::temp_dir("hygiene-modes");
    let engine = recording_engine(dir.path());
    let policy = dir.path().join("policy.toml");
    let text = policy_text(&engine, &dir.path().join("audit.jsonl"));
    for mode in [0o620, 0o660, 0o602, 0o666, 0o622] {
        write_policy(&policy, &text, mode);
        let output = run_gate(&policy);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "mode {mode:o}: {stderr}");
        assert!(
            stderr.contains(&format!("is writable by group or others (mode {mode:04o})")),
            "{stderr}"
        );
    }
    assert!(!dir.path().join("engine-report").exists(), "the engine ran");
    for mode in [0o600, 0o640, 0o644, 0o400] {
        write_policy(&policy, &text, mode);
        let output = run_gate(&policy);
        assert!(output.status.success(), "mode {mode:o}: {:?}", output);
    }
}

#[test]
fn a_policy_owned_by_another_account_is_refused() {
    require!(support::require_root());
    let dir = support::temp_dir("hygiene-owner");
    let engine = recording_engine(dir.path());
    let policy = dir.path().join("policy.toml");
    write_policy(
        &policy,
        &policy_text(&engine, &dir.path().join("audit.jsonl")),
        0o644,
    );
    let nobody = nix::unistd::Uid::from_raw(65534);
    nix::unistd::chown(&policy, Some(nobody), None).unwrap();
    let output = run_gate(&policy);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    // Accounts are named as the password database names them.
    let name = |uid: u32| {
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).unwrap();
        user.map_or(format!("uid {uid}"), |user| match uid {
            0 => user.name,
            _ => format!("{} (uid {uid})", user.name),
        })
    };
    assert!(
        stderr.contains(&format!(
            "is owned by {}; it must be owned by {}",
            name(65534),
            name(0)
        )),
        "{stderr}"
    );
    assert!(!dir.path().join("engine-report").exists(), "the engine ran");
}

#[test]
fn a_policy_in_a_symlinked_directory_is_read_and_a_symlinked_file_is_not() {
    let dir = support::temp_dir("hygiene-symlink");
    let engine = recording_engine(dir.path());
    let real = dir.path().join("real-etc");
    fs::create_dir(&real).unwrap();
    let policy = real.join("policy.toml");
    write_policy(
        &policy,
        &policy_text(&engine, &dir.path().join("audit.jsonl")),
        0o600,
    );
    symlink(&real, dir.path().join("etc")).unwrap();
    let through_dir = run_gate(&dir.path().join("etc/policy.toml"));
    assert!(through_dir.status.success(), "{through_dir:?}");
    assert!(
        fs::read_to_string(dir.path().join("engine-report"))
            .unwrap()
            .contains("UMASK 0027")
    );

    symlink(&policy, real.join("link.toml")).unwrap();
    let through_file = run_gate(&real.join("link.toml"));
    assert_eq!(through_file.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&through_file.stderr).contains("is a symlink"));
}
