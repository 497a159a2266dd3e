//! Scripted msgpack conversations with the real `borg-gate serve` binary: every RPC method,
//! every exception class a client reconstructs, malformed and oversized input, and pipelining.

mod support;

use std::fs;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rmpv::Value;

/// A msgpack value for requests, with byte strings sent as borg sends them (raw str family).
#[derive(Clone, Debug)]
enum Arg {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Raw(Vec<u8>),
    Array(Vec<Arg>),
    Map(Vec<(Arg, Arg)>),
}

fn raw(bytes: impl AsRef<[u8]>) -> Arg {
    Arg::Raw(bytes.as_ref().to_vec())
}

fn encode(arg: &Arg, out: &mut Vec<u8>) {
    match arg {
        Arg::Nil => out.push(0xc0),
        Arg::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Arg::Int(i) => {
            rmp::encode::write_sint(out, *i).unwrap();
        }
        Arg::Float(f) => {
            rmp::encode::write_f64(out, *f).unwrap();
        }
        Arg::Raw(bytes) => {
            rmp::encode::write_str_len(out, bytes.len() as u32).unwrap();
            out.extend_from_slice(bytes);
        }
        Arg::Array(items) => {
            rmp::encode::write_array_len(out, items.len() as u32).unwrap();
            items.iter().for_each(|i| encode(i, out));
        }
        Arg::Map(entries) => {
            rmp::encode::write_map_len(out, entries.len() as u32).unwrap();
            for (k, v) in entries {
                encode(k, out);
                encode(v, out);
            }
        }
    }
}

fn dict_request(msgid: u64, method: &str, args: &[(&str, Arg)]) -> Vec<u8> {
    let args = Arg::Map(args.iter().map(|(k, v)| (raw(k), v.clone())).collect());
    let message = Arg::Map(vec![
        (raw("i"), Arg::Int(msgid as i64)),
        (raw("m"), raw(method)),
        (raw("a"), args),
    ]);
    let mut out = Vec::new();
    encode(&message, &mut out);
    out
}

/// The exception a reply carried.
#[derive(Debug)]
struct Exception {
    class: String,
    args: Vec<Value>,
    short: String,
    trace: bool,
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Value::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        other => format!("{other}"),
    }
}

fn bytes(value: &Value) -> Vec<u8> {
    match value {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Binary(b) => b.clone(),
        other => panic!("not bytes: {other:?}"),
    }
}

fn field<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    map.as_map()?
        .iter()
        .find(|(k, _)| text(k) == key)
        .map(|(_, v)| v)
}

struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    next: u64,
}

impl Session {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Session {
        let mut command = Command::new(support::cargo_bin());
        command
            .arg("serve")
            .args(args)
            .env_clear()
            .env("PATH", support::SAFE_PATH)
            .env("HOME", "/root")
            .env("BORG_HOST_ID", "protocol-test")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut session = Session {
            child,
            stdin,
            stdout,
            next: 1,
        };
        session.negotiate();
        session
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stdin.as_mut().unwrap().write_all(bytes).unwrap();
    }

    fn read_reply(&mut self) -> Value {
        rmpv::decode::read_value(&mut self.stdout).unwrap()
    }

    fn negotiate(&mut self) {
        // Tuple format, exactly as borg 1.2 and 1.4 clients start.
        let mut out = Vec::new();
        let client_data = Arg::Map(vec![(
            raw("client_version"),
            Arg::Array(vec![Arg::Int(1), Arg::Int(4), Arg::Int(5), Arg::Int(-1)]),
        )]);
        encode(
            &Arg::Array(vec![
                Arg::Int(1),
                Arg::Int(0),
                raw("negotiate"),
                Arg::Array(vec![client_data]),
            ]),
            &mut out,
        );
        self.send(&out);
        let reply = self.read_reply();
        let items = reply.as_array().unwrap();
        assert_eq!(items.len(), 4);
        assert_eq!(items[2], Value::Nil);
        let version = field(&items[3], "server_version").unwrap();
        assert_eq!(
            version,
            &Value::Array(vec![1.into(), 4.into(), 5.into(), (-1).into()])
        );
    }

    fn call(&mut self, method: &str, args: &[(&str, Arg)]) -> Result<Value, Exception> {
        let msgid = self.next;
        self.next += 1;
        let request = dict_request(msgid, method, args);
        self.send(&request);
        let reply = self.read_reply();
        assert_eq!(
            field(&reply, "i").and_then(Value::as_u64),
            Some(msgid),
            "{reply}"
        );
        parse_reply(&reply)
    }

    #[track_caller]
    fn ok(&mut self, method: &str, args: &[(&str, Arg)]) -> Value {
        self.call(method, args)
            .unwrap_or_else(|e| panic!("{method}: {e:?}"))
    }

    #[track_caller]
    fn err(&mut self, method: &str, args: &[(&str, Arg)]) -> Exception {
        match self.call(method, args) {
            Ok(value) => panic!("{method} succeeded with {value}"),
            Err(exception) => exception,
        }
    }

    fn open(&mut self, path: &Path, create: bool, exclusive: bool) -> Result<Value, Exception> {
        self.call(
            "open",
            &[
                ("path", raw(path.to_str().unwrap())),
                ("create", Arg::Bool(create)),
                ("lock_wait", Arg::Int(1)),
                ("lock", Arg::Bool(true)),
                ("exclusive", Arg::Bool(exclusive)),
                ("append_only", Arg::Bool(false)),
                ("make_parent_dirs", Arg::Bool(false)),
            ],
        )
    }

    /// Closes stdin and waits; returns the status and stderr.
    fn finish(mut self) -> (ExitStatus, String) {
        drop(self.stdin.take());
        let status = support::wait_exit(&mut self.child, Duration::from_secs(30))
            .expect("the server did not exit after EOF");
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (status, stderr)
    }
}

fn parse_reply(reply: &Value) -> Result<Value, Exception> {
    if let Some(class) = field(reply, "exception_class") {
        let keys: Vec<String> = reply
            .as_map()
            .unwrap()
            .iter()
            .map(|(k, _)| text(k))
            .collect();
        assert_eq!(
            keys,
            [
                "i",
                "exception_class",
                "exception_args",
                "exception_full",
                "exception_short",
                "exception_trace",
                "sysinfo"
            ]
        );
        let short = field(reply, "exception_short")
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(text)
            .collect::<Vec<_>>()
            .join("\n");
        return Err(Exception {
            class: text(class),
            args: field(reply, "exception_args")
                .unwrap()
                .as_array()
                .unwrap()
                .clone(),
            short,
            trace: field(reply, "exception_trace")
                .and_then(Value::as_bool)
                .unwrap(),
        });
    }
    Ok(field(reply, "r").cloned().unwrap_or(Value::Nil))
}

fn id(n: u8) -> [u8; 32] {
    let mut id = [0u8; 32];
    id[0] = n;
    id[31] = 0xa5;
    id
}

struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    fn new() -> Repo {
        let repo = Repo {
            dir: support::temp_dir("protocol"),
        };
        fs::create_dir(repo.dir.path().join("repos")).unwrap();
        repo
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("repos")
    }

    fn path(&self) -> PathBuf {
        self.root().join("repo")
    }

    fn serve(&self, extra: &[&str]) -> Session {
        let root = self.root();
        let mut args = vec!["--restrict-to-path", root.to_str().unwrap()];
        args.extend_from_slice(extra);
        Session::start(&args, &[])
    }

    /// A session with the repository created and opened exclusively.
    fn created(&self, extra: &[&str]) -> Session {
        let mut session = self.serve(extra);
        let repo_id = session.open(&self.path(), true, true).unwrap();
        assert_eq!(bytes(&repo_id).len(), 32);
        session
    }
}

fn put(session: &mut Session, n: u8, data: &[u8]) {
    session.ok(
        "put",
        &[
            ("id", raw(id(n))),
            ("data", raw(data)),
            ("wait", Arg::Bool(true)),
        ],
    );
}

fn commit(session: &mut Session) {
    session.ok(
        "commit",
        &[
            ("save_space", Arg::Bool(false)),
            ("compact", Arg::Bool(false)),
            ("threshold", Arg::Float(0.1)),
            ("cleanup_commits", Arg::Bool(false)),
        ],
    );
}

#[test]
fn objects_round_trip_with_read_your_writes_and_commit() {
    let repo = Repo::new();
    let mut session = repo.created(&[]);
    assert_eq!(session.ok("__len__", &[]), Value::from(0));
    put(&mut session, 1, b"first");
    put(&mut session, 2, &vec![7u8; 100_000]);
    assert_eq!(bytes(&session.ok("get", &[("id", raw(id(1)))])), b"first");
    assert_eq!(session.ok("__len__", &[]), Value::from(2));
    commit(&mut session);
    put(&mut session, 1, b"overwritten");
    session.ok("delete", &[("id", raw(id(2)))]);
    commit(&mut session);
    assert_eq!(
        bytes(&session.ok("get", &[("id", raw(id(1)))])),
        b"overwritten"
    );
    let missing = session.err("get", &[("id", raw(id(2)))]);
    assert_eq!(missing.class, "ObjectNotFound");
    assert_eq!(text(&missing.args[0]), hex(&id(2)));
    assert!(
        missing.short.starts_with(&format!(
            "Object with key {} not found in repository",
            hex(&id(2))
        )),
        "{}",
        missing.short
    );
    // Uncommitted changes vanish with rollback.
    put(&mut session, 3, b"never committed");
    session.ok("rollback", &[]);
    assert_eq!(
        session.err("get", &[("id", raw(id(3)))]).class,
        "ObjectNotFound"
    );
    let (status, stderr) = session.finish();
    assert!(status.success(), "{stderr}");
    // A new session sees the committed state.
    let mut session = repo.serve(&[]);
    session.open(&repo.path(), false, false).unwrap();
    assert_eq!(session.ok("__len__", &[]), Value::from(1));
}

#[test]
fn list_pages_and_scan_returns_objects_in_disk_order() {
    let repo = Repo::new();
    let mut session = repo.created(&[]);
    for n in 1..=50u8 {
        put(&mut session, n, &[n; 10]);
    }
    commit(&mut session);
    let mut seen = Vec::new();
    let mut marker = Arg::Nil;
    loop {
        let page = session.ok(
            "list",
            &[("limit", Arg::Int(7)), ("marker", marker.clone())],
        );
        let page = page.as_array().unwrap().clone();
        if page.is_empty() {
            break;
        }
        marker = raw(bytes(page.last().unwrap()));
        seen.extend(page.iter().map(bytes));
    }
    seen.sort();
    assert_eq!(seen, (1..=50u8).map(|n| id(n).to_vec()).collect::<Vec<_>>());
    let scanned = session.ok("scan", &[("limit", Arg::Int(100)), ("marker", Arg::Nil)]);
    let scanned: Vec<Vec<u8>> = scanned.as_array().unwrap().iter().map(bytes).collect();
    assert_eq!(
        scanned,
        (1..=50u8).map(|n| id(n).to_vec()).collect::<Vec<_>>(),
        "scan follows the write order"
    );
    let second = session.ok("scan", &[("limit", Arg::Int(10)), ("marker", raw(id(40)))]);
    assert_eq!(second.as_array().unwrap().len(), 10);
    assert_eq!(bytes(&second.as_array().unwrap()[0]), id(41));
    assert_eq!(
        session
            .err(
                "list",
                &[("limit", Arg::Int(1)), ("marker", raw([9u8; 32]))]
            )
            .class,
        "KeyError"
    );
    let zero = session.err("scan", &[("limit", Arg::Int(0))]);
    assert_eq!(
        (zero.class.as_str(), zero.short.as_str()),
        (
            "ValueError",
            "ValueError: please use limit > 0 or limit = None\n"
        )
    );
}

#[test]
fn keys_nonces_check_and_break_lock() {
    let repo = Repo::new();
    let mut session = repo.created(&[]);
    assert_eq!(bytes(&session.ok("load_key", &[])), b"");
    session.ok("save_key", &[("keydata", raw("line1\nline2"))]);
    assert_eq!(bytes(&session.ok("load_key", &[])), b"line1\nline2");
    assert_eq!(session.ok("get_free_nonce", &[]), Value::Nil);
    session.ok(
        "commit_nonce_reservation",
        &[
            ("next_unreserved", Arg::Int(0x1000)),
            ("start_nonce", Arg::Nil),
        ],
    );
    assert_eq!(session.ok("get_free_nonce", &[]), Value::from(0x1000));
    assert_eq!(
        fs::read_to_string(repo.path().join("nonce")).unwrap(),
        "0000000000001000"
    );
    let mismatch = session.err(
        "commit_nonce_reservation",
        &[
            ("next_unreserved", Arg::Int(0x2000)),
            ("start_nonce", Arg::Int(5)),
        ],
    );
    assert_eq!(mismatch.class, "Exception");
    put(&mut session, 1, b"x");
    commit(&mut session);
    let check = session.ok(
        "check",
        &[
            ("repair", Arg::Bool(false)),
            ("save_space", Arg::Bool(false)),
            ("max_duration", Arg::Int(0)),
        ],
    );
    assert_eq!(check, Value::Boolean(true));
    fs::write(repo.path().join("nonce"), "zz").unwrap();
    let invalid = session.err("get_free_nonce", &[]);
    assert_eq!(invalid.class, "Error");
    assert!(
        invalid.short.contains("invalid nonce file"),
        "{}",
        invalid.short
    );
    session.finish();
    let mut breaker = repo.serve(&[]);
    breaker
        .call(
            "open",
            &[
                ("path", raw(repo.path().to_str().unwrap())),
                ("lock", Arg::Bool(false)),
                ("exclusive", Arg::Bool(false)),
            ],
        )
        .unwrap();
    fs::create_dir(repo.path().join("lock.exclusive")).unwrap();
    breaker.ok("break_lock", &[]);
    assert!(!repo.path().join("lock.exclusive").exists());
}

#[test]
fn every_repository_exception_class_reaches_the_client() {
    let repo = Repo::new();
    let mut session = repo.serve(&[]);
    let missing = session
        .open(&repo.root().join("missing"), false, false)
        .unwrap_err();
    assert_eq!(
        (missing.class.as_str(), missing.trace),
        ("DoesNotExist", false)
    );
    assert_eq!(
        missing.short,
        format!(
            "Repository {} does not exist.",
            repo.root().join("missing").display()
        )
    );
    let outside = session.open(Path::new("/etc"), false, false).unwrap_err();
    assert_eq!(
        (outside.class.as_str(), text(&outside.args[0])),
        ("PathNotAllowed", "/etc".to_owned())
    );
    let orphan = session
        .open(&repo.root().join("a/b/c"), true, true)
        .unwrap_err();
    assert_eq!(orphan.class, "ParentPathDoesNotExist");
    fs::write(repo.root().join("file"), b"x").unwrap();
    assert_eq!(
        session
            .open(&repo.root().join("file"), false, false)
            .unwrap_err()
            .class,
        "InvalidRepository"
    );
    assert_eq!(
        session
            .open(&repo.root().join("file"), true, true)
            .unwrap_err()
            .class,
        "PathAlreadyExists"
    );
    fs::create_dir(repo.root().join("not-a-repo")).unwrap();
    let invalid = session
        .open(&repo.root().join("not-a-repo"), false, false)
        .unwrap_err();
    assert_eq!(invalid.class, "InvalidRepository");
    session.open(&repo.path(), true, true).unwrap();
    session.ok("rollback", &[]);
    let exists = session.open(&repo.path(), true, true).unwrap_err();
    assert_eq!(exists.class, "AlreadyExists");
    let nested = session
        .open(&repo.path().join("data/inner"), true, true)
        .unwrap_err();
    assert_eq!(nested.class, "AlreadyExists");
    let too_big = session.err(
        "put",
        &[("id", raw(id(1))), ("data", raw(vec![0u8; 20_971_480]))],
    );
    assert_eq!(
        too_big.class, "AttributeError",
        "no repository is open after a failed open"
    );
    session.open(&repo.path(), false, true).unwrap();
    let too_big = session.err(
        "put",
        &[("id", raw(id(1))), ("data", raw(vec![0u8; 20_971_480]))],
    );
    assert_eq!(too_big.class, "IntegrityError");
    assert!(
        too_big
            .short
            .contains("More than allowed put data [20971480 > 20971479]"),
        "{}",
        too_big.short
    );
    // Config problems.
    let config = fs::read_to_string(repo.path().join("config")).unwrap();
    fs::write(
        repo.path().join("config"),
        config.replace("version = 1", "version = 9"),
    )
    .unwrap();
    session.finish();
    let mut session = repo.serve(&[]);
    let bad = session.open(&repo.path(), false, false).unwrap_err();
    assert_eq!(bad.class, "InvalidRepositoryConfig");
    assert_eq!(bad.args.len(), 2);
    assert_eq!(
        text(&bad.args[1]),
        "repository version 9 is not supported by this borg version"
    );
}

#[test]
fn locks_time_out_and_writes_need_the_exclusive_lock() {
    let repo = Repo::new();
    let mut holder = repo.created(&[]);
    put(&mut holder, 1, b"x");
    let mut waiter = repo.serve(&[]);
    let started = Instant::now();
    let timeout = waiter.open(&repo.path(), false, false).unwrap_err();
    assert_eq!(timeout.class, "LockTimeout");
    assert!(
        text(&timeout.args[0]).ends_with("/lock.exclusive"),
        "{:?}",
        timeout.args
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    commit(&mut holder);
    holder.finish();
    let mut reader = repo.serve(&[]);
    reader.open(&repo.path(), false, false).unwrap();
    let refused = reader.err("put", &[("id", raw(id(2))), ("data", raw(b"y"))]);
    assert_eq!(refused.class, "AssertionError");
    // The lock_wait a client sends is clamped to the server's maximum.
    let mut patient = repo.serve(&["--max-lock-wait", "1"]);
    let mut exclusive = repo.serve(&[]);
    exclusive.open(&repo.path(), false, true).unwrap_err();
    reader.finish();
    exclusive.open(&repo.path(), false, true).unwrap();
    let started = Instant::now();
    let clamped = patient
        .call(
            "open",
            &[
                ("path", raw(repo.path().to_str().unwrap())),
                ("lock_wait", Arg::Int(3600)),
                ("exclusive", Arg::Bool(true)),
            ],
        )
        .unwrap_err();
    assert_eq!(clamped.class, "LockTimeout");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "waited {:?}",
        started.elapsed()
    );
}

#[test]
fn storage_quota_dooms_the_transaction_and_read_only_refuses_every_write() {
    let repo = Repo::new();
    let mut session = repo.created(&["--storage-quota", "10M"]);
    let exceeded = session.err(
        "put",
        &[("id", raw(id(1))), ("data", raw(vec![1u8; 10_500_000]))],
    );
    assert_eq!(exceeded.class, "StorageQuotaExceeded");
    assert_eq!(
        exceeded.short,
        "The storage quota (10.00 MB) has been exceeded (10.50 MB). Try deleting some archives."
    );
    let again = session.err("commit", &[]);
    assert_eq!(again.class, "StorageQuotaExceeded");
    session.finish();

    let mut reader = repo.serve(&["--permissions", "read-only"]);
    reader.open(&repo.path(), false, true).unwrap();
    for (method, args) in [
        ("put", vec![("id", raw(id(1))), ("data", raw(b"x"))]),
        ("delete", vec![("id", raw(id(1)))]),
        ("save_key", vec![("keydata", raw("k"))]),
        ("destroy", vec![]),
        ("check", vec![("repair", Arg::Bool(true))]),
    ] {
        let refused = reader.err(method, &args);
        assert_eq!(refused.class, "PermissionDenied", "{method}");
        assert!(
            refused
                .short
                .starts_with("Permission denied: this key is read-only ("),
            "{}",
            refused.short
        );
        assert!(!refused.trace);
    }
    // Nonce reservations are reads for a read-only key (borg 1.2's check reserves nonces):
    // acknowledged against the stored state, but never written.
    assert_eq!(reader.ok("get_free_nonce", &[]), Value::Nil);
    let reserve = [("next_unreserved", Arg::Int(1)), ("start_nonce", Arg::Nil)];
    assert_eq!(reader.ok("commit_nonce_reservation", &reserve), Value::Nil);
    assert!(
        !repo.path().join("nonce").exists(),
        "a read-only key stored a nonce"
    );
    let mismatched = [
        ("next_unreserved", Arg::Int(9)),
        ("start_nonce", Arg::Int(5)),
    ];
    let refused = reader.err("commit_nonce_reservation", &mismatched);
    assert_eq!(refused.class, "Exception", "{}", refused.short);
    assert_eq!(reader.ok("__len__", &[]), Value::from(0));
    assert!(repo.path().join("config").exists(), "destroy was refused");
}

#[test]
fn test_hook_exceptions_match_borgs_transport_test() {
    let repo = Repo::new();
    let mut session = repo.serve(&[]);
    for (kind, class) in [
        ("DoesNotExist", "DoesNotExist"),
        ("AlreadyExists", "AlreadyExists"),
        ("CheckNeeded", "CheckNeeded"),
        ("IntegrityError", "IntegrityError"),
        ("PathNotAllowed", "PathNotAllowed"),
        ("ObjectNotFound", "ObjectNotFound"),
        ("InvalidRPCMethod", "InvalidRPCMethod"),
        ("divide", "ZeroDivisionError"),
    ] {
        assert_eq!(
            session
                .err("inject_exception", &[("kind", raw(kind))])
                .class,
            class,
            "{kind}"
        );
    }
    // Debian borg 1.2.4's transport test compares the whole message of Python 3.11's `0 // 0`.
    let divide = session.err("inject_exception", &[("kind", raw("divide"))]);
    assert_eq!(
        divide.short,
        "ZeroDivisionError: integer division or modulo by zero\n"
    );
    assert_eq!(
        session.ok("inject_exception", &[("kind", raw("nothing"))]),
        Value::Nil
    );
    let unknown = session.err("__init__", &[]);
    assert_eq!(
        (unknown.class.as_str(), text(&unknown.args[0])),
        ("InvalidRPCMethod", "__init__".to_owned())
    );
    assert_eq!(session.err("__len__", &[]).class, "AttributeError");
}

#[test]
fn legacy_tuple_requests_get_tuple_replies() {
    let repo = Repo::new();
    let mut session = repo.created(&[]);
    let mut out = Vec::new();
    encode(
        &Arg::Array(vec![
            Arg::Int(1),
            Arg::Int(77),
            raw("__len__"),
            Arg::Array(vec![]),
        ]),
        &mut out,
    );
    session.send(&out);
    let reply = session.read_reply();
    assert_eq!(
        reply,
        Value::Array(vec![1.into(), 77.into(), Value::Nil, 0.into()])
    );
    let mut out = Vec::new();
    encode(
        &Arg::Array(vec![
            Arg::Int(1),
            Arg::Int(78),
            raw("get"),
            Arg::Array(vec![raw(id(9))]),
        ]),
        &mut out,
    );
    session.send(&out);
    let reply = session.read_reply();
    let items = reply.as_array().unwrap();
    assert_eq!(
        (items[1].as_u64(), text(&items[2])),
        (Some(78), "ObjectNotFound".to_owned())
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let repo = Repo::new();
    let mut session = repo.created(&[]);
    let mut burst = Vec::new();
    for n in 0..1000u32 {
        let mut object = [0u8; 32];
        object[..4].copy_from_slice(&n.to_le_bytes());
        burst.extend(dict_request(
            100 + u64::from(n),
            "put",
            &[("id", raw(object)), ("data", raw(n.to_le_bytes()))],
        ));
    }
    burst.extend(dict_request(
        5000,
        "commit",
        &[("compact", Arg::Bool(false))],
    ));
    burst.extend(dict_request(5001, "__len__", &[]));
    session.send(&burst);
    for n in 0..1000u64 {
        let reply = session.read_reply();
        assert_eq!(field(&reply, "i").and_then(Value::as_u64), Some(100 + n));
        assert!(parse_reply(&reply).is_ok());
    }
    assert!(parse_reply(&session.read_reply()).is_ok());
    let len = session.read_reply();
    assert_eq!(field(&len, "r"), Some(&Value::from(1000)));
}

#[test]
fn malformed_and_oversized_input_ends_the_session_cleanly() {
    let repo = Repo::new();
    for (label, bytes) in [
        ("garbage", vec![0xc1, 0xc1, 0xc1, 0xc1]),
        ("4 GiB string", vec![0xdb, 0xff, 0xff, 0xff, 0xff, 0x00]),
        ("not a request", vec![0x05]),
    ] {
        let mut session = repo.created(&[]);
        put(&mut session, 1, b"uncommitted");
        session.send(&bytes);
        let (status, stderr) = session.finish();
        assert!(!status.success(), "{label}: {status:?}");
        assert_eq!(stderr.lines().count(), 1, "{label}: {stderr}");
        assert!(
            !repo.path().join("lock.exclusive").exists(),
            "{label}: the lock was left behind"
        );
        fs::remove_dir_all(repo.path()).unwrap();
    }
}

#[test]
fn client_disconnect_rolls_back_and_releases_the_lock() {
    let repo = Repo::new();
    let mut session = repo.created(&[]);
    put(&mut session, 1, b"committed");
    commit(&mut session);
    put(&mut session, 2, b"lost");
    let (status, _) = session.finish();
    assert!(status.success());
    assert!(!repo.path().join("lock.exclusive").exists());
    let mut next = repo.serve(&[]);
    next.open(&repo.path(), false, true).unwrap();
    assert_eq!(next.ok("__len__", &[]), Value::from(1));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------
// Calls after destroy and after a failed open (issue 10): Python `borg serve` keeps the
// repository object there, so the `rollback` borg's client sends when an exception ends its
// `with repository:` block is answered; every other call is refused.

#[test]
fn rollback_after_destroy_is_answered_as_python_borg_serve_does() {
    let repo = Repo::new();
    let mut session = repo.created(&[]);
    put(&mut session, 1, b"one");
    assert_eq!(session.ok("destroy", &[]), Value::Nil);
    assert!(!repo.path().exists(), "destroy left the repository");
    assert_eq!(session.ok("rollback", &[]), Value::Nil);
    assert_eq!(session.ok("rollback", &[]), Value::Nil);
    for method in ["__len__", "destroy", "commit", "load_key"] {
        let refused = session.err(method, &[]);
        assert_eq!(
            (refused.class.as_str(), refused.short.as_str()),
            (
                "AttributeError",
                "AttributeError: the repository was deleted; the client must call open again\n"
            ),
            "{method}"
        );
    }
    // A new open starts over.
    session.open(&repo.path(), true, true).unwrap();
    assert_eq!(session.ok("__len__", &[]), Value::from(0));
    let (status, stderr) = session.finish();
    assert!(status.success(), "{stderr}");
}

#[test]
fn rollback_after_a_failed_open_is_answered_as_python_borg_serve_does() {
    let repo = Repo::new();
    let mut session = repo.serve(&[]);
    // Before any open there is nothing to roll back (Python: NoneType has no `rollback`).
    assert_eq!(session.err("rollback", &[]).class, "AttributeError");
    let missing = session.open(&repo.path(), false, true).unwrap_err();
    assert_eq!(missing.class, "DoesNotExist");
    assert_eq!(session.ok("rollback", &[]), Value::Nil);
    let refused = session.err("__len__", &[]);
    assert_eq!(
        refused.short,
        "AttributeError: the repository could not be opened; the client must call open again\n"
    );
    let (status, stderr) = session.finish();
    assert!(status.success(), "{stderr}");
}

#[test]
fn append_only_destroy_is_refused_with_borgs_message_and_the_session_keeps_its_repository() {
    let repo = Repo::new();
    drop(repo.created(&[]).finish());
    let mut session = repo.serve(&["--append-only"]);
    session.open(&repo.path(), false, true).unwrap();
    put(&mut session, 1, b"one");
    commit(&mut session);
    let refused = session.err("destroy", &[]);
    assert_eq!(
        (refused.class.as_str(), refused.short.clone()),
        (
            "ValueError",
            format!(
                "ValueError: {} is in append-only mode\n",
                repo.path().display()
            )
        )
    );
    // The client's rollback after the refusal, then the repository is still served.
    assert_eq!(session.ok("rollback", &[]), Value::Nil);
    assert_eq!(session.ok("__len__", &[]), Value::from(1));
    assert_eq!(bytes(&session.ok("get", &[("id", raw(id(1)))])), b"one");
    let (status, stderr) = session.finish();
    assert!(status.success(), "{stderr}");
    assert!(repo.path().join("config").exists(), "destroy was refused");
}
