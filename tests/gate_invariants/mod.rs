//! The gate's invariants for one policy, shared by the property tests
//! (tests/decision_properties.rs) and the fuzz target (fuzz/fuzz_targets/gate_decision.rs):
//! whatever a client sends, an accepted command's engine arguments hold the policy's forced
//! settings exactly, and nothing the server decides that came from the client; for borg 2,
//! nothing from the client at all but the repository path.

/// A policy with every kind of forced setting and narrow client rules.
pub(crate) const POLICY: &str = r#"
version = 1
[client]
protocols = ["borg1", "borg2"]
programs = ["borg"]
allow_probe = true
log_levels = ["warning", "info"]
debug_topics = ["borg.debug.repository*"]
lock_wait = { default = 1, max = 600 }
[repository]
restrict_to_paths = ["/srv/backup/alice", "/srv/backup/shared"]
restrict_to_repositories = ["/srv/backup/special"]
storage_quota = "50G"
umask = "027"
[audit]
syslog = true
"#;

/// The engine arguments [`POLICY`] forces, in order, ahead of anything from the client.
pub(crate) const FORCED: [&str; 5] = [
    "--restrict-to-path=/srv/backup/alice",
    "--restrict-to-path=/srv/backup/shared",
    "--restrict-to-repository=/srv/backup/special",
    "--storage-quota=50000000000",
    "--umask=0027",
];

/// Options only the server may set: they appear exactly as often as [`FORCED`] has them.
pub(crate) const SERVER_DECIDES: [&str; 10] = [
    "--restrict-to-path",
    "--restrict-to-repository",
    "--append-only",
    "--storage-quota",
    "--umask",
    "--permissions",
    "--idle-timeout",
    "--request-timeout",
    "--session-limit",
    "--allow-lock-bypass",
];

/// Where the built-in engine reports the session: server-decided too. [`POLICY`] names its
/// policy (whatever the test calls it) and audits to syslog; nothing else may appear.
pub(crate) const REPORTING: [(&str, usize); 6] = [
    ("--session-id", 0),
    ("--policy-name=", 1),
    ("--audit-file", 0),
    ("--audit-syslog", 1),
    ("--audit-on-failure", 0),
    ("--metrics-textfile", 0),
];

/// The first broken reporting invariant in `args`.
fn reporting_violation(command: &str, args: &[String]) -> Option<String> {
    REPORTING.iter().find_map(|(option, want)| {
        let seen = args.iter().filter(|a| a.starts_with(option)).count();
        (seen != *want).then(|| format!("{command:?}: {option} {seen} times in {args:?}"))
    })
}

/// The first broken invariant in the engine arguments the gate accepted for `command`.
pub(crate) fn accepted_args_violation(command: &str, args: &[String]) -> Option<String> {
    if args.len() < FORCED.len() || args[..FORCED.len()] != FORCED[..] {
        return Some(format!(
            "{command:?}: the forced settings do not lead {args:?}"
        ));
    }
    let rest = &args[FORCED.len()..];
    for arg in rest {
        let allowed = ["--warning", "--info"].contains(&arg.as_str())
            || arg.starts_with("--debug-topic=borg.debug.repository")
            || arg.starts_with("--lock-wait=")
            || arg == "--max-lock-wait=600"
            || arg.starts_with("--policy-name=")
            || arg == "--audit-syslog";
        if !allowed {
            return Some(format!("{command:?} produced {arg:?}"));
        }
    }
    let waits: Vec<&str> = rest
        .iter()
        .filter_map(|a| a.strip_prefix("--lock-wait="))
        .collect();
    match waits[..] {
        [wait] if wait.parse::<u32>().is_ok_and(|w| w <= 600) => {}
        _ => {
            return Some(format!(
                "{command:?}: lock waits {waits:?}, want one of at most 600"
            ));
        }
    }
    for denied in SERVER_DECIDES {
        let forced = FORCED.iter().filter(|f| f.starts_with(denied)).count();
        let seen = args.iter().filter(|a| a.starts_with(denied)).count();
        if seen != forced {
            return Some(format!("{command:?}: {denied} {seen} times in {args:?}"));
        }
    }
    reporting_violation(command, args)
}

/// A refusal is one line of reasonable length.
pub(crate) fn refusal_violation(sentence: &str) -> Option<String> {
    if sentence.contains('\n') || sentence.contains('\r') || sentence.len() >= 400 {
        return Some(format!("not one short line: {sentence:?}"));
    }
    None
}

/// The repository path the invariants resolve every accepted borg 2 request to.
pub(crate) const RESOLVED: &str = "/srv/backup/alice/repo";

/// The built-in borg 2 engine's arguments for [`POLICY`] and [`RESOLVED`]: every one from the
/// policy but the backend, which is the resolved path (and the policy's name, checked apart).
pub(crate) const REST_ARGS: [&str; 10] = [
    "--rest",
    "--backend=FILE:/srv/backup/alice/repo",
    "--restrict-to-path=/srv/backup/alice",
    "--restrict-to-path=/srv/backup/shared",
    "--restrict-to-repository=/srv/backup/special",
    "--umask=0027",
    "--warning",
    "--storage-quota=50000000000",
    "--lock-release=release",
    "--audit-syslog",
];

/// The first broken invariant in the borg 2 engine arguments the gate built for `command`.
pub(crate) fn rest_args_violation(command: &str, args: &[String]) -> Option<String> {
    let named: Vec<&String> = args
        .iter()
        .filter(|a| !a.starts_with("--policy-name="))
        .collect();
    if named != REST_ARGS {
        return Some(format!("{command:?}: borg 2 engine arguments {args:?}"));
    }
    reporting_violation(command, args)
}
