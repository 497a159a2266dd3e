//! borg 2's HTTP framing and routing: for any byte stream, delivered in any read sizes, the
//! reader yields request heads (each routed to an operation or a refusal) and bodies, or one
//! clean error; a parsed head rendered back to bytes parses to the same head; the read
//! buffer never grows past its bound.
#![no_main]

use std::io::{self, Read};

use borg_gate::engine::borg2::head::{Method, Parsed, RequestHead, parse_head};
use borg_gate::engine::borg2::route::route;
use borg_gate::engine::borg2::wire::RequestReader;
use libfuzzer_sys::fuzz_target;

/// Delivers the input in reads of at most `chunk` bytes.
struct Trickle<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.chunk.min(out.len()).min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// The head as borgstore's client would send it.
fn render(head: &RequestHead) -> Vec<u8> {
    let method = match &head.method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Delete => "DELETE",
        Method::Other(other) => other,
    };
    let mut text = format!("{method} {} HTTP/1.1\r\n", head.target);
    if let Some(accept) = &head.accept {
        text.push_str(&format!("Accept: {accept}\r\n"));
    }
    if let Some(range) = &head.range {
        text.push_str(&format!("Range: {range}\r\n"));
    }
    if let Some(hash) = &head.content_sha256 {
        text.push_str(&format!("X-Content-hash-sha256: {hash}\r\n"));
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n", head.body_length));
    text.into_bytes()
}

fuzz_target!(|bytes: &[u8]| {
    let Some((&first, stream)) = bytes.split_first() else {
        return;
    };
    let chunk = match first % 4 {
        0 => 1,
        1 => 7,
        2 => 4096,
        _ => usize::MAX,
    };
    let mut reader = RequestReader::new(Trickle {
        data: stream,
        chunk,
    });
    let mut heads = 0usize;
    loop {
        let _ = reader.has_buffered_input();
        match reader.next_head() {
            Ok(Some(head)) => {
                heads += 1;
                // Rendered back, the head parses to itself.
                let rendered = render(&head);
                match parse_head(&rendered) {
                    Ok(Parsed::Complete { head: again, length }) => {
                        assert_eq!(again, head);
                        assert_eq!(length, rendered.len());
                    }
                    other => panic!("rendered head does not parse: {other:?}"),
                }
                match route(&head) {
                    Ok(operation) => drop(format!("{operation:?}")),
                    Err(refusal) => assert!((400..600).contains(&refusal.status)),
                }
                let mut body = reader.body(head.body_length);
                match body.read_all(1 << 16) {
                    Ok(Some(data)) => assert_eq!(data.len() as u64, head.body_length),
                    Ok(None) => {
                        if body.finish().is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            Ok(None) => break,
            Err(error) => {
                let _ = format!("{error:?}");
                break;
            }
        }
        assert!(heads <= stream.len(), "more requests than bytes");
    }
});
