//! borg's log levels, as its `--debug`, `--info`, `--warning`, `--error` and `--critical`
//! flags name them: what a policy allows, what the gate passes on, what the engines filter by.

use std::fmt;

/// borg's log levels, from most to least verbose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum LogLevel {
    Debug,
    Info,
    /// borg's default.
    #[default]
    Warning,
    Error,
    Critical,
}

impl LogLevel {
    pub const ALL: [LogLevel; 5] = [
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Warning,
        LogLevel::Error,
        LogLevel::Critical,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
        }
    }

    /// The `borg serve` flag that selects this level.
    pub fn flag(self) -> &'static str {
        match self {
            LogLevel::Debug => "--debug",
            LogLevel::Info => "--info",
            LogLevel::Warning => "--warning",
            LogLevel::Error => "--error",
            LogLevel::Critical => "--critical",
        }
    }

    pub fn from_name(name: &str) -> Option<LogLevel> {
        LogLevel::ALL.into_iter().find(|level| level.name() == name)
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
