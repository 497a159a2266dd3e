//! `integrity.N`: XXH64 file digests of the index and hints, computed exactly as borg does.
