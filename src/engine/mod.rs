//! The built-in engines: drop-in replacements for BorgBackup 1.x's `borg serve` (msgpack RPC,
//! `borg1/`) and for borg 2's `borg serve --rest` (HTTP, `borg2/`), on what both share.
//!
//! | module | owns |
//! |---|---|
//! | `borg1` | `borg-gate serve`: borg 1's RPC, repository format and locks |
//! | `borg2` | `borg-gate serve --rest`: borgstore's REST protocol and store layout |
//! | `session` | what any engine's session needs: client pipes, clocks, signals, endings |
//! | `paths` | `~`, `/~/` and relative paths as borg resolves them, and the restrictions |
//! | `log` | the `log` backend both engines report through, filtered as borg filters |
//!
//! A further protocol is one more folder beside `borg1/` and `borg2/` with its own
//! `serve_main`, built on `session`, `paths` and `log`, and one more line in [`serve_main`].

pub mod borg1;
pub mod borg2;
pub mod log;
pub mod paths;
pub mod reporting;
pub mod session;
pub mod tally;

use std::ffi::OsString;

pub use session::linger_for_client;

/// `borg-gate serve`: runs the engine the command line asks for (borg 2's REST server with
/// `--rest`, else borg 1's RPC server) and returns the process exit status.
pub fn serve_main(args: &[OsString]) -> u8 {
    if borg2::wants_rest(args) {
        borg2::serve_main(args)
    } else {
        borg1::serve_main(args)
    }
}
