//! Path attacks on `restrict_to_paths` and `restrict_to_repositories`, against the real
//! `borg-gate serve` binary: `..`, `/./` and `/~/` forms, `~otheruser`, symlinks out of the
//! allowed directory (planted before `open`, or swapped in while clients open), prefix
//! siblings, very long paths and non-UTF-8 bytes. Real borg clients see borg's refusal.
//!
//! What the engine guarantees, and what it leaves to the administrator: the restriction is
//! checked on the resolved path (symlinks followed, like borg), and the repository is then
//! opened by that path. A symlink swap between the two can only be made by an account that
//! can write a directory on the way; the engine refuses a restricted repository when any
//! such directory is owned or writable by an account other than root and its own (see
//! `engine::paths::check_no_foreign_writers`). The engine's own account is not defended
//! against: it can read the repository files without borg anyway.

mod support;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rmpv::Value;
use support::require;

/// A root with `alice/` (allowed), `bob/` and `alice2/` (not), each holding a repository
/// made by real borg, so that an escape would succeed instead of failing for lack of one.
struct Layout {
    dir: tempfile::TempDir,
    root: PathBuf,
    borg: support::BorgClient,
}

impl Layout {
    fn new(label: &str) -> Option<Layout> {
        let borg = support::borg14()?;
        let dir = support::temp_dir(label);
        let root = fs::canonicalize(dir.path()).unwrap();
        let layout = Layout { dir, root, borg };
        for name in ["alice", "bob", "alice2"] {
            fs::create_dir(layout.path(name)).unwrap();
            layout.init(&layout.path(&format!("{name}/repo")));
        }
        Some(layout)
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    fn init(&self, repo: &Path) {
        self.borg
            .run(
                &["init", "--encryption=none", repo.to_str().unwrap()],
                &[],
                None,
            )
            .assert_success();
    }

    /// The repository id in `repo/config`, as hex.
    fn repo_id(&self, repo: &Path) -> String {
        let config = fs::read_to_string(repo.join("config")).unwrap();
        config
            .lines()
            .find_map(|line| line.strip_prefix("id = "))
            .unwrap()
            .to_owned()
    }

    /// `borg-gate serve <args>` with HOME and the working directory at `home`, fed one `open`
    /// per path; returns one outcome per path: the opened repository's id or the exception.
    fn open_each(
        &self,
        args: &[&str],
        home: &Path,
        paths: &[&[u8]],
    ) -> Vec<Result<String, String>> {
        let mut input = Vec::new();
        for (msgid, path) in paths.iter().enumerate() {
            input.extend(open_request(msgid as u64 + 1, path));
        }
        let mut command = Command::new(support::cargo_bin());
        command
            .arg("serve")
            .args(args)
            .current_dir(home)
            .env_clear()
            .env("PATH", support::SAFE_PATH)
            .env("HOME", home);
        let output = support::run_with_stdin(command, &input, Duration::from_secs(60));
        assert_eq!(output.code(), Some(0), "{output}");
        let outcomes = outcomes(&output.stdout);
        assert_eq!(outcomes.len(), paths.len(), "{output}");
        outcomes
    }
}

fn open_request(msgid: u64, path: &[u8]) -> Vec<u8> {
    let message = Value::Map(vec![
        (Value::from("i"), Value::from(msgid)),
        (Value::from("m"), Value::from("open")),
        (
            Value::from("a"),
            Value::Map(vec![
                (Value::from("path"), Value::Binary(path.to_vec())),
                (Value::from("lock_wait"), Value::from(5)),
                (Value::from("exclusive"), Value::from(false)),
            ]),
        ),
    ]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &message).unwrap();
    out
}

/// Each reply as the opened repository's id (hex), or `Class: args`.
fn outcomes(mut stdout: &[u8]) -> Vec<Result<String, String>> {
    let mut out = Vec::new();
    while !stdout.is_empty() {
        let reply = rmpv::decode::read_value(&mut stdout).unwrap();
        let map = reply.as_map().unwrap();
        let field = |name: &str| {
            map.iter()
                .find(|(key, _)| key.as_str() == Some(name))
                .map(|(_, value)| value.clone())
        };
        out.push(match field("exception_class") {
            Some(class) => {
                let args = field("exception_args").unwrap();
                let args: Vec<String> = args
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| match a {
                        Value::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                        other => other.to_string(),
                    })
                    .collect();
                Err(format!("{}: {}", class.as_str().unwrap(), args.join(", ")))
            }
            None => {
                let id = field("r").unwrap();
                let bytes = match &id {
                    Value::Binary(b) => b.clone(),
                    Value::String(s) => s.as_bytes().to_vec(),
                    other => panic!("open returned {other}"),
                };
                Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
            }
        });
    }
    out
}

fn not_allowed(path: &Path) -> Result<String, String> {
    Err(format!("PathNotAllowed: {}", path.display()))
}

#[test]
fn dot_dot_dot_slash_and_tilde_forms_cannot_leave_the_allowed_directory() {
    let layout = require!(Layout::new("paths-forms"));
    let alice = layout.path("alice");
    let allowed = format!("--restrict-to-path={}", alice.display());
    let alice_id = layout.repo_id(&layout.path("alice/repo"));
    let p = |relative: &str| layout.path(relative).as_os_str().as_bytes().to_vec();
    let paths: Vec<Vec<u8>> = vec![
        p("alice/repo"),
        p("alice/../bob/repo"),
        p("alice/repo/../../bob/repo"),
        p("alice/./repo"),
        p("alice2/repo"),
        // `/./` is relative to the working directory (here the root of the layout).
        b"/./alice/repo".to_vec(),
        b"/./bob/repo".to_vec(),
        b"/./alice/../bob/repo".to_vec(),
    ];
    let borrowed: Vec<&[u8]> = paths.iter().map(Vec::as_slice).collect();
    let outcomes = layout.open_each(&[&allowed], &layout.root, &borrowed);
    assert_eq!(outcomes[0], Ok(alice_id.clone()));
    assert_eq!(outcomes[1], not_allowed(&layout.path("bob/repo")));
    assert_eq!(outcomes[2], not_allowed(&layout.path("bob/repo")));
    assert_eq!(outcomes[3], Ok(alice_id.clone()));
    assert_eq!(outcomes[4], not_allowed(&layout.path("alice2/repo")));
    assert_eq!(outcomes[5], Ok(alice_id.clone()));
    assert_eq!(outcomes[6], not_allowed(&layout.path("bob/repo")));
    assert_eq!(outcomes[7], not_allowed(&layout.path("bob/repo")));

    // `/~/` and `~/` are relative to HOME: alice's home reaches her repository, bob's does not.
    let tilde: [&[u8]; 3] = [b"/~/repo", b"~/repo", b"/~/../bob/repo"];
    let outcomes = layout.open_each(&[&allowed], &alice, &tilde);
    assert_eq!(outcomes[0], Ok(alice_id.clone()));
    assert_eq!(outcomes[1], Ok(alice_id));
    assert_eq!(outcomes[2], not_allowed(&layout.path("bob/repo")));
    let outcomes = layout.open_each(&[&allowed], &layout.path("bob"), &tilde[..1]);
    assert_eq!(outcomes[0], not_allowed(&layout.path("bob/repo")));
}

#[test]
fn other_accounts_are_refused_alike_whether_they_exist_or_not() {
    let layout = require!(Layout::new("paths-accounts"));
    let allowed = format!("--restrict-to-path={}", layout.path("alice").display());
    // An account that exists and is not the engine's own (whose `~` the client may use).
    let own = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .unwrap()
        .unwrap()
        .name;
    let existing = ["nobody", "daemon", "bin", "root"]
        .into_iter()
        .find(|name| *name != own && nix::unistd::User::from_name(name).unwrap().is_some())
        .expect("some system account")
        .to_owned();
    let missing = "no-such-account-4711";
    let paths: Vec<Vec<u8>> = [
        format!("/~{existing}/repo"),
        format!("/~{missing}/repo"),
        format!("~{existing}/repo"),
        format!("~{missing}/repo"),
        format!("/~{existing}"),
        format!("/~{missing}"),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect();
    let borrowed: Vec<&[u8]> = paths.iter().map(Vec::as_slice).collect();
    let outcomes = layout.open_each(&[&allowed], &layout.root, &borrowed);
    for pair in outcomes.chunks(2) {
        let hide = |o: &Result<String, String>| {
            o.clone()
                .unwrap_err()
                .replace(&existing, "NAME")
                .replace(missing, "NAME")
        };
        assert_eq!(hide(&pair[0]), hide(&pair[1]), "{pair:?}");
        assert!(pair[0].clone().unwrap_err().starts_with("PathNotAllowed: "));
    }
}

#[test]
fn restrict_to_repository_is_exact() {
    let layout = require!(Layout::new("paths-repository"));
    let repo = layout.path("alice/repo");
    let allowed = format!("--restrict-to-repository={}", repo.display());
    let p = |relative: &str| layout.path(relative).as_os_str().as_bytes().to_vec();
    let paths = [
        p("alice/repo"),
        p("alice/repo/"),
        p("alice/repo/data"),
        p("alice"),
        p("alice2/repo"),
        p("alice/repo/../../bob/repo"),
    ];
    let borrowed: Vec<&[u8]> = paths.iter().map(Vec::as_slice).collect();
    let outcomes = layout.open_each(&[&allowed], &layout.root, &borrowed);
    let id = layout.repo_id(&repo);
    assert_eq!(outcomes[0], Ok(id.clone()));
    assert_eq!(outcomes[1], Ok(id));
    assert_eq!(outcomes[2], not_allowed(&layout.path("alice/repo/data")));
    assert_eq!(outcomes[3], not_allowed(&layout.path("alice")));
    assert_eq!(outcomes[4], not_allowed(&layout.path("alice2/repo")));
    assert_eq!(outcomes[5], not_allowed(&layout.path("bob/repo")));
}

#[test]
fn a_planted_symlink_out_of_the_allowed_directory_is_followed_and_refused() {
    let layout = require!(Layout::new("paths-symlink"));
    symlink(layout.path("bob"), layout.path("alice/escape")).unwrap();
    symlink("../bob/repo", layout.path("alice/relative-escape")).unwrap();
    symlink("repo", layout.path("alice/alias")).unwrap();
    let allowed = format!("--restrict-to-path={}", layout.path("alice").display());
    let p = |relative: &str| layout.path(relative).as_os_str().as_bytes().to_vec();
    let paths = [
        p("alice/escape/repo"),
        p("alice/relative-escape"),
        p("alice/alias"),
    ];
    let borrowed: Vec<&[u8]> = paths.iter().map(Vec::as_slice).collect();
    let outcomes = layout.open_each(&[&allowed], &layout.root, &borrowed);
    assert_eq!(outcomes[0], not_allowed(&layout.path("bob/repo")));
    assert_eq!(outcomes[1], not_allowed(&layout.path("bob/repo")));
    assert_eq!(outcomes[2], Ok(layout.repo_id(&layout.path("alice/repo"))));
}

#[test]
fn very_long_and_non_utf8_paths_get_a_clean_error() {
    let layout = require!(Layout::new("paths-long"));
    let alice = layout.path("alice");
    let allowed = format!("--restrict-to-path={}", alice.display());
    let inside = |tail: &[u8]| [alice.as_os_str().as_bytes(), b"/", tail].concat();
    let long_name = vec![b'a'; 300];
    let deep = [b"x/".repeat(3000), b"repo".to_vec()].concat();
    let huge = vec![b'/'; 1 << 20];
    let paths = [
        inside(&long_name),
        inside(&deep),
        huge.clone(),
        inside(b"\xff\xfe/repo"),
        [layout.path("bob").as_os_str().as_bytes(), b"/\xff"].concat(),
        b"\0/etc".to_vec(),
        inside(b"repo\0/../../bob/repo"),
    ];
    let borrowed: Vec<&[u8]> = paths.iter().map(Vec::as_slice).collect();
    let outcomes = layout.open_each(&[&allowed], &layout.root, &borrowed);
    for (path, outcome) in paths.iter().zip(&outcomes) {
        let error = outcome.clone().expect_err("nothing here is a repository");
        let class = error.split(':').next().unwrap();
        assert!(
            [
                "PathNotAllowed",
                "DoesNotExist",
                "InvalidRepository",
                "PathPermissionDenied",
                "OSError",
                "Error"
            ]
            .contains(&class),
            "{}: {error}",
            String::from_utf8_lossy(&path[..path.len().min(80)])
        );
    }
    // Outside the allowed directory is refused by name, long or not.
    assert!(
        outcomes[2]
            .clone()
            .unwrap_err()
            .starts_with("PathNotAllowed")
    );
    assert!(
        outcomes[4]
            .clone()
            .unwrap_err()
            .starts_with("PathNotAllowed")
    );
}

#[test]
fn a_directory_another_account_can_write_is_refused() {
    require!(support::require_root());
    let layout = require!(Layout::new("paths-foreign"));
    let alice = layout.path("alice");
    let allowed = format!("--restrict-to-path={}", alice.display());
    let repo = layout.path("alice/repo");
    let path = repo.as_os_str().as_bytes();
    fs::set_permissions(&alice, fs::Permissions::from_mode(0o775)).unwrap();
    assert_eq!(
        layout.open_each(&[&allowed], &layout.root, &[path])[0],
        not_allowed(&repo)
    );
    fs::set_permissions(&alice, fs::Permissions::from_mode(0o755)).unwrap();
    let nobody = nix::unistd::Uid::from_raw(65534);
    nix::unistd::chown(&alice, Some(nobody), None).unwrap();
    assert_eq!(
        layout.open_each(&[&allowed], &layout.root, &[path])[0],
        not_allowed(&repo)
    );
    // Without restrictions there is nothing to escape from: borg's behaviour.
    let outcome = &layout.open_each(&[], &layout.root, &[path])[0];
    assert_eq!(outcome, &Ok(layout.repo_id(&repo)));
}

/// Another account (nobody) swaps `alice/swap` between a directory holding alice's
/// repository and a symlink to bob's, as fast as it can, while clients open `alice/swap/repo`
/// over and over. No open may ever reach bob's repository.
#[test]
fn a_symlink_swapped_in_during_open_never_reaches_outside() {
    require!(support::require_root());
    let layout = require!(Layout::new("paths-race"));
    let alice = layout.path("alice");
    let allowed = format!("--restrict-to-path={}", alice.display());
    let bob_id = layout.repo_id(&layout.path("bob/repo"));
    // alice/ is writable by nobody, who runs the swapper; alice/swap-dir holds a repository.
    let swap_dir = layout.path("alice/swap-dir");
    fs::create_dir(&swap_dir).unwrap();
    layout.init(&swap_dir.join("repo"));
    let nobody = nix::unistd::Uid::from_raw(65534);
    nix::unistd::chown(&alice, Some(nobody), None).unwrap();
    fs::rename(&swap_dir, layout.path("alice/swap")).unwrap();
    // nobody must be able to reach alice/.
    fs::set_permissions(&layout.root, fs::Permissions::from_mode(0o755)).unwrap();
    let setpriv = require!(support::require_tool("setpriv"));
    let mut swapper = {
        let script = format!(
            "cd {alice}; ln -s {bob} link; i=0; while [ ! -e {stop} ] && [ $i -lt 200000 ]; do \
             mv -T swap dir; mv -T link swap; mv -T swap link; mv -T dir swap; i=$((i+1)); done",
            alice = alice.display(),
            bob = layout.path("bob").display(),
            stop = layout.path("stop").display(),
        );
        Command::new(setpriv)
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "sh",
                "-c",
                &script,
            ])
            .spawn()
            .unwrap()
    };
    let path = layout.path("alice/swap/repo");
    let opens: Vec<&[u8]> = vec![path.as_os_str().as_bytes(); 200];
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut refused = 0;
    let mut sessions = 0;
    while Instant::now() < deadline && sessions < 5 {
        for outcome in layout.open_each(&[&allowed], &layout.root, &opens) {
            assert_ne!(
                outcome,
                Ok(bob_id.clone()),
                "an open reached bob's repository"
            );
            refused += usize::from(outcome.is_err());
        }
        sessions += 1;
    }
    fs::write(layout.path("stop"), b"").unwrap();
    let _ = swapper.wait();
    assert_eq!(
        refused,
        sessions * opens.len(),
        "alice/ is writable by another account"
    );
    assert!(
        layout.path("alice/link").exists() || layout.path("alice/swap").exists(),
        "the swapper ran"
    );
}

/// Real borg clients see borg's own refusal text for a path outside the restriction.
#[test]
fn borg_clients_see_borgs_refusal() {
    let layout = require!(Layout::new("paths-client"));
    let script = layout.dir.path().join("rsh.sh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec {} serve --restrict-to-path {}\n",
            support::cargo_bin().display(),
            layout.path("alice").display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let rsh = script.to_str().unwrap();
    for client in support::borg_clients() {
        for path in ["alice/../bob/repo", "alice2/repo"] {
            let url = format!("ssh://engine{}", layout.path(path).display());
            let output = client.run(&["list", &url], &[("BORG_RSH", rsh)], None);
            output.assert_failure();
            let resolved = fs::canonicalize(layout.path(path)).unwrap();
            output.assert_stderr_contains(&format!(
                "Repository path not allowed: {}",
                resolved.display()
            ));
        }
    }
}

/// Issue 15: a repository path holding a bidirectional control, a line separator or a control
/// character would become a directory name that `ls`, logs and reports show raw. Refused
/// (borg's PathNotAllowed, the character escaped), and nothing is created.
#[test]
fn paths_with_bidirectional_or_control_characters_are_refused_and_not_created() {
    let layout = require!(Layout::new("paths-invisible"));
    let alice = layout.path("alice");
    let allowed = format!("--restrict-to-path={}", alice.display());
    let names = ["re\u{202e}po", "re\u{2028}po", "re\u{2066}po", "re\npo"];
    let paths: Vec<Vec<u8>> = names
        .iter()
        .map(|name| alice.join(name).as_os_str().as_bytes().to_vec())
        .collect();
    let borrowed: Vec<&[u8]> = paths.iter().map(Vec::as_slice).collect();
    let mut input = Vec::new();
    for (msgid, path) in borrowed.iter().enumerate() {
        input.extend(create_request(msgid as u64 + 1, path));
    }
    let mut command = Command::new(support::cargo_bin());
    command
        .arg("serve")
        .arg(&allowed)
        .env_clear()
        .env("PATH", support::SAFE_PATH)
        .env("HOME", &alice);
    let output = support::run_with_stdin(command, &input, Duration::from_secs(60));
    let outcomes = outcomes(&output.stdout);
    assert_eq!(outcomes.len(), names.len(), "{output}");
    for (outcome, name) in outcomes.iter().zip(names) {
        let escaped: String = name
            .chars()
            .map(|c| match c {
                'r' | 'e' | 'p' | 'o' => c.to_string(),
                c => format!("\\u{{{:04x}}}", u32::from(c)),
            })
            .collect();
        assert_eq!(
            outcome,
            &Err(format!("PathNotAllowed: {}", alice.join(escaped).display()))
        );
    }
    let created: Vec<_> = fs::read_dir(&alice)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(created, vec![std::ffi::OsString::from("repo")]);
}

fn create_request(msgid: u64, path: &[u8]) -> Vec<u8> {
    let message = Value::Map(vec![
        (Value::from("i"), Value::from(msgid)),
        (Value::from("m"), Value::from("open")),
        (
            Value::from("a"),
            Value::Map(vec![
                (Value::from("path"), Value::Binary(path.to_vec())),
                (Value::from("create"), Value::from(true)),
                (Value::from("lock_wait"), Value::from(5)),
                (Value::from("exclusive"), Value::from(true)),
            ]),
        ),
    ]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &message).unwrap();
    out
}
