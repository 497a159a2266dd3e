//! `hints.N`: the msgpack compaction hints (live counts, freeable bytes, quota use, shadow index).
//!
//! Written exactly as borg 1.4 writes them: a map with raw-string keys `version`,
//! `segments`, `compact`, `storage_quota_use`, `shadow_index`, ids as raw strings (never
//! the bin family). Read: version 2 (optional `storage_quota_use` and `shadow_index`) and
//! borg 1.0's version 1, whose freeable bytes must be rebuilt from the segments.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use rmpv::Value;

use super::repo::Bookkeeping;
use super::segment::ObjectId;

/// The largest hints file read (a repository with millions of segments has a few hundred MB).
pub const MAX_HINTS_SIZE: usize = 1 << 30;

/// A decoded hints file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodedHints {
    Current(Bookkeeping),
    /// borg 1.0: only live counts are usable; freeable bytes must be rebuilt.
    Version1 { segments: BTreeMap<u32, i64> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HintsError(pub String);

impl fmt::Display for HintsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid hints file: {}", self.0)
    }
}

impl std::error::Error for HintsError {}

/// Encodes bookkeeping as borg's version 2 hints.
pub fn encode(books: &Bookkeeping) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + books.segments.len() * 10 + books.compact.len() * 10 + books.shadow_index.len() * 40);
    // Writing into a Vec cannot fail; the results are ignored deliberately.
    let _ = rmp::encode::write_map_len(&mut out, 5);
    write_key(&mut out, "version");
    let _ = rmp::encode::write_uint(&mut out, 2);
    write_key(&mut out, "segments");
    let _ = rmp::encode::write_map_len(&mut out, books.segments.len() as u32);
    for (segment, count) in &books.segments {
        let _ = rmp::encode::write_uint(&mut out, u64::from(*segment));
        let _ = rmp::encode::write_sint(&mut out, *count);
    }
    write_key(&mut out, "compact");
    let _ = rmp::encode::write_map_len(&mut out, books.compact.len() as u32);
    for (segment, freeable) in &books.compact {
        let _ = rmp::encode::write_uint(&mut out, u64::from(*segment));
        let _ = rmp::encode::write_uint(&mut out, *freeable);
    }
    write_key(&mut out, "storage_quota_use");
    let _ = rmp::encode::write_uint(&mut out, books.storage_quota_use);
    write_key(&mut out, "shadow_index");
    // Sorted, so that equal bookkeeping gives equal bytes.
    let mut shadow: Vec<(&ObjectId, &Vec<u32>)> = books.shadow_index.iter().collect();
    shadow.sort_unstable_by_key(|(id, _)| **id);
    let _ = rmp::encode::write_map_len(&mut out, shadow.len() as u32);
    for (id, segments) in shadow {
        write_raw(&mut out, id);
        let _ = rmp::encode::write_array_len(&mut out, segments.len() as u32);
        for segment in segments {
            let _ = rmp::encode::write_uint(&mut out, u64::from(*segment));
        }
    }
    out
}

fn write_key(out: &mut Vec<u8>, key: &str) {
    write_raw(out, key.as_bytes());
}

/// A msgpack raw string as msgpack-python writes it with `use_bin_type=False`:
/// fixstr, str16 or str32, never str8 and never bin.
fn write_raw(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = bytes.len();
    if len < 32 {
        out.push(0xa0 | len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(0xda);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
    out.extend_from_slice(bytes);
}

/// Decodes a hints file written by borg 1.0 to 1.4 or by us.
pub fn decode(bytes: &[u8]) -> Result<DecodedHints, HintsError> {
    if bytes.len() > MAX_HINTS_SIZE {
        return Err(HintsError(format!("{} bytes is too large", bytes.len())));
    }
    let mut reader = bytes;
    let value = rmpv::decode::read_value_with_max_depth(&mut reader, 32).map_err(|e| HintsError(e.to_string()))?;
    if !reader.is_empty() {
        return Err(HintsError("trailing bytes after the hints map".into()));
    }
    let Value::Map(entries) = value else {
        return Err(HintsError("not a map".into()));
    };
    let field = |name: &str| entries.iter().find(|(k, _)| key_is(k, name)).map(|(_, v)| v);
    let version = field("version").and_then(Value::as_u64).ok_or_else(|| HintsError("no version".into()))?;
    let segments = int_map(field("segments").ok_or_else(|| HintsError("no segments".into()))?, "segments")?;
    match version {
        1 => Ok(DecodedHints::Version1 { segments }),
        2 => {
            let compact = int_map(field("compact").ok_or_else(|| HintsError("no compact".into()))?, "compact")?
                .into_iter()
                .map(|(segment, freeable)| (segment, freeable.max(0) as u64))
                .collect();
            let storage_quota_use = match field("storage_quota_use") {
                None => 0,
                Some(value) => value.as_u64().ok_or_else(|| HintsError("storage_quota_use is not a count".into()))?,
            };
            let shadow_index = match field("shadow_index") {
                None => HashMap::new(),
                Some(value) => shadow_map(value)?,
            };
            Ok(DecodedHints::Current(Bookkeeping { segments, compact, storage_quota_use, shadow_index }))
        }
        other => Err(HintsError(format!("Unknown hints file version: {other}"))),
    }
}

fn key_is(key: &Value, name: &str) -> bool {
    match key {
        Value::String(text) => text.as_bytes() == name.as_bytes(),
        Value::Binary(bytes) => bytes == name.as_bytes(),
        _ => false,
    }
}

fn segment_number(value: &Value, what: &str) -> Result<u32, HintsError> {
    value
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| HintsError(format!("{what}: segment number out of range")))
}

fn int_map(value: &Value, what: &str) -> Result<BTreeMap<u32, i64>, HintsError> {
    match value {
        Value::Map(entries) => entries
            .iter()
            .map(|(k, v)| {
                let count = v.as_i64().ok_or_else(|| HintsError(format!("{what}: value is not an integer")))?;
                Ok((segment_number(k, what)?, count))
            })
            .collect(),
        // borg 1.0 wrote `compact` as a list of segment numbers.
        Value::Array(items) => items.iter().map(|k| Ok((segment_number(k, what)?, 0))).collect(),
        _ => Err(HintsError(format!("{what} is not a map"))),
    }
}

fn shadow_map(value: &Value) -> Result<HashMap<ObjectId, Vec<u32>>, HintsError> {
    let Value::Map(entries) = value else {
        return Err(HintsError("shadow_index is not a map".into()));
    };
    let mut shadow = HashMap::with_capacity(entries.len());
    for (key, segments) in entries {
        let bytes = match key {
            Value::String(text) => text.as_bytes(),
            Value::Binary(bytes) => bytes.as_slice(),
            _ => return Err(HintsError("shadow_index key is not an id".into())),
        };
        let id = ObjectId::try_from(bytes).map_err(|_| HintsError("shadow_index key is not 32 bytes".into()))?;
        let Value::Array(items) = segments else {
            return Err(HintsError("shadow_index value is not a list".into()));
        };
        let list = items.iter().map(|s| segment_number(s, "shadow_index")).collect::<Result<Vec<u32>, _>>()?;
        shadow.insert(id, list);
    }
    Ok(shadow)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Bookkeeping {
        let mut books = Bookkeeping::default();
        books.segments.insert(0, 1);
        books.segments.insert(1, 0);
        books.segments.insert(70_000, -1);
        books.compact.insert(1, 9);
        books.compact.insert(70_000, 5_000_000_000);
        books.storage_quota_use = 468;
        books.shadow_index.insert([7; 32], vec![0, 3]);
        books.shadow_index.insert([1; 32], vec![]);
        books
    }

    #[test]
    fn round_trips() {
        let books = sample();
        assert_eq!(decode(&encode(&books)), Ok(DecodedHints::Current(books)));
    }

    #[test]
    fn encodes_like_borg_a_fresh_repository() {
        // {version:2, segments:{0:1, 1:0}, compact:{1:9}, storage_quota_use:468, shadow_index:{}}
        let mut books = Bookkeeping::default();
        books.segments.insert(0, 1);
        books.segments.insert(1, 0);
        books.compact.insert(1, 9);
        books.storage_quota_use = 468;
        let mut expected = vec![0x85, 0xa7];
        expected.extend_from_slice(b"version");
        expected.push(0x02);
        expected.push(0xa8);
        expected.extend_from_slice(b"segments");
        expected.extend_from_slice(&[0x82, 0x00, 0x01, 0x01, 0x00]);
        expected.push(0xa7);
        expected.extend_from_slice(b"compact");
        expected.extend_from_slice(&[0x81, 0x01, 0x09]);
        expected.push(0xb1);
        expected.extend_from_slice(b"storage_quota_use");
        expected.extend_from_slice(&[0xcd, 0x01, 0xd4]);
        expected.push(0xac);
        expected.extend_from_slice(b"shadow_index");
        expected.push(0x80);
        assert_eq!(encode(&books), expected);
    }

    #[test]
    fn ids_are_raw_strings_never_bin() {
        let mut books = Bookkeeping::default();
        books.shadow_index.insert([0xab; 32], vec![5]);
        let bytes = encode(&books);
        let position = bytes.windows(3).position(|w| w == [0xda, 0x00, 0x20]).expect("str16 id");
        assert_eq!(&bytes[position + 3..position + 35], &[0xab; 32]);
        assert!(!bytes.contains(&0xc4));
    }

    #[test]
    fn reads_version_1_and_bin_keys() {
        // {b"version": 1, b"segments": {3: 2}, b"compact": [3]} with bin-typed keys.
        let value = Value::Map(vec![
            (Value::Binary(b"version".to_vec()), Value::from(1)),
            (Value::Binary(b"segments".to_vec()), Value::Map(vec![(Value::from(3), Value::from(2))])),
            (Value::Binary(b"compact".to_vec()), Value::Array(vec![Value::from(3)])),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &value).unwrap();
        let decoded = decode(&bytes).unwrap();
        assert_eq!(decoded, DecodedHints::Version1 { segments: BTreeMap::from([(3, 2)]) });
    }

    #[test]
    fn optional_fields_default() {
        let value = Value::Map(vec![
            (Value::from("version"), Value::from(2)),
            (Value::from("segments"), Value::Map(vec![])),
            (Value::from("compact"), Value::Map(vec![])),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &value).unwrap();
        assert_eq!(decode(&bytes), Ok(DecodedHints::Current(Bookkeeping::default())));
    }

    #[test]
    fn corrupt_files_are_clean_errors() {
        let good = encode(&sample());
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "prefix {cut} decoded");
        }
        assert!(decode(&[0xdb, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode(&[0xc0]).is_err());
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decode(&trailing).is_err());
        let wrong_version = encode(&Bookkeeping::default()).iter().map(|&b| if b == 0x02 { 0x03 } else { b }).collect::<Vec<_>>();
        assert_eq!(decode(&wrong_version), Err(HintsError("Unknown hints file version: 3".into())));
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion_blowup() {
        let mut bytes = vec![0x91; 100_000];
        bytes.push(0xc0);
        assert!(decode(&bytes).is_err());
    }
}
