//! The hashindex at borg's scale: insert, write and read 5,000,000 random object ids with the
//! engine's `NsIndex`, reporting wall time, CPU time and the peak memory each step adds.
//!
//! `cargo bench --bench hashindex` (release build). `KEEP_INDEX_AT=PATH` keeps the index file
//! written, e.g. to compare it with borg's own `NSIndex`. Under `cargo test` (which builds
//! every target, benches included) it does nothing: it measures only when cargo bench runs it.

use std::fs::File;
use std::time::Instant;

use borg_gate::engine::borg1::repository::hashindex::{BUCKET_LEN, NsIndex, ObjectId};

const OBJECTS: usize = 5_000_000;

fn main() {
    // cargo bench passes `--bench`; cargo test does not.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let ids = random_ids(14, OBJECTS);
    reset_peak_rss();
    let base = peak_rss_kib();
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let mut index = NsIndex::new();
    for (n, id) in ids.iter().enumerate() {
        index.insert(id, n as u32, 0).expect("insert");
    }
    let (insert_time, insert_cpu) = (started.elapsed(), cpu_seconds() - cpu);
    let insert_peak = peak_rss_kib().saturating_sub(base);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("index.1");
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let mut file = File::create(&path).expect("create the index file");
    index.write_to(&mut file).expect("write the index");
    file.sync_all().expect("fsync the index");
    let (write_time, write_cpu) = (started.elapsed(), cpu_seconds() - cpu);
    let buckets = index.num_buckets();
    drop(index);
    reset_peak_rss();
    let base = peak_rss_kib();
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let loaded = NsIndex::read_file(&path).expect("read the index");
    let (read_time, read_cpu) = (started.elapsed(), cpu_seconds() - cpu);
    let read_peak = peak_rss_kib().saturating_sub(base);
    assert_eq!(loaded.len(), OBJECTS);
    println!(
        "{OBJECTS} ids, {buckets} buckets, file {} bytes, {:.1} bytes/object\n\
         insert {insert_time:.2?} wall, {insert_cpu:.2}s cpu (peak +{insert_peak} KiB)\n\
         write+fsync {write_time:.2?} wall, {write_cpu:.2}s cpu\n\
         read {read_time:.2?} wall, {read_cpu:.2}s cpu (peak +{read_peak} KiB)\n\
         file at {}",
        loaded.size_on_disk(),
        (buckets * BUCKET_LEN) as f64 / OBJECTS as f64,
        path.display()
    );
    if let Ok(keep) = std::env::var("KEEP_INDEX_AT") {
        std::fs::copy(&path, keep).expect("keep the index file");
    }
}

/// `count` ids from a SplitMix64 sequence seeded with `seed` (the unit tests' id source).
fn random_ids(seed: u64, count: usize) -> Vec<ObjectId> {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (0..count)
        .map(|_| {
            let mut id = ObjectId::default();
            for chunk in id.chunks_mut(8) {
                chunk.copy_from_slice(&next().to_le_bytes());
            }
            id
        })
        .collect()
}

/// The process's peak resident set (VmHWM), KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    line.split_whitespace()
        .nth(1)
        .and_then(|kib| kib.parse().ok())
        .expect("VmHWM in KiB")
}

/// User plus system CPU seconds of this process: wall time is unreliable on a shared host.
fn cpu_seconds() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    seconds(usage.user_time()) + seconds(usage.system_time())
}

/// Resets VmHWM to the current resident set, so the next step's peak is its own.
fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").expect("write /proc/self/clear_refs");
}
