//! The example alert rules in `contrib/`: valid for Prometheus (`promtool check rules`), firing
//! when they should (`promtool test rules` on `contrib/borg-gate.rules.test.yml`), and naming
//! only metrics borg-gate writes.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use borg_gate::metrics::families;

fn contrib() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib")
}

/// Every `*.rules.yml` in `contrib/` (what the Debian package ships).
fn rule_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(contrib())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.ends_with(".rules.yml"))
        })
        .collect();
    files.sort();
    files
}

/// The `borg_gate_...` names in `text`.
fn metric_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("borg_gate_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.push(name);
    }
    names
}

#[test]
fn every_metric_the_rules_and_their_tests_name_is_one_borg_gate_writes() {
    let files = rule_files();
    assert!(!files.is_empty(), "no contrib/*.rules.yml");
    let mut named = Vec::new();
    for file in files
        .iter()
        .chain([&contrib().join("borg-gate.rules.test.yml")])
    {
        let text = fs::read_to_string(file).unwrap();
        // Comments may speak of families by pattern (`borg_gate_repository_*`).
        let code: Vec<&str> = text
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .collect();
        for name in metric_names(&code.join("\n")) {
            assert!(
                families::is_written_series(&name),
                "{}: {name} is not a metric borg-gate writes",
                file.display()
            );
            named.push(name);
        }
    }
    // The three alerts are there.
    for needed in [
        families::LAST_COMMIT.name,
        families::QUOTA_USED.name,
        families::APPEND_ONLY_OBJECTS_DELETED.name,
    ] {
        assert!(named.iter().any(|n| n == needed), "no rule uses {needed}");
    }
}

#[test]
fn a_misspelt_metric_would_be_caught() {
    assert_eq!(
        metric_names("max(borg_gate_repository_last_commit_timestamp_second) > 1"),
        ["borg_gate_repository_last_commit_timestamp_second"]
    );
    assert!(!families::is_written_series(
        "borg_gate_repository_last_commit_timestamp_second"
    ));
}

#[test]
fn promtool_checks_the_rules_and_their_tests_pass() {
    let promtool = support::require!(support::require_tool("promtool"));
    for file in rule_files() {
        let mut check = Command::new(&promtool);
        check.args(["check", "rules"]).arg(&file);
        support::run_with_timeout(check, Duration::from_secs(120)).assert_success();
    }
    let mut test = Command::new(&promtool);
    test.current_dir(contrib())
        .args(["test", "rules", "borg-gate.rules.test.yml"]);
    support::run_with_timeout(test, Duration::from_secs(120))
        .assert_success()
        .assert_stdout_contains("SUCCESS");
}
