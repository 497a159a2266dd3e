//! `borg-gate doctor`: reads authorized_keys, the policies its keys name, sshd_config (with
//! its `Include`s) and the backup account, and hands them to the pure rules.
//!
//! Everything here is I/O: which file, which account, which `stat`. The judgement lives in
//! [`super::authorized_keys`], [`super::sshd_config`] and [`super::policies`].

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fmt;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::authorized_keys::{self, ClassifiedKey, ForcedCommand};
use super::policies::{
    self, Identity, KeyScope, Ownership, PathState, Restriction, access_findings,
    load_error_finding, metrics_finding, path_finding,
};
use super::sshd_config::{self, Account, ConfigLine};
use super::{Finding, Place};
use crate::gate::command::program_basename;
use crate::policy::load::read_policy_text;
use crate::policy::validate::{MAX_POLICY_SIZE, line_and_column};
use crate::policy::{LoadError, Policy, parse_policy};

/// sshd's default configuration file, and the directory relative `Include`s start from.
pub const DEFAULT_SSHD_CONFIG: &str = "/etc/ssh/sshd_config";
const SSHD_DIR: &str = "/etc/ssh";
/// sshd's limit on nested `Include`s.
const MAX_INCLUDE_DEPTH: usize = 16;
/// Larger authorized_keys or sshd_config files are not read.
const MAX_FILE_SIZE: u64 = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoctorOptions {
    pub authorized_keys: PathBuf,
    pub sshd_config: PathBuf,
    /// The account the keys log in to; by default the owner of the authorized_keys file.
    pub user: Option<String>,
}

/// Why doctor could not even start.
#[derive(Debug)]
pub enum DoctorError {
    NoSuchUser(String),
    NoHome,
}

impl fmt::Display for DoctorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DoctorError::NoSuchUser(name) => write!(f, "there is no account named {name:?}"),
            DoctorError::NoHome => f.write_str(
                "cannot tell whose ~/.ssh/authorized_keys to check; pass --authorized-keys FILE",
            ),
        }
    }
}

impl std::error::Error for DoctorError {}

/// `~/.ssh/authorized_keys` of `user`, or of the account doctor runs as.
pub fn default_authorized_keys(user: Option<&str>) -> Result<PathBuf, DoctorError> {
    let account = match user {
        Some(name) => nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .ok_or_else(|| DoctorError::NoSuchUser(name.to_owned()))?,
        None => nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .ok_or(DoctorError::NoHome)?,
    };
    Ok(account.dir.join(".ssh/authorized_keys"))
}

/// Every finding, in the order: authorized_keys, policies, sshd and the account.
pub fn run(options: &DoctorOptions) -> Result<Vec<Finding>, DoctorError> {
    let mut findings = Vec::new();
    let keys_path = &options.authorized_keys;
    let keys_text = match read_bounded(keys_path) {
        Ok(text) => Some(text),
        Err(error) => {
            findings.push(Finding::error(
                Place::file(keys_path),
                format!(
                    "cannot read it: {}",
                    crate::policy::load::plain_io_error(&error)
                ),
                match error.kind() {
                    std::io::ErrorKind::PermissionDenied => {
                        "run doctor as root or as the backup account"
                    }
                    _ => {
                        "name the backup account's file with --authorized-keys FILE or --user NAME"
                    }
                },
            ));
            None
        }
    };
    let account = backup_account(options)?;
    if let Some(text) = &keys_text {
        findings.extend(keys_file_mode(keys_path));
        let entries = authorized_keys::parse_file(text);
        findings.extend(authorized_keys::lint(keys_path, &entries));
        let keys = authorized_keys::classify(&entries);
        findings.extend(policy_findings(keys_path, &keys, account.as_ref()));
    }
    findings.extend(sshd_findings(&options.sshd_config));
    if let Some(account) = &account {
        findings.extend(sshd_config::account_findings(
            &Place::file(Path::new("/etc/passwd")),
            &account.account,
        ));
    }
    let mut unique = Vec::with_capacity(findings.len());
    for finding in findings {
        if !unique.contains(&finding) {
            unique.push(finding);
        }
    }
    Ok(unique)
}

/// The account, its home and its groups.
struct BackupAccount {
    account: Account,
    home: PathBuf,
    identity: Identity,
}

fn backup_account(options: &DoctorOptions) -> Result<Option<BackupAccount>, DoctorError> {
    let user = match &options.user {
        Some(name) => Some(
            nix::unistd::User::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| DoctorError::NoSuchUser(name.clone()))?,
        ),
        None => fs::metadata(&options.authorized_keys)
            .ok()
            .and_then(|meta| {
                nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(meta.uid()))
                    .ok()
                    .flatten()
            }),
    };
    let Some(user) = user else {
        return Ok(None);
    };
    let groups = CString::new(user.name.clone())
        .ok()
        .and_then(|name| nix::unistd::getgrouplist(&name, user.gid).ok())
        .map(|gids| gids.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_else(|| vec![user.gid.as_raw()]);
    let resolved_shell = fs::canonicalize(&user.shell).ok();
    let shell_is_executable = crate::exec::is_executable(&user.shell);
    Ok(Some(BackupAccount {
        identity: Identity {
            uid: user.uid.as_raw(),
            groups,
        },
        home: user.dir.clone(),
        account: Account {
            name: user.name,
            uid: user.uid.as_raw(),
            shell: user.shell,
            resolved_shell,
            shell_is_executable,
        },
    }))
}

/// sshd's StrictModes refuses an authorized_keys file others may write.
fn keys_file_mode(path: &Path) -> Option<Finding> {
    let mode = fs::metadata(path).ok()?.mode();
    (mode & 0o022 != 0).then(|| {
        Finding::error(
            Place::file(path),
            format!(
                "the file is writable by group or others (mode {:04o}), so sshd (StrictModes) ignores every key in it",
                mode & 0o7777
            ),
            format!("chmod go-w {}", path.display()),
        )
    })
}

fn read_bounded(path: &Path) -> std::io::Result<String> {
    let mut bytes = Vec::new();
    fs::File::open(path)?
        .take(MAX_FILE_SIZE)
        .read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn ownership(path: &Path) -> Option<Ownership> {
    fs::metadata(path).ok().map(|meta| Ownership {
        owner: meta.uid(),
        group: meta.gid(),
        mode: meta.mode(),
    })
}

fn path_state(path: &Path) -> PathState {
    match fs::symlink_metadata(path) {
        Err(_) => PathState::Missing,
        Ok(meta) if meta.file_type().is_symlink() => PathState::Symlink,
        Ok(meta) if meta.is_dir() => PathState::Directory,
        Ok(_) => PathState::NotDirectory,
    }
}

/// Loads each policy once, checks it as the backup account would use it, and checks what
/// every borg key can reach.
fn policy_findings(
    keys_path: &Path,
    keys: &[ClassifiedKey<'_>],
    account: Option<&BackupAccount>,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut loaded: BTreeMap<PathBuf, Option<Policy>> = BTreeMap::new();
    let mut scopes = Vec::new();
    let mut names = Vec::new();
    for key in keys {
        let place = Place::line(keys_path, key.key.line);
        match &key.command {
            Some(ForcedCommand::Gate { policy, .. }) => {
                let path = match (policy.is_relative(), account) {
                    (true, Some(account)) => account.home.join(policy),
                    _ => policy.clone(),
                };
                if !loaded.contains_key(&path) {
                    let (policy, problems) = load_as_backup_account(&place, &path, account);
                    findings.extend(problems);
                    if let Some(policy) = &policy {
                        findings.extend(checks_of_loaded_policy(&path, policy, account));
                    }
                    loaded.insert(path.clone(), policy);
                }
                if let Some(Some(policy)) = loaded.get(&path) {
                    names.push((path.clone(), policy.name.clone()));
                    let repository = &policy.repository;
                    scopes.push(KeyScope {
                        place,
                        policy_file: Some(path.clone()),
                        label: format!("policy {}", policy.name),
                        paths: repository
                            .restrict_to_paths
                            .iter()
                            .chain(&repository.restrict_to_repositories)
                            .cloned()
                            .collect(),
                    });
                }
            }
            Some(ForcedCommand::Serve {
                program,
                config: Ok(config),
            }) => {
                findings.extend(restricted_paths(
                    &place,
                    &config.restrict_to_paths,
                    &config.restrict_to_repositories,
                ));
                scopes.push(KeyScope {
                    place,
                    policy_file: None,
                    label: format!("{} serve", program_basename(program)),
                    paths: config
                        .restrict_to_paths
                        .iter()
                        .chain(&config.restrict_to_repositories)
                        .cloned()
                        .collect(),
                });
            }
            _ => {}
        }
    }
    findings.extend(policies::overlapping_scopes(
        &scopes
            .into_iter()
            .filter(|s| !s.paths.is_empty())
            .collect::<Vec<_>>(),
    ));
    findings.extend(policies::shared_names(&names));
    findings
}

/// Reads a policy with the gate's own loader; when the gate would accept a file that root
/// would not (it belongs to the backup account), reads it the same way but judges trust from
/// the backup account's view.
fn load_as_backup_account(
    place: &Place,
    path: &Path,
    account: Option<&BackupAccount>,
) -> (Option<Policy>, Vec<Finding>) {
    let backup_uid = account.map(|a| a.identity.uid);
    let text = match read_policy_text(path) {
        Ok((text, _)) => text,
        Err(error) => {
            let finding = load_error_finding(place.clone(), path, &error, backup_uid);
            let owned_by_account =
                matches!(&error, LoadError::Owner { owner, .. } if Some(*owner) == backup_uid);
            if !owned_by_account {
                return (None, vec![finding]);
            }
            match read_owned_by_account(path) {
                Some(text) => {
                    let (policy, mut problems) = parse_with_places(path, &text);
                    problems.insert(0, finding);
                    return (policy, problems);
                }
                None => return (None, vec![finding]),
            }
        }
    };
    parse_with_places(path, &text)
}

/// The gate's size and encoding limits, for a file whose trust was judged already.
fn read_owned_by_account(path: &Path) -> Option<String> {
    let mut bytes = Vec::new();
    fs::File::open(path)
        .ok()?
        .take(MAX_POLICY_SIZE as u64 + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    (bytes.len() <= MAX_POLICY_SIZE)
        .then(|| String::from_utf8(bytes).ok())
        .flatten()
}

/// The gate's validation, with each error placed on its line of the policy file.
fn parse_with_places(path: &Path, text: &str) -> (Option<Policy>, Vec<Finding>) {
    let default_name = path
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or("policy");
    match parse_policy(text, default_name) {
        Ok(policy) => (Some(policy), Vec::new()),
        Err(errors) => {
            let findings = errors
                .0
                .iter()
                .map(|error| {
                    let place = match &error.span {
                        Some(span) => Place::line(path, line_and_column(text, span.start).0),
                        None => Place::file(path),
                    };
                    Finding::error(
                        place,
                        format!(
                            "{} (the gate refuses every session with this policy)",
                            error.message
                        ),
                        format!("fix it and run `borg-gate check-policy {}`", path.display()),
                    )
                })
                .collect();
            (None, findings)
        }
    }
}

fn checks_of_loaded_policy(
    path: &Path,
    policy: &Policy,
    account: Option<&BackupAccount>,
) -> Vec<Finding> {
    let place = Place::file(path);
    let mut findings = Vec::new();
    findings.extend(policies::unrestricted_finding(place.clone(), policy));
    findings.extend(restricted_paths(
        &place,
        &policy.repository.restrict_to_paths,
        &policy.repository.restrict_to_repositories,
    ));
    if let (Some(account), Some(file)) = (account, ownership(path)) {
        let audit = policy.audit.file.as_ref().map(|log| match ownership(log) {
            Some(facts) => (log.clone(), Some(facts)),
            None => {
                let dir = log.parent().unwrap_or(Path::new("/")).to_path_buf();
                let facts = ownership(&dir);
                (dir, facts)
            }
        });
        findings.extend(access_findings(
            place.clone(),
            path,
            file,
            policy,
            audit,
            &account.identity,
        ));
    }
    if let Some(textfile) = &policy.metrics.textfile {
        let dir = textfile.parent().unwrap_or(Path::new("/"));
        findings.extend(metrics_finding(
            place,
            dir,
            ownership(dir).filter(|_| dir.is_dir()),
            account.map(|a| &a.identity),
        ));
    }
    findings
}

fn restricted_paths(place: &Place, paths: &[PathBuf], repositories: &[PathBuf]) -> Vec<Finding> {
    let paths = paths.iter().map(|p| (p, Restriction::Path, path_state(p)));
    let repositories = repositories.iter().map(|repository| {
        let state = match path_state(repository) {
            PathState::Missing => match repository.parent() {
                Some(parent) if path_state(parent) == PathState::Directory => PathState::Directory,
                _ => PathState::Missing,
            },
            other => other,
        };
        (repository, Restriction::Repository, state)
    });
    paths
        .chain(repositories)
        .filter_map(|(path, restriction, state)| {
            path_finding(place.clone(), path, restriction, state)
        })
        .collect()
}

/// Reads sshd_config with its includes spliced in where sshd reads them. The findings are
/// includes that could not be read.
pub fn read_sshd_config(path: &Path) -> std::io::Result<(Vec<ConfigLine>, Vec<Finding>)> {
    let text = read_bounded(path)?;
    let mut lines = Vec::new();
    let mut findings = Vec::new();
    expand(path, &text, false, 0, &mut lines, &mut findings);
    Ok((lines, findings))
}

/// Reads sshd_config and its includes in sshd's order, then applies the rules.
fn sshd_findings(path: &Path) -> Vec<Finding> {
    match read_sshd_config(path) {
        Ok((lines, mut findings)) => {
            findings.extend(sshd_config::lint(path, &lines));
            findings
        }
        Err(error) => vec![Finding::warning(
            Place::file(path),
            format!(
                "cannot read it: {}",
                crate::policy::load::plain_io_error(&error)
            ),
            match error.kind() {
                std::io::ErrorKind::PermissionDenied => "run doctor as root",
                _ => "name sshd's configuration with --sshd-config FILE",
            },
        )],
    }
}

/// Parses `text` into `out`, replacing each `Include` by the lines of the files it names.
fn expand(
    file: &Path,
    text: &str,
    in_match: bool,
    depth: usize,
    out: &mut Vec<ConfigLine>,
    findings: &mut Vec<Finding>,
) {
    for line in sshd_config::parse_text(file, text, in_match) {
        let ConfigLine::Directive(directive) = &line else {
            out.push(line);
            continue;
        };
        if !directive.is("Include") {
            out.push(line);
            continue;
        }
        if depth >= MAX_INCLUDE_DEPTH {
            findings.push(Finding::error(
                Place::line(file, directive.line),
                "Include is nested too deeply",
                "flatten the includes",
            ));
            continue;
        }
        for pattern in &directive.args {
            for included in glob_files(pattern) {
                match read_bounded(&included) {
                    Ok(text) => expand(
                        &included,
                        &text,
                        directive.in_match,
                        depth + 1,
                        out,
                        findings,
                    ),
                    Err(error) => findings.push(Finding::error(
                        Place::line(file, directive.line),
                        format!(
                            "cannot read included file {}: {}",
                            included.display(),
                            crate::policy::load::plain_io_error(&error)
                        ),
                        "fix its permissions or the Include line",
                    )),
                }
            }
        }
    }
}

/// sshd's `Include` patterns: relative to /etc/ssh, with `*` and `?` in the last component,
/// in sorted order. A pattern that matches nothing is ignored, as sshd does.
fn glob_files(pattern: &str) -> Vec<PathBuf> {
    let path = if Path::new(pattern).is_absolute() {
        PathBuf::from(pattern)
    } else {
        Path::new(SSHD_DIR).join(pattern)
    };
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    if !name.contains(['*', '?']) {
        return if path.is_file() {
            vec![path]
        } else {
            Vec::new()
        };
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let file_name = entry.file_name().to_str()?.to_owned();
            let hidden = file_name.starts_with('.') && !name.starts_with('.');
            (!hidden && crate::gate::decision::glob_match(name, &file_name)).then(|| entry.path())
        })
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found
}
