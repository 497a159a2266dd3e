//! Shared by the repository-lifecycle tests: an engine reached through a BORG_RSH script (as
//! sshd would run `command="borg-gate serve ..."`), which records the engine's pid so tests
//! can kill it; and measurements of a repository on disk (segments, hashes, bytes, locks).
// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

pub(crate) mod raw;
pub(crate) mod scene;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::{self, BorgClient, CmdOutput};

pub(crate) const PASSPHRASE: &str = "lifecycle test passphrase";

/// A working directory with `source/` (the standard tree), `repos/`, and an engine reachable
/// as `ssh://engine/<path>`.
pub(crate) struct Site {
    pub dir: tempfile::TempDir,
    rsh: String,
}

impl Site {
    /// `forced` are the engine's arguments after `serve`; `{repos}` stands for the repos dir.
    pub(crate) fn new(label: &str, forced: &[&str]) -> Site {
        let dir = support::temp_dir(label);
        Site::in_dir(dir, forced)
    }

    /// Like [`Site::new`], with `repos/` somewhere else (a small file system, say).
    pub(crate) fn with_repos_at(label: &str, repos: &Path, forced: &[&str]) -> Site {
        let dir = support::temp_dir(label);
        std::os::unix::fs::symlink(repos, dir.path().join("repos")).unwrap();
        Site::in_dir(dir, forced)
    }

    fn in_dir(dir: tempfile::TempDir, forced: &[&str]) -> Site {
        let repos = dir.path().join("repos");
        if !repos.exists() {
            fs::create_dir(&repos).unwrap();
        }
        fs::create_dir(dir.path().join("source")).unwrap();
        support::make_tree(&dir.path().join("source"));
        let rsh = write_rsh(dir.path(), "rsh.sh", "engine.pid", forced);
        Site { rsh, dir }
    }

    /// Another key: a BORG_RSH value whose engine runs with `forced` (see [`Site::new`]).
    pub(crate) fn key(&self, name: &str, forced: &[&str]) -> String {
        write_rsh(
            self.dir.path(),
            &format!("rsh-{name}.sh"),
            &format!("engine-{name}.pid"),
            forced,
        )
    }

    /// An engine started by hand with `args` (`{repos}` as in [`Site::new`]), driven with a
    /// raw RPC client; each one logs to its own `raw-N.log`.
    pub(crate) fn raw_engine(&self, args: &[&str]) -> raw::RawSession {
        static ENGINES: AtomicUsize = AtomicUsize::new(0);
        let repos = fs::canonicalize(self.path("repos")).unwrap();
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("{repos}", repos.to_str().unwrap()))
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let log = self.path(&format!(
            "raw-{}.log",
            ENGINES.fetch_add(1, Ordering::Relaxed)
        ));
        raw::RawSession::start(&args, &log)
    }

    /// Runs borg through the engine of `rsh` (from [`Site::key`]), in `cwd`.
    #[track_caller]
    pub(crate) fn borg_via(
        &self,
        rsh: &str,
        client: &BorgClient,
        cwd: &Path,
        args: &[&str],
    ) -> CmdOutput {
        client.run_in(cwd, args, &[("BORG_RSH", rsh)], Some(PASSPHRASE))
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn source(&self) -> PathBuf {
        self.path("source")
    }

    pub(crate) fn repo(&self, name: &str) -> PathBuf {
        fs::canonicalize(self.path("repos")).unwrap().join(name)
    }

    pub(crate) fn url(&self, name: &str) -> String {
        format!("ssh://engine{}", self.repo(name).display())
    }

    pub(crate) fn archive(&self, repo: &str, archive: &str) -> String {
        format!("{}::{archive}", self.url(repo))
    }

    pub(crate) fn env(&self) -> Vec<(&str, &str)> {
        vec![("BORG_RSH", self.rsh.as_str())]
    }

    /// Runs borg through the engine, in `source/`.
    #[track_caller]
    pub(crate) fn borg(&self, client: &BorgClient, args: &[&str]) -> CmdOutput {
        self.borg_in(client, &self.source(), args)
    }

    #[track_caller]
    pub(crate) fn borg_in(&self, client: &BorgClient, cwd: &Path, args: &[&str]) -> CmdOutput {
        client.run_in(cwd, args, &self.env(), Some(PASSPHRASE))
    }

    /// Starts borg through the engine in its own process group, with output discarded.
    pub(crate) fn spawn_borg(&self, client: &BorgClient, args: &[&str]) -> Child {
        let mut command = client.command(&self.source(), args, &self.env(), Some(PASSPHRASE));
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        command.spawn().unwrap()
    }

    /// Like [`Site::spawn_borg`], with stdout and stderr going to `log`.
    pub(crate) fn spawn_borg_logged(
        &self,
        client: &BorgClient,
        args: &[&str],
        log: &Path,
    ) -> Child {
        let file = fs::File::create(log).unwrap();
        let mut command = client.command(&self.source(), args, &self.env(), Some(PASSPHRASE));
        command
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .process_group(0);
        command.spawn().unwrap()
    }

    /// Local borg (no engine) on a repository path.
    #[track_caller]
    pub(crate) fn local(&self, client: &BorgClient, args: &[&str]) -> CmdOutput {
        client.run(args, &[], Some(PASSPHRASE))
    }

    /// The pid of the engine started last, if any was.
    pub(crate) fn engine_pid(&self) -> Option<i32> {
        fs::read_to_string(self.path("engine.pid"))
            .ok()
            .and_then(|text| text.trim().parse().ok())
    }

    /// The pid of the engine started last through key `name` (see [`Site::key`]).
    pub(crate) fn key_engine_pid(&self, name: &str) -> Option<i32> {
        fs::read_to_string(self.path(&format!("engine-{name}.pid")))
            .ok()
            .and_then(|text| text.trim().parse().ok())
    }

    /// Waits until an engine other than `previous` has started; its pid.
    pub(crate) fn wait_for_engine(&self, previous: Option<i32>, timeout: Duration) -> Option<i32> {
        support::wait_for(timeout, || {
            self.engine_pid().filter(|pid| Some(*pid) != previous)
        })
    }

    /// Extracts `archive` of `repo` through the engine into a fresh directory and compares it
    /// with `expected`.
    #[track_caller]
    pub(crate) fn assert_extracts(
        &self,
        client: &BorgClient,
        repo: &str,
        archive: &str,
        expected: &Path,
    ) {
        let target = self.path(&format!("extract-{repo}-{archive}"));
        if target.exists() {
            fs::remove_dir_all(&target).unwrap();
        }
        fs::create_dir(&target).unwrap();
        self.borg_in(client, &target, &["extract", &self.archive(repo, archive)])
            .assert_success();
        support::assert_trees_equal(expected, &target);
        fs::remove_dir_all(&target).unwrap();
    }
}

/// Writes a BORG_RSH script that, like sshd with `command="borg-gate serve ..."`, turns the
/// client's words into SSH_ORIGINAL_COMMAND and runs the engine with `forced` (`{repos}`
/// standing for `<dir>/repos`). `exec` keeps the shell's pid, so `$$`, written to
/// `pid_name`, is the engine's pid.
fn write_rsh(dir: &Path, name: &str, pid_name: &str, forced: &[&str]) -> String {
    let script = dir.join(name);
    let repos_text = fs::canonicalize(dir.join("repos"))
        .unwrap()
        .display()
        .to_string();
    let forced: Vec<String> = forced
        .iter()
        .map(|a| a.replace("{repos}", &repos_text))
        .collect();
    let forced = shlex::try_join(forced.iter().map(String::as_str)).unwrap();
    let pid_file = dir.join(pid_name);
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nshift\nSSH_ORIGINAL_COMMAND=\"$*\"\nexport SSH_ORIGINAL_COMMAND\necho $$ > {pid}.tmp && mv {pid}.tmp {pid}\nexec {engine} serve {forced}\n",
            pid = pid_file.display(),
            engine = support::cargo_bin().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    script.display().to_string()
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
pub(crate) fn process_gone(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Whether process `pid` is gone and reaped. An orphaned zombie still counts as alive for
/// borg's stale-lock test (`kill(pid, 0)` succeeds), and this machine's init reaps slowly.
pub(crate) fn process_reaped(pid: i32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// Makes this process the reaper of its orphaned descendants, so that [`wait_reaped`] can
/// reap a killed engine at once instead of waiting for init.
pub(crate) fn become_subreaper() {
    nix::sys::prctl::set_child_subreaper(true).unwrap();
}

/// Waits until `pid` is gone and reaped (reaping it if it became our child); false on timeout.
pub(crate) fn wait_reaped(pid: i32, timeout: Duration) -> bool {
    use nix::sys::wait::{WaitPidFlag, waitpid};
    support::wait_until(timeout, || {
        let _ = waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
        process_reaped(pid)
    })
}

/// Every segment file of `repo`, by path relative to the repository, with its length and a
/// hash of its bytes.
pub(crate) fn segment_files(repo: &Path) -> BTreeMap<String, (u64, u64)> {
    let mut files = BTreeMap::new();
    let Ok(dirs) = fs::read_dir(repo.join("data")) else {
        return files;
    };
    for dir in dirs {
        let dir = dir.unwrap().path();
        for file in fs::read_dir(&dir).unwrap() {
            let path = file.unwrap().path();
            let bytes = fs::read(&path).unwrap();
            files.insert(
                path.strip_prefix(repo).unwrap().display().to_string(),
                (bytes.len() as u64, xxhash_rust::xxh64::xxh64(&bytes, 0)),
            );
        }
    }
    files
}

/// Every file of `repo` but its locks, by relative path, with length and hash: what a
/// read-only session must leave exactly as it found it.
pub(crate) fn repository_files(repo: &Path) -> BTreeMap<String, (u64, u64)> {
    fn walk(root: &Path, dir: &Path, files: &mut BTreeMap<String, (u64, u64)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(root).unwrap().display().to_string();
            if relative.starts_with("lock.") {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, files);
            } else {
                let bytes = fs::read(&path).unwrap();
                files.insert(
                    relative,
                    (bytes.len() as u64, xxhash_rust::xxh64::xxh64(&bytes, 0)),
                );
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(repo, repo, &mut files);
    files
}

/// Segment numbers present in `repo`, ascending.
pub(crate) fn segment_numbers(repo: &Path) -> Vec<u32> {
    let mut numbers = Vec::new();
    let Ok(dirs) = fs::read_dir(repo.join("data")) else {
        return numbers;
    };
    for dir in dirs.flatten() {
        let Ok(files) = fs::read_dir(dir.path()) else {
            continue;
        };
        for file in files.flatten() {
            if let Some(number) = file.file_name().to_str().and_then(|n| n.parse().ok()) {
                numbers.push(number);
            }
        }
    }
    numbers.sort_unstable();
    numbers
}

/// The bytes the segment files of `repo` occupy on disk (allocated blocks).
pub(crate) fn data_bytes_on_disk(repo: &Path) -> u64 {
    let mut total = 0;
    for dir in fs::read_dir(repo.join("data")).unwrap() {
        let dir = dir.unwrap().path();
        for file in fs::read_dir(&dir).unwrap() {
            total += file.unwrap().metadata().unwrap().blocks() * 512;
        }
    }
    total
}

/// Whether `name` is one of the files a commit writes beside the segments (`index.N`,
/// `hints.N`, `integrity.N`): derived data, which the next open rebuilds from the segments.
pub(crate) fn is_index_file(name: &str) -> bool {
    ["index.", "hints.", "integrity."]
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// Removes `repo`'s index, hints and integrity files: the index is now behind the segments,
/// and the next reader must replay them.
pub(crate) fn remove_index(repo: &Path) {
    for entry in fs::read_dir(repo).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if is_index_file(&name) {
            fs::remove_file(repo.join(name)).unwrap();
        }
    }
}

/// Whether someone holds (or left behind) the repository's exclusive lock.
pub(crate) fn exclusive_lock_present(repo: &Path) -> bool {
    repo.join("lock.exclusive").exists()
}

/// The transaction ids of `repo`'s `transactions` log, in order.
pub(crate) fn logged_transactions(repo: &Path) -> Vec<u32> {
    fs::read_to_string(repo.join("transactions"))
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let number = line
                .strip_prefix("transaction ")
                .and_then(|rest| rest.split_once(", UTC time "))
                .unwrap_or_else(|| panic!("not a borg transactions line: {line:?}"))
                .0;
            number.parse().unwrap()
        })
        .collect()
}

/// `cp -a src dst`.
pub(crate) fn copy_tree(src: &Path, dst: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(dst)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cp -a {} {}",
        src.display(),
        dst.display()
    );
}

/// Writes `len` pseudo-random bytes from `seed` to `path`.
pub(crate) fn write_random(path: &Path, seed: u64, len: usize) {
    support::write_file(path, &support::pseudo_random_bytes(seed, len), 0o644);
}

/// The `storage_quota_use` recorded in `repo`'s current `hints.N`.
pub(crate) fn hinted_quota_use(repo: &Path) -> u64 {
    let hints = fs::read_dir(repo)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("hints.") && n[6..].bytes().all(|b| b.is_ascii_digit()))
        .max_by_key(|n| n[6..].parse::<u64>().unwrap())
        .expect("a hints file");
    let value = rmpv::decode::read_value(&mut fs::File::open(repo.join(hints)).unwrap()).unwrap();
    value
        .as_map()
        .unwrap()
        .iter()
        .find(|(key, _)| {
            key.as_str() == Some("storage_quota_use")
                || key.as_slice() == Some(b"storage_quota_use".as_slice())
        })
        .and_then(|(_, v)| v.as_u64())
        .expect("storage_quota_use in hints")
}

/// Runs borg 1.4.5's Python (the venv of `client`) on `script`; its stdout.
#[track_caller]
pub(crate) fn borg_python(client: &BorgClient, script: &str) -> String {
    let python = client.path.with_file_name("python");
    let mut command = std::process::Command::new(&python);
    command
        .arg("-c")
        .arg(script)
        .env_clear()
        .env("PATH", support::SAFE_PATH)
        .env("LANG", "C.UTF-8");
    let output = support::run_with_timeout(command, Duration::from_secs(60));
    output.assert_success();
    output.stdout_text()
}

/// The object ids in `repo`'s current index, as borg's own `NSIndex` reads them.
pub(crate) fn borg_index_ids(
    client: &BorgClient,
    repo: &Path,
) -> std::collections::BTreeSet<String> {
    let script = format!(
        "import os\nfrom borg.hashindex import NSIndex\nrepo = {repo:?}\n\
         n = max(int(f[6:]) for f in os.listdir(repo) if f.startswith('index.') and f[6:].isdigit())\n\
         for key, value in NSIndex.read(os.path.join(repo, 'index.%d' % n)).iteritems():\n    print(key.hex())\n",
        repo = repo.display().to_string()
    );
    borg_python(client, &script)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Archive names in borg's `check --info` output ("Analyzing archive NAME (i/n)").
pub(crate) fn analyzed_archives(check: &CmdOutput) -> Vec<String> {
    check
        .stderr_text()
        .lines()
        .filter_map(|line| line.strip_prefix("Analyzing archive "))
        .filter_map(|rest| rest.rsplit_once(" (").map(|(name, _)| name.to_owned()))
        .collect()
}

/// The first of `clients` that is borg 1.4 (the PyPI one), else the first.
pub(crate) fn newest(clients: &[BorgClient]) -> Option<&BorgClient> {
    clients
        .iter()
        .find(|c| c.major_minor() >= (1, 4))
        .or(clients.first())
}
