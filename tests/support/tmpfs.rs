//! A small tmpfs, for tests that need a real full file system or cheap fsyncs. Mounting
//! needs root, which CI has; elsewhere the rule of `require_root` applies.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::{require_root, require_tool, run_with_timeout, temp_dir};

/// A tmpfs mounted on a fresh temp dir, unmounted when dropped.
pub(crate) struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (mount's syntax: `20m`), mode 0700.
    pub(crate) fn mount(size: &str) -> Option<Tmpfs> {
        require_root()?;
        let mount = require_tool("mount")?;
        let tmpfs = Tmpfs {
            dir: temp_dir("tmpfs"),
        };
        let mut command = Command::new(mount);
        command
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(tmpfs.dir.path());
        run_with_timeout(command, Duration::from_secs(30)).assert_success();
        Some(tmpfs)
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmount = |lazy: bool| {
            let mut command = Command::new("umount");
            if lazy {
                command.arg("-l");
            }
            command
                .arg(self.dir.path())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !unmount(false) {
            // Something (a killed engine's descendant?) still uses it: detach it anyway.
            let _ = unmount(true);
        }
    }
}
