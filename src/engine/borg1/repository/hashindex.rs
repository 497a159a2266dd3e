//! NSIndex: borg's open-addressing hash table (id -> segment, offset) and its `index.N` file format.
//!
//! The table is stored exactly as it lies on disk (spec 6.5): one contiguous array of 40-byte
//! buckets, each a 32-byte object id followed by the segment and the offset as little-endian
//! `u32`s. Loading is therefore one read into the bucket array plus one counting pass, writing is
//! the 18-byte header plus one write of the array, and there is no heap allocation per object.
//!
//! A bucket's state is carried in its segment word, as in borg (`_hashindex.c:95-106`):
//! `FF FF FF FF` is empty, `FE FF FF FF` is a tombstone, anything else is used and must be at most
//! [`MAX_SEGMENT`].
//!
//! Growth, shrinking, same-size rebuilds, the tombstone reuse of inserts and the "move a hit into
//! the first tombstone passed" step of inserts and removals follow `_hashindex.c` decision for
//! decision, so the same sequence of inserts and removals produces a byte-identical file to
//! Python borg's (the interop tests prove it). Lookups through [`NsIndex::get`],
//! [`NsIndex::contains`] and [`NsIndex::list`] take `&self` and never move buckets: borg's
//! lookup also moves on reads, so its `list` paging can repeat or skip ids when the marker sits
//! behind a tombstone.
//!
//! At commit, write the table as it is with [`NsIndex::write_to`], as borg does: the insert
//! rules already keep at least `min_empty` buckets empty, and it needs no second table.
//! [`NsIndex::compacted`] builds the spec's tombstone-free "recommended writer" table at the
//! cost of a second allocation.
//!
//! Integrity digests: [`IndexHeader::read_from`] + [`NsIndex::read_buckets`] and
//! [`NsIndex::write_header`] + [`NsIndex::write_buckets`] split the file after its 18-byte
//! header, where borg's XXH64 digest takes its `HashHeader` part. Wrap the file in a digesting
//! `Read`/`Write`, call the first half, hash the part, call the second half, hash `final`.
//! [`NsIndex::read_from`] and [`NsIndex::write_to`] do both halves in one call; the header half
//! always reads or writes exactly 18 bytes before any bucket byte.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

/// A 32-byte object id, the key of the index.
pub type ObjectId = [u8; KEY_LEN];

/// The file magic, `BORG_IDX`.
pub const MAGIC: &[u8; 8] = b"BORG_IDX";
/// Length of the file header: magic, `num_entries`, `num_buckets`, `key_size`, `value_size`.
pub const HEADER_LEN: usize = 18;
/// Bytes of key per bucket.
pub const KEY_LEN: usize = 32;
/// Bytes of value per bucket: segment and offset.
pub const VALUE_LEN: usize = 8;
/// Bytes per bucket, in memory and on disk.
pub const BUCKET_LEN: usize = KEY_LEN + VALUE_LEN;
/// The largest segment number a used bucket may hold: 2^32 - 1025 (`cache_sync/unpack.h:29`).
/// Values above it are reserved for bucket states.
pub const MAX_SEGMENT: u32 = 4_294_966_271;

const EMPTY_MARKER: u32 = 0xFFFF_FFFF;
const DELETED_MARKER: u32 = 0xFFFF_FFFE;

/// One bucket as it lies on disk: four 8-byte words of key, then the value word (segment and
/// offset, little-endian u32 each). Nested rather than `[u8; 40]` because std allocates a `vec!`
/// of zeros with calloc only for arrays of at most 16 elements: a loaded table's pages are then
/// first touched by the read instead of being zero-filled before it.
type Bucket = [[u8; 8]; 5];
const KEY_WORDS: usize = 4;
const VALUE_WORD: usize = 4;

/// A freshly initialised empty bucket: zero key, empty marker, zero offset (as borg's calloc).
const EMPTY_BUCKET: Bucket = [
    [0; 8],
    [0; 8],
    [0; 8],
    [0; 8],
    [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0],
];

/// Buckets read per `read` call while loading (about 1 MiB): the chunk is still in cache when
/// its bucket states are counted.
const READ_CHUNK_BUCKETS: usize = (1 << 20) / BUCKET_LEN;

/// borg's table sizes (`_hashindex.c:76-86`).
const HASH_SIZES: [usize; 58] = [
    1031, 2053, 4099, 8209, 16411, 32771, 65537, 131101, 262147, 445649, 757607, 1287917, 2189459,
    3065243, 4291319, 6007867, 8410991, 11775359, 16485527, 23079703, 27695653, 33234787, 39881729,
    47858071, 57429683, 68915617, 82698751, 99238507, 119086189, 144378011, 157223263, 173476439,
    190253911, 209915011, 230493629, 253169431, 278728861, 306647623, 337318939, 370742809,
    408229973, 449387209, 493428073, 543105119, 596976533, 657794869, 722676499, 795815791,
    874066969, 962279771, 1057701643, 1164002657, 1280003147, 1407800297, 1548442699, 1703765389,
    1873768367, 2062383853,
];
const SMALLEST_TABLE: usize = HASH_SIZES[0];
const LARGEST_TABLE: usize = HASH_SIZES[HASH_SIZES.len() - 1];
const MIN_LOAD: f64 = 0.25;
const MAX_LOAD: f64 = 0.75;
const MAX_EFFECTIVE_LOAD: f64 = 0.93;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum BucketState {
    Empty,
    Deleted,
    Used,
}

fn segment_word(bucket: &Bucket) -> u32 {
    let [a, b, c, d, ..] = bucket[VALUE_WORD];
    u32::from_le_bytes([a, b, c, d])
}

fn offset_word(bucket: &Bucket) -> u32 {
    let [.., a, b, c, d] = bucket[VALUE_WORD];
    u32::from_le_bytes([a, b, c, d])
}

fn key_bytes(bucket: &Bucket) -> &[u8] {
    bucket[..KEY_WORDS].as_flattened()
}

fn state_of(bucket: &Bucket) -> BucketState {
    match segment_word(bucket) {
        EMPTY_MARKER => BucketState::Empty,
        DELETED_MARKER => BucketState::Deleted,
        _ => BucketState::Used,
    }
}

fn holds_key(bucket: &Bucket, key: &ObjectId) -> bool {
    key_bytes(bucket) == key
}

fn mark_deleted(bucket: &mut Bucket) {
    bucket[VALUE_WORD][..4].copy_from_slice(&DELETED_MARKER.to_le_bytes());
}

fn fill_bucket(bucket: &mut Bucket, key: &ObjectId, segment: u32, offset: u32) {
    bucket[..KEY_WORDS].as_flattened_mut().copy_from_slice(key);
    bucket[VALUE_WORD][..4].copy_from_slice(&segment.to_le_bytes());
    bucket[VALUE_WORD][4..].copy_from_slice(&offset.to_le_bytes());
}

/// The key, segment and offset of a used bucket; `None` for empty buckets and tombstones.
fn used_entry(bucket: &Bucket) -> Option<(&ObjectId, u32, u32)> {
    if state_of(bucket) != BucketState::Used {
        return None;
    }
    let key = key_bytes(bucket).first_chunk::<KEY_LEN>()?;
    Some((key, segment_word(bucket), offset_word(bucket)))
}

/// Home bucket: the first four key bytes as a little-endian u32, modulo the table size.
fn home_bucket(key: &ObjectId, num_buckets: usize) -> usize {
    let hash = u32::from_le_bytes([key[0], key[1], key[2], key[3]]);
    hash as usize % num_buckets
}

/// Index into [`HASH_SIZES`] of the smallest size >= `size`, or the last one (`size_idx`).
fn size_index(size: usize) -> usize {
    HASH_SIZES
        .iter()
        .position(|&candidate| candidate >= size)
        .unwrap_or(HASH_SIZES.len() - 1)
}

fn fit_size(size: usize) -> usize {
    HASH_SIZES[size_index(size)]
}

fn grow_size(size: usize) -> usize {
    HASH_SIZES[(size_index(size) + 1).min(HASH_SIZES.len() - 1)]
}

fn shrink_size(size: usize) -> usize {
    HASH_SIZES[size_index(size).saturating_sub(1)]
}

// The three limits use the same double arithmetic and truncation as the C code, so that the
// thresholds match borg's to the bucket.
fn lower_limit(num_buckets: usize) -> usize {
    if num_buckets <= SMALLEST_TABLE {
        0
    } else {
        (num_buckets as f64 * MIN_LOAD) as usize
    }
}

fn upper_limit(num_buckets: usize) -> usize {
    if num_buckets >= LARGEST_TABLE {
        num_buckets
    } else {
        (num_buckets as f64 * MAX_LOAD) as usize
    }
}

fn min_empty(num_buckets: usize) -> usize {
    1 + (num_buckets as f64 * (1.0 - MAX_EFFECTIVE_LOAD)) as usize
}

/// The table size the spec's "recommended writer" (6.5.3) uses for `entries` objects: the
/// smallest size >= max(1031, entries / 0.75 + 1). It holds `entries` without growing and keeps
/// a quarter of its buckets empty.
pub fn recommended_num_buckets(entries: usize) -> usize {
    // entries / 0.75 + 1 <= s  <=>  4 * entries + 3 <= 3 * s
    let minimum = entries.saturating_mul(4).saturating_add(5) / 3;
    fit_size(minimum.max(SMALLEST_TABLE))
}

fn table_bytes(num_buckets: usize) -> u64 {
    (num_buckets as u64).saturating_mul(BUCKET_LEN as u64)
}

/// Allocates `num_buckets` empty buckets, reporting an allocation failure instead of aborting.
fn allocate_empty_table(num_buckets: usize) -> Result<Vec<Bucket>, IndexError> {
    let mut buckets = Vec::new();
    buckets
        .try_reserve_exact(num_buckets)
        .map_err(|_| IndexError::OutOfMemory {
            bytes: table_bytes(num_buckets),
        })?;
    buckets.resize(num_buckets, EMPTY_BUCKET);
    Ok(buckets)
}

/// The outcome of one probe sequence (`hashindex_lookup`).
struct Probe {
    /// The bucket holding the key.
    found: Option<usize>,
    /// The first tombstone passed before the probe ended.
    first_tombstone: Option<usize>,
    /// Where the probe stopped: the empty bucket that ended it, or the home bucket after a full
    /// cycle.
    end: usize,
}

impl Probe {
    /// Where a new key goes: the first tombstone passed, else the bucket that ended the probe.
    fn vacancy(&self) -> usize {
        self.first_tombstone.unwrap_or(self.end)
    }
}

/// An error changing the table in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexError {
    /// The segment number collides with the reserved bucket-state values.
    SegmentOutOfRange { segment: u32 },
    /// The table is at borg's largest size and has no free bucket left.
    TableFull { num_buckets: usize },
    /// The memory for a (re)built table could not be allocated.
    OutOfMemory { bytes: u64 },
    /// Rebuilding produced fewer entries than the table claims: it holds the same id twice.
    DuplicateIds { expected: usize, rebuilt: usize },
    /// [`NsIndex::check_structure`]: a used bucket its own id's probe sequence does not reach.
    UnreachableEntry { bucket: usize },
    /// [`NsIndex::check_structure`]: the same id is in two used buckets.
    DuplicateId { first: usize, second: usize },
}

impl fmt::Display for IndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SegmentOutOfRange { segment } => write!(
                f,
                "segment number {segment} is above the largest the repository index can hold \
                 ({MAX_SEGMENT}); the repository has run out of segment numbers"
            ),
            Self::TableFull { num_buckets } => write!(
                f,
                "the repository index is full ({num_buckets} buckets, the largest size borg supports)"
            ),
            Self::OutOfMemory { bytes } => write!(
                f,
                "could not allocate {bytes} bytes for the repository index; free memory or raise \
                 the process memory limit"
            ),
            Self::DuplicateIds { expected, rebuilt } => write!(
                f,
                "the repository index is corrupt: it claims {expected} entries but holds only \
                 {rebuilt} distinct ids; delete the index file so it is rebuilt from the segments"
            ),
            Self::DuplicateId { first, second } => write!(
                f,
                "the repository index is corrupt: buckets {first} and {second} hold the same id; \
                 delete the index file so it is rebuilt from the segments"
            ),
            Self::UnreachableEntry { bucket } => write!(
                f,
                "the repository index is corrupt: the id in bucket {bucket} cannot be found by \
                 lookup; delete the index file so it is rebuilt from the segments"
            ),
        }
    }
}

impl std::error::Error for IndexError {}

/// `list` was given a marker id that is not in the index (borg: `KeyError("marker not found")`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkerNotFound;

impl fmt::Display for MarkerNotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("marker not found")
    }
}

impl std::error::Error for MarkerNotFound {}

/// An `index.N` file that cannot be loaded. Every variant but `Io` and `OutOfMemory` means the
/// file is corrupt or not an index; borg then deletes it and rebuilds it from the segments.
#[derive(Debug)]
pub enum IndexReadError {
    Io(io::Error),
    /// The file is shorter than the 18-byte header.
    TruncatedHeader,
    BadMagic([u8; 8]),
    UnsupportedKeySize(i8),
    UnsupportedValueSize(i8),
    InvalidBucketCount(i32),
    InvalidEntryCount {
        num_entries: i32,
        num_buckets: i32,
    },
    /// The file length is not 18 + 40 × `num_buckets`.
    LengthMismatch {
        expected: u64,
        actual: u64,
    },
    /// The file ended before all buckets were read (it shrank while being read).
    TruncatedBuckets {
        expected: u64,
        read: u64,
    },
    /// The file went on after the last bucket (it grew while being read).
    TrailingData,
    /// The header's `num_entries` differs from the number of used buckets.
    EntryCountMismatch {
        header: usize,
        counted: usize,
    },
    /// A used bucket holds a segment number in the reserved range.
    ReservedSegment {
        bucket: usize,
        segment: u32,
    },
    OutOfMemory {
        bytes: u64,
    },
    /// The same-size rebuild borg does when too few buckets are empty failed.
    RebuildFailed(IndexError),
}

impl fmt::Display for IndexReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cannot load repository index: ")?;
        match self {
            Self::Io(err) => write!(f, "{err}"),
            Self::TruncatedHeader => write!(f, "file is shorter than the {HEADER_LEN}-byte header"),
            Self::BadMagic(magic) => write!(f, "unknown magic {magic:02x?} (expected BORG_IDX)"),
            Self::UnsupportedKeySize(size) => write!(f, "key size {size} (expected {KEY_LEN})"),
            Self::UnsupportedValueSize(size) => {
                write!(f, "value size {size} (expected {VALUE_LEN})")
            }
            Self::InvalidBucketCount(count) => write!(f, "num_buckets {count} (expected >= 1)"),
            Self::InvalidEntryCount {
                num_entries,
                num_buckets,
            } => write!(
                f,
                "num_entries {num_entries} (expected 0 <= num_entries <= num_buckets = {num_buckets})"
            ),
            Self::LengthMismatch { expected, actual } => {
                write!(f, "file length {actual} (the header requires {expected})")
            }
            Self::TruncatedBuckets { expected, read } => write!(
                f,
                "file ended after {read} of {expected} bucket bytes (was it changed while read?)"
            ),
            Self::TrailingData => f.write_str("file continues after its last bucket"),
            Self::EntryCountMismatch { header, counted } => write!(
                f,
                "header says {header} entries but {counted} buckets are in use"
            ),
            Self::ReservedSegment { bucket, segment } => write!(
                f,
                "bucket {bucket} holds segment {segment}, which is in the reserved range"
            ),
            Self::OutOfMemory { bytes } => write!(
                f,
                "could not allocate {bytes} bytes; free memory or raise the process memory limit"
            ),
            Self::RebuildFailed(err) => write!(f, "rebuilding the table failed: {err}"),
        }
    }
}

impl std::error::Error for IndexReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(err) => Some(err),
            Self::RebuildFailed(err) => Some(err),
            _ => None,
        }
    }
}

impl From<io::Error> for IndexReadError {
    fn from(err: io::Error) -> Self {
        Self::Io(err)
    }
}

/// The validated 18-byte header of an `index.N` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexHeader {
    pub num_entries: usize,
    pub num_buckets: usize,
}

impl IndexHeader {
    /// Parses and validates a header the way borg 1.4 does (`_hashindex.c:374-422`), plus the
    /// NSIndex key and value sizes.
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Result<Self, IndexReadError> {
        let (magic, rest) = bytes.split_at(MAGIC.len());
        if magic != MAGIC {
            let mut found = [0u8; 8];
            found.copy_from_slice(magic);
            return Err(IndexReadError::BadMagic(found));
        }
        let num_entries = i32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let num_buckets = i32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let key_size = i8::from_le_bytes([rest[8]]);
        let value_size = i8::from_le_bytes([rest[9]]);
        if key_size != KEY_LEN as i8 {
            return Err(IndexReadError::UnsupportedKeySize(key_size));
        }
        if value_size != VALUE_LEN as i8 {
            return Err(IndexReadError::UnsupportedValueSize(value_size));
        }
        let Ok(bucket_count) = usize::try_from(num_buckets) else {
            return Err(IndexReadError::InvalidBucketCount(num_buckets));
        };
        if bucket_count < 1 {
            return Err(IndexReadError::InvalidBucketCount(num_buckets));
        }
        let entry_count = usize::try_from(num_entries)
            .ok()
            .filter(|&n| n <= bucket_count);
        let Some(entry_count) = entry_count else {
            return Err(IndexReadError::InvalidEntryCount {
                num_entries,
                num_buckets,
            });
        };
        Ok(Self {
            num_entries: entry_count,
            num_buckets: bucket_count,
        })
    }

    /// Reads exactly [`HEADER_LEN`] bytes and validates them.
    pub fn read_from<R: Read>(mut reader: R) -> Result<Self, IndexReadError> {
        let mut bytes = [0u8; HEADER_LEN];
        reader
            .read_exact(&mut bytes)
            .map_err(|err| match err.kind() {
                io::ErrorKind::UnexpectedEof => IndexReadError::TruncatedHeader,
                _ => IndexReadError::Io(err),
            })?;
        Self::parse(&bytes)
    }

    /// The header bytes as borg writes them.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut bytes = [0u8; HEADER_LEN];
        bytes[..8].copy_from_slice(MAGIC);
        // Both counts are below 2^31: tables come from HASH_SIZES or from a validated header.
        bytes[8..12].copy_from_slice(&(self.num_entries as u32).to_le_bytes());
        bytes[12..16].copy_from_slice(&(self.num_buckets as u32).to_le_bytes());
        bytes[16] = KEY_LEN as u8;
        bytes[17] = VALUE_LEN as u8;
        bytes
    }

    /// The exact length of a file with this header.
    pub fn file_len(&self) -> u64 {
        HEADER_LEN as u64 + table_bytes(self.num_buckets)
    }
}

/// borg's NSIndex: object id -> (segment, offset), an open-addressing table with linear probing.
#[derive(Clone)]
pub struct NsIndex {
    buckets: Vec<Bucket>,
    num_entries: usize,
    /// Buckets never used since the table was built; tombstones are not empty.
    num_empty: usize,
    lower_limit: usize,
    upper_limit: usize,
    min_empty: usize,
}

impl fmt::Debug for NsIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NsIndex")
            .field("num_entries", &self.num_entries)
            .field("num_buckets", &self.buckets.len())
            .field("num_empty", &self.num_empty)
            .finish_non_exhaustive()
    }
}

impl Default for NsIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl NsIndex {
    /// An empty index of 1031 buckets, as `NSIndex()` (41,258 bytes on disk).
    pub fn new() -> Self {
        Self::from_empty_buckets(vec![EMPTY_BUCKET; SMALLEST_TABLE])
    }

    /// An empty index that holds `objects` entries without growing: the size of
    /// [`recommended_num_buckets`]. (This counts objects, unlike borg's `NSIndex(capacity)`,
    /// which counts buckets.)
    pub fn with_capacity(objects: usize) -> Result<Self, IndexError> {
        Self::with_table_size(recommended_num_buckets(objects))
    }

    /// An empty table of `fit_size(capacity)` buckets (`hashindex_init`).
    fn with_table_size(capacity: usize) -> Result<Self, IndexError> {
        Ok(Self::from_empty_buckets(allocate_empty_table(fit_size(
            capacity,
        ))?))
    }

    fn from_empty_buckets(buckets: Vec<Bucket>) -> Self {
        let num_buckets = buckets.len();
        Self {
            buckets,
            num_entries: 0,
            num_empty: num_buckets,
            lower_limit: lower_limit(num_buckets),
            upper_limit: upper_limit(num_buckets),
            min_empty: min_empty(num_buckets),
        }
    }

    /// Number of ids in the index.
    pub fn len(&self) -> usize {
        self.num_entries
    }

    pub fn is_empty(&self) -> bool {
        self.num_entries == 0
    }

    pub fn num_buckets(&self) -> usize {
        self.buckets.len()
    }

    /// The size of the `index.N` file this table writes: 18 + 40 × buckets (`hashindex_size`,
    /// used by the free-space check).
    pub fn size_on_disk(&self) -> u64 {
        self.header().file_len()
    }

    /// The header [`NsIndex::write_header`] writes.
    pub fn header(&self) -> IndexHeader {
        IndexHeader {
            num_entries: self.num_entries,
            num_buckets: self.buckets.len(),
        }
    }

    /// The (segment, offset) of `id`.
    pub fn get(&self, id: &ObjectId) -> Option<(u32, u32)> {
        let bucket = &self.buckets[self.probe(id).found?];
        Some((segment_word(bucket), offset_word(bucket)))
    }

    pub fn contains(&self, id: &ObjectId) -> bool {
        self.probe(id).found.is_some()
    }

    /// Sets `id` to (segment, offset) and returns its previous value (`hashindex_set`). A new id
    /// may first grow the table or rebuild it at the same size, exactly as borg would.
    pub fn insert(
        &mut self,
        id: &ObjectId,
        segment: u32,
        offset: u32,
    ) -> Result<Option<(u32, u32)>, IndexError> {
        if segment > MAX_SEGMENT {
            return Err(IndexError::SegmentOutOfRange { segment });
        }
        let mut probe = self.probe_and_move(id);
        if let Some(idx) = probe.found {
            let bucket = &mut self.buckets[idx];
            let previous = (segment_word(bucket), offset_word(bucket));
            fill_bucket(bucket, id, segment, offset);
            return Ok(Some(previous));
        }
        if self.num_entries > self.upper_limit {
            let next_size = grow_size(self.buckets.len());
            if next_size != self.buckets.len() {
                self.rebuild(next_size)?;
                probe = self.probe(id);
            } else if self.num_entries >= self.buckets.len() {
                return Err(IndexError::TableFull {
                    num_buckets: self.buckets.len(),
                });
            }
        }
        let mut slot = probe.vacancy();
        match state_of(&self.buckets[slot]) {
            BucketState::Deleted => {}
            BucketState::Empty => {
                if self.num_empty <= self.min_empty {
                    // Too many tombstones: rebuild at the same size to turn them back into
                    // empty buckets, so that probes keep ending.
                    self.rebuild(self.buckets.len())?;
                    slot = self.probe(id).vacancy();
                    if state_of(&self.buckets[slot]) != BucketState::Empty {
                        return Err(IndexError::TableFull {
                            num_buckets: self.buckets.len(),
                        });
                    }
                }
                self.num_empty = self.num_empty.saturating_sub(1);
            }
            // Only a full cycle through used buckets ends on a used bucket: no room at all.
            BucketState::Used => {
                return Err(IndexError::TableFull {
                    num_buckets: self.buckets.len(),
                });
            }
        }
        fill_bucket(&mut self.buckets[slot], id, segment, offset);
        self.num_entries += 1;
        Ok(None)
    }

    /// Removes `id`, leaving a tombstone, and returns its value (`hashindex_delete`). Below the
    /// lower load limit the table shrinks to the previous size, as borg's does.
    pub fn remove(&mut self, id: &ObjectId) -> Option<(u32, u32)> {
        let idx = self.probe_and_move(id).found?;
        let bucket = &mut self.buckets[idx];
        let previous = (segment_word(bucket), offset_word(bucket));
        mark_deleted(bucket);
        self.num_entries -= 1;
        if self.num_entries < self.lower_limit {
            // A failed shrink leaves the larger table, which is still valid; the next removal
            // retries.
            if let Err(err) = self.rebuild(shrink_size(self.buckets.len())) {
                log::warn!("repository index: shrinking failed, keeping the larger table: {err}");
            }
        }
        Some(previous)
    }

    /// Every (id, segment, offset) in bucket order, the order borg's `iteritems` yields.
    pub fn iter(&self) -> impl Iterator<Item = (&ObjectId, u32, u32)> + '_ {
        self.buckets.iter().filter_map(used_entry)
    }

    /// borg's `list` RPC (`repository.py:1188-1194`): up to `limit` ids in bucket order,
    /// starting right after the bucket of `marker` (from the start when `None`). Paging with
    /// the last id as the next marker returns every id exactly once while the index is not
    /// changed between calls.
    pub fn list(
        &self,
        limit: Option<usize>,
        marker: Option<&ObjectId>,
    ) -> Result<Vec<ObjectId>, MarkerNotFound> {
        let start = match marker {
            None => 0,
            Some(marker) => self.probe(marker).found.ok_or(MarkerNotFound)? + 1,
        };
        let limit = limit.unwrap_or(usize::MAX);
        let mut ids = Vec::with_capacity(limit.min(self.num_entries));
        let rest = self.buckets.get(start..).unwrap_or_default();
        ids.extend(
            rest.iter()
                .filter_map(used_entry)
                .take(limit)
                .map(|(id, _, _)| *id),
        );
        Ok(ids)
    }

    /// A fresh copy without tombstones, of the spec's recommended size (6.5.3), with the ids
    /// inserted in this table's bucket order.
    pub fn compacted(&self) -> Result<NsIndex, IndexError> {
        let mut fresh = Self::with_capacity(self.num_entries)?;
        for (id, segment, offset) in self.iter() {
            fresh.insert(id, segment, offset)?;
        }
        Ok(fresh)
    }

    /// Checks that every used bucket is the one its id's lookup finds: no id is unreachable and
    /// none is stored twice. One lookup per entry, so this is for `check`, not for every load.
    pub fn check_structure(&self) -> Result<(), IndexError> {
        for (idx, bucket) in self.buckets.iter().enumerate() {
            let Some((id, _, _)) = used_entry(bucket) else {
                continue;
            };
            match self.probe(id).found {
                Some(found) if found == idx => {}
                Some(found) => {
                    return Err(IndexError::DuplicateId {
                        first: found,
                        second: idx,
                    });
                }
                None => return Err(IndexError::UnreachableEntry { bucket: idx }),
            }
        }
        Ok(())
    }

    /// Loads `index.N` from `path`.
    pub fn read_file(path: &Path) -> Result<Self, IndexReadError> {
        let mut file = File::open(path)?;
        let file_len = file.metadata()?.len();
        Self::read_from(&mut file, file_len)
    }

    /// Loads an index from `reader`. `file_len` must be the length the file system reports for
    /// the file (never a length read from the file): it is checked against the header before
    /// anything is allocated.
    pub fn read_from<R: Read>(mut reader: R, file_len: u64) -> Result<Self, IndexReadError> {
        let header = IndexHeader::read_from(&mut reader)?;
        Self::read_buckets(header, reader, file_len)
    }

    /// The second half of [`NsIndex::read_from`]: reads the buckets that follow `header`,
    /// counts their states, and rebuilds at the same size if fewer than `min_empty` buckets are
    /// empty (`_hashindex.c:464-473`).
    pub fn read_buckets<R: Read>(
        header: IndexHeader,
        mut reader: R,
        file_len: u64,
    ) -> Result<Self, IndexReadError> {
        let expected = header.file_len();
        if file_len != expected {
            return Err(IndexReadError::LengthMismatch {
                expected,
                actual: file_len,
            });
        }
        let num_buckets = header.num_buckets;
        // The length matches a real file, so the table is no larger than what is on disk.
        // Reserving first turns an impossible size into an error instead of an abort; the
        // table itself is a `vec!` of zeros (calloc), whose pages the read below touches first.
        Vec::<Bucket>::new()
            .try_reserve_exact(num_buckets)
            .map_err(|_| IndexReadError::OutOfMemory {
                bytes: table_bytes(num_buckets),
            })?;
        let mut buckets: Vec<Bucket> = vec![[[0u8; 8]; 5]; num_buckets];
        // Page faults on the fresh table dominate loading; huge pages make them rare.
        crate::sys::advise_huge_pages(buckets.as_flattened_mut().as_flattened_mut());
        let mut used = 0usize;
        let mut empty = 0usize;
        let mut done = 0usize;
        while done < num_buckets {
            let end = (done + READ_CHUNK_BUCKETS).min(num_buckets);
            let chunk = &mut buckets[done..end];
            reader
                .read_exact(chunk.as_flattened_mut().as_flattened_mut())
                .map_err(|err| match err.kind() {
                    io::ErrorKind::UnexpectedEof => IndexReadError::TruncatedBuckets {
                        expected: table_bytes(num_buckets),
                        read: table_bytes(done),
                    },
                    _ => IndexReadError::Io(err),
                })?;
            // Counted while the chunk is still in cache.
            for (position, bucket) in chunk.iter().enumerate() {
                match segment_word(bucket) {
                    EMPTY_MARKER => empty += 1,
                    DELETED_MARKER => {}
                    segment if segment > MAX_SEGMENT => {
                        return Err(IndexReadError::ReservedSegment {
                            bucket: done + position,
                            segment,
                        });
                    }
                    _ => used += 1,
                }
            }
            done = end;
        }
        if !at_end(&mut reader)? {
            return Err(IndexReadError::TrailingData);
        }
        if used != header.num_entries {
            return Err(IndexReadError::EntryCountMismatch {
                header: header.num_entries,
                counted: used,
            });
        }
        let mut index = Self {
            buckets,
            num_entries: used,
            num_empty: empty,
            lower_limit: lower_limit(num_buckets),
            upper_limit: upper_limit(num_buckets),
            min_empty: min_empty(num_buckets),
        };
        if index.num_empty < index.min_empty {
            index
                .rebuild(num_buckets)
                .map_err(IndexReadError::RebuildFailed)?;
        }
        Ok(index)
    }

    /// Writes the table as it is, tombstones included, as borg does (`hashindex_write`).
    pub fn write_to<W: Write>(&self, mut writer: W) -> io::Result<()> {
        self.write_header(&mut writer)?;
        self.write_buckets(&mut writer)
    }

    /// Writes the 18-byte header in one `write_all`.
    pub fn write_header<W: Write>(&self, mut writer: W) -> io::Result<()> {
        writer.write_all(&self.header().to_bytes())
    }

    /// Writes all buckets in one `write_all`.
    pub fn write_buckets<W: Write>(&self, mut writer: W) -> io::Result<()> {
        writer.write_all(self.buckets.as_flattened().as_flattened())
    }

    /// Looks `id` up without changing the table.
    fn probe(&self, id: &ObjectId) -> Probe {
        let num_buckets = self.buckets.len();
        let start = home_bucket(id, num_buckets);
        let mut idx = start;
        let mut first_tombstone = None;
        loop {
            let bucket = &self.buckets[idx];
            match state_of(bucket) {
                BucketState::Empty => break,
                BucketState::Deleted => {
                    if first_tombstone.is_none() {
                        first_tombstone = Some(idx);
                    }
                }
                BucketState::Used => {
                    if holds_key(bucket, id) {
                        return Probe {
                            found: Some(idx),
                            first_tombstone,
                            end: idx,
                        };
                    }
                }
            }
            idx += 1;
            if idx == num_buckets {
                idx = 0;
            }
            if idx == start {
                break;
            }
        }
        Probe {
            found: None,
            first_tombstone,
            end: idx,
        }
    }

    /// Looks `id` up as borg's mutating lookup does: a hit found after a tombstone is moved into
    /// that tombstone and its old bucket becomes one, which shortens later probes.
    fn probe_and_move(&mut self, id: &ObjectId) -> Probe {
        let mut probe = self.probe(id);
        if let (Some(found), Some(tombstone)) = (probe.found, probe.first_tombstone) {
            self.buckets[tombstone] = self.buckets[found];
            mark_deleted(&mut self.buckets[found]);
            probe.found = Some(tombstone);
            probe.end = tombstone;
        }
        probe
    }

    /// Re-inserts every entry, in bucket order, into a new table of `fit_size(capacity)`
    /// buckets (`hashindex_resize`). The new table applies the insert rules itself, so it may
    /// grow on the way, as borg's does.
    fn rebuild(&mut self, capacity: usize) -> Result<(), IndexError> {
        let mut rebuilt = Self::with_table_size(capacity)?;
        for (id, segment, offset) in self.iter() {
            rebuilt.insert(id, segment, offset)?;
        }
        if rebuilt.num_entries != self.num_entries {
            return Err(IndexError::DuplicateIds {
                expected: self.num_entries,
                rebuilt: rebuilt.num_entries,
            });
        }
        *self = rebuilt;
        Ok(())
    }
}

/// True when `reader` has no more bytes.
fn at_end<R: Read>(reader: &mut R) -> Result<bool, IndexReadError> {
    let mut probe = [0u8; 1];
    loop {
        match reader.read(&mut probe) {
            Ok(0) => return Ok(true),
            Ok(_) => return Ok(false),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(IndexReadError::Io(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{HashMap, HashSet};
    use std::path::PathBuf;
    use std::process::Command;
    use std::time::Instant;

    /// Deterministic id source for tests.
    struct SplitMix(u64);

    impl SplitMix {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn id(&mut self) -> ObjectId {
            let mut id = [0u8; KEY_LEN];
            for chunk in id.chunks_mut(8) {
                chunk.copy_from_slice(&self.next_u64().to_le_bytes());
            }
            id
        }

        fn below(&mut self, bound: u64) -> u64 {
            self.next_u64() % bound
        }
    }

    /// An id whose home bucket is `home` in any table larger than `home`; `tag` keeps ids apart.
    fn id_with_home(home: u32, tag: u32) -> ObjectId {
        let mut id = [0xA5u8; KEY_LEN];
        id[..4].copy_from_slice(&home.to_le_bytes());
        id[4..8].copy_from_slice(&tag.to_le_bytes());
        id
    }

    fn random_ids(seed: u64, count: usize) -> Vec<ObjectId> {
        let mut rng = SplitMix(seed);
        (0..count).map(|_| rng.id()).collect()
    }

    fn bucket_of(index: &NsIndex, id: &ObjectId) -> Option<usize> {
        index.probe(id).found
    }

    /// (used, deleted, empty) bucket counts.
    fn census(index: &NsIndex) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for bucket in &index.buckets {
            match state_of(bucket) {
                BucketState::Used => counts.0 += 1,
                BucketState::Deleted => counts.1 += 1,
                BucketState::Empty => counts.2 += 1,
            }
        }
        counts
    }

    fn assert_consistent(index: &NsIndex) {
        let (used, _, empty) = census(index);
        assert_eq!(used, index.len(), "num_entries");
        assert_eq!(empty, index.num_empty, "num_empty");
        assert!(
            index.num_empty >= index.min_empty,
            "fewer empty buckets than min_empty"
        );
        let num_buckets = index.num_buckets();
        assert_eq!(index.lower_limit, lower_limit(num_buckets));
        assert_eq!(index.upper_limit, upper_limit(num_buckets));
        assert_eq!(index.min_empty, min_empty(num_buckets));
        index.check_structure().unwrap();
    }

    fn file_bytes(index: &NsIndex) -> Vec<u8> {
        let mut bytes = Vec::new();
        index.write_to(&mut bytes).unwrap();
        bytes
    }

    fn load(bytes: &[u8]) -> Result<NsIndex, IndexReadError> {
        NsIndex::read_from(bytes, bytes.len() as u64)
    }

    fn used_bucket(id: &ObjectId, segment: u32, offset: u32) -> Bucket {
        let mut bucket = EMPTY_BUCKET;
        fill_bucket(&mut bucket, id, segment, offset);
        bucket
    }

    fn deleted_bucket(id: &ObjectId) -> Bucket {
        let mut bucket = used_bucket(id, 1, 2);
        mark_deleted(&mut bucket);
        bucket
    }

    /// An index file with the given header counts and buckets, as an independent writer would.
    fn encode(num_entries: i32, num_buckets: i32, buckets: &[Bucket]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&num_entries.to_le_bytes());
        bytes.extend_from_slice(&num_buckets.to_le_bytes());
        bytes.extend_from_slice(&[KEY_LEN as u8, VALUE_LEN as u8]);
        bytes.extend_from_slice(buckets.as_flattened().as_flattened());
        bytes
    }

    /// Buckets with each id placed at its home bucket (distinct homes required).
    fn table_with(num_buckets: usize, used: &[ObjectId], deleted: &[ObjectId]) -> Vec<Bucket> {
        let mut buckets = vec![EMPTY_BUCKET; num_buckets];
        for (n, id) in used.iter().enumerate() {
            buckets[home_bucket(id, num_buckets)] = used_bucket(id, n as u32, 7);
        }
        for id in deleted {
            buckets[home_bucket(id, num_buckets)] = deleted_bucket(id);
        }
        buckets
    }

    // ---- sizing ----

    #[test]
    fn limits_match_borg_for_the_first_table_sizes() {
        assert_eq!(
            (lower_limit(1031), upper_limit(1031), min_empty(1031)),
            (0, 773, 73)
        );
        assert_eq!(
            (lower_limit(2053), upper_limit(2053), min_empty(2053)),
            (513, 1539, 144)
        );
        assert_eq!(upper_limit(LARGEST_TABLE), LARGEST_TABLE);
        assert_eq!(lower_limit(97), 0);
        assert_eq!(min_empty(1), 1);
    }

    #[test]
    fn size_steps_follow_the_size_table_and_clamp_at_both_ends() {
        assert_eq!(fit_size(0), 1031);
        assert_eq!(fit_size(1031), 1031);
        assert_eq!(fit_size(1032), 2053);
        assert_eq!(fit_size(usize::MAX), LARGEST_TABLE);
        assert_eq!(grow_size(1031), 2053);
        assert_eq!(
            grow_size(97),
            2053,
            "a size below the table grows past the first size"
        );
        assert_eq!(
            grow_size(5000),
            16411,
            "between sizes: the next size after the fitting one"
        );
        assert_eq!(grow_size(LARGEST_TABLE), LARGEST_TABLE);
        assert_eq!(shrink_size(2053), 1031);
        assert_eq!(shrink_size(1031), 1031);
        assert_eq!(shrink_size(97), 1031);
    }

    #[test]
    fn recommended_size_keeps_entries_below_three_quarters() {
        assert_eq!(recommended_num_buckets(0), 1031);
        assert_eq!(recommended_num_buckets(772), 1031);
        assert_eq!(recommended_num_buckets(773), 2053);
        assert_eq!(recommended_num_buckets(5_000_000), 8410991);
        for entries in [0, 1, 500, 772, 773, 1539, 1540, 100_000, 4_505_900] {
            let buckets = recommended_num_buckets(entries);
            assert!(
                entries as f64 / 0.75 + 1.0 <= buckets as f64,
                "{entries} -> {buckets}"
            );
            assert!(entries <= upper_limit(buckets));
        }
        assert_eq!(recommended_num_buckets(usize::MAX), LARGEST_TABLE);
    }

    // ---- basic operations ----

    #[test]
    fn new_index_is_1031_empty_buckets_in_a_41258_byte_file() {
        let index = NsIndex::new();
        assert!(index.is_empty());
        assert_eq!(index.num_buckets(), 1031);
        assert_eq!(index.size_on_disk(), 41258);
        let bytes = file_bytes(&index);
        assert_eq!(bytes.len(), 41258);
        assert_eq!(
            &bytes[..HEADER_LEN],
            b"BORG_IDX\0\0\0\0\x07\x04\0\0\x20\x08"
        );
        let mut expected_bucket = [0u8; 40];
        expected_bucket[32..36].copy_from_slice(&[0xFF; 4]);
        assert!(bytes[HEADER_LEN..].chunks(40).all(|b| b == expected_bucket));
        assert_consistent(&index);
    }

    #[test]
    fn given_an_inserted_id_then_get_and_contains_find_it() {
        let mut index = NsIndex::new();
        let id = [7u8; 32];
        assert_eq!(index.insert(&id, 3, 99).unwrap(), None);
        assert_eq!(index.get(&id), Some((3, 99)));
        assert!(index.contains(&id));
        assert!(!index.contains(&[8u8; 32]));
        assert_eq!(index.get(&[8u8; 32]), None);
        assert_eq!(index.len(), 1);
        assert_consistent(&index);
    }

    #[test]
    fn given_an_existing_id_then_insert_overwrites_and_returns_the_previous_value() {
        let mut index = NsIndex::new();
        let id = [7u8; 32];
        index.insert(&id, 3, 99).unwrap();
        assert_eq!(index.insert(&id, 4, 100).unwrap(), Some((3, 99)));
        assert_eq!(index.get(&id), Some((4, 100)));
        assert_eq!(index.len(), 1);
        assert_eq!(census(&index), (1, 0, 1030), "an overwrite uses no bucket");
    }

    #[test]
    fn given_a_removed_id_then_it_is_gone_and_its_bucket_is_a_tombstone() {
        let mut index = NsIndex::new();
        let id = [7u8; 32];
        index.insert(&id, 3, 99).unwrap();
        let bucket = bucket_of(&index, &id).unwrap();
        assert_eq!(index.remove(&id), Some((3, 99)));
        assert_eq!(index.get(&id), None);
        assert_eq!(index.remove(&id), None);
        assert!(index.is_empty());
        assert_eq!(state_of(&index.buckets[bucket]), BucketState::Deleted);
        assert_eq!(
            key_bytes(&index.buckets[bucket]),
            &id,
            "a tombstone keeps its key bytes, as borg's"
        );
        assert_eq!(offset_word(&index.buckets[bucket]), 99);
        assert_consistent(&index);
    }

    #[test]
    fn rejects_a_segment_in_the_reserved_range_without_changing_the_table() {
        let mut index = NsIndex::new();
        let id = [1u8; 32];
        index.insert(&id, 5, 6).unwrap();
        let before = file_bytes(&index);
        for segment in [MAX_SEGMENT + 1, DELETED_MARKER, EMPTY_MARKER] {
            assert_eq!(
                index.insert(&id, segment, 0),
                Err(IndexError::SegmentOutOfRange { segment })
            );
            assert_eq!(
                index.insert(&[2u8; 32], segment, 0),
                Err(IndexError::SegmentOutOfRange { segment })
            );
        }
        assert_eq!(file_bytes(&index), before);
        assert_eq!(index.insert(&[2u8; 32], MAX_SEGMENT, 0).unwrap(), None);
        assert_eq!(index.get(&[2u8; 32]), Some((MAX_SEGMENT, 0)));
    }

    #[test]
    fn home_bucket_is_the_first_four_bytes_little_endian_modulo_the_size() {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&[0x01, 0x02, 0x03, 0x00]);
        assert_eq!(
            home_bucket(&id, 1031),
            200,
            "0x030201 = 197121 = 191 * 1031 + 200"
        );
        id[..4].copy_from_slice(&[0xFF; 4]);
        assert_eq!(
            home_bucket(&id, 1031),
            689,
            "4294967295 = 4165826 * 1031 + 689"
        );
        let mut index = NsIndex::new();
        let id = id_with_home(500, 1);
        index.insert(&id, 1, 1).unwrap();
        assert_eq!(bucket_of(&index, &id), Some(500));
    }

    #[test]
    fn given_ids_sharing_a_home_then_they_fill_the_following_buckets() {
        let mut index = NsIndex::new();
        let ids: Vec<_> = (0..4).map(|tag| id_with_home(100, tag)).collect();
        for (n, id) in ids.iter().enumerate() {
            index.insert(id, n as u32, 0).unwrap();
        }
        for (n, id) in ids.iter().enumerate() {
            assert_eq!(bucket_of(&index, id), Some(100 + n));
            assert_eq!(index.get(id), Some((n as u32, 0)));
        }
        assert_eq!(index.get(&id_with_home(100, 9)), None);
    }

    #[test]
    fn probing_wraps_around_from_the_last_bucket_to_the_first() {
        let mut index = NsIndex::new();
        let ids: Vec<_> = (0..3).map(|tag| id_with_home(1030, tag)).collect();
        for (n, id) in ids.iter().enumerate() {
            index.insert(id, n as u32, 0).unwrap();
        }
        assert_eq!(bucket_of(&index, &ids[0]), Some(1030));
        assert_eq!(bucket_of(&index, &ids[1]), Some(0));
        assert_eq!(bucket_of(&index, &ids[2]), Some(1));
        let order: Vec<_> = index.iter().map(|(id, _, _)| *id).collect();
        assert_eq!(order, vec![ids[1], ids[2], ids[0]]);
        index.remove(&ids[1]);
        assert_eq!(
            index.get(&ids[2]),
            Some((2, 0)),
            "lookup continues past a tombstone"
        );
        assert_eq!(index.get(&id_with_home(1030, 7)), None);
        assert_consistent(&index);
    }

    #[test]
    fn given_a_tombstone_on_the_probe_path_then_a_new_id_reuses_it() {
        let mut index = NsIndex::new();
        let [a, b, c, d] = [0, 1, 2, 3].map(|tag| id_with_home(200, tag));
        for id in [a, b, c] {
            index.insert(&id, 1, 0).unwrap();
        }
        index.remove(&a);
        let empty_before = index.num_empty;
        index.insert(&d, 4, 0).unwrap();
        assert_eq!(bucket_of(&index, &d), Some(200));
        assert_eq!(
            index.num_empty, empty_before,
            "reusing a tombstone takes no empty bucket"
        );
        assert_eq!(census(&index).1, 0);
        assert_consistent(&index);
    }

    #[test]
    fn given_a_hit_after_a_tombstone_then_insert_moves_it_into_the_tombstone() {
        let mut index = NsIndex::new();
        let [a, b, c] = [0, 1, 2].map(|tag| id_with_home(300, tag));
        for id in [a, b, c] {
            index.insert(&id, 1, 0).unwrap();
        }
        index.remove(&a);
        assert_eq!(index.insert(&c, 9, 9).unwrap(), Some((1, 0)));
        assert_eq!(bucket_of(&index, &c), Some(300));
        assert_eq!(state_of(&index.buckets[302]), BucketState::Deleted);
        assert_eq!(key_bytes(&index.buckets[302]), &c);
        assert_eq!(index.get(&b), Some((1, 0)));
        assert_eq!(index.get(&c), Some((9, 9)));
        assert_consistent(&index);
    }

    #[test]
    fn given_a_hit_after_a_tombstone_then_remove_leaves_both_buckets_as_tombstones() {
        let mut index = NsIndex::new();
        let [a, b, c] = [0, 1, 2].map(|tag| id_with_home(300, tag));
        for id in [a, b, c] {
            index.insert(&id, 1, 0).unwrap();
        }
        index.remove(&a);
        assert_eq!(index.remove(&c), Some((1, 0)));
        assert_eq!(state_of(&index.buckets[300]), BucketState::Deleted);
        assert_eq!(
            key_bytes(&index.buckets[300]),
            &c,
            "the moved bucket keeps the removed key"
        );
        assert_eq!(state_of(&index.buckets[302]), BucketState::Deleted);
        assert_eq!(index.get(&b), Some((1, 0)));
        assert_consistent(&index);
    }

    #[test]
    fn get_and_list_never_move_buckets() {
        let mut index = NsIndex::new();
        let [a, b, c] = [0, 1, 2].map(|tag| id_with_home(300, tag));
        for id in [a, b, c] {
            index.insert(&id, 1, 0).unwrap();
        }
        index.remove(&a);
        let before = file_bytes(&index);
        assert!(index.get(&c).is_some());
        assert!(index.contains(&c));
        index.list(Some(1), Some(&c)).unwrap();
        assert_eq!(file_bytes(&index), before);
        assert_eq!(bucket_of(&index, &c), Some(302));
    }

    #[test]
    fn lookup_ends_after_one_full_cycle_when_no_bucket_is_empty() {
        let ids: Vec<_> = (0..7).map(|tag| id_with_home(tag, tag)).collect();
        let mut buckets: Vec<Bucket> = ids.iter().map(|id| used_bucket(id, 1, 1)).collect();
        buckets[3] = deleted_bucket(&ids[3]);
        let mut index = NsIndex {
            num_entries: 6,
            num_empty: 0,
            lower_limit: lower_limit(7),
            upper_limit: upper_limit(7),
            min_empty: min_empty(7),
            buckets,
        };
        assert_eq!(index.get(&id_with_home(5, 99)), None);
        assert_eq!(index.get(&ids[6]), Some((1, 1)));
        let probe = index.probe(&id_with_home(5, 99));
        assert_eq!(
            (probe.found, probe.first_tombstone, probe.end),
            (None, Some(3), 5)
        );
        // 6 entries > upper limit 5: the insert grows the table first.
        assert_eq!(index.insert(&id_with_home(5, 99), 2, 2).unwrap(), None);
        assert_eq!(index.num_buckets(), 2053);
        assert_eq!(index.len(), 7);
        assert_consistent(&index);
    }

    // ---- growing, shrinking, rebuilding ----

    #[test]
    fn grows_to_the_next_size_when_inserting_beyond_three_quarters() {
        let ids = random_ids(1, 3076);
        let mut index = NsIndex::new();
        let mut sizes = HashMap::new();
        for (n, id) in ids.iter().enumerate() {
            index.insert(id, n as u32, 0).unwrap();
            sizes.insert(n + 1, index.num_buckets());
        }
        assert_eq!(sizes[&774], 1031);
        assert_eq!(sizes[&775], 2053);
        assert_eq!(sizes[&1540], 2053);
        assert_eq!(sizes[&1541], 4099);
        assert_eq!(sizes[&3075], 4099);
        assert_eq!(sizes[&3076], 8209);
        for (n, id) in ids.iter().enumerate() {
            assert_eq!(index.get(id), Some((n as u32, 0)));
        }
        assert_consistent(&index);
    }

    #[test]
    fn shrinks_to_the_previous_size_when_dropping_below_a_quarter() {
        let ids = random_ids(2, 6200);
        let mut index = NsIndex::new();
        for id in &ids {
            index.insert(id, 1, 2).unwrap();
        }
        assert_eq!(index.num_buckets(), 16411);
        let mut sizes = HashMap::new();
        for (n, id) in ids.iter().enumerate() {
            index.remove(id);
            sizes.insert(ids.len() - n - 1, index.num_buckets());
        }
        assert_eq!(sizes[&4102], 16411);
        assert_eq!(sizes[&4101], 8209, "lower limit of 16411 is 4102");
        assert_eq!(sizes[&2052], 8209);
        assert_eq!(sizes[&2051], 4099);
        assert_eq!(sizes[&1024], 4099);
        assert_eq!(sizes[&1023], 2053);
        assert_eq!(sizes[&513], 2053);
        assert_eq!(sizes[&512], 1031);
        assert_eq!(sizes[&0], 1031, "the smallest table never shrinks");
        assert!(index.is_empty());
        assert_consistent(&index);
    }

    #[test]
    fn given_a_shrink_then_the_rebuilt_table_has_no_tombstones_and_keeps_every_id() {
        let ids = random_ids(3, 775);
        let mut index = NsIndex::new();
        for (n, id) in ids.iter().enumerate() {
            index.insert(id, n as u32, 0).unwrap();
        }
        assert_eq!(index.num_buckets(), 2053);
        for id in &ids[..263] {
            index.remove(id);
        }
        assert_eq!(index.len(), 512);
        assert_eq!(index.num_buckets(), 1031);
        assert_eq!(census(&index), (512, 0, 519));
        for (n, id) in ids.iter().enumerate().skip(263) {
            assert_eq!(index.get(id), Some((n as u32, 0)));
        }
        assert_consistent(&index);
    }

    #[test]
    fn rebuilds_at_the_same_size_when_an_insert_would_leave_too_few_empty_buckets() {
        let mut index = NsIndex::new();
        let first: Vec<_> = (0..700).map(|home| id_with_home(home, 0)).collect();
        for id in &first {
            index.insert(id, 1, 0).unwrap();
        }
        for id in &first[..200] {
            index.remove(id);
        }
        assert_eq!(census(&index), (500, 200, 331));
        // Each id lands in its own empty home bucket: 331 - 258 = 73 = min_empty.
        let second: Vec<_> = (700..958).map(|home| id_with_home(home, 1)).collect();
        for id in &second {
            index.insert(id, 2, 0).unwrap();
        }
        assert_eq!(census(&index), (758, 200, 73));
        let trigger = id_with_home(958, 1);
        index.insert(&trigger, 3, 0).unwrap();
        assert_eq!(index.num_buckets(), 1031, "a same-size rebuild");
        assert_eq!(census(&index), (759, 0, 272));
        for id in first[200..].iter().chain(&second).chain([&trigger]) {
            assert!(index.contains(id));
        }
        assert_consistent(&index);
    }

    // ---- list ----

    fn page_through(index: &NsIndex, limit: usize) -> Vec<ObjectId> {
        let mut all = Vec::new();
        let mut marker = None;
        loop {
            let page = index.list(Some(limit), marker.as_ref()).unwrap();
            assert!(page.len() <= limit);
            let Some(last) = page.last() else {
                break;
            };
            marker = Some(*last);
            all.extend(page);
        }
        all
    }

    #[test]
    fn paging_through_list_returns_every_id_exactly_once_with_tombstones_present() {
        let ids = random_ids(4, 5000);
        let mut index = NsIndex::new();
        for id in &ids {
            index.insert(id, 1, 1).unwrap();
        }
        let mut rng = SplitMix(5);
        let mut removed = HashSet::new();
        while removed.len() < 1500 {
            let id = ids[rng.below(ids.len() as u64) as usize];
            index.remove(&id);
            removed.insert(id);
        }
        assert!(census(&index).1 > 0, "the test needs tombstones");
        let expected: HashSet<_> = ids.iter().filter(|id| !removed.contains(*id)).collect();
        for limit in [1, 7, 100, 100_000] {
            let listed = page_through(&index, limit);
            assert_eq!(listed.len(), index.len());
            let unique: HashSet<_> = listed.iter().collect();
            assert_eq!(unique, expected);
            let in_bucket_order: Vec<_> = index.iter().map(|(id, _, _)| *id).collect();
            assert_eq!(listed, in_bucket_order);
        }
    }

    /// borg 1.4.5's marker lookup moves the marker into a tombstone earlier in its chain, so its
    /// paging repeats ids (first case) or, when the chain wraps, skips the rest (second case).
    #[test]
    fn paging_past_a_marker_behind_a_tombstone_neither_repeats_nor_skips_ids() {
        let mut index = NsIndex::new();
        for tag in 0..3 {
            index.insert(&id_with_home(100, tag), 1, tag).unwrap();
        }
        index.insert(&id_with_home(0, 9), 1, 9).unwrap();
        index.remove(&id_with_home(100, 0));
        assert_eq!(
            page_through(&index, 3),
            [
                id_with_home(0, 9),
                id_with_home(100, 1),
                id_with_home(100, 2)
            ]
        );

        let mut index = NsIndex::new();
        for tag in 0..3 {
            index.insert(&id_with_home(1030, tag), 1, tag).unwrap();
        }
        for tag in 0..5 {
            index
                .insert(&id_with_home(500 + tag, 20 + tag), 1, tag)
                .unwrap();
        }
        index.remove(&id_with_home(1030, 0));
        let listed = page_through(&index, 1);
        assert_eq!(listed.len(), 7);
        assert_eq!(listed.iter().collect::<HashSet<_>>().len(), 7);
    }

    #[test]
    fn list_starts_right_after_the_marker_bucket() {
        let ids = random_ids(6, 50);
        let mut index = NsIndex::new();
        for id in &ids {
            index.insert(id, 1, 1).unwrap();
        }
        let order: Vec<_> = index.iter().map(|(id, _, _)| *id).collect();
        assert_eq!(index.list(None, None).unwrap(), order);
        assert_eq!(index.list(Some(0), None).unwrap(), Vec::<ObjectId>::new());
        assert_eq!(index.list(Some(3), None).unwrap(), order[..3]);
        assert_eq!(
            index.list(Some(5), Some(&order[10])).unwrap(),
            order[11..16]
        );
        assert_eq!(index.list(None, Some(&order[10])).unwrap(), order[11..]);
        assert!(index.list(None, Some(&order[49])).unwrap().is_empty());
        assert_eq!(index.list(Some(usize::MAX), None).unwrap().len(), 50);
    }

    #[test]
    fn list_rejects_a_marker_that_is_not_in_the_index() {
        let mut index = NsIndex::new();
        let id = [3u8; 32];
        assert_eq!(index.list(None, Some(&id)), Err(MarkerNotFound));
        index.insert(&id, 1, 1).unwrap();
        index.remove(&id);
        assert_eq!(index.list(Some(10), Some(&id)), Err(MarkerNotFound));
        assert_eq!(MarkerNotFound.to_string(), "marker not found");
    }

    // ---- compaction ----

    #[test]
    fn compacted_is_tombstone_free_of_the_recommended_size_with_the_same_entries() {
        let ids = random_ids(7, 3000);
        let mut index = NsIndex::new();
        for (n, id) in ids.iter().enumerate() {
            index.insert(id, n as u32, 5).unwrap();
        }
        for id in &ids[..1800] {
            index.remove(id);
        }
        assert!(census(&index).1 > 0);
        let compact = index.compacted().unwrap();
        assert_eq!(compact.num_buckets(), recommended_num_buckets(1200));
        assert_eq!(compact.num_buckets(), 2053);
        assert_eq!(census(&compact), (1200, 0, 853));
        let original: HashMap<_, _> = index.iter().map(|(id, s, o)| (*id, (s, o))).collect();
        let copied: HashMap<_, _> = compact.iter().map(|(id, s, o)| (*id, (s, o))).collect();
        assert_eq!(original, copied);
        assert_consistent(&compact);
        assert_eq!(NsIndex::with_capacity(0).unwrap().num_buckets(), 1031);
    }

    // ---- file codec ----

    #[test]
    fn written_file_reads_back_to_the_same_bytes_and_entries() {
        let ids = random_ids(8, 2500);
        let mut index = NsIndex::new();
        for (n, id) in ids.iter().enumerate() {
            index.insert(id, n as u32, (n * 3) as u32).unwrap();
        }
        for id in ids.iter().step_by(3) {
            index.remove(id);
        }
        let bytes = file_bytes(&index);
        assert_eq!(bytes.len() as u64, index.size_on_disk());
        let loaded = load(&bytes).unwrap();
        assert_eq!(file_bytes(&loaded), bytes);
        assert_eq!(loaded.len(), index.len());
        assert_eq!(loaded.num_empty, index.num_empty);
        assert!(loaded.iter().eq(index.iter()));
        assert_consistent(&loaded);
    }

    #[test]
    fn split_header_and_bucket_calls_equal_the_one_call_codec() {
        let mut index = NsIndex::new();
        index.insert(&[9u8; 32], 1, 2).unwrap();
        let mut split = Vec::new();
        index.write_header(&mut split).unwrap();
        assert_eq!(split.len(), HEADER_LEN);
        index.write_buckets(&mut split).unwrap();
        assert_eq!(split, file_bytes(&index));
        let mut reader = &split[..];
        let header = IndexHeader::read_from(&mut reader).unwrap();
        assert_eq!(
            reader.len(),
            split.len() - HEADER_LEN,
            "the header read takes 18 bytes"
        );
        assert_eq!(header, index.header());
        assert_eq!(header.to_bytes(), split[..HEADER_LEN]);
        let loaded = NsIndex::read_buckets(header, reader, split.len() as u64).unwrap();
        assert_eq!(loaded.get(&[9u8; 32]), Some((1, 2)));
    }

    #[test]
    fn read_file_loads_a_written_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.5");
        let mut index = NsIndex::new();
        index.insert(&[4u8; 32], 10, 20).unwrap();
        index.write_to(File::create(&path).unwrap()).unwrap();
        let loaded = NsIndex::read_file(&path).unwrap();
        assert_eq!(loaded.get(&[4u8; 32]), Some((10, 20)));
        assert!(matches!(
            NsIndex::read_file(&dir.path().join("index.6")),
            Err(IndexReadError::Io(_))
        ));
    }

    #[test]
    fn accepts_a_table_size_that_is_not_in_the_size_table() {
        let ids: Vec<_> = (0..10).map(|home| id_with_home(home * 9, home)).collect();
        let bytes = encode(10, 97, &table_with(97, &ids, &[]));
        let index = load(&bytes).unwrap();
        assert_eq!(index.num_buckets(), 97);
        assert_eq!(file_bytes(&index), bytes);
        for id in &ids {
            assert!(index.contains(id));
        }
        assert_consistent(&index);
    }

    #[test]
    fn given_too_few_empty_buckets_on_load_then_it_rebuilds_like_borg() {
        let used: Vec<_> = (0..700).map(|home| id_with_home(home, 0)).collect();
        let deleted: Vec<_> = (700..1000).map(|home| id_with_home(home, 0)).collect();
        let bytes = encode(700, 1031, &table_with(1031, &used, &deleted));
        let index = load(&bytes).unwrap();
        assert_eq!(index.num_buckets(), 1031);
        assert_eq!(census(&index), (700, 0, 331));
        assert!(used.iter().all(|id| index.contains(id)));
        assert_consistent(&index);

        // A full 97-bucket table has no empty bucket; rebuilding fits it into 1031 buckets.
        let full: Vec<_> = (0..97).map(|home| id_with_home(home, 1)).collect();
        let index = load(&encode(97, 97, &table_with(97, &full, &[]))).unwrap();
        assert_eq!(index.num_buckets(), 1031);
        assert_eq!(index.len(), 97);
        assert_consistent(&index);
    }

    #[test]
    fn rejects_a_file_shorter_than_the_header() {
        for len in [0, 1, 8, 17] {
            let bytes = &file_bytes(&NsIndex::new())[..len];
            assert!(matches!(load(bytes), Err(IndexReadError::TruncatedHeader)));
        }
    }

    #[test]
    fn rejects_hostile_or_foreign_headers_before_reading_buckets() {
        let good = file_bytes(&NsIndex::new());
        let patched = |at: usize, with: &[u8]| {
            let mut bytes = good.clone();
            bytes[at..at + with.len()].copy_from_slice(with);
            bytes
        };
        assert!(matches!(
            load(&patched(0, b"BORG_SEG")),
            Err(IndexReadError::BadMagic(m)) if &m == b"BORG_SEG"
        ));
        assert!(matches!(
            load(&patched(16, &[16])),
            Err(IndexReadError::UnsupportedKeySize(16))
        ));
        assert!(matches!(
            load(&patched(16, &[0xFF])),
            Err(IndexReadError::UnsupportedKeySize(-1))
        ));
        assert!(matches!(
            load(&patched(17, &[12])),
            Err(IndexReadError::UnsupportedValueSize(12))
        ));
        assert!(matches!(
            load(&patched(12, &0i32.to_le_bytes())),
            Err(IndexReadError::InvalidBucketCount(0))
        ));
        assert!(matches!(
            load(&patched(12, &(-5i32).to_le_bytes())),
            Err(IndexReadError::InvalidBucketCount(-5))
        ));
        assert!(matches!(
            load(&patched(8, &(-1i32).to_le_bytes())),
            Err(IndexReadError::InvalidEntryCount {
                num_entries: -1,
                ..
            })
        ));
        assert!(matches!(
            load(&patched(8, &1032i32.to_le_bytes())),
            Err(IndexReadError::InvalidEntryCount {
                num_entries: 1032,
                num_buckets: 1031
            })
        ));
    }

    #[test]
    fn rejects_a_huge_bucket_count_by_the_file_length_before_allocating() {
        let mut bytes = file_bytes(&NsIndex::new());
        bytes[12..16].copy_from_slice(&i32::MAX.to_le_bytes());
        match load(&bytes) {
            Err(IndexReadError::LengthMismatch { expected, actual }) => {
                assert_eq!(expected, 18 + 40 * i32::MAX as u64);
                assert_eq!(actual, 41258);
            }
            other => panic!("expected a length mismatch, got {other:?}"),
        }
    }

    #[test]
    fn rejects_a_file_length_that_differs_from_the_header_by_one_byte() {
        let bytes = file_bytes(&NsIndex::new());
        for len in [bytes.len() - 1, bytes.len() + 1] {
            let mut changed = bytes.clone();
            changed.resize(len, 0);
            assert!(matches!(
                load(&changed),
                Err(IndexReadError::LengthMismatch {
                    expected: 41258,
                    ..
                })
            ));
        }
    }

    #[test]
    fn rejects_a_reader_that_ends_early_or_runs_on_past_the_declared_length() {
        let bytes = file_bytes(&NsIndex::new());
        let short = &bytes[..bytes.len() - 40];
        assert!(matches!(
            NsIndex::read_from(short, bytes.len() as u64),
            Err(IndexReadError::TruncatedBuckets {
                expected: 41240,
                ..
            })
        ));
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            NsIndex::read_from(&long[..], bytes.len() as u64),
            Err(IndexReadError::TrailingData)
        ));
    }

    #[test]
    fn rejects_an_entry_count_that_differs_from_the_used_buckets() {
        let ids: Vec<_> = (0..5).map(|home| id_with_home(home, 0)).collect();
        let buckets = table_with(1031, &ids, &[]);
        for claimed in [4, 6, 0] {
            assert!(matches!(
                load(&encode(claimed, 1031, &buckets)),
                Err(IndexReadError::EntryCountMismatch { header, counted: 5 }) if header == claimed as usize
            ));
        }
    }

    #[test]
    fn rejects_a_used_bucket_with_a_reserved_segment() {
        let mut buckets = vec![EMPTY_BUCKET; 1031];
        buckets[9] = used_bucket(&[1u8; 32], MAX_SEGMENT + 1, 0);
        assert!(matches!(
            load(&encode(1, 1031, &buckets)),
            Err(IndexReadError::ReservedSegment { bucket: 9, segment }) if segment == MAX_SEGMENT + 1
        ));
    }

    #[test]
    fn given_a_file_holding_an_id_twice_then_the_load_rebuild_reports_it() {
        let id = id_with_home(5, 0);
        let mut buckets = table_with(97, &[], &[]);
        for bucket in buckets.iter_mut() {
            *bucket = used_bucket(&id, 1, 1);
        }
        assert!(matches!(
            load(&encode(97, 97, &buckets)),
            Err(IndexReadError::RebuildFailed(IndexError::DuplicateIds {
                expected: 97,
                rebuilt: 1
            }))
        ));
    }

    #[test]
    fn check_structure_finds_unreachable_and_duplicated_ids() {
        // An id stored past an empty bucket that ends its probe.
        let mut buckets = vec![EMPTY_BUCKET; 1031];
        buckets[12] = used_bucket(&id_with_home(10, 0), 1, 1);
        let index = load(&encode(1, 1031, &buckets)).unwrap();
        assert_eq!(
            index.check_structure(),
            Err(IndexError::UnreachableEntry { bucket: 12 })
        );
        let mut buckets = vec![EMPTY_BUCKET; 1031];
        buckets[10] = used_bucket(&id_with_home(10, 0), 1, 1);
        buckets[11] = used_bucket(&id_with_home(10, 0), 2, 2);
        let index = load(&encode(2, 1031, &buckets)).unwrap();
        assert_eq!(
            index.check_structure(),
            Err(IndexError::DuplicateId {
                first: 10,
                second: 11
            })
        );
    }

    #[test]
    fn error_messages_name_the_problem() {
        let read = IndexReadError::LengthMismatch {
            expected: 58,
            actual: 57,
        };
        assert_eq!(
            read.to_string(),
            "cannot load repository index: file length 57 (the header requires 58)"
        );
        let insert = IndexError::SegmentOutOfRange { segment: u32::MAX };
        assert!(insert.to_string().contains("4294967295"));
    }

    // ---- property tests ----

    const POOL: u16 = 2000;

    /// Half the pool shares 40 home buckets near the end of the table (long chains that wrap
    /// around); the other half spreads out.
    fn pool_id(n: u16) -> ObjectId {
        let hash = if n % 2 == 0 {
            u32::from(n % 40) * 1031 + 1010
        } else {
            u32::from(n).wrapping_mul(2_654_435_761)
        };
        let mut id = [0u8; KEY_LEN];
        id[..4].copy_from_slice(&hash.to_le_bytes());
        id[4..6].copy_from_slice(&n.to_le_bytes());
        id
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert { key: u16, segment: u32, offset: u32 },
        Remove { key: u16 },
    }

    fn op_strategy(insert_percent: u32) -> impl Strategy<Value = Op> {
        let segment = prop_oneof![
            30 => 0..=MAX_SEGMENT,
            1 => (MAX_SEGMENT + 1)..=u32::MAX,
        ];
        prop_oneof![
            insert_percent => (0..POOL, segment, any::<u32>())
                .prop_map(|(key, segment, offset)| Op::Insert { key, segment, offset }),
            (100 - insert_percent) => (0..POOL).prop_map(|key| Op::Remove { key }),
        ]
    }

    /// A filling phase then a draining phase, so tables grow and shrink.
    fn ops_strategy() -> impl Strategy<Value = Vec<Op>> {
        (
            prop::collection::vec(op_strategy(85), 0..2000),
            prop::collection::vec(op_strategy(20), 0..2000),
        )
            .prop_map(|(mut fill, drain)| {
                fill.extend(drain);
                fill
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn behaves_like_a_hash_map_and_round_trips_through_its_file(ops in ops_strategy()) {
            let mut index = NsIndex::new();
            let mut model: HashMap<ObjectId, (u32, u32)> = HashMap::new();
            for op in &ops {
                match *op {
                    Op::Insert { key, segment, offset } => {
                        let id = pool_id(key);
                        let result = index.insert(&id, segment, offset);
                        if segment > MAX_SEGMENT {
                            prop_assert_eq!(result, Err(IndexError::SegmentOutOfRange { segment }));
                        } else {
                            prop_assert_eq!(result, Ok(model.insert(id, (segment, offset))));
                        }
                    }
                    Op::Remove { key } => {
                        let id = pool_id(key);
                        prop_assert_eq!(index.remove(&id), model.remove(&id));
                    }
                }
                prop_assert_eq!(index.len(), model.len());
            }
            assert_consistent(&index);
            for key in 0..POOL {
                let id = pool_id(key);
                prop_assert_eq!(index.get(&id), model.get(&id).copied());
            }
            let listed: HashMap<_, _> = index.iter().map(|(id, s, o)| (*id, (s, o))).collect();
            prop_assert_eq!(listed.len(), index.len(), "iter yields no id twice");
            prop_assert_eq!(&listed, &model);

            let bytes = file_bytes(&index);
            let loaded = load(&bytes).unwrap();
            prop_assert_eq!(file_bytes(&loaded), bytes);
            prop_assert!(loaded.iter().eq(index.iter()));
            assert_consistent(&loaded);
        }
    }

    // ---- interop with real borg 1.4.5 ----

    /// The python of a borg 1.4.5 install; fails under CI=true when missing, else skips.
    fn borg_python() -> Option<PathBuf> {
        crate::test_support::require_borg_python(crate::test_support::Borg::Pypi14)
    }

    fn run_python(python: &Path, script: &str, args: &[&Path]) -> String {
        let output = Command::new(python)
            .arg("-c")
            .arg(script)
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "borg python failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Reads an index with borg and prints `len size`, then `hex segment offset` per entry in
    /// borg's iteration order.
    const DUMP_SCRIPT: &str = r#"
import sys
from borg.hashindex import NSIndex
idx = NSIndex.read(sys.argv[1])
print(len(idx), idx.size())
for key, (segment, offset) in idx.iteritems():
    print(key.hex(), segment, offset)
if len(sys.argv) > 2:
    idx.write(sys.argv[2])
"#;

    /// Applies an operations file (41-byte records: tag, key, segment, offset) to a fresh
    /// NSIndex and writes it.
    const APPLY_SCRIPT: &str = r#"
import sys, struct
from borg.hashindex import NSIndex
ops = open(sys.argv[1], 'rb').read()
idx = NSIndex()
for at in range(0, len(ops), 41):
    tag, key = ops[at], ops[at + 1:at + 33]
    segment, offset = struct.unpack('<II', ops[at + 33:at + 41])
    if tag == 1:
        idx[key] = (segment, offset)
    else:
        try:
            del idx[key]
        except KeyError:
            pass
idx.write(sys.argv[2])
print(len(idx))
"#;

    struct BorgDump {
        len: usize,
        size: u64,
        entries: Vec<(ObjectId, u32, u32)>,
    }

    fn parse_dump(text: &str) -> BorgDump {
        let mut lines = text.lines();
        let mut first = lines.next().unwrap().split(' ');
        let len = first.next().unwrap().parse().unwrap();
        let size = first.next().unwrap().parse().unwrap();
        let entries = lines
            .map(|line| {
                let mut fields = line.split(' ');
                let hex = fields.next().unwrap();
                let mut id = [0u8; KEY_LEN];
                for (n, byte) in id.iter_mut().enumerate() {
                    *byte = u8::from_str_radix(&hex[2 * n..2 * n + 2], 16).unwrap();
                }
                let segment = fields.next().unwrap().parse().unwrap();
                let offset = fields.next().unwrap().parse().unwrap();
                (id, segment, offset)
            })
            .collect();
        BorgDump { len, size, entries }
    }

    fn our_entries(index: &NsIndex) -> Vec<(ObjectId, u32, u32)> {
        index.iter().map(|(id, s, o)| (*id, s, o)).collect()
    }

    fn write_file(index: &NsIndex, path: &Path) {
        std::fs::write(path, file_bytes(index)).unwrap();
    }

    #[test]
    fn borg_reads_our_file_with_the_same_entries_in_the_same_bucket_order() {
        let Some(python) = borg_python() else { return };
        let dir = tempfile::tempdir().unwrap();
        let ids = random_ids(10, 5000);
        let mut index = NsIndex::new();
        for (n, id) in ids.iter().enumerate() {
            index.insert(id, n as u32, (n * 41) as u32).unwrap();
        }
        for id in ids.iter().step_by(4) {
            index.remove(id);
        }
        for id in ids.iter().skip(1).step_by(5) {
            index.insert(id, MAX_SEGMENT, 1).unwrap();
        }
        for home in 0..30 {
            index.insert(&id_with_home(8200, home), 77, home).unwrap();
        }
        assert!(census(&index).1 > 0, "the file should carry tombstones");
        let path = dir.path().join("index.1");
        write_file(&index, &path);
        let dump = parse_dump(&run_python(&python, DUMP_SCRIPT, &[&path]));
        assert_eq!(dump.len, index.len());
        assert_eq!(dump.size, index.size_on_disk());
        assert_eq!(dump.entries, our_entries(&index));
    }

    #[test]
    fn we_read_borg_file_with_tombstones_in_the_same_bucket_order_and_bytes() {
        let Some(python) = borg_python() else { return };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.2");
        let script = r#"
import sys, os
from borg.hashindex import NSIndex
idx = NSIndex()
keys = [os.urandom(32) for _ in range(6000)]
for n, key in enumerate(keys):
    idx[key] = (n, n * 7)
for key in keys[:4200]:
    del idx[key]
for key in keys[4200:4800]:
    idx[key] = (1, 2)
idx.write(sys.argv[1])
print(len(idx), idx.size())
for key, (segment, offset) in idx.iteritems():
    print(key.hex(), segment, offset)
"#;
        let dump = parse_dump(&run_python(&python, script, &[&path]));
        let index = NsIndex::read_file(&path).unwrap();
        assert!(census(&index).1 > 0, "borg's file should carry tombstones");
        assert_eq!(index.len(), dump.len);
        assert_eq!(index.size_on_disk(), dump.size);
        assert_eq!(our_entries(&index), dump.entries);
        assert_eq!(file_bytes(&index), std::fs::read(&path).unwrap());
        assert_consistent(&index);
    }

    /// Operations that cross growth, shrinking and same-size rebuilds, with overwrites, removals
    /// of absent ids and colliding homes.
    fn differential_ops() -> Vec<(bool, ObjectId, u32, u32)> {
        let mut rng = SplitMix(11);
        let mut ops = Vec::new();
        let mut live: Vec<ObjectId> = Vec::new();
        let fresh_id = |rng: &mut SplitMix| {
            if rng.below(3) == 0 {
                id_with_home(rng.below(64) as u32 * 1031 + 1020, rng.next_u64() as u32)
            } else {
                rng.id()
            }
        };
        // Fill past several growth steps.
        for _ in 0..9000 {
            let id = fresh_id(&mut rng);
            ops.push((true, id, rng.below(1000) as u32, rng.next_u64() as u32));
            live.push(id);
        }
        // Drain through several shrinks, removing some absent ids on the way.
        for _ in 0..8400 {
            let at = rng.below(live.len() as u64) as usize;
            let id = live.swap_remove(at);
            ops.push((false, id, 0, 0));
            if rng.below(10) == 0 {
                ops.push((false, rng.id(), 0, 0));
            }
        }
        // Churn at a steady size: tombstones pile up until same-size rebuilds; overwrites move
        // hits into tombstones.
        for _ in 0..20000 {
            match rng.below(3) {
                0 => {
                    let id = fresh_id(&mut rng);
                    ops.push((true, id, rng.below(1000) as u32, 1));
                    live.push(id);
                }
                1 if !live.is_empty() => {
                    let at = rng.below(live.len() as u64) as usize;
                    ops.push((false, live.swap_remove(at), 0, 0));
                }
                _ if !live.is_empty() => {
                    let id = live[rng.below(live.len() as u64) as usize];
                    ops.push((true, id, MAX_SEGMENT, 2));
                }
                _ => {}
            }
        }
        ops
    }

    #[test]
    fn the_same_operations_give_a_byte_identical_file_to_borg() {
        let Some(python) = borg_python() else { return };
        let dir = tempfile::tempdir().unwrap();
        let ops = differential_ops();
        let mut encoded = Vec::new();
        let mut index = NsIndex::new();
        let mut sizes = HashSet::new();
        let mut rebuilds_at_same_size = 0;
        for (insert, id, segment, offset) in &ops {
            encoded.push(u8::from(*insert));
            encoded.extend_from_slice(id);
            encoded.extend_from_slice(&segment.to_le_bytes());
            encoded.extend_from_slice(&offset.to_le_bytes());
            let tombstones_before = census(&index).1;
            if *insert {
                index.insert(id, *segment, *offset).unwrap();
            } else {
                index.remove(id);
            }
            if tombstones_before > 1 && census(&index).1 == 0 {
                rebuilds_at_same_size += 1;
            }
            sizes.insert(index.num_buckets());
        }
        assert!(
            sizes.len() >= 4,
            "the run should grow and shrink: {sizes:?}"
        );
        assert!(
            rebuilds_at_same_size > 0,
            "the run should rebuild to clear tombstones"
        );
        let ops_path = dir.path().join("ops");
        let borg_path = dir.path().join("index.borg");
        std::fs::write(&ops_path, encoded).unwrap();
        let borg_len: usize = run_python(&python, APPLY_SCRIPT, &[&ops_path, &borg_path])
            .trim()
            .parse()
            .unwrap();
        assert_eq!(borg_len, index.len());
        let borg_bytes = std::fs::read(&borg_path).unwrap();
        assert_eq!(borg_bytes.len() as u64, index.size_on_disk());
        assert!(borg_bytes == file_bytes(&index), "files differ");
    }

    #[test]
    fn borg_and_we_rebuild_a_file_with_too_few_empty_buckets_identically() {
        let Some(python) = borg_python() else { return };
        let dir = tempfile::tempdir().unwrap();
        let used: Vec<_> = (0..700).map(|home| id_with_home(home, 3)).collect();
        let deleted: Vec<_> = (700..1000).map(|home| id_with_home(home, 3)).collect();
        let full: Vec<_> = (0..97).map(|home| id_with_home(home * 11, 4)).collect();
        let cases = [
            (
                "tombstones",
                encode(700, 1031, &table_with(1031, &used, &deleted)),
            ),
            ("full97", encode(97, 97, &table_with(97, &full, &[]))),
        ];
        for (name, bytes) in cases {
            let input = dir.path().join(name);
            let output = dir.path().join(format!("{name}.borg"));
            std::fs::write(&input, &bytes).unwrap();
            let dump = parse_dump(&run_python(&python, DUMP_SCRIPT, &[&input, &output]));
            let index = load(&bytes).unwrap();
            assert_eq!(dump.size, index.size_on_disk(), "{name}");
            assert_eq!(dump.entries, our_entries(&index), "{name}");
            assert_eq!(
                std::fs::read(&output).unwrap(),
                file_bytes(&index),
                "{name}"
            );
        }
    }

    #[test]
    fn list_pages_match_borg_iteritems_with_a_marker() {
        let Some(python) = borg_python() else { return };
        let dir = tempfile::tempdir().unwrap();
        let mut index = NsIndex::new();
        for (n, id) in random_ids(12, 2500).iter().enumerate() {
            index.insert(id, n as u32, 0).unwrap();
        }
        let path = dir.path().join("index.3");
        write_file(&index, &path);
        // A tombstone-free table: borg's marker lookup moves nothing, so the pages must agree.
        let script = r#"
import sys
from itertools import islice
from borg.hashindex import NSIndex
idx = NSIndex.read(sys.argv[1])
marker = None
while True:
    page = [key for key, _ in islice(idx.iteritems(marker=marker), 333)]
    if not page:
        break
    print(' '.join(key.hex() for key in page))
    marker = page[-1]
"#;
        let borg_pages: Vec<String> = run_python(&python, script, &[&path])
            .lines()
            .map(str::to_owned)
            .collect();
        let mut our_pages = Vec::new();
        let mut marker = None;
        loop {
            let page = index.list(Some(333), marker.as_ref()).unwrap();
            let Some(last) = page.last() else { break };
            marker = Some(*last);
            let hex: Vec<String> = page
                .iter()
                .map(|id| id.iter().map(|b| format!("{b:02x}")).collect())
                .collect();
            our_pages.push(hex.join(" "));
        }
        assert_eq!(our_pages.len(), 8);
        assert_eq!(our_pages, borg_pages);
    }

    #[test]
    fn borg_reads_our_compacted_file() {
        let Some(python) = borg_python() else { return };
        let dir = tempfile::tempdir().unwrap();
        let ids = random_ids(13, 4000);
        let mut index = NsIndex::new();
        for (n, id) in ids.iter().enumerate() {
            index.insert(id, n as u32, 1).unwrap();
        }
        for id in &ids[..2500] {
            index.remove(id);
        }
        let compact = index.compacted().unwrap();
        let path = dir.path().join("index.4");
        write_file(&compact, &path);
        let dump = parse_dump(&run_python(&python, DUMP_SCRIPT, &[&path]));
        assert_eq!(dump.len, 1500);
        assert_eq!(dump.size, compact.size_on_disk());
        assert_eq!(dump.entries, our_entries(&compact));
    }

    // ---- measurement ----

    fn peak_rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// User plus system CPU seconds of this process: wall time is unreliable on a shared host.
    fn cpu_seconds() -> f64 {
        use nix::sys::resource::{UsageWho, getrusage};
        let usage = getrusage(UsageWho::RUSAGE_SELF).unwrap();
        let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        seconds(usage.user_time()) + seconds(usage.system_time())
    }

    fn reset_peak_rss() {
        std::fs::write("/proc/self/clear_refs", "5").unwrap();
    }

    #[test]
    #[ignore = "measurement, not a check: cargo test --release -- --ignored --nocapture measure"]
    fn measure_five_million_random_ids() {
        const OBJECTS: usize = 5_000_000;
        let ids = random_ids(14, OBJECTS);
        reset_peak_rss();
        let base = peak_rss_kib();
        let (started, cpu) = (Instant::now(), cpu_seconds());
        let mut index = NsIndex::new();
        for (n, id) in ids.iter().enumerate() {
            index.insert(id, n as u32, 0).unwrap();
        }
        let (insert_time, insert_cpu) = (started.elapsed(), cpu_seconds() - cpu);
        let insert_peak = peak_rss_kib().saturating_sub(base);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.1");
        let (started, cpu) = (Instant::now(), cpu_seconds());
        let mut file = File::create(&path).unwrap();
        index.write_to(&mut file).unwrap();
        file.sync_all().unwrap();
        let (write_time, write_cpu) = (started.elapsed(), cpu_seconds() - cpu);
        let buckets = index.num_buckets();
        drop(index);
        reset_peak_rss();
        let base = peak_rss_kib();
        let (started, cpu) = (Instant::now(), cpu_seconds());
        let loaded = NsIndex::read_file(&path).unwrap();
        let (read_time, read_cpu) = (started.elapsed(), cpu_seconds() - cpu);
        let read_peak = peak_rss_kib().saturating_sub(base);
        assert_eq!(loaded.len(), OBJECTS);
        println!(
            "{OBJECTS} ids, {buckets} buckets, file {} bytes, {:.1} bytes/object\n\
             insert {insert_time:.2?} wall, {insert_cpu:.2}s cpu (peak +{insert_peak} KiB)\n\
             write+fsync {write_time:.2?} wall, {write_cpu:.2}s cpu\n\
             read {read_time:.2?} wall, {read_cpu:.2}s cpu (peak +{read_peak} KiB)\n\
             file at {}",
            loaded.size_on_disk(),
            (buckets * BUCKET_LEN) as f64 / OBJECTS as f64,
            path.display()
        );
        if let Ok(keep) = std::env::var("KEEP_INDEX_AT") {
            std::fs::copy(&path, keep).unwrap();
        }
    }
}
