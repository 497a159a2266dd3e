//! A real local account for tests that provision keys for one: made with useradd (so only
//! as root), its home in a temp dir, removed with userdel when dropped.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::command::run_with_timeout;
use super::{SAFE_PATH, require_root, require_tool, temp_dir};

/// useradd and userdel wait for the password file lock themselves; this bounds a run.
const ACCOUNT_TIMEOUT: Duration = Duration::from_secs(60);
/// How often we try again when another process held the lock past useradd's own wait.
const LOCK_ATTEMPTS: usize = 10;

/// An account that exists for the life of the value.
pub struct TestAccount {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    dir: tempfile::TempDir,
}

impl TestAccount {
    /// A system account with shell /bin/sh, no password (`*`, which sshd does not treat as
    /// locked) and its home under a fresh temp dir (mode 0755, so the account can reach
    /// what tests put there). `None` after the skip note when not root or useradd is missing.
    #[track_caller]
    pub fn create(label: &str) -> Option<TestAccount> {
        require_root()?;
        let useradd = require_tool("/usr/sbin/useradd")?;
        require_tool("/usr/sbin/userdel")?;
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "bgt{}x{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = temp_dir(&format!("account-{label}"));
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod temp");
        let home = dir.path().join("home");
        for _ in 0..LOCK_ATTEMPTS {
            let mut command = Command::new(&useradd);
            command
                .args([
                    "--system",
                    "--create-home",
                    "--shell",
                    "/bin/sh",
                    "--password",
                    "*",
                ])
                .arg("--home-dir")
                .arg(&home)
                .arg("--")
                .arg(&name)
                .env_clear()
                .env("PATH", SAFE_PATH);
            let output = run_with_timeout(command, ACCOUNT_TIMEOUT);
            if output.success() {
                break;
            }
            // Exit 1 is "cannot update the password file": another useradd held the lock.
            assert_eq!(output.code(), Some(1), "useradd failed:\n{output}");
        }
        let user = nix::unistd::User::from_name(&name)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("useradd did not create {name}"));
        Some(TestAccount {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            name,
            dir,
        })
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn authorized_keys(&self) -> PathBuf {
        self.home().join(".ssh/authorized_keys")
    }

    /// The temp dir that holds the home; tests put their other files here too.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TestAccount {
    fn drop(&mut self) {
        delete_account(&self.name);
    }
}

/// userdel, retried while another process holds the password file lock.
pub fn delete_account(name: &str) {
    for _ in 0..LOCK_ATTEMPTS {
        let mut command = Command::new("/usr/sbin/userdel");
        command
            .arg("--")
            .arg(name)
            .env_clear()
            .env("PATH", SAFE_PATH);
        let output = run_with_timeout(command, ACCOUNT_TIMEOUT);
        // 6: no such user (already gone).
        if output.success() || output.code() == Some(6) {
            return;
        }
    }
}
