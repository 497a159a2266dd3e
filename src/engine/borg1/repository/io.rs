//! Segment file I/O (borg's `LoggedIO`): the one open write segment, batched appends,
//! cached read handles, and the segment-level operations of transactions.
//!
//! Appends are collected in memory and written in large chunks; nothing is fsynced until a
//! segment is closed, which is what a commit does. Reads of the segment being written
//! flush the pending bytes first, so a transaction reads its own writes.
//!
//! What the segments cost on disk is counted here too ([`DiskUse`]): each file counts as its
//! length rounded up to whole blocks of the file system, at least one block. That is what
//! `du` reports for them, and what a quota must charge: the entry bytes borg counts miss that
//! every `put` of the manifest starts two segment files (a few dozen bytes each, a block each
//! on disk). The `data/N` directories (one per 1000 segments) are left out. The number of segment files one session may
//! create is bounded as well ([`SEGMENT_FILES_PER_SESSION`]).
//!
//! Segment files are reached from the repository's [`Dir`] handle through `data/` and
//! `data/N/`, never following a symlink (see `dir.rs`). Each access opens the two directories
//! again (two `openat` calls, no path walk from `/`): cheaper than keeping a cache coherent
//! with compaction's directory removals, and segment files are opened rarely (reads keep
//! their handles).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::num::NonZeroU32;

use super::dir::{Access, Dir, Kind};
use super::durable::{AtomicWriter, safe_unlink_in};
use super::segment::{
    self, COMMIT_ENTRY, MAGIC, MAGIC_LEN, MANIFEST_ID, ObjectId, ReadMode, SegmentEntries,
    SegmentError, SegmentFile,
};

/// Pending appends are written out when they reach this size.
const WRITE_BATCH: usize = 4 << 20;
/// Payloads at least this large are written straight from the caller's buffer.
const DIRECT_WRITE: usize = 256 << 10;
/// Read handles kept open (borg keeps up to 90).
const READ_HANDLES: usize = 64;

/// The segment being appended to.
struct WriteSegment {
    segment: u32,
    file: File,
    /// The `data/N` directory holding it (fsynced when the segment is closed).
    dir: Dir,
    /// Bytes accepted but not yet written to the file.
    pending: Vec<u8>,
    /// Logical end of the segment: file length plus pending bytes.
    offset: u64,
    /// Bytes written to the file so far.
    written: u64,
    /// Up to here the page cache was told to write back and drop what we wrote.
    advised: u64,
}

impl WriteSegment {
    /// Writes to the file, and every [`ADVICE_WINDOW`] asks the kernel to start writeback of
    /// the newest window and drop the one before it (written back by now), as borg's
    /// `SyncFile` does: a backup does not read its segments back, and a whole segment of dirty
    /// page cache costs more CPU than the copy itself.
    fn write_out(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.written += bytes.len() as u64;
        if self.written - self.advised >= ADVICE_WINDOW {
            let start = self.advised.saturating_sub(ADVICE_WINDOW);
            drop_from_cache(&self.file, start, self.written - start);
            self.advised = self.written;
        }
        Ok(())
    }

    /// Writes the pending bytes.
    fn write_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let result = self.write_out(&pending);
        self.pending = pending;
        self.pending.clear();
        result
    }
}

/// Page-cache advice granularity for segment writes.
const ADVICE_WINDOW: u64 = 16 << 20;

/// Segment files a session may create before it has written anything; it may create one more
/// for every [`SegmentIo::bytes_per_extra_file`] it writes (a MiB, or half a segment when an
/// administrator configured segments smaller than 2 MiB). A backup fills its segments, each
/// earning two more files than it takes, so it never comes near; a client that makes a
/// segment file per request (a `put` of the manifest starts two) is stopped after this many.
/// Clients cannot change the segment size (only a local `borg config` can).
pub(crate) const SEGMENT_FILES_PER_SESSION: u64 = 4096;
/// See [`SEGMENT_FILES_PER_SESSION`].
pub(crate) const BYTES_PER_EXTRA_SEGMENT_FILE: u64 = 1 << 20;

/// What the segment files use on disk, in bytes, as [`SegmentIo`] counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct DiskUse {
    /// The committed segments, measured when the transaction started.
    pub committed: u64,
    /// Segment files and directories created since then, as they will be on disk.
    pub written: u64,
}

impl DiskUse {
    pub(crate) fn total(&self) -> u64 {
        self.committed.saturating_add(self.written)
    }
}

/// The bytes a file of `len` bytes occupies: whole blocks, at least one.
pub(crate) fn blocks_for(len: u64, block: u64) -> u64 {
    len.max(1).div_ceil(block).saturating_mul(block)
}

/// The file system's allocation unit, within sane bounds (4096 when it cannot be asked).
fn allocation_unit(repo: &Dir) -> u64 {
    match repo.free_space() {
        Ok((_, block)) if (512..=1 << 20).contains(&block) => block,
        _ => 4096,
    }
}

/// Too many segment files for one session (see [`SEGMENT_FILES_PER_SESSION`]).
#[derive(Debug)]
pub(crate) struct SegmentFilesExhausted {
    pub created: u64,
    /// Written bytes that allow one more file.
    pub per: u64,
}

impl std::fmt::Display for SegmentFilesExhausted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "this session has created {} segment files, the most one session may create \
             for the data it wrote ({} plus one per {} KiB written); a client that starts a new \
             segment for every request fills the file system with tiny files",
            self.created,
            SEGMENT_FILES_PER_SESSION,
            self.per / 1024
        )
    }
}

impl std::error::Error for SegmentFilesExhausted {}

/// Advice only: failure changes nothing but speed.
fn drop_from_cache(file: &File, start: u64, len: u64) {
    let (Ok(start), Ok(len)) = (i64::try_from(start), i64::try_from(len)) else {
        return;
    };
    let _ = nix::fcntl::posix_fadvise(
        file,
        start,
        len,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
}

/// Where an entry was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    pub segment: u32,
    pub offset: u32,
    pub size: u32,
}

pub(crate) struct SegmentIo {
    repo: Dir,
    segments_per_dir: NonZeroU32,
    max_segment_size: u64,
    /// The number the next new segment gets.
    next_segment: u32,
    writer: Option<WriteSegment>,
    readers: HashMap<u32, (File, u64)>,
    read_clock: u64,
    read_buf: Vec<u8>,
    /// The file system's allocation unit.
    block: u64,
    /// Disk use of the segments; `committed` as measured for `measured_at`.
    disk_use: DiskUse,
    measured_at: Option<Option<u32>>,
    /// Segment files created, and entry bytes written, in this session.
    files_created: u64,
    bytes_written: u64,
}

impl SegmentIo {
    pub(crate) fn new(repo: Dir, segments_per_dir: NonZeroU32, max_segment_size: u64) -> SegmentIo {
        SegmentIo {
            block: allocation_unit(&repo),
            disk_use: DiskUse::default(),
            measured_at: None,
            files_created: 0,
            bytes_written: 0,
            repo,
            segments_per_dir,
            max_segment_size,
            next_segment: 0,
            writer: None,
            readers: HashMap::new(),
            read_clock: 0,
            read_buf: Vec::new(),
        }
    }

    /// `data/`, or `None` when the repository has none (yet).
    fn data(&self) -> io::Result<Option<Dir>> {
        match self.repo.subdir("data") {
            Ok(data) => Ok(Some(data)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The name of a segment's directory in `data/`, and of its file there.
    fn names(&self, segment: u32) -> (String, String) {
        (
            (segment / self.segments_per_dir.get()).to_string(),
            segment.to_string(),
        )
    }

    /// The `data/N` directory of `segment`.
    fn segment_dir(&self, segment: u32) -> io::Result<Dir> {
        let data = self
            .data()?
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        data.subdir(&self.names(segment).0)
    }

    /// Opens an existing segment file.
    fn open_segment_file(&self, segment: u32) -> io::Result<File> {
        open_segment_in(&self.repo, self.segments_per_dir, segment)
    }

    /// Every segment file, ascending, zero-length (logically deleted) ones included.
    pub(crate) fn list(&self) -> io::Result<Vec<SegmentFile>> {
        match self.data()? {
            Some(data) => segment::list_segments_in(&data, self.segments_per_dir),
            None => Ok(Vec::new()),
        }
    }

    pub(crate) fn latest_segment(&self) -> io::Result<Option<u32>> {
        match self.data()? {
            Some(data) => {
                Ok(segment::latest_segment_in(&data, self.segments_per_dir)?.map(|f| f.segment))
            }
            None => Ok(None),
        }
    }

    /// borg's `get_segments_transaction_id`: the highest committed segment.
    pub(crate) fn segments_transaction_id(&mut self) -> io::Result<Option<u32>> {
        self.flush()?;
        for file in self.list()?.iter().rev() {
            if file.len > 0 && segment::is_committed_file(&self.open_segment_file(file.segment)?)? {
                return Ok(Some(file.segment));
            }
        }
        Ok(None)
    }

    /// Whether a segment exists and is not logically deleted (zero length).
    pub(crate) fn segment_exists(&self, segment: u32) -> bool {
        self.stat_segment(segment)
            .is_ok_and(|stat| stat.is_some_and(|s| s.kind == Kind::File && s.len > 0))
    }

    fn stat_segment(&self, segment: u32) -> io::Result<Option<super::dir::Stat>> {
        match self.segment_dir(segment) {
            Ok(dir) => dir.stat(&self.names(segment).1),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    pub(crate) fn segment_size(&mut self, segment: u32) -> io::Result<u64> {
        if let Some(writer) = &self.writer {
            if writer.segment == segment {
                return Ok(writer.offset);
            }
        }
        match self.stat_segment(segment)? {
            Some(stat) => Ok(stat.len),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    /// Deletes segments above `transaction_id` (all of them for `None`) and starts writing
    /// after it (borg's `cleanup`). Measures the disk use of the segments that stay, on the way.
    pub(crate) fn cleanup(&mut self, transaction_id: Option<u32>) -> io::Result<usize> {
        self.abandon_segment();
        self.next_segment = transaction_id.map_or(0, |t| t + 1);
        let files = self.list()?;
        let mut removed = 0;
        for file in files.iter().rev() {
            if transaction_id.is_some_and(|t| file.segment <= t) {
                break;
            }
            self.delete_segment(file.segment)?;
            removed += 1;
        }
        let kept = &files[..files.len() - removed];
        self.disk_use.committed = self.disk_use_of(kept);
        self.measured_at = Some(transaction_id);
        Ok(removed)
    }

    /// Starts counting a transaction's disk use on top of the segments up to `transaction_id`
    /// (measured again unless [`SegmentIo::cleanup`] just did it for the same id).
    pub(crate) fn start_counting(&mut self, transaction_id: Option<u32>) -> io::Result<()> {
        if self.measured_at != Some(transaction_id) {
            let files = self.list()?;
            let kept: Vec<SegmentFile> = files
                .into_iter()
                .filter(|f| transaction_id.is_some_and(|t| f.segment <= t))
                .collect();
            self.disk_use.committed = self.disk_use_of(&kept);
        }
        self.measured_at = None;
        self.disk_use.written = 0;
        Ok(())
    }

    /// What the segments use on disk: the committed ones, and what this transaction added.
    pub(crate) fn disk_use(&self) -> DiskUse {
        self.disk_use
    }

    /// Written bytes that allow one more segment file (see [`SEGMENT_FILES_PER_SESSION`]).
    pub(crate) fn bytes_per_extra_file(&self) -> u64 {
        (self.max_segment_size / 2).clamp(4096, BYTES_PER_EXTRA_SEGMENT_FILE)
    }

    /// Every file in whole blocks.
    fn disk_use_of(&self, files: &[SegmentFile]) -> u64 {
        files
            .iter()
            .map(|file| blocks_for(file.len, self.block))
            .fold(0, u64::saturating_add)
    }

    pub(crate) fn delete_segment(&mut self, segment: u32) -> io::Result<()> {
        self.readers.remove(&segment);
        let removed = self
            .segment_dir(segment)
            .and_then(|dir| safe_unlink_in(&dir, &self.names(segment).1));
        match removed {
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Removes `data/N` directories that hold no segment any more.
    pub(crate) fn clear_empty_dirs(&self) -> io::Result<()> {
        let data = self
            .data()?
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        if let Ok(entries) = data.entries() {
            for (name, _) in entries {
                if let Some(name) = name.to_str() {
                    if segment::parse_canonical_u32(name).is_some() {
                        // Not empty (or not a directory): stays, as in borg.
                        let _ = data.remove_dir(name);
                    }
                }
            }
        }
        data.sync()
    }

    /// Appends a PUT. A new segment is started for the manifest and when the current one
    /// has passed the size limit (`full_ok = false` reports that as `Ok(None)` instead, for
    /// compaction's intermediate commits).
    pub(crate) fn write_put(
        &mut self,
        id: &ObjectId,
        data: &[u8],
        full_ok: bool,
    ) -> io::Result<Option<Written>> {
        let header = segment::put_header(id, data)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        if !self.prepare_write(*id == MANIFEST_ID, full_ok)? {
            return Ok(None);
        }
        self.append(&header, data).map(Some)
    }

    /// Appends a DELETE, under the same rules as [`SegmentIo::write_put`].
    pub(crate) fn write_delete(
        &mut self,
        id: &ObjectId,
        full_ok: bool,
    ) -> io::Result<Option<Written>> {
        if !self.prepare_write(*id == MANIFEST_ID, full_ok)? {
            return Ok(None);
        }
        self.append(&segment::delete_entry(id), &[]).map(Some)
    }

    /// Writes a COMMIT and closes its segment (fsync of file and directory). A final
    /// commit gets a segment of its own; an intermediate one (compaction) goes into the
    /// current segment after an fsync. Returns the segment holding the commit.
    pub(crate) fn write_commit(&mut self, intermediate: bool) -> io::Result<u32> {
        if intermediate {
            if self.writer.is_none() {
                self.open_segment()?;
            } else {
                self.sync_current()?;
            }
        } else {
            self.close_segment()?;
            self.open_segment()?;
        }
        self.append(&COMMIT_ENTRY, &[])?;
        let segment = self
            .writer
            .as_ref()
            .map_or(self.next_segment, |w| w.segment);
        self.close_segment()?;
        Ok(segment)
    }

    /// Decides whether the next entry goes into a new segment; `Ok(false)` means "full" when
    /// the caller asked to be told instead.
    fn prepare_write(&mut self, want_new: bool, full_ok: bool) -> io::Result<bool> {
        let full = self
            .writer
            .as_ref()
            .is_some_and(|w| w.offset > self.max_segment_size);
        if want_new || full {
            if !full_ok && self.writer.is_some() {
                return Ok(false);
            }
            self.close_segment()?;
        }
        if self.writer.is_none() {
            self.open_segment()?;
        }
        Ok(true)
    }

    fn open_segment(&mut self) -> io::Result<()> {
        let allowed = SEGMENT_FILES_PER_SESSION
            .saturating_add(self.bytes_written / self.bytes_per_extra_file());
        if self.files_created >= allowed {
            return Err(io::Error::other(SegmentFilesExhausted {
                created: self.files_created,
                per: self.bytes_per_extra_file(),
            }));
        }
        let segment = self.next_segment;
        let data = match self.data()? {
            Some(data) => data,
            None => {
                self.repo.create_subdir("data")?;
                self.repo.sync()?;
                self.repo.subdir("data")?
            }
        };
        let (dir_name, file_name) = self.names(segment);
        if data.create_subdir(&dir_name)? {
            data.sync()?;
        }
        let dir = data.subdir(&dir_name)?;
        let file = dir.open_file(&file_name, Access::CreateNew)?;
        self.files_created += 1;
        self.disk_use.written += blocks_for(MAGIC_LEN as u64, self.block);
        self.readers.remove(&segment);
        let mut pending = Vec::with_capacity(WRITE_BATCH);
        pending.extend_from_slice(MAGIC);
        self.writer = Some(WriteSegment {
            segment,
            file,
            dir,
            pending,
            offset: MAGIC_LEN as u64,
            written: 0,
            advised: 0,
        });
        Ok(())
    }

    fn append(&mut self, header: &[u8], data: &[u8]) -> io::Result<Written> {
        let writer = self
            .writer
            .as_mut()
            .ok_or_else(|| io::Error::other("no open segment"))?;
        let offset = u32::try_from(writer.offset).map_err(|_| {
            io::Error::other("segment offset beyond 4 GiB; max_segment_size is too large")
        })?;
        let size = (header.len() + data.len()) as u32;
        if data.len() >= DIRECT_WRITE {
            writer.pending.extend_from_slice(header);
            writer.write_pending()?;
            writer.write_out(data)?;
        } else {
            writer.pending.extend_from_slice(header);
            writer.pending.extend_from_slice(data);
            if writer.pending.len() >= WRITE_BATCH {
                writer.write_pending()?;
            }
        }
        let before = writer.offset;
        writer.offset += u64::from(size);
        let (after, segment) = (writer.offset, writer.segment);
        self.bytes_written += u64::from(size);
        self.disk_use.written +=
            blocks_for(after, self.block).saturating_sub(blocks_for(before, self.block));
        Ok(Written {
            segment,
            offset,
            size,
        })
    }

    /// Writes pending bytes of the current segment to the file (no fsync).
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        match self.writer.as_mut() {
            Some(writer) => writer.write_pending(),
            None => Ok(()),
        }
    }

    fn sync_current(&mut self) -> io::Result<()> {
        self.flush()?;
        if let Some(writer) = &self.writer {
            writer.file.sync_data()?;
        }
        Ok(())
    }

    /// Flushes, fsyncs and closes the current segment, and fsyncs its directory.
    pub(crate) fn close_segment(&mut self) -> io::Result<()> {
        self.sync_current()?;
        if let Some(writer) = self.writer.take() {
            // Durable now: nothing of it needs to stay in the page cache.
            drop_from_cache(&writer.file, 0, 0);
            self.next_segment = writer.segment + 1;
            writer.dir.sync()?;
        }
        Ok(())
    }

    /// Continues writing at `segment` (check --repair adds a commit after the last segment).
    pub(crate) fn set_next_segment(&mut self, segment: u32) {
        self.abandon_segment();
        self.next_segment = segment;
    }

    /// Drops the current segment without syncing (rollback; the file is garbage that the
    /// next transaction deletes).
    pub(crate) fn abandon_segment(&mut self) {
        if let Some(writer) = self.writer.take() {
            self.next_segment = writer.segment + 1;
        }
    }

    /// Reads and verifies the PUT of `id` at (segment, offset); the data borrows an
    /// internal buffer.
    pub(crate) fn read(
        &mut self,
        segment: u32,
        offset: u32,
        id: &ObjectId,
    ) -> Result<&[u8], SegmentError> {
        self.flush_if_writing(segment)?;
        let (repo, per_dir) = (&self.repo, self.segments_per_dir);
        let file = cached_reader(&mut self.readers, &mut self.read_clock, segment, || {
            open_segment_in(repo, per_dir, segment)
        })?;
        segment::read_put(file, segment, offset, id, &mut self.read_buf)
    }

    /// The size of the PUT of `id` at (segment, offset), from its header only.
    pub(crate) fn entry_size(
        &mut self,
        segment: u32,
        offset: u32,
        id: &ObjectId,
    ) -> Result<u32, SegmentError> {
        self.flush_if_writing(segment)?;
        let (repo, per_dir) = (&self.repo, self.segments_per_dir);
        let file = cached_reader(&mut self.readers, &mut self.read_clock, segment, || {
            open_segment_in(repo, per_dir, segment)
        })?;
        segment::entry_size_at(file, segment, offset, id)
    }

    /// An entry reader over one segment, from `offset`.
    pub(crate) fn entries(
        &mut self,
        segment: u32,
        offset: u32,
        mode: ReadMode,
    ) -> Result<SegmentEntries<File>, SegmentError> {
        self.flush_if_writing(segment)?;
        let file = self.open_segment_file(segment)?;
        Ok(SegmentEntries::new(file, segment, offset, mode))
    }

    pub(crate) fn segment_magic(&mut self, segment: u32) -> io::Result<Vec<u8>> {
        let (repo, per_dir) = (&self.repo, self.segments_per_dir);
        let file = cached_reader(&mut self.readers, &mut self.read_clock, segment, || {
            open_segment_in(repo, per_dir, segment)
        })?;
        segment::read_magic(file)
    }

    /// Rewrites a damaged segment with only its valid entries, atomically (borg's
    /// `recover_segment`).
    pub(crate) fn recover_segment(&mut self, segment: u32) -> io::Result<()> {
        self.forget_readers();
        let dir = self.segment_dir(segment)?;
        let name = self.names(segment).1;
        let source = dir.open_file(&name, Access::Read)?;
        let mut writer = AtomicWriter::create_in(&dir, &name)?;
        segment::recover_segment_file(&source, &mut writer)?;
        writer.commit()
    }

    fn flush_if_writing(&mut self, segment: u32) -> io::Result<()> {
        if self.writer.as_ref().is_some_and(|w| w.segment == segment) {
            self.flush()?;
        }
        Ok(())
    }

    /// Forgets every cached read handle (after segments were rewritten in place).
    pub(crate) fn forget_readers(&mut self) {
        self.readers.clear();
    }
}

/// A cached read handle for `segment`, least recently used ones closed first.
fn cached_reader<'a>(
    readers: &'a mut HashMap<u32, (File, u64)>,
    clock: &mut u64,
    segment: u32,
    open: impl FnOnce() -> io::Result<File>,
) -> io::Result<&'a File> {
    *clock += 1;
    if !readers.contains_key(&segment) {
        let file = open()?;
        if readers.len() >= READ_HANDLES {
            if let Some(oldest) = readers
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(s, _)| *s)
            {
                readers.remove(&oldest);
            }
        }
        readers.insert(segment, (file, *clock));
    }
    let entry = readers
        .get_mut(&segment)
        .ok_or_else(|| io::Error::other("segment handle vanished"))?;
    entry.1 = *clock;
    Ok(&entry.0)
}

/// Opens segment `segment` of the repository `repo` for reading: `data/`, `data/N/`, the file,
/// each without following a symlink.
fn open_segment_in(repo: &Dir, segments_per_dir: NonZeroU32, segment: u32) -> io::Result<File> {
    repo.subdir("data")?
        .subdir(&(segment / segments_per_dir.get()).to_string())?
        .open_file(&segment.to_string(), Access::Read)
}
