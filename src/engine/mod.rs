//! The built-in engine: a drop-in replacement for BorgBackup 1.x's `borg serve`.

pub mod lock;
pub mod log;
pub mod repository;
pub mod rpc;
