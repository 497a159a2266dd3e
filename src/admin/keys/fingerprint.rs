//! SSH public key fingerprints and sizes exactly as `ssh-keygen -l` prints them:
//! `256 SHA256:<unpadded base64 of the SHA-256 of the key blob> comment (ED25519)`.
//!
//! Pure. The key blob is the decoded base64 field of an authorized_keys line (RFC 4253
//! section 6.6); [`key_bits`] reads only as much of it as the size needs.
#![forbid(unsafe_code)]

use base64::Engine;
use sha2::{Digest, Sha256};

/// `SHA256:` and the unpadded base64 of the blob's SHA-256, as OpenSSH writes it.
pub fn sha256_fingerprint(blob: &[u8]) -> String {
    let digest = Sha256::digest(blob);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

/// The name `ssh-keygen -l` prints in parentheses for a key type.
pub fn type_label(key_type: &str) -> &'static str {
    match key_type {
        "ssh-ed25519" => "ED25519",
        "ssh-rsa" => "RSA",
        "ecdsa-sha2-nistp256" | "ecdsa-sha2-nistp384" | "ecdsa-sha2-nistp521" => "ECDSA",
        "sk-ecdsa-sha2-nistp256@openssh.com" => "ECDSA-SK",
        "sk-ssh-ed25519@openssh.com" => "ED25519-SK",
        "ssh-dss" => "DSA",
        "ssh-xmss@openssh.com" => "XMSS",
        "ssh-ed25519-cert-v01@openssh.com" => "ED25519-CERT",
        "ssh-rsa-cert-v01@openssh.com" => "RSA-CERT",
        "ecdsa-sha2-nistp256-cert-v01@openssh.com"
        | "ecdsa-sha2-nistp384-cert-v01@openssh.com"
        | "ecdsa-sha2-nistp521-cert-v01@openssh.com" => "ECDSA-CERT",
        "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com" => "ECDSA-SK-CERT",
        "sk-ssh-ed25519-cert-v01@openssh.com" => "ED25519-SK-CERT",
        "ssh-dss-cert-v01@openssh.com" => "DSA-CERT",
        "ssh-xmss-cert-v01@openssh.com" => "XMSS-CERT",
        _ => "UNKNOWN",
    }
}

/// Reads SSH wire-format fields (RFC 4251 section 5) from the front of a blob.
#[derive(Debug, Clone)]
pub(crate) struct Wire<'a> {
    rest: &'a [u8],
}

impl<'a> Wire<'a> {
    pub(crate) fn new(blob: &'a [u8]) -> Wire<'a> {
        Wire { rest: blob }
    }

    /// A `string`: a 32-bit big-endian length and that many bytes.
    pub(crate) fn string(&mut self) -> Option<&'a [u8]> {
        let length = u32::from_be_bytes(self.rest.get(..4)?.try_into().ok()?) as usize;
        let end = 4usize.checked_add(length)?;
        let value = self.rest.get(4..end)?;
        self.rest = &self.rest[end..];
        Some(value)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

/// The number of significant bits of a non-negative `mpint`'s bytes.
pub(crate) fn mpint_bits(bytes: &[u8]) -> u32 {
    let significant = match bytes.iter().position(|&byte| byte != 0) {
        Some(first) => &bytes[first..],
        None => return 0,
    };
    let leading = significant[0].leading_zeros();
    (significant.len() as u32).saturating_mul(8) - leading
}

/// The size `ssh-keygen -l` prints: the modulus for RSA, the prime for DSA, the curve for
/// ECDSA, 256 for Ed25519. `None` when the blob is too short to tell.
pub fn key_bits(key_type: &str, blob: &[u8]) -> Option<u32> {
    let plain = key_type.replace("-cert-v01@openssh.com", "");
    let mut wire = Wire::new(blob);
    wire.string()?;
    if plain != key_type {
        // A certificate: the nonce comes before the public key.
        wire.string()?;
    }
    match plain.as_str() {
        "ssh-ed25519" | "sk-ssh-ed25519@openssh.com" => Some(256),
        "ecdsa-sha2-nistp256" | "sk-ecdsa-sha2-nistp256@openssh.com" => Some(256),
        "ecdsa-sha2-nistp384" => Some(384),
        "ecdsa-sha2-nistp521" => Some(521),
        "ssh-rsa" => {
            wire.string()?;
            Some(mpint_bits(wire.string()?))
        }
        "ssh-dss" => Some(mpint_bits(wire.string()?)),
        _ => None,
    }
}

/// One line as `ssh-keygen -l -f FILE` prints it for a key.
pub fn keygen_line(key_type: &str, blob: &[u8], comment: &str) -> String {
    let bits = key_bits(key_type, blob).map_or_else(|| "?".to_owned(), |b| b.to_string());
    let comment = if comment.is_empty() {
        "no comment"
    } else {
        comment
    };
    format!(
        "{bits} {} {comment} ({})",
        sha256_fingerprint(blob),
        type_label(key_type)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::authorized_keys::decode_base64;

    /// Keys made by ssh-keygen, with the fingerprints `ssh-keygen -l` printed for them.
    const CASES: &[(&str, &str)] = &[
        (
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDvoPSbZwlcGhmUgC1ycT88UyNeOXQD8AU7m+J59iR4I",
            "256 SHA256:g3vd3Y3Wingr7aFJtX5o321r+kGYb5bz0LylFDK0cjY no comment (ED25519)",
        ),
        (
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINUNIH1taSZ74L2ixhuu3E1xrMnRlkQnBUi7WCl7x7hP",
            "256 SHA256:XAMgyuI3tFcYTneKxHJV+E5oQlBc5/rkzC9hJuo/IYg no comment (ED25519)",
        ),
        (
            "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDKKaG43Zztmej7NgxC32jO/+rnvWb63M12ej7d36/H3xG9ApgkEttZyru0RVOuKGAgiPwS9qmA/gsOZojd3Y+dJxTTRJ5Iz6VZLIyKd2sI5uIupsU2ASkFluS0f73k0XpeqrbuImOi+2L0Ogb8m3/KbeoAs2zRohnERzY7dZ3AlQ==",
            "1024 SHA256:J4/Hxd3sQ1zIVR4+6FrBWCTy5UhrYH3jcZZWPS9ZDTo no comment (RSA)",
        ),
        (
            "ecdsa-sha2-nistp521 AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBAGV8d0zPvVbhFt0qG4Gl1oUdNHgY8uBGmyHf71douwsLufuf8lBmBeRpcbA5934jpOmnXv8X7qnKqLj4g7rhPiTlwBkYzz6WZvUwQUYouUvOS11OAoamaMo/27HRpm7J3qrHHIYjmjBhEYgaGO5t2acIeKSiq+B4HlTjNmX5V7RJX9tpQ==",
            "521 SHA256:Fpu7SPW9xQpz4vToa1OQ4M/CVfkv464XEjvxztiBxyg no comment (ECDSA)",
        ),
    ];

    #[test]
    fn fingerprints_match_what_ssh_keygen_printed() {
        for (key, expected) in CASES {
            let mut words = key.split(' ');
            let key_type = words.next().unwrap();
            let blob = decode_base64(words.next().unwrap()).unwrap();
            assert_eq!(keygen_line(key_type, &blob, ""), *expected, "{key}");
        }
    }

    #[test]
    fn mpint_bits_ignore_leading_zero_bytes() {
        for (bytes, bits) in [
            (&[][..], 0),
            (&[0, 0][..], 0),
            (&[1][..], 1),
            (&[0, 0x80][..], 8),
            (&[0, 0x01, 0][..], 9),
            (&[0x7f, 0xff, 0xff][..], 23),
        ] {
            assert_eq!(mpint_bits(bytes), bits, "{bytes:?}");
        }
    }

    #[test]
    fn wire_strings_stop_at_truncation() {
        let mut wire = Wire::new(&[0, 0, 0, 2, b'h', b'i', 0, 0, 0, 5, b'x']);
        assert_eq!(wire.string(), Some(&b"hi"[..]));
        assert_eq!(wire.string(), None);
        assert_eq!(Wire::new(&[0, 0, 0]).string(), None);
        assert_eq!(Wire::new(&[0xff, 0xff, 0xff, 0xff]).string(), None);
    }

    #[test]
    fn every_type_has_a_label_and_a_size_needs_a_readable_blob() {
        for key_type in crate::admin::authorized_keys::KEY_TYPES {
            assert_ne!(type_label(key_type), "UNKNOWN", "{key_type}");
        }
        assert_eq!(key_bits("ssh-rsa", &[0, 0, 0, 7]), None);
        assert_eq!(key_bits("ssh-ed25519", &[]), None);
    }
}
