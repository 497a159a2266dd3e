//! Storage quota arithmetic, as borgstore's posixfs does it (`QuotaExceeded("Quota exceeded:
//! X > N")`), plus when the usage is written back to `quota.hid`.
//!
//! Pure. The usage lives in borgstore's own tracking file `quota.hid` (ASCII decimal bytes),
//! shared with every session; [`Usage`] holds this session's view: the value last read or
//! written there plus this session's own changes since.

use std::fmt;
use std::time::{Duration, Instant};

/// borgstore's `QUOTA_PERSIST_DELTA`: write the usage back after this much change.
pub const PERSIST_DELTA: u64 = 10 * 1000 * 1000;
/// borgstore's `QUOTA_PERSIST_INTERVAL`: or after this long.
pub const PERSIST_INTERVAL: Duration = Duration::from_secs(300);

/// A store refused by the quota; `Display` is borgstore's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exceeded {
    pub would_use: u64,
    pub limit: u64,
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Quota exceeded: {} > {}", self.would_use, self.limit)
    }
}

impl std::error::Error for Exceeded {}

/// This session's view of the store's usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// The value in `quota.hid` when this session last read or wrote it.
    persisted: u64,
    /// Changes made by this session since then.
    pending: i128,
    last_persist: Instant,
}

impl Usage {
    pub fn new(persisted: u64, now: Instant) -> Usage {
        Usage {
            persisted,
            pending: 0,
            last_persist: now,
        }
    }

    /// Bytes in use as far as this session knows.
    pub fn bytes(&self) -> u64 {
        clamp(i128::from(self.persisted) + self.pending)
    }

    /// Whether replacing `old_size` bytes (0 for a new object) by `new_size` stays within
    /// `limit`; posixfs compares `usage + delta > limit`.
    pub fn check(&self, limit: u64, old_size: u64, new_size: u64) -> Result<(), Exceeded> {
        let would_use =
            i128::from(self.persisted) + self.pending + i128::from(new_size) - i128::from(old_size);
        if would_use > i128::from(limit) {
            Err(Exceeded {
                would_use: clamp(would_use),
                limit,
            })
        } else {
            Ok(())
        }
    }

    /// Records a change of `delta` bytes made by this session.
    pub fn record(&mut self, delta: i128) {
        self.pending += delta;
    }

    /// The change not yet written to `quota.hid`.
    pub fn pending(&self) -> i128 {
        self.pending
    }

    /// Whether the pending change should be written now (borgstore's thresholds).
    pub fn should_persist(&self, now: Instant) -> bool {
        self.pending != 0
            && (self.pending.unsigned_abs() >= u128::from(PERSIST_DELTA)
                || now.duration_since(self.last_persist) >= PERSIST_INTERVAL)
    }

    /// After `quota.hid` was rewritten under its lock with the value `on_disk` (which
    /// includes this session's pending change and every other session's).
    pub fn persisted_as(&mut self, on_disk: u64, now: Instant) {
        self.persisted = on_disk;
        self.pending = 0;
        self.last_persist = now;
    }
}

/// The new value of `quota.hid`: borgstore's `max(on_disk + delta, 0)`.
pub fn apply(on_disk: u64, delta: i128) -> u64 {
    clamp(i128::from(on_disk) + delta)
}

/// The content of `quota.hid` as Python's `int()` reads it; `None` means "rescan".
pub fn parse_usage(content: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(content).ok()?.trim();
    let digits = text.strip_prefix('+').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn clamp(value: i128) -> u64 {
    u64::try_from(value.max(0)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_are_checked_against_the_limit_as_posixfs_checks_them() {
        let now = Instant::now();
        let mut usage = Usage::new(900, now);
        let table: &[(u64, u64, u64, Option<u64>)] = &[
            // (limit, old size, new size, refused with would-use)
            (1000, 0, 100, None),
            (1000, 0, 101, Some(1001)),
            (1000, 50, 150, None),
            (1000, 50, 151, Some(1001)),
            (1000, 900, 1000, None),
            (900, 0, 0, None),
            (0, 0, 0, Some(900)),
        ];
        for (limit, old, new, refused) in table {
            let result = usage.check(*limit, *old, *new);
            match refused {
                None => assert_eq!(result, Ok(()), "{limit} {old} {new}"),
                Some(would_use) => assert_eq!(
                    result,
                    Err(Exceeded {
                        would_use: *would_use,
                        limit: *limit
                    })
                ),
            }
        }
        usage.record(100);
        assert_eq!(usage.bytes(), 1000);
        assert!(usage.check(1000, 0, 1).is_err());
        assert_eq!(
            usage.check(1000, 0, 1).unwrap_err().to_string(),
            "Quota exceeded: 1001 > 1000"
        );
        usage.record(-2000);
        assert_eq!(usage.bytes(), 0);
    }

    #[test]
    fn usage_is_written_back_after_ten_megabytes_or_five_minutes() {
        let start = Instant::now();
        let mut usage = Usage::new(0, start);
        assert!(!usage.should_persist(start + PERSIST_INTERVAL));
        usage.record(PERSIST_DELTA as i128 - 1);
        assert!(!usage.should_persist(start));
        assert!(usage.should_persist(start + PERSIST_INTERVAL));
        usage.record(1);
        assert!(usage.should_persist(start));
        usage.persisted_as(apply(5, usage.pending()), start);
        assert_eq!(usage.bytes(), 5 + PERSIST_DELTA);
        assert_eq!(usage.pending(), 0);
        usage.record(-(PERSIST_DELTA as i128));
        assert!(usage.should_persist(start));
    }

    #[test]
    fn the_tracking_file_is_read_like_pythons_int() {
        let table: &[(&[u8], Option<u64>)] = &[
            (b"123", Some(123)),
            (b" 42\n", Some(42)),
            (b"+7", Some(7)),
            (b"0", Some(0)),
            (b"", None),
            (b"-1", None),
            (b"12a", None),
            (b"\xff", None),
            (b"99999999999999999999999", None),
        ];
        for (content, expected) in table {
            assert_eq!(parse_usage(content), *expected, "{content:?}");
        }
        assert_eq!(apply(10, -20), 0);
        assert_eq!(apply(10, 5), 15);
    }
}
