//! Which directory `--backend FILE:<path>` serves, and whether the restrictions allow it:
//! borg 2's `check_rest_restrictions` (`archiver/serve_cmd.py`) on top of the shared path
//! rules of `engine/paths.rs`.
//!
//! The path is expanded as Python's `expanduser` does (`~` is `$HOME`, `~user` that account's
//! home; under restrictions another account's `~user` is refused unlooked-up, as for borg 1),
//! made absolute against the working directory and resolved like `realpath`. Only `FILE:`
//! backends are served: borgstore would also serve `sftp://`, `s3:` or `rest://` URLs that a
//! client names, making the server connect out wherever the client says.

use std::fmt;
use std::path::PathBuf;

use crate::engine::paths::{
    PathContext, PathNotAllowed, check_no_foreign_writers, check_restrictions, expand_user,
    realpath,
};

/// borg's `PathNotAllowed` exit status (`BORG_EXIT_CODES=modern`, the default).
pub const EXIT_PATH_NOT_ALLOWED: u8 = 83;

/// Why a backend is not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendRefusal {
    /// No `--backend` (borg: `Error`, rc 2).
    Missing,
    /// Not `FILE:` and no restriction in force.
    NotFile(String),
    /// borg's `PathNotAllowed` (rc 83): outside the restrictions, or not `FILE:` under them.
    NotAllowed(String),
}

impl BackendRefusal {
    /// borg's exit status; `legacy` is `BORG_EXIT_CODES=legacy`, where every error is 2.
    pub fn exit_code(&self, legacy: bool) -> u8 {
        match self {
            BackendRefusal::NotAllowed(_) if !legacy => EXIT_PATH_NOT_ALLOWED,
            _ => 2,
        }
    }
}

impl fmt::Display for BackendRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendRefusal::Missing => {
                f.write_str("borg serve --rest requires --backend FILE:<path>.")
            }
            BackendRefusal::NotFile(backend) => write!(
                f,
                "borg-gate: serve --rest serves FILE:<path> backends only, not {backend:?}"
            ),
            BackendRefusal::NotAllowed(what) => write!(f, "Repository path not allowed: {what}."),
        }
    }
}

/// The resolved directory of `backend`, checked against the restrictions.
pub fn resolve_backend(
    backend: Option<&str>,
    context: &PathContext<'_>,
    restrict_to_paths: &[PathBuf],
    restrict_to_repositories: &[PathBuf],
) -> Result<PathBuf, BackendRefusal> {
    let backend = backend.ok_or(BackendRefusal::Missing)?;
    let restricted = !restrict_to_paths.is_empty() || !restrict_to_repositories.is_empty();
    let Some(path) = backend.strip_prefix("FILE:") else {
        return Err(if restricted {
            BackendRefusal::NotAllowed("only FILE: backends can be restricted".into())
        } else {
            BackendRefusal::NotFile(backend.to_owned())
        });
    };
    let not_allowed = |denied: PathNotAllowed| BackendRefusal::NotAllowed(denied.0);
    let expanded = if path.starts_with('~') {
        expand_user(path.as_bytes(), context, restricted).map_err(not_allowed)?
    } else {
        PathBuf::from(path)
    };
    let resolved = realpath(&expanded, &context.cwd);
    check_restrictions(
        &resolved,
        &context.cwd,
        restrict_to_paths,
        restrict_to_repositories,
    )
    .map_err(not_allowed)?;
    Ok(resolved)
}

/// Under restrictions the store is opened by its path for every request; refuse one that
/// another account could redirect with a symlink swap (see `paths::check_no_foreign_writers`).
pub fn check_path_is_ours(resolved: &std::path::Path, euid: u32) -> Result<(), String> {
    check_no_foreign_writers(resolved, euid).map_err(|unsafe_path| unsafe_path.to_string())
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use super::*;

    fn context<'a>(
        home: &Path,
        cwd: &Path,
        homes: &'a dyn Fn(&str) -> Option<PathBuf>,
    ) -> PathContext<'a> {
        PathContext {
            base_dir: home.to_path_buf(),
            user: "backup".into(),
            cwd: cwd.to_path_buf(),
            home_of: homes,
        }
    }

    type Case<'a> = (
        &'a str,
        &'a [PathBuf],
        &'a [PathBuf],
        Result<PathBuf, BackendRefusal>,
    );

    #[test]
    fn backends_resolve_and_are_checked_like_check_rest_restrictions() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let home = root.join("home");
        fs::create_dir_all(home.join("repos")).unwrap();
        std::os::unix::fs::symlink(root.join("elsewhere"), home.join("repos/escape")).unwrap();
        let homes = |name: &str| (name == "backup").then(|| root.join("home"));
        let ctx = context(&home, &home, &homes);
        let allowed = [home.join("repos")];
        let exact = [home.join("repos/r1")];
        let none: [PathBuf; 0] = [];
        let table: &[Case<'_>] = &[
            ("FILE:repos/r1", &none, &none, Ok(home.join("repos/r1"))),
            ("FILE:~/repos/r1", &none, &none, Ok(home.join("repos/r1"))),
            (
                "FILE:~backup/repos/r1",
                &allowed,
                &none,
                Ok(home.join("repos/r1")),
            ),
            (
                "FILE:/~/repos/r1",
                &none,
                &none,
                Ok(PathBuf::from("/~/repos/r1")),
            ),
            (
                "FILE:repos/r1/../r2",
                &allowed,
                &none,
                Ok(home.join("repos/r2")),
            ),
            ("FILE:repos/r1", &allowed, &exact, Ok(home.join("repos/r1"))),
            ("FILE:repos/r1/", &none, &exact, Ok(home.join("repos/r1"))),
            (
                "FILE:repos/r2",
                &none,
                &exact,
                Err(BackendRefusal::NotAllowed(
                    home.join("repos/r2").display().to_string(),
                )),
            ),
            (
                "FILE:repos/escape/r",
                &allowed,
                &none,
                Err(BackendRefusal::NotAllowed(
                    root.join("elsewhere/r").display().to_string(),
                )),
            ),
            (
                "FILE:repos2",
                &allowed,
                &none,
                Err(BackendRefusal::NotAllowed(
                    home.join("repos2").display().to_string(),
                )),
            ),
            (
                "FILE:~root/x",
                &allowed,
                &none,
                Err(BackendRefusal::NotAllowed("~root/x".into())),
            ),
            (
                "sftp://host/x",
                &allowed,
                &none,
                Err(BackendRefusal::NotAllowed(
                    "only FILE: backends can be restricted".into(),
                )),
            ),
            (
                "file:///x",
                &none,
                &none,
                Err(BackendRefusal::NotFile("file:///x".into())),
            ),
        ];
        for (backend, paths, repositories, expected) in table {
            assert_eq!(
                resolve_backend(Some(backend), &ctx, paths, repositories),
                *expected,
                "{backend}"
            );
        }
        assert_eq!(
            resolve_backend(None, &ctx, &none, &none),
            Err(BackendRefusal::Missing)
        );
    }

    #[test]
    fn refusals_speak_borgs_words_and_exit_codes() {
        let refusal = BackendRefusal::NotAllowed("/srv/x".into());
        assert_eq!(refusal.to_string(), "Repository path not allowed: /srv/x.");
        assert_eq!(refusal.exit_code(false), 83);
        assert_eq!(refusal.exit_code(true), 2);
        assert_eq!(
            BackendRefusal::Missing.to_string(),
            "borg serve --rest requires --backend FILE:<path>."
        );
        assert_eq!(BackendRefusal::Missing.exit_code(false), 2);
        assert!(
            BackendRefusal::NotFile("s3:x".into())
                .to_string()
                .starts_with("borg-gate: ")
        );
    }
}
