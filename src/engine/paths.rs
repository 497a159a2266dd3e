//! Repository path resolution and the restrict-to-path/restrict-to-repository checks,
//! exactly as borg 1.4's `RepositoryServer._resolve_path` and `open` do them.
//!
//! One deliberate difference: with restrictions in force, `~user` forms naming another
//! account are refused without looking the account up, so a client cannot learn which
//! accounts exist from the error it gets.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

/// Where `~` and `/~/` point, and how other accounts' homes are found.
pub struct PathContext<'a> {
    /// borg's `get_base_dir()`: BORG_BASE_DIR, else HOME, else the account's home.
    pub base_dir: PathBuf,
    /// The name of the account the engine runs as.
    pub user: String,
    /// The working directory relative paths are taken from.
    pub cwd: PathBuf,
    /// Home directory of a named account.
    pub home_of: &'a dyn Fn(&str) -> Option<PathBuf>,
}

/// Why a path was refused; carries the path borg reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathNotAllowed(pub String);

/// Resolves the path a client sent in `open` and checks it against the restrictions.
pub fn resolve_and_check(
    requested: &[u8],
    context: &PathContext<'_>,
    restrict_to_paths: &[PathBuf],
    restrict_to_repositories: &[PathBuf],
) -> Result<PathBuf, PathNotAllowed> {
    let restricted = !restrict_to_paths.is_empty() || !restrict_to_repositories.is_empty();
    let expanded = expand(requested, context, restricted)?;
    let resolved = realpath(&expanded, &context.cwd);
    let with_sep = with_trailing_slash(&resolved);
    if !restrict_to_paths.is_empty() {
        let inside = restrict_to_paths.iter().any(|allowed| {
            with_sep.starts_with(&with_trailing_slash(&realpath(allowed, &context.cwd)))
        });
        if !inside {
            return Err(PathNotAllowed(display(&resolved)));
        }
    }
    if !restrict_to_repositories.is_empty() {
        let exact = restrict_to_repositories
            .iter()
            .any(|allowed| with_sep == with_trailing_slash(&realpath(allowed, &context.cwd)));
        if !exact {
            return Err(PathNotAllowed(display(&resolved)));
        }
    }
    Ok(resolved)
}

/// borg's `~`, `/~/`, `/~user/` and `/./` forms.
fn expand(
    requested: &[u8],
    context: &PathContext<'_>,
    restricted: bool,
) -> Result<PathBuf, PathNotAllowed> {
    let text = requested;
    if let Some(rest) = text.strip_prefix(b"/~/") {
        return Ok(context.base_dir.join(OsStr::from_bytes(rest)));
    }
    if let Some(rest) = text.strip_prefix(b"~/") {
        return Ok(context.base_dir.join(OsStr::from_bytes(rest)));
    }
    let tilde = if text.starts_with(b"/~") {
        Some(&text[1..])
    } else if text.starts_with(b"~") {
        Some(text)
    } else {
        None
    };
    if let Some(tilde) = tilde {
        return expand_user(tilde, context, restricted);
    }
    if let Some(rest) = text.strip_prefix(b"/./") {
        return Ok(PathBuf::from(OsStr::from_bytes(rest)));
    }
    Ok(PathBuf::from(OsStr::from_bytes(text)))
}

/// Python's `os.path.expanduser` on `~user/rest` (and `~` alone).
fn expand_user(
    tilde: &[u8],
    context: &PathContext<'_>,
    restricted: bool,
) -> Result<PathBuf, PathNotAllowed> {
    let body = &tilde[1..];
    let (name, rest) = match body.iter().position(|&b| b == b'/') {
        Some(slash) => (&body[..slash], &body[slash + 1..]),
        None => (body, &b""[..]),
    };
    let home = if name.is_empty() {
        Some(context.base_dir.clone())
    } else {
        let name = String::from_utf8_lossy(name);
        if restricted && name != context.user {
            // Looking the account up would tell the client whether it exists.
            return Err(PathNotAllowed(String::from_utf8_lossy(tilde).into_owned()));
        }
        (context.home_of)(&name)
    };
    match home {
        Some(home) if rest.is_empty() => Ok(home),
        Some(home) => Ok(home.join(OsStr::from_bytes(rest))),
        // expanduser leaves unknown accounts alone; realpath then treats it as relative.
        None => Ok(PathBuf::from(OsStr::from_bytes(tilde))),
    }
}

/// Python's non-strict `os.path.realpath`: absolute, symlinks resolved where they exist,
/// `.` and `..` removed, a missing tail kept as written.
pub fn realpath(path: &Path, cwd: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    };
    let mut resolved = PathBuf::from("/");
    let mut links_followed = 0;
    resolve_into(&mut resolved, &absolute, &mut links_followed);
    resolved
}

const MAX_SYMLINKS: usize = 40;

fn resolve_into(resolved: &mut PathBuf, path: &Path, links_followed: &mut usize) {
    for component in path.components() {
        match component {
            Component::RootDir => *resolved = PathBuf::from("/"),
            Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                resolved.pop();
            }
            Component::Normal(name) => {
                let candidate = resolved.join(name);
                match std::fs::read_link(&candidate) {
                    Ok(target) if *links_followed < MAX_SYMLINKS => {
                        *links_followed += 1;
                        // A relative target is relative to the link's directory.
                        resolve_into(resolved, &target, links_followed);
                    }
                    _ => *resolved = candidate,
                }
            }
        }
    }
}

fn with_trailing_slash(path: &Path) -> Vec<u8> {
    let mut bytes = path.as_os_str().as_bytes().to_vec();
    if !bytes.ends_with(b"/") {
        bytes.push(b'/');
    }
    bytes
}

fn display(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// borg's `get_base_dir()` from the engine's environment and the password database.
pub fn base_dir(
    env: &dyn Fn(&str) -> Option<OsString>,
    account_home: Option<PathBuf>,
    root_home: Option<PathBuf>,
    is_root: bool,
) -> PathBuf {
    if let Some(dir) = env("BORG_BASE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(home) = env("HOME").filter(|h| !h.is_empty()) {
        let home = PathBuf::from(home);
        if !is_root && root_home.as_deref() == Some(home.as_path()) {
            if let Some(own) = account_home.clone() {
                return own;
            }
        } else {
            return home;
        }
    }
    account_home.unwrap_or_else(|| PathBuf::from(OsString::from_vec(b"/".to_vec())))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;

    use super::*;

    fn context<'a>(
        base: &Path,
        cwd: &Path,
        home_of: &'a dyn Fn(&str) -> Option<PathBuf>,
    ) -> PathContext<'a> {
        PathContext {
            base_dir: base.to_path_buf(),
            user: "backup".into(),
            cwd: cwd.to_path_buf(),
            home_of,
        }
    }

    #[test]
    fn forms_resolve_like_borg() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let home = root.join("home");
        let cwd = root.join("cwd");
        fs::create_dir_all(&home).unwrap();
        fs::create_dir_all(&cwd).unwrap();
        let homes = |name: &str| (name == "backup").then(|| root.join("home"));
        let ctx = context(&home, &cwd, &homes);
        let resolve = |p: &str| resolve_and_check(p.as_bytes(), &ctx, &[], &[]).unwrap();
        assert_eq!(resolve("/~/repo"), home.join("repo"));
        assert_eq!(resolve("~/repo"), home.join("repo"));
        assert_eq!(resolve("/~backup/repo"), home.join("repo"));
        assert_eq!(resolve("~backup/repo"), home.join("repo"));
        assert_eq!(resolve("/./repo"), cwd.join("repo"));
        assert_eq!(resolve("repo"), cwd.join("repo"));
        assert_eq!(resolve("~nobody/repo"), cwd.join("~nobody/repo"));
        assert_eq!(
            resolve(&format!("{}/a/../b/./c", root.display())),
            root.join("b/c")
        );
    }

    #[test]
    fn restrict_to_path_is_a_directory_prefix_not_a_string_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let homes = |_: &str| None;
        let ctx = context(&root, &root, &homes);
        let allowed = [root.join("alice")];
        let check = |p: PathBuf| resolve_and_check(p.as_os_str().as_bytes(), &ctx, &allowed, &[]);
        assert!(check(root.join("alice")).is_ok());
        assert!(check(root.join("alice/repo")).is_ok());
        assert!(check(root.join("alice2")).is_err());
        assert!(check(root.join("alice/../bob")).is_err());
        assert_eq!(
            check(root.join("alice2")),
            Err(PathNotAllowed(root.join("alice2").display().to_string()))
        );
    }

    #[test]
    fn restrict_to_repository_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let homes = |_: &str| None;
        let ctx = context(&root, &root, &homes);
        let allowed = [root.join("repo")];
        let check = |p: PathBuf| resolve_and_check(p.as_os_str().as_bytes(), &ctx, &[], &allowed);
        assert!(check(root.join("repo")).is_ok());
        assert!(check(root.join("repo/")).is_ok());
        assert!(check(root.join("repo/sub")).is_err());
        assert!(check(root.clone()).is_err());
    }

    #[test]
    fn symlink_out_of_the_allowed_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir_all(root.join("allowed")).unwrap();
        fs::create_dir_all(root.join("secret")).unwrap();
        symlink(root.join("secret"), root.join("allowed/escape")).unwrap();
        symlink("../secret", root.join("allowed/relative-escape")).unwrap();
        symlink("inside", root.join("allowed/ok-link")).unwrap();
        let homes = |_: &str| None;
        let ctx = context(&root, &root, &homes);
        let allowed = [root.join("allowed")];
        let check = |p: PathBuf| resolve_and_check(p.as_os_str().as_bytes(), &ctx, &allowed, &[]);
        assert_eq!(
            check(root.join("allowed/escape/repo")),
            Err(PathNotAllowed(
                root.join("secret/repo").display().to_string()
            ))
        );
        assert!(check(root.join("allowed/relative-escape")).is_err());
        assert_eq!(
            check(root.join("allowed/ok-link")),
            Ok(root.join("allowed/inside"))
        );
    }

    #[test]
    fn allowed_directory_given_through_a_symlink_is_resolved_too() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir_all(root.join("real")).unwrap();
        symlink(root.join("real"), root.join("alias")).unwrap();
        let homes = |_: &str| None;
        let ctx = context(&root, &root, &homes);
        let check = |p: PathBuf| {
            resolve_and_check(p.as_os_str().as_bytes(), &ctx, &[root.join("alias")], &[])
        };
        assert_eq!(check(root.join("real/repo")), Ok(root.join("real/repo")));
    }

    #[test]
    fn other_accounts_are_not_looked_up_under_restrictions() {
        let looked_up = std::cell::Cell::new(false);
        let homes = |_: &str| {
            looked_up.set(true);
            Some(PathBuf::from("/home/other"))
        };
        let ctx = context(Path::new("/home/backup"), Path::new("/"), &homes);
        let result = resolve_and_check(b"/~root/x", &ctx, &[PathBuf::from("/srv")], &[]);
        assert_eq!(result, Err(PathNotAllowed("~root/x".into())));
        let result = resolve_and_check(b"~nosuchuser/x", &ctx, &[PathBuf::from("/srv")], &[]);
        assert_eq!(result, Err(PathNotAllowed("~nosuchuser/x".into())));
        assert!(!looked_up.get());
    }

    #[test]
    fn symlink_loops_terminate() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        symlink(root.join("b"), root.join("a")).unwrap();
        symlink(root.join("a"), root.join("b")).unwrap();
        let resolved = realpath(&root.join("a/x"), &root);
        assert!(resolved.starts_with(&root));
    }

    #[test]
    fn non_utf8_paths_resolve_without_panicking() {
        let homes = |_: &str| None;
        let ctx = context(Path::new("/home/backup"), Path::new("/"), &homes);
        let result = resolve_and_check(b"/srv/\xff\xfe/repo", &ctx, &[PathBuf::from("/srv")], &[]);
        assert!(result.is_ok());
        assert!(resolve_and_check(b"/srv2/\xff", &ctx, &[PathBuf::from("/srv")], &[]).is_err());
    }

    #[test]
    fn base_dir_follows_borg() {
        let env = |name: &str| match name {
            "HOME" => Some(OsString::from("/root")),
            _ => None,
        };
        let own = Some(PathBuf::from("/home/backup"));
        let root_home = Some(PathBuf::from("/root"));
        assert_eq!(
            base_dir(&env, own.clone(), root_home.clone(), false),
            PathBuf::from("/home/backup")
        );
        assert_eq!(
            base_dir(&env, own.clone(), root_home.clone(), true),
            PathBuf::from("/root")
        );
        let with_base = |name: &str| (name == "BORG_BASE_DIR").then(|| OsString::from("/b"));
        assert_eq!(
            base_dir(&with_base, own, root_home, false),
            PathBuf::from("/b")
        );
    }
}
