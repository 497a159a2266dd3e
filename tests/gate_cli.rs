//! The gate as administrators and sshd run it: the real binary, real policy files, real
//! audit files, and a real engine executable (a small script that reports what it got).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_borg-gate");

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn audit(&self) -> PathBuf {
        self.path("audit.jsonl")
    }

    /// A policy whose engine is `engine` (an absolute path) and whose audit file is ours.
    fn policy(&self, engine: &str, extra_client: &str, extra_repository: &str) -> PathBuf {
        let text = format!(
            "version = 1\nname = \"fixture\"\n[engine]\nprogram = \"{engine}\"\nenv = {{ BORG_HOST_ID = \"gate-test\" }}\npass_env = [\"BORG_FROM_FORCED_COMMAND\"]\n\
             [client]\nallow_probe = true\nlog_levels = [\"warning\", \"info\"]\n{extra_client}\n\
             [repository]\nrestrict_to_paths = [\"/srv/backup/x\"]\numask = \"027\"\n{extra_repository}\n\
             [audit]\nfile = \"{}\"\n",
            self.audit().display()
        );
        self.write_policy("policy.toml", &text, 0o600)
    }

    fn write_policy(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    /// An engine that records its argv, environment, umask and open descriptors. The
    /// descriptors are listed first, by a child of the shell, before the shell opens pipes.
    fn recording_engine(&self) -> PathBuf {
        let report = self.path("engine-report");
        let script = format!(
            "#!/bin/sh\nls /proc/$$/fd > {report}.fds\n{{ echo \"ARGV $*\"; echo \"UMASK $(umask)\"; env | sed 's/^/ENV /'; }} > {report}\n",
            report = report.display()
        );
        let path = self.path("engine.sh");
        fs::write(&path, script).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn engine_descriptors(&self) -> Vec<i32> {
        let text = fs::read_to_string(self.path("engine-report.fds")).unwrap();
        let mut fds: Vec<i32> = text
            .split_whitespace()
            .map(|f| f.parse().unwrap())
            .collect();
        fds.sort();
        fds
    }

    fn report(&self) -> String {
        fs::read_to_string(self.path("engine-report")).unwrap_or_default()
    }

    fn audit_lines(&self) -> Vec<serde_json::Value> {
        fs::read_to_string(self.audit())
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

/// Runs the gate as sshd would: the given SSH_ORIGINAL_COMMAND, plus extra environment.
fn gate(policy: &Path, command: Option<&str>, extra_env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("--policy")
        .arg(policy)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null());
    cmd.env("SSH_CONNECTION", "192.0.2.10 50000 192.0.2.1 22");
    if let Some(command) = command {
        cmd.env("SSH_ORIGINAL_COMMAND", command);
    }
    for (name, value) in extra_env {
        cmd.env(name, value);
    }
    cmd.output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn accepted_command_execs_the_engine_with_sanitized_argv_and_audits_first() {
    let fx = Fixture::new();
    let engine = fx.recording_engine();
    let policy = fx.policy(engine.to_str().unwrap(), "", "");
    let output = gate(
        &policy,
        Some("BORG_X=1 borg serve --info --umask=000 --restrict-to-path=/"),
        &[],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let report = fx.report();
    assert!(
        report.contains(
            "ARGV serve --restrict-to-path=/srv/backup/x --umask=0027 --info --lock-wait=1\n"
        ),
        "{report}"
    );
    let audit = fx.audit_lines();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["decision"], "accept");
    assert_eq!(audit[0]["policy"], "fixture");
    assert_eq!(audit[0]["ssh_connection"], "192.0.2.10 50000 192.0.2.1 22");
    assert_eq!(audit[0]["dropped_env"], serde_json::json!(["BORG_X"]));
    let options = audit[0]["options"].as_array().unwrap();
    assert!(
        options
            .iter()
            .any(|o| o["option"] == "--umask=000" && o["action"] == "dropped"),
        "{options:?}"
    );
    assert_eq!(audit[0]["engine_argv"][1], "serve");
}

#[test]
fn engine_environment_is_built_from_empty() {
    let fx = Fixture::new();
    let engine = fx.recording_engine();
    let policy = fx.policy(engine.to_str().unwrap(), "", "");
    let hostile = [
        ("LD_PRELOAD", "/tmp/evil.so"),
        ("LD_LIBRARY_PATH", "/tmp"),
        ("BORG_PASSPHRASE", "client-set"),
        ("BORG_RSH", "evil"),
        ("PYTHONPATH", "/tmp"),
        ("BORG_FROM_FORCED_COMMAND", "admin-set"),
    ];
    let output = gate(&policy, Some("borg serve"), &hostile);
    assert!(output.status.success(), "{}", stderr(&output));
    let report = fx.report();
    let env: Vec<&str> = report
        .lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .collect();
    for forbidden in [
        "SSH_ORIGINAL_COMMAND",
        "SSH_CONNECTION",
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "BORG_PASSPHRASE",
        "BORG_RSH",
        "PYTHONPATH",
    ] {
        assert!(
            !env.iter().any(|e| e.starts_with(&format!("{forbidden}="))),
            "{forbidden} leaked: {env:?}"
        );
    }
    assert!(
        env.contains(&"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        "{env:?}"
    );
    assert!(env.contains(&"BORG_HOST_ID=gate-test"), "{env:?}");
    assert!(
        env.contains(&"BORG_FROM_FORCED_COMMAND=admin-set"),
        "{env:?}"
    );
    assert!(env.contains(&"LANG=C.UTF-8"), "{env:?}");
}

#[test]
fn engine_gets_the_policy_umask_and_only_stdio() {
    let fx = Fixture::new();
    let engine = fx.recording_engine();
    let policy = fx.policy(engine.to_str().unwrap(), "", "");
    // Hand the gate extra open descriptors, as a careless parent process might.
    let extra = fs::File::open("/etc/hostname")
        .or_else(|_| fs::File::open("/etc/passwd"))
        .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("--policy")
        .arg(&policy)
        .env_clear()
        .env("SSH_ORIGINAL_COMMAND", "borg serve")
        .stdin(Stdio::null());
    let raw = std::os::fd::AsRawFd::as_raw_fd(&extra);
    // The test process opens files without CLOEXEC only through this dup.
    let dup = nix::unistd::dup(&extra).unwrap();
    let output = cmd.output().unwrap();
    drop(dup);
    assert!(output.status.success(), "{}", stderr(&output));
    let report = fx.report();
    assert!(report.contains("UMASK 0027"), "{report}");
    let fds = fx.engine_descriptors();
    // 0, 1, 2, and the descriptor (10 or above) on which /bin/sh reads its script.
    assert!(
        fds.iter().all(|fd| *fd <= 2 || *fd >= 10),
        "engine inherited {fds:?} (extra was {raw})"
    );
    assert_eq!(&fds[..3], &[0, 1, 2]);
}

#[test]
fn refusal_prints_one_sentence_exits_1_and_is_audited() {
    let fx = Fixture::new();
    let policy = fx.policy("/bin/false", "", "");
    for (command, sentence) in [
        (
            "sh -c id",
            "borg-gate: refused: program \"sh\" is not allowed; this key only runs `borg serve`\n",
        ),
        (
            "borg list /srv",
            "borg-gate: refused: only `borg serve` is allowed, not `borg list`; nothing was run\n",
        ),
        (
            "borg serve; rm -rf /",
            "borg-gate: refused: only `borg serve` is allowed, not `borg serve;`; nothing was run\n",
        ),
    ] {
        let output = gate(&policy, Some(command), &[]);
        assert_eq!(output.status.code(), Some(1), "{command}");
        assert_eq!(stderr(&output), sentence);
        assert!(output.stdout.is_empty());
    }
    let audit = fx.audit_lines();
    assert_eq!(audit.len(), 3);
    assert!(
        audit
            .iter()
            .all(|r| r["decision"] == "reject" && r["engine_argv"].is_null())
    );
    assert_eq!(
        audit[0]["reason"],
        "program \"sh\" is not allowed; this key only runs `borg serve`"
    );
}

/// Issue 15: U+202E and friends are refused like control characters, and neither the
/// client's stderr nor the audit log (its bytes, as `jq` or a terminal would show them) holds
/// one; the audit record shows the command with the character escaped.
#[test]
fn bidirectional_and_line_separator_characters_are_refused_and_never_stored_raw() {
    let fx = Fixture::new();
    let engine = fx.recording_engine();
    let policy = fx.policy(engine.to_str().unwrap(), "", "");
    let invisible = [
        '\u{202e}', '\u{2028}', '\u{2029}', '\u{200e}', '\u{2066}', '\u{061c}',
    ];
    for c in invisible {
        let command = format!("borg serve --info{c} --append-only");
        let output = gate(&policy, Some(&command), &[]);
        assert_eq!(output.status.code(), Some(1), "{command:?}");
        let expected = format!(
            "borg-gate: refused: the command contains the {} U+{:04X} at byte 17; nothing was run\n",
            match c {
                '\u{2028}' => "line separator",
                '\u{2029}' => "paragraph separator",
                _ => "bidirectional control",
            },
            u32::from(c)
        );
        assert_eq!(stderr(&output), expected);
    }
    assert!(fx.report().is_empty(), "the engine ran: {}", fx.report());
    let bytes = fs::read_to_string(fx.audit()).unwrap();
    assert!(
        !bytes.chars().any(|c| invisible.contains(&c)),
        "raw invisible characters in the audit log: {bytes:?}"
    );
    let audit = fx.audit_lines();
    assert_eq!(audit.len(), invisible.len());
    assert_eq!(
        audit[0]["command"],
        "borg serve --info\\u{202e} --append-only"
    );
    assert!(audit.iter().all(|r| r["decision"] == "reject"));
}

#[test]
fn interactive_login_is_refused_and_audited() {
    let fx = Fixture::new();
    let policy = fx.policy("/bin/false", "", "");
    let output = gate(&policy, None, &[]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "borg-gate: refused: interactive logins are not allowed; this key only runs `borg serve`\n"
    );
    assert_eq!(fx.audit_lines()[0]["command"], serde_json::Value::Null);
}

#[test]
fn probe_exits_zero_and_is_audited() {
    let fx = Fixture::new();
    let policy = fx.policy("/bin/false", "", "");
    let output = gate(&policy, Some("true"), &[]);
    assert!(output.status.success());
    assert!(output.stderr.is_empty());
    assert_eq!(fx.audit_lines()[0]["decision"], "probe");
}

#[test]
fn missing_policy_fails_closed() {
    let fx = Fixture::new();
    let output = gate(&fx.path("nope.toml"), Some("borg serve"), &[]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        format!(
            "borg-gate: cannot read policy {}: No such file or directory; no session is allowed\n",
            fx.path("nope.toml").display()
        )
    );
}

#[test]
fn writable_or_symlinked_policy_fails_closed() {
    let fx = Fixture::new();
    let policy = fx.policy("/bin/false", "", "");
    fs::set_permissions(&policy, fs::Permissions::from_mode(0o666)).unwrap();
    let output = gate(&policy, Some("borg serve"), &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output)
            .contains("is writable by group or others (mode 0666); run chmod go-w on it"),
        "{}",
        stderr(&output)
    );
    fs::set_permissions(&policy, fs::Permissions::from_mode(0o600)).unwrap();
    let link = fx.path("link.toml");
    std::os::unix::fs::symlink(&policy, &link).unwrap();
    let output = gate(&link, Some("borg serve"), &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("is a symlink; point --policy at the file itself"),
        "{}",
        stderr(&output)
    );
    assert!(
        fx.audit_lines().is_empty(),
        "nothing may run or be logged as accepted"
    );
}

#[test]
fn invalid_policy_fails_closed_with_file_line_and_column() {
    let fx = Fixture::new();
    let policy = fx.write_policy(
        "bad.toml",
        "version = 1\n[client]\nlog_level = [\"info\"]\n",
        0o600,
    );
    let output = gate(&policy, Some("borg serve"), &[]);
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(
        text.starts_with(&format!(
            "borg-gate: invalid policy: {}:3:1: unknown field `log_level`",
            policy.display()
        )),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1, "{text}");
}

#[test]
fn unwritable_audit_log_refuses_the_session() {
    let fx = Fixture::new();
    let engine = fx.recording_engine();
    let text = format!(
        "version = 1\n[engine]\nprogram = \"{}\"\n[repository]\nrestrict_to_paths = [\"/srv\"]\n[audit]\nfile = \"{}\"\n",
        engine.display(),
        fx.path("no-such-dir/audit.jsonl").display()
    );
    let policy = fx.write_policy("p.toml", &text, 0o600);
    let output = gate(&policy, Some("borg serve"), &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).starts_with(
            "borg-gate: refused: this session cannot be audited (cannot write the audit log"
        ),
        "{}",
        stderr(&output)
    );
    assert!(
        fx.report().is_empty(),
        "the engine ran without an audit record"
    );

    let lenient = text.replace("[audit]\n", "[audit]\non_failure = \"continue\"\n");
    let policy = fx.write_policy("p2.toml", &lenient, 0o600);
    let output = gate(&policy, Some("borg serve"), &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(fx.report().contains("ARGV serve"));
}

#[test]
fn concurrent_sessions_write_intact_audit_lines() {
    let fx = Fixture::new();
    let policy = fx.policy("/bin/false", "", "");
    let children: Vec<_> = (0..200)
        .map(|i| {
            let command = format!("borg serve --debug-topic={}", "x".repeat(i % 7 * 50 + 1));
            Command::new(BIN)
                .arg("--policy")
                .arg(&policy)
                .env_clear()
                .env(
                    "SSH_ORIGINAL_COMMAND",
                    if i % 2 == 0 {
                        "true".to_owned()
                    } else {
                        command
                    },
                )
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        child.wait().unwrap();
    }
    let lines = fx.audit_lines();
    assert_eq!(lines.len(), 200);
    assert_eq!(
        lines.iter().filter(|r| r["decision"] == "probe").count(),
        100
    );
}

#[test]
fn explain_prints_the_decision_and_exits_by_it() {
    let fx = Fixture::new();
    let policy = fx.policy("/usr/bin/borg", "", "");
    let output = Command::new(BIN)
        .args(["explain", "--policy"])
        .arg(&policy)
        .args(["--command", "BORG_X=secret borg serve --info --append-only"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("decision:    accept"), "{text}");
    assert!(text.contains("dropped env: BORG_X"), "{text}");
    assert!(
        text.contains("dropped   --append-only  (the server decides this setting)"),
        "{text}"
    );
    assert!(text.contains("engine argv: /usr/bin/borg serve --restrict-to-path=/srv/backup/x --umask=0027 --info --lock-wait=1"), "{text}");
    assert!(!text.contains("secret"), "{text}");

    let output = Command::new(BIN)
        .args(["explain", "--policy"])
        .arg(&policy)
        .args(["--command", "sh"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .contains("decision:    reject: program \"sh\" is not allowed")
    );
}

#[test]
fn explain_json_is_the_audit_record_gate_mode_writes() {
    let fx = Fixture::new();
    let engine = fx.recording_engine();
    let policy = fx.policy(engine.to_str().unwrap(), "", "");
    let command = "borg serve --info --lock-wait 9999";
    let output = Command::new(BIN)
        .args(["explain", "--json", "--policy"])
        .arg(&policy)
        .args(["--command", command])
        .output()
        .unwrap();
    assert!(output.status.success());
    let mut explained: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let run = gate(&policy, Some(command), &[]);
    assert!(run.status.success());
    let mut written = fx.audit_lines().remove(0);
    for record in [&mut explained, &mut written] {
        // Each run is a session of its own, with its own id.
        for volatile in ["time", "pid", "ssh_connection", "session_id"] {
            record.as_object_mut().unwrap().remove(volatile);
        }
    }
    assert_eq!(explained, written);
    assert!(
        fx.audit_lines().len() == 1,
        "explain must not write the audit log"
    );
}

#[test]
fn check_policy_accepts_every_example() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("policy-examples");
    let mut files: Vec<PathBuf> = fs::read_dir(&examples)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 4);
    for file in &files {
        let text = fs::read_to_string(file).unwrap();
        let stem = file.file_stem().unwrap().to_str().unwrap();
        if let Err(errors) = borg_gate::policy::parse_policy(&text, stem) {
            panic!("{}: {:?}", file.display(), errors.render(file, &text));
        }
    }
    // And through the binary, as an administrator runs it (copies, so the mode is ours).
    let fx = Fixture::new();
    let copies: Vec<PathBuf> = files
        .iter()
        .map(|f| {
            fx.write_policy(
                f.file_name().unwrap().to_str().unwrap(),
                &fs::read_to_string(f).unwrap(),
                0o644,
            )
        })
        .collect();
    let output = Command::new(BIN)
        .arg("check-policy")
        .args(&copies)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|l| l.contains(": ok (policy"))
            .count(),
        files.len()
    );
}

#[test]
fn check_policy_reports_every_error_with_its_place() {
    let fx = Fixture::new();
    let bad = fx.write_policy(
        "bad.toml",
        "version = 1\n[engine]\nprogram = \"/usr/bin/borg\"\n[repository]\nrestrict_to_paths = [\"/srv\"]\npermissions = \"read-only\"\numask = \"88\"\n[audit]\nsyslog = true\n",
        0o600,
    );
    let output = Command::new(BIN)
        .arg("check-policy")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.contains(&format!(
            "{}:6:15: permissions = \"read-only\" needs the built-in engine",
            bad.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{}:7:9: umask \"88\" is not an octal mode",
            bad.display()
        )),
        "{text}"
    );
}

#[test]
fn serve_and_usage_errors_are_one_line() {
    let output = Command::new(BIN).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(stderr(&output).lines().count(), 1);
    assert!(stderr(&output).starts_with("borg-gate: "));
    let output = Command::new(BIN).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("borg-gate "));
}

impl Fixture {
    /// A policy serving `protocols`, restricted to `repos/`, whose borg 2 engine is `engine`
    /// (an absolute path, or "builtin").
    fn borg2_policy(&self, engine: &str, protocols: &str, extra_repository: &str) -> PathBuf {
        fs::create_dir_all(self.path("repos")).unwrap();
        let text = format!(
            "version = 1\nname = \"rest\"\n[engine]\nborg2_program = \"{engine}\"\n\
             [client]\nprotocols = {protocols}\n\
             [repository]\nrestrict_to_paths = [\"{}\"]\numask = \"027\"\n{extra_repository}\n\
             [audit]\nfile = \"{}\"\n",
            self.path("repos").display(),
            self.audit().display()
        );
        self.write_policy("rest.toml", &text, 0o600)
    }
}

#[test]
fn a_borg2_request_execs_the_external_borg2_with_the_resolved_repository_pinned() {
    let fx = Fixture::new();
    let engine = fx.recording_engine();
    let policy = fx.borg2_policy(
        engine.to_str().unwrap(),
        "[\"borg1\", \"borg2\"]",
        "append_only = true",
    );
    fs::create_dir(fx.path("repos/real")).unwrap();
    std::os::unix::fs::symlink(fx.path("repos/real"), fx.path("repos/alias")).unwrap();
    let requested = fx.path("repos/alias/../alias/r");
    let output = gate(
        &policy,
        Some(&format!(
            "BORG_REPO_PERMISSIONS=all borg serve --rest --backend FILE:{}",
            requested.display()
        )),
        &[],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let resolved = fx.path("repos/real/r");
    let report = fx.report();
    assert!(
        report.contains(&format!(
            "ARGV serve --rest --backend=FILE:{r} --restrict-to-repository={r} --permissions=no-delete --umask=0027 --warning\n",
            r = resolved.display()
        )),
        "{report}"
    );
    assert!(report.contains("UMASK 0027"), "{report}");
    assert!(
        !report.contains("BORG_REPO_PERMISSIONS"),
        "the client's variable reached the engine: {report}"
    );
    let audit = fx.audit_lines();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["decision"], "accept");
    assert_eq!(audit[0]["protocol"], "borg2");
    assert_eq!(audit[0]["repository"], resolved.display().to_string());
    assert_eq!(
        audit[0]["dropped_env"],
        serde_json::json!(["BORG_REPO_PERMISSIONS"])
    );
    assert_eq!(audit[0]["engine_argv"][0], engine.display().to_string());
    assert_eq!(audit[0]["engine_argv"][2], "--rest");
}

#[test]
fn a_borg1_request_under_the_same_policy_still_runs_borg1s_engine() {
    let fx = Fixture::new();
    let engine = fx.recording_engine();
    // engine.program is borg 1's; borg2_program, a recording engine too, must not be used.
    let text = format!(
        "version = 1\n[engine]\nprogram = \"{engine}\"\nborg2_program = \"/bin/false\"\n\
         [client]\nprotocols = [\"borg1\", \"borg2\"]\n[repository]\nrestrict_to_paths = [\"/srv/x\"]\n\
         [audit]\nfile = \"{}\"\n",
        fx.audit().display(),
        engine = engine.display()
    );
    let policy = fx.write_policy("both.toml", &text, 0o600);
    let output = gate(&policy, Some("borg serve --info"), &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        fx.report()
            .contains("ARGV serve --restrict-to-path=/srv/x --umask=0077 --info --lock-wait=1\n"),
        "{}",
        fx.report()
    );
    assert_eq!(fx.audit_lines()[0]["protocol"], "borg1");
}

#[test]
fn a_borg2_path_outside_the_policy_is_refused_with_83_and_audited() {
    let fx = Fixture::new();
    let engine = fx.recording_engine();
    let policy = fx.borg2_policy(engine.to_str().unwrap(), "[\"borg2\"]", "");
    fs::create_dir(fx.path("elsewhere")).unwrap();
    std::os::unix::fs::symlink(fx.path("elsewhere"), fx.path("repos/escape")).unwrap();
    fs::create_dir(fx.path("repos/open")).unwrap();
    fs::set_permissions(fx.path("repos/open"), fs::Permissions::from_mode(0o777)).unwrap();
    let cases = [
        (fx.path("elsewhere/r"), fx.path("elsewhere/r"), ""),
        (fx.path("repos/escape/r"), fx.path("elsewhere/r"), ""),
        (fx.path("repos/../elsewhere"), fx.path("elsewhere"), ""),
        (
            fx.path("repos/open/r"),
            fx.path("repos/open/r"),
            "mode 0777) could be changed by another account",
        ),
    ];
    for (requested, shown, reason) in &cases {
        let output = gate(
            &policy,
            Some(&format!(
                "borg serve --rest --backend FILE:{}",
                requested.display()
            )),
            &[],
        );
        assert_eq!(output.status.code(), Some(83), "{}", stderr(&output));
        let text = stderr(&output);
        assert!(
            text.starts_with(&format!(
                "borg-gate: refused: Repository path not allowed: {}",
                shown.display()
            )),
            "{text}"
        );
        assert!(text.contains(reason), "{text}");
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(output.stdout.is_empty());
    }
    assert!(fx.report().is_empty(), "the engine ran: {}", fx.report());
    let audit = fx.audit_lines();
    assert_eq!(audit.len(), cases.len());
    for record in &audit {
        assert_eq!(record["decision"], "reject");
        assert_eq!(record["protocol"], "borg2");
        assert!(record["engine_argv"].is_null());
        assert!(
            record["reason"]
                .as_str()
                .unwrap()
                .starts_with("Repository path not allowed: "),
            "{record}"
        );
    }
}

#[test]
fn a_backend_that_is_not_file_is_refused_with_83_whatever_the_policy_serves() {
    let fx = Fixture::new();
    let engine = fx.recording_engine();
    let borg2 = fx.borg2_policy(engine.to_str().unwrap(), "[\"borg2\"]", "");
    let borg1 = fx.policy(engine.to_str().unwrap(), "", "");
    for policy in [&borg2, &borg1] {
        let output = gate(
            policy,
            Some("borg serve --rest --backend sftp://evil.example/x"),
            &[],
        );
        assert_eq!(output.status.code(), Some(83), "{}", stderr(&output));
        assert_eq!(
            stderr(&output),
            "borg-gate: refused: backend \"sftp://evil.example/x\" is not a FILE:<path> backend; borg-gate serves borg 2 repositories only as FILE:<path>, and never connects elsewhere; nothing was run\n"
        );
    }
    assert!(fx.report().is_empty());
    let audit = fx.audit_lines();
    assert_eq!(audit.len(), 2);
    assert!(
        audit
            .iter()
            .all(|r| r["protocol"] == "borg2" && r["decision"] == "reject"),
        "{audit:?}"
    );
}

#[test]
fn a_borg2_client_is_refused_by_a_default_policy_with_one_sentence() {
    let fx = Fixture::new();
    let engine = fx.recording_engine();
    let policy = fx.policy(engine.to_str().unwrap(), "", "");
    let output = gate(
        &policy,
        Some("borg serve --rest --backend FILE:/srv/backup/x/r"),
        &[],
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "borg-gate: refused: borg 2 clients are not allowed by this key's policy; this key only runs `borg serve`\n"
    );
    assert!(fx.report().is_empty());
    assert_eq!(fx.audit_lines()[0]["protocol"], "borg2");
}

#[test]
fn relative_and_home_paths_resolve_against_the_accounts_home_not_the_environment() {
    let fx = Fixture::new();
    let engine = fx.recording_engine();
    let text = format!(
        "version = 1\n[engine]\nborg2_program = \"{}\"\n[client]\nprotocols = [\"borg2\"]\n\
         [repository]\nunrestricted = true\n[audit]\nfile = \"{}\"\n",
        engine.display(),
        fx.audit().display()
    );
    let policy = fx.write_policy("open.toml", &text, 0o600);
    let uid = nix::unistd::geteuid();
    let account = nix::unistd::User::from_uid(uid).unwrap().unwrap();
    let home = fs::canonicalize(&account.dir).unwrap_or(account.dir.clone());
    for (path, resolved) in [
        ("~/borg-gate-test-r", home.join("borg-gate-test-r")),
        ("borg-gate-test-r", home.join("borg-gate-test-r")),
        (
            &format!("~{}/x/../borg-gate-test-r", account.name),
            home.join("borg-gate-test-r"),
        ),
        ("/~/r", PathBuf::from("/~/r")),
    ] {
        let output = gate(
            &policy,
            Some(&format!("borg serve --rest --backend 'FILE:{path}'")),
            // A client-set HOME must not move `~`.
            &[("HOME", fx.path("client-home").to_str().unwrap())],
        );
        assert!(output.status.success(), "{path}: {}", stderr(&output));
        let report = fx.report();
        assert!(
            report.contains(&format!(
                "ARGV serve --rest --backend=FILE:{r} --restrict-to-repository={r} ",
                r = resolved.display()
            )),
            "{path}: {report}"
        );
    }
}

#[test]
fn explain_shows_the_protocol_and_the_resolved_repository() {
    let fx = Fixture::new();
    let policy = fx.borg2_policy("builtin", "[\"borg1\", \"borg2\"]", "idle_timeout = \"5m\"");
    let repository = fx.path("repos/r");
    let command = format!("borg serve --rest --backend FILE:{}", repository.display());
    let output = Command::new(BIN)
        .args(["explain", "--policy"])
        .arg(&policy)
        .args(["--command", &command])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8(output.stdout).unwrap();
    for line in [
        "protocol:    borg2 (`borg serve --rest`)\n".to_owned(),
        "decision:    accept\n".to_owned(),
        format!(
            "repository:  {} (resolved for the account)\n",
            repository.display()
        ),
        format!(
            "engine argv: borg-gate serve --rest --backend=FILE:{r} --restrict-to-path={} --umask=0027 --warning --idle-timeout=300s --lock-release=release --policy-name=rest --audit-file={} --session-id=",
            fx.path("repos").display(),
            fx.path("audit.jsonl").display(),
            r = repository.display()
        ),
    ] {
        assert!(text.contains(&line), "{line:?} not in\n{text}");
    }
    let output = Command::new(BIN)
        .args(["explain", "--json", "--policy"])
        .arg(&policy)
        .args(["--command", &command])
        .output()
        .unwrap();
    let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(record["protocol"], "borg2");
    assert_eq!(record["repository"], repository.display().to_string());
    assert!(fx.audit_lines().is_empty(), "explain wrote the audit log");
}

#[test]
fn check_policy_names_the_protocols_of_a_borg2_policy() {
    let fx = Fixture::new();
    let policy = fx.borg2_policy("builtin", "[\"borg1\", \"borg2\"]", "");
    let output = Command::new(BIN)
        .arg("check-policy")
        .arg(&policy)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!(
            "{}: ok (policy \"rest\", protocols borg1,borg2)\n",
            policy.display()
        )
    );
    let bad = fx.borg2_policy(
        "/opt/borg2/bin/borg",
        "[\"borg2\"]",
        "storage_quota = \"10G\"",
    );
    let output = Command::new(BIN)
        .arg("check-policy")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(&format!(
            "{}:10:17: storage_quota for borg 2 clients needs the built-in engine",
            bad.display()
        )),
        "{}",
        stderr(&output)
    );
}

#[test]
fn explain_user_resolves_a_borg2_path_for_that_account() {
    let fx = Fixture::new();
    let text = format!(
        "version = 1\n[client]\nprotocols = [\"borg2\"]\n[repository]\nunrestricted = true\n\
         [audit]\nfile = \"{}\"\n",
        fx.audit().display()
    );
    let policy = fx.write_policy("open.toml", &text, 0o644);
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    for path in ["~/r", "r", "~nobody/r"] {
        let output = Command::new(BIN)
            .args(["explain", "--json", "--user", "nobody", "--policy"])
            .arg(&policy)
            .args([
                "--command",
                &format!("borg serve --rest --backend FILE:{path}"),
            ])
            .output()
            .unwrap();
        assert!(output.status.success(), "{path}: {}", stderr(&output));
        let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            record["repository"],
            nobody.dir.join("r").display().to_string(),
            "{path}"
        );
    }
}

#[test]
fn a_fleet_policy_restricts_each_borg2_key_to_its_own_directory() {
    let fx = Fixture::new();
    let text = format!(
        "version = 1\n[client]\nprotocols = [\"borg2\"]\n[repository]\nrestrict_to_paths = [\"{}/{{name}}\"]\n\
         [audit]\nfile = \"{}\"\n",
        fx.path("srv").display(),
        fx.audit().display()
    );
    let policy = fx.write_policy("fleet.toml", &text, 0o644);
    let explain = |path: &str| {
        let output = Command::new(BIN)
            .args(["explain", "--json", "--name", "alice", "--policy"])
            .arg(&policy)
            .args([
                "--command",
                &format!(
                    "borg serve --rest --backend FILE:{}",
                    fx.path("srv").join(path).display()
                ),
            ])
            .output()
            .unwrap();
        let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        (output.status.code(), record)
    };
    let (code, record) = explain("alice/laptop");
    assert_eq!(code, Some(0), "{record}");
    assert_eq!(record["name"], "alice");
    let argv = record["engine_argv"].to_string();
    assert!(
        argv.contains(&format!(
            "\"--restrict-to-path={}\"",
            fx.path("srv/alice").display()
        )),
        "{argv}"
    );
    let (code, record) = explain("bob/laptop");
    assert_eq!(code, Some(1), "{record}");
    assert_eq!(
        record["reason"],
        format!(
            "Repository path not allowed: {}.",
            fx.path("srv/bob/laptop").display()
        )
    );
}
