//! The head of one HTTP/1.1 request (request line and headers), parsed with `httparse`, with
//! only what borgstore's REST protocol reads kept: method, target, `Accept`, `Range`,
//! `X-Content-hash-sha256` and the body's length.
//!
//! Pure. Heads are bounded ([`MAX_HEAD`] bytes, [`MAX_HEADERS`] lines); bodies are framed by
//! `Content-Length` only. A head that breaks the framing (unparseable, too large, a bad or
//! conflicting `Content-Length`, any `Transfer-Encoding`) is a [`HeadError`]: after it the
//! byte stream cannot be delimited any more, so the session answers once and ends.

use std::fmt;

/// The largest request head accepted (Python's `http.server` allows 64 KiB per line; borg's
/// heads are a few hundred bytes).
pub const MAX_HEAD: usize = 64 * 1024;
/// The most header lines accepted (Python's limit is 100; borg sends at most five).
pub const MAX_HEADERS: usize = 100;

/// The request method. borgstore serves GET, HEAD, POST and DELETE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Delete,
    Other(String),
}

impl Method {
    fn parse(text: &str) -> Method {
        match text {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "DELETE" => Method::Delete,
            other => Method::Other(other.to_owned()),
        }
    }
}

/// One parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    /// The request target as sent (path and query, not decoded).
    pub target: String,
    pub accept: Option<String>,
    pub range: Option<String>,
    /// `X-Content-hash-sha256`, when present and not empty.
    pub content_sha256: Option<String>,
    /// `Content-Length`, 0 when absent.
    pub body_length: u64,
}

/// What a buffer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A whole head of `length` bytes; the body (if any) follows.
    Complete { head: RequestHead, length: usize },
    /// Not yet a whole head: read more.
    Partial,
}

/// A head after which the stream cannot be delimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    Malformed(httparse::Error),
    TooLarge,
    BadContentLength(String),
    TransferEncoding,
}

impl HeadError {
    /// The status this error is answered with before the session ends.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::Malformed(_) | HeadError::BadContentLength(_) => 400,
            HeadError::TooLarge => 431,
            HeadError::TransferEncoding => 501,
        }
    }
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::Malformed(error) => write!(f, "malformed request head: {error}"),
            HeadError::TooLarge => write!(
                f,
                "request head larger than {MAX_HEAD} bytes or more than {MAX_HEADERS} headers"
            ),
            HeadError::BadContentLength(value) => write!(f, "bad Content-Length {value:?}"),
            HeadError::TransferEncoding => {
                f.write_str("Transfer-Encoding is not supported; send Content-Length")
            }
        }
    }
}

impl std::error::Error for HeadError {}

/// Parses the head at the start of `buffer`.
pub fn parse_head(buffer: &[u8]) -> Result<Parsed, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let length = match request.parse(buffer) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) if buffer.len() >= MAX_HEAD => {
            return Err(HeadError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(error) => return Err(HeadError::Malformed(error)),
    };
    if length > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return Err(HeadError::Malformed(httparse::Error::Token));
    };
    let mut head = RequestHead {
        method: Method::parse(method),
        target: target.to_owned(),
        accept: None,
        range: None,
        content_sha256: None,
        body_length: 0,
    };
    let mut content_length: Option<u64> = None;
    for header in request.headers.iter() {
        let value = || String::from_utf8_lossy(header.value).trim().to_owned();
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            let text = value();
            let parsed = parse_content_length(&text)
                .ok_or_else(|| HeadError::BadContentLength(text.clone()))?;
            if content_length.is_some_and(|seen| seen != parsed) {
                return Err(HeadError::BadContentLength(text));
            }
            content_length = Some(parsed);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HeadError::TransferEncoding);
        } else if name.eq_ignore_ascii_case("accept") {
            head.accept.get_or_insert_with(value);
        } else if name.eq_ignore_ascii_case("range") {
            head.range.get_or_insert_with(value);
        } else if name.eq_ignore_ascii_case("x-content-hash-sha256") {
            let hash = value();
            if head.content_sha256.is_none() && !hash.is_empty() {
                head.content_sha256 = Some(hash);
            }
        }
    }
    head.body_length = content_length.unwrap_or(0);
    Ok(Parsed::Complete { head, length })
}

/// RFC 9110's `Content-Length = 1*DIGIT`.
fn parse_content_length(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(bytes: &[u8]) -> (RequestHead, usize) {
        match parse_head(bytes) {
            Ok(Parsed::Complete { head, length }) => (head, length),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
        }
    }

    #[test]
    fn borgs_requests_parse() {
        let store = b"POST /config/config HTTP/1.1\r\nAccept: application/vnd.x.borgstore.rest.v1\r\n\
            X-Content-hash-sha256: b65c\r\nConnection: keep-alive\r\nContent-Length: 25\r\n\r\nBODY";
        let (head, length) = complete(store);
        assert_eq!(length, store.len() - 4);
        assert_eq!(head.method, Method::Post);
        assert_eq!(head.target, "/config/config");
        assert_eq!(
            head.accept.as_deref(),
            Some("application/vnd.x.borgstore.rest.v1")
        );
        assert_eq!(head.content_sha256.as_deref(), Some("b65c"));
        assert_eq!(head.body_length, 25);
        let (head, _) = complete(b"GET /config/config HTTP/1.1\r\nRange: bytes=2-11\r\n\r\n");
        assert_eq!(head.range.as_deref(), Some("bytes=2-11"));
        assert_eq!(head.body_length, 0);
        let (head, _) = complete(b"HEAD / HTTP/1.0\nAccept: x\n\n");
        assert_eq!(head.method, Method::Head);
        let (head, _) = complete(b"PUT /x HTTP/1.1\r\n\r\n");
        assert_eq!(head.method, Method::Other("PUT".into()));
    }

    #[test]
    fn header_names_are_case_insensitive_and_the_first_value_counts() {
        let (head, _) = complete(
            b"POST /x HTTP/1.1\r\naccept: a\r\nACCEPT: b\r\nx-content-HASH-sha256: \r\n\
              X-Content-Hash-Sha256: ff\r\ncontent-length: 3\r\nContent-Length: 3\r\n\r\n",
        );
        assert_eq!(head.accept.as_deref(), Some("a"));
        assert_eq!(head.content_sha256.as_deref(), Some("ff"));
        assert_eq!(head.body_length, 3);
    }

    #[test]
    fn incomplete_heads_ask_for_more() {
        for prefix in [
            &b""[..],
            b"GET",
            b"GET /x HTTP/1.1\r\n",
            b"GET /x HTTP/1.1\r\nAccept: a\r\n",
        ] {
            assert_eq!(parse_head(prefix), Ok(Parsed::Partial), "{prefix:?}");
        }
    }

    #[test]
    fn heads_that_break_the_framing_are_errors() {
        let table: &[(&[u8], u16)] = &[
            (b"GET /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
            (b"GET /x HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400),
            (b"GET /x HTTP/1.1\r\nContent-Length: \r\n\r\n", 400),
            (
                b"GET /x HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                400,
            ),
            (
                b"GET /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                400,
            ),
            (
                b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                501,
            ),
            (b"GET /x HTTP/2.0\r\n\r\n", 400),
            (b"GET\x01 /x HTTP/1.1\r\n\r\n", 400),
            (b"\x00\x01\x02\r\n\r\n", 400),
            (b"GET /x HTTP/1.1\r\nBad Header\r\n\r\n", 400),
        ];
        for (bytes, status) in table {
            let error = parse_head(bytes).expect_err(&String::from_utf8_lossy(bytes));
            assert_eq!(error.status(), *status, "{error}");
        }
    }

    #[test]
    fn heads_are_bounded() {
        let mut huge = b"GET /".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        assert_eq!(parse_head(&huge), Err(HeadError::TooLarge));
        let mut many = b"GET /x HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend(format!("H{i}: v\r\n").bytes());
        }
        many.extend(b"\r\n");
        assert_eq!(parse_head(&many), Err(HeadError::TooLarge));
    }
}
