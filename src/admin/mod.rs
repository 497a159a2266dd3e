//! Administrator tools: `borg-gate doctor` (lint a server's setup), `borg-gate audit`
//! (summarise an audit log) and `borg-gate status` (every repository at a glance).
//!
//! The linting rules are pure functions over parsed files ([`authorized_keys`],
//! [`sshd_config`], [`policies`]); [`doctor`] is the thin layer that reads the files and asks
//! the system the few facts the rules need, and [`as_account`] asks them as the backup
//! account. [`audit_report`] folds an audit log line by line into bounded counters.
//! [`status`] reads repositories as a bystander.

pub mod as_account;
pub mod audit_report;
pub(crate) mod authorized_keys;
pub mod doctor;
pub mod keys;
pub(crate) mod policies;
pub mod sshd_config;
pub mod status;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// How bad a finding is. Errors break sessions or open holes; warnings deserve a look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// Where a finding belongs: a file, and a line in it when the problem has one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Place {
    pub file: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

impl Place {
    pub fn file(file: &Path) -> Place {
        Place {
            file: file.to_path_buf(),
            line: None,
        }
    }

    pub fn line(file: &Path, line: usize) -> Place {
        Place {
            file: file.to_path_buf(),
            line: Some(line),
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}", self.file.display()),
            None => write!(f, "{}", self.file.display()),
        }
    }
}

/// One problem and how to fix it. Displayed as `<severity>: <where>: <problem>; <fix>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    #[serde(rename = "where")]
    pub place: Place,
    pub problem: String,
    pub fix: String,
}

impl Finding {
    pub fn error(place: Place, problem: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            severity: Severity::Error,
            place,
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    pub fn warning(place: Place, problem: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            severity: Severity::Warning,
            place,
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line, whatever a file name or a quoted value holds.
        let one_line = |text: &str| text.replace(['\n', '\r'], " ");
        write!(
            f,
            "{}: {}: {}; {}",
            self.severity.label(),
            one_line(&self.place.to_string()),
            one_line(&self.problem),
            one_line(&self.fix)
        )
    }
}

/// The highest severity among `findings`, `None` when there are none.
pub fn worst(findings: &[Finding]) -> Option<Severity> {
    findings.iter().map(|finding| finding.severity).max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finding_renders_as_one_line_with_severity_place_problem_and_fix() {
        let finding = Finding::error(
            Place::line(Path::new("/home/b/.ssh/authorized_keys"), 3),
            "the key lacks `restrict`",
            "add restrict",
        );
        assert_eq!(
            finding.to_string(),
            "error: /home/b/.ssh/authorized_keys:3: the key lacks `restrict`; add restrict"
        );
        let warning = Finding::warning(Place::file(Path::new("/p\n.toml")), "a\nb", "c");
        assert_eq!(warning.to_string(), "warning: /p .toml: a b; c");
    }

    #[test]
    fn worst_severity_is_the_maximum() {
        let place = Place::file(Path::new("/x"));
        assert_eq!(worst(&[]), None);
        let warning = Finding::warning(place.clone(), "w", "f");
        let error = Finding::error(place, "e", "f");
        assert_eq!(
            worst(std::slice::from_ref(&warning)),
            Some(Severity::Warning)
        );
        assert_eq!(worst(&[warning, error]), Some(Severity::Error));
    }

    #[test]
    fn finding_serialises_with_where_and_lowercase_severity() {
        let finding = Finding::warning(Place::line(Path::new("/f"), 2), "p", "x");
        assert_eq!(
            serde_json::to_string(&finding).unwrap(),
            r#"{"severity":"warning","where":{"file":"/f","line":2},"problem":"p","fix":"x"}"#
        );
    }
}
