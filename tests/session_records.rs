//! The engines' end-of-session records (issue 11 §1 and §3, issue 16), end to end: a real sshd
//! whose authorized_keys lines run the gate (`command="borg-gate --policy ..."`), real borg 1.2
//! and 1.4.5 clients and a borg 2.0.0b23 client, the built-in engines behind the gate. Every
//! session's `session_end` record must say how it ended and what it did, carry the gate's
//! `session_id` (so that it joins the gate's decision record), and be counted by `borg-gate
//! audit` and in the metrics textfile.
//!
//! Records are written when the engine's session is over, which may be a moment after the
//! client exits (a killed client); the tests wait for the record to appear, never for time.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use support::{AuthorizedKey, BorgClient, CmdOutput, Sshd, require, run_with_timeout};

const PASSPHRASE: &str = "session records passphrase";
/// How long a record may take to appear once its session must be over (a loaded machine).
const PATIENCE: Duration = Duration::from_secs(180);

/// The keys of the borg 1 site, in authorized_keys order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    /// Full access.
    Laptop,
    /// `permissions = "read-only"`.
    Restore,
    /// `append_only = true`.
    AppendOnly,
    /// `idle_timeout = "3s"`.
    Idle,
}

const KEYS: [Key; 4] = [Key::Laptop, Key::Restore, Key::AppendOnly, Key::Idle];

impl Key {
    fn policy(self) -> &'static str {
        match self {
            Key::Laptop => "laptop",
            Key::Restore => "restore",
            Key::AppendOnly => "append-only",
            Key::Idle => "idle",
        }
    }

    fn repository_settings(self) -> &'static str {
        match self {
            Key::Laptop => "",
            Key::Restore => "permissions = \"read-only\"",
            Key::AppendOnly => "append_only = true",
            Key::Idle => "idle_timeout = \"3s\"",
        }
    }

    fn index(self) -> usize {
        KEYS.iter().position(|key| *key == self).unwrap_or(0)
    }
}

struct Site {
    dir: tempfile::TempDir,
    sshd: Sshd,
}

impl Site {
    /// A site whose keys are `keys`, each with `(policy name, [repository] settings, protocols)`.
    fn start(label: &str, keys: &[(&str, &str, &str)]) -> Option<Site> {
        support::require_root()?;
        support::require_tool("/usr/sbin/sshd")?;
        let dir = support::temp_dir(label);
        for sub in ["repos", "source", "etc", "log"] {
            fs::create_dir(dir.path().join(sub)).unwrap();
        }
        support::make_tree(&dir.path().join("source"));
        let authorized: Vec<AuthorizedKey> = keys
            .iter()
            .map(|(name, settings, protocols)| {
                let text = format!(
                    "version = 1\nname = \"{name}\"\n[engine]\nprogram = \"builtin\"\n\
                     [client]\nprograms = [\"borg\", \"borg1\", \"borg2\"]\nprotocols = [{protocols}]\n\
                     log_levels = [\"warning\", \"info\"]\nlock_wait = {{ default = 1, max = 30 }}\n\
                     [repository]\nrestrict_to_paths = [\"{}\"]\n{settings}\n\
                     [audit]\nfile = \"{}\"\n[metrics]\ntextfile = \"{}\"\n",
                    dir.path().join("repos").display(),
                    dir.path().join("log/audit.jsonl").display(),
                    dir.path().join("log/borg-gate.prom").display(),
                );
                let path = dir.path().join(format!("etc/{name}.toml"));
                fs::write(&path, text).unwrap();
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
                AuthorizedKey::borg_gate(&path)
            })
            .collect();
        let sshd = Sshd::start(&authorized);
        Some(Site { dir, sshd })
    }

    fn borg1(label: &str) -> Option<Site> {
        let keys: Vec<(&str, &str, &str)> = KEYS
            .iter()
            .map(|key| (key.policy(), key.repository_settings(), "\"borg1\""))
            .collect();
        Site::start(label, &keys)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn repo(&self, name: &str) -> PathBuf {
        self.path("repos").join(name)
    }

    fn audit_file(&self) -> PathBuf {
        self.path("log/audit.jsonl")
    }

    fn records(&self) -> Vec<Value> {
        support::audit_records(&self.audit_file())
    }

    fn session_ends(&self) -> Vec<Value> {
        support::audit_events(&self.audit_file(), "session_end")
    }

    /// Waits until there are `count` session_end records; returns the newest.
    #[track_caller]
    fn wait_for_session_ends(&self, count: usize) -> Value {
        let ends = support::wait_for(PATIENCE, || {
            let ends = self.session_ends();
            (ends.len() >= count).then_some(ends)
        })
        .unwrap_or_else(|| {
            let ends = self.session_ends();
            panic!(
                "{count} session_end records expected, {} written:\n{ends:#?}\n--- sshd log ---\n{}",
                ends.len(),
                self.sshd.log()
            )
        });
        assert_eq!(ends.len(), count, "more records than sessions: {ends:#?}");
        ends[count - 1].clone()
    }

    /// Waits until every session the gate accepted has its engine's record; returns them.
    #[track_caller]
    fn wait_for_every_end(&self) -> Vec<Value> {
        // How many sessions the gate accepted, and the engines' records so far.
        let count = || {
            let records = self.records();
            let accepted = records
                .iter()
                .filter(|r| r["event"] == "decision" && r["decision"] == "accept")
                .count();
            let ends: Vec<Value> = records
                .into_iter()
                .filter(|r| r["event"] == "session_end")
                .collect();
            (accepted, ends)
        };
        support::wait_for(PATIENCE, || {
            let (accepted, ends) = count();
            (ends.len() >= accepted).then_some(ends)
        })
        .unwrap_or_else(|| {
            let (accepted, ends) = count();
            panic!("{accepted} sessions, {} records:\n{ends:#?}", ends.len())
        })
    }

    /// `borg <args>` through `key`, in the source directory, with borg 1's `ssh://` URL syntax
    /// substituted for `{url}` (the repository `repo`).
    #[track_caller]
    fn borg(&self, client: &BorgClient, key: Key, repo: &str, args: &[&str]) -> CmdOutput {
        let url = self.sshd.url(self.repo(repo));
        let args: Vec<String> = args.iter().map(|arg| arg.replace("{url}", &url)).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let rsh = self.sshd.rsh(key.index());
        client.run_in(
            &self.path("source"),
            &args,
            &[
                ("BORG_RSH", rsh.as_str()),
                ("BORG_DELETE_I_KNOW_WHAT_I_AM_DOING", "YES"),
            ],
            Some(PASSPHRASE),
        )
    }

    /// Like [`Site::borg`], succeeding; the session's record (the `count`th).
    #[track_caller]
    fn session(
        &self,
        client: &BorgClient,
        key: Key,
        repo: &str,
        args: &[&str],
        count: usize,
    ) -> Value {
        let output = self.borg(client, key, repo, args);
        assert!(
            output.success(),
            "{key:?} {args:?}:\n{output}\n--- sshd log ---\n{}",
            self.sshd.log()
        );
        self.wait_for_session_ends(count)
    }

    /// `borg create <repo>::<archive> -` through `key`, reading the archive from a pipe the
    /// test holds; in its own process group, so that the test can kill it with its ssh.
    fn backup_from_pipe(&self, client: &BorgClient, key: Key, repo: &str, archive: &str) -> Child {
        let url = format!("{}::{archive}", self.sshd.url(self.repo(repo)));
        let rsh = self.sshd.rsh(key.index());
        let mut command = client.command(
            &self.path("source"),
            &["create", &url, "-"],
            &[("BORG_RSH", rsh.as_str())],
            Some(PASSPHRASE),
        );
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        command.spawn().unwrap()
    }

    /// `borg-gate audit <args>` over the site's log: its standard output.
    fn audit(&self, args: &[&str]) -> String {
        let mut command = Command::new(support::cargo_bin());
        command
            .arg("audit")
            .arg(self.audit_file())
            .args(args)
            .env_clear()
            .env("PATH", support::SAFE_PATH);
        let output = run_with_timeout(command, PATIENCE);
        assert!(output.success(), "{output}");
        output.stdout_text()
    }

    /// `borg-gate audit --json` over the site's log.
    fn audit_report(&self) -> Value {
        serde_json::from_str(&self.audit(&["--json"])).unwrap()
    }

    /// The metrics textfile: series (name and labels as written) to value.
    fn metrics(&self) -> BTreeMap<String, f64> {
        let text = fs::read_to_string(self.path("log/borg-gate.prom")).unwrap();
        text.lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                Some((series.to_owned(), value.parse().ok()?))
            })
            .collect()
    }
}

fn kill_group(child: &mut Child) {
    let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
    let _ = child.wait();
}

fn count(record: &Value, field: &str) -> u64 {
    record[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {record:#}"))
}

/// The gate's decision record of the engine record's session: exactly one, accepted, same
/// policy.
#[track_caller]
fn assert_joins_its_decision(records: &[Value], end: &Value) {
    let id = end["session_id"].as_str().expect("a session_id");
    let decisions: Vec<&Value> = records
        .iter()
        .filter(|record| record["event"] == "decision" && record["session_id"] == id)
        .collect();
    assert_eq!(decisions.len(), 1, "decisions of {id}: {decisions:#?}");
    assert_eq!(decisions[0]["decision"], "accept", "{:#}", decisions[0]);
    assert_eq!(decisions[0]["policy"], end["policy"], "{end:#}");
    assert_ne!(decisions[0]["pid"], Value::Null);
}

/// What the record of a finished client's session must say whatever it did.
#[track_caller]
fn assert_clean(record: &Value, policy: &str, repository: &Path, client: &BorgClient) {
    assert_eq!(record["v"], 1, "{record:#}");
    assert_eq!(record["event"], "session_end", "{record:#}");
    assert_eq!(record["end"], "client_closed", "{record:#}");
    assert_eq!(record["policy"], policy, "{record:#}");
    assert_eq!(record["protocol"], "borg1", "{record:#}");
    assert_eq!(
        record["repository"],
        repository.display().to_string(),
        "{record:#}"
    );
    assert_eq!(record["client_version"], client.version, "{record:#}");
    assert_eq!(record["rolled_back"], false, "{record:#}");
    assert_eq!(record["refused_calls"], 0, "{record:#}");
    assert!(count(record, "bytes_received") > 0, "{record:#}");
    assert!(count(record, "bytes_sent") > 0, "{record:#}");
    assert!(record["duration_s"].as_f64().unwrap() > 0.0, "{record:#}");
    assert!(record["lock_wait_s"].as_f64().unwrap() >= 0.0, "{record:#}");
    assert!(count(record, "pid") > 0, "{record:#}");
}

/// One client's life on its own repository through the full-access key: init, create,
/// create, list, delete and compact, each session's record checked. `seen` is the number of
/// session_end records before; returns the number after.
fn laptop_life(site: &Site, client: &BorgClient, seen: usize) -> usize {
    let repo = format!("laptop-{}", client.label);
    let path = site.repo(&repo);
    let mut seen = seen;
    let mut session = |args: &[&str]| {
        seen += 1;
        let record = site.session(client, Key::Laptop, &repo, args, seen);
        assert_clean(&record, "laptop", &path, client);
        assert_eq!(record["append_only"], false, "{record:#}");
        assert_eq!(record["permissions"], "all", "{record:#}");
        record
    };
    let init = session(&["init", "--encryption", "repokey", "{url}"]);
    assert!(count(&init, "commits") >= 1, "{init:#}");
    assert!(count(&init, "transaction_id") < 10, "{init:#}");

    let first = session(&["create", "{url}::first", "."]);
    assert!(count(&first, "objects_put") > 10, "{first:#}");
    assert!(
        count(&first, "bytes_put") > 100_000,
        "the tree is larger: {first:#}"
    );
    assert!(
        count(&first, "bytes_received") > count(&first, "bytes_put"),
        "{first:#}"
    );
    assert!(count(&first, "commits") >= 1, "{first:#}");
    assert_eq!(count(&first, "objects_deleted"), 0, "{first:#}");
    let first_transaction = count(&first, "transaction_id");
    assert!(first_transaction > count(&init, "transaction_id"));

    let second = session(&["create", "{url}::second", "."]);
    assert!(
        count(&second, "objects_put") < count(&first, "objects_put"),
        "deduplicated: {second:#}"
    );
    assert!(count(&second, "transaction_id") > first_transaction);

    let list = session(&["list", "--short", "{url}"]);
    assert!(count(&list, "objects_read") >= 1, "{list:#}");
    assert_eq!(count(&list, "objects_put"), 0, "{list:#}");
    assert_eq!(count(&list, "commits"), 0, "{list:#}");
    assert_eq!(list["transaction_id"], Value::Null, "{list:#}");

    let delete = session(&["delete", "{url}::first"]);
    assert!(count(&delete, "objects_deleted") >= 1, "{delete:#}");
    assert!(count(&delete, "commits") >= 1, "{delete:#}");

    let compact = session(&["compact", "--threshold", "0", "{url}"]);
    assert!(count(&compact, "commits") >= 1, "{compact:#}");
    assert!(
        count(&compact, "compacted_segments") >= 1,
        "the deleted archive's segments: {compact:#}"
    );
    seen
}

#[test]
fn every_borg1_session_through_the_gate_leaves_a_record_that_joins_its_decision() {
    let site = require!(Site::borg1("records-life"));
    let clients = support::borg_clients();
    if support::is_ci() {
        assert_eq!(clients.len(), 2, "borg 1.2 and 1.4.5 are both needed");
    }
    let mut seen = 0;
    for client in &clients {
        seen = laptop_life(&site, client, seen);
    }
    assert!(seen >= 6);

    // Every record joins its decision, and the audit report adds them up per policy.
    let records = site.records();
    let ends = site.session_ends();
    for end in &ends {
        assert_joins_its_decision(&records, end);
    }
    let report = site.audit_report();
    let sessions = &report["sessions"];
    assert_eq!(sessions["records"], ends.len() as u64, "{report:#}");
    assert_eq!(sessions["without_decision"], 0, "{report:#}");
    assert_eq!(sessions["without_end"], 0, "{report:#}");
    let laptop = &sessions["keys"][0];
    assert_eq!(laptop["policy"], "laptop", "{report:#}");
    let sum = |field: &str| ends.iter().map(|end| count(end, field)).sum::<u64>();
    assert_eq!(laptop["sessions"], ends.len() as u64);
    assert_eq!(laptop["ends"]["client_closed"], ends.len() as u64);
    assert_eq!(laptop["bytes_added"], sum("bytes_put"), "{laptop:#}");
    assert_eq!(laptop["objects_put"], sum("objects_put"), "{laptop:#}");
    assert_eq!(
        laptop["objects_deleted"],
        sum("objects_deleted"),
        "{laptop:#}"
    );
    assert_eq!(laptop["commits"], sum("commits"), "{laptop:#}");
    assert_eq!(laptop["refused_calls"], 0, "{laptop:#}");
    assert_eq!(
        sessions["append_only_deletes"],
        serde_json::json!([]),
        "{report:#}"
    );

    // The metrics textfile has the engine's families, adding up the same records.
    let metrics = site.metrics();
    let series = |name: &str| {
        metrics
            .get(name)
            .copied()
            .unwrap_or_else(|| panic!("{name} missing from {metrics:#?}"))
    };
    let laptop = "{policy=\"laptop\"}";
    assert_eq!(
        series(&format!("borg_gate_session_bytes_received_total{laptop}")),
        sum("bytes_received") as f64
    );
    assert_eq!(
        series(&format!("borg_gate_objects_put_total{laptop}")),
        sum("objects_put") as f64
    );
    assert_eq!(
        series(&format!("borg_gate_objects_deleted_total{laptop}")),
        sum("objects_deleted") as f64
    );
    assert_eq!(
        series(&format!("borg_gate_commits_total{laptop}")),
        sum("commits") as f64
    );
    assert_eq!(
        series("borg_gate_session_end_total{policy=\"laptop\",end=\"client_closed\"}"),
        ends.len() as f64
    );
    assert_eq!(
        series("borg_gate_session_end_total{policy=\"laptop\",end=\"idle_timeout\"}"),
        0.0
    );
    assert_eq!(
        series(&format!("borg_gate_session_duration_seconds_count{laptop}")),
        ends.len() as f64
    );
    assert_eq!(
        series("borg_gate_sessions_total{policy=\"laptop\",decision=\"accept\"}"),
        ends.len() as f64
    );
    for client in &clients {
        let repository = site.repo(&format!("laptop-{}", client.label));
        let last_commit = series(&format!(
            "borg_gate_repository_last_commit_timestamp_seconds{{repository=\"{}\",policy=\"laptop\"}}",
            repository.display()
        ));
        assert!(last_commit > 1.7e9, "{last_commit}");
    }
}

#[test]
fn killed_idle_and_refused_sessions_are_recorded_with_how_they_ended() {
    let site = require!(Site::borg1("records-ends"));
    let Some(old) = support::debian_borg() else {
        return;
    };
    let Some(new) = support::borg14() else {
        return;
    };
    let mut seen = 0;
    let mut next = || {
        seen += 1;
        seen
    };
    let shared = site.repo("shared");
    site.session(
        &new,
        Key::Laptop,
        "shared",
        &["init", "--encryption", "repokey", "{url}"],
        next(),
    );
    site.session(
        &new,
        Key::Laptop,
        "shared",
        &["create", "{url}::one", "."],
        next(),
    );

    // A client killed in the middle of a backup: the engine sees the connection close.
    let mut killed = site.backup_from_pipe(&new, Key::Laptop, "shared", "killed");
    let mut input = killed.stdin.take().unwrap();
    let chunk = support::pseudo_random_bytes(7, 1 << 20);
    let lock = shared.join("lock.exclusive");
    let deadline = Instant::now() + PATIENCE;
    while !lock.exists() {
        assert!(Instant::now() < deadline, "{}", site.sshd.log());
        // Data for the client to put; the pipe's buffer is small enough for this to wait on it.
        let _ = input.write_all(&chunk);
    }
    kill_group(&mut killed);
    drop(input);
    let record = site.wait_for_session_ends(next());
    assert_eq!(record["end"], "client_closed", "{record:#}");
    assert_eq!(record["commits"], 0, "{record:#}");
    assert_eq!(
        record["rolled_back"],
        count(&record, "objects_put") > 0,
        "{record:#}"
    );
    assert_eq!(record["repository"], shared.display().to_string());

    // A client that holds the session open and sends nothing: the idle timeout ends it.
    let mut frozen = site.backup_from_pipe(&old, Key::Idle, "shared", "frozen");
    let record = site.wait_for_session_ends(next());
    kill_group(&mut frozen);
    assert_eq!(record["end"], "idle_timeout", "{record:#}");
    assert_eq!(record["policy"], "idle", "{record:#}");
    assert_eq!(record["client_version"], old.version, "{record:#}");

    // A read-only key's write: refused by the engine, counted and named.
    let refused = site.borg(&old, Key::Restore, "shared", &["create", "{url}::no", "."]);
    refused.assert_failure();
    let record = site.wait_for_session_ends(next());
    assert_eq!(record["policy"], "restore", "{record:#}");
    assert_eq!(record["permissions"], "read-only", "{record:#}");
    assert_eq!(record["end"], "error", "{record:#}");
    assert_eq!(record["error"], "PermissionDenied", "{record:#}");
    assert!(count(&record, "refused_calls") >= 1, "{record:#}");
    let refusals = record["refused"].as_array().unwrap();
    assert!(
        refusals.iter().all(|r| r["reason"] == "read-only"),
        "{record:#}"
    );
    assert_eq!(
        refusals.iter().map(|r| count(r, "count")).sum::<u64>(),
        count(&record, "refused_calls")
    );
    assert_eq!(count(&record, "objects_put"), 0, "{record:#}");

    // An append-only key deletes an archive (recoverable), then tries to delete the repository.
    let delete = site.session(
        &new,
        Key::AppendOnly,
        "shared",
        &["delete", "{url}::one"],
        next(),
    );
    assert_eq!(delete["append_only"], true, "{delete:#}");
    assert_eq!(delete["end"], "client_closed", "{delete:#}");
    assert!(count(&delete, "objects_deleted") >= 1, "{delete:#}");
    assert!(count(&delete, "commits") >= 1, "{delete:#}");
    let destroy = site.borg(
        &new,
        Key::AppendOnly,
        "shared",
        &["delete", "--force", "{url}"],
    );
    destroy.assert_failure();
    assert!(shared.join("config").exists(), "the repository survived");
    let record = site.wait_for_session_ends(next());
    assert_eq!(
        record["refused"],
        serde_json::json!([{"call": "destroy", "reason": "append-only", "count": 1}]),
        "{record:#}"
    );

    // The audit report: refused calls per key, and the append-only delete with its session.
    let records = site.records();
    let ends = site.session_ends();
    assert_eq!(ends.len(), seen);
    for end in &ends {
        assert_joins_its_decision(&records, end);
    }
    let report = site.audit_report();
    let sessions = &report["sessions"];
    assert_eq!(sessions["without_decision"], 0, "{report:#}");
    assert_eq!(sessions["without_end"], 0, "{report:#}");
    let key = |policy: &str| -> Value {
        sessions["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|key| key["policy"] == policy)
            .cloned()
            .unwrap_or_else(|| panic!("{policy} missing: {report:#}"))
    };
    assert_eq!(key("idle")["ends"]["idle_timeout"], 1, "{report:#}");
    assert_eq!(key("laptop")["ends"]["client_closed"], 3, "{report:#}");
    let restore = key("restore");
    assert_eq!(restore["ends"]["error"], 1, "{report:#}");
    assert!(count(&restore, "refused_calls") >= 1, "{report:#}");
    assert!(
        restore["refused"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["reason"] == "read-only"),
        "{report:#}"
    );
    let append_only = key("append-only");
    assert_eq!(
        append_only["refused"],
        serde_json::json!([{"call": "destroy", "reason": "append-only", "count": 1}])
    );
    let deletes = sessions["append_only_deletes"].as_array().unwrap();
    assert_eq!(deletes.len(), 1, "{report:#}");
    assert_eq!(deletes[0]["session_id"], delete["session_id"]);
    assert_eq!(deletes[0]["repository"], shared.display().to_string());
    assert_eq!(deletes[0]["objects_deleted"], delete["objects_deleted"]);
    assert!(
        deletes[0]["ssh_connection"]
            .as_str()
            .is_some_and(|c| c.starts_with("127.0.0.1 ")),
        "{report:#}"
    );

    // The text report says the same, and how to undo the deletes.
    let text = site.audit(&[]);
    let delete_id = delete["session_id"].as_str().unwrap();
    let delete_line = text
        .lines()
        .find(|line| line.ends_with(&format!("[session {delete_id}]")))
        .unwrap_or_else(|| panic!("no line for the append-only delete:\n{text}"));
    assert!(
        delete_line.contains(&format!(
            "append-only: {} objects deleted in {}",
            count(&delete, "objects_deleted"),
            shared.display()
        )),
        "{delete_line}"
    );
    assert!(delete_line.contains(" from 127.0.0.1"), "{delete_line}");
    for needle in [
        "sessions of the built-in engines per key:",
        "calls the engines refused, per key:",
        "deletes through append-only keys (newest last; recoverable, see below):",
        "(borg-gate(1), RECOVERING DELETES).",
    ] {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }
    assert!(
        text.lines()
            .any(|line| line.trim_start().starts_with("append-only")
                && line.contains("destroy")
                && line.contains("append-only")
                && line.trim_end().ends_with(" 1")),
        "{text}"
    );

    // The metrics count every end and the refusals by reason.
    let metrics = site.metrics();
    for (series, value) in [
        (
            "borg_gate_session_end_total{policy=\"idle\",end=\"idle_timeout\"}",
            1.0,
        ),
        (
            "borg_gate_session_end_total{policy=\"restore\",end=\"error\"}",
            1.0,
        ),
        (
            "borg_gate_session_end_total{policy=\"laptop\",end=\"client_closed\"}",
            3.0,
        ),
        (
            "borg_gate_append_only_objects_deleted_total{policy=\"append-only\"}",
            count(&delete, "objects_deleted") as f64,
        ),
        (
            "borg_gate_refused_calls_total{policy=\"append-only\",reason=\"append-only\"}",
            1.0,
        ),
        (
            "borg_gate_refused_calls_total{policy=\"restore\",reason=\"read-only\"}",
            count(&restore, "refused_calls") as f64,
        ),
    ] {
        assert_eq!(metrics.get(series), Some(&value), "{series}: {metrics:#?}");
    }
}

#[test]
fn a_borg2_session_through_the_gate_is_recorded_too() {
    let Some(borg2) = support::borg2_path() else {
        return;
    };
    let site = require!(Site::start("records-borg2", &[("carol", "", "\"borg2\"")]));
    let client = BorgClient::new(&borg2, "pypi");
    let url = format!(
        "rest://{}@127.0.0.1/{}",
        site.sshd.user(),
        site.repo("carol").display()
    );
    let rsh = site.sshd.rsh(0);
    let borg = |args: &[&str]| {
        let mut all = vec!["-r", url.as_str()];
        all.extend_from_slice(args);
        let output = client.run_in(
            &site.path("source"),
            &all,
            &[("BORG_RSH", rsh.as_str())],
            Some(PASSPHRASE),
        );
        assert!(output.success(), "{output}\n{}", site.sshd.log());
    };
    borg(&["repo-create", "-e", "aes256-ocb"]);
    borg(&["create", "monday", "."]);
    // A borg 2 command may open more than one connection: wait until every session the gate
    // started has its record.
    let sessions = site.wait_for_every_end();
    assert!(sessions.len() >= 2, "{sessions:#?}");
    let records = site.records();
    for end in &sessions {
        assert_joins_its_decision(&records, end);
        assert_eq!(end["protocol"], "borg2", "{end:#}");
        assert_eq!(end["policy"], "carol", "{end:#}");
        assert_eq!(end["end"], "client_closed", "{end:#}");
        assert_eq!(end["rolled_back"], false, "{end:#}");
        assert_eq!(
            end["repository"],
            site.repo("carol").display().to_string(),
            "{end:#}"
        );
        assert_eq!(count(&end["rest"], "lock_releases"), 0, "{end:#}");
        assert!(
            count(&end["rest"], "stores") >= count(end, "objects_put"),
            "{end:#}"
        );
    }
    let sum = |field: &str| sessions.iter().map(|end| count(end, field)).sum::<u64>();
    assert!(sum("objects_put") > 10, "{sessions:#?}");
    assert!(sum("bytes_put") > 2_000_000, "the tree: {sessions:#?}");
    assert_eq!(sum("commits"), 1, "one archive: {sessions:#?}");
    assert_eq!(sum("objects_deleted"), 0, "{sessions:#?}");
    let metrics = site.metrics();
    assert_eq!(
        metrics.get("borg_gate_session_end_total{policy=\"carol\",end=\"client_closed\"}"),
        Some(&(sessions.len() as f64)),
        "{metrics:#?}"
    );
    assert_eq!(
        metrics.get("borg_gate_commits_total{policy=\"carol\"}"),
        Some(&1.0),
        "{metrics:#?}"
    );
}

/// `borg-gate serve` as a forced command of its own, with `extra` reporting options, on
/// `input`.
fn serve_alone(dir: &Path, extra: &[String], input: &[u8]) -> CmdOutput {
    let mut command = Command::new(support::cargo_bin());
    command
        .arg("serve")
        .arg(format!("--restrict-to-path={}", dir.display()))
        .args(extra)
        .env_clear()
        .env("PATH", support::SAFE_PATH);
    support::run_with_stdin(command, input, PATIENCE)
}

#[test]
fn the_engine_alone_makes_its_own_session_id_and_refuses_a_sink_it_cannot_use() {
    let dir = support::temp_dir("records-alone");
    let audit = dir.path().join("audit.jsonl");
    let output = serve_alone(
        dir.path(),
        &[format!("--audit-file={}", audit.display())],
        b"",
    );
    assert!(output.success(), "{output}");
    let text = fs::read_to_string(&audit).unwrap();
    let record: Value = serde_json::from_str(text.trim_end()).unwrap();
    assert_eq!(record["end"], "client_closed", "{record:#}");
    assert_eq!(record["policy"], Value::Null, "{record:#}");
    assert_eq!(record["repository"], Value::Null, "{record:#}");
    let id = record["session_id"].as_str().unwrap();
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");

    // Garbage is an error of its own, in the record too.
    let output = serve_alone(
        dir.path(),
        &[
            format!("--audit-file={}", audit.display()),
            "--session-id=given-1".to_owned(),
        ],
        b"\xc1",
    );
    assert!(!output.success(), "{output}");
    let text = fs::read_to_string(&audit).unwrap();
    let record: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(record["session_id"], "given-1", "{record:#}");
    assert_eq!(record["end"], "error", "{record:#}");
    assert_eq!(record["error"], "ProtocolError", "{record:#}");

    // A sink that cannot be used refuses the session with one line.
    let missing = dir.path().join("missing/audit.jsonl");
    let syslog_less = [
        format!("--audit-file={}", missing.display()),
        "--session-id=refused-1".to_owned(),
    ];
    let output = serve_alone(dir.path(), &syslog_less, b"");
    assert_eq!(output.code(), Some(2), "{output}");
    let stderr = output.stderr_text();
    assert_eq!(
        stderr.trim_end(),
        format!(
            "borg-gate: serve: refused: this session cannot be audited (cannot write the audit log {}: No such file or directory)",
            missing.display()
        ),
        "{output}"
    );
    // Under on_failure = "continue" the session runs (and its end cannot be recorded).
    let mut lenient = syslog_less.to_vec();
    lenient.push("--audit-on-failure=continue".to_owned());
    let output = serve_alone(dir.path(), &lenient, b"");
    assert!(output.success(), "{output}");
    assert!(!missing.exists());
}

/// `borg-gate serve` run directly (no sshd), its stdin and stdout the test's, reporting to
/// `audit` under the session id `id`.
struct Engine {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    stdout: std::process::ChildStdout,
}

impl Engine {
    fn start(dir: &Path, audit: &Path, id: &str, extra: &[&str]) -> Engine {
        let mut child = Command::new(support::cargo_bin())
            .arg("serve")
            .arg(format!("--restrict-to-path={}", dir.display()))
            .arg(format!("--audit-file={}", audit.display()))
            .arg(format!("--session-id={id}"))
            .args(extra)
            .env_clear()
            .env("PATH", support::SAFE_PATH)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        Engine {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends one request and returns its reply.
    fn call(&mut self, msgid: u64, method: &str, args: Vec<(&str, rmpv::Value)>) -> rmpv::Value {
        let args = args
            .into_iter()
            .map(|(name, value)| (rmpv::Value::from(name), value))
            .collect();
        let message = rmpv::Value::Map(vec![
            ("i".into(), msgid.into()),
            ("m".into(), method.into()),
            ("a".into(), rmpv::Value::Map(args)),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &message).unwrap();
        self.stdin.as_mut().unwrap().write_all(&bytes).unwrap();
        rmpv::decode::read_value(&mut self.stdout).unwrap()
    }

    fn open(&mut self, repository: &Path, lock_wait: f64) -> rmpv::Value {
        let path = repository.to_str().unwrap().as_bytes().to_vec();
        self.call(
            1,
            "open",
            vec![
                ("path", rmpv::Value::Binary(path)),
                ("create", false.into()),
                ("lock_wait", lock_wait.into()),
                ("lock", true.into()),
                ("exclusive", true.into()),
                ("append_only", false.into()),
            ],
        )
    }

    /// Waits for the engine to exit (the test bounds it by the engine's own clocks, each a
    /// second or so); its exit status.
    fn wait(mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }
}

/// The record of session `id` in `audit` (the engine has exited, so it is there).
#[track_caller]
fn record_of(audit: &Path, id: &str) -> Value {
    let text = fs::read_to_string(audit).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|record| record["session_id"] == id)
        .collect();
    assert_eq!(records.len(), 1, "{text}");
    records[0].clone()
}

#[test]
fn the_server_s_own_endings_are_recorded_as_such() {
    let Some(borg) = support::debian_borg() else {
        return;
    };
    let dir = support::temp_dir("records-server-ends");
    let repository = dir.path().join("repo");
    borg.run(
        &["init", "-e", "none", repository.to_str().unwrap()],
        &[],
        None,
    )
    .assert_success();
    let audit = dir.path().join("audit.jsonl");

    // One session holds the lock; another gives up waiting for it and leaves.
    let mut holder = Engine::start(dir.path(), &audit, "holder", &[]);
    let opened = holder.open(&repository, 1.0);
    assert!(matches!(
        opened,
        rmpv::Value::Binary(_) | rmpv::Value::Map(_)
    ));
    assert!(repository.join("lock.exclusive").exists(), "{opened}");
    let mut waiter = Engine::start(dir.path(), &audit, "waiter", &[]);
    let refused = waiter.open(&repository, 0.3);
    assert!(refused.to_string().contains("LockTimeout"), "{refused}");
    waiter.stdin = None;
    assert!(waiter.wait().success());
    let record = record_of(&audit, "waiter");
    assert_eq!(record["end"], "lock_timeout", "{record:#}");
    assert!(record["lock_wait_s"].as_f64().unwrap() >= 0.2, "{record:#}");
    assert_eq!(
        record["repository"],
        repository.display().to_string(),
        "the repository it waited for: {record:#}"
    );

    // SIGTERM ends the holder's session: rolled back, the lock released, recorded.
    nix::sys::signal::kill(Pid::from_raw(holder.child.id() as i32), Signal::SIGTERM).unwrap();
    let status = holder.wait();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        None,
        "the engine ended the session itself"
    );
    assert_eq!(status.code(), Some(143));
    assert!(!repository.join("lock.exclusive").exists());
    let record = record_of(&audit, "holder");
    assert_eq!(record["end"], "signal", "{record:#}");
    assert_eq!(record["signal"], "SIGTERM", "{record:#}");
    assert_eq!(
        record["repository"],
        repository.display().to_string(),
        "{record:#}"
    );

    // A request that never completes, and a session that outlives its limit.
    let mut slow = Engine::start(dir.path(), &audit, "slow", &["--request-timeout=1s"]);
    slow.stdin
        .as_mut()
        .unwrap()
        .write_all(b"\x83\xa1i")
        .unwrap();
    slow.wait();
    assert_eq!(record_of(&audit, "slow")["end"], "request_timeout");
    let long = Engine::start(dir.path(), &audit, "long", &["--session-limit=1s"]);
    long.wait();
    assert_eq!(record_of(&audit, "long")["end"], "session_limit");
}

#[test]
fn repositories_the_engine_refuses_are_counted_and_named_in_the_record() {
    let dir = support::temp_dir("records-refused-paths");
    let audit = dir.path().join("audit.jsonl");
    let open_dir = dir.path().join("open");
    fs::create_dir(&open_dir).unwrap();
    fs::set_permissions(&open_dir, fs::Permissions::from_mode(0o777)).unwrap();
    let mut engine = Engine::start(dir.path(), &audit, "paths", &[]);
    for (repository, class) in [
        (PathBuf::from("/etc/borg-gate-records"), "PathNotAllowed"),
        (open_dir.join("repo"), "PathNotAllowed"),
        (open_dir.join("repo"), "PathNotAllowed"),
    ] {
        let reply = engine.open(&repository, 0.0);
        assert!(reply.to_string().contains(class), "{reply}");
    }
    engine.stdin = None;
    engine.wait();
    let record = record_of(&audit, "paths");
    assert_eq!(record["end"], "error", "{record:#}");
    assert_eq!(record["error"], "PathNotAllowed", "{record:#}");
    assert_eq!(record["repository"], Value::Null, "{record:#}");
    assert_eq!(record["refused_calls"], 3, "{record:#}");
    assert_eq!(
        record["refused"],
        serde_json::json!([
            {"call": "open", "reason": "path-not-allowed", "count": 1},
            {"call": "open", "reason": "untrusted-path", "count": 2},
        ]),
        "{record:#}"
    );
}
