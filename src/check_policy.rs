//! `borg-gate check-policy`: validate policy files and report every problem with its place;
//! with `--user`, also as the backup account will meet them ([`crate::admin::as_account`]).

use std::path::Path;

use crate::admin::as_account::{self, Account, Request};
use crate::admin::policies::self_owned_finding;
use crate::admin::{Finding, Severity};
use crate::exec::is_executable;
use crate::policy::key_name::PLACEHOLDER;
use crate::policy::load::{default_policy_name, read_policy_text, read_policy_text_trusting};
use crate::policy::{EngineProgram, KeyContext, KeyName, Policy, parse_policy_for_key};

/// Whom and what to check a file for.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions<'a> {
    /// `--name`: expand `{name}` as the forced command would.
    pub key_name: Option<&'a KeyName>,
    /// `--user`: judge trust and access as this account.
    pub account: Option<&'a Account>,
}

/// The report for one file: errors make it unusable, warnings deserve a look.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FileReport {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    pub policy: Option<Policy>,
}

/// Checks one file exactly as gate mode would load it, plus facts of the running system.
pub fn check_file(path: &Path, options: CheckOptions<'_>) -> FileReport {
    let read = match options.account {
        Some(account) => read_policy_text_trusting(path, account.uid),
        None => read_policy_text(path),
    };
    let (text, facts) = match read {
        Ok(read) => read,
        Err(error) => {
            // The loader's messages name the file already.
            return FileReport {
                errors: vec![error.to_string()],
                ..FileReport::default()
            };
        }
    };
    let mut report = check_text(path, &text, options);
    if let Some(account) = options
        .account
        .filter(|a| a.uid != 0 && a.uid == facts.owner)
    {
        report.warnings.insert(
            0,
            plain(&self_owned_finding(
                crate::admin::Place::file(path),
                path,
                &account.name,
            )),
        );
    }
    report
}

/// Checks the text of a policy that is (or is about to be) at `path`: validation as gate
/// mode does it, then facts of the running system, and with an account, what that account
/// will meet. `borg-gate keys add` checks the policy it is going to write with this.
pub fn check_text(path: &Path, text: &str, options: CheckOptions<'_>) -> FileReport {
    let mut report = FileReport::default();
    let key = options
        .key_name
        .map_or(KeyContext::Template, KeyContext::Named);
    let policy = match parse_policy_for_key(text, default_policy_name(path), key) {
        Ok(policy) => policy,
        Err(errors) => {
            report.errors = errors.render(path, text);
            return report;
        }
    };
    report.warnings.extend(system_warnings(path, &policy));
    if let Some(account) = options.account {
        let request = Request::for_policy(path, &policy);
        match as_account::check(account, std::slice::from_ref(&request)) {
            Ok(found) => {
                let place = crate::admin::Place::file(path);
                for found in found
                    .iter()
                    .flat_map(|found| as_account::findings(&place, &request, found, account))
                {
                    match found.severity {
                        Severity::Error => report.errors.push(plain(&found)),
                        Severity::Warning => report.warnings.push(plain(&found)),
                    }
                }
            }
            Err(error) => report.errors.push(format!("{}: {error}", path.display())),
        }
    }
    report.policy = Some(policy);
    report
}

/// A finding without its severity word: `file: problem; fix`.
fn plain(finding: &Finding) -> String {
    format!("{}: {}; {}", finding.place, finding.problem, finding.fix)
}

/// Problems that are not in the file itself but in the system it will run on.
fn system_warnings(path: &Path, policy: &Policy) -> Vec<String> {
    let mut warnings = Vec::new();
    let engines = [
        ("engine program", &policy.engine.program),
        ("engine borg2_program", &policy.engine.borg2_program),
    ];
    for (key, engine) in engines {
        if let EngineProgram::External(program) = engine {
            if !is_executable(program) {
                warnings.push(format!(
                    "{}: {key} {} is not an executable file on this system",
                    path.display(),
                    program.display()
                ));
            }
        }
    }
    let restricted = policy
        .repository
        .restrict_to_paths
        .iter()
        .chain(&policy.repository.restrict_to_repositories)
        // A template's paths exist only per key (check with --name).
        .filter(|dir| !dir.to_string_lossy().contains(PLACEHOLDER));
    for dir in restricted {
        match std::fs::symlink_metadata(dir) {
            Ok(meta) if meta.file_type().is_symlink() => warnings.push(format!(
                "{}: {} is a symlink; borg compares resolved paths, so name the real directory",
                path.display(),
                dir.display()
            )),
            Ok(_) => {}
            Err(_) => warnings.push(format!(
                "{}: {} does not exist yet",
                path.display(),
                dir.display()
            )),
        }
    }
    if let Some(quota) = &policy.repository.key_quota {
        let dir = quota.ledger.parent().unwrap_or(std::path::Path::new("/"));
        if !dir.is_dir() {
            warnings.push(format!(
                "{}: the directory of key_quota_ledger, {}, does not exist; create it, owned by the account the engine runs as",
                path.display(),
                dir.display()
            ));
        }
    }
    warnings
}
