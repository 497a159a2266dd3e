//! The digests borgstore's server computes (`utils/hashing.py`): sha256 for uploads and
//! `cmd=hash`, blake3 for borg's `check` and for `defrag` (pack names), and the rest of the
//! sha2 family that Python's `hashlib` also offers.
//!
//! Pure. `sha2` and `blake3` are the RustCrypto and official BLAKE3 crates; blake3 uses its
//! SIMD code paths, which is why pack verification costs less CPU than reading the pack.

use sha2::Digest;

/// A running digest of one of the supported algorithms.
pub enum Hasher {
    Sha224(sha2::Sha224),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
    Blake3(Box<blake3::Hasher>),
}

impl Hasher {
    /// `hashing.new(algorithm)`; the error is borgstore's message (HTTP 400).
    pub fn new(algorithm: &str) -> Result<Hasher, String> {
        Ok(match algorithm {
            "sha224" => Hasher::Sha224(sha2::Sha224::new()),
            "sha256" => Hasher::Sha256(sha2::Sha256::new()),
            "sha384" => Hasher::Sha384(sha2::Sha384::new()),
            "sha512" => Hasher::Sha512(sha2::Sha512::new()),
            "blake3" => Hasher::Blake3(Box::new(blake3::Hasher::new())),
            other => return Err(format!("Unsupported hash algorithm: {other}")),
        })
    }

    /// sha256, the upload check.
    pub fn sha256() -> Hasher {
        Hasher::Sha256(sha2::Sha256::new())
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha224(hasher) => hasher.update(data),
            Hasher::Sha256(hasher) => hasher.update(data),
            Hasher::Sha384(hasher) => hasher.update(data),
            Hasher::Sha512(hasher) => hasher.update(data),
            Hasher::Blake3(hasher) => {
                hasher.update(data);
            }
        }
    }

    /// The lowercase hex digest, as Python's `hexdigest()`.
    pub fn hex(self) -> String {
        match self {
            Hasher::Sha224(hasher) => hex(&hasher.finalize()),
            Hasher::Sha256(hasher) => hex(&hasher.finalize()),
            Hasher::Sha384(hasher) => hex(&hasher.finalize()),
            Hasher::Sha512(hasher) => hex(&hasher.finalize()),
            Hasher::Blake3(hasher) => hasher.finalize().to_hex().to_string(),
        }
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    text
}

/// The hex digest of `data` with `algorithm`.
pub fn digest(algorithm: &str, data: &[u8]) -> Result<String, String> {
    let mut hasher = Hasher::new(algorithm)?;
    hasher.update(data);
    Ok(hasher.hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_known_values() {
        let table: &[(&str, &[u8], &str)] = &[
            (
                "sha256",
                b"",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            (
                "sha256",
                b"abc",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                "blake3",
                b"",
                "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
            ),
            (
                "blake3",
                b"abc",
                "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85",
            ),
            (
                "sha224",
                b"abc",
                "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7",
            ),
        ];
        for (algorithm, data, expected) in table {
            assert_eq!(
                digest(algorithm, data).as_deref(),
                Ok(*expected),
                "{algorithm}"
            );
        }
    }

    #[test]
    fn other_algorithms_are_refused_with_borgstores_message() {
        for algorithm in ["md5", "SHA256", "", "blake2b"] {
            assert_eq!(
                digest(algorithm, b"").unwrap_err(),
                format!("Unsupported hash algorithm: {algorithm}")
            );
        }
    }

    #[test]
    fn incremental_updates_equal_one_update() {
        let mut hasher = Hasher::new("blake3").unwrap();
        hasher.update(b"ab");
        hasher.update(b"c");
        assert_eq!(hasher.hex(), digest("blake3", b"abc").unwrap());
    }
}
