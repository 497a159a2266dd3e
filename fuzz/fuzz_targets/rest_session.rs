//! A borg 2 session: any byte stream served against a fresh store ends cleanly (no panic),
//! every response is well-formed HTTP with a Content-Length that matches its body, and
//! nothing is written outside the store's directory.
#![no_main]

#[path = "common.rs"]
mod common;

use borg_gate::engine::borg2::head::Method;
use borg_gate::engine::borg2::locks::ReleasePolicy;
use borg_gate::engine::borg2::permissions::Mode;
use borg_gate::engine::borg2::posixfs::PosixFs;
use borg_gate::engine::borg2::service::{Service, ServiceConfig};
use borg_gate::engine::borg2::session;
use borg_gate::engine::borg2::wire::{RequestReader, ResponseWriter};
use borg_gate::engine::session::{SessionClock, Watch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Some((&flags, stream)) = bytes.split_first() else {
        return;
    };
    let root = common::work_dir().join("rest");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let store = root.join("store");
    let mode = match flags % 4 {
        0 => Mode::All,
        1 => Mode::NoDelete,
        2 => Mode::WriteOnly,
        _ => Mode::ReadOnly,
    };
    let mut service = Service::new(
        PosixFs::new(store.clone(), false),
        ServiceConfig {
            mode,
            quota_limit: (flags & 4 != 0).then_some(1 << 20),
            release: ReleasePolicy::Release,
            fence: std::time::Duration::from_secs(60),
        },
    );
    let mut watch = Watch::new(
        std::fs::File::open("/dev/null").unwrap(),
        None,
        SessionClock::new(None, None, None),
    );
    let mut reader = RequestReader::new(stream);
    let mut writer = ResponseWriter::new(Vec::new());
    let ending = session::run(&mut service, &mut watch, &mut reader, &mut writer);
    let _ = ending.exit_code();
    service.finish();
    writer.flush().unwrap();
    // Every response: a status line, headers, Content-Length, and that many body bytes
    // unless it answers a HEAD (the same parser, run again, says which requests were HEAD).
    let mut methods = Vec::new();
    let mut again = RequestReader::new(stream);
    while let Ok(Some(head)) = again.next_head() {
        methods.push(head.method == Method::Head);
        if again.body(head.body_length).finish().is_err() {
            break;
        }
    }
    let mut out = writer.get_ref().as_slice();
    let mut index = 0;
    while !out.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        let head = match response.parse(out) {
            Ok(httparse::Status::Complete(head)) => head,
            other => panic!("malformed response {index}: {other:?}"),
        };
        let length: usize = response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
            .expect("Content-Length on every response");
        let is_head = methods.get(index).copied().unwrap_or(false);
        let body = if is_head { 0 } else { length };
        assert!(out.len() >= head + body, "response {index} is cut short");
        out = &out[head + body..];
        index += 1;
    }
    // Nothing outside the store.
    for entry in std::fs::read_dir(&root).unwrap() {
        assert_eq!(entry.unwrap().file_name(), "store");
    }
});
