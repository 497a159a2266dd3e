//! Proves the test harness itself against real components, without borg-gate: a real sshd with
//! a forced `borg serve`, both real borg clients, real files, and the helpers' own logic.

mod support;

use std::collections::BTreeSet;
use std::env;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{
    AuthorizedKey, BorgClient, CmdOutput, Entry, Sshd, SshdOptions, Unavailable, require,
};

// ---------------------------------------------------------------------------------------------
// Real sshd + real borg

/// Starts an sshd whose only key forces `<server> serve --restrict-to-path <work>/repos`.
fn sshd_forcing_borg_serve(server: &BorgClient, repos: &Path) -> Sshd {
    let forced = format!(
        "{} serve --restrict-to-path {}",
        server.path.display(),
        repos.display()
    );
    Sshd::start(&[AuthorizedKey::forced_command(&forced)])
}

/// init, create, list, extract through the forced `server` with every client; trees must match.
fn every_client_round_trips_through(server: &BorgClient) {
    let clients = support::borg_clients();
    let work = support::temp_dir("selftest-roundtrip");
    let repos = work.path().join("repos");
    fs::create_dir(&repos).unwrap();
    let source = work.path().join("source");
    fs::create_dir(&source).unwrap();
    support::make_tree(&source);
    let sshd = sshd_forcing_borg_serve(server, &repos);
    let rsh = sshd.rsh(0);
    let env = [("BORG_RSH", rsh.as_str())];

    let mut expected_paths: BTreeSet<String> = support::list_tree(&source)
        .keys()
        .map(|path| path.to_str().unwrap().to_string())
        .collect();
    expected_paths.insert(".".to_string());

    for client in &clients {
        let repo = sshd.url(repos.join(&client.label));
        let archive = format!("{repo}::first");
        client
            .run(&["init", "-e", "none", &repo], &env, None)
            .assert_success();
        client
            .run_in(&source, &["create", &archive, "."], &env, None)
            .assert_success();

        let archives = client.run(&["list", "--short", &repo], &env, None);
        archives.assert_success();
        assert_eq!(archives.stdout_text(), "first\n", "{client:?}\n{archives}");

        let items = client.run(&["list", "--format", "{path}{NL}", &archive], &env, None);
        items.assert_success();
        let listed: BTreeSet<String> = items.stdout_text().lines().map(String::from).collect();
        assert_eq!(listed, expected_paths, "{client:?}\n{items}");

        let target = work.path().join(format!("extract-{}", client.label));
        fs::create_dir(&target).unwrap();
        client
            .run_in(&target, &["extract", &archive], &env, None)
            .assert_success();
        support::assert_trees_equal(&source, &target);
        assert!(
            repos.join(&client.label).join("config").is_file(),
            "{client:?}: the repository is not where the forced command was told to keep it"
        );
    }
    sshd.assert_log_contains("Accepted publickey for");
    sshd.assert_log_contains("Starting session: forced-command (key-option)");
}

#[test]
fn debian_borg_serve_as_forced_command_serves_every_client() {
    require!(support::require_root());
    require!(support::require_tool("/usr/sbin/sshd"));
    let server = require!(support::debian_borg());
    every_client_round_trips_through(&server);
}

#[test]
fn pypi_borg_serve_as_forced_command_serves_every_client() {
    require!(support::require_root());
    require!(support::require_tool("/usr/sbin/sshd"));
    let server = require!(support::borg14());
    every_client_round_trips_through(&server);
}

#[test]
fn repository_outside_restrict_to_path_gets_borgs_refusal() {
    require!(support::require_root());
    require!(support::require_tool("/usr/sbin/sshd"));
    let server = require!(support::debian_borg());
    let work = support::temp_dir("selftest-outside");
    let repos = work.path().join("repos");
    fs::create_dir(&repos).unwrap();
    let sshd = sshd_forcing_borg_serve(&server, &repos);
    let rsh = sshd.rsh(0);
    for client in support::borg_clients() {
        let outside = work.path().join(format!("outside-{}", client.label));
        let refused = client.run(
            &["init", "-e", "none", &sshd.url(&outside)],
            &[("BORG_RSH", rsh.as_str())],
            None,
        );
        refused
            .assert_failure()
            .assert_stderr_contains("Repository path not allowed");
        assert!(
            !outside.exists(),
            "{client:?} created {outside:?}\n{refused}"
        );
    }
}

#[test]
fn forced_command_runs_instead_of_the_requested_shell() {
    require!(support::require_root());
    require!(support::require_tool("/usr/sbin/sshd"));
    let server = require!(support::debian_borg());
    let work = support::temp_dir("selftest-shell");
    let repos = work.path().join("repos");
    fs::create_dir(&repos).unwrap();
    let forced = format!(
        "{} serve --restrict-to-path {}",
        server.path.display(),
        repos.display()
    );
    let sshd = Sshd::start(&[
        AuthorizedKey::forced_command(&forced),
        AuthorizedKey::forced_command(r#"printf '%s\n' "$SSH_ORIGINAL_COMMAND""#),
    ]);

    let shell = sshd.ssh_command(0, "sh -c id");
    assert!(
        !shell.stdout_text().contains("uid=") && !shell.stderr_text().contains("uid="),
        "a shell ran:\n{shell}"
    );
    // borg serve, not sh, answered: it parses SSH_ORIGINAL_COMMAND as a borg command line
    // (archiver.py's forced-command handling) and rejects `-c id` with its usage text.
    shell.assert_failure().assert_stderr_contains("usage: borg");
    sshd.assert_log_contains(&format!(
        "Starting session: forced-command (key-option) '{forced}'"
    ));

    // The client's command arrives verbatim in SSH_ORIGINAL_COMMAND, per key.
    let echoed = sshd.ssh_command(1, "sh -c id");
    echoed.assert_success();
    assert_eq!(echoed.stdout_text(), "sh -c id\n", "{echoed}");
    let tricky = "borg serve --umask=077 'quoted arg' ; echo $HOME";
    let echoed = sshd.ssh_command(1, tricky);
    assert_eq!(echoed.stdout_text(), format!("{tricky}\n"), "{echoed}");
}

#[test]
fn sshd_passes_client_and_key_environment_only_when_configured() {
    require!(support::require_root());
    require!(support::require_tool("/usr/sbin/sshd"));
    let probe = r#"printf '%s' "${BORG_GATE_PROBE-unset}""#;
    let keys = [
        AuthorizedKey::forced_command(probe),
        AuthorizedKey::new(format!(
            r#"{},environment="BORG_GATE_PROBE=from-key""#,
            AuthorizedKey::forced_command(probe).options
        )),
    ];
    let set_env = ["-o", "SetEnv=BORG_GATE_PROBE=from-client"];
    let probe_with = |options: &SshdOptions| -> (String, String) {
        let sshd = Sshd::start_with(&keys, options);
        let client = sshd.ssh(0, "anything", &set_env, None);
        let key = sshd.ssh(1, "anything", &[], None);
        (client.stdout_text(), key.stdout_text())
    };

    assert_eq!(
        probe_with(&SshdOptions::default()),
        ("unset".to_string(), "unset".to_string())
    );
    let accepting = SshdOptions {
        accept_env: vec!["BORG_GATE_PROBE".to_string()],
        ..SshdOptions::default()
    };
    assert_eq!(probe_with(&accepting).0, "from-client");
    let permitting = SshdOptions {
        permit_user_environment: "yes".to_string(),
        ..SshdOptions::default()
    };
    assert_eq!(probe_with(&permitting).1, "from-key");
}

#[test]
fn sessions_get_an_isolated_home_unless_disabled() {
    require!(support::require_root());
    require!(support::require_tool("/usr/sbin/sshd"));
    let keys = [AuthorizedKey::forced_command(
        r#"printf '%s\n' "$HOME" "$PATH" "$(pwd)""#,
    )];
    let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .unwrap()
        .unwrap();

    let sshd = Sshd::start(&keys);
    let isolated = sshd.ssh_command(0, "");
    isolated.assert_success();
    let expected = format!(
        "{}\n{}\n{}\n",
        sshd.session_home().display(),
        support::SAFE_PATH,
        user.dir.display()
    );
    assert_eq!(isolated.stdout_text(), expected, "{isolated}");

    let shared = SshdOptions {
        isolated_home: false,
        ..SshdOptions::default()
    };
    let sshd = Sshd::start_with(&keys, &shared);
    let output = sshd.ssh_command(0, "");
    output.assert_success();
    let first_line = output.stdout_text().lines().next().unwrap().to_string();
    assert_eq!(Path::new(&first_line), user.dir, "{output}");
}

#[test]
fn sshd_urls_and_rsh_name_our_port_and_key() {
    require!(support::require_root());
    require!(support::require_tool("/usr/sbin/sshd"));
    let sshd = Sshd::start(&[AuthorizedKey::new(""), AuthorizedKey::new("")]);
    let port = sshd.port();
    assert_eq!(
        sshd.url("/srv/repo"),
        format!("ssh://{}@127.0.0.1:{port}/srv/repo", sshd.user())
    );
    assert_eq!(
        sshd.url("~/repo"),
        format!("ssh://{}@127.0.0.1:{port}/~/repo", sshd.user())
    );
    let words = shlex::split(&sshd.rsh(1)).unwrap();
    assert_eq!(words[0], "ssh");
    let key_at = words.iter().position(|w| w == "-i").unwrap() + 1;
    assert_eq!(Path::new(&words[key_at]), sshd.client_key(1));
    let port_at = words.iter().position(|w| w == "-p").unwrap() + 1;
    assert_eq!(words[port_at], port.to_string());
    assert_ne!(sshd.client_key(0), sshd.client_key(1));
    // An unrestricted key really gets a shell: the refusals above are the forced command's work.
    let shell = sshd.ssh_command(1, "echo shell-ran");
    shell.assert_success().assert_stdout_contains("shell-ran");
}

#[test]
fn dropping_sshd_stops_it_and_removes_its_files() {
    require!(support::require_root());
    require!(support::require_tool("/usr/sbin/sshd"));
    let sshd = Sshd::start(&[AuthorizedKey::new("")]);
    let pid: i32 = fs::read_to_string(sshd.dir().join("sshd.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let dir = sshd.dir().to_path_buf();
    let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None);
    assert!(alive.is_ok(), "sshd {pid} not running while Sshd lives");
    drop(sshd);
    let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None);
    assert_eq!(
        gone,
        Err(nix::errno::Errno::ESRCH),
        "sshd {pid} outlived Drop"
    );
    assert!(!dir.exists(), "{dir:?} outlived Drop");
}

// ---------------------------------------------------------------------------------------------
// require_tool and the CI rule

const MISSING_TOOL: &str = "borg-gate-selftest-no-such-tool";
const CHILD_MARKER: &str = "BORG_GATE_SELFTEST_CHILD";

#[test]
#[ignore = "a child process of missing_tool_fails_in_ci_and_skips_elsewhere"]
fn child_requires_a_missing_tool() {
    if env::var_os(CHILD_MARKER).is_none() {
        return;
    }
    let found = require!(support::require_tool(MISSING_TOOL));
    panic!("require_tool found a tool that does not exist: {found:?}");
}

fn run_child(ci: Option<&str>) -> CmdOutput {
    let mut command = Command::new(env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "child_requires_a_missing_tool",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_MARKER, "1")
        .env_remove("CI");
    if let Some(value) = ci {
        command.env("CI", value);
    }
    support::run_with_timeout(command, Duration::from_secs(60))
}

#[test]
fn missing_tool_fails_in_ci_and_skips_elsewhere() {
    let in_ci = run_child(Some("true"));
    in_ci
        .assert_failure()
        .assert_stderr_contains(&format!("{MISSING_TOOL} not installed, and CI=true"));

    let elsewhere = run_child(None);
    elsewhere
        .assert_success()
        .assert_stderr_contains(&format!("skipping: {MISSING_TOOL} not installed"));

    let ci_false = run_child(Some("false"));
    ci_false
        .assert_success()
        .assert_stderr_contains(&format!("skipping: {MISSING_TOOL} not installed"));
}

#[test]
fn unavailable_verdict_depends_only_on_ci_value() {
    for ci in [Some("true"), Some("TRUE"), Some("True"), Some("1")] {
        assert!(
            matches!(support::unavailable_verdict("x", ci), Unavailable::Fail(m) if m.contains("x, and CI=true")),
            "{ci:?}"
        );
    }
    for ci in [None, Some(""), Some("false"), Some("0"), Some("yes please")] {
        assert_eq!(
            support::unavailable_verdict("x not installed", ci),
            Unavailable::Skip("skipping: x not installed".to_string()),
            "{ci:?}"
        );
    }
}

#[test]
fn find_tool_finds_by_name_and_by_path_but_not_directories() {
    let sh = support::find_tool("sh").expect("sh on PATH");
    assert!(sh.is_absolute(), "{sh:?}");
    assert_eq!(
        support::find_tool("/bin/sh"),
        Some(PathBuf::from("/bin/sh"))
    );
    assert_eq!(support::find_tool("/bin"), None);
    assert_eq!(support::find_tool(MISSING_TOOL), None);
    assert_eq!(support::find_tool("/nonexistent/dir/sh"), None);
    let work = support::temp_dir("selftest-find");
    let not_executable = work.path().join("plain");
    support::write_file(&not_executable, b"#!/bin/sh\n", 0o644);
    assert_eq!(support::find_tool(not_executable.to_str().unwrap()), None);
    fs::set_permissions(&not_executable, fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(
        support::find_tool(not_executable.to_str().unwrap()),
        Some(not_executable)
    );
}

#[test]
fn borg_clients_report_their_versions_and_use_private_base_dirs() {
    let clients = support::borg_clients();
    let labels: BTreeSet<&str> = clients.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(
        labels.len(),
        clients.len(),
        "labels must be unique: {labels:?}"
    );
    for client in &clients {
        assert!(
            client.version.starts_with("1."),
            "{client:?}: {}",
            client.version
        );
        let shown = client.run(&["--version"], &[], None);
        shown.assert_success();
        assert_eq!(
            shown.stdout_text().trim(),
            format!("borg {}", client.version)
        );
        assert!(client.base_dir().is_dir());
    }
    if let Some(borg14) = support::borg14() {
        assert_eq!(borg14.major_minor(), (1, 4), "{borg14:?}");
        let again = support::borg14().unwrap();
        assert_ne!(
            borg14.base_dir(),
            again.base_dir(),
            "base dirs must not be shared"
        );
    }
    if let Some(debian) = support::debian_borg() {
        assert_eq!(debian.path, support::Borg::Debian12.executable());
    }
}

#[test]
fn borg_installations_are_found_through_the_environment_first() {
    use support::Borg;
    let unset = |_: &str| None;
    let path = |text: &str| PathBuf::from(text);
    assert_eq!(Borg::Debian12.executable_in(unset), path("/usr/bin/borg"));
    assert_eq!(Borg::Debian12.python_in(unset), path("/usr/bin/python3"));
    assert_eq!(
        Borg::Pypi14.executable_in(unset),
        path("/opt/borg145/bin/borg")
    );
    assert_eq!(
        Borg::Pypi14.python_in(unset),
        path("/opt/borg145/bin/python")
    );
    assert_eq!(
        Borg::Pypi2.executable_in(unset),
        path("/opt/borg2b23/bin/borg")
    );
    assert_eq!(
        Borg::Pypi2.python_in(unset),
        path("/opt/borg2b23/bin/python")
    );
    // Set but empty counts as unset.
    let empty = |_: &str| Some(String::new());
    assert_eq!(
        Borg::Pypi14.executable_in(empty),
        path("/opt/borg145/bin/borg")
    );
    // A venv moves the executable and its python; the executable's own variable wins.
    let venvs = |name: &str| match name {
        "BORG14_VENV" => Some("/v14".to_owned()),
        "BORG2_VENV" => Some("/v2".to_owned()),
        _ => None,
    };
    assert_eq!(Borg::Pypi14.executable_in(venvs), path("/v14/bin/borg"));
    assert_eq!(Borg::Pypi14.python_in(venvs), path("/v14/bin/python"));
    assert_eq!(Borg::Pypi2.executable_in(venvs), path("/v2/bin/borg"));
    let executables = |name: &str| match name {
        "BORG12" => Some("/b12/borg".to_owned()),
        "BORG14" => Some("/b14/bin/borg".to_owned()),
        "BORG14_VENV" => Some("/ignored".to_owned()),
        "BORG2" => Some("/b2/bin/borg".to_owned()),
        _ => None,
    };
    assert_eq!(Borg::Debian12.executable_in(executables), path("/b12/borg"));
    assert_eq!(
        Borg::Pypi14.executable_in(executables),
        path("/b14/bin/borg")
    );
    assert_eq!(Borg::Pypi14.python_in(executables), path("/b14/bin/python"));
    assert_eq!(Borg::Pypi2.executable_in(executables), path("/b2/bin/borg"));
}

#[test]
fn borg_runs_with_an_environment_built_from_empty() {
    let Some(client) = support::borg_clients().into_iter().next() else {
        return; // borg_clients printed the skip note (or panicked in CI)
    };
    let command = client.command(
        Path::new("/"),
        &["info"],
        &[("BORG_RSH", "ssh -x"), ("LANG", "C")],
        Some("secret"),
    );
    let environment: Vec<(String, String)> = command
        .get_envs()
        .map(|(k, v)| {
            (
                k.to_str().unwrap().to_string(),
                v.unwrap().to_str().unwrap().to_string(),
            )
        })
        .collect();
    let get = |name: &str| {
        environment
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let base = client.base_dir().to_str().unwrap().to_string();
    assert_eq!(get("BORG_BASE_DIR"), Some(base.clone()));
    assert_eq!(get("HOME"), Some(base));
    assert_eq!(get("BORG_PASSPHRASE"), Some("secret".to_string()));
    assert_eq!(get("BORG_RSH"), Some("ssh -x".to_string()));
    assert_eq!(get("LANG"), Some("C".to_string()), "caller's env wins");
    assert_eq!(get("BORG_RELOCATED_REPO_ACCESS_IS_OK"), Some("yes".into()));
    assert_eq!(
        get("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK"),
        Some("yes".into())
    );
    assert_eq!(get("BORG_REMOTE_PATH"), None, "only when given");
    assert_eq!(get("SSH_AUTH_SOCK"), None);
}

#[test]
fn borg_and_its_ssh_see_none_of_the_test_process_environment() {
    for client in support::borg_clients() {
        let work = support::temp_dir("selftest-env");
        let dump = work.path().join("env.txt");
        let fake_ssh = work.path().join("fake-ssh");
        support::write_file(
            &fake_ssh,
            format!("#!/bin/sh\nenv > '{}'\nexit 1\n", dump.display()).as_bytes(),
            0o755,
        );
        let rsh = fake_ssh.to_str().unwrap();
        let failed = client.run(&["list", "ssh://nowhere/repo"], &[("BORG_RSH", rsh)], None);
        failed.assert_failure();
        let dumped = fs::read_to_string(&dump).unwrap_or_else(|_| panic!("no env dump:\n{failed}"));
        // What we set, BORG_VERSION (borg's own) and what sh adds; nothing of the test process.
        let leaked: Vec<&str> = dumped
            .lines()
            .filter_map(|line| line.split('=').next())
            .filter(|name| !name.starts_with("BORG_"))
            .filter(|name| !["HOME", "LANG", "PATH", "PWD", "SHLVL", "_"].contains(name))
            .collect();
        assert!(leaked.is_empty(), "{client:?} leaked {leaked:?}:\n{dumped}");
        let base = client.base_dir().display().to_string();
        for expected in [
            format!("BORG_BASE_DIR={base}"),
            format!("HOME={base}"),
            format!("PATH={}", support::SAFE_PATH),
            format!("BORG_RSH={rsh}"),
        ] {
            assert!(
                dumped.lines().any(|line| line == expected),
                "{client:?}: {expected} not in:\n{dumped}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Running commands

#[test]
fn cmd_output_shows_command_status_stdout_and_stderr() {
    let mut command = Command::new("/bin/sh");
    command.args(["-c", "echo to-stdout; echo to-stderr >&2; exit 3"]);
    let output = support::run_with_timeout(command, Duration::from_secs(30));
    assert_eq!(output.code(), Some(3));
    assert!(!output.success());
    let shown = format!("{output}");
    for needle in [
        "/bin/sh -c",
        "exit code 3",
        "--- stdout (10 bytes) ---\nto-stdout\n",
        "--- stderr (10 bytes) ---\nto-stderr\n",
    ] {
        assert!(shown.contains(needle), "{needle:?} missing from:\n{shown}");
    }
    assert_eq!(format!("{output:?}"), shown);
}

#[test]
#[should_panic(expected = "command failed")]
fn assert_success_panics_on_a_failed_command() {
    let mut command = Command::new("/bin/sh");
    command.args(["-c", "exit 1"]);
    support::run_with_timeout(command, Duration::from_secs(30)).assert_success();
}

#[test]
fn timeout_kills_the_whole_process_group() {
    let mut command = Command::new("/bin/sh");
    command.args(["-c", "sleep 60 & sleep 60; echo never"]);
    let output = support::spawn_and_wait(command, None, Duration::from_millis(500));
    assert!(output.timed_out, "{output}");
    assert!(output.elapsed < Duration::from_secs(10), "{output}");
    assert!(!output.stdout_text().contains("never"));
    assert!(format!("{output}").contains("TIMED OUT"));
}

#[test]
fn a_grandchild_holding_stdout_cannot_hang_the_harness() {
    let mut command = Command::new("/bin/sh");
    command.args(["-c", "(sleep 60 &); echo parent-done"]);
    let output = support::spawn_and_wait(command, None, Duration::from_secs(60));
    assert!(output.elapsed < Duration::from_secs(20), "{output}");
    assert!(
        output.timed_out,
        "a straggler kept the pipe open:\n{output}"
    );
    assert_eq!(output.stdout_text(), "parent-done\n");
}

#[test]
#[should_panic(expected = "command hung")]
fn run_with_timeout_fails_the_test_on_a_hang() {
    let mut command = Command::new("/bin/sleep");
    command.arg("60");
    support::run_with_timeout(command, Duration::from_millis(200));
}

#[test]
fn stdin_is_fed_or_closed() {
    let fed = support::run_with_stdin(
        Command::new("/bin/cat"),
        b"bytes in\x00\xff",
        Duration::from_secs(30),
    );
    assert_eq!(fed.stdout, b"bytes in\x00\xff");
    let closed = support::run_with_timeout(Command::new("/bin/cat"), Duration::from_secs(30));
    closed.assert_success();
    assert!(closed.stdout.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Trees

#[test]
fn xorshift_follows_marsaglias_definition() {
    // 1 -> 1 ^ 1<<13 = 8193 -> ^ 8193>>7 = 8257 -> ^ 8257<<17 = 1082269761
    assert_eq!(support::XorShift64::new(1).next_u64(), 1_082_269_761);
    let mut zero = support::XorShift64::new(0);
    assert_ne!(zero.next_u64(), 0, "seed 0 must not be a fixed point");
    assert_eq!(
        support::pseudo_random_bytes(7, 1001),
        support::pseudo_random_bytes(7, 1001)
    );
    assert_ne!(
        support::pseudo_random_bytes(7, 64),
        support::pseudo_random_bytes(8, 64)
    );
    assert_eq!(support::pseudo_random_bytes(7, 3).len(), 3);
}

#[test]
fn pseudo_random_bytes_look_incompressible() {
    let bytes = support::pseudo_random_bytes(1, 2 * 1024 * 1024);
    let mut counts = [0usize; 256];
    for byte in &bytes {
        counts[usize::from(*byte)] += 1;
    }
    let mean = bytes.len() / 256;
    for (value, count) in counts.iter().enumerate() {
        assert!(
            count.abs_diff(mean) < mean / 20,
            "byte {value} appears {count} times, mean {mean}"
        );
    }
}

#[test]
fn make_tree_is_deterministic_and_has_every_kind_of_entry() {
    let work = support::temp_dir("selftest-tree");
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    fs::create_dir(&a).unwrap();
    fs::create_dir(&b).unwrap();
    support::make_tree(&a);
    support::make_tree(&b);
    support::assert_trees_equal(&a, &b);

    let tree = support::list_tree(&a);
    let entry = |path: &str| {
        tree.get(Path::new(path))
            .unwrap_or_else(|| panic!("{path}"))
    };
    assert!(matches!(entry("empty"), Entry::File { bytes, .. } if bytes.is_empty()));
    assert!(
        matches!(entry("random.bin"), Entry::File { bytes, mode: 0o644 } if bytes.len() > 2 << 20)
    );
    assert!(matches!(
        entry("private.key"),
        Entry::File { mode: 0o600, .. }
    ));
    assert!(matches!(entry("run.sh"), Entry::File { mode: 0o755, .. }));
    assert!(matches!(entry("nested/deeper"), Entry::Dir { mode: 0o700 }));
    assert_eq!(
        entry("link-to-small"),
        &Entry::Symlink {
            target: PathBuf::from("small.txt")
        }
    );
    assert_eq!(
        entry("dangling-link"),
        &Entry::Symlink {
            target: PathBuf::from("does/not/exist")
        }
    );
    assert!(matches!(
        entry("ünïcödé/Grüße 日本語 ✓.txt"),
        Entry::File { .. }
    ));
}

#[test]
fn tree_differences_names_every_kind_of_difference() {
    let work = support::temp_dir("selftest-diff");
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    fs::create_dir(&a).unwrap();
    fs::create_dir(&b).unwrap();
    support::make_tree(&a);
    support::make_tree(&b);

    let mut changed = fs::read(b.join("random.bin")).unwrap();
    changed[1000] ^= 1;
    fs::write(b.join("random.bin"), changed).unwrap();
    fs::set_permissions(b.join("run.sh"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::remove_file(b.join("link-to-small")).unwrap();
    symlink("empty", b.join("link-to-small")).unwrap();
    fs::remove_file(b.join("empty")).unwrap();
    fs::write(b.join("extra"), b"").unwrap();
    fs::remove_file(b.join("small.txt")).unwrap();
    fs::create_dir(b.join("small.txt")).unwrap();
    fs::set_permissions(b.join("small.txt"), fs::Permissions::from_mode(0o755)).unwrap();

    let differences = support::tree_differences(&a, &b);
    let expected = [
        "only in a: empty (file 0644 0 bytes)",
        "link-to-small: symlink -> small.txt vs symlink -> empty",
        "random.bin: content differs (2109497 vs 2109497 bytes, first difference at offset 1000)",
        "run.sh: mode 0755 vs 0700",
        "small.txt: file 0644 29 bytes vs dir 0755",
        "only in b: extra (file 0644 0 bytes)",
    ];
    assert_eq!(differences, expected);
}

#[test]
#[should_panic(expected = "trees differ")]
fn assert_trees_equal_panics_with_the_differences() {
    let work = support::temp_dir("selftest-diff-panic");
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    fs::create_dir(&a).unwrap();
    fs::create_dir(&b).unwrap();
    fs::write(a.join("x"), b"1").unwrap();
    support::assert_trees_equal(&a, &b);
}

#[test]
fn authorized_key_escapes_quotes_in_forced_commands() {
    assert_eq!(
        AuthorizedKey::forced_command(r#"printf '%s' "$X""#).options,
        r#"command="printf '%s' \"$X\"",restrict"#
    );
    let gate = AuthorizedKey::borg_gate(Path::new("/etc/borg-gate/alice.toml")).options;
    assert_eq!(
        gate,
        format!(
            r#"command="{} --policy /etc/borg-gate/alice.toml",restrict"#,
            support::cargo_bin().display()
        )
    );
    assert!(support::cargo_bin().is_file());
}
