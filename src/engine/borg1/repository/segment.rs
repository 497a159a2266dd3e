//! Segment files: the `BORG_SEG` magic and the PUT/DELETE/COMMIT entry codec with its crc32.
//!
//! Everything here is format, not policy: encoders for entry headers, validated positional reads of one
//! entry (`get`), a streaming entry reader over one segment file, the "is this segment committed" test,
//! `check --repair`'s byte-wise salvage, and the numeric layout of `data/<dir>/<segment>` files.
//! The checks and their IntegrityError texts follow `LoggedIO._read`/`iter_objects` of borg 1.4.5
//! (`repository.py:1567-1706`), because clients print these messages.

use std::borrow::Borrow;
use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::num::NonZeroU32;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::dir::{Dir, Kind, SymlinkRefused};

/// The first 8 bytes of every segment file.
pub const MAGIC: &[u8; 8] = b"BORG_SEG";
/// The magic of never-upgraded Attic repositories, which borg refuses to open.
pub const ATTIC_MAGIC: &[u8; 8] = b"ATTICSEG";
/// Length of [`MAGIC`]; the first entry of a segment starts here.
pub const MAGIC_LEN: usize = 8;
/// Generic entry header: crc32 (u32 LE), size (u32 LE), tag (u8).
pub const HEADER_SIZE: usize = 9;
/// PUT/DELETE header: the generic header followed by the 32-byte key.
pub const PUT_HEADER_SIZE: usize = 41;
/// Largest entry (header included) borg reads or writes.
pub const MAX_OBJECT_SIZE: usize = 20 * 1024 * 1024;
/// Largest PUT payload: `MAX_OBJECT_SIZE - PUT_HEADER_SIZE`.
pub const MAX_DATA_SIZE: usize = 20_971_479;
/// Tags above this value are treated as corruption by `check --repair`.
pub const MAX_TAG_ID: u8 = 15;
/// The only COMMIT entry borg writes: crc32 of `09 00 00 00 02`, then those 5 bytes.
pub const COMMIT_ENTRY: [u8; HEADER_SIZE] = [0x40, 0xf4, 0x3c, 0x25, 0x09, 0x00, 0x00, 0x00, 0x02];
/// A file holding only the magic and one COMMIT (the shape of every final commit segment).
pub const COMMIT_ONLY_SEGMENT_LEN: u64 = (MAGIC_LEN + HEADER_SIZE) as u64;
/// `max_segment_size` must stay below this, so that every entry offset fits the index's u32.
pub const MAX_SEGMENT_SIZE_LIMIT: u64 = (1 << 32) - MAX_OBJECT_SIZE as u64;

/// A repository object id (the client's chunk id).
pub type ObjectId = [u8; 32];
/// The manifest's id: 32 zero bytes. Its PUT and DELETE always start a new segment.
pub const MANIFEST_ID: ObjectId = [0; 32];

const _: () = assert!(MAX_DATA_SIZE + PUT_HEADER_SIZE == MAX_OBJECT_SIZE);

/// Entry type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Tag {
    Put = 0,
    Delete = 1,
    Commit = 2,
}

impl Tag {
    pub fn from_u8(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(Self::Put),
            1 => Some(Self::Delete),
            2 => Some(Self::Commit),
            _ => None,
        }
    }
}

/// A segment defect, with borg's IntegrityError text as `Display` (clients print it verbatim).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntegrityError {
    /// The file does not start with [`MAGIC`].
    BadMagic { segment: u32 },
    /// Fewer header bytes than `header_size` (9, or 41 for a `get`) were left in the file.
    ShortHeader {
        segment: u32,
        offset: u64,
        header_size: usize,
    },
    /// The size field exceeds [`MAX_OBJECT_SIZE`].
    SizeTooBig {
        segment: u32,
        offset: u64,
        size: u32,
    },
    /// The size field is below the header size (9, or 41 for PUT and DELETE).
    SizeTooSmall {
        segment: u32,
        offset: u64,
        size: u32,
    },
    /// The file ended inside the entry body.
    ShortData {
        segment: u32,
        offset: u64,
        expected: u64,
        got: u64,
    },
    /// Header-only reading: the file ended inside a PUT/DELETE key.
    ShortKey {
        segment: u32,
        offset: u64,
        got: usize,
    },
    /// crc32 over size, tag, key and data does not match.
    ChecksumMismatch { segment: u32, offset: u64 },
    /// A tag that is unknown, or not PUT where a PUT was required.
    UnacceptableTag { segment: u32, offset: u64 },
    /// The PUT found at an indexed position is for another id.
    WrongId { segment: u32, offset: u64 },
    /// An entry starts beyond 4 GiB - 1, which no index value can address.
    OffsetTooLarge { segment: u32, offset: u64 },
    /// A PUT payload longer than [`MAX_DATA_SIZE`] was offered for writing.
    PutDataTooLarge { len: usize },
}

impl fmt::Display for IntegrityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BadMagic { segment } => {
                write!(f, "Invalid segment magic [segment {segment}, offset 0]")
            }
            Self::ShortHeader {
                segment,
                offset,
                header_size,
            } => write!(
                f,
                "Invalid segment entry header [segment {segment}, offset {offset}]: unpack requires a buffer of {header_size} bytes"
            ),
            Self::SizeTooBig {
                segment,
                offset,
                size,
            } => write!(
                f,
                "Invalid segment entry size {size} - too big [segment {segment}, offset {offset}]"
            ),
            Self::SizeTooSmall {
                segment,
                offset,
                size,
            } => write!(
                f,
                "Invalid segment entry size {size} - too small [segment {segment}, offset {offset}]"
            ),
            Self::ShortData {
                segment,
                offset,
                expected,
                got,
            } => write!(
                f,
                "Segment entry data short read [segment {segment}, offset {offset}]: expected {expected}, got {got} bytes"
            ),
            Self::ShortKey {
                segment,
                offset,
                got,
            } => write!(
                f,
                "Segment entry key short read [segment {segment}, offset {offset}]: expected 32, got {got} bytes"
            ),
            Self::ChecksumMismatch { segment, offset } => {
                write!(
                    f,
                    "Segment entry checksum mismatch [segment {segment}, offset {offset}]"
                )
            }
            Self::UnacceptableTag { segment, offset } => write!(
                f,
                "Invalid segment entry header, did not get acceptable tag [segment {segment}, offset {offset}]"
            ),
            Self::WrongId { segment, offset } => write!(
                f,
                "Invalid segment entry header, is not for wanted id [segment {segment}, offset {offset}]"
            ),
            Self::OffsetTooLarge { segment, offset } => write!(
                f,
                "Invalid segment entry offset {offset} - segment exceeds 4 GiB [segment {segment}, offset {offset}]"
            ),
            Self::PutDataTooLarge { len } => {
                write!(f, "More than allowed put data [{len} > {MAX_DATA_SIZE}]")
            }
        }
    }
}

impl std::error::Error for IntegrityError {}

/// Reading a segment failed: either the bytes are bad (borg's IntegrityError) or the file system failed.
#[derive(Debug)]
pub enum SegmentError {
    Integrity(IntegrityError),
    Io(io::Error),
}

impl fmt::Display for SegmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Integrity(err) => err.fmt(f),
            Self::Io(err) => write!(f, "segment file I/O error: {err}"),
        }
    }
}

impl std::error::Error for SegmentError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Integrity(err) => Some(err),
            Self::Io(err) => Some(err),
        }
    }
}

impl From<IntegrityError> for SegmentError {
    fn from(err: IntegrityError) -> Self {
        Self::Integrity(err)
    }
}

impl From<io::Error> for SegmentError {
    fn from(err: io::Error) -> Self {
        Self::Io(err)
    }
}

// ---------------------------------------------------------------------------------------------------
// Encoding

/// The 41-byte header of a PUT of `data` under `id`; write it, then `data`, to append the entry.
/// The crc32 covers size, tag, key and data, fed piecewise so the payload is never copied.
pub fn put_header(id: &ObjectId, data: &[u8]) -> Result<[u8; PUT_HEADER_SIZE], IntegrityError> {
    let size = put_entry_size(data.len())?;
    Ok(keyed_header(Tag::Put, size, id, data))
}

/// The size of a PUT entry carrying `data_len` payload bytes, or borg's "More than allowed put data".
pub fn put_entry_size(data_len: usize) -> Result<u32, IntegrityError> {
    if data_len > MAX_DATA_SIZE {
        return Err(IntegrityError::PutDataTooLarge { len: data_len });
    }
    // Cannot truncate: MAX_OBJECT_SIZE fits in u32.
    Ok((data_len + PUT_HEADER_SIZE) as u32)
}

/// The complete 41-byte DELETE entry for `id`.
pub fn delete_entry(id: &ObjectId) -> [u8; PUT_HEADER_SIZE] {
    keyed_header(Tag::Delete, PUT_HEADER_SIZE as u32, id, &[])
}

fn keyed_header(tag: Tag, size: u32, id: &ObjectId, data: &[u8]) -> [u8; PUT_HEADER_SIZE] {
    let mut header = [0u8; PUT_HEADER_SIZE];
    header[4..8].copy_from_slice(&size.to_le_bytes());
    header[8] = tag as u8;
    header[9..].copy_from_slice(id);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header[4..]);
    crc.update(data);
    header[..4].copy_from_slice(&crc.finalize().to_le_bytes());
    header
}

/// The crc32 borg stores for an entry: over everything after the crc field.
fn entry_crc(entry_after_crc: &[u8]) -> u32 {
    crc32fast::hash(entry_after_crc)
}

// ---------------------------------------------------------------------------------------------------
// Header parsing

#[derive(Debug, Clone, Copy)]
struct RawHeader {
    crc: u32,
    size: u32,
    tag: u8,
}

fn parse_header(bytes: &[u8]) -> Option<RawHeader> {
    let header: &[u8; HEADER_SIZE] = bytes.get(..HEADER_SIZE)?.try_into().ok()?;
    Some(RawHeader {
        crc: u32::from_le_bytes([header[0], header[1], header[2], header[3]]),
        size: u32::from_le_bytes([header[4], header[5], header[6], header[7]]),
        tag: header[8],
    })
}

fn check_size_bounds(
    size: u32,
    minimum: usize,
    segment: u32,
    offset: u64,
) -> Result<(), IntegrityError> {
    if size as usize > MAX_OBJECT_SIZE {
        return Err(IntegrityError::SizeTooBig {
            segment,
            offset,
            size,
        });
    }
    if (size as usize) < minimum {
        return Err(IntegrityError::SizeTooSmall {
            segment,
            offset,
            size,
        });
    }
    Ok(())
}

fn key_from(bytes: &[u8]) -> ObjectId {
    let mut key = [0u8; 32];
    key.copy_from_slice(&bytes[..32]);
    key
}

/// `pread` until `buf` is full or the file ends; returns the number of bytes read.
fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(done)
}

// ---------------------------------------------------------------------------------------------------
// Positional reads of one indexed entry (`get`, and the size lookups of `delete` and replay)

/// Reads and fully verifies the PUT of `id` at `offset` (borg's `LoggedIO.read(segment, offset, id)`):
/// size bounds, complete body, crc32, tag PUT, key equal to `id`. Returns the payload, which lives in
/// `buf`; `buf` only ever grows (up to [`MAX_DATA_SIZE`]), so reusing it avoids allocation and zeroing.
pub fn read_put<'buf>(
    file: &File,
    segment: u32,
    offset: u32,
    id: &ObjectId,
    buf: &'buf mut Vec<u8>,
) -> Result<&'buf [u8], SegmentError> {
    let position = u64::from(offset);
    let (header, raw) = read_put_header(file, segment, position)?;
    let data_len = raw.size as usize - PUT_HEADER_SIZE;
    if buf.len() < data_len {
        buf.resize(data_len, 0);
    }
    let data = &mut buf[..data_len];
    let got = read_at_most(file, data, position + PUT_HEADER_SIZE as u64)?;
    if got != data_len {
        return Err(IntegrityError::ShortData {
            segment,
            offset: position,
            expected: data_len as u64,
            got: got as u64,
        }
        .into());
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header[4..]);
    crc.update(data);
    if crc.finalize() != raw.crc {
        return Err(IntegrityError::ChecksumMismatch {
            segment,
            offset: position,
        }
        .into());
    }
    check_put_of(&raw, &header, id, segment, position)?;
    Ok(&buf[..data_len])
}

/// The size of the PUT of `id` at `offset`, checking only its header (borg's `read(..., read_data=False)`):
/// size bounds, tag PUT and key. No crc; the answer is informational, as in borg.
pub fn entry_size_at(
    file: &File,
    segment: u32,
    offset: u32,
    id: &ObjectId,
) -> Result<u32, SegmentError> {
    let position = u64::from(offset);
    let (header, raw) = read_put_header(file, segment, position)?;
    check_put_of(&raw, &header, id, segment, position)?;
    Ok(raw.size)
}

/// Reads the PUT-sized header at `position` and checks its size field against borg's bounds.
fn read_put_header(
    file: &File,
    segment: u32,
    position: u64,
) -> Result<([u8; PUT_HEADER_SIZE], RawHeader), SegmentError> {
    let short_header = || IntegrityError::ShortHeader {
        segment,
        offset: position,
        header_size: PUT_HEADER_SIZE,
    };
    let mut header = [0u8; PUT_HEADER_SIZE];
    let got = read_at_most(file, &mut header, position)?;
    if got != PUT_HEADER_SIZE {
        return Err(short_header().into());
    }
    let raw = parse_header(&header).ok_or_else(short_header)?;
    check_size_bounds(raw.size, PUT_HEADER_SIZE, segment, position)?;
    Ok((header, raw))
}

/// The entry must be a PUT of `id` (checked after the crc, in borg's order).
fn check_put_of(
    raw: &RawHeader,
    header: &[u8; PUT_HEADER_SIZE],
    id: &ObjectId,
    segment: u32,
    position: u64,
) -> Result<(), SegmentError> {
    if raw.tag != Tag::Put as u8 {
        return Err(IntegrityError::UnacceptableTag {
            segment,
            offset: position,
        }
        .into());
    }
    if header[9..] != id[..] {
        return Err(IntegrityError::WrongId {
            segment,
            offset: position,
        }
        .into());
    }
    Ok(())
}

/// Reads the first 8 bytes (to tell `BORG_SEG` from `ATTICSEG`); shorter files give fewer bytes.
pub fn read_magic(file: &File) -> io::Result<Vec<u8>> {
    let mut magic = [0u8; MAGIC_LEN];
    let got = read_at_most(file, &mut magic, 0)?;
    Ok(magic[..got].to_vec())
}

// ---------------------------------------------------------------------------------------------------
// Streaming entry reader

/// How much of each entry [`SegmentEntries`] reads and checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// Read each whole entry, verify its crc32, and yield its data (compaction; borg's `include_data=True`).
    WithData,
    /// Read each whole entry and verify its crc32, but yield no data (replay, check, commit detection;
    /// borg's default `read_data=True`). Streams bodies through the buffer without growing it.
    Verified,
    /// Read headers (and keys) only and skip bodies without a crc check (scan, sparse rebuild;
    /// borg's `read_data=False`). Like borg, a body cut short by the end of the file is not noticed.
    HeaderOnly,
}

/// What an entry is, with its key where it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Put { key: ObjectId },
    Delete { key: ObjectId },
    Commit,
}

/// One entry yielded by [`SegmentEntries`]. `data` borrows the reader's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'buf> {
    pub kind: EntryKind,
    /// Where the entry starts in the segment file.
    pub offset: u32,
    /// Total entry length, header included (what borg adds to `compact` and the quota).
    pub size: u32,
    /// The bytes after the header and key (the PUT payload). Empty unless [`ReadMode::WithData`].
    pub data: &'buf [u8],
}

impl Entry<'_> {
    pub fn tag(&self) -> Tag {
        match self.kind {
            EntryKind::Put { .. } => Tag::Put,
            EntryKind::Delete { .. } => Tag::Delete,
            EntryKind::Commit => Tag::Commit,
        }
    }

    pub fn key(&self) -> Option<&ObjectId> {
        match &self.kind {
            EntryKind::Put { key } | EntryKind::Delete { key } => Some(key),
            EntryKind::Commit => None,
        }
    }
}

/// Bytes requested per read while streaming bodies.
const STREAM_READ_SIZE: usize = 1 << 20;
/// Bytes requested per read in header-only mode: large enough for runs of small entries, small enough
/// not to drag multi-megabyte bodies through memory just to skip them.
const HEADER_READ_SIZE: usize = 64 << 10;

/// Reads the entries of one segment file in order, like borg's `iter_objects`, with positional reads
/// into one reusable buffer (no allocation per entry).
///
/// ```no_run
/// # use borg_gate::engine::borg1::repository::segment::*;
/// # fn demo(file: std::fs::File) -> Result<(), SegmentError> {
/// let mut entries = SegmentEntries::new(&file, 7, 0, ReadMode::Verified);
/// while let Some(entry) = entries.next_entry()? {
///     println!("{:?} at {}", entry.tag(), entry.offset);
/// }
/// # Ok(()) }
/// ```
///
/// Starting at offset 0 verifies the magic first; any other start offset must point at an entry.
/// After the first error the reader is finished and yields `None`.
pub struct SegmentEntries<F: Borrow<File>> {
    file: F,
    segment: u32,
    mode: ReadMode,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_start: u64,
    /// Valid bytes in `buf`.
    buf_len: usize,
    /// Offset of the next entry (or of the magic, before it was checked).
    offset: u64,
    state: ReaderState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReaderState {
    NeedMagic,
    Running,
    Finished,
}

impl<F: Borrow<File>> SegmentEntries<F> {
    pub fn new(file: F, segment: u32, start_offset: u32, mode: ReadMode) -> Self {
        Self::with_buffer(file, segment, start_offset, mode, Vec::new())
    }

    /// Like [`SegmentEntries::new`], reusing a buffer from [`SegmentEntries::into_buffer`] of an earlier reader.
    pub fn with_buffer(
        file: F,
        segment: u32,
        start_offset: u32,
        mode: ReadMode,
        buffer: Vec<u8>,
    ) -> Self {
        if mode != ReadMode::HeaderOnly {
            advise_sequential(file.borrow());
        }
        Self {
            file,
            segment,
            mode,
            buf: buffer,
            buf_start: u64::from(start_offset),
            buf_len: 0,
            offset: u64::from(start_offset),
            state: if start_offset == 0 {
                ReaderState::NeedMagic
            } else {
                ReaderState::Running
            },
        }
    }

    /// Gives the buffer back for reuse by the next reader.
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }

    pub fn segment(&self) -> u32 {
        self.segment
    }

    /// Offset of the next entry, i.e. the end of the last entry yielded.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next entry, `None` at the end of the file (or after an error was returned).
    pub fn next_entry(&mut self) -> Result<Option<Entry<'_>>, SegmentError> {
        if self.state == ReaderState::Finished {
            return Ok(None);
        }
        match self.advance() {
            Ok(Some(found)) => {
                let data = &self.buf[found.data.0..found.data.1];
                Ok(Some(Entry {
                    kind: found.kind,
                    offset: found.offset,
                    size: found.size,
                    data,
                }))
            }
            Ok(None) => {
                self.state = ReaderState::Finished;
                Ok(None)
            }
            Err(err) => {
                self.state = ReaderState::Finished;
                Err(err)
            }
        }
    }

    fn advance(&mut self) -> Result<Option<Found>, SegmentError> {
        let segment = self.segment;
        if self.state == ReaderState::NeedMagic {
            let available = self.fill(0, MAGIC_LEN, MAGIC_LEN)?;
            if available < MAGIC_LEN || self.bytes(0, MAGIC_LEN) != MAGIC {
                return Err(IntegrityError::BadMagic { segment }.into());
            }
            self.offset = MAGIC_LEN as u64;
            self.state = ReaderState::Running;
        }
        let offset = self.offset;
        let read_size = if self.mode == ReadMode::HeaderOnly {
            HEADER_READ_SIZE
        } else {
            STREAM_READ_SIZE
        };
        let available = self.fill(offset, HEADER_SIZE, read_size)?;
        if available == 0 {
            return Ok(None);
        }
        let raw =
            parse_header(self.bytes(offset, available)).ok_or(IntegrityError::ShortHeader {
                segment,
                offset,
                header_size: HEADER_SIZE,
            })?;
        check_size_bounds(raw.size, HEADER_SIZE, segment, offset)?;
        let tag = Tag::from_u8(raw.tag);
        if matches!(tag, Some(Tag::Put | Tag::Delete)) && (raw.size as usize) < PUT_HEADER_SIZE {
            // borg would yield a key shorter than 32 bytes here; no valid writer produces this.
            return Err(IntegrityError::SizeTooSmall {
                segment,
                offset,
                size: raw.size,
            }
            .into());
        }
        let entry_offset = u32::try_from(offset)
            .map_err(|_| IntegrityError::OffsetTooLarge { segment, offset })?;
        let size = raw.size as usize;
        let body_start = match tag {
            Some(Tag::Put | Tag::Delete) => PUT_HEADER_SIZE,
            _ => HEADER_SIZE,
        };
        let short_data = |got: usize| IntegrityError::ShortData {
            segment,
            offset,
            expected: (size - HEADER_SIZE) as u64,
            got: got.saturating_sub(HEADER_SIZE) as u64,
        };
        // Entries that fit one read are checked in place; larger ones stream in Verified mode so the
        // buffer does not grow to 20 MiB just to compute a crc.
        let body = match self.mode {
            ReadMode::HeaderOnly => Body::Skipped,
            ReadMode::Verified if size > read_size => Body::Streamed,
            ReadMode::Verified | ReadMode::WithData => Body::InPlace,
        };
        let (key, data) = match body {
            Body::InPlace => {
                let available = self.fill(offset, size, read_size)?;
                if available < size {
                    return Err(short_data(available).into());
                }
                let entry = self.bytes(offset, size);
                if entry_crc(&entry[4..]) != raw.crc {
                    return Err(IntegrityError::ChecksumMismatch { segment, offset }.into());
                }
                let key = (body_start == PUT_HEADER_SIZE).then(|| key_from(&entry[HEADER_SIZE..]));
                let start = self.index_of(offset);
                let data = if self.mode == ReadMode::WithData {
                    (start + body_start, start + size)
                } else {
                    (0, 0)
                };
                (key, data)
            }
            Body::Streamed => {
                let key_end = body_start.min(size);
                let available = self.fill(offset, key_end, read_size)?;
                if available < key_end {
                    return Err(short_data(available).into());
                }
                let key = (body_start == PUT_HEADER_SIZE)
                    .then(|| key_from(&self.bytes(offset, key_end)[HEADER_SIZE..]));
                let mut crc = crc32fast::Hasher::new();
                let end = offset + size as u64;
                let mut position = offset + 4;
                while position < end {
                    let wanted = (end - position).min(read_size as u64) as usize;
                    let available = self.fill(position, 1, read_size)?.min(wanted);
                    if available == 0 {
                        return Err(short_data((position - offset) as usize).into());
                    }
                    crc.update(self.bytes(position, available));
                    position += available as u64;
                }
                if crc.finalize() != raw.crc {
                    return Err(IntegrityError::ChecksumMismatch { segment, offset }.into());
                }
                (key, (0, 0))
            }
            Body::Skipped => {
                let key = if body_start == PUT_HEADER_SIZE {
                    let available = self.fill(offset, PUT_HEADER_SIZE, read_size)?;
                    if available < PUT_HEADER_SIZE {
                        let got = available.saturating_sub(HEADER_SIZE);
                        return Err(IntegrityError::ShortKey {
                            segment,
                            offset,
                            got,
                        }
                        .into());
                    }
                    Some(key_from(
                        &self.bytes(offset, PUT_HEADER_SIZE)[HEADER_SIZE..],
                    ))
                } else {
                    None
                };
                (key, (0, 0))
            }
        };
        let kind = match (tag, key) {
            (Some(Tag::Put), Some(key)) => EntryKind::Put { key },
            (Some(Tag::Delete), Some(key)) => EntryKind::Delete { key },
            (Some(Tag::Commit), _) => EntryKind::Commit,
            _ => return Err(IntegrityError::UnacceptableTag { segment, offset }.into()),
        };
        self.offset = offset + size as u64;
        Ok(Some(Found {
            kind,
            offset: entry_offset,
            size: raw.size,
            data,
        }))
    }

    /// Index into `buf` of file position `position`, which must be buffered.
    fn index_of(&self, position: u64) -> usize {
        (position - self.buf_start) as usize
    }

    /// `len` buffered bytes starting at file position `position` (both checked by a preceding `fill`).
    fn bytes(&self, position: u64, len: usize) -> &[u8] {
        let start = self.index_of(position);
        &self.buf[start..start + len]
    }

    /// Makes the bytes `[position, position + needed)` contiguous in the buffer, reading `read_size` or
    /// more at a time. Returns how many bytes from `position` are buffered, which is below `needed`
    /// only at the end of the file.
    fn fill(&mut self, position: u64, needed: usize, read_size: usize) -> io::Result<usize> {
        let buffered_end = self.buf_start + self.buf_len as u64;
        if position >= self.buf_start && position <= buffered_end {
            let start = self.index_of(position);
            let available = self.buf_len - start;
            if available >= needed {
                return Ok(available);
            }
            self.buf.copy_within(start..self.buf_len, 0);
            self.buf_len = available;
        } else {
            self.buf_len = 0;
        }
        self.buf_start = position;
        let read_end = needed.max(read_size);
        if self.buf.len() < read_end {
            // calloc'd pages instead of `resize` writing every zero of a buffer that may be
            // much larger than a small segment.
            let mut grown = vec![0u8; read_end];
            grown[..self.buf_len].copy_from_slice(&self.buf[..self.buf_len]);
            self.buf = grown;
        }
        while self.buf_len < needed {
            let read_position = self.buf_start + self.buf_len as u64;
            let got = loop {
                match self
                    .file
                    .borrow()
                    .read_at(&mut self.buf[self.buf_len..read_end], read_position)
                {
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    other => break other?,
                }
            };
            if got == 0 {
                break;
            }
            self.buf_len += got;
        }
        Ok(self.buf_len)
    }
}

/// How [`SegmentEntries`] treats one entry body.
enum Body {
    /// Buffered whole, crc-checked, and its data available.
    InPlace,
    /// crc-checked through the buffer in read-sized pieces.
    Streamed,
    /// Not read (header-only mode).
    Skipped,
}

struct Found {
    kind: EntryKind,
    offset: u32,
    size: u32,
    data: (usize, usize),
}

fn advise_sequential(file: &File) {
    // Only a hint for the page cache's read-ahead; failure changes nothing but speed.
    let _ = nix::fcntl::posix_fadvise(
        file,
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_SEQUENTIAL,
    );
}

// ---------------------------------------------------------------------------------------------------
// Commit detection

/// Whether the segment file at `path` is committed (section 5.2, `repository.py:1432-1462`): it ends with
/// [`COMMIT_ENTRY`], every entry reads back with a valid crc32, it has at least one COMMIT, and no PUT or
/// DELETE follows a COMMIT. Defects give `Ok(false)`; only I/O failures are errors.
pub fn is_committed(path: &Path) -> io::Result<bool> {
    let file = File::open(path)?;
    is_committed_file(&file)
}

/// [`is_committed`] for an already open segment file.
pub fn is_committed_file(file: &File) -> io::Result<bool> {
    let len = file.metadata()?.len();
    if len < HEADER_SIZE as u64 {
        return Ok(false);
    }
    let mut tail = [0u8; HEADER_SIZE];
    if read_at_most(file, &mut tail, len - HEADER_SIZE as u64)? != HEADER_SIZE
        || tail != COMMIT_ENTRY
    {
        return Ok(false);
    }
    let mut entries = SegmentEntries::new(file, 0, 0, ReadMode::Verified);
    let mut seen_commit = false;
    loop {
        match entries.next_entry() {
            Ok(Some(entry)) => match entry.kind {
                EntryKind::Commit => seen_commit = true,
                EntryKind::Put { .. } | EntryKind::Delete { .. } if seen_commit => {
                    return Ok(false);
                }
                EntryKind::Put { .. } | EntryKind::Delete { .. } => {}
            },
            Ok(None) => return Ok(seen_commit),
            Err(SegmentError::Integrity(_)) => return Ok(false),
            Err(SegmentError::Io(err)) => return Err(err),
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// check --repair salvage

/// Salvages the valid entries of a damaged segment (`repository.py:1604-1633`, section 6.4.4): the result
/// is [`MAGIC`] followed by every byte range that parses as an entry with size in `[9, MAX_OBJECT_SIZE]`,
/// tag at most [`MAX_TAG_ID`] and a matching crc32, scanning from offset 0 and stepping one byte past
/// anything else. Inputs shorter than 17 bytes yield just the magic.
pub fn recover_segment(old: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(old.len().max(MAGIC_LEN));
    out.extend_from_slice(MAGIC);
    if old.len() >= COMMIT_ONLY_SEGMENT_LEN as usize {
        let result: Result<usize, std::convert::Infallible> = salvage_window(old, true, |entry| {
            out.extend_from_slice(entry);
            Ok(())
        });
        let Ok(_) = result;
    }
    out
}

/// [`recover_segment`] streaming from `source` into `dest` with bounded memory (about 2 × MAX_OBJECT_SIZE),
/// for segment files too large to hold in memory. The caller makes the replacement atomic.
pub fn recover_segment_file(source: &File, dest: &mut impl Write) -> io::Result<()> {
    dest.write_all(MAGIC)?;
    let len = source.metadata()?.len();
    if len < COMMIT_ONLY_SEGMENT_LEN {
        return Ok(());
    }
    let mut window = vec![0u8; 2 * MAX_OBJECT_SIZE];
    let mut window_len = 0;
    let mut file_position = 0u64;
    loop {
        while window_len < window.len() {
            let got = match source.read_at(&mut window[window_len..], file_position) {
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                other => other?,
            };
            if got == 0 {
                break;
            }
            window_len += got;
            file_position += got as u64;
        }
        let at_eof = window_len < window.len() || file_position >= len;
        let consumed =
            salvage_window(&window[..window_len], at_eof, |entry| dest.write_all(entry))?;
        if at_eof {
            return Ok(());
        }
        window.copy_within(consumed..window_len, 0);
        window_len -= consumed;
    }
}

/// Scans `window` for salvageable entries. Unless `at_eof`, stops while a full object's worth of bytes
/// still follows the scan position, so that every size check sees the same bytes the whole file would.
/// Returns how many bytes were consumed.
fn salvage_window<E>(
    window: &[u8],
    at_eof: bool,
    mut emit: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<usize, E> {
    let mut position = 0;
    loop {
        let rest = &window[position..];
        if rest.len() < HEADER_SIZE || (!at_eof && rest.len() < MAX_OBJECT_SIZE) {
            return Ok(position);
        }
        let Some(raw) = parse_header(rest) else {
            return Ok(position);
        };
        let size = raw.size as usize;
        let plausible = size <= MAX_OBJECT_SIZE
            && raw.tag <= MAX_TAG_ID
            && size >= HEADER_SIZE
            && size <= rest.len();
        if plausible && entry_crc(&rest[4..size]) == raw.crc {
            emit(&rest[..size])?;
            position += size;
        } else {
            position += 1;
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Segment file layout

/// `<repo>/data`.
pub fn data_dir(repo: &Path) -> PathBuf {
    repo.join("data")
}

/// `<repo>/data/<segment / segments_per_dir>`.
pub fn segment_dir(repo: &Path, segment: u32, segments_per_dir: NonZeroU32) -> PathBuf {
    data_dir(repo).join((segment / segments_per_dir.get()).to_string())
}

/// `<repo>/data/<segment / segments_per_dir>/<segment>`.
pub fn segment_path(repo: &Path, segment: u32, segments_per_dir: NonZeroU32) -> PathBuf {
    segment_dir(repo, segment, segments_per_dir).join(segment.to_string())
}

/// A segment file found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    pub segment: u32,
    /// For messages; the file is opened through its directory handle, never by this path.
    pub path: PathBuf,
    /// File length. Zero means logically deleted: borg truncates before unlinking, and treats such
    /// files as nonexistent, yet still lists them (cleanup and transaction detection see them).
    pub len: u64,
}

impl SegmentFile {
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Every segment file in ascending numeric order, as borg's `segment_iterator` walks them: directories
/// of `data/` by number, then the files in each by number.
///
/// Only canonical decimal names (`0`, `17`; no sign, no leading zeros) in the u32 range count, and a file
/// only counts inside the directory [`segment_dir`] names for it. Borg would also list `007` or a file in
/// the wrong directory, but then fails to open it under its canonical path; here they are ignored like
/// any other stray file. Where borg follows a symlink, a symlink with a segment's or a segment
/// directory's name is an error here (see `dir.rs`).
pub fn list_segments(repo: &Path, segments_per_dir: NonZeroU32) -> io::Result<Vec<SegmentFile>> {
    list_segments_in(&Dir::open(repo)?.subdir("data")?, segments_per_dir)
}

/// [`list_segments`] in an open `data/` directory.
pub fn list_segments_in(data: &Dir, segments_per_dir: NonZeroU32) -> io::Result<Vec<SegmentFile>> {
    let mut found = Vec::new();
    for (dir_number, dir_name) in numbered_entries(data, Kind::Dir)? {
        let dir = data.subdir(&dir_name)?;
        for (segment, name) in numbered_entries(&dir, Kind::File)? {
            if segment / segments_per_dir.get() == dir_number
                && let Some(len) = file_len_unless_vanished(&dir, &name)?
            {
                let path = dir.child_path(&name);
                found.push(SegmentFile { segment, path, len });
            }
        }
    }
    Ok(found)
}

/// The highest-numbered segment file (borg's `get_latest_segment`), reading only as many directories as needed.
pub fn latest_segment(
    repo: &Path,
    segments_per_dir: NonZeroU32,
) -> io::Result<Option<SegmentFile>> {
    latest_segment_in(&Dir::open(repo)?.subdir("data")?, segments_per_dir)
}

/// [`latest_segment`] in an open `data/` directory.
pub fn latest_segment_in(
    data: &Dir,
    segments_per_dir: NonZeroU32,
) -> io::Result<Option<SegmentFile>> {
    for (dir_number, dir_name) in numbered_entries(data, Kind::Dir)?.into_iter().rev() {
        let dir = data.subdir(&dir_name)?;
        let files = numbered_entries(&dir, Kind::File)?;
        for (segment, name) in files.into_iter().rev() {
            if segment / segments_per_dir.get() == dir_number
                && let Some(len) = file_len_unless_vanished(&dir, &name)?
            {
                let path = dir.child_path(&name);
                return Ok(Some(SegmentFile { segment, path, len }));
            }
        }
    }
    Ok(None)
}

/// The length of a listed file, or `None` if it was deleted since the listing (a concurrent cleanup).
fn file_len_unless_vanished(dir: &Dir, name: &str) -> io::Result<Option<u64>> {
    Ok(dir.stat(name)?.map(|stat| stat.len))
}

/// Entries of `dir` with canonical u32 names that are of `wanted` kind (a directory or a regular
/// file), sorted by number. A symlink with such a name is refused; other kinds are ignored.
fn numbered_entries(dir: &Dir, wanted: Kind) -> io::Result<Vec<(u32, String)>> {
    let mut entries = Vec::new();
    for (name, kind) in dir.entries()? {
        let Some(name) = name.to_str() else {
            continue;
        };
        let Some(number) = parse_canonical_u32(name) else {
            continue;
        };
        let kind = match kind {
            Some(kind) => Some(kind),
            None => dir.stat(name)?.map(|stat| stat.kind),
        };
        match kind {
            Some(Kind::Symlink) => {
                return Err(io::Error::other(SymlinkRefused(dir.child_path(name))));
            }
            Some(kind) if kind == wanted => entries.push((number, name.to_owned())),
            _ => {}
        }
    }
    entries.sort_unstable_by_key(|(number, _)| *number);
    Ok(entries)
}

/// Parses `0` or a decimal number without leading zeros that fits in u32.
pub fn parse_canonical_u32(name: &str) -> Option<u32> {
    let canonical = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_digit())
        && (name == "0" || !name.starts_with('0'));
    if canonical { name.parse().ok() } else { None }
}

// ---------------------------------------------------------------------------------------------------
// Test support shared by the repository codec tests: locating and driving real borg 1.4.5.

#[cfg(test)]
pub(crate) mod real_borg {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use crate::test_support::{Borg, require_borg, require_borg_python};

    pub(crate) fn borg() -> Option<PathBuf> {
        require_borg(Borg::Pypi14)
    }

    /// A repository made by real borg ([`make_repository`]) in a temp dir of its own, which
    /// lives as long as it does.
    pub(crate) struct RealRepository {
        pub(crate) path: PathBuf,
        borg: PathBuf,
        dir: tempfile::TempDir,
    }

    impl RealRepository {
        /// A repository made with `encryption`; `None` (a failure under CI) without borg.
        pub(crate) fn new(encryption: &str) -> Option<RealRepository> {
            let borg = borg()?;
            let dir = tempfile::tempdir().unwrap();
            let path = make_repository(&borg, dir.path(), encryption);
            Some(RealRepository { path, borg, dir })
        }

        /// The transaction id: the N of its (single) `index.N` file.
        pub(crate) fn transaction_id(&self) -> u32 {
            transaction_id(&self.path)
        }

        /// Runs borg on it with the base dir it was made with; borg's stdout.
        pub(crate) fn borg(&self, args: &[&str]) -> String {
            run_borg(&self.borg, &self.dir.path().join("base"), args)
        }
    }

    pub(crate) fn python() -> Option<PathBuf> {
        require_borg_python(Borg::Pypi14)
    }

    /// Runs borg with an isolated environment; panics with its output on failure.
    fn run_borg(borg: &Path, base_dir: &Path, args: &[&str]) -> String {
        let output = Command::new(borg)
            .args(args)
            .env("BORG_BASE_DIR", base_dir)
            .env("BORG_PASSPHRASE", "test-passphrase")
            .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes")
            .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
            .env("BORG_CHECK_I_KNOW_WHAT_I_AM_DOING", "YES")
            .env("BORG_DELETE_I_KNOW_WHAT_I_AM_DOING", "YES")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "borg {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs `script` with borg's Python, feeding `input` on stdin; returns stdout.
    pub(crate) fn run_python(python: &Path, script: &str, input: &[u8]) -> String {
        String::from_utf8(crate::test_support::run_python(python, script, input)).unwrap()
    }

    /// A repository made by real borg in `dir`: `init -e <encryption>`, then one archive of a few files
    /// (one of 300 kB random bytes), then a second archive and a delete of the first, so that segments
    /// contain PUTs, DELETEs and COMMITs, and the hints a non-empty shadow index.
    fn make_repository(borg: &Path, dir: &Path, encryption: &str) -> PathBuf {
        let repo = dir.join("repo");
        let base = dir.join("base");
        let source = dir.join("src");
        std::fs::create_dir_all(&source).unwrap();
        let mut random = vec![0u8; 300_000];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for byte in random.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *byte = state as u8;
        }
        std::fs::write(source.join("random"), &random).unwrap();
        std::fs::write(source.join("small"), b"hello\n").unwrap();
        let repo_arg = repo.to_str().unwrap();
        let source_arg = source.to_str().unwrap();
        run_borg(borg, &base, &["init", "-e", encryption, repo_arg]);
        run_borg(
            borg,
            &base,
            &["create", &format!("{repo_arg}::one"), source_arg],
        );
        std::fs::write(source.join("small"), b"changed\n").unwrap();
        run_borg(
            borg,
            &base,
            &["create", &format!("{repo_arg}::two"), source_arg],
        );
        run_borg(borg, &base, &["delete", &format!("{repo_arg}::one")]);
        repo
    }

    /// The transaction id: the N of the (single) `index.N` file.
    fn transaction_id(repo: &Path) -> u32 {
        std::fs::read_dir(repo)
            .unwrap()
            .filter_map(|entry| {
                entry
                    .unwrap()
                    .file_name()
                    .to_str()?
                    .strip_prefix("index.")?
                    .parse()
                    .ok()
            })
            .max()
            .unwrap()
    }
}

#[cfg(test)]
mod tests;
