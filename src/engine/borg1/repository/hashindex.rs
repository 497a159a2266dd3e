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
mod tests;
