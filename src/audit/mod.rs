//! Audit records: one JSON line per connection, and the sinks that persist them.
