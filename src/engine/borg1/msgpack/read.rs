//! Bounded, zero-copy reading of untrusted msgpack.
//!
//! Reading happens in two passes. [`Scanner`] walks the headers of one message as bytes arrive,
//! resumably and without allocating, and decides "complete", "need more bytes" or "malformed"
//! while enforcing the size, depth and element-count limits. Only a complete, scanned message is
//! then read with [`Cursor`] into borrowed [`Value`]s, so nothing is ever allocated from a
//! declared length.

use std::fmt;

/// Deepest container nesting the scanner can track at all (the configurable limit is clamped to it).
const MAX_TRACKABLE_DEPTH: usize = 32;

/// Limits applied while scanning one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest encoded message accepted, in bytes. Borg's own server buffers at most 60 MiB.
    pub max_message_bytes: usize,
    /// Deepest container nesting: a request map is 1, its argument map 2 (clamped to 32).
    pub max_depth: usize,
    /// Most elements in one array, or entries in one map.
    pub max_container_len: u32,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_message_bytes: 64 * 1024 * 1024,
            max_depth: 16,
            max_container_len: 1000,
        }
    }
}

/// Why a byte stream is not acceptable msgpack (offsets count from the start of the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The reserved marker byte 0xc1 (never valid msgpack).
    ReservedMarker { offset: usize },
    /// A declared length would make the message end beyond the limit.
    TooLarge { declared_end: u64, limit: usize },
    /// Containers nested deeper than the limit.
    TooDeep { offset: usize, limit: usize },
    /// An array or map declares more elements than the limit.
    TooManyElements {
        offset: usize,
        count: u32,
        limit: u32,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::ReservedMarker { offset } => {
                write!(f, "invalid msgpack: reserved byte 0xc1 at offset {offset}")
            }
            FrameError::TooLarge {
                declared_end,
                limit,
            } => write!(
                f,
                "message too large: it declares at least {declared_end} bytes, the limit is {limit}"
            ),
            FrameError::TooDeep { offset, limit } => write!(
                f,
                "message nested too deeply at offset {offset} (more than {limit} levels)"
            ),
            FrameError::TooManyElements {
                offset,
                count,
                limit,
            } => write!(
                f,
                "container at offset {offset} declares {count} elements, the limit is {limit}"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// What one msgpack header announces. Payload lengths are not yet checked against the buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Head {
    Nil,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(u32),
    Bin(u32),
    Ext(i8, u32),
    Array(u32),
    Map(u32),
}

impl Head {
    fn payload_len(self) -> usize {
        match self {
            Head::Str(n) | Head::Bin(n) | Head::Ext(_, n) => n as usize,
            _ => 0,
        }
    }
}

enum HeadRead {
    /// The header and its length in bytes.
    Parsed(Head, usize),
    /// Fewer bytes than the header needs; the number is the full header length.
    Short(usize),
    /// 0xc1.
    Reserved,
}

/// Header length implied by the marker byte; None for the reserved 0xc1.
fn head_len(marker: u8) -> Option<usize> {
    Some(match marker {
        0xc1 => return None,
        0xc4 | 0xcc | 0xd0 | 0xd9 | 0xd4..=0xd8 => 2,
        0xc5 | 0xc7 | 0xcd | 0xd1 | 0xda | 0xdc | 0xde => 3,
        0xc8 => 4,
        0xc6 | 0xca | 0xce | 0xd2 | 0xdb | 0xdd | 0xdf => 5,
        0xc9 => 6,
        0xcb | 0xcf | 0xd3 => 9,
        _ => 1,
    })
}

fn be_bytes<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

#[inline]
fn read_head(bytes: &[u8]) -> HeadRead {
    let Some(&marker) = bytes.first() else {
        return HeadRead::Short(1);
    };
    // One-byte headers first: they are most of every request.
    let single = match marker {
        0x00..=0x7f => Some(Head::Int(i128::from(marker))),
        0x80..=0x8f => Some(Head::Map(u32::from(marker & 0x0f))),
        0x90..=0x9f => Some(Head::Array(u32::from(marker & 0x0f))),
        0xa0..=0xbf => Some(Head::Str(u32::from(marker & 0x1f))),
        0xc0 => Some(Head::Nil),
        0xc2 => Some(Head::Bool(false)),
        0xc3 => Some(Head::Bool(true)),
        0xe0..=0xff => Some(Head::Int(i128::from(marker as i8))),
        _ => None,
    };
    if let Some(head) = single {
        return HeadRead::Parsed(head, 1);
    }
    let Some(len) = head_len(marker) else {
        return HeadRead::Reserved;
    };
    if bytes.len() < len {
        return HeadRead::Short(len);
    }
    match parse_head(marker, bytes) {
        Some(head) => HeadRead::Parsed(head, len),
        // Unreachable after the length check above; treated as "need more" rather than a panic.
        None => HeadRead::Short(len),
    }
}

fn parse_head(marker: u8, b: &[u8]) -> Option<Head> {
    let u8_at = |at: usize| b.get(at).copied();
    let u16_at = |at: usize| be_bytes::<2>(b, at).map(u16::from_be_bytes);
    let u32_at = |at: usize| be_bytes::<4>(b, at).map(u32::from_be_bytes);
    let u64_at = |at: usize| be_bytes::<8>(b, at).map(u64::from_be_bytes);
    Some(match marker {
        0x00..=0x7f => Head::Int(i128::from(marker)),
        0x80..=0x8f => Head::Map(u32::from(marker & 0x0f)),
        0x90..=0x9f => Head::Array(u32::from(marker & 0x0f)),
        0xa0..=0xbf => Head::Str(u32::from(marker & 0x1f)),
        0xc0 => Head::Nil,
        0xc2 => Head::Bool(false),
        0xc3 => Head::Bool(true),
        0xc4 => Head::Bin(u32::from(u8_at(1)?)),
        0xc5 => Head::Bin(u32::from(u16_at(1)?)),
        0xc6 => Head::Bin(u32_at(1)?),
        0xc7 => Head::Ext(u8_at(2)? as i8, u32::from(u8_at(1)?)),
        0xc8 => Head::Ext(u8_at(3)? as i8, u32::from(u16_at(1)?)),
        0xc9 => Head::Ext(u8_at(5)? as i8, u32_at(1)?),
        0xca => Head::Float(f64::from(f32::from_bits(u32_at(1)?))),
        0xcb => Head::Float(f64::from_bits(u64_at(1)?)),
        0xcc => Head::Int(i128::from(u8_at(1)?)),
        0xcd => Head::Int(i128::from(u16_at(1)?)),
        0xce => Head::Int(i128::from(u32_at(1)?)),
        0xcf => Head::Int(i128::from(u64_at(1)?)),
        0xd0 => Head::Int(i128::from(u8_at(1)? as i8)),
        0xd1 => Head::Int(i128::from(u16_at(1)? as i16)),
        0xd2 => Head::Int(i128::from(u32_at(1)? as i32)),
        0xd3 => Head::Int(i128::from(u64_at(1)? as i64)),
        0xd4 => Head::Ext(u8_at(1)? as i8, 1),
        0xd5 => Head::Ext(u8_at(1)? as i8, 2),
        0xd6 => Head::Ext(u8_at(1)? as i8, 4),
        0xd7 => Head::Ext(u8_at(1)? as i8, 8),
        0xd8 => Head::Ext(u8_at(1)? as i8, 16),
        0xd9 => Head::Str(u32::from(u8_at(1)?)),
        0xda => Head::Str(u32::from(u16_at(1)?)),
        0xdb => Head::Str(u32_at(1)?),
        0xdc => Head::Array(u32::from(u16_at(1)?)),
        0xdd => Head::Array(u32_at(1)?),
        0xde => Head::Map(u32::from(u16_at(1)?)),
        0xdf => Head::Map(u32_at(1)?),
        0xe0..=0xff => Head::Int(i128::from(marker as i8)),
        0xc1 => return None,
    })
}

/// Result of scanning the buffered bytes of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// A whole message of this many bytes is buffered.
    Complete(usize),
    /// Not yet: at least this many bytes (from the message start) are needed before the
    /// scan can make progress.
    Incomplete { need: usize },
}

/// Resumable, allocation-free walk over the headers of one msgpack message.
///
/// Calling [`Scanner::scan`] again with a longer buffer (same start) continues where the last
/// call stopped, so a message that trickles in byte by byte is still scanned in linear time.
#[derive(Debug, Clone)]
pub struct Scanner {
    /// Offset of the next header to read, relative to the message start.
    pos: usize,
    /// Items still expected at each open level; level 0 expects the one top-level value.
    remaining: [u32; MAX_TRACKABLE_DEPTH + 1],
    depth: usize,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

impl Scanner {
    pub fn new() -> Self {
        let mut remaining = [0; MAX_TRACKABLE_DEPTH + 1];
        remaining[0] = 1;
        Scanner {
            pos: 0,
            remaining,
            depth: 1,
        }
    }

    /// Forget all progress (for the next message).
    pub fn reset(&mut self) {
        *self = Scanner::new();
    }

    /// Continue scanning `bytes`, which must start at the message start and extend what was
    /// passed before.
    pub fn scan(&mut self, bytes: &[u8], limits: &DecodeLimits) -> Result<Scan, FrameError> {
        let max_depth = limits.max_depth.min(MAX_TRACKABLE_DEPTH);
        let too_large = |declared_end: u64| FrameError::TooLarge {
            declared_end,
            limit: limits.max_message_bytes,
        };
        loop {
            while self.depth > 0 && self.remaining.get(self.depth - 1) == Some(&0) {
                self.depth -= 1;
            }
            if self.depth == 0 {
                return Ok(Scan::Complete(self.pos));
            }
            let rest = bytes.get(self.pos..).unwrap_or(&[]);
            let (head, header_len) = match read_head(rest) {
                HeadRead::Parsed(head, len) => (head, len),
                HeadRead::Short(len) => {
                    let need = self.pos.saturating_add(len);
                    if need > limits.max_message_bytes {
                        return Err(too_large(need as u64));
                    }
                    return Ok(Scan::Incomplete { need });
                }
                HeadRead::Reserved => return Err(FrameError::ReservedMarker { offset: self.pos }),
            };
            let end = (self.pos as u64)
                .saturating_add(header_len as u64)
                .saturating_add(head.payload_len() as u64);
            if end > limits.max_message_bytes as u64 {
                return Err(too_large(end));
            }
            // Fits in usize: it is at most max_message_bytes.
            let end = end as usize;
            if end > bytes.len() {
                return Ok(Scan::Incomplete { need: end });
            }
            if let Head::Array(count) | Head::Map(count) = head {
                if count > limits.max_container_len {
                    return Err(FrameError::TooManyElements {
                        offset: self.pos,
                        count,
                        limit: limits.max_container_len,
                    });
                }
                // Open containers after pushing this one would be `self.depth`.
                if self.depth > max_depth {
                    return Err(FrameError::TooDeep {
                        offset: self.pos,
                        limit: max_depth,
                    });
                }
            }
            if let Some(slot) = self.remaining.get_mut(self.depth - 1) {
                *slot = slot.saturating_sub(1);
            }
            self.pos = end;
            let items = match head {
                Head::Array(count) => Some(count),
                Head::Map(count) => Some(count.saturating_mul(2)),
                _ => None,
            };
            if let Some(items) = items {
                if let Some(slot) = self.remaining.get_mut(self.depth) {
                    *slot = items;
                    self.depth += 1;
                }
            }
        }
    }
}

/// Bytes that are not a complete msgpack value where one was expected.
///
/// Values inside a scanned message never produce this; it exists so that the reading code has
/// no panicking path at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedValue {
    pub offset: usize,
}

impl fmt::Display for MalformedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "truncated or invalid msgpack value at offset {}",
            self.offset
        )
    }
}

impl std::error::Error for MalformedValue {}

/// A msgpack value borrowing from the message buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Nil,
    Bool(bool),
    /// Every msgpack integer width fits (uint64 and int64).
    Int(i128),
    /// float32 values are widened.
    Float(f64),
    /// The raw-string family, which borg uses for all byte strings.
    Str(&'a [u8]),
    Bin(&'a [u8]),
    Ext(i8, &'a [u8]),
    Array(Seq<'a>),
    Map(Seq<'a>),
}

impl<'a> Value<'a> {
    /// Parse the single value that `bytes` starts with.
    pub fn parse(bytes: &'a [u8]) -> Result<Value<'a>, MalformedValue> {
        Cursor::new(bytes).read_value()
    }

    /// The byte string of a str or bin value (borg accepts both for byte fields).
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match *self {
            Value::Str(bytes) | Value::Bin(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// The name Python would give this value's type, for error messages.
    pub fn python_type_name(&self) -> &'static str {
        match self {
            Value::Nil => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) | Value::Bin(_) => "bytes",
            Value::Ext(..) => "ExtType",
            Value::Array(_) => "tuple",
            Value::Map(_) => "dict",
        }
    }
}

/// The elements of an array, or the key/value items of a map, still encoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seq<'a> {
    /// Elements of an array, entries (pairs) of a map.
    len: u32,
    /// Number of encoded values in `body` (len, or 2 * len for maps).
    items: u64,
    body: &'a [u8],
}

impl<'a> Seq<'a> {
    /// An empty array.
    pub const EMPTY: Seq<'static> = Seq {
        len: 0,
        items: 0,
        body: &[],
    };

    /// The encoded elements of a map (`len` entries) or array (`len` elements).
    pub fn from_encoded(len: u32, is_map: bool, body: &'a [u8]) -> Seq<'a> {
        let items = if is_map {
            2 * u64::from(len)
        } else {
            u64::from(len)
        };
        Seq { len, items, body }
    }

    /// Elements of an array, or entries (key/value pairs) of a map.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every encoded value in order; for a map that is key, value, key, value...
    pub fn values(&self) -> SeqValues<'a> {
        SeqValues {
            cursor: Cursor::new(self.body),
            left: self.items,
        }
    }

    /// The entries of a map as (key, value) pairs; an array yields consecutive pairs.
    pub fn pairs(&self) -> SeqPairs<'a> {
        SeqPairs {
            values: self.values(),
        }
    }

    /// The still-encoded bytes of the n-th value, without decoding the ones before it.
    pub fn raw_nth(&self, n: u64) -> Result<Option<&'a [u8]>, MalformedValue> {
        if n >= self.items {
            return Ok(None);
        }
        let mut cursor = Cursor::new(self.body);
        for _ in 0..n {
            cursor.skip_value()?;
        }
        cursor.skip_value().map(Some)
    }
}

/// Iterator over the values of a [`Seq`].
#[derive(Debug, Clone)]
pub struct SeqValues<'a> {
    cursor: Cursor<'a>,
    left: u64,
}

impl<'a> SeqValues<'a> {
    /// The next value still encoded, as a slice.
    pub fn next_raw(&mut self) -> Option<Result<&'a [u8], MalformedValue>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let result = self.cursor.skip_value();
        if result.is_err() {
            self.left = 0;
        }
        Some(result)
    }
}

impl<'a> Iterator for SeqValues<'a> {
    type Item = Result<Value<'a>, MalformedValue>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let result = self.cursor.read_value();
        if result.is_err() {
            self.left = 0;
        }
        Some(result)
    }
}

/// Iterator over the (key, value) pairs of a map [`Seq`].
#[derive(Debug, Clone)]
pub struct SeqPairs<'a> {
    values: SeqValues<'a>,
}

impl<'a> Iterator for SeqPairs<'a> {
    type Item = Result<(Value<'a>, Value<'a>), MalformedValue>;

    fn next(&mut self) -> Option<Self::Item> {
        let key = match self.values.next()? {
            Ok(key) => key,
            Err(err) => return Some(Err(err)),
        };
        let value = match self.values.next() {
            Some(Ok(value)) => value,
            Some(Err(err)) => return Some(Err(err)),
            None => {
                return Some(Err(MalformedValue {
                    offset: self.values.cursor.pos,
                }));
            }
        };
        Some(Ok((key, value)))
    }
}

/// A value read by [`Cursor::read_shallow`]: containers only as their header.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shallow<'a> {
    /// An array of this many elements follows.
    Array(u32),
    /// A map of this many entries follows.
    Map(u32),
    Scalar(Value<'a>),
}

/// Sequential reader over bytes that hold complete values.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    fn malformed(&self) -> MalformedValue {
        MalformedValue { offset: self.pos }
    }

    fn take_head(&mut self) -> Result<Head, MalformedValue> {
        let rest = self.bytes.get(self.pos..).unwrap_or(&[]);
        match read_head(rest) {
            HeadRead::Parsed(head, len) => {
                self.pos += len;
                Ok(head)
            }
            HeadRead::Short(_) | HeadRead::Reserved => Err(self.malformed()),
        }
    }

    fn take_payload(&mut self, len: usize) -> Result<&'a [u8], MalformedValue> {
        let end = self.pos.checked_add(len).ok_or_else(|| self.malformed())?;
        let payload = self
            .bytes
            .get(self.pos..end)
            .ok_or_else(|| self.malformed())?;
        self.pos = end;
        Ok(payload)
    }

    /// Skip one complete value and return its encoded bytes.
    pub fn skip_value(&mut self) -> Result<&'a [u8], MalformedValue> {
        let start = self.pos;
        let mut left: u64 = 1;
        while left > 0 {
            // Every value takes at least one byte: a larger count cannot be satisfied.
            if left > (self.bytes.len() - self.pos.min(self.bytes.len())) as u64 {
                return Err(self.malformed());
            }
            left -= 1;
            let head = self.take_head()?;
            match head {
                Head::Array(count) => left += u64::from(count),
                Head::Map(count) => left += 2 * u64::from(count),
                other => {
                    self.take_payload(other.payload_len())?;
                }
            }
        }
        self.bytes
            .get(start..self.pos)
            .ok_or_else(|| self.malformed())
    }

    /// Read one complete value; containers are skipped over and returned as a [`Seq`].
    pub fn read_value(&mut self) -> Result<Value<'a>, MalformedValue> {
        match self.read_shallow()? {
            Shallow::Scalar(value) => Ok(value),
            Shallow::Array(count) => Ok(Value::Array(self.take_seq(count, u64::from(count))?)),
            Shallow::Map(count) => Ok(Value::Map(self.take_seq(count, 2 * u64::from(count))?)),
        }
    }

    /// Read one header. A container is not skipped: the cursor stays at its first element.
    pub fn read_shallow(&mut self) -> Result<Shallow<'a>, MalformedValue> {
        let head = self.take_head()?;
        Ok(Shallow::Scalar(match head {
            Head::Nil => Value::Nil,
            Head::Bool(b) => Value::Bool(b),
            Head::Int(i) => Value::Int(i),
            Head::Float(x) => Value::Float(x),
            Head::Str(n) => Value::Str(self.take_payload(n as usize)?),
            Head::Bin(n) => Value::Bin(self.take_payload(n as usize)?),
            Head::Ext(kind, n) => Value::Ext(kind, self.take_payload(n as usize)?),
            Head::Array(count) => return Ok(Shallow::Array(count)),
            Head::Map(count) => return Ok(Shallow::Map(count)),
        }))
    }

    /// The bytes from `start` to the current position.
    pub fn consumed_since(&self, start: usize) -> &'a [u8] {
        self.bytes.get(start..self.pos).unwrap_or_default()
    }

    fn take_seq(&mut self, len: u32, items: u64) -> Result<Seq<'a>, MalformedValue> {
        let body_start = self.pos;
        for _ in 0..items {
            self.skip_value()?;
        }
        let body = self
            .bytes
            .get(body_start..self.pos)
            .ok_or_else(|| self.malformed())?;
        Ok(Seq { len, items, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(bytes: &[u8]) -> Result<Scan, FrameError> {
        Scanner::new().scan(bytes, &DecodeLimits::default())
    }

    #[test]
    fn scans_every_scalar_marker_as_complete() {
        let cases: &[&[u8]] = &[
            &[0x00],
            &[0x7f],
            &[0xe0],
            &[0xff],
            &[0xc0],
            &[0xc2],
            &[0xc3],
            &[0xcc, 1],
            &[0xcd, 1, 2],
            &[0xce, 1, 2, 3, 4],
            &[0xcf, 1, 2, 3, 4, 5, 6, 7, 8],
            &[0xd0, 1],
            &[0xd1, 1, 2],
            &[0xd2, 1, 2, 3, 4],
            &[0xd3, 1, 2, 3, 4, 5, 6, 7, 8],
            &[0xca, 0, 0, 0, 0],
            &[0xcb, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0xa1, b'x'],
            &[0xd9, 1, b'x'],
            &[0xda, 0, 1, b'x'],
            &[0xdb, 0, 0, 0, 1, b'x'],
            &[0xc4, 1, b'x'],
            &[0xc5, 0, 1, b'x'],
            &[0xc6, 0, 0, 0, 1, b'x'],
            &[0xd4, 1, 9],
            &[0xd5, 1, 9, 9],
            &[0xd6, 1, 9, 9, 9, 9],
            &[0xd7, 1, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0xd8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0xc7, 1, 5, 9],
            &[0xc8, 0, 1, 5, 9],
            &[0xc9, 0, 0, 0, 1, 5, 9],
            &[0x90],
            &[0x80],
            &[0xdc, 0, 0],
            &[0xdd, 0, 0, 0, 0],
            &[0xde, 0, 0],
            &[0xdf, 0, 0, 0, 0],
        ];
        for bytes in cases {
            assert_eq!(
                scan_all(bytes),
                Ok(Scan::Complete(bytes.len())),
                "{bytes:02x?}"
            );
            for cut in 0..bytes.len() {
                assert!(
                    matches!(scan_all(&bytes[..cut]), Ok(Scan::Incomplete { need }) if need > cut),
                    "prefix {cut} of {bytes:02x?}"
                );
            }
            let value = Value::parse(bytes).unwrap();
            assert_ne!(value.python_type_name(), "");
        }
    }

    #[test]
    fn rejects_reserved_marker_with_its_offset() {
        assert_eq!(
            scan_all(&[0x92, 0x01, 0xc1]),
            Err(FrameError::ReservedMarker { offset: 2 })
        );
    }

    #[test]
    fn rejects_a_declared_4_gib_string_before_it_arrives() {
        let bytes = [0xdb, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            scan_all(&bytes),
            Err(FrameError::TooLarge { declared_end, .. }) if declared_end == 5 + 0xffff_ffff
        ));
        assert!(matches!(
            scan_all(&[0xc6, 0xff, 0xff, 0xff, 0xff]),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn rejects_a_declared_4_giga_element_array_and_map() {
        assert!(matches!(
            scan_all(&[0xdd, 0xff, 0xff, 0xff, 0xff]),
            Err(FrameError::TooManyElements {
                count: u32::MAX,
                ..
            })
        ));
        assert!(matches!(
            scan_all(&[0xdf, 0xff, 0xff, 0xff, 0xff]),
            Err(FrameError::TooManyElements {
                count: u32::MAX,
                ..
            })
        ));
    }

    #[test]
    fn accepts_exactly_the_element_limit() {
        let mut bytes = vec![0xdc, 0x03, 0xe8];
        bytes.extend(std::iter::repeat_n(0x01, 1000));
        assert_eq!(scan_all(&bytes), Ok(Scan::Complete(bytes.len())));
        let mut too_many = vec![0xdc, 0x03, 0xe9];
        too_many.extend(std::iter::repeat_n(0x01, 1001));
        assert!(matches!(
            scan_all(&too_many),
            Err(FrameError::TooManyElements { .. })
        ));
    }

    #[test]
    fn accepts_depth_sixteen_and_rejects_seventeen() {
        let mut ok = vec![0x91; 15];
        ok.push(0x90);
        assert_eq!(scan_all(&ok), Ok(Scan::Complete(16)));
        let mut deep = vec![0x91; 16];
        deep.push(0x90);
        assert_eq!(
            scan_all(&deep),
            Err(FrameError::TooDeep {
                offset: 16,
                limit: 16
            })
        );
        let hostile = vec![0x91; 100_000];
        assert!(matches!(
            scan_all(&hostile),
            Err(FrameError::TooDeep { .. })
        ));
    }

    #[test]
    fn resumes_scanning_where_it_stopped() {
        let message = [0x93, 0x01, 0xa3, b'a', b'b', b'c', 0x92, 0xc0, 0xc3];
        let mut scanner = Scanner::new();
        let limits = DecodeLimits::default();
        for cut in 0..message.len() {
            match scanner.scan(&message[..cut], &limits).unwrap() {
                Scan::Incomplete { need } => assert!(need > cut),
                Scan::Complete(_) => panic!("complete too early at {cut}"),
            }
        }
        assert_eq!(
            scanner.scan(&message, &limits),
            Ok(Scan::Complete(message.len()))
        );
    }

    #[test]
    fn reports_the_whole_payload_as_needed_for_a_big_string() {
        let mut message = vec![0xdb, 0x00, 0x10, 0x00, 0x00];
        message.extend_from_slice(&[0; 100]);
        assert_eq!(
            scan_all(&message),
            Ok(Scan::Incomplete {
                need: 5 + 0x0010_0000
            })
        );
    }

    #[test]
    fn stops_at_the_end_of_the_first_message() {
        assert_eq!(scan_all(&[0x91, 0x01, 0x02, 0x03]), Ok(Scan::Complete(2)));
    }

    #[test]
    fn reads_values_of_every_kind() {
        let bytes = [
            0x99, 0xc0, 0xc3, 0xff, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xcb,
            0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a, 0xa2, b'h', b'i', 0xc4, 0x01, 0x07,
            0xd4, 0x05, 0x09, 0x81, 0x01, 0x02,
        ];
        let Value::Array(seq) = Value::parse(&bytes).unwrap() else {
            panic!("not an array")
        };
        let values: Vec<Value<'_>> = seq.values().map(Result::unwrap).collect();
        assert_eq!(values.len(), 9);
        assert_eq!(values[0], Value::Nil);
        assert_eq!(values[1], Value::Bool(true));
        assert_eq!(values[2], Value::Int(-1));
        assert_eq!(values[3], Value::Int(i128::from(u64::MAX)));
        assert_eq!(values[4], Value::Float(0.1));
        assert_eq!(values[5], Value::Str(b"hi"));
        assert_eq!(values[6], Value::Bin(&[7]));
        assert_eq!(values[7], Value::Ext(5, &[9]));
        let Value::Map(map) = values[8] else {
            panic!("not a map")
        };
        let pairs: Vec<_> = map.pairs().map(Result::unwrap).collect();
        assert_eq!(pairs, vec![(Value::Int(1), Value::Int(2))]);
        assert_eq!(values[8].python_type_name(), "dict");
        assert_eq!(seq.raw_nth(5).unwrap(), Some(&b"\xa2hi"[..]));
        assert_eq!(seq.raw_nth(9).unwrap(), None);
    }

    #[test]
    fn reading_truncated_values_is_an_error_not_a_panic() {
        for bytes in [
            &[0x92, 0x01][..],
            &[0xdb, 0, 0, 0, 9, 1],
            &[0xdf, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert!(Value::parse(bytes).is_err());
            assert!(Cursor::new(bytes).skip_value().is_err());
        }
    }

    mod properties {
        use super::super::*;
        use crate::engine::borg1::msgpack::write::{write_int, write_str, write_uint};
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn scanning_and_reading_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
                let mut scanner = Scanner::new();
                let limits = DecodeLimits { max_message_bytes: 200, ..DecodeLimits::default() };
                if let Ok(Scan::Complete(len)) = scanner.scan(&bytes, &limits) {
                    prop_assert!(len <= bytes.len());
                    prop_assert!(Value::parse(&bytes[..len]).is_ok());
                    prop_assert_eq!(Cursor::new(&bytes[..len]).skip_value().map(<[u8]>::len), Ok(len));
                }
                let _ = Value::parse(&bytes);
                let _ = Cursor::new(&bytes).skip_value();
            }

            #[test]
            fn written_ints_read_back(value in any::<i64>(), unsigned in any::<u64>()) {
                let mut out = Vec::new();
                write_int(&mut out, value);
                prop_assert_eq!(Value::parse(&out), Ok(Value::Int(i128::from(value))));
                prop_assert_eq!(scan_len(&out), Some(out.len()));
                out.clear();
                write_uint(&mut out, unsigned);
                prop_assert_eq!(Value::parse(&out), Ok(Value::Int(i128::from(unsigned))));
            }

            #[test]
            fn written_strings_read_back(bytes in proptest::collection::vec(any::<u8>(), 0..70_000usize)) {
                let mut out = Vec::new();
                write_str(&mut out, &bytes).unwrap();
                prop_assert_ne!(out[0], 0xd9);
                prop_assert_eq!(Value::parse(&out), Ok(Value::Str(&bytes)));
                prop_assert_eq!(scan_len(&out), Some(out.len()));
            }
        }

        fn scan_len(bytes: &[u8]) -> Option<usize> {
            match Scanner::new().scan(bytes, &DecodeLimits::default()) {
                Ok(Scan::Complete(len)) => Some(len),
                _ => None,
            }
        }
    }
}
