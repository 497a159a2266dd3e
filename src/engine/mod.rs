//! The built-in engine: a drop-in replacement for BorgBackup 1.x's `borg serve`.

pub mod args;
pub mod lock;
pub mod log;
pub mod paths;
pub mod repository;
pub mod rpc;

use std::ffi::OsString;

/// `borg-gate serve`: runs the engine and returns the process exit status.
pub fn serve_main(_args: &[OsString]) -> u8 {
    eprintln!(
        "borg-gate: the built-in engine is not built yet; set engine.program to a borg executable"
    );
    2
}
