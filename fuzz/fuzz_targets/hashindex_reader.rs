//! The hashindex reader: any `index.N` bytes give an index or a clean error, never a panic or
//! an allocation beyond the file's size; a structurally sound index behaves like a map.
#![no_main]

use borg_gate::engine::borg1::repository::hashindex::NsIndex;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(mut index) = NsIndex::read_from(bytes, bytes.len() as u64) else {
        return;
    };
    // borg's reader does not check that every entry is reachable from its home bucket, and
    // neither does ours (a damaged index is caught by its integrity digest, or by `check`):
    // such an index must still work without panicking, but only a sound one is a map.
    let sound = index.check_structure().is_ok();
    let entries: Vec<([u8; 32], u32, u32)> = index
        .iter()
        .map(|(key, segment, offset)| (*key, segment, offset))
        .collect();
    assert_eq!(entries.len(), index.len());
    for (key, segment, offset) in &entries {
        let found = index.get(key);
        if sound {
            assert_eq!(found, Some((*segment, *offset)));
        }
    }
    let mut written = Vec::new();
    index.write_to(&mut written).expect("write to memory");
    let reread = NsIndex::read_from(&written[..], written.len() as u64).expect("round trip");
    assert_eq!(reread.len(), index.len());
    // Edits after loading keep a sound table sound, and never panic on an unsound one.
    for (key, _, _) in entries.iter().take(16) {
        index.remove(key);
        if sound {
            assert!(!index.contains(key));
        }
    }
    for n in 0..16u8 {
        let _ = index.insert(&[n; 32], u32::from(n), 8);
    }
    if sound {
        index.check_structure().expect("still sound after edits");
    }
    let _ = index.compacted();
});
