//! One HTTP response as borgstore's server sends it: the status line, `Content-Type`,
//! `Cache-Control`, borgstore's `X-BorgStore-*` headers, a `Content-Length` on every response
//! (HEAD included, which sends no body), and the listing and quota JSON.
//!
//! Pure, except that a body may be an open file to stream. No `Date` header: over stdio
//! there is no cache or proxy to read it, and borgstore's client ignores it. Error responses
//! carry the message as the reason phrase (as Python's `send_error` does) and as a plain-text
//! body (the client shows it for 400, 416 and 507).

use std::fs::File;
use std::rc::Rc;

use super::posixfs::{Entry, Stat};
use crate::common::python::{push_json_float, push_json_string};

/// `Server:` of every response.
const SERVER: &str = concat!("borg-gate/", env!("CARGO_PKG_VERSION"));
/// The longest reason phrase sent; longer messages are cut.
const MAX_REASON: usize = 1024;

/// What follows the head.
pub enum Body {
    None,
    Bytes(Vec<u8>),
    /// `length` bytes of `file` from `offset`.
    File {
        file: File,
        offset: u64,
        length: u64,
    },
    /// Byte ranges of open files, in order (gather).
    Ranges(Vec<FileRange>),
}

/// One range of a gather.
pub struct FileRange {
    pub file: Rc<File>,
    pub offset: u64,
    pub length: u64,
}

pub struct Response {
    pub status: u16,
    pub reason: String,
    pub content_type: Option<&'static str>,
    pub headers: Vec<(&'static str, String)>,
    /// `Content-Length`: the body's length, or for HEAD the object's size.
    pub length: u64,
    pub body: Body,
}

impl Response {
    /// 200 with no body.
    pub fn ok() -> Response {
        Response::status(200)
    }

    /// `status` with its standard reason and no body.
    pub fn status(status: u16) -> Response {
        Response {
            status,
            reason: standard_reason(status).to_owned(),
            content_type: None,
            headers: Vec::new(),
            length: 0,
            body: Body::None,
        }
    }

    /// A body held in memory.
    pub fn bytes(status: u16, content_type: Option<&'static str>, data: Vec<u8>) -> Response {
        Response {
            content_type,
            length: data.len() as u64,
            body: Body::Bytes(data),
            ..Response::status(status)
        }
    }

    /// An error: the message is the reason phrase and the body (which a response to HEAD
    /// leaves out, see [`Response::without_body`]).
    pub fn error(status: u16, message: &str) -> Response {
        Response {
            reason: reason_phrase(message),
            ..Response::bytes(
                status,
                Some("text/plain;charset=utf-8"),
                message.as_bytes().to_vec(),
            )
        }
    }

    /// borgstore's answer to `HEAD` of an existing name.
    pub fn info(stat: &Stat) -> Response {
        let mut response = Response::ok();
        response.length = stat.size;
        response.headers = vec![
            (
                "X-BorgStore-Is-Directory",
                if stat.directory { "true" } else { "false" }.to_owned(),
            ),
            ("X-BorgStore-Atime", python_float(stat.atime)),
            ("X-BorgStore-Mtime", python_float(stat.mtime)),
        ];
        response
    }

    /// Drops the body but keeps `Content-Length` (a response to HEAD).
    pub fn without_body(mut self) -> Response {
        self.body = Body::None;
        self
    }

    /// The status line and headers.
    pub fn head(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nServer: {SERVER}\r\n",
            self.status, self.reason
        );
        if let Some(content_type) = self.content_type {
            head.push_str("Content-Type: ");
            head.push_str(content_type);
            head.push_str("\r\n");
        }
        head.push_str("Cache-Control: no-store, no-cache, must-revalidate, max-age=0\r\n");
        for (name, value) in &self.headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        head.push_str("Content-Length: ");
        head.push_str(&self.length.to_string());
        head.push_str("\r\n\r\n");
        head.into_bytes()
    }
}

/// The standard reason phrase of `status` (Python's `HTTPStatus` phrases).
pub fn standard_reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        406 => "Not Acceptable",
        409 => "Conflict",
        410 => "Gone",
        413 => "Request Entity Too Large",
        416 => "Requested Range Not Satisfiable",
        422 => "Unprocessable Entity",
        423 => "Locked",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        507 => "Insufficient Storage",
        _ => "Unknown",
    }
}

/// A message made safe for a status line: printable ASCII, bounded.
fn reason_phrase(message: &str) -> String {
    let mut reason: String = message
        .chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .take(MAX_REASON)
        .collect();
    if reason.is_empty() {
        reason.push('-');
    }
    reason
}

/// A float as Python's `str()`/`repr()` writes it (times in headers and listings).
pub fn python_float(value: f64) -> String {
    let mut text = String::new();
    push_json_float(&mut text, value);
    text
}

/// A listing as borgstore's server sends it: `json.dumps(items, indent=2)`.
pub fn listing_json(entries: &[Entry]) -> Vec<u8> {
    if entries.is_empty() {
        return b"[]".to_vec();
    }
    let mut text = String::with_capacity(entries.len() * 160);
    text.push('[');
    for (index, entry) in entries.iter().enumerate() {
        text.push_str(if index == 0 { "\n  {\n" } else { ",\n  {\n" });
        text.push_str("    \"name\": ");
        push_json_string(&mut text, &entry.name);
        text.push_str(",\n    \"size\": ");
        text.push_str(&entry.stat.size.to_string());
        text.push_str(",\n    \"directory\": ");
        text.push_str(if entry.stat.directory {
            "true"
        } else {
            "false"
        });
        text.push_str(",\n    \"atime\": ");
        push_json_float(&mut text, entry.stat.atime);
        text.push_str(",\n    \"mtime\": ");
        push_json_float(&mut text, entry.stat.mtime);
        text.push_str("\n  }");
    }
    text.push_str("\n]");
    text.into_bytes()
}

/// `cmd=quota`: `json.dumps({"limit": L, "usage": U})`, -1 for "no quota".
pub fn quota_json(limit: Option<u64>, usage: Option<u64>) -> Vec<u8> {
    let number = |value: Option<u64>| value.map_or_else(|| "-1".to_owned(), |v| v.to_string());
    format!(
        "{{\"limit\": {}, \"usage\": {}}}",
        number(limit),
        number(usage)
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(size: u64, directory: bool, time: f64) -> Stat {
        Stat {
            size,
            directory,
            atime: time,
            mtime: time,
        }
    }

    #[test]
    fn listings_are_pythons_indented_json() {
        let entries = [
            Entry {
                name: "1111.del".into(),
                stat: stat(0, false, 1796648916.3638535),
            },
            Entry {
                name: "ab".into(),
                stat: stat(4096, true, 1700000000.0),
            },
        ];
        let expected = "[\n  {\n    \"name\": \"1111.del\",\n    \"size\": 0,\n    \"directory\": false,\n    \
            \"atime\": 1796648916.3638535,\n    \"mtime\": 1796648916.3638535\n  },\n  {\n    \"name\": \"ab\",\n    \
            \"size\": 4096,\n    \"directory\": true,\n    \"atime\": 1700000000.0,\n    \"mtime\": 1700000000.0\n  }\n]";
        assert_eq!(String::from_utf8(listing_json(&entries)).unwrap(), expected);
        assert_eq!(listing_json(&[]), b"[]");
    }

    #[test]
    fn quota_answers_are_pythons_json() {
        assert_eq!(quota_json(None, None), br#"{"limit": -1, "usage": -1}"#);
        assert_eq!(
            quota_json(Some(100), Some(5)),
            br#"{"limit": 100, "usage": 5}"#
        );
    }

    #[test]
    fn heads_carry_content_length_always_and_borgstores_headers() {
        let head = String::from_utf8(Response::ok().head()).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\nServer: borg-gate/"));
        assert!(head.ends_with(
            "Cache-Control: no-store, no-cache, must-revalidate, max-age=0\r\nContent-Length: 0\r\n\r\n"
        ));
        let info = Response::info(&stat(100, false, 1796648916.2093546));
        let head = String::from_utf8(info.head()).unwrap();
        assert!(head.contains("X-BorgStore-Is-Directory: false\r\n"));
        assert!(head.contains("X-BorgStore-Mtime: 1796648916.2093546\r\n"));
        assert!(head.contains("Content-Length: 100\r\n"));
        let json = Response::bytes(200, Some("application/json"), b"[]".to_vec());
        assert!(
            String::from_utf8(json.head())
                .unwrap()
                .contains("Content-Type: application/json\r\n")
        );
    }

    #[test]
    fn error_messages_become_safe_reason_phrases() {
        let response = Response::error(404, "packs/ab/ab00");
        assert!(
            response
                .head()
                .starts_with(b"HTTP/1.1 404 packs/ab/ab00\r\n")
        );
        assert!(matches!(&response.body, Body::Bytes(b) if b == b"packs/ab/ab00"));
        let response = Response::error(400, "bad\r\nInjected: yes caf\u{e9}");
        assert!(
            response
                .head()
                .starts_with(b"HTTP/1.1 400 bad??Injected: yes caf?\r\n")
        );
        let long = "x".repeat(5000);
        assert_eq!(Response::error(400, &long).reason.len(), MAX_REASON);
        let head_only = Response::error(404, "name").without_body();
        assert_eq!(head_only.length, 4);
        assert!(matches!(head_only.body, Body::None));
    }

    #[test]
    fn floats_are_written_as_python_writes_them() {
        let table: &[(f64, &str)] = &[
            (1796648916.2094321, "1796648916.2094321"),
            (1700000000.0, "1700000000.0"),
            (0.0, "0.0"),
            (1.5, "1.5"),
        ];
        for (value, expected) in table {
            assert_eq!(python_float(*value), *expected);
        }
    }
}
