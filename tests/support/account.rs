//! A real account, made with `useradd` for one test and removed with `userdel` when dropped,
//! for tests that need sshd, the gate and the engine to run as a dedicated backup account.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::command::{CmdOutput, run_with_timeout};
use super::{SAFE_PATH, require_root, require_tool, temp_dir};

const TIMEOUT: Duration = Duration::from_secs(60);
/// useradd and userdel exit 1 ("cannot update the password file") or 10 ("cannot update the
/// group file") when another process holds the lock on those files past their own wait.
const LOCKED: [i32; 2] = [1, 10];
const LOCK_ATTEMPTS: usize = 200;

/// An account name that a test (or a script it runs) may create: a leftover of a killed run
/// is removed first, and the account, if any, when the value is dropped.
pub(crate) struct AccountGuard {
    pub name: String,
}

impl AccountGuard {
    /// `bgt-<label>`, cut to the 32 characters useradd accepts.
    pub(crate) fn new(label: &str) -> AccountGuard {
        let name: String = format!("bgt-{label}").chars().take(32).collect();
        if nix::unistd::User::from_name(&name).ok().flatten().is_some() {
            userdel(&name);
        }
        AccountGuard { name }
    }
}

impl Drop for AccountGuard {
    fn drop(&mut self) {
        if nix::unistd::User::from_name(&self.name)
            .ok()
            .flatten()
            .is_some()
        {
            userdel(&self.name);
        }
    }
}

/// Runs `useradd` (or `usermod`, ...) with these arguments, waiting out a lock another
/// process holds on the password files.
#[track_caller]
pub(crate) fn account_tool(tool: &str, args: &[&str]) -> CmdOutput {
    let mut command = Command::new(tool);
    command.args(args);
    retry_while_locked(command)
}

/// An account that exists for the life of the value.
pub(crate) struct TestAccount {
    pub name: String,
    pub home: PathBuf,
    pub uid: u32,
    pub gid: u32,
    _guard: AccountGuard,
    /// The temp dir holding the home, for accounts made by [`TestAccount::provisioned`].
    dir: Option<tempfile::TempDir>,
}

impl TestAccount {
    /// `useradd --create-home --home-dir <home> --shell <shell> bgt-<label>`, after removing
    /// a leftover of a killed run. The caller checks for root first.
    #[track_caller]
    pub(crate) fn create(label: &str, home: &Path, shell: &str) -> TestAccount {
        let guard = AccountGuard::new(label);
        let name = guard.name.clone();
        let mut useradd = Command::new("useradd");
        useradd
            .args(["--create-home", "--home-dir"])
            .arg(home)
            .args(["--shell", shell, "--user-group", &name]);
        retry_while_locked(useradd).assert_success();
        let user = nix::unistd::User::from_name(&name)
            .expect("read the password database")
            .expect("useradd made the account");
        TestAccount {
            name,
            home: user.dir,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            _guard: guard,
            dir: None,
        }
    }

    /// A system account as `borg-gate keys add --create-user` makes one: shell /bin/sh, no
    /// password (`*`, which sshd does not treat as locked), its home under a fresh temp dir
    /// (mode 0755, so the account can reach what tests put there). `None` after the skip
    /// note when not root or useradd is missing.
    #[track_caller]
    pub(crate) fn provisioned(label: &str) -> Option<TestAccount> {
        require_root()?;
        require_tool("/usr/sbin/useradd")?;
        require_tool("/usr/sbin/userdel")?;
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let guard = AccountGuard::new(&format!(
            "{}x{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let dir = temp_dir(&format!("account-{label}"));
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod temp");
        let home = dir.path().join("home");
        let mut useradd = Command::new("/usr/sbin/useradd");
        useradd
            .args(["--system", "--create-home", "--shell", "/bin/sh"])
            .args(["--password", "*", "--home-dir"])
            .arg(&home)
            .arg("--")
            .arg(&guard.name);
        retry_while_locked(useradd).assert_success();
        let user = nix::unistd::User::from_name(&guard.name)
            .expect("read the password database")
            .expect("useradd made the account");
        Some(TestAccount {
            name: guard.name.clone(),
            home: user.dir,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            _guard: guard,
            dir: Some(dir),
        })
    }

    pub(crate) fn authorized_keys(&self) -> PathBuf {
        self.home.join(".ssh/authorized_keys")
    }

    /// The temp dir that holds a [`TestAccount::provisioned`] account's home; tests put
    /// their other files there too.
    #[track_caller]
    pub(crate) fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map(tempfile::TempDir::path)
            .expect("only provisioned accounts live in a temp dir")
    }
}

fn userdel(name: &str) {
    let mut userdel = Command::new("userdel");
    userdel.args(["--remove", name]);
    let _ = retry_while_locked(userdel);
}

/// Runs the command again while it fails on the password files' lock (another test, or
/// another program, is changing them), up to a bound.
fn retry_while_locked(mut command: Command) -> CmdOutput {
    command.env_clear().env("PATH", SAFE_PATH);
    let mut output = run_with_timeout(copy(&command), TIMEOUT);
    for _ in 0..LOCK_ATTEMPTS {
        if !output.code().is_some_and(|code| LOCKED.contains(&code)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        output = run_with_timeout(copy(&command), TIMEOUT);
    }
    output
}

fn copy(command: &Command) -> Command {
    let mut copy = Command::new(command.get_program());
    copy.args(command.get_args());
    copy.env_clear();
    for (name, value) in command.get_envs() {
        if let Some(value) = value {
            copy.env(name, value);
        }
    }
    copy
}
