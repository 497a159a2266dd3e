//! `borg-gate status`: every borg 1.x repository under the given directories and policies, at a
//! glance: its last commit, size, quota, segments, compactable space, append-only flag, lock
//! and the policies that reach it.
//!
//! It reads only borg's format, so it works the same for repositories served by the built-in
//! engine and by Python `borg serve`. It is a bystander: it never takes a repository lock,
//! never writes into a repository, never follows a symlink below a root, and copes with a
//! repository that is being written while it reads (see [`read`]).
//!
//! Reading the code: [`walk`] finds repositories and [`read`] reads one (the only I/O on
//! repositories); [`facts`] says what their files mean, [`scope`] which policies reach them,
//! and [`report`] how a repository is printed, serialised and exported as gauges. [`run`] ties
//! them together: the walk reads repositories in parallel, and the report follows in path
//! order.

pub(crate) mod facts;
pub(crate) mod read;
pub(crate) mod report;
pub(crate) mod scope;
pub(crate) mod walk;

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use crate::engine::borg1::lock::{LockIdentity, host_id_from_environment, process_alive};
use crate::engine::borg1::repository::config::ConfigFile;
use crate::engine::paths::realpath;
use crate::metrics::{self, MetricsError};
use crate::policy::{LoadError, load_policy};
use report::{Gauges, RepositoryStatus};
use scope::PolicyScope;

/// How each repository is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// One line for a person.
    Text,
    /// One JSON object per line.
    Json,
    /// Nothing (the exit status and the textfile say it all).
    Quiet,
}

/// What `borg-gate status` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusOptions {
    pub paths: Vec<PathBuf>,
    pub policies: Vec<PathBuf>,
    pub max_age: Option<Duration>,
    pub output: Output,
    pub textfile: Option<PathBuf>,
}

/// Why `status` could not run at all (exit status 2).
#[derive(Debug)]
pub enum StatusError {
    /// Neither a path nor a policy with restrictions.
    NothingToSearch,
    Path {
        path: PathBuf,
        error: io::Error,
    },
    NotADirectory(PathBuf),
    Policy(LoadError),
    Output(io::Error),
    Textfile(MetricsError),
}

impl fmt::Display for StatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusError::NothingToSearch => f.write_str(
                "status: nothing to search; give a directory, or --policy with restrict_to_paths or restrict_to_repositories",
            ),
            StatusError::Path { path, error } => write!(
                f,
                "status: {}: {}",
                path.display(),
                crate::common::text::plain_io_error(error)
            ),
            StatusError::NotADirectory(path) => {
                write!(f, "status: {} is not a directory", path.display())
            }
            StatusError::Policy(error) => write!(f, "status: {error}"),
            StatusError::Output(error) => write!(f, "status: cannot write the report: {error}"),
            StatusError::Textfile(error) => write!(f, "status: {error}"),
        }
    }
}

impl std::error::Error for StatusError {}

/// What a run found, for the exit status and the closing words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub repositories: usize,
    /// Repositories older than `--max-age`, or without a known commit (display paths).
    pub overdue: Vec<String>,
    /// Directories that could not be searched, with the reason.
    pub unsearched: Vec<String>,
    /// Policies (name and file) whose restrictions hold no repository.
    pub idle_policies: Vec<String>,
}

impl Summary {
    /// Why `--max-age` fails, one sentence each; empty when every repository is recent and
    /// everything could be searched. A dead man's switch must not pass on what it cannot see.
    pub fn max_age_failures(&self, max_age: Duration) -> Vec<String> {
        let mut failures = Vec::new();
        let age = humantime::format_duration(max_age);
        if self.repositories == 0 {
            failures.push("no repository found".to_owned());
        }
        if !self.overdue.is_empty() {
            const SHOWN: usize = 20;
            let mut list = self.overdue[..self.overdue.len().min(SHOWN)].join(", ");
            if self.overdue.len() > SHOWN {
                list.push_str(&format!(" and {} more", self.overdue.len() - SHOWN));
            }
            failures.push(format!(
                "{} of {} repositories have no commit in the last {age}: {list}",
                self.overdue.len(),
                self.repositories
            ));
        }
        for policy in &self.idle_policies {
            failures.push(format!("policy {policy} reaches no repository"));
        }
        if !self.unsearched.is_empty() {
            failures.push(format!(
                "{} director{} could not be searched",
                self.unsearched.len(),
                if self.unsearched.len() == 1 {
                    "y"
                } else {
                    "ies"
                }
            ));
        }
        failures
    }
}

/// Runs `status`: reads every repository (in parallel), prints them to `out` in path order,
/// says through `warn` what it could not search and which policies reach nothing, writes the
/// textfile, and returns the summary.
pub fn run(
    options: &StatusOptions,
    out: &mut dyn Write,
    warn: &mut dyn FnMut(&str),
) -> Result<Summary, StatusError> {
    let now = SystemTime::now();
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let mut scopes = Vec::with_capacity(options.policies.len());
    for file in &options.policies {
        let policy = load_policy(file).map_err(StatusError::Policy)?;
        scopes.push(PolicyScope::of(&policy, file, |path| realpath(path, &cwd)));
    }
    let mut roots = Vec::with_capacity(options.paths.len());
    for path in &options.paths {
        let resolved = std::fs::canonicalize(path).map_err(|error| StatusError::Path {
            path: path.clone(),
            error,
        })?;
        if !resolved.is_dir() {
            return Err(StatusError::NotADirectory(path.clone()));
        }
        roots.push(resolved);
    }
    roots.extend(scopes.iter().flat_map(|s| s.roots().map(Path::to_path_buf)));
    let roots = scope::walk_roots(roots);
    if roots.is_empty() {
        return Err(StatusError::NothingToSearch);
    }

    // A holder is on this host when it has our host id (borg's, computed only if needed) or
    // the one a given policy sets for its engine here.
    let own_host = OnceLock::new();
    let engine_hosts: Vec<&str> = scopes
        .iter()
        .filter_map(|s| s.engine_host_id.as_deref())
        .collect();
    let alive = |holder: &LockIdentity| {
        let local = engine_hosts.contains(&holder.host_id.as_str())
            || holder.host_id == *own_host.get_or_init(host_id_from_environment);
        local.then(|| process_alive(holder, &holder.host_id))
    };
    let read = |_: &Path, dir: &mut nix::dir::Dir, config: Result<&ConfigFile, &str>| {
        read::read_repository(dir, config, &alive)
    };
    let discovery = walk::discover(&roots, walk::THREADS, &read);

    let mut summary = Summary::default();
    let mut gauges = options.textfile.as_ref().map(|_| Gauges::new());
    let mut reached = vec![0u64; scopes.len()];
    for (path, facts) in discovery.repositories {
        let reaching = scope::reaching(&scopes, &path);
        for (count, scope) in reached.iter_mut().zip(&scopes) {
            *count += u64::from(scope.reaches(&path));
        }
        let status = assemble(&path, facts, &reaching);
        summary.repositories += 1;
        if options
            .max_age
            .is_some_and(|max| status.is_overdue(now, max))
        {
            summary.overdue.push(scope::one_line(&path));
        }
        if let Some(gauges) = &mut gauges {
            gauges.add_repository(&status);
        }
        match options.output {
            Output::Text => writeln!(out, "{}", report::line(&status, now)),
            Output::Json => writeln!(out, "{}", report::json(&status, now)),
            Output::Quiet => Ok(()),
        }
        .map_err(StatusError::Output)?;
    }
    out.flush().map_err(StatusError::Output)?;
    for place in discovery.unsearched {
        let text = format!("{}: {}", scope::one_line(&place.path), place.reason);
        warn(&format!("cannot search {text}"));
        summary.unsearched.push(text);
    }

    for (scope, count) in scopes.iter().zip(&reached) {
        if *count == 0 {
            let policy = format!("{:?} ({})", scope.name, scope.file.display());
            // With --max-age it is one of the failures, said once with the others.
            if options.max_age.is_none() {
                warn(&format!("policy {policy} reaches no repository"));
            }
            summary.idle_policies.push(policy);
        }
        if let Some(gauges) = &mut gauges {
            gauges.add_policy(&scope.name, *count);
        }
    }
    if let (Some(file), Some(gauges)) = (&options.textfile, gauges) {
        metrics::write_textfile(file, gauges.render(now), metrics::MAX_LOCK_WAIT)
            .map_err(StatusError::Textfile)?;
    }
    Ok(summary)
}

/// The status of the repository at `path` from its files and the policies that reach it.
pub fn assemble(
    path: &Path,
    facts: read::RepositoryFacts,
    reaching: &[&PolicyScope],
) -> RepositoryStatus {
    let mut problems = facts.problems;
    let effective = facts.settings.as_ref().map(|settings| {
        let config_quota = u64::try_from(settings.storage_quota).unwrap_or_else(|_| {
            problems.push(format!(
                "config: storage_quota {} is negative; borg refuses every write",
                settings.storage_quota
            ));
            0
        });
        scope::effective(config_quota, settings.append_only, reaching)
    });
    RepositoryStatus {
        path: path.to_path_buf(),
        last_commit: facts.commit,
        size_bytes: facts.size_bytes,
        quota_bytes: effective.and_then(|e| e.quota_bytes),
        quota_used_bytes: facts.hints.quota_used_bytes,
        segments: facts.segments,
        compactable_bytes: facts.hints.compactable_bytes,
        append_only: effective.map(|e| e.append_only),
        lock: facts.lock,
        policies: reaching.iter().map(|scope| scope.name.clone()).collect(),
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::status::facts::{Commit, HintsFigures, LockState};
    use crate::engine::borg1::repository::config::{RepositoryConfig, new_repository_config};

    fn summary() -> Summary {
        Summary {
            repositories: 3,
            ..Summary::default()
        }
    }

    #[test]
    fn max_age_passes_only_when_everything_was_seen_and_is_recent() {
        let day = Duration::from_secs(86_400);
        assert_eq!(summary().max_age_failures(day), Vec::<String>::new());
        assert_eq!(
            Summary::default().max_age_failures(day),
            ["no repository found"]
        );
        let overdue = Summary {
            overdue: vec!["/srv/a".into(), "/srv/b".into()],
            idle_policies: vec!["\"bob\" (/etc/bob.toml)".into()],
            unsearched: vec!["/srv/x: Permission denied".into()],
            ..summary()
        };
        assert_eq!(
            overdue.max_age_failures(Duration::from_secs(26 * 3600)),
            [
                "2 of 3 repositories have no commit in the last 1day 2h: /srv/a, /srv/b",
                "policy \"bob\" (/etc/bob.toml) reaches no repository",
                "1 directory could not be searched",
            ]
        );
        let many = Summary {
            repositories: 30,
            overdue: (0..25).map(|n| format!("/r{n}")).collect(),
            ..Summary::default()
        };
        let failures = many.max_age_failures(day);
        assert!(
            failures[0]
                .starts_with("25 of 30 repositories have no commit in the last 1day: /r0, /r1,")
        );
        assert!(failures[0].ends_with("/r19 and 5 more"), "{}", failures[0]);
    }

    #[test]
    fn assembly_applies_the_reaching_policies_and_flags_a_negative_quota() {
        let settings = |quota: i64, append_only: bool| {
            RepositoryConfig::from_config(
                &new_repository_config(&[1; 32], append_only, quota),
                None,
            )
            .unwrap()
        };
        let facts = |settings: Option<RepositoryConfig>| read::RepositoryFacts {
            size_bytes: 4096,
            settings,
            segments: Some(2),
            commit: Some(Commit {
                transaction_id: 1,
                time: SystemTime::UNIX_EPOCH,
            }),
            hints: HintsFigures {
                quota_used_bytes: Some(10),
                compactable_bytes: Some(9),
            },
            lock: LockState::free(),
            problems: vec![],
        };
        let forced = PolicyScope {
            name: "tenant".into(),
            file: PathBuf::from("/etc/t.toml"),
            restrict_to_paths: vec![PathBuf::from("/srv")],
            restrict_to_repositories: vec![],
            append_only: true,
            storage_quota: Some(50_000_000),
            engine_host_id: None,
        };
        let path = Path::new("/srv/r");
        let status = assemble(path, facts(Some(settings(0, false))), &[&forced]);
        assert_eq!(status.quota_bytes, Some(50_000_000));
        assert_eq!(status.append_only, Some(true));
        assert_eq!(status.policies, ["tenant"]);
        assert_eq!(status.problems, Vec::<String>::new());

        let plain = assemble(path, facts(Some(settings(20_000_000, false))), &[]);
        assert_eq!(
            (plain.quota_bytes, plain.append_only),
            (Some(20_000_000), Some(false))
        );

        let negative = assemble(path, facts(Some(settings(-1, false))), &[]);
        assert_eq!(negative.quota_bytes, None);
        assert_eq!(
            negative.problems,
            ["config: storage_quota -1 is negative; borg refuses every write"]
        );

        let unknown = assemble(path, facts(None), &[&forced]);
        assert_eq!((unknown.quota_bytes, unknown.append_only), (None, None));
        assert_eq!(unknown.quota_used_bytes, Some(10));
    }
}
