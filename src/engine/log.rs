//! A `log` crate backend that writes borg's remote logging protocol (JSON lines on stderr).
