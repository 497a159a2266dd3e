//! msgpack as borg 1.x speaks it, on the wire (`rpc/`) and in its files (`repository/hints.rs`,
//! `repository/integrity.rs`): one codec for both.
//!
//! Hand-written, although `rmp` and `rmpv` exist (the tests use them to check these bytes),
//! because what the engine needs is exactly what they do not do:
//!
//! * **Complete, incomplete or malformed, over partial reads.** Requests arrive in pieces on a
//!   non-blocking pipe. [`Scanner`] walks the headers of one message over whatever part of it
//!   is buffered, resumably (it continues where the last piece ended) and without
//!   allocating, and says *complete*, *incomplete* (at least how many more bytes) or
//!   *malformed*. `rmpv` reads from a blocking `Read` into an owned tree: a short buffer is an
//!   I/O error after bytes were consumed, so each new piece means parsing from the start, and
//!   every put's data (up to 20 MiB) is copied; here a complete message is read zero-copy
//!   into [`Value`]s that borrow the buffer.
//! * **Allocation limits before any allocation.** The message's total size, its nesting depth
//!   and each container's element count are checked against [`DecodeLimits`] while scanning,
//!   from the declared lengths, so a header declaring 4 GiB or four billion elements is
//!   refused before a byte is read or reserved for it. `rmpv` limits only the depth.
//! * **The str-header rule of msgpack-python with `use_bin_type=False`,** which borg 1.x uses
//!   for the wire and its files: byte strings are raw strings with a fixstr, str16 or str32
//!   header, never str8 (0xd9) and never the bin family. borg-gate's replies and files are
//!   byte-identical to borg's (tests compare them); `rmp` writes str8 for 32 to 255 bytes and
//!   bin8 for binary, so a 32-byte id would be `d9 20` or `c4 20` instead of borg's `da 00 20`.
//!
//! | module | owns |
//! |---|---|
//! | `read` | [`Scanner`] (complete / incomplete / malformed) and [`Cursor`] over borrowed [`Value`]s |
//! | `write` | the writer functions with msgpack-python's encoding choices |
//! | `typed` | typed reads and writes with byte offsets in errors, for the repository's files |

pub(crate) mod read;
pub(crate) mod typed;
pub(crate) mod write;

pub use read::{
    Cursor, DecodeLimits, FrameError, MalformedValue, Scan, Scanner, Seq, SeqPairs, SeqValues,
    Shallow, Value,
};
pub use typed::MsgpackError;
pub(crate) use typed::{MsgpackReader, MsgpackWriter};
pub use write::{
    TooLongForMsgpack, checked_len, write_array_header, write_bool, write_f64, write_int,
    write_map_header, write_nil, write_str, write_str_header, write_uint,
};
