//! What a new operator reads: error messages that say how to fix the mistake, once; help
//! texts for every option; `explain` as the account sessions run as.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use support::{borg_gate, stderr, stdout};

#[test]
fn an_unquoted_umask_says_to_quote_it() {
    let dir = support::temp_dir("messages-umask");
    let path = support::write_policy(&dir.path().join("p.toml"), "/srv/x", "umask = 077");
    let output = borg_gate(&["check-policy", &path.display().to_string()]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        format!(
            "borg-gate: {}:4:9: unexpected leading zero, expected nothing; write the value in quotes: umask = \"077\"\n",
            path.display()
        )
    );
}

#[test]
fn a_policy_error_is_printed_once_by_every_command() {
    let dir = support::temp_dir("messages-once");
    let path = support::write_policy(
        &dir.path().join("p.toml"),
        "/srv/x",
        "idle_timeout = \"ten\"",
    );
    let shown = path.display().to_string();
    let check = borg_gate(&["check-policy", &shown]);
    let explain = borg_gate(&["explain", "--policy", &shown, "--command", "borg serve"]);
    let gate = support::gate_as_sshd(&path, "borg serve").output().unwrap();
    for output in [check, explain, gate] {
        let text = stderr(&output);
        assert_eq!(text.matches("idle_timeout \"ten\"").count(), 1, "{text}");
        assert_eq!(text.lines().count(), 1, "{text}");
    }
}

#[test]
fn an_owner_error_names_the_file_once() {
    let dir = support::temp_dir("messages-owner");
    let path = support::write_policy(&dir.path().join("p.toml"), "/srv/x", "");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
    let output = borg_gate(&["check-policy", &path.display().to_string()]);
    assert_eq!(
        stderr(&output),
        format!(
            "borg-gate: policy {} is writable by group or others (mode 0666); run chmod go-w on it\n",
            path.display()
        )
    );
}

#[test]
fn every_option_of_explain_and_check_policy_has_a_help_text() {
    for command in ["explain", "check-policy"] {
        let output = borg_gate(&[command, "--help"]);
        assert!(output.status.success());
        let help = stdout(&output);
        let lines: Vec<&str> = help.lines().collect();
        for (index, line) in lines.iter().enumerate() {
            let option = line.trim_start();
            if !option.starts_with("--") || option.starts_with("--help") {
                continue;
            }
            let text = lines.get(index + 1).map_or("", |next| next.trim());
            assert!(
                !text.is_empty(),
                "{command} {option} has no help text:\n{help}"
            );
        }
        assert!(help.contains("--policy") || command == "check-policy");
    }
}

#[test]
fn explain_shows_the_engine_environment_of_the_account_given_with_user() {
    let Some(nobody) = nix::unistd::User::from_name("nobody").ok().flatten() else {
        let _: Option<()> = support::unavailable("no account named nobody");
        return;
    };
    let dir = support::temp_dir("messages-explain-user");
    let path = support::write_policy(&dir.path().join("p.toml"), "/srv/x", "");
    let shown = path.display().to_string();
    let output = borg_gate(&[
        "explain",
        "--policy",
        &shown,
        "--user",
        "nobody",
        "--command",
        "borg serve",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains(&format!("  HOME={}\n", nobody.dir.display())),
        "{text}"
    );
    assert!(text.contains("  USER=nobody\n  LOGNAME=nobody\n"), "{text}");
    let unknown = borg_gate(&[
        "explain",
        "--policy",
        &shown,
        "--user",
        "no-such-account-4711",
        "--command",
        "borg serve",
    ]);
    assert_eq!(unknown.status.code(), Some(2));
    assert_eq!(
        stderr(&unknown),
        "borg-gate: there is no account named \"no-such-account-4711\"\n"
    );
}

#[test]
fn release_binaries_are_stripped() {
    let manifest: toml::Table =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .unwrap()
            .parse()
            .unwrap();
    let release = &manifest["profile"]["release"];
    assert_eq!(
        release.get("strip").and_then(|v| v.as_bool()),
        Some(true),
        "{release}"
    );
    assert!(
        release
            .get("debug")
            .is_none_or(|debug| debug.as_integer() == Some(0)),
        "debug information makes the binary five times larger: {release}"
    );
}
