//! Audit records: the gate's decision and the engine's end of session, one JSON line each, and
//! the sinks that persist them.

pub mod record;
pub mod session_end;
pub mod sink;

pub use record::{AuditRecord, Context};
pub use session_end::{SessionEnd, SessionId};
pub use sink::{AuditError, write_record};
