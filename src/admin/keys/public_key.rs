//! The public key an administrator hands to `borg-gate keys add`: one line of a `.pub` file,
//! read with the doctor's authorized_keys parser, then checked the way OpenSSH would check it
//! before trusting the line that carries it.
//!
//! Pure. Refused: options in front of the key (they would ride into authorized_keys), more
//! than one key, key types OpenSSH does not accept from a user (DSA, XMSS, certificates),
//! blobs OpenSSH cannot decode, RSA moduli under OpenSSH's 1024-bit minimum. An ECDSA point
//! is checked for its form and length, not for lying on the curve (that takes curve
//! arithmetic; sshd itself refuses such a key at login).
#![forbid(unsafe_code)]

use std::fmt;

use super::fingerprint::{Wire, key_bits, keygen_line, mpint_bits};
use crate::admin::authorized_keys::{Entry, LineProblem, parse_line};

/// More than this is not a public key file.
pub(crate) const MAX_KEY_TEXT: usize = 64 * 1024;
/// OpenSSH's `SSH_RSA_MINIMUM_MODULUS_SIZE`.
pub(crate) const MIN_RSA_BITS: u32 = 1024;
/// OpenSSH's `SSHBUF_MAX_BIGNUM` in bits.
pub(crate) const MAX_RSA_BITS: u32 = 16384;

/// A validated public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub key_type: String,
    /// The decoded blob; two keys are the same key when their blobs are equal.
    pub blob: Vec<u8>,
    /// The base64 text as given.
    pub encoded: String,
    /// The comment from the key file (`alice@laptop`), without control characters.
    pub comment: String,
    pub bits: u32,
}

impl PublicKey {
    /// As `ssh-keygen -l` prints it.
    pub fn keygen_line(&self) -> String {
        keygen_line(&self.key_type, &self.blob, &self.comment)
    }
}

/// Why a key text is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyProblem {
    TooLarge,
    Empty,
    SeveralKeys(usize),
    /// `command="..." ssh-ed25519 AAAA`: options in the key text.
    Options(String),
    Unreadable(String),
    RejectedType {
        key_type: String,
        why: &'static str,
    },
    BadBlob {
        key_type: String,
        why: String,
    },
}

impl fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyProblem::TooLarge => write!(
                f,
                "the key text is larger than {MAX_KEY_TEXT} bytes; give one public key (a .pub file)"
            ),
            KeyProblem::Empty => f.write_str("there is no public key in it"),
            KeyProblem::SeveralKeys(count) => {
                write!(f, "it holds {count} keys; give one key per `keys add`")
            }
            KeyProblem::Options(options) => write!(
                f,
                "the key text starts with authorized_keys options ({options}); give the bare public key (`ssh-ed25519 AAAA... comment`): borg-gate writes the options itself"
            ),
            KeyProblem::Unreadable(why) => write!(
                f,
                "{why}; expected a public key line such as `ssh-ed25519 AAAA... alice@laptop`"
            ),
            KeyProblem::RejectedType { key_type, why } => write!(f, "{key_type} keys {why}"),
            KeyProblem::BadBlob { key_type, why } => {
                write!(f, "the {key_type} key is damaged: {why}")
            }
        }
    }
}

impl std::error::Error for KeyProblem {}

/// Reads exactly one public key from the text of a `.pub` file (comments and blank lines
/// around it are fine).
pub(crate) fn read_public_key(text: &[u8]) -> Result<PublicKey, KeyProblem> {
    if text.len() > MAX_KEY_TEXT {
        return Err(KeyProblem::TooLarge);
    }
    let text = String::from_utf8_lossy(text);
    if text.contains("PRIVATE KEY-----") {
        return Err(KeyProblem::Unreadable(
            "this is a private key; give the .pub file".to_owned(),
        ));
    }
    let entries: Vec<(Entry, &str)> = text
        .lines()
        .enumerate()
        .filter_map(|(index, line)| parse_line(index + 1, line).map(|entry| (entry, line)))
        .collect();
    let (entry, raw) = match entries.as_slice() {
        [] => return Err(KeyProblem::Empty),
        [one] => one,
        several => {
            let keys = several
                .iter()
                .filter(|(entry, _)| matches!(entry, Entry::Key(_)))
                .count();
            return Err(if keys > 1 {
                KeyProblem::SeveralKeys(keys)
            } else {
                KeyProblem::Unreadable(format!(
                    "it has {} lines besides comments, where a public key file has one",
                    several.len()
                ))
            });
        }
    };
    let key = match entry {
        Entry::Key(key) => key,
        Entry::Broken { problem, .. } => {
            return Err(match problem {
                LineProblem::BadOptions(_) | LineProblem::UnterminatedQuote => {
                    KeyProblem::Options(first_word(raw))
                }
                LineProblem::NoKey => KeyProblem::Unreadable(unreadable_reason(raw)),
            });
        }
    };
    if !key.options.is_empty() {
        return Err(KeyProblem::Options(first_word(raw)));
    }
    let bits = check_blob(&key.key_type, &key.blob)?;
    let encoded = raw
        .split([' ', '\t'])
        .filter(|word| !word.is_empty())
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    Ok(PublicKey {
        key_type: key.key_type.clone(),
        blob: key.blob.clone(),
        encoded,
        comment: clean_comment(&key.comment),
        bits,
    })
}

fn first_word(line: &str) -> String {
    let word = line.trim_start().split([' ', '\t']).next().unwrap_or("");
    let shown: String = word.chars().take(60).collect();
    if shown.len() < word.len() {
        format!("{shown}...")
    } else {
        shown
    }
}

fn unreadable_reason(line: &str) -> String {
    let word = first_word(line);
    if word.starts_with("ssh-") || word.starts_with("ecdsa-") || word.starts_with("sk-") {
        format!("{word:?} is not a key type OpenSSH knows, or its key data is not base64")
    } else {
        "there is no public key OpenSSH can read in it".to_owned()
    }
}

/// The comment without control characters (a `\r` or an escape sequence has no place in
/// authorized_keys or in `keys list`).
fn clean_comment(comment: &str) -> String {
    comment
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Checks the blob as OpenSSH's `sshkey_from_blob` would for a user key, and returns its size.
pub(crate) fn check_blob(key_type: &str, blob: &[u8]) -> Result<u32, KeyProblem> {
    let rejected = |why| {
        Err(KeyProblem::RejectedType {
            key_type: key_type.to_owned(),
            why,
        })
    };
    if key_type.contains("-cert-v01@openssh.com") {
        return rejected(
            "are certificates, which sshd matches only through a cert-authority line; give the plain public key",
        );
    }
    match key_type {
        "ssh-dss" => {
            return rejected(
                "are refused by OpenSSH (disabled since 7.0, removed in 9.8); make an ed25519 key: ssh-keygen -t ed25519",
            );
        }
        "ssh-xmss@openssh.com" => {
            return rejected(
                "work only in OpenSSH builds with experimental XMSS support, which Debian's is not; make an ed25519 key: ssh-keygen -t ed25519",
            );
        }
        _ => {}
    }
    let bad = |why: &str| KeyProblem::BadBlob {
        key_type: key_type.to_owned(),
        why: why.to_owned(),
    };
    let mut wire = Wire::new(blob);
    wire.string().ok_or_else(|| bad("no key type"))?;
    match key_type {
        "ssh-ed25519" | "sk-ssh-ed25519@openssh.com" => {
            let point = wire.string().ok_or_else(|| bad("no public key"))?;
            if point.len() != 32 {
                return Err(bad(&format!(
                    "the public key has {} bytes, not 32",
                    point.len()
                )));
            }
        }
        "ecdsa-sha2-nistp256"
        | "ecdsa-sha2-nistp384"
        | "ecdsa-sha2-nistp521"
        | "sk-ecdsa-sha2-nistp256@openssh.com" => {
            let (curve, coordinate) = match key_type {
                "ecdsa-sha2-nistp384" => ("nistp384", 48),
                "ecdsa-sha2-nistp521" => ("nistp521", 66),
                _ => ("nistp256", 32),
            };
            let named = wire.string().ok_or_else(|| bad("no curve name"))?;
            if named != curve.as_bytes() {
                return Err(bad(&format!(
                    "the curve is {:?}, not {curve}",
                    String::from_utf8_lossy(named)
                )));
            }
            let point = wire.string().ok_or_else(|| bad("no public point"))?;
            if point.len() != 1 + 2 * coordinate || point.first() != Some(&4) {
                return Err(bad(
                    "the public point is not an uncompressed point of the curve",
                ));
            }
        }
        "ssh-rsa" => {
            let exponent = wire.string().ok_or_else(|| bad("no exponent"))?;
            let modulus = wire.string().ok_or_else(|| bad("no modulus"))?;
            for (name, value) in [("exponent", exponent), ("modulus", modulus)] {
                if value.first().is_some_and(|byte| byte & 0x80 != 0) {
                    return Err(bad(&format!("the {name} is negative")));
                }
            }
            if mpint_bits(exponent) < 2 || exponent.last().is_some_and(|byte| byte & 1 == 0) {
                return Err(bad("the exponent is not an odd number above 1"));
            }
            let bits = mpint_bits(modulus);
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return Err(KeyProblem::RejectedType {
                    key_type: key_type.to_owned(),
                    why: if bits < MIN_RSA_BITS {
                        "under 1024 bits are refused by OpenSSH; make an ed25519 key: ssh-keygen -t ed25519"
                    } else {
                        "over 16384 bits are refused by OpenSSH"
                    },
                });
            }
        }
        _ => return rejected("are not a type borg-gate can provision"),
    }
    if key_type.starts_with("sk-") {
        wire.string()
            .ok_or_else(|| bad("no security key application"))?;
    }
    if !wire.is_empty() {
        return Err(bad("there are bytes after the key"));
    }
    key_bits(key_type, blob).ok_or_else(|| bad("its size cannot be read"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDvoPSbZwlcGhmUgC1ycT88UyNeOXQD8AU7m+J59iR4I";
    const RSA_1024: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDKKaG43Zztmej7NgxC32jO/+rnvWb63M12ej7d36/H3xG9ApgkEttZyru0RVOuKGAgiPwS9qmA/gsOZojd3Y+dJxTTRJ5Iz6VZLIyKd2sI5uIupsU2ASkFluS0f73k0XpeqrbuImOi+2L0Ogb8m3/KbeoAs2zRohnERzY7dZ3AlQ==";
    const ECDSA_521: &str = "ecdsa-sha2-nistp521 AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBAGV8d0zPvVbhFt0qG4Gl1oUdNHgY8uBGmyHf71douwsLufuf8lBmBeRpcbA5934jpOmnXv8X7qnKqLj4g7rhPiTlwBkYzz6WZvUwQUYouUvOS11OAoamaMo/27HRpm7J3qrHHIYjmjBhEYgaGO5t2acIeKSiq+B4HlTjNmX5V7RJX9tpQ==";

    fn string(bytes: &[u8]) -> Vec<u8> {
        let mut out = (bytes.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(bytes);
        out
    }

    fn line(key_type: &str, fields: &[&[u8]]) -> String {
        let mut blob = string(key_type.as_bytes());
        for field in fields {
            blob.extend(string(field));
        }
        format!(
            "{key_type} {}",
            base64::engine::general_purpose::STANDARD.encode(blob)
        )
    }

    #[test]
    fn real_keys_are_read_with_their_comment_and_size() {
        for (text, key_type, bits) in [
            (format!("{ED25519} alice@laptop\n"), "ssh-ed25519", 256),
            (
                format!("# made by ssh-keygen\n\n{RSA_1024} alice@laptop\r\n"),
                "ssh-rsa",
                1024,
            ),
            (
                format!("{ECDSA_521}\talice@laptop"),
                "ecdsa-sha2-nistp521",
                521,
            ),
        ] {
            let key = read_public_key(text.as_bytes()).unwrap();
            assert_eq!(
                (key.key_type.as_str(), key.bits, key.comment.as_str()),
                (key_type, bits, "alice@laptop"),
                "{text}"
            );
            assert!(text.contains(&key.encoded));
        }
    }

    #[test]
    fn control_characters_leave_the_comment() {
        let key = read_public_key(format!("{ED25519} a\x1b[31mb\x07 c").as_bytes()).unwrap();
        assert_eq!(key.comment, "a[31mb c");
    }

    #[test]
    fn texts_that_are_not_exactly_one_bare_key_are_refused() {
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "there is no public key in it"),
            ("# only a comment\n\n".into(), "there is no public key in it"),
            (
                format!("{ED25519} a\n{ED25519} b\n"),
                "it holds 2 keys; give one key per `keys add`",
            ),
            (
                format!("command=\"sh\" {ED25519} a"),
                "the key text starts with authorized_keys options (command=\"sh\"); give the bare public key",
            ),
            (
                format!("restrict,pty {ED25519}"),
                "the key text starts with authorized_keys options (restrict,pty)",
            ),
            (
                format!("bogus-option {ED25519}"),
                "the key text starts with authorized_keys options (bogus-option)",
            ),
            (
                format!("from=\"10.0.0.1 {ED25519}"),
                "the key text starts with authorized_keys options",
            ),
            (
                "ssh-foo AAAAB3NzaC1yc2E".into(),
                "\"ssh-foo\" is not a key type OpenSSH knows",
            ),
            (
                "ssh-ed25519 not!base64".into(),
                "\"ssh-ed25519\" is not a key type OpenSSH knows, or its key data is not base64",
            ),
            (
                "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n".into(),
                "this is a private key; give the .pub file",
            ),
            (
                format!("{ED25519} a\nnot a key\n"),
                "it has 2 lines besides comments, where a public key file has one",
            ),
            (
                "-----BEGIN OPENSSH PRIVATE KEY-----".into(),
                "this is a private key; give the .pub file",
            ),
            (
                line("ssh-dss", &[b"\x01", b"\x01", b"\x01", b"\x01"]),
                "ssh-dss keys are refused by OpenSSH",
            ),
            (
                line("ssh-ed25519-cert-v01@openssh.com", &[b"nonce", &[7; 32]]),
                "ssh-ed25519-cert-v01@openssh.com keys are certificates",
            ),
            (
                line("ssh-xmss@openssh.com", &[b"x"]),
                "ssh-xmss@openssh.com keys work only in OpenSSH builds",
            ),
            (
                line("ssh-ed25519", &[&[7; 31]]),
                "the ssh-ed25519 key is damaged: the public key has 31 bytes, not 32",
            ),
            (
                line("ssh-ed25519", &[&[7; 32], b"extra"]),
                "the ssh-ed25519 key is damaged: there are bytes after the key",
            ),
            (
                line("ssh-ed25519", &[]),
                "the ssh-ed25519 key is damaged: no public key",
            ),
            (
                line("ssh-rsa", &[b"\x01\x00\x01", &[0x7f; 64]]),
                "ssh-rsa keys under 1024 bits are refused by OpenSSH",
            ),
            (
                line("ssh-rsa", &[b"\x01\x00\x01", &[0xff; 128]]),
                "the ssh-rsa key is damaged: the modulus is negative",
            ),
            (
                line("ssh-rsa", &[b"\x02", &[0x7f; 128]]),
                "the ssh-rsa key is damaged: the exponent is not an odd number above 1",
            ),
            (
                line("ecdsa-sha2-nistp256", &[b"nistp384", &[4; 65]]),
                "the ecdsa-sha2-nistp256 key is damaged: the curve is \"nistp384\", not nistp256",
            ),
            (
                line("ecdsa-sha2-nistp256", &[b"nistp256", &[4; 64]]),
                "the ecdsa-sha2-nistp256 key is damaged: the public point is not an uncompressed point of the curve",
            ),
            (
                line("sk-ssh-ed25519@openssh.com", &[&[7; 32]]),
                "the sk-ssh-ed25519@openssh.com key is damaged: no security key application",
            ),
        ];
        for (text, expected) in cases {
            let problem = read_public_key(text.as_bytes()).unwrap_err().to_string();
            assert!(
                problem.starts_with(expected),
                "{text:?}\n  gave {problem:?}\n  expected {expected:?}"
            );
        }
        let huge = vec![b'#'; MAX_KEY_TEXT + 1];
        assert_eq!(read_public_key(&huge), Err(KeyProblem::TooLarge));
    }

    #[test]
    fn security_keys_with_an_application_are_accepted() {
        let text = line("sk-ssh-ed25519@openssh.com", &[&[7; 32], b"ssh:"]);
        assert_eq!(read_public_key(text.as_bytes()).unwrap().bits, 256);
        let mut point = vec![4u8];
        point.extend([9u8; 64]);
        let text = line(
            "sk-ecdsa-sha2-nistp256@openssh.com",
            &[b"nistp256", &point, b"ssh:"],
        );
        assert_eq!(read_public_key(text.as_bytes()).unwrap().bits, 256);
    }

    proptest::proptest! {
        #[test]
        fn reading_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = read_public_key(&bytes);
            let _ = check_blob("ssh-rsa", &bytes);
            let _ = check_blob("ecdsa-sha2-nistp384", &bytes);
        }
    }
}
