//! The hints reader: any `hints.N` bytes give hints or a clean error; decoded current hints
//! encode and decode to the same value.
#![no_main]

use borg_gate::engine::borg1::repository::hints::{DecodedHints, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    match decode(bytes) {
        Ok(DecodedHints::Current(hints)) => {
            let encoded = hints.encode();
            match decode(&encoded) {
                Ok(DecodedHints::Current(again)) => assert_eq!(again, hints),
                other => panic!("re-decoding our own hints gave {other:?}"),
            }
        }
        Ok(DecodedHints::Legacy { .. }) => {}
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
