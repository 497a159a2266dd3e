//! The key quota: one storage limit across every repository a key can reach (the policy's
//! `key_quota`), enforced at `put` through a ledger that all of the key's sessions share.
//!
//! # A ledger, not a scan
//!
//! The limit could be checked by adding up what each reachable repository records about
//! itself (its hints). That sees only committed transactions: two sessions backing up into
//! two repositories at once would each see the other's repository as it was before, and
//! together commit up to twice the remaining quota. It also costs a walk over the
//! restricted directories at every check. The ledger sees transactions in flight, costs one
//! small locked file update per reservation (not per `put`), and is the one place an
//! administrator (or `borg-gate status`) reads to see what a key uses.
//!
//! # The ledger file
//!
//! `key_quota_ledger` names a JSON file owned by the engine's account. It is replaced
//! atomically (temporary file, fsync, rename, fsync of the directory) under an exclusive
//! `flock` of `<ledger>.lock`, which nobody holds for longer than one read-modify-write:
//!
//! ```json
//! {"version":1,"limit":50000000000,
//!  "repositories":{"/srv/backup/alice/laptop":{"committed":123456789}},
//!  "sessions":[{"pid":4242,"start":98765,"repository":"/srv/backup/alice/laptop","claim":150000000}]}
//! ```
//!
//! * `committed`: what the repository used after its last commit (or at the start of its
//!   last write transaction) through borg-gate, counted as the repository quota counts it:
//!   its segment files in whole file-system blocks, plus 40 bytes per object for the index.
//! * `sessions`: reservations of sessions writing now. A session claims what its repository
//!   will use if it commits, plus some room ahead (half of what is left, at most 256 MiB), so
//!   that it comes back to the ledger once per reservation, not once per `put`. A claim
//!   whose process is gone (its pid no longer runs, or runs a process started at another
//!   time) is dropped by the next writer.
//! * `limit`: the key quota of the session that wrote the file last (for readers).
//!
//! A repository uses the larger of its `committed` bytes and a live claim on it; the key uses
//! the sum over its repositories. A `put` that takes that sum past the limit fails with
//! borg's `StorageQuotaExceeded`, and its transaction can no longer commit, exactly like the
//! repository quota. A commit raises `committed` to the claim before the commit entry is
//! written and sets it to what the repository uses afterwards (compaction may have freed
//! space); a crash in between over-counts until that repository's next commit, never
//! under-counts.
//!
//! When the file does not exist, the first session creates it by measuring the repositories
//! the key can reach: each `restrict_to_repositories` entry, and the repositories found under
//! each `restrict_to_paths` entry down to [`SEED_DEPTH`] levels, visiting at most
//! [`SEED_DIRECTORIES`] directories and following no symlink. Deleting the file makes the
//! next session count again (an administrator does that after deleting a repository by
//! hand; `borg delete` of a whole repository through borg-gate removes its entry itself).
//! The ledger belongs to one server: sessions on other machines sharing the file system
//! would not see each other's processes.
//!
//! # What `status` reports
//!
//! For a key with a key quota, the key quota is the limit that binds: `status` should show
//! the sum of `committed` against `limit` (and the live claims, as writes in progress), with
//! the repositories' individual `committed` bytes below it. A repository's own
//! `storage_quota`, when set, is reported per repository, against the same on-disk count.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::repository::dir::{Dir, Kind};
use super::repository::durable;
use super::repository::io::blocks_for;

/// The ledger format written and read.
pub(crate) const LEDGER_VERSION: u32 = 1;
/// The most room a session reserves ahead of what it uses.
pub(crate) const RESERVATION_AHEAD: u64 = 256 << 20;
/// How long a session waits for the ledger's lock before the write fails.
pub(crate) const LOCK_PATIENCE: Duration = Duration::from_secs(10);
/// How deep under each `restrict_to_paths` entry the first count looks for repositories.
pub(crate) const SEED_DEPTH: usize = 3;
/// How many directories the first count visits at most.
pub(crate) const SEED_DIRECTORIES: usize = 10_000;

/// The policy's key quota, as the engine gets it on its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyQuota {
    pub limit: u64,
    pub ledger: PathBuf,
}

/// A process, told apart from a later one with the same pid by its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionId {
    pub pid: u32,
    pub start: u64,
}

impl SessionId {
    /// This process.
    pub(crate) fn current() -> SessionId {
        let pid = std::process::id();
        SessionId {
            pid,
            start: process_start(pid).unwrap_or(0),
        }
    }

    /// Whether the process still runs (a pid reused by a newer process does not count).
    pub(crate) fn is_alive(self) -> bool {
        match process_start(self.pid) {
            Some(start) => start == self.start,
            None if Path::new("/proc/self/stat").exists() => false,
            // No /proc: the kernel can still say whether the pid runs.
            None => crate::engine::borg1::lock::identity::local_pid_alive(i64::from(self.pid)),
        }
    }
}

/// Field 22 of `/proc/<pid>/stat`: the start time in clock ticks since boot.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// The ledger file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Ledger {
    pub version: u32,
    #[serde(default)]
    pub limit: u64,
    #[serde(default)]
    pub repositories: BTreeMap<String, RepositoryUse>,
    #[serde(default)]
    pub sessions: Vec<Claim>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RepositoryUse {
    pub committed: u64,
}

/// A live session's reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Claim {
    pub pid: u32,
    pub start: u64,
    pub repository: String,
    pub claim: u64,
}

impl Claim {
    fn session(&self) -> SessionId {
        SessionId {
            pid: self.pid,
            start: self.start,
        }
    }
}

impl Ledger {
    pub(crate) fn new(limit: u64) -> Ledger {
        Ledger {
            version: LEDGER_VERSION,
            limit,
            ..Ledger::default()
        }
    }

    pub(crate) fn parse(bytes: &[u8]) -> Result<Ledger, String> {
        let ledger: Ledger = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if ledger.version != LEDGER_VERSION {
            return Err(format!(
                "ledger version {} is not the {LEDGER_VERSION} this borg-gate writes",
                ledger.version
            ));
        }
        Ok(ledger)
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// Drops the claims of processes that are gone.
    pub(crate) fn drop_dead(&mut self, alive: impl Fn(SessionId) -> bool) {
        self.sessions.retain(|claim| alive(claim.session()));
    }

    /// What `repository` uses by the ledger: the larger of its committed bytes and the live
    /// claims on it, `me`'s own claim left out.
    fn usage_of(&self, repository: &str, me: SessionId) -> u64 {
        let committed = self
            .repositories
            .get(repository)
            .map_or(0, |entry| entry.committed);
        self.sessions
            .iter()
            .filter(|claim| claim.repository == repository && claim.session() != me)
            .map(|claim| claim.claim)
            .fold(committed, u64::max)
    }

    /// What every repository but `repository` uses.
    pub(crate) fn total_except(&self, repository: &str, me: SessionId) -> u64 {
        let mut names: Vec<&str> = self.repositories.keys().map(String::as_str).collect();
        names.extend(self.sessions.iter().map(|c| c.repository.as_str()));
        names.sort_unstable();
        names.dedup();
        names
            .into_iter()
            .filter(|name| *name != repository)
            .map(|name| self.usage_of(name, me))
            .fold(0, u64::saturating_add)
    }

    /// What the key uses in all.
    #[cfg(test)]
    pub(crate) fn total(&self) -> u64 {
        self.total_except("", SessionId { pid: 0, start: 0 })
    }

    /// `me` will use `charged` in `repository` (which used `committed` when its transaction
    /// started): claims that plus room ahead, or reports the key's total if it is over `limit`.
    pub(crate) fn reserve(
        &mut self,
        me: SessionId,
        repository: &str,
        committed: u64,
        charged: u64,
        limit: u64,
    ) -> Result<u64, u64> {
        self.limit = limit;
        self.repositories
            .entry(repository.to_owned())
            .or_default()
            .committed = committed;
        let total = self.total_except(repository, me).saturating_add(charged);
        if total > limit {
            self.release(me);
            return Err(total);
        }
        let ahead = ((limit - total) / 2).min(RESERVATION_AHEAD);
        let claim = charged + ahead;
        self.release(me);
        self.sessions.push(Claim {
            pid: me.pid,
            start: me.start,
            repository: repository.to_owned(),
            claim,
        });
        Ok(claim)
    }

    /// A commit of `repository` is about to become durable: its committed bytes are at least
    /// what the session claimed.
    pub(crate) fn raise_committed(&mut self, me: SessionId, repository: &str, charged: u64) {
        let claimed = self
            .sessions
            .iter()
            .filter(|c| c.session() == me)
            .map(|c| c.claim)
            .max()
            .unwrap_or(0);
        let entry = self.repositories.entry(repository.to_owned()).or_default();
        entry.committed = entry.committed.max(charged).max(claimed);
    }

    /// The commit is durable: the repository uses `charged`, and `me` claims nothing more.
    pub(crate) fn record_commit(&mut self, me: SessionId, repository: &str, charged: u64) {
        self.repositories
            .entry(repository.to_owned())
            .or_default()
            .committed = charged;
        self.release(me);
    }

    pub(crate) fn release(&mut self, me: SessionId) {
        self.sessions.retain(|claim| claim.session() != me);
    }

    pub(crate) fn forget(&mut self, repository: &str) {
        self.repositories.remove(repository);
        self.sessions.retain(|claim| claim.repository != repository);
    }
}

/// Why a charge was not accepted.
#[derive(Debug)]
pub enum ChargeError {
    /// The key would use `total` bytes, more than its `limit`.
    Exceeded { limit: u64, total: u64 },
    /// The ledger could not be used (the write is refused: the quota cannot be checked).
    Ledger(io::Error),
}

/// Where the first count of a key's repositories looks.
#[derive(Debug, Clone, Default)]
pub struct SeedScope {
    pub restrict_to_paths: Vec<PathBuf>,
    pub restrict_to_repositories: Vec<PathBuf>,
}

/// One session's side of the key quota, for the repository it writes.
#[derive(Debug)]
pub struct KeyQuotaSession {
    quota: KeyQuota,
    repository: String,
    scope: SeedScope,
    me: SessionId,
    /// What this session has claimed in the ledger (0: nothing).
    reserved: u64,
}

impl KeyQuotaSession {
    pub fn new(quota: KeyQuota, repository: &Path, scope: SeedScope) -> KeyQuotaSession {
        KeyQuotaSession {
            quota,
            repository: repository.to_string_lossy().into_owned(),
            scope,
            me: SessionId::current(),
            reserved: 0,
        }
    }

    pub fn limit(&self) -> u64 {
        self.quota.limit
    }

    /// The repository will use `charged` bytes (it used `committed` when the transaction
    /// started). Without I/O while that stays within what this session already claimed.
    pub fn charge(&mut self, committed: u64, charged: u64) -> Result<(), ChargeError> {
        if charged <= self.reserved {
            return Ok(());
        }
        let (me, limit) = (self.me, self.quota.limit);
        let repository = self.repository.clone();
        let outcome = self
            .update(|ledger| ledger.reserve(me, &repository, committed, charged, limit))
            .map_err(ChargeError::Ledger)?;
        match outcome {
            Ok(claim) => {
                self.reserved = claim;
                Ok(())
            }
            Err(total) => {
                self.reserved = 0;
                Err(ChargeError::Exceeded { limit, total })
            }
        }
    }

    /// Before the commit entry is written.
    pub fn before_commit(&mut self, charged: u64) -> io::Result<()> {
        let (me, repository) = (self.me, self.repository.clone());
        self.update(|ledger| ledger.raise_committed(me, &repository, charged))
    }

    /// After the commit (and compaction, and the index) are durable.
    pub fn after_commit(&mut self, charged: u64) -> io::Result<()> {
        let (me, repository) = (self.me, self.repository.clone());
        self.reserved = 0;
        self.update(|ledger| ledger.record_commit(me, &repository, charged))
    }

    /// The transaction ended without a commit: the claim goes (best effort; a claim left
    /// behind is dropped once this process is gone).
    pub fn release(&mut self) {
        if self.reserved == 0 {
            return;
        }
        self.reserved = 0;
        let me = self.me;
        if let Err(error) = self.update(|ledger| ledger.release(me)) {
            log::warn!(target: "borg.repository", "cannot release this session's claim in the key quota ledger {}: {error}", self.quota.ledger.display());
        }
    }

    /// The repository was deleted.
    pub fn forget_repository(&mut self) -> io::Result<()> {
        self.reserved = 0;
        let repository = self.repository.clone();
        self.update(|ledger| ledger.forget(&repository))
    }

    /// Reads the ledger under its lock (creating it by a first count if missing), applies
    /// `change`, drops dead claims and writes it back atomically. Errors name the ledger.
    fn update<T>(&self, change: impl FnOnce(&mut Ledger) -> T) -> io::Result<T> {
        self.update_unnamed(change).map_err(|error| {
            let text = crate::common::text::plain_io_error(&error);
            let ledger = self.quota.ledger.display().to_string();
            if text.contains(&ledger) {
                error
            } else {
                io::Error::new(error.kind(), format!("{ledger}: {text}"))
            }
        })
    }

    fn update_unnamed<T>(&self, change: impl FnOnce(&mut Ledger) -> T) -> io::Result<T> {
        let (dir, name) = ledger_place(&self.quota.ledger)?;
        let _lock = lock_ledger(&dir, &name)?;
        let mut ledger = match dir.read(&name) {
            Ok(bytes) => Ledger::parse(&bytes).map_err(|reason| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} is not a key quota ledger ({reason}); delete it to count again",
                        self.quota.ledger.display()
                    ),
                )
            })?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                seed(&self.scope, self.quota.limit)
            }
            Err(error) => return Err(error),
        };
        ledger.drop_dead(SessionId::is_alive);
        let result = change(&mut ledger);
        durable::write_atomic_in(&dir, &name, &ledger.to_bytes())?;
        Ok(result)
    }
}

/// The ledger's directory (opened without following a symlink at its end) and file name.
fn ledger_place(ledger: &Path) -> io::Result<(Dir, String)> {
    let name = ledger
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no ledger file name"))?;
    let parent = ledger
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no ledger directory"))?;
    Ok((Dir::open(parent)?, name.to_owned()))
}

/// An exclusive `flock` of `<name>.lock`, held until dropped; gives up after
/// [`LOCK_PATIENCE`].
fn lock_ledger(dir: &Dir, name: &str) -> io::Result<nix::fcntl::Flock<File>> {
    use nix::fcntl::{Flock, FlockArg};
    let lock_name = format!("{name}.lock");
    let mut file = dir.open_file(&lock_name, super::repository::dir::Access::Append)?;
    let deadline = Instant::now() + LOCK_PATIENCE;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => return Ok(locked),
            Err((unlocked, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                file = unlocked;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} stayed locked for {} s",
                        dir.child_path(&lock_name).display(),
                        LOCK_PATIENCE.as_secs()
                    ),
                ));
            }
            Err((_, errno)) => return Err(errno.into()),
        }
    }
}

/// The first count: every repository the key can reach, measured on disk.
fn seed(scope: &SeedScope, limit: u64) -> Ledger {
    let mut ledger = Ledger::new(limit);
    let mut visited = 0usize;
    let record = |path: &Path, ledger: &mut Ledger| {
        if let Some(used) = measure_repository(path) {
            ledger.repositories.insert(
                path.to_string_lossy().into_owned(),
                RepositoryUse { committed: used },
            );
        }
    };
    for repository in &scope.restrict_to_repositories {
        record(repository, &mut ledger);
    }
    let mut queue: std::collections::VecDeque<(PathBuf, usize)> = scope
        .restrict_to_paths
        .iter()
        .map(|path| (path.clone(), 0))
        .collect();
    while let Some((dir, depth)) = queue.pop_front() {
        if visited >= SEED_DIRECTORIES {
            log::warn!(target: "borg.repository", "key quota: the first count of this key's repositories stopped after {SEED_DIRECTORIES} directories; repositories it did not reach are counted when they are next written");
            break;
        }
        visited += 1;
        if super::repository::repo::is_repository(&dir) {
            record(&dir, &mut ledger);
            continue;
        }
        if depth >= SEED_DEPTH {
            continue;
        }
        let Ok(handle) = Dir::open(&dir) else {
            continue;
        };
        let Ok(entries) = handle.entries() else {
            continue;
        };
        for (name, kind) in entries {
            let Some(name) = name.to_str() else { continue };
            let kind = match kind {
                Some(kind) => Some(kind),
                None => handle.stat(name).ok().flatten().map(|s| s.kind),
            };
            if kind == Some(Kind::Dir) {
                queue.push_back((dir.join(name), depth + 1));
            }
        }
    }
    ledger
}

/// What the segment files of the repository at `path` use on disk, as the repository quota
/// counts them (whole blocks); `None` if it is no repository.
pub(crate) fn measure_repository(path: &Path) -> Option<u64> {
    let repo = Dir::open(path).ok()?;
    let block = match repo.free_space() {
        Ok((_, block)) if (512..=1 << 20).contains(&block) => block,
        _ => 4096,
    };
    let data = repo.subdir("data").ok()?;
    let mut total = 0u64;
    for (name, kind) in data.entries().ok()? {
        let Some(name) = name.to_str() else { continue };
        let numbered = !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit());
        if !numbered || kind.is_some_and(|k| k != Kind::Dir) {
            continue;
        }
        let Ok(segments) = data.subdir(name) else {
            continue;
        };
        for (file, _) in segments.entries().ok()? {
            let Some(file) = file.to_str() else { continue };
            if let Ok(Some(stat)) = segments.stat(file) {
                if stat.kind == Kind::File {
                    total = total.saturating_add(blocks_for(stat.len, block));
                }
            }
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: SessionId = SessionId { pid: 10, start: 1 };
    const OTHER: SessionId = SessionId { pid: 20, start: 2 };

    #[test]
    fn a_reservation_within_the_limit_claims_room_ahead() {
        let mut ledger = Ledger::new(1000);
        assert_eq!(ledger.reserve(ME, "/r/a", 100, 200, 1000), Ok(600));
        assert_eq!(ledger.total(), 600);
        // Another repository sees this one's claim.
        assert_eq!(ledger.reserve(OTHER, "/r/b", 0, 300, 1000), Ok(350));
        assert_eq!(ledger.total(), 950);
        // Room left: 50; a charge of 100 more in /r/a is over.
        assert_eq!(ledger.reserve(ME, "/r/a", 100, 700, 1000), Err(1050));
        // The refused session's claim is gone; its committed bytes stay.
        assert_eq!(ledger.total(), 100 + 350);
    }

    #[test]
    fn concurrent_sessions_never_commit_more_than_the_limit_together() {
        // Five sessions, each writing 3 MB into its own repository 100 kB at a time, in
        // turn: a session that reaches 3 MB commits; one that is refused is doomed.
        let limit = 10_000_000;
        let mut ledger = Ledger::new(limit);
        let mut used = [0u64; 5];
        let mut done = [false; 5];
        let mut committed = 0;
        while done.iter().any(|d| !d) {
            for i in 0..5 {
                if done[i] {
                    continue;
                }
                let me = SessionId {
                    pid: i as u32 + 1,
                    start: 7,
                };
                let repository = format!("/r/{i}");
                used[i] += 100_000;
                match ledger.reserve(me, &repository, 0, used[i], limit) {
                    Ok(_) if used[i] == 3_000_000 => {
                        ledger.raise_committed(me, &repository, used[i]);
                        ledger.record_commit(me, &repository, used[i]);
                        committed += 1;
                        done[i] = true;
                    }
                    Ok(_) => {}
                    Err(total) => {
                        assert!(total > limit);
                        done[i] = true;
                    }
                }
                assert!(ledger.total() <= limit, "{ledger:?}");
            }
        }
        assert!(committed >= 2, "only {committed} of 5 sessions committed");
        assert!(ledger.total() <= limit);
        assert!(ledger.sessions.is_empty());
    }

    #[test]
    fn a_commit_records_what_the_repository_uses_and_drops_the_claim() {
        let mut ledger = Ledger::new(1000);
        ledger.reserve(ME, "/r/a", 100, 300, 1000).unwrap();
        ledger.raise_committed(ME, "/r/a", 300);
        // A crash here over-counts: committed is the claim.
        assert_eq!(ledger.repositories["/r/a"].committed, 650);
        ledger.record_commit(ME, "/r/a", 250);
        assert_eq!(ledger.repositories["/r/a"].committed, 250);
        assert!(ledger.sessions.is_empty());
        assert_eq!(ledger.total(), 250);
    }

    #[test]
    fn claims_of_dead_processes_are_dropped() {
        let mut ledger = Ledger::new(1000);
        ledger.reserve(ME, "/r/a", 0, 100, 1000).unwrap();
        ledger.reserve(OTHER, "/r/b", 0, 100, 1000).unwrap();
        ledger.drop_dead(|session| session == OTHER);
        assert_eq!(ledger.sessions.len(), 1);
        assert_eq!(ledger.sessions[0].pid, OTHER.pid);
    }

    #[test]
    fn the_ledger_round_trips_and_refuses_other_versions_and_garbage() {
        let mut ledger = Ledger::new(5);
        ledger.reserve(ME, "/r/ä", 1, 2, 5).unwrap();
        assert_eq!(Ledger::parse(&ledger.to_bytes()), Ok(ledger.clone()));
        assert!(Ledger::parse(b"{\"version\":2}").is_err());
        assert!(Ledger::parse(b"{\"version\":1,").is_err());
        assert!(Ledger::parse(b"").is_err());
    }

    #[test]
    fn forgetting_a_repository_removes_its_bytes_and_claims() {
        let mut ledger = Ledger::new(1000);
        ledger.reserve(ME, "/r/a", 100, 200, 1000).unwrap();
        ledger.reserve(OTHER, "/r/b", 50, 60, 1000).unwrap();
        ledger.forget("/r/a");
        assert!(!ledger.repositories.contains_key("/r/a"));
        assert!(ledger.sessions.iter().all(|c| c.repository != "/r/a"));
    }

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not() {
        let me = SessionId::current();
        assert!(me.is_alive());
        assert!(
            !SessionId {
                pid: me.pid,
                start: me.start + 1
            }
            .is_alive()
        );
    }
}
