//! The segment entry reader: any segment file gives entries or one clean error in every read
//! mode, never a panic; what one mode accepts, the others agree on; recovery keeps only valid
//! entries.
#![no_main]

#[path = "common.rs"]
mod common;

use std::fs::File;
use std::io::Write;

use borg_gate::engine::borg1::repository::segment::{
    EntryKind, ReadMode, SegmentEntries, entry_size_at, is_committed_file, read_put,
    recover_segment,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let path = common::work_dir().join("segment");
    {
        let mut file = File::create(&path).expect("create segment file");
        file.write_all(bytes).expect("write segment file");
    }
    let file = File::open(&path).expect("open segment file");
    let _ = is_committed_file(&file);
    let mut verified = Vec::new();
    for mode in [ReadMode::Verified, ReadMode::WithData, ReadMode::HeaderOnly] {
        let mut entries = SegmentEntries::new(&file, 7, 0, mode);
        let mut seen = Vec::new();
        loop {
            match entries.next_entry() {
                Ok(Some(entry)) => {
                    assert!(
                        u64::from(entry.offset) + u64::from(entry.size) <= bytes.len() as u64
                            || mode == ReadMode::HeaderOnly
                    );
                    if mode == ReadMode::WithData
                        && let EntryKind::Put { .. } = entry.kind
                    {
                        assert_eq!(entry.data.len() + 41, entry.size as usize);
                    }
                    seen.push((entry.kind, entry.offset, entry.size));
                }
                Ok(None) => break,
                Err(error) => {
                    let _ = error.to_string();
                    break;
                }
            }
            // Every entry is at least a header long, so a file cannot hold more of them.
            assert!(seen.len() <= bytes.len() / 9 + 1);
        }
        match mode {
            ReadMode::Verified => verified = seen,
            ReadMode::WithData => assert_eq!(seen, verified, "WithData and Verified disagree"),
            ReadMode::HeaderOnly => assert!(
                seen.len() >= verified.len(),
                "header-only reading stopped before verified reading"
            ),
        }
    }
    // Random access, as `get` does it through the index.
    let mut buf = Vec::new();
    for &(kind, offset, _) in &verified {
        if let EntryKind::Put { key } = kind {
            read_put(&file, 7, offset, &key, &mut buf).expect("a verified put reads back");
            entry_size_at(&file, 7, offset, &key).expect("a verified put has a size");
        }
    }
    for offset in [0u32, 8, 9, 17, 41, u32::MAX] {
        let _ = read_put(&file, 7, offset, &[0u8; 32], &mut buf);
    }
    // Recovery (check --repair) keeps a prefix of magic plus valid entries only.
    let recovered = recover_segment(bytes);
    assert!(recovered.len() <= bytes.len() + 8);
    {
        let mut file = File::create(&path).expect("create segment file");
        file.write_all(&recovered).expect("write recovered");
    }
    let file = File::open(&path).expect("open recovered");
    let mut entries = SegmentEntries::new(&file, 7, 0, ReadMode::WithData);
    while let Some(next) = entries.next_entry().transpose() {
        next.expect("a recovered segment reads cleanly");
    }
});
