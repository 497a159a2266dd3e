//! `borg-gate doctor`: reads authorized_keys, the policies its keys name, sshd_config (with
//! its `Include`s) and the backup account, and hands them to the pure rules.
//!
//! Everything here is I/O: which file, which account, which `stat`. The judgement lives in
//! [`super::authorized_keys`], [`super::sshd_config`] and [`super::policies`].

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::as_account::{self, Request};
use super::authorized_keys::{
    self, ClassifiedKey, ForcedCommand, SSHD_ROOT_PATH, SSHD_USER_PATH, policy_location,
    relative_program_finding,
};
use super::policies::{
    self, KeyScope, PathState, Restriction, load_error_finding, path_finding, self_owned_finding,
};
use super::sshd_config::{self, Account, ConfigLine};
use super::{Finding, Place};
use crate::engine::borg1::args::ServeConfig;
use crate::engine::borg2::args::RestConfig;
use crate::engine::borg2::permissions::Mode;
use crate::gate::command::program_basename;
use crate::policy::load::{default_policy_name, read_policy_text, read_policy_text_trusting};
use crate::policy::validate::line_and_column;
use crate::policy::{KeyContext, KeyName, Permissions, Policy, parse_policy_for_key};

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
                    crate::common::text::plain_io_error(&error)
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
            &account.login,
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

/// The account the keys log in to.
struct BackupAccount {
    account: as_account::Account,
    /// What the shell rules need to know.
    login: Account,
}

fn backup_account(options: &DoctorOptions) -> Result<Option<BackupAccount>, DoctorError> {
    let account = match &options.user {
        Some(name) => Some(
            as_account::Account::named(name)
                .ok_or_else(|| DoctorError::NoSuchUser(name.clone()))?,
        ),
        None => fs::metadata(&options.authorized_keys)
            .ok()
            .and_then(|meta| as_account::Account::with_uid(meta.uid())),
    };
    let Some(account) = account else {
        return Ok(None);
    };
    let login = Account {
        name: account.name.clone(),
        uid: account.uid,
        shell: account.shell.clone(),
        resolved_shell: fs::canonicalize(&account.shell).ok(),
        shell_is_executable: crate::exec::is_executable(&account.shell),
    };
    Ok(Some(BackupAccount { account, login }))
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

fn path_state(path: &Path) -> PathState {
    match fs::symlink_metadata(path) {
        Err(_) => PathState::Missing,
        Ok(meta) if meta.file_type().is_symlink() => PathState::Symlink,
        Ok(meta) if meta.is_dir() => PathState::Directory,
        Ok(_) => PathState::NotDirectory,
    }
}

/// A policy file as read once: its text (trusted as the backup account would trust it) and
/// its validation as a template.
struct ReadPolicy {
    text: String,
    template: Policy,
}

/// Loads each policy once, then once per key name; checks each as the backup account would
/// use it, and checks what every borg key can reach.
fn policy_findings(
    keys_path: &Path,
    keys: &[ClassifiedKey<'_>],
    account: Option<&BackupAccount>,
) -> Vec<Finding> {
    let mut scan = KeyScan {
        account,
        ..KeyScan::default()
    };
    for key in keys {
        let place = Place::line(keys_path, key.key.line);
        if let Some(program) = key.command.as_ref().and_then(forced_program) {
            scan.findings
                .extend(relative_program(&place, program, account));
        }
        match &key.command {
            Some(ForcedCommand::Gate {
                policy,
                tilde_expanded,
                name,
                ..
            }) => scan.gate_key(place, policy, *tilde_expanded, name.as_deref()),
            Some(ForcedCommand::Serve {
                program,
                config: Ok(config),
            }) => scan.serve_key(place, program, config),
            Some(ForcedCommand::ServeRest {
                program,
                config: Ok(config),
            }) => scan.serve_rest_key(place, program, config),
            _ => {}
        }
    }
    let KeyScan {
        mut findings,
        requests,
        scopes,
        names,
        ..
    } = scan;
    findings.extend(policies::overlapping_scopes(
        &scopes
            .into_iter()
            .filter(|s| !s.paths.is_empty())
            .collect::<Vec<_>>(),
    ));
    findings.extend(policies::shared_names(&names));
    if let Some(account) = account {
        findings.extend(findings_as_account(keys_path, &account.account, &requests));
    }
    findings
}

/// What [`policy_findings`] gathers key by key.
#[derive(Default)]
struct KeyScan<'a> {
    account: Option<&'a BackupAccount>,
    findings: Vec<Finding>,
    /// Each policy file, read once (`None`: unusable, reported).
    read: BTreeMap<PathBuf, Option<ReadPolicy>>,
    /// Each policy for each key name, validated once (`None`: unusable).
    expanded: BTreeMap<(PathBuf, Option<KeyName>), Option<Policy>>,
    /// What to check as the backup account, once per policy and key name.
    requests: Vec<(Place, Request)>,
    scopes: Vec<KeyScope>,
    names: Vec<(PathBuf, String)>,
}

impl KeyScan<'_> {
    /// `borg-gate --policy FILE [--name NAME]`.
    fn gate_key(&mut self, place: Place, policy: &Path, tilde_expanded: bool, name: Option<&str>) {
        let path = match self.account {
            Some(account) => {
                policy_location(policy, tilde_expanded, &account.account.home, &|user| {
                    nix::unistd::User::from_name(user)
                        .ok()
                        .flatten()
                        .map(|u| u.dir)
                })
            }
            None => policy.to_path_buf(),
        };
        if !self.read.contains_key(&path) {
            let (policy, problems) = read_policy(&place, &path, self.account);
            self.findings.extend(problems);
            self.read.insert(path.clone(), policy);
        }
        let Some(Some(file)) = self.read.get(&path) else {
            return;
        };
        // A bad --name is reported with the forced command's own rules.
        let Ok(key_name) = name.map(KeyName::parse).transpose() else {
            return;
        };
        if file.template.uses_key_name && key_name.is_none() {
            self.findings.push(Finding::error(
                place,
                format!(
                    "policy {} uses {{name}}, but this forced command gives no --name, so every session with this key is refused",
                    path.display()
                ),
                format!(
                    "add --name NAME to the forced command: borg-gate --policy {} --name NAME",
                    path.display()
                ),
            ));
            return;
        }
        let entry = (path, key_name);
        if !self.expanded.contains_key(&entry) {
            let (path, key_name) = &entry;
            let context = key_name
                .as_ref()
                .map_or(KeyContext::Unnamed, KeyContext::Named);
            let policy = parse_policy_for_key(&file.text, default_policy_name(path), context).ok();
            if let Some(policy) = &policy {
                self.findings
                    .extend(checks_of_loaded_policy(path, policy, self.account));
                self.requests
                    .push((Place::file(path), Request::for_policy(path, policy)));
            }
            self.expanded.insert(entry.clone(), policy);
        }
        let Some(Some(policy)) = self.expanded.get(&entry) else {
            return;
        };
        let (path, key_name) = entry;
        self.names.push((path.clone(), policy.name.clone()));
        let repository = &policy.repository;
        self.scopes.push(KeyScope {
            place,
            policy_file: Some(path),
            label: match &key_name {
                Some(key_name) => format!("policy {} --name {key_name}", policy.name),
                None => format!("policy {}", policy.name),
            },
            paths: repository
                .restrict_to_paths
                .iter()
                .chain(&repository.restrict_to_repositories)
                .cloned()
                .collect(),
            read_only: repository.permissions == Permissions::ReadOnly,
            policy_name: Some(policy.name.clone()),
            shared_with: repository.shared_with.clone(),
        });
    }

    /// `borg serve ...` or `borg-gate serve ...`, an engine without a gate.
    fn serve_key(&mut self, place: Place, program: &str, config: &ServeConfig) {
        self.engine_key(
            place,
            format!("{} serve", program_basename(program)),
            &config.restrict_to_paths,
            &config.restrict_to_repositories,
            // `borg-gate serve --permissions=read-only`; Python borg has no such option.
            config.permissions == Permissions::ReadOnly,
        );
    }

    /// `borg serve --rest ...` or `borg-gate serve --rest ...`, a borg 2 engine without a gate.
    fn serve_rest_key(&mut self, place: Place, program: &str, config: &RestConfig) {
        self.engine_key(
            place,
            format!("{} serve --rest", program_basename(program)),
            &config.restrict_to_paths,
            &config.restrict_to_repositories,
            config.permissions == Some(Mode::ReadOnly),
        );
    }

    /// An engine run directly by a key: its restrictions checked, and what it reaches.
    fn engine_key(
        &mut self,
        place: Place,
        label: String,
        restrict_to_paths: &[PathBuf],
        restrict_to_repositories: &[PathBuf],
        read_only: bool,
    ) {
        self.findings.extend(restricted_paths(
            &place,
            restrict_to_paths,
            restrict_to_repositories,
            self.account,
        ));
        self.scopes.push(KeyScope {
            place,
            policy_file: None,
            label,
            paths: restrict_to_paths
                .iter()
                .chain(restrict_to_repositories)
                .cloned()
                .collect(),
            read_only,
            policy_name: None,
            shared_with: Vec::new(),
        });
    }
}

/// What the backup account meets, checked as that account.
fn findings_as_account(
    keys_path: &Path,
    account: &as_account::Account,
    requests: &[(Place, Request)],
) -> Vec<Finding> {
    if requests.is_empty() {
        return Vec::new();
    }
    let only_requests: Vec<Request> = requests.iter().map(|(_, r)| r.clone()).collect();
    match as_account::check(account, &only_requests) {
        Ok(reports) => requests
            .iter()
            .zip(&reports)
            .flat_map(|((place, request), report)| {
                as_account::findings(place, request, report, account)
            })
            .collect(),
        Err(error) => vec![Finding::warning(
            Place::file(keys_path),
            error.to_string(),
            format!("run doctor as root (or as {})", account.name),
        )],
    }
}

/// The program a forced command runs, when it is borg-gate or borg.
fn forced_program(command: &ForcedCommand) -> Option<&str> {
    match command {
        ForcedCommand::Gate { program, .. }
        | ForcedCommand::Serve { program, .. }
        | ForcedCommand::ServeRest { program, .. } => Some(program),
        ForcedCommand::Unusable { .. } | ForcedCommand::Other => None,
    }
}

/// A program named without a path, looked up in sshd's PATH for the account.
fn relative_program(
    place: &Place,
    program: &str,
    account: Option<&BackupAccount>,
) -> Option<Finding> {
    if program.starts_with('/') {
        return None;
    }
    let search_path = match account {
        Some(account) if account.account.uid == 0 => SSHD_ROOT_PATH,
        _ => SSHD_USER_PATH,
    };
    let found = (!program.contains('/'))
        .then(|| {
            search_path
                .split(':')
                .map(|dir| Path::new(dir).join(program))
                .find(|candidate| crate::exec::is_executable(candidate))
        })
        .flatten();
    relative_program_finding(place, program, search_path, found.as_deref())
}

/// Reads a policy the way the gate will, judging trust as the backup account, and validates
/// it as a template (`{name}` kept); errors are placed on its lines.
fn read_policy(
    place: &Place,
    path: &Path,
    account: Option<&BackupAccount>,
) -> (Option<ReadPolicy>, Vec<Finding>) {
    let read = match account {
        Some(account) => read_policy_text_trusting(path, account.account.uid),
        None => read_policy_text(path),
    };
    let (text, facts) = match read {
        Ok(read) => read,
        Err(error) => return (None, vec![load_error_finding(place.clone(), path, &error)]),
    };
    let mut findings = Vec::new();
    if let Some(account) = account.filter(|a| a.account.uid != 0 && facts.owner == a.account.uid) {
        findings.push(self_owned_finding(
            place.clone(),
            path,
            &account.account.name,
        ));
    }
    match parse_policy_for_key(&text, default_policy_name(path), KeyContext::Template) {
        Ok(template) => (Some(ReadPolicy { text, template }), findings),
        Err(errors) => {
            findings.extend(errors.0.iter().map(|error| {
                let place = match &error.span {
                    Some(span) => Place::line(path, line_and_column(&text, span.start).0),
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
            }));
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
        account,
    ));
    findings
}

fn restricted_paths(
    place: &Place,
    paths: &[PathBuf],
    repositories: &[PathBuf],
    account: Option<&BackupAccount>,
) -> Vec<Finding> {
    let owner = account.map(|a| (a.account.name.as_str(), a.account.group.as_str()));
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
            path_finding(place.clone(), path, restriction, state, owner)
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
                crate::common::text::plain_io_error(&error)
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
                            crate::common::text::plain_io_error(&error)
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
