//! Transactions: finding the committed state, replaying segments, writing objects, and the
//! commit that makes them durable in borg's order.
//!
//! A transaction id is the number of the last committed segment. `index.N`, `hints.N` and
//! `integrity.N` describe the state after transaction N; when they are behind the segments
//! (a crash between the commit entry and the index write), the segments are replayed.

use std::io::{self, BufReader, Write};
use std::path::Path;

use super::dir::{Access, Dir, Kind};
use super::durable::{AtomicWriter, PendingRename};
use super::error::RepoError;
use super::hashindex::{IndexHeader, NsIndex};
use super::hints::{self, DecodedHints};
use super::integrity::{
    self, DigestingWriter, FileVerifier, IntegrityData, IntegrityFile, Verification,
};
use super::repo::{Bookkeeping, LOG, Repository};
use super::segment::{EntryKind, ObjectId, ReadMode, SegmentError};
use super::units::format_file_size;
use crate::engine::borg1::key_quota::ChargeError;
use crate::engine::borg1::remote_log::ProgressPercent;

/// One entry of a segment, as replay and check need it.
#[derive(Debug, Clone, Copy)]
pub(super) struct LoggedEntry {
    pub kind: EntryKind,
    pub offset: u32,
    pub size: u32,
}

/// `MAX_OBJECT_SIZE`, for the free-space estimate.
const MAX_OBJECT_SIZE: u64 = super::segment::MAX_OBJECT_SIZE as u64;

/// What the index holds per object (a 32-byte id and its segment and offset), charged to
/// the quota with each object.
const INDEX_ENTRY_COST: u64 = 40;

impl Repository {
    /// The largest N of a non-empty `index.N` (borg's `get_index_transaction_id`).
    pub(super) fn index_transaction_id(&self) -> Result<Option<u32>, RepoError> {
        let entries = self
            .dir
            .entries()
            .map_err(|e| RepoError::io("cannot list the repository", e))?;
        let mut best = None;
        for (name, _) in entries {
            let Some(name) = name.to_str() else {
                continue;
            };
            let Some(number) = name.strip_prefix("index.") else {
                continue;
            };
            if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Ok(number) = number.parse::<u32>() else {
                continue;
            };
            // A symlink is no index: it is never read, and the next commit removes it.
            if self
                .dir
                .stat(name)
                .is_ok_and(|s| s.is_some_and(|s| s.kind == Kind::File && s.len > 0))
            {
                best = best.max(Some(number));
            }
        }
        Ok(best)
    }

    pub(super) fn segments_transaction_id(&mut self) -> Result<Option<u32>, RepoError> {
        self.io
            .segments_transaction_id()
            .map_err(|e| RepoError::io("cannot read segments", e))
    }

    /// Replays segments when the index is behind them (borg's `check_transaction`). After
    /// it, an index kept from this session's commit is judged: still valid, or dropped (so
    /// that, as in borg, every later use fails again while there is no valid commit).
    pub(super) fn check_transaction(&mut self) -> Result<(), RepoError> {
        let judged = self.judge_transaction();
        if judged.is_err() && self.index_unjudged && !self.active_txn {
            self.index = None;
        }
        self.index_unjudged = false;
        judged
    }

    fn judge_transaction(&mut self) -> Result<(), RepoError> {
        let index_tid = self.index_transaction_id()?;
        let segments_tid = self.segments_transaction_id()?;
        match (index_tid, segments_tid) {
            (Some(_), None) => Err(RepoError::Inconsistent(format!(
                "{}\" - although likely this is \"beyond repair",
                self.display_path()
            ))),
            (index, segments) if index == segments => Ok(()),
            (Some(index), Some(segments)) if index > segments => {
                self.replay_segments(None, segments)
            }
            (index, Some(segments)) => self.replay_segments(index, segments),
            (_, None) => Ok(()),
        }
    }

    /// borg's `get_transaction_id`.
    pub(super) fn get_transaction_id(&mut self) -> Result<Option<u32>, RepoError> {
        self.check_transaction()?;
        self.index_transaction_id()
    }

    /// Reads `index.N`, verified against `integrity.N`. With `auto_recover`, a damaged index
    /// is deleted and rebuilt by replay, as borg does.
    pub(super) fn open_index(
        &mut self,
        transaction_id: Option<u32>,
        auto_recover: bool,
    ) -> Result<NsIndex, RepoError> {
        let Some(tid) = transaction_id else {
            return Ok(NsIndex::new());
        };
        let index_name = format!("index.{tid}");
        match read_index(&self.dir, tid) {
            Ok(index) => Ok(index),
            Err(reason) => {
                log::warn!(target: LOG, "Repository index missing or corrupted, trying to recover from: {reason}");
                let _ = self.dir.remove_file(&index_name);
                if !auto_recover {
                    return Err(RepoError::Corrupt(reason));
                }
                let tid = self.get_transaction_id()?;
                self.prepare_txn(tid, true)?;
                self.commit(false, 0.1, false)?;
                let tid = self.get_transaction_id()?;
                match tid {
                    Some(tid) => read_index(&self.dir, tid).map_err(RepoError::Corrupt),
                    None => Ok(NsIndex::new()),
                }
            }
        }
    }

    /// Starts a write transaction on top of `transaction_id` (borg's `prepare_txn`).
    pub(super) fn prepare_txn(
        &mut self,
        transaction_id: Option<u32>,
        do_cleanup: bool,
    ) -> Result<(), RepoError> {
        self.active_txn = true;
        // Nothing below, cleanup included, runs without the exclusive lock (`locking.rs`).
        if let Err(error) = self.lock_for_writing() {
            self.active_txn = false;
            return Err(error);
        }
        if self.index.is_none() || transaction_id.is_none() {
            let index = match self.open_index(transaction_id, false) {
                Ok(index) => index,
                Err(error) => {
                    log::warn!(target: LOG, "Checking repository transaction due to previous error: {error}");
                    self.check_transaction()?;
                    self.open_index(transaction_id, false)?
                }
            };
            self.index = Some(index);
        }
        let Some(tid) = transaction_id else {
            self.books = Bookkeeping::default();
            if do_cleanup {
                // No commit at all: any segment is garbage (borg would trip over a stale 0).
                self.io
                    .cleanup(None)
                    .map_err(|e| RepoError::io("cannot clean up segments", e))?;
                self.start_counting(None)?;
            }
            self.charged_at_start = self.charged_use();
            return Ok(());
        };
        if do_cleanup {
            self.io
                .cleanup(Some(tid))
                .map_err(|e| RepoError::io("cannot clean up segments", e))?;
        }
        match read_hints(&self.dir, tid) {
            Ok(DecodedHints::Current(books)) => self.books = books,
            Ok(DecodedHints::Legacy {
                segments,
                compact_segments,
            }) => {
                log::debug!(target: LOG, "Upgrading from v1 hints.{tid}");
                self.books = Bookkeeping {
                    segments,
                    ..Bookkeeping::default()
                };
                for segment in compact_segments {
                    self.rebuild_sparse(segment)?;
                }
            }
            Err(reason) => {
                log::warn!(target: LOG, "Repository hints file missing or corrupted, trying to recover: {reason}");
                let _ = self.dir.remove_file(&format!("hints.{tid}"));
                let _ = self.dir.remove_file(&format!("index.{tid}"));
                self.check_transaction()?;
                return self.prepare_txn(Some(tid), do_cleanup);
            }
        }
        if do_cleanup {
            self.start_counting(Some(tid))?;
        }
        self.charged_at_start = self.charged_use();
        self.log_storage_quota();
        self.books.drop_shadows_above(tid);
        Ok(())
    }

    /// A write transaction starts: what its repository uses on disk so far is measured.
    fn start_counting(&mut self, transaction_id: Option<u32>) -> Result<(), RepoError> {
        self.io
            .start_counting(transaction_id)
            .map_err(|e| RepoError::io("cannot measure the segments", e))
    }

    /// What the storage quota charges for this repository: its segment files as they use the
    /// disk (whole blocks; see `io.rs`), and [`INDEX_ENTRY_COST`] per object for the index.
    /// `storage_quota_use` in the hints stays borg's count of entry bytes, which borg reads.
    pub fn charged_use(&self) -> u64 {
        let objects = self.index.as_ref().map_or(0, |index| index.len() as u64);
        self.io
            .disk_use()
            .total()
            .saturating_add(objects.saturating_mul(INDEX_ENTRY_COST))
    }

    fn ensure_transaction(&mut self) -> Result<(), RepoError> {
        if self.out_of_space {
            return Err(RepoError::io(
                "the transaction ran out of disk space and was rolled back",
                io::Error::from_raw_os_error(nix::libc::ENOSPC),
            ));
        }
        if !self.active_txn {
            self.lock_for_transaction()?;
            let tid = self.get_transaction_id()?;
            self.prepare_txn(tid, true)?;
        }
        Ok(())
    }

    pub fn put(&mut self, id: &ObjectId, data: &[u8]) -> Result<(), RepoError> {
        let result = self.put_entry(id, data);
        self.forget_if_out_of_segment_files(result)
    }

    pub fn delete(&mut self, id: &ObjectId) -> Result<(), RepoError> {
        let result = self.delete_object(id);
        self.forget_if_out_of_segment_files(result)
    }

    /// A write stopped half way because the session may create no more segment files leaves
    /// the transaction's bookkeeping half done: it is rolled back, so that nothing of it can
    /// be committed (a commit needs a segment file too, and fails the same way).
    fn forget_if_out_of_segment_files(
        &mut self,
        result: Result<(), RepoError>,
    ) -> Result<(), RepoError> {
        if let Err(RepoError::Io { error, .. }) = &result {
            let exhausted = error.get_ref().is_some_and(|inner| {
                inner
                    .downcast_ref::<super::io::SegmentFilesExhausted>()
                    .is_some()
            });
            if exhausted {
                self.rollback();
            }
        }
        result
    }

    fn put_entry(&mut self, id: &ObjectId, data: &[u8]) -> Result<(), RepoError> {
        if data.len() > super::segment::MAX_DATA_SIZE {
            // Checked before anything is written (borg writes a stray DELETE first).
            return Err(RepoError::Corrupt(format!(
                "More than allowed put data [{} > {}]",
                data.len(),
                super::segment::MAX_DATA_SIZE
            )));
        }
        self.ensure_transaction()?;
        let previous = self.index()?.get(id);
        if let Some((segment, offset)) = previous {
            self.delete_entry(id, segment, offset)?;
        }
        let written = self
            .io
            .write_put(id, data, true)
            .map_err(|e| RepoError::io("cannot write segment", e))?
            .ok_or_else(|| RepoError::Internal("segment unexpectedly full".into()))?;
        self.books
            .put_written(written.segment, u64::from(written.size));
        self.index()?
            .insert(id, written.segment, written.offset)
            .map_err(|e| RepoError::Internal(e.to_string()))?;
        let charged = self.charged_use();
        if self.storage_quota != 0 && i128::from(charged) > i128::from(self.storage_quota) {
            let doomed = (
                format_file_size(self.storage_quota),
                format_file_size(i64::try_from(charged).unwrap_or(i64::MAX)),
            );
            self.doomed = Some(doomed.clone());
            return Err(RepoError::QuotaExceeded {
                quota: doomed.0,
                usage: doomed.1,
            });
        }
        self.charge_key_quota(charged)
    }

    /// The key's quota across its repositories: a charge past it dooms the transaction like
    /// the repository quota; a ledger that cannot be used refuses the write (fail closed).
    fn charge_key_quota(&mut self, charged: u64) -> Result<(), RepoError> {
        if let Some((quota, usage)) = &self.doomed {
            // Already over: the puts a client still had in flight fail alike, without
            // going to the ledger for each.
            return Err(RepoError::QuotaExceeded {
                quota: quota.clone(),
                usage: usage.clone(),
            });
        }
        let committed = self.charged_at_start;
        let Some(key_quota) = self.key_quota.as_mut() else {
            return Ok(());
        };
        match key_quota.charge(committed, charged) {
            Ok(()) => Ok(()),
            Err(ChargeError::Exceeded { limit, total }) => {
                log::warn!(target: LOG, "This key's storage quota counts all of its repositories: {} of {} would be used.", format_file_size(i64::try_from(total).unwrap_or(i64::MAX)), format_file_size(i64::try_from(limit).unwrap_or(i64::MAX)));
                let doomed = (
                    format_file_size(i64::try_from(limit).unwrap_or(i64::MAX)),
                    format_file_size(i64::try_from(total).unwrap_or(i64::MAX)),
                );
                self.doomed = Some(doomed.clone());
                Err(RepoError::QuotaExceeded {
                    quota: doomed.0,
                    usage: doomed.1,
                })
            }
            Err(ChargeError::Ledger(error)) => {
                self.rollback();
                Err(RepoError::io("cannot use the key quota ledger", error))
            }
        }
    }

    fn delete_object(&mut self, id: &ObjectId) -> Result<(), RepoError> {
        self.ensure_transaction()?;
        let Some((segment, offset)) = self.index()?.remove(id) else {
            return Err(RepoError::NoSuchObject(*id, self.display_path()));
        };
        self.delete_entry(id, segment, offset)
    }

    /// Shared by put and delete: account the superseded PUT and write a DELETE entry.
    fn delete_entry(&mut self, id: &ObjectId, segment: u32, offset: u32) -> Result<(), RepoError> {
        let io = &mut self.io;
        self.books.put_superseded(*id, segment, || {
            io.entry_size(segment, offset, id).map(u64::from)
        })?;
        let written = self
            .io
            .write_delete(id, true)
            .map_err(|e| RepoError::io("cannot write segment", e))?
            .ok_or_else(|| RepoError::Internal("segment unexpectedly full".into()))?;
        self.books
            .unreferenced_written(written.segment, u64::from(written.size));
        Ok(())
    }

    /// Makes the transaction durable: free-space check, a COMMIT in a segment of its own,
    /// optional compaction, then index, hints and integrity (borg's `commit`).
    pub fn commit(
        &mut self,
        compact: bool,
        threshold: f64,
        cleanup_commits: bool,
    ) -> Result<(), RepoError> {
        if let Some((quota, usage)) = self.doomed.take() {
            self.rollback();
            return Err(RepoError::QuotaExceeded { quota, usage });
        }
        if !self.active_txn || self.out_of_space {
            // Python fails with AttributeError here; a commit with nothing to commit is a no-op
            // beyond making sure a transaction exists, as it would for a client that wrote.
            self.ensure_transaction()?;
        }
        self.require_exclusive()?;
        // Up to a write batch of puts is still in memory; on disk first, so that the
        // free-space check sees what borg's (which writes as it goes) would see.
        self.io
            .flush()
            .map_err(|e| RepoError::io("cannot write segment", e))?;
        self.check_free_space()?;
        self.log_storage_quota();
        let charged = self.charged_use();
        if let Some(key_quota) = self.key_quota.as_mut() {
            // Committed bytes rise to the claim first: a crash after the commit over-counts.
            if let Err(error) = key_quota.before_commit(charged) {
                self.rollback();
                return Err(RepoError::io("cannot use the key quota ledger", error));
            }
        }
        let segment = self
            .io
            .write_commit(false)
            .map_err(|e| RepoError::io("cannot write the commit", e))?;
        self.books
            .unreferenced_written(segment, super::segment::HEADER_SIZE as u64);
        if compact && !self.append_only {
            if cleanup_commits {
                for file in self
                    .io
                    .list()
                    .map_err(|e| RepoError::io("cannot list segments", e))?
                {
                    if file.len == super::segment::COMMIT_ONLY_SEGMENT_LEN {
                        self.books.segments.insert(file.segment, 0);
                        self.books
                            .compact
                            .insert(file.segment, super::segment::HEADER_SIZE as u64);
                    }
                }
            }
            self.compact_segments(threshold)?;
        }
        self.write_index()?;
        // The index in memory is exactly what was just written; keep it for the next
        // transaction instead of reading it back (borg drops and rereads it), but judge the
        // segments again before its next use, as borg's reread does.
        self.active_txn = false;
        self.doomed = None;
        self.index_unjudged = true;
        let charged = self.charged_use();
        if let Some(key_quota) = self.key_quota.as_mut() {
            if let Err(error) = key_quota.after_commit(charged) {
                // Durable already; the ledger keeps the higher count from before the commit.
                log::warn!(target: LOG, "cannot record the commit in the key quota ledger: {error}");
            }
        }
        Ok(())
    }

    /// Forgets the transaction (borg's `rollback`); nothing on disk changes.
    pub fn rollback(&mut self) {
        if let Some(key_quota) = self.key_quota.as_mut() {
            key_quota.release();
        }
        self.io.abandon_segment();
        self.index = None;
        self.index_unjudged = false;
        self.active_txn = false;
        self.doomed = None;
        self.out_of_space = false;
    }

    /// Rollback that also deletes the uncommitted segments, to give space back after a full
    /// disk (borg does this when ENOSPC ends a transaction). The transaction stays doomed
    /// until the client's own rollback (see `out_of_space`).
    pub fn rollback_with_cleanup(&mut self) {
        self.rollback();
        self.out_of_space = true;
        match self.io.segments_transaction_id() {
            Ok(tid) => {
                if let Err(error) = self.io.cleanup(tid) {
                    log::warn!(target: LOG, "cleanup of the failed transaction failed: {error}");
                }
            }
            Err(error) => {
                log::warn!(target: LOG, "cleanup of the failed transaction failed: {error}")
            }
        }
    }

    /// Writes hints, index and integrity for the transaction just committed, in borg's
    /// order: each as a fsynced temporary file, integrity renamed first, then the others,
    /// with directory fsyncs in between; then older generations are removed.
    pub(super) fn write_index(&mut self) -> Result<(), RepoError> {
        let tid = self
            .segments_transaction_id()?
            .ok_or_else(|| RepoError::Internal("no committed segment after commit".into()))?;
        self.committed_transaction = Some(tid);
        if self.append_only {
            append_transaction_log(&self.dir, tid)
                .map_err(|e| RepoError::io("cannot write transactions", e))?;
        }
        let index = self
            .index
            .as_ref()
            .ok_or_else(|| RepoError::Internal("no index to write".into()))?;
        let hints_name = format!("hints.{tid}");
        let index_name = format!("index.{tid}");
        let integrity_name = format!("integrity.{tid}");
        let io_error = |what: &str| {
            let what = what.to_owned();
            move |e: io::Error| RepoError::io(format!("cannot write {what}"), e)
        };

        // Each file is written and synced under a temporary name; a failure before the renames
        // removes them (dropping a `PendingRename`) and leaves the last commit's files alone.
        let hints_bytes = self.books.encode();
        let (hints, hints_integrity) = write_digested(&self.dir, &hints_name, |writer| {
            writer.write_all(&hints_bytes)
        })
        .map_err(io_error(&hints_name))?;
        let (index_file, index_integrity) = write_digested(&self.dir, &index_name, |writer| {
            index.write_header(&mut *writer)?;
            writer.part(integrity::HASH_HEADER_PART);
            index.write_buckets(&mut *writer)
        })
        .map_err(io_error(&index_name))?;
        let integrity_bytes = integrity::encode_integrity_file(&hints_integrity, &index_integrity);
        let integrity = AtomicWriter::create_in(&self.dir, &integrity_name)
            .and_then(|mut writer| {
                writer.write_all(&integrity_bytes)?;
                writer.finish()
            })
            .map_err(io_error(&integrity_name))?;

        // borg's order: the integrity data first, then hints and index.
        integrity.rename().map_err(io_error(&integrity_name))?;
        self.dir
            .sync()
            .map_err(io_error("the repository directory"))?;
        hints.rename().map_err(io_error(&hints_name))?;
        index_file.rename().map_err(io_error(&index_name))?;
        self.dir
            .sync()
            .map_err(io_error("the repository directory"))?;

        let current = format!(".{tid}");
        if let Ok(entries) = self.dir.entries() {
            for (name, _) in entries {
                let Some(name) = name.to_str() else { continue };
                let generational = name.starts_with("index.")
                    || name.starts_with("hints.")
                    || name.starts_with("integrity.");
                if generational && !name.ends_with(&current) {
                    let _ = self.dir.remove_file(name);
                }
            }
        }
        Ok(())
    }

    /// Rebuilds index and hints from the segments after `index_tid` up to `segments_tid`.
    pub(super) fn replay_segments(
        &mut self,
        index_tid: Option<u32>,
        segments_tid: u32,
    ) -> Result<(), RepoError> {
        // A shared lock is upgraded for the replay, as borg does by faking an old client.
        let remember_exclusive = self.exclusive.take();
        let result = self.replay_inner(index_tid, segments_tid);
        self.exclusive = remember_exclusive;
        self.rollback();
        result
    }

    fn replay_inner(&mut self, index_tid: Option<u32>, segments_tid: u32) -> Result<(), RepoError> {
        self.index = None;
        self.prepare_txn(index_tid, false)?;
        log::warn!(target: LOG, "Replaying segments. Please wait, this can take a while...");
        let segments = self
            .io
            .list()
            .map_err(|e| RepoError::io("cannot list segments", e))?;
        let mut progress = ProgressPercent::new(
            "repository.replay_segments",
            "Replaying segments",
            0,
            5.0,
            segments.len() as u64,
        );
        for (position, file) in segments.iter().enumerate() {
            progress.show(Some(position as u64));
            if index_tid.is_some_and(|tid| file.segment <= tid) {
                continue;
            }
            if file.segment > segments_tid {
                break;
            }
            let entries = self.read_segment_entries(file.segment)?;
            self.update_index(file.segment, &entries)?;
        }
        progress.finish();
        self.write_index()
    }

    /// Reads every entry of a segment with full crc verification (borg's
    /// `list(iter_objects(segment))`).
    pub(super) fn read_segment_entries(
        &mut self,
        segment: u32,
    ) -> Result<Vec<LoggedEntry>, SegmentError> {
        let mut entries = self.io.entries(segment, 0, ReadMode::Verified)?;
        let mut logged = Vec::new();
        while let Some(entry) = entries.next_entry()? {
            logged.push(LoggedEntry {
                kind: entry.kind,
                offset: entry.offset,
                size: entry.size,
            });
        }
        Ok(logged)
    }

    /// Applies one segment's entries to index and bookkeeping (borg's `_update_index`).
    pub(super) fn update_index(
        &mut self,
        segment: u32,
        entries: &[LoggedEntry],
    ) -> Result<(), RepoError> {
        self.books.segments.insert(segment, 0);
        for entry in entries {
            let size = u64::from(entry.size);
            let index = self
                .index
                .as_mut()
                .ok_or_else(|| RepoError::Internal("no index".into()))?;
            match entry.kind {
                EntryKind::Put { key } => {
                    if let Some((old_segment, _)) = index.get(&key) {
                        // borg charges the new entry's size to the old segment; matching it keeps
                        // hints identical to borg's.
                        self.books
                            .put_superseded(key, old_segment, || Ok::<_, RepoError>(size))?;
                    }
                    index
                        .insert(&key, segment, entry.offset)
                        .map_err(|e| RepoError::Internal(e.to_string()))?;
                    self.books.put_written(segment, size);
                }
                EntryKind::Delete { key } => {
                    if let Some((old_segment, old_offset)) = index.remove(&key) {
                        // A PUT in a segment compaction already removed needs no accounting.
                        if self.io.segment_exists(old_segment) {
                            let io = &mut self.io;
                            self.books.put_superseded(key, old_segment, || {
                                io.entry_size(old_segment, old_offset, &key).map(u64::from)
                            })?;
                        }
                    }
                }
                EntryKind::Commit => {}
            }
        }
        if self.books.segments.get(&segment) == Some(&0) {
            let size = self
                .io
                .segment_size(segment)
                .map_err(|e| RepoError::io("cannot stat segment", e))?;
            self.books.compact.insert(segment, size);
        }
        Ok(())
    }

    /// Freeable bytes of one segment relative to the index (borg's `_rebuild_sparse`, for
    /// hints written by borg 1.0).
    fn rebuild_sparse(&mut self, segment: u32) -> Result<(), RepoError> {
        let Ok(size) = self.io.segment_size(segment) else {
            self.books.segments.remove(&segment);
            return Ok(());
        };
        if self.books.segments.get(&segment).copied().unwrap_or(0) == 0 {
            self.books.compact.insert(segment, size);
            return Ok(());
        }
        let mut freeable = 0u64;
        let mut entries = self.io.entries(segment, 0, ReadMode::HeaderOnly)?;
        let index = self
            .index
            .as_ref()
            .ok_or_else(|| RepoError::Internal("no index".into()))?;
        while let Some(entry) = entries.next_entry()? {
            match entry.kind {
                EntryKind::Put { key } if index.get(&key) != Some((segment, entry.offset)) => {
                    freeable += u64::from(entry.size)
                }
                EntryKind::Delete { .. } => freeable += u64::from(entry.size),
                _ => {}
            }
        }
        self.books.compact.insert(segment, freeable);
        Ok(())
    }

    /// borg's pre-commit free-space check.
    fn check_free_space(&mut self) -> Result<(), RepoError> {
        let index_size = self.index.as_ref().map_or(0, NsIndex::size_on_disk);
        let mut required = index_size * 4;
        required +=
            (self.books.segments.len() as u64) * 10 + (self.books.compact.len() as u64) * 10 + 4096;
        required += self.additional_free_space;
        if !self.append_only {
            let full_segment = self.max_segment_size + MAX_OBJECT_SIZE;
            if self.books.compact.len() < 10 {
                let mut working = 0u64;
                let compact: Vec<(u32, u64)> =
                    self.books.compact.iter().map(|(s, f)| (*s, *f)).collect();
                for (segment, free) in compact {
                    if let Ok(size) = self.io.segment_size(segment) {
                        working += size.saturating_sub(free);
                    }
                }
                required += working.min(full_segment);
            } else {
                required += full_segment;
            }
        }
        let free = match self.dir.free_space() {
            Ok((free, _block)) => free,
            Err(error) => {
                log::warn!(target: LOG, "Failed to check free space before committing: {error}");
                return Ok(());
            }
        };
        log::debug!(target: LOG, "check_free_space: required bytes {required}, free bytes {free}");
        if free < required {
            if self.created {
                log::error!(target: LOG, "Not enough free space to initialize repository at this location.");
                let path = self.path.clone();
                self.rollback();
                let _ = std::fs::remove_file(path.join("config"));
                let _ = std::fs::remove_dir_all(&path);
            } else {
                self.rollback_with_cleanup();
            }
            return Err(RepoError::NotEnoughSpace {
                required: format_file_size(required as i64),
                available: format_file_size(free as i64),
            });
        }
        Ok(())
    }

    pub(super) fn log_storage_quota(&self) {
        if self.storage_quota != 0 {
            log::info!(
                target: LOG,
                "Storage quota: {} out of {} used.",
                format_file_size(i64::try_from(self.charged_use()).unwrap_or(i64::MAX)),
                format_file_size(self.storage_quota)
            );
        }
    }
}

/// Reads `index.N`, checked against the digests in `integrity.N` when there are any.
pub(super) fn read_index(repo: &Dir, tid: u32) -> Result<NsIndex, String> {
    let name = format!("index.{tid}");
    let path = repo.child_path(&name);
    let expected = expected_integrity(repo, tid, Part::Index, &path)?;
    let file = repo
        .open_file(&name, Access::Read)
        .map_err(|e| describe_io(&e, &path))?;
    let file_len = file.metadata().map_err(|e| describe_io(&e, &path))?.len();
    let mut reader = VerifyingReader {
        inner: BufReader::with_capacity(64 << 10, file),
        verifier: expected.map(|e| FileVerifier::new(e, &path)),
    };
    let header = IndexHeader::read_from(&mut reader).map_err(|e| e.to_string())?;
    reader.check_part(integrity::HASH_HEADER_PART)?;
    let index = NsIndex::read_buckets(header, &mut reader, file_len).map_err(|e| e.to_string())?;
    if let Some(verifier) = reader.verifier {
        verifier.check_final().map_err(|e| e.to_string())?;
    }
    Ok(index)
}

fn read_hints(repo: &Dir, tid: u32) -> Result<DecodedHints, String> {
    let name = format!("hints.{tid}");
    let path = repo.child_path(&name);
    let expected = expected_integrity(repo, tid, Part::Hints, &path)?;
    let bytes = repo.read(&name).map_err(|e| describe_io(&e, &path))?;
    if let Some(expected) = expected {
        integrity::verify_hints(expected, &path, &bytes).map_err(|e| e.to_string())?;
    }
    hints::decode(&bytes).map_err(|e| e.to_string())
}

#[derive(Clone, Copy)]
enum Part {
    Index,
    Hints,
}

/// The digests to check a file against, or `None` when there is nothing to check: no
/// `integrity.N` (borg < 1.1), an unknown version or an unknown algorithm (warned, as borg).
fn expected_integrity(
    repo: &Dir,
    tid: u32,
    part: Part,
    path: &Path,
) -> Result<Option<IntegrityData>, String> {
    let name = format!("integrity.{tid}");
    let bytes = match repo.read(&name) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(describe_io(&error, &repo.child_path(&name))),
    };
    let (hints, index) =
        match integrity::decode_integrity_file(&bytes).map_err(|e| format!("{name}: {e}"))? {
            IntegrityFile::Version2 { hints, index } => (hints, index),
            IntegrityFile::UnknownVersion(version) => {
                log::warn!(target: LOG, "Unknown integrity data version {version} in {name}");
                return Ok(None);
            }
        };
    let json = match part {
        Part::Index => index,
        Part::Hints => hints,
    };
    let Some(json) = json else {
        return Err(format!("{name} has no record for {}", path.display()));
    };
    match integrity::parse_integrity_json(path, &json).map_err(|e| e.to_string())? {
        Verification::Verify(expected) => Ok(Some(expected)),
        Verification::UnknownAlgorithm(algorithm) => {
            log::warn!(target: LOG, "Cannot verify integrity of {}: Unknown algorithm {algorithm}", path.display());
            Ok(None)
        }
    }
}

/// Python's `[Errno N] text: 'path'`, as borg's warnings show OS errors (a refused symlink
/// says so itself).
fn describe_io(error: &io::Error, path: &Path) -> String {
    if super::dir::is_symlink_refusal(error) {
        return error.to_string();
    }
    format!(
        "[Errno {}] {}: '{}'",
        error.raw_os_error().unwrap_or(0),
        crate::common::text::plain_io_error(error),
        path.display()
    )
}

/// A reader that feeds an integrity verifier (when there is one).
struct VerifyingReader<R> {
    inner: R,
    verifier: Option<FileVerifier>,
}

impl<R> VerifyingReader<R> {
    fn check_part(&mut self, part: &str) -> Result<(), String> {
        match self.verifier.as_mut() {
            Some(verifier) => verifier.check_part(part).map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }
}

impl<R: io::Read> io::Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        if let Some(verifier) = self.verifier.as_mut() {
            verifier.update(&buf[..read]);
        }
        Ok(read)
    }
}

/// Writes `name` under a temporary name through a digester and fsyncs it; returns the file
/// waiting for its rename, and its integrity record.
fn write_digested(
    repo: &Dir,
    name: &str,
    write: impl FnOnce(&mut DigestingWriter<AtomicWriter>) -> io::Result<()>,
) -> io::Result<(PendingRename, IntegrityData)> {
    let mut writer = DigestingWriter::new(AtomicWriter::create_in(repo, name)?, name);
    write(&mut writer)?;
    let (file, record) = writer.finish();
    Ok((file.finish()?, record))
}

/// borg's append-only `transactions` log line.
fn append_transaction_log(repo: &Dir, tid: u32) -> io::Result<()> {
    let now = crate::common::text::rfc3339(std::time::SystemTime::now());
    // RFC 3339 with microseconds: `2026-12-06T21:39:32.123456Z` -> borg's ISO_FORMAT without zone.
    let stamp = now.trim_end_matches('Z');
    let mut file = repo.open_file("transactions", Access::Append)?;
    writeln!(file, "transaction {tid}, UTC time {stamp}")
}
