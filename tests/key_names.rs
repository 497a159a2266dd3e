//! One policy for a fleet: `--name NAME` in the forced command, `{name}` in the policy's
//! paths and audit fields, through the real binary: the gate, `check-policy --name`,
//! `explain --name`, and the audit record.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use support::{borg_gate, stderr, stdout};

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(label: &str) -> Fixture {
        Fixture {
            dir: support::temp_dir(label),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A fleet policy: each key's own directory and audit file; an engine that records its
    /// arguments.
    fn fleet_policy(&self) -> PathBuf {
        let engine = self.path("engine.sh");
        fs::write(
            &engine,
            format!(
                "#!/bin/sh\necho \"$@\" > {}\n",
                self.path("engine-args").display()
            ),
        )
        .unwrap();
        fs::set_permissions(&engine, fs::Permissions::from_mode(0o755)).unwrap();
        self.write_policy(
            "laptop.toml",
            &format!(
                "version = 1\nname = \"laptop\"\n[engine]\nprogram = \"{}\"\n\
                 [repository]\nrestrict_to_paths = [\"/srv/borg/{{name}}\"]\nappend_only = true\n\
                 [audit]\nfile = \"{}/{{name}}.jsonl\"\n",
                engine.display(),
                self.dir.path().display()
            ),
        )
    }

    fn write_policy(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        support::write_file(&path, text.as_bytes(), 0o644);
        path
    }

    fn engine_args(&self) -> String {
        fs::read_to_string(self.path("engine-args")).unwrap_or_default()
    }
}

fn gate(policy: &Path, name: Option<&str>, command: &str) -> Output {
    let mut gate = support::gate_as_sshd(policy, command);
    if let Some(name) = name {
        gate.args(["--name", name]);
    }
    gate.output().unwrap()
}

#[test]
fn one_policy_gives_each_named_key_its_own_directory_and_audit_file() {
    let fx = Fixture::new("names-fleet");
    let policy = fx.fleet_policy();
    for name in ["alice", "bob"] {
        let output = gate(&policy, Some(name), "borg serve --info");
        assert!(output.status.success(), "{}", stderr(&output));
        assert!(
            fx.engine_args().contains(&format!(
                "--restrict-to-path=/srv/borg/{name} --append-only"
            )),
            "{}",
            fx.engine_args()
        );
        let audit = fs::read_to_string(fx.path(&format!("{name}.jsonl"))).unwrap();
        let record: serde_json::Value = serde_json::from_str(audit.trim()).unwrap();
        assert_eq!(record["name"], name);
        assert_eq!(record["policy"], "laptop");
        assert_eq!(record["decision"], "accept");
    }
}

#[test]
fn a_policy_with_name_refuses_every_session_of_a_key_without_one() {
    let fx = Fixture::new("names-missing");
    let policy = fx.fleet_policy();
    let output = gate(&policy, None, "borg serve");
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with(&format!(
            "borg-gate: invalid policy: {}:6:22: restrict_to_paths uses {{name}}, but no key name was given; add --name NAME to the forced command (borg-gate --policy FILE --name NAME), or to check-policy and explain",
            policy.display()
        )),
        "{text}"
    );
    assert!(
        text.ends_with(" (and 1 more; run borg-gate check-policy); no session is allowed\n"),
        "{text}"
    );
    assert_eq!(fx.engine_args(), "");
}

#[test]
fn a_name_that_could_leave_its_directory_refuses_every_session() {
    let fx = Fixture::new("names-bad");
    let policy = fx.fleet_policy();
    for (name, problem) in [
        ("..", "it starts with '.'"),
        ("a/b", "it contains '/'"),
        ("a\nb", "it contains '\\n'"),
        (&"x".repeat(65), "it is 65 bytes long, more than 64"),
    ] {
        let output = gate(&policy, Some(name), "borg serve");
        assert_eq!(output.status.code(), Some(2), "{name:?}");
        let text = stderr(&output);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert_eq!(
            text,
            format!(
                "borg-gate: --name {name:?} is not a key name: {problem}; use 1-64 letters, digits, '-', '_', '.' or '@', not starting with '.' or '-' and without \"..\"; no session is allowed\n"
            )
        );
        assert_eq!(fx.engine_args(), "");
    }
    // Nothing was audited to a file: the policy was never used.
    assert!(!fx.path("...jsonl").exists());
}

#[test]
fn the_name_comes_from_the_forced_command_not_from_the_client() {
    let fx = Fixture::new("names-client");
    let policy = fx.fleet_policy();
    let output = gate(&policy, Some("alice"), "borg serve --name=bob --info");
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(fx.engine_args().contains("/srv/borg/alice"));
    assert!(!fx.engine_args().contains("bob"), "{}", fx.engine_args());
}

#[test]
fn check_policy_checks_a_template_and_a_named_key() {
    let fx = Fixture::new("names-check");
    let policy = fx.fleet_policy();
    let shown = policy.display().to_string();
    let template = borg_gate(&["check-policy", &shown]);
    assert!(template.status.success(), "{}", stderr(&template));
    assert_eq!(
        stdout(&template),
        format!(
            "{shown}: ok (policy \"laptop\", uses {{name}}: every forced command needs --name)\n"
        )
    );
    let named = borg_gate(&["check-policy", "--name", "alice", &shown]);
    assert!(named.status.success(), "{}", stderr(&named));
    assert_eq!(
        stdout(&named),
        format!("{shown}: ok (policy \"laptop\", key name \"alice\")\n")
    );
    let bad = borg_gate(&["check-policy", "--name", "a/b", &shown]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).starts_with("borg-gate: --name \"a/b\" is not a key name: it contains '/'"),
        "{}",
        stderr(&bad)
    );
    let typo = fx.write_policy(
        "typo.toml",
        "version = 1\n[repository]\nrestrict_to_paths = [\"/srv/borg/{user}\"]\n[audit]\nsyslog = true\n",
    );
    let output = borg_gate(&[
        "check-policy",
        "--name",
        "alice",
        &typo.display().to_string(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(&format!(
            "{}:3:22: restrict_to_paths: \"{{user}}\" is not a placeholder; the only one is {{name}}",
            typo.display()
        )),
        "{}",
        stderr(&output)
    );
}

#[test]
fn explain_shows_the_name_the_expanded_paths_and_the_audit_record() {
    let fx = Fixture::new("names-explain");
    let policy = fx.fleet_policy();
    let shown = policy.display().to_string();
    let text = borg_gate(&[
        "explain",
        "--policy",
        &shown,
        "--name",
        "alice",
        "--command",
        "borg serve",
    ]);
    assert!(text.status.success(), "{}", stderr(&text));
    let text = stdout(&text);
    assert!(
        text.contains("key name:    alice ({name} in the policy becomes alice)\n"),
        "{text}"
    );
    assert!(
        text.contains("--restrict-to-path=/srv/borg/alice"),
        "{text}"
    );
    let json = borg_gate(&[
        "explain",
        "--json",
        "--policy",
        &shown,
        "--name",
        "alice",
        "--command",
        "borg serve",
    ]);
    let record: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(record["name"], "alice");
    let unnamed = borg_gate(&["explain", "--policy", &shown, "--command", "borg serve"]);
    assert_eq!(unnamed.status.code(), Some(2));
    assert!(stderr(&unnamed).contains("no key name was given"));
}

#[test]
fn a_name_for_a_policy_without_placeholders_is_audited_only() {
    let fx = Fixture::new("names-plain");
    let policy = fx.write_policy(
        "plain.toml",
        &format!(
            "version = 1\n[repository]\nrestrict_to_paths = [\"/srv/x\"]\n[audit]\nfile = \"{}\"\n",
            fx.path("audit.jsonl").display()
        ),
    );
    let shown = policy.display().to_string();
    let text = borg_gate(&[
        "explain",
        "--policy",
        &shown,
        "--name",
        "alice",
        "--command",
        "borg serve",
    ]);
    assert!(
        stdout(&text).contains("key name:    alice (audited; the policy does not use {name})"),
        "{}",
        stdout(&text)
    );
}
