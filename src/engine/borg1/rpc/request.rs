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
mod tests;
