//! `integrity.N`: XXH64 file digests of the index and hints, computed exactly as borg does.
//!
//! One streaming XXH64 (seed 0) is fed the file's base name (`'%10d' % len(name)` then the
//! name), then the file bytes; at each named part it is fed `'%10d' % len(part)`, the part
//! name and the decimal byte position, and the hex digest at that moment is the part's
//! digest. `index.N` has parts `HashHeader` (after 18 bytes) and `final`; `hints.N` has
//! `final`. The JSON records are stored in a msgpack map `{version: 2, hints, index}`.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;

use rmpv::Value;
use xxhash_rust::xxh64::Xxh64;

use super::repo::LOG;

/// The digests of one file, in the order its parts were hashed (`final` last).
pub type Digests = Vec<(String, String)>;

/// Which file of a transaction a record is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Index,
    Hints,
}

/// A file failed its integrity check (borg's `FileIntegrityError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrityMismatch(pub String);

impl fmt::Display for IntegrityMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "File failed integrity check: {}", self.0)
    }
}

impl std::error::Error for IntegrityMismatch {}

/// The streaming digest state shared by reading and writing.
pub struct FileDigester {
    hasher: Xxh64,
    position: u64,
    digests: Digests,
}

impl FileDigester {
    /// Starts a digest for the file called `name` (its base name, never a `.tmp` name).
    pub fn new(name: &str) -> FileDigester {
        let mut hasher = Xxh64::new(0);
        hasher.update(format!("{:10}", name.len()).as_bytes());
        hasher.update(name.as_bytes());
        FileDigester { hasher, position: 0, digests: Vec::new() }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.position += bytes.len() as u64;
    }

    /// Records the digest of everything so far under `part`.
    pub fn part(&mut self, part: &str) -> String {
        self.hasher.update(format!("{:10}", part.len()).as_bytes());
        self.hasher.update(part.as_bytes());
        self.hasher.update(self.position.to_string().as_bytes());
        let digest = format!("{:016x}", self.hasher.digest());
        self.digests.push((part.to_owned(), digest.clone()));
        digest
    }

    /// Ends with the `final` part and returns every part's digest.
    pub fn finish(mut self) -> Digests {
        self.part("final");
        self.digests
    }
}

/// A reader that digests what passes through it.
pub struct DigestReader<R> {
    inner: R,
    digester: FileDigester,
}

impl<R: Read> DigestReader<R> {
    pub fn new(inner: R, name: &str) -> DigestReader<R> {
        DigestReader { inner, digester: FileDigester::new(name) }
    }

    pub fn part(&mut self, part: &str) {
        self.digester.part(part);
    }

    pub fn finish(self) -> Digests {
        self.digester.finish()
    }
}

impl<R: Read> Read for DigestReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.digester.update(&buf[..read]);
        Ok(read)
    }
}

/// A writer that digests what passes through it.
pub struct DigestWriter<W> {
    inner: W,
    digester: FileDigester,
}

impl<W: Write> DigestWriter<W> {
    pub fn new(inner: W, name: &str) -> DigestWriter<W> {
        DigestWriter { inner, digester: FileDigester::new(name) }
    }

    pub fn part(&mut self, part: &str) {
        self.digester.part(part);
    }

    /// Flushes and returns the writer and the JSON record borg stores for the file.
    pub fn finish(mut self) -> io::Result<(W, String)> {
        self.inner.flush()?;
        Ok((self.inner, record_json(&self.digester.finish())))
    }
}

impl<W: Write> Write for DigestWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.digester.update(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The digests of an in-memory file.
pub fn digest_bytes(name: &str, bytes: &[u8], parts_at: &[(&str, usize)]) -> Digests {
    let mut digester = FileDigester::new(name);
    let mut done = 0;
    for (part, at) in parts_at {
        let at = (*at).min(bytes.len());
        digester.update(&bytes[done..at]);
        digester.part(part);
        done = at;
    }
    digester.update(&bytes[done..]);
    digester.finish()
}

/// Python's `json.dumps({'algorithm': 'XXH64', 'digests': {...}})`, byte for byte.
pub fn record_json(digests: &Digests) -> String {
    let parts: Vec<String> = digests.iter().map(|(part, digest)| format!("\"{part}\": \"{digest}\"")).collect();
    format!("{{\"algorithm\": \"XXH64\", \"digests\": {{{}}}}}", parts.join(", "))
}

/// Checks computed digests against a stored record. An unknown algorithm is logged and not
/// verified, as borg does; borg 1.x writes only XXH64.
pub fn verify(name: &str, expected_json: &str, digests: &Digests) -> Result<(), IntegrityMismatch> {
    let mismatch = || IntegrityMismatch(name.to_owned());
    let record: serde_json::Value = serde_json::from_str(expected_json).map_err(|_| mismatch())?;
    let algorithm = record.get("algorithm").and_then(serde_json::Value::as_str).ok_or_else(mismatch)?;
    let expected = record.get("digests").and_then(serde_json::Value::as_object).ok_or_else(mismatch)?;
    if !expected.contains_key("final") {
        return Err(mismatch());
    }
    if algorithm != "XXH64" {
        log::warn!(target: LOG, "Cannot verify integrity of {name}: Unknown algorithm {algorithm:?}");
        return Ok(());
    }
    for (part, digest) in digests {
        let stored = expected.get(part).and_then(serde_json::Value::as_str).unwrap_or_default();
        if stored != digest {
            return Err(mismatch());
        }
    }
    Ok(())
}

/// The contents of `integrity.N`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IntegrityFile {
    pub hints: Option<String>,
    pub index: Option<String>,
}

impl IntegrityFile {
    /// msgpack `{version: 2, hints: <json>, index: <json>}` with raw strings, as borg writes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let count = 1 + u32::from(self.hints.is_some()) + u32::from(self.index.is_some());
        let _ = rmp::encode::write_map_len(&mut out, count);
        write_raw(&mut out, b"version");
        let _ = rmp::encode::write_uint(&mut out, 2);
        for (key, value) in [("hints", &self.hints), ("index", &self.index)] {
            if let Some(value) = value {
                write_raw(&mut out, key.as_bytes());
                write_raw(&mut out, value.as_bytes());
            }
        }
        out
    }

    /// Reads the map; `None` for a version other than 2 (borg then skips verification).
    pub fn decode(bytes: &[u8]) -> Result<Option<IntegrityFile>, String> {
        let mut reader = bytes;
        let value = rmpv::decode::read_value_with_max_depth(&mut reader, 32).map_err(|e| e.to_string())?;
        let Value::Map(entries) = value else {
            return Err("integrity data is not a map".into());
        };
        let get = |name: &str| {
            entries.iter().find_map(|(k, v)| {
                let key = match k {
                    Value::String(s) => s.as_bytes(),
                    Value::Binary(b) => b.as_slice(),
                    _ => return None,
                };
                (key == name.as_bytes()).then_some(v)
            })
        };
        if get("version").and_then(Value::as_u64) != Some(2) {
            return Ok(None);
        }
        let text = |value: Option<&Value>| match value {
            Some(Value::String(s)) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
            Some(Value::Binary(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        };
        Ok(Some(IntegrityFile { hints: text(get("hints")), index: text(get("index")) }))
    }
}

/// The stored record for one file of transaction `tid`, or `None` when there is nothing to
/// verify against (no `integrity.N`, as with borg < 1.1, or an unknown version).
pub fn read_expected(repo: &Path, tid: u32, part: Part) -> Result<Option<String>, String> {
    let name = format!("integrity.{tid}");
    let bytes = match std::fs::read(repo.join(&name)) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("{name}: {error}")),
    };
    match IntegrityFile::decode(&bytes).map_err(|e| format!("{name}: {e}"))? {
        None => {
            log::warn!(target: LOG, "Unknown integrity data version in {name}");
            Ok(None)
        }
        Some(file) => Ok(match part {
            Part::Index => file.index,
            Part::Hints => file.hints,
        }),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_json_matches_pythons_json_dumps() {
        let digests = vec![("HashHeader".to_owned(), "43eade6c981ae466".to_owned()), ("final".to_owned(), "1643ac8f2ab3c692".to_owned())];
        assert_eq!(
            record_json(&digests),
            r#"{"algorithm": "XXH64", "digests": {"HashHeader": "43eade6c981ae466", "final": "1643ac8f2ab3c692"}}"#
        );
    }

    #[test]
    fn reader_writer_and_bytes_agree() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let mut writer = DigestWriter::new(Vec::new(), "index.5");
        writer.write_all(&data[..18]).unwrap();
        writer.part("HashHeader");
        writer.write_all(&data[18..]).unwrap();
        let (written, record) = writer.finish().unwrap();
        assert_eq!(written, data);
        let mut reader = DigestReader::new(&data[..], "index.5");
        let mut sink = Vec::new();
        let mut header = [0u8; 18];
        reader.read_exact(&mut header).unwrap();
        reader.part("HashHeader");
        reader.read_to_end(&mut sink).unwrap();
        let read_digests = reader.finish();
        assert_eq!(read_digests, digest_bytes("index.5", &data, &[("HashHeader", 18)]));
        assert!(verify("index.5", &record, &read_digests).is_ok());
    }

    #[test]
    fn the_name_is_part_of_the_digest() {
        assert_ne!(digest_bytes("hints.1", b"x", &[]), digest_bytes("hints.2", b"x", &[]));
    }

    #[test]
    fn mismatches_and_bad_records_fail() {
        let digests = digest_bytes("hints.3", b"abc", &[]);
        let record = record_json(&digests);
        let other = digest_bytes("hints.3", b"abd", &[]);
        assert_eq!(verify("hints.3", &record, &other), Err(IntegrityMismatch("hints.3".into())));
        assert!(verify("hints.3", "not json", &digests).is_err());
        assert!(verify("hints.3", r#"{"algorithm": "XXH64", "digests": {}}"#, &digests).is_err());
        assert!(verify("hints.3", r#"{"algorithm": "SHA512", "digests": {"final": "x"}}"#, &digests).is_ok());
    }

    #[test]
    fn integrity_file_round_trips_and_ignores_other_versions() {
        let file = IntegrityFile { hints: Some("{\"a\": 1}".into()), index: Some("x".repeat(100)) };
        assert_eq!(IntegrityFile::decode(&file.encode()), Ok(Some(file.clone())));
        let encoded = file.encode();
        assert_eq!(&encoded[..10], &[0x83, 0xa7, b'v', b'e', b'r', b's', b'i', b'o', b'n', 0x02]);
        let mut version3 = encoded.clone();
        version3[9] = 3;
        assert_eq!(IntegrityFile::decode(&version3), Ok(None));
        assert!(IntegrityFile::decode(&[0xc1]).is_err());
    }
}
