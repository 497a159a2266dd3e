//! borg 2's REST protocol on the wire: the same requests sent to `borg-gate serve --rest` and
//! to Python's `borg serve --rest` (borg 2.0.0b23, borgstore 0.6) side by side, compared by
//! status, reason, the headers that matter and the bodies; then what b23 never sends
//! (gather, defrag, blake3, quota) and hostile input, against the engine alone.

mod support;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{Request, Response, RestServer, borg2_path, require};

/// Both servers, each on its own fresh store.
struct SideBySide {
    _dir: tempfile::TempDir,
    ours: RestServer,
    theirs: RestServer,
}

impl SideBySide {
    fn start() -> Option<SideBySide> {
        let borg2 = borg2_path()?;
        let dir = support::temp_dir("rest-side-by-side");
        let ours = RestServer::engine(&dir.path().join("ours"), &[]);
        let theirs = RestServer::python(&borg2, &dir.path().join("theirs"), &[]);
        Some(SideBySide {
            _dir: dir,
            ours,
            theirs,
        })
    }

    /// Sends `request` to both; asserts they agree; returns our response.
    #[track_caller]
    fn same(&mut self, request: Request) -> Response {
        let ours = self.ours.request(&request);
        let theirs = self.theirs.request(&request);
        let what = format!("{} {}", request.method, request.target);
        assert_eq!(
            ours.status, theirs.status,
            "{what}: {ours:?}\nvs Python {theirs:?}"
        );
        let error = ours.status >= 400 && ours.status != 422;
        if error {
            assert_eq!(ours.reason, theirs.reason, "{what}");
        } else {
            assert_eq!(ours.reason, theirs.reason, "{what}");
            for header in ["content-type", "x-borgstore-is-directory", "cache-control"] {
                assert_eq!(
                    ours.header(header),
                    theirs.header(header),
                    "{what}: {header}"
                );
            }
            let listing =
                ours.header("content-type") == Some("application/json") && what.ends_with('/');
            if !listing {
                // (A listing's length varies with the digits of its times.)
                assert_eq!(
                    ours.header("content-length"),
                    theirs.header("content-length"),
                    "{what}"
                );
            }
            for header in ["x-borgstore-atime", "x-borgstore-mtime"] {
                assert_eq!(
                    ours.header(header).is_some(),
                    theirs.header(header).is_some(),
                    "{what}: {header}"
                );
                if let Some(value) = ours.header(header) {
                    assert!(value.parse::<f64>().unwrap() > 1e9, "{what}: {value}");
                }
            }
            if listing {
                assert_eq!(
                    without_times(&ours.body),
                    without_times(&theirs.body),
                    "{what}"
                );
            } else {
                assert_eq!(ours.body, theirs.body, "{what}");
            }
        }
        ours
    }
}

/// A listing with its times replaced, after checking they are floats of this century.
fn without_times(body: &[u8]) -> String {
    let mut value: serde_json::Value = serde_json::from_slice(body).expect("a JSON listing");
    for item in value.as_array_mut().expect("a list") {
        for key in ["atime", "mtime"] {
            let time = item[key].as_f64().expect("a float time");
            assert!(time > 1e9);
            item[key] = serde_json::Value::Null;
        }
    }
    serde_json::to_string_pretty(&value).expect("JSON")
}

#[test]
fn the_engine_answers_every_request_b23_sends_as_pythons_server_does() {
    let mut both = require!(SideBySide::start());
    let ok = |response: Response| assert_eq!(response.status, 200, "{response:?}");
    ok(both.same(Request::post("/?cmd=create")));
    ok(both.same(Request::post("/?cmd=create")));
    for namespace in ["archives", "config", "packs/ab", "locks", "emptydir"] {
        ok(both.same(Request::post(format!("/{namespace}?cmd=mkdir"))));
    }
    ok(both.same(Request::store(
        "config/config",
        b"[repository]\nversion = 4\n",
    )));
    let mismatch = Request::post("/config/x")
        .header("X-Content-hash-sha256", "00")
        .body(b"abc");
    assert_eq!(both.same(mismatch).status, 422);
    assert_eq!(both.same(Request::post("/?cmd=create")).status, 409);
    ok(both.same(Request::store("packs/ab/ab00", b"0123456789")));
    ok(both.same(Request::store("archives/11", b"")));
    // Loads, whole and ranged.
    ok(both.same(Request::get("/config/config")));
    for range in [
        "bytes=2-5",
        "bytes=-3",
        "bytes=4-",
        "bytes=100-",
        "bytes=x",
        "bytes=5-3",
    ] {
        let response = both.same(Request::get("/packs/ab/ab00").header("Range", range));
        assert_eq!(response.status, 206, "{range}");
    }
    both.same(Request::get("/packs/ab/ab00").header("Range", "bytes=-100"));
    // Info, listings.
    ok(both.same(Request::head("/packs/ab/ab00")));
    ok(both.same(Request::head("/packs")));
    ok(both.same(Request::head("/")));
    assert_eq!(both.same(Request::head("/packs/ab/cd00")).status, 404);
    for target in ["//", "/packs/", "/packs/ab/", "/archives/", "/emptydir/"] {
        ok(both.same(Request::get(target)));
    }
    assert_eq!(both.same(Request::get("/nope/")).status, 404);
    assert_eq!(both.same(Request::get("/config/config/")).status, 500);
    // Names borgstore refuses, and names that only look odd.
    for target in [
        "/Config",
        "/a..b",
        "/x.tmp",
        "/quota.hid",
        "/a%20b",
        "/a\\b",
        "/%2e%2e",
        "/packs/ab/../ab/ab00",
    ] {
        both.same(Request::get(target));
        both.same(Request::head(target));
    }
    // Soft delete and back, hashes, deletes.
    ok(both.same(Request::post(
        "/?cmd=move&current=archives%2F11&new=archives%2F11.del",
    )));
    ok(both.same(Request::get("/archives/")));
    ok(both.same(Request::post(
        "/?cmd=move&current=archives%2F11.del&new=archives%2F11",
    )));
    assert_eq!(
        both.same(Request::post(
            "/?cmd=move&current=archives%2F99&new=archives%2F99.del"
        ))
        .status,
        404
    );
    both.same(Request::post("/?cmd=move&current=archives%2F11"));
    for algorithm in ["sha256", "blake3", "nonesuch"] {
        both.same(Request::post(format!(
            "/packs/ab/ab00?cmd=hash&algorithm={algorithm}"
        )));
    }
    ok(both.same(Request::post("/packs/ab/ab00?cmd=hash")));
    both.same(Request::post("/?cmd=hash"));
    ok(both.same(Request::post("/?cmd=quota")));
    assert_eq!(both.same(Request::delete("/config/x")).status, 404);
    assert_eq!(both.same(Request::delete("/archives/99")).status, 404);
    ok(both.same(Request::delete("/archives/11")));
    both.same(Request::delete("/"));
    both.same(Request::post("/"));
    ok(both.same(Request::delete("/emptydir?cmd=rmdir")));
    assert_eq!(
        both.same(Request::delete("/emptydir?cmd=rmdir")).status,
        404
    );
    // Framing-level refusals that keep the session going.
    assert_eq!(
        both.same(Request::get("/config/config").without_header("Accept"))
            .status,
        406
    );
    assert_eq!(
        both.same(Request::get("/config/config").header("Accept", "text/html"))
            .status,
        200,
        "the first Accept counts"
    );
    assert_eq!(both.same(Request::new("PUT", "/config/config")).status, 501);
    ok(both.same(Request::get("/config/config")));
    // The end of the store.
    ok(both.same(Request::delete("/?cmd=destroy")));
    assert_eq!(both.same(Request::get("/config/config")).status, 410);
    assert_eq!(both.same(Request::delete("/?cmd=destroy")).status, 410);
    ok(both.same(Request::post("/?cmd=create")));
    let SideBySide { ours, theirs, .. } = both;
    assert_eq!(ours.finish().code(), Some(0));
    assert_eq!(theirs.finish().code(), Some(0));
}

fn engine(store: &Path, extra: &[&str]) -> RestServer {
    let mut server = RestServer::engine(store, extra);
    assert_eq!(server.request(&Request::post("/?cmd=create")).status, 200);
    server
}

#[test]
fn gather_defrag_blake3_and_quota_work_on_the_wire() {
    let dir = support::temp_dir("rest-b25");
    let mut server = engine(&dir.path().join("repo"), &["--storage-quota", "10M"]);
    assert_eq!(
        server
            .request(&Request::store("packs/ab/ab00", b"0123456789"))
            .status,
        200
    );
    let gathered = server.request(
        &Request::post("/?cmd=gather")
            .body(br#"[["packs/ab/ab00", 0, 3], ["packs/ab/ab00", -3, 3]]"#),
    );
    assert_eq!(
        (gathered.status, gathered.body.as_slice()),
        (200, &b"012789"[..])
    );
    assert_eq!(
        gathered.header("content-type"),
        Some("application/octet-stream")
    );
    let short =
        server.request(&Request::post("/?cmd=gather").body(br#"[["packs/ab/ab00", 9, 5]]"#));
    assert_eq!(short.status, 416);
    let defrag = server.request(
        &Request::post("/?cmd=defrag&algorithm=blake3&namespace=packs&levels=1")
            .body(br#"[["packs/ab/ab00", 0, 5]]"#),
    );
    let hash = blake3::hash(b"01234").to_hex().to_string();
    assert_eq!(defrag.status, 200);
    assert_eq!(defrag.text(), format!("packs/{}/{hash}", &hash[..2]));
    let check = server.request(&Request::post(format!(
        "/{}?cmd=hash&algorithm=blake3",
        defrag.text()
    )));
    assert_eq!(check.text(), hash);
    let quota = server.request(&Request::post("/?cmd=quota"));
    assert_eq!(quota.text(), r#"{"limit": 10000000, "usage": 15}"#);
    let big = vec![7u8; 10_000_000];
    let refused = server.request(&Request::store("packs/ab/big", &big));
    assert_eq!(refused.status, 507);
    assert_eq!(refused.reason, "Quota exceeded: 10000015 > 10000000");
    assert_eq!(server.request(&Request::head("/packs/ab/big")).status, 404);
    assert_eq!(server.finish().code(), Some(0));
    assert_eq!(
        fs::read_to_string(dir.path().join("repo/quota.hid")).unwrap(),
        "15"
    );
}

#[test]
fn a_malformed_head_is_answered_once_and_ends_the_session() {
    let dir = support::temp_dir("rest-malformed");
    for (bytes, status) in [
        (&b"GARBAGE\x01\x02 / HTTP/1.1\r\n\r\n"[..], 400),
        (b"GET / HTTP/9.9\r\n\r\n", 400),
        (
            b"POST /config/x HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
            400,
        ),
        (
            b"POST /config/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            501,
        ),
    ] {
        let mut server = engine(&dir.path().join("repo"), &[]);
        server.send_raw(bytes);
        let response = server.read_response(false).expect("one answer");
        assert_eq!(response.status, status, "{bytes:?}");
        assert!(server.read_response(false).is_none(), "then the end");
        assert_eq!(
            server.wait(Duration::from_secs(30)).and_then(|s| s.code()),
            Some(2)
        );
    }
    let mut server = engine(&dir.path().join("repo"), &[]);
    let mut huge = b"GET /".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 70 * 1024));
    server.send_raw(&huge);
    assert_eq!(server.read_response(false).unwrap().status, 431);
    assert_eq!(
        server.wait(Duration::from_secs(30)).and_then(|s| s.code()),
        Some(2)
    );
    assert!(dir.path().join("repo").read_dir().unwrap().next().is_none());
}

/// Peak resident memory of a live process, from /proc.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_huge_declared_length_costs_no_memory_and_a_short_body_stores_nothing() {
    let dir = support::temp_dir("rest-huge");
    engine(&dir.path().join("repo"), &[]).finish();
    let mut server = RestServer::engine(&dir.path().join("repo"), &["--permissions", "read-only"]);
    // A refused store must still be read to its end: 256 MiB of a declared petabyte.
    server.send_raw(
        b"POST /packs/ab/huge HTTP/1.1\r\nAccept: application/vnd.x.borgstore.rest.v1\r\n\
          Content-Length: 1000000000000000\r\n\r\n",
    );
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..256 {
        server.send_raw(&chunk);
    }
    let peak = peak_rss_kib(server.pid());
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
    server.close_input();
    assert!(
        server.read_response(false).is_none(),
        "no answer to a request that never ended"
    );
    assert_eq!(
        server.wait(Duration::from_secs(30)).and_then(|s| s.code()),
        Some(0)
    );
    // A store whose body ends early leaves no object and no temp file.
    let mut server = engine(&dir.path().join("repo2"), &[]);
    server.send_raw(
        b"POST /config/x HTTP/1.1\r\nAccept: application/vnd.x.borgstore.rest.v1\r\n\
          Content-Length: 100\r\n\r\nonly this",
    );
    server.close_input();
    assert!(server.read_response(false).is_none());
    assert_eq!(
        server.wait(Duration::from_secs(30)).and_then(|s| s.code()),
        Some(0)
    );
    let config = dir.path().join("repo2/config");
    let left: Vec<_> = fs::read_dir(&config)
        .map(|d| d.count())
        .into_iter()
        .collect();
    assert!(left.is_empty() || left == [0], "{left:?}");
}

#[test]
fn names_cannot_reach_outside_the_store() {
    let dir = support::temp_dir("rest-traversal");
    fs::write(dir.path().join("secret"), b"secret").unwrap();
    let mut server = engine(&dir.path().join("repo"), &[]);
    assert_eq!(
        server.request(&Request::store("config/x", b"x")).status,
        200
    );
    for request in [
        Request::get("/../secret"),
        Request::get("/config/../../secret"),
        Request::head("/.."),
        Request::store("../escape", b"x"),
        Request::store("config/../../escape", b"x"),
        Request::post("/?cmd=move&current=config%2Fx&new=..%2Fescape"),
        Request::post("/?cmd=move&current=..%2Fsecret&new=config%2Fstolen"),
        Request::post("/?cmd=gather").body(br#"[["../secret", 0, 6]]"#),
        Request::post("/?cmd=defrag&algorithm=sha256&namespace=..%2F..")
            .body(br#"[["config/x", 0, 1]]"#),
        Request::post("/?cmd=defrag&target=%2Ftmp%2Fescape").body(br#"[["config/x", 0, 1]]"#),
        Request::post("/../x?cmd=mkdir"),
        Request::delete("/../secret"),
    ] {
        let response = server.request(&request);
        assert!(
            matches!(response.status, 400 | 403),
            "{request:?}: {response:?}"
        );
    }
    // Percent-encoding is not decoded in paths: "%2e%2e" is an ordinary (missing) name.
    assert_eq!(server.request(&Request::get("/%2e%2e/secret")).status, 404);
    assert_eq!(fs::read(dir.path().join("secret")).unwrap(), b"secret");
    let entries: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries.len(), 2, "{entries:?}");
}

#[test]
fn symbolic_links_in_the_store_are_not_followed() {
    let dir = support::temp_dir("rest-symlinks");
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), b"secret").unwrap();
    let repo = dir.path().join("repo");
    let mut server = engine(&repo, &[]);
    std::os::unix::fs::symlink(&outside, repo.join("packs")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret"), repo.join("config")).unwrap();
    for request in [
        Request::get("/packs/secret"),
        Request::get("/config"),
        Request::get("/packs/"),
        Request::store("packs/new", b"x"),
        Request::delete("/packs/secret"),
        Request::post("/config?cmd=hash"),
    ] {
        let response = server.request(&request);
        assert_eq!(response.status, 500, "{request:?}: {response:?}");
        assert_ne!(response.body, b"secret");
    }
    let listing = server.request(&Request::get("//"));
    assert_eq!(listing.text(), "[]", "links are not listed");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
    assert_eq!(fs::read(outside.join("secret")).unwrap(), b"secret");
}

#[test]
fn a_hundred_thousand_pipelined_requests_are_all_answered_in_order() {
    let dir = support::temp_dir("rest-pipelined");
    let mut server = engine(&dir.path().join("repo"), &[]);
    assert_eq!(
        server
            .request(&Request::store("config/config", b"x"))
            .status,
        200
    );
    const COUNT: usize = 100_000;
    let info = Request::head("/config/config").bytes();
    let missing = Request::head("/config/nope").bytes();
    let mut batch = Vec::new();
    for index in 0..COUNT {
        batch.extend_from_slice(if index % 2 == 0 { &info } else { &missing });
    }
    let mut input = server.take_input();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        input.write_all(&batch).unwrap();
        input
    });
    let started = Instant::now();
    for index in 0..COUNT {
        let response = server.read_response(true).expect("a response");
        let expected = if index % 2 == 0 { 200 } else { 404 };
        assert_eq!(response.status, expected, "response {index}");
    }
    let elapsed = started.elapsed();
    drop(writer.join().unwrap());
    assert_eq!(
        server.wait(Duration::from_secs(30)).and_then(|s| s.code()),
        Some(0)
    );
    eprintln!("{COUNT} pipelined requests answered in {elapsed:?}");
}
