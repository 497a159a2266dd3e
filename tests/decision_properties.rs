//! Property tests of the gate: whatever a client sends, the engine's arguments contain the
//! policy's forced settings exactly, and nothing denied that came from the client; a borg 2
//! request is accepted only in its one form, and then only its path comes from the client.

mod gate_invariants;

use std::path::PathBuf;

use borg_gate::gate::{Decision, judge};
use borg_gate::policy::{Policy, Protocol, parse_policy};
use gate_invariants::{
    FORCED, POLICY, RESOLVED, accepted_args_violation, refusal_violation, rest_args_violation,
};
use proptest::prelude::*;

fn policy() -> Policy {
    parse_policy(POLICY, "prop").unwrap()
}

/// Words a hostile client would try, plus arbitrary text.
fn client_word() -> impl Strategy<Value = String> {
    let option = prop::sample::select(vec![
        "--restrict-to-path",
        "--restrict-to-p",
        "--restrict-to-repository",
        "--append-only",
        "--append",
        "--storage-quota",
        "--storage",
        "--umask",
        "--um",
        "--lock-wait",
        "--lock",
        "--debug-topic",
        "--debug",
        "--info",
        "-v",
        "--verbose",
        "--warning",
        "--error",
        "--critical",
        "--progress",
        "-p",
        "--remote-path",
        "--rsh",
        "--permissions",
        "--idle-timeout",
        "--max-lock-wait",
        "--request-timeout",
        "--session-limit",
        "--allow-lock-bypass",
        "--",
        "-",
        "-vp",
        "-V",
        "--help",
        "--x",
    ]);
    let value = prop::sample::select(vec![
        "/",
        "/srv",
        "0",
        "000",
        "-1",
        "600",
        "601",
        "99999999999",
        "1T",
        "repository",
        "borg.debug.repository",
        "../../x",
        "read-only",
        "all",
        "",
        "a b",
        ";",
        "$(id)",
    ]);
    prop_oneof![
        3 => option.clone().prop_map(str::to_owned),
        3 => (option, value.clone()).prop_map(|(o, v)| format!("{o}={v}")),
        2 => value.prop_map(str::to_owned),
        1 => ".{0,12}",
    ]
}

/// Words a borg 2 client could add to its request to widen it.
fn rest_word() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "--rest",
        "--backend",
        "--backend=FILE:/",
        "--backend=sftp://x",
        "--back",
        "FILE:/",
        "FILE:/srv/y",
        "sftp://evil/x",
        "rest://h//x",
        "--config",
        "--config=/tmp/x.yaml",
        "/tmp/x.yaml",
        "--restrict-to-path=/",
        "--restrict-to-repository",
        "--permissions=all",
        "--storage-quota=0",
        "--lock-release=keep",
        "--umask=000",
        "--info",
        "-v",
        "--",
        "serve",
        "X=1",
    ])
    .prop_map(str::to_owned)
}

fn command_from(words: &[String]) -> String {
    let mut all = vec!["borg".to_owned(), "serve".to_owned()];
    all.extend(words.iter().cloned());
    shlex::try_join(all.iter().map(String::as_str)).unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn engine_argv_holds_exactly_the_forced_settings(words in prop::collection::vec(client_word(), 0..8)) {
        let policy = policy();
        let command = command_from(&words);
        let judgement = judge(&policy, Some(command.as_bytes()));
        if let Decision::Accept(args) = judgement.decision {
            prop_assert_eq!(args.protocol, Protocol::Borg1);
            let violation = accepted_args_violation(&command, &args.words);
            prop_assert!(violation.is_none(), "{}", violation.unwrap_or_default());
        }
    }

    #[test]
    fn a_borg2_request_is_accepted_only_in_its_one_form(
        before in prop::collection::vec(rest_word(), 0..3),
        after in prop::collection::vec(rest_word(), 0..4),
    ) {
        let policy = policy();
        let mut words = vec!["borg".to_owned()];
        words.extend(before.iter().cloned());
        words.extend(["serve", "--rest", "--backend", "FILE:/srv/x"].map(str::to_owned));
        words.extend(after.iter().cloned());
        let command = shlex::try_join(words.iter().map(String::as_str)).unwrap_or_default();
        let judgement = judge(&policy, Some(command.as_bytes()));
        let exact = before.is_empty() && after.is_empty();
        match &judgement.decision {
            Decision::Accept(args) => {
                prop_assert!(exact, "{command:?} accepted: {args:?}");
                prop_assert_eq!(judgement.requested_repository(), Some("/srv/x"));
            }
            Decision::Reject(refusal) => {
                prop_assert!(!exact, "{command:?} refused: {refusal}");
                let violation = refusal_violation(&refusal.to_string());
                prop_assert!(violation.is_none(), "{}", violation.unwrap_or_default());
            }
            Decision::Probe => prop_assert!(false, "{command:?} is a probe"),
        }
    }

    #[test]
    fn whatever_a_borg2_client_sends_only_the_resolved_path_reaches_the_engine(
        backend in prop_oneof![2 => Just("FILE:/srv/x".to_owned()), 1 => rest_word()],
        tail in prop_oneof![
            2 => Just(Vec::new()),
            1 => prop::collection::vec(prop_oneof![rest_word(), client_word()], 1..5),
        ],
    ) {
        let policy = policy();
        let mut words = ["borg", "serve", "--rest", "--backend"].map(str::to_owned).to_vec();
        words.push(backend);
        words.extend(tail);
        let command = shlex::try_join(words.iter().map(String::as_str)).unwrap_or_default();
        let judgement = judge(&policy, Some(command.as_bytes()))
            .with_repository(&policy, Ok(PathBuf::from(RESOLVED)));
        if let Decision::Accept(args) = &judgement.decision {
            prop_assert_eq!(args.protocol, Protocol::Borg2);
            let violation = rest_args_violation(&command, &args.words);
            prop_assert!(violation.is_none(), "{}", violation.unwrap_or_default());
        }
    }

    #[test]
    fn any_bytes_get_a_decision_and_a_one_line_reason(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let judgement = judge(&policy(), Some(&bytes));
        if let Decision::Reject(refusal) = &judgement.decision {
            let violation = refusal_violation(&refusal.to_string());
            prop_assert!(violation.is_none(), "{}", violation.unwrap_or_default());
        }
    }

    #[test]
    fn any_text_after_borg_serve_never_escapes_the_forced_settings(tail in ".{0,80}") {
        let command = format!("borg serve {tail}");
        if let Decision::Accept(args) = judge(&policy(), Some(command.as_bytes())).decision {
            prop_assert_eq!(&args.words[..FORCED.len()], &FORCED[..]);
            prop_assert_eq!(args.words.iter().filter(|a| a.starts_with("--restrict")).count(), 3);
        }
    }
}
