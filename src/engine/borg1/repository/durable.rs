//! Durable file replacement, the one path every file the engine replaces goes through: write a
//! temporary file, fsync, rename, fsync the directory.
//!
//! This is borg's `SaveFile` (`platform/base.py:200-247`) plus the deletion helpers of `helpers/fs.py`:
//! a crash leaves either the old or the new file, never a torn one, and the temporary files are named
//! `<name>-<random>.tmp` in the target directory, created exclusively with mode 0o666 (minus the umask).
//! Files that must appear together in a fixed order (`write_index`: integrity, then hints and
//! index) are written with [`AtomicWriter::finish`] and renamed by the caller.
//!
//! Everything works inside a [`Dir`] handle and never follows a symlink (see `dir.rs`).

use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};

use super::dir::{Access, Dir};

/// Replaces `dir/name` with `bytes` atomically and durably: temporary file, write, fsync, close,
/// fsync `dir`, rename over the target, fsync `dir`.
pub(crate) fn write_atomic_in(dir: &Dir, name: &str, bytes: &[u8]) -> io::Result<()> {
    let mut writer = AtomicWriter::create_in(dir, name)?;
    writer.write_all(bytes)?;
    writer.commit()
}

/// A streaming atomic replacement of `dir/name`, for files too large to build in memory (index files).
/// Write through [`Write`], then [`AtomicWriter::commit`]. Dropping it without committing removes the
/// temporary file and leaves the target untouched.
pub(crate) struct AtomicWriter {
    file: Option<BufWriter<File>>,
    names: Names,
}

/// Where a temporary file lives and what it replaces.
#[derive(Debug)]
struct Names {
    dir: Dir,
    temp: String,
    target: String,
}

const WRITE_BUFFER_SIZE: usize = 256 << 10;
const TEMP_NAME_ATTEMPTS: usize = 100;

impl AtomicWriter {
    /// Creates `dir/<name>-<random>.tmp` exclusively. `name` must be a plain file name.
    pub(crate) fn create_in(dir: &Dir, name: &str) -> io::Result<Self> {
        if name.is_empty()
            || name == "."
            || name == ".."
            || name.contains('/')
            || name.contains('\0')
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a plain file name: {name:?}"),
            ));
        }
        for _ in 0..TEMP_NAME_ATTEMPTS {
            let temp = format!("{name}-{}.tmp", random_suffix());
            match dir.open_file(&temp, Access::CreateNew) {
                Ok(file) => {
                    return Ok(Self {
                        file: Some(BufWriter::with_capacity(WRITE_BUFFER_SIZE, file)),
                        names: Names {
                            dir: dir.clone(),
                            temp,
                            target: name.to_owned(),
                        },
                    });
                }
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(err) => return Err(err),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "no usable temporary file name found",
        ))
    }

    /// Flushes, fsyncs and closes the temporary file, without renaming it yet: for protocols that
    /// rename several files in a fixed order and fsync the directory themselves (`write_index`).
    /// (borg syncs only the data of its `SaveFile`s; the whole file costs nothing more here.)
    pub(crate) fn finish(mut self) -> io::Result<PendingRename> {
        let pending = PendingRename {
            names: Names {
                dir: self.names.dir.clone(),
                temp: std::mem::take(&mut self.names.temp),
                target: std::mem::take(&mut self.names.target),
            },
            renamed: false,
        };
        // From here on `pending` owns the cleanup of the temporary file.
        let writer = self.file.take();
        if let Some(writer) = writer {
            let file = writer
                .into_inner()
                .map_err(io::IntoInnerError::into_error)?;
            file.sync_all()?;
            drop(file);
        }
        Ok(pending)
    }

    /// [`AtomicWriter::finish`], fsync the directory, rename over the target, fsync the directory
    /// again: borg's `SaveFile`.
    pub(crate) fn commit(self) -> io::Result<()> {
        let pending = self.finish()?;
        pending.names.dir.sync()?;
        pending.rename_and_sync()
    }
}

impl Write for AtomicWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer()?.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.writer()?.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer()?.flush()
    }
}

impl AtomicWriter {
    fn writer(&mut self) -> io::Result<&mut BufWriter<File>> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("atomic writer already finished"))
    }
}

impl Drop for AtomicWriter {
    fn drop(&mut self) {
        if let Some(writer) = self.file.take() {
            // Discard the buffered tail instead of flushing it into a file about to be removed.
            let (file, _unwritten) = writer.into_parts();
            drop(file);
            let _ = safe_unlink_in(&self.names.dir, &self.names.temp);
        }
    }
}

/// A synced temporary file waiting to be renamed over its target. Dropped unrenamed, it is removed.
#[derive(Debug)]
pub(crate) struct PendingRename {
    names: Names,
    renamed: bool,
}

impl PendingRename {
    /// Renames over the target; the caller fsyncs the directory (once for several renames).
    pub(crate) fn rename(mut self) -> io::Result<()> {
        self.names
            .dir
            .rename(&self.names.temp, &self.names.target)?;
        self.renamed = true;
        Ok(())
    }

    /// Renames over the target and fsyncs the directory.
    pub(crate) fn rename_and_sync(self) -> io::Result<()> {
        let dir = self.names.dir.clone();
        let renamed = self.rename();
        let synced = dir.sync();
        renamed.and(synced)
    }
}

impl Drop for PendingRename {
    fn drop(&mut self) {
        if !self.renamed {
            let _ = safe_unlink_in(&self.names.dir, &self.names.temp);
        }
    }
}

/// Eight characters from Python's `tempfile` alphabet. Uniqueness, not secrecy, is what matters here:
/// the name is created with O_EXCL and retried on collision.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789_";
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    if let Ok(elapsed) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(elapsed.as_nanos());
    }
    let mut bits = hasher.finish();
    (0..8)
        .map(|_| {
            let index = (bits % ALPHABET.len() as u64) as usize;
            bits /= ALPHABET.len() as u64;
            char::from(ALPHABET[index])
        })
        .collect()
}

/// Unlinks `name` (borg's `safe_unlink`): if the file system is full (ENOSPC) and the file has no
/// other hard link, truncates it to free space and retries. Errors, including NotFound, are
/// returned. A symlink is removed, never its target.
pub(crate) fn safe_unlink_in(dir: &Dir, name: &str) -> io::Result<()> {
    let unlink_error = match dir.remove_file(name) {
        Ok(()) => return Ok(()),
        Err(err) if err.raw_os_error() == Some(nix::libc::ENOSPC) => err,
        Err(err) => return Err(err),
    };
    let truncated = dir.open_file(name, Access::ReadWrite).and_then(|file| {
        if file.metadata()?.nlink() > 1 {
            return Err(io::Error::other("other hard links"));
        }
        file.set_len(0)
    });
    if truncated.is_err() {
        return Err(unlink_error);
    }
    dir.remove_file(name)
}

/// Overwrites `name` with random bytes and fsyncs it, then unlinks it (borg's
/// `secure_erase(avoid_collateral_damage=True)`). A file with other hard links is only unlinked, so the
/// other names keep their content. A symlink is refused (never erased through).
pub(crate) fn secure_erase_in(dir: &Dir, name: &str) -> io::Result<()> {
    {
        let mut file = dir.open_file(name, Access::ReadWrite)?;
        let meta = file.metadata()?;
        if meta.nlink() <= 1 {
            let mut random = File::open("/dev/urandom")?;
            let mut chunk = vec![0u8; 64 << 10];
            let mut remaining = meta.len();
            while remaining > 0 {
                let len = remaining.min(chunk.len() as u64) as usize;
                random.read_exact(&mut chunk[..len])?;
                file.write_all(&chunk[..len])?;
                remaining -= len as u64;
            }
            file.flush()?;
            file.sync_all()?;
        }
    }
    dir.remove_file(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    use std::path::{Path, PathBuf};

    // The path-taking forms the tests use; the engine itself always holds a [`Dir`].

    fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
        write_atomic_in(&Dir::open(dir)?, name, bytes)
    }

    fn fsync_dir(path: &Path) -> io::Result<()> {
        Dir::open(path)?.sync()
    }

    impl AtomicWriter {
        fn create(dir: &Path, name: &str) -> io::Result<Self> {
            Self::create_in(&Dir::open(dir)?, name)
        }

        fn temp_path(&self) -> PathBuf {
            self.names.dir.child_path(&self.names.temp)
        }
    }

    /// The directory and name of a file path.
    fn split(path: &Path) -> io::Result<(Dir, &str)> {
        let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} has no file name", path.display()),
            )
        })?;
        let parent = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        Ok((Dir::open(parent)?, name))
    }

    fn safe_unlink(path: &Path) -> io::Result<()> {
        let (dir, name) = split(path)?;
        safe_unlink_in(&dir, name)
    }

    fn secure_erase(path: &Path) -> io::Result<()> {
        let (dir, name) = split(path)?;
        secure_erase_in(&dir, name)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn write_atomic_creates_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "config", b"one").unwrap();
        assert_eq!(std::fs::read(dir.path().join("config")).unwrap(), b"one");
        write_atomic(dir.path(), "config", b"two, longer").unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("config")).unwrap(),
            b"two, longer"
        );
        assert_eq!(names(dir.path()), vec!["config"]);
    }

    #[test]
    fn temporary_files_follow_borgs_naming() {
        let dir = tempfile::tempdir().unwrap();
        let writer = AtomicWriter::create(dir.path(), "nonce").unwrap();
        let temp = writer
            .temp_path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            temp.starts_with("nonce-")
                && temp.ends_with(".tmp")
                && temp.len() == "nonce-".len() + 8 + 4,
            "{temp}"
        );
        let other = AtomicWriter::create(dir.path(), "nonce").unwrap();
        assert_ne!(writer.temp_path(), other.temp_path());
    }

    #[test]
    fn dropping_an_uncommitted_writer_removes_the_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.5"), b"old").unwrap();
        {
            let mut writer = AtomicWriter::create(dir.path(), "index.5").unwrap();
            writer.write_all(&vec![1u8; 1 << 20]).unwrap();
        }
        assert_eq!(names(dir.path()), vec!["index.5"]);
        assert_eq!(std::fs::read(dir.path().join("index.5")).unwrap(), b"old");
    }

    #[test]
    fn finish_defers_the_rename_and_drop_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = AtomicWriter::create(dir.path(), "integrity.3").unwrap();
        a.write_all(b"integrity").unwrap();
        let mut b = AtomicWriter::create(dir.path(), "hints.3").unwrap();
        b.write_all(b"hints").unwrap();
        let pending_a = a.finish().unwrap();
        let pending_b = b.finish().unwrap();
        assert_eq!(names(dir.path()).len(), 2);
        assert!(!dir.path().join("integrity.3").exists());
        pending_a.rename().unwrap();
        fsync_dir(dir.path()).unwrap();
        drop(pending_b);
        assert_eq!(names(dir.path()), vec!["integrity.3"]);
    }

    #[test]
    fn large_streamed_content_arrives_intact() {
        let dir = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut writer = AtomicWriter::create(dir.path(), "index.9").unwrap();
        for chunk in content.chunks(40) {
            writer.write_all(chunk).unwrap();
        }
        writer.commit().unwrap();
        assert_eq!(std::fs::read(dir.path().join("index.9")).unwrap(), content);
    }

    #[test]
    fn rejects_names_that_are_not_plain() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["", ".", "..", "a/b", "a\0b"] {
            assert!(AtomicWriter::create(dir.path(), name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn files_are_created_with_0666_minus_umask() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "f", b"x").unwrap();
        let mode = std::fs::metadata(dir.path().join("f"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        let probe = dir.path().join("probe");
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o666)
            .open(&probe)
            .unwrap();
        let expected = std::fs::metadata(&probe).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, expected);
        assert_eq!(mode & !0o666, 0);
    }

    #[test]
    fn fails_cleanly_in_a_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(write_atomic(&dir.path().join("missing"), "config", b"x").is_err());
        assert!(fsync_dir(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn safe_unlink_removes_and_reports_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment");
        std::fs::write(&path, b"data").unwrap();
        safe_unlink(&path).unwrap();
        assert!(!path.exists());
        assert_eq!(
            safe_unlink(&path).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn secure_erase_overwrites_a_single_link_file_and_unlinks_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.old");
        std::fs::write(&path, vec![b'k'; 200_000]).unwrap();
        let keep = File::open(&path).unwrap();
        secure_erase(&path).unwrap();
        assert!(!path.exists());
        let mut content = Vec::new();
        (&keep).read_to_end(&mut content).unwrap();
        assert_eq!(content.len(), 200_000);
        assert!(
            content.iter().filter(|&&b| b == b'k').count() < 5_000,
            "content was overwritten"
        );
    }

    #[test]
    fn secure_erase_spares_other_hard_links() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.old");
        let other = dir.path().join("config");
        std::fs::write(&path, b"secret key").unwrap();
        std::fs::hard_link(&path, &other).unwrap();
        secure_erase(&path).unwrap();
        assert!(!path.exists());
        assert_eq!(std::fs::read(&other).unwrap(), b"secret key");
    }

    #[test]
    fn secure_erase_refuses_a_symlink_and_leaves_its_target_alone() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("precious");
        std::fs::write(&target, b"do not overwrite").unwrap();
        let link = dir.path().join("config.old");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let error = secure_erase(&link).unwrap_err();
        assert!(super::super::dir::is_symlink_refusal(&error), "{error}");
        assert_eq!(std::fs::read(&target).unwrap(), b"do not overwrite");
        // A symlink is unlinked as itself by safe_unlink, never through.
        safe_unlink(&link).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"do not overwrite");
    }
}
