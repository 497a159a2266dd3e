//! What the backup account finds when sshd runs the gate and the engine for a key, checked
//! offline by `check-policy --user` and `doctor`: can it read the policy, reach every
//! restricted path, pass the engine's directory-trust check there, create repositories,
//! append to the audit file, reach syslog, write metrics.
//!
//! The checks are the gate's and the engine's own code (`realpath`, the engine's
//! [`check_no_foreign_writers`], syslog's connect) plus `access(2)` and an open for
//! appending that writes nothing. They run in a child process that has become the account
//! (its groups, its group, its uid: [`crate::sys::run_as`]), or in this process when it is the
//! account already. A model computed from owners, groups and modes would be pure and easy
//! to test, but it would be wrong exactly where real setups go wrong: ACLs on `/var/log`,
//! read-only mounts, security modules, and directories on the way that root can search and
//! the account cannot. The kernel's answer, as the account, is the one sessions will get.
//!
//! Gathering ([`check`]) is I/O; turning what was found into findings ([`findings`]) is pure.

use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::unistd::AccessFlags;
use serde::{Deserialize, Serialize};

use super::{Finding, Place, Severity};
use crate::audit::sink::{SYSLOG_SOCKET, connect_syslog};
use crate::common::text::plain_io_error;
use crate::engine::paths::{UnsafePath, check_no_foreign_writers, realpath};
use crate::policy::{OnAuditFailure, Permissions, Policy};

/// The account sshd runs the gate as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// The name of the primary group (its number when it has none).
    pub group: String,
    /// The primary group and every supplementary group.
    pub groups: Vec<u32>,
    pub home: PathBuf,
    pub shell: PathBuf,
}

impl Account {
    pub fn named(name: &str) -> Option<Account> {
        nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .map(Account::from_user)
    }

    pub fn with_uid(uid: u32) -> Option<Account> {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(Account::from_user)
    }

    fn from_user(user: nix::unistd::User) -> Account {
        let groups = std::ffi::CString::new(user.name.clone())
            .ok()
            .and_then(|name| nix::unistd::getgrouplist(&name, user.gid).ok())
            .map(|gids| gids.into_iter().map(|g| g.as_raw()).collect())
            .unwrap_or_else(|| vec![user.gid.as_raw()]);
        let group = nix::unistd::Group::from_gid(user.gid)
            .ok()
            .flatten()
            .map_or_else(|| user.gid.as_raw().to_string(), |group| group.name);
        Account {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            group,
            groups,
            home: user.dir,
            shell: user.shell,
        }
    }

    /// `install -d -o borg -g borg -m MODE DIR`: a directory the account owns.
    fn install_dir(&self, mode: &str, dir: &Path) -> String {
        format!(
            "install -d -o {} -g {} -m {mode} {}",
            self.name,
            self.group,
            dir.display()
        )
    }

    /// `chown borg:borg FILE`.
    fn chown(&self, path: &Path) -> String {
        format!("chown {}:{} {}", self.name, self.group, path.display())
    }
}

/// What to check for one policy (with `{name}` already expanded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub policy_file: PathBuf,
    pub restrict_to_paths: Vec<PathBuf>,
    pub restrict_to_repositories: Vec<PathBuf>,
    pub read_only: bool,
    pub audit_file: Option<PathBuf>,
    pub syslog: bool,
    pub refuses_unaudited: bool,
    pub metrics_dir: Option<PathBuf>,
}

impl Request {
    pub fn for_policy(policy_file: &Path, policy: &Policy) -> Request {
        Request {
            policy_file: policy_file.to_path_buf(),
            restrict_to_paths: policy.repository.restrict_to_paths.clone(),
            restrict_to_repositories: policy.repository.restrict_to_repositories.clone(),
            read_only: policy.repository.permissions == Permissions::ReadOnly,
            audit_file: policy.audit.file.clone(),
            syslog: policy.audit.syslog,
            refuses_unaudited: policy.audit.on_failure == OnAuditFailure::Refuse,
            metrics_dir: policy
                .metrics
                .textfile
                .as_deref()
                .map(|file| file.parent().unwrap_or(Path::new("/")).to_path_buf()),
        }
    }
}

/// How the kernel refused an operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// `Permission denied`, `No such file or directory`, ...
    pub error: String,
    pub not_found: bool,
    /// For a permission error: the first directory on the way the account cannot search.
    pub blocked_at: Option<PathBuf>,
}

/// A directory on the way to a restricted path that another account could change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrustProblem {
    /// A component is a symlink (a `realpath` result should have none).
    Changed { path: PathBuf },
    /// `data/` or one of its numbered directories is a symlink, which the engine never follows.
    InnerSymlink { path: PathBuf },
    ForeignWritable {
        dir: PathBuf,
        owner: u32,
        owner_name: Option<String>,
        mode: u32,
    },
}

/// What a restricted path looks like to the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlaceState {
    /// A directory; `Err` when the account cannot use it as the key needs (create
    /// repositories in it, write or read the repository).
    Directory(Result<(), Failure>),
    /// Missing; for a repository, whether the account can create it in its parent.
    Missing(Result<(), Failure>),
    NotDirectory,
    /// The account cannot even look at it.
    Unreachable(Failure),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceReport {
    pub path: PathBuf,
    pub repository: bool,
    pub trust: Option<TrustProblem>,
    pub state: PlaceState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditAccess {
    /// The file exists and opens for appending, or its directory takes new files.
    Usable,
    /// The file exists and does not open for appending.
    File(Failure),
    /// The file does not exist and its directory does not take it.
    Directory { dir: PathBuf, failure: Failure },
}

/// Everything the account found for one [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub policy: Result<(), Failure>,
    pub places: Vec<PlaceReport>,
    pub audit_file: Option<AuditAccess>,
    pub syslog: Option<Result<(), Failure>>,
    pub metrics_dir: Option<Result<(), Failure>>,
}

/// Why the checks could not run as the account.
#[derive(Debug)]
pub enum CheckError {
    /// Neither root nor the account: the kernel would answer for the wrong account.
    NeedRoot {
        account: String,
    },
    Failed {
        account: String,
        error: io::Error,
    },
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckError::NeedRoot { account } => write!(
                f,
                "cannot check as {account}: that needs root (or running as {account} itself)"
            ),
            CheckError::Failed { account, error } => {
                write!(f, "cannot check as {account}: {}", plain_io_error(error))
            }
        }
    }
}

impl std::error::Error for CheckError {}

/// Runs the checks of every request as `account`: in this process when it is the account,
/// in a child that becomes the account when it is root.
pub fn check(account: &Account, requests: &[Request]) -> Result<Vec<Report>, CheckError> {
    let euid = nix::unistd::geteuid().as_raw();
    if euid == account.uid {
        return Ok(gather_all(requests, account.uid));
    }
    if euid != 0 {
        return Err(CheckError::NeedRoot {
            account: account.name.clone(),
        });
    }
    let failed = |error| CheckError::Failed {
        account: account.name.clone(),
        error,
    };
    let work = || serde_json::to_vec(&gather_all(requests, account.uid)).unwrap_or_default();
    let bytes =
        crate::sys::run_as(account.uid, account.gid, &account.groups, &work).map_err(failed)?;
    serde_json::from_slice(&bytes).map_err(|error| failed(io::Error::other(error)))
}

fn gather_all(requests: &[Request], uid: u32) -> Vec<Report> {
    requests.iter().map(|r| gather(r, uid)).collect()
}

fn gather(request: &Request, uid: u32) -> Report {
    let policy = fs::File::options()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC | nix::libc::O_NOCTTY)
        .open(&request.policy_file)
        .map(drop)
        .map_err(|error| failure(&error, &request.policy_file));
    let paths = request.restrict_to_paths.iter().map(|p| (p, false));
    let repositories = request.restrict_to_repositories.iter().map(|p| (p, true));
    let places = paths
        .chain(repositories)
        .map(|(path, repository)| place(path, repository, request.read_only, uid))
        .collect();
    Report {
        policy,
        places,
        audit_file: request.audit_file.as_deref().map(audit_access),
        syslog: request.syslog.then(|| {
            let socket = Path::new(SYSLOG_SOCKET);
            connect_syslog(socket)
                .map(drop)
                .map_err(|error| failure(&error, socket))
        }),
        metrics_dir: request
            .metrics_dir
            .as_deref()
            .map(|dir| access(dir, AccessFlags::W_OK | AccessFlags::X_OK)),
    }
}

fn place(path: &Path, repository: bool, read_only: bool, uid: u32) -> PlaceReport {
    let resolved = realpath(path, Path::new("/"));
    let trust = check_no_foreign_writers(&resolved, uid)
        .err()
        .map(|problem| match problem {
            UnsafePath::Changed(path) => TrustProblem::Changed { path },
            UnsafePath::Symlink(path) => TrustProblem::InnerSymlink { path },
            UnsafePath::ForeignWritable { dir, owner, mode } => TrustProblem::ForeignWritable {
                dir,
                owner,
                owner_name: nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(owner))
                    .ok()
                    .flatten()
                    .map(|user| user.name),
                mode,
            },
        });
    // What the key needs of the directory: create repositories in it (or write the
    // repository), or, read-only, pass through it (or read the repository).
    let need = match (read_only, repository) {
        (false, _) => AccessFlags::W_OK | AccessFlags::X_OK,
        (true, false) => AccessFlags::X_OK,
        (true, true) => AccessFlags::R_OK | AccessFlags::X_OK,
    };
    let state = match fs::metadata(&resolved) {
        Ok(meta) if meta.is_dir() => PlaceState::Directory(access(&resolved, need)),
        Ok(_) => PlaceState::NotDirectory,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            let parent = resolved.parent().unwrap_or(Path::new("/"));
            PlaceState::Missing(access(parent, AccessFlags::W_OK | AccessFlags::X_OK))
        }
        Err(error) => PlaceState::Unreachable(failure(&error, &resolved)),
    };
    PlaceReport {
        path: path.to_path_buf(),
        repository,
        trust,
        state,
    }
}

fn audit_access(file: &Path) -> AuditAccess {
    let opened = fs::File::options()
        .append(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC | nix::libc::O_NOCTTY)
        .open(file);
    match opened {
        Ok(_) => AuditAccess::Usable,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            let dir = file.parent().unwrap_or(Path::new("/")).to_path_buf();
            match access(&dir, AccessFlags::W_OK | AccessFlags::X_OK) {
                Ok(()) => AuditAccess::Usable,
                Err(failure) => AuditAccess::Directory { dir, failure },
            }
        }
        Err(error) => AuditAccess::File(failure(&error, file)),
    }
}

fn access(path: &Path, need: AccessFlags) -> Result<(), Failure> {
    nix::unistd::access(path, need).map_err(|errno| failure(&io::Error::from(errno), path))
}

fn failure(error: &io::Error, path: &Path) -> Failure {
    let denied = error.kind() == io::ErrorKind::PermissionDenied;
    Failure {
        error: plain_io_error(error),
        not_found: error.kind() == io::ErrorKind::NotFound,
        blocked_at: denied.then(|| first_closed_directory(path)).flatten(),
    }
}

/// The first directory above `path` (from `/` down) that the account cannot search.
fn first_closed_directory(path: &Path) -> Option<PathBuf> {
    let mut ancestors: Vec<&Path> = path.ancestors().skip(1).collect();
    ancestors.reverse();
    ancestors
        .into_iter()
        .find(|dir| nix::unistd::access(*dir, AccessFlags::X_OK).is_err())
        .map(Path::to_path_buf)
}

/// What the account found, as findings placed at `place` (the policy file).
pub fn findings(
    place: &Place,
    request: &Request,
    report: &Report,
    account: &Account,
) -> Vec<Finding> {
    let mut found = Vec::new();
    let name = &account.name;
    let refused = "so every session with this key is refused";
    let open_the_way = |failure: &Failure, fallback: String| match &failure.blocked_at {
        Some(dir) => format!("chmod o+x {}", dir.display()),
        None => fallback,
    };
    if let Err(failure) = &report.policy {
        if !failure.not_found {
            let policy = request.policy_file.display();
            found.push(Finding::error(
                place.clone(),
                format!(
                    "{name} cannot read policy {policy} ({}), {refused}",
                    failure.error
                ),
                open_the_way(failure, format!("chmod 0644 {policy}")),
            ));
        }
    }
    for report in &report.places {
        found.extend(place_findings(place, report, request.read_only, account));
    }
    let (severity, consequence) = if request.refuses_unaudited {
        (Severity::Error, refused)
    } else {
        (Severity::Warning, "so sessions go unaudited")
    };
    match (&report.audit_file, &request.audit_file) {
        (Some(AuditAccess::File(failure)), Some(file)) => {
            let dir = file.parent().unwrap_or(Path::new("/"));
            // The account cannot even look into the audit directory: it should own it.
            let (at, fix) = match &failure.blocked_at {
                Some(blocked) if blocked == dir => (
                    format!(" at {}", dir.display()),
                    account.install_dir("0750", dir),
                ),
                _ => (String::new(), open_the_way(failure, account.chown(file))),
            };
            found.push(finding(
                severity,
                place.clone(),
                format!(
                    "{name} cannot append to the audit file {} ({}{at}), {consequence}",
                    file.display(),
                    failure.error
                ),
                fix,
            ));
        }
        (Some(AuditAccess::Directory { dir, failure }), Some(file)) => {
            let problem = if failure.not_found {
                format!(
                    "the audit directory {} does not exist, {consequence}",
                    dir.display()
                )
            } else {
                format!(
                    "{name} cannot create the audit file {} in {} ({}), {consequence}",
                    file.display(),
                    dir.display(),
                    failure.error
                )
            };
            found.push(finding(
                severity,
                place.clone(),
                problem,
                open_the_way(failure, account.install_dir("0750", dir)),
            ));
        }
        _ => {}
    }
    if let Some(Err(failure)) = &report.syslog {
        let consequence = if request.refuses_unaudited {
            refused
        } else {
            "so sessions are not logged to syslog"
        };
        found.push(finding(
            severity,
            place.clone(),
            format!(
                "audit.syslog = true, but {name} cannot reach {SYSLOG_SOCKET} ({}), {consequence}",
                failure.error
            ),
            "run a syslog service that provides /dev/log (systemd-journald or rsyslog), or remove `syslog = true` and keep audit.file".to_owned(),
        ));
    }
    if let (Some(Err(failure)), Some(dir)) = (&report.metrics_dir, &request.metrics_dir) {
        let problem = if failure.not_found {
            format!("the metrics directory {} does not exist", dir.display())
        } else {
            format!(
                "{name} cannot create files in the metrics directory {} ({})",
                dir.display(),
                failure.error
            )
        };
        found.push(Finding::warning(
            place.clone(),
            format!("{problem}, so the gate silently skips its metrics"),
            format!(
                "{}, or remove [metrics]",
                open_the_way(failure, account.install_dir("0755", dir))
            ),
        ));
    }
    found
}

fn finding(severity: Severity, place: Place, problem: String, fix: String) -> Finding {
    Finding {
        severity,
        place,
        problem,
        fix,
    }
}

fn place_findings(
    place: &Place,
    report: &PlaceReport,
    read_only: bool,
    account: &Account,
) -> Vec<Finding> {
    let name = &account.name;
    let path = &report.path;
    let shown = path.display();
    let mut found = Vec::new();
    if let Some(trust) = &report.trust {
        let (problem, fix) = match trust {
            TrustProblem::Changed { path: link } => (
                format!("{} is a symlink", link.display()),
                "name the real directory".to_owned(),
            ),
            TrustProblem::InnerSymlink { path: link } => (
                format!(
                    "{} is a symlink inside a repository, which the engine never follows",
                    link.display()
                ),
                "move the real directory there (a bind mount puts it on another disk)".to_owned(),
            ),
            TrustProblem::ForeignWritable {
                dir,
                owner,
                owner_name,
                mode,
            } => {
                let owner_label = match owner_name {
                    Some(owner_name) => owner_name.clone(),
                    None => format!("uid {owner}"),
                };
                let mine = dir.starts_with(path);
                let new_owner = if mine {
                    format!("{name}:{}", account.group)
                } else {
                    "root:".to_owned()
                };
                let trusted = *owner == 0 || *owner == account.uid;
                let fix = if trusted {
                    format!("chmod go-w {}", dir.display())
                } else {
                    format!(
                        "chown {new_owner} {dir} && chmod go-w {dir}",
                        dir = dir.display()
                    )
                };
                (
                    format!(
                        "{} (owner {owner_label}, mode {:04o}) could be changed by an account other than root and {name}",
                        dir.display(),
                        mode & 0o7777
                    ),
                    fix,
                )
            }
        };
        found.push(Finding::error(
            place.clone(),
            format!(
                "the engine refuses every repository under {shown}: {problem}, which could redirect a repository outside the allowed paths"
            ),
            fix,
        ));
    }
    match &report.state {
        PlaceState::Directory(Ok(())) | PlaceState::NotDirectory => {}
        PlaceState::Directory(Err(failure)) => {
            let finding = match (report.repository, read_only) {
                (false, false) => Finding::warning(
                    place.clone(),
                    format!(
                        "{name} cannot create repositories in {shown} ({}), so `borg init` there fails",
                        failure.error
                    ),
                    account.install_dir("0700", path),
                ),
                (false, true) => Finding::error(
                    place.clone(),
                    format!(
                        "{name} cannot pass through {shown} ({}), so every repository there is out of reach",
                        failure.error
                    ),
                    format!("chmod o+x {shown}"),
                ),
                (true, false) => Finding::error(
                    place.clone(),
                    format!(
                        "{name} cannot write repository {shown} ({}), so every backup with this key fails",
                        failure.error
                    ),
                    format!("chown -R {}:{} {shown}", name, account.group),
                ),
                (true, true) => Finding::error(
                    place.clone(),
                    format!(
                        "{name} cannot read repository {shown} ({}), so every restore with this key fails",
                        failure.error
                    ),
                    format!("chown -R {}:{} {shown}", name, account.group),
                ),
            };
            found.push(finding);
        }
        // A missing restricted directory, or a missing parent, is reported from root's view
        // (it is missing for everyone); what only the account meets is a parent it cannot use.
        PlaceState::Missing(Err(failure)) if report.repository && !failure.not_found => {
            let parent = path.parent().unwrap_or(Path::new("/"));
            found.push(Finding::warning(
                place.clone(),
                format!(
                    "`borg init` of repository {shown} fails: {name} cannot create it in {} ({})",
                    parent.display(),
                    failure.error
                ),
                account.install_dir("0700", path),
            ));
        }
        PlaceState::Missing(_) => {}
        PlaceState::Unreachable(failure) => {
            let at = failure
                .blocked_at
                .as_ref()
                .map(|dir| format!(" at {}", dir.display()))
                .unwrap_or_default();
            found.push(Finding::error(
                place.clone(),
                format!(
                    "{name} cannot reach {shown} ({}{at}), so every session with this key fails there",
                    failure.error
                ),
                match &failure.blocked_at {
                    Some(dir) => format!("chmod o+x {}", dir.display()),
                    None => format!("fix the permissions on the way to {shown}"),
                },
            ));
        }
    }
    found
}

#[cfg(test)]
mod tests;
