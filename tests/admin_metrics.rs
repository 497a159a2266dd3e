//! The gate's Prometheus textfile, written by the real binary: exact counts under 100
//! concurrent sessions, and never a failed or delayed-without-bound session because of it.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use borg_gate::metrics::{self, Counters};
use nix::fcntl::{Flock, FlockArg};

struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new(label: &str) -> Site {
        let site = Site {
            dir: support::temp_dir(label),
        };
        fs::create_dir(site.path("metrics")).unwrap();
        site
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn textfile(&self) -> PathBuf {
        self.path("metrics/borg-gate.prom")
    }

    /// A policy whose engine is /bin/true and whose metrics go to `textfile`.
    fn policy(&self, name: &str, textfile: &Path) -> PathBuf {
        let text = format!(
            "version = 1\nname = \"{name}\"\n[engine]\nprogram = \"/bin/true\"\n\
             [client]\nallow_probe = true\n[repository]\nrestrict_to_paths = [\"/srv/{name}\"]\n\
             [audit]\nfile = \"{}\"\n[metrics]\ntextfile = \"{}\"\n",
            self.path("audit.jsonl").display(),
            textfile.display()
        );
        let path = self.path(&format!("{name}.toml"));
        support::write_file(&path, text.as_bytes(), 0o600);
        path
    }

    fn audit_lines(&self) -> usize {
        fs::read_to_string(self.path("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .count()
    }
}

fn counters(textfile: &Path) -> Counters {
    metrics::parse_textfile(&fs::read_to_string(textfile).unwrap())
}

fn sessions(counters: &Counters) -> BTreeMap<(&str, &str), u64> {
    counters
        .sessions
        .iter()
        .map(|((p, d), n)| ((p.as_str(), d.as_str()), *n))
        .collect()
}

fn dropped(counters: &Counters) -> BTreeMap<(&str, &str), u64> {
    counters
        .dropped_options
        .iter()
        .map(|((p, o), n)| ((p.as_str(), o.as_str()), *n))
        .collect()
}

#[test]
fn a_hundred_sessions_twenty_at_a_time_give_exact_counts() {
    let site = Site::new("metrics-concurrent");
    let alice = site.policy("alice", &site.textfile());
    let bob = site.policy("bob", &site.textfile());
    // 40 accepted with two dropped options, 30 refused, 30 probes, over two policies: per ten
    // sessions alice gets accepts 0 and 2, refusals 4 and 6, probe 8; bob the odd ones.
    let mut plan = Vec::new();
    for i in 0..100 {
        let policy = if i % 2 == 0 { &alice } else { &bob };
        let command = match i % 10 {
            0..=3 => "borg serve --info --umask=000 -p",
            4..=6 => "sh -c 'cat /etc/shadow'",
            _ => "true",
        };
        plan.push((policy, command));
    }
    // Twenty at a time: every update contends for the lock, yet the queue stays within the
    // gate's bounded wait (beyond it a gate drops its update rather than delay a session) even
    // with every core busy. A hundred at once can queue past it on a saturated machine.
    for wave in plan.chunks(20) {
        let children: Vec<_> = wave
            .iter()
            .map(|(policy, command)| {
                support::gate_as_sshd(policy, command)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for (child, (_, command)) in children.into_iter().zip(wave) {
            let output = child.wait_with_output().unwrap();
            let refused = command.starts_with("sh");
            assert_eq!(
                output.status.code(),
                Some(if refused { 1 } else { 0 }),
                "{command}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    assert_eq!(site.audit_lines(), 100);
    let counters = counters(&site.textfile());
    assert_eq!(
        sessions(&counters),
        BTreeMap::from([
            (("alice", "accept"), 20),
            (("alice", "reject"), 20),
            (("alice", "probe"), 10),
            (("bob", "accept"), 20),
            (("bob", "reject"), 10),
            (("bob", "probe"), 20),
        ])
    );
    assert_eq!(
        dropped(&counters),
        BTreeMap::from([
            (("alice", "--progress"), 20),
            (("alice", "--umask"), 20),
            (("bob", "--progress"), 20),
            (("bob", "--umask"), 20),
        ])
    );
    let text = fs::read_to_string(site.textfile()).unwrap();
    assert!(text.starts_with(
        "# HELP borg_gate_sessions_total Client sessions judged by borg-gate, by policy and decision (accept, reject, probe).\n# TYPE borg_gate_sessions_total counter\n"
    ));
    assert!(text.contains("borg_gate_sessions_total{policy=\"alice\",decision=\"accept\"} 20\n"));
    assert!(text.contains("# TYPE borg_gate_dropped_options_total counter\n"));
    assert!(!text.contains("000"), "option values never appear: {text}");
    let mode = fs::metadata(site.textfile()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "the collector must be able to read it");
    let mut names: Vec<String> = fs::read_dir(site.path("metrics"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["borg-gate.prom", "borg-gate.prom.lock"]);
}

#[test]
fn a_missing_metrics_directory_never_touches_the_session() {
    let site = Site::new("metrics-missing");
    let policy = site.policy("alice", &site.path("no-such-dir/x.prom"));
    let output = support::gate_as_sshd(&policy, "borg serve --umask=000")
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(output.stderr, b"", "nothing reaches the client");
    let refused = support::gate_as_sshd(&policy, "sh").output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr),
        "borg-gate: refused: program \"sh\" is not allowed; this key only runs `borg serve`\n"
    );
    assert_eq!(site.audit_lines(), 2);
    assert!(!site.path("no-such-dir").exists());
}

#[test]
fn a_held_lock_delays_the_session_boundedly_and_skips_the_count() {
    let site = Site::new("metrics-locked");
    let policy = site.policy("alice", &site.textfile());
    assert!(
        support::gate_as_sshd(&policy, "true")
            .output()
            .unwrap()
            .status
            .success()
    );
    let before = fs::read_to_string(site.textfile()).unwrap();

    let lock = fs::File::options()
        .write(true)
        .open(site.path("metrics/borg-gate.prom.lock"))
        .unwrap();
    let held = Flock::lock(lock, FlockArg::LockExclusive).unwrap();
    let started = Instant::now();
    let output = support::gate_as_sshd(&policy, "borg serve")
        .output()
        .unwrap();
    let waited = started.elapsed();
    drop(held);

    assert!(output.status.success());
    assert_eq!(output.stderr, b"");
    assert!(
        waited >= metrics::MAX_LOCK_WAIT
            && waited < metrics::MAX_LOCK_WAIT + Duration::from_secs(5),
        "waited {waited:?}"
    );
    assert_eq!(fs::read_to_string(site.textfile()).unwrap(), before);
    assert_eq!(site.audit_lines(), 2, "the session itself was audited");

    assert!(
        support::gate_as_sshd(&policy, "true")
            .output()
            .unwrap()
            .status
            .success()
    );
    let after = counters(&site.textfile());
    assert_eq!(after.sessions[&("alice".into(), "probe".into())], 2);
    assert_eq!(after.sessions[&("alice".into(), "accept".into())], 0);
}

#[test]
fn counts_survive_other_lines_and_a_corrupt_file() {
    let site = Site::new("metrics-corrupt");
    let policy = site.policy("alice", &site.textfile());
    fs::write(
        site.textfile(),
        "garbage\nborg_gate_sessions_total{policy=\"alice\",decision=\"accept\"} 41\nborg_gate_sessions_total{policy=\"x\n",
    )
    .unwrap();
    assert!(
        support::gate_as_sshd(&policy, "borg serve")
            .output()
            .unwrap()
            .status
            .success()
    );
    let counters = counters(&site.textfile());
    assert_eq!(
        sessions(&counters),
        BTreeMap::from([
            (("alice", "accept"), 42),
            (("alice", "probe"), 0),
            (("alice", "reject"), 0),
        ])
    );
    assert!(
        !fs::read_to_string(site.textfile())
            .unwrap()
            .contains("garbage")
    );
}
