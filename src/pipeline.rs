//! The gate pipeline: policy, command, decision, audit, exec, in the order the specification
//! gives.
//!
//! [`run_gate`] is what `authorized_keys` runs. [`explain`] follows the same steps up to the
//! audit record and returns them instead of writing and executing.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::audit::{AuditError, AuditRecord, Context, SessionId, write_record};
use crate::engine::borg2::backend::{BackendRefusal, resolve_backend};
use crate::engine::paths::{PathContext, check_no_foreign_writers};
use crate::exec::{
    Account, EngineCommand, ExecError, account_named, current_account, engine_command, exec_engine,
    home_of,
};
use crate::gate::{Decision, Judgement, Refusal, judge};
use crate::policy::key_name::describe_bad_name;
use crate::policy::{KeyContext, KeyName, LoadError, OnAuditFailure, Policy, load_policy_for_key};

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
    /// The forced command's `--name` is not a key name (the message says why).
    KeyName(String),
    Policy(LoadError),
    Audit(AuditError),
    NoAccount(u32),
    /// `explain --user NAME` names no account.
    NoSuchUser(String),
    Exec(ExecError),
}

impl fmt::Display for GateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GateError::KeyName(message) => write!(f, "{message}; no session is allowed"),
            GateError::Policy(error) => write!(f, "{error}; no session is allowed"),
            GateError::Audit(error) => write!(f, "refused: {}", unaudited(error)),
            GateError::NoAccount(uid) => {
                write!(f, "uid {uid} has no entry in the password database")
            }
            GateError::NoSuchUser(name) => write!(f, "there is no account named {name:?}"),
            GateError::Exec(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for GateError {}

/// Why a session that was judged cannot be audited, as the client and the audit record say it.
fn unaudited(error: &AuditError) -> String {
    format!("this session cannot be audited ({error})")
}

/// Gate mode: `--policy FILE`, and `--name NAME` when the key line gives one.
pub fn run_gate(policy_path: &Path, key_name: Option<&str>) -> Result<GateExit, GateError> {
    let original_command = std::env::var_os("SSH_ORIGINAL_COMMAND").map(OsString::into_vec);
    let ssh_connection = std::env::var("SSH_CONNECTION").ok();
    let session_id = SessionId::generate();
    let context = Context {
        time: SystemTime::now(),
        session_id: &session_id,
        policy_file: policy_path,
        pid: std::process::id(),
        ssh_connection: ssh_connection.as_deref(),
        key_name: None,
        raw_command: original_command.as_deref(),
    };

    // 1. Check the key's name and load the policy; fail closed.
    let key = check_key_name(key_name)
        .inspect_err(|error| audit_unusable_policy(&context, &error.to_string()))?;
    let context = Context {
        key_name: key.as_ref().map(KeyName::as_str),
        ..context
    };
    let policy = load_policy_for_key(policy_path, key_context(key.as_ref())).map_err(|error| {
        audit_unusable_policy(&context, &error.to_string());
        GateError::Policy(error)
    })?;

    // 2-8. Read, split and judge the client's command (pure). The built-in engine learns the
    //      session's id, for its own record of the session.
    let judgement = judge(&policy, original_command.as_deref());

    // 9. A borg 2 command names its repository: resolve the path as borg does, for the
    //    account, and check it against the restrictions. Then the engine's command.
    let account = account_for(&judgement, None)?;
    let judgement = resolve_repository(&policy, judgement, account.as_ref());
    let engine = engine_for(&policy, &judgement, account.as_ref())
        .map(|engine| engine.for_session(&session_id));

    // 10. Write the audit record before anything runs. When a sink fails and that refuses
    //    the session, the sinks that work record the refusal instead.
    let record = AuditRecord::for_judgement(
        &context,
        &policy.name,
        &judgement,
        engine.as_ref().map(|e| e.argv.clone()),
    );
    let refusal = |error: &AuditError| record.refused_by_gate(&unaudited(error));
    if let Err(error) = write_record(&policy.audit, &record, &refusal) {
        if policy.audit.on_failure == OnAuditFailure::Refuse {
            return Err(GateError::Audit(error));
        }
    }
    // Count the audited decision for monitoring; best effort, never fails the session.
    crate::metrics::record_session(&policy, &judgement);

    // 11. Become the engine, answer the probe, or refuse.
    match (judgement.decision, engine) {
        (Decision::Accept(_), Some(engine)) => Err(GateError::Exec(exec_engine(&engine))),
        (Decision::Accept(_), None) => Err(GateError::NoAccount(nix::unistd::geteuid().as_raw())),
        (Decision::Probe, _) => Ok(GateExit::Probe),
        (Decision::Reject(refusal), _) => Ok(GateExit::Refused(refusal)),
    }
}

/// The account an accepted command runs as: `user`, by default the account the gate runs
/// as. `None` when nothing will run.
fn account_for(judgement: &Judgement, user: Option<&str>) -> Result<Option<Account>, GateError> {
    if !matches!(judgement.decision, Decision::Accept(_)) {
        return Ok(None);
    }
    match user {
        None => current_account()
            .ok_or(GateError::NoAccount(nix::unistd::geteuid().as_raw()))
            .map(Some),
        Some(name) => account_named(name)
            .ok_or_else(|| GateError::NoSuchUser(name.to_owned()))
            .map(Some),
    }
}

/// borg 2's repository path, resolved as `borg serve --rest` resolves it for the account:
/// `~` and `~user` expanded, relative to the account's home (sshd's working directory),
/// symlinks followed; then the policy's restrictions, and under restrictions no directory on
/// the way that another account could change (`engine/paths.rs`, shared with the engines).
fn resolve_repository(
    policy: &Policy,
    judgement: Judgement,
    account: Option<&Account>,
) -> Judgement {
    let (Some(requested), Some(account)) = (judgement.requested_repository(), account) else {
        return judgement;
    };
    let context = PathContext {
        base_dir: account.home.clone(),
        user: account.name.clone(),
        cwd: account.home.clone(),
        home_of: &home_of,
    };
    let forced = &policy.repository;
    let resolved = resolve_backend(
        Some(&format!("FILE:{requested}")),
        &context,
        &forced.restrict_to_paths,
        &forced.restrict_to_repositories,
    )
    .map_err(|refusal| match refusal {
        BackendRefusal::NotAllowed(path) => Refusal::PathNotAllowed { path, reason: None },
        other => Refusal::PathNotAllowed {
            path: requested.to_owned(),
            reason: Some(other.to_string()),
        },
    })
    .and_then(|path| trusted_path(path, forced.is_restricted(), account.uid));
    judgement.with_repository(policy, resolved)
}

/// Under restrictions, the engine opens the repository by its path after this check: refuse a
/// path another account could redirect with a symlink swap.
fn trusted_path(path: PathBuf, restricted: bool, uid: u32) -> Result<PathBuf, Refusal> {
    if !restricted {
        return Ok(path);
    }
    match check_no_foreign_writers(&path, uid) {
        Ok(()) => Ok(path),
        Err(unsafe_path) => Err(Refusal::PathNotAllowed {
            path: path.to_string_lossy().into_owned(),
            reason: Some(unsafe_path.to_string()),
        }),
    }
}

/// The engine's command for an accepted decision whose arguments are complete.
fn engine_for(
    policy: &Policy,
    judgement: &Judgement,
    account: Option<&Account>,
) -> Option<EngineCommand> {
    let (Decision::Accept(args), Some(account)) = (&judgement.decision, account) else {
        return None;
    };
    if judgement.requested_repository().is_some() {
        // Fails closed: a borg 2 repository that was never resolved runs nothing.
        return None;
    }
    let own_env = |name: &str| std::env::var(name).ok();
    Some(engine_command(policy, args, account, &own_env))
}

/// The forced command's `--name`, checked.
fn check_key_name(text: Option<&str>) -> Result<Option<KeyName>, GateError> {
    text.map(|text| {
        KeyName::parse(text).map_err(|error| GateError::KeyName(describe_bad_name(text, &error)))
    })
    .transpose()
}

fn key_context(key: Option<&KeyName>) -> KeyContext<'_> {
    key.map_or(KeyContext::Unnamed, KeyContext::Named)
}

/// Without a policy there is no audit file to write; syslog still hears about it.
fn audit_unusable_policy(context: &Context<'_>, reason: &str) {
    let record = AuditRecord::for_error(context, reason);
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

/// What `explain` is asked about.
#[derive(Debug, Clone, Copy)]
pub struct ExplainRequest<'a> {
    pub policy: &'a Path,
    /// The forced command's `--name`.
    pub key_name: Option<&'a str>,
    /// The account sshd runs the gate as (default: whoever runs `explain`).
    pub user: Option<&'a str>,
    /// The client's command, as SSH_ORIGINAL_COMMAND would hold it.
    pub command: &'a str,
}

pub fn explain(request: ExplainRequest<'_>) -> Result<Explanation, GateError> {
    let key = check_key_name(request.key_name)?;
    let policy = load_policy_for_key(request.policy, key_context(key.as_ref()))
        .map_err(GateError::Policy)?;
    let judgement = judge(&policy, Some(request.command.as_bytes()));
    let session_id = SessionId::generate();
    let account = account_for(&judgement, request.user)?;
    let judgement = resolve_repository(&policy, judgement, account.as_ref());
    let engine = engine_for(&policy, &judgement, account.as_ref())
        .map(|engine| engine.for_session(&session_id));
    let context = Context {
        time: SystemTime::now(),
        session_id: &session_id,
        policy_file: request.policy,
        pid: std::process::id(),
        ssh_connection: None,
        key_name: key.as_ref().map(KeyName::as_str),
        raw_command: Some(request.command.as_bytes()),
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
        if let Some(name) = &record.name {
            if self.policy.uses_key_name {
                writeln!(
                    f,
                    "key name:    {name} ({{name}} in the policy becomes {name})"
                )?;
            } else {
                writeln!(
                    f,
                    "key name:    {name} (audited; the policy does not use {{name}})"
                )?;
            }
        }
        writeln!(
            f,
            "command:     {}",
            record.command.as_deref().unwrap_or("(none)")
        )?;
        if let Some(protocol) = self.judgement.protocol {
            writeln!(f, "protocol:    {protocol} ({})", protocol.command())?;
        }
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
        if let Some(repository) = &record.repository {
            writeln!(f, "repository:  {repository} (resolved for the account)")?;
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
                crate::engine::borg1::repository::units::format_file_size(
                    i64::try_from(quota.limit).unwrap_or(i64::MAX)
                ),
                quota.ledger.display()
            )?;
        }
        Ok(())
    }
}
