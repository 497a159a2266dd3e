//! `borg-gate doctor` on real files: authorized_keys lines with keys made by ssh-keygen,
//! sshd_config files that `sshd -t` accepts, real policies, real accounts from the password
//! database; and our reading of sshd_config checked against `sshd -T`.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use borg_gate::admin::{doctor, sshd_config};
use support::{CmdOutput, require, run_with_timeout};

const SSHD: &str = "/usr/sbin/sshd";
const TIMEOUT: Duration = Duration::from_secs(60);

/// A server's files in a temp dir: keys, policies, sshd configuration.
struct Server {
    dir: tempfile::TempDir,
}

impl Server {
    /// Needs root (sshd -t reads a host key and wants /run/sshd), sshd and ssh-keygen.
    fn new(label: &str) -> Option<Server> {
        support::require_root()?;
        support::require_tool(SSHD)?;
        support::require_tool("ssh-keygen")?;
        let server = Server {
            dir: support::temp_dir(label),
        };
        for sub in ["etc", "log", "repos", "sshd_config.d", "keys"] {
            fs::create_dir(server.path(sub)).unwrap();
        }
        let privsep = Path::new("/run/sshd");
        if !privsep.is_dir() {
            fs::create_dir_all(privsep).unwrap();
            fs::set_permissions(privsep, fs::Permissions::from_mode(0o755)).unwrap();
        }
        keygen(&server.path("host_key"));
        Some(server)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn text(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// A fresh client public key line (`ssh-ed25519 AAAA...`).
    fn public_key(&self, name: &str) -> String {
        let path = self.path(&format!("keys/{name}"));
        keygen(&path);
        let text = fs::read_to_string(path.with_extension("pub")).unwrap();
        text.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A policy restricted to `restrict`, auditing to `<dir>/log/audit.jsonl`.
    fn policy(&self, name: &str, restrict: &str, extra: &str, mode: u32) -> PathBuf {
        let text = format!(
            "version = 1\nname = \"{name}\"\n[client]\nallow_probe = true\n\
             [repository]\nrestrict_to_paths = [\"{restrict}\"]\n{extra}\n\
             [audit]\nfile = \"{}\"\n",
            self.text("log/audit.jsonl")
        );
        let path = self.path(&format!("etc/{name}.toml"));
        support::write_file(&path, text.as_bytes(), mode);
        path
    }

    fn gate_command(&self, policy: &Path) -> String {
        format!(
            "command=\"{} --policy {}\"",
            support::cargo_bin().display(),
            policy.display()
        )
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, text).unwrap();
        path
    }

    /// sshd_config with a host key and the given body; `sshd -t` must accept it.
    fn sshd_config(&self, name: &str, body: &str) -> PathBuf {
        let text = format!("HostKey {}\n{body}", self.text("host_key"));
        let path = self.write(name, &text);
        let mut check = Command::new(SSHD);
        check.arg("-t").arg("-f").arg(&path);
        let output = run_with_timeout(check, TIMEOUT);
        assert!(
            output.success(),
            "sshd -t refuses {}:\n{output}\n{text}",
            path.display()
        );
        path
    }

    fn clean_sshd_config(&self) -> PathBuf {
        self.write("sshd_config.d/10-locale.conf", "AcceptEnv LANG LC_*\n");
        self.sshd_config(
            "sshd_config",
            &format!(
                "ClientAliveInterval 10\nClientAliveCountMax 30\nPermitUserEnvironment no\n\
                 Include {}/*.conf\n",
                self.text("sshd_config.d")
            ),
        )
    }

    /// `borg-gate doctor` with these arguments.
    fn doctor(&self, keys: &Path, sshd_config: &Path, extra: &[&str]) -> CmdOutput {
        let mut command = Command::new(support::cargo_bin());
        command
            .arg("doctor")
            .arg("--authorized-keys")
            .arg(keys)
            .arg("--sshd-config")
            .arg(sshd_config)
            .args(extra)
            .env_clear()
            .env("PATH", support::SAFE_PATH);
        run_with_timeout(command, TIMEOUT)
    }

    /// A repository and policy for alice, and an authorized_keys file with just her gate line
    /// (owned by a uid with no account): a setup with nothing for doctor to find. The file has
    /// a comment and a blank line, as real ones do.
    fn alice_only_keys(&self) -> PathBuf {
        fs::create_dir(self.path("repos/alice")).unwrap();
        let policy = self.policy("alice", &self.text("repos/alice"), "", 0o644);
        let keys = self.write(
            "authorized_keys",
            &format!(
                "# backup keys\n\n{},restrict {} alice@laptop\n",
                self.gate_command(&policy),
                self.public_key("alice")
            ),
        );
        self.give_to_nobody_in_particular(&keys);
        keys
    }

    /// Gives the file to a uid with no account, so that no account rules apply.
    fn give_to_nobody_in_particular(&self, path: &Path) {
        let uid = (4_200_000..4_300_000)
            .find(|uid| {
                nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(*uid))
                    .ok()
                    .flatten()
                    .is_none()
            })
            .unwrap();
        nix::unistd::chown(path, Some(nix::unistd::Uid::from_raw(uid)), None).unwrap();
    }
}

fn keygen(path: &Path) {
    let mut command = Command::new("ssh-keygen");
    command
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "doctor-test", "-f"])
        .arg(path)
        .env_clear()
        .env("PATH", support::SAFE_PATH);
    run_with_timeout(command, TIMEOUT).assert_success();
}

fn lines(output: &CmdOutput) -> Vec<String> {
    output.stdout_text().lines().map(str::to_owned).collect()
}

#[track_caller]
fn assert_lines(output: &CmdOutput, expected: &[String]) {
    let actual = lines(output);
    if actual != expected {
        let missing: Vec<&String> = expected.iter().filter(|e| !actual.contains(e)).collect();
        let extra: Vec<&String> = actual.iter().filter(|a| !expected.contains(a)).collect();
        panic!(
            "doctor output differs\nmissing: {missing:#?}\nunexpected: {extra:#?}\nwhole output:\n{output}"
        );
    }
}

#[test]
fn a_clean_setup_exits_zero_and_prints_no_finding() {
    let server = require!(Server::new("doctor-clean"));
    let keys = server.alice_only_keys();
    let output = server.doctor(&keys, &server.clean_sshd_config(), &[]);
    assert_eq!(output.code(), Some(0), "{output}");
    assert_eq!(output.stdout_text(), "");
    assert!(
        output
            .stderr_text()
            .starts_with("borg-gate doctor: 0 error(s), 0 warning(s)"),
        "{output}"
    );
}

#[test]
fn every_authorized_keys_and_policy_problem_is_found_with_its_place() {
    let server = require!(Server::new("doctor-keys"));
    let d = |name: &str| server.text(name);
    fs::create_dir(server.path("repos-carol")).unwrap();
    fs::create_dir(server.path("repos/other")).unwrap();
    std::os::unix::fs::symlink(server.path("repos-carol"), server.path("link")).unwrap();
    let alice = server.policy("alice", &d("repos"), "", 0o644);
    let bob = server.policy("bob", &d("repos/bob"), "", 0o644);
    let carol = server.policy("carol", &d("link"), "", 0o644);
    let broken = server.policy(
        "broken",
        &d("repos/other"),
        "storage_quota = \"lots\"",
        0o644,
    );
    let writable = server.policy("writable", &d("repos/other"), "", 0o666);
    let missing = server.path("etc/missing.toml");
    let same_name = server.write(
        "etc/same-name.toml",
        &fs::read_to_string(server.policy("same", &d("repos/other"), "", 0o644))
            .unwrap()
            .replace("name = \"same\"", "name = \"alice\""),
    );
    let key: Vec<String> = (0..11)
        .map(|i| server.public_key(&format!("k{i}")))
        .collect();
    let gate = |policy: &Path| server.gate_command(policy);
    let text = [
        "# backup keys".to_owned(),
        format!("{},restrict {} alice", gate(&alice), key[0]),
        format!("{} {} bob", gate(&bob), key[1]),
        format!("{},restrict,pty {}", gate(&carol), key[2]),
        format!("{} admin@desk", key[3]),
        format!("{},restrict {}", gate(&broken), key[4]),
        format!("{},restrict {}", gate(&missing), key[5]),
        format!("{},restrict {}", gate(&writable), key[6]),
        format!("{},restrict {} alice-again", gate(&bob), key[0]),
        format!(
            "command=\"/usr/bin/borg serve --append-only\",{} {}",
            "no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty,no-user-rc", key[7]
        ),
        format!(
            "command=\"/usr/bin/borg serve --restrict-to-path {} --storage-quota 5X\",restrict {}",
            d("repos/dave"),
            key[8]
        ),
        format!(
            "{},restrict,permitopen=\"localhost:5432\" {}",
            gate(&same_name),
            key[9]
        ),
        format!("restrickt,{} {}", gate(&alice), key[10]),
    ]
    .join("\n");
    let keys = server.write("authorized_keys", &text);
    server.give_to_nobody_in_particular(&keys);

    // The lines are real: ssh-keygen reads a fingerprint from every one of them.
    let mut fingerprints = Command::new("ssh-keygen");
    fingerprints.arg("-l").arg("-f").arg(&keys);
    let listed = run_with_timeout(fingerprints, TIMEOUT);
    assert_eq!(listed.stdout_text().lines().count(), 12, "{listed}");

    let output = server.doctor(&keys, &server.clean_sshd_config(), &[]);
    let k = d("authorized_keys");
    let policy_file = |name: &str| d(&format!("etc/{name}.toml"));
    let expected = vec![
        format!(
            "error: {k}:3: the key lacks `restrict`, so it allows port forwarding, agent forwarding, X11 forwarding, a terminal (pty), running ~/.ssh/rc; add `restrict` after the command option (before OpenSSH 7.2: no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty,no-user-rc)"
        ),
        format!(
            "error: {k}:4: `pty` after `restrict` turns a terminal (pty) back on for a backup key; remove `pty`"
        ),
        format!(
            "error: {k}:5: this key has no forced command: it gets a shell on the account that holds the repositories, past every borg-gate policy; add command=\"/usr/local/bin/borg-gate --policy FILE\",restrict, or move the key to another account"
        ),
        format!(
            "error: {k}:9: this key is also on line 2 with another forced command (policy {}); sshd always uses line 2, so this line's command never runs; give each policy its own key and remove one of the lines",
            policy_file("alice")
        ),
        format!(
            "error: {k}:10: `borg serve` without --restrict-to-path or --restrict-to-repository: the key can reach every repository of the account; add --restrict-to-path DIR, or use `borg-gate --policy FILE` with restrict_to_paths"
        ),
        format!(
            "error: {k}:11: `/usr/bin/borg serve` would refuse to start: invalid value \"5X\" for --storage-quota: expected a size such as 50G; fix the option (see borg serve --help)"
        ),
        format!(
            "warning: {k}:12: permitopen=\"localhost:5432\" has no place on a backup key: it names what the key may forward as soon as forwarding is on; remove permitopen"
        ),
        format!(
            "error: {k}:13: sshd refuses this key: unknown key option \"restrickt\"; fix the option list (see AUTHORIZED_KEYS FILE FORMAT in sshd(8))"
        ),
        format!(
            "warning: {}: restricted path {} does not exist, so `borg init` below it fails; create it: install -d -o BACKUP-USER -m 0700 {} (BACKUP-USER: the account the keys log in to)",
            policy_file("bob"),
            d("repos/bob"),
            d("repos/bob")
        ),
        format!(
            "warning: {}: restricted path {} is a symlink: whoever can change the link moves what this key can reach; name the real directory",
            policy_file("carol"),
            d("link")
        ),
        format!(
            "error: {}:7: storage_quota \"lots\" is not a size; write a number with an optional K, M, G, T or P suffix, like \"50G\" (the gate refuses every session with this policy); fix it and run `borg-gate check-policy {}`",
            policy_file("broken"),
            policy_file("broken")
        ),
        format!(
            "error: {k}:7: policy {} does not exist, so every session with this key is refused; create it (see borg-gate-policy(5)) or fix the path in the forced command",
            policy_file("missing")
        ),
        format!(
            "error: {k}:8: policy {} is writable by group or others (mode 0666), so every session with this key is refused; run chmod go-w on it",
            policy_file("writable")
        ),
        format!(
            "warning: {k}:3: this key (policy bob) and the key on line 2 (policy alice) can both reach {}: either can read, and unless append-only delete, the other's backups; give each key its own directory in restrict_to_paths, or declare the sharing with shared_with in the policy's [repository]",
            d("repos/bob")
        ),
        format!(
            "warning: {k}:9: this key (policy bob) and the key on line 2 (policy alice) can both reach {}: either can read, and unless append-only delete, the other's backups; give each key its own directory in restrict_to_paths, or declare the sharing with shared_with in the policy's [repository]",
            d("repos/bob")
        ),
        format!(
            "warning: {k}:12: this key (policy alice) and the key on line 2 (policy alice) can both reach {}: either can read, and unless append-only delete, the other's backups; give each key its own directory in restrict_to_paths, or declare the sharing with shared_with in the policy's [repository]",
            d("repos/other")
        ),
        format!(
            "warning: {}: policy name \"alice\" is also used by {}: audit records and metrics cannot tell the two apart; give each policy its own `name`",
            d("etc/same-name.toml"),
            policy_file("alice")
        ),
    ];
    assert_lines(&output, &expected);
    assert_eq!(output.code(), Some(2), "{output}");
}

#[test]
fn the_backup_accounts_view_decides_what_it_can_read_and_write() {
    let server = require!(Server::new("doctor-account"));
    let Some(nobody) = nix::unistd::User::from_name("nobody").ok().flatten() else {
        let _: Option<()> = support::unavailable("no account named nobody");
        return;
    };
    fs::create_dir(server.path("repos/alice")).unwrap();
    let policy = server.policy(
        "alice",
        &server.text("repos/alice"),
        &format!(
            "[metrics]\ntextfile = \"{}\"",
            server.text("no-such-dir/alice.prom")
        ),
        0o600,
    );
    let keys = server.write(
        "authorized_keys",
        &format!(
            "{},restrict {}\n",
            server.gate_command(&policy),
            server.public_key("alice")
        ),
    );
    let output = server.doctor(&keys, &server.clean_sshd_config(), &["--user", "nobody"]);
    let policy_text = policy.display().to_string();
    let group = nix::unistd::Group::from_gid(nobody.gid)
        .unwrap()
        .map_or(nobody.gid.to_string(), |g| g.name);
    let mut expected = vec![
        format!(
            "error: {policy_text}: nobody cannot read policy {policy_text} (Permission denied), so every session with this key is refused; chmod 0644 {policy_text}"
        ),
        format!(
            "warning: {policy_text}: nobody cannot create repositories in {} (Permission denied), so `borg init` there fails; install -d -o nobody -g {group} -m 0700 {}",
            server.text("repos/alice"),
            server.text("repos/alice")
        ),
        format!(
            "error: {policy_text}: nobody cannot create the audit file {} in {} (Permission denied), so every session with this key is refused; install -d -o nobody -g {group} -m 0750 {}",
            server.text("log/audit.jsonl"),
            server.text("log"),
            server.text("log")
        ),
        format!(
            "warning: {policy_text}: the metrics directory {} does not exist, so the gate silently skips its metrics; install -d -o nobody -g {group} -m 0755 {}, or remove [metrics]",
            server.text("no-such-dir"),
            server.text("no-such-dir")
        ),
    ];
    let shell = nobody.shell.display().to_string();
    if shell.ends_with("nologin") || shell.ends_with("false") {
        expected.push(format!("error: /etc/passwd: the login shell of nobody is {shell}: sshd runs forced commands as `{shell} -c COMMAND`, so no backup can run; chsh -s /bin/sh nobody"));
    }
    assert_lines(&output, &expected);
    assert_eq!(output.code(), Some(2), "{output}");
}

#[test]
fn root_as_the_backup_account_and_a_rich_login_shell_are_warnings() {
    let server = require!(Server::new("doctor-root"));
    let root = nix::unistd::User::from_name("root").unwrap().unwrap();
    fs::create_dir(server.path("repos/alice")).unwrap();
    let policy = server.policy("alice", &server.text("repos/alice"), "", 0o644);
    let keys = server.write(
        "authorized_keys",
        &format!(
            "{},restrict {}\n",
            server.gate_command(&policy),
            server.public_key("alice")
        ),
    );
    // No --user: the owner of the file (root, who made it) is the account.
    let output = server.doctor(&keys, &server.clean_sshd_config(), &[]);
    let mut expected = vec![format!(
        "warning: /etc/passwd: the backup keys log in as root (uid 0): a mistake in a policy or a bug in an engine is a root compromise; use a dedicated account, e.g. `useradd --system --create-home --shell /bin/sh borg`"
    )];
    let resolved = fs::canonicalize(&root.shell).unwrap_or(root.shell.clone());
    let base = resolved.file_name().unwrap().to_string_lossy().into_owned();
    if base == "bash" {
        expected.push(format!(
            "warning: /etc/passwd: the login shell of root is {} (bash), which reads start-up files and runs before borg-gate for every key; borg's documentation suggests a minimal shell: chsh -s /bin/sh root",
            root.shell.display()
        ));
    }
    assert_lines(&output, &expected);
    assert_eq!(output.code(), Some(1), "{output}");
}

#[test]
fn sshd_config_problems_are_found_in_files_sshd_accepts() {
    let server = require!(Server::new("doctor-sshd"));
    let keys = server.alice_only_keys();
    let included = server.write(
        "sshd_config.d/10-keepalive.conf",
        "ClientAliveInterval 2m\n",
    );
    let config = server.sshd_config(
        "sshd_config",
        &format!(
            "AcceptEnv LANG LC_* LD_LIBRARY_PATH\nAcceptEnv BORG_*\nPermitUserEnvironment yes\n\
             Include {}/*.conf\nClientAliveInterval 10\nClientAliveCountMax 30\n\
             Match User backup\n    ClientAliveInterval 0\n",
            server.text("sshd_config.d")
        ),
    );
    let output = server.doctor(&keys, &config, &[]);
    let c = config.display().to_string();
    let expected = vec![
        format!(
            "warning: {}:1: a vanished client keeps its session for up to 3600 s (ClientAliveInterval 120 x ClientAliveCountMax 30), longer than the --lock-wait 600 borg suggests for clients; set `ClientAliveInterval 10` and `ClientAliveCountMax 30`, as borg's documentation suggests",
            included.display()
        ),
        format!(
            "warning: {c}:9: a Match block turns keepalives off (ClientAliveInterval 0); remove it, or set `ClientAliveInterval 10`"
        ),
        format!(
            "warning: {c}:4: PermitUserEnvironment yes lets ~/.ssh/environment and environment= options set LD_PRELOAD and friends for borg-gate itself, before it checks anything; set `PermitUserEnvironment no`; put variables for the engine in the policy's [engine] env"
        ),
        format!(
            "error: {c}:2: AcceptEnv LD_LIBRARY_PATH lets a client send LD_* variables, which the dynamic loader obeys before borg-gate runs; accept only what clients need, e.g. `AcceptEnv LANG LC_*`"
        ),
        format!(
            "warning: {c}:3: AcceptEnv BORG_* lets a client send BORG_* variables, which a plain `borg serve` forced command obeys; accept only what clients need, e.g. `AcceptEnv LANG LC_*`"
        ),
    ];
    assert_lines(&output, &expected);
    assert_eq!(output.code(), Some(2), "{output}");
}

#[test]
fn warnings_alone_exit_one_and_json_carries_every_field() {
    let server = require!(Server::new("doctor-json"));
    let keys = server.alice_only_keys();
    let config = server.sshd_config("sshd_config", "UsePAM no\n");
    let text = server.doctor(&keys, &config, &[]);
    assert_eq!(text.code(), Some(1), "{text}");
    assert_eq!(lines(&text).len(), 1);
    assert!(lines(&text)[0].starts_with(&format!(
        "warning: {}: ClientAliveInterval is 0 (off)",
        config.display()
    )));

    let json = server.doctor(&keys, &config, &["--json"]);
    assert_eq!(json.code(), Some(1), "{json}");
    let report: serde_json::Value = serde_json::from_str(&json.stdout_text()).unwrap();
    assert_eq!(report["errors"], 0);
    assert_eq!(report["warnings"], 1);
    let finding = &report["findings"][0];
    assert_eq!(finding["severity"], "warning");
    assert_eq!(finding["where"]["file"], config.display().to_string());
    assert!(finding["where"].get("line").is_none());
    assert!(
        finding["problem"]
            .as_str()
            .unwrap()
            .starts_with("ClientAliveInterval is 0")
    );
    assert!(
        finding["fix"]
            .as_str()
            .unwrap()
            .contains("ClientAliveInterval 10")
    );
}

#[test]
fn unreadable_files_are_reported_not_fatal() {
    let server = require!(Server::new("doctor-unreadable"));
    let output = server.doctor(
        &server.path("no-authorized-keys"),
        &server.path("no-sshd-config"),
        &[],
    );
    assert_lines(
        &output,
        &[
            format!(
                "error: {}: cannot read it: No such file or directory; name the backup account's file with --authorized-keys FILE or --user NAME",
                server.text("no-authorized-keys")
            ),
            format!(
                "warning: {}: cannot read it: No such file or directory; name sshd's configuration with --sshd-config FILE",
                server.text("no-sshd-config")
            ),
        ],
    );
    assert_eq!(output.code(), Some(2));
    let unknown_user = server.doctor(
        &server.path("x"),
        &server.path("y"),
        &["--user", "no-such-user-4242"],
    );
    assert_eq!(unknown_user.code(), Some(2));
    assert_eq!(
        unknown_user.stderr_text(),
        "borg-gate: there is no account named \"no-such-user-4242\"\n"
    );
}

/// What sshd itself reports as its effective global setting (`sshd -T`).
fn sshd_effective(config: &Path, keyword: &str) -> String {
    let mut command = Command::new(SSHD);
    command.arg("-T").arg("-f").arg(config);
    let output = run_with_timeout(command, TIMEOUT);
    assert!(output.success(), "{output}");
    let prefix = format!("{} ", keyword.to_ascii_lowercase());
    output
        .stdout_text()
        .lines()
        .find_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
        .unwrap_or_else(|| panic!("sshd -T printed no {keyword}:\n{output}"))
}

#[test]
fn our_reading_of_sshd_config_matches_sshd_itself() {
    let server = require!(Server::new("doctor-oracle"));
    let include = |name: &str, text: &str| {
        server.write(&format!("sshd_config.d/{name}"), text);
        format!("Include {}/{name}\n", server.text("sshd_config.d"))
    };
    let cases = [
        "ClientAliveInterval 1h30m\nClientAliveCountMax=7\n".to_owned(),
        "clientaliveinterval = 5M\nClientAliveInterval 10\n".to_owned(),
        format!(
            "{}ClientAliveInterval 10\n",
            include("first.conf", "ClientAliveInterval 45\nClientAliveCountMax 4\n")
        ),
        format!(
            "ClientAliveInterval 20\n{}",
            include("second.conf", "ClientAliveInterval 45\n")
        ),
        "ClientAliveInterval 15\nMatch User nobody\n    ClientAliveInterval 0\n    ClientAliveCountMax 9\n"
            .to_owned(),
        "ClientAliveInterval \"1m\" # keepalive\nPermitUserEnvironment LANG,TZ\n".to_owned(),
        format!(
            "{}ClientAliveInterval 25\n",
            include("match.conf", "Match User nobody\nClientAliveCountMax 8\n")
        ),
    ];
    for (index, body) in cases.iter().enumerate() {
        let config = server.sshd_config(&format!("case-{index}"), body);
        let (lines, problems) = doctor::read_sshd_config(&config).unwrap();
        assert_eq!(problems, [], "{body}");
        let interval = sshd_config::first_global_value(&lines, "ClientAliveInterval")
            .map_or(Some(0), sshd_config::parse_time);
        assert_eq!(
            interval.map(|s| s.to_string()),
            Some(sshd_effective(&config, "ClientAliveInterval")),
            "ClientAliveInterval in case {index}:\n{body}"
        );
        let count = sshd_config::first_global_value(&lines, "ClientAliveCountMax").unwrap_or("3");
        assert_eq!(
            count,
            sshd_effective(&config, "ClientAliveCountMax"),
            "ClientAliveCountMax in case {index}:\n{body}"
        );
        let environment =
            sshd_config::first_global_value(&lines, "PermitUserEnvironment").unwrap_or("no");
        assert_eq!(
            environment,
            sshd_effective(&config, "PermitUserEnvironment"),
            "PermitUserEnvironment in case {index}:\n{body}"
        );
    }
}

#[test]
fn a_read_only_key_beside_the_writer_and_declared_sharing_are_no_finding() {
    let server = require!(Server::new("doctor-sharing"));
    fs::create_dir(server.path("repos/alice")).unwrap();
    let alice = server.text("repos/alice");
    let laptop = server.policy("laptop", &alice, "append_only = true", 0o644);
    let restore = server.policy("restore", &alice, "permissions = \"read-only\"", 0o644);
    let admin = server.policy(
        "admin",
        &server.text("repos"),
        "shared_with = [\"laptop\"]",
        0o644,
    );
    let other = server.policy("other", &alice, "", 0o644);
    let line = |policy: &Path, key: &str| {
        format!(
            "{},restrict {} {key}\n",
            server.gate_command(policy),
            server.public_key(key)
        )
    };
    let clean = [
        line(&laptop, "laptop"),
        line(&restore, "restore"),
        line(&admin, "admin"),
    ]
    .concat();
    let keys = server.write("authorized_keys", &clean);
    server.give_to_nobody_in_particular(&keys);
    let output = server.doctor(&keys, &server.clean_sshd_config(), &[]);
    assert_eq!(output.code(), Some(0), "{output}");
    assert_eq!(output.stdout_text(), "");

    // A second writing key on the same directory, undeclared, is still a warning.
    let keys = server.write(
        "authorized_keys",
        &format!("{clean}{}", line(&other, "other")),
    );
    server.give_to_nobody_in_particular(&keys);
    let output = server.doctor(&keys, &server.clean_sshd_config(), &[]);
    let overlap = |line: usize, label: &str| {
        format!(
            "warning: {}:4: this key (policy other) and the key on line {line} (policy {label}) can both reach {alice}: either can read, and unless append-only delete, the other's backups; give each key its own directory in restrict_to_paths, or declare the sharing with shared_with in the policy's [repository]",
            keys.display()
        )
    };
    // admin declares its sharing with laptop, not with other.
    assert_lines(&output, &[overlap(1, "laptop"), overlap(3, "admin")]);
    assert_eq!(output.code(), Some(1));
}

#[test]
fn a_policy_with_name_needs_a_valid_name_on_every_key_line() {
    let server = require!(Server::new("doctor-names"));
    fs::create_dir(server.path("repos/alice")).unwrap();
    let fleet = server.policy(
        "fleet",
        &format!("{}/{{name}}", server.text("repos")),
        "",
        0o644,
    );
    let gate = server.gate_command(&fleet);
    let line = |suffix: &str, key: &str| {
        format!(
            "{}{suffix}\",restrict {} {key}\n",
            gate.trim_end_matches('"'),
            server.public_key(key)
        )
    };
    let keys = server.write(
        "authorized_keys",
        &[
            line(" --name alice", "alice"),
            line("", "nameless"),
            line(" --name ../etc", "escape"),
            line(" --name bob", "bob"),
        ]
        .concat(),
    );
    server.give_to_nobody_in_particular(&keys);
    let output = server.doctor(&keys, &server.clean_sshd_config(), &[]);
    let k = keys.display();
    let f = fleet.display();
    assert_lines(
        &output,
        &[
            format!(
                "error: {k}:3: the gate refuses every session of this key: --name \"../etc\" is not a key name: it contains '/'; use 1-64 letters, digits, '-', '_', '.' or '@', not starting with '.' or '-' and without \"..\""
            ),
            format!(
                "error: {k}:2: policy {f} uses {{name}}, but this forced command gives no --name, so every session with this key is refused; add --name NAME to the forced command: borg-gate --policy {f} --name NAME"
            ),
            format!(
                "warning: {f}: restricted path {} does not exist, so `borg init` below it fails; create it: install -d -o BACKUP-USER -m 0700 {} (BACKUP-USER: the account the keys log in to)",
                server.text("repos/bob"),
                server.text("repos/bob")
            ),
        ],
    );
    assert_eq!(output.code(), Some(2));
}

#[test]
fn a_program_named_without_a_path_must_be_on_sshds_path() {
    let server = require!(Server::new("doctor-relative"));
    fs::create_dir(server.path("repos/alice")).unwrap();
    let alice = server.text("repos/alice");
    let policy = server.policy("alice", &alice, "", 0o644);
    let line = |command: &str, key: &str| {
        format!(
            "command=\"{command}\",restrict {} {key}\n",
            server.public_key(key)
        )
    };
    let keys = server.write(
        "authorized_keys",
        &[
            line(&format!("borg-gate --policy {}", policy.display()), "gate"),
            line(&format!("borg serve --restrict-to-path {alice}"), "borg"),
            line(
                &format!("borg-nonexistent-4711 serve --restrict-to-path {alice}"),
                "missing",
            ),
        ]
        .concat(),
    );
    server.give_to_nobody_in_particular(&keys);
    let output = server.doctor(&keys, &server.clean_sshd_config(), &[]);
    let k = keys.display();
    let sshd_path = "/usr/local/bin:/usr/bin:/bin:/usr/games";
    let found = |program: &str| {
        sshd_path
            .split(':')
            .map(|dir| Path::new(dir).join(program))
            .find(|candidate| candidate.is_file())
    };
    let relative = |line: usize, program: &str| match found(program) {
        Some(path) => format!(
            "warning: {k}:{line}: the forced command runs {program:?} by a relative name, found through the login shell's PATH ({}); write the absolute path, e.g. /usr/local/bin/borg-gate",
            path.display()
        ),
        None => format!(
            "error: {k}:{line}: the forced command runs {program:?} by a relative name, and sshd's PATH for this account ({sshd_path}) has no such program, so every session fails with `{program}: not found`; write the absolute path, e.g. /usr/local/bin/borg-gate"
        ),
    };
    assert!(found("borg").is_some(), "Debian's borg is on sshd's PATH");
    let mut expected = vec![
        relative(1, "borg-gate"),
        relative(2, "borg"),
        relative(3, "borg-nonexistent-4711"),
    ];
    // Lines 2 and 3 both reach alice's directory, and neither is read-only.
    for (line, earlier, label) in [
        (2, 1, "borg serve"),
        (3, 1, "borg-nonexistent-4711 serve"),
        (3, 2, "borg-nonexistent-4711 serve"),
    ] {
        let earlier_label = if earlier == 1 {
            "policy alice"
        } else {
            "borg serve"
        };
        expected.push(format!(
            "warning: {k}:{line}: this key ({label}) and the key on line {earlier} ({earlier_label}) can both reach {alice}: either can read, and unless append-only delete, the other's backups; give each key its own directory in restrict_to_paths, or declare the sharing with shared_with in the policy's [repository]"
        ));
    }
    assert_lines(&output, &expected);
    assert_eq!(output.code(), Some(2));
}

#[test]
fn a_tilde_in_the_policy_path_is_read_as_the_login_shell_expands_it() {
    let server = require!(Server::new("doctor-tilde"));
    require!(support::require_tool("useradd"));
    fs::set_permissions(server.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let account = support::TestAccount::create("doctor-tilde", &server.path("home"), "/bin/sh");
    let owner = |path: &Path, uid: u32| {
        nix::unistd::chown(path, Some(nix::unistd::Uid::from_raw(uid)), None).unwrap()
    };
    fs::create_dir(server.path("repos/alice")).unwrap();
    owner(&server.path("repos/alice"), account.uid);
    owner(&server.path("log"), account.uid);
    let text =
        fs::read_to_string(server.policy("alice", &server.text("repos/alice"), "", 0o644)).unwrap();
    let in_home = account.home.join("alice.toml");
    support::write_file(&in_home, text.as_bytes(), 0o644);
    let bin = support::cargo_bin().display().to_string();
    let keys_dir = account.home.join(".ssh");
    fs::create_dir(&keys_dir).unwrap();
    let keys = server.write(
        "authorized_keys",
        &format!(
            "command=\"{bin} --policy ~/alice.toml\",restrict {} expanded\n\
             command=\"{bin} --policy=~/alice.toml\",restrict {} literal\n",
            server.public_key("expanded"),
            server.public_key("literal")
        ),
    );
    let output = server.doctor(
        &keys,
        &server.clean_sshd_config(),
        &["--user", &account.name],
    );
    // `--policy=~/x` is one word the shell leaves alone: borg-gate gets `~/x`, relative to
    // the home directory.
    assert_lines(
        &output,
        &[
            format!(
                "warning: {}:2: the policy path ~/alice.toml is relative to the account's home directory; write the absolute path, e.g. /etc/borg-gate/NAME.toml",
                keys.display()
            ),
            format!(
                "error: {}:2: policy {}/~/alice.toml does not exist, so every session with this key is refused; create it (see borg-gate-policy(5)) or fix the path in the forced command",
                keys.display(),
                account.home.display()
            ),
        ],
    );
    assert_eq!(output.code(), Some(2));
}
