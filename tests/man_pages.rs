//! The manual pages render with `man -l` without a single warning.

mod support;

use std::path::Path;
use std::process::Command;

fn render(page: &str) -> Option<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("man").join(page);
    let output = Command::new("man")
        .args(["--warnings=w", "-l"])
        .arg(&path)
        .env("MANWIDTH", "80")
        .env("LC_ALL", "C.UTF-8")
        .env("MAN_KEEP_FORMATTING", "0")
        .output();
    match output {
        Ok(output) => {
            assert!(
                output.status.success(),
                "man -l {page} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            Some((
                plain_text(&String::from_utf8_lossy(&output.stdout)),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            ))
        }
        Err(error) => support::unavailable(&format!("man cannot run ({error})")),
    }
}

/// Drops overstrike formatting (`X\x08X` for bold, `_\x08X` for underline).
fn plain_text(text: &str) -> String {
    let mut out: Vec<char> = Vec::with_capacity(text.len());
    for c in text.chars() {
        if c == '\x08' {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out.into_iter().collect()
}

#[test]
fn borg_gate_1_renders_without_warnings() {
    let Some((text, warnings)) = render("borg-gate.1") else {
        return;
    };
    assert_eq!(warnings, "", "warnings from man -l");
    for section in [
        "GATE MODE",
        "COMMANDS",
        "EXIT STATUS",
        "serve",
        "explain",
        "check-policy",
        "status",
        "--max-age",
        "borg_gate_repository_last_commit_timestamp_seconds",
    ] {
        assert!(text.contains(section), "borg-gate(1) lacks {section}");
    }
}

#[test]
fn borg_gate_policy_5_renders_without_warnings() {
    let Some((text, warnings)) = render("borg-gate-policy.5") else {
        return;
    };
    assert_eq!(warnings, "", "warnings from man -l");
    for key in [
        "restrict_to_paths",
        "pass_env",
        "unknown_options",
        "on_failure",
        "idle_timeout",
        "permissions",
        "lock_wait",
    ] {
        assert!(text.contains(key), "borg-gate-policy(5) lacks {key}");
    }
}
