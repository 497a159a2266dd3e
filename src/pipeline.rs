//! The gate pipeline: policy, command, decision, audit, exec, in the order the specification
//! gives.
//!
//! [`run_gate`] is what `authorized_keys` runs. [`explain`] follows the same steps up to the
//! audit record and returns them instead of writing and executing.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::time::SystemTime;

use crate::audit::{AuditError, AuditRecord, Context, write_record};
use crate::exec::{EngineCommand, ExecError, current_account, engine_command, exec_engine};
use crate::gate::{Decision, Judgement, Refusal, judge};
use crate::policy::{LoadError, OnAuditFailure, Policy, load_policy};

/// How a gate session ended, when it did not become the engine.
#[derive(Debug)]
pub enum GateExit {
    /// The connectivity probe: exit 0.
    Probe,
    /// The command was refused; the sentence goes to the client.
    Refused(Refusal),
}

/// The gate could not judge or could not carry out its decision. Every variant fails closed.
#[derive(Debug)]
pub enum GateError {
    Policy(LoadError),
    Audit(AuditError),
    NoAccount(u32),
    Exec(ExecError),
}

impl fmt::Display for GateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GateError::Policy(error) => write!(f, "{error}; no session is allowed"),
            GateError::Audit(error) => {
                write!(f, "refused: this session cannot be audited ({error})")
            }
            GateError::NoAccount(uid) => {
                write!(f, "uid {uid} has no entry in the password database")
            }
            GateError::Exec(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for GateError {}

/// Gate mode.
pub fn run_gate(policy_path: &Path) -> Result<GateExit, GateError> {
    let original_command = std::env::var_os("SSH_ORIGINAL_COMMAND").map(OsString::into_vec);
    let ssh_connection = std::env::var("SSH_CONNECTION").ok();
    let context = Context {
        time: SystemTime::now(),
        policy_file: policy_path,
        pid: std::process::id(),
        ssh_connection: ssh_connection.as_deref(),
        raw_command: original_command.as_deref(),
    };

    // 1. Load the policy; fail closed.
    let policy = load_policy(policy_path).map_err(|error| {
        audit_unusable_policy(&context, &error);
        GateError::Policy(error)
    })?;

    // 2-8. Read, split and judge the client's command (pure).
    let judgement = judge(&policy, original_command.as_deref());
    let engine = engine_for(&policy, &judgement)?;

    // 9. Write the audit record before anything runs.
    let record = AuditRecord::for_judgement(
        &context,
        &policy.name,
        &judgement,
        engine.as_ref().map(|e| e.argv.clone()),
    );
    if let Err(error) = write_record(&policy.audit, &record) {
        if policy.audit.on_failure == OnAuditFailure::Refuse {
            return Err(GateError::Audit(error));
        }
    }
    // Count the audited decision for monitoring; best effort, never fails the session.
    crate::metrics::record_session(&policy, &judgement);

    // 10. Become the engine, answer the probe, or refuse.
    match (judgement.decision, engine) {
        (Decision::Accept(_), Some(engine)) => Err(GateError::Exec(exec_engine(&engine))),
        (Decision::Accept(_), None) => Err(GateError::NoAccount(nix::unistd::geteuid().as_raw())),
        (Decision::Probe, _) => Ok(GateExit::Probe),
        (Decision::Reject(refusal), _) => Ok(GateExit::Refused(refusal)),
    }
}

/// The engine's command for an accepted decision.
fn engine_for(policy: &Policy, judgement: &Judgement) -> Result<Option<EngineCommand>, GateError> {
    let Decision::Accept(args) = &judgement.decision else {
        return Ok(None);
    };
    let uid = nix::unistd::geteuid().as_raw();
    let account = current_account().ok_or(GateError::NoAccount(uid))?;
    let own_env = |name: &str| std::env::var(name).ok();
    Ok(Some(engine_command(policy, args, &account, &own_env)))
}

/// Without a policy there is no audit file to write; syslog still hears about it.
fn audit_unusable_policy(context: &Context<'_>, error: &LoadError) {
    let record = AuditRecord::for_error(context, &error.to_string());
    let _ = crate::audit::sink::send_syslog(
        Path::new(crate::audit::sink::SYSLOG_SOCKET),
        &record,
        &record.to_line(),
    );
}

/// What gate mode would do with `command`, without writing or running anything.
#[derive(Debug)]
pub struct Explanation {
    pub policy: Policy,
    pub judgement: Judgement,
    pub engine: Option<EngineCommand>,
    pub record: AuditRecord,
}

pub fn explain(policy_path: &Path, command: &str) -> Result<Explanation, GateError> {
    let policy = load_policy(policy_path).map_err(GateError::Policy)?;
    let judgement = judge(&policy, Some(command.as_bytes()));
    let engine = engine_for(&policy, &judgement)?;
    let context = Context {
        time: SystemTime::now(),
        policy_file: policy_path,
        pid: std::process::id(),
        ssh_connection: None,
        raw_command: Some(command.as_bytes()),
    };
    let record = AuditRecord::for_judgement(
        &context,
        &policy.name,
        &judgement,
        engine.as_ref().map(|e| e.argv.clone()),
    );
    Ok(Explanation {
        policy,
        judgement,
        engine,
        record,
    })
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let record = &self.record;
        writeln!(
            f,
            "policy:      {} ({})",
            self.policy.name, record.policy_file
        )?;
        writeln!(
            f,
            "command:     {}",
            record.command.as_deref().unwrap_or("(none)")
        )?;
        let tokens: Vec<String> = record.tokens.iter().map(|t| format!("{t:?}")).collect();
        writeln!(f, "tokens:      {}", tokens.join(" "))?;
        if !record.dropped_env.is_empty() {
            writeln!(
                f,
                "dropped env: {} (names only; values are never used)",
                record.dropped_env.join(" ")
            )?;
        }
        if !record.options.is_empty() {
            writeln!(f, "options:")?;
            for option in &record.options {
                match option.reason.as_str() {
                    "" => writeln!(f, "  {:<9} {}", option.action, option.option)?,
                    reason => writeln!(f, "  {:<9} {}  ({reason})", option.action, option.option)?,
                }
            }
        }
        match &self.judgement.decision {
            Decision::Reject(refusal) => writeln!(f, "decision:    reject: {refusal}")?,
            Decision::Probe => writeln!(f, "decision:    probe (exit 0, nothing runs)")?,
            Decision::Accept(_) => writeln!(f, "decision:    accept")?,
        }
        if let Some(engine) = &self.engine {
            writeln!(f, "engine:      {}", engine.program.display())?;
            writeln!(
                f,
                "engine argv: {}",
                crate::gate::command::display_words(&engine.argv)
            )?;
            writeln!(f, "engine env:")?;
            for (name, value) in &engine.env {
                writeln!(f, "  {name}={value}")?;
            }
            writeln!(f, "engine umask: {:04o}", engine.umask)?;
        }
        if let Some(quota) = &self.policy.repository.key_quota {
            writeln!(
                f,
                "key quota:   {} across every repository this key reaches (ledger {})",
                crate::engine::repository::units::format_file_size(
                    i64::try_from(quota.limit).unwrap_or(i64::MAX)
                ),
                quota.ledger.display()
            )?;
        }
        Ok(())
    }
}
