//! borgstore's name rules: for any string, validation never panics; a valid name opens only
//! components inside the store (no `..`, no `/`, nothing empty), nests to a name that is
//! still inside it, and every permission mode decides it without panicking. Range headers
//! and gather sources made from the same bytes parse without panicking too.
#![no_main]

use borg_gate::engine::borg2::names::{components, nest, validate_name};
use borg_gate::engine::borg2::permissions::{Mode, Required};
use borg_gate::engine::borg2::range::{parse_range, span};
use borg_gate::engine::borg2::sources::parse_sources;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Some((&levels, rest)) = bytes.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let name = text.as_ref();
    match validate_name(name) {
        Ok(()) => {
            for part in components(name) {
                assert!(!part.is_empty() && part != "." && part != "..");
                assert!(!part.contains('/') && !part.contains('\0'));
            }
            assert!(!name.contains(".."));
            let nested = nest(name, usize::from(levels % 4));
            assert!(!nested.starts_with('/'));
            for part in components(&nested) {
                assert!(part != "..");
            }
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
    for mode in ["all", "no-delete", "write-only", "read-only"] {
        let mode = Mode::from_name(mode).unwrap();
        for required in [
            Required::LIST,
            Required::READ,
            Required::WRITE_NEW,
            Required::OVERWRITE,
            Required::DELETE,
        ] {
            if let Err(denied) = mode.check(name, required) {
                assert!(denied.to_string().starts_with("One of permissions '"));
            }
        }
    }
    let range = parse_range(name);
    if let Some((start, length)) = span(range, u64::from(levels) * 1000) {
        assert!(start + length <= u64::from(levels) * 1000);
    }
    let _ = parse_sources(rest);
});
