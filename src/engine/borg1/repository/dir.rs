//! Directory handles: every file and directory inside a repository is reached relative to the
//! repository directory, one name at a time, and never through a symbolic link.
//!
//! The server checks a repository path against its restrictions once, at `open`. Opening the
//! files below it by path afterwards would follow whatever symlinks the repository holds then:
//! a `data -> /elsewhere` link planted by the account that owns the repository would let the
//! engine read and write segments outside the allowed tree, and a `config.old -> /some/file`
//! link would have `secure_erase` overwrite that file. So the engine holds the repository
//! directory as a descriptor opened with `O_DIRECTORY | O_NOFOLLOW`, walks to `data/` and
//! `data/N/` the same way, and opens files with `openat(O_NOFOLLOW)`; stat, unlink, rename,
//! link and mkdir are the `*at` calls without following. A symlink where a repository file
//! or directory should be is refused with an error that names it ([`SYMLINK_REFUSED`]), and
//! so is anything that is not a regular file where a file is read (a FIFO would block).
//!
//! Names are single components: one holding `/` (or empty, `.`, `..`) is refused, so a name
//! can never walk out of its directory. The handle also keeps the path it was opened as, only
//! for messages; nothing is ever opened by that path again.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::unistd::UnlinkatFlags;

/// What the error for a refused symlink says after its path.
pub(crate) const SYMLINK_REFUSED: &str =
    "is a symbolic link; borg-gate never follows symbolic links inside a repository";

/// A directory opened without following symlinks. Cheap to clone (the descriptor is shared).
#[derive(Debug, Clone)]
pub struct Dir {
    fd: Arc<OwnedFd>,
    path: PathBuf,
}

/// How [`Dir::open_file`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// An existing regular file, for reading.
    Read,
    /// An existing regular file, for reading and writing.
    ReadWrite,
    /// A new file, created exclusively (mode 0666 minus the umask), for writing.
    CreateNew,
    /// Created or truncated (mode 0666 minus the umask), for writing.
    Truncate,
    /// Created if missing (mode 0666 minus the umask), appending.
    Append,
}

/// What an entry of a directory is, without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

/// `lstat` facts of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub kind: Kind,
    pub len: u64,
    pub mode: u32,
    pub uid: u32,
}

impl Stat {
    fn of(stat: &FileStat) -> Stat {
        let kind = match SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFREG => Kind::File,
            SFlag::S_IFDIR => Kind::Dir,
            SFlag::S_IFLNK => Kind::Symlink,
            _ => Kind::Other,
        };
        Stat {
            kind,
            len: u64::try_from(stat.st_size).unwrap_or(0),
            mode: stat.st_mode,
            uid: stat.st_uid,
        }
    }
}

impl Dir {
    /// Opens the directory at `path`; a symlink as its last component is refused.
    pub fn open(path: &Path) -> io::Result<Dir> {
        let fd = nix::fcntl::open(path, directory_flags(), Mode::empty()).map_err(|errno| {
            // O_DIRECTORY | O_NOFOLLOW on a symlink fails with ENOTDIR.
            let is_link = || std::fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink());
            match errno {
                Errno::ENOTDIR if is_link() => refusal(Errno::ELOOP, path),
                errno => refusal(errno, path),
            }
        })?;
        Ok(Dir {
            fd: Arc::new(fd),
            path: path.to_path_buf(),
        })
    }

    /// The path this handle was opened as (for messages only).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path()/name`, for messages.
    pub fn child_path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The subdirectory `name`; a symlink is refused.
    pub fn subdir(&self, name: &str) -> io::Result<Dir> {
        let path = self.checked(name)?;
        let fd = nix::fcntl::openat(self.fd.as_fd(), name, directory_flags(), Mode::empty())
            .map_err(|errno| match errno {
                // O_DIRECTORY | O_NOFOLLOW on a symlink fails with ENOTDIR.
                Errno::ENOTDIR
                    if self
                        .stat(name)
                        .is_ok_and(|s| s.is_some_and(|s| s.kind == Kind::Symlink)) =>
                {
                    refusal(Errno::ELOOP, &path)
                }
                errno => refusal(errno, &path),
            })?;
        Ok(Dir {
            fd: Arc::new(fd),
            path,
        })
    }

    /// Creates the subdirectory `name` (mode 0777 minus the umask); `Ok(false)` if it exists.
    pub fn create_subdir(&self, name: &str) -> io::Result<bool> {
        let path = self.checked(name)?;
        match nix::sys::stat::mkdirat(self.fd.as_fd(), name, Mode::from_bits_truncate(0o777)) {
            Ok(()) => Ok(true),
            Err(Errno::EEXIST) => Ok(false),
            Err(errno) => Err(refusal(errno, &path)),
        }
    }

    /// Opens the file `name`. A symlink is refused, and so is anything but a regular file.
    pub fn open_file(&self, name: &str, access: Access) -> io::Result<File> {
        let path = self.checked(name)?;
        let base = OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK;
        let flags = base
            | match access {
                Access::Read => OFlag::O_RDONLY,
                Access::ReadWrite => OFlag::O_RDWR,
                Access::CreateNew => OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
                Access::Truncate => OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC,
                Access::Append => OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_APPEND,
            };
        let fd = nix::fcntl::openat(
            self.fd.as_fd(),
            name,
            flags,
            Mode::from_bits_truncate(0o666),
        )
        .map_err(|errno| refusal(errno, &path))?;
        let file = File::from(fd);
        // O_NONBLOCK only kept the open of a planted FIFO from blocking; it means nothing for
        // regular files, which is all that is accepted.
        if !file.metadata()?.is_file() {
            return Err(io::Error::other(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        Ok(file)
    }

    /// The whole content of the file `name`.
    pub fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        let mut file = self.open_file(name, Access::Read)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// `lstat` of `name`: `Ok(None)` when there is no such entry.
    pub fn stat(&self, name: &str) -> io::Result<Option<Stat>> {
        let path = self.checked(name)?;
        match nix::sys::stat::fstatat(self.fd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(Stat::of(&stat))),
            Err(Errno::ENOENT) => Ok(None),
            Err(errno) => Err(refusal(errno, &path)),
        }
    }

    /// `fstat` of the directory itself.
    pub fn stat_self(&self) -> io::Result<Stat> {
        let stat = nix::sys::stat::fstat(self.fd.as_fd()).map_err(io::Error::from)?;
        Ok(Stat::of(&stat))
    }

    /// Whether `name` is a regular file (not following a symlink).
    pub fn is_file(&self, name: &str) -> io::Result<bool> {
        Ok(self.stat(name)?.is_some_and(|s| s.kind == Kind::File))
    }

    /// Unlinks the file (or symlink) `name`.
    pub fn remove_file(&self, name: &str) -> io::Result<()> {
        let path = self.checked(name)?;
        nix::unistd::unlinkat(self.fd.as_fd(), name, UnlinkatFlags::NoRemoveDir)
            .map_err(|errno| refusal(errno, &path))
    }

    /// Removes the empty directory `name`.
    pub fn remove_dir(&self, name: &str) -> io::Result<()> {
        let path = self.checked(name)?;
        nix::unistd::unlinkat(self.fd.as_fd(), name, UnlinkatFlags::RemoveDir)
            .map_err(|errno| refusal(errno, &path))
    }

    /// Renames `from` over `to`, both in this directory.
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let path = self.checked(from)?;
        self.checked(to)?;
        nix::fcntl::renameat(self.fd.as_fd(), from, self.fd.as_fd(), to)
            .map_err(|errno| refusal(errno, &path))
    }

    /// Makes `to` a second hard link of `from` (a symlink `from` is linked as the link itself,
    /// never its target).
    pub fn hard_link(&self, from: &str, to: &str) -> io::Result<()> {
        let path = self.checked(from)?;
        self.checked(to)?;
        nix::unistd::linkat(self.fd.as_fd(), from, self.fd.as_fd(), to, AtFlags::empty())
            .map_err(|errno| refusal(errno, &path))
    }

    /// The names in this directory (without `.` and `..`), with what each is when the file
    /// system says so cheaply (`None`: ask [`Dir::stat`]).
    pub fn entries(&self) -> io::Result<Vec<(OsString, Option<Kind>)>> {
        // A descriptor of our own: reading a directory moves its offset.
        let fd = nix::fcntl::openat(self.fd.as_fd(), ".", directory_flags(), Mode::empty())
            .map_err(io::Error::from)?;
        let mut dir = nix::dir::Dir::from_fd(fd).map_err(io::Error::from)?;
        let mut names = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(io::Error::from)?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let kind = entry.file_type().map(|kind| match kind {
                nix::dir::Type::File => Kind::File,
                nix::dir::Type::Directory => Kind::Dir,
                nix::dir::Type::Symlink => Kind::Symlink,
                _ => Kind::Other,
            });
            names.push((OsString::from(std::ffi::OsStr::from_bytes(name)), kind));
        }
        Ok(names)
    }

    /// fsync of the directory, so that renames and unlinks in it are durable. EINVAL (file
    /// systems that cannot sync directories) is ignored, as borg does.
    pub fn sync(&self) -> io::Result<()> {
        match nix::unistd::fsync(self.fd.as_fd()) {
            Ok(()) | Err(Errno::EINVAL) => Ok(()),
            Err(errno) => Err(errno.into()),
        }
    }

    /// Free space of the file system holding this directory, in bytes, and its block size.
    pub fn free_space(&self) -> io::Result<(u64, u64)> {
        let stats = nix::sys::statvfs::fstatvfs(self.fd.as_fd()).map_err(io::Error::from)?;
        Ok((
            stats.blocks_available() * stats.fragment_size(),
            stats.block_size(),
        ))
    }

    fn checked(&self, name: &str) -> io::Result<PathBuf> {
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a plain file name: {name:?}"),
            ));
        }
        Ok(self.path.join(name))
    }
}

fn directory_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// A symlink where a repository file or directory should be.
#[derive(Debug)]
pub(crate) struct SymlinkRefused(pub PathBuf);

impl std::fmt::Display for SymlinkRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {SYMLINK_REFUSED}", self.0.display())
    }
}

impl std::error::Error for SymlinkRefused {}

/// The error for a failed `*at` call on `path`: a symlink met with O_NOFOLLOW becomes a
/// [`SymlinkRefused`] that names it; anything else stays the plain OS error (callers add what
/// they were doing).
fn refusal(errno: Errno, path: &Path) -> io::Error {
    if errno == Errno::ELOOP {
        io::Error::other(SymlinkRefused(path.to_path_buf()))
    } else {
        io::Error::from(errno)
    }
}

/// Whether `error` is the refusal of a symlink inside a repository.
pub(crate) fn is_symlink_refusal(error: &io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<SymlinkRefused>().is_some())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::symlink;

    use super::*;

    fn setup() -> (tempfile::TempDir, tempfile::TempDir, Dir) {
        let repo = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"outside").unwrap();
        let dir = Dir::open(repo.path()).unwrap();
        (repo, outside, dir)
    }

    #[test]
    fn a_symlinked_file_is_refused_for_every_kind_of_open() {
        let (repo, outside, dir) = setup();
        symlink(outside.path().join("secret"), repo.path().join("config")).unwrap();
        for access in [
            Access::Read,
            Access::ReadWrite,
            Access::CreateNew,
            Access::Truncate,
            Access::Append,
        ] {
            let error = dir.open_file("config", access).unwrap_err();
            assert!(
                is_symlink_refusal(&error) || error.kind() == io::ErrorKind::AlreadyExists,
                "{access:?}: {error}"
            );
        }
        let error = dir.read("config").unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("{} {SYMLINK_REFUSED}", repo.path().join("config").display())
        );
        assert_eq!(
            std::fs::read(outside.path().join("secret")).unwrap(),
            b"outside"
        );
    }

    #[test]
    fn a_symlinked_directory_is_refused() {
        let (repo, outside, dir) = setup();
        symlink(outside.path(), repo.path().join("data")).unwrap();
        let error = dir.subdir("data").unwrap_err();
        assert!(is_symlink_refusal(&error), "{error}");
        assert!(dir.create_subdir("data").is_ok_and(|created| !created));
        assert_eq!(
            dir.stat("data").unwrap().map(|s| s.kind),
            Some(Kind::Symlink)
        );
        let link = repo.path().join("link");
        symlink(repo.path(), &link).unwrap();
        assert!(is_symlink_refusal(&Dir::open(&link).unwrap_err()));
    }

    #[test]
    fn removing_renaming_and_linking_act_on_links_not_targets() {
        let (repo, outside, dir) = setup();
        symlink(
            outside.path().join("secret"),
            repo.path().join("config.old"),
        )
        .unwrap();
        dir.hard_link("config.old", "hard").unwrap();
        assert!(
            std::fs::symlink_metadata(repo.path().join("hard"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        dir.rename("hard", "renamed").unwrap();
        dir.remove_file("renamed").unwrap();
        dir.remove_file("config.old").unwrap();
        assert_eq!(
            std::fs::read(outside.path().join("secret")).unwrap(),
            b"outside"
        );
    }

    #[test]
    fn names_must_be_single_components() {
        let (_repo, _outside, dir) = setup();
        for name in ["", ".", "..", "a/b", "../x", "a\0b"] {
            assert!(dir.stat(name).is_err(), "{name:?}");
            assert!(dir.open_file(name, Access::Read).is_err(), "{name:?}");
        }
    }

    #[test]
    fn a_fifo_is_not_opened_as_a_file() {
        let (repo, _outside, dir) = setup();
        nix::unistd::mkfifo(
            &repo.path().join("hints.1"),
            Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let error = dir.read("hints.1").unwrap_err();
        assert!(error.to_string().contains("not a regular file"), "{error}");
    }

    #[test]
    fn files_are_created_appended_listed_and_stated() {
        let (_repo, _outside, dir) = setup();
        dir.open_file("a", Access::CreateNew)
            .unwrap()
            .write_all(b"12")
            .unwrap();
        assert_eq!(
            dir.open_file("a", Access::CreateNew).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        dir.open_file("a", Access::Append)
            .unwrap()
            .write_all(b"3")
            .unwrap();
        assert_eq!(dir.read("a").unwrap(), b"123");
        assert!(dir.create_subdir("d").unwrap());
        let mut names: Vec<_> = dir
            .entries()
            .unwrap()
            .into_iter()
            .map(|(n, _)| n.into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["a", "d"]);
        assert_eq!(
            dir.stat("a").unwrap().map(|s| (s.kind, s.len)),
            Some((Kind::File, 3))
        );
        assert_eq!(dir.stat("missing").unwrap(), None);
        dir.subdir("d").unwrap().sync().unwrap();
        dir.remove_dir("d").unwrap();
        assert!(!dir.is_file("d").unwrap());
    }
}
