//! HTTP/1.1 framing over the session's pipes: request heads and `Content-Length` bodies in,
//! responses out.
//!
//! Reading keeps one bounded buffer: a head must fit in it ([`MAX_HEAD`]), and a body is
//! never held whole, it is handed out in pieces as the caller reads (store streams it to its
//! temp file), so a declared length of any size costs no memory. Every body is read to its
//! end, used or not, so the next request starts where the client thinks it does; a body that
//! ends early (end of input) is an error, never a shorter object.
//!
//! Writing batches: responses go into a buffer that is flushed when no further request is
//! already waiting, so pipelined requests are answered with few writes; large bodies are
//! streamed from their files.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;

use super::head::{HeadError, MAX_HEAD, Parsed, RequestHead, parse_head};
use super::response::{Body, Response};

/// Bytes kept for reading: a whole head, plus room for small bodies that came with it.
const READ_BUFFER: usize = 256 * 1024;
/// Responses are written in pieces of this size.
const WRITE_CHUNK: usize = 1 << 20;

/// Why no request could be read.
#[derive(Debug)]
pub enum ReadError {
    /// Reading failed (or was interrupted: see `server::Interruption`).
    Io(io::Error),
    /// The stream cannot be delimited any more.
    Head(HeadError),
    /// End of input inside a head or a body.
    Truncated,
}

impl From<io::Error> for ReadError {
    fn from(error: io::Error) -> ReadError {
        ReadError::Io(error)
    }
}

/// Requests from the client.
pub struct RequestReader<R> {
    input: R,
    buffer: Box<[u8]>,
    start: usize,
    end: usize,
}

impl<R: Read> RequestReader<R> {
    pub fn new(input: R) -> RequestReader<R> {
        RequestReader {
            input,
            buffer: vec![0; READ_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Whether bytes of a further request are already here (then replies need not be
    /// flushed yet, and waiting for input would be wrong).
    pub fn has_buffered_input(&self) -> bool {
        self.end > self.start
    }

    /// The next request head; `None` at end of input between requests.
    pub fn next_head(&mut self) -> Result<Option<RequestHead>, ReadError> {
        loop {
            match parse_head(&self.buffer[self.start..self.end]).map_err(ReadError::Head)? {
                Parsed::Complete { head, length } => {
                    self.start += length;
                    return Ok(Some(head));
                }
                Parsed::Partial => {}
            }
            if self.start > 0 {
                self.buffer.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end >= MAX_HEAD.min(self.buffer.len()) {
                return Err(ReadError::Head(HeadError::TooLarge));
            }
            let read = self.input.read(&mut self.buffer[self.end..])?;
            if read == 0 {
                return if self.end == 0 {
                    Ok(None)
                } else {
                    Err(ReadError::Truncated)
                };
            }
            self.end += read;
        }
    }

    /// The body of the request just read, `length` bytes long.
    pub fn body(&mut self, length: u64) -> BodyReader<'_, R> {
        BodyReader {
            reader: self,
            remaining: length,
        }
    }
}

/// The body of one request; reads end at its end. Drop it only after [`BodyReader::finish`].
pub struct BodyReader<'a, R> {
    reader: &'a mut RequestReader<R>,
    remaining: u64,
}

impl<R: Read> BodyReader<'_, R> {
    /// Bytes not read yet.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Reads what is left and throws it away.
    pub fn finish(&mut self) -> Result<(), ReadError> {
        let mut scratch = [0u8; 64 * 1024];
        while self.remaining > 0 {
            self.read_some(&mut scratch)?;
        }
        Ok(())
    }

    /// Reads the rest into memory, when it is at most `limit` bytes; else `None` (and the
    /// body is left unread).
    pub fn read_all(&mut self, limit: u64) -> Result<Option<Vec<u8>>, ReadError> {
        if self.remaining > limit {
            return Ok(None);
        }
        let mut data = vec![0; usize::try_from(self.remaining).unwrap_or(0)];
        let mut filled = 0;
        while filled < data.len() {
            filled += self.read_some(&mut data[filled..])?;
        }
        Ok(Some(data))
    }

    /// Reads at least one byte into `into` (unless the body is done: 0).
    pub fn read_some(&mut self, into: &mut [u8]) -> Result<usize, ReadError> {
        let wanted = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(into.len());
        if wanted == 0 {
            return Ok(0);
        }
        let reader = &mut *self.reader;
        let count = if reader.end > reader.start {
            let count = wanted.min(reader.end - reader.start);
            into[..count].copy_from_slice(&reader.buffer[reader.start..reader.start + count]);
            reader.start += count;
            count
        } else {
            // Large bodies bypass the buffer.
            let count = reader.input.read(&mut into[..wanted])?;
            if count == 0 {
                return Err(ReadError::Truncated);
            }
            count
        };
        self.remaining -= count as u64;
        Ok(count)
    }
}

/// Responses to the client.
pub struct ResponseWriter<W> {
    output: W,
    pending: Vec<u8>,
    scratch: Vec<u8>,
}

impl<W: Write> ResponseWriter<W> {
    pub fn new(output: W) -> ResponseWriter<W> {
        ResponseWriter {
            output,
            pending: Vec::with_capacity(64 * 1024),
            scratch: Vec::new(),
        }
    }

    pub fn get_ref(&self) -> &W {
        &self.output
    }

    /// Queues (and, for large bodies, writes) one response.
    pub fn send(&mut self, response: Response) -> io::Result<()> {
        self.pending.extend_from_slice(&response.head());
        match response.body {
            Body::None => {}
            Body::Bytes(data) => {
                if data.len() > WRITE_CHUNK {
                    self.flush()?;
                    self.output.write_all(&data)?;
                } else {
                    self.pending.extend_from_slice(&data);
                }
            }
            Body::File {
                file,
                offset,
                length,
            } => self.copy_range(&file, offset, length)?,
            Body::Ranges(ranges) => {
                for range in ranges {
                    self.copy_range(&range.file, range.offset, range.length)?;
                }
            }
        }
        if self.pending.len() >= WRITE_CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes `length` bytes of `file` from `offset`. A file that turns out shorter than it
    /// was (changed in place under the store) cannot be answered any more: error.
    fn copy_range(&mut self, file: &File, offset: u64, length: u64) -> io::Result<()> {
        if length as usize <= WRITE_CHUNK - self.pending.len().min(WRITE_CHUNK) {
            let start = self.pending.len();
            self.pending.resize(start + length as usize, 0);
            return file
                .read_exact_at(&mut self.pending[start..], offset)
                .inspect_err(|_| {
                    self.pending.truncate(start);
                });
        }
        self.flush()?;
        self.scratch.resize(WRITE_CHUNK, 0);
        let mut done = 0u64;
        while done < length {
            let count = (length - done).min(WRITE_CHUNK as u64) as usize;
            file.read_exact_at(&mut self.scratch[..count], offset + done)?;
            self.output.write_all(&self.scratch[..count])?;
            done += count as u64;
        }
        Ok(())
    }

    /// Writes everything queued.
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.output.write_all(&self.pending)?;
            self.pending.clear();
        }
        self.output.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelined_heads_and_bodies_come_apart_where_they_should() {
        let input =
            b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\n\r\n".to_vec();
        let mut reader = RequestReader::new(&input[..]);
        let head = reader.next_head().unwrap().unwrap();
        assert_eq!(head.target, "/a");
        assert!(reader.has_buffered_input());
        let mut body = reader.body(head.body_length);
        assert_eq!(body.read_all(10).unwrap().unwrap(), b"abc");
        let head = reader.next_head().unwrap().unwrap();
        assert_eq!(head.target, "/b");
        assert!(!reader.has_buffered_input());
        assert!(reader.next_head().unwrap().is_none());
    }

    #[test]
    fn unread_bodies_are_skipped_and_short_ones_are_errors() {
        let input =
            b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\n12345GET /b HTTP/1.1\r\n\r\n".to_vec();
        let mut reader = RequestReader::new(&input[..]);
        let head = reader.next_head().unwrap().unwrap();
        reader.body(head.body_length).finish().unwrap();
        assert_eq!(reader.next_head().unwrap().unwrap().target, "/b");

        let input = b"POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\n12345".to_vec();
        let mut reader = RequestReader::new(&input[..]);
        let head = reader.next_head().unwrap().unwrap();
        assert!(matches!(
            reader.body(head.body_length).finish(),
            Err(ReadError::Truncated)
        ));
    }

    #[test]
    fn a_huge_declared_length_is_not_read_into_memory() {
        let input = b"POST /a HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\nxyz".to_vec();
        let mut reader = RequestReader::new(&input[..]);
        let head = reader.next_head().unwrap().unwrap();
        let mut body = reader.body(head.body_length);
        assert!(body.read_all(1 << 20).unwrap().is_none());
        let mut piece = [0u8; 8];
        assert_eq!(body.read_some(&mut piece).unwrap(), 3);
        assert!(matches!(
            body.read_some(&mut piece),
            Err(ReadError::Truncated)
        ));
    }

    #[test]
    fn end_of_input_inside_a_head_is_truncation_and_between_requests_is_not() {
        let mut reader = RequestReader::new(&b"GET /a HTTP/1.1\r\n"[..]);
        assert!(matches!(reader.next_head(), Err(ReadError::Truncated)));
        let mut reader = RequestReader::new(&b""[..]);
        assert!(reader.next_head().unwrap().is_none());
    }

    #[test]
    fn a_head_that_never_ends_is_refused_within_the_bound() {
        let endless = std::io::repeat(b'a');
        let mut reader = RequestReader::new(endless);
        assert!(matches!(
            reader.next_head(),
            Err(ReadError::Head(HeadError::TooLarge) | ReadError::Head(HeadError::Malformed(_)))
        ));
    }

    #[test]
    fn responses_are_batched_until_flushed() {
        let mut writer = ResponseWriter::new(Vec::new());
        writer.send(Response::ok()).unwrap();
        writer
            .send(Response::bytes(200, Some("text/plain"), b"digest".to_vec()))
            .unwrap();
        assert!(writer.get_ref().is_empty());
        writer.flush().unwrap();
        let text = String::from_utf8(writer.get_ref().clone()).unwrap();
        assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2);
        assert!(text.ends_with("Content-Length: 6\r\n\r\ndigest"));
    }

    #[test]
    fn file_bodies_stream_exactly_their_range() {
        let mut file = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
        file.write_all(&data).unwrap();
        let mut writer = ResponseWriter::new(Vec::new());
        let mut response = Response::ok();
        response.length = 2_500_000;
        response.body = Body::File {
            file,
            offset: 100,
            length: 2_500_000,
        };
        writer.send(response).unwrap();
        writer.flush().unwrap();
        let out = writer.get_ref();
        let body_start = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(&out[body_start..], &data[100..2_500_100]);
    }
}
