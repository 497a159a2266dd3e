//! `hints.N`: the msgpack compaction hints (live counts, freeable bytes, quota use, shadow index).
