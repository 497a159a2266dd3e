//! Tests of the segment entry codec and the segment reader, including borg 1.4.5's own
//! reading of what we write.

use super::*;
use crate::test_support::run_python_args;
use proptest::prelude::*;

fn id(byte: u8) -> ObjectId {
    [byte; 32]
}

fn put_entry(key: &ObjectId, data: &[u8]) -> Vec<u8> {
    let mut entry = put_header(key, data).unwrap().to_vec();
    entry.extend_from_slice(data);
    entry
}

fn segment_bytes(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = MAGIC.to_vec();
    for entry in entries {
        bytes.extend_from_slice(entry);
    }
    bytes
}

fn temp_file(bytes: &[u8]) -> (tempfile::TempDir, PathBuf, File) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("5");
    std::fs::write(&path, bytes).unwrap();
    let file = File::open(&path).unwrap();
    (dir, path, file)
}

#[derive(Debug, PartialEq)]
struct Owned {
    kind: EntryKind,
    offset: u32,
    size: u32,
    data: Vec<u8>,
}

fn collect(file: &File, start: u32, mode: ReadMode) -> Result<Vec<Owned>, SegmentError> {
    let mut reader = SegmentEntries::new(file, 5, start, mode);
    let mut out = Vec::new();
    while let Some(entry) = reader.next_entry()? {
        out.push(Owned {
            kind: entry.kind,
            offset: entry.offset,
            size: entry.size,
            data: entry.data.to_vec(),
        });
    }
    Ok(out)
}

fn integrity(result: Result<Vec<Owned>, SegmentError>) -> IntegrityError {
    match result {
        Err(SegmentError::Integrity(err)) => err,
        other => panic!("expected an integrity error, got {other:?}"),
    }
}

#[test]
fn commit_entry_is_crc_of_its_header() {
    assert_eq!(
        entry_crc(&COMMIT_ENTRY[4..]).to_le_bytes(),
        COMMIT_ENTRY[..4]
    );
    assert_eq!(MAX_SEGMENT_SIZE_LIMIT, 4_273_995_776);
}

#[test]
fn put_header_matches_crc_of_concatenation() {
    let data = b"some payload";
    let header = put_header(&id(7), data).unwrap();
    let mut whole = header[4..].to_vec();
    whole.extend_from_slice(data);
    assert_eq!(
        u32::from_le_bytes(header[..4].try_into().unwrap()),
        crc32fast::hash(&whole)
    );
    assert_eq!(
        u32::from_le_bytes(header[4..8].try_into().unwrap()),
        41 + data.len() as u32
    );
    assert_eq!(header[8], 0);
    assert_eq!(&header[9..], &id(7));
}

#[test]
fn delete_entry_has_size_41_and_tag_1() {
    let entry = delete_entry(&id(3));
    assert_eq!(&entry[4..9], &[41, 0, 0, 0, 1]);
    assert_eq!(
        u32::from_le_bytes(entry[..4].try_into().unwrap()),
        crc32fast::hash(&entry[4..])
    );
}

#[test]
fn rejects_put_data_above_the_limit() {
    assert!(put_entry_size(MAX_DATA_SIZE).is_ok());
    let err = put_header(&id(1), &vec![0; MAX_DATA_SIZE + 1]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "More than allowed put data [20971480 > 20971479]"
    );
}

#[test]
fn reads_back_what_was_written_in_every_mode() {
    let bytes = segment_bytes(&[
        put_entry(&id(1), b"first"),
        delete_entry(&id(2)).to_vec(),
        put_entry(&id(3), &[]),
        COMMIT_ENTRY.to_vec(),
    ]);
    let (_dir, _path, file) = temp_file(&bytes);
    let with_data = collect(&file, 0, ReadMode::WithData).unwrap();
    assert_eq!(
        with_data,
        vec![
            Owned {
                kind: EntryKind::Put { key: id(1) },
                offset: 8,
                size: 46,
                data: b"first".to_vec()
            },
            Owned {
                kind: EntryKind::Delete { key: id(2) },
                offset: 54,
                size: 41,
                data: vec![]
            },
            Owned {
                kind: EntryKind::Put { key: id(3) },
                offset: 95,
                size: 41,
                data: vec![]
            },
            Owned {
                kind: EntryKind::Commit,
                offset: 136,
                size: 9,
                data: vec![]
            },
        ]
    );
    for mode in [ReadMode::Verified, ReadMode::HeaderOnly] {
        let entries = collect(&file, 0, mode).unwrap();
        let without_data: Vec<Owned> = with_data
            .iter()
            .map(|e| Owned { data: vec![], ..*e })
            .collect();
        assert_eq!(entries, without_data, "{mode:?}");
    }
    assert!(is_committed_file(&file).unwrap());
}

#[test]
fn starts_at_an_offset_without_checking_the_magic() {
    let mut bytes = segment_bytes(&[put_entry(&id(1), b"a"), put_entry(&id(2), b"bb")]);
    bytes[..8].copy_from_slice(b"XXXXXXXX");
    let (_dir, _path, file) = temp_file(&bytes);
    let entries = collect(&file, 50, ReadMode::WithData).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].data, b"bb");
    assert_eq!(
        integrity(collect(&file, 0, ReadMode::HeaderOnly)),
        IntegrityError::BadMagic { segment: 5 }
    );
}

#[test]
fn an_empty_segment_body_yields_nothing() {
    let (_dir, _path, file) = temp_file(MAGIC);
    assert!(collect(&file, 0, ReadMode::WithData).unwrap().is_empty());
    assert!(!is_committed_file(&file).unwrap());
}

#[test]
fn rejects_wrong_or_short_magic() {
    for bytes in [&b""[..], b"BORG_SE", b"ATTICSEG", b"BORG_SEH\x00"] {
        let (_dir, _path, file) = temp_file(bytes);
        let err = integrity(collect(&file, 0, ReadMode::Verified));
        assert_eq!(
            err.to_string(),
            "Invalid segment magic [segment 5, offset 0]"
        );
    }
}

#[test]
fn reports_truncated_header_like_struct_unpack() {
    let mut bytes = segment_bytes(&[put_entry(&id(1), b"x")]);
    bytes.extend_from_slice(&[1, 2, 3]);
    let (_dir, _path, file) = temp_file(&bytes);
    for mode in [ReadMode::WithData, ReadMode::Verified, ReadMode::HeaderOnly] {
        let err = integrity(collect(&file, 0, mode));
        assert_eq!(
            err.to_string(),
            "Invalid segment entry header [segment 5, offset 50]: unpack requires a buffer of 9 bytes"
        );
    }
}

#[test]
fn reports_truncated_body_with_borg_counts() {
    let mut bytes = segment_bytes(&[put_entry(&id(1), b"0123456789")]);
    bytes.truncate(bytes.len() - 4);
    let (_dir, _path, file) = temp_file(&bytes);
    for mode in [ReadMode::WithData, ReadMode::Verified] {
        let err = integrity(collect(&file, 0, mode));
        assert_eq!(
            err.to_string(),
            "Segment entry data short read [segment 5, offset 8]: expected 42, got 38 bytes"
        );
    }
    // borg's header-only read seeks past the end without noticing.
    assert_eq!(collect(&file, 0, ReadMode::HeaderOnly).unwrap().len(), 1);
}

#[test]
fn reports_short_key_in_header_only_mode() {
    let mut bytes = segment_bytes(&[put_entry(&id(1), b"0123456789")]);
    bytes.truncate(8 + 20);
    let (_dir, _path, file) = temp_file(&bytes);
    let err = integrity(collect(&file, 0, ReadMode::HeaderOnly));
    assert_eq!(
        err.to_string(),
        "Segment entry key short read [segment 5, offset 8]: expected 32, got 11 bytes"
    );
}

#[test]
fn reports_flipped_bits_as_checksum_mismatch() {
    let good = segment_bytes(&[put_entry(&id(1), b"payload"), COMMIT_ENTRY.to_vec()]);
    for position in 8..good.len() {
        if (12..16).contains(&position) || (60..64).contains(&position) {
            continue; // size fields: covered by the size tests
        }
        let mut bytes = good.clone();
        bytes[position] ^= 0x10;
        let (_dir, _path, file) = temp_file(&bytes);
        let err = integrity(collect(&file, 0, ReadMode::Verified));
        assert!(
            matches!(
                err,
                IntegrityError::ChecksumMismatch { .. } | IntegrityError::UnacceptableTag { .. }
            ),
            "flip at {position}: {err}"
        );
        assert!(!is_committed_file(&file).unwrap() || position >= good.len() - 9);
    }
}

#[test]
fn reports_sizes_out_of_bounds() {
    for (size, text) in [
        (
            MAX_OBJECT_SIZE as u32 + 1,
            "Invalid segment entry size 20971521 - too big [segment 5, offset 8]",
        ),
        (
            u32::MAX,
            "Invalid segment entry size 4294967295 - too big [segment 5, offset 8]",
        ),
        (
            8,
            "Invalid segment entry size 8 - too small [segment 5, offset 8]",
        ),
        (
            0,
            "Invalid segment entry size 0 - too small [segment 5, offset 8]",
        ),
        (
            40,
            "Invalid segment entry size 40 - too small [segment 5, offset 8]",
        ),
    ] {
        let mut entry = put_entry(&id(1), b"abc");
        entry[4..8].copy_from_slice(&size.to_le_bytes());
        let (_dir, _path, file) = temp_file(&segment_bytes(&[entry]));
        for mode in [ReadMode::WithData, ReadMode::Verified, ReadMode::HeaderOnly] {
            assert_eq!(integrity(collect(&file, 0, mode)).to_string(), text);
        }
    }
}

#[test]
fn rejects_unknown_tags_after_the_crc_check() {
    let mut entry = vec![0u8; 9];
    entry[4..8].copy_from_slice(&9u32.to_le_bytes());
    entry[8] = 7;
    let crc = crc32fast::hash(&entry[4..]);
    entry[..4].copy_from_slice(&crc.to_le_bytes());
    let (_dir, _path, file) = temp_file(&segment_bytes(&[entry]));
    for mode in [ReadMode::WithData, ReadMode::Verified, ReadMode::HeaderOnly] {
        assert_eq!(
            integrity(collect(&file, 0, mode)).to_string(),
            "Invalid segment entry header, did not get acceptable tag [segment 5, offset 8]"
        );
    }
}

#[test]
fn a_reader_is_finished_after_an_error() {
    let mut bytes = segment_bytes(&[put_entry(&id(1), b"x")]);
    bytes.push(0);
    let (_dir, _path, file) = temp_file(&bytes);
    let mut reader = SegmentEntries::new(&file, 5, 0, ReadMode::Verified);
    assert!(reader.next_entry().unwrap().is_some());
    assert!(reader.next_entry().is_err());
    assert!(reader.next_entry().unwrap().is_none());
}

#[test]
fn large_entries_cross_buffer_boundaries_in_every_mode() {
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let max: Vec<u8> = vec![0xab; MAX_DATA_SIZE];
    let mut entries = Vec::new();
    for i in 0..200u8 {
        entries.push(put_entry(&id(i), &vec![i; usize::from(i) * 300]));
    }
    entries.push(put_entry(&id(250), &big));
    entries.push(put_entry(&id(251), &max));
    entries.push(delete_entry(&id(3)).to_vec());
    entries.push(COMMIT_ENTRY.to_vec());
    let bytes = segment_bytes(&entries);
    let (_dir, path, file) = temp_file(&bytes);
    let with_data = collect(&file, 0, ReadMode::WithData).unwrap();
    assert_eq!(with_data.len(), 204);
    assert_eq!(with_data[200].data, big);
    assert_eq!(with_data[201].data, max);
    for (i, entry) in with_data[..200].iter().enumerate() {
        assert_eq!(entry.data, vec![i as u8; i * 300]);
    }
    let mut buf = Vec::new();
    for entry in &with_data[..202] {
        let EntryKind::Put { key } = entry.kind else {
            panic!()
        };
        assert_eq!(
            read_put(&file, 5, entry.offset, &key, &mut buf).unwrap(),
            &entry.data[..]
        );
        assert_eq!(
            entry_size_at(&file, 5, entry.offset, &key).unwrap(),
            entry.size
        );
    }
    for mode in [ReadMode::Verified, ReadMode::HeaderOnly] {
        let entries = collect(&file, 0, mode).unwrap();
        assert_eq!(entries.len(), 204);
        for (a, b) in entries.iter().zip(&with_data) {
            assert_eq!((a.kind, a.offset, a.size), (b.kind, b.offset, b.size));
        }
    }
    assert!(is_committed(&path).unwrap());
}

#[test]
fn read_put_checks_every_field() {
    let bytes = segment_bytes(&[
        put_entry(&id(1), b"data"),
        delete_entry(&id(2)).to_vec(),
        COMMIT_ENTRY.to_vec(),
    ]);
    let (_dir, _path, file) = temp_file(&bytes);
    let mut buf = Vec::new();
    assert_eq!(read_put(&file, 5, 8, &id(1), &mut buf).unwrap(), b"data");
    let err = |result: Result<&[u8], SegmentError>| match result {
        Err(SegmentError::Integrity(err)) => err.to_string(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        err(read_put(&file, 5, 8, &id(9), &mut buf)),
        "Invalid segment entry header, is not for wanted id [segment 5, offset 8]"
    );
    assert_eq!(
        err(read_put(&file, 5, 53, &id(2), &mut buf)),
        "Invalid segment entry header, did not get acceptable tag [segment 5, offset 53]"
    );
    assert_eq!(
        err(read_put(&file, 5, 94, &id(2), &mut buf)),
        "Invalid segment entry header [segment 5, offset 94]: unpack requires a buffer of 41 bytes"
    );
    assert_eq!(
        err(read_put(&file, 5, 1000, &id(2), &mut buf)),
        "Invalid segment entry header [segment 5, offset 1000]: unpack requires a buffer of 41 bytes"
    );
    let mut corrupt = bytes.clone();
    corrupt[50] ^= 1;
    let (_dir2, _path2, file2) = temp_file(&corrupt);
    assert_eq!(
        err(read_put(&file2, 5, 8, &id(1), &mut buf)),
        "Segment entry checksum mismatch [segment 5, offset 8]"
    );
    let short = &bytes[..49];
    let (_dir3, _path3, file3) = temp_file(short);
    assert_eq!(
        err(read_put(&file3, 5, 8, &id(1), &mut buf)),
        "Segment entry data short read [segment 5, offset 8]: expected 4, got 0 bytes"
    );
    assert_eq!(entry_size_at(&file3, 5, 8, &id(1)).unwrap(), 45);
    assert!(entry_size_at(&file, 5, 53, &id(2)).is_err());
}

#[test]
fn read_put_reuses_a_larger_buffer() {
    let bytes = segment_bytes(&[
        put_entry(&id(1), b"long payload here"),
        put_entry(&id(2), b"s"),
    ]);
    let (_dir, _path, file) = temp_file(&bytes);
    let mut buf = Vec::new();
    assert_eq!(
        read_put(&file, 5, 8, &id(1), &mut buf).unwrap(),
        b"long payload here"
    );
    assert_eq!(read_put(&file, 5, 66, &id(2), &mut buf).unwrap(), b"s");
    assert_eq!(buf.len(), 17);
}

#[test]
fn commit_detection_follows_section_5_2() {
    let put = put_entry(&id(1), b"x");
    let cases: Vec<(Vec<u8>, bool)> = vec![
        (segment_bytes(&[COMMIT_ENTRY.to_vec()]), true),
        (segment_bytes(&[put.clone(), COMMIT_ENTRY.to_vec()]), true),
        (
            segment_bytes(&[put.clone(), COMMIT_ENTRY.to_vec(), COMMIT_ENTRY.to_vec()]),
            true,
        ),
        (segment_bytes(std::slice::from_ref(&put)), false),
        (
            segment_bytes(&[COMMIT_ENTRY.to_vec(), put.clone(), COMMIT_ENTRY.to_vec()]),
            false,
        ),
        (
            segment_bytes(&[
                COMMIT_ENTRY.to_vec(),
                delete_entry(&id(1)).to_vec(),
                COMMIT_ENTRY.to_vec(),
            ]),
            false,
        ),
        (COMMIT_ENTRY.to_vec(), false),
        (
            b"ATTICSEG".iter().copied().chain(COMMIT_ENTRY).collect(),
            false,
        ),
        (Vec::new(), false),
        (MAGIC[..5].to_vec(), false),
    ];
    for (bytes, committed) in cases {
        let (_dir, path, _file) = temp_file(&bytes);
        assert_eq!(is_committed(&path).unwrap(), committed, "{bytes:02x?}");
    }
    let mut corrupt = segment_bytes(&[put_entry(&id(1), b"payload"), COMMIT_ENTRY.to_vec()]);
    corrupt[60] ^= 0xff;
    let (_dir, path, _file) = temp_file(&corrupt);
    assert!(!is_committed(&path).unwrap());
    assert!(is_committed(Path::new("/nonexistent/segment")).is_err());
}

#[test]
fn recovery_keeps_valid_entries_and_drops_garbage() {
    let a = put_entry(&id(1), b"alpha");
    let b = delete_entry(&id(2)).to_vec();
    let mut corrupted_c = put_entry(&id(3), b"gamma");
    corrupted_c[45] ^= 1;
    let mut old = segment_bytes(std::slice::from_ref(&a));
    old.extend_from_slice(b"garbage!");
    old.extend_from_slice(&corrupted_c);
    old.extend_from_slice(&b);
    old.extend_from_slice(&COMMIT_ENTRY);
    old.extend_from_slice(&COMMIT_ENTRY[..5]);
    let recovered = recover_segment(&old);
    assert_eq!(recovered, segment_bytes(&[a, b, COMMIT_ENTRY.to_vec()]));
    assert_eq!(recover_segment(&old[..16]), MAGIC.to_vec());
    assert_eq!(recover_segment(&[]), MAGIC.to_vec());
    assert_eq!(
        recover_segment(&segment_bytes(&[COMMIT_ENTRY.to_vec()])),
        segment_bytes(&[COMMIT_ENTRY.to_vec()])
    );
}

#[test]
fn streaming_recovery_equals_the_pure_one_across_window_boundaries() {
    // Random payloads: runs of 0x00/0x01 would read as plausible 16 MiB entries at every byte and make
    // the (borg-identical, quadratic) scan crawl.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut old = MAGIC.to_vec();
    let mut counter = 0u8;
    while old.len() < 2 * MAX_OBJECT_SIZE + MAX_OBJECT_SIZE / 2 {
        counter = counter.wrapping_add(1);
        let torn = counter % 5 == 0;
        let len = (next() % if torn { 2000 } else { 3 << 20 }) as usize;
        let payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let entry = put_entry(&id(counter), &payload);
        old.extend_from_slice(if torn {
            &entry[..entry.len() / 2]
        } else {
            &entry
        });
        old.extend_from_slice(&COMMIT_ENTRY);
    }
    let (_dir, _path, file) = temp_file(&old);
    let mut streamed = Vec::new();
    recover_segment_file(&file, &mut streamed).unwrap();
    assert_eq!(streamed, recover_segment(&old));
}

#[test]
fn recovery_agrees_with_borg_python() {
    let Some(python) = real_borg::python() else {
        return;
    };
    let mut old = segment_bytes(&[put_entry(&id(1), b"one"), delete_entry(&id(2)).to_vec()]);
    old.extend_from_slice(&[0x55; 13]);
    old.extend_from_slice(&put_entry(&id(4), b"four")[..30]);
    let mut bad_tag = vec![0u8; 9];
    bad_tag[4] = 9;
    bad_tag[8] = 16;
    let crc = crc32fast::hash(&bad_tag[4..]);
    bad_tag[..4].copy_from_slice(&crc.to_le_bytes());
    old.extend_from_slice(&bad_tag);
    old.extend_from_slice(&COMMIT_ENTRY);
    let script = r#"
import sys, os, tempfile
from borg.logger import setup_logging
setup_logging()
from borg.repository import LoggedIO
data = sys.stdin.buffer.read()
d = tempfile.mkdtemp()
p = os.path.join(d, 'seg')
open(p, 'wb').write(data)
io = LoggedIO(d, 1000, 1000)
io.recover_segment(0, p)
sys.stdout.write(open(p, 'rb').read().hex())
"#;
    let expected = real_borg::run_python(&python, script, &old);
    let ours: String = recover_segment(&old)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(ours, expected);
}

#[test]
fn segment_paths_use_the_directory_number() {
    let spd = NonZeroU32::new(1000).unwrap();
    assert_eq!(
        segment_path(Path::new("/r"), 0, spd),
        PathBuf::from("/r/data/0/0")
    );
    assert_eq!(
        segment_path(Path::new("/r"), 1999, spd),
        PathBuf::from("/r/data/1/1999")
    );
    assert_eq!(
        segment_path(Path::new("/r"), u32::MAX, spd),
        PathBuf::from("/r/data/4294967/4294967295")
    );
}

#[test]
fn lists_segments_numerically_and_ignores_strays() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    let spd = NonZeroU32::new(10).unwrap();
    for (d, files) in [
        ("0", &["0", "2", "9", "10", "007", "x", "3.tmp"][..]),
        ("1", &["10", "19"]),
        ("10", &["100"]),
        ("2", &[]),
    ] {
        std::fs::create_dir_all(repo.join("data").join(d)).unwrap();
        for f in files {
            std::fs::write(repo.join("data").join(d).join(f), b"BORG_SEG").unwrap();
        }
    }
    std::fs::create_dir_all(repo.join("data/00")).unwrap();
    std::fs::write(repo.join("data/00/1"), b"").unwrap();
    std::fs::write(repo.join("data/3"), b"not a dir").unwrap();
    std::fs::create_dir_all(repo.join("data/1/11")).unwrap();
    std::fs::write(repo.join("data/0/2"), b"").unwrap();
    let listed = list_segments(repo, spd).unwrap();
    let numbers: Vec<u32> = listed.iter().map(|s| s.segment).collect();
    assert_eq!(numbers, vec![0, 2, 9, 10, 19, 100]);
    assert!(listed[1].is_empty());
    assert_eq!(listed[4].path, repo.join("data/1/19"));
    assert_eq!(
        latest_segment(repo, spd).unwrap().map(|s| s.segment),
        Some(100)
    );
    std::fs::remove_file(repo.join("data/10/100")).unwrap();
    assert_eq!(
        latest_segment(repo, spd).unwrap().map(|s| s.segment),
        Some(19)
    );
    assert!(list_segments(&repo.join("missing"), spd).is_err());
}

#[test]
fn canonical_names_only() {
    assert_eq!(parse_canonical_u32("0"), Some(0));
    assert_eq!(parse_canonical_u32("4294967295"), Some(u32::MAX));
    for bad in ["", "00", "01", "4294967296", "+1", "-1", " 1", "1a", "²"] {
        assert_eq!(parse_canonical_u32(bad), None, "{bad:?}");
    }
}

#[test]
fn reads_every_segment_of_a_real_borg_repository() {
    let Some(made) = real_borg::RealRepository::new("none") else {
        return;
    };
    let (repo, tid) = (&made.path, made.transaction_id());
    let spd = NonZeroU32::new(1000).unwrap();
    let segments = list_segments(repo, spd).unwrap();
    assert!(!segments.is_empty());
    let (mut puts, mut deletes, mut commits) = (0, 0, 0);
    let mut buf = Vec::new();
    let mut reuse = Vec::new();
    let mut committed = Vec::new();
    for segment in &segments {
        let file = File::open(&segment.path).unwrap();
        assert_eq!(read_magic(&file).unwrap(), MAGIC);
        committed.push(format!(
            "{} {}",
            segment.segment,
            is_committed(&segment.path).unwrap()
        ));
        let mut reader =
            SegmentEntries::with_buffer(&file, segment.segment, 0, ReadMode::WithData, reuse);
        let mut positions = Vec::new();
        while let Some(entry) = reader.next_entry().unwrap() {
            match entry.kind {
                EntryKind::Put { key } => {
                    puts += 1;
                    positions.push((key, entry.offset, entry.data.to_vec()));
                }
                EntryKind::Delete { .. } => deletes += 1,
                EntryKind::Commit => commits += 1,
            }
        }
        assert_eq!(reader.offset(), segment.len);
        reuse = reader.into_buffer();
        for (key, offset, data) in positions {
            assert_eq!(
                read_put(&file, segment.segment, offset, &key, &mut buf).unwrap(),
                &data[..]
            );
        }
        let old = std::fs::read(&segment.path).unwrap();
        assert_eq!(
            recover_segment(&old),
            old,
            "an intact segment survives recovery unchanged"
        );
    }
    assert!(puts > 0 && commits > 0);
    assert!(
        deletes > 0,
        "the archive delete must have written DELETE entries"
    );
    let latest = latest_segment(repo, spd).unwrap().unwrap();
    assert_eq!(latest.segment, segments.last().unwrap().segment);
    assert_eq!(latest.segment, tid);
    let Some(python) = real_borg::python() else {
        return;
    };
    let script = r#"
import sys
from borg.repository import LoggedIO
io = LoggedIO(sys.argv[1], 1000, 1000)
for segment, _ in io.segment_iterator():
    print(segment, io.is_committed_segment(segment))
"#;
    let expected = run_python_args(&python, script, [repo])
        .replace("True", "true")
        .replace("False", "false");
    assert_eq!(committed.join("\n") + "\n", expected);
    assert!(
        committed.iter().any(|line| line.ends_with("false")),
        "data segments are not committed"
    );
}

#[test]
fn borg_reads_our_segments() {
    let Some(python) = real_borg::python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg");
    let bytes = segment_bytes(&[
        put_entry(&id(1), b"one"),
        put_entry(&id(2), &vec![9; 100_000]),
        delete_entry(&id(1)).to_vec(),
        COMMIT_ENTRY.to_vec(),
    ]);
    std::fs::write(&path, &bytes).unwrap();
    let script = r#"
import sys, os
from borg.repository import LoggedIO
d = sys.argv[1]
os.makedirs(os.path.join(d, 'data', '0'))
os.rename(os.path.join(d, 'seg'), os.path.join(d, 'data', '0', '0'))
io = LoggedIO(d, 1000, 1000)
print(io.is_committed_segment(0))
for tag, key, offset, data in io.iter_objects(0, include_data=True):
    print(tag, key.hex() if key else None, offset, len(data))
"#;
    let text = run_python_args(&python, script, [dir.path()]);
    let expected = format!(
        "True\n0 {} 8 3\n0 {} 52 100000\n1 {} 100093 0\n2 None 100134 0\n",
        "01".repeat(32),
        "02".repeat(32),
        "01".repeat(32)
    );
    assert_eq!(text, expected);
}

proptest! {
    #[test]
    fn entries_round_trip(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..2000), 0..20)) {
        let entries: Vec<Vec<u8>> = payloads.iter().enumerate().map(|(i, p)| put_entry(&id(i as u8), p)).collect();
        let (_dir, _path, file) = temp_file(&segment_bytes(&entries));
        let read = collect(&file, 0, ReadMode::WithData).unwrap();
        prop_assert_eq!(read.len(), payloads.len());
        for (entry, payload) in read.iter().zip(&payloads) {
            prop_assert_eq!(&entry.data, payload);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut with_magic = MAGIC.to_vec();
        with_magic.extend_from_slice(&bytes);
        let (_dir, _path, file) = temp_file(&with_magic);
        for mode in [ReadMode::WithData, ReadMode::Verified, ReadMode::HeaderOnly] {
            let _ = collect(&file, 0, mode);
        }
        let _ = is_committed_file(&file);
        let recovered = recover_segment(&with_magic);
        prop_assert!(recovered.starts_with(MAGIC));
        let mut buf = Vec::new();
        let _ = read_put(&file, 0, 8, &id(0), &mut buf);
    }

    #[test]
    fn recovery_is_idempotent(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let once = recover_segment(&bytes);
        prop_assert_eq!(recover_segment(&once), once.clone());
    }
}
