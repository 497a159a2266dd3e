//! Typed reading and writing over the codec, for the repository's msgpack files (`hints.N`,
//! the integrity data): read a map's length, an int in range, a byte string, each failure
//! with its byte offset; write a map the way borg's files hold it.

use std::fmt;

use super::read::{Cursor, MalformedValue, Shallow, Value};
use super::write;

/// A msgpack decoding failure at a byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgpackError {
    pub offset: usize,
    pub reason: &'static str,
}

impl fmt::Display for MsgpackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.reason, self.offset)
    }
}

impl std::error::Error for MsgpackError {}

/// Reads msgpack values from a slice without building a value tree: typed reads over the
/// same [`Cursor`] the wire uses, so that the repository files and the wire share one decoder.
pub(crate) struct MsgpackReader<'a> {
    cursor: Cursor<'a>,
    len: usize,
}

impl<'a> MsgpackReader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self {
            cursor: Cursor::new(bytes),
            len: bytes.len(),
        }
    }

    pub(crate) fn position(&self) -> usize {
        self.cursor.position()
    }

    pub(crate) fn remaining(&self) -> usize {
        self.len - self.position()
    }

    pub(crate) fn expect_end(&self) -> Result<(), MsgpackError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(MsgpackError {
                offset: self.position(),
                reason: "trailing bytes after the value",
            })
        }
    }

    /// One header (a scalar is read whole), with the offset it starts at.
    fn shallow(&mut self) -> Result<(usize, Shallow<'a>), MsgpackError> {
        let start = self.position();
        let shallow = self.cursor.read_shallow().map_err(malformed)?;
        Ok((start, shallow))
    }

    pub(crate) fn peek_is_array(&self) -> bool {
        matches!(self.cursor.clone().read_shallow(), Ok(Shallow::Array(_)))
    }

    pub(crate) fn map_len(&mut self) -> Result<usize, MsgpackError> {
        match self.shallow()? {
            (_, Shallow::Map(len)) => Ok(len as usize),
            (offset, _) => Err(MsgpackError {
                offset,
                reason: "expected a map",
            }),
        }
    }

    pub(crate) fn array_len(&mut self) -> Result<usize, MsgpackError> {
        match self.shallow()? {
            (_, Shallow::Array(len)) => Ok(len as usize),
            (offset, _) => Err(MsgpackError {
                offset,
                reason: "expected an array",
            }),
        }
    }

    /// A byte string of the str (raw) or bin family.
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], MsgpackError> {
        match self.shallow()? {
            (_, Shallow::Scalar(Value::Str(bytes) | Value::Bin(bytes))) => Ok(bytes),
            (offset, _) => Err(MsgpackError {
                offset,
                reason: "expected a byte string",
            }),
        }
    }

    /// Any integer, widened so that every msgpack int fits.
    pub(crate) fn int(&mut self) -> Result<i128, MsgpackError> {
        self.int_at().map(|(_, value)| value)
    }

    fn int_at(&mut self) -> Result<(usize, i128), MsgpackError> {
        match self.shallow()? {
            (offset, Shallow::Scalar(Value::Int(value))) => Ok((offset, value)),
            (offset, _) => Err(MsgpackError {
                offset,
                reason: "expected an integer",
            }),
        }
    }

    fn ranged<T: TryFrom<i128>>(&mut self, reason: &'static str) -> Result<T, MsgpackError> {
        let (offset, value) = self.int_at()?;
        T::try_from(value).map_err(|_| MsgpackError { offset, reason })
    }

    pub(crate) fn uint(&mut self) -> Result<u64, MsgpackError> {
        self.ranged("expected a non-negative integer")
    }

    pub(crate) fn i64(&mut self) -> Result<i64, MsgpackError> {
        self.ranged("integer out of range")
    }

    pub(crate) fn segment(&mut self) -> Result<u32, MsgpackError> {
        self.ranged("segment number out of range")
    }

    /// Skips one complete value of any type, iteratively (no recursion depth to exhaust).
    pub(crate) fn skip_value(&mut self) -> Result<(), MsgpackError> {
        self.cursor.skip_value().map(|_| ()).map_err(malformed)
    }
}

fn malformed(error: MalformedValue) -> MsgpackError {
    MsgpackError {
        offset: error.offset,
        reason: "malformed or truncated msgpack",
    }
}

/// Writes msgpack the way msgpack-python does with `use_bin_type=False` (borg 1.x), through the
/// same encoder as the wire, so that the repository files and the wire share one set of rules.
pub(crate) struct MsgpackWriter {
    buf: Vec<u8>,
}

impl MsgpackWriter {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
        }
    }

    pub(crate) fn into_vec(self) -> Vec<u8> {
        self.buf
    }

    pub(crate) fn map_len(&mut self, len: usize) {
        write::write_map_header(&mut self.buf, saturating_u32(len));
    }

    pub(crate) fn array_len(&mut self, len: usize) {
        write::write_array_header(&mut self.buf, saturating_u32(len));
    }

    pub(crate) fn int(&mut self, value: i64) {
        write::write_int(&mut self.buf, value);
    }

    pub(crate) fn uint(&mut self, value: u64) {
        write::write_uint(&mut self.buf, value);
    }

    /// A raw string: fixstr below 32 bytes, else str16/str32. msgpack-python never emits str8 for
    /// bytes in this mode, so neither may we (a 32-byte id is `da 00 20`).
    pub(crate) fn raw_str(&mut self, bytes: &[u8]) {
        write::write_str_header(&mut self.buf, saturating_u32(bytes.len()));
        self.buf.extend_from_slice(bytes);
    }
}

/// Lengths in our own structures never reach 4 Gi elements; saturating keeps the writer total.
fn saturating_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}
