//! Stale-lock release for borg 2 clients: which `locks/` objects this session stored and did
//! not delete, and the fence that keeps a reconnecting client from writing without its lock.
//!
//! Pure; the store does the file work. borg 2 locks are sealed objects `locks/<hash>` that
//! only the client can read, and a lock of a vanished client blocks the repository until it
//! is 30 minutes old. The server cannot read locks, but it sees which ones its own session
//! stored. The design, in three rules:
//!
//! 1. **Release.** When a session ends any other way than the client's own clean close, the
//!    lock objects it stored and did not delete are deleted: at end of input, after a failed
//!    write to the client, at the idle timeout, and on SIGHUP/SIGTERM/SIGINT. A second client
//!    gets in at once instead of after 30 minutes. (A SIGKILLed engine cannot release; its
//!    locks expire by borg's own rule.)
//! 2. **Fence.** Before deleting, the engine durably writes a release fence
//!    (`borg-gate-lock-fence.hid` in the store root, invisible to clients, valid for
//!    [`DEFAULT_FENCE`]). A borg 2 client that lost its connection reconnects and re-sends
//!    the same request (borgstore's `REST` backend); it believes it still holds the lock and
//!    only finds out at its next lock refresh, up to 15 minutes later.
//! 3. **Guard.** While a fence is in force, a session that has not stored a lock object of its
//!    own may not store, delete, move or defrag anything outside `locks/` (423 Locked). A
//!    reconnected client is exactly such a session, so its first write fails and borg aborts
//!    the command without committing: it may fail, but it never writes next to a client that
//!    took the lock after the release (for example a `compact` that would delete the packs
//!    it is still adding). Fresh clients lock before they write and are not affected; reads
//!    are never fenced; `repo-create`, which writes before it locks, runs on a new, empty
//!    store that has no fence.
//!
//! The fence lasts 30 minutes, borg's lock stale time: by then a reconnected client's next
//! repository call refreshes its lock, finds it gone, and stops with "Our lock was killed",
//! which is how borg itself handles a lock that expired under a live client.

use std::collections::BTreeSet;
use std::time::Duration;

/// How long a release fence keeps lockless sessions from writing: borg's lock stale time.
pub const DEFAULT_FENCE: Duration = Duration::from_secs(30 * 60);

/// The namespace of borg 2's lock objects.
const LOCKS: &str = "locks/";

/// When the engine releases what its session left in `locks/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReleasePolicy {
    /// Release (with a fence) whenever the session does not end cleanly.
    #[default]
    Release,
    /// Never: locks expire by borg's own 30-minute rule (what `borg serve --rest` does).
    Keep,
}

impl ReleasePolicy {
    pub fn from_name(name: &str) -> Option<ReleasePolicy> {
        match name {
            "release" => Some(ReleasePolicy::Release),
            "keep" => Some(ReleasePolicy::Keep),
            _ => None,
        }
    }
}

/// The lock objects this session stored and has not deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockLedger {
    held: BTreeSet<String>,
    stored_any: bool,
}

/// The file name of a lock object (`locks/<name>`, exactly one level deep).
pub fn lock_object(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(LOCKS)?;
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

/// Whether a write to `name` is a write to the lock namespace (never fenced).
pub fn in_lock_namespace(name: &str) -> bool {
    name == "locks" || name.starts_with(LOCKS)
}

impl LockLedger {
    /// After a successful store of `name`.
    pub fn stored(&mut self, name: &str) {
        if let Some(lock) = lock_object(name) {
            self.held.insert(lock.to_owned());
            self.stored_any = true;
        }
    }

    /// After a successful delete of `name`.
    pub fn deleted(&mut self, name: &str) {
        if let Some(lock) = lock_object(name) {
            self.held.remove(lock);
        }
    }

    /// After a successful move of `from` to `to`.
    pub fn moved(&mut self, from: &str, to: &str) {
        let had = lock_object(from).is_some_and(|lock| self.held.remove(lock));
        if had {
            self.stored(to);
        }
    }

    /// Whether this session ever stored a lock object: it is a client that locked the
    /// repository itself, not one that came back after losing its connection.
    pub fn has_locked(&self) -> bool {
        self.stored_any
    }

    /// The names (`locks/<x>`) to delete when the session does not end cleanly.
    pub fn orphans(&self) -> Vec<String> {
        self.held
            .iter()
            .map(|lock| format!("{LOCKS}{lock}"))
            .collect()
    }
}

/// Whether a session may write `name` (store, delete, move, defrag), given its ledger and
/// whether a release fence is in force (asked only when it matters).
pub fn may_write(name: &str, ledger: &LockLedger, fence_in_force: impl FnOnce() -> bool) -> bool {
    ledger.has_locked() || in_lock_namespace(name) || !fence_in_force()
}

/// The sentence a fenced write gets (HTTP 423).
pub const FENCED: &str = "borg-gate: a repository lock held over a lost connection was released; \
     this connection holds no lock of its own and may not write. Run the borg command again";

/// The fence file's content: the unix time until which it is in force, then the released
/// names, one per line.
pub fn fence_content(until_unix: u64, released: &[String]) -> String {
    let mut text = format!("{until_unix}\n");
    for name in released {
        text.push_str(name);
        text.push('\n');
    }
    text
}

/// Whether a fence file with `content` is in force at `now_unix`. An unreadable fence is in
/// force (fail closed): only its age can retire it, which the store judges by its mtime.
pub fn fence_in_force(content: &[u8], now_unix: u64) -> bool {
    let first_line = content.split(|&b| b == b'\n').next().unwrap_or(&[]);
    match std::str::from_utf8(first_line)
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
    {
        Some(until) => now_unix < until,
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lock_objects_one_level_deep_are_tracked() {
        let table: &[(&str, Option<&str>)] = &[
            ("locks/ab12", Some("ab12")),
            ("locks/", None),
            ("locks", None),
            ("locks/a/b", None),
            ("packs/ab/ab12", None),
            ("lockss/x", None),
        ];
        for (name, expected) in table {
            assert_eq!(lock_object(name), *expected, "{name:?}");
        }
    }

    #[test]
    fn the_ledger_follows_stores_deletes_and_moves() {
        let mut ledger = LockLedger::default();
        assert!(!ledger.has_locked());
        ledger.stored("packs/ab/ab00");
        assert!(!ledger.has_locked());
        ledger.stored("locks/one");
        ledger.stored("locks/two");
        ledger.deleted("locks/one");
        assert_eq!(ledger.orphans(), ["locks/two"]);
        // A refresh: new object, then the old one deleted.
        ledger.stored("locks/three");
        ledger.deleted("locks/two");
        assert_eq!(ledger.orphans(), ["locks/three"]);
        ledger.moved("locks/three", "locks/four");
        assert_eq!(ledger.orphans(), ["locks/four"]);
        ledger.moved("locks/unknown", "locks/five");
        assert_eq!(ledger.orphans(), ["locks/four"]);
        ledger.deleted("locks/four");
        assert!(ledger.orphans().is_empty());
        assert!(ledger.has_locked());
    }

    #[test]
    fn a_fence_stops_only_lockless_writes_outside_the_lock_namespace() {
        let lockless = LockLedger::default();
        let mut locked = LockLedger::default();
        locked.stored("locks/mine");
        let table: &[(&str, &LockLedger, bool, bool)] = &[
            ("packs/ab/ab00", &lockless, false, true),
            ("packs/ab/ab00", &lockless, true, false),
            ("archives/11", &lockless, true, false),
            ("locks/new", &lockless, true, true),
            ("locks", &lockless, true, true),
            ("packs/ab/ab00", &locked, true, true),
            ("archives/11", &locked, true, true),
        ];
        for (name, ledger, fenced, allowed) in table {
            assert_eq!(
                may_write(name, ledger, || *fenced),
                *allowed,
                "{name} {fenced}"
            );
        }
    }

    #[test]
    fn fences_expire_and_unreadable_ones_hold() {
        let content = fence_content(1000, &["locks/a".to_owned()]);
        assert_eq!(content, "1000\nlocks/a\n");
        assert!(fence_in_force(content.as_bytes(), 999));
        assert!(!fence_in_force(content.as_bytes(), 1000));
        assert!(fence_in_force(b"garbage", 5));
        assert!(fence_in_force(b"", 5));
        assert!(!fence_in_force(b" 7 \n", 8));
    }

    #[test]
    fn release_policies_have_names() {
        assert_eq!(
            ReleasePolicy::from_name("release"),
            Some(ReleasePolicy::Release)
        );
        assert_eq!(ReleasePolicy::from_name("keep"), Some(ReleasePolicy::Keep));
        assert_eq!(ReleasePolicy::from_name("never"), None);
    }
}
