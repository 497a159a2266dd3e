//! The file system side of `borg-gate keys`: the backup account, authorized_keys changed
//! under an exclusive lock by replacing it whole, new files written so that they appear
//! complete or not at all, and directories with the owners and modes the engine requires.
//!
//! authorized_keys is locked with flock(2) on the file itself. Since every change renames a
//! new file over it, a waiter may wake up holding the lock of a file that is no longer there;
//! it then compares the inode it locked with the one the path names, and starts again.
//! Replacements are written to a temporary file in the same directory with the old owner
//! and mode, synced, renamed over the old file, and the directory is synced. Every file
//! operation in a directory goes through a handle of that directory opened without
//! following a symlink, since `~/.ssh` belongs to the account and root writes there.

use std::ffi::{CString, OsStr};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, Flock, FlockArg, OFlag, openat, renameat};
use nix::sys::stat::{FileStat, Mode, fstatat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, linkat, unlinkat};

use super::KeysError;
use crate::common::text::plain_io_error;

/// Larger authorized_keys files are refused (the doctor reads no more either).
pub(crate) const MAX_AUTHORIZED_KEYS: u64 = 16 << 20;
/// How often a writer starts again after another writer replaced the file under it.
const LOCK_ATTEMPTS: usize = 100;
/// Where `--create-user` finds useradd.
const USERADD: &str = "/usr/sbin/useradd";

/// Owner, group and mode of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ownership {
    pub owner: u32,
    pub group: u32,
    pub mode: u32,
}

/// An account by its uid and every group it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub uid: u32,
    pub groups: Vec<u32>,
}

/// Read (4), write (2) or search (1) permission for `identity` by the classic mode bits.
/// Root may read and write anything. `keys add --create-user` judges access for an account
/// that does not exist yet, so it cannot ask the kernel as that account (as `doctor` does).
pub(crate) fn permits(file: Ownership, identity: &Identity, want: u32) -> bool {
    if identity.uid == 0 && want != 1 {
        return true;
    }
    let bits = if file.owner == identity.uid {
        file.mode >> 6
    } else if identity.groups.contains(&file.group) {
        file.mode >> 3
    } else {
        file.mode
    };
    bits & want == want
}

/// The account the keys log in to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub shell: PathBuf,
    /// Every group the account is in, its primary group included.
    pub groups: Vec<u32>,
}

impl Account {
    pub(crate) fn identity(&self) -> Identity {
        Identity {
            uid: self.uid,
            groups: self.groups.clone(),
        }
    }

    pub(crate) fn authorized_keys(&self) -> PathBuf {
        self.home.join(".ssh/authorized_keys")
    }
}

/// Owner, group and mode for a file or directory borg-gate creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

impl Owner {
    pub(crate) const ROOT_DIR: Owner = Owner {
        uid: 0,
        gid: 0,
        mode: 0o755,
    };
    pub(crate) const ROOT_FILE: Owner = Owner {
        uid: 0,
        gid: 0,
        mode: 0o644,
    };
}

fn failed(what: &str, path: &Path, error: &io::Error) -> KeysError {
    KeysError::Failed(format!(
        "cannot {what} {}: {}",
        path.display(),
        plain_io_error(error)
    ))
}

/// The account named `name`, if there is one.
pub(crate) fn find_account(name: &str) -> Result<Option<Account>, KeysError> {
    let user = nix::unistd::User::from_name(name)
        .map_err(|error| KeysError::Failed(format!("cannot read the account database: {error}")))?;
    Ok(user.map(|user| {
        let groups = CString::new(user.name.clone())
            .ok()
            .and_then(|c| nix::unistd::getgrouplist(&c, user.gid).ok())
            .map(|gids| gids.into_iter().map(|g| g.as_raw()).collect())
            .unwrap_or_else(|| vec![user.gid.as_raw()]);
        Account {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home: user.dir,
            shell: user.shell,
            groups,
        }
    }))
}

/// `useradd --system --create-home --shell /bin/sh --password '*' NAME`: a system account
/// with a home for `.ssh`, the minimal shell borg's documentation suggests, and no password
/// (`*` rather than useradd's locked `!`, which sshd refuses outright when it runs without
/// PAM).
pub(crate) fn create_account(name: &str) -> Result<Account, KeysError> {
    let output = Command::new(USERADD)
        .args([
            "--system",
            "--create-home",
            "--shell",
            "/bin/sh",
            "--password",
            "*",
            "--comment",
            "borg-gate backup account",
            "--",
            name,
        ])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .output()
        .map_err(|error| failed("run", Path::new(USERADD), &error))?;
    if !output.status.success() {
        return Err(KeysError::Failed(format!(
            "{USERADD} could not create the account {name:?}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    find_account(name)?.ok_or_else(|| {
        KeysError::Failed(format!(
            "{USERADD} succeeded, but there is no account {name:?}"
        ))
    })
}

/// Reads at most `limit` bytes of `path` (more is an error); `None` when it does not exist.
pub(crate) fn read_bounded(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, KeysError> {
    let file = match File::options()
        .read(true)
        .custom_flags(nix::libc::O_CLOEXEC | nix::libc::O_NOCTTY)
        .open(path)
    {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(failed("read", path, &error)),
    };
    read_all(file, path, limit).map(Some)
}

fn read_all(file: impl Read, path: &Path, limit: u64) -> Result<Vec<u8>, KeysError> {
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| failed("read", path, &error))?;
    if bytes.len() as u64 > limit {
        return Err(KeysError::Refused(format!(
            "{} is larger than {limit} bytes",
            path.display()
        )));
    }
    Ok(bytes)
}

/// The result of a locked change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Changed<T> {
    pub value: T,
    /// Where the old file was copied, when there was one.
    pub backup: Option<PathBuf>,
}

/// Changes `path` under an exclusive lock: `change` gets the current bytes (empty for a file
/// that does not exist yet) and returns the new bytes and a value. The old file is kept as
/// `<path>.bak` (unless it was empty); the new one keeps the old owner and mode. When
/// `create` is set, a missing file is created with its first owner (and a missing parent
/// directory with its second).
pub(crate) fn change_locked<T>(
    path: &Path,
    create: Option<(Owner, Owner)>,
    change: impl FnOnce(&[u8]) -> Result<(Vec<u8>, T), KeysError>,
) -> Result<Changed<T>, KeysError> {
    let (parent, name) = split_path(path)?;
    if let Some((_, dir_owner)) = create {
        if fs::symlink_metadata(parent).is_err() {
            make_dir(parent, dir_owner)?;
        }
    }
    let dir = Dir::open(parent)?;
    let mut change = Some(change);
    for _ in 0..LOCK_ATTEMPTS {
        let file = match dir.open_file(name) {
            Ok(file) => file,
            Err(Errno::ELOOP) => {
                return Err(KeysError::Refused(format!(
                    "{} is a symlink; name the file itself",
                    path.display()
                )));
            }
            Err(Errno::ENOENT) if create.is_some() => {
                let (file_owner, _) = create.unwrap_or((Owner::ROOT_FILE, Owner::ROOT_DIR));
                // Another writer may create it in the same instant: then open theirs.
                if let Err(error) = dir.write_file(name, b"", file_owner, Replace::No) {
                    if dir.stat(name).is_err() {
                        return Err(error);
                    }
                }
                continue;
            }
            Err(errno) => return Err(failed("read", path, &io::Error::from(errno))),
        };
        let metadata = file
            .metadata()
            .map_err(|error| failed("read", path, &error))?;
        if !metadata.is_file() {
            return Err(KeysError::Refused(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        let locked = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| failed("lock", path, &io::Error::from(errno)))?;
        let same = dir
            .stat(name)
            .is_ok_and(|now| now.st_dev == metadata.dev() && now.st_ino == metadata.ino());
        if !same {
            // Another writer replaced the file while we waited for its lock.
            continue;
        }
        let old = read_all(&*locked, path, MAX_AUTHORIZED_KEYS)?;
        let Some(change) = change.take() else {
            break;
        };
        let (new, value) = change(&old)?;
        let owner = Owner {
            uid: metadata.uid(),
            gid: metadata.gid(),
            mode: metadata.mode() & 0o7777,
        };
        // An empty file (one this very call may have created) needs no backup.
        let backup = (!old.is_empty()).then(|| backup_path(path));
        if let Some(backup) = &backup {
            let (_, backup_name) = split_path(backup)?;
            dir.write_file(backup_name, &old, owner, Replace::Yes)?;
        }
        dir.write_file(name, &new, owner, Replace::Yes)?;
        drop(locked);
        return Ok(Changed { value, backup });
    }
    Err(KeysError::Failed(format!(
        "{} kept changing under us; is another program rewriting it?",
        path.display()
    )))
}

/// `<path>.bak`.
pub(crate) fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".bak");
    path.with_file_name(name)
}

fn split_path(path: &Path) -> Result<(&Path, &OsStr), KeysError> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => Ok((parent, name)),
        _ => Err(KeysError::Refused(format!(
            "{} does not name a file",
            path.display()
        ))),
    }
}

/// A directory opened without following a symlink as its last component. Files in it are
/// opened, created, renamed and linked relative to this handle, so an account that owns the
/// directory above (its home, for `~/.ssh`) cannot swap in a symlink between a check and a
/// write and steer root's writes to another directory.
struct Dir {
    handle: File,
    path: PathBuf,
}

impl Dir {
    fn open(path: &Path) -> Result<Dir, KeysError> {
        let handle = File::options()
            .read(true)
            .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(path)
            .map_err(|error| {
                let symlink =
                    fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_symlink());
                if symlink {
                    KeysError::Refused(format!(
                        "{} is a symlink; name the real directory",
                        path.display()
                    ))
                } else {
                    failed("open", path, &error)
                }
            })?;
        Ok(Dir {
            handle,
            path: path.to_path_buf(),
        })
    }

    fn open_file(&self, name: &OsStr) -> nix::Result<File> {
        openat(
            &self.handle,
            name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
            Mode::empty(),
        )
        .map(File::from)
    }

    fn stat(&self, name: &OsStr) -> nix::Result<FileStat> {
        fstatat(&self.handle, name, AtFlags::AT_SYMLINK_NOFOLLOW)
    }

    /// Writes `bytes` to a temporary file in the directory with `owner`, syncs it, moves it
    /// to `name` (replacing an old file or not) and syncs the directory.
    fn write_file(
        &self,
        name: &OsStr,
        bytes: &[u8],
        owner: Owner,
        replace: Replace,
    ) -> Result<(), KeysError> {
        let target = self.path.join(name);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let temporary = format!(
            ".{}.borg-gate-{}-{nanos}",
            name.to_string_lossy(),
            std::process::id()
        );
        let temporary_path = self.path.join(&temporary);
        let result = (|| {
            let mut file = openat(
                &self.handle,
                temporary.as_str(),
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )
            .map(File::from)
            .map_err(|errno| failed("create", &temporary_path, &io::Error::from(errno)))?;
            set_owner(&file, &temporary_path, owner)?;
            file.write_all(bytes)
                .and_then(|()| file.sync_all())
                .map_err(|error| failed("write", &temporary_path, &error))?;
            match replace {
                Replace::Yes => renameat(&self.handle, temporary.as_str(), &self.handle, name)
                    .map_err(|errno| failed("replace", &target, &io::Error::from(errno))),
                Replace::No => linkat(
                    &self.handle,
                    temporary.as_str(),
                    &self.handle,
                    name,
                    AtFlags::empty(),
                )
                .map_err(|errno| failed("create", &target, &io::Error::from(errno))),
            }
        })();
        let _ = unlinkat(&self.handle, temporary.as_str(), UnlinkatFlags::NoRemoveDir);
        result?;
        self.handle
            .sync_all()
            .map_err(|error| failed("sync", &self.path, &error))
    }
}

/// Whether a new file may take the place of an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replace {
    Yes,
    /// Fail if the file exists.
    No,
}

/// Writes `bytes` to a temporary file beside `path` with `owner`, syncs it, moves it into
/// place (replacing an old file or not) and syncs the directory.
pub(crate) fn write_atomically(
    path: &Path,
    bytes: &[u8],
    owner: Owner,
    replace: Replace,
) -> Result<(), KeysError> {
    let (parent, name) = split_path(path)?;
    Dir::open(parent)?.write_file(name, bytes, owner, replace)
}

fn set_owner(file: &File, path: &Path, owner: Owner) -> Result<(), KeysError> {
    let metadata = file
        .metadata()
        .map_err(|error| failed("read", path, &error))?;
    if metadata.uid() != owner.uid || metadata.gid() != owner.gid {
        nix::unistd::fchown(
            file,
            Some(Uid::from_raw(owner.uid)),
            Some(Gid::from_raw(owner.gid)),
        )
        .map_err(|errno| failed("change the owner of", path, &io::Error::from(errno)))?;
    }
    file.set_permissions(fs::Permissions::from_mode(owner.mode))
        .map_err(|error| failed("change the mode of", path, &error))
}

fn sync_dir(dir: &Path) -> Result<(), KeysError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|error| failed("sync", dir, &error))
}

/// Creates one directory with `owner` (the mode regardless of the umask). One that a
/// concurrent `keys add` created in the meantime is left as it is.
pub(crate) fn make_dir(path: &Path, owner: Owner) -> Result<(), KeysError> {
    match fs::create_dir(path) {
        Ok(()) => {}
        Err(error)
            if error.kind() == io::ErrorKind::AlreadyExists
                && fs::symlink_metadata(path).is_ok_and(|meta| meta.is_dir()) =>
        {
            return Ok(());
        }
        Err(error) => return Err(failed("create", path, &error)),
    }
    let dir = Dir::open(path)?;
    set_owner(&dir.handle, path, owner)?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Creates every missing directory of `path` with `owner`; returns the ones it created.
pub(crate) fn make_dirs(path: &Path, owner: Owner) -> Result<Vec<PathBuf>, KeysError> {
    let mut created = Vec::new();
    let mut current = PathBuf::from("/");
    for component in path.components() {
        if let Component::Normal(name) = component {
            current.push(name);
            match fs::symlink_metadata(&current) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(KeysError::Refused(format!(
                        "{} is not a directory",
                        current.display()
                    )));
                }
                Err(_) => {
                    make_dir(&current, owner)?;
                    created.push(current.clone());
                }
            }
        }
    }
    Ok(created)
}

/// What `stat` says about the way to a repository directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DirectoryState {
    /// It exists, owned as the engine requires.
    Ready { owner: u32 },
    /// These directories are missing, outermost first; the last is the repository directory.
    Missing(Vec<PathBuf>),
}

/// Checks the way to the repository directory before anything is created: no symlinks, no
/// files in the way, and the engine's own rule (nothing on the way that another account
/// could change).
pub(crate) fn inspect_repository_dir(
    dir: &Path,
    account_uid: u32,
) -> Result<DirectoryState, KeysError> {
    let mut missing = Vec::new();
    let mut current = PathBuf::from("/");
    let mut owner = 0;
    for component in dir.components() {
        let Component::Normal(name) = component else {
            continue;
        };
        current.push(name);
        if !missing.is_empty() {
            missing.push(current.clone());
            continue;
        }
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(KeysError::Refused(format!(
                    "{} is a symlink; the engine refuses repositories behind symlinks, so name the real directory",
                    current.display()
                )));
            }
            Ok(meta) if !meta.is_dir() => {
                return Err(KeysError::Refused(format!(
                    "{} is not a directory",
                    current.display()
                )));
            }
            Ok(meta) => owner = meta.uid(),
            Err(error) if error.kind() == io::ErrorKind::NotFound => missing.push(current.clone()),
            Err(error) => return Err(failed("inspect", &current, &error)),
        }
    }
    crate::engine::paths::check_no_foreign_writers(dir, account_uid).map_err(|unsafe_path| {
        KeysError::Refused(format!(
            "the engine would refuse this repository directory: {unsafe_path}"
        ))
    })?;
    Ok(if missing.is_empty() {
        DirectoryState::Ready { owner }
    } else {
        DirectoryState::Missing(missing)
    })
}

/// Creates what [`inspect_repository_dir`] found missing: parents root-owned 0755, the
/// repository directory owned by the account, 0700.
pub(crate) fn create_repository_dir(
    missing: &[PathBuf],
    account: &Account,
) -> Result<(), KeysError> {
    let Some((last, parents)) = missing.split_last() else {
        return Ok(());
    };
    for parent in parents {
        make_dir(parent, Owner::ROOT_DIR)?;
    }
    make_dir(
        last,
        Owner {
            uid: account.uid,
            gid: account.gid,
            mode: 0o700,
        },
    )?;
    // What exists now (some of it perhaps made by a concurrent run) passes the engine's rule.
    inspect_repository_dir(last, account.uid).map(|_| ())
}

/// What the audit log needs before the account can append to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuditLogState {
    Writable,
    /// Create the file (and these missing directories first).
    Create {
        missing_dirs: Vec<PathBuf>,
    },
}

/// Checks that the account will be able to append to `log`, as the gate opens it.
pub(crate) fn inspect_audit_log(log: &Path, account: &Account) -> Result<AuditLogState, KeysError> {
    match fs::symlink_metadata(log) {
        Ok(meta) if meta.file_type().is_symlink() => Err(KeysError::Refused(format!(
            "the audit log {} is a symlink, which the gate refuses to open; name the file itself",
            log.display()
        ))),
        Ok(meta) => {
            let facts = Ownership {
                owner: meta.uid(),
                group: meta.gid(),
                mode: meta.mode(),
            };
            if meta.is_file() && permits(facts, &account.identity(), 2) {
                Ok(AuditLogState::Writable)
            } else {
                Err(KeysError::Refused(format!(
                    "the account {} cannot append to the audit log {} (owner uid {}, mode {:04o}), so the gate would refuse every session; chown {} {} or give this key its own log with --audit-log FILE",
                    account.name,
                    log.display(),
                    meta.uid(),
                    meta.mode() & 0o7777,
                    account.name,
                    log.display()
                )))
            }
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            let dir = log.parent().unwrap_or(Path::new("/"));
            let mut missing_dirs = Vec::new();
            let mut current = Some(dir);
            while let Some(candidate) = current.filter(|c| !c.exists()) {
                missing_dirs.insert(0, candidate.to_path_buf());
                current = candidate.parent();
            }
            Ok(AuditLogState::Create { missing_dirs })
        }
        Err(error) => Err(failed("inspect", log, &error)),
    }
}

/// Creates the audit log for the account: 0640, owned by it (the gate appends as the
/// account); missing directories root-owned 0755.
pub(crate) fn create_audit_log(
    log: &Path,
    missing_dirs: &[PathBuf],
    account: &Account,
) -> Result<(), KeysError> {
    for dir in missing_dirs {
        make_dir(dir, Owner::ROOT_DIR)?;
    }
    let owner = Owner {
        uid: account.uid,
        gid: account.gid,
        mode: 0o640,
    };
    match write_atomically(log, b"", owner, Replace::No) {
        // A session created it in the meantime: the gate made it, so it is the account's.
        Err(_) if log.is_file() => Ok(()),
        other => other,
    }
}

/// Whether the account can create its metrics textfile in `dir`.
pub(crate) fn metrics_dir_usable(dir: &Path, account: &Account) -> bool {
    fs::metadata(dir).is_ok_and(|meta| {
        meta.is_dir()
            && permits(
                Ownership {
                    owner: meta.uid(),
                    group: meta.gid(),
                    mode: meta.mode(),
                },
                &account.identity(),
                3,
            )
    })
}

/// Removes a file; `false` when it was not there.
pub(crate) fn remove_file(path: &Path) -> Result<bool, KeysError> {
    match fs::remove_file(path) {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                sync_dir(dir)?;
            }
            Ok(true)
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(failed("remove", path, &error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn a_locked_change_keeps_the_mode_and_leaves_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authorized_keys");
        fs::write(&path, b"old\r\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let changed = change_locked(&path, None, |old| {
            let mut new = old.to_vec();
            new.extend_from_slice(b"new\n");
            Ok((new, 7))
        })
        .unwrap();
        assert_eq!(changed.value, 7);
        assert_eq!(fs::read(&path).unwrap(), b"old\r\nnew\n");
        assert_eq!(mode(&path), 0o640);
        let backup = changed.backup.unwrap();
        assert_eq!(backup, dir.path().join("authorized_keys.bak"));
        assert_eq!(fs::read(&backup).unwrap(), b"old\r\n");
        assert_eq!(mode(&backup), 0o640);
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_refused_change_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ak");
        fs::write(&path, b"keep").unwrap();
        let result: Result<Changed<()>, _> =
            change_locked(&path, None, |_| Err(KeysError::Refused("no".into())));
        assert!(matches!(result, Err(KeysError::Refused(_))));
        assert_eq!(fs::read(&path).unwrap(), b"keep");
        assert!(!backup_path(&path).exists());
    }

    #[test]
    fn a_missing_file_is_created_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ssh/ak");
        let me = Owner {
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            mode: 0o600,
        };
        let dir_owner = Owner { mode: 0o700, ..me };
        assert!(change_locked(&path, None, |_| Ok((Vec::new(), ()))).is_err());
        change_locked(&path, Some((me, dir_owner)), |old| {
            assert!(old.is_empty());
            Ok((b"k\n".to_vec(), ()))
        })
        .unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"k\n");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
    }

    #[test]
    fn concurrent_changes_are_serialised_and_none_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ak");
        fs::write(&path, b"").unwrap();
        let threads: Vec<_> = (0..8)
            .map(|n| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for round in 0..10 {
                        change_locked(&path, None, |old| {
                            let mut new = old.to_vec();
                            new.extend_from_slice(format!("{n}-{round}\n").as_bytes());
                            Ok((new, ()))
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 80, "{text}");
    }

    #[test]
    fn symlinks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("real"), b"").unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("ak")).unwrap();
        let result = change_locked(&dir.path().join("ak"), None, |_| Ok((Vec::new(), ())));
        assert!(
            matches!(&result, Err(KeysError::Refused(m)) if m.ends_with("is a symlink; name the file itself")),
            "{result:?}"
        );
        let error = inspect_repository_dir(&dir.path().join("ak/sub"), 0).unwrap_err();
        assert!(error.to_string().contains("is a symlink"), "{error}");
    }

    #[test]
    fn a_symlinked_directory_is_refused_so_writes_cannot_be_steered_elsewhere() {
        // The account owns its home: ~/.ssh -> /root/.ssh must not make root edit root's keys.
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        fs::write(elsewhere.join("ak"), b"theirs\n").unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.path().join("ssh")).unwrap();
        let path = dir.path().join("ssh/ak");
        let result = change_locked(&path, None, |_| Ok((b"ours\n".to_vec(), ())));
        assert!(
            matches!(&result, Err(KeysError::Refused(m)) if m.ends_with("ssh is a symlink; name the real directory")),
            "{result:?}"
        );
        let owner = Owner {
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            mode: 0o600,
        };
        assert!(write_atomically(&path, b"ours\n", owner, Replace::Yes).is_err());
        assert_eq!(fs::read(elsewhere.join("ak")).unwrap(), b"theirs\n");
        assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 1);
    }

    #[test]
    fn new_files_never_replace_old_ones_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        let owner = Owner {
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            mode: 0o644,
        };
        write_atomically(&path, b"one", owner, Replace::No).unwrap();
        assert!(write_atomically(&path, b"two", owner, Replace::No).is_err());
        assert_eq!(fs::read(&path).unwrap(), b"one");
        write_atomically(&path, b"three", owner, Replace::Yes).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"three");
        assert_eq!(mode(&path), 0o644);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
