//! Request dispatch: any byte stream sent to `borg-gate serve` against a copy of a real
//! repository ends cleanly (no panic), and the server's replies are well-formed msgpack.
#![no_main]

#[path = "common.rs"]
mod common;

use borg_gate::engine::borg1::server::Ending;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Some((&flags, stream)) = bytes.split_first() else {
        return;
    };
    let root = common::work_dir().join("root");
    let _ = std::fs::remove_dir_all(&root);
    common::fresh_repo(&root.join("repo"));
    let mut extra = vec!["--max-lock-wait", "0"];
    if flags & 1 != 0 {
        extra.push("--append-only");
    }
    if flags & 2 != 0 {
        extra.extend(["--permissions", "read-only"]);
    }
    if flags & 4 != 0 {
        extra.extend(["--storage-quota", "20M"]);
    }
    let (ending, replies) = common::serve_bytes(&root, &extra, stream);
    match ending {
        Ending::ClientClosed | Ending::BadInput { .. } => {}
        other => panic!("unexpected ending {other:?}"),
    }
    // Every reply is one complete msgpack value.
    let mut reader = borg_gate::engine::borg1::msgpack::Cursor::new(&replies);
    while reader.position() < replies.len() {
        reader
            .skip_value()
            .expect("the server writes valid msgpack");
    }
});
