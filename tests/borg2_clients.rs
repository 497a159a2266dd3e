//! Real borg 2.0.0b23 clients through a real sshd on loopback, with `authorized_keys` forced
//! commands `borg-gate serve --rest ...` and, for comparison, Python's `borg serve --rest ...`:
//! the whole life of a repository, permissions that refuse exactly what borg's own server
//! refuses, refused paths and backends, and repositories that move between the two servers.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use support::{AuthorizedKey, BorgClient, CmdOutput, Sshd, borg2_path, require};

const PASSPHRASE: &str = "correct horse battery staple";

/// The forced commands, one key each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Engine,
    EngineReadOnly,
    EngineNoDelete,
    Python,
    PythonReadOnly,
    PythonNoDelete,
    /// `--restrict-to-repository <repos>/only`.
    EngineOneRepository,
    /// No restriction at all.
    EngineUnrestricted,
}

const KEYS: [Key; 8] = [
    Key::Engine,
    Key::EngineReadOnly,
    Key::EngineNoDelete,
    Key::Python,
    Key::PythonReadOnly,
    Key::PythonNoDelete,
    Key::EngineOneRepository,
    Key::EngineUnrestricted,
];

struct World {
    dir: tempfile::TempDir,
    sshd: Sshd,
    client: BorgClient,
}

impl World {
    fn start(label: &str) -> Option<World> {
        support::require_root()?;
        support::require_tool("/usr/sbin/sshd")?;
        let borg2 = borg2_path()?;
        let dir = support::temp_dir(label);
        let repos = dir.path().join("repos");
        fs::create_dir(&repos).unwrap();
        fs::create_dir(dir.path().join("source")).unwrap();
        support::make_tree(&dir.path().join("source"));
        let engine = support::cargo_bin();
        let keys: Vec<AuthorizedKey> = KEYS
            .iter()
            .map(|key| {
                let restrict = format!("--restrict-to-path {}", repos.display());
                let command = match key {
                    Key::Engine => format!("{} serve --rest {restrict}", engine.display()),
                    Key::EngineReadOnly => format!(
                        "{} serve --rest {restrict} --permissions read-only",
                        engine.display()
                    ),
                    Key::EngineNoDelete => format!(
                        "{} serve --rest {restrict} --permissions no-delete",
                        engine.display()
                    ),
                    Key::Python => format!("{} serve --rest {restrict}", borg2.display()),
                    Key::PythonReadOnly => format!(
                        "{} serve --rest {restrict} --permissions read-only",
                        borg2.display()
                    ),
                    Key::PythonNoDelete => format!(
                        "{} serve --rest {restrict} --permissions no-delete",
                        borg2.display()
                    ),
                    Key::EngineOneRepository => format!(
                        "{} serve --rest --restrict-to-repository {}",
                        engine.display(),
                        repos.join("only").display()
                    ),
                    Key::EngineUnrestricted => format!("{} serve --rest", engine.display()),
                };
                AuthorizedKey::forced_command(&command)
            })
            .collect();
        let sshd = Sshd::start(&keys);
        let client = BorgClient::new(&borg2, "pypi");
        Some(World { dir, sshd, client })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn repo(&self, name: &str) -> PathBuf {
        self.path("repos").join(name)
    }

    /// b23's URL for an absolute path: `rest://user@host//abs/path`.
    fn url(&self, repo: &str) -> String {
        format!(
            "rest://{}@127.0.0.1/{}",
            self.sshd.user(),
            self.repo(repo).display()
        )
    }

    fn key_index(key: Key) -> usize {
        KEYS.iter().position(|k| *k == key).unwrap()
    }

    /// `borg -r <url of repo> <args>` through the key, in `cwd`.
    #[track_caller]
    fn borg_in(&self, key: Key, cwd: &Path, repo: &str, args: &[&str]) -> CmdOutput {
        self.borg_as(&self.client, key, cwd, repo, args)
    }

    /// Like [`World::borg_in`] with another client (its own cache and security directory).
    #[track_caller]
    fn borg_as(
        &self,
        client: &BorgClient,
        key: Key,
        cwd: &Path,
        repo: &str,
        args: &[&str],
    ) -> CmdOutput {
        let url = self.url(repo);
        let mut all = vec!["-r", url.as_str()];
        all.extend_from_slice(args);
        let rsh = self.sshd.rsh(Self::key_index(key));
        client.run_in(
            cwd,
            &all,
            &[("BORG_RSH", rsh.as_str()), ("BORG_EXIT_CODES", "modern")],
            Some(PASSPHRASE),
        )
    }

    #[track_caller]
    fn borg(&self, key: Key, repo: &str, args: &[&str]) -> CmdOutput {
        self.borg_in(key, &self.path("source"), repo, args)
    }

    #[track_caller]
    fn ok(&self, key: Key, repo: &str, args: &[&str]) -> CmdOutput {
        let output = self.borg(key, repo, args);
        assert!(
            output.success(),
            "{key:?} {args:?} failed:\n{output}\n--- sshd log ---\n{}",
            self.sshd.log()
        );
        output
    }

    fn archives(&self, key: Key, repo: &str) -> Vec<String> {
        let output = self.ok(key, repo, &["repo-list", "--format", "{archive}{NL}"]);
        output.stdout_text().lines().map(str::to_owned).collect()
    }

    /// Extracts `archive` and compares it with the source tree.
    #[track_caller]
    fn assert_extracts(&self, key: Key, repo: &str, archive: &str) {
        let target = self.path(&format!("extract-{repo}-{archive}-{key:?}"));
        fs::create_dir(&target).unwrap();
        let output = self.borg_in(key, &target, repo, &["extract", archive]);
        assert!(output.success(), "{output}");
        support::assert_trees_equal(&self.path("source"), &target);
        fs::remove_dir_all(&target).unwrap();
    }
}

#[test]
fn a_b23_client_does_everything_through_sshd_and_the_engine() {
    let world = require!(World::start("borg2-life"));
    let key = Key::Engine;
    world.ok(key, "r", &["repo-create", "-e", "aes256-ocb"]);
    world.ok(key, "r", &["create", "first", "."]);
    world.ok(key, "r", &["create", "second", "."]);
    assert_eq!(world.archives(key, "r").len(), 2);
    let listing = world.ok(key, "r", &["list", "first"]).stdout_text();
    assert!(listing.contains("small"), "{listing}");
    world.assert_extracts(key, "r", "first");
    world.ok(key, "r", &["delete", "-a", "second"]);
    assert_eq!(world.archives(key, "r").len(), 1);
    world.ok(key, "r", &["undelete", "-a", "second"]);
    assert_eq!(world.archives(key, "r").len(), 2);
    world.ok(key, "r", &["delete", "-a", "second"]);
    world.ok(key, "r", &["compact"]);
    world.ok(key, "r", &["check"]);
    world.ok(key, "r", &["check", "--verify-data"]);
    world.assert_extracts(key, "r", "first");
    // Everything on disk is in borgstore's layout: private modes, no leftovers.
    let repo = world.repo("r");
    for namespace in ["archives", "config", "index", "keys", "locks", "packs"] {
        assert!(repo.join(namespace).is_dir(), "{namespace}");
    }
    assert_eq!(fs::read_dir(repo.join("locks")).unwrap().count(), 0);
    world.ok(key, "r", &["repo-delete", "--force"]);
    assert!(!repo.exists());
}

/// What each operation did under a permission mode: its exit status. Each run uses a copy
/// of the repository and a client of its own (the copies share the repository ID, which a
/// shared client cache would take for a replay attack).
fn outcomes(world: &World, key: Key, repo: &str) -> Vec<(String, Option<i32>)> {
    let client = BorgClient::new(&world.client.path, &format!("{key:?}"));
    let source = world.path("source");
    let copy = format!("{repo}-{key:?}");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(world.repo(repo))
        .arg(world.repo(&copy))
        .status()
        .unwrap();
    assert!(status.success());
    let operations: &[&[&str]] = &[
        &["repo-list"],
        &["list", "base"],
        &["check"],
        &["create", "added", "."],
        &["delete", "-a", "base"],
        &["compact"],
    ];
    let mut seen = Vec::new();
    for operation in operations {
        let output = world.borg_as(&client, key, &source, &copy, operation);
        seen.push((operation.join(" "), output.code()));
    }
    let new = format!("new-{key:?}");
    let output = world.borg_as(
        &client,
        key,
        &source,
        &new,
        &["repo-create", "-e", "aes256-ocb"],
    );
    seen.push(("repo-create".into(), output.code()));
    let target = world.path(&format!("extract-{key:?}"));
    fs::create_dir(&target).unwrap();
    let output = world.borg_as(&client, key, &target, &copy, &["extract", "base"]);
    seen.push(("extract".into(), output.code()));
    seen
}

#[test]
fn read_only_and_no_delete_refuse_exactly_what_pythons_server_refuses() {
    let world = require!(World::start("borg2-permissions"));
    world.ok(Key::Engine, "base", &["repo-create", "-e", "aes256-ocb"]);
    world.ok(Key::Engine, "base", &["create", "base", "."]);
    let pairs = [
        (Key::EngineReadOnly, Key::PythonReadOnly),
        (Key::EngineNoDelete, Key::PythonNoDelete),
    ];
    // The four runs are independent (own copies, own clients): run them at once.
    let results: Vec<_> = std::thread::scope(|scope| {
        let runs: Vec<_> = pairs
            .iter()
            .flat_map(|(ours, theirs)| [*ours, *theirs])
            .map(|key| {
                scope.spawn({
                    let world = &world;
                    move || outcomes(world, key, "base")
                })
            })
            .collect();
        runs.into_iter().map(|run| run.join().unwrap()).collect()
    });
    for ((ours, theirs), pair) in pairs.iter().zip(results.chunks(2)) {
        let (engine, python) = (&pair[0], &pair[1]);
        assert_eq!(engine, python, "{ours:?} against {theirs:?}");
        // And the modes do refuse something: this is no comparison of two open doors.
        assert!(
            engine.iter().any(|(_, code)| *code != Some(0)),
            "{engine:?}"
        );
        assert!(
            engine.iter().any(|(_, code)| *code == Some(0)),
            "{engine:?}"
        );
    }
}

#[test]
fn a_path_outside_the_restriction_is_refused_with_83() {
    let world = require!(World::start("borg2-refused"));
    let index = World::key_index(Key::EngineOneRepository);
    let elsewhere = world.repo("elsewhere");
    let output = world.sshd.ssh_command(
        index,
        &format!("borg serve --rest --backend FILE:{}", elsewhere.display()),
    );
    assert_eq!(output.code(), Some(83), "{output}");
    assert_eq!(
        output.stderr_text().trim(),
        format!("Repository path not allowed: {}.", elsewhere.display())
    );
    assert!(output.stdout.is_empty());
    // What a borg client sees.
    let output = world.borg(
        Key::EngineOneRepository,
        "elsewhere",
        &["repo-create", "-e", "aes256-ocb"],
    );
    assert!(!output.success());
    let text = format!("{}{}", output.stdout_text(), output.stderr_text());
    assert!(text.contains("Repository path not allowed"), "{text}");
    assert!(!elsewhere.exists());
    // The one allowed repository works.
    world.ok(
        Key::EngineOneRepository,
        "only",
        &["repo-create", "-e", "aes256-ocb"],
    );
}

#[test]
fn backends_other_than_file_are_refused() {
    let world = require!(World::start("borg2-backends"));
    for (key, code, message) in [
        (
            Key::Engine,
            83,
            "Repository path not allowed: only FILE: backends can be restricted.",
        ),
        (
            Key::EngineUnrestricted,
            2,
            "borg-gate: serve --rest serves FILE:<path> backends only, not \"sftp://evil.example/x\"",
        ),
    ] {
        let output = world.sshd.ssh_command(
            World::key_index(key),
            "borg serve --rest --backend sftp://evil.example/x",
        );
        assert_eq!(output.code(), Some(code), "{key:?}: {output}");
        assert_eq!(output.stderr_text().trim(), message);
    }
}

#[test]
fn repositories_move_both_ways_between_python_and_the_engine() {
    let world = require!(World::start("borg2-migrate"));
    // Made by Python, continued by the engine, checked by both.
    world.ok(
        Key::Python,
        "from-python",
        &["repo-create", "-e", "aes256-ocb"],
    );
    world.ok(Key::Python, "from-python", &["create", "by-python", "."]);
    world.ok(Key::Engine, "from-python", &["create", "by-engine", "."]);
    world.ok(Key::Engine, "from-python", &["check", "--verify-data"]);
    world.ok(Key::Python, "from-python", &["check", "--verify-data"]);
    world.assert_extracts(Key::Python, "from-python", "by-engine");
    world.assert_extracts(Key::Engine, "from-python", "by-python");
    // Made by the engine, continued by Python, checked by both.
    world.ok(
        Key::Engine,
        "from-engine",
        &["repo-create", "-e", "aes256-ocb"],
    );
    world.ok(Key::Engine, "from-engine", &["create", "by-engine", "."]);
    world.ok(Key::Python, "from-engine", &["create", "by-python", "."]);
    world.ok(Key::Python, "from-engine", &["delete", "-a", "by-engine"]);
    world.ok(Key::Engine, "from-engine", &["compact"]);
    world.ok(Key::Python, "from-engine", &["check", "--verify-data"]);
    world.ok(Key::Engine, "from-engine", &["check", "--verify-data"]);
    world.assert_extracts(Key::Engine, "from-engine", "by-python");
    assert_eq!(world.archives(Key::Python, "from-engine"), ["by-python"]);
}
