//! `integrity.N`: XXH64 file digests of the index and hints, computed exactly as borg does.
//!
//! borg's `IntegrityCheckedFile` (`crypto/file_integrity.py`, section 6.7) feeds one streaming hash with
//! `'%10d' % len(name)` and the file's base name, then the file bytes; at each named part it adds
//! `'%10d' % len(part)`, the part name and `str(position)`, and takes the hex digest there. `index.N` has
//! the parts `HashHeader` (after 18 bytes) and `final`; `hints.N` only `final`. The digests travel as JSON
//! text inside the msgpack map `{version: 2, hints: <json>, index: <json>}` of `integrity.N`.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha512};
use xxhash_rust::xxh64::Xxh64;

use crate::engine::borg1::msgpack::{MsgpackError, MsgpackReader, MsgpackWriter};

/// The only `integrity.N` version; others are ignored with a warning, as borg does.
pub const INTEGRITY_VERSION: i64 = 2;
/// Length of the NSIndex header, after which the `HashHeader` part digest is taken.
pub const INDEX_HEADER_PART_AT: usize = 18;
/// Part name of the index header digest.
pub const HASH_HEADER_PART: &str = "HashHeader";
/// Part name of the whole-file digest.
pub const FINAL_PART: &str = "final";
/// Real integrity files are about 200 bytes; anything beyond this is refused.
pub const MAX_INTEGRITY_FILE_SIZE: usize = 64 << 10;

/// A digest algorithm borg can name in integrity data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgorithm {
    /// What borg writes.
    Xxh64,
    /// Accepted when reading (`hashlib.sha512`).
    Sha512,
}

impl DigestAlgorithm {
    pub fn name(self) -> &'static str {
        match self {
            Self::Xxh64 => "XXH64",
            Self::Sha512 => "SHA512",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "XXH64" => Some(Self::Xxh64),
            "SHA512" => Some(Self::Sha512),
            _ => None,
        }
    }
}

/// The algorithm and the part digests of one file: the JSON record borg stores in `integrity.N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrityData {
    pub algorithm: DigestAlgorithm,
    /// Part name -> lowercase hex digest, in the order the parts were taken.
    pub digests: Vec<(String, String)>,
}

impl IntegrityData {
    /// The record as Python's `json.dumps` writes it, e.g.
    /// `{"algorithm": "XXH64", "digests": {"HashHeader": "...", "final": "..."}}`.
    pub fn to_json(&self) -> String {
        let mut json = format!(
            "{{\"algorithm\": {}, \"digests\": {{",
            json_string(self.algorithm.name())
        );
        for (index, (part, digest)) in self.digests.iter().enumerate() {
            if index > 0 {
                json.push_str(", ");
            }
            json.push_str(&json_string(part));
            json.push_str(": ");
            json.push_str(&json_string(digest));
        }
        json.push_str("}}");
        json
    }

    pub fn digest(&self, part: &str) -> Option<&str> {
        self.digests
            .iter()
            .find(|(name, _)| name == part)
            .map(|(_, digest)| digest.as_str())
    }
}

fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

// ---------------------------------------------------------------------------------------------------
// Digest computation

/// The streaming file digest (borg's `FileHashingWrapper` + `hash_part`). Feed the file bytes in order
/// with [`FileDigester::update`]; take parts where the format defines them; [`FileDigester::finish`]
/// takes `final`.
#[derive(Clone)]
pub struct FileDigester {
    hasher: DigestState,
    algorithm: DigestAlgorithm,
    position: u64,
    digests: Vec<(String, String)>,
}

#[derive(Clone)]
enum DigestState {
    Xxh64(Xxh64),
    Sha512(Box<Sha512>),
}

impl DigestState {
    fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Xxh64(hasher) => hasher.update(bytes),
            Self::Sha512(hasher) => hasher.update(bytes),
        }
    }

    fn hex_digest(&self) -> String {
        match self {
            // XXH64 canonical form is big-endian.
            Self::Xxh64(hasher) => format!("{:016x}", hasher.digest()),
            Self::Sha512(hasher) => hasher
                .clone()
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        }
    }
}

impl FileDigester {
    /// Starts a digest of the file called `file_name` (only its base name is hashed, as in borg, so
    /// `index.5` and `/repo/index.5` agree; write `index.5.tmp` but pass `index.5`).
    pub fn new(algorithm: DigestAlgorithm, file_name: &str) -> Self {
        let hasher = match algorithm {
            DigestAlgorithm::Xxh64 => DigestState::Xxh64(Xxh64::new(0)),
            DigestAlgorithm::Sha512 => DigestState::Sha512(Box::new(Sha512::new())),
        };
        let mut digester = Self {
            hasher,
            algorithm,
            position: 0,
            digests: Vec::new(),
        };
        let base_name = file_name.rsplit('/').next().unwrap_or(file_name);
        digester.hash_label(base_name);
        digester
    }

    /// An XXH64 digester, what borg uses for every file it writes.
    pub fn xxh64(file_name: &str) -> Self {
        Self::new(DigestAlgorithm::Xxh64, file_name)
    }

    pub fn algorithm(&self) -> DigestAlgorithm {
        self.algorithm
    }

    /// Feeds file bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.position += bytes.len() as u64;
    }

    /// File bytes fed so far (the `tell()` borg hashes at each part).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Takes the digest of part `name` at the current position and remembers it; hashing continues.
    pub fn part(&mut self, name: &str) -> String {
        let digest = self.peek_part(name);
        self.digests.push((name.to_owned(), digest.clone()));
        digest
    }

    fn peek_part(&mut self, name: &str) -> String {
        self.hash_label(name);
        self.hasher.update(self.position.to_string().as_bytes());
        self.hasher.hex_digest()
    }

    /// Takes the `final` part (the caller must have fed the whole file) and returns all parts.
    pub fn finish(mut self) -> IntegrityData {
        self.part(FINAL_PART);
        IntegrityData {
            algorithm: self.algorithm,
            digests: self.digests,
        }
    }

    /// `'%10d' % len(text)` then `text`; Python counts characters, not bytes.
    fn hash_label(&mut self, text: &str) {
        self.hasher
            .update(format!("{:>10}", text.chars().count()).as_bytes());
        self.hasher.update(text.as_bytes());
    }
}

/// Wraps a writer and digests exactly the bytes that reach it (e.g. around an `AtomicWriter`).
pub struct DigestingWriter<W: Write> {
    inner: W,
    digester: FileDigester,
}

impl<W: Write> DigestingWriter<W> {
    /// `file_name` is the final name (`index.5`), whatever temporary name `inner` writes to.
    pub fn new(inner: W, file_name: &str) -> Self {
        Self {
            inner,
            digester: FileDigester::xxh64(file_name),
        }
    }

    /// Takes a part digest at the current position (`HashHeader` after the 18-byte index header).
    pub fn part(&mut self, name: &str) -> String {
        self.digester.part(name)
    }

    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Takes `final` and returns the writer and the digests. Flush the writer before relying on it.
    pub fn finish(self) -> (W, IntegrityData) {
        (self.inner, self.digester.finish())
    }
}

impl<W: Write> Write for DigestingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.digester.update(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The integrity record of a complete `hints.N` (part `final`).
pub fn hints_integrity(file_name: &str, bytes: &[u8]) -> IntegrityData {
    let mut digester = FileDigester::xxh64(file_name);
    digester.update(bytes);
    digester.finish()
}

/// The integrity record of a complete `index.N` (parts `HashHeader` at 18 and `final`).
pub fn index_integrity(file_name: &str, bytes: &[u8]) -> IntegrityData {
    let (header, buckets) = bytes.split_at(bytes.len().min(INDEX_HEADER_PART_AT));
    let mut digester = FileDigester::xxh64(file_name);
    digester.update(header);
    digester.part(HASH_HEADER_PART);
    digester.update(buckets);
    digester.finish()
}

// ---------------------------------------------------------------------------------------------------
// Verification

/// A file failed its integrity check (borg's `FileIntegrityError`). `Display` is borg's text; the
/// detail says why, for the warning borg logs before rebuilding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileIntegrityError {
    pub path: PathBuf,
    pub detail: String,
}

impl fmt::Display for FileIntegrityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "File failed integrity check: {}", self.path.display())
    }
}

impl std::error::Error for FileIntegrityError {}

/// What the integrity JSON for a file asks of the reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Verify the file against these digests.
    Verify(IntegrityData),
    /// borg warns "Cannot verify integrity of <path>: Unknown algorithm <repr>" and reads unverified.
    UnknownAlgorithm(String),
}

/// Parses the JSON record of one file like borg's `parse_integrity_data`: unparseable JSON, a missing
/// `algorithm`, or (for a known algorithm) missing `digests`/`final` are integrity failures.
pub fn parse_integrity_json(path: &Path, json: &str) -> Result<Verification, FileIntegrityError> {
    let failure = |detail: &str| FileIntegrityError {
        path: path.to_path_buf(),
        detail: detail.to_owned(),
    };
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|err| failure(&format!("invalid JSON: {err}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| failure("integrity data is not a JSON object"))?;
    let algorithm = object
        .get("algorithm")
        .ok_or_else(|| failure("no \"algorithm\""))?;
    let algorithm = match algorithm {
        serde_json::Value::String(name) => match DigestAlgorithm::from_name(name) {
            Some(algorithm) => algorithm,
            None => return Ok(Verification::UnknownAlgorithm(format!("'{name}'"))),
        },
        // Python: an unhashable value makes the `in` test raise TypeError.
        serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
            return Err(failure("invalid \"algorithm\""));
        }
        other => return Ok(Verification::UnknownAlgorithm(other.to_string())),
    };
    let digests = object
        .get("digests")
        .and_then(serde_json::Value::as_object)
        .ok_or_else(|| failure("no \"digests\" object"))?;
    if !digests.contains_key(FINAL_PART) {
        return Err(failure("no \"final\" digest"));
    }
    let digests = digests
        .iter()
        // A non-string digest can never match (Python would fail in compare_digest).
        .map(|(part, digest)| (part.clone(), digest.as_str().unwrap_or_default().to_owned()))
        .collect();
    Ok(Verification::Verify(IntegrityData { algorithm, digests }))
}

/// Checks a file while it is read, part by part (borg's reading `IntegrityCheckedFile`).
pub struct FileVerifier {
    digester: FileDigester,
    expected: IntegrityData,
    path: PathBuf,
}

impl FileVerifier {
    /// Starts verifying the file at `path` (its base name is hashed) against `expected`.
    pub fn new(expected: IntegrityData, path: &Path) -> Self {
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self {
            digester: FileDigester::new(expected.algorithm, &name),
            expected,
            path: path.to_path_buf(),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.digester.update(bytes);
    }

    /// Compares part `name` at the current position; a part absent from the record is a mismatch.
    pub fn check_part(&mut self, name: &str) -> Result<(), FileIntegrityError> {
        let actual = self.digester.peek_part(name);
        match self.expected.digest(name) {
            Some(expected) if expected == actual => Ok(()),
            _ => Err(FileIntegrityError {
                path: self.path.clone(),
                detail: format!("digest mismatch at part {name:?}"),
            }),
        }
    }

    /// Compares `final`; the caller must have fed the whole file.
    pub fn check_final(mut self) -> Result<(), FileIntegrityError> {
        self.check_part(FINAL_PART)
    }
}

/// Verifies a complete `hints.N` held in memory.
pub fn verify_hints(
    expected: IntegrityData,
    path: &Path,
    bytes: &[u8],
) -> Result<(), FileIntegrityError> {
    let mut verifier = FileVerifier::new(expected, path);
    verifier.update(bytes);
    verifier.check_final()
}

/// Verifies a complete `index.N` held in memory (`HashHeader`, then `final`).
pub fn verify_index(
    expected: IntegrityData,
    path: &Path,
    bytes: &[u8],
) -> Result<(), FileIntegrityError> {
    let (header, buckets) = bytes.split_at(bytes.len().min(INDEX_HEADER_PART_AT));
    let mut verifier = FileVerifier::new(expected, path);
    verifier.update(header);
    verifier.check_part(HASH_HEADER_PART)?;
    verifier.update(buckets);
    verifier.check_final()
}

// ---------------------------------------------------------------------------------------------------
// The integrity.N file

/// The bytes of `integrity.N`: `{version: 2, hints: <json>, index: <json>}` with raw-string keys and values.
pub fn encode_integrity_file(hints: &IntegrityData, index: &IntegrityData) -> Vec<u8> {
    let hints_json = hints.to_json();
    let index_json = index.to_json();
    let mut out = MsgpackWriter::with_capacity(32 + hints_json.len() + index_json.len());
    out.map_len(3);
    out.raw_str(b"version");
    out.int(INTEGRITY_VERSION);
    out.raw_str(b"hints");
    out.raw_str(hints_json.as_bytes());
    out.raw_str(b"index");
    out.raw_str(index_json.as_bytes());
    out.into_vec()
}

/// The content of an `integrity.N` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntegrityFile {
    /// Version 2: the JSON records of the hints and index files (absent if the map lacks the key,
    /// which borg itself never writes and would crash on).
    Version2 {
        hints: Option<String>,
        index: Option<String>,
    },
    /// Another version: borg warns "Unknown integrity data version <repr> in integrity.N" and does not
    /// verify. The text is the version as found (`None` when absent).
    UnknownVersion(String),
}

/// Why an `integrity.N` file could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntegrityFileError {
    TooLarge { len: usize },
    Malformed(MsgpackError),
    NotUtf8 { field: &'static str },
}

impl fmt::Display for IntegrityFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { len } => {
                write!(
                    f,
                    "integrity file is {len} bytes, more than the {MAX_INTEGRITY_FILE_SIZE} accepted"
                )
            }
            Self::Malformed(err) => write!(f, "integrity file is malformed: {err}"),
            Self::NotUtf8 { field } => {
                write!(f, "integrity file entry {field:?} is not UTF-8 text")
            }
        }
    }
}

impl std::error::Error for IntegrityFileError {}

impl From<MsgpackError> for IntegrityFileError {
    fn from(err: MsgpackError) -> Self {
        Self::Malformed(err)
    }
}

/// Decodes `integrity.N` (keys as str or bin, unknown keys ignored).
pub fn decode_integrity_file(bytes: &[u8]) -> Result<IntegrityFile, IntegrityFileError> {
    if bytes.len() > MAX_INTEGRITY_FILE_SIZE {
        return Err(IntegrityFileError::TooLarge { len: bytes.len() });
    }
    let mut reader = MsgpackReader::new(bytes);
    let mut version = None;
    let mut hints = None;
    let mut index = None;
    for _ in 0..reader.map_len()? {
        let key = reader.bytes()?;
        let start = reader.position();
        reader.skip_value()?;
        let value = &bytes[start..reader.position()];
        match key {
            b"version" => version = Some(value),
            b"hints" => hints = Some(value),
            b"index" => index = Some(value),
            _ => {}
        }
    }
    reader.expect_end()?;
    let version_found = version.map(|value| {
        MsgpackReader::new(value)
            .int()
            .map_err(|_| describe_value(value))
    });
    if version_found != Some(Ok(i128::from(INTEGRITY_VERSION))) {
        let repr = match version_found {
            None => "None".to_owned(),
            Some(Ok(number)) => number.to_string(),
            Some(Err(repr)) => repr,
        };
        return Ok(IntegrityFile::UnknownVersion(repr));
    }
    let text =
        |value: Option<&[u8]>, field: &'static str| -> Result<Option<String>, IntegrityFileError> {
            let Some(value) = value else { return Ok(None) };
            let raw = MsgpackReader::new(value).bytes()?;
            String::from_utf8(raw.to_vec())
                .map(Some)
                .map_err(|_| IntegrityFileError::NotUtf8 { field })
        };
    Ok(IntegrityFile::Version2 {
        hints: text(hints, "hints")?,
        index: text(index, "index")?,
    })
}

/// A short description of a non-integer msgpack value, for the "unknown version" warning.
fn describe_value(value: &[u8]) -> String {
    match MsgpackReader::new(value).bytes() {
        Ok(bytes) => format!("b'{}'", String::from_utf8_lossy(bytes)),
        Err(_) => format!("<msgpack {:02x?}>", &value[..value.len().min(8)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::borg1::repository::segment::real_borg;
    use crate::test_support::run_python_args;

    #[test]
    fn sha512_matches_known_vectors() {
        let digest = |input: &[u8]| {
            let mut hasher = DigestState::Sha512(Box::default());
            hasher.update(input);
            hasher.hex_digest()
        };
        assert_eq!(
            digest(b""),
            "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
        );
        assert_eq!(
            digest(b"abc"),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
        assert_eq!(
            digest(b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"),
            "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909"
        );
    }

    #[test]
    fn sha512_is_independent_of_update_boundaries() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 31) as u8).collect();
        let mut whole = DigestState::Sha512(Box::default());
        whole.update(&data);
        let mut pieces = DigestState::Sha512(Box::default());
        for chunk in data.chunks(7) {
            pieces.update(chunk);
        }
        assert_eq!(whole.hex_digest(), pieces.hex_digest());
    }

    #[test]
    fn digest_feeds_name_bytes_and_positions_as_documented() {
        let mut reference = Xxh64::new(0);
        reference.update(b"         7hints.5");
        reference.update(b"payload");
        reference.update(b"         5final7");
        let data = hints_integrity("hints.5", b"payload");
        assert_eq!(
            data.digests,
            vec![("final".to_owned(), format!("{:016x}", reference.digest()))]
        );
        assert_eq!(hints_integrity("/some/dir/hints.5", b"payload"), data);
    }

    #[test]
    fn json_record_matches_python_formatting() {
        let data = IntegrityData {
            algorithm: DigestAlgorithm::Xxh64,
            digests: vec![
                ("HashHeader".into(), "e414c029ae9b1095".into()),
                ("final".into(), "8e196c64c930a955".into()),
            ],
        };
        assert_eq!(
            data.to_json(),
            r#"{"algorithm": "XXH64", "digests": {"HashHeader": "e414c029ae9b1095", "final": "8e196c64c930a955"}}"#
        );
    }

    #[test]
    fn digesting_writer_equals_one_shot_digest() {
        let bytes: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
        let mut writer = DigestingWriter::new(Vec::new(), "index.9");
        writer.write_all(&bytes[..18]).unwrap();
        writer.part(HASH_HEADER_PART);
        for chunk in bytes[18..].chunks(333) {
            writer.write_all(chunk).unwrap();
        }
        let (written, data) = writer.finish();
        assert_eq!(written, bytes);
        assert_eq!(data, index_integrity("index.9", &bytes));
        assert!(verify_index(data.clone(), Path::new("/repo/index.9"), &bytes).is_ok());
        let err = verify_index(data, Path::new("/repo/index.10"), &bytes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "File failed integrity check: /repo/index.10"
        );
    }

    #[test]
    fn verification_detects_every_single_byte_change() {
        let bytes: Vec<u8> = (0..100u8).collect();
        let data = index_integrity("index.3", &bytes);
        for position in 0..bytes.len() {
            let mut changed = bytes.clone();
            changed[position] ^= 1;
            assert!(verify_index(data.clone(), Path::new("index.3"), &changed).is_err());
        }
        assert!(verify_index(data.clone(), Path::new("index.3"), &bytes[..99]).is_err());
        let mut header_only = data.clone();
        header_only.digests.retain(|(part, _)| part == FINAL_PART);
        let err = verify_index(header_only, Path::new("index.3"), &bytes).unwrap_err();
        assert!(
            err.detail.contains("HashHeader"),
            "a missing HashHeader digest is a mismatch"
        );
    }

    #[test]
    fn sha512_records_verify() {
        let bytes = b"hints content";
        let mut digester = FileDigester::new(DigestAlgorithm::Sha512, "hints.1");
        digester.update(bytes);
        let data = digester.finish();
        assert_eq!(data.digest(FINAL_PART).unwrap().len(), 128);
        let Verification::Verify(parsed) =
            parse_integrity_json(Path::new("hints.1"), &data.to_json()).unwrap()
        else {
            panic!()
        };
        assert!(verify_hints(parsed, Path::new("hints.1"), bytes).is_ok());
    }

    #[test]
    fn parses_integrity_json_like_borg() {
        let path = Path::new("/r/hints.1");
        let ok = parse_integrity_json(
            path,
            r#"{"algorithm": "XXH64", "digests": {"final": "0011223344556677"}}"#,
        );
        assert!(matches!(ok, Ok(Verification::Verify(_))));
        assert_eq!(
            parse_integrity_json(path, r#"{"algorithm": "MD5"}"#),
            Ok(Verification::UnknownAlgorithm("'MD5'".into()))
        );
        assert_eq!(
            parse_integrity_json(path, r#"{"algorithm": 5}"#),
            Ok(Verification::UnknownAlgorithm("5".into()))
        );
        for bad in [
            "",
            "not json",
            "[]",
            r#"{"digests": {"final": "00"}}"#,
            r#"{"algorithm": ["XXH64"], "digests": {"final": "00"}}"#,
            r#"{"algorithm": "XXH64"}"#,
            r#"{"algorithm": "XXH64", "digests": ["final"]}"#,
            r#"{"algorithm": "XXH64", "digests": {"HashHeader": "00"}}"#,
        ] {
            let err = parse_integrity_json(path, bad).unwrap_err();
            assert_eq!(
                err.to_string(),
                "File failed integrity check: /r/hints.1",
                "{bad}"
            );
        }
        let Ok(Verification::Verify(numeric)) =
            parse_integrity_json(path, r#"{"algorithm": "XXH64", "digests": {"final": 5}}"#)
        else {
            panic!()
        };
        assert!(verify_hints(numeric, path, b"").is_err());
    }

    #[test]
    fn integrity_file_round_trips_and_matches_borg_layout() {
        let hints = hints_integrity("hints.5", b"h");
        let index = index_integrity("index.5", &[0u8; 40]);
        let bytes = encode_integrity_file(&hints, &index);
        assert_eq!(&bytes[..10], b"\x83\xa7version\x02");
        assert_eq!(&bytes[10..16], b"\xa5hints");
        assert_eq!(
            bytes[16], 0xda,
            "JSON text is a raw str16, as msgpack-python writes it"
        );
        assert_eq!(
            decode_integrity_file(&bytes),
            Ok(IntegrityFile::Version2 {
                hints: Some(hints.to_json()),
                index: Some(index.to_json())
            })
        );
    }

    #[test]
    fn integrity_file_versions_and_corruption() {
        let mut out = MsgpackWriter::with_capacity(32);
        out.map_len(1);
        out.raw_str(b"version");
        out.int(3);
        assert_eq!(
            decode_integrity_file(&out.into_vec()),
            Ok(IntegrityFile::UnknownVersion("3".into()))
        );
        assert_eq!(
            decode_integrity_file(&[0x80]),
            Ok(IntegrityFile::UnknownVersion("None".into()))
        );
        let good = encode_integrity_file(
            &hints_integrity("hints.1", b""),
            &index_integrity("index.1", b""),
        );
        for len in 0..good.len() {
            assert!(
                decode_integrity_file(&good[..len]).is_err(),
                "truncated at {len}"
            );
        }
        assert!(decode_integrity_file(&vec![0x80; MAX_INTEGRITY_FILE_SIZE + 1]).is_err());
        let mut bad_utf8 = vec![0x82, 0xa7];
        bad_utf8.extend_from_slice(b"version");
        bad_utf8.extend_from_slice(&[0x02, 0xa5]);
        bad_utf8.extend_from_slice(b"hints");
        bad_utf8.extend_from_slice(&[0xa1, 0xff]);
        assert_eq!(
            decode_integrity_file(&bad_utf8),
            Err(IntegrityFileError::NotUtf8 { field: "hints" })
        );
    }

    #[test]
    fn digests_equal_what_borg_wrote_in_a_real_repository() {
        let Some(made) = real_borg::RealRepository::new("repokey") else {
            return;
        };
        let (repo, tid) = (&made.path, made.transaction_id());
        let integrity_bytes = std::fs::read(repo.join(format!("integrity.{tid}"))).unwrap();
        let IntegrityFile::Version2 {
            hints: Some(hints_json),
            index: Some(index_json),
        } = decode_integrity_file(&integrity_bytes).unwrap()
        else {
            panic!("borg writes version 2 with both records")
        };
        let hints_name = format!("hints.{tid}");
        let index_name = format!("index.{tid}");
        let hints_bytes = std::fs::read(repo.join(&hints_name)).unwrap();
        let index_bytes = std::fs::read(repo.join(&index_name)).unwrap();
        let ours_hints = hints_integrity(&hints_name, &hints_bytes);
        let ours_index = index_integrity(&index_name, &index_bytes);
        assert_eq!(
            ours_hints.to_json(),
            hints_json,
            "JSON text is byte-identical"
        );
        assert_eq!(ours_index.to_json(), index_json);
        assert_eq!(
            encode_integrity_file(&ours_hints, &ours_index),
            integrity_bytes,
            "integrity.N is byte-identical"
        );
        let Verification::Verify(expected_index) =
            parse_integrity_json(Path::new(&index_name), &index_json).unwrap()
        else {
            panic!()
        };
        verify_index(
            expected_index.clone(),
            &repo.join(&index_name),
            &index_bytes,
        )
        .unwrap();
        let mut corrupt = index_bytes.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0x80;
        assert!(verify_index(expected_index, &repo.join(&index_name), &corrupt).is_err());
        let Verification::Verify(expected_hints) =
            parse_integrity_json(Path::new(&hints_name), &hints_json).unwrap()
        else {
            panic!()
        };
        verify_hints(expected_hints, &repo.join(&hints_name), &hints_bytes).unwrap();
    }

    #[test]
    fn borg_verifies_files_we_digested() {
        let Some(python) = real_borg::python() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..1000u32).map(|i| (i * 13) as u8).collect();
        std::fs::write(dir.path().join("index.12"), &content).unwrap();
        let json = index_integrity("index.12", &content).to_json();
        let script = r#"
import sys
from borg.logger import setup_logging
setup_logging()
from borg.crypto.file_integrity import IntegrityCheckedFile
path, json = sys.argv[1], sys.argv[2]
with IntegrityCheckedFile(path, write=False, integrity_data=json) as fd:
    fd.read(18)
    fd.hash_part('HashHeader')
    fd.read()
print('verified')
"#;
        let path = dir.path().join("index.12");
        let output = run_python_args(&python, script, [path.as_os_str(), json.as_ref()]);
        assert_eq!(output, "verified\n");
    }

    #[test]
    fn sha512_agrees_with_borg_python() {
        let Some(python) = real_borg::python() else {
            return;
        };
        let content = b"some hints bytes";
        let script = r#"
import sys, io
from borg.crypto.file_integrity import SHA512FileHashingWrapper
w = SHA512FileHashingWrapper(io.BytesIO(), write=True)
w.update(('%10d' % len('hints.4')).encode()); w.update(b'hints.4')
w.write(sys.stdin.buffer.read())
w.update(('%10d' % len('final')).encode()); w.update(b'final')
w.hash_length()
print(w.hexdigest())
"#;
        let expected = real_borg::run_python(&python, script, content);
        let mut digester = FileDigester::new(DigestAlgorithm::Sha512, "hints.4");
        digester.update(content);
        assert_eq!(
            digester.finish().digest(FINAL_PART).unwrap(),
            expected.trim()
        );
    }
}
