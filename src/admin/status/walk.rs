//! Finding repositories for `status`: a depth-first walk below a root, through directory
//! handles, that never follows a symlink and never descends into a repository.
//!
//! A repository is a directory whose `config` has a `[repository]` section. A directory whose
//! `config` cannot be parsed at all but that has a `data` directory beside it is taken for a
//! damaged repository (reported, with the problem), so that a broken config never makes a
//! repository silently disappear from the report. Directories are visited in byte order of
//! their names, so the output order is stable.

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag, fstatat};

use super::read::{self, MAX_CONFIG_SIZE, ReadError};
use crate::engine::repository::config::{ConfigFile, REPOSITORY_SECTION};

/// How many directory levels below a root are searched.
pub const MAX_DEPTH: usize = 16;

/// What [`discover`] calls for each repository: its path, its open directory, and its parsed
/// config (or why that could not be parsed).
pub type OnRepository<'a, E> =
    dyn FnMut(&Path, &mut Dir, Result<&ConfigFile, &str>) -> Result<(), E> + 'a;

/// A directory that could not be searched, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsearched {
    pub path: PathBuf,
    pub reason: String,
}

/// What a directory turned out to be.
enum Verdict {
    Repository(Result<ConfigFile, String>),
    NotRepository,
    /// Its `config` could not be read; it is searched as a plain directory.
    Unreadable(String),
}

/// A directory waiting to be searched: its parent's handle and its own name.
struct Pending {
    parent: Rc<Dir>,
    name: CString,
    path: PathBuf,
    depth: usize,
}

/// Calls `found` for every repository below `root` (and for `root` itself if it is one), and
/// `unsearched` for every directory that could not be searched. A directory or file that
/// vanishes during the walk is skipped. Stops at the first error `found` returns.
pub fn discover<E>(
    root: &Path,
    found: &mut OnRepository<'_, E>,
    unsearched: &mut dyn FnMut(Unsearched),
) -> Result<(), E> {
    let root_dir = match Dir::open(
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(dir) => dir,
        Err(Errno::ENOENT) => return Ok(()),
        Err(errno) => {
            unsearched(Unsearched {
                path: root.to_path_buf(),
                reason: read::describe(errno),
            });
            return Ok(());
        }
    };
    let mut stack = Vec::new();
    visit(
        root_dir,
        root.to_path_buf(),
        0,
        &mut stack,
        found,
        unsearched,
    )?;
    while let Some(pending) = stack.pop() {
        match read::open_dir(&*pending.parent, &pending.name) {
            Ok(dir) => visit(
                dir,
                pending.path,
                pending.depth,
                &mut stack,
                found,
                unsearched,
            )?,
            // Gone, or replaced by a file or a symlink since it was listed.
            Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => {}
            Err(errno) => unsearched(Unsearched {
                path: pending.path,
                reason: read::describe(errno),
            }),
        }
    }
    Ok(())
}

/// Reports `dir` if it is a repository, else queues its subdirectories.
fn visit<E>(
    mut dir: Dir,
    path: PathBuf,
    depth: usize,
    stack: &mut Vec<Pending>,
    found: &mut OnRepository<'_, E>,
    unsearched: &mut dyn FnMut(Unsearched),
) -> Result<(), E> {
    let mut entries = match read::list(&mut dir) {
        Ok(entries) => entries,
        Err(Errno::ENOENT) => return Ok(()),
        Err(errno) => {
            unsearched(Unsearched {
                path,
                reason: read::describe(errno),
            });
            return Ok(());
        }
    };
    let has = |wanted: &CStr| entries.iter().any(|(name, _)| name.as_c_str() == wanted);
    if has(c"config") {
        match classify(&dir, has(c"data")) {
            Verdict::Repository(config) => {
                return found(&path, &mut dir, config.as_ref().map_err(String::as_str));
            }
            Verdict::NotRepository => {}
            Verdict::Unreadable(reason) => unsearched(Unsearched {
                path: path.join("config"),
                reason,
            }),
        }
    }
    entries.retain(|(name, kind)| is_directory(&dir, name, *kind));
    if entries.is_empty() {
        return Ok(());
    }
    if depth >= MAX_DEPTH {
        unsearched(Unsearched {
            path,
            reason: format!("more than {MAX_DEPTH} levels below the root; not searched"),
        });
        return Ok(());
    }
    entries.sort_by(|(a, _), (b, _)| a.as_bytes().cmp(b.as_bytes()));
    let parent = Rc::new(dir);
    for (name, _) in entries.into_iter().rev() {
        let child = path.join(OsStr::from_bytes(name.as_bytes()));
        stack.push(Pending {
            parent: Rc::clone(&parent),
            name,
            path: child,
            depth: depth + 1,
        });
    }
    Ok(())
}

/// Whether the directory holding a `config` is a repository.
fn classify(dir: &Dir, has_data: bool) -> Verdict {
    let bytes = match read::read_file(dir, "config", MAX_CONFIG_SIZE) {
        Ok(bytes) => bytes,
        Err(ReadError::Vanished | ReadError::NotAFile) => return Verdict::NotRepository,
        Err(error) => return Verdict::Unreadable(error.to_string()),
    };
    match ConfigFile::parse_bytes(&bytes) {
        Ok(config) if config.has_section(REPOSITORY_SECTION) => Verdict::Repository(Ok(config)),
        Ok(_) => Verdict::NotRepository,
        Err(error) if has_data => Verdict::Repository(Err(error.to_string())),
        Err(_) => Verdict::NotRepository,
    }
}

/// A directory, not a symlink to one; `readdir`'s type when it has one, else `lstat`.
fn is_directory(parent: &impl AsFd, name: &CStr, kind: Option<Type>) -> bool {
    match kind {
        Some(kind) => kind == Type::Directory,
        None => fstatat(parent.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)
            .is_ok_and(|stat| stat.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits()),
    }
}

#[cfg(test)]
mod tests;
