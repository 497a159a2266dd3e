//! Repository path resolution and the restrict-to-path/restrict-to-repository checks,
//! exactly as borg 1.4's `RepositoryServer._resolve_path` and `open` do them.
//!
//! Two deliberate differences: with restrictions in force, `~user` forms naming another
//! account are refused without looking the account up, so a client cannot learn which
//! accounts exist from the error it gets; and [`check_no_foreign_writers`] refuses a
//! repository that another account could redirect with a symlink swap between the check and
//! the repository's use of its path.
//!
//! Inside the repository, the engine never follows a symlink: it holds the repository
//! directory as a handle and opens `data/`, `data/N/` and every file relative to it with
//! `O_NOFOLLOW` (`repository/dir.rs`). The check here covers the way *to* the repository,
//! which is still opened by path once, and refuses early, with a clear reason, a repository
//! whose `data/` or `data/N/` directories are symlinks or writable by other accounts. What
//! remains: the lock files are still reached by path, and root and the engine's own account
//! can swap a directory on the way to the repository between this check and its opening;
//! both can read the repository files directly anyway.

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

impl PathContext<'static> {
    /// How `~`, `/~/` and relative repository paths resolve for this process: its
    /// environment, its effective account and working directory, the password database.
    pub fn of_this_process() -> PathContext<'static> {
        let uid = nix::unistd::geteuid();
        let account = nix::unistd::User::from_uid(uid).ok().flatten();
        let root_home = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(0))
            .ok()
            .flatten()
            .map(|u| u.dir);
        let env = |name: &str| std::env::var_os(name);
        let base_dir = base_dir(
            &env,
            account.as_ref().map(|a| a.dir.clone()),
            root_home,
            uid.is_root(),
        );
        PathContext {
            base_dir,
            user: account.map(|a| a.name).unwrap_or_default(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            home_of: &home_of,
        }
    }
}

fn home_of(name: &str) -> Option<PathBuf> {
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .map(|user| user.dir)
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
    check_restrictions(
        &resolved,
        &context.cwd,
        restrict_to_paths,
        restrict_to_repositories,
    )?;
    Ok(resolved)
}

/// The restriction check on an already resolved path (borg 1's `open`, borg 2's
/// `check_rest_restrictions`): inside one of `restrict_to_paths` (a directory prefix) and
/// exactly one of `restrict_to_repositories`, each list only when it is not empty. The
/// allowed paths are resolved too, relative to `cwd`.
pub(crate) fn check_restrictions(
    resolved: &Path,
    cwd: &Path,
    restrict_to_paths: &[PathBuf],
    restrict_to_repositories: &[PathBuf],
) -> Result<(), PathNotAllowed> {
    let with_sep = with_trailing_slash(resolved);
    if !restrict_to_paths.is_empty() {
        let inside = restrict_to_paths
            .iter()
            .any(|allowed| with_sep.starts_with(&with_trailing_slash(&realpath(allowed, cwd))));
        if !inside {
            return Err(PathNotAllowed(display(resolved)));
        }
    }
    if !restrict_to_repositories.is_empty() {
        let exact = restrict_to_repositories
            .iter()
            .any(|allowed| with_sep == with_trailing_slash(&realpath(allowed, cwd)));
        if !exact {
            return Err(PathNotAllowed(display(resolved)));
        }
    }
    Ok(())
}

/// The first control, bidirectional or line-separator character in a requested path, if any.
/// Such a path is refused: it would become a directory name that `ls`, logs and status
/// reports show raw (see `gate::command::is_invisible_format`).
pub fn unprintable_character(requested: &[u8]) -> Option<char> {
    String::from_utf8_lossy(requested)
        .chars()
        .find(|c| c.is_control() || crate::gate::command::is_invisible_format(*c))
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
pub(crate) fn expand_user(
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

/// Why a resolved repository path cannot be trusted to stay where the check put it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnsafePath {
    /// A component is now a symlink: it changed after resolution.
    Changed(PathBuf),
    /// This directory on the way is owned, or writable, by another account.
    ForeignWritable { dir: PathBuf, owner: u32, mode: u32 },
    /// `data/` or one of its numbered directories is a symlink.
    Symlink(PathBuf),
}

impl std::fmt::Display for UnsafePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnsafePath::Changed(path) => {
                write!(f, "{} changed while it was being checked", path.display())
            }
            UnsafePath::ForeignWritable { dir, owner, mode } => write!(
                f,
                "{} (owner uid {owner}, mode {:04o}) could be changed by another account, \
                 which could redirect the repository outside the allowed paths; \
                 make it owned by root or this account and not writable by group or others",
                dir.display(),
                mode & 0o7777
            ),
            UnsafePath::Symlink(path) => write!(
                f,
                "{} is a symbolic link, which could point the repository's segments outside \
                 the allowed paths; a repository's data directories must be real directories",
                path.display()
            ),
        }
    }
}

/// Checks that no account other than root and `euid` can rename, replace or swap in a
/// symlink for any directory on the way to `resolved` (a [`realpath`] result), the repository
/// directory included, nor for the repository's `data/` and `data/N/` directories, and that
/// none of those is a symlink. The engine opens the repository by path after the restriction
/// check; this makes that safe against other accounts, which is the only attacker a symlink
/// race serves (the client's own account can read its files without borg), and refuses a
/// planted `data` symlink with its reason before anything is opened.
///
/// A directory passes when it is owned by root or `euid` and not writable by group or others,
/// or when it is sticky (like `/tmp`) and the entry below it is owned by root or `euid` (a
/// sticky directory lets nobody else rename or delete that entry). Components that do not
/// exist yet (`open` with `create`) are created under the last existing one, which passed.
pub fn check_no_foreign_writers(resolved: &Path, euid: u32) -> Result<(), UnsafePath> {
    use std::os::unix::fs::MetadataExt;
    let trusted = |uid: u32| uid == 0 || uid == euid;
    let mut current = PathBuf::from("/");
    let mut parent: Option<(PathBuf, std::fs::Metadata)> = None;
    let components = std::iter::once(None).chain(resolved.components().map(Some));
    for component in components {
        match component {
            None | Some(Component::RootDir) => {}
            Some(Component::Normal(name)) => current.push(name),
            // A realpath result has no `.`, `..` or prefixes; one here means it changed.
            Some(_) => return Err(UnsafePath::Changed(resolved.to_path_buf())),
        }
        if component == Some(Component::RootDir) {
            continue;
        }
        let metadata = match std::fs::symlink_metadata(&current) {
            Ok(metadata) => metadata,
            // Missing: what follows gets created inside the last directory, which passed.
            Err(_) => break,
        };
        if metadata.file_type().is_symlink() {
            return Err(UnsafePath::Changed(current));
        }
        if let Some((dir, dir_metadata)) = &parent {
            let mode = dir_metadata.mode();
            let sticky_and_ours = mode & 0o1000 != 0 && trusted(metadata.uid());
            if mode & 0o022 != 0 && !sticky_and_ours {
                return Err(UnsafePath::ForeignWritable {
                    dir: dir.clone(),
                    owner: dir_metadata.uid(),
                    mode,
                });
            }
        }
        if !trusted(metadata.uid()) {
            return Err(UnsafePath::ForeignWritable {
                dir: current,
                owner: metadata.uid(),
                mode: metadata.mode(),
            });
        }
        if !metadata.is_dir() {
            break;
        }
        parent = Some((current.clone(), metadata));
    }
    // The last existing directory (the repository, or where it will be created): others
    // must not be able to add entries to it (a planted `config`, `data` or the repository
    // name itself), sticky or not.
    if let Some((dir, metadata)) = parent {
        let mode = metadata.mode();
        if mode & 0o022 != 0 {
            return Err(UnsafePath::ForeignWritable {
                dir,
                owner: metadata.uid(),
                mode,
            });
        }
        if dir == resolved {
            check_data_directories(&dir, euid)?;
        }
    }
    Ok(())
}

/// The [`check_no_foreign_writers`] rule for `data/` and each `data/N/` of an existing
/// repository: real directories, owned by root or `euid`, not writable by group or others.
/// Other entries are left to the repository code, which opens nothing through a symlink.
fn check_data_directories(repository: &Path, euid: u32) -> Result<(), UnsafePath> {
    use std::os::unix::fs::MetadataExt;
    let check = |path: PathBuf| -> Result<bool, UnsafePath> {
        let Ok(metadata) = std::fs::symlink_metadata(&path) else {
            return Ok(false);
        };
        if metadata.file_type().is_symlink() {
            return Err(UnsafePath::Symlink(path));
        }
        if !metadata.is_dir() {
            return Ok(false);
        }
        let trusted = metadata.uid() == 0 || metadata.uid() == euid;
        if !trusted || metadata.mode() & 0o022 != 0 {
            return Err(UnsafePath::ForeignWritable {
                dir: path,
                owner: metadata.uid(),
                mode: metadata.mode(),
            });
        }
        Ok(true)
    };
    let data = repository.join("data");
    if !check(data.clone())? {
        return Ok(());
    }
    let Ok(entries) = std::fs::read_dir(&data) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let numbered = name
            .to_str()
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if numbered {
            check(entry.path())?;
        }
    }
    Ok(())
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
    fn control_and_bidirectional_characters_in_a_path_are_found() {
        assert_eq!(unprintable_character(b"/srv/backup/alice/repo"), None);
        assert_eq!(unprintable_character("/srv/répo ü".as_bytes()), None);
        assert_eq!(unprintable_character(b"/srv/\xff\xfe/repo"), None);
        assert_eq!(unprintable_character(b"/srv/a\nb"), Some('\n'));
        assert_eq!(unprintable_character(b"/srv/a\tb"), Some('\t'));
        assert_eq!(
            unprintable_character("/srv/a\u{202e}b".as_bytes()),
            Some('\u{202e}')
        );
        assert_eq!(
            unprintable_character("/srv/\u{2028}".as_bytes()),
            Some('\u{2028}')
        );
    }

    #[test]
    fn non_utf8_paths_resolve_without_panicking() {
        let homes = |_: &str| None;
        let ctx = context(Path::new("/home/backup"), Path::new("/"), &homes);
        let result = resolve_and_check(b"/srv/\xff\xfe/repo", &ctx, &[PathBuf::from("/srv")], &[]);
        assert!(result.is_ok());
        assert!(resolve_and_check(b"/srv2/\xff", &ctx, &[PathBuf::from("/srv")], &[]).is_err());
    }

    fn euid() -> u32 {
        nix::unistd::geteuid().as_raw()
    }

    fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_private_chain_of_directories_is_safe() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir_all(root.join("allowed/repo")).unwrap();
        set_mode(&root.join("allowed"), 0o755);
        assert_eq!(
            check_no_foreign_writers(&root.join("allowed/repo"), euid()),
            Ok(())
        );
        // Not created yet: checked up to the last existing directory.
        assert_eq!(
            check_no_foreign_writers(&root.join("allowed/new/deeper"), euid()),
            Ok(())
        );
    }

    #[test]
    fn a_group_writable_directory_on_the_way_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir_all(root.join("allowed/repo")).unwrap();
        set_mode(&root.join("allowed"), 0o775);
        assert!(matches!(
            check_no_foreign_writers(&root.join("allowed/repo"), euid()),
            Err(UnsafePath::ForeignWritable { dir, mode, .. }) if dir == root.join("allowed") && mode & 0o777 == 0o775
        ));
        set_mode(&root.join("allowed"), 0o755);
        set_mode(&root.join("allowed/repo"), 0o757);
        assert!(matches!(
            check_no_foreign_writers(&root.join("allowed/repo"), euid()),
            Err(UnsafePath::ForeignWritable { dir, .. }) if dir == root.join("allowed/repo")
        ));
    }

    #[test]
    fn a_sticky_directory_protects_only_entries_we_own_that_exist() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir_all(root.join("shared/ours")).unwrap();
        set_mode(&root.join("shared"), 0o1777);
        assert_eq!(
            check_no_foreign_writers(&root.join("shared/ours"), euid()),
            Ok(())
        );
        // Someone else could create the missing name first.
        assert!(check_no_foreign_writers(&root.join("shared/missing"), euid()).is_err());
    }

    #[test]
    fn a_symlink_in_a_resolved_path_means_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir_all(root.join("elsewhere")).unwrap();
        symlink(root.join("elsewhere"), root.join("link")).unwrap();
        assert_eq!(
            check_no_foreign_writers(&root.join("link/repo"), euid()),
            Err(UnsafePath::Changed(root.join("link")))
        );
    }

    #[test]
    fn a_symlinked_data_directory_or_segment_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir_all(root.join("allowed/repo")).unwrap();
        fs::create_dir_all(root.join("outside/0")).unwrap();
        set_mode(&root.join("allowed"), 0o755);
        set_mode(&root.join("allowed/repo"), 0o700);
        symlink(root.join("outside"), root.join("allowed/repo/data")).unwrap();
        assert_eq!(
            check_no_foreign_writers(&root.join("allowed/repo"), euid()),
            Err(UnsafePath::Symlink(root.join("allowed/repo/data")))
        );
        fs::remove_file(root.join("allowed/repo/data")).unwrap();
        fs::create_dir_all(root.join("allowed/repo/data/0")).unwrap();
        set_mode(&root.join("allowed/repo/data"), 0o700);
        set_mode(&root.join("allowed/repo/data/0"), 0o700);
        assert_eq!(
            check_no_foreign_writers(&root.join("allowed/repo"), euid()),
            Ok(())
        );
        symlink(root.join("outside/0"), root.join("allowed/repo/data/1")).unwrap();
        let refused = check_no_foreign_writers(&root.join("allowed/repo"), euid());
        assert_eq!(
            refused,
            Err(UnsafePath::Symlink(root.join("allowed/repo/data/1")))
        );
        assert!(
            refused
                .unwrap_err()
                .to_string()
                .contains("is a symbolic link")
        );
    }

    #[test]
    fn a_group_writable_segment_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir_all(root.join("allowed/repo/data/3")).unwrap();
        set_mode(&root.join("allowed"), 0o755);
        set_mode(&root.join("allowed/repo"), 0o700);
        set_mode(&root.join("allowed/repo/data"), 0o700);
        set_mode(&root.join("allowed/repo/data/3"), 0o770);
        assert!(matches!(
            check_no_foreign_writers(&root.join("allowed/repo"), euid()),
            Err(UnsafePath::ForeignWritable { dir, .. }) if dir == root.join("allowed/repo/data/3")
        ));
    }

    #[test]
    fn a_directory_owned_by_another_account_is_refused() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("note: skipping, chown needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir_all(root.join("theirs/repo")).unwrap();
        let nobody = nix::unistd::Uid::from_raw(65534);
        nix::unistd::chown(&root.join("theirs"), Some(nobody), None).unwrap();
        assert!(matches!(
            check_no_foreign_writers(&root.join("theirs/repo"), 0),
            Err(UnsafePath::ForeignWritable { owner: 65534, .. })
        ));
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
