//! The rules `borg-gate doctor` applies across keys and policies: what each key can reach,
//! whether those scopes overlap, whether the directories are real, and whether the backup
//! account can use the files its policy names.
//!
//! Pure: the caller passes file facts it gathered with `stat`.

use std::path::{Path, PathBuf};

use super::{Finding, Place};
use crate::policy::{LoadError, Policy};

/// What one key can reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyScope {
    /// The key's line in authorized_keys.
    pub place: Place,
    /// The policy file, or `None` for a plain `borg serve` line.
    pub policy_file: Option<PathBuf>,
    /// How the key is named in messages: `policy alice` or `borg serve`.
    pub label: String,
    /// restrict_to_paths and restrict_to_repositories together; empty when unrestricted.
    pub paths: Vec<PathBuf>,
    /// The key cannot change anything (`permissions = "read-only"`).
    pub read_only: bool,
    /// The policy's `name`, and the policies it shares its repositories with on purpose.
    pub policy_name: Option<String>,
    pub shared_with: Vec<String>,
}

impl KeyScope {
    /// Two keys with the same policy file share their scope on purpose.
    fn same_policy(&self, other: &KeyScope) -> bool {
        self.policy_file.is_some() && self.policy_file == other.policy_file
    }

    /// Whether this key's policy declares sharing with the other key's policy.
    fn shares_with(&self, other: &KeyScope) -> bool {
        other
            .policy_name
            .as_ref()
            .is_some_and(|name| self.shared_with.contains(name))
    }

    /// Whether an overlap of the two scopes is intended or harmless: the same policy, a
    /// declared sharing, or a key that can only read (a restore key beside the key that
    /// writes, as recommended).
    fn may_overlap(&self, other: &KeyScope) -> bool {
        self.same_policy(other)
            || self.shares_with(other)
            || other.shares_with(self)
            || self.read_only
            || other.read_only
    }
}

/// Pairs of keys whose restrictions overlap although neither key is read-only and no policy
/// declares the sharing: either key can read, and unless append-only delete, the other's
/// backups.
pub(crate) fn overlapping_scopes(scopes: &[KeyScope]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (index, later) in scopes.iter().enumerate() {
        for earlier in &scopes[..index] {
            if earlier.may_overlap(later) {
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
                    "give each key its own directory in restrict_to_paths, or declare the sharing with shared_with in the policy's [repository]",
                ));
            }
        }
    }
    findings
}

/// What `stat` said about a restricted path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathState {
    Directory,
    Missing,
    Symlink,
    NotDirectory,
}

/// Which restriction a path comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Restriction {
    Path,
    /// A repository; `borg init` creates it, so only its parent has to exist.
    Repository,
}

/// A restricted path that does not exist, is a symlink, or is not a directory. `owner` is
/// the backup account and its group, for the command that creates what is missing.
pub(crate) fn path_finding(
    place: Place,
    path: &Path,
    restriction: Restriction,
    state: PathState,
    owner: Option<(&str, &str)>,
) -> Option<Finding> {
    let shown = path.display();
    let install = |dir: &Path| match owner {
        Some((user, group)) => format!("install -d -o {user} -g {group} -m 0700 {}", dir.display()),
        None => format!(
            "install -d -o BACKUP-USER -m 0700 {} (BACKUP-USER: the account the keys log in to)",
            dir.display()
        ),
    };
    match (state, restriction) {
        (PathState::Directory, _) => None,
        (PathState::Missing, Restriction::Path) => Some(Finding::warning(
            place,
            format!("restricted path {shown} does not exist, so `borg init` below it fails"),
            format!("create it: {}", install(path)),
        )),
        (PathState::Missing, Restriction::Repository) => {
            let parent = path.parent().unwrap_or(Path::new("/"));
            Some(Finding::warning(
                place,
                format!("the directory that should hold repository {shown} does not exist"),
                format!("create it: {}", install(parent)),
            ))
        }
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
pub(crate) fn unrestricted_finding(place: Place, policy: &Policy) -> Option<Finding> {
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
pub(crate) fn shared_names(policies: &[(PathBuf, String)]) -> Vec<Finding> {
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

/// What the gate's own loader says about a policy (trust judged as the backup account),
/// reworded for an administrator.
pub(crate) fn load_error_finding(place: Place, path: &Path, error: &LoadError) -> Finding {
    let refused = "so every session with this key is refused";
    match error {
        LoadError::Open { error, .. } if error.kind() == std::io::ErrorKind::NotFound => {
            Finding::error(
                place,
                format!("policy {} does not exist, {refused}", path.display()),
                "create it (see borg-gate-policy(5)) or fix the path in the forced command",
            )
        }
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

/// A policy the backup account owns: the gate trusts it, and every key of the account can
/// rewrite it (through a repository path or an external engine's writes).
pub(crate) fn self_owned_finding(place: Place, path: &Path, account: &str) -> Finding {
    Finding::warning(
        place,
        format!(
            "policy {} is owned by the backup account {account}, which may then rewrite its own policy",
            path.display()
        ),
        format!("chown root: {}", path.display()),
    )
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
            read_only: false,
            policy_name: policy.map(str::to_owned),
            shared_with: Vec::new(),
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
                "warning: /ak:2: this key (policy /b.toml) and the key on line 1 (policy /a.toml) can both reach /srv/backup/bob: either can read, and unless append-only delete, the other's backups; give each key its own directory in restrict_to_paths, or declare the sharing with shared_with in the policy's [repository]",
                "warning: /ak:4: this key (borg serve) and the key on line 1 (policy /a.toml) can both reach /srv/backup/bob/laptop: either can read, and unless append-only delete, the other's backups; give each key its own directory in restrict_to_paths, or declare the sharing with shared_with in the policy's [repository]",
                "warning: /ak:4: this key (borg serve) and the key on line 2 (policy /b.toml) can both reach /srv/backup/bob/laptop: either can read, and unless append-only delete, the other's backups; give each key its own directory in restrict_to_paths, or declare the sharing with shared_with in the policy's [repository]",
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
    fn a_read_only_key_or_a_declared_sharing_may_overlap() {
        let writer = scope(1, Some("/laptop.toml"), &["/srv/borg/alice"]);
        let mut restore = scope(2, Some("/restore.toml"), &["/srv/borg/alice"]);
        assert_eq!(
            overlapping_scopes(&[writer.clone(), restore.clone()]).len(),
            1
        );
        restore.read_only = true;
        assert_eq!(overlapping_scopes(&[writer.clone(), restore.clone()]), []);
        assert_eq!(overlapping_scopes(&[restore.clone(), writer.clone()]), []);
        let mut admin = scope(3, Some("/admin.toml"), &["/srv/borg"]);
        assert_eq!(
            overlapping_scopes(&[writer.clone(), admin.clone()]).len(),
            1
        );
        admin.shared_with = vec!["/laptop.toml".into()];
        assert_eq!(overlapping_scopes(&[writer.clone(), admin.clone()]), []);
        assert_eq!(overlapping_scopes(&[admin.clone(), writer.clone()]), []);
        admin.shared_with = vec!["someone-else".into()];
        assert_eq!(overlapping_scopes(&[writer, admin]).len(), 1);
    }

    #[test]
    fn path_states_map_to_findings() {
        let place = || Place::file(Path::new("/p.toml"));
        let path = Path::new("/srv/x");
        assert_eq!(
            path_finding(place(), path, Restriction::Path, PathState::Directory, None),
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
            let finding = path_finding(place(), path, restriction, state, None).unwrap();
            assert!(finding.to_string().starts_with(start), "{finding}");
        }
        let owned = |restriction| {
            path_finding(
                place(),
                path,
                restriction,
                PathState::Missing,
                Some(("borg", "backup")),
            )
            .unwrap()
            .fix
        };
        assert_eq!(
            owned(Restriction::Path),
            "create it: install -d -o borg -g backup -m 0700 /srv/x"
        );
        assert_eq!(
            owned(Restriction::Repository),
            "create it: install -d -o borg -g backup -m 0700 /srv"
        );
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
    fn load_errors_become_findings_from_the_backup_accounts_view() {
        let place = || Place::line(Path::new("/ak"), 1);
        let path = Path::new("/etc/p.toml");
        let missing = LoadError::Open {
            path: path.into(),
            error: std::io::Error::from_raw_os_error(2),
        };
        assert_eq!(
            load_error_finding(place(), path, &missing).to_string(),
            "error: /ak:1: policy /etc/p.toml does not exist, so every session with this key is refused; create it (see borg-gate-policy(5)) or fix the path in the forced command"
        );
        let owned_by_someone = LoadError::Owner {
            path: path.into(),
            owner: 1000,
            allowed: vec![0, 1001],
            names: vec![
                (0, "root".into()),
                (1000, "alice".into()),
                (1001, "borg".into()),
            ],
        };
        assert_eq!(
            load_error_finding(place(), path, &owned_by_someone).to_string(),
            "error: /ak:1: policy /etc/p.toml is owned by alice (uid 1000), so every session with this key is refused; it must be owned by root or borg (uid 1001)"
        );
        assert_eq!(
            self_owned_finding(place(), path, "borg").to_string(),
            "warning: /ak:1: policy /etc/p.toml is owned by the backup account borg, which may then rewrite its own policy; chown root: /etc/p.toml"
        );
        let writable = LoadError::Writable {
            path: path.into(),
            mode: 0o100666,
        };
        assert_eq!(
            load_error_finding(place(), path, &writable).to_string(),
            "error: /ak:1: policy /etc/p.toml is writable by group or others (mode 0666), so every session with this key is refused; run chmod go-w on it"
        );
    }
}
