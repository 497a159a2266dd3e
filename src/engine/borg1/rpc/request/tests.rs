//! Tests of the request decoder, from requests captured from borg clients.

use super::*;
use crate::engine::borg1::msgpack::{
    write_array_header, write_bool, write_f64, write_int, write_map_header, write_nil, write_str,
    write_uint,
};

/// The negotiate request captured from a borg 1.4.5 client (spec 2.5).
const NEGOTIATE: &[u8] = b"\x94\x01\x01\xa9negotiate\x91\x81\xaeclient_version\x94\x01\x04\x05\xff";

/// The `open` request from capture 01 (spec 2.4).
const OPEN: &[u8] = b"\x83\xa1i\x02\xa1m\xa4open\xa1a\x87\xa4path\xb3/srv/backups/repo01\
\xa6create\xc3\xa9lock_wait\x01\xa4lock\xc3\xa9exclusive\xc3\xabappend_only\xc2\
\xb0make_parent_dirs\xc2";

/// Gives out at most `chunk` bytes per read call.
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

fn reader(data: &[u8]) -> RequestReader<&[u8]> {
    RequestReader::new(data)
}

/// Writes one encoded argument value.
type WriteValue<'f> = &'f dyn Fn(&mut Vec<u8>);
type BoxedWrite = Box<dyn Fn(&mut Vec<u8>)>;

fn dict_request(msgid: u64, method: &str, args: &[(&str, WriteValue<'_>)]) -> Vec<u8> {
    let mut out = Vec::new();
    write_map_header(&mut out, 3);
    write_str(&mut out, b"i").unwrap();
    write_uint(&mut out, msgid);
    write_str(&mut out, b"m").unwrap();
    write_str(&mut out, method.as_bytes()).unwrap();
    write_str(&mut out, b"a").unwrap();
    write_map_header(&mut out, args.len() as u32);
    for (name, write_value) in args {
        write_str(&mut out, name.as_bytes()).unwrap();
        write_value(&mut out);
    }
    out
}

fn put_request(msgid: u64, id: &[u8], data: &[u8]) -> Vec<u8> {
    dict_request(
        msgid,
        "put",
        &[
            ("id", &|o: &mut Vec<u8>| write_str(o, id).unwrap()),
            ("data", &|o: &mut Vec<u8>| write_str(o, data).unwrap()),
        ],
    )
}

#[test]
fn decodes_the_captured_negotiate_request() {
    let mut reader = reader(NEGOTIATE);
    let request = reader.next_request().unwrap().unwrap();
    assert_eq!(request.msgid, 1);
    assert_eq!(request.format, Format::Tuple);
    assert_eq!(request.method, Method::Negotiate);
    assert_eq!(
        request.args.client_data(),
        Some(ClientData::Map {
            client_version: Some(vec![1, 4, 5, -1])
        })
    );
    assert!(reader.next_request().unwrap().is_none());
}

#[test]
fn decodes_the_captured_open_request() {
    let mut reader = reader(OPEN);
    let request = reader.next_request().unwrap().unwrap();
    assert_eq!(request.msgid, 2);
    assert_eq!(request.format, Format::Dict);
    assert_eq!(request.method, Method::Open);
    let args = request.args;
    assert_eq!(args.len(), 7);
    assert_eq!(
        args.bytes("path").unwrap(),
        Some(&b"/srv/backups/repo01"[..])
    );
    assert!(args.bool_or("create", false).unwrap());
    assert_eq!(args.opt_int("lock_wait").unwrap(), Some(1));
    assert_eq!(args.opt_float("lock_wait").unwrap(), Some(1.0));
    assert!(args.bool_or("lock", true).unwrap());
    assert_eq!(args.opt_bool("exclusive").unwrap(), Some(true));
    assert!(!args.bool_or("append_only", true).unwrap());
    assert!(!args.bool_or("make_parent_dirs", true).unwrap());
    assert_eq!(args.get("no_such_arg"), None);
    assert!(!args.bool_or("no_such_arg", false).unwrap());
}

#[test]
fn decodes_negotiate_in_dict_format_and_legacy_client_data() {
    let message = dict_request(
        1,
        "negotiate",
        &[("client_data", &|o: &mut Vec<u8>| write_int(o, 2))],
    );
    let mut reader = reader(&message);
    let request = reader.next_request().unwrap().unwrap();
    assert_eq!(request.format, Format::Dict);
    assert_eq!(request.args.client_data(), Some(ClientData::Int(2)));

    let odd = dict_request(
        1,
        "negotiate",
        &[("client_data", &|o: &mut Vec<u8>| {
            write_map_header(o, 1);
            write_str(o, b"client_version").unwrap();
            write_str(o, b"1.4.5").unwrap();
        })],
    );
    let mut reader = self::reader(&odd);
    let request = reader.next_request().unwrap().unwrap();
    assert_eq!(
        request.args.client_data(),
        Some(ClientData::Map {
            client_version: None
        })
    );
    let other = dict_request(1, "negotiate", &[("client_data", &write_nil)]);
    let mut reader = self::reader(&other);
    assert_eq!(
        reader.next_request().unwrap().unwrap().args.client_data(),
        Some(ClientData::Other)
    );
}

#[test]
fn maps_tuple_arguments_by_borgs_compat_names() {
    let mut message = Vec::new();
    write_array_header(&mut message, 4);
    write_int(&mut message, 1);
    write_int(&mut message, 7);
    write_str(&mut message, b"open").unwrap();
    write_array_header(&mut message, 4);
    write_str(&mut message, b"/repo").unwrap();
    write_bool(&mut message, true);
    write_nil(&mut message);
    write_bool(&mut message, false);
    let mut reader = reader(&message);
    let request = reader.next_request().unwrap().unwrap();
    assert_eq!(request.format, Format::Tuple);
    assert_eq!(request.msgid, 7);
    assert_eq!(request.args.bytes("path").unwrap(), Some(&b"/repo"[..]));
    assert!(request.args.bool_or("create", false).unwrap());
    assert_eq!(request.args.opt_int("lock_wait").unwrap(), None);
    assert!(request.args.contains("lock_wait"));
    assert!(!request.args.bool_or("lock", true).unwrap());
    // Only four were sent: the fifth and sixth take defaults; make_parent_dirs has no
    // position at all.
    assert_eq!(request.args.opt_bool("exclusive").unwrap(), None);
    assert!(!request.args.contains("append_only"));
    assert!(!request.args.contains("make_parent_dirs"));
}

#[test]
fn every_allowlisted_method_round_trips_its_name() {
    for method in Method::ALLOWED {
        assert_eq!(Method::from_wire(method.name().as_bytes()), method);
    }
    assert_eq!(
        Method::from_wire(b"__init__"),
        Method::Unknown("__init__".into())
    );
    assert_eq!(Method::from_wire(b"\xff").name(), "\u{fffd}");
}

#[test]
fn unknown_methods_decode_so_that_the_server_can_answer_invalid_rpc_method() {
    let message = dict_request(5, "get_many", &[]);
    let mut reader = reader(&message);
    let request = reader.next_request().unwrap().unwrap();
    assert_eq!(request.method, Method::Unknown("get_many".into()));
    assert!(request.args.is_empty());
}

#[test]
fn put_data_borrows_from_the_read_buffer() {
    let data = vec![0xab; 100_000];
    let message = put_request(3, &[1; 32], &data);
    let mut reader = reader(&message);
    let address = {
        let request = reader.next_request().unwrap().unwrap();
        let got = request.args.bytes("data").unwrap().unwrap();
        assert_eq!(got, &data[..]);
        got.as_ptr() as usize
    };
    let buffer = reader.buf.as_ptr() as usize..reader.buf.as_ptr() as usize + reader.buf.len();
    assert!(buffer.contains(&address));
}

#[test]
fn accepts_bin_as_well_as_str_for_byte_arguments() {
    let mut message = Vec::new();
    write_map_header(&mut message, 3);
    write_str(&mut message, b"i").unwrap();
    write_int(&mut message, 9);
    write_str(&mut message, b"m").unwrap();
    message.extend_from_slice(b"\xc4\x03get");
    write_str(&mut message, b"a").unwrap();
    write_map_header(&mut message, 1);
    message.extend_from_slice(b"\xc4\x02id\xc4\x20");
    message.extend_from_slice(&[7; 32]);
    let mut reader = reader(&message);
    let request = reader.next_request().unwrap().unwrap();
    assert_eq!(request.method, Method::Get);
    assert_eq!(request.args.bytes("id").unwrap(), Some(&[7u8; 32][..]));
}

#[test]
fn feeds_one_byte_per_read_and_still_decodes_every_message() {
    let mut stream = NEGOTIATE.to_vec();
    stream.extend_from_slice(OPEN);
    stream.extend(put_request(3, &[2; 32], &[5; 300]));
    let mut reader = RequestReader::new(Trickle {
        data: &stream,
        chunk: 1,
    });
    let mut methods = Vec::new();
    while let Some(request) = reader.next_request().unwrap() {
        if request.method == Method::Put {
            assert_eq!(request.args.bytes("data").unwrap(), Some(&[5u8; 300][..]));
        }
        methods.push(request.method.clone());
    }
    assert_eq!(methods, vec![Method::Negotiate, Method::Open, Method::Put]);
}

#[test]
fn returns_several_messages_from_one_read_without_reading_again() {
    let mut stream = Vec::new();
    for msgid in 1..=50 {
        stream.extend(put_request(msgid, &[msgid as u8; 32], &[0; 1024]));
    }
    let mut reader = RequestReader::new(Trickle {
        data: &stream,
        chunk: usize::MAX,
    });
    let first = reader.next_request().unwrap().unwrap().msgid;
    assert_eq!(first, 1);
    assert!(reader.get_ref().data.is_empty(), "one read took everything");
    for expected in 2..=50 {
        assert!(reader.has_buffered_request());
        assert_eq!(reader.next_request().unwrap().unwrap().msgid, expected);
    }
    assert_eq!(reader.buffered_bytes(), 0);
    assert!(!reader.has_buffered_request());
    assert!(reader.next_request().unwrap().is_none());
    assert!(reader.next_request().unwrap().is_none());
}

#[test]
fn streams_large_puts_through_a_bounded_buffer() {
    let big = vec![0x5a; 20 * 1024 * 1024 - 41];
    let mut stream = Vec::new();
    for msgid in 0..3 {
        stream.extend(put_request(msgid, &[1; 32], &big));
        stream.extend(put_request(100 + msgid, &[2; 32], b"small"));
    }
    let mut reader = RequestReader::new(Trickle {
        data: &stream,
        chunk: 3 * 1024 * 1024 + 17,
    });
    let mut count = 0;
    while let Some(request) = reader.next_request().unwrap() {
        let data = request.args.bytes("data").unwrap().unwrap();
        assert!(data == &big[..] || data == b"small");
        count += 1;
    }
    assert_eq!(count, 6);
    assert!(reader.buf.len() <= 64 * 1024 * 1024 + MIN_READ_SPACE);
}

#[test]
fn reports_a_truncated_message_at_eof() {
    for cut in 1..OPEN.len() {
        let mut reader = reader(&OPEN[..cut]);
        match reader.next_request() {
            Err(RpcDecodeError::TruncatedAtEof { buffered }) => assert_eq!(buffered, cut),
            other => panic!("cut {cut}: {other:?}"),
        }
    }
    let err = RpcDecodeError::TruncatedAtEof { buffered: 1 };
    assert_eq!(err.exit_code(true), 0);
    assert_eq!(err.borg_log_message("1.4.5"), None);
}

#[test]
fn rejects_garbage_with_borgs_message() {
    let mut reader = reader(b"\xc1\x00\x00");
    let err = reader.next_request().unwrap_err();
    assert!(matches!(
        err,
        RpcDecodeError::Frame(FrameError::ReservedMarker { offset: 0 })
    ));
    assert_eq!(
        err.borg_log_message("1.4.5").as_deref(),
        Some("Borg 1.4.5: Got unexpected RPC data format from client.")
    );
    assert_eq!(err.exit_code(true), 2);
    assert!(
        reader.has_buffered_request(),
        "the error is known without reading"
    );
}

#[test]
fn rejects_valid_msgpack_that_is_not_a_request() {
    let cases: &[(&[u8], &str)] = &[
        (b"\x01", "neither"),
        (b"\x93\x01\x02\x03", "not of 4"),
        (b"\x94\x01\xff\xa3get\x90", "negative"),
        (b"\x94\x01\x01\x01\x90", "method name"),
        (b"\x94\x01\x01\xa3get\x80", "positional"),
        (b"\x94\x01\xa1x\xa3get\x90", "msgid is not"),
        (b"\x82\xa1i\x01\xa1m\xa3get", "lacks"),
        (b"\x84\xa1i\x01\xa1m\xa3get\xa1a\x80\xa1x\x01", "other than"),
        (b"\x83\xa1i\x01\xa1m\xa3get\xa1a\x90", "not a map"),
        (
            b"\x83\xa1i\x01\xa1m\xa3get\xa1a\x81\x01\x02",
            "argument name",
        ),
    ];
    for (bytes, reason) in cases {
        let mut reader = reader(bytes);
        match reader.next_request() {
            Err(err @ RpcDecodeError::UnexpectedFormat(text)) => {
                assert!(text.contains(reason), "{text} for {bytes:02x?}");
                assert_eq!(err.exit_code(true), 85);
                assert_eq!(err.exit_code(false), 2);
            }
            other => panic!("{bytes:02x?}: {other:?}"),
        }
    }
}

#[test]
fn rejects_a_4_gib_declared_length_without_reading_it() {
    let mut message = b"\x83\xa1i\x01\xa1m\xa3put\xa1a\x81\xa4data\xdb\xff\xff\xff\xff".to_vec();
    message.extend_from_slice(&[0; 10]);
    let mut reader = RequestReader::new(Trickle {
        data: &message,
        chunk: 4096,
    });
    assert!(matches!(
        reader.next_request(),
        Err(RpcDecodeError::Frame(FrameError::TooLarge { .. }))
    ));
    assert!(reader.buf.len() <= INITIAL_BUFFER);
}

#[test]
fn rejects_a_message_over_the_configured_limit() {
    let message = put_request(1, &[0; 32], &[0; 2000]);
    let limits = DecodeLimits {
        max_message_bytes: 1000,
        ..DecodeLimits::default()
    };
    let mut reader = RequestReader::with_limits(&message[..], limits);
    assert!(matches!(
        reader.next_request(),
        Err(RpcDecodeError::Frame(FrameError::TooLarge { .. }))
    ));
}

#[test]
fn rejects_deep_nesting_inside_arguments() {
    let mut message = b"\x83\xa1i\x01\xa1m\xa3get\xa1a\x81\xa2id".to_vec();
    message.extend(std::iter::repeat_n(0x91, 20));
    message.push(0xc0);
    let mut reader = reader(&message);
    assert!(matches!(
        reader.next_request(),
        Err(RpcDecodeError::Frame(FrameError::TooDeep { .. }))
    ));
}

#[test]
fn wrong_argument_types_are_reportable_type_errors() {
    let message = dict_request(
        4,
        "list",
        &[
            ("limit", &|o: &mut Vec<u8>| write_str(o, b"ten").unwrap()),
            ("marker", &|o: &mut Vec<u8>| write_int(o, 3)),
            ("id", &write_nil),
            ("threshold", &|o: &mut Vec<u8>| write_f64(o, 0.25)),
            ("count", &|o: &mut Vec<u8>| write_int(o, 10)),
            ("huge", &|o: &mut Vec<u8>| write_uint(o, u64::MAX)),
        ],
    );
    let mut reader = reader(&message);
    let args = reader.next_request().unwrap().unwrap().args;
    let err = args.opt_int("limit").unwrap_err();
    assert_eq!(
        err.to_string(),
        "argument 'limit' must be int or None, not bytes"
    );
    let exception = RemoteException::from(err);
    assert_eq!(exception.class, "TypeError");
    assert_eq!(
        exception.short,
        "TypeError: argument 'limit' must be int or None, not bytes\n"
    );
    assert!(args.opt_bytes("marker").is_err());
    assert!(args.bytes("id").is_err());
    assert_eq!(args.opt_bytes("id").unwrap(), None);
    assert_eq!(args.float_or("threshold", 0.1).unwrap(), 0.25);
    assert_eq!(args.float_or("count", 0.1).unwrap(), 10.0);
    assert_eq!(args.float_or("absent", 0.1).unwrap(), 0.1);
    assert!(args.float_or("limit", 0.1).is_err());
    assert!(args.bool_or("limit", false).is_err());
    assert!(args.int("id").is_err());
    assert!(args.int("huge").is_err());
    assert_eq!(args.opt_uint("huge").unwrap(), Some(u64::MAX));
    assert!(args.opt_uint("marker").is_ok());
    assert!(args.opt_bool("threshold").is_err());
}

#[test]
fn a_duplicated_argument_takes_its_last_value() {
    let message = dict_request(
        1,
        "get",
        &[
            ("id", &|o: &mut Vec<u8>| write_str(o, b"first").unwrap()),
            ("id", &|o: &mut Vec<u8>| write_str(o, b"last").unwrap()),
        ],
    );
    let mut reader = reader(&message);
    let args = reader.next_request().unwrap().unwrap().args;
    assert_eq!(args.bytes("id").unwrap(), Some(&b"last"[..]));
}

#[test]
fn finds_arguments_beyond_the_index_and_keeps_last_wins() {
    let names: Vec<String> = (0..12).map(|n| format!("a{n}")).collect();
    let writers: Vec<BoxedWrite> = (0..12)
        .map(|n| Box::new(move |o: &mut Vec<u8>| write_int(o, n)) as BoxedWrite)
        .collect();
    let mut args: Vec<(&str, WriteValue<'_>)> = names
        .iter()
        .zip(&writers)
        .map(|(name, write)| (name.as_str(), write.as_ref()))
        .collect();
    let last: &dyn Fn(&mut Vec<u8>) = &|o: &mut Vec<u8>| write_int(o, 99);
    args.push(("a3", last));
    let message = dict_request(1, "check", &args);
    let mut reader = reader(&message);
    let args = reader.next_request().unwrap().unwrap().args;
    assert_eq!(args.len(), 13);
    assert_eq!(args.int("a0").unwrap(), Some(0));
    assert_eq!(args.int("a11").unwrap(), Some(11));
    assert_eq!(args.int("a3").unwrap(), Some(99));
    assert_eq!(args.int("a12").unwrap(), None);
}

#[test]
fn accepts_the_largest_msgid() {
    let message = dict_request(u64::MAX, "__len__", &[]);
    let mut reader = reader(&message);
    let request = reader.next_request().unwrap().unwrap();
    assert_eq!(request.msgid, u64::MAX);
    assert_eq!(request.method, Method::Len);
}

#[test]
fn read_errors_are_reported_and_interruptions_retried() {
    struct Flaky(u32);
    impl Read for Flaky {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            self.0 += 1;
            match self.0 {
                1 => Err(io::ErrorKind::Interrupted.into()),
                2 => {
                    out[..NEGOTIATE.len()].copy_from_slice(NEGOTIATE);
                    Ok(NEGOTIATE.len())
                }
                _ => Err(io::Error::other("broken")),
            }
        }
    }
    let mut reader = RequestReader::new(Flaky(0));
    assert_eq!(reader.next_request().unwrap().unwrap().msgid, 1);
    assert!(matches!(
        reader.next_request(),
        Err(RpcDecodeError::Read(_))
    ));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), chunk in 1usize..64) {
            let mut reader = RequestReader::new(Trickle { data: &bytes, chunk });
            for _ in 0..600 {
                match reader.next_request() {
                    Ok(Some(request)) => {
                        let args = request.args;
                        for name in ["id", "data", "limit", "client_data", "path"] {
                            let _ = args.bytes(name);
                            let _ = args.opt_int(name);
                            let _ = args.bool_or(name, false);
                            let _ = args.float_or(name, 0.1);
                            let _ = args.client_data();
                        }
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }

        #[test]
        fn arbitrary_requests_with_arbitrary_splits_decode(
            msgids in proptest::collection::vec(any::<u64>(), 1..8),
            data in proptest::collection::vec(any::<u8>(), 0..2000),
            chunk in 1usize..700,
        ) {
            let mut stream = Vec::new();
            for &msgid in &msgids {
                stream.extend(put_request(msgid, &[3; 32], &data));
            }
            let mut reader = RequestReader::new(Trickle { data: &stream, chunk });
            for &msgid in &msgids {
                let request = reader.next_request().unwrap().unwrap();
                prop_assert_eq!(request.msgid, msgid);
                prop_assert_eq!(request.args.bytes("data").unwrap(), Some(&data[..]));
            }
            prop_assert!(reader.next_request().unwrap().is_none());
        }
    }
}
