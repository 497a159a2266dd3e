//! borgstore's posixfs layout on disk, opened only through directory handles: every name is
//! walked from the store's root directory one component at a time with `O_NOFOLLOW`, so no
//! symbolic link inside the store (planted by whoever can write there) can lead a request
//! outside it. Objects are regular files at `<root>/<name>`; namespaces are directories.
//!
//! Writes are atomic and durable: a temp file `tmpXXXXXXXX.tmp` (mode 0600, `O_EXCL`) in the
//! target directory, fsync, `renameat` over the final name, fsync of the directory. Deletes
//! and moves fsync their directories too, and a directory created on the way is made durable
//! in its parent. borgstore itself never fsyncs (its `do_fsync` is off); that loses the last
//! seconds of writes on a power cut, which a backup server must not. `--no-fsync` exists only
//! to measure the cost.
//!
//! This module knows names as already validated component lists; it knows nothing about
//! permissions, quotas or HTTP.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, fsync, unlinkat};

use super::names::{TMP_SUFFIX, is_listable};

/// What went wrong on disk, before anyone decides what the client is told.
#[derive(Debug)]
pub enum FsError {
    /// The store's root is missing or not a directory.
    NoRoot,
    /// The name does not exist (or a component on the way is not a directory).
    NotFound,
    /// A symbolic link on the way or at the end: never followed inside the store.
    Symlink,
    /// The name is a directory where an object was expected, or the reverse.
    WrongType,
    NoSpace,
    Io(io::Error),
}

impl From<Errno> for FsError {
    fn from(errno: Errno) -> FsError {
        match errno {
            Errno::ENOENT | Errno::ENOTDIR => FsError::NotFound,
            Errno::ELOOP => FsError::Symlink,
            Errno::EISDIR => FsError::WrongType,
            Errno::ENOSPC | Errno::EDQUOT => FsError::NoSpace,
            other => FsError::Io(other.into()),
        }
    }
}

impl From<io::Error> for FsError {
    fn from(error: io::Error) -> FsError {
        match error.raw_os_error() {
            Some(code) => FsError::from(Errno::from_raw(code)),
            None => FsError::Io(error),
        }
    }
}

pub type FsResult<T> = Result<T, FsError>;

/// Size and times of an object or directory, as borgstore reports them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    pub size: u64,
    pub directory: bool,
    /// Float seconds, computed as CPython's `os.stat` does (`sec + nsec * 1e-9`).
    pub atime: f64,
    pub mtime: f64,
}

impl Stat {
    fn of(stat: &FileStat) -> Stat {
        let seconds = |sec: i64, nsec: i64| sec as f64 + nsec as f64 * 1e-9;
        Stat {
            size: u64::try_from(stat.st_size).unwrap_or(0),
            directory: is_kind(stat, SFlag::S_IFDIR),
            atime: seconds(stat.st_atime, stat.st_atime_nsec),
            mtime: seconds(stat.st_mtime, stat.st_mtime_nsec),
        }
    }
}

fn is_kind(stat: &FileStat, kind: SFlag) -> bool {
    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == kind
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub name: String,
    pub stat: Stat,
}

/// The store's directory, by path; opened afresh for every request, as borgstore checks the
/// root at every request (so a destroyed and re-created store is seen as it is now).
#[derive(Debug, Clone)]
pub struct PosixFs {
    root: PathBuf,
    fsync: bool,
}

/// An open root directory.
pub struct Root {
    fd: OwnedFd,
    fsync: bool,
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);
const FILE_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC)
    .union(OFlag::O_NOCTTY);
/// Directories get `0777 & ~umask`, as Python's `mkdir`.
const DIR_MODE: Mode = Mode::from_bits_truncate(0o777);
/// Objects get 0600 whatever the umask, as Python's `mkstemp`.
const FILE_MODE: Mode = Mode::from_bits_truncate(0o600);

impl PosixFs {
    pub fn new(root: PathBuf, fsync: bool) -> PosixFs {
        PosixFs { root, fsync }
    }

    pub fn root_path(&self) -> &Path {
        &self.root
    }

    /// Opens the root, or [`FsError::NoRoot`] when it is not a directory (HTTP 410).
    pub fn open(&self) -> FsResult<Root> {
        match nix::fcntl::open(&self.root, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => Ok(Root {
                fd,
                fsync: self.fsync,
            }),
            Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => Err(FsError::NoRoot),
            Err(errno) => Err(errno.into()),
        }
    }

    /// borgstore's `create`: `mkdir -p` of the root, which must then be empty.
    pub fn create(&self) -> FsResult<CreateOutcome> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .create(&self.root)?;
        let root = self.open()?;
        if root.fsync {
            if let Some(parent) = self.root.parent() {
                sync_path(parent)?;
            }
        }
        let mut dir = nix::dir::Dir::from_fd(root.dup()?)?;
        let occupied = dir.iter().any(|entry| {
            entry.is_ok_and(|entry| {
                let name = entry.file_name().to_bytes();
                name != b"." && name != b".."
            })
        });
        Ok(if occupied {
            CreateOutcome::NotEmpty
        } else {
            CreateOutcome::Created
        })
    }

    /// borgstore's `destroy`: remove everything, then the root itself if possible.
    pub fn destroy(&self) -> FsResult<()> {
        let root = self.open()?;
        remove_contents(root.fd.as_fd())?;
        drop(root);
        // posixfs keeps a root it may not remove (a hoster's pre-made directory).
        let _ = std::fs::remove_dir(&self.root);
        if self.fsync {
            if let Some(parent) = self.root.parent() {
                let _ = sync_path(parent);
            }
        }
        Ok(())
    }
}

/// What `create` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    NotEmpty,
}

impl Root {
    fn dup(&self) -> FsResult<OwnedFd> {
        Ok(self.fd.try_clone()?)
    }

    /// The directory holding the last component, and that component; `None` for the root.
    fn parent<'n>(&self, parts: &[&'n str], create: bool) -> FsResult<Option<(OwnedFd, &'n str)>> {
        let Some((last, dirs)) = parts.split_last() else {
            return Ok(None);
        };
        Ok(Some((self.walk(dirs, create)?, last)))
    }

    /// Opens the directory `parts` below the root, creating missing ones when asked.
    fn walk(&self, parts: &[&str], create: bool) -> FsResult<OwnedFd> {
        let Some((first, rest)) = parts.split_first() else {
            return self.dup();
        };
        let mut dir = self.step(self.fd.as_fd(), first, create)?;
        for part in rest {
            dir = self.step(dir.as_fd(), part, create)?;
        }
        Ok(dir)
    }

    /// Opens the directory `part` in `dir`, creating it when missing and asked to.
    fn step(&self, dir: BorrowedFd<'_>, part: &str, create: bool) -> FsResult<OwnedFd> {
        let name = c_name(part)?;
        match openat(dir, name.as_c_str(), DIR_FLAGS, Mode::empty()) {
            Ok(next) => Ok(next),
            Err(Errno::ENOENT) if create => {
                match mkdirat(dir, name.as_c_str(), DIR_MODE) {
                    Ok(()) if self.fsync => fsync(dir)?,
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(errno) => return Err(errno.into()),
                }
                Ok(openat(dir, name.as_c_str(), DIR_FLAGS, Mode::empty())?)
            }
            Err(errno @ (Errno::ENOTDIR | Errno::ELOOP)) => Err(symlink_or(dir, &name, errno)),
            Err(errno) => Err(errno.into()),
        }
    }

    /// The directory of the object `parts`, opened once for a stat and then a write (a
    /// store looks before it writes). `None` inside when the directory does not exist yet.
    pub fn object_dir(&self, parts: &[&str]) -> FsResult<ObjectDir> {
        let Some((last, dirs)) = parts.split_last() else {
            return Err(FsError::WrongType);
        };
        let dir = match self.walk(dirs, false) {
            Ok(dir) => Some(dir),
            Err(FsError::NotFound) => None,
            Err(error) => return Err(error),
        };
        Ok(ObjectDir {
            dir,
            name: c_name(last)?,
        })
    }

    /// Size and times of `parts`, `None` when it does not exist.
    pub fn stat(&self, parts: &[&str]) -> FsResult<Option<Stat>> {
        let Some((dir, last)) = (match self.parent(parts, false) {
            Ok(found) => found,
            Err(FsError::NotFound) => return Ok(None),
            Err(error) => return Err(error),
        }) else {
            return Ok(Some(Stat::of(&fstat(self.fd.as_fd())?)));
        };
        let name = c_name(last)?;
        match fstatat(
            dir.as_fd(),
            name.as_c_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(stat) if is_kind(&stat, SFlag::S_IFLNK) => Err(FsError::Symlink),
            Ok(stat) => Ok(Some(Stat::of(&stat))),
            Err(Errno::ENOENT | Errno::ENOTDIR) => Ok(None),
            Err(errno) => Err(errno.into()),
        }
    }

    /// Opens the object `parts` for reading, with its size.
    pub fn open_object(&self, parts: &[&str]) -> FsResult<(File, u64)> {
        let Some((dir, last)) = self.parent(parts, false)? else {
            return Err(FsError::WrongType);
        };
        let name = c_name(last)?;
        let file = File::from(openat(
            dir.as_fd(),
            name.as_c_str(),
            FILE_FLAGS,
            Mode::empty(),
        )?);
        let stat = fstat(file.as_fd())?;
        if !is_kind(&stat, SFlag::S_IFREG) {
            return Err(FsError::WrongType);
        }
        Ok((file, u64::try_from(stat.st_size).unwrap_or(0)))
    }

    /// Starts writing the object `parts`: a temp file in its directory, created with its
    /// parents when missing. Nothing is visible until [`PendingWrite::commit`].
    pub fn begin_write(&self, parts: &[&str]) -> FsResult<PendingWrite> {
        let Some((dir, last)) = self.parent(parts, true)? else {
            return Err(FsError::WrongType);
        };
        let (file, temp) = create_temp(dir.as_fd())?;
        Ok(PendingWrite {
            dir,
            temp: Some(temp),
            file,
            target: c_name(last)?,
            fsync: self.fsync,
        })
    }

    /// A temp file in the directory `parts` (created when missing), for data whose final
    /// name is known only after it was written (defrag).
    pub fn begin_write_in(&self, parts: &[&str]) -> FsResult<PendingWrite> {
        let dir = self.walk(parts, true)?;
        let (file, temp) = create_temp(dir.as_fd())?;
        Ok(PendingWrite {
            dir,
            temp: Some(temp),
            file,
            target: CString::default(),
            fsync: self.fsync,
        })
    }

    /// Removes the object `parts`.
    pub fn delete(&self, parts: &[&str]) -> FsResult<()> {
        let Some((dir, last)) = self.parent(parts, false)? else {
            return Err(FsError::WrongType);
        };
        let name = c_name(last)?;
        unlinkat(dir.as_fd(), name.as_c_str(), UnlinkatFlags::NoRemoveDir)?;
        if self.fsync {
            fsync(dir.as_fd())?;
        }
        Ok(())
    }

    /// Renames `from` to `to`, replacing `to`; creates `to`'s directory when missing.
    pub fn rename(&self, from: &[&str], to: &[&str]) -> FsResult<()> {
        let (Some((from_dir, from_last)), Some((to_dir, to_last))) =
            (self.parent(from, false)?, self.parent(to, true)?)
        else {
            return Err(FsError::WrongType);
        };
        let from_name = c_name(from_last)?;
        let to_name = c_name(to_last)?;
        renameat(
            from_dir.as_fd(),
            from_name.as_c_str(),
            to_dir.as_fd(),
            to_name.as_c_str(),
        )?;
        if self.fsync {
            fsync(to_dir.as_fd())?;
            if !same_file(&from_dir, &to_dir) {
                fsync(from_dir.as_fd())?;
            }
        }
        Ok(())
    }

    /// `mkdir -p` of `parts`.
    pub fn mkdir(&self, parts: &[&str]) -> FsResult<()> {
        self.walk(parts, true).map(drop)
    }

    /// Removes the empty directory `parts`.
    pub fn rmdir(&self, parts: &[&str]) -> FsResult<()> {
        let Some((dir, last)) = self.parent(parts, false)? else {
            // The root itself: Python's rmdir of the base path.
            return Err(FsError::Io(io::Error::from_raw_os_error(
                Errno::EBUSY as i32,
            )));
        };
        let name = c_name(last)?;
        unlinkat(dir.as_fd(), name.as_c_str(), UnlinkatFlags::RemoveDir)?;
        if self.fsync {
            fsync(dir.as_fd())?;
        }
        Ok(())
    }

    /// The listable entries of directory `parts`, sorted by name: objects and directories
    /// whose names borgstore would accept; temp files, hidden files and symbolic links are
    /// left out.
    pub fn list(&self, parts: &[&str]) -> FsResult<Vec<Entry>> {
        let dir = self.walk(parts, false)?;
        let mut handle = nix::dir::Dir::from_fd(dir.try_clone()?)?;
        let mut entries = Vec::new();
        for entry in handle.iter() {
            let entry = entry?;
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name == "." || name == ".." || !is_listable(name) {
                continue;
            }
            let stat = match fstatat(
                dir.as_fd(),
                entry.file_name(),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            ) {
                Ok(stat) => stat,
                // Removed meanwhile.
                Err(Errno::ENOENT) => continue,
                Err(errno) => return Err(errno.into()),
            };
            if is_kind(&stat, SFlag::S_IFLNK) {
                continue;
            }
            entries.push(Entry {
                name: name.to_owned(),
                stat: Stat::of(&stat),
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Reads a small hidden file in the root (`quota.hid`, the lock fence).
    pub fn read_hidden(&self, name: &str, limit: u64) -> FsResult<Option<(Vec<u8>, Stat)>> {
        let name = c_name(name)?;
        let file = match openat(self.fd.as_fd(), name.as_c_str(), FILE_FLAGS, Mode::empty()) {
            Ok(fd) => File::from(fd),
            Err(Errno::ENOENT) => return Ok(None),
            Err(errno) => return Err(errno.into()),
        };
        let stat = Stat::of(&fstat(file.as_fd())?);
        let mut content = Vec::new();
        file.take(limit).read_to_end(&mut content)?;
        Ok(Some((content, stat)))
    }

    /// Replaces a small hidden file in the root atomically and durably (always fsynced: it
    /// is bookkeeping other sessions rely on).
    pub fn write_hidden(&self, name: &str, content: &[u8]) -> FsResult<()> {
        let (mut file, temp) = create_temp(self.fd.as_fd())?;
        let written = file
            .write_all(content)
            .and_then(|()| file.sync_all())
            .map_err(FsError::from)
            .and_then(|()| {
                let target = c_name(name)?;
                Ok(renameat(
                    self.fd.as_fd(),
                    temp.as_c_str(),
                    self.fd.as_fd(),
                    target.as_c_str(),
                )?)
            });
        if let Err(error) = written {
            let _ = unlinkat(self.fd.as_fd(), temp.as_c_str(), UnlinkatFlags::NoRemoveDir);
            return Err(error);
        }
        fsync(self.fd.as_fd())?;
        Ok(())
    }

    /// Opens (creating when missing, as borgstore does) a hidden file in the root, for
    /// `flock`.
    pub fn open_hidden_for_lock(&self, name: &str) -> FsResult<File> {
        let name = c_name(name)?;
        let fd = openat(
            self.fd.as_fd(),
            name.as_c_str(),
            OFlag::O_RDONLY | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o666),
        )?;
        Ok(File::from(fd))
    }

    /// Whether `file` is still the hidden file `name` (it may have been replaced meanwhile).
    pub fn is_current(&self, file: &File, name: &str) -> FsResult<bool> {
        let name = c_name(name)?;
        let open = fstat(file.as_fd())?;
        match fstatat(
            self.fd.as_fd(),
            name.as_c_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(now) => Ok(now.st_dev == open.st_dev && now.st_ino == open.st_ino),
            Err(Errno::ENOENT) => Ok(false),
            Err(errno) => Err(errno.into()),
        }
    }

    /// The bytes of every regular file below the root except `skip` (in the root), without
    /// following links: borgstore's quota scan.
    pub fn usage_scan(&self, skip: &str) -> FsResult<u64> {
        scan(self.dup()?, Some(skip))
    }

    /// Removes the hidden file `name` in the root, if there.
    pub fn remove_hidden(&self, name: &str) -> FsResult<()> {
        let name = c_name(name)?;
        match unlinkat(self.fd.as_fd(), name.as_c_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(errno) => Err(errno.into()),
        }
    }
}

/// The directory of one object (see [`Root::object_dir`]).
pub struct ObjectDir {
    dir: Option<OwnedFd>,
    name: CString,
}

impl ObjectDir {
    /// Size and times of the object, `None` when it does not exist.
    pub fn stat(&self) -> FsResult<Option<Stat>> {
        let Some(dir) = &self.dir else {
            return Ok(None);
        };
        match fstatat(
            dir.as_fd(),
            self.name.as_c_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(stat) if is_kind(&stat, SFlag::S_IFLNK) => Err(FsError::Symlink),
            Ok(stat) => Ok(Some(Stat::of(&stat))),
            Err(Errno::ENOENT | Errno::ENOTDIR) => Ok(None),
            Err(errno) => Err(errno.into()),
        }
    }

    /// Starts writing the object; its directories are created (below `root`) when missing.
    pub fn begin_write(self, root: &Root, parts: &[&str]) -> FsResult<PendingWrite> {
        let dir = match self.dir {
            Some(dir) => dir,
            None => root.walk(parts.split_last().map_or(&[][..], |(_, dirs)| dirs), true)?,
        };
        let (file, temp) = create_temp(dir.as_fd())?;
        Ok(PendingWrite {
            dir,
            temp: Some(temp),
            file,
            target: self.name,
            fsync: root.fsync,
        })
    }
}

/// An object being written; dropped without [`PendingWrite::commit`], its temp file goes.
pub struct PendingWrite {
    dir: OwnedFd,
    temp: Option<CString>,
    file: File,
    target: CString,
    fsync: bool,
}

impl PendingWrite {
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Makes the data durable and renames it over the target.
    pub fn commit(self) -> FsResult<()> {
        let target = self.target.clone();
        self.commit_as(&target)
    }

    /// Like [`PendingWrite::commit`], under `name` in `parts` (for defrag, whose name is
    /// the hash of what was written). The data is moved to `parts`' directory.
    pub fn commit_into(self, root: &Root, parts: &[&str]) -> FsResult<()> {
        let Some((dir, last)) = root.parent(parts, true)? else {
            return Err(FsError::WrongType);
        };
        let name = c_name(last)?;
        let mut this = self;
        let temp = this.temp.take().ok_or(FsError::NotFound)?;
        let result = (|| {
            if this.fsync {
                this.file.sync_all()?;
            }
            renameat(
                this.dir.as_fd(),
                temp.as_c_str(),
                dir.as_fd(),
                name.as_c_str(),
            )?;
            if this.fsync {
                fsync(dir.as_fd())?;
                if !same_file(&dir, &this.dir) {
                    fsync(this.dir.as_fd())?;
                }
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = unlinkat(
                this.dir.as_fd(),
                temp.as_c_str(),
                UnlinkatFlags::NoRemoveDir,
            );
        }
        result
    }

    fn commit_as(mut self, target: &CString) -> FsResult<()> {
        let temp = self.temp.take().ok_or(FsError::NotFound)?;
        let result = (|| {
            if self.fsync {
                self.file.sync_all()?;
            }
            renameat(
                self.dir.as_fd(),
                temp.as_c_str(),
                self.dir.as_fd(),
                target.as_c_str(),
            )?;
            if self.fsync {
                fsync(self.dir.as_fd())?;
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = unlinkat(
                self.dir.as_fd(),
                temp.as_c_str(),
                UnlinkatFlags::NoRemoveDir,
            );
        }
        result
    }
}

impl Drop for PendingWrite {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let _ = unlinkat(
                self.dir.as_fd(),
                temp.as_c_str(),
                UnlinkatFlags::NoRemoveDir,
            );
        }
    }
}

/// [`FsError::Symlink`] when `name` in `dir` is a symbolic link (`O_NOFOLLOW` with
/// `O_DIRECTORY` reports one as "not a directory"), else what `errno` says.
fn symlink_or(dir: std::os::fd::BorrowedFd<'_>, name: &CString, errno: Errno) -> FsError {
    match fstatat(
        dir,
        name.as_c_str(),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        Ok(stat) if is_kind(&stat, SFlag::S_IFLNK) => FsError::Symlink,
        _ => errno.into(),
    }
}

/// One path component. Names are validated before they get here; this refuses what would
/// leave the directory anyway, as a second line of defence.
fn c_name(part: &str) -> FsResult<CString> {
    if part.is_empty() || part == "." || part == ".." || part.contains('/') {
        return Err(FsError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{part:?} is not a name inside the store"),
        )));
    }
    CString::new(part).map_err(|_| FsError::NotFound)
}

fn same_file(a: &OwnedFd, b: &OwnedFd) -> bool {
    match (fstat(a.as_fd()), fstat(b.as_fd())) {
        (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
        _ => false,
    }
}

fn sync_path(path: &Path) -> FsResult<()> {
    let fd = nix::fcntl::open(path, DIR_FLAGS, Mode::empty())?;
    Ok(fsync(fd.as_fd())?)
}

/// Characters of Python's `tempfile` names.
const TEMP_CHARACTERS: &[u8; 37] = b"abcdefghijklmnopqrstuvwxyz0123456789_";

/// Creates `tmpXXXXXXXX.tmp` in `dir` with `O_EXCL`, as Python's `NamedTemporaryFile`
/// names it. The letters need not be unpredictable: the directory belongs to the store's
/// account and `O_EXCL` turns a collision into another try, so a counter mixed with the pid
/// and the clock (no random-number crate) is enough.
fn create_temp(dir: std::os::fd::BorrowedFd<'_>) -> FsResult<(File, CString)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or(0)
        ^ (u64::from(process_id()) << 32);
    for _ in 0..100 {
        let mut state = seed
            ^ COUNTER
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut name = String::from("tmp");
        for _ in 0..8 {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let value = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
            name.push(char::from(
                TEMP_CHARACTERS[(value >> 59) as usize % TEMP_CHARACTERS.len()],
            ));
        }
        name.push_str(TMP_SUFFIX);
        let temp = c_name(&name)?;
        match openat(
            dir,
            temp.as_c_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            FILE_MODE,
        ) {
            Ok(fd) => return Ok((File::from(fd), temp)),
            Err(Errno::EEXIST) => continue,
            Err(errno) => return Err(errno.into()),
        }
    }
    Err(FsError::Io(io::Error::other("no free temp file name")))
}

/// This process's id, asked once (`getpid` per temp file showed in profiles).
fn process_id() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// Removes everything inside `dir` without following links.
fn remove_contents(dir: std::os::fd::BorrowedFd<'_>) -> FsResult<()> {
    let mut handle = nix::dir::Dir::from_fd(dir.try_clone_to_owned()?)?;
    let names: Vec<CString> = handle
        .iter()
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_owned())
        .filter(|name| name.as_bytes() != b"." && name.as_bytes() != b"..")
        .collect();
    for name in names {
        match openat(dir, name.as_c_str(), DIR_FLAGS, Mode::empty()) {
            Ok(child) => {
                remove_contents(child.as_fd())?;
                unlinkat(dir, name.as_c_str(), UnlinkatFlags::RemoveDir)?;
            }
            Err(Errno::ENOTDIR | Errno::ELOOP) => {
                unlinkat(dir, name.as_c_str(), UnlinkatFlags::NoRemoveDir)?;
            }
            Err(Errno::ENOENT) => {}
            Err(errno) => return Err(errno.into()),
        }
    }
    Ok(())
}

fn scan(dir: OwnedFd, skip: Option<&str>) -> FsResult<u64> {
    let mut handle = nix::dir::Dir::from_fd(dir.try_clone()?)?;
    let names: Vec<CString> = handle
        .iter()
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_owned())
        .filter(|name| name.as_bytes() != b"." && name.as_bytes() != b"..")
        .filter(|name| Some(name.as_bytes()) != skip.map(str::as_bytes))
        .collect();
    let mut total = 0u64;
    for name in names {
        let stat = match fstatat(
            dir.as_fd(),
            name.as_c_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(stat) => stat,
            Err(Errno::ENOENT) => continue,
            Err(errno) => return Err(errno.into()),
        };
        if is_kind(&stat, SFlag::S_IFREG) {
            total = total.saturating_add(u64::try_from(stat.st_size).unwrap_or(0));
        } else if is_kind(&stat, SFlag::S_IFDIR) {
            if let Ok(child) = openat(dir.as_fd(), name.as_c_str(), DIR_FLAGS, Mode::empty()) {
                total = total.saturating_add(scan(child, None)?);
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests;
