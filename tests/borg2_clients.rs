//! Real borg 2.0.0b23 clients through a real sshd on loopback, with `authorized_keys` forced
//! commands `borg-gate serve --rest ...`, the gate (`borg-gate --policy FILE`) in front of the
//! built-in engine or of Python's `borg serve --rest`, and, for comparison, Python's
//! `borg serve --rest ...` alone: the whole life of a repository, permissions that refuse
//! exactly what borg's own server refuses, refused paths, backends and protocols, borg 1 and
//! borg 2 clients under one policy, and repositories that move between the two servers.

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
    /// The gate, `client.protocols = ["borg1", "borg2"]`, built-in engines.
    Gate,
    /// The gate in front of Python's `borg serve --rest` (`engine.borg2_program`).
    GatePython,
    /// The gate, `permissions = "read-only"`.
    GateReadOnly,
    /// The gate, `append_only = true`, which is no-delete for borg 2.
    GateAppendOnly,
    /// The gate in front of Python's server, `permissions = "no-delete"`.
    GatePythonNoDelete,
    /// The gate with a policy that does not name `protocols` (borg 1 only).
    GateBorg1Only,
}

const KEYS: [Key; 14] = [
    Key::Engine,
    Key::EngineReadOnly,
    Key::EngineNoDelete,
    Key::Python,
    Key::PythonReadOnly,
    Key::PythonNoDelete,
    Key::EngineOneRepository,
    Key::EngineUnrestricted,
    Key::Gate,
    Key::GatePython,
    Key::GateReadOnly,
    Key::GateAppendOnly,
    Key::GatePythonNoDelete,
    Key::GateBorg1Only,
];

/// The policy of a gate key (`None` for the keys without the gate): restricted to `repos`,
/// audited to `audit.jsonl`, Python's server (when it is the engine) kept to `python-base`.
fn gate_policy(key: Key, dir: &Path, borg2: &Path) -> Option<String> {
    let (python, protocols, repository) = match key {
        Key::Gate => (false, "protocols = [\"borg1\", \"borg2\"]", ""),
        Key::GatePython => (true, "protocols = [\"borg2\"]", ""),
        Key::GateReadOnly => (
            false,
            "protocols = [\"borg2\"]",
            "permissions = \"read-only\"",
        ),
        Key::GateAppendOnly => (false, "protocols = [\"borg2\"]", "append_only = true"),
        Key::GatePythonNoDelete => (
            true,
            "protocols = [\"borg2\"]",
            "permissions = \"no-delete\"",
        ),
        Key::GateBorg1Only => (false, "", ""),
        _ => return None,
    };
    let engine = if python {
        format!(
            "borg2_program = \"{}\"\nenv = {{ BORG_BASE_DIR = \"{}\" }}",
            borg2.display(),
            dir.join("python-base").display()
        )
    } else {
        String::new()
    };
    Some(format!(
        "version = 1\nname = \"{key:?}\"\n[engine]\n{engine}\n[client]\n{protocols}\n\
         [repository]\nrestrict_to_paths = [\"{}\"]\n{repository}\n[audit]\nfile = \"{}\"\n",
        dir.join("repos").display(),
        dir.join("audit.jsonl").display()
    ))
}

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
                if let Some(policy) = gate_policy(*key, dir.path(), &borg2) {
                    let file = dir.path().join(format!("{key:?}.toml"));
                    fs::write(&file, policy).unwrap();
                    return AuthorizedKey::borg_gate(&file);
                }
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
                    _ => unreachable!("{key:?} is a gate key"),
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

/// A repository's whole life through `key`, with its own client: repo-create, create,
/// repo-list, list, extract (identical tree), delete, undelete, compact, check (with
/// `--verify-data` too), repo-delete.
fn whole_life(world: &World, key: Key, repo: &str) {
    let client = BorgClient::new(&world.client.path, &format!("life-{key:?}"));
    let source = world.path("source");
    let ok = |args: &[&str]| {
        let output = world.borg_as(&client, key, &source, repo, args);
        assert!(
            output.success(),
            "{key:?} {args:?} failed:\n{output}\n--- sshd log ---\n{}",
            world.sshd.log()
        );
        output
    };
    let archives = || -> Vec<String> {
        let output = ok(&["repo-list", "--format", "{archive}{NL}"]);
        output.stdout_text().lines().map(str::to_owned).collect()
    };
    let extracts = |archive: &str| {
        let target = world.path(&format!("extract-{repo}-{archive}-{key:?}"));
        fs::create_dir(&target).unwrap();
        let output = world.borg_as(&client, key, &target, repo, &["extract", archive]);
        assert!(output.success(), "{output}");
        support::assert_trees_equal(&source, &target);
        fs::remove_dir_all(&target).unwrap();
    };
    ok(&["repo-create", "-e", "aes256-ocb"]);
    ok(&["create", "first", "."]);
    ok(&["create", "second", "."]);
    assert_eq!(archives().len(), 2);
    let listing = ok(&["list", "first"]).stdout_text();
    assert!(listing.contains("small"), "{listing}");
    extracts("first");
    ok(&["delete", "-a", "second"]);
    assert_eq!(archives().len(), 1);
    ok(&["undelete", "-a", "second"]);
    assert_eq!(archives().len(), 2);
    ok(&["delete", "-a", "second"]);
    ok(&["compact"]);
    ok(&["check"]);
    ok(&["check", "--verify-data"]);
    extracts("first");
    // Everything on disk is in borgstore's layout: private modes, no leftovers.
    let path = world.repo(repo);
    for namespace in ["archives", "config", "index", "keys", "locks", "packs"] {
        assert!(path.join(namespace).is_dir(), "{namespace}");
    }
    assert_eq!(fs::read_dir(path.join("locks")).unwrap().count(), 0);
    ok(&["repo-delete", "--force"]);
    assert!(!path.exists());
}

#[test]
fn a_b23_client_does_everything_through_sshd_and_the_engine() {
    let world = require!(World::start("borg2-life"));
    whole_life(&world, Key::Engine, "r");
}

/// The gate's decision records (the engines' session_end records are tests/session_records.rs's).
fn audit(world: &World) -> Vec<serde_json::Value> {
    support::audit_events(&world.path("audit.jsonl"), "decision")
}

#[test]
fn a_b23_client_does_everything_through_the_gate_with_either_engine() {
    let world = require!(World::start("borg2-gate-life"));
    // Two repositories, two clients, two engines: the lives are independent, so run them at once.
    std::thread::scope(|scope| {
        let world = &world;
        let builtin = scope.spawn(move || whole_life(world, Key::Gate, "builtin"));
        let python = scope.spawn(move || whole_life(world, Key::GatePython, "python"));
        builtin.join().unwrap();
        python.join().unwrap();
    });
    let records = audit(&world);
    for (policy, repo, engine) in [
        ("Gate", "builtin", "borg-gate".to_owned()),
        (
            "GatePython",
            "python",
            world.client.path.display().to_string(),
        ),
    ] {
        let sessions: Vec<_> = records.iter().filter(|r| r["policy"] == policy).collect();
        assert!(sessions.len() >= 15, "{policy}: {sessions:?}");
        for record in sessions {
            assert_eq!(record["decision"], "accept", "{record}");
            assert_eq!(record["protocol"], "borg2", "{record}");
            assert_eq!(
                record["repository"],
                world.repo(repo).display().to_string(),
                "{record}"
            );
            assert_eq!(record["engine_argv"][0], engine, "{record}");
        }
    }
}

#[test]
fn the_gate_refuses_paths_backends_and_protocols_and_serves_both_generations() {
    let world = require!(World::start("borg2-gate-refusals"));
    let gate = World::key_index(Key::Gate);
    // A path outside the policy: borg's refusal, borg's exit status, nothing created.
    let elsewhere = world.path("elsewhere");
    let output = world.sshd.ssh_command(
        gate,
        &format!("borg serve --rest --backend FILE:{}", elsewhere.display()),
    );
    assert_eq!(output.code(), Some(83), "{output}");
    assert_eq!(
        output.stderr_text().trim(),
        format!(
            "borg-gate: refused: Repository path not allowed: {}.",
            elsewhere.display()
        )
    );
    assert!(output.stdout.is_empty());
    let output = world.borg(
        Key::Gate,
        "../elsewhere",
        &["repo-create", "-e", "aes256-ocb"],
    );
    assert!(!output.success());
    let text = format!("{}{}", output.stdout_text(), output.stderr_text());
    assert!(text.contains("Repository path not allowed"), "{text}");
    assert!(!elsewhere.exists());
    // A backend that is not FILE: never reaches an engine.
    let output = world
        .sshd
        .ssh_command(gate, "borg serve --rest --backend sftp://evil.example/x");
    assert_eq!(output.code(), Some(83), "{output}");
    assert!(
        output.stderr_text().starts_with(
            "borg-gate: refused: backend \"sftp://evil.example/x\" is not a FILE:<path> backend"
        ),
        "{output}"
    );
    // A policy that serves borg 1 only refuses a borg 2 client with one clear sentence.
    let sentence =
        "borg 2 clients are not allowed by this key's policy; this key only runs `borg serve`";
    let output = world.borg(
        Key::GateBorg1Only,
        "refused",
        &["repo-create", "-e", "aes256-ocb"],
    );
    assert!(!output.success());
    let text = format!("{}{}", output.stdout_text(), output.stderr_text());
    assert!(text.contains(sentence), "{text}");
    assert!(!world.repo("refused").exists());
    // One policy, both generations: a borg 1.4 client and a borg 2 client side by side.
    let borg1 = require!(support::borg14());
    let rsh = world.sshd.rsh(gate);
    let url = world.sshd.url(world.repo("borg1"));
    let env = [("BORG_RSH", rsh.as_str())];
    let source = world.path("source");
    let run1 = |args: &[&str]| {
        let output = borg1.run_in(&source, args, &env, None);
        assert!(output.success(), "{args:?}: {output}");
        output
    };
    run1(&["init", "--encryption", "none", &url]);
    run1(&["create", &format!("{url}::one"), "."]);
    world.ok(Key::Gate, "borg2", &["repo-create", "-e", "aes256-ocb"]);
    world.ok(Key::Gate, "borg2", &["create", "two", "."]);
    assert!(
        run1(&["list", "--short", &url])
            .stdout_text()
            .contains("one")
    );
    assert_eq!(world.archives(Key::Gate, "borg2"), ["two"]);
    world.assert_extracts(Key::Gate, "borg2", "two");
    let records = audit(&world);
    let served = |protocol: &str| {
        records
            .iter()
            .filter(|r| r["policy"] == "Gate" && r["decision"] == "accept")
            .any(|r| r["protocol"] == protocol)
    };
    assert!(served("borg1") && served("borg2"), "{records:?}");
    let refused: Vec<_> = records
        .iter()
        .filter(|r| r["decision"] == "reject")
        .map(|r| r["reason"].as_str().unwrap_or_default())
        .collect();
    assert!(
        refused
            .iter()
            .any(|r| r.starts_with("Repository path not allowed")),
        "{refused:?}"
    );
    assert!(
        refused.iter().any(|r| r.starts_with(sentence)),
        "{refused:?}"
    );
}

/// Each operation and its exit status.
type Outcomes = Vec<(String, Option<i32>)>;

/// What each operation did under a permission mode: its exit status. Each run uses a copy
/// of the repository and a client of its own (the copies share the repository ID, which a
/// shared client cache would take for a replay attack).
fn outcomes(world: &World, key: Key, repo: &str) -> Outcomes {
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
        // Through the gate: its permissions, append_only as no-delete, and the external
        // Python server with the permissions the gate pins.
        (Key::GateReadOnly, Key::PythonReadOnly),
        (Key::GateAppendOnly, Key::PythonNoDelete),
        (Key::GatePythonNoDelete, Key::PythonNoDelete),
    ];
    let mut keys: Vec<Key> = pairs
        .iter()
        .flat_map(|(ours, theirs)| [*ours, *theirs])
        .collect();
    keys.sort_by_key(|key| World::key_index(*key));
    keys.dedup();
    // The runs are independent (own copies, own clients): run four at a time.
    let mut results: Vec<(Key, Outcomes)> = Vec::new();
    for batch in keys.chunks(4) {
        std::thread::scope(|scope| {
            let runs: Vec<_> = batch
                .iter()
                .map(|key| {
                    let key = *key;
                    let world = &world;
                    scope.spawn(move || (key, outcomes(world, key, "base")))
                })
                .collect();
            results.extend(runs.into_iter().map(|run| run.join().unwrap()));
        });
    }
    let of = |wanted: Key| {
        &results
            .iter()
            .find(|(key, _)| *key == wanted)
            .expect("every key ran")
            .1
    };
    for (ours, theirs) in &pairs {
        let (engine, python) = (of(*ours), of(*theirs));
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
