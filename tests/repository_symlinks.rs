//! Symlinks planted inside a repository (issue 15, item 10), against the real `borg-gate
//! serve` binary and a real borg 1.4.5 client: the account that owns the repository replaces
//! `data/` with a symlink to a directory outside the allowed tree, adds a segment that is a
//! symlink to a file outside, or plants `config.old` as a symlink to a file outside (which
//! `secure_erase` would overwrite). Each is refused with a sentence that names the link, and
//! the outside tree is neither read nor written: inotify watches every directory of it and
//! must report no event at all, and its files keep their content.
//!
//! Both with `--restrict-to-repository` (the `data` link is then refused before the repository
//! is opened, by the foreign-writer check) and without restrictions (the repository code,
//! which opens everything relative to the repository directory with `O_NOFOLLOW`).

mod lifecycle;
mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use lifecycle::{PASSPHRASE, Site};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent};

/// Every directory of `root` watched for every kind of event (opens and reads included).
struct TreeWatch {
    inotify: Inotify,
    root: PathBuf,
}

impl TreeWatch {
    fn new(root: &Path) -> TreeWatch {
        // Every directory first: listing one that is already watched would be an event.
        let mut dirs = vec![root.to_path_buf()];
        let mut next = 0;
        while let Some(dir) = dirs.get(next).cloned() {
            next += 1;
            for entry in fs::read_dir(&dir).unwrap() {
                let entry = entry.unwrap();
                if entry.file_type().unwrap().is_dir() {
                    dirs.push(entry.path());
                }
            }
        }
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).unwrap();
        for dir in &dirs {
            inotify
                .add_watch(dir, AddWatchFlags::IN_ALL_EVENTS)
                .unwrap();
        }
        TreeWatch {
            inotify,
            root: root.to_path_buf(),
        }
    }

    /// What happened inside the tree since the watch began.
    ///
    /// A close without an open is left out: it is the test's own read from before the watch
    /// (`fingerprint`), closed late because a child that another test forked at that moment
    /// held the descriptor until its exec. Whoever reads a file under the watch opens it
    /// first, and that open is reported.
    fn events(&self) -> Vec<String> {
        let events = match self.inotify.read_events() {
            Ok(events) => events,
            Err(nix::errno::Errno::EAGAIN) => Vec::new(),
            Err(error) => panic!("inotify on {}: {error}", self.root.display()),
        };
        let opened = |close: &InotifyEvent| {
            events.iter().any(|e| {
                e.wd == close.wd && e.name == close.name && e.mask.contains(AddWatchFlags::IN_OPEN)
            })
        };
        events
            .iter()
            .filter(|e| {
                e.mask.contains(AddWatchFlags::IN_OPEN)
                    || !e.mask.contains(AddWatchFlags::IN_CLOSE_NOWRITE)
                    || opened(e)
            })
            .map(|e| format!("{:?} {:?}", e.mask, e.name))
            .collect()
    }
}

/// Length and content hash of every file under `root`.
fn fingerprint(root: &Path) -> BTreeMap<PathBuf, (u64, u64)> {
    let mut files = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let bytes = fs::read(&path).unwrap();
                files.insert(
                    path,
                    (bytes.len() as u64, xxhash_rust::xxh64::xxh64(&bytes, 0)),
                );
            }
        }
    }
    files
}

/// Runs `attempt` with `outside` watched; asserts that it was refused naming `link`, and that
/// nothing under `outside` was opened, read or changed.
#[track_caller]
fn assert_refused_without_touching(
    outside: &Path,
    link: &Path,
    attempt: impl FnOnce() -> support::CmdOutput,
) {
    let before = fingerprint(outside);
    let watch = TreeWatch::new(outside);
    let output = attempt();
    let events = watch.events();
    output.assert_failure();
    let stderr = output.stderr_text();
    assert!(
        stderr.contains(&format!("{} is a symbolic link", link.display())),
        "the refusal does not name {}:\n{output}",
        link.display()
    );
    assert!(!stderr.contains("Traceback"), "{output}");
    eprintln!("refused as expected:\n{stderr}");
    assert_eq!(
        events,
        Vec::<String>::new(),
        "the engine touched {}",
        outside.display()
    );
    drop(watch);
    assert_eq!(
        fingerprint(outside),
        before,
        "{} changed",
        outside.display()
    );
}

fn run_case(restricted: bool) {
    let client = support::require!(support::borg14());
    let forced: &[&str] = if restricted {
        &["--restrict-to-repository", "{repos}/repo"]
    } else {
        &[]
    };
    let label = if restricted {
        "symlinks-restricted"
    } else {
        "symlinks-unrestricted"
    };
    let site = Site::new(label, forced);
    let url = site.url("repo");
    let repo = site.repo("repo");
    site.borg(&client, &["init", "--encryption", "repokey", &url])
        .assert_success();
    site.borg(&client, &["create", &site.archive("repo", "first"), "."])
        .assert_success();
    let outside = site.path("outside");
    fs::create_dir(&outside).unwrap();

    // 1. data -> outside/data: the repository's own segments, moved out of the allowed tree.
    let data = repo.join("data");
    fs::rename(&data, outside.join("data")).unwrap();
    symlink(outside.join("data"), &data).unwrap();
    assert_refused_without_touching(&outside, &data, || site.borg(&client, &["list", &url]));
    fs::remove_file(&data).unwrap();
    fs::rename(outside.join("data"), &data).unwrap();
    site.borg(&client, &["list", "--short", &url])
        .assert_success()
        .assert_stdout_contains("first");

    // 2. A segment that is a symlink to a (valid) segment file outside.
    let latest = *lifecycle::segment_numbers(&repo).last().unwrap();
    let planted = latest + 1;
    fs::copy(
        data.join((latest / 1000).to_string())
            .join(latest.to_string()),
        outside.join("segment"),
    )
    .unwrap();
    let link = data
        .join((planted / 1000).to_string())
        .join(planted.to_string());
    fs::create_dir_all(link.parent().unwrap()).unwrap();
    symlink(outside.join("segment"), &link).unwrap();
    assert_refused_without_touching(&outside, &link, || site.borg(&client, &["list", &url]));
    fs::remove_file(&link).unwrap();

    // 3. config.old -> a file outside, which secure_erase would overwrite with random bytes.
    fs::write(outside.join("precious"), b"must survive").unwrap();
    let config_old = repo.join("config.old");
    symlink(outside.join("precious"), &config_old).unwrap();
    let mut env = site.env();
    env.push(("BORG_NEW_PASSPHRASE", "a new passphrase"));
    assert_refused_without_touching(&outside, &config_old, || {
        client.run_in(
            &site.source(),
            &["key", "change-passphrase", &url],
            &env,
            Some(PASSPHRASE),
        )
    });
    assert_eq!(fs::read(outside.join("precious")).unwrap(), b"must survive");
    fs::remove_file(&config_old).unwrap();

    // Nothing was damaged: the repository checks clean and still has its archive.
    site.borg(&client, &["check", &url]).assert_success();
    site.borg(&client, &["list", "--short", &url])
        .assert_success()
        .assert_stdout_contains("first");
}

#[test]
fn symlinks_planted_in_a_restricted_repository_are_refused_and_never_followed() {
    run_case(true);
}

#[test]
fn symlinks_planted_in_an_unrestricted_repository_are_refused_and_never_followed() {
    run_case(false);
}
