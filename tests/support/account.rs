//! A real account, made with `useradd` for one test and removed with `userdel` when dropped,
//! for tests that need sshd, the gate and the engine to run as a dedicated backup account.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::SAFE_PATH;
use super::command::{CmdOutput, run_with_timeout};

const TIMEOUT: Duration = Duration::from_secs(60);
/// useradd and userdel exit 10 when another process holds the password files' lock.
const LOCKED: i32 = 10;
const LOCK_ATTEMPTS: usize = 200;

/// An account name that a test (or a script it runs) may create: a leftover of a killed run
/// is removed first, and the account, if any, when the value is dropped.
pub struct AccountGuard {
    pub name: String,
}

impl AccountGuard {
    /// `bgt-<label>`, cut to the 32 characters useradd accepts.
    pub fn new(label: &str) -> AccountGuard {
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
pub fn account_tool(tool: &str, args: &[&str]) -> CmdOutput {
    let mut command = Command::new(tool);
    command.args(args);
    retry_while_locked(command)
}

/// An account that exists for the life of the value.
pub struct TestAccount {
    pub name: String,
    pub home: PathBuf,
    pub uid: u32,
    pub gid: u32,
    _guard: AccountGuard,
}

impl TestAccount {
    /// `useradd --create-home --home-dir <home> --shell <shell> bgt-<label>`, after removing
    /// a leftover of a killed run. The caller checks for root first.
    #[track_caller]
    pub fn create(label: &str, home: &Path, shell: &str) -> TestAccount {
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
        }
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
        if output.code() != Some(LOCKED) {
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
