//! How errors, times and ids are written for people: in refusals, findings, logs and the
//! audit records.

use std::io;
use std::time::SystemTime;

/// `No such file or directory`, without Rust's ` (os error 2)` suffix.
pub(crate) fn plain_io_error(error: &io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error") {
        Some(cut) => text[..cut].to_owned(),
        None => text,
    }
}

/// RFC 3339 in UTC with microseconds, e.g. `2026-12-06T21:39:32.123456Z`.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_micros(time).to_string()
}

/// RFC 3339 in UTC, whole seconds, e.g. `2026-12-06T21:39:32Z` (for people reading a report).
pub(crate) fn rfc3339_seconds(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Lower-case hex of a binary id, as borg's `bin_to_hex` (used in `ObjectNotFound`).
pub(crate) fn hex_id(id: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(id.len() * 2);
    for byte in id {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids_are_lower_case() {
        assert_eq!(hex_id(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(hex_id(&[]), "");
    }

    #[test]
    fn io_error_text_has_no_os_error_suffix() {
        let error = io::Error::from_raw_os_error(2);
        assert_eq!(plain_io_error(&error), "No such file or directory");
    }
}
