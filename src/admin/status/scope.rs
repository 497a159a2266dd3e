//! Which directories `status` walks, which policies reach a repository, and the quota and
//! append-only setting those policies force on it. Pure: every path here is already resolved.
//!
//! Reach follows the engine's restriction checks (borg's `_resolve_path` and `open`): a
//! repository is under a `restrict_to_paths` entry when its path, with a trailing slash,
//! starts with the entry's, and it is a `restrict_to_repositories` entry when the two are
//! equal; a policy with both lists needs both; a policy with neither (`unrestricted = true`)
//! reaches every repository.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::engine::borg1::lock::identity::HOST_ID_VARIABLE;
use crate::policy::Policy;

/// A policy as `status` uses it: its name, its restrictions resolved like the engine resolves
/// them (`realpath`), and what it forces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyScope {
    pub name: String,
    pub file: PathBuf,
    pub restrict_to_paths: Vec<PathBuf>,
    pub restrict_to_repositories: Vec<PathBuf>,
    pub append_only: bool,
    /// Bytes, 0 for none; `None` leaves the repository's own quota in force.
    pub storage_quota: Option<u64>,
    /// The `BORG_HOST_ID` the policy sets for its engine: locks with this host id were taken
    /// on this host, by that engine.
    pub engine_host_id: Option<String>,
}

impl PolicyScope {
    /// The scope of `policy` loaded from `file`, with `resolve` applied to every restriction.
    pub fn of(policy: &Policy, file: &Path, resolve: impl Fn(&Path) -> PathBuf) -> PolicyScope {
        let forced = &policy.repository;
        PolicyScope {
            name: policy.name.clone(),
            file: file.to_path_buf(),
            restrict_to_paths: forced
                .restrict_to_paths
                .iter()
                .map(|p| resolve(p))
                .collect(),
            restrict_to_repositories: forced
                .restrict_to_repositories
                .iter()
                .map(|p| resolve(p))
                .collect(),
            append_only: forced.append_only,
            storage_quota: forced.storage_quota,
            engine_host_id: policy
                .engine
                .env
                .get(HOST_ID_VARIABLE)
                .filter(|id| !id.is_empty())
                .cloned(),
        }
    }

    pub fn is_unrestricted(&self) -> bool {
        self.restrict_to_paths.is_empty() && self.restrict_to_repositories.is_empty()
    }

    /// Whether a client of this policy could open the repository at `repository`.
    pub fn reaches(&self, repository: &Path) -> bool {
        let inside = self.restrict_to_paths.is_empty()
            || self
                .restrict_to_paths
                .iter()
                .any(|allowed| is_within(repository, allowed));
        let named = self.restrict_to_repositories.is_empty()
            || self
                .restrict_to_repositories
                .iter()
                .any(|allowed| allowed == repository);
        inside && named
    }

    /// Where this policy's repositories can be: its restricted directories and repositories.
    pub fn roots(&self) -> impl Iterator<Item = &Path> {
        self.restrict_to_paths
            .iter()
            .chain(&self.restrict_to_repositories)
            .map(PathBuf::as_path)
    }
}

/// `path` is `dir` or below it, compared as borg does: `path + "/"` starts with `dir + "/"`.
pub(crate) fn is_within(path: &Path, dir: &Path) -> bool {
    with_trailing_slash(path).starts_with(&with_trailing_slash(dir))
}

fn with_trailing_slash(path: &Path) -> Vec<u8> {
    let mut bytes = path.as_os_str().as_bytes().to_vec();
    if !bytes.ends_with(b"/") {
        bytes.push(b'/');
    }
    bytes
}

/// The directories to walk: each one once, in byte order, leaving out those inside another
/// (its repositories are found from the outer one).
pub(crate) fn walk_roots(candidates: impl IntoIterator<Item = PathBuf>) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = candidates.into_iter().collect();
    roots.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
    roots.dedup();
    let mut kept: Vec<PathBuf> = Vec::with_capacity(roots.len());
    for root in roots {
        if !kept.iter().any(|outer| is_within(&root, outer)) {
            kept.push(root);
        }
    }
    kept
}

/// The names of the policies in `scopes` that reach `repository`, in the order given.
pub(crate) fn reaching<'a>(scopes: &'a [PolicyScope], repository: &Path) -> Vec<&'a PolicyScope> {
    scopes
        .iter()
        .filter(|scope| scope.reaches(repository))
        .collect()
}

/// What a repository's clients are held to, from its config and the policies that reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Effective {
    /// The smallest quota any reaching client works under (`None`: no quota for anyone).
    pub quota_bytes: Option<u64>,
    /// No client can delete: the repository says so, or every reaching policy forces it.
    pub append_only: bool,
}

/// `config_quota` and `config_append_only` are the repository's own `storage_quota` (0 for
/// none) and `append_only`. A policy's forced quota replaces the repository's for its clients,
/// as `--storage-quota` does in borg; each client works under one, so the tightest counts.
pub(crate) fn effective(
    config_quota: u64,
    config_append_only: bool,
    reaching: &[&PolicyScope],
) -> Effective {
    let quota_bytes = if reaching.is_empty() {
        Some(config_quota)
    } else {
        reaching
            .iter()
            .map(|scope| scope.storage_quota.unwrap_or(config_quota))
            .filter(|&quota| quota > 0)
            .min()
    }
    .filter(|&quota| quota > 0);
    let append_only = config_append_only
        || (!reaching.is_empty() && reaching.iter().all(|scope| scope.append_only));
    Effective {
        quota_bytes,
        append_only,
    }
}

/// Display form of a path on one line: control characters (a newline in a directory name)
/// become `\n`, `\t` or `\u{..}` escapes; other bytes that are not UTF-8 become U+FFFD.
pub(crate) fn one_line(path: &Path) -> String {
    one_line_text(&String::from_utf8_lossy(OsStr::as_bytes(path.as_os_str())))
}

/// [`one_line`] for any text.
pub(crate) fn one_line_text(text: &str) -> String {
    let mut line = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(paths: &[&str], repositories: &[&str]) -> PolicyScope {
        PolicyScope {
            name: "p".into(),
            file: PathBuf::from("/etc/borg-gate/p.toml"),
            restrict_to_paths: paths.iter().map(PathBuf::from).collect(),
            restrict_to_repositories: repositories.iter().map(PathBuf::from).collect(),
            append_only: false,
            storage_quota: None,
            engine_host_id: None,
        }
    }

    #[test]
    fn a_policy_names_the_host_id_its_engine_locks_with() {
        let text = |env: &str| {
            format!(
                "version = 1\n[engine]\nenv = {{ {env} }}\n[repository]\nrestrict_to_paths = [\"/srv\"]\n[audit]\nsyslog = true\n"
            )
        };
        let of = |env: &str| {
            let policy = crate::policy::parse_policy(&text(env), "p").unwrap();
            PolicyScope::of(&policy, Path::new("/etc/p.toml"), Path::to_path_buf).engine_host_id
        };
        assert_eq!(
            of("BORG_HOST_ID = \"backup-host-3\""),
            Some("backup-host-3".to_owned())
        );
        assert_eq!(of("BORG_HOST_ID = \"\""), None);
        assert_eq!(of("BORG_OTHER = \"x\""), None);
    }

    #[test]
    fn a_restricted_path_reaches_what_is_below_it_and_not_its_namesakes() {
        let alice = scope(&["/srv/backup/alice"], &[]);
        assert!(alice.reaches(Path::new("/srv/backup/alice")));
        assert!(alice.reaches(Path::new("/srv/backup/alice/laptop")));
        assert!(alice.reaches(Path::new("/srv/backup/alice/a/b/c")));
        assert!(!alice.reaches(Path::new("/srv/backup/alice2")));
        assert!(!alice.reaches(Path::new("/srv/backup/alic")));
        assert!(!alice.reaches(Path::new("/srv/backup")));
        let slash = scope(&["/srv/backup/"], &[]);
        assert!(slash.reaches(Path::new("/srv/backup/x")));
    }

    #[test]
    fn a_restricted_repository_reaches_only_itself() {
        let bob = scope(&[], &["/srv/backup/bob/repo"]);
        assert!(bob.reaches(Path::new("/srv/backup/bob/repo")));
        assert!(!bob.reaches(Path::new("/srv/backup/bob/repo/inner")));
        assert!(!bob.reaches(Path::new("/srv/backup/bob")));
        assert!(!bob.reaches(Path::new("/srv/backup/bob/repo2")));
    }

    #[test]
    fn both_lists_must_agree_and_no_list_reaches_everything() {
        let both = scope(&["/srv/a"], &["/srv/a/r", "/srv/b/r"]);
        assert!(both.reaches(Path::new("/srv/a/r")));
        assert!(!both.reaches(Path::new("/srv/b/r")));
        assert!(!both.reaches(Path::new("/srv/a/other")));
        let open = scope(&[], &[]);
        assert!(open.is_unrestricted());
        assert!(open.reaches(Path::new("/anything/at/all")));
        assert_eq!(open.roots().count(), 0);
        assert_eq!(
            both.roots().collect::<Vec<_>>(),
            [
                Path::new("/srv/a"),
                Path::new("/srv/a/r"),
                Path::new("/srv/b/r")
            ]
        );
    }

    #[test]
    fn walk_roots_drops_duplicates_and_directories_inside_others() {
        let roots = walk_roots(
            [
                "/srv/backup/alice/laptop",
                "/srv/backup-old",
                "/srv/backup",
                "/srv/backup/bob",
                "/srv/backup",
                "/data",
            ]
            .map(PathBuf::from),
        );
        assert_eq!(
            roots,
            ["/data", "/srv/backup", "/srv/backup-old"].map(PathBuf::from)
        );
        assert_eq!(walk_roots([PathBuf::from("/")]), [PathBuf::from("/")]);
        assert_eq!(
            walk_roots(["/", "/srv"].map(PathBuf::from)),
            [PathBuf::from("/")]
        );
    }

    #[test]
    fn reaching_keeps_the_order_of_the_policies() {
        let mut a = scope(&["/srv"], &[]);
        a.name = "a".into();
        let mut b = scope(&["/srv/x"], &[]);
        b.name = "b".into();
        let mut c = scope(&["/other"], &[]);
        c.name = "c".into();
        let scopes = [b, c, a];
        let names: Vec<&str> = reaching(&scopes, Path::new("/srv/x/r"))
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["b", "a"]);
    }

    #[test]
    fn the_tightest_quota_any_client_works_under_counts() {
        let mut forced = scope(&["/srv"], &[]);
        forced.storage_quota = Some(50_000_000);
        let mut lifted = scope(&["/srv"], &[]);
        lifted.storage_quota = Some(0);
        let plain = scope(&["/srv"], &[]);
        let quota =
            |config: u64, reaching: &[&PolicyScope]| effective(config, false, reaching).quota_bytes;
        assert_eq!(quota(0, &[]), None);
        assert_eq!(quota(20_000_000, &[]), Some(20_000_000));
        assert_eq!(quota(0, &[&plain]), None);
        assert_eq!(quota(20_000_000, &[&plain]), Some(20_000_000));
        assert_eq!(quota(0, &[&forced]), Some(50_000_000));
        assert_eq!(quota(90_000_000, &[&forced]), Some(50_000_000));
        assert_eq!(quota(20_000_000, &[&forced, &plain]), Some(20_000_000));
        assert_eq!(quota(20_000_000, &[&lifted]), None);
        assert_eq!(quota(20_000_000, &[&lifted, &forced]), Some(50_000_000));
    }

    #[test]
    fn append_only_holds_when_the_repository_or_every_reaching_policy_says_so() {
        let mut forced = scope(&["/srv"], &[]);
        forced.append_only = true;
        let plain = scope(&["/srv"], &[]);
        let append_only =
            |config: bool, reaching: &[&PolicyScope]| effective(0, config, reaching).append_only;
        assert!(!append_only(false, &[]));
        assert!(append_only(true, &[]));
        assert!(append_only(true, &[&plain]));
        assert!(append_only(false, &[&forced]));
        assert!(append_only(false, &[&forced, &forced]));
        assert!(!append_only(false, &[&forced, &plain]));
    }

    #[test]
    fn paths_print_on_one_line() {
        assert_eq!(one_line(Path::new("/srv/a b/ü")), "/srv/a b/ü");
        assert_eq!(one_line(Path::new("/srv/a\nb\tc")), "/srv/a\\nb\\tc");
        assert_eq!(one_line(Path::new("/srv/\u{1b}[31m")), "/srv/\\u{1b}[31m");
        assert_eq!(
            one_line(Path::new(OsStr::from_bytes(b"/srv/\xff"))),
            "/srv/\u{fffd}"
        );
    }
}
