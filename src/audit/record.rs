//! The gate's audit record: one JSON object per connection (`"event":"decision"`), built purely
//! from the decision. The engine's record of the same session is `session_end.rs`.
//!
//! serde_json escapes every control character, so a client's command can never forge a
//! second line. Assignment values are redacted before they get here.

use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::session_end::{DECISION, SessionId};
use crate::gate::{Decision, Judgement, Repository, ServeArgs};

/// Bumped when a field changes meaning; readers (`borg-gate audit`) check it.
pub const RECORD_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub v: u32,
    /// RFC 3339, UTC, microseconds.
    pub time: String,
    /// Always `decision`; logs written before records had events lack it.
    #[serde(default = "decision_event")]
    pub event: String,
    /// Shared with the engine's `session_end` record of the same session (absent in old logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    pub policy_file: String,
    /// The policy's name; `None` when the policy could not be loaded.
    pub policy: Option<String>,
    /// The key's `--name` from the forced command, when it gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub pid: u32,
    /// sshd's SSH_CONNECTION: client address and port, server address and port.
    pub ssh_connection: Option<String>,
    /// The client's command with assignment values redacted; `None` for an interactive login.
    pub command: Option<String>,
    /// `accept`, `reject`, `probe`, or `error` when the gate itself failed.
    pub decision: String,
    pub reason: Option<String>,
    pub tokens: Vec<String>,
    pub dropped_env: Vec<String>,
    pub options: Vec<OptionRecord>,
    pub engine_argv: Option<Vec<String>>,
    /// `borg1` or `borg2`: the generation of borg the client asked for, once its command
    /// said (absent for probes, logins and commands that are no borg `serve`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// borg 2: the repository the engine serves, resolved as borg resolves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptionRecord {
    pub option: String,
    pub action: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

fn decision_event() -> String {
    DECISION.to_owned()
}

/// Facts about the connection that the pure gate does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context<'a> {
    pub time: SystemTime,
    /// The id the engine gets with `--session-id`, in its record too.
    pub session_id: &'a SessionId,
    pub policy_file: &'a Path,
    pub pid: u32,
    pub ssh_connection: Option<&'a str>,
    /// The key's `--name` from the forced command (checked, or refused before this is built).
    pub key_name: Option<&'a str>,
    /// The raw command, used only when it could not be split into redactable words.
    pub raw_command: Option<&'a [u8]>,
}

impl AuditRecord {
    /// The record for a judged command.
    pub fn for_judgement(
        context: &Context<'_>,
        policy_name: &str,
        judgement: &Judgement,
        engine_argv: Option<Vec<String>>,
    ) -> AuditRecord {
        let command = context.raw_command.map(|raw| {
            if judgement.tokens.is_empty() {
                crate::gate::command::redact_unsplit(&String::from_utf8_lossy(raw))
            } else {
                crate::gate::command::display_words(&judgement.tokens)
            }
        });
        let reason = match &judgement.decision {
            Decision::Reject(refusal) => Some(refusal.to_string()),
            Decision::Accept(_) | Decision::Probe => None,
        };
        AuditRecord {
            v: RECORD_VERSION,
            time: crate::common::text::rfc3339(context.time),
            event: DECISION.to_owned(),
            session_id: Some(context.session_id.to_string()),
            policy_file: context.policy_file.display().to_string(),
            policy: Some(policy_name.to_owned()),
            name: context.key_name.map(str::to_owned),
            pid: context.pid,
            ssh_connection: context.ssh_connection.map(str::to_owned),
            command,
            decision: judgement.decision.label().to_owned(),
            reason,
            tokens: judgement.tokens.clone(),
            dropped_env: judgement.dropped_env.clone(),
            options: judgement
                .options
                .iter()
                .map(|v| OptionRecord {
                    option: v.option.clone(),
                    action: v.action.label().to_owned(),
                    reason: v.reason.clone(),
                })
                .collect(),
            engine_argv,
            protocol: judgement.protocol.map(|p| p.name().to_owned()),
            repository: match &judgement.decision {
                Decision::Accept(ServeArgs {
                    repository: Some(Repository::Resolved(path)),
                    ..
                }) => Some(path.display().to_string()),
                _ => None,
            },
        }
    }

    /// The record for a gate that could not judge at all (unusable policy, for example).
    pub fn for_error(context: &Context<'_>, reason: &str) -> AuditRecord {
        AuditRecord {
            v: RECORD_VERSION,
            time: crate::common::text::rfc3339(context.time),
            event: DECISION.to_owned(),
            session_id: Some(context.session_id.to_string()),
            policy_file: context.policy_file.display().to_string(),
            policy: None,
            name: context.key_name.map(str::to_owned),
            pid: context.pid,
            ssh_connection: context.ssh_connection.map(str::to_owned),
            command: context
                .raw_command
                .map(|raw| crate::gate::command::redact_unsplit(&String::from_utf8_lossy(raw))),
            decision: "error".to_owned(),
            reason: Some(reason.to_owned()),
            tokens: Vec::new(),
            dropped_env: Vec::new(),
            options: Vec::new(),
            engine_argv: None,
            protocol: None,
            repository: None,
        }
    }

    /// This session's record once the gate refuses it after judging (an audit sink failed):
    /// the same command and options, decision `error`, `reason`, and no engine. A command that
    /// was refused already keeps its own reason in front.
    pub fn refused_by_gate(&self, reason: &str) -> AuditRecord {
        let reason = match (self.decision.as_str(), &self.reason) {
            ("reject", Some(refusal)) => format!("{refusal}; and {reason}"),
            _ => reason.to_owned(),
        };
        AuditRecord {
            decision: "error".to_owned(),
            reason: Some(reason),
            engine_argv: None,
            ..self.clone()
        }
    }

    /// One line of JSON, newline included, ready for a single append.
    pub fn to_line(&self) -> String {
        // Serialising plain strings, numbers and vectors cannot fail.
        let mut line = serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"));
        line.push('\n');
        line
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::gate::{Action, OptionVerdict, Refusal};

    fn context<'a>(raw: Option<&'a [u8]>) -> Context<'a> {
        static ID: std::sync::LazyLock<SessionId> =
            std::sync::LazyLock::new(|| SessionId::parse("0123abcd").unwrap());
        Context {
            time: UNIX_EPOCH + Duration::from_micros(1_765_057_172_123_456),
            session_id: &ID,
            policy_file: Path::new("/etc/borg-gate/alice.toml"),
            pid: 42,
            ssh_connection: Some("192.0.2.1 50000 192.0.2.2 22"),
            key_name: None,
            raw_command: raw,
        }
    }

    #[test]
    fn record_is_one_line_even_with_control_characters() {
        let judgement = Judgement {
            decision: Decision::Reject(Refusal::Unreadable(
                crate::gate::command::SplitError::ControlCharacter {
                    byte: b'\n',
                    position: 4,
                },
            )),
            protocol: None,
            tokens: vec![],
            dropped_env: vec![],
            options: vec![],
        };
        let raw = b"borg\n{\"decision\":\"accept\"}\r\x1b[2J";
        let record = AuditRecord::for_judgement(&context(Some(raw)), "alice", &judgement, None);
        let line = record.to_line();
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.ends_with('\n'));
        assert!(!line.contains('\r') && !line.contains('\x1b'));
        let parsed: AuditRecord = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed, record);
        assert_eq!(parsed.decision, "reject");
    }

    #[test]
    fn record_never_contains_assignment_values() {
        let judgement = Judgement {
            decision: Decision::Probe,
            protocol: None,
            tokens: vec!["BORG_PASSPHRASE=<redacted>".into(), "true".into()],
            dropped_env: vec!["BORG_PASSPHRASE".into()],
            options: vec![],
        };
        let raw = b"BORG_PASSPHRASE=hunter2 true";
        let line =
            AuditRecord::for_judgement(&context(Some(raw)), "alice", &judgement, None).to_line();
        assert!(!line.contains("hunter2"), "{line}");
        assert!(
            line.contains("\"command\":\"BORG_PASSPHRASE=<redacted> true\""),
            "{line}"
        );
    }

    #[test]
    fn the_record_is_a_decision_event_with_the_session_id_and_old_records_still_read() {
        let line = AuditRecord::for_error(&context(None), "x").to_line();
        assert!(
            line.starts_with(r#"{"v":1,"time":"2025-12-06T21:39:32.123456Z","event":"decision","session_id":"0123abcd","#),
            "{line}"
        );
        let old = r#"{"v":1,"time":"t","policy_file":"/p","policy":"p","pid":1,"ssh_connection":null,"command":null,"decision":"accept","reason":null,"tokens":[],"dropped_env":[],"options":[],"engine_argv":null}"#;
        let parsed: AuditRecord = serde_json::from_str(old).unwrap();
        assert_eq!(parsed.event, "decision");
        assert_eq!(parsed.session_id, None);
    }

    #[test]
    fn time_is_rfc3339_utc() {
        let record = AuditRecord::for_error(&context(None), "policy unreadable");
        assert_eq!(record.time, "2025-12-06T21:39:32.123456Z");
        assert_eq!(record.decision, "error");
        assert_eq!(record.command, None);
    }

    #[test]
    fn options_carry_action_and_reason() {
        let judgement = Judgement {
            decision: Decision::Probe,
            protocol: None,
            tokens: vec!["true".into()],
            dropped_env: vec![],
            options: vec![OptionVerdict {
                option: "--umask=000".into(),
                action: Action::Dropped,
                reason: "the server decides this setting".into(),
            }],
        };
        let line = AuditRecord::for_judgement(&context(Some(b"true")), "alice", &judgement, None)
            .to_line();
        assert!(line.contains(r#"{"option":"--umask=000","action":"dropped","reason":"the server decides this setting"}"#), "{line}");
    }
}
