//! The rules `borg-gate doctor` applies across keys and policies: what each key can reach,
//! whether those scopes overlap, whether the directories are real, and whether the backup
//! account can use the files its policy names.
//!
//! Pure: the caller passes file facts it gathered with `stat`.

use std::path::{Path, PathBuf};

use super::{Finding, Place};
use crate::policy::{LoadError, OnAuditFailure, Policy};

/// What one key can reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyScope {
    /// The key's line in authorized_keys.
    pub place: Place,
    /// The policy file, or `None` for a plain `borg serve` line.
    pub policy_file: Option<PathBuf>,
    /// How the key is named in messages: `policy alice` or `borg serve`.
    pub label: String,
    /// restrict_to_paths and restrict_to_repositories together; empty when unrestricted.
    pub paths: Vec<PathBuf>,
}

impl KeyScope {
    /// Two keys with the same policy file share their scope on purpose.
    fn same_policy(&self, other: &KeyScope) -> bool {
        self.policy_file.is_some() && self.policy_file == other.policy_file
    }
}

/// Pairs of keys whose restrictions overlap: either key can read, and unless append-only
/// delete, the other's backups.
pub fn overlapping_scopes(scopes: &[KeyScope]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (index, later) in scopes.iter().enumerate() {
        for earlier in &scopes[..index] {
            if earlier.same_policy(later) {
                continue;
            }
            let shared = later.paths.iter().find_map(|mine| {
                earlier
                    .paths
                    .iter()
                    .find(|theirs| mine.starts_with(theirs) || theirs.starts_with(mine))
                    .map(|theirs| {
                        if mine.starts_with(theirs) {
                            mine
                        } else {
                            theirs
                        }
                    })
            });
            if let Some(path) = shared {
                findings.push(Finding::warning(
                    later.place.clone(),
                    format!(
                        "this key ({}) and the key on line {} ({}) can both reach {}: either can read, and unless append-only delete, the other's backups",
                        later.label,
                        earlier.place.line.unwrap_or(0),
                        earlier.label,
                        path.display()
                    ),
                    "give each key its own directory in restrict_to_paths",
                ));
            }
        }
    }
    findings
}

/// What `stat` said about a restricted path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathState {
    Directory,
    Missing,
    Symlink,
    NotDirectory,
}

/// Which restriction a path comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restriction {
    Path,
    /// A repository; `borg init` creates it, so only its parent has to exist.
    Repository,
}

/// A restricted path that does not exist, is a symlink, or is not a directory.
pub fn path_finding(
    place: Place,
    path: &Path,
    restriction: Restriction,
    state: PathState,
) -> Option<Finding> {
    let shown = path.display();
    match (state, restriction) {
        (PathState::Directory, _) => None,
        (PathState::Missing, Restriction::Path) => Some(Finding::warning(
            place,
            format!("restricted path {shown} does not exist, so `borg init` below it fails"),
            format!("create it: install -d -o BACKUP-USER -m 0700 {shown}"),
        )),
        (PathState::Missing, Restriction::Repository) => Some(Finding::warning(
            place,
            format!("the directory that should hold repository {shown} does not exist"),
            "create the parent directory, writable by the backup account",
        )),
        (PathState::Symlink, _) => Some(Finding::warning(
            place,
            format!(
                "restricted path {shown} is a symlink: whoever can change the link moves what this key can reach"
            ),
            "name the real directory",
        )),
        (PathState::NotDirectory, _) => Some(Finding::warning(
            place,
            format!("restricted path {shown} is not a directory"),
            "name the directory that holds the repositories",
        )),
    }
}

/// A policy that restricts nothing.
pub fn unrestricted_finding(place: Place, policy: &Policy) -> Option<Finding> {
    let repository = &policy.repository;
    (repository.restrict_to_paths.is_empty() && repository.restrict_to_repositories.is_empty())
        .then(|| {
            Finding::warning(
                place,
                format!(
                    "policy {} sets `unrestricted = true`: its key can reach every repository of the account",
                    policy.name
                ),
                "prefer restrict_to_paths with one directory per key",
            )
        })
}

/// Policies in different files with the same name: audit records and metrics cannot tell
/// them apart.
pub fn shared_names(policies: &[(PathBuf, String)]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (index, (file, name)) in policies.iter().enumerate() {
        let earlier = policies[..index]
            .iter()
            .find(|(other_file, other_name)| other_name == name && other_file != file);
        let repeated_file = policies[..index].iter().any(|(f, _)| f == file);
        if let (Some((other_file, _)), false) = (earlier, repeated_file) {
            findings.push(Finding::warning(
                Place::file(file),
                format!(
                    "policy name {name:?} is also used by {}: audit records and metrics cannot tell the two apart",
                    other_file.display()
                ),
                "give each policy its own `name`",
            ));
        }
    }
    findings
}

/// Owner, group and mode of a file, and who asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ownership {
    pub owner: u32,
    pub group: u32,
    pub mode: u32,
}

/// The account the gate runs as: its uid and every group it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub groups: Vec<u32>,
}

/// Read (4), write (2) or search (1) permission for `identity` by the classic mode bits.
/// Root may read and write anything.
pub fn permits(file: Ownership, identity: &Identity, want: u32) -> bool {
    if identity.uid == 0 && want != 1 {
        return true;
    }
    let bits = if file.owner == identity.uid {
        file.mode >> 6
    } else if identity.groups.contains(&file.group) {
        file.mode >> 3
    } else {
        file.mode
    };
    bits & want == want
}

/// What the gate's own loader says about a policy, reworded for an administrator, from the
/// point of view of the backup account (`backup_uid`).
pub fn load_error_finding(
    place: Place,
    path: &Path,
    error: &LoadError,
    backup_uid: Option<u32>,
) -> Finding {
    let refused = "so every session with this key is refused";
    match error {
        LoadError::Open { error, .. } if error.kind() == std::io::ErrorKind::NotFound => {
            Finding::error(
                place,
                format!("policy {} does not exist, {refused}", path.display()),
                "create it (see borg-gate-policy(5)) or fix the path in the forced command",
            )
        }
        LoadError::Owner { owner, .. } if Some(*owner) == backup_uid => Finding::warning(
            place,
            format!(
                "policy {} is owned by the backup account (uid {owner}), which may then rewrite its own policy",
                path.display()
            ),
            format!("chown root: {}", path.display()),
        ),
        other => {
            // The loader's messages end in a hint after "; ": that is the fix.
            let text = other.to_string();
            let default_fix = format!("fix it and run `borg-gate check-policy {}`", path.display());
            let (problem, fix) = match text.split_once("; ") {
                Some((problem, hint)) => (problem.to_owned(), hint.to_owned()),
                None => (text.clone(), default_fix),
            };
            Finding::error(place, format!("{problem}, {refused}"), fix)
        }
    }
}

/// The backup account must be able to read its policy, and to write its audit log.
pub fn access_findings(
    policy_place: Place,
    policy_path: &Path,
    policy_file: Ownership,
    policy: &Policy,
    audit: Option<(PathBuf, Option<Ownership>)>,
    identity: &Identity,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    if !permits(policy_file, identity, 4) {
        findings.push(Finding::error(
            policy_place.clone(),
            format!(
                "the backup account (uid {}) cannot read policy {}, so every session with this key is refused",
                identity.uid,
                policy_path.display()
            ),
            format!(
                "chmod 0644 {} (or give it the account's group and mode 0640)",
                policy_path.display()
            ),
        ));
    }
    if let Some((target, facts)) = audit {
        let writable = facts.is_some_and(|f| permits(f, identity, 2));
        if !writable {
            let consequence = match policy.audit.on_failure {
                OnAuditFailure::Refuse => "so every session with this key is refused",
                OnAuditFailure::Continue => "so sessions go unaudited",
            };
            let problem = match facts {
                None => format!(
                    "the audit log directory {} does not exist, {consequence}",
                    target.display()
                ),
                Some(_) => format!(
                    "the backup account (uid {}) cannot write {}, {consequence}",
                    identity.uid,
                    target.display()
                ),
            };
            findings.push(Finding::error(
                policy_place,
                problem,
                format!("create it writable by the backup account: install -d -o BACKUP-USER -m 0750 DIR (for {})", target.display()),
            ));
        }
    }
    findings
}

/// The metrics textfile's directory must exist and take new files from the backup account,
/// or the gate skips metrics without a word (it never fails a session for them).
pub fn metrics_finding(
    policy_place: Place,
    directory: &Path,
    facts: Option<Ownership>,
    identity: Option<&Identity>,
) -> Option<Finding> {
    let problem = match (facts, identity) {
        (None, _) => format!(
            "the metrics directory {} does not exist",
            directory.display()
        ),
        (Some(facts), Some(identity)) if !permits(facts, identity, 3) => format!(
            "the backup account (uid {}) cannot create files in the metrics directory {}",
            identity.uid,
            directory.display()
        ),
        _ => return None,
    };
    Some(Finding::warning(
        policy_place,
        format!("{problem}, so the gate silently skips its metrics"),
        "create the directory writable by the backup account, or remove [metrics]",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse_policy;

    fn scope(line: usize, policy: Option<&str>, paths: &[&str]) -> KeyScope {
        KeyScope {
            place: Place::line(Path::new("/ak"), line),
            policy_file: policy.map(PathBuf::from),
            label: policy.map_or("borg serve".to_owned(), |p| format!("policy {p}")),
            paths: paths.iter().map(PathBuf::from).collect(),
        }
    }

    fn texts(findings: &[Finding]) -> Vec<String> {
        findings.iter().map(|f| f.to_string()).collect()
    }

    #[test]
    fn separate_directories_do_not_overlap() {
        let scopes = [
            scope(1, Some("/a.toml"), &["/srv/backup/alice"]),
            scope(2, Some("/b.toml"), &["/srv/backup/bob"]),
            scope(3, None, &["/srv/backup/alice2"]),
        ];
        assert_eq!(overlapping_scopes(&scopes), []);
    }

    #[test]
    fn nested_or_equal_paths_of_different_keys_overlap() {
        let scopes = [
            scope(1, Some("/a.toml"), &["/srv/backup"]),
            scope(2, Some("/b.toml"), &["/srv/backup/bob"]),
            scope(4, None, &["/srv/backup/bob/laptop"]),
        ];
        assert_eq!(
            texts(&overlapping_scopes(&scopes)),
            [
                "warning: /ak:2: this key (policy /b.toml) and the key on line 1 (policy /a.toml) can both reach /srv/backup/bob: either can read, and unless append-only delete, the other's backups; give each key its own directory in restrict_to_paths",
                "warning: /ak:4: this key (borg serve) and the key on line 1 (policy /a.toml) can both reach /srv/backup/bob/laptop: either can read, and unless append-only delete, the other's backups; give each key its own directory in restrict_to_paths",
                "warning: /ak:4: this key (borg serve) and the key on line 2 (policy /b.toml) can both reach /srv/backup/bob/laptop: either can read, and unless append-only delete, the other's backups; give each key its own directory in restrict_to_paths",
            ]
        );
    }

    #[test]
    fn paths_overlap_by_component_not_by_prefix() {
        let scopes = [
            scope(1, Some("/a.toml"), &["/srv/backup/al"]),
            scope(2, Some("/b.toml"), &["/srv/backup/alice"]),
        ];
        assert_eq!(overlapping_scopes(&scopes), []);
    }

    #[test]
    fn keys_sharing_one_policy_share_its_scope_on_purpose() {
        let scopes = [
            scope(1, Some("/a.toml"), &["/srv/a"]),
            scope(2, Some("/a.toml"), &["/srv/a"]),
        ];
        assert_eq!(overlapping_scopes(&scopes), []);
        let plain = [scope(1, None, &["/srv/a"]), scope(2, None, &["/srv/a"])];
        assert_eq!(overlapping_scopes(&plain).len(), 1);
    }

    #[test]
    fn path_states_map_to_findings() {
        let place = || Place::file(Path::new("/p.toml"));
        let path = Path::new("/srv/x");
        assert_eq!(
            path_finding(place(), path, Restriction::Path, PathState::Directory),
            None
        );
        for (restriction, state, start) in [
            (
                Restriction::Path,
                PathState::Missing,
                "warning: /p.toml: restricted path /srv/x does not exist",
            ),
            (
                Restriction::Repository,
                PathState::Missing,
                "warning: /p.toml: the directory that should hold repository /srv/x does not exist",
            ),
            (
                Restriction::Path,
                PathState::Symlink,
                "warning: /p.toml: restricted path /srv/x is a symlink",
            ),
            (
                Restriction::Repository,
                PathState::Symlink,
                "warning: /p.toml: restricted path /srv/x is a symlink",
            ),
            (
                Restriction::Path,
                PathState::NotDirectory,
                "warning: /p.toml: restricted path /srv/x is not a directory",
            ),
        ] {
            let finding = path_finding(place(), path, restriction, state).unwrap();
            assert!(finding.to_string().starts_with(start), "{finding}");
        }
    }

    fn policy(text: &str) -> Policy {
        parse_policy(text, "p").unwrap()
    }

    #[test]
    fn unrestricted_policies_are_warnings() {
        let open =
            policy("version = 1\n[repository]\nunrestricted = true\n[audit]\nsyslog = true\n");
        let finding = unrestricted_finding(Place::file(Path::new("/p.toml")), &open).unwrap();
        assert!(
            finding
                .to_string()
                .starts_with("warning: /p.toml: policy p sets `unrestricted = true`")
        );
        let closed = policy(
            "version = 1\n[repository]\nrestrict_to_paths = [\"/srv\"]\n[audit]\nsyslog = true\n",
        );
        assert_eq!(
            unrestricted_finding(Place::file(Path::new("/p")), &closed),
            None
        );
    }

    #[test]
    fn the_same_name_in_two_files_is_a_warning_once() {
        let policies = [
            (PathBuf::from("/a.toml"), "x".to_owned()),
            (PathBuf::from("/a.toml"), "x".to_owned()),
            (PathBuf::from("/b.toml"), "x".to_owned()),
            (PathBuf::from("/b.toml"), "x".to_owned()),
            (PathBuf::from("/c.toml"), "y".to_owned()),
        ];
        assert_eq!(
            texts(&shared_names(&policies)),
            [
                "warning: /b.toml: policy name \"x\" is also used by /a.toml: audit records and metrics cannot tell the two apart; give each policy its own `name`"
            ]
        );
    }

    #[test]
    fn permissions_follow_owner_group_other() {
        let file = |owner, group, mode| Ownership { owner, group, mode };
        let user = Identity {
            uid: 1000,
            groups: vec![1000, 50],
        };
        let root = Identity {
            uid: 0,
            groups: vec![0],
        };
        assert!(permits(file(0, 0, 0o644), &user, 4));
        assert!(!permits(file(0, 0, 0o640), &user, 4));
        assert!(permits(file(0, 50, 0o640), &user, 4));
        assert!(
            !permits(file(0, 50, 0o604), &user, 4),
            "group bits decide for members"
        );
        assert!(permits(file(1000, 0, 0o600), &user, 4));
        assert!(
            !permits(file(1000, 0, 0o066), &user, 4),
            "owner bits decide for the owner"
        );
        assert!(permits(file(0, 50, 0o770), &user, 2));
        assert!(!permits(file(0, 0, 0o755), &user, 2));
        assert!(permits(file(1, 1, 0o000), &root, 4));
        assert!(permits(file(1, 1, 0o000), &root, 2));
        assert!(!permits(file(1, 1, 0o000), &root, 1));
    }

    #[test]
    fn load_errors_become_findings_from_the_backup_accounts_view() {
        let place = || Place::line(Path::new("/ak"), 1);
        let path = Path::new("/etc/p.toml");
        let missing = LoadError::Open {
            path: path.into(),
            error: std::io::Error::from_raw_os_error(2),
        };
        assert_eq!(
            load_error_finding(place(), path, &missing, Some(1000)).to_string(),
            "error: /ak:1: policy /etc/p.toml does not exist, so every session with this key is refused; create it (see borg-gate-policy(5)) or fix the path in the forced command"
        );
        let owned_by_account = LoadError::Owner {
            path: path.into(),
            owner: 1000,
            allowed: vec![0],
        };
        assert_eq!(
            load_error_finding(place(), path, &owned_by_account, Some(1000)).to_string(),
            "warning: /ak:1: policy /etc/p.toml is owned by the backup account (uid 1000), which may then rewrite its own policy; chown root: /etc/p.toml"
        );
        assert_eq!(
            load_error_finding(place(), path, &owned_by_account, Some(1001)).to_string(),
            "error: /ak:1: policy /etc/p.toml is owned by uid 1000, so every session with this key is refused; it must be owned by uid 0"
        );
        let writable = LoadError::Writable {
            path: path.into(),
            mode: 0o100666,
        };
        assert_eq!(
            load_error_finding(place(), path, &writable, Some(1000)).to_string(),
            "error: /ak:1: policy /etc/p.toml is writable by group or others (mode 0666), so every session with this key is refused; run chmod go-w on it"
        );
    }

    #[test]
    fn unreadable_policies_and_unwritable_audit_logs_are_errors() {
        let p = policy(
            "version = 1\n[repository]\nrestrict_to_paths = [\"/srv\"]\n[audit]\nfile = \"/var/log/bg/a.jsonl\"\n",
        );
        let user = Identity {
            uid: 1000,
            groups: vec![1000],
        };
        let private = Ownership {
            owner: 0,
            group: 0,
            mode: 0o600,
        };
        let public = Ownership {
            owner: 0,
            group: 0,
            mode: 0o644,
        };
        let root_dir = Ownership {
            owner: 0,
            group: 0,
            mode: 0o755,
        };
        let user_dir = Ownership {
            owner: 1000,
            group: 1000,
            mode: 0o750,
        };
        let place = || Place::file(Path::new("/p.toml"));
        let run = |file, audit| {
            texts(&access_findings(
                place(),
                Path::new("/p.toml"),
                file,
                &p,
                audit,
                &user,
            ))
        };
        assert_eq!(
            run(public, Some((PathBuf::from("/var/log/bg"), Some(user_dir)))),
            Vec::<String>::new()
        );
        assert_eq!(run(public, None), Vec::<String>::new());
        let unreadable = run(private, None);
        assert_eq!(unreadable.len(), 1);
        assert!(unreadable[0].starts_with(
            "error: /p.toml: the backup account (uid 1000) cannot read policy /p.toml"
        ));
        let unwritable = run(public, Some((PathBuf::from("/var/log/bg"), Some(root_dir))));
        assert_eq!(unwritable.len(), 1);
        assert!(unwritable[0].starts_with("error: /p.toml: the backup account (uid 1000) cannot write /var/log/bg, so every session with this key is refused"));
        let missing = run(public, Some((PathBuf::from("/var/log/bg"), None)));
        assert!(
            missing[0]
                .starts_with("error: /p.toml: the audit log directory /var/log/bg does not exist")
        );
    }

    #[test]
    fn metrics_directories_must_exist_and_be_writable() {
        let user = Identity {
            uid: 1000,
            groups: vec![1000],
        };
        let place = || Place::file(Path::new("/p.toml"));
        let dir = Path::new("/var/lib/prom");
        let missing = metrics_finding(place(), dir, None, Some(&user)).unwrap();
        assert_eq!(
            missing.to_string(),
            "warning: /p.toml: the metrics directory /var/lib/prom does not exist, so the gate silently skips its metrics; create the directory writable by the backup account, or remove [metrics]"
        );
        let root_only = Ownership {
            owner: 0,
            group: 0,
            mode: 0o755,
        };
        assert!(metrics_finding(place(), dir, Some(root_only), Some(&user)).is_some());
        assert!(metrics_finding(place(), dir, Some(root_only), None).is_none());
        let shared = Ownership {
            owner: 0,
            group: 1000,
            mode: 0o775,
        };
        assert!(metrics_finding(place(), dir, Some(shared), Some(&user)).is_none());
    }
}
