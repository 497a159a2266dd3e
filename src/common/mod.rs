//! Small, pure pieces that unrelated layers share, so that none borrows them from another
//! (the gate from an engine, an engine from the policy or the audit log). Nothing here knows
//! the policy, the gate or an engine.
//!
//! | module | owns |
//! |---|---|
//! | `log_level` | borg's log levels and their flags |
//! | `text` | how errors, times and ids are written for people |
//! | `python` | Python's spellings that borg's clients expect: `repr()`, `json.dumps` |

pub(crate) mod log_level;
pub(crate) mod python;
pub(crate) mod text;
