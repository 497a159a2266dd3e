//! Reading one repository for `status`, as a bystander: read-only opens, no lock, nothing
//! written, no symlink followed (every open is an `openat` below the repository's directory
//! handle with `O_NOFOLLOW`), bounded reads, and no file trusted to stay put.
//!
//! A backup may be running while we read: a segment being appended is simply not committed
//! yet, and a file that vanishes (compaction deleting a segment, a commit replacing the hints)
//! makes us read the repository again, up to [`ATTEMPTS`] times. What the files mean is decided
//! in [`super::facts`].

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};

use super::facts::{self, Commit, EntryRole, HintsFigures, ListedSegment, LockState, SegmentCheck};
use crate::common::text::plain_io_error;
use crate::engine::borg1::lock::{LockIdentity, RosterData};
use crate::engine::borg1::repository::config::{ConfigFile, RepositoryConfig};
use crate::engine::borg1::repository::segment::is_committed_file;

/// Larger `config` files are not read (borg's are a few kilobytes, the key included).
pub(crate) const MAX_CONFIG_SIZE: u64 = 1 << 20;
/// Larger hints files are not read: their shadow index would cost several times this in
/// memory. Only append-only repositories with millions of deleted objects get there.
pub(crate) const MAX_HINTS_SIZE: u64 = 64 << 20;
/// borg's roster holds a few holders; this is far beyond any real one.
const MAX_ROSTER_SIZE: u64 = 1 << 20;
/// borg's layout is three levels deep (`data/<dir>/<segment>`); deeper trees are not counted.
const MAX_REPOSITORY_DEPTH: usize = 8;
/// How often a repository that changed under us is read again.
pub(crate) const ATTEMPTS: usize = 3;

/// What the files of one repository say, before any policy is considered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryFacts {
    pub size_bytes: u64,
    /// The `[repository]` settings; `None` when they are invalid (a problem says why).
    pub settings: Option<RepositoryConfig>,
    pub segments: Option<u64>,
    pub commit: Option<Commit>,
    pub hints: HintsFigures,
    pub lock: LockState,
    pub problems: Vec<String>,
}

/// Reads the repository whose directory is `dir` and whose `config` held `config` (or could
/// not be parsed, with this message). `alive` says whether a lock holder runs.
pub(crate) fn read_repository(
    dir: &mut Dir,
    config: Result<&ConfigFile, &str>,
    alive: &dyn Fn(&LockIdentity) -> Option<bool>,
) -> RepositoryFacts {
    let mut attempt = 1;
    loop {
        let (facts, raced) = read_once(dir, config, alive);
        if !raced || attempt == ATTEMPTS {
            return facts;
        }
        attempt += 1;
    }
}

fn read_once(
    dir: &mut Dir,
    config: Result<&ConfigFile, &str>,
    alive: &dyn Fn(&LockIdentity) -> Option<bool>,
) -> (RepositoryFacts, bool) {
    let mut listing = Listing::default();
    match fstat(dir.as_fd()) {
        Ok(stat) => listing.count(&stat),
        Err(errno) => listing.problem(format!("cannot stat the directory: {}", describe(errno))),
    }
    list_tree(dir, &mut Vec::new(), &mut listing);
    let mut facts = RepositoryFacts {
        size_bytes: listing.usage,
        settings: None,
        segments: None,
        commit: None,
        hints: HintsFigures::default(),
        lock: LockState::free(),
        problems: Vec::new(),
    };
    let settings = match config {
        Ok(config) => {
            RepositoryConfig::from_config(config, None).map_err(|error| format!("config: {error}"))
        }
        Err(message) => Err(format!("config: {message}")),
    };
    match settings {
        Ok(settings) => {
            let segments =
                facts::segments_newest_first(&listing.segments, settings.segments_per_dir.get());
            facts.segments = Some(facts::segment_count(&segments));
            match scan_commits(dir, &segments) {
                Ok(scan) => {
                    listing.raced |= scan.raced;
                    facts.commit = scan.commit;
                }
                Err(message) => listing.problem(message),
            }
            if let Some(commit) = facts.commit {
                let available = std::mem::take(&mut listing.hints);
                facts.hints = read_hints(dir, &available, commit.transaction_id, &mut listing);
            }
            facts.settings = Some(settings);
        }
        Err(message) => listing.problem(message),
    }
    facts.lock = read_lock(dir, &listing, alive);
    facts.problems = std::mem::take(&mut listing.problems);
    (facts, listing.raced)
}

/// What a walk of the repository's tree found.
#[derive(Debug, Default)]
struct Listing {
    usage: u64,
    hints: Vec<u32>,
    segments: Vec<ListedSegment>,
    exclusive_names: Vec<String>,
    roster: bool,
    problems: Vec<String>,
    /// Inodes with more than one link already counted, as `du` counts them once.
    linked: HashSet<(u64, u64)>,
    /// Something vanished between listing and opening.
    raced: bool,
}

impl Listing {
    fn count(&mut self, stat: &FileStat) {
        let is_dir = stat.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits();
        if !is_dir && stat.st_nlink > 1 && !self.linked.insert((stat.st_dev, stat.st_ino)) {
            return;
        }
        let blocks = u64::try_from(stat.st_blocks).unwrap_or(0);
        self.usage = self.usage.saturating_add(blocks.saturating_mul(512));
    }

    fn problem(&mut self, message: String) {
        self.problems.push(message);
    }
}

/// Walks the tree below `dir` (whose relative path is `components`), counting every entry
/// and noting the ones [`facts::entry_role`] names.
fn list_tree(dir: &mut Dir, components: &mut Vec<String>, listing: &mut Listing) {
    let mut entries = match list(dir) {
        Ok(entries) => entries,
        Err(errno) => {
            listing.problem(format!(
                "cannot list {}: {}",
                relative(components),
                describe(errno)
            ));
            return;
        }
    };
    // In name order, so that problems are reported the same way every time.
    entries.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
    for (name, _) in entries {
        let stat = match fstatat(dir.as_fd(), name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            // Gone since the directory was listed: a commit replaced it (hints, index,
            // integrity) or compaction removed it. The listing may now lack the file that
            // replaced it, so read again.
            Err(Errno::ENOENT) => {
                listing.raced = true;
                continue;
            }
            Err(errno) => {
                components.push(name.to_string_lossy().into_owned());
                listing.problem(format!(
                    "cannot stat {}: {}",
                    relative(components),
                    describe(errno)
                ));
                components.pop();
                continue;
            }
        };
        listing.count(&stat);
        components.push(name.to_string_lossy().into_owned());
        let kind = stat.st_mode & SFlag::S_IFMT.bits();
        let is_file = kind == SFlag::S_IFREG.bits();
        let role = {
            let parts: Vec<&str> = components.iter().map(String::as_str).collect();
            match facts::entry_role(&parts) {
                EntryRole::ExclusiveHolder(holder) => {
                    listing.exclusive_names.push(holder.to_owned());
                    None
                }
                role => Some(role),
            }
        };
        match role {
            Some(EntryRole::Segment { dir, segment }) if is_file => {
                listing.segments.push(ListedSegment {
                    dir,
                    segment,
                    len: u64::try_from(stat.st_size).unwrap_or(0),
                });
            }
            Some(EntryRole::Hints(transaction)) if is_file => listing.hints.push(transaction),
            Some(EntryRole::Roster) if is_file => listing.roster = true,
            // borg never makes one; whoever did, status does not go where it points.
            _ if kind == SFlag::S_IFLNK.bits() => listing.problem(format!(
                "{} is a symlink; status does not follow it",
                relative(components)
            )),
            _ => {}
        }
        if kind == SFlag::S_IFDIR.bits() {
            if components.len() >= MAX_REPOSITORY_DEPTH {
                listing.problem(format!(
                    "{} is more than {MAX_REPOSITORY_DEPTH} levels deep; its contents are not counted",
                    relative(components)
                ));
            } else {
                match open_dir(dir, &name) {
                    Ok(mut child) => list_tree(&mut child, components, listing),
                    Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => listing.raced = true,
                    Err(errno) => listing.problem(format!(
                        "cannot open {}: {}",
                        relative(components),
                        describe(errno)
                    )),
                }
            }
        }
        components.pop();
    }
}

/// borg's commit test on the segments, newest first, each opened below `data/` without
/// following a symlink.
fn scan_commits(
    repository: &Dir,
    newest_first: &[ListedSegment],
) -> Result<facts::CommitScan, String> {
    if newest_first.is_empty() {
        return Ok(facts::CommitScan {
            commit: None,
            raced: false,
        });
    }
    let data = match open_dir(repository, c"data") {
        Ok(data) => data,
        Err(Errno::ENOENT) => {
            return Ok(facts::CommitScan {
                commit: None,
                raced: true,
            });
        }
        Err(errno) => return Err(format!("cannot open data: {}", describe(errno))),
    };
    let mut open_segment_dir: Option<(u32, Dir)> = None;
    facts::newest_commit(newest_first, |listed| {
        let (dir_number, segment) = (listed.dir, listed.segment);
        let place = format!("data/{dir_number}/{segment}");
        if open_segment_dir
            .as_ref()
            .is_none_or(|(n, _)| *n != dir_number)
        {
            match open_dir(&data, &number_name(dir_number)) {
                Ok(dir) => open_segment_dir = Some((dir_number, dir)),
                Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => {
                    return Ok(SegmentCheck::Vanished);
                }
                Err(errno) => {
                    return Err(format!(
                        "cannot open data/{dir_number}: {}",
                        describe(errno)
                    ));
                }
            }
        }
        let Some((_, segment_dir)) = &open_segment_dir else {
            return Ok(SegmentCheck::Vanished);
        };
        match open_file(segment_dir, &number_name(segment)) {
            Ok(Some(file)) => check_segment(&file)
                .map_err(|error| format!("cannot read {place}: {}", plain_io_error(&error))),
            // Replaced by something that is not a file: not a segment borg would read.
            Ok(None) => Ok(SegmentCheck::NotCommitted),
            Err(Errno::ENOENT | Errno::ELOOP) => Ok(SegmentCheck::Vanished),
            Err(errno) => Err(format!("cannot open {place}: {}", describe(errno))),
        }
    })
}

/// borg's commit test on an open segment file; the time of a committed one is its mtime.
pub(crate) fn check_segment(file: &File) -> io::Result<SegmentCheck> {
    if !is_committed_file(file)? {
        return Ok(SegmentCheck::NotCommitted);
    }
    Ok(SegmentCheck::Committed(file.metadata()?.modified()?))
}

/// Quota use and freeable space from the hints of `transaction_id`.
fn read_hints(
    repository: &Dir,
    available: &[u32],
    transaction_id: u32,
    listing: &mut Listing,
) -> HintsFigures {
    let Some(number) = facts::hints_for(available, transaction_id) else {
        listing.problem(format!(
            "no hints file for transaction {transaction_id}; quota use and compactable space unknown"
        ));
        return HintsFigures::default();
    };
    let name = format!("hints.{number}");
    let bytes = match read_file(repository, &name, MAX_HINTS_SIZE) {
        Ok(bytes) => bytes,
        Err(ReadError::Vanished) => {
            listing.raced = true;
            return HintsFigures::default();
        }
        Err(error) => {
            listing.problem(format!("{name}: {error}"));
            return HintsFigures::default();
        }
    };
    match facts::hints_figures(&bytes) {
        Ok(figures) => figures,
        Err(error) => {
            listing.problem(format!("{name}: {error}"));
            HintsFigures::default()
        }
    }
}

/// The holders named by `lock.exclusive/` (listed in the walk) and `lock.roster`.
fn read_lock(
    repository: &Dir,
    listing: &Listing,
    alive: &dyn Fn(&LockIdentity) -> Option<bool>,
) -> LockState {
    // A roster being rewritten in place can be empty or half written; borg reads that as
    // `{}`, and so do we.
    let roster = listing
        .roster
        .then(|| read_file(repository, "lock.roster", MAX_ROSTER_SIZE).ok())
        .flatten()
        .and_then(|bytes| RosterData::parse(&String::from_utf8_lossy(&bytes)));
    let names: Vec<&str> = listing.exclusive_names.iter().map(String::as_str).collect();
    facts::lock_state(&names, roster.as_ref(), alive)
}

/// Why a small file was not read.
#[derive(Debug)]
pub(crate) enum ReadError {
    Vanished,
    NotAFile,
    TooLarge { limit: u64 },
    Failed(io::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Vanished => f.write_str("vanished while being read"),
            ReadError::NotAFile => f.write_str("not a regular file"),
            ReadError::TooLarge { limit } => {
                write!(f, "larger than the {limit} bytes status reads")
            }
            ReadError::Failed(error) => f.write_str(&plain_io_error(error)),
        }
    }
}

/// Reads the regular file `name` below `dir`, at most `limit` bytes, without following a
/// symlink and without blocking on a FIFO.
pub(crate) fn read_file(dir: &impl AsFd, name: &str, limit: u64) -> Result<Vec<u8>, ReadError> {
    let name = CString::new(name).map_err(|_| ReadError::NotAFile)?;
    let file = match open_file(dir, &name) {
        Ok(Some(file)) => file,
        Ok(None) | Err(Errno::ELOOP) => return Err(ReadError::NotAFile),
        Err(Errno::ENOENT) => return Err(ReadError::Vanished),
        Err(errno) => return Err(ReadError::Failed(errno.into())),
    };
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Failed)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge { limit });
    }
    Ok(bytes)
}

/// The entries of a directory (without `.` and `..`), with the type `readdir` reports.
pub(crate) fn list(dir: &mut Dir) -> Result<Vec<(CString, Option<Type>)>, Errno> {
    let mut entries = Vec::new();
    for entry in dir.iter() {
        let entry = entry?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            entries.push((name.to_owned(), entry.file_type()));
        }
    }
    Ok(entries)
}

/// Opens the directory `name` below `parent`; a symlink is refused (`ELOOP`).
pub(crate) fn open_dir(parent: &impl AsFd, name: &CStr) -> Result<Dir, Errno> {
    Dir::openat(
        parent.as_fd(),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Opens `name` below `parent` for reading if it is a regular file (`None` otherwise): a
/// symlink is refused (`ELOOP`), and a FIFO does not block the open.
pub(crate) fn open_file(parent: &impl AsFd, name: &CStr) -> Result<Option<File>, Errno> {
    let fd = nix::fcntl::openat(
        parent.as_fd(),
        name,
        OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let stat = fstat(&fd)?;
    if stat.st_mode & SFlag::S_IFMT.bits() != SFlag::S_IFREG.bits() {
        return Ok(None);
    }
    Ok(Some(File::from(fd)))
}

/// A segment or directory number as borg names it.
fn number_name(number: u32) -> CString {
    // Decimal digits never contain a NUL byte.
    CString::new(number.to_string()).unwrap_or_default()
}

fn relative(components: &[String]) -> String {
    if components.is_empty() {
        ".".to_owned()
    } else {
        components.join("/")
    }
}

/// An errno as the C library says it, without Rust's `(os error N)`.
pub(crate) fn describe(errno: Errno) -> String {
    plain_io_error(&io::Error::from(errno))
}

#[cfg(test)]
mod tests;
