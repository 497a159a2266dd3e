//! SSH_ORIGINAL_COMMAND, as the gate judges it and as the engine applies it: for any bytes, no
//! panic, and the invariants of tests/decision_properties.rs hold.
#![no_main]

use std::sync::OnceLock;

use borg_gate::engine::args::{ServeConfig, apply_client_command};
use borg_gate::gate::{Decision, judge};
use borg_gate::policy::{Policy, parse_policy};
use libfuzzer_sys::fuzz_target;

const POLICY: &str = r#"
version = 1
[client]
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

const FORCED: [&str; 5] = [
    "--restrict-to-path=/srv/backup/alice",
    "--restrict-to-path=/srv/backup/shared",
    "--restrict-to-repository=/srv/backup/special",
    "--storage-quota=50000000000",
    "--umask=0027",
];

const SERVER_DECIDES: [&str; 7] = [
    "--restrict-to-path",
    "--restrict-to-repository",
    "--append-only",
    "--storage-quota",
    "--umask",
    "--permissions",
    "--idle-timeout",
];

fn policy() -> &'static Policy {
    static POLICY_VALUE: OnceLock<Policy> = OnceLock::new();
    POLICY_VALUE.get_or_init(|| parse_policy(POLICY, "fuzz").expect("the fuzz policy is valid"))
}

fuzz_target!(|command: &[u8]| {
    let judgement = judge(policy(), Some(command));
    match &judgement.decision {
        Decision::Accept(args) => {
            let args = &args.0;
            assert_eq!(&args[..FORCED.len()], &FORCED[..], "{command:?}");
            let rest = &args[FORCED.len()..];
            for arg in rest {
                let allowed = ["--warning", "--info"].contains(&arg.as_str())
                    || arg.starts_with("--debug-topic=borg.debug.repository")
                    || arg.starts_with("--lock-wait=")
                    || arg == "--max-lock-wait=600";
                assert!(allowed, "{command:?} produced {arg:?}");
            }
            let waits: Vec<&str> = rest
                .iter()
                .filter_map(|a| a.strip_prefix("--lock-wait="))
                .collect();
            assert_eq!(waits.len(), 1, "{command:?}");
            let wait: u32 = waits[0].parse().expect("lock wait is a number");
            assert!(wait <= 600);
            for denied in SERVER_DECIDES {
                let forced = FORCED.iter().filter(|f| f.starts_with(denied)).count();
                let seen = args.iter().filter(|a| a.starts_with(denied)).count();
                assert_eq!(seen, forced, "{denied} in {args:?}");
            }
            // What the gate accepts, the engine parses.
            let config = borg_gate::engine::args::parse_serve_args(args)
                .expect("the engine parses what the gate produced");
            assert_eq!(config.restrict_to_paths.len(), 2);
            assert_eq!(config.umask, 0o027);
        }
        Decision::Reject(refusal) => {
            let sentence = refusal.to_string();
            assert!(
                !sentence.contains('\n') && !sentence.contains('\r'),
                "{sentence}"
            );
            assert!(sentence.len() < 400, "{sentence}");
        }
        Decision::Probe => {}
    }
    // The engine applies the same command to its own settings (`borg serve` run directly
    // by a forced command); whatever the client sends, restrictions never loosen.
    let mut config = ServeConfig {
        restrict_to_paths: vec!["/srv/a".into()],
        append_only: true,
        umask: 0o077,
        ..ServeConfig::default()
    };
    let before = config.clone();
    if apply_client_command(&mut config, command).is_ok() {
        assert_eq!(config.restrict_to_paths, before.restrict_to_paths);
        assert_eq!(
            config.restrict_to_repositories,
            before.restrict_to_repositories
        );
        assert!(config.append_only);
        assert_eq!(config.umask, before.umask);
        assert_eq!(config.storage_quota, before.storage_quota);
        assert_eq!(config.permissions, before.permissions);
    }
});
