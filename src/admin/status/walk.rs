//! Finding repositories for `status`: a walk below the roots, through directory handles, that
//! never follows a symlink and never descends into a repository; each repository found is
//! handed to the caller's reader on the spot.
//!
//! A repository is a directory whose `config` has a `[repository]` section. A directory whose
//! `config` cannot be parsed at all but that has a `data` directory beside it is taken for a
//! damaged repository (reported, with the problem), so that a broken config never makes a
//! repository silently disappear from the report.
//!
//! Why threads: with a cold cache every directory listed, every inode looked at and every
//! file read is a disk read, about ten per repository, and one at a time they take ~10 ms
//! per repository on an SSD-backed VM (100 s for 10,000). [`THREADS`] walkers share one stack
//! of directories to search, so the disk sees that many requests at once. The results are
//! sorted by path, so the output does not depend on who finished first.

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag, fstatat};

use super::read::{self, MAX_CONFIG_SIZE, ReadError};
use crate::engine::borg1::repository::config::{ConfigFile, REPOSITORY_SECTION};

/// How many directory levels below a root are searched.
pub(crate) const MAX_DEPTH: usize = 16;
/// Walkers reading at once: enough to keep an SSD or a RAID busy with a cold cache, few
/// enough to cost nothing with a warm one.
pub(crate) const THREADS: usize = 16;

/// What [`discover`] calls for each repository, in whichever walker found it: its path, its
/// open directory, and its parsed config (or why that could not be parsed).
pub(crate) type OnRepository<'a, T> =
    dyn Fn(&Path, &mut Dir, Result<&ConfigFile, &str>) -> T + Sync + 'a;

/// A directory that could not be searched, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Unsearched {
    pub path: PathBuf,
    pub reason: String,
}

/// Everything a walk found, each list sorted by path.
#[derive(Debug)]
pub(crate) struct Discovery<T> {
    pub repositories: Vec<(PathBuf, T)>,
    pub unsearched: Vec<Unsearched>,
}

/// Walks below every root (each one a repository itself, possibly) with `threads` walkers,
/// calling `found` for every repository. A directory or file that vanishes during the walk is
/// skipped; a root that does not exist is no error.
pub(crate) fn discover<T: Send>(
    roots: &[PathBuf],
    threads: usize,
    found: &OnRepository<'_, T>,
) -> Discovery<T> {
    let queue = Queue {
        state: Mutex::new(QueueState {
            pending: roots
                .iter()
                .rev()
                .map(|root| Pending {
                    parent: None,
                    path: root.clone(),
                    depth: 0,
                })
                .collect(),
            busy: 0,
        }),
        wake: Condvar::new(),
    };
    let results = Mutex::new(Discovery {
        repositories: Vec::new(),
        unsearched: Vec::new(),
    });
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| walker(&queue, found, &results));
        }
    });
    let mut discovery = results.into_inner().unwrap_or_else(PoisonError::into_inner);
    discovery.repositories.sort_by(|(a, _), (b, _)| a.cmp(b));
    discovery.unsearched.sort();
    discovery
}

/// A directory waiting to be searched: a handle of its parent (none for a root) and its path.
struct Pending {
    parent: Option<Arc<OwnedFd>>,
    path: PathBuf,
    depth: usize,
}

struct QueueState {
    pending: Vec<Pending>,
    /// Walkers searching a directory, which may add more.
    busy: usize,
}

struct Queue {
    state: Mutex<QueueState>,
    wake: Condvar,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next directory to search, or `None` when nothing is left and nobody can add more.
    fn next(&self) -> Option<Pending> {
        let mut state = self.lock();
        loop {
            if let Some(pending) = state.pending.pop() {
                state.busy += 1;
                return Some(pending);
            }
            if state.busy == 0 {
                return None;
            }
            state = self
                .wake
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Marks the end of one search, even if the search panicked, so the others never wait for it.
struct Busy<'q> {
    queue: &'q Queue,
    found: Vec<Pending>,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let mut state = self.queue.lock();
        // Deepest last, so that the stack pops them in name order (depth first).
        state.pending.extend(self.found.drain(..).rev());
        state.busy -= 1;
        drop(state);
        self.queue.wake.notify_all();
    }
}

fn walker<T: Send>(queue: &Queue, found: &OnRepository<'_, T>, results: &Mutex<Discovery<T>>) {
    while let Some(pending) = queue.next() {
        let mut busy = Busy {
            queue,
            found: Vec::new(),
        };
        let lock_results = || results.lock().unwrap_or_else(PoisonError::into_inner);
        match search(pending, found, &mut busy.found) {
            Searched::Repository(path, value) => lock_results().repositories.push((path, value)),
            Searched::Unsearched(place) => lock_results().unsearched.push(place),
            Searched::Directory => {}
        }
    }
}

/// What searching one directory gave.
enum Searched<T> {
    Repository(PathBuf, T),
    /// A plain directory: its subdirectories were queued.
    Directory,
    Unsearched(Unsearched),
}

/// Opens and lists one directory; reads it if it is a repository, else queues its
/// subdirectories into `subdirectories` (in name order).
fn search<T>(
    pending: Pending,
    found: &OnRepository<'_, T>,
    subdirectories: &mut Vec<Pending>,
) -> Searched<T> {
    let unsearched =
        |path: PathBuf, reason: String| Searched::Unsearched(Unsearched { path, reason });
    let opened = match &pending.parent {
        Some(parent) => {
            let child = pending
                .path
                .file_name()
                .map(OsStr::as_bytes)
                .unwrap_or_default();
            CString::new(child)
                .map_err(|_| Errno::EINVAL)
                .and_then(|child| read::open_dir(parent, &child))
        }
        // Roots are resolved before the walk; a root that is a symlink now changed since.
        None => Dir::open(
            pending.path.as_path(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ),
    };
    let mut dir = match opened {
        Ok(dir) => dir,
        // Gone, or replaced by a file or a symlink since it was listed.
        Err(Errno::ENOENT) => return Searched::Directory,
        Err(Errno::ENOTDIR | Errno::ELOOP) if pending.parent.is_some() => {
            return Searched::Directory;
        }
        Err(errno) => return unsearched(pending.path, read::describe(errno)),
    };
    let mut entries = match read::list(&mut dir) {
        Ok(entries) => entries,
        Err(Errno::ENOENT) => return Searched::Directory,
        Err(errno) => return unsearched(pending.path, read::describe(errno)),
    };
    let has = |wanted: &CStr| entries.iter().any(|(name, _)| name.as_c_str() == wanted);
    let mut config_trouble = None;
    if has(c"config") {
        match classify(&dir, has(c"data")) {
            Verdict::Repository(config) => {
                let value = found(
                    &pending.path,
                    &mut dir,
                    config.as_ref().map_err(String::as_str),
                );
                return Searched::Repository(pending.path, value);
            }
            Verdict::NotRepository => {}
            Verdict::Unreadable(reason) => config_trouble = Some(reason),
        }
    }
    entries.retain(|(name, kind)| is_directory(&dir, name, *kind));
    if let Some(reason) = config_trouble {
        // Searched below all the same, but it may be a repository nobody can vouch for.
        if let Ok(children) = queue_children(&dir, &pending, entries) {
            subdirectories.extend(children);
        }
        return unsearched(pending.path.join("config"), reason);
    }
    if entries.is_empty() {
        return Searched::Directory;
    }
    if pending.depth >= MAX_DEPTH {
        return unsearched(
            pending.path,
            format!("more than {MAX_DEPTH} levels below the root; not searched"),
        );
    }
    match queue_children(&dir, &pending, entries) {
        Ok(children) => {
            subdirectories.extend(children);
            Searched::Directory
        }
        Err(errno) => unsearched(pending.path, read::describe(errno)),
    }
}

/// The subdirectories of `dir` as pending searches, in name order, sharing one handle of it.
fn queue_children(
    dir: &Dir,
    pending: &Pending,
    mut entries: Vec<(CString, Option<Type>)>,
) -> Result<Vec<Pending>, Errno> {
    if entries.is_empty() || pending.depth >= MAX_DEPTH {
        return Ok(Vec::new());
    }
    entries.sort_by(|(a, _), (b, _)| a.as_bytes().cmp(b.as_bytes()));
    // A `Dir` cannot be shared between threads; a duplicate of its descriptor can.
    let parent = Arc::new(
        dir.as_fd()
            .try_clone_to_owned()
            .map_err(|error| Errno::from_raw(error.raw_os_error().unwrap_or(nix::libc::EMFILE)))?,
    );
    Ok(entries
        .into_iter()
        .map(|(name, _)| Pending {
            parent: Some(Arc::clone(&parent)),
            path: pending.path.join(OsStr::from_bytes(name.as_bytes())),
            depth: pending.depth + 1,
        })
        .collect())
}

/// What a directory holding a `config` turned out to be.
enum Verdict {
    Repository(Result<ConfigFile, String>),
    NotRepository,
    /// Its `config` could not be read; it is searched as a plain directory.
    Unreadable(String),
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
