//! Checksum speed probes: how fast this machine runs the crc32 (segment entries) and XXH64
//! (index and hints integrity) that the engine computes, so that the benchmark can state the
//! physical limits next to the engine's figures.
//!
//! Usage: `checksum-speed MIB` prints one JSON object with GiB/s for each checksum, measured
//! over MIB mebibytes of incompressible bytes held in memory (best of five passes).

use std::process::ExitCode;
use std::time::Instant;

/// One pass hashes the whole buffer in slices of this size, like segment entries of a
/// large-object backup (borg's chunker averages 2 MiB).
const SLICE: usize = 2 << 20;

const PASSES: usize = 5;

fn main() -> ExitCode {
    let Some(mebibytes) = std::env::args()
        .nth(1)
        .and_then(|a| a.parse::<usize>().ok())
    else {
        eprintln!("usage: checksum-speed MIB");
        return ExitCode::from(2);
    };
    let buffer = pseudo_random_bytes(mebibytes.max(1) << 20);
    let crc32 = best_rate(&buffer, |slice| u64::from(crc32fast::hash(slice)));
    let xxh64 = best_rate(&buffer, |slice| xxhash_rust::xxh64::xxh64(slice, 0));
    println!(
        "{{\"bytes\": {}, \"crc32fast_gib_per_s\": {crc32:.3}, \"xxh64_gib_per_s\": {xxh64:.3}}}",
        buffer.len()
    );
    ExitCode::SUCCESS
}

/// Bytes a compressor cannot shrink and a branch predictor cannot learn (xorshift64*).
fn pseudo_random_bytes(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        bytes.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// GiB/s of the fastest of [`PASSES`] passes; the fold keeps the work observable.
fn best_rate(buffer: &[u8], checksum: impl Fn(&[u8]) -> u64) -> f64 {
    let mut best = f64::INFINITY;
    let mut fold = 0u64;
    for _ in 0..PASSES {
        let start = Instant::now();
        for slice in buffer.chunks(SLICE) {
            fold = fold.wrapping_add(checksum(slice));
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    std::hint::black_box(fold);
    buffer.len() as f64 / best.max(1e-9) / f64::from(1u32 << 30)
}
