//! Test support shared by the unit tests: the one rule for tools a test needs (real borg,
//! its Python, found as the integration tests find them), and running borg's Python on our
//! bytes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

// The integration tests' lookup of the real borg installations, so that one function names
// their paths for every test.
#[path = "../tests/support/borg_paths.rs"]
#[allow(dead_code, reason = "no unit test runs borg 2 yet")]
mod borg_paths;
pub(crate) use borg_paths::Borg;

/// A test cannot run because `what` is missing: a failure when `CI=true` (CI installs
/// everything), otherwise a printed note, and the caller skips.
pub(crate) fn unavailable(what: &str) {
    // The same reading of CI as the integration tests' support module: `true` in any case, or 1.
    let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    assert!(
        !ci,
        "{what} is missing, and CI=true requires every test to run"
    );
    eprintln!("note: {what} is missing, skipping");
}

/// `path` if it exists; otherwise see [`unavailable`].
pub(crate) fn require_tool(path: impl AsRef<Path>) -> Option<PathBuf> {
    let path = path.as_ref();
    if path.exists() {
        return Some(path.to_path_buf());
    }
    unavailable(&path.display().to_string());
    None
}

/// The executable of a real `borg` ([`Borg::executable`]), if it exists; otherwise see
/// [`unavailable`].
pub(crate) fn require_borg(borg: Borg) -> Option<PathBuf> {
    require_tool(borg.executable())
}

/// The Python of a real `borg` ([`Borg::python`]), if it exists; otherwise see
/// [`unavailable`].
pub(crate) fn require_borg_python(borg: Borg) -> Option<PathBuf> {
    require_tool(borg.python())
}

/// Runs `script` with `python`, feeding `stdin` from another thread (so that a script that
/// writes before it has read everything cannot deadlock); requires success; returns stdout.
pub(crate) fn run_python(python: &Path, script: &str, stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let output = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Runs `script` with `python` and `args` as its `sys.argv[1:]`; requires success; returns
/// stdout.
pub(crate) fn run_python_args<A: AsRef<std::ffi::OsStr>>(
    python: &Path,
    script: &str,
    args: impl IntoIterator<Item = A>,
) -> String {
    let output = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}
