//! Where a built-in engine reports the end of a session: the gate's session id, the policy's
//! name, the audit sinks and the metrics textfile, all from the engine's own command line
//! (options a client cannot send; the gate passes them from the policy).
//!
//! [`Reporting`] is what the command line said. [`Reporting::begin`] applies the audit's
//! `on_failure` rule when the session starts, as the gate does: sinks that cannot be used
//! refuse the session unless the policy says `continue`. [`Reporter::report`] writes the
//! record and counts the session in the textfile when it ends, for either engine; a failure
//! then is logged, never fatal (the session is over).

use std::fmt;
use std::path::PathBuf;

use crate::audit::session_end::End;
use crate::audit::sink::{check_sinks, write_session_end};
use crate::audit::{AuditError, SessionEnd, SessionId};
use crate::engine::tally::Tally;
use crate::metrics::RepositoryChange;
use crate::policy::{AuditSettings, OnAuditFailure, Protocol};

/// The longest policy name accepted (the gate's names are 64 bytes at most; a policy without
/// `name` is labelled with its file name).
const MAX_POLICY_NAME: usize = 255;

/// The record's `error` for a session that could not start (borg's base exception class).
pub const NOT_STARTED: &str = "Error";

/// The options that say where the engine reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportingOption {
    SessionId,
    PolicyName,
    AuditFile,
    AuditSyslog,
    AuditOnFailure,
    MetricsTextfile,
}

/// What the command line said about reporting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reporting {
    /// The gate's id; `None` makes one at [`Reporting::begin`].
    pub session_id: Option<SessionId>,
    pub policy: Option<String>,
    pub audit: AuditSettings,
    pub metrics_textfile: Option<PathBuf>,
}

impl Default for Reporting {
    fn default() -> Self {
        Reporting {
            session_id: None,
            policy: None,
            audit: AuditSettings {
                file: None,
                syslog: false,
                on_failure: OnAuditFailure::Refuse,
            },
            metrics_textfile: None,
        }
    }
}

impl Reporting {
    /// Takes one option (`value` is ignored for the flag `--audit-syslog`). `Err` says what
    /// was expected.
    pub fn set(&mut self, option: ReportingOption, value: &str) -> Result<(), &'static str> {
        match option {
            ReportingOption::SessionId => {
                let id = SessionId::parse(value).ok_or("1 to 64 letters, digits, '-' or '_'")?;
                self.session_id = Some(id);
            }
            ReportingOption::PolicyName => {
                if value.is_empty() || value.len() > MAX_POLICY_NAME {
                    return Err("a policy name of 1 to 255 bytes");
                }
                self.policy = Some(value.to_owned());
            }
            ReportingOption::AuditFile => self.audit.file = Some(absolute(value)?),
            ReportingOption::AuditSyslog => self.audit.syslog = true,
            ReportingOption::AuditOnFailure => {
                self.audit.on_failure = match value {
                    "refuse" => OnAuditFailure::Refuse,
                    "continue" => OnAuditFailure::Continue,
                    _ => return Err("refuse or continue"),
                }
            }
            ReportingOption::MetricsTextfile => self.metrics_textfile = Some(absolute(value)?),
        }
        Ok(())
    }

    /// The session begins: the sinks are checked and `on_failure` applied. With a refusal the
    /// session must not run (the reporter still records it where it can).
    pub fn begin(self) -> (Reporter, Option<Unaudited>) {
        let check = if self.audit.file.is_some() || self.audit.syslog {
            check_sinks(&self.audit)
        } else {
            Ok(())
        };
        let refuses = self.audit.on_failure == OnAuditFailure::Refuse;
        let reporter = Reporter {
            session_id: self.session_id.unwrap_or_else(SessionId::generate),
            policy: self.policy,
            audit: self.audit,
            metrics_textfile: self.metrics_textfile,
        };
        match check {
            Err(error) if refuses => (reporter, Some(Unaudited(error))),
            Err(error) => {
                log::warn!(target: crate::engine::session::LOG, "continuing without a complete audit: {error}");
                (reporter, None)
            }
            Ok(()) => (reporter, None),
        }
    }
}

fn absolute(value: &str) -> Result<PathBuf, &'static str> {
    let path = PathBuf::from(value);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err("an absolute path")
    }
}

/// Sinks that cannot be used, under `on_failure = "refuse"`.
#[derive(Debug)]
pub struct Unaudited(pub AuditError);

impl Unaudited {
    /// The record's `error` for a session refused because of it.
    pub const CLASS: &'static str = "AuditUnavailable";
}

impl fmt::Display for Unaudited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused: this session cannot be audited ({})", self.0)
    }
}

/// Reports one session when it ends.
#[derive(Debug)]
pub struct Reporter {
    session_id: SessionId,
    policy: Option<String>,
    audit: AuditSettings,
    metrics_textfile: Option<PathBuf>,
}

impl Reporter {
    pub fn session_id(&self) -> &SessionId {
        &self.session_id
    }

    pub fn policy(&self) -> Option<&str> {
        self.policy.as_deref()
    }

    /// Whether the record goes anywhere (without sinks and textfile, nothing is built).
    fn is_silent(&self) -> bool {
        self.audit.file.is_none() && !self.audit.syslog && self.metrics_textfile.is_none()
    }

    /// The session's record, built from what `tally` counted and ending with `end`: written
    /// to the audit sinks and counted in the textfile, when the policy asks for either.
    pub fn report(&self, tally: &Tally, protocol: Protocol, end: &End) {
        if self.is_silent() {
            return;
        }
        let (record, change) = tally.record(&self.session_id, protocol.name(), end);
        self.finish(record, &change);
    }

    /// Writes the record to the audit sinks and counts the session in the textfile. Failures
    /// are logged; the session is over either way.
    fn finish(&self, mut record: SessionEnd, change: &RepositoryChange) {
        record.policy.clone_from(&self.policy);
        for error in write_session_end(&self.audit, &record) {
            log::warn!(target: crate::engine::session::LOG, "the session's end was not recorded: {error}");
        }
        if let Some(textfile) = &self.metrics_textfile {
            let policy = self.policy.as_deref().unwrap_or_default();
            if let Err(error) =
                crate::metrics::record_session_end(textfile, policy, &record, change)
            {
                log::warn!(target: crate::engine::session::LOG, "the session was not counted in the metrics: {error}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::audit::session_end::End;

    #[test]
    fn options_are_checked_as_they_are_taken() {
        let mut reporting = Reporting::default();
        reporting.set(ReportingOption::SessionId, "abc-1").unwrap();
        reporting
            .set(ReportingOption::PolicyName, "laptop")
            .unwrap();
        reporting
            .set(ReportingOption::AuditFile, "/var/log/a.jsonl")
            .unwrap();
        reporting.set(ReportingOption::AuditSyslog, "").unwrap();
        reporting
            .set(ReportingOption::AuditOnFailure, "continue")
            .unwrap();
        reporting
            .set(ReportingOption::MetricsTextfile, "/var/lib/m.prom")
            .unwrap();
        assert_eq!(reporting.session_id.as_ref().unwrap().as_str(), "abc-1");
        assert!(reporting.audit.syslog);
        assert_eq!(reporting.audit.on_failure, OnAuditFailure::Continue);
        for (option, bad) in [
            (ReportingOption::SessionId, "a b"),
            (ReportingOption::PolicyName, ""),
            (ReportingOption::AuditFile, "relative.jsonl"),
            (ReportingOption::AuditOnFailure, "ignore"),
            (ReportingOption::MetricsTextfile, "m.prom"),
        ] {
            assert!(reporting.set(option, bad).is_err(), "{option:?} {bad:?}");
        }
    }

    #[test]
    fn an_unusable_sink_refuses_the_session_unless_the_policy_continues() {
        let dir = tempfile::tempdir().unwrap();
        let mut reporting = Reporting::default();
        let missing = dir.path().join("missing/audit.jsonl");
        reporting
            .set(ReportingOption::AuditFile, missing.to_str().unwrap())
            .unwrap();
        let (reporter, refusal) = reporting.clone().begin();
        let refusal = refusal.unwrap();
        assert!(
            refusal
                .to_string()
                .starts_with("refused: this session cannot be audited (cannot write the audit log"),
            "{refusal}"
        );
        assert_eq!(reporter.session_id().as_str().len(), 32);
        reporting.audit.on_failure = OnAuditFailure::Continue;
        assert!(reporting.begin().1.is_none());
    }

    #[test]
    fn the_record_goes_to_the_file_with_the_gate_s_id_and_the_policy() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.jsonl");
        let mut reporting = Reporting::default();
        reporting
            .set(ReportingOption::AuditFile, file.to_str().unwrap())
            .unwrap();
        reporting
            .set(ReportingOption::SessionId, "gate-id")
            .unwrap();
        reporting
            .set(ReportingOption::PolicyName, "laptop")
            .unwrap();
        let (reporter, refusal) = reporting.begin();
        assert!(refusal.is_none());
        assert!(!reporter.is_silent());
        let record = SessionEnd::new(
            reporter.session_id(),
            "borg1",
            &End::ClientClosed,
            UNIX_EPOCH,
        );
        reporter.finish(record, &RepositoryChange::None);
        let text = std::fs::read_to_string(&file).unwrap();
        let record: SessionEnd = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(record.session_id, "gate-id");
        assert_eq!(record.policy.as_deref(), Some("laptop"));
        assert!(Reporting::default().begin().0.is_silent());
    }
}
