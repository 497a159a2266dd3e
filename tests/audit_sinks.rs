//! Audit records tell what happened to the session: when one sink fails and the session is
//! refused because of it, the sinks that work record the refusal and its reason, not the
//! decision the gate could not carry out.
//!
//! The gate writes syslog records to `/dev/log`, a fixed path. Each test runs the real gate
//! in its own mount namespace (`unshare --mount`, root only) where `/dev/log` is missing, or
//! is the test's own datagram socket.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use support::{require, stderr};

/// The refusal every failing-sink test expects on the client's side.
const UNAUDITED: &str =
    "borg-gate: refused: this session cannot be audited (cannot write to syslog: ";

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    /// Needs root and unshare (a private mount namespace per gate run).
    fn new(label: &str) -> Option<Fixture> {
        support::require_root()?;
        support::require_tool("unshare")?;
        Some(Fixture {
            dir: support::temp_dir(label),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn policy(&self, audit: &str) -> PathBuf {
        let engine = self.path("engine.sh");
        fs::write(
            &engine,
            format!(
                "#!/bin/sh\necho ran > {}\n",
                self.path("engine-ran").display()
            ),
        )
        .unwrap();
        fs::set_permissions(&engine, fs::Permissions::from_mode(0o755)).unwrap();
        let text = format!(
            "version = 1\nname = \"sinks\"\n[engine]\nprogram = \"{}\"\n\
             [repository]\nrestrict_to_paths = [\"/srv/backup/x\"]\n[audit]\n{audit}\n",
            engine.display()
        );
        let path = self.path("policy.toml");
        support::write_file(&path, text.as_bytes(), 0o600);
        path
    }

    fn audit_file(&self) -> PathBuf {
        self.path("audit.jsonl")
    }

    fn records(&self) -> Vec<serde_json::Value> {
        support::audit_records(&self.audit_file())
    }

    fn engine_ran(&self) -> bool {
        self.path("engine-ran").exists()
    }
}

/// Runs the gate (as sshd would start it) after `setup` ran in a fresh mount namespace.
fn gate_in_namespace(setup: &str, policy: &Path, command: &str) -> Output {
    let gate = support::gate_as_sshd(policy, command);
    let mut wrapped = Command::new("unshare");
    wrapped
        .args(["--mount", "--propagation", "private", "/bin/sh", "-c"])
        .arg(format!("{setup}\nexec \"$0\" \"$@\""))
        .arg(gate.get_program())
        .args(gate.get_args())
        .env_clear()
        .stdin(std::process::Stdio::null());
    for (name, value) in gate.get_envs() {
        if let Some(value) = value {
            wrapped.env(name, value);
        }
    }
    wrapped.output().unwrap()
}

/// A namespace where /dev/log is missing or not a socket (connect fails).
const NO_SYSLOG: &str = "if [ -e /dev/log ]; then mount --bind /dev/null /dev/log; fi";

/// A namespace where /dev/log is `socket`.
fn syslog_at(socket: &Path) -> String {
    format!(
        "mount -t tmpfs tmpfs /dev && touch /dev/log && mount --bind '{}' /dev/log",
        socket.display()
    )
}

#[test]
fn without_dev_log_the_session_is_refused_and_the_file_records_the_refusal() {
    let fx = require!(Fixture::new("sinks-no-syslog"));
    let policy = fx.policy(&format!(
        "file = \"{}\"\nsyslog = true",
        fx.audit_file().display()
    ));
    let output = gate_in_namespace(NO_SYSLOG, &policy, "borg serve --info");
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).starts_with(UNAUDITED),
        "{}",
        stderr(&output)
    );
    assert_eq!(stderr(&output).lines().count(), 1);
    assert!(!fx.engine_ran());
    let records = fx.records();
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record["decision"], "error", "{record}");
    let reason = record["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("this session cannot be audited (cannot write to syslog: "),
        "{reason}"
    );
    assert_eq!(record["engine_argv"], serde_json::Value::Null);
    // What the client asked for is still on record.
    assert_eq!(record["command"], "borg serve --info");
    assert_eq!(record["options"][0]["option"], "--info");
}

#[test]
fn an_audit_file_that_cannot_be_written_refuses_and_syslog_records_the_refusal() {
    let fx = require!(Fixture::new("sinks-no-file"));
    let socket = fx.path("log");
    let syslog = UnixDatagram::bind(&socket).unwrap();
    syslog
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let missing = fx.path("no-such-dir/audit.jsonl");
    let policy = fx.policy(&format!("file = \"{}\"\nsyslog = true", missing.display()));
    let output = gate_in_namespace(&syslog_at(&socket), &policy, "borg serve");
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_eq!(
        stderr(&output),
        format!(
            "borg-gate: refused: this session cannot be audited (cannot write the audit log {}: No such file or directory)\n",
            missing.display()
        )
    );
    assert!(!fx.engine_ran());
    let mut buffer = vec![0u8; 65536];
    let length = syslog.recv(&mut buffer).expect("a syslog datagram");
    let datagram = String::from_utf8_lossy(&buffer[..length]).into_owned();
    // Severity warning (auth.warning = 36), not info: a refusal.
    let json = datagram
        .strip_prefix("<36>borg-gate[")
        .and_then(|rest| rest.split_once("]: "))
        .map(|(_, json)| json)
        .unwrap_or_else(|| panic!("not a warning-level borg-gate record: {datagram}"));
    let record: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(record["decision"], "error", "{record}");
    assert_eq!(
        record["reason"],
        format!(
            "this session cannot be audited (cannot write the audit log {}: No such file or directory)",
            missing.display()
        )
    );
    // One datagram for one session.
    syslog.set_nonblocking(true).unwrap();
    assert!(syslog.recv(&mut buffer).is_err(), "a second datagram");
}

#[test]
fn a_refused_command_keeps_its_own_reason_in_front() {
    let fx = require!(Fixture::new("sinks-reject"));
    let policy = fx.policy(&format!(
        "file = \"{}\"\nsyslog = true",
        fx.audit_file().display()
    ));
    let output = gate_in_namespace(NO_SYSLOG, &policy, "sh -c true");
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let records = fx.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["decision"], "error");
    let reason = records[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("program \"sh\" is not allowed; this key only runs `borg serve`; and this session cannot be audited (cannot write to syslog: "),
        "{reason}"
    );
}

#[test]
fn with_on_failure_continue_the_session_runs_and_the_file_says_accept() {
    let fx = require!(Fixture::new("sinks-continue"));
    let policy = fx.policy(&format!(
        "file = \"{}\"\nsyslog = true\non_failure = \"continue\"",
        fx.audit_file().display()
    ));
    let output = gate_in_namespace(NO_SYSLOG, &policy, "borg serve");
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(fx.engine_ran());
    let records = fx.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["decision"], "accept");
}

#[test]
fn when_every_sink_works_both_record_the_decision() {
    let fx = require!(Fixture::new("sinks-both"));
    let socket = fx.path("log");
    let syslog = UnixDatagram::bind(&socket).unwrap();
    syslog
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let policy = fx.policy(&format!(
        "file = \"{}\"\nsyslog = true",
        fx.audit_file().display()
    ));
    let output = gate_in_namespace(&syslog_at(&socket), &policy, "borg serve");
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(fx.engine_ran());
    let mut buffer = vec![0u8; 65536];
    let length = syslog.recv(&mut buffer).expect("a syslog datagram");
    let datagram = String::from_utf8_lossy(&buffer[..length]).into_owned();
    assert!(datagram.starts_with("<38>borg-gate["), "{datagram}");
    assert!(datagram.contains("\"decision\":\"accept\""), "{datagram}");
    assert_eq!(fx.records()[0]["decision"], "accept");
}

/// The policies in `policy-examples/` work as copied on a host without syslog: only the
/// audit directory, which a test cannot create at its real place, is moved.
#[test]
fn every_example_runs_a_session_as_copied_on_a_host_without_syslog() {
    let fx = require!(Fixture::new("sinks-examples"));
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("policy-examples");
    let mut files: Vec<PathBuf> = fs::read_dir(&examples)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 4);
    for file in &files {
        let text = fs::read_to_string(file).unwrap();
        assert!(
            text.contains("\"/var/log/borg-gate/"),
            "{} audits elsewhere; adapt this test",
            file.display()
        );
        let copy = fx.path(file.file_name().unwrap().to_str().unwrap());
        fs::write(
            &copy,
            text.replace(
                "\"/var/log/borg-gate/",
                &format!("\"{}/", fx.dir.path().display()),
            ),
        )
        .unwrap();
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o644)).unwrap();
        // With stdin closed, the engine (built-in or Debian's borg) ends at once, cleanly.
        let output = gate_in_namespace(NO_SYSLOG, &copy, "borg serve --info");
        assert!(
            output.status.success(),
            "{} as copied: {}",
            file.display(),
            stderr(&output)
        );
        // And a borg 2 client, for the examples that serve one, in a repository below the
        // example's restricted path.
        if let Some(restricted) = borg2_restricted_path(&text) {
            let command = format!("borg serve --rest --backend FILE:{restricted}/repo");
            let output = gate_in_namespace(NO_SYSLOG, &copy, &command);
            assert!(
                output.status.success(),
                "{} as copied, borg 2: {}",
                file.display(),
                stderr(&output)
            );
        }
    }
}

/// The first restricted path of a policy that serves borg 2 clients.
fn borg2_restricted_path(text: &str) -> Option<String> {
    let policy = borg_gate::policy::parse_policy(text, "example").ok()?;
    policy
        .client
        .protocols
        .contains(borg_gate::policy::Protocol::Borg2)
        .then(|| policy.repository.restrict_to_paths.first().cloned())
        .flatten()
        .map(|path| path.display().to_string())
}
