//! Writing replies to the client (the server's stdout), byte-identical to what borg 1.4.5's
//! server packs: raw strings only (never bin, ext or str8), smallest ints, reply format
//! mirroring the request format.
//!
//! Replies are batched in a buffer that the server flushes when it would otherwise block on
//! input. A large `get` payload is not copied into the buffer: the buffered bytes and the
//! payload go out together in one vectored write.

use std::io::{self, IoSlice, Write};

use super::errors::{ExcArg, RemoteException, TUPLE_EXCEPTION_TEXT};
use super::request::Format;
use crate::engine::borg1::msgpack::{
    TooLongForMsgpack, checked_len, write_array_header, write_bool, write_int, write_map_header,
    write_nil, write_str, write_str_header, write_uint,
};

/// Payloads at least this large are written straight from the caller's slice.
const DIRECT_PAYLOAD: usize = 64 * 1024;
/// The buffer is written out once it holds this much, whether or not the server flushes.
const FLUSH_THRESHOLD: usize = 1024 * 1024;

/// Most ids in one `list`/`scan` reply that a borg 1.2 client accepts (`max_array_len`).
pub const MAX_LIST_REPLY_LEN: usize = 100_000;

/// Encodes replies into a buffer in front of `out`.
///
/// Give it an unbuffered writer (a `File` of the stdout descriptor, not `std::io::Stdout`,
/// which is line-buffered and would scan every payload for newlines).
pub struct ReplyWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
    sysinfo: String,
}

impl<W: Write> ReplyWriter<W> {
    /// A writer whose exception replies carry an empty `sysinfo`.
    pub fn new(out: W) -> Self {
        Self::with_sysinfo(out, String::new())
    }

    /// A writer whose exception replies carry `sysinfo` (see [`super::errors::SysInfo`]).
    pub fn with_sysinfo(out: W, sysinfo: String) -> Self {
        ReplyWriter {
            out,
            buf: Vec::with_capacity(64 * 1024),
            sysinfo,
        }
    }

    pub fn set_sysinfo(&mut self, sysinfo: String) {
        self.sysinfo = sysinfo;
    }

    /// Bytes encoded but not yet written to `out`.
    pub fn pending_bytes(&self) -> usize {
        self.buf.len()
    }

    pub fn get_ref(&self) -> &W {
        &self.out
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Flush and give back the output.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.flush()?;
        Ok(self.out)
    }

    /// Write everything buffered and flush `out`.
    pub fn flush(&mut self) -> io::Result<()> {
        self.write_buffer()?;
        self.out.flush()
    }

    fn write_buffer(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let result = self.out.write_all(&self.buf);
            self.buf.clear();
            result?;
        }
        Ok(())
    }

    fn finish_reply(&mut self) -> io::Result<()> {
        if self.buf.len() >= FLUSH_THRESHOLD {
            self.write_buffer()?;
        }
        Ok(())
    }

    fn begin_result(&mut self, format: Format, msgid: u64) {
        let out = &mut self.buf;
        match format {
            Format::Dict => {
                write_map_header(out, 2);
                out.extend_from_slice(b"\xa1i");
                write_uint(out, msgid);
                out.extend_from_slice(b"\xa1r");
            }
            Format::Tuple => {
                write_array_header(out, 4);
                write_uint(out, 1);
                write_uint(out, msgid);
                write_nil(out);
            }
        }
    }

    /// Result `None` (every method without a value, including `put` and `delete`).
    pub fn result_nil(&mut self, format: Format, msgid: u64) -> io::Result<()> {
        self.begin_result(format, msgid);
        write_nil(&mut self.buf);
        self.finish_reply()
    }

    pub fn result_bool(&mut self, format: Format, msgid: u64, value: bool) -> io::Result<()> {
        self.begin_result(format, msgid);
        write_bool(&mut self.buf, value);
        self.finish_reply()
    }

    pub fn result_int(&mut self, format: Format, msgid: u64, value: i64) -> io::Result<()> {
        self.begin_result(format, msgid);
        write_int(&mut self.buf, value);
        self.finish_reply()
    }

    pub fn result_uint(&mut self, format: Format, msgid: u64, value: u64) -> io::Result<()> {
        self.begin_result(format, msgid);
        write_uint(&mut self.buf, value);
        self.finish_reply()
    }

    /// A byte string result (`get`, `load_key`, `open`'s repository id).
    pub fn result_bytes(&mut self, format: Format, msgid: u64, payload: &[u8]) -> io::Result<()> {
        let len = checked_len(payload.len())?;
        self.begin_result(format, msgid);
        write_str_header(&mut self.buf, len);
        if payload.len() < DIRECT_PAYLOAD {
            self.buf.extend_from_slice(payload);
            return self.finish_reply();
        }
        let result = write_all_pair(&mut self.out, &self.buf, payload);
        self.buf.clear();
        result
    }

    /// An array of 32-byte ids (`list`, `scan`). Keep it at most [`MAX_LIST_REPLY_LEN`] long
    /// for borg 1.2 clients.
    pub fn result_id_list(
        &mut self,
        format: Format,
        msgid: u64,
        ids: &[[u8; 32]],
    ) -> io::Result<()> {
        let count = checked_len(ids.len())?;
        self.begin_result(format, msgid);
        self.buf.reserve(ids.len() * 35 + 5);
        write_array_header(&mut self.buf, count);
        for id in ids {
            self.buf.extend_from_slice(b"\xda\x00\x20");
            self.buf.extend_from_slice(id);
        }
        self.finish_reply()
    }

    /// `negotiate`'s reply `{"server_version": version}` (for example `[1, 4, 5, -1]`).
    /// A borg 1.0 client (client_data 2) gets [`result_int`](Self::result_int) 2 instead.
    pub fn result_negotiate(
        &mut self,
        format: Format,
        msgid: u64,
        version: &[i64],
    ) -> io::Result<()> {
        let count = checked_len(version.len())?;
        self.begin_result(format, msgid);
        write_map_header(&mut self.buf, 1);
        self.buf.extend_from_slice(b"\xaeserver_version");
        write_array_header(&mut self.buf, count);
        for &part in version {
            write_int(&mut self.buf, part);
        }
        self.finish_reply()
    }

    /// An exception reply: the seven-key map in dict format, or
    /// `[1, msgid, class, "Remote Exception (see remote log for the traceback)"]` in tuple
    /// format (spec 2.4).
    pub fn exception(
        &mut self,
        format: Format,
        msgid: u64,
        exception: &RemoteException,
    ) -> io::Result<()> {
        let reply_start = self.buf.len();
        if let Err(err) = encode_exception(&mut self.buf, format, msgid, exception, &self.sysinfo) {
            // Never leave half a reply in the stream.
            self.buf.truncate(reply_start);
            return Err(err.into());
        }
        self.finish_reply()
    }
}

fn encode_exception(
    out: &mut Vec<u8>,
    format: Format,
    msgid: u64,
    exception: &RemoteException,
    sysinfo: &str,
) -> Result<(), TooLongForMsgpack> {
    match format {
        Format::Tuple => {
            write_array_header(out, 4);
            write_uint(out, 1);
            write_uint(out, msgid);
            write_str(out, exception.class.as_bytes())?;
            write_str(out, TUPLE_EXCEPTION_TEXT.as_bytes())?;
        }
        Format::Dict => {
            write_map_header(out, 7);
            write_str(out, b"i")?;
            write_uint(out, msgid);
            write_str(out, b"exception_class")?;
            write_str(out, exception.class.as_bytes())?;
            write_str(out, b"exception_args")?;
            write_array_header(out, checked_len(exception.args.len())?);
            for arg in &exception.args {
                match arg {
                    ExcArg::Str(text) => write_str(out, text.as_bytes())?,
                    ExcArg::Bytes(bytes) => write_str(out, bytes)?,
                    ExcArg::Int(value) => write_int(out, *value),
                    ExcArg::Nil => write_nil(out),
                }
            }
            write_str(out, b"exception_full")?;
            write_array_header(out, checked_len(exception.full.len())?);
            for line in &exception.full {
                write_str(out, line.as_bytes())?;
            }
            write_str(out, b"exception_short")?;
            write_array_header(out, 1);
            write_str(out, exception.short.as_bytes())?;
            write_str(out, b"exception_trace")?;
            write_bool(out, exception.traceback);
            write_str(out, b"sysinfo")?;
            write_str(out, sysinfo.as_bytes())?;
        }
    }
    Ok(())
}

/// Write `head` then `tail` completely, in as few (vectored) writes as the output allows.
fn write_all_pair(out: &mut impl Write, mut head: &[u8], tail: &[u8]) -> io::Result<()> {
    let mut tail = tail;
    while !head.is_empty() {
        match out.write_vectored(&[IoSlice::new(head), IoSlice::new(tail)]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) if n < head.len() => head = &head[n..],
            Ok(n) => {
                let into_tail = (n - head.len()).min(tail.len());
                head = &[];
                tail = &tail[into_tail..];
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    out.write_all(tail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::python::python_bytes_repr;
    use crate::engine::borg1::rpc::errors::SysInfo;
    use crate::engine::borg1::rpc::test_support::{BorgPython, run_python};

    fn encoded(f: impl FnOnce(&mut ReplyWriter<Vec<u8>>) -> io::Result<()>) -> Vec<u8> {
        let mut writer = ReplyWriter::new(Vec::new());
        f(&mut writer).unwrap();
        writer.into_inner().unwrap()
    }

    #[test]
    fn nil_results_match_the_captured_bytes() {
        assert_eq!(
            encoded(|w| w.result_nil(Format::Dict, 3)),
            b"\x82\xa1i\x03\xa1r\xc0"
        );
        assert_eq!(
            encoded(|w| w.result_negotiate(Format::Tuple, 1, &[1, 4, 5, -1])),
            b"\x94\x01\x01\xc0\x81\xaeserver_version\x94\x01\x04\x05\xff"
        );
    }

    #[test]
    fn the_repository_id_reply_matches_the_capture() {
        let mut expected = b"\x82\xa1i\x02\xa1r\xda\x00\x20".to_vec();
        expected.extend_from_slice(&[9; 32]);
        assert_eq!(
            encoded(|w| w.result_bytes(Format::Dict, 2, &[9; 32])),
            expected
        );
    }

    #[test]
    fn tuple_exception_replies_carry_only_the_class() {
        let exception = RemoteException::does_not_exist("/r");
        let mut expected = b"\x94\x01\x05\xacDoesNotExist".to_vec();
        write_str(&mut expected, TUPLE_EXCEPTION_TEXT.as_bytes()).unwrap();
        assert_eq!(
            encoded(|w| w.exception(Format::Tuple, 5, &exception)),
            expected
        );
    }

    #[test]
    fn replies_stay_buffered_until_flushed() {
        let mut writer = ReplyWriter::new(Vec::new());
        writer.result_nil(Format::Dict, 1).unwrap();
        writer.result_bytes(Format::Dict, 2, b"small").unwrap();
        assert!(writer.get_ref().is_empty());
        assert_eq!(writer.pending_bytes(), 7 + 12);
        writer.flush().unwrap();
        assert_eq!(writer.get_ref().len(), 7 + 12);
        assert_eq!(writer.pending_bytes(), 0);
    }

    #[test]
    fn large_payloads_go_out_at_once_with_what_was_buffered() {
        let mut writer = ReplyWriter::new(Vec::new());
        writer.result_nil(Format::Dict, 1).unwrap();
        let payload = vec![1u8; 100_000];
        writer.result_bytes(Format::Dict, 2, &payload).unwrap();
        assert_eq!(writer.pending_bytes(), 0);
        let out = writer.get_ref();
        assert_eq!(out.len(), 7 + 11 + payload.len());
        assert_eq!(&out[7..18], b"\x82\xa1i\x02\xa1r\xdb\x00\x01\x86\xa0");
    }

    /// Accepts at most `limit` bytes per write, to exercise partial vectored writes.
    struct Stingy {
        written: Vec<u8>,
        limit: usize,
    }

    impl Write for Stingy {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            let n = data.len().min(self.limit);
            self.written.extend_from_slice(&data[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_still_deliver_every_byte_in_order() {
        let payload: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let mut writer = ReplyWriter::new(Stingy {
            written: Vec::new(),
            limit: 4097,
        });
        writer.result_nil(Format::Dict, 1).unwrap();
        writer.result_bytes(Format::Tuple, 2, &payload).unwrap();
        writer.flush().unwrap();
        let expected = {
            let mut w = ReplyWriter::new(Vec::new());
            w.buf.clear();
            w.result_nil(Format::Dict, 1).unwrap();
            w.begin_result(Format::Tuple, 2);
            write_str(&mut w.buf, &payload).unwrap();
            w.into_inner().unwrap()
        };
        assert_eq!(writer.get_ref().written, expected);
    }

    #[test]
    fn write_errors_are_returned() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut writer = ReplyWriter::new(Broken);
        writer.result_nil(Format::Dict, 1).unwrap();
        assert!(writer.flush().is_err());
        assert!(writer.result_bytes(Format::Dict, 2, &[0; 70_000]).is_err());
    }

    // ---- byte-exact comparison with msgpack-python as borg 1.4.5 packs -----------------------

    /// Every case: our encoding, and the Python expression borg's server would pack.
    fn reference_cases() -> Vec<(Vec<u8>, String)> {
        let mut cases = Vec::new();
        let widths: [i64; 21] = [
            0,
            1,
            127,
            128,
            255,
            256,
            65535,
            65536,
            4_294_967_295,
            4_294_967_296,
            i64::MAX,
            -1,
            -32,
            -33,
            -128,
            -129,
            -32768,
            -32769,
            -2_147_483_648,
            -2_147_483_649,
            i64::MIN,
        ];
        for value in widths {
            cases.push((
                encoded(|w| w.result_int(Format::Dict, 1, value)),
                format!("{{b'i': 1, b'r': {value}}}"),
            ));
        }
        for msgid in [0u64, 127, 128, 65536, u64::MAX] {
            cases.push((
                encoded(|w| w.result_nil(Format::Dict, msgid)),
                format!("{{b'i': {msgid}, b'r': None}}"),
            ));
            cases.push((
                encoded(|w| w.result_uint(Format::Tuple, msgid, msgid)),
                format!("(1, {msgid}, None, {msgid})"),
            ));
        }
        for value in [true, false] {
            let py = if value { "True" } else { "False" };
            cases.push((
                encoded(|w| w.result_bool(Format::Dict, 9, value)),
                format!("{{b'i': 9, b'r': {py}}}"),
            ));
        }
        for len in [0usize, 1, 31, 32, 255, 256, 65535, 65536, 1 << 20] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            cases.push((
                encoded(|w| w.result_bytes(Format::Dict, 4, &payload)),
                format!("{{b'i': 4, b'r': bytes(i % 251 for i in range({len}))}}"),
            ));
        }
        for count in [0usize, 1, 15, 16, 65535, 65536, 100_000] {
            let ids: Vec<[u8; 32]> = (0..count).map(|i| [(i % 256) as u8; 32]).collect();
            cases.push((
                encoded(|w| w.result_id_list(Format::Dict, 6, &ids)),
                format!("{{b'i': 6, b'r': [bytes([i % 256]) * 32 for i in range({count})]}}"),
            ));
        }
        cases.push((
            encoded(|w| w.result_negotiate(Format::Dict, 1, &[1, 4, 5, -1])),
            "{b'i': 1, b'r': {'server_version': (1, 4, 5, -1)}}".to_owned(),
        ));
        cases.push((
            encoded(|w| w.result_negotiate(Format::Tuple, 1, &[1, 4, 0, -9, 3])),
            "(1, 1, None, {'server_version': (1, 4, 0, -9, 3)})".to_owned(),
        ));
        cases.push((
            encoded(|w| w.result_int(Format::Tuple, 1, 2)),
            "(1, 1, None, 2)".to_owned(),
        ));
        let sysinfo = SysInfo {
            platform: "Linux h 6.1 #1 SMP x86_64".into(),
            server: "borg-gate 0.1.0".into(),
            pid: 4242,
            cwd: "/home/b".into(),
            argv: None,
            ssh_original_command: Some(Some("borg serve --append-only".into())),
        }
        .render(true);
        for exception in sample_exceptions() {
            let mut writer = ReplyWriter::with_sysinfo(Vec::new(), sysinfo.clone());
            writer.exception(Format::Dict, 77, &exception).unwrap();
            cases.push((
                writer.into_inner().unwrap(),
                python_exception(77, &exception, &sysinfo),
            ));
            cases.push((
                encoded(|w| w.exception(Format::Tuple, 78, &exception)),
                format!("(1, 78, '{}', '{}')", exception.class, TUPLE_EXCEPTION_TEXT),
            ));
        }
        cases
    }

    fn sample_exceptions() -> Vec<RemoteException> {
        let mut with_all_arg_kinds = RemoteException::error("x");
        with_all_arg_kinds.args = vec![
            ExcArg::Str("päth".into()),
            ExcArg::Bytes(vec![0, 255]),
            ExcArg::Int(-70000),
            ExcArg::Nil,
        ];
        vec![
            RemoteException::does_not_exist("/srv/repo"),
            RemoteException::object_not_found(&"ab".repeat(32), "/srv/repo"),
            RemoteException::lock_failed("/srv/repo/lock.exclusive", "[Errno 13] denied"),
            RemoteException::invalid_repository_config("/srv/repo", "no repository id"),
            RemoteException::value_error("please use limit > 0 or limit = None"),
            RemoteException::read_only("put"),
            RemoteException::key_error(b"\x01\x02"),
            with_all_arg_kinds,
        ]
    }

    fn python_exception(msgid: u64, e: &RemoteException, sysinfo: &str) -> String {
        let py = |text: &str| python_bytes_repr(text.as_bytes());
        let args: Vec<String> = e
            .args
            .iter()
            .map(|arg| match arg {
                ExcArg::Str(text) => py(text),
                ExcArg::Bytes(bytes) => python_bytes_repr(bytes),
                ExcArg::Int(value) => value.to_string(),
                ExcArg::Nil => "None".to_owned(),
            })
            .collect();
        let args = if args.is_empty() {
            "()".to_owned()
        } else {
            format!("({},)", args.join(", "))
        };
        let full: Vec<String> = e.full.iter().map(|line| py(line)).collect();
        format!(
            "{{b'i': {msgid}, b'exception_class': {}, b'exception_args': {}, \
             b'exception_full': [{}], b'exception_short': [{}], b'exception_trace': {}, \
             b'sysinfo': {}}}",
            py(&e.class),
            args,
            full.join(", "),
            py(&e.short),
            if e.traceback { "True" } else { "False" },
            py(sysinfo),
        )
    }

    #[test]
    fn replies_are_byte_identical_to_borg_1_4_msgpack() {
        let Some(python) = BorgPython::borg14() else {
            return;
        };
        let cases = reference_cases();
        let mut script =
            String::from("import sys, binascii\nfrom borg.helpers import msgpack\ncases = [\n");
        for (_, expression) in &cases {
            script.push_str(expression);
            script.push_str(",\n");
        }
        script.push_str(
            "]\nfor case in cases:\n    print(binascii.hexlify(msgpack.packb(case)).decode())\n",
        );
        let output = run_python(&python, &script, b"");
        let lines: Vec<&str> = std::str::from_utf8(&output).unwrap().lines().collect();
        assert_eq!(lines.len(), cases.len());
        for ((ours, expression), theirs) in cases.iter().zip(lines) {
            let ours_hex: String = ours.iter().map(|b| format!("{b:02x}")).collect();
            assert!(
                ours_hex == theirs,
                "differs from Python for {expression:.200}"
            );
        }
    }

    #[test]
    fn a_20_mib_get_reply_is_byte_identical_to_borg_1_4_msgpack() {
        let Some(python) = BorgPython::borg14() else {
            return;
        };
        let payload: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
        let mut writer = ReplyWriter::new(Vec::new());
        writer.result_bytes(Format::Dict, 300, &payload).unwrap();
        let ours = writer.into_inner().unwrap();
        let theirs = run_python(
            &python,
            "import sys\nfrom borg.helpers import msgpack\n\
             data = bytes(i % 253 for i in range(20 * 1024 * 1024))\n\
             sys.stdout.buffer.write(msgpack.packb({b'i': 300, b'r': data}))\n",
            b"",
        );
        assert!(ours == theirs, "20 MiB reply differs from Python");
    }

    /// Decodes a reply stream with a client's own unpacker and prints, as JSON lines, what the
    /// client takes from each reply.
    const CLIENT_VIEW: &str = r#"
import sys, json
from borg.helpers.msgpack import get_limited_unpacker
from borg.remote import RemoteRepository
unpacker = get_limited_unpacker('client')
unpacker.feed(sys.stdin.buffer.read())
for unpacked in unpacker:
    if isinstance(unpacked, dict) and b'exception_class' in unpacked:
        e = RemoteRepository.RPCError(unpacked)
        args = [a.decode('latin-1') if isinstance(a, bytes) else a for a in unpacked[b'exception_args']]
        print(json.dumps([e.exception_class, args, e.get_message(), e.traceback, e.exception_full, e.sysinfo]))
    elif isinstance(unpacked, dict):
        r = unpacked[b'r']
        print(json.dumps(['result', unpacked[b'i'], type(r).__name__, len(r), len(set(r))]))
    else:
        print(json.dumps([unpacked[0], unpacked[1], unpacked[2].decode(), unpacked[3].decode()]))
"#;

    fn client_view(python: &BorgPython) -> Vec<serde_json::Value> {
        let mut writer = ReplyWriter::with_sysinfo(Vec::new(), "Platform: x\nBorg: y\n".into());
        for (msgid, exception) in sample_exceptions().iter().enumerate() {
            writer
                .exception(Format::Dict, msgid as u64, exception)
                .unwrap();
        }
        writer
            .exception(Format::Tuple, 99, &sample_exceptions()[0])
            .unwrap();
        let ids: Vec<[u8; 32]> = (0..MAX_LIST_REPLY_LEN)
            .map(|i| [(i % 256) as u8; 32])
            .collect();
        writer.result_id_list(Format::Dict, 100, &ids).unwrap();
        writer
            .result_bytes(Format::Dict, 101, &vec![7; 20 * 1024 * 1024 - 41])
            .unwrap();
        let stream = writer.into_inner().unwrap();
        let output = run_python(python, CLIENT_VIEW, &stream);
        String::from_utf8(output)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    fn check_client_view(lines: &[serde_json::Value]) {
        use serde_json::json;
        let exceptions = sample_exceptions();
        assert_eq!(lines.len(), exceptions.len() + 3);
        for (line, e) in lines.iter().zip(&exceptions) {
            let latin1 =
                |bytes: &[u8]| json!(bytes.iter().map(|&b| char::from(b)).collect::<String>());
            let args: Vec<serde_json::Value> = e
                .args
                .iter()
                .map(|arg| match arg {
                    ExcArg::Str(text) => latin1(text.as_bytes()),
                    ExcArg::Bytes(bytes) => latin1(bytes),
                    ExcArg::Int(value) => json!(value),
                    ExcArg::Nil => json!(null),
                })
                .collect();
            let expected = json!([
                e.class,
                args,
                e.short,
                e.traceback,
                e.full.join("\n"),
                "Platform: x\nBorg: y\n"
            ]);
            assert_eq!(line, &expected);
        }
        let n = exceptions.len();
        assert_eq!(
            lines[n],
            json!([1, 99, "DoesNotExist", TUPLE_EXCEPTION_TEXT])
        );
        assert_eq!(lines[n + 1], json!(["result", 100, "tuple", 100_000, 256]));
        assert_eq!(
            lines[n + 2],
            json!(["result", 101, "bytes", 20 * 1024 * 1024 - 41, 1])
        );
    }

    #[test]
    fn borg_1_4_client_unpacker_reads_exceptions_lists_and_20_mib_strings() {
        let Some(python) = BorgPython::borg14() else {
            return;
        };
        check_client_view(&client_view(&python));
    }

    #[test]
    fn borg_1_2_client_unpacker_with_its_strict_limits_reads_the_same_stream() {
        let Some(python) = BorgPython::borg12() else {
            return;
        };
        check_client_view(&client_view(&python));
    }
}
