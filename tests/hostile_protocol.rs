//! `borg-gate serve` (the real binary) fed hostile RPC input by a client that is not borg:
//! garbage, truncation, absurd declared sizes, deep nesting, wrong argument types, unknown
//! methods, calls out of order, oversized objects and a flood of pipelined requests. Every
//! case gets borg's error or a clean exit, the server's memory stays bounded, and the
//! repository, made and afterwards checked by real borg, stays at its last commit.

mod support;

use std::fs;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use borg_gate::engine::borg1::msgpack::Cursor;
use rmpv::Value;
use support::{BorgClient, require};

/// borg's largest PUT payload (`MAX_OBJECT_SIZE` minus the entry header).
const MAX_DATA_SIZE: usize = 20_971_479;
/// What a server that never buffers more than one message may use, generously.
const RSS_LIMIT_KIB: u64 = 160 * 1024;

/// A repository made by real borg, with one archive, served by `borg-gate serve`.
struct Fixture {
    dir: tempfile::TempDir,
    borg: BorgClient,
}

impl Fixture {
    fn new(label: &str) -> Option<Fixture> {
        let borg = support::borg14()?;
        let dir = support::temp_dir(label);
        fs::create_dir(dir.path().join("data")).unwrap();
        support::write_file(
            &dir.path().join("data/file"),
            b"hostile protocol test\n",
            0o644,
        );
        let fixture = Fixture { dir, borg };
        let repo = fixture.repo();
        fixture
            .local(&["init", "--encryption=none", repo.to_str().unwrap()])
            .assert_success();
        let archive = format!("{}::first", repo.display());
        fixture
            .borg
            .run_in(fixture.dir.path(), &["create", &archive, "data"], &[], None)
            .assert_success();
        Some(fixture)
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    #[track_caller]
    fn local(&self, args: &[&str]) -> support::CmdOutput {
        self.borg.run(args, &[], None)
    }

    /// The transaction id of the last commit, from the newest `index.N`.
    fn last_commit(&self) -> u64 {
        fs::read_dir(self.repo())
            .unwrap()
            .filter_map(|entry| {
                let name = entry.unwrap().file_name().into_string().unwrap();
                name.strip_prefix("index.").and_then(|n| n.parse().ok())
            })
            .max()
            .expect("a committed repository has an index")
    }

    /// Real borg checks the repository and still lists the one archive; no lock is left;
    /// with `Some(commit)`, the last commit is still that one.
    #[track_caller]
    fn assert_intact(&self, commit: Option<u64>) {
        if let Some(commit) = commit {
            assert_eq!(self.last_commit(), commit, "the last commit changed");
        }
        for lock in ["lock.exclusive", "lock.roster"] {
            assert!(!self.repo().join(lock).exists(), "{lock} was left behind");
        }
        let repo = self.repo();
        self.local(&["check", repo.to_str().unwrap()])
            .assert_success();
        let list = self.local(&["list", "--short", repo.to_str().unwrap()]);
        list.assert_success();
        assert_eq!(list.stdout_text(), "first\n", "{list}");
    }

    /// `borg-gate serve` restricted to the fixture directory, working in it.
    fn serve_command(&self) -> Command {
        let mut command = Command::new(support::cargo_bin());
        command
            .args(["serve", "--restrict-to-path"])
            .arg(self.dir.path())
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", support::SAFE_PATH)
            .env("HOME", self.dir.path())
            .env("LANG", "C.UTF-8");
        command
    }

    fn spawn(&self) -> Child {
        self.serve_command()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Sends `input`, closes stdin, and collects everything.
    fn session(&self, input: &[u8]) -> support::CmdOutput {
        support::run_with_stdin(self.serve_command(), input, Duration::from_secs(60))
    }

    /// `open` of the fixture repository, exclusively locked, as msgid `msgid`.
    fn open(&self, msgid: u64) -> Vec<u8> {
        request(
            msgid,
            "open",
            &[
                ("path", Value::from(self.repo().to_str().unwrap())),
                ("lock", Value::from(true)),
                ("exclusive", Value::from(true)),
                ("lock_wait", Value::from(1)),
            ],
        )
    }
}

/// One request in borg's dict format: `{i: msgid, m: method, a: {name: value}}`.
fn request(msgid: u64, method: &str, args: &[(&str, Value)]) -> Vec<u8> {
    let args = Value::Map(
        args.iter()
            .map(|(name, value)| (Value::from(*name), value.clone()))
            .collect(),
    );
    let message = Value::Map(vec![
        (Value::from("i"), Value::from(msgid)),
        (Value::from("m"), Value::from(method)),
        (Value::from("a"), args),
    ]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &message).unwrap();
    out
}

fn put(msgid: u64, id: [u8; 32], data: &[u8]) -> Vec<u8> {
    request(
        msgid,
        "put",
        &[("id", Value::from(&id[..])), ("data", Value::from(data))],
    )
}

/// A reply: its msgid, and the exception class when it is an exception.
#[derive(Debug)]
struct Reply {
    msgid: u64,
    exception: Option<String>,
    result: Option<Value>,
}

fn replies(stdout: &[u8]) -> Vec<Reply> {
    let mut rest = stdout;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let value = rmpv::decode::read_value(&mut rest).expect("the server writes msgpack");
        let map = value.as_map().expect("a dict reply").clone();
        let field = |name: &str| {
            map.iter()
                .find(|(key, _)| key.as_str() == Some(name))
                .map(|(_, value)| value.clone())
        };
        out.push(Reply {
            msgid: field("i").and_then(|v| v.as_u64()).expect("msgid"),
            exception: field("exception_class").map(|v| v.as_str().unwrap().to_owned()),
            result: field("r"),
        });
    }
    out
}

/// VmRSS and VmHWM of a running process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Waits for `child` to exit by itself within `limit` (kills it and fails otherwise); returns
/// its status and the highest VmHWM seen before it exited.
#[track_caller]
fn wait_exit(child: &mut Child, limit: Duration) -> (std::process::ExitStatus, u64) {
    let mut peak = 0;
    let status = support::wait_for(limit, || {
        peak = peak.max(memory_kib(child.id()).1);
        child.try_wait().unwrap()
    });
    let Some(status) = status else {
        let _ = child.kill();
        panic!("the server did not exit within {limit:?}");
    };
    (status, peak)
}

fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut text);
    }
    text
}

const UNEXPECTED: &str = "Got unexpected RPC data format from client.";

#[test]
fn malformed_streams_end_the_session_with_borgs_error_and_a_rollback() {
    let fx = require!(Fixture::new("hostile-malformed"));
    let commit = fx.last_commit();
    let mut truncated_put = put(3, [7; 32], &[0xab; 4096]);
    truncated_put.truncate(2000);
    let mut deep = vec![0x91u8; 100_000];
    deep.push(0x01);
    let cases: Vec<(&str, Vec<u8>, i32, Option<&str>)> = vec![
        (
            "garbage",
            b"\xc1 this is not msgpack".to_vec(),
            2,
            Some(UNEXPECTED),
        ),
        (
            "valid msgpack that is not a request",
            vec![0x2a],
            2,
            Some(UNEXPECTED),
        ),
        ("truncated put", truncated_put, 0, None),
        ("100000 nested arrays", deep, 2, Some(UNEXPECTED)),
        (
            "an array declaring 4 billion elements",
            vec![0xdd, 0xff, 0xff, 0xff, 0xff, 0x01],
            2,
            Some(UNEXPECTED),
        ),
        (
            "a map declaring 4 billion entries",
            vec![0xdf, 0xff, 0xff, 0xff, 0xff],
            2,
            Some(UNEXPECTED),
        ),
    ];
    for (name, tail, code, message) in cases {
        // A transaction is in progress when the hostile bytes arrive.
        let mut input = fx.open(1);
        input.extend(put(2, [9; 32], b"uncommitted"));
        input.extend(&tail);
        let output = fx.session(&input);
        assert!(!output.timed_out, "{name}: {output}");
        let got: Vec<u64> = replies(&output.stdout).iter().map(|r| r.msgid).collect();
        assert_eq!(got, [1, 2], "{name}: open and put are answered first");
        assert_eq!(output.code(), Some(code), "{name}: {output}");
        if let Some(message) = message {
            assert!(output.stderr_text().contains(message), "{name}: {output}");
        }
        assert_eq!(fx.last_commit(), commit, "{name}");
    }
    fx.assert_intact(Some(commit));
}

#[test]
fn a_declared_length_of_4_gib_is_refused_without_waiting_or_allocating() {
    let fx = require!(Fixture::new("hostile-4gib"));
    let commit = fx.last_commit();
    let mut child = fx.spawn();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&fx.open(1)).unwrap();
    // A put whose data claims 4 GiB - 1 (bin32), followed by a few bytes; stdin stays open,
    // so a server that believed the length would wait (or allocate) forever.
    let mut header = b"\x83\xa1i\x02\xa1m\xa3put\xa1a\x82\xa2id\xc4\x20".to_vec();
    header.extend([1u8; 32]);
    header.extend(b"\xa4data\xc6\xff\xff\xff\xff");
    header.extend([0u8; 1024]);
    stdin.write_all(&header).unwrap();
    let (status, peak) = wait_exit(&mut child, Duration::from_secs(20));
    drop(stdin);
    assert_eq!(status.code(), Some(2), "{}", stderr_of(&mut child));
    assert!(stderr_of(&mut child).contains(UNEXPECTED));
    assert!(peak < RSS_LIMIT_KIB, "peak RSS {peak} KiB");
    fx.assert_intact(Some(commit));
}

#[test]
fn wrong_types_unknown_methods_and_calls_out_of_order_get_borgs_exceptions() {
    let fx = require!(Fixture::new("hostile-types"));
    let mut input = Vec::new();
    let mut msgid = 0;
    let mut next = || {
        msgid += 1;
        msgid
    };
    // Before open: every repository method is refused, nothing crashes.
    let before_open = next();
    input.extend(request(before_open, "__len__", &[]));
    let before_put = next();
    input.extend(put(before_put, [1; 32], b"x"));
    let first_open = next();
    input.extend(fx.open(first_open));
    // Every argument of every method (destroy excepted) with values of the wrong type.
    let methods: &[(&str, &[&str])] = &[
        ("negotiate", &["client_data"]),
        (
            "open",
            &[
                "path",
                "create",
                "lock_wait",
                "lock",
                "exclusive",
                "append_only",
                "make_parent_dirs",
            ],
        ),
        ("__len__", &["bogus"]),
        ("list", &["limit", "marker"]),
        ("scan", &["limit", "marker"]),
        ("get", &["id"]),
        ("put", &["id", "data"]),
        ("delete", &["id"]),
        ("commit", &["compact", "threshold", "cleanup_commits"]),
        ("rollback", &["bogus"]),
        ("check", &["repair", "max_duration", "save_space"]),
        ("load_key", &["bogus"]),
        ("get_free_nonce", &["bogus"]),
        (
            "commit_nonce_reservation",
            &["next_unreserved", "start_nonce"],
        ),
        ("inject_exception", &["kind"]),
    ];
    let wrong_values = [
        Value::from(-1),
        Value::from(u64::MAX),
        Value::from(1.5),
        Value::from(f64::NAN),
        Value::Array(vec![Value::from(1), Value::Nil]),
        Value::Map(vec![(Value::from("a"), Value::from(1))]),
        Value::Ext(5, vec![1, 2, 3]),
    ];
    let mut sent = vec![before_open, before_put, first_open];
    for (method, names) in methods {
        for name in *names {
            for value in &wrong_values {
                // The one wrong value, with the other arguments of `put` valid so that the
                // wrong one is the reason for the refusal.
                let mut args = vec![(*name, value.clone())];
                if *method == "put" && *name == "data" {
                    args.push(("id", Value::from(&[2u8; 32][..])));
                }
                let id = next();
                input.extend(request(id, method, &args));
                sent.push(id);
                // An open or commit that succeeded despite a wrong value would change what is
                // tested next: each is followed by a rollback and a fresh open.
                if *method == "open" || *method == "commit" {
                    let id = next();
                    input.extend(request(id, "rollback", &[]));
                    sent.push(id);
                    let id = next();
                    input.extend(fx.open(id));
                    sent.push(id);
                }
            }
        }
    }
    let unknown = next();
    input.extend(request(unknown, "__init__", &[]));
    let unknown_bytes = next();
    input.extend(request(unknown_bytes, "\u{fffd}\u{0}", &[]));
    let second_open = next();
    input.extend(fx.open(second_open));
    let len = next();
    input.extend(request(len, "__len__", &[]));
    sent.extend([unknown, unknown_bytes, second_open, len]);

    let output = fx.session(&input);
    assert_eq!(output.code(), Some(0), "{output}");
    let replies = replies(&output.stdout);
    let got: Vec<u64> = replies.iter().map(|r| r.msgid).collect();
    assert_eq!(got, sent, "every request gets exactly one reply, in order");
    let reply = |id: u64| replies.iter().find(|r| r.msgid == id).unwrap();
    assert!(reply(before_open).exception.is_some());
    assert!(reply(before_put).exception.is_some());
    assert_eq!(reply(first_open).exception, None);
    assert_eq!(
        reply(unknown).exception.as_deref(),
        Some("InvalidRPCMethod")
    );
    assert_eq!(
        reply(unknown_bytes).exception.as_deref(),
        Some("InvalidRPCMethod")
    );
    assert_eq!(
        reply(second_open).exception,
        None,
        "a second open replaces the first"
    );
    assert!(
        reply(len)
            .result
            .as_ref()
            .and_then(Value::as_u64)
            .is_some_and(|n| n > 0),
        "{:?}",
        reply(len)
    );
    for class in replies.iter().filter_map(|r| r.exception.as_deref()) {
        // Python exceptions borg's client knows; never a panic or an internal error.
        assert!(class.chars().all(|c| c.is_ascii_alphanumeric()), "{class}");
    }
    // A wrong type that Python finds truthy (`commit(compact=-1)`, `check(repair=[1])`)
    // commits in borg too, so the last commit may move here; the repository stays sound.
    fx.assert_intact(None);
}

#[test]
fn a_put_larger_than_borgs_maximum_is_refused_and_the_session_goes_on() {
    let fx = require!(Fixture::new("hostile-bigput"));
    let commit = fx.last_commit();
    let mut input = fx.open(1);
    input.extend(put(2, [3; 32], &vec![0x55; MAX_DATA_SIZE + 1]));
    input.extend(put(3, [4; 32], b"small"));
    input.extend(request(4, "__len__", &[]));
    let output = fx.session(&input);
    assert_eq!(output.code(), Some(0), "{output}");
    let replies = replies(&output.stdout);
    assert_eq!(replies.len(), 4, "{replies:?}");
    assert_eq!(
        replies[1].exception.as_deref(),
        Some("IntegrityError"),
        "{replies:?}"
    );
    assert_eq!(replies[2].exception, None);
    fx.assert_intact(Some(commit));
}

#[test]
fn a_hundred_thousand_pipelined_requests_neither_deadlock_nor_grow_the_server() {
    let fx = require!(Fixture::new("hostile-pipeline"));
    let commit = fx.last_commit();
    const REQUESTS: u64 = 100_000;
    let mut child = fx.spawn();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let open = fx.open(1);
    // get of an object that does not exist: each reply is an exception map of ~300 bytes,
    // so the replies (~30 MB) overflow every pipe buffer long before the requests end.
    let writer = thread::spawn(move || {
        stdin.write_all(&open).unwrap();
        let mut batch = Vec::new();
        for msgid in 2..REQUESTS as u32 + 2 {
            // `{i: msgid, m: "get", a: {id: <32 bytes>}}`, encoded by hand: this is a load test.
            batch.extend(b"\x83\xa1i\xce");
            batch.extend(msgid.to_be_bytes());
            batch.extend(b"\xa1m\xa3get\xa1a\x81\xa2id\xc4\x20");
            batch.extend([0xee; 32]);
            if batch.len() > 64 * 1024 {
                if stdin.write_all(&batch).is_err() {
                    return false;
                }
                batch.clear();
            }
        }
        stdin.write_all(&batch).is_ok()
    });
    // Nobody reads the replies for a while: the server must block on its full stdout pipe
    // instead of buffering.
    thread::sleep(Duration::from_secs(2));
    let pid = child.id();
    let (stalled_rss, _) = memory_kib(pid);
    assert!(
        stalled_rss < RSS_LIMIT_KIB,
        "RSS {stalled_rss} KiB while stalled"
    );
    assert!(
        !writer.is_finished(),
        "the client could not have written everything yet"
    );
    // Now read: everything must complete.
    let reader = thread::spawn(move || {
        let mut all = Vec::new();
        stdout.read_to_end(&mut all).unwrap();
        all
    });
    assert!(
        writer.join().unwrap(),
        "the server stopped reading requests"
    );
    let (status, peak) = wait_exit(&mut child, Duration::from_secs(120));
    let out = reader.join().unwrap();
    assert_eq!(status.code(), Some(0), "{}", stderr_of(&mut child));
    // Count the replies cheaply; decode the first and the last.
    let mut cursor = Cursor::new(&out);
    let mut count = 0;
    let mut last = &out[..0];
    while cursor.position() < out.len() {
        last = cursor.skip_value().expect("replies are msgpack");
        count += 1;
    }
    assert_eq!(count, REQUESTS + 1);
    let mut head = Cursor::new(&out);
    let open_len = head.skip_value().unwrap().len();
    let get_len = head.skip_value().unwrap().len();
    let first_get = replies(&out[open_len..open_len + get_len]).pop().unwrap();
    let last_get = replies(last).pop().unwrap();
    assert_eq!(first_get.exception.as_deref(), Some("ObjectNotFound"));
    assert_eq!(
        (last_get.msgid, last_get.exception.as_deref()),
        (REQUESTS + 1, Some("ObjectNotFound"))
    );
    assert!(peak > 0 && peak < RSS_LIMIT_KIB, "peak RSS {peak} KiB");
    eprintln!("RSS while stalled {stalled_rss} KiB, peak {peak} KiB");
    fx.assert_intact(Some(commit));
}
