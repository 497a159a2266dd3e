//! The `Range` header of a load, read exactly as borgstore's `parse_range_header` reads it
//! (`backends/_utils.py`), and the byte span it selects in an object of known size.
//!
//! Pure. borgstore is lenient: anything it cannot parse means "the whole object", a range
//! past the end gives short data (still 206), and only a suffix longer than the object fails
//! (Python's `seek` raises, the server answers 500).

/// What a `Range` header asks for: `offset` counts from the end when negative; `size` of
/// `None` means "to the end".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeRequest {
    pub offset: i128,
    pub size: Option<i128>,
}

impl RangeRequest {
    pub const WHOLE: RangeRequest = RangeRequest {
        offset: 0,
        size: None,
    };
}

/// `parse_range_header`: `bytes=S-E`, `bytes=S-`, `bytes=-N`; anything else is the whole
/// object. Numbers follow Python's `int()` (blanks around, a sign, `_` between digits).
pub fn parse_range(header: &str) -> RangeRequest {
    let Some(rest) = header.strip_prefix("bytes=") else {
        return RangeRequest::WHOLE;
    };
    // `range_header.split("=")[1]`: the text up to a second `=`, if any.
    let value = rest.split('=').next().unwrap_or("");
    if value.starts_with('-') {
        return match python_int(value) {
            Some(offset) => RangeRequest { offset, size: None },
            None => RangeRequest::WHOLE,
        };
    }
    let mut parts = value.split('-');
    let (Some(start), Some(end), None) = (parts.next(), parts.next(), parts.next()) else {
        return RangeRequest::WHOLE;
    };
    let Some(offset) = python_int(start) else {
        return RangeRequest::WHOLE;
    };
    if end.is_empty() {
        return RangeRequest { offset, size: None };
    }
    match python_int(end) {
        Some(end) => RangeRequest {
            offset,
            size: Some(end.saturating_sub(offset).saturating_add(1)),
        },
        None => RangeRequest::WHOLE,
    }
}

/// Python's `int(text)` for base 10, saturating instead of growing without bound.
fn python_int(text: &str) -> Option<i128> {
    let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || digits.starts_with('_') || digits.ends_with('_') {
        return None;
    }
    let mut value: i128 = 0;
    let mut previous_underscore = false;
    for byte in digits.bytes() {
        match byte {
            b'_' if !previous_underscore => previous_underscore = true,
            b'0'..=b'9' => {
                previous_underscore = false;
                value = value
                    .saturating_mul(10)
                    .saturating_add(i128::from(byte - b'0'));
            }
            _ => return None,
        }
    }
    Some(if negative { -value } else { value })
}

/// The bytes a load returns from an object of `length` bytes, as posixfs's `load` does it:
/// seek (from the end for a negative offset), then `read(size)`, where a negative size reads
/// to the end. `None` when the seek itself fails (a suffix longer than the object).
pub fn span(request: RangeRequest, length: u64) -> Option<(u64, u64)> {
    let length = i128::from(length);
    let start = if request.offset >= 0 {
        request.offset
    } else {
        let start = length + request.offset;
        if start < 0 {
            return None;
        }
        start
    };
    let available = (length - start).max(0);
    let count = match request.size {
        Some(size) if size >= 0 => size.min(available),
        _ => available,
    };
    let start = u64::try_from(start.min(length)).ok()?;
    let count = u64::try_from(count).ok()?;
    Some((start, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(offset: i128, size: Option<i128>) -> RangeRequest {
        RangeRequest { offset, size }
    }

    #[test]
    fn headers_parse_as_borgstore_parses_them() {
        let table: &[(&str, RangeRequest)] = &[
            ("bytes=2-11", range(2, Some(10))),
            ("bytes=0-0", range(0, Some(1))),
            ("bytes=100-", range(100, None)),
            ("bytes=-5", range(-5, None)),
            ("bytes=-0", range(0, None)),
            ("bytes=5-3", range(5, Some(-1))),
            ("bytes=0--1", RangeRequest::WHOLE),
            ("bytes=1-2-3", RangeRequest::WHOLE),
            ("bytes=5", RangeRequest::WHOLE),
            ("bytes=", RangeRequest::WHOLE),
            ("bytes=x-1", RangeRequest::WHOLE),
            ("bytes=1-x", RangeRequest::WHOLE),
            ("bytes=--5", RangeRequest::WHOLE),
            ("items=0-1", RangeRequest::WHOLE),
            ("Bytes=0-1", RangeRequest::WHOLE),
            ("", RangeRequest::WHOLE),
            ("bytes= 1 - 2 ", range(1, Some(2))),
            ("bytes=1_0-1_9", range(10, Some(10))),
            ("bytes=1__0-", RangeRequest::WHOLE),
            ("bytes=_1-", RangeRequest::WHOLE),
            ("bytes=+3-", range(3, None)),
            ("bytes=1-2=junk", range(1, Some(2))),
            (
                "bytes=0-999999999999999999999999999999999999999999999",
                range(0, Some(i128::MAX)),
            ),
        ];
        for (header, expected) in table {
            assert_eq!(parse_range(header), *expected, "{header:?}");
        }
    }

    #[test]
    fn spans_follow_seek_and_read() {
        type Case = (RangeRequest, u64, Option<(u64, u64)>);
        let table: &[Case] = &[
            (RangeRequest::WHOLE, 10, Some((0, 10))),
            (range(2, Some(3)), 10, Some((2, 3))),
            (range(8, Some(5)), 10, Some((8, 2))),
            (range(20, Some(5)), 10, Some((10, 0))),
            (range(20, None), 10, Some((10, 0))),
            (range(-3, None), 10, Some((7, 3))),
            (range(-10, None), 10, Some((0, 10))),
            (range(-11, None), 10, None),
            (range(5, Some(-1)), 10, Some((5, 5))),
            (range(5, Some(0)), 10, Some((5, 0))),
            (range(0, Some(i128::MAX)), 10, Some((0, 10))),
            (range(i128::MAX, None), 10, Some((10, 0))),
        ];
        for (request, length, expected) in table {
            assert_eq!(
                span(*request, *length),
                *expected,
                "{request:?} of {length}"
            );
        }
    }
}
