//! The integrity readers: any `integrity.N` bytes, and any per-file JSON record in it, give
//! data or a clean error; verification against arbitrary data never panics.
#![no_main]

use std::path::Path;

use borg_gate::engine::borg1::repository::integrity::{
    IntegrityFile, Verification, decode_integrity_file, parse_integrity_json, verify_hints,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let path = Path::new("/repo/hints.1");
    if let Ok(text) = std::str::from_utf8(bytes) {
        check_record(path, text, bytes);
    }
    match decode_integrity_file(bytes) {
        Ok(IntegrityFile::Version2 { hints, index }) => {
            for record in [hints, index].into_iter().flatten() {
                check_record(path, &record, bytes);
            }
        }
        Ok(IntegrityFile::UnknownVersion(_)) => {}
        Err(error) => {
            let _ = error.to_string();
        }
    }
});

fn check_record(path: &Path, json: &str, data: &[u8]) {
    match parse_integrity_json(path, json) {
        Ok(Verification::Verify(expected)) => {
            let _ = expected.to_json();
            let _ = verify_hints(expected, path, data);
        }
        Ok(Verification::UnknownAlgorithm(_)) => {}
        Err(error) => {
            let _ = error.to_string();
        }
    }
}
