//! Table-driven tests of the gate's decision: one client command, one policy, one expected
//! outcome. Pure (no processes, no files), so the table can be long.

use std::path::PathBuf;

use borg_gate::gate::{Action, Decision, Judgement, Repository, judge};
use borg_gate::policy::{Policy, Protocol, parse_policy};

const POLICY: &str = r#"
version = 1
name = "table"
[engine]
program = "builtin"
[client]
programs = ["borg", "borg1", "borg-1.4"]
allow_probe = true
log_levels = ["warning", "info"]
default_log_level = "warning"
debug_topics = ["borg.debug.repository*"]
lock_wait = { default = 1, max = 600 }
[repository]
restrict_to_paths = ["/srv/backup/alice"]
append_only = true
storage_quota = "50G"
umask = "077"
[audit]
file = "/var/log/borg-gate/audit.jsonl"
"#;

const FORCED: [&str; 4] = [
    "--restrict-to-path=/srv/backup/alice",
    "--append-only",
    "--storage-quota=50000000000",
    "--umask=0077",
];

fn policy() -> Policy {
    parse_policy(POLICY, "table").expect("the table policy is valid")
}

#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Accepted with this log level flag, these debug topics and this lock wait.
    Accept {
        level: &'static str,
        topics: &'static [&'static str],
        lock_wait: u32,
    },
    Probe,
    /// Refused; the reason contains this text.
    Reject(&'static str),
}

const fn accept(level: &'static str, lock_wait: u32) -> Expect {
    Expect::Accept {
        level,
        topics: &[],
        lock_wait,
    }
}

const WARN: Expect = accept("--warning", 1);
const INFO: Expect = accept("--info", 1);

/// (command, expected outcome, options expected to be dropped/clamped/replaced, by written form)
type Case = (&'static str, Expect, &'static [(&'static str, Action)]);

const CASES: &[Case] = &[
    // What borg 1.2 and 1.4 clients really send.
    ("borg serve", WARN, &[]),
    ("borg serve --info", INFO, &[]),
    ("borg serve --debug", WARN, &[("--debug", Action::Replaced)]),
    ("borg serve --error", WARN, &[("--error", Action::Replaced)]),
    (
        "borg serve --critical",
        WARN,
        &[("--critical", Action::Replaced)],
    ),
    (
        "borg serve --debug --debug-topic=borg.debug.repository",
        Expect::Accept {
            level: "--warning",
            topics: &["borg.debug.repository"],
            lock_wait: 1,
        },
        &[("--debug", Action::Replaced)],
    ),
    (
        "borg serve --info --debug-topic=borg.debug.repository.compaction",
        Expect::Accept {
            level: "--info",
            topics: &["borg.debug.repository.compaction"],
            lock_wait: 1,
        },
        &[],
    ),
    (
        "borg serve --storage-quota=20000000",
        WARN,
        &[("--storage-quota=20000000", Action::Dropped)],
    ),
    (
        "BORG_HOSTNAME_IS_UNIQUE=no borg serve --info --lock-wait 600",
        accept("--info", 600),
        &[],
    ),
    ("borg1 serve", WARN, &[]),
    ("borg-1.4 serve --info", INFO, &[]),
    ("/usr/bin/borg serve", WARN, &[]),
    ("/usr/local/bin/borg1 serve", WARN, &[]),
    // Log level spellings.
    ("borg serve -v", INFO, &[]),
    ("borg serve --verbose", INFO, &[]),
    ("borg serve --verb", INFO, &[]),
    ("borg serve --warning", WARN, &[]),
    ("borg --info serve", INFO, &[]),
    (
        "borg serve --info --warning",
        WARN,
        &[("--info", Action::Dropped)],
    ),
    (
        "borg serve --warning --info",
        INFO,
        &[("--warning", Action::Dropped)],
    ),
    ("borg serve -vv", INFO, &[("-v", Action::Dropped)]),
    // Debug topics.
    (
        "borg serve --debug-topic repository",
        Expect::Accept {
            level: "--warning",
            topics: &["borg.debug.repository"],
            lock_wait: 1,
        },
        &[],
    ),
    (
        "borg serve --debug-topic=lock",
        WARN,
        &[("--debug-topic=lock", Action::Dropped)],
    ),
    (
        "borg serve --debug-topic=../../x",
        WARN,
        &[("--debug-topic=../../x", Action::Dropped)],
    ),
    (
        "borg serve --debug-topic=borg.debug.repository/x",
        WARN,
        &[("--debug-topic=borg.debug.repository/x", Action::Dropped)],
    ),
    (
        "borg serve --debug-topic=",
        WARN,
        &[("--debug-topic=", Action::Dropped)],
    ),
    (
        "borg serve --debug-topic=repository --debug-topic=borg.debug.repository",
        Expect::Accept {
            level: "--warning",
            topics: &["borg.debug.repository"],
            lock_wait: 1,
        },
        &[],
    ),
    (
        "borg serve --debug-topic",
        Expect::Reject("option --debug-topic needs a value"),
        &[],
    ),
    // Lock wait.
    ("borg serve --lock-wait 5", accept("--warning", 5), &[]),
    ("borg serve --lock-wait=0", accept("--warning", 0), &[]),
    ("borg serve --lock-wait=600", accept("--warning", 600), &[]),
    (
        "borg serve --lock-wait=601",
        accept("--warning", 600),
        &[("--lock-wait=601", Action::Clamped)],
    ),
    (
        "borg serve --lock-wait 99999999",
        accept("--warning", 600),
        &[("--lock-wait 99999999", Action::Clamped)],
    ),
    (
        "borg serve --lock-wait 99999999999999999999999",
        WARN,
        &[("--lock-wait 99999999999999999999999", Action::Dropped)],
    ),
    (
        "borg serve --lock-wait=-1",
        WARN,
        &[("--lock-wait=-1", Action::Dropped)],
    ),
    (
        "borg serve --lock-wait -1",
        WARN,
        &[("--lock-wait -1", Action::Dropped)],
    ),
    (
        "borg serve --lock-wait=abc",
        WARN,
        &[("--lock-wait=abc", Action::Dropped)],
    ),
    (
        "borg serve --lock-wait=1.5",
        WARN,
        &[("--lock-wait=1.5", Action::Dropped)],
    ),
    (
        "borg serve --lock-wait=",
        WARN,
        &[("--lock-wait=", Action::Dropped)],
    ),
    ("borg serve --lock=7", accept("--warning", 7), &[]),
    (
        "borg serve --lock-wait 5 --lock-wait 9",
        accept("--warning", 9),
        &[],
    ),
    (
        "borg serve --lock-wait",
        Expect::Reject("option --lock-wait needs a value"),
        &[],
    ),
    // Forced settings a client tries to set: dropped, as borg does.
    (
        "borg serve --restrict-to-path=/",
        WARN,
        &[("--restrict-to-path=/", Action::Dropped)],
    ),
    (
        "borg serve --restrict-to-path /",
        WARN,
        &[("--restrict-to-path /", Action::Dropped)],
    ),
    (
        "borg serve --restrict-to-repository=/srv",
        WARN,
        &[("--restrict-to-repository=/srv", Action::Dropped)],
    ),
    (
        "borg serve --restrict-to-p=/",
        WARN,
        &[("--restrict-to-p=/", Action::Dropped)],
    ),
    (
        "borg serve --append-only",
        WARN,
        &[("--append-only", Action::Dropped)],
    ),
    (
        "borg serve --append",
        WARN,
        &[("--append", Action::Dropped)],
    ),
    (
        "borg serve --storage-quota 1T",
        WARN,
        &[("--storage-quota 1T", Action::Dropped)],
    ),
    (
        "borg serve --umask=000",
        WARN,
        &[("--umask=000", Action::Dropped)],
    ),
    (
        "borg serve --umask 000",
        WARN,
        &[("--umask 000", Action::Dropped)],
    ),
    (
        "borg --umask=000 serve",
        WARN,
        &[("--umask=000", Action::Dropped)],
    ),
    (
        "borg serve --append-only=0",
        Expect::Reject("option --append-only=0 takes no value"),
        &[],
    ),
    ("borg serve --restrict", Expect::Reject("is ambiguous"), &[]),
    ("borg serve --re=/", Expect::Reject("is ambiguous"), &[]),
    // Inert common options and engine extensions a client must not reach.
    (
        "borg serve --progress --show-rc --log-json --iec",
        WARN,
        &[
            ("--progress", Action::Dropped),
            ("--show-rc", Action::Dropped),
        ],
    ),
    ("borg serve -p", WARN, &[("-p", Action::Dropped)]),
    (
        "borg serve --remote-path=/bin/sh",
        WARN,
        &[("--remote-path=/bin/sh", Action::Dropped)],
    ),
    (
        "borg serve --rsh 'sh -c id'",
        WARN,
        &[("--rsh sh -c id", Action::Dropped)],
    ),
    (
        "borg serve --bypass-lock",
        WARN,
        &[("--bypass-lock", Action::Dropped)],
    ),
    ("borg serve --help", WARN, &[("--help", Action::Dropped)]),
    ("borg -V serve", WARN, &[("-V", Action::Dropped)]),
    (
        "borg serve --permissions=all",
        WARN,
        &[("--permissions=all", Action::Dropped)],
    ),
    (
        "borg serve --max-lock-wait=99999",
        WARN,
        &[("--max-lock-wait=99999", Action::Dropped)],
    ),
    (
        "borg serve --idle-timeout=0",
        WARN,
        &[("--idle-timeout=0", Action::Dropped)],
    ),
    ("borg serve --foo", WARN, &[("--foo", Action::Dropped)]),
    (
        "borg serve --foo=bar",
        WARN,
        &[("--foo=bar", Action::Dropped)],
    ),
    ("borg serve -x", WARN, &[("-x", Action::Dropped)]),
    (
        "borg serve -vx",
        Expect::Reject("option -v takes no value"),
        &[],
    ),
    // The terminator.
    ("borg serve --", WARN, &[]),
    ("borg serve --info --", INFO, &[]),
    (
        "borg serve -- --append-only",
        Expect::Reject("unexpected argument \"--append-only\""),
        &[],
    ),
    // Shell syntax is just words, and stray words are refused.
    (
        "borg serve; rm -rf /",
        Expect::Reject("not `borg serve;`"),
        &[],
    ),
    (
        "borg serve && id",
        Expect::Reject("unexpected argument \"&&\""),
        &[],
    ),
    (
        "borg serve || id",
        Expect::Reject("unexpected argument \"||\""),
        &[],
    ),
    (
        "borg serve | sh",
        Expect::Reject("unexpected argument \"|\""),
        &[],
    ),
    (
        "borg serve $(id)",
        Expect::Reject("unexpected argument \"$(id)\""),
        &[],
    ),
    (
        "borg serve `id`",
        Expect::Reject("unexpected argument \"`id`\""),
        &[],
    ),
    (
        "borg serve > /etc/passwd",
        Expect::Reject("unexpected argument \">\""),
        &[],
    ),
    (
        "borg serve &",
        Expect::Reject("unexpected argument \"&\""),
        &[],
    ),
    (
        "borg 'serve;id'",
        Expect::Reject("not `borg serve;id`"),
        &[],
    ),
    (
        "borg serve --info 'x y'",
        Expect::Reject("unexpected argument \"x y\""),
        &[],
    ),
    (
        "borg serve '--lock-wait 5'",
        Expect::Reject("unexpected argument \"--lock-wait 5\""),
        &[],
    ),
    // Quoting and escapes produce the same words a shell would.
    ("'borg' \"serve\" '--info'", INFO, &[]),
    ("bo\\rg se\\rve", WARN, &[]),
    ("borg serve --lock-wait '5'", accept("--warning", 5), &[]),
    // Other programs and subcommands.
    ("sh", Expect::Reject("program \"sh\" is not allowed"), &[]),
    (
        "/bin/sh -c 'borg serve'",
        Expect::Reject("program \"/bin/sh\" is not allowed"),
        &[],
    ),
    (
        "bash -i",
        Expect::Reject("program \"bash\" is not allowed"),
        &[],
    ),
    (
        "scp -t /tmp",
        Expect::Reject("program \"scp\" is not allowed"),
        &[],
    ),
    (
        "rsync --server . /",
        Expect::Reject("program \"rsync\" is not allowed"),
        &[],
    ),
    (
        "internal-sftp",
        Expect::Reject("program \"internal-sftp\" is not allowed"),
        &[],
    ),
    (
        "env BORG_X=1 borg serve",
        Expect::Reject("program \"env\" is not allowed"),
        &[],
    ),
    (
        "borgx serve",
        Expect::Reject("program \"borgx\" is not allowed"),
        &[],
    ),
    (
        "/tmp/evil/borg2 serve",
        Expect::Reject("program \"/tmp/evil/borg2\" is not allowed"),
        &[],
    ),
    ("borg list", Expect::Reject("not `borg list`"), &[]),
    (
        "borg init -e none /x",
        Expect::Reject("not `borg init`"),
        &[],
    ),
    ("borg", Expect::Reject("names no borg subcommand"), &[]),
    (
        "borg --info",
        Expect::Reject("names no borg subcommand"),
        &[],
    ),
    (
        "borg serve serve",
        Expect::Reject("unexpected argument \"serve\""),
        &[],
    ),
    ("borg Serve", Expect::Reject("not `borg Serve`"), &[]),
    // Leading assignments are dropped, never interpreted.
    ("BORG_RSH=x borg serve", WARN, &[]),
    ("LD_PRELOAD=/tmp/x.so borg serve", WARN, &[]),
    ("A=1 B=2 borg serve --info", INFO, &[]),
    ("BORG_PASSPHRASE='a secret' borg serve", WARN, &[]),
    ("PATH=/tmp:$PATH borg serve", WARN, &[]),
    ("X=1", Expect::Reject("only sets variables"), &[]),
    (
        "1X=1 borg serve",
        Expect::Reject("program \"1X=1\" is not allowed"),
        &[],
    ),
    (
        "--lock-wait=5 borg serve",
        Expect::Reject("program \"--lock-wait=5\" is not allowed"),
        &[],
    ),
    // The probe.
    ("true", Expect::Probe, &[]),
    ("/bin/true", Expect::Probe, &[]),
    (
        "true; rm -rf /",
        Expect::Reject("program \"true;\" is not allowed"),
        &[],
    ),
    (
        "true x",
        Expect::Reject("program \"true\" is not allowed"),
        &[],
    ),
    // Unreadable input.
    (
        "borg serve\n",
        Expect::Reject("control character 0x0a"),
        &[],
    ),
    (
        "borg serve\nrm -rf /",
        Expect::Reject("control character 0x0a"),
        &[],
    ),
    ("borg\0serve", Expect::Reject("control character 0x00"), &[]),
    (
        "borg serve\r",
        Expect::Reject("control character 0x0d"),
        &[],
    ),
    (
        "borg serve \u{1b}[2J",
        Expect::Reject("control character 0x1b"),
        &[],
    ),
    // Bidirectional controls and line separators are refused like control characters
    // (issue 15): stored or printed, they make a line read differently from what it holds.
    (
        "borg serve --info\u{202e}",
        Expect::Reject("bidirectional control U+202E at byte 17"),
        &[],
    ),
    (
        "borg serve\u{2028}--append-only",
        Expect::Reject("line separator U+2028 at byte 10"),
        &[],
    ),
    (
        "borg serve \u{2029}",
        Expect::Reject("paragraph separator U+2029"),
        &[],
    ),
    (
        "borg serve --debug-topic=\u{200e}repository",
        Expect::Reject("bidirectional control U+200E"),
        &[],
    ),
    (
        "borg serve --debug-topic=repository\u{200f}",
        Expect::Reject("bidirectional control U+200F"),
        &[],
    ),
    (
        "\u{061c}borg serve",
        Expect::Reject("bidirectional control U+061C at byte 0"),
        &[],
    ),
    (
        "borg serve '\u{2066}--info\u{2069}'",
        Expect::Reject("bidirectional control U+2066"),
        &[],
    ),
    ("borg serve \u{2067}", Expect::Reject("U+2067"), &[]),
    ("borg serve \u{2068}", Expect::Reject("U+2068"), &[]),
    ("borg serve \u{2069}", Expect::Reject("U+2069"), &[]),
    ("borg\u{202a} serve", Expect::Reject("U+202A"), &[]),
    ("borg\u{202b} serve", Expect::Reject("U+202B"), &[]),
    ("borg\u{202c} serve", Expect::Reject("U+202C"), &[]),
    ("borg\u{202d} serve", Expect::Reject("U+202D"), &[]),
    ("BORG_X=\u{202e} borg serve", Expect::Reject("U+202E"), &[]),
    ("borg 'serve", Expect::Reject("unbalanced quote"), &[]),
    ("borg \"serve", Expect::Reject("unbalanced quote"), &[]),
    ("borg serve \\", Expect::Reject("trailing backslash"), &[]),
    (
        "borg serve #--append-only",
        Expect::Reject("'#' comment"),
        &[],
    ),
    ("", Expect::Reject("the command is empty"), &[]),
    ("   ", Expect::Reject("the command is empty"), &[]),
    // Unicode is fine where it is a value, and refused where it is a stray word.
    (
        "borg serve --debug-topic=répository",
        WARN,
        &[("--debug-topic=répository", Action::Dropped)],
    ),
    (
        "borg serve ünïcode",
        Expect::Reject("unexpected argument \"ünïcode\""),
        &[],
    ),
    (
        "börg serve",
        Expect::Reject("program \"börg\" is not allowed"),
        &[],
    ),
];

fn check(command: &str, expect: Expect, verdicts: &[(&str, Action)], policy: &Policy) -> Judgement {
    let judgement = judge(policy, Some(command.as_bytes()));
    match (expect, &judgement.decision) {
        (
            Expect::Accept {
                level,
                topics,
                lock_wait,
            },
            Decision::Accept(args),
        ) => {
            let mut expected: Vec<String> = FORCED.iter().map(|s| s.to_string()).collect();
            expected.push(level.to_owned());
            expected.extend(topics.iter().map(|t| format!("--debug-topic={t}")));
            expected.push(format!("--lock-wait={lock_wait}"));
            expected.push("--max-lock-wait=600".to_owned());
            // Where the built-in engine reports the session, last.
            expected.push(format!("--policy-name={}", policy.name));
            expected.push("--audit-file=/var/log/borg-gate/audit.jsonl".to_owned());
            assert_eq!(args.words, expected, "command {command:?}");
        }
        (Expect::Probe, Decision::Probe) => {}
        (Expect::Reject(text), Decision::Reject(refusal)) => {
            let sentence = refusal.to_string();
            assert!(
                sentence.contains(text),
                "command {command:?}: {sentence:?} lacks {text:?}"
            );
            assert!(
                !sentence.contains('\n'),
                "command {command:?}: {sentence:?} is not one line"
            );
        }
        (expect, decision) => panic!("command {command:?}: expected {expect:?}, got {decision:?}"),
    }
    for (written, action) in verdicts {
        let verdict = judgement.options.iter().find(|v| v.option == *written);
        let verdict = verdict.unwrap_or_else(|| {
            panic!(
                "command {command:?}: no verdict for {written:?}: {:?}",
                judgement.options
            )
        });
        assert_eq!(
            verdict.action, *action,
            "command {command:?}, option {written:?}: {:?}",
            verdict.reason
        );
        assert!(
            !verdict.reason.is_empty(),
            "command {command:?}: {written:?} has no reason"
        );
    }
    judgement
}

#[test]
fn decision_table() {
    let policy = policy();
    assert!(CASES.len() >= 80, "the table has {} cases", CASES.len());
    for (command, expect, verdicts) in CASES {
        check(command, *expect, verdicts, &policy);
    }
}

#[test]
fn interactive_login_is_refused() {
    let judgement = judge(&policy(), None);
    let Decision::Reject(refusal) = judgement.decision else {
        panic!("accepted a login")
    };
    assert_eq!(
        refusal.to_string(),
        "interactive logins are not allowed; this key only runs `borg serve`"
    );
}

#[test]
fn oversized_command_is_refused_without_being_split() {
    let command = format!("borg serve {}", "--info ".repeat(100 * 1024 / 7));
    let judgement = judge(&policy(), Some(command.as_bytes()));
    let Decision::Reject(refusal) = judgement.decision else {
        panic!("accepted 100 KiB")
    };
    assert!(
        refusal.to_string().contains("the limit is 4096"),
        "{refusal}"
    );
    assert!(judgement.tokens.is_empty());
}

#[test]
fn non_utf8_command_is_refused() {
    let judgement = judge(&policy(), Some(b"borg serve --debug-topic=\xff"));
    assert!(matches!(judgement.decision, Decision::Reject(_)));
}

#[test]
fn assignment_values_never_reach_the_evidence() {
    let judgement = judge(
        &policy(),
        Some(b"BORG_PASSPHRASE=hunter2 BORG_X='a b' borg serve"),
    );
    assert!(matches!(judgement.decision, Decision::Accept(_)));
    assert_eq!(judgement.dropped_env, ["BORG_PASSPHRASE", "BORG_X"]);
    let evidence = format!("{judgement:?}");
    assert!(
        !evidence.contains("hunter2") && !evidence.contains("a b"),
        "{evidence}"
    );
}

#[test]
fn probe_is_refused_when_the_policy_does_not_allow_it() {
    let text = POLICY.replace("allow_probe = true", "allow_probe = false");
    let policy = parse_policy(&text, "t").unwrap();
    check(
        "true",
        Expect::Reject("probe `true` is not allowed"),
        &[],
        &policy,
    );
}

#[test]
fn unknown_options_are_refused_when_the_policy_says_reject() {
    let text = POLICY.replace("[repository]", "unknown_options = \"reject\"\n[repository]");
    let policy = parse_policy(&text, "t").unwrap();
    check(
        "borg serve --foo",
        Expect::Reject("unknown option \"--foo\" is refused"),
        &[],
        &policy,
    );
    // Known denied options are still just dropped.
    check(
        "borg serve --append-only",
        WARN,
        &[("--append-only", Action::Dropped)],
        &policy,
    );
}

#[test]
fn pinned_log_level_overrides_the_client() {
    let text = POLICY.replace(
        "default_log_level = \"warning\"",
        "default_log_level = \"warning\"\nforce_log_level = \"info\"",
    );
    let policy = parse_policy(&text, "t").unwrap();
    check("borg serve", INFO, &[], &policy);
    check(
        "borg serve --warning",
        INFO,
        &[("--warning", Action::Replaced)],
        &policy,
    );
    check("borg serve --info", INFO, &[], &policy);
}

#[test]
fn exact_program_matching_needs_the_exact_word() {
    let text = POLICY.replace(
        "programs = [\"borg\", \"borg1\", \"borg-1.4\"]",
        "programs = [\"borg\", \"/usr/bin/borg\"]\nprogram_match = \"exact\"",
    );
    let policy = parse_policy(&text, "t").unwrap();
    check("/usr/bin/borg serve", WARN, &[], &policy);
    check("borg serve", WARN, &[], &policy);
    check(
        "/usr/local/bin/borg serve",
        Expect::Reject("is not allowed"),
        &[],
        &policy,
    );
}

#[test]
fn external_engine_gets_no_builtin_only_options() {
    let text = POLICY.replace("program = \"builtin\"", "program = \"/usr/bin/borg\"");
    let policy = parse_policy(&text, "t").unwrap();
    let Decision::Accept(args) = judge(&policy, Some(b"borg serve --info")).decision else {
        panic!()
    };
    assert!(
        !args.words.iter().any(|a| a.starts_with("--max-lock-wait")),
        "{args:?}"
    );
}

#[test]
fn builtin_only_settings_reach_the_builtin_engine() {
    let text = POLICY.replace(
        "umask = \"077\"",
        "umask = \"027\"\npermissions = \"read-only\"\nidle_timeout = \"10m\"",
    );
    let policy = parse_policy(&text, "t").unwrap();
    let Decision::Accept(args) = judge(&policy, Some(b"borg serve")).decision else {
        panic!()
    };
    assert!(args.words.contains(&"--umask=0027".to_owned()), "{args:?}");
    assert!(
        args.words.contains(&"--permissions=read-only".to_owned()),
        "{args:?}"
    );
    assert!(
        args.words.contains(&"--idle-timeout=600s".to_owned()),
        "{args:?}"
    );
}

/// The table policy serving both generations: borg 2 requests are judged by their form, and
/// borg 1 commands exactly as above.
fn both_generations() -> Policy {
    let text = POLICY.replace(
        "[client]\n",
        "[client]\nprotocols = [\"borg1\", \"borg2\"]\n",
    );
    parse_policy(&text, "table").expect("the two-generation policy is valid")
}

#[derive(Debug, Clone, Copy)]
enum Rest {
    /// Accepted as borg 2, naming this repository path (resolved later by the pipeline).
    Requested(&'static str),
    /// Refused; the reason contains this text.
    Reject(&'static str),
}

/// borg 2 requests: what real clients send, and smuggling attempts.
const REST_CASES: &[(&str, Rest)] = &[
    // What borg 2 clients send (`ssh://u@h/repo`, `//abs`, `/~/x`, BORG_REMOTE_PATH).
    (
        "borg serve --rest --backend FILE:/srv/backup/alice/r",
        Rest::Requested("/srv/backup/alice/r"),
    ),
    (
        "borg serve --rest --backend FILE:repo",
        Rest::Requested("repo"),
    ),
    (
        "borg serve --rest --backend FILE:~/r1",
        Rest::Requested("~/r1"),
    ),
    (
        "borg serve --rest --backend FILE:~alice/r1",
        Rest::Requested("~alice/r1"),
    ),
    (
        "/usr/local/bin/borg serve --rest --backend FILE:/srv/x",
        Rest::Requested("/srv/x"),
    ),
    (
        "borg-1.4 serve --rest --backend FILE:/srv/x",
        Rest::Requested("/srv/x"),
    ),
    // Leading assignments are dropped, never interpreted; quoting makes the same words.
    (
        "BORG_REPO_PERMISSIONS=all BORG_X='a b' borg serve --rest --backend FILE:/srv/x",
        Rest::Requested("/srv/x"),
    ),
    (
        "'borg' \"serve\" '--rest' --backend 'FILE:/srv/a b'",
        Rest::Requested("/srv/a b"),
    ),
    (
        "borg serve --rest --backend FILE:/srv/x\\;id",
        Rest::Requested("/srv/x;id"),
    ),
    (
        "borg serve --rest --backend 'FILE:../../etc'",
        Rest::Requested("../../etc"),
    ),
    // Other backends: never served, whatever else the command says.
    (
        "borg serve --rest --backend sftp://evil.example/x",
        Rest::Reject("backend \"sftp://evil.example/x\" is not a FILE:<path> backend"),
    ),
    (
        "borg serve --rest --backend rest://host//x",
        Rest::Reject("backend \"rest://host//x\" is not a FILE:<path>"),
    ),
    (
        "borg serve --rest --backend s3:key@bucket/x",
        Rest::Reject("is not a FILE:<path>"),
    ),
    (
        "borg serve --rest --backend file:///srv/x",
        Rest::Reject("backend \"file:///srv/x\" is not a FILE:<path>"),
    ),
    (
        "borg serve --rest --backend=http://x/",
        Rest::Reject("backend \"http://x/\" is not a FILE:<path>"),
    ),
    (
        "borg serve --rest --backend FILE:/srv/x --backend sftp://x",
        Rest::Reject("backend \"sftp://x\" is not a FILE:<path>"),
    ),
    (
        "borg serve --backend rclone:remote:x",
        Rest::Reject("is not a FILE:<path>"),
    ),
    (
        "borg serve --info --back=sftp://x",
        Rest::Reject("backend \"sftp://x\" is not a FILE:<path>"),
    ),
    // Anything but the one form.
    (
        "borg serve --rest",
        Rest::Reject("--rest without --backend FILE:<path>"),
    ),
    (
        "borg serve --backend FILE:/srv/x",
        Rest::Reject("--backend without --rest"),
    ),
    (
        "borg serve --rest --backend FILE:/srv/x --backend FILE:/srv/y",
        Rest::Reject("--backend is given more than once"),
    ),
    (
        "borg serve --rest --backend=FILE:/srv/x",
        Rest::Reject("unexpected argument \"--backend=FILE:/srv/x\" in a borg 2 request"),
    ),
    (
        "borg serve --rest --backe FILE:/srv/x",
        Rest::Reject("unexpected argument \"--backe\""),
    ),
    (
        "borg serve --backend FILE:/srv/x --rest",
        Rest::Reject("unexpected argument \"--backend\""),
    ),
    (
        "borg --config /tmp/evil.yaml serve --rest --backend FILE:/srv/x",
        Rest::Reject("unexpected argument \"--config\""),
    ),
    (
        "borg serve --rest --backend FILE:/srv/x --config=/tmp/evil.yaml",
        Rest::Reject("unexpected argument \"--config=/tmp/evil.yaml\""),
    ),
    (
        "borg serve --rest --backend FILE:/srv/x --restrict-to-path /",
        Rest::Reject("unexpected argument \"--restrict-to-path\""),
    ),
    (
        "borg serve --rest --backend FILE:/srv/x --permissions all",
        Rest::Reject("unexpected argument \"--permissions\""),
    ),
    (
        "borg serve --rest --backend FILE:/srv/x --info",
        Rest::Reject("unexpected argument \"--info\""),
    ),
    (
        "borg --info serve --rest --backend FILE:/srv/x",
        Rest::Reject("unexpected argument \"--info\""),
    ),
    (
        "borg serve --rest --rest --backend FILE:/srv/x",
        Rest::Reject("unexpected argument \"--rest\""),
    ),
    (
        "borg serve --rest --backend FILE:/srv/x; id",
        Rest::Reject("unexpected argument \"id\""),
    ),
    (
        "borg serve --rest --backend FILE:/srv/x && id",
        Rest::Reject("unexpected argument \"&&\""),
    ),
    (
        "borg serve --rest --backend FILE:/srv/a b",
        Rest::Reject("unexpected argument \"b\""),
    ),
    (
        "borg serve --rest --backend FILE:/srv/x --",
        Rest::Reject("unexpected argument \"--\""),
    ),
    (
        "borg list --rest --backend FILE:/srv/x",
        Rest::Reject("unexpected argument \"list\""),
    ),
    (
        "borg serve --rest --backend FILE:",
        Rest::Reject("the backend FILE: names no path"),
    ),
    (
        "borg serve --rest --backend FILE:/x #",
        Rest::Reject("'#' comment"),
    ),
    // The program word and assignments follow the borg 1 rules.
    (
        "sh serve --rest --backend FILE:/srv/x",
        Rest::Reject(
            "program \"sh\" is not allowed; this key only runs `borg serve` or `borg serve --rest`",
        ),
    ),
    (
        "X=1 /tmp/evil/borg2 serve --rest --backend FILE:/srv/x",
        Rest::Reject("program \"/tmp/evil/borg2\" is not allowed"),
    ),
];

#[test]
fn decision_table_for_borg2_requests() {
    let policy = both_generations();
    assert!(REST_CASES.len() >= 35, "the table has {}", REST_CASES.len());
    for (command, expect) in REST_CASES {
        let judgement = judge(&policy, Some(command.as_bytes()));
        match (expect, &judgement.decision) {
            (Rest::Requested(path), Decision::Accept(args)) => {
                assert_eq!(args.protocol, Protocol::Borg2, "{command:?}");
                assert_eq!(judgement.requested_repository(), Some(*path), "{command:?}");
                assert_eq!(args.words, Vec::<String>::new(), "{command:?}");
                assert_eq!(judgement.protocol, Some(Protocol::Borg2));
            }
            (Rest::Reject(text), Decision::Reject(refusal)) => {
                let sentence = refusal.to_string();
                assert!(
                    sentence.contains(text),
                    "{command:?}: {sentence:?} lacks {text:?}"
                );
                assert!(!sentence.contains('\n'), "{sentence:?}");
            }
            (expect, decision) => {
                panic!("command {command:?}: expected {expect:?}, got {decision:?}")
            }
        }
    }
}

#[test]
fn borg1_commands_are_judged_alike_when_the_key_also_serves_borg2() {
    let policy = both_generations();
    for (command, expect, verdicts) in CASES {
        let judgement = check(command, *expect, verdicts, &policy);
        if let Decision::Accept(args) = &judgement.decision {
            assert_eq!(args.protocol, Protocol::Borg1, "{command:?}");
            assert_eq!(judgement.protocol, Some(Protocol::Borg1));
        }
    }
}

#[test]
fn a_borg2_client_is_refused_by_a_borg1_only_policy_with_a_clear_sentence() {
    let judgement = judge(
        &policy(),
        Some(b"borg serve --rest --backend FILE:/srv/backup/alice/r"),
    );
    let Decision::Reject(refusal) = &judgement.decision else {
        panic!("accepted: {judgement:?}")
    };
    assert_eq!(
        refusal.to_string(),
        "borg 2 clients are not allowed by this key's policy; this key only runs `borg serve`"
    );
    assert_eq!(judgement.protocol, Some(Protocol::Borg2));
    // A backend that is not FILE: is refused as such, whether or not the key serves borg 2.
    let judgement = judge(&policy(), Some(b"borg serve --rest --backend sftp://x/y"));
    let Decision::Reject(refusal) = &judgement.decision else {
        panic!("accepted: {judgement:?}")
    };
    assert!(refusal.to_string().starts_with("backend \"sftp://x/y\""));
    assert!(refusal.is_path_not_allowed());
}

#[test]
fn a_borg2_only_policy_refuses_borg1_and_says_what_it_runs() {
    let text = POLICY.replace("[client]\n", "[client]\nprotocols = [\"borg2\"]\n");
    let policy = parse_policy(&text, "t").unwrap();
    for (command, sentence) in [
        (
            "borg serve --info",
            "borg 1 clients are not allowed by this key's policy; this key only runs `borg serve --rest`",
        ),
        (
            "borg list",
            "only `borg serve --rest` is allowed, not `borg list`; nothing was run",
        ),
        (
            "sh",
            "program \"sh\" is not allowed; this key only runs `borg serve --rest`",
        ),
    ] {
        let Decision::Reject(refusal) = judge(&policy, Some(command.as_bytes())).decision else {
            panic!("{command}: accepted")
        };
        assert_eq!(refusal.to_string(), sentence);
    }
    let Decision::Reject(refusal) = judge(&policy, None).decision else {
        panic!("accepted a login")
    };
    assert_eq!(
        refusal.to_string(),
        "interactive logins are not allowed; this key only runs `borg serve --rest`"
    );
}

#[test]
fn a_resolved_borg2_repository_gets_the_builtin_engines_pinned_options() {
    let text = POLICY
        .replace("[client]\n", "[client]\nprotocols = [\"borg2\"]\n")
        .replace(
            "umask = \"077\"",
            "umask = \"027\"\nidle_timeout = \"10m\"\nrequest_timeout = \"2m\"\nsession_limit = \"12h\"",
        );
    let policy = parse_policy(&text, "t").unwrap();
    let judgement = judge(&policy, Some(b"borg serve --rest --backend FILE:r"))
        .with_repository(&policy, Ok(PathBuf::from("/srv/backup/alice/r")));
    let Decision::Accept(args) = &judgement.decision else {
        panic!("{judgement:?}")
    };
    assert_eq!(
        args.words,
        [
            "--rest",
            "--backend=FILE:/srv/backup/alice/r",
            "--restrict-to-path=/srv/backup/alice",
            // append_only = true means no-delete for borg 2.
            "--permissions=no-delete",
            "--umask=0027",
            "--warning",
            "--storage-quota=50000000000",
            "--idle-timeout=600s",
            "--request-timeout=120s",
            "--session-limit=43200s",
            "--lock-release=release",
            "--policy-name=table",
            "--audit-file=/var/log/borg-gate/audit.jsonl",
        ]
    );
    assert_eq!(
        args.repository,
        Some(Repository::Resolved(PathBuf::from("/srv/backup/alice/r")))
    );
    assert_eq!(judgement.requested_repository(), None);
}

#[test]
fn an_external_borg2_gets_the_one_resolved_repository_and_nothing_it_cannot_enforce() {
    let text = POLICY
        .replace(
            "program = \"builtin\"",
            "borg2_program = \"/opt/borg2/bin/borg\"",
        )
        .replace("[client]\n", "[client]\nprotocols = [\"borg2\"]\n")
        .replace("storage_quota = \"50G\"\n", "permissions = \"read-only\"\n");
    let policy = parse_policy(&text, "t").unwrap();
    let judgement = judge(&policy, Some(b"borg serve --rest --backend FILE:~/r"))
        .with_repository(&policy, Ok(PathBuf::from("/srv/backup/alice/r")));
    let Decision::Accept(args) = &judgement.decision else {
        panic!("{judgement:?}")
    };
    assert_eq!(
        args.words,
        [
            "--rest",
            "--backend=FILE:/srv/backup/alice/r",
            "--restrict-to-repository=/srv/backup/alice/r",
            "--permissions=read-only",
            "--umask=0077",
            "--warning",
        ]
    );
}

#[test]
fn a_refused_borg2_path_is_borgs_path_not_allowed() {
    let policy = both_generations();
    let refusal = borg_gate::gate::Refusal::PathNotAllowed {
        path: "/srv/backup/bob".into(),
        reason: None,
    };
    let judgement = judge(
        &policy,
        Some(b"borg serve --rest --backend FILE:/srv/backup/bob"),
    )
    .with_repository(&policy, Err(refusal));
    let Decision::Reject(refusal) = &judgement.decision else {
        panic!("{judgement:?}")
    };
    assert_eq!(
        refusal.to_string(),
        "Repository path not allowed: /srv/backup/bob."
    );
    assert!(refusal.is_path_not_allowed());
    // A borg 1 judgement has no repository to resolve and stays as it is.
    let borg1 = judge(&policy, Some(b"borg serve"));
    assert_eq!(
        borg1
            .clone()
            .with_repository(&policy, Ok(PathBuf::from("/elsewhere"))),
        borg1
    );
}

#[test]
fn no_delete_is_append_only_for_borg1_clients() {
    let text = POLICY.replace("append_only = true", "permissions = \"no-delete\"");
    let policy = parse_policy(&text, "t").unwrap();
    let Decision::Accept(args) = judge(&policy, Some(b"borg serve")).decision else {
        panic!()
    };
    assert!(args.words.contains(&"--append-only".to_owned()), "{args:?}");
    assert!(
        !args.words.iter().any(|a| a.starts_with("--permissions")),
        "{args:?}"
    );
}
