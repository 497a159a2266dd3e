//! The borg-gate binary as an operator runs it (`check-policy`, `explain`, ...), what it
//! printed, and the small policy files those tests hand it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{SAFE_PATH, cargo_bin, write_file};

/// `borg-gate ARGS`, with an environment built from empty but `PATH`.
pub(crate) fn borg_gate(args: &[&str]) -> Output {
    Command::new(cargo_bin())
        .args(args)
        .env_clear()
        .env("PATH", SAFE_PATH)
        .output()
        .expect("run borg-gate")
}

/// What a command printed on stdout, as text.
pub(crate) fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What a command printed on stderr, as text.
pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Writes a private (0600) policy at `path` that restricts the key to `restrict`, with
/// `repository_extra` in `[repository]` and the audit file `audit.jsonl` beside it.
pub(crate) fn write_policy(path: &Path, restrict: &str, repository_extra: &str) -> PathBuf {
    let audit = path.with_file_name("audit.jsonl");
    let text = format!(
        "version = 1\n[repository]\nrestrict_to_paths = [\"{restrict}\"]\n{repository_extra}\n[audit]\nfile = \"{}\"\n",
        audit.display()
    );
    write_file(path, text.as_bytes(), 0o600);
    path.to_path_buf()
}

/// The `engine argv:` line of `borg-gate explain --policy POLICY --command COMMAND`.
#[track_caller]
pub(crate) fn explained_engine_argv(policy: &Path, command: &str) -> String {
    let output = borg_gate(&[
        "explain",
        "--policy",
        &policy.display().to_string(),
        "--command",
        command,
    ]);
    assert!(output.status.success(), "{output:?}");
    let text = stdout(&output);
    text.lines()
        .find(|line| line.starts_with("engine argv:"))
        .unwrap_or_else(|| panic!("no engine argv in {text}"))
        .to_owned()
}
