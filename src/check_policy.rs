//! `borg-gate check-policy`: validate policy files and report every problem with its place.

use std::path::Path;

use crate::exec::is_executable;
use crate::policy::load::read_policy_text;
use crate::policy::{EngineProgram, Policy, parse_policy};

/// The report for one file: errors make it unusable, warnings deserve a look.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FileReport {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    pub policy: Option<Policy>,
}

/// Checks one file exactly as gate mode would load it, plus facts of the running system.
pub fn check_file(path: &Path) -> FileReport {
    let mut report = FileReport::default();
    let text = match read_policy_text(path) {
        Ok((text, _)) => text,
        Err(error) => {
            report.errors.push(format!("{}: {error}", path.display()));
            return report;
        }
    };
    let default_name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("policy");
    match parse_policy(&text, default_name) {
        Ok(policy) => {
            report.warnings = system_warnings(path, &policy);
            report.policy = Some(policy);
        }
        Err(errors) => report.errors = errors.render(path, &text),
    }
    report
}

/// Problems that are not in the file itself but in the system it will run on.
fn system_warnings(path: &Path, policy: &Policy) -> Vec<String> {
    let mut warnings = Vec::new();
    if let EngineProgram::External(program) = &policy.engine.program {
        if !is_executable(program) {
            warnings.push(format!(
                "{}: engine program {} is not an executable file on this system",
                path.display(),
                program.display()
            ));
        }
    }
    let restricted = policy
        .repository
        .restrict_to_paths
        .iter()
        .chain(&policy.repository.restrict_to_repositories);
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
