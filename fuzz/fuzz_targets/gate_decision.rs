//! SSH_ORIGINAL_COMMAND, as the gate judges it and as the engine applies it: for any bytes, no
//! panic, and the invariants of tests/decision_properties.rs hold.
#![no_main]

use std::sync::OnceLock;

use std::path::PathBuf;

use borg_gate::engine::borg1::args::{ServeConfig, apply_client_command};
use borg_gate::gate::{Decision, judge};
use borg_gate::policy::{Policy, Protocol, parse_policy};
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/gate_invariants/mod.rs"]
mod gate_invariants;
use gate_invariants::{
    POLICY, RESOLVED, accepted_args_violation, refusal_violation, rest_args_violation,
};

fn policy() -> &'static Policy {
    static POLICY_VALUE: OnceLock<Policy> = OnceLock::new();
    POLICY_VALUE.get_or_init(|| parse_policy(POLICY, "fuzz").expect("the fuzz policy is valid"))
}

fuzz_target!(|command: &[u8]| {
    let judgement = judge(policy(), Some(command))
        .with_repository(policy(), Ok(PathBuf::from(RESOLVED)));
    match &judgement.decision {
        Decision::Accept(args) if args.protocol == Protocol::Borg2 => {
            let text = String::from_utf8_lossy(command);
            if let Some(violation) = rest_args_violation(&text, &args.words) {
                panic!("{violation}");
            }
            // What the gate accepts, the borg 2 engine parses.
            let config = borg_gate::engine::borg2::args::parse_rest_args(&args.words)
                .expect("the borg 2 engine parses what the gate produced");
            assert_eq!(config.backend.as_deref(), Some("FILE:/srv/backup/alice/repo"));
            assert_eq!(config.restrict_to_paths.len(), 2);
        }
        Decision::Accept(args) => {
            let args = &args.words;
            let text = String::from_utf8_lossy(command);
            if let Some(violation) = accepted_args_violation(&text, args) {
                panic!("{violation}");
            }
            // What the gate accepts, the engine parses.
            let config = borg_gate::engine::borg1::args::parse_serve_args(args)
                .expect("the engine parses what the gate produced");
            assert_eq!(config.restrict_to_paths.len(), 2);
            assert_eq!(config.umask, 0o027);
        }
        Decision::Reject(refusal) => {
            if let Some(violation) = refusal_violation(&refusal.to_string()) {
                panic!("{violation}");
            }
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
