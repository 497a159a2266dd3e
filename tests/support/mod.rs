//! Shared helpers for the integration tests: real tools, a real sshd, real borg clients, real files.
//!
//! Include it with `mod support;` and use `support::require!(...)` (or `use support::require;`).
//! Nothing here is a mock: a test that needs a tool finds the real one or, when it is missing,
//! fails in CI (`CI=true`) and skips with a note elsewhere.
// Each test crate uses a different subset of these helpers; the rest would warn as dead code.
#![allow(dead_code)]

mod account;
mod audit;
mod borg;
mod borg_paths;
mod cli;
mod command;
mod rest;
mod sshd;
mod tmpfs;
mod tree;
mod wait;

// The flat API; each test crate uses part of it, and an unused re-export would warn.
#[allow(unused_imports)]
pub(crate) use account::{AccountGuard, TestAccount, account_tool};
#[allow(unused_imports)]
pub(crate) use audit::{audit_events, audit_records};
#[allow(unused_imports)]
pub(crate) use borg::{BORG_TIMEOUT, BorgClient, borg_clients, borg14, debian_borg};
#[allow(unused_imports)]
pub(crate) use borg_paths::Borg;
#[allow(unused_imports)]
pub(crate) use cli::{borg_gate, explained_engine_argv, stderr, stdout, write_policy};
#[allow(unused_imports)]
pub(crate) use command::{CmdOutput, describe, run_with_stdin, run_with_timeout, spawn_and_wait};
#[allow(unused_imports)]
pub(crate) use rest::{ACCEPT, Request, Response, RestServer, borg2_path};
#[allow(unused_imports)]
pub(crate) use sshd::{AuthorizedKey, Sshd, SshdOptions};
#[allow(unused_imports)]
pub(crate) use tmpfs::Tmpfs;
#[allow(unused_imports)]
pub(crate) use tree::{
    Entry, XorShift64, assert_trees_equal, list_tree, make_tree, pseudo_random_bytes,
    tree_differences, write_file,
};
#[allow(unused_imports)]
pub(crate) use wait::{wait_exit, wait_for, wait_until};

use std::env;
use std::path::{Path, PathBuf};

use std::os::unix::fs::PermissionsExt;

/// The PATH every child we start gets: fixed, so the developer's own PATH cannot change a test.
pub(crate) const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Returns the value of an `Option`, or returns from the calling test (which has skipped or
/// failed already, by the rule of [`require_tool`]) when it is `None`.
#[allow(unused_macros)]
macro_rules! require {
    ($option:expr) => {
        match $option {
            Some(value) => value,
            None => return,
        }
    };
}
#[allow(unused_imports)]
pub(crate) use require;

/// What a test does when something it needs is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unavailable {
    /// In CI a missing tool is a broken machine: the test must fail.
    Fail(String),
    /// On a developer machine the test skips, saying so on stderr.
    Skip(String),
}

/// Decides, without side effects, what a missing `what` means given the value of `$CI`.
pub(crate) fn unavailable_verdict(what: &str, ci: Option<&str>) -> Unavailable {
    if is_ci_value(ci) {
        Unavailable::Fail(format!(
            "{what}, and CI=true makes that a failure (scripts/setup.sh installs everything the tests need)"
        ))
    } else {
        Unavailable::Skip(format!("skipping: {what}"))
    }
}

/// `CI=true` (any case) or `CI=1` turns skips into failures; anything else, or unset, does not.
pub(crate) fn is_ci_value(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Whether this run is a CI run (`CI=true`).
pub(crate) fn is_ci() -> bool {
    is_ci_value(env::var("CI").ok().as_deref())
}

/// Applies [`unavailable_verdict`]: panics in CI, prints the skip note otherwise.
#[track_caller]
pub(crate) fn unavailable<T>(what: &str) -> Option<T> {
    match unavailable_verdict(what, env::var("CI").ok().as_deref()) {
        Unavailable::Fail(message) => panic!("{message}"),
        Unavailable::Skip(message) => {
            eprintln!("{message}");
            None
        }
    }
}

/// Finds an executable by name (searching `$PATH`, then the sbin directories, which a non-root
/// PATH often lacks) or by path (anything containing `/`). No side effects.
pub(crate) fn find_tool(name_or_path: &str) -> Option<PathBuf> {
    if name_or_path.contains('/') {
        let path = PathBuf::from(name_or_path);
        return is_executable_file(&path).then_some(path);
    }
    let search = env::var("PATH").unwrap_or_default();
    search
        .split(':')
        .chain(SAFE_PATH.split(':'))
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(name_or_path))
        .find(|candidate| is_executable_file(candidate))
}

fn is_executable_file(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Finds a tool; when it is missing, panics if `CI=true` and otherwise prints
/// `skipping: <tool> not installed` and returns `None` (use with [`require!`]).
#[track_caller]
pub(crate) fn require_tool(name_or_path: &str) -> Option<PathBuf> {
    match find_tool(name_or_path) {
        Some(path) => Some(path),
        None => unavailable(&format!("{name_or_path} not installed")),
    }
}

/// Some(()) when we are root, which a real sshd on loopback needs (it must switch users and
/// read host keys); otherwise follows the rule of [`require_tool`].
#[track_caller]
pub(crate) fn require_root() -> Option<()> {
    if nix::unistd::geteuid().is_root() {
        Some(())
    } else {
        unavailable("not running as root (a real sshd needs root)")
    }
}

/// A fresh directory under the system temp dir, removed when the value is dropped. The label
/// shows up in the name, which helps when a failed run leaves one behind.
pub(crate) fn temp_dir(label: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("borg-gate-{label}-"))
        .tempdir()
        .expect("create a temp dir")
}

/// `borg-gate --policy POLICY` as sshd starts it for a key: an empty environment but PATH,
/// the client's `command` in SSH_ORIGINAL_COMMAND, a documentation-range SSH_CONNECTION,
/// and no stdin.
pub(crate) fn gate_as_sshd(policy: &std::path::Path, command: &str) -> std::process::Command {
    let mut gate = std::process::Command::new(cargo_bin());
    gate.arg("--policy")
        .arg(policy)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("SSH_ORIGINAL_COMMAND", command)
        .env("SSH_CONNECTION", "192.0.2.10 50000 192.0.2.1 22")
        .stdin(std::process::Stdio::null());
    gate
}

/// The `borg-gate` binary that cargo built for this test run.
pub(crate) fn cargo_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_borg-gate"))
}
