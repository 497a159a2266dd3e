//! Real borg clients (Debian's 1.2 and PyPI's 1.4.5), each run with an environment built from
//! empty and a private BORG_BASE_DIR, so no cache, key or security dir leaks between tests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::borg_paths::Borg;
use super::command::{CmdOutput, run_with_timeout};
use super::{SAFE_PATH, require_tool, temp_dir};

/// How long one borg command may take before its process group is killed and the test fails.
pub(crate) const BORG_TIMEOUT: Duration = Duration::from_secs(120);

/// One real borg executable, plus the private base dir its runs use.
pub(crate) struct BorgClient {
    pub path: PathBuf,
    /// As `borg --version` prints it, e.g. "1.2.4".
    pub version: String,
    /// Filesystem-safe and unique per client, e.g. "debian-1.2.4" or "pypi-1.4.5".
    pub label: String,
    base_dir: tempfile::TempDir,
}

impl BorgClient {
    /// Wraps the borg at `path`, asking it for its version. Panics if it does not answer like borg.
    pub(crate) fn new(path: &Path, origin: &str) -> BorgClient {
        let version = borg_version(path);
        let label = format!("{origin}-{version}");
        BorgClient {
            path: path.to_path_buf(),
            base_dir: temp_dir(&format!("borg-base-{label}")),
            version,
            label,
        }
    }

    /// The BORG_BASE_DIR (and HOME) of this client's runs; it lives as long as the client.
    pub(crate) fn base_dir(&self) -> &Path {
        self.base_dir.path()
    }

    /// `(major, minor)` of the version, e.g. `(1, 4)`.
    pub(crate) fn major_minor(&self) -> (u32, u32) {
        let mut parts = self
            .version
            .split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    }

    /// The command `run_in` would start, for tests that need to tweak it further.
    ///
    /// The environment is built from empty: a fixed PATH, HOME and BORG_BASE_DIR pointing at
    /// this client's private dir, LANG=C.UTF-8, the two "yes, I know" answers for relocated
    /// and unencrypted repositories, BORG_PASSPHRASE when given, then `env` (which may override
    /// any of these, and is where BORG_RSH and BORG_REMOTE_PATH go).
    pub(crate) fn command(
        &self,
        cwd: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        passphrase: Option<&str>,
    ) -> Command {
        let mut command = Command::new(&self.path);
        command
            .args(args)
            .current_dir(cwd)
            .env_clear()
            .env("PATH", SAFE_PATH)
            .env("HOME", self.base_dir())
            .env("BORG_BASE_DIR", self.base_dir())
            .env("LANG", "C.UTF-8")
            .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
            .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes");
        if let Some(passphrase) = passphrase {
            command.env("BORG_PASSPHRASE", passphrase);
        }
        for (name, value) in env {
            command.env(name, value);
        }
        command
    }

    /// `/bin/sh -eux -c script` in `cwd` with the environment [`BorgClient::command`] gives
    /// borg, and this client's directory first in PATH: shell lines such as a README's
    /// `borg ...` lines run with this borg.
    pub(crate) fn shell(
        &self,
        cwd: &Path,
        script: &str,
        env: &[(&str, &str)],
        passphrase: Option<&str>,
    ) -> Command {
        let borg = self.command(cwd, &[], env, passphrase);
        let mut shell = Command::new("/bin/sh");
        shell
            .args(["-eux", "-c", script])
            .current_dir(cwd)
            .env_clear();
        for (name, value) in borg.get_envs() {
            if let Some(value) = value {
                shell.env(name, value);
            }
        }
        if let Some(dir) = self.path.parent() {
            shell.env("PATH", format!("{}:{SAFE_PATH}", dir.display()));
        }
        shell
    }

    /// Runs borg with `args` in the client's base dir; see [`BorgClient::command`] for the
    /// environment. Kills it and fails the test after [`BORG_TIMEOUT`].
    #[track_caller]
    pub(crate) fn run(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        passphrase: Option<&str>,
    ) -> CmdOutput {
        self.run_in(self.base_dir(), args, env, passphrase)
    }

    /// Like [`BorgClient::run`], in `cwd` (what `borg create ... .` archives and where
    /// `borg extract` writes).
    #[track_caller]
    pub(crate) fn run_in(
        &self,
        cwd: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        passphrase: Option<&str>,
    ) -> CmdOutput {
        run_with_timeout(self.command(cwd, args, env, passphrase), BORG_TIMEOUT)
    }
}

impl std::fmt::Debug for BorgClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.label, self.path.display())
    }
}

/// `borg --version` of the executable at `path`, asked once per test process.
fn borg_version(path: &Path) -> String {
    static VERSIONS: OnceLock<Mutex<HashMap<PathBuf, String>>> = OnceLock::new();
    let cache = VERSIONS.get_or_init(Default::default);
    if let Some(version) = cache.lock().expect("version cache").get(path) {
        return version.clone();
    }
    let mut command = Command::new(path);
    command
        .arg("--version")
        .env_clear()
        .env("PATH", SAFE_PATH)
        .env("LANG", "C.UTF-8");
    let output = run_with_timeout(command, Duration::from_secs(60));
    output.assert_success();
    let text = output.stdout_text();
    let version = text
        .trim()
        .strip_prefix("borg ")
        .unwrap_or_else(|| panic!("{} does not answer like borg:\n{output}", path.display()))
        .to_string();
    cache
        .lock()
        .expect("version cache")
        .insert(path.to_path_buf(), version.clone());
    version
}

/// Debian's borg 1.2 (see [`Borg::executable`]), or `None` after the skip note (a panic when
/// CI=true).
#[track_caller]
pub(crate) fn debian_borg() -> Option<BorgClient> {
    let path = require_tool(&Borg::Debian12.executable().to_string_lossy())?;
    Some(BorgClient::new(&path, "debian"))
}

/// Borg 1.4 from PyPI (see [`Borg::executable`]), or `None` after the skip note (a panic when
/// CI=true).
#[track_caller]
pub(crate) fn borg14() -> Option<BorgClient> {
    let path = require_tool(&Borg::Pypi14.executable().to_string_lossy())?;
    Some(BorgClient::new(&path, "pypi"))
}

/// Every borg client we test against, Debian's first. Each missing one follows the rule of
/// [`super::require_tool`]; on a developer machine the list can be short or empty.
#[track_caller]
pub(crate) fn borg_clients() -> Vec<BorgClient> {
    [debian_borg(), borg14()].into_iter().flatten().collect()
}
