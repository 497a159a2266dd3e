//! Compaction (borg's `compact_segments`): sparse segments are rewritten into new ones and
//! deleted, with intermediate commits so that a crash at any step leaves a valid log.

use super::error::RepoError;
use super::io::{SegmentIo, Written};
use super::repo::{LOG, Repository};
use super::segment::{EntryKind, HEADER_SIZE, ReadMode};
use super::units::format_file_size;
use crate::engine::borg1::remote_log::ProgressPercent;

impl Repository {
    pub(super) fn compact_segments(&mut self, threshold: f64) -> Result<(), RepoError> {
        if self.books.compact.is_empty() {
            log::debug!(target: LOG, "nothing to do: compact empty");
            return Ok(());
        }
        let quota_before = self.books.storage_quota_use;
        let index_tid = self.index_transaction_id()?;
        let mut unused: Vec<u32> = Vec::new();
        log::debug!(target: LOG, "Compaction started (threshold is {}%).", (threshold * 100.0) as i64);
        let candidates: Vec<(u32, u64)> =
            self.books.compact.iter().map(|(s, f)| (*s, *f)).collect();
        let mut progress = ProgressPercent::new(
            "repository.compact_segments",
            "Compacting segments",
            0,
            1.0,
            candidates.len() as u64,
        );
        for (segment, freeable) in candidates {
            if !self.io.segment_exists(segment) {
                log::warn!(target: LOG, "segment {segment} not found, but listed in compaction data");
                self.books.compact.remove(&segment);
                self.books.segments.remove(&segment);
                progress.show(None);
                continue;
            }
            let size = self
                .io
                .segment_size(segment)
                .map_err(|e| RepoError::io("cannot stat segment", e))?;
            let ratio = freeable as f64 / size.max(1) as f64;
            if ratio <= threshold || ratio.is_nan() {
                log::debug!(target: LOG, "not compacting segment {segment} (maybe freeable: {:.2}% [{freeable} bytes])", ratio * 100.0);
                progress.show(None);
                continue;
            }
            self.books.segments.entry(segment).or_insert(0);
            self.compact_one(segment, index_tid, &mut unused)?;
            if self.books.segments.get(&segment).copied().unwrap_or(0) != 0 {
                log::warn!(
                    target: LOG,
                    "Corrupted segment reference count {} (expected 0) for segment {segment} - corrupted index or hints",
                    self.books.segments.get(&segment).copied().unwrap_or(0)
                );
            }
            unused.push(segment);
            progress.show(None);
        }
        progress.finish();
        self.complete_transfer(false, &mut unused)?;
        self.io
            .clear_empty_dirs()
            .map_err(|e| RepoError::io("cannot tidy data directories", e))?;
        let freed = quota_before.saturating_sub(self.books.storage_quota_use);
        log::info!(target: LOG, "compaction freed about {} repository space.", format_file_size(freed as i64));
        Ok(())
    }

    /// Copies the live entries of one segment to the write segment.
    fn compact_one(
        &mut self,
        segment: u32,
        index_tid: Option<u32>,
        unused: &mut Vec<u32>,
    ) -> Result<(), RepoError> {
        let mut entries = self.io.entries(segment, 0, ReadMode::WithData)?;
        while let Some(entry) = entries.next_entry()? {
            match entry.kind {
                EntryKind::Commit => {}
                EntryKind::Put { key } => {
                    let current = self.index.as_ref().and_then(|index| index.get(&key))
                        == Some((segment, entry.offset));
                    if current {
                        let written = self.write_or_commit_first(unused, |io, full_ok| {
                            io.write_put(&key, entry.data, full_ok)
                        })?;
                        let index = self
                            .index
                            .as_mut()
                            .ok_or_else(|| RepoError::Internal("no index".into()))?;
                        index
                            .insert(&key, written.segment, written.offset)
                            .map_err(|e| RepoError::Internal(e.to_string()))?;
                        self.books.put_moved(segment, written.segment);
                    } else {
                        // A superseded PUT disappears with this segment.
                        self.books
                            .superseded_put_dropped(&key, segment, u64::from(entry.size));
                    }
                }
                EntryKind::Delete { key } => {
                    let in_index = self
                        .index
                        .as_ref()
                        .is_some_and(|index| index.contains(&key));
                    if in_index {
                        // Re-PUT later: the DELETE is no longer needed.
                        continue;
                    }
                    let shadowed_put_exists = match self.books.shadow_index.get(&key) {
                        None => true,
                        Some(shadowed) => shadowed.iter().any(|s| *s < segment),
                    };
                    let delete_is_not_stable = index_tid.is_none_or(|tid| segment > tid);
                    if shadowed_put_exists || delete_is_not_stable {
                        // Keep the DELETE: an older PUT may still exist on disk, or the delete is
                        // not yet settled by an index (borg 6425d16a).
                        let written = self.write_or_commit_first(unused, |io, full_ok| {
                            io.write_delete(&key, full_ok)
                        })?;
                        self.books
                            .unreferenced_written(written.segment, u64::from(written.size));
                    } else if self.books.shadow_index.get(&key).is_some_and(Vec::is_empty) {
                        self.books.shadow_index.remove(&key);
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes an entry with `write` into the current segment; when that segment is full,
    /// commits what was copied so far first (deleting the segments it replaces) and writes
    /// into a fresh one (borg's `complete_xfer(intermediate=True)` on `LoggedIO.SegmentFull`).
    fn write_or_commit_first(
        &mut self,
        unused: &mut Vec<u32>,
        mut write: impl FnMut(&mut SegmentIo, bool) -> std::io::Result<Option<Written>>,
    ) -> Result<Written, RepoError> {
        if let Some(written) = write(&mut self.io, false).map_err(write_error)? {
            return Ok(written);
        }
        self.complete_transfer(true, unused)?;
        write(&mut self.io, true)
            .map_err(write_error)?
            .ok_or_else(full_error)
    }

    /// Commits what was copied so far and deletes the segments it replaces (borg's
    /// `complete_xfer`).
    fn complete_transfer(
        &mut self,
        intermediate: bool,
        unused: &mut Vec<u32>,
    ) -> Result<(), RepoError> {
        let segment = self
            .io
            .write_commit(intermediate)
            .map_err(|e| RepoError::io("cannot write the commit", e))?;
        self.books.unreferenced_written(segment, HEADER_SIZE as u64);
        for old in unused.drain(..) {
            let count = self.books.segments.remove(&old).unwrap_or(0);
            if count != 0 {
                log::warn!(target: LOG, "Corrupted segment reference count {count} (expected 0) for segment {old} - corrupted index or hints");
            }
            self.io
                .delete_segment(old)
                .map_err(|e| RepoError::io("cannot delete segment", e))?;
            self.compacted_segments += 1;
            self.books.compact.remove(&old);
        }
        Ok(())
    }
}

fn write_error(error: std::io::Error) -> RepoError {
    RepoError::io("cannot write segment", error)
}

fn full_error() -> RepoError {
    RepoError::Internal("a fresh segment reported full".into())
}
