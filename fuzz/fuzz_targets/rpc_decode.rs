//! The msgpack RPC decoder: for any byte stream, delivered in any read sizes, the reader yields
//! requests or one clean error, never a panic, and its buffer stays within the message limit.
#![no_main]

use std::io::{self, Read};

use borg_gate::engine::borg1::rpc::RequestReader;
use libfuzzer_sys::fuzz_target;

/// Delivers the input in reads of at most `chunk` bytes.
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

const ARG_NAMES: [&str; 24] = [
    "path",
    "create",
    "lock_wait",
    "lock",
    "exclusive",
    "append_only",
    "make_parent_dirs",
    "v1_or_v2",
    "id",
    "data",
    "limit",
    "marker",
    "repair",
    "save_space",
    "max_duration",
    "compact",
    "threshold",
    "cleanup_commits",
    "keydata",
    "next_unreserved",
    "start_nonce",
    "kind",
    "client_data",
    "wait",
];

fuzz_target!(|bytes: &[u8]| {
    let Some((&first, stream)) = bytes.split_first() else {
        return;
    };
    let chunk = match first % 4 {
        0 => 1,
        1 => 7,
        2 => 4096,
        _ => usize::MAX,
    };
    let mut reader = RequestReader::new(Trickle {
        data: stream,
        chunk,
    });
    let mut requests = 0usize;
    loop {
        let _ = reader.has_buffered_request();
        match reader.next_request() {
            Ok(Some(request)) => {
                requests += 1;
                let args = &request.args;
                let _ = request.method.name();
                let _ = args.client_data();
                let _ = args.len();
                for name in ARG_NAMES {
                    let _ = args.get(name);
                    let _ = args.contains(name);
                    let _ = args.bytes(name);
                    let _ = args.opt_bytes(name);
                    let _ = args.bool_or(name, true);
                    let _ = args.opt_bool(name);
                    let _ = args.int(name);
                    let _ = args.opt_int(name);
                    let _ = args.opt_uint(name);
                    let _ = args.float_or(name, 0.5);
                    let _ = args.opt_float(name);
                }
            }
            Ok(None) => break,
            Err(error) => {
                let _ = error.to_string();
                let _ = error.borg_log_message("1.4.5");
                let _ = error.exit_code(true);
                break;
            }
        }
        assert!(requests <= stream.len(), "more requests than bytes");
    }
});
