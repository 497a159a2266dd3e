use std::fs;
use std::os::unix::fs::symlink;

use super::*;

const REPOSITORY_CONFIG: &str = "[repository]\nversion = 1\n";

fn make(root: &Path, relative: &str, config: Option<&str>) -> PathBuf {
    let dir = root.join(relative);
    fs::create_dir_all(&dir).unwrap();
    if let Some(config) = config {
        fs::write(dir.join("config"), config).unwrap();
    }
    dir
}

/// Every repository found below `root` (relative paths, `!` marking an unparsable config),
/// and every directory that could not be searched.
fn discover_all(root: &Path) -> (Vec<String>, Vec<Unsearched>) {
    discover_with(root, THREADS)
}

fn discover_with(root: &Path, threads: usize) -> (Vec<String>, Vec<Unsearched>) {
    let visit = |path: &Path, _: &mut Dir, config: Result<&ConfigFile, &str>| {
        let relative = path.strip_prefix(root).unwrap().display().to_string();
        match config {
            Ok(config) => {
                assert!(config.has_section(REPOSITORY_SECTION));
                relative
            }
            Err(_) => format!("{relative}!"),
        }
    };
    let discovery = discover(&[root.to_path_buf()], threads, &visit);
    let found = discovery
        .repositories
        .into_iter()
        .map(|(path, relative)| {
            assert_eq!(
                path.strip_prefix(root).unwrap().display().to_string(),
                relative.trim_end_matches('!')
            );
            relative
        })
        .collect();
    (found, discovery.unsearched)
}

#[test]
fn repositories_are_found_in_name_order_and_never_entered() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let outer = make(root, "b/outer", Some(REPOSITORY_CONFIG));
    make(&outer, "data/0", None);
    make(&outer, "inner", Some(REPOSITORY_CONFIG));
    make(root, "a/x/y/deep", Some(REPOSITORY_CONFIG));
    make(root, "app", Some("[server]\nport = 1\n"));
    make(root, "app/under-app", Some(REPOSITORY_CONFIG));
    make(root, "a/z", Some(REPOSITORY_CONFIG));
    make(root, "c", None);
    let (found, unsearched) = discover_all(root);
    assert_eq!(found, ["a/x/y/deep", "a/z", "app/under-app", "b/outer"]);
    assert_eq!(unsearched, []);
}

#[test]
fn a_root_that_is_a_repository_is_reported_alone() {
    let dir = tempfile::tempdir().unwrap();
    make(dir.path(), "", Some(REPOSITORY_CONFIG));
    make(dir.path(), "nested", Some(REPOSITORY_CONFIG));
    assert_eq!(discover_all(dir.path()).0, [""]);
}

#[test]
fn symlinks_are_never_followed() {
    let outside = tempfile::tempdir().unwrap();
    let elsewhere = make(outside.path(), "elsewhere", Some(REPOSITORY_CONFIG));
    let dir = tempfile::tempdir().unwrap();
    symlink(&elsewhere, dir.path().join("link-to-repository")).unwrap();
    symlink(outside.path(), dir.path().join("link-to-tree")).unwrap();
    let plain = make(dir.path(), "plain", None);
    fs::write(outside.path().join("config-target"), REPOSITORY_CONFIG).unwrap();
    symlink(outside.path().join("config-target"), plain.join("config")).unwrap();
    assert_eq!(discover_all(dir.path()), (vec![], vec![]));
    // The root itself may not be a symlink either: roots are resolved before the walk.
    let linked_root = dir.path().join("link-to-tree");
    let (found, unsearched) = discover_all(&linked_root);
    assert_eq!(found, Vec::<String>::new());
    assert_eq!(unsearched.len(), 1);
}

#[test]
fn a_damaged_config_beside_data_is_still_a_repository() {
    let dir = tempfile::tempdir().unwrap();
    let damaged = make(dir.path(), "damaged", Some("\u{0}\u{1}garbage"));
    make(&damaged, "data", None);
    make(dir.path(), "not-borg", Some("garbage without a section"));
    make(dir.path(), "not-borg/below", Some(REPOSITORY_CONFIG));
    assert_eq!(discover_all(dir.path()).0, ["damaged!", "not-borg/below"]);
}

#[test]
fn a_fifo_or_directory_named_config_does_not_block_or_count() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = make(dir.path(), "fifo", None);
    nix::unistd::mkfifo(&fifo.join("config"), Mode::from_bits_truncate(0o600)).unwrap();
    make(&fifo, "below", Some(REPOSITORY_CONFIG));
    make(dir.path(), "dir/config", None);
    assert_eq!(discover_all(dir.path()).0, ["fifo/below"]);
}

#[test]
fn the_walk_stops_at_its_depth_limit_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let limit: Vec<String> = (0..MAX_DEPTH).map(|level| format!("d{level}")).collect();
    let at_limit = limit.join("/");
    make(
        dir.path(),
        &format!("{at_limit}/repo"),
        Some(REPOSITORY_CONFIG),
    );
    make(dir.path(), "d0/shallow", Some(REPOSITORY_CONFIG));
    let (found, unsearched) = discover_all(dir.path());
    assert_eq!(found, ["d0/shallow"]);
    assert_eq!(unsearched.len(), 1);
    assert_eq!(unsearched[0].path, dir.path().join(at_limit));
    assert!(unsearched[0].reason.contains("not searched"));
}

#[test]
fn a_missing_root_finds_nothing_quietly() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(discover_all(&dir.path().join("absent")), (vec![], vec![]));
}

#[test]
fn many_roots_and_any_number_of_walkers_give_the_same_sorted_answer() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    for customer in 0..7 {
        for host in 0..5 {
            let place = format!("c{customer}/h{host}");
            make(dir.path(), &place, Some(REPOSITORY_CONFIG));
            expected.push(place);
        }
        make(dir.path(), &format!("c{customer}/empty/deeper"), None);
    }
    expected.sort();
    for threads in [0, 1, 2, THREADS, 64] {
        assert_eq!(
            discover_with(dir.path(), threads),
            (expected.clone(), vec![]),
            "{threads}"
        );
    }
    let roots = [
        dir.path().join("c3"),
        dir.path().join("c1"),
        dir.path().join("absent"),
    ];
    let discovery = discover(
        &roots,
        3,
        &|_: &Path, _: &mut Dir, _: Result<&ConfigFile, &str>| (),
    );
    let found: Vec<PathBuf> = discovery
        .repositories
        .into_iter()
        .map(|(path, ())| path)
        .collect();
    let base = dir.path();
    let expected: Vec<PathBuf> = ["c1", "c3"]
        .iter()
        .flat_map(|c| (0..5).map(move |h| base.join(format!("{c}/h{h}"))))
        .collect();
    assert_eq!(found, expected);
    assert_eq!(discovery.unsearched, []);
}

#[test]
fn a_panicking_reader_does_not_leave_the_other_walkers_waiting() {
    let dir = tempfile::tempdir().unwrap();
    for n in 0..20 {
        make(dir.path(), &format!("r{n}"), Some(REPOSITORY_CONFIG));
    }
    let outcome = std::panic::catch_unwind(|| {
        discover(&[dir.path().to_path_buf()], 4, &|path: &Path,
                                                   _: &mut Dir,
                                                   _: Result<
            &ConfigFile,
            &str,
        >| {
            assert!(!path.ends_with("r7"), "a bug in the reader");
        })
    });
    assert!(outcome.is_err());
}
