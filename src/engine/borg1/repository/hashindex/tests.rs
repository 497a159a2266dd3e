//! Tests of the hashindex codec, including files that borg 1.4.5's own `NSIndex` reads and
//! writes.

use super::*;
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use crate::test_support::run_python_args;

/// Deterministic id source for tests.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn id(&mut self) -> ObjectId {
        let mut id = [0u8; KEY_LEN];
        for chunk in id.chunks_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        id
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

/// An id whose home bucket is `home` in any table larger than `home`; `tag` keeps ids apart.
fn id_with_home(home: u32, tag: u32) -> ObjectId {
    let mut id = [0xA5u8; KEY_LEN];
    id[..4].copy_from_slice(&home.to_le_bytes());
    id[4..8].copy_from_slice(&tag.to_le_bytes());
    id
}

fn random_ids(seed: u64, count: usize) -> Vec<ObjectId> {
    let mut rng = SplitMix(seed);
    (0..count).map(|_| rng.id()).collect()
}

fn bucket_of(index: &NsIndex, id: &ObjectId) -> Option<usize> {
    index.probe(id).found
}

/// (used, deleted, empty) bucket counts.
fn census(index: &NsIndex) -> (usize, usize, usize) {
    let mut counts = (0, 0, 0);
    for bucket in &index.buckets {
        match state_of(bucket) {
            BucketState::Used => counts.0 += 1,
            BucketState::Deleted => counts.1 += 1,
            BucketState::Empty => counts.2 += 1,
        }
    }
    counts
}

fn assert_consistent(index: &NsIndex) {
    let (used, _, empty) = census(index);
    assert_eq!(used, index.len(), "num_entries");
    assert_eq!(empty, index.num_empty, "num_empty");
    assert!(
        index.num_empty >= index.min_empty,
        "fewer empty buckets than min_empty"
    );
    let num_buckets = index.num_buckets();
    assert_eq!(index.lower_limit, lower_limit(num_buckets));
    assert_eq!(index.upper_limit, upper_limit(num_buckets));
    assert_eq!(index.min_empty, min_empty(num_buckets));
    index.check_structure().unwrap();
}

fn file_bytes(index: &NsIndex) -> Vec<u8> {
    let mut bytes = Vec::new();
    index.write_to(&mut bytes).unwrap();
    bytes
}

fn load(bytes: &[u8]) -> Result<NsIndex, IndexReadError> {
    NsIndex::read_from(bytes, bytes.len() as u64)
}

fn used_bucket(id: &ObjectId, segment: u32, offset: u32) -> Bucket {
    let mut bucket = EMPTY_BUCKET;
    fill_bucket(&mut bucket, id, segment, offset);
    bucket
}

fn deleted_bucket(id: &ObjectId) -> Bucket {
    let mut bucket = used_bucket(id, 1, 2);
    mark_deleted(&mut bucket);
    bucket
}

/// An index file with the given header counts and buckets, as an independent writer would.
fn encode(num_entries: i32, num_buckets: i32, buckets: &[Bucket]) -> Vec<u8> {
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&num_entries.to_le_bytes());
    bytes.extend_from_slice(&num_buckets.to_le_bytes());
    bytes.extend_from_slice(&[KEY_LEN as u8, VALUE_LEN as u8]);
    bytes.extend_from_slice(buckets.as_flattened().as_flattened());
    bytes
}

/// Buckets with each id placed at its home bucket (distinct homes required).
fn table_with(num_buckets: usize, used: &[ObjectId], deleted: &[ObjectId]) -> Vec<Bucket> {
    let mut buckets = vec![EMPTY_BUCKET; num_buckets];
    for (n, id) in used.iter().enumerate() {
        buckets[home_bucket(id, num_buckets)] = used_bucket(id, n as u32, 7);
    }
    for id in deleted {
        buckets[home_bucket(id, num_buckets)] = deleted_bucket(id);
    }
    buckets
}

// ---- sizing ----

#[test]
fn limits_match_borg_for_the_first_table_sizes() {
    assert_eq!(
        (lower_limit(1031), upper_limit(1031), min_empty(1031)),
        (0, 773, 73)
    );
    assert_eq!(
        (lower_limit(2053), upper_limit(2053), min_empty(2053)),
        (513, 1539, 144)
    );
    assert_eq!(upper_limit(LARGEST_TABLE), LARGEST_TABLE);
    assert_eq!(lower_limit(97), 0);
    assert_eq!(min_empty(1), 1);
}

#[test]
fn size_steps_follow_the_size_table_and_clamp_at_both_ends() {
    assert_eq!(fit_size(0), 1031);
    assert_eq!(fit_size(1031), 1031);
    assert_eq!(fit_size(1032), 2053);
    assert_eq!(fit_size(usize::MAX), LARGEST_TABLE);
    assert_eq!(grow_size(1031), 2053);
    assert_eq!(
        grow_size(97),
        2053,
        "a size below the table grows past the first size"
    );
    assert_eq!(
        grow_size(5000),
        16411,
        "between sizes: the next size after the fitting one"
    );
    assert_eq!(grow_size(LARGEST_TABLE), LARGEST_TABLE);
    assert_eq!(shrink_size(2053), 1031);
    assert_eq!(shrink_size(1031), 1031);
    assert_eq!(shrink_size(97), 1031);
}

#[test]
fn recommended_size_keeps_entries_below_three_quarters() {
    assert_eq!(recommended_num_buckets(0), 1031);
    assert_eq!(recommended_num_buckets(772), 1031);
    assert_eq!(recommended_num_buckets(773), 2053);
    assert_eq!(recommended_num_buckets(5_000_000), 8410991);
    for entries in [0, 1, 500, 772, 773, 1539, 1540, 100_000, 4_505_900] {
        let buckets = recommended_num_buckets(entries);
        assert!(
            entries as f64 / 0.75 + 1.0 <= buckets as f64,
            "{entries} -> {buckets}"
        );
        assert!(entries <= upper_limit(buckets));
    }
    assert_eq!(recommended_num_buckets(usize::MAX), LARGEST_TABLE);
}

// ---- basic operations ----

#[test]
fn new_index_is_1031_empty_buckets_in_a_41258_byte_file() {
    let index = NsIndex::new();
    assert!(index.is_empty());
    assert_eq!(index.num_buckets(), 1031);
    assert_eq!(index.size_on_disk(), 41258);
    let bytes = file_bytes(&index);
    assert_eq!(bytes.len(), 41258);
    assert_eq!(
        &bytes[..HEADER_LEN],
        b"BORG_IDX\0\0\0\0\x07\x04\0\0\x20\x08"
    );
    let mut expected_bucket = [0u8; 40];
    expected_bucket[32..36].copy_from_slice(&[0xFF; 4]);
    assert!(bytes[HEADER_LEN..].chunks(40).all(|b| b == expected_bucket));
    assert_consistent(&index);
}

#[test]
fn given_an_inserted_id_then_get_and_contains_find_it() {
    let mut index = NsIndex::new();
    let id = [7u8; 32];
    assert_eq!(index.insert(&id, 3, 99).unwrap(), None);
    assert_eq!(index.get(&id), Some((3, 99)));
    assert!(index.contains(&id));
    assert!(!index.contains(&[8u8; 32]));
    assert_eq!(index.get(&[8u8; 32]), None);
    assert_eq!(index.len(), 1);
    assert_consistent(&index);
}

#[test]
fn given_an_existing_id_then_insert_overwrites_and_returns_the_previous_value() {
    let mut index = NsIndex::new();
    let id = [7u8; 32];
    index.insert(&id, 3, 99).unwrap();
    assert_eq!(index.insert(&id, 4, 100).unwrap(), Some((3, 99)));
    assert_eq!(index.get(&id), Some((4, 100)));
    assert_eq!(index.len(), 1);
    assert_eq!(census(&index), (1, 0, 1030), "an overwrite uses no bucket");
}

#[test]
fn given_a_removed_id_then_it_is_gone_and_its_bucket_is_a_tombstone() {
    let mut index = NsIndex::new();
    let id = [7u8; 32];
    index.insert(&id, 3, 99).unwrap();
    let bucket = bucket_of(&index, &id).unwrap();
    assert_eq!(index.remove(&id), Some((3, 99)));
    assert_eq!(index.get(&id), None);
    assert_eq!(index.remove(&id), None);
    assert!(index.is_empty());
    assert_eq!(state_of(&index.buckets[bucket]), BucketState::Deleted);
    assert_eq!(
        key_bytes(&index.buckets[bucket]),
        &id,
        "a tombstone keeps its key bytes, as borg's"
    );
    assert_eq!(offset_word(&index.buckets[bucket]), 99);
    assert_consistent(&index);
}

#[test]
fn rejects_a_segment_in_the_reserved_range_without_changing_the_table() {
    let mut index = NsIndex::new();
    let id = [1u8; 32];
    index.insert(&id, 5, 6).unwrap();
    let before = file_bytes(&index);
    for segment in [MAX_SEGMENT + 1, DELETED_MARKER, EMPTY_MARKER] {
        assert_eq!(
            index.insert(&id, segment, 0),
            Err(IndexError::SegmentOutOfRange { segment })
        );
        assert_eq!(
            index.insert(&[2u8; 32], segment, 0),
            Err(IndexError::SegmentOutOfRange { segment })
        );
    }
    assert_eq!(file_bytes(&index), before);
    assert_eq!(index.insert(&[2u8; 32], MAX_SEGMENT, 0).unwrap(), None);
    assert_eq!(index.get(&[2u8; 32]), Some((MAX_SEGMENT, 0)));
}

#[test]
fn home_bucket_is_the_first_four_bytes_little_endian_modulo_the_size() {
    let mut id = [0u8; 32];
    id[..4].copy_from_slice(&[0x01, 0x02, 0x03, 0x00]);
    assert_eq!(
        home_bucket(&id, 1031),
        200,
        "0x030201 = 197121 = 191 * 1031 + 200"
    );
    id[..4].copy_from_slice(&[0xFF; 4]);
    assert_eq!(
        home_bucket(&id, 1031),
        689,
        "4294967295 = 4165826 * 1031 + 689"
    );
    let mut index = NsIndex::new();
    let id = id_with_home(500, 1);
    index.insert(&id, 1, 1).unwrap();
    assert_eq!(bucket_of(&index, &id), Some(500));
}

#[test]
fn given_ids_sharing_a_home_then_they_fill_the_following_buckets() {
    let mut index = NsIndex::new();
    let ids: Vec<_> = (0..4).map(|tag| id_with_home(100, tag)).collect();
    for (n, id) in ids.iter().enumerate() {
        index.insert(id, n as u32, 0).unwrap();
    }
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(bucket_of(&index, id), Some(100 + n));
        assert_eq!(index.get(id), Some((n as u32, 0)));
    }
    assert_eq!(index.get(&id_with_home(100, 9)), None);
}

#[test]
fn probing_wraps_around_from_the_last_bucket_to_the_first() {
    let mut index = NsIndex::new();
    let ids: Vec<_> = (0..3).map(|tag| id_with_home(1030, tag)).collect();
    for (n, id) in ids.iter().enumerate() {
        index.insert(id, n as u32, 0).unwrap();
    }
    assert_eq!(bucket_of(&index, &ids[0]), Some(1030));
    assert_eq!(bucket_of(&index, &ids[1]), Some(0));
    assert_eq!(bucket_of(&index, &ids[2]), Some(1));
    let order: Vec<_> = index.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(order, vec![ids[1], ids[2], ids[0]]);
    index.remove(&ids[1]);
    assert_eq!(
        index.get(&ids[2]),
        Some((2, 0)),
        "lookup continues past a tombstone"
    );
    assert_eq!(index.get(&id_with_home(1030, 7)), None);
    assert_consistent(&index);
}

#[test]
fn given_a_tombstone_on_the_probe_path_then_a_new_id_reuses_it() {
    let mut index = NsIndex::new();
    let [a, b, c, d] = [0, 1, 2, 3].map(|tag| id_with_home(200, tag));
    for id in [a, b, c] {
        index.insert(&id, 1, 0).unwrap();
    }
    index.remove(&a);
    let empty_before = index.num_empty;
    index.insert(&d, 4, 0).unwrap();
    assert_eq!(bucket_of(&index, &d), Some(200));
    assert_eq!(
        index.num_empty, empty_before,
        "reusing a tombstone takes no empty bucket"
    );
    assert_eq!(census(&index).1, 0);
    assert_consistent(&index);
}

#[test]
fn given_a_hit_after_a_tombstone_then_insert_moves_it_into_the_tombstone() {
    let mut index = NsIndex::new();
    let [a, b, c] = [0, 1, 2].map(|tag| id_with_home(300, tag));
    for id in [a, b, c] {
        index.insert(&id, 1, 0).unwrap();
    }
    index.remove(&a);
    assert_eq!(index.insert(&c, 9, 9).unwrap(), Some((1, 0)));
    assert_eq!(bucket_of(&index, &c), Some(300));
    assert_eq!(state_of(&index.buckets[302]), BucketState::Deleted);
    assert_eq!(key_bytes(&index.buckets[302]), &c);
    assert_eq!(index.get(&b), Some((1, 0)));
    assert_eq!(index.get(&c), Some((9, 9)));
    assert_consistent(&index);
}

#[test]
fn given_a_hit_after_a_tombstone_then_remove_leaves_both_buckets_as_tombstones() {
    let mut index = NsIndex::new();
    let [a, b, c] = [0, 1, 2].map(|tag| id_with_home(300, tag));
    for id in [a, b, c] {
        index.insert(&id, 1, 0).unwrap();
    }
    index.remove(&a);
    assert_eq!(index.remove(&c), Some((1, 0)));
    assert_eq!(state_of(&index.buckets[300]), BucketState::Deleted);
    assert_eq!(
        key_bytes(&index.buckets[300]),
        &c,
        "the moved bucket keeps the removed key"
    );
    assert_eq!(state_of(&index.buckets[302]), BucketState::Deleted);
    assert_eq!(index.get(&b), Some((1, 0)));
    assert_consistent(&index);
}

#[test]
fn get_and_list_never_move_buckets() {
    let mut index = NsIndex::new();
    let [a, b, c] = [0, 1, 2].map(|tag| id_with_home(300, tag));
    for id in [a, b, c] {
        index.insert(&id, 1, 0).unwrap();
    }
    index.remove(&a);
    let before = file_bytes(&index);
    assert!(index.get(&c).is_some());
    assert!(index.contains(&c));
    index.list(Some(1), Some(&c)).unwrap();
    assert_eq!(file_bytes(&index), before);
    assert_eq!(bucket_of(&index, &c), Some(302));
}

#[test]
fn lookup_ends_after_one_full_cycle_when_no_bucket_is_empty() {
    let ids: Vec<_> = (0..7).map(|tag| id_with_home(tag, tag)).collect();
    let mut buckets: Vec<Bucket> = ids.iter().map(|id| used_bucket(id, 1, 1)).collect();
    buckets[3] = deleted_bucket(&ids[3]);
    let mut index = NsIndex {
        num_entries: 6,
        num_empty: 0,
        lower_limit: lower_limit(7),
        upper_limit: upper_limit(7),
        min_empty: min_empty(7),
        buckets,
    };
    assert_eq!(index.get(&id_with_home(5, 99)), None);
    assert_eq!(index.get(&ids[6]), Some((1, 1)));
    let probe = index.probe(&id_with_home(5, 99));
    assert_eq!(
        (probe.found, probe.first_tombstone, probe.end),
        (None, Some(3), 5)
    );
    // 6 entries > upper limit 5: the insert grows the table first.
    assert_eq!(index.insert(&id_with_home(5, 99), 2, 2).unwrap(), None);
    assert_eq!(index.num_buckets(), 2053);
    assert_eq!(index.len(), 7);
    assert_consistent(&index);
}

// ---- growing, shrinking, rebuilding ----

#[test]
fn grows_to_the_next_size_when_inserting_beyond_three_quarters() {
    let ids = random_ids(1, 3076);
    let mut index = NsIndex::new();
    let mut sizes = HashMap::new();
    for (n, id) in ids.iter().enumerate() {
        index.insert(id, n as u32, 0).unwrap();
        sizes.insert(n + 1, index.num_buckets());
    }
    assert_eq!(sizes[&774], 1031);
    assert_eq!(sizes[&775], 2053);
    assert_eq!(sizes[&1540], 2053);
    assert_eq!(sizes[&1541], 4099);
    assert_eq!(sizes[&3075], 4099);
    assert_eq!(sizes[&3076], 8209);
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(index.get(id), Some((n as u32, 0)));
    }
    assert_consistent(&index);
}

#[test]
fn shrinks_to_the_previous_size_when_dropping_below_a_quarter() {
    let ids = random_ids(2, 6200);
    let mut index = NsIndex::new();
    for id in &ids {
        index.insert(id, 1, 2).unwrap();
    }
    assert_eq!(index.num_buckets(), 16411);
    let mut sizes = HashMap::new();
    for (n, id) in ids.iter().enumerate() {
        index.remove(id);
        sizes.insert(ids.len() - n - 1, index.num_buckets());
    }
    assert_eq!(sizes[&4102], 16411);
    assert_eq!(sizes[&4101], 8209, "lower limit of 16411 is 4102");
    assert_eq!(sizes[&2052], 8209);
    assert_eq!(sizes[&2051], 4099);
    assert_eq!(sizes[&1024], 4099);
    assert_eq!(sizes[&1023], 2053);
    assert_eq!(sizes[&513], 2053);
    assert_eq!(sizes[&512], 1031);
    assert_eq!(sizes[&0], 1031, "the smallest table never shrinks");
    assert!(index.is_empty());
    assert_consistent(&index);
}

#[test]
fn given_a_shrink_then_the_rebuilt_table_has_no_tombstones_and_keeps_every_id() {
    let ids = random_ids(3, 775);
    let mut index = NsIndex::new();
    for (n, id) in ids.iter().enumerate() {
        index.insert(id, n as u32, 0).unwrap();
    }
    assert_eq!(index.num_buckets(), 2053);
    for id in &ids[..263] {
        index.remove(id);
    }
    assert_eq!(index.len(), 512);
    assert_eq!(index.num_buckets(), 1031);
    assert_eq!(census(&index), (512, 0, 519));
    for (n, id) in ids.iter().enumerate().skip(263) {
        assert_eq!(index.get(id), Some((n as u32, 0)));
    }
    assert_consistent(&index);
}

#[test]
fn rebuilds_at_the_same_size_when_an_insert_would_leave_too_few_empty_buckets() {
    let mut index = NsIndex::new();
    let first: Vec<_> = (0..700).map(|home| id_with_home(home, 0)).collect();
    for id in &first {
        index.insert(id, 1, 0).unwrap();
    }
    for id in &first[..200] {
        index.remove(id);
    }
    assert_eq!(census(&index), (500, 200, 331));
    // Each id lands in its own empty home bucket: 331 - 258 = 73 = min_empty.
    let second: Vec<_> = (700..958).map(|home| id_with_home(home, 1)).collect();
    for id in &second {
        index.insert(id, 2, 0).unwrap();
    }
    assert_eq!(census(&index), (758, 200, 73));
    let trigger = id_with_home(958, 1);
    index.insert(&trigger, 3, 0).unwrap();
    assert_eq!(index.num_buckets(), 1031, "a same-size rebuild");
    assert_eq!(census(&index), (759, 0, 272));
    for id in first[200..].iter().chain(&second).chain([&trigger]) {
        assert!(index.contains(id));
    }
    assert_consistent(&index);
}

// ---- list ----

fn page_through(index: &NsIndex, limit: usize) -> Vec<ObjectId> {
    let mut all = Vec::new();
    let mut marker = None;
    loop {
        let page = index.list(Some(limit), marker.as_ref()).unwrap();
        assert!(page.len() <= limit);
        let Some(last) = page.last() else {
            break;
        };
        marker = Some(*last);
        all.extend(page);
    }
    all
}

#[test]
fn paging_through_list_returns_every_id_exactly_once_with_tombstones_present() {
    let ids = random_ids(4, 5000);
    let mut index = NsIndex::new();
    for id in &ids {
        index.insert(id, 1, 1).unwrap();
    }
    let mut rng = SplitMix(5);
    let mut removed = HashSet::new();
    while removed.len() < 1500 {
        let id = ids[rng.below(ids.len() as u64) as usize];
        index.remove(&id);
        removed.insert(id);
    }
    assert!(census(&index).1 > 0, "the test needs tombstones");
    let expected: HashSet<_> = ids.iter().filter(|id| !removed.contains(*id)).collect();
    for limit in [1, 7, 100, 100_000] {
        let listed = page_through(&index, limit);
        assert_eq!(listed.len(), index.len());
        let unique: HashSet<_> = listed.iter().collect();
        assert_eq!(unique, expected);
        let in_bucket_order: Vec<_> = index.iter().map(|(id, _, _)| *id).collect();
        assert_eq!(listed, in_bucket_order);
    }
}

/// borg 1.4.5's marker lookup moves the marker into a tombstone earlier in its chain, so its
/// paging repeats ids (first case) or, when the chain wraps, skips the rest (second case).
#[test]
fn paging_past_a_marker_behind_a_tombstone_neither_repeats_nor_skips_ids() {
    let mut index = NsIndex::new();
    for tag in 0..3 {
        index.insert(&id_with_home(100, tag), 1, tag).unwrap();
    }
    index.insert(&id_with_home(0, 9), 1, 9).unwrap();
    index.remove(&id_with_home(100, 0));
    assert_eq!(
        page_through(&index, 3),
        [
            id_with_home(0, 9),
            id_with_home(100, 1),
            id_with_home(100, 2)
        ]
    );

    let mut index = NsIndex::new();
    for tag in 0..3 {
        index.insert(&id_with_home(1030, tag), 1, tag).unwrap();
    }
    for tag in 0..5 {
        index
            .insert(&id_with_home(500 + tag, 20 + tag), 1, tag)
            .unwrap();
    }
    index.remove(&id_with_home(1030, 0));
    let listed = page_through(&index, 1);
    assert_eq!(listed.len(), 7);
    assert_eq!(listed.iter().collect::<HashSet<_>>().len(), 7);
}

#[test]
fn list_starts_right_after_the_marker_bucket() {
    let ids = random_ids(6, 50);
    let mut index = NsIndex::new();
    for id in &ids {
        index.insert(id, 1, 1).unwrap();
    }
    let order: Vec<_> = index.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(index.list(None, None).unwrap(), order);
    assert_eq!(index.list(Some(0), None).unwrap(), Vec::<ObjectId>::new());
    assert_eq!(index.list(Some(3), None).unwrap(), order[..3]);
    assert_eq!(
        index.list(Some(5), Some(&order[10])).unwrap(),
        order[11..16]
    );
    assert_eq!(index.list(None, Some(&order[10])).unwrap(), order[11..]);
    assert!(index.list(None, Some(&order[49])).unwrap().is_empty());
    assert_eq!(index.list(Some(usize::MAX), None).unwrap().len(), 50);
}

#[test]
fn list_rejects_a_marker_that_is_not_in_the_index() {
    let mut index = NsIndex::new();
    let id = [3u8; 32];
    assert_eq!(index.list(None, Some(&id)), Err(MarkerNotFound));
    index.insert(&id, 1, 1).unwrap();
    index.remove(&id);
    assert_eq!(index.list(Some(10), Some(&id)), Err(MarkerNotFound));
    assert_eq!(MarkerNotFound.to_string(), "marker not found");
}

// ---- compaction ----

#[test]
fn compacted_is_tombstone_free_of_the_recommended_size_with_the_same_entries() {
    let ids = random_ids(7, 3000);
    let mut index = NsIndex::new();
    for (n, id) in ids.iter().enumerate() {
        index.insert(id, n as u32, 5).unwrap();
    }
    for id in &ids[..1800] {
        index.remove(id);
    }
    assert!(census(&index).1 > 0);
    let compact = index.compacted().unwrap();
    assert_eq!(compact.num_buckets(), recommended_num_buckets(1200));
    assert_eq!(compact.num_buckets(), 2053);
    assert_eq!(census(&compact), (1200, 0, 853));
    let original: HashMap<_, _> = index.iter().map(|(id, s, o)| (*id, (s, o))).collect();
    let copied: HashMap<_, _> = compact.iter().map(|(id, s, o)| (*id, (s, o))).collect();
    assert_eq!(original, copied);
    assert_consistent(&compact);
    assert_eq!(NsIndex::with_capacity(0).unwrap().num_buckets(), 1031);
}

// ---- file codec ----

#[test]
fn written_file_reads_back_to_the_same_bytes_and_entries() {
    let ids = random_ids(8, 2500);
    let mut index = NsIndex::new();
    for (n, id) in ids.iter().enumerate() {
        index.insert(id, n as u32, (n * 3) as u32).unwrap();
    }
    for id in ids.iter().step_by(3) {
        index.remove(id);
    }
    let bytes = file_bytes(&index);
    assert_eq!(bytes.len() as u64, index.size_on_disk());
    let loaded = load(&bytes).unwrap();
    assert_eq!(file_bytes(&loaded), bytes);
    assert_eq!(loaded.len(), index.len());
    assert_eq!(loaded.num_empty, index.num_empty);
    assert!(loaded.iter().eq(index.iter()));
    assert_consistent(&loaded);
}

#[test]
fn split_header_and_bucket_calls_equal_the_one_call_codec() {
    let mut index = NsIndex::new();
    index.insert(&[9u8; 32], 1, 2).unwrap();
    let mut split = Vec::new();
    index.write_header(&mut split).unwrap();
    assert_eq!(split.len(), HEADER_LEN);
    index.write_buckets(&mut split).unwrap();
    assert_eq!(split, file_bytes(&index));
    let mut reader = &split[..];
    let header = IndexHeader::read_from(&mut reader).unwrap();
    assert_eq!(
        reader.len(),
        split.len() - HEADER_LEN,
        "the header read takes 18 bytes"
    );
    assert_eq!(header, index.header());
    assert_eq!(header.to_bytes(), split[..HEADER_LEN]);
    let loaded = NsIndex::read_buckets(header, reader, split.len() as u64).unwrap();
    assert_eq!(loaded.get(&[9u8; 32]), Some((1, 2)));
}

#[test]
fn read_file_loads_a_written_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.5");
    let mut index = NsIndex::new();
    index.insert(&[4u8; 32], 10, 20).unwrap();
    index.write_to(File::create(&path).unwrap()).unwrap();
    let loaded = NsIndex::read_file(&path).unwrap();
    assert_eq!(loaded.get(&[4u8; 32]), Some((10, 20)));
    assert!(matches!(
        NsIndex::read_file(&dir.path().join("index.6")),
        Err(IndexReadError::Io(_))
    ));
}

#[test]
fn accepts_a_table_size_that_is_not_in_the_size_table() {
    let ids: Vec<_> = (0..10).map(|home| id_with_home(home * 9, home)).collect();
    let bytes = encode(10, 97, &table_with(97, &ids, &[]));
    let index = load(&bytes).unwrap();
    assert_eq!(index.num_buckets(), 97);
    assert_eq!(file_bytes(&index), bytes);
    for id in &ids {
        assert!(index.contains(id));
    }
    assert_consistent(&index);
}

#[test]
fn given_too_few_empty_buckets_on_load_then_it_rebuilds_like_borg() {
    let used: Vec<_> = (0..700).map(|home| id_with_home(home, 0)).collect();
    let deleted: Vec<_> = (700..1000).map(|home| id_with_home(home, 0)).collect();
    let bytes = encode(700, 1031, &table_with(1031, &used, &deleted));
    let index = load(&bytes).unwrap();
    assert_eq!(index.num_buckets(), 1031);
    assert_eq!(census(&index), (700, 0, 331));
    assert!(used.iter().all(|id| index.contains(id)));
    assert_consistent(&index);

    // A full 97-bucket table has no empty bucket; rebuilding fits it into 1031 buckets.
    let full: Vec<_> = (0..97).map(|home| id_with_home(home, 1)).collect();
    let index = load(&encode(97, 97, &table_with(97, &full, &[]))).unwrap();
    assert_eq!(index.num_buckets(), 1031);
    assert_eq!(index.len(), 97);
    assert_consistent(&index);
}

#[test]
fn rejects_a_file_shorter_than_the_header() {
    for len in [0, 1, 8, 17] {
        let bytes = &file_bytes(&NsIndex::new())[..len];
        assert!(matches!(load(bytes), Err(IndexReadError::TruncatedHeader)));
    }
}

#[test]
fn rejects_hostile_or_foreign_headers_before_reading_buckets() {
    let good = file_bytes(&NsIndex::new());
    let patched = |at: usize, with: &[u8]| {
        let mut bytes = good.clone();
        bytes[at..at + with.len()].copy_from_slice(with);
        bytes
    };
    assert!(matches!(
        load(&patched(0, b"BORG_SEG")),
        Err(IndexReadError::BadMagic(m)) if &m == b"BORG_SEG"
    ));
    assert!(matches!(
        load(&patched(16, &[16])),
        Err(IndexReadError::UnsupportedKeySize(16))
    ));
    assert!(matches!(
        load(&patched(16, &[0xFF])),
        Err(IndexReadError::UnsupportedKeySize(-1))
    ));
    assert!(matches!(
        load(&patched(17, &[12])),
        Err(IndexReadError::UnsupportedValueSize(12))
    ));
    assert!(matches!(
        load(&patched(12, &0i32.to_le_bytes())),
        Err(IndexReadError::InvalidBucketCount(0))
    ));
    assert!(matches!(
        load(&patched(12, &(-5i32).to_le_bytes())),
        Err(IndexReadError::InvalidBucketCount(-5))
    ));
    assert!(matches!(
        load(&patched(8, &(-1i32).to_le_bytes())),
        Err(IndexReadError::InvalidEntryCount {
            num_entries: -1,
            ..
        })
    ));
    assert!(matches!(
        load(&patched(8, &1032i32.to_le_bytes())),
        Err(IndexReadError::InvalidEntryCount {
            num_entries: 1032,
            num_buckets: 1031
        })
    ));
}

#[test]
fn rejects_a_huge_bucket_count_by_the_file_length_before_allocating() {
    let mut bytes = file_bytes(&NsIndex::new());
    bytes[12..16].copy_from_slice(&i32::MAX.to_le_bytes());
    match load(&bytes) {
        Err(IndexReadError::LengthMismatch { expected, actual }) => {
            assert_eq!(expected, 18 + 40 * i32::MAX as u64);
            assert_eq!(actual, 41258);
        }
        other => panic!("expected a length mismatch, got {other:?}"),
    }
}

#[test]
fn rejects_a_file_length_that_differs_from_the_header_by_one_byte() {
    let bytes = file_bytes(&NsIndex::new());
    for len in [bytes.len() - 1, bytes.len() + 1] {
        let mut changed = bytes.clone();
        changed.resize(len, 0);
        assert!(matches!(
            load(&changed),
            Err(IndexReadError::LengthMismatch {
                expected: 41258,
                ..
            })
        ));
    }
}

#[test]
fn rejects_a_reader_that_ends_early_or_runs_on_past_the_declared_length() {
    let bytes = file_bytes(&NsIndex::new());
    let short = &bytes[..bytes.len() - 40];
    assert!(matches!(
        NsIndex::read_from(short, bytes.len() as u64),
        Err(IndexReadError::TruncatedBuckets {
            expected: 41240,
            ..
        })
    ));
    let mut long = bytes.clone();
    long.push(0);
    assert!(matches!(
        NsIndex::read_from(&long[..], bytes.len() as u64),
        Err(IndexReadError::TrailingData)
    ));
}

#[test]
fn rejects_an_entry_count_that_differs_from_the_used_buckets() {
    let ids: Vec<_> = (0..5).map(|home| id_with_home(home, 0)).collect();
    let buckets = table_with(1031, &ids, &[]);
    for claimed in [4, 6, 0] {
        assert!(matches!(
            load(&encode(claimed, 1031, &buckets)),
            Err(IndexReadError::EntryCountMismatch { header, counted: 5 }) if header == claimed as usize
        ));
    }
}

#[test]
fn rejects_a_used_bucket_with_a_reserved_segment() {
    let mut buckets = vec![EMPTY_BUCKET; 1031];
    buckets[9] = used_bucket(&[1u8; 32], MAX_SEGMENT + 1, 0);
    assert!(matches!(
        load(&encode(1, 1031, &buckets)),
        Err(IndexReadError::ReservedSegment { bucket: 9, segment }) if segment == MAX_SEGMENT + 1
    ));
}

#[test]
fn given_a_file_holding_an_id_twice_then_the_load_rebuild_reports_it() {
    let id = id_with_home(5, 0);
    let mut buckets = table_with(97, &[], &[]);
    for bucket in buckets.iter_mut() {
        *bucket = used_bucket(&id, 1, 1);
    }
    assert!(matches!(
        load(&encode(97, 97, &buckets)),
        Err(IndexReadError::RebuildFailed(IndexError::DuplicateIds {
            expected: 97,
            rebuilt: 1
        }))
    ));
}

#[test]
fn check_structure_finds_unreachable_and_duplicated_ids() {
    // An id stored past an empty bucket that ends its probe.
    let mut buckets = vec![EMPTY_BUCKET; 1031];
    buckets[12] = used_bucket(&id_with_home(10, 0), 1, 1);
    let index = load(&encode(1, 1031, &buckets)).unwrap();
    assert_eq!(
        index.check_structure(),
        Err(IndexError::UnreachableEntry { bucket: 12 })
    );
    let mut buckets = vec![EMPTY_BUCKET; 1031];
    buckets[10] = used_bucket(&id_with_home(10, 0), 1, 1);
    buckets[11] = used_bucket(&id_with_home(10, 0), 2, 2);
    let index = load(&encode(2, 1031, &buckets)).unwrap();
    assert_eq!(
        index.check_structure(),
        Err(IndexError::DuplicateId {
            first: 10,
            second: 11
        })
    );
}

#[test]
fn error_messages_name_the_problem() {
    let read = IndexReadError::LengthMismatch {
        expected: 58,
        actual: 57,
    };
    assert_eq!(
        read.to_string(),
        "cannot load repository index: file length 57 (the header requires 58)"
    );
    let insert = IndexError::SegmentOutOfRange { segment: u32::MAX };
    assert!(insert.to_string().contains("4294967295"));
}

// ---- property tests ----

const POOL: u16 = 2000;

/// Half the pool shares 40 home buckets near the end of the table (long chains that wrap
/// around); the other half spreads out.
fn pool_id(n: u16) -> ObjectId {
    let hash = if n % 2 == 0 {
        u32::from(n % 40) * 1031 + 1010
    } else {
        u32::from(n).wrapping_mul(2_654_435_761)
    };
    let mut id = [0u8; KEY_LEN];
    id[..4].copy_from_slice(&hash.to_le_bytes());
    id[4..6].copy_from_slice(&n.to_le_bytes());
    id
}

#[derive(Debug, Clone)]
enum Op {
    Insert { key: u16, segment: u32, offset: u32 },
    Remove { key: u16 },
}

fn op_strategy(insert_percent: u32) -> impl Strategy<Value = Op> {
    let segment = prop_oneof![
        30 => 0..=MAX_SEGMENT,
        1 => (MAX_SEGMENT + 1)..=u32::MAX,
    ];
    prop_oneof![
        insert_percent => (0..POOL, segment, any::<u32>())
            .prop_map(|(key, segment, offset)| Op::Insert { key, segment, offset }),
        (100 - insert_percent) => (0..POOL).prop_map(|key| Op::Remove { key }),
    ]
}

/// A filling phase then a draining phase, so tables grow and shrink.
fn ops_strategy() -> impl Strategy<Value = Vec<Op>> {
    (
        prop::collection::vec(op_strategy(85), 0..2000),
        prop::collection::vec(op_strategy(20), 0..2000),
    )
        .prop_map(|(mut fill, drain)| {
            fill.extend(drain);
            fill
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn behaves_like_a_hash_map_and_round_trips_through_its_file(ops in ops_strategy()) {
        let mut index = NsIndex::new();
        let mut model: HashMap<ObjectId, (u32, u32)> = HashMap::new();
        for op in &ops {
            match *op {
                Op::Insert { key, segment, offset } => {
                    let id = pool_id(key);
                    let result = index.insert(&id, segment, offset);
                    if segment > MAX_SEGMENT {
                        prop_assert_eq!(result, Err(IndexError::SegmentOutOfRange { segment }));
                    } else {
                        prop_assert_eq!(result, Ok(model.insert(id, (segment, offset))));
                    }
                }
                Op::Remove { key } => {
                    let id = pool_id(key);
                    prop_assert_eq!(index.remove(&id), model.remove(&id));
                }
            }
            prop_assert_eq!(index.len(), model.len());
        }
        assert_consistent(&index);
        for key in 0..POOL {
            let id = pool_id(key);
            prop_assert_eq!(index.get(&id), model.get(&id).copied());
        }
        let listed: HashMap<_, _> = index.iter().map(|(id, s, o)| (*id, (s, o))).collect();
        prop_assert_eq!(listed.len(), index.len(), "iter yields no id twice");
        prop_assert_eq!(&listed, &model);

        let bytes = file_bytes(&index);
        let loaded = load(&bytes).unwrap();
        prop_assert_eq!(file_bytes(&loaded), bytes);
        prop_assert!(loaded.iter().eq(index.iter()));
        assert_consistent(&loaded);
    }
}

// ---- interop with real borg 1.4.5 ----

/// The python of a borg 1.4.5 install; fails under CI=true when missing, else skips.
fn borg_python() -> Option<PathBuf> {
    crate::test_support::require_borg_python(crate::test_support::Borg::Pypi14)
}

/// Reads an index with borg and prints `len size`, then `hex segment offset` per entry in
/// borg's iteration order.
const DUMP_SCRIPT: &str = r#"
import sys
from borg.hashindex import NSIndex
idx = NSIndex.read(sys.argv[1])
print(len(idx), idx.size())
for key, (segment, offset) in idx.iteritems():
    print(key.hex(), segment, offset)
if len(sys.argv) > 2:
    idx.write(sys.argv[2])
"#;

/// Applies an operations file (41-byte records: tag, key, segment, offset) to a fresh
/// NSIndex and writes it.
const APPLY_SCRIPT: &str = r#"
import sys, struct
from borg.hashindex import NSIndex
ops = open(sys.argv[1], 'rb').read()
idx = NSIndex()
for at in range(0, len(ops), 41):
    tag, key = ops[at], ops[at + 1:at + 33]
    segment, offset = struct.unpack('<II', ops[at + 33:at + 41])
    if tag == 1:
        idx[key] = (segment, offset)
    else:
        try:
            del idx[key]
        except KeyError:
            pass
idx.write(sys.argv[2])
print(len(idx))
"#;

struct BorgDump {
    len: usize,
    size: u64,
    entries: Vec<(ObjectId, u32, u32)>,
}

fn parse_dump(text: &str) -> BorgDump {
    let mut lines = text.lines();
    let mut first = lines.next().unwrap().split(' ');
    let len = first.next().unwrap().parse().unwrap();
    let size = first.next().unwrap().parse().unwrap();
    let entries = lines
        .map(|line| {
            let mut fields = line.split(' ');
            let hex = fields.next().unwrap();
            let mut id = [0u8; KEY_LEN];
            for (n, byte) in id.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&hex[2 * n..2 * n + 2], 16).unwrap();
            }
            let segment = fields.next().unwrap().parse().unwrap();
            let offset = fields.next().unwrap().parse().unwrap();
            (id, segment, offset)
        })
        .collect();
    BorgDump { len, size, entries }
}

fn our_entries(index: &NsIndex) -> Vec<(ObjectId, u32, u32)> {
    index.iter().map(|(id, s, o)| (*id, s, o)).collect()
}

fn write_file(index: &NsIndex, path: &Path) {
    std::fs::write(path, file_bytes(index)).unwrap();
}

#[test]
fn borg_reads_our_file_with_the_same_entries_in_the_same_bucket_order() {
    let Some(python) = borg_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ids = random_ids(10, 5000);
    let mut index = NsIndex::new();
    for (n, id) in ids.iter().enumerate() {
        index.insert(id, n as u32, (n * 41) as u32).unwrap();
    }
    for id in ids.iter().step_by(4) {
        index.remove(id);
    }
    for id in ids.iter().skip(1).step_by(5) {
        index.insert(id, MAX_SEGMENT, 1).unwrap();
    }
    for home in 0..30 {
        index.insert(&id_with_home(8200, home), 77, home).unwrap();
    }
    assert!(census(&index).1 > 0, "the file should carry tombstones");
    let path = dir.path().join("index.1");
    write_file(&index, &path);
    let dump = parse_dump(&run_python_args(&python, DUMP_SCRIPT, [&path]));
    assert_eq!(dump.len, index.len());
    assert_eq!(dump.size, index.size_on_disk());
    assert_eq!(dump.entries, our_entries(&index));
}

#[test]
fn we_read_borg_file_with_tombstones_in_the_same_bucket_order_and_bytes() {
    let Some(python) = borg_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.2");
    let script = r#"
import sys, os
from borg.hashindex import NSIndex
idx = NSIndex()
keys = [os.urandom(32) for _ in range(6000)]
for n, key in enumerate(keys):
    idx[key] = (n, n * 7)
for key in keys[:4200]:
    del idx[key]
for key in keys[4200:4800]:
    idx[key] = (1, 2)
idx.write(sys.argv[1])
print(len(idx), idx.size())
for key, (segment, offset) in idx.iteritems():
    print(key.hex(), segment, offset)
"#;
    let dump = parse_dump(&run_python_args(&python, script, [&path]));
    let index = NsIndex::read_file(&path).unwrap();
    assert!(census(&index).1 > 0, "borg's file should carry tombstones");
    assert_eq!(index.len(), dump.len);
    assert_eq!(index.size_on_disk(), dump.size);
    assert_eq!(our_entries(&index), dump.entries);
    assert_eq!(file_bytes(&index), std::fs::read(&path).unwrap());
    assert_consistent(&index);
}

/// Operations that cross growth, shrinking and same-size rebuilds, with overwrites, removals
/// of absent ids and colliding homes.
fn differential_ops() -> Vec<(bool, ObjectId, u32, u32)> {
    let mut rng = SplitMix(11);
    let mut ops = Vec::new();
    let mut live: Vec<ObjectId> = Vec::new();
    let fresh_id = |rng: &mut SplitMix| {
        if rng.below(3) == 0 {
            id_with_home(rng.below(64) as u32 * 1031 + 1020, rng.next_u64() as u32)
        } else {
            rng.id()
        }
    };
    // Fill past several growth steps.
    for _ in 0..9000 {
        let id = fresh_id(&mut rng);
        ops.push((true, id, rng.below(1000) as u32, rng.next_u64() as u32));
        live.push(id);
    }
    // Drain through several shrinks, removing some absent ids on the way.
    for _ in 0..8400 {
        let at = rng.below(live.len() as u64) as usize;
        let id = live.swap_remove(at);
        ops.push((false, id, 0, 0));
        if rng.below(10) == 0 {
            ops.push((false, rng.id(), 0, 0));
        }
    }
    // Churn at a steady size: tombstones pile up until same-size rebuilds; overwrites move
    // hits into tombstones.
    for _ in 0..20000 {
        match rng.below(3) {
            0 => {
                let id = fresh_id(&mut rng);
                ops.push((true, id, rng.below(1000) as u32, 1));
                live.push(id);
            }
            1 if !live.is_empty() => {
                let at = rng.below(live.len() as u64) as usize;
                ops.push((false, live.swap_remove(at), 0, 0));
            }
            _ if !live.is_empty() => {
                let id = live[rng.below(live.len() as u64) as usize];
                ops.push((true, id, MAX_SEGMENT, 2));
            }
            _ => {}
        }
    }
    ops
}

#[test]
fn the_same_operations_give_a_byte_identical_file_to_borg() {
    let Some(python) = borg_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ops = differential_ops();
    let mut encoded = Vec::new();
    let mut index = NsIndex::new();
    let mut sizes = HashSet::new();
    let mut rebuilds_at_same_size = 0;
    for (insert, id, segment, offset) in &ops {
        encoded.push(u8::from(*insert));
        encoded.extend_from_slice(id);
        encoded.extend_from_slice(&segment.to_le_bytes());
        encoded.extend_from_slice(&offset.to_le_bytes());
        let tombstones_before = census(&index).1;
        if *insert {
            index.insert(id, *segment, *offset).unwrap();
        } else {
            index.remove(id);
        }
        if tombstones_before > 1 && census(&index).1 == 0 {
            rebuilds_at_same_size += 1;
        }
        sizes.insert(index.num_buckets());
    }
    assert!(
        sizes.len() >= 4,
        "the run should grow and shrink: {sizes:?}"
    );
    assert!(
        rebuilds_at_same_size > 0,
        "the run should rebuild to clear tombstones"
    );
    let ops_path = dir.path().join("ops");
    let borg_path = dir.path().join("index.borg");
    std::fs::write(&ops_path, encoded).unwrap();
    let borg_len: usize = run_python_args(&python, APPLY_SCRIPT, [&ops_path, &borg_path])
        .trim()
        .parse()
        .unwrap();
    assert_eq!(borg_len, index.len());
    let borg_bytes = std::fs::read(&borg_path).unwrap();
    assert_eq!(borg_bytes.len() as u64, index.size_on_disk());
    assert!(borg_bytes == file_bytes(&index), "files differ");
}

#[test]
fn borg_and_we_rebuild_a_file_with_too_few_empty_buckets_identically() {
    let Some(python) = borg_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let used: Vec<_> = (0..700).map(|home| id_with_home(home, 3)).collect();
    let deleted: Vec<_> = (700..1000).map(|home| id_with_home(home, 3)).collect();
    let full: Vec<_> = (0..97).map(|home| id_with_home(home * 11, 4)).collect();
    let cases = [
        (
            "tombstones",
            encode(700, 1031, &table_with(1031, &used, &deleted)),
        ),
        ("full97", encode(97, 97, &table_with(97, &full, &[]))),
    ];
    for (name, bytes) in cases {
        let input = dir.path().join(name);
        let output = dir.path().join(format!("{name}.borg"));
        std::fs::write(&input, &bytes).unwrap();
        let dump = parse_dump(&run_python_args(&python, DUMP_SCRIPT, [&input, &output]));
        let index = load(&bytes).unwrap();
        assert_eq!(dump.size, index.size_on_disk(), "{name}");
        assert_eq!(dump.entries, our_entries(&index), "{name}");
        assert_eq!(
            std::fs::read(&output).unwrap(),
            file_bytes(&index),
            "{name}"
        );
    }
}

#[test]
fn list_pages_match_borg_iteritems_with_a_marker() {
    let Some(python) = borg_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut index = NsIndex::new();
    for (n, id) in random_ids(12, 2500).iter().enumerate() {
        index.insert(id, n as u32, 0).unwrap();
    }
    let path = dir.path().join("index.3");
    write_file(&index, &path);
    // A tombstone-free table: borg's marker lookup moves nothing, so the pages must agree.
    let script = r#"
import sys
from itertools import islice
from borg.hashindex import NSIndex
idx = NSIndex.read(sys.argv[1])
marker = None
while True:
    page = [key for key, _ in islice(idx.iteritems(marker=marker), 333)]
    if not page:
        break
    print(' '.join(key.hex() for key in page))
    marker = page[-1]
"#;
    let borg_pages: Vec<String> = run_python_args(&python, script, [&path])
        .lines()
        .map(str::to_owned)
        .collect();
    let mut our_pages = Vec::new();
    let mut marker = None;
    loop {
        let page = index.list(Some(333), marker.as_ref()).unwrap();
        let Some(last) = page.last() else { break };
        marker = Some(*last);
        let hex: Vec<String> = page
            .iter()
            .map(|id| id.iter().map(|b| format!("{b:02x}")).collect())
            .collect();
        our_pages.push(hex.join(" "));
    }
    assert_eq!(our_pages.len(), 8);
    assert_eq!(our_pages, borg_pages);
}

#[test]
fn borg_reads_our_compacted_file() {
    let Some(python) = borg_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ids = random_ids(13, 4000);
    let mut index = NsIndex::new();
    for (n, id) in ids.iter().enumerate() {
        index.insert(id, n as u32, 1).unwrap();
    }
    for id in &ids[..2500] {
        index.remove(id);
    }
    let compact = index.compacted().unwrap();
    let path = dir.path().join("index.4");
    write_file(&compact, &path);
    let dump = parse_dump(&run_python_args(&python, DUMP_SCRIPT, [&path]));
    assert_eq!(dump.len, 1500);
    assert_eq!(dump.size, compact.size_on_disk());
    assert_eq!(dump.entries, our_entries(&compact));
}
