//! What every engine's session needs, whatever protocol it speaks: the client's pipes on
//! stdin and stdout, the session's clocks, the signals, and how a session that must end
//! (or never starts) says goodbye.
//!
//! | module | owns |
//! |---|---|
//! | `clock` | idle timeout, request deadline, session limit, and what they leave a lock wait |
//! | `pipe` | [`ClientPipe`]: non-blocking stdin/stdout that give up on a signal or a clock |
//! | `watch` | [`Watch`]: the wait for the next request and the [`Stop`] that ends a session |
//!
//! An engine reads its requests through a [`ClientPipe`], asks [`Watch::await_request`]
//! before each one, and turns a failed read or write into a [`Stop`] with
//! [`Watch::pipe_failed`]; its own ending adds only what its protocol can get wrong.

pub(crate) mod clock;
pub(crate) mod pipe;
pub(crate) mod watch;

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::time::Duration;

pub use clock::{Expiry, SessionClock};
pub use pipe::{ClientPipe, Interruption};
pub use watch::{AbortProbe, Stop, Watch, watch_signals};

/// The logger borg's server uses for its own messages; both engines use it too.
pub const LOG: &str = "borg.remote";

/// stdin as an unbuffered `File` (std's `Stdin` adds a buffer the readers do not need).
pub fn raw_stdin() -> io::Result<File> {
    Ok(File::from(io::stdin().as_fd().try_clone_to_owned()?))
}

/// stdout as an unbuffered `File` (std's `Stdout` is line-buffered, which would scan and split
/// binary replies at every newline byte).
pub fn raw_stdout() -> io::Result<File> {
    Ok(File::from(io::stdout().as_fd().try_clone_to_owned()?))
}

/// A 1 MiB pipe instead of the default 64 KiB: puts and gets of megabyte chunks then move in
/// a few system calls instead of dozens. Best effort (sockets and old kernels say no).
pub fn enlarge_pipe(file: &File) {
    const PIPE_SIZE: i32 = 1 << 20;
    let _ = nix::fcntl::fcntl(file, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
}

/// How long a refused session keeps stdout open after its last stderr line.
const LINGER: Duration = Duration::from_secs(1);

/// borg clients read stdout before stderr when both are ready, so an error line followed at
/// once by end-of-stream is lost; a short pause lets the line arrive on its own.
pub fn linger_for_client() {
    let _ = io::stderr().flush();
    std::thread::sleep(LINGER);
}
