//! Reading requests from the client's byte stream: framing of concatenated msgpack messages,
//! both request formats (dict `{i, m, a}` and legacy tuple `[1, msgid, method, [args]]`), and
//! typed, by-name access to the arguments.
//!
//! A [`Request`] borrows from the reader's buffer, so a `put`'s data is never copied after the
//! `read(2)` that brought it in.

use std::fmt;
use std::io::{self, Read};

use super::errors::RemoteException;
use crate::engine::borg1::msgpack::{
    Cursor, DecodeLimits, FrameError, MalformedValue, Scan, Scanner, Seq, Shallow, Value,
};

/// Buffer size allocated on the first read.
const INITIAL_BUFFER: usize = 1024 * 1024;
/// Free space guaranteed for every read, so that reads never become tiny.
const MIN_READ_SPACE: usize = 64 * 1024;
/// Largest single read, like borg's `BUFSIZE`.
const MAX_READ: usize = 10 * 1024 * 1024;
/// The buffer only doubles (to cut compaction copies) up to this size; beyond it, it grows
/// only as far as a single message needs.
const COMFORTABLE_BUFFER: usize = 32 * 1024 * 1024;

/// Which request format a message used; the reply must use the same one (spec 2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `{i: msgid, m: method, a: {name: value}}`, used by clients after `negotiate`.
    Dict,
    /// `[1, msgid, method, [positional args]]`, used for `negotiate` and by borg < 1.1.
    Tuple,
}

/// The allowlisted RPC methods of borg 1.x (`remote.py:158-177`), and everything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Len,
    Check,
    Commit,
    Delete,
    Destroy,
    Get,
    List,
    Scan,
    Negotiate,
    Open,
    Put,
    Rollback,
    SaveKey,
    LoadKey,
    BreakLock,
    GetFreeNonce,
    CommitNonceReservation,
    InjectException,
    /// Not allowlisted: the reply is `InvalidRPCMethod(name)`. Invalid UTF-8 is replaced.
    Unknown(String),
}

impl Method {
    /// Every allowlisted method, in borg's order.
    pub const ALLOWED: [Method; 18] = [
        Method::Len,
        Method::Check,
        Method::Commit,
        Method::Delete,
        Method::Destroy,
        Method::Get,
        Method::List,
        Method::Scan,
        Method::Negotiate,
        Method::Open,
        Method::Put,
        Method::Rollback,
        Method::SaveKey,
        Method::LoadKey,
        Method::BreakLock,
        Method::GetFreeNonce,
        Method::CommitNonceReservation,
        Method::InjectException,
    ];

    pub fn from_wire(name: &[u8]) -> Method {
        match name {
            b"__len__" => Method::Len,
            b"check" => Method::Check,
            b"commit" => Method::Commit,
            b"delete" => Method::Delete,
            b"destroy" => Method::Destroy,
            b"get" => Method::Get,
            b"list" => Method::List,
            b"scan" => Method::Scan,
            b"negotiate" => Method::Negotiate,
            b"open" => Method::Open,
            b"put" => Method::Put,
            b"rollback" => Method::Rollback,
            b"save_key" => Method::SaveKey,
            b"load_key" => Method::LoadKey,
            b"break_lock" => Method::BreakLock,
            b"get_free_nonce" => Method::GetFreeNonce,
            b"commit_nonce_reservation" => Method::CommitNonceReservation,
            b"inject_exception" => Method::InjectException,
            other => Method::Unknown(String::from_utf8_lossy(other).into_owned()),
        }
    }

    /// The name on the wire.
    pub fn name(&self) -> &str {
        match self {
            Method::Len => "__len__",
            Method::Check => "check",
            Method::Commit => "commit",
            Method::Delete => "delete",
            Method::Destroy => "destroy",
            Method::Get => "get",
            Method::List => "list",
            Method::Scan => "scan",
            Method::Negotiate => "negotiate",
            Method::Open => "open",
            Method::Put => "put",
            Method::Rollback => "rollback",
            Method::SaveKey => "save_key",
            Method::LoadKey => "load_key",
            Method::BreakLock => "break_lock",
            Method::GetFreeNonce => "get_free_nonce",
            Method::CommitNonceReservation => "commit_nonce_reservation",
            Method::InjectException => "inject_exception",
            Method::Unknown(name) => name,
        }
    }

    /// Names of the positional arguments in the tuple format: borg's `compatMap`
    /// (`remote.py:133-150`). `scan`, `inject_exception` and unknown methods have none, so
    /// their positional arguments are ignored (borg's server would crash on them).
    pub fn positional_names(&self) -> &'static [&'static str] {
        match self {
            Method::Check => &["repair", "save_space"],
            Method::Commit => &["save_space"],
            Method::List => &["limit", "marker"],
            Method::Put => &["id", "data"],
            Method::Get | Method::Delete => &["id"],
            Method::SaveKey => &["keydata"],
            Method::Negotiate => &["client_data"],
            Method::Open => &[
                "path",
                "create",
                "lock_wait",
                "lock",
                "exclusive",
                "append_only",
            ],
            Method::CommitNonceReservation => &["next_unreserved", "start_nonce"],
            Method::Rollback
            | Method::Destroy
            | Method::Len
            | Method::LoadKey
            | Method::BreakLock
            | Method::GetFreeNonce
            | Method::Scan
            | Method::InjectException
            | Method::Unknown(_) => &[],
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One decoded request, borrowing from the reader's buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct Request<'a> {
    pub msgid: u64,
    pub format: Format,
    pub method: Method,
    pub args: Args<'a>,
}

impl<'a> Request<'a> {
    /// Decode one complete message (as framed by [`RequestReader`]).
    pub fn parse(message: &'a [u8]) -> Result<Request<'a>, RpcDecodeError> {
        let mut cursor = Cursor::new(message);
        match cursor.read_shallow().map_err(RpcDecodeError::Malformed)? {
            Shallow::Map(entries) => parse_dict_request(&mut cursor, entries),
            Shallow::Array(4) => parse_tuple_request(&mut cursor),
            Shallow::Array(_) => Err(unexpected("the request is an array, but not of 4 elements")),
            Shallow::Scalar(_) => Err(unexpected("the request is neither a map nor an array")),
        }
    }
}

fn unexpected(reason: &'static str) -> RpcDecodeError {
    RpcDecodeError::UnexpectedFormat(reason)
}

fn parse_msgid(value: Value<'_>) -> Result<u64, RpcDecodeError> {
    match value {
        Value::Int(id) => u64::try_from(id).map_err(|_| unexpected("the msgid is negative")),
        _ => Err(unexpected("the msgid is not an integer")),
    }
}

fn parse_method(value: Value<'_>) -> Result<Method, RpcDecodeError> {
    value
        .as_bytes()
        .map(Method::from_wire)
        .ok_or_else(|| unexpected("the method name is not a string"))
}

fn read_value<'a>(cursor: &mut Cursor<'a>) -> Result<Value<'a>, RpcDecodeError> {
    cursor.read_value().map_err(RpcDecodeError::Malformed)
}

fn parse_dict_request<'a>(
    cursor: &mut Cursor<'a>,
    entries: u32,
) -> Result<Request<'a>, RpcDecodeError> {
    let mut msgid = None;
    let mut method = None;
    let mut args = None;
    for _ in 0..entries {
        match read_value(cursor)?.as_bytes() {
            Some(b"i") => msgid = Some(parse_msgid(read_value(cursor)?)?),
            Some(b"m") => method = Some(parse_method(read_value(cursor)?)?),
            Some(b"a") => match cursor.read_shallow().map_err(RpcDecodeError::Malformed)? {
                Shallow::Map(count) => args = Some(Args::named(cursor, count)?),
                _ => return Err(unexpected("the arguments ('a') are not a map")),
            },
            _ => {
                return Err(unexpected(
                    "the request map has a key other than i, m and a",
                ));
            }
        }
    }
    match (msgid, method, args) {
        (Some(msgid), Some(method), Some(args)) => Ok(Request {
            msgid,
            format: Format::Dict,
            method,
            args,
        }),
        _ => Err(unexpected(
            "the request map lacks one of the keys i, m and a",
        )),
    }
}

fn parse_tuple_request<'a>(cursor: &mut Cursor<'a>) -> Result<Request<'a>, RpcDecodeError> {
    // The first element was always 1 and has always been ignored.
    cursor.skip_value().map_err(RpcDecodeError::Malformed)?;
    let msgid = parse_msgid(read_value(cursor)?)?;
    let method = parse_method(read_value(cursor)?)?;
    let args = match cursor.read_shallow().map_err(RpcDecodeError::Malformed)? {
        Shallow::Array(count) => Args::positional(cursor, method.positional_names(), count)?,
        _ => return Err(unexpected("the positional arguments are not an array")),
    };
    Ok(Request {
        msgid,
        format: Format::Tuple,
        method,
        args,
    })
}

/// The decoded `client_data` of `negotiate` (spec 2.5), owned and small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientData {
    /// An integer: borg 0.29-1.0.x send 2 and expect 2 back.
    Int(i64),
    /// A map (borg 1.1+). `client_version` is None when the key is missing or not a short
    /// array of integers.
    Map { client_version: Option<Vec<i64>> },
    /// Anything else.
    Other,
}

/// Longest `client_version` array kept (real ones have 4 or 5 elements).
const MAX_VERSION_PARTS: usize = 16;

impl ClientData {
    fn from_value(value: Value<'_>) -> ClientData {
        match value {
            Value::Int(n) => i64::try_from(n).map_or(ClientData::Other, ClientData::Int),
            Value::Map(entries) => {
                let mut client_version = None;
                for (key, value) in entries.pairs().map_while(Result::ok) {
                    if key.as_bytes() == Some(b"client_version") {
                        client_version = version_parts(value);
                    }
                }
                ClientData::Map { client_version }
            }
            _ => ClientData::Other,
        }
    }
}

fn version_parts(value: Value<'_>) -> Option<Vec<i64>> {
    let Value::Array(parts) = value else {
        return None;
    };
    if parts.len() > MAX_VERSION_PARTS {
        return None;
    }
    parts
        .values()
        .map(|part| match part {
            Ok(Value::Int(n)) => i64::try_from(n).ok(),
            _ => None,
        })
        .collect()
}

/// An argument whose value has the wrong type; the server answers it with a `TypeError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError {
    pub name: String,
    /// What the method accepts, e.g. "bytes" or "int or None".
    pub expected: &'static str,
    /// Python's name for what arrived, e.g. "NoneType".
    pub found: &'static str,
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "argument '{}' must be {}, not {}",
            self.name, self.expected, self.found
        )
    }
}

impl std::error::Error for ArgError {}

impl From<ArgError> for RemoteException {
    fn from(err: ArgError) -> Self {
        RemoteException::type_error(&err.to_string())
    }
}

/// Arguments indexed when the request is decoded; real requests have at most seven.
const INDEXED_ARGS: usize = 8;

/// A request's arguments, looked up by name.
///
/// Unknown names are ignored and absent ones give `None` (the caller applies the method's
/// default). A duplicated name takes its last value, as a Python dict would. Accessors return
/// [`ArgError`] for a value of the wrong type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Args<'a> {
    /// (name, still-encoded value) of the first arguments, in order.
    index: [(&'a [u8], &'a [u8]); INDEXED_ARGS],
    indexed: usize,
    /// A map with more entries than the index holds is searched here instead.
    overflow: Option<Seq<'a>>,
    /// Arguments sent (named entries or positional values).
    sent: usize,
}

impl<'a> Args<'a> {
    /// Index the `count` entries of an argument map at the cursor, and move past them.
    fn named(cursor: &mut Cursor<'a>, count: u32) -> Result<Args<'a>, RpcDecodeError> {
        let mut args = Args::empty();
        args.sent = count as usize;
        let body_start = cursor.position();
        let mut overflowed = false;
        for _ in 0..count {
            let Some(name) = read_value(cursor)?.as_bytes() else {
                return Err(unexpected("an argument name is not a string"));
            };
            let value = cursor.skip_value().map_err(RpcDecodeError::Malformed)?;
            match args.index.get_mut(args.indexed) {
                Some(slot) => {
                    *slot = (name, value);
                    args.indexed += 1;
                }
                None => overflowed = true,
            }
        }
        if overflowed {
            args.overflow = Some(Seq::from_encoded(
                count,
                true,
                cursor.consumed_since(body_start),
            ));
        }
        Ok(args)
    }

    /// Index the `count` positional values at the cursor under `names`, and move past them.
    fn positional(
        cursor: &mut Cursor<'a>,
        names: &'static [&'static str],
        count: u32,
    ) -> Result<Args<'a>, RpcDecodeError> {
        let mut args = Args::empty();
        args.sent = count as usize;
        let mut names = names.iter();
        for _ in 0..count {
            let value = cursor.skip_value().map_err(RpcDecodeError::Malformed)?;
            if let (Some(name), Some(slot)) = (names.next(), args.index.get_mut(args.indexed)) {
                *slot = (name.as_bytes(), value);
                args.indexed += 1;
            }
        }
        Ok(args)
    }

    /// No arguments at all.
    pub fn empty() -> Args<'a> {
        Args {
            index: [(&[], &[]); INDEXED_ARGS],
            indexed: 0,
            overflow: None,
            sent: 0,
        }
    }

    /// The raw value of argument `name`, if present.
    pub fn get(&self, name: &str) -> Option<Value<'a>> {
        let name = name.as_bytes();
        let raw = match self.overflow {
            None => self
                .index
                .get(..self.indexed)?
                .iter()
                .rev()
                .find(|(key, _)| *key == name)
                .map(|&(_, value)| value)?,
            Some(entries) => {
                let mut found = None;
                let mut values = entries.values();
                while let Some(Ok(key)) = values.next() {
                    match values.next_raw() {
                        Some(Ok(raw)) if key.as_bytes() == Some(name) => found = Some(raw),
                        Some(Ok(_)) => {}
                        _ => break,
                    }
                }
                found?
            }
        };
        Value::parse(raw).ok()
    }

    /// Whether argument `name` is present (even as nil).
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    fn wrong(name: &str, expected: &'static str, found: Value<'_>) -> ArgError {
        ArgError {
            name: name.to_owned(),
            expected,
            found: found.python_type_name(),
        }
    }

    /// A byte string (msgpack str or bin). Nil is a type error; see [`Args::opt_bytes`].
    pub fn bytes(&self, name: &str) -> Result<Option<&'a [u8]>, ArgError> {
        match self.get(name) {
            None => Ok(None),
            Some(value) => value
                .as_bytes()
                .map(Some)
                .ok_or_else(|| Self::wrong(name, "bytes", value)),
        }
    }

    /// A byte string or nil; both absent and nil give `None`.
    pub fn opt_bytes(&self, name: &str) -> Result<Option<&'a [u8]>, ArgError> {
        match self.get(name) {
            None | Some(Value::Nil) => Ok(None),
            Some(value) => value
                .as_bytes()
                .map(Some)
                .ok_or_else(|| Self::wrong(name, "bytes or None", value)),
        }
    }

    /// A flag with Python truthiness for the values a client could send: bool, nil (false)
    /// and int (non-zero); absent gives `default`.
    pub fn bool_or(&self, name: &str, default: bool) -> Result<bool, ArgError> {
        Ok(self.opt_truth(name, "bool")?.unwrap_or(default))
    }

    /// A flag where nil is meaningful (such as `open`'s `exclusive`): absent and nil give
    /// `None`, ints count as flags.
    pub fn opt_bool(&self, name: &str) -> Result<Option<bool>, ArgError> {
        match self.get(name) {
            None | Some(Value::Nil) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(Value::Int(n)) => Ok(Some(n != 0)),
            Some(value) => Err(Self::wrong(name, "bool or None", value)),
        }
    }

    fn opt_truth(&self, name: &str, expected: &'static str) -> Result<Option<bool>, ArgError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Nil) => Ok(Some(false)),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(Value::Int(n)) => Ok(Some(n != 0)),
            Some(value) => Err(Self::wrong(name, expected, value)),
        }
    }

    /// A signed integer; absent gives `None`, nil is a type error.
    pub fn int(&self, name: &str) -> Result<Option<i64>, ArgError> {
        match self.get(name) {
            None => Ok(None),
            Some(value) => Self::to_i64(name, value, "int").map(Some),
        }
    }

    /// A signed integer or nil; both absent and nil give `None`.
    pub fn opt_int(&self, name: &str) -> Result<Option<i64>, ArgError> {
        match self.get(name) {
            None | Some(Value::Nil) => Ok(None),
            Some(value) => Self::to_i64(name, value, "int or None").map(Some),
        }
    }

    /// A non-negative integer up to 2^64-1 (nonces) or nil; absent and nil give `None`.
    pub fn opt_uint(&self, name: &str) -> Result<Option<u64>, ArgError> {
        match self.get(name) {
            None | Some(Value::Nil) => Ok(None),
            Some(value @ Value::Int(n)) => u64::try_from(n)
                .map(Some)
                .map_err(|_| Self::wrong(name, "a non-negative int", value)),
            Some(value) => Err(Self::wrong(name, "int or None", value)),
        }
    }

    fn to_i64(name: &str, value: Value<'_>, expected: &'static str) -> Result<i64, ArgError> {
        match value {
            Value::Int(n) => i64::try_from(n).map_err(|_| ArgError {
                name: name.to_owned(),
                expected: "an int that fits 64 bits",
                found: "int",
            }),
            other => Err(Self::wrong(name, expected, other)),
        }
    }

    /// A number (float or int); absent gives `default`.
    pub fn float_or(&self, name: &str, default: f64) -> Result<f64, ArgError> {
        match self.get(name) {
            None => Ok(default),
            Some(value) => Self::to_f64(name, value, "float"),
        }
    }

    /// A number or nil (for example `lock_wait`); absent and nil give `None`.
    pub fn opt_float(&self, name: &str) -> Result<Option<f64>, ArgError> {
        match self.get(name) {
            None | Some(Value::Nil) => Ok(None),
            Some(value) => Self::to_f64(name, value, "float or None").map(Some),
        }
    }

    fn to_f64(name: &str, value: Value<'_>, expected: &'static str) -> Result<f64, ArgError> {
        match value {
            Value::Float(x) => Ok(x),
            Value::Int(n) => Ok(n as f64),
            other => Err(Self::wrong(name, expected, other)),
        }
    }

    /// `negotiate`'s `client_data`; absent gives `None`.
    pub fn client_data(&self) -> Option<ClientData> {
        self.get("client_data").map(ClientData::from_value)
    }

    /// Number of arguments sent (named entries, or positional values).
    pub fn len(&self) -> usize {
        self.sent
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why the request stream cannot be read any further.
#[derive(Debug)]
pub enum RpcDecodeError {
    /// Reading stdin failed.
    Read(io::Error),
    /// EOF inside a message. borg's server ignores such a tail and exits 0 like at a clean EOF.
    TruncatedAtEof { buffered: usize },
    /// Not msgpack, or beyond the size, depth or element limits.
    Frame(FrameError),
    /// A scanned message that still fails to decode (should not happen; kept panic-free).
    Malformed(MalformedValue),
    /// Valid msgpack that is not a request: borg's `UnexpectedRPCDataFormatFromClient`.
    UnexpectedFormat(&'static str),
}

impl RpcDecodeError {
    /// The line borg's server logs (at ERROR, logger `borg.archiver`) before exiting, given the
    /// borg version it claims (e.g. "1.4.5"). None for a clean-EOF-like truncation.
    pub fn borg_log_message(&self, borg_version: &str) -> Option<String> {
        match self {
            RpcDecodeError::TruncatedAtEof { .. } => None,
            RpcDecodeError::Read(_) => Some(format!("Borg {borg_version}: {self}")),
            _ => Some(format!(
                "Borg {borg_version}: Got unexpected RPC data format from client."
            )),
        }
    }

    /// The exit code borg 1.4.5's `serve` uses for this condition. Malformed msgpack, limits and
    /// read errors crash borg's server with 2; a valid but unexpected message raises
    /// `UnexpectedRPCDataFormatFromClient`, whose code is 85 under `BORG_EXIT_CODES=modern`.
    pub fn exit_code(&self, modern_exit_codes: bool) -> i32 {
        match self {
            RpcDecodeError::TruncatedAtEof { .. } => 0,
            RpcDecodeError::UnexpectedFormat(_) if modern_exit_codes => 85,
            _ => 2,
        }
    }
}

impl fmt::Display for RpcDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcDecodeError::Read(err) => write!(f, "cannot read requests from stdin: {err}"),
            RpcDecodeError::TruncatedAtEof { buffered } => write!(
                f,
                "the client closed the connection in the middle of a request ({buffered} bytes of it received)"
            ),
            RpcDecodeError::Frame(err) => write!(f, "the client sent an unreadable request: {err}"),
            RpcDecodeError::Malformed(err) => {
                write!(f, "the client sent an unreadable request: {err}")
            }
            RpcDecodeError::UnexpectedFormat(reason) => {
                write!(
                    f,
                    "the client sent something that is not an RPC request: {reason}"
                )
            }
        }
    }
}

impl std::error::Error for RpcDecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RpcDecodeError::Read(err) => Some(err),
            RpcDecodeError::Frame(err) => Some(err),
            RpcDecodeError::Malformed(err) => Some(err),
            _ => None,
        }
    }
}

impl From<FrameError> for RpcDecodeError {
    fn from(err: FrameError) -> Self {
        RpcDecodeError::Frame(err)
    }
}

/// Frames and decodes requests from a byte stream (the server's stdin).
///
/// One growable buffer holds at most one incomplete message plus what the last read brought;
/// it never exceeds the message limit plus 64 KiB. Requests are returned one at a time,
/// borrowing from the buffer.
pub struct RequestReader<R: Read> {
    input: R,
    limits: DecodeLimits,
    /// Zero-initialised storage; `buf.len()` is the usable capacity.
    buf: Vec<u8>,
    /// Start of the first message not yet handed out.
    start: usize,
    /// End of the bytes read so far.
    end: usize,
    /// Length of the message handed out last; it is dropped at the next call.
    handed_out: usize,
    scanner: Scanner,
    /// Length of a complete message at `start`, once scanned.
    complete: Option<usize>,
    /// Bytes (from `start`) that must be buffered before scanning can progress.
    need: usize,
    eof: bool,
}

impl<R: Read> RequestReader<R> {
    pub fn new(input: R) -> Self {
        Self::with_limits(input, DecodeLimits::default())
    }

    pub fn with_limits(input: R, limits: DecodeLimits) -> Self {
        RequestReader {
            input,
            limits,
            buf: Vec::new(),
            start: 0,
            end: 0,
            handed_out: 0,
            scanner: Scanner::new(),
            complete: None,
            need: 0,
            eof: false,
        }
    }

    /// The next request, reading (and blocking) only if no complete request is buffered.
    /// `Ok(None)` means a clean EOF at a message boundary.
    ///
    /// After an error the stream is not usable: the server should log and exit
    /// (see [`RpcDecodeError::borg_log_message`] and [`RpcDecodeError::exit_code`]).
    pub fn next_request(&mut self) -> Result<Option<Request<'_>>, RpcDecodeError> {
        self.drop_handed_out();
        loop {
            if let Some(len) = self.scan_buffered()? {
                self.handed_out = len;
                let message = self
                    .buf
                    .get(self.start..self.start + len)
                    .unwrap_or_default();
                return Request::parse(message).map(Some);
            }
            if self.eof {
                let buffered = self.end - self.start;
                return if buffered == 0 {
                    Ok(None)
                } else {
                    Err(RpcDecodeError::TruncatedAtEof { buffered })
                };
            }
            self.fill().map_err(RpcDecodeError::Read)?;
        }
    }

    /// Whether [`next_request`](Self::next_request) would return without reading: a complete
    /// request (or an error, or EOF) is already known. The server flushes its replies only when
    /// this is false, that is, just before it would block on input.
    pub fn has_buffered_request(&mut self) -> bool {
        self.drop_handed_out();
        match self.scan_buffered() {
            Ok(Some(_)) | Err(_) => true,
            Ok(None) => self.eof,
        }
    }

    /// Bytes read but not yet handed out as requests.
    pub fn buffered_bytes(&self) -> usize {
        self.end - self.start - self.handed_out
    }

    /// The input stream.
    pub fn get_ref(&self) -> &R {
        &self.input
    }

    fn drop_handed_out(&mut self) {
        if self.handed_out == 0 {
            return;
        }
        self.start += self.handed_out;
        self.handed_out = 0;
        self.scanner.reset();
        self.complete = None;
        self.need = 0;
        if self.start == self.end {
            // Nothing partial is left: reuse the buffer from its beginning for free.
            self.start = 0;
            self.end = 0;
        }
    }

    fn scan_buffered(&mut self) -> Result<Option<usize>, RpcDecodeError> {
        if let Some(len) = self.complete {
            return Ok(Some(len));
        }
        let buffered = self.end - self.start;
        if buffered == 0 || buffered < self.need {
            return Ok(None);
        }
        let bytes = self.buf.get(self.start..self.end).unwrap_or_default();
        match self.scanner.scan(bytes, &self.limits)? {
            Scan::Complete(len) => {
                self.complete = Some(len);
                Ok(Some(len))
            }
            Scan::Incomplete { need } => {
                self.need = need;
                Ok(None)
            }
        }
    }

    /// Read once into the buffer, making room first. Retries on EINTR.
    fn fill(&mut self) -> io::Result<()> {
        let partial = self.end - self.start;
        let max_buffer = self.limits.max_message_bytes.saturating_add(MIN_READ_SPACE);
        let want = self
            .need
            .max(partial.saturating_add(MIN_READ_SPACE))
            .min(max_buffer);
        if self.start + want > self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.start = 0;
                self.end = partial;
            }
            // Grow when the message does not fit, and double while a partial message fills
            // more than half the buffer, so that compaction copies stay a small fraction.
            let mut target = self.buf.len();
            if want > target {
                target = want.max(INITIAL_BUFFER).max(target.saturating_mul(2));
            } else if partial > target / 2 && target < COMFORTABLE_BUFFER {
                target = target.saturating_mul(2);
            }
            let target = target.min(max_buffer.max(INITIAL_BUFFER));
            if target > self.buf.len() {
                // A fresh zeroed allocation (calloc) instead of `resize`, which would write
                // every zero itself: the kernel hands out zero pages as they are first used.
                let mut grown = vec![0u8; target];
                grown[..self.end].copy_from_slice(&self.buf[..self.end]);
                self.buf = grown;
            }
        }
        let read_end = self.buf.len().min(self.end.saturating_add(MAX_READ));
        // An empty window would read 0 bytes and look like EOF; the sizing above prevents it.
        let space = match self.buf.get_mut(self.end..read_end) {
            Some(space) if !space.is_empty() => space,
            _ => return Err(io::Error::other("request buffer bookkeeping error")),
        };
        loop {
            match self.input.read(space) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n.min(space.len());
                    return Ok(());
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::borg1::msgpack::{
        write_array_header, write_bool, write_f64, write_int, write_map_header, write_nil,
        write_str, write_uint,
    };

    /// The negotiate request captured from a borg 1.4.5 client (spec 2.5).
    const NEGOTIATE: &[u8] =
        b"\x94\x01\x01\xa9negotiate\x91\x81\xaeclient_version\x94\x01\x04\x05\xff";

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
        let mut message =
            b"\x83\xa1i\x01\xa1m\xa3put\xa1a\x81\xa4data\xdb\xff\xff\xff\xff".to_vec();
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
}
