//! Writing msgpack byte-identical to msgpack-python's `packb(..., use_bin_type=False)`, which
//! borg 1.x uses for the wire and for its files: the smallest encoding for each int, byte
//! strings as raw strings that never use str8 (0xd9) or the bin family, floats as float64.

use std::fmt;

pub fn write_nil(out: &mut Vec<u8>) {
    out.push(0xc0);
}

pub fn write_bool(out: &mut Vec<u8>, value: bool) {
    out.push(if value { 0xc3 } else { 0xc2 });
}

pub fn write_uint(out: &mut Vec<u8>, value: u64) {
    if value < 0x80 {
        out.push(value as u8);
    } else if let Ok(v) = u8::try_from(value) {
        out.extend_from_slice(&[0xcc, v]);
    } else if let Ok(v) = u16::try_from(value) {
        out.push(0xcd);
        out.extend_from_slice(&v.to_be_bytes());
    } else if let Ok(v) = u32::try_from(value) {
        out.push(0xce);
        out.extend_from_slice(&v.to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&value.to_be_bytes());
    }
}

pub fn write_int(out: &mut Vec<u8>, value: i64) {
    if let Ok(unsigned) = u64::try_from(value) {
        write_uint(out, unsigned);
    } else if value >= -32 {
        out.push(value as u8);
    } else if let Ok(v) = i8::try_from(value) {
        out.extend_from_slice(&[0xd0, v as u8]);
    } else if let Ok(v) = i16::try_from(value) {
        out.push(0xd1);
        out.extend_from_slice(&v.to_be_bytes());
    } else if let Ok(v) = i32::try_from(value) {
        out.push(0xd2);
        out.extend_from_slice(&v.to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&value.to_be_bytes());
    }
}

pub fn write_f64(out: &mut Vec<u8>, value: f64) {
    out.push(0xcb);
    out.extend_from_slice(&value.to_bits().to_be_bytes());
}

/// A raw-string header: fixstr, str16 or str32 (never str8, like msgpack-python's raw mode).
pub fn write_str_header(out: &mut Vec<u8>, len: u32) {
    if len < 32 {
        out.push(0xa0 | len as u8);
    } else if let Ok(v) = u16::try_from(len) {
        out.push(0xda);
        out.extend_from_slice(&v.to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

/// A raw string. Byte strings longer than 4 GiB cannot be encoded; they are refused by
/// [`checked_len`] before this is called.
pub fn write_str(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), TooLongForMsgpack> {
    write_str_header(out, checked_len(bytes.len())?);
    out.extend_from_slice(bytes);
    Ok(())
}

pub fn write_array_header(out: &mut Vec<u8>, len: u32) {
    if len < 16 {
        out.push(0x90 | len as u8);
    } else if let Ok(v) = u16::try_from(len) {
        out.push(0xdc);
        out.extend_from_slice(&v.to_be_bytes());
    } else {
        out.push(0xdd);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

pub fn write_map_header(out: &mut Vec<u8>, len: u32) {
    if len < 16 {
        out.push(0x80 | len as u8);
    } else if let Ok(v) = u16::try_from(len) {
        out.push(0xde);
        out.extend_from_slice(&v.to_be_bytes());
    } else {
        out.push(0xdf);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

/// A length that does not fit msgpack's 32-bit length fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLongForMsgpack {
    pub len: usize,
}

impl fmt::Display for TooLongForMsgpack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot encode {} items or bytes in msgpack (at most 4 GiB - 1)",
            self.len
        )
    }
}

impl std::error::Error for TooLongForMsgpack {}

impl From<TooLongForMsgpack> for std::io::Error {
    fn from(err: TooLongForMsgpack) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, err)
    }
}

pub fn checked_len(len: usize) -> Result<u32, TooLongForMsgpack> {
    u32::try_from(len).map_err(|_| TooLongForMsgpack { len })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::borg1::msgpack::Value;

    fn encoded(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut out = Vec::new();
        f(&mut out);
        out
    }

    #[test]
    fn writes_ints_in_the_smallest_msgpack_python_form() {
        let cases: &[(i64, &[u8])] = &[
            (0, &[0x00]),
            (127, &[0x7f]),
            (128, &[0xcc, 0x80]),
            (255, &[0xcc, 0xff]),
            (256, &[0xcd, 0x01, 0x00]),
            (65535, &[0xcd, 0xff, 0xff]),
            (65536, &[0xce, 0, 1, 0, 0]),
            (4_294_967_296, &[0xcf, 0, 0, 0, 1, 0, 0, 0, 0]),
            (-1, &[0xff]),
            (-32, &[0xe0]),
            (-33, &[0xd0, 0xdf]),
            (-128, &[0xd0, 0x80]),
            (-129, &[0xd1, 0xff, 0x7f]),
            (-32768, &[0xd1, 0x80, 0x00]),
            (-32769, &[0xd2, 0xff, 0xff, 0x7f, 0xff]),
            (i64::MIN, &[0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0]),
        ];
        for (value, bytes) in cases {
            assert_eq!(encoded(|o| write_int(o, *value)), *bytes, "{value}");
            assert_eq!(Value::parse(bytes).unwrap(), Value::Int(i128::from(*value)));
        }
        assert_eq!(
            encoded(|o| write_uint(o, u64::MAX)),
            [0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn writes_strings_without_str8() {
        assert_eq!(encoded(|o| write_str_header(o, 31)), [0xbf]);
        assert_eq!(encoded(|o| write_str_header(o, 32)), [0xda, 0x00, 0x20]);
        assert_eq!(encoded(|o| write_str_header(o, 255)), [0xda, 0x00, 0xff]);
        assert_eq!(encoded(|o| write_str_header(o, 65535)), [0xda, 0xff, 0xff]);
        assert_eq!(
            encoded(|o| write_str_header(o, 65536)),
            [0xdb, 0x00, 0x01, 0x00, 0x00]
        );
        assert_eq!(
            encoded(|o| write_f64(o, 0.1)),
            [0xcb, 0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a]
        );
    }

    #[test]
    fn writes_container_headers_at_each_width() {
        assert_eq!(encoded(|o| write_array_header(o, 15)), [0x9f]);
        assert_eq!(encoded(|o| write_array_header(o, 16)), [0xdc, 0x00, 0x10]);
        assert_eq!(
            encoded(|o| write_array_header(o, 100_000)),
            [0xdd, 0x00, 0x01, 0x86, 0xa0]
        );
        assert_eq!(encoded(|o| write_map_header(o, 15)), [0x8f]);
        assert_eq!(encoded(|o| write_map_header(o, 16)), [0xde, 0x00, 0x10]);
        assert_eq!(
            encoded(|o| write_map_header(o, 70_000)),
            [0xdf, 0x00, 0x01, 0x11, 0x70]
        );
    }
}
