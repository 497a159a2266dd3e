//! `borg-gate audit` on real audit logs: records written by the gate itself, and a large log
//! built from such a record, checked for exact counts, a time window, and bounded memory.

mod support;

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{CmdOutput, run_with_timeout};

const TIMEOUT: Duration = Duration::from_secs(300);

struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new(label: &str) -> Site {
        Site {
            dir: support::temp_dir(label),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A policy whose engine is /bin/true, so accepted sessions end at once.
    fn policy(&self, name: &str) -> PathBuf {
        let text = format!(
            "version = 1\nname = \"{name}\"\n[engine]\nprogram = \"/bin/true\"\n\
             [client]\nallow_probe = true\n[repository]\nrestrict_to_paths = [\"/srv/{name}\"]\n\
             [audit]\nfile = \"{}\"\n",
            self.path("audit.jsonl").display()
        );
        let path = self.path(&format!("{name}.toml"));
        support::write_file(&path, text.as_bytes(), 0o600);
        path
    }

    /// One gate session, as sshd would start it.
    fn gate(&self, policy: &Path, command: &str) -> CmdOutput {
        run_with_timeout(support::gate_as_sshd(policy, command), TIMEOUT)
    }

    fn audit(&self, file: &Path, args: &[&str]) -> CmdOutput {
        let mut command = Command::new(support::cargo_bin());
        command
            .arg("audit")
            .arg(file)
            .args(args)
            .env_clear()
            .env("PATH", support::SAFE_PATH);
        run_with_timeout(command, TIMEOUT)
    }
}

fn json(output: &CmdOutput) -> serde_json::Value {
    assert!(output.success(), "{output}");
    serde_json::from_str(&output.stdout_text()).unwrap()
}

#[test]
fn summarises_records_the_gate_wrote() {
    let site = Site::new("audit-real");
    let alice = site.policy("alice");
    let bob = site.policy("bob");
    for command in [
        "borg serve --info --umask=000",
        "borg serve -p --umask 077",
        "BORG_X=1 borg serve",
        "true",
    ] {
        site.gate(&alice, command);
    }
    for command in ["sh -c id", "borg list /srv", "true"] {
        site.gate(&bob, command);
    }
    let log = site.path("audit.jsonl");
    assert_eq!(fs::read_to_string(&log).unwrap().lines().count(), 7);

    let summary = json(&site.audit(&log, &["--json"]));
    assert_eq!(summary["records"], 7);
    assert_eq!(summary["malformed"], 0);
    assert_eq!(
        summary["policies"],
        serde_json::json!([
            {"policy": "alice", "accept": 3, "reject": 0, "probe": 1, "error": 0},
            {"policy": "bob", "accept": 0, "reject": 2, "probe": 1, "error": 0},
        ])
    );
    assert_eq!(
        summary["options"],
        serde_json::json!([
            {"option": "--umask", "dropped": 2, "refused": 0},
            {"option": "-p", "dropped": 1, "refused": 0},
        ])
    );
    let refusals = summary["recent_refusals"].as_array().unwrap();
    assert_eq!(refusals.len(), 2);
    assert_eq!(refusals[0]["policy"], "bob");
    assert_eq!(
        refusals[0]["reason"],
        "program \"sh\" is not allowed; this key only runs `borg serve`"
    );
    assert_eq!(refusals[0]["command"], "sh -c id");
    assert_eq!(
        refusals[1]["reason"],
        "only `borg serve` is allowed, not `borg list`; nothing was run"
    );

    let text = site.audit(&log, &[]);
    assert!(text.success(), "{text}");
    let out = text.stdout_text();
    assert!(out.contains("7 records from "), "{out}");
    assert!(
        out.contains("  alice           3          0          1          0\n"),
        "{out}"
    );
    assert!(out.contains("  --umask          2          0\n"), "{out}");
    assert!(
        out.contains("bob  reject: program \"sh\" is not allowed"),
        "{out}"
    );
}

/// The gate's own record for `policy`, `decision` and `time`, from a template line.
fn synthetic(template: &serde_json::Value, policy: &str, decision: &str, time: &str) -> String {
    let mut record = template.clone();
    record["policy"] = policy.into();
    record["decision"] = decision.into();
    record["time"] = time.into();
    if decision == "reject" {
        record["reason"] = "program \"sh\" is not allowed; this key only runs `borg serve`".into();
    }
    record.to_string()
}

#[test]
fn a_large_log_is_counted_exactly_in_bounded_memory() {
    let site = Site::new("audit-large");
    let policy = site.policy("template");
    site.gate(&policy, "borg serve --info --umask=000 --lock-wait 7 -p");
    let template: serde_json::Value =
        serde_json::from_str(fs::read_to_string(site.path("audit.jsonl")).unwrap().trim()).unwrap();

    // ~50 MB, written as a stream so that this process stays small: a child's peak RSS
    // counts the parent's pages it was forked with.
    const LINES: usize = 60_000;
    const POLICIES: usize = 50;
    let decisions = ["accept", "accept", "accept", "reject", "probe"];
    // One record per policy and decision, split around the time.
    const TIME_MARK: &str = "@@TIME@@";
    let templates: Vec<Vec<(String, String)>> = (0..POLICIES)
        .map(|p| {
            decisions
                .iter()
                .map(|decision| {
                    let record = synthetic(&template, &format!("tenant-{p}"), decision, TIME_MARK);
                    let (before, after) = record.split_once(TIME_MARK).unwrap();
                    (before.to_owned(), after.to_owned())
                })
                .collect()
        })
        .collect();
    let base = humantime::parse_rfc3339("2026-03-01T00:00:00Z").unwrap();
    let log = site.path("large.jsonl");
    let mut writer = BufWriter::new(fs::File::create(&log).unwrap());
    let (mut accepted, mut refused, mut probed, mut malformed) = (0u64, 0u64, 0u64, 0u64);
    let mut in_window = 0u64;
    for i in 0..LINES {
        if i % 10_007 == 5 {
            writer.write_all(b"{\"v\":1,\"time\":\"broken\n").unwrap();
            malformed += 1;
            continue;
        }
        let which = i % decisions.len();
        match decisions[which] {
            "accept" => accepted += 1,
            "reject" => refused += 1,
            _ => probed += 1,
        }
        if (1_000..2_000).contains(&i) {
            in_window += 1;
        }
        let time = humantime::format_rfc3339_micros(base + Duration::from_secs(i as u64));
        let (before, after) = &templates[i % POLICIES][which];
        writeln!(writer, "{before}{time}{after}").unwrap();
    }
    writer.flush().unwrap();
    drop(writer);
    let size = fs::metadata(&log).unwrap().len() as usize;

    let output = site.audit(&log, &["--json", "--recent", "5"]);
    eprintln!(
        "audit of {LINES} lines ({size} bytes) took {:?}",
        output.elapsed
    );
    let summary = json(&output);
    assert_eq!(summary["records"], accepted + refused + probed);
    assert_eq!(summary["malformed"], malformed);
    assert_eq!(summary["totals"]["accept"], accepted);
    assert_eq!(summary["totals"]["reject"], refused);
    assert_eq!(summary["totals"]["probe"], probed);
    assert_eq!(summary["policies"].as_array().unwrap().len(), 50);
    // --umask and -p are dropped in every record; --info and --lock-wait are not.
    let every = accepted + refused + probed;
    assert_eq!(
        summary["options"],
        serde_json::json!([
            {"option": "--umask", "dropped": every, "refused": 0},
            {"option": "-p", "dropped": every, "refused": 0},
        ])
    );
    assert_eq!(summary["recent_refusals"].as_array().unwrap().len(), 5);
    let last_refusal = &summary["recent_refusals"][4];
    let last_reject_index = (0..LINES)
        .rev()
        .find(|i| i % 10_007 != 5 && decisions[i % decisions.len()] == "reject")
        .unwrap();
    assert_eq!(last_refusal["line"], last_reject_index as u64 + 1);

    // The child's peak memory stays far below the file size.
    let usage =
        nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
    let peak_bytes = usage.max_rss() as usize * 1024;
    eprintln!("peak RSS of the children so far: {peak_bytes} bytes");
    assert!(
        peak_bytes < 32 << 20 && peak_bytes < size / 2,
        "peak RSS {peak_bytes} bytes for a {size}-byte log"
    );

    let window = site.audit(
        &log,
        &[
            "--json",
            "--since",
            "2026-03-01T00:16:40Z",
            "--until",
            "2026-03-01 00:33:19",
        ],
    );
    let windowed = json(&window);
    assert_eq!(windowed["records"], in_window);
    assert_eq!(
        windowed["outside_window"].as_u64().unwrap() + in_window,
        accepted + refused + probed
    );
}

#[test]
fn unreadable_files_and_bad_times_exit_two_with_a_sentence() {
    let site = Site::new("audit-errors");
    let missing = site.audit(&site.path("nope.jsonl"), &[]);
    assert_eq!(missing.code(), Some(2));
    assert_eq!(
        missing.stderr_text(),
        format!(
            "borg-gate: cannot read {}: No such file or directory\n",
            site.path("nope.jsonl").display()
        )
    );
    fs::write(site.path("empty.jsonl"), "").unwrap();
    let bad_time = site.audit(&site.path("empty.jsonl"), &["--since", "last tuesday"]);
    assert_eq!(bad_time.code(), Some(2));
    assert!(
        bad_time
            .stderr_text()
            .starts_with("borg-gate: \"last tuesday\" is not a time; write RFC 3339"),
        "{bad_time}"
    );
    let empty = site.audit(&site.path("empty.jsonl"), &[]);
    assert!(empty.success(), "{empty}");
    assert!(empty.stdout_text().contains(": 0 records\n"));
}

/// `borg-gate audit log | head`: a reader that goes away before the output is written ends
/// the command without a panic and without a word about it (the output is incomplete: status
/// 2). The
/// pipe's read end is closed before the command starts, so every write fails at once.
#[test]
fn a_reader_that_went_away_ends_the_output_quietly() {
    let site = Site::new("audit-epipe");
    fs::write(site.path("empty.jsonl"), "").unwrap();
    let policy = site.policy("epipe");
    let commands: [Vec<std::ffi::OsString>; 3] = [
        vec!["audit".into(), site.path("empty.jsonl").into()],
        vec!["check-policy".into(), policy.into()],
        vec!["completions".into(), "bash".into()],
    ];
    for args in commands {
        let (read, write) = nix::unistd::pipe().unwrap();
        drop(read);
        let output = Command::new(support::cargo_bin())
            .args(&args)
            .stdout(std::process::Stdio::from(write))
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        for word in ["panicked", "Broken pipe", "cannot write"] {
            assert!(!stderr.contains(word), "{args:?}: {stderr}");
        }
    }
}
