//! Audit records: one JSON line per connection, and the sinks that persist them.

pub mod record;
pub mod sink;

pub use record::{AuditRecord, Context};
pub use sink::{AuditError, write_record};
