//! borg 1.x repository format v1: pure codecs for every on-disk structure, and the I/O that sequences them.

pub mod config;
pub mod durable;
pub mod hashindex;
pub mod hints;
pub mod integrity;
pub mod segment;
pub mod units;
